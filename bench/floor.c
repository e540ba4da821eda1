/* floor: the bare C cost of a cache hit, for bench/bench.lua to compare
 * AsyncCache:get() against.
 *
 *   local floor = require "floor"
 *   local f = floor.new(keys [, values])  -- keys: array of strings/integers
 *   local v = floor.get(f, key)            -- values[i] for keys[i], or nil
 *   floor.noop(f, key)                     -- returns key: a bare Lua->C call
 *
 * Data structure: one userdata holding a header, an open-addressing table of
 * 2^k >= 2n slots (linear probing, load factor <= 1/2, never resized) and
 * the key bytes; its user value 1 is the array {values[1..n]}.  A slot keeps
 * the full 64-bit hash, the key's tag/length/offset and the index of its
 * value.  Keys are hashed exactly as the cache hashes them: ac__hash with the
 * binding's tags (1 strings, 2 integers as 8 little-endian bytes), so the
 * floor pays for the same SipHash and one key compare, and nothing else: no
 * method lookup, no LRU update, no TTL, no counters.  Read-only after new(). */
#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>
#include <string.h>

#include "hash.h"

#define FLOOR_MT "bench.floor"
#define FLOOR_MAGIC 0x464c4f52u /* "FLOR" */
#define TAG_STRING 1            /* as LKEY_STRING in bindings/lkey.h */
#define TAG_INTEGER 2           /* as LKEY_INTEGER */

typedef struct {
  uint64_t hash;
  uint32_t idx; /* value index in 1..n; 0: empty slot */
  uint32_t len;
  uint32_t off; /* key bytes at keys + off */
  uint32_t tag;
} fslot;

typedef struct {
  uint32_t magic;
  uint32_t mask; /* slot count - 1 */
  uint32_t n;
  fslot *slots;  /* inside this userdata, after the header */
  char *keys;    /* inside this userdata, after the slots */
} floor_t;

LUAMOD_API int luaopen_floor(lua_State *L);

/* The key at idx as (tag, bytes); buf holds an integer's bytes.  Returns 0
 * for other types. */
static int key_of(lua_State *L, int idx, char buf[8], int *tag,
                  const char **p, size_t *len) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    *tag = TAG_STRING;
    *p = lua_tolstring(L, idx, len);
    return 1;
  }
  if (lua_isinteger(L, idx)) {
    int64_t i = (int64_t)lua_tointeger(L, idx);
    memcpy(buf, &i, 8);
    *tag = TAG_INTEGER;
    *p = buf;
    *len = 8;
    return 1;
  }
  return 0;
}

/* floor.new(keys [, values]): values defaults to keys. */
static int floor_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int vidx = lua_isnoneornil(L, 2) ? 1 : 2;
  luaL_checktype(L, vidx, LUA_TTABLE);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
  luaL_argcheck(L, n >= 1 && n <= 0x40000000, 1, "1 to 2^30 keys expected");

  /* First pass: check the keys and size the key area. */
  size_t key_bytes = 0;
  for (lua_Integer i = 1; i <= n; i++) {
    char buf[8];
    int tag;
    const char *p;
    size_t len;
    lua_rawgeti(L, 1, i);
    if (!key_of(L, -1, buf, &tag, &p, &len))
      return luaL_error(L, "floor.new: keys[%d] must be a string or an integer, got %s",
                        (int)i, luaL_typename(L, -1));
    key_bytes += len;
    lua_pop(L, 1);
  }
  luaL_argcheck(L, key_bytes <= UINT32_MAX, 1, "keys too long");
  uint32_t cap = 2;
  while (cap < 2 * (uint64_t)n) cap *= 2;

  size_t head = (sizeof(floor_t) + 15) & ~(size_t)15;
  floor_t *f = lua_newuserdatauv(L, head + cap * sizeof(fslot) + key_bytes, 1);
  f->magic = 0; /* until built */
  f->mask = cap - 1;
  f->n = (uint32_t)n;
  f->slots = (fslot *)((char *)f + head);
  f->keys = (char *)(f->slots + cap);
  memset(f->slots, 0, cap * sizeof(fslot));
  luaL_setmetatable(L, FLOOR_MT);

  lua_createtable(L, (int)n, 0); /* the values, indexed like the keys */
  uint32_t off = 0;
  for (lua_Integer i = 1; i <= n; i++) {
    char buf[8];
    int tag;
    const char *p;
    size_t len;
    lua_rawgeti(L, 1, i);
    key_of(L, -1, buf, &tag, &p, &len);
    uint64_t h = ac__hash(tag, p, len);
    uint32_t s = (uint32_t)h & f->mask;
    for (; f->slots[s].idx != 0; s = (s + 1) & f->mask) {
      const fslot *x = &f->slots[s];
      if (x->hash == h && x->len == len && x->tag == (uint32_t)tag &&
          memcmp(f->keys + x->off, p, len) == 0)
        return luaL_error(L, "floor.new: keys[%d] is a duplicate", (int)i);
    }
    memcpy(f->keys + off, p, len);
    f->slots[s] = (fslot){h, (uint32_t)i, (uint32_t)len, off, (uint32_t)tag};
    off += (uint32_t)len;
    lua_pop(L, 1);
    lua_rawgeti(L, vidx, i);
    lua_rawseti(L, -2, i);
  }
  lua_setiuservalue(L, -2, 1);
  f->magic = FLOOR_MAGIC;
  return 1;
}

/* floor.get(f, key): the floor of a hit.  The argument check mirrors the
 * cache's (a size and magic test rather than a metatable lookup). */
static int floor_get(lua_State *L) {
  floor_t *f = lua_touserdata(L, 1);
  if (f == NULL || lua_rawlen(L, 1) < sizeof *f || f->magic != FLOOR_MAGIC)
    f = luaL_checkudata(L, 1, FLOOR_MT);
  char buf[8];
  int tag;
  const char *p;
  size_t len;
  if (!key_of(L, 2, buf, &tag, &p, &len))
    return luaL_argerror(L, 2, "string or integer expected");
  uint64_t h = ac__hash(tag, p, len);
  for (uint32_t s = (uint32_t)h & f->mask; f->slots[s].idx != 0;
       s = (s + 1) & f->mask) {
    const fslot *x = &f->slots[s];
    if (x->hash == h && x->len == len && x->tag == (uint32_t)tag &&
        memcmp(f->keys + x->off, p, len) == 0) {
      lua_getiuservalue(L, 1, 1);
      lua_rawgeti(L, -1, x->idx);
      return 1;
    }
  }
  lua_pushnil(L);
  return 1;
}

/* floor.noop(f, key): returns key; the cost of calling a C function. */
static int floor_noop(lua_State *L) {
  lua_settop(L, 2);
  return 1;
}

/* floor.hash(key): ac__hash of a key as an integer (for tests). */
static int floor_hash(lua_State *L) {
  char buf[8];
  int tag;
  const char *p;
  size_t len;
  if (!key_of(L, 1, buf, &tag, &p, &len))
    return luaL_argerror(L, 1, "string or integer expected");
  lua_pushinteger(L, (lua_Integer)ac__hash(tag, p, len));
  return 1;
}

static int floor_len(lua_State *L) {
  floor_t *f = luaL_checkudata(L, 1, FLOOR_MT);
  lua_pushinteger(L, f->n);
  return 1;
}

int luaopen_floor(lua_State *L) {
  static const luaL_Reg fns[] = {{"new", floor_new},   {"get", floor_get},
                                 {"noop", floor_noop}, {"hash", floor_hash},
                                 {NULL, NULL}};
  if (luaL_newmetatable(L, FLOOR_MT)) {
    lua_pushcfunction(L, floor_len);
    lua_setfield(L, -2, "__len");
  }
  lua_pop(L, 1);
  luaL_newlib(L, fns);
  return 1;
}
