/* Tests of the scheduler (ac_sched.h) on libuv, and of the error strings
 * (ac_error.h).  Every test ends with its handles closed and its loop
 * closed. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "ac_alloc.h"
#include "ac_error.h"
#include "ac_sched.h"
#include "test_harness.h"
#include "test_alloc.h"

/* ---- tasks that log their id -------------------------------------------- */

enum { LOG_MAX = 1024 };
static int run_log[LOG_MAX];
static int nruns;

typedef struct logged {
  ac_task_t task;
  ac_sched_t *s;
  int id;
  int reposts;          /* how many more times to post itself */
  struct logged *child; /* posted from inside the task, once */
  size_t child_runs_after_post;
} logged;

static void log_task(ac_task_t *t) {
  logged *l = t->data;
  if (nruns == LOG_MAX) FAIL("too many task runs");
  run_log[nruns++] = l->id;
  if (l->reposts > 0) {
    l->reposts--;
    ac_sched_post(l->s, t);
  }
  if (l->child != NULL) {
    logged *c = l->child;
    l->child = NULL;
    int before = nruns;
    ac_sched_post(l->s, &c->task);
    /* Posting from a task does not run the new task in place either. */
    l->child_runs_after_post = (size_t)(nruns - before);
  }
}

static void init_task(logged *l, ac_sched_t *s, int id) {
  memset(l, 0, sizeof *l);
  l->task.fn = log_task;
  l->task.data = l;
  l->s = s;
  l->id = id;
}

static ac_sched_t *new_sched(uv_loop_t *loop) {
  int err = 12345;
  ac_sched_t *s = ac_sched_new(loop, &err);
  ASSERT_NOT_NULL(s);
  ASSERT_EQ_INT(err, 0);
  return s;
}

static void on_closed_count(uv_handle_t *h) { (*(int *)h->data)++; }

/* ======================================================================== */

TEST(post_runs_later_in_fifo_order) {
  ac_sched_t *s = new_sched(NULL);
  ASSERT_NOT_NULL(ac_sched_loop(s));
  logged t[5];
  for (int i = 0; i < 5; i++) {
    init_task(&t[i], s, i);
    ac_sched_post(s, &t[i].task);
    ASSERT_EQ_INT(nruns, 0); /* never in place */
    ASSERT_EQ_UINT(ac_sched_pending(s), i + 1);
  }
  ASSERT_EQ_INT(ac_sched_run(s), 0);
  ASSERT_EQ_INT(nruns, 5);
  for (int i = 0; i < 5; i++) ASSERT_EQ_INT(run_log[i], i);
  ASSERT_EQ_UINT(ac_sched_pending(s), 0);
  ASSERT_EQ_INT(ac_sched_free(s), 0);
}

TEST(tasks_posted_by_a_task_run_after_those_already_queued) {
  ac_sched_t *s = new_sched(NULL);
  logged a, b, c;
  init_task(&a, s, 1);
  init_task(&b, s, 2);
  init_task(&c, s, 3);
  a.child = &c;
  a.reposts = 1; /* a posts itself again, then c */
  ac_sched_post(s, &a.task);
  ac_sched_post(s, &b.task);
  ASSERT_EQ_INT(ac_sched_run(s), 0);
  ASSERT_EQ_UINT(a.child_runs_after_post, 0);
  /* a, b were queued; a posted a then c during its run. */
  ASSERT_EQ_INT(nruns, 4);
  ASSERT_EQ_INT(run_log[0], 1);
  ASSERT_EQ_INT(run_log[1], 2);
  ASSERT_EQ_INT(run_log[2], 1);
  ASSERT_EQ_INT(run_log[3], 3);
  ASSERT_EQ_INT(ac_sched_free(s), 0);
}

TEST(a_pass_runs_only_the_tasks_queued_when_it_began) {
  ac_sched_t *s = new_sched(NULL);
  logged a, b;
  init_task(&a, s, 1);
  init_task(&b, s, 2);
  a.reposts = 3;
  ac_sched_post(s, &a.task);
  ac_sched_post(s, &b.task);
  ASSERT_EQ_UINT(ac_sched_run_ready(s), 2);
  ASSERT_EQ_UINT(ac_sched_pending(s), 1); /* a, posted during the pass */
  ASSERT_EQ_UINT(ac_sched_run_ready(s), 1);
  ASSERT_EQ_UINT(ac_sched_run_ready(s), 1);
  ASSERT_EQ_UINT(ac_sched_run_ready(s), 1);
  ASSERT_EQ_UINT(ac_sched_pending(s), 0);
  ASSERT_EQ_UINT(ac_sched_run_ready(s), 0);
  ASSERT_EQ_INT(nruns, 5);
  ASSERT_EQ_INT(ac_sched_step(s), 0); /* the queue was drained by hand */
  ASSERT_EQ_INT(nruns, 5);
  ASSERT_EQ_INT(ac_sched_free(s), 0);
}

/* A task that keeps re-posting itself, and a 0 ms timer started from its
 * first run: the timer must fire within a pass or two, not after the task
 * has spun for as long as it likes. */
typedef struct {
  ac_task_t task;
  ac_sched_t *s;
  uv_timer_t timer;
  int runs, fired, runs_at_fire, closed;
} spin_ctx;

enum { SPIN_LIMIT = 100000 };

static void spin_on_timer(uv_timer_t *h) {
  spin_ctx *c = h->data;
  c->fired++;
  c->runs_at_fire = c->runs;
}

static void spin_task(ac_task_t *t) {
  spin_ctx *c = t->data;
  c->runs++;
  if (c->runs == 1)
    ASSERT_EQ_INT(uv_timer_start(&c->timer, spin_on_timer, 0, 0), 0);
  if (!c->fired && c->runs < SPIN_LIMIT) ac_sched_post(c->s, t);
}

static void spin_closed(uv_handle_t *h) {
  spin_ctx *c = h->data;
  c->closed = 1;
}

TEST(a_reposting_task_does_not_starve_a_timer) {
  spin_ctx c;
  memset(&c, 0, sizeof c);
  c.s = new_sched(NULL);
  ASSERT_EQ_INT(uv_timer_init(ac_sched_loop(c.s), &c.timer), 0);
  c.timer.data = &c;
  c.task.fn = spin_task;
  c.task.data = &c;
  ac_sched_post(c.s, &c.task);
  ASSERT_EQ_INT(ac_sched_run(c.s), 0);
  ASSERT_EQ_INT(c.fired, 1);
  ASSERT_CMP_INT(c.runs_at_fire, <=, 3);
  ASSERT_CMP_INT(c.runs, <, SPIN_LIMIT);
  uv_close((uv_handle_t *)&c.timer, spin_closed);
  ASSERT_EQ_INT(ac_sched_run(c.s), 0);
  ASSERT_EQ_INT(c.closed, 1);
  ASSERT_EQ_INT(ac_sched_free(c.s), 0);
}

static void on_timer_count(uv_timer_t *h) { (*(int *)h->data)++; }

TEST(run_returns_once_idle) {
  ac_sched_t *s = new_sched(NULL);
  ASSERT_EQ_INT(ac_sched_run(s), 0); /* nothing to do: returns at once */

  /* A chain of 100 tasks, each posting the next, and a one-shot timer. */
  logged t[100];
  for (int i = 0; i < 100; i++) init_task(&t[i], s, i);
  for (int i = 0; i < 99; i++) t[i].child = &t[i + 1];
  ac_sched_post(s, &t[0].task);
  uv_timer_t timer;
  int fired = 0;
  ASSERT_EQ_INT(uv_timer_init(ac_sched_loop(s), &timer), 0);
  timer.data = &fired;
  ASSERT_EQ_INT(uv_timer_start(&timer, on_timer_count, 1, 0), 0);

  ASSERT_EQ_INT(ac_sched_run(s), 0);
  ASSERT_EQ_INT(nruns, 100);
  for (int i = 0; i < 100; i++) ASSERT_EQ_INT(run_log[i], i);
  ASSERT_EQ_INT(fired, 1);
  ASSERT_EQ_UINT(ac_sched_pending(s), 0);
  ASSERT_EQ_INT(ac_sched_step(s), 0);

  int closed = 0;
  timer.data = &closed;
  uv_close((uv_handle_t *)&timer, on_closed_count);
  ASSERT_EQ_INT(ac_sched_run(s), 0);
  ASSERT_EQ_INT(closed, 1);
  ASSERT_EQ_INT(ac_sched_free(s), 0);
}

TEST(step_does_not_block) {
  ac_sched_t *s = new_sched(NULL);
  ASSERT_EQ_INT(ac_sched_step(s), 0); /* idle */

  logged a;
  init_task(&a, s, 1);
  ac_sched_post(s, &a.task);
  ASSERT_EQ_INT(ac_sched_step(s), 0); /* ran it, nothing left */
  ASSERT_EQ_INT(nruns, 1);

  a.reposts = 1;
  ac_sched_post(s, &a.task);
  ASSERT_EQ_INT(ac_sched_step(s), 1); /* ran once, posted again */
  ASSERT_EQ_INT(nruns, 2);
  ASSERT_EQ_UINT(ac_sched_pending(s), 1);
  ASSERT_EQ_INT(ac_sched_step(s), 0);
  ASSERT_EQ_INT(nruns, 3);

  /* An hour-long timer is work remaining, but a step does not wait for it
   * (were it to, the case would time out). */
  uv_timer_t timer;
  int fired = 0;
  ASSERT_EQ_INT(uv_timer_init(ac_sched_loop(s), &timer), 0);
  timer.data = &fired;
  ASSERT_EQ_INT(uv_timer_start(&timer, on_timer_count, 3600 * 1000, 0), 0);
  for (int i = 0; i < 5; i++) ASSERT_EQ_INT(ac_sched_step(s), 1);
  ASSERT_EQ_INT(fired, 0);

  int closed = 0;
  timer.data = &closed;
  uv_close((uv_handle_t *)&timer, on_closed_count);
  ASSERT_EQ_INT(ac_sched_step(s), 0); /* the close completes: idle again */
  ASSERT_EQ_INT(closed, 1);
  ASSERT_EQ_INT(ac_sched_free(s), 0);
}

TEST(once_waits_for_a_timer) {
  ac_sched_t *s = new_sched(NULL);
  uv_timer_t timer;
  int fired = 0;
  ASSERT_EQ_INT(uv_timer_init(ac_sched_loop(s), &timer), 0);
  timer.data = &fired;
  ASSERT_EQ_INT(uv_timer_start(&timer, on_timer_count, 5, 0), 0);
  /* Each call blocks until something happens; the timer is the only thing
   * that can, so a handful of calls suffice. */
  for (int i = 0; i < 100 && fired == 0; i++) ac_sched_once(s);
  ASSERT_EQ_INT(fired, 1);
  int closed = 0;
  timer.data = &closed;
  uv_close((uv_handle_t *)&timer, on_closed_count);
  ASSERT_EQ_INT(ac_sched_once(s), 0);
  ASSERT_EQ_INT(closed, 1);
  ASSERT_EQ_INT(ac_sched_free(s), 0);
}

TEST(works_on_a_host_owned_loop) {
  uv_loop_t loop;
  ASSERT_EQ_INT(uv_loop_init(&loop), 0);
  ac_sched_t *s = new_sched(&loop);
  ASSERT_EQ_PTR(ac_sched_loop(s), &loop);

  logged t[3];
  for (int i = 0; i < 3; i++) {
    init_task(&t[i], s, i);
    ac_sched_post(s, &t[i].task);
  }
  t[0].reposts = 2;
  /* The host drives its loop itself. */
  uv_timer_t timer;
  int fired = 0;
  ASSERT_EQ_INT(uv_timer_init(&loop, &timer), 0);
  timer.data = &fired;
  ASSERT_EQ_INT(uv_timer_start(&timer, on_timer_count, 1, 0), 0);
  ASSERT_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ASSERT_EQ_INT(nruns, 5);
  ASSERT_EQ_INT(run_log[0], 0);
  ASSERT_EQ_INT(run_log[1], 1);
  ASSERT_EQ_INT(run_log[2], 2);
  ASSERT_EQ_INT(run_log[3], 0);
  ASSERT_EQ_INT(run_log[4], 0);
  ASSERT_EQ_INT(fired, 1);

  /* Posting again after the loop went idle works. */
  ac_sched_post(s, &t[1].task);
  ASSERT_EQ_INT(ac_sched_run(s), 0);
  ASSERT_EQ_INT(nruns, 6);

  /* A task still queued at free is dropped, not run. */
  ac_sched_post(s, &t[2].task);
  ASSERT_EQ_INT(ac_sched_free(s), 0);
  ASSERT_EQ_INT(nruns, 6);

  /* The host's own timer is untouched by the scheduler's free. */
  ASSERT_EQ_INT(uv_is_closing((uv_handle_t *)&timer), 0);
  int closed = 0;
  timer.data = &closed;
  uv_close((uv_handle_t *)&timer, on_closed_count);
  ASSERT_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ASSERT_EQ_INT(closed, 1);
  ASSERT_EQ_INT(uv_loop_close(&loop), 0);
}

TEST(free_drops_queued_tasks) {
  ac_sched_t *s = new_sched(NULL);
  logged a;
  init_task(&a, s, 1);
  ac_sched_post(s, &a.task);
  ASSERT_EQ_INT(ac_sched_free(s), 0);
  ASSERT_EQ_INT(nruns, 0);
}

TEST(free_closes_and_reports_a_leaked_handle) {
  ac_sched_t *s = new_sched(NULL);
  static uv_timer_t timer; /* outlives the loop's final run */
  ASSERT_EQ_INT(uv_timer_init(ac_sched_loop(s), &timer), 0);
  ASSERT_EQ_INT(uv_timer_start(&timer, on_timer_count, 3600 * 1000, 0), 0);
  int fired = 0;
  timer.data = &fired;
  ASSERT_EQ_INT(ac_sched_free(s), AC_EBUSY);
  ASSERT_EQ_INT(fired, 0);
  /* Under the sanitizers a loop that was not closed would leak here. */
}

TEST(sched_free_null_is_noop) { ASSERT_EQ_INT(ac_sched_free(NULL), 0); }

/* The pass hook wraps each pass, and must call ac_sched_run_ready. */
typedef struct {
  int passes;
  size_t ran[8];
  ac_sched_t *seen;
} pass_ctx;

static void counting_pass(ac_sched_t *s, void *ud) {
  pass_ctx *p = ud;
  p->seen = s;
  size_t ran = ac_sched_run_ready(s);
  if (p->passes < 8) p->ran[p->passes] = ran;
  p->passes++;
}

TEST(pass_hook_wraps_each_pass) {
  ac_sched_t *s = new_sched(NULL);
  pass_ctx p;
  memset(&p, 0, sizeof p);
  ac_sched_set_pass(s, counting_pass, &p);
  logged t[3];
  for (int i = 0; i < 3; i++) {
    init_task(&t[i], s, i);
    ac_sched_post(s, &t[i].task);
  }
  t[0].reposts = 1;
  ASSERT_EQ_INT(ac_sched_run(s), 0);
  ASSERT_EQ_INT(p.passes, 2);
  ASSERT_EQ_UINT(p.ran[0], 3);
  ASSERT_EQ_UINT(p.ran[1], 1);
  ASSERT_EQ_PTR(p.seen, s);
  ASSERT_EQ_INT(nruns, 4);

  /* Back to the default pass. */
  ac_sched_set_pass(s, NULL, NULL);
  ac_sched_post(s, &t[1].task);
  ASSERT_EQ_INT(ac_sched_run(s), 0);
  ASSERT_EQ_INT(p.passes, 2);
  ASSERT_EQ_INT(nruns, 5);
  ASSERT_EQ_INT(ac_sched_free(s), 0);
}

TEST(new_fails_cleanly_when_out_of_memory) {
  install_counting_allocator();
  arm_failure(1); /* every allocation fails */
  int err = 0;
  ASSERT_NULL(ac_sched_new(NULL, &err));
  ASSERT_EQ_INT(err, AC_ENOMEM);
  uv_loop_t loop;
  ASSERT_EQ_INT(uv_loop_init(&loop), 0);
  err = 0;
  ASSERT_NULL(ac_sched_new(&loop, &err));
  ASSERT_EQ_INT(err, AC_ENOMEM);
  ASSERT_NULL(ac_sched_new(&loop, NULL)); /* err is optional */
  restore_allocator();
  /* Nothing was left on the host's loop. */
  ASSERT_EQ_INT(uv_loop_close(&loop), 0);
}

/* ---- error codes -------------------------------------------------------- */

TEST(every_error_code_has_a_name_and_a_message) {
  static const struct {
    int code, value;
    const char *name, *msg;
  } errs[] = {
      {AC_ENOMEM, -1, "AC_ENOMEM", "out of memory"},
      {AC_EINVAL, -2, "AC_EINVAL", "invalid argument"},
      {AC_ENOENT, -3, "AC_ENOENT", "no such entry"},
      {AC_ETIMEDOUT, -4, "AC_ETIMEDOUT", "timed out"},
      {AC_ECANCELED, -5, "AC_ECANCELED", "operation canceled"},
      {AC_EBUSY, -6, "AC_EBUSY", "resource busy"},
      {AC_ECLOSED, -7, "AC_ECLOSED", "object is closed"},
      {AC_ELOAD, -8, "AC_ELOAD", "loader failed"},
      {AC_EIO, -9, "AC_EIO", "input/output error"},
      {AC_EFORMAT, -10, "AC_EFORMAT", "malformed or unsupported data"},
  };
  enum { N = sizeof errs / sizeof errs[0] };
  for (int i = 0; i < N; i++) {
    ASSERT_EQ_INT(errs[i].code, errs[i].value); /* the ABI values */
    ASSERT_EQ_STR(ac_err_name(errs[i].code), errs[i].name);
    ASSERT_EQ_STR(ac_strerror(errs[i].code), errs[i].msg);
  }
  /* Every negative code from the first past the last is known. */
  for (int c = -1; c > AC_ELAST_; c--)
    ASSERT_TRUE(strcmp(ac_err_name(c), "AC_EUNKNOWN") != 0);
  ASSERT_EQ_INT(AC_ELAST_, -(N + 1));
}

TEST(unknown_error_codes) {
  static const int unknown[] = {0,   1,     2,       AC_ELAST_,
                                -11, -1000, INT_MIN, INT_MAX};
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
    ASSERT_EQ_STR(ac_strerror(unknown[i]), "unknown error");
    ASSERT_EQ_STR(ac_err_name(unknown[i]), "AC_EUNKNOWN");
  }
}
