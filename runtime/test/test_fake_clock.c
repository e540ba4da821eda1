/* Tests of the scheduler's clock (ac_sched_now, the fake clock and
 * ac_sched_advance) and of ac_timer_t on it.  Every test frees its timers
 * and its scheduler, whose loop must close clean. */
#include <math.h>
#include <string.h>
#include <uv.h>

#include "ac_clock.h"
#include "ac_error.h"
#include "ac_sched.h"
#include "ac_timer.h"
#include "test_harness.h"

static ac_sched_t *new_sched(void) {
  int err = 1;
  ac_sched_t *s = ac_sched_new(NULL, &err);
  ASSERT_NOT_NULL(s);
  ASSERT_EQ_INT(err, 0);
  return s;
}

static ac_sched_t *new_fake(double start) {
  ac_sched_t *s = new_sched();
  ASSERT_EQ_INT(ac_sched_set_fake_clock(s, start), 0);
  ASSERT_TRUE(ac_sched_clock_is_fake(s));
  return s;
}

/* ---- timers that log which fired, and when ----------------------------- */

enum { LOG_MAX = 64 };

typedef struct probe {
  ac_sched_t *s;
  ac_timer_t *t;
  int id;
  int fired;
  /* optional actions from inside the callback */
  int free_self;
  struct probe *start_other; /* started for other_seconds */
  double other_seconds;
  struct probe *stop_other;
  int advance_rc; /* what a nested ac_sched_advance returned (when set) */
  int try_advance, try_real;
} probe;

static int log_id[LOG_MAX];
static double log_now[LOG_MAX];
static int nlog;

static void on_probe(ac_timer_t *t, void *data) {
  probe *p = data;
  ASSERT_EQ_PTR(t, p->t);
  if (nlog == LOG_MAX) FAIL("too many timer firings");
  log_id[nlog] = p->id;
  log_now[nlog] = ac_sched_now(p->s);
  nlog++;
  p->fired++;
  if (p->try_advance) p->advance_rc = ac_sched_advance(p->s, 1);
  if (p->try_real) p->advance_rc = ac_sched_set_real_clock(p->s);
  if (p->start_other) {
    ASSERT_EQ_INT(ac_timer_start(p->start_other->t, p->other_seconds, 0), 0);
    p->start_other = NULL;
  }
  if (p->stop_other) ac_timer_stop(p->stop_other->t);
  if (p->free_self) {
    ac_timer_free(t);
    p->t = NULL;
  }
}

static void init_probe(probe *p, ac_sched_t *s, int id) {
  memset(p, 0, sizeof *p);
  p->s = s;
  p->id = id;
  p->t = ac_timer_new(s, on_probe, p);
  ASSERT_NOT_NULL(p->t);
}

static void end(ac_sched_t *s, probe *p, int n) {
  for (int i = 0; i < n; i++) ac_timer_free(p[i].t);
  ASSERT_EQ_INT(ac_sched_free(s), 0);
}

/* ======================================================================== */

TEST(now_is_the_coarse_monotonic_clock_by_default) {
  ac_sched_t *s = new_sched();
  ASSERT_FALSE(ac_sched_clock_is_fake(s));
  double before = ac_clock_now();
  double now = ac_sched_now(s);
  double after = ac_clock_now();
  ASSERT_TRUE(before <= now && now <= after);
  ASSERT_EQ_INT(ac_sched_advance(s, 1), AC_EINVAL); /* no fake clock */
  ASSERT_EQ_INT(ac_sched_set_real_clock(s), 0);     /* already real */
  ASSERT_EQ_INT(ac_sched_free(s), 0);
}

TEST(fake_now_moves_only_with_advance) {
  ac_sched_t *s = new_fake(100);
  ASSERT_NEAR(ac_sched_now(s), 100, 0);
  uv_sleep(5);
  ac_sched_step(s);
  ASSERT_NEAR(ac_sched_now(s), 100, 0);
  ASSERT_EQ_INT(ac_sched_advance(s, 1.5), 0);
  ASSERT_NEAR(ac_sched_now(s), 101.5, 0);
  ASSERT_EQ_INT(ac_sched_advance(s, 0), 0);
  ASSERT_NEAR(ac_sched_now(s), 101.5, 0);
  ASSERT_EQ_INT(ac_sched_free(s), 0);
}

TEST(fake_time_counts_nanoseconds_so_split_advances_add_up) {
  ac_sched_t *s = new_fake(0);
  probe p[1];
  init_probe(&p[0], s, 0);
  ASSERT_EQ_INT(ac_timer_start(p[0].t, 0.3, 0), 0);
  ASSERT_EQ_INT(ac_sched_advance(s, 0.1), 0);
  ASSERT_EQ_INT(ac_sched_advance(s, 0.1), 0);
  ASSERT_EQ_INT(ac_sched_advance(s, 0.1), 1); /* 0.1 + 0.1 + 0.1 reaches 0.3 */
  ASSERT_TRUE(ac_sched_now(s) == 0.3);       /* exactly, not 0.30000000000000004 */
  ASSERT_TRUE(log_now[0] == 0.3);
  end(s, p, 1);
}

TEST(set_fake_clock_checks_its_arguments) {
  ac_sched_t *s = new_sched();
  ASSERT_EQ_INT(ac_sched_set_fake_clock(s, NAN), AC_EINVAL);
  ASSERT_EQ_INT(ac_sched_set_fake_clock(s, INFINITY), AC_EINVAL);
  ASSERT_FALSE(ac_sched_clock_is_fake(s));
  ASSERT_EQ_INT(ac_sched_set_fake_clock(s, 5), 0);
  ASSERT_EQ_INT(ac_sched_set_fake_clock(s, 6), AC_EBUSY);
  ASSERT_NEAR(ac_sched_now(s), 5, 0);
  ASSERT_EQ_INT(ac_sched_advance(s, -1), AC_EINVAL);
  ASSERT_EQ_INT(ac_sched_advance(s, NAN), AC_EINVAL);
  ASSERT_EQ_INT(ac_sched_advance(s, INFINITY), AC_EINVAL);
  ASSERT_NEAR(ac_sched_now(s), 5, 0);
  ASSERT_EQ_INT(ac_sched_free(s), 0);
}

TEST(timers_fire_in_deadline_order_ties_in_start_order) {
  ac_sched_t *s = new_fake(10);
  probe p[5];
  static const double after[5] = {3, 1, 2, 1, 0.5};
  for (int i = 0; i < 5; i++) {
    init_probe(&p[i], s, i);
    ASSERT_EQ_INT(ac_timer_start(p[i].t, after[i], 0), 0);
    ASSERT_TRUE(ac_timer_active(p[i].t));
  }
  ASSERT_EQ_UINT(ac_sched_fake_timers(s), 5);
  ASSERT_EQ_INT(ac_sched_advance(s, 10), 5);
  static const int order[5] = {4, 1, 3, 2, 0};
  ASSERT_EQ_INT(nlog, 5);
  for (int i = 0; i < 5; i++) {
    ASSERT_EQ_INT(log_id[i], order[i]);
    /* now is each timer's own deadline while it fires */
    ASSERT_NEAR(log_now[i], 10 + after[order[i]], 1e-9);
    ASSERT_FALSE(ac_timer_active(p[i].t));
  }
  ASSERT_NEAR(ac_sched_now(s), 20, 0);
  ASSERT_EQ_UINT(ac_sched_fake_timers(s), 0);
  end(s, p, 5);
}

TEST(advance_fires_only_what_comes_due) {
  ac_sched_t *s = new_fake(0);
  probe p[1];
  init_probe(&p[0], s, 0);
  ASSERT_EQ_INT(ac_timer_start(p[0].t, 2, 0), 0);
  ASSERT_EQ_INT(ac_sched_advance(s, 1.999), 0);
  ASSERT_EQ_INT(p[0].fired, 0);
  ASSERT_TRUE(ac_timer_active(p[0].t));
  ASSERT_EQ_INT(ac_sched_advance(s, 0.001), 1); /* due exactly now: fires */
  ASSERT_EQ_INT(p[0].fired, 1);
  ASSERT_EQ_INT(ac_sched_advance(s, 100), 0); /* once */
  end(s, p, 1);
}

TEST(repeating_timers_fire_once_per_period_crossed) {
  ac_sched_t *s = new_fake(0);
  probe p[1];
  init_probe(&p[0], s, 0);
  ASSERT_EQ_INT(ac_timer_start(p[0].t, 1, 0.5), 0);
  ASSERT_EQ_INT(ac_sched_advance(s, 2.2), 3); /* at 1, 1.5, 2 */
  ASSERT_EQ_INT(nlog, 3);
  ASSERT_NEAR(log_now[0], 1, 0);
  ASSERT_NEAR(log_now[1], 1.5, 0);
  ASSERT_NEAR(log_now[2], 2, 0);
  ASSERT_TRUE(ac_timer_active(p[0].t)); /* re-armed, next at 2.5 */
  ASSERT_EQ_INT(ac_sched_advance(s, 0.3), 1);
  ac_timer_stop(p[0].t);
  ASSERT_FALSE(ac_timer_active(p[0].t));
  ASSERT_EQ_INT(ac_sched_advance(s, 5), 0);
  end(s, p, 1);
}

TEST(callbacks_may_free_stop_and_start_timers) {
  ac_sched_t *s = new_fake(0);
  probe p[4];
  for (int i = 0; i < 4; i++) init_probe(&p[i], s, i);
  /* 0 at 1 s frees itself (while repeating) and starts 1 for 0.5 s: it is
   * due at 1.5, within the advance, and fires in it. */
  p[0].free_self = 1;
  p[0].start_other = &p[1];
  p[0].other_seconds = 0.5;
  ASSERT_EQ_INT(ac_timer_start(p[0].t, 1, 1), 0);
  /* 2 at 1.2 s stops 3, due at 1.8 s: 3 never fires. */
  p[2].stop_other = &p[3];
  ASSERT_EQ_INT(ac_timer_start(p[2].t, 1.2, 0), 0);
  ASSERT_EQ_INT(ac_timer_start(p[3].t, 1.8, 0), 0);
  ASSERT_EQ_INT(ac_sched_advance(s, 3), 3);
  ASSERT_EQ_INT(nlog, 3);
  ASSERT_EQ_INT(log_id[0], 0);
  ASSERT_EQ_INT(log_id[1], 2);
  ASSERT_EQ_INT(log_id[2], 1);
  ASSERT_NEAR(log_now[2], 1.5, 1e-9);
  ASSERT_NULL(p[0].t);
  ASSERT_EQ_INT(p[3].fired, 0);
  ASSERT_EQ_UINT(ac_sched_fake_timers(s), 0);
  end(s, p, 4); /* the loop still closes p[0]'s handle */
}

TEST(a_timer_freed_while_armed_never_fires) {
  ac_sched_t *s = new_fake(0);
  probe p[2];
  init_probe(&p[0], s, 0);
  init_probe(&p[1], s, 1);
  ASSERT_EQ_INT(ac_timer_start(p[0].t, 1, 0), 0);
  ASSERT_EQ_INT(ac_timer_start(p[1].t, 2, 0), 0);
  ac_timer_free(p[0].t);
  p[0].t = NULL;
  ASSERT_EQ_UINT(ac_sched_fake_timers(s), 1);
  ASSERT_EQ_INT(ac_sched_advance(s, 5), 1);
  ASSERT_EQ_INT(log_id[0], 1);
  end(s, p, 2);
}

TEST(restarting_a_fake_timer_moves_its_deadline) {
  ac_sched_t *s = new_fake(0);
  probe p[1];
  init_probe(&p[0], s, 0);
  ASSERT_EQ_INT(ac_timer_start(p[0].t, 1, 0), 0);
  ASSERT_EQ_INT(ac_sched_advance(s, 0.5), 0);
  ASSERT_EQ_INT(ac_timer_start(p[0].t, 1, 0), 0); /* now due at 1.5 */
  ASSERT_EQ_UINT(ac_sched_fake_timers(s), 1);
  ASSERT_EQ_INT(ac_sched_advance(s, 0.9), 0);
  ASSERT_EQ_INT(ac_sched_advance(s, 0.1), 1);
  ASSERT_NEAR(log_now[0], 1.5, 1e-12);
  end(s, p, 1);
}

TEST(advance_step_stops_at_each_instant) {
  ac_sched_t *s = new_fake(0);
  probe p[3];
  static const double after[3] = {2, 1, 1};
  for (int i = 0; i < 3; i++) {
    init_probe(&p[i], s, i);
    ASSERT_EQ_INT(ac_timer_start(p[i].t, after[i], 0), 0);
  }
  double rest = -1;
  ASSERT_EQ_INT(ac_sched_advance_step(s, 5, &rest), 2); /* both at 1 s */
  ASSERT_NEAR(ac_sched_now(s), 1, 0);
  ASSERT_NEAR(rest, 4, 0);
  ASSERT_EQ_INT(ac_sched_advance_step(s, rest, &rest), 1); /* at 2 s */
  ASSERT_NEAR(ac_sched_now(s), 2, 0);
  ASSERT_NEAR(rest, 3, 0);
  ASSERT_EQ_INT(ac_sched_advance_step(s, rest, &rest), 0); /* nothing left */
  ASSERT_NEAR(ac_sched_now(s), 5, 0);
  ASSERT_NEAR(rest, 0, 0);
  ASSERT_EQ_INT(log_id[0], 1);
  ASSERT_EQ_INT(log_id[1], 2);
  ASSERT_EQ_INT(log_id[2], 0);
  end(s, p, 3);
}

TEST(advance_and_set_real_clock_refuse_from_a_fired_callback) {
  ac_sched_t *s = new_fake(0);
  probe p[2];
  init_probe(&p[0], s, 0);
  init_probe(&p[1], s, 1);
  p[0].try_advance = 1;
  p[1].try_real = 1;
  ASSERT_EQ_INT(ac_timer_start(p[0].t, 1, 0), 0);
  ASSERT_EQ_INT(ac_timer_start(p[1].t, 2, 0), 0);
  ASSERT_EQ_INT(ac_sched_advance(s, 3), 2);
  ASSERT_EQ_INT(p[0].advance_rc, AC_EBUSY);
  ASSERT_EQ_INT(p[1].advance_rc, AC_EBUSY);
  ASSERT_TRUE(ac_sched_clock_is_fake(s));
  ASSERT_NEAR(ac_sched_now(s), 3, 0);
  end(s, p, 2);
}

TEST(fake_timers_do_not_keep_the_loop_alive) {
  ac_sched_t *s = new_fake(0);
  probe p[1];
  init_probe(&p[0], s, 0);
  ASSERT_EQ_INT(ac_timer_start(p[0].t, 0.001, 0), 0);
  ASSERT_EQ_INT(ac_sched_step(s), 0);
  ASSERT_EQ_INT(ac_sched_once(s), 0); /* does not block */
  ASSERT_EQ_INT(ac_sched_run(s), 0);  /* returns at once */
  ASSERT_EQ_INT(p[0].fired, 0);
  ASSERT_TRUE(ac_timer_active(p[0].t));
  ASSERT_EQ_INT(ac_sched_advance(s, 0.001), 1);
  end(s, p, 1);
}

/* Logs "task" when it runs (a ready task next to a due timer). */
static void log_task(ac_task_t *t) {
  (void)t;
  log_id[nlog] = -1;
  log_now[nlog] = 0;
  nlog++;
}

TEST(a_fake_timer_due_now_fires_from_the_loop_before_ready_tasks) {
  ac_sched_t *s = new_fake(7);
  probe p[2];
  init_probe(&p[0], s, 0);
  init_probe(&p[1], s, 1);
  ac_task_t task = {.fn = log_task};
  ac_sched_post(s, &task);
  ASSERT_EQ_INT(ac_timer_start(p[0].t, 0, 0), 0); /* due now */
  ASSERT_EQ_INT(ac_timer_start(p[1].t, 1, 0), 0); /* due later */
  ASSERT_EQ_INT(ac_sched_run(s), 0); /* alive for the first only */
  ASSERT_EQ_INT(nlog, 2);
  ASSERT_EQ_INT(log_id[0], 0); /* the timer, then the task */
  ASSERT_EQ_INT(log_id[1], -1);
  ASSERT_NEAR(ac_sched_now(s), 7, 0); /* time did not move */
  ASSERT_EQ_INT(p[1].fired, 0);
  ASSERT_EQ_INT(ac_sched_step(s), 0); /* the later one keeps nothing alive */
  end(s, p, 2);
}

TEST(timers_started_before_the_fake_clock_stay_real) {
  ac_sched_t *s = new_sched();
  probe p[1];
  init_probe(&p[0], s, 0);
  ASSERT_EQ_INT(ac_timer_start(p[0].t, 0.005, 0), 0);
  ASSERT_EQ_INT(ac_sched_set_fake_clock(s, 0), 0);
  ASSERT_EQ_UINT(ac_sched_fake_timers(s), 0);
  ASSERT_EQ_INT(ac_sched_advance(s, 1), 0);
  ASSERT_EQ_INT(p[0].fired, 0);
  ASSERT_EQ_INT(ac_sched_run(s), 0); /* the real timer keeps it alive */
  ASSERT_EQ_INT(p[0].fired, 1);
  end(s, p, 1);
}

TEST(real_clock_rearms_fake_timers_with_the_time_they_had_left) {
  ac_sched_t *s = new_fake(0);
  probe p[2];
  init_probe(&p[0], s, 0);
  init_probe(&p[1], s, 1);
  ASSERT_EQ_INT(ac_timer_start(p[0].t, 1.03, 0), 0); /* 30 ms left after 1 s */
  ASSERT_EQ_INT(ac_timer_start(p[1].t, 1.01, 0.01), 0);
  ASSERT_EQ_INT(ac_sched_advance(s, 1), 0);
  double t0 = ac_clock_precise();
  ASSERT_EQ_INT(ac_sched_set_real_clock(s), 0);
  ASSERT_FALSE(ac_sched_clock_is_fake(s));
  ASSERT_EQ_UINT(ac_sched_fake_timers(s), 0);
  ASSERT_TRUE(ac_timer_active(p[0].t) && ac_timer_active(p[1].t));
  double now = ac_sched_now(s);
  ASSERT_TRUE(fabs(now - ac_clock_now()) < 0.1); /* the monotonic clock again */
  /* p[1] repeats every 10 ms on libuv's clock now: stop it once p[0]
   * has fired. */
  p[0].stop_other = &p[1];
  ASSERT_EQ_INT(ac_sched_run(s), 0);
  double waited = ac_clock_precise() - t0;
  ASSERT_EQ_INT(p[0].fired, 1);
  ASSERT_CMP_INT(p[1].fired, >=, 1);
  ASSERT_TRUE(waited >= 0.029);
  end(s, p, 2);
}

TEST(a_timer_follows_the_clock_that_is_on_when_it_starts) {
  ac_sched_t *s = new_fake(0);
  probe p[1];
  init_probe(&p[0], s, 0);
  ASSERT_EQ_INT(ac_sched_set_real_clock(s), 0);
  ASSERT_EQ_INT(ac_timer_start(p[0].t, 0.001, 0), 0);
  ASSERT_EQ_UINT(ac_sched_fake_timers(s), 0);
  ASSERT_EQ_INT(ac_sched_run(s), 0);
  ASSERT_EQ_INT(p[0].fired, 1);
  ASSERT_EQ_INT(ac_sched_set_fake_clock(s, 50), 0); /* on again */
  ASSERT_NEAR(ac_sched_now(s), 50, 0);
  ASSERT_EQ_INT(ac_timer_start(p[0].t, 0.001, 0), 0);
  ASSERT_EQ_UINT(ac_sched_fake_timers(s), 1);
  ASSERT_EQ_INT(ac_sched_run(s), 0);
  ASSERT_EQ_INT(p[0].fired, 1);
  ASSERT_EQ_INT(ac_sched_advance(s, 0.001), 1);
  end(s, p, 1);
}

TEST(huge_durations_saturate) {
  ac_sched_t *s = new_fake(0);
  probe p[1];
  init_probe(&p[0], s, 0);
  ASSERT_EQ_INT(ac_timer_start(p[0].t, INFINITY, 0), 0);
  ASSERT_EQ_INT(ac_sched_advance(s, 1e12), 0); /* never due */
  ASSERT_EQ_INT(ac_sched_advance(s, 1e300), 0); /* time saturates */
  ASSERT_TRUE(isfinite(ac_sched_now(s)));
  ASSERT_TRUE(ac_timer_active(p[0].t));
  end(s, p, 1);
}
