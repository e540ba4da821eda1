--- The resource index: which cached tool results carry which resource,
-- so that invalidating a resource drops exactly those entries, without
-- scanning any cache.
--
-- A *space* is one scope's index: the global space, or one per session.
-- Its resources map a resource name to a node:
--   node.all      every entry tagged with the resource
--   node.none     the entries tagged with the resource and no id (their
--                 tool has no match, or match returned nil)
--   node.ids[id]  the entries tagged "resource:id"
-- Each set maps an entry's *record* (the table the tool's AsyncCache
-- stores as the value: the packed results) to its *handle*
-- { cache =, key =, node =, ids = <its id's set>, entries = <the session
-- space's set> }.
--
-- Why it stays consistent and bounded without a hook in the cache:
--   * the sets have weak keys (ephemerons): an entry that leaves its cache
--     (evicted, expired, deleted) leaves its record unreachable, and the
--     collector clears it from every set; the index never holds more than
--     the live entries plus those awaiting collection;
--   * node.ids has weak values and a handle holds its id's set, so an id's
--     set lives as long as one of its entries does: one-off ids
--     ("cart:user_123456") do not pile up;
--   * until the collector has run, a set may still name an entry that is
--     gone: invalidating it deletes its key again, which removes nothing,
--     or removes a newer entry of the same key, which is the same tool
--     with the same arguments, so the same tag (match is a function of the
--     arguments): never a wrong removal;
--   * an entry is registered when its load starts, so an invalidation
--     that comes while the tool runs deletes the key of the load in
--     progress, and the cache then does not store its result.
local setmetatable, pairs, next = setmetatable, pairs, next

local WEAK_KEYS = { __mode = "k" }
local WEAK_VALUES = { __mode = "v" }

local _M = {}
local mt = { __index = _M }

--- A new space; with_entries: also keep the set of all its entries (a
-- session's space, emptied when the session ends).
function _M.new(with_entries)
  return setmetatable({
    resources = {},
    entries = with_entries and setmetatable({}, WEAK_KEYS) or nil,
  }, mt)
end

local function node_of(space, resource)
  local node = space.resources[resource]
  if node == nil then
    node = { all = setmetatable({}, WEAK_KEYS), none = setmetatable({}, WEAK_KEYS),
             ids = setmetatable({}, WEAK_VALUES) }
    space.resources[resource] = node
  end
  return node
end

--- Registers the entry `rec` of `cache` under `key`, tagged with
-- resource (nil: untagged) and id (nil: the whole resource).
function _M:add(resource, id, rec, cache, key)
  local h = { cache = cache, key = key, entries = self.entries }
  if self.entries then self.entries[rec] = h end
  if resource == nil then return h end
  local node = node_of(self, resource)
  h.node = node
  node.all[rec] = h
  if id == nil then
    node.none[rec] = h
  else
    local set = node.ids[id]
    if set == nil then
      set = setmetatable({}, WEAK_KEYS)
      node.ids[id] = set
    end
    h.ids = set
    set[rec] = h
  end
  return h
end

-- Deletes the entry and takes it out of every set; true when the cache
-- still held it (or was loading it).
local function drop(rec, h)
  local node = h.node
  if node then
    node.all[rec] = nil
    if h.ids then h.ids[rec] = nil else node.none[rec] = nil end
  end
  if h.entries then h.entries[rec] = nil end
  if h.cache:is_closed() then return false end
  return h.cache:delete(h.key)
end

local function drop_all(set)
  -- Collect first: drop edits the sets being walked.
  local recs, handles, n = {}, {}, 0
  for rec, h in pairs(set) do
    n = n + 1
    recs[n], handles[n] = rec, h
  end
  local removed = 0
  for i = 1, n do
    if drop(recs[i], handles[i]) then removed = removed + 1 end
  end
  return removed
end

--- Invalidates the resource (id nil: every entry tagged with it; else the
-- entries tagged resource:id and those tagged with the resource alone,
-- which may depend on any id).  Returns how many entries it removed.
function _M:invalidate(resource, id)
  local node = self.resources[resource]
  if node == nil then return 0 end
  if id == nil then return drop_all(node.all) end
  local removed = drop_all(node.none)
  local set = node.ids[id]
  if set ~= nil then removed = removed + drop_all(set) end
  return removed
end

--- Drops every entry of the space (a session ending); returns how many.
function _M:clear()
  local removed = self.entries and drop_all(self.entries) or 0
  self.resources = {}
  return removed
end

--- Entries the index knows of for a resource (id: of resource:id),
-- collected ones aside only after a collection: for tests and metrics.
function _M:count(resource, id)
  local node = self.resources[resource]
  if node == nil then return 0 end
  local set = node.all
  if id ~= nil then set = node.ids[id] end
  local n = 0
  if set then for _ in next, set do n = n + 1 end end
  return n
end

--- The global space: what scope = "global" tools and invalidators share.
_M.global = _M.new(false)

return _M
