--- Checks the relative links of the documentation:
--
--   lua5.4 tools/docs-links.lua SOURCE_DIR
--
-- Every Markdown link [text](target) in docs/*.md and README.md whose
-- target is relative (no scheme) must name a file or directory of the
-- source tree; a #fragment must be the anchor of a heading of the target
-- page (GitHub's rule: lower case, punctuation dropped, spaces to '-', a
-- -1, -2 suffix for repeats).  Links inside code (fenced blocks and
-- `spans`) are not links.  Every page under docs/ must be reachable from
-- docs/index.md, and README.md must link docs/index.md.
local src = arg[1] or error("usage: docs-links.lua SOURCE_DIR")

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return os.execute("test -e '" .. path:gsub("'", "'\\''") .. "'") == true
end

-- Markdown text without fenced blocks and code spans, line by line.
local function prose_lines(text)
  local out, fence = {}, nil
  local n = 0
  for line in (text .. "\n"):gmatch("(.-)\n") do
    n = n + 1
    local f = line:match("^%s*(```+)")
    if fence then
      if f and line:match("^%s*" .. fence .. "%s*$") then fence = nil end
      out[n] = ""
    elseif f then
      fence = f
      out[n] = ""
    else
      out[n] = line:gsub("`[^`]*`", "")
    end
  end
  return out
end

-- The anchors of a page's headings.
local function anchors(text)
  local set, seen = {}, {}
  for _, line in ipairs(prose_lines((text:gsub("`", "")))) do
    local h = line:match("^#+%s+(.-)%s*#*%s*$")
    if h then
      local slug = h:lower():gsub("[^%w%- _]", ""):gsub(" ", "-")
      local k = seen[slug]
      seen[slug] = (k or 0) + 1
      if k then slug = slug .. "-" .. k end
      set[slug] = true
    end
  end
  return set
end

local function dirname(p) return p:match("^(.*)/[^/]*$") or "." end

-- Normalises a relative path (a/b/../c -> a/c); nil when it leaves the tree.
local function normalise(p)
  local parts = {}
  for part in p:gmatch("[^/]+") do
    if part == ".." then
      if #parts == 0 then return nil end
      parts[#parts] = nil
    elseif part ~= "." then
      parts[#parts + 1] = part
    end
  end
  return table.concat(parts, "/")
end

local pages = {}
do
  local p = io.popen("cd '" .. src .. "' && ls docs/*.md 2>/dev/null")
  for line in p:lines() do pages[#pages + 1] = line end
  p:close()
end
local files = { "README.md" }
for _, p in ipairs(pages) do files[#files + 1] = p end

local failures, checked = 0, 0
local links_from = {}
local function fail(where, msg)
  failures = failures + 1
  io.stderr:write(("FAIL %s: %s\n"):format(where, msg))
end

local anchor_cache = {}
local function anchors_of(rel)
  if anchor_cache[rel] == nil then
    local text = read(src .. "/" .. rel)
    anchor_cache[rel] = text and anchors(text) or false
  end
  return anchor_cache[rel]
end

for _, rel in ipairs(files) do
  local text = read(src .. "/" .. rel)
  if not text then
    fail(rel, "cannot read it")
  else
    links_from[rel] = {}
    for n, line in ipairs(prose_lines(text)) do
      for target in line:gmatch("%]%(([^)%s]+)[^)]*%)") do
        local where = ("%s:%d"):format(rel, n)
        if not target:match("^%a[%w+.-]*:") then -- not http:, mailto: ...
          checked = checked + 1
          local path, frag = target:match("^([^#]*)#?(.*)$")
          local to = path == "" and rel or normalise(dirname(rel) .. "/" .. path)
          if not to then
            fail(where, ("link %s leaves the source tree"):format(target))
          elseif not exists(src .. "/" .. to) then
            fail(where, ("link %s: no file %s"):format(target, to))
          else
            links_from[rel][to] = true
            if frag ~= "" then
              local set = to:match("%.md$") and anchors_of(to)
              if not set then
                fail(where, ("link %s: a #fragment on a file that is not a Markdown page"):format(target))
              elseif not set[frag] then
                fail(where, ("link %s: %s has no heading with the anchor #%s"):format(target, to, frag))
              end
            end
          end
        end
      end
    end
  end
end

-- Reachability from docs/index.md.
if #pages > 0 then
  if not (links_from["README.md"] or {})["docs/index.md"] then
    fail("README.md", "does not link docs/index.md")
  end
  local seen, queue = { ["docs/index.md"] = true }, { "docs/index.md" }
  while #queue > 0 do
    local p = table.remove(queue)
    for to in pairs(links_from[p] or {}) do
      if to:match("^docs/.*%.md$") and not seen[to] then
        seen[to] = true
        queue[#queue + 1] = to
      end
    end
  end
  for _, p in ipairs(pages) do
    if not seen[p] then fail(p, "not reachable from docs/index.md") end
  end
end

print(("%d relative link(s) in %d page(s), %d failure(s)"):format(checked, #files, failures))
os.exit(failures == 0 and 0 or 1)
