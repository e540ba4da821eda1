/* The scheduler's clock (internal; sched_clock.c).
 *
 * A fake timer is a node the clock keeps while the fake clock is on: the
 * timer module (timer.c) embeds one in each ac_timer_t and gives it two
 * callbacks, one for firing and one for moving to libuv's clock when the
 * fake clock goes off.  The clock state itself is a member of the
 * scheduler (sched.c), reached with ac__sched_clock. */
#ifndef AC_SCHED_CLOCK_H
#define AC_SCHED_CLOCK_H

#include <stddef.h>
#include <stdint.h>

#include "ac_sched.h"

typedef struct ac__fake_timer_s ac__fake_timer_t;

struct ac__fake_timer_s {
  ac__fake_timer_t *prev, *next; /* in the clock's list while armed */
  int64_t due;   /* nanoseconds on the fake clock */
  int64_t every; /* repeat period in nanoseconds, 0: once */
  int armed;
  /* It came due: now is its deadline; a repeating one is re-armed. */
  void (*fire)(ac__fake_timer_t *ft);
  /* The fake clock is going off: arm on libuv's clock for `left` seconds,
   * then every `every` seconds (0: once).  The node is disarmed. */
  void (*go_real)(ac__fake_timer_t *ft, double left, double every);
};

typedef struct {
  int fake;
  int advancing;   /* inside ac_sched_advance: callbacks are running */
  double start;    /* now when the fake clock went on */
  int64_t elapsed; /* nanoseconds since then */
  size_t armed;
  ac__fake_timer_t *first, *last; /* armed, by deadline then start order */
} ac__sched_clock_t;

/* The clock state of a scheduler (sched.c).  Takes a const scheduler so
 * the const getters can use it, as strchr does. */
ac__sched_clock_t *ac__sched_clock(const ac_sched_t *s);
/* Keeps the loop turning while tasks are ready or a fake timer is due now
 * (sched.c); the clock calls it when it arms a timer due now. */
void ac__sched_update_idle(ac_sched_t *s);

/* Is a fake timer due now (its deadline reached without an advance: it
 * was started for 0 seconds)? */
int ac__sched_clock_due(const ac_sched_t *s);
/* Fires the fake timers due now, from the loop (no-op inside an advance
 * or with the real clock on). */
void ac__sched_clock_fire_due(ac_sched_t *s);

/* Arms (or re-arms) a fake timer: due `seconds` from now, then every
 * `repeat` seconds.  The fake clock must be on. */
void ac__sched_clock_arm(ac_sched_t *s, ac__fake_timer_t *ft, double seconds,
                         double repeat);
/* Disarms it (no-op when not armed). */
void ac__sched_clock_disarm(ac_sched_t *s, ac__fake_timer_t *ft);

#endif
