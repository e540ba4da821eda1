/* Tests of the policy interface (ac_policy.h): the events a store sends a
 * policy and their order, eviction of the policy's victim, refused
 * admission, renumbering and resizing while the store shrinks, failures,
 * and the LRU policy through its own API.
 *
 * A recording policy logs every call, keeps its own per-slot array (which
 * slots it believes live, and the hash it was given) and checks the
 * contract as it goes: no insert into a live slot, no hit, removal or move
 * of a slot it does not hold, no slot above its last resize. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ac_alloc.h"
#include "ac_error.h"
#include "ac_policy.h"
#include "ac_store.h"
#include "hash.h"
#include "test_harness.h"
#include "test_alloc.h"

static double fake_now = 1000.0;
static double fake_clock(void) { return fake_now; }

/* ---- the recording policy --------------------------------------------- */

enum { EV_CREATE = 1, EV_DESTROY, EV_RESIZE, EV_INSERT, EV_HIT, EV_VICTIM,
       EV_REMOVE, EV_MOVE };

typedef struct {
  int type;
  uint32_t slot, other; /* other: a move's `to`, a resize's size */
  uint32_t hash;
  ac_removed_t why;
} event;

typedef struct {
  event ev[4096]; /* the first events, in order */
  int n;
  long count[16]; /* every event, by type */
  uint32_t cap;       /* slots covered by the last resize */
  uint8_t *live;      /* live[slot], per-slot state of the policy's own */
  uint32_t *hash_of;  /* hash_of[slot] */
  uint32_t nlive;
  /* what victim() answers */
  int choose;         /* CHOOSE_* */
  uint32_t fixed;     /* CHOOSE_FIXED: this slot */
  int fail_resize;    /* resize to a larger size fails */
} rec;

enum { CHOOSE_LOWEST = 1, CHOOSE_HIGHEST, CHOOSE_FIXED, CHOOSE_NONE };

static rec *the_rec; /* create() hands this out; one store per test */
static int destroyed;

static void log_ev(rec *r, int type, uint32_t slot, uint32_t other,
                   uint32_t hash, ac_removed_t why) {
  r->count[type]++;
  if (r->n < (int)(sizeof r->ev / sizeof r->ev[0]))
    r->ev[r->n++] = (event){type, slot, other, hash, why};
}

static void *rec_create(uint32_t maxsize) {
  (void)maxsize;
  log_ev(the_rec, EV_CREATE, 0, maxsize, 0, 0);
  return the_rec;
}

static void rec_destroy(void *st) {
  rec *r = st;
  log_ev(r, EV_DESTROY, 0, 0, 0, 0);
  free(r->live);
  free(r->hash_of);
  r->live = NULL;
  r->hash_of = NULL;
  destroyed++;
}

static int rec_resize(void *st, uint32_t slots) {
  rec *r = st;
  log_ev(r, EV_RESIZE, 0, slots, 0, 0);
  if (slots > r->cap && r->fail_resize) return AC_ENOMEM;
  for (uint32_t i = slots + 1; i <= r->cap; i++)
    if (r->live[i]) FAIL("resize to %u cuts off live slot %u", slots, i);
  uint8_t *l = realloc(r->live, (size_t)slots + 1);
  uint32_t *h = realloc(r->hash_of, ((size_t)slots + 1) * sizeof *h);
  if (l == NULL || h == NULL) FAIL("out of memory in the recorder");
  for (uint32_t i = r->cap + 1; i <= slots; i++) l[i] = 0;
  r->live = l;
  r->hash_of = h;
  r->cap = slots;
  return 0;
}

static void rec_insert(void *st, uint32_t slot, uint32_t hash) {
  rec *r = st;
  log_ev(r, EV_INSERT, slot, 0, hash, 0);
  if (slot == 0 || slot > r->cap) FAIL("insert into slot %u, above %u", slot, r->cap);
  if (r->live[slot]) FAIL("insert into live slot %u", slot);
  r->live[slot] = 1;
  r->hash_of[slot] = hash;
  r->nlive++;
}

static void rec_hit(void *st, uint32_t slot, uint32_t hash) {
  rec *r = st;
  log_ev(r, EV_HIT, slot, 0, hash, 0);
  if (slot == 0 || slot > r->cap || !r->live[slot]) FAIL("hit on slot %u, not live", slot);
  if (r->hash_of[slot] != hash) FAIL("hit on slot %u with another hash", slot);
}

static uint32_t rec_victim(void *st, uint32_t hash) {
  rec *r = st;
  uint32_t v = 0;
  if (r->choose == CHOOSE_FIXED || r->choose == CHOOSE_NONE) {
    v = r->choose == CHOOSE_FIXED ? r->fixed : 0;
  } else {
    for (uint32_t i = 1; i <= r->cap; i++)
      if (r->live[i]) {
        v = i;
        if (r->choose == CHOOSE_LOWEST) break;
      }
  }
  log_ev(r, EV_VICTIM, v, 0, hash, 0);
  return v;
}

static void rec_remove(void *st, uint32_t slot, uint32_t hash, ac_removed_t why) {
  rec *r = st;
  log_ev(r, EV_REMOVE, slot, 0, hash, why);
  if (slot == 0 || slot > r->cap || !r->live[slot]) FAIL("remove of slot %u, not live", slot);
  if (r->hash_of[slot] != hash) FAIL("remove of slot %u with another hash", slot);
  r->live[slot] = 0;
  r->nlive--;
}

static void rec_move(void *st, uint32_t from, uint32_t to) {
  rec *r = st;
  log_ev(r, EV_MOVE, from, to, 0, 0);
  if (from == 0 || from > r->cap || !r->live[from]) FAIL("move from slot %u, not live", from);
  if (to == 0 || to > r->cap || r->live[to]) FAIL("move into slot %u, not free", to);
  r->live[to] = 1;
  r->hash_of[to] = r->hash_of[from];
  r->live[from] = 0;
}

/* Its order: by slot, highest first (anything but slot order would do). */
static uint32_t rec_next(const void *st, uint32_t slot) {
  const rec *r = st;
  for (uint32_t i = slot == 0 ? r->cap : slot - 1; i >= 1; i--)
    if (r->live[i]) return i;
  return 0;
}

static size_t rec_memory(const void *st) {
  const rec *r = st;
  return 1000 + r->cap * 5;
}

static const ac_policy_t rec_policy = {
    .name = "recorder", .create = rec_create, .destroy = rec_destroy,
    .resize = rec_resize, .on_insert = rec_insert, .on_hit = rec_hit,
    .victim = rec_victim, .on_remove = rec_remove, .on_move = rec_move,
    .next = rec_next, .memory = rec_memory};

/* ---- helpers ------------------------------------------------------------ */

typedef struct {
  uint32_t slot;
  ac_removed_t why;
  char key[32];
  int policy_had_it; /* the policy still held the slot when we were told */
} removal;

static removal removals[4096];
static int nremovals;

static void on_removed(void *ud, uint32_t slot, int tag, const char *key,
                       size_t len, ac_removed_t why) {
  rec *r = ud;
  (void)tag;
  if (nremovals == (int)(sizeof removals / sizeof removals[0])) return;
  removal *x = &removals[nremovals++];
  x->slot = slot;
  x->why = why;
  snprintf(x->key, sizeof x->key, "%.*s", (int)len, key);
  x->policy_had_it = r != NULL && r->live != NULL && slot <= r->cap && r->live[slot];
}

static int values_moved(void *ud, uint32_t from, uint32_t to) {
  (void)ud, (void)from, (void)to;
  return 0;
}

static rec *new_rec(int choose) {
  rec *r = calloc(1, sizeof *r);
  ASSERT_NOT_NULL(r);
  r->choose = choose;
  the_rec = r;
  nremovals = 0;
  destroyed = 0;
  return r;
}

static ac_store_t *new_store_p(uint32_t maxsize, rec *r, int with_moves) {
  ac_store_options_t o = {.maxsize = maxsize, .removed = on_removed, .ud = r,
                          .clock = fake_clock, .policy = &rec_policy,
                          .moved = with_moves ? values_moved : NULL};
  int err = 1;
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

static uint32_t hash_s(const char *key) {
  return (uint32_t)ac__hash(0, key, strlen(key));
}

static ac_store_stats_t stats_of(const ac_store_t *s) {
  ac_store_stats_t st;
  ac_store_stats(s, &st);
  return st;
}

#define ASSERT_EVENT(r, i, t, sl, h)                                          \
  do {                                                                        \
    ASSERT_CMP_INT((i), <, (r)->n);                                           \
    ASSERT_EQ_INT((r)->ev[i].type, (t));                                      \
    ASSERT_EQ_UINT((r)->ev[i].slot, (sl));                                    \
    ASSERT_EQ_UINT((r)->ev[i].hash, (h));                                     \
  } while (0)


/* ======================================================================== */

TEST(policy_events_arrive_in_order) {
  rec *r = new_rec(CHOOSE_LOWEST);
  ac_store_t *s = new_store_p(3, r, 0);
  ASSERT_EQ_INT(r->ev[0].type, EV_CREATE);
  ASSERT_EQ_UINT(r->ev[0].other, 3); /* maxsize */
  int e = r->n;

  int64_t a = set_s(s, "a", 0);
  /* The first slot needs room: resize before the insert. */
  ASSERT_EQ_INT(r->ev[e].type, EV_RESIZE);
  ASSERT_CMP_UINT(r->ev[e].other, >=, (uint32_t)a);
  ASSERT_EVENT(r, e + 1, EV_INSERT, (uint32_t)a, hash_s("a"));
  e = r->n;
  int64_t b = set_s(s, "b", 0);
  ASSERT_EVENT(r, e, EV_INSERT, (uint32_t)b, hash_s("b"));
  ASSERT_EQ_INT(r->n, e + 1);

  e = r->n;
  ASSERT_EQ_UINT(get_s(s, "a"), a);               /* a hit */
  ASSERT_EQ_INT(set_s(s, "b", 5), b);             /* a set on a live key */
  ASSERT_EQ_UINT(get_s(s, "zz"), 0);              /* a miss: nothing */
  ASSERT_EQ_UINT(ac_store_peek(s, 0, "a", 1), a); /* a peek: nothing */
  ac_store_ttl_left(s, (uint32_t)b);              /* nothing */
  ASSERT_EQ_INT(r->n, e + 2);
  ASSERT_EVENT(r, e, EV_HIT, (uint32_t)a, hash_s("a"));
  ASSERT_EVENT(r, e + 1, EV_HIT, (uint32_t)b, hash_s("b"));

  /* Full store: victim (with the new key's hash), its removal, then the
   * new key's insert; the removal callback runs after the policy's. */
  int64_t c = set_s(s, "c", 0);
  e = r->n;
  int64_t d = set_s(s, "d", 0);
  ASSERT_EQ_INT(r->n, e + 3);
  ASSERT_EVENT(r, e, EV_VICTIM, (uint32_t)a, hash_s("d")); /* the lowest */
  ASSERT_EVENT(r, e + 1, EV_REMOVE, (uint32_t)a, hash_s("a"));
  ASSERT_EQ_INT(r->ev[e + 1].why, AC_REMOVED_EVICTED);
  ASSERT_EVENT(r, e + 2, EV_INSERT, (uint32_t)d, hash_s("d"));
  ASSERT_EQ_UINT(d, a); /* the freed slot */
  ASSERT_EQ_INT(nremovals, 1);
  ASSERT_EQ_STR(removals[0].key, "a");
  ASSERT_EQ_INT(removals[0].policy_had_it, 0);

  /* Every other way out. */
  e = r->n;
  ASSERT_EQ_INT(ac_store_delete(s, 0, "c", 1), 0);
  ASSERT_EVENT(r, e, EV_REMOVE, (uint32_t)c, hash_s("c"));
  ASSERT_EQ_INT(r->ev[e].why, AC_REMOVED_DELETED);
  fake_now += 10; /* b expires */
  e = r->n;
  ASSERT_EQ_UINT(get_s(s, "b"), 0);
  ASSERT_EVENT(r, e, EV_REMOVE, (uint32_t)b, hash_s("b"));
  ASSERT_EQ_INT(r->ev[e].why, AC_REMOVED_EXPIRED);
  ASSERT_EQ_INT(r->n, e + 1); /* an expired entry found by get: no hit */
  e = r->n;
  ac_store_clear(s);
  ASSERT_EVENT(r, e, EV_REMOVE, (uint32_t)d, hash_s("d"));
  ASSERT_EQ_INT(r->ev[e].why, AC_REMOVED_CLEARED);
  ASSERT_EQ_UINT(r->nlive, 0);
  ac_store_free(s);
  ASSERT_EQ_INT(r->ev[r->n - 1].type, EV_DESTROY);
  ASSERT_EQ_INT(destroyed, 1);
  free(r);
}

TEST(eviction_takes_the_policys_victim) {
  rec *r = new_rec(CHOOSE_HIGHEST);
  ac_store_t *s = new_store_p(8, r, 0);
  char key[8];
  int64_t slot[8];
  for (int i = 0; i < 8; i++) {
    snprintf(key, sizeof key, "k%d", i);
    slot[i] = set_s(s, key, 0);
  }
  /* k0 was used last, k7 least recently: LRU would take k1; this policy
   * takes the highest slot, which is not the tail. */
  for (int i = 7; i >= 0; i--) {
    snprintf(key, sizeof key, "k%d", i);
    ASSERT_CMP_UINT(get_s(s, key), >, 0);
  }
  ASSERT_EQ_INT(set_s(s, "new", 0), slot[7]);
  ASSERT_EQ_INT(nremovals, 1);
  ASSERT_EQ_STR(removals[0].key, "k7");
  ASSERT_EQ_INT(removals[0].why, AC_REMOVED_EVICTED);
  /* A fixed victim in the middle. */
  r->choose = CHOOSE_FIXED;
  r->fixed = (uint32_t)slot[3];
  ASSERT_EQ_INT(set_s(s, "new2", 0), slot[3]);
  ASSERT_EQ_STR(removals[1].key, "k3");
  for (int i = 0; i < 8; i++) {
    snprintf(key, sizeof key, "k%d", i);
    ASSERT_EQ_UINT(ac_store_peek(s, 0, key, strlen(key)), i == 3 || i == 7 ? 0 : slot[i]);
  }
  ASSERT_EQ_UINT(stats_of(s).evictions, 2);
  ac_store_free(s);
  free(r);
}

TEST(a_policy_may_refuse_a_new_key) {
  install_counting_allocator();
  rec *r = new_rec(CHOOSE_NONE);
  ac_store_t *s = new_store_p(2, r, 0);
  int64_t a = set_s(s, "a", 0);
  int64_t b = set_s(s, "b", 0);
  size_t mem = ac_store_memory(s);
  long blocks = live_blocks;
  int e = r->n;
  int is_new = -1;
  ASSERT_EQ_INT(ac_store_set(s, 0, "c", 1, 0, &is_new), 0);
  ASSERT_EQ_INT(is_new, 0);
  /* A long key was copied before the policy was asked: not leaked. */
  char big[64];
  memset(big, 'L', sizeof big);
  ASSERT_EQ_INT(ac_store_set(s, 0, big, sizeof big, 0, NULL), 0);
  ASSERT_EQ_INT(live_blocks, blocks);
  ASSERT_EQ_UINT(ac_store_memory(s), mem);
  /* Only the two questions were asked; nothing else changed. */
  ASSERT_EQ_INT(r->n, e + 2);
  ASSERT_EQ_INT(r->ev[e].type, EV_VICTIM);
  ASSERT_EQ_UINT(r->ev[e].hash, hash_s("c"));
  ASSERT_EQ_INT(nremovals, 0);
  ASSERT_EQ_UINT(stats_of(s).size, 2);
  ASSERT_EQ_UINT(stats_of(s).evictions, 0);
  ASSERT_EQ_UINT(ac_store_peek(s, 0, "c", 1), 0);
  ASSERT_EQ_UINT(get_s(s, "a"), a);
  ASSERT_EQ_UINT(get_s(s, "b"), b);
  /* A live key is refreshed whatever the policy would say. */
  ASSERT_EQ_INT(set_s(s, "a", 0), a);
  /* A victim that is not a live slot counts as a refusal. */
  r->choose = CHOOSE_FIXED;
  r->fixed = 2000;
  ASSERT_EQ_INT(set_s(s, "c", 0), 0);
  ASSERT_EQ_INT(ac_store_delete(s, 0, "b", 1), 0);
  r->fixed = (uint32_t)b; /* free now */
  ASSERT_EQ_INT(set_s(s, "c", 0), b); /* room: no question asked */
  r->fixed = (uint32_t)b;
  int64_t d = 0;
  ASSERT_EQ_INT(ac_store_delete(s, 0, "c", 1), 0);
  r->fixed = 77; /* above the slab */
  d = set_s(s, "d", 0);
  ASSERT_CMP_INT(d, >, 0); /* room again */
  ASSERT_EQ_INT(set_s(s, "e", 0), 0);
  ac_store_free(s);
  free(r);
  ASSERT_EQ_INT(live_blocks, 0);
  restore_allocator();
}

TEST(a_failed_resize_fails_the_set_cleanly) {
  rec *r = new_rec(CHOOSE_LOWEST);
  ac_store_t *s = new_store_p(100, r, 0);
  char key[8];
  for (int i = 0; i < 16; i++) { /* the first slab: 16 slots */
    snprintf(key, sizeof key, "k%d", i);
    ASSERT_CMP_INT(set_s(s, key, 0), >, 0);
  }
  size_t mem = ac_store_memory(s);
  r->fail_resize = 1;
  ASSERT_EQ_INT(set_s(s, "k16", 0), AC_ENOMEM);
  ASSERT_EQ_UINT(stats_of(s).size, 16);
  ASSERT_EQ_UINT(ac_store_memory(s), mem);
  ASSERT_EQ_UINT(ac_store_peek(s, 0, "k16", 3), 0);
  r->fail_resize = 0;
  ASSERT_CMP_INT(set_s(s, "k16", 0), >, 16);
  ac_store_free(s);
  free(r);
}

/* A shrinking store renumbers entries through on_move and resizes the
 * policy's arrays down; the policy's view stays the store's. */
TEST(shrinking_moves_and_resizes_the_policy_too) {
  rec *r = new_rec(CHOOSE_LOWEST);
  ac_store_t *s = new_store_p(8192, r, 1);
  char key[16];
  for (int i = 0; i < 8000; i++) {
    snprintf(key, sizeof key, "k%d", i);
    ASSERT_CMP_INT(set_s(s, key, i % 100 == 0 ? 0 : 1), >, 0);
  }
  size_t full = ac_store_memory(s);
  uint32_t cap_full = r->cap;
  long moves = r->count[EV_MOVE], resizes = r->count[EV_RESIZE];
  fake_now += 2;
  ac_expire_report_t rep;
  do ac_store_expire_budget(s, 0, 0, &rep); while (rep.more);
  ASSERT_EQ_UINT(stats_of(s).size, 80);
  ASSERT_EQ_UINT(r->nlive, 80);
  ASSERT_CMP_INT(r->count[EV_MOVE], >, moves);
  ASSERT_CMP_INT(r->count[EV_RESIZE], >, resizes);
  ASSERT_CMP_UINT(r->cap, <, cap_full);
  ASSERT_CMP_UINT(r->cap, <=, 160);
  /* The policy holds exactly the store's live slots, with their hashes. */
  uint32_t n = 0;
  for (uint32_t i = ac_store_next(s, 0); i != 0; i = ac_store_next(s, i)) {
    ASSERT_EQ_INT(r->live[i], 1);
    int tag;
    size_t len;
    const char *k = ac_store_key(s, i, &tag, &len);
    ASSERT_EQ_UINT(r->hash_of[i], (uint32_t)ac__hash(tag, k, len));
    n++;
  }
  ASSERT_EQ_UINT(n, 80);
  ASSERT_CMP_UINT(ac_store_memory(s), <, full / 20);
  ac_store_free(s);
  free(r);
}

TEST(walks_in_slot_order_and_in_the_policys_order) {
  rec *r = new_rec(CHOOSE_LOWEST);
  ac_store_t *s = new_store_p(16, r, 0);
  ASSERT_EQ_UINT(ac_store_next(s, 0), 0);
  ASSERT_EQ_UINT(ac_store_next_ranked(s, 0), 0);
  char key[8];
  for (int i = 0; i < 6; i++) {
    snprintf(key, sizeof key, "k%d", i);
    set_s(s, key, 0);
  }
  ASSERT_EQ_INT(ac_store_delete(s, 0, "k2", 2), 0); /* slot 3 */
  static const uint32_t by_slot[] = {1, 2, 4, 5, 6};
  static const uint32_t ranked[] = {6, 5, 4, 2, 1}; /* rec_next: highest first */
  uint32_t i = 0;
  for (int j = 0; j < 5; j++) ASSERT_EQ_UINT(i = ac_store_next(s, i), by_slot[j]);
  ASSERT_EQ_UINT(ac_store_next(s, i), 0);
  i = 0;
  for (int j = 0; j < 5; j++) ASSERT_EQ_UINT(i = ac_store_next_ranked(s, i), ranked[j]);
  ASSERT_EQ_UINT(ac_store_next_ranked(s, i), 0);
  ASSERT_EQ_UINT(ac_store_next_ranked(s, 3), 0); /* a free slot ends it */
  ASSERT_EQ_PTR(ac_store_policy_state(s), r);
  /* ac_store_memory counts what the policy reports. */
  ASSERT_CMP_UINT(ac_store_memory(s), >=, 1000 + r->cap * 5);
  ac_store_free(s);
  free(r);
}

/* The default policy, LRU, driven through its vtable alone: the store's
 * inline fast path must not be the only correct one. */
TEST(lru_policy_through_its_vtable) {
  const ac_policy_t *p = &ac_policy_lru;
  ASSERT_EQ_STR(p->name, "lru");
  void *st = p->create(8);
  ASSERT_NOT_NULL(st);
  ASSERT_EQ_INT(p->resize(st, 8), 0);
  for (uint32_t i = 1; i <= 5; i++) p->on_insert(st, i, i * 7);
  ASSERT_EQ_UINT(p->victim(st, 99), 1); /* inserted first */
  p->on_hit(st, 1, 7);
  ASSERT_EQ_UINT(p->victim(st, 99), 2);
  p->on_hit(st, 3, 21);
  p->on_remove(st, 2, 14, AC_REMOVED_DELETED);
  p->on_move(st, 5, 2); /* 5 renumbered to 2 */
  static const uint32_t order[] = {3, 1, 2, 4}; /* most recent first */
  uint32_t i = 0;
  for (int j = 0; j < 4; j++) ASSERT_EQ_UINT(i = p->next(st, i), order[j]);
  ASSERT_EQ_UINT(p->next(st, i), 0);
  ASSERT_EQ_UINT(p->victim(st, 99), 4);
  ASSERT_EQ_INT(p->resize(st, 4), 0); /* shrink: slots 5..8 are free */
  ASSERT_EQ_UINT(p->victim(st, 99), 4);
  ASSERT_CMP_UINT(p->memory(st), >=, 5 * 8);
  for (int j = 0; j < 4; j++) p->on_remove(st, order[j], 0, AC_REMOVED_CLEARED);
  ASSERT_EQ_UINT(p->next(st, 0), 0);
  ASSERT_EQ_UINT(p->victim(st, 99), 0);
  p->destroy(st);
  p->destroy(NULL);
}

/* The store's default is LRU, and selecting it explicitly is the same. */
TEST(lru_is_the_default_policy) {
  for (int explicit = 0; explicit <= 1; explicit++) {
    ac_store_options_t o = {.maxsize = 3, .clock = fake_clock,
                            .policy = explicit ? &ac_policy_lru : NULL};
    ac_store_t *s = ac_store_new(&o, NULL);
    ASSERT_NOT_NULL(s);
    set_s(s, "a", 0);
    set_s(s, "b", 0);
    set_s(s, "c", 0);
    get_s(s, "a");
    set_s(s, "d", 0); /* evicts b */
    ASSERT_EQ_UINT(ac_store_peek(s, 0, "b", 1), 0);
    ASSERT_CMP_UINT(ac_store_peek(s, 0, "a", 1), >, 0);
    const void *st = ac_store_policy_state(s);
    ASSERT_EQ_UINT(ac_policy_lru.next(st, 0), ac_store_peek(s, 0, "d", 1));
    ac_store_free(s);
  }
}
