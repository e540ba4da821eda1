--- AgentCacheInvalidator: a write tool that makes the cached reads of its
-- resource stale.
--
--   local add_to_cart = agent.AgentCacheInvalidator{ resource = "cart",
--     scope = "global", match = function(user_id) return user_id end,
--     name = "add_to_cart" }(fn)
--
-- A call invalidates, in its scope (the global space, or the current
-- session's), every entry tagged with the resource (with match: the
-- entries tagged resource:<what match returns>, and those tagged with the
-- resource alone), then runs fn, then invalidates again, whether fn
-- returned or raised: an entry read while the write ran cannot outlive
-- it.  It returns what fn returns and raises what fn raises.  Loop
-- detection sees it like any tool call: recorded, checked, and under
-- "short_circuit" a stopped call returns the last results this session
-- got for the same call.
local core = require "cache.core"
local util = require "cache.util"
local Index = require "agent_cache.index"
local metrics = require "agent_cache.metrics"
local options = require "agent_cache.options"
local session = require "agent_cache.session"
local tool_mod = require "agent_cache.tool"

local setmetatable, type, error, pcall = setmetatable, type, error, pcall
local pack, unpack = table.pack, table.unpack

local args_key = core.args_key
local context = core.runtime.context
local current, check, stop, warn = session.current, session.check, session.stop, session.warn
local outside = metrics.outside
local GLOBAL = Index.global

local WRITE_OPTIONS = { resource = true, scope = true, match = true, name = true }

local _M = {}

local methods = {}
--- inv:func(): the wrapped function.
function methods:func() return self._fn end

--- AgentCacheInvalidator{...}: checks the options (errors at level) and
-- returns the decorator.
function _M.decorator(opts, level)
  level = level + 1
  local who = "agent.AgentCacheInvalidator"
  opts = options.table(who, opts, WRITE_OPTIONS, level)
  local o = {
    resource = options.resource(opts, true, level),
    scope = options.scope(opts, level),
    match = options.callable(opts, "match", level),
    name = options.string(opts, "name", level),
  }
  return function(fn)
    if not util.callable(fn) then
      error(("%s: the decorated value must be a function, got %s"):format(who, type(fn)), 2)
    end
    return _M.new(fn, o)
  end
end

function _M.new(fn, o)
  local id = tool_mod.next_id()
  local resource, match = o.resource, o.match
  local per_session = o.scope == "session"
  local tool = { name = o.name or tool_mod.default_name(fn, id), resource = resource,
                 scope = o.scope, kind = "write", _fn = fn }
  local outside_msg = tool_mod.outside_message(tool.name)

  local function call(_, ...)
    local s = context()
    if s ~= nil and s.ended then s = current() end
    local space = GLOBAL
    if per_session then
      if s == nil then error(outside_msg, 2) end
      space = s.space
    end
    local m = s or outside
    m.calls = m.calls + 1
    local k
    if s ~= nil and s.loop then
      k = args_key(id, ...)
      local err = check(s, tool, k, ...)
      if err ~= nil then
        if s.on_loop ~= "warn" then return stop(s, err, k) end
        warn(s, err)
      end
    end
    local rid
    if match then rid = match(...) end
    m.invalidations = m.invalidations + 1
    space:invalidate(resource, rid)
    local r = pack(pcall(fn, ...))
    space:invalidate(resource, rid)
    if not r[1] then error(r[2], 0) end
    if s ~= nil and s.keep_results then
      s.history:remember(k, pack(unpack(r, 2, r.n)))
    end
    return unpack(r, 2, r.n)
  end

  return setmetatable(tool, { __index = methods, __call = call, __name = "AgentCacheInvalidator",
                              __tostring = function() return "agent write tool " .. tool.name end })
end

return _M
