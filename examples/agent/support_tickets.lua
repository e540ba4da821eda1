-- Use case 2, customer support agents with session-scoped caches: each
-- agent's session caches its own reads, an update invalidates that
-- session's entries, and another agent never gets them.  The two agents
-- run one after the other, then both at once in two coroutines.
-- Run with `acache examples/agent/support_tickets.lua`.
local agent = require "agent_cache"
local runtime = require "cache.runtime"

-- The support API, in process: it counts its calls.
local support_api = { gets = 0, updates = 0 }
local tickets = { ["T-100"] = { id = "T-100", status = "open" },
                  ["T-200"] = { id = "T-200", status = "open" } }
function support_api.get_ticket(id)
  support_api.gets = support_api.gets + 1
  runtime.sleep(0.001)
  return { id = id, status = tickets[id].status }
end
function support_api.update_ticket(id, status)
  support_api.updates = support_api.updates + 1
  runtime.sleep(0.001)
  tickets[id].status = status
  return true
end

local get_ticket = agent.AgentCache{ resource = "ticket", scope = "session",
                                     name = "get_ticket" }(support_api.get_ticket)
local update_ticket = agent.AgentCacheInvalidator{ resource = "ticket", scope = "session",
                                                   name = "update_ticket" }(support_api.update_ticket)

-- Agent A
agent.AgentCacheSession{ session_id = "agent-A" }:run(function(s)
  local t = get_ticket("T-100")                 -- fetched
  t = get_ticket("T-100")                       -- a hit in this session
  update_ticket("T-100", "in_progress")         -- invalidates this session's tickets
  t = get_ticket("T-100")                       -- fetched again
  local m = s:get_metrics()
  print(("agent-A sees T-100 %s (hits %d, misses %d, invalidations %d), API gets so far: %d")
    :format(t.status, m.hits, m.misses, m.invalidations, support_api.gets))
end)

-- Agent B: its own session, nothing cached from agent A's
agent.AgentCacheSession{ session_id = "agent-B" }:run(function(s)
  local t = get_ticket("T-100")                 -- fresh fetch
  print(("agent-B sees T-100 %s (misses %d), API gets so far: %d")
    :format(t.status, s:get_metrics().misses, support_api.gets))
end)

-- Both at once: each coroutine is in its own session, and the tasks each
-- one spawns stay in it.
local gets_before = support_api.gets
local results = runtime.gather(
  function()
    local s <close> = agent.AgentCacheSession{ session_id = "agent-C" }
    get_ticket("T-200")
    runtime.sleep(0.005)                        -- agent-D works meanwhile
    local done = runtime.event()
    runtime.spawn(function() get_ticket("T-200"); done:set() end) -- a hit: inherited session
    done:wait()
    return s:get_metrics()
  end,
  function()
    local s <close> = agent.AgentCacheSession{ session_id = "agent-D" }
    get_ticket("T-200")
    update_ticket("T-200", "closed")            -- invalidates agent-D's entries only
    get_ticket("T-200")
    return s:get_metrics()
  end)
local c, d = results[1][1], results[2][1]
print(("agent-C: hits %d, misses %d; agent-D: hits %d, misses %d, invalidations %d; API gets: %d")
  :format(c.hits, c.misses, d.hits, d.misses, d.invalidations, support_api.gets - gets_before))
print(("API calls: get_ticket %d, update_ticket %d"):format(support_api.gets, support_api.updates))
