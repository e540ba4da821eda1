/* The scheduler: a libuv loop plus a FIFO ready queue of tasks.
 *
 * A task is a callback the scheduler will run on a later pass of the loop;
 * posting one never runs it in place, so the poster's stack unwinds first.
 * One pass runs the tasks that were queued when it began (tasks posted
 * during a pass wait for the next, so a task that keeps re-posting itself
 * cannot starve timers and I/O).  While the queue is not empty the loop
 * polls without blocking.
 *
 * The loop is either the scheduler's own or one the host owns and keeps
 * running; the scheduler only adds handles to it. */
#ifndef AC_SCHED_H
#define AC_SCHED_H

#include <uv.h>
#include "ac_export.h"

typedef struct ac_sched_s ac_sched_t;
typedef struct ac_task_s ac_task_t;

typedef void (*ac_task_fn)(ac_task_t *t);

/* Owned by the poster; must stay valid until its fn has run. */
struct ac_task_s {
  ac_task_t *next_; /* private */
  ac_task_fn fn;
  void *data;
};

/* Runs one pass: the binding wraps it to run it under protection.  It must
 * call ac_sched_run_ready(s) exactly once. */
typedef void (*ac_pass_fn)(ac_sched_t *s, void *ud);

/* loop NULL: the scheduler creates and owns a loop.  Returns NULL on
 * failure with *err set (AC_ENOMEM, or a libuv error code). */
AC_EXPORT ac_sched_t *ac_sched_new(uv_loop_t *loop, int *err);
/* Closes the scheduler's handles.  Tasks still queued are dropped without
 * running: their owners must have cancelled them.  An owned loop is run
 * until every handle on it has closed, then closed; a handle still open on
 * it is closed here and AC_EBUSY returned (its owner leaked it).  A host's
 * loop is only run without blocking until the scheduler's handle has
 * closed.  NULL: no-op. */
AC_EXPORT int ac_sched_free(ac_sched_t *s);

AC_EXPORT uv_loop_t *ac_sched_loop(ac_sched_t *s);
AC_EXPORT void ac_sched_set_pass(ac_sched_t *s, ac_pass_fn fn, void *ud);

AC_EXPORT void ac_sched_post(ac_sched_t *s, ac_task_t *t);
/* Takes a queued task off the queue (it will not run).  Returns 1, or 0
 * when it was not queued.  Walks the queue: for rare cancellations. */
AC_EXPORT int ac_sched_cancel(ac_sched_t *s, ac_task_t *t);
/* Runs the tasks queued when it began. Returns how many ran. */
AC_EXPORT size_t ac_sched_run_ready(ac_sched_t *s);
AC_EXPORT size_t ac_sched_pending(const ac_sched_t *s);

/* Drives the loop until nothing is left to do (no ready task, no active
 * handle).  Returns 0. */
AC_EXPORT int ac_sched_run(ac_sched_t *s);
/* One non-blocking pass of the loop.  Returns 1 when work remains (ready
 * tasks, timers, I/O), 0 when idle. */
AC_EXPORT int ac_sched_step(ac_sched_t *s);
/* One blocking pass (waits for I/O or a timer when nothing is ready).
 * Returns like ac_sched_step. */
AC_EXPORT int ac_sched_once(ac_sched_t *s);

#endif
