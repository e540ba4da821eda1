/* The store: a bounded hash map from byte-string keys to slots, with
 * per-entry TTL and a pluggable eviction policy (ac_policy.h; LRU by
 * default).  No Lua, no event loop.
 *
 * Keys are byte strings of any length (embedded zeros allowed), each in one
 * of 256 namespaces called tags: (tag, bytes) is the identity of a key, so a
 * binding can keep the string "1" and the number 1 apart without copying
 * string keys.  C users who need no namespaces pass tag 0.
 *
 * The store does not hold values.  Each live entry owns a slot, a small
 * integer in 1..maxsize that stays fixed for the entry's lifetime; the caller
 * keeps its values in an array indexed by slot (the Lua binding: the array
 * part of a Lua table).  A slot is reused only after the removal callback has
 * reported its entry gone.
 *
 * Expiry: an entry with a TTL is dropped when read after its deadline (lazy)
 * and by active expiry, which a timer drives in short slices
 * (ac_store_expire_budget), so that entries nobody reads again leave soon
 * after their deadline and give their memory back.
 *
 * Memory: the store shrinks when it gets mostly empty.  Entries are never
 * renumbered unless the caller gives a `moved` callback: then, during a
 * slice and only then, a live entry may be given a lower slot so that the
 * top of the slab can be released. */
#ifndef AC_STORE_H
#define AC_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "ac_export.h"

typedef struct ac_store_s ac_store_t;
typedef struct ac_policy_s ac_policy_t; /* ac_policy.h */

/* Why an entry left the store.  (A set on a live key keeps its slot and
 * its entry: nothing leaves.  Value 4 was AC_REMOVED_REPLACED, which was
 * never reported.) */
typedef enum {
  AC_REMOVED_EVICTED = 1, /* the policy's victim, made room for a new entry */
  AC_REMOVED_EXPIRED = 2, /* its TTL ran out */
  AC_REMOVED_DELETED = 3, /* ac_store_delete */
  AC_REMOVED_CLEARED = 5  /* ac_store_clear or ac_store_free */
} ac_removed_t;

/* Called once for every entry that leaves the store, while its key is still
 * readable (key and len are valid only during the call).  The callback must
 * not call back into the store. */
typedef void (*ac_store_removed_cb)(void *ud, uint32_t slot, int tag,
                                    const char *key, size_t len,
                                    ac_removed_t why);

/* Asks to give the live entry in slot `from` the free slot `to` (lower),
 * while the store shrinks inside ac_store_expire_budget and at no other
 * time.  Move your value for the entry from `from` to `to` and return 0:
 * from then on the entry's slot is `to` and `from` is free.  Return nonzero
 * to refuse (for example when moving the value failed): the entry keeps
 * `from` and the store stops shrinking for now.  The callback must not call
 * back into the store. */
typedef int (*ac_store_moved_cb)(void *ud, uint32_t from, uint32_t to);

typedef double (*ac_clock_fn)(void);
typedef double (*ac_clock_ud_fn)(void *ud);

typedef struct {
  uint32_t maxsize;            /* required, >= 1 */
  ac_store_removed_cb removed; /* optional */
  void *ud;                    /* passed to removed and moved */
  ac_clock_fn clock;           /* optional, default ac_clock_now (tests) */
  ac_clock_ud_fn clock_ud_fn;  /* optional, overrides clock: called with
                                  clock_ud (a scheduler's clock, so a fake
                                  one in tests moves TTLs too) */
  void *clock_ud;
  ac_store_moved_cb moved;     /* optional: lets a shrink renumber entries;
                                  without it the slab shrinks only down to
                                  its highest live slot */
  ac_clock_fn budget_clock;    /* optional, default ac_clock_precise: times
                                  the slices of ac_store_expire_budget */
  const ac_policy_t *policy;   /* optional, default &ac_policy_lru; must
                                  outlive the store */
} ac_store_options_t;

typedef struct {
  uint64_t hits, misses, evictions, expirations;
  uint32_t size, maxsize;
  uint32_t slots; /* slots in the slab, live or free: what a full sweep visits */
} ac_store_stats_t;

/* What one slice of active expiry did (ac_store_expire_budget). */
typedef struct {
  uint32_t checked; /* slots the sweep examined */
  uint32_t removed; /* expired entries it removed (reported as EXPIRED) */
  uint32_t moved;   /* live entries renumbered by a shrink */
  int more;         /* 1: call again soon: the slice stopped on its budget
                       among mostly expired entries, or a shrink is under way */
  int shrunk;       /* 1: the slab or the bucket array got smaller */
  int front;        /* 1: the sweep stopped at an entry about to expire, in a
                       pass that finds mostly expired entries (more is set) */
  double elapsed;   /* seconds the slice took, by the budget clock */
  double next_due;  /* no entry in the store expires before this time (store
                       clock; a lower bound); +inf when none has a TTL.
                       Entries set later may expire earlier. */
} ac_expire_report_t;

/* Returns a new store or NULL (bad options or out of memory; *err says
 * which when err is not NULL). Free with ac_store_free. */
AC_EXPORT ac_store_t *ac_store_new(const ac_store_options_t *opts, int *err);
/* Reports every entry as AC_REMOVED_CLEARED, then frees. NULL is a no-op. */
AC_EXPORT void ac_store_free(ac_store_t *s);

/* Looks a key up.  Returns its slot and reports the hit to the policy, or
 * 0 (a miss; an expired entry found on the way is removed first).  Counts
 * the hit or the miss. */
AC_EXPORT uint32_t ac_store_get(ac_store_t *s, int tag, const void *key,
                                size_t len);
/* Like ac_store_get but counts nothing and reports nothing to the policy. */
AC_EXPORT uint32_t ac_store_peek(ac_store_t *s, int tag, const void *key,
                                 size_t len);

/* Inserts or refreshes a key and returns its slot (> 0), 0 when the policy
 * refused a new key into a full store (never with LRU; nothing changed),
 * or a negative AC_E* code.  ttl is in seconds: 0 or +infinity means no
 * expiry, a negative or NaN ttl is AC_EINVAL.  A set on a live key is a hit
 * for the policy.  A new key in a full store evicts the policy's victim
 * first (reported to the callback before its slot is handed out again).
 * *is_new tells whether the slot is fresh (the caller must store a value)
 * or the key's existing one (0 also when refused). */
AC_EXPORT int64_t ac_store_set(ac_store_t *s, int tag, const void *key,
                               size_t len, double ttl, int *is_new);

/* Removes a key. Returns 0, or AC_ENOENT when absent or expired (an
 * expired entry is removed as an expiration). */
AC_EXPORT int ac_store_delete(ac_store_t *s, int tag, const void *key,
                              size_t len);
/* Removes every entry (reported as AC_REMOVED_CLEARED). */
AC_EXPORT void ac_store_clear(ac_store_t *s);

/* Sweeps up to max_checks slots from where the last sweep stopped and
 * removes the expired entries among them.  Returns how many it removed.
 * Neither skips ahead nor shrinks: ac_store_expire_budget is what a timer
 * should call. */
AC_EXPORT uint32_t ac_store_expire(ac_store_t *s, uint32_t max_checks);
/* One slice of active expiry, for a timer to call every tick (and again
 * within a millisecond or so while report->more is set):
 *  - sweeps at most max_checks slots (0: no bound) and at most one full
 *    pass over the slab, from where the last sweep stopped, removing the
 *    expired entries; the sweep is skipped when nothing can be due yet, and
 *    while a pass finds mostly expired entries it stops at one due within
 *    0.1 s rather than leave it for the next pass;
 *  - then, with the time left and unless the sweep found mostly expired
 *    entries, shrinks a store that is mostly empty (size below a quarter of
 *    its slots): the slab, in steps, and the bucket array;
 *  - stops once max_seconds (budget clock; 0 or less: no bound) have
 *    passed.  The clock is read every few hundred slots or every sixteen
 *    removals, so a slice overruns its budget by at most that much work
 *    (removal callbacks included).
 * Returns the number of entries removed; *report (optional) says more. */
AC_EXPORT uint32_t ac_store_expire_budget(ac_store_t *s, uint32_t max_checks,
                                          double max_seconds,
                                          ac_expire_report_t *report);
/* How many live entries carry a TTL (a sweep is pointless when 0). */
AC_EXPORT uint32_t ac_store_ttl_count(const ac_store_t *s);

/* Seconds left before the entry in slot expires: +inf for none, 0 when
 * already expired or the slot is free. */
AC_EXPORT double ac_store_ttl_left(const ac_store_t *s, uint32_t slot);
/* The key of a live slot (valid until the entry is removed), or NULL. */
AC_EXPORT const char *ac_store_key(const ac_store_t *s, uint32_t slot,
                                   int *tag, size_t *len);

/* Walks the live slots in slot order: start with 0, pass the last returned
 * slot to continue; 0 ends the walk.  No entry may be added or removed
 * during a walk, and nothing is reported to the policy. */
AC_EXPORT uint32_t ac_store_next(const ac_store_t *s, uint32_t slot);
/* The same walk in the policy's order, from the entry it values most to
 * its next victim (LRU: most recently used first); in slot order when the
 * policy has none. */
AC_EXPORT uint32_t ac_store_next_ranked(const ac_store_t *s, uint32_t slot);
/* The policy's state, for the policy's own functions (ac_policy_t.next,
 * or a policy's extensions); owned by the store. */
AC_EXPORT void *ac_store_policy_state(const ac_store_t *s);

/* The largest slot the next ac_store_set may hand out: a caller that
 * keeps values in a growable array makes room up to it first, so that
 * storing the value after the set never needs to allocate. */
AC_EXPORT uint32_t ac_store_slot_bound(const ac_store_t *s);

AC_EXPORT void ac_store_stats(const ac_store_t *s, ac_store_stats_t *out);
AC_EXPORT void ac_store_reset_stats(ac_store_t *s);
/* Bytes the store holds in memory: entries, buckets, and out-of-line keys
 * counted with a typical allocator's per-block overhead. */
AC_EXPORT size_t ac_store_memory(const ac_store_t *s);
/* Length of the longest bucket chain (for collision tests). */
AC_EXPORT uint32_t ac_store_longest_chain(const ac_store_t *s);

#endif
