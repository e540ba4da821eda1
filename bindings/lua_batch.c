/* DataLoader-style batching, from the Lua side: concurrent misses for
 * different keys become one call of a batch loader.
 *
 * The core (ac_cache_batch) collects the keys of each batch loader
 * (grouped by the function's identity) until the window ends
 * (batch_window_ms; 0: after the current pass of the ready queue) or the
 * batch holds max_batch_size keys, and gives every key a load of its own,
 * so a get for a key already in a batch, or being loaded alone, joins
 * that load and nothing is loaded twice.  This file keeps what only Lua
 * has: the batch loader and the keys' Lua values (a keys table, in the
 * order the core lists the loads), runs the loader when the core
 * dispatches the batch (a task in a pass of the ready queue, protected),
 * and reads its result: f(keys) -> values[, errors], as a map or an array
 * (batch_result).  A batch anchors its cache and its loader in the
 * registry until it is done. */
#include <lauxlib.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "lcache.h"
#include "lkey.h"

/* The binding's part of a batch (ac_batch_data). */
typedef struct lbatch {
  ac_batch_t *batch;
  lcache *c;
  int n;              /* keys so far (= the core's batch size) */
  int settled;        /* loads settled so far, in key order */
  int keys_cap;       /* the keys table's array part holds 1..keys_cap:
                         appending below it never allocates */
  int fn_ref, keys_ref, cache_ref;
  lpending held;      /* while its loader runs on its own */
} lbatch;

size_t ac__lbatch_data_size(void) { return sizeof(lbatch); }

/* Releases what the batch holds and lets the core free it. */
static void free_batch(lua_State *L, lbatch *b) {
  if (b->c != NULL) { /* luaL_unref ignores LUA_NOREF */
    luaL_unref(L, LUA_REGISTRYINDEX, b->fn_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, b->keys_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, b->cache_ref);
    ac__lsched_drop(b->c->ls, &b->held);
  }
  ac_batch_done(b->batch);
}

/* The state closed while the batch loader was parked for ever. */
static void release_batch(lpending *p) {
  lbatch *b = (lbatch *)((char *)p - offsetof(lbatch, held));
  for (size_t i = (size_t)b->settled; i < ac_batch_size(b->batch); i++)
    ac_load_finish(ac_batch_load(b->batch, i), AC_ECANCELED, 0);
  ac_batch_done(b->batch);
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

/* Settles key i (0-based) with nout values at v (v, or nil and err). */
static void settle_key(lua_State *L, lbatch *b, size_t i, int v, int nout,
                       int failed) {
  ac_load_t *ld = ac_batch_load(b->batch, i);
  lload_of(ld)->loader = NULL;
  b->settled++;
  ac__lload_settle(L, ld, v, nout, failed, !failed && !lua_isnil(L, v));
}

/* Every key not settled yet gets nil, the error at idx.  Never raises. */
static void fail_rest(lua_State *L, lbatch *b, int idx) {
  int top = lua_gettop(L);
  while (b->settled < b->n) {
    lua_pushnil(L);
    lua_pushvalue(L, idx);
    settle_key(L, b, (size_t)b->settled, top + 1, 2, 1);
    lua_settop(L, top);
  }
}

/* finish_protected(b, failed, r1[, r2]): reads the batch loader's results
 * (or its error, when failed) and settles every key.  Under lua_pcall:
 * reading allocates (messages), and an error must not leave keys open. */
static int finish_protected(lua_State *L) {
  lbatch *b = lua_touserdata(L, 1);
  int failed = lua_toboolean(L, 2);
  int nres = lua_gettop(L) - 2;
  int base = 2;
  int values = 0, errors = 0;
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
  if (failed) {
    fail_rest(L, b, base + 1);
    return 0;
  }
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
    fail_rest(L, b, lua_gettop(L));
    return 0;
  }
  for (int i = 0; i < b->n; i++) {
    int top = lua_gettop(L);
    push_for_key(L, b, errors, i + 1, emap);
    if (!lua_isnil(L, -1)) { /* nil, err */
      lua_pushnil(L);
      lua_insert(L, -2);
      settle_key(L, b, (size_t)i, top + 1, 2, 1);
    } else {
      lua_pop(L, 1);
      push_for_key(L, b, values, i + 1, vmap);
      settle_key(L, b, (size_t)i, top + 1, 1, 0);
    }
    lua_settop(L, top);
  }
  return 0;
}

/* Settles every key with the batch loader's outcome: status st and nres
 * results (or the error object) on t->co.  Never raises. */
static void finish_batch(lua_State *L, lbatch *b, ltask *t, int st, int nres) {
  lcache *c = b->c;
  int base = lua_gettop(L);
  if (st != LUA_OK) nres = 1;
  if (nres > 2) { /* values and errors are all that matter */
    lua_pop(t->co, nres - 2);
    nres = 2;
  }
  /* The pass's state has room for a few: the function, b, failed, r1, r2. */
  lua_pushcfunction(L, finish_protected);
  lua_pushlightuserdata(L, b);
  lua_pushboolean(L, st != LUA_OK);
  lua_xmove(t->co, L, nres);
  ac__lsched_release_loader(c->ls, t, st);
  if (lua_pcall(L, nres + 2, 0, 0) != LUA_OK) fail_rest(L, b, lua_gettop(L));
  lua_settop(L, base);
  free_batch(L, b);
}

static void on_batch_done(ltask *t, int st, int nres) {
  finish_batch(ac__lsched_cbstate(t->ls), t->done_ud, t, st, nres);
}

/* start_protected(b): a loader thread with the batch loader and a copy of
 * the keys on it (they allocate); returns the task as a light userdata. */
static int start_protected(lua_State *L) {
  lbatch *b = lua_touserdata(L, 1);
  if ((size_t)b->n != ac_batch_size(b->batch)) {
    /* The remote served some keys (they left the batch): the keys of the
     * loads left, in their order, from the loads themselves. */
    int n = (int)ac_batch_size(b->batch);
    b->n = n; /* first: what follows may raise, and then n keys fail */
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
      int tag;
      size_t len;
      const char *key = ac_load_key(ac_batch_load(b->batch, (size_t)i), &tag, &len);
      ac__lkey_push(L, tag, key, len);
      lua_rawseti(L, -2, i + 1);
    }
    lua_rawseti(L, LUA_REGISTRYINDEX, b->keys_ref);
  }
  ltask *t = ac__lsched_loader(b->c->ls, L);
  if (!lua_checkstack(t->co, 2)) {
    ac__lsched_release_loader(b->c->ls, t, LUA_OK);
    return luaL_error(L, "not enough memory");
  }
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
  lua_pushlightuserdata(L, t);
  return 1;
}

void ac__lbatch_dispatch(void *ud, ac_batch_t *batch) {
  lcache *c = ud;
  lbatch *b = ac_batch_data(batch);
  lua_State *L = ac__lsched_cbstate(c->ls);
  b->batch = batch;
  if (ac_batch_closed(batch) || b->c == NULL || b->n == 0 || ac_batch_size(batch) == 0) {
    /* The cache closed first (its loads' waiters are released), or the
     * batch never got a key: nothing to run. */
    for (size_t i = 0; i < ac_batch_size(batch); i++)
      ac_load_finish(ac_batch_load(batch, i), AC_ECANCELED, 0);
    free_batch(L, b);
    return;
  }
  int base = lua_gettop(L);
  lua_pushcfunction(L, start_protected);
  lua_pushlightuserdata(L, b);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    fail_rest(L, b, lua_gettop(L));
    lua_settop(L, base);
    free_batch(L, b);
    return;
  }
  ltask *t = lua_touserdata(L, -1);
  lua_settop(L, base);
  t->done = on_batch_done;
  t->done_ud = b;
  for (int i = 0; i < b->n; i++) lload_of(ac_batch_load(batch, (size_t)i))->loader = t;
  int nres, st = ac__lsched_start_loader(c->ls, L, t, 1, &nres);
  if (st != LUA_YIELD) {
    finish_batch(L, b, t, st, nres);
    return;
  }
  ac__lsched_hold(c->ls, &b->held, release_batch);
  ac_batch_background(batch);
}

/* enqueue_lua(batch data, batch loader, key, cache): the Lua side of a
 * key joining a batch, under lua_pcall (it allocates). */
static int enqueue_lua(lua_State *L) {
  lbatch *b = lua_touserdata(L, 1);
  if (b->keys_ref == LUA_NOREF) { /* the batch's first key */
    lua_newtable(L);
    b->keys_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, 2);
    b->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, 4);
    b->cache_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (b->n + 1 > b->keys_cap) { /* a bigger keys table, doubling */
    int cap = b->keys_cap ? b->keys_cap * 2 : 64;
    lua_createtable(L, cap, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, b->keys_ref);
    for (int i = 1; i <= b->n; i++) {
      lua_rawgeti(L, -1, i);
      lua_rawseti(L, -3, i);
    }
    lua_pop(L, 1);
    lua_rawseti(L, LUA_REGISTRYINDEX, b->keys_ref); /* an existing key */
    b->keys_cap = cap;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->keys_ref);
  lua_pushvalue(L, 3);
  lua_rawseti(L, -2, b->n + 1);
  return 0;
}

ac_load_t *ac__lbatch_enqueue(lua_State *L, lcache *c, const lload_spec *spec) {
  ac_load_t *ld;
  int rc = ac_cache_batch(c->cache, lua_topointer(L, spec->batch_fn), spec->tag,
                          spec->key, spec->len, spec->ttl, &ld);
  if (rc != 0) luaL_error(L, "cannot load: %s", ac_strerror(rc));
  ac__lload_init(ld, c, LOAD_GET);
  ac_batch_t *batch = ac_load_batch(ld);
  lbatch *b = ac_batch_data(batch);
  if (b->c == NULL) {
    b->batch = batch;
    b->c = c;
    b->fn_ref = b->keys_ref = b->cache_ref = LUA_NOREF;
  }
  if (b->n < b->keys_cap && lua_checkstack(L, 2)) {
    /* Room in the keys table: appending cannot fail, no protection needed. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, b->keys_ref);
    lua_pushvalue(L, spec->first);
    lua_rawseti(L, -2, b->n + 1);
    lua_pop(L, 1);
    b->n++;
    return ld;
  }
  lua_pushcfunction(L, enqueue_lua);
  lua_pushlightuserdata(L, b);
  lua_pushvalue(L, spec->batch_fn);
  lua_pushvalue(L, spec->first);
  lua_pushvalue(L, 1);
  if (lua_pcall(L, 4, 0, 0) != LUA_OK) {
    ac_load_abort(ld); /* the batch's keys and loads stay in step */
    lua_error(L);
  }
  b->n++;
  return ld;
}

int ac__lbatch_add(lua_State *L, lcache *c, const lload_spec *spec) {
  /* Park first: fail before queueing anything when the caller could not
   * wait. */
  ltask *t = ac__lsched_park(L, "cache:get() with a batch loader");
  return ac__lload_join(L, t, ac__lbatch_enqueue(L, c, spec), LOAD_GET);
}
