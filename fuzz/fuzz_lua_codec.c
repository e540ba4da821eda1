/* Fuzz target: MessagePack bytes to Lua values and back, through the Lua
 * decoder and encoder of bindings/lua_codec.c (ac__lcodec_decode,
 * ac__lcodec_encode), in a real lua_State.
 *
 * What must hold for any bytes:
 *   - the decoder leaves exactly one value on the stack: the value, or a
 *     message "MessagePack: <why>";
 *   - it agrees with the C reader (ac_codec_read): it fails with the
 *     reader's reason, or, when the reader accepts the bytes, only because
 *     a map key is one Lua cannot hold (nil, NaN);
 *   - a value that decoded encodes again, and the bytes it gives decode to
 *     the same value.  "The same" is Lua's data, compared deeply: types
 *     (integer and float apart), floats bit for bit, strings bytewise,
 *     tables by contents.  Bytes and Lua values are not one to one, so the
 *     input bytes themselves do not come back: an integral float key is
 *     already an integer key after the first decode (Lua stores t[1.0] as
 *     t[1]), a uint64 above INT64_MAX a float, a float 32 a float 64, a
 *     bin holding UTF-8 a str, an array with nil holes a map, duplicate
 *     map keys one key.  Encoding the value decoded the second time gives
 *     as many bytes as the first encoding (the order of map pairs may
 *     differ: it is lua_next's);
 *   - out of memory, Lua's (the n-th growing allocation fails) or the
 *     writer's (the n-th allocation through the core's hook fails), the
 *     decoder and the encoder fail with AC_ENOMEM and leave the stack
 *     balanced, or the decoder gives the same verdict as before.
 *
 * Each decode runs on a new Lua thread, whose stack is Lua's initial one,
 * in a block that ends against an inaccessible page (see the allocator
 * below): a push past what lua_checkstack reserved writes past that block
 * and faults at once, although liblua5.4 is not instrumented and ASan does
 * not see its writes. */
#include <lua.h>
#include <math.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ac_alloc.h"
#include "ac_codec.h"
#include "ac_error.h"
#include "fuzz.h"
#include "lcodec.h"

/* LeakSanitizer does not look into mapped memory: the fenced blocks are
 * registered as roots, or what only they point to (the strings of Lua's
 * string table, the values on a stack) would be reported as leaked. */
#if defined(__SANITIZE_ADDRESS__)
#define FUZZ_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FUZZ_LSAN 1
#endif
#endif
#ifdef FUZZ_LSAN
#include <sanitizer/lsan_interface.h>
#define ROOT(p, n) __lsan_register_root_region((p), (n))
#define UNROOT(p, n) __lsan_unregister_root_region((p), (n))
#else
#define ROOT(p, n) ((void)(p), (void)(n))
#define UNROOT(p, n) ((void)(p), (void)(n))
#endif

/* ---- Lua's memory ------------------------------------------------------------
 * Blocks below FENCE_MIN bytes come from malloc (ASan guards them when
 * instrumented); bigger ones, the Lua stack among them (45 slots of 16
 * bytes at least), are mapped so that their end, rounded up to 16 bytes,
 * touches a PROT_NONE page.  Growing allocations are counted, and from
 * fail_from on they fail (0: none does). */

#define FENCE_MIN 512

typedef struct {
  long grows;
  long fail_from;
} budget;

static budget lua_mem, core_mem;
static size_t page;

static int refused(budget *b) {
  b->grows++;
  return b->fail_from != 0 && b->grows >= b->fail_from;
}

static size_t rounded(size_t size, size_t to) { return (size + to - 1) / to * to; }

static void *fenced_alloc(size_t size) {
  size_t used = rounded(size, 16), body = rounded(used, page);
  char *base = mmap(NULL, body + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                    -1, 0);
  if (base == MAP_FAILED) return NULL;
  FUZZ_CHECK(mprotect(base + body, page, PROT_NONE) == 0);
  ROOT(base + body - used, used);
  return base + body - used;
}

static void release(void *p, size_t size) {
  if (p == NULL) return;
  if (size < FENCE_MIN) {
    free(p);
    return;
  }
  size_t used = rounded(size, 16), body = rounded(used, page);
  UNROOT(p, used);
  FUZZ_CHECK(munmap((char *)p + used - body, body + page) == 0);
}

static void *lua_alloc(void *ud, void *p, size_t osize, size_t nsize) {
  (void)ud;
  if (p == NULL) osize = 0; /* then osize tells the type being allocated */
  if (nsize == 0) {
    release(p, osize);
    return NULL;
  }
  if (nsize > osize && refused(&lua_mem)) return NULL;
  if (osize < FENCE_MIN && nsize < FENCE_MIN) return realloc(p, nsize);
  void *q = nsize < FENCE_MIN ? malloc(nsize) : fenced_alloc(nsize);
  if (q == NULL) return NULL;
  if (p != NULL) {
    memcpy(q, p, osize < nsize ? osize : nsize);
    release(p, osize);
  }
  return q;
}

/* The core's allocator hook (the writer's buffer), counted the same way. */
static void *core_malloc(size_t n) { return refused(&core_mem) ? NULL : malloc(n); }
static void *core_realloc(void *p, size_t n) { return refused(&core_mem) ? NULL : realloc(p, n); }
static void core_free(void *p) { free(p); }

static lua_State *main_L;

/* At exit, so that a leak check (LeakSanitizer, valgrind) then finds every
 * block of the state given back. */
static void close_state(void) {
  lua_close(main_L);
  main_L = NULL;
}

static lua_State *state(void) {
  if (main_L == NULL) {
    page = (size_t)sysconf(_SC_PAGESIZE);
    FUZZ_CHECK(ac_replace_allocator(core_malloc, core_realloc, core_free) == 0);
    main_L = lua_newstate(lua_alloc, NULL);
    FUZZ_CHECK(main_L != NULL);
    atexit(close_state);
  }
  return main_L;
}

/* ---- deep comparison ----------------------------------------------------------- */

static int same(lua_State *L, int a, int b);

static long pairs_of(lua_State *L, int t) {
  long n = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    n++;
    lua_pop(L, 1);
  }
  return n;
}

/* Does table b hold key k with a value the same as v?  A table key is
 * looked for among b's table keys by contents. */
static int holds(lua_State *L, int b, int k, int v) {
  if (lua_type(L, k) != LUA_TTABLE) {
    lua_pushvalue(L, k);
    lua_rawget(L, b);
    int found = same(L, v, lua_gettop(L));
    lua_pop(L, 1);
    return found;
  }
  lua_pushnil(L);
  while (lua_next(L, b)) {
    int k2 = lua_gettop(L) - 1;
    if (lua_type(L, k2) == LUA_TTABLE && same(L, k, k2) && same(L, v, k2 + 1)) {
      lua_pop(L, 2);
      return 1;
    }
    lua_pop(L, 1);
  }
  return 0;
}

static int same_table(lua_State *L, int a, int b) {
  FUZZ_CHECK(lua_checkstack(L, 8)); /* per level: two pairs and a lookup */
  if (pairs_of(L, a) != pairs_of(L, b)) return 0;
  lua_pushnil(L);
  while (lua_next(L, a)) {
    int k = lua_gettop(L) - 1;
    if (!holds(L, b, k, k + 1)) {
      lua_pop(L, 2);
      return 0;
    }
    lua_pop(L, 1);
  }
  return 1;
}

static int same(lua_State *L, int a, int b) {
  int t = lua_type(L, a);
  if (t != lua_type(L, b)) return 0;
  switch (t) {
    case LUA_TNIL:
      return 1;
    case LUA_TBOOLEAN:
      return lua_toboolean(L, a) == lua_toboolean(L, b);
    case LUA_TNUMBER: {
      if (lua_isinteger(L, a) != lua_isinteger(L, b)) return 0;
      if (lua_isinteger(L, a)) return lua_tointeger(L, a) == lua_tointeger(L, b);
      /* Bit for bit: -0.0 is not 0.0, and a NaN keeps its payload. */
      lua_Number x = lua_tonumber(L, a), y = lua_tonumber(L, b);
      return memcmp(&x, &y, sizeof x) == 0;
    }
    case LUA_TSTRING: {
      size_t n, m;
      const char *s = lua_tolstring(L, a, &n), *r = lua_tolstring(L, b, &m);
      return n == m && memcmp(s, r, n) == 0;
    }
    case LUA_TTABLE:
      return same_table(L, a, b);
    default: /* the decoder makes nothing else */
      FUZZ_CHECK(0);
      return 0;
  }
}

/* ---- the checks ------------------------------------------------------------------ */

static const char PREFIX[] = "MessagePack: ";

static int is_key_refusal(const char *msg) { return strstr(msg, "a map key is") != NULL; }

/* The value decoded is at T[1]: encode it, decode that, compare. */
static void check_roundtrip(lua_State *T, uint64_t h) {
  ac_codec_writer_t w, w2;
  ac_codec_writer_init(&w);
  ac_codec_writer_init(&w2);
  const char *why = NULL;
  core_mem.grows = 0;
  int rc = ac__lcodec_encode(T, 1, &w, &why);
  long grows = core_mem.grows;
  FUZZ_CHECK(lua_gettop(T) == 1);
  if (rc != 0) fprintf(stderr, "encode: %s\n", why);
  FUZZ_CHECK(rc == 0 && why == NULL);

  FUZZ_CHECK(ac__lcodec_decode(T, w.data, w.len) == 0);
  FUZZ_CHECK(lua_gettop(T) == 2);
  FUZZ_CHECK(same(T, 1, 2));

  FUZZ_CHECK(ac__lcodec_encode(T, 2, &w2, &why) == 0);
  FUZZ_CHECK(w2.len == w.len);

  /* The writer out of memory at one of its allocations. */
  if (grows > 0) {
    ac_codec_writer_free(&w2);
    core_mem.grows = 0;
    core_mem.fail_from = 1 + (long)(h % (uint64_t)grows);
    rc = ac__lcodec_encode(T, 1, &w2, &why);
    core_mem.fail_from = 0;
    FUZZ_CHECK(rc == AC_ENOMEM && strcmp(why, "out of memory") == 0);
    FUZZ_CHECK(lua_gettop(T) == 2);
  }
  ac_codec_writer_free(&w);
  ac_codec_writer_free(&w2);
}

/* The decode again on a new thread, Lua's n-th growing allocation failing. */
static void check_decode_out_of_memory(lua_State *L, const char *bytes, size_t size,
                                       long grows, int verdict, uint64_t h) {
  lua_State *T = lua_newthread(L);
  lua_mem.grows = 0;
  lua_mem.fail_from = 1 + (long)(h % (uint64_t)grows);
  int rc = ac__lcodec_decode(T, bytes, size);
  lua_mem.fail_from = 0;
  FUZZ_CHECK(lua_gettop(T) == 1);
  FUZZ_CHECK(rc == verdict || rc == AC_ENOMEM);
  if (rc != 0) FUZZ_CHECK(lua_type(T, 1) == LUA_TSTRING);
  lua_pop(L, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = state();
  const char *bytes = (const char *)data;
  uint64_t h = fuzz_hash(data, size);

  /* The C reader's verdict, with a sink that builds nothing. */
  static const ac_codec_sink_t nothing;
  const char *why = NULL;
  int c_rc = ac_codec_read(bytes, size, &nothing, NULL, &why);

  lua_State *T = lua_newthread(L); /* a fresh, smallest stack */
  lua_mem.grows = 0;
  int rc = ac__lcodec_decode(T, bytes, size);
  long grows = lua_mem.grows;
  FUZZ_CHECK(lua_gettop(T) == 1);
  if (rc != 0) {
    FUZZ_CHECK(rc == AC_EFORMAT); /* never out of memory with this much */
    const char *msg = lua_tostring(T, 1);
    FUZZ_CHECK(msg != NULL && strncmp(msg, PREFIX, sizeof PREFIX - 1) == 0);
    /* A key Lua cannot hold may be met before what the reader refuses. */
    if (!is_key_refusal(msg)) {
      FUZZ_CHECK(c_rc != 0);
      FUZZ_CHECK(strcmp(msg + sizeof PREFIX - 1, why) == 0);
    }
  } else {
    FUZZ_CHECK(c_rc == 0);
    check_roundtrip(T, h);
  }
  lua_pop(L, 1);

  if (grows > 0) check_decode_out_of_memory(L, bytes, size, grows, rc, h);

  FUZZ_CHECK(lua_gettop(L) == 0);
  lua_gc(L, LUA_GCCOLLECT, 0); /* the threads and their values */
  return 0;
}
