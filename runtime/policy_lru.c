/* The LRU policy (ac_policy.h): a doubly linked list of slots.
 *
 * Data structure
 *   n[1..cap]   one node a slot: prev (towards the head, more recently
 *               used) and next (towards the tail); n[0] is unused, so 0
 *               means "none".  Nodes of free slots hold garbage.
 *   head/tail   the most and the least recently used live slot.
 *
 * 8 bytes a slot, in an array of their own: a hit writes the nodes of the
 * entry, its two neighbours and the old head, which are packed 8 to a
 * cache line instead of spread over the store's 40-byte entries.
 *
 * Invariants: the list holds exactly the live slots, each once; the
 * victim is the tail. */

#include "ac_error.h"
#include "ac_policy.h"
#include "alloc.h"
#include "policy_lru.h"

typedef ac__lru_node node;
typedef ac__lru lru;

static void *lru_create(uint32_t maxsize) {
  (void)maxsize; /* the nodes follow the slab, see resize */
  return ac__calloc(1, sizeof(lru));
}

static void lru_destroy(void *st) {
  lru *l = st;
  if (l == NULL) return;
  ac__free(l->n);
  ac__free(l);
}

static int lru_resize(void *st, uint32_t slots) {
  lru *l = st;
  if (slots == 0) {
    ac__free(l->n);
    l->n = NULL;
    l->cap = 0;
    return 0;
  }
  node *n = ac__realloc(l->n, ((size_t)slots + 1) * sizeof *n);
  if (n == NULL) return slots > l->cap ? AC_ENOMEM : 0;
  l->n = n;
  l->cap = slots;
  return 0;
}

static void lru_insert(void *st, uint32_t slot, uint32_t hash) {
  (void)hash;
  ac__lru_push_front(st, slot);
}

static void lru_hit(void *st, uint32_t slot, uint32_t hash) {
  (void)hash;
  ac__lru_hit(st, slot);
}

static uint32_t lru_victim(void *st, uint32_t hash) {
  (void)hash;
  return ((lru *)st)->tail;
}

static void lru_remove(void *st, uint32_t slot, uint32_t hash,
                       ac_removed_t why) {
  (void)hash, (void)why;
  ac__lru_unlink(st, slot);
}

static void lru_move(void *st, uint32_t from, uint32_t to) {
  lru *l = st;
  node *x = &l->n[to];
  *x = l->n[from];
  if (x->prev) l->n[x->prev].next = to; else l->head = to;
  if (x->next) l->n[x->next].prev = to; else l->tail = to;
}

static uint32_t lru_next(const void *st, uint32_t slot) {
  const lru *l = st;
  return slot == 0 ? l->head : l->n[slot].next;
}

static size_t lru_memory(const void *st) {
  const lru *l = st;
  return sizeof *l + (l->n ? ((size_t)l->cap + 1) * sizeof(node) : 0);
}

const ac_policy_t ac_policy_lru = {
    .name = "lru",
    .create = lru_create,
    .destroy = lru_destroy,
    .resize = lru_resize,
    .on_insert = lru_insert,
    .on_hit = lru_hit,
    .victim = lru_victim,
    .on_remove = lru_remove,
    .on_move = lru_move,
    .next = lru_next,
    .memory = lru_memory,
};
