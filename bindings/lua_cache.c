/* The cache object of cache.core ("ac.cache") and its methods.
 *
 * Values live in a Lua table owned by the cache (values[slot]); the core
 * cache (ac_cache_t) maps keys to slots and runs loads.  A hit is a core
 * lookup plus one rawgeti: it neither yields nor allocates.  Misses go to
 * the loads (lua_load.c), get_many to lua_many.c.  Option checking and
 * defaults, warmup and the public constructor are in
 * lua/cache/async_cache.lua. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lcache.h"
#include "ltype.h"
#include "lkey.h"
#include "lremote.h"
#include "lsched.h"

#define CACHE_MT "ac.cache"
#define CACHE_MAGIC 0x41434348u /* "ACCH" */

/* ---- helpers ----------------------------------------------------------- */

lcache *ac__lcache_check(lua_State *L, int idx, const char *fname) {
  lcache *c = lua_touserdata(L, idx);
  if (c == NULL || lua_rawlen(L, idx) != sizeof(lcache) || c->magic != CACHE_MAGIC)
    c = ac__ltype_check_self(L, idx, CACHE_MT, fname);
  if (c->closed) luaL_error(L, "the cache is closed");
  return c;
}

/* Options are read with lua_getfield, which runs metamethods that may
 * close the cache: check again before touching the store. */
static void still_open(lua_State *L, lcache *c) {
  if (c->closed) luaL_error(L, "the cache is closed");
}

static void on_removed(void *ud, uint32_t slot, int tag, const char *key,
                       size_t len, ac_removed_t why) {
  lcache *c = ud;
  (void)tag, (void)key, (void)len, (void)why;
  lua_State *L = ac__lsched_cbstate(c->ls);
  if (!lua_checkstack(L, 3)) return; /* the value goes with the next write */
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->values_ref);
  lua_pushnil(L);
  lua_rawseti(L, -2, (lua_Integer)slot);
  lua_pop(L, 1);
}

/* A shrinking store renumbers an entry: its value moves with it.  Slots
 * below values_cap are in the table's array part, so the move does not
 * allocate; it still runs protected, so that nothing could unwind through
 * the store and libuv (the stack was checked: lua_checkstack). */
static int move_value(lua_State *L) {
  lua_Integer from = lua_tointeger(L, 2), to = lua_tointeger(L, 3);
  lua_rawgeti(L, 1, from);
  lua_rawseti(L, 1, to);
  lua_pushnil(L);
  lua_rawseti(L, 1, from);
  return 0;
}

static int on_moved(void *ud, uint32_t from, uint32_t to) {
  lcache *c = ud;
  if (c->pinned) return 1; /* a snapshot is being taken by slot */
  lua_State *L = ac__lsched_cbstate(c->ls);
  if (!lua_checkstack(L, 6)) return 1;
  lua_pushcfunction(L, move_value);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->values_ref);
  lua_pushinteger(L, (lua_Integer)from);
  lua_pushinteger(L, (lua_Integer)to);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
    lua_pop(L, 1);
    return 1;
  }
  return 0;
}

static int compact_protected(lua_State *L) {
  ac__lcache_resize_values(L, lua_touserdata(L, 1), (uint32_t)lua_tointeger(L, 2));
  return 0;
}

/* The store shrank: Lua never shrinks the array part of a table whose
 * slots are set to nil, so the values table is rebuilt at the new size.
 * Every user of the table fetches it from the registry, and none holds it
 * across a yield, so the swap is invisible. */
static void on_compact(void *ud, uint32_t slots) {
  lcache *c = ud;
  lua_State *L = ac__lsched_cbstate(c->ls);
  if (!lua_checkstack(L, 4)) return;
  lua_pushcfunction(L, compact_protected);
  lua_pushlightuserdata(L, c);
  lua_pushinteger(L, (lua_Integer)slots);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) lua_pop(L, 1); /* no memory: keep the old table */
}

int ac__lcache_is_callable(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TFUNCTION) return 1;
  if (luaL_getmetafield(L, idx, "__call") == LUA_TNIL) return 0;
  lua_pop(L, 1);
  return 1;
}

double ac__lcache_check_ttl(lua_State *L, int idx, const char *who) {
  if (lua_type(L, idx) != LUA_TNUMBER || !(lua_tonumber(L, idx) > 0))
    luaL_error(L, "%s: opts.ttl must be a positive number of seconds, got %s", who,
               lua_type(L, idx) == LUA_TNUMBER ? ac__ltype_describe(L, idx)
                                                : luaL_typename(L, idx));
  return lua_tonumber(L, idx);
}

void ac__lcache_check_callable(lua_State *L, int idx, const char *who, const char *name) {
  if (!ac__lcache_is_callable(L, idx))
    luaL_error(L, "%s: opts.%s must be a function, got %s", who, name, luaL_typename(L, idx));
}

static const char *const GET_OPTIONS[] = {"loader", "ttl", "batch_loader", NULL};
static const char *const SET_OPTIONS[] = {"ttl", NULL};

/* The third argument of get(): nil, a loader, or { loader =, ttl =,
 * batch_loader = }.  Returns the stack index of the loader (0: none) and
 * sets *batch to that of a per-call batch loader. */
static int get_options(lua_State *L, lcache *c, double *ttl, int *batch) {
  *ttl = 0; /* the cache's default */
  *batch = 0;
  switch (lua_type(L, 3)) {
    case LUA_TNONE:
    case LUA_TNIL:
      return 0;
    case LUA_TFUNCTION:
      return 3;
    case LUA_TTABLE:
      if (ac__lcache_is_callable(L, 3)) return 3;
      break;
    default:
      if (ac__lcache_is_callable(L, 3)) return 3;
      luaL_error(L, "cache:get(): the third argument must be a loader function or an options table, got %s",
                 luaL_typename(L, 3));
  }
  lua_settop(L, 3);
  ac__ltype_check_options(L, 3, "cache:get()", GET_OPTIONS);
  if (lua_getfield(L, 3, "ttl") != LUA_TNIL) *ttl = ac__lcache_check_ttl(L, -1, "cache:get()");
  lua_pop(L, 1);
  if (lua_getfield(L, 3, "batch_loader") != LUA_TNIL) {
    ac__lcache_check_callable(L, -1, "cache:get()", "batch_loader");
    *batch = 4;
  } /* index 4, nil or the batch loader, keeps the stack shape fixed */
  if (lua_getfield(L, 3, "loader") != LUA_TNIL) {
    ac__lcache_check_callable(L, -1, "cache:get()", "loader");
    if (*batch)
      luaL_error(L, "cache:get(): give opts.loader or opts.batch_loader, not both");
    lua_replace(L, 3); /* the options table is no longer needed */
    still_open(L, c);
    return 3;
  }
  lua_pop(L, 1);
  if (*batch) {
    lua_replace(L, 3);
    *batch = 3;
  }
  still_open(L, c);
  return 0;
}

/* ---- methods ------------------------------------------------------------- */

int ac__lcache_get(lua_State *L) {
  lcache *c = ac__lcache_check(L, 1, "get");
  lkey k;
  lkey_get(L, 2, &k, "get");
  double ttl;
  int batch, loader = get_options(L, c, &ttl, &batch);
  ac_lookup_t r;
  int found = ac_cache_get(c->cache, k.tag, k.p, k.len, &r);
  if (found == AC_HIT) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->values_ref);
    lua_rawgeti(L, -1, r.slot);
    return 1; /* a hit: no yield, no allocation */
  }
  if (loader == 0 && batch == 0 && c->batch_fn_ref != LUA_NOREF) {
    lua_settop(L, 3);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->batch_fn_ref);
    batch = 4;
  }
  lload_spec spec = {LOAD_GET, k.tag, k.p, k.len, loader, 2, 2, ttl, 0, batch};
  return ac__lcache_miss(L, c, &spec, found == AC_JOIN ? r.load : NULL);
}

static int cache_set(lua_State *L) {
  lcache *c = ac__lcache_check(L, 1, "set");
  lkey k;
  lkey_get(L, 2, &k, "set");
  if (lua_isnoneornil(L, 3))
    return luaL_error(L, "cache:set(): value must not be nil (use cache:delete(key) to remove a key)");
  double ttl = 0; /* the cache's default */
  if (!lua_isnoneornil(L, 4)) {
    if (!lua_istable(L, 4))
      return luaL_error(L, "cache:set(): opts must be a table, got %s", luaL_typename(L, 4));
    ac__ltype_check_options(L, 4, "cache:set()", SET_OPTIONS);
    if (lua_getfield(L, 4, "ttl") != LUA_TNIL) ttl = ac__lcache_check_ttl(L, -1, "cache:set()");
    lua_pop(L, 1);
    still_open(L, c);
  }
  lua_pushvalue(L, 3);
  ac__lcache_store(L, c, k.tag, k.p, k.len, ttl);
  return 0;
}

static int cache_delete(lua_State *L) {
  lcache *c = ac__lcache_check(L, 1, "delete");
  lkey k;
  lkey_get(L, 2, &k, "delete");
  lua_pushboolean(L, ac_cache_delete(c->cache, k.tag, k.p, k.len) == 0);
  return 1;
}

static int cache_clear(lua_State *L) {
  lcache *c = ac__lcache_check(L, 1, "clear");
  ac_cache_clear(c->cache);
  return 0;
}

static int cache_contains(lua_State *L) {
  lcache *c = ac__lcache_check(L, 1, "contains");
  lkey k;
  lkey_get(L, 2, &k, "contains");
  lua_pushboolean(L, ac_cache_peek(c->cache, k.tag, k.p, k.len) != 0);
  return 1;
}

static void set_counter(lua_State *L, const char *name, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, name);
}

static void set_count(lua_State *L, const char *name, uint64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, name);
}

static int cache_metrics(lua_State *L) {
  lcache *c = ac__lcache_check(L, 1, "get_metrics");
  ac_cache_stats_t st;
  ac_cache_stats(c->cache, &st);
  lua_createtable(L, 0, 20);
  set_count(L, "hits", st.hits);
  set_count(L, "misses", st.misses);
  set_count(L, "loads", st.loads);
  set_count(L, "load_errors", st.load_errors);
  set_count(L, "load_timeouts", st.load_timeouts);
  set_count(L, "evictions", st.evictions);
  set_count(L, "expirations", st.expirations);
  set_count(L, "size", st.size);
  set_count(L, "maxsize", st.maxsize);
  set_count(L, "in_flight", st.in_flight);
  set_count(L, "batches", st.batches);
  set_count(L, "batched_keys", st.batched_keys);
  set_count(L, "memory_bytes", st.memory_bytes);
  set_count(L, "unencodable", st.unencodable + c->unencodable);
  set_count(L, "remote_hits", st.backend_hits);
  set_count(L, "remote_misses", st.backend_misses);
  set_count(L, "remote_errors", st.backend_errors);
  ac_redis_stats_t rs;
  if (c->remote != NULL && ac_redis_stats(c->remote, &rs) == 0) {
    set_count(L, "remote_timeouts", rs.timeouts);
    set_count(L, "remote_invalidations", rs.invalidations);
    lua_pushstring(L, ac_redis_state_name(rs.state));
    lua_setfield(L, -2, "remote_state");
    if (rs.last_error[0]) {
      lua_pushstring(L, rs.last_error);
      lua_setfield(L, -2, "remote_last_error");
    }
  }
  uint64_t lookups = st.hits + st.misses;
  set_counter(L, "hit_rate", lookups ? (double)st.hits / (double)lookups : 0.0);
  return 1;
}

static void close_cache(lua_State *L, lcache *c) {
  if (c->closed) return;
  c->closed = 1;
  /* Open loads release their waiters; loaders still running find their
   * load closed and drop their result; every entry is reported removed
   * (values[slot] = nil). */
  ac_cache_free(c->cache);
  c->cache = NULL;
  ac_backend_free(c->remote); /* after its cache: see ac_backend.h */
  c->remote = NULL;
  ac_codec_writer_free(&c->enc);
  luaL_unref(L, LUA_REGISTRYINDEX, c->batch_fn_ref);
  c->batch_fn_ref = LUA_NOREF;
  luaL_unref(L, LUA_REGISTRYINDEX, c->values_ref);
  c->values_ref = LUA_NOREF;
}

static int cache_close(lua_State *L) {
  lcache *c = ac__ltype_check_self(L, 1, CACHE_MT, "close");
  close_cache(L, c);
  return 0;
}

static int cache_is_closed(lua_State *L) {
  lcache *c = ac__ltype_check_self(L, 1, CACHE_MT, "is_closed");
  lua_pushboolean(L, c->closed);
  return 1;
}

static int cache_tostring(lua_State *L) {
  lcache *c = ac__ltype_check_self(L, 1, CACHE_MT, "__tostring");
  if (c->closed) {
    lua_pushfstring(L, "AsyncCache (closed): %p", (void *)c);
  } else {
    ac_cache_stats_t st;
    ac_cache_stats(c->cache, &st);
    lua_pushfstring(L, "AsyncCache (%d/%d entries): %p", (int)st.size,
                    (int)st.maxsize, (void *)c);
  }
  return 1;
}

/* A number field of the options table at 1, or def when absent. */
static double opt_number(lua_State *L, const char *name, double def) {
  double v = lua_getfield(L, 1, name) == LUA_TNIL ? def : lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

/* core.new_cache(opts): opts as cache.AsyncCache checked them (maxsize,
 * default_ttl, load_timeout, batch_loader, batch_window_ms,
 * max_batch_size, batch_result); the core refuses what is out of range. */
static int new_cache(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  ac_cache_options_t o = {0};
  o.maxsize = (uint32_t)opt_number(L, "maxsize", 128);
  o.default_ttl = opt_number(L, "default_ttl", 0);
  o.load_timeout = opt_number(L, "load_timeout", 0);
  o.batch_window = opt_number(L, "batch_window_ms", 5) / 1000.0;
  o.sweep_interval = opt_number(L, "sweep_interval", 0);
  double max_batch = opt_number(L, "max_batch_size", 100);
  o.max_batch_size = max_batch >= 1 && max_batch <= 0x7fffffff ? (uint32_t)max_batch : 0;
  o.load_data_size = sizeof(lload);
  o.batch_data_size = ac__lbatch_data_size();
  lua_getfield(L, 1, "batch_result");
  static const char *const forms[] = {"auto", "map", "array", NULL};
  int batch_result = luaL_checkoption(L, -1, "auto", forms);
  lua_pop(L, 1);
  lsched *ls = ac__lsched_get(L);
  lcache *c = lua_newuserdatauv(L, sizeof *c, 0);
  /* Open from the start, with nothing in it: when a step below raises
   * (no memory), __gc frees what the steps before it made.  The magic,
   * set last, keeps a half-built cache from being used. */
  memset(c, 0, sizeof *c);
  c->values_ref = LUA_NOREF;
  c->batch_fn_ref = LUA_NOREF;
  ac_codec_writer_init(&c->enc);
  luaL_setmetatable(L, CACHE_MT);
  o.sched = ac__lsched_sched(ls);
  o.ops.removed = on_removed;
  o.ops.moved = on_moved;
  o.ops.compact = on_compact;
  o.ops.dispatch = ac__lbatch_dispatch;
  o.ud = c;
  c->ls = ls;
  if (lua_getfield(L, 1, "remote_cache") != LUA_TNIL) c->remote = ac__lremote_new(L, -1, c);
  lua_pop(L, 1);
  if (c->remote == NULL && lua_getfield(L, 1, "redis") != LUA_TNIL) c->remote = ac__lredis_new(L, -1, c);
  lua_settop(L, 2);
  if (c->remote != NULL) {
    o.backend = c->remote;
    ac__lremote_ops(&o.ops);
  }
  int err;
  c->cache = ac_cache_new(&o, &err);
  if (c->cache == NULL)
    return luaL_error(L, "cannot create the cache: %s", ac_strerror(err));
  lua_createtable(L, 0, 0);
  c->values_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  c->maxsize = o.maxsize;
  c->batch_result = batch_result;
  if (lua_getfield(L, 1, "batch_loader") != LUA_TNIL)
    c->batch_fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else
    lua_pop(L, 1);
  c->magic = CACHE_MAGIC;
  return 1;
}

void ac__lcache_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"get", ac__lcache_get},         {"get_many", ac__lcache_get_many},
      {"set", cache_set},         {"warmup", ac__lcache_warmup},
      {"delete", cache_delete},   {"clear", cache_clear},
      {"contains", cache_contains}, {"get_metrics", cache_metrics},
      {"close", cache_close},     {"is_closed", cache_is_closed},     {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", cache_close},
                                  {"__close", cache_close},
                                  {"__tostring", cache_tostring},
                                  {NULL, NULL}};
  ac__ltype_register(L, CACHE_MT, "AsyncCache", methods, meta);
  lua_pushcfunction(L, new_cache);
}
