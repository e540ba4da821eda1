--- async-cache for Lua: the public API.
--
--   local cache = require "cache"
--   local c = cache.AsyncCache{ maxsize = 1000, default_ttl = 300 }
--   local v, err = c:get(key, loader)      -- or c:get(key, { loader = f, ttl = 60 })
--   c:set(key, value, { ttl = 60 }); c:delete(key); c:clear()
--   c:warmup{ ["hot:key"] = function() return preload() end }
--   c:get_metrics()   --> { hits =, misses =, size =, hit_rate =, ... }
--
--   local get_user = cache.AsyncLRU{ maxsize = 128 }(function(id) ... end)
--   local get_sess = cache.AsyncTTL{ time_to_live = 60, skip_args = 1 }(method)
--   local update_user = cache.AsyncLRUInvalidator(get_user)(function(id, data) ... end)
--
-- Modules: cache.async_cache (AsyncCache), cache.decorators (AsyncLRU,
-- AsyncTTL), cache.invalidators, cache.runtime (coroutines on the loop).
local core = require "cache.core"
local async_cache = require "cache.async_cache"
local decorators = require "cache.decorators"
local invalidators = require "cache.invalidators"
local backup = require "cache.backup"
local remote = require "cache.remote"
local redis = require "cache.redis"

return {
  _VERSION = core.version,
  runtime = require "cache.runtime",
  --- cache.codec.encode(v) -> bytes | nil, err; cache.codec.decode(bytes) -> v | nil, err
  codec = core.codec,

  --- cache.AsyncCache{ maxsize = 128, default_ttl = nil, load_timeout = 30 }
  AsyncCache = function(opts)
    local c = async_cache.new(opts, 2) -- not a tail call: level 2 is the caller
    return c
  end,

  --- cache.DiskBackend(path), for backup =; cache.CacheBackend: the base
  -- of snapshot backends written in Lua (load() -> entries, save(entries))
  DiskBackend = backup.DiskBackend,
  CacheBackend = backup.CacheBackend,
  --- cache.RemoteCacheBackend: the base of remote backends written in Lua
  -- (get(key), set(key, bytes, ttl), delete(key), each of which may yield)
  RemoteCacheBackend = remote.RemoteCacheBackend,
  --- cache.RedisBackend{ host =, port =, prefix =, ... }: Redis as the
  -- shared L2, with invalidations pushed between instances
  RedisBackend = redis.RedisBackend,

  AsyncLRU = decorators.AsyncLRU,
  AsyncTTL = decorators.AsyncTTL,
  AsyncLRUInvalidator = invalidators.AsyncLRUInvalidator,
  AsyncTTLInvalidator = invalidators.AsyncTTLInvalidator,
}
