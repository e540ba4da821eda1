/* DataLoader-style batching: concurrent misses for different keys become
 * one call of a batch loader.
 *
 * A batch collects keys for one batch loader (grouped by the function's
 * identity) until its window timer fires (batch_window_ms; 0 means "after
 * the current pass of the ready queue": a 0 ms libuv timer runs before the
 * next pass) or it holds max_batch_size keys.  Each key gets an ordinary
 * load (lload + flight), so a get for a key already in a batch, or being
 * loaded alone, joins that flight and nothing is loaded twice; duplicates
 * therefore never enter a batch.
 *
 * Dispatch runs as a task in a pass of the ready queue (protected; timers
 * only post it): f(keys) runs in a pooled loader thread and may yield.  Its
 * results settle every key's load; the cache's load_timeout bounds the
 * wait for a batch that does not return.  A batch anchors its cache and
 * its loader in the registry until it is settled. */
#include <lauxlib.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "lcache.h"

struct lbatch {
  ac_task_t dispatch; /* posted when the batch is due */
  lcache *c;
  const void *fn_id;  /* identity of the batch loader */
  int fn_ref, keys_ref, cache_ref;
  lload **loads;      /* one per key, in key order */
  int n, cap;
  ac_timer_t *timer;  /* the window, then the load timeout */
  int posted;         /* dispatch is queued or done: no more keys */
  lbatch *next;       /* the cache's batches still collecting keys */
  lbatch *all_prev, *all_next; /* every live batch of the cache (close) */
  lpending held;      /* freed by the scheduler if the state closes first */
};

static void unlink_open(lbatch *b) {
  lbatch **p = &b->c->batches_open;
  while (*p != NULL && *p != b) p = &(*p)->next;
  if (*p == b) *p = b->next;
  b->next = NULL;
}

static void post_dispatch(lbatch *b) {
  if (b->posted) return;
  b->posted = 1;
  unlink_open(b);
  if (b->timer != NULL) ac_timer_stop(b->timer);
  ac_sched_post(lsched_sched(b->c->ls), &b->dispatch);
}

static void on_batch_timeout(lbatch *b);

/* The batch's one timer: its window while it collects keys, then the load
 * timeout while its loader runs. */
static void on_timer(ac_timer_t *t, void *data) {
  lbatch *b = data;
  (void)t;
  if (!b->posted) post_dispatch(b);
  else on_batch_timeout(b);
}


static void free_batch(lua_State *L, lbatch *b) {
  if (b->all_prev) b->all_prev->all_next = b->all_next;
  else b->c->batches_all = b->all_next;
  if (b->all_next) b->all_next->all_prev = b->all_prev;
  ac_timer_free(b->timer);
  luaL_unref(L, LUA_REGISTRYINDEX, b->fn_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, b->keys_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, b->cache_ref);
  lsched_drop(b->c->ls, &b->held);
  free(b->loads);
  free(b);
}

/* The state closed before the batch was settled: its loads go with it. */
static void release_batch(lpending *p) {
  lbatch *b = (lbatch *)((char *)p - offsetof(lbatch, held));
  for (int i = 0; i < b->n; i++) free(b->loads[i]);
  free(b->loads);
  free(b);
}

/* The value for key i (1-based) of the batch from a result table at idx:
 * read as a map (result[key]) when `map`, else as an array (result[i]). */
static void push_for_key(lua_State *L, lbatch *b, int idx, int i, int map) {
  if (idx == 0) {
    lua_pushnil(L);
    return;
  }
  if (!map) {
    lua_rawgeti(L, idx, i);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->keys_ref);
  lua_rawgeti(L, -1, i);
  lua_remove(L, -2);
  lua_rawget(L, idx); /* raw: a metamethod could raise mid-settle */
}

/* Does any key of the batch index the table at idx? */
static int indexed_by_a_key(lua_State *L, lbatch *b, int idx) {
  for (int i = 1; i <= b->n; i++) {
    push_for_key(L, b, idx, i, 1);
    int found = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (found) return 1;
  }
  return 0;
}

/* Is the key at the top an integer (1 and 1.0 alike) in 1..n? */
static int in_positions(lua_State *L, int n) {
  int isnum;
  lua_Integer i = lua_tointegerx(L, -1, &isnum);
  return isnum && i >= 1 && i <= n;
}

/* How to read a result table at idx: 1 as a map (result[key]), 0 as an
 * array in key order (result[i]), -1 when it cannot be told.  With
 * batch_result = "auto", a batch without integer keys is a map when any
 * of its keys indexes the table (an array's keys are integers).  With
 * integer keys both forms can have the same shape, so the table is a map
 * only when it holds a key outside 1..n (no array does), an array when
 * the keys are 1..n in order (both readings agree), and undecided
 * otherwise: a silent wrong guess would cache values under other keys. */
static int result_form(lua_State *L, lbatch *b, int idx) {
  if (b->c->batch_result != BATCH_RESULT_AUTO)
    return b->c->batch_result == BATCH_RESULT_MAP;
  int integer_keys = 0, in_order = 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->keys_ref);
  for (int i = 1; i <= b->n; i++) {
    lua_rawgeti(L, -1, i);
    int isnum;
    lua_Integer k = lua_tointegerx(L, -1, &isnum);
    if (isnum && lua_type(L, -1) == LUA_TNUMBER) integer_keys = 1;
    if (!isnum || k != i) in_order = 0;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (!integer_keys) return indexed_by_a_key(L, b, idx);
  if (in_order) return 0;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    if (!in_positions(L, b->n)) {
      lua_pop(L, 1);
      return 1;
    }
  }
  return -1;
}

/* Does an array result at idx have the wrong number of values?  Returns 0
 * when it fits, else its length + 1.  Its length is its field n when that
 * is an integer (table.pack), else its border.  batch_result = "array"
 * wants exactly one value per key; a table only guessed to be an array
 * ("auto") is wrong only with more values than keys, since nils at its
 * end may be keys not found. */
static int array_misfit(lua_State *L, lbatch *b, int idx) {
  lua_Integer len;
  int isint;
  lua_pushliteral(L, "n");
  lua_rawget(L, idx);
  len = lua_tointegerx(L, -1, &isint);
  lua_pop(L, 1);
  if (!isint) len = (lua_Integer)lua_rawlen(L, idx);
  int fits = b->c->batch_result == BATCH_RESULT_ARRAY ? len == b->n : len <= b->n;
  if (fits) return 0;
  return len < 0 || len > 0x7ffffffe ? 0x7fffffff : (int)len + 1;
}

/* Settles every key with the batch loader's outcome: status st and nres
 * results (or the error object) on t->co. */
static void finish_batch(lua_State *L, lbatch *b, ltask *t, int st, int nres) {
  lcache *c = b->c;
  int base = lua_gettop(L);
  if (st != LUA_OK) nres = 1;
  if (nres > 2) { /* values and errors are all that matter */
    lua_pop(t->co, nres - 2);
    nres = 2;
  }
  lua_xmove(t->co, L, nres); /* the pass's state has room for a few */
  lsched_release_loader(c->ls, t, st);
  if (b->timer != NULL) ac_timer_stop(b->timer);

  int values = 0, errors = 0, failed = st != LUA_OK;
  if (failed && lua_isnil(L, base + 1)) { /* error(nil): still an error */
    lua_pushliteral(L, "batch loader raised nil");
    lua_replace(L, base + 1);
  }
  if (!failed) {
    if (nres >= 1 && lua_istable(L, base + 1)) values = base + 1;
    if (nres >= 2 && lua_istable(L, base + 2)) errors = base + 2;
    if (nres >= 1 && !lua_isnil(L, base + 1) && values == 0) {
      lua_pushfstring(L, "batch loader must return a table of values, got %s",
                      luaL_typename(L, base + 1));
      lua_replace(L, base + 1);
      failed = 1;
    } else if (nres >= 2 && !lua_isnil(L, base + 2) && errors == 0) {
      /* return nil, "db down" or {}, "boom": an error for the whole batch */
      lua_copy(L, base + 2, base + 1);
      failed = 1;
    }
  }
  if (failed) { /* every key gets nil, err */
    lua_settop(L, base + 1);
    lua_pushnil(L);
    lua_insert(L, base + 1);
    for (int i = 0; i < b->n; i++) {
      c->load_errors++;
      lload_settle(L, b->loads[i], base + 1, 2, 1, 0);
    }
  } else {
    int vmap = values ? result_form(L, b, values) : 0;
    int emap = errors ? result_form(L, b, errors) : vmap;
    if (values && errors && vmap >= 0 && emap < 0) emap = vmap; /* one loader, one form */
    int misfit = vmap == 0 && values != 0 ? array_misfit(L, b, values) : 0;
    if (vmap < 0 || emap < 0 || misfit) {
      if (misfit)
        lua_pushfstring(L, "the batch loader returned %d values for %d keys (an array result "
                           "has one entry per key, in key order; set n = #keys, as "
                           "table.pack does, when it ends in nils)", misfit - 1, b->n);
      else
        lua_pushliteral(L, "the batch loader's result cannot be read for these integer keys: "
                           "set the cache's batch_result option to \"map\" or \"array\"");
      for (int i = 0; i < b->n; i++) {
        int top = lua_gettop(L);
        c->load_errors++;
        lua_pushnil(L);
        lua_pushvalue(L, top);
        lload_settle(L, b->loads[i], top + 1, 2, 1, 0);
        lua_settop(L, top);
      }
      lua_settop(L, base);
      free_batch(L, b);
      return;
    }
    for (int i = 0; i < b->n; i++) {
      lload *ld = b->loads[i]; /* its flight may be closed: settle copes */
      int top = lua_gettop(L);
      push_for_key(L, b, errors, i + 1, emap);
      if (!lua_isnil(L, -1)) { /* nil, err */
        c->load_errors++;
        lua_pushnil(L);
        lua_insert(L, -2);
        lload_settle(L, ld, top + 1, 2, 1, 0);
      } else {
        lua_pop(L, 1);
        push_for_key(L, b, values, i + 1, vmap);
        lload_settle(L, ld, top + 1, 1, 0, !lua_isnil(L, -1));
      }
      lua_settop(L, top);
    }
  }
  lua_settop(L, base);
  free_batch(L, b);
}

static void on_batch_done(ltask *t, int st, int nres) {
  finish_batch(lsched_cbstate(t->ls), t->done_ud, t, st, nres);
}

static void on_batch_timeout(lbatch *b) {
  for (int i = 0; i < b->n; i++)
    if (b->loads[i]->flight != NULL) {
      b->c->load_timeouts++;
      lload_close_flight(b->loads[i], AC_ETIMEDOUT);
    }
}

/* Runs in a pass: calls the batch loader with the keys. */
static void dispatch(ac_task_t *q) {
  lbatch *b = q->data;
  lcache *c = b->c;
  lua_State *L = lsched_cbstate(c->ls);
  if (c->closed) { /* every load was closed with the cache */
    for (int i = 0; i < b->n; i++) free(b->loads[i]);
    free_batch(L, b);
    return;
  }
  c->batches++;
  c->batched_keys += (uint64_t)b->n;
  ltask *t = lsched_loader(c->ls);
  t->done = on_batch_done;
  t->done_ud = b;
  for (int i = 0; i < b->n; i++) b->loads[i]->loader = t;
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->fn_ref);
  /* The loader gets a copy of the keys: it may sort or change it, while
   * results are matched to callers through the original. */
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->keys_ref);
  lua_createtable(L, b->n, 0);
  for (int i = 1; i <= b->n; i++) {
    lua_rawgeti(L, -2, i);
    lua_rawseti(L, -2, i);
  }
  lua_remove(L, -2);
  lua_xmove(L, t->co, 2);
  int nres, st = lsched_start_loader(c->ls, L, t, 1, &nres);
  if (st != LUA_YIELD) {
    finish_batch(L, b, t, st, nres);
    return;
  }
  if (!isinf(c->load_timeout) && b->timer != NULL)
    ac_timer_start(b->timer, c->load_timeout, 0);
}

static lbatch *open_batch(lua_State *L, lcache *c, int fn) {
  const void *id = lua_topointer(L, fn);
  for (lbatch *b = c->batches_open; b != NULL; b = b->next)
    if (b->fn_id == id) return b;
  lbatch *b = calloc(1, sizeof *b);
  ac_timer_t *timer = b != NULL ? ac_timer_new(lsched_sched(c->ls), on_timer, b) : NULL;
  if (b == NULL || timer == NULL) {
    free(b);
    luaL_error(L, "out of memory");
  }
  b->dispatch.fn = dispatch;
  b->dispatch.data = b;
  b->c = c;
  b->fn_id = id;
  lua_pushvalue(L, fn);
  b->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  b->keys_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, 1);
  b->cache_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  b->timer = timer;
  b->next = c->batches_open;
  c->batches_open = b;
  b->all_next = c->batches_all;
  if (b->all_next) b->all_next->all_prev = b;
  c->batches_all = b;
  lsched_hold(c->ls, &b->held, release_batch);
  /* The window never outlasts load_timeout: no caller waits forever. */
  double window = c->batch_window_ms / 1000.0;
  ac_timer_start(timer, window < c->load_timeout ? window : c->load_timeout, 0);
  return b;
}

ac_flight_t *lbatch_enqueue(lua_State *L, lcache *c, const lload_spec *spec) {
  lbatch *b = open_batch(L, c, spec->batch_fn);
  if (b->n == b->cap) {
    int cap = b->cap ? b->cap * 2 : 16;
    lload **loads = realloc(b->loads, (size_t)cap * sizeof *loads);
    if (loads == NULL) luaL_error(L, "out of memory");
    b->loads = loads;
    b->cap = cap;
  }
  ac_flight_t *f;
  lload *ld = lload_open(L, c, spec, &f);
  ld->batch = b;
  b->loads[b->n++] = ld;
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->keys_ref);
  lua_pushvalue(L, spec->first);
  lua_rawseti(L, -2, b->n);
  lua_pop(L, 1);
  if (b->n >= c->max_batch_size) post_dispatch(b);
  return f;
}

int lbatch_add(lua_State *L, lcache *c, const lload_spec *spec) {
  /* Park first: fail before queueing anything when the caller could not
   * wait. */
  ltask *t = lsched_park(L, "cache:get() with a batch loader");
  return lload_join(L, t, lbatch_enqueue(L, c, spec), LOAD_GET);
}

void lbatch_close_all(lua_State *L, lcache *c) {
  /* The loads were closed with the cache.  Every batch's timer is closed
   * now, so no handle outlives the cache (a host's loop must be able to
   * close); a batch still collecting keys is freed here, one whose
   * dispatch is queued or whose loader runs finishes on its own and finds
   * the cache closed. */
  lbatch *b = c->batches_all, *next;
  for (; b != NULL; b = next) {
    next = b->all_next;
    ac_timer_free(b->timer);
    b->timer = NULL;
    if (!b->posted) {
      unlink_open(b);
      for (int i = 0; i < b->n; i++) free(b->loads[i]);
      free_batch(L, b);
    }
  }
}
