/* The store: a chained hash map over a slab of fixed-size entries.
 *
 * Data structure
 *   e[1..cap]   the slab; an entry's index is its slot, stable for its life.
 *               e[0] is never used, so 0 means "none" in every link below.
 *   bucket[]    power-of-two array of slot indices, chains linked through
 *               e[i].chain; load factor at most 1/2 (grown by doubling):
 *               4 to 8 bytes an entry buy short chains, which is most of
 *               the cost of a hit.
 *   head/tail   the LRU list, most recently used first, linked through
 *               e[i].prev/next.
 *   free        free slots, linked through e[i].chain; slots above `used`
 *               were never handed out.
 *
 * An entry is 48 bytes.  Keys of up to INLINE_KEY bytes live inside it;
 * longer keys are allocated and the pointer is kept in the same bytes.  The
 * slab grows by doubling but never past maxsize, so a full store carries no
 * spare entries.
 *
 * Invariants: size == live entries == length of the LRU list; every live
 * entry is on exactly one chain; ttl_count == live entries with expires != 0;
 * the removal callback runs exactly once per entry that leaves. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "ac_clock.h"
#include "ac_error.h"
#include "ac_store.h"
#include "alloc.h"
#include "hash.h"

#define INLINE_KEY 18
#define MIN_BUCKETS 16u
#define MIN_SLOTS 16u

typedef struct {
  double expires; /* clock deadline, 0 when the entry has no TTL */
  uint32_t hash;  /* low 32 bits of the key's hash */
  uint32_t chain; /* next slot on the bucket chain, or on the free list */
  uint32_t prev;  /* LRU neighbour towards the head (more recent) */
  uint32_t next;  /* LRU neighbour towards the tail (less recent) */
  uint32_t len;
  uint8_t tag;
  uint8_t live;
  char key[INLINE_KEY]; /* the key, or a pointer to it when len > INLINE_KEY */
} entry;

_Static_assert(sizeof(entry) == 48, "entry layout grew");

struct ac_store_s {
  entry *e;
  uint32_t *bucket;
  uint32_t mask; /* bucket count - 1 */
  uint32_t cap, used, free;
  uint32_t head, tail;
  uint32_t size, maxsize, ttl_count, sweep;
  size_t key_bytes; /* heap taken by out-of-line keys (estimated) */
  uint64_t hits, misses, evictions, expirations;
  ac_store_removed_cb removed;
  void *ud;
  ac_clock_fn clock;
};

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

static void lru_unlink(ac_store_t *s, uint32_t i) {
  entry *x = &s->e[i];
  if (x->prev) s->e[x->prev].next = x->next; else s->head = x->next;
  if (x->next) s->e[x->next].prev = x->prev; else s->tail = x->prev;
}

static void lru_push_front(ac_store_t *s, uint32_t i) {
  entry *x = &s->e[i];
  x->prev = 0;
  x->next = s->head;
  if (s->head) s->e[s->head].prev = i; else s->tail = i;
  s->head = i;
}

static inline void touch(ac_store_t *s, uint32_t i) {
  if (s->head == i) return;
  lru_unlink(s, i);
  lru_push_front(s, i);
}

static void chain_unlink(ac_store_t *s, uint32_t i) {
  uint32_t *link = &s->bucket[s->e[i].hash & s->mask];
  while (*link != i) link = &s->e[*link].chain;
  *link = s->e[i].chain;
}

/* Takes entry i out of every structure, reports it, and frees its slot. */
static void remove_entry(ac_store_t *s, uint32_t i, ac_removed_t why) {
  entry *x = &s->e[i];
  chain_unlink(s, i);
  lru_unlink(s, i);
  if (x->expires != 0) s->ttl_count--;
  s->size--;
  if (s->removed) s->removed(s->ud, i, x->tag, key_of(x), x->len, why);
  if (x->len > INLINE_KEY) {
    ac__free((void *)key_of(x));
    s->key_bytes -= heap_size(x->len);
  }
  x->live = 0;
  x->chain = s->free;
  s->free = i;
}

static inline bool expired(const ac_store_t *s, const entry *x) {
  return x->expires != 0 && s->clock() >= x->expires;
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
  s->mask = MIN_BUCKETS - 1;
  s->bucket = ac__calloc(MIN_BUCKETS, sizeof *s->bucket);
  if (s->bucket == NULL) goto nomem;
  *err = 0;
  return s;
nomem:
  ac__free(s);
  *err = AC_ENOMEM;
  return NULL;
}

void ac_store_free(ac_store_t *s) {
  if (s == NULL) return;
  ac_store_clear(s);
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
  touch(s, i);
  s->hits++;
  return i;
}

uint32_t ac_store_peek(ac_store_t *s, int tag, const void *key, size_t len) {
  uint32_t i = find(s, (uint32_t)ac__hash(tag, key, len), tag, key, len);
  if (i == 0 || expired(s, &s->e[i])) return 0;
  return i;
}

/* Doubles the bucket array and rehashes.  Failure is harmless: chains get
 * longer, nothing is lost. */
static void grow_buckets(ac_store_t *s) {
  uint32_t n = (s->mask + 1) * 2;
  uint32_t *b = ac__calloc(n, sizeof *b);
  if (b == NULL) return;
  for (uint32_t i = 1; i <= s->used; i++) {
    entry *x = &s->e[i];
    if (!x->live) continue;
    x->chain = b[x->hash & (n - 1)];
    b[x->hash & (n - 1)] = i;
  }
  ac__free(s->bucket);
  s->bucket = b;
  s->mask = n - 1;
}

/* A free slot, growing the slab when needed; 0 when out of memory. */
static uint32_t take_slot(ac_store_t *s) {
  if (s->free != 0) {
    uint32_t i = s->free;
    s->free = s->e[i].chain;
    return i;
  }
  if (s->used == s->cap) {
    uint32_t cap = s->cap < MIN_SLOTS ? MIN_SLOTS : s->cap * 2;
    if (cap > s->maxsize || cap < s->cap) cap = s->maxsize;
    entry *e = ac__realloc(s->e, ((size_t)cap + 1) * sizeof *e);
    if (e == NULL) return 0;
    s->e = e;
    s->cap = cap;
  }
  /* Mark the new slot free before anything (a bucket rehash) reads it. */
  s->e[s->used + 1].live = 0;
  return ++s->used;
}

static double deadline(const ac_store_t *s, double ttl) {
  return (ttl == 0 || isinf(ttl)) ? 0 : s->clock() + ttl;
}

static void set_expiry(ac_store_t *s, entry *x, double expires) {
  if (x->expires != 0) s->ttl_count--;
  if (expires != 0) s->ttl_count++;
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
    touch(s, i);
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
    s->evictions++;
    remove_entry(s, s->tail, AC_REMOVED_EVICTED);
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
  lru_push_front(s, i);
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
  while (s->tail != 0) remove_entry(s, s->tail, AC_REMOVED_CLEARED);
  /* Start handing out slots from 1 again so a refilled store is compact. */
  s->free = 0;
  s->used = 0;
  s->sweep = 0;
}

uint32_t ac_store_expire(ac_store_t *s, uint32_t max_checks) {
  if (s->ttl_count == 0 || s->used == 0) return 0;
  double now = s->clock();
  uint32_t removed = 0;
  if (max_checks > s->used) max_checks = s->used;
  for (uint32_t n = 0; n < max_checks; n++) {
    if (++s->sweep > s->used) s->sweep = 1;
    entry *x = &s->e[s->sweep];
    if (x->live && x->expires != 0 && now >= x->expires) {
      s->expirations++;
      remove_entry(s, s->sweep, AC_REMOVED_EXPIRED);
      removed++;
    }
  }
  return removed;
}

uint32_t ac_store_ttl_count(const ac_store_t *s) { return s->ttl_count; }

double ac_store_ttl_left(const ac_store_t *s, uint32_t slot) {
  if (slot == 0 || slot > s->used || !s->e[slot].live) return 0;
  double at = s->e[slot].expires;
  if (at == 0) return INFINITY;
  double left = at - s->clock();
  return left > 0 ? left : 0;
}

const char *ac_store_key(const ac_store_t *s, uint32_t slot, int *tag,
                         size_t *len) {
  if (slot == 0 || slot > s->used || !s->e[slot].live) return NULL;
  if (tag) *tag = s->e[slot].tag;
  if (len) *len = s->e[slot].len;
  return key_of(&s->e[slot]);
}

uint32_t ac_store_next_mru(const ac_store_t *s, uint32_t slot) {
  if (slot == 0) return s->head;
  if (slot > s->used || !s->e[slot].live) return 0;
  return s->e[slot].next;
}

uint32_t ac_store_slot_bound(const ac_store_t *s) {
  /* A free slot or an evicted one is at most `used`; a new one is used+1. */
  return (s->free == 0 && s->used < s->maxsize) ? s->used + 1 : s->used;
}

void ac_store_stats(const ac_store_t *s, ac_store_stats_t *out) {
  out->hits = s->hits;
  out->misses = s->misses;
  out->evictions = s->evictions;
  out->expirations = s->expirations;
  out->size = s->size;
  out->maxsize = s->maxsize;
}

void ac_store_reset_stats(ac_store_t *s) {
  s->hits = s->misses = s->evictions = s->expirations = 0;
}

size_t ac_store_memory(const ac_store_t *s) {
  return sizeof *s + (s->e ? ((size_t)s->cap + 1) * sizeof(entry) : 0) +
         ((size_t)s->mask + 1) * sizeof(uint32_t) + s->key_bytes;
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
