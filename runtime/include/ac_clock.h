/* Clocks.
 *
 * TTL in memory runs on a monotonic clock.  The store reads it on every hit
 * of an entry that has a TTL, so it uses the coarse monotonic clock (a few
 * nanoseconds to read, resolution of a kernel tick, 1 to 4 ms): TTLs are
 * honoured to within that resolution.  ac_clock_precise() is for measuring. */
#ifndef AC_CLOCK_H
#define AC_CLOCK_H

#include "ac_export.h"

/* Seconds on the coarse monotonic clock. */
AC_EXPORT double ac_clock_now(void);
/* Seconds on the precise monotonic clock (same epoch as ac_clock_now). */
AC_EXPORT double ac_clock_precise(void);
/* Seconds since the Unix epoch (for expiry times that outlive the process). */
AC_EXPORT double ac_clock_wall(void);

#endif
