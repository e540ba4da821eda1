/* Snapshots: every entry of a cache, as bytes, in one file (the disk
 * backend), written so that a crash never leaves a broken file.
 *
 * The file (all integers little-endian):
 *
 *   offset  size
 *   0       8     magic "\x89ACSNAP\n" (a high first byte and a newline, so
 *                 that a file mangled as text is told apart)
 *   8       4     format version (AC_SNAPSHOT_VERSION)
 *   12      4     flags (0)
 *   16      8     entry count
 *   24      8     body length in bytes
 *   32      4     CRC-32 (zlib's) of the body
 *   36      4     CRC-32 of bytes 0..35
 *   40            body: count entries, each
 *                   1  tag (1..255: the cache's key type)
 *                   4  key length k
 *                   4  value length v
 *                   8  expiry: wall-clock seconds since the epoch (an
 *                      IEEE 754 double; +inf: never)
 *                   k  key bytes, then v value bytes (MessagePack, from
 *                      the codec, for a Lua cache)
 *
 * Writing (ac_snapshot_write): the bytes go to a temporary file in the same
 * folder, which is flushed and fsync'ed, renamed over the old file, and the
 * folder is fsync'ed: the file at `path` is always either the old snapshot
 * or the new one.  Reading checks everything (magic, version, both
 * checksums, every length against the file's size, the count) before it
 * hands out a single entry: a file is loaded whole or not at all. */
#ifndef AC_SNAPSHOT_H
#define AC_SNAPSHOT_H

#include <stddef.h>
#include <uv.h>

#include "ac_export.h"

#define AC_SNAPSHOT_VERSION 1
#define AC_SNAPSHOT_HEADER 40

typedef struct {
  int tag;            /* 1..255 */
  const char *key;
  size_t klen;
  const char *value;
  size_t vlen;
  double expires_at;  /* wall-clock seconds since the epoch; +inf: never */
} ac_snapshot_entry_t;

/* A snapshot being written: its entries, kept in memory until written. */
typedef struct ac_snapshot_s ac_snapshot_t;

/* A new, empty snapshot, or NULL when out of memory. */
AC_EXPORT ac_snapshot_t *ac_snapshot_new(void);
/* NULL: no-op.  Not while an ac_snapshot_write_async of it runs. */
AC_EXPORT void ac_snapshot_free(ac_snapshot_t *s);
/* Appends an entry (its bytes are copied).  0, AC_ENOMEM, or AC_EINVAL
 * (a tag outside 1..255, a key or value of 4 GiB or more, a NaN expiry). */
AC_EXPORT int ac_snapshot_add(ac_snapshot_t *s, const ac_snapshot_entry_t *e);
AC_EXPORT size_t ac_snapshot_count(const ac_snapshot_t *s);
/* The file's size once written (header and body). */
AC_EXPORT size_t ac_snapshot_size(const ac_snapshot_t *s);
/* The file's bytes, header filled in (ac_snapshot_size of them), for a
 * host that stores or sends them itself; valid until the next add or
 * free. */
AC_EXPORT const char *ac_snapshot_bytes(ac_snapshot_t *s);

/* Writes the snapshot to path, crash-safely (see above), blocking.  0, or
 * AC_EIO with a sentence naming the step and the system's reason in msg
 * ("rename /tmp/x.tmp.12.1 to /tmp/x: Permission denied"); the old file is
 * then untouched and no temporary file is left. */
AC_EXPORT int ac_snapshot_write(ac_snapshot_t *s, const char *path, char *msg,
                                size_t msgsize);

/* Runs once on the loop's thread when an asynchronous write ends: status
 * as ac_snapshot_write returns it, msg its sentence ("" on success), valid
 * during the call. */
typedef void (*ac_snapshot_write_cb)(void *arg, int status, const char *msg);
/* The same write on libuv's thread pool: the loop keeps running meanwhile.
 * s belongs to the write until cb has run (do not add to it or free it
 * before).  0 (cb will run), or AC_ENOMEM / a libuv error (cb will not). */
AC_EXPORT int ac_snapshot_write_async(ac_snapshot_t *s, uv_loop_t *loop,
                                      const char *path, ac_snapshot_write_cb cb,
                                      void *arg);

/* Called for each entry read; its bytes are valid during the call only.
 * Returns 0 to go on; anything else stops the read, which returns it. */
typedef int (*ac_snapshot_each_fn)(void *ud, const ac_snapshot_entry_t *e);

/* Checks the bytes of a whole snapshot file, then hands out its entries in
 * the order they were added.  0, each's nonzero result, or AC_EFORMAT with
 * a sentence in msg ("not an async-cache snapshot (bad magic)", "checksum
 * mismatch: the body is corrupt", ...) and no entry handed out. */
AC_EXPORT int ac_snapshot_parse(const char *data, size_t len,
                                ac_snapshot_each_fn each, void *ud, char *msg,
                                size_t msgsize);
/* Reads the file at path and parses it.  As ac_snapshot_parse, plus
 * AC_ENOENT (no such file: msg says so) and AC_EIO (it cannot be read). */
AC_EXPORT int ac_snapshot_read(const char *path, ac_snapshot_each_fn each,
                               void *ud, char *msg, size_t msgsize);

#endif
