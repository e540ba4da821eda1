--- The cache runtime: coroutines on a libuv event loop.
--
--   local runtime = require "cache.runtime"
--   runtime.run(fn, ...)      run fn in a coroutine, drive the loop until it
--                             returns, give back its results (or raise its error)
--   runtime.spawn(fn, ...)    run fn in a new coroutine; errors go to the hook
--   runtime.sleep(seconds)    suspend the current coroutine
--   runtime.now()             monotonic seconds (for measuring)
--   runtime.event()           one-shot signal: ev:wait(), ev:set(...), ev:is_set()
--   runtime.gather(fn, ...)   run functions concurrently, wait for all
--   runtime.set_error_hook(function(err, traceback) end)   nil: print to stderr
--   runtime.can_wait()        true inside a coroutine the runtime can suspend
--   runtime.fake_clock([start])   test facility: time that only moves when told
--
-- The fake clock (for tests).  `local clock <close> = runtime.fake_clock()`
-- turns it on for this Lua state (each runtime has its own); `start` is the
-- time it starts at (default: runtime.now()).  From then on:
--   * runtime.now() and clock:now() return fake time;
--   * every timer started from here on (runtime.sleep, load_timeout, batch
--     windows, the expiry sweep of a cache created now) waits for fake time,
--     to the nanosecond: sleep(0.3) wakes on advance(0.1) three times;
--   * clock:advance(seconds), called in a task, moves it: the tasks already
--     ready run first, then time jumps from deadline to deadline, and at each
--     one the timers due fire and the tasks they woke run (and may start
--     timers of their own, which fire in the same advance if they come due
--     within it), until `seconds` have passed; when advance returns, nothing
--     else is ready.  So `clock:advance(1)` stands for "sleep 1 s while the
--     others work", without the wait.  One task advances at a time (a second
--     raises); a task that polls with bare coroutine.yield() keeps advance
--     from moving on.  The test itself is best the one that advances, with
--     the code under test in tasks it spawns:
--         local clock <close> = runtime.fake_clock(0)
--         runtime.run(function()
--           local done = false
--           runtime.spawn(function() runtime.sleep(5); done = true end)
--           clock:advance(5)           -- returns at once, done is true
--         end)
--   * A timer due now (a batch window of 0) fires on the loop's next turn
--     without an advance; one due later does not keep the loop alive: a
--     runtime.run function that waits for it while no task will advance the
--     clock raises "is waiting for something that can never happen".
--   * clock:close() (or leaving the <close> scope, or the clock being
--     collected) goes back to the real clock: timers still waiting on fake
--     time get the time they had left on the real one, and now jumps back to
--     the monotonic clock.
-- Turn it on before creating the caches of the test: timers started before
-- stay on the real clock (a cache's sweep), and entries set before have
-- deadlines on the real clock (caches read the runtime's clock for TTLs).
local core = require "cache.core"

local rt = core.runtime
local _M = {
  run = rt.run,
  spawn = rt.spawn,
  sleep = rt.sleep,
  now = rt.now,
  event = rt.event,
  fake_clock = rt.fake_clock,
  set_error_hook = rt.set_error_hook,
  can_wait = rt.can_wait,
}

local pack, unpack = table.pack, table.unpack

--- Runs each function in its own coroutine and waits for all of them.
-- Returns one packed table ({ n = , ... } of results) per function, in
-- order; a function that raised gives { ok = false, err = message }.
function _M.gather(...)
  local fns = pack(...)
  for i = 1, fns.n do
    if type(fns[i]) ~= "function" then
      error(("runtime.gather: argument #%d must be a function, got %s"):format(i, type(fns[i])), 2)
    end
  end
  local results, left = {}, fns.n
  if left == 0 then return results end
  if not rt.can_wait() then
    error("runtime.gather must wait for its functions, which needs a coroutine run by the cache runtime: "
      .. "call it inside runtime.run(fn) or runtime.spawn(fn), or run the script with acache", 2)
  end
  local done = rt.event()
  for i = 1, fns.n do
    rt.spawn(function()
      local r = pack(pcall(fns[i]))
      if r[1] then
        results[i] = pack(unpack(r, 2, r.n))
      else
        results[i] = { ok = false, err = r[2], n = 0 }
      end
      left = left - 1
      if left == 0 then done:set() end
    end)
  end
  done:wait()
  return results
end

return _M
