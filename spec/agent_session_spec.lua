-- Specs of agent.AgentCacheSession: its lifetime (<close>, :run, errors),
-- the current session of a coroutine and of the tasks it spawns,
-- isolation of session-scoped entries, metrics per session and in
-- agent.get_metrics(), the bounded history, and its options.
--
-- Concurrency is ordered with events and sleep(0), never with timing;
-- every test closes the sessions it opens.
local agent = require "agent_cache"
local core = require "cache.core"
local runtime = require "cache.runtime"
local h = require "helpers"

local spawn, sleep, event, gather = runtime.spawn, runtime.sleep, runtime.event, runtime.gather
local in_run, counted, error_of = h.in_run, h.counted, h.error_of

local function read_tool(opts, fn)
  local s = counted(fn or function(...) return ... end)
  return agent.AgentCache(opts)(s.fn), s
end

local function id_of() local s = agent.current_session(); return s and s.session_id end

describe("agent.AgentCacheSession", function()
  after_each(function() assert.is_nil(agent.current_session()) end)

  describe("its lifetime", function()
    it("is current from its creation until it ends, and restores the one before", in_run(function()
      assert.is_nil(agent.current_session())
      do
        local outer <close> = agent.AgentCacheSession{ session_id = "outer" }
        assert.equal(outer, agent.current_session())
        do
          local inner <close> = agent.AgentCacheSession{ session_id = "inner" }
          assert.equal("inner", id_of())
        end
        assert.equal("outer", id_of())
      end
      assert.is_nil(agent.current_session())
    end))

    it("ends on leaving its <close> scope, also by an error, and clears its session entries", in_run(function()
      local get, g = read_tool({ resource = "ticket", scope = "session" })
      local ok = pcall(function()
        local s <close> = agent.AgentCacheSession{ session_id = "agent-A" }
        get("T-100"); get("T-100")
        assert.equal(1, g.calls)
        error("the agent crashed")
      end)
      assert.is_false(ok)
      assert.equal(0, get:get_metrics().size) -- cleared
      assert.is_nil(agent.current_session())
      agent.AgentCacheSession{ session_id = "agent-A" }:run(function()
        get("T-100") -- the same id again: a new session, nothing cached
      end)
      assert.equal(2, g.calls)
    end))

    it(":run(fn) gives fn the session, returns its results and ends the session", in_run(function()
      local s = agent.AgentCacheSession{ session_id = "r" }
      local a, b = s:run(function(sess, x)
        assert.equal(s, sess)
        assert.equal(s, agent.current_session())
        return x, "done"
      end, 1)
      assert.equal(1, a)
      assert.equal("done", b)
      assert.is_true(s:is_closed())
      assert.equal("AgentCacheSession r (ended)", tostring(s))
      assert.equal("session:run(): the session has ended", error_of(s.run, s, function() end))
      assert.equal("session:run(fn): fn must be a function, got nil",
        error_of(agent.AgentCacheSession{}.run, agent.AgentCacheSession{}))
      -- the two sessions above are still open: end them
      agent.current_session():close()
      agent.current_session():close()
    end))

    it(":run(fn) ends the session when fn raises, and raises fn's error unchanged", in_run(function()
      local err = { reason = "tool failed" }
      local s = agent.AgentCacheSession{}
      assert.equal(err, error_of(s.run, s, function() error(err) end))
      assert.is_true(s:is_closed())
    end))

    it("close() is idempotent", in_run(function()
      local s = agent.AgentCacheSession{}
      s:close(); s:close()
      assert.is_true(s:is_closed())
    end))

    it("gives unique session ids when none is given", function()
      local seen = {}
      for _ = 1, 100 do
        local s <close> = agent.AgentCacheSession{}
        assert.is_nil(seen[s.session_id])
        seen[s.session_id] = true
      end
    end)

    it("works outside tasks too (the main thread's session goes into runtime.run)", function()
      local s <close> = agent.AgentCacheSession{ session_id = "main" }
      assert.equal("main", id_of())
      assert.equal("main", runtime.run(id_of))
    end)

    it("does not store a session entry whose load finishes after the session ended", in_run(function()
      local go = event()
      local get, g = read_tool({ resource = "t", scope = "session" }, function() go:wait(); return 1 end)
      local s = agent.AgentCacheSession{}
      local r = h.go(get, "k") -- in the session: spawned while it is current
      sleep(0)
      s:close()
      go:set()
      while not r.done do sleep(0) end
      assert.equal(1, r[1])
      assert.equal(0, get:get_metrics().size)
      assert.equal(1, g.calls)
    end))
  end)

  describe("sessions and coroutines", function()
    it("a task spawned in a session is in it; one spawned before is not", in_run(function()
      local before = h.go(function() event():wait() end) -- never ends; not in a session
      local seen = {}
      local done = event()
      agent.AgentCacheSession{ session_id = "A" }:run(function()
        spawn(function()
          seen.child = id_of()
          spawn(function() seen.grandchild = id_of(); done:set() end)
        end)
        done:wait()
        local r = gather(id_of, id_of)
        seen.gathered = { r[1][1], r[2][1] }
      end)
      assert.same({ child = "A", grandchild = "A", gathered = { "A", "A" } }, seen)
      assert.is_false(before.done)
    end))

    it("a task keeps the session it was spawned in when its spawner opens another", in_run(function()
      local go, done, seen = event(), event(), nil
      agent.AgentCacheSession{ session_id = "A" }:run(function()
        spawn(function() go:wait(); seen = id_of(); done:set() end)
        agent.AgentCacheSession{ session_id = "B" }:run(function()
          go:set()
          done:wait()
        end)
      end)
      assert.equal("A", seen)
    end))

    it("a task that outlives its session is back in the session that was current before it", in_run(function()
      local go, done, seen = event(), event(), nil
      agent.AgentCacheSession{ session_id = "outer" }:run(function()
        agent.AgentCacheSession{ session_id = "inner" }:run(function()
          spawn(function() go:wait(); seen = id_of(); done:set() end)
        end)
        go:set()
        done:wait()
      end)
      assert.equal("outer", seen)
    end))

    it("a tool's function runs in the session of the call that started it", in_run(function()
      local inner = read_tool({ resource = "inner", name = "inner" })
      local seen
      local outer = agent.AgentCache{ resource = "outer", name = "outer" }(function(x)
        sleep(0) -- it goes on in a thread of its own
        seen = id_of()
        return inner(x) -- a nested tool call, recorded in the session
      end)
      agent.AgentCacheSession{ session_id = "S" }:run(function(s)
        outer(1)
        assert.equal("S", seen)
        assert.equal(2, s:get_metrics().calls)
        assert.equal(2, s.history:count())
      end)
      assert.is_nil(core.runtime.context()) -- the pooled thread kept no session
    end))

    it("two sessions in two coroutines never see each other's entries or history", in_run(function()
      local get, g = read_tool({ resource = "ticket", scope = "session" }, function(id)
        sleep(0)
        return id_of() .. ":" .. id
      end)
      local step_a, step_b = event(), event()
      local r = gather(
        function()
          local s <close> = agent.AgentCacheSession{ session_id = "A", max_tool_repeats = 2 }
          local first = get("T-1")
          step_b:set()
          step_a:wait()
          return first, get("T-1"), s:get_metrics(), s.history:count()
        end,
        function()
          local s <close> = agent.AgentCacheSession{ session_id = "B", max_tool_repeats = 2 }
          step_b:wait()
          local v = get("T-1")
          get("T-1")
          step_a:set()
          return v, s:get_metrics(), s.history:count()
        end)
      assert.equal("A:T-1", r[1][1])
      assert.equal("A:T-1", r[1][2]) -- A's own entry, a hit
      assert.equal("B:T-1", r[2][1]) -- B loaded its own
      assert.equal(2, g.calls)
      local ma, mb = r[1][3], r[2][2]
      assert.same({ 1, 1 }, { ma.hits, ma.misses })
      assert.same({ 1, 1 }, { mb.hits, mb.misses })
      assert.equal(2, r[1][4]) -- histories are apart: neither reached max_tool_repeats = 2
      assert.equal(2, r[2][3])
    end))
  end)

  describe("metrics", function()
    it("s:get_metrics() counts hits, misses, invalidations and loop detections", in_run(function()
      local get = read_tool({ resource = "m" })
      local put = agent.AgentCacheInvalidator{ resource = "m" }(function() end)
      agent.AgentCacheSession{ session_id = "metrics", max_tool_repeats = 3, on_loop = "short_circuit" }
        :run(function(s)
          get(1); get(1); get(2); put() -- a hit, two misses, an invalidation
          get(1)                        -- a miss
          get(1); get(1)                -- the 4th and 5th get(1): stopped, neither hit nor miss
          assert.same({ session_id = "metrics", calls = 7, hits = 1, misses = 3, invalidations = 1,
                        loop_detections = 2, hit_rate = 0.25 }, s:get_metrics())
        end)
    end))

    it("agent.get_metrics() sums every session, ended ones included", in_run(function()
      local get = read_tool({ resource = "agg" })
      local before = agent.get_metrics()
      agent.AgentCacheSession{}:run(function() get(1); get(1) end)
      local open = agent.AgentCacheSession{}
      get(2)
      local m = agent.get_metrics()
      assert.equal(3, m.calls - before.calls)
      assert.equal(1, m.hits - before.hits)
      assert.equal(2, m.misses - before.misses)
      assert.equal(2, m.sessions - before.sessions)
      assert.equal(1, m.active_sessions - before.active_sessions)
      open:close()
      assert.equal(before.active_sessions, agent.get_metrics().active_sessions)
      assert.equal(3, agent.get_metrics().calls - before.calls)
      assert.is_true(m.hit_rate >= 0 and m.hit_rate <= 1)
    end))

    it("a session dropped without being ended still counts", function()
      local get = read_tool({ resource = "dropped" })
      local before = agent.get_metrics()
      runtime.run(function()
        agent.AgentCacheSession{} -- the run's task ends with it current; nobody closes it
        get(1)
      end)
      collectgarbage(); collectgarbage()
      local m = agent.get_metrics()
      assert.equal(1, m.calls - before.calls)
      assert.equal(before.active_sessions, m.active_sessions)
    end)
  end)

  describe("its history", function()
    it("stays bounded: a window of history_size calls plus counters", in_run(function()
      local put = agent.AgentCacheInvalidator{ resource = "log" }(function() end)
      agent.AgentCacheSession{ history_size = 64, max_tool_repeats = math.huge,
                               max_execution_depth = math.huge }:run(function(s)
        local function keys(t) local n = 0 for _ in pairs(t) do n = n + 1 end return n end
        collectgarbage(); collectgarbage()
        local heap
        for i = 1, 100000 do
          put(i)
          if i == 10000 then collectgarbage(); collectgarbage(); heap = collectgarbage("count") end
        end
        local hist = s.history
        assert.equal(100000, hist:count())
        assert.equal(64, hist:size())
        assert.equal(64, #hist.keys)
        assert.is_true(keys(hist.counts) <= 5 * 64)
        collectgarbage(); collectgarbage()
        assert.is_true(collectgarbage("count") - heap < 64, "the heap grew by "
          .. (collectgarbage("count") - heap) .. " KB")
        local k, tool = hist:at(1)
        assert.is_string(k)
        assert.equal(put.name, tool)
        assert.is_nil(hist:at(65))
      end)
    end))

    it("counts repeats within the window", in_run(function()
      local get = read_tool({ resource = "w" })
      agent.AgentCacheSession{ history_size = 4, max_tool_repeats = 1 }:run(function(s)
        get("a"); get("b"); get("c"); get("d"); get("e")
        get("a") -- its first call left the window: not a repeat
        assert.equal(0, s:get_metrics().loop_detections)
        assert.equal(1, s.history:repeats(s.history:at(1)))
        assert.is_true(agent.AgentLoopDetectedError.is(h.error_of(get, "a")))
      end)
    end))
  end)

  describe("options", function()
    it("are checked, with messages naming them", function()
      local cases = {
        { { sesion_id = "x" }, "agent.AgentCacheSession: unknown option 'sesion_id'" },
        { { session_id = 7 }, "opts.session_id must be a non-empty string, got 7" },
        { { loop_detection = "yes" }, 'opts.loop_detection must be a boolean, got string "yes"' },
        { { max_tool_repeats = -1 },
          "opts.max_tool_repeats must be a non-negative integer (or math.huge: no limit), got -1" },
        { { max_execution_depth = 2.5 },
          "opts.max_execution_depth must be a non-negative integer (or math.huge: no limit), got 2.5" },
        { { max_cycle_length = 1 }, "opts.max_cycle_length must be an integer >= 2, got 1" },
        { { history_size = 0 }, "opts.history_size must be an integer >= 1, got 0" },
        { { on_loop = "stop" },
          'opts.on_loop must be "raise", "warn", "short_circuit", got string "stop"' },
        { { rules = "cycle" },
          'opts.rules must be a table (a list of rules, or rule names mapped to their options), got string "cycle"' },
        { 5, "agent.AgentCacheSession: opts must be a table, got number" },
      }
      for _, c in ipairs(cases) do
        assert.has_error(function() agent.AgentCacheSession(c[1]) end, c[2])
        assert.is_nil(agent.current_session()) -- a refused session never became current
      end
    end)

    it("report the caller's line", function()
      local ok, err = pcall(function() agent.AgentCacheSession{ on_loop = "x" } end)
      assert.is_false(ok)
      assert.matches("agent_session_spec%.lua:%d+: opts%.on_loop must be", err)
    end)

    it("take their defaults from the seed: 5 repeats, depth 50, raise", function()
      local s <close> = agent.AgentCacheSession{}
      assert.same({ 5, 50, 10, 256, "raise", true },
        { s.max_tool_repeats, s.max_execution_depth, s.max_cycle_length, s.history_size,
          s.on_loop, s.loop_detection })
    end)
  end)
end)

describe("the runtime's task context (core.runtime.context)", function()
  local rt = core.runtime
  it("is inherited by spawned tasks, copied when they start", in_run(function()
    rt.set_context("parent")
    local done, seen = event(), {}
    spawn(function()
      seen[1] = rt.context()
      rt.set_context("child")
      seen[2] = rt.context()
      done:set()
    end)
    rt.set_context("later")
    done:wait()
    assert.same({ "parent", "child" }, seen)
    assert.equal("later", rt.context())
    rt.set_context(nil)
    assert.is_nil(rt.context())
  end))
end)
