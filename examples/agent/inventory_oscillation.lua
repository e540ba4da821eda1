-- Use case 4, an inventory agent: a buggy planning loop that oscillates
-- between checking and updating the same stock is stopped when the
-- sequence repeats (the cycle rule).
-- Run with `acache examples/agent/inventory_oscillation.lua`.
local agent = require "agent_cache"
local runtime = require "cache.runtime"

-- The inventory API, in process: it counts its calls.
local inventory_api = { gets = 0, adjusts = 0 }
local stock = { ["SKU-42"] = 10 }
function inventory_api.get_stock(item_id)
  inventory_api.gets = inventory_api.gets + 1
  runtime.sleep(0.001)
  return stock[item_id]
end
function inventory_api.adjust(item_id, delta)
  inventory_api.adjusts = inventory_api.adjusts + 1
  runtime.sleep(0.001)
  stock[item_id] = stock[item_id] + delta
  return stock[item_id]
end

local check_stock = agent.AgentCache{ resource = "stock", scope = "global",
                                      name = "check_stock" }(inventory_api.get_stock)
local update_stock = agent.AgentCacheInvalidator{ resource = "stock", scope = "global",
                                                  name = "update_stock" }(inventory_api.adjust)

local session <close> = agent.AgentCacheSession{ max_tool_repeats = 100, on_loop = "raise" }

-- The buggy plan: check, decrement, check, decrement, ... up to 10 rounds.
local ok, err = pcall(function()
  for round = 1, 10 do
    print(("round %d: SKU-42 has %d"):format(round, check_stock("SKU-42")))
    update_stock("SKU-42", -1)
  end
end)
print(ok, err.kind, err.tool)
print("AgentLoopDetectedError: " .. tostring(err))
print(("inventory API: get_stock %d, adjust %d; stock now %d")
  :format(inventory_api.gets, inventory_api.adjusts, stock["SKU-42"]))
print(("session: loop_detections %d"):format(session:get_metrics().loop_detections))
