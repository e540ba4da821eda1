/* The LRU policy's state and its hot operations, inline (internal).
 *
 * policy_lru.c wraps these in ac_policy_lru; the store calls them directly
 * when its policy is LRU, which spares the eviction path three indirect
 * calls (see the store's pol_* helpers).  See policy_lru.c for the data
 * structure. */
#ifndef AC_POLICY_LRU_H
#define AC_POLICY_LRU_H

#include <stdint.h>

typedef struct {
  uint32_t prev, next;
} ac__lru_node;

typedef struct {
  ac__lru_node *n; /* n[1..cap]; n[0] unused */
  uint32_t cap;
  uint32_t head, tail; /* most and least recently used live slot */
} ac__lru;

static inline void ac__lru_unlink(ac__lru *l, uint32_t i) {
  ac__lru_node *x = &l->n[i];
  if (x->prev) l->n[x->prev].next = x->next; else l->head = x->next;
  if (x->next) l->n[x->next].prev = x->prev; else l->tail = x->prev;
}

static inline void ac__lru_push_front(ac__lru *l, uint32_t i) {
  ac__lru_node *x = &l->n[i];
  x->prev = 0;
  x->next = l->head;
  if (l->head) l->n[l->head].prev = i; else l->tail = i;
  l->head = i;
}

static inline void ac__lru_hit(ac__lru *l, uint32_t i) {
  if (l->head == i) return;
  ac__lru_unlink(l, i);
  ac__lru_push_front(l, i);
}

#endif
