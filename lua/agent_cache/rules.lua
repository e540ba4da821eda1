--- Loop detection rules: finding them, and making each session's.
--
-- The rule interface.  A rule module is a table
--
--   local _M = { name = "payment_budget" }         -- names its verdicts
--   function _M.new(session, opts)                 -- once per session
--     return function(call, history, ...) ... end  -- or nil: off here
--   end
--   return _M
--
-- new(session, opts) gets the session (session.session_id and its
-- options: max_tool_repeats, max_execution_depth, max_cycle_length,
-- history_size, on_loop) and the rule's own options ({} unless given as
-- rules = { name = { ... } }); what it returns is the session's check,
-- so state kept in its upvalues is per session.  check(call, history, ...)
-- runs before every call of a decorated tool in the session, the call
-- already recorded in the history:
--   call     { tool = name, key = the call's key, kind = "read" | "write",
--              resource = the tool's resource (or nil), session = the
--              session }: one table per session, refilled for each call
--              (copy what you keep);
--   history  the session's history (agent_cache/history.lua: count(),
--            size(), repeats(key), at(i), and its read-only layout);
--   ...      the tool's arguments.
-- It returns nil, or a verdict: a message, or { message = ..., kind = ... }
-- (kind defaults to the rule's name).  A check that raises is reported to
-- the runtime's error hook and counts as nil: the session goes on.
--
-- Where rules come from (the session's rules = option; the built-in ones,
-- repeats, depth and cycle, come first whenever loop_detection is on):
--   * a function (or callable table): a check used as is, for every
--     session it is given to;
--   * a rule module (a table with new);
--   * a module name, as a list entry ("payment_budget") or a key whose
--     value is the rule's options (payment_budget = { max_calls = 2 }):
--     required as agent_cache.rules.<name> if package.path has it, else as
--     <name>.  A directory of rule modules put on the path at startup,
--     with `acache --load rules/` or the module_dirs of a C host
--     (ac_runtime_options_t), is how rules are deployed.
local util = require "cache.util"

local type, pairs, ipairs, error, require = type, pairs, ipairs, error, require
local callable, describe = util.callable, util.describe
local searchpath = package.searchpath

local BUILTIN = { "repeats", "depth", "cycle" }

local _M = {}

local function findable(name)
  return package.loaded[name] ~= nil or package.preload[name] ~= nil
    or searchpath(name, package.path) ~= nil
end

--- The rule module called name (raises, naming the option `where`).
function _M.find(name, where, level)
  local full = "agent_cache.rules." .. name
  if findable(full) then return require(full) end
  if findable(name) then return require(name) end
  error(("%s: no rule module '%s' (looked for %s and %s on package.path; a directory of "
    .. "rules goes there with acache --load DIR)"):format(where, name, full, name), level + 1)
end

-- One rule of the session: { name =, check = } or nil (off).  Without a
-- session, only checks spec (new is not called).
local function make(session, spec, ropts, where, level)
  local default_name = where
  if type(spec) == "string" then
    default_name = spec
    spec = _M.find(spec, where, level + 1)
  end
  if type(spec) == "table" and spec.new ~= nil then
    local name = type(spec.name) == "string" and spec.name or default_name
    if not callable(spec.new) then
      error(("%s: the rule module's new must be a function, got %s"):format(where, type(spec.new)), level + 1)
    end
    if session == nil then return nil end
    local check = spec.new(session, ropts or {})
    if check == nil then return nil end
    if not callable(check) then
      error(("%s: rule %s: new() must return a function or nil, got %s")
        :format(where, name, type(check)), level + 1)
    end
    return { name = name, check = check }
  end
  if callable(spec) then return { name = default_name, check = spec } end
  error(("%s must be a function, a rule module (a table with new) or the name of one, got %s")
    :format(where, describe(spec)), level + 1)
end

--- The rules of a session: the built-in ones, then those of opts.rules
-- (checked here; errors name the entry and raise at level).  With session
-- nil (loop detection off), only checks opts.rules.
function _M.instantiate(session, list, level)
  level = level + 1
  local out = {}
  if session ~= nil then
    for _, name in ipairs(BUILTIN) do
      out[#out + 1] = make(session, require("agent_cache.rules." .. name), nil, name, level)
    end
  end
  if list == nil then return out end
  if type(list) ~= "table" then
    error("opts.rules must be a table (a list of rules, or rule names mapped to their options), got "
      .. describe(list), level)
  end
  local n = #list
  for i = 1, n do
    out[#out + 1] = make(session, list[i], nil, ("opts.rules[%d]"):format(i), level)
  end
  local names = {}
  for k in pairs(list) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then
      if type(k) ~= "string" then
        error(("opts.rules: a key must be a rule module's name, got %s"):format(describe(k)), level)
      end
      names[#names + 1] = k
    end
  end
  table.sort(names) -- a fixed order: the first verdict wins
  for _, k in ipairs(names) do
    local v, where = list[k], "opts.rules." .. k
    if v ~= true and type(v) ~= "table" then
      error(("%s must be the rule's options (a table) or true, got %s"):format(where, describe(v)), level)
    end
    out[#out + 1] = make(session, k, v ~= true and v or nil, where, level)
  end
  return out
end

return _M
