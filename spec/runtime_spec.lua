-- Specs of cache.runtime: coroutines on the libuv loop.
--
-- Every test drives the loop itself with runtime.run (not busted's async).
-- Order is set with events and sleep(0) (which resumes the caller after
-- every task already queued); sleeps of a given length run on the fake
-- clock (h.with_fake_clock), except the few tests of the real clock itself
-- (now across a real sleep, timers armed after CPU work).
local runtime = require "cache.runtime"

local run, spawn, sleep = runtime.run, runtime.spawn, runtime.sleep

local h = require "helpers"
local NOT_IN_TASK = h.NOT_IN_TASK

describe("cache.runtime", function()

  describe(".run()", function()
    it("returns every result of fn, nils included", function()
      local a, b, c, d = run(function(x, y) return x + y, nil, "three", y end, 1, 2)
      assert.equal(3, a)
      assert.is_nil(b)
      assert.equal("three", c)
      assert.equal(2, d)
      assert.equal(4, select("#", run(function() return 1, nil, 3, nil end)))
      assert.equal(0, select("#", run(function() end)))
    end)

    it("passes its extra arguments to fn", function()
      assert.same({ "a", nil, "c", n = 3 },
        table.pack(run(function(...) return ... end, "a", nil, "c")))
    end)

    it("re-raises the error of fn", function()
      assert.has_error(function()
        run(function() error("boom") end)
      end, "boom")
    end)

    it("re-raises an error of fn raised after it waited", function()
      assert.has_error(function()
        run(function() sleep(0); error("late boom") end)
      end, "late boom")
    end)

    it("re-raises a non-string error object unchanged", function()
      local obj = { code = 42 }
      local ok, err = pcall(run, function() error(obj) end)
      assert.is_false(ok)
      assert.equal(obj, err)
    end)

    it("raises when fn is not a function", function()
      assert.has_error(function() run(42) end,
        "bad argument #1 to 'run' (function expected, got number)")
    end)

    it("runs fn in a coroutine the runtime can suspend", function()
      local main = coroutine.running()
      local co, ismain = run(function() return coroutine.running() end)
      assert.is_false(ismain)
      assert.are_not.equal(main, co)
    end)

    it("calls fn in place when called inside a task", function()
      run(function()
        local outer = coroutine.running()
        local other_ran = false
        spawn(function() other_ran = true end)
        local inner, x, y = run(function(a, b)
          return coroutine.running(), a * 2, b
        end, 21, "b")
        -- Same coroutine, and nothing else ran meanwhile: no yield happened.
        assert.equal(outer, inner)
        assert.equal(42, x)
        assert.equal("b", y)
        assert.is_false(other_ran)
        -- fn called in place may still wait like any task.
        local v = run(function() sleep(0); return "waited" end)
        assert.equal("waited", v)
        assert.is_true(other_ran)
      end)
    end)

    it("never resumes the function it gave up on, even when its wait ends later", function()
      local ev = runtime.event()
      local resumed = false
      assert.is_false(pcall(run, function() ev:wait(); resumed = true end))
      collectgarbage()
      collectgarbage()
      ev:set() -- wakes the task run gave up on: it is let go, not resumed
      run(function() sleep(0) end)
      assert.is_false(resumed)
    end)

    it("re-raises the error of fn called in place", function()
      run(function()
        assert.has_error(function()
          run(function() error("inner boom", 0) end)
        end, "inner boom")
      end)
    end)

    it("detects a deadlock: a task waiting on an event nobody sets, and says where", function()
      local ok, err = pcall(run, function()
        local ev = runtime.event()
        ev:wait()
      end)
      assert.is_false(ok)
      assert.equal("runtime.run: the function is waiting for something that can never "
        .. "happen (no task is ready, no timer or I/O is pending)", err:match("^[^\n]*"))
      -- The traceback of the waiting coroutine: the wait, and the line of the spec.
      assert.matches("stack traceback:", err, 1, true)
      assert.matches("in method 'wait'", err, 1, true)
      assert.matches("runtime_spec.lua:%d+:", err)
      -- The runtime is still usable afterwards.
      assert.equal("still fine", run(function() sleep(0); return "still fine" end))
    end)

    it("refuses to drive the loop from a plain coroutine inside a task", function()
      run(function()
        local co = coroutine.wrap(function()
          return pcall(run, function() return 1 end)
        end)
        local ok, err = co()
        assert.is_false(ok)
        assert.matches("runtime.run cannot drive the loop from here", err, 1, true)
      end)
    end)
  end)

  describe(".spawn()", function()
    it("runs fn later, not in place", function()
      run(function()
        local ran = false
        spawn(function() ran = true end)
        assert.is_false(ran)
        sleep(0)
        assert.is_true(ran)
      end)
    end)

    it("passes its arguments to fn", function()
      run(function()
        local got
        spawn(function(...) got = table.pack(...) end, 1, nil, "x")
        sleep(0)
        assert.same({ 1, nil, "x", n = 3 }, got)
      end)
    end)

    it("returns the coroutine of the new task", function()
      run(function()
        local seen
        local co = spawn(function() seen = coroutine.running() end)
        assert.equal("thread", type(co))
        sleep(0)
        assert.equal(co, seen)
      end)
    end)

    it("runs the spawned tasks in FIFO order", function()
      run(function()
        local order = {}
        for i = 1, 10 do spawn(function() order[#order + 1] = i end) end
        sleep(0)
        assert.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, order)
      end)
    end)

    it("can be called outside runtime.run: the task runs at the next run", function()
      local ran = false
      spawn(function() ran = true end)
      assert.is_false(ran)
      run(function() sleep(0) end)
      assert.is_true(ran)
    end)

    it("raises when fn is not a function", function()
      assert.has_error(function() spawn("nope") end,
        "bad argument #1 to 'spawn' (function expected, got string)")
    end)
  end)

  describe("a bare coroutine.yield() in a task", function()
    it("lets the other tasks run, then carries on", function()
      run(function()
        local order, done = {}, runtime.event()
        spawn(function()
          order[#order + 1] = "a1"
          coroutine.yield()
          order[#order + 1] = "a2"
          done:set()
        end)
        spawn(function() order[#order + 1] = "b" end)
        done:wait() -- not a sleep: a slow pass must not reorder the check
        assert.same({ "a1", "b", "a2" }, order)
      end)
    end)

    it("in the run task itself lets the spawned tasks run", function()
      local order = {}
      run(function()
        spawn(function() order[#order + 1] = "spawned" end)
        order[#order + 1] = "before"
        coroutine.yield()
        order[#order + 1] = "after"
      end)
      assert.same({ "before", "spawned", "after" }, order)
    end)
  end)

  describe(".sleep()", function()
    it("suspends only the caller: other tasks progress meanwhile", h.with_fake_clock(function(clock)
      local ticks, woke = 0, nil
      spawn(function()
        for _ = 1, 5 do ticks = ticks + 1; coroutine.yield() end
      end)
      local sleeper = h.go(function() sleep(0.02); woke = ticks end)
      clock:advance(0.02)
      assert.is_true(sleeper.done)
      assert.equal(5, woke)
    end))

    it("wakes the sleepers in the order of their wake-up times", h.with_fake_clock(function(clock)
      local order = {}
      local function sleeper(name, secs)
        spawn(function() sleep(secs); order[#order + 1] = name end)
      end
      sleeper("slow", 0.09)
      sleeper("fast", 0.01)
      sleeper("medium", 0.05)
      clock:advance(0.15)
      assert.same({ "fast", "medium", "slow" }, order)
    end))

    it("sleep(0) yields: the tasks already queued run first", function()
      run(function()
        local order = {}
        spawn(function() order[#order + 1] = "other" end)
        sleep(0)
        order[#order + 1] = "me"
        assert.same({ "other", "me" }, order)
      end)
    end)

    it("returns nothing", h.with_fake_clock(function(clock)
      assert.equal(0, select("#", sleep(0)))
      local r = h.go(sleep, 0.001)
      clock:advance(0.001)
      assert.same({ done = true, ok = true, n = 0 }, r)
    end))

    it("raises on a negative, NaN or non-number argument", function()
      run(function()
        assert.has_error(function() sleep(-1) end,
          "bad argument #1 to 'sleep' (seconds must be a non-negative number)")
        assert.has_error(function() sleep(0 / 0) end,
          "bad argument #1 to 'sleep' (seconds must be a non-negative number)")
        assert.has_error(function() sleep("soon") end,
          "bad argument #1 to 'sleep' (number expected, got string)")
        assert.has_error(function() sleep() end,
          "bad argument #1 to 'sleep' (number expected, got no value)")
      end)
    end)

    it("outside a task raises the error naming runtime.run, runtime.spawn and acache", function()
      assert.has_error(function() sleep(0.01) end, "runtime.sleep() " .. NOT_IN_TASK)
    end)

    it("inside a plain coroutine (not a task) raises the same error", function()
      run(function()
        local ok, err = coroutine.wrap(function() return pcall(sleep, 0.01) end)()
        assert.is_false(ok)
        assert.equal("runtime.sleep() " .. NOT_IN_TASK, err)
      end)
    end)
  end)

  describe(".now()", function()
    it("returns a number that never goes back", function()
      run(function()
        local prev = runtime.now()
        assert.equal("number", type(prev))
        for i = 1, 2000 do
          local t = runtime.now()
          assert.is_true(t >= prev)
          prev = t
          if i % 500 == 0 then sleep(0) end
        end
      end)
    end)

    it("advances across a sleep", function()
      run(function()
        local t0 = runtime.now()
        sleep(0.02)
        assert.is_true(runtime.now() > t0)
      end)
    end)

    it("works outside a task", function()
      local a = runtime.now()
      local b = runtime.now()
      assert.is_true(b >= a)
    end)
  end)

  describe(".fake_clock()", function()
    local with_fake_clock, go = h.with_fake_clock, h.go

    it("gives a time that only clock:advance() moves", with_fake_clock(function(clock)
      assert.equal(0, clock:now())
      assert.equal(0, runtime.now())
      sleep(0)
      assert.equal(0, runtime.now())
      clock:advance(1.5)
      assert.equal(1.5, clock:now())
      assert.equal(1.5, runtime.now())
      clock:advance(0.1); clock:advance(0.1); clock:advance(0.1)
      assert.equal(1.8, clock:now()) -- whole nanoseconds: no 1.8000000000000003
    end))

    it("starts at the time given, by default at runtime.now()", function()
      local before = runtime.now()
      local clock <close> = runtime.fake_clock()
      assert.is_true(clock:now() >= before)
      local at = clock:now()
      assert.equal(at, runtime.now())
      clock:close()
      local other <close> = runtime.fake_clock(42)
      assert.equal(42, runtime.now())
    end)

    it("wakes a sleeper when its time comes, not before", with_fake_clock(function(clock)
      local woke = go(function() sleep(10); return runtime.now() end)
      clock:advance(9.999)
      assert.is_false(woke.done)
      clock:advance(0.001)
      assert.is_true(woke.done) -- advance returned after the woken task ran
      assert.equal(10, woke[1])  -- and it woke at its deadline
    end))

    it("wakes sleepers in the order of their wake-up times, ties in start order",
      with_fake_clock(function(clock)
        local order = {}
        local function sleeper(name, secs)
          spawn(function() sleep(secs); order[#order + 1] = name end)
        end
        sleeper("slow", 0.09)
        sleeper("fast", 0.01)
        sleeper("medium", 0.05)
        sleeper("medium too", 0.05)
        clock:advance(0.15)
        assert.same({ "fast", "medium", "medium too", "slow" }, order)
      end))

    it("lets the tasks each instant wakes run before time moves on", with_fake_clock(function(clock)
      local times = {}
      spawn(function()
        for _ = 1, 3 do sleep(1); times[#times + 1] = runtime.now() end
      end)
      -- The first sleep starts at 0 (ready tasks run before time moves),
      -- each later one when the previous woke.
      clock:advance(10)
      assert.same({ 1, 2, 3 }, times)
      assert.equal(10, clock:now())
    end))

    it("keeps a load_timeout on fake time", with_fake_clock(function(clock)
      local c = require("cache").AsyncCache{ load_timeout = 5 }
      local r = go(function() return c:get("k", function() sleep(60); return "late" end) end)
      clock:advance(4.9)
      assert.is_false(r.done)
      clock:advance(0.1)
      assert.same({ nil, "load timed out after 5 seconds" }, { r[1], r[2] })
      clock:advance(55) -- the loader ends; its late result is not stored
      assert.is_false(c:contains("k"))
    end))

    it("fires a timer due now without an advance (batch_window_ms = 0)", with_fake_clock(function()
      local calls = 0
      local c = require("cache").AsyncCache{ batch_window_ms = 0, batch_loader = function(keys)
        calls = calls + 1
        local r = {}
        for _, k in ipairs(keys) do r[k] = k .. "!" end
        return r
      end }
      assert.equal("a!", c:get("a"))
      assert.equal(1, calls)
      assert.equal(0, runtime.now())
    end))

    it("makes runtime.run report a wait on it that nobody advances", function()
      local clock <close> = runtime.fake_clock(0)
      local ok, err = pcall(run, function() sleep(1) end)
      assert.is_false(ok)
      assert.equal("runtime.run: the function is waiting for something that can never "
        .. "happen (no task is ready, no timer or I/O is pending); 1 timer(s) wait on the "
        .. "fake clock, which only clock:advance() moves", err:match("^[^\n]*"))
    end)

    it("once closed, gives sleepers still waiting the time they had left on the real clock", function()
      local woke = runtime.event()
      do
        local clock <close> = runtime.fake_clock(0)
        run(function()
          spawn(function() sleep(0.02); woke:set(runtime.now()) end)
          clock:advance(0.01)
        end)
      end
      local t0 = runtime.now()
      local t = run(function() return woke:wait() end)
      assert.is_true(t >= t0)
      assert.is_true(t - t0 < 5) -- the real clock again
    end)

    it("allows one at a time, and one advancing task at a time", with_fake_clock(function(clock)
      assert.has_error(function() runtime.fake_clock() end,
        "runtime.fake_clock(): the fake clock is already on (close the clock first)")
      local done = runtime.event()
      spawn(function() clock:advance(1); done:set() end)
      sleep(0) -- the other task is now advancing, waiting for this one
      assert.has_error(function() clock:advance(1) end,
        "clock:advance(): another task is advancing the clock")
      done:wait()
      assert.equal(1, clock:now())
      clock:advance(1)
      assert.equal(2, clock:now())
    end))

    it("advance() must run in a task and takes a non-negative number", function()
      local clock <close> = runtime.fake_clock(0)
      assert.has_error(function() clock:advance(1) end, "clock:advance() " .. NOT_IN_TASK)
      run(function()
        assert.has_error(function() clock:advance(-1) end,
          "bad argument #1 to 'advance' (seconds must be a non-negative finite number)")
        assert.has_error(function() clock:advance(math.huge) end,
          "bad argument #1 to 'advance' (seconds must be a non-negative finite number)")
        assert.has_error(function() clock:advance("soon") end,
          "bad argument #1 to 'advance' (seconds must be a non-negative finite number)")
      end)
      assert.has_error(function() runtime.fake_clock(0) end,
        "runtime.fake_clock(): the fake clock is already on (close the clock first)")
    end)

    it("a closed clock refuses advance and now; close twice is fine", function()
      local before = runtime.now()
      local clock = runtime.fake_clock(0)
      clock:close()
      clock:close()
      assert.matches("closed", tostring(clock))
      assert.has_error(function() clock:now() end, "clock:now(): the clock is closed")
      run(function()
        assert.has_error(function() clock:advance(1) end, "clock:advance(): the clock is closed")
      end)
      assert.is_true(runtime.now() >= before) -- real time again, not 0
    end)
  end)

  describe(".set_error_hook()", function()
    after_each(function() runtime.set_error_hook(nil) end)

    it("receives the error of a spawned coroutine with a traceback", function()
      local got = {}
      runtime.set_error_hook(function(err, tb)
        got[#got + 1] = { err = err, tb = tb }
      end)
      run(function()
        spawn(function() error("spawned boom") end)
        spawn(function() sleep(0); error("boom after a wait", 0) end)
        sleep(0)
        sleep(0) -- the second one has raised by now
      end)
      assert.equal(2, #got)
      assert.matches("spawned boom", got[1].err, 1, true)
      assert.equal("string", type(got[1].tb))
      assert.matches("stack traceback:", got[1].tb, 1, true)
      assert.matches("spawned boom", got[1].tb, 1, true)
      assert.equal("boom after a wait", got[2].err)
      assert.matches("stack traceback:", got[2].tb, 1, true)
    end)

    it("passes a non-string error object as is", function()
      local obj = { code = 7 }
      local got
      runtime.set_error_hook(function(err, tb) got = { err = err, tb = tb } end)
      run(function()
        spawn(function() error(obj) end)
        sleep(0)
      end)
      assert.equal(obj, got.err)
      assert.equal("string", type(got.tb))
    end)

    it("an error in a spawned coroutine does not disturb the run task", function()
      runtime.set_error_hook(function() end)
      local v = run(function()
        spawn(function() error("ignored") end)
        sleep(0)
        return "done"
      end)
      assert.equal("done", v)
    end)

    it("nil restores the default (the old hook is no longer called)", function()
      local calls = 0
      runtime.set_error_hook(function() calls = calls + 1 end)
      run(function() spawn(function() error("one") end); sleep(0) end)
      assert.equal(1, calls)
      runtime.set_error_hook(nil)
      -- The default reports on stderr.
      run(function() spawn(function() error("expected on stderr (default error hook)") end); sleep(0) end)
      assert.equal(1, calls)
    end)

    it("raises when the hook is neither a function nor nil", function()
      assert.has_error(function() runtime.set_error_hook(42) end,
        "bad argument #1 to 'set_error_hook' (function expected, got number)")
    end)
  end)

  describe(".event()", function()
    it("wait() suspends until set(); is_set() tells", function()
      run(function()
        local ev = runtime.event()
        assert.is_false(ev:is_set())
        local got
        spawn(function() got = table.pack(ev:wait()) end)
        sleep(0)
        assert.is_nil(got)
        ev:set("a", nil, 3)
        assert.is_true(ev:is_set())
        sleep(0)
        assert.same({ "a", nil, 3, n = 3 }, got)
      end)
    end)

    it("set() with no values wakes the waiters with no values", function()
      run(function()
        local ev = runtime.event()
        local got
        spawn(function() got = table.pack(ev:wait()) end)
        sleep(0)
        ev:set()
        sleep(0)
        assert.same({ n = 0 }, got)
      end)
    end)

    it("set() twice raises", function()
      local ev = runtime.event()
      ev:set(1)
      assert.has_error(function() ev:set(2) end, "event:set(): the event is already set")
      run(function() assert.equal(1, ev:wait()) end)
    end)

    it("wait() after set() returns the values at once, without yielding", function()
      run(function()
        local ev = runtime.event()
        ev:set("x", 2)
        local other_ran = false
        spawn(function() other_ran = true end)
        local a, b = ev:wait()
        assert.equal("x", a)
        assert.equal(2, b)
        assert.is_false(other_ran)
      end)
    end)

    it("wait() on a set event works outside a task too", function()
      local ev = runtime.event()
      ev:set("v")
      assert.equal("v", ev:wait())
    end)

    it("wakes every waiter with the values, in the order they waited", function()
      run(function()
        local ev = runtime.event()
        local got, order = {}, {}
        for i = 1, 500 do
          spawn(function()
            local a, b = ev:wait()
            got[i] = { a, b }
            order[#order + 1] = i
          end)
        end
        sleep(0)
        assert.equal(0, #order)
        local shared = {}
        ev:set(shared, "second")
        sleep(0)
        assert.equal(500, #order)
        for i = 1, 500 do
          assert.equal(i, order[i])
          assert.equal(shared, got[i][1])
          assert.equal("second", got[i][2])
        end
      end)
    end)

    it("wait() outside a task raises the error naming runtime.run, runtime.spawn and acache", function()
      local ev = runtime.event()
      assert.has_error(function() ev:wait() end, "event:wait() " .. NOT_IN_TASK)
    end)
  end)

  describe(".gather()", function()
    it("returns one packed result table per function, in order", h.with_fake_clock(function(clock)
      local finished = {}
      local r = h.go(runtime.gather,
        function() sleep(0.03); finished[#finished + 1] = 1; return "slow" end,
        function() finished[#finished + 1] = 2; return 1, nil, 3 end,
        function() sleep(0.01); finished[#finished + 1] = 3 end)
      clock:advance(0.03)
      assert.same({ 2, 3, 1 }, finished) -- not the order of the results
      assert.same({
        { "slow", n = 1 },
        { 1, nil, 3, n = 3 },
        { n = 0 },
      }, r[1])
    end))

    it("runs the functions concurrently", function()
      run(function()
        local a, b = runtime.event(), runtime.event()
        -- Each waits for the other: only a concurrent run can finish.
        local res = runtime.gather(
          function() a:set(); return b:wait() end,
          function() b:set("from b"); a:wait(); return "from a's side" end)
        assert.same({ { "from b", n = 1 }, { "from a's side", n = 1 } }, res)
      end)
    end)

    it("reports a raising function as { ok = false, err = ... }", function()
      run(function()
        local res = runtime.gather(
          function() return "fine" end,
          function() error("gather boom", 0) end,
          function() sleep(0); error("late boom") end)
        assert.same({ "fine", n = 1 }, res[1])
        assert.is_false(res[2].ok)
        assert.equal("gather boom", res[2].err)
        assert.is_false(res[3].ok)
        assert.matches("late boom", res[3].err, 1, true)
      end)
    end)

    it("returns an empty table for no functions", function()
      run(function() assert.same({}, runtime.gather()) end)
    end)

    it("raises when an argument is not a function", function()
      run(function()
        assert.has_error(function() runtime.gather(function() end, 5) end,
          "runtime.gather: argument #2 must be a function, got number")
      end)
    end)

    it("outside a task raises the error naming runtime.run, and runs none of the functions", function()
      local ran = 0
      local ok, err = pcall(runtime.gather, function() ran = ran + 1 end)
      assert.is_false(ok)
      assert.matches("runtime.run(fn) or runtime.spawn(fn)", err, 1, true)
      -- Nothing may have been spawned: it would run, unasked, inside the
      -- next runtime.run.
      run(function() sleep(0) end)
      assert.equal(0, ran)
    end)
  end)

  describe(".can_wait()", function()
    it("is true in a task", function()
      assert.is_true(run(function() return runtime.can_wait() end))
      run(function()
        local v
        spawn(function() v = runtime.can_wait() end)
        sleep(0)
        assert.is_true(v)
      end)
    end)

    it("is false on the main thread", function()
      assert.is_false(runtime.can_wait())
    end)

    it("is false in a plain coroutine, even inside a task", function()
      run(function()
        assert.is_false(coroutine.wrap(function() return runtime.can_wait() end)())
      end)
    end)
  end)
end)

-- Timers are armed from the clock, not from libuv's cached loop time, which
-- is stale after a coroutine has computed for a while.
describe("timers after CPU work", function()
  local cache = require "cache"
  local now = runtime.now

  local function compute(seconds)
    local t = now()
    while now() - t < seconds do end
  end

  it("runtime.sleep(s) waits s from when it is called", function()
    local slept = run(function()
      compute(0.3)
      local t = now()
      sleep(0.2)
      return now() - t
    end)
    assert.is_true(slept >= 0.195, ("slept only %.3f s"):format(slept))
  end)

  it("a load_timeout counts from the get, not from before the caller computed", function()
    local c = cache.AsyncCache{ load_timeout = 0.5 }
    local v, err = run(function()
      compute(0.6)
      return c:get("k", function() sleep(0.05); return "v" end)
    end)
    assert.is_nil(err)
    assert.equal("v", v)
  end)

  it("a batch window counts from the first key, not from before the caller computed", function()
    local calls = {}
    local c = cache.AsyncCache{ batch_window_ms = 100, batch_loader = function(keys)
      calls[#calls + 1] = keys
      local r = {}
      for _, k in ipairs(keys) do r[k] = k .. "!" end
      return r
    end }
    run(function()
      compute(0.2)
      local done = runtime.event()
      spawn(function() sleep(0.02); c:get("b"); done:set() end)
      assert.equal("a!", c:get("a"))
      done:wait()
    end)
    assert.same({ { "a", "b" } }, calls)
  end)
end)
