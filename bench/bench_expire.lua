--- Active expiry through cache.AsyncCache: how long entries that nobody
-- reads stay resident after their TTL, how memory_bytes falls, and how long
-- the sweeper holds up the loop (the C figures are bench_expire).
--
--   ./build/acache bench/bench_expire.lua [--entries N] [--ttl SECONDS]
--   lua5.4 bench/bench_expire.lua [--entries N] [--ttl SECONDS]
--
-- Sets N entries (default 200,000) with a TTL (default 0.2 s), then polls
-- get_metrics() every 5 ms.  Meanwhile a task sleeps 1 ms at a time and
-- records how late it wakes: with the sweeper's slices capped at 1 ms, the
-- lateness while entries expire should stay near the lateness before they
-- do (the timer's own granularity).  Prints numbers; asserts nothing.

local DIR = debug.getinfo(1, "S").source:match("^@(.*)[/\\]") or "."
dofile(DIR .. "/setup.lua")(DIR)

local cache = require "cache"
local runtime = require "cache.runtime"
local now, sleep, spawn = runtime.now, runtime.sleep, runtime.spawn
local fmt = string.format

local N, TTL = 200000, 0.2
do
  local i = 1
  while i <= #arg do
    local a, v = arg[i], arg[i + 1]
    if a == "--entries" and math.tointeger(tonumber(v or "")) then
      N = math.tointeger(tonumber(v))
    elseif a == "--ttl" and tonumber(v or "") and tonumber(v) > 0 then
      TTL = tonumber(v)
    else
      io.stderr:write("usage: bench_expire.lua [--entries N] [--ttl SECONDS]\n")
      os.exit(2)
    end
    i = i + 2
  end
end

local function kb() return collectgarbage("count") end

runtime.run(function()
  local c = cache.AsyncCache{ maxsize = N }
  collectgarbage()
  local lua_empty = kb()
  local t0 = now()
  for i = 1, N do c:set("key:" .. i, i, { ttl = TTL }) end
  local deadline = now() + TTL -- the last entry's
  local m = c:get_metrics()
  local mem_full = m.memory_bytes
  collectgarbage()
  local lua_full = kb()

  -- The loop's responsiveness: lateness of 1 ms sleeps, before and after
  -- the deadline.
  local before, after, stop = 0, 0, false
  spawn(function()
    while not stop do
      local t = now()
      sleep(0.001)
      local late = now() - t - 0.001
      if stop then break end -- woken after the full collection below
      if now() < deadline then
        if late > before then before = late end
      elseif late > after then
        after = late
      end
    end
  end)

  local gone_at, low_at, low = nil, nil, mem_full
  while true do
    sleep(0.005)
    m = c:get_metrics()
    local t = now()
    if m.memory_bytes < low then low, low_at = m.memory_bytes, t end
    if gone_at == nil and m.size == 0 then gone_at = t end
    -- Done once memory has not fallen for 300 ms after the last entry left.
    if gone_at and t - (low_at or gone_at) > 0.3 then break end
    if t - deadline > 30 then break end
  end
  stop = true
  collectgarbage()
  local lua_after = kb()

  print(fmt("Active expiry through cache.AsyncCache: %d entries, TTL %g s, nobody reads them", N, TTL))
  print(fmt("  set in %.0f ms", (deadline - TTL - t0) * 1e3))
  if gone_at then
    print(fmt("  size 0                 %6.0f ms after the last deadline", (gone_at - deadline) * 1e3))
  else
    print(fmt("  still %d entries 30 s after the last deadline", m.size))
  end
  print(fmt("  memory_bytes at least  %6.0f ms after the last deadline: %.2f MB -> %.3f MB",
    ((low_at or deadline) - deadline) * 1e3, mem_full / 1e6, low / 1e6))
  print(fmt("  longest lateness of a 1 ms sleep: %.0f us before the deadline, %.0f us while expiring",
    before * 1e6, after * 1e6))
  print(fmt("  Lua heap (collectgarbage): %.1f MB empty, %.1f MB full, %.1f MB after expiry",
    lua_empty / 1024, lua_full / 1024, lua_after / 1024))
end)
