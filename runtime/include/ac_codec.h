/* MessagePack bytes, over msgpack-c: a writer that appends values to a
 * growable buffer, and a reader that walks the bytes of one value into a
 * sink's callbacks.  No Lua here: the binding maps Lua values onto these
 * (bindings/lua_codec.c); the disk and remote backends carry the bytes.
 *
 * The writer.  ac_codec_put_* append one item each: a scalar, or the
 * header of an array (followed by its n items) or of a map (n key, value
 * pairs).  Strings go out as MessagePack str when they are valid UTF-8 and
 * as bin otherwise, so that libraries in other languages read text as text
 * and never fail on bytes.  Memory comes from the allocator hook; when it
 * fails, w->err becomes AC_ENOMEM and stays so (later puts do nothing):
 * check it once, after the last put.
 *
 * The reader.  ac_codec_read decodes exactly one value from untrusted
 * bytes, with msgpack-c's own state machine (its unpack template) driving
 * the sink, so it decodes what any MessagePack library writes and
 * allocates nothing itself.  What a sink allocates stays bounded by the
 * input: an array or map header may claim at most as many elements as
 * bytes remain in the whole input (every element takes one byte at least),
 * so a header claiming 2^32 entries is an error, not a 4 G allocation.
 * Containers nest at most AC_CODEC_MAX_DEPTH deep. */
#ifndef AC_CODEC_H
#define AC_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "ac_export.h"

/* Arrays and maps nested deeper than this are refused by the reader (a
 * value that is not a container is level 0; [[1]] is 2 deep). */
#define AC_CODEC_MAX_DEPTH 32

typedef struct {
  char *data;  /* the bytes written so far (owned; ac_codec_writer_free) */
  size_t len;
  size_t cap;
  int err;     /* 0, or AC_ENOMEM once an append failed */
} ac_codec_writer_t;

AC_EXPORT void ac_codec_writer_init(ac_codec_writer_t *w);
/* Forgets the bytes (keeps the memory) and the error. */
AC_EXPORT void ac_codec_writer_reset(ac_codec_writer_t *w);
/* Frees the buffer; the writer may be initialized again.  NULL: no-op. */
AC_EXPORT void ac_codec_writer_free(ac_codec_writer_t *w);

AC_EXPORT void ac_codec_put_nil(ac_codec_writer_t *w);
AC_EXPORT void ac_codec_put_bool(ac_codec_writer_t *w, int b);
AC_EXPORT void ac_codec_put_int(ac_codec_writer_t *w, int64_t i);
/* Always a float 64: the value is kept exactly (-0.0, NaN, infinities). */
AC_EXPORT void ac_codec_put_double(ac_codec_writer_t *w, double d);
/* str when valid UTF-8, else bin. */
AC_EXPORT void ac_codec_put_string(ac_codec_writer_t *w, const char *s, size_t len);
/* Only the header ac_codec_put_string would write for s: for a caller
 * that appends the bytes itself (without copying them twice). */
AC_EXPORT void ac_codec_put_string_head(ac_codec_writer_t *w, const char *s, size_t len);
AC_EXPORT void ac_codec_put_array(ac_codec_writer_t *w, uint32_t n);
AC_EXPORT void ac_codec_put_map(ac_codec_writer_t *w, uint32_t n);

/* Is s[0..len) valid UTF-8 (no overlong forms, no surrogates, at most
 * U+10FFFF)? */
AC_EXPORT int ac_codec_utf8_valid(const char *s, size_t len);

/* What the reader meets, in the order of the bytes.  Scalars and strings
 * come as values; a container comes as its header (array(n), map(n)),
 * then its items, each followed by array_item (the value just given is
 * the next element) or, for a map, key and value followed by map_item.
 * An empty container has no item callbacks.  Every callback returns 0 to
 * go on, or a negative AC_E* code that stops the read and is returned.
 * A string's bytes point into the input. */
typedef struct {
  int (*nil)(void *ud);
  int (*boolean)(void *ud, int b);
  int (*integer)(void *ud, int64_t i);
  int (*uinteger)(void *ud, uint64_t u); /* only above INT64_MAX */
  int (*number)(void *ud, double d);     /* float 32 or 64 */
  int (*string)(void *ud, const char *s, size_t len, int is_bin);
  int (*array)(void *ud, uint32_t n);
  int (*array_item)(void *ud);
  int (*map)(void *ud, uint32_t n);
  int (*map_item)(void *ud);
} ac_codec_sink_t;

/* Reads the one value that data[0..len) holds.  0, a sink's code, or
 * AC_EFORMAT with *why (a static sentence, when why is not NULL) saying
 * what is wrong: truncated, an invalid byte, nested too deeply, a header
 * claiming more elements than the input can hold, an ext type, bytes after
 * the value. */
AC_EXPORT int ac_codec_read(const char *data, size_t len,
                            const ac_codec_sink_t *sink, void *ud,
                            const char **why);

#endif
