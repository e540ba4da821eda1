/* Loads: single-flight misses, from the Lua side (see lcache.h).
 *
 * The core (ac_cache) decides who loads: the first caller of a missing key
 * leads, later ones join.  The leader runs its function in a pooled loader
 * thread of its own:
 *   - it returns without yielding: the value is stored and returned at
 *     once, the caller never yields;
 *   - it yields (I/O, sleep): it carries on as a background task (the core
 *     bounds the wait by load_timeout), the caller joins the load like
 *     every later caller, and all of them are woken with the one result.
 * A background load anchors its cache, so the cache cannot be collected
 * while its loader still runs.  Whether a result may be stored (nothing
 * wrote the key meanwhile, the load did not time out) is the core's call.
 *
 * Waiters get the outcome in their callback, while the load finishes:
 * values laid out on the finisher's stack are copied straight onto each
 * parked coroutine's stack; an outcome without values (timeout, close) is
 * one error result shared by all of them. */
#include <lauxlib.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "lcache.h"
#include "lkey.h"
#include "ltype.h"

/* Bounds the walk along loads waiting for loads. */
#define MAX_WAIT_CHAIN 4096

void ac__lload_init(ac_load_t *ld, lcache *c, int mode) {
  lload *d = lload_of(ld);
  d->load = ld;
  d->c = c;
  d->mode = mode;
  d->anchor_ref = LUA_NOREF;
}

void ac__lload_status_message(char *buf, size_t size, int status, double timeout) {
  if (status == AC_ETIMEDOUT)
    snprintf(buf, size, "load timed out after %g seconds", timeout);
  else if (status == AC_ECANCELED)
    snprintf(buf, size, "the cache was closed while loading");
  else if (status == AC_ENOMEM)
    snprintf(buf, size, "not enough memory");
  else
    snprintf(buf, size, "load failed: %s", ac_strerror(status));
}

lresult *ac__lload_status_result(ac_load_t *ld, int status) {
  lload *d = lload_of(ld);
  if (d->result != NULL) return d->result;
  /* No reference yet: each waiter it is handed to takes one. */
  lresult *r = ac__lresult_new(d->c->ls, 0);
  if (r == NULL) return ac__lresult_oom();
  ac__lload_status_message(r->cerr, sizeof r->cerr, status,
                           ac_cache_load_timeout(ac_load_cache(ld)));
  d->result = r;
  return r;
}

static void on_waiter(ac_load_waiter_t *w, ac_load_t *ld, int status) {
  lload *d = lload_of(ld);
  ltask *t = w->data;
  if (d->out_L != NULL && lua_checkstack(t->co, d->out_n + 1)) {
    /* Values at hand: pass copies straight onto the parked coroutine's
     * stack, to be returned when it resumes. */
    for (int i = 0; i < d->out_n; i++) lua_pushvalue(d->out_L, d->out + i);
    lua_xmove(d->out_L, t->co, d->out_n);
    t->nargs += d->out_n;
    ac__lsched_wake(t, NULL);
    return;
  }
  uint32_t slot = ac_load_slot(ld);
  if (status == 0 && slot != 0 && lua_checkstack(t->co, 3)) {
    /* The remote had the value: it is in values[slot] (no loader ran). */
    if (d->mode == LOAD_CALL) {
      lua_pushboolean(t->co, 1);
      t->nargs++;
    }
    ac__lcache_push_value(t->co, d->c, slot);
    t->nargs++;
    ac__lsched_wake(t, NULL);
    return;
  }
  lresult *r = ac__lload_status_result(ld, status != 0 ? status : AC_ECANCELED);
  if (r != ac__lresult_oom()) r->refs++; /* this waiter's reference */
  ac__lsched_wake(t, r);
}

void ac__lcache_pack(lua_State *L, int n) {
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

int ac__lcache_unpack(lua_State *L, int idx) {
  lua_rawgeti(L, idx, 1);
  int n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  luaL_checkstack(L, n, "too many results");
  for (int i = 1; i <= n; i++) lua_rawgeti(L, idx, i + 1);
  return n;
}

int ac__lcache_value_ok(lua_State *L, int tag, int idx) {
  if (lua_isnil(L, idx)) return 0;
  if (tag != LKEY_ARGS) return 1;
  if (lua_type(L, idx) != LUA_TTABLE) return 0;
  lua_rawgeti(L, idx, 1);
  int ok = lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0;
  lua_pop(L, 1);
  return ok;
}

void ac__lcache_push_value(lua_State *L, lcache *c, uint32_t slot) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->values_ref);
  lua_rawgeti(L, -1, slot);
  lua_remove(L, -2);
}

void ac__lcache_resize_values(lua_State *L, lcache *c, uint32_t cap) {
  if (c->closed) return;
  uint32_t keep = cap < c->values_cap ? cap : c->values_cap;
  lua_createtable(L, (int)cap, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->values_ref);
  for (uint32_t i = 1; i <= keep; i++) {
    lua_rawgeti(L, -1, i);
    lua_rawseti(L, -3, i);
  }
  lua_pop(L, 1);
  if (c->closed) { /* by a finalizer the allocations ran */
    lua_pop(L, 1);
    return;
  }
  lua_rawseti(L, LUA_REGISTRYINDEX, c->values_ref); /* an existing key */
  c->values_cap = cap;
}

/* Grows the values table to hold slots 1..need at least (doubling). */
static void grow_values(lua_State *L, lcache *c, uint32_t need) {
  uint32_t cap = c->values_cap ? c->values_cap : 16;
  while (cap < need && cap <= UINT32_MAX / 2) cap *= 2;
  if (cap > c->maxsize) cap = c->maxsize > need ? c->maxsize : need;
  if (cap > INT32_MAX) luaL_error(L, "not enough memory");
  ac__lcache_resize_values(L, c, cap);
}

void ac__lcache_reserve(lua_State *L, lcache *c) {
  uint32_t bound = ac_cache_slot_bound(c->cache);
  if (bound > c->values_cap) grow_values(L, c, bound);
}

static int reserve_protected(lua_State *L) {
  ac__lcache_reserve(L, lua_touserdata(L, 1));
  return 0;
}

int ac__lcache_try_reserve(lua_State *L, lcache *c) {
  if (ac_cache_slot_bound(c->cache) <= c->values_cap) return 1;
  lua_pushcfunction(L, reserve_protected);
  lua_pushlightuserdata(L, c);
  if (lua_pcall(L, 1, 0, 0) == LUA_OK) return 1;
  lua_pop(L, 1);
  return 0;
}

void ac__lcache_put_value(lua_State *L, lcache *c, uint32_t slot) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->values_ref);
  lua_insert(L, -2);
  lua_rawseti(L, -2, slot);
  lua_pop(L, 1);
}

void ac__lcache_store(lua_State *L, lcache *c, int tag, const char *key,
                  size_t len, double ttl) {
  int64_t slot = ac__lcache_store_local(L, c, tag, key, len, ttl);
  if (slot > 0) ac_cache_written(c->cache, (uint32_t)slot);
}

int64_t ac__lcache_store_local(lua_State *L, lcache *c, int tag, const char *key,
                               size_t len, double ttl) {
  ac__lcache_reserve(L, c);
  int64_t slot = ac_cache_set(c->cache, tag, key, len, ttl);
  if (slot < 0) {
    lua_pop(L, 1);
    luaL_error(L, "cannot store the value: %s", ac_strerror((int)slot));
    return slot;
  }
  if (slot == 0) { /* the eviction policy refused the key */
    lua_pop(L, 1);
    return 0;
  }
  ac__lcache_put_value(L, c, (uint32_t)slot);
  return slot;
}

void ac__lload_settle(lua_State *L, ac_load_t *ld, int v, int nout, int failed,
                  int store) {
  lload *d = lload_of(ld);
  lcache *c = d->c;
  int top = lua_gettop(L);
  uint32_t slot = 0;
  if (store && ac_load_open(ld) && ac__lcache_try_reserve(L, c)) {
    int64_t s = ac_load_store(ld); /* failure: served, not kept */
    if (s > 0) {
      slot = (uint32_t)s;
      lua_pushvalue(L, v);
      ac__lcache_put_value(L, c, slot);
    }
  }
  if (ac_load_open(ld) && ac_load_waiters(ld) > 0 && lua_checkstack(L, nout + 2)) {
    /* The outcome, laid out for the waiters, who take copies of it from L
     * while the load finishes (on_waiter). */
    d->out_n = nout;
    if (d->mode == LOAD_CALL) { /* waiters get (ok, packed-or-error) */
      lua_pushboolean(L, !failed);
      d->out_n = 2;
    }
    for (int i = 0; i < nout; i++) lua_pushvalue(L, v + i);
    d->out_L = L;
    d->out = lua_gettop(L) - d->out_n + 1;
  }
  /* What the lload holds goes before the load (and the lload) is freed. */
  luaL_unref(L, LUA_REGISTRYINDEX, d->anchor_ref);
  ac__lsched_drop(c->ls, &d->held);
  ac_load_finish(ld, failed ? AC_ELOAD : 0, slot);
  lua_settop(L, top);
}

/* pack_protected(anchor_ref, r1, ..., rn) -> {n, r1, ..., rn, args =}. */
static int pack_protected(lua_State *L) {
  int anchor = (int)lua_tointeger(L, 1);
  lua_remove(L, 1);
  ac__lcache_pack(L, lua_gettop(L));
  if (anchor != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, anchor);
    lua_setfield(L, -2, "args");
  }
  return 1;
}

/* The state closed while the load's loader was parked for ever. */
static void release_load(lpending *p) {
  lload *d = (lload *)((char *)p - offsetof(lload, held));
  ac_load_finish(d->load, AC_ECANCELED, 0);
}

/* The loader has finished on thread t (status st, nres values, or the error
 * object, on t->co).  Stores the value, wakes the waiters, frees the load.
 * With push set, leaves the caller's results on L and returns their count
 * (LOAD_CALL failure: leaves the error object and returns -1). */
static int finish_load(lua_State *L, ac_load_t *ld, ltask *t, int st, int nres,
                       int push) {
  lload *d = lload_of(ld);
  lcache *c = d->c;
  int mode = d->mode;
  int base = lua_gettop(L);
  int failed = st != LUA_OK;
  if (failed) nres = 1;
  else nres -= d->on_stack; /* the anchored cache is no result */
  if (mode == LOAD_GET && nres > 2) { /* only v, err matter */
    lua_pop(t->co, nres - 2);
    nres = 2;
  }
  if (!lua_checkstack(L, 2 * nres + 8)) { /* no error may escape a settle */
    lua_pop(t->co, nres);
    nres = 0;
    failed = 1;
  }
  lua_xmove(t->co, L, nres);
  if (failed && nres == 0) {
    ac__ltype_push_safe(L, "the loader returned too many results");
    nres = 1;
  }
  ac__lsched_release_loader(c->ls, t, st);
  d->loader = NULL;
  /* Reduce the results at base+1 .. to one value v (or v, err). */
  int v = base + 1, nout;
  int store = 0;
  if (mode == LOAD_CALL) {
    if (!failed) {
      /* nil as the first result (or none) is not cached, as a loader's
       * nil is not: the next call runs the function again. */
      store = nres > 0 && !lua_isnil(L, v);
      /* v = {n, results...}, packed under protection (it allocates): out
       * of memory fails the call instead of leaving the load open. */
      lua_pushcfunction(L, pack_protected);
      lua_pushinteger(L, d->anchor_ref);
      for (int i = 0; i < nres; i++) lua_pushvalue(L, v + i);
      if (lua_pcall(L, nres + 1, 1, 0) != LUA_OK) failed = 1, store = 0;
      lua_replace(L, v); /* the packed table, or the error object */
    }
    nout = 1; /* the packed results, or the error object */
  } else if (failed) {
    if (lua_isnil(L, v)) { /* error(nil): callers still need an error */
      ac__ltype_push_safe(L, "loader raised nil");
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

  ac__lload_settle(L, ld, v, nout, failed, store);

  if (!push) {
    lua_settop(L, base);
    return 0;
  }
  if (mode == LOAD_CALL) {
    if (failed) return -1;
    return ac__lcache_unpack(L, v); /* the packed table below them is dropped */
  }
  return nout;
}

/* A loader that went to the background has finished (runs in a pass). */
static void on_loader_done(ltask *t, int st, int nres) {
  finish_load(ac__lsched_cbstate(t->ls), t->done_ud, t, st, nres, 0);
}

/* Resumed LOAD_CALL waiter: true, packed | false, err | nil, message. */
static int call_resumed(lua_State *L, int status, lua_KContext base) {
  (void)status;
  int first = (int)base + 1;
  if (lua_toboolean(L, first)) return ac__lcache_unpack(L, first + 1);
  lua_settop(L, first + 1);
  return lua_error(L);
}

int ac__lload_wait(lua_State *L, ac_load_t *ld, int mode) {
  ltask *t = ac__lsched_park(L, mode == LOAD_CALL ? "a decorated function" : "cache:get()");
  return ac__lload_join(L, t, ld, mode);
}

int ac__lload_waits_for(ac_load_t *ld, const ltask *t) {
  if (t == NULL) return 0;
  for (int hops = 0; ld != NULL && hops < MAX_WAIT_CHAIN; hops++) {
    ltask *loader = lload_of(ld)->loader;
    if (loader == NULL) return 0;
    if (loader == t) return 1;
    ld = loader->waiting;
  }
  return 0;
}

void ac__lload_push_recursive(lua_State *L, int mode, int tag, const char *key,
                          size_t len) {
  if (mode == LOAD_CALL || tag == LKEY_ARGS) {
    lua_pushliteral(L, "recursive call of a decorated function with the same arguments "
                       "(from inside its own call, directly or through other loads): "
                       "it would wait for itself forever");
    return;
  }
  ac__lkey_push(L, tag, key, len);
  const char *k = ac__ltype_describe(L, -1);
  lua_pushfstring(L, "recursive load of key %s: its loader asked the cache for the same key "
                     "(directly or through other loads), which would wait for itself forever", k);
  lua_replace(L, -3);
  lua_pop(L, 1);
}

int ac__lload_join(lua_State *L, ltask *t, ac_load_t *ld, int mode) {
  t->lw.cb = on_waiter;
  t->lw.data = t;
  t->waiting = ld;
  ac_load_join(ld, &t->lw);
  if (mode == LOAD_CALL)
    return lua_yieldk(L, 0, (lua_KContext)lua_gettop(L), call_resumed);
  return ac__lsched_yield(L);
}

/* Runs the function at spec->fn for a key nobody is loading: inline, and
 * in the background if it yields. */
static int lead(lua_State *L, lcache *c, const lload_spec *spec, ltask *me) {
  /* Everything that can raise comes before the load opens: a load left
   * open by an error would hold every later caller forever. */
  int nargs = spec->last >= spec->first ? spec->last - spec->first + 1 : 0;
  luaL_checkstack(L, nargs + 2, "too many arguments");
  /* With a remote the caller waits for it: it must be able to. */
  if (c->remote != NULL)
    ac__lsched_check_task(L, spec->mode == LOAD_CALL ? "a decorated function" : "cache:get()");
  ltask *t = ac__lsched_loader(c->ls, L);
  if (!lua_checkstack(t->co, nargs + 2)) {
    ac__lsched_release_loader(c->ls, t, LUA_OK);
    return luaL_error(L, "too many arguments");
  }
  int anchor_ref = LUA_NOREF;
  if (spec->anchor) {
    lua_createtable(L, nargs, 0);
    for (int i = 0; i < nargs; i++) {
      lua_pushvalue(L, spec->first + i);
      lua_rawseti(L, -2, i + 1);
    }
    anchor_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  ac_load_t *ld;
  int rc = ac_cache_lead(c->cache, spec->tag, spec->key, spec->len, spec->ttl, &ld);
  if (rc != 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, anchor_ref);
    ac__lsched_release_loader(c->ls, t, LUA_OK);
    return luaL_error(L, "cannot load: %s", ac_strerror(rc));
  }
  ac__lload_init(ld, c, spec->mode);
  lload *d = lload_of(ld);
  d->anchor_ref = anchor_ref;
  int begun = ac_load_begin(ld); /* AC_JOIN: a remote is asked first */
  t->done = on_loader_done;
  t->done_ud = ld;
  /* The cache goes below the function on the loader's stack: it anchors
   * the cache for as long as the loader runs, also in the background,
   * without a registry reference per miss (the thread's stack is cleared
   * when it goes back to the pool). */
  lua_pushvalue(L, 1);
  lua_pushvalue(L, spec->fn);
  for (int i = 0; i < nargs; i++) lua_pushvalue(L, spec->first + i);
  lua_xmove(L, t->co, nargs + 2);
  d->on_stack = 1;
  if (begun == AC_JOIN) { /* the loader runs only if the remote misses */
    d->deferred = t;
    d->deferred_nargs = nargs;
    return ac__lload_wait(L, ld, spec->mode);
  }
  /* While the loader runs inline, its caller waits for this load. */
  d->loader = t;
  if (me != NULL) me->waiting = ld;
  int nres, st = ac__lsched_start_loader(c->ls, L, t, nargs, &nres);
  if (me != NULL) me->waiting = NULL;
  if (st != LUA_YIELD) {
    int n = finish_load(L, ld, t, st, nres, 1);
    return n >= 0 ? n : lua_error(L);
  }

  /* The loader waits for something: it goes on in the background, held so
   * that the load is freed even if it never finishes. */
  ac__lsched_hold(c->ls, &d->held, release_load);
  if (!ac_load_open(ld)) { /* the loader closed the cache meanwhile */
    lua_pushnil(L);
    lua_pushliteral(L, "the cache was closed while loading");
    if (spec->mode == LOAD_CALL) return lua_error(L);
    return 2;
  }
  ac_load_background(ld);
  return ac__lload_wait(L, ld, spec->mode);
}

/* A get without a loader, with a remote: a load whose only source is the
 * remote (no deferred loader); a miss gives nil. */
ac_load_t *ac__lload_remote(lcache *c, int mode, int tag, const char *key, size_t len,
                            double ttl, int *rc) {
  ac_load_t *ld;
  *rc = ac_cache_lead(c->cache, tag, key, len, ttl, &ld);
  if (*rc != 0) return NULL;
  ac__lload_init(ld, c, mode);
  if (ac_load_begin(ld) != AC_JOIN) { /* the remote refused the lookup */
    ac_load_abort(ld);
    return NULL;
  }
  return ld;
}

static int lookup_remote(lua_State *L, lcache *c, const lload_spec *spec) {
  int rc;
  ac_load_t *ld = ac__lload_remote(c, spec->mode, spec->tag, spec->key, spec->len,
                                   spec->ttl, &rc);
  if (rc != 0) return luaL_error(L, "cannot load: %s", ac_strerror(rc));
  if (ld == NULL) {
    lua_pushnil(L);
    return 1;
  }
  return ac__lload_wait(L, ld, spec->mode);
}

void ac__lload_backend_done(void *ud, ac_load_t *ld, int found) {
  lcache *c = ud;
  lload *d = lload_of(ld);
  ltask *t = d->deferred;
  d->deferred = NULL;
  if (!found && t == NULL && ac_load_open(ld)) {
    /* A remote miss for a get without a loader: every caller gets nil. */
    lua_State *L = ac__lsched_cbstate(c->ls);
    if (lua_checkstack(L, 4)) {
      lua_pushnil(L);
      ac__lload_settle(L, ld, lua_gettop(L), 1, 0, 0);
      lua_pop(L, 1);
      return;
    }
  }
  if (found || t == NULL || !ac_load_open(ld)) {
    /* A remote hit (stored, handed out), or a cache closed meanwhile: the
     * loader never runs. */
    if (t != NULL) ac__lsched_release_loader(c->ls, t, LUA_OK);
    luaL_unref(ac__lsched_cbstate(c->ls), LUA_REGISTRYINDEX, d->anchor_ref);
    d->anchor_ref = LUA_NOREF;
    ac_load_finish(ld, found ? 0 : AC_ECANCELED, found ? ac_load_slot(ld) : 0);
    return;
  }
  /* A miss: the loader starts now, as a queued task (this runs inside the
   * core), and finishes like a loader gone to the background. */
  d->loader = t;
  ac__lsched_hold(c->ls, &d->held, release_load);
  t->nargs = d->deferred_nargs;
  ac_sched_post(ac__lsched_sched(c->ls), &t->q);
}

int ac__lcache_miss(lua_State *L, lcache *c, const lload_spec *spec,
                ac_load_t *joining) {
  ltask *me = ac__lsched_current(c->ls);
  if (joining != NULL) {
    if (ac__lload_waits_for(joining, me)) { /* fail fast, not never */
      ac__lload_push_recursive(L, spec->mode, spec->tag, spec->key, spec->len);
      if (spec->mode == LOAD_CALL) return lua_error(L);
      lua_pushnil(L);
      lua_insert(L, -2);
      return 2;
    }
    return ac__lload_wait(L, joining, spec->mode);
  }
  if (spec->fn == 0 && spec->batch_fn != 0) return ac__lbatch_add(L, c, spec);
  if (spec->fn == 0) {
    /* No loader: only the remote may have it (when the caller can wait). */
    if (c->remote != NULL && ac__lsched_can_wait(L)) return lookup_remote(L, c, spec);
    lua_pushnil(L);
    return 1;
  }
  return lead(L, c, spec, me);
}
