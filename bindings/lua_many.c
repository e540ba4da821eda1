/* cache:get_many(keys[, opts]): one parked task waiting on several loads
 * at once.
 *
 * Hits are read at once; missing keys join the key's load in progress, or
 * go to the batch loader (opts.batch_loader or the cache's) in as few
 * batches as the batch size allows.  Values that arrive with their load
 * are written straight into the result tables (through registry refs);
 * only errors made without values (timeout, close) wait in the slot for
 * the task to resume. */
#include <lauxlib.h>
#include <stddef.h>

#include "lcache.h"
#include "lkey.h"
#include "ltype.h"

static const char *const GET_MANY_OPTIONS[] = {"ttl", "batch_loader", NULL};

typedef struct {
  ac_load_waiter_t w;
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

static void many_on_waiter(ac_load_waiter_t *w, ac_load_t *load, int status) {
  many_group *g = w->data;
  lload *ld = lload_of(load);
  many_slot *s = (many_slot *)((char *)w - offsetof(many_slot, w));
  int i = (int)(s - g->slot);
  lua_State *L = ld->out_L;
  if (L != NULL && lua_checkstack(L, 4)) {
    if (!lua_isnil(L, ld->out)) many_put(L, g, i, g->values_ref, ld->out);
    else if (ld->out_n >= 2 && !lua_isnil(L, ld->out + 1))
      many_put(L, g, i, g->errors_ref, ld->out + 1);
  } else {
    /* one of its references is this slot's */
    s->res = lload_status_result(load, status != 0 ? status : AC_ECANCELED);
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
int lcache_get_many(lua_State *L) {
  lcache *c = lcache_check(L, 1, "get_many");
  if (lua_type(L, 2) != LUA_TTABLE)
    return luaL_error(L, "cache:get_many(): keys must be a table (a list of keys), got %s",
                      luaL_typename(L, 2));
  double ttl = 0; /* the cache's default */
  lua_settop(L, 3);
  if (!lua_isnil(L, 3)) {
    if (!lua_istable(L, 3))
      return luaL_error(L, "cache:get_many(): opts must be a table, got %s", luaL_typename(L, 3));
    ltype_check_options(L, 3, "cache:get_many()", GET_MANY_OPTIONS);
    if (lua_getfield(L, 3, "ttl") != LUA_TNIL) ttl = lcache_check_ttl(L, -1, "cache:get_many()");
    lua_pop(L, 1);
    lua_getfield(L, 3, "batch_loader");
    if (!lua_isnil(L, -1)) lcache_check_callable(L, -1, "cache:get_many()", "batch_loader");
    lua_replace(L, 3);
  }
  if (lua_isnil(L, 3) && c->batch_fn_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->batch_fn_ref);
    lua_replace(L, 3);
  }
  int batch = lua_isnil(L, 3) ? 0 : 3;
  if (c->closed) return luaL_error(L, "the cache is closed"); /* an option's metamethod */
  c->L = L;
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
    lkey_get(L, 7, &k, "get_many"); /* checked above: cannot raise */
    ac_lookup_t r;
    int found = ac_cache_get(c->cache, k.tag, k.p, k.len, &r);
    if (found == AC_HIT) {
      lua_pushvalue(L, 7);
      lcache_push_value(L, c, r.slot);
      lua_settable(L, 4);
    } else {
      ac_load_t *f = found == AC_JOIN ? r.load : NULL;
      if (f == NULL && batch != 0) {
        if (g->task == NULL) g->task = lsched_park(L, "cache:get_many()");
        lload_spec spec = {LOAD_GET, k.tag, k.p, k.len, 0, 7, 7, ttl, 0, batch};
        f = lbatch_enqueue(L, c, &spec);
      }
      if (f != NULL && lload_waits_for(f, lsched_current(c->ls))) {
        /* A batch loader asking for a key of its own batch: that key
         * fails at once instead of waiting for itself. */
        lua_pushvalue(L, 7);
        lload_push_recursive(L, LOAD_GET, k.tag, k.p, k.len);
        lua_settable(L, 5);
        f = NULL;
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
        ac_load_join(f, &g->slot[i - 1].w);
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

