-- A real redis-server for the specs, on a free loopback port, with no
-- persistence; stopped (also when a spec fails) by stop(), which the specs
-- call from their teardown.  Fault tests freeze it (SIGSTOP), resume it,
-- kill it and start it again on the same port.
--
--   local server = require("redis_server").start()
--   server.port; server:cli("SET", "k", "v"); server:freeze(); server:resume()
--   server:kill(); server:restart(); server:stop()
local M = {}
M.__index = M

local function sh(cmd)
  local p = io.popen(cmd .. " 2>/dev/null")
  local out = p:read("a")
  p:close()
  return out
end

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

function M.available()
  return sh("command -v redis-server") ~= "" and sh("command -v redis-cli") ~= ""
end

function M:cli(...)
  local args = {}
  for i, a in ipairs({ ... }) do args[i] = ("%q"):format(tostring(a)) end
  return (sh(("redis-cli -p %d %s"):format(self.port, table.concat(args, " ")))
    :gsub("\n$", ""))
end

function M:pid()
  local f = io.open(self.pidfile)
  if not f then return nil end
  local pid = f:read("n")
  f:close()
  return pid
end

local function launch(self)
  os.remove(self.pidfile)
  os.execute(("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no "
    .. "--daemonize yes --pidfile %s --dir %s --logfile %s/redis.log >/dev/null 2>&1")
    :format(self.port, self.pidfile, self.dir, self.dir))
  for _ = 1, 300 do
    if self:cli("PING") == "PONG" and exists(self.pidfile) then return true end
    os.execute("sleep 0.01")
  end
  return false
end

-- A port nobody answers on: random, checked with a PING.
local function free_port()
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16))
  for _ = 1, 50 do
    local port = math.random(20000, 60000)
    if sh(("redis-cli -p %d PING"):format(port)) == "" then return port end
  end
  error("no free port found")
end

function M.start()
  local dir = os.tmpname()
  os.remove(dir)
  os.execute("mkdir -p " .. dir)
  local self = setmetatable({ dir = dir, pidfile = dir .. "/redis.pid" }, M)
  for _ = 1, 5 do
    self.port = free_port()
    if launch(self) then return self end
  end
  error("redis-server did not start")
end

function M:freeze() os.execute("kill -STOP " .. self:pid()) end
function M:resume() os.execute("kill -CONT " .. self:pid()) end

function M:kill()
  local pid = self:pid()
  if pid then
    os.execute("kill -CONT " .. pid .. " 2>/dev/null; kill -9 " .. pid .. " 2>/dev/null")
    for _ = 1, 300 do
      if sh(("redis-cli -p %d PING"):format(self.port)) == "" then break end
      os.execute("sleep 0.01")
    end
  end
  os.remove(self.pidfile)
end

function M:restart()
  assert(launch(self), "redis-server did not restart")
end

function M:stop()
  self:kill()
  os.execute("rm -rf " .. self.dir)
end

return M
