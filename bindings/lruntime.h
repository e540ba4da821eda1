/* The Lua module cache.runtime (internal): core.runtime is built by
 * luaopen_cache_runtime_core (lua_runtime.c) from the functions there and
 * the types of lua_event.c and lua_clock.c. */
#ifndef AC_LRUNTIME_H
#define AC_LRUNTIME_H

#include <lua.h>

/* Pushes the table core.runtime: run, spawn, sleep, now, event,
 * fake_clock, set_error_hook, can_wait. */
int luaopen_cache_runtime_core(lua_State *L);

/* Registers the type "ac.event" (once per state). */
void ac__levent_register(lua_State *L);
/* runtime.event(): a new unset event. */
int ac__levent_new(lua_State *L);

/* Registers the type "ac.clock" (once per state). */
void ac__lclock_register(lua_State *L);
/* runtime.fake_clock([start]): turns the state's fake clock on and
 * returns the clock. */
int ac__lclock_fake(lua_State *L);

#endif
