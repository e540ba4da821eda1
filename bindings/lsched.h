/* The coroutine bridge: Lua tasks on the core scheduler (internal).
 *
 * A task is a Lua thread the runtime resumes from its ready queue.  Tasks
 * come from runtime.spawn, runtime.run and from loads (a loader runs in a
 * pooled thread of its own, so a timeout can release its callers while it
 * is still running).  A C function that must wait calls lsched_park(),
 * hands the task to whatever will wake it (a flight, a timer, an event),
 * then returns lsched_yield(): the scheduler later resumes the thread with
 * the values the waker attached, which the yielding function returns.
 *
 * A task that yields without parking (a bare coroutine.yield()) is simply
 * queued again: it gives the other tasks a turn.
 *
 * Every resume happens in one place (resume_task in lua_sched.c), inside
 * one protected call per pass of the loop, so no Lua error unwinds through
 * libuv. */
#ifndef AC_LSCHED_H
#define AC_LSCHED_H

#include <lauxlib.h>
#include <lua.h>

#include "ac.h"

typedef struct lsched lsched;
typedef struct ltask ltask;
typedef struct lresult lresult;

/* Memory that only a coroutine which may never run again would free (a
 * load whose loader is parked, a queued batch, a result not yet
 * delivered).  The scheduler frees what
 * is still held when the Lua state closes, after every cache has closed. */
typedef struct lpending lpending;
struct lpending {
  lpending *prev, *next;
  void (*release)(lpending *p); /* NULL while not held */
};
void lsched_hold(lsched *ls, lpending *p, void (*release)(lpending *p));
void lsched_drop(lsched *ls, lpending *p);

/* A result shared by every task woken by the same event (one load's value
 * delivered to 10,000 waiters is one lresult).  Reference counted: each
 * woken task holds one reference until it has been resumed. */
struct lresult {
  lpending held; /* every result is held until its last reference goes */
  lsched *ls;
  int refs;
  int nvals;       /* values in the table at ref (or 0) */
  int ref;         /* registry ref: table {v1, ..., vn}, or LUA_NOREF */
  char cerr[96];   /* when ref is LUA_NOREF and cerr[0]: nil, cerr */
};

typedef void (*ltask_done_fn)(ltask *t, int status, int nres);

enum { TASK_SPAWN = 1, TASK_RUN, TASK_LOADER };

struct ltask {
  ac_task_t q;       /* ready-queue node, q.data == this */
  ac_waiter_t w;     /* flight waiter node, w.data == this */
  ac_load_waiter_t lw; /* load waiter node, lw.data == this */
  lsched *ls;
  lua_State *co;
  int kind;
  int parked;        /* yielded to wait: only a waker re-queues it */
  int nargs;         /* values already pushed on co for the next resume */
  lresult *wake;     /* values to push at the next resume, or NULL */
  ltask_done_fn done; /* TASK_LOADER: called when the thread finishes */
  void *done_ud;
  int finished, status, nres; /* TASK_RUN: how it ended */
  /* The load whose outcome this task waits for, while it is parked on its
   * flight or runs its loader inline (an lload; see lcache.h): lets a
   * load that would wait for itself be refused.  Cleared on wake. */
  void *waiting;
};

/* The scheduler state of a Lua state (created on first use). */
lsched *lsched_get(lua_State *L);
/* Installs a scheduler on a host's loop before cache.core is required; with
 * owns_sched the state frees the scheduler when it closes. */
lsched *lsched_install(lua_State *L, ac_sched_t *sched, int owns_sched);
ac_sched_t *lsched_sched(lsched *ls);
uv_loop_t *lsched_loop(lsched *ls);
lua_State *lsched_cbstate(lsched *ls);

/* Pops a function and its nargs arguments (pushed in that order) from L
 * into a new task of the given kind and queues it.  Raises on memory
 * error. */
ltask *lsched_spawn(lua_State *L, int kind, int nargs);
/* A pooled thread for a loader, its stack empty and ready for a function;
 * a new one is made on L (raises on L when out of memory). */
ltask *lsched_loader(lsched *ls, lua_State *L);
/* Resumes a loader task right now, from inside a C function running on L
 * (the loader's first run: a miss calls its loader without queueing).
 * Returns the lua_resume status; on LUA_YIELD the task carries on in the
 * background and its done callback will run when it finishes. */
int lsched_start_loader(lsched *ls, lua_State *L, ltask *t, int nargs,
                        int *nres);
/* After a loader task finished inline: returns its thread to the pool
 * (status LUA_OK) or drops it. */
void lsched_release_loader(lsched *ls, ltask *t, int status);

/* The task running on L, ready to be parked; raises a Lua error saying how
 * to fix it when L cannot wait (not a task, or not yieldable).  `what`
 * names the operation in that message ("cache:get()"). */
ltask *lsched_park(lua_State *L, const char *what);
/* Could the coroutine running on L wait (is it a task, and yieldable)? */
int lsched_can_wait(lua_State *L);
/* Yields the parked task; the calling C function must `return` this. */
int lsched_yield(lua_State *L);
/* Makes a parked task ready; res (may be NULL) is delivered to it and one
 * of its references is then the task's.  Safe from libuv callbacks: calls
 * no Lua API. */
void lsched_wake(ltask *t, lresult *res);

lresult *lresult_new(lsched *ls, int refs);
/* Pops n values from L into a new result (refs references). */
lresult *lresult_from_stack(lua_State *L, int n, int refs);
void lresult_release(lua_State *L, lresult *r);
/* A static "not enough memory" outcome, for when lresult_new fails in a
 * place that cannot raise (a waiter's callback); releasing it is a no-op. */
lresult *lresult_oom(void);
/* Pushes the result's values; returns how many (0 when L's stack cannot
 * grow that far: nothing is raised, as L may be a suspended coroutine). */
int lresult_push(lua_State *L, const lresult *r);

/* Is a task (or an inline loader) running right now? */
int lsched_in_task(lsched *ls);
/* The task being resumed right now (innermost), or NULL. */
ltask *lsched_current(lsched *ls);
/* Calls the error hook with err at the top of L (popped) and a traceback
 * of co (may be NULL). */
void lsched_report(lsched *ls, lua_State *L, lua_State *co);

/* The message of a coroutine that waits while nothing can wake it; `who`
 * is a string literal ("runtime.run: the function"). */
#define LSCHED_NEVER_MSG(who)                                               \
  who " is waiting for something that can never happen (no task is "      \
      "ready, no timer or I/O is pending)"

/* How many errors reached the default report (no hook installed). */
unsigned lsched_error_count(lsched *ls);

int luaopen_cache_runtime_core(lua_State *L);

#endif
