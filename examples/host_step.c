/* A minimal C host that steps the cache runtime once per frame, the way a
 * game loop would: it never blocks in the runtime, and the Lua side sleeps
 * and loads in coroutines between frames. */
#include <stdio.h>
#include <time.h>

#include "ac_lua.h"
#include <lauxlib.h>

static const char *script =
    "local cache = require 'cache'\n"
    "local runtime = require 'cache.runtime'\n"
    "local c = cache.AsyncCache{ maxsize = 64 }\n"
    "local function slow_load(key) runtime.sleep(0.02) return 'asset:' .. key end\n"
    "for i = 1, 3 do\n"
    "  runtime.spawn(function() print('frame task got', c:get('hero', slow_load)) end)\n"
    "end\n"
    "frames_done = function() return c:get_metrics().loads end\n";

int main(void) {
  char err[256];
  ac_runtime_t *rt = ac_runtime_new(NULL, err, sizeof err);
  if (rt == NULL) {
    fprintf(stderr, "host_step: %s\n", err);
    return 1;
  }
  lua_State *L = ac_runtime_lua(rt);
  if (luaL_loadstring(L, script) != LUA_OK) {
    fprintf(stderr, "host_step: %s\n", lua_tostring(L, -1));
    ac_runtime_free(rt);
    return 1;
  }
  ac_runtime_spawn(rt, 0);
  int frame = 0;
  struct timespec frame_time = {0, 5 * 1000 * 1000}; /* a 5 ms "frame" */
  while (ac_runtime_step(rt)) { /* one non-blocking pass per frame */
    frame++;
    nanosleep(&frame_time, NULL); /* the host's own work for the frame */
  }
  lua_getglobal(L, "frames_done");
  lua_call(L, 0, 1);
  printf("host_step: idle after %d frames, loader ran %d time(s)\n", frame,
         (int)lua_tointeger(L, -1));
  lua_pop(L, 1);
  ac_runtime_free(rt);
  return 0;
}
