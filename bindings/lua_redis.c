/* A cache's Redis backend, from the options cache.RedisBackend checked
 * (lua/cache/redis.lua): one ac_redis_t per cache (runtime/redis.c),
 * wired to that cache.  An invalidation from another instance drops the
 * key from this cache's L1 only (ac_cache_forget: not sent back to Redis);
 * connection events go to the runtime's error hook. */
#include <lauxlib.h>
#include <string.h>

#include "lcache.h"
#include "lremote.h"

/* From the loop (hiredis's callbacks): no Lua here, only the core. */
static void on_invalidated(void *ud, const char *key, size_t len) {
  lcache *c = ud;
  if (c->closed || c->cache == NULL) return;
  if (key == NULL) ac_cache_forget_all(c->cache);
  else if (len >= 1) ac_cache_forget(c->cache, (unsigned char)key[0], key + 1, len - 1);
}

/* The report runs in a task of its own, later: the error hook may close
 * the cache, which frees the backend, and must not do so from inside the
 * backend's own code (which called on_event and goes on after it). */
static int report_task(lua_State *L) {
  ac__lsched_report(ac__lsched_get(L), L, NULL);
  return 0;
}

static int report_protected(lua_State *L) {
  lua_pushcfunction(L, report_task);
  lua_pushstring(L, lua_touserdata(L, 1));
  ac__lsched_spawn(L, TASK_SPAWN, 1);
  return 0;
}

/* "Redis connected" is news only after a failure: not reported. */
static void on_event(void *ud, const char *msg) {
  lcache *c = ud;
  if (strcmp(msg, "Redis connected") == 0) {
    if (!c->redis_failed) return;
    c->redis_failed = 0;
  } else {
    c->redis_failed = 1;
  }
  lua_State *L = ac__lsched_cbstate(c->ls);
  if (!lua_checkstack(L, 4)) return;
  lua_pushcfunction(L, report_protected);
  lua_pushlightuserdata(L, (void *)msg);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) lua_pop(L, 1);
}

static const char *opt_string(lua_State *L, int idx, const char *name) {
  lua_getfield(L, idx, name);
  const char *s = lua_tostring(L, -1); /* kept alive by the options table */
  lua_pop(L, 1);
  return s;
}

static lua_Number opt_number(lua_State *L, int idx, const char *name) {
  lua_getfield(L, idx, name);
  lua_Number n = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return n;
}

ac_backend_t *ac__lredis_new(lua_State *L, int idx, lcache *c) {
  idx = lua_absindex(L, idx);
  ac_redis_options_t o;
  memset(&o, 0, sizeof o);
  o.host = opt_string(L, idx, "host");
  o.port = (int)opt_number(L, idx, "port");
  o.unix_path = opt_string(L, idx, "unix");
  o.db = (int)opt_number(L, idx, "db");
  o.username = opt_string(L, idx, "username");
  o.password = opt_string(L, idx, "password");
  o.prefix = opt_string(L, idx, "prefix");
  o.connect_timeout = opt_number(L, idx, "connect_timeout");
  o.command_timeout = opt_number(L, idx, "command_timeout");
  o.sched = ac__lsched_sched(c->ls);
  o.invalidated = on_invalidated;
  o.event = on_event;
  o.ud = c;
  int err;
  ac_backend_t *b = ac_redis_new(&o, &err);
  if (b == NULL) luaL_error(L, "cache.RedisBackend: %s", ac_strerror(err));
  return b;
}
