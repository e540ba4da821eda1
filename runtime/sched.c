/* The ready queue and its libuv glue.
 *
 * Queue: singly linked FIFO through ac_task_t.next_ (posting allocates
 * nothing).  An idle handle is active exactly while the queue is not empty
 * or a fake timer is due now (update_idle): that keeps uv_run from
 * blocking in poll and runs the pass from the loop's idle phase, after the
 * fake timers due now have fired, as libuv runs its due timers before the
 * idle phase.  The pass callback lets the Lua binding wrap each pass in one
 * protected call instead of one per task.  The clock (real or fake, with
 * its fake timers) is a member whose code is sched_clock.c. */
#include <stdlib.h>

#include "ac_error.h"
#include "ac_sched.h"
#include "alloc.h"
#include "sched_clock.h"

struct ac_sched_s {
  uv_loop_t *loop;
  uv_loop_t own_loop;
  int owns_loop;
  uv_idle_t idle;
  ac_task_t *first, *last;
  size_t pending;
  ac_pass_fn pass;
  void *pass_ud;
  ac__sched_clock_t clock;
};

ac__sched_clock_t *ac__sched_clock(const ac_sched_t *s) {
  return (ac__sched_clock_t *)&s->clock;
}

static void on_idle(uv_idle_t *h);

void ac__sched_update_idle(ac_sched_t *s) {
  if (s->pending > 0 || ac__sched_clock_due(s)) uv_idle_start(&s->idle, on_idle);
  else uv_idle_stop(&s->idle);
}

static void on_idle(uv_idle_t *h) {
  ac_sched_t *s = h->data;
  ac__sched_clock_fire_due(s);
  if (s->pending > 0) {
    if (s->pass) s->pass(s, s->pass_ud);
    else ac_sched_run_ready(s);
  }
  ac__sched_update_idle(s);
}

ac_sched_t *ac_sched_new(uv_loop_t *loop, int *err) {
  int dummy, rc;
  if (err == NULL) err = &dummy;
  ac_sched_t *s = ac__calloc(1, sizeof *s);
  if (s == NULL) {
    *err = AC_ENOMEM;
    return NULL;
  }
  if (loop == NULL) {
    if ((rc = uv_loop_init(&s->own_loop)) != 0) {
      ac__free(s);
      *err = rc;
      return NULL;
    }
    loop = &s->own_loop;
    s->owns_loop = 1;
  }
  s->loop = loop;
  uv_idle_init(loop, &s->idle);
  s->idle.data = s;
  *err = 0;
  return s;
}

static void on_idle_closed(uv_handle_t *h) {
  ac_sched_t *s = h->data;
  s->idle.data = NULL; /* marks the close as done */
}

static void close_straggler(uv_handle_t *h, void *arg) {
  if (uv_is_closing(h)) return;
  (*(int *)arg)++;
  uv_close(h, NULL);
}

int ac_sched_free(ac_sched_t *s) {
  if (s == NULL) return 0;
  int rc = 0;
  uv_close((uv_handle_t *)&s->idle, on_idle_closed);
  if (s->owns_loop) {
    /* Every handle on our own loop should be closed by its owner by now; a
     * straggler is closed here so the loop can close, and reported. */
    int stragglers = 0;
    uv_walk(s->loop, close_straggler, &stragglers);
    uv_run(s->loop, UV_RUN_DEFAULT);
    if (stragglers) rc = AC_EBUSY;
    /* Still busy after every handle was closed and the loop ran: libuv
     * keeps pointers into s, so s is left allocated rather than freed. */
    if (uv_loop_close(s->loop) != 0) return AC_EBUSY;
  } else {
    while (s->idle.data != NULL) uv_run(s->loop, UV_RUN_NOWAIT);
  }
  ac__free(s);
  return rc;
}

uv_loop_t *ac_sched_loop(ac_sched_t *s) { return s->loop; }

void ac_sched_set_pass(ac_sched_t *s, ac_pass_fn fn, void *ud) {
  s->pass = fn;
  s->pass_ud = ud;
}

void ac_sched_post(ac_sched_t *s, ac_task_t *t) {
  t->next_ = NULL;
  if (s->last) s->last->next_ = t; else s->first = t;
  s->last = t;
  if (s->pending++ == 0) uv_idle_start(&s->idle, on_idle);
}

int ac_sched_cancel(ac_sched_t *s, ac_task_t *t) {
  ac_task_t **p = &s->first, *prev = NULL;
  while (*p != NULL && *p != t) {
    prev = *p;
    p = &(*p)->next_;
  }
  if (*p == NULL) return 0;
  *p = t->next_;
  if (s->last == t) s->last = prev;
  if (--s->pending == 0) uv_idle_stop(&s->idle);
  return 1;
}

size_t ac_sched_run_ready(ac_sched_t *s) {
  size_t n = s->pending, ran = 0;
  while (ran < n && s->first != NULL) {
    ac_task_t *t = s->first;
    s->first = t->next_;
    if (s->first == NULL) s->last = NULL;
    s->pending--;
    ran++;
    t->fn(t);
  }
  if (s->pending == 0) ac__sched_update_idle(s);
  return ran;
}

size_t ac_sched_pending(const ac_sched_t *s) { return s->pending; }

int ac_sched_run(ac_sched_t *s) {
  uv_run(s->loop, UV_RUN_DEFAULT);
  return 0;
}

int ac_sched_step(ac_sched_t *s) {
  int alive = uv_run(s->loop, UV_RUN_NOWAIT);
  return alive || s->pending > 0;
}

int ac_sched_once(ac_sched_t *s) {
  int alive = uv_run(s->loop, UV_RUN_ONCE);
  return alive || s->pending > 0;
}

