-- DataLoader-style batching: concurrent gets for different keys become one
-- call of the batch loader.  Run with `acache examples/batching.lua`.
local cache = require "cache"
local runtime = require "cache.runtime"

local calls = {}
local users = cache.AsyncCache{
  maxsize = 1000,
  batch_window_ms = 5,
  max_batch_size = 50,
  batch_loader = function(ids)
    calls[#calls + 1] = #ids
    runtime.sleep(0.01) -- one query for the whole batch
    local rows, errors = {}, {}
    for _, id in ipairs(ids) do
      if id == 13 then errors[id] = "user 13 is locked" else rows[id] = "user-" .. id end
    end
    return rows, errors
  end,
}

-- 120 coroutines each ask for one user, some for the same one.
local results = runtime.gather(table.unpack((function()
  local fns = {}
  for i = 1, 120 do fns[i] = function() return users:get(i % 100 + 1) end end
  return fns
end)()))
print(("120 gets of 100 distinct keys -> %d batch loader calls of sizes %s"):format(
  #calls, table.concat(calls, ", ")))
print("users:get(14) ->", results[13][1])
print("users:get(13) ->", results[12][1], results[12][2])

local found, errors = users:get_many{ 1, 2, 3, 200, 201 }
print("get_many{1, 2, 3, 200, 201} ->", found[1], found[200], "errors:", errors)
local m = users:get_metrics()
print(("metrics: batches=%d batched_keys=%d hits=%d"):format(m.batches, m.batched_keys, m.hits))
