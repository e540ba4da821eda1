-- Robustness: inputs and call patterns that once crashed the runtime or
-- left callers waiting forever.  Each test states what a user observes:
-- an error message, a value, a load that is not left open.
local cache = require "cache"
local runtime = require "cache.runtime"
local h = require "helpers"

local run, sleep = runtime.run, runtime.sleep
local unpack = table.unpack

local function many(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

describe("robustness", function()
  describe("a loader that closes its own cache and then waits", function()
    it("gets its caller nil, \"the cache was closed while loading\"", h.in_run(function()
      local c = cache.AsyncCache()
      local v, err = c:get("k", function()
        c:close()
        sleep(0)
        return 1
      end)
      assert.is_nil(v)
      assert.equal("the cache was closed while loading", err)
    end))
  end)

  describe("an options table whose __index closes the cache", function()
    it("makes get and set raise \"the cache is closed\"", function()
      for _, method in ipairs{ "get", "set" } do
        local c = cache.AsyncCache()
        local opts = setmetatable({}, { __index = function() c:close() end })
        local ok, err = pcall(function()
          if method == "get" then return c:get("k", opts) end
          return c:set("k", 1, opts)
        end)
        assert.is_false(ok)
        assert.matches("the cache is closed", err, 1, true)
      end
    end)
  end)

  describe("many arguments", function()
    it("reach a decorated function, runtime.run and runtime.spawn intact", h.in_run(function()
      local f = cache.AsyncLRU()(function(...) return select("#", ...), select(200, ...) end)
      local n, last = f(unpack(many(200)))
      assert.equal(200, n)
      assert.equal(200, last)
      local done = runtime.event()
      runtime.spawn(function(...) done:set(select("#", ...)) end, unpack(many(200)))
      assert.equal(200, done:wait())
    end))

    it("too many for the stack: an error, and no load left open", h.in_run(function()
      local calls = 0
      local f = cache.AsyncLRU()(function() calls = calls + 1 end)
      local args = many(600000)
      for _ = 1, 2 do -- the second call would hang on a load left open
        local ok, err = pcall(f, unpack(args))
        assert.is_false(ok)
        assert.matches("too many arguments", err, 1, true)
      end
      assert.equal(0, calls)
      assert.equal(0, f:get_metrics().in_flight)
    end))
  end)

  describe("a batch loader's result", function()
    it("is read raw: an __index that raises cannot strand the callers", h.in_run(function()
      local c = cache.AsyncCache{ load_timeout = 5, batch_loader = function(keys)
        return setmetatable({ a = "A" }, { __index = function() error("boom in __index") end })
      end }
      local r = h.concurrently({ "a", "b" }, function(k) return c:get(k) end)
      assert.equal("A", r[1][1])
      assert.is_nil(r[2][1])
      assert.equal(0, c:get_metrics().in_flight)
    end))

    it("keeps only what it needs of many results", h.in_run(function()
      local c = cache.AsyncCache{ batch_loader = function(keys)
        return { a = 1 }, nil, unpack(many(100000))
      end }
      assert.equal(1, c:get("a"))
    end))
  end)

  describe("batch_window_ms longer than load_timeout", function()
    it("is cut to load_timeout: callers still get an answer", h.with_fake_clock(function(clock)
      local c = cache.AsyncCache{ batch_window_ms = 1e300, load_timeout = 0.05,
                                  batch_loader = function(keys) return { k = "v" } end }
      local r = h.go(c.get, c, "k")
      clock:advance(0.05)
      assert.equal("v", r[1])
    end))
  end)

  describe("a get_many whose coroutine is closed while it waits", function()
    it("does not crash when the loads finish", function()
      runtime.set_error_hook(function() end)
      finally(function() runtime.set_error_hook(nil) end)
      h.with_fake_clock(function(clock)
        local c = cache.AsyncCache{ batch_loader = function(keys)
          sleep(0.01)
          local out = {}
          for _, k in ipairs(keys) do out[k] = k end
          return out
        end }
        local th = runtime.spawn(function() c:get_many{ "x", "y" } end)
        sleep(0) -- th is now parked in get_many
        assert.is_true(coroutine.close(th))
        collectgarbage()
        collectgarbage()
        clock:advance(0.03) -- the batch finishes and wakes the (gone) group
        assert.equal("x", c:get("x"))
      end)()
    end)
  end)
end)

describe("get_many, found by review", function()
  it("files each result under the key asked for, even if the caller's keys table changes", h.in_run(function()
    local c = cache.AsyncCache{ maxsize = 10 }
    local started = runtime.event()
    runtime.spawn(function()
      c:get("a", function() started:set(); sleep(0) ; return "value of a" end)
    end)
    started:wait() -- "a" is loading
    local keys = { "a" }
    runtime.spawn(function() keys[1] = "zzz" end) -- runs while get_many waits
    local values, errors = c:get_many(keys)
    assert.same({ a = "value of a" }, values)
    assert.is_nil(errors)
  end))

  it("gives a timeout message even when the cache was closed before it resumed", function()
    h.with_fake_clock(function(clock)
      local c = cache.AsyncCache{ maxsize = 10, load_timeout = 0.05 }
      local got
      runtime.spawn(function()
        c:get("a", function() sleep(0.2); return 1 end)
        c:close() -- woken first, closes the cache
      end)
      runtime.spawn(function() got = table.pack(c:get_many{ "a" }) end)
      clock:advance(0.3)
      assert.same({}, got[1])
      assert.same({ a = "load timed out after 0.05 seconds" }, got[2])
    end)()
  end)
end)
