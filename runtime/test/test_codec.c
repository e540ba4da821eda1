/* The MessagePack writer and reader (ac_codec.h): bytes, error paths, and
 * the writer under the failing allocator. */
#include <string.h>

#include "test_harness.h"
#include "test_alloc.h"

#include "ac_codec.h"
#include "ac_error.h"

/* A sink that prints what it meets, compactly: "[2 1 s:ab]". */
typedef struct {
  char out[512];
  size_t len;
  int fail_on_string; /* return this code from string() */
} trace;

static void emit(trace *t, const char *s) {
  size_t n = strlen(s);
  if (t->len + n < sizeof t->out) {
    memcpy(t->out + t->len, s, n + 1);
    t->len += n;
  }
}

static int t_nil(void *ud) { emit(ud, "nil "); return 0; }
static int t_bool(void *ud, int b) { emit(ud, b ? "T " : "F "); return 0; }
static int t_int(void *ud, int64_t i) {
  char b[32];
  snprintf(b, sizeof b, "%" PRId64 " ", i);
  emit(ud, b);
  return 0;
}
static int t_uint(void *ud, uint64_t u) {
  char b[32];
  snprintf(b, sizeof b, "u%" PRIu64 " ", u);
  emit(ud, b);
  return 0;
}
static int t_num(void *ud, double d) {
  char b[32];
  snprintf(b, sizeof b, "%g ", d);
  emit(ud, b);
  return 0;
}
static int t_str(void *ud, const char *s, size_t len, int is_bin) {
  trace *t = ud;
  if (t->fail_on_string) return t->fail_on_string;
  char b[64];
  snprintf(b, sizeof b, "%s:%.*s ", is_bin ? "b" : "s", (int)len, s);
  emit(t, b);
  return 0;
}
static int t_array(void *ud, uint32_t n) {
  char b[32];
  snprintf(b, sizeof b, "[%u ", n);
  emit(ud, b);
  return 0;
}
static int t_map(void *ud, uint32_t n) {
  char b[32];
  snprintf(b, sizeof b, "{%u ", n);
  emit(ud, b);
  return 0;
}
static int t_item(void *ud) { emit(ud, ", "); return 0; }

static const ac_codec_sink_t sink = {t_nil, t_bool, t_int, t_uint, t_num, t_str,
                                     t_array, t_item, t_map, t_item};

static int read_bytes(const char *b, size_t n, trace *t, const char **why) {
  memset(t, 0, sizeof *t);
  return ac_codec_read(b, n, &sink, t, why);
}

TEST(writes_and_reads_every_kind) {
  ac_codec_writer_t w;
  ac_codec_writer_init(&w);
  ac_codec_put_array(&w, 7);
  ac_codec_put_nil(&w);
  ac_codec_put_bool(&w, 1);
  ac_codec_put_int(&w, -5);
  ac_codec_put_double(&w, 1.5);
  ac_codec_put_string(&w, "ab", 2);
  ac_codec_put_string(&w, "\xff", 1);
  ac_codec_put_map(&w, 1);
  ac_codec_put_int(&w, 300);
  ac_codec_put_bool(&w, 0);
  ASSERT_EQ_INT(w.err, 0);
  trace t;
  const char *why = "unset";
  ASSERT_EQ_INT(read_bytes(w.data, w.len, &t, &why), 0);
  ASSERT_TRUE(why == NULL);
  ASSERT_TRUE(strcmp(t.out, "[7 nil , T , -5 , 1.5 , s:ab , b:\xff , {1 300 F , , ") == 0);
  ac_codec_writer_free(&w);
  ac_codec_writer_free(NULL);
}

TEST(reader_refuses_bad_input_with_a_reason) {
  static const struct {
    const char *bytes;
    size_t len;
    const char *why;
  } cases[] = {
      {"", 0, "truncated data"},
      {"\x92\x01", 2, "truncated data"},
      {"\xc1", 1, "an invalid byte"},
      {"\x01\x02", 2, "bytes left after the value"},
      {"\xdf\xff\xff\xff\xff", 5, "a container claims more elements than the data holds"},
      {"\xdc\x00\x06\x01\x02", 5, "a container claims more elements than the data holds"},
      {"\xd4\x01\x00", 3, "MessagePack ext types (timestamps included) are not supported"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    trace t;
    const char *why = NULL;
    ASSERT_EQ_INT(read_bytes(cases[i].bytes, cases[i].len, &t, &why), AC_EFORMAT);
    ASSERT_TRUE(why != NULL && strcmp(why, cases[i].why) == 0);
  }
}

TEST(reader_bounds_nesting) {
  char deep[64];
  memset(deep, 0x91, sizeof deep); /* arrays of one element, nested */
  deep[AC_CODEC_MAX_DEPTH] = 0x01;
  trace t;
  const char *why;
  ASSERT_EQ_INT(read_bytes(deep, AC_CODEC_MAX_DEPTH + 1, &t, &why), 0);
  deep[AC_CODEC_MAX_DEPTH] = (char)0x91;
  deep[AC_CODEC_MAX_DEPTH + 1] = 0x01;
  ASSERT_EQ_INT(read_bytes(deep, AC_CODEC_MAX_DEPTH + 2, &t, &why), AC_EFORMAT);
  ASSERT_TRUE(strcmp(why, "containers nested deeper than 32 levels") == 0);
}

TEST(reader_returns_the_sinks_code) {
  trace t;
  memset(&t, 0, sizeof t);
  t.fail_on_string = AC_ENOMEM;
  const char *why = "unset";
  ASSERT_EQ_INT(ac_codec_read("\x91\xa1x", 3, &sink, &t, &why), AC_ENOMEM);
  ASSERT_TRUE(why == NULL);
}

TEST(utf8_validation) {
  ASSERT_TRUE(ac_codec_utf8_valid("", 0));
  ASSERT_TRUE(ac_codec_utf8_valid("plain ascii, longer than eight", 30));
  ASSERT_TRUE(ac_codec_utf8_valid("h\xc3\xa9", 3));
  ASSERT_TRUE(ac_codec_utf8_valid("\xf4\x8f\xbf\xbf", 4));  /* U+10FFFF */
  ASSERT_FALSE(ac_codec_utf8_valid("\xc0\x80", 2));         /* overlong */
  ASSERT_FALSE(ac_codec_utf8_valid("\xe0\x80\x80", 3));     /* overlong */
  ASSERT_FALSE(ac_codec_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
  ASSERT_FALSE(ac_codec_utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
  ASSERT_FALSE(ac_codec_utf8_valid("\xc3", 1));             /* truncated */
  ASSERT_FALSE(ac_codec_utf8_valid("abcdefg\xc3", 8));
}

/* Every allocation the writer makes, failed in turn: the error is
 * AC_ENOMEM and sticky, no block leaks, and the writer can be used again. */
TEST(writer_under_failing_allocator) {
  install_counting_allocator();
  char big[5000];
  memset(big, 'x', sizeof big);
  for (long n = 1; n <= 8; n++) {
    ac_codec_writer_t w;
    ac_codec_writer_init(&w);
    fail_nth(n);
    for (int i = 0; i < 4; i++) ac_codec_put_string(&w, big, sizeof big);
    ac_codec_put_int(&w, 1);
    disarm_failure();
    if (w.err) {
      ASSERT_EQ_INT(w.err, AC_ENOMEM);
      ASSERT_TRUE(w.len < 4 * (sizeof big + 3) + 1); /* the last puts were dropped */
      ac_codec_writer_reset(&w);
      ASSERT_EQ_INT(w.err, 0);
      ac_codec_put_int(&w, 7);
      ASSERT_EQ_INT(w.err, 0);
    }
    ac_codec_writer_free(&w);
    ASSERT_EQ_INT(live_blocks, 0);
  }
  restore_allocator();
}
