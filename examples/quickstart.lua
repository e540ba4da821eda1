-- async-cache quickstart: run with `acache examples/quickstart.lua`
-- (or with lua5.4, given LUA_PATH/LUA_CPATH pointing at the build).
local cache = require "cache"
local runtime = require "cache.runtime"

local function section(title) print(("\n== %s =="):format(title)) end

runtime.run(function()
  -- A pretend database: every query takes 50 ms and is counted.
  local queries = 0
  local function db_query(key)
    queries = queries + 1
    runtime.sleep(0.05)
    return { key = key, loaded_at = runtime.now() }
  end

  local c = cache.AsyncCache{ maxsize = 3, default_ttl = 300 }

  section("loading")
  local user = c:get("user:1", db_query)
  print(("first get loads it: %s (queries so far: %d)"):format(user.key, queries))
  user = c:get("user:1", db_query)
  print(("second get is a hit: %s (queries so far: %d)"):format(user.key, queries))

  section("herd protection")
  local done, answers = runtime.event(), 0
  for _ = 1, 1000 do
    runtime.spawn(function()
      local v = c:get("config:global", db_query)
      answers = answers + (v and 1 or 0)
      if answers == 1000 then done:set() end
    end)
  end
  done:wait()
  print(("1000 coroutines asked for one missing key: %d answers, %d database query"):format(
    answers, queries - 1))

  section("ttl")
  c:set("session:42", "token-abc", { ttl = 0.1 })
  print("session:42 right after set ->", c:get("session:42"))
  runtime.sleep(0.15)
  print("session:42 after 150 ms     ->", c:get("session:42"))

  section("eviction (maxsize = 3)")
  c:clear()
  for _, k in ipairs{ "a", "b", "c" } do c:set(k, k:upper()) end
  c:get("a") -- "a" is now the most recently used; "b" is the least
  c:set("d", "D")
  for _, k in ipairs{ "a", "b", "c", "d" } do
    print(("  %s -> %s"):format(k, tostring(c:get(k))))
  end

  section("loader errors are returned, not cached")
  local v, err = c:get("flaky", function() return nil, "database is down" end)
  print("get(flaky) ->", v, err)

  section("metrics")
  local m = c:get_metrics()
  print(("hits=%d misses=%d loads=%d load_errors=%d evictions=%d expirations=%d size=%d hit_rate=%.2f"):format(
    m.hits, m.misses, m.loads, m.load_errors, m.evictions, m.expirations, m.size, m.hit_rate))
end)
