--- cache.RedisBackend{...}: Redis as the shared second level (remote_cache =).
--
--   local redis = cache.RedisBackend{ host = "127.0.0.1", port = 6379, prefix = "users:" }
--   local c = cache.AsyncCache{ maxsize = 10000, default_ttl = 300, remote_cache = redis }
--
-- The backend itself is C (runtime/redis.c, hiredis on the runtime's loop);
-- this module checks the options, once, and names the one that is wrong.
-- Each cache given the same RedisBackend opens its own two connections
-- (commands, and the invalidation channel) with these options.
local util = require "cache.util"

local type, error, pairs, tostring, setmetatable = type, error, pairs, tostring, setmetatable
local describe = util.describe

local _M = {}

local RedisBackend = { __name = "cache.RedisBackend" }
RedisBackend.__index = RedisBackend

function RedisBackend.__tostring(self)
  return ("cache.RedisBackend(%s, prefix %q)"):format(
    self.unix or (self.host .. ":" .. self.port), self.prefix)
end

local DEFAULTS = { host = "127.0.0.1", port = 6379, db = 0, prefix = "ac:",
                   connect_timeout = 1, command_timeout = 0.25 }
local OPTIONS = { host = true, port = true, unix = true, db = true, password = true,
                  username = true, prefix = true, connect_timeout = true,
                  command_timeout = true }

local function check_string(opts, name, level)
  local v = opts[name]
  if v ~= nil and (type(v) ~= "string" or v == "" or v:find("\0", 1, true)) then
    error(("cache.RedisBackend: opts.%s must be a non-empty string, got %s"):format(
      name, describe(v)), level + 1)
  end
end

local function check_int(opts, name, lo, hi, level)
  local v = opts[name]
  if v ~= nil and (math.type(v) ~= "integer" or v < lo or v > hi) then
    error(("cache.RedisBackend: opts.%s must be an integer from %d to %d, got %s"):format(
      name, lo, hi, describe(v)), level + 1)
  end
end

local function check_seconds(opts, name, level)
  local v = opts[name]
  if v ~= nil and (type(v) ~= "number" or not (v > 0) or v == math.huge) then
    error(("cache.RedisBackend: opts.%s must be a positive number of seconds, got %s"):format(
      name, describe(v)), level + 1)
  end
end

--- cache.RedisBackend{ host =, port =, unix =, db =, password =, username =,
-- prefix =, connect_timeout =, command_timeout = }
function _M.RedisBackend(opts)
  local level = 2
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    error("cache.RedisBackend: opts must be a table, got " .. type(opts), level)
  end
  for k in pairs(opts) do
    if not OPTIONS[k] then
      error(("cache.RedisBackend: unknown option '%s'"):format(tostring(k)), level)
    end
  end
  for _, name in ipairs{ "host", "unix", "password", "username", "prefix" } do
    check_string(opts, name, level)
  end
  check_int(opts, "port", 1, 65535, level)
  check_int(opts, "db", 0, 2147483647, level)
  check_seconds(opts, "connect_timeout", level)
  check_seconds(opts, "command_timeout", level)
  if opts.username ~= nil and opts.password == nil then
    error("cache.RedisBackend: opts.username needs opts.password", level)
  end
  local self = {}
  for k, v in pairs(DEFAULTS) do self[k] = v end
  for k, v in pairs(opts) do self[k] = v end
  return setmetatable(self, RedisBackend)
end

function _M.is_redis(b) return getmetatable(b) == RedisBackend end

return _M
