-- Specs of active expiry as a user of cache.AsyncCache sees it: entries that
-- nobody reads leave after their TTL, memory_bytes falls, and the entries
-- that stay keep their values while the store shrinks (it renumbers them
-- and the cache moves their values along).
--
-- The caches are created on the fake clock (h.with_fake_clock), so their
-- TTLs and their sweep run on it: a test steps time past the TTL and on by
-- a second of sweep slices (the sweep of these 20000 entries needs about
-- ten milliseconds of them: a slice every millisecond while it finds
-- expired entries), then asserts the outcome.  Nothing sleeps for real and
-- no test polls; a slice is still bounded by 1 ms of real time, so a much
-- slower machine needs more slices, never more than the second gives.
local cache = require "cache"
local runtime = require "cache.runtime"
local h = require "helpers"

local sleep = runtime.sleep
local with_fake_clock, go = h.with_fake_clock, h.go

describe("cache.AsyncCache active expiry", function()

  it("removes entries nobody reads and gives their memory back; the rest keep their values", with_fake_clock(function(clock)
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
    clock:advance(0.049) -- not expired yet: nothing leaves
    assert.equal(20000, c:get_metrics().size)
    clock:advance(1.001)
    local m = c:get_metrics()
    assert.equal(200, m.size)
    assert.is_true(m.memory_bytes < full / 10)
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

  it("keeps every value right while sets go on during the shrink", with_fake_clock(function(clock)
    local c = cache.AsyncCache{ maxsize = 30000 }
    local want = {}
    for i = 1, 20000 do
      local ttl = i % 50 == 0 and math.huge or 0.05
      want["a" .. i] = ttl == math.huge and { i } or nil
      c:set("a" .. i, { i }, { ttl = ttl })
    end
    for k in pairs(want) do want[k] = c:get(k) end
    -- A writer adds long-lived keys all along, five every millisecond,
    -- between the slices of the sweep.
    local stop, n = false, 0
    local writer = go(function()
      while not stop do
        for _ = 1, 5 do
          n = n + 1
          local v = { n }
          c:set("b" .. n, v)
          want["b" .. n] = v
        end
        sleep(0.001)
      end
    end)
    local full = c:get_metrics().memory_bytes
    clock:advance(1.05)
    stop = true
    clock:advance(0.001) -- the writer wakes and stops
    assert.is_true(writer.done)
    assert.equal(5255, n) -- 1051 rounds: at 0 and every millisecond to 1.05
    local m = c:get_metrics()
    assert.equal(19600, m.expirations)
    assert.is_true(m.memory_bytes < full / 2)
    local count = 0
    for k, v in pairs(want) do
      count = count + 1
      assert.equal(v, c:get(k))
    end
    assert.equal(count, m.size)
    assert.equal(0, m.evictions)
  end))
end)
