/* Internal allocation entry points; see ac_alloc.h for the hook. */
#ifndef AC_INTERNAL_ALLOC_H
#define AC_INTERNAL_ALLOC_H

#include <stddef.h>

void *ac__malloc(size_t size);
void *ac__calloc(size_t n, size_t size);
void *ac__realloc(void *ptr, size_t size);
void ac__free(void *ptr);

#endif
