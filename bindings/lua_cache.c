/* The cache object of cache.core ("ac.cache") and its methods.
 *
 * Values live in a Lua table owned by the cache (values[slot]); the C store
 * maps keys to slots.  A hit is a store lookup plus one rawgeti: it neither
 * yields nor allocates.  Misses go to the loads (lua_load.c).  Policy
 * (option defaults, warmup, the public constructor) is in
 * lua/cache/async_cache.lua. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lcache.h"
#include "ltype.h"
#include "lkey.h"
#include "lsched.h"

#define CACHE_MT "ac.cache"
#define CACHE_MAGIC 0x41434348u /* "ACCH" */
/* Active expiry: a slice every tick while entries with a TTL may be due,
 * one whole pass over the slab every SWEEP_PASS_TICKS ticks (so an expired
 * entry nobody reads leaves within about a second), and slices again after
 * SWEEP_AGAIN_MS while the last one stopped among mostly expired entries or
 * while the store shrinks.  No slice runs longer than SWEEP_BUDGET. */
#define SWEEP_INTERVAL_MS 100
#define SWEEP_IDLE_MS 1000   /* when nothing can expire within a second */
#define SWEEP_AGAIN_MS 1     /* the loop gets a turn between slices */
#define SWEEP_BUDGET 0.001   /* seconds per slice */
#define SWEEP_PASS_TICKS 10u
#define SWEEP_MIN_CHECKS 1024u
/* The values table is rebuilt smaller (Lua never shrinks the array part
 * of a table whose slots are set to nil) when the store's slab has shrunk
 * below a quarter of the table's, and only up to this many slots so that
 * the copy fits a slice of its own. */
#define SWEEP_REBUILD_MAX 16384u

/* The sweeper's timer and state: one malloc'd block with the timer first,
 * so lcache_free_handle (free) releases it all. */
typedef struct {
  uv_timer_t timer;
  uint32_t table_slots; /* slots the values table may have room for */
  int rebuild;          /* the next tick rebuilds the values table */
} sweeper;

/* ---- helpers ----------------------------------------------------------- */

lcache *lcache_check(lua_State *L, int idx) {
  lcache *c = lua_touserdata(L, idx);
  if (c == NULL || lua_rawlen(L, idx) != sizeof(lcache) || c->magic != CACHE_MAGIC)
    c = luaL_checkudata(L, idx, CACHE_MT); /* raises the standard message */
  if (c->closed) luaL_error(L, "the cache is closed");
  c->L = L;
  return c;
}

/* Options are read with lua_getfield, which runs metamethods that may
 * close the cache: check again before touching the store. */
static void still_open(lua_State *L, lcache *c) {
  if (c->closed) luaL_error(L, "the cache is closed");
  c->L = L;
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

/* The third argument of get(): nil, a loader, or { loader =, ttl =,
 * batch_loader = }.  Returns the stack index of the loader (0: none) and
 * sets *batch to that of a per-call batch loader. */
static int get_options(lua_State *L, lcache *c, double *ttl, int *batch) {
  *ttl = c->default_ttl;
  *batch = 0;
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
  lua_settop(L, 3);
  if (lua_getfield(L, 3, "ttl") != LUA_TNIL) *ttl = check_ttl(L, -1, "opts.ttl");
  lua_pop(L, 1);
  if (lua_getfield(L, 3, "batch_loader") != LUA_TNIL) {
    if (!is_callable(L, -1))
      luaL_error(L, "opts.batch_loader must be a function, got %s", luaL_typename(L, -1));
    *batch = 4;
  } /* index 4, nil or the batch loader, keeps the stack shape fixed */
  if (lua_getfield(L, 3, "loader") != LUA_TNIL) {
    if (!is_callable(L, -1))
      luaL_error(L, "opts.loader must be a function, got %s", luaL_typename(L, -1));
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

static int cache_get(lua_State *L) {
  lcache *c = lcache_check(L, 1);
  lkey k;
  lkey_get(L, 2, &k);
  double ttl;
  int batch, loader = get_options(L, c, &ttl, &batch);
  uint32_t slot = ac_store_get(c->store, k.tag, k.p, k.len);
  if (slot != 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->values_ref);
    lua_rawgeti(L, -1, slot);
    return 1; /* a hit: no yield, no allocation */
  }
  if (loader == 0 && batch == 0 && c->batch_fn_ref != LUA_NOREF) {
    lua_settop(L, 3);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->batch_fn_ref);
    batch = 4;
  }
  lload_spec spec = {LOAD_GET, k.tag, k.p, k.len, loader, 2, 2, ttl, 0, batch};
  return lcache_miss(L, c, &spec);
}

/* get_many: one parked task waiting on several flights at once.  Values
 * that arrive with their flight are written straight into the result
 * tables (through registry refs); only errors made without values (timeout,
 * close) wait in the slot for the task to resume. */
typedef struct {
  ac_waiter_t w;
  lresult *res; /* an outcome without values, once its flight closed */
} many_slot;

typedef struct {
  ltask *task;
  int pending; /* flights not closed yet */
  int n;
  int keys_ref, values_ref, errors_ref;
  int self_ref; /* anchors the group while waiters point into it: the
                   coroutine's stack alone does not (it may be closed) */
  many_slot slot[];
} many_group;

/* Sets out[keys[i]] = value (value at idx of L); out is values or errors. */
static void many_put(lua_State *L, many_group *g, int i, int out_ref, int idx) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, out_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->keys_ref);
  lua_rawgeti(L, -1, i + 1);
  lua_remove(L, -2);
  lua_pushvalue(L, idx);
  lua_settable(L, -3);
  lua_pop(L, 1);
}

static void many_on_waiter(ac_waiter_t *w, ac_flight_t *f, int status) {
  many_group *g = w->data;
  lload *ld = ac_flight_data(f);
  many_slot *s = (many_slot *)((char *)w - offsetof(many_slot, w));
  int i = (int)(s - g->slot);
  (void)status;
  lua_State *L = ld->out_L;
  if (L != NULL && lua_checkstack(L, 4)) {
    if (!lua_isnil(L, ld->out)) many_put(L, g, i, g->values_ref, ld->out);
    else if (ld->out_n >= 2 && !lua_isnil(L, ld->out + 1))
      many_put(L, g, i, g->errors_ref, ld->out + 1);
  } else {
    s->res = ld->result; /* one of its references is this slot's */
  }
  if (--g->pending == 0) lsched_wake(g->task, NULL);
}

/* Adds the outcomes kept in slots, releases the refs, and returns values
 * (index 4) and errors (index 5, nil when empty); the group is at 6. */
static int many_collect(lua_State *L, int status, lua_KContext ctx) {
  (void)status, (void)ctx;
  many_group *g = lua_touserdata(L, 6);
  lua_settop(L, 6);
  for (int i = 0; i < g->n; i++) {
    lresult *r = g->slot[i].res;
    if (r == NULL) continue;
    g->slot[i].res = NULL;
    int n = lresult_push(L, r);
    lresult_release(L, r);
    if (n >= 2 && !lua_isnil(L, 8)) {
      lua_rawgeti(L, 2, i + 1);
      lua_pushvalue(L, 8);
      lua_settable(L, 5);
    }
    lua_settop(L, 6);
  }
  luaL_unref(L, LUA_REGISTRYINDEX, g->keys_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, g->values_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, g->errors_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, g->self_ref);
  g->keys_ref = g->values_ref = g->errors_ref = g->self_ref = LUA_NOREF;
  lua_pushnil(L);
  if (lua_next(L, 5) == 0) {
    lua_pushnil(L);
    lua_replace(L, 5);
  }
  lua_settop(L, 5);
  return 2;
}

/* cache:get_many(keys[, opts]): the values of many keys, { [key] = value },
 * and a table of errors { [key] = err } (nil when none).  Missing keys go
 * to the batch loader (opts.batch_loader or the cache's) in as few batches
 * as the batch size allows; keys being loaded already are joined. */
static int cache_get_many(lua_State *L) {
  lcache *c = lcache_check(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  double ttl = c->default_ttl;
  lua_settop(L, 3);
  if (!lua_isnil(L, 3)) {
    if (!lua_istable(L, 3))
      return luaL_error(L, "cache:get_many(): opts must be a table, got %s", luaL_typename(L, 3));
    if (lua_getfield(L, 3, "ttl") != LUA_TNIL) ttl = check_ttl(L, -1, "opts.ttl");
    lua_pop(L, 1);
    lua_getfield(L, 3, "batch_loader");
    if (!lua_isnil(L, -1) && !is_callable(L, -1))
      return luaL_error(L, "opts.batch_loader must be a function, got %s", luaL_typename(L, -1));
    lua_replace(L, 3);
  }
  if (lua_isnil(L, 3) && c->batch_fn_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->batch_fn_ref);
    lua_replace(L, 3);
  }
  int batch = lua_isnil(L, 3) ? 0 : 3;
  still_open(L, c);
  lua_Unsigned len = lua_rawlen(L, 2); /* raw: no metamethod may run from here */
  if (len > (lua_Unsigned)1 << 24)
    return luaL_error(L, "cache:get_many(): too many keys (%d at most)", 1 << 24);
  int n = (int)len;
  /* Check every key before queueing anything: an error after some keys
   * joined loads would leave their waiters behind. */
  for (int i = 1; i <= n; i++) {
    int t = lua_rawgeti(L, 2, i);
    if (t != LUA_TSTRING && t != LUA_TNUMBER && t != LUA_TBOOLEAN)
      return luaL_error(L, "cache:get_many(): keys[%d] must be a string, number or boolean, got %s",
                        i, luaL_typename(L, -1));
    if (t == LUA_TNUMBER && lua_tonumber(L, -1) != lua_tonumber(L, -1))
      return luaL_error(L, "cache:get_many(): keys[%d] must not be NaN", i);
    lua_pop(L, 1);
  }
  lua_newtable(L); /* 4: values */
  lua_newtable(L); /* 5: errors */
  many_group *g = lua_newuserdatauv(L, sizeof *g + (size_t)n * sizeof(many_slot), 0);
  g->self_ref = LUA_NOREF;
  g->task = NULL;
  g->pending = 0;
  g->n = n;
  g->keys_ref = g->values_ref = g->errors_ref = LUA_NOREF;
  for (int i = 0; i < n; i++) g->slot[i].res = NULL;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i); /* 7: the key */
    lkey k;
    lkey_get(L, 7, &k); /* checked above: cannot raise */
    uint32_t slot = ac_store_get(c->store, k.tag, k.p, k.len);
    if (slot != 0) {
      lua_pushvalue(L, 7);
      lcache_push_value(L, c, slot);
      lua_settable(L, 4);
    } else {
      ac_flight_t *f = ac_flights_find(c->flights, k.tag, k.p, k.len);
      if (f == NULL && batch != 0) {
        if (g->task == NULL) g->task = lsched_park(L, "cache:get_many()");
        lload_spec spec = {LOAD_GET, k.tag, k.p, k.len, 0, 7, 7, ttl, 0, batch};
        f = lbatch_enqueue(L, c, &spec);
      }
      if (f != NULL) {
        if (g->task == NULL) g->task = lsched_park(L, "cache:get_many()");
        if (g->keys_ref == LUA_NOREF) { /* before any waiter can run */
          lua_pushvalue(L, 6);
          g->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
          lua_pushvalue(L, 2);
          g->keys_ref = luaL_ref(L, LUA_REGISTRYINDEX);
          lua_pushvalue(L, 4);
          g->values_ref = luaL_ref(L, LUA_REGISTRYINDEX);
          lua_pushvalue(L, 5);
          g->errors_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        }
        g->slot[i - 1].w.cb = many_on_waiter;
        g->slot[i - 1].w.data = g;
        ac_flight_join(f, &g->slot[i - 1].w);
        g->pending++;
      }
    }
    lua_settop(L, 6);
  }
  if (g->pending == 0) {
    if (g->task != NULL) g->task->parked = 0;
    return many_collect(L, LUA_OK, 0);
  }
  return lua_yieldk(L, 0, 0, many_collect);
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
    still_open(L, c);
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
  lcache_invalidate_all_loads(c);
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
  set_count(L, "batches", c->batches);
  set_count(L, "batched_keys", c->batched_keys);
  set_count(L, "memory_bytes", ac_store_memory(c->store));
  uint64_t lookups = st.hits + st.misses;
  set_counter(L, "hit_rate", lookups ? (double)st.hits / (double)lookups : 0.0);
  return 1;
}

/* A shrinking store renumbers an entry: its value moves with it.  Storing
 * into a slot can allocate (the slot may be in the table's hash part), so
 * it runs protected: an out-of-memory error refuses the move instead of
 * unwinding through the store and libuv.  The stack was checked by
 * on_sweep, so the call itself cannot grow it (nor run the collector). */
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
  lua_State *L = c->L;
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

/* A copy of the values table (1) holding slots 1..n (2). */
static int copy_values(lua_State *L) {
  lua_Integer n = lua_tointeger(L, 2);
  lua_createtable(L, (int)n, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_rawgeti(L, 1, i) == LUA_TNIL) {
      lua_pop(L, 1);
      continue;
    }
    lua_rawseti(L, -2, i);
  }
  return 1;
}

/* Swaps in a values table sized for the shrunk slab.  Every user of the
 * table fetches it from the registry when it needs it, and none holds it
 * across a yield, so the swap is invisible.  Allocation may run the
 * collector, and a finalizer may close the cache: the caller checks. */
static void rebuild_values(lua_State *L, lcache *c, sweeper *sw) {
  ac_store_stats_t st;
  ac_store_stats(c->store, &st);
  lua_pushcfunction(L, copy_values);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->values_ref);
  lua_pushinteger(L, (lua_Integer)st.slots);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK || c->closed) {
    lua_pop(L, 1); /* out of memory: keep the old table */
    return;
  }
  lua_rawseti(L, LUA_REGISTRYINDEX, c->values_ref);
  sw->table_slots = st.slots;
}

static void on_sweep(uv_timer_t *h) {
  lcache *c = h->data;
  sweeper *sw = (sweeper *)h;
  lua_State *L = c->L = lsched_cbstate(c->ls);
  uint64_t delay = SWEEP_INTERVAL_MS;
  if (sw->rebuild) { /* a tick of its own: the copy is up to 16k slots */
    sw->rebuild = 0;
    rebuild_values(L, c, sw);
    if (c->closed) return; /* by a finalizer: the timer is closing */
    delay = SWEEP_AGAIN_MS;
  } else {
    ac_store_stats_t st;
    ac_store_stats(c->store, &st);
    uint32_t checks = st.slots / SWEEP_PASS_TICKS;
    if (checks < SWEEP_MIN_CHECKS) checks = SWEEP_MIN_CHECKS;
    if (st.slots > sw->table_slots) sw->table_slots = st.slots;
    ac_expire_report_t rep = {0};
    /* Room for on_moved's call: without it no entry is renumbered. */
    if (lua_checkstack(L, LUA_MINSTACK + 8)) {
      ac_store_expire_budget(c->store, checks, SWEEP_BUDGET, &rep);
    } else {
      ac_store_expire(c->store, checks);
    }
    ac_store_stats(c->store, &st);
    if (rep.more)
      delay = SWEEP_AGAIN_MS;
    else if (rep.next_due > ac_clock_now() + SWEEP_IDLE_MS / 1000.0)
      delay = SWEEP_IDLE_MS;
    /* On the state, not on rep.shrunk: the slice that ends a shrink may
     * not be the one that gave memory back. */
    if (!rep.more && st.slots <= SWEEP_REBUILD_MAX &&
        st.slots < sw->table_slots / 4) {
      sw->rebuild = 1;
      delay = SWEEP_AGAIN_MS;
    }
  }
  uv_update_time(h->loop); /* the slice took time: count from now */
  uv_timer_start(h, on_sweep, delay, 0);
}

static void close_cache(lua_State *L, lcache *c) {
  if (c->closed) return;
  c->closed = 1;
  c->L = L;
  /* Loads still open: their waiters are released with an error; a loader
   * still running finds its flight gone and drops its result. */
  while (c->loads_open != NULL) lload_close_flight(c->loads_open, AC_ECANCELED);
  lbatch_close_all(L, c);
  luaL_unref(L, LUA_REGISTRYINDEX, c->batch_fn_ref);
  c->batch_fn_ref = LUA_NOREF;
  ac_flights_free(c->flights);
  c->flights = NULL;
  ac_store_free(c->store); /* reports removals: values[slot] = nil */
  c->store = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, c->values_ref);
  c->values_ref = LUA_NOREF;
  if (c->sweeper != NULL) {
    uv_timer_stop(c->sweeper);
    uv_close((uv_handle_t *)c->sweeper, lcache_free_handle);
    c->sweeper = NULL;
  }
}

static int cache_close(lua_State *L) {
  lcache *c = luaL_checkudata(L, 1, CACHE_MT);
  close_cache(L, c);
  return 0;
}

static int cache_is_closed(lua_State *L) {
  lcache *c = luaL_checkudata(L, 1, CACHE_MT);
  lua_pushboolean(L, c->closed);
  return 1;
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

/* core.new_cache(maxsize, default_ttl, load_timeout[, batch_loader,
 * batch_window_ms, max_batch_size, batch_result]): the checked inputs of
 * cache.AsyncCache (which validates and documents them). */
static int new_cache(lua_State *L) {
  lua_Integer maxsize = luaL_checkinteger(L, 1);
  double default_ttl = luaL_optnumber(L, 2, 0);
  double load_timeout = luaL_optnumber(L, 3, HUGE_VAL);
  luaL_argcheck(L, maxsize >= 1 && maxsize <= 0x7fffffff, 1, "maxsize out of range");
  luaL_argcheck(L, default_ttl >= 0, 2, "default_ttl must not be negative");
  luaL_argcheck(L, load_timeout > 0, 3, "load_timeout must be positive");
  double window = luaL_optnumber(L, 5, 5);
  lua_Integer max_batch = luaL_optinteger(L, 6, 100);
  luaL_argcheck(L, window >= 0, 5, "batch_window_ms must not be negative");
  luaL_argcheck(L, max_batch >= 1 && max_batch <= 0x7fffffff, 6, "max_batch_size out of range");
  static const char *const forms[] = {"auto", "map", "array", NULL};
  int batch_result = luaL_checkoption(L, 7, "auto", forms);
  lsched *ls = lsched_get(L);
  lcache *c = lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  c->closed = 1; /* until fully built, so __gc has nothing to undo */
  c->values_ref = LUA_NOREF;
  c->batch_fn_ref = LUA_NOREF;
  luaL_setmetatable(L, CACHE_MT);
  ac_store_options_t so = {.maxsize = (uint32_t)maxsize, .removed = on_removed,
                           .ud = c, .moved = on_moved};
  int err;
  c->store = ac_store_new(&so, &err);
  c->flights = ac_flights_new();
  sweeper *sw = calloc(1, sizeof *sw);
  c->sweeper = sw ? &sw->timer : NULL;
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
  c->batch_window_ms = window;
  c->max_batch_size = (int)max_batch;
  c->batch_result = batch_result;
  if (!lua_isnoneornil(L, 4)) {
    lua_pushvalue(L, 4);
    c->batch_fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  c->magic = CACHE_MAGIC;
  uv_timer_init(lsched_loop(ls), c->sweeper);
  c->sweeper->data = c;
  uv_timer_start(c->sweeper, on_sweep, SWEEP_INTERVAL_MS, 0); /* re-armed by on_sweep */
  uv_unref((uv_handle_t *)c->sweeper); /* sweeping alone keeps no loop alive */
  c->closed = 0;
  return 1;
}

void lcache_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"get", cache_get},         {"get_many", cache_get_many},
      {"set", cache_set},
      {"delete", cache_delete},   {"clear", cache_clear},
      {"contains", cache_contains}, {"get_metrics", cache_metrics},
      {"close", cache_close},     {"is_closed", cache_is_closed},     {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", cache_close},
                                  {"__close", cache_close},
                                  {"__tostring", cache_tostring},
                                  {NULL, NULL}};
  /* cache/async_cache.lua adds its Lua methods to "methods" */
  ltype_register(L, CACHE_MT, "AsyncCache", methods, meta);
  lua_pushcfunction(L, new_cache);
}
