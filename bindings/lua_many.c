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

/* Result tables presized for this many keys at most (a table slot is 32
 * bytes; past this, outcomes are collected when the task resumes). */
#define PRESIZE_MAX 65536

typedef struct {
  ac_load_waiter_t w;
  int status; /* an outcome without values (timeout, close, no memory) */
} many_slot;

typedef struct {
  ltask *task;
  lsched *ls;
  int pending;   /* loads not finished yet */
  int n;
  int abandoned; /* get_many raised after joining: nobody collects */
  double timeout; /* the cache's load_timeout, for the message (the cache
                     may be closed when the task resumes) */
  int presized;  /* the values and errors tables have a free slot for every
                    key: a waiter may write there without allocating */
  int self_ref;  /* anchors the group while waiters point into it: the
                    coroutine's stack alone does not (it may be closed) */
  many_slot slot[];
} many_group;

/* A load of key i has finished.  Nothing here may raise or allocate a Lua
 * object (it runs inside the core's ac_load_finish): the outcome goes onto
 * the parked task's stack as (i, value, err), which its resume receives,
 * or stays in the slot as a status. */
static void many_on_waiter(ac_load_waiter_t *w, ac_load_t *load, int status) {
  many_group *g = w->data;
  lload *ld = lload_of(load);
  many_slot *s = (many_slot *)((char *)w - offsetof(many_slot, w));
  int i = (int)(s - g->slot);
  if (g->abandoned) {
    if (--g->pending == 0)
      luaL_unref(ac__lsched_cbstate(g->ls), LUA_REGISTRYINDEX, g->self_ref);
    return;
  }
  lua_State *from = ld->out_L, *co = g->task->co;
  if (from != NULL && g->presized && lua_checkstack(from, 6)) {
    /* values[keys[i]] = v, or errors[keys[i]] = err: the tables are the
     * group's user values (1 keys, 2 values, 3 errors; the group is
     * anchored by self_ref, not by the task's stack, which may be
     * closed), and they have room for every key. */
    int v = ld->out, e = ld->out_n >= 2 ? ld->out + 1 : 0;
    int target = !lua_isnil(from, v) ? 2 : (e && !lua_isnil(from, e)) ? 3 : 0;
    if (target != 0) {
      lua_rawgeti(from, LUA_REGISTRYINDEX, g->self_ref);
      lua_getiuservalue(from, -1, target);
      lua_getiuservalue(from, -2, 1);
      lua_rawgeti(from, -1, i + 1);
      lua_replace(from, -2);
      lua_pushvalue(from, target == 2 ? v : e);
      lua_rawset(from, -3);
      lua_pop(from, 2);
    }
  } else if (from != NULL && lua_checkstack(from, 2) && lua_checkstack(co, 4)) {
    lua_pushinteger(co, i);
    lua_pushvalue(from, ld->out);
    if (ld->out_n >= 2) lua_pushvalue(from, ld->out + 1);
    else lua_pushnil(from);
    lua_xmove(from, co, 2);
    g->task->nargs += 3;
  } else if (status == 0 && ac_load_slot(load) != 0 && lua_checkstack(co, 4)) {
    /* A remote hit: the value is in its slot, no loader ran. */
    lua_pushinteger(co, i);
    ac__lcache_push_value(co, ld->c, ac_load_slot(load));
    lua_pushnil(co);
    g->task->nargs += 3;
  } else {
    s->status = status != 0 ? status : AC_ENOMEM;
  }
  if (--g->pending == 0) ac__lsched_wake(g->task, NULL);
}

/* t[keys[i]] = the value at idx (t at tidx, keys at 2). */
static void put(lua_State *L, int tidx, int i, int idx) {
  lua_rawgeti(L, 2, i + 1);
  lua_pushvalue(L, idx);
  lua_settable(L, tidx);
}

/* The resumed task: stack 1..6 as when it parked (values at 4, errors at
 * 5, the group at 6), then (i, value, err) for each load that finished
 * with values.  Returns values and errors (nil when empty). */
static int many_collect(lua_State *L, int status, lua_KContext ctx) {
  (void)status, (void)ctx;
  many_group *g = lua_touserdata(L, 6);
  luaL_unref(L, LUA_REGISTRYINDEX, g->self_ref);
  g->self_ref = LUA_NOREF;
  int top = lua_gettop(L);
  for (int at = 7; at + 2 <= top; at += 3) {
    int i = (int)lua_tointeger(L, at);
    if (!lua_isnil(L, at + 1)) put(L, 4, i, at + 1);
    else if (!lua_isnil(L, at + 2)) put(L, 5, i, at + 2);
  }
  lua_settop(L, 6);
  for (int i = 0; i < g->n; i++) {
    int st = g->slot[i].status;
    if (st == 0) continue;
    g->slot[i].status = 0;
    char msg[96];
    ac__lload_status_message(msg, sizeof msg, st, g->timeout);
    lua_pushstring(L, msg);
    put(L, 5, i, 7);
    lua_settop(L, 6);
  }
  lua_pushnil(L);
  if (lua_next(L, 5) == 0) {
    lua_pushnil(L);
    lua_replace(L, 5);
  }
  lua_settop(L, 5);
  return 2;
}

/* many_join(cache, keys, batch-or-nil, values, errors, group, ttl): reads
 * the hits and joins (or queues in a batch) the misses.  Run under
 * lua_pcall: an error once some loads were joined leaves the group to
 * its waiters (abandoned), never a waiter pointing at a dead task. */
static int many_join(lua_State *L) {
  lcache *c = lua_touserdata(L, 1);
  many_group *g = lua_touserdata(L, 6);
  double ttl = lua_tonumber(L, 7);
  int batch = lua_isnil(L, 3) ? 0 : 3;
  lua_settop(L, 6);
  for (int i = 1; i <= g->n; i++) {
    lua_rawgeti(L, 2, i); /* 7: the key */
    lkey k;
    lkey_get(L, 7, &k, "get_many"); /* checked: cannot raise */
    ac_lookup_t r;
    int found = ac_cache_get(c->cache, k.tag, k.p, k.len, &r);
    if (found == AC_HIT) {
      lua_pushvalue(L, 7);
      ac__lcache_push_value(L, c, r.slot);
      lua_settable(L, 4);
    } else {
      ac_load_t *f = found == AC_JOIN ? r.load : NULL;
      if (f == NULL && batch != 0) {
        if (g->task == NULL) g->task = ac__lsched_park(L, "cache:get_many()");
        lload_spec spec = {LOAD_GET, k.tag, k.p, k.len, 0, 7, 7, ttl, 0, batch};
        f = ac__lbatch_enqueue(L, c, &spec);
      } else if (f == NULL && c->remote != NULL && g->task != NULL) {
        /* No loader: the remote may have it (when the caller can wait, as
         * g->task says).  The lookups of all the missing keys go out
         * together, pipelined. */
        int rc;
        f = ac__lload_remote(c, LOAD_GET, k.tag, k.p, k.len, ttl, &rc);
      }
      if (f != NULL && ac__lload_waits_for(f, ac__lsched_current(c->ls))) {
        /* A batch loader asking for a key of its own batch: that key
         * fails at once instead of waiting for itself. */
        lua_pushvalue(L, 7);
        ac__lload_push_recursive(L, LOAD_GET, k.tag, k.p, k.len);
        lua_settable(L, 5);
        f = NULL;
      }
      if (f != NULL) {
        if (g->task == NULL) g->task = ac__lsched_park(L, "cache:get_many()");
        if (g->self_ref == LUA_NOREF) { /* before any waiter can run */
          lua_pushvalue(L, 6);
          g->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        }
        g->slot[i - 1].w.cb = many_on_waiter;
        g->slot[i - 1].w.data = g;
        ac_load_join(f, &g->slot[i - 1].w);
        g->pending++;
      }
    }
    lua_settop(L, 6);
  }
  return 0;
}

int ac__lcache_get_many(lua_State *L) {
  lcache *c = ac__lcache_check(L, 1, "get_many");
  if (lua_type(L, 2) != LUA_TTABLE)
    return luaL_error(L, "cache:get_many(): keys must be a table (a list of keys), got %s",
                      luaL_typename(L, 2));
  double ttl = 0; /* the cache's default */
  lua_settop(L, 3);
  if (!lua_isnil(L, 3)) {
    if (!lua_istable(L, 3))
      return luaL_error(L, "cache:get_many(): opts must be a table, got %s", luaL_typename(L, 3));
    ac__ltype_check_options(L, 3, "cache:get_many()", GET_MANY_OPTIONS);
    if (lua_getfield(L, 3, "ttl") != LUA_TNIL) ttl = ac__lcache_check_ttl(L, -1, "cache:get_many()");
    lua_pop(L, 1);
    lua_getfield(L, 3, "batch_loader");
    if (!lua_isnil(L, -1)) ac__lcache_check_callable(L, -1, "cache:get_many()", "batch_loader");
    lua_replace(L, 3);
  }
  if (lua_isnil(L, 3) && c->batch_fn_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->batch_fn_ref);
    lua_replace(L, 3);
  }
  if (c->closed) return luaL_error(L, "the cache is closed"); /* an option's metamethod */
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
  /* A private copy of the keys replaces the caller's table at 2: results
   * are filed under these keys when loads finish, and the caller's table
   * may change meanwhile. */
  lua_createtable(L, n, 0);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    lua_rawseti(L, -2, i);
  }
  lua_replace(L, 2);
  /* 4: values, 5: errors.  Up to PRESIZE_MAX keys they get a slot for
   * every key now, so that waiters can fill them without allocating;
   * beyond, outcomes travel on the task's stack (many_collect). */
  int presized = n <= PRESIZE_MAX;
  lua_createtable(L, 0, presized ? n : 0);
  lua_createtable(L, 0, presized ? n : 0);
  many_group *g = lua_newuserdatauv(L, sizeof *g + (size_t)n * sizeof(many_slot), 3);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, 6, 1);
  lua_pushvalue(L, 4);
  lua_setiuservalue(L, 6, 2);
  lua_pushvalue(L, 5);
  lua_setiuservalue(L, 6, 3);
  g->self_ref = LUA_NOREF;
  g->task = NULL;
  g->ls = c->ls;
  g->pending = 0;
  g->abandoned = 0;
  g->presized = presized;
  g->timeout = ac_cache_load_timeout(c->cache);
  g->n = n;
  for (int i = 0; i < n; i++) g->slot[i].status = 0;
  /* Parked up front: inside the pcall below the coroutine cannot be
   * parked (a C pcall makes it non-yieldable); many_join raises the usual
   * message when a key must wait and there is no task. */
  if (ac__lsched_can_wait(L)) g->task = ac__lsched_park(L, "cache:get_many()");
  lua_pushcfunction(L, many_join);
  for (int i = 1; i <= 6; i++) lua_pushvalue(L, i);
  lua_pushnumber(L, ttl);
  if (lua_pcall(L, 7, 0, 0) != LUA_OK) {
    if (g->task != NULL) g->task->parked = 0; /* it will not wait */
    if (g->pending > 0) g->abandoned = 1;     /* the last waiter unanchors */
    else luaL_unref(L, LUA_REGISTRYINDEX, g->self_ref);
    return lua_error(L);
  }
  if (g->pending == 0) {
    if (g->task != NULL) g->task->parked = 0;
    return many_collect(L, LUA_OK, 0);
  }
  return lua_yieldk(L, 0, 0, many_collect);
}
