/* Timers (see ac_timer.h): a libuv timer handle plus the callback and its
 * data, in one allocation that the handle's close callback frees. */
#include <math.h>
#include <stdint.h>

#include "ac_timer.h"
#include "alloc.h"

struct ac_timer_s {
  uv_timer_t handle; /* handle.data == this */
  ac_timer_cb cb;
  void *data;
};

static void on_fire(uv_timer_t *h) {
  ac_timer_t *t = h->data;
  t->cb(t, t->data);
}

static void on_closed(uv_handle_t *h) { ac__free(h->data); }

ac_timer_t *ac_timer_new(ac_sched_t *s, ac_timer_cb cb, void *data) {
  ac_timer_t *t = ac__malloc(sizeof *t);
  if (t == NULL) return NULL;
  uv_timer_init(ac_sched_loop(s), &t->handle);
  t->handle.data = t;
  t->cb = cb;
  t->data = data;
  return t;
}

void ac_timer_free(ac_timer_t *t) {
  if (t == NULL) return;
  uv_timer_stop(&t->handle);
  uv_close((uv_handle_t *)&t->handle, on_closed);
}

/* Seconds to whole milliseconds, rounded up and kept within what libuv's
 * uint64_t timeout can add to the loop time without overflowing. */
static uint64_t to_ms(double seconds) {
  if (!(seconds > 0)) return 0;
  double ms = ceil(seconds * 1000.0);
  return ms > 9e15 ? (uint64_t)9e15 : (uint64_t)ms;
}

int ac_timer_start(ac_timer_t *t, double seconds, double repeat) {
  uv_update_time(t->handle.loop);
  return uv_timer_start(&t->handle, on_fire, to_ms(seconds), to_ms(repeat));
}

void ac_timer_stop(ac_timer_t *t) { uv_timer_stop(&t->handle); }

void ac_timer_unref(ac_timer_t *t) { uv_unref((uv_handle_t *)&t->handle); }

int ac_timer_active(const ac_timer_t *t) {
  return uv_is_active((const uv_handle_t *)&t->handle);
}

void *ac_timer_data(const ac_timer_t *t) { return t->data; }
