/* Out of memory at every allocation along the paths of the Lua API.
 *
 * Each case is one operation (a get that hits, a get that loads, a load
 * joined by another task, set, get_many, a batch, a decorated call, an
 * invalidator, warmup).  For n = 1, 2, ... the case builds a fresh Lua
 * state and cache with nothing failing, then makes the n-th allocation
 * from there fail, with the few after it so that Lua's retry after an
 * emergency collection fails too (Lua's allocator and the core's hook count
 * together, as hiredis's allocator-injection tests do), and runs the
 * operation under
 * runtime.run inside a pcall.  Whatever the operation says (a result, or
 * an error the caller sees), afterwards:
 *   - no waiter hangs: runtime.run never reports a task waiting for
 *     something that can never happen;
 *   - the cache is not corrupted: a check chunk, with nothing failing,
 *     hits, loads, loads in the background and finds nothing in flight;
 *   - nothing leaks: once the state is closed, every block allocated
 *     through either allocator has been freed.
 * The sweep ends at the first n the operation completes without reaching
 * (the whole path has been covered). */
#include <lauxlib.h>
#include <lualib.h>
#include <unistd.h>

#include "test_harness.h"
#include "test_alloc.h"

int luaopen_cache_core(lua_State *L);

/* At most this many allocations along one operation. */
#define MAX_STEPS 5000
/* Consecutive allocations that fail from the n-th on. */
#define BURST 4

/* A place for a debugger's breakpoint: SWEEP_ONLY=n runs only step n. */
__attribute__((noinline)) static void *failed_here(void) {
  __asm__ volatile("");
  return NULL;
}

/* Lua's allocator, counting with the core's hook (test_alloc.h).  Lua
 * assumes that shrinking never fails, so only growth may fail. */
static void *lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (nsize == 0) {
    if (ptr != NULL) live_blocks--;
    free(ptr);
    return NULL;
  }
  if ((ptr == NULL || nsize > osize) && should_fail()) return failed_here();
  void *q = realloc(ptr, nsize);
  if (q != NULL && ptr == NULL) live_blocks++;
  return q;
}

static const char *const PRELUDE =
    "package.path = '" AC_LUA_SRC_DIR "/?.lua;' .. package.path\n"
    "cache = require 'cache'\n"
    "runtime = require 'cache.runtime'\n"
    "c = cache.AsyncCache{ maxsize = 100, load_timeout = math.huge,\n"
    "  batch_loader = function(keys)\n"
    "    local r = {}\n"
    "    for _, k in ipairs(keys) do r[k] = k .. '!' end\n"
    "    return r\n"
    "  end }\n"
    "c:set('hot', 'v')\n"
    "double = cache.AsyncLRU{ load_timeout = math.huge }(function(a) return a * 2 end)\n"
    "double(21)\n"
    "update = cache.AsyncLRUInvalidator(double)(function(a) return a end)\n";

/* With nothing failing: the cache and the decorated function still work. */
static const char *const CHECK =
    "assert(c:get('hot') == 'v', 'the hot key is lost')\n"
    "assert(c:get('check1', function() return 1 end) == 1)\n"
    "runtime.run(function()\n"
    "  assert(c:get('check2', function() runtime.sleep(0); return 2 end) == 2)\n"
    "  assert(c:get('check3') == 'check3!')\n"
    "  assert(double(5) == 10)\n"
    "end)\n"
    "local m = c:get_metrics()\n"
    "assert(m.in_flight == 0, 'a load is still in flight: ' .. m.in_flight)\n"
    "assert(double:get_metrics().in_flight == 0)\n";

static lua_State *new_state(void) {
  lua_State *L = lua_newstate(lua_alloc, NULL);
  ASSERT_NOT_NULL(L);
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_cache_core);
  lua_setfield(L, -2, "cache.core");
  lua_pop(L, 1);
  return L;
}

static long current_n; /* the allocation failing in this run */

static void run_chunk(lua_State *L, const char *code, const char *what) {
  if (luaL_dostring(L, code) != LUA_OK) {
    fprintf(stderr, "allocation %ld: %s failed: %s\n", current_n, what, lua_tostring(L, -1));
    ASSERT_TRUE(0);
  }
}

/* Sweeps the failing allocation along `op`, a chunk whose body runs under
 * runtime.run, after `setup` (may be NULL) has run with nothing failing;
 * `check` (may be NULL) runs after CHECK. */
static void sweep_with(const char *setup, const char *op, const char *check) {
  install_counting_allocator();
  char wrapped[4096];
  snprintf(wrapped, sizeof wrapped,
           "local ok, err = pcall(runtime.run, function() %s end)\n"
           "if not ok and tostring(err):find('can never happen', 1, true) then\n"
           "  error('a waiter hangs: ' .. tostring(err), 0)\n"
           "end\n",
           op);
  long n;
  const char *only = getenv("SWEEP_ONLY");
  for (n = only ? atol(only) : 1; n <= MAX_STEPS; n++) {
    current_n = n;
    lua_State *L = new_state();
    run_chunk(L, PRELUDE, "the prelude");
    if (setup != NULL) run_chunk(L, setup, "the setup");
    fail_burst(n, BURST);
    int st = luaL_dostring(L, wrapped);
    long reached = alloc_calls;
    disarm_failure();
    if (getenv("SWEEP_VERBOSE") != NULL)
      fprintf(stderr, "allocation %ld: %s\n", n,
              st == LUA_OK ? "ok" : lua_tostring(L, -1));
    if (st != LUA_OK) {
      const char *msg = lua_tostring(L, -1);
      /* Out of memory outside the pcall (loading the chunk): fine, but a
       * hung waiter is not. */
      if (msg != NULL && strstr(msg, "a waiter hangs") != NULL) {
        fprintf(stderr, "allocation %ld: %s\n", n, msg);
        ASSERT_TRUE(0);
      }
      lua_pop(L, 1);
    }
    lua_gc(L, LUA_GCCOLLECT);
    run_chunk(L, CHECK, "the check after a failed allocation");
    if (check != NULL) run_chunk(L, check, "the case's check after a failed allocation");
    lua_close(L);
    if (live_blocks != 0) {
      fprintf(stderr, "allocation %ld: %ld blocks leaked\n", n, live_blocks);
      ASSERT_EQ_INT(live_blocks, 0);
    }
    live_blocks = 0;
    if (reached < n) break; /* the operation never got to allocation n */
  }
  ASSERT_TRUE(n <= MAX_STEPS);
  restore_allocator();
  printf("swept %ld allocations\n", n - 1);
}

static void sweep(const char *op) { sweep_with(NULL, op, NULL); }

TEST(get_hit) { sweep("assert(c:get('hot') == 'v')"); }

TEST(get_miss_inline) { sweep("return c:get('k', function(k) return k .. '?' end)"); }

/* The spawned task joins the load the running one leads.  (Not
 * runtime.gather: a Lua helper whose own tasks can fail to start, leaving
 * it waiting; the sweep covers the cache's paths.) */
TEST(get_miss_joined) {
  sweep("local l = function(k) runtime.sleep(0); return { k } end\n"
        "runtime.spawn(function() c:get('j', l) end)\n"
        "return c:get('j', l)");
}

TEST(get_loader_fails) {
  sweep("return c:get('e', function() runtime.sleep(0); error('boom') end)");
}

TEST(set) { sweep("c:set('s', { 1, 2, 3 }, { ttl = 60 }); c:set('hot', 'v')"); }

TEST(get_many) { sweep("return c:get_many{ 'a', 'b', 'hot' }"); }

TEST(batch) {
  sweep("runtime.spawn(function() c:get('y') end)\n"
        "return c:get('x')");
}

TEST(decorated_call) { sweep("return double(1), double(21), double(1)"); }

TEST(decorated_table_argument) { sweep("return double({ x = 1 } and 3)"); }

TEST(invalidator) { sweep("update(21); return double(21)"); }

TEST(warmup) {
  sweep("return c:warmup{ w1 = function() return 1 end,\n"
        "                 w2 = function() runtime.sleep(0); return 2 end }");
}

TEST(delete_and_clear) { sweep("c:delete('hot'); c:clear(); c:set('hot', 'v')"); }

TEST(codec_round_trip) {
  sweep("local b = assert(cache.codec.encode({ 1, 'x', { y = 2.5, [10] = true } }))\n"
        "return cache.codec.decode(b), cache.codec.encode(print)");
}

/* Save (in a task: slices and the thread pool) and restore.  Each case
 * runs in a process of its own: the pid keeps the file apart. */
TEST(save_and_restore) {
  char op[1024];
  snprintf(op, sizeof op,
           "local p = '/tmp/ac_sweep_%ld.acs'\n"
           "local ok, err = pcall(function()\n"
           "  local d = cache.AsyncCache{ backup = cache.DiskBackend(p) }\n"
           "  d:set('a', { 1, 2 }); d:set(7, 'seven')\n"
           "  assert(d:save_to_backup())\n"
           "  local e = cache.AsyncCache{ backup = cache.DiskBackend(p) }\n"
           "  return e:get('a'), e:load_error()\n"
           "end)\n"
           "os.remove(p)\n"
           "if not ok then error(err, 0) end",
           (long)getpid());
  sweep(op);
}

TEST(remote_read_and_write) {
  sweep("local R = cache.RemoteCacheBackend:extend()\n"
        "function R:get(k) return self[k] end\n"
        "function R:set(k, b) self[k] = b end\n"
        "function R:delete(k) self[k] = nil end\n"
        "local r = R()\n"
        "local a = cache.AsyncCache{ remote_cache = r }\n"
        "a:set('k', { 1 })\n"
        "runtime.sleep(0)\n"
        "local b = cache.AsyncCache{ remote_cache = r }\n"
        "return b:get('k', function() return 2 end), b:get('m', function() return 3 end)");
}

/* A spawned task inherits its spawner's context (core.runtime.context);
 * argument keys as strings, short and long (a boxed key).  Nothing waits
 * for the spawned task: one that could not start must not hang the case. */
TEST(task_context_and_args_key) {
  sweep("local core = require 'cache.core'\n"
        "core.runtime.set_context({ 'parent' })\n"
        "runtime.spawn(function()\n"
        "  assert(core.runtime.context()[1] == 'parent')\n"
        "  core.runtime.set_context('child')\n"
        "end)\n"
        "runtime.sleep(0)\n"
        "core.runtime.set_context(nil)\n"
        "return core.args_key(1, 'x', { a = 1 }), core.args_key(string.rep('x', 300), print)");
}

/* agent_cache over the binding: a session, cached reads (a miss that
 * waits, a hit, a table argument), an invalidation, loop detection
 * stopping a call.  Afterwards no session is current and the tools work. */
TEST(agent_session) {
  sweep_with("agent = require 'agent_cache'\n"
             "get = agent.AgentCache{ resource = 'r', name = 'get', load_timeout = math.huge }(\n"
             "  function(x) runtime.sleep(0); return x end)\n"
             "put = agent.AgentCacheInvalidator{ resource = 'r', name = 'put' }(function(x) return x end)\n",
             "local s <close> = agent.AgentCacheSession{ max_tool_repeats = 2 }\n"
             "get(1); get(1); put(1); get({ a = 1 })\n"
             "return pcall(get, 1)",
             "assert(agent.current_session() == nil, 'a session is still current')\n"
             "runtime.run(function()\n"
             "  agent.AgentCacheSession{}:run(function(s)\n"
             "    assert(get(5) == 5 and get(5) == 5)\n"
             "    assert(s:get_metrics().hits == 1)\n"
             "  end)\n"
             "end)\n");
}
