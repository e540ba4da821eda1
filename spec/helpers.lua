-- Helpers shared by the specs: local h = require "helpers" (spec/ is on
-- LUA_PATH when the specs run, see cmake/Tests.cmake).  Helpers that only
-- one spec uses stay in that spec.
local runtime = require "cache.runtime"

local run, spawn = runtime.run, runtime.spawn
local pack, unpack = table.pack, table.unpack

local h = {}

-- The message of an operation that must wait, called outside a task (after
-- the name of the operation).
h.NOT_IN_TASK = "must wait, which needs a coroutine run by the cache runtime: "
  .. "call it inside runtime.run(fn) or runtime.spawn(fn), or run the script with acache"

-- it("...", h.in_run(function() ... end)): the test body runs as a task.
function h.in_run(fn)
  return function() return run(fn) end
end

-- it("...", h.with_fake_clock(function(clock) ... end)): the test body
-- runs as a task with the fake clock on (runtime.fake_clock(0): time starts
-- at 0); the clock is closed when the test ends, however it ends.  The
-- body is the clock: it starts the work under test in other tasks
-- (h.go), then moves time with clock:advance and looks at the outcome
-- (one task advances at a time).
function h.with_fake_clock(fn)
  return function()
    local clock <close> = runtime.fake_clock(0)
    return run(fn, clock)
  end
end

-- Spawns fn(...) and returns a table that gets its outcome once it
-- returns: r.done is then true and r[1..r.n] are its results; a raising
-- fn gives r.ok = false and r.err.
function h.go(fn, ...)
  local r = { done = false }
  local args = pack(...)
  spawn(function()
    local res = pack(pcall(fn, unpack(args, 1, args.n)))
    if res[1] then
      for i = 2, res.n do r[i - 1] = res[i] end
      r.n, r.ok = res.n - 1, true
    else
      r.ok, r.err = false, res[2]
    end
    r.done = true
  end)
  return r
end

-- A function that counts its calls and records their arguments: returns
-- stats with stats.fn (the same function as stats.loader, the name used
-- where it is a cache loader), stats.calls, stats.keys[i] (the first
-- argument of call i) and stats.args[i] (all its arguments, packed).
function h.counted(fn)
  local stats = { calls = 0, keys = {}, args = {} }
  stats.fn = function(...)
    stats.calls = stats.calls + 1
    stats.keys[stats.calls] = (...)
    stats.args[stats.calls] = pack(...)
    return fn(...)
  end
  stats.loader = stats.fn
  return stats
end

-- Spawns n tasks running fn(i) and waits for all; returns their packed
-- results (a raising fn gives { ok = false, err = <the error object> }).
function h.spawn_all(n, fn)
  local results, left, done = {}, n, runtime.event()
  for i = 1, n do
    spawn(function()
      local r = pack(pcall(fn, i))
      results[i] = r[1] and pack(unpack(r, 2, r.n)) or { ok = false, err = r[2] }
      left = left - 1
      if left == 0 then done:set() end
    end)
  end
  done:wait()
  return results
end

-- Spawns one task per element of list running fn(element, i), waits for
-- all; returns their packed results as h.spawn_all does (an empty list
-- gives {} at once).
function h.concurrently(list, fn)
  if #list == 0 then return {} end
  return h.spawn_all(#list, function(i) return fn(list[i], i) end)
end

-- The error object raised by fn(...), or nil; a string loses its
-- "file:line: " prefix, as with assert.has_error.
function h.error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then return nil end
  if type(err) == "string" then err = err:gsub("^.-:%d+: ", "", 1) end
  return err
end

-- Collects what reaches the runtime's error hook: h.hook_messages()
-- installs a hook and returns the list it fills (the spec removes the
-- hook in its after_each); h.hook_messages(fn) does so while fn runs only,
-- and raises what fn raises.
function h.hook_messages(fn)
  local got = {}
  runtime.set_error_hook(function(err) got[#got + 1] = err end)
  if fn == nil then return got end
  local ok, e = pcall(fn)
  runtime.set_error_hook(nil)
  assert(ok, e)
  return got
end

return h
