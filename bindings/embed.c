/* The embedding API (ac_lua.h): a Lua state wired to a scheduler. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

#include "ac.h"
#include "ac_lua.h"
#include "alloc.h"
#include "lsched.h"

int luaopen_cache_core(lua_State *L);

struct ac_runtime_s {
  lua_State *L;
  ac_sched_t *sched;
  lsched *ls;
  int scripts_ref; /* registry: list of the threads ac_runtime_dofile ran */
};

static void say(char *buf, size_t len, const char *msg) {
  if (buf != NULL && len > 0) snprintf(buf, len, "%s", msg);
}

/* Prepends dir/?.lua;dir/?/init.lua to package.path. */
static void add_path(lua_State *L, const char *dir) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);
}

static int setup(lua_State *L) {
  const ac_runtime_options_t *o = lua_touserdata(L, 1);
  luaL_openlibs(L);
  /* Search order: the host's dirs, then the source tree, then the install
   * tree; pushed in reverse because each push goes first. */
  add_path(L, AC_LUA_INSTALL_DIR);
  add_path(L, AC_LUA_BUILD_DIR);
  if (o->module_dirs != NULL) {
    size_t n = 0;
    while (o->module_dirs[n] != NULL) n++;
    while (n-- > 0) add_path(L, o->module_dirs[n]);
  }
  /* Our own copy of cache.core, so `require` never loads a second one from
   * package.cpath (it would have its own hash key and scheduler). */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_cache_core);
  lua_setfield(L, -2, "cache.core");
  lua_pop(L, 1);
  if (o->preload != NULL)
    for (size_t i = 0; o->preload[i] != NULL; i++) {
      lua_getglobal(L, "require");
      lua_pushstring(L, o->preload[i]);
      lua_call(L, 1, 0);
    }
  return 0;
}

ac_runtime_t *ac_runtime_new(const ac_runtime_options_t *opts, char *errbuf,
                             size_t errlen) {
  ac_runtime_options_t none = {0};
  if (opts == NULL) opts = &none;
  ac_runtime_t *rt = ac__calloc(1, sizeof *rt);
  if (rt == NULL) {
    say(errbuf, errlen, "out of memory");
    return NULL;
  }
  int err;
  rt->sched = ac_sched_new(opts->loop, &err);
  rt->L = luaL_newstate();
  if (rt->sched == NULL || rt->L == NULL) {
    say(errbuf, errlen, rt->sched == NULL ? ac_strerror(err) : "out of memory");
    ac_runtime_free(rt);
    return NULL;
  }
  rt->ls = ac__lsched_install(rt->L, rt->sched, 0);
  lua_newtable(rt->L);
  rt->scripts_ref = luaL_ref(rt->L, LUA_REGISTRYINDEX);
  lua_pushcfunction(rt->L, setup);
  lua_pushlightuserdata(rt->L, (void *)opts);
  if (lua_pcall(rt->L, 1, 0, 0) != LUA_OK) {
    say(errbuf, errlen, lua_tostring(rt->L, -1));
    ac_runtime_free(rt);
    return NULL;
  }
  return rt;
}

void ac_runtime_free(ac_runtime_t *rt) {
  if (rt == NULL) return;
  if (rt->L != NULL) lua_close(rt->L); /* caches close their handles */
  ac_sched_free(rt->sched);
  ac__free(rt);
}

lua_State *ac_runtime_lua(ac_runtime_t *rt) { return rt->L; }
uv_loop_t *ac_runtime_loop(ac_runtime_t *rt) { return ac_sched_loop(rt->sched); }

static int spawn_protected(lua_State *L) {
  ac__lsched_spawn(L, TASK_SPAWN, lua_gettop(L) - 1);
  return 0;
}

int ac_runtime_spawn(ac_runtime_t *rt, int nargs) {
  /* Under a protected call: a host must not panic on a Lua error (out of
   * memory, too many arguments). */
  lua_State *L = rt->L;
  lua_pushcfunction(L, spawn_protected);
  lua_insert(L, -(nargs + 2));
  if (lua_pcall(L, nargs + 1, 0, 0) != LUA_OK) {
    ac__lsched_report(rt->ls, L, NULL);
    return -1;
  }
  return 0;
}

/* spawn_script(chunk, args..., scripts): spawns the chunk as a task and
 * appends its thread to the list of scripts. */
static int spawn_script(lua_State *L) {
  lua_insert(L, 1); /* scripts, chunk, args... */
  ltask *t = ac__lsched_spawn(L, TASK_SPAWN, lua_gettop(L) - 2);
  lua_pushthread(t->co);
  lua_xmove(t->co, L, 1);
  lua_rawseti(L, 1, (lua_Integer)lua_rawlen(L, 1) + 1);
  return 0;
}

int ac_runtime_dofile(ac_runtime_t *rt, const char *path, int argc,
                      char **argv, char *errbuf, size_t errlen) {
  lua_State *L = rt->L;
  if (luaL_loadfile(L, path) != LUA_OK) {
    say(errbuf, errlen, lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  /* The global `arg`, as the stand-alone interpreter sets it. */
  if (!lua_checkstack(L, argc + 4)) {
    lua_pop(L, 1);
    say(errbuf, errlen, "too many arguments");
    return -1;
  }
  lua_createtable(L, argc, 1);
  lua_pushstring(L, path);
  lua_rawseti(L, -2, 0);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setglobal(L, "arg");
  for (int i = 0; i < argc; i++) lua_pushstring(L, argv[i]);
  lua_pushcfunction(L, spawn_script);
  lua_insert(L, -(argc + 2));
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->scripts_ref);
  if (lua_pcall(L, argc + 2, 0, 0) != LUA_OK) {
    say(errbuf, errlen, lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

/* Reports every script still suspended once the loop is idle: nothing
 * can resume it any more.  Returns how many. */
static int report_stuck_scripts(ac_runtime_t *rt) {
  lua_State *L = rt->L;
  int stuck = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->scripts_ref);
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    lua_State *co = lua_tothread(L, -1);
    lua_pop(L, 1);
    if (co == NULL || lua_status(co) != LUA_YIELD) continue;
    stuck++;
    lua_pushliteral(L, LSCHED_NEVER_MSG("the script"));
    ac__lsched_report(rt->ls, L, co);
  }
  lua_pop(L, 1);
  lua_newtable(L); /* the scripts have ended, or never will */
  lua_rawseti(L, LUA_REGISTRYINDEX, rt->scripts_ref);
  return stuck;
}

int ac_runtime_run(ac_runtime_t *rt) {
  ac_sched_run(rt->sched);
  return report_stuck_scripts(rt) > 0 ? -1 : 0;
}

int ac_runtime_step(ac_runtime_t *rt) { return ac_sched_step(rt->sched); }

unsigned ac_runtime_errors(ac_runtime_t *rt) { return ac__lsched_error_count(rt->ls); }
