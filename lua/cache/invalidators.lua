--- Invalidators: tie a mutation to the cached reads it makes stale.
--
--   local update_user = cache.AsyncLRUInvalidator(get_user)(function(id, data) ... end)
--   cache.AsyncLRUInvalidator(get_user, { key_fn = function(args, n)
--     return { args[1] } end })(update_profile)
--   cache.AsyncLRUInvalidator({ get_user, get_profile }, { clear_all = true })(reset)
--
-- The default key is the mutation's arguments, cut to as many as the
-- cached function declares (debug.getinfo nparams; all of them when it is
-- a vararg function), so update_user(id, data) invalidates get_user(id).
-- key_fn(args, n) maps them otherwise: args is table.pack(...) of the
-- mutation's arguments, and it returns the cached function's arguments as
-- a table, with their count as a second result when they end in nils.
--
-- Calling the wrapped mutation invalidates the matching entry of every
-- target first, then runs the mutation and returns what it returns (or
-- raises what it raises).  The entry is invalidated again once the
-- mutation has finished, successfully or not, so a read that started
-- while the mutation ran cannot leave pre-mutation data in the cache.
local core = require "cache.core"
local util = require "cache.util"

local type, error, select, tostring, pcall = type, error, select, tostring, pcall
local pack, unpack = table.pack, table.unpack

local _M = {}

local callable = util.callable

-- How many arguments a call of the decorated function m takes, at most.
local function arity(m)
  local info = type(m:func()) == "function" and debug.getinfo(m:func(), "u")
  if not info or info.isvararg then return math.huge end
  return info.nparams
end

local function check_targets(who, targets)
  if core.is_memo(targets) then return { targets } end
  if type(targets) ~= "table" or #targets == 0 then
    error(("%s: the target must be a decorated function (cache.AsyncLRU/AsyncTTL) or a list of them, got %s")
      :format(who, type(targets)), 3)
  end
  local list = {}
  for i, t in ipairs(targets) do
    if not core.is_memo(t) then
      error(("%s: target #%d must be a decorated function (cache.AsyncLRU/AsyncTTL), got %s")
        :format(who, i, type(t)), 3)
    end
    list[i] = t
  end
  return list
end

local OPTIONS = { key_fn = true, clear_all = true }

local function make(who)
  return function(targets, opts)
    local list = check_targets(who, targets)
    if opts == nil then opts = {} end
    if type(opts) ~= "table" then
      error(("%s: opts must be a table, got %s"):format(who, type(opts)), 2)
    end
    for k in pairs(opts) do
      if not OPTIONS[k] then
        local hint = k == "skip_args" and " (invalidators take key_fn instead)" or ""
        error(("%s: unknown option '%s'%s"):format(who, tostring(k), hint), 2)
      end
    end
    local key_fn, clear_all = opts.key_fn, opts.clear_all
    local arities = {}
    for i = 1, #list do arities[i] = arity(list[i]) end
    if key_fn ~= nil and not callable(key_fn) then
      error("opts.key_fn must be a function, got " .. type(key_fn), 2)
    end
    if clear_all ~= nil and type(clear_all) ~= "boolean" then
      error("opts.clear_all must be a boolean, got " .. type(clear_all), 2)
    end

    local function invalidate(...)
      if clear_all then
        for i = 1, #list do list[i]:cache_clear() end
        return
      end
      local args, n, cut
      if key_fn then
        local m
        args, m = key_fn(pack(...), select("#", ...))
        if type(args) ~= "table" then
          error(("%s: key_fn must return a table of arguments, got %s"):format(who, type(args)), 3)
        end
        n = m or args.n or #args
      else
        args, n, cut = pack(...), select("#", ...), true
      end
      for i = 1, #list do
        local count = cut and math.min(n, arities[i]) or n
        list[i]:invalidate_cache(unpack(args, 1, count))
      end
    end

    return function(mutation)
      if not callable(mutation) then
        error(("%s: the wrapped mutation must be a function, got %s"):format(who, type(mutation)), 2)
      end
      return function(...)
        invalidate(...)
        local r = pack(pcall(mutation, ...))
        invalidate(...)
        if not r[1] then error(r[2], 0) end
        return unpack(r, 2, r.n)
      end
    end
  end
end

_M.AsyncLRUInvalidator = make("cache.AsyncLRUInvalidator")
_M.AsyncTTLInvalidator = make("cache.AsyncTTLInvalidator")

return _M
