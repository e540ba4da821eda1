/* The scheduler state of a Lua state (internal to the bridge: only
 * lua_sched.c, lua_task.c and lua_runtime.c include this; everything
 * else goes through the functions of lsched.h).
 *
 * One per lua_State, in a full userdata under a registry key, created by
 * ac__lsched_install; its __gc is the teardown.  Nothing a libuv handle points
 * to lives in Lua-collected memory: handles are allocated with the core's
 * allocator and freed in their close callbacks. */
#ifndef AC_LSCHED_STATE_H
#define AC_LSCHED_STATE_H

#include "lsched.h"

/* Loader threads kept for reuse (a miss costs no new thread). */
#define LSCHED_POOL_MAX 64

struct lsched {
  ac_sched_t *sched;
  int owns_sched;
  /* A thread of our own: each pass of the ready queue runs on it under
   * one lua_pcall; tasks are resumed from it (lua_task.c). */
  lua_State *cbL;
  int cbL_ref;
  /* Registry table thread -> task userdata: anchors every live task's
   * thread and its struct, pooled loader threads included. */
  int tasks_ref;
  int hook_ref;    /* the error hook, or LUA_NOREF */
  int ctx_ref;     /* the context of code outside any task, or LUA_NOREF */
  ltask *current;  /* task being resumed, innermost */
  int in_run;      /* runtime.run is driving the loop */
  int in_pass;     /* a pass of the ready queue is running */
  ltask *pool[LSCHED_POOL_MAX];
  int npool;
  unsigned errors;   /* reported without a hook */
  lpending *pending; /* see ac__lsched_hold */
};

/* The function each pass of the ready queue runs (lua_task.c). */
void ac__lsched_pass(ac_sched_t *s, void *ud);

#endif
