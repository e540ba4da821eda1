/* Tests of the cache (ac_cache.h) through its public API, on a real
 * scheduler with its own libuv loop, with values kept by the test by slot
 * (test_host.h): hits, joins and leads; failing, timed-out and stale
 * loads; batches; freeing the cache with work in flight; removals; and
 * allocation failures.  Every test ends with no value left and the loop
 * closed (ac_sched_free returns 0). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ac_alloc.h"
#include "ac_cache.h"
#include "ac_clock.h"
#include "ac_error.h"
#include "ac_sched.h"
#include "ac_timer.h"
#include "test_harness.h"
#include "test_alloc.h"
#include "test_host.h"

static int g_users, g_posts; /* batch groups: any pointer names one */

/* ======================================================================== */
/* hit, join, lead */

TEST(a_miss_leads_and_the_stored_value_is_then_a_hit) {
  host h;
  host_open(&h);
  ac_lookup_t r;
  ASSERT_EQ_INT(get_k(&h, "user:1", &r), AC_MISS);
  ASSERT_NULL(ac_cache_loading(h.c, K("user:1")));

  ac_load_t *ld = lead_k(&h, "user:1", 0);
  ASSERT_EQ_PTR(ac_cache_loading(h.c, K("user:1")), ld);
  ASSERT_EQ_UINT(ac_load_waiters(ld), 0);
  ASSERT_EQ_UINT(ac_load_slot(ld), 0);
  char key[16];
  key_string(ld, key, sizeof key);
  ASSERT_EQ_STR(key, "user:1");
  ASSERT_EQ_UINT(stats_of(&h).in_flight, 1);

  uint32_t slot = finish_with(&h, ld, "alice");
  ASSERT_CMP_UINT(slot, >, 0);
  ASSERT_NULL(ac_cache_loading(h.c, K("user:1")));
  ASSERT_EQ_INT(get_k(&h, "user:1", &r), AC_HIT);
  ASSERT_EQ_UINT(r.slot, slot);
  ASSERT_EQ_STR(host_value(&h, r.slot), "alice");

  ac_cache_stats_t st = stats_of(&h);
  ASSERT_EQ_UINT(st.hits, 1);
  ASSERT_EQ_UINT(st.misses, 2); /* the first get and lead_k's */
  ASSERT_EQ_UINT(st.loads, 1);
  ASSERT_EQ_UINT(st.load_errors, 0);
  ASSERT_EQ_UINT(st.size, 1);
  ASSERT_EQ_UINT(st.in_flight, 0);
  ASSERT_EQ_UINT(st.maxsize, 16);
  host_close(&h);
}

TEST(a_second_get_joins_and_its_callback_runs_once_with_the_slot) {
  host h;
  host_open(&h);
  ac_load_t *ld = lead_k(&h, "k", 0);
  ac_lookup_t r;
  ASSERT_EQ_INT(get_k(&h, "k", &r), AC_JOIN);
  ASSERT_EQ_PTR(r.load, ld);
  wrec w;
  wait_on(&h, r.load, &w, 1);
  /* A pass of the loop does not settle a load nobody finished. */
  ac_sched_step(h.s);
  ASSERT_EQ_INT(w.calls, 0);
  ASSERT_EQ_INT(ac_cache_lead(h.c, K("k"), 0, &r.load), AC_EBUSY);

  uint32_t slot = finish_with(&h, ld, "v");
  ASSERT_EQ_INT(w.calls, 1);
  ASSERT_EQ_INT(w.status, 0);
  ASSERT_EQ_UINT(w.slot, slot);
  ASSERT_EQ_STR(w.value, "v");
  ASSERT_EQ_PTR(w.load, ld);
  ASSERT_EQ_INT(ac_sched_run(h.s), 0);
  ASSERT_EQ_INT(w.calls, 1);
  host_close(&h);
}

TEST(many_waiters_on_one_load_run_in_the_order_they_joined) {
  host h;
  host_open(&h);
  ac_load_t *ld = lead_k(&h, "k", 0);
  enum { N = 20 };
  wrec w[N];
  for (int i = 0; i < N; i++) {
    ac_lookup_t r;
    ASSERT_EQ_INT(get_k(&h, "k", &r), AC_JOIN);
    ASSERT_EQ_PTR(r.load, ld);
    wait_on(&h, r.load, &w[i], i);
  }
  ASSERT_EQ_UINT(ac_load_waiters(ld), N);
  int seq0 = wrec_seq;
  uint32_t slot = finish_with(&h, ld, "shared");
  for (int i = 0; i < N; i++) {
    ASSERT_EQ_INT(w[i].calls, 1);
    ASSERT_EQ_INT(w[i].status, 0);
    ASSERT_EQ_UINT(w[i].slot, slot);
    ASSERT_EQ_STR(w[i].value, "shared");
    ASSERT_EQ_INT(w[i].order, seq0 + i + 1);
  }
  ac_cache_stats_t st = stats_of(&h);
  ASSERT_EQ_UINT(st.loads, 1);
  ASSERT_EQ_UINT(st.misses, N + 1);
  host_close(&h);
}

/* A waiter may call into the cache from its callback: here it reads the
 * key again (a hit) and starts a load of another key. */
static ac_load_t *g_started;
static void then_get_and_lead(wrec *r, ac_load_t *ld, int status) {
  (void)ld;
  ASSERT_EQ_INT(status, 0);
  ac_lookup_t lk;
  ASSERT_EQ_INT(get_k(r->h, "k", &lk), AC_HIT);
  ASSERT_EQ_UINT(lk.slot, r->slot);
  g_started = lead_k(r->h, "other", 0);
}

TEST(a_waiter_may_call_into_the_cache_from_its_callback) {
  host h;
  host_open(&h);
  ac_load_t *ld = lead_k(&h, "k", 0);
  wrec w;
  wait_on(&h, ld, &w, 1);
  w.then = then_get_and_lead;
  finish_with(&h, ld, "v");
  ASSERT_EQ_INT(w.calls, 1);
  ASSERT_NOT_NULL(g_started);
  ASSERT_EQ_PTR(ac_cache_loading(h.c, K("other")), g_started);
  finish_with(&h, g_started, "o");
  ASSERT_EQ_STR(peek_k(&h, "other"), "o");
  host_close(&h);
}

TEST(a_load_stores_with_its_ttl_or_the_default) {
  host h;
  ac_cache_options_t o = host_options(&h);
  o.default_ttl = 60;
  host_start(&h, &o);
  uint32_t a = finish_with(&h, lead_k(&h, "a", 0), "A");
  uint32_t b = finish_with(&h, lead_k(&h, "b", 5), "B");
  uint32_t c = finish_with(&h, lead_k(&h, "c", INFINITY), "C");
  ASSERT_NEAR(ac_cache_ttl_left(h.c, a), 60, 1e-9);
  ASSERT_NEAR(ac_cache_ttl_left(h.c, b), 5, 1e-9);
  ASSERT_TRUE(isinf(ac_cache_ttl_left(h.c, c)));
  ASSERT_EQ_UINT(stats_of(&h).ttl_count, 2);
  fake_now += 5;
  ac_lookup_t r;
  ASSERT_EQ_INT(get_k(&h, "b", &r), AC_MISS); /* expired on read */
  ASSERT_EQ_INT(h.removed[AC_REMOVED_EXPIRED], 1);
  ASSERT_NEAR(ac_cache_ttl_left(h.c, a), 55, 1e-9);
  host_close(&h);
}

/* ======================================================================== */
/* failing and timed-out loads */

TEST(a_failing_load_stores_nothing_and_counts_an_error) {
  host h;
  host_open(&h);
  ac_load_t *ld = lead_k(&h, "k", 0);
  wrec w[2];
  wait_on(&h, ld, &w[0], 0);
  wait_on(&h, ld, &w[1], 1);
  fail_load(ld, AC_ELOAD);
  for (int i = 0; i < 2; i++) {
    ASSERT_EQ_INT(w[i].calls, 1);
    ASSERT_EQ_INT(w[i].status, AC_ELOAD);
    ASSERT_EQ_UINT(w[i].slot, 0);
  }
  ASSERT_EQ_INT(w[0].order + 1, w[1].order);
  ac_lookup_t r;
  ASSERT_EQ_INT(get_k(&h, "k", &r), AC_MISS); /* a failure is not cached */
  ac_cache_stats_t st = stats_of(&h);
  ASSERT_EQ_UINT(st.load_errors, 1);
  ASSERT_EQ_UINT(st.size, 0);
  ASSERT_EQ_UINT(st.in_flight, 0);
  /* The next caller loads again. */
  finish_with(&h, lead_k(&h, "k", 0), "second try");
  ASSERT_EQ_STR(peek_k(&h, "k"), "second try");
  ASSERT_EQ_UINT(stats_of(&h).loads, 2);
  host_close(&h);
}

/* A loader that finishes from a libuv timer, long after its waiters were
 * released by load_timeout. */
typedef struct {
  host *h;
  ac_load_t *ld;
  ac_timer_t *t;
  const char *value;
  uint32_t slot_stored;
  int fired;
} late_loader;

static void late_loader_fire(ac_timer_t *t, void *data) {
  late_loader *l = data;
  ASSERT_EQ_PTR(t, l->t);
  l->fired++;
  /* The key is still the load's, though its flight closed long ago. */
  char key[16];
  key_string(l->ld, key, sizeof key);
  ASSERT_EQ_STR(key, "slow");
  ASSERT_FALSE(ac_load_open(l->ld));
  l->slot_stored = finish_with(l->h, l->ld, l->value);
  ac_timer_free(t); /* from its own callback */
  l->t = NULL;
}

TEST(a_background_load_past_load_timeout_releases_its_waiters) {
  host h;
  ac_cache_options_t o = host_options(&h);
  o.load_timeout = 0.02;
  host_start(&h, &o);
  ac_load_t *ld = lead_k(&h, "slow", 0);
  ac_load_background(ld);
  ac_load_background(ld); /* twice: still one timeout */
  wrec w[3];
  for (int i = 0; i < 3; i++) wait_on(&h, ld, &w[i], i);
  double t0 = ac_clock_precise();
  RUN_UNTIL(&h, w[2].calls > 0);
  ASSERT_CMP_INT((ac_clock_precise() - t0) * 1000, >=, 19); /* never early */
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ_INT(w[i].calls, 1);
    ASSERT_EQ_INT(w[i].status, AC_ETIMEDOUT);
    ASSERT_EQ_UINT(w[i].slot, 0);
    ASSERT_EQ_PTR(w[i].load, ld);
  }
  ASSERT_FALSE(ac_load_open(ld));
  ac_cache_stats_t st = stats_of(&h);
  ASSERT_EQ_UINT(st.load_timeouts, 1);
  ASSERT_EQ_UINT(st.in_flight, 0);

  /* The key is free for a new load while the timed-out one still runs. */
  ac_lookup_t r;
  ASSERT_EQ_INT(get_k(&h, "slow", &r), AC_MISS);
  ac_load_t *ld2 = lead_k(&h, "slow", 0);
  ASSERT_TRUE(ld2 != ld);
  wrec w2;
  wait_on(&h, ld2, &w2, 9);

  /* The first loader finishes late: nothing is stored for it. */
  late_loader l = {&h, ld, NULL, "late", 99, 0};
  l.t = ac_timer_new(h.s, late_loader_fire, &l);
  ASSERT_NOT_NULL(l.t);
  ASSERT_EQ_INT(ac_timer_start(l.t, 0.001, 0), 0);
  RUN_UNTIL(&h, l.fired);
  ASSERT_EQ_UINT(l.slot_stored, 0);
  ASSERT_NULL(peek_k(&h, "slow"));
  ASSERT_EQ_INT(w2.calls, 0);
  for (int i = 0; i < 3; i++) ASSERT_EQ_INT(w[i].calls, 1);

  uint32_t slot = finish_with(&h, ld2, "fresh");
  ASSERT_EQ_INT(w2.calls, 1);
  ASSERT_EQ_UINT(w2.slot, slot);
  ASSERT_EQ_STR(peek_k(&h, "slow"), "fresh");
  ASSERT_EQ_UINT(stats_of(&h).load_timeouts, 1);
  host_close(&h);
}

TEST(a_load_that_finishes_in_time_stops_its_timeout) {
  host h;
  ac_cache_options_t o = host_options(&h);
  o.load_timeout = 0.01;
  host_start(&h, &o);
  ac_load_t *ld = lead_k(&h, "k", 0);
  ac_load_background(ld);
  wrec w;
  wait_on(&h, ld, &w, 0);
  finish_with(&h, ld, "v");
  ASSERT_EQ_INT(w.status, 0);
  /* With the timer gone the loop has nothing left (the sweep does not
   * keep it alive): run returns at once. */
  ASSERT_EQ_INT(ac_sched_run(h.s), 0);
  ASSERT_EQ_UINT(stats_of(&h).load_timeouts, 0);
  ASSERT_EQ_INT(w.calls, 1);
  host_close(&h);
}

/* The owner of a load may be one of its waiters and finish the load from
 * the callback that tells it the load timed out: the waiters after it
 * still get a valid load. */
static void then_finish_own_load(wrec *r, ac_load_t *ld, int status) {
  ASSERT_EQ_INT(status, AC_ETIMEDOUT);
  fail_load(ld, AC_ELOAD);
  (void)r;
}

TEST(the_owner_may_finish_a_timed_out_load_from_a_waiter_callback) {
  host h;
  ac_cache_options_t o = host_options(&h);
  o.load_timeout = 0.005;
  host_start(&h, &o);
  ac_load_t *ld = lead_k(&h, "k", 0);
  ac_load_background(ld);
  wrec w[3];
  for (int i = 0; i < 3; i++) wait_on(&h, ld, &w[i], i);
  w[0].then = then_finish_own_load;
  RUN_UNTIL(&h, w[0].calls > 0);
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ_INT(w[i].calls, 1);
    ASSERT_EQ_INT(w[i].status, AC_ETIMEDOUT);
    ASSERT_EQ_UINT(w[i].slot, 0);
  }
  ASSERT_EQ_UINT(stats_of(&h).load_timeouts, 1);
  host_close(&h);
}

/* ======================================================================== */
/* staleness: writes during a load */

TEST(a_set_during_a_load_makes_it_stale) {
  host h;
  host_open(&h);
  ac_load_t *ld = lead_k(&h, "k", 0);
  wrec w;
  wait_on(&h, ld, &w, 0);
  uint32_t s = set_k(&h, "k", "written", 0);
  ac_lookup_t r;
  ASSERT_EQ_INT(get_k(&h, "k", &r), AC_HIT); /* the write, not the load */
  ASSERT_EQ_UINT(r.slot, s);
  ASSERT_NULL(ac_cache_loading(h.c, K("k")));
  ASSERT_TRUE(ac_load_open(ld)); /* still open for its waiters */
  /* The stale load's value is not stored; its waiters still get it. */
  ASSERT_EQ_UINT(finish_with(&h, ld, "loaded"), 0);
  ASSERT_EQ_INT(w.calls, 1);
  ASSERT_EQ_INT(w.status, 0);
  ASSERT_EQ_UINT(w.slot, 0);
  ASSERT_EQ_STR(w.value, "loaded");
  ASSERT_EQ_STR(peek_k(&h, "k"), "written");
  host_close(&h);
}

TEST(a_delete_during_a_load_makes_it_stale_and_a_new_load_can_start) {
  host h;
  host_open(&h);
  ac_load_t *old = lead_k(&h, "k", 0);
  wrec w_old, w_new;
  wait_on(&h, old, &w_old, 0);
  ASSERT_EQ_INT(delete_k(&h, "k"), AC_ENOENT); /* nothing was cached */
  ac_lookup_t r;
  ASSERT_EQ_INT(get_k(&h, "k", &r), AC_MISS);
  ac_load_t *fresh = lead_k(&h, "k", 0); /* while the stale one is open */
  ASSERT_TRUE(fresh != old);
  ASSERT_TRUE(ac_load_open(old));
  ASSERT_EQ_PTR(ac_cache_loading(h.c, K("k")), fresh);
  ASSERT_EQ_INT(get_k(&h, "k", &r), AC_JOIN);
  ASSERT_EQ_PTR(r.load, fresh);
  wait_on(&h, r.load, &w_new, 1);
  ASSERT_EQ_UINT(stats_of(&h).in_flight, 1); /* the stale one is out */

  ASSERT_EQ_UINT(finish_with(&h, old, "old"), 0);
  ASSERT_EQ_INT(w_old.calls, 1);
  ASSERT_EQ_INT(w_old.status, 0);
  ASSERT_EQ_STR(w_old.value, "old");
  ASSERT_EQ_INT(w_new.calls, 0);
  ASSERT_NULL(peek_k(&h, "k"));

  uint32_t s = finish_with(&h, fresh, "new");
  ASSERT_CMP_UINT(s, >, 0);
  ASSERT_EQ_INT(w_new.calls, 1);
  ASSERT_EQ_UINT(w_new.slot, s);
  ASSERT_EQ_STR(peek_k(&h, "k"), "new");
  ASSERT_EQ_INT(w_old.calls, 1);
  host_close(&h);
}

TEST(a_stale_load_that_fails_gives_its_waiters_the_failure) {
  host h;
  host_open(&h);
  ac_load_t *old = lead_k(&h, "k", 0);
  wrec w;
  wait_on(&h, old, &w, 0);
  set_k(&h, "k", "written", 0);
  fail_load(old, AC_ELOAD);
  ASSERT_EQ_INT(w.calls, 1);
  ASSERT_EQ_INT(w.status, AC_ELOAD);
  ASSERT_EQ_STR(peek_k(&h, "k"), "written");
  host_close(&h);
}

TEST(a_clear_during_loads_makes_every_one_stale) {
  host h;
  host_open(&h);
  set_k(&h, "cached", "c", 0);
  ac_load_t *a = lead_k(&h, "a", 0);
  ac_load_t *b = lead_k(&h, "b", 0);
  wrec wa, wb;
  wait_on(&h, a, &wa, 0);
  wait_on(&h, b, &wb, 1);
  clear_h(&h);
  ASSERT_EQ_INT(h.removed[AC_REMOVED_CLEARED], 1);
  ASSERT_EQ_STR(h.last_removed, "cached");
  ASSERT_EQ_UINT(stats_of(&h).size, 0);
  ASSERT_EQ_UINT(stats_of(&h).in_flight, 0);
  ac_lookup_t r;
  ASSERT_EQ_INT(get_k(&h, "a", &r), AC_MISS);
  ac_load_t *a2 = lead_k(&h, "a", 0);

  ASSERT_EQ_UINT(finish_with(&h, a, "A-old"), 0);
  ASSERT_EQ_UINT(finish_with(&h, b, "B-old"), 0);
  ASSERT_EQ_STR(wa.value, "A-old");
  ASSERT_EQ_STR(wb.value, "B-old");
  ASSERT_EQ_INT(wa.status, 0);
  ASSERT_NULL(peek_k(&h, "a"));
  ASSERT_NULL(peek_k(&h, "b"));
  ASSERT_CMP_UINT(finish_with(&h, a2, "A-new"), >, 0);
  ASSERT_EQ_STR(peek_k(&h, "a"), "A-new");
  host_close(&h);
}

TEST(a_second_write_makes_the_new_load_stale_too) {
  host h;
  host_open(&h);
  ac_load_t *first = lead_k(&h, "k", 0);
  delete_k(&h, "k");
  ac_load_t *second = lead_k(&h, "k", 0);
  delete_k(&h, "k");
  ac_load_t *third = lead_k(&h, "k", 0);
  ASSERT_EQ_UINT(finish_with(&h, second, "2"), 0);
  ASSERT_EQ_UINT(finish_with(&h, first, "1"), 0);
  ASSERT_CMP_UINT(finish_with(&h, third, "3"), >, 0);
  ASSERT_EQ_STR(peek_k(&h, "k"), "3");
  host_close(&h);
}

TEST(a_stale_background_load_still_times_out) {
  host h;
  ac_cache_options_t o = host_options(&h);
  o.load_timeout = 0.005;
  host_start(&h, &o);
  ac_load_t *ld = lead_k(&h, "k", 0);
  ac_load_background(ld);
  wrec w;
  wait_on(&h, ld, &w, 0);
  delete_k(&h, "k");
  RUN_UNTIL(&h, w.calls > 0);
  ASSERT_EQ_INT(w.status, AC_ETIMEDOUT);
  ASSERT_EQ_UINT(stats_of(&h).load_timeouts, 1);
  ASSERT_EQ_UINT(finish_with(&h, ld, "late"), 0);
  host_close(&h);
}

/* ======================================================================== */
/* batches */

TEST(keys_of_one_group_go_into_one_batch_dispatched_from_a_pass) {
  host h;
  ac_cache_options_t o = host_options(&h);
  o.batch_window = 0.01;
  host_start(&h, &o);
  const char *keys[] = {"u1", "u2", "u3"};
  ac_load_t *ld[3];
  wrec w[3];
  for (int i = 0; i < 3; i++) {
    ac_lookup_t r;
    ASSERT_EQ_INT(get_k(&h, keys[i], &r), AC_MISS);
    ASSERT_EQ_INT(batch_k(&h, &g_users, keys[i], &ld[i]), 0);
    wait_on(&h, ld[i], &w[i], i);
    ASSERT_EQ_PTR(ac_load_batch(ld[i]), ac_load_batch(ld[0]));
  }
  ac_batch_t *b = ac_load_batch(ld[0]);
  ASSERT_NOT_NULL(b);
  ASSERT_EQ_UINT(ac_batch_size(b), 3);
  ASSERT_EQ_PTR(ac_batch_group(b), &g_users);
  ASSERT_EQ_PTR(ac_batch_cache(b), h.c);
  ASSERT_FALSE(ac_batch_closed(b));
  for (int i = 0; i < 3; i++) ASSERT_EQ_PTR(ac_batch_load(b, (size_t)i), ld[i]);
  ASSERT_NULL(ac_batch_load(b, 3));
  ASSERT_EQ_INT(h.dispatches, 0); /* never inside ac_cache_batch */
  ASSERT_EQ_UINT(ac_sched_pending(h.s), 0); /* collecting, not queued */

  RUN_UNTIL(&h, h.dispatches > 0);
  ASSERT_EQ_INT(h.dispatches, 1);
  ASSERT_EQ_UINT(h.dispatch_sizes[0], 3);
  for (int i = 0; i < 3; i++) {
    char want[16];
    snprintf(want, sizeof want, "batch:%s", keys[i]);
    ASSERT_EQ_INT(w[i].calls, 1);
    ASSERT_EQ_INT(w[i].status, 0);
    ASSERT_EQ_STR(w[i].value, want);
    ASSERT_EQ_STR(peek_k(&h, keys[i]), want);
  }
  ac_cache_stats_t st = stats_of(&h);
  ASSERT_EQ_UINT(st.batches, 1);
  ASSERT_EQ_UINT(st.batched_keys, 3);
  ASSERT_EQ_UINT(st.loads, 3);
  host_close(&h);
}

TEST(the_window_timer_makes_a_batch_due) {
  host h;
  ac_cache_options_t o = host_options(&h);
  o.batch_window = 0.05;
  host_start(&h, &o);
  ac_load_t *ld;
  double t0 = ac_clock_precise();
  ASSERT_EQ_INT(batch_k(&h, &g_users, "a", &ld), 0);
  /* Passes of the ready queue alone do not end the window. */
  ac_sched_step(h.s);
  ac_sched_run_ready(h.s);
  RUN_UNTIL(&h, h.dispatches > 0);
  ASSERT_CMP_INT((ac_clock_precise() - t0) * 1000, >=, 49);
  ASSERT_EQ_STR(peek_k(&h, "a"), "batch:a");
  host_close(&h);
}

TEST(a_zero_window_collects_until_the_loop_runs) {
  host h;
  host_open(&h); /* batch_window 0 */
  ac_load_t *ld[2];
  ASSERT_EQ_INT(batch_k(&h, &g_users, "a", &ld[0]), 0);
  ASSERT_EQ_INT(batch_k(&h, &g_users, "b", &ld[1]), 0);
  ASSERT_EQ_INT(h.dispatches, 0);
  ASSERT_EQ_INT(ac_sched_run(h.s), 0);
  ASSERT_EQ_INT(h.dispatches, 1);
  ASSERT_EQ_UINT(h.dispatch_sizes[0], 2);
  host_close(&h);
}

TEST(max_batch_size_makes_a_batch_due_at_once) {
  host h;
  ac_cache_options_t o = host_options(&h);
  o.batch_window = 30; /* only the size can make it due in this test */
  o.max_batch_size = 3;
  host_start(&h, &o);
  ac_load_t *ld[4];
  for (int i = 0; i < 3; i++) {
    char k[4] = {'k', (char)('0' + i), 0};
    ASSERT_EQ_INT(batch_k(&h, &g_users, k, &ld[i]), 0);
  }
  ASSERT_EQ_INT(h.dispatches, 0);           /* not inside the call */
  ASSERT_EQ_UINT(ac_sched_pending(h.s), 1); /* but queued */
  /* A fourth key opens a new batch. */
  ASSERT_EQ_INT(batch_k(&h, &g_users, "k3", &ld[3]), 0);
  ASSERT_TRUE(ac_load_batch(ld[3]) != ac_load_batch(ld[0]));
  ASSERT_EQ_UINT(ac_batch_size(ac_load_batch(ld[3])), 1);

  h.in_pass++; /* one pass by hand, as the loop's idle phase runs it */
  ASSERT_EQ_UINT(ac_sched_run_ready(h.s), 1);
  h.in_pass--;
  ASSERT_EQ_INT(h.dispatches, 1);
  ASSERT_EQ_UINT(h.dispatch_sizes[0], 3);
  ASSERT_EQ_STR(peek_k(&h, "k2"), "batch:k2");
  ASSERT_NULL(peek_k(&h, "k3"));
  /* The second batch is still collecting when the cache is freed. */
  host_close(&h);
  ASSERT_EQ_INT(h.dispatches, 2);
  ASSERT_EQ_INT(h.closed_dispatches, 1);
}

TEST(two_groups_give_two_batches) {
  host h;
  host_open(&h);
  ac_load_t *u1, *u2, *p1;
  ASSERT_EQ_INT(batch_k(&h, &g_users, "u1", &u1), 0);
  ASSERT_EQ_INT(batch_k(&h, &g_posts, "p1", &p1), 0);
  ASSERT_EQ_INT(batch_k(&h, &g_users, "u2", &u2), 0);
  ASSERT_EQ_PTR(ac_load_batch(u1), ac_load_batch(u2));
  ASSERT_TRUE(ac_load_batch(u1) != ac_load_batch(p1));
  ASSERT_EQ_PTR(ac_batch_group(ac_load_batch(p1)), &g_posts);
  ASSERT_EQ_INT(ac_sched_run(h.s), 0);
  ASSERT_EQ_INT(h.dispatches, 2);
  ASSERT_EQ_UINT(h.dispatch_sizes[0] + h.dispatch_sizes[1], 3);
  ASSERT_EQ_UINT(stats_of(&h).batches, 2);
  ASSERT_EQ_UINT(stats_of(&h).batched_keys, 3);
  host_close(&h);
}

TEST(a_key_already_loading_is_a_join_not_a_second_batch_entry) {
  host h;
  host_open(&h);
  ac_load_t *in_batch, *alone;
  ASSERT_EQ_INT(batch_k(&h, &g_users, "a", &in_batch), 0);
  alone = lead_k(&h, "solo", 0);
  ac_batch_t *b = ac_load_batch(in_batch);

  ac_lookup_t r;
  wrec w[2];
  ASSERT_EQ_INT(get_k(&h, "a", &r), AC_JOIN);
  ASSERT_EQ_PTR(r.load, in_batch);
  wait_on(&h, r.load, &w[0], 0);
  ASSERT_EQ_INT(get_k(&h, "solo", &r), AC_JOIN);
  ASSERT_EQ_PTR(r.load, alone);
  wait_on(&h, r.load, &w[1], 1);
  /* Asked to batch it anyway, the cache refuses: one load per key. */
  ac_load_t *dup = NULL;
  ASSERT_EQ_INT(batch_k(&h, &g_users, "a", &dup), AC_EBUSY);
  ASSERT_EQ_INT(batch_k(&h, &g_users, "solo", &dup), AC_EBUSY);
  ASSERT_EQ_UINT(ac_batch_size(b), 1);

  ASSERT_EQ_INT(ac_sched_run(h.s), 0);
  ASSERT_EQ_UINT(h.dispatch_sizes[0], 1);
  ASSERT_EQ_STR(w[0].value, "batch:a");
  finish_with(&h, alone, "solo!");
  ASSERT_EQ_STR(w[1].value, "solo!");
  host_close(&h);
}

TEST(a_write_to_a_collecting_key_makes_its_batch_entry_stale) {
  host h;
  host_open(&h);
  ac_load_t *a, *b;
  wrec w;
  ASSERT_EQ_INT(batch_k(&h, &g_users, "a", &a), 0);
  ASSERT_EQ_INT(batch_k(&h, &g_users, "b", &b), 0);
  wait_on(&h, a, &w, 0);
  set_k(&h, "a", "written", 0);
  ASSERT_EQ_INT(ac_sched_run(h.s), 0);
  ASSERT_EQ_UINT(h.dispatch_sizes[0], 2);
  ASSERT_EQ_STR(w.value, "batch:a"); /* its waiters get the batch's value */
  ASSERT_EQ_UINT(w.slot, 0);
  ASSERT_EQ_STR(peek_k(&h, "a"), "written");
  ASSERT_EQ_STR(peek_k(&h, "b"), "batch:b");
  host_close(&h);
}

/* A batch loader that goes to the background and never answers in time. */
static ac_batch_t *g_parked;
static void park_batch(host *h, ac_batch_t *b) {
  (void)h;
  g_parked = b;
  ac_batch_background(b);
}

/* Finishes what is left of a parked batch, reading each key as a loader
 * would, then the batch. */
static void finish_parked(host *h, ac_batch_t *b) {
  for (size_t i = 0; i < ac_batch_size(b); i++) {
    ac_load_t *ld = ac_batch_load(b, i);
    tload *d = ac_load_data(ld);
    if (d->finished) continue;
    char key[16], value[32];
    key_string(ld, key, sizeof key);
    snprintf(value, sizeof value, "late:%s", key);
    ASSERT_EQ_UINT(finish_with(h, ld, value), 0);
  }
  ac_batch_done(b);
}

TEST(a_background_batch_past_load_timeout_releases_every_key) {
  host h;
  ac_cache_options_t o = host_options(&h);
  o.load_timeout = 0.02;
  host_start(&h, &o);
  h.on_dispatch = park_batch;
  ac_load_t *ld[3];
  wrec w[3];
  const char *keys[] = {"a", "b", "c"};
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ_INT(batch_k(&h, &g_users, keys[i], &ld[i]), 0);
    wait_on(&h, ld[i], &w[i], i);
  }
  RUN_UNTIL(&h, w[0].calls && w[1].calls && w[2].calls);
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ_INT(w[i].calls, 1);
    ASSERT_EQ_INT(w[i].status, AC_ETIMEDOUT);
    ASSERT_FALSE(ac_load_open(ld[i]));
  }
  ASSERT_EQ_UINT(stats_of(&h).load_timeouts, 3);
  ac_lookup_t r;
  ASSERT_EQ_INT(get_k(&h, "a", &r), AC_MISS);
  /* The batch loader answers late: nothing is stored. */
  finish_parked(&h, g_parked);
  ASSERT_NULL(peek_k(&h, "a"));
  ASSERT_EQ_UINT(stats_of(&h).size, 0);
  host_close(&h);
}

/* A batch loader that settles the keys one at a time, as its answers come:
 * the first now, the others after the timeout. */
static void settle_first_then_park(host *h, ac_batch_t *b) {
  finish_with(h, ac_batch_load(b, 0), "first");
  park_batch(h, b);
}

TEST(a_batch_settled_key_by_key_times_out_only_the_keys_left) {
  host h;
  ac_cache_options_t o = host_options(&h);
  o.load_timeout = 0.02;
  host_start(&h, &o);
  h.on_dispatch = settle_first_then_park;
  ac_load_t *ld[3];
  wrec w[3];
  const char *keys[] = {"a", "b", "c"};
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ_INT(batch_k(&h, &g_users, keys[i], &ld[i]), 0);
    wait_on(&h, ld[i], &w[i], i);
  }
  RUN_UNTIL(&h, w[1].calls && w[2].calls);
  ASSERT_EQ_INT(w[0].status, 0);
  ASSERT_EQ_STR(w[0].value, "first");
  ASSERT_EQ_INT(w[1].status, AC_ETIMEDOUT);
  ASSERT_EQ_INT(w[2].status, AC_ETIMEDOUT);
  ASSERT_EQ_UINT(stats_of(&h).load_timeouts, 2);
  ASSERT_EQ_STR(peek_k(&h, "a"), "first");
  finish_parked(&h, g_parked);
  for (int i = 0; i < 3; i++) ASSERT_EQ_INT(w[i].calls, 1);
  host_close(&h);
}

/* The owner of a batch waits on its first key; told that it timed out,
 * it gives up on the batch loader: settles every key and the batch. */
static void then_give_up_on_the_batch(wrec *r, ac_load_t *ld, int status) {
  ASSERT_EQ_INT(status, AC_ETIMEDOUT);
  ac_batch_t *b = ac_load_batch(ld);
  for (size_t i = 0; i < ac_batch_size(b); i++)
    fail_load(ac_batch_load(b, i), AC_ETIMEDOUT);
  ac_batch_done(b);
  g_parked = NULL;
  (void)r;
}

TEST(the_owner_may_finish_a_timed_out_batch_from_a_waiter_callback) {
  host h;
  ac_cache_options_t o = host_options(&h);
  o.load_timeout = 0.005;
  host_start(&h, &o);
  h.on_dispatch = park_batch;
  ac_load_t *ld[3];
  wrec w[3];
  const char *keys[] = {"a", "b", "c"};
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ_INT(batch_k(&h, &g_users, keys[i], &ld[i]), 0);
    wait_on(&h, ld[i], &w[i], i);
  }
  w[0].then = then_give_up_on_the_batch;
  RUN_UNTIL(&h, w[0].calls > 0);
  ASSERT_NULL(g_parked);
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ_INT(w[i].calls, 1);
    ASSERT_EQ_INT(w[i].status, AC_ETIMEDOUT);
  }
  /* Only a's load was still open when the timeout reached it; the owner
   * closed the others itself. */
  ASSERT_EQ_UINT(stats_of(&h).load_timeouts, 1);
  host_close(&h);
}

/* ======================================================================== */
/* freeing the cache with work in flight */

TEST(freeing_the_cache_cancels_open_loads_and_their_owners_finish_later) {
  host h;
  host_open(&h);
  set_k(&h, "cached", "c", 0);
  ac_load_t *a = lead_k(&h, "a", 0);
  ac_load_t *b = lead_k(&h, "b", 0);
  ac_load_background(a);
  wrec wa[2], wb;
  wait_on(&h, a, &wa[0], 0);
  wait_on(&h, a, &wa[1], 1);
  wait_on(&h, b, &wb, 2);
  free_cache(&h);
  ASSERT_EQ_INT(h.removed[AC_REMOVED_CLEARED], 1); /* the cached entry */
  for (int i = 0; i < 2; i++) {
    ASSERT_EQ_INT(wa[i].calls, 1);
    ASSERT_EQ_INT(wa[i].status, AC_ECANCELED);
  }
  ASSERT_EQ_INT(wb.calls, 1);
  ASSERT_EQ_INT(wb.status, AC_ECANCELED);
  ASSERT_FALSE(ac_load_open(a));
  ASSERT_FALSE(ac_load_open(b));
  /* The owners still hold their loads: the key, the data, finishing. */
  char key[8];
  key_string(a, key, sizeof key);
  ASSERT_EQ_STR(key, "a");
  ASSERT_EQ_UINT(finish_with(&h, a, "A"), 0);
  ASSERT_EQ_INT(ac_sched_run(h.s), 0);
  fail_load(b, AC_ELOAD);
  ASSERT_EQ_INT(wa[0].calls + wa[1].calls + wb.calls, 3);
  host_close(&h); /* LSan: the cache's memory went with the last load */
}

static void then_free_cache(wrec *r, ac_load_t *ld, int status) {
  (void)ld, (void)status;
  if (r->h->c != NULL) free_cache(r->h);
}

TEST(a_waiter_may_free_the_cache_from_its_callback) {
  host h;
  host_open(&h);
  ac_load_t *a = lead_k(&h, "a", 0);
  ac_load_t *b = lead_k(&h, "b", 0);
  wrec wa, wb;
  wait_on(&h, a, &wa, 0);
  wait_on(&h, b, &wb, 1);
  wa.then = then_free_cache;
  uint32_t slot = finish_with(&h, a, "A");
  ASSERT_CMP_UINT(slot, >, 0);
  ASSERT_NULL(h.c);
  ASSERT_EQ_INT(wa.status, 0);
  ASSERT_EQ_INT(wb.calls, 1);
  ASSERT_EQ_INT(wb.status, AC_ECANCELED);
  ASSERT_EQ_INT(h.removed[AC_REMOVED_CLEARED], 1); /* a's value */
  fail_load(b, AC_ECANCELED);
  host_close(&h);
}

static void then_finish_own_load_cancelled(wrec *r, ac_load_t *ld,
                                           int status) {
  ASSERT_EQ_INT(status, AC_ECANCELED);
  fail_load(ld, AC_ECANCELED);
  (void)r;
}

TEST(the_owner_may_finish_a_cancelled_load_from_a_waiter_callback) {
  host h;
  host_open(&h);
  ac_load_t *ld = lead_k(&h, "k", 0);
  wrec w[3];
  for (int i = 0; i < 3; i++) wait_on(&h, ld, &w[i], i);
  w[0].then = then_finish_own_load_cancelled;
  free_cache(&h);
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ_INT(w[i].calls, 1);
    ASSERT_EQ_INT(w[i].status, AC_ECANCELED);
  }
  host_close(&h);
}

TEST(freeing_the_cache_hands_a_collecting_batch_to_dispatch_closed) {
  host h;
  host_open(&h);
  ac_load_t *ld[2];
  wrec w[2];
  ASSERT_EQ_INT(batch_k(&h, &g_users, "a", &ld[0]), 0);
  ASSERT_EQ_INT(batch_k(&h, &g_users, "b", &ld[1]), 0);
  wait_on(&h, ld[0], &w[0], 0);
  wait_on(&h, ld[1], &w[1], 1);
  free_cache(&h);
  ASSERT_EQ_INT(h.dispatches, 1);
  ASSERT_EQ_INT(h.closed_dispatches, 1);
  ASSERT_EQ_UINT(h.dispatch_sizes[0], 2);
  for (int i = 0; i < 2; i++) {
    ASSERT_EQ_INT(w[i].calls, 1);
    ASSERT_EQ_INT(w[i].status, AC_ECANCELED);
  }
  ASSERT_EQ_INT(ac_sched_run(h.s), 0);
  ASSERT_EQ_INT(h.dispatches, 1); /* the window timer is gone with it */
  host_close(&h);
}

/* A closed dispatch that settles the keys at once and lets the batch go
 * later, from the loop. */
static ac_timer_t *g_done_timer;
static void done_later_fire(ac_timer_t *t, void *data) {
  ac_batch_done(data);
  ac_timer_free(t);
  g_done_timer = NULL;
}
static void finish_now_done_later(host *h, ac_batch_t *b) {
  for (size_t i = 0; i < ac_batch_size(b); i++)
    fail_load(ac_batch_load(b, i), AC_ECANCELED);
  g_done_timer = ac_timer_new(h->s, done_later_fire, b);
  ASSERT_NOT_NULL(g_done_timer);
  ASSERT_EQ_INT(ac_timer_start(g_done_timer, 0.03, 0), 0);
}

TEST(a_closed_batch_may_be_done_after_its_window_would_have_ended) {
  host h;
  ac_cache_options_t o = host_options(&h);
  o.batch_window = 0.005;
  host_start(&h, &o);
  h.on_dispatch = finish_now_done_later;
  ac_load_t *ld[2];
  ASSERT_EQ_INT(batch_k(&h, &g_users, "a", &ld[0]), 0);
  ASSERT_EQ_INT(batch_k(&h, &g_users, "b", &ld[1]), 0);
  free_cache(&h);
  ASSERT_EQ_INT(h.closed_dispatches, 1);
  ASSERT_EQ_INT(ac_sched_run(h.s), 0); /* the window passes, then done */
  ASSERT_NULL(g_done_timer);
  ASSERT_EQ_INT(h.dispatches, 1);
  host_close(&h);
}

TEST(freeing_the_cache_hands_a_queued_batch_to_dispatch_closed) {
  host h;
  ac_cache_options_t o = host_options(&h);
  o.max_batch_size = 2;
  host_start(&h, &o);
  ac_load_t *ld[2];
  wrec w;
  ASSERT_EQ_INT(batch_k(&h, &g_users, "a", &ld[0]), 0);
  ASSERT_EQ_INT(batch_k(&h, &g_users, "b", &ld[1]), 0);
  wait_on(&h, ld[1], &w, 0);
  ASSERT_EQ_UINT(ac_sched_pending(h.s), 1);
  free_cache(&h);
  ASSERT_EQ_UINT(ac_sched_pending(h.s), 0); /* taken off the queue */
  ASSERT_EQ_INT(h.closed_dispatches, 1);
  ASSERT_EQ_INT(w.status, AC_ECANCELED);
  ASSERT_EQ_INT(ac_sched_run(h.s), 0);
  ASSERT_EQ_INT(h.dispatches, 1); /* once, closed */
  host_close(&h);
}

TEST(a_dispatched_batch_may_outlive_the_cache) {
  host h;
  ac_cache_options_t o = host_options(&h);
  o.load_timeout = 10;
  host_start(&h, &o);
  h.on_dispatch = park_batch;
  ac_load_t *ld[2];
  wrec w[2];
  ASSERT_EQ_INT(batch_k(&h, &g_users, "a", &ld[0]), 0);
  ASSERT_EQ_INT(batch_k(&h, &g_users, "b", &ld[1]), 0);
  wait_on(&h, ld[0], &w[0], 0);
  wait_on(&h, ld[1], &w[1], 1);
  RUN_UNTIL(&h, h.dispatches > 0);
  free_cache(&h);
  ASSERT_EQ_INT(h.closed_dispatches, 0); /* dispatched before */
  ASSERT_EQ_INT(w[0].status, AC_ECANCELED);
  ASSERT_EQ_INT(w[1].status, AC_ECANCELED);
  finish_parked(&h, g_parked); /* nothing stored, memory freed */
  host_close(&h);
}

TEST(a_load_opened_before_free_and_begun_after_it_leads) {
  host h;
  host_open(&h);
  ac_load_t *ld = NULL;
  ASSERT_EQ_INT(ac_cache_lead(h.c, K("k"), 0, &ld), 0);
  free_cache(&h);
  ASSERT_EQ_INT(ac_load_begin(ld), AC_LEAD);
  ASSERT_FALSE(ac_load_open(ld));
  ASSERT_EQ_UINT(finish_with(&h, ld, "v"), 0);
  host_close(&h);
}

TEST(free_null_is_a_no_op) {
  ac_cache_free(NULL);
  ac_backend_free(NULL);
}

/* ======================================================================== */
/* removals */

TEST(every_removal_is_reported_once_with_its_reason) {
  host h;
  ac_cache_options_t o = host_options(&h);
  o.maxsize = 3;
  host_start(&h, &o);
  set_k(&h, "a", "A", 0);
  finish_with(&h, lead_k(&h, "b", 10), "B");
  set_k(&h, "c", "C", 0);
  /* Full: a new key evicts the least recently used (a). */
  finish_with(&h, lead_k(&h, "d", 0), "D");
  ASSERT_EQ_INT(h.removed[AC_REMOVED_EVICTED], 1);
  ASSERT_EQ_STR(h.last_removed, "a");
  ASSERT_EQ_UINT(stats_of(&h).evictions, 1);
  /* A set on a live key keeps its slot: no removal, the value replaced. */
  uint32_t s = ac_cache_peek(h.c, K("c"));
  ASSERT_EQ_UINT(set_k(&h, "c", "C2", 0), s);
  ASSERT_EQ_INT(h.removed_total, 1);
  /* b expires: the sweep removes it. */
  fake_now += 10;
  ASSERT_EQ_UINT(ac_cache_expire(h.c, 0), 1);
  ASSERT_EQ_INT(h.removed[AC_REMOVED_EXPIRED], 1);
  ASSERT_EQ_STR(h.last_removed, "b");
  ASSERT_EQ_UINT(stats_of(&h).expirations, 1);
  /* Deleted. */
  ASSERT_EQ_INT(delete_k(&h, "c"), 0);
  ASSERT_EQ_INT(delete_k(&h, "c"), AC_ENOENT);
  ASSERT_EQ_INT(h.removed[AC_REMOVED_DELETED], 1);
  /* Cleared. */
  set_k(&h, "e", "E", 0);
  clear_h(&h);
  ASSERT_EQ_INT(h.removed[AC_REMOVED_CLEARED], 2); /* d and e */
  ASSERT_EQ_INT(h.live_values, 0);
  /* Freed with entries: cleared again. */
  set_k(&h, "f", "F", 0);
  set_k(&h, "g", "G", 0);
  free_cache(&h);
  ASSERT_EQ_INT(h.removed[AC_REMOVED_CLEARED], 4);
  ASSERT_EQ_INT(h.removed_total, 7);
  host_close(&h);
}

TEST(keys_and_ttls_of_slots_are_readable) {
  host h;
  ac_cache_options_t o = host_options(&h);
  o.default_ttl = 30;
  host_start(&h, &o);
  ASSERT_NEAR(ac_cache_default_ttl(h.c), 30, 0);
  ASSERT_TRUE(isinf(ac_cache_load_timeout(h.c))); /* 0: no limit */
  uint32_t s = set_k(&h, "key", "v", 0);
  int tag = -1;
  size_t len = 0;
  const char *k = ac_cache_key(h.c, s, &tag, &len);
  ASSERT_EQ_INT(tag, 0);
  ASSERT_EQ_UINT(len, 3);
  ASSERT_EQ_MEM(k, "key", 3);
  ASSERT_NEAR(ac_cache_ttl_left(h.c, s), 30, 1e-9);
  ASSERT_EQ_UINT(ac_cache_peek(h.c, K("nope")), 0);
  host_close(&h);
}

/* ======================================================================== */
/* options and allocation failures */

TEST(bad_options_are_einval) {
  host h;
  ac_cache_options_t good = host_options(&h), o;
  int err = 0;
  ASSERT_NULL(ac_cache_new(NULL, &err));
  ASSERT_EQ_INT(err, AC_EINVAL);
  o = good, o.maxsize = 0;
  ASSERT_NULL(ac_cache_new(&o, &err));
  ASSERT_EQ_INT(err, AC_EINVAL);
  o = good, o.sched = NULL;
  ASSERT_NULL(ac_cache_new(&o, &err));
  ASSERT_EQ_INT(err, AC_EINVAL);
  o = good, o.default_ttl = -1;
  ASSERT_NULL(ac_cache_new(&o, &err));
  o = good, o.load_timeout = NAN;
  ASSERT_NULL(ac_cache_new(&o, &err));
  o = good, o.batch_window = -0.5;
  ASSERT_NULL(ac_cache_new(&o, &err));
  ASSERT_EQ_INT(err, AC_EINVAL);
  host_close(&h);
}

TEST(cache_new_fails_cleanly_when_out_of_memory) {
  install_counting_allocator();
  host h;
  ac_cache_options_t o = host_options(&h);
  long base = live_blocks;
  int failures = 0;
  for (long n = 1;; n++) {
    fail_nth(n);
    int err = 12345;
    ac_cache_t *c = ac_cache_new(&o, &err);
    if (c != NULL) {
      ASSERT_EQ_INT(err, 0);
      ASSERT_CMP_INT(alloc_calls, <, n); /* no allocation failed */
      h.c = c;
      break;
    }
    ASSERT_EQ_INT(err, AC_ENOMEM);
    failures++;
    ASSERT_EQ_INT(ac_sched_run(h.s), 0); /* closes a timer it had made */
    ASSERT_EQ_INT(live_blocks, base);
  }
  ASSERT_CMP_INT(failures, >=, 3);
  disarm_failure();
  finish_with(&h, lead_k(&h, "k", 0), "v");
  ASSERT_EQ_STR(peek_k(&h, "k"), "v");
  host_close(&h);
  restore_allocator();
}

TEST(lead_fails_cleanly_when_out_of_memory) {
  install_counting_allocator();
  host h;
  host_open(&h);
  for (long n = 1; n <= 2; n++) {
    fail_nth(n); /* the load, then its flight */
    ac_load_t *ld = NULL;
    ASSERT_EQ_INT(ac_cache_lead(h.c, K("k"), 0, &ld), AC_ENOMEM);
    ac_lookup_t r;
    ASSERT_EQ_INT(get_k(&h, "k", &r), AC_MISS); /* no half-open load */
    ASSERT_EQ_UINT(stats_of(&h).in_flight, 0);
    ASSERT_EQ_UINT(stats_of(&h).loads, 0);
  }
  disarm_failure();
  finish_with(&h, lead_k(&h, "k", 0), "v");
  ASSERT_EQ_STR(peek_k(&h, "k"), "v");
  host_close(&h);
  restore_allocator();
}

TEST(batch_fails_cleanly_when_out_of_memory) {
  install_counting_allocator();
  host h;
  host_open(&h);
  /* A new batch: fail each allocation in turn. */
  int failures = 0;
  ac_load_t *ld = NULL;
  for (long n = 1;; n++) {
    fail_nth(n);
    int rc = batch_k(&h, &g_users, "first", &ld);
    if (rc == 0) {
      ASSERT_CMP_INT(alloc_calls, <, n);
      break;
    }
    ASSERT_EQ_INT(rc, AC_ENOMEM);
    failures++;
    ac_lookup_t r;
    ASSERT_EQ_INT(get_k(&h, "first", &r), AC_MISS);
    ASSERT_EQ_INT(ac_sched_run(h.s), 0); /* no empty batch is dispatched */
    ASSERT_EQ_INT(h.dispatches, 0);
  }
  ASSERT_CMP_INT(failures, >=, 3);
  /* An existing batch: the key's load cannot be allocated. */
  fail_nth(1);
  ASSERT_EQ_INT(batch_k(&h, &g_users, "second", &ld), AC_ENOMEM);
  disarm_failure();
  ASSERT_EQ_UINT(ac_batch_size(ac_load_batch(ld)), 1);
  ASSERT_EQ_INT(batch_k(&h, &g_users, "third", &ld), 0);
  ASSERT_EQ_INT(ac_sched_run(h.s), 0);
  ASSERT_EQ_INT(h.dispatches, 1);
  ASSERT_EQ_UINT(h.dispatch_sizes[0], 2);
  ASSERT_EQ_STR(peek_k(&h, "first"), "batch:first");
  ASSERT_NULL(peek_k(&h, "second"));
  ASSERT_EQ_STR(peek_k(&h, "third"), "batch:third");
  host_close(&h);
  restore_allocator();
}

TEST(a_background_load_without_memory_for_its_timer_still_ends) {
  install_counting_allocator();
  host h;
  ac_cache_options_t o = host_options(&h);
  o.load_timeout = 0.001;
  host_start(&h, &o);
  ac_load_t *ld = lead_k(&h, "k", 0);
  wrec w;
  wait_on(&h, ld, &w, 0);
  fail_nth(1);
  ac_load_background(ld);
  disarm_failure();
  ASSERT_EQ_INT(ac_sched_run(h.s), 0); /* no timer: nothing to wait for */
  ASSERT_EQ_INT(w.calls, 0);
  finish_with(&h, ld, "v");
  ASSERT_EQ_INT(w.status, 0);
  host_close(&h);
  restore_allocator();
}

/* ======================================================================== */
/* everything at once */

/* A random mix of every operation, with short timeouts, background loads
 * and batches finished at random times, and the cache freed with work in
 * flight: every waiter is called exactly once, every value freed (LSan,
 * host_close), the loop closes. */
enum { MIX_WAITERS = 6000, MIX_PENDING = 256, MIX_STEPS = 4000 };
static wrec mix_w[MIX_WAITERS];
static int mix_nw;
static ac_load_t *mix_loads[MIX_PENDING];
static int mix_nloads;
static ac_batch_t *mix_batches[MIX_PENDING];
static int mix_nbatches;
static uint64_t mix_rng = 0x9e3779b97f4a7c15u;

/* MIX_SEED=n in the environment runs another mix (to hunt, not in CTest). */
__attribute__((constructor)) static void mix_seed(void) {
  const char *s = getenv("MIX_SEED");
  if (s != NULL) mix_rng ^= strtoull(s, NULL, 10) * 0x100000001b3ull;
}

static unsigned mix_rand(unsigned n) {
  mix_rng ^= mix_rng << 13;
  mix_rng ^= mix_rng >> 7;
  mix_rng ^= mix_rng << 17;
  return (unsigned)(mix_rng % n);
}

static void mix_join(host *h, ac_load_t *ld);

/* Waiters call back into the cache now and then. */
static void mix_check_answer(wrec *r, ac_load_t *ld, int status) {
  host *h = r->h;
  (void)ld;
  if (status == 0 && r->value[0] == '\0') FAIL("waiter %d: status 0, no value", r->id);
  if (status == AC_ECANCELED) return; /* the cache is closing */
  char key[8];
  snprintf(key, sizeof key, "k%u", mix_rand(12));
  ac_lookup_t lk;
  switch (mix_rand(8)) {
    case 0: delete_k(h, key); break;
    case 1: set_k(h, key, "from a waiter", 0); break;
    case 2:
      if (get_k(h, key, &lk) == AC_MISS) finish_with(h, lead_k(h, key, 0), "waiter led");
      else if (get_k(h, key, &lk) == AC_JOIN) mix_join(h, lk.load);
      break;
    case 3: if (mix_rand(8) == 0) clear_h(h); break;
  }
}

static void mix_join(host *h, ac_load_t *ld) {
  if (mix_nw == MIX_WAITERS) return;
  wrec *r = &mix_w[mix_nw];
  wait_on(h, ld, r, mix_nw);
  r->then = mix_check_answer;
  mix_nw++;
}

static void mix_dispatch(host *h, ac_batch_t *b) {
  if (ac_batch_closed(b) || mix_nbatches == MIX_PENDING || mix_rand(2)) {
    host_default_dispatch(h, b);
    return;
  }
  if (mix_rand(2)) finish_with(h, ac_batch_load(b, 0), "partial");
  ac_batch_background(b);
  mix_batches[mix_nbatches++] = b;
}

static void mix_finish_batch(host *h, int i) {
  ac_batch_t *b = mix_batches[i];
  mix_batches[i] = mix_batches[--mix_nbatches];
  for (size_t k = 0; k < ac_batch_size(b); k++) {
    ac_load_t *ld = ac_batch_load(b, k);
    if (((tload *)ac_load_data(ld))->finished) continue;
    if (mix_rand(4) == 0) fail_load(ld, AC_ELOAD);
    else finish_with(h, ld, "late batch");
  }
  ac_batch_done(b);
}

static void mix_finish_load(host *h, int i) {
  ac_load_t *ld = mix_loads[i];
  mix_loads[i] = mix_loads[--mix_nloads];
  if (mix_rand(4) == 0) fail_load(ld, AC_ELOAD);
  else finish_with(h, ld, "late");
}

TEST(a_random_mix_of_operations_keeps_every_promise) {
  host h;
  ac_cache_options_t o = host_options(&h);
  o.maxsize = 8;
  o.default_ttl = 5;
  o.load_timeout = 0.002;
  o.max_batch_size = 4;
  host_start(&h, &o);
  h.on_dispatch = mix_dispatch;
  static int groups[2];
  for (int step = 0; step < MIX_STEPS; step++) {
    char key[8];
    snprintf(key, sizeof key, "k%u", mix_rand(12));
    ac_lookup_t r;
    ac_load_t *ld;
    switch (mix_rand(12)) {
      case 0: case 1: case 2: { /* a get, leading a load on a miss */
        int rc = get_k(&h, key, &r);
        if (rc == AC_HIT) {
          ASSERT_NOT_NULL(host_value(&h, r.slot));
        } else if (rc == AC_JOIN) {
          mix_join(&h, r.load);
        } else if (mix_rand(3) == 0) { /* batched */
          ASSERT_EQ_INT(batch_k(&h, &groups[mix_rand(2)], key, &ld), 0);
          mix_join(&h, ld);
        } else {
          h.in_cache_call++;
          ASSERT_EQ_INT(ac_cache_lead(h.c, K(key), mix_rand(2) ? 0 : 1, &ld), 0);
          ASSERT_EQ_INT(ac_load_begin(ld), AC_LEAD);
          h.in_cache_call--;
          mix_join(&h, ld);
          unsigned how = mix_rand(4);
          if (how == 0) finish_with(&h, ld, "now");
          else if (how == 1) fail_load(ld, AC_ELOAD);
          else if (mix_nloads < MIX_PENDING) {
            ac_load_background(ld);
            mix_loads[mix_nloads++] = ld;
          } else {
            finish_with(&h, ld, "now");
          }
        }
        break;
      }
      case 3: set_k(&h, key, "set", mix_rand(2) ? 0 : 2); break;
      case 4: delete_k(&h, key); break;
      case 5: if (mix_rand(8) == 0) clear_h(&h); break;
      case 6: fake_now += 0.5; ac_cache_expire(h.c, 0); break;
      case 7: case 8: ac_sched_step(h.s); break;
      case 9: if (mix_nloads) mix_finish_load(&h, (int)mix_rand((unsigned)mix_nloads)); break;
      case 10: if (mix_nbatches) mix_finish_batch(&h, (int)mix_rand((unsigned)mix_nbatches)); break;
      case 11: if (mix_rand(4) == 0) ac_sched_once(h.s); break;
    }
  }
  ASSERT_CMP_INT(mix_nw, >, 100);
  ac_cache_stats_t st = stats_of(&h);
  ASSERT_CMP_UINT(st.load_timeouts, >, 0);
  ASSERT_CMP_UINT(st.batches, >, 0);
  ASSERT_CMP_UINT(st.evictions, >, 0);
  /* Freed with loads and batches in flight; their owners finish later. */
  free_cache(&h);
  while (mix_nloads) mix_finish_load(&h, mix_nloads - 1);
  while (mix_nbatches) mix_finish_batch(&h, mix_nbatches - 1);
  ASSERT_EQ_INT(ac_sched_run(h.s), 0);
  for (int i = 0; i < mix_nw; i++)
    if (mix_w[i].calls != 1) FAIL("waiter %d called %d times", i, mix_w[i].calls);
  host_close(&h);
}
