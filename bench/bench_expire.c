/* bench_expire: active expiry of the store (runtime/store.c), driven the
 * way the Lua binding's sweeper drives it (bindings/lua_cache.c, on_sweep).
 *
 *   bench_expire [--entries N] [--ttl SECONDS]
 *   BENCH_EXPIRE_TRACE=1 bench_expire     also prints every slice (stderr)
 *
 * Each scenario fills a store with N entries (default 200,000) whose TTL
 * (default 0.2 s) runs out together and that nobody reads again, then runs
 * the sweeper on the real clocks: a slice of ac_store_expire_budget every
 * 100 ms (1 ms after a slice that reported `more`, 1 s when nothing can be
 * due), each with max(1024, slots / 10) checks and a 1 ms budget.  It
 * reports how long after the deadline the last expired entry left, how long
 * until the store had shrunk, the longest slice (timed around the call with
 * CLOCK_MONOTONIC) and ac_store_memory() before and after.
 *
 * The removal callback clears values[slot] in a C array, and the moved
 * callback moves it, as the binding does with its Lua table (without the
 * Lua costs; bench_expire.lua measures through cache.AsyncCache).
 *
 * Scenarios: all entries expire; the same with every 100th entry kept (no
 * TTL), so the store must renumber the survivors to shrink; and, for
 * comparison, the sweep as it was before (size / 4 checks once a second,
 * ac_store_expire), on a simulated clock. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ac_clock.h"
#include "ac_store.h"

#define TICK_MS 100
#define IDLE_MS 1000
#define AGAIN_MS 1
#define BUDGET 0.001
#define PASS_TICKS 10u
#define MIN_CHECKS 1024u

static void **values; /* values[slot], as the binding's Lua table */
static uint32_t moves;

static void on_removed(void *ud, uint32_t slot, int tag, const char *key,
                       size_t len, ac_removed_t why) {
  (void)ud, (void)tag, (void)key, (void)len, (void)why;
  values[slot] = NULL;
}

static int on_moved(void *ud, uint32_t from, uint32_t to) {
  (void)ud;
  values[to] = values[from];
  values[from] = NULL;
  moves++;
  return 0;
}

static double now_s(void) { return ac_clock_precise(); }

static void sleep_until(double t) {
  double d = t - now_s();
  if (d <= 0) return;
  struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
  nanosleep(&ts, NULL);
}

static ac_store_t *new_store(uint32_t maxsize, ac_clock_fn clock) {
  ac_store_options_t o = {.maxsize = maxsize, .removed = on_removed,
                          .moved = on_moved, .clock = clock};
  int err;
  ac_store_t *s = ac_store_new(&o, &err);
  if (s == NULL) {
    fprintf(stderr, "bench_expire: ac_store_new failed (%d)\n", err);
    exit(1);
  }
  return s;
}

/* Fills the store; every keep_every-th entry (0: none) has no TTL. */
static uint32_t fill(ac_store_t *s, uint32_t n, double ttl, uint32_t keep_every) {
  char key[24];
  uint32_t kept = 0;
  for (uint32_t i = 0; i < n; i++) {
    int len = snprintf(key, sizeof key, "key:%u", i);
    int keep = keep_every && i % keep_every == 0;
    int64_t slot = ac_store_set(s, 0, key, (size_t)len, keep ? 0 : ttl, NULL);
    if (slot <= 0) {
      fprintf(stderr, "bench_expire: set failed (%lld)\n", (long long)slot);
      exit(1);
    }
    values[slot] = (void *)(uintptr_t)(i + 1);
    kept += keep;
  }
  return kept;
}

/* Every kept key still finds its value after the moves. */
static void check_kept(ac_store_t *s, uint32_t n, uint32_t keep_every) {
  char key[24];
  for (uint32_t i = 0; keep_every && i < n; i += keep_every) {
    int len = snprintf(key, sizeof key, "key:%u", i);
    uint32_t slot = ac_store_peek(s, 0, key, (size_t)len);
    if (slot == 0 || values[slot] != (void *)(uintptr_t)(i + 1)) {
      fprintf(stderr, "bench_expire: kept key %u lost its value\n", i);
      exit(1);
    }
  }
}

static void scenario(const char *name, uint32_t n, double ttl, uint32_t keep_every) {
  moves = 0;
  double created = now_s();
  ac_store_t *s = new_store(n, NULL);
  uint32_t kept = fill(s, n, ttl, keep_every);
  double deadline = ac_clock_now() + ttl; /* the last entry's */
  size_t mem_full = ac_store_memory(s);
  double next = created + TICK_MS / 1000.0;
  double longest = 0, gone_at = -1, shrunk_at = -1;
  unsigned slices = 0;
  for (;;) {
    sleep_until(next);
    ac_store_stats_t st;
    ac_store_stats(s, &st);
    uint32_t checks = st.slots / PASS_TICKS;
    if (checks < MIN_CHECKS) checks = MIN_CHECKS;
    ac_expire_report_t rep;
    double t0 = now_s();
    ac_store_expire_budget(s, checks, BUDGET, &rep);
    double t1 = now_s();
    slices++;
    if (t1 - t0 > longest) longest = t1 - t0;
    if (getenv("BENCH_EXPIRE_TRACE"))
      fprintf(stderr, "slice %3u at %+7.1f ms: %6.0f us checked %u removed %u moved %u more %d shrunk %d slots %u\n",
              slices, (t0 - deadline) * 1e3, (t1 - t0) * 1e6, rep.checked, rep.removed, rep.moved,
              rep.more, rep.shrunk, st.slots);
    ac_store_stats(s, &st);
    if (gone_at < 0 && st.size == kept) gone_at = t1;
    if (gone_at >= 0 && !rep.more) {
      shrunk_at = t1;
      break;
    }
    if (t1 - deadline > 30) break; /* give up: reported as such */
    double delay = rep.more ? AGAIN_MS : TICK_MS;
    if (!rep.more && rep.next_due > ac_clock_now() + IDLE_MS / 1000.0) delay = IDLE_MS;
    next = now_s() + delay / 1000.0;
  }
  check_kept(s, n, keep_every);
  size_t mem_after = ac_store_memory(s);
  printf("%s\n", name);
  if (gone_at < 0) {
    printf("  expired entries still resident 30 s after their deadline\n");
  } else {
    printf("  all %u expired entries gone     %7.0f ms after their deadline\n",
           n - kept, (gone_at - deadline) * 1e3);
    printf("  store shrunk (no slice pending) %7.0f ms after their deadline\n",
           (shrunk_at - deadline) * 1e3);
  }
  printf("  longest slice                   %7.0f us   (%u slices, %u entries moved)\n",
         longest * 1e6, slices, moves);
  printf("  ac_store_memory                 %7.2f MB -> %.3f MB (%u entries left)\n\n",
         (double)mem_full / 1e6, (double)mem_after / 1e6, kept);
  ac_store_free(s);
}

/* ---- the sweep as it was, for comparison (simulated clock) ---------------- */

static double sim_now;
static double sim_clock(void) { return sim_now; }

static void legacy(uint32_t n, double ttl) {
  sim_now = 0;
  ac_store_t *s = new_store(n, sim_clock);
  fill(s, n, ttl, 0);
  size_t mem_full = ac_store_memory(s);
  printf("before: a sweep of max(1024, size / 4) slots once a second (ac_store_expire,\n"
         "simulated clock)\n  resident after");
  for (int sec = 1; sec <= 10; sec++) {
    sim_now = sec;
    ac_store_stats_t st;
    ac_store_stats(s, &st);
    uint32_t checks = st.size / 4 > MIN_CHECKS ? st.size / 4 : MIN_CHECKS;
    ac_store_expire(s, checks);
    ac_store_stats(s, &st);
    if (sec == 1 || sec == 2 || sec == 5 || sec == 10) printf("  %d s: %u", sec, st.size);
  }
  printf("\n  ac_store_memory %.2f MB -> %.2f MB\n\n", (double)mem_full / 1e6,
         (double)ac_store_memory(s) / 1e6);
  ac_store_free(s);
}

int main(int argc, char **argv) {
  uint32_t n = 200000;
  double ttl = 0.2;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--entries") == 0 && i + 1 < argc) {
      n = (uint32_t)strtoul(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--ttl") == 0 && i + 1 < argc) {
      ttl = strtod(argv[++i], NULL);
    } else {
      fprintf(stderr, "usage: %s [--entries N] [--ttl SECONDS]\n", argv[0]);
      return 2;
    }
  }
  if (n < 100 || !(ttl > 0)) {
    fprintf(stderr, "bench_expire: need --entries >= 100 and --ttl > 0\n");
    return 2;
  }
  values = calloc((size_t)n + 1, sizeof *values);
  if (values == NULL) return 1;
  printf("Active expiry, %u entries with a TTL of %g s that nobody reads\n"
         "(slices as the binding runs them: every %d ms, again after %d ms while\n"
         "`more`, max(%u, slots/%u) checks and a %.0f us budget each)\n\n",
         n, ttl, TICK_MS, AGAIN_MS, MIN_CHECKS, PASS_TICKS, BUDGET * 1e6);
  scenario("every entry expires", n, ttl, 0);
  scenario("every entry but each 100th (no TTL) expires", n, ttl, 100);
  legacy(n, ttl);
  free(values);
  return 0;
}
