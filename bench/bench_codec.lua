--- The benchmark of cache.codec: MessagePack encode and decode of a typical
-- record and of a 1 MB string, next to Debian's pure-Lua lua-messagepack
-- (MessagePack.lua), with the project's target.
--
--   lua5.4 bench/bench_codec.lua [--iterations N] [--rounds R]
--   ./build/acache bench/bench_codec.lua [--iterations N] [--rounds R]
--
-- C modules are searched in $ACACHE_BUILD_DIR (default: ../build next to
-- this file): lua/?.so (cache.core, for lua5.4).  MessagePack.lua is looked
-- for on package.path and in /usr/share/lua/5.3 (package lua-messagepack;
-- it runs on 5.4); without it only our own figures are printed.
--
-- Method: a round times one batch of every contender back to back (the
-- order reversed every other round), each batch between two readings of
-- runtime.now() (CLOCK_MONOTONIC); a figure is the BEST (lowest) batch
-- mean over the rounds, printed with the worst, after one warm-up round
-- that is not kept.  The best is what the code costs when nothing else on
-- the machine gets in the way; the spread says how much did.  A record
-- batch is N values for cache.codec and N/10 for MessagePack.lua (about
-- ten times slower), a 1 MB batch N/1000 values for both (at least one);
-- figures are per value.  MB/s counts the MessagePack bytes (written by
-- encode, read by decode; 1 MB = 10^6 bytes).  Ratios are
-- MessagePack.lua / cache.codec, of the best figures.  The collector runs
-- as it would for a user inside a batch (decode allocates tables); full
-- collections run only between figures.
--
-- Not the same work on both sides: cache.codec checks every string for
-- UTF-8 (valid UTF-8 goes out as str, other bytes as bin) and copies the
-- bytes out of a buffer it keeps; MessagePack.lua ('string_compat') writes
-- every string as str unchecked and concatenates a table of pieces.

---------------------------------------------------------------------------
-- Finding our modules, under acache (which preloads cache.core) and under
-- lua5.4.
local DIR = debug.getinfo(1, "S").source:match("^@(.*)[/\\]") or "."
dofile(DIR .. "/setup.lua")(DIR)
package.path = package.path .. ";/usr/share/lua/5.3/?.lua" -- lua-messagepack

local cache = require "cache"
local runtime = require "cache.runtime"
local have_mp, mp = pcall(require, "MessagePack")
if not have_mp then mp = nil end

local codec = cache.codec
local now = runtime.now
local fmt, concat = string.format, table.concat

local RECORD_MP_SHARE = 10 -- MessagePack.lua's record batch: N / this
local BIG_SHARE = 1000     -- 1 MB batches: N / this values
local BIG_BYTES = 1024 * 1024

local TARGET = {
  record_ratio = 10, -- cache.codec >= 10 x faster than MessagePack.lua on the record
}

-- The typical record: ten fields, strings and numbers.
local RECORD = {
  id = 1234567, name = "Ada Lovelace", email = "ada@example.org", age = 36,
  score = 98.25, city = "London", country = "GB", created = 1700000000,
  ratio = 0.125, status = "active",
}
local BIG = string.rep("0123456789abcdef", BIG_BYTES // 16) -- ASCII: goes out as str

---------------------------------------------------------------------------
-- Arguments

local function usage(to, status)
  to:write("usage: bench_codec.lua [--iterations N] [--rounds R]\n",
    "  --iterations N  record values per batch (default 100000, at least ",
    RECORD_MP_SHARE, ")\n",
    "  --rounds R      timed rounds (default 7, at least 1)\n")
  os.exit(status)
end

local function parse_args(argv)
  local o = { iterations = 100000, rounds = 7 }
  local i = 1
  while i <= #argv do
    local a, v = argv[i], argv[i + 1]
    local name, inline = a:match("^(%-%-[%w-]+)=(.*)$")
    if name then a, v, i = name, inline, i - 1 end
    if a == "--iterations" or a == "--rounds" then
      local n = math.tointeger(tonumber(v or ""))
      local least = a == "--iterations" and RECORD_MP_SHARE or 1
      if n == nil or n < least then
        io.stderr:write("bench_codec.lua: ", a, " needs an integer >= ", least, "\n")
        usage(io.stderr, 2)
      end
      o[a:sub(3)] = n
      i = i + 2
    elseif a == "-h" or a == "--help" then
      usage(io.stdout, 0)
    else
      io.stderr:write("bench_codec.lua: unknown argument '", a, "'\n")
      usage(io.stderr, 2)
    end
  end
  return o
end

---------------------------------------------------------------------------
-- Measuring

local function full_gc()
  collectgarbage("collect")
  collectgarbage("collect")
end

-- Seconds for n calls of f(x).
local function batch(f, x, n)
  local t0 = now()
  for _ = 1, n do f(x) end
  return now() - t0
end

-- Times the contenders ({ name, f, x, n }) in the same rounds; returns,
-- per name, { best = s/value, worst = s/value }.
local function race(contenders, rounds)
  local out = {}
  for _, c in ipairs(contenders) do out[c[1]] = { best = math.huge, worst = 0 } end
  full_gc()
  for r = 0, rounds do -- round 0 warms up
    local first, last, step = 1, #contenders, 1
    if r % 2 == 1 then first, last, step = last, first, -1 end
    for k = first, last, step do
      local c = contenders[k]
      local per = batch(c[2], c[3], c[4]) / c[4]
      if r > 0 then
        local o = out[c[1]]
        if per < o.best then o.best = per end
        if per > o.worst then o.worst = per end
      end
    end
  end
  full_gc()
  return out
end

---------------------------------------------------------------------------
-- Printing

local passes, total = 0, 0

local function verdict(ok)
  total = total + 1
  if ok then passes = passes + 1 end
  return ok and "PASS" or "MISS"
end

local function line(label, value, unit, extra, target)
  print(fmt("  %-40s %10s %-6s %-26s %s", label, value, unit or "", extra or "", target or ""))
end

local function mbps(bytes, seconds) return fmt("%.1f", bytes / seconds / 1e6) end

-- One contender's figures of one operation: time per value and MB/s.
local function figures(label, r, bytes, in_ms)
  local v, w = r.best * 1e9, r.worst * 1e9
  local unit, f = "ns", "%.1f"
  if in_ms then v, w, unit, f = v / 1e6, w / 1e6, "ms", "%.3f" end
  line(label, fmt(f, v), unit, fmt("worst " .. f .. ", %s MB/s", w, mbps(bytes, r.best)))
end

local function ratio_line(label, ours, theirs, target)
  local q = theirs.best / ours.best
  local t = ""
  if target then t = fmt("target >= %d x   %s", target, verdict(q >= target)) end
  line(label, fmt("%.1f", q), "x", nil, t)
  return q
end

---------------------------------------------------------------------------
-- Checks: each side reads what the other writes, so both do the same work.

local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then
    return a == b and math.type(a) == math.type(b)
  end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function check()
  for _, v in ipairs({ RECORD, BIG }) do
    assert(same(v, codec.decode(codec.encode(v))), "cache.codec round trip")
    if mp then
      assert(same(v, mp.unpack(mp.pack(v))), "MessagePack.lua round trip")
      assert(same(v, mp.unpack(codec.encode(v))), "MessagePack.lua reads cache.codec")
      assert(same(v, codec.decode(mp.pack(v))), "cache.codec reads MessagePack.lua")
    end
  end
end

---------------------------------------------------------------------------

local function bench(label, value, opts, n_ours, n_mp, in_ms)
  local ours_bytes = codec.encode(value)
  local mp_bytes = mp and mp.pack(value)
  local enc = { { "ours", codec.encode, value, n_ours } }
  local dec = { { "ours", codec.decode, ours_bytes, n_ours } }
  if mp then
    enc[2] = { "mp", mp.pack, value, n_mp }
    dec[2] = { "mp", mp.unpack, mp_bytes, n_mp }
  end
  local e, d = race(enc, opts.rounds), race(dec, opts.rounds)
  print(fmt("\n%s (%d bytes of MessagePack from cache.codec%s)", label, #ours_bytes,
    mp and fmt(", %d from MessagePack.lua", #mp_bytes) or ""))
  figures("cache.codec.encode", e.ours, #ours_bytes, in_ms)
  figures("cache.codec.decode", d.ours, #ours_bytes, in_ms)
  if mp then
    figures("MessagePack.pack", e.mp, #mp_bytes, in_ms)
    figures("MessagePack.unpack", d.mp, #mp_bytes, in_ms)
  end
  return e, d
end

local function main(argv)
  local opts = parse_args(argv)
  local runner = package.preload["cache.core"] and "acache" or "lua5.4 (stock interpreter)"
  print(fmt("async-cache codec benchmark: %s under %s; MessagePack.lua %s", _VERSION, runner,
    mp and (mp._VERSION or "found") or "not found (lua-messagepack): our figures only"))
  print(fmt("%d rounds after a warm-up, contenders interleaved; each figure is the BEST batch",
    opts.rounds))
  print(fmt("mean per value over the rounds (worst given), timed with runtime.now(); record"))
  print(fmt("batches of %d values (MessagePack.lua: %d), 1 MB batches of %d.", opts.iterations,
    math.max(1, opts.iterations // RECORD_MP_SHARE), math.max(1, opts.iterations // BIG_SHARE)))
  check()
  local t0 = now()

  local n = opts.iterations
  local re, rd = bench("(a) a record of 10 fields, strings and numbers", RECORD, opts, n,
    math.max(1, n // RECORD_MP_SHARE), false)
  local nb = math.max(1, n // BIG_SHARE)
  local be, bd = bench(fmt("(b) a string of %d bytes (ASCII)", BIG_BYTES), BIG, opts, nb, nb,
    true)

  if mp then
    print("\nMessagePack.lua / cache.codec (time per value, best against best)")
    local q1 = ratio_line("(a) record encode", re.ours, re.mp, TARGET.record_ratio)
    local q2 = ratio_line("(a) record decode", rd.ours, rd.mp, TARGET.record_ratio)
    ratio_line("(a) record encode + decode", { best = re.ours.best + rd.ours.best },
      { best = re.mp.best + rd.mp.best })
    ratio_line("(b) 1 MB string encode", be.ours, be.mp)
    ratio_line("(b) 1 MB string decode", bd.ours, bd.mp)
    print(fmt("\n%d of %d targets met (record encode %.1f x, decode %.1f x; %.1f s)", passes,
      total, q1, q2, now() - t0))
  else
    print(fmt("\nno comparison: MessagePack.lua not found (%.1f s)", now() - t0))
  end
end

main({ ... })
