-- cache.codec: Lua values to MessagePack bytes and back.
local cache = require "cache"
local codec = cache.codec

local function roundtrip(v)
  local bytes, err = codec.encode(v)
  assert(bytes, err)
  local back, derr = codec.decode(bytes)
  assert(derr == nil, derr)
  return back, bytes
end

-- Another MessagePack implementation, to check our bytes against: Debian's
-- pure-Lua lua-messagepack (installed for Lua 5.3; it runs on 5.4).
local function other_msgpack()
  local saved = package.path
  package.path = package.path .. ";/usr/share/lua/5.3/?.lua"
  local ok, mp = pcall(require, "MessagePack")
  package.path = saved
  return ok and mp or nil
end

describe("cache.codec", function()
  it("keeps integers and floats apart", function()
    assert.equal("integer", math.type((roundtrip(1))))
    assert.equal("float", math.type((roundtrip(1.0))))
    assert.equal(1.5, roundtrip(1.5))
    assert.equal(math.maxinteger, roundtrip(math.maxinteger))
    assert.equal(math.mininteger, roundtrip(math.mininteger))
    assert.equal(-1, roundtrip(-1))
  end)

  it("keeps -0.0, NaN and the infinities", function()
    local z = roundtrip(-0.0)
    assert.equal(-math.huge, 1 / z)
    local nan = roundtrip(0 / 0)
    assert.is_true(nan ~= nan)
    assert.equal(math.huge, roundtrip(math.huge))
    assert.equal(-math.huge, roundtrip(-math.huge))
  end)

  it("is binary safe for strings", function()
    local s = "a\0b\255\254\0"
    assert.equal(s, roundtrip(s))
    assert.equal("", roundtrip(""))
    local big = string.rep("0123456789", 100000) .. "\0"
    assert.equal(big, roundtrip(big))
  end)

  it("round-trips nil, booleans and nested tables", function()
    assert.is_nil((roundtrip(nil)))
    assert.is_true(roundtrip(true))
    assert.is_false(roundtrip(false))
    local v = roundtrip({ 1, "two", { x = 1.5, y = { true, false } }, name = "n",
                          [10] = "ten", [-1] = "neg" })
    assert.same({ 1, "two", { x = 1.5, y = { true, false } }, name = "n",
                  [10] = "ten", [-1] = "neg" }, v)
    assert.same({}, roundtrip({}))
  end)

  it("writes arrays as arrays and sparse tables as maps", function()
    local _, arr = roundtrip({ 1, 2, 3 })
    assert.equal("\x93\x01\x02\x03", arr)
    local sparse, bytes = roundtrip({ [1] = "a", [3] = "c" })
    assert.equal(0x82, bytes:byte(1)) -- a map of two pairs
    assert.same({ [1] = "a", [3] = "c" }, sparse)
    assert.equal("\x90", select(2, roundtrip({}))) -- the empty table: an empty array
  end)

  it("writes valid UTF-8 as str and other bytes as bin", function()
    assert.equal(0xa2, codec.encode("hé"):byte(1) & 0xe0 | 0x02) -- fixstr
    assert.equal(0xc4, codec.encode("\255"):byte(1))               -- bin 8
    assert.equal(0xc4, codec.encode("\xed\xa0\x80"):byte(1))      -- a surrogate is not UTF-8
  end)

  it("refuses what it cannot encode, with a message", function()
    assert.same({ nil, "cannot encode a function value" }, { codec.encode(print) })
    assert.same({ nil, "cannot encode a thread value" }, { codec.encode(coroutine.create(print)) })
    assert.same({ nil, "cannot encode a userdata value" }, { codec.encode({ io.stdout }) })
    local cyc = {}
    cyc.self = cyc
    assert.same({ nil, "cannot encode a cyclic table" }, { codec.encode(cyc) })
    local deep, d = {}, nil
    d = deep
    for _ = 1, 32 do d[1] = {}; d = d[1] end -- 33 tables
    assert.same({ nil, "cannot encode tables nested deeper than 32 levels" }, { codec.encode(deep) })
    local ok_deep = {}
    d = ok_deep
    for _ = 1, 31 do d[1] = {}; d = d[1] end -- 32 tables
    assert.same(ok_deep, roundtrip(ok_deep))
  end)

  it("returns nil, err for bad bytes, without allocating what they claim", function()
    local cases = {
      ["\xdf\xff\xff\xff\xff"] = "a container claims more elements than the data holds",
      ["\xdd\xff\xff\xff\xff\x01"] = "a container claims more elements than the data holds",
      ["\x92\x01"] = "truncated data",
      ["\xdb\xff\xff\xff\xff"] = "truncated data",
      [""] = "truncated data",
      ["\xc1"] = "an invalid byte",
      ["\x01\x02"] = "bytes left after the value",
      [string.rep("\x91", 40) .. "\x01"] = "containers nested deeper than 32 levels",
      ["\x81\xc0\x01"] = "a map key is nil, which a Lua table cannot hold",
      ["\x81\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00\x01"] = "a map key is NaN, which a Lua table cannot hold",
      ["\xd6\xff\x00\x00\x00\x00"] = "MessagePack ext types (timestamps included) are not supported",
    }
    for bytes, why in pairs(cases) do
      assert.same({ nil, "MessagePack: " .. why }, { codec.decode(bytes) })
    end
  end)

  it("decodes what other MessagePack writers produce", function()
    assert.equal(2 ^ 64 - 1, codec.decode("\xcf\xff\xff\xff\xff\xff\xff\xff\xff")) -- uint 64 above int64: a float
    assert.equal(1.5, codec.decode("\xca\x3f\xc0\x00\x00"))   -- float 32
    assert.equal("ab", codec.decode("\xc4\x02ab"))             -- bin 8
    assert.same({ [1] = "x" }, codec.decode("\x81\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00\xa1x")) -- key 1.0 is t[1]
  end)

  it("raises on a decode argument that is not a string", function()
    assert.has_error(function() codec.decode(42 == 42 and {} or nil) end)
    assert.has_error(function() codec.encode() end)
  end)

  it("writes bytes another MessagePack implementation reads", function()
    local mp = other_msgpack()
    if not mp then
      pending("lua-messagepack is not installed")
      return
    end
    local v = { id = 42, name = "ada", score = 1.5, tags = { "a", "b" }, ok = true }
    assert.same(v, mp.unpack(codec.encode(v)))
    assert.same(v, codec.decode(mp.pack(v)))
  end)

  it("writes bytes Python's msgpack reads", function()
    local py = io.open("/usr/bin/python3") and
      os.execute("/usr/bin/python3 -c 'import msgpack' 2>/dev/null")
    if not py then
      pending("python3-msgpack is not installed")
      return
    end
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(codec.encode({ n = 1, f = 2.5, s = "é", b = "\255", list = { 1, 2 } }))
    f:close()
    local p = io.popen("/usr/bin/python3 -c 'import msgpack,sys,json; "
      .. "v = msgpack.unpackb(open(sys.argv[1], \"rb\").read(), raw=False); "
      .. "v[\"b\"] = list(v[\"b\"]); print(json.dumps(v, sort_keys=True))' " .. path)
    local out = p:read("a")
    p:close()
    os.remove(path)
    assert.equal('{"b": [255], "f": 2.5, "list": [1, 2], "n": 1, "s": "\\u00e9"}\n', out)
  end)
end)
