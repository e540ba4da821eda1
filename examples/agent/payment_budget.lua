-- A rule of your own, loaded from a directory: examples/agent/rules/
-- holds payment_budget.lua, a per-session budget on payment calls.  Run
-- with `acache --load examples/agent/rules examples/agent/payment_budget.lua`
-- (or put the directory in a C host's module_dirs): the session names the
-- rule, and agent_cache finds the module on the path.
local agent = require "agent_cache"
local runtime = require "cache.runtime"

local payment_api = { charges = 0 }
function payment_api.charge(order_id, amount)
  payment_api.charges = payment_api.charges + 1
  runtime.sleep(0.001)
  return { order = order_id, amount = amount, status = "paid" }
end

local charge_payment = agent.AgentCacheInvalidator{ resource = "payment", scope = "global",
                                                    name = "charge_payment" }(payment_api.charge)

-- Every order is different, so the repeats rule never fires; the budget does.
agent.AgentCacheSession{ session_id = "shopper-1",
                         rules = { payment_budget = { max_calls = 5, max_amount = 250 } } }
  :run(function(s)
    for i = 1, 10 do
      local ok, r = pcall(charge_payment, "ORD-" .. i, 99.99)
      if not ok then
        print(("order %d: stopped: %s (kind %s)"):format(i, tostring(r), r.kind))
        break
      end
      print(("order %d: %s %.2f"):format(i, r.status, r.amount))
    end
    print(("payment API calls: %d, loop_detections: %d")
      :format(payment_api.charges, s:get_metrics().loop_detections))
  end)

-- A new session has a budget of its own.
agent.AgentCacheSession{ session_id = "shopper-2", rules = { payment_budget = { max_calls = 1 } } }
  :run(function()
    charge_payment("ORD-100", 10)
    local ok, err = pcall(charge_payment, "ORD-101", 10)
    print(("shopper-2: second charge %s: %s"):format(ok and "went through" or "stopped", tostring(err)))
  end)
print(("payment API calls in all: %d"):format(payment_api.charges))
