/* The Lua API of the runtime, core.runtime (lua/cache/runtime.lua
 * re-exports it): run, spawn, sleep, now, event, fake_clock,
 * set_error_hook, can_wait; and, for the modules only, report, context and
 * set_context.
 *
 * runtime.run drives the loop from outside any task until its function's
 * task has finished; when the loop has nothing left that could wake that
 * task, run gives up on it and raises (timers on the fake clock do not
 * count: only a task calling clock:advance() could fire them).  A sleep
 * is an lsleep: a timer and the parked task it wakes, held by the
 * scheduler (lpending) while armed, so a state closing with sleepers
 * frees their timers. */
#include <math.h>

#include "alloc.h"
#include "lsched_state.h"

static int l_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  int nargs = lua_gettop(L) - 1;
  ltask *t = ac__lsched_spawn(L, TASK_SPAWN, nargs);
  lua_pushthread(t->co);
  lua_xmove(t->co, L, 1);
  return 1;
}

/* The results of fn called in place by runtime.run: the whole stack. */
static int run_inline_done(lua_State *L, int status, lua_KContext ctx) {
  (void)status, (void)ctx;
  return lua_gettop(L);
}

static int l_run(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lsched *ls = ac__lsched_get(L);
  if (ac__lsched_task_of(ls, L) != NULL) {
    /* Already in a task (a script under acache, say): fn can simply run
     * here, it may wait like any task. */
    lua_callk(L, lua_gettop(L) - 1, LUA_MULTRET, 0, run_inline_done);
    return run_inline_done(L, LUA_OK, 0);
  }
  if (ls->current != NULL || ls->in_pass || ls->in_run)
    return luaL_error(L,
                      "runtime.run cannot drive the loop from here (the loop "
                      "is already running): call fn from a task, or use "
                      "runtime.spawn(fn)");
  ltask *t = ac__lsched_spawn(L, TASK_RUN, lua_gettop(L) - 1);
  ls->in_run = 1;
  while (!t->finished) {
    int alive = ac_sched_once(ls->sched);
    if (!t->finished && !alive) {
      ls->in_run = 0;
      /* Where it waits, for the message; then give up on it: it is
       * never resumed, and is forgotten if what it waits on wakes it after
       * all (ltask.abandoned). */
      const char *msg = LSCHED_NEVER_MSG("runtime.run: the function");
      size_t fakes = ac_sched_fake_timers(ls->sched);
      if (fakes > 0)
        msg = lua_pushfstring(L, "%s; %d timer(s) wait on the fake clock, "
                                 "which only clock:advance() moves",
                              msg, (int)fakes);
      luaL_traceback(L, t->co, msg, 0);
      t->abandoned = 1;
      return lua_error(L);
    }
  }
  ls->in_run = 0;
  int n = t->nres;
  luaL_checkstack(L, n, "too many results");
  lua_xmove(t->co, L, n);
  int ok = t->status == LUA_OK;
  ac__lsched_forget(ls, L, t);
  if (!ok) return lua_error(L);
  return n;
}

/* ---- sleep ------------------------------------------------------------- */

typedef struct {
  lpending held; /* first member: the release callback frees the sleep */
  ac_timer_t *timer;
  ltask *task;
  lsched *ls;
} lsleep;

static void on_sleep(ac_timer_t *timer, void *data) {
  lsleep *s = data;
  ac__lsched_drop(s->ls, &s->held);
  ac__lsched_wake(s->task, NULL);
  ac_timer_free(timer);
  ac__free(s);
}

/* The state closes with the task still asleep. */
static void release_sleep(lpending *p) {
  lsleep *s = (lsleep *)p;
  ac_timer_free(s->timer);
  ac__free(s);
}

static int l_sleep(lua_State *L) {
  double secs = luaL_checknumber(L, 1);
  luaL_argcheck(L, secs >= 0 && !isnan(secs), 1,
                "seconds must be a non-negative number");
  ltask *t = ac__lsched_park(L, "runtime.sleep()");
  lsched *ls = t->ls;
  if (secs == 0) {
    ac__lsched_wake(t, NULL);
    return ac__lsched_yield(L);
  }
  lsleep *s = ac__malloc(sizeof *s);
  if (s != NULL) s->timer = ac_timer_new(ls->sched, on_sleep, s);
  if (s == NULL || s->timer == NULL) {
    ac__free(s);
    t->parked = 0;
    return luaL_error(L, "out of memory");
  }
  s->task = t;
  s->ls = ls;
  s->held.release = NULL;
  ac__lsched_hold(ls, &s->held, release_sleep);
  ac_timer_start(s->timer, secs, 0);
  return ac__lsched_yield(L);
}

/* ---- the rest ---------------------------------------------------------- */

/* Could the running coroutine wait here (is it a task, and yieldable)? */
static int l_can_wait(lua_State *L) {
  lua_pushboolean(L, ac__lsched_task_of(ac__lsched_get(L), L) != NULL);
  return 1;
}

/* The precise monotonic clock (for measuring), or fake time. */
static int l_now(lua_State *L) {
  ac_sched_t *s = ac__lsched_sched(ac__lsched_get(L));
  lua_pushnumber(L, ac_sched_clock_is_fake(s) ? ac_sched_now(s)
                                              : ac_clock_precise());
  return 1;
}

static int l_set_error_hook(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
  lsched *ls = ac__lsched_get(L);
  luaL_unref(L, LUA_REGISTRYINDEX, ls->hook_ref);
  ls->hook_ref = LUA_NOREF;
  if (!lua_isnoneornil(L, 1)) {
    lua_pushvalue(L, 1);
    ls->hook_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  return 0;
}

/* report(msg): hands an error that is nobody's return value (a backup
 * that could not be restored) to the error hook. */
static int l_report(lua_State *L) {
  luaL_checkstring(L, 1);
  lua_settop(L, 1);
  ac__lsched_report(ac__lsched_get(L), L, NULL);
  return 0;
}

/* context(): the context value of the running task (of the code outside
 * any task, outside them), or nil.  set_context(v): replaces it (nil
 * clears it); tasks spawned from then on start with v, those spawned
 * before keep theirs.  Internal: agent_cache keeps the current session
 * there, which is how a session follows the coroutines spawned in it. */
static int l_context(lua_State *L) {
  int ref = *ac__lsched_context(ac__lsched_get(L));
  if (ref == LUA_NOREF) lua_pushnil(L);
  else lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  return 1;
}

static int l_set_context(lua_State *L) {
  lua_settop(L, 1);
  int *ref = ac__lsched_context(ac__lsched_get(L));
  int next = lua_isnil(L, 1) ? LUA_NOREF : luaL_ref(L, LUA_REGISTRYINDEX);
  luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  *ref = next;
  return 0;
}

int luaopen_cache_runtime_core(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"run", l_run},         {"spawn", l_spawn},
      {"sleep", l_sleep},     {"now", l_now},
      {"event", ac__levent_new},  {"fake_clock", ac__lclock_fake},
      {"set_error_hook", l_set_error_hook},
      {"can_wait", l_can_wait}, {"report", l_report},
      {"context", l_context}, {"set_context", l_set_context},
      {NULL, NULL}};
  ac__levent_register(L);
  ac__lclock_register(L);
  ac__lsched_get(L);
  luaL_newlib(L, funcs);
  return 1;
}
