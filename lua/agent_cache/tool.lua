--- AgentCache: a cached read tool.
--
--   local get_cart = agent.AgentCache{ resource = "cart", scope = "global",
--                                      ttl = 120, name = "get_cart" }(fn)
--   get_cart("user_1")           -- fn runs; get_cart("user_1") again: a hit
--
-- Each tool has an AsyncCache of its own (maxsize entries, ttl) and the
-- cache's machinery: one load for concurrent equal calls, load_timeout,
-- remote_cache.  A call's key is core.args_key(tool id[, session serial],
-- ...): the decorators' canonical encoding of the arguments (tables by
-- contents, 1 == 1.0), so equal JSON-like argument tables are one entry,
-- and the same string is the call's key in the session's history.  The
-- cached value is the record of the call: its results packed
-- ({ n =, ... }), the table the resource index tags (index.lua).
--
-- A hit is c:get(key) (no loader: nothing allocated); only a miss packs
-- the arguments and makes the loader, which runs the tool in the
-- session of the call (its nested tool calls belong to it too).  A tool
-- that returns nil first gives its results but caches nothing, as a
-- decorated function does; a tool that raises raises in every caller of
-- that call.
local core = require "cache.core"
local async_cache = require "cache.async_cache"
local util = require "cache.util"
local Index = require "agent_cache.index"
local metrics = require "agent_cache.metrics"
local options = require "agent_cache.options"
local session = require "agent_cache.session"

local setmetatable, getmetatable, type, error, pcall = setmetatable, getmetatable, type, error, pcall
local pack, unpack, move = table.pack, table.unpack, table.move

local args_key = core.args_key
local context, set_context = core.runtime.context, core.runtime.set_context
local current, check, stop, warn = session.current, session.check, session.stop, session.warn
local outside = metrics.outside
local GLOBAL = Index.global

local DEFAULT_MAXSIZE = 1024
local READ_OPTIONS = { resource = true, scope = true, ttl = true, maxsize = true, match = true,
                       name = true, remote_cache = true, load_timeout = true }

local _M = {}

-- The metatable of a record whose first result is nil: handed to the
-- callers as the error of the load (so that the cache stores nothing),
-- and recognized as results, not an error.
local NIL_RESULT = {}

local ids = 0

--- A new tool id (tools and invalidators: the first part of their keys).
function _M.next_id()
  ids = ids + 1
  return ids
end

--- A name for a tool that was given none: where its function is defined.
function _M.default_name(fn, id)
  local info = type(fn) == "function" and debug.getinfo(fn, "S")
  if info and info.what == "Lua" then
    return ("tool@%s:%d"):format(info.short_src, info.linedefined)
  end
  return "tool#" .. id
end

--- The message of a scope = "session" tool called outside any session.
function _M.outside_message(name)
  return ("%s has scope = \"session\" and was called outside any agent session: call it "
    .. "while a session is open (local s <close> = agent.AgentCacheSession{...}, or "
    .. "agent.AgentCacheSession{...}:run(fn)), or give the tool scope = \"global\""):format(name)
end

local methods = {}

--- tool:cache(): the AsyncCache behind the tool.
function methods:cache() return self._cache end
--- tool:func(): the wrapped function.
function methods:func() return self._fn end
--- tool:get_metrics(): the metrics of its cache (every session's
-- calls), with one lookup per call: a miss looks the key up twice (first
-- without a loader, so that a hit allocates nothing), and the first of
-- the two is not counted here.
function methods:get_metrics()
  local m = self._cache:get_metrics()
  m.misses = m.misses - self._probes
  local lookups = m.hits + m.misses
  m.hit_rate = lookups > 0 and m.hits / lookups or 0.0
  return m
end
--- tool:cache_clear(): drops every entry (every session's).
function methods:cache_clear() self._cache:clear() end

--- AgentCache{...}: checks the options (errors at the caller's line,
-- level) and returns the decorator.
function _M.decorator(opts, level)
  level = level + 1
  local who = "agent.AgentCache"
  opts = options.table(who, opts, READ_OPTIONS, level)
  local resource = options.resource(opts, false, level)
  local scope = options.scope(opts, level)
  local match = options.callable(opts, "match", level)
  local name = options.string(opts, "name", level)
  local ttl = opts.ttl
  if ttl ~= nil and (type(ttl) ~= "number" or not (ttl > 0)) then
    error("opts.ttl must be a positive number of seconds or nil, got " .. util.describe(ttl), level)
  end
  if opts.remote_cache ~= nil and scope ~= "global" then
    error('opts.remote_cache needs scope = "global" (session entries stay in memory)', level)
  end
  local checked = async_cache.check({
    maxsize = opts.maxsize or DEFAULT_MAXSIZE, default_ttl = ttl,
    load_timeout = opts.load_timeout, remote_cache = opts.remote_cache,
  }, level)
  return function(fn)
    if not util.callable(fn) then
      error(("%s: the decorated value must be a function, got %s"):format(who, type(fn)), 2)
    end
    return _M.new(fn, async_cache.create(checked), {
      resource = resource, scope = scope, match = match, name = name,
      remote = checked.remote_cache ~= nil,
    })
  end
end

--- The tool for fn over cache c.
function _M.new(fn, c, o)
  local id = _M.next_id()
  local resource, match = o.resource, o.match
  local per_session = o.scope == "session"
  local tool = { name = o.name or _M.default_name(fn, id), resource = resource, scope = o.scope,
                 kind = "read", _cache = c, _fn = fn, _probes = 0 }
  local outside_msg = _M.outside_message(tool.name)
  -- Records this process has indexed: with a remote, a hit may bring a
  -- record decoded from the second level, which must be indexed then.
  local indexed = o.remote and setmetatable({}, { __mode = "k" }) or nil

  -- Registers rec (the record of the call with these arguments) in space.
  local function index(space, rec, k, args, ident)
    local rid = match and match(unpack(args, 1, args.n))
    local h = space:add(resource, rid, rec, c, k)
    if ident then h.args = args end -- identity keys: their objects stay alive with the entry
    if indexed then indexed[rec] = true end
  end

  -- The loader of a miss, in its own thread: the caller's session is
  -- made its context for the time the tool runs.
  local function load(s, space, k, args, ident)
    local rec = {}
    index(space, rec, k, args, ident) -- before fn runs: an invalidation now reaches the load
    local m = s or outside
    m.misses = m.misses + 1
    local prev = context()
    set_context(s)
    local r = pack(pcall(fn, unpack(args, 1, args.n)))
    set_context(prev)
    if not r[1] then error(r[2], 0) end
    local n = r.n - 1
    move(r, 2, r.n, 1, rec)
    rec.n = n
    if n == 0 or rec[1] == nil then return nil, setmetatable(rec, NIL_RESULT) end
    return rec
  end

  -- Keys start with the tool's id; with a remote, with its name, which
  -- is the same in every process running the same code.
  local prefix = indexed and tool.name or id

  local function call(_, ...)
    local s = context()
    if s ~= nil and s.ended then s = current() end
    local k, ident, space
    if per_session then
      if s == nil then error(outside_msg, 2) end
      k, ident = args_key(prefix, s.serial, ...)
      space = s.space
    else
      k, ident = args_key(prefix, ...)
      space = GLOBAL
    end
    local m = s or outside
    m.calls = m.calls + 1
    if s ~= nil and s.loop then
      local err = check(s, tool, k, ...)
      if err ~= nil then
        if s.on_loop ~= "warn" then return stop(s, err, k) end
        warn(s, err)
      end
    end
    local rec, e
    if indexed == nil then
      rec, e = c:get(k)
      if rec ~= nil then
        m.hits = m.hits + 1
      elseif e == nil then -- not cached, not loading: load it
        tool._probes = tool._probes + 1
        local args = pack(...)
        rec, e = c:get(k, function() return load(s, space, k, args, ident) end)
      end
    else -- with a remote: one lookup goes L1, remote, loader
      local ran, args = false, pack(...)
      rec, e = c:get(k, function()
        ran = true
        return load(s, space, k, args, ident)
      end)
      if rec ~= nil and not ran then
        m.hits = m.hits + 1
        if not indexed[rec] then index(space, rec, k, args, ident) end
      end
    end
    if rec == nil then
      if getmetatable(e) ~= NIL_RESULT then error(e, 0) end
      rec = e
    end
    if s ~= nil and s.keep_results then s.history:remember(k, rec) end
    local n = rec.n
    if n == 1 then return rec[1] end
    return unpack(rec, 1, n)
  end

  return setmetatable(tool, { __index = methods, __call = call, __name = "AgentCache",
                              __tostring = function() return "agent tool " .. tool.name end })
end

return _M
