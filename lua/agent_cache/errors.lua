--- AgentLoopDetectedError: what a call raises when loop detection stops it
-- (on_loop = "raise"), and the err of `nil, err` under "short_circuit".
--
--   local ok, err = pcall(search_web, "q")
--   if agent.AgentLoopDetectedError.is(err) then
--     print(err.kind, err.tool, err.message)   -- "repeats", "search_web", ...
--   end
--   tostring(err)                               -- the message
--
-- A table error, so that a caller can tell it from the tool's own errors
-- without parsing a message: fields kind (the rule that fired: "repeats",
-- "depth", "cycle" or a user rule's name), tool (the tool's name),
-- message, session_id.  The class is the instances' metatable.
local setmetatable, getmetatable, tostring = setmetatable, getmetatable, tostring

local _M = { __name = "AgentLoopDetectedError" }
_M.__index = _M

function _M.__tostring(e) return e.message end

--- AgentLoopDetectedError{ kind =, tool =, message =, session_id = }
function _M.new(fields)
  return setmetatable({
    kind = fields.kind, tool = fields.tool, message = tostring(fields.message),
    session_id = fields.session_id,
  }, _M)
end

--- Is v an AgentLoopDetectedError?
function _M.is(v)
  return getmetatable(v) == _M
end

return setmetatable(_M, { __call = function(_, fields) return _M.new(fields) end })
