/* The scheduler state of a Lua state (struct in lsched_state.h).
 *
 * Created on first use (ac__lsched_get) or by a host (ac__lsched_install), kept in
 * a full userdata under a registry key whose __gc tears it down when the
 * state closes.  It holds the core scheduler, the registry of pending
 * memory (lpending: a doubly linked list of what only an event that may
 * never come would free) and the error hook.  Teardown order: everything
 * still held is released first (its release callbacks may close timers),
 * then an owned scheduler is freed, which runs its loop until every handle
 * has closed. */
#include <stdio.h>
#include <string.h>

#include "lsched_state.h"

static const char LSCHED_KEY = 'S';

void ac__lsched_hold(lsched *ls, lpending *p, void (*release)(lpending *p)) {
  if (p->release != NULL) return;
  p->release = release;
  p->prev = NULL;
  p->next = ls->pending;
  if (p->next) p->next->prev = p;
  ls->pending = p;
}

void ac__lsched_drop(lsched *ls, lpending *p) {
  if (p->release == NULL) return;
  if (p->prev) p->prev->next = p->next; else ls->pending = p->next;
  if (p->next) p->next->prev = p->prev;
  p->release = NULL;
}

static int lsched_gc(lua_State *L) {
  lsched *ls = lua_touserdata(L, 1);
  /* The state is closing: nothing held can ever be finished now. */
  while (ls->pending != NULL) {
    lpending *p = ls->pending;
    void (*release)(lpending *) = p->release;
    ac__lsched_drop(ls, p);
    release(p);
  }
  if (ls->sched == NULL) return 0;
  if (ls->owns_sched) ac_sched_free(ls->sched);
  ls->sched = NULL;
  return 0;
}

lsched *ac__lsched_install(lua_State *L, ac_sched_t *sched, int owns_sched) {
  lsched *ls = lua_newuserdatauv(L, sizeof *ls, 0);
  memset(ls, 0, sizeof *ls);
  ls->sched = sched;
  ls->owns_sched = owns_sched;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, lsched_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &LSCHED_KEY);
  ls->cbL = lua_newthread(L);
  ls->cbL_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  ls->tasks_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  ls->hook_ref = LUA_NOREF;
  ls->ctx_ref = LUA_NOREF;
  ac_sched_set_pass(sched, ac__lsched_pass, ls);
  return ls;
}

lsched *ac__lsched_get(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &LSCHED_KEY) == LUA_TUSERDATA) {
    lsched *ls = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return ls;
  }
  lua_pop(L, 1);
  int err;
  ac_sched_t *s = ac_sched_new(NULL, &err);
  if (s == NULL) luaL_error(L, "cannot start the event loop: %s", ac_strerror(err));
  return ac__lsched_install(L, s, 1);
}

ac_sched_t *ac__lsched_sched(lsched *ls) { return ls->sched; }
lua_State *ac__lsched_cbstate(lsched *ls) { return ls->cbL; }
unsigned ac__lsched_error_count(lsched *ls) { return ls->errors; }

void ac__lsched_report(lsched *ls, lua_State *L, lua_State *co) {
  int err = lua_gettop(L);
  if (co != NULL) {
    const char *msg = lua_tostring(L, err);
    luaL_traceback(L, co, msg, 0);
  } else {
    lua_pushstring(L, lua_isstring(L, err) ? lua_tostring(L, err) : "(error object)");
  }
  if (ls->hook_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ls->hook_ref);
    lua_pushvalue(L, err);
    lua_pushvalue(L, err + 1);
    if (lua_pcall(L, 2, 0, 0) == LUA_OK) {
      lua_settop(L, err - 1);
      return;
    }
    fprintf(stderr, "async-cache: the error hook failed: %s\n",
            luaL_tolstring(L, -1, NULL));
    lua_pop(L, 2);
  }
  ls->errors++;
  fprintf(stderr, co != NULL ? "async-cache: error in a coroutine: %s\n" : "async-cache: %s\n",
          lua_tostring(L, err + 1));
  lua_settop(L, err - 1);
}
