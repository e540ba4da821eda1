/* The store: a chained hash map over a slab of fixed-size entries, and a
 * policy (ac_policy.h) that decides who leaves when it is full.
 *
 * Data structure
 *   e[1..cap]   the slab; an entry's index is its slot, stable for its life
 *               unless a shrink renumbers it through the `moved` callback.
 *               e[0] is never used, so 0 means "none" in every link below.
 *   bucket[]    power-of-two array of slot indices, chains linked through
 *               e[i].chain; load factor at most 1/2 (grown by doubling):
 *               4 to 8 bytes an entry buy short chains, which is most of
 *               the cost of a hit.
 *   policy      told of every insert, hit, removal and move; keeps its own
 *               per-slot arrays (LRU: a list, policy_lru.c), so the index
 *               holds nothing about use and any policy fits behind it.
 *   free        free slots, linked through e[i].chain; slots above `used`
 *               were never handed out (or were cut off by a shrink).
 *
 * An entry is 40 bytes.  Keys of up to INLINE_KEY bytes live inside it;
 * longer keys are allocated and the pointer is kept in the same bytes.  The
 * slab grows by doubling but never past maxsize, so a full store carries no
 * spare entries.
 *
 * Active expiry (ac_store_expire_budget) sweeps the slab in slot order with
 * a cursor.  Every sweep covers the whole slab in passes, so an expired
 * entry is found within one pass; `due` is a lower bound on every live
 * deadline (the smallest deadline a complete pass saw, lowered by every
 * deadline given since), so a store whose entries cannot have expired yet
 * costs a slice one comparison.  A sequential sweep is exact where sampling
 * (Redis) is probabilistic, and unlike a timer wheel (Caffeine) it costs no
 * bytes per entry; its price is a pass per second over the slab (a few ns a
 * slot, paced by the caller's max_checks).
 *
 * Shrinking.  Slots are identities held by the caller (the Lua binding keeps
 * values[slot]), so the slab can only give back its top.  Which entries sit
 * at the top is chance (the free list is LIFO), so cutting only a free tail
 * would rarely free much; the store therefore renumbers live entries when
 * the caller allows it (`moved`: the binding moves values[from] to
 * values[to]), and otherwise cuts down to its highest live slot.  A store
 * below a quarter full aims at 2 x size slots (`target`) and goes through
 *   SCAN  `top` walks down from `used` over free slots; a set that takes a
 *         slot above it lifts it.  Without `moved` the first live slot
 *         found becomes the target (given up if that saves under half);
 *   SORT  the free list becomes `pending` and is sorted, a node a step,
 *         into `free` (slots <= target) and `high` (above); then each live
 *         entry above the target moves into a free low slot, the caller
 *         asked first.  An entry due within SHRINK_WAIT is waited for
 *         instead: its slot frees itself.  When nothing is left above the
 *         target, `used` becomes the target and the high list is dropped;
 *   TRIM  the slab, then the bucket array (rehashed in place from the
 *         entries, when REHASH_MAX allows), are reallocated smaller in
 *         steps of TRIM_STEP bytes: the kernel takes ~0.5 us a page to
 *         reclaim memory, so one realloc of 10 MB would stall for ms.
 * Each step is O(1) (a move walks one chain) and a slice stops between
 * steps when its time is up, so a shrink fits the slices' budget however
 * large the store.  Sets go on meanwhile: during SORT they take free low
 * slots first, else a pending one (with `moved`: lifting `top`, it is moved
 * down later; without: after SORT_PER_TAKE tries the shrink is given up).
 * A shrink that cannot finish (the store fills up again, a move is
 * refused) is abandoned: the high list goes back on the free list, pending
 * drains into it, and no shrink starts before the size halves again.
 *
 * Invariants: size == live entries, each of them known to the policy
 * (inserted, not yet removed); every live entry is on exactly one chain; every free slot <= used is on exactly one
 * of free, pending, high; during SCAN every slot above top is free; during
 * SORT free holds only slots <= target and no live entry sits above
 * max(top, target); ttl_count == live entries with
 * expires != 0; every live deadline >= due; the removal callback runs
 * exactly once per entry that leaves. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "ac_clock.h"
#include "ac_error.h"
#include "ac_policy.h"
#include "ac_store.h"
#include "alloc.h"
#include "hash.h"
#include "policy_lru.h"

#define INLINE_KEY 18
#define MIN_BUCKETS 16u
#define MIN_SLOTS 16u
#define CLOCK_EVERY 256u   /* work units between readings of the budget clock */
#define COST_CHECK 1u      /* work units: a slot examined by the sweep, */
#define COST_REMOVE 16u    /* an entry removed (the callback runs), */
#define COST_MOVE 16u      /* an entry renumbered, */
#define COST_SORT 2u       /* a pending node sorted */
#define SORT_PER_TAKE 4u   /* pending nodes a set may sort looking for a slot */
#define REHASH_MAX (1u << 17) /* slots + buckets a shrinking rehash may visit */
/* Memory is given back in steps of at most this many bytes: the kernel
 * takes about half a microsecond a page to reclaim it. */
#define TRIM_STEP ((size_t)1 << 20)
/* An entry due this soon (seconds) is not worth moving: its slot frees
 * itself. */
#define SHRINK_WAIT 1.0
/* While a pass finds mostly expired entries (a batch set together is
 * expiring in slot order), the sweep stops at a survivor due within this
 * many seconds instead of passing it, which would leave it for the next
 * pass: it follows the front of the expiry. */
#define FRONT_WINDOW 0.1
/* A TRIM step starts only with this much of a slice's budget left (it
 * cannot be interrupted: a step of TRIM_STEP bytes takes up to ~150 us). */
#define TRIM_RESERVE 250e-6

enum { SHRINK_IDLE = 0, SHRINK_SCAN, SHRINK_SORT, SHRINK_TRIM };

typedef struct {
  double expires; /* clock deadline, 0 when the entry has no TTL */
  uint32_t hash;  /* low 32 bits of the key's hash */
  uint32_t chain; /* next slot on the bucket chain, or on the free list */
  uint32_t len;
  uint8_t tag;
  uint8_t live;
  char key[INLINE_KEY]; /* the key, or a pointer to it when len > INLINE_KEY */
} entry;

_Static_assert(sizeof(entry) == 40, "entry layout grew");

struct ac_store_s {
  entry *e;
  uint32_t *bucket;
  uint32_t mask; /* bucket count - 1 */
  uint32_t nbucket_alloc; /* buckets allocated (> mask + 1 while trimming) */
  uint32_t cap, used, free;
  uint32_t size, maxsize, ttl_count;
  const ac_policy_t *pol;
  void *pst;   /* the policy's state */
  bool lru;    /* pol is ac_policy_lru: its hot operations run inline */
  /* active expiry */
  uint32_t sweep;  /* the slot the sweep examined last (0: a pass begins) */
  double due;      /* no live entry expires before this */
  double pass_due; /* least deadline seen or given since this pass began */
  uint32_t pass_checked, pass_removed; /* by this pass so far */
  /* shrinking (see the top of the file) */
  int phase;
  uint32_t target, top, pending, high, high_tail;
  uint32_t shrink_size; /* size when a shrink was last given up (backoff) */
  size_t key_bytes; /* heap taken by out-of-line keys (estimated) */
  uint64_t hits, misses, evictions, expirations;
  ac_store_removed_cb removed;
  ac_store_moved_cb moved;
  void *ud;
  ac_clock_fn clock, budget_clock;
  ac_clock_ud_fn uclock; /* when set, the clock: uclock(clock_ud) */
  void *clock_ud;
};

/* The policy's events.  With LRU (the default) the hot ones are inlined:
 * an eviction is a victim, a removal and an insert, three indirect calls
 * that cost it ~10%; the branch is on a flag next to the state pointer. */
static inline void pol_hit(ac_store_t *s, uint32_t i, uint32_t h) {
  if (s->lru) ac__lru_hit(s->pst, i); else s->pol->on_hit(s->pst, i, h);
}

static inline void pol_insert(ac_store_t *s, uint32_t i, uint32_t h) {
  if (s->lru) ac__lru_push_front(s->pst, i); else s->pol->on_insert(s->pst, i, h);
}

static inline void pol_remove(ac_store_t *s, uint32_t i, uint32_t h,
                              ac_removed_t why) {
  if (s->lru) ac__lru_unlink(s->pst, i); else s->pol->on_remove(s->pst, i, h, why);
}

static inline uint32_t pol_victim(ac_store_t *s, uint32_t h) {
  return s->lru ? ((ac__lru *)s->pst)->tail : s->pol->victim(s->pst, h);
}

static inline const char *key_of(const entry *x) {
  if (x->len <= INLINE_KEY) return x->key;
  const char *p;
  memcpy(&p, x->key, sizeof p);
  return p;
}

static inline bool same_key(const entry *x, uint32_t h, int tag,
                            const void *key, size_t len) {
  return x->hash == h && x->len == len && x->tag == (uint8_t)tag &&
         (len == 0 || memcmp(key_of(x), key, len) == 0);
}

/* What an allocation of len bytes takes from a typical malloc (glibc: an
 * 8-byte header, 16-byte granules, 32 bytes at least), so that
 * ac_store_memory() reports long keys at their real cost. */
static size_t heap_size(size_t len) {
  size_t chunk = (len + 8 + 15) & ~(size_t)15;
  return chunk < 32 ? 32 : chunk;
}

static uint32_t find(const ac_store_t *s, uint32_t h, int tag, const void *key,
                     size_t len) {
  uint32_t i = s->bucket[h & s->mask];
  while (i != 0 && !same_key(&s->e[i], h, tag, key, len)) i = s->e[i].chain;
  return i;
}

static void chain_unlink(ac_store_t *s, uint32_t i) {
  uint32_t *link = &s->bucket[s->e[i].hash & s->mask];
  while (*link != i) link = &s->e[*link].chain;
  *link = s->e[i].chain;
}

/* A free slot goes on the free list, or during SORT, when above the
 * target, on the high list (so free holds only slots the shrink keeps). */
static void push_free(ac_store_t *s, uint32_t i) {
  if (s->phase == SHRINK_SORT && i > s->target) {
    if (s->high == 0) s->high_tail = i;
    s->e[i].chain = s->high;
    s->high = i;
  } else {
    s->e[i].chain = s->free;
    s->free = i;
  }
}

/* Takes entry i out of every structure, reports it, and frees its slot. */
static void remove_entry(ac_store_t *s, uint32_t i, ac_removed_t why) {
  entry *x = &s->e[i];
  chain_unlink(s, i);
  pol_remove(s, i, x->hash, why);
  if (x->expires != 0) s->ttl_count--;
  s->size--;
  if (s->removed) s->removed(s->ud, i, x->tag, key_of(x), x->len, why);
  if (x->len > INLINE_KEY) {
    ac__free((void *)key_of(x));
    s->key_bytes -= heap_size(x->len);
  }
  x->live = 0;
  push_free(s, i);
}

/* The store's clock: a scheduler's (with its ud), or a plain function. */
static inline double now_of(const ac_store_t *s) {
  return s->uclock != NULL ? s->uclock(s->clock_ud) : s->clock();
}

static inline bool expired(const ac_store_t *s, const entry *x) {
  return x->expires != 0 && now_of(s) >= x->expires;
}

ac_store_t *ac_store_new(const ac_store_options_t *opts, int *err) {
  int dummy;
  if (err == NULL) err = &dummy;
  if (opts == NULL || opts->maxsize == 0 || opts->maxsize > UINT32_MAX - 1) {
    *err = AC_EINVAL;
    return NULL;
  }
  ac_store_t *s = ac__calloc(1, sizeof *s);
  if (s == NULL) goto nomem;
  s->maxsize = opts->maxsize;
  s->removed = opts->removed;
  s->ud = opts->ud;
  s->clock = opts->clock ? opts->clock : ac_clock_now;
  s->uclock = opts->clock_ud_fn;
  s->clock_ud = opts->clock_ud;
  s->moved = opts->moved;
  s->budget_clock = opts->budget_clock ? opts->budget_clock : ac_clock_precise;
  s->due = s->pass_due = INFINITY;
  s->pol = opts->policy ? opts->policy : &ac_policy_lru;
  s->lru = s->pol == &ac_policy_lru;
  s->pst = s->pol->create(s->maxsize);
  if (s->pst == NULL) goto nomem;
  s->mask = MIN_BUCKETS - 1;
  s->bucket = ac__calloc(MIN_BUCKETS, sizeof *s->bucket);
  if (s->bucket == NULL) goto nomem;
  s->nbucket_alloc = MIN_BUCKETS;
  *err = 0;
  return s;
nomem:
  if (s != NULL && s->pst != NULL) s->pol->destroy(s->pst);
  ac__free(s);
  *err = AC_ENOMEM;
  return NULL;
}

void ac_store_free(ac_store_t *s) {
  if (s == NULL) return;
  ac_store_clear(s);
  s->pol->destroy(s->pst);
  ac__free(s->e);
  ac__free(s->bucket);
  ac__free(s);
}

uint32_t ac_store_get(ac_store_t *s, int tag, const void *key, size_t len) {
  uint32_t h = (uint32_t)ac__hash(tag, key, len);
  uint32_t i = find(s, h, tag, key, len);
  if (i == 0) {
    s->misses++;
    return 0;
  }
  if (expired(s, &s->e[i])) {
    s->expirations++;
    remove_entry(s, i, AC_REMOVED_EXPIRED);
    s->misses++;
    return 0;
  }
  pol_hit(s, i, h);
  s->hits++;
  return i;
}

uint32_t ac_store_peek(ac_store_t *s, int tag, const void *key, size_t len) {
  uint32_t i = find(s, (uint32_t)ac__hash(tag, key, len), tag, key, len);
  if (i == 0 || expired(s, &s->e[i])) return 0;
  return i;
}

/* Links every live entry into buckets b[0..n-1], which must be zero. */
static void relink(ac_store_t *s, uint32_t *b, uint32_t n) {
  for (uint32_t i = 1; i <= s->used; i++) {
    entry *x = &s->e[i];
    if (!x->live) continue;
    x->chain = b[x->hash & (n - 1)];
    b[x->hash & (n - 1)] = i;
  }
}

/* Doubles the bucket array and rehashes.  Failure is harmless: chains get
 * longer, nothing is lost. */
static void grow_buckets(ac_store_t *s) {
  uint32_t n = (s->mask + 1) * 2;
  uint32_t *b = ac__calloc(n, sizeof *b);
  if (b == NULL) return;
  relink(s, b, n);
  ac__free(s->bucket);
  s->bucket = b;
  s->mask = n - 1;
  s->nbucket_alloc = n;
}

/* Gives up a shrink: high slots go back on the free list, pending nodes
 * drain into it as they are taken or sorted (the target no longer cuts
 * anything off), and no shrink is tried again before the store has halved. */
static void shrink_abandon(ac_store_t *s) {
  if (s->high != 0) {
    s->e[s->high_tail].chain = s->free;
    s->free = s->high;
    s->high = 0;
  }
  s->shrink_size = s->size;
  s->top = 0;
  s->target = UINT32_MAX;
  if (s->phase == SHRINK_SCAN) {
    s->phase = SHRINK_IDLE;
    s->target = 0;
  }
}

/* A free slot, growing the slab when needed; 0 when out of memory. */
static uint32_t take_slot(ac_store_t *s) {
  uint32_t i;
  if (s->free != 0) {
    i = s->free;
    s->free = s->e[i].chain;
    /* SCAN: the slots above top must stay free, so top follows. */
    if (s->phase == SHRINK_SCAN && i > s->top) s->top = i;
    return i;
  }
  if (s->phase == SHRINK_SORT && s->pending != 0) {
    if (s->moved != NULL) {
      /* Any slot will do: one above the target is moved down later. */
      i = s->pending;
      s->pending = s->e[i].chain;
      if (i > s->target && i > s->top) s->top = i;
      return i;
    }
    for (uint32_t n = 0; n < SORT_PER_TAKE && s->pending != 0; n++) {
      i = s->pending;
      s->pending = s->e[i].chain;
      if (i <= s->target) return i;
      push_free(s, i); /* onto high */
    }
  }
  if (s->phase == SHRINK_SORT && s->target != UINT32_MAX) {
    /* No low slot at hand: the store is filling up again. */
    shrink_abandon(s);
    if (s->free != 0 || s->pending != 0) return take_slot(s);
  }
  if (s->used == s->cap) {
    /* Growing again: whatever a shrink still meant to give back, keep. */
    if (s->phase == SHRINK_TRIM) {
      s->phase = SHRINK_IDLE;
      s->target = 0;
    }
    uint32_t cap = s->cap < MIN_SLOTS ? MIN_SLOTS : s->cap * 2;
    if (cap > s->maxsize || cap < s->cap) cap = s->maxsize;
    /* The policy's arrays first: if the slab then fails to grow, they are
     * merely larger than needed. */
    if (s->pol->resize(s->pst, cap) != 0) return 0;
    entry *e = ac__realloc(s->e, ((size_t)cap + 1) * sizeof *e);
    if (e == NULL) return 0;
    s->e = e;
    s->cap = cap;
  }
  /* Mark the new slot free before anything (a bucket rehash) reads it. */
  s->e[s->used + 1].live = 0;
  i = ++s->used;
  if (s->phase == SHRINK_SCAN && i > s->top) s->top = i;
  return i;
}

static double deadline(const ac_store_t *s, double ttl) {
  return (ttl == 0 || isinf(ttl)) ? 0 : now_of(s) + ttl;
}

static void set_expiry(ac_store_t *s, entry *x, double expires) {
  if (x->expires != 0) s->ttl_count--;
  if (expires != 0) {
    s->ttl_count++;
    /* The entry may sit behind the sweep's cursor: the pass in progress
     * must not conclude that nothing expires before its end. */
    if (expires < s->due) s->due = expires;
    if (expires < s->pass_due) s->pass_due = expires;
  }
  x->expires = expires;
}

int64_t ac_store_set(ac_store_t *s, int tag, const void *key, size_t len,
                     double ttl, int *is_new) {
  int dummy;
  if (is_new == NULL) is_new = &dummy;
  if (isnan(ttl) || ttl < 0 || len > UINT32_MAX || tag < 0 || tag > 255 ||
      (key == NULL && len > 0))
    return AC_EINVAL;
  uint32_t h = (uint32_t)ac__hash(tag, key, len);
  uint32_t i = find(s, h, tag, key, len);
  if (i != 0) {
    set_expiry(s, &s->e[i], deadline(s, ttl));
    pol_hit(s, i, h);
    *is_new = 0;
    return i;
  }
  char *copy = NULL;
  if (len > INLINE_KEY) {
    copy = ac__malloc(len);
    if (copy == NULL) return AC_ENOMEM;
    memcpy(copy, key, len);
  }
  if (s->size >= s->maxsize) {
    uint32_t v = pol_victim(s, h);
    if (v == 0 || v > s->used || !s->e[v].live) { /* not admitted */
      ac__free(copy);
      *is_new = 0;
      return 0;
    }
    s->evictions++;
    remove_entry(s, v, AC_REMOVED_EVICTED);
  }
  i = take_slot(s);
  if (i == 0) {
    ac__free(copy);
    return AC_ENOMEM;
  }
  if (s->size + 1 > (s->mask + 1) / 2) grow_buckets(s);
  entry *x = &s->e[i];
  x->expires = 0;
  set_expiry(s, x, deadline(s, ttl));
  x->hash = h;
  x->len = (uint32_t)len;
  x->tag = (uint8_t)tag;
  x->live = 1;
  if (copy != NULL) {
    memcpy(x->key, &copy, sizeof copy);
    s->key_bytes += heap_size(len);
  } else if (len > 0) {
    memcpy(x->key, key, len);
  }
  x->chain = s->bucket[h & s->mask];
  s->bucket[h & s->mask] = i;
  pol_insert(s, i, h);
  s->size++;
  *is_new = 1;
  return i;
}

int ac_store_delete(ac_store_t *s, int tag, const void *key, size_t len) {
  uint32_t i = find(s, (uint32_t)ac__hash(tag, key, len), tag, key, len);
  if (i == 0) return AC_ENOENT;
  if (expired(s, &s->e[i])) { /* already dead: nobody could read it */
    s->expirations++;
    remove_entry(s, i, AC_REMOVED_EXPIRED);
    return AC_ENOENT;
  }
  remove_entry(s, i, AC_REMOVED_DELETED);
  return 0;
}

void ac_store_clear(ac_store_t *s) {
  for (uint32_t i = 1; i <= s->used && s->size > 0; i++)
    if (s->e[i].live) remove_entry(s, i, AC_REMOVED_CLEARED);
  /* Start handing out slots from 1 again so a refilled store is compact. */
  s->free = s->pending = s->high = 0;
  s->used = 0;
  s->sweep = 0;
  s->phase = SHRINK_IDLE;
  s->target = s->top = s->shrink_size = 0;
  s->due = s->pass_due = INFINITY;
}

/* ---- active expiry --------------------------------------------------------- */

/* A slice's time budget: the clock is read every CLOCK_EVERY work units. */
typedef struct {
  double start, limit; /* limit: +inf for none */
  uint32_t work, next;
  bool over;
} budget;

static inline bool spend(ac_store_t *s, budget *b, uint32_t units) {
  b->work += units;
  if (b->work >= b->next) {
    b->next = b->work + CLOCK_EVERY;
    if (b->limit < INFINITY && s->budget_clock() >= b->limit) b->over = true;
  }
  return b->over;
}

/* The cursor passed the end of the slab: what the pass saw bounds `due`. */
static void end_pass(ac_store_t *s) {
  s->sweep = 0;
  s->due = s->pass_due;
  s->pass_due = INFINITY;
}

/* Examines up to max_checks slots from the cursor.  With skip, stops as
 * soon as nothing can be due (before starting, or at the end of a pass). */
static void sweep(ac_store_t *s, double now, uint32_t max_checks, bool skip,
                  budget *b, ac_expire_report_t *r) {
  if (s->ttl_count == 0) { /* nothing to find: begin afresh */
    s->sweep = 0;
    s->due = s->pass_due = INFINITY;
    return;
  }
  if (skip && now < s->due) return;
  while (r->checked < max_checks) {
    if (s->sweep >= s->used) {
      end_pass(s);
      if (skip && now < s->due) return;
      if (s->used == 0) return;
    }
    /* Deadlines given before the first visit of a pass are seen by the
     * pass itself. */
    if (s->sweep == 0) {
      s->pass_due = INFINITY;
      s->pass_checked = s->pass_removed = 0;
    }
    uint32_t i = ++s->sweep;
    entry *x = &s->e[i];
    r->checked++;
    s->pass_checked++;
    uint32_t cost = COST_CHECK;
    if (x->live && x->expires != 0) {
      if (now >= x->expires) {
        s->expirations++;
        remove_entry(s, i, AC_REMOVED_EXPIRED);
        r->removed++;
        s->pass_removed++;
        cost = COST_REMOVE;
      } else {
        if (skip && x->expires - now < FRONT_WINDOW &&
            s->pass_checked >= 64 && s->pass_removed * 4 >= s->pass_checked) {
          s->sweep--; /* examined again by the next slice */
          r->front = 1;
          return;
        }
        if (x->expires < s->pass_due) s->pass_due = x->expires;
      }
    }
    if (spend(s, b, cost)) return;
  }
}

uint32_t ac_store_expire(ac_store_t *s, uint32_t max_checks) {
  ac_expire_report_t r = {0};
  budget b = {0, INFINITY, 0, CLOCK_EVERY, false};
  if (max_checks > s->used) max_checks = s->used;
  sweep(s, now_of(s), max_checks, false, &b, &r);
  return r.removed;
}

/* ---- shrinking ------------------------------------------------------------- */

/* Gives entry `from` the free slot `to` (already taken off its list). */
static void relocate(ac_store_t *s, uint32_t from, uint32_t to) {
  entry *x = &s->e[to];
  *x = s->e[from];
  uint32_t *link = &s->bucket[x->hash & s->mask];
  while (*link != from) link = &s->e[*link].chain;
  *link = to;
  s->pol->on_move(s->pst, from, to);
  /* It may land behind the sweep's cursor, as if its deadline were new. */
  if (x->expires != 0 && x->expires < s->pass_due) s->pass_due = x->expires;
  s->e[from].live = 0;
}

/* Nothing lives above the target any more: cut `used` down to it; the
 * memory goes back in TRIM steps. */
static void shrink_cut(ac_store_t *s) {
  if (s->target < s->used) {
    s->high = 0; /* every slot above the target: free, and only here */
    s->used = s->target;
    if (s->sweep >= s->used) end_pass(s);
  }
  s->phase = SHRINK_TRIM;
  s->top = 0;
}

static void shrink_start(ac_store_t *s) {
  s->target = s->size * 2 < MIN_SLOTS ? MIN_SLOTS : s->size * 2;
  if (s->size == 0) { /* nothing to keep: let the whole slab go */
    s->free = s->pending = s->high = 0;
    s->used = s->target = 0;
    end_pass(s);
    s->phase = SHRINK_TRIM;
  } else if (s->used <= s->target) { /* the top was never handed out */
    s->phase = SHRINK_TRIM;
  } else {
    s->phase = SHRINK_SCAN;
    s->top = s->used;
  }
}

/* A step of TRIM: the slab, then the buckets, one realloc of at most
 * TRIM_STEP bytes at a time; false when done.  A failed realloc keeps the
 * larger block, which is harmless. */
static bool trim_step(ac_store_t *s, ac_expire_report_t *r) {
  uint32_t keep = s->target > s->used ? s->target : s->used;
  if (s->cap > keep) {
    uint32_t step = (uint32_t)(TRIM_STEP / sizeof(entry));
    uint32_t n = s->cap - keep > step ? s->cap - step : keep;
    if (n == 0) {
      ac__free(s->e);
      s->e = NULL;
      s->cap = 0;
    } else {
      entry *e = ac__realloc(s->e, ((size_t)n + 1) * sizeof *e);
      if (e == NULL) return false;
      s->e = e;
      s->cap = n;
    }
    s->pol->resize(s->pst, n); /* a failure leaves it larger: harmless */
    r->shrunk = 1;
    return true;
  }
  uint32_t nb = s->mask + 1;
  if (nb > MIN_BUCKETS && (uint64_t)s->size * 8 < nb) {
    /* Rehashed in place: the entries, not the old chains, say where each
     * goes, and nothing is allocated. */
    uint32_t want = MIN_BUCKETS;
    while (want < (uint64_t)s->size * 4) want *= 2;
    if ((uint64_t)s->used + want > REHASH_MAX) return false;
    memset(s->bucket, 0, (size_t)want * sizeof *s->bucket);
    relink(s, s->bucket, want);
    s->mask = want - 1;
    r->shrunk = 1;
    return true;
  }
  if (s->nbucket_alloc > nb) {
    uint32_t step = (uint32_t)(TRIM_STEP / sizeof *s->bucket);
    uint32_t n = s->nbucket_alloc - nb > step ? s->nbucket_alloc - step : nb;
    uint32_t *b = ac__realloc(s->bucket, (size_t)n * sizeof *b);
    if (b == NULL) return false;
    s->bucket = b;
    s->nbucket_alloc = n;
    r->shrunk = 1;
    return true;
  }
  return false;
}

/* One step of a shrink under way; false when it cannot go on in this
 * slice (done, given up, or waiting for entries about to expire). */
static bool shrink_step(ac_store_t *s, double now, budget *b,
                        ac_expire_report_t *r) {
  switch (s->phase) {
    case SHRINK_SCAN:
      if (s->top > s->target && !s->e[s->top].live) {
        s->top--;
        spend(s, b, COST_CHECK);
        return true;
      }
      if (s->top > s->target && s->moved == NULL) s->target = s->top;
      if (s->target > s->cap / 2) { /* not worth it */
        shrink_abandon(s);
        return false;
      }
      s->phase = SHRINK_SORT;
      s->pending = s->free;
      s->free = s->high = 0;
      return true;
    case SHRINK_SORT:
      if (s->pending != 0) {
        uint32_t i = s->pending;
        s->pending = s->e[i].chain;
        push_free(s, i);
        spend(s, b, COST_SORT);
        return true;
      }
      if (s->top > s->target) {
        uint32_t j = s->top;
        entry *x = &s->e[j];
        if (!x->live) {
          s->top--;
          spend(s, b, COST_CHECK);
          return true;
        }
        if (x->expires != 0 && x->expires - now < SHRINK_WAIT) return false;
        uint32_t i = s->free;
        if (i == 0 || s->moved(s->ud, j, i) != 0) {
          shrink_abandon(s); /* SORT goes on: it drains pending */
          return true;
        }
        s->free = s->e[i].chain;
        relocate(s, j, i);
        push_free(s, j); /* onto high */
        r->moved++;
        s->top--;
        spend(s, b, COST_MOVE);
        return true;
      }
      shrink_cut(s);
      return true;
    case SHRINK_TRIM:
      /* A slice that did nothing else yet may always take one step, or a
       * budget below the reserve would never finish a shrink. */
      if (b->limit < INFINITY && b->work > 0 &&
          b->limit - s->budget_clock() < TRIM_RESERVE) {
        b->over = true; /* the next slice goes on */
        return false;
      }
      if (trim_step(s, r)) {
        spend(s, b, CLOCK_EVERY); /* read the clock after each */
        return true;
      }
      s->phase = SHRINK_IDLE;
      s->target = 0;
      return false;
    default:
      return false;
  }
}

uint32_t ac_store_expire_budget(ac_store_t *s, uint32_t max_checks,
                                double max_seconds,
                                ac_expire_report_t *report) {
  ac_expire_report_t r = {0};
  budget b = {0, INFINITY, 0, CLOCK_EVERY, false};
  if (max_seconds > 0) {
    b.start = s->budget_clock();
    b.limit = b.start + max_seconds;
  }
  /* At most one pass a slice: sweeping again finds nothing new. */
  if (max_checks == 0 || max_checks > s->used) max_checks = s->used;
  double now = now_of(s);
  sweep(s, now, max_checks, true, &b, &r);
  /* Still among mostly expired entries: expire first, shrink later. */
  bool hot = r.front || ((b.over || r.checked == max_checks) &&
                          r.checked > 0 && r.removed * 4 >= r.checked);
  bool waiting = false;
  if (!hot && !b.over) {
    if (s->phase == SHRINK_IDLE && s->cap > MIN_SLOTS &&
        s->size < s->cap / 4 &&
        (s->shrink_size == 0 || s->size <= s->shrink_size / 2))
      shrink_start(s);
    while (s->phase != SHRINK_IDLE && !b.over && shrink_step(s, now, &b, &r)) {
    }
    waiting = s->phase != SHRINK_IDLE && !b.over;
  }
  r.more = hot || (s->phase != SHRINK_IDLE && !waiting);
  r.next_due = s->ttl_count ? s->due : INFINITY;
  if (max_seconds > 0) r.elapsed = s->budget_clock() - b.start;
  if (report) *report = r;
  return r.removed;
}

uint32_t ac_store_ttl_count(const ac_store_t *s) { return s->ttl_count; }

double ac_store_ttl_left(const ac_store_t *s, uint32_t slot) {
  if (slot == 0 || slot > s->used || !s->e[slot].live) return 0;
  double at = s->e[slot].expires;
  if (at == 0) return INFINITY;
  double left = at - now_of(s);
  return left > 0 ? left : 0;
}

const char *ac_store_key(const ac_store_t *s, uint32_t slot, int *tag,
                         size_t *len) {
  if (slot == 0 || slot > s->used || !s->e[slot].live) return NULL;
  if (tag) *tag = s->e[slot].tag;
  if (len) *len = s->e[slot].len;
  return key_of(&s->e[slot]);
}

uint32_t ac_store_next(const ac_store_t *s, uint32_t slot) {
  while (++slot <= s->used)
    if (s->e[slot].live) return slot;
  return 0;
}

uint32_t ac_store_slot_bound(const ac_store_t *s) {
  /* A free, pending or evicted slot is at most `used`; a new one is used+1. */
  return s->used < s->maxsize ? s->used + 1 : s->used;
}

uint32_t ac_store_next_ranked(const ac_store_t *s, uint32_t slot) {
  if (s->pol->next == NULL) return ac_store_next(s, slot);
  if (slot > s->used || (slot != 0 && !s->e[slot].live)) return 0;
  return s->pol->next(s->pst, slot);
}

void *ac_store_policy_state(const ac_store_t *s) { return s->pst; }

void ac_store_stats(const ac_store_t *s, ac_store_stats_t *out) {
  out->hits = s->hits;
  out->misses = s->misses;
  out->evictions = s->evictions;
  out->expirations = s->expirations;
  out->size = s->size;
  out->maxsize = s->maxsize;
  out->slots = s->used;
}

void ac_store_reset_stats(ac_store_t *s) {
  s->hits = s->misses = s->evictions = s->expirations = 0;
}

size_t ac_store_memory(const ac_store_t *s) {
  return sizeof *s + (s->e ? ((size_t)s->cap + 1) * sizeof(entry) : 0) +
         (size_t)s->nbucket_alloc * sizeof(uint32_t) + s->key_bytes +
         (s->pol->memory ? s->pol->memory(s->pst) : 0);
}

uint32_t ac_store_longest_chain(const ac_store_t *s) {
  uint32_t longest = 0;
  for (uint32_t b = 0; b <= s->mask; b++) {
    uint32_t n = 0;
    for (uint32_t i = s->bucket[b]; i != 0; i = s->e[i].chain) n++;
    if (n > longest) longest = n;
  }
  return longest;
}
