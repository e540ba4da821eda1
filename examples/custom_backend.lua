-- Backends written in Lua: an in-process table as a shared second level
-- (L2) for two caches, then one that fails.  Run with
-- `acache examples/custom_backend.lua`.
local cache = require "cache"
local runtime = require "cache.runtime"

-- The L2: get/set/delete on a table.  Its get waits 1 ms, as a network
-- round trip would (methods may yield: each call runs in a task).
local TableL2 = cache.RemoteCacheBackend:extend()
function TableL2:init() self.data, self.gets = {}, 0 end
function TableL2:get(key)
  self.gets = self.gets + 1
  runtime.sleep(0.001)
  local e = self.data[key]
  if e then return e.bytes, e.ttl end -- nil: a miss
end
function TableL2:set(key, bytes, ttl) self.data[key] = { bytes = bytes, ttl = ttl } end
function TableL2:delete(key) self.data[key] = nil end

local l2 = TableL2()
local db_queries = 0
local function load_user(id)
  db_queries = db_queries + 1
  runtime.sleep(0.01) -- the database
  return { id = id, name = "user" .. id }
end

-- Two instances of a service, each with its own L1, sharing the L2.
local a = cache.AsyncCache{ maxsize = 100, default_ttl = 60, remote_cache = l2 }
local b = cache.AsyncCache{ maxsize = 100, default_ttl = 60, remote_cache = l2 }

-- Read path: a misses L1 and L2, loads from the database, writes L2 in the
-- background; b then finds it in L2 (no query); 20 concurrent readers of a
-- key nobody has cause one L2 lookup and one query.
print("a:get(1) ->", a:get(1, load_user).name, "queries:", db_queries)
runtime.sleep(0.01)
print("b:get(1) ->", b:get(1, load_user).name, "queries:", db_queries)
local gets_before = l2.gets
runtime.gather(table.unpack((function()
  local fns = {}
  for i = 1, 20 do fns[i] = function() return b:get(2, load_user) end end
  return fns
end)()))
print(("20 concurrent b:get(2) -> L2 lookups: %d, queries: %d"):format(l2.gets - gets_before, db_queries))
local m = b:get_metrics()
print(("b: remote_hits %d, remote_misses %d, remote_errors %d"):format(
  m.remote_hits, m.remote_misses, m.remote_errors))

-- Write path: set goes to L1 at once and to L2 in the background.
a:set(3, { id = 3, name = "written by a" })
runtime.sleep(0.01)
print("b:get(3) ->", b:get(3, load_user).name)

-- A backend that is down: gets and sets keep working from L1 and the
-- loader; the failures are counted and go to the error hook.
local Down = cache.RemoteCacheBackend:extend()
function Down:get() return nil, "connection refused" end
function Down:set() error("connection refused") end
function Down:delete() return nil, "connection refused" end
local failures = 0
runtime.set_error_hook(function() failures = failures + 1 end)
local c = cache.AsyncCache{ remote_cache = Down() }
print("with the L2 down, c:get(4) ->", c:get(4, load_user).name)
c:set(5, "five")
runtime.sleep(0.01)
print(("c:get(5) -> %s; remote_errors %d, reported %d"):format(
  c:get(5), c:get_metrics().remote_errors, failures))
