--- Checks that the documentation mentions every public name:
--
--   acache tools/docs-api.lua SOURCE_DIR [--list]
--
-- The list is derived from the code, never kept by hand:
--   - every key of require "cache", of require "cache.runtime" and of
--     require "agent_cache" (mentioned as cache.NAME, runtime.NAME,
--     agent.NAME);
--   - every method of an AsyncCache, of a decorated function, of an
--     event, of an agent session, read tool and write tool (mentioned as
--     :NAME);
--   - every AC_EXPORT function of bindings/include/ac_lua.h (by name);
--   - every option of the constructors (the *_OPTIONS tables of
--     lua/cache/*.lua and lua/agent_cache/*.lua) and of the methods that
--     take an options table (as their "unknown option" errors list them):
--     each must be a row of a table in docs/guide.md, or docs/agent.md for
--     agent_cache's (a line starting with "| `name`").
-- A name is mentioned when some docs/*.md page has it outside a word
-- (cache.get does not count for cache.get_many).  --list prints the list.
local src = assert(arg[1], "usage: acache docs-api.lua SOURCE_DIR [--list]")
local list_only = arg[2] == "--list"

local cache = require "cache"
local runtime = require "cache.runtime"
local agent = require "agent_cache"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

local names = {} -- { text =, what = } in order
local function add(text, what) names[#names + 1] = { text = text, what = what } end

for _, k in ipairs(sorted_keys(cache)) do add("cache." .. k, "key of require \"cache\"") end
for _, k in ipairs(sorted_keys(runtime)) do add("runtime." .. k, "key of require \"cache.runtime\"") end
for _, k in ipairs(sorted_keys(agent)) do add("agent." .. k, "key of require \"agent_cache\"") end
add("agent.AgentLoopDetectedError.is", "function of agent.AgentLoopDetectedError")

local c = cache.AsyncCache{}
local memo = cache.AsyncLRU{}(function() end)
local ev = runtime.event()
local session = agent.AgentCacheSession{}
session:close()
local read_tool = agent.AgentCache{}(function() end)
local write_tool = agent.AgentCacheInvalidator{ resource = "r" }(function() end)
for label, obj in pairs{ ["AsyncCache"] = c, ["decorated function"] = memo, ["event"] = ev,
                         ["agent session"] = session, ["agent read tool"] = read_tool,
                         ["agent write tool"] = write_tool } do
  local methods = getmetatable(obj).__index
  for _, m in ipairs(sorted_keys(methods)) do add(":" .. m, label .. " method") end
end
table.sort(names, function(a, b) return a.what < b.what or (a.what == b.what and a.text < b.text) end)

local header = read(src .. "/bindings/include/ac_lua.h")
local exported = 0
for name in header:gmatch("AC_EXPORT[^;(]-([%a_][%w_]*)%s*%(") do
  add(name, "function of ac_lua.h")
  exported = exported + 1
end
assert(exported > 0, "no AC_EXPORT function found in ac_lua.h")

-- Options: the constructors' tables in the Lua sources ...
local options = {}
local SOURCES = {
  { file = "lua/cache/async_cache.lua", var = "ASYNC_CACHE_OPTIONS", who = "cache.AsyncCache" },
  { file = "lua/cache/decorators.lua", var = "LRU_OPTIONS", who = "cache.AsyncLRU" },
  { file = "lua/cache/decorators.lua", var = "TTL_OPTIONS", who = "cache.AsyncTTL" },
  { file = "lua/cache/invalidators.lua", var = "OPTIONS", who = "invalidators" },
  { file = "lua/agent_cache/tool.lua", var = "READ_OPTIONS", who = "agent.AgentCache", page = "docs/agent.md" },
  { file = "lua/agent_cache/invalidator.lua", var = "WRITE_OPTIONS", who = "agent.AgentCacheInvalidator",
    page = "docs/agent.md" },
  { file = "lua/agent_cache/session.lua", var = "SESSION_OPTIONS", who = "agent.AgentCacheSession",
    page = "docs/agent.md" },
}
for _, s in ipairs(SOURCES) do
  local text = read(src .. "/" .. s.file)
  local body = text:match("local " .. s.var .. "%s*=%s*(%b{})")
  assert(body, ("%s: no table %s (update tools/docs-api.lua)"):format(s.file, s.var))
  for k in body:gmatch("([%a_][%w_]*)%s*=%s*true") do
    options[#options + 1] = { name = k, who = s.who, page = s.page }
  end
end
-- ... and the per-call options, as the methods' errors list them.
local probes = {
  ["cache:get()"] = function() c:get("k", { __probe = 1 }) end,
  ["cache:set()"] = function() c:set("k", 1, { __probe = 1 }) end,
  ["cache:get_many()"] = function() c:get_many({}, { __probe = 1 }) end,
  ["cache:warmup()"] = function() c:warmup({}, { __probe = 1 }) end,
}
for _, who in ipairs(sorted_keys(probes)) do
  local ok, err = pcall(probes[who])
  local list = not ok and tostring(err):match("%(options: ([^)]*)%)")
  assert(list, who .. ": no list of options in its error: " .. tostring(err))
  for k in list:gmatch("[^,%s]+") do options[#options + 1] = { name = k, who = who } end
end

if list_only then
  for _, n in ipairs(names) do print(("%-24s %s"):format(n.what, n.text)) end
  for _, o in ipairs(options) do print(("%-24s %s"):format("option of " .. o.who, o.name)) end
  os.exit(0)
end

local docs = {}
do
  local p = io.popen("cd '" .. src .. "' && ls docs/*.md")
  for path in p:lines() do docs[#docs + 1] = { path = path, text = read(src .. "/" .. path) } end
  p:close()
end
assert(#docs > 0, "no docs/*.md")

local function escape(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

local missing = 0
for _, n in ipairs(names) do
  local pat = escape(n.text) .. "%f[^%w_]"
  if n.text:match("^[%a_]") then pat = "%f[%w_.:]" .. pat end
  local found
  for _, d in ipairs(docs) do
    if d.text:find(pat) then found = d.path break end
  end
  if not found then
    missing = missing + 1
    io.stderr:write(("MISSING %s (%s): no docs/*.md page mentions it\n"):format(n.text, n.what))
  end
end

local pages = {}
for _, o in ipairs(options) do
  local page = o.page or "docs/guide.md"
  pages[page] = pages[page] or read(src .. "/" .. page)
  local row = "\n|%s*`" .. escape(o.name) .. "`"
  if not pages[page]:find(row) then
    missing = missing + 1
    io.stderr:write(("MISSING option %s of %s: no table row for it in %s\n"):format(o.name, o.who, page))
  end
end

print(("%d public name(s), %d option(s), %d missing"):format(#names, #options, missing))
os.exit(missing == 0 and 0 or 1)
