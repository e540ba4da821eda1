-- Specs of loop detection: the built-in rules (repeats, depth, cycle),
-- on_loop (raise, warn, short_circuit), AgentLoopDetectedError, rules of
-- one's own (functions, modules, names, options, a directory of rule
-- modules on the path), a rule that raises, and the rules option's
-- checks.  The shipped example rule, examples/agent/rules/payment_budget.lua,
-- is loaded from its directory here.
local agent = require "agent_cache"
local runtime = require "cache.runtime"
local h = require "helpers"

local in_run, counted, error_of = h.in_run, h.counted, h.error_of
local Error = agent.AgentLoopDetectedError

local function read_tool(name, fn)
  local s = counted(fn or function(...) return ... end)
  return agent.AgentCache{ resource = "r-" .. name, name = name }(s.fn), s
end

local function write_tool(name, fn, resource)
  local s = counted(fn or function() return "written" end)
  return agent.AgentCacheInvalidator{ resource = resource or ("r-" .. name), name = name }(s.fn), s
end

-- Runs fn(s) in a session with opts; returns what fn returns.
local function session(opts, fn)
  return agent.AgentCacheSession(opts):run(fn)
end

-- The hook's messages while fn runs (restores the default afterwards).
local function reported(fn)
  local msgs = {}
  runtime.set_error_hook(function(err) msgs[#msgs + 1] = err end)
  local ok, err = pcall(fn)
  runtime.set_error_hook(nil)
  if not ok then error(err, 0) end
  return msgs
end

describe("loop detection", function()
  after_each(function() assert.is_nil(agent.current_session()) end)

  describe("rule repeats", function()
    it("stops the call after max_tool_repeats equal calls, hits included; the tool does not run", in_run(function()
      local search, s = read_tool("search_web")
      session({ max_tool_repeats = 3 }, function(sess)
        for _ = 1, 3 do search("q") end
        local err = error_of(search, "q")
        assert.is_true(Error.is(err))
        assert.equal("repeats", err.kind)
        assert.equal("search_web", err.tool)
        assert.equal("Tool search_web called 4 times with the same arguments (max_tool_repeats = 3)",
          err.message)
        assert.equal(sess.session_id, err.session_id)
        search("other") -- other arguments: another call
        assert.equal(1, sess:get_metrics().loop_detections)
      end)
      assert.equal(2, s.calls)
    end))

    it("counts write tools too, and calls that raised", in_run(function()
      local charge, c = write_tool("charge", function() error("declined", 0) end)
      session({ max_tool_repeats = 2 }, function()
        assert.equal("declined", error_of(charge, "ORD-1", 10))
        assert.equal("declined", error_of(charge, "ORD-1", 10))
        assert.equal("repeats", error_of(charge, "ORD-1", 10).kind)
      end)
      assert.equal(2, c.calls)
    end))

    it("is off with max_tool_repeats = math.huge", in_run(function()
      local get = read_tool("get")
      session({ max_tool_repeats = math.huge, max_execution_depth = math.huge }, function(s)
        for _ = 1, 100 do get(1) end
        assert.equal(0, s:get_metrics().loop_detections)
      end)
    end))
  end)

  describe("rule depth", function()
    it("stops the call after max_execution_depth calls in the session", in_run(function()
      local get, g = read_tool("lookup")
      session({ max_execution_depth = 3 }, function()
        get(1); get(2); get(3)
        local err = error_of(get, 4)
        assert.equal("depth", err.kind)
        assert.equal("Execution depth 4 exceeds max_execution_depth = 3 (last call: lookup)", err.message)
      end)
      assert.equal(3, g.calls)
    end))

    it("counts nested tool calls", in_run(function()
      local inner = read_tool("inner")
      local outer = agent.AgentCache{ resource = "o", name = "outer" }(function(x) return inner(x) + inner(x + 1) end)
      session({ max_execution_depth = 2 }, function()
        assert.equal("depth", error_of(outer, 1).kind) -- outer, inner, then the second inner
      end)
    end))
  end)

  describe("rule cycle", function()
    it("stops A -> B -> A -> B at the fourth call", in_run(function()
      local check, c = read_tool("check_stock", function() return 10 end)
      local update, u = write_tool("update_stock", nil, "r-check_stock")
      session({ max_tool_repeats = 100 }, function()
        check("SKU-42"); update("SKU-42", -1); check("SKU-42")
        local err = error_of(update, "SKU-42", -1)
        assert.equal("cycle", err.kind)
        assert.equal("update_stock", err.tool)
        assert.equal("Cycle detected: check_stock -> update_stock", tostring(err))
      end)
      assert.equal(2, c.calls)
      assert.equal(1, u.calls)
    end))

    it("finds longer sequences, up to max_cycle_length", in_run(function()
      local a, b, c = read_tool("a"), read_tool("b"), read_tool("c")
      session({ max_tool_repeats = 100 }, function()
        a(); b(); c(); a(); b()
        assert.equal("Cycle detected: a -> b -> c", error_of(c).message)
      end)
      session({ max_tool_repeats = 100, max_cycle_length = 2 }, function(s)
        a(); b(); c(); a(); b(); c()
        assert.equal(0, s:get_metrics().loop_detections)
      end)
    end))

    it("compares arguments: the same tools with other arguments are no cycle", in_run(function()
      local get_cart = read_tool("get_cart")
      local add = write_tool("add_to_cart", nil, "r-get_cart")
      session({ max_tool_repeats = 100 }, function(s)
        get_cart("u1"); add("u1", "laptop"); get_cart("u1"); add("u1", "mouse")
        assert.equal(0, s:get_metrics().loop_detections)
      end)
    end))

    it("leaves one call repeated to the repeats rule", in_run(function()
      local get = read_tool("get")
      session({ max_tool_repeats = 10 }, function(s)
        for _ = 1, 10 do get(1) end
        assert.equal(0, s:get_metrics().loop_detections)
        assert.equal("repeats", error_of(get, 1).kind)
      end)
    end))

    it("sees a sequence that has a call twice (A -> B -> A, twice)", in_run(function()
      local a, b = read_tool("a"), read_tool("b")
      session({ max_tool_repeats = 100 }, function()
        a(); b(); a(); a(); b()
        assert.equal("Cycle detected: a -> b -> a", error_of(a).message)
      end)
    end))
  end)

  describe("on_loop", function()
    it('"raise" (the default): an AgentLoopDetectedError, a table with kind, tool, message', in_run(function()
      local get, g = read_tool("get")
      session({ max_tool_repeats = 0 }, function()
        local ok, err = pcall(get, 1)
        assert.is_false(ok)
        assert.equal("table", type(err))
        assert.equal(Error, getmetatable(err))
        assert.equal(err.message, tostring(err))
        assert.is_false(Error.is("Tool get called"))
      end)
      assert.equal(0, g.calls)
    end))

    it('"warn": the warning goes to the error hook and the call proceeds', in_run(function()
      local get, g = read_tool("get")
      local msgs = reported(function()
        session({ max_tool_repeats = 1, on_loop = "warn" }, function(s)
          assert.equal(1, get(1))
          assert.equal(1, get(1))
          assert.equal(1, s:get_metrics().loop_detections)
          assert.equal(1, s:get_metrics().hits)
        end)
      end)
      assert.equal(1, g.calls)
      assert.equal(1, #msgs)
      assert.matches('^agent_cache warning: Tool get called 2 times with the same arguments %(max_tool_repeats = 1%) %(session agent%-session%-%d+, on_loop = "warn": the call goes on%)$', msgs[1])
    end))

    it('"short_circuit": the last results this session got for the call, the tool not run', in_run(function()
      local n = 0
      local search, g = read_tool("search", function(q) n = n + 1; return q .. n, "second" end)
      session({ max_tool_repeats = 1, on_loop = "short_circuit" }, function(s)
        assert.same({ "q1", "second" }, { search("q") })
        search:cache_clear()
        assert.same({ "q1", "second" }, { search("q") }) -- stopped: the last results, not a new run
        assert.equal(1, s:get_metrics().loop_detections)
      end)
      assert.equal(1, g.calls)
    end))

    it('"short_circuit" returns nil, err when the session has no results for the call', in_run(function()
      local charge, c = write_tool("charge", function() error("declined", 0) end)
      session({ max_tool_repeats = 1, on_loop = "short_circuit" }, function()
        assert.equal("declined", error_of(charge, "ORD-1"))
        local v, err = charge("ORD-1")
        assert.is_nil(v)
        assert.is_true(Error.is(err))
        assert.equal("repeats", err.kind)
      end)
      assert.equal(1, c.calls)
    end))

    it('"short_circuit" gives a write tool its last results too', in_run(function()
      local put, p = write_tool("put", function(x) return "ok " .. x end)
      session({ max_tool_repeats = 1, on_loop = "short_circuit" }, function()
        assert.equal("ok 1", put(1))
        assert.equal("ok 1", put(1))
      end)
      assert.equal(1, p.calls)
    end))
  end)

  it("loop_detection = false turns every rule off", in_run(function()
    local get = read_tool("get")
    session({ loop_detection = false, max_tool_repeats = 0, max_execution_depth = 0,
              rules = { function() return "never asked" end } }, function(s)
      for _ = 1, 10 do get(1) end
      assert.equal(0, s:get_metrics().loop_detections)
      assert.equal(9, s:get_metrics().hits)
    end)
  end))

  describe("rules of one's own", function()
    it("a function gets the call, the history and the arguments; its verdict stops the call", in_run(function()
      local seen = {}
      local rule = function(call, history, ...)
        seen[#seen + 1] = { call.tool, call.kind, call.resource, history:count(), select("#", ...), ... }
        if (...) == "forbidden" then return "Forbidden argument" end
      end
      local get, g = read_tool("get")
      local put = write_tool("put")
      session({ rules = { rule } }, function()
        get("a", 2); put("b")
        local err = error_of(get, "forbidden")
        assert.equal("opts.rules[1]", err.kind) -- a function's verdicts are named after its place
        assert.equal("Forbidden argument", err.message)
      end)
      assert.same({ { "get", "read", "r-get", 1, 2, "a", 2 }, { "put", "write", "r-put", 2, 1, "b" },
                    { "get", "read", "r-get", 3, 1, "forbidden" } }, seen)
      assert.equal(1, g.calls)
    end))

    it("a rule module is made once per session, with the rule's options; a table verdict names its kind", in_run(function()
      local made = 0
      local quota = { name = "quota" }
      function quota.new(s, opts)
        made = made + 1
        local n = 0
        return function()
          n = n + 1
          if n > opts.max then return { kind = "quota", message = ("quota of %d calls used up"):format(opts.max) } end
        end
      end
      local get = read_tool("get")
      for _ = 1, 2 do
        session({ rules = { { name = "quota", new = function(s) return quota.new(s, { max = 2 }) end } } },
          function()
            get(1); get(2)
            local err = error_of(get, 3)
            assert.equal("quota", err.kind)
            assert.equal("quota of 2 calls used up", err.message)
          end)
      end
      assert.equal(2, made) -- per session: the second session had a quota of its own
    end))

    it("a rule module's new may return nil: the rule is off in that session", in_run(function()
      local get = read_tool("get")
      local rule = { name = "off", new = function() return nil end }
      session({ rules = { rule } }, function(s)
        get(1)
        assert.equal(3, #s.rules) -- the built-in three
      end)
    end))

    it("finds rule modules by name on package.path: a directory of rules", in_run(function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir -p " .. dir))
      local f = assert(io.open(dir .. "/no_deletes.lua", "w"))
      f:write([[
        local _M = { name = "no_deletes" }
        function _M.new(session, opts)
          return function(call)
            if call.tool:match(opts.pattern or "^delete") then
              return "Deleting is not allowed in session " .. session.session_id
            end
          end
        end
        return _M
      ]])
      f:close()
      local saved = package.path
      package.path = dir .. "/?.lua;" .. package.path -- what acache --load DIR does
      local ok, err = pcall(function()
        local delete, d = write_tool("delete_user")
        local remove, r = write_tool("remove_user")
        session({ session_id = "S", rules = { "no_deletes" } }, function()
          local e = error_of(delete, 1)
          assert.equal("no_deletes", e.kind)
          assert.equal("Deleting is not allowed in session S", e.message)
        end)
        session({ rules = { no_deletes = { pattern = "^remove" } } }, function()
          delete(1)
          assert.equal("no_deletes", error_of(remove, 1).kind)
        end)
        assert.equal(1, d.calls)
        assert.equal(0, r.calls)
      end)
      package.path = saved
      package.loaded.no_deletes = nil
      os.execute("rm -rf " .. dir)
      if not ok then error(err, 0) end
    end))

    it("the shipped example rule, payment_budget, loaded from examples/agent/rules", in_run(function()
      local saved = package.path
      package.path = "examples/agent/rules/?.lua;" .. package.path
      local ok, err = pcall(function()
        local charge, c = write_tool("charge_payment", function(order, amount) return amount end, "payment")
        local lookup = read_tool("lookup") -- another resource: not counted
        session({ rules = { payment_budget = { max_calls = 2 } } }, function()
          charge("ORD-1", 10); lookup(1); charge("ORD-2", 10)
          local e = error_of(charge, "ORD-3", 10)
          assert.equal("payment_budget", e.kind)
          assert.matches("^Payment budget exceeded: 3 payment calls in session agent%-session%-%d+ %(max_calls = 2%)$", e.message)
        end)
        session({ rules = { payment_budget = { max_calls = 10, max_amount = 100 } } }, function()
          charge("ORD-1", 60)
          local e = error_of(charge, "ORD-2", 60)
          assert.equal("payment_budget", e.kind)
          assert.matches("^Payment budget exceeded: 120%.00 charged", e.message)
        end)
        assert.equal(3, c.calls)
      end)
      package.path = saved
      if not ok then error(err, 0) end
    end))

    it("a rule that raises is reported to the error hook and the session goes on", in_run(function()
      local get, g = read_tool("get")
      local after = 0
      local msgs = reported(function()
        session({ session_id = "S", max_tool_repeats = 2,
                  rules = { function() error("rule bug", 0) end, function() after = after + 1 end } },
          function(s)
            get(1); get(1)
            assert.equal("repeats", error_of(get, 1).kind) -- the built-in rules still work
            assert.equal(3, s:get_metrics().calls)
          end)
      end)
      assert.equal(3, after) -- the rules after it still ran
      assert.equal(1, g.calls)
      assert.equal(3, #msgs)
      assert.equal("agent_cache: rule opts.rules[1] raised in session S (the call goes on): rule bug", msgs[1])
    end))

    it("bad rules raise, naming the option", function()
      local cases = {
        { { 42 }, "opts.rules[1] must be a function, a rule module (a table with new) or the name of one, got 42" },
        { { {} }, "opts.rules[1] must be a function, a rule module (a table with new) or the name of one, got table" },
        { { "no_such_rule" }, "opts.rules[1]: no rule module 'no_such_rule' (looked for "
          .. "agent_cache.rules.no_such_rule and no_such_rule on package.path; a directory of rules "
          .. "goes there with acache --load DIR)" },
        { { cycle = 3 }, "opts.rules.cycle must be the rule's options (a table) or true, got 3" },
        { { [true] = {} }, "opts.rules: a key must be a rule module's name, got true" },
        { { { new = 1 } }, "opts.rules[1]: the rule module's new must be a function, got number" },
        { { { name = "x", new = function() return 1 end } },
          "opts.rules[1]: rule x: new() must return a function or nil, got number" },
      }
      for _, c in ipairs(cases) do
        assert.has_error(function() agent.AgentCacheSession{ rules = c[1] } end, c[2])
      end
      -- checked with loop detection off too
      assert.has_error(function() agent.AgentCacheSession{ loop_detection = false, rules = { 1 } } end,
        "opts.rules[1] must be a function, a rule module (a table with new) or the name of one, got 1")
    end)

    it("the built-in rules are modules of the same interface", function()
      for _, name in ipairs{ "repeats", "depth", "cycle" } do
        local m = require("agent_cache.rules." .. name)
        assert.equal(name, m.name)
        assert.is_function(m.new)
      end
      local s <close> = agent.AgentCacheSession{ rules = { "cycle" } } -- by name, like any rule
      assert.equal(4, #s.rules)
    end)
  end)
end)
