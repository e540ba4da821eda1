--- AgentCacheSession: one agent's run, with its own session-scoped cache
-- entries, history, loop detection and metrics.
--
--   local s <close> = agent.AgentCacheSession{ session_id = "agent-A" }
--   agent.AgentCacheSession{ max_tool_repeats = 3 }:run(function(s) ... end)
--
-- The current session.  Creating a session makes it the current one of
-- the running task (the code outside any task, outside tasks); ending it
-- gives that back to the session that was current before.  A task spawned
-- (runtime.spawn, gather, a script's tasks) starts in the session of the
-- task that spawned it, and a tool's loader runs in the session of the
-- call that started it.  This is a per-task context value in the runtime
-- (core.runtime.context / set_context, bindings/lua_runtime.c) that every
-- spawned task inherits: a task spawned in session A keeps A even when
-- its spawner later opens session B, and two sessions in two coroutines
-- never see each other's.  A task that outlives its session (it ended
-- first) is back in the session that was current when that one began.
--
-- Ending (s:close(), leaving the <close> scope, normally or by an error,
-- or :run returning or raising) drops the session's session-scoped
-- entries from every tool's cache (loads still running are not stored),
-- folds its counters into agent.get_metrics(), and makes later calls
-- that still find it go to the session before it.
local core = require "cache.core"
local util = require "cache.util"
local History = require "agent_cache.history"
local Index = require "agent_cache.index"
local Error = require "agent_cache.errors"
local metrics = require "agent_cache.metrics"
local options = require "agent_cache.options"
local rules = require "agent_cache.rules"

local setmetatable, type, tostring, error, pcall, ipairs = setmetatable, type, tostring, error, pcall, ipairs
local unpack = table.unpack
local callable = util.callable

local rt = core.runtime
local context, set_context, report = rt.context, rt.set_context, rt.report

local SESSION_OPTIONS = { session_id = true, loop_detection = true, max_tool_repeats = true,
                          max_execution_depth = true, max_cycle_length = true,
                          history_size = true, on_loop = true, rules = true }
local DEFAULT_MAX_TOOL_REPEATS = 5
local DEFAULT_MAX_EXECUTION_DEPTH = 50
local DEFAULT_MAX_CYCLE_LENGTH = 10
local DEFAULT_HISTORY_SIZE = 256
local ON_LOOP = { "raise", "warn", "short_circuit" }

local _M = {}
-- The methods of a session (s:close(), s:run(fn), s:is_closed(),
-- s:get_metrics()); the module's functions are for the tools.
local methods = {}
local mt = { __index = methods, __name = "AgentCacheSession" }

local serial = 0

--- The current session of the running code, or nil.
function _M.current()
  local s = context()
  while s ~= nil and s.ended do s = s.parent end
  return s
end

local current = _M.current

--- AgentCacheSession{...}: checks the options (errors at level), starts
-- the session and makes it current.
function _M.new(opts, level)
  level = (level or 2) + 1
  local who = "agent.AgentCacheSession"
  opts = options.table(who, opts, SESSION_OPTIONS, level)
  local id = opts.session_id
  if id ~= nil and (type(id) ~= "string" or id == "") then
    error("opts.session_id must be a non-empty string, got " .. util.describe(id), level)
  end
  local s = {
    loop = options.boolean(opts, "loop_detection", true, level),
    max_tool_repeats = options.limit(opts, "max_tool_repeats", DEFAULT_MAX_TOOL_REPEATS, 0, true, level),
    max_execution_depth = options.limit(opts, "max_execution_depth", DEFAULT_MAX_EXECUTION_DEPTH, 0, true, level),
    max_cycle_length = options.limit(opts, "max_cycle_length", DEFAULT_MAX_CYCLE_LENGTH, 2, false, level),
    history_size = options.limit(opts, "history_size", DEFAULT_HISTORY_SIZE, 1, false, level),
    on_loop = options.choice(opts, "on_loop", ON_LOOP, "raise", level),
    ended = false,
  }
  s.loop_detection = s.loop
  serial = serial + 1
  s.serial = serial -- keys of session-scoped entries: unique even when ids repeat
  s.session_id = id or ("agent-session-" .. serial)
  metrics.counters(s)
  setmetatable(s, mt)
  if s.loop then
    s.keep_results = s.on_loop == "short_circuit"
    s.history = History.new(s.history_size, s.keep_results)
    s.call = { session = s }
    s.rules = rules.instantiate(s, opts.rules, level)
    s.checks = {}
    for i, r in ipairs(s.rules) do s.checks[i] = r.check end
  elseif opts.rules ~= nil then
    rules.instantiate(nil, opts.rules, level) -- checked all the same, none made
  end
  s.space = Index.new(true)
  s.parent = current()
  metrics.track(s)
  set_context(s)
  return s
end

--- Ends the session (idempotent): see the top of this file.
function methods:close()
  if self.ended then return end
  self.ended = true
  if context() == self then set_context(self.parent) end
  self.space:clear()
  metrics.retire(self)
end

mt.__close = methods.close

-- Not ended but unreachable: its counters still count.  (Its entries are
-- unreachable too, keyed by its serial; the caches' LRU lets them go.)
mt.__gc = function(s)
  if not s.ended then metrics.retire(s) end
end

function mt.__tostring(s)
  return ("AgentCacheSession %s (%s)"):format(s.session_id, s.ended and "ended" or "open")
end

--- s:run(fn, ...): fn(s, ...) in the running task; the session ends when
-- it returns or raises; returns what fn returns (raises what it raises).
function methods:run(fn, ...)
  if not callable(fn) then
    error("session:run(fn): fn must be a function, got " .. type(fn), 2)
  end
  if self.ended then error("session:run(): the session has ended", 2) end
  local s <close> = self
  return fn(s, ...)
end

function methods:is_closed() return self.ended end

--- { hits, misses, invalidations, loop_detections, hit_rate, calls,
-- session_id }
function methods:get_metrics()
  local r = metrics.report(self)
  r.session_id = self.session_id
  return r
end

-- Runs the checks from the i-th on; the first verdict is kept in
-- s.verdict (and its rule's index in s.by), s.at is the check running:
-- when one raises, check knows which, and goes on from the next.
local function run_checks(s, i, call, h, ...)
  local checks = s.checks
  for j = i, #checks do
    s.at = j
    local v = checks[j](call, h, ...)
    if v ~= nil and s.verdict == nil then s.verdict, s.by = v, j end
  end
end

local record = History.record

--- Records a call and runs the rules (loop detection on); returns nil, or
-- the AgentLoopDetectedError of the first verdict.
function _M.check(s, tool, key, ...)
  local h = s.history
  record(h, key, tool.name)
  local call = s.call
  call.key = key
  if call.tool_object ~= tool then
    call.tool_object, call.tool, call.kind, call.resource = tool, tool.name, tool.kind, tool.resource
  end
  -- One protected call for all the checks, not one each.
  local ok, err = pcall(run_checks, s, 1, call, h, ...)
  while not ok do
    report(("agent_cache: rule %s raised in session %s (the call goes on): %s")
      :format(s.rules[s.at].name, s.session_id, tostring(err)))
    ok, err = pcall(run_checks, s, s.at + 1, call, h, ...)
  end
  local verdict = s.verdict
  if verdict == nil then return nil end
  local by = s.rules[s.by]
  s.verdict, s.by = nil, nil
  s.loop_detections = s.loop_detections + 1
  local kind, message = by.name, verdict
  if type(verdict) == "table" then
    kind = verdict.kind ~= nil and tostring(verdict.kind) or kind
    message = verdict.message ~= nil and verdict.message or (kind .. " rule fired")
  end
  return Error{ kind = kind, tool = tool.name, message = message, session_id = s.session_id }
end

--- What a call stopped by err gives (on_loop "raise": raises err;
-- "short_circuit": the session's last results for the call, else nil, err).
function _M.stop(s, err, key)
  if s.on_loop == "raise" then error(err) end
  local r = s.history:last_results(key)
  if r ~= nil then return unpack(r, 1, r.n) end
  return nil, err
end

--- on_loop "warn": the warning goes to the runtime's error hook.
function _M.warn(s, err)
  report(("agent_cache warning: %s (session %s, on_loop = \"warn\": the call goes on)")
    :format(err.message, s.session_id))
end

return _M
