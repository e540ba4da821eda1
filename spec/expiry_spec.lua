-- Specs of active expiry as a user of cache.AsyncCache sees it: entries that
-- nobody reads leave after their TTL, memory_bytes falls, and the entries
-- that stay keep their values while the store shrinks (it renumbers them
-- and the cache moves their values along).
--
-- The sweeper runs on the real clock, so these specs sleep: they poll for
-- an outcome with a generous limit (seconds, where the sweeper needs tens
-- of milliseconds) and assert no duration.
local cache = require "cache"
local runtime = require "cache.runtime"
local h = require "helpers"

local sleep, now, spawn = runtime.sleep, runtime.now, runtime.spawn
local in_run = h.in_run

-- Sleeps in steps until pred() holds or `limit` seconds pass; returns
-- whether it held.
local function eventually(pred, limit)
  local t0 = now()
  while not pred() do
    if now() - t0 > limit then return false end
    sleep(0.01)
  end
  return true
end

describe("cache.AsyncCache active expiry", function()

  it("removes entries nobody reads and gives their memory back; the rest keep their values", in_run(function()
    local c = cache.AsyncCache{ maxsize = 20000 }
    local kept = {}
    for i = 1, 20000 do
      if i % 100 == 0 then
        kept[i] = { id = i }
        c:set("k" .. i, kept[i]) -- no TTL
      else
        c:set("k" .. i, { id = i }, { ttl = 0.05 })
      end
    end
    local full = c:get_metrics().memory_bytes
    assert.is_true(eventually(function() return c:get_metrics().size == 200 end, 10))
    assert.is_true(eventually(function() return c:get_metrics().memory_bytes < full / 10 end, 10))
    local m = c:get_metrics()
    assert.equal(19800, m.expirations)
    assert.equal(0, m.hits + m.misses) -- the sweeper did it, not reads
    for i = 1, 20000 do
      if kept[i] then
        assert.equal(kept[i], c:get("k" .. i)) -- the same table
      else
        assert.is_false(c:contains("k" .. i))
      end
    end
    -- The shrunk store grows again to maxsize without evicting.
    for i = 1, 20000 do c:set("n" .. i, i) end
    m = c:get_metrics()
    assert.equal(20000, m.size)
    assert.equal(200, m.evictions)
    for i = 1, 20000 do assert.equal(i, c:get("n" .. i)) end
  end))

  it("keeps every value right while sets go on during the shrink", in_run(function()
    local c = cache.AsyncCache{ maxsize = 30000 }
    local want = {}
    for i = 1, 20000 do
      local ttl = i % 50 == 0 and math.huge or 0.05
      want["a" .. i] = ttl == math.huge and { i } or nil
      c:set("a" .. i, { i }, { ttl = ttl })
    end
    for k in pairs(want) do want[k] = c:get(k) end
    -- A writer adds long-lived keys all along, a few per pass of the loop.
    local stop, n = false, 0
    local writer_done = runtime.event()
    spawn(function()
      while not stop do
        for _ = 1, 5 do
          n = n + 1
          local v = { n }
          c:set("b" .. n, v)
          want["b" .. n] = v
        end
        sleep(0.001)
      end
      writer_done:set()
    end)
    local full = c:get_metrics().memory_bytes
    assert.is_true(eventually(function()
      local m = c:get_metrics()
      return m.expirations == 19600 and m.memory_bytes < full / 2
    end, 10))
    stop = true
    writer_done:wait()
    local m = c:get_metrics()
    local count = 0
    for k, v in pairs(want) do
      count = count + 1
      assert.equal(v, c:get(k))
    end
    assert.equal(count, m.size)
    assert.equal(0, m.evictions)
  end))
end)
