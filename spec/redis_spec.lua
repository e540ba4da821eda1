-- cache.RedisBackend against a real redis-server (spec/redis_server.lua
-- starts one on a free loopback port): the shared L2, invalidation between
-- instances and processes, and Redis killed, frozen or refusing us.
local cache = require "cache"
local runtime = require "cache.runtime"
local server_mod = require "redis_server"
local h = require "helpers"

local sleep, spawn = runtime.sleep, runtime.spawn

if not server_mod.available() then
  describe("cache.RedisBackend", function()
    it("needs redis-server", function() pending("redis-server is not installed") end)
  end)
  return
end

local server
local prefixes = 0

-- A backend on the test server with a prefix of its own per test.
local function backend(opts)
  opts = opts or {}
  opts.port = server.port
  if opts.prefix == nil then
    prefixes = prefixes + 1
    opts.prefix = ("t%d:"):format(prefixes)
  end
  opts.command_timeout = opts.command_timeout or 0.2
  return cache.RedisBackend(opts)
end

-- Waits (in a task) until pred() holds, up to `seconds`.
local function wait_for(pred, seconds)
  local deadline = runtime.now() + (seconds or 2)
  while not pred() do
    if runtime.now() > deadline then return false end
    sleep(0.01)
  end
  return true
end

local function up(c) return c:get_metrics().remote_state == "up" end

-- Lookups the server answered (gets go out as MGETs, one per loop turn).
local function gets_served()
  local info = server:cli("INFO", "commandstats")
  return tonumber(info:match("cmdstat_get:calls=(%d+)") or "0")
    + tonumber(info:match("cmdstat_mget:calls=(%d+)") or "0")
end

local function in_run(fn)
  return function()
    runtime.run(fn)
  end
end

local hook_messages = h.hook_messages

describe("cache.RedisBackend", function()
  setup(function() server = server_mod.start() end)
  teardown(function() if server then server:stop() end end)
  after_each(function() runtime.set_error_hook(nil) end)

  it("validates every option, naming it", function()
    local function err(opts)
      local ok, e = pcall(cache.RedisBackend, opts)
      assert.is_false(ok)
      return e
    end
    assert.matches("opts.port must be an integer from 1 to 65535, got 0", err{ port = 0 })
    assert.matches("opts.port must be an integer from 1 to 65535, got 1.5", err{ port = 1.5 })
    assert.matches("opts.db must be an integer", err{ db = -1 })
    assert.matches('opts.host must be a non%-empty string, got string ""', err{ host = "" })
    assert.matches("opts.prefix must be a non%-empty string, got 42", err{ prefix = 42 })
    assert.matches("opts.command_timeout must be a positive number of seconds, got 0",
                   err{ command_timeout = 0 })
    assert.matches("opts.connect_timeout must be a positive number", err{ connect_timeout = -1 })
    assert.matches("unknown option 'hots'", err{ hots = "x" })
    assert.matches("opts.username needs opts.password", err{ username = "u" })
    assert.matches("opts must be a table, got string", err("redis://x"))
  end)

  it("serves an L2 hit after L1 evicted the key", in_run(function()
    local c = cache.AsyncCache{ maxsize = 2, remote_cache = backend() }
    assert.is_true(wait_for(function() return up(c) end))
    c:set("a", { 1 }); c:set("b", 2); c:set("c", 3) -- "a" leaves L1
    sleep(0.02)
    assert.is_false(c:contains("a"))
    assert.same({ 1 }, c:get("a", function() error("not to be loaded") end))
    assert.equal(1, c:get_metrics().remote_hits)
  end))

  it("reads many keys with MGET", in_run(function()
    local b = backend()
    local a = cache.AsyncCache{ remote_cache = b }
    local c = cache.AsyncCache{ remote_cache = b }
    assert.is_true(wait_for(function() return up(a) and up(c) end))
    for i = 1, 2500 do a:set(i, i * 10) end
    sleep(0.1)
    local before = server:cli("INFO", "commandstats"):match("cmdstat_mget:calls=(%d+)") or "0"
    local keys = {}
    for i = 1, 2500 do keys[i] = i end
    local values, errors = c:get_many(keys)
    assert.is_nil(errors)
    local n = 0
    for k, v in pairs(values) do n = n + 1; assert.equal(k * 10, v) end
    assert.equal(2500, n)
    local after = server:cli("INFO", "commandstats"):match("cmdstat_mget:calls=(%d+)")
    assert.equal(3, tonumber(after) - tonumber(before)) -- 1000 keys a command
  end))

  it("looks a batch's keys up in one MGET before the batch loader", in_run(function()
    local b = backend()
    local a = cache.AsyncCache{ remote_cache = b }
    assert.is_true(wait_for(function() return up(a) end))
    for i = 1, 50 do a:set(i, "redis" .. i) end
    sleep(0.05)
    local loaded = {}
    local c = cache.AsyncCache{ remote_cache = b, batch_loader = function(keys)
      local r = {}
      for _, k in ipairs(keys) do loaded[#loaded + 1] = k; r[k] = "db" .. k end
      return r
    end }
    assert.is_true(wait_for(function() return up(c) end))
    local before = server:cli("INFO", "commandstats"):match("cmdstat_mget:calls=(%d+)") or "0"
    local keys = {}
    for i = 1, 60 do keys[i] = i end
    local values = c:get_many(keys)
    local after = server:cli("INFO", "commandstats"):match("cmdstat_mget:calls=(%d+)")
    assert.equal(1, tonumber(after) - tonumber(before))
    assert.equal("redis7", values[7])
    assert.equal("db55", values[55])
    table.sort(loaded)
    assert.same({ 51, 52, 53, 54, 55, 56, 57, 58, 59, 60 }, loaded)
  end))

  it("looks a key up once for concurrent misses", in_run(function()
    local c = cache.AsyncCache{ remote_cache = backend() }
    assert.is_true(wait_for(function() return up(c) end))
    local before, loads, done = gets_served(), 0, 0
    for _ = 1, 30 do
      spawn(function()
        c:get("hot", function() loads = loads + 1; sleep(0.01); return "v" end)
        done = done + 1
      end)
    end
    assert.is_true(wait_for(function() return done == 30 end))
    assert.equal(1, loads)
    assert.equal(1, gets_served() - before)
  end))

  it("fills L1 with the TTL left in Redis", in_run(function()
    local b = backend()
    local a = cache.AsyncCache{ remote_cache = b }
    local c = cache.AsyncCache{ remote_cache = b }
    assert.is_true(wait_for(function() return up(a) and up(c) end))
    local t0 = runtime.now()
    a:set("k", "v", { ttl = 1.5 })
    sleep(0.5)
    assert.equal("v", c:get("k", function() return "reloaded" end))
    sleep(1.6 - (runtime.now() - t0)) -- past the set's TTL: gone from c's L1 too,
    assert.is_false(c:contains("k"))  -- which did not start a fresh 1.5 s
  end))

  it("drops a key from the other instances' L1 when one sets or deletes it", in_run(function()
    local b = backend()
    local a = cache.AsyncCache{ remote_cache = b }
    local c = cache.AsyncCache{ remote_cache = b }
    assert.is_true(wait_for(function() return up(a) and up(c) end))
    a:set("k", "old")
    assert.is_true(wait_for(function() return c:get("k") == "old" end))
    a:set("k", "new")
    -- (a get racing the message may see nil: the key changed meanwhile)
    assert.is_true(wait_for(function() return c:get("k") == "new" end), "c still serves the old value")
    assert.equal("new", a:get("k")) -- a's own message did not drop it
    a:delete("k")
    assert.is_true(wait_for(function() return not c:contains("k") end))
    assert.is_nil(c:get("k"))
    assert.is_true(c:get_metrics().remote_invalidations >= 2)
  end))

  it("shares values and invalidations with another process", in_run(function()
    local b = backend()
    local c = cache.AsyncCache{ remote_cache = b }
    assert.is_true(wait_for(function() return up(c) end))
    c:set("shared", "from parent")
    sleep(0.02)
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(([[
      local cache = require "cache"
      local runtime = require "cache.runtime"
      runtime.run(function()
        local c = cache.AsyncCache{ remote_cache = cache.RedisBackend{ port = %d, prefix = %q } }
        while c:get_metrics().remote_state ~= "up" do runtime.sleep(0.01) end
        io.write(tostring(c:get("shared")), "\n")
        c:set("shared", "from child")
        runtime.sleep(0.05)
      end)
    ]]):format(server.port, b.prefix))
    f:close()
    local p = io.popen("lua5.4 " .. script .. " 2>&1")
    local out = p:read("a")
    p:close()
    os.remove(script)
    assert.equal("from parent\n", out)
    assert.is_true(wait_for(function() return not c:contains("shared") end))
    assert.equal("from child", c:get("shared"))
  end))

  it("isolates two prefixes on one server, and clear empties only its own", in_run(function()
    local one = cache.AsyncCache{ remote_cache = backend{ prefix = "iso1:" } }
    local two = cache.AsyncCache{ remote_cache = backend{ prefix = "iso2:" } }
    assert.is_true(wait_for(function() return up(one) and up(two) end))
    one:set("k", "one")
    two:set("k", "two")
    sleep(0.02)
    assert.equal("one", one:get("k"))
    assert.equal("two", two:get("k"))
    one:clear()
    sleep(0.05)
    assert.equal("", server:cli("KEYS", "iso1:*"))
    assert.is_not.equal("", server:cli("KEYS", "iso2:*"))
    assert.equal("two", two:get("k"))
  end))

  it("treats a key holding a value it did not write as a miss", in_run(function()
    local b = backend()
    local c = cache.AsyncCache{ remote_cache = b }
    assert.is_true(wait_for(function() return up(c) end))
    -- the key of the string "k" is prefix .. "\1k"
    os.execute(("redis-cli -p %d SET \"$(printf '%s\\001k')\" garbage >/dev/null"):format(server.port, b.prefix))
    os.execute(("redis-cli -p %d LPUSH \"$(printf '%s\\001l')\" x >/dev/null"):format(server.port, b.prefix))
    assert.equal("loaded", c:get("k", function() return "loaded" end))
    assert.equal("loaded too", c:get("l", function() return "loaded too" end))
    -- a foreign string is an error; a list is no string: MGET says nil
    assert.equal(1, c:get_metrics().remote_errors)
    sleep(0.02)
    -- the loaded values replaced the foreign ones
    local d = cache.AsyncCache{ remote_cache = b }
    assert.is_true(wait_for(function() return up(d) end))
    assert.equal("loaded", d:get("k"))
    assert.equal("loaded too", d:get("l"))
  end))

  it("keeps working when a full Redis refuses writes (OOM)", in_run(function()
    local c = cache.AsyncCache{ remote_cache = backend() }
    assert.is_true(wait_for(function() return up(c) end))
    server:cli("CONFIG", "SET", "maxmemory-policy", "noeviction")
    server:cli("CONFIG", "SET", "maxmemory", "1")
    c:set("k", "v")
    local ok = wait_for(function() return c:get_metrics().remote_errors >= 1 end)
    server:cli("CONFIG", "SET", "maxmemory", "0")
    assert.is_true(ok)
    assert.matches("OOM", c:get_metrics().remote_last_error)
    assert.equal("v", c:get("k"))
    assert.equal("up", c:get_metrics().remote_state) -- an error reply is no lost connection
  end))

  it("keeps unencodable values in L1 only", in_run(function()
    local c = cache.AsyncCache{ remote_cache = backend() }
    assert.is_true(wait_for(function() return up(c) end))
    c:set("fn", print)
    sleep(0.02)
    assert.equal(1, c:get_metrics().unencodable)
    assert.equal(print, c:get("fn"))
  end))

  it("keeps serving when Redis is killed, and uses it again once it is back", in_run(function()
    local msgs = hook_messages()
    local b = backend()
    local c = cache.AsyncCache{ remote_cache = b }
    assert.is_true(wait_for(function() return up(c) end))
    c:set("before", 1)
    server:kill()
    assert.is_true(wait_for(function() return c:get_metrics().remote_state ~= "up" end))
    -- L1 and the loader carry on; nothing hangs
    assert.equal("fresh", c:get("k", function() return "fresh" end))
    c:set("during", 2)
    assert.equal(2, c:get("during"))
    assert.is_true(c:get_metrics().remote_errors >= 1)
    assert.matches("Redis", msgs[1])
    server:restart()
    assert.is_true(wait_for(function() return up(c) end, 8), "never reconnected")
    c:set("after", 3)
    sleep(0.02)
    local d = cache.AsyncCache{ remote_cache = b }
    assert.is_true(wait_for(function() return up(d) end))
    assert.equal(3, d:get("after")) -- Redis is used again
  end))

  it("opens the circuit when Redis freezes, and closes it when it thaws", in_run(function()
    local c = cache.AsyncCache{ remote_cache = backend{ command_timeout = 0.05 } }
    assert.is_true(wait_for(function() return up(c) end))
    server:freeze()
    local t0 = runtime.now()
    for i = 1, 4 do
      assert.equal(i, c:get("frozen" .. i, function() return i end)) -- each waits 50 ms at most
    end
    assert.is_true(runtime.now() - t0 < 2)
    local m = c:get_metrics()
    assert.is_true(m.remote_timeouts >= 3)
    assert.is_not.equal("up", m.remote_state) -- open (down, or probing again)
    -- open: calls skip Redis at once (no command is sent, so none can
    -- time out)
    local timeouts = c:get_metrics().remote_timeouts
    assert.equal("quick", c:get("q", function() return "quick" end))
    sleep(0.1)
    if c:get_metrics().remote_state ~= "up" then
      assert.equal(timeouts, c:get_metrics().remote_timeouts)
    end
    server:resume()
    assert.is_true(wait_for(function() return up(c) end, 8), "the circuit never closed")
  end))

  it("reports a wrong password, and L1 keeps working", in_run(function()
    server:cli("CONFIG", "SET", "requirepass", "right")
    local msgs = hook_messages()
    local c = cache.AsyncCache{ remote_cache = backend{ password = "wrong" } }
    local ok = wait_for(function() return c:get_metrics().remote_last_error ~= nil end)
    os.execute(("redis-cli -p %d -a right CONFIG SET requirepass '' >/dev/null 2>&1"):format(server.port))
    assert.is_true(ok)
    local m = c:get_metrics()
    assert.matches("AUTH", m.remote_last_error)
    assert.is_not.equal("up", m.remote_state)
    assert.matches("AUTH", msgs[1])
    c:set("k", "v")
    assert.equal("v", c:get("k"))
  end))

  it("survives an error hook that closes the cache when Redis is unreachable", in_run(function()
    local c = cache.AsyncCache{ remote_cache = cache.RedisBackend{ port = server.port + 1,
                                                                   connect_timeout = 0.05 } }
    runtime.set_error_hook(function() c:close() end)
    assert.is_true(wait_for(function() return c:is_closed() end))
  end))

  it("lets a batch loader close its cache", in_run(function()
    local c
    c = cache.AsyncCache{ remote_cache = backend(), batch_loader = function(keys)
      c:close()
      local r = {}
      for _, k in ipairs(keys) do r[k] = k end
      return r
    end }
    assert.is_true(wait_for(function() return up(c) end))
    assert.is_true(pcall(c.get_many, c, { 1, 2, 3 }))
    assert.is_true(c:is_closed())
  end))

  it("reads its own writes, also past the window of sets in flight", in_run(function()
    local c = cache.AsyncCache{ maxsize = 2, remote_cache = backend() }
    assert.is_true(wait_for(function() return up(c) end))
    c:set("k", "v0")
    sleep(0.05)
    for i = 1, 1100 do c:set(i, i) end
    c:set("k", "v1"); c:set("a", 1); c:set("b", 2) -- k leaves L1
    assert.equal("v1", c:get("k", function() return "loaded" end))
  end))

  it("works for decorated functions", in_run(function()
    local b = backend()
    local calls = 0
    local function f(x) calls = calls + 1; return x * 2 end
    local g1 = cache.AsyncLRU{ remote_cache = b }(f)
    local g2 = cache.AsyncLRU{ remote_cache = b }(f)
    assert.is_true(wait_for(function() return up(g1:cache()) and up(g2:cache()) end))
    assert.equal(42, g1(21))
    sleep(0.02)
    assert.equal(42, g2(21))
    assert.equal(1, calls)
  end))
end)
