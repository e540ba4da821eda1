/* The Lua module cache.runtime (internal): core.runtime is built by
 * luaopen_cache_runtime_core (lua_runtime.c) from the functions there and
 * the type of lua_event.c. */
#ifndef AC_LRUNTIME_H
#define AC_LRUNTIME_H

#include <lua.h>

/* Pushes the table core.runtime: run, spawn, sleep, now, event,
 * set_error_hook, can_wait. */
int luaopen_cache_runtime_core(lua_State *L);

/* Registers the type "ac.event" (once per state). */
void levent_register(lua_State *L);
/* runtime.event(): a new unset event. */
int levent_new(lua_State *L);

#endif
