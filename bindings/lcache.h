/* The cache object of cache.core (internal).
 *
 * An lcache is the Lua face of a core ac_cache_t (runtime/include/
 * ac_cache.h): the core keeps keys, slots, loads, timeouts and batch
 * windows; the binding keeps the values, in a Lua table indexed by slot,
 * and runs loaders as Lua coroutines.  The core's callbacks (an entry
 * removed or renumbered, values to compact) may come from inside a method
 * or from the sweep timer: they use the runtime's own pass thread
 * (ac__lsched_cbstate), which is always alive, never the caller's.  Shared by lua_cache.c (the
 * "ac.cache" methods), lua_load.c (single-flight misses), lua_batch.c
 * (batch loaders), lua_many.c (get_many) and lua_memo.c (decorated
 * functions, which keep their results in a cache under argument keys). */
#ifndef AC_LCACHE_H
#define AC_LCACHE_H

#include <lua.h>

#include "ac.h"
#include "lsched.h"

typedef struct lcache {
  uint32_t magic;
  int closed;
  ac_cache_t *cache;
  lsched *ls;
  int values_ref;      /* registry: the values table, values[slot] */
  uint32_t values_cap; /* its array part holds slots 1..values_cap: storing
                          there never allocates (see ac__lcache_reserve) */
  uint32_t maxsize;
  int batch_fn_ref;    /* the default batch loader, or LUA_NOREF */
  int batch_result;    /* BATCH_RESULT_*: how to read a batch loader's result */
  int pinned;          /* snapshot jobs running: entries keep their slots */
  ac_backend_t *remote; /* the second level's adapter (lremote.h), or NULL */
  ac_codec_writer_t enc; /* ops.encode's buffer */
  int redis_failed;    /* the Redis backend reported a failure last */
  uint64_t unencodable; /* values a snapshot skipped (the core counts the
                           backend's) */
} lcache;

/* The binding's part of a load (ac_load_data of every load of a binding
 * cache).  Freed with the load by ac_load_finish. */
typedef struct lload {
  ac_load_t *load;
  lcache *c;
  int mode;        /* LOAD_GET or LOAD_CALL */
  int anchor_ref;  /* LOAD_CALL: the arguments, kept alive with the entry */
  int on_stack;    /* values below the loader's function on its thread (the
                      cache, anchored there): a finished thread counts
                      them among its results */
  ltask *loader;   /* the task running the load's function, or NULL */
  ltask *deferred; /* with a remote: the loader thread, its function and
                      arguments ready, started only if the remote misses */
  int deferred_nargs;
  lresult *result; /* an outcome without values (timeout, close), shared */
  lpending held;   /* held by the scheduler while its loader runs on its own */
  /* While the load finishes with values: they are out_n values at out on
   * out_L's stack (waiters copy them); otherwise waiters make an error from
   * the status. */
  lua_State *out_L;
  int out, out_n;
} lload;

static inline lload *lload_of(ac_load_t *ld) { return ac_load_data(ld); }

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
  double ttl;      /* seconds; 0: the cache's default, +inf: forever */
  int anchor;      /* LOAD_CALL: keep the arguments alive with the entry */
  int batch_fn;    /* LOAD_GET without fn: stack index of a batch loader */
} lload_spec;

/* The cache at idx (raises unless it is an open cache; fname names the
 * method in the message). */
lcache *ac__lcache_check(lua_State *L, int idx, const char *fname);
/* Handles a miss (after ac_cache_get said AC_JOIN with `joining`, or
 * AC_MISS with NULL): joins the key's load, or starts one.  The cache must
 * be at stack index 1.  Returns what the calling C function returns (it
 * may yield). */
int ac__lcache_miss(lua_State *L, lcache *c, const lload_spec *spec,
                ac_load_t *joining);
/* Pushes the value in slot. */
void ac__lcache_push_value(lua_State *L, lcache *c, uint32_t slot);
/* Makes room in the values table for every slot the next store may hand
 * out, so that putting the value there cannot fail.  ac__lcache_reserve
 * raises when out of memory; ac__lcache_try_reserve returns 0 instead (for
 * places that must not raise). */
void ac__lcache_reserve(lua_State *L, lcache *c);
int ac__lcache_try_reserve(lua_State *L, lcache *c);
/* Rebuilds the values table with its array part holding exactly slots
 * 1..cap, keeping the values of the slots it still holds (the store's
 * compaction shrinks it, ac__lcache_reserve grows it).  Raises when out of
 * memory; a cache closed meanwhile keeps no table. */
void ac__lcache_resize_values(lua_State *L, lcache *c, uint32_t cap);
/* Sets values[slot] to the value at the top of the stack (popped). */
void ac__lcache_put_value(lua_State *L, lcache *c, uint32_t slot);
/* May the value at idx, which came from outside (a remote, a snapshot),
 * be stored under a key of this tag?  Not nil (a loader's nil is never
 * cached either), and for a decorated function's key (LKEY_ARGS) the
 * packed results its calls unpack: a table whose [1] is a count >= 0. */
int ac__lcache_value_ok(lua_State *L, int tag, int idx);
/* Stores the value at the top of the stack (popped) under a key (a write:
 * a load of the key in progress becomes stale).  Raises on failure. */
void ac__lcache_store(lua_State *L, lcache *c, int tag, const char *key,
                  size_t len, double ttl);
/* The same without writing to the backend (a value that came from a
 * backup); returns the slot, or 0 when the policy refused the key. */
int64_t ac__lcache_store_local(lua_State *L, lcache *c, int tag, const char *key,
                               size_t len, double ttl);
/* Pushes the results of a LOAD_CALL from their packed table at idx;
 * returns how many. */
int ac__lcache_unpack(lua_State *L, int idx);
/* Packs the n values at the top (popped) into a table, pushed. */
void ac__lcache_pack(lua_State *L, int n);

/* Opens a load whose only source is the remote (a get without a loader)
 * and asks the remote: the load, to join; NULL when the remote refused the
 * lookup (the load is undone) or the load could not open (*rc, an AC_E*
 * code; else 0).  A miss then gives its waiters nil. */
ac_load_t *ac__lload_remote(lcache *c, int mode, int tag, const char *key, size_t len,
                            double ttl, int *rc);
/* The core's ops.load: the remote has answered a load that asked it
 * first (found: the value is stored and handed out; otherwise start the
 * deferred loader). */
void ac__lload_backend_done(void *ud, ac_load_t *ld, int found);

/* Sets up the binding's part of a load the core opened. */
void ac__lload_init(ac_load_t *ld, lcache *c, int mode);
/* Parks the running task on a load; the calling C function returns
 * this.  The task resumes with the load's outcome (LOAD_GET: v or nil,
 * err; LOAD_CALL: the results, or the error raised). */
int ac__lload_wait(lua_State *L, ac_load_t *ld, int mode);
/* The same for a task already parked (ac__lsched_park) by the caller. */
int ac__lload_join(lua_State *L, ltask *t, ac_load_t *ld, int mode);
/* Finishes a load with its outcome at v (nout values: v, or nil and err):
 * stores v when `store` and the load may still store, hands the outcome
 * to the waiters, finishes the load (which frees it and its lload).
 * Leaves L's stack as it was. */
void ac__lload_settle(lua_State *L, ac_load_t *ld, int v, int nout, int failed,
                  int store);
/* The message of a load that ended with status and no values (timeout,
 * close, no memory), written into buf; timeout is the cache's. */
void ac__lload_status_message(char *buf, size_t size, int status, double timeout);
/* The outcome of a load that ended with status and no values (timeout,
 * close): an error result made once per load, shared; it starts with no
 * reference, each waiter it is handed to takes one. */
lresult *ac__lload_status_result(ac_load_t *ld, int status);
/* Would task t, joining the load ld, wait for itself?  True when ld's
 * loader is t, or waits (through other loads) for a load t runs. */
int ac__lload_waits_for(ac_load_t *ld, const ltask *t);
/* The message given to a caller refused by ac__lload_waits_for (pushed). */
void ac__lload_push_recursive(lua_State *L, int mode, int tag, const char *key,
                          size_t len);

/* Batching (lua_batch.c): adds a missing key to the open batch of the
 * loader at spec->batch_fn and parks the caller on its load. */
int ac__lbatch_add(lua_State *L, lcache *c, const lload_spec *spec);
/* Adds a missing key (no load yet) to the open batch of the loader at
 * spec->batch_fn (the key's Lua value at spec->first); returns its load,
 * for the caller to join.  Raises on memory error. */
ac_load_t *ac__lbatch_enqueue(lua_State *L, lcache *c, const lload_spec *spec);
/* The core's ops.dispatch: runs a due batch's loader. */
void ac__lbatch_dispatch(void *ud, ac_batch_t *b);

/* cache:get(key[, loader | opts]) (lua_cache.c). */
int ac__lcache_get(lua_State *L);
/* cache:warmup(loaders[, opts]) (lua_warmup.c). */
int ac__lcache_warmup(lua_State *L);
/* cache:get_many(keys[, opts]) (lua_many.c). */
int ac__lcache_get_many(lua_State *L);
/* Bytes of the binding's part of a batch (lua_batch.c). */
size_t ac__lbatch_data_size(void);

/* Options of the methods (lua_cache.c): opts.ttl of method `who` (a
 * positive number; math.huge: forever), a callable opts.<name>. */
double ac__lcache_check_ttl(lua_State *L, int idx, const char *who);
void ac__lcache_check_callable(lua_State *L, int idx, const char *who, const char *name);
int ac__lcache_is_callable(lua_State *L, int idx);

/* Registers the "ac.cache" metatable and pushes the constructor
 * new_cache(opts). */
void ac__lcache_open(lua_State *L);
/* Sets snapshot_begin, snapshot_load and cache_entries in the table on top
 * (lua_backup.c). */
void ac__lbackup_open(lua_State *L);
/* Registers "ac.memo" and pushes memoize(cache, fn, skip_args). */
void ac__lmemo_open(lua_State *L);
/* core.args_key(...) (lua_memo.c): the encoded argument list, a string. */
int ac__lmemo_args_key(lua_State *L);

#endif
