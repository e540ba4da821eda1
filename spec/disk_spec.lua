-- Disk persistence: cache.DiskBackend, save_to_backup, restore at creation,
-- autosave, Lua snapshot backends (cache.CacheBackend).
local cache = require "cache"
local runtime = require "cache.runtime"
local h = require "helpers"

local function tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -p " .. p))
  return p
end

local function read_all(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write_all(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- Runs a Lua chunk in a new lua5.4 process (same module paths); returns
-- what it printed.
local function in_new_process(code)
  local script = os.tmpname()
  write_all(script, code)
  local p = io.popen("lua5.4 " .. script .. " 2>&1")
  local out = p:read("a")
  p:close()
  os.remove(script)
  return out
end

local hook_messages = h.hook_messages

describe("DiskBackend", function()
  local dir, path
  before_each(function()
    dir = tmpdir()
    path = dir .. "/cache.acs"
  end)
  after_each(function() os.execute("rm -rf " .. dir) end)

  local function new(opts)
    opts = opts or {}
    opts.backup = opts.backup or cache.DiskBackend(path)
    opts.maxsize = opts.maxsize or 1000
    return cache.AsyncCache(opts)
  end

  it("starts empty without a file, and load_error() is nil", function()
    local c = new()
    assert.equal(0, c:get_metrics().size)
    assert.is_nil(c:load_error())
  end)

  it("survives a restart: a new process loads what this one saved", function()
    local c = new()
    c:set("int", 1)
    c:set("float", 1.0)
    c:set("bytes", "a\0b\255")
    c:set(42, { 1, 2, { x = -0.0, y = { true, false } }, name = "n" })
    c:set(true, "yes")
    c:set(2.5, "float key")
    assert.same({ 6, 0 }, { c:save_to_backup() })
    local out = in_new_process(([[
      local cache = require "cache"
      local c = cache.AsyncCache{ maxsize = 10, backup = cache.DiskBackend(%q) }
      local t = c:get(42)
      print(math.type(c:get("int")), math.type(c:get("float")), c:get("bytes") == "a\0b\255",
            t[3].y[2], 1 / t[3].x, t.name, c:get(true), c:get(2.5), c:load_error())
    ]]):format(path))
    assert.equal("integer\tfloat\ttrue\tfalse\t-inf\tn\tyes\tfloat key\tnil\n", out)
  end)

  it("keeps the TTL left across a restart, and skips what expired", h.with_fake_clock(function(clock)
    local c = new()
    c:set("long", "L", { ttl = 100 })
    c:set("short", "S", { ttl = 5 })
    c:set("forever", "F")
    clock:advance(60) -- long has 40 s left, short has expired
    c:save_to_backup()
    local c2 = new()
    assert.equal("L", c2:get("long"))
    assert.is_nil(c2:get("short"))
    clock:advance(39)
    assert.equal("L", c2:get("long"))
    clock:advance(2)
    assert.is_nil(c2:get("long"))
    assert.equal("F", c2:get("forever"))
  end))

  it("skips entries whose expiry passed on the wall clock while it was down", h.in_run(function()
    local c = new()
    c:set("soon", "x", { ttl = 0.05 })
    c:set("later", "y", { ttl = 60 })
    c:save_to_backup()
    os.execute("sleep 0.1") -- the process is "down"; the wall clock moves on
    local c2 = new()
    assert.is_nil(c2:get("soon"))
    assert.equal("y", c2:get("later"))
  end))

  it("restores recency: the least recently used is evicted first", function()
    local c = new({ maxsize = 3 })
    c:set("a", 1); c:set("b", 2); c:set("c", 3)
    c:get("a") -- now b is the least recently used
    c:save_to_backup()
    local c2 = new({ maxsize = 3 })
    c2:set("d", 4)
    assert.is_false(c2:contains("b"))
    assert.is_true(c2:contains("a"))
  end)

  it("saves the encodable values, skips the others and counts them", function()
    local c = new()
    c:set("ok", 1)
    c:set("fn", print)
    local cyc = {}
    cyc.self = cyc
    c:set("cyc", cyc)
    assert.same({ 1, 2 }, { c:save_to_backup() })
    assert.equal(2, c:get_metrics().unencodable)
    assert.equal(print, c:get("fn")) -- still in L1
    local c2 = new()
    assert.equal(1, c2:get("ok"))
    assert.is_nil(c2:get("fn"))
  end)

  for name, damage in pairs({
    corrupt = function(s) return s:sub(1, 60) .. string.char((s:byte(61) + 1) % 256) .. s:sub(62) end,
    truncated = function(s) return s:sub(1, #s - 3) end,
    ["wrong version"] = function(s) return s:sub(1, 8) .. "\2" .. s:sub(10) end,
    empty = function() return "" end,
    ["not a snapshot"] = function() return "hello, world, this is a text file, not a snapshot\n" end,
  }) do
    it("does not load a " .. name .. " file: starts empty, reports, keeps the file", function()
      local c = new()
      for i = 1, 20 do c:set(i, "v" .. i) end
      c:save_to_backup()
      local bad = damage(read_all(path))
      write_all(path, bad)
      local c2
      local msgs = hook_messages(function() c2 = new() end)
      assert.equal(0, c2:get_metrics().size)
      local err = c2:load_error()
      assert.matches("cannot restore the cache from its backup: " .. path:gsub("%p", "%%%0") .. ": ", err)
      assert.equal(1, #msgs)
      assert.matches(err:gsub("%p", "%%%0"), msgs[1])
      assert.equal(bad, read_all(path)) -- untouched
      c2:set("k", "v") -- the cache works
      assert.equal("v", c2:get("k"))
      assert.same({ 1, 0 }, { c2:save_to_backup() }) -- an explicit save replaces it
      assert.is_nil(new():load_error())
    end)
  end

  it("names the problem of a damaged file", function()
    local c = new()
    c:set("k", "v")
    c:save_to_backup()
    local good = read_all(path)
    local function err_for(bytes)
      write_all(path, bytes)
      local c2
      hook_messages(function() c2 = new() end)
      return c2:load_error()
    end
    assert.matches("checksum mismatch: the body is corrupt", err_for(good:sub(1, -2) .. "X"))
    assert.matches("version 2; this build reads version 1",
                   err_for(good:sub(1, 8) .. "\2" .. good:sub(10)), 1, true)
    assert.matches("truncated", err_for(good:sub(1, 20)))
    assert.matches("bad magic", err_for("PK\3\4" .. good:sub(5)))
  end)

  it("returns nil, err when the file cannot be written, and keeps working", function()
    local c = cache.AsyncCache{ backup = cache.DiskBackend(dir .. "/no/such/folder/x.acs") }
    c:set("k", "v")
    local ok, err = c:save_to_backup()
    assert.is_nil(ok)
    assert.matches("create .*no/such/folder/x.acs.tmp.*: No such file or directory", err)
    assert.equal("v", c:get("k"))
  end)

  it("saves in a task without stopping the others", h.in_run(function()
    local c = new({ maxsize = 20000 })
    for i = 1, 20000 do c:set(i, { id = i, name = "user" .. i }) end
    local ticks, done = 0, false
    runtime.spawn(function()
      while not done do ticks = ticks + 1; runtime.sleep(0) end
    end)
    assert.same({ 20000, 0 }, { c:save_to_backup() })
    done = true
    assert.is_true(ticks > 1) -- the other task ran during the save
    local c2 = new({ maxsize = 20000 })
    assert.equal(20000, c2:get_metrics().size)
    assert.equal("user777", c2:get(777).name)
  end))

  it("serializes saves of one cache", h.in_run(function()
    local c = new()
    c:set("a", 1)
    local results = {}
    for i = 1, 3 do
      runtime.spawn(function() results[i] = { c:save_to_backup() } end)
    end
    runtime.sleep(0.2)
    assert.same({ { 1, 0 }, { 1, 0 }, { 1, 0 } }, results)
  end))

  it("autosaves every autosave_interval", h.in_run(function()
    local c = new({ autosave_interval = 0.05 })
    c:set("k", "saved by autosave")
    runtime.sleep(0.2)
    assert.is_not_nil(read_all(path))
    assert.equal("saved by autosave", new():get("k"))
  end))

  it("works on decorated functions", function()
    local calls = 0
    local f = cache.AsyncLRU{ maxsize = 10, backup = cache.DiskBackend(path) }(function(a, b)
      calls = calls + 1
      return a + b, "second"
    end)
    assert.same({ 3, "second" }, { f(1, 2) })
    assert.same({ 1, 0 }, { f:save_to_backup() })
    local g = cache.AsyncTTL{ time_to_live = 60, backup = cache.DiskBackend(path) }(function()
      error("must not be called: the result was restored")
    end)
    assert.same({ 3, "second" }, { g(1, 2) })
    assert.is_nil(g:load_error())
    assert.equal(1, calls)
  end)

  it("rejects bad options with a message", function()
    assert.has_error(function() cache.DiskBackend() end,
      "cache.DiskBackend(path): path must be a non-empty string, got nil")
    assert.has_error(function() cache.DiskBackend("") end)
    assert.has_error(function() cache.AsyncCache{ backup = 42 } end,
      "opts.backup must be a cache.DiskBackend or a backend with load and save methods (see cache.CacheBackend), got 42")
    assert.has_error(function() cache.AsyncCache{ autosave_interval = 5 } end,
      "opts.autosave_interval needs opts.backup (where to save)")
    assert.has_error(function() cache.AsyncCache{ backup = cache.DiskBackend(path), autosave_interval = -1 } end,
      "opts.autosave_interval must be a positive number, got -1")
    assert.has_error(function() cache.AsyncCache{}:save_to_backup() end,
      "cache:save_to_backup(): this cache has no backup (create it with backup = cache.DiskBackend(path))")
  end)
end)

describe("a backup beside a remote", function()
  local Shared = cache.RemoteCacheBackend:extend()
  function Shared:init() self.data, self.sets, self.clears = {}, 0, 0 end
  function Shared:get(k) return self.data[k] end
  function Shared:set(k, b) self.sets = self.sets + 1; self.data[k] = b end
  function Shared:delete(k) self.data[k] = nil end
  function Shared:clear() self.clears = self.clears + 1; self.data = {} end

  it("restoring writes nothing to the remote, and a damaged file does not clear it", h.in_run(function()
    local path = os.tmpname()
    local first = cache.AsyncCache{ backup = cache.DiskBackend(path) }
    first:set("old", "from the snapshot")
    first:save_to_backup()
    local shared = Shared()
    local c = cache.AsyncCache{ backup = cache.DiskBackend(path), remote_cache = shared }
    runtime.sleep(0.01)
    assert.equal("from the snapshot", c:get("old"))
    assert.equal(0, shared.sets)
    write_all(path, "damaged")
    shared.data.other = "another instance's"
    local d
    hook_messages(function() d = cache.AsyncCache{ backup = cache.DiskBackend(path), remote_cache = shared } end)
    runtime.sleep(0.01)
    assert.is_not_nil(d:load_error())
    assert.equal(0, shared.clears)
    assert.equal("another instance's", shared.data.other)
    os.remove(path)
  end))
end)

describe("save_to_backup's count", function()
  it("counts what was saved, not what was there when the save began", h.in_run(function()
    local path = os.tmpname()
    local c = cache.AsyncCache{ maxsize = 30000, backup = cache.DiskBackend(path) }
    for i = 1, 30000 do c:set(i, i) end
    runtime.spawn(function() for i = 1, 30000, 2 do c:delete(i) end end)
    local saved = c:save_to_backup()
    local restored = cache.AsyncCache{ maxsize = 30000, backup = cache.DiskBackend(path) }
    assert.equal(restored:get_metrics().size, saved)
    os.remove(path)
  end))
end)

describe("CacheBackend (snapshot backends written in Lua)", function()
  local Memory = cache.CacheBackend:extend()
  function Memory:load() return self.entries end
  function Memory:save(entries) self.entries = entries end

  it("plugs into backup = like DiskBackend", h.with_fake_clock(function(clock)
    local store = Memory()
    local c = cache.AsyncCache{ backup = store }
    c:set("a", { 1, 2 })
    c:set("b", "B", { ttl = 10 })
    c:set("fn", print) -- a Lua backend takes any value
    assert.same({ 3, 0 }, { c:save_to_backup() })
    assert.equal(3, #store.entries)
    local c2 = cache.AsyncCache{ backup = store }
    assert.same({ 1, 2 }, c2:get("a"))
    assert.equal(print, c2:get("fn"))
    clock:advance(11)
    -- b's expiry is wall-clock time: it is still there on the fake clock
    -- of this test only if less than 10 s of real time passed, so check
    -- the saved expiry instead.
    for _, e in ipairs(store.entries) do
      if e.key == "b" then assert.near(require("cache.core").wall_time() + 10, e.expires_at, 5) end
    end
  end))

  it("accepts ttl instead of expires_at, and skips what has expired", function()
    local store = Memory{ entries = {
      { key = "a", value = 1, ttl = 60 },
      { key = "old", value = 2, expires_at = 0 },
      { key = "b", value = 3 },
    } }
    local c = cache.AsyncCache{ backup = store }
    assert.equal(1, c:get("a"))
    assert.is_nil(c:get("old"))
    assert.equal(3, c:get("b"))
  end)

  it("a raising load leaves the cache empty and reports", function()
    local Broken = cache.CacheBackend:extend()
    function Broken:load() error("disk on fire") end
    function Broken:save() error("still on fire") end
    local c
    local msgs = hook_messages(function() c = cache.AsyncCache{ backup = Broken() } end)
    assert.matches("backup load%(%) raised: .*disk on fire", c:load_error())
    assert.equal(1, #msgs)
    c:set("k", 1)
    local ok, err = c:save_to_backup()
    assert.is_nil(ok)
    assert.matches("backup save%(%) raised: .*still on fire", err)
    assert.equal(1, c:get("k"))
  end)

  it("a bad entry list is refused whole", function()
    local c
    hook_messages(function()
      c = cache.AsyncCache{ backup = Memory{ entries = { { key = "a", value = 1 }, "junk" } } }
    end)
    assert.matches("entry 2 must be a table with a key", c:load_error())
    assert.equal(0, c:get_metrics().size)
  end)

  it("the base class says what is missing", function()
    local Half = cache.CacheBackend:extend()
    local c = cache.AsyncCache{ backup = Half() }
    c:set("k", 1)
    local ok, err = c:save_to_backup()
    assert.is_nil(ok)
    assert.matches("save%(%) is not implemented", err)
  end)
end)
