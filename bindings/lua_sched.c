/* The coroutine bridge (see lsched.h for the model).
 *
 * State per lua_State, in a full userdata under a registry key:
 *   tasks   registry table thread -> task userdata.  It anchors every live
 *           task's thread and its C struct (the userdata); removing the
 *           entry lets both be collected.  Pooled loader threads stay in it.
 *   cbL     a thread of our own on which each pass of the ready queue runs
 *           under one lua_pcall.
 *   sleeps  sleep timers still armed, so teardown can close them.
 * Handles are malloc'd and freed in their close callbacks (libuv rule);
 * nothing a libuv handle points to lives in Lua-collected memory. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsched.h"
#include "ltype.h"

#define POOL_MAX 64

typedef struct lsleep {
  ac_timer_t *timer;
  ltask *task;
  struct lsleep *prev, *next;
} lsleep;

struct lsched {
  ac_sched_t *sched;
  int owns_sched;
  lua_State *cbL;
  int cbL_ref, tasks_ref, hook_ref;
  ltask *current;  /* task being resumed, innermost */
  int in_run;      /* runtime.run is driving the loop */
  int in_pass;     /* a pass of the ready queue is running */
  ltask *pool[POOL_MAX];
  int npool;
  lsleep *sleeps;
  unsigned errors; /* reported without a hook */
  lpending *pending; /* see lsched_hold */
};

static const char LSCHED_KEY = 'S';

/* ---- results --------------------------------------------------------- */

static void release_result(lpending *p) {
  free(p); /* held is the first member */
}

lresult *lresult_new(lsched *ls, int refs) {
  lresult *r = malloc(sizeof *r);
  if (r == NULL) return NULL;
  r->ls = ls;
  r->refs = refs;
  r->nvals = 0;
  r->ref = LUA_NOREF;
  r->cerr[0] = '\0';
  r->held.release = NULL;
  /* A task holding a reference may never run again (the state closes
   * while it waits): the scheduler frees the result then. */
  lsched_hold(ls, &r->held, release_result);
  return r;
}

lresult *lresult_from_stack(lua_State *L, int n, int refs) {
  int base = lua_gettop(L) - n;
  lresult *r = lresult_new(lsched_get(L), refs);
  if (r == NULL) luaL_error(L, "out of memory");
  lua_createtable(L, n, 0);
  for (int i = 1; i <= n; i++) {
    lua_pushvalue(L, base + i);
    lua_rawseti(L, -2, i);
  }
  r->nvals = n;
  r->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, base);
  return r;
}

/* The outcome given when even a result cannot be allocated: shared, never
 * freed, never counted. */
static lresult oom_result = {{NULL, NULL, NULL}, NULL, 1, 0, LUA_NOREF, "not enough memory"};

lresult *lresult_oom(void) { return &oom_result; }

void lresult_release(lua_State *L, lresult *r) {
  if (r == NULL || r == &oom_result || --r->refs > 0) return;
  luaL_unref(L, LUA_REGISTRYINDEX, r->ref);
  lsched_drop(r->ls, &r->held);
  free(r);
}

int lresult_push(lua_State *L, const lresult *r) {
  if (r->ref == LUA_NOREF) {
    if (r->cerr[0] == '\0') return 0;
    lua_pushnil(L);
    lua_pushstring(L, r->cerr);
    return 2;
  }
  /* L may be a suspended coroutine: no error may be raised on it. */
  if (!lua_checkstack(L, r->nvals + 1)) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref);
  for (int i = 1; i <= r->nvals; i++) lua_rawgeti(L, -i, i);
  lua_remove(L, -(r->nvals + 1));
  return r->nvals;
}

/* ---- the state ------------------------------------------------------- */

void lsched_hold(lsched *ls, lpending *p, void (*release)(lpending *p)) {
  if (p->release != NULL) return;
  p->release = release;
  p->prev = NULL;
  p->next = ls->pending;
  if (p->next) p->next->prev = p;
  ls->pending = p;
}

void lsched_drop(lsched *ls, lpending *p) {
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
    lsched_drop(ls, p);
    release(p);
  }
  if (ls->sched == NULL) return 0;
  for (lsleep *s = ls->sleeps, *next; s != NULL; s = next) {
    next = s->next;
    ac_timer_free(s->timer);
    free(s);
  }
  ls->sleeps = NULL;
  if (ls->owns_sched) ac_sched_free(ls->sched);
  ls->sched = NULL;
  return 0;
}

static void pass(ac_sched_t *s, void *ud);

lsched *lsched_install(lua_State *L, ac_sched_t *sched, int owns_sched) {
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
  ac_sched_set_pass(sched, pass, ls);
  return ls;
}

lsched *lsched_get(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &LSCHED_KEY) == LUA_TUSERDATA) {
    lsched *ls = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return ls;
  }
  lua_pop(L, 1);
  int err;
  ac_sched_t *s = ac_sched_new(NULL, &err);
  if (s == NULL) luaL_error(L, "cannot start the event loop: %s", ac_strerror(err));
  return lsched_install(L, s, 1);
}

ac_sched_t *lsched_sched(lsched *ls) { return ls->sched; }
uv_loop_t *lsched_loop(lsched *ls) { return ac_sched_loop(ls->sched); }
lua_State *lsched_cbstate(lsched *ls) { return ls->cbL; }
unsigned lsched_error_count(lsched *ls) { return ls->errors; }
int lsched_in_task(lsched *ls) { return ls->current != NULL; }
ltask *lsched_current(lsched *ls) { return ls->current; }

/* ---- tasks ----------------------------------------------------------- */

static void resume_task(ac_task_t *q);

/* A new thread and its task, anchored in the tasks table. */
static ltask *new_task(lsched *ls, lua_State *L, int kind) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, ls->tasks_ref);
  lua_State *co = lua_newthread(L);
  ltask *t = lua_newuserdatauv(L, sizeof *t, 0);
  memset(t, 0, sizeof *t);
  t->q.fn = resume_task;
  t->q.data = t;
  t->w.data = t;
  t->ls = ls;
  t->co = co;
  t->kind = kind;
  lua_rawset(L, -3);
  lua_pop(L, 1);
  return t;
}

static void forget_task(lsched *ls, lua_State *L, ltask *t) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, ls->tasks_ref);
  lua_pushthread(t->co);
  lua_xmove(t->co, L, 1);
  lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

ltask *lsched_spawn(lua_State *L, int kind, int nargs) {
  lsched *ls = lsched_get(L);
  ltask *t = new_task(ls, L, kind);
  if (!lua_checkstack(t->co, nargs + 1)) { /* xmove does not grow it */
    forget_task(ls, L, t);
    luaL_error(L, "too many arguments");
  }
  lua_xmove(L, t->co, nargs + 1);
  t->nargs = nargs;
  ac_sched_post(ls->sched, &t->q);
  return t;
}

ltask *lsched_loader(lsched *ls, lua_State *L) {
  if (ls->npool > 0) return ls->pool[--ls->npool];
  /* Made on L, the running coroutine, so an out-of-memory error is raised
   * where the caller can see it (not on another thread's stack). */
  return new_task(ls, L, TASK_LOADER);
}

void lsched_release_loader(lsched *ls, ltask *t, int status) {
  t->done = NULL;
  t->done_ud = NULL;
  if (status == LUA_OK && ls->npool < POOL_MAX) {
    lua_settop(t->co, 0);
    ls->pool[ls->npool++] = t;
  } else {
    forget_task(ls, ls->cbL, t);
  }
}

int lsched_start_loader(lsched *ls, lua_State *L, ltask *t, int nargs,
                        int *nres) {
  ltask *outer = ls->current;
  ls->current = t;
  t->parked = 0;
  int st = lua_resume(t->co, L, nargs, nres);
  ls->current = outer;
  if (st == LUA_YIELD) {
    lua_pop(t->co, *nres);
    if (!t->parked) ac_sched_post(ls->sched, &t->q);
  }
  return st;
}

void lsched_report(lsched *ls, lua_State *L, lua_State *co) {
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
  fprintf(stderr, "async-cache: error in a coroutine: %s\n",
          lua_tostring(L, err + 1));
  lua_settop(L, err - 1);
}

/* The one place a queued task is resumed. */
static void resume_task(ac_task_t *q) {
  ltask *t = q->data;
  lsched *ls = t->ls;
  lua_State *co = t->co;
  int nargs = t->nargs;
  t->nargs = 0;
  if (t->wake != NULL) {
    nargs += lresult_push(co, t->wake);
    lresult_release(co, t->wake);
    t->wake = NULL;
  }
  t->parked = 0;
  ltask *outer = ls->current;
  ls->current = t;
  int nres, st = lua_resume(co, ls->cbL, nargs, &nres);
  ls->current = outer;
  if (st == LUA_YIELD) {
    lua_pop(co, nres);
    if (!t->parked) ac_sched_post(ls->sched, &t->q); /* a bare yield */
    return;
  }
  switch (t->kind) {
    case TASK_RUN:
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
        lsched_report(ls, ls->cbL, co);
      }
      forget_task(ls, ls->cbL, t);
      break;
  }
}

static int drain(lua_State *L) {
  lsched *ls = lua_touserdata(L, 1);
  ls->in_pass = 1;
  ac_sched_run_ready(ls->sched);
  ls->in_pass = 0;
  return 0;
}

static void pass(ac_sched_t *s, void *ud) {
  lsched *ls = ud;
  (void)s;
  lua_State *L = ls->cbL;
  lua_pushcfunction(L, drain);
  lua_pushlightuserdata(L, ls);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    ls->in_pass = 0;
    lsched_report(ls, L, NULL);
  }
}

/* ---- parking and waking ---------------------------------------------- */

/* The task running on L, or NULL when L is not a yieldable task. */
static ltask *task_of(lsched *ls, lua_State *L) {
  if (!lua_isyieldable(L)) return NULL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ls->tasks_ref);
  lua_pushthread(L);
  lua_rawget(L, -2);
  ltask *t = lua_touserdata(L, -1);
  lua_pop(L, 2);
  return (t != NULL && t->co == L) ? t : NULL;
}

ltask *lsched_park(lua_State *L, const char *what) {
  ltask *t = task_of(lsched_get(L), L);
  if (t == NULL)
    luaL_error(L,
               "%s must wait, which needs a coroutine run by the cache "
               "runtime: call it inside runtime.run(fn) or runtime.spawn(fn), "
               "or run the script with acache",
               what);
  t->parked = 1;
  return t;
}

static int resumed(lua_State *L, int status, lua_KContext base) {
  (void)status;
  return lua_gettop(L) - (int)base;
}

int lsched_yield(lua_State *L) {
  return lua_yieldk(L, 0, (lua_KContext)lua_gettop(L), resumed);
}

void lsched_wake(ltask *t, lresult *res) {
  t->wake = res;
  t->waiting = NULL;
  ac_sched_post(t->ls->sched, &t->q);
}

/* ---- Lua API: runtime.* ---------------------------------------------- */

static int l_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  int nargs = lua_gettop(L) - 1;
  ltask *t = lsched_spawn(L, TASK_SPAWN, nargs);
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
  lsched *ls = lsched_get(L);
  if (task_of(ls, L) != NULL) {
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
  ltask *t = lsched_spawn(L, TASK_RUN, lua_gettop(L) - 1);
  ls->in_run = 1;
  while (!t->finished) {
    int alive = ac_sched_once(ls->sched);
    if (!t->finished && !alive) {
      ls->in_run = 0;
      /* Where it waits, for the message; then let it go: it can never be
       * resumed. */
      luaL_traceback(L, t->co, LSCHED_NEVER_MSG ("runtime.run: the function"), 0);
      forget_task(ls, L, t);
      return lua_error(L);
    }
  }
  ls->in_run = 0;
  int n = t->nres;
  luaL_checkstack(L, n, "too many results");
  lua_xmove(t->co, L, n);
  int ok = t->status == LUA_OK;
  forget_task(ls, L, t);
  if (!ok) return lua_error(L);
  return n;
}

static void on_sleep(ac_timer_t *timer, void *data) {
  lsleep *s = data;
  lsched *ls = s->task->ls;
  if (s->prev) s->prev->next = s->next; else ls->sleeps = s->next;
  if (s->next) s->next->prev = s->prev;
  lsched_wake(s->task, NULL);
  ac_timer_free(timer);
  free(s);
}

static int l_sleep(lua_State *L) {
  double secs = luaL_checknumber(L, 1);
  luaL_argcheck(L, secs >= 0 && !isnan(secs), 1,
                "seconds must be a non-negative number");
  ltask *t = lsched_park(L, "runtime.sleep()");
  lsched *ls = t->ls;
  if (secs == 0) {
    lsched_wake(t, NULL);
    return lsched_yield(L);
  }
  lsleep *s = malloc(sizeof *s);
  if (s != NULL) s->timer = ac_timer_new(ls->sched, on_sleep, s);
  if (s == NULL || s->timer == NULL) {
    free(s);
    t->parked = 0;
    return luaL_error(L, "out of memory");
  }
  s->task = t;
  s->prev = NULL;
  s->next = ls->sleeps;
  if (ls->sleeps) ls->sleeps->prev = s;
  ls->sleeps = s;
  ac_timer_start(s->timer, secs, 0);
  return lsched_yield(L);
}

/* Could the running coroutine wait here (is it a task, and yieldable)? */
int lsched_can_wait(lua_State *L) { return task_of(lsched_get(L), L) != NULL; }

static int l_can_wait(lua_State *L) {
  lua_pushboolean(L, lsched_can_wait(L));
  return 1;
}

static int l_now(lua_State *L) {
  lua_pushnumber(L, ac_clock_precise());
  return 1;
}

static int l_set_error_hook(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
  lsched *ls = lsched_get(L);
  luaL_unref(L, LUA_REGISTRYINDEX, ls->hook_ref);
  ls->hook_ref = LUA_NOREF;
  if (!lua_isnoneornil(L, 1)) {
    lua_pushvalue(L, 1);
    ls->hook_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  return 0;
}

/* ---- events: a one-shot signal carrying values ----------------------- */

typedef struct {
  ltask *first, *last; /* waiting tasks, linked through w.next_ */
  lresult *res;        /* set: the values, one reference held by the event */
} levent;

static levent *check_event(lua_State *L) {
  return luaL_checkudata(L, 1, "ac.event");
}

static int l_event(lua_State *L) {
  levent *e = lua_newuserdatauv(L, sizeof *e, 0);
  memset(e, 0, sizeof *e);
  luaL_setmetatable(L, "ac.event");
  return 1;
}

static int event_wait(lua_State *L) {
  levent *e = check_event(L);
  if (e->res != NULL) return lresult_push(L, e->res);
  ltask *t = lsched_park(L, "event:wait()");
  t->w.next_ = NULL;
  if (e->last) e->last->w.next_ = &t->w; else e->first = t;
  e->last = t;
  return lsched_yield(L);
}

static ltask *next_waiting(ltask *t) {
  return t->w.next_ != NULL ? t->w.next_->data : NULL;
}

static int event_set(lua_State *L) {
  levent *e = check_event(L);
  if (e->res != NULL) return luaL_error(L, "event:set(): the event is already set");
  int waiters = 0;
  for (ltask *t = e->first; t != NULL; t = next_waiting(t)) waiters++;
  /* One reference per waiter plus the event's own, for later wait()s. */
  e->res = lresult_from_stack(L, lua_gettop(L) - 1, waiters + 1);
  ltask *t = e->first;
  e->first = e->last = NULL;
  while (t != NULL) {
    ltask *next = next_waiting(t);
    lsched_wake(t, e->res);
    t = next;
  }
  return 0;
}

static int event_is_set(lua_State *L) {
  lua_pushboolean(L, check_event(L)->res != NULL);
  return 1;
}

static int event_gc(lua_State *L) {
  levent *e = check_event(L);
  lresult_release(L, e->res);
  e->res = NULL;
  return 0;
}

int luaopen_cache_runtime_core(lua_State *L) {
  static const luaL_Reg event_methods[] = {
      {"wait", event_wait}, {"set", event_set}, {"is_set", event_is_set},
      {NULL, NULL}};
  static const luaL_Reg event_meta[] = {{"__gc", event_gc}, {NULL, NULL}};
  ltype_register(L, "ac.event", "event", event_methods, event_meta);
  static const luaL_Reg funcs[] = {
      {"run", l_run},     {"spawn", l_spawn},
      {"sleep", l_sleep}, {"now", l_now},
      {"event", l_event}, {"set_error_hook", l_set_error_hook},
      {"can_wait", l_can_wait},
      {NULL, NULL}};
  lsched_get(L);
  luaL_newlib(L, funcs);
  return 1;
}
