--- Runs the examples of a documentation page and checks their output.
--
--   lua5.4 tools/docs-run.lua --src DIR --build DIR --work DIR
--          --acache PATH --lua PATH --cc CC [--cflag F]... [--lib L]...
--          [--only LANG] [--wrap WORD]... PAGE.md...
--
-- The convention (docs/index.md, "Examples that run"):
--
--   ```lua run            a Lua example, run with the build's acache;
--   ```lua run lua5.4     ... run with the stock lua5.4 instead (LUA_PATH
--                         and LUA_CPATH point at the source and build trees);
--   ```c run              a C program, compiled against the build tree's
--                         headers and libasynccache-lua.a, then run;
--   exit=N                (after "run") the exit status expected (default 0);
--   ```text expected      what the example before it prints on stdout;
--   ```text expected-stderr  ... on stderr.  A line "..." matches any run of
--                         lines (tracebacks, addresses).  Every run block has
--                         at least one of the two; each belongs to the
--                         nearest run block above it;
--   ```lua file=PATH      (any language) written to PATH in the page's work
--                         directory before the examples after it run;
--   ```lua                any other Lua block must at least compile
--                         (```lua fragment opts out, for partial code).
--
-- --only c runs the C examples alone; --wrap words go before each
-- example's command (valgrind and its options).
--
-- Every example of a page runs in WORK/<page>/, saved as example.lua or
-- example.c.  AC_LUA_PRELOAD, when set, is given to lua5.4 as LD_PRELOAD
-- (the sanitizer build's lua5.4 needs it; the compiler must not get it).
local USAGE = "usage: docs-run.lua --src DIR --build DIR --work DIR --acache PATH "
  .. "--lua PATH --cc CC [--cflag F]... [--lib L]... [--only LANG] [--wrap WORD]... PAGE.md..."

local o = { cflags = {}, libs = {}, wrap = {}, pages = {} }
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    local v = arg[i + 1]
    if a == "--cflag" then o.cflags[#o.cflags + 1] = v; i = i + 2
    elseif a == "--lib" then o.libs[#o.libs + 1] = v; i = i + 2
    elseif a == "--wrap" then o.wrap[#o.wrap + 1] = v; i = i + 2
    elseif a:match("^%-%-") then
      local name = a:sub(3)
      if not v then io.stderr:write(USAGE, "\n"); os.exit(2) end
      o[name] = v
      i = i + 2
    else
      o.pages[#o.pages + 1] = a
      i = i + 1
    end
  end
  for _, k in ipairs{ "src", "build", "work", "acache", "lua", "cc" } do
    if not o[k] then io.stderr:write(USAGE, "\n"); os.exit(2) end
  end
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- Runs a shell command line; returns its exit status.
local function sh(cmd)
  local ok, how, code = os.execute(cmd)
  if how == "signal" then return 128 + code end
  return ok and 0 or code
end

local TIMEOUT = sh("command -v timeout >/dev/null 2>&1") == 0 and "timeout 120 " or ""

---------------------------------------------------------------------------
-- Markdown: the fenced blocks of a page, with their info strings.

local function blocks_of(text)
  local list, cur = {}, nil
  local n = 0
  for line in (text .. (text:sub(-1) == "\n" and "" or "\n")):gmatch("(.-)\n") do
    n = n + 1
    if cur then
      if line:match("^" .. cur.fence .. "%s*$") then
        cur.body = table.concat(cur.lines, "\n") .. (#cur.lines > 0 and "\n" or "")
        list[#list + 1] = cur
        cur = nil
      else
        cur.lines[#cur.lines + 1] = line
      end
    else
      local fence, info = line:match("^(```+)%s*(.-)%s*$")
      if fence then
        local words = {}
        for w in info:gmatch("%S+") do words[#words + 1] = w end
        cur = { fence = fence, line = n, lang = words[1] or "", words = words, lines = {} }
      end
    end
  end
  if cur then error(("unclosed code block at line %d"):format(cur.line)) end
  return list
end

-- The attributes of a block: { run = true, exit = N, file = PATH, ... }.
local KNOWN = { run = true, fragment = true, ["lua5.4"] = true, expected = true,
                ["expected-stderr"] = true }
local function attributes(b)
  local a = { exit = 0 }
  for i = 2, #b.words do
    local w = b.words[i]
    local k, v = w:match("^([%w_]+)=(.*)$")
    if k == "exit" then
      a.exit = assert(math.tointeger(tonumber(v)), "exit= needs an integer")
    elseif k == "file" then
      a.file = v
    elseif KNOWN[w] then
      a[w] = true
    else
      return nil, ("unknown word '%s' in the info string"):format(w)
    end
  end
  return a
end

---------------------------------------------------------------------------
-- Output matching: lines, where an expected line "..." matches any run of
-- lines (none included).

local function lines_of(s)
  local t = {}
  s = s:gsub("\n+$", "")
  if s == "" then return t end
  for l in (s .. "\n"):gmatch("(.-)\n") do t[#t + 1] = l end
  return t
end

local function matches(want, got, i, j)
  i, j = i or 1, j or 1
  if i > #want then return j > #got end
  if want[i] == "..." then
    for k = j, #got + 1 do
      if matches(want, got, i + 1, k) then return true end
    end
    return false
  end
  return j <= #got and want[i] == got[j] and matches(want, got, i + 1, j + 1)
end

---------------------------------------------------------------------------

local failures, examples = 0, 0

local function fail(page, b, msg)
  failures = failures + 1
  io.stderr:write(("FAIL %s:%d: %s\n"):format(page, b.line, msg))
end

local function show(label, s)
  io.stderr:write(("---- %s ----\n%s%s"):format(label, s, s:sub(-1) == "\n" and "" or "\n"))
end

-- Runs one example; returns stdout, stderr, status (or nil, message).
local function run_example(dir, b, a)
  local out, err = dir .. "/.stdout", dir .. "/.stderr"
  local cmd
  if b.lang == "c" then
    write(dir .. "/example.c", b.body)
    local cc = { o.cc }
    for _, f in ipairs(o.cflags) do cc[#cc + 1] = q(f) end
    cc[#cc + 1] = "example.c -o example"
    for _, l in ipairs(o.libs) do cc[#cc + 1] = q(l) end
    local compile = ("cd %s && env -u LD_PRELOAD %s > .cc.log 2>&1"):format(q(dir), table.concat(cc, " "))
    if sh(compile) ~= 0 then
      return nil, "does not compile:\n" .. read(dir .. "/.cc.log")
    end
    cmd = "./example"
  elseif a["lua5.4"] then
    write(dir .. "/example.lua", b.body)
    local preload = os.getenv("AC_LUA_PRELOAD")
    cmd = ("env LUA_PATH=%s LUA_CPATH=%s %s %s example.lua"):format(
      q(o.src .. "/lua/?.lua;" .. o.src .. "/lua/?/init.lua;;"),
      q(o.build .. "/lua/?.so;;"),
      preload and preload ~= "" and ("LD_PRELOAD=" .. q(preload)) or "",
      q(o.lua))
  else
    write(dir .. "/example.lua", b.body)
    cmd = q(o.acache) .. " example.lua"
  end
  if #o.wrap > 0 then
    local w = {}
    for _, x in ipairs(o.wrap) do w[#w + 1] = q(x) end
    cmd = table.concat(w, " ") .. " " .. cmd
  end
  local status = sh(("cd %s && %s%s < /dev/null > .stdout 2> .stderr"):format(q(dir), TIMEOUT, cmd))
  return read(out), read(err), status
end

local function check_page(page)
  local name = page:match("([^/]+)%.md$") or page
  local dir = o.work .. "/" .. name
  sh(("rm -rf %s && mkdir -p %s"):format(q(dir), q(dir)))
  local ok, blocks = pcall(blocks_of, read(page))
  if not ok then
    failures = failures + 1
    io.stderr:write(("FAIL %s: %s\n"):format(page, blocks))
    return
  end
  -- Pair every run block with the expected blocks after it.
  local runs, last = {}, nil
  for _, b in ipairs(blocks) do
    local a, why = attributes(b)
    if not a then
      fail(page, b, why)
    elseif b.lang == "text" and (a.expected or a["expected-stderr"]) then
      if not last then
        fail(page, b, "an expected-output block with no run block above it")
      else
        local k = a.expected and "stdout" or "stderr"
        if last[k] then fail(page, b, "a second expected " .. k .. " block for one example") end
        last[k] = b.body
      end
    elseif a.run then
      if b.lang ~= "lua" and b.lang ~= "c" then
        fail(page, b, "only lua and c blocks can be run")
      end
      last = { block = b, attrs = a }
      runs[#runs + 1] = last
    elseif a.file then
      last = nil
      b.attrs = a
      runs[#runs + 1] = { file = b }
    else
      last = nil
      if b.lang == "lua" and not a.fragment then
        local f, err = load(b.body, "=" .. page .. ":" .. b.line)
        if not f then fail(page, b, "this Lua block does not compile: " .. err) end
      end
    end
  end
  for _, r in ipairs(runs) do
    if r.file then
      local path = dir .. "/" .. r.file.attrs.file
      sh("mkdir -p " .. q(path:match("^(.*)/")))
      write(path, r.file.body)
    elseif not o.only or r.block.lang == o.only then
      local b, a = r.block, r.attrs
      examples = examples + 1
      if not r.stdout and not r.stderr then
        fail(page, b, "a run block needs a ```text expected (or expected-stderr) block after it")
      else
        local out, err, status = run_example(dir, b, a)
        if not out then
          fail(page, b, err)
        else
          local bad = {}
          if status ~= a.exit then
            bad[#bad + 1] = ("exit status %d, expected %d"):format(status, a.exit)
          end
          if r.stdout and not matches(lines_of(r.stdout), lines_of(out)) then
            bad[#bad + 1] = "stdout differs"
          end
          if r.stderr and not matches(lines_of(r.stderr), lines_of(err)) then
            bad[#bad + 1] = "stderr differs"
          end
          if #bad > 0 then
            fail(page, b, table.concat(bad, "; "))
            if r.stdout then show("expected stdout", r.stdout) end
            show("stdout", out)
            if r.stderr then show("expected stderr", r.stderr) end
            show("stderr", err)
          else
            print(("ok   %s:%d (%s run)"):format(page, b.line, b.lang))
          end
        end
      end
    end
  end
end

for _, page in ipairs(o.pages) do check_page(page) end
print(("%d example(s), %d failure(s)"):format(examples, failures))
os.exit(failures == 0 and 0 or 1)
