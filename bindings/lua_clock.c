/* The fake clock of a Lua state (runtime.fake_clock()), for tests.
 *
 * A clock is a full userdata "ac.clock" standing for the scheduler's fake
 * clock (ac_sched_set_fake_clock) while it is on; there is at most one on
 * per state.  clock:close() (also __close and __gc, so a clock dropped
 * without closing does not leave the state on fake time) turns it off.
 *
 * clock:advance(s) runs in a task and moves time the way the real clock
 * would while the task slept: the tasks already ready run first (they may
 * start timers), then time goes to the next deadline on the way (every
 * timer due at that instant fires), the tasks it woke run, and so on
 * until the target; there the timers due at that very instant (a woken
 * task's 0-second timer) fire too.  "Run" means: the advancing task
 * yields without parking, so it is queued behind them, until no other
 * task is ready.  `left` is what it still has to move while it yields. */
#include <math.h>

#include "ltype.h"
#include "lsched.h"

typedef struct {
  lsched *ls;
  int on;        /* this clock is the state's fake clock */
  int advancing; /* a task is inside clock:advance() */
  double left;   /* seconds that advance still has to move */
} lclock;

static lclock *check_clock(lua_State *L, const char *fname) {
  lclock *c = ac__ltype_check_self(L, 1, "ac.clock", fname);
  if (!c->on) luaL_error(L, "clock:%s(): the clock is closed", fname);
  return c;
}

int ac__lclock_fake(lua_State *L) {
  lsched *ls = ac__lsched_get(L);
  ac_sched_t *s = ac__lsched_sched(ls);
  /* By default time goes on from where the real clock is (precise, so
   * runtime.now() never goes back at the switch). */
  double start = luaL_optnumber(L, 1, ac_clock_precise());
  luaL_argcheck(L, isfinite(start), 1, "start must be a finite number");
  if (ac_sched_clock_is_fake(s))
    return luaL_error(L, "runtime.fake_clock(): the fake clock is already on "
                         "(close the clock first)");
  lclock *c = lua_newuserdatauv(L, sizeof *c, 0);
  c->ls = ls;
  c->on = 0;
  c->advancing = 0;
  c->left = 0;
  luaL_setmetatable(L, "ac.clock");
  int rc = ac_sched_set_fake_clock(s, start);
  if (rc != 0) return luaL_error(L, "runtime.fake_clock(): %s", ac_strerror(rc));
  c->on = 1;
  return 1;
}

static int advance_k(lua_State *L, int status, lua_KContext ctx) {
  lclock *c = (lclock *)ctx;
  ac_sched_t *s = ac__lsched_sched(c->ls);
  (void)status;
  while (c->on) {
    if (ac_sched_pending(s) > 0) return lua_yieldk(L, 0, ctx, advance_k);
    double rest;
    int fired = ac_sched_advance_step(s, c->left, &rest);
    c->left = rest;
    if (fired <= 0 && rest == 0) break; /* at the target, nothing due */
  }
  c->advancing = 0;
  return 0;
}

static int clock_advance(lua_State *L) {
  lclock *c = check_clock(L, "advance");
  double secs = lua_tonumber(L, 2);
  if (!lua_isnumber(L, 2) || !(secs >= 0) || isinf(secs))
    return ac__ltype_argerror(L, "advance", 1,
                          "seconds must be a non-negative finite number");
  ac__lsched_check_task(L, "clock:advance()");
  if (c->advancing)
    return luaL_error(L, "clock:advance(): another task is advancing the clock");
  c->advancing = 1;
  c->left = secs;
  return advance_k(L, LUA_OK, (lua_KContext)c);
}

static int clock_now(lua_State *L) {
  lclock *c = check_clock(L, "now");
  lua_pushnumber(L, ac_sched_now(ac__lsched_sched(c->ls)));
  return 1;
}

/* Back to the real clock; fake timers still armed go to libuv's clock
 * with the time they had left.  A task still advancing stops there. */
static int clock_close(lua_State *L) {
  lclock *c = ac__ltype_check_self(L, 1, "ac.clock", "close");
  if (!c->on) return 0;
  c->on = 0;
  /* NULL when the state is closing and its scheduler went first. */
  ac_sched_t *s = ac__lsched_sched(c->ls);
  if (s != NULL) ac_sched_set_real_clock(s); /* no timer callback runs Lua */
  return 0;
}

static int clock_tostring(lua_State *L) {
  lclock *c = ac__ltype_check_self(L, 1, "ac.clock", "__tostring");
  if (c->on)
    lua_pushfstring(L, "fake clock (now %f)", ac_sched_now(ac__lsched_sched(c->ls)));
  else
    lua_pushliteral(L, "fake clock (closed)");
  return 1;
}

void ac__lclock_register(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"advance", clock_advance}, {"now", clock_now}, {"close", clock_close},
      {NULL, NULL}};
  static const luaL_Reg meta[] = {
      {"__close", clock_close}, {"__gc", clock_close},
      {"__tostring", clock_tostring}, {NULL, NULL}};
  ac__ltype_register(L, "ac.clock", "clock", methods, meta);
}
