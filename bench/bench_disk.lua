--- Disk snapshots: save and restore of N small entries (default 100,000),
-- and how long a save in a task holds up the loop.
--
--   ./build/acache bench/bench_disk.lua [--entries N]
--   lua5.4 bench/bench_disk.lua [--entries N]
--
-- Figures, each the best of ROUNDS:
--   blocking save   save_to_backup() outside a task (encode + write + fsync)
--   save in a task  the same inside runtime.run: encoding in 2 ms slices,
--                   the file written on the thread pool
--   restore         creating a cache with the backup (read, check, decode, store)
--   stall           while the save in a task runs, a task sleeps 1 ms at a
--                   time and records how late it wakes; printed beside the
--                   lateness of the same timer with nothing else running
-- Prints numbers; asserts nothing.

local DIR = debug.getinfo(1, "S").source:match("^@(.*)[/\\]") or "."
dofile(DIR .. "/setup.lua")(DIR)

local cache = require "cache"
local runtime = require "cache.runtime"
-- runtime.now() is the coarse monotonic clock (steps of a few ms): the
-- figures here need the precise wall clock.
local now = require("cache.core").wall_time
local sleep, spawn = runtime.sleep, runtime.spawn
local fmt = string.format

local N, ROUNDS = 100000, 3
if arg[1] == "--entries" and math.tointeger(tonumber(arg[2] or "")) then
  N = math.tointeger(tonumber(arg[2]))
elseif arg[1] ~= nil then
  io.stderr:write("usage: bench_disk.lua [--entries N]\n")
  os.exit(2)
end

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir))
local path = dir .. "/bench.acs"

local function fill(c)
  for i = 1, N do
    c:set("user:" .. i, { id = i, name = "user" .. i, score = i * 0.5, active = i % 2 == 0 })
  end
end

local c = cache.AsyncCache{ maxsize = N, backup = cache.DiskBackend(path) }
fill(c)

local best_save, best_task, best_load = math.huge, math.huge, math.huge
local stall, idle = 0, 0
for _ = 1, ROUNDS do
  local t = now()
  assert(c:save_to_backup() == N)
  best_save = math.min(best_save, now() - t)

  runtime.run(function()
    local measuring, phase = true, "idle"
    spawn(function()
      while measuring do
        local t0 = now()
        sleep(0.001)
        local late = now() - t0 - 0.001
        if phase == "idle" then idle = math.max(idle, late)
        elseif phase == "save" then stall = math.max(stall, late) end
      end
    end)
    sleep(0.05) -- the timer's lateness with nothing else to do
    phase = "save"
    local t1 = now()
    assert(c:save_to_backup() == N)
    best_task = math.min(best_task, now() - t1)
    phase = "done"
    measuring = false
  end)

  collectgarbage()
  local t2 = now()
  local c2 = cache.AsyncCache{ maxsize = N, backup = cache.DiskBackend(path) }
  best_load = math.min(best_load, now() - t2)
  assert(c2:get_metrics().size == N and c2:load_error() == nil)
  c2:close()
end

local f = io.open(path, "rb")
local size = f:seek("end")
f:close()
os.execute("rm -rf " .. dir)

print(fmt("Disk snapshot of %d entries ({ id, name, score, active }), file %.1f MB, best of %d", N, size / 1e6, ROUNDS))
print(fmt("  blocking save     %7.1f ms   (%.0f ns per entry)", best_save * 1e3, best_save / N * 1e9))
print(fmt("  save in a task    %7.1f ms", best_task * 1e3))
print(fmt("  restore           %7.1f ms   (%.0f ns per entry)", best_load * 1e3, best_load / N * 1e9))
print(fmt("  longest lateness of a 1 ms sleep: %.2f ms during the save in a task, %.2f ms idle",
  stall * 1e3, idle * 1e3))
