/* Tasks: Lua threads the scheduler resumes (internal; lua_task.c).
 *
 * A task's thread and its struct (a full userdata) are anchored in the
 * scheduler's tasks table (thread -> userdata) for as long as the task
 * lives; forgetting a task removes the entry and lets both be collected.
 * A task is in at most one of three places: the ready queue (q), the
 * waiters of a flight (w) or of an event (wait_next), or a timer's data;
 * `parked` says it yielded to wait there, so only its waker queues it. */
#ifndef AC_LTASK_H
#define AC_LTASK_H

#include "lsched.h"

typedef void (*ltask_done_fn)(ltask *t, int status, int nres);

enum { TASK_SPAWN = 1, TASK_RUN, TASK_LOADER };

struct ltask {
  ac_task_t q;       /* ready-queue node, q.data == this */
  ac_waiter_t w;     /* flight waiter node, w.data == this */
  ac_load_waiter_t lw; /* load waiter node, lw.data == this */
  ltask *wait_next;  /* next task waiting on the same event (lua_event.c) */
  lsched *ls;
  lua_State *co;
  int kind;
  int parked;        /* yielded to wait: only a waker re-queues it */
  int nargs;         /* values already pushed on co for the next resume */
  lresult *wake;     /* values to push at the next resume, or NULL */
  ltask_done_fn done; /* TASK_LOADER: called when the thread finishes */
  void *done_ud;
  int finished, status, nres; /* TASK_RUN: how it ended */
  /* Its runtime.run gave up on it (nothing could wake it then).  It stays
   * anchored, since whatever it waits on still points to it (a fake timer,
   * an event set later); when woken it is forgotten, never resumed. */
  int abandoned;
  /* The load whose outcome this task waits for, while it is parked on its
   * flight or runs its loader inline (an lload; see lcache.h): lets a
   * load that would wait for itself be refused.  Cleared on wake. */
  void *waiting;
  /* Registry reference of the task's context value (core.runtime.context),
   * or LUA_NOREF.  A spawned task starts with the context of the task that
   * spawned it; loader threads start without one.  Released when the task
   * is forgotten or its thread goes back to the pool. */
  int ctx_ref;
};

/* Pops a function and its nargs arguments (pushed in that order) from L
 * into a new task of the given kind and queues it.  Raises on memory
 * error. */
ltask *ac__lsched_spawn(lua_State *L, int kind, int nargs);
/* A pooled thread for a loader, its stack empty and ready for a function. */
ltask *ac__lsched_loader(lsched *ls, lua_State *L);
/* Resumes a loader task right now, from inside a C function running on L
 * (the loader's first run: a miss calls its loader without queueing).
 * Returns the lua_resume status; on LUA_YIELD the task carries on in the
 * background and its done callback will run when it finishes. */
int ac__lsched_start_loader(lsched *ls, lua_State *L, ltask *t, int nargs,
                        int *nres);
/* After a loader task finished inline: returns its thread to the pool
 * (status LUA_OK) or drops it. */
void ac__lsched_release_loader(lsched *ls, ltask *t, int status);
/* Lets a task go: its thread and struct may be collected (using L's
 * stack).  It must not be queued or parked anywhere any more. */
void ac__lsched_forget(lsched *ls, lua_State *L, ltask *t);

/* The task running on L, or NULL when L is not a yieldable task. */
ltask *ac__lsched_task_of(lsched *ls, lua_State *L);
/* The task running on L; raises a Lua error saying how to fix it when L
 * cannot wait (not a task, or not yieldable).  `what` names the operation
 * in that message ("cache:get()"). */
ltask *ac__lsched_check_task(lua_State *L, const char *what);
/* ac__lsched_check_task, and marks the task parked. */
ltask *ac__lsched_park(lua_State *L, const char *what);
/* Yields the parked task; the calling C function must `return` this. */
int ac__lsched_yield(lua_State *L);
/* Could the coroutine running on L wait (is it a task, and yieldable)? */
int ac__lsched_can_wait(lua_State *L);
/* Makes a parked task ready; res (may be NULL) is delivered to it and one
 * of its references is then the task's.  Safe from libuv callbacks: calls
 * no Lua API. */
void ac__lsched_wake(ltask *t, lresult *res);

/* The task being resumed right now (innermost), or NULL. */
ltask *ac__lsched_current(lsched *ls);
/* Where the context of the running code is kept: the current task's
 * ctx_ref, or the state's (code outside any task). */
int *ac__lsched_context(lsched *ls);

#endif
