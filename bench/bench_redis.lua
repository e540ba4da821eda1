--- Redis as the L2: the cost of an L2 hit from Lua next to a raw hiredis
-- round trip in C, and of a write-behind set with Redis up and down next
-- to an L1-only set, against a redis-server this script starts on a free
-- loopback port (and redis-benchmark's GET figure in the same run, for
-- context).
--
--   ./build/acache bench/bench_redis.lua [--count N]
--
-- Targets (issue 10): an L2 hit at most 1.5x the raw round trip (median);
-- a set with Redis up, and with the circuit open, within 2x of an L1-only
-- set; get_many reading 100,000 keys from Redis (MGETs) at half of
-- redis-benchmark's pipelined GETs at least.
local DIR = debug.getinfo(1, "S").source:match("^@(.*)[/\\]") or "."
dofile(DIR .. "/setup.lua")(DIR)
local BUILD = os.getenv("ACACHE_BUILD_DIR") or (DIR .. "/../build")

local cache = require "cache"
local runtime = require "cache.runtime"
local now = require("cache.core").wall_time
local fmt = string.format

local N = 20000
if arg[1] == "--count" and math.tointeger(tonumber(arg[2] or "")) then N = math.tointeger(tonumber(arg[2])) end

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  return out
end

local port
for _ = 1, 20 do
  local p = math.random(20000, 60000)
  if sh(("redis-cli -p %d PING 2>/dev/null"):format(p)) == "" then port = p; break end
end
local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir)
os.execute(("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no --daemonize yes "
  .. "--pidfile %s/pid --dir %s >/dev/null"):format(port, dir, dir))
for _ = 1, 300 do
  if sh(("redis-cli -p %d PING 2>/dev/null"):format(port)):match("PONG") then break end
  os.execute("sleep 0.01")
end
local function stop() os.execute(("kill $(cat %s/pid) 2>/dev/null; rm -rf %s"):format(dir, dir)) end

local function pct(t, p)
  table.sort(t)
  return t[math.max(1, math.floor(#t * p + 0.5))]
end

local results = {}
local ok, err = pcall(runtime.run, function()
  local function wait_up(c)
    for _ = 1, 300 do
      if c:get_metrics().remote_state == "up" then return end
      runtime.sleep(0.01)
    end
    error("Redis never came up")
  end
  local redis = cache.RedisBackend{ port = port, prefix = "bench:" }

  -- L2 hits: maxsize 1 and two keys taken in turn, so every get misses L1
  -- (the other key took its place) and hits Redis.
  local c = cache.AsyncCache{ maxsize = 1, remote_cache = redis }
  wait_up(c)
  local value = string.rep("x", 40)
  c:set("a", value); c:set("b", value)
  runtime.sleep(0.05)
  local lat = {}
  for i = 1, N do
    local t = now()
    local v = c:get(i % 2 == 0 and "a" or "b")
    lat[i] = (now() - t) * 1e6
    assert(v == value, "not an L2 hit")
  end
  results.hit_med, results.hit_p99 = pct(lat, 0.5), pct(lat, 0.99)
  results.hit_remote = c:get_metrics().remote_hits

  -- Write-behind: sets into Redis up, into a backend whose circuit is open
  -- (nothing listens on its port), and into an L1-only cache.
  local function time_sets(cc)
    local best = math.huge
    for _ = 1, 5 do
      local t = now()
      for i = 1, N do cc:set(i, i) end
      best = math.min(best, (now() - t) / N * 1e9)
      runtime.sleep(0.3) -- let the writes (and their messages) go out
    end
    return best
  end
  local up_cache = cache.AsyncCache{ maxsize = N, remote_cache = redis }
  wait_up(up_cache)
  local down = cache.AsyncCache{ maxsize = N, remote_cache = cache.RedisBackend{ port = port + 1 } }
  runtime.sleep(0.05)
  results.down_state = down:get_metrics().remote_state
  local l1 = cache.AsyncCache{ maxsize = N }
  results.set_l1 = time_sets(l1)
  results.set_up = time_sets(up_cache)
  results.set_down = time_sets(down)
  results.set_l1b = time_sets(l1)
  results.up_errors = up_cache:get_metrics().remote_errors

  -- Bulk reads: 100,000 keys in Redis, read by a cache that has none of
  -- them through get_many, 1,000 keys a call (their GETs pipelined).
  local BULK = 100000
  local writer = cache.AsyncCache{ maxsize = BULK, remote_cache = redis }
  wait_up(writer)
  for i = 1, BULK do writer:set("bulk" .. i, i) end
  runtime.sleep(0.5)
  local keys = {}
  for i = 1, BULK do keys[i] = "bulk" .. i end
  local best = 0
  for _ = 1, 3 do
    local reader = cache.AsyncCache{ maxsize = BULK, remote_cache = redis }
    wait_up(reader)
    local t, got = now(), 0
    for s = 1, BULK, 1000 do
      local v = reader:get_many(table.move(keys, s, s + 999, 1, {}))
      for _ in pairs(v) do got = got + 1 end
    end
    local rate = got / (now() - t)
    assert(got == BULK, "get_many missed keys: " .. got)
    best = math.max(best, rate)
    reader:close()
  end
  results.bulk = best
end)
local rtt = sh(("%s/redis_rtt %d %d"):format(BUILD, port, N))
local bench = sh(("redis-benchmark -p %d -t get -n 100000 -P 100 -q 2>/dev/null"):format(port))
stop()
if not ok then error(err, 0) end

local rtt_med, rtt_p99 = rtt:match("^(%S+) (%S+)")
rtt_med, rtt_p99 = tonumber(rtt_med), tonumber(rtt_p99)
local l1 = math.min(results.set_l1, results.set_l1b)
print(fmt("Redis as the L2 (redis-server on 127.0.0.1:%d, %d operations per figure)", port, N))
print(fmt("  L2 hit from Lua, c:get (L1 miss, GET, decode, fill L1)  median %6.1f us  p99 %6.1f us",
  results.hit_med, results.hit_p99))
if rtt_med then
  print(fmt("  raw hiredis async GET round trip in C on libuv          median %6.1f us  p99 %6.1f us",
    rtt_med, rtt_p99))
  print(fmt("  L2 hit / raw round trip (median)                        %6.2f x   target <= 1.5 x   %s",
    results.hit_med / rtt_med, results.hit_med / rtt_med <= 1.5 and "PASS" or "MISS"))
end
print(fmt("  set, L1 only                                            %7.0f ns", l1))
print(fmt("  set, Redis up (write-behind)                            %7.0f ns  %5.2f x  target <= 2 x  %s",
  results.set_up, results.set_up / l1, results.set_up / l1 <= 2 and "PASS" or "MISS"))
print(fmt("  set, Redis down (circuit open: %s)                    %7.0f ns  %5.2f x  target <= 2 x  %s",
  results.down_state, results.set_down, results.set_down / l1, results.set_down / l1 <= 2 and "PASS" or "MISS"))
local rb = tonumber(bench:match("GET: ([%d%.]+) requests per second") or "")
print(fmt("  get_many, 1,000 keys a call, all from Redis              %9.0f keys/s", results.bulk))
if rb then
  print(fmt("  redis-benchmark -t get -P 100                            %9.0f requests/s", rb))
  print(fmt("  get_many / redis-benchmark                               %6.2f x   target >= 0.5 x  %s",
    results.bulk / rb, results.bulk / rb >= 0.5 and "PASS" or "MISS"))
end
