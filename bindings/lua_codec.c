/* Lua values to MessagePack and back (see lcodec.h), and cache.codec.
 *
 * Encoding is a visitor of the walker that puts each item into an
 * ac_codec_writer_t; it counts its own depth, so that nothing it writes is
 * deeper than the reader accepts.  Decoding is a sink of ac_codec_read
 * that builds the value on the Lua stack: a container is pushed at its
 * header, each element is pushed and then stored into the container below
 * it (the order of the bytes is the order of the stack), and a frame per
 * open container counts the elements still to come. */
#include <lauxlib.h>
#include <math.h>
#include <string.h>

#include "ac_error.h"
#include "lcodec.h"
#include "lwalk.h"

#define TEXT_(x) #x
#define TEXT(x) TEXT_(x)

enum {
  ENC_EDEPTH = LWALK_ECLIENT, /* deeper than AC_CODEC_MAX_DEPTH */
  ENC_ETOOBIG = LWALK_ECLIENT - 1,
  ENC_EWRITE = LWALK_ECLIENT - 2 /* the writer failed: see w->err */
};

/* ---- encoding ------------------------------------------------------------ */

typedef struct {
  ac_codec_writer_t *w;
  int depth;
} encoder;

static int written(encoder *e) { return e->w->err ? ENC_EWRITE : 0; }

static int e_nil(void *ud) {
  encoder *e = ud;
  ac_codec_put_nil(e->w);
  return 0;
}

static int e_boolean(void *ud, int b) {
  encoder *e = ud;
  ac_codec_put_bool(e->w, b);
  return 0;
}

static int e_integer(void *ud, lua_Integer i) {
  encoder *e = ud;
  ac_codec_put_int(e->w, (int64_t)i);
  return 0;
}

static int e_number(void *ud, lua_Number n) {
  encoder *e = ud;
  ac_codec_put_double(e->w, (double)n);
  return 0;
}

static int e_string(void *ud, const char *s, size_t len) {
  encoder *e = ud;
  if (len > UINT32_MAX) return ENC_ETOOBIG;
  ac_codec_put_string(e->w, s, len);
  return written(e); /* a big string: stop at once when out of memory */
}

static int open_container(encoder *e, size_t n) {
  if (++e->depth > AC_CODEC_MAX_DEPTH) return ENC_EDEPTH;
  if (n > UINT32_MAX) return ENC_ETOOBIG;
  return written(e);
}

static int e_array(void *ud, size_t n) {
  encoder *e = ud;
  int rc = open_container(e, n);
  if (rc == 0) ac_codec_put_array(e->w, (uint32_t)n);
  return rc;
}

static int e_map(void *ud, size_t n) {
  encoder *e = ud;
  int rc = open_container(e, n);
  if (rc == 0) ac_codec_put_map(e->w, (uint32_t)n);
  return rc;
}

static int e_end(void *ud) {
  encoder *e = ud;
  e->depth--;
  return 0;
}

static const lwalk_visitor encode_visitor = {e_nil, e_boolean, e_integer, e_number,
                                             e_string, e_array, e_map, e_end, NULL};

static const char *opaque_message(int type) {
  switch (type) {
    case LUA_TFUNCTION: return "cannot encode a function value";
    case LUA_TTHREAD: return "cannot encode a thread value";
    default: return "cannot encode a userdata value";
  }
}

int ac__lcodec_encode(lua_State *L, int idx, ac_codec_writer_t *w, const char **why) {
  encoder e = {w, 0};
  lwalk walk;
  ac__lwalk_init(&walk, L, &encode_visitor, &e, LWALK_DATA);
  int rc = ac__lwalk_value(&walk, idx);
  if (rc == 0 && w->err) rc = ENC_EWRITE;
  switch (rc) {
    case LWALK_OK:
      *why = NULL;
      return 0;
    case LWALK_EOPAQUE:
      *why = opaque_message(walk.bad_type);
      return AC_EINVAL;
    case LWALK_ECYCLE:
      *why = "cannot encode a cyclic table";
      return AC_EINVAL;
    case LWALK_EDEPTH:
    case ENC_EDEPTH:
      *why = "cannot encode tables nested deeper than " TEXT(AC_CODEC_MAX_DEPTH) " levels";
      return AC_EINVAL;
    case LWALK_ETOOBIG:
    case ENC_ETOOBIG:
      *why = "value too large for MessagePack (a string or table over 2^32 - 1)";
      return AC_EINVAL;
    case ENC_EWRITE:
      if (w->err != AC_ENOMEM) {
        *why = "value too large for MessagePack (a string or table over 2^32 - 1)";
        return AC_EINVAL;
      }
      /* fall through */
    default: /* LWALK_ENOMEM */
      *why = "out of memory";
      return AC_ENOMEM;
  }
}

/* ---- decoding ------------------------------------------------------------ */

typedef struct {
  uint32_t n;    /* elements of the container */
  uint32_t done; /* elements stored so far */
} frame;

typedef struct {
  lua_State *L;
  int depth; /* open containers: open[depth - 1] gets the next element */
  frame open[AC_CODEC_MAX_DEPTH];
  const char *why; /* a refusal of ours (a key Lua cannot hold) */
} decoder;

static int d_nil(void *ud) {
  lua_pushnil(((decoder *)ud)->L);
  return 0;
}

static int d_boolean(void *ud, int b) {
  lua_pushboolean(((decoder *)ud)->L, b);
  return 0;
}

static int d_integer(void *ud, int64_t i) {
  lua_pushinteger(((decoder *)ud)->L, (lua_Integer)i);
  return 0;
}

static int d_uinteger(void *ud, uint64_t u) {
  lua_pushnumber(((decoder *)ud)->L, (lua_Number)u);
  return 0;
}

static int d_number(void *ud, double n) {
  lua_pushnumber(((decoder *)ud)->L, (lua_Number)n);
  return 0;
}

static int d_string(void *ud, const char *s, size_t len, int is_bin) {
  (void)is_bin;
  lua_pushlstring(((decoder *)ud)->L, s, len);
  return 0;
}

/* The reader refuses nesting beyond AC_CODEC_MAX_DEPTH before calling us,
 * and bounds n by the input's length. */
static int open_frame(decoder *d, uint32_t n) {
  if (n == 0) return 0; /* complete at once: the reader sends no items */
  d->open[d->depth].n = n;
  d->open[d->depth].done = 0;
  d->depth++;
  return 0;
}

static int d_array(void *ud, uint32_t n) {
  decoder *d = ud;
  lua_createtable(d->L, (int)(n < INT32_MAX ? n : INT32_MAX), 0);
  return open_frame(d, n);
}

static int d_map(void *ud, uint32_t n) {
  decoder *d = ud;
  lua_createtable(d->L, 0, (int)(n < INT32_MAX ? n : INT32_MAX));
  return open_frame(d, n);
}

/* One more element stored: the container is complete after its last. */
static uint32_t next_item(decoder *d) {
  frame *f = &d->open[d->depth - 1];
  uint32_t i = ++f->done;
  if (i == f->n) d->depth--;
  return i;
}

static int d_array_item(void *ud) {
  decoder *d = ud;
  lua_rawseti(d->L, -2, (lua_Integer)next_item(d));
  return 0;
}

static int d_map_item(void *ud) {
  decoder *d = ud;
  lua_State *L = d->L;
  if (lua_isnil(L, -2)) {
    d->why = "a map key is nil, which a Lua table cannot hold";
    return AC_EFORMAT;
  }
  if (lua_type(L, -2) == LUA_TNUMBER && isnan(lua_tonumber(L, -2))) {
    d->why = "a map key is NaN, which a Lua table cannot hold";
    return AC_EFORMAT;
  }
  lua_rawset(L, -3);
  next_item(d);
  return 0;
}

static const ac_codec_sink_t decode_sink = {d_nil, d_boolean, d_integer, d_uinteger,
                                            d_number, d_string, d_array, d_array_item,
                                            d_map, d_map_item};

typedef struct {
  const char *bytes;
  size_t len;
  int rc;
} decode_args;

/* Protected: Lua's allocations may raise.  Leaves the value, or the
 * message, on top. */
static int decode_protected(lua_State *L) {
  decode_args *a = lua_touserdata(L, 1);
  /* Each open container holds its table and, in a map whose value is
   * being read, the key read before it: two slots a level, at most
   * AC_CODEC_MAX_DEPTH levels; the value just read at the innermost one (a
   * scalar, or an empty container) is one more. */
  luaL_checkstack(L, 2 * AC_CODEC_MAX_DEPTH + 1, "MessagePack decoding");
  int base = lua_gettop(L);
  decoder d = {L, 0, {{0, 0}}, NULL};
  const char *why = NULL;
  a->rc = ac_codec_read(a->bytes, a->len, &decode_sink, &d, &why);
  if (a->rc != 0) {
    lua_settop(L, base);
    lua_pushfstring(L, "MessagePack: %s", d.why ? d.why : why ? why : ac_strerror(a->rc));
  }
  return 1;
}

int ac__lcodec_decode(lua_State *L, const char *bytes, size_t len) {
  decode_args a = {bytes, len, 0};
  lua_pushcfunction(L, decode_protected);
  lua_pushlightuserdata(L, &a);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) return AC_ENOMEM; /* the message is on top */
  return a.rc;
}

/* ---- cache.codec ------------------------------------------------------------ */

/* Each Lua state keeps one writer for codec.encode (an upvalue, freed by
 * its __gc): encoding allocates nothing once it has grown. */
#define WRITER_MT "ac.codec_writer"
#define KEEP_MAX (64 * 1024) /* a bigger buffer is given back after use */

static int writer_gc(lua_State *L) {
  ac_codec_writer_free(lua_touserdata(L, 1));
  return 0;
}

static int codec_encode(lua_State *L) {
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  ac_codec_writer_t *w = lua_touserdata(L, lua_upvalueindex(1));
  ac_codec_writer_reset(w);
  if (lua_type(L, 1) == LUA_TSTRING) {
    /* A string (a page, a JSON body: common cache values) is its header
     * and its bytes: Lua's concatenation copies them once, straight into
     * the result. */
    size_t len;
    const char *s = lua_tolstring(L, 1, &len);
    ac_codec_put_string_head(w, s, len);
    if (w->err) {
      luaL_pushfail(L);
      lua_pushstring(L, "value too large for MessagePack (a string or table over 2^32 - 1)");
      return 2;
    }
    lua_pushlstring(L, w->data, w->len);
    lua_pushvalue(L, 1);
    lua_concat(L, 2);
    return 1;
  }
  const char *why;
  int rc = ac__lcodec_encode(L, 1, w, &why);
  if (rc != 0) {
    if (w->cap > KEEP_MAX) ac_codec_writer_free(w);
    luaL_pushfail(L);
    lua_pushstring(L, why);
    return 2;
  }
  /* Copy out first: pushing may raise (no memory), and the buffer stays
   * the writer's either way. */
  lua_pushlstring(L, w->data, w->len);
  if (w->cap > KEEP_MAX) ac_codec_writer_free(w);
  return 1;
}

static int codec_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_settop(L, 1);
  if (ac__lcodec_decode(L, s, len) != 0) {
    luaL_pushfail(L);
    lua_insert(L, -2);
    return 2;
  }
  return 1;
}

void ac__lcodec_open(lua_State *L) {
  lua_createtable(L, 0, 2);
  ac_codec_writer_t *w = lua_newuserdatauv(L, sizeof *w, 0);
  ac_codec_writer_init(w);
  if (luaL_newmetatable(L, WRITER_MT)) {
    lua_pushcfunction(L, writer_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  lua_pushcclosure(L, codec_encode, 1);
  lua_setfield(L, -2, "encode");
  lua_pushcfunction(L, codec_decode);
  lua_setfield(L, -2, "decode");
}
