/* An in-memory second level (ac_backend_t) for the C tests, keeping the
 * contract of ac_backend.h strictly, with knobs to misbehave:
 *
 *   - every accepted operation completes later, never inside the call:
 *     on the next pass of the ready queue, after `delay` seconds on a
 *     libuv timer, or when the test calls tb_release (hold);
 *   - each callback runs exactly once (asserted), with AC_ECANCELED when
 *     the backend is freed first (tb_free, through ac_backend_free);
 *   - refuse: every call returns AC_EIO and its callback never runs;
 *   - get_answer: TB_STORED (what it holds), TB_MISS (AC_ENOENT always),
 *     TB_ERROR (error_code); write_status: the status of set, del, clear;
 *   - forced_ttl_left: answer a hit with this ttl_left (NaN: the real one);
 *   - counts of calls by kind, refusals, callbacks, cancellations, and the
 *     last set (key, bytes, ttl).
 *
 * Entries are byte strings with an expiry on the clock given to tb_new
 * (the tests' fake clock), so a value's remaining TTL is exact.  Writes
 * take effect when they complete, as on a server.
 *
 * Include it after test_harness.h, once, from the test file. */
#ifndef AC_TEST_BACKEND_H
#define AC_TEST_BACKEND_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ac_backend.h"
#include "ac_error.h"
#include "ac_sched.h"
#include "ac_store.h"
#include "ac_timer.h"
#include "test_harness.h"

enum { TB_GET, TB_SET, TB_DEL, TB_CLEAR, TB_KINDS };
enum { TB_STORED, TB_MISS, TB_ERROR };

typedef struct tb_entry {
  struct tb_entry *next;
  char *key, *val; /* val is NUL-terminated too, for the tests' asserts */
  size_t klen, vlen;
  double expires;  /* on the clock; +inf: never */
} tb_entry;

typedef struct test_backend test_backend;

typedef struct tb_op {
  ac_task_t task;       /* on the ready queue when queued */
  ac_timer_t *timer;    /* or waiting for `delay` */
  test_backend *b;
  struct tb_op *prev, *next;
  int kind, queued, called;
  char *key, *val;
  size_t klen, vlen;
  double ttl;
  ac_backend_get_cb get_cb;
  ac_backend_done_cb done_cb;
  void *arg;
} tb_op;

struct test_backend {
  ac_backend_t base; /* first: the cache sees this */
  ac_sched_t *s;
  ac_clock_fn clock;
  tb_entry *entries;
  tb_op *pending;   /* issued, callback not run yet (newest first) */
  int closing;
  /* knobs */
  int get_answer, error_code, write_status, refuse, hold;
  double delay, forced_ttl_left;
  /* counts */
  int calls[TB_KINDS]; /* accepted */
  int refused, callbacks, cancelled;
  char last_key[64], last_val[64];
  size_t last_klen, last_vlen;
  double last_ttl;
};

/* ---- entries ---------------------------------------------------------------- */

static tb_entry **tb_slot(test_backend *b, const char *key, size_t klen) {
  tb_entry **p = &b->entries;
  while (*p != NULL && !((*p)->klen == klen && memcmp((*p)->key, key, klen) == 0))
    p = &(*p)->next;
  return p;
}

static void tb_entry_free(tb_entry *e) {
  free(e->key);
  free(e->val);
  free(e);
}

static void tb_remove(test_backend *b, const char *key, size_t klen) {
  tb_entry **p = tb_slot(b, key, klen);
  if (*p == NULL) return;
  tb_entry *e = *p;
  *p = e->next;
  tb_entry_free(e);
}

static char *tb_dup(const char *p, size_t n) {
  char *q = malloc(n + 1);
  ASSERT_NOT_NULL(q);
  if (n) memcpy(q, p, n);
  q[n] = '\0';
  return q;
}

/* Stores bytes under a raw backend key; ttl in seconds, +inf: never. */
static void tb_store(test_backend *b, const char *key, size_t klen,
                     const char *val, size_t vlen, double ttl) {
  tb_remove(b, key, klen);
  tb_entry *e = calloc(1, sizeof *e);
  ASSERT_NOT_NULL(e);
  e->key = tb_dup(key, klen);
  e->klen = klen;
  e->val = tb_dup(val, vlen);
  e->vlen = vlen;
  e->expires = isinf(ttl) ? INFINITY : b->clock() + ttl;
  e->next = b->entries;
  b->entries = e;
}

/* The live entry for a raw key, or NULL (an expired one is dropped). */
static tb_entry *tb_find(test_backend *b, const char *key, size_t klen) {
  tb_entry **p = tb_slot(b, key, klen);
  if (*p != NULL && b->clock() >= (*p)->expires) {
    tb_remove(b, key, klen);
    return NULL;
  }
  return *p;
}

/* The cache's key for (tag, C string): the tag byte, then the bytes. */
static size_t tb_cache_key(char *out, size_t cap, int tag, const char *key) {
  size_t n = strlen(key);
  ASSERT_CMP_UINT(n + 1, <=, cap);
  out[0] = (char)tag;
  memcpy(out + 1, key, n);
  return n + 1;
}

/* Preloads a value for the cache's key (tag, key). */
__attribute__((unused)) static void tb_put(test_backend *b, int tag,
                                           const char *key, const char *val,
                                           double ttl) {
  char k[64];
  size_t n = tb_cache_key(k, sizeof k, tag, key);
  tb_store(b, k, n, val, strlen(val), ttl);
}

/* What the backend holds for the cache's key (tag, key), or NULL. */
__attribute__((unused)) static const char *tb_get(test_backend *b, int tag,
                                                  const char *key) {
  char k[64];
  size_t n = tb_cache_key(k, sizeof k, tag, key);
  tb_entry *e = tb_find(b, k, n);
  return e ? e->val : NULL;
}

__attribute__((unused)) static size_t tb_count(test_backend *b) {
  size_t n = 0;
  for (tb_entry *e = b->entries; e != NULL; e = e->next) n++;
  return n;
}

/* ---- operations --------------------------------------------------------------- */

static void tb_unlink(tb_op *op) {
  test_backend *b = op->b;
  if (op->prev) op->prev->next = op->next; else b->pending = op->next;
  if (op->next) op->next->prev = op->prev;
  op->prev = op->next = NULL;
}

static void tb_op_free(tb_op *op) {
  ac_timer_free(op->timer); /* may be its own callback: allowed */
  free(op->key);
  free(op->val);
  free(op);
}

/* Runs the op's callback, once, with status (0: do the operation). */
static void tb_complete(tb_op *op, int status) {
  test_backend *b = op->b;
  ASSERT_EQ_INT(op->called, 0);
  op->called = 1;
  tb_unlink(op);
  b->callbacks++;
  if (status == AC_ECANCELED) b->cancelled++;
  if (op->kind == TB_GET) {
    tb_entry *e = NULL;
    if (status == 0) {
      if (b->get_answer == TB_ERROR) status = b->error_code;
      else if (b->get_answer == TB_MISS) status = AC_ENOENT;
      else if ((e = tb_find(b, op->key, op->klen)) == NULL) status = AC_ENOENT;
    }
    double left = 0;
    if (e != NULL)
      left = !isnan(b->forced_ttl_left) ? b->forced_ttl_left
             : isinf(e->expires)        ? INFINITY
                                        : e->expires - b->clock();
    /* The bytes are copied: the callback may write the key (and free e). */
    char *bytes = e ? tb_dup(e->val, e->vlen) : NULL;
    op->get_cb(op->arg, status, bytes, e ? e->vlen : 0, left);
    free(bytes);
  } else {
    if (status == 0) status = b->write_status;
    if (status == 0 && op->kind == TB_SET)
      tb_store(b, op->key, op->klen, op->val, op->vlen, op->ttl);
    if (status == 0 && op->kind == TB_DEL) tb_remove(b, op->key, op->klen);
    if (status == 0 && op->kind == TB_CLEAR)
      while (b->entries != NULL) tb_remove(b, b->entries->key, b->entries->klen);
    op->done_cb(op->arg, status);
  }
  tb_op_free(op);
}

static void tb_on_task(ac_task_t *t) {
  tb_op *op = t->data;
  op->queued = 0;
  tb_complete(op, 0);
}

static void tb_on_timer(ac_timer_t *t, void *data) {
  (void)t;
  tb_complete(data, 0);
}

static void tb_schedule(tb_op *op) {
  test_backend *b = op->b;
  if (b->delay > 0) {
    op->timer = ac_timer_new(b->s, tb_on_timer, op);
    ASSERT_NOT_NULL(op->timer);
    ASSERT_EQ_INT(ac_timer_start(op->timer, b->delay, 0), 0);
    return;
  }
  op->task.fn = tb_on_task;
  op->task.data = op;
  op->queued = 1;
  ac_sched_post(b->s, &op->task);
}

/* A new pending op, or NULL when the call is refused. */
static tb_op *tb_issue(test_backend *b, int kind, const char *key,
                       size_t klen) {
  if (b->refuse || b->closing) {
    b->refused++;
    return NULL;
  }
  tb_op *op = calloc(1, sizeof *op);
  ASSERT_NOT_NULL(op);
  op->b = b;
  op->kind = kind;
  op->key = key ? tb_dup(key, klen) : NULL;
  op->klen = klen;
  op->next = b->pending;
  if (op->next) op->next->prev = op;
  b->pending = op;
  b->calls[kind]++;
  return op;
}

static int tb_get_op(ac_backend_t *base, const char *key, size_t len,
                     ac_backend_get_cb cb, void *arg) {
  test_backend *b = (test_backend *)base;
  tb_op *op = tb_issue(b, TB_GET, key, len);
  if (op == NULL) return AC_EIO;
  op->get_cb = cb;
  op->arg = arg;
  if (!b->hold) tb_schedule(op);
  return 0;
}

static int tb_set_op(ac_backend_t *base, const char *key, size_t len,
                     const char *value, size_t vlen, double ttl,
                     ac_backend_done_cb cb, void *arg) {
  test_backend *b = (test_backend *)base;
  tb_op *op = tb_issue(b, TB_SET, key, len);
  if (op == NULL) return AC_EIO;
  op->val = tb_dup(value, vlen);
  op->vlen = vlen;
  op->ttl = ttl;
  op->done_cb = cb;
  op->arg = arg;
  ASSERT_CMP_UINT(len, <, sizeof b->last_key);
  memcpy(b->last_key, key, len);
  b->last_klen = len;
  size_t n = vlen < sizeof b->last_val - 1 ? vlen : sizeof b->last_val - 1;
  memcpy(b->last_val, value, n);
  b->last_val[n] = '\0';
  b->last_vlen = vlen;
  b->last_ttl = ttl;
  if (!b->hold) tb_schedule(op);
  return 0;
}

static int tb_del_op(ac_backend_t *base, const char *key, size_t len,
                     ac_backend_done_cb cb, void *arg) {
  test_backend *b = (test_backend *)base;
  tb_op *op = tb_issue(b, TB_DEL, key, len);
  if (op == NULL) return AC_EIO;
  op->done_cb = cb;
  op->arg = arg;
  if (!b->hold) tb_schedule(op);
  return 0;
}

static int tb_clear_op(ac_backend_t *base, ac_backend_done_cb cb, void *arg) {
  test_backend *b = (test_backend *)base;
  tb_op *op = tb_issue(b, TB_CLEAR, NULL, 0);
  if (op == NULL) return AC_EIO;
  op->done_cb = cb;
  op->arg = arg;
  if (!b->hold) tb_schedule(op);
  return 0;
}

/* Cancels what is pending (each callback once, with AC_ECANCELED; calls
 * made from those callbacks are refused) and frees. */
static void tb_free_op(ac_backend_t *base) {
  test_backend *b = (test_backend *)base;
  b->closing = 1;
  while (b->pending != NULL) {
    tb_op *op = b->pending;
    if (op->queued) ASSERT_EQ_INT(ac_sched_cancel(b->s, &op->task), 1);
    op->queued = 0;
    tb_complete(op, AC_ECANCELED);
  }
  while (b->entries != NULL) tb_remove(b, b->entries->key, b->entries->klen);
  free(b);
}

static const ac_backend_vtable_t tb_vtable = {
    "test", tb_get_op, tb_set_op, tb_del_op, tb_clear_op, tb_free_op};

/* A backend on the scheduler's loop, its TTLs on `clock`.  Free it with
 * ac_backend_free, after the caches using it. */
__attribute__((unused)) static test_backend *tb_new(ac_sched_t *s,
                                                    ac_clock_fn clock) {
  test_backend *b = calloc(1, sizeof *b);
  ASSERT_NOT_NULL(b);
  b->base.vt = &tb_vtable;
  b->s = s;
  b->clock = clock;
  b->error_code = AC_EIO;
  b->forced_ttl_left = NAN;
  return b;
}

/* Lets held operations complete: they go on the ready queue, in the
 * order they were issued. */
__attribute__((unused)) static void tb_release(test_backend *b) {
  b->hold = 0;
  tb_op *last = b->pending;
  while (last != NULL && last->next != NULL) last = last->next;
  for (tb_op *op = last; op != NULL; op = op->prev)
    if (!op->queued && op->timer == NULL) tb_schedule(op);
}

/* Operations issued and not completed yet. */
__attribute__((unused)) static int tb_pending(const test_backend *b) {
  int n = 0;
  for (const tb_op *op = b->pending; op != NULL; op = op->next) n++;
  return n;
}

#endif
