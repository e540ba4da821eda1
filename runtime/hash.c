/* SipHash-1-3 (Aumasson and Bernstein), written from the paper's
 * description: one compression round per 8-byte word, three finalization
 * rounds.  The key comes from getrandom(2) the first time a hash is taken. */
#include "hash.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static uint64_t seed_k0, seed_k1;
static atomic_int seeded;
static pthread_once_t seed_once = PTHREAD_ONCE_INIT;

static void seed_from_os(void) {
  uint64_t k[2];
  if (getrandom(k, sizeof k, 0) != (ssize_t)sizeof k) {
    /* No entropy source: still vary per process rather than run unkeyed. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    k[0] = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid();
    k[1] = (uint64_t)ts.tv_sec * 0xC2B2AE3D27D4EB4Full ^ (uintptr_t)&ts;
  }
  if (atomic_load(&seeded)) return; /* a test set the seed first */
  seed_k0 = k[0];
  seed_k1 = k[1];
  atomic_store_explicit(&seeded, 1, memory_order_release);
}

void ac__hash_set_seed(uint64_t k0, uint64_t k1) {
  seed_k0 = k0;
  seed_k1 = k1;
  atomic_store(&seeded, 1);
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

#define SIPROUND                                                              \
  do {                                                                        \
    v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                 \
    v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                    \
    v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                    \
    v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                 \
  } while (0)

uint64_t ac__hash(int tag, const void *key, size_t len) {
  /* Runtimes on other threads hash too: seed exactly once. */
  if (!atomic_load_explicit(&seeded, memory_order_acquire))
    pthread_once(&seed_once, seed_from_os);
  const unsigned char *p = key;
  uint64_t k0 = seed_k0 ^ (uint64_t)(unsigned)tag, k1 = seed_k1;
  uint64_t v0 = k0 ^ 0x736f6d6570736575ull;
  uint64_t v1 = k1 ^ 0x646f72616e646f6dull;
  uint64_t v2 = k0 ^ 0x6c7967656e657261ull;
  uint64_t v3 = k1 ^ 0x7465646279746573ull;
  size_t words = len / 8;
  for (size_t i = 0; i < words; i++, p += 8) {
    uint64_t m;
    memcpy(&m, p, 8); /* little-endian hosts; the order only has to be stable */
    v3 ^= m;
    SIPROUND;
    v0 ^= m;
  }
  uint64_t last = (uint64_t)len << 56;
  switch (len & 7) {
    case 7: last |= (uint64_t)p[6] << 48; /* fall through */
    case 6: last |= (uint64_t)p[5] << 40; /* fall through */
    case 5: last |= (uint64_t)p[4] << 32; /* fall through */
    case 4: last |= (uint64_t)p[3] << 24; /* fall through */
    case 3: last |= (uint64_t)p[2] << 16; /* fall through */
    case 2: last |= (uint64_t)p[1] << 8;  /* fall through */
    case 1: last |= (uint64_t)p[0]; break;
    default: break;
  }
  v3 ^= last;
  SIPROUND;
  v0 ^= last;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}
