/* Results shared by woken tasks (see lresult.h).
 *
 * The values sit in a registry table {v1, ..., vn} (or, for an outcome
 * without values, nil plus the C string cerr), so one result serves any
 * number of waiters without copying per waiter until each is resumed.  The
 * struct comes from the core's allocator; it is held by the scheduler from
 * creation until its last reference is released. */
#include "alloc.h"
#include "lsched.h"

static void release_result(lpending *p) {
  ac__free(p); /* held is the first member */
}

lresult *ac__lresult_new(lsched *ls, int refs) {
  lresult *r = ac__malloc(sizeof *r);
  if (r == NULL) return NULL;
  r->ls = ls;
  r->refs = refs;
  r->nvals = 0;
  r->ref = LUA_NOREF;
  r->cerr[0] = '\0';
  r->held.release = NULL;
  /* A task holding a reference may never run again (the state closes
   * while it waits): the scheduler frees the result then. */
  ac__lsched_hold(ls, &r->held, release_result);
  return r;
}

lresult *ac__lresult_from_stack(lua_State *L, int n, int refs) {
  int base = lua_gettop(L) - n;
  lresult *r = ac__lresult_new(ac__lsched_get(L), refs);
  if (r == NULL) luaL_error(L, "out of memory");
  lua_createtable(L, n, 0);
  for (int i = 1; i <= n; i++) {
    lua_pushvalue(L, base + i);
    lua_rawseti(L, -2, i);
  }
  r->nvals = n;
  r->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, base);
  return r;
}

/* The outcome given when even a result cannot be allocated: shared, never
 * freed, never counted. */
static lresult oom_result = {{NULL, NULL, NULL}, NULL, 1, 0, LUA_NOREF, "not enough memory"};

lresult *ac__lresult_oom(void) { return &oom_result; }

void ac__lresult_release(lua_State *L, lresult *r) {
  if (r == NULL || r == &oom_result || --r->refs > 0) return;
  luaL_unref(L, LUA_REGISTRYINDEX, r->ref);
  ac__lsched_drop(r->ls, &r->held);
  ac__free(r);
}

int ac__lresult_push(lua_State *L, const lresult *r) {
  if (r->ref == LUA_NOREF) {
    if (r->cerr[0] == '\0') return 0;
    lua_pushnil(L);
    lua_pushstring(L, r->cerr);
    return 2;
  }
  /* L may be a suspended coroutine: no error may be raised on it. */
  if (!lua_checkstack(L, r->nvals + 1)) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref);
  for (int i = 1; i <= r->nvals; i++) lua_rawgeti(L, -i, i);
  lua_remove(L, -(r->nvals + 1));
  return r->nvals;
}
