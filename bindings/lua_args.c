/* Canonical encoding of argument lists (see largs.h).
 *
 * The buffer starts in the largs struct (on the C stack) and moves to a
 * Lua userdata, referenced from the registry, when it grows: a Lua error in
 * the middle of an encoding (a cycle) leaves only garbage, and the caller
 * releases the reference with largs_done once the key is used.  Tables are encoded
 * pair by pair, then their pairs are sorted by the encoded key and
 * rewritten in that order: the result does not depend on traversal order. */
#define _GNU_SOURCE /* qsort_r: one runtime per thread may encode at once */
#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "largs.h"
#include "lkey.h"

#define MAX_DEPTH ((int)(sizeof(((largs *)0)->visiting) / sizeof(void *)))

void largs_init(lua_State *L, largs *k) {
  k->L = L;
  k->box = 0;
  k->p = k->init;
  k->n = 0;
  k->cap = sizeof k->init;
  k->identity = 0;
  k->depth = 0;
}

/* Moves the key to a bigger buffer: a userdata, kept in the registry (a
 * stack slot would shift the indices the encoder holds) until the next
 * growth or until largs_done. */
static void grow(largs *k, size_t more) {
  size_t cap = k->cap * 2;
  while (cap < k->n + more) cap *= 2;
  char *p = lua_newuserdatauv(k->L, cap, 0);
  memcpy(p, k->p, k->n);
  if (k->box == 0) {
    k->box = luaL_ref(k->L, LUA_REGISTRYINDEX);
  } else {
    lua_rawseti(k->L, LUA_REGISTRYINDEX, k->box); /* the old box is garbage */
  }
  k->p = p;
  k->cap = cap;
}

void largs_done(largs *k) {
  if (k->box != 0) luaL_unref(k->L, LUA_REGISTRYINDEX, k->box);
  k->box = 0;
}

void largs_pin(largs *k) {
  if (k->box == 0) return;
  lua_rawgeti(k->L, LUA_REGISTRYINDEX, k->box);
  largs_done(k);
}

static inline void put(largs *k, const void *src, size_t len) {
  if (k->n + len > k->cap) grow(k, len);
  memcpy(k->p + k->n, src, len);
  k->n += len;
}

static inline void put_byte(largs *k, char c) {
  if (k->n + 1 > k->cap) grow(k, 1);
  k->p[k->n++] = c;
}

static void put_len(largs *k, size_t len) {
  if (len < 0x80) { /* the common case: one byte */
    put_byte(k, (char)len);
    return;
  }
  char tmp[10];
  int i = 0;
  do {
    tmp[i++] = (char)((len & 0x7f) | (len >= 0x80 ? 0x80 : 0));
    len >>= 7;
  } while (len != 0);
  put(k, tmp, (size_t)i);
}

static void put_number(largs *k, lua_State *L, int idx) {
  int64_t i;
  lua_Number n = 0;
  if (lua_isinteger(L, idx)) {
    i = (int64_t)lua_tointeger(L, idx);
  } else if (!lkey_integral(n = lua_tonumber(L, idx), &i)) {
    if (isnan(n)) n = NAN;
    put_byte(k, 'D');
    put(k, &n, 8);
    return;
  }
  put_byte(k, 'I');
  put(k, &i, 8);
}


static void encode_value(largs *k, int idx);

typedef struct {
  size_t start, key_len, len;
} pair;

static int by_key(const void *a, const void *b, void *base) {
  const pair *x = a, *y = b;
  const char *pair_base = base;
  size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
  int c = memcmp(pair_base + x->start, pair_base + y->start, n);
  if (c != 0) return c;
  return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

static void encode_table(largs *k, int idx) {
  lua_State *L = k->L;
  const void *self = lua_topointer(L, idx);
  for (int i = 0; i < k->depth; i++)
    if (k->visiting[i] == self) {
      largs_done(k);
      luaL_error(L, "cyclic table argument");
    }
  if (k->depth == MAX_DEPTH || !lua_checkstack(L, 4)) {
    largs_done(k);
    luaL_error(L, "table argument nested too deeply");
  }
  k->visiting[k->depth++] = self;

  put_byte(k, '{');
  size_t region = k->n, npairs = 0, cap = 0;
  pair *pairs = NULL; /* in a userdata below, so an error leaks nothing */
  lua_pushnil(L);
  int pairs_slot = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (npairs == cap) {
      cap = cap ? cap * 2 : 8;
      pair *grown = lua_newuserdatauv(L, cap * sizeof *grown, 0);
      if (npairs) memcpy(grown, pairs, npairs * sizeof *grown);
      lua_replace(L, pairs_slot);
      pairs = grown;
    }
    int top = lua_gettop(L);
    pair *p = &pairs[npairs++];
    p->start = k->n;
    encode_value(k, top - 1);
    p->key_len = k->n - p->start;
    encode_value(k, top);
    p->len = k->n - p->start;
    lua_pop(L, 1);
  }
  if (npairs > 1) {
    size_t total = k->n - region;
    char *copy = lua_newuserdatauv(L, total, 0);
    memcpy(copy, k->p + region, total);
    for (size_t i = 0; i < npairs; i++) pairs[i].start -= region;
    qsort_r(pairs, npairs, sizeof *pairs, by_key, copy);
    size_t at = region;
    for (size_t i = 0; i < npairs; i++) {
      memcpy(k->p + at, copy + pairs[i].start, pairs[i].len);
      at += pairs[i].len;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1); /* the pairs userdata */
  put_byte(k, '}');
  k->depth--;
}

static void encode_value(largs *k, int idx) {
  lua_State *L = k->L;
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      put_byte(k, 'N');
      return;
    case LUA_TBOOLEAN:
      put_byte(k, lua_toboolean(L, idx) ? 'T' : 'F');
      return;
    case LUA_TNUMBER:
      put_number(k, L, idx);
      return;
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      put_byte(k, 'S');
      put_len(k, len);
      put(k, s, len);
      return;
    }
    case LUA_TTABLE:
      encode_table(k, idx);
      return;
    default: {
      const void *ptr = lua_topointer(L, idx);
      put_byte(k, 'R');
      put_byte(k, (char)lua_type(L, idx));
      put(k, &ptr, sizeof ptr);
      k->identity = 1;
      return;
    }
  }
}

void largs_encode(largs *k, int first, int last) {
  int n = last >= first ? last - first + 1 : 0;
  put_len(k, (size_t)n);
  for (int i = first; i <= last; i++) encode_value(k, i);
}
