/* A host of the cache for the C tests (test_cache.c,
 * test_backend_contract.c): what a C program embedding ac_cache_t keeps,
 * plus the bookkeeping the tests assert on.
 *
 *   - a scheduler with its own libuv loop, and one cache on it;
 *   - values: C strings by slot (values[slot]), strdup'd by the test and
 *     freed in ops.removed, so a removal the cache forgets to report is a
 *     leak the sanitizers see, and one it reports twice a double free
 *     (host_close also checks that no value is left);
 *   - load data (tload): the loader's result for waiters of a load whose
 *     value was not stored (stale, timed out): slot 0 tells them nothing;
 *   - waiter records (wrec): how often, with what status, in which order
 *     each waiter's callback ran, and the value it saw;
 *   - flags set around the test's cache calls and around each pass of the
 *     ready queue, so a callback that runs inside a cache call, or
 *     dispatch outside a pass, fails the test;
 *   - a fake TTL clock (fake_now), moved by the tests.
 *
 * Include it after test_harness.h, once, from the test file. */
#ifndef AC_TEST_HOST_H
#define AC_TEST_HOST_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ac_cache.h"
#include "ac_error.h"
#include "ac_sched.h"
#include "test_harness.h"

enum { HOST_MAX_SLOTS = 64, HOST_MAX_DISPATCH = 16 };

static double fake_now = 1000.0;
__attribute__((unused)) static double fake_clock(void) { return fake_now; }

/* ac_load_data of every load. */
typedef struct {
  char result[48]; /* what the loader produced, for waiters (slot 0) */
  int finished;    /* the test finished it */
} tload;

typedef struct host host;

struct host {
  ac_sched_t *s;
  ac_cache_t *c;
  char *values[HOST_MAX_SLOTS + 1];
  long live_values;                 /* strdup'd and not freed yet */
  int removed[AC_REMOVED_CLEARED + 1]; /* ops.removed calls by reason */
  int removed_total;
  char last_removed[48];            /* the key of the last removal */
  int allow_empty_removed;          /* a removed slot may hold no value */
  int in_cache_call;                /* the test is inside a cache call */
  int in_pass;                      /* a pass of the ready queue runs */
  /* ops.dispatch: the default finishes every key with "batch:<key>". */
  void (*on_dispatch)(host *h, ac_batch_t *b);
  int dispatches, closed_dispatches;
  size_t dispatch_sizes[HOST_MAX_DISPATCH];
  ac_batch_t *last_batch;
  /* ops.load (a backend is set): set by the backend tests. */
  void (*on_load)(host *h, ac_load_t *ld, int found);
  int loads_found, loads_missed;
  /* ops.encode / ops.decode (a backend is set). */
  int encodes, decodes, decode_failures;
};

/* ---- values by slot ---------------------------------------------------- */

__attribute__((unused)) static void host_put(host *h, uint32_t slot,
                                             const char *value) {
  ASSERT_CMP_UINT(slot, >=, 1);
  ASSERT_CMP_UINT(slot, <=, HOST_MAX_SLOTS);
  if (h->values[slot] != NULL) {
    free(h->values[slot]);
    h->live_values--;
  }
  h->values[slot] = strdup(value);
  ASSERT_NOT_NULL(h->values[slot]);
  h->live_values++;
}

__attribute__((unused)) static const char *host_value(host *h, uint32_t slot) {
  return slot >= 1 && slot <= HOST_MAX_SLOTS ? h->values[slot] : NULL;
}

static void host_removed(void *ud, uint32_t slot, int tag, const char *key,
                         size_t len, ac_removed_t why) {
  host *h = ud;
  (void)tag;
  ASSERT_CMP_UINT(slot, >=, 1);
  ASSERT_CMP_UINT(slot, <=, HOST_MAX_SLOTS);
  ASSERT_CMP_INT(why, >=, AC_REMOVED_EVICTED);
  ASSERT_CMP_INT(why, <=, AC_REMOVED_CLEARED);
  ASSERT_TRUE(why >= AC_REMOVED_EVICTED && why <= AC_REMOVED_CLEARED);
  h->removed[why]++;
  h->removed_total++;
  size_t n = len < sizeof h->last_removed - 1 ? len : sizeof h->last_removed - 1;
  memcpy(h->last_removed, key, n);
  h->last_removed[n] = '\0';
  if (h->values[slot] == NULL) {
    if (!h->allow_empty_removed) FAIL("slot %u removed without a value", slot);
    return;
  }
  free(h->values[slot]);
  h->values[slot] = NULL;
  h->live_values--;
}

/* ---- keys ------------------------------------------------------------------ */

#define K(s) 0, (s), strlen(s) /* a C string as a tag-0 key */

__attribute__((unused)) static void key_string(const ac_load_t *ld, char *out,
                                               size_t cap) {
  size_t len;
  int tag;
  const char *k = ac_load_key(ld, &tag, &len);
  ASSERT_NOT_NULL(k);
  ASSERT_EQ_INT(tag, 0);
  ASSERT_CMP_UINT(len, <, cap);
  memcpy(out, k, len);
  out[len] = '\0';
}

/* ---- waiters -------------------------------------------------------------- */

typedef struct wrec wrec;
struct wrec {
  ac_load_waiter_t w;
  host *h;
  int id;
  int calls, status, order;
  uint32_t slot;
  ac_load_t *load;     /* the ld its callback got */
  char value[48];      /* values[slot], or the load's result when slot is 0 */
  void (*then)(wrec *r, ac_load_t *ld, int status); /* runs in the callback */
};

static int wrec_seq; /* callbacks so far, over every waiter */

static void wrec_cb(ac_load_waiter_t *w, ac_load_t *ld, int status) {
  wrec *r = w->data;
  ASSERT_FALSE(r->h->in_cache_call && status != AC_ECANCELED);
  r->calls++;
  r->status = status;
  r->order = ++wrec_seq;
  r->load = ld;
  r->slot = ac_load_slot(ld);
  r->value[0] = '\0';
  const char *v = r->slot ? host_value(r->h, r->slot) : NULL;
  if (v == NULL && status == 0) v = ((tload *)ac_load_data(ld))->result;
  if (v != NULL) {
    strncpy(r->value, v, sizeof r->value - 1);
    r->value[sizeof r->value - 1] = '\0';
  }
  if (r->then) r->then(r, ld, status);
}

__attribute__((unused)) static void wait_on(host *h, ac_load_t *ld, wrec *r,
                                            int id) {
  memset(r, 0, sizeof *r);
  r->h = h;
  r->id = id;
  r->status = 12345;
  r->w.cb = wrec_cb;
  r->w.data = r;
  uint32_t before = ac_load_waiters(ld);
  ac_load_join(ld, &r->w);
  ASSERT_EQ_UINT(ac_load_waiters(ld), before + 1);
  ASSERT_EQ_INT(r->calls, 0); /* never in place */
}

/* ---- loads -------------------------------------------------------------- */

/* Settles a load the way a loader does: stores value (when the cache
 * takes it), leaves it in the load data for waiters, wakes them.  Returns
 * the slot (0: not stored). */
__attribute__((unused)) static uint32_t finish_with(host *h, ac_load_t *ld,
                                                    const char *value) {
  tload *d = ac_load_data(ld);
  ASSERT_FALSE(d->finished);
  strncpy(d->result, value, sizeof d->result - 1);
  int64_t slot = ac_load_store(ld);
  ASSERT_CMP_INT(slot, >=, 0);
  if (slot > 0) host_put(h, (uint32_t)slot, value);
  d->finished = 1;
  ac_load_finish(ld, 0, (uint32_t)slot);
  return (uint32_t)slot;
}

__attribute__((unused)) static void fail_load(ac_load_t *ld, int status) {
  tload *d = ac_load_data(ld);
  ASSERT_FALSE(d->finished);
  d->finished = 1;
  ac_load_finish(ld, status, 0);
}

/* ---- callbacks -------------------------------------------------------------- */

static void host_default_dispatch(host *h, ac_batch_t *b) {
  for (size_t i = 0; i < ac_batch_size(b); i++) {
    ac_load_t *ld = ac_batch_load(b, i);
    if (ac_batch_closed(b)) {
      fail_load(ld, AC_ECANCELED);
      continue;
    }
    char key[40], value[48];
    key_string(ld, key, sizeof key);
    snprintf(value, sizeof value, "batch:%s", key);
    finish_with(h, ld, value);
  }
  ac_batch_done(b);
}

static void host_dispatch(void *ud, ac_batch_t *b) {
  host *h = ud;
  ASSERT_EQ_PTR(ac_batch_cache(b), h->c);
  if (ac_batch_closed(b)) {
    h->closed_dispatches++;
  } else {
    /* Never inside a cache call; always from a pass of the ready queue. */
    ASSERT_EQ_INT(h->in_cache_call, 0);
    ASSERT_EQ_INT(h->in_pass, 1);
  }
  ASSERT_CMP_UINT(ac_batch_size(b), >, 0); /* an empty batch is not a batch */
  if (h->dispatches < HOST_MAX_DISPATCH)
    h->dispatch_sizes[h->dispatches] = ac_batch_size(b);
  h->dispatches++;
  h->last_batch = b;
  if (h->on_dispatch) h->on_dispatch(h, b);
  else host_default_dispatch(h, b);
}

static void host_load(void *ud, ac_load_t *ld, int found) {
  host *h = ud;
  ASSERT_EQ_INT(h->in_cache_call, 0);
  if (found) h->loads_found++;
  else h->loads_missed++;
  if (h->on_load == NULL) FAIL("ops.load called without an on_load hook");
  h->on_load(h, ld, found);
}

static void host_pass(ac_sched_t *s, void *ud) {
  host *h = ud;
  h->in_pass++;
  ac_sched_run_ready(s);
  h->in_pass--;
}

/* ---- life cycle -------------------------------------------------------------- */

/* Options every test starts from: 16 entries, no TTL, no timeout, the
 * fake clock, this host's callbacks. */
__attribute__((unused)) static ac_cache_options_t host_options(host *h) {
  memset(h, 0, sizeof *h);
  int err = 12345;
  h->s = ac_sched_new(NULL, &err);
  ASSERT_NOT_NULL(h->s);
  ASSERT_EQ_INT(err, 0);
  ac_sched_set_pass(h->s, host_pass, h);
  ac_cache_options_t o;
  memset(&o, 0, sizeof o);
  o.maxsize = 16;
  o.load_data_size = sizeof(tload);
  o.sched = h->s;
  o.ops.removed = host_removed;
  o.ops.dispatch = host_dispatch;
  o.ops.load = host_load; /* called only with a backend */
  o.ud = h;
  o.clock = fake_clock;
  return o;
}

__attribute__((unused)) static void host_start(host *h,
                                               const ac_cache_options_t *o) {
  int err = 12345;
  h->c = ac_cache_new(o, &err);
  ASSERT_NOT_NULL(h->c);
  ASSERT_EQ_INT(err, 0);
}

/* A host with the default options. */
__attribute__((unused)) static void host_open(host *h) {
  ac_cache_options_t o = host_options(h);
  host_start(h, &o);
}

__attribute__((unused)) static ac_cache_stats_t stats_of(host *h) {
  ac_cache_stats_t st;
  memset(&st, 0xff, sizeof st);
  ac_cache_stats(h->c, &st);
  return st;
}

/* Runs the loop, one blocking pass at a time, until cond holds. */
#define RUN_UNTIL(h, cond)                                                    \
  do {                                                                        \
    int test_passes_ = 0;                                                     \
    while (!(cond)) {                                                         \
      if (++test_passes_ > 100000) FAIL("loop never reached: %s", #cond);     \
      ac_sched_once((h)->s);                                                  \
    }                                                                         \
  } while (0)

/* ---- the test's cache calls ------------------------------------------------
 * Each runs with in_cache_call set: ops.dispatch and ops.load must never
 * run inside one, waiters only inside ac_cache_free (with AC_ECANCELED). */

__attribute__((unused)) static int get_k(host *h, const char *key,
                                         ac_lookup_t *r) {
  h->in_cache_call++;
  int rc = ac_cache_get(h->c, K(key), r);
  h->in_cache_call--;
  return rc;
}

/* Opens and begins a load of a missing key (no backend: AC_LEAD). */
__attribute__((unused)) static ac_load_t *lead_k(host *h, const char *key,
                                                 double ttl) {
  ac_lookup_t r;
  ASSERT_EQ_INT(get_k(h, key, &r), AC_MISS);
  ac_load_t *ld = NULL;
  h->in_cache_call++;
  ASSERT_EQ_INT(ac_cache_lead(h->c, K(key), ttl, &ld), 0);
  ASSERT_NOT_NULL(ld);
  ASSERT_EQ_INT(ac_load_begin(ld), AC_LEAD);
  h->in_cache_call--;
  ASSERT_TRUE(ac_load_open(ld));
  ASSERT_NULL(ac_load_batch(ld));
  ASSERT_EQ_PTR(ac_load_cache(ld), h->c);
  return ld;
}

__attribute__((unused)) static int batch_k(host *h, const void *group,
                                           const char *key, ac_load_t **out) {
  h->in_cache_call++;
  int rc = ac_cache_batch(h->c, group, K(key), 0, out);
  h->in_cache_call--;
  return rc;
}

/* ac_cache_set, the value put in place, ac_cache_written.  Returns the
 * slot. */
__attribute__((unused)) static uint32_t set_k(host *h, const char *key,
                                              const char *value, double ttl) {
  h->in_cache_call++;
  int64_t slot = ac_cache_set(h->c, K(key), ttl);
  ASSERT_CMP_INT(slot, >, 0);
  host_put(h, (uint32_t)slot, value);
  ac_cache_written(h->c, (uint32_t)slot);
  h->in_cache_call--;
  return (uint32_t)slot;
}

__attribute__((unused)) static int delete_k(host *h, const char *key) {
  h->in_cache_call++;
  int rc = ac_cache_delete(h->c, K(key));
  h->in_cache_call--;
  return rc;
}

__attribute__((unused)) static void clear_h(host *h) {
  h->in_cache_call++;
  ac_cache_clear(h->c);
  h->in_cache_call--;
}

/* ac_cache_free, the cache forgotten (the scheduler stays). */
__attribute__((unused)) static void free_cache(host *h) {
  h->in_cache_call++;
  ac_cache_free(h->c);
  h->in_cache_call--;
  h->c = NULL;
}

/* The value cached for a key, or NULL (a peek: counts nothing). */
__attribute__((unused)) static const char *peek_k(host *h, const char *key) {
  return host_value(h, ac_cache_peek(h->c, K(key)));
}

/* Frees the cache (when still open) and the scheduler: no value may be
 * left and every handle must have closed. */
__attribute__((unused)) static void host_close(host *h) {
  if (h->c != NULL) free_cache(h);
  for (int i = 0; i <= HOST_MAX_SLOTS; i++)
    if (h->values[i] != NULL) FAIL("slot %d still holds \"%s\"", i, h->values[i]);
  ASSERT_EQ_INT(h->live_values, 0);
  ASSERT_EQ_INT(ac_sched_free(h->s), 0);
  h->s = NULL;
}

#endif
