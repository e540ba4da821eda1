/* The cache object of cache.core ("ac.cache"): store + flights + loads.
 *
 * Values live in a Lua table owned by the cache (values[slot]); the C store
 * maps keys to slots.  A hit is a store lookup plus one rawgeti: it neither
 * yields nor allocates.  A miss with a loader opens a flight and runs the
 * loader in a pooled thread of its own:
 *   - the loader returns without yielding: the value is stored and returned
 *     at once, the caller never yields;
 *   - the loader yields (I/O, sleep): it carries on as a background task,
 *     the caller joins the flight like every later caller, and all of them
 *     are woken with the one result.  A timer bounds the wait
 *     (load_timeout); a result arriving after it is dropped.
 * A load in progress (lload) anchors its cache, so the cache cannot be
 * collected while a loader still runs.  Policy (option defaults, warmup,
 * the public constructor) is in lua/cache.lua. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lcache.h"
#include "lkey.h"
#include "lsched.h"

#define CACHE_MT "ac.cache"
#define CACHE_MAGIC 0x41434348u /* "ACCH" */
#define SWEEP_INTERVAL_MS 1000
#define SWEEP_MIN_CHECKS 1024u

struct lload {
  lcache *c;
  int mode;      /* LOAD_GET or LOAD_CALL */
  int anchor_ref; /* LOAD_CALL: the arguments, kept alive with the entry */
  ac_flight_t *flight; /* NULL once finished (done, timed out, cancelled) */
  lresult *result;     /* what waiters get, built when the flight finishes */
  uv_timer_t *timer;
  double ttl;
  uint32_t clear_gen;
  int stale;     /* set()/delete() of the key while loading: do not store */
  int cache_ref; /* anchors the cache while the loader runs in background */
  lload *prev, *next;
};

/* ---- helpers ----------------------------------------------------------- */

lcache *lcache_check(lua_State *L, int idx) {
  lcache *c = lua_touserdata(L, idx);
  if (c == NULL || lua_rawlen(L, idx) != sizeof(lcache) || c->magic != CACHE_MAGIC)
    c = luaL_checkudata(L, idx, CACHE_MT); /* raises the standard message */
  if (c->closed) luaL_error(L, "the cache is closed");
  c->L = L;
  return c;
}

static void on_removed(void *ud, uint32_t slot, int tag, const char *key,
                       size_t len, ac_removed_t why) {
  lcache *c = ud;
  (void)tag, (void)key, (void)len, (void)why;
  lua_State *L = c->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->values_ref);
  lua_pushnil(L);
  lua_rawseti(L, -2, (lua_Integer)slot);
  lua_pop(L, 1);
}

static int is_callable(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TFUNCTION) return 1;
  if (luaL_getmetafield(L, idx, "__call") == LUA_TNIL) return 0;
  lua_pop(L, 1);
  return 1;
}

/* A TTL option: a positive number (math.huge: never expires). */
static double check_ttl(lua_State *L, int idx, const char *name) {
  if (lua_type(L, idx) != LUA_TNUMBER || !(lua_tonumber(L, idx) > 0))
    luaL_error(L, "%s must be a positive number of seconds, got %s", name,
               lua_type(L, idx) == LUA_TNUMBER ? lua_tostring(L, idx)
                                                : luaL_typename(L, idx));
  double ttl = lua_tonumber(L, idx);
  return isinf(ttl) ? 0 : ttl;
}

/* The third argument of get(): nil, a loader, or { loader =, ttl = }. */
static int get_options(lua_State *L, lcache *c, double *ttl) {
  *ttl = c->default_ttl;
  switch (lua_type(L, 3)) {
    case LUA_TNONE:
    case LUA_TNIL:
      return 0;
    case LUA_TFUNCTION:
      return 3;
    case LUA_TTABLE:
      if (is_callable(L, 3)) return 3;
      break;
    default:
      if (is_callable(L, 3)) return 3;
      luaL_error(L, "cache:get(): the third argument must be a loader function or an options table, got %s",
                 luaL_typename(L, 3));
  }
  int loader = 0;
  if (lua_getfield(L, 3, "ttl") != LUA_TNIL) *ttl = check_ttl(L, -1, "opts.ttl");
  lua_pop(L, 1);
  if (lua_getfield(L, 3, "loader") != LUA_TNIL) {
    if (!is_callable(L, -1))
      luaL_error(L, "opts.loader must be a function, got %s", luaL_typename(L, -1));
    lua_replace(L, 3); /* the options table is no longer needed */
    loader = 3;
  } else {
    lua_pop(L, 1);
  }
  return loader;
}

/* ---- loads --------------------------------------------------------------- */

static void on_timer_closed(uv_handle_t *h) { free(h); }

static void stop_timer(lload *ld) {
  if (ld->timer == NULL) return;
  uv_timer_stop(ld->timer);
  uv_close((uv_handle_t *)ld->timer, on_timer_closed);
  ld->timer = NULL;
}

static void unlink_load(lload *ld) {
  lcache *c = ld->c;
  if (ld->prev) ld->prev->next = ld->next; else c->loads_open = ld->next;
  if (ld->next) ld->next->prev = ld->prev;
  ld->prev = ld->next = NULL;
}

/* Closes the flight of ld: every waiter is woken with ld->result (or an
 * error built from status when there is none). */
static void close_flight(lload *ld, int status) {
  ac_flight_t *f = ld->flight;
  ld->flight = NULL;
  unlink_load(ld);
  stop_timer(ld);
  if (ld->result == NULL && ac_flight_waiters(f) > 0) {
    ld->result = lresult_new((int)ac_flight_waiters(f));
    if (ld->result != NULL) {
      if (status == AC_ETIMEDOUT)
        snprintf(ld->result->cerr, sizeof ld->result->cerr,
                 "load timed out after %g seconds", ld->c->load_timeout);
      else if (status == AC_ECANCELED)
        snprintf(ld->result->cerr, sizeof ld->result->cerr,
                 "the cache was closed while loading");
      else
        snprintf(ld->result->cerr, sizeof ld->result->cerr, "load failed: %s",
                 ac_strerror(status));
    }
  }
  ac_flight_finish(f, status);
}

static void on_flight_waiter(ac_waiter_t *w, ac_flight_t *f, int status) {
  lload *ld = ac_flight_data(f);
  (void)status;
  lsched_wake(w->data, ld->result);
}

static void on_load_timeout(uv_timer_t *h) {
  lload *ld = h->data;
  ld->c->load_timeouts++;
  close_flight(ld, AC_ETIMEDOUT);
}

void lcache_pack(lua_State *L, int n) {
  /* {n, r1, ..., rn}: the count in the array part keeps unpacking to
   * rawgeti calls only. */
  int base = lua_gettop(L) - n;
  lua_createtable(L, n + 1, 0);
  lua_pushinteger(L, n);
  lua_rawseti(L, -2, 1);
  for (int i = 1; i <= n; i++) {
    lua_pushvalue(L, base + i);
    lua_rawseti(L, -2, i + 1);
  }
  lua_replace(L, base + 1);
  lua_settop(L, base + 1);
}

int lcache_unpack(lua_State *L, int idx) {
  lua_rawgeti(L, idx, 1);
  int n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  luaL_checkstack(L, n, "too many results");
  for (int i = 1; i <= n; i++) lua_rawgeti(L, idx, i + 1);
  return n;
}

void lcache_push_value(lua_State *L, lcache *c, uint32_t slot) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->values_ref);
  lua_rawgeti(L, -1, slot);
  lua_remove(L, -2);
}

/* Stores the value at the top (popped); returns 0 or an AC_E* code. */
static int store_value(lua_State *L, lcache *c, int tag, const char *key,
                       size_t len, double ttl) {
  c->L = L;
  int is_new;
  int64_t slot = ac_store_set(c->store, tag, key, len, ttl, &is_new);
  if (slot < 0) {
    lua_pop(L, 1);
    return (int)slot;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->values_ref);
  lua_insert(L, -2);
  lua_rawseti(L, -2, slot);
  lua_pop(L, 1);
  return 0;
}

void lcache_store(lua_State *L, lcache *c, int tag, const char *key,
                  size_t len, double ttl) {
  int rc = store_value(L, c, tag, key, len, ttl);
  if (rc < 0) luaL_error(L, "cannot store the value: %s", ac_strerror(rc));
  lcache_invalidate_load(c, tag, key, len);
}

/* The loader has finished on thread t (status st, nres values, or the error
 * object, on t->co).  Stores the value, wakes the waiters, frees ld.  With
 * push set, leaves the caller's results on L and returns their count
 * (LOAD_CALL failure: leaves the error object and returns -1). */
static int finish_load(lua_State *L, lload *ld, ltask *t, int st, int nres,
                       int push) {
  lcache *c = ld->c;
  int base = lua_gettop(L);
  int failed = st != LUA_OK;
  if (failed) nres = 1;
  luaL_checkstack(L, nres + 6, "too many results");
  lua_xmove(t->co, L, nres);
  lsched_release_loader(c->ls, t, st);
  /* Reduce the results at base+1 .. to one value v (or v, err). */
  int v = base + 1, nout;
  int store = 0;
  if (ld->mode == LOAD_CALL) {
    if (!failed) {
      lcache_pack(L, nres); /* v = {n, results...} */
      if (ld->anchor_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, ld->anchor_ref);
        lua_setfield(L, v, "args");
      }
      store = 1;
    }
    nout = 1; /* the packed results, or the error object */
  } else if (failed) {
    lua_pushnil(L);
    lua_insert(L, v); /* nil, err */
    nout = 2;
  } else {
    if (nres == 0) lua_pushnil(L);
    nout = (nres >= 2 && lua_isnil(L, v) && !lua_isnil(L, v + 1)) ? 2 : 1;
    failed = nout == 2; /* nil, err */
    store = !lua_isnil(L, v);
  }
  lua_settop(L, base + nout);
  if (failed) c->load_errors++;

  if (ld->flight != NULL) {
    if (store && !ld->stale && !c->closed && ld->clear_gen == c->clear_gen) {
      int tag;
      size_t len;
      const char *key = ac_flight_key(ld->flight, &tag, &len);
      lua_pushvalue(L, v);
      store_value(L, c, tag, key, len, ld->ttl); /* failure: served, not kept */
    }
    uint32_t waiters = ac_flight_waiters(ld->flight);
    if (waiters > 0) {
      int n = nout;
      if (ld->mode == LOAD_CALL) { /* waiters get (ok, packed-or-error) */
        lua_pushboolean(L, !failed);
        n = 2;
      }
      for (int i = 0; i < nout; i++) lua_pushvalue(L, v + i);
      ld->result = lresult_from_stack(L, n, (int)waiters);
    }
    close_flight(ld, failed ? AC_ELOAD : 0);
  }
  luaL_unref(L, LUA_REGISTRYINDEX, ld->cache_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, ld->anchor_ref);
  int mode = ld->mode;
  free(ld);
  if (!push) {
    lua_settop(L, base);
    return 0;
  }
  if (mode == LOAD_CALL) {
    if (failed) return -1;
    return lcache_unpack(L, v); /* the packed table below them is dropped */
  }
  return nout;
}

/* A loader that went to the background has finished (runs in a pass). */
static void on_loader_done(ltask *t, int st, int nres) {
  lload *ld = t->done_ud;
  finish_load(lsched_cbstate(t->ls), ld, t, st, nres, 0);
}

/* Resumed LOAD_CALL waiter: true, packed | false, err | nil, message. */
static int call_resumed(lua_State *L, int status, lua_KContext base) {
  (void)status;
  int first = (int)base + 1;
  if (lua_toboolean(L, first)) return lcache_unpack(L, first + 1);
  lua_settop(L, first + 1);
  return lua_error(L);
}

static int wait_flight(lua_State *L, ac_flight_t *f, int mode) {
  ltask *t = lsched_park(L, mode == LOAD_CALL ? "a decorated function" : "cache:get()");
  t->w.cb = on_flight_waiter;
  ac_flight_join(f, &t->w);
  if (mode == LOAD_CALL)
    return lua_yieldk(L, 0, (lua_KContext)lua_gettop(L), call_resumed);
  return lsched_yield(L);
}

int lcache_miss(lua_State *L, lcache *c, const lload_spec *spec) {
  ac_flight_t *f = ac_flights_find(c->flights, spec->tag, spec->key, spec->len);
  if (f != NULL) return wait_flight(L, f, spec->mode);
  if (spec->fn == 0) {
    lua_pushnil(L);
    return 1;
  }
  lload *ld = calloc(1, sizeof *ld);
  if (ld == NULL ||
      ac_flights_start(c->flights, spec->tag, spec->key, spec->len, ld, &f) != 0) {
    free(ld);
    return luaL_error(L, "out of memory");
  }
  c->loads++;
  ld->c = c;
  ld->mode = spec->mode;
  ld->flight = f;
  ld->ttl = spec->ttl;
  ld->clear_gen = c->clear_gen;
  ld->cache_ref = LUA_NOREF;
  ld->anchor_ref = LUA_NOREF;
  ld->next = c->loads_open;
  if (ld->next) ld->next->prev = ld;
  c->loads_open = ld;

  int nargs = spec->last >= spec->first ? spec->last - spec->first + 1 : 0;
  if (spec->anchor) {
    lua_createtable(L, nargs, 0);
    for (int i = 0; i < nargs; i++) {
      lua_pushvalue(L, spec->first + i);
      lua_rawseti(L, -2, i + 1);
    }
    ld->anchor_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  ltask *t = lsched_loader(c->ls);
  t->done = on_loader_done;
  t->done_ud = ld;
  luaL_checkstack(L, nargs + 1, "too many arguments");
  lua_pushvalue(L, spec->fn);
  for (int i = 0; i < nargs; i++) lua_pushvalue(L, spec->first + i);
  lua_xmove(L, t->co, nargs + 1);
  int nres, st = lsched_start_loader(c->ls, L, t, nargs, &nres);
  if (st != LUA_YIELD) {
    int n = finish_load(L, ld, t, st, nres, 1);
    return n >= 0 ? n : lua_error(L);
  }

  /* The loader waits for something: it goes on in the background. */
  lua_pushvalue(L, 1);
  ld->cache_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (!isinf(c->load_timeout) && ld->flight != NULL) {
    ld->timer = malloc(sizeof *ld->timer);
    if (ld->timer != NULL) {
      uv_timer_init(lsched_loop(c->ls), ld->timer);
      ld->timer->data = ld;
      double ms = ceil(c->load_timeout * 1000.0);
      uv_timer_start(ld->timer, on_load_timeout, ms > 9e15 ? (uint64_t)9e15 : (uint64_t)ms, 0);
    }
  }
  return wait_flight(L, f, spec->mode);
}

void lcache_invalidate_load(lcache *c, int tag, const char *key, size_t len) {
  ac_flight_t *f = ac_flights_find(c->flights, tag, key, len);
  if (f != NULL) ((lload *)ac_flight_data(f))->stale = 1;
}

/* ---- methods ------------------------------------------------------------- */

static int cache_get(lua_State *L) {
  lcache *c = lcache_check(L, 1);
  lkey k;
  lkey_get(L, 2, &k);
  double ttl;
  int loader = get_options(L, c, &ttl);
  uint32_t slot = ac_store_get(c->store, k.tag, k.p, k.len);
  if (slot != 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->values_ref);
    lua_rawgeti(L, -1, slot);
    return 1; /* a hit: no yield, no allocation */
  }
  lload_spec spec = {LOAD_GET, k.tag, k.p, k.len, loader, 2, 2, ttl, 0};
  return lcache_miss(L, c, &spec);
}

static int cache_set(lua_State *L) {
  lcache *c = lcache_check(L, 1);
  lkey k;
  lkey_get(L, 2, &k);
  if (lua_isnoneornil(L, 3))
    return luaL_error(L, "cache:set(): value must not be nil (use cache:delete(key) to remove a key)");
  double ttl = c->default_ttl;
  if (!lua_isnoneornil(L, 4)) {
    if (!lua_istable(L, 4))
      return luaL_error(L, "cache:set(): opts must be a table, got %s", luaL_typename(L, 4));
    if (lua_getfield(L, 4, "ttl") != LUA_TNIL) ttl = check_ttl(L, -1, "opts.ttl");
    lua_pop(L, 1);
  }
  lua_pushvalue(L, 3);
  lcache_store(L, c, k.tag, k.p, k.len, ttl);
  return 0;
}

static int cache_delete(lua_State *L) {
  lcache *c = lcache_check(L, 1);
  lkey k;
  lkey_get(L, 2, &k);
  lcache_invalidate_load(c, k.tag, k.p, k.len);
  lua_pushboolean(L, ac_store_delete(c->store, k.tag, k.p, k.len) == 0);
  return 1;
}

static int cache_clear(lua_State *L) {
  lcache *c = lcache_check(L, 1);
  ac_store_clear(c->store);
  c->clear_gen++;
  return 0;
}

static int cache_contains(lua_State *L) {
  lcache *c = lcache_check(L, 1);
  lkey k;
  lkey_get(L, 2, &k);
  lua_pushboolean(L, ac_store_peek(c->store, k.tag, k.p, k.len) != 0);
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
  lcache *c = lcache_check(L, 1);
  ac_store_stats_t st;
  ac_store_stats(c->store, &st);
  lua_createtable(L, 0, 12);
  set_count(L, "hits", st.hits);
  set_count(L, "misses", st.misses);
  set_count(L, "loads", c->loads);
  set_count(L, "load_errors", c->load_errors);
  set_count(L, "load_timeouts", c->load_timeouts);
  set_count(L, "evictions", st.evictions);
  set_count(L, "expirations", st.expirations);
  set_count(L, "size", st.size);
  set_count(L, "maxsize", st.maxsize);
  set_count(L, "in_flight", ac_flights_count(c->flights));
  set_count(L, "memory_bytes", ac_store_memory(c->store));
  uint64_t lookups = st.hits + st.misses;
  set_counter(L, "hit_rate", lookups ? (double)st.hits / (double)lookups : 0.0);
  return 1;
}

static void on_sweep(uv_timer_t *h) {
  lcache *c = h->data;
  if (ac_store_ttl_count(c->store) == 0) return;
  ac_store_stats_t st;
  ac_store_stats(c->store, &st);
  uint32_t checks = st.size / 4 > SWEEP_MIN_CHECKS ? st.size / 4 : SWEEP_MIN_CHECKS;
  c->L = lsched_cbstate(c->ls);
  ac_store_expire(c->store, checks);
}

static void close_cache(lua_State *L, lcache *c) {
  if (c->closed) return;
  c->closed = 1;
  c->L = L;
  /* Loads still open: their waiters are released with an error; a loader
   * still running finds its flight gone and drops its result. */
  while (c->loads_open != NULL) close_flight(c->loads_open, AC_ECANCELED);
  ac_flights_free(c->flights);
  c->flights = NULL;
  ac_store_free(c->store); /* reports removals: values[slot] = nil */
  c->store = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, c->values_ref);
  c->values_ref = LUA_NOREF;
  if (c->sweeper != NULL) {
    uv_timer_stop(c->sweeper);
    uv_close((uv_handle_t *)c->sweeper, on_timer_closed);
    c->sweeper = NULL;
  }
}

static int cache_close(lua_State *L) {
  lcache *c = luaL_checkudata(L, 1, CACHE_MT);
  close_cache(L, c);
  return 0;
}

static int cache_tostring(lua_State *L) {
  lcache *c = luaL_checkudata(L, 1, CACHE_MT);
  if (c->closed) {
    lua_pushfstring(L, "AsyncCache (closed): %p", (void *)c);
  } else {
    ac_store_stats_t st;
    ac_store_stats(c->store, &st);
    lua_pushfstring(L, "AsyncCache (%d/%d entries): %p", (int)st.size,
                    (int)st.maxsize, (void *)c);
  }
  return 1;
}

/* core.new_cache(maxsize, default_ttl, load_timeout): the checked inputs of
 * cache.AsyncCache (which validates and documents them). */
static int new_cache(lua_State *L) {
  lua_Integer maxsize = luaL_checkinteger(L, 1);
  double default_ttl = luaL_optnumber(L, 2, 0);
  double load_timeout = luaL_optnumber(L, 3, HUGE_VAL);
  luaL_argcheck(L, maxsize >= 1 && maxsize <= 0x7fffffff, 1, "maxsize out of range");
  luaL_argcheck(L, default_ttl >= 0, 2, "default_ttl must not be negative");
  luaL_argcheck(L, load_timeout > 0, 3, "load_timeout must be positive");
  lsched *ls = lsched_get(L);
  lcache *c = lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  c->closed = 1; /* until fully built, so __gc has nothing to undo */
  c->values_ref = LUA_NOREF;
  luaL_setmetatable(L, CACHE_MT);
  ac_store_options_t so = {(uint32_t)maxsize, on_removed, c, NULL};
  int err;
  c->store = ac_store_new(&so, &err);
  c->flights = ac_flights_new();
  c->sweeper = malloc(sizeof *c->sweeper);
  if (c->store == NULL || c->flights == NULL || c->sweeper == NULL) {
    ac_store_free(c->store);
    ac_flights_free(c->flights);
    free(c->sweeper);
    c->store = NULL, c->flights = NULL, c->sweeper = NULL;
    return luaL_error(L, "out of memory");
  }
  lua_createtable(L, 0, 0);
  c->values_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  c->ls = ls;
  c->L = L;
  c->default_ttl = isinf(default_ttl) ? 0 : default_ttl;
  c->load_timeout = load_timeout;
  c->magic = CACHE_MAGIC;
  uv_timer_init(lsched_loop(ls), c->sweeper);
  c->sweeper->data = c;
  uv_timer_start(c->sweeper, on_sweep, SWEEP_INTERVAL_MS, SWEEP_INTERVAL_MS);
  uv_unref((uv_handle_t *)c->sweeper); /* sweeping alone keeps no loop alive */
  c->closed = 0;
  return 1;
}

void lcache_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"get", cache_get},         {"set", cache_set},
      {"delete", cache_delete},   {"clear", cache_clear},
      {"contains", cache_contains}, {"get_metrics", cache_metrics},
      {"close", cache_close},     {NULL, NULL}};
  if (luaL_newmetatable(L, CACHE_MT)) {
    luaL_newlib(L, methods);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "methods"); /* cache.lua adds Lua methods here */
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, cache_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, cache_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, cache_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "AsyncCache");
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, new_cache);
}
