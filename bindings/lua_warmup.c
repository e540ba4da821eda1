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

typedef struct warm_group warm_group;

typedef struct {
  warm_group *g;
  int lost; /* its task died before it could hand over an outcome */
} warm_slot;

struct warm_group {
  ltask *task;   /* the caller, parked until pending reaches 0 */
  lsched *ls;
  int pending;
  int abandoned; /* warmup raised after starting tasks: nobody collects */
  int self_ref;  /* anchors the group while tasks point into it */
  warm_slot slot[];
};

/* The end of one key's get: stack key, then get's results (or the error
 * object when get raised).  Returns (value, err). */
static int warm_done(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  if (status != LUA_OK && status != LUA_YIELD) { /* get raised: nil, err */
    lua_pushnil(L);
    lua_insert(L, -2);
  }
  return 2;
}

/* warm_one(cache, key, loader-or-opts) -> value, err: the body of one
 * key's task. */
static int warm_one(lua_State *L) {
  lua_pushcfunction(L, ac__lcache_get);
  lua_insert(L, 1);
  int st = lua_pcallk(L, 3, 2, 0, 0, warm_done);
  return warm_done(L, st, 0);
}

/* A key's task has finished (st, nres values on t->co).  Nothing here may
 * raise or allocate a Lua object: the outcome goes onto the parked
 * caller's stack as (i, value, err), or the slot is marked lost. */
static void warm_finished(warm_slot *s, ltask *t, int st, int nres) {
  warm_group *g = s->g;
  int i = (int)(s - g->slot);
  if (g->abandoned) {
    lua_pop(t->co, nres);
  } else if (st == LUA_OK && nres == 2 && lua_checkstack(g->task->co, 4)) {
    lua_pushinteger(g->task->co, i);
    lua_xmove(t->co, g->task->co, 2);
    g->task->nargs += 3;
  } else {
    lua_pop(t->co, st == LUA_OK ? nres : 1);
    s->lost = 1;
  }
  ac__lsched_release_loader(g->ls, t, st);
  if (--g->pending > 0) return;
  if (g->abandoned) luaL_unref(ac__lsched_cbstate(g->ls), LUA_REGISTRYINDEX, g->self_ref);
  else ac__lsched_wake(g->task, NULL);
}

static void on_task_done(ltask *t, int st, int nres) {
  warm_finished(t->done_ud, t, st, nres);
}

/* Resumed caller: stack 1..6 as when it parked (the list of pairs at 4,
 * the group at 5, the outcomes of keys that finished inline at 6: value
 * at 2i+1, err at 2i+2), then (i, value, err) per key that finished in the
 * background.  Returns loaded, errors (nil when none). */
static int warm_collect(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  int n = (int)ctx;
  warm_group *g = lua_touserdata(L, 5);
  luaL_unref(L, LUA_REGISTRYINDEX, g->self_ref);
  g->self_ref = LUA_NOREF;
  int top = lua_gettop(L), loaded = 0;
  lua_newtable(L); /* errors */
  int errors = lua_gettop(L);
  for (int i = 0; i < n; i++) {
    if (lua_rawgeti(L, 6, i * 2 + 1) != LUA_TNIL) {
      loaded++;
    } else if (lua_rawgeti(L, 6, i * 2 + 2) != LUA_TNIL) {
      lua_rawgeti(L, 4, i * 2 + 1);
      lua_insert(L, -2);
      lua_settable(L, errors);
    }
    lua_settop(L, errors);
  }
  for (int at = 7; at + 2 <= top; at += 3) {
    int i = (int)lua_tointeger(L, at);
    if (!lua_isnil(L, at + 1)) {
      loaded++;
    } else if (!lua_isnil(L, at + 2)) {
      lua_rawgeti(L, 4, i * 2 + 1);
      lua_pushvalue(L, at + 2);
      lua_settable(L, errors);
    }
  }
  for (int i = 0; i < n; i++)
    if (g->slot[i].lost) {
      lua_rawgeti(L, 4, i * 2 + 1);
      lua_pushliteral(L, "not enough memory");
      lua_settable(L, errors);
    }
  lua_pushinteger(L, loaded);
  lua_pushvalue(L, errors);
  lua_pushnil(L);
  if (lua_next(L, errors) == 0) { /* no error: nil instead of {} */
    lua_pop(L, 1);
    lua_pushnil(L);
    return 2;
  }
  lua_pop(L, 2);
  return 2;
}

/* warm_start(cache, list, group, ttl, inline): starts one task per key,
 * each run inline until it first waits; outcomes of keys that finish
 * inline go to the inline table.  Under lua_pcall: an error after some
 * tasks started abandons the group to them. */
static int warm_start(lua_State *L) {
  warm_group *g = lua_touserdata(L, 3);
  double ttl = lua_tonumber(L, 4);
  int n = (int)(lua_rawlen(L, 2) / 2);
  for (int i = 0; i < n; i++) {
    ltask *t = ac__lsched_loader(g->ls, L);
    if (!lua_checkstack(t->co, 5) || !lua_checkstack(L, 6)) {
      ac__lsched_release_loader(g->ls, t, LUA_OK);
      return luaL_error(L, "not enough memory");
    }
    lua_pushcfunction(L, warm_one);
    lua_pushvalue(L, 1);
    lua_rawgeti(L, 2, i * 2 + 1);
    if (ttl > 0) { /* { loader = f, ttl = ttl } */
      lua_createtable(L, 0, 2);
      lua_rawgeti(L, 2, i * 2 + 2);
      lua_setfield(L, -2, "loader");
      lua_pushnumber(L, ttl);
      lua_setfield(L, -2, "ttl");
    } else {
      lua_rawgeti(L, 2, i * 2 + 2);
    }
    lua_xmove(L, t->co, 4);
    g->slot[i].g = g;
    g->slot[i].lost = 0;
    t->done = on_task_done;
    t->done_ud = &g->slot[i];
    g->pending++;
    int nres, st = ac__lsched_start_loader(g->ls, L, t, 3, &nres);
    if (st == LUA_YIELD) continue;
    g->pending--;
    if (st == LUA_OK && nres == 2) {
      lua_xmove(t->co, L, 2);
      ac__lsched_release_loader(g->ls, t, st);
      lua_rawseti(L, 5, i * 2 + 2); /* err */
      lua_rawseti(L, 5, i * 2 + 1); /* value */
    } else {
      lua_pop(t->co, st == LUA_OK ? nres : 1);
      ac__lsched_release_loader(g->ls, t, st);
      g->slot[i].lost = 1;
    }
  }
  return 0;
}

static void check_key(lua_State *L, int idx) {
  int t = lua_type(L, idx);
  if ((t == LUA_TSTRING || t == LUA_TBOOLEAN || t == LUA_TNUMBER) &&
      !(t == LUA_TNUMBER && isnan(lua_tonumber(L, idx))))
    return;
  luaL_error(L, "cache:warmup(): key must be a string, number or boolean, got %s",
             ac__ltype_describe(L, idx));
}

int ac__lcache_warmup(lua_State *L) {
  lcache *c = ac__lcache_check(L, 1, "warmup");
  lua_settop(L, 3);
  if (lua_type(L, 2) != LUA_TTABLE)
    return luaL_error(L, "cache:warmup(): loaders must be a table of key = loader, got %s",
                      luaL_typename(L, 2));
  double ttl = 0;
  if (!lua_isnil(L, 3)) {
    if (lua_type(L, 3) != LUA_TTABLE)
      return luaL_error(L, "cache:warmup(): opts must be a table, got %s", luaL_typename(L, 3));
    ac__ltype_check_options(L, 3, "cache:warmup()", WARMUP_OPTIONS);
    lua_pushliteral(L, "ttl");
    if (lua_rawget(L, 3) != LUA_TNIL) ttl = ac__lcache_check_ttl(L, -1, "cache:warmup()");
    lua_pop(L, 1);
  }
  /* 4: the missing keys and their loaders, as a list of pairs. */
  lua_newtable(L);
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, 2) != 0) {
    check_key(L, -2);
    if (!ac__lcache_is_callable(L, -1))
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
  if (!ac__lsched_can_wait(L))
    return luaL_error(L, "cache:warmup() must wait for its loads, which needs a coroutine run by "
                         "the cache runtime: call it inside runtime.run(fn) or "
                         "runtime.spawn(fn), or run the script with acache");
  lua_settop(L, 4);
  warm_group *g = lua_newuserdatauv(L, sizeof *g + (size_t)n * sizeof(warm_slot), 0); /* 5 */
  g->task = ac__lsched_park(L, "cache:warmup()");
  g->ls = c->ls;
  g->pending = 0;
  g->abandoned = 0;
  lua_pushvalue(L, 5);
  g->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_createtable(L, 2 * n, 0); /* 6: outcomes of keys finished inline */
  /* The list holds keys at odd and loaders at even indices, from 1. */
  lua_pushcfunction(L, warm_start);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 4);
  lua_pushvalue(L, 5);
  lua_pushnumber(L, ttl);
  lua_pushvalue(L, 6);
  if (lua_pcall(L, 5, 0, 0) != LUA_OK) {
    g->task->parked = 0; /* it will not wait */
    if (g->pending > 0) g->abandoned = 1; /* the last task unanchors */
    else luaL_unref(L, LUA_REGISTRYINDEX, g->self_ref);
    return lua_error(L);
  }
  if (g->pending == 0) { /* every key finished inline */
    g->task->parked = 0;
    return warm_collect(L, LUA_OK, n);
  }
  return lua_yieldk(L, 0, n, warm_collect);
}
