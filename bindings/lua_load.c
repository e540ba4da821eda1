/* Loads: single-flight misses (see lcache.h).
 *
 * A miss with a function opens a flight and runs the function in a pooled
 * loader thread of its own:
 *   - it returns without yielding: the value is stored and returned at
 *     once, the caller never yields;
 *   - it yields (I/O, sleep): it carries on as a background task, the caller
 *     joins the flight like every later caller, and all of them are woken
 *     with the one result.  A timer bounds the wait (load_timeout); a result
 *     arriving after it is dropped.
 * A background load anchors its cache, so the cache cannot be collected
 * while its loader still runs.  A load's result is stored only if nothing
 * wrote the key meanwhile (set, delete, invalidate, clear mark it `stale`
 * and detach its flight, so later callers start afresh). */
#include <lauxlib.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lcache.h"
#include "lkey.h"
#include "ltype.h"

/* Bounds the walk along loads waiting for loads (a chain that long is
 * not a recursion this walk could miss for lack of steps in practice). */
#define MAX_WAIT_CHAIN 4096

static void stop_timer(lload *ld) {
  ac_timer_free(ld->timer);
  ld->timer = NULL;
}

static void unlink_load(lload *ld) {
  lcache *c = ld->c;
  if (ld->prev) ld->prev->next = ld->next; else c->loads_open = ld->next;
  if (ld->next) ld->next->prev = ld->prev;
  ld->prev = ld->next = NULL;
}

/* Closes the flight of ld and wakes every waiter: with copies of the values
 * at ld->out when lload_settle laid them out, else with ld->result, made
 * here from status (timeout, close) when there is none. */
void lload_close_flight(lload *ld, int status) {
  ac_flight_t *f = ld->flight;
  ld->flight = NULL;
  unlink_load(ld);
  stop_timer(ld);
  if (ld->result == NULL && ld->out_L == NULL && ac_flight_waiters(f) > 0) {
    ld->result = lresult_new(ld->c->ls, (int)ac_flight_waiters(f));
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

void lload_on_waiter(ac_waiter_t *w, ac_flight_t *f, int status) {
  lload *ld = ac_flight_data(f);
  ltask *t = w->data;
  (void)status;
  if (ld->out_L != NULL && lua_checkstack(t->co, ld->out_n + 1)) {
    /* Values at hand: pass copies straight onto the parked coroutine's
     * stack, to be returned when it resumes. */
    for (int i = 0; i < ld->out_n; i++) lua_pushvalue(ld->out_L, ld->out + i);
    lua_xmove(ld->out_L, t->co, ld->out_n);
    t->nargs += ld->out_n;
    lsched_wake(t, NULL);
    return;
  }
  lsched_wake(t, ld->result);
}

static void on_load_timeout(ac_timer_t *t, void *data) {
  lload *ld = data;
  (void)t;
  ld->c->load_timeouts++;
  lload_close_flight(ld, AC_ETIMEDOUT);
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
  if (n > 0) { /* the table takes the place of the first value */
    lua_replace(L, base + 1);
    lua_settop(L, base + 1);
  }
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
int lload_store_value(lua_State *L, lcache *c, int tag, const char *key,
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
  int rc = lload_store_value(L, c, tag, key, len, ttl);
  if (rc < 0) luaL_error(L, "cannot store the value: %s", ac_strerror(rc));
  lcache_invalidate_load(c, tag, key, len);
}

void lload_settle(lua_State *L, lload *ld, int v, int nout, int failed,
                  int store) {
  lcache *c = ld->c;
  if (ld->flight != NULL) {
    if (store && !ld->stale && !c->closed) {
      int tag;
      size_t len;
      const char *key = ac_flight_key(ld->flight, &tag, &len);
      lua_pushvalue(L, v);
      lload_store_value(L, c, tag, key, len, ld->ttl); /* failure: served, not kept */
    }
    int top = lua_gettop(L);
    if (ac_flight_waiters(ld->flight) > 0) {
      /* The outcome, laid out for the waiters, who take copies of it from
       * L while the flight closes (lload_on_waiter). */
      ld->out_n = nout;
      if (ld->mode == LOAD_CALL) { /* waiters get (ok, packed-or-error) */
        lua_pushboolean(L, !failed);
        ld->out_n = 2;
      }
      for (int i = 0; i < nout; i++) lua_pushvalue(L, v + i);
      ld->out_L = L;
      ld->out = lua_gettop(L) - ld->out_n + 1;
    }
    lload_close_flight(ld, failed ? AC_ELOAD : 0);
    ld->out_L = NULL;
    lua_settop(L, top);
  }
  luaL_unref(L, LUA_REGISTRYINDEX, ld->cache_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, ld->anchor_ref);
  lsched_drop(c->ls, &ld->held);
  free(ld);
}

static void release_load(lpending *p) {
  free((char *)p - offsetof(lload, held));
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
  if (ld->mode == LOAD_GET && nres > 2) { /* only v, err matter */
    lua_pop(t->co, nres - 2);
    nres = 2;
  }
  if (!lua_checkstack(L, nres + 6)) { /* no error may escape a settle */
    lua_pop(t->co, nres);
    lua_pushliteral(t->co, "the loader returned too many results");
    nres = 1;
    failed = 1;
  }
  lua_xmove(t->co, L, nres);
  lsched_release_loader(c->ls, t, st);
  /* Reduce the results at base+1 .. to one value v (or v, err). */
  int v = base + 1, nout;
  int store = 0;
  if (ld->mode == LOAD_CALL) {
    if (!failed) {
      /* nil as the first result (or none) is not cached, as a loader's
       * nil is not: the next call runs the function again. */
      store = nres > 0 && !lua_isnil(L, v);
      lcache_pack(L, nres); /* v = {n, results...} */
      if (ld->anchor_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, ld->anchor_ref);
        lua_setfield(L, v, "args");
      }
    }
    nout = 1; /* the packed results, or the error object */
  } else if (failed) {
    if (lua_isnil(L, v)) { /* error(nil): callers still need an error */
      lua_pushliteral(L, "loader raised nil");
      lua_replace(L, v);
    }
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

  int mode = ld->mode;
  lload_settle(L, ld, v, nout, failed, store);

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

int lload_wait(lua_State *L, ac_flight_t *f, int mode) {
  ltask *t = lsched_park(L, mode == LOAD_CALL ? "a decorated function" : "cache:get()");
  return lload_join(L, t, f, mode);
}

int lload_waits_for(const lload *ld, const ltask *t) {
  if (t == NULL) return 0;
  for (int hops = 0; ld != NULL && ld->loader != NULL && hops < MAX_WAIT_CHAIN; hops++) {
    if (ld->loader == t) return 1;
    ld = ld->loader->waiting;
  }
  return 0;
}

void lload_push_recursive(lua_State *L, int mode, int tag, const char *key,
                          size_t len) {
  if (mode == LOAD_CALL || tag == LKEY_ARGS) {
    lua_pushliteral(L, "recursive call of a decorated function with the same arguments "
                       "(from inside its own call, directly or through other loads): "
                       "it would wait for itself forever");
    return;
  }
  lkey_push(L, tag, key, len);
  const char *k = ltype_describe(L, -1);
  lua_pushfstring(L, "recursive load of key %s: its loader asked the cache for the same key "
                     "(directly or through other loads), which would wait for itself forever", k);
  lua_replace(L, -3);
  lua_pop(L, 1);
}

int lload_join(lua_State *L, ltask *t, ac_flight_t *f, int mode) {
  t->w.cb = lload_on_waiter;
  t->waiting = ac_flight_data(f);
  ac_flight_join(f, &t->w);
  if (mode == LOAD_CALL)
    return lua_yieldk(L, 0, (lua_KContext)lua_gettop(L), call_resumed);
  return lsched_yield(L);
}

lload *lload_open(lua_State *L, lcache *c, const lload_spec *spec,
                  ac_flight_t **out) {
  ac_flight_t *f;
  lload *ld = calloc(1, sizeof *ld);
  if (ld == NULL ||
      ac_flights_start(c->flights, spec->tag, spec->key, spec->len, ld, &f) != 0) {
    free(ld);
    luaL_error(L, "out of memory");
    return NULL;
  }
  c->loads++;
  ld->c = c;
  ld->mode = spec->mode;
  ld->flight = f;
  ld->ttl = spec->ttl;
  ld->cache_ref = LUA_NOREF;
  ld->anchor_ref = LUA_NOREF;
  ld->next = c->loads_open;
  if (ld->next) ld->next->prev = ld;
  c->loads_open = ld;
  *out = f;
  return ld;
}

int lcache_miss(lua_State *L, lcache *c, const lload_spec *spec) {
  ac_flight_t *f = ac_flights_find(c->flights, spec->tag, spec->key, spec->len);
  ltask *me = lsched_current(c->ls);
  if (f != NULL) {
    if (lload_waits_for(ac_flight_data(f), me)) { /* fail fast, not never */
      lload_push_recursive(L, spec->mode, spec->tag, spec->key, spec->len);
      if (spec->mode == LOAD_CALL) return lua_error(L);
      lua_pushnil(L);
      lua_insert(L, -2);
      return 2;
    }
    return lload_wait(L, f, spec->mode);
  }
  if (spec->fn == 0 && spec->batch_fn != 0) return lbatch_add(L, c, spec);
  if (spec->fn == 0) {
    lua_pushnil(L);
    return 1;
  }
  /* Everything that can raise comes before the flight opens: a flight
   * left open by an error would hold every later caller forever. */
  int nargs = spec->last >= spec->first ? spec->last - spec->first + 1 : 0;
  luaL_checkstack(L, nargs + 2, "too many arguments");
  int anchor_ref = LUA_NOREF;
  if (spec->anchor) {
    lua_createtable(L, nargs, 0);
    for (int i = 0; i < nargs; i++) {
      lua_pushvalue(L, spec->first + i);
      lua_rawseti(L, -2, i + 1);
    }
    anchor_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  ltask *t = lsched_loader(c->ls);
  if (!lua_checkstack(t->co, nargs + 1)) {
    luaL_unref(L, LUA_REGISTRYINDEX, anchor_ref);
    lsched_release_loader(c->ls, t, LUA_OK);
    return luaL_error(L, "too many arguments");
  }
  lload *ld = lload_open(L, c, spec, &f); /* raises only before opening */
  ld->anchor_ref = anchor_ref;
  t->done = on_loader_done;
  t->done_ud = ld;
  lua_pushvalue(L, spec->fn);
  for (int i = 0; i < nargs; i++) lua_pushvalue(L, spec->first + i);
  lua_xmove(L, t->co, nargs + 1);
  /* While the loader runs inline, its caller waits for this load. */
  ld->loader = t;
  if (me != NULL) me->waiting = ld;
  int nres, st = lsched_start_loader(c->ls, L, t, nargs, &nres);
  if (me != NULL) me->waiting = NULL;
  if (st != LUA_YIELD) {
    int n = finish_load(L, ld, t, st, nres, 1);
    return n >= 0 ? n : lua_error(L);
  }

  /* The loader waits for something: it goes on in the background. */
  if (ld->flight == NULL) { /* the loader closed the cache meanwhile */
    lua_pushnil(L);
    lua_pushliteral(L, "the cache was closed while loading");
    if (spec->mode == LOAD_CALL) return lua_error(L);
    return 2;
  }
  lua_pushvalue(L, 1);
  ld->cache_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lsched_hold(c->ls, &ld->held, release_load);
  if (!isinf(c->load_timeout)) {
    ld->timer = ac_timer_new(lsched_sched(c->ls), on_load_timeout, ld);
    if (ld->timer != NULL) ac_timer_start(ld->timer, c->load_timeout, 0);
  }
  return lload_wait(L, ld->flight, spec->mode);
}

void lcache_invalidate_load(lcache *c, int tag, const char *key, size_t len) {
  ac_flight_t *f = ac_flights_find(c->flights, tag, key, len);
  if (f == NULL) return;
  /* Its result predates the write: not stored, and not handed to callers
   * that come after the write (they start a load of their own). */
  ((lload *)ac_flight_data(f))->stale = 1;
  ac_flight_detach(f);
}

void lcache_invalidate_all_loads(lcache *c) {
  for (lload *ld = c->loads_open; ld != NULL; ld = ld->next) {
    ld->stale = 1;
    ac_flight_detach(ld->flight);
  }
}

