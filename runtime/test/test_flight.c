/* Tests of single-flight (ac_flight.h): one open flight per key, waiters
 * called once each in join order, removal before the callbacks, cancel on
 * free, growth of the table, and allocation failures. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ac_alloc.h"
#include "ac_error.h"
#include "ac_flight.h"
#include "hash.h"
#include "test_harness.h"
#include "test_alloc.h"

/* ---- a log of waiter callbacks ----------------------------------------- */

typedef struct {
  int id;      /* the waiter's position in the test, written to the log */
  int calls;   /* how many times its callback ran */
  int status;  /* the status of the last call */
  ac_flight_t *flight;
  void *data;  /* ac_flight_data seen inside the callback */
} waiter_rec;

enum { LOG_MAX = 1 << 14 };
static int call_log[LOG_MAX];
static int ncalls;

static void log_call(ac_waiter_t *w, ac_flight_t *f, int status) {
  waiter_rec *rec = w->data;
  rec->calls++;
  rec->status = status;
  rec->flight = f;
  rec->data = ac_flight_data(f);
  if (ncalls == LOG_MAX) FAIL("too many waiter calls");
  call_log[ncalls++] = rec->id;
}

static void join(ac_flight_t *f, ac_waiter_t *w, waiter_rec *rec, int id) {
  memset(rec, 0, sizeof *rec);
  rec->id = id;
  rec->status = 12345;
  w->cb = log_call;
  w->data = rec;
  ac_flight_join(f, w);
}

static ac_flight_t *start_s(ac_flights_t *fs, const char *key, void *data) {
  ac_flight_t *f = NULL;
  ASSERT_EQ_INT(ac_flights_start(fs, 0, key, strlen(key), data, &f), 0);
  ASSERT_NOT_NULL(f);
  return f;
}

static ac_flight_t *find_s(ac_flights_t *fs, const char *key) {
  return ac_flights_find(fs, 0, key, strlen(key));
}

/* ======================================================================== */

TEST(start_find_join_finish) {
  ac_flights_t *fs = ac_flights_new();
  ASSERT_NOT_NULL(fs);
  ASSERT_EQ_UINT(ac_flights_count(fs), 0);
  ASSERT_NULL(find_s(fs, "k"));

  int data = 42;
  ac_flight_t *f = start_s(fs, "k", &data);
  ASSERT_EQ_PTR(find_s(fs, "k"), f);
  ASSERT_NULL(find_s(fs, "K"));
  ASSERT_NULL(find_s(fs, "k2"));
  ASSERT_NULL(ac_flights_find(fs, 1, "k", 1)); /* another tag */
  ASSERT_EQ_UINT(ac_flights_count(fs), 1);
  ASSERT_EQ_PTR(ac_flight_data(f), &data);
  ASSERT_EQ_UINT(ac_flight_waiters(f), 0);

  ac_waiter_t w[3];
  waiter_rec rec[3];
  for (int i = 0; i < 3; i++) {
    join(f, &w[i], &rec[i], i);
    ASSERT_EQ_UINT(ac_flight_waiters(f), i + 1);
  }
  ASSERT_EQ_INT(ncalls, 0); /* joining runs nothing */

  ac_flight_finish(f, 0);
  ASSERT_EQ_INT(ncalls, 3);
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ_INT(call_log[i], i);
    ASSERT_EQ_INT(rec[i].calls, 1);
    ASSERT_EQ_INT(rec[i].status, 0);
    ASSERT_EQ_PTR(rec[i].flight, f);
    ASSERT_EQ_PTR(rec[i].data, &data);
  }
  ASSERT_NULL(find_s(fs, "k"));
  ASSERT_EQ_UINT(ac_flights_count(fs), 0);
  ac_flights_free(fs);
  ASSERT_EQ_INT(ncalls, 3); /* nothing left to cancel */
}

TEST(second_start_for_a_key_is_busy) {
  ac_flights_t *fs = ac_flights_new();
  ASSERT_NOT_NULL(fs);
  ac_flight_t *f = start_s(fs, "k", NULL);
  ac_flight_t *out = (ac_flight_t *)&out; /* a sentinel */
  ASSERT_EQ_INT(ac_flights_start(fs, 0, "k", 1, NULL, &out), AC_EBUSY);
  ASSERT_EQ_PTR(out, (ac_flight_t *)&out); /* untouched */
  ASSERT_EQ_UINT(ac_flights_count(fs), 1);
  ASSERT_EQ_PTR(find_s(fs, "k"), f);

  /* Other tags, longer keys and the empty key are other flights. */
  ac_flight_t *t1 = NULL, *kk = NULL, *empty = NULL, *zero = NULL;
  ASSERT_EQ_INT(ac_flights_start(fs, 1, "k", 1, NULL, &t1), 0);
  ASSERT_EQ_INT(ac_flights_start(fs, 0, "kk", 2, NULL, &kk), 0);
  ASSERT_EQ_INT(ac_flights_start(fs, 0, "", 0, NULL, &empty), 0);
  ASSERT_EQ_INT(ac_flights_start(fs, 0, "k\0", 2, NULL, &zero), 0);
  ASSERT_EQ_INT(ac_flights_start(fs, 1, "k", 1, NULL, &out), AC_EBUSY);
  ASSERT_EQ_INT(ac_flights_start(fs, 0, "", 0, NULL, &out), AC_EBUSY);
  ASSERT_EQ_INT(ac_flights_start(fs, 0, "k\0", 2, NULL, &out), AC_EBUSY);
  ASSERT_EQ_UINT(ac_flights_count(fs), 5);
  ASSERT_EQ_PTR(ac_flights_find(fs, 0, "k\0", 2), zero);
  ASSERT_EQ_PTR(ac_flights_find(fs, 0, "", 0), empty);

  /* Once finished the key is free again. */
  ac_flight_finish(f, 0);
  ac_flight_t *again = NULL;
  ASSERT_EQ_INT(ac_flights_start(fs, 0, "k", 1, NULL, &again), 0);
  ASSERT_EQ_PTR(find_s(fs, "k"), again);
  ac_flights_free(fs);
}

TEST(finish_passes_the_status_to_each_waiter_once_in_order) {
  static const int statuses[] = {0, AC_ELOAD, AC_ETIMEDOUT, AC_ENOMEM};
  ac_flights_t *fs = ac_flights_new();
  ASSERT_NOT_NULL(fs);
  for (int s = 0; s < 4; s++) {
    ncalls = 0;
    ac_flight_t *f = start_s(fs, "k", NULL);
    enum { N = 50 };
    ac_waiter_t w[N];
    waiter_rec rec[N];
    for (int i = 0; i < N; i++) join(f, &w[i], &rec[i], 1000 * s + i);
    ac_flight_finish(f, statuses[s]);
    ASSERT_EQ_INT(ncalls, N);
    for (int i = 0; i < N; i++) {
      ASSERT_EQ_INT(call_log[i], 1000 * s + i);
      ASSERT_EQ_INT(rec[i].calls, 1);
      ASSERT_EQ_INT(rec[i].status, statuses[s]);
    }
    ASSERT_NULL(find_s(fs, "k"));
  }
  ac_flights_free(fs);
}

TEST(finish_without_waiters) {
  ac_flights_t *fs = ac_flights_new();
  ASSERT_NOT_NULL(fs);
  ac_flight_t *f = start_s(fs, "lonely", NULL);
  ac_flight_finish(f, AC_ELOAD);
  ASSERT_EQ_UINT(ac_flights_count(fs), 0);
  ASSERT_NULL(find_s(fs, "lonely"));
  ASSERT_EQ_INT(ncalls, 0);
  ac_flights_free(fs);
}

/* Inside a waiter callback the flight is already gone from the table: a
 * new load of the same key may start there, and the flight's key and data
 * are still readable. */
typedef struct {
  ac_flights_t *fs;
  int found_self;     /* find returned a flight during the callback */
  int start_rc;
  ac_flight_t *restarted;
  char key_seen[16];
  size_t key_len;
  ac_waiter_t next_w;
  waiter_rec next_rec;
} restart_ctx;

static void restart_in_callback(ac_waiter_t *w, ac_flight_t *f, int status) {
  restart_ctx *c = w->data;
  (void)status;
  c->found_self = ac_flights_find(c->fs, 0, "k", 1) != NULL;
  const char *k = ac_flight_key(f, NULL, &c->key_len);
  if (c->key_len < sizeof c->key_seen) memcpy(c->key_seen, k, c->key_len);
  c->start_rc = ac_flights_start(c->fs, 0, "k", 1, c, &c->restarted);
  if (c->start_rc == 0) join(c->restarted, &c->next_w, &c->next_rec, 99);
}

TEST(waiter_can_start_a_new_flight_for_the_key) {
  ac_flights_t *fs = ac_flights_new();
  ASSERT_NOT_NULL(fs);
  ac_flight_t *f = start_s(fs, "k", NULL);
  restart_ctx c;
  memset(&c, 0, sizeof c);
  c.fs = fs;
  c.start_rc = 12345;
  ac_waiter_t w1, w3;
  waiter_rec r1, r3;
  ac_waiter_t w2 = {NULL, restart_in_callback, &c};
  join(f, &w1, &r1, 1);
  ac_flight_join(f, &w2);
  join(f, &w3, &r3, 3);
  ac_flight_finish(f, AC_ELOAD);

  ASSERT_EQ_INT(c.found_self, 0);
  ASSERT_EQ_INT(c.start_rc, 0);
  ASSERT_NOT_NULL(c.restarted);
  ASSERT_EQ_UINT(c.key_len, 1);
  ASSERT_EQ_MEM(c.key_seen, "k", 1);
  /* The waiters after the one that restarted still ran, once each. */
  ASSERT_EQ_INT(r1.calls, 1);
  ASSERT_EQ_INT(r3.calls, 1);
  ASSERT_EQ_INT(r3.status, AC_ELOAD);
  ASSERT_EQ_INT(ncalls, 2);
  /* The new flight is open, with its own waiter not yet called. */
  ASSERT_EQ_UINT(ac_flights_count(fs), 1);
  ASSERT_EQ_PTR(find_s(fs, "k"), c.restarted);
  ASSERT_EQ_PTR(ac_flight_data(c.restarted), &c);
  ASSERT_EQ_UINT(ac_flight_waiters(c.restarted), 1);
  ASSERT_EQ_INT(c.next_rec.calls, 0);
  ac_flight_finish(c.restarted, 0);
  ASSERT_EQ_INT(c.next_rec.calls, 1);
  ASSERT_EQ_INT(c.next_rec.status, 0);
  ASSERT_EQ_UINT(ac_flights_count(fs), 0);
  ac_flights_free(fs);
}

TEST(free_cancels_open_flights) {
  ac_flights_t *fs = ac_flights_new();
  ASSERT_NOT_NULL(fs);
  enum { F = 40, W = 3 };
  ac_waiter_t w[F][W];
  waiter_rec rec[F][W];
  char key[16];
  for (int i = 0; i < F; i++) {
    snprintf(key, sizeof key, "f%d", i);
    ac_flight_t *f = start_s(fs, key, NULL);
    for (int j = 0; j < W; j++) join(f, &w[i][j], &rec[i][j], i * W + j);
  }
  /* One finished normally first: its waiters must not run again. */
  ac_flight_finish(find_s(fs, "f7"), 0);
  ASSERT_EQ_INT(ncalls, W);
  ac_flights_free(fs);
  ASSERT_EQ_INT(ncalls, F * W);
  for (int i = 0; i < F; i++)
    for (int j = 0; j < W; j++) {
      ASSERT_EQ_INT(rec[i][j].calls, 1);
      ASSERT_EQ_INT(rec[i][j].status, i == 7 ? 0 : AC_ECANCELED);
    }
  /* Within a flight the join order holds on cancel too. */
  for (int n = 0; n + 1 < ncalls; n++)
    if (call_log[n] / W == call_log[n + 1] / W)
      ASSERT_CMP_INT(call_log[n], <, call_log[n + 1]);
}

TEST(flights_free_null_is_noop) {
  ac_flights_free(NULL);
  ac_flights_t *fs = ac_flights_new();
  ASSERT_NOT_NULL(fs);
  ac_flights_free(fs);
}

/* A waiter cancelled by ac_flights_free starts a new load (a retry).  The
 * new flight was accepted, so it must be cancelled as well (its waiter
 * called once with AC_ECANCELED) and nothing may leak, wherever the new
 * key lands in the table. */
typedef struct {
  ac_flights_t *fs;
  const char *retry_key;
  int start_rc;
  ac_waiter_t w;
  waiter_rec rec;
} retry_ctx;

static void retry_on_cancel(ac_waiter_t *w, ac_flight_t *f, int status) {
  retry_ctx *c = w->data;
  (void)f;
  if (status != AC_ECANCELED || c->retry_key == NULL) return;
  ac_flight_t *nf = NULL;
  c->start_rc = ac_flights_start(c->fs, 0, c->retry_key,
                                 strlen(c->retry_key), NULL, &nf);
  if (c->start_rc == 0) join(nf, &c->w, &c->rec, 7);
  c->retry_key = NULL; /* once */
}

TEST(free_cancels_flights_started_while_freeing) {
  /* Fixed seed: find a pair of keys where the retried key hashes to a
   * bucket before the original's, and one where it hashes after. */
  ac__hash_set_seed(0x243F6A8885A308D3ull, 0x13198A2E03707344ull);
  char orig[16] = "orig", before[16] = "", after[16] = "";
  uint64_t ob = ac__hash(0, orig, strlen(orig)) & 15;
  if (ob == 0 || ob == 15)
    FAIL("pick another seed: orig is in bucket %u", (unsigned)ob);
  for (int i = 0; before[0] == 0 || after[0] == 0; i++) {
    char k[16];
    snprintf(k, sizeof k, "retry%d", i);
    uint64_t b = ac__hash(0, k, strlen(k)) & 15;
    if (b < ob && before[0] == 0) memcpy(before, k, sizeof k);
    if (b > ob && after[0] == 0) memcpy(after, k, sizeof k);
    if (i > 100000) FAIL("no keys found for bucket %u", (unsigned)ob);
  }

  const char *retry[2] = {after, before};
  for (int t = 0; t < 2; t++) {
    ac_flights_t *fs = ac_flights_new();
    ASSERT_NOT_NULL(fs);
    retry_ctx c;
    memset(&c, 0, sizeof c);
    c.fs = fs;
    c.retry_key = retry[t];
    c.start_rc = 12345;
    c.rec.status = 12345;
    ac_flight_t *f = start_s(fs, orig, NULL);
    ac_waiter_t w = {NULL, retry_on_cancel, &c};
    ac_flight_join(f, &w);
    ac_flights_free(fs);
    /* Either the retry was refused (then no callback is owed) or its
     * waiter was cancelled exactly once. */
    if (c.start_rc == 0) {
      if (c.rec.calls != 1)
        FAIL("retry key \"%s\" (bucket %u, original in bucket %u): its "
             "flight was started during ac_flights_free and its waiter ran "
             "%d times (expected once, with AC_ECANCELED)",
             retry[t], (unsigned)(ac__hash(0, retry[t], strlen(retry[t])) & 15),
             (unsigned)ob, c.rec.calls);
      ASSERT_EQ_INT(c.rec.status, AC_ECANCELED);
    } else {
      ASSERT_CMP_INT(c.start_rc, <, 0);
      ASSERT_EQ_INT(c.rec.calls, 0);
    }
  }
}

TEST(many_flights_grow_the_table) {
  ac_flights_t *fs = ac_flights_new();
  ASSERT_NOT_NULL(fs);
  enum { N = 5000 };
  ac_flight_t **f = malloc(N * sizeof *f);
  ac_waiter_t *w = malloc(N * sizeof *w);
  waiter_rec *rec = malloc(N * sizeof *rec);
  ASSERT_TRUE(f && w && rec);
  char key[16];
  for (int i = 0; i < N; i++) {
    snprintf(key, sizeof key, "flight-%d", i);
    f[i] = start_s(fs, key, &f[i]);
    join(f[i], &w[i], &rec[i], i);
    ASSERT_EQ_UINT(ac_flights_count(fs), i + 1);
    /* Every earlier flight is still found after each doubling. */
    if ((i & (i + 1)) == 0 || i == N - 1)
      for (int j = 0; j <= i; j++) {
        snprintf(key, sizeof key, "flight-%d", j);
        ASSERT_EQ_PTR(find_s(fs, key), f[j]);
      }
  }
  /* Finish the odd ones; the even ones stay findable. */
  for (int i = 1; i < N; i += 2) ac_flight_finish(f[i], i);
  ASSERT_EQ_UINT(ac_flights_count(fs), N / 2);
  for (int i = 0; i < N; i++) {
    snprintf(key, sizeof key, "flight-%d", i);
    ASSERT_EQ_PTR(find_s(fs, key), i % 2 ? NULL : f[i]);
    if (i % 2) {
      ASSERT_EQ_INT(rec[i].calls, 1);
      ASSERT_EQ_INT(rec[i].status, i);
      ASSERT_EQ_PTR(rec[i].data, &f[i]);
    } else {
      ASSERT_EQ_INT(rec[i].calls, 0);
    }
  }
  ac_flights_free(fs);
  for (int i = 0; i < N; i++) {
    ASSERT_EQ_INT(rec[i].calls, 1);
    if (i % 2 == 0) ASSERT_EQ_INT(rec[i].status, AC_ECANCELED);
  }
  free(f);
  free(w);
  free(rec);
}

TEST(colliding_keys_are_told_apart) {
  ac__hash_set_seed(0x0123456789ABCDEFull, 0xFEDCBA9876543210ull);
  enum { N = 40 };
  char keys[N][24];
  ac_flight_t *f[N];
  uint64_t target = 0;
  int n = 0;
  for (uint32_t i = 0; n < N; i++) {
    snprintf(keys[n], sizeof keys[n], "col%u", i);
    uint64_t h = ac__hash(0, keys[n], strlen(keys[n])) & 1023;
    if (n == 0) target = h;
    if (h == target) n++;
  }
  ac_flights_t *fs = ac_flights_new();
  ASSERT_NOT_NULL(fs);
  for (int i = 0; i < N; i++) f[i] = start_s(fs, keys[i], NULL);
  for (int i = 0; i < N; i++) ASSERT_EQ_PTR(find_s(fs, keys[i]), f[i]);
  ac_flight_finish(f[N / 2], 0);
  ac_flight_finish(f[0], 0);
  ac_flight_finish(f[N - 1], 0);
  for (int i = 0; i < N; i++) {
    int gone = i == N / 2 || i == 0 || i == N - 1;
    ASSERT_EQ_PTR(find_s(fs, keys[i]), gone ? NULL : f[i]);
  }
  ASSERT_EQ_UINT(ac_flights_count(fs), N - 3);
  ac_flights_free(fs);
}

TEST(flight_key_is_a_copy) {
  ac_flights_t *fs = ac_flights_new();
  ASSERT_NOT_NULL(fs);
  char key[300];
  for (size_t i = 0; i < sizeof key; i++) key[i] = (char)(i % 7); /* 0s too */
  char copy[300];
  memcpy(copy, key, sizeof key);
  ac_flight_t *f = NULL;
  ASSERT_EQ_INT(ac_flights_start(fs, 200, key, sizeof key, NULL, &f), 0);
  memset(key, 'x', sizeof key); /* the caller's buffer may change */
  int tag = -1;
  size_t len = 0;
  const char *k = ac_flight_key(f, &tag, &len);
  ASSERT_EQ_INT(tag, 200);
  ASSERT_EQ_UINT(len, sizeof copy);
  ASSERT_EQ_MEM(k, copy, len);
  ASSERT_NOT_NULL(ac_flight_key(f, NULL, NULL));
  ASSERT_EQ_PTR(ac_flights_find(fs, 200, copy, sizeof copy), f);
  ASSERT_NULL(ac_flights_find(fs, 200, key, sizeof key));

  ac_flight_t *e = NULL;
  ASSERT_EQ_INT(ac_flights_start(fs, 0, "", 0, NULL, &e), 0);
  len = 99;
  ASSERT_NOT_NULL(ac_flight_key(e, &tag, &len));
  ASSERT_EQ_UINT(len, 0);
  ASSERT_EQ_INT(tag, 0);
  ac_flights_free(fs);
}

TEST(allocation_failures) {
  install_counting_allocator();
  /* ac_flights_new: the table, then its buckets. */
  for (long n = 1; n <= 2; n++) {
    fail_nth(n);
    ASSERT_NULL(ac_flights_new());
    ASSERT_CMP_INT(alloc_calls, >=, n);
    ASSERT_EQ_INT(live_blocks, 0);
  }
  fail_nth(0);
  ac_flights_t *fs = ac_flights_new();
  ASSERT_NOT_NULL(fs);

  /* A start that cannot allocate its flight changes nothing. */
  ac_flight_t *a = start_s(fs, "a", NULL);
  fail_nth(1);
  ac_flight_t *out = NULL;
  ASSERT_EQ_INT(ac_flights_start(fs, 0, "b", 1, NULL, &out), AC_ENOMEM);
  ASSERT_NULL(out);
  ASSERT_EQ_UINT(ac_flights_count(fs), 1);
  ASSERT_NULL(find_s(fs, "b"));
  ASSERT_EQ_PTR(find_s(fs, "a"), a);
  fail_nth(0);
  ac_flight_t *b = start_s(fs, "b", NULL);

  /* The buckets failing to double is harmless: flight 17 goes in, chains
   * get longer, everything is found. */
  char key[16];
  for (int i = 2; i < 16; i++) {
    snprintf(key, sizeof key, "k%d", i);
    start_s(fs, key, NULL);
  }
  ASSERT_EQ_UINT(ac_flights_count(fs), 16);
  fail_nth(2); /* the flight (1) succeeds, the bigger bucket array (2) fails */
  ac_flight_t *k16 = start_s(fs, "k16", NULL);
  ASSERT_EQ_INT(alloc_calls, 2);
  fail_nth(0);
  ASSERT_EQ_UINT(ac_flights_count(fs), 17);
  ASSERT_EQ_PTR(find_s(fs, "k16"), k16);
  ASSERT_EQ_PTR(find_s(fs, "a"), a);
  ASSERT_EQ_PTR(find_s(fs, "b"), b);
  for (int i = 2; i < 16; i++) {
    snprintf(key, sizeof key, "k%d", i);
    ASSERT_NOT_NULL(find_s(fs, key));
  }
  ac_flights_free(fs);
  ASSERT_EQ_INT(live_blocks, 0);
  restore_allocator();
}

TEST(detached_flight_keeps_its_waiters_and_frees_the_key) {
  ac_flights_t *fs = ac_flights_new();
  ASSERT_NOT_NULL(fs);
  ac_flight_t *old = start_s(fs, "k", NULL);
  ac_waiter_t w[3];
  waiter_rec rec[3];
  join(old, &w[0], &rec[0], 0);
  ac_flight_detach(old);
  ac_flight_detach(old); /* twice is harmless */
  ASSERT_NULL(find_s(fs, "k"));
  ASSERT_EQ_UINT(ac_flights_count(fs), 0);
  /* A new flight for the key may start while the old one is still open. */
  ac_flight_t *fresh = start_s(fs, "k", NULL);
  ASSERT_EQ_PTR(find_s(fs, "k"), fresh);
  join(fresh, &w[1], &rec[1], 1);
  join(old, &w[2], &rec[2], 2); /* joining a detached flight still works */
  ac_flight_finish(old, AC_ELOAD);
  ASSERT_EQ_INT(rec[0].calls, 1);
  ASSERT_EQ_INT(rec[2].calls, 1);
  ASSERT_EQ_INT(rec[0].status, AC_ELOAD);
  ASSERT_EQ_INT(rec[1].calls, 0);
  ASSERT_EQ_PTR(find_s(fs, "k"), fresh); /* finishing the old one left it */
  ac_flight_finish(fresh, 0);
  ASSERT_EQ_INT(rec[1].calls, 1);
  ac_flights_free(fs);
}

TEST(free_cancels_detached_flights) {
  ac_flights_t *fs = ac_flights_new();
  ASSERT_NOT_NULL(fs);
  ac_waiter_t w[2];
  waiter_rec rec[2];
  ac_flight_t *a = start_s(fs, "a", NULL);
  ac_flight_t *b = start_s(fs, "b", NULL);
  join(a, &w[0], &rec[0], 0);
  join(b, &w[1], &rec[1], 1);
  ac_flight_detach(a);
  ac_flight_detach(b);
  ac_flights_free(fs);
  ASSERT_EQ_INT(rec[0].calls, 1);
  ASSERT_EQ_INT(rec[1].calls, 1);
  ASSERT_EQ_INT(rec[0].status, AC_ECANCELED);
  ASSERT_EQ_INT(rec[1].status, AC_ECANCELED);
}
