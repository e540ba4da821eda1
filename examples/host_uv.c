/* A host that already runs libuv (a proxy, say) hands its own loop to the
 * cache runtime: Lua coroutines, sleeps and loads then run on the host's
 * loop, next to the host's own handles, and the host keeps calling uv_run.
 * When the runtime is freed, the loop is left with only the host's handles
 * and closes cleanly. */
#include <lauxlib.h>
#include <stdio.h>
#include <uv.h>

#include "ac_lua.h"

static int ticks;

static void on_tick(uv_timer_t *t) {
  if (++ticks == 5) uv_timer_stop(t); /* the host's own work */
}

static const char *script =
    "local cache = require 'cache'\n"
    "local runtime = require 'cache.runtime'\n"
    "local c = cache.AsyncCache{ maxsize = 8 }\n"
    "local loads = 0\n"
    "for i = 1, 4 do\n"
    "  runtime.spawn(function()\n"
    "    local v = c:get('upstream', function() loads = loads + 1; runtime.sleep(0.01); return 'v' end)\n"
    "    assert(v == 'v')\n"
    "  end)\n"
    "end\n"
    "runtime.spawn(function() runtime.sleep(0.03); result = loads end)\n";

static const char *pending =
    "local cache = require 'cache'\n"
    "local runtime = require 'cache.runtime'\n"
    "local c = cache.AsyncCache{ batch_window_ms = 60000, load_timeout = 120,\n"
    "  batch_loader = function(keys) return {} end }\n"
    "runtime.spawn(function() c:get('never dispatched') end)\n"
    "runtime.spawn(function() c:get('slow', function() runtime.sleep(60) end) end)\n";

int main(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  uv_timer_t tick;
  uv_timer_init(&loop, &tick);
  uv_timer_start(&tick, on_tick, 5, 5);

  char err[256];
  ac_runtime_options_t opts = {.loop = &loop};
  ac_runtime_t *rt = ac_runtime_new(&opts, err, sizeof err);
  if (rt == NULL) {
    fprintf(stderr, "host_uv: %s\n", err);
    return 1;
  }
  lua_State *L = ac_runtime_lua(rt);
  if (luaL_loadstring(L, script) != LUA_OK) {
    fprintf(stderr, "host_uv: %s\n", lua_tostring(L, -1));
    return 1;
  }
  ac_runtime_spawn(rt, 0);
  uv_run(&loop, UV_RUN_DEFAULT); /* the host's loop, run by the host */
  lua_getglobal(L, "result");
  int loads = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  unsigned errors = ac_runtime_errors(rt);

  /* The host may free the runtime while work is still pending (here a
   * batch still collecting keys and a sleeping loader): the runtime
   * closes all of its handles, so the host's loop can still close. */
  if (luaL_loadstring(L, pending) != LUA_OK) {
    fprintf(stderr, "host_uv: %s\n", lua_tostring(L, -1));
    return 1;
  }
  ac_runtime_spawn(rt, 0);
  for (int i = 0; i < 3; i++) uv_run(&loop, UV_RUN_NOWAIT);
  ac_runtime_free(rt);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  int closed = uv_loop_close(&loop);
  printf("host_uv: %d host ticks, loader ran %d time(s), %u errors, loop closed: %s\n",
         ticks, loads, errors, closed == 0 ? "yes" : "no");
  return (loads == 1 && errors == 0 && closed == 0 && ticks == 5) ? 0 : 1;
}
