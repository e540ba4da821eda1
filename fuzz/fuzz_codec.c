/* Fuzz target: the MessagePack reader, ac_codec_read (runtime/codec.c).
 *
 * The bytes are read three times:
 *
 *   1. into a checking sink, which keeps its own stack of the open
 *      containers and checks what ac_codec.h promises a sink: an item
 *      callback comes only inside a container of that kind, after exactly
 *      one value (array) or two (map: key, value), never more items than
 *      the header announced, no item for an empty container; containers
 *      nest at most AC_CODEC_MAX_DEPTH deep; the announced elements add up
 *      to at most the input's length (a map's n counts 2n); a string's
 *      bytes lie inside the input; after success exactly one value was
 *      completed, and every container got all its items; a failure is
 *      AC_EFORMAT with a reason.  The sink also hashes what it meets.
 *   2. by msgpack-c's own unpacker (msgpack_unpack_next): when ours
 *      succeeds, it must read one value of all the bytes and give the same
 *      hash (the same values, in the same order); when ours says the bytes
 *      are truncated, invalid or followed by more, it must not read one
 *      value of all of them.  Ours refusing ext types, or a header claiming
 *      more than the input holds, is our choice and not compared (and
 *      msgpack-c would allocate what such a header claims).
 *   3. into a sink that fails at one callback (chosen from the input's
 *      hash): the read must return that sink's code, and no callback may
 *      run after it. */
#include <math.h>
#include <string.h>

#include <msgpack.h>

#include "ac_codec.h"
#include "ac_error.h"
#include "fuzz.h"

/* msgpack-c's own nesting limit (its MSGPACK_EMBED_STACK_SIZE when built):
 * deeper values are compared only if ours is raised past it. */
#define MSGPACK_LIB_DEPTH 32

typedef struct {
  uint32_t n;    /* elements announced */
  uint32_t done; /* item callbacks so far */
  int is_map;
  int pending; /* values completed since the last item callback */
} level;

typedef struct {
  const char *data;
  size_t len;
  level open[AC_CODEC_MAX_DEPTH];
  int depth;       /* open containers */
  int max_depth;   /* deepest container met (an empty one counts) */
  int roots;       /* values completed at the top level */
  size_t claimed;  /* elements announced by all headers */
  uint64_t hash;   /* of the values met, see mix() */
  long calls;      /* callbacks so far */
  long fail_at;    /* this callback returns fail_code (0: none does) */
  int fail_code;
  int failed;      /* fail_code was returned */
} checker;

/* ---- the hash of what a read meets ------------------------------------------
 * The same function hashes msgpack-c's object tree, so tags and encodings
 * must agree: an integer is hashed as int64 when it fits, else as uint64. */

static void mix(uint64_t *h, int tag, const void *p, size_t len) {
  const unsigned char *s = p;
  uint64_t x = (*h ^ (unsigned char)tag) * 0x100000001b3u;
  for (size_t i = 0; i < len; i++) x = (x ^ s[i]) * 0x100000001b3u;
  *h = x;
}

/* ---- the checking sink ------------------------------------------------------- */

/* Every callback starts here: counts it, and may be the one that fails. */
static int enter(checker *c) {
  FUZZ_CHECK(!c->failed); /* nothing after a callback's failure */
  if (++c->calls == c->fail_at) {
    c->failed = 1;
    return c->fail_code;
  }
  return 0;
}

/* A value is complete: a scalar, a string, an empty container, or the last
 * item of a container. */
static void completed(checker *c) {
  if (c->depth == 0) {
    c->roots++;
    FUZZ_CHECK(c->roots == 1);
    return;
  }
  level *l = &c->open[c->depth - 1];
  l->pending++;
  FUZZ_CHECK(l->pending <= (l->is_map ? 2 : 1));
}

static int scalar(checker *c, int tag, const void *p, size_t len) {
  int rc = enter(c);
  if (rc != 0) return rc;
  mix(&c->hash, tag, p, len);
  completed(c);
  return 0;
}

static int k_nil(void *ud) { return scalar(ud, 'N', NULL, 0); }
static int k_boolean(void *ud, int b) {
  FUZZ_CHECK(b == 0 || b == 1);
  return scalar(ud, b ? 'T' : 'F', NULL, 0);
}
static int k_integer(void *ud, int64_t i) { return scalar(ud, 'I', &i, sizeof i); }
static int k_uinteger(void *ud, uint64_t u) {
  FUZZ_CHECK(u > INT64_MAX); /* smaller ones come as integers */
  return scalar(ud, 'U', &u, sizeof u);
}
static int k_number(void *ud, double d) { return scalar(ud, 'D', &d, sizeof d); }

static int k_string(void *ud, const char *s, size_t len, int is_bin) {
  checker *c = ud;
  FUZZ_CHECK(is_bin == 0 || is_bin == 1);
  FUZZ_CHECK(len <= c->len);
  /* Into the input, and no further than its end. */
  FUZZ_CHECK(len == 0 || (s >= c->data && (size_t)(s - c->data) <= c->len - len));
  uint64_t n = len;
  int rc = scalar(c, is_bin ? 'B' : 'S', &n, sizeof n);
  if (rc == 0) mix(&c->hash, 0, s, len);
  return rc;
}

static int header(checker *c, uint32_t n, int is_map) {
  int rc = enter(c);
  if (rc != 0) return rc;
  mix(&c->hash, is_map ? '{' : '[', &n, sizeof n);
  FUZZ_CHECK(c->depth < AC_CODEC_MAX_DEPTH);
  if (c->depth + 1 > c->max_depth) c->max_depth = c->depth + 1;
  c->claimed += is_map ? 2 * (size_t)n : n;
  FUZZ_CHECK(c->claimed <= c->len); /* the reader's budget */
  if (n == 0) {
    completed(c);
    return 0;
  }
  c->open[c->depth++] = (level){n, 0, is_map, 0};
  return 0;
}

static int k_array(void *ud, uint32_t n) { return header(ud, n, 0); }
static int k_map(void *ud, uint32_t n) { return header(ud, n, 1); }

static int item(checker *c, int is_map) {
  int rc = enter(c);
  if (rc != 0) return rc;
  mix(&c->hash, ',', NULL, 0);
  FUZZ_CHECK(c->depth > 0);
  level *l = &c->open[c->depth - 1];
  FUZZ_CHECK(l->is_map == is_map);
  FUZZ_CHECK(l->pending == (is_map ? 2 : 1));
  FUZZ_CHECK(l->done < l->n);
  l->pending = 0;
  if (++l->done == l->n) {
    c->depth--;
    completed(c);
  }
  return 0;
}

static int k_array_item(void *ud) { return item(ud, 0); }
static int k_map_item(void *ud) { return item(ud, 1); }

static const ac_codec_sink_t checking_sink = {k_nil, k_boolean, k_integer, k_uinteger,
                                              k_number, k_string, k_array, k_array_item,
                                              k_map, k_map_item};

static int check_read(const uint8_t *data, size_t size, checker *c, long fail_at,
                      const char **why) {
  memset(c, 0, sizeof *c);
  c->data = (const char *)data;
  c->len = size;
  c->hash = 0xcbf29ce484222325u;
  c->fail_at = fail_at;
  c->fail_code = AC_ECANCELED;
  *why = NULL;
  return ac_codec_read(c->data, size, &checking_sink, c, why);
}

/* ---- msgpack-c's reading of the same bytes -------------------------------- */

static void hash_object(uint64_t *h, const msgpack_object *o) {
  switch (o->type) {
    case MSGPACK_OBJECT_NIL:
      mix(h, 'N', NULL, 0);
      return;
    case MSGPACK_OBJECT_BOOLEAN:
      mix(h, o->via.boolean ? 'T' : 'F', NULL, 0);
      return;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
      if (o->via.u64 <= INT64_MAX) {
        int64_t i = (int64_t)o->via.u64;
        mix(h, 'I', &i, sizeof i);
      } else {
        mix(h, 'U', &o->via.u64, sizeof o->via.u64);
      }
      return;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
      mix(h, 'I', &o->via.i64, sizeof o->via.i64);
      return;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
      mix(h, 'D', &o->via.f64, sizeof o->via.f64);
      return;
    case MSGPACK_OBJECT_STR:
    case MSGPACK_OBJECT_BIN: {
      uint64_t n = o->via.str.size; /* bin has the same layout */
      mix(h, o->type == MSGPACK_OBJECT_BIN ? 'B' : 'S', &n, sizeof n);
      mix(h, 0, o->type == MSGPACK_OBJECT_BIN ? o->via.bin.ptr : o->via.str.ptr, n);
      return;
    }
    case MSGPACK_OBJECT_ARRAY:
      mix(h, '[', &o->via.array.size, sizeof o->via.array.size);
      for (uint32_t i = 0; i < o->via.array.size; i++) {
        hash_object(h, &o->via.array.ptr[i]);
        mix(h, ',', NULL, 0);
      }
      return;
    case MSGPACK_OBJECT_MAP:
      mix(h, '{', &o->via.map.size, sizeof o->via.map.size);
      for (uint32_t i = 0; i < o->via.map.size; i++) {
        hash_object(h, &o->via.map.ptr[i].key);
        hash_object(h, &o->via.map.ptr[i].val);
        mix(h, ',', NULL, 0);
      }
      return;
    default: /* ext: our reader refuses it, so never compared */
      FUZZ_CHECK(0);
  }
}

/* Whether msgpack-c reads one value of all the bytes; *h gets its hash. */
static int msgpack_reads_all(const uint8_t *data, size_t size, uint64_t *h) {
  msgpack_unpacked result;
  msgpack_unpacked_init(&result);
  size_t off = 0;
  msgpack_unpack_return ret = msgpack_unpack_next(&result, (const char *)data, size, &off);
  int all = ret == MSGPACK_UNPACK_SUCCESS && off == size;
  if (all) {
    *h = 0xcbf29ce484222325u;
    hash_object(h, &result.data);
  }
  msgpack_unpacked_destroy(&result);
  return all;
}

/* Our reasons that msgpack-c must agree with (the others are our choices). */
static int same_verdict_expected(const char *why) {
  return strstr(why, "truncated") || strstr(why, "invalid byte") || strstr(why, "left after");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  checker c;
  const char *why;
  int rc = check_read(data, size, &c, 0, &why);
  if (rc == 0) {
    FUZZ_CHECK(why == NULL);
    FUZZ_CHECK(c.depth == 0 && c.roots == 1);
  } else {
    FUZZ_CHECK(rc == AC_EFORMAT);
    FUZZ_CHECK(why != NULL && why[0] != '\0');
  }

  if (rc == 0 && c.max_depth <= MSGPACK_LIB_DEPTH) {
    uint64_t theirs = 0;
    FUZZ_CHECK(msgpack_reads_all(data, size, &theirs));
    FUZZ_CHECK(theirs == c.hash);
  } else if (rc != 0 && same_verdict_expected(why)) {
    uint64_t theirs;
    FUZZ_CHECK(!msgpack_reads_all(data, size, &theirs));
  }

  /* The same bytes again, the sink failing at one of its callbacks. */
  long calls = c.calls;
  if (calls > 0) {
    long at = 1 + (long)(fuzz_hash(data, size) % (uint64_t)calls);
    rc = check_read(data, size, &c, at, &why);
    FUZZ_CHECK(c.failed && c.calls == at);
    FUZZ_CHECK(rc == AC_ECANCELED);
  }
  return 0;
}
