--- Remote backends (remote_cache =): the cache.RemoteCacheBackend base
-- class for second levels written in Lua.
--
--   local Shared = cache.RemoteCacheBackend:extend()
--   function Shared:get(key) return self.data[key] end           -- bytes | nil | nil, err
--   function Shared:set(key, bytes, ttl) self.data[key] = bytes end
--   function Shared:delete(key) self.data[key] = nil end
--   cache.AsyncCache{ remote_cache = Shared{ data = {} } }
--
-- Methods may yield (sockets, sleeps): each call runs in a task of its
-- own.  Reads go L1, then the remote, then the loader; writes go to L1 at
-- once and to the remote in the background (see bindings/lremote.h).
local util = require "cache.util"
local redis = require "cache.redis"

local _M = {}

local function not_implemented(name)
  return function(self)
    error(("%s:%s() is not implemented"):format(tostring(getmetatable(self).__name), name), 2)
  end
end

_M.RemoteCacheBackend = util.class("cache.RemoteCacheBackend", {
  get = not_implemented("get"),
  set = not_implemented("set"),
  delete = not_implemented("delete"),
})

--- Checks opts.remote_cache (raising at level); returns it.
function _M.check(b, level)
  if b == nil or redis.is_redis(b) then return b end
  if type(b) ~= "table" or not util.callable(b.get) or not util.callable(b.set)
      or not util.callable(b.delete) then
    error("opts.remote_cache must be a cache.RedisBackend or a backend with get, set and "
      .. "delete methods (see cache.RemoteCacheBackend), got " .. util.describe(b), level + 1)
  end
  return b
end

return _M
