/* Events (runtime.event()): a one-shot signal carrying values.
 *
 * An event is a full userdata "ac.event": a FIFO of the tasks parked in
 * ev:wait(), linked through their own ltask.wait_next (a task waits on at
 * most one thing at a time), and, once set, the values as an lresult.
 * ev:set(...) takes one reference per waiter plus one the event keeps for
 * later wait()s, which return at once; the event's reference goes with
 * the event (__gc).  An event is never collected while a task waits on
 * it: the suspended frame of ev:wait() keeps it on that task's stack. */
#include <string.h>

#include "lsched.h"
#include "ltype.h"

typedef struct {
  ltask *first, *last; /* waiting tasks, linked through wait_next */
  lresult *res;        /* set: the values, one reference held by the event */
} levent;

static levent *check_event(lua_State *L) {
  return luaL_checkudata(L, 1, "ac.event");
}

int ac__levent_new(lua_State *L) {
  levent *e = lua_newuserdatauv(L, sizeof *e, 0);
  memset(e, 0, sizeof *e);
  luaL_setmetatable(L, "ac.event");
  return 1;
}

static int event_wait(lua_State *L) {
  levent *e = check_event(L);
  if (e->res != NULL) return ac__lresult_push(L, e->res);
  ltask *t = ac__lsched_park(L, "event:wait()");
  t->wait_next = NULL;
  if (e->last) e->last->wait_next = t; else e->first = t;
  e->last = t;
  return ac__lsched_yield(L);
}

static int event_set(lua_State *L) {
  levent *e = check_event(L);
  if (e->res != NULL) return luaL_error(L, "event:set(): the event is already set");
  int waiters = 0;
  for (ltask *t = e->first; t != NULL; t = t->wait_next) waiters++;
  /* One reference per waiter plus the event's own, for later wait()s. */
  e->res = ac__lresult_from_stack(L, lua_gettop(L) - 1, waiters + 1);
  ltask *t = e->first;
  e->first = e->last = NULL;
  while (t != NULL) {
    ltask *next = t->wait_next;
    t->wait_next = NULL;
    ac__lsched_wake(t, e->res);
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
  ac__lresult_release(L, e->res);
  e->res = NULL;
  return 0;
}

void ac__levent_register(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"wait", event_wait}, {"set", event_set}, {"is_set", event_is_set},
      {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", event_gc}, {NULL, NULL}};
  ac__ltype_register(L, "ac.event", "event", methods, meta);
}
