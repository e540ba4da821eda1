/* Single-flight: at most one load per key at a time.
 *
 * A flight is the load of one key in progress.  The first caller for a
 * missing key starts it and becomes the leader; later callers join it as
 * waiters.  When the leader finishes the flight (with a status: 0 or an
 * AC_E* code), every waiter's callback runs exactly once, in the order
 * they joined, and the flight is freed.  Results travel outside this
 * module: the leader attaches them to the flight's data pointer, which
 * waiters read inside their callback. */
#ifndef AC_FLIGHT_H
#define AC_FLIGHT_H

#include <stddef.h>
#include <stdint.h>
#include "ac_export.h"

typedef struct ac_flights_s ac_flights_t;
typedef struct ac_flight_s ac_flight_t;
typedef struct ac_waiter_s ac_waiter_t;

/* Runs once per joined waiter.  f and its data are valid only during the
 * call.  status is what the leader passed to ac_flight_finish, or
 * AC_ECANCELED when the table is freed with the flight still open. */
typedef void (*ac_waiter_cb)(ac_waiter_t *w, ac_flight_t *f, int status);

/* Owned by the caller; must stay valid until its callback has run. */
struct ac_waiter_s {
  ac_waiter_t *next_; /* private */
  ac_waiter_cb cb;
  void *data;
};

/* NULL when out of memory. */
AC_EXPORT ac_flights_t *ac_flights_new(void);
/* Finishes every open flight with AC_ECANCELED, then frees. NULL: no-op. */
AC_EXPORT void ac_flights_free(ac_flights_t *fs);

/* The open flight for a key, or NULL. */
AC_EXPORT ac_flight_t *ac_flights_find(ac_flights_t *fs, int tag,
                                       const void *key, size_t len);
/* Opens a flight for a key that has none and stores it in *out.
 * Returns 0, AC_EBUSY when the key already has one, or AC_ENOMEM. */
AC_EXPORT int ac_flights_start(ac_flights_t *fs, int tag, const void *key,
                               size_t len, void *data, ac_flight_t **out);
/* Number of open flights. */
AC_EXPORT size_t ac_flights_count(const ac_flights_t *fs);

AC_EXPORT void ac_flight_join(ac_flight_t *f, ac_waiter_t *w);
/* Closes the flight: removes it from its table (a new load of the key may
 * start from here on, even from inside a callback), runs every waiter's
 * callback with status, then frees f. */
AC_EXPORT void ac_flight_finish(ac_flight_t *f, int status);
/* Takes an open flight out of its table without finishing it: its waiters
 * stay, later callers no longer find it and may start a new flight for
 * the key (the old one's result is stale).  Finish it as usual. */
AC_EXPORT void ac_flight_detach(ac_flight_t *f);
AC_EXPORT void *ac_flight_data(const ac_flight_t *f);
/* The flight's key; valid until the flight is finished. */
AC_EXPORT const char *ac_flight_key(const ac_flight_t *f, int *tag,
                                    size_t *len);
AC_EXPORT uint32_t ac_flight_waiters(const ac_flight_t *f);

#endif
