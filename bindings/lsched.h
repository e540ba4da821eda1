/* The coroutine bridge: Lua tasks on the core scheduler (internal).
 *
 * A task is a Lua thread the runtime resumes from its ready queue.  Tasks
 * come from runtime.spawn, runtime.run and from loads (a loader runs in a
 * pooled thread of its own, so a timeout can release its callers while it
 * is still running).  A C function that must wait calls ac__lsched_park(),
 * hands the task to whatever will wake it (a flight, a timer, an event),
 * then returns ac__lsched_yield(): the scheduler later resumes the thread with
 * the values the waker attached, which the yielding function returns.
 *
 * A task that yields without parking (a bare coroutine.yield()) is simply
 * queued again: it gives the other tasks a turn.
 *
 * Every lua_resume of a task happens in one function (resume in
 * lua_task.c), used both for queued tasks (inside the one protected call of
 * each pass of the loop, so no Lua error unwinds through libuv) and for a
 * loader's first run inline (ac__lsched_start_loader).
 *
 * This header is the scheduler state of a Lua state (lua_sched.c); it
 * includes the headers of the rest of the bridge:
 *   ltask.h     tasks: spawn, loaders, parking and waking (lua_task.c)
 *   lresult.h   results shared by woken tasks (lua_result.c)
 *   lruntime.h  the cache.runtime module: its API (lua_runtime.c), events
 *               (lua_event.c) and the fake clock (lua_clock.c) */
#ifndef AC_LSCHED_H
#define AC_LSCHED_H

#include <lauxlib.h>
#include <lua.h>

#include "ac.h"

typedef struct lsched lsched;
typedef struct ltask ltask;
typedef struct lresult lresult;

/* Memory that only something which may never happen before the Lua state
 * closes would free: a load whose loader is parked, a queued batch, a
 * result not yet delivered, an armed sleep.  The scheduler releases what
 * is still held when the Lua state closes, after every cache has closed. */
typedef struct lpending lpending;
struct lpending {
  lpending *prev, *next;
  void (*release)(lpending *p); /* NULL while not held */
};
void ac__lsched_hold(lsched *ls, lpending *p, void (*release)(lpending *p));
void ac__lsched_drop(lsched *ls, lpending *p);

/* The scheduler state of a Lua state (created on first use). */
lsched *ac__lsched_get(lua_State *L);
/* Installs a scheduler on a host's loop before cache.core is required; with
 * owns_sched the state frees the scheduler when it closes. */
lsched *ac__lsched_install(lua_State *L, ac_sched_t *sched, int owns_sched);
ac_sched_t *ac__lsched_sched(lsched *ls);
/* The thread each pass of the ready queue runs on: where callbacks that
 * need a Lua stack (a load finishing, a batch dispatching) do their work. */
lua_State *ac__lsched_cbstate(lsched *ls);

/* Calls the error hook with err at the top of L (popped) and a traceback
 * of co (may be NULL). */
void ac__lsched_report(lsched *ls, lua_State *L, lua_State *co);

/* The message of a coroutine that waits while nothing can wake it; `who`
 * is a string literal ("runtime.run: the function"). */
#define LSCHED_NEVER_MSG(who)                                               \
  who " is waiting for something that can never happen (no task is "      \
      "ready, no timer or I/O is pending)"

/* How many errors reached the default report (no hook installed). */
unsigned ac__lsched_error_count(lsched *ls);

#include "lresult.h"
#include "lruntime.h"
#include "ltask.h"

#endif
