/* Tasks (see ltask.h): spawning, the loader thread pool, parking and
 * waking, the one resume point and the pass of the ready queue.
 *
 * Every lua_resume of a task is in resume(), which also does its
 * bookkeeping: the task being resumed (ls->current, innermost, restored
 * afterwards since an inline loader runs inside another task), clearing
 * `parked`, and re-queueing a task that yielded without parking.  It has
 * two callers: resume_queued, the ready-queue callback of every task, and
 * ac__lsched_start_loader, a loader's first run inline.  Queued tasks run
 * inside ac__lsched_pass, one lua_pcall per pass of the loop (not one per
 * task), so no Lua error unwinds through libuv. */
#include <string.h>

#include "lsched_state.h"

/* ---- the one resume point ---------------------------------------------- */

/* Resumes t's thread from `from` with the nargs values on top of it.  On
 * LUA_YIELD the yielded values are dropped and a task that did not park
 * is queued again (a bare yield gives the others a turn). */
static int resume(ltask *t, lua_State *from, int nargs, int *nres) {
  lsched *ls = t->ls;
  ltask *outer = ls->current;
  ls->current = t;
  t->parked = 0;
  int st = lua_resume(t->co, from, nargs, nres);
  ls->current = outer;
  if (st == LUA_YIELD) {
    lua_pop(t->co, *nres);
    if (!t->parked) ac_sched_post(ls->sched, &t->q);
  }
  return st;
}

/* ---- life of a task ---------------------------------------------------- */

static void resume_queued(ac_task_t *q);

/* A new thread and its task, anchored in the tasks table. */
static ltask *new_task(lsched *ls, lua_State *L, int kind) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, ls->tasks_ref);
  lua_State *co = lua_newthread(L);
  ltask *t = lua_newuserdatauv(L, sizeof *t, 0);
  memset(t, 0, sizeof *t);
  t->q.fn = resume_queued;
  t->q.data = t;
  t->w.data = t;
  t->ls = ls;
  t->co = co;
  t->kind = kind;
  t->ctx_ref = LUA_NOREF;
  lua_rawset(L, -3);
  lua_pop(L, 1);
  return t;
}

void ac__lsched_forget(lsched *ls, lua_State *L, ltask *t) {
  luaL_unref(L, LUA_REGISTRYINDEX, t->ctx_ref);
  t->ctx_ref = LUA_NOREF;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ls->tasks_ref);
  lua_pushthread(t->co);
  lua_xmove(t->co, L, 1);
  lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

ltask *ac__lsched_spawn(lua_State *L, int kind, int nargs) {
  lsched *ls = ac__lsched_get(L);
  ltask *t = new_task(ls, L, kind);
  if (!lua_checkstack(t->co, nargs + 1)) { /* xmove does not grow it */
    ac__lsched_forget(ls, L, t);
    luaL_error(L, "too many arguments");
  }
  /* The spawner's context, inherited.  If luaL_ref runs out of memory the
   * task stays an empty thread that never runs, freed with the state. */
  int parent = *ac__lsched_context(ls);
  if (parent != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, parent);
    t->ctx_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_xmove(L, t->co, nargs + 1);
  t->nargs = nargs;
  ac_sched_post(ls->sched, &t->q);
  return t;
}

/* The ready-queue callback of every task: delivers what its waker
 * attached, resumes it, and when its function has returned hands the
 * outcome on by kind. */
static void resume_queued(ac_task_t *q) {
  ltask *t = q->data;
  lsched *ls = t->ls;
  lua_State *co = t->co;
  if (t->abandoned) {
    ac__lresult_release(ls->cbL, t->wake);
    t->wake = NULL;
    ac__lsched_forget(ls, ls->cbL, t);
    return;
  }
  int nargs = t->nargs;
  t->nargs = 0;
  if (t->wake != NULL) {
    nargs += ac__lresult_push(co, t->wake);
    ac__lresult_release(co, t->wake);
    t->wake = NULL;
  }
  int nres, st = resume(t, ls->cbL, nargs, &nres);
  if (st == LUA_YIELD) return;
  switch (t->kind) {
    case TASK_RUN: /* runtime.run takes the results from co */
      t->finished = 1;
      t->status = st;
      t->nres = st == LUA_OK ? nres : 1;
      break;
    case TASK_LOADER:
      t->done(t, st, nres);
      break;
    default:
      if (st != LUA_OK) {
        lua_xmove(co, ls->cbL, 1);
        ac__lsched_report(ls, ls->cbL, co);
      }
      ac__lsched_forget(ls, ls->cbL, t);
      break;
  }
}

/* ---- loaders ----------------------------------------------------------- */

ltask *ac__lsched_loader(lsched *ls, lua_State *L) {
  if (ls->npool > 0) return ls->pool[--ls->npool];
  /* Made on L, the running coroutine, so an out-of-memory error is raised
   * where the caller can see it (not on another thread's stack). */
  return new_task(ls, L, TASK_LOADER);
}

int ac__lsched_can_wait(lua_State *L) { return ac__lsched_task_of(ac__lsched_get(L), L) != NULL; }

void ac__lsched_release_loader(lsched *ls, ltask *t, int status) {
  t->done = NULL;
  t->done_ud = NULL;
  /* A pooled thread serves unrelated loads next: no context carries over. */
  luaL_unref(ls->cbL, LUA_REGISTRYINDEX, t->ctx_ref);
  t->ctx_ref = LUA_NOREF;
  if (status == LUA_OK && ls->npool < LSCHED_POOL_MAX) {
    lua_settop(t->co, 0);
    ls->pool[ls->npool++] = t;
  } else {
    ac__lsched_forget(ls, ls->cbL, t);
  }
}

int ac__lsched_start_loader(lsched *ls, lua_State *L, ltask *t, int nargs,
                        int *nres) {
  (void)ls; /* t->ls */
  return resume(t, L, nargs, nres);
}

/* ---- the pass ---------------------------------------------------------- */

static int drain(lua_State *L) {
  lsched *ls = lua_touserdata(L, 1);
  ls->in_pass = 1;
  ac_sched_run_ready(ls->sched);
  ls->in_pass = 0;
  return 0;
}

void ac__lsched_pass(ac_sched_t *s, void *ud) {
  lsched *ls = ud;
  (void)s;
  lua_State *L = ls->cbL;
  lua_pushcfunction(L, drain);
  lua_pushlightuserdata(L, ls);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    ls->in_pass = 0;
    ac__lsched_report(ls, L, NULL);
  }
}

/* ---- parking and waking ------------------------------------------------ */

ltask *ac__lsched_task_of(lsched *ls, lua_State *L) {
  if (!lua_isyieldable(L)) return NULL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ls->tasks_ref);
  lua_pushthread(L);
  lua_rawget(L, -2);
  ltask *t = lua_touserdata(L, -1);
  lua_pop(L, 2);
  return (t != NULL && t->co == L) ? t : NULL;
}

ltask *ac__lsched_check_task(lua_State *L, const char *what) {
  ltask *t = ac__lsched_task_of(ac__lsched_get(L), L);
  if (t == NULL)
    luaL_error(L,
               "%s must wait, which needs a coroutine run by the cache "
               "runtime: call it inside runtime.run(fn) or runtime.spawn(fn), "
               "or run the script with acache",
               what);
  return t;
}

ltask *ac__lsched_park(lua_State *L, const char *what) {
  ltask *t = ac__lsched_check_task(L, what);
  t->parked = 1;
  return t;
}

static int resumed(lua_State *L, int status, lua_KContext base) {
  (void)status;
  return lua_gettop(L) - (int)base;
}

int ac__lsched_yield(lua_State *L) {
  return lua_yieldk(L, 0, (lua_KContext)lua_gettop(L), resumed);
}

void ac__lsched_wake(ltask *t, lresult *res) {
  t->wake = res;
  t->waiting = NULL;
  ac_sched_post(t->ls->sched, &t->q);
}

ltask *ac__lsched_current(lsched *ls) { return ls->current; }

int *ac__lsched_context(lsched *ls) {
  return ls->current != NULL ? &ls->current->ctx_ref : &ls->ctx_ref;
}
