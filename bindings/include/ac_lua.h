/* Embedding async-cache in a C host.
 *
 * A runtime is a Lua 5.4 state with the cache modules on its path and a
 * scheduler on a libuv loop: its own, or one the host owns and runs.
 *
 *   char err[256];
 *   ac_runtime_options_t o = { .module_dirs = dirs };
 *   ac_runtime_t *rt = ac_runtime_new(&o, err, sizeof err);
 *   ac_runtime_dofile(rt, "game.lua", 0, NULL, err, sizeof err);  -- a task
 *   while (playing) { ...; ac_runtime_step(rt); }   -- once a frame
 *   ac_runtime_free(rt);
 *
 * Lifetimes: the runtime owns its lua_State; ac_runtime_lua() lends it.
 * A host loop must outlive the runtime.  Not thread-safe: one thread. */
#ifndef AC_LUA_H
#define AC_LUA_H

#include <lua.h>
#include <uv.h>

#include "ac_export.h"

typedef struct ac_runtime_s ac_runtime_t;

typedef struct {
  /* A loop the host owns and runs (NULL: the runtime creates its own). */
  uv_loop_t *loop;
  /* NULL-terminated list of directories searched first for Lua modules
   * (?.lua and ?/init.lua); may be NULL. */
  const char *const *module_dirs;
  /* Modules to require at startup, NULL-terminated; may be NULL. */
  const char *const *preload;
} ac_runtime_options_t;

/* Creates a runtime: opens the standard libraries, puts module_dirs, the
 * build tree's and the install tree's lua/ directories on package.path,
 * registers cache.core, requires each preload module.  Returns NULL on
 * failure, with a message in errbuf when it is not NULL. */
AC_EXPORT ac_runtime_t *ac_runtime_new(const ac_runtime_options_t *opts,
                                       char *errbuf, size_t errlen);
/* Closes the Lua state (collecting caches, closing their handles) and the
 * scheduler.  On a host loop, only the runtime's own handles are closed.
 * NULL is a no-op. */
AC_EXPORT void ac_runtime_free(ac_runtime_t *rt);

AC_EXPORT lua_State *ac_runtime_lua(ac_runtime_t *rt);
AC_EXPORT uv_loop_t *ac_runtime_loop(ac_runtime_t *rt);

/* Pops a function and nargs arguments (pushed in that order) from the
 * runtime's state and runs the function in a new coroutine, from the next
 * pass of the loop.  Its errors go to the error hook.  Returns 0, or -1
 * when the coroutine could not be made (reported to the error hook). */
AC_EXPORT int ac_runtime_spawn(ac_runtime_t *rt, int nargs);
/* Loads a Lua file and spawns its main chunk with the given arguments
 * (available as ... and in the global `arg`).  Returns 0, or -1 with the
 * message in errbuf when the file cannot be loaded. */
AC_EXPORT int ac_runtime_dofile(ac_runtime_t *rt, const char *path, int argc,
                                char **argv, char *errbuf, size_t errlen);

/* Drives the loop until nothing is left to do.  Returns 0, or -1 when a
 * script started by ac_runtime_dofile is still suspended then: it waits for
 * something that can never happen (an event nobody sets).  Each such script
 * is reported to the error hook with the traceback of where it waits (so
 * ac_runtime_errors counts it). */
AC_EXPORT int ac_runtime_run(ac_runtime_t *rt);
/* One non-blocking pass: runs ready coroutines and due timers, polls I/O.
 * Returns 1 while work remains, 0 when idle. */
AC_EXPORT int ac_runtime_step(ac_runtime_t *rt);
/* How many errors reached the default error hook so far (acache exits
 * non-zero when any did). */
AC_EXPORT unsigned ac_runtime_errors(ac_runtime_t *rt);

#endif
