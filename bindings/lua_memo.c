/* Decorated functions ("ac.memo"): a function whose results are cached by
 * its arguments.
 *
 * The object is a userdata whose user values are its cache (1) and the
 * wrapped function (2).  Calling it encodes the arguments after skip_args
 * into a canonical key (largs.h) under the LKEY_ARGS tag, and either
 * returns the cached results or goes through the cache's single-flight load
 * in LOAD_CALL mode: the function runs once for concurrent equal calls, all
 * its results are kept, and an error it raises is raised again to every
 * caller.  Everything on the hit path is C: no Lua frame, no string built
 * for the key. */
#include <lauxlib.h>
#include <string.h>

#include "largs.h"
#include "lcache.h"
#include "lkey.h"
#include "ltype.h"

#define MEMO_MT "ac.memo"
#define MEMO_MAGIC 0x4143454Du /* "ACEM" */

typedef struct {
  uint32_t magic;
  int skip;
  lcache *cache; /* user value 1, which keeps it alive */
} lmemo;

static lmemo *check_memo(lua_State *L, const char *fname) {
  lmemo *m = lua_touserdata(L, 1);
  if (m == NULL || lua_rawlen(L, 1) != sizeof(lmemo) || m->magic != MEMO_MAGIC)
    m = ac__ltype_check_self(L, 1, MEMO_MT, fname);
  return m;
}

/* Replaces the memo at index 1 by its cache; returns the cache. */
static lcache *memo_cache(lua_State *L, const char *fname) {
  lua_getiuservalue(L, 1, 1);
  lua_replace(L, 1);
  return ac__lcache_check(L, 1, fname);
}

/* The key of a call whose arguments are at 2..top. */
static void memo_key(lua_State *L, lmemo *m, int top, largs *k) {
  ac__largs_init(L, k);
  ac__largs_encode(k, 2 + m->skip, top);
}

static int memo_call(lua_State *L) {
  lmemo *m = check_memo(L, "__call");
  lcache *c = m->cache;
  if (c->closed) return luaL_error(L, "the cache is closed");
  int top = lua_gettop(L);
  largs k;
  memo_key(L, m, top, &k);
  ac_lookup_t r;
  int found = ac_cache_get(c->cache, LKEY_ARGS, k.p, k.n, &r);
  if (found == AC_HIT) { /* a hit: the packed results, unpacked */
    ac__largs_done(&k);
    ac__lcache_push_value(L, c, r.slot);
    return ac__lcache_unpack(L, lua_gettop(L));
  }
  lua_getiuservalue(L, 1, 2); /* fn at top+1 */
  ac__largs_pin(&k);              /* the key must outlive a yield */
  memo_cache(L, "__call");    /* the cache replaces the memo at 1 */
  lload_spec spec = {LOAD_CALL, LKEY_ARGS, k.p, k.n, top + 1, 2, top,
                     0, k.identity, 0};
  return ac__lcache_miss(L, c, &spec, found == AC_JOIN ? r.load : NULL);
}

/* memo:invalidate_cache(...): drops the entry of a call with these
 * arguments; returns whether there was one. */
static int memo_invalidate(lua_State *L) {
  lmemo *m = check_memo(L, "invalidate_cache");
  int top = lua_gettop(L);
  lcache *c = memo_cache(L, "invalidate_cache");
  largs k;
  memo_key(L, m, top, &k);
  int removed = ac_cache_delete(c->cache, LKEY_ARGS, k.p, k.n) == 0;
  ac__largs_done(&k);
  lua_pushboolean(L, removed);
  return 1;
}

/* After fn(...) returned in memo:bypass(): store and return its results. */
static int bypass_done(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  int top = (int)ctx; /* arguments at 2..top, fn copy consumed by the call */
  lmemo *m = lua_touserdata(L, 1);
  int nres = lua_gettop(L) - top;
  lua_getiuservalue(L, 1, 1);
  lcache *c = ac__lcache_check(L, -1, "bypass");
  lua_pop(L, 1);
  if (nres == 0 || lua_isnil(L, top + 1)) {
    /* nil is not cached (as in a call): the old entry goes. */
    largs k;
    memo_key(L, m, top, &k);
    ac_cache_delete(c->cache, LKEY_ARGS, k.p, k.n);
    ac__largs_done(&k);
    return nres;
  }
  /* Pack a copy of the results, keep the originals to return. */
  for (int i = 1; i <= nres; i++) lua_pushvalue(L, top + i);
  ac__lcache_pack(L, nres);
  int packed = lua_gettop(L);
  largs k;
  memo_key(L, m, top, &k);
  ac__largs_pin(&k); /* first: what follows may raise; ac__lcache_store takes the top */
  if (k.identity) {
    lua_createtable(L, top - 1, 0);
    for (int i = 2; i <= top; i++) {
      lua_pushvalue(L, i);
      lua_rawseti(L, -2, i - 1);
    }
    lua_setfield(L, packed, "args");
  }
  lua_pushvalue(L, packed);
  ac__lcache_store(L, c, LKEY_ARGS, k.p, k.n, 0);
  lua_settop(L, top + nres);
  return nres;
}

/* memo:bypass(...): calls the function without looking at the cache (the
 * seed's use_cache=False) and refreshes the entry with its results. */
static int memo_bypass(lua_State *L) {
  check_memo(L, "bypass");
  int top = lua_gettop(L);
  lua_getiuservalue(L, 1, 2);
  for (int i = 2; i <= top; i++) lua_pushvalue(L, i);
  lua_callk(L, top - 1, LUA_MULTRET, (lua_KContext)top, bypass_done);
  return bypass_done(L, LUA_OK, (lua_KContext)top);
}

/* Calls the cache's method `name` and returns its nres results. */
static int forward_to_cache(lua_State *L, const char *fname, const char *name,
                            int nres) {
  check_memo(L, fname);
  memo_cache(L, fname);
  lua_getfield(L, 1, name);
  lua_pushvalue(L, 1);
  lua_call(L, 1, nres);
  return nres;
}

static int memo_cache_clear(lua_State *L) { return forward_to_cache(L, "cache_clear", "clear", 0); }

static int memo_metrics(lua_State *L) { return forward_to_cache(L, "get_metrics", "get_metrics", 1); }

/* memo:cache(): the AsyncCache behind the decorated function. */
static int memo_get_cache(lua_State *L) {
  check_memo(L, "cache");
  lua_getiuservalue(L, 1, 1);
  return 1;
}

/* memo:func(): the wrapped function. */
static int memo_func(lua_State *L) {
  check_memo(L, "func");
  lua_getiuservalue(L, 1, 2);
  return 1;
}

static int memo_tostring(lua_State *L) {
  lua_pushfstring(L, "decorated function: %p", lua_touserdata(L, 1));
  return 1;
}

/* memoize(cache, fn, skip_args) */
static int memoize(lua_State *L) {
  ac__lcache_check(L, 1, "memoize");
  luaL_checkany(L, 2);
  lua_Integer skip = luaL_checkinteger(L, 3);
  luaL_argcheck(L, skip >= 0 && skip < 250, 3, "skip_args out of range");
  lmemo *m = lua_newuserdatauv(L, sizeof *m, 2);
  m->magic = MEMO_MAGIC;
  m->skip = (int)skip;
  m->cache = lua_touserdata(L, 1);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 2);
  luaL_setmetatable(L, MEMO_MT);
  return 1;
}

/* args_key(...): the key a decorated function without skip_args gives
 * these arguments (largs.h), as a binary string, for Lua code that keys
 * calls the way decorated functions do (agent_cache: its tools' cache keys
 * and call histories).  A second result, true, says an argument was keyed
 * by identity: the caller must keep it alive while the key is in use, or
 * another object could get its address and its key. */
int ac__lmemo_args_key(lua_State *L) {
  int top = lua_gettop(L);
  largs k;
  ac__largs_init(L, &k);
  ac__largs_encode(&k, 1, top);
  ac__largs_pin(&k); /* a long key: a copy on the stack, so the push may raise */
  lua_pushlstring(L, k.p, k.n);
  if (!k.identity) return 1;
  lua_pushboolean(L, 1);
  return 2;
}

/* is_memo(x): is x a decorated function? */
static int is_memo(lua_State *L) {
  lua_pushboolean(L, luaL_testudata(L, 1, MEMO_MT) != NULL);
  return 1;
}

void ac__lmemo_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"invalidate_cache", memo_invalidate},
      {"bypass", memo_bypass},
      {"cache_clear", memo_cache_clear},
      {"get_metrics", memo_metrics},
      {"cache", memo_get_cache},
      {"func", memo_func},
      {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__call", memo_call},
                                  {"__tostring", memo_tostring},
                                  {NULL, NULL}};
  ac__ltype_register(L, MEMO_MT, "decorated function", methods, meta);
  lua_pushcfunction(L, memoize);
  lua_pushcfunction(L, is_memo);
}
