/* Snapshots of a cache's entries (backup =): saving in slices, writing on
 * libuv's thread pool, and restoring at creation.  The Lua side
 * (lua/cache/backup.lua) decides when; this file does the work.
 *
 *   core.snapshot_begin(cache) -> job   the entries to save, ranked
 *   job:step(seconds) -> done           encodes entries for at most that long
 *   job:write(path)                     writes the file: waits in a task (the
 *                                       thread pool writes), blocks outside one
 *   job:result() -> saved, skipped | nil, err
 *   core.snapshot_load(cache, path) -> loaded, expired | nil, err, kind
 *   core.cache_entries(cache) -> { { key =, value =, expires_at = }, ... }
 *   core.wall_time() -> seconds since the epoch (the clock of expires_at)
 *   core.every(seconds, fn) -> timer   runs fn in a new task every `seconds`
 *                                       (autosave); keeps no loop alive;
 *                                       timer:stop()
 *
 * A job takes the order of the entries when it begins (least recently used
 * first, so that restoring them in file order gives back their recency),
 * then encodes a slice of them per step: other tasks run between steps.
 * While a job lives the cache refuses to renumber its entries (the store's
 * shrink asks first, see on_moved in lua_cache.c), so a slot in the order
 * still names the entry it named, or a free slot, or an entry set since
 * (saved too: it is live).  Entries whose value cannot be encoded
 * (functions, cycles, ...) are skipped and counted as unencodable.
 *
 * Expiry on disk is wall-clock time: the TTL left (the cache's clock) plus
 * the wall clock's now, and back again on restore, so that an entry keeps
 * the time it had left, across restarts. */
#include <lauxlib.h>
#include <math.h>
#include <string.h>

#include "ac_snapshot.h"
#include "alloc.h"
#include "lcache.h"
#include "lcodec.h"
#include "lkey.h"
#include "lsched.h"

#define JOB_MT "ac.snapshot_job"
#define CHECK_EVERY 64 /* entries encoded between two looks at the clock */

/* The part of a write that outlives its job if the job is collected
 * first: the thread pool's callback always finds it. */
typedef struct write_ctx write_ctx;

typedef struct {
  lcache *c;
  int cache_ref;   /* anchors the cache while the job lives */
  ac_snapshot_t *snap;
  uint32_t *order; /* slots, least recently used first */
  size_t n, next;
  size_t skipped;
  size_t saved;    /* entries in the snapshot, once the last step is done */
  int pinned;      /* holds c->pinned */
  ac_codec_writer_t w;
  write_ctx *writing; /* an asynchronous write in progress */
  ltask *waiter;
  int written;     /* 0: not yet, 1: done (status, msg) */
  int status;
  char msg[512];
} ljob;

struct write_ctx {
  ljob *job; /* NULL once the job was collected */
  ac_snapshot_t *snap;
};

static void unpin(ljob *j) {
  if (j->pinned) {
    j->pinned = 0;
    j->c->pinned--;
  }
}

static void job_release(lua_State *L, ljob *j) {
  unpin(j);
  ac__free(j->order);
  j->order = NULL;
  ac_codec_writer_free(&j->w);
  if (j->writing != NULL) {
    j->writing->job = NULL; /* the write frees the snapshot when it ends */
    j->writing = NULL;
  } else {
    ac_snapshot_free(j->snap);
  }
  j->snap = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, j->cache_ref);
  j->cache_ref = LUA_NOREF;
}

static int job_gc(lua_State *L) {
  job_release(L, luaL_checkudata(L, 1, JOB_MT));
  return 0;
}

static ljob *check_job(lua_State *L) { return luaL_checkudata(L, 1, JOB_MT); }

/* Fills order[0..size) with the live slots, least recently used first
 * (the policy ranks from most valued down: filled from the end); returns
 * the index of the first one (0 unless the walk found fewer than size). */
static size_t rank_entries(lcache *c, uint32_t *order, size_t size) {
  size_t n = size;
  for (uint32_t s = ac_cache_next_ranked(c->cache, 0); s != 0 && n > 0;
       s = ac_cache_next_ranked(c->cache, s))
    order[--n] = s;
  return n;
}

static int snapshot_begin(lua_State *L) {
  lcache *c = ac__lcache_check(L, 1, "save_to_backup");
  ljob *j = lua_newuserdatauv(L, sizeof *j, 0);
  memset(j, 0, sizeof *j);
  j->cache_ref = LUA_NOREF;
  ac_codec_writer_init(&j->w);
  luaL_setmetatable(L, JOB_MT);
  j->c = c;
  lua_pushvalue(L, 1);
  j->cache_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  ac_cache_stats_t st;
  ac_cache_stats(c->cache, &st);
  j->snap = ac_snapshot_new();
  j->order = ac__malloc(((size_t)st.size + 1) * sizeof *j->order);
  if (j->snap == NULL || j->order == NULL) return luaL_error(L, "save_to_backup(): out of memory");
  j->next = rank_entries(c, j->order, st.size);
  j->n = st.size;
  j->pinned = 1;
  c->pinned++;
  return 1;
}

/* Encodes the entry in slot into the snapshot; 1 when it was skipped. */
static int save_entry(lua_State *L, ljob *j, uint32_t slot, double now) {
  lcache *c = j->c;
  int tag;
  size_t len;
  const char *key = ac_cache_key(c->cache, slot, &tag, &len);
  if (key == NULL) return 0; /* gone since the job began */
  double left = ac_cache_ttl_left(c->cache, slot);
  if (left <= 0) return 0; /* expired: not saved, not skipped */
  ac__lcache_push_value(L, c, slot);
  ac_codec_writer_reset(&j->w);
  const char *why;
  int rc = ac__lcodec_encode(L, -1, &j->w, &why);
  lua_pop(L, 1);
  if (rc == AC_ENOMEM) luaL_error(L, "save_to_backup(): out of memory");
  if (rc != 0) return 1;
  ac_snapshot_entry_t e = {tag, key, len, j->w.data, j->w.len,
                           isinf(left) ? HUGE_VAL : now + left};
  rc = ac_snapshot_add(j->snap, &e);
  if (rc == AC_ENOMEM) luaL_error(L, "save_to_backup(): out of memory");
  return rc != 0; /* a key or value too long for the format */
}

static int job_step(lua_State *L) {
  ljob *j = check_job(L);
  double budget = luaL_optnumber(L, 2, HUGE_VAL);
  if (!(budget > 0)) budget = 0; /* NaN, negative: one check's worth */
  if (j->snap == NULL || j->written || j->writing) return luaL_error(L, "save_to_backup(): the save has ended");
  if (j->c->closed) return luaL_error(L, "save_to_backup(): the cache was closed during the save");
  luaL_checkstack(L, 4, NULL);
  /* The slice is measured with the precise clock: the runtime's coarse
   * one moves in steps of a few milliseconds, and a fake clock does not
   * move at all. */
  double start = ac_clock_precise(), now = ac_clock_wall();
  size_t skipped = 0;
  while (j->next < j->n) {
    skipped += (size_t)save_entry(L, j, j->order[j->next++], now);
    if (j->next % CHECK_EVERY == 0 && ac_clock_precise() - start >= budget) break;
  }
  j->skipped += skipped;
  j->c->unencodable += skipped;
  int done = j->next >= j->n;
  if (done) {
    j->saved = ac_snapshot_count(j->snap);
    unpin(j);
    ac__free(j->order);
    j->order = NULL;
    ac_codec_writer_free(&j->w);
  }
  lua_pushboolean(L, done);
  return 1;
}

static void on_written(void *arg, int status, const char *msg) {
  write_ctx *x = arg;
  ljob *j = x->job;
  ac_snapshot_free(x->snap);
  ac__free(x);
  if (j == NULL) return; /* the job was collected meanwhile */
  j->writing = NULL;
  j->snap = NULL;
  j->written = 1;
  j->status = status;
  snprintf(j->msg, sizeof j->msg, "%s", msg);
  ltask *t = j->waiter;
  j->waiter = NULL;
  if (t != NULL) ac__lsched_wake(t, NULL);
}

static int job_write(lua_State *L) {
  ljob *j = check_job(L);
  const char *path = luaL_checkstring(L, 2);
  if (j->snap == NULL || j->order != NULL || j->written || j->writing)
    return luaL_error(L, "save_to_backup(): write before the last step, or twice");
  if (!ac__lsched_can_wait(L)) { /* outside a task: block */
    j->status = ac_snapshot_write(j->snap, path, j->msg, sizeof j->msg);
    j->written = 1;
    ac_snapshot_free(j->snap);
    j->snap = NULL;
    return 0;
  }
  write_ctx *x = ac__malloc(sizeof *x);
  if (x == NULL) return luaL_error(L, "save_to_backup(): out of memory");
  x->job = j;
  x->snap = j->snap;
  ltask *t = ac__lsched_park(L, "save_to_backup()");
  int rc = ac_snapshot_write_async(j->snap, ac_sched_loop(ac__lsched_sched(j->c->ls)), path,
                                   on_written, x);
  if (rc != 0) {
    ac__free(x);
    t->parked = 0;
    return luaL_error(L, "save_to_backup(): cannot start the write: %s", ac_strerror(rc));
  }
  j->writing = x;
  j->waiter = t;
  return ac__lsched_yield(L);
}

static int job_result(lua_State *L) {
  ljob *j = check_job(L);
  if (!j->written) return luaL_error(L, "save_to_backup(): the file is not written yet");
  if (j->status != 0) {
    luaL_pushfail(L);
    lua_pushstring(L, j->msg);
    return 2;
  }
  lua_pushinteger(L, (lua_Integer)j->saved);
  lua_pushinteger(L, (lua_Integer)j->skipped);
  return 2;
}

/* ---- restoring ------------------------------------------------------------ */

typedef struct {
  lua_State *L;
  lcache *c;
  double now;
  size_t loaded, expired, bad;
  const ac_snapshot_entry_t *e; /* the entry store_protected stores */
} restore;

static int store_protected(lua_State *L) {
  restore *r = lua_touserdata(L, 1);
  const ac_snapshot_entry_t *e = r->e;
  double ttl = isinf(e->expires_at) ? HUGE_VAL : e->expires_at - r->now;
  /* lua_touserdata's value is on the stack: the decoded value goes on top. */
  if (ac__lcodec_decode(L, e->value, e->vlen) != 0 || !ac__lcache_value_ok(L, e->tag, -1)) {
    r->bad++;
    return 0;
  }
  if (r->c->closed) return 0; /* by a finalizer the decoding ran */
  /* Not written back to a remote: the value is the backup's, older than
   * what other instances may have written there since. */
  ac__lcache_store_local(L, r->c, e->tag, e->key, e->klen, ttl);
  r->loaded++;
  return 0;
}

static int restore_entry(void *ud, const ac_snapshot_entry_t *e) {
  restore *r = ud;
  if (e->expires_at <= r->now) {
    r->expired++;
    return 0;
  }
  if (e->tag > LKEY_ARGS) {
    r->bad++;
    return 0;
  }
  if (r->c->closed) return AC_ECLOSED;
  lua_State *L = r->L;
  r->e = e;
  lua_pushcfunction(L, store_protected);
  lua_pushlightuserdata(L, r);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) return AC_ENOMEM; /* the message stays on top */
  return 0;
}

static int snapshot_load(lua_State *L) {
  lcache *c = ac__lcache_check(L, 1, "restore");
  const char *path = luaL_checkstring(L, 2);
  luaL_checkstack(L, 8, NULL);
  restore r = {L, c, ac_clock_wall(), 0, 0, 0, NULL};
  char msg[512];
  int top = lua_gettop(L);
  int rc = ac_snapshot_read(path, restore_entry, &r, msg, sizeof msg);
  if (rc == 0) {
    lua_pushinteger(L, (lua_Integer)r.loaded);
    lua_pushinteger(L, (lua_Integer)r.expired);
    lua_pushinteger(L, (lua_Integer)r.bad);
    return 3;
  }
  const char *kind = rc == AC_ENOENT ? "missing" : rc == AC_EFORMAT ? "corrupt" : "io";
  if (rc == AC_ENOMEM && lua_gettop(L) > top) { /* a store raised: its message */
    lua_pushfstring(L, "%s: %s", path, lua_tostring(L, -1));
  } else if (rc == AC_ECLOSED) {
    lua_pushfstring(L, "%s: the cache was closed while restoring", path);
  } else if (rc == AC_EFORMAT) {
    lua_pushfstring(L, "%s: %s", path, msg);
  } else {
    lua_pushstring(L, msg);
  }
  luaL_pushfail(L);
  lua_insert(L, -2);
  lua_pushstring(L, kind);
  return 3;
}

/* Every live entry as Lua values, least recently used first, for backups
 * written in Lua: { key =, value =, expires_at = wall-clock seconds, or
 * nil for none }. */
static int cache_entries(lua_State *L) {
  lcache *c = ac__lcache_check(L, 1, "save_to_backup");
  ac_cache_stats_t st;
  ac_cache_stats(c->cache, &st);
  uint32_t *order = lua_newuserdatauv(L, ((size_t)st.size + 1) * sizeof *order, 0);
  size_t n = rank_entries(c, order, st.size);
  /* What follows allocates, so a finalizer may run: it could close the
   * cache or delete entries, hence the checks per entry. */
  lua_createtable(L, (int)(st.size - n), 0);
  lua_Integer out = 0;
  double now = ac_clock_wall();
  for (size_t i = n; i < st.size; i++) {
    if (c->closed) break; /* by a finalizer: nothing more to read */
    int tag;
    size_t len;
    const char *key = ac_cache_key(c->cache, order[i], &tag, &len);
    double left = key ? ac_cache_ttl_left(c->cache, order[i]) : 0;
    if (key == NULL || left <= 0) continue;
    /* The key is copied (pushing it may collect, after the copy) and the
     * value taken before anything else allocates. */
    ac__lkey_push(L, tag, key, len);
    ac__lcache_push_value(L, c, order[i]);
    lua_createtable(L, 0, 3);
    lua_rotate(L, -3, 1); /* entry, key, value */
    lua_setfield(L, -3, "value");
    lua_setfield(L, -2, "key");
    if (!isinf(left)) {
      lua_pushnumber(L, now + left);
      lua_setfield(L, -2, "expires_at");
    }
    lua_rawseti(L, -2, ++out);
  }
  return 1;
}

/* restore_set(cache, key, value, ttl): a Lua backup's entry, stored in
 * this level only (not written back to a remote). */
static int restore_set(lua_State *L) {
  lcache *c = ac__lcache_check(L, 1, "restore");
  lkey k;
  ac__lkey_check(L, 2, &k, "restore");
  luaL_checkany(L, 3);
  double ttl = luaL_checknumber(L, 4);
  if (!(ttl > 0)) return 0;
  if (!ac__lcache_value_ok(L, k.tag, 3)) return 0;
  lua_settop(L, 3);
  ac__lcache_store_local(L, c, k.tag, k.p, k.len, ttl);
  return 0;
}

/* forget_all(cache): empties this level only (a restore that failed half
 * way: the remote keeps what other instances wrote). */
static int forget_all(lua_State *L) {
  lcache *c = ac__lcache_check(L, 1, "restore");
  ac_cache_forget_all(c->cache);
  return 0;
}

static int l_wall_time(lua_State *L) {
  lua_pushnumber(L, ac_clock_wall());
  return 1;
}

/* ---- core.every: the autosave timer ----------------------------------------- */

#define EVERY_MT "ac.every"

typedef struct {
  ac_timer_t *timer;
  lsched *ls;
  int fn_ref;
} levery;

static int spawn_protected(lua_State *L) {
  levery *e = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, e->fn_ref);
  ac__lsched_spawn(L, TASK_SPAWN, 0);
  return 0;
}

/* From the loop: no Lua error may escape, so the spawn runs protected. */
static void on_every(ac_timer_t *t, void *data) {
  (void)t;
  levery *e = data;
  lua_State *L = ac__lsched_cbstate(e->ls);
  if (!lua_checkstack(L, 3)) return;
  lua_pushcfunction(L, spawn_protected);
  lua_pushlightuserdata(L, e);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) ac__lsched_report(e->ls, L, NULL);
}

static void every_stop(lua_State *L, levery *e) {
  ac_timer_free(e->timer);
  e->timer = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, e->fn_ref);
  e->fn_ref = LUA_NOREF;
}

static int every_gc(lua_State *L) {
  every_stop(L, luaL_checkudata(L, 1, EVERY_MT));
  return 0;
}

static int l_every(lua_State *L) {
  double secs = luaL_checknumber(L, 1);
  luaL_argcheck(L, secs > 0 && !isinf(secs), 1, "seconds must be a positive number");
  luaL_checktype(L, 2, LUA_TFUNCTION);
  levery *e = lua_newuserdatauv(L, sizeof *e, 0);
  e->timer = NULL;
  e->fn_ref = LUA_NOREF;
  e->ls = ac__lsched_get(L);
  luaL_setmetatable(L, EVERY_MT);
  e->timer = ac_timer_new(ac__lsched_sched(e->ls), on_every, e);
  if (e->timer == NULL) return luaL_error(L, "out of memory");
  lua_pushvalue(L, 2);
  e->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  ac_timer_start(e->timer, secs, secs);
  ac_timer_unref(e->timer); /* an autosave alone keeps no script running */
  return 1;
}

void ac__lbackup_open(lua_State *L) {
  static const luaL_Reg job_methods[] = {{"step", job_step},
                                         {"write", job_write},
                                         {"result", job_result},
                                         {NULL, NULL}};
  if (luaL_newmetatable(L, JOB_MT)) {
    luaL_newlib(L, job_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, job_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, EVERY_MT)) {
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, every_gc);
    lua_setfield(L, -2, "stop");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, every_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_wall_time);
  lua_setfield(L, -2, "wall_time");
  lua_pushcfunction(L, restore_set);
  lua_setfield(L, -2, "restore_set");
  lua_pushcfunction(L, forget_all);
  lua_setfield(L, -2, "forget_all");
  lua_pushcfunction(L, l_every);
  lua_setfield(L, -2, "every");
  lua_pushcfunction(L, snapshot_begin);
  lua_setfield(L, -2, "snapshot_begin");
  lua_pushcfunction(L, snapshot_load);
  lua_setfield(L, -2, "snapshot_load");
  lua_pushcfunction(L, cache_entries);
  lua_setfield(L, -2, "cache_entries");
}
