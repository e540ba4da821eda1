--- The benchmark of the Lua API: what a hit, a miss, a herd of waiters and a
-- mixed workload cost on this machine, next to a bare C floor (floor.so)
-- and a pure-Lua LRU (lru.lua), with the project's targets.
--
--   ./build/acache --load bench bench/bench.lua [--iterations N] [--json FILE]
--   lua5.4 bench/bench.lua [--iterations N] [--json FILE]
--
-- C modules are searched in $ACACHE_BUILD_DIR (default: ../build next to
-- this file): bench/?.so (floor) and lua/?.so (cache.core, for lua5.4).
--
-- Method: every timed figure runs BATCH operations between two readings of
-- runtime.now() (CLOCK_MONOTONIC) and keeps the batch mean; the figure is
-- the median of those means over N/BATCH batches, after warm-up batches that
-- are not kept, printed with their min-max.  Figures that are compared with
-- a reference (the hit with the floor, the LRU with the hit, the LRU with
-- the cache in the mixed workload) are interleaved: N/BATCH rounds, each
-- timing one batch of every contender back to back (the order reversed
-- every other round), a ratio per round, and the ratio printed is the
-- median of the per-round ratios with their p10-p90.  Other work on the
-- machine then slows both sides of a round alike: absolute figures move
-- with the load, ratios much less.  The loop and the array read of the key
-- are inside every figure (printed separately as "empty loop").  Full
-- garbage collections run only between sections; inside one, the collector
-- runs as it would for a user (it matters for the pure-Lua LRU, which
-- allocates nodes).

---------------------------------------------------------------------------
-- Finding our modules, under acache (which preloads cache.core and puts
-- --load dirs on package.path only) and under lua5.4.
local DIR = debug.getinfo(1, "S").source:match("^@(.*)[/\\]") or "."
dofile(DIR .. "/setup.lua")(DIR)

local cache = require "cache"
local runtime = require "cache.runtime"
local lru = require "lru"
local floor = require "floor"

local now, spawn = runtime.now, runtime.spawn
local fmt, concat, sort = string.format, table.concat, table.sort
local floor_get, floor_noop = floor.get, floor.noop

local BATCH = 1000            -- operations per timed batch
local HOT_KEYS = 1000         -- resident keys of the hit figures (= BATCH)
local WAITERS = 10000
local MIXED_KEYS = 10000
local MIXED_CAPACITIES = { 1000, 1024, 2000, 2048 }
local MEMORY_ENTRIES = 100000
local TVALUE_BYTES = 16       -- sizeof(TValue) in Lua 5.4 (x86-64)

local TARGET = {
  hit_over_floor = 1.5,       -- cache hit <= 1.5 x floor
  lru_over_hit = 1.3,         -- pure-Lua LRU >= 1.3 x cache hit
  miss_ns = 600,
  waiter_ns = 1000,
  mixed_ns = 300,
  bytes_per_entry = 64,
  decorated_int_ns = 250,     -- decorated hit, one integer argument
  batch_keys_per_s = 1000000, -- keys through a trivial batch loader
}
local BATCH_KEYS = 100000
local BATCH_CHUNK = 1000      -- keys per get_many call and per batch

---------------------------------------------------------------------------
-- Arguments

local function usage(to, status)
  to:write("usage: bench.lua [--iterations N] [--json FILE]\n",
    "  --iterations N  operations per figure (default 200000, at least ", BATCH, ")\n",
    "  --json FILE     also write the figures as JSON to FILE\n")
  os.exit(status)
end

local function parse_args(argv)
  local o = { iterations = 200000 }
  local i = 1
  while i <= #argv do
    local a, v = argv[i], argv[i + 1]
    local name, inline = a:match("^(%-%-[%w-]+)=(.*)$")
    if name then a, v, i = name, inline, i - 1 end
    if a == "--iterations" then
      local n = math.tointeger(tonumber(v or ""))
      if n == nil or n < BATCH then
        io.stderr:write("bench.lua: --iterations needs an integer >= ", BATCH, "\n")
        usage(io.stderr, 2)
      end
      o.iterations = n
      i = i + 2
    elseif a == "--json" then
      if v == nil then usage(io.stderr, 2) end
      o.json = v
      i = i + 2
    elseif a == "-h" or a == "--help" then
      usage(io.stdout, 0)
    else
      io.stderr:write("bench.lua: unknown argument '", a, "'\n")
      usage(io.stderr, 2)
    end
  end
  return o
end

---------------------------------------------------------------------------
-- JSON (objects with sorted keys, arrays for sequences; NaN/inf as null)

local json_encode
do
  local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
                ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
  local function str(s)
    return '"' .. s:gsub('[%c"\\]', function(ch)
      return ESC[ch] or fmt("\\u%04x", ch:byte())
    end) .. '"'
  end
  local function is_array(t)
    local n = #t
    if n == 0 then return false end
    local count = 0
    for _ in pairs(t) do count = count + 1 end
    return count == n
  end
  local function enc(v, indent, out)
    local tv = type(v)
    if tv == "nil" then
      out[#out + 1] = "null"
    elseif tv == "boolean" then
      out[#out + 1] = tostring(v)
    elseif tv == "number" then
      if math.type(v) == "integer" then
        out[#out + 1] = tostring(v)
      elseif v ~= v or v == math.huge or v == -math.huge then
        out[#out + 1] = "null"
      else
        out[#out + 1] = fmt("%.10g", v)
      end
    elseif tv == "string" then
      out[#out + 1] = str(v)
    elseif tv == "table" then
      local inner = indent .. "  "
      if is_array(v) then
        out[#out + 1] = "["
        for i = 1, #v do
          out[#out + 1] = (i > 1 and ",\n" or "\n") .. inner
          enc(v[i], inner, out)
        end
        out[#out + 1] = "\n" .. indent .. "]"
      else
        local keys = {}
        for k in pairs(v) do keys[#keys + 1] = tostring(k) end
        sort(keys)
        if #keys == 0 then out[#out + 1] = "{}"; return end
        out[#out + 1] = "{"
        for i, k in ipairs(keys) do
          local val = v[k]
          if val == nil then val = v[tonumber(k)] end
          out[#out + 1] = (i > 1 and ",\n" or "\n") .. inner .. str(k) .. ": "
          enc(val, inner, out)
        end
        out[#out + 1] = "\n" .. indent .. "}"
      end
    else
      error("json: cannot encode a " .. tv)
    end
  end
  json_encode = function(v)
    local out = {}
    enc(v, "", out)
    return concat(out)
  end
end

---------------------------------------------------------------------------
-- Measuring
--
-- A figure is a list of samples, one per round, each the ns/op mean of one
-- batch of BATCH operations.  Figures that are compared (a hit and its C
-- floor, the LRU and the hit, the LRU and the cache on the mixed workload)
-- are timed in the same rounds: round b times one batch of each contender
-- back to back, so that both see the same load on the machine, and a ratio
-- is taken per round.  A ratio of two medians timed at different moments
-- swings with the load; the median of per-round ratios does not, because a
-- slow moment slows both sides of its round.

local function full_gc()
  collectgarbage("collect")
  collectgarbage("collect")
end

-- Nearest-rank percentile of a sorted array.
local function pct(sorted, p)
  local n = #sorted
  return sorted[math.min(n, math.max(1, math.ceil(n * p)))]
end

-- Median, p10, p90, min, max and mean of samples (left unsorted: the
-- per-round order is needed for ratios).
local function summarize(samples)
  local s = table.move(samples, 1, #samples, 1, {})
  sort(s)
  local n = #s
  local mid = n // 2
  local median = n % 2 == 1 and s[mid + 1] or (s[mid] + s[mid + 1]) / 2
  local sum = 0
  for i = 1, n do sum = sum + s[i] end
  return { median = median, p10 = pct(s, 0.1), p90 = pct(s, 0.9), min = s[1],
           max = s[n], mean = sum / n, samples = n }
end

-- Times contenders = { {name, batch}, ... } in interleaved rounds: warm
-- rounds (not kept), then on_start() if given, then rounds b = 1..rounds,
-- each calling every contender's batch(b) once (BATCH operations) between
-- two readings of now().  Odd rounds go first to last, even rounds last to
-- first (ABBA), so no contender always runs right after another one.
-- Returns name -> array of per-round ns/op.
local function measure_rounds(warm, rounds, contenders, on_start)
  local n = #contenders
  local times = {}
  for i = 1, n do times[i] = {} end
  full_gc()
  for b = 1, warm do
    for i = 1, n do contenders[i][2](b) end
  end
  if on_start then on_start() end
  for b = 1, rounds do
    local first, last, step = 1, n, 1
    if b % 2 == 0 then first, last, step = n, 1, -1 end
    for i = first, last, step do
      local batch = contenders[i][2]
      local t0 = now()
      batch(b)
      times[i][b] = (now() - t0) * 1e9 / BATCH
    end
  end
  full_gc()
  local out = {}
  for i = 1, n do out[contenders[i][1]] = times[i] end
  return out
end

-- The summary of a figure's per-batch ns/op.
local function summarize_ns(times)
  local s = summarize(times)
  s.batches, s.batch = s.samples, BATCH
  return s
end

-- One figure alone.
local function measure(warm, batches, batch, on_start)
  return summarize_ns(measure_rounds(warm, batches, { { "x", batch } }, on_start).x)
end

-- The per-round ratio a[b] / b[b] of two figures timed in the same rounds.
local function ratio(a, b)
  local r = {}
  for i = 1, #a do r[i] = a[i] / b[i] end
  return summarize(r)
end

---------------------------------------------------------------------------
-- Reporting

local passes, targets = 0, {}

local function verdict(name, value, limit, ok, unit)
  targets[#targets + 1] = { name = name, value = value, limit = limit, pass = ok, unit = unit }
  if ok then passes = passes + 1 end
  return ok and "PASS" or "MISS"
end

-- One figure: label, value, unit, its spread (see range, spread) and the
-- target with its verdict.
local function line(label, value, unit, dispersion, target)
  print(fmt("  %-48s %9s %-6s %-22s %s", label, value, unit or "", dispersion or "",
    target or ""))
end

local function ns(x) return fmt("%.1f", x) end

-- An absolute figure's spread: min-max over its batches (or rounds).
local function range(s, f)
  f = f or ns
  return "min-max " .. f(s.min) .. "-" .. f(s.max)
end

-- A ratio's spread: p10-p90 of its per-round ratios.
local function spread(s)
  return fmt("p10-p90 %.2f-%.2f", s.p10, s.p90)
end

-- The 1-minute load average (Linux), or nil: other work on the machine
-- inflates every figure, so it is printed with them.
local function loadavg()
  local f = io.open("/proc/loadavg")
  if not f then return nil end
  local s = f:read("l")
  f:close()
  return s and tonumber(s:match("^(%S+)"))
end

local function cpu_model()
  local f = io.open("/proc/cpuinfo")
  if not f then return "unknown" end
  local s = f:read("a")
  f:close()
  return s:match("model name%s*:%s*([^\n]+)") or "unknown"
end

---------------------------------------------------------------------------
-- Fixtures

local function key_list(prefix, n)
  local t = {}
  for i = 1, n do t[i] = prefix .. i end
  return t
end

-- A fixed pseudo-random sequence of keys (64-bit LCG, Knuth's MMIX
-- constants; the high bits pick the key), so runs are comparable.
local function random_sequence(keys, n, seed)
  local x, nkeys, seq = seed, #keys, {}
  for i = 1, n do
    x = x * 6364136223846793005 + 1442695040888963407
    seq[i] = keys[((x >> 33) % nkeys) + 1]
  end
  return seq
end

local function trivial_loader() return true end

---------------------------------------------------------------------------
-- Sanity checks (not timed): the LRU is an LRU and agrees with the cache.

local function check_lru()
  local l = lru.new(3)
  l:set("a", 1); l:set("b", 2); l:set("c", 3)
  assert(l:get("a") == 1)                  -- a is now most recent
  l:set("d", 4)                            -- evicts b
  assert(l:get("b") == nil and l:get("c") == 3 and l:get("d") == 4)
  assert(concat(l:keys(), ",") == "d,c,a")
  l:set("a", 10)
  assert(l:get("a") == 10 and l:size() == 3)
  assert(l:delete("c") and not l:delete("c") and l:size() == 2)
  l:set(1, "one")
  assert(l:get(1.0) == "one")
end

-- Both are exact LRUs: on the same sequence they must miss the same keys.
local function check_same_misses(seq, cap, n)
  local c = cache.AsyncCache{ maxsize = cap }
  local l = lru.new(cap)
  local cache_loads, lru_loads = 0, 0
  local function load() cache_loads = cache_loads + 1; return true end
  for i = 1, n do
    local k = seq[i]
    c:get(k, load)
    if l:get(k) == nil then lru_loads = lru_loads + 1; l:set(k, true) end
  end
  c:close()
  assert(cache_loads == lru_loads, fmt("LRU check: cache loaded %d keys, lru.lua %d",
    cache_loads, lru_loads))
  return cache_loads
end

---------------------------------------------------------------------------
-- The figures

local function bench_hits(opts, R)
  local batches = opts.iterations // BATCH
  local warm = math.max(5, batches // 10)
  local keys = key_list("key:", HOT_KEYS)
  local values = {}
  for i = 1, HOT_KEYS do values[i] = { id = i } end

  local c = cache.AsyncCache{ maxsize = HOT_KEYS }
  local l = lru.new(HOT_KEYS)
  local f = floor.new(keys, values)
  for i = 1, HOT_KEYS do
    c:set(keys[i], values[i])
    l:set(keys[i], values[i])
  end
  for i = 1, HOT_KEYS do
    assert(c:get(keys[i]) == values[i] and l:get(keys[i]) == values[i] and
           floor_get(f, keys[i]) == values[i], "hit fixtures disagree")
  end
  assert(floor_get(f, "absent") == nil)

  -- Each batch function copies what it uses into locals: the loop then
  -- reads registers, not upvalues, the same for every contender.  All six
  -- run in the same rounds: the three contenders, and as context, to split
  -- the hit's cost, the loop alone, a bare C call, and c:get without the
  -- method lookup (get fetched once).
  local t = measure_rounds(warm, batches, {
    { "cache", function()
      local c, keys = c, keys
      for j = 1, BATCH do c:get(keys[j]) end
    end },
    { "floor", function()
      local f, keys, get = f, keys, floor_get
      for j = 1, BATCH do get(f, keys[j]) end
    end },
    { "lru", function()
      local l, keys = l, keys
      for j = 1, BATCH do l:get(keys[j]) end
    end },
    { "cache_local_get", function()
      local c, keys, get = c, keys, c.get
      for j = 1, BATCH do get(c, keys[j]) end
    end },
    { "c_call", function()
      local f, keys, noop = f, keys, floor_noop
      for j = 1, BATCH do noop(f, keys[j]) end
    end },
    { "empty_loop", function()
      local keys, x = keys, nil
      for j = 1, BATCH do x = keys[j] end
      return x
    end },
  })
  local m = c:get_metrics()
  assert(m.misses == 0 and m.size == HOT_KEYS, "hit figure saw misses")
  c:close()

  local r = {}
  for name, times in pairs(t) do r[name] = summarize_ns(times) end
  local q_floor = ratio(t.cache, t.floor)
  local q_lru = ratio(t.lru, t.cache)
  local ratio_floor, ratio_lru = q_floor.median, q_lru.median
  R.hit = {
    keys = HOT_KEYS, rounds = batches,
    cache_ns = r.cache.median, lru_ns = r.lru.median, floor_ns = r.floor.median,
    cache_over_floor = ratio_floor, lru_over_cache = ratio_lru,
    ratios = { cache_over_floor = q_floor, lru_over_cache = q_lru },
    context = { empty_loop_ns = r.empty_loop.median, c_call_ns = r.c_call.median,
                cache_get_without_method_lookup_ns = r.cache_local_get.median },
    detail = r,
  }
  print(fmt("\n1-4. Hits, rotating over %d resident keys (\"key:1\" .. \"key:%d\"); the floor is",
    HOT_KEYS, HOT_KEYS))
  print("     a C function: ac__hash, an open-addressing probe, one rawgeti (bench/floor.c).")
  print(fmt("     All six loops below are timed in the same %d rounds (one batch each per", batches))
  print("     round); ratios are the median of the per-round ratios.")
  line("1. AsyncCache  c:get(key)", ns(r.cache.median), "ns/op", range(r.cache))
  line("2. pure-Lua LRU  l:get(key)", ns(r.lru.median), "ns/op", range(r.lru))
  line("3. floor  floor.get(f, key)", ns(r.floor.median), "ns/op", range(r.floor))
  line("4. cache hit / floor", fmt("%.2f", ratio_floor), "x", spread(q_floor),
    fmt("target <= %.1f x   %s", TARGET.hit_over_floor,
      verdict("hit / floor", ratio_floor, TARGET.hit_over_floor, ratio_floor <= TARGET.hit_over_floor, "x")))
  line("   pure-Lua LRU / cache hit", fmt("%.2f", ratio_lru), "x", spread(q_lru),
    fmt("target >= %.1f x   %s", TARGET.lru_over_hit,
      verdict("pure-Lua LRU / hit", ratio_lru, TARGET.lru_over_hit, ratio_lru >= TARGET.lru_over_hit, "x")))
  print("   context (same rounds, not targets):")
  line("   empty loop (for + keys[j])", ns(r.empty_loop.median), "ns/op", range(r.empty_loop))
  line("   bare Lua->C call  floor.noop(f, key)", ns(r.c_call.median), "ns/op", range(r.c_call))
  line("   cache get without method lookup  get(c, key)", ns(r.cache_local_get.median), "ns/op",
    range(r.cache_local_get))
end

local function bench_miss(opts, R)
  local batches = opts.iterations // BATCH
  local warm = math.max(5, batches // 10)
  local keys = key_list("miss:", (warm + batches) * BATCH)
  local c = cache.AsyncCache{ maxsize = #keys }
  local pos = 0
  local s = measure(warm, batches, function()
    local c, keys, loader, p = c, keys, trivial_loader, pos
    for j = 1, BATCH do c:get(keys[p + j], loader) end
    pos = p + BATCH
  end)
  local m = c:get_metrics()
  assert(m.loads == #keys and m.size == #keys and m.hits == 0,
    "miss figure: every get must load and store a new key")
  c:close()
  keys = nil

  -- Context: the steady-state miss.  A full cache of HOT_KEYS entries read
  -- cyclically over twice as many keys misses every time (LRU), so each get
  -- loads, stores and evicts, with keys that stay in the CPU caches.
  local cyc = key_list("key:", 2 * HOT_KEYS)
  local e = cache.AsyncCache{ maxsize = HOT_KEYS }
  local half = 0 -- alternates across calls, warm-up included
  local se = measure(warm, batches, function()
    local e, cyc, loader, base = e, cyc, trivial_loader, half * BATCH
    for j = 1, BATCH do e:get(cyc[base + j], loader) end
    half = 1 - half
  end)
  assert(e:get_metrics().hits == 0, "steady-state miss figure saw hits")
  e:close()

  R.miss = { ns = s.median, detail = s, entries = m.size,
             full_cache_evicting_ns = se.median, full_cache_detail = se }
  print("\n5. Miss: distinct new keys, trivial loader, stored (no eviction; the cache grows")
  print(fmt("   to %d entries)", m.size))
  line("c:get(new_key, loader)", ns(s.median), "ns/op", range(s),
    fmt("target <= %d ns   %s", TARGET.miss_ns,
      verdict("miss + load + store", s.median, TARGET.miss_ns, s.median <= TARGET.miss_ns, "ns")))
  print("   context (not a target):")
  line(fmt("   miss into a full cache (%d, evicts), hot keys", HOT_KEYS), ns(se.median), "ns/op",
    range(se))
end

local function waiter_task(c, key, loader, st)
  if c:get(key, loader) ~= "loaded" then st.bad = st.bad + 1 end
  st.left = st.left - 1
  if st.left == 0 then st.done:set() end
end

local function waiters_round(c, key)
  local st = { calls = 0, bad = 0, left = WAITERS, done = runtime.event() }
  local function loader()
    st.calls = st.calls + 1
    runtime.sleep(0.001)
    return "loaded"
  end
  full_gc()
  local t0 = now()
  for _ = 1, WAITERS do spawn(waiter_task, c, key, loader, st) end
  st.done:wait()
  local dt = now() - t0
  full_gc()
  return { calls = st.calls, seconds = dt, bad = st.bad }
end

local function bench_waiters(R)
  local c = cache.AsyncCache{ maxsize = 16 }
  waiters_round(c, "warm-up")
  local rounds, totals, max_calls, bad = {}, {}, 0, 0
  for i = 1, 5 do
    local r = waiters_round(c, "k" .. i)
    rounds[i] = r
    totals[i] = r.seconds
    if r.calls > max_calls then max_calls = r.calls end
    bad = bad + r.bad
  end
  c:close()
  local st = summarize(totals)
  local total = st.median
  local per = total * 1e9 / WAITERS
  local function ms(x) return fmt("%.2f", x * 1e3) end
  local function per_waiter(x) return ns(x * 1e9 / WAITERS) end
  R.waiters = { waiters = WAITERS, loader_sleep_s = 0.001, rounds = rounds,
                loader_calls_max = max_calls, wrong_values = bad,
                total_s_median = total, total_s_min = st.min, total_s_max = st.max,
                ns_per_waiter = per,
                ns_per_waiter_min = st.min * 1e9 / WAITERS,
                ns_per_waiter_max = st.max * 1e9 / WAITERS,
                ns_per_waiter_excluding_sleep = (total - 0.001) * 1e9 / WAITERS }
  print(fmt("\n6. %d coroutines on one key, loader sleeps 1 ms (median of 5 rounds, each on a new key)",
    WAITERS))
  line("loader calls (every round)", tostring(max_calls), "", nil,
    fmt("target = 1          %s", verdict("waiters: loader calls", max_calls, 1,
      max_calls == 1 and bad == 0, "calls")))
  if bad > 0 then line("waiters that got a wrong value", tostring(bad), "") end
  line("total: spawn all, load once, wake all", ms(total), "ms", range(st, ms))
  line("per waiter (total / 10,000)", ns(per), "ns", range(st, per_waiter),
    fmt("target <= %d ns   %s", TARGET.waiter_ns,
      verdict("ns per waiter", per, TARGET.waiter_ns, per <= TARGET.waiter_ns, "ns")))
  line("   per waiter without the 1 ms sleep", ns((total - 0.001) * 1e9 / WAITERS), "ns")
end

local function bench_mixed(opts, R)
  local batches = opts.iterations // BATCH
  local warm = math.max(20, batches // 10)
  local keys = key_list("key:", MIXED_KEYS)
  local seq = random_sequence(keys, math.max(batches, warm) * BATCH, 0x2545F4914F6CDD1D)
  local check_ops = math.min(#seq, 50000)
  local loads = check_same_misses(seq, MIXED_CAPACITIES[1], check_ops)

  local rows = {}
  print(fmt("\n7. Mixed: uniform random keys over %d keys, get with a trivial loader (misses load,",
    MIXED_KEYS))
  print("   store and evict); the key sequence is precomputed.  Check: over its first")
  print(fmt("   %d ops at capacity %d, AsyncCache and lru.lua both loaded %d keys (same LRU).",
    check_ops, MIXED_CAPACITIES[1], loads))
  print(fmt("   The cache and the LRU are timed in the same %d rounds (one batch each per", batches))
  print("   round, the same keys); LRU/cache is the median of the per-round ratios.")
  print(fmt("  %-8s %-24s %8s  %-24s %-19s %s", "capacity", "AsyncCache ns (min-max)",
    "hit rate", "pure-Lua LRU ns (min-max)", "LRU/cache (p10-p90)", "target"))
  for _, cap in ipairs(MIXED_CAPACITIES) do
    local c = cache.AsyncCache{ maxsize = cap }
    local l = lru.new(cap)
    local m0
    local t = measure_rounds(warm, batches, {
      { "cache", function(b)
        local c, seq, loader, base = c, seq, trivial_loader, (b - 1) * BATCH
        for j = 1, BATCH do c:get(seq[base + j], loader) end
      end },
      { "lru", function(b)
        local l, seq, loader, base = l, seq, trivial_loader, (b - 1) * BATCH
        for j = 1, BATCH do
          local k = seq[base + j]
          local v = l:get(k)
          if v == nil then
            v = loader(k)
            l:set(k, v)
          end
        end
      end },
    }, function() m0 = c:get_metrics() end)
    local m1 = c:get_metrics()
    c:close()
    local hit_rate = (m1.hits - m0.hits) / ((m1.hits - m0.hits) + (m1.misses - m0.misses))
    local sc, sl = summarize_ns(t.cache), summarize_ns(t.lru)
    local q = ratio(t.lru, t.cache)
    local ok = sc.median <= TARGET.mixed_ns
    local row = { capacity = cap, cache_ns = sc.median, lru_ns = sl.median,
                  hit_rate = hit_rate, lru_over_cache = q.median, ratios = { lru_over_cache = q },
                  rounds = batches, cache_detail = sc, lru_detail = sl }
    rows[#rows + 1] = row
    print(fmt("  %-8d %-24s %7.1f%%  %-24s %-19s <= %d ns  %s", cap,
      fmt("%s (%s-%s)", ns(sc.median), ns(sc.min), ns(sc.max)), hit_rate * 100,
      fmt("%s (%s-%s)", ns(sl.median), ns(sl.min), ns(sl.max)),
      fmt("%.2fx (%.2f-%.2f)", q.median, q.p10, q.p90), TARGET.mixed_ns,
      verdict("mixed ns/op at capacity " .. cap, sc.median, TARGET.mixed_ns, ok, "ns")))
  end
  R.mixed = { keys = MIXED_KEYS, rows = rows }
end

local function bench_memory(R)
  local keys = key_list("key:", MEMORY_ENTRIES)
  local key_bytes = 0
  for i = 1, #keys do key_bytes = key_bytes + #keys[i] end
  local avg_key = key_bytes / #keys
  full_gc()
  local kb0 = collectgarbage("count")
  local c = cache.AsyncCache{ maxsize = MEMORY_ENTRIES }
  for i = 1, #keys do c:set(keys[i], true) end
  full_gc()
  local kb1 = collectgarbage("count")
  local m = c:get_metrics()
  assert(m.size == MEMORY_ENTRIES)
  c:close()
  local per = m.memory_bytes / m.size
  local overhead = per - avg_key
  local lua_per = (kb1 - kb0) * 1024 / m.size
  R.memory = { entries = m.size, memory_bytes = m.memory_bytes, bytes_per_entry = per,
               avg_key_len = avg_key, overhead_per_entry = overhead,
               lua_values_bytes_per_entry = lua_per, tvalue_bytes = TVALUE_BYTES }
  print(fmt("\n8. Memory: a full cache of %d keys \"key:1\" .. (average %.2f bytes), value true",
    MEMORY_ENTRIES, avg_key))
  line("C store: get_metrics().memory_bytes / size", fmt("%.1f", per), "B")
  line("C store overhead per entry (minus average key length)", fmt("%.1f", overhead), "B", nil,
    fmt("target <= %d B      %s", TARGET.bytes_per_entry,
      verdict("bytes per entry overhead", overhead, TARGET.bytes_per_entry,
        overhead <= TARGET.bytes_per_entry, "B")))
  line("   + Lua values table (measured: Lua heap growth / size)", fmt("%.1f", lua_per), "B")
  print(fmt("     note: the values table holds one %d-byte TValue per slot, its array sized",
    TVALUE_BYTES))
  print("     to a power of two, so a full cache pays 16 B x (2^k / size) more per entry.")
end

local function bench_decorated(opts, R)
  local batches = opts.iterations // BATCH
  local warm = math.max(5, batches // 10)
  local calls = 0
  local by_int = cache.AsyncLRU{ maxsize = HOT_KEYS }(function(id)
    calls = calls + 1
    return id
  end)
  local by_table = cache.AsyncLRU{ maxsize = HOT_KEYS }(function(q)
    calls = calls + 1
    return q.id
  end)
  local args = {}
  for i = 1, HOT_KEYS do
    args[i] = { id = i, kind = "user" }
    assert(by_int(i) == i and by_table(args[i]) == i)
  end
  local before = calls
  local r = {}
  r.int = measure(warm, batches, function()
    local f = by_int
    for j = 1, BATCH do f(j) end
  end)
  r.table = measure(warm, batches, function()
    local f, args = by_table, args
    for j = 1, BATCH do f(args[j]) end
  end)
  assert(calls == before, "a decorated hit called the function")
  R.decorated = r
  print(fmt("\n9. Decorated hits: cache.AsyncLRU{ maxsize = %d }(fn), %d resident argument sets",
    HOT_KEYS, HOT_KEYS))
  line("f(i), one integer argument", ns(r.int.median), "ns/op", range(r.int),
    fmt("target <= %d ns   %s", TARGET.decorated_int_ns,
      verdict("decorated hit, integer argument", r.int.median, TARGET.decorated_int_ns,
        r.int.median <= TARGET.decorated_int_ns, "ns")))
  line("f({ id = i, kind = \"user\" }), a small table", ns(r.table.median), "ns/op",
    range(r.table))
end

-- Keys through a trivial batch loader: get_many over BATCH_KEYS distinct
-- keys, BATCH_CHUNK keys per call (one batch each), into a cache that keeps
-- them all; the median of 5 rounds, each on a new cache.
local function bench_batch(R)
  local keys = {}
  for i = 1, BATCH_KEYS do keys[i] = i end
  local chunks = {}
  for b = 0, BATCH_KEYS // BATCH_CHUNK - 1 do
    chunks[#chunks + 1] = table.move(keys, b * BATCH_CHUNK + 1, (b + 1) * BATCH_CHUNK, 1, {})
  end
  local function loader(ks)
    local out = {}
    for i = 1, #ks do out[ks[i]] = ks[i] end
    return out
  end
  local rounds, rates, cold = {}, {}, nil
  for round = 1, 6 do
    local c = cache.AsyncCache{ maxsize = BATCH_KEYS, max_batch_size = BATCH_CHUNK,
                                batch_loader = loader }
    full_gc()
    local t0 = now()
    for i = 1, #chunks do c:get_many(chunks[i]) end
    local dt = now() - t0
    local m = c:get_metrics()
    assert(m.size == BATCH_KEYS and m.batched_keys == BATCH_KEYS, "batch round lost keys")
    c:close()
    if round > 1 then -- the first round warms the allocator
      rounds[#rounds + 1] = { seconds = dt, batches = m.batches }
      rates[#rates + 1] = BATCH_KEYS / dt
    else
      cold = BATCH_KEYS / dt
    end
  end
  local sr = summarize(rates)
  local rate = sr.median
  local function kps(x) return fmt("%.0f", x) end
  R.batch = { keys = BATCH_KEYS, per_call = BATCH_CHUNK, rounds = rounds,
              keys_per_second_median = rate, keys_per_second_min = sr.min,
              keys_per_second_max = sr.max, keys_per_second_first_round = cold }
  print(fmt("\n10. Batch loading: %d distinct keys through a trivial batch loader, get_many of %d keys",
    BATCH_KEYS, BATCH_CHUNK))
  print("    at a time (one batch each), into a cache that keeps them all; median of rounds 2-6")
  line("keys per second", kps(rate), "keys/s", range(sr, kps),
    fmt("target >= %d  %s", TARGET.batch_keys_per_s,
      verdict("batch keys per second", rate, TARGET.batch_keys_per_s,
        rate >= TARGET.batch_keys_per_s, "keys/s")))
  line("   per key", ns(1e9 / rate), "ns", "min-max " .. ns(1e9 / sr.max) .. "-" .. ns(1e9 / sr.min))
  line("   first round (cold allocator, page faults)", fmt("%.0f", cold), "keys/s")
end

---------------------------------------------------------------------------

local function main(argv)
  local opts = parse_args(argv)
  local runner = package.preload["cache.core"] and "acache" or "lua5.4 (stock interpreter)"
  local R = {
    lua = _VERSION, runner = runner, cpu = cpu_model(), iterations = opts.iterations,
    batch = BATCH,
    method = "median over batches of the batch mean (ns/op), with min and max; batch = " ..
      BATCH .. " ops timed with runtime.now() (CLOCK_MONOTONIC); warm-up batches discarded; " ..
      "full GC only between sections; a figure and its reference are timed in the same " ..
      "rounds (one batch each, order reversed every other round) and a ratio is the " ..
      "median of the per-round ratios, with p10 and p90 (min and max in the JSON too)",
  }
  R.loadavg_start = loadavg()
  print(fmt("async-cache benchmark (Lua API): %s under %s, cpu: %s, load average %s",
    _VERSION, runner, R.cpu, R.loadavg_start or "?"))
  print(fmt("%d operations per figure, timed in batches of %d with runtime.now(); each figure",
    opts.iterations, BATCH))
  print("is the MEDIAN of the batch means (ns/op), after warm-up, with their min-max; full GC")
  print("only between sections.  A figure and its reference run in the same rounds (one batch")
  print("each, alternating); a ratio is the MEDIAN of the per-round ratios, with their p10-p90.")

  check_lru()
  local t0 = now()
  bench_hits(opts, R)
  bench_miss(opts, R)
  bench_waiters(R)
  bench_mixed(opts, R)
  bench_memory(R)
  bench_decorated(opts, R)
  bench_batch(R)
  R.targets = targets
  R.targets_met, R.targets_total = passes, #targets
  R.seconds = now() - t0
  R.loadavg_end = loadavg()
  print(fmt("\n%d of %d targets met (%.1f s; load average at the end %s)", passes, #targets,
    R.seconds, R.loadavg_end or "?"))
  if opts.json then
    local f = assert(io.open(opts.json, "w"))
    f:write(json_encode(R), "\n")
    f:close()
    print("JSON written to " .. opts.json)
  end
end

runtime.run(main, { ... })
