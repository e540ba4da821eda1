/* Eviction policies: who leaves when a full store takes a new key.
 *
 * The store (ac_store.h) is the index: keys to slots, TTLs, the slab.  What
 * it keeps about use is nothing; a policy is told of every insert, hit,
 * removal and renumbering of a slot, and answers one question: a new key
 * wants in and the store is full, which entry goes?  It may also answer
 * "none": the new key is not admitted (an admission filter such as
 * TinyLFU's), or name any live entry, not only the oldest (S3-FIFO's queues,
 * a window and a main space).
 *
 * A policy keeps its per-entry state in arrays of its own indexed by slot,
 * sized by `resize` as the slab grows and shrinks; slots are small dense
 * integers (1..slots), so an array of a few bytes a slot is the natural
 * layout.  Hashes are the store's 32-bit key hashes (keyed, so a client
 * cannot aim at one counter of a sketch), given with every event that
 * involves a key, so a policy can count keys that are not (or no longer)
 * in the store: misses are not reported, but the key of every new insert
 * and of every victim request is.
 *
 * Contract, for a store s with policy p and state st = p->create(maxsize):
 *   - resize(st, n) runs before any slot above the current size is given
 *     out (the slab grows) and after the slab shrank to n slots (every
 *     slot above n is free then).  A failure while growing fails the set
 *     that needed the room (AC_ENOMEM); while shrinking it is ignored.
 *   - on_insert(st, slot, hash) when a new key got a slot, after any
 *     eviction made room; the slot is live until on_remove.
 *   - on_hit(st, slot, hash) for ac_store_get finding the key live and for
 *     ac_store_set on a live key (a write is a use too).  Peeks, TTL reads
 *     and walks report nothing.
 *   - victim(st, hash) when a new key with `hash` needs a slot and the
 *     store holds maxsize live entries: return a live slot to evict (the
 *     store then calls on_remove for it with AC_REMOVED_EVICTED, then
 *     on_insert for the new key), or 0 to refuse the new key (ac_store_set
 *     returns 0 and nothing changes).  A slot that is not live counts as 0.
 *   - on_remove(st, slot, hash, why) for every entry that leaves, whatever
 *     the reason, before the store's removal callback and before the slot
 *     can be given out again.
 *   - on_move(st, from, to) when a shrinking store renumbers a live entry:
 *     the entry in `from` is now in `to` (a free slot until then).
 *   - next(st, slot) (optional, may be NULL) walks the live slots in the
 *     policy's order, from the entry it values most to the next victim:
 *     0 starts, 0 ends.  ac_store_next_ranked uses it.
 *   - memory(st) (optional) the bytes the state holds, for
 *     ac_store_memory.
 * Callbacks never call back into the store.  All of them run on the
 * store's thread; the state belongs to the store and is destroyed with it.
 */
#ifndef AC_POLICY_H
#define AC_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "ac_export.h"
#include "ac_store.h"

struct ac_policy_s {
  const char *name;
  void *(*create)(uint32_t maxsize); /* the state, or NULL (out of memory) */
  void (*destroy)(void *st);
  int (*resize)(void *st, uint32_t slots); /* 0 or AC_ENOMEM */
  void (*on_insert)(void *st, uint32_t slot, uint32_t hash);
  void (*on_hit)(void *st, uint32_t slot, uint32_t hash);
  uint32_t (*victim)(void *st, uint32_t hash);
  void (*on_remove)(void *st, uint32_t slot, uint32_t hash, ac_removed_t why);
  void (*on_move)(void *st, uint32_t from, uint32_t to);
  uint32_t (*next)(const void *st, uint32_t slot);
  size_t (*memory)(const void *st);
};

/* Least recently used: the victim is the entry used longest ago; a walk
 * goes from the most recently used.  8 bytes a slot.  The default. */
AC_EXPORT extern const ac_policy_t ac_policy_lru;

#endif
