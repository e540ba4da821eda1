--- Small helpers shared by the cache modules.
local type, tostring, getmetatable = type, tostring, getmetatable

local _M = {}

--- Can f be called (a function, or a value whose metatable has __call)?
function _M.callable(f)
  if type(f) == "function" then return true end
  local mt = getmetatable(f)
  return type(mt) == "table" and mt.__call ~= nil
end

--- A value as error messages show it: numbers and booleans as themselves,
-- strings quoted with their type (so "3" is not mistaken for 3), other
-- values by type.
function _M.describe(v)
  local t = type(v)
  if t == "number" and v ~= v then return "nan" end -- not "-nan" (the sign bit of 0/0)
  if t == "number" or t == "boolean" then return tostring(v) end
  if t == "string" then return ("string %q"):format(v) end
  return t
end

--- Is v usable as a cache key (string, number other than NaN, boolean)?
function _M.is_key(v)
  local t = type(v)
  return t == "string" or t == "boolean" or (t == "number" and v == v)
end

return _M
