/* Snapshot files (see ac_snapshot.h).
 *
 * A snapshot is one growable buffer that starts with room for the header:
 * entries are appended as they come, the header is filled in when the file
 * is written, and the whole file goes out in one write loop.  Reading
 * checks the header and the checksums, then walks the body twice: once to
 * check every entry's lengths against the bytes left (nothing is handed
 * out from a file that turns out to be broken), once to hand them out.
 * Lengths are checked before any pointer arithmetic, against what
 * remains, so that no sum can overflow. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "ac_error.h"
#include "ac_snapshot.h"
#include "alloc.h"

static const char MAGIC[8] = {'\x89', 'A', 'C', 'S', 'N', 'A', 'P', '\n'};
#define ENTRY_HEAD 17 /* tag, key length, value length, expiry */
/* Bytes per write(2): big enough to cost nothing, small enough that one
 * call does not hold a huge buffer in the kernel at once. */
#define WRITE_CHUNK ((size_t)256 * 1024)

struct ac_snapshot_s {
  char *buf; /* AC_SNAPSHOT_HEADER bytes of header, then the body */
  size_t len, cap;
  size_t count;
};

/* ---- little-endian fields -------------------------------------------------- */

static void put32(char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (char)(v >> (8 * i));
}

static void put64(char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (char)(v >> (8 * i));
}

static uint32_t get32(const char *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)(unsigned char)p[i] << (8 * i);
  return v;
}

static uint64_t get64(const char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)(unsigned char)p[i] << (8 * i);
  return v;
}

static uint64_t double_bits(double d) {
  uint64_t u;
  memcpy(&u, &d, 8);
  return u;
}

static double bits_double(uint64_t u) {
  double d;
  memcpy(&d, &u, 8);
  return d;
}

/* zlib's crc32 takes a uInt length: feed big bodies in pieces. */
static uint32_t crc(const char *p, size_t n) {
  uLong c = crc32(0L, Z_NULL, 0);
  while (n > 0) {
    uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
    c = crc32(c, (const Bytef *)p, k);
    p += k;
    n -= k;
  }
  return (uint32_t)c;
}

/* ---- building ------------------------------------------------------------- */

ac_snapshot_t *ac_snapshot_new(void) {
  ac_snapshot_t *s = ac__calloc(1, sizeof *s);
  if (s == NULL) return NULL;
  s->cap = 4096;
  if ((s->buf = ac__malloc(s->cap)) == NULL) {
    ac__free(s);
    return NULL;
  }
  s->len = AC_SNAPSHOT_HEADER;
  return s;
}

void ac_snapshot_free(ac_snapshot_t *s) {
  if (s == NULL) return;
  ac__free(s->buf);
  ac__free(s);
}

static int reserve(ac_snapshot_t *s, size_t n) {
  if (n <= s->cap - s->len) return 0;
  size_t cap = s->cap;
  while (cap - s->len < n) {
    if (cap > SIZE_MAX / 2) return AC_ENOMEM;
    cap *= 2;
  }
  char *p = ac__realloc(s->buf, cap);
  if (p == NULL) return AC_ENOMEM;
  s->buf = p;
  s->cap = cap;
  return 0;
}

int ac_snapshot_add(ac_snapshot_t *s, const ac_snapshot_entry_t *e) {
  if (e->tag < 1 || e->tag > 255 || e->klen > UINT32_MAX || e->vlen > UINT32_MAX ||
      isnan(e->expires_at))
    return AC_EINVAL;
  size_t n = ENTRY_HEAD + e->klen + e->vlen;
  if (reserve(s, n) != 0) return AC_ENOMEM;
  char *p = s->buf + s->len;
  p[0] = (char)e->tag;
  put32(p + 1, (uint32_t)e->klen);
  put32(p + 5, (uint32_t)e->vlen);
  put64(p + 9, double_bits(e->expires_at));
  if (e->klen) memcpy(p + ENTRY_HEAD, e->key, e->klen);
  if (e->vlen) memcpy(p + ENTRY_HEAD + e->klen, e->value, e->vlen);
  s->len += n;
  s->count++;
  return 0;
}

size_t ac_snapshot_count(const ac_snapshot_t *s) { return s->count; }

size_t ac_snapshot_size(const ac_snapshot_t *s) { return s->len; }

static void fill_header(ac_snapshot_t *s) {
  char *h = s->buf;
  memcpy(h, MAGIC, 8);
  put32(h + 8, AC_SNAPSHOT_VERSION);
  put32(h + 12, 0);
  put64(h + 16, s->count);
  put64(h + 24, s->len - AC_SNAPSHOT_HEADER);
  put32(h + 32, crc(s->buf + AC_SNAPSHOT_HEADER, s->len - AC_SNAPSHOT_HEADER));
  put32(h + 36, crc(h, 36));
}

const char *ac_snapshot_bytes(ac_snapshot_t *s) {
  fill_header(s);
  return s->buf;
}

/* ---- writing ---------------------------------------------------------------- */

/* The paths of one write, made before it starts (the thread pool's side
 * allocates nothing). */
typedef struct {
  char *path, *tmp, *dir;
} paths;

static void paths_free(paths *p) {
  ac__free(p->path);
  ac__free(p->tmp);
  ac__free(p->dir);
}

static char *copy(const char *s, size_t n) {
  char *p = ac__malloc(n + 1);
  if (p != NULL) {
    memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

static int paths_make(paths *p, const char *path) {
  static unsigned counter; /* temporary names of one process differ */
  unsigned n = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
  size_t len = strlen(path);
  const char *slash = strrchr(path, '/');
  p->path = copy(path, len);
  p->tmp = ac__malloc(len + 48);
  p->dir = slash == NULL ? copy(".", 1) : copy(path, slash == path ? 1 : (size_t)(slash - path));
  if (p->path == NULL || p->tmp == NULL || p->dir == NULL) {
    paths_free(p);
    return AC_ENOMEM;
  }
  snprintf(p->tmp, len + 48, "%s.tmp.%ld.%u", path, (long)getpid(), n);
  return 0;
}

static int sys_fail(char *msg, size_t size, const char *step, const char *what) {
  if (size > 0) snprintf(msg, size, "%s %s: %s", step, what, strerror(errno));
  return AC_EIO;
}

/* The crash-safe sequence; on failure the temporary file is removed and
 * the old snapshot left as it was. */
static int write_file(const char *buf, size_t len, const paths *p, char *msg, size_t size) {
  int fd = open(p->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return sys_fail(msg, size, "create", p->tmp);
  size_t off = 0;
  while (off < len) {
    size_t n = len - off < WRITE_CHUNK ? len - off : WRITE_CHUNK;
    ssize_t w = write(fd, buf + off, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) goto fail;
    off += (size_t)w;
  }
  if (fsync(fd) != 0) goto fail;
  if (close(fd) != 0) {
    fd = -1;
    goto fail;
  }
  fd = -1;
  if (rename(p->tmp, p->path) != 0) {
    int rc = sys_fail(msg, size, "rename", p->tmp);
    unlink(p->tmp);
    return rc;
  }
  /* The rename is durable once the folder is: a crash now keeps the new
   * file. */
  int dfd = open(p->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return sys_fail(msg, size, "open folder", p->dir);
  int rc = fsync(dfd) == 0 ? 0 : sys_fail(msg, size, "fsync folder", p->dir);
  close(dfd);
  if (rc == 0 && size > 0) msg[0] = '\0';
  return rc;
fail:
  sys_fail(msg, size, "write", p->tmp);
  if (fd >= 0) close(fd);
  unlink(p->tmp);
  return AC_EIO;
}

int ac_snapshot_write(ac_snapshot_t *s, const char *path, char *msg, size_t msgsize) {
  paths p;
  if (paths_make(&p, path) != 0) {
    if (msgsize > 0) snprintf(msg, msgsize, "out of memory");
    return AC_ENOMEM;
  }
  fill_header(s);
  int rc = write_file(s->buf, s->len, &p, msg, msgsize);
  paths_free(&p);
  return rc;
}

typedef struct {
  uv_work_t req;
  ac_snapshot_t *s;
  paths p;
  ac_snapshot_write_cb cb;
  void *arg;
  int status;
  char msg[512];
} write_job;

static void work(uv_work_t *req) {
  write_job *j = req->data;
  fill_header(j->s); /* the checksums, off the loop's thread too */
  j->status = write_file(j->s->buf, j->s->len, &j->p, j->msg, sizeof j->msg);
}

static void after_work(uv_work_t *req, int status) {
  write_job *j = req->data;
  if (status == UV_ECANCELED) {
    j->status = AC_ECANCELED;
    snprintf(j->msg, sizeof j->msg, "the save was canceled");
  }
  paths_free(&j->p);
  ac_snapshot_write_cb cb = j->cb;
  void *arg = j->arg;
  int st = j->status;
  char msg[sizeof j->msg];
  memcpy(msg, j->msg, sizeof msg);
  ac__free(j);
  cb(arg, st, msg);
}

int ac_snapshot_write_async(ac_snapshot_t *s, uv_loop_t *loop, const char *path,
                            ac_snapshot_write_cb cb, void *arg) {
  write_job *j = ac__calloc(1, sizeof *j);
  if (j == NULL) return AC_ENOMEM;
  if (paths_make(&j->p, path) != 0) {
    ac__free(j);
    return AC_ENOMEM;
  }
  j->req.data = j;
  j->s = s;
  j->cb = cb;
  j->arg = arg;
  int rc = uv_queue_work(loop, &j->req, work, after_work);
  if (rc != 0) {
    paths_free(&j->p);
    ac__free(j);
  }
  return rc;
}

/* ---- reading ------------------------------------------------------------------ */

static int bad(char *msg, size_t size, const char *why) {
  if (size > 0) snprintf(msg, size, "%s", why);
  return AC_EFORMAT;
}

/* One pass over the body: checks every entry (each == NULL) or hands them
 * out. */
static int walk_body(const char *p, size_t left, uint64_t count, ac_snapshot_each_fn each,
                     void *ud, char *msg, size_t size) {
  for (uint64_t i = 0; i < count; i++) {
    if (left < ENTRY_HEAD) return bad(msg, size, "truncated entry header");
    ac_snapshot_entry_t e;
    e.tag = (unsigned char)p[0];
    e.klen = get32(p + 1);
    e.vlen = get32(p + 5);
    e.expires_at = bits_double(get64(p + 9));
    p += ENTRY_HEAD;
    left -= ENTRY_HEAD;
    if (e.tag == 0) return bad(msg, size, "an entry has tag 0");
    if (isnan(e.expires_at)) return bad(msg, size, "an entry's expiry is NaN");
    if (e.klen > left || e.vlen > left - e.klen)
      return bad(msg, size, "an entry is longer than the body");
    e.key = p;
    e.value = p + e.klen;
    p += e.klen + e.vlen;
    left -= e.klen + e.vlen;
    if (each != NULL) {
      int rc = each(ud, &e);
      if (rc != 0) return rc;
    }
  }
  if (left != 0) return bad(msg, size, "bytes after the last entry");
  return 0;
}

int ac_snapshot_parse(const char *data, size_t len, ac_snapshot_each_fn each, void *ud,
                      char *msg, size_t size) {
  if (len < AC_SNAPSHOT_HEADER) {
    if (len >= 8 && memcmp(data, MAGIC, 8) != 0)
      return bad(msg, size, "not an async-cache snapshot (bad magic)");
    return bad(msg, size, "truncated: shorter than the header");
  }
  if (memcmp(data, MAGIC, 8) != 0) return bad(msg, size, "not an async-cache snapshot (bad magic)");
  /* The version before the header's checksum: another version may lay its
   * header out differently. */
  uint32_t version = get32(data + 8);
  if (version != AC_SNAPSHOT_VERSION) {
    if (size > 0)
      snprintf(msg, size, "snapshot format version %u; this build reads version %d",
               (unsigned)version, AC_SNAPSHOT_VERSION);
    return AC_EFORMAT;
  }
  if (get32(data + 36) != crc(data, 36)) return bad(msg, size, "header checksum mismatch: the header is corrupt");
  if (get32(data + 12) != 0) return bad(msg, size, "unknown flags in the header");
  uint64_t count = get64(data + 16), body = get64(data + 24);
  size_t have = len - AC_SNAPSHOT_HEADER;
  if (body > have) return bad(msg, size, "truncated: the body is shorter than the header says");
  if (body < have) return bad(msg, size, "bytes after the body");
  if (count > body / ENTRY_HEAD) return bad(msg, size, "the entry count does not fit the body");
  const char *p = data + AC_SNAPSHOT_HEADER;
  if (get32(data + 32) != crc(p, have)) return bad(msg, size, "checksum mismatch: the body is corrupt");
  int rc = walk_body(p, have, count, NULL, NULL, msg, size);
  if (rc != 0) return rc;
  if (size > 0) msg[0] = '\0';
  return walk_body(p, have, count, each, ud, msg, size);
}

int ac_snapshot_read(const char *path, ac_snapshot_each_fn each, void *ud, char *msg,
                     size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int missing = errno == ENOENT;
    sys_fail(msg, size, "open", path);
    return missing ? AC_ENOENT : AC_EIO;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int rc = sys_fail(msg, size, "stat", path);
    close(fd);
    return rc;
  }
  size_t len = (size_t)st.st_size;
  char *buf = ac__malloc(len ? len : 1);
  if (buf == NULL) {
    close(fd);
    if (size > 0) snprintf(msg, size, "out of memory reading %s", path);
    return AC_ENOMEM;
  }
  size_t off = 0;
  while (off < len) {
    ssize_t r = read(fd, buf + off, len - off);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int rc = sys_fail(msg, size, "read", path);
      close(fd);
      ac__free(buf);
      return rc;
    }
    if (r == 0) break; /* shrank meanwhile: parse what is there */
    off += (size_t)r;
  }
  close(fd);
  int rc = ac_snapshot_parse(buf, off, each, ud, msg, size);
  ac__free(buf);
  return rc;
}
