-- A save is crash-safe: a process killed (SIGKILL) at any point of a save
-- leaves the old snapshot or the new one, never a broken file.
--
-- A child process fills a large cache with one generation of values and
-- saves it, over and over (blocking saves and saves in a task, whose file
-- is written on the thread pool); the test kills it at many different
-- moments and checks that the file then holds exactly one complete
-- generation.  A save takes a few milliseconds, so that random kills would
-- rarely land inside one: the child runs under strace, which delays every
-- write, fsync and rename it makes by DELAY_US (the file is written in
-- 256 KiB pieces), so that most kills land between two steps of a save or
-- between two pieces of its file.  (A save that wrote the file in place
-- fails this test: checked by hand when it was written.)
local cache = require "cache"

local ENTRIES = 30000
local KILLS = 24
local DELAY_US = 15000

local CHILD = [[
local cache = require "cache"
local runtime = require "cache.runtime"
local path, ready, n = arg[1], arg[2], tonumber(arg[3])
local c = cache.AsyncCache{ maxsize = n, backup = cache.DiskBackend(path) }
local gen = 0
local function fill()
  gen = gen + 1
  for i = 1, n do c:set(i, { gen = gen, i = i, pad = "some bytes to make it larger" }) end
end
fill()
assert(c:save_to_backup())
local pid = io.open("/proc/self/stat"):read("n")
local f = io.open(ready .. ".tmp", "w")
f:write(pid)
f:close()
os.rename(ready .. ".tmp", ready)
while true do
  fill()
  assert(c:save_to_backup())
  fill()
  runtime.run(function() assert(c:save_to_backup()) end)
end
]]

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() end
  return f ~= nil
end

-- Has the process not died yet?  A killed child whose parent (the shell)
-- is gone stays a zombie until init reaps it, which may take a while: a
-- zombie is dead.
local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local stat = f:read("a")
  f:close()
  return stat:match("%) (%a)") ~= "Z"
end

describe("a save killed at any moment", function()
  it("leaves a whole snapshot of one generation", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    local script = dir .. "/child.lua"
    local f = assert(io.open(script, "w"))
    f:write(CHILD)
    f:close()
    local path = dir .. "/big.acs"
    local gens = {}
    for k = 1, KILLS do
      local ready = dir .. "/ready" .. k
      assert(os.execute(("strace -f -qq -o /dev/null -e trace=write,fsync,rename "
        .. "-e inject=write,fsync,rename:delay_enter=%d lua5.4 %s %s %s %d >/dev/null 2>&1 &")
        :format(DELAY_US, script, path, ready, ENTRIES)))
      local waited = 0
      while not exists(ready) do
        os.execute("sleep 0.01")
        waited = waited + 1
        assert(waited < 3000, "the child never finished its first save")
      end
      local rf = io.open(ready)
      local pid = assert(rf:read("n"))
      rf:close()
      -- Kill points spread over about two save cycles.
      os.execute(("sleep %.3f"):format((k * 0.037) % 0.5))
      os.execute("kill -9 " .. pid .. " 2>/dev/null")
      while alive(pid) do os.execute("sleep 0.01") end

      local c = cache.AsyncCache{ maxsize = ENTRIES, backup = cache.DiskBackend(path) }
      assert.is_nil(c:load_error())
      assert.equal(ENTRIES, c:get_metrics().size)
      local gen = c:get(1).gen
      for i = 1, ENTRIES, 997 do
        local v = c:get(i)
        assert.equal(gen, v.gen)
        assert.equal(i, v.i)
      end
      gens[gen] = true
      c:close()
    end
    os.execute("rm -rf " .. dir)
    local distinct = 0
    for _ in pairs(gens) do distinct = distinct + 1 end
    assert.is_true(distinct > 1, "every kill found the same snapshot: the kills missed the saves")
  end)
end)
