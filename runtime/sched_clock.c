/* The scheduler's clock: real, or fake for tests (see ac_sched.h).
 *
 * Fake time is start + elapsed, elapsed a count of nanoseconds, so that
 * equal sums of durations give equal instants (in seconds as doubles,
 * 0.1 + 0.2 != 0.3) and now is start + elapsed / 1e9, correctly rounded.
 *
 * Armed fake timers are a doubly linked list sorted by deadline; a timer
 * is inserted after every timer due at or before its deadline, so timers
 * due at the same instant stay in start order.  Insertion scans from the
 * tail, where timers started with equal durations go: O(1) in the common
 * case, O(n) at worst, which a test's few timers can afford.
 *
 * Firing: the earliest timer is unlinked (and a repeating one re-armed)
 * before its callback runs, so the list is whole during every callback,
 * which may stop, free or start any timer, this one included.  A timer
 * due now (started for 0 seconds) needs no advance: the loop fires it on
 * its next turn, as libuv fires a 0 ms timer, and stays alive for it. */
#include <math.h>

#include "ac_clock.h"
#include "ac_error.h"
#include "sched_clock.h"

/* Durations saturate at NS_MAX (about 73 years) and instants at twice
 * it, so no sum overflows; a timer whose duration saturated is due at
 * NEVER, which no advance reaches. */
#define NS_MAX (INT64_MAX / 4)
#define NEVER INT64_MAX

static int64_t to_ns(double seconds) {
  if (!(seconds > 0)) return 0;
  double ns = nearbyint(seconds * 1e9);
  return ns >= (double)NS_MAX ? NS_MAX : (int64_t)ns;
}

/* An instant plus a duration (both in range). */
static int64_t add_ns(int64_t a, int64_t b) {
  return a > 2 * NS_MAX - b ? 2 * NS_MAX : a + b;
}

/* The deadline of a timer due `ns` after `from`. */
static int64_t deadline(int64_t from, int64_t ns) {
  return ns == NS_MAX ? NEVER : add_ns(from, ns);
}

static void unlink_timer(ac__sched_clock_t *c, ac__fake_timer_t *ft) {
  if (ft->prev) ft->prev->next = ft->next; else c->first = ft->next;
  if (ft->next) ft->next->prev = ft->prev; else c->last = ft->prev;
  ft->prev = ft->next = NULL;
}

static void insert_timer(ac__sched_clock_t *c, ac__fake_timer_t *ft) {
  ac__fake_timer_t *after = c->last;
  while (after != NULL && after->due > ft->due) after = after->prev;
  ft->prev = after;
  ft->next = after != NULL ? after->next : c->first;
  if (ft->prev) ft->prev->next = ft; else c->first = ft;
  if (ft->next) ft->next->prev = ft; else c->last = ft;
}

void ac__sched_clock_arm(ac_sched_t *s, ac__fake_timer_t *ft, double seconds,
                         double repeat) {
  ac__sched_clock_t *c = ac__sched_clock(s);
  ac__sched_clock_disarm(s, ft);
  ft->due = deadline(c->elapsed, to_ns(seconds));
  ft->every = to_ns(repeat);
  ft->armed = 1;
  c->armed++;
  insert_timer(c, ft);
  if (ft->due <= c->elapsed) ac__sched_update_idle(s);
}

void ac__sched_clock_disarm(ac_sched_t *s, ac__fake_timer_t *ft) {
  if (!ft->armed) return;
  ac__sched_clock_t *c = ac__sched_clock(s);
  unlink_timer(c, ft);
  ft->armed = 0;
  c->armed--;
}

double ac_sched_now(const ac_sched_t *s) {
  const ac__sched_clock_t *c = ac__sched_clock(s);
  if (!c->fake) return ac_clock_now();
  return c->start + (double)c->elapsed / 1e9;
}

int ac_sched_set_fake_clock(ac_sched_t *s, double start) {
  ac__sched_clock_t *c = ac__sched_clock(s);
  if (!isfinite(start)) return AC_EINVAL;
  if (c->fake) return AC_EBUSY;
  c->fake = 1;
  c->start = start;
  c->elapsed = 0;
  return 0;
}

int ac_sched_set_real_clock(ac_sched_t *s) {
  ac__sched_clock_t *c = ac__sched_clock(s);
  if (!c->fake) return 0;
  if (c->advancing) return AC_EBUSY;
  /* Off first: a go_real callback that started a timer would start a
   * real one. */
  c->fake = 0;
  while (c->first != NULL) {
    ac__fake_timer_t *ft = c->first;
    double left = (double)(ft->due - c->elapsed) / 1e9;
    ac__sched_clock_disarm(s, ft);
    ft->go_real(ft, left, (double)ft->every / 1e9);
  }
  return 0;
}

int ac_sched_clock_is_fake(const ac_sched_t *s) {
  return ac__sched_clock(s)->fake;
}

size_t ac_sched_fake_timers(const ac_sched_t *s) {
  return ac__sched_clock(s)->armed;
}

/* Fires the timers due by now + seconds, in order; with one_instant, only
 * those of the first deadline on the way. */
static int advance(ac_sched_t *s, double seconds, int one_instant,
                   double *rest) {
  ac__sched_clock_t *c = ac__sched_clock(s);
  if (!c->fake || !(seconds >= 0) || isinf(seconds)) return AC_EINVAL;
  if (c->advancing) return AC_EBUSY;
  int64_t target = add_ns(c->elapsed, to_ns(seconds));
  int fired = 0;
  c->advancing = 1;
  while (c->first != NULL && c->first->due <= target) {
    ac__fake_timer_t *ft = c->first;
    if (one_instant && fired > 0 && ft->due != c->elapsed) break;
    c->elapsed = ft->due;
    if (ft->every > 0) { /* re-armed first, as libuv does */
      unlink_timer(c, ft);
      ft->due = deadline(ft->due, ft->every);
      insert_timer(c, ft);
    } else {
      ac__sched_clock_disarm(s, ft);
    }
    if (fired < INT32_MAX) fired++;
    ft->fire(ft);
  }
  if (!one_instant || fired == 0) c->elapsed = target;
  c->advancing = 0;
  if (rest != NULL) *rest = (double)(target - c->elapsed) / 1e9;
  return fired;
}

int ac__sched_clock_due(const ac_sched_t *s) {
  const ac__sched_clock_t *c = ac__sched_clock(s);
  return c->fake && c->first != NULL && c->first->due <= c->elapsed;
}

void ac__sched_clock_fire_due(ac_sched_t *s) {
  ac__sched_clock_t *c = ac__sched_clock(s);
  if (c->fake && !c->advancing) advance(s, 0, 0, NULL);
}

int ac_sched_advance(ac_sched_t *s, double seconds) {
  return advance(s, seconds, 0, NULL);
}

int ac_sched_advance_step(ac_sched_t *s, double seconds, double *rest) {
  if (rest != NULL) *rest = 0;
  return advance(s, seconds, 1, rest);
}
