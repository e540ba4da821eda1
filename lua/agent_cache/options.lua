--- Option checks shared by the agent_cache constructors: each raises at
-- the caller's line (level) with a message naming the option, as
-- cache.AsyncCache's do.
local util = require "cache.util"

local type, pairs, error, tostring = type, pairs, error, tostring
local tointeger, huge = math.tointeger, math.huge
local callable, describe = util.callable, util.describe

local _M = {}

--- opts must be nil or a table whose keys are all in `allowed`.
function _M.table(who, opts, allowed, level)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(("%s: opts must be a table, got %s"):format(who, type(opts)), level + 1)
  end
  for k in pairs(opts) do
    if not allowed[k] then
      error(("%s: unknown option '%s'"):format(who, tostring(k)), level + 1)
    end
  end
  return opts
end

--- opts.resource: a non-empty string (nil allowed unless required).
function _M.resource(opts, required, level)
  local r = opts.resource
  if r == nil and not required then return nil end
  if type(r) ~= "string" or r == "" then
    error("opts.resource must be a non-empty string, got " .. describe(r), level + 1)
  end
  return r
end

--- opts.scope: "global" (the default) or "session".
function _M.scope(opts, level)
  local s = opts.scope
  if s == nil then return "global" end
  if s ~= "global" and s ~= "session" then
    error('opts.scope must be "global" or "session", got ' .. describe(s), level + 1)
  end
  return s
end

--- opts.<name>: nil or callable.
function _M.callable(opts, name, level)
  local f = opts[name]
  if f ~= nil and not callable(f) then
    error(("opts.%s must be a function, got %s"):format(name, type(f)), level + 1)
  end
  return f
end

--- opts.<name>: nil or a non-empty string.
function _M.string(opts, name, level)
  local v = opts[name]
  if v ~= nil and (type(v) ~= "string" or v == "") then
    error(("opts.%s must be a non-empty string, got %s"):format(name, describe(v)), level + 1)
  end
  return v
end

--- opts.<name>: nil or a boolean.
function _M.boolean(opts, name, default, level)
  local v = opts[name]
  if v == nil then return default end
  if type(v) ~= "boolean" then
    error(("opts.%s must be a boolean, got %s"):format(name, describe(v)), level + 1)
  end
  return v
end

--- opts.<name>: an integer >= min, or math.huge (no limit) when
-- allow_huge; default when nil.
function _M.limit(opts, name, default, min, allow_huge, level)
  local v = opts[name]
  if v == nil then return default end
  if allow_huge and v == huge then return v end
  if type(v) ~= "number" or not tointeger(v) or v < min then
    local what = min == 0 and "a non-negative integer" or ("an integer >= %d"):format(min)
    if allow_huge then what = what .. " (or math.huge: no limit)" end
    error(("opts.%s must be %s, got %s"):format(name, what, describe(v)), level + 1)
  end
  return tointeger(v)
end

--- opts.<name>: one of the strings of `choices` (a list), default when nil.
function _M.choice(opts, name, choices, default, level)
  local v = opts[name]
  if v == nil then return default end
  for i = 1, #choices do
    if v == choices[i] then return v end
  end
  local quoted = {}
  for i = 1, #choices do quoted[i] = ('"%s"'):format(choices[i]) end
  error(("opts.%s must be %s, got %s"):format(name, table.concat(quoted, ", "), describe(v)), level + 1)
end

return _M
