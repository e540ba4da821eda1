/* Fuzz target: the snapshot reader, ac_snapshot_parse (runtime/snapshot.c).
 *
 * Untrusted bytes are a snapshot file.  What the reader promises:
 *
 *   - it never reads outside the input (ASan; every entry's key and value
 *     must lie inside it, checked here as well);
 *   - all or nothing: on failure (AC_EFORMAT with a sentence) no entry was
 *     handed out; on success the entries handed out are exactly the count
 *     in the header, with tags 1..255 and no NaN expiry;
 *   - a callback's nonzero result stops the read and is returned.
 *
 * Most random inputs fail at the magic or a checksum, so the fuzzer would
 * hardly get past the header: the input is also used as the body of a
 * snapshot built with ac_snapshot_add from entries the input describes,
 * then corrupted at one byte, or truncated, chosen from the input.  That
 * file must parse back to the same entries (unchanged) or fail cleanly
 * (changed). */
#include <math.h>
#include <string.h>

#include "ac_error.h"
#include "ac_snapshot.h"
#include "fuzz.h"

typedef struct {
  const uint8_t *lo, *hi; /* the input's bytes */
  size_t entries;
  uint64_t hash;
  size_t stop_at; /* return AC_ECANCELED at this entry (0: never) */
} reader;

static void mix(uint64_t *h, const void *p, size_t n) {
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i++) *h = (*h ^ s[i]) * 0x100000001b3u;
}

static int each(void *ud, const ac_snapshot_entry_t *e) {
  reader *r = ud;
  FUZZ_CHECK(e->tag >= 1 && e->tag <= 255);
  FUZZ_CHECK(!isnan(e->expires_at));
  FUZZ_CHECK(e->klen == 0 || ((const uint8_t *)e->key >= r->lo &&
                              (const uint8_t *)e->key + e->klen <= r->hi));
  FUZZ_CHECK(e->vlen == 0 || ((const uint8_t *)e->value >= r->lo &&
                              (const uint8_t *)e->value + e->vlen <= r->hi));
  r->entries++;
  mix(&r->hash, &e->tag, sizeof e->tag);
  mix(&r->hash, e->key, e->klen);
  mix(&r->hash, e->value, e->vlen);
  mix(&r->hash, &e->expires_at, sizeof e->expires_at);
  if (r->stop_at != 0 && r->entries == r->stop_at) return AC_ECANCELED;
  return 0;
}

static uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* Parses bytes, checking the promises; returns the status. */
static int parse(const uint8_t *data, size_t size, reader *r) {
  char msg[256];
  r->lo = data;
  r->hi = data + size;
  r->entries = 0;
  r->hash = 0xcbf29ce484222325u;
  int rc = ac_snapshot_parse((const char *)data, size, each, r, msg, sizeof msg);
  if (rc == AC_EFORMAT) {
    FUZZ_CHECK(r->entries == 0);
    FUZZ_CHECK(msg[0] != '\0');
  } else if (rc == 0) {
    FUZZ_CHECK(size >= AC_SNAPSHOT_HEADER);
    FUZZ_CHECK(r->entries == get64(data + 16));
  } else {
    FUZZ_CHECK(rc == AC_ECANCELED && r->stop_at != 0 && r->entries == r->stop_at);
  }
  return rc;
}

/* Entries described by the input: each takes a tag byte, a key length
 * and a value length byte, then that many bytes of key and value, then
 * an expiry byte (0: never; else a small number of seconds). */
static ac_snapshot_t *build(const uint8_t *data, size_t size, uint64_t *hash, size_t *count) {
  ac_snapshot_t *s = ac_snapshot_new();
  FUZZ_CHECK(s != NULL);
  *hash = 0xcbf29ce484222325u;
  *count = 0;
  size_t i = 0;
  while (i + 4 <= size) {
    ac_snapshot_entry_t e;
    e.tag = data[i] ? data[i] : 1;
    size_t klen = data[i + 1] % 32, vlen = data[i + 2] % 64;
    i += 3;
    if (klen + vlen + 1 > size - i) break;
    e.key = (const char *)data + i;
    e.klen = klen;
    e.value = (const char *)data + i + klen;
    e.vlen = vlen;
    i += klen + vlen;
    e.expires_at = data[i] == 0 ? HUGE_VAL : (double)data[i] * 1.5;
    i++;
    FUZZ_CHECK(ac_snapshot_add(s, &e) == 0);
    (*count)++;
    mix(hash, &e.tag, sizeof e.tag);
    mix(hash, e.key, e.klen);
    mix(hash, e.value, e.vlen);
    mix(hash, &e.expires_at, sizeof e.expires_at);
  }
  return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  reader r = {0};
  /* 1. The bytes as a file. */
  parse(data, size, &r);
  if (r.entries > 1) { /* again, stopped by the callback halfway */
    reader stop = {0};
    stop.stop_at = r.entries / 2;
    parse(data, size, &stop);
  }

  /* 2. A valid file made from the input, then damaged. */
  uint64_t want;
  size_t count;
  ac_snapshot_t *s = build(data, size, &want, &count);
  size_t flen = ac_snapshot_size(s);
  uint8_t *file = malloc(flen);
  FUZZ_CHECK(file != NULL);
  memcpy(file, ac_snapshot_bytes(s), flen);
  ac_snapshot_free(s);

  reader ok = {0};
  FUZZ_CHECK(parse(file, flen, &ok) == 0);
  FUZZ_CHECK(ok.entries == count && ok.hash == want);

  if (size > 0) {
    size_t at = (size_t)(data[0] | (size > 1 ? data[1] << 8 : 0)) % flen;
    if (data[size - 1] & 1) { /* truncated */
      reader t = {0};
      FUZZ_CHECK(parse(file, at, &t) == AC_EFORMAT);
    } else { /* one byte changed: every byte is under a checksum */
      file[at] ^= (uint8_t)(data[size - 1] | 1);
      reader c = {0};
      FUZZ_CHECK(parse(file, flen, &c) == AC_EFORMAT);
    }
  }
  free(file);
  return 0;
}
