-- Two instances of a service sharing a Redis L2 and invalidating each
-- other's L1.  Needs a redis-server; run with
--   redis-server --port 6399 --save '' --daemonize yes
--   ./build/acache examples/redis_two_instances.lua 6399
-- (the two instances are two caches here; in production they are two
-- processes or machines: the same happens, see docs/remote.md).
local cache = require "cache"
local runtime = require "cache.runtime"

local port = tonumber(arg and arg[1]) or 6379
local redis = cache.RedisBackend{ port = port, prefix = "example:" }

local queries = 0
local function load_user(id)
  queries = queries + 1
  runtime.sleep(0.01) -- the database
  return { id = id, name = "user" .. id }
end

local a = cache.AsyncCache{ maxsize = 100, default_ttl = 60, remote_cache = redis }
local b = cache.AsyncCache{ maxsize = 100, default_ttl = 60, remote_cache = redis }
local function wait(pred)
  for _ = 1, 300 do
    if pred() then return true end
    runtime.sleep(0.01)
  end
  return false
end
if not wait(function() return a:get_metrics().remote_state == "up" and b:get_metrics().remote_state == "up" end) then
  print(("no Redis on port %d: %s"):format(port, tostring(a:get_metrics().remote_last_error)))
  os.exit(1)
end
a:clear() -- a fresh start for the example's prefix
runtime.sleep(0.02)

print("a:get(1) ->", a:get(1, load_user).name, "queries:", queries)     -- loaded, written to Redis
runtime.sleep(0.01)
print("b:get(1) ->", b:get(1, load_user).name, "queries:", queries)     -- from Redis: no query

a:set(1, { id = 1, name = "renamed by a" })                              -- publishes an invalidation
wait(function() return not b:contains(1) end)
print("b:get(1) after a:set ->", b:get(1, load_user).name, "queries:", queries)

b:delete(1)
wait(function() return not a:contains(1) end)
print("a:contains(1) after b:delete ->", a:contains(1))

local m = b:get_metrics()
print(("b: remote_hits %d, remote_misses %d, remote_invalidations %d, remote_state %s"):format(
  m.remote_hits, m.remote_misses, m.remote_invalidations, m.remote_state))
a:clear()
