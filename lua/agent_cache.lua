--- agent_cache: tool-result caching, resource invalidation, sessions and
-- loop detection for AI agents whose tools are Lua functions.
--
--   local agent = require "agent_cache"
--   local get_cart = agent.AgentCache{ resource = "cart", scope = "global", ttl = 60 }(fn)
--   local add_to_cart = agent.AgentCacheInvalidator{ resource = "cart" }(fn)
--   local s <close> = agent.AgentCacheSession{ session_id = "agent-A", max_tool_repeats = 5 }
--   agent.AgentCacheSession{...}:run(function(s) ... end)
--   s:get_metrics(); agent.get_metrics()
--   agent.AgentLoopDetectedError.is(err)
--
-- Modules: agent_cache.tool (AgentCache), agent_cache.invalidator
-- (AgentCacheInvalidator), agent_cache.session (sessions, the current
-- session, loop checks), agent_cache.index (the resource index),
-- agent_cache.history (a session's bounded history), agent_cache.rules
-- (the rule interface, finding rules) and agent_cache/rules/ (repeats,
-- depth, cycle), agent_cache.metrics, agent_cache.errors.  See
-- docs/agent.md.
local tool = require "agent_cache.tool"
local invalidator = require "agent_cache.invalidator"
local session = require "agent_cache.session"
local metrics = require "agent_cache.metrics"
local errors = require "agent_cache.errors"

local _M = {}

--- agent.AgentCache{ resource =, scope = "global" | "session", ttl =,
-- maxsize = 1024, match =, name =, remote_cache =, load_timeout = }(fn)
function _M.AgentCache(opts)
  local d = tool.decorator(opts, 2) -- not a tail call: errors at our caller's line
  return d
end

--- agent.AgentCacheInvalidator{ resource =, scope =, match =, name = }(fn)
function _M.AgentCacheInvalidator(opts)
  local d = invalidator.decorator(opts, 2)
  return d
end

--- agent.AgentCacheSession{ session_id =, loop_detection = true,
-- max_tool_repeats = 5, max_execution_depth = 50, max_cycle_length = 10,
-- history_size = 256, on_loop = "raise" | "warn" | "short_circuit",
-- rules = {...} }
function _M.AgentCacheSession(opts)
  local s = session.new(opts, 2)
  return s
end

--- agent.current_session(): the session the running code is in, or nil.
_M.current_session = session.current

--- agent.get_metrics(): every session's counters summed (ended ones and
-- calls outside sessions included), with sessions and active_sessions.
_M.get_metrics = metrics.aggregate

_M.AgentLoopDetectedError = errors

return _M
