/* The cache (see ac_cache.h): the store, the flight table, and the loads
 * and batches in progress.
 *
 * Data structure
 *   store     keys -> slots, TTL, eviction (store.c)
 *   flights   open loads by key (flight.c); a flight's data is its load
 *   loads     every load whose flight is still open, doubly linked, so
 *             clear() and free() reach them
 *   batches   every batch not yet done, doubly linked; the ones still
 *             collecting keys are also on `collecting`
 *   refs      1 for the owner (dropped by ac_cache_free) + 1 per load and
 *             batch not yet finished + 1 per backend write in flight: the
 *             struct is freed when the last goes, so a loader that outlives
 *             the cache can still finish its load.
 *
 * A load is OPEN while its flight is (waiters may join it, its value may
 * be stored) and CLOSED once the flight is finished early (timed out,
 * cancelled by free): its waiters have their outcome, and it waits only
 * for its owner's ac_load_finish.  A stale load (the key was written while
 * it ran) is open but detached from the flight table: it keeps its
 * waiters, but its value is not stored and new callers do not find it.
 *
 * Invariants: a load is on `loads` exactly while its flight is open; each
 * load is finished exactly once by its owner (a batch's loads by whoever
 * handles its dispatch, a closed one included) and freed then, or with its
 * batch; every waiter callback runs once. */
#include <math.h>
#include <string.h>

#include "ac_cache.h"
#include "ac_clock.h"
#include "ac_error.h"
#include "ac_timer.h"
#include "alloc.h"

#define DEFAULT_MAX_BATCH 100u

/* Active expiry: a slice every tick while entries with a TTL may be due,
 * one whole pass over the slab every SWEEP_PASS_TICKS ticks (so an expired
 * entry nobody reads leaves within about a second), and slices again after
 * SWEEP_AGAIN while the last one stopped among mostly expired entries or
 * while the store shrinks.  No slice runs longer than SWEEP_BUDGET. */
#define SWEEP_TICK 0.1      /* seconds, unless the options say otherwise */
#define SWEEP_IDLE 1.0      /* when nothing can expire within a second */
#define SWEEP_AGAIN 0.001   /* the loop gets a turn between slices */
#define SWEEP_BUDGET 0.001  /* seconds per slice */
#define SWEEP_PASS_TICKS 10u
#define SWEEP_MIN_CHECKS 1024u
/* The owner is told to compact its values (ops.compact) when the slab has
 * shrunk below a quarter of what it held, and only up to this many slots,
 * so that the copy fits a tick of its own. */
#define COMPACT_MAX 16384u

enum { LOAD_OPENED = 1, LOAD_LEADING, LOAD_FETCHING, LOAD_BATCHED };

struct ac_load_s {
  ac_cache_t *c;
  ac_flight_t *flight; /* NULL once closed */
  ac_timer_t *timer;   /* load_timeout, armed by ac_load_background */
  ac_batch_t *batch;   /* the batch it belongs to, or NULL */
  ac_load_t *prev, *next; /* c->loads while open */
  double ttl;
  uint32_t slot;       /* stored value's slot, 0 for none */
  uint32_t joined;     /* waiters joined so far */
  int state;
  int stale;           /* the key was written meanwhile: do not store */
  int stored;          /* ac_load_store was called */
  int from_backend;    /* the value came from the backend: no write back */
  int finished;        /* ac_load_finish was called (a batch's load stays
                          until ac_batch_done: the batch still reads it) */
  int closing;         /* its waiters are being called: a finish from one
                          of them frees it only once they all have run */
  int tag;             /* the key, for after the flight closed */
  size_t len;
  char *key;           /* a copy after the owner's bytes: the flight's
                          goes when the flight closes early */
  /* the owner's bytes follow, aligned, then the key */
};

/* A batch collects keys, is queued when due, asks the backend for its
 * keys (when there is one: FETCHING), then is dispatched. */
enum { BATCH_COLLECTING = 1, BATCH_QUEUED, BATCH_FETCHING, BATCH_DISPATCHED };

struct ac_batch_s {
  ac_task_t due;       /* posted on the ready queue when due */
  ac_cache_t *c;
  const void *group;
  ac_load_t **loads;
  size_t n, cap;
  ac_timer_t *timer;   /* the window, then load_timeout */
  int state;
  int closed;          /* dispatched by ac_cache_free */
  int timing_out;      /* its timeout is releasing the keys' waiters */
  int done;            /* ac_batch_done came from one of those waiters */
  size_t fetching;     /* FETCHING: backend lookups not answered yet */
  ac_batch_t *next_collecting;
  ac_batch_t *prev, *next; /* c->batches */
};

struct ac_cache_s {
  ac_store_t *store;
  ac_flights_t *flights;
  ac_sched_t *sched;
  ac_backend_t *backend;
  ac_timer_t *sweeper;
  double sweep_tick;
  uint32_t owner_slots; /* slots the owner's values may have room for */
  int compact_next;     /* the next tick calls ops.compact */
  ac_cache_ops_t ops;
  void *ud;
  double default_ttl, load_timeout, batch_window;
  uint32_t max_batch;
  size_t load_data, batch_data;
  ac_load_t *loads;
  ac_batch_t *batches, *collecting;
  size_t refs;
  int closed;
  ac_cache_stats_t st; /* the counters kept here (store's are added) */
};

#define ALIGN(n) (((n) + 15) & ~(size_t)15)

/* ---- references ---------------------------------------------------------- */

static void unref(ac_cache_t *c) {
  if (--c->refs == 0) ac__free(c);
}

/* ---- loads ---------------------------------------------------------------- */

void *ac_load_data(ac_load_t *ld) { return (char *)ld + ALIGN(sizeof *ld); }
ac_cache_t *ac_load_cache(const ac_load_t *ld) { return ld->c; }
uint32_t ac_load_slot(const ac_load_t *ld) { return ld->slot; }
uint32_t ac_load_waiters(const ac_load_t *ld) { return ld->joined; }
ac_batch_t *ac_load_batch(const ac_load_t *ld) { return ld->batch; }
int ac_load_open(const ac_load_t *ld) { return ld->flight != NULL; }

const char *ac_load_key(const ac_load_t *ld, int *tag, size_t *len) {
  if (tag) *tag = ld->tag;
  if (len) *len = ld->len;
  return ld->key;
}

static void unlink_load(ac_load_t *ld) {
  ac_cache_t *c = ld->c;
  if (ld->prev) ld->prev->next = ld->next; else c->loads = ld->next;
  if (ld->next) ld->next->prev = ld->prev;
  ld->prev = ld->next = NULL;
}

/* Frees a finished load (its flight closed). */
static void free_load(ac_load_t *ld) {
  ac_cache_t *c = ld->c;
  ac__free(ld);
  unref(c);
}

/* Finishes the flight of an open load: every waiter gets status.  The load
 * stays for its owner to finish. */
static void close_flight(ac_load_t *ld, int status) {
  ac_flight_t *f = ld->flight;
  if (f == NULL) return;
  ld->flight = NULL;
  unlink_load(ld);
  ac_timer_free(ld->timer);
  ld->timer = NULL;
  ld->closing = 1;
  ac_flight_finish(f, status);
  ld->closing = 0;
  /* The owner finished it from a waiter's callback (it was closed early:
   * timed out, cancelled); when ac_load_finish closes it, it frees it. */
  if (ld->finished && ld->batch == NULL) free_load(ld);
}

static void on_load_timeout(ac_timer_t *t, void *data) {
  ac_load_t *ld = data;
  (void)t;
  ld->c->st.load_timeouts++;
  close_flight(ld, AC_ETIMEDOUT);
}

static double effective_ttl(const ac_cache_t *c, double ttl) {
  if (ttl == 0) return c->default_ttl;
  return isinf(ttl) ? 0 : ttl;
}

static ac_load_t *open_load(ac_cache_t *c, int tag, const void *key,
                            size_t len, double ttl, int *err) {
  ac_load_t *ld = ac__calloc(1, ALIGN(sizeof *ld) + c->load_data + len + 1);
  if (ld == NULL) {
    *err = AC_ENOMEM;
    return NULL;
  }
  int rc = ac_flights_start(c->flights, tag, key, len, ld, &ld->flight);
  if (rc != 0) {
    ac__free(ld);
    *err = rc;
    return NULL;
  }
  ld->c = c;
  ld->ttl = effective_ttl(c, ttl);
  ld->state = LOAD_OPENED;
  ld->tag = tag;
  ld->len = len;
  ld->key = (char *)ld + ALIGN(sizeof *ld) + c->load_data;
  if (len) memcpy(ld->key, key, len);
  ld->next = c->loads;
  if (ld->next) ld->next->prev = ld;
  c->loads = ld;
  c->refs++;
  c->st.loads++;
  return ld;
}

int ac_cache_lead(ac_cache_t *c, int tag, const void *key, size_t len,
                  double ttl, ac_load_t **out) {
  if (c->closed) return AC_ECLOSED;
  if (isnan(ttl) || ttl < 0) return AC_EINVAL;
  int err;
  ac_load_t *ld = open_load(c, tag, key, len, ttl, &err);
  if (ld == NULL) return err;
  *out = ld;
  return 0;
}

static void backend_write(ac_cache_t *c, uint32_t slot);
static void on_backend_get(void *arg, int status, const char *bytes,
                           size_t len, double ttl_left);

/* The backend key: the tag byte, then the key.  NULL when out of memory. */
static char *backend_key(int tag, const char *key, size_t len) {
  char *k = ac__malloc(len + 1);
  if (k == NULL) return NULL;
  k[0] = (char)tag;
  if (len) memcpy(k + 1, key, len);
  return k;
}

int ac_load_begin(ac_load_t *ld) {
  ac_cache_t *c = ld->c;
  ld->state = LOAD_LEADING;
  if (c->backend == NULL || c->closed) return AC_LEAD;
  char *k = backend_key(ld->tag, ld->key, ld->len);
  if (k == NULL || c->backend->vt->get(c->backend, k, ld->len + 1,
                                       on_backend_get, ld) != 0) {
    ac__free(k); /* the backend refused: load as without one */
    c->st.backend_errors++;
    return AC_LEAD;
  }
  ac__free(k);
  ld->state = LOAD_FETCHING;
  ac_load_background(ld); /* the wait is bounded from here on */
  return AC_JOIN;
}

/* A backend's answer for the key of an open load: a value is stored (with
 * the time it has left), handed to the waiters, and the owner told to
 * finish the load (ops.load, found): returns 1.  Otherwise 0, counted: a
 * miss, a failure, or bytes that do not decode (loaded afresh).  A
 * cancelled lookup counts as a failure when count_cancel. */
static int serve_from_backend(ac_load_t *ld, int status, const char *bytes, size_t len,
                              double ttl_left, int count_cancel) {
  ac_cache_t *c = ld->c;
  /* No time left is expired (a TTL of 0 would store it for ever). */
  if (status == 0 && !(ttl_left > 0)) status = AC_ENOENT;
  if (status == 0 && ld->flight != NULL && !ld->stale && !c->closed) {
    int is_new;
    int64_t slot = ac_store_set(c->store, ld->tag, ld->key, ld->len,
                                isinf(ttl_left) ? 0 : ttl_left, &is_new);
    if (slot > 0 && c->ops.decode(c->ud, (uint32_t)slot, bytes, len) == 0) {
      c->st.backend_hits++;
      ld->stored = 1;
      ld->from_backend = 1;
      ld->slot = (uint32_t)slot;
      /* The waiters get the value now; the owner finishes the load. */
      close_flight(ld, 0);
      c->ops.load(c->ud, ld, 1);
      return 1;
    }
    if (slot > 0) ac_store_delete(c->store, ld->tag, ld->key, ld->len);
    c->st.backend_errors++; /* corrupt bytes: load it afresh */
  } else if (status == AC_ENOENT) {
    c->st.backend_misses++;
  } else if (status != 0 && (count_cancel || status != AC_ECANCELED)) {
    c->st.backend_errors++;
  }
  return 0;
}

static void on_backend_get(void *arg, int status, const char *bytes,
                           size_t len, double ttl_left) {
  ac_load_t *ld = arg;
  ld->state = LOAD_LEADING;
  if (!serve_from_backend(ld, status, bytes, len, ttl_left, 1))
    ld->c->ops.load(ld->c->ud, ld, 0); /* the loader runs */
}

void ac_load_background(ac_load_t *ld) {
  ac_cache_t *c = ld->c;
  if (ld->flight == NULL || ld->timer != NULL || isinf(c->load_timeout) ||
      c->load_timeout <= 0)
    return;
  ld->timer = ac_timer_new(c->sched, on_load_timeout, ld);
  /* Out of memory: no timeout for this load, which still ends normally. */
  if (ld->timer != NULL) ac_timer_start(ld->timer, c->load_timeout, 0);
}

int64_t ac_load_store(ac_load_t *ld) {
  ac_cache_t *c = ld->c;
  if (ld->stored) return ld->slot;
  ld->stored = 1;
  if (ld->flight == NULL || ld->stale || c->closed) return 0;
  int is_new;
  int64_t slot = ac_store_set(c->store, ld->tag, ld->key, ld->len, ld->ttl, &is_new);
  if (slot > 0) ld->slot = (uint32_t)slot;
  return slot;
}

void ac_load_finish(ac_load_t *ld, int status, uint32_t slot) {
  ac_cache_t *c = ld->c;
  if (status == AC_ELOAD) c->st.load_errors++;
  if (ld->flight != NULL) {
    ld->slot = status == 0 ? slot : 0;
    close_flight(ld, status);
  }
  if (status == 0 && slot != 0 && !ld->from_backend && !c->closed)
    backend_write(c, slot);
  ld->finished = 1;
  if (ld->batch == NULL && !ld->closing) free_load(ld);
}

void ac_load_abort(ac_load_t *ld) {
  ac_batch_t *b = ld->batch;
  if (b != NULL)
    for (size_t i = 0; i < b->n; i++)
      if (b->loads[i] == ld) {
        memmove(&b->loads[i], &b->loads[i + 1], (b->n - i - 1) * sizeof *b->loads);
        b->n--;
        break;
      }
  ld->c->st.loads--;
  close_flight(ld, AC_ECANCELED);
  free_load(ld);
}

static void on_flight_waiter(ac_waiter_t *fw, ac_flight_t *f, int status) {
  ac_load_waiter_t *w = (ac_load_waiter_t *)fw;
  w->cb(w, ac_flight_data(f), status);
}

int ac_load_join(ac_load_t *ld, ac_load_waiter_t *w) {
  if (ld->flight == NULL) return AC_ECLOSED;
  w->flight_.cb = on_flight_waiter;
  w->flight_.data = w;
  ac_flight_join(ld->flight, &w->flight_);
  ld->joined++;
  return 0;
}

/* ---- batches ---------------------------------------------------------------- */

void *ac_batch_data(ac_batch_t *b) { return (char *)b + ALIGN(sizeof *b); }
size_t ac_batch_size(const ac_batch_t *b) { return b->n; }
ac_load_t *ac_batch_load(const ac_batch_t *b, size_t i) {
  return i < b->n ? b->loads[i] : NULL;
}
const void *ac_batch_group(const ac_batch_t *b) { return b->group; }
ac_cache_t *ac_batch_cache(const ac_batch_t *b) { return b->c; }
int ac_batch_closed(const ac_batch_t *b) { return b->closed; }

static void unlink_collecting(ac_batch_t *b) {
  ac_batch_t **p = &b->c->collecting;
  while (*p != NULL && *p != b) p = &(*p)->next_collecting;
  if (*p == b) *p = b->next_collecting;
  b->next_collecting = NULL;
}

static void dispatch_batch(ac_batch_t *b) {
  ac_cache_t *c = b->c;
  b->state = BATCH_DISPATCHED;
  if (c->closed) b->closed = 1;
  c->st.batches++;
  c->st.batched_keys += b->n;
  c->ops.dispatch(c->ud, b);
}

static void on_batch_fetched_due(ac_task_t *t) { dispatch_batch(t->data); }

/* Every lookup of a fetching batch has been answered: the loads the
 * backend served (finished by the owner in ops.load) leave the batch, and
 * what is left goes to the batch loader, from a pass of the ready queue
 * (never from inside the backend's callback: the loader is user code). */
static void fetched_all(ac_batch_t *b) {
  size_t kept = 0;
  for (size_t i = 0; i < b->n; i++) {
    ac_load_t *ld = b->loads[i];
    if (ld->from_backend && ld->finished) free_load(ld);
    else b->loads[kept++] = ld;
  }
  b->n = kept;
  b->due.fn = on_batch_fetched_due;
  ac_sched_post(b->c->sched, &b->due);
}

static void on_batch_fetched(void *arg, int status, const char *bytes, size_t len,
                             double ttl_left) {
  ac_load_t *ld = arg;
  ac_batch_t *b = ld->batch;
  /* A load the backend did not serve stays for the batch loader. */
  serve_from_backend(ld, status, bytes, len, ttl_left, 0);
  if (--b->fetching == 0) fetched_all(b);
}

/* Runs in a pass of the ready queue.  With a backend, the batch's keys
 * are looked up there first (a Redis backend sends them as one MGET). */
static void on_batch_due(ac_task_t *t) {
  ac_batch_t *b = t->data;
  ac_cache_t *c = b->c;
  if (c->backend == NULL || c->closed) {
    dispatch_batch(b);
    return;
  }
  b->state = BATCH_FETCHING;
  ac_batch_background(b); /* a backend that never answers holds nobody for ever */
  b->fetching = 1; /* held until every lookup is sent */
  for (size_t i = 0; i < b->n; i++) {
    ac_load_t *ld = b->loads[i];
    if (ld->flight == NULL) continue; /* timed out already */
    char *k = backend_key(ld->tag, ld->key, ld->len);
    if (k != NULL &&
        c->backend->vt->get(c->backend, k, ld->len + 1, on_batch_fetched, ld) == 0)
      b->fetching++;
    else
      c->st.backend_errors++; /* refused: the loader has it */
    ac__free(k);
  }
  if (--b->fetching == 0) fetched_all(b);
}

static void make_due(ac_batch_t *b) {
  if (b->state != BATCH_COLLECTING) return;
  b->state = BATCH_QUEUED;
  unlink_collecting(b);
  if (b->timer != NULL) ac_timer_stop(b->timer);
  ac_sched_post(b->c->sched, &b->due);
}

static void on_batch_timer(ac_timer_t *t, void *data) {
  ac_batch_t *b = data;
  (void)t;
  if (b->state == BATCH_COLLECTING) {
    make_due(b);
    return;
  }
  /* The batch loader outlived load_timeout: release every key's waiters.
   * One of them may finish the batch: it is freed after the loop. */
  b->timing_out = 1;
  for (size_t i = 0; i < b->n; i++)
    if (b->loads[i]->flight != NULL) {
      b->c->st.load_timeouts++;
      close_flight(b->loads[i], AC_ETIMEDOUT);
    }
  b->timing_out = 0;
  if (b->done) ac_batch_done(b);
}

static ac_batch_t *open_batch(ac_cache_t *c, const void *group, int *err) {
  for (ac_batch_t *b = c->collecting; b != NULL; b = b->next_collecting)
    if (b->group == group) return b;
  ac_batch_t *b = ac__calloc(1, ALIGN(sizeof *b) + c->batch_data);
  if (b != NULL) b->timer = ac_timer_new(c->sched, on_batch_timer, b);
  if (b == NULL || b->timer == NULL) {
    ac__free(b);
    *err = AC_ENOMEM;
    return NULL;
  }
  b->due.fn = on_batch_due;
  b->due.data = b;
  b->c = c;
  b->group = group;
  b->state = BATCH_COLLECTING;
  b->next_collecting = c->collecting;
  c->collecting = b;
  b->next = c->batches;
  if (b->next) b->next->prev = b;
  c->batches = b;
  c->refs++;
  /* The window never outlasts load_timeout: no caller waits forever. */
  double window = c->batch_window;
  if (c->load_timeout > 0 && window > c->load_timeout) window = c->load_timeout;
  ac_timer_start(b->timer, window, 0);
  return b;
}

int ac_cache_batch(ac_cache_t *c, const void *group, int tag, const void *key,
                   size_t len, double ttl, ac_load_t **out) {
  if (c->closed) return AC_ECLOSED;
  if (c->ops.dispatch == NULL || isnan(ttl) || ttl < 0) return AC_EINVAL;
  int err;
  ac_batch_t *b = open_batch(c, group, &err);
  if (b == NULL) return err;
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 16;
    ac_load_t **loads = ac__realloc(b->loads, cap * sizeof *loads);
    if (loads == NULL) {
      err = AC_ENOMEM;
      goto fail;
    }
    b->loads = loads;
    b->cap = cap;
  }
  ac_load_t *ld = open_load(c, tag, key, len, ttl, &err);
  if (ld == NULL) goto fail;
  ld->state = LOAD_BATCHED;
  ld->batch = b;
  b->loads[b->n++] = ld;
  if (b->n >= c->max_batch) make_due(b);
  *out = ld;
  return 0;
fail:
  if (b->n == 0) ac_batch_done(b); /* opened for this key: never dispatch it empty */
  return err;
}

void ac_batch_background(ac_batch_t *b) {
  ac_cache_t *c = b->c;
  if (b->timer == NULL || c->closed || isinf(c->load_timeout) || c->load_timeout <= 0)
    return;
  ac_timer_start(b->timer, c->load_timeout, 0);
}

void ac_batch_done(ac_batch_t *b) {
  ac_cache_t *c = b->c;
  if (b->timing_out) {
    b->done = 1;
    return;
  }
  if (b->state == BATCH_COLLECTING) unlink_collecting(b);
  if (b->prev) b->prev->next = b->next; else c->batches = b->next;
  if (b->next) b->next->prev = b->prev;
  ac_timer_free(b->timer);
  for (size_t i = 0; i < b->n; i++)
    if (b->loads[i]->finished) free_load(b->loads[i]);
  ac__free(b->loads);
  ac__free(b);
  unref(c);
}

/* ---- the cache ------------------------------------------------------------- */

static void on_removed(void *ud, uint32_t slot, int tag, const char *key,
                       size_t len, ac_removed_t why) {
  ac_cache_t *c = ud;
  if (c->ops.removed) c->ops.removed(c->ud, slot, tag, key, len, why);
}

/* TTLs count on the scheduler's clock, so a fake one (tests) moves them. */
static double sched_clock(void *ud) { return ac_sched_now(ud); }

static int on_moved(void *ud, uint32_t from, uint32_t to) {
  ac_cache_t *c = ud;
  return c->ops.moved(c->ud, from, to);
}

/* One slice of active expiry; returns the seconds until the next, and sets
 * *removed (may be NULL) to the entries it removed. */
static double sweep_slice(ac_cache_t *c, double budget, uint32_t *removed) {
  ac_store_stats_t st;
  ac_store_stats(c->store, &st);
  uint32_t checks = st.slots / SWEEP_PASS_TICKS;
  if (checks < SWEEP_MIN_CHECKS) checks = SWEEP_MIN_CHECKS;
  if (st.slots > c->owner_slots) c->owner_slots = st.slots;
  ac_expire_report_t rep = {0};
  ac_store_expire_budget(c->store, checks, budget, &rep);
  ac_store_stats(c->store, &st);
  double next = c->sweep_tick;
  if (rep.more)
    next = SWEEP_AGAIN;
  else if (rep.next_due > ac_sched_now(c->sched) + SWEEP_IDLE)
    next = SWEEP_IDLE;
  /* On the state, not on rep.shrunk: the slice that ends a shrink may not
   * be the one that gave memory back. */
  if (c->ops.compact != NULL && !rep.more && st.slots <= COMPACT_MAX &&
      st.slots < c->owner_slots / 4) {
    c->compact_next = 1;
    next = SWEEP_AGAIN;
  }
  if (removed != NULL) *removed = rep.removed;
  return next;
}

static void on_sweep(ac_timer_t *t, void *data) {
  ac_cache_t *c = data;
  double next;
  if (c->compact_next) { /* a tick of its own: the owner copies its values */
    c->compact_next = 0;
    ac_store_stats_t st;
    ac_store_stats(c->store, &st);
    c->owner_slots = st.slots;
    c->refs++; /* the owner may free the cache from its callback */
    c->ops.compact(c->ud, st.slots);
    int closed = c->closed;
    unref(c);
    if (closed) return;
    next = SWEEP_AGAIN;
  } else {
    next = sweep_slice(c, SWEEP_BUDGET, NULL);
  }
  ac_timer_start(t, next, 0);
}

ac_cache_t *ac_cache_new(const ac_cache_options_t *o, int *err) {
  int dummy;
  if (err == NULL) err = &dummy;
  if (o == NULL || o->sched == NULL || o->maxsize == 0 || o->maxsize == UINT32_MAX ||
      isnan(o->default_ttl) || o->default_ttl < 0 || isnan(o->load_timeout) ||
      o->load_timeout < 0 || isnan(o->batch_window) || o->batch_window < 0 ||
      (o->backend != NULL && (o->ops.load == NULL || o->ops.encode == NULL ||
                              o->ops.decode == NULL))) {
    *err = AC_EINVAL;
    return NULL;
  }
  ac_cache_t *c = ac__calloc(1, sizeof *c);
  if (c == NULL) goto nomem;
  c->refs = 1;
  ac_store_options_t so = {.maxsize = o->maxsize, .removed = on_removed, .ud = c,
                           .clock = o->clock,
                           .clock_ud_fn = o->clock ? NULL : sched_clock,
                           .clock_ud = o->sched,
                           .moved = o->ops.moved != NULL ? on_moved : NULL};
  c->store = ac_store_new(&so, err);
  c->flights = ac_flights_new();
  c->sweeper = ac_timer_new(o->sched, on_sweep, c);
  if (c->store == NULL || c->flights == NULL || c->sweeper == NULL) {
    ac_store_free(c->store);
    ac_flights_free(c->flights);
    ac_timer_free(c->sweeper);
    ac__free(c);
    goto nomem;
  }
  c->sched = o->sched;
  c->backend = o->backend;
  c->ops = o->ops;
  c->ud = o->ud;
  c->default_ttl = isinf(o->default_ttl) ? 0 : o->default_ttl;
  c->load_timeout = o->load_timeout == 0 ? INFINITY : o->load_timeout;
  c->batch_window = o->batch_window;
  c->max_batch = o->max_batch_size ? o->max_batch_size : DEFAULT_MAX_BATCH;
  c->load_data = ALIGN(o->load_data_size);
  c->batch_data = ALIGN(o->batch_data_size);
  c->sweep_tick = o->sweep_interval > 0 ? o->sweep_interval : SWEEP_TICK;
  ac_timer_start(c->sweeper, c->sweep_tick, 0); /* re-armed by on_sweep */
  ac_timer_unref(c->sweeper); /* sweeping alone keeps no loop alive */
  *err = 0;
  return c;
nomem:
  *err = AC_ENOMEM;
  return NULL;
}

void ac_cache_free(ac_cache_t *c) {
  if (c == NULL || c->closed) return;
  c->closed = 1;
  /* Open loads release their waiters; their owners finish them later. */
  while (c->loads != NULL) close_flight(c->loads, AC_ECANCELED);
  /* Batches never dispatched are handed to their owner now, closed, so it
   * finishes their loads (already cancelled) and releases what it holds. */
  for (ac_batch_t *b = c->batches, *next; b != NULL; b = next) {
    next = b->next;
    ac_timer_stop(b->timer); /* its window or timeout has nothing left to do */
    if (b->state == BATCH_DISPATCHED) continue;
    if (b->state == BATCH_FETCHING) continue; /* its last lookup dispatches it, closed */
    if (b->state == BATCH_QUEUED) ac_sched_cancel(c->sched, &b->due);
    if (b->state == BATCH_COLLECTING) unlink_collecting(b);
    b->state = BATCH_DISPATCHED;
    b->closed = 1;
    c->ops.dispatch(c->ud, b);
  }
  ac_flights_free(c->flights);
  c->flights = NULL;
  ac_store_free(c->store); /* reports every entry removed */
  c->store = NULL;
  ac_timer_free(c->sweeper);
  c->sweeper = NULL;
  unref(c);
}

int ac_cache_get(ac_cache_t *c, int tag, const void *key, size_t len,
                 ac_lookup_t *out) {
  if (c->closed) return AC_MISS;
  uint32_t slot = ac_store_get(c->store, tag, key, len);
  if (slot != 0) {
    out->slot = slot;
    return AC_HIT;
  }
  ac_flight_t *f = ac_flights_find(c->flights, tag, key, len);
  if (f != NULL) {
    out->load = ac_flight_data(f);
    return AC_JOIN;
  }
  return AC_MISS;
}

uint32_t ac_cache_peek(ac_cache_t *c, int tag, const void *key, size_t len) {
  if (c->closed) return 0;
  return ac_store_peek(c->store, tag, key, len);
}

ac_load_t *ac_cache_loading(ac_cache_t *c, int tag, const void *key,
                            size_t len) {
  if (c->closed) return NULL;
  ac_flight_t *f = ac_flights_find(c->flights, tag, key, len);
  return f ? ac_flight_data(f) : NULL;
}

/* A write to a key: a load of it in progress predates the write, so its
 * result is not stored and later callers do not join it. */
static void stale_load(ac_load_t *ld) {
  ld->stale = 1;
  ac_flight_detach(ld->flight);
}

static void make_stale(ac_cache_t *c, int tag, const void *key, size_t len) {
  ac_flight_t *f = ac_flights_find(c->flights, tag, key, len);
  if (f != NULL) stale_load(ac_flight_data(f));
}

int64_t ac_cache_set(ac_cache_t *c, int tag, const void *key, size_t len,
                     double ttl) {
  if (c->closed) return AC_ECLOSED;
  int is_new;
  int64_t slot = ac_store_set(c->store, tag, key, len, effective_ttl(c, ttl), &is_new);
  make_stale(c, tag, key, len); /* a write, even one the policy refused */
  return slot;
}

void ac_cache_written(ac_cache_t *c, uint32_t slot) {
  if (!c->closed) backend_write(c, slot);
}

/* ---- the backend's writes ---------------------------------------------------- */

static void on_backend_done(void *arg, int status) {
  ac_cache_t *c = arg;
  if (status != 0) c->st.backend_errors++;
  unref(c);
}

/* A write handed to the backend (rc == 0) holds the cache until its
 * callback; one refused, or never made (rc != 0), counts as an error. */
static void backend_sent(ac_cache_t *c, int rc) {
  if (rc != 0) c->st.backend_errors++;
  else c->refs++;
}

static void backend_write(ac_cache_t *c, uint32_t slot) {
  if (c->backend == NULL) return;
  int tag;
  size_t len, vlen;
  const char *key = ac_store_key(c->store, slot, &tag, &len);
  const char *bytes;
  if (key == NULL) return;
  if (c->ops.encode(c->ud, slot, &bytes, &vlen) != 0) {
    c->st.unencodable++; /* kept in this cache only */
    return;
  }
  char *k = backend_key(tag, key, len);
  double ttl = ac_store_ttl_left(c->store, slot);
  backend_sent(c, k == NULL ? AC_ENOMEM
                            : c->backend->vt->set(c->backend, k, len + 1, bytes, vlen,
                                                  ttl, on_backend_done, c));
  ac__free(k);
}

static void backend_delete(ac_cache_t *c, int tag, const void *key, size_t len) {
  if (c->backend == NULL) return;
  char *k = backend_key(tag, key, len);
  backend_sent(c, k == NULL ? AC_ENOMEM
                            : c->backend->vt->del(c->backend, k, len + 1, on_backend_done, c));
  ac__free(k);
}

int ac_cache_delete(ac_cache_t *c, int tag, const void *key, size_t len) {
  if (c->closed) return AC_ECLOSED;
  make_stale(c, tag, key, len);
  backend_delete(c, tag, key, len);
  return ac_store_delete(c->store, tag, key, len);
}

void ac_cache_clear(ac_cache_t *c) {
  if (c->closed) return;
  ac_store_clear(c->store);
  for (ac_load_t *ld = c->loads; ld != NULL; ld = ld->next) stale_load(ld);
  if (c->backend != NULL)
    backend_sent(c, c->backend->vt->clear(c->backend, on_backend_done, c));
}

int ac_cache_forget(ac_cache_t *c, int tag, const void *key, size_t len) {
  if (c->closed) return AC_ECLOSED;
  make_stale(c, tag, key, len);
  return ac_store_delete(c->store, tag, key, len);
}

void ac_cache_forget_all(ac_cache_t *c) {
  if (c->closed) return;
  ac_store_clear(c->store);
  for (ac_load_t *ld = c->loads; ld != NULL; ld = ld->next) stale_load(ld);
}

uint32_t ac_cache_expire(ac_cache_t *c, double max_seconds) {
  if (c->closed) return 0;
  uint32_t removed;
  sweep_slice(c, max_seconds > 0 ? max_seconds : SWEEP_BUDGET, &removed);
  return removed;
}

/* ---- reading --------------------------------------------------------------------- */

uint32_t ac_cache_slot_bound(const ac_cache_t *c) {
  return c->closed ? 0 : ac_store_slot_bound(c->store);
}

double ac_cache_ttl_left(const ac_cache_t *c, uint32_t slot) {
  return c->closed ? 0 : ac_store_ttl_left(c->store, slot);
}

uint32_t ac_cache_next_ranked(const ac_cache_t *c, uint32_t slot) {
  return c->closed ? 0 : ac_store_next_ranked(c->store, slot);
}

const char *ac_cache_key(const ac_cache_t *c, uint32_t slot, int *tag,
                         size_t *len) {
  return c->closed ? NULL : ac_store_key(c->store, slot, tag, len);
}

void ac_cache_stats(const ac_cache_t *c, ac_cache_stats_t *out) {
  *out = c->st;
  if (c->closed) return;
  ac_store_stats_t s;
  ac_store_stats(c->store, &s);
  out->hits = s.hits;
  out->misses = s.misses;
  out->evictions = s.evictions;
  out->expirations = s.expirations;
  out->size = s.size;
  out->maxsize = s.maxsize;
  out->ttl_count = ac_store_ttl_count(c->store);
  out->in_flight = (uint32_t)ac_flights_count(c->flights);
  out->memory_bytes = ac_store_memory(c->store);
}

double ac_cache_load_timeout(const ac_cache_t *c) { return c->load_timeout; }
double ac_cache_default_ttl(const ac_cache_t *c) { return c->default_ttl; }

void ac_backend_free(ac_backend_t *b) {
  if (b != NULL) b->vt->free(b);
}
