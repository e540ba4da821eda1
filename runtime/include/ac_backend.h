/* The second level of a cache: an asynchronous key-value backend (disk,
 * Redis, or one written by the host).
 *
 * A backend is a struct whose first member is an ac_backend_t pointing at
 * its function table.  Keys and values are byte strings; the cache passes
 * its (tag, key) as one key, the tag byte first.  Every operation takes a
 * callback and an argument:
 *   - an operation that returns non-zero (an AC_E* code) was refused and
 *     its callback never runs;
 *   - an accepted one (0) runs its callback exactly once, later (never
 *     inside the call), also when the backend is freed first: then with
 *     AC_ECANCELED.
 * Bytes passed to a callback are valid during the call only.  The cache
 * never owns its backend: free the caches using it first, then the
 * backend (pending callbacks then run with AC_ECANCELED). */
#ifndef AC_BACKEND_H
#define AC_BACKEND_H

#include <stddef.h>

#include "ac_export.h"

typedef struct ac_backend_s ac_backend_t;

/* status: 0 (found: bytes, len, and ttl_left, the seconds the value has
 * left, +inf for no expiry), AC_ENOENT (not there), or another AC_E*
 * code (the backend failed). */
typedef void (*ac_backend_get_cb)(void *arg, int status, const char *bytes,
                                  size_t len, double ttl_left);
typedef void (*ac_backend_done_cb)(void *arg, int status);

typedef struct {
  const char *name;
  int (*get)(ac_backend_t *b, const char *key, size_t len,
             ac_backend_get_cb cb, void *arg);
  /* ttl: seconds the value lives, +inf for no expiry. */
  int (*set)(ac_backend_t *b, const char *key, size_t len, const char *value,
             size_t vlen, double ttl, ac_backend_done_cb cb, void *arg);
  int (*del)(ac_backend_t *b, const char *key, size_t len,
             ac_backend_done_cb cb, void *arg);
  /* Removes every key of this backend (not of others sharing a server). */
  int (*clear)(ac_backend_t *b, ac_backend_done_cb cb, void *arg);
  /* Cancels what is pending (callbacks run with AC_ECANCELED) and frees. */
  void (*free)(ac_backend_t *b);
} ac_backend_vtable_t;

struct ac_backend_s {
  const ac_backend_vtable_t *vt;
};

/* Frees a backend through its table (NULL: no-op). */
AC_EXPORT void ac_backend_free(ac_backend_t *b);

#endif
