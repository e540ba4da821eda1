/* The flight table: a chained hash map from (tag, key) to open flights.
 * Each flight is one allocation holding its key; waiters form a FIFO list
 * through their own next_ pointers, so joining allocates nothing. */
#include <string.h>

#include "ac_error.h"
#include "ac_flight.h"
#include "alloc.h"
#include "hash.h"

struct ac_flight_s {
  ac_flight_t *chain;
  ac_flights_t *owner;
  ac_waiter_t *first, *last;
  void *data;
  uint64_t hash;
  uint32_t nwaiters;
  int detached; /* out of the table already */
  int tag;
  size_t len;
  char key[];
};

struct ac_flights_s {
  ac_flight_t **bucket;
  size_t mask, count;
  ac_flight_t *detached; /* open flights out of the table, through chain */
};

ac_flights_t *ac_flights_new(void) {
  ac_flights_t *fs = ac__calloc(1, sizeof *fs);
  if (fs == NULL) return NULL;
  fs->mask = 15;
  fs->bucket = ac__calloc(fs->mask + 1, sizeof *fs->bucket);
  if (fs->bucket == NULL) {
    ac__free(fs);
    return NULL;
  }
  return fs;
}

void ac_flights_free(ac_flights_t *fs) {
  if (fs == NULL) return;
  /* A waiter cancelled here may start a new flight (a retry) in a bucket
   * already passed: sweep until none is left. */
  while (fs->count > 0 || fs->detached != NULL) {
    for (size_t b = 0; b <= fs->mask; b++)
      while (fs->bucket[b] != NULL) ac_flight_finish(fs->bucket[b], AC_ECANCELED);
    while (fs->detached != NULL) ac_flight_finish(fs->detached, AC_ECANCELED);
  }
  ac__free(fs->bucket);
  ac__free(fs);
}

static ac_flight_t **slot_of(ac_flights_t *fs, uint64_t h, int tag,
                             const void *key, size_t len) {
  ac_flight_t **p = &fs->bucket[h & fs->mask];
  while (*p != NULL && !((*p)->hash == h && (*p)->tag == tag &&
                         (*p)->len == len && (len == 0 || memcmp((*p)->key, key, len) == 0)))
    p = &(*p)->chain;
  return p;
}

ac_flight_t *ac_flights_find(ac_flights_t *fs, int tag, const void *key,
                             size_t len) {
  if (fs->count == 0) return NULL;
  return *slot_of(fs, ac__hash(tag, key, len), tag, key, len);
}

static void grow(ac_flights_t *fs) {
  size_t n = (fs->mask + 1) * 2;
  ac_flight_t **b = ac__calloc(n, sizeof *b);
  if (b == NULL) return; /* longer chains, still correct */
  for (size_t i = 0; i <= fs->mask; i++) {
    ac_flight_t *f = fs->bucket[i], *next;
    for (; f != NULL; f = next) {
      next = f->chain;
      f->chain = b[f->hash & (n - 1)];
      b[f->hash & (n - 1)] = f;
    }
  }
  ac__free(fs->bucket);
  fs->bucket = b;
  fs->mask = n - 1;
}

int ac_flights_start(ac_flights_t *fs, int tag, const void *key, size_t len,
                     void *data, ac_flight_t **out) {
  uint64_t h = ac__hash(tag, key, len);
  ac_flight_t **p = slot_of(fs, h, tag, key, len);
  if (*p != NULL) return AC_EBUSY;
  ac_flight_t *f = ac__malloc(sizeof *f + len);
  if (f == NULL) return AC_ENOMEM;
  f->chain = NULL;
  f->owner = fs;
  f->first = f->last = NULL;
  f->data = data;
  f->hash = h;
  f->nwaiters = 0;
  f->detached = 0;
  f->tag = tag;
  f->len = len;
  if (len) memcpy(f->key, key, len);
  *p = f;
  if (++fs->count > fs->mask + 1) grow(fs);
  *out = f;
  return 0;
}

size_t ac_flights_count(const ac_flights_t *fs) { return fs->count; }

void ac_flight_join(ac_flight_t *f, ac_waiter_t *w) {
  w->next_ = NULL;
  if (f->last) f->last->next_ = w; else f->first = w;
  f->last = w;
  f->nwaiters++;
}

void ac_flight_detach(ac_flight_t *f) {
  if (f->detached) return;
  ac_flights_t *fs = f->owner;
  ac_flight_t **p = &fs->bucket[f->hash & fs->mask];
  while (*p != f) p = &(*p)->chain;
  *p = f->chain;
  fs->count--;
  f->detached = 1;
  f->chain = fs->detached;
  fs->detached = f;
}

void ac_flight_finish(ac_flight_t *f, int status) {
  ac_flight_detach(f);
  ac_flight_t **p = &f->owner->detached;
  while (*p != f) p = &(*p)->chain;
  *p = f->chain;
  /* Waiters may join new flights or start loads from their callbacks;
   * this flight is already out of the table, so they cannot join it. */
  ac_waiter_t *w = f->first, *next;
  for (; w != NULL; w = next) {
    next = w->next_;
    w->cb(w, f, status);
  }
  ac__free(f);
}

void *ac_flight_data(const ac_flight_t *f) { return f->data; }

uint32_t ac_flight_waiters(const ac_flight_t *f) { return f->nwaiters; }

const char *ac_flight_key(const ac_flight_t *f, int *tag, size_t *len) {
  if (tag) *tag = f->tag;
  if (len) *len = f->len;
  return f->key;
}
