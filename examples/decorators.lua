-- Decorated functions and invalidators: the seed's get_user / update_user.
-- Run with `acache examples/decorators.lua`.
local cache = require "cache"
local runtime = require "cache.runtime"

local db = { [1] = { name = "Ada" } }
local queries = 0

local get_user = cache.AsyncLRU{ maxsize = 128 }(function(id)
  queries = queries + 1
  runtime.sleep(0.01) -- the database round trip
  return db[id]
end)

local update_user = cache.AsyncLRUInvalidator(get_user)(function(id, data)
  runtime.sleep(0.01)
  db[id] = data
end)

print("get_user(1) ->", get_user(1).name, "queries:", queries) -- miss: loads
print("get_user(1) ->", get_user(1).name, "queries:", queries) -- hit
update_user(1, { name = "Alice" })                              -- invalidates, then writes
print("get_user(1) ->", get_user(1).name, "queries:", queries) -- miss again: fresh data

-- Concurrent equal calls run the function once.
local done, left = runtime.event(), 100
for _ = 1, 100 do
  runtime.spawn(function()
    get_user(2)
    left = left - 1
    if left == 0 then done:set() end
  end)
end
done:wait()
print("100 concurrent get_user(2) calls -> queries:", queries)

local m = get_user:get_metrics()
print(("metrics: hits=%d misses=%d size=%d"):format(m.hits, m.misses, m.size))
