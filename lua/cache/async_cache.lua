--- AsyncCache: the cache object and its options.
--
--   local c = require("cache").AsyncCache{ maxsize = 1000, default_ttl = 300 }
--   local v, err = c:get(key, loader)      -- or c:get(key, { loader = f, ttl = 60 })
--   c:set(key, value, { ttl = 60 }); c:delete(key); c:clear()
--   c:warmup{ ["hot:key"] = function() return preload() end }
--   c:get_metrics()   --> { hits =, misses =, size =, hit_rate =, ... }
--
-- The cache object and every method (get, get_many, set, delete, clear,
-- contains, warmup, get_metrics, close) are C (cache.core, over the core's
-- ac_cache_t); the options are checked here, in one place.
local core = require "cache.core"
local util = require "cache.util"
local backup = require "cache.backup"
local remote = require "cache.remote"
local redis = require "cache.redis"

local callable, describe = util.callable, util.describe

local type, pairs, error, tostring = type, pairs, error, tostring
local huge = math.huge

local DEFAULT_MAXSIZE = 128
local DEFAULT_LOAD_TIMEOUT = 30 -- seconds; no caller waits forever by default

local _M = {}


local function check_positive(opts, name, level)
  local v = opts[name]
  if v ~= nil and (type(v) ~= "number" or not (v > 0)) then
    error(("opts.%s must be a positive number, got %s"):format(name, describe(v)), level + 1)
  end
  return v
end

local ASYNC_CACHE_OPTIONS = { maxsize = true, default_ttl = true, load_timeout = true,
                              remote_cache = true, backup = true, batch_loader = true,
                              batch_window_ms = true, max_batch_size = true,
                              batch_result = true, sweep_interval = true,
                              autosave_interval = true }
local DEFAULT_BATCH_WINDOW_MS = 5
local DEFAULT_MAX_BATCH_SIZE = 100



--- Checks the options of a cache; errors are raised at the given stack
-- level (2: the caller of check).  Returns the options of core.new_cache
-- (the one place they are checked: the C side takes them as they are).
-- opts.maxsize       entries kept before the least recently used is evicted (128)
-- opts.default_ttl   seconds an entry lives unless set/get says otherwise (nil: forever)
-- opts.load_timeout  seconds callers wait for a loader before getting
--                    nil, "load timed out ..." (30; math.huge: no limit)
-- opts.batch_loader  f(keys) -> { [key] = value } or { values in key order }
--                    [, { [key] = err }]: used by get(key) without a loader
-- opts.batch_window_ms  how long a batch collects keys (5; 0: until the end
--                    of the current pass of the scheduler)
-- opts.max_batch_size   a batch is dispatched when it holds this many keys (100)
-- opts.sweep_interval  seconds between slices of active expiry (0.1); a
--                    slice runs at most 1 ms, and again at once while it
--                    finds mostly expired entries
-- opts.backup        a snapshot backend (cache.DiskBackend(path), or one
--                    written in Lua on cache.CacheBackend): restored now,
--                    written by cache:save_to_backup()
-- opts.remote_cache  a second level shared with other caches (a
--                    cache.RemoteCacheBackend): L1, then it, then the loader
-- opts.autosave_interval  seconds between saves in the background (needs backup)
-- opts.batch_result  how to read the loader's result: "map" ({ [key] = v }),
--                    "array" (values in key order) or "auto" (the default:
--                    told from its shape; with integer keys, when the shape
--                    cannot tell, every key gets an error asking to choose)
function _M.check(opts, level)
  level = (level or 2) + 1
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    error("cache.AsyncCache: opts must be a table, got " .. type(opts), level)
  end
  for k in pairs(opts) do
    if not ASYNC_CACHE_OPTIONS[k] then
      error(("cache.AsyncCache: unknown option '%s'"):format(tostring(k)), level)
    end
  end
  local rc = remote.check(opts.remote_cache, level)
  local bk = backup.check(opts.backup, level)
  local autosave = check_positive(opts, "autosave_interval", level)
  if autosave ~= nil and bk == nil then
    error("opts.autosave_interval needs opts.backup (where to save)", level)
  end
  local maxsize = opts.maxsize
  if maxsize == nil then
    maxsize = DEFAULT_MAXSIZE
  elseif type(maxsize) ~= "number" or maxsize ~= math.floor(maxsize) then
    error("opts.maxsize must be a positive integer, got " .. describe(maxsize), level)
  elseif maxsize < 1 or maxsize > 0x7fffffff then
    error("opts.maxsize must be between 1 and 2147483647, got " .. describe(maxsize), level)
  end
  local default_ttl = check_positive(opts, "default_ttl", level)
  local load_timeout = check_positive(opts, "load_timeout", level) or DEFAULT_LOAD_TIMEOUT
  local batch_loader = opts.batch_loader
  if batch_loader ~= nil and not callable(batch_loader) then
    error("opts.batch_loader must be a function, got " .. type(batch_loader), level)
  end
  local window = opts.batch_window_ms
  if window == nil then
    window = DEFAULT_BATCH_WINDOW_MS
  elseif type(window) ~= "number" or not (window >= 0) or window == huge then
    error("opts.batch_window_ms must be a non-negative number of milliseconds, got " .. describe(window), level)
  end
  local max_batch = opts.max_batch_size
  if max_batch == nil then
    max_batch = DEFAULT_MAX_BATCH_SIZE
  elseif type(max_batch) ~= "number" or not math.tointeger(max_batch) or max_batch < 1 then
    error("opts.max_batch_size must be a positive integer, got " .. describe(max_batch), level)
  elseif max_batch > 0x7fffffff then
    error("opts.max_batch_size must be at most 2147483647, got " .. describe(max_batch), level)
  end
  local sweep = check_positive(opts, "sweep_interval", level)
  local form = opts.batch_result
  if form ~= nil and form ~= "auto" and form ~= "map" and form ~= "array" then
    error('opts.batch_result must be "auto", "map" or "array", got ' .. describe(form), level)
  end
  return {
    maxsize = math.tointeger(maxsize), default_ttl = default_ttl or huge,
    load_timeout = load_timeout, batch_loader = batch_loader, batch_window_ms = window,
    max_batch_size = math.tointeger(max_batch), batch_result = form,
    sweep_interval = sweep, backup = bk, autosave_interval = autosave,
    -- the C side tells a Redis backend (options it connects with) from a
    -- Lua one (an object whose methods it calls)
    remote_cache = not redis.is_redis(rc) and rc or nil,
    redis = redis.is_redis(rc) and rc or nil,
  }
end

--- Creates a cache from options that check made: restores its backup.
function _M.create(checked)
  local c = core.new_cache(checked)
  backup.attach(c, checked.backup, checked.autosave_interval)
  return c
end

--- Creates a cache (errors in opts raised at level, as check does).
function _M.new(opts, level)
  return _M.create(_M.check(opts, (level or 2) + 1))
end

local methods = core.cache_methods
methods.save_to_backup = backup.save_to_backup
methods.load_error = backup.load_error

return _M
