--- Agent metrics: the counters of a session, and their sum over every
-- session (ended ones included) plus the calls made outside any session.
--
-- Counters live on their owner (a session's fields, or `outside`), where
-- the tools increment them: no second write per call for the aggregate.
-- get_metrics() sums on demand: the sessions still open (a weak set, so
-- a session dropped without being ended does not stay here) and the
-- totals of ended ones, folded in once when each ends (or is collected).
local setmetatable, next = setmetatable, next

local COUNTERS = { "calls", "hits", "misses", "invalidations", "loop_detections" }

local _M = {}

--- Fresh counters, all zero, set on t (or a new table).
function _M.counters(t)
  t = t or {}
  for i = 1, #COUNTERS do t[COUNTERS[i]] = 0 end
  return t
end

--- The counters of calls made outside any session.
_M.outside = _M.counters()

local ended = _M.counters()
local live = setmetatable({}, { __mode = "k" })
local started = 0

local function add(into, from)
  for i = 1, #COUNTERS do
    local k = COUNTERS[i]
    into[k] = into[k] + from[k]
  end
end

--- A session starts: counted, and summed while it lives.
function _M.track(session)
  started = started + 1
  live[session] = true
end

--- A session ends (or is collected before it ended): its counters are
-- folded into the totals.
function _M.retire(session)
  if not live[session] then return end
  live[session] = nil
  add(ended, session)
end

--- The public form of counters c: hits, misses, invalidations,
-- loop_detections, hit_rate (hits / (hits + misses), 0 before any), calls.
function _M.report(c)
  local lookups = c.hits + c.misses
  return {
    calls = c.calls, hits = c.hits, misses = c.misses, invalidations = c.invalidations,
    loop_detections = c.loop_detections,
    hit_rate = lookups > 0 and c.hits / lookups or 0.0,
  }
end

--- Every session's counters summed, ended sessions and calls outside
-- sessions included; with sessions (started) and active_sessions.
function _M.aggregate()
  local sum = _M.counters()
  add(sum, ended)
  add(sum, _M.outside)
  local active = 0
  for s in next, live do
    add(sum, s)
    active = active + 1
  end
  local r = _M.report(sum)
  r.sessions, r.active_sessions = started, active
  return r
end

return _M
