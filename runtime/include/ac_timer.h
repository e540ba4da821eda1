/* Timers of the runtime.
 *
 * Every timer the core and the binding arm (sleeps, load timeouts, batch
 * windows, the expiry sweep, later autosave and backend timeouts) is an
 * ac_timer_t on a scheduler's loop.  They count from now: "now" is read
 * from the clock when a timer is started, not from libuv's cached loop
 * time, which is stale by however long the code running since the loop
 * last polled has computed (a timer armed after 0.3 s of CPU work would
 * otherwise fire 0.3 s early).  Times are rounded up to whole
 * milliseconds, so a timer never fires early.
 *
 * A timer is allocated here and freed with ac_timer_free, which may be
 * called from its own callback; its memory goes back after libuv has
 * closed the handle, so the loop must run (or the scheduler be freed) for
 * that to happen.
 *
 * While the scheduler's fake clock is on (ac_sched_set_fake_clock), a
 * timer started is kept by the scheduler instead of libuv and fires only
 * from ac_sched_advance, to the nanosecond (no rounding to milliseconds);
 * it does not keep the loop alive.  A timer follows the clock that was on
 * when it was started; see ac_sched.h. */
#ifndef AC_TIMER_H
#define AC_TIMER_H

#include "ac_export.h"
#include "ac_sched.h"

typedef struct ac_timer_s ac_timer_t;

/* Runs when the timer fires; t and data are the timer's. */
typedef void (*ac_timer_cb)(ac_timer_t *t, void *data);

/* A stopped timer on the scheduler's loop, or NULL when out of memory. */
AC_EXPORT ac_timer_t *ac_timer_new(ac_sched_t *s, ac_timer_cb cb, void *data);
/* Stops and frees (NULL: no-op).  The callback never runs afterwards. */
AC_EXPORT void ac_timer_free(ac_timer_t *t);

/* Starts (or restarts) the timer: it fires `seconds` from now, then every
 * `repeat` seconds (0: once).  Returns 0 or a libuv error code. */
AC_EXPORT int ac_timer_start(ac_timer_t *t, double seconds, double repeat);
AC_EXPORT void ac_timer_stop(ac_timer_t *t);
/* A timer that does not keep the loop alive (the expiry sweep): the loop
 * may end while it is armed.  (Fake timers never keep it alive.) */
AC_EXPORT void ac_timer_unref(ac_timer_t *t);
AC_EXPORT int ac_timer_active(const ac_timer_t *t);
AC_EXPORT void *ac_timer_data(const ac_timer_t *t);

#endif
