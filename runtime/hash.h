/* Keyed hashing for every table of the core.
 *
 * SipHash-1-3 with a 128-bit key drawn from the OS once per process: an
 * attacker who does not know the key cannot choose keys that collide, so no
 * input makes a table degrade into a list.  The tag (key namespace) is mixed
 * in so (tag, bytes) pairs hash apart. */
#ifndef AC_HASH_H
#define AC_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t ac__hash(int tag, const void *key, size_t len);
/* Tests only: replace the process key (makes hashes reproducible). */
void ac__hash_set_seed(uint64_t k0, uint64_t k1);

#endif
