-- Specs of the decorators (cache.AsyncLRU, cache.AsyncTTL) and of the
-- invalidators (cache.AsyncLRUInvalidator, cache.AsyncTTLInvalidator): what
-- a user of a decorated function observes (its results and errors, how often
-- the wrapped function runs, metrics, messages).
--
-- Every test that needs the loop drives it itself with runtime.run (not
-- busted's async).  Concurrency is ordered with events and sleep(0) (one
-- pass of the scheduler: a function that sleeps 0 suspends until the
-- callers spawned with it have joined).  TTLs run on the fake clock
-- (h.with_fake_clock): a test steps to just before a deadline and onto it;
-- none sleeps for real.  No test asserts a duration, and every test waits
-- for the calls it starts.
local cache = require "cache"
local runtime = require "cache.runtime"
local h = require "helpers"

local spawn, sleep = runtime.spawn, runtime.sleep
local pack = table.pack
local in_run, counted, spawn_all, error_of = h.in_run, h.counted, h.spawn_all, h.error_of
local with_fake_clock = h.with_fake_clock

-- Decorates a counting function: returns the decorated function and the
-- stats of fn.
local function lru(opts, fn)
  local s = counted(fn)
  return cache.AsyncLRU(opts)(s.fn), s
end

local function identity(...) return ... end

-- Tests shared by AsyncLRU and AsyncTTL (called inside their describe).
local function common(kind)
  local decorate = cache[kind]

  it("returns a decorated function that is recognised as one", function()
    local f = decorate()(identity)
    assert.is_true(require("cache.decorators").is_decorated(f))
    assert.is_false(require("cache.decorators").is_decorated(identity))
    assert.equal(identity, f:func())
    assert.matches("^decorated function: ", tostring(f))
  end)

  it("takes the decorated function's arguments and gives back its result", in_run(function()
    local s = counted(function(a, b) return a .. "+" .. b end)
    local f = decorate()(s.fn)
    assert.equal("x+y", f("x", "y"))
    assert.same({ n = 2, "x", "y" }, s.args[1])
  end))

  it("decorates a callable table", in_run(function()
    local calls = 0
    local double = setmetatable({}, { __call = function(_, x) calls = calls + 1; return 2 * x end })
    local f = decorate()(double)
    assert.equal(42, f(21))
    assert.equal(42, f(21))
    assert.equal(1, calls)
  end))
end

describe("cache.AsyncLRU", function()
  common("AsyncLRU")

  describe("calling the decorated function", function()
    it("gives all of the function's results, nils inside and at the end included", in_run(function()
      local f, s = lru(nil, function() return 1, nil, "three", nil, nil end)
      for _ = 1, 2 do -- a miss, then a hit
        local r = pack(f())
        assert.equal(5, r.n)
        assert.same({ n = 5, 1, nil, "three", nil, nil }, r)
      end
      assert.equal(1, s.calls)
    end))

    it("gives no results when the function returns none, and caches nothing", in_run(function()
      local f, s = lru(nil, function() end)
      assert.equal(0, select("#", f()))
      assert.equal(0, select("#", f()))
      assert.equal(2, s.calls)
    end))

    it("does not cache a nil result, as AsyncCache does not cache a loader's nil", in_run(function()
      local f, s = lru(nil, function() return nil, "not found" end)
      assert.same({ n = 2, nil, "not found" }, pack(f("k")))
      assert.same({ n = 2, nil, "not found" }, pack(f("k")))
      assert.equal(2, s.calls)
      assert.equal(0, f:get_metrics().size)
      -- Concurrent equal calls still share the one call that returned nil.
      local g, t = lru(nil, function() sleep(0); return nil end)
      local r = h.spawn_all(5, function() return g("k") end)
      assert.equal(1, t.calls)
      for i = 1, 5 do assert.same({ n = 1 }, r[i]) end
    end))

    it("gives every result of a function that yields before returning", in_run(function()
      local f, s = lru(nil, function(a) sleep(0); return a, nil, a * 2, nil end)
      assert.same({ n = 4, 3, nil, 6, nil }, pack(f(3)))
      assert.same({ n = 4, 3, nil, 6, nil }, pack(f(3)))
      assert.equal(1, s.calls)
    end))

    it("raises the function's string error unchanged, and caches nothing", in_run(function()
      local f, s = lru(nil, function(x) error("no user " .. x) end)
      assert.has_error(function() f(7) end, "no user 7")
      assert.has_error(function() f(7) end, "no user 7")
      assert.equal(2, s.calls) -- a failure is not cached
      assert.equal(0, f:get_metrics().size)
    end))

    it("raises the function's table error object itself", in_run(function()
      local e = { code = 404 }
      local f = lru(nil, function() error(e) end)
      assert.equal(e, error_of(f, 1))
      -- after a yield too
      local g = lru(nil, function() sleep(0); error(e) end)
      assert.equal(e, error_of(g, 1))
    end))

    it("raises the error to every concurrent caller that joined the call", in_run(function()
      local e = { code = 500 }
      local f, s = lru(nil, function(kind)
        sleep(0)
        if kind == "table" then error(e) end
        error("db down")
      end)
      local r = spawn_all(10, function(i) return f(i % 2 == 0 and "table" or "string") end)
      assert.equal(2, s.calls)
      local message
      for i = 1, 10 do
        assert.is_false(r[i].ok)
        if i % 2 == 0 then
          assert.equal(e, r[i].err)
        else
          assert.matches("db down$", r[i].err)
          message = message or r[i].err
          assert.equal(message, r[i].err) -- the very same message, position included
        end
      end
      assert.equal(0, f:get_metrics().size)
    end))

    it("runs the function once for 1,000 concurrent equal calls", in_run(function()
      local f, s = lru(nil, function(k) sleep(0); return k .. "!", 2 end)
      local r = spawn_all(1000, function() return f("hot") end)
      assert.equal(1, s.calls)
      for i = 1, 1000 do assert.same({ n = 2, "hot!", 2 }, r[i]) end
      local m = f:get_metrics()
      assert.equal(1, m.loads)
      assert.equal(1, m.size)
      assert.equal("hot!", f("hot"))
      assert.equal(1, s.calls)
    end))

    it("runs the function once per distinct arguments among concurrent calls", in_run(function()
      local f, s = lru(nil, function(k) sleep(0); return k * 10 end)
      local r = spawn_all(30, function(i) return f(i % 3) end)
      assert.equal(3, s.calls)
      for i = 1, 30 do assert.equal((i % 3) * 10, r[i][1]) end
    end))
  end)

  describe("keys", function()
    it("equal strings, numbers and booleans hit the same entry", in_run(function()
      local f, s = lru(nil, identity)
      f("abc", 1, true, false)
      f("ab" .. "c", 1, true, false)
      assert.equal(1, s.calls)
      f("abc\0", 1, true, false) -- embedded zeros count
      assert.equal(2, s.calls)
    end))

    it("1 and 1.0 are the same argument", in_run(function()
      local f, s = lru(nil, identity)
      assert.equal(1, f(1))
      assert.equal(1, f(1.0))
      assert.equal(1, f(2 / 2))
      assert.equal(1, s.calls)
      f(1.5)
      assert.equal(1.5, f(3 / 2))
      assert.equal(2, s.calls)
      f(-0.0); f(0) -- -0.0 == 0
      assert.equal(3, s.calls)
      f(0 / 0); f(0 / 0) -- NaN: one entry, though NaN ~= NaN
      assert.equal(4, s.calls)
    end))

    it("values of different types differ", in_run(function()
      local f, s = lru(nil, function(x) return type(x) end)
      assert.equal("string", f("1"))
      assert.equal("number", f(1))
      assert.equal("boolean", f(true))
      assert.equal("boolean", f(false))
      assert.equal("nil", f(nil))
      assert.equal("table", f({}))
      assert.equal("table", f({ 1 }))
      assert.equal("table", f({ "1" }))
      assert.equal(8, s.calls)
    end))

    it("counts nil arguments, in the middle and at the end", in_run(function()
      local f, s = lru(nil, function(...) return select("#", ...) end)
      assert.equal(3, f(1, nil, 2))
      assert.equal(2, f(1, 2))
      assert.equal(1, f(1))
      assert.equal(2, f(1, nil))
      assert.equal(3, f(1, nil, nil))
      assert.equal(0, f())
      assert.equal(1, f(nil))
      assert.equal(7, s.calls)
      -- and each is a hit the second time
      assert.equal(3, f(1, nil, 2))
      assert.equal(2, f(1, nil))
      assert.equal(1, f(nil))
      assert.equal(7, s.calls)
    end))

    it("keys tables by their contents, nested, whatever the insertion order", in_run(function()
      local f, s = lru(nil, function(t) return t end)
      local a = { 1, 2, x = "y", [true] = false, nested = { p = 1, q = { 2, 3 } } }
      local b = {}
      b.nested = { q = { 2, 3 } }
      b.nested.p = 1
      b[true] = false
      b.x = "y"
      b[2] = 2
      b[1] = 1
      assert.equal(a, f(a))
      assert.equal(a, f(b)) -- the entry of a
      assert.equal(1, s.calls)
      -- many keys: the hash order of two tables inserted in opposite orders differs
      local up, down = {}, {}
      for i = 1, 200 do up["k" .. i] = i end
      for i = 200, 1, -1 do down["k" .. i] = i end
      f(up)
      assert.equal(up, f(down))
      assert.equal(2, s.calls)
    end))

    it("tables with different contents differ", in_run(function()
      local f, s = lru(nil, identity)
      f({ a = 1 })
      f({ a = 2 })
      f({ b = 1 })
      f({ a = 1, b = 1 })
      f({ a = { 1 } })
      f({ a = { 2 } })
      f({ a = { "1" } })
      f({ 1, 2 })
      f({ 2, 1 })
      f({ [1] = 1 }) -- == { 1 }
      f({ 1 })
      assert.equal(10, s.calls)
    end))

    it("keys a table by contents at the time of the call", in_run(function()
      local f, s = lru(nil, function(t) return t.v end)
      local t = { v = 1 }
      assert.equal(1, f(t))
      t.v = 2
      assert.equal(2, f(t)) -- new contents, new entry
      assert.equal(1, f({ v = 1 }))
      assert.equal(2, s.calls)
    end))

    it("keys functions, userdata and threads by identity", in_run(function()
      local f, s = lru(nil, function(x) return tostring(x) end)
      local function make(n) return function() return n end end
      local fa, fb = make(1), make(1)
      f(fa); f(fa)
      assert.equal(1, s.calls)
      f(fb)
      assert.equal(2, s.calls)
      f(io.stdout); f(io.stdout)
      assert.equal(3, s.calls)
      f(io.stderr)
      assert.equal(4, s.calls)
      local co1, co2 = coroutine.create(identity), coroutine.create(identity)
      f(co1); f(co1)
      assert.equal(5, s.calls)
      f(co2)
      assert.equal(6, s.calls)
      -- inside tables as well
      f({ cb = fa }); f({ cb = fa })
      assert.equal(7, s.calls)
      f({ cb = fb })
      assert.equal(8, s.calls)
    end))

    it("keeps an identity-keyed argument alive while its entry lives", in_run(function()
      local f, s = lru(nil, function(fn) return fn() end)
      for i = 1, 50 do f(function() return i end) end
      collectgarbage()
      collectgarbage()
      -- new closures cannot reuse the address of a cached one: each is a miss
      for i = 1, 50 do assert.equal(-i, f(function() return -i end)) end
      assert.equal(100, s.calls)
    end))

    it("raises 'cyclic table argument' for a cyclic table, and calls nothing", in_run(function()
      local f, s = lru(nil, identity)
      local t = { name = "loop" }
      t.self = t
      assert.has_error(function() f(t) end, "cyclic table argument")
      local a, b = {}, {}
      a.b, b.a = b, a
      assert.has_error(function() f(1, { x = a }) end, "cyclic table argument")
      assert.equal(0, s.calls)
      -- a table seen twice without a cycle is fine
      local shared = { 1 }
      assert.same({ shared, shared }, f({ shared, shared }))
      assert.equal(1, s.calls)
    end))
  end)

  describe("skip_args", function()
    it("leaves self out of the key of a method: two selfs share an entry", in_run(function()
      local calls = 0
      local Repo = {}
      Repo.find = cache.AsyncLRU{ skip_args = 1 }(function(self, id)
        calls = calls + 1
        return self.name .. ":" .. id
      end)
      local r1 = setmetatable({ name = "r1" }, { __index = Repo })
      local r2 = setmetatable({ name = "r2" }, { __index = Repo })
      assert.equal("r1:1", r1:find(1))
      assert.equal("r1:1", r2:find(1)) -- the entry of r1:find(1)
      assert.equal(1, calls)
      assert.equal("r2:2", r2:find(2))
      assert.equal(2, calls)
      -- invalidate_cache takes the same arguments as a call, self included
      assert.is_true(Repo.find:invalidate_cache(r2, 1))
      assert.equal("r2:1", r2:find(1))
      assert.equal(3, calls)
    end))

    it("skip_args = 0 keeps every argument in the key", in_run(function()
      local f, s = lru({ skip_args = 0 }, function(a, b) return a .. b end)
      f("a", "b"); f("x", "b")
      assert.equal(2, s.calls)
    end))

    it("skip_args = 2 leaves the first two out", in_run(function()
      local f, s = lru({ skip_args = 2 }, function(a, b, c) return a .. b .. c end)
      assert.equal("abc", f("a", "b", "c"))
      assert.equal("abc", f("x", "y", "c"))
      assert.equal("xyd", f("x", "y", "d"))
      assert.equal(2, s.calls)
    end))
  end)

  describe("maxsize", function()
    it("evicts the least recently used entry beyond maxsize", in_run(function()
      local f, s = lru({ maxsize = 2 }, function(x) return x * 10 end)
      f(1); f(2)
      assert.equal(10, f(1)) -- 1 is now more recent than 2
      f(3) -- evicts 2
      assert.equal(3, s.calls)
      assert.equal(10, f(1))
      assert.equal(30, f(3))
      assert.equal(3, s.calls)
      assert.equal(20, f(2))
      assert.equal(4, s.calls)
      local m = f:get_metrics()
      assert.equal(2, m.size)
      assert.equal(2, m.maxsize)
      assert.equal(2, m.evictions)
    end))

    it("defaults to 128 entries", in_run(function()
      local f = lru(nil, identity)
      for i = 1, 200 do f(i) end
      assert.equal(128, f:get_metrics().size)
      assert.equal(128, f:get_metrics().maxsize)
    end))

    it("gives each decorated function a cache of its own", in_run(function()
      local deco = cache.AsyncLRU{ maxsize = 1 }
      local sf, sg = counted(identity), counted(identity)
      local f, g = deco(sf.fn), deco(sg.fn)
      f(1); g(1); f(1); g(1)
      assert.equal(1, sf.calls)
      assert.equal(1, sg.calls)
      assert.are_not.equal(f:cache(), g:cache())
    end))
  end)

  describe(":invalidate_cache()", function()
    it("removes the entry of a call with the same arguments and says so", in_run(function()
      local f, s = lru(nil, function(a, b) return a .. (b or "") end)
      f("a", "b"); f("a")
      assert.is_true(f:invalidate_cache("a", "b"))
      assert.is_false(f:invalidate_cache("a", "b"))
      assert.is_false(f:invalidate_cache("zzz"))
      assert.is_false(f:invalidate_cache("a", nil)) -- f("a", nil) is another call than f("a")
      assert.equal(1, f:get_metrics().size)
      assert.equal("a", f("a"))
      assert.equal(2, s.calls)
      assert.equal("ab", f("a", "b"))
      assert.equal(3, s.calls)
    end))

    it("takes equal arguments: tables by contents, 1.0 for 1", in_run(function()
      local f = lru(nil, identity)
      f({ k = { 1, 2 } }, 1)
      assert.is_true(f:invalidate_cache({ k = { 1, 2 } }, 1.0))
    end))

    it("during a call, keeps that call's result out of the cache", in_run(function()
      local gate = runtime.event()
      local f, s = lru(nil, function(x) gate:wait(); return x end)
      local done = runtime.event()
      spawn(function() done:set(f("k")) end)
      sleep(0)
      assert.is_false(f:invalidate_cache("k")) -- nothing cached yet
      gate:set()
      assert.equal("k", done:wait()) -- the caller still gets its result
      assert.equal(0, f:get_metrics().size)
      f("k")
      assert.equal(2, s.calls)
    end))

    it("during a call, makes later calls run the function afresh instead of joining", in_run(function()
      local version, gate = 1, runtime.event()
      local f, s = lru(nil, function(x) local v = version; gate:wait(); return x .. v end)
      local done = runtime.event()
      spawn(function() done:set(f("k")) end)
      sleep(0)
      version = 2
      f:invalidate_cache("k")
      spawn(function() gate:set() end)
      assert.equal("k2", f("k")) -- not the "k1" of the call in progress
      assert.equal("k1", done:wait())
      assert.equal(2, s.calls)
      assert.equal("k2", f("k"))
      assert.equal(2, s.calls)
    end))
  end)

  describe(":cache_clear()", function()
    it("removes every entry", in_run(function()
      local f, s = lru(nil, identity)
      f(1); f(2); f(3)
      f:cache_clear()
      assert.equal(0, f:get_metrics().size)
      f(1); f(2)
      assert.equal(5, s.calls)
    end))
  end)

  describe(":get_metrics()", function()
    it("counts hits, misses and size", in_run(function()
      local f = lru(nil, identity)
      f(1); f(1); f(1); f(2)
      local m = f:get_metrics()
      assert.equal(2, m.hits)
      assert.equal(2, m.misses)
      assert.equal(2, m.size)
      assert.equal(0.5, m.hit_rate)
      assert.equal(2, m.loads)
      assert.equal(128, m.maxsize)
    end))

    it("counts a failed call as a load error", in_run(function()
      local f = lru(nil, function() error("x") end)
      pcall(f)
      local m = f:get_metrics()
      assert.equal(1, m.misses)
      assert.equal(1, m.load_errors)
      assert.equal(0, m.size)
    end))
  end)

  describe(":bypass()", function()
    it("calls the function even on a hit and refreshes the entry", in_run(function()
      local version = 1
      local f, s = lru(nil, function(id) return id .. "@v" .. version, nil end)
      assert.equal("u@v1", f("u"))
      version = 2
      assert.equal("u@v1", f("u")) -- a hit
      assert.same({ n = 2, "u@v2", nil }, pack(f:bypass("u")))
      assert.equal(2, s.calls)
      assert.same({ n = 2, "u@v2", nil }, pack(f("u"))) -- the refreshed entry, no call
      assert.equal(2, s.calls)
    end))

    it("stores the result of a call that was not cached yet", in_run(function()
      local f, s = lru(nil, function(x) return x + 1 end)
      assert.equal(2, f:bypass(1))
      assert.equal(2, f(1))
      assert.equal(1, s.calls)
    end))

    it("works with a function that yields", in_run(function()
      local n = 0
      local f = lru(nil, function() sleep(0); n = n + 1; return n end)
      assert.equal(1, f())
      assert.equal(2, f:bypass())
      assert.equal(2, f())
    end))

    it("raises the function's error and keeps the old entry", in_run(function()
      local fail = false
      local f = lru(nil, function() if fail then error("down") end; return "ok" end)
      f()
      fail = true
      assert.has_error(function() f:bypass() end, "down")
      assert.equal("ok", f())
    end))

    it("refreshes the entry of a method call (skip_args)", in_run(function()
      local n = 0
      local m = cache.AsyncLRU{ skip_args = 1 }(function(self, x) n = n + 1; return self.tag .. x .. n end)
      local a, b = { tag = "a" }, { tag = "b" }
      assert.equal("ax1", m(a, "x"))
      assert.equal("bx2", m:bypass(b, "x"))
      assert.equal("bx2", m(a, "x"))
      assert.equal(2, n)
    end))
  end)

  describe("options", function()
    it("rejects an unknown option, naming it", function()
      assert.has_error(function() cache.AsyncLRU{ max_size = 3 } end,
        "cache.AsyncLRU: unknown option 'max_size'")
      assert.has_error(function() cache.AsyncLRU{ time_to_live = 3 } end,
        "cache.AsyncLRU: unknown option 'time_to_live'")
      assert.has_error(function() cache.AsyncLRU{ default_ttl = 3 } end,
        "cache.AsyncLRU: unknown option 'default_ttl'")
    end)

    it("rejects opts that are not a table", function()
      assert.has_error(function() cache.AsyncLRU(128) end,
        "cache.AsyncLRU: opts must be a table, got number")
    end)

    it("rejects a bad maxsize", function()
      assert.has_error(function() cache.AsyncLRU{ maxsize = 0 } end,
        "opts.maxsize must be between 1 and 2147483647, got 0")
      assert.has_error(function() cache.AsyncLRU{ maxsize = -5 } end,
        "opts.maxsize must be between 1 and 2147483647, got -5")
      assert.has_error(function() cache.AsyncLRU{ maxsize = 2.5 } end,
        "opts.maxsize must be a positive integer, got 2.5")
      assert.has_error(function() cache.AsyncLRU{ maxsize = true } end,
        "opts.maxsize must be a positive integer, got true")
      assert.equal(3, cache.AsyncLRU{ maxsize = 3.0 }(identity):get_metrics().maxsize)
    end)

    it("rejects a bad skip_args", function()
      assert.has_error(function() cache.AsyncLRU{ skip_args = -1 } end,
        "opts.skip_args must be a non-negative integer, got -1")
      assert.has_error(function() cache.AsyncLRU{ skip_args = 1.5 } end,
        "opts.skip_args must be a non-negative integer, got 1.5")
      assert.has_error(function() cache.AsyncLRU{ skip_args = true } end,
        "opts.skip_args must be a non-negative integer, got true")
    end)

    it("rejects a backup that is not a backend", function()
      assert.has_error(function() cache.AsyncLRU{ backup = {} } end,
        "opts.backup must be a cache.DiskBackend or a backend with load and save methods (see cache.CacheBackend), got table")
      assert.has_error(function() cache.AsyncLRU{ autosave_interval = 1 } end,
        "opts.autosave_interval needs opts.backup (where to save)")
    end)

    it("rejects a decorated value that is not a function", function()
      assert.has_error(function() cache.AsyncLRU()(42) end,
        "cache.AsyncLRU: the decorated value must be a function, got number")
      assert.has_error(function() cache.AsyncLRU{ maxsize = 2 }({}) end,
        "cache.AsyncLRU: the decorated value must be a function, got table")
      assert.has_error(function() cache.AsyncLRU()() end,
        "cache.AsyncLRU: the decorated value must be a function, got nil")
    end)

    it("raises option errors at the line of the cache.AsyncLRU{...} / AsyncTTL{...} call", function()
      local src = debug.getinfo(1, "S").short_src
      local function make(kind, opts)
        local d = cache[kind](opts); return d -- the line errors must point at
      end
      local line = debug.getinfo(make, "S").linedefined + 1
      -- checked in cache.decorators itself: right
      assert.equal(("%s:%d: cache.AsyncLRU: unknown option 'x'"):format(src, line),
        select(2, pcall(make, "AsyncLRU", { x = 1 })))
      assert.equal(("%s:%d: opts.time_to_live must be a positive number of seconds or nil, got 0"):format(src, line),
        select(2, pcall(make, "AsyncTTL", { time_to_live = 0 })))
      -- the cache options are checked in cache.async_cache, below a call
      -- that must not be a tail call (it was: the error named pcall here)
      assert.equal(("%s:%d: opts.maxsize must be between 1 and 2147483647, got 0"):format(src, line),
        select(2, pcall(make, "AsyncLRU", { maxsize = 0 })))
      assert.equal(("%s:%d: opts.backup must be a cache.DiskBackend or a backend with load and save methods (see cache.CacheBackend), got table"):format(src, line),
        select(2, pcall(make, "AsyncTTL", { backup = {} })))
    end)

    it("rejects a maxsize or skip_args given as a string, saying it got a string", function()
      -- (the message once read "got 64", as if the number 64 were refused)
      assert.has_error(function() cache.AsyncLRU{ maxsize = "64" } end,
        'opts.maxsize must be a positive integer, got string "64"')
      assert.has_error(function() cache.AsyncLRU{ skip_args = "1" } end,
        'opts.skip_args must be a non-negative integer, got string "1"')
    end)
  end)
end)

describe("cache.AsyncTTL", function()
  common("AsyncTTL")
  local function ttl(opts, fn)
    local s = counted(fn)
    return cache.AsyncTTL(opts)(s.fn), s
  end

  it("caches results like AsyncLRU, for concurrent calls too", in_run(function()
    local f, s = ttl({ time_to_live = 60 }, function(a, b) sleep(0); return a, b, nil end)
    local r = spawn_all(50, function() return f(1, { x = 1 }) end)
    assert.equal(1, s.calls)
    for i = 1, 50 do
      assert.equal(3, r[i].n)
      assert.equal(1, r[i][1])
      assert.same({ x = 1 }, r[i][2])
    end
  end))

  -- On the fake clock (time starts at 0): a result cached at 0 with
  -- time_to_live t is returned until t - 0.001 and is gone at t.
  it("expires an entry after time_to_live seconds", with_fake_clock(function(clock)
    local n = 0
    local f, s = ttl({ time_to_live = 1 }, function(k) n = n + 1; return k .. n end)
    assert.equal("a1", f("a"))
    clock:advance(0.999)
    assert.equal("a1", f("a"))
    assert.equal(1, s.calls)
    clock:advance(0.001)
    assert.equal("a2", f("a"))
    assert.equal(2, s.calls)
    assert.equal("a2", f("a")) -- the new entry lives on
    assert.equal(2, s.calls)
    assert.equal(1, f:get_metrics().expirations)
  end))

  it("does not expire an entry before time_to_live", with_fake_clock(function(clock)
    local f, s = ttl({ time_to_live = 30 }, identity)
    f(1)
    clock:advance(29.999)
    f(1)
    assert.equal(1, s.calls)
    assert.equal(0, f:get_metrics().expirations)
  end))

  it("never expires entries when time_to_live is nil", with_fake_clock(function(clock)
    local f, s = ttl({ time_to_live = nil }, identity)
    f(1)
    local g, sg = ttl(nil, identity)
    g(1)
    clock:advance(86400)
    f(1)
    assert.equal(1, s.calls)
    g(1)
    assert.equal(1, sg.calls)
    assert.equal(0, f:get_metrics().expirations)
    assert.equal(0, g:get_metrics().expirations)
  end))

  it("also evicts beyond maxsize (default 1024)", in_run(function()
    local f, s = ttl({ time_to_live = 60, maxsize = 2 }, identity)
    f(1); f(2); f(3)
    f(1)
    assert.equal(4, s.calls)
    assert.equal(1024, ttl(nil, identity):get_metrics().maxsize)
  end))

  it("skip_args = 1 leaves self out of the key", in_run(function()
    local get = cache.AsyncTTL{ time_to_live = 60, skip_args = 1 }(function(self, id) return self.n + id end)
    assert.equal(11, get({ n = 10 }, 1))
    assert.equal(11, get({ n = 20 }, 1))
  end))

  it("has the methods of a decorated function", in_run(function()
    local f, s = ttl({ time_to_live = 60 }, function(x) return x end)
    f(1); f(2)
    assert.is_true(f:invalidate_cache(1))
    assert.is_false(f:invalidate_cache(1))
    assert.equal(1, f:get_metrics().size)
    f:cache_clear()
    assert.equal(0, f:get_metrics().size)
    assert.equal(3, f:bypass(3))
    assert.equal(3, f(3))
    assert.equal(3, s.calls)
  end))

  it("raises the function's error", in_run(function()
    local e = {}
    local f = ttl({ time_to_live = 1 }, function() error(e) end)
    assert.equal(e, error_of(f))
  end))

  describe("options", function()
    it("rejects a time_to_live that is not a positive number", function()
      assert.has_error(function() cache.AsyncTTL{ time_to_live = 0 } end,
        "opts.time_to_live must be a positive number of seconds or nil, got 0")
      assert.has_error(function() cache.AsyncTTL{ time_to_live = -1 } end,
        "opts.time_to_live must be a positive number of seconds or nil, got -1")
      assert.has_error(function() cache.AsyncTTL{ time_to_live = false } end,
        "opts.time_to_live must be a positive number of seconds or nil, got false")
      assert.error_matches(function() cache.AsyncTTL{ time_to_live = 0 / 0 } end,
        "^opts%.time_to_live must be a positive number of seconds or nil, got %-?nan$")
    end)

    it("rejects a time_to_live given as a string, saying it got a string", function()
      -- (the message once read "got 60", as if the number 60 were refused)
      assert.has_error(function() cache.AsyncTTL{ time_to_live = "60" } end,
        'opts.time_to_live must be a positive number of seconds or nil, got string "60"')
    end)

    it("rejects an unknown option, naming it", function()
      assert.has_error(function() cache.AsyncTTL{ ttl = 60 } end,
        "cache.AsyncTTL: unknown option 'ttl'")
      assert.has_error(function() cache.AsyncTTL{ timeToLive = 60 } end,
        "cache.AsyncTTL: unknown option 'timeToLive'")
    end)

    it("rejects a bad maxsize or skip_args", function()
      assert.has_error(function() cache.AsyncTTL{ time_to_live = 1, maxsize = 0 } end,
        "opts.maxsize must be between 1 and 2147483647, got 0")
      assert.has_error(function() cache.AsyncTTL{ skip_args = -2 } end,
        "opts.skip_args must be a non-negative integer, got -2")
    end)

    it("rejects a backup given as a path: it takes a backend", function()
      assert.has_error(function() cache.AsyncTTL{ backup = "/tmp/x.pkl" } end,
        'opts.backup must be a cache.DiskBackend or a backend with load and save methods (see cache.CacheBackend), got string "/tmp/x.pkl"')
    end)

    it("rejects a decorated value that is not a function", function()
      assert.has_error(function() cache.AsyncTTL{ time_to_live = 1 }("f") end,
        "cache.AsyncTTL: the decorated value must be a function, got string")
    end)
  end)
end)

describe("cache.AsyncLRUInvalidator / AsyncTTLInvalidator", function()
  -- The seed README's example: get_user cached, update_user invalidating it.
  -- get_user declares one parameter (no vararg wrapper: the default key is
  -- cut to the cached function's parameter count).
  local function users()
    local db = { [1] = { name = "Bob" }, [2] = { name = "Eve" } }
    local reads = { calls = 0 }
    local get_user = cache.AsyncLRU{ maxsize = 128 }(function(id)
      reads.calls = reads.calls + 1
      return db[id] and db[id].name
    end)
    return db, get_user, reads
  end

  for _, kind in ipairs{ "AsyncLRUInvalidator", "AsyncTTLInvalidator" } do
    it(kind .. ": miss, hit, update invalidates, miss again", in_run(function()
      local db, get_user, reads = users()
      local update_user = cache[kind](get_user)(function(id, data) db[id] = data end)
      assert.equal("Bob", get_user(1)) -- miss
      assert.equal("Bob", get_user(1)) -- hit
      assert.equal(1, reads.calls)
      update_user(1, { name = "Alice" })
      assert.equal("Alice", get_user(1)) -- miss: reloads
      assert.equal(2, reads.calls)
      assert.equal("Alice", get_user(1))
      assert.equal(2, reads.calls)
    end))
  end

  it("works on AsyncTTL functions", in_run(function()
    local n = 0
    local get = cache.AsyncTTL{ time_to_live = 60 }(function(id) n = n + 1; return id .. n end)
    local put = cache.AsyncTTLInvalidator(get)(function(id) end)
    assert.equal("a1", get("a"))
    put("a")
    assert.equal("a2", get("a"))
  end))

  it("leaves the entries of other arguments alone", in_run(function()
    local db, get_user, reads = users()
    local update_user = cache.AsyncLRUInvalidator(get_user)(function(id, data) db[id] = data end)
    get_user(1); get_user(2)
    update_user(1, { name = "Alice" })
    assert.equal("Eve", get_user(2))
    assert.equal(2, reads.calls)
  end))

  it("returns every result of the mutation, nils included", in_run(function()
    local _, get_user = users()
    local m = cache.AsyncLRUInvalidator(get_user)(function(id) sleep(0); return nil, id, nil end)
    assert.same({ n = 3, nil, 7, nil }, pack(m(7)))
  end))

  it("invalidates before the mutation runs", in_run(function()
    local db, get_user, reads = users()
    local seen
    local update_user = cache.AsyncLRUInvalidator(get_user)(function(id, data)
      seen = get_user:get_metrics().size
      db[id] = data
    end)
    get_user(1)
    assert.equal(1, get_user:get_metrics().size)
    update_user(1, { name = "Alice" })
    assert.equal(0, seen)
    assert.equal(1, reads.calls)
  end))

  it("serves no stale data when the mutation raises, and raises its error unchanged", in_run(function()
    local db, get_user = users()
    local e = { code = "conflict" }
    local update_user = cache.AsyncLRUInvalidator(get_user)(function(id, data, how)
      db[id] = data -- written before failing
      if how == "table" then error(e) end
      error("write failed")
    end)
    assert.equal("Bob", get_user(1))
    assert.has_error(function() update_user(1, { name = "Alice" }, "string") end, "write failed")
    assert.equal("Alice", get_user(1))
    assert.equal(e, error_of(update_user, 1, { name = "Carol" }, "table"))
    assert.equal("Carol", get_user(1))
  end))

  it("keys by the mutation's arguments cut to the cached function's parameter count", in_run(function()
    local _, get_user = users()
    local update_user = cache.AsyncLRUInvalidator(get_user)(function(id, data, extra) end)
    get_user(1)
    assert.equal(1, get_user:get_metrics().size)
    update_user(1, { name = "Alice" }, "more") -- invalidates get_user(1)
    assert.equal(0, get_user:get_metrics().size)
    -- fewer arguments than the cached function takes: all of them
    local calls = 0
    local get2 = cache.AsyncLRU()(function(a, b) calls = calls + 1; return a end)
    local upd = cache.AsyncLRUInvalidator(get2)(function(...) end)
    get2("x"); get2("x", "y")
    upd("x")
    get2("x")
    assert.equal(3, calls) -- get2("x") reloaded ...
    get2("x", "y")
    assert.equal(3, calls) -- ... get2("x", "y") untouched
    upd("x", "y", "z")
    get2("x", "y")
    assert.equal(4, calls)
  end))

  it("keys by all the mutation's arguments for a vararg cached function", in_run(function()
    local calls = 0
    local get = cache.AsyncLRU()(function(...) calls = calls + 1; return select("#", ...) end)
    local upd = cache.AsyncLRUInvalidator(get)(function(...) end)
    get(1, 2, 3); get(1)
    upd(1, 2, 3)
    get(1, 2, 3); get(1)
    assert.equal(3, calls)
  end))

  it("keys a method by self and its arguments (the cached function's skip_args applies)", in_run(function()
    local calls = 0
    local Repo = {}
    Repo.find = cache.AsyncLRU{ skip_args = 1 }(function(self, id) calls = calls + 1; return id end)
    Repo.save = cache.AsyncLRUInvalidator(Repo.find)(function(self, id, data) end)
    local r = setmetatable({}, { __index = Repo })
    r:find(1); r:find(2)
    r:save(1, "data")
    r:find(1); r:find(2)
    assert.equal(3, calls)
  end))

  describe("key_fn", function()
    it("maps the mutation's arguments to the cached function's", in_run(function()
      local db, get_user, reads = users()
      local seen
      local update_profile = cache.AsyncLRUInvalidator(get_user, {
        key_fn = function(args, n)
          seen = { args = args, n = n }
          return { args[2] }
        end,
      })(function(name, id) db[id] = { name = name } end)
      get_user(1)
      update_profile("Alice", 1, nil)
      assert.same({ n = 3, "Alice", 1 }, seen.args)
      assert.equal(3, seen.n)
      assert.equal("Alice", get_user(1))
      assert.equal(2, reads.calls)
    end))

    it("returns a count when the arguments end in nils", in_run(function()
      local calls = 0
      local get = cache.AsyncLRU()(function(a, b) calls = calls + 1; return a end)
      get(1, nil)
      get(1)
      local by_count = cache.AsyncLRUInvalidator(get, {
        key_fn = function(args) return { args[1], nil }, 2 end,
      })(function(id) end)
      by_count(1) -- invalidates get(1, nil) only
      get(1, nil); get(1)
      assert.equal(3, calls)
      local by_n = cache.AsyncLRUInvalidator(get, {
        key_fn = function(args) return pack(args[1], nil) end, -- its .n is the count
      })(function(id) end)
      by_n(1)
      get(1, nil); get(1)
      assert.equal(4, calls)
      local without = cache.AsyncLRUInvalidator(get, {
        key_fn = function(args) return { args[1], nil } end, -- #t: get(1)
      })(function(id) end)
      without(1)
      get(1, nil)
      assert.equal(4, calls)
      get(1)
      assert.equal(5, calls)
    end))

    it("raises when key_fn returns something else than a table", in_run(function()
      local _, get_user = users()
      local calls = 0
      local m = cache.AsyncLRUInvalidator(get_user, { key_fn = function(args) return args[1] end })(
        function() calls = calls + 1 end)
      assert.has_error(function() m(1) end,
        "cache.AsyncLRUInvalidator: key_fn must return a table of arguments, got number")
      assert.equal(0, calls) -- the mutation did not run
    end))
  end)

  it("clear_all = true clears every entry of the target", in_run(function()
    local db, get_user, reads = users()
    local reset = cache.AsyncLRUInvalidator(get_user, { clear_all = true })(function() db[1], db[2] = nil, nil end)
    get_user(1); get_user(2)
    reset()
    assert.equal(0, get_user:get_metrics().size)
    assert.is_nil(get_user(1))
    assert.is_nil(get_user(2))
    assert.equal(4, reads.calls)
  end))

  it("clear_all = false invalidates one key", in_run(function()
    local _, get_user = users()
    local m = cache.AsyncLRUInvalidator(get_user, { clear_all = false })(function(id) end)
    get_user(1); get_user(2)
    m(1)
    assert.equal(1, get_user:get_metrics().size)
  end))

  it("several invalidators can target one function", in_run(function()
    local db, get_user, reads = users()
    local update_user = cache.AsyncLRUInvalidator(get_user)(function(id, data) db[id] = data end)
    local delete_user = cache.AsyncLRUInvalidator(get_user)(function(id) db[id] = nil end)
    get_user(1)
    update_user(1, { name = "Alice" })
    assert.equal("Alice", get_user(1))
    delete_user(1)
    assert.is_nil(get_user(1))
    assert.equal(3, reads.calls)
  end))

  it("one invalidator can target several functions ({ f, g })", in_run(function()
    local db = { [1] = { name = "Bob", email = "bob@x" } }
    local nf, ng = 0, 0
    local get_name = cache.AsyncLRU()(function(id) nf = nf + 1; return db[id].name end)
    local get_email = cache.AsyncTTL{ time_to_live = 60 }(function(id) ng = ng + 1; return db[id].email end)
    local update = cache.AsyncLRUInvalidator({ get_name, get_email })(function(id, name, email)
      db[id] = { name = name, email = email }
    end)
    get_name(1); get_email(1)
    update(1, "Alice", "alice@x")
    assert.equal("Alice", get_name(1))
    assert.equal("alice@x", get_email(1))
    assert.equal(2, nf)
    assert.equal(2, ng)
    -- clear_all with a list clears them all
    local reset = cache.AsyncLRUInvalidator({ get_name, get_email }, { clear_all = true })(function() end)
    reset()
    assert.equal(0, get_name:get_metrics().size)
    assert.equal(0, get_email:get_metrics().size)
  end))

  it("a read during the mutation cannot leave stale data in the cache", in_run(function()
    local db, get_user, reads = users()
    local started, go = runtime.event(), runtime.event()
    local update_user = cache.AsyncLRUInvalidator(get_user)(function(id, data)
      started:set()
      go:wait()
      db[id] = data
    end)
    assert.equal("Bob", get_user(1))
    local done = runtime.event()
    spawn(function() update_user(1, { name = "Alice" }); done:set() end)
    started:wait()
    -- the entry is gone; a read now reloads the old data and caches it ...
    assert.equal("Bob", get_user(1))
    assert.equal(2, reads.calls)
    go:set()
    done:wait()
    -- ... but the entry was invalidated again when the mutation finished
    assert.equal("Alice", get_user(1))
    assert.equal(3, reads.calls)
  end))

  it("a read that was loading across the mutation does not store its old data", in_run(function()
    local db = { [1] = "old" }
    local gate = runtime.event()
    local loads = 0
    local get_user = cache.AsyncLRU()(function(id)
      loads = loads + 1
      local v = db[id] -- read before the mutation ...
      gate:wait()     -- ... returned after it
      return v
    end)
    local update_user = cache.AsyncLRUInvalidator(get_user)(function(id, v) db[id] = v end)
    local done = runtime.event()
    spawn(function() done:set(get_user(1)) end)
    sleep(0)
    update_user(1, "new")
    gate:set()
    assert.equal("old", done:wait()) -- that caller's read predates the update
    assert.equal(0, get_user:get_metrics().size)
    assert.equal("new", get_user(1))
    assert.equal(2, loads)
  end))

  it("a read started after the mutation returned does not get pre-mutation data", in_run(function()
    local db = { [1] = "old" }
    local gate = runtime.event()
    local get_user = cache.AsyncLRU()(function(id)
      local v = db[id]
      gate:wait()
      return v
    end)
    local update_user = cache.AsyncLRUInvalidator(get_user)(function(id, v) db[id] = v end)
    local first = runtime.event()
    spawn(function() first:set(get_user(1)) end) -- loading "old", not finished
    sleep(0)
    update_user(1, "new") -- has returned: the update is done
    spawn(function() gate:set() end)
    -- (this call once joined the load that started before update_user and
    -- returned "old": invalidating now detaches that load from new callers)
    assert.equal("new", get_user(1))
    first:wait()
  end))

  describe("arguments", function()
    it("rejects a target that is not a decorated function", function()
      assert.has_error(function() cache.AsyncLRUInvalidator(function() end) end,
        "cache.AsyncLRUInvalidator: the target must be a decorated function (cache.AsyncLRU/AsyncTTL) or a list of them, got function")
      assert.has_error(function() cache.AsyncTTLInvalidator(nil) end,
        "cache.AsyncTTLInvalidator: the target must be a decorated function (cache.AsyncLRU/AsyncTTL) or a list of them, got nil")
      assert.has_error(function() cache.AsyncLRUInvalidator({}) end,
        "cache.AsyncLRUInvalidator: the target must be a decorated function (cache.AsyncLRU/AsyncTTL) or a list of them, got table")
      assert.has_error(function() cache.AsyncLRUInvalidator(cache.AsyncCache()) end,
        "cache.AsyncLRUInvalidator: the target must be a decorated function (cache.AsyncLRU/AsyncTTL) or a list of them, got userdata")
    end)

    it("rejects a list holding something else than decorated functions, naming its index", function()
      local f = cache.AsyncLRU()(identity)
      assert.has_error(function() cache.AsyncLRUInvalidator({ f, identity }) end,
        "cache.AsyncLRUInvalidator: target #2 must be a decorated function (cache.AsyncLRU/AsyncTTL), got function")
    end)

    it("rejects a key_fn that is not callable", function()
      local f = cache.AsyncLRU()(identity)
      assert.has_error(function() cache.AsyncLRUInvalidator(f, { key_fn = 1 }) end,
        "opts.key_fn must be a function, got number")
      assert.has_error(function() cache.AsyncTTLInvalidator(f, { key_fn = "args[1]" }) end,
        "opts.key_fn must be a function, got string")
      -- a callable table is fine
      assert.is_function(cache.AsyncLRUInvalidator(f, { key_fn = setmetatable({}, { __call = identity }) }))
    end)

    it("rejects skip_args with a hint to use key_fn", function()
      local f = cache.AsyncLRU()(identity)
      assert.has_error(function() cache.AsyncLRUInvalidator(f, { skip_args = 1 }) end,
        "cache.AsyncLRUInvalidator: unknown option 'skip_args' (invalidators take key_fn instead)")
      assert.has_error(function() cache.AsyncTTLInvalidator(f, { skip_args = 1 }) end,
        "cache.AsyncTTLInvalidator: unknown option 'skip_args' (invalidators take key_fn instead)")
    end)

    it("rejects other unknown options, bad opts and a bad clear_all", function()
      local f = cache.AsyncLRU()(identity)
      assert.has_error(function() cache.AsyncLRUInvalidator(f, { keyfn = identity }) end,
        "cache.AsyncLRUInvalidator: unknown option 'keyfn'")
      assert.has_error(function() cache.AsyncLRUInvalidator(f, 1) end,
        "cache.AsyncLRUInvalidator: opts must be a table, got number")
      assert.has_error(function() cache.AsyncLRUInvalidator(f, { clear_all = "yes" }) end,
        "opts.clear_all must be a boolean, got string")
    end)

    it("rejects a mutation that is not a function", function()
      local f = cache.AsyncLRU()(identity)
      assert.has_error(function() cache.AsyncLRUInvalidator(f)(nil) end,
        "cache.AsyncLRUInvalidator: the wrapped mutation must be a function, got nil")
      assert.has_error(function() cache.AsyncTTLInvalidator(f)(5) end,
        "cache.AsyncTTLInvalidator: the wrapped mutation must be a function, got number")
    end)
  end)
end)

describe("a decorated function calling itself", function()
  it("with the same arguments raises at once instead of waiting for itself", in_run(function()
    local f
    f = cache.AsyncLRU{}(function(n)
      if n > 0 then return f(n) end
      return 0
    end)
    local err = h.error_of(f, 1)
    assert.matches("^recursive call of a decorated function with the same arguments", err)
    assert.equal(0, f(0))
    assert.equal(0, f:get_metrics().in_flight)
  end))

  it("after yielding, with the same arguments, raises too", in_run(function()
    local f
    f = cache.AsyncTTL{ time_to_live = 60 }(function(n) sleep(0); return f(n) end)
    assert.matches("^recursive call of a decorated function", h.error_of(f, 1))
  end))

  it("with other arguments works (memoized recursion)", in_run(function()
    local calls = 0
    local fib
    fib = cache.AsyncLRU{ maxsize = 100 }(function(n)
      calls = calls + 1
      if n < 2 then return n end
      return fib(n - 1) + fib(n - 2)
    end)
    assert.equal(6765, fib(20))
    assert.equal(21, calls)
  end))
end)

describe("f:bypass() with a nil result", function()
  it("returns it and drops the entry instead of caching nil", in_run(function()
    local value = "v"
    local f = cache.AsyncLRU{}(function() return value end)
    assert.equal("v", f("k"))
    value = nil
    assert.is_nil(f:bypass("k"))
    assert.equal(0, f:get_metrics().size)
    value = "w"
    assert.equal("w", f("k"))
  end))
end)
