-- Remote backends written in Lua (remote_cache = a cache.RemoteCacheBackend):
-- the read path (L1, remote, loader), the write path (L1 now, remote in
-- the background), single-flight across both tiers, and failing backends.
local cache = require "cache"
local runtime = require "cache.runtime"
local h = require "helpers"

local sleep, spawn = runtime.sleep, runtime.spawn

-- An in-process table as a shared L2; it counts its calls, and its get
-- waits a little (as a network round trip would).
local Shared = cache.RemoteCacheBackend:extend()
function Shared:init()
  self.data = self.data or {}
  self.calls = { get = 0, set = 0, delete = 0, clear = 0 }
end
function Shared:get(key)
  self.calls.get = self.calls.get + 1
  sleep(0.001)
  local e = self.data[key]
  if e == nil then return nil end
  return e.bytes, e.ttl
end
function Shared:set(key, bytes, ttl)
  self.calls.set = self.calls.set + 1
  self.data[key] = { bytes = bytes, ttl = ttl }
end
function Shared:delete(key)
  self.calls.delete = self.calls.delete + 1
  self.data[key] = nil
end
function Shared:clear()
  self.calls.clear = self.calls.clear + 1
  self.data = {}
end

local hook_messages = h.hook_messages

describe("remote_cache (a Lua backend)", function()
  after_each(function() runtime.set_error_hook(nil) end)

  it("reads L1, then the remote, then the loader", h.in_run(function()
    local shared = Shared()
    local a = cache.AsyncCache{ remote_cache = shared }
    local b = cache.AsyncCache{ remote_cache = shared }
    local loads = 0
    local function loader(k) loads = loads + 1; return { key = k, n = loads } end
    assert.same({ key = "k", n = 1 }, a:get("k", loader)) -- remote miss, loaded
    sleep(0.01) -- the background write
    assert.equal(1, shared.calls.set)
    assert.same({ key = "k", n = 1 }, b:get("k", loader)) -- a remote hit: no load
    assert.equal(1, loads)
    assert.same({ key = "k", n = 1 }, b:get("k", loader)) -- now an L1 hit
    assert.equal(2, shared.calls.get) -- a's miss and b's first get only
    local m = b:get_metrics()
    assert.same({ 1, 0, 0 }, { m.remote_hits, m.remote_misses, m.remote_errors })
    assert.same({ 0, 1, 0 }, { a:get_metrics().remote_hits, a:get_metrics().remote_misses,
                               a:get_metrics().remote_errors })
  end))

  it("finds a key in the remote on a get without a loader", h.in_run(function()
    local shared = Shared()
    local a = cache.AsyncCache{ remote_cache = shared }
    local b = cache.AsyncCache{ remote_cache = shared }
    a:set("k", "from a")
    sleep(0.01)
    assert.equal("from a", b:get("k"))
    assert.is_nil(b:get("absent"))
    local r = {}
    for i = 1, 5 do spawn(function() r[i] = b:get("absent2") or "nil" end) end
    sleep(0.02)
    assert.same({ "nil", "nil", "nil", "nil", "nil" }, r)
    assert.equal(1, b:get_metrics().remote_hits)
    assert.equal(2, b:get_metrics().remote_misses) -- one lookup for the five
  end))

  it("get_many without a batch loader reads the missing keys from the remote", h.in_run(function()
    local shared = Shared()
    local a = cache.AsyncCache{ remote_cache = shared }
    local b = cache.AsyncCache{ remote_cache = shared }
    for i = 1, 10 do a:set(i, "v" .. i) end
    sleep(0.01)
    b:set(1, "local")
    local values, errors = b:get_many{ 1, 2, 3, 10, 11 }
    assert.same({ [1] = "local", [2] = "v2", [3] = "v3", [10] = "v10" }, values)
    assert.is_nil(errors)
    assert.equal(3, b:get_metrics().remote_hits)
    assert.equal(1, b:get_metrics().remote_misses)
  end))

  it("a batch looks its keys up in the remote before the batch loader", h.in_run(function()
    local shared = Shared()
    local a = cache.AsyncCache{ remote_cache = shared }
    for i = 1, 5 do a:set(i, "remote" .. i) end
    sleep(0.01)
    local batches = {}
    local b = cache.AsyncCache{ remote_cache = shared, batch_loader = function(keys)
      batches[#batches + 1] = table.concat(keys, ",")
      local r = {}
      for _, k in ipairs(keys) do r[k] = "loaded" .. k end
      return r
    end }
    local got = {}
    for i = 3, 8 do spawn(function() got[i] = b:get(i) end) end
    local values = b:get_many{ 1, 2, 9 }
    sleep(0.02)
    assert.same({ [1] = "remote1", [2] = "remote2", [9] = "loaded9" }, values)
    assert.same({ [3] = "remote3", [4] = "remote4", [5] = "remote5", [6] = "loaded6",
                  [7] = "loaded7", [8] = "loaded8" }, got)
    -- only the keys the remote did not have reached the batch loader
    table.sort(batches)
    local all = table.concat(batches, ";")
    assert.is_nil(all:find("1", 1, true) and all:find("remote", 1, true))
    for _, k in ipairs{ "6", "7", "8", "9" } do assert.truthy(all:find(k, 1, true)) end
    for _, k in ipairs{ "1", "2", "3", "4", "5" } do assert.falsy(all:find(k, 1, true)) end
  end))

  it("a batch the remote serves whole never calls the batch loader", h.in_run(function()
    local shared = Shared()
    local a = cache.AsyncCache{ remote_cache = shared }
    a:set("x", 1); a:set("y", 2)
    sleep(0.01)
    local calls = 0
    local b = cache.AsyncCache{ remote_cache = shared, batch_loader = function()
      calls = calls + 1
      return {}
    end }
    local values = b:get_many{ "x", "y" }
    assert.same({ x = 1, y = 2 }, values)
    assert.equal(0, calls)
    assert.equal(0, b:get_metrics().in_flight)
  end))

  it("outside a task, a get without a loader does not wait for the remote", function()
    local shared = Shared()
    local c = cache.AsyncCache{ remote_cache = shared }
    assert.is_nil(c:get("k"))
    assert.equal(0, shared.calls.get)
  end)

  it("keeps integers, floats and binary strings through the remote", h.in_run(function()
    local shared = Shared()
    local a = cache.AsyncCache{ remote_cache = shared }
    a:set("v", { 1, 1.0, "a\0b", { deep = true } })
    sleep(0.01)
    local b = cache.AsyncCache{ remote_cache = shared }
    local v = b:get("v", function() error("not to be called") end)
    assert.equal("integer", math.type(v[1]))
    assert.equal("float", math.type(v[2]))
    assert.equal("a\0b", v[3])
    assert.is_true(v[4].deep)
  end))

  it("fills L1 with the TTL the remote has left, not a fresh one", h.with_fake_clock(function(clock)
    local shared = Shared{ data = {} }
    local a = cache.AsyncCache{ remote_cache = shared, default_ttl = 100 }
    a:set("k", "v")
    clock:advance(0.01)
    assert.equal(100, shared.data.k.ttl)
    shared.data.k.ttl = 5 -- as if 95 s had passed in the remote
    local b = cache.AsyncCache{ remote_cache = shared, default_ttl = 100 }
    local r = h.go(function() return b:get("k", function() return "reloaded" end) end)
    clock:advance(0.01)
    assert.equal("v", r[1])
    clock:advance(4)
    assert.is_true(b:contains("k"))
    clock:advance(2)
    assert.is_false(b:contains("k"))
  end))

  it("looks a key up in the remote once for concurrent callers", h.in_run(function()
    local shared = Shared()
    local c = cache.AsyncCache{ remote_cache = shared }
    local loads, done = 0, 0
    for _ = 1, 50 do
      spawn(function()
        c:get("hot", function() loads = loads + 1; sleep(0.005); return "v" end)
        done = done + 1
      end)
    end
    sleep(0.05)
    assert.equal(50, done)
    assert.equal(1, shared.calls.get)
    assert.equal(1, loads)
  end))

  it("sends delete and clear to the remote", h.in_run(function()
    local shared = Shared()
    local c = cache.AsyncCache{ remote_cache = shared }
    c:set("a", 1)
    c:set("b", 2)
    sleep(0.01)
    c:delete("a")
    sleep(0.01)
    assert.is_nil(shared.data.a)
    assert.is_not_nil(shared.data.b)
    c:clear()
    sleep(0.01)
    assert.equal(1, shared.calls.clear)
    assert.is_nil(shared.data.b)
  end))

  it("keeps unencodable values in L1 only, counted", h.in_run(function()
    local shared = Shared()
    local c = cache.AsyncCache{ remote_cache = shared }
    c:set("fn", print)
    sleep(0.01)
    assert.equal(0, shared.calls.set)
    assert.equal(1, c:get_metrics().unencodable)
    assert.equal(print, c:get("fn"))
  end))

  it("works for decorated functions", h.in_run(function()
    local shared = Shared()
    local calls = 0
    local function add(a, b) calls = calls + 1; return a + b, "two" end
    local f = cache.AsyncLRU{ remote_cache = shared }(add)
    assert.same({ 3, "two" }, { f(1, 2) })
    sleep(0.01)
    local g = cache.AsyncLRU{ remote_cache = shared }(add)
    assert.same({ 3, "two" }, { g(1, 2) })
    assert.equal(1, calls)
  end))

  it("a raising backend never fails a get or a set", h.in_run(function()
    local msgs = hook_messages()
    local Broken = cache.RemoteCacheBackend:extend()
    function Broken:get() error("connection refused") end
    function Broken:set() error("connection refused") end
    function Broken:delete() return nil, "connection refused" end
    local c = cache.AsyncCache{ remote_cache = Broken() }
    assert.equal("loaded", c:get("k", function() return "loaded" end))
    c:set("x", 1)
    assert.is_true(c:delete("x"))
    sleep(0.01)
    assert.equal("loaded", c:get("k"))
    local m = c:get_metrics()
    -- the get, the write of the loaded value, the set, the delete
    assert.equal(4, m.remote_errors)
    assert.equal(4, #msgs)
    assert.matches("remote backend get%(%) failed: .*connection refused", msgs[1])
  end))

  it("a backend that answers garbage is a miss, and the loader runs", h.in_run(function()
    local msgs = hook_messages()
    local Garbage = cache.RemoteCacheBackend:extend()
    function Garbage:get() return "\xc1 not messagepack" end
    function Garbage:set() end
    function Garbage:delete() end
    local c = cache.AsyncCache{ remote_cache = Garbage() }
    assert.equal("fresh", c:get("k", function() return "fresh" end))
    assert.equal(1, c:get_metrics().remote_errors)
    local Wrong = cache.RemoteCacheBackend:extend()
    function Wrong:get() return 42 end
    function Wrong:set() end
    function Wrong:delete() end
    local w = cache.AsyncCache{ remote_cache = Wrong() }
    assert.equal("fresh", w:get("k", function() return "fresh" end))
    assert.matches("remote backend get%(%) failed: it must return a string of bytes or nil",
                   msgs[#msgs])
  end))

  it("a remote that never answers is bounded by load_timeout", h.with_fake_clock(function(clock)
    local Frozen = cache.RemoteCacheBackend:extend()
    function Frozen:get() sleep(1e9) end
    function Frozen:set() end
    function Frozen:delete() end
    local c = cache.AsyncCache{ remote_cache = Frozen(), load_timeout = 2 }
    local r = h.go(function() return c:get("k", function() return "v" end) end)
    clock:advance(2.5)
    assert.is_true(r.done)
    assert.same({ nil, "load timed out after 2 seconds" }, { r[1], r[2] })
    c:close()
  end))

  it("survives an error hook that closes the cache when the remote fails", h.in_run(function()
    local Broken = cache.RemoteCacheBackend:extend()
    function Broken:get() error("down") end
    function Broken:set() end
    function Broken:delete() end
    local c = cache.AsyncCache{ remote_cache = Broken() }
    runtime.set_error_hook(function() c:close() end)
    local v, err = c:get("k", function() return "v" end)
    assert.is_nil(v)
    assert.equal("the cache was closed while loading", err)
    assert.is_true(c:is_closed())
  end))

  it("refuses remote values a cache could never have written", h.in_run(function()
    local Liar = cache.RemoteCacheBackend:extend()
    function Liar:get() return self.bytes end
    function Liar:set() end
    function Liar:delete() end
    -- a decorated function's entry must be its packed results
    local calls = 0
    local f = cache.AsyncLRU{ remote_cache = Liar{ bytes = cache.codec.encode("not a table") } }(
      function(x) calls = calls + 1; return x * 2 end)
    assert.equal(42, f(21))
    assert.equal(1, calls)
    -- nil is never a cached value
    local loads = 0
    local c = cache.AsyncCache{ remote_cache = Liar{ bytes = cache.codec.encode(nil) } }
    assert.equal("v", c:get("k", function() loads = loads + 1; return "v" end))
    assert.equal(1, loads)
    assert.equal(1, c:get_metrics().remote_errors)
  end))

  it("outside a task, a get with a loader raises before anything starts", function()
    local shared = Shared()
    local c = cache.AsyncCache{ remote_cache = shared }
    local loads = 0
    assert.has_error(function() c:get("k", function() loads = loads + 1; return 1 end) end)
    assert.equal(0, c:get_metrics().in_flight)
    assert.equal(0, shared.calls.get)
    assert.equal(0, loads)
  end)

  it("rejects what is not a remote backend", function()
    assert.has_error(function() cache.AsyncCache{ remote_cache = {} } end,
      "opts.remote_cache must be a cache.RedisBackend or a backend with get, set and delete methods (see cache.RemoteCacheBackend), got table")
    assert.has_error(function() cache.AsyncLRU{ remote_cache = "redis://x" } end)
  end)

  it("the base class says what is missing", h.in_run(function()
    local msgs = hook_messages()
    local Half = cache.RemoteCacheBackend:extend()
    function Half:get() return nil end
    local c = cache.AsyncCache{ remote_cache = Half() }
    c:set("k", 1)
    sleep(0.01)
    assert.matches("remote backend set%(%) failed: .*cache.RemoteCacheBackend:set%(%) is not implemented", msgs[1])
    assert.equal(1, c:get("k"))
  end))
end)
