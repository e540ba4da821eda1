/* The cache object of cache.core (internal).
 *
 * Shared by lua_cache.c (the "ac.cache" methods) and lua_memo.c (decorated
 * functions, which keep their results in a cache under argument keys). */
#ifndef AC_LCACHE_H
#define AC_LCACHE_H

#include <lua.h>

#include "ac.h"
#include "lsched.h"

typedef struct lload lload;
typedef struct lbatch lbatch;

typedef struct lcache {
  uint32_t magic;
  int closed;
  ac_store_t *store;
  ac_flights_t *flights;
  lsched *ls;
  lua_State *L;        /* state the removal callback may use right now */
  int values_ref;      /* registry: the values table */
  double default_ttl;  /* 0: no expiry */
  double load_timeout; /* +inf: none */
  uint64_t loads, load_errors, load_timeouts;
  ac_timer_t *sweeper;
  lload *loads_open;   /* loads whose flight is still open */
  /* batching (lua_batch.c) */
  int batch_fn_ref;    /* the default batch loader, or LUA_NOREF */
  double batch_window_ms;
  int max_batch_size;
  int batch_result;    /* BATCH_RESULT_*: how to read a loader's result */
  lbatch *batches_open; /* batches still collecting keys */
  lbatch *batches_all;  /* every live batch */
  uint64_t batches, batched_keys;
} lcache;

/* A load in progress: one key's flight plus what finishing it needs.
 * Owned by whoever runs the load (a loader task, or a batch); freed when
 * the load finishes, even after its flight was closed early (timeout,
 * close). */
struct lload {
  lcache *c;
  int mode;      /* LOAD_GET or LOAD_CALL */
  int anchor_ref; /* LOAD_CALL: the arguments, kept alive with the entry */
  ac_flight_t *flight; /* NULL once finished (done, timed out, cancelled) */
  lresult *result;     /* an outcome without values (timeout, close) */
  ac_timer_t *timer;
  double ttl;
  int stale;     /* set()/delete() of the key while loading: do not store */
  int cache_ref; /* anchors the cache while the loader runs in background */
  lload *prev, *next;
  lbatch *batch; /* the batch the key belongs to, or NULL */
  lpending held; /* held by the scheduler while its loader runs on its own */
  ltask *loader; /* the task running the load's function (a batch's loader
                    once dispatched), or NULL */
  /* While the flight closes with values: they are out_n values at out on
   * out_L's stack (waiters copy them); otherwise result holds the outcome. */
  lua_State *out_L;
  int out, out_n;
};

enum { BATCH_RESULT_AUTO = 0, BATCH_RESULT_MAP, BATCH_RESULT_ARRAY };

/* How a load calls its function and hands out the outcome. */
enum {
  LOAD_GET = 1, /* fn(key); callers get v or nil, err (cache:get) */
  LOAD_CALL     /* fn(args...); callers get every result, or the error raised
                   again (decorated functions); results stored packed */
};

typedef struct {
  int mode;
  int tag;
  const char *key;
  size_t len;
  int fn;          /* stack index of the function to call */
  int first, last; /* its arguments: stack indices, first > last for none */
  double ttl;      /* seconds, 0 for none */
  int anchor;      /* LOAD_CALL: keep the arguments alive with the entry */
  int batch_fn;    /* LOAD_GET without fn: stack index of a batch loader */
} lload_spec;

/* The cache at idx (raises unless it is an open cache; fname names the
 * method in the message); sets c->L = L. */
lcache *lcache_check(lua_State *L, int idx, const char *fname);
/* Handles a miss: joins the key's load in progress, or starts one.  The
 * cache must be at stack index 1.  Returns what the calling C function
 * returns (it may yield). */
int lcache_miss(lua_State *L, lcache *c, const lload_spec *spec);
/* Pushes the value in slot. */
void lcache_push_value(lua_State *L, lcache *c, uint32_t slot);
/* Stores the value at the top of the stack (popped) under a key, marking a
 * load of the key in progress stale.  Raises on failure. */
void lcache_store(lua_State *L, lcache *c, int tag, const char *key,
                  size_t len, double ttl);
/* Pushes the results of a LOAD_CALL from their packed table at idx;
 * returns how many. */
int lcache_unpack(lua_State *L, int idx);
/* Packs the n values at the top (popped) into a table, pushed. */
void lcache_pack(lua_State *L, int n);
/* Marks a load in progress for the key, if any, stale: its result will not
 * be stored, and later callers start a new load instead of joining it. */
void lcache_invalidate_load(lcache *c, int tag, const char *key, size_t len);
/* The same for every load in progress (clear). */
void lcache_invalidate_all_loads(lcache *c);

/* Opens a load for a key that has no flight (raises on memory error). */
lload *lload_open(lua_State *L, lcache *c, const lload_spec *spec,
                  ac_flight_t **f);
/* Parks the running task on a flight; the calling C function returns
 * this.  The task resumes with the load's outcome (LOAD_GET: v or nil,
 * err; LOAD_CALL: the results, or the error raised). */
int lload_wait(lua_State *L, ac_flight_t *f, int mode);
/* The same for a task already parked (lsched_park) by the caller. */
int lload_join(lua_State *L, ltask *t, ac_flight_t *f, int mode);
/* Finishes a load with its outcome at v (nout values: v, or nil and err):
 * stores v when `store` and nothing wrote the key meanwhile, hands the
 * outcome to the waiters, closes the flight, frees ld.  Leaves L's stack
 * as it was. */
void lload_settle(lua_State *L, lload *ld, int v, int nout, int failed,
                  int store);
/* Stores the value at the top (popped) in the store; 0 or an AC_E* code. */
int lload_store_value(lua_State *L, lcache *c, int tag, const char *key,
                      size_t len, double ttl);
/* Would task t, joining the load ld, wait for itself?  True when ld's
 * loader is t, or waits (through other loads) for a load t runs. */
int lload_waits_for(const lload *ld, const ltask *t);
/* The message given to a caller refused by lload_waits_for (pushed). */
void lload_push_recursive(lua_State *L, int mode, int tag, const char *key,
                          size_t len);
/* The waiter callback of tasks parked on a flight. */
void lload_on_waiter(ac_waiter_t *w, ac_flight_t *f, int status);
/* Batching (lua_batch.c): adds a missing key to the open batch of the
 * loader at spec->batch_fn and parks the caller on its flight. */
int lbatch_add(lua_State *L, lcache *c, const lload_spec *spec);
/* Adds a missing key (no flight yet) to the open batch of the loader at
 * spec->batch_fn; returns its new flight, for the caller to join. */
ac_flight_t *lbatch_enqueue(lua_State *L, lcache *c, const lload_spec *spec);
/* Dispatches nothing more and releases the cache's open batches (close). */
void lbatch_close_all(lua_State *L, lcache *c);

/* Closes the flight of a load: waiters get its result, or an error made
 * from status (AC_ETIMEDOUT, AC_ECANCELED) when there is none. */
void lload_close_flight(lload *ld, int status);

/* Registers the "ac.cache" metatable and pushes the constructor
 * new_cache(maxsize, default_ttl, load_timeout). */
void lcache_open(lua_State *L);
/* Registers "ac.memo" and pushes memoize(cache, fn, skip_args). */
void lmemo_open(lua_State *L);

#endif
