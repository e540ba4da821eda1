--- Rule "depth": more than max_execution_depth tool calls in the session
-- (every call counts: reads and writes, hits and misses, nested calls made
-- by a tool).  Off when max_execution_depth is math.huge.
local _M = { name = "depth" }

function _M.new(session)
  local max = session.max_execution_depth
  if max == math.huge then return nil end
  return function(call, history)
    local n = history.n -- history:count(), without the call
    if n > max then
      return ("Execution depth %d exceeds max_execution_depth = %d (last call: %s)")
        :format(n, max, call.tool)
    end
  end
end

return _M
