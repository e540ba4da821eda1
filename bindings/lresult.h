/* Results shared by woken tasks (internal; lua_result.c).
 *
 * A result is the values one event delivers to every task it wakes (one
 * load's value delivered to 10,000 waiters is one lresult).  It is
 * reference counted: each woken task holds one reference until it has
 * been resumed, and the values live in a registry table until the last
 * reference goes.  Every result is also held by the scheduler (lpending):
 * a task holding a reference may never run again, and the result is freed
 * when the Lua state closes. */
#ifndef AC_LRESULT_H
#define AC_LRESULT_H

#include "lsched.h"

struct lresult {
  lpending held; /* first member: the release callback frees the result */
  lsched *ls;
  int refs;
  int nvals;       /* values in the table at ref (or 0) */
  int ref;         /* registry ref: table {v1, ..., vn}, or LUA_NOREF */
  char cerr[96];   /* when ref is LUA_NOREF and cerr[0]: nil, cerr */
};

/* A result without values and with refs references, or NULL when out of
 * memory. */
lresult *ac__lresult_new(lsched *ls, int refs);
/* Pops n values from L into a new result (refs references).  Raises on
 * memory error. */
lresult *ac__lresult_from_stack(lua_State *L, int n, int refs);
/* Drops one reference (r NULL: no-op); the last one frees r. */
void ac__lresult_release(lua_State *L, lresult *r);
/* A static "not enough memory" outcome, for when ac__lresult_new fails in a
 * place that cannot raise (a waiter's callback); releasing it is a no-op. */
lresult *ac__lresult_oom(void);
/* Pushes the result's values; returns how many (0 when L's stack cannot
 * grow that far: nothing is raised, as L may be a suspended coroutine). */
int ac__lresult_push(lua_State *L, const lresult *r);

#endif
