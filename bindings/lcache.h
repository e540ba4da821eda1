/* The cache object of cache.core (internal). */
#ifndef AC_LCACHE_H
#define AC_LCACHE_H

#include <lua.h>

/* Registers the "ac.cache" metatable and pushes the constructor
 * new_cache(maxsize, default_ttl, load_timeout). */
void lcache_open(lua_State *L);

#endif
