--- Small helpers shared by the cache modules.
local type, tostring, getmetatable, setmetatable = type, tostring, getmetatable, setmetatable

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

--- A base class for backends written in Lua: name is what error messages
-- call it, methods its default methods.  Base:extend() makes a subclass;
-- Class(fields) (or Class()) an instance: the fields table itself, after
-- Class.init(self) when the class has one.
function _M.class(name, methods)
  local function new(cls, fields)
    local self = setmetatable(fields or {}, cls)
    if self.init then self:init() end
    return self
  end
  local base = methods
  base.__index = base
  base.__name = name
  function base.extend(parent)
    local sub = setmetatable({}, { __index = parent, __call = new })
    sub.__index = sub
    sub.__name = parent.__name
    return sub
  end
  return setmetatable(base, { __call = new })
end

return _M
