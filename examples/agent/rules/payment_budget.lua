--- Rule "payment_budget": a per-session budget on payment calls, an
-- example of a loop detection rule written outside agent_cache and loaded
-- from a directory (`acache --load examples/agent/rules script.lua`, or a
-- C host's module_dirs).
--
--   agent.AgentCacheSession{ rules = {
--     payment_budget = { max_calls = 2, max_amount = 500 } } }
--
-- Options: resource (the tools it counts: those with this resource,
-- default "payment"), max_calls (payment calls a session may make, default
-- 3), max_amount (optional: what they may add up to), amount_arg (which
-- argument is the amount, default 2: charge(order_id, amount)).
-- Every call of such a tool counts, the stopped ones included: an agent
-- that is out of budget stays out.
local _M = { name = "payment_budget" }

function _M.new(session, opts)
  local resource = opts.resource or "payment"
  local max_calls = opts.max_calls or 3
  local max_amount = opts.max_amount
  local amount_arg = opts.amount_arg or 2
  local calls, spent = 0, 0 -- this session's: new() runs once per session
  return function(call, history, ...)
    if call.resource ~= resource then return nil end
    calls = calls + 1
    if calls > max_calls then
      return ("Payment budget exceeded: %d payment calls in session %s (max_calls = %d)")
        :format(calls, session.session_id, max_calls)
    end
    if max_amount then
      local amount = select(amount_arg, ...)
      spent = spent + (tonumber(amount) or 0)
      if spent > max_amount then
        return { kind = "payment_budget",
                 message = ("Payment budget exceeded: %.2f charged in session %s (max_amount = %.2f)")
                   :format(spent, session.session_id, max_amount) }
      end
    end
  end
end

return _M
