/* A counting, failing allocator for the C tests, injected through
 * ac_replace_allocator:
 *
 *     install_counting_allocator();  counts reset, no failure armed
 *     fail_nth(2);                   the 2nd allocation from now fails
 *     fail_burst(2, 3);              the 2nd, 3rd and 4th from now fail
 *     arm_failure(1);                the next allocation fails, and every
 *                                    later one (arm_failure(0): only it)
 *     disarm_failure();              nothing fails any more
 *     restore_allocator();           back to malloc, realloc, free
 *
 * live_blocks counts the blocks allocated through it and not yet freed;
 * alloc_calls counts the malloc and realloc calls since the last fail_nth or
 * arm_failure (or install_counting_allocator).
 *
 * Include it after test_harness.h, from the test file.  Everything is
 * static and marked unused, so a test file may use only part of it. */
#ifndef AC_TEST_ALLOC_H
#define AC_TEST_ALLOC_H

#include <stdlib.h>

#include "ac_alloc.h"
#include "test_harness.h"

/* The call numbered fail_at (1-based, counted from fail_nth, arm_failure or
 * install_counting_allocator) fails and, when fail_all, every call after
 * it; fail_at <= 0: none. */
__attribute__((unused)) static long alloc_calls;
__attribute__((unused)) static long fail_at = -1;
__attribute__((unused)) static int fail_all;
__attribute__((unused)) static long fail_count = 1; /* consecutive failures */
__attribute__((unused)) static long live_blocks;

__attribute__((unused)) static int should_fail(void) {
  alloc_calls++;
  return fail_at > 0 &&
         ((alloc_calls >= fail_at && alloc_calls < fail_at + fail_count) ||
          (fail_all && alloc_calls > fail_at));
}

__attribute__((unused)) static void *counting_malloc(size_t n) {
  if (should_fail()) return NULL;
  void *p = malloc(n);
  if (p != NULL) live_blocks++;
  return p;
}

__attribute__((unused)) static void *counting_realloc(void *p, size_t n) {
  if (should_fail()) return NULL;
  void *q = realloc(p, n);
  if (q != NULL && p == NULL) live_blocks++;
  return q;
}

__attribute__((unused)) static void counting_free(void *p) {
  if (p != NULL) live_blocks--;
  free(p);
}

/* Installs the counting allocator with every count at zero and no failure
 * armed. */
__attribute__((unused)) static void install_counting_allocator(void) {
  alloc_calls = 0;
  fail_at = -1;
  fail_all = 0;
  live_blocks = 0;
  ASSERT_EQ_INT(ac_replace_allocator(counting_malloc, counting_realloc,
                                     counting_free), 0);
}

/* The nth allocation from now fails, and only it (n <= 0: none). */
__attribute__((unused)) static void fail_nth(long n) {
  alloc_calls = 0;
  fail_at = n > 0 ? n : -1;
  fail_all = 0;
  fail_count = 1;
}

/* The nth allocation from now fails, and the count - 1 after it (Lua
 * retries a failed allocation once after an emergency collection: a burst
 * makes the failure reach the code that asked). */
__attribute__((unused)) static void fail_burst(long n, long count) {
  fail_nth(n);
  fail_count = count;
}

/* The next allocation fails (and every later one too when all is set). */
__attribute__((unused)) static void arm_failure(int all) {
  alloc_calls = 0;
  fail_at = 1;
  fail_all = all;
  fail_count = 1;
}

/* No allocation fails any more (alloc_calls goes on counting). */
__attribute__((unused)) static void disarm_failure(void) { fail_at = -1; }

__attribute__((unused)) static void restore_allocator(void) {
  ASSERT_EQ_INT(ac_replace_allocator(malloc, realloc, free), 0);
}

#endif
