/* The store: a bounded hash map from byte-string keys to slots, with LRU
 * eviction and per-entry TTL.  No Lua, no event loop.
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
 * and by ac_store_expire(), which a timer calls to sweep a bounded number of
 * slots per call, so expired entries never hold capacity for long even if
 * nobody reads them again. */
#ifndef AC_STORE_H
#define AC_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "ac_export.h"

typedef struct ac_store_s ac_store_t;

/* Why an entry left the store. */
typedef enum {
  AC_REMOVED_EVICTED = 1, /* least recently used, made room for a new entry */
  AC_REMOVED_EXPIRED,     /* its TTL ran out */
  AC_REMOVED_DELETED,     /* ac_store_delete */
  AC_REMOVED_REPLACED,    /* never reported: a set on a live key keeps its slot */
  AC_REMOVED_CLEARED      /* ac_store_clear or ac_store_free */
} ac_removed_t;

/* Called once for every entry that leaves the store, while its key is still
 * readable (key and len are valid only during the call).  The callback must
 * not call back into the store. */
typedef void (*ac_store_removed_cb)(void *ud, uint32_t slot, int tag,
                                    const char *key, size_t len,
                                    ac_removed_t why);

typedef double (*ac_clock_fn)(void);

typedef struct {
  uint32_t maxsize;            /* required, >= 1 */
  ac_store_removed_cb removed; /* optional */
  void *ud;                    /* passed to removed */
  ac_clock_fn clock;           /* optional, default ac_clock_now (tests) */
} ac_store_options_t;

typedef struct {
  uint64_t hits, misses, evictions, expirations;
  uint32_t size, maxsize;
} ac_store_stats_t;

/* Returns a new store or NULL (bad options or out of memory; *err says
 * which when err is not NULL). Free with ac_store_free. */
AC_EXPORT ac_store_t *ac_store_new(const ac_store_options_t *opts, int *err);
/* Reports every entry as AC_REMOVED_CLEARED, then frees. NULL is a no-op. */
AC_EXPORT void ac_store_free(ac_store_t *s);

/* Looks a key up.  Returns its slot and marks it most recently used (a hit),
 * or 0 (a miss; an expired entry found on the way is removed first).
 * Counts the hit or the miss. */
AC_EXPORT uint32_t ac_store_get(ac_store_t *s, int tag, const void *key,
                                size_t len);
/* Like ac_store_get but counts nothing and does not touch the LRU order. */
AC_EXPORT uint32_t ac_store_peek(ac_store_t *s, int tag, const void *key,
                                 size_t len);

/* Inserts or refreshes a key and returns its slot (> 0), or a negative
 * AC_E* code.  ttl is in seconds: 0 or +infinity means no expiry, a negative
 * or NaN ttl is AC_EINVAL.  A set marks the key most recently used.  A new key in a
 * full store evicts the least recently used entry first (reported to the
 * callback before its slot is handed out again).  *is_new tells whether the
 * slot is fresh (the caller must store a value) or the key's existing one. */
AC_EXPORT int64_t ac_store_set(ac_store_t *s, int tag, const void *key,
                               size_t len, double ttl, int *is_new);

/* Removes a key. Returns 0, or AC_ENOENT when absent or expired (an
 * expired entry is removed as an expiration). */
AC_EXPORT int ac_store_delete(ac_store_t *s, int tag, const void *key,
                              size_t len);
/* Removes every entry (reported as AC_REMOVED_CLEARED). */
AC_EXPORT void ac_store_clear(ac_store_t *s);

/* Sweeps up to max_checks slots from where the last sweep stopped and
 * removes the expired entries among them.  Returns how many it removed. */
AC_EXPORT uint32_t ac_store_expire(ac_store_t *s, uint32_t max_checks);
/* How many live entries carry a TTL (a sweep is pointless when 0). */
AC_EXPORT uint32_t ac_store_ttl_count(const ac_store_t *s);

/* Seconds left before the entry in slot expires: +inf for none, 0 when
 * already expired or the slot is free. */
AC_EXPORT double ac_store_ttl_left(const ac_store_t *s, uint32_t slot);
/* The key of a live slot (valid until the entry is removed), or NULL. */
AC_EXPORT const char *ac_store_key(const ac_store_t *s, uint32_t slot,
                                   int *tag, size_t *len);

/* Walks slots from most to least recently used: start with 0, pass the last
 * returned slot to continue; 0 ends the walk.  No entry may be added or
 * removed during a walk. */
AC_EXPORT uint32_t ac_store_next_mru(const ac_store_t *s, uint32_t slot);

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
