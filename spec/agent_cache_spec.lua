-- Specs of agent.AgentCache (cached read tools) and
-- agent.AgentCacheInvalidator (write tools): keys, results, errors,
-- resources and match, the resource index under eviction and expiry,
-- scopes, remote_cache, options.  Sessions, rules and the scenarios have
-- specs of their own (agent_session_spec, agent_rules_spec,
-- agent_scenarios_spec).
--
-- Every test drives the loop itself (runtime.run); TTLs run on the fake
-- clock.  Sessions are opened with <close> or :run, so none outlives its
-- test (an open session would be the current one of later tests).
local agent = require "agent_cache"
local cache = require "cache"
local runtime = require "cache.runtime"
local Index = require "agent_cache.index"
local h = require "helpers"

local sleep = runtime.sleep
local in_run, counted, spawn_all, error_of = h.in_run, h.counted, h.spawn_all, h.error_of
local with_fake_clock = h.with_fake_clock

-- A read tool over a counting function: returns the tool and the stats.
local function read_tool(opts, fn)
  local s = counted(fn or function(...) return ... end)
  return agent.AgentCache(opts)(s.fn), s
end

local function write_tool(opts, fn)
  local s = counted(fn or function() return true end)
  return agent.AgentCacheInvalidator(opts)(s.fn), s
end

local function full_gc()
  collectgarbage("collect")
  collectgarbage("collect")
end

-- A resource name no other test uses (the global space is shared).
local fresh
do
  local n = 0
  fresh = function(prefix)
    n = n + 1
    return ("%s-%d"):format(prefix or "res", n)
  end
end

describe("agent.AgentCache", function()
  after_each(function() assert.is_nil(agent.current_session()) end)

  it("runs the tool on a miss and returns the cached results on a hit", in_run(function()
    local get_cart, s = read_tool({ resource = fresh("cart") }, function(user)
      sleep(0) -- a tool may wait
      return { user = user, items = 2 }, "fresh"
    end)
    local a, b = get_cart("user_1")
    local c, d = get_cart("user_1")
    assert.same({ user = "user_1", items = 2 }, a)
    assert.equal("fresh", b)
    assert.equal(a, c) -- the cached table itself
    assert.equal("fresh", d)
    assert.equal(1, s.calls)
    get_cart("user_2")
    assert.equal(2, s.calls)
  end))

  it("keys calls by the decorators' canonical encoding of the arguments", in_run(function()
    local search, s = read_tool({ resource = fresh() })
    search({ query = "lua", filters = { lang = "en", year = 2024 } })
    search({ filters = { year = 2024, lang = "en" }, query = "lua" }) -- other insertion order
    assert.equal(1, s.calls)
    search(1); search(1.0)
    assert.equal(2, s.calls)
    search(1, nil) -- the count matters
    search("1")    -- a string is not a number
    assert.equal(4, s.calls)
  end))

  it("gives results whose first is nil without caching them", in_run(function()
    local find, s = read_tool({ resource = fresh() }, function() return nil, "not found" end)
    assert.same({ n = 2, nil, "not found" }, table.pack(find("x")))
    assert.same({ n = 2, nil, "not found" }, table.pack(find("x")))
    assert.equal(2, s.calls)
  end))

  it("raises what the tool raises, to every caller of that call, and caches nothing", in_run(function()
    local err = { code = 503 }
    local flaky, s = read_tool({ resource = fresh() }, function() sleep(0); error(err) end)
    local results = spawn_all(3, function() return flaky("q") end)
    for i = 1, 3 do assert.equal(err, results[i].err) end
    assert.equal(1, s.calls) -- concurrent equal calls: one run
    assert.equal(err, error_of(flaky, "q"))
    assert.equal(2, s.calls)
  end))

  it("runs the tool once for concurrent equal calls", in_run(function()
    local slow, s = read_tool({ resource = fresh() }, function(x) sleep(0.001); return x * 2 end)
    local results = spawn_all(10, function() return slow(21) end)
    for i = 1, 10 do assert.equal(42, results[i][1]) end
    assert.equal(1, s.calls)
  end))

  it("decorates a callable table", in_run(function()
    local calls = 0
    local t = setmetatable({}, { __call = function(_, x) calls = calls + 1; return x end })
    local f = agent.AgentCache{ resource = fresh() }(t)
    assert.equal(3, f(3))
    assert.equal(3, f(3))
    assert.equal(1, calls)
  end))

  it("expires entries after ttl seconds", with_fake_clock(function(clock)
    local get, s = read_tool({ resource = fresh(), ttl = 60 })
    get("k")
    clock:advance(59.999)
    get("k")
    assert.equal(1, s.calls)
    clock:advance(0.001)
    get("k")
    assert.equal(2, s.calls)
  end))

  it("keeps at most maxsize entries (least recently used evicted)", in_run(function()
    local get, s = read_tool({ resource = fresh(), maxsize = 2 })
    get(1); get(2); get(1); get(3) -- 2 is the least recently used
    assert.equal(3, s.calls)
    get(1); get(3)
    assert.equal(3, s.calls)
    get(2)
    assert.equal(4, s.calls)
    assert.equal(2, get:get_metrics().size)
  end))

  it("has a name, its cache, its function and the cache's metrics", in_run(function()
    local fn = function(x) return x end
    local tool = agent.AgentCache{ resource = "things", name = "get_thing" }(fn)
    assert.equal("get_thing", tool.name)
    assert.equal("things", tool.resource)
    assert.equal("global", tool.scope)
    assert.equal(fn, tool:func())
    assert.equal("agent tool get_thing", tostring(tool))
    tool(1); tool(1)
    local m = tool:get_metrics()
    assert.equal(1, m.hits)
    assert.equal(1, m.misses)
    assert.equal(m.size, tool:cache():get_metrics().size)
    tool:cache_clear()
    assert.equal(0, tool:get_metrics().size)
    local unnamed = agent.AgentCache{}(fn)
    assert.matches("^tool@.*agent_cache_spec%.lua:%d+$", unnamed.name)
  end))

  it("counts calls made outside any session in agent.get_metrics()", in_run(function()
    local get = read_tool({ resource = fresh() })
    local before = agent.get_metrics()
    get("a"); get("a"); get("b")
    local after = agent.get_metrics()
    assert.equal(3, after.calls - before.calls)
    assert.equal(1, after.hits - before.hits)
    assert.equal(2, after.misses - before.misses)
  end))

  describe("with scope = \"session\"", function()
    it("raises a clear error naming the fix when called outside any session", in_run(function()
      local get = read_tool({ resource = fresh(), scope = "session", name = "get_ticket" })
      assert.equal('get_ticket has scope = "session" and was called outside any agent session: '
        .. "call it while a session is open (local s <close> = agent.AgentCacheSession{...}, or "
        .. 'agent.AgentCacheSession{...}:run(fn)), or give the tool scope = "global"',
        error_of(get, "T-100"))
      local put = write_tool({ resource = "x", scope = "session", name = "put" })
      assert.matches("^put has scope = \"session\" and was called outside any agent session",
        error_of(put))
    end))
  end)

  describe("options", function()
    it("are checked when the decorator is made, with messages naming them", function()
      local cases = {
        { { tll = 60 }, "agent.AgentCache: unknown option 'tll'" },
        { { scope = "local" }, 'opts.scope must be "global" or "session", got string "local"' },
        { { ttl = 0 }, "opts.ttl must be a positive number of seconds or nil, got 0" },
        { { ttl = "60" }, 'opts.ttl must be a positive number of seconds or nil, got string "60"' },
        { { maxsize = 1.5 }, "opts.maxsize must be a positive integer, got 1.5" },
        { { resource = "" }, 'opts.resource must be a non-empty string, got string ""' },
        { { resource = 1 }, "opts.resource must be a non-empty string, got 1" },
        { { match = "user" }, "opts.match must be a function, got string" },
        { { name = true }, "opts.name must be a non-empty string, got true" },
        { { load_timeout = -1 }, "opts.load_timeout must be a positive number, got -1" },
        { { scope = "session", remote_cache = cache.RemoteCacheBackend() },
          'opts.remote_cache needs scope = "global" (session entries stay in memory)' },
        { "cart", "agent.AgentCache: opts must be a table, got string" },
      }
      for _, c in ipairs(cases) do
        assert.has_error(function() agent.AgentCache(c[1]) end, c[2])
      end
      assert.has_error(function() agent.AgentCache{}(42) end,
        "agent.AgentCache: the decorated value must be a function, got number")
    end)

    it("report the caller's line", function()
      local ok, err = pcall(function() agent.AgentCache{ tll = 1 } end)
      assert.is_false(ok)
      assert.matches("agent_cache_spec%.lua:%d+: agent%.AgentCache: unknown option 'tll'", err)
    end)
  end)
end)

describe("agent.AgentCacheInvalidator", function()
  after_each(function() assert.is_nil(agent.current_session()) end)

  it("invalidates every entry of its resource, of every tool, then runs the write", in_run(function()
    local cart = fresh("cart")
    local get_cart, gc = read_tool({ resource = cart })
    local cart_total, gt = read_tool({ resource = cart })
    local get_product, gp = read_tool({ resource = fresh("product") })
    local seen
    local add, w = write_tool({ resource = cart }, function(user, item)
      seen = { cached_cart = get_cart:cache():get_metrics().size, cached_totals = cart_total:cache():get_metrics().size }
      return "added " .. item
    end)
    get_cart("u1"); get_cart("u2"); cart_total("u1"); get_product("laptop")
    assert.equal("added laptop", add("u1", "laptop"))
    assert.same({ cached_cart = 0, cached_totals = 0 }, seen) -- gone before the write ran
    assert.equal(1, w.calls)
    get_cart("u1"); get_cart("u2"); cart_total("u1"); get_product("laptop")
    assert.equal(4, gc.calls)
    assert.equal(2, gt.calls)
    assert.equal(1, gp.calls) -- another resource: still cached
  end))

  it("invalidates before the write runs even when the write raises, and raises its error", in_run(function()
    local res = fresh()
    local get, g = read_tool({ resource = res })
    local err = { reason = "db down" }
    local put = write_tool({ resource = res }, function() error(err) end)
    get(1)
    assert.equal(err, error_of(put, 1))
    get(1)
    assert.equal(2, g.calls)
  end))

  it("invalidates again after the write: a read made while it ran is not kept", in_run(function()
    local res = fresh()
    local value = "old"
    local get, g = read_tool({ resource = res }, function() return value end)
    local put = write_tool({ resource = res }, function(v)
      assert.equal("old", get(1)) -- a read racing the write caches pre-write data ...
      value = v
    end)
    put("new")
    assert.equal("new", get(1)) -- ... which the second invalidation dropped
    assert.equal(2, g.calls)
  end))

  it("keeps a load in progress from storing its result when it invalidates meanwhile", in_run(function()
    local res = fresh()
    local go, value = runtime.event(), "old"
    local get, g = read_tool({ resource = res }, function()
      local v = value -- read before the write ...
      go:wait()       -- ... returned after it
      return v
    end)
    local put = write_tool({ resource = res }, function(v) value = v end)
    local r = h.go(get, 1)
    sleep(0) -- the load is running
    put("new")
    go:set()
    while not r.done do sleep(0) end
    assert.equal("old", r[1]) -- that call gets what it loaded ...
    assert.equal("new", get(1)) -- ... but it was not cached
    assert.equal(2, g.calls)
  end))

  it("returns every result of the write", in_run(function()
    local put = write_tool({ resource = fresh() }, function(a, b) return a, nil, b end)
    assert.same({ n = 3, 1, nil, 2 }, table.pack(put(1, 2)))
  end))

  describe("with match", function()
    it("tags entries resource:id and invalidates only that id (and the resource-wide entries)", in_run(function()
      local cart = fresh("cart")
      local by_user = function(user_id) return user_id end
      local get_cart, gc = read_tool({ resource = cart, match = by_user })
      local all_carts, ga = read_tool({ resource = cart }) -- depends on every cart
      local add = write_tool({ resource = cart, match = by_user })
      get_cart("user_1"); get_cart("user_2"); all_carts()
      assert.equal(2, Index.global:count(cart, "user_1") + Index.global:count(cart, "user_2"))
      add("user_1", "laptop")
      get_cart("user_1"); get_cart("user_2"); all_carts()
      assert.equal(3, gc.calls) -- user_1 again, user_2 still cached
      assert.equal(2, ga.calls) -- the resource-wide entry went too
    end))

    it("an invalidator without match invalidates every id", in_run(function()
      local cart = fresh("cart")
      local get_cart, gc = read_tool({ resource = cart, match = function(u) return u end })
      local clear_carts = write_tool({ resource = cart })
      get_cart("user_1"); get_cart("user_2")
      clear_carts()
      get_cart("user_1"); get_cart("user_2")
      assert.equal(4, gc.calls)
    end))

    it("a match returning nil means the whole resource", in_run(function()
      local res = fresh()
      local get, g = read_tool({ resource = res, match = function(id) return id end })
      local put = write_tool({ resource = res, match = function(id) return id end })
      get("a"); get("b")
      put(nil)
      get("a"); get("b")
      assert.equal(4, g.calls)
    end))
  end)

  describe("the resource index", function()
    it("does not keep entries the cache evicted (bounded by maxsize)", in_run(function()
      local res = fresh()
      local get = read_tool({ resource = res, maxsize = 10, match = function(i) return i end })
      for i = 1, 5000 do get(i) end
      full_gc()
      assert.equal(10, Index.global:count(res))
      -- one-off ids leave no empty sets behind
      local ids = 0
      for _ in pairs(Index.global.resources[res].ids) do ids = ids + 1 end
      assert.equal(10, ids)
      local put = write_tool({ resource = res })
      put()
      assert.equal(0, get:get_metrics().size)
      assert.equal(0, Index.global:count(res))
    end))

    it("does not keep entries that expired", with_fake_clock(function(clock)
      local res = fresh()
      local get = read_tool({ resource = res, ttl = 1 })
      for i = 1, 100 do get(i) end
      assert.equal(100, Index.global:count(res))
      clock:advance(3) -- the sweep drops them
      full_gc()
      assert.equal(0, get:get_metrics().size)
      assert.equal(0, Index.global:count(res))
    end))

    it("touches only the invalidated resource's entries, not the whole cache", in_run(function()
      local a, b = fresh("a"), fresh("b")
      local get_a = read_tool({ resource = a })
      local get_b = read_tool({ resource = b })
      for i = 1, 3 do get_a(i) end
      for i = 1, 1000 do get_b(i) end
      assert.equal(3, Index.global:count(a))
      assert.equal(3, Index.global:invalidate(a)) -- three deletes, nothing else looked at
      assert.equal(1000, get_b:get_metrics().size)
    end))

    it("is right about an entry evicted and loaded again before a collection", in_run(function()
      local res = fresh()
      local get, g = read_tool({ resource = res, maxsize = 1 })
      get(1); get(2); get(1) -- 1 was evicted, then loaded again: two records for one key
      local put = write_tool({ resource = res })
      put()
      get(1)
      assert.equal(4, g.calls)
    end))
  end)

  it("counts its calls as invalidations", in_run(function()
    local put = write_tool({ resource = fresh() })
    local before = agent.get_metrics().invalidations
    put(); put()
    assert.equal(2, agent.get_metrics().invalidations - before)
  end))

  it("options are checked, with messages naming them", function()
    local cases = {
      { {}, "opts.resource must be a non-empty string, got nil" },
      { { resource = "x", ttl = 1 }, "agent.AgentCacheInvalidator: unknown option 'ttl'" },
      { { resource = "x", scope = 1 }, 'opts.scope must be "global" or "session", got 1' },
      { { resource = "x", match = {} }, "opts.match must be a function, got table" },
    }
    for _, c in ipairs(cases) do
      assert.has_error(function() agent.AgentCacheInvalidator(c[1]) end, c[2])
    end
    assert.has_error(function() agent.AgentCacheInvalidator{ resource = "x" }("f") end,
      "agent.AgentCacheInvalidator: the decorated value must be a function, got string")
  end)
end)

describe("agent.AgentCache with remote_cache", function()
  -- A second level shared by two tools, as two processes would share Redis.
  local Shared = cache.RemoteCacheBackend:extend()
  function Shared:get(key) return self.data[key] end
  function Shared:set(key, bytes) self.data[key] = bytes end
  function Shared:delete(key) self.data[key] = nil end

  it("serves the same tool in another process from the shared level, and indexes what it brings", in_run(function()
    local remote = Shared{ data = {} }
    local res = fresh()
    local load = function(k) return { k = k } end
    -- two tools of one name: the same tool, as two processes define it
    local a, sa = read_tool({ resource = res, remote_cache = remote, name = "lookup" }, load)
    local b, sb = read_tool({ resource = res, remote_cache = remote, name = "lookup" }, load)
    assert.same({ k = "k" }, a("k"))
    sleep(0) -- the write to the remote is made in the background
    assert.same({ k = "k" }, b("k"))
    assert.equal(0, sb.calls) -- a remote hit
    assert.equal(1, sa.calls)
    assert.equal(2, Index.global:count(res)) -- a's record and the one b decoded
    local put = write_tool({ resource = res })
    put()
    b("k")
    assert.equal(1, sb.calls)
  end))
end)
