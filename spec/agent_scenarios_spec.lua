-- The five use cases of the seed's "Agent Cache" section, with fake APIs
-- that count their calls: the exact calls each scenario makes, the
-- metrics, and the kind of error that stops it.  examples/agent/ runs the
-- same scenarios as scripts (CTest checks what they print).
local agent = require "agent_cache"
local runtime = require "cache.runtime"
local h = require "helpers"

local in_run, error_of = h.in_run, h.error_of
local Error = agent.AgentLoopDetectedError

-- An API whose methods count their calls: api.calls[name].
local function fake_api(methods)
  local api = { calls = {} }
  for name, fn in pairs(methods) do
    api.calls[name] = 0
    api[name] = function(...)
      api.calls[name] = api.calls[name] + 1
      runtime.sleep(0) -- a round trip: the tool waits
      return fn(...)
    end
  end
  return api
end

describe("agent_cache scenarios", function()
  after_each(function() assert.is_nil(agent.current_session()) end)

  it("1. shopping agent: reads cached, each write invalidates the cart", in_run(function()
    local carts = { user_1 = {} }
    local shop_api = fake_api{
      get_cart = function(u) return { items = #carts[u] } end,
      get_product = function(id) return { id = id, price = 999 } end,
      add_to_cart = function(u, p) table.insert(carts[u], p) end,
      checkout = function(u) carts[u] = {}; return "ordered" end,
    }
    local get_cart = agent.AgentCache{ resource = "cart", scope = "global", ttl = 120 }(shop_api.get_cart)
    local get_product = agent.AgentCache{ resource = "product", scope = "global", ttl = 300 }(shop_api.get_product)
    local add_to_cart = agent.AgentCacheInvalidator{ resource = "cart", scope = "global" }(shop_api.add_to_cart)
    local checkout = agent.AgentCacheInvalidator{ resource = "cart", scope = "global" }(shop_api.checkout)

    agent.AgentCacheSession{ loop_detection = false }:run(function(s)
      assert.equal(0, get_cart("user_1").items)       -- fetched
      assert.equal(0, get_cart("user_1").items)       -- a hit
      assert.equal(999, get_product("laptop").price)  -- fetched
      add_to_cart("user_1", "laptop")                 -- invalidates the cart
      assert.equal(1, get_cart("user_1").items)       -- re-fetched: the right total
      get_product("laptop")                           -- a hit
      assert.equal("ordered", checkout("user_1"))     -- invalidates the cart
      assert.equal(0, get_cart("user_1").items)       -- re-fetched
      assert.same({ get_cart = 3, get_product = 1, add_to_cart = 1, checkout = 1 }, shop_api.calls)
      local m = s:get_metrics()
      assert.same({ 2, 4, 2, 0 }, { m.hits, m.misses, m.invalidations, m.loop_detections })
    end)
  end))

  it("2. support agents: session-scoped entries, never shared between sessions", in_run(function()
    local status = { ["T-100"] = "open" }
    local support_api = fake_api{
      get_ticket = function(id) return { id = id, status = status[id] } end,
      update_ticket = function(id, st) status[id] = st end,
    }
    local get_ticket = agent.AgentCache{ resource = "ticket", scope = "session" }(support_api.get_ticket)
    local update_ticket = agent.AgentCacheInvalidator{ resource = "ticket", scope = "session" }(support_api.update_ticket)

    agent.AgentCacheSession{ session_id = "agent-A" }:run(function(s)
      assert.equal("open", get_ticket("T-100").status)          -- fetched
      assert.equal("open", get_ticket("T-100").status)          -- a hit
      update_ticket("T-100", "in_progress")                     -- invalidates the session's tickets
      assert.equal("in_progress", get_ticket("T-100").status)   -- re-fetched
      local m = s:get_metrics()
      assert.same({ 1, 2, 1 }, { m.hits, m.misses, m.invalidations })
    end)
    assert.equal(2, support_api.calls.get_ticket)
    agent.AgentCacheSession{ session_id = "agent-B" }:run(function(s)
      assert.equal("in_progress", get_ticket("T-100").status)   -- a fresh fetch
      assert.equal(1, s:get_metrics().misses)
    end)
    assert.same({ get_ticket = 3, update_ticket = 1 }, support_api.calls)

    -- Both agents at once, in two coroutines: each only ever hits its own entries.
    local r = runtime.gather(
      function()
        local s <close> = agent.AgentCacheSession{ session_id = "agent-A" }
        get_ticket("T-100"); runtime.sleep(0); get_ticket("T-100")
        return s:get_metrics()
      end,
      function()
        local s <close> = agent.AgentCacheSession{ session_id = "agent-B" }
        get_ticket("T-100"); update_ticket("T-100", "closed"); get_ticket("T-100")
        return s:get_metrics()
      end)
    assert.same({ 1, 1 }, { r[1][1].hits, r[1][1].misses })
    assert.same({ 0, 2, 1 }, { r[2][1].hits, r[2][1].misses, r[2][1].invalidations })
    assert.same({ get_ticket = 6, update_ticket = 2 }, support_api.calls)
  end))

  it("3. research agent: the 4th identical search raises a repeats error", in_run(function()
    local search_api = fake_api{ search = function(q) return { q, "https://a", "https://b" } end }
    local http = fake_api{ get = function(url) return "<html>" .. url end }
    local search_web = agent.AgentCache{ resource = "search", scope = "global", ttl = 600 }(search_api.search)
    local fetch_page = agent.AgentCache{ resource = "page", scope = "global", ttl = 600 }(http.get)

    agent.AgentCacheSession{ max_tool_repeats = 3, max_execution_depth = 20, on_loop = "raise" }:run(function(s)
      local results = search_web("async python caching")   -- fetched
      results = search_web("async python caching")         -- a hit
      fetch_page(results[2]); fetch_page(results[3])
      search_web("async python caching")                   -- the 3rd: allowed
      local err = error_of(search_web, "async python caching")
      assert.is_true(Error.is(err))
      assert.equal("repeats", err.kind)
      local m = s:get_metrics()
      assert.same({ 6, 2, 3, 1 }, { m.calls, m.hits, m.misses, m.loop_detections })
    end)
    assert.same({ search = 1 }, search_api.calls)
    assert.same({ get = 2 }, http.calls)
  end))

  it("3b. research agent: past max_execution_depth the session is stopped (depth)", in_run(function()
    local search_api = fake_api{ search = function(q) return q end }
    local search_web = agent.AgentCache{ resource = "search", ttl = 600 }(search_api.search)
    agent.AgentCacheSession{ max_tool_repeats = 3, max_execution_depth = 20 }:run(function()
      for i = 1, 20 do search_web("query " .. i) end
      assert.equal("depth", error_of(search_web, "query 21").kind)
    end)
    assert.equal(20, search_api.calls.search)
  end))

  it("4. inventory agent: check -> update -> check -> update raises a cycle error", in_run(function()
    local stock = { ["SKU-42"] = 10 }
    local inventory_api = fake_api{
      get_stock = function(id) return stock[id] end,
      adjust = function(id, d) stock[id] = stock[id] + d; return stock[id] end,
    }
    local check_stock = agent.AgentCache{ resource = "stock", scope = "global", name = "check_stock" }(inventory_api.get_stock)
    local update_stock = agent.AgentCacheInvalidator{ resource = "stock", scope = "global", name = "update_stock" }(inventory_api.adjust)

    agent.AgentCacheSession{ max_tool_repeats = 100, on_loop = "raise" }:run(function(s)
      assert.equal(10, check_stock("SKU-42"))
      update_stock("SKU-42", -1)
      assert.equal(9, check_stock("SKU-42"))  -- re-fetched after the update
      local err = error_of(update_stock, "SKU-42", -1)
      assert.equal("cycle", err.kind)
      assert.equal("update_stock", err.tool)
      assert.equal("Cycle detected: check_stock -> update_stock", err.message)
      assert.equal(1, s:get_metrics().loop_detections)
    end)
    assert.same({ get_stock = 2, adjust = 1 }, inventory_api.calls)
    assert.equal(9, stock["SKU-42"])
  end))

  it("5. orchestrator: a retry storm on a failing payment API is stopped at the 4th attempt", in_run(function()
    local PaymentError = {}
    local payment_api = fake_api{ charge = function() error(setmetatable({}, PaymentError)) end }
    local charge_payment = agent.AgentCacheInvalidator{ resource = "payment", scope = "global" }(payment_api.charge)

    local attempts, stopped = 0, nil
    agent.AgentCacheSession{ max_tool_repeats = 3, on_loop = "raise" }:run(function(s)
      for _ = 1, 10 do
        attempts = attempts + 1
        local ok, err = pcall(charge_payment, "ORD-1", 99.99)
        if ok then break end
        if getmetatable(err) ~= PaymentError then stopped = err break end -- retry payment errors only
      end
      local m = s:get_metrics()
      assert.same({ 4, 3, 1 }, { m.calls, m.invalidations, m.loop_detections })
    end)
    assert.equal(4, attempts)
    assert.is_true(Error.is(stopped))
    assert.equal("repeats", stopped.kind)
    assert.equal(3, payment_api.calls.charge)
  end))
end)
