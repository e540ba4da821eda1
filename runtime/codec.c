/* MessagePack over msgpack-c (see ac_codec.h).
 *
 * Writing: msgpack-c's packer, whose write callback appends to the
 * writer's buffer (doubling, through the allocator hook).  A packer is two
 * words, made on the stack for each put.
 *
 * Reading: msgpack-c's unpack template (msgpack/unpack_template.h), the
 * state machine its own unpacker is built from, instantiated here with
 * callbacks that forward to the sink.  The template keeps its container
 * stack in the context (AC_CODEC_MAX_DEPTH entries, on our C stack) and
 * allocates nothing; objects are plain ints (unused: a sink builds its
 * values in its own order, which is the order of the bytes).  The one
 * thing the template does not guard is a container header's count, which
 * msgpack-c's own object builder allocates at once: the callbacks charge
 * every claimed element to a budget of the input's length. */
#include <math.h>
#include <string.h>

#include "ac_codec.h"

/* The template's container stack: our depth limit (set before any
 * msgpack header defines its default). */
#define MSGPACK_EMBED_STACK_SIZE AC_CODEC_MAX_DEPTH
#include <msgpack/pack.h>
#include <msgpack/unpack.h>
#include <msgpack/unpack_define.h>

#include "ac_error.h"
#include "alloc.h"

/* ---- the writer ----------------------------------------------------------- */

void ac_codec_writer_init(ac_codec_writer_t *w) {
  w->data = NULL;
  w->len = w->cap = 0;
  w->err = 0;
}

void ac_codec_writer_reset(ac_codec_writer_t *w) {
  w->len = 0;
  w->err = 0;
}

void ac_codec_writer_free(ac_codec_writer_t *w) {
  if (w == NULL) return;
  ac__free(w->data);
  ac_codec_writer_init(w);
}

/* A failed writer keeps no room (cap = len), so that every later append
 * takes the slow path, which drops it. */
static int fail_writer(ac_codec_writer_t *w, int err) {
  w->err = err;
  w->cap = w->len;
  return -1;
}

__attribute__((noinline)) static int append_slow(ac_codec_writer_t *w, const char *buf,
                                                  size_t n) {
  if (w->err) return -1;
  size_t cap = w->cap ? w->cap : 256;
  while (cap - w->len < n) {
    if (cap > SIZE_MAX / 2) return fail_writer(w, AC_ENOMEM);
    cap *= 2;
  }
  char *p = ac__realloc(w->data, cap);
  if (p == NULL) return fail_writer(w, AC_ENOMEM);
  w->data = p;
  w->cap = cap;
  memcpy(w->data + w->len, buf, n);
  w->len += n;
  return 0;
}

/* The packer's write callback.  Always inlined: every put makes its
 * packer with this callback, so the compiler turns msgpack-c's indirect
 * call into this copy.  After a failure the fast path is never taken
 * (fail_writer), so err is checked on the slow path only. */
__attribute__((always_inline)) static inline int append(void *data, const char *buf, size_t n) {
  ac_codec_writer_t *w = data;
  if (n == 0) return 0; /* an empty string's body: nothing (and maybe no buffer) */
  if (n <= w->cap - w->len) {
    memcpy(w->data + w->len, buf, n);
    w->len += n;
    return 0;
  }
  return append_slow(w, buf, n);
}

#define PACKER(w) msgpack_packer pk = {(w), append}

void ac_codec_put_nil(ac_codec_writer_t *w) {
  PACKER(w);
  msgpack_pack_nil(&pk);
}

void ac_codec_put_bool(ac_codec_writer_t *w, int b) {
  PACKER(w);
  if (b) msgpack_pack_true(&pk);
  else msgpack_pack_false(&pk);
}

void ac_codec_put_int(ac_codec_writer_t *w, int64_t i) {
  PACKER(w);
  msgpack_pack_int64(&pk, i);
}

void ac_codec_put_double(ac_codec_writer_t *w, double d) {
  PACKER(w);
  msgpack_pack_double(&pk, d);
}

/* The header of s; returns whether it is str (1) or bin (0), or -1 when
 * s is too long for MessagePack. */
static int string_head(ac_codec_writer_t *w, const char *s, size_t len) {
  PACKER(w);
  if (len > UINT32_MAX) { /* MessagePack's limit */
    fail_writer(w, AC_EINVAL);
    return -1;
  }
  if (ac_codec_utf8_valid(s, len)) {
    msgpack_pack_str(&pk, len);
    return 1;
  }
  msgpack_pack_bin(&pk, len);
  return 0;
}

void ac_codec_put_string_head(ac_codec_writer_t *w, const char *s, size_t len) {
  string_head(w, s, len);
}

void ac_codec_put_string(ac_codec_writer_t *w, const char *s, size_t len) {
  int kind = string_head(w, s, len);
  PACKER(w);
  if (kind == 1) msgpack_pack_str_body(&pk, s, len);
  else if (kind == 0) msgpack_pack_bin_body(&pk, s, len);
}

void ac_codec_put_array(ac_codec_writer_t *w, uint32_t n) {
  PACKER(w);
  msgpack_pack_array(&pk, n);
}

void ac_codec_put_map(ac_codec_writer_t *w, uint32_t n) {
  PACKER(w);
  msgpack_pack_map(&pk, n);
}

/* UTF-8 as RFC 3629 defines it: the second byte's range depends on the
 * first (no overlong forms, no surrogates D800..DFFF, nothing above
 * 10FFFF).  ASCII, the common case, is told at once: every byte OR-ed
 * together, eight at a time, without a branch per byte. */
int ac_codec_utf8_valid(const char *str, size_t len) {
  const unsigned char *s = (const unsigned char *)str, *end = s + len;
  uint64_t acc = 0;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t x;
    memcpy(&x, s + i, 8);
    acc |= x;
  }
  for (; i < len; i++) acc |= s[i];
  if ((acc & 0x8080808080808080u) == 0) return 1;
  while (s < end) {
    if (end - s >= 8) {
      uint64_t x;
      memcpy(&x, s, 8);
      if ((x & 0x8080808080808080u) == 0) {
        s += 8;
        continue;
      }
    }
    unsigned c = *s;
    if (c < 0x80) {
      s++;
      continue;
    }
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return 0;
    }
    if ((size_t)(end - s) <= n) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t k = 2; k <= n; k++)
      if ((s[k] & 0xC0) != 0x80) return 0;
    s += n + 1;
  }
  return 1;
}

/* ---- the reader ------------------------------------------------------------ */

typedef struct {
  const ac_codec_sink_t *sink;
  void *ud;
  size_t budget; /* elements containers may still claim */
  int err;       /* a sink's code, or AC_EFORMAT with why */
  const char *why;
} reader;

/* A callback's failure: the template stops with a negative result. */
static int fail(reader *u, int err, const char *why) {
  u->err = err;
  u->why = why;
  return -1;
}

static int sunk(reader *u, int rc) { return rc == 0 ? 0 : fail(u, rc, NULL); }

static int cb_root(reader *u) {
  (void)u;
  return 0;
}

static int cb_int(reader *u, int64_t i) {
  return sunk(u, u->sink->integer ? u->sink->integer(u->ud, i) : 0);
}

static int cb_uint8(reader *u, uint8_t d, int *o) { *o = 0; return cb_int(u, d); }
static int cb_uint16(reader *u, uint16_t d, int *o) { *o = 0; return cb_int(u, d); }
static int cb_uint32(reader *u, uint32_t d, int *o) { *o = 0; return cb_int(u, d); }
static int cb_int8(reader *u, int8_t d, int *o) { *o = 0; return cb_int(u, d); }
static int cb_int16(reader *u, int16_t d, int *o) { *o = 0; return cb_int(u, d); }
static int cb_int32(reader *u, int32_t d, int *o) { *o = 0; return cb_int(u, d); }
static int cb_int64(reader *u, int64_t d, int *o) { *o = 0; return cb_int(u, d); }

static int cb_uint64(reader *u, uint64_t d, int *o) {
  *o = 0;
  if (d <= INT64_MAX) return cb_int(u, (int64_t)d);
  return sunk(u, u->sink->uinteger ? u->sink->uinteger(u->ud, d) : 0);
}

static int cb_double(reader *u, double d, int *o) {
  *o = 0;
  return sunk(u, u->sink->number ? u->sink->number(u->ud, d) : 0);
}

static int cb_float(reader *u, float d, int *o) { return cb_double(u, d, o); }


static int cb_nil(reader *u, int *o) {
  *o = 0;
  return sunk(u, u->sink->nil ? u->sink->nil(u->ud) : 0);
}

static int cb_bool(reader *u, int b) {
  return sunk(u, u->sink->boolean ? u->sink->boolean(u->ud, b) : 0);
}

static int cb_true(reader *u, int *o) { *o = 0; return cb_bool(u, 1); }
static int cb_false(reader *u, int *o) { *o = 0; return cb_bool(u, 0); }

static int claim(reader *u, size_t n) {
  if (n > u->budget)
    return fail(u, AC_EFORMAT, "a container claims more elements than the data holds");
  u->budget -= n;
  return 0;
}

static int cb_array(reader *u, unsigned int n, int *o) {
  *o = 0;
  if (claim(u, n) != 0) return -1;
  return sunk(u, u->sink->array ? u->sink->array(u->ud, n) : 0);
}

static int cb_map(reader *u, unsigned int n, int *o) {
  *o = 0;
  if (claim(u, 2 * (size_t)n) != 0) return -1;
  return sunk(u, u->sink->map ? u->sink->map(u->ud, n) : 0);
}

static int cb_array_item(reader *u, int *c, int o) {
  (void)c, (void)o;
  return sunk(u, u->sink->array_item ? u->sink->array_item(u->ud) : 0);
}

static int cb_map_item(reader *u, int *c, int k, int v) {
  (void)c, (void)k, (void)v;
  return sunk(u, u->sink->map_item ? u->sink->map_item(u->ud) : 0);
}

static int cb_string(reader *u, const char *p, unsigned int l, int is_bin) {
  return sunk(u, u->sink->string ? u->sink->string(u->ud, p, l, is_bin) : 0);
}

static int cb_str(reader *u, const char *b, const char *p, unsigned int l, int *o) {
  (void)b;
  *o = 0;
  return cb_string(u, p, l, 0);
}

static int cb_bin(reader *u, const char *b, const char *p, unsigned int l, int *o) {
  (void)b;
  *o = 0;
  return cb_string(u, p, l, 1);
}

static int cb_ext(reader *u, const char *b, const char *p, unsigned int l, int *o) {
  (void)b, (void)p, (void)l;
  *o = 0;
  return fail(u, AC_EFORMAT, "MessagePack ext types (timestamps included) are not supported");
}

#define TEXT_(x) #x
#define TEXT(x) TEXT_(x)
#define DEPTH_TEXT TEXT(AC_CODEC_MAX_DEPTH)

/* The template, instantiated with the callbacks above. */
#define msgpack_unpack_struct(name) struct codec_unpack##name
#define msgpack_unpack_func(ret, name) static inline ret codec_unpack##name
#define msgpack_unpack_callback(name) cb##name
#define msgpack_unpack_object int
#define msgpack_unpack_user reader
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wshadow"
#include <msgpack/unpack_template.h>
#pragma GCC diagnostic pop

int ac_codec_read(const char *data, size_t len, const ac_codec_sink_t *sink,
                  void *ud, const char **why) {
  struct codec_unpack_context ctx;
  ctx.user.sink = sink;
  ctx.user.ud = ud;
  ctx.user.budget = len;
  ctx.user.err = 0;
  ctx.user.why = NULL;
  codec_unpack_init(&ctx);
  size_t off = 0;
  int ret = len == 0 ? 0 : codec_unpack_execute(&ctx, data, len, &off);
  const char *w = NULL;
  int rc = 0;
  if (ret == 1 && off != len) {
    rc = AC_EFORMAT;
    w = "bytes left after the value";
  } else if (ret == 0) {
    rc = AC_EFORMAT;
    w = "truncated data";
  } else if (ret < 0 && ctx.user.err != 0) {
    rc = ctx.user.err;
    w = ctx.user.why;
  } else if (ret == MSGPACK_UNPACK_NOMEM_ERROR) { /* the template's depth guard */
    rc = AC_EFORMAT;
    w = "containers nested deeper than " DEPTH_TEXT " levels";
  } else if (ret < 0) {
    rc = AC_EFORMAT;
    w = "an invalid byte";
  }
  if (why != NULL) *why = w;
  return rc;
}
