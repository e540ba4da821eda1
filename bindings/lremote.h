/* A cache's second level from the Lua side (internal; lua_remote.c).
 *
 * remote_cache = <a Lua object with get, set, delete methods> (a
 * cache.RemoteCacheBackend): each cache gets an adapter, an ac_backend_t
 * whose operations run the object's methods in tasks of their own (they
 * may yield: a socket, a sleep), so that the core sees an asynchronous
 * backend like any other.  The adapter is the cache's: created with it,
 * freed after it (pending calls then end with AC_ECANCELED).
 *
 * What the methods see: get(key) -> bytes [, ttl_left] | nil (a miss) |
 * nil, err; set(key, bytes, ttl) (ttl: seconds, nil for none); delete(key);
 * clear() (optional).  key is the cache's key as Lua has it (a string,
 * number or boolean; for a decorated function, the encoded argument list,
 * a binary string); bytes are MessagePack (cache.codec).  A method that
 * raises, or returns nil, err, is a failed call: counted (remote_errors)
 * and reported to the error hook; the cache goes on without it.
 *
 * The cache's ops.encode / ops.decode (values to and from bytes, with the
 * codec) are here too. */
#ifndef AC_LREMOTE_H
#define AC_LREMOTE_H

#include <lua.h>

#include "lcache.h"

/* A new adapter for the Lua backend at idx, for cache c; raises on memory
 * error. */
ac_backend_t *ac__lremote_new(lua_State *L, int idx, lcache *c);
/* A Redis backend for cache c from the options table at idx (as
 * cache.RedisBackend made it; lua_redis.c); raises on failure. */
ac_backend_t *ac__lredis_new(lua_State *L, int idx, lcache *c);
/* Sets ops.encode and ops.decode. */
void ac__lremote_ops(ac_cache_ops_t *ops);

#endif
