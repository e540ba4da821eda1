/* cache:warmup(loaders[, opts]): loads many keys concurrently.
 *
 * loaders is { [key] = loader }.  Every key is checked before anything
 * starts; keys already cached are skipped; each missing key is fetched by
 * a task of its own running cache:get(key, loader) (so it joins a load in
 * progress, and loads run concurrently, each under the cache's
 * load_timeout), and the caller waits for all of them.  A group userdata
 * counts what is left; its user value is the table of errors. */
#include <lauxlib.h>
#include <math.h>

#include "lcache.h"
#include "lkey.h"
#include "ltype.h"

static const char *const WARMUP_OPTIONS[] = {"ttl", NULL};

typedef struct {
  ltask *task; /* the caller, parked until pending reaches 0 */
  int pending;
  int loaded;
} warm_group;

/* The end of one key's task: stack group, key, then get's results (or
 * the error object when get raised). */
static int warm_done(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  warm_group *g = lua_touserdata(L, 1);
  int ok = status == LUA_OK || status == LUA_YIELD;
  if (ok && !lua_isnil(L, 3)) {
    g->loaded++;
  } else if (!ok || !lua_isnil(L, 4)) {
    lua_getiuservalue(L, 1, 1);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, ok ? 4 : -3);
    lua_rawset(L, -3);
  }
  if (--g->pending == 0 && g->task != NULL) lsched_wake(g->task, NULL);
  return 0;
}

/* warm_one(group, key, cache, key, loader-or-opts), in its own task. */
static int warm_one(lua_State *L) {
  lua_pushcfunction(L, lcache_get);
  lua_insert(L, 3);
  int st = lua_pcallk(L, 3, 2, 0, 0, warm_done);
  return warm_done(L, st, 0);
}

/* Resumed caller: loaded, errors (nil when none); the group is at 3. */
static int warm_collect(lua_State *L, int status, lua_KContext ctx) {
  (void)status, (void)ctx;
  warm_group *g = lua_touserdata(L, 3);
  lua_pushinteger(L, g->loaded);
  lua_getiuservalue(L, 3, 1);
  lua_pushnil(L);
  if (lua_next(L, -2) == 0) { /* no error: nil instead of {} */
    lua_pop(L, 1);
    lua_pushnil(L);
    return 2;
  }
  lua_pop(L, 2);
  return 2;
}

static void check_key(lua_State *L, int idx) {
  int t = lua_type(L, idx);
  if ((t == LUA_TSTRING || t == LUA_TBOOLEAN || t == LUA_TNUMBER) &&
      !(t == LUA_TNUMBER && isnan(lua_tonumber(L, idx))))
    return;
  luaL_error(L, "cache:warmup(): key must be a string, number or boolean, got %s",
             ltype_describe(L, idx));
}

int lcache_warmup(lua_State *L) {
  lcache *c = lcache_check(L, 1, "warmup");
  lua_settop(L, 3);
  if (lua_type(L, 2) != LUA_TTABLE)
    return luaL_error(L, "cache:warmup(): loaders must be a table of key = loader, got %s",
                      luaL_typename(L, 2));
  double ttl = 0;
  if (!lua_isnil(L, 3)) {
    if (lua_type(L, 3) != LUA_TTABLE)
      return luaL_error(L, "cache:warmup(): opts must be a table, got %s", luaL_typename(L, 3));
    ltype_check_options(L, 3, "cache:warmup()", WARMUP_OPTIONS);
    lua_pushliteral(L, "ttl");
    if (lua_rawget(L, 3) != LUA_TNIL) ttl = lcache_check_ttl(L, -1, "cache:warmup()");
    lua_pop(L, 1);
  }
  /* 4: the missing keys and their loaders, as a list of pairs. */
  lua_newtable(L);
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, 2) != 0) {
    check_key(L, -2);
    if (!lcache_is_callable(L, -1))
      return luaL_error(L, "cache:warmup(): the loader for key %s must be a function, got %s",
                        luaL_tolstring(L, -2, NULL), luaL_typename(L, -2));
    lkey k;
    lkey_get(L, -2, &k, "warmup");
    if (ac_cache_peek(c->cache, k.tag, k.p, k.len) != 0) {
      lua_pop(L, 1);
      continue;
    }
    lua_rawseti(L, 4, ++n * 2);   /* the loader */
    lua_pushvalue(L, -1);
    lua_rawseti(L, 4, n * 2 - 1); /* the key */
  }
  if (n == 0) {
    lua_pushinteger(L, 0);
    lua_pushnil(L);
    return 2;
  }
  if (!lsched_can_wait(L))
    return luaL_error(L, "cache:warmup() must wait for its loads, which needs a coroutine run by "
                         "the cache runtime: call it inside runtime.run(fn) or "
                         "runtime.spawn(fn), or run the script with acache");
  lua_settop(L, 4);
  warm_group *g = lua_newuserdatauv(L, sizeof *g, 1); /* 5 */
  g->task = NULL;
  g->pending = 0;
  g->loaded = 0;
  lua_newtable(L);
  lua_setiuservalue(L, 5, 1);
  for (int i = 1; i <= n; i++) {
    lua_pushcfunction(L, warm_one);
    lua_pushvalue(L, 5);
    lua_rawgeti(L, 4, i * 2 - 1);
    lua_pushvalue(L, 1);
    lua_rawgeti(L, 4, i * 2 - 1);
    if (ttl > 0) { /* { loader = f, ttl = ttl } */
      lua_createtable(L, 0, 2);
      lua_rawgeti(L, 4, i * 2);
      lua_setfield(L, -2, "loader");
      lua_pushnumber(L, ttl);
      lua_setfield(L, -2, "ttl");
    } else {
      lua_rawgeti(L, 4, i * 2);
    }
    lsched_spawn(L, TASK_SPAWN, 5);
    g->pending++;
  }
  lua_pushvalue(L, 5);
  lua_replace(L, 3); /* the group, for warm_collect */
  lua_settop(L, 3);
  g->task = lsched_park(L, "cache:warmup()");
  return lua_yieldk(L, 0, 0, warm_collect);
}
