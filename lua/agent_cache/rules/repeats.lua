--- Rule "repeats": the same tool with the same arguments more than
-- max_tool_repeats times among the session's recent calls (its history
-- window, history_size calls).  Off when max_tool_repeats is math.huge.
--
-- Counting in the window, not over the whole session, is what keeps a
-- session's memory bounded; it is also what tells a loop from a tool that
-- a long session legitimately calls again now and then.
local _M = { name = "repeats" }

function _M.new(session)
  local max = session.max_tool_repeats
  if max == math.huge then return nil end
  return function(call, history)
    local n = history.counts[call.key] or 0 -- history:repeats(call.key), without the call
    if n > max then
      return ("Tool %s called %d times with the same arguments (max_tool_repeats = %d)")
        :format(call.tool, n, max)
    end
  end
end

return _M
