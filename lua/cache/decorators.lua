--- Decorators: cache a function's results by its arguments.
--
--   local get_user = cache.AsyncLRU{ maxsize = 128 }(function(id) ... end)
--   local get_sess = cache.AsyncTTL{ time_to_live = 60, skip_args = 1 }(method)
--
-- The result is a callable object that behaves like the function: same
-- arguments, all of its results, and its errors raised again.  Concurrent
-- calls with equal arguments run the function once.  Arguments are keyed by
-- value (strings, numbers with 1 == 1.0, booleans, nil, tables by contents)
-- or, for functions, userdata and threads, by identity.
--
-- Methods: f:invalidate_cache(...), f:cache_clear(), f:get_metrics(),
-- f:bypass(...) (call and refresh the entry), f:cache(), f:func().
local core = require "cache.core"
local async_cache = require "cache.async_cache"
local util = require "cache.util"

local type, pairs, error, tostring = type, pairs, error, tostring

local _M = {}

local callable, describe = util.callable, util.describe

local function check_options(who, opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(("%s: opts must be a table, got %s"):format(who, type(opts)), 3)
  end
  for k in pairs(opts) do
    if not allowed[k] then
      error(("%s: unknown option '%s'"):format(who, tostring(k)), 3)
    end
  end
  local skip = opts.skip_args
  if skip ~= nil and (type(skip) ~= "number" or not math.tointeger(skip) or skip < 0) then
    error("opts.skip_args must be a non-negative integer, got " .. describe(skip), 3)
  end
  return opts
end

-- Checks the options now (errors point at the AsyncLRU{...} call, level 3
-- from here) and returns the decorator; each function it decorates gets a
-- cache of its own.
local function decorator(who, opts, default_maxsize, ttl)
  local cache_opts = async_cache.check({
    maxsize = opts.maxsize or default_maxsize,
    default_ttl = ttl,
    load_timeout = opts.load_timeout, -- default: AsyncCache's (30 s)
    remote_cache = opts.remote_cache,
    backup = opts.backup,
    autosave_interval = opts.autosave_interval,
  }, 3)
  local skip = math.tointeger(opts.skip_args or 0)
  return function(fn)
    if not callable(fn) then
      error(("%s: the decorated value must be a function, got %s"):format(who, type(fn)), 2)
    end
    local m = core.memoize(async_cache.create(cache_opts), fn, skip)
    return m
  end
end

local LRU_OPTIONS = { maxsize = true, skip_args = true, remote_cache = true,
                      backup = true, load_timeout = true, autosave_interval = true }

--- cache.AsyncLRU{ maxsize = 128, skip_args = 0 }(fn)
function _M.AsyncLRU(opts)
  opts = check_options("cache.AsyncLRU", opts, LRU_OPTIONS)
  local d = decorator("cache.AsyncLRU", opts, 128, nil)
  return d -- not a tail call: decorator() reports errors at our caller's line
end

local TTL_OPTIONS = { time_to_live = true, maxsize = true, skip_args = true,
                      remote_cache = true, backup = true, load_timeout = true,
                      autosave_interval = true }

--- cache.AsyncTTL{ time_to_live = 60, maxsize = 1024, skip_args = 0 }(fn)
-- time_to_live = nil: entries never expire.
function _M.AsyncTTL(opts)
  opts = check_options("cache.AsyncTTL", opts, TTL_OPTIONS)
  local ttl = opts.time_to_live
  if ttl ~= nil and (type(ttl) ~= "number" or not (ttl > 0)) then
    error("opts.time_to_live must be a positive number of seconds or nil, got " .. describe(ttl), 2)
  end
  local d = decorator("cache.AsyncTTL", opts, 1024, ttl)
  return d -- not a tail call: decorator() reports errors at our caller's line
end

_M.is_decorated = core.is_memo

--- f:save_to_backup() and f:load_error(): those of the function's cache.
local memo_methods = core.memo_methods
function memo_methods.save_to_backup(m) return m:cache():save_to_backup() end
function memo_methods.load_error(m) return m:cache():load_error() end

return _M
