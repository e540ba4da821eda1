--- Writes the seed corpus of the codec fuzz targets, fuzz/corpus/codec/:
-- valid values of every kind (through cache.codec.encode), what other
-- MessagePack writers produce, and hand-written bad bytes (truncated,
-- invalid, nested too deeply, claims larger than the input, ext types,
-- bytes after the value, keys Lua cannot hold).
--
--   lua5.4 fuzz/make_seeds.lua [--check] [DIR]
--
-- DIR defaults to fuzz/corpus/codec next to this file.  Only the files
-- named here are written; others in DIR (inputs kept from fuzzing runs,
-- see tools/fuzz.sh) are left alone.  --check writes nothing and exits 1
-- when a seed here differs from its file (CTest runs it, so the corpus
-- stays what this script makes).  Every seed is deterministic: maps of
-- several pairs are assembled here in a fixed order, not by encode (whose
-- order is lua_next's).
--
-- C modules are searched in $ACACHE_BUILD_DIR (default: ../build next to
-- this file): lua/?.so (cache.core).

local DIR = debug.getinfo(1, "S").source:match("^@(.*)[/\\]") or "."
dofile(DIR .. "/../bench/setup.lua")(DIR)

local codec = require("cache").codec

local char, rep, concat, pack = string.char, string.rep, table.concat, string.pack

local function enc(v)
  return assert(codec.encode(v))
end

-- A map of the given key, value pairs, in this order (duplicates kept).
-- Keys and values are Lua values, or pre-encoded bytes wrapped by raw().
local RAW = {}
local function raw(bytes) return setmetatable({ bytes }, RAW) end
local function item(v)
  if getmetatable(v) == RAW then return v[1] end
  return enc(v)
end
local function map(...)
  local n, parts = select("#", ...), {}
  assert(n % 2 == 0)
  for i = 1, n do parts[i] = item((select(i, ...))) end
  local pairs_ = n // 2
  local head = pairs_ < 16 and char(0x80 | pairs_) or pack(">BI2", 0xde, pairs_)
  return head .. concat(parts)
end
local function array(...)
  local n, parts = select("#", ...), {}
  for i = 1, n do parts[i] = item((select(i, ...))) end
  local head = n < 16 and char(0x90 | n) or pack(">BI2", 0xdc, n)
  return head .. concat(parts)
end

-- The typical record of bench/bench_codec.lua: ten fields, strings and numbers.
local record = map("id", 1234567, "name", "Ada Lovelace", "email", "ada@example.org",
  "age", 36, "score", 98.25, "city", "London", "country", "GB",
  "created", 1700000000, "ratio", 0.125, "status", "active")

local function nest(open, inner, depth) return rep(open, depth) .. inner end

local SEEDS = {
  -- scalars
  ["nil"] = enc(nil),
  ["true"] = enc(true),
  ["false"] = enc(false),
  ["int-zero"] = enc(0),
  ["int-fixpos"] = enc(127),
  ["int-fixneg"] = enc(-32),
  ["int-uint8"] = enc(200),
  ["int-int16"] = enc(-30000),
  ["int-uint32"] = enc(4000000000),
  ["int-max"] = enc(math.maxinteger),
  ["int-min"] = enc(math.mininteger),
  ["float"] = enc(1.5),
  ["float-integral"] = enc(1.0),
  ["float-neg-zero"] = enc(-0.0),
  ["float-nan"] = enc(0 / 0),
  ["float-inf"] = enc(-math.huge),
  ["str-empty"] = enc(""),
  ["str-utf8"] = enc("h\xc3\xa9llo"),
  ["str-bin"] = enc("\255\0\254"),
  ["str-16"] = enc(rep("abcdefghij", 30)),
  -- containers
  ["array-empty"] = enc({}),
  ["array-mixed"] = enc({ 1, "two", 3.5, true, false }),
  ["array-16"] = enc({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20 }),
  ["array-nested"] = enc({ { 1, { 2, { 3 } } }, { "x", {} } }),
  ["map-record"] = record,
  ["map-records"] = array(raw(record), raw(record), raw(record)),
  ["map-sparse"] = map(1, "a", 3, "c", -1, "neg", 0, "zero"),
  ["map-key-kinds"] = map(true, 1, false, 2, 1.5, 3, "s", 4, raw(enc({ 1, 2 })), 5,
    raw(map("k", "v")), 6),
  ["map-duplicate-keys"] = map("a", 1, "a", 2, 1, "x", 1, "y"),
  ["map-nil-values"] = map("a", raw("\xc0"), "b", 1),
  ["map-16"] = map("k01", 1, "k02", 2, "k03", 3, "k04", 4, "k05", 5, "k06", 6, "k07", 7,
    "k08", 8, "k09", 9, "k10", 10, "k11", 11, "k12", 12, "k13", 13, "k14", 14, "k15", 15,
    "k16", 16, "k17", 17),
  ["array-nil-holes"] = array(1, raw("\xc0"), 3, raw("\xc0")),
  -- nesting at the limit: 32 arrays; 32 maps, each on the value side
  -- (every level keeps its key on the Lua stack) and on the key side
  ["deep-32-arrays"] = nest("\x91", "\x01", 32),
  ["deep-32-maps-values"] = nest("\x81\xa1a", "\x01", 32),
  ["deep-32-maps-keys"] = nest("\x81", "\x01", 32) .. rep("\x02", 32),
  ["deep-32-mixed"] = nest("\x92\x00\x81\xa1k", "\x91\x90", 15),
  -- what other writers produce
  ["other-uint64-max"] = "\xcf\xff\xff\xff\xff\xff\xff\xff\xff",
  ["other-uint64-small"] = "\xcf\x00\x00\x00\x00\x00\x00\x00\x05",
  ["other-int64-long-form"] = "\xd3\x00\x00\x00\x00\x00\x00\x00\x01",
  ["other-float32"] = "\xca\x3f\xc0\x00\x00",
  ["other-float32-nan"] = "\xca\x7f\xc0\x00\x01",
  ["other-bin8-utf8"] = "\xc4\x02ab",
  ["other-str8-short"] = "\xd9\x03abc",
  ["other-array16-short"] = "\xdc\x00\x02\x01\x02",
  ["other-map32-short"] = "\xdf\x00\x00\x00\x01\xa1k\xc3",
  ["other-float-key-integral"] = map(raw("\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00"), "one",
    raw("\xca\x80\x00\x00\x00"), "neg-zero"),
  ["other-uint64-key"] = map(raw("\xcf\xff\xff\xff\xff\xff\xff\xff\xff"), 1),
  -- bad: claims larger than the input
  ["bad-map32-claims-2p32"] = "\xdf\xff\xff\xff\xff",
  ["bad-array32-claims-2p32"] = "\xdd\xff\xff\xff\xff\x01",
  ["bad-map16-claims"] = "\xde\xff\xff\x01\x02",
  ["bad-str32-claims-4g"] = "\xdb\xff\xff\xff\xff",
  ["bad-bin32-claims"] = "\xc6\x00\x01\x00\x00ab",
  -- bad: nesting
  ["bad-deep-40-arrays"] = nest("\x91", "\x01", 40),
  ["bad-deep-33-empty"] = nest("\x91", "\x90", 32),
  ["bad-deep-40-maps"] = nest("\x81\xa1a", "\x01", 40),
  -- bad: ext types
  ["bad-ext-fixext1"] = "\xd4\x01\x00",
  ["bad-ext-timestamp32"] = "\xd6\xff\x00\x00\x00\x00",
  ["bad-ext8"] = "\xc7\x02\x05\xaa\xbb",
  ["bad-ext32-huge"] = "\xc9\xff\xff\xff\xff\x01",
  ["bad-ext-in-array"] = array(1, raw("\xd5\x02\x00\x00")),
  -- bad: bytes after the value, truncation, invalid bytes
  ["bad-trailing"] = "\x01\x02",
  ["bad-trailing-record"] = record .. "\xc0",
  ["bad-truncated-record"] = record:sub(1, #record // 2),
  ["bad-truncated-array"] = "\x92\x01",
  ["bad-truncated-float"] = "\xcb\x3f\xf0",
  ["bad-truncated-str"] = "\xa5ab",
  ["bad-empty"] = "",
  ["bad-invalid-byte"] = "\xc1",
  ["bad-invalid-in-map"] = map("a", raw("\xc1")),
  -- bad for Lua only: keys a table cannot hold
  ["bad-key-nil"] = "\x81\xc0\x01",
  ["bad-key-nan"] = map(raw("\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00"), 1),
  ["bad-key-nan32"] = map(raw("\xca\x7f\xc0\x00\x00"), 1),
  ["bad-key-nil-then-trailing"] = "\x81\xc0\x01\x02",
  ["bad-key-nil-nested"] = array(raw("\x81\xc0\x01")),
}

---------------------------------------------------------------------------

local check, out = false, nil
for _, a in ipairs(arg) do
  if a == "--check" then check = true
  elseif a == "-h" or a == "--help" then
    io.write("usage: make_seeds.lua [--check] [DIR]\n")
    os.exit(0)
  else out = a end
end
out = out or (DIR .. "/corpus/codec")

local names = {}
for name in pairs(SEEDS) do names[#names + 1] = name end
table.sort(names)

local differ = 0
for _, name in ipairs(names) do
  local path = out .. "/" .. name
  if check then
    local f = io.open(path, "rb")
    local have = f and f:read("a")
    if f then f:close() end
    if have ~= SEEDS[name] then
      io.stderr:write("make_seeds: ", path, have and " differs\n" or " is missing\n")
      differ = differ + 1
    end
  else
    local f = assert(io.open(path, "wb"))
    f:write(SEEDS[name])
    f:close()
  end
end
if check then
  if differ > 0 then
    io.stderr:write("make_seeds: ", differ, " of ", #names,
      " seeds out of date; run lua5.4 fuzz/make_seeds.lua\n")
    os.exit(1)
  end
  print(("make_seeds: %d seeds up to date in %s"):format(#names, out))
else
  print(("make_seeds: wrote %d seeds to %s"):format(#names, out))
end
