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
 * running; the scheduler only adds handles to it.
 *
 * The scheduler also owns the runtime's clock (ac_sched_now): the coarse
 * monotonic clock, or, in test mode, a fake clock that only
 * ac_sched_advance moves; see "The clock" below. */
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

/* ---- The clock ----------------------------------------------------------
 *
 * Now, in seconds: ac_clock_now() (coarse monotonic) by default; with the
 * fake clock on, a value that only ac_sched_advance moves.
 *
 * Fake clock (for tests).  While it is on, every ac_timer_t started on
 * this scheduler (ac_timer.h) is a fake timer: libuv never sees it; the
 * scheduler keeps it, sorted by deadline (ties in start order), and only
 * ac_sched_advance fires it.  Fake time counts whole nanoseconds: seconds
 * given to a timer or to advance are rounded to the nearest one, so a
 * timer of x seconds fires on an advance of x seconds, however the
 * advance is split (0.1 three times reaches a 0.3 s timer).
 *
 * A fake timer due later does not keep the loop alive: with only such
 * timers armed, ac_sched_run returns, ac_sched_step and ac_sched_once
 * report idle (0), and the binding's runtime.run reports that its
 * function waits for something that can never happen.  That is the truth:
 * nothing inside an idle loop can call ac_sched_advance, so only the
 * caller (a host between steps, or a task that advances) can move the
 * clock on.  A fake timer due now (started for 0 seconds, as a batch
 * window of 0 is) fires on the loop's next turn without an advance, before
 * the ready tasks run, as a 0 ms libuv timer would.
 *
 * Timers started before the fake clock went on stay on libuv's clock.
 * Turning it off puts every fake timer still armed on libuv's clock with
 * the time it had left, keeping its repeat. */
AC_EXPORT double ac_sched_now(const ac_sched_t *s);
/* Turns the fake clock on, now = start.  Returns 0, AC_EINVAL when start
 * is not finite, AC_EBUSY when it is already on. */
AC_EXPORT int ac_sched_set_fake_clock(ac_sched_t *s, double start);
/* Back to the monotonic clock (no-op when it is not on).  Returns 0, or
 * AC_EBUSY when called from a timer that ac_sched_advance fires. */
AC_EXPORT int ac_sched_set_real_clock(ac_sched_t *s);
AC_EXPORT int ac_sched_clock_is_fake(const ac_sched_t *s);
/* Moves the fake clock `seconds` forward.  Every fake timer due by then
 * fires, in deadline order (ties in start order), with now set to its
 * deadline while its callback runs; a repeating timer is re-armed before
 * its callback (which may stop or free it) and fires once per period it
 * crosses; a timer started from a callback fires in the same advance if
 * it comes due within it.  Leaves now at the old now + seconds.  Timer
 * callbacks run inside this call, ready tasks do not: what the callbacks
 * post runs on the next pass of the loop.  Returns the number of timers
 * fired, AC_EINVAL when the fake clock is off or seconds is negative, NaN
 * or infinite, AC_EBUSY when called from a callback it fires. */
AC_EXPORT int ac_sched_advance(ac_sched_t *s, double seconds);
/* Like ac_sched_advance, but stops at the first deadline on the way: fires
 * the timers due at that instant only, leaves now there and sets *rest
 * (may be NULL) to the seconds still to go.  With no timer due within
 * `seconds`, moves the whole way (*rest = 0) and returns 0.  Lets a caller
 * run the tasks each instant wakes before time moves on, as they would on
 * the real clock (the binding's clock:advance does). */
AC_EXPORT int ac_sched_advance_step(ac_sched_t *s, double seconds,
                                    double *rest);
/* How many fake timers are armed. */
AC_EXPORT size_t ac_sched_fake_timers(const ac_sched_t *s);

#endif
