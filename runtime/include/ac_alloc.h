/* The one allocator hook of the core.
 *
 * All memory the core owns goes through ac__malloc/ac__realloc/ac__free,
 * which call the functions installed here (default: the C library's).
 * Install a replacement before creating any object; tests use it to make
 * allocations fail on purpose. */
#ifndef AC_ALLOC_H
#define AC_ALLOC_H

#include <stddef.h>
#include "ac_export.h"

typedef void *(*ac_malloc_fn)(size_t size);
typedef void *(*ac_realloc_fn)(void *ptr, size_t size);
typedef void (*ac_free_fn)(void *ptr);

/* Returns 0, or AC_EINVAL when any function is NULL. */
AC_EXPORT int ac_replace_allocator(ac_malloc_fn m, ac_realloc_fn r,
                                   ac_free_fn f);

#endif
