/* The allocator hook: three function pointers, the C library's by default. */
#include <stdlib.h>
#include <string.h>

#include "ac_alloc.h"
#include "ac_error.h"
#include "alloc.h"

static ac_malloc_fn use_malloc = malloc;
static ac_realloc_fn use_realloc = realloc;
static ac_free_fn use_free = free;

int ac_replace_allocator(ac_malloc_fn m, ac_realloc_fn r, ac_free_fn f) {
  if (m == NULL || r == NULL || f == NULL) return AC_EINVAL;
  use_malloc = m;
  use_realloc = r;
  use_free = f;
  return 0;
}

void *ac__malloc(size_t size) { return use_malloc(size ? size : 1); }

void *ac__calloc(size_t n, size_t size) {
  if (size != 0 && n > (size_t)-1 / size) return NULL;
  void *p = ac__malloc(n * size);
  if (p != NULL) memset(p, 0, n * size);
  return p;
}

void *ac__realloc(void *ptr, size_t size) {
  return use_realloc(ptr, size ? size : 1);
}

void ac__free(void *ptr) {
  if (ptr != NULL) use_free(ptr);
}
