-- Specs of DataLoader-style batch loading: cache.AsyncCache{ batch_loader =,
-- batch_window_ms =, max_batch_size = }, c:get(key, { batch_loader = f })
-- and c:get_many(keys).  What a user observes: the values each get returns,
-- how often the batch loader runs and the keys each call received, metrics,
-- and messages.
--
-- Every test that needs the loop drives it itself with runtime.run (not
-- busted's async).  Gets are issued from tasks spawned together, so they
-- run in one pass of the scheduler and fall into one batch window; sleep(0)
-- moves a task to the next pass.  Tests where a window must outlast some
-- passes, or a load_timeout must cut a batch, run on the fake clock
-- (h.with_fake_clock), as do the TTL tests, which step to just before a
-- deadline and onto it; no test sleeps for real past a TTL, no test
-- asserts a duration, and every test waits for the loaders it starts.
local cache = require "cache"
local runtime = require "cache.runtime"
local h = require "helpers"

local run, spawn, sleep = runtime.run, runtime.spawn, runtime.sleep
local pack = table.pack
local NOT_IN_TASK = h.NOT_IN_TASK
local in_run, concurrently, error_of = h.in_run, h.concurrently, h.error_of
local with_fake_clock, go = h.with_fake_clock, h.go

-- A batch loader that records a copy of the keys of each call, then
-- returns fn(keys) (by default a map key -> key .. "!").
local function recorder(fn)
  local s = { calls = {} }
  fn = fn or function(keys)
    local r = {}
    for _, k in ipairs(keys) do r[k] = tostring(k) .. "!" end
    return r
  end
  s.loader = function(keys)
    local copy = {}
    for i, k in ipairs(keys) do copy[i] = k end
    s.calls[#s.calls + 1] = copy
    return fn(keys)
  end
  return s
end

-- Concurrent c:get(key[, opts]) for each key of keys.
local function gets(c, keys, opts)
  return concurrently(keys, function(k) return c:get(k, opts) end)
end

describe("batch loading", function()

  describe("grouping", function()
    it("makes one batch loader call of the keys of concurrent gets", in_run(function()
      local s = recorder()
      local c = cache.AsyncCache{ batch_loader = s.loader }
      local r = gets(c, { "a", "b", "c" })
      assert.same({ { "a", "b", "c" } }, s.calls)
      assert.same({ { n = 1, "a!" }, { n = 1, "b!" }, { n = 1, "c!" } }, r)
      -- cached: no more calls
      assert.equal("b!", c:get("b"))
      assert.equal(1, #s.calls)
    end))

    it("splits 7 keys into batches of max_batch_size = 3: 3, 3, 1", in_run(function()
      local s = recorder()
      local c = cache.AsyncCache{ batch_loader = s.loader, max_batch_size = 3 }
      local keys = { 1, 2, 3, 4, 5, 6, 7 }
      local r = gets(c, keys)
      assert.same({ { 1, 2, 3 }, { 4, 5, 6 }, { 7 } }, s.calls)
      for i = 1, 7 do assert.equal(i .. "!", r[i][1]) end
      local m = c:get_metrics()
      assert.equal(3, m.batches)
      assert.equal(7, m.batched_keys)
    end))

    it("sends a key once however many concurrent gets ask for it", in_run(function()
      local s = recorder()
      local c = cache.AsyncCache{ batch_loader = s.loader, max_batch_size = 3 }
      -- duplicates do not count toward max_batch_size: one batch of 3
      local r = gets(c, { "a", "a", "b", "a", "b", "c", "c" })
      assert.same({ { "a", "b", "c" } }, s.calls)
      local want = { "a!", "a!", "b!", "a!", "b!", "c!", "c!" }
      for i = 1, 7 do assert.same({ n = 1, want[i] }, r[i]) end
      assert.equal(3, c:get_metrics().batched_keys)
    end))

    it("a get for a key being loaded alone joins that load instead of entering a batch", in_run(function()
      local s = recorder()
      local c = cache.AsyncCache{ batch_loader = s.loader }
      local gate = runtime.event()
      local single = 0
      local first = runtime.event()
      spawn(function()
        first:set(c:get("k", function() single = single + 1; gate:wait(); return "single" end))
      end)
      sleep(0) -- the single load is running
      local r = concurrently({ "k", "j" }, function(k)
        if k == "k" then spawn(function() gate:set() end) end
        return c:get(k)
      end)
      assert.same({ { "j" } }, s.calls)
      assert.equal(1, single)
      assert.equal("single", r[1][1])
      assert.equal("j!", r[2][1])
      assert.equal("single", first:wait())
    end))

    it("a get for a key already in a collecting batch joins it", with_fake_clock(function(clock)
      local s = recorder()
      local c = cache.AsyncCache{ batch_loader = s.loader, batch_window_ms = 20 }
      local res = go(concurrently, { 1, 2, 3 }, function(i)
        if i == 3 then sleep(0) end -- a later pass, same window
        return c:get("x")
      end)
      clock:advance(0.019)
      assert.same({}, s.calls)
      clock:advance(0.001)
      local r = res[1]
      assert.same({ { "x" } }, s.calls)
      for i = 1, 3 do assert.equal("x!", r[i][1]) end
    end))

    it("does not send keys that are cached", in_run(function()
      local s = recorder()
      local c = cache.AsyncCache{ batch_loader = s.loader }
      c:set("b", "cached")
      local r = gets(c, { "a", "b", "c" })
      assert.same({ { "a", "c" } }, s.calls)
      assert.equal("cached", r[2][1])
    end))

    it("batch_window_ms = 0 groups the gets issued in one pass of the scheduler", in_run(function()
      local s = recorder()
      local c = cache.AsyncCache{ batch_loader = s.loader, batch_window_ms = 0 }
      local r = concurrently({ "a", "b", "c", "d" }, function(k, i)
        for _ = 1, i - 2 do sleep(0) end -- c: one pass later, d: two
        return c:get(k)
      end)
      assert.same({ { "a", "b" }, { "c" }, { "d" } }, s.calls)
      for i, k in ipairs{ "a", "b", "c", "d" } do assert.equal(k .. "!", r[i][1]) end
    end))

    it("a window longer than a pass groups gets of later passes too", with_fake_clock(function(clock)
      local s = recorder()
      local c = cache.AsyncCache{ batch_loader = s.loader, batch_window_ms = 50 }
      local r = go(concurrently, { "a", "b", "c", "d" }, function(k, i)
        for _ = 1, i - 2 do sleep(0) end
        return c:get(k)
      end)
      clock:advance(0.05)
      assert.is_true(r.done)
      assert.same({ { "a", "b", "c", "d" } }, s.calls)
    end))

    it("groups per-call batch loaders by the function's identity", in_run(function()
      local s1, s2 = recorder(), recorder(function(keys)
        local r = {}
        for _, k in ipairs(keys) do r[k] = k .. "?" end
        return r
      end)
      local c = cache.AsyncCache()
      local r = concurrently({ "a", "b", "c", "d" }, function(k, i)
        -- a fresh options table per call: only the function counts
        return c:get(k, { batch_loader = i % 2 == 1 and s1.loader or s2.loader })
      end)
      assert.same({ { "a", "c" } }, s1.calls)
      assert.same({ { "b", "d" } }, s2.calls)
      assert.same({ "a!", "b?", "c!", "d?" }, { r[1][1], r[2][1], r[3][1], r[4][1] })
      assert.equal(2, c:get_metrics().batches)
    end))

    it("a per-call batch loader takes precedence over the cache's", in_run(function()
      local default, per_call = recorder(), recorder()
      local c = cache.AsyncCache{ batch_loader = default.loader }
      gets(c, { "a", "b" }, { batch_loader = per_call.loader })
      assert.same({}, default.calls)
      assert.same({ { "a", "b" } }, per_call.calls)
      -- and a plain loader bypasses batching
      assert.equal("plain", c:get("z", function() return "plain" end))
      assert.same({}, default.calls)
    end))
  end)

  describe("results", function()
    it("reads a map { [key] = value }", in_run(function()
      local c = cache.AsyncCache{ batch_loader = function(keys)
        return { a = "A", b = "B" }
      end }
      local r = gets(c, { "b", "a" })
      assert.equal("B", r[1][1])
      assert.equal("A", r[2][1])
    end))

    it("reads an array of values in key order (string keys)", in_run(function()
      local s = recorder(function(keys)
        local r = {}
        for i, k in ipairs(keys) do r[i] = k:upper() end
        return r
      end)
      local c = cache.AsyncCache{ batch_loader = s.loader }
      local r = gets(c, { "x", "y", "z" })
      assert.same({ { "x", "y", "z" } }, s.calls)
      assert.same({ "X", "Y", "Z" }, { r[1][1], r[2][1], r[3][1] })
      assert.equal("Y", c:get("y"))
    end))

    it("with integer keys, reads a map when it holds a key outside 1..n", in_run(function()
      local c = cache.AsyncCache{ batch_loader = function(keys)
        local r = {}
        for _, k in ipairs(keys) do r[k] = "v" .. k end
        return r
      end }
      local r = gets(c, { 5, 1 })
      assert.same({ n = 1, "v5" }, r[1])
      assert.same({ n = 1, "v1" }, r[2])
      assert.equal("v1", c:get(1))
    end))

    it("with integer keys 1..n in order, map and array read alike", in_run(function()
      local c = cache.AsyncCache{ batch_loader = function() return { 10, 20, 30 } end }
      local r = gets(c, { 1, 2, 3 })
      assert.same({ 10, 20, 30 }, { r[1][1], r[2][1], r[3][1] })
    end))

    it("with integer keys, an undecidable result gives every key an error, never a wrong value", in_run(function()
      local msg = "the batch loader's result cannot be read for these integer keys: "
        .. 'set the cache\'s batch_result option to "map" or "array"'
      -- { "v-first", "v-second" } for keys { 2, 3 }: an array in key order,
      -- or a map holding key 2 only?  The shape cannot tell.
      local c = cache.AsyncCache{ batch_loader = function() return { "v-first", "v-second" } end }
      local r = gets(c, { 2, 3 })
      assert.same({ n = 2, nil, msg }, r[1])
      assert.same({ n = 2, nil, msg }, r[2])
      assert.equal(0, c:get_metrics().size) -- nothing cached under a guess
    end))

    it("reads the result as the batch_result option says", in_run(function()
      local function loader() return { "v-first", "v-second" } end
      local as_array = cache.AsyncCache{ batch_result = "array", batch_loader = loader }
      local r = gets(as_array, { 2, 3 })
      assert.same({ "v-first", "v-second" }, { r[1][1], r[2][1] })
      local as_map = cache.AsyncCache{ batch_result = "map", batch_loader = loader }
      r = gets(as_map, { 2, 3 })
      assert.equal("v-second", r[1][1])
      assert.is_nil(r[2][1])
      assert.has_error(function() cache.AsyncCache{ batch_result = "list" } end,
        'opts.batch_result must be "auto", "map" or "array", got string "list"')
    end))

    it("gives each key its own value when the batch loader sorts its keys in place", in_run(function()
      -- A loader may well sort its keys for its query and return a map.
      local c = cache.AsyncCache{ batch_loader = function(keys)
        table.sort(keys)
        local r = {}
        for _, k in ipairs(keys) do r[k] = k .. "!" end
        return r
      end }
      local r = gets(c, { "b", "a" })
      -- The loader gets its own copy of the keys: reordering it in place
      -- must not shift values to other keys.
      assert.equal("b!", r[1][1])
      assert.equal("a!", r[2][1])
      assert.equal("b!", c:get("b"))
    end))

    it("a key missing from the result gets nil and is not cached", in_run(function()
      local s = recorder(function(keys) return { a = 1 } end)
      local c = cache.AsyncCache{ batch_loader = s.loader }
      local r = gets(c, { "a", "b" })
      assert.same({ n = 1, 1 }, r[1])
      assert.same({ n = 1, nil }, r[2])
      assert.is_false(c:contains("b"))
      assert.is_nil(c:get("b"))
      assert.same({ { "a", "b" }, { "b" } }, s.calls)
    end))

    it("caches a false value", in_run(function()
      local s = recorder(function() return { a = false } end)
      local c = cache.AsyncCache{ batch_loader = s.loader }
      assert.is_false(c:get("a"))
      assert.is_false(c:get("a"))
      assert.equal(1, #s.calls)
    end))

    it("per-key errors (a second table) give that key nil, err and are not cached", in_run(function()
      local s = recorder(function(keys)
        return { a = "A", c = "C" }, { b = "b is locked" }
      end)
      local c = cache.AsyncCache{ batch_loader = s.loader }
      local r = gets(c, { "a", "b", "c" })
      assert.same({ n = 1, "A" }, r[1])
      assert.same({ n = 2, nil, "b is locked" }, r[2])
      assert.same({ n = 1, "C" }, r[3])
      assert.is_false(c:contains("b"))
      assert.equal(1, c:get_metrics().load_errors)
      local v, err = c:get("b")
      assert.is_nil(v)
      assert.equal("b is locked", err)
      assert.same({ { "a", "b", "c" }, { "b" } }, s.calls)
    end))

    it("per-key errors win over a value for the same key", in_run(function()
      local c = cache.AsyncCache{ batch_loader = function() return { a = "A" }, { a = "stale" } end }
      local v, err = c:get("a")
      assert.is_nil(v)
      assert.equal("stale", err)
      assert.is_false(c:contains("a"))
    end))

    it("per-key errors may be an array in key order, and table error objects", in_run(function()
      local e = { code = 423 }
      local c = cache.AsyncCache{ batch_loader = function() return { "x", "y", "z" }, { nil, "bad y", e } end }
      local r = gets(c, { "a", "b", "c" })
      assert.same({ n = 1, "x" }, r[1])
      assert.same({ n = 2, nil, "bad y" }, r[2])
      assert.is_nil(r[3][1])
      assert.equal(e, r[3][2])
    end))

    it("a raising batch loader gives every caller nil, err and caches nothing", in_run(function()
      local s = recorder(function() error("db down") end)
      local c = cache.AsyncCache{ batch_loader = s.loader }
      local r = gets(c, { "a", "b", "a" })
      for i = 1, 3 do
        assert.equal(2, r[i].n)
        assert.is_nil(r[i][1])
        assert.matches("db down$", r[i][2])
      end
      assert.equal(r[1][2], r[2][2])
      assert.equal(0, c:get_metrics().size)
      assert.equal(2, c:get_metrics().load_errors)
      assert.same({ { "a", "b" } }, s.calls)
    end))

    it("a batch loader raising a table gives every caller that table", in_run(function()
      local e = { code = 503 }
      local c = cache.AsyncCache{ batch_loader = function() error(e) end }
      local r = gets(c, { "a", "b" })
      assert.same({ nil, nil }, { r[1][1], r[2][1] })
      assert.equal(e, r[1][2])
      assert.equal(e, r[2][2])
    end))

    it("a batch loader returning a non-table gives every caller nil and an error naming it", in_run(function()
      local c = cache.AsyncCache{ batch_loader = function() return "oops" end }
      local r = gets(c, { "a", "b" })
      for i = 1, 2 do
        assert.same({ n = 2, nil, "batch loader must return a table of values, got string" }, r[i])
      end
      local c2 = cache.AsyncCache{ batch_loader = function() return 42 end }
      assert.same({ n = 2, nil, "batch loader must return a table of values, got number" }, pack(c2:get("a")))
      assert.equal(0, c:get_metrics().size)
    end))

    it("a batch loader returning nothing gives every caller nil, without an error", in_run(function()
      local s = recorder(function() end)
      local c = cache.AsyncCache{ batch_loader = s.loader }
      local r = gets(c, { "a", "b" })
      assert.same({ { n = 1, nil }, { n = 1, nil } }, r)
      assert.is_nil(c:get("a"))
      assert.equal(2, #s.calls)
    end))

    it("a batch loader that yields works", in_run(function()
      local s = recorder(function(keys)
        sleep(0)
        local r = {}
        for _, k in ipairs(keys) do r[k] = k * 2 end
        return r
      end)
      local c = cache.AsyncCache{ batch_loader = s.loader, max_batch_size = 2 }
      local r = gets(c, { 1, 2, 3 })
      assert.same({ 2, 4, 6 }, { r[1][1], r[2][1], r[3][1] })
      assert.same({ { 1, 2 }, { 3 } }, s.calls)
      assert.equal(4, c:get(2))
      assert.equal(2, #s.calls)
    end))
  end)

  describe("load_timeout", function()
    it("bounds the wait for a batch: callers get nil, 'load timed out after ... seconds'", with_fake_clock(function(clock)
      local gate, finished = runtime.event(), runtime.event()
      local c = cache.AsyncCache{ load_timeout = 0.05, batch_loader = function(keys)
        gate:wait() -- longer than load_timeout
        finished:set()
        return { a = "late", b = "late" }
      end }
      local res = go(gets, c, { "a", "b" })
      clock:advance(0.005) -- the window closes: the loader waits at the gate
      clock:advance(0.049)
      assert.is_false(res.done)
      clock:advance(0.001) -- load_timeout after the dispatch
      local r = res[1]
      for i = 1, 2 do
        assert.same({ n = 2, nil, "load timed out after 0.05 seconds" }, r[i])
      end
      assert.equal(2, c:get_metrics().load_timeouts)
      gate:set()
      finished:wait()
      sleep(0) -- let the batch settle
      -- the late result is dropped
      assert.is_false(c:contains("a"))
      assert.equal(0, c:get_metrics().size)
    end))

    it("a batch loader that returns in time is not cut off", with_fake_clock(function(clock)
      local c = cache.AsyncCache{ load_timeout = 5, batch_loader = function(keys)
        sleep(4.99) -- after the 5 ms window
        return { a = 1 }
      end }
      local r = go(c.get, c, "a")
      clock:advance(4.995)
      assert.equal(1, r[1])
      clock:advance(1) -- past the deadline it no longer has
      assert.equal(0, c:get_metrics().load_timeouts)
      assert.equal(1, c:get("a"))
    end))
  end)

  describe("TTL", function()
    -- On the fake clock with batch_window_ms = 0, so that batches are
    -- stored at 0 and a ttl of 1 ends exactly at 1.
    it("stores batch results with the cache's default_ttl", with_fake_clock(function(clock)
      local s = recorder()
      local c = cache.AsyncCache{ batch_loader = s.loader, default_ttl = 1, batch_window_ms = 0 }
      gets(c, { "a", "b" })
      assert.equal("a!", c:get("a"))
      clock:advance(0.999)
      assert.is_true(c:contains("a"))
      assert.is_true(c:contains("b"))
      clock:advance(0.001)
      assert.is_false(c:contains("a"))
      assert.is_false(c:contains("b"))
      gets(c, { "a", "b" })
      assert.same({ { "a", "b" }, { "a", "b" } }, s.calls)
    end))

    it("stores batch results with a per-call ttl", with_fake_clock(function(clock)
      local s = recorder()
      local c = cache.AsyncCache{ batch_loader = s.loader, batch_window_ms = 0 } -- no default TTL
      concurrently({ "short", "long" }, function(k)
        return c:get(k, k == "short" and { ttl = 1 } or nil)
      end)
      assert.same({ { "short", "long" } }, s.calls)
      clock:advance(0.999)
      assert.is_true(c:contains("short"))
      clock:advance(0.001)
      assert.is_false(c:contains("short"))
      assert.is_true(c:contains("long"))
      assert.equal("short!", c:get("short"))
      assert.same({ { "short", "long" }, { "short" } }, s.calls)
      clock:advance(86400)
      assert.is_true(c:contains("long"))
    end))

    it("counts the TTL from when the batch loader returns, not from the get", with_fake_clock(function(clock)
      local s = recorder()
      local c = cache.AsyncCache{ default_ttl = 1, batch_window_ms = 250, batch_loader = function(keys)
        sleep(0.25)
        return s.loader(keys)
      end }
      local r = go(gets, c, { "a", "b" })
      clock:advance(0.5) -- the window, then the loader
      assert.same({ { n = 1, "a!" }, { n = 1, "b!" } }, r[1])
      clock:advance(0.999)
      assert.is_true(c:contains("a"))
      clock:advance(0.001)
      assert.is_false(c:contains("a"))
      assert.is_false(c:contains("b"))
      assert.equal(1, #s.calls)
    end))

    it("takes a per-call ttl with a per-call batch loader", with_fake_clock(function(clock)
      local s = recorder()
      local c = cache.AsyncCache{ batch_window_ms = 0 }
      c:get("a", { batch_loader = s.loader, ttl = 1 })
      clock:advance(0.999)
      assert.is_true(c:contains("a"))
      clock:advance(0.001)
      assert.is_false(c:contains("a"))
    end))
  end)

  describe("metrics", function()
    it("count batches and batched keys, loads and misses", in_run(function()
      local c = cache.AsyncCache{ batch_loader = recorder().loader, max_batch_size = 2 }
      gets(c, { "a", "b", "c", "a" })
      c:get("a")
      local m = c:get_metrics()
      assert.equal(2, m.batches)
      assert.equal(3, m.batched_keys)
      assert.equal(3, m.loads)
      assert.equal(4, m.misses)
      assert.equal(1, m.hits)
      assert.equal(3, m.size)
      assert.equal(0, m.in_flight)
    end))
  end)

  describe(":get_many()", function()
    it("returns { [key] = value } and no errors table when nothing failed", in_run(function()
      local s = recorder()
      local c = cache.AsyncCache{ batch_loader = s.loader }
      local values, errors = c:get_many{ "a", "b", 3 }
      assert.same({ a = "a!", b = "b!", [3] = "3!" }, values)
      assert.is_nil(errors)
      assert.same({ { "a", "b", 3 } }, s.calls)
      assert.equal("b!", c:get("b"))
      assert.equal(1, #s.calls)
    end))

    it("serves hits without calling the loader, and sends only the missing keys", in_run(function()
      local s = recorder()
      local c = cache.AsyncCache{ batch_loader = s.loader }
      c:set("a", "A")
      c:set("c", "C")
      local values, errors = c:get_many{ "a", "b", "c", "d" }
      assert.same({ a = "A", b = "b!", c = "C", d = "d!" }, values)
      assert.is_nil(errors)
      assert.same({ { "b", "d" } }, s.calls)
      -- all hits: no call at all
      assert.same({ a = "A", b = "b!" }, (c:get_many{ "a", "b" }))
      assert.equal(1, #s.calls)
    end))

    it("respects max_batch_size", in_run(function()
      local s = recorder()
      local c = cache.AsyncCache{ batch_loader = s.loader, max_batch_size = 3 }
      local values = c:get_many{ 1, 2, 3, 4, 5, 6, 7 }
      assert.same({ { 1, 2, 3 }, { 4, 5, 6 }, { 7 } }, s.calls)
      for i = 1, 7 do assert.equal(i .. "!", values[i]) end
    end))

    it("sends a key listed twice once", in_run(function()
      local s = recorder()
      local c = cache.AsyncCache{ batch_loader = s.loader }
      local values = c:get_many{ "a", "b", "a" }
      assert.same({ a = "a!", b = "b!" }, values)
      assert.same({ { "a", "b" } }, s.calls)
    end))

    it("returns per-key errors in the errors table and leaves those keys out of values", in_run(function()
      local c = cache.AsyncCache{ batch_loader = function()
        return { a = "A" }, { b = "b is locked" }
      end }
      local values, errors = c:get_many{ "a", "b", "c" }
      assert.same({ a = "A" }, values)
      assert.same({ b = "b is locked" }, errors)
    end))

    it("gives every missing key the error of a raising batch loader", in_run(function()
      local c = cache.AsyncCache{ batch_loader = function() error("db down") end }
      c:set("h", 1)
      local values, errors = c:get_many{ "h", "a", "b" }
      assert.same({ h = 1 }, values)
      assert.matches("db down$", errors.a)
      assert.matches("db down$", errors.b)
    end))

    it("joins keys being loaded by concurrent gets", in_run(function()
      local s = recorder()
      local c = cache.AsyncCache{ batch_loader = s.loader }
      local r = concurrently({ "get", "many" }, function(what)
        if what == "get" then return c:get("a") end
        return c:get_many{ "a", "b" }
      end)
      assert.same({ { "a", "b" } }, s.calls)
      assert.equal("a!", r[1][1])
      assert.same({ a = "a!", b = "b!" }, r[2][1])
    end))

    it("takes opts.batch_loader and opts.ttl", with_fake_clock(function(clock)
      local s = recorder()
      local c = cache.AsyncCache{ batch_window_ms = 0 } -- stored at 0: ttl 1 ends at 1
      local values = c:get_many({ "a", "b" }, { batch_loader = s.loader, ttl = 1 })
      assert.same({ a = "a!", b = "b!" }, values)
      assert.same({ { "a", "b" } }, s.calls)
      clock:advance(0.999)
      assert.is_true(c:contains("a"))
      assert.is_true(c:contains("b"))
      clock:advance(0.001)
      assert.is_false(c:contains("a"))
      assert.is_false(c:contains("b"))
    end))

    it("without a batch loader returns the hits only", in_run(function()
      local c = cache.AsyncCache()
      c:set("a", 1)
      local values, errors = c:get_many{ "a", "b" }
      assert.same({ a = 1 }, values)
      assert.is_nil(errors)
    end))

    it("returns an empty table for no keys", in_run(function()
      local s = recorder()
      local c = cache.AsyncCache{ batch_loader = s.loader }
      local values, errors = c:get_many{}
      assert.same({}, values)
      assert.is_nil(errors)
      assert.same({}, s.calls)
    end))

    it("rejects keys that are not strings, numbers or booleans, and bad opts", in_run(function()
      local c = cache.AsyncCache{ batch_loader = recorder().loader }
      c:set("a", 1) -- a hit before the bad key: nothing to load (see the next test)
      assert.has_error(function() c:get_many{ "a", {} } end,
        "cache:get_many(): keys[2] must be a string, number or boolean, got table")
      assert.has_error(function() c:get_many({ "a" }, 5) end,
        "cache:get_many(): opts must be a table, got number")
      assert.has_error(function() c:get_many({ "a" }, { batch_loader = true }) end,
        "cache:get_many(): opts.batch_loader must be a function, got boolean")
    end))

    it("rejects a NaN key, naming its index in keys", in_run(function()
      local c = cache.AsyncCache{ batch_loader = recorder().loader }
      c:set("a", 1) -- a hit before the bad key (see the next test)
      local err = error_of(function() return c:get_many{ "a", 0 / 0 } end)
      -- The message names the key by its index in keys, not a stack slot.
      assert.not_matches("bad argument #", err, 1, true)
      assert.matches("keys[2]", err, 1, true)
      assert.matches("NaN", err, 1, true)
    end))

    it("raising on a bad key leaves no waiter behind", function()
      -- Had get_many joined the flights of the missing keys before finding
      -- the bad one, their waiters would stay behind in a group that is
      -- garbage: a task woken from an unrelated wait, then freed memory.
      -- The collector is stopped so that a regression fails here instead
      -- of crashing.
      collectgarbage("stop")
      finally(function() collectgarbage("restart") end)
      run(function()
        local s = recorder()
        local c = cache.AsyncCache{ batch_loader = s.loader }
        local failed, release = runtime.event(), runtime.event()
        local woken
        spawn(function()
          failed:set(pcall(c.get_many, c, { "a", {} }))
          woken = pack(release:wait()) -- must return only once release is set
        end)
        local ok, err = failed:wait()
        local v = c:get("a") -- loads "a", or joins the load the failed call started
        local early = woken
        if not early then
          release:set("released")
          sleep(0)
        end
        assert.is_false(ok)
        assert.matches("keys%[2%] must be a string, number or boolean, got table$", err)
        assert.equal("a!", v)
        assert.is_nil(early)
        assert.same({ n = 1, "released" }, woken)
      end)
    end)
  end)

  describe("options", function()
    it("rejects a batch_loader that is not callable", function()
      assert.has_error(function() cache.AsyncCache{ batch_loader = 1 } end,
        "opts.batch_loader must be a function, got number")
      assert.has_error(function() cache.AsyncCache{ batch_loader = {} } end,
        "opts.batch_loader must be a function, got table")
      -- a callable table is fine
      assert.is_not_nil(cache.AsyncCache{ batch_loader = setmetatable({}, { __call = function() end }) })
    end)

    it("rejects a negative or non-numeric batch_window_ms", function()
      assert.has_error(function() cache.AsyncCache{ batch_window_ms = -1 } end,
        "opts.batch_window_ms must be a non-negative number of milliseconds, got -1")
      assert.has_error(function() cache.AsyncCache{ batch_window_ms = math.huge } end,
        "opts.batch_window_ms must be a non-negative number of milliseconds, got inf")
      assert.has_error(function() cache.AsyncCache{ batch_window_ms = "5" } end,
        'opts.batch_window_ms must be a non-negative number of milliseconds, got string "5"')
      assert.is_not_nil(cache.AsyncCache{ batch_window_ms = 0 })
    end)

    it("rejects a max_batch_size that is not a positive integer", function()
      assert.has_error(function() cache.AsyncCache{ max_batch_size = 0 } end,
        "opts.max_batch_size must be a positive integer, got 0")
      assert.has_error(function() cache.AsyncCache{ max_batch_size = -2 } end,
        "opts.max_batch_size must be a positive integer, got -2")
      assert.has_error(function() cache.AsyncCache{ max_batch_size = 2.5 } end,
        "opts.max_batch_size must be a positive integer, got 2.5")
      assert.has_error(function() cache.AsyncCache{ max_batch_size = "10" } end,
        'opts.max_batch_size must be a positive integer, got string "10"')
    end)

    it("rejects a per-call batch_loader that is not callable", in_run(function()
      local c = cache.AsyncCache()
      assert.has_error(function() c:get("a", { batch_loader = 1 }) end,
        "cache:get(): opts.batch_loader must be a function, got number")
    end))

    it("rejects a loader and a batch_loader in one get", in_run(function()
      local c = cache.AsyncCache()
      local f = function() return 1 end
      assert.has_error(function() c:get("a", { loader = f, batch_loader = f }) end,
        "cache:get(): give opts.loader or opts.batch_loader, not both")
    end))
  end)

  describe("outside a task", function()
    it("a get that needs the batch loader raises the error naming runtime.run", function()
      local s = recorder()
      local c = cache.AsyncCache{ batch_loader = s.loader }
      assert.has_error(function() c:get("a") end, "cache:get() with a batch loader " .. NOT_IN_TASK)
      assert.has_error(function() c:get("a", { batch_loader = s.loader }) end,
        "cache:get() with a batch loader " .. NOT_IN_TASK)
      assert.has_error(function() c:get_many{ "a" } end, "cache:get_many() " .. NOT_IN_TASK)
      -- nothing was queued: the key loads normally from a task, alone
      assert.equal("a!", run(function() return c:get("a") end))
      assert.same({ { "a" } }, s.calls)
      -- and a hit needs no task
      assert.equal("a!", c:get("a"))
      assert.same({ a = "a!" }, (c:get_many{ "a" }))
    end)
  end)
end)

describe("batch results that do not fit", function()
  local function cache_with(form, loader)
    return cache.AsyncCache{ batch_result = form, batch_loader = loader }
  end

  it("an array with more values than keys is an error for every key", in_run(function()
    local c = cache_with("array", function() return { 1, 2, 3, 4, 5 } end)
    local r = concurrently({ "a", "b" }, function(k) return c:get(k) end)
    for i = 1, 2 do
      assert.is_nil(r[i][1])
      assert.matches("^the batch loader returned 5 values for 2 keys", r[i][2])
    end
    assert.equal(0, c:get_metrics().size)
  end))

  it("batch_result = \"array\" wants one value per key (n = #keys may end it in nils)", in_run(function()
    local c = cache_with("array", function() return { "x" } end)
    local r = concurrently({ "a", "b" }, function(k) return c:get(k) end)
    assert.matches("^the batch loader returned 1 values for 2 keys", r[1][2])
    assert.matches("^the batch loader returned 1 values for 2 keys", r[2][2])
    c = cache_with("array", function(keys) return { n = #keys, "x" } end)
    r = concurrently({ "a", "b" }, function(k) return pack(c:get(k)) end)
    assert.same({ n = 1, "x" }, r[1][1])
    assert.same({ n = 1 }, r[2][1]) -- not found: nil, no error
  end))

  it("an array guessed from its shape is wrong only with more values than keys", in_run(function()
    local c = cache_with(nil, function() return { "x", "y", "z" } end)
    local r = concurrently({ "a", "b" }, function(k) return c:get(k) end)
    assert.matches("^the batch loader returned 3 values for 2 keys", r[1][2])
    c = cache_with(nil, function() return { "x" } end)
    r = concurrently({ "a", "b" }, function(k) return pack(c:get(k)) end)
    assert.same({ n = 1, "x" }, r[1][1])
    assert.same({ n = 1 }, r[2][1])
  end))

  it("an error result that is not a table is the error of every key", in_run(function()
    local c = cache_with(nil, function() return {}, "boom" end)
    local r = concurrently({ "a", "b" }, function(k) return pack(c:get(k)) end)
    assert.same({ n = 2, nil, "boom" }, r[1][1])
    assert.same({ n = 2, nil, "boom" }, r[2][1])
    c = cache_with(nil, function() return nil, "db down" end)
    local found, errors = c:get_many{ "a", "b" }
    assert.same({}, found)
    assert.same({ a = "db down", b = "db down" }, errors)
    assert.equal(0, c:get_metrics().size)
  end))

  it("a batch loader raising nil gives every key an error", in_run(function()
    local c = cache_with(nil, function() error(nil) end)
    local found, errors = c:get_many{ "a", "b" }
    assert.same({}, found)
    assert.same({ a = "batch loader raised nil", b = "batch loader raised nil" }, errors)
  end))
end)

describe("a batch loader asking for a key of its own batch", function()
  it("gets nil, err for that key at once, from get and from get_many", in_run(function()
    local c
    local seen = {}
    c = cache.AsyncCache{ batch_loader = function(keys)
      seen.get = pack(c:get(keys[1]))
      seen.found, seen.errors = c:get_many(keys)
      local r = {}
      for _, k in ipairs(keys) do r[k] = k .. "!" end
      return r
    end }
    local found, errors = c:get_many{ "a", "b" }
    assert.same({ a = "a!", b = "b!" }, found)
    assert.is_nil(errors)
    assert.is_nil(seen.get[1])
    assert.matches('^recursive load of key string "a"', seen.get[2])
    assert.same({}, seen.found)
    assert.matches('^recursive load of key string "b"', seen.errors.b)
  end))
end)
