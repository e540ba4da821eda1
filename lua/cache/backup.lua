--- Snapshot backends (backup =): cache.DiskBackend, the cache.CacheBackend
-- base class for backends written in Lua, and what a cache does with them.
--
--   local c = cache.AsyncCache{ maxsize = 10000, backup = cache.DiskBackend("/var/lib/app/users.acs"),
--                               autosave_interval = 60 }
--   -- created: the entries of the file are back, with the TTL they had left
--   local saved, skipped = c:save_to_backup()   -- or nil, err
--   c:load_error()                              -- why the file was not loaded, or nil
--
-- A backend written in Lua:
--   local Mine = cache.CacheBackend:extend()
--   function Mine:load() return { { key = k, value = v, expires_at = t }, ... } end
--   function Mine:save(entries) ... end           -- the same shape
--   cache.AsyncCache{ backup = Mine() }
--
-- The cache does the work of a DiskBackend in C (cache.core: snapshot_*):
-- values are encoded with cache.codec, in slices of SLICE seconds when the
-- save runs in a task (other tasks run in between), and the file is written
-- on libuv's thread pool.  Outside a task, a save blocks until done.
local core = require "cache.core"
local runtime = require "cache.runtime"
local util = require "cache.util"

local type, error, pcall, setmetatable, getmetatable, tostring =
      type, error, pcall, setmetatable, getmetatable, tostring
local huge = math.huge
local can_wait, sleep, report = runtime.can_wait, runtime.sleep, core.runtime.report

local SLICE = 0.002 -- seconds of encoding between two turns of the loop

local _M = {}

-- Per cache: { backup =, load_error =, saving = event or nil, timer = }.
-- Weak keys: a cache nobody holds goes, and its state with it.
local states = setmetatable({}, { __mode = "k" })

_M.CacheBackend = util.class("cache.CacheBackend", {
  load = function() return {} end,
  save = function(self)
    error((tostring(getmetatable(self).__name or "CacheBackend")) .. ":save() is not implemented", 2)
  end,
})

local DiskBackend = {}
DiskBackend.__index = DiskBackend
DiskBackend.__name = "cache.DiskBackend"
setmetatable(DiskBackend, { __index = _M.CacheBackend })

function DiskBackend.__tostring(self) return "cache.DiskBackend(" .. self.path .. ")" end

-- A cache does a DiskBackend's work itself (in C): the methods a Lua
-- backend has are not for calling.
local function through_a_cache()
  error("cache.DiskBackend is used through a cache: AsyncCache{ backup = ... } "
    .. "loads it, c:save_to_backup() writes it", 2)
end
DiskBackend.load, DiskBackend.save = through_a_cache, through_a_cache

--- cache.DiskBackend(path): a snapshot file.  The folder must exist (and be
-- writable when saving); the file need not.
function _M.DiskBackend(path)
  if type(path) ~= "string" or path == "" then
    error("cache.DiskBackend(path): path must be a non-empty string, got " .. util.describe(path), 2)
  end
  return setmetatable({ path = path }, DiskBackend)
end

local function is_disk(b) return getmetatable(b) == DiskBackend end

--- Checks opts.backup (raising at level); returns it.
function _M.check(b, level)
  if b == nil or is_disk(b) then return b end
  if type(b) ~= "table" or not util.callable(b.load) or not util.callable(b.save) then
    error("opts.backup must be a cache.DiskBackend or a backend with load and save methods "
      .. "(see cache.CacheBackend), got " .. util.describe(b), level + 1)
  end
  return b
end

--- Restoring ---------------------------------------------------------------

local function restore_lua(c, b)
  local ok, entries = pcall(b.load, b)
  if not ok then return nil, "backup load() raised: " .. tostring(entries) end
  if entries == nil then return 0 end
  if type(entries) ~= "table" then
    return nil, "backup load() must return a list of entries, got " .. type(entries)
  end
  local now, n = core.wall_time(), 0
  for i = 1, #entries do
    local e = entries[i]
    if type(e) ~= "table" or e.key == nil then
      return nil, ("backup load(): entry %d must be a table with a key"):format(i)
    end
    local ttl = huge
    if e.expires_at ~= nil then
      if type(e.expires_at) ~= "number" then
        return nil, ("backup load(): entry %d: expires_at must be a number"):format(i)
      end
      ttl = e.expires_at - now
    elseif e.ttl ~= nil then
      ttl = e.ttl
    end
    if type(ttl) ~= "number" then
      return nil, ("backup load(): entry %d: ttl must be a number"):format(i)
    end
    if ttl > 0 and e.value ~= nil then
      local sok, err = pcall(core.restore_set, c, e.key, e.value, ttl)
      if not sok then return nil, ("backup load(): entry %d: %s"):format(i, tostring(err)) end
      n = n + 1
    end
  end
  return n
end

-- Loads the backup into a new cache.  A missing file is an empty start; a
-- file that cannot be loaded leaves the cache empty, its reason kept for
-- c:load_error() and reported to the error hook, and the file untouched.
local function restore(c, st)
  local b = st.backup
  local n, err, kind
  if is_disk(b) then
    n, err, kind = core.snapshot_load(c, b.path)
    if n == nil and kind == "missing" then return end
  else
    n, err = restore_lua(c, b)
  end
  if n == nil then
    st.load_error = "cannot restore the cache from its backup: " .. err
    -- all or nothing: a Lua backend may have stored a part (in this level
    -- only: the remote's keys are other instances' too)
    core.forget_all(c)
    report(st.load_error)
  end
end

--- Saving ------------------------------------------------------------------

local function save_disk(c, path)
  local job = core.snapshot_begin(c) -- ranks the entries: about 20 ns each
  if can_wait() then
    sleep(0)
    while not job:step(SLICE) do sleep(0) end
  else
    job:step()
  end
  job:write(path)
  return job:result()
end

local function save_lua(c, b)
  local entries = core.cache_entries(c)
  local ok, err = pcall(b.save, b, entries)
  if not ok then return nil, "backup save() raised: " .. tostring(err) end
  return #entries, 0
end

local function save(c, st)
  if is_disk(st.backup) then return save_disk(c, st.backup.path) end
  return save_lua(c, st.backup)
end

--- cache:save_to_backup() -> saved, skipped | nil, err.  One save at a time
-- per cache: a second call waits for the first, then saves what is cached
-- then.
function _M.save_to_backup(c)
  local st = states[c]
  if st == nil or st.backup == nil then
    error("cache:save_to_backup(): this cache has no backup "
      .. "(create it with backup = cache.DiskBackend(path))", 2)
  end
  while st.saving do
    if not can_wait() then
      return nil, "a save of this cache is in progress in a task"
    end
    st.saving:wait()
  end
  local done = runtime.event()
  st.saving = done
  local ok, saved, skipped = pcall(save, c, st)
  st.saving = nil
  done:set()
  if not ok then return nil, tostring(saved) end
  return saved, skipped
end

function _M.load_error(c)
  local st = states[c]
  return st and st.load_error
end

-- Every interval, a task saves the cache (skipping a tick while a save
-- runs); errors go to the error hook.  The timer holds the cache weakly:
-- a cache nobody holds is collected, and its timer with it.
local function start_autosave(c, st, interval)
  local weak = setmetatable({ c = c }, { __mode = "v" })
  local timer
  timer = core.every(interval, function()
    local cache = weak.c
    if cache == nil then timer:stop() return end -- collected: the timer goes too
    local state = states[cache]
    if state.saving then return end
    local ok, saved, err = pcall(_M.save_to_backup, cache)
    if ok and saved then return end
    local msg = tostring(ok and err or saved)
    if msg:find("the cache is closed", 1, true) then
      timer:stop()
      return
    end
    report("autosave failed: " .. msg)
  end)
  st.timer = timer
end

--- Attaches the backup of a new cache (opts checked): restores it, starts
-- the autosave timer.
function _M.attach(c, backup, autosave_interval)
  if backup == nil then return end
  local st = { backup = backup }
  states[c] = st
  restore(c, st)
  if autosave_interval then start_autosave(c, st, autosave_interval) end
end

return _M
