-- Specs of the keys of decorated functions' arguments, as a user sees them
-- (equal arguments share an entry, different ones do not, some arguments
-- are refused with a clear error), through cache.AsyncLRU.  The keys are
-- built by the walker over Lua values (bindings/lua_walk.c): its shapes
-- (arrays, maps), key order, cycle and depth limits and identity keys.
local cache = require "cache"
local runtime = require "cache.runtime"
local h = require "helpers"

local in_run, counted, spawn_all = h.in_run, h.counted, h.spawn_all

local MAX_DEPTH = 64 -- LWALK_MAX_DEPTH in bindings/lwalk.h

local function lru(fn)
  local s = counted(fn or function(...) return ... end)
  return cache.AsyncLRU{ maxsize = 1000 }(s.fn), s
end

-- A table nested `levels` deep: { { ... { leaf } } }, the outer one level 1.
local function nested(levels, leaf)
  local t = { leaf }
  for _ = 2, levels do t = { t } end
  return t
end

-- A map of n string keys (keys "k1".."kn" with values v(i)), filled in
-- ascending or descending order (a different hash order for large n).
local function map_of(n, descending, v)
  v = v or function(i) return i end
  local t = {}
  if descending then
    for i = n, 1, -1 do t["k" .. i] = v(i) end
  else
    for i = 1, n do t["k" .. i] = v(i) end
  end
  return t
end

describe("argument keys of decorated functions", function()
  describe("cycles", function()
    it("raise 'cyclic table argument', and the function keeps working", in_run(function()
      local f, s = lru()
      local t = { name = "loop" }
      t.self = t
      assert.has_error(function() f(t) end, "cyclic table argument")
      assert.has_error(function() f:invalidate_cache(t) end, "cyclic table argument")
      assert.has_error(function() f:bypass(t) end, "cyclic table argument")
      assert.equal(1, s.calls) -- bypass called the function before keying its result
      assert.equal("x", f("x"))
      assert.equal("x", f("x"))
      assert.equal(2, s.calls)
      t.self = nil
      assert.equal(t, f(t)) -- the same table, once acyclic, is a fine argument
      assert.equal(3, s.calls)
    end))

    it("are found deep inside, in long keys and through table keys", in_run(function()
      local f, s = lru()
      local big = map_of(100)
      big.inner = { { { big } } }
      assert.has_error(function() f(big) end, "cyclic table argument")
      local k = {}
      k[k] = true -- a table that is its own key
      assert.has_error(function() f(k) end, "cyclic table argument")
      local parent = {}
      parent[{ parent }] = 1 -- a key that leads back to the table
      assert.has_error(function() f(1, parent) end, "cyclic table argument")
      assert.equal(0, s.calls)
      -- long keys still work afterwards (nothing was left in use)
      local a, b = map_of(100), map_of(100, true)
      assert.equal(a, f(a))
      assert.equal(a, f(b))
      assert.equal(1, s.calls)
    end))

    it("are not a table met twice side by side", in_run(function()
      local f, s = lru()
      local shared = { 1, 2 }
      local arg = { a = shared, b = shared, [shared] = shared }
      assert.equal(arg, f(arg))
      assert.equal(arg, f({ a = { 1, 2 }, b = { 1, 2 }, [{ 1, 2 }] = { 1, 2 } }))
      assert.equal(1, s.calls)
    end))
  end)

  describe("nesting", function()
    it("is allowed up to " .. MAX_DEPTH .. " levels of tables", in_run(function()
      local f, s = lru(function(t) return t end)
      local deep = nested(MAX_DEPTH, "leaf")
      assert.equal(deep, f(deep))
      assert.equal(deep, f(nested(MAX_DEPTH, "leaf"))) -- equal contents: the entry of deep
      assert.equal(1, s.calls)
    end))

    it("deeper raises 'table argument nested too deeply', and the function keeps working", in_run(function()
      local f, s = lru()
      assert.has_error(function() f(nested(MAX_DEPTH + 1)) end, "table argument nested too deeply")
      assert.has_error(function() f("a", { x = nested(MAX_DEPTH) }) end,
        "table argument nested too deeply")
      -- tables used as keys count as levels too
      assert.has_error(function() f({ [nested(MAX_DEPTH)] = true }) end,
        "table argument nested too deeply")
      assert.has_error(function() f(nested(1000)) end, "table argument nested too deeply")
      assert.equal(0, s.calls)
      assert.equal(1, f(1))
      assert.equal(1, f(1))
      assert.equal(1, s.calls)
    end))

    it("counts per argument, not over the argument list", in_run(function()
      local f, s = lru(function() return "ok" end)
      assert.equal("ok", f(nested(MAX_DEPTH), nested(MAX_DEPTH), nested(MAX_DEPTH)))
      assert.equal(1, s.calls)
    end))
  end)

  describe("key order", function()
    it("does not matter in nested tables, whatever the key types", in_run(function()
      local f, s = lru(function(t) return t end)
      local a = { 10, 20, 30, x = "y", [true] = 1, [false] = 0, [1.5] = "f", [-7] = "neg",
                  [2 ^ 63] = "big", inner = { p = { 1, 2 }, q = { r = "s", t = "u" } } }
      local b = { inner = { q = { t = "u" }, p = { 1 } } }
      b.inner.q.r = "s"
      b.inner.p[2] = 2
      b[2 ^ 63] = "big"
      b[-7] = "neg"
      b[1.5] = "f"
      b[false] = 0
      b[true] = 1
      b.x = "y"
      b[3], b[2], b[1] = 30, 20, 10
      assert.equal(a, f(a))
      assert.equal(a, f(b))
      assert.equal(1, s.calls)
    end))

    it("does not matter in maps of any size, short or long keys", in_run(function()
      local f, s = lru(function(t) return t end)
      -- 9 and 40 pairs sort off the C stack; 40 pairs and more give keys
      -- longer than the inline buffer; 5000 pairs, one longer than 64 KiB
      for _, n in ipairs({ 2, 9, 40, 300, 5000 }) do
        local up = map_of(n)
        assert.equal(up, f(up))
        assert.equal(up, f(map_of(n, true)))
      end
      assert.equal(5, s.calls)
    end))

    it("does not matter for tables used as keys: they are keyed by contents", in_run(function()
      local f, s = lru(function(t) return t end)
      local a = { [{ 1 }] = "one", [{ 2 }] = "two", [{ x = { 3 } }] = "three", [{}] = "empty" }
      local b = {}
      b[{}] = "empty"
      b[{ x = { 3 } }] = "three"
      b[{ 2 }] = "two"
      b[{ 1 }] = "one"
      assert.equal(a, f(a))
      assert.equal(a, f(b))
      assert.equal(1, s.calls)
      f({ [{ 1 }] = "two", [{ 2 }] = "one" }) -- the same keys and values, paired otherwise
      assert.equal(2, s.calls)
    end))
  end)

  describe("shapes and numbers", function()
    it("an array equals the same table built by keys; a sparse one is another table", in_run(function()
      local f, s = lru()
      f({ 1, 2, 3 })
      f({ [3] = 3, [2] = 2, [1] = 1 })
      assert.equal(1, s.calls)
      f({ 1, nil, 3 })
      f({ 1, 3 })
      f({ [0] = 1, 2, 3 })
      f({ 1, 2, 3, n = 3 })
      assert.equal(5, s.calls)
      f({}) -- the empty table is one argument, however made
      f(setmetatable({}, { __index = { 1, 2 } })) -- metatables are ignored
      assert.equal(6, s.calls)
    end))

    it("1.0 is 1, -0.0 is 0 and NaN is NaN inside tables, but 1.5 is not 1", in_run(function()
      local f, s = lru()
      f({ 1, x = 2, y = { 0 } })
      f({ 1.0, x = 2.0, y = { -0.0 } })
      assert.equal(1, s.calls)
      f({ x = 0 / 0 })
      f({ x = -(0 / 0) })
      assert.equal(2, s.calls)
      f({ 1.5 })
      f({ "1" })
      assert.equal(4, s.calls)
    end))
  end)

  describe("functions, userdata and threads inside tables", function()
    it("are keyed by identity, as values and as keys", in_run(function()
      local f, s = lru()
      local function make(n) return function() return n end end
      local fa, fb = make(1), make(1)
      f({ deep = { cb = fa } }); f({ deep = { cb = fa } })
      assert.equal(1, s.calls)
      f({ deep = { cb = fb } })
      assert.equal(2, s.calls)
      f({ [fa] = true }); f({ [fa] = true })
      assert.equal(3, s.calls)
      f({ [fb] = true })
      assert.equal(4, s.calls)
      local co = coroutine.create(fa)
      f({ io.stdout, co }); f({ io.stdout, co })
      assert.equal(5, s.calls)
      f({ io.stderr, co })
      assert.equal(6, s.calls)
    end))

    it("are kept alive with their entry, however deep", in_run(function()
      local f, s = lru(function(t) return t.inner.cb() end)
      for i = 1, 50 do f({ inner = { cb = function() return i end } }) end
      collectgarbage()
      collectgarbage()
      -- new closures cannot reuse the address of a cached one: each is a miss
      for i = 1, 50 do assert.equal(-i, f({ inner = { cb = function() return -i end } })) end
      assert.equal(100, s.calls)
    end))
  end)

  describe("long keys", function()
    it("survive a call that waits: equal callers join it, others run their own", in_run(function()
      local f, s = lru(function(t) runtime.sleep(0); return t.k1 end)
      local r = spawn_all(6, function(i) return f(map_of(300, i % 2 == 0, function(j) return j + i end)) end)
      for i = 1, 6 do assert.equal(1 + i, r[i][1]) end
      assert.equal(6, s.calls) -- six different tables
      r = spawn_all(6, function(i) return f(map_of(300, i % 2 == 0)) end)
      for i = 1, 6 do assert.equal(1, r[i][1]) end
      assert.equal(7, s.calls) -- six equal ones: one call
      assert.equal(1, f(map_of(300)))
      assert.equal(7, s.calls)
    end))

    it("are refreshed by bypass and dropped by invalidate_cache", in_run(function()
      local version = 1
      local f, s = lru(function() return version end)
      local arg = map_of(300, false, function() return print end) -- identity inside
      assert.equal(1, f(arg))
      version = 2
      assert.equal(2, f:bypass(map_of(300, true, function() return print end)))
      assert.equal(2, f(arg))
      assert.is_true(f:invalidate_cache(map_of(300, true, function() return print end)))
      version = 3
      assert.equal(3, f(arg))
      assert.equal(3, s.calls)
    end))
  end)
end)
