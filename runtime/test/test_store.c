/* Tests of the store (ac_store.h): lookups, keys, LRU eviction, TTL with an
 * injected clock, the removal callback, slots, stats, keyed hashing against
 * collision attacks, and allocation failures. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ac_alloc.h"
#include "ac_error.h"
#include "ac_policy.h"
#include "ac_store.h"
#include "hash.h"
#include "test_harness.h"
#include "test_alloc.h"

#define INLINE_KEY_MAX 18 /* the store's inline key limit, see store.c */

/* ---- a clock the tests move by hand ------------------------------------ */

static double fake_now = 1000.0;

static double fake_clock(void) { return fake_now; }

/* ---- a recorder for the removal callback ------------------------------- */

typedef struct {
  uint32_t slot;
  int tag;
  char *key; /* copy taken inside the callback */
  size_t len;
  ac_removed_t why;
} removal;

typedef struct {
  removal *ev;
  size_t n, cap;
} recorder;

static void on_removed(void *ud, uint32_t slot, int tag, const char *key,
                       size_t len, ac_removed_t why) {
  recorder *r = ud;
  if (r->n == r->cap) {
    r->cap = r->cap ? r->cap * 2 : 16;
    r->ev = realloc(r->ev, r->cap * sizeof *r->ev);
    if (r->ev == NULL) FAIL("out of memory in the recorder");
  }
  removal *e = &r->ev[r->n++];
  e->slot = slot;
  e->tag = tag;
  e->len = len;
  e->why = why;
  /* Reading every byte here is what "the key is readable" means; under
   * AddressSanitizer a key freed before the call would be reported. */
  e->key = malloc(len + 1);
  if (e->key == NULL) FAIL("out of memory in the recorder");
  if (len) memcpy(e->key, key, len);
  e->key[len] = '\0';
}

static void recorder_reset(recorder *r) {
  for (size_t i = 0; i < r->n; i++) free(r->ev[i].key);
  r->n = 0;
}

static void recorder_free(recorder *r) {
  recorder_reset(r);
  free(r->ev);
  r->ev = NULL;
  r->cap = 0;
}

static size_t count_why(const recorder *r, ac_removed_t why) {
  size_t n = 0;
  for (size_t i = 0; i < r->n; i++) n += r->ev[i].why == why;
  return n;
}

/* ---- helpers ------------------------------------------------------------ */

static ac_store_t *new_store(uint32_t maxsize, recorder *r) {
  ac_store_options_t o = {.maxsize = maxsize, .removed = r ? on_removed : NULL,
                         .ud = r, .clock = fake_clock};
  int err = 12345;
  ac_store_t *s = ac_store_new(&o, &err);
  ASSERT_NOT_NULL(s);
  ASSERT_EQ_INT(err, 0);
  return s;
}

static int64_t set_s(ac_store_t *s, const char *key, double ttl) {
  return ac_store_set(s, 0, key, strlen(key), ttl, NULL);
}

static uint32_t get_s(ac_store_t *s, const char *key) {
  return ac_store_get(s, 0, key, strlen(key));
}

static uint32_t peek_s(ac_store_t *s, const char *key) {
  return ac_store_peek(s, 0, key, strlen(key));
}

static ac_store_stats_t stats_of(const ac_store_t *s) {
  ac_store_stats_t st;
  memset(&st, 0xff, sizeof st);
  ac_store_stats(s, &st);
  return st;
}

/* The LRU policy's walk as slots, most recently used first, read through
 * the policy's own API; checks that ac_store_next_ranked agrees and that
 * the walk holds every live slot once.  Returns its length. */
static size_t walk(const ac_store_t *s, uint32_t *out, size_t max) {
  const void *st = ac_store_policy_state(s);
  size_t n = 0;
  uint32_t ranked = ac_store_next_ranked(s, 0);
  for (uint32_t i = ac_policy_lru.next(st, 0); i != 0;
       i = ac_policy_lru.next(st, i)) {
    if (n == max) FAIL("LRU walk longer than %zu", max);
    ASSERT_EQ_UINT(ranked, i);
    ranked = ac_store_next_ranked(s, i);
    out[n++] = i;
  }
  ASSERT_EQ_UINT(ranked, 0);
  size_t live = 0;
  for (uint32_t i = ac_store_next(s, 0); i != 0; i = ac_store_next(s, i)) live++;
  ASSERT_EQ_UINT(live, n);
  ASSERT_EQ_UINT(stats_of(s).size, n);
  return n;
}

/* Asserts the LRU walk yields exactly these tag-0 keys, most recent first. */
static void assert_mru_keys(const ac_store_t *s, const char *const *keys,
                            size_t n) {
  uint32_t slots[256];
  size_t got = walk(s, slots, 256);
  ASSERT_EQ_UINT(got, n);
  for (size_t i = 0; i < n; i++) {
    size_t len = 0;
    int tag = -1;
    const char *k = ac_store_key(s, slots[i], &tag, &len);
    ASSERT_NOT_NULL(k);
    ASSERT_EQ_INT(tag, 0);
    ASSERT_EQ_UINT(len, strlen(keys[i]));
    ASSERT_EQ_MEM(k, keys[i], len);
  }
}

/* splitmix64: reproducible pseudo-random numbers for the tests. */
static uint64_t rnd_next(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* ---- allocators injected through ac_replace_allocator ------------------ */

/* The counting, failing one is in test_alloc.h. */

/* An allocator that hands out dirty memory (every fresh byte 0xA5, as a
 * reused heap block may be): code that reads memory it never wrote sees
 * garbage deterministically instead of by luck. */
#define DIRTY_HDR 16

static void dirty_free(void *p) {
  if (p != NULL) free((char *)p - DIRTY_HDR);
}

static void *dirty_malloc(size_t n) {
  char *p = malloc(n + DIRTY_HDR);
  if (p == NULL) return NULL;
  memcpy(p, &n, sizeof n);
  memset(p + DIRTY_HDR, 0xA5, n);
  return p + DIRTY_HDR;
}

static void *dirty_realloc(void *old, size_t n) {
  char *p = dirty_malloc(n);
  if (p == NULL) return NULL;
  if (old != NULL) {
    size_t was;
    memcpy(&was, (char *)old - DIRTY_HDR, sizeof was);
    memcpy(p, old, was < n ? was : n);
    dirty_free(old);
  }
  return p;
}

/* ======================================================================== */

TEST(new_rejects_bad_options) {
  int err = 0;
  ASSERT_NULL(ac_store_new(NULL, &err));
  ASSERT_EQ_INT(err, AC_EINVAL);
  ac_store_options_t o = {.maxsize = 0};
  err = 0;
  ASSERT_NULL(ac_store_new(&o, &err));
  ASSERT_EQ_INT(err, AC_EINVAL);
  o.maxsize = UINT32_MAX; /* slots are 1..maxsize in a uint32_t */
  err = 0;
  ASSERT_NULL(ac_store_new(&o, &err));
  ASSERT_EQ_INT(err, AC_EINVAL);
  ASSERT_NULL(ac_store_new(NULL, NULL)); /* err is optional */

  o.maxsize = 1;
  ac_store_t *s = ac_store_new(&o, NULL); /* default clock, no callback */
  ASSERT_NOT_NULL(s);
  ASSERT_EQ_UINT(stats_of(s).maxsize, 1);
  ac_store_free(s);
}

TEST(store_free_null_is_noop) {
  ac_store_free(NULL);
  /* Still alive and the allocator untouched: a real store works. */
  ac_store_t *s = new_store(2, NULL);
  ASSERT_CMP_INT(set_s(s, "a", 0), >, 0);
  ac_store_free(s);
}

TEST(set_get_peek_basics) {
  ac_store_t *s = new_store(8, NULL);
  ASSERT_EQ_UINT(get_s(s, "a"), 0);
  ASSERT_EQ_UINT(peek_s(s, "a"), 0);

  int is_new = -1;
  int64_t a = ac_store_set(s, 0, "a", 1, 0, &is_new);
  ASSERT_CMP_INT(a, >=, 1);
  ASSERT_CMP_INT(a, <=, 8);
  ASSERT_EQ_INT(is_new, 1);

  is_new = -1;
  ASSERT_EQ_INT(ac_store_set(s, 0, "a", 1, 0, &is_new), a);
  ASSERT_EQ_INT(is_new, 0);

  int64_t b = set_s(s, "b", 0);
  ASSERT_CMP_INT(b, >=, 1);
  ASSERT_NE_INT(b, a);

  ASSERT_EQ_UINT(get_s(s, "a"), a);
  ASSERT_EQ_UINT(get_s(s, "b"), b);
  ASSERT_EQ_UINT(peek_s(s, "a"), a);
  ASSERT_EQ_UINT(get_s(s, "c"), 0);
  ASSERT_EQ_UINT(get_s(s, "ab"), 0);

  int tag = -1;
  size_t len = 0;
  const char *k = ac_store_key(s, (uint32_t)a, &tag, &len);
  ASSERT_NOT_NULL(k);
  ASSERT_EQ_INT(tag, 0);
  ASSERT_EQ_UINT(len, 1);
  ASSERT_EQ_MEM(k, "a", 1);
  ASSERT_NOT_NULL(ac_store_key(s, (uint32_t)b, NULL, NULL));

  /* Slots that hold no entry have no key. */
  ASSERT_NULL(ac_store_key(s, 0, NULL, NULL));
  ASSERT_NULL(ac_store_key(s, 9, NULL, NULL));
  ASSERT_NULL(ac_store_key(s, 1000, NULL, NULL));

  /* Peek counts nothing: two hits, two misses from the gets above. */
  ac_store_stats_t st = stats_of(s);
  ASSERT_EQ_UINT(st.hits, 2);
  ASSERT_EQ_UINT(st.misses, 3);
  ASSERT_EQ_UINT(st.size, 2);
  ASSERT_EQ_UINT(st.maxsize, 8);
  ac_store_free(s);
}

TEST(set_rejects_invalid_arguments) {
  recorder r = {0};
  ac_store_t *s = new_store(4, &r);
  ASSERT_EQ_INT(ac_store_set(s, 0, NULL, 3, 0, NULL), AC_EINVAL);
  ASSERT_EQ_INT(ac_store_set(s, -1, "k", 1, 0, NULL), AC_EINVAL);
  ASSERT_EQ_INT(ac_store_set(s, 256, "k", 1, 0, NULL), AC_EINVAL);
  ASSERT_EQ_UINT(stats_of(s).size, 0);
  ASSERT_CMP_INT(ac_store_set(s, 255, "k", 1, 0, NULL), >, 0);
  ASSERT_EQ_UINT(stats_of(s).size, 1);
  ASSERT_EQ_UINT(r.n, 0);
  ac_store_free(s);
  recorder_free(&r);
}

TEST(keys_with_embedded_zeros) {
  ac_store_t *s = new_store(16, NULL);
  static const char k1[] = {'a', 0, 'b'};
  static const char k2[] = {'a', 0, 'c'};
  static const char k3[] = {'a', 0};
  static const char k4[] = {0};
  static const char k5[] = {0, 0};
  const char *keys[] = {k1, k2, k3, "a", k4, k5};
  size_t lens[] = {3, 3, 2, 1, 1, 2};
  int64_t slot[6];
  for (int i = 0; i < 6; i++) {
    int is_new = 0;
    slot[i] = ac_store_set(s, 0, keys[i], lens[i], 0, &is_new);
    ASSERT_CMP_INT(slot[i], >, 0);
    ASSERT_EQ_INT(is_new, 1); /* none equals another: no prefix confusion */
  }
  for (int i = 0; i < 6; i++) {
    ASSERT_EQ_UINT(ac_store_get(s, 0, keys[i], lens[i]), slot[i]);
    size_t len = 0;
    const char *k = ac_store_key(s, (uint32_t)slot[i], NULL, &len);
    ASSERT_EQ_UINT(len, lens[i]);
    ASSERT_EQ_MEM(k, keys[i], len);
  }
  ASSERT_EQ_INT(ac_store_delete(s, 0, k1, 3), 0);
  ASSERT_EQ_UINT(ac_store_get(s, 0, k1, 3), 0);
  ASSERT_EQ_UINT(ac_store_get(s, 0, k2, 3), slot[1]);
  ASSERT_EQ_UINT(ac_store_get(s, 0, k3, 2), slot[2]);
  ac_store_free(s);
}

TEST(long_keys_are_copied_and_found) {
  recorder r = {0};
  ac_store_t *s = new_store(32, &r);
  /* Lengths around the inline limit and well past it; keys that share a
   * prefix longer than the inline part must stay distinct. */
  size_t lens[] = {INLINE_KEY_MAX - 1, INLINE_KEY_MAX, INLINE_KEY_MAX + 1,
                   INLINE_KEY_MAX + 2, 64, 1000, 100000};
  enum { N = sizeof lens / sizeof lens[0] };
  char *keys[N];
  int64_t slot[N];
  for (int i = 0; i < N; i++) {
    keys[i] = malloc(lens[i]);
    ASSERT_NOT_NULL(keys[i]);
    memset(keys[i], 'x', lens[i]);
    keys[i][lens[i] - 1] = (char)('0' + i);
    int is_new = 0;
    slot[i] = ac_store_set(s, 0, keys[i], lens[i], 0, &is_new);
    ASSERT_CMP_INT(slot[i], >, 0);
    ASSERT_EQ_INT(is_new, 1);
  }
  /* Same 1000-byte prefix, differing only in the last byte. */
  char *twin = malloc(1000);
  ASSERT_NOT_NULL(twin);
  memcpy(twin, keys[5], 1000);
  twin[999] = 'z';
  ASSERT_EQ_UINT(ac_store_get(s, 0, twin, 1000), 0);
  int64_t tslot = ac_store_set(s, 0, twin, 1000, 0, NULL);
  ASSERT_CMP_INT(tslot, >, 0);
  ASSERT_NE_INT(tslot, slot[5]);

  /* The store keeps its own copy: scribbling on ours changes nothing. */
  for (int i = 0; i < N; i++) {
    char *orig = malloc(lens[i]);
    ASSERT_NOT_NULL(orig);
    memcpy(orig, keys[i], lens[i]);
    memset(keys[i], 'q', lens[i]);
    ASSERT_EQ_UINT(ac_store_get(s, 0, keys[i], lens[i]), 0);
    ASSERT_EQ_UINT(ac_store_get(s, 0, orig, lens[i]), slot[i]);
    size_t len = 0;
    const char *k = ac_store_key(s, (uint32_t)slot[i], NULL, &len);
    ASSERT_EQ_UINT(len, lens[i]);
    ASSERT_EQ_MEM(k, orig, len);
    memcpy(keys[i], orig, lens[i]);
    free(orig);
  }
  /* A long key is reported whole when it leaves. */
  ASSERT_EQ_INT(ac_store_delete(s, 0, keys[6], lens[6]), 0);
  ASSERT_EQ_UINT(r.n, 1);
  ASSERT_EQ_UINT(r.ev[0].len, lens[6]);
  ASSERT_EQ_MEM(r.ev[0].key, keys[6], lens[6]);
  ASSERT_EQ_INT(r.ev[0].why, AC_REMOVED_DELETED);
  ASSERT_EQ_UINT(ac_store_get(s, 0, keys[5], 1000), slot[5]);

  ac_store_free(s);
  ASSERT_EQ_UINT(r.n, N + 1); /* N - 1 left, the twin, plus the deletion */
  for (int i = 0; i < N; i++) free(keys[i]);
  free(twin);
  recorder_free(&r);
}

TEST(empty_key) {
  ac_store_t *s = new_store(4, NULL);
  int is_new = 0;
  int64_t e = ac_store_set(s, 0, "", 0, 0, &is_new);
  ASSERT_CMP_INT(e, >, 0);
  ASSERT_EQ_INT(is_new, 1);
  ASSERT_EQ_INT(ac_store_set(s, 0, "", 0, 0, &is_new), e);
  ASSERT_EQ_INT(is_new, 0);
  int64_t e1 = ac_store_set(s, 1, "", 0, 0, &is_new);
  ASSERT_CMP_INT(e1, >, 0);
  ASSERT_NE_INT(e1, e);
  ASSERT_EQ_UINT(ac_store_get(s, 0, "", 0), e);
  ASSERT_EQ_UINT(ac_store_get(s, 0, "\0", 1), 0);
  size_t len = 99;
  ASSERT_NOT_NULL(ac_store_key(s, (uint32_t)e, NULL, &len));
  ASSERT_EQ_UINT(len, 0);
  ASSERT_EQ_INT(ac_store_delete(s, 0, "", 0), 0);
  ASSERT_EQ_UINT(ac_store_get(s, 0, "", 0), 0);
  ASSERT_EQ_UINT(ac_store_get(s, 1, "", 0), e1);
  ac_store_free(s);
}

/* key == NULL is rejected only with len > 0, so (NULL, 0) is the empty key. */
TEST(null_key_of_length_zero_is_the_empty_key) {
  ac_store_t *s = new_store(4, NULL);
  int is_new = 0;
  int64_t e = ac_store_set(s, 0, NULL, 0, 0, &is_new);
  ASSERT_CMP_INT(e, >, 0);
  ASSERT_EQ_INT(is_new, 1);
  ASSERT_EQ_INT(ac_store_set(s, 0, NULL, 0, 0, &is_new), e);
  ASSERT_EQ_INT(is_new, 0);
  ASSERT_EQ_UINT(ac_store_get(s, 0, NULL, 0), e);
  ASSERT_EQ_UINT(ac_store_get(s, 0, "", 0), e);
  ASSERT_EQ_INT(ac_store_delete(s, 0, NULL, 0), 0);
  ac_store_free(s);
}

TEST(tags_keep_equal_bytes_apart) {
  recorder r = {0};
  ac_store_t *s = new_store(8, &r);
  int64_t t0 = ac_store_set(s, 0, "1", 1, 0, NULL);
  int64_t t1 = ac_store_set(s, 1, "1", 1, 0, NULL);
  int64_t t255 = ac_store_set(s, 255, "1", 1, 0, NULL);
  ASSERT_CMP_INT(t0, >, 0);
  ASSERT_CMP_INT(t1, >, 0);
  ASSERT_CMP_INT(t255, >, 0);
  ASSERT_NE_INT(t0, t1);
  ASSERT_NE_INT(t1, t255);
  ASSERT_NE_INT(t0, t255);
  ASSERT_EQ_UINT(stats_of(s).size, 3);
  ASSERT_EQ_UINT(ac_store_get(s, 2, "1", 1), 0);

  int tag = -1;
  ASSERT_NOT_NULL(ac_store_key(s, (uint32_t)t255, &tag, NULL));
  ASSERT_EQ_INT(tag, 255);

  ASSERT_EQ_INT(ac_store_delete(s, 1, "1", 1), 0);
  ASSERT_EQ_UINT(r.n, 1);
  ASSERT_EQ_INT(r.ev[0].tag, 1);
  ASSERT_EQ_UINT(r.ev[0].slot, t1);
  ASSERT_EQ_UINT(ac_store_get(s, 1, "1", 1), 0);
  ASSERT_EQ_UINT(ac_store_get(s, 0, "1", 1), t0);
  ASSERT_EQ_UINT(ac_store_get(s, 255, "1", 1), t255);
  ASSERT_EQ_INT(ac_store_delete(s, 1, "1", 1), AC_ENOENT);
  ac_store_free(s);
  recorder_free(&r);
}

TEST(lru_evicts_least_recently_used) {
  recorder r = {0};
  ac_store_t *s = new_store(3, &r);
  int64_t a = set_s(s, "a", 0);
  set_s(s, "b", 0);
  set_s(s, "c", 0);
  ASSERT_EQ_UINT(get_s(s, "a"), a); /* order: a c b */
  set_s(s, "b", 0);                 /* a set refreshes too: b a c */
  int64_t d = set_s(s, "d", 0);     /* evicts c */
  ASSERT_EQ_UINT(r.n, 1);
  ASSERT_EQ_STR(r.ev[0].key, "c");
  ASSERT_EQ_INT(r.ev[0].why, AC_REMOVED_EVICTED);
  ASSERT_EQ_UINT(d, r.ev[0].slot); /* the freed slot went to d */
  static const char *const order1[] = {"d", "b", "a"};
  assert_mru_keys(s, order1, 3);

  ASSERT_EQ_UINT(peek_s(s, "a"), a); /* peek does not refresh */
  set_s(s, "e", 0);                  /* evicts a */
  ASSERT_EQ_UINT(r.n, 2);
  ASSERT_EQ_STR(r.ev[1].key, "a");
  ASSERT_EQ_UINT(r.ev[1].slot, a);
  ASSERT_EQ_UINT(get_s(s, "a"), 0);
  ASSERT_EQ_UINT(get_s(s, "c"), 0);
  ASSERT_CMP_UINT(get_s(s, "b"), >, 0);
  ASSERT_CMP_UINT(get_s(s, "d"), >, 0);
  ASSERT_CMP_UINT(get_s(s, "e"), >, 0);
  ASSERT_EQ_UINT(stats_of(s).evictions, 2);
  ASSERT_EQ_UINT(stats_of(s).size, 3);
  ac_store_free(s);
  recorder_free(&r);
}

TEST(maxsize_one) {
  recorder r = {0};
  ac_store_t *s = new_store(1, &r);
  int64_t a = set_s(s, "a", 0);
  ASSERT_EQ_INT(a, 1);
  ASSERT_EQ_INT(set_s(s, "a", 0), 1); /* refreshing evicts nothing */
  ASSERT_EQ_UINT(r.n, 0);
  int is_new = 0;
  ASSERT_EQ_INT(ac_store_set(s, 0, "b", 1, 0, &is_new), 1);
  ASSERT_EQ_INT(is_new, 1);
  ASSERT_EQ_UINT(r.n, 1);
  ASSERT_EQ_STR(r.ev[0].key, "a");
  ASSERT_EQ_UINT(r.ev[0].slot, 1);
  ASSERT_EQ_INT(r.ev[0].why, AC_REMOVED_EVICTED);
  ASSERT_EQ_UINT(get_s(s, "a"), 0);
  ASSERT_EQ_UINT(get_s(s, "b"), 1);
  /* A long key in a store of one. */
  char big[100];
  memset(big, 'L', sizeof big);
  ASSERT_EQ_INT(ac_store_set(s, 0, big, sizeof big, 0, NULL), 1);
  ASSERT_EQ_UINT(r.n, 2);
  ASSERT_EQ_STR(r.ev[1].key, "b");
  ASSERT_EQ_INT(set_s(s, "c", 0), 1);
  ASSERT_EQ_UINT(r.n, 3);
  ASSERT_EQ_UINT(r.ev[2].len, sizeof big);
  ASSERT_EQ_MEM(r.ev[2].key, big, sizeof big);
  ASSERT_EQ_UINT(stats_of(s).size, 1);
  ASSERT_EQ_UINT(stats_of(s).evictions, 3);
  ac_store_free(s);
  recorder_free(&r);
}

/* A reference LRU (an array, most recent first) driven side by side with
 * the store through a reproducible mix of get/set/peek/delete: every
 * eviction must name the model's least recently used key, every slot must
 * be unique among live keys, and the LRU walk must match the model. */
static void run_lru_model(uint32_t maxsize, uint64_t seed) {
  recorder r = {0};
  ac_store_t *s = new_store(maxsize, &r);
  uint32_t nkeys = maxsize * 3 + 2;
  uint32_t *order = malloc(nkeys * sizeof *order); /* key ids, MRU first */
  uint32_t *slot_of = calloc(nkeys, sizeof *slot_of);
  uint32_t *owner = malloc(((size_t)maxsize + 1) * sizeof *owner);
  ASSERT_TRUE(order && slot_of && owner);
  for (uint32_t i = 0; i <= maxsize; i++) owner[i] = UINT32_MAX;
  size_t n = 0;
  uint64_t rs = seed;
  char key[32];

  for (int step = 0; step < 3000; step++) {
    uint32_t k = (uint32_t)(rnd_next(&rs) % nkeys);
    int op = (int)(rnd_next(&rs) % 10);
    int len = snprintf(key, sizeof key, "key-%u", k);
    size_t pos = 0;
    while (pos < n && order[pos] != k) pos++;
    int present = pos < n;
    size_t events = r.n;

    if (op < 4) { /* get: refreshes */
      uint32_t got = ac_store_get(s, 0, key, (size_t)len);
      ASSERT_EQ_UINT(got, present ? slot_of[k] : 0);
      if (present) {
        memmove(order + 1, order, pos * sizeof *order);
        order[0] = k;
      }
    } else if (op < 8) { /* set: refreshes or inserts */
      int is_new = -1;
      int64_t got = ac_store_set(s, 0, key, (size_t)len, 0, &is_new);
      if (present) {
        ASSERT_EQ_INT(is_new, 0);
        ASSERT_EQ_INT(got, slot_of[k]);
        memmove(order + 1, order, pos * sizeof *order);
        order[0] = k;
      } else {
        if (n == maxsize) {
          uint32_t victim = order[--n];
          char vkey[32];
          snprintf(vkey, sizeof vkey, "key-%u", victim);
          ASSERT_EQ_UINT(r.n, events + 1);
          ASSERT_EQ_INT(r.ev[events].why, AC_REMOVED_EVICTED);
          ASSERT_EQ_STR(r.ev[events].key, vkey);
          ASSERT_EQ_UINT(r.ev[events].slot, slot_of[victim]);
          owner[slot_of[victim]] = UINT32_MAX;
          slot_of[victim] = 0;
          events++;
        }
        ASSERT_EQ_INT(is_new, 1);
        ASSERT_CMP_INT(got, >=, 1);
        ASSERT_CMP_INT(got, <=, maxsize);
        ASSERT_EQ_UINT(owner[got], UINT32_MAX); /* not a live entry's slot */
        owner[got] = k;
        slot_of[k] = (uint32_t)got;
        memmove(order + 1, order, n * sizeof *order);
        order[0] = k;
        n++;
      }
    } else if (op < 9) { /* peek: no change */
      ASSERT_EQ_UINT(ac_store_peek(s, 0, key, (size_t)len),
                     present ? slot_of[k] : 0);
    } else { /* delete */
      int rc = ac_store_delete(s, 0, key, (size_t)len);
      if (present) {
        ASSERT_EQ_INT(rc, 0);
        ASSERT_EQ_UINT(r.n, events + 1);
        ASSERT_EQ_INT(r.ev[events].why, AC_REMOVED_DELETED);
        ASSERT_EQ_UINT(r.ev[events].slot, slot_of[k]);
        owner[slot_of[k]] = UINT32_MAX;
        slot_of[k] = 0;
        memmove(order + pos, order + pos + 1, (n - pos - 1) * sizeof *order);
        n--;
        events++;
      } else {
        ASSERT_EQ_INT(rc, AC_ENOENT);
      }
    }
    ASSERT_EQ_UINT(r.n, events); /* nothing else was reported */
    ASSERT_EQ_UINT(stats_of(s).size, n);

    if (step % 100 == 99 || step == 2999) {
      uint32_t *slots = malloc((n + 1) * sizeof *slots);
      ASSERT_NOT_NULL(slots);
      ASSERT_EQ_UINT(walk(s, slots, n + 1), n);
      for (size_t i = 0; i < n; i++)
        ASSERT_EQ_UINT(slots[i], slot_of[order[i]]);
      free(slots);
    }
  }
  recorder_reset(&r);
  ac_store_free(s);
  ASSERT_EQ_UINT(r.n, n);
  ASSERT_EQ_UINT(count_why(&r, AC_REMOVED_CLEARED), n);
  free(order);
  free(slot_of);
  free(owner);
  recorder_free(&r);
}

/* Stores that never grow past their first 16 buckets and slots. */
TEST(lru_matches_reference_model) {
  /* A fixed seed makes the bucket layout, and so the run, reproducible. */
  ac__hash_set_seed(0x9E3779B97F4A7C15ull, 0xD1B54A32D192ED03ull);
  static const uint32_t sizes[] = {1, 2, 3, 4, 7, 15, 16};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    run_lru_model(sizes[i], 0x5eed0000u + i);
}

/* Stores that grow their slab and buckets while the model runs. */
TEST(lru_matches_reference_model_while_growing) {
  ac__hash_set_seed(0x9E3779B97F4A7C15ull, 0xD1B54A32D192ED03ull);
  static const uint32_t sizes[] = {17, 31, 33, 100};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    run_lru_model(sizes[i], 0x5eed1000u + i);
}

TEST(ttl_lazy_expiry_on_get) {
  recorder r = {0};
  fake_now = 100;
  ac_store_t *s = new_store(4, &r);
  int64_t a = set_s(s, "a", 10);
  ASSERT_CMP_INT(a, >, 0);
  ASSERT_EQ_UINT(ac_store_ttl_count(s), 1);
  ASSERT_NEAR(ac_store_ttl_left(s, (uint32_t)a), 10, 1e-9);

  fake_now = 109.5;
  ASSERT_EQ_UINT(get_s(s, "a"), a);
  ASSERT_NEAR(ac_store_ttl_left(s, (uint32_t)a), 0.5, 1e-9);

  fake_now = 110.5;
  ASSERT_NEAR(ac_store_ttl_left(s, (uint32_t)a), 0, 0); /* expired */
  ASSERT_EQ_UINT(r.n, 0); /* nobody looked yet: still there */
  ASSERT_EQ_UINT(stats_of(s).size, 1);
  ASSERT_EQ_UINT(get_s(s, "a"), 0);
  ac_store_stats_t st = stats_of(s);
  ASSERT_EQ_UINT(st.hits, 1);
  ASSERT_EQ_UINT(st.misses, 1);
  ASSERT_EQ_UINT(st.expirations, 1);
  ASSERT_EQ_UINT(st.size, 0);
  ASSERT_EQ_UINT(ac_store_ttl_count(s), 0);
  ASSERT_EQ_UINT(r.n, 1);
  ASSERT_EQ_INT(r.ev[0].why, AC_REMOVED_EXPIRED);
  ASSERT_EQ_STR(r.ev[0].key, "a");
  ASSERT_EQ_UINT(r.ev[0].slot, a);
  ASSERT_NULL(ac_store_key(s, (uint32_t)a, NULL, NULL));

  /* A second miss counts as a plain miss. */
  ASSERT_EQ_UINT(get_s(s, "a"), 0);
  st = stats_of(s);
  ASSERT_EQ_UINT(st.misses, 2);
  ASSERT_EQ_UINT(st.expirations, 1);
  ASSERT_EQ_UINT(r.n, 1);
  ac_store_free(s);
  recorder_free(&r);
}

TEST(ttl_peek_does_not_remove_expired) {
  recorder r = {0};
  fake_now = 0.5;
  ac_store_t *s = new_store(4, &r);
  int64_t a = set_s(s, "a", 1);
  fake_now = 2;
  ASSERT_EQ_UINT(peek_s(s, "a"), 0);
  ASSERT_EQ_UINT(r.n, 0);
  ASSERT_EQ_UINT(stats_of(s).expirations, 0);
  ASSERT_EQ_UINT(stats_of(s).misses, 0);
  ASSERT_EQ_UINT(stats_of(s).size, 1);
  ASSERT_EQ_UINT(get_s(s, "a"), 0);
  ASSERT_EQ_UINT(r.n, 1);
  ASSERT_EQ_UINT(r.ev[0].slot, a);
  ac_store_free(s);
  recorder_free(&r);
}

TEST(ttl_set_refreshes_deadline) {
  recorder r = {0};
  fake_now = 100;
  ac_store_t *s = new_store(4, &r);
  int64_t a = set_s(s, "a", 10); /* due at 110 */
  fake_now = 105;
  int is_new = -1;
  ASSERT_EQ_INT(ac_store_set(s, 0, "a", 1, 10, &is_new), a); /* due at 115 */
  ASSERT_EQ_INT(is_new, 0);
  ASSERT_EQ_UINT(ac_store_ttl_count(s), 1); /* not counted twice */
  fake_now = 112;
  ASSERT_EQ_UINT(get_s(s, "a"), a);
  ASSERT_NEAR(ac_store_ttl_left(s, (uint32_t)a), 3, 1e-9);
  fake_now = 115.5;
  ASSERT_EQ_UINT(get_s(s, "a"), 0);
  ASSERT_EQ_UINT(r.n, 1);

  /* A set without TTL lifts the deadline, a set with one puts it back. */
  fake_now = 200;
  int64_t b = set_s(s, "b", 5);
  ASSERT_EQ_UINT(ac_store_ttl_count(s), 1);
  ASSERT_EQ_INT(set_s(s, "b", 0), b);
  ASSERT_EQ_UINT(ac_store_ttl_count(s), 0);
  ASSERT_NEAR(ac_store_ttl_left(s, (uint32_t)b), INFINITY, 0);
  fake_now = 1e6;
  ASSERT_EQ_UINT(get_s(s, "b"), b);
  ASSERT_EQ_INT(set_s(s, "b", 1), b);
  ASSERT_EQ_UINT(ac_store_ttl_count(s), 1);
  fake_now += 2;
  ASSERT_EQ_UINT(get_s(s, "b"), 0);
  ASSERT_EQ_UINT(ac_store_ttl_count(s), 0);
  ASSERT_EQ_UINT(stats_of(s).expirations, 2);
  ac_store_free(s);
  recorder_free(&r);
}

TEST(ttl_zero_and_infinity_never_expire) {
  recorder r = {0};
  fake_now = 10;
  ac_store_t *s = new_store(4, &r);
  int64_t a = set_s(s, "a", 0);
  int64_t b = set_s(s, "b", INFINITY);
  ASSERT_CMP_INT(a, >, 0);
  ASSERT_CMP_INT(b, >, 0);
  ASSERT_EQ_UINT(ac_store_ttl_count(s), 0);
  ASSERT_NEAR(ac_store_ttl_left(s, (uint32_t)a), INFINITY, 0);
  ASSERT_NEAR(ac_store_ttl_left(s, (uint32_t)b), INFINITY, 0);
  fake_now = 1e15;
  ASSERT_EQ_UINT(ac_store_expire(s, 100), 0);
  ASSERT_EQ_UINT(get_s(s, "a"), a);
  ASSERT_EQ_UINT(get_s(s, "b"), b);
  ASSERT_EQ_UINT(r.n, 0);
  ASSERT_EQ_UINT(stats_of(s).expirations, 0);
  ac_store_free(s);
  recorder_free(&r);
}

TEST(ttl_negative_or_nan_is_invalid) {
  fake_now = 10;
  ac_store_t *s = new_store(4, NULL);
  ASSERT_EQ_INT(set_s(s, "a", -1), AC_EINVAL);
  ASSERT_EQ_INT(set_s(s, "a", -1e-300), AC_EINVAL);
  ASSERT_EQ_INT(set_s(s, "a", -INFINITY), AC_EINVAL);
  ASSERT_EQ_INT(set_s(s, "a", NAN), AC_EINVAL);
  ASSERT_EQ_UINT(stats_of(s).size, 0);
  ASSERT_EQ_UINT(get_s(s, "a"), 0);

  /* On a live key a bad TTL changes nothing either. */
  int64_t b = set_s(s, "b", 5);
  ASSERT_EQ_INT(set_s(s, "b", NAN), AC_EINVAL);
  ASSERT_EQ_INT(set_s(s, "b", -3), AC_EINVAL);
  ASSERT_NEAR(ac_store_ttl_left(s, (uint32_t)b), 5, 1e-9);
  ASSERT_EQ_UINT(ac_store_ttl_count(s), 1);
  ac_store_free(s);
}

TEST(ttl_left_of_free_slots) {
  fake_now = 10;
  ac_store_t *s = new_store(4, NULL);
  ASSERT_NEAR(ac_store_ttl_left(s, 0), 0, 0);
  ASSERT_NEAR(ac_store_ttl_left(s, 1), 0, 0);
  ASSERT_NEAR(ac_store_ttl_left(s, 5), 0, 0);
  int64_t a = set_s(s, "a", 3);
  ASSERT_EQ_INT(ac_store_delete(s, 0, "a", 1), 0);
  ASSERT_NEAR(ac_store_ttl_left(s, (uint32_t)a), 0, 0);
  ac_store_free(s);
}

TEST(expire_removes_unread_entries_and_frees_capacity) {
  recorder r = {0};
  fake_now = 0;
  ac_store_t *s = new_store(8, &r);
  static const char *const ttl_keys[] = {"t1", "t2", "t3", "t4", "t5", "t6"};
  for (int i = 0; i < 6; i++) ASSERT_CMP_INT(set_s(s, ttl_keys[i], 10), >, 0);
  int64_t p1 = set_s(s, "p1", 0);
  int64_t p2 = set_s(s, "p2", 0);
  ASSERT_EQ_UINT(stats_of(s).size, 8);
  ASSERT_EQ_UINT(ac_store_ttl_count(s), 6);

  fake_now = 5; /* nothing due yet */
  ASSERT_EQ_UINT(ac_store_expire(s, 100), 0);
  ASSERT_EQ_UINT(r.n, 0);

  fake_now = 11;
  ASSERT_EQ_UINT(ac_store_expire(s, 100), 6);
  ASSERT_EQ_UINT(r.n, 6);
  ASSERT_EQ_UINT(count_why(&r, AC_REMOVED_EXPIRED), 6);
  ac_store_stats_t st = stats_of(s);
  ASSERT_EQ_UINT(st.size, 2);
  ASSERT_EQ_UINT(st.expirations, 6);
  ASSERT_EQ_UINT(st.hits, 0);
  ASSERT_EQ_UINT(st.misses, 0);
  ASSERT_EQ_UINT(ac_store_ttl_count(s), 0);
  for (int i = 0; i < 6; i++) ASSERT_EQ_UINT(peek_s(s, ttl_keys[i]), 0);

  /* The freed capacity takes six new keys without evicting p1 or p2, and
   * the new keys get the freed slots. */
  uint32_t used[9] = {0};
  used[p1] = used[p2] = 1;
  static const char *const fresh[] = {"n1", "n2", "n3", "n4", "n5", "n6"};
  for (int i = 0; i < 6; i++) {
    int64_t sl = set_s(s, fresh[i], 0);
    ASSERT_CMP_INT(sl, >=, 1);
    ASSERT_CMP_INT(sl, <=, 8);
    ASSERT_EQ_UINT(used[sl], 0);
    used[sl] = 1;
  }
  ASSERT_EQ_UINT(stats_of(s).evictions, 0);
  ASSERT_EQ_UINT(r.n, 6);
  ASSERT_EQ_UINT(get_s(s, "p1"), p1);
  ASSERT_EQ_UINT(get_s(s, "p2"), p2);
  ASSERT_EQ_UINT(stats_of(s).size, 8);
  ac_store_free(s);
  recorder_free(&r);
}

TEST(expire_sweeps_in_bounded_steps_and_wraps) {
  recorder r = {0};
  fake_now = 0;
  ac_store_t *s = new_store(10, &r);
  int64_t slot[10];
  char key[8];
  /* k0..k7 live to 100, k8 and k9 only to 5. */
  for (int i = 0; i < 10; i++) {
    snprintf(key, sizeof key, "k%d", i);
    slot[i] = set_s(s, key, i < 8 ? 100 : 5);
    ASSERT_EQ_INT(slot[i], i + 1); /* a fresh store hands out 1, 2, ... */
  }
  fake_now = 10;
  ASSERT_EQ_UINT(ac_store_expire(s, 0), 0);
  ASSERT_EQ_UINT(ac_store_expire(s, 8), 0); /* slots 1..8: none due */
  ASSERT_EQ_UINT(r.n, 0);
  ASSERT_EQ_UINT(ac_store_expire(s, 4), 2); /* 9, 10, then 1, 2 */
  ASSERT_EQ_UINT(r.n, 2);
  ASSERT_EQ_STR(r.ev[0].key, "k8");
  ASSERT_EQ_STR(r.ev[1].key, "k9");

  /* k0 (slot 1, just checked) gets a deadline of 11: the sweep must come
   * around again to find it, and a single step does not reach it. */
  ASSERT_EQ_INT(set_s(s, "k0", 1), slot[0]);
  fake_now = 20;
  ASSERT_EQ_UINT(ac_store_expire(s, 1), 0);  /* slot 3 */
  ASSERT_EQ_UINT(ac_store_expire(s, 7), 0);  /* 4..10 */
  ASSERT_EQ_UINT(ac_store_expire(s, 1), 1);  /* wraps to 1 */
  ASSERT_EQ_UINT(r.n, 3);
  ASSERT_EQ_STR(r.ev[2].key, "k0");
  ASSERT_EQ_INT(r.ev[2].why, AC_REMOVED_EXPIRED);

  /* Everything due: a sweep larger than the slab visits each slot once. */
  fake_now = 1000;
  ASSERT_EQ_UINT(ac_store_expire(s, 1000000), 7);
  ASSERT_EQ_UINT(stats_of(s).size, 0);
  ASSERT_EQ_UINT(stats_of(s).expirations, 10);
  ASSERT_EQ_UINT(ac_store_ttl_count(s), 0);
  ASSERT_EQ_UINT(ac_store_expire(s, 1000000), 0);
  ac_store_free(s);
  ASSERT_EQ_UINT(r.n, 10); /* nothing left to clear */
  recorder_free(&r);
}

TEST(ttl_count_follows_every_removal) {
  recorder r = {0};
  fake_now = 0;
  ac_store_t *s = new_store(3, &r);
  set_s(s, "a", 5);
  set_s(s, "b", 5);
  set_s(s, "c", 0);
  ASSERT_EQ_UINT(ac_store_ttl_count(s), 2);
  ASSERT_EQ_INT(ac_store_delete(s, 0, "a", 1), 0);
  ASSERT_EQ_UINT(ac_store_ttl_count(s), 1);
  set_s(s, "d", 0);
  set_s(s, "e", 0); /* evicts b, the least recent, which had a TTL */
  ASSERT_EQ_STR(r.ev[r.n - 1].key, "b");
  ASSERT_EQ_UINT(ac_store_ttl_count(s), 0);
  set_s(s, "c", 7);
  set_s(s, "d", 7);
  ASSERT_EQ_UINT(ac_store_ttl_count(s), 2);
  ac_store_clear(s);
  ASSERT_EQ_UINT(ac_store_ttl_count(s), 0);
  set_s(s, "x", 1);
  ASSERT_EQ_UINT(ac_store_ttl_count(s), 1);
  fake_now = 2;
  ASSERT_EQ_UINT(get_s(s, "x"), 0);
  ASSERT_EQ_UINT(ac_store_ttl_count(s), 0);
  ac_store_free(s);
  recorder_free(&r);
}

TEST(removal_callback_reasons) {
  recorder r = {0};
  fake_now = 0;
  ac_store_t *s = new_store(2, &r);
  int64_t a = ac_store_set(s, 7, "a", 1, 0, NULL);
  int64_t b = set_s(s, "b", 1);
  set_s(s, "b", 1); /* a replace is never reported */
  ASSERT_EQ_UINT(r.n, 0);

  int64_t c = set_s(s, "c", 0); /* evicts a (tag 7) */
  ASSERT_EQ_UINT(r.n, 1);
  ASSERT_EQ_INT(r.ev[0].why, AC_REMOVED_EVICTED);
  ASSERT_EQ_UINT(r.ev[0].slot, a);
  ASSERT_EQ_INT(r.ev[0].tag, 7);
  ASSERT_EQ_STR(r.ev[0].key, "a");

  fake_now = 5;
  ASSERT_EQ_UINT(get_s(s, "b"), 0); /* lazy expiry */
  ASSERT_EQ_UINT(r.n, 2);
  ASSERT_EQ_INT(r.ev[1].why, AC_REMOVED_EXPIRED);
  ASSERT_EQ_UINT(r.ev[1].slot, b);
  ASSERT_EQ_STR(r.ev[1].key, "b");

  ASSERT_EQ_INT(ac_store_delete(s, 0, "c", 1), 0);
  ASSERT_EQ_UINT(r.n, 3);
  ASSERT_EQ_INT(r.ev[2].why, AC_REMOVED_DELETED);
  ASSERT_EQ_UINT(r.ev[2].slot, c);
  ASSERT_EQ_STR(r.ev[2].key, "c");
  ASSERT_EQ_INT(ac_store_delete(s, 0, "c", 1), AC_ENOENT);
  ASSERT_EQ_UINT(r.n, 3);

  set_s(s, "d", 1);
  fake_now = 10;
  ASSERT_EQ_UINT(ac_store_expire(s, 10), 1); /* active expiry */
  ASSERT_EQ_UINT(r.n, 4);
  ASSERT_EQ_INT(r.ev[3].why, AC_REMOVED_EXPIRED);
  ASSERT_EQ_STR(r.ev[3].key, "d");

  set_s(s, "e", 0);
  set_s(s, "f", 0);
  ac_store_clear(s);
  ASSERT_EQ_UINT(r.n, 6);
  ASSERT_EQ_INT(r.ev[4].why, AC_REMOVED_CLEARED);
  ASSERT_EQ_INT(r.ev[5].why, AC_REMOVED_CLEARED);
  ASSERT_TRUE(
      (strcmp(r.ev[4].key, "e") == 0 && strcmp(r.ev[5].key, "f") == 0) ||
      (strcmp(r.ev[4].key, "f") == 0 && strcmp(r.ev[5].key, "e") == 0));
  ac_store_clear(s); /* empty: nothing to report */
  ASSERT_EQ_UINT(r.n, 6);

  set_s(s, "g", 0);
  char big[40];
  memset(big, 'G', sizeof big);
  ac_store_set(s, 3, big, sizeof big, 0, NULL);
  ac_store_free(s);
  ASSERT_EQ_UINT(r.n, 8);
  ASSERT_EQ_UINT(count_why(&r, AC_REMOVED_CLEARED), 4);
  ASSERT_EQ_UINT(count_why(&r, AC_REMOVED_EVICTED), 1);
  ASSERT_EQ_UINT(count_why(&r, AC_REMOVED_EXPIRED), 2);
  ASSERT_EQ_UINT(count_why(&r, AC_REMOVED_DELETED), 1);
  int saw_big = 0;
  for (size_t i = 6; i < 8; i++)
    if (r.ev[i].len == sizeof big) {
      ASSERT_EQ_MEM(r.ev[i].key, big, sizeof big);
      ASSERT_EQ_INT(r.ev[i].tag, 3);
      saw_big++;
    }
  ASSERT_EQ_INT(saw_big, 1);
  recorder_free(&r);
}

TEST(slots_are_stable_and_reused_only_after_removal) {
  recorder r = {0};
  ac_store_t *s = new_store(64, &r);
  int64_t slot[40];
  char key[16];
  for (int i = 0; i < 40; i++) { /* crosses the slab's growth from 16 and 32 */
    snprintf(key, sizeof key, "s%d", i);
    slot[i] = set_s(s, key, 0);
    ASSERT_CMP_INT(slot[i], >=, 1);
    ASSERT_CMP_INT(slot[i], <=, 64);
    for (int j = 0; j < i; j++) ASSERT_NE_INT(slot[i], slot[j]);
  }
  for (int round = 0; round < 3; round++)
    for (int i = 0; i < 40; i++) {
      snprintf(key, sizeof key, "s%d", i);
      ASSERT_EQ_UINT(get_s(s, key), slot[i]);
      ASSERT_EQ_INT(set_s(s, key, 0), slot[i]);
    }
  /* A freed slot is handed out again only after it was reported. */
  ASSERT_EQ_INT(ac_store_delete(s, 0, "s17", 3), 0);
  ASSERT_EQ_UINT(r.n, 1);
  ASSERT_EQ_UINT(r.ev[0].slot, slot[17]);
  int64_t again = set_s(s, "new", 0);
  ASSERT_CMP_INT(again, >, 0);
  for (int i = 0; i < 40; i++)
    if (i != 17) ASSERT_NE_INT(again, slot[i]);
  for (int i = 0; i < 40; i++) {
    if (i == 17) continue;
    snprintf(key, sizeof key, "s%d", i);
    ASSERT_EQ_UINT(peek_s(s, key), slot[i]);
  }
  ac_store_free(s);
  recorder_free(&r);
}

TEST(delete_and_clear) {
  recorder r = {0};
  ac_store_t *s = new_store(8, &r);
  ASSERT_EQ_INT(ac_store_delete(s, 0, "nope", 4), AC_ENOENT);
  set_s(s, "a", 0);
  set_s(s, "b", 0);
  set_s(s, "c", 0);
  ASSERT_EQ_INT(ac_store_delete(s, 0, "b", 1), 0);
  ASSERT_EQ_INT(ac_store_delete(s, 0, "b", 1), AC_ENOENT);
  ASSERT_EQ_UINT(get_s(s, "b"), 0);
  ASSERT_CMP_UINT(get_s(s, "a"), >, 0);
  ASSERT_CMP_UINT(get_s(s, "c"), >, 0);
  ASSERT_EQ_UINT(stats_of(s).size, 2);
  static const char *const order[] = {"c", "a"};
  assert_mru_keys(s, order, 2);

  ac_store_clear(s);
  ASSERT_EQ_UINT(stats_of(s).size, 0);
  ASSERT_EQ_UINT(get_s(s, "a"), 0);
  ASSERT_EQ_UINT(get_s(s, "c"), 0);
  ASSERT_EQ_UINT(ac_store_next(s, 0), 0);
  ASSERT_EQ_UINT(ac_store_next_ranked(s, 0), 0);
  ASSERT_EQ_UINT(r.n, 3);

  /* Usable after a clear, up to maxsize again without evicting. */
  char key[8];
  for (int i = 0; i < 8; i++) {
    snprintf(key, sizeof key, "n%d", i);
    int64_t sl = set_s(s, key, 0);
    ASSERT_CMP_INT(sl, >=, 1);
    ASSERT_CMP_INT(sl, <=, 8);
  }
  ASSERT_EQ_UINT(stats_of(s).evictions, 0);
  for (int i = 0; i < 8; i++) {
    snprintf(key, sizeof key, "n%d", i);
    ASSERT_CMP_UINT(get_s(s, key), >, 0);
  }
  ASSERT_EQ_UINT(r.n, 3);
  ac_store_free(s);
  recorder_free(&r);
}

TEST(stats_counters) {
  fake_now = 0;
  ac_store_t *s = new_store(2, NULL);
  ac_store_stats_t st = stats_of(s);
  ASSERT_EQ_UINT(st.hits, 0);
  ASSERT_EQ_UINT(st.misses, 0);
  ASSERT_EQ_UINT(st.evictions, 0);
  ASSERT_EQ_UINT(st.expirations, 0);
  ASSERT_EQ_UINT(st.size, 0);
  ASSERT_EQ_UINT(st.maxsize, 2);

  get_s(s, "a");                /* miss */
  set_s(s, "a", 1);
  get_s(s, "a");                /* hit */
  get_s(s, "a");                /* hit */
  set_s(s, "b", 0);
  set_s(s, "c", 0);             /* evicts a */
  get_s(s, "a");                /* miss */
  set_s(s, "d", 1);             /* evicts b */
  fake_now = 2;
  get_s(s, "d");                /* expired: expiration + miss */
  peek_s(s, "c");               /* nothing */
  st = stats_of(s);
  ASSERT_EQ_UINT(st.hits, 2);
  ASSERT_EQ_UINT(st.misses, 3);
  ASSERT_EQ_UINT(st.evictions, 2);
  ASSERT_EQ_UINT(st.expirations, 1);
  ASSERT_EQ_UINT(st.size, 1);

  ac_store_reset_stats(s);
  st = stats_of(s);
  ASSERT_EQ_UINT(st.hits, 0);
  ASSERT_EQ_UINT(st.misses, 0);
  ASSERT_EQ_UINT(st.evictions, 0);
  ASSERT_EQ_UINT(st.expirations, 0);
  ASSERT_EQ_UINT(st.size, 1); /* size is state, not a counter */
  ASSERT_EQ_UINT(st.maxsize, 2);
  ASSERT_CMP_UINT(get_s(s, "c"), >, 0);
  ASSERT_EQ_UINT(stats_of(s).hits, 1);
  ac_store_free(s);
}

TEST(lru_walk_order) {
  ac_store_t *s = new_store(8, NULL);
  ASSERT_EQ_UINT(ac_store_next_ranked(s, 0), 0); /* empty */
  int64_t a = set_s(s, "a", 0);
  set_s(s, "b", 0);
  set_s(s, "c", 0);
  set_s(s, "d", 0);
  static const char *const o1[] = {"d", "c", "b", "a"};
  assert_mru_keys(s, o1, 4);
  get_s(s, "b");
  set_s(s, "a", 0);
  static const char *const o2[] = {"a", "b", "d", "c"};
  assert_mru_keys(s, o2, 4);
  peek_s(s, "c");
  assert_mru_keys(s, o2, 4);
  get_s(s, "a"); /* already most recent: no change */
  assert_mru_keys(s, o2, 4);
  get_s(s, "c"); /* the tail to the head */
  static const char *const o3[] = {"c", "a", "b", "d"};
  assert_mru_keys(s, o3, 4);
  ac_store_delete(s, 0, "b", 1); /* from the middle */
  static const char *const o4[] = {"c", "a", "d"};
  assert_mru_keys(s, o4, 3);
  ac_store_delete(s, 0, "c", 1); /* the head */
  ac_store_delete(s, 0, "d", 1); /* the tail */
  static const char *const o5[] = {"a"};
  assert_mru_keys(s, o5, 1);
  ASSERT_EQ_UINT(ac_store_next_ranked(s, (uint32_t)a), 0);
  ac_store_free(s);
}

TEST(memory_grows_with_entries) {
  ac_store_t *s = new_store(10000, NULL);
  size_t m0 = ac_store_memory(s);
  ASSERT_CMP_UINT(m0, >, 0);
  char key[16];
  size_t prev = m0;
  for (int i = 0; i < 5000; i++) {
    snprintf(key, sizeof key, "m%d", i);
    set_s(s, key, 0);
    size_t m = ac_store_memory(s);
    ASSERT_CMP_UINT(m, >=, prev);
    prev = m;
  }
  /* At least the 5000 entries' worth of bytes. */
  ASSERT_CMP_UINT(prev, >=, m0 + 5000 * 20);

  /* An out-of-line key adds at least its length, and gives it back. */
  char big[4096];
  memset(big, 'B', sizeof big);
  size_t before = ac_store_memory(s);
  ASSERT_CMP_INT(ac_store_set(s, 0, big, sizeof big, 0, NULL), >, 0);
  size_t with = ac_store_memory(s);
  ASSERT_CMP_UINT(with, >=, before + sizeof big);
  ASSERT_EQ_INT(ac_store_delete(s, 0, big, sizeof big), 0);
  ASSERT_EQ_UINT(ac_store_memory(s), before);
  ac_store_free(s);
}

/* ---- active expiry in slices, and shrinking ------------------------------- */

/* A budget clock that advances by budget_step at every reading. */
static double budget_now, budget_step;
static unsigned budget_reads;

static double fake_budget(void) {
  budget_reads++;
  budget_now += budget_step;
  return budget_now;
}

/* What a caller keeps per slot, as the Lua binding keeps values[slot]: the
 * callbacks check that the store only frees slots that hold a value and
 * only moves an entry into a slot that holds none. */
typedef struct {
  uint32_t *v; /* v[slot]: the key's id + 1, 0 for none */
  uint32_t n;
  uint32_t moves, removals;
  int refuse; /* the moved callback refuses */
} values;

static void values_removed(void *ud, uint32_t slot, int tag, const char *key,
                           size_t len, ac_removed_t why) {
  values *vs = ud;
  (void)tag, (void)key, (void)len, (void)why;
  if (slot == 0 || slot > vs->n || vs->v[slot] == 0)
    FAIL("removal of slot %u, which holds no value", slot);
  vs->v[slot] = 0;
  vs->removals++;
}

static int values_moved(void *ud, uint32_t from, uint32_t to) {
  values *vs = ud;
  if (vs->refuse) return 1;
  if (from == 0 || from > vs->n || vs->v[from] == 0)
    FAIL("move from slot %u, which holds no value", from);
  if (to == 0 || to >= from || vs->v[to] != 0)
    FAIL("move from %u to slot %u, which is not a free lower slot", from, to);
  vs->v[to] = vs->v[from];
  vs->v[from] = 0;
  vs->moves++;
  return 0;
}

static ac_store_t *new_store_v(uint32_t maxsize, values *vs, int with_moves) {
  vs->n = maxsize;
  vs->v = calloc((size_t)maxsize + 1, sizeof *vs->v);
  ASSERT_NOT_NULL(vs->v);
  ac_store_options_t o = {.maxsize = maxsize, .removed = values_removed,
                          .ud = vs, .clock = fake_clock,
                          .moved = with_moves ? values_moved : NULL,
                          .budget_clock = fake_budget};
  ac_store_t *s = ac_store_new(&o, NULL);
  ASSERT_NOT_NULL(s);
  return s;
}

/* Sets key "v<id>" and records its value. */
static int64_t set_v(ac_store_t *s, values *vs, uint32_t id, double ttl) {
  char key[16];
  snprintf(key, sizeof key, "v%u", id);
  int is_new = 0;
  int64_t slot = ac_store_set(s, 0, key, strlen(key), ttl, &is_new);
  ASSERT_CMP_INT(slot, >, 0);
  if (is_new) ASSERT_EQ_UINT(vs->v[slot], 0);
  vs->v[slot] = id + 1;
  return slot;
}

/* The slot of "v<id>" (peek), checking it holds the key's value. */
static uint32_t slot_v(ac_store_t *s, values *vs, uint32_t id) {
  char key[16];
  snprintf(key, sizeof key, "v%u", id);
  uint32_t slot = ac_store_peek(s, 0, key, strlen(key));
  if (slot != 0 && vs->v[slot] != id + 1)
    FAIL("key v%u: slot %u holds the value of v%u", id, slot, vs->v[slot] - 1);
  return slot;
}

/* Slices with no time bound until none has more to do; returns how many. */
static unsigned run_slices(ac_store_t *s, uint32_t max_checks) {
  ac_expire_report_t rep;
  unsigned n = 0;
  do {
    ac_store_expire_budget(s, max_checks, 0, &rep);
    if (++n > 100000) FAIL("slices never finish");
  } while (rep.more);
  return n;
}

/* Fills the store up to maxsize with fresh keys: none may evict (so no
 * slot was lost) and every slot handed out must be free in the caller's
 * eyes. */
static void assert_fills_to_maxsize(ac_store_t *s, values *vs) {
  uint64_t ev = stats_of(s).evictions;
  for (uint32_t id = 1000000; stats_of(s).size < stats_of(s).maxsize; id++)
    set_v(s, vs, id, 0);
  ASSERT_EQ_UINT(stats_of(s).evictions, ev);
  uint32_t held = 0;
  for (uint32_t i = 1; i <= vs->n; i++) held += vs->v[i] != 0;
  ASSERT_EQ_UINT(held, stats_of(s).maxsize);
}

TEST(expire_budget_removes_every_expired_entry_in_slices) {
  values vs = {0};
  fake_now = 100;
  budget_step = 0;
  ac_store_t *s = new_store_v(20000, &vs, 1);
  for (uint32_t i = 0; i < 10000; i++) set_v(s, &vs, i, 1);
  for (uint32_t i = 10000; i < 10100; i++) set_v(s, &vs, i, 0); /* no TTL */
  fake_now += 2;
  /* 500 checks a slice: every expired entry is gone after one pass worth
   * of slices, and a slice's count never exceeds its bound. */
  ac_expire_report_t rep;
  unsigned slices = 0;
  uint32_t removed = 0;
  do {
    removed += ac_store_expire_budget(s, 500, 0, &rep);
    ASSERT_CMP_UINT(rep.checked, <=, 500);
    ASSERT_CMP_UINT(++slices, <=, 10100 / 500 + 1);
  } while (stats_of(s).size > 100);
  ASSERT_EQ_UINT(removed, 10000);
  ASSERT_EQ_UINT(vs.removals, 10000);
  ASSERT_EQ_UINT(stats_of(s).expirations, 10000);
  ASSERT_EQ_UINT(ac_store_ttl_count(s), 0);
  for (uint32_t i = 0; i < 10000; i++) ASSERT_EQ_UINT(slot_v(s, &vs, i), 0);
  for (uint32_t i = 10000; i < 10100; i++) ASSERT_CMP_UINT(slot_v(s, &vs, i), >, 0);
  run_slices(s, 500);
  ASSERT_EQ_UINT(stats_of(s).size, 100);
  ac_store_free(s);
  free(vs.v);
}

TEST(expire_budget_slice_respects_its_check_bound) {
  values vs = {0};
  fake_now = 100;
  budget_step = 0;
  ac_store_t *s = new_store_v(4096, &vs, 1);
  for (uint32_t i = 0; i < 4000; i++) set_v(s, &vs, i, 1);
  fake_now += 2;
  ac_expire_report_t rep;
  ASSERT_EQ_UINT(ac_store_expire_budget(s, 100, 0, &rep), 100);
  ASSERT_EQ_UINT(rep.checked, 100);
  ASSERT_EQ_UINT(rep.removed, 100);
  ASSERT_EQ_INT(rep.more, 1); /* stopped among expired entries */
  ASSERT_EQ_UINT(rep.moved, 0);
  ASSERT_EQ_INT(rep.shrunk, 0); /* no shrink while expiry is hot */
  ASSERT_EQ_UINT(stats_of(s).size, 3900);
  /* 0 means no bound, but never more than one pass. */
  ASSERT_EQ_UINT(ac_store_expire_budget(s, 0, 0, &rep), 3900);
  ASSERT_EQ_UINT(rep.checked, 3900); /* 101..4000, then the pass ends */
  ac_store_free(s);
  free(vs.v);
}

TEST(expire_budget_slice_respects_its_time_budget) {
  values vs = {0};
  fake_now = 100;
  ac_store_t *s = new_store_v(20000, &vs, 1);
  for (uint32_t i = 0; i < 20000; i++) set_v(s, &vs, i, 1);
  fake_now += 2;
  /* Each reading of the budget clock says 10 us have passed; a budget of
   * 100 us allows about ten readings, one every 16 removals. */
  budget_now = 0;
  budget_step = 10e-6;
  budget_reads = 0;
  ac_expire_report_t rep;
  uint32_t removed = ac_store_expire_budget(s, 0, 100e-6, &rep);
  ASSERT_CMP_UINT(removed, >=, 16);
  ASSERT_CMP_UINT(removed, <=, 16 * 11);
  ASSERT_CMP_UINT(budget_reads, <=, 13);
  ASSERT_CMP_INT(rep.more, ==, 1);
  ASSERT_NEAR(rep.elapsed, 10e-6 * (budget_reads - 1), 1e-9);
  ASSERT_CMP_INT(rep.elapsed, >=, 0);
  /* Slices of the same budget finish the job. */
  unsigned slices = 1;
  while (rep.more) {
    ac_store_expire_budget(s, 0, 100e-6, &rep);
    ASSERT_CMP_UINT(rep.removed, <=, 16 * 11);
    ASSERT_CMP_UINT(++slices, <, 2000);
  }
  ASSERT_EQ_UINT(stats_of(s).size, 0);
  ASSERT_EQ_UINT(vs.removals, 20000);
  budget_step = 0;
  ac_store_free(s);
  free(vs.v);
}

TEST(expire_budget_skips_a_store_with_nothing_due) {
  values vs = {0};
  fake_now = 100;
  budget_step = 0;
  ac_store_t *s = new_store_v(4096, &vs, 1);
  for (uint32_t i = 0; i < 4000; i++) set_v(s, &vs, i, 50);
  ac_expire_report_t rep;
  fake_now += 10;
  ac_store_expire_budget(s, 0, 0, &rep);
  ASSERT_EQ_UINT(rep.checked, 0); /* the least deadline is 150 */
  ASSERT_EQ_INT(rep.more, 0);
  ASSERT_NEAR(rep.next_due, 150, 1e-9);
  /* A shorter TTL given later lowers the bound at once, wherever its
   * entry sits relative to the sweep. */
  int64_t late = set_v(s, &vs, 7, 1);
  ASSERT_NEAR(ac_store_ttl_left(s, (uint32_t)late), 1, 1e-9);
  fake_now += 2;
  ASSERT_EQ_UINT(ac_store_expire_budget(s, 0, 0, &rep), 1);
  ASSERT_EQ_UINT(slot_v(s, &vs, 7), 0);
  ASSERT_EQ_UINT(stats_of(s).size, 3999);
  /* The pass saw every other deadline: nothing more until 150. */
  ac_store_expire_budget(s, 0, 0, &rep);
  ASSERT_EQ_UINT(rep.checked, 0);
  ASSERT_NEAR(rep.next_due, 150, 1e-9);
  fake_now = 151;
  ASSERT_EQ_UINT(ac_store_expire_budget(s, 0, 0, &rep), 3999);
  ASSERT_NEAR(rep.next_due, INFINITY, 0);
  ac_store_free(s);
  free(vs.v);
}

TEST(memory_falls_as_expired_entries_leave) {
  values vs = {0};
  fake_now = 100;
  budget_step = 0;
  size_t empty;
  ac_store_t *s = new_store_v(100000, &vs, 1);
  empty = ac_store_memory(s);
  for (uint32_t i = 0; i < 50000; i++) set_v(s, &vs, i, 1);
  size_t full = ac_store_memory(s);
  ASSERT_CMP_UINT(full, >, empty + 50000 * 48);
  fake_now += 2;
  size_t last = full;
  ac_expire_report_t rep;
  unsigned slices = 0, shrinks = 0;
  do { /* memory never grows on the way down */
    ac_store_expire_budget(s, 5000, 0, &rep);
    size_t m = ac_store_memory(s);
    ASSERT_CMP_UINT(m, <=, last);
    shrinks += m < last;
    ASSERT_EQ_INT(rep.shrunk, m < last);
    last = m;
    ASSERT_CMP_UINT(++slices, <, 1000);
  } while (rep.more);
  ASSERT_EQ_UINT(stats_of(s).size, 0);
  ASSERT_CMP_UINT(shrinks, >=, 1);
  ASSERT_CMP_UINT(last, <=, empty); /* the slab is gone, 16 buckets left */
  ASSERT_EQ_UINT(stats_of(s).slots, 0);
  /* A store that shrank grows again as before. */
  for (uint32_t i = 0; i < 30000; i++) set_v(s, &vs, i, 0);
  for (uint32_t i = 0; i < 30000; i++) ASSERT_CMP_UINT(slot_v(s, &vs, i), >, 0);
  assert_fills_to_maxsize(s, &vs);
  ac_store_free(s);
  free(vs.v);
}

TEST(shrink_renumbers_survivors_through_the_moved_callback) {
  values vs = {0};
  fake_now = 100;
  budget_step = 0;
  ac_store_t *s = new_store_v(8192, &vs, 1);
  /* 8000 entries with a TTL and, spread among them, 80 without. */
  for (uint32_t i = 0; i < 8000; i++) set_v(s, &vs, i, i % 100 == 0 ? 0 : 1);
  /* Touch half the survivors so their LRU order is not the slot order. */
  char key[16];
  for (uint32_t i = 0; i < 8000; i += 200) {
    snprintf(key, sizeof key, "v%u", i);
    ASSERT_CMP_UINT(get_s(s, key), >, 0);
  }
  static uint32_t before[8000];
  ASSERT_EQ_UINT(walk(s, before, 8000), 8000);
  uint32_t order[80]; /* the survivors' ids, most recent first */
  int n = 0;
  for (int i = 0; i < 8000; i++)
    if ((vs.v[before[i]] - 1) % 100 == 0) order[n++] = vs.v[before[i]] - 1;
  ASSERT_EQ_INT(n, 80);
  ASSERT_EQ_UINT(order[0], 7800); /* the last one touched */
  size_t full = ac_store_memory(s);
  fake_now += 2;
  run_slices(s, 0);
  ASSERT_EQ_UINT(stats_of(s).size, 80);
  ASSERT_CMP_UINT(vs.moves, >, 0);
  /* Every survivor is found, with its value, at a slot the shrunk slab
   * holds, and the LRU order did not change. */
  ASSERT_CMP_UINT(stats_of(s).slots, <=, 160);
  for (uint32_t i = 0; i < 8000; i += 100) {
    uint32_t sl = slot_v(s, &vs, i);
    ASSERT_CMP_UINT(sl, >, 0);
    ASSERT_CMP_UINT(sl, <=, 160);
  }
  uint32_t after[80];
  ASSERT_EQ_UINT(walk(s, after, 80), 80);
  for (int i = 0; i < 80; i++) ASSERT_EQ_UINT(vs.v[after[i]] - 1, order[i]);
  ASSERT_CMP_UINT(ac_store_memory(s), <, full / 20);
  ASSERT_CMP_UINT(ac_store_longest_chain(s), <=, 8);
  assert_fills_to_maxsize(s, &vs);
  ac_store_free(s);
  free(vs.v);
}

TEST(shrink_without_moved_callback_keeps_every_slot) {
  values vs = {0};
  fake_now = 100;
  budget_step = 0;
  ac_store_t *s = new_store_v(8192, &vs, 0);
  /* Long-lived entries in slots 1..10, then 8000 that expire. */
  int64_t low[10];
  for (uint32_t i = 0; i < 10; i++) low[i] = set_v(s, &vs, i, 0);
  for (uint32_t i = 10; i < 8010; i++) set_v(s, &vs, i, 1);
  size_t full = ac_store_memory(s);
  fake_now += 2;
  run_slices(s, 0);
  ASSERT_EQ_UINT(stats_of(s).size, 10);
  for (uint32_t i = 0; i < 10; i++) ASSERT_EQ_UINT(slot_v(s, &vs, i), low[i]);
  ASSERT_CMP_UINT(ac_store_memory(s), <, full / 20); /* the free top went */
  ASSERT_EQ_UINT(vs.moves, 0);
  assert_fills_to_maxsize(s, &vs);
  ac_store_free(s);
  free(vs.v);

  /* One live entry at the top pins the slab: nothing moves, nothing is
   * lost. */
  memset(&vs, 0, sizeof vs);
  s = new_store_v(8192, &vs, 0);
  for (uint32_t i = 0; i < 8000; i++) set_v(s, &vs, i, 1);
  int64_t top = set_v(s, &vs, 8000, 0);
  full = ac_store_memory(s);
  fake_now += 2;
  run_slices(s, 0);
  ASSERT_EQ_UINT(stats_of(s).size, 1);
  ASSERT_EQ_UINT(slot_v(s, &vs, 8000), top);
  ASSERT_CMP_UINT(ac_store_memory(s), <=, full);
  assert_fills_to_maxsize(s, &vs);
  ac_store_free(s);
  free(vs.v);
}

TEST(shrink_gives_up_when_a_move_is_refused) {
  values vs = {0};
  fake_now = 100;
  budget_step = 0;
  ac_store_t *s = new_store_v(8192, &vs, 1);
  for (uint32_t i = 0; i < 8000; i++) set_v(s, &vs, i, i % 100 == 0 ? 0 : 1);
  int64_t slot[80];
  for (uint32_t i = 0; i < 8000; i += 100) slot[i / 100] = slot_v(s, &vs, i);
  vs.refuse = 1;
  fake_now += 2;
  run_slices(s, 0);
  ASSERT_EQ_UINT(stats_of(s).size, 80);
  ASSERT_EQ_UINT(vs.moves, 0);
  for (uint32_t i = 0; i < 8000; i += 100) ASSERT_EQ_UINT(slot_v(s, &vs, i), slot[i / 100]);
  /* Given up for now: more slices do not ask again before the store
   * halves. */
  vs.refuse = 0;
  run_slices(s, 0);
  ASSERT_EQ_UINT(vs.moves, 0);
  assert_fills_to_maxsize(s, &vs);
  ac_store_free(s);
  free(vs.v);
}

TEST(shrink_does_not_move_entries_about_to_expire) {
  values vs = {0};
  fake_now = 100;
  budget_step = 0;
  ac_store_t *s = new_store_v(8192, &vs, 1);
  /* 8000 entries expire at 101; 40 at the top of the slab at 101.5. */
  for (uint32_t i = 0; i < 8000; i++) set_v(s, &vs, i, 1);
  for (uint32_t i = 8000; i < 8040; i++) set_v(s, &vs, i, 1.5);
  fake_now = 101;
  ac_expire_report_t rep;
  run_slices(s, 0);
  ASSERT_EQ_UINT(stats_of(s).size, 40);
  ASSERT_EQ_UINT(vs.moves, 0); /* waiting: they leave on their own */
  ac_store_expire_budget(s, 0, 0, &rep);
  ASSERT_EQ_INT(rep.more, 0);  /* and waiting asks for no early slice */
  fake_now = 102;
  run_slices(s, 0); /* they expire; the shrink to 80 slots completes */
  ASSERT_EQ_UINT(stats_of(s).size, 0);
  ASSERT_EQ_UINT(vs.moves, 0);
  ASSERT_EQ_UINT(stats_of(s).slots, 80);
  run_slices(s, 0); /* and the next one lets the rest go */
  ASSERT_EQ_UINT(stats_of(s).slots, 0);
  ac_store_free(s);
  free(vs.v);
}

/* A set while the free list is being sorted may get a slot above the
 * target (and above the highest live entry): the shrink must then move
 * that entry down too, not cut it off. */
TEST(shrink_keeps_entries_set_into_high_slots_meanwhile) {
  values vs = {0};
  fake_now = 100;
  ac_store_t *s = new_store_v(8192, &vs, 1);
  /* Slots 1..100 and 4001 live on (a target of 202 slots leaves room for
   * the sets below); 101..4000 and 4002..7000 expire. */
  for (uint32_t i = 0; i < 7000; i++)
    set_v(s, &vs, i, i < 100 || i == 4000 ? 0 : 1);
  fake_now += 2;
  ASSERT_EQ_UINT(ac_store_expire(s, 100000), 6899); /* no shrink yet */
  /* Slices of about 256 work units each (every reading of the budget
   * clock says a second passed): the scan down to slot 4001 takes a dozen,
   * then sorting the ~7000 free slots, highest first, takes dozens more.
   * Sets in the 3rd to 5th slices land above the scan (the free list hands
   * out the highest slots first), sets from the 14th on while slots above
   * 4001 are still unsorted. */
  budget_now = 0;
  budget_step = 1;
  ac_expire_report_t rep;
  uint32_t id = 20000;
  for (unsigned n = 1; n < 5000; n++) {
    ac_store_expire_budget(s, 0, 0.5, &rep);
    if ((n >= 3 && n <= 5) || (n >= 14 && n <= 40)) set_v(s, &vs, id++, 0);
    if (!rep.more && n > 40) break;
  }
  budget_step = 0;
  run_slices(s, 0);
  ASSERT_EQ_UINT(stats_of(s).size, 101 + (id - 20000));
  ASSERT_CMP_UINT(stats_of(s).slots, <=, 202);
  for (uint32_t i = 0; i < 100; i++) ASSERT_CMP_UINT(slot_v(s, &vs, i), >, 0);
  ASSERT_CMP_UINT(slot_v(s, &vs, 4000), >, 0);
  for (uint32_t i = 20000; i < id; i++) ASSERT_CMP_UINT(slot_v(s, &vs, i), >, 0);
  assert_fills_to_maxsize(s, &vs);
  ac_store_free(s);
  free(vs.v);
}

/* An entry moved behind the sweep's cursor before the pass reached it must
 * still bound `due`, or the sweep would skip it once it expires. */
TEST(shrink_moves_do_not_hide_deadlines_from_the_sweep) {
  values vs = {0};
  fake_now = 100;
  budget_step = 0;
  ac_store_t *s = new_store_v(8192, &vs, 1);
  /* id 0 (slot 1) expires at 101, ids 4000..4079 at 105; the rest, without
   * a TTL, are deleted. */
  for (uint32_t i = 0; i < 8000; i++) {
    double ttl = i == 0 ? 1 : (i >= 4000 && i < 4080 ? 5 : 0);
    set_v(s, &vs, i, ttl);
  }
  char key[16];
  for (uint32_t i = 1; i < 8000; i++) {
    if (i >= 4000 && i < 4080) continue;
    snprintf(key, sizeof key, "v%u", i);
    ASSERT_EQ_INT(ac_store_delete(s, 0, key, strlen(key)), 0);
  }
  /* One slice: the sweep checks slots 1..1000 (removing id 0), then the
   * shrink moves the 80 survivors into low slots, behind the cursor. */
  fake_now = 101.5;
  ac_expire_report_t rep;
  ASSERT_EQ_UINT(ac_store_expire_budget(s, 1000, 0, &rep), 1);
  ASSERT_EQ_UINT(rep.moved, 80);
  while (rep.more) ac_store_expire_budget(s, 1000, 0, &rep);
  ASSERT_NEAR(rep.next_due, 105, 1e-9);
  fake_now = 106;
  uint32_t before = vs.removals;
  run_slices(s, 1000);
  ASSERT_EQ_UINT(vs.removals - before, 80);
  ASSERT_EQ_UINT(stats_of(s).size, 0);
  ac_store_free(s);
  free(vs.v);
}

/* Random sets, deletes, reads, clock steps and short slices against a
 * model: a shrink spread over many slices while the store is in use loses
 * no key, no value and no slot. */
static void shrink_model(int with_moves) {
  enum { MAX = 4096, KEYS = 6000 };
  values vs = {0};
  fake_now = 100;
  ac_store_t *s = new_store_v(MAX, &vs, with_moves);
  static double model[KEYS]; /* deadline, 0: absent, INFINITY: no TTL */
  uint64_t rs = 0x5eed5eedull;
  budget_now = 0;
  budget_step = 3e-6; /* slices of ~8 readings */
  for (int round = 0; round < 40; round++) {
    /* Fill up with short TTLs, then let most of it expire. */
    for (int op = 0; op < 6000; op++) {
      uint32_t id = (uint32_t)(rnd_next(&rs) % KEYS);
      uint64_t r = rnd_next(&rs) % 200;
      /* After a quiet spell, a while without sets lets a shrink begin; sets
       * come back while it is under way. */
      bool calm = round % 2 == 1 && op >= 1000 && op < 1600;
      if (r < 110 && !calm) {
        double ttl = r < 109 ? 0.5 + (double)(rnd_next(&rs) % 100) / 100 : 0;
        /* No evictions: the model does not know the LRU order. */
        if (slot_v(s, &vs, id) == 0 && stats_of(s).size >= MAX) continue;
        set_v(s, &vs, id, ttl);
        model[id] = ttl ? fake_now + ttl : INFINITY;
      } else if (r < 130) {
        char key[16];
        snprintf(key, sizeof key, "v%u", id);
        int rc = ac_store_delete(s, 0, key, strlen(key));
        ASSERT_EQ_INT(rc, model[id] > fake_now ? 0 : AC_ENOENT);
        model[id] = 0;
      } else if (r < 180) {
        uint32_t sl = slot_v(s, &vs, id);
        ASSERT_EQ_INT(sl != 0, model[id] > fake_now);
      } else if (r < 194) {
        ac_expire_report_t rep;
        ac_store_expire_budget(s, 200, 20e-6, &rep);
      } else {
        fake_now += 0.002;
      }
      if (round % 2 == 1 && op == 1000) { /* a quiet spell: mostly expiry */
        fake_now += 3;
        for (uint32_t k = 0; k < KEYS; k++)
          if (model[k] != INFINITY && model[k] <= fake_now) model[k] = 0;
      }
    }
  }
  uint32_t live = 0;
  for (uint32_t k = 0; k < KEYS; k++) {
    uint32_t sl = slot_v(s, &vs, k);
    ASSERT_EQ_INT(sl != 0, model[k] > fake_now);
    live += sl != 0;
  }
  if (with_moves) ASSERT_CMP_UINT(vs.moves, >, 0); /* shrinks did happen */
  ASSERT_CMP_UINT(stats_of(s).size, >=, live);
  ASSERT_EQ_UINT(stats_of(s).evictions, 0);
  budget_step = 0;
  fake_now += 10;
  run_slices(s, 0);
  live = 0;
  for (uint32_t k = 0; k < KEYS; k++) {
    ASSERT_EQ_INT(slot_v(s, &vs, k) != 0, model[k] == INFINITY);
    live += model[k] == INFINITY;
  }
  ASSERT_EQ_UINT(stats_of(s).size, live);
  assert_fills_to_maxsize(s, &vs);
  ac_store_free(s);
  free(vs.v);
}

TEST(shrink_under_random_traffic_matches_a_model) { shrink_model(1); }

/* Without the moved callback, the shrinks that cannot finish are given up
 * while sets go on. */
TEST(shrink_without_moves_under_random_traffic_matches_a_model) {
  shrink_model(0);
}

/* Brute-forces n keys of the form "<prefix><counter>" whose hash under the
 * current seed has the same low `bits` bits as the first key found.  Keys
 * are written into keys[i] (at most 24 bytes each). */
static void collide_keys(const char *prefix, int bits, char (*keys)[24],
                         size_t *lens, int n) {
  uint32_t mask = (1u << bits) - 1, target = 0;
  int found = 0;
  char buf[24];
  for (uint64_t i = 0; found < n; i++) {
    int len = snprintf(buf, sizeof buf, "%s%" PRIu64, prefix, i);
    uint32_t h = (uint32_t)ac__hash(0, buf, (size_t)len) & mask;
    if (found == 0) target = h;
    if (h != target) continue;
    memcpy(keys[found], buf, (size_t)len);
    lens[found] = (size_t)len;
    found++;
  }
}

TEST(colliding_keys_in_one_chain_are_all_found) {
  ac__hash_set_seed(0x1111222233334444ull, 0x5555666677778888ull);
  enum { N = 48 };
  static char keys[N][24];
  static size_t lens[N];
  collide_keys("c", 10, keys, lens, N);
  recorder r = {0};
  ac_store_t *s = new_store(64, &r);
  int64_t slot[N];
  for (int i = 0; i < N; i++) {
    int is_new = 0;
    slot[i] = ac_store_set(s, 0, keys[i], lens[i], 0, &is_new);
    ASSERT_CMP_INT(slot[i], >, 0);
    ASSERT_EQ_INT(is_new, 1);
  }
  set_s(s, "other", 0);
  ASSERT_EQ_UINT(ac_store_longest_chain(s), N); /* one bucket holds them all */
  for (int i = 0; i < N; i++)
    ASSERT_EQ_UINT(ac_store_get(s, 0, keys[i], lens[i]), slot[i]);
  /* Out of the middle, the first and the last inserted. */
  static const int gone[] = {N / 2, 0, N - 1};
  for (int g = 0; g < 3; g++)
    ASSERT_EQ_INT(ac_store_delete(s, 0, keys[gone[g]], lens[gone[g]]), 0);
  ASSERT_EQ_UINT(ac_store_longest_chain(s), N - 3);
  for (int i = 0; i < N; i++) {
    int deleted = i == N / 2 || i == 0 || i == N - 1;
    ASSERT_EQ_UINT(ac_store_get(s, 0, keys[i], lens[i]), deleted ? 0 : slot[i]);
  }
  ASSERT_CMP_UINT(get_s(s, "other"), >, 0);
  ASSERT_EQ_UINT(r.n, 3);
  ac_store_free(s);
  recorder_free(&r);
}

/* Inserts the keys into a fresh store of 1024 and returns its longest
 * chain, after checking every key is there. */
static uint32_t chain_for(char (*keys)[24], const size_t *lens, int n) {
  ac_store_t *s = new_store(1024, NULL);
  int64_t *slot = malloc((size_t)n * sizeof *slot);
  ASSERT_NOT_NULL(slot);
  for (int i = 0; i < n; i++) {
    slot[i] = ac_store_set(s, 0, keys[i], lens[i], 0, NULL);
    ASSERT_CMP_INT(slot[i], >, 0);
  }
  ASSERT_EQ_UINT(stats_of(s).size, n);
  for (int i = 0; i < n; i++)
    ASSERT_EQ_UINT(ac_store_peek(s, 0, keys[i], lens[i]), slot[i]);
  uint32_t longest = ac_store_longest_chain(s);
  free(slot);
  ac_store_free(s);
  return longest;
}

TEST(hash_flooding_fails_without_the_seed) {
  enum { N = 1000 };
  static char keys[N][24];
  static size_t lens[N];
  /* An attacker who knows the seed crafts 1000 keys with equal low 11 bits:
   * in a store holding 1000 keys (2048 buckets: the load factor stays at
   * most 1/2) they share one bucket. */
  const uint64_t k0 = 0x0706050403020100ull, k1 = 0x0f0e0d0c0b0a0908ull;
  ac__hash_set_seed(k0, k1);
  collide_keys("flood-", 11, keys, lens, N);
  uint32_t attacked = chain_for(keys, lens, N);
  ASSERT_CMP_UINT(attacked, >=, N);

  /* The same keys against the seeds other processes draw: a chain no longer
   * than a random placement gives (1000 keys in 2048 buckets: a chain of 9
   * is far less likely than in 1024; these seeds are fixed so the test is
   * reproducible). */
  uint64_t rs = 0xA5A5A5A5DEADBEEFull;
  for (int t = 0; t < 8; t++) {
    uint64_t a = rnd_next(&rs), b = rnd_next(&rs);
    ac__hash_set_seed(a, b);
    uint32_t longest = chain_for(keys, lens, N);
    ASSERT_CMP_UINT(longest, <=, 8);
  }
  /* And one seed from the OS, as a fresh process gets it (bound looser so
   * the test cannot flake: a chain of 13 has a probability below 1e-7). */
  uint64_t k[2];
  ASSERT_EQ_INT(getrandom(k, sizeof k, 0), (ssize_t)sizeof k);
  ac__hash_set_seed(k[0], k[1]);
  ASSERT_CMP_UINT(chain_for(keys, lens, N), <=, 12);

  /* The attack is reproducible only under its own seed. */
  ac__hash_set_seed(k0, k1);
  ASSERT_CMP_UINT(chain_for(keys, lens, N), >=, N);
}

/* Forks a child that hashes a fixed key with whatever seed it has and
 * reports the hash. */
static uint64_t hash_in_child(void) {
  int fd[2];
  ASSERT_EQ_INT(pipe(fd), 0);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  ASSERT_CMP_INT(pid, >=, 0);
  if (pid == 0) {
    close(fd[0]);
    uint64_t h = ac__hash(0, "the same key", 12);
    ssize_t w = write(fd[1], &h, sizeof h);
    _exit(w == (ssize_t)sizeof h ? 0 : 1);
  }
  close(fd[1]);
  uint64_t h = 0;
  ASSERT_EQ_INT(read(fd[0], &h, sizeof h), (ssize_t)sizeof h);
  close(fd[0]);
  int status = 0;
  ASSERT_EQ_INT(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  return h;
}

TEST(each_process_draws_its_own_seed) {
  /* This process has not hashed yet, so no seed is drawn: each child draws
   * its own on its first hash, as separate processes do. */
  uint64_t h1 = hash_in_child();
  uint64_t h2 = hash_in_child();
  uint64_t h3 = hash_in_child();
  ASSERT_CMP_HEX(h1, !=, h2);
  ASSERT_CMP_HEX(h1, !=, h3);
  ASSERT_CMP_HEX(h2, !=, h3);
  uint64_t mine = ac__hash(0, "the same key", 12);
  ASSERT_CMP_HEX(mine, !=, h1);
  ASSERT_CMP_HEX(mine, !=, h2);
  ASSERT_CMP_HEX(mine, ==, ac__hash(0, "the same key", 12)); /* stable */
  /* Keyed for real: not the hash under an all-zero key. */
  ac__hash_set_seed(0, 0);
  uint64_t unkeyed = ac__hash(0, "the same key", 12);
  ASSERT_CMP_HEX(mine, !=, unkeyed);
  ASSERT_CMP_HEX(h1, !=, unkeyed);
  /* The tag is part of the input. */
  ASSERT_CMP_HEX(ac__hash(0, "k", 1), !=, ac__hash(1, "k", 1));
}

/* Many keys through several doublings of the slab and the buckets: every
 * key stays findable. */
static void fill_and_check(uint32_t maxsize, int n) {
  ac__hash_set_seed(0x5851F42D4C957F2Dull, 0x14057B7EF767814Full);
  ac_store_t *s = new_store(maxsize, NULL);
  int64_t *slot = malloc((size_t)n * sizeof *slot);
  ASSERT_NOT_NULL(slot);
  char key[24];
  for (int i = 0; i < n; i++) {
    snprintf(key, sizeof key, "grow-%d", i);
    slot[i] = set_s(s, key, 0);
    ASSERT_CMP_INT(slot[i], >, 0);
    for (int j = 0; j <= i; j++) { /* every key so far, after each insert */
      snprintf(key, sizeof key, "grow-%d", j);
      if (ac_store_peek(s, 0, key, strlen(key)) != slot[j])
        FAIL("after inserting key %d of %d, key %d (\"%s\", slot %" PRId64
             ") is lost; peek gives %u",
             i, n, j, key, slot[j], ac_store_peek(s, 0, key, strlen(key)));
    }
  }
  ASSERT_EQ_UINT(stats_of(s).size, n);
  ASSERT_CMP_UINT(ac_store_longest_chain(s), <=, 16);
  free(slot);
  ac_store_free(s);
}

TEST(growth_keeps_every_key) { fill_and_check(100000, 600); }

/* The same with an allocator that returns dirty memory, as a reused heap
 * block does: growing the slab must not read entries it has not written. */
TEST(growth_keeps_every_key_with_dirty_memory) {
  ASSERT_EQ_INT(
      ac_replace_allocator(dirty_malloc, dirty_realloc, dirty_free), 0);
  fill_and_check(100000, 600);
  restore_allocator();
}

TEST(replace_allocator_rejects_null) {
  ASSERT_EQ_INT(ac_replace_allocator(NULL, realloc, free), AC_EINVAL);
  ASSERT_EQ_INT(ac_replace_allocator(malloc, NULL, free), AC_EINVAL);
  ASSERT_EQ_INT(ac_replace_allocator(malloc, realloc, NULL), AC_EINVAL);
  /* The current allocator stays in place. */
  install_counting_allocator();
  ASSERT_EQ_INT(ac_replace_allocator(NULL, NULL, NULL), AC_EINVAL);
  ac_store_t *s = new_store(4, NULL);
  ASSERT_CMP_INT(live_blocks, >, 0);
  ac_store_free(s);
  ASSERT_EQ_INT(live_blocks, 0);
  restore_allocator();
}

TEST(new_fails_cleanly_when_out_of_memory) {
  install_counting_allocator();
  ac_store_options_t o = {.maxsize = 16, .clock = fake_clock};
  /* Fail each of the three allocations (the store, the policy's state, the
   * buckets): each reports AC_ENOMEM and leaves nothing allocated. */
  for (int nth = 1; nth <= 3; nth++) {
    fail_nth(nth);
    int err = 0;
    ASSERT_NULL(ac_store_new(&o, &err));
    ASSERT_EQ_INT(err, AC_ENOMEM);
    ASSERT_EQ_INT(live_blocks, 0);
    ASSERT_CMP_INT(alloc_calls, >=, nth); /* the failure was reached */
  }
  disarm_failure();
  int err = 1;
  ac_store_t *s = ac_store_new(&o, &err);
  ASSERT_NOT_NULL(s);
  ASSERT_EQ_INT(err, 0);
  ac_store_free(s);
  ASSERT_EQ_INT(live_blocks, 0);
  restore_allocator();
}

TEST(set_fails_cleanly_when_out_of_memory) {
  recorder r = {0};
  install_counting_allocator();
  ac_store_t *s = new_store(4, &r);
  set_s(s, "a", 0);
  set_s(s, "b", 0);
  set_s(s, "c", 0);
  set_s(s, "d", 0); /* full: a new key would evict "a" */
  get_s(s, "b");
  ac_store_stats_t before = stats_of(s);
  size_t mem = ac_store_memory(s);
  long blocks = live_blocks;
  static const char *const order[] = {"b", "d", "c", "a"};
  assert_mru_keys(s, order, 4);

  char big[64];
  memset(big, 'K', sizeof big);
  arm_failure(1);
  ASSERT_EQ_INT(ac_store_set(s, 0, big, sizeof big, 0, NULL), AC_ENOMEM);
  disarm_failure();

  /* Unchanged: nothing evicted or reported, same order, same memory. */
  ASSERT_EQ_UINT(r.n, 0);
  ac_store_stats_t after = stats_of(s);
  ASSERT_EQ_UINT(after.size, before.size);
  ASSERT_EQ_UINT(after.evictions, before.evictions);
  ASSERT_EQ_UINT(after.hits, before.hits);
  ASSERT_EQ_UINT(after.misses, before.misses);
  ASSERT_EQ_UINT(ac_store_memory(s), mem);
  ASSERT_EQ_INT(live_blocks, blocks);
  assert_mru_keys(s, order, 4);
  ASSERT_EQ_UINT(ac_store_peek(s, 0, big, sizeof big), 0);

  /* Still usable: the same set now succeeds and evicts "a". */
  int is_new = 0;
  int64_t sl = ac_store_set(s, 0, big, sizeof big, 0, &is_new);
  ASSERT_CMP_INT(sl, >, 0);
  ASSERT_EQ_INT(is_new, 1);
  ASSERT_EQ_UINT(r.n, 1);
  ASSERT_EQ_STR(r.ev[0].key, "a");
  ASSERT_EQ_UINT(ac_store_get(s, 0, big, sizeof big), sl);
  ac_store_free(s);
  ASSERT_EQ_INT(live_blocks, 0);
  restore_allocator();
  recorder_free(&r);
}

TEST(slab_growth_fails_cleanly_when_out_of_memory) {
  recorder r = {0};
  install_counting_allocator();
  ac_store_t *s = new_store(100, &r);
  char key[16];
  for (int i = 0; i < 16; i++) { /* the first slab holds 16 */
    snprintf(key, sizeof key, "g%d", i);
    ASSERT_CMP_INT(set_s(s, key, 0), >, 0);
  }
  size_t mem = ac_store_memory(s);
  arm_failure(1); /* everything fails: the slab cannot grow */
  ASSERT_EQ_INT(set_s(s, "g16", 0), AC_ENOMEM);
  ASSERT_EQ_INT(set_s(s, "a-key-longer-than-eighteen", 0), AC_ENOMEM);
  disarm_failure();
  ASSERT_EQ_UINT(stats_of(s).size, 16);
  ASSERT_EQ_UINT(ac_store_memory(s), mem);
  ASSERT_EQ_UINT(peek_s(s, "g16"), 0);
  ASSERT_EQ_UINT(r.n, 0);
  for (int i = 0; i < 16; i++) {
    snprintf(key, sizeof key, "g%d", i);
    ASSERT_CMP_UINT(peek_s(s, key), >, 0);
  }
  /* Afterwards the store grows normally. */
  for (int i = 16; i < 100; i++) {
    snprintf(key, sizeof key, "g%d", i);
    ASSERT_CMP_INT(set_s(s, key, 0), >, 0);
  }
  for (int i = 0; i < 100; i++) {
    snprintf(key, sizeof key, "g%d", i);
    ASSERT_CMP_UINT(peek_s(s, key), >, 0);
  }
  ASSERT_EQ_UINT(r.n, 0);
  ac_store_free(s);
  ASSERT_EQ_INT(live_blocks, 0);
  restore_allocator();
  recorder_free(&r);
}

/* The bucket array fails to double: a harmless failure, chains get longer
 * and nothing is lost. */
TEST(bucket_growth_failure_is_harmless) {
  install_counting_allocator();
  ac_store_t *s = new_store(64, NULL);
  char key[16];
  for (int i = 0; i < 32; i++) { /* slab of 32; 16 buckets */
    snprintf(key, sizeof key, "b%d", i);
    if (i == 16) {
      /* The 17th key: the policy's nodes (call 1) and the slab (call 2)
       * must grow, and the buckets double (call 3): fail only the buckets. */
      fail_nth(3);
    }
    ASSERT_CMP_INT(set_s(s, key, 0), >, 0);
    if (i == 16) {
      ASSERT_EQ_INT(alloc_calls, 3); /* the failure was reached */
      disarm_failure();
    }
  }
  for (int i = 0; i < 32; i++) {
    snprintf(key, sizeof key, "b%d", i);
    ASSERT_CMP_UINT(peek_s(s, key), >, 0);
  }
  ASSERT_EQ_UINT(stats_of(s).size, 32);
  ac_store_free(s);
  ASSERT_EQ_INT(live_blocks, 0);
  restore_allocator();
}
