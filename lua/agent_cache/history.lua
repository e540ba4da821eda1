--- The call history of a session: a fixed window of recent calls plus
-- counters, what loop detection rules look at.
--
-- Layout (read-only for rules; the methods below read it for you):
--   h.n          calls recorded in the session, the current one included
--   h.capacity   the window's size (the session's history_size)
--   h.keys[i], h.tools[i]   a ring of the last min(n, capacity) calls: the
--                call's key (the tool and its arguments, encoded as the
--                decorators encode arguments: equal arguments, equal
--                keys) and the tool's name; the current call is at h.pos,
--                the one before at h.pos - 1 (wrapping to capacity)
--   h.counts[key]  how many calls of the window have this key (0, or
--                absent, for keys no longer in it)
--   h.results[key] (on_loop = "short_circuit" only) the last results this
--                session got for the call, packed (n = count)
--
-- Bounded: recording a call that pushes the oldest one out of the ring
-- decrements that one's count; keys whose count fell to 0 are forgotten
-- (counts and results) in one sweep once there are more than
-- SLACK x capacity of them, so both tables hold at most (SLACK + 1) x
-- capacity keys whatever the number of calls, and the sweep's cost is
-- spread over SLACK x capacity calls.  Why not set counts[old] = nil at once: a Lua table
-- whose live keys stay at a power of two while one key leaves and another
-- arrives on every call is rehashed on every insertion (deleted keys do
-- not free their slot until a rehash, and the rehash sizes the table to
-- exactly the live keys): 4 us per call instead of 0.1.
local setmetatable, next = setmetatable, next

local SLACK = 4

local _M = {}
local mt = { __index = _M }

--- A history with a window of `capacity` calls; keep_results: keep the
-- last results of each call in the window (for short_circuit).
function _M.new(capacity, keep_results)
  return setmetatable({
    n = 0, pos = 0, capacity = capacity, keys = {}, tools = {}, counts = {}, zeros = 0,
    limit = SLACK * capacity,
    results = keep_results and {} or nil,
  }, mt)
end

-- Forgets the keys that left the window, in place (clearing fields while
-- traversing is allowed; the table keeps its size, so the keys that come
-- next reuse the slots instead of growing it again).
local function forget_gone(self)
  local counts, results = self.counts, self.results
  for key, c in next, counts do
    if c == 0 then
      counts[key] = nil
      if results then results[key] = nil end
    end
  end
  self.zeros = 0
end

--- Records a call (before it runs).
function _M:record(key, tool)
  local n, pos = self.n + 1, self.pos + 1
  if pos > self.capacity then pos = 1 end
  self.n, self.pos = n, pos
  local keys, counts = self.keys, self.counts
  local old = keys[pos]
  if old ~= key then
    keys[pos] = key
    counts[key] = (counts[key] or 0) + 1
    if old ~= nil then
      local c = counts[old] - 1
      counts[old] = c
      if c == 0 then
        local z = self.zeros + 1
        self.zeros = z
        if z > self.limit then forget_gone(self) end
      end
    end
  end
  self.tools[pos] = tool
end

--- Calls recorded in the session (the current one included).
function _M:count() return self.n end

--- Calls the window holds: min(count, capacity).
function _M:size()
  local n, cap = self.n, self.capacity
  return n < cap and n or cap
end

--- How many calls of the window have this key (the current one included).
function _M:repeats(key) return self.counts[key] or 0 end

--- The key and the tool name of the i-th most recent call (1: the
-- current one), or nil beyond the window.
function _M:at(i)
  local n, cap = self.n, self.capacity
  if i < 1 or i > n or i > cap then return nil end
  local p = (self.pos - i) % cap + 1
  return self.keys[p], self.tools[p]
end

--- Keeps the results of a call that returned (short_circuit only).
function _M:remember(key, packed)
  local results = self.results
  if results and (self.counts[key] or 0) > 0 then results[key] = packed end
end

--- The last results this session got for the call with this key, packed,
-- or nil.
function _M:last_results(key)
  local results = self.results
  return results and results[key]
end

return _M
