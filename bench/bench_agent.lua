--- agent_cache: what a cached tool hit costs inside a session with loop
-- detection on, against a plain decorated hit in the same run; and how
-- much memory a session holds after 1,000,000 tool calls.
--
--   ./build/acache bench/bench_agent.lua [--iterations N] [--calls N]
--   lua5.4 bench/bench_agent.lua [--iterations N] [--calls N]
--
-- Hits: HOT_KEYS resident argument sets, f(1) .. f(HOT_KEYS) in turn, for
--   decorated   cache.AsyncLRU{ maxsize = HOT_KEYS }(fn)
--   no session  agent.AgentCache{ maxsize = HOT_KEYS }(fn), called outside
--               any session
--   session     the same tool in a session, loop detection off
--   detection   ... in a session with loop detection on and its three
--               rules running (repeats, depth, cycle: limits they never
--               reach, so every call is checked and none is stopped)
-- Each round times one batch of BATCH calls of every contender back to
-- back (the order reversed every other round); the figure is the median
-- of the per-batch means, and the overhead is the median of the per-round
-- differences against the decorated hit (target: <= 1 us), so that load on
-- the machine slows both sides of a round alike.
-- Memory: one session with loop detection on makes --calls calls (default
-- 1,000,000) of a write tool with a new argument each time (every call a
-- new key: the worst case for the history), then as many cached reads;
-- the Lua heap after a full collection is printed at checkpoints.  The
-- history keeps a window of history_size calls plus counters, so the
-- figure stays flat.  The context is switched between contenders with
-- core.runtime.set_context (what opening a session does), outside the
-- timed loops.
local DIR = debug.getinfo(1, "S").source:match("^@(.*)[/\\]") or "."
dofile(DIR .. "/setup.lua")(DIR)

local cache = require "cache"
local agent = require "agent_cache"
local core = require "cache.core"
local runtime = require "cache.runtime"

local now = runtime.now
local set_context = core.runtime.set_context
local fmt, sort = string.format, table.sort

local BATCH = 1000
local HOT_KEYS = 1000
local TARGET_OVERHEAD_NS = 1000
local NO_LIMIT = 1 << 62 -- a limit the rules check but never reach

local ITERATIONS, CALLS = 200000, 1000000
do
  local i = 1
  while i <= #arg do
    local a, v = arg[i], math.tointeger(tonumber(arg[i + 1] or ""))
    if (a == "--iterations" or a == "--calls") and v and v >= BATCH then
      if a == "--iterations" then ITERATIONS = v else CALLS = v end
      i = i + 2
    else
      io.stderr:write("usage: bench_agent.lua [--iterations N] [--calls N] (N >= ", BATCH, ")\n")
      os.exit(2)
    end
  end
end

local function full_gc()
  collectgarbage("collect")
  collectgarbage("collect")
end

local function median(t)
  local s = table.move(t, 1, #t, 1, {})
  sort(s)
  local n = #s
  return n % 2 == 1 and s[n // 2 + 1] or (s[n // 2] + s[n // 2 + 1]) / 2, s[math.max(1, n // 10)],
    s[math.max(1, math.ceil(n * 0.9))]
end

---------------------------------------------------------------------------
-- Hits

local calls = 0
local function tool_fn(id)
  calls = calls + 1
  return id
end

local decorated = cache.AsyncLRU{ maxsize = HOT_KEYS }(tool_fn)
local tool = agent.AgentCache{ resource = "bench", maxsize = HOT_KEYS, name = "lookup" }(tool_fn)

set_context(nil)
local with_detection = agent.AgentCacheSession{ session_id = "bench-detection",
  max_tool_repeats = NO_LIMIT, max_execution_depth = NO_LIMIT }
set_context(nil)
local without = agent.AgentCacheSession{ session_id = "bench-plain", loop_detection = false }
set_context(nil)

for i = 1, HOT_KEYS do
  assert(decorated(i) == i and tool(i) == i)
end
local before = calls

local contenders = {
  { "decorated", nil, function() local f = decorated; for j = 1, BATCH do f(j) end end },
  { "no session", nil, function() local f = tool; for j = 1, BATCH do f(j) end end },
  { "session", without, function() local f = tool; for j = 1, BATCH do f(j) end end },
  { "detection", with_detection, function() local f = tool; for j = 1, BATCH do f(j) end end },
}

local rounds = ITERATIONS // BATCH
local warm = math.max(5, rounds // 10)
local times = {}
for i = 1, #contenders do times[i] = {} end
full_gc()
for b = 1, warm + rounds do
  local first, last, step = 1, #contenders, 1
  if b % 2 == 0 then first, last, step = #contenders, 1, -1 end
  for i = first, last, step do
    local c = contenders[i]
    set_context(c[2])
    local t0 = now()
    c[3]()
    local dt = (now() - t0) * 1e9 / BATCH
    if b > warm then times[i][b - warm] = dt end
  end
end
set_context(nil)
assert(calls == before, "a hit called the tool")
assert(with_detection:get_metrics().loop_detections == 0)

local function overhead(i)
  local d = {}
  for b = 1, rounds do d[b] = times[i][b] - times[1][b] end
  return median(d)
end

print(fmt("agent_cache hits: %d resident argument sets, %d rounds of %d calls per contender",
  HOT_KEYS, rounds, BATCH))
print(fmt("  %-58s %9s %22s", "", "ns/call", "over decorated (p10-p90)"))
for i, c in ipairs(contenders) do
  local label = ({
    "decorated hit, cache.AsyncLRU{}(fn)",
    "agent tool hit, no session",
    "agent tool hit in a session, loop detection off",
    "agent tool hit in a session, loop detection on (3 rules)",
  })[i]
  local m = median(times[i])
  if i == 1 then
    print(fmt("  %-58s %9.1f", label, m))
  else
    local o, lo, hi = overhead(i)
    print(fmt("  %-58s %9.1f %9.1f (%.1f-%.1f)", label, m, o, lo, hi))
  end
end
local o = overhead(#contenders)
print(fmt("  overhead with loop detection: %.0f ns, target <= %d ns   %s", o, TARGET_OVERHEAD_NS,
  o <= TARGET_OVERHEAD_NS and "PASS" or "MISS"))
with_detection:close()
without:close()

---------------------------------------------------------------------------
-- Memory of a long session

local writes = 0
local record = agent.AgentCacheInvalidator{ resource = "log", name = "record" }(function(i)
  writes = writes + 1
end)

full_gc()
local base = collectgarbage("count")
local s = agent.AgentCacheSession{ session_id = "bench-memory", max_tool_repeats = NO_LIMIT,
                                   max_execution_depth = NO_LIMIT }
local checkpoints, next_cp = {}, 1000
local function heap_kb() full_gc(); return collectgarbage("count") - base end
print(fmt("\nMemory of one session (loop detection on, history_size = %d): Lua heap over the "
  .. "heap before it, after a full collection", s.history_size))
print(fmt("  %-12s %-38s %s", "calls", "write tool, a new argument each call", "then reads (1000 keys, hits)"))
local t0 = now()
for i = 1, CALLS do
  record(i)
  if i == next_cp then
    checkpoints[#checkpoints + 1] = { i, heap_kb() }
    next_cp = next_cp * 10
  end
end
local write_ns = (now() - t0) / CALLS * 1e9
next_cp = 1000
local reads = {}
t0 = now()
for i = 1, CALLS do
  tool((i - 1) % HOT_KEYS + 1)
  if i == next_cp then
    reads[#reads + 1] = heap_kb()
    next_cp = next_cp * 10
  end
end
local read_ns = (now() - t0) / CALLS * 1e9
for i, cp in ipairs(checkpoints) do
  print(fmt("  %-12d %8.1f KB %29s %8.1f KB", cp[1], cp[2], "", reads[i] or 0))
end
local m = s:get_metrics()
assert(writes == CALLS and m.calls == 2 * CALLS and m.hits == CALLS)
print(fmt("  %d calls in all (%.0f ns per write call, %.0f ns per read hit, timing included "
  .. "the checkpoints' collections)", m.calls, write_ns, read_ns))
s:close()
