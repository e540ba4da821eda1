/* Timers (see ac_timer.h): a libuv timer handle plus the callback and its
 * data, in one allocation that the handle's close callback frees.
 *
 * Each timer also carries a fake-timer node (sched_clock.h).  A timer is
 * armed on exactly one clock at a time: started while the scheduler's
 * fake clock is on, it is armed in the node (the handle stays stopped);
 * otherwise on the handle.  When the fake clock goes off, the node's
 * go_real moves it onto the handle with the time it had left. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "ac_timer.h"
#include "alloc.h"
#include "sched_clock.h"

struct ac_timer_s {
  uv_timer_t handle; /* handle.data == this */
  ac__fake_timer_t fake;
  ac_sched_t *sched;
  ac_timer_cb cb;
  void *data;
};

static ac_timer_t *of_fake(ac__fake_timer_t *ft) {
  return (ac_timer_t *)((char *)ft - offsetof(ac_timer_t, fake));
}

static void on_fire(uv_timer_t *h) {
  ac_timer_t *t = h->data;
  t->cb(t, t->data);
}

static void on_fake_fire(ac__fake_timer_t *ft) {
  ac_timer_t *t = of_fake(ft);
  t->cb(t, t->data);
}

static void on_closed(uv_handle_t *h) { ac__free(h->data); }

/* Seconds to whole milliseconds, rounded up and kept within what libuv's
 * uint64_t timeout can add to the loop time without overflowing. */
static uint64_t to_ms(double seconds) {
  if (!(seconds > 0)) return 0;
  double ms = ceil(seconds * 1000.0);
  return ms > 9e15 ? (uint64_t)9e15 : (uint64_t)ms;
}

static int start_real(ac_timer_t *t, double seconds, double repeat) {
  uv_update_time(t->handle.loop);
  return uv_timer_start(&t->handle, on_fire, to_ms(seconds), to_ms(repeat));
}

static void on_go_real(ac__fake_timer_t *ft, double left, double every) {
  start_real(of_fake(ft), left, every); /* cannot fail: the handle is ours */
}

ac_timer_t *ac_timer_new(ac_sched_t *s, ac_timer_cb cb, void *data) {
  ac_timer_t *t = ac__calloc(1, sizeof *t);
  if (t == NULL) return NULL;
  uv_timer_init(ac_sched_loop(s), &t->handle);
  t->handle.data = t;
  t->fake.fire = on_fake_fire;
  t->fake.go_real = on_go_real;
  t->sched = s;
  t->cb = cb;
  t->data = data;
  return t;
}

void ac_timer_free(ac_timer_t *t) {
  if (t == NULL) return;
  ac_timer_stop(t);
  uv_close((uv_handle_t *)&t->handle, on_closed);
}

int ac_timer_start(ac_timer_t *t, double seconds, double repeat) {
  ac_timer_stop(t);
  if (ac_sched_clock_is_fake(t->sched)) {
    ac__sched_clock_arm(t->sched, &t->fake, seconds, repeat);
    return 0;
  }
  return start_real(t, seconds, repeat);
}

void ac_timer_stop(ac_timer_t *t) {
  uv_timer_stop(&t->handle);
  ac__sched_clock_disarm(t->sched, &t->fake);
}

void ac_timer_unref(ac_timer_t *t) { uv_unref((uv_handle_t *)&t->handle); }

int ac_timer_active(const ac_timer_t *t) {
  return t->fake.armed || uv_is_active((const uv_handle_t *)&t->handle);
}

void *ac_timer_data(const ac_timer_t *t) { return t->data; }
