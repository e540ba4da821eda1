/* Clocks.  CLOCK_MONOTONIC_COARSE reads in a few nanoseconds where the
 * precise clock costs tens on virtual machines (kvm-clock), and the store
 * reads the clock on every hit of an entry with a TTL. */
#include <time.h>

#include "ac_clock.h"

static double read_clock(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double ac_clock_now(void) {
#ifdef CLOCK_MONOTONIC_COARSE
  return read_clock(CLOCK_MONOTONIC_COARSE);
#else
  return read_clock(CLOCK_MONOTONIC);
#endif
}

double ac_clock_precise(void) { return read_clock(CLOCK_MONOTONIC); }

double ac_clock_wall(void) { return read_clock(CLOCK_REALTIME); }
