-- Use case 5, a multi-API orchestrator: a flaky payment API and an agent
-- that retries on every failure.  Loop detection stops the retry storm
-- before it exhausts rate limits or budgets: the fourth identical charge
-- (max_tool_repeats = 3) raises AgentLoopDetectedError instead of
-- calling the API.
-- Run with `acache examples/agent/payment_retry.lua`.
local agent = require "agent_cache"
local runtime = require "cache.runtime"

-- The payment API, in process: down for now, it counts its calls.
local PaymentError = { __tostring = function(e) return "PaymentError: " .. e.reason end }
local payment_api = { charges = 0 }
function payment_api.charge(order_id, amount)
  payment_api.charges = payment_api.charges + 1
  runtime.sleep(0.001)
  error(setmetatable({ reason = "gateway timeout", order = order_id }, PaymentError))
end

local charge_payment = agent.AgentCacheInvalidator{ resource = "payment", scope = "global",
                                                    name = "charge_payment" }(payment_api.charge)

local session <close> = agent.AgentCacheSession{ max_tool_repeats = 3, on_loop = "raise" }

local stopped
for attempt = 1, 10 do
  local ok, err = pcall(charge_payment, "ORD-1", 99.99)
  if ok then break end
  if getmetatable(err) == PaymentError then
    print(("attempt %d: %s, retrying"):format(attempt, tostring(err)))
  else
    stopped = err -- not a payment error: the storm was stopped
    print(("attempt %d: %s"):format(attempt, tostring(err)))
    break
  end
end
print(("stopped by %s (kind %s, tool %s); payment API calls: %d")
  :format(getmetatable(stopped).__name, stopped.kind, stopped.tool, payment_api.charges))
local m = session:get_metrics()
print(("session: calls %d, invalidations %d, loop_detections %d")
  :format(m.calls, m.invalidations, m.loop_detections))
