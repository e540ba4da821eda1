/* The cache: keys with TTL and eviction (the store), single-flight loads,
 * staleness, load timeouts and DataLoader-style batch windows, on a
 * scheduler's loop, with an optional second level (a backend).  No Lua: a
 * C host caches with it directly (examples/host_c.c); the Lua binding is
 * one such host.
 *
 * Values belong to the caller and are kept by slot: every cached key owns a
 * slot (1..maxsize, see ac_store.h) for as long as it is cached, and the
 * caller keeps its values in an array indexed by slot.  The cache tells the
 * caller when a slot's value must go (ops.removed); it never looks at
 * values, except through ops.encode/ops.decode when a backend is set.
 *
 * The life of a get:
 *
 *   ac_cache_get(c, key)
 *     AC_HIT   out->slot: the value is values[slot]; nothing else to do.
 *     AC_JOIN  out->load: the key is being loaded; wait for the outcome
 *              with ac_load_join (the waiter's callback runs once, when the
 *              load finishes, fails, times out or the cache closes).
 *     AC_MISS  nothing cached or loading.  Give up, or open a load:
 *   ac_cache_lead(c, key, ttl, &ld)        opens a load (a flight)
 *     ... keep what the loader needs in ac_load_data(ld) ...
 *   ac_load_begin(ld)
 *     AC_LEAD  run the loader now; when it has a value:
 *                slot = ac_load_store(ld)    (0: not to be stored: the key
 *                                             was written meanwhile, the
 *                                             load timed out, the cache
 *                                             closed)
 *                values[slot] = value        (when slot != 0)
 *                ac_load_finish(ld, 0, slot) wakes every waiter
 *              or on failure ac_load_finish(ld, AC_ELOAD, 0).  A loader
 *              that does not finish at once calls ac_load_background(ld)
 *              to bound the waiters' wait by load_timeout.
 *     AC_JOIN  the cache asks the backend first; join the load like any
 *              waiter.  On a backend miss the cache calls ops.load(ld) to
 *              have the loader run (in the background).
 *   ac_cache_batch(c, group, key, ttl, &ld) instead puts a missing key in
 *     the open batch of `group` (any pointer naming a batch loader); join
 *     its load.  When the window ends or the batch is full, the cache calls
 *     ops.dispatch(batch) from a pass of the ready queue; the caller runs
 *     the batch loader and finishes each of the batch's loads, then
 *     ac_batch_done(batch).
 *
 * Writes (ac_cache_set, ac_cache_delete, ac_cache_clear) make a load of
 * the same key in progress stale: its result is not stored, and callers
 * that come after the write start a load of their own instead of joining.
 *
 * Ownership: every load from ac_cache_lead is finished by its caller
 * (ac_load_finish), exactly once; the loads of a batch by whoever handles
 * its dispatch, which then calls ac_batch_done.  Until then the caller may
 * use them, even after ac_cache_free: a cache freed with loads still
 * running releases their waiters with AC_ECANCELED and keeps its memory
 * (and needs ud) until the last of them is finished (finishing then only
 * frees).  A load from ac_cache_batch is the batch's: the caller that
 * queued the key only joins it; whoever handles the batch's dispatch
 * finishes it.
 *
 * Slots are stable while their entry lives, except that the sweep (its
 * timer, or ac_cache_expire) may renumber entries through ops.moved when
 * the store shrinks: do not keep a slot across a turn of the loop; use it
 * in the call that returned it (store, put the value, finish). */
#ifndef AC_CACHE_H
#define AC_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "ac_backend.h"
#include "ac_export.h"
#include "ac_flight.h"
#include "ac_sched.h"
#include "ac_store.h"

typedef struct ac_cache_s ac_cache_t;
typedef struct ac_load_s ac_load_t;
typedef struct ac_batch_s ac_batch_t;
typedef struct ac_load_waiter_s ac_load_waiter_t;

/* A waiter's callback: runs exactly once, with the load's status (0, or
 * AC_ELOAD, AC_ETIMEDOUT, AC_ECANCELED, or a backend's code).  ld is valid
 * during the call only: read ac_load_slot(ld) (the stored value's slot, 0
 * when none) and ac_load_data(ld) there.  A value that was not stored
 * (the key was written meanwhile, the policy refused it) reaches waiters
 * only through what the owner left in ac_load_data before finishing.
 * Waiters may call into the cache, join or start other loads. */
typedef void (*ac_load_cb)(ac_load_waiter_t *w, ac_load_t *ld, int status);

/* Owned by the caller; must stay valid until its callback has run. */
struct ac_load_waiter_s {
  ac_waiter_t flight_; /* private */
  ac_load_cb cb;
  void *data;
};

/* What the cache needs from the owner of the values.  Every callback gets
 * the options' ud. */
typedef struct {
  /* The entry in slot leaves the cache (evicted, expired, deleted,
   * cleared): drop values[slot].  Must not call into the cache. */
  void (*removed)(void *ud, uint32_t slot, int tag, const char *key,
                  size_t len, ac_removed_t why);
  /* Optional: the store, shrinking after many entries left, gives the
   * entry in slot `from` the lower slot `to`: move values[from] to
   * values[to] and return 0, or refuse with nonzero (the entry stays).
   * Without it the store shrinks only down to its highest live slot.
   * Must not call into the cache. */
  int (*moved)(void *ud, uint32_t from, uint32_t to);
  /* Optional: the store now uses slots 1..slots only, far fewer than
   * before: an owner whose value array does not shrink by itself (a Lua
   * table) may rebuild it smaller.  Runs from the sweep timer, in a tick
   * of its own. */
  void (*compact)(void *ud, uint32_t slots);
  /* A batch is due: run its loader and finish each of its loads, then
   * ac_batch_done(b) (now or later).  Runs once for every batch: from a
   * pass of the ready queue, never inside a cache call; or from
   * ac_cache_free for a batch not dispatched yet, with the cache closed
   * (ac_batch_closed(b)): then only finish its loads and the batch.
   * Required for batching. */
  void (*dispatch)(void *ud, ac_batch_t *b);
  /* Runs once for every load that ac_load_begin answered with AC_JOIN
   * (a backend is set), never inside a cache call:
   *   found = 1: the backend had the value, stored at ac_load_slot(ld)
   *              and already handed to the waiters: finish the load;
   *   found = 0: run the loader now, as after AC_LEAD (it may finish
   *              later); when the load is no longer open (the cache was
   *              closed), only finish it.
   * Required with a backend. */
  void (*load)(void *ud, ac_load_t *ld, int found);
  /* With a backend: the bytes of values[slot], for the backend.  Return 0
   * and set *bytes and *len (valid until the next call of encode), or an AC_E*
   * code for a value that cannot be encoded (it stays in this cache only,
   * counted as unencodable). */
  int (*encode)(void *ud, uint32_t slot, const char **bytes, size_t *len);
  /* With a backend: bytes the backend had for a key; make values[slot]
   * from them.  0, or an AC_E* code (corrupt bytes: the entry is dropped
   * and the key loaded as on a miss). */
  int (*decode)(void *ud, uint32_t slot, const char *bytes, size_t len);
} ac_cache_ops_t;

typedef struct {
  uint32_t maxsize;       /* required, >= 1 */
  double default_ttl;     /* seconds; 0 or +inf: entries never expire */
  double load_timeout;    /* seconds callers wait for a load; 0 or +inf: no limit */
  double batch_window;    /* seconds a batch collects keys (0: until the
                             end of the current pass of the ready queue) */
  uint32_t max_batch_size; /* a batch is due when it holds this many (0: 100) */
  size_t load_data_size;  /* bytes of ac_load_data per load (zeroed) */
  size_t batch_data_size; /* bytes of ac_batch_data per batch (zeroed) */
  ac_sched_t *sched;      /* required: the loop for timers, the ready queue */
  ac_backend_t *backend;  /* optional second level; the cache does not own it */
  ac_cache_ops_t ops;
  void *ud;
  ac_clock_fn clock;      /* TTL clock; NULL: the scheduler's (ac_sched_now:
                             the coarse monotonic clock, or a fake one) */
  double sweep_interval;  /* seconds between expiry slices (0: 0.1) */
} ac_cache_options_t;

/* Counters, cumulative since the cache was created (or reset). */
typedef struct {
  uint64_t hits, misses, loads, load_errors, load_timeouts;
  uint64_t evictions, expirations, batches, batched_keys;
  uint64_t backend_hits, backend_misses, backend_errors, unencodable;
  uint32_t size, maxsize, in_flight, ttl_count;
  size_t memory_bytes; /* the store's memory (values not included) */
} ac_cache_stats_t;

enum { AC_HIT = 1, AC_JOIN, AC_MISS, AC_LEAD };

typedef struct {
  uint32_t slot;   /* AC_HIT */
  ac_load_t *load; /* AC_JOIN */
} ac_lookup_t;

/* A new cache, or NULL with *err set (AC_EINVAL for bad options,
 * AC_ENOMEM).  Free with ac_cache_free. */
AC_EXPORT ac_cache_t *ac_cache_new(const ac_cache_options_t *opts, int *err);
/* Closes the cache: every open load's waiters get AC_ECANCELED, batches
 * not dispatched yet are handed to ops.dispatch closed (the owner finishes
 * their loads and the batch), every entry is reported removed
 * (AC_REMOVED_CLEARED), timers stop.  Memory held by loads the caller
 * still runs is freed when it finishes them.  NULL: no-op. */
AC_EXPORT void ac_cache_free(ac_cache_t *c);

/* Looks a key up: AC_HIT (out->slot), AC_JOIN (out->load) or AC_MISS.
 * Counts a hit or a miss. */
AC_EXPORT int ac_cache_get(ac_cache_t *c, int tag, const void *key, size_t len,
                           ac_lookup_t *out);
/* The slot of a live key without counting or touching the eviction order,
 * or 0. */
AC_EXPORT uint32_t ac_cache_peek(ac_cache_t *c, int tag, const void *key,
                                 size_t len);
/* The load in progress for a key, or NULL. */
AC_EXPORT ac_load_t *ac_cache_loading(ac_cache_t *c, int tag, const void *key,
                                      size_t len);

/* Opens a load for a key that has none (after AC_MISS).  ttl: seconds the
 * loaded value lives (0: the default; +inf: forever).  0 and *out, or
 * AC_EBUSY (a load is open), AC_ENOMEM, AC_ECLOSED, AC_EINVAL (a negative
 * or NaN ttl). */
AC_EXPORT int ac_cache_lead(ac_cache_t *c, int tag, const void *key,
                            size_t len, double ttl, ac_load_t **out);
/* Starts an opened load: AC_LEAD (run the loader now) or AC_JOIN (the
 * backend is asked first; wait like any waiter). */
AC_EXPORT int ac_load_begin(ac_load_t *ld);
/* The loader will finish later: bound the waiters' wait by load_timeout
 * (they get AC_ETIMEDOUT; the load's later result is not stored). */
AC_EXPORT void ac_load_background(ac_load_t *ld);
/* Takes the key's slot for the loaded value: returns it (> 0, the caller
 * puts the value in values[slot] before ac_load_finish), 0 when the value
 * must not be stored (stale, timed out, closed), or a negative AC_E* code
 * (out of memory).  At most once per load.  The key is cached from here
 * on: finishing with a failure afterwards does not remove it, so store only
 * a value you have. */
AC_EXPORT int64_t ac_load_store(ac_load_t *ld);
/* Finishes the load: waiters still joined get status (and slot, 0 when
 * nothing was stored); the value in slot is written to the backend; the
 * load is freed (a batch's load stays readable until ac_batch_done).
 * status: 0, AC_ELOAD (the loader failed) or another AC_E* code. */
AC_EXPORT void ac_load_finish(ac_load_t *ld, int status, uint32_t slot);
/* Undoes a load just opened (ac_cache_lead or ac_cache_batch) that nobody
 * has joined, as if it had never been: for a caller whose own setup
 * failed after opening it.  Frees the load. */
AC_EXPORT void ac_load_abort(ac_load_t *ld);
/* Waits for the load's outcome: w->cb runs once.  0, or AC_ECLOSED (the
 * load is no longer open: its outcome was given out already). */
AC_EXPORT int ac_load_join(ac_load_t *ld, ac_load_waiter_t *w);

/* The owner's bytes of a load (load_data_size of them, zeroed at first). */
AC_EXPORT void *ac_load_data(ac_load_t *ld);
/* The load's key (valid until the load is freed). */
AC_EXPORT const char *ac_load_key(const ac_load_t *ld, int *tag, size_t *len);
AC_EXPORT ac_cache_t *ac_load_cache(const ac_load_t *ld);
/* The slot stored by the load (0 when none yet or nothing stored). */
AC_EXPORT uint32_t ac_load_slot(const ac_load_t *ld);
/* How many waiters have joined the load (each gets its outcome once). */
AC_EXPORT uint32_t ac_load_waiters(const ac_load_t *ld);
/* The batch the load belongs to (ac_cache_batch), or NULL. */
AC_EXPORT ac_batch_t *ac_load_batch(const ac_load_t *ld);
/* Is the load still open (waiters may join it)?  An open load may still be
 * stale: then ac_load_store returns 0. */
AC_EXPORT int ac_load_open(const ac_load_t *ld);

/* Puts a missing key (AC_MISS) in the open batch of `group`, opening one
 * (its window starts now), and returns its load in *out, to join.  A full
 * batch becomes due at once.  0, AC_EBUSY (the key has a load: join it,
 * see ac_cache_get), AC_ENOMEM, AC_ECLOSED, or AC_EINVAL (no ops.dispatch,
 * a negative or NaN ttl). */
AC_EXPORT int ac_cache_batch(ac_cache_t *c, const void *group, int tag,
                             const void *key, size_t len, double ttl,
                             ac_load_t **out);
AC_EXPORT size_t ac_batch_size(const ac_batch_t *b);
/* The i-th load (0-based, in the order the keys came) of the batch. */
AC_EXPORT ac_load_t *ac_batch_load(const ac_batch_t *b, size_t i);
AC_EXPORT const void *ac_batch_group(const ac_batch_t *b);
AC_EXPORT void *ac_batch_data(ac_batch_t *b);
AC_EXPORT ac_cache_t *ac_batch_cache(const ac_batch_t *b);
/* Was the cache freed before the batch was dispatched (see ops.dispatch)? */
AC_EXPORT int ac_batch_closed(const ac_batch_t *b);
/* The batch loader will finish later: bound every key's wait by
 * load_timeout. */
AC_EXPORT void ac_batch_background(ac_batch_t *b);
/* Frees the batch and its loads; every load of it must have been
 * finished. */
AC_EXPORT void ac_batch_done(ac_batch_t *b);

/* Stores a value for a key now (a write: a load of the key in progress
 * becomes stale).  Returns the slot (> 0) for the caller to put the value
 * in (replacing the old one when the key was cached), 0 when the eviction
 * policy refused the key (nothing stored), or a negative AC_E* code.  ttl
 * as for ac_cache_lead. */
AC_EXPORT int64_t ac_cache_set(ac_cache_t *c, int tag, const void *key,
                               size_t len, double ttl);
/* After the caller has put the value of ac_cache_set's slot in place:
 * writes it to the backend (no-op without one). */
AC_EXPORT void ac_cache_written(ac_cache_t *c, uint32_t slot);
/* Removes a key (and makes a load of it stale).  0, AC_ENOENT, or
 * AC_ECLOSED. */
AC_EXPORT int ac_cache_delete(ac_cache_t *c, int tag, const void *key,
                              size_t len);
/* Removes every entry and makes every load in progress stale. */
AC_EXPORT void ac_cache_clear(ac_cache_t *c);
/* The same as ac_cache_delete and ac_cache_clear for this level only: the
 * backend is not told.  For a backend that learns that other instances
 * changed a key (an invalidation message) or that it may have missed such
 * news (a lost subscription). */
AC_EXPORT int ac_cache_forget(ac_cache_t *c, int tag, const void *key, size_t len);
AC_EXPORT void ac_cache_forget_all(ac_cache_t *c);
/* Removes expired entries (and lets the store shrink): one slice of at
 * most max_seconds (0: the sweep's 1 ms).  The cache's timer runs slices
 * on its own (active expiry: expired entries nobody reads leave within
 * about a second); this is for hosts and tests that want one now.
 * Returns how many it removed. */
AC_EXPORT uint32_t ac_cache_expire(ac_cache_t *c, double max_seconds);

/* The largest slot the next store (ac_load_store, ac_cache_set) may hand
 * out (see ac_store_slot_bound); 0 once closed. */
AC_EXPORT uint32_t ac_cache_slot_bound(const ac_cache_t *c);
/* Seconds the entry in slot has left: +inf for none, 0 when expired. */
AC_EXPORT double ac_cache_ttl_left(const ac_cache_t *c, uint32_t slot);
/* Walks the live entries in the eviction policy's order, from the one it
 * values most (LRU: the most recently used) to its next victim: start
 * with 0, pass the last slot returned to go on; 0 ends the walk.  No entry
 * may be added or removed during a walk. */
AC_EXPORT uint32_t ac_cache_next_ranked(const ac_cache_t *c, uint32_t slot);
AC_EXPORT const char *ac_cache_key(const ac_cache_t *c, uint32_t slot,
                                   int *tag, size_t *len);
AC_EXPORT void ac_cache_stats(const ac_cache_t *c, ac_cache_stats_t *out);
AC_EXPORT double ac_cache_load_timeout(const ac_cache_t *c);
AC_EXPORT double ac_cache_default_ttl(const ac_cache_t *c);

#endif
