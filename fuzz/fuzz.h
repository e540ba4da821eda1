/* What every fuzz target and the replay driver share.
 *
 * A target is one file, fuzz/fuzz_<name>.c, defining libFuzzer's entry
 * point LLVMFuzzerTestOneInput.  The same file is linked twice
 * (cmake/Fuzz.cmake): with libFuzzer by tools/fuzz.sh (clang), and with
 * fuzz/replay.c by the normal build, where CTest replays the checked-in
 * corpus fuzz/corpus/<corpus>/ as a regular test.
 *
 * A target checks its invariants with FUZZ_CHECK, never assert(): the
 * RelWithDebInfo build defines NDEBUG, and the replay must check as much
 * as the fuzzer does.  A failed check prints the condition and aborts,
 * which libFuzzer reports as a crash (and saves the input) and the replay
 * as a failed test. */
#ifndef AC_FUZZ_H
#define AC_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                   \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,     \
              #cond);                                                      \
      abort();                                                             \
    }                                                                      \
  } while (0)

/* FNV-1a of the input: targets derive their per-input choices from it
 * (which callback fails, which allocation fails), so a saved input
 * replays the same run. */
static inline uint64_t fuzz_hash(const uint8_t *data, size_t size) {
  uint64_t h = 0xcbf29ce484222325u;
  for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 0x100000001b3u;
  return h;
}

#endif
