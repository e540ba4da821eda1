/* luaopen_cache_core: the Lua C module "cache.core".
 *
 *   core.new_cache(opts) -> ac.cache (opts as cache.async_cache.check makes them)
 *   core.cache_methods   the method table of ac.cache (cache.lua extends it)
 *   core.memoize(cache, fn, skip_args) -> ac.memo (decorated function)
 *   core.is_memo(x), core.memo_methods
 *   core.args_key(...) -> the key of a decorated call with these arguments
 *   core.runtime         run, spawn, sleep, now, event, fake_clock,
 *                        set_error_hook, can_wait
 *   core.codec           encode(v) -> bytes | nil, err; decode(bytes) -> v | nil, err
 *   core.version */
#include <lauxlib.h>
#include <lua.h>

#include "ac.h"
#include "ac_lua.h"
#include "lcache.h"
#include "lcodec.h"
#include "lsched.h"

AC_EXPORT int luaopen_cache_core(lua_State *L);

int luaopen_cache_core(lua_State *L) {
  lua_createtable(L, 0, 9);
  ac__lcache_open(L);
  lua_setfield(L, -2, "new_cache");
  luaL_getmetatable(L, "ac.cache");
  lua_getfield(L, -1, "methods");
  lua_setfield(L, -3, "cache_methods");
  lua_pop(L, 1);
  ac__lmemo_open(L);
  lua_setfield(L, -3, "is_memo");
  lua_setfield(L, -2, "memoize");
  luaL_getmetatable(L, "ac.memo");
  lua_getfield(L, -1, "methods");
  lua_setfield(L, -3, "memo_methods");
  lua_pop(L, 1);
  lua_pushcfunction(L, ac__lmemo_args_key);
  lua_setfield(L, -2, "args_key");
  luaopen_cache_runtime_core(L);
  lua_setfield(L, -2, "runtime");
  ac__lbackup_open(L);
  ac__lcodec_open(L);
  lua_setfield(L, -2, "codec");
  lua_pushliteral(L, AC_VERSION_STRING);
  lua_setfield(L, -2, "version");
  return 1;
}
