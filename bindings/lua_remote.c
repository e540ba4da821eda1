/* Remote backends written in Lua (see lremote.h).
 *
 * Every operation the core asks for becomes a request: a small C struct
 * on the adapter's list of pending requests, and a spawned task that calls
 * the Lua method with lua_pcallk (so the method may yield) and, when it
 * returns, hands the outcome to the core's callback.  Spawning is what
 * makes the callback run later, never inside the core's call.
 *
 * Freeing the adapter (after its cache) ends every pending request with
 * AC_ECANCELED at once and detaches it; its task, when it finishes, finds
 * the request detached and only frees it.  A request whose task never
 * finishes (a method parked for ever) is held by the scheduler and freed
 * when the Lua state closes. */
#include <lauxlib.h>
#include <math.h>
#include <string.h>

#include "alloc.h"
#include "lcodec.h"
#include "lkey.h"
#include "lremote.h"
#include "ltype.h"

enum { OP_GET, OP_SET, OP_DEL, OP_CLEAR };
static const char *const OP_NAMES[] = {"get", "set", "delete", "clear"};

typedef struct lremote lremote;

typedef struct lreq {
  lpending held;   /* first: the scheduler frees a request never finished */
  lremote *r;      /* NULL once detached (the adapter was freed) */
  struct lreq *prev, *next;
  int op;
  ac_backend_get_cb get_cb;
  ac_backend_done_cb done_cb;
  void *arg;
} lreq;

struct lremote {
  ac_backend_t base; /* first: the core's handle */
  lsched *ls;
  int obj_ref;       /* the Lua backend object */
  lreq *pending;
};

/* ---- requests ------------------------------------------------------------ */

static void req_unlink(lreq *q) {
  lremote *r = q->r;
  if (q->prev) q->prev->next = q->next;
  else r->pending = q->next;
  if (q->next) q->next->prev = q->prev;
  q->prev = q->next = NULL;
}

static void req_release(lpending *p) {
  lreq *q = (lreq *)p;
  if (q->r != NULL) req_unlink(q);
  ac__free(q);
}

static void req_end(lreq *q, int status, const char *bytes, size_t len, double ttl) {
  if (q->op == OP_GET) q->get_cb(q->arg, status, bytes, len, ttl);
  else q->done_cb(q->arg, status);
}

/* report_body(r, op, why): why is the error value, or a light userdata
 * pointing to a static sentence. */
static int report_body(lua_State *L) {
  lsched *ls = lua_touserdata(L, 1);
  int op = (int)lua_tointeger(L, 2);
  const char *why = lua_islightuserdata(L, 3) ? (const char *)lua_touserdata(L, 3)
                    : lua_isstring(L, 3)      ? lua_tostring(L, 3)
                                              : luaL_typename(L, 3);
  lua_pushfstring(L, "remote backend %s() failed: %s", OP_NAMES[op], why);
  ac__lsched_report(ls, L, NULL);
  return 0;
}

/* A failed call, to the error hook, named; why is at err_idx, or is the
 * static sentence text.  Never raises (the request must be let go of
 * after it, whatever happens). */
static void report(lua_State *L, lsched *ls, int op, int err_idx, const char *text) {
  if (!lua_checkstack(L, 5)) return;
  lua_pushcfunction(L, report_body);
  lua_pushlightuserdata(L, ls);
  lua_pushinteger(L, op);
  if (text != NULL) lua_pushlightuserdata(L, (void *)text);
  else lua_pushvalue(L, err_idx);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) lua_pop(L, 1);
}

/* The method has returned (status, its results from base + 1) or raised
 * (the error at the top).  Hands the outcome to the core. */
static int finish(lua_State *L, int status, lua_KContext ctx) {
  int base = (int)ctx; /* the request's slot */
  lreq *q = lua_touserdata(L, base);
  lremote *r = q->r;
  ltask *me = ac__lsched_current(ac__lsched_get(L));
  if (me != NULL) me->done_ud = NULL; /* request_done: handled here */
  if (r == NULL) { /* detached: the cache and its adapter are gone */
    ac__lsched_drop(ac__lsched_get(L), &q->held);
    ac__free(q);
    return 0;
  }
  int ok = status == LUA_OK || status == LUA_YIELD;
  int rc = 0, err_idx = 0;
  const char *bytes = NULL, *text = NULL;
  size_t len = 0;
  double ttl = HUGE_VAL;
  if (!ok) {
    err_idx = lua_gettop(L);
    rc = AC_EIO;
  } else if (lua_isnil(L, base + 1) && !lua_isnoneornil(L, base + 2)) { /* nil, err */
    err_idx = base + 2;
    rc = AC_EIO;
  } else if (q->op == OP_GET) {
    int t = lua_type(L, base + 1);
    if (t == LUA_TNIL || t == LUA_TNONE) {
      rc = AC_ENOENT;
    } else if (t != LUA_TSTRING) {
      text = "it must return a string of bytes or nil";
      rc = AC_EIO;
    } else {
      bytes = lua_tolstring(L, base + 1, &len);
      if (lua_type(L, base + 2) == LUA_TNUMBER) ttl = lua_tonumber(L, base + 2);
      if (!(ttl > 0)) rc = AC_ENOENT; /* no time left: expired */
    }
  }
  /* Nothing below raises: the request goes, its callback runs, and only
   * then the failure is reported: the error hook may close the cache,
   * which frees this adapter (r). */
  lsched *ls = r->ls;
  int op = q->op;
  req_unlink(q);
  ac__lsched_drop(ls, &q->held);
  lreq copy = *q;
  ac__free(q);
  req_end(&copy, rc, bytes, len, ttl);
  if (err_idx != 0 || text != NULL) report(L, ls, op, err_idx, text);
  return 0;
}

/* The request's task has ended.  Normally finish() has handled the
 * request; when the task could not even run (no memory to start it), the
 * request still is pending: it ends here as a failed call. */
static void request_done(ltask *t, int status, int nres) {
  (void)nres;
  lreq *q = t->done_ud;
  lsched *ls = t->ls;
  ac__lsched_release_loader(ls, t, status);
  if (q == NULL) return;
  if (q->r == NULL) { /* detached */
    ac__lsched_drop(ls, &q->held);
    ac__free(q);
    return;
  }
  req_unlink(q);
  ac__lsched_drop(ls, &q->held);
  lreq copy = *q;
  ac__free(q);
  req_end(&copy, AC_EIO, NULL, 0, 0);
}

/* The task of one request: (request, method, object, args...). */
static int request_task(lua_State *L) {
  int nargs = lua_gettop(L) - 2;
  return finish(L, lua_pcallk(L, nargs, LUA_MULTRET, 0, 1, finish), 1);
}

typedef struct {
  lreq *q;
  const char *key;
  size_t klen;
  const char *value;
  size_t vlen;
  double ttl;
} spawn_args;

/* Stands for a missing optional method. */
static int nothing(lua_State *L) {
  (void)L;
  return 0;
}

/* Protected: looks the method up (a metamethod may run) and spawns the
 * task.  A missing optional clear() succeeds at once, through a task
 * all the same. */
static int spawn_protected(lua_State *L) {
  spawn_args *a = lua_touserdata(L, 1);
  lreq *q = a->q;
  lremote *r = q->r;
  lua_settop(L, 0);
  lua_pushcfunction(L, request_task);
  lua_pushlightuserdata(L, q);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->obj_ref);
  lua_getfield(L, -1, OP_NAMES[q->op]);
  lua_insert(L, -2); /* method, object */
  if (lua_isnil(L, -2) && q->op == OP_CLEAR) {
    lua_pop(L, 2);
    lua_pushcfunction(L, nothing);
    lua_pushnil(L);
  }
  int n = 2;
  if (q->op == OP_SET) {
    /* The bytes first: they are the cache's encode buffer, which anything
     * allocating (and so a finalizer writing to the cache) may reuse. */
    lua_pushlstring(L, a->value, a->vlen);
  }
  if (q->op != OP_CLEAR) {
    int tag = (unsigned char)a->key[0];
    ac__lkey_push(L, tag, a->key + 1, a->klen - 1);
    n++;
  }
  if (q->op == OP_SET) {
    lua_rotate(L, -2, 1); /* key, bytes */
    if (isinf(a->ttl)) lua_pushnil(L);
    else lua_pushnumber(L, a->ttl);
    n += 2;
  }
  ltask *t = ac__lsched_spawn(L, TASK_LOADER, n + 1);
  t->done = request_done;
  t->done_ud = q;
  return 0;
}

static int submit(lremote *r, int op, spawn_args *a, ac_backend_get_cb gcb,
                  ac_backend_done_cb dcb, void *arg) {
  lreq *q = ac__calloc(1, sizeof *q);
  if (q == NULL) return AC_ENOMEM;
  q->r = r;
  q->op = op;
  q->get_cb = gcb;
  q->done_cb = dcb;
  q->arg = arg;
  a->q = q;
  lua_State *L = ac__lsched_cbstate(r->ls);
  if (!lua_checkstack(L, 3)) {
    ac__free(q);
    return AC_ENOMEM;
  }
  lua_pushcfunction(L, spawn_protected);
  lua_pushlightuserdata(L, a);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    lua_pop(L, 1);
    ac__free(q);
    return AC_ENOMEM;
  }
  q->next = r->pending;
  if (r->pending) r->pending->prev = q;
  r->pending = q;
  ac__lsched_hold(r->ls, &q->held, req_release);
  return 0;
}

/* ---- the backend's table ------------------------------------------------- */

static int r_get(ac_backend_t *b, const char *key, size_t len, ac_backend_get_cb cb,
                 void *arg) {
  spawn_args a = {NULL, key, len, NULL, 0, 0};
  return submit((lremote *)b, OP_GET, &a, cb, NULL, arg);
}

static int r_set(ac_backend_t *b, const char *key, size_t len, const char *value,
                 size_t vlen, double ttl, ac_backend_done_cb cb, void *arg) {
  spawn_args a = {NULL, key, len, value, vlen, ttl};
  return submit((lremote *)b, OP_SET, &a, NULL, cb, arg);
}

static int r_del(ac_backend_t *b, const char *key, size_t len, ac_backend_done_cb cb,
                 void *arg) {
  spawn_args a = {NULL, key, len, NULL, 0, 0};
  return submit((lremote *)b, OP_DEL, &a, NULL, cb, arg);
}

static int r_clear(ac_backend_t *b, ac_backend_done_cb cb, void *arg) {
  spawn_args a = {NULL, NULL, 0, NULL, 0, 0};
  return submit((lremote *)b, OP_CLEAR, &a, NULL, cb, arg);
}

static void r_free(ac_backend_t *b) {
  lremote *r = (lremote *)b;
  while (r->pending != NULL) {
    lreq *q = r->pending;
    req_unlink(q);
    q->r = NULL; /* its task frees it */
    req_end(q, AC_ECANCELED, NULL, 0, 0);
  }
  luaL_unref(ac__lsched_cbstate(r->ls), LUA_REGISTRYINDEX, r->obj_ref);
  ac__free(r);
}

static const ac_backend_vtable_t LUA_REMOTE = {"lua", r_get, r_set, r_del, r_clear, r_free};

ac_backend_t *ac__lremote_new(lua_State *L, int idx, lcache *c) {
  lua_pushvalue(L, idx);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX); /* first: it may raise */
  lremote *r = ac__calloc(1, sizeof *r);
  if (r == NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    luaL_error(L, "not enough memory");
  }
  r->base.vt = &LUA_REMOTE;
  r->ls = c->ls;
  r->obj_ref = ref;
  return &r->base;
}

/* ---- values to bytes and back ------------------------------------------- */

static int op_encode(void *ud, uint32_t slot, const char **bytes, size_t *len) {
  lcache *c = ud;
  lua_State *L = ac__lsched_cbstate(c->ls);
  if (!lua_checkstack(L, 4)) return AC_ENOMEM;
  ac__lcache_push_value(L, c, slot);
  ac_codec_writer_reset(&c->enc);
  const char *why;
  int rc = ac__lcodec_encode(L, -1, &c->enc, &why);
  lua_pop(L, 1);
  if (rc != 0) return rc;
  *bytes = c->enc.data;
  *len = c->enc.len;
  return 0;
}

static int op_decode(void *ud, uint32_t slot, const char *bytes, size_t len) {
  lcache *c = ud;
  lua_State *L = ac__lsched_cbstate(c->ls);
  if (!lua_checkstack(L, 6) || !ac__lcache_try_reserve(L, c)) return AC_ENOMEM;
  int rc = ac__lcodec_decode(L, bytes, len);
  int tag = 0;
  ac_cache_key(c->cache, slot, &tag, NULL);
  if (rc == 0 && !ac__lcache_value_ok(L, tag, -1)) rc = AC_EFORMAT;
  if (rc != 0) {
    lua_pop(L, 1); /* the message, or the value refused */
    return rc;
  }
  ac__lcache_put_value(L, c, slot);
  return 0;
}

void ac__lremote_ops(ac_cache_ops_t *ops) {
  ops->encode = op_encode;
  ops->decode = op_decode;
  ops->load = ac__lload_backend_done;
}
