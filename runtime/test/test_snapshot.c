/* Snapshot files (ac_snapshot.h): round trips, every check of the reader,
 * write failures, the thread-pool write, and the failing allocator. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_harness.h"
#include "test_alloc.h"

#include "ac_error.h"
#include "ac_snapshot.h"

typedef struct {
  int n;
  char keys[8][16];
  double expiry[8];
} seen;

static int collect(void *ud, const ac_snapshot_entry_t *e) {
  seen *s = ud;
  if (s->n < 8) {
    snprintf(s->keys[s->n], sizeof s->keys[0], "%d:%.*s=%.*s", e->tag, (int)e->klen, e->key,
             (int)e->vlen, e->value);
    s->expiry[s->n] = e->expires_at;
  }
  s->n++;
  return 0;
}

static char dir_tmpl[] = "/tmp/ac_snapshot_XXXXXX";

static const char *tmpdir(void) {
  ASSERT_TRUE(mkdtemp(dir_tmpl) != NULL);
  return dir_tmpl;
}

static ac_snapshot_t *three_entries(void) {
  ac_snapshot_t *s = ac_snapshot_new();
  ASSERT_TRUE(s != NULL);
  ac_snapshot_entry_t a = {1, "a", 1, "1", 1, 100.5};
  ac_snapshot_entry_t b = {2, "bb", 2, "", 0, HUGE_VAL};
  ac_snapshot_entry_t c = {5, "", 0, "xyz", 3, 0};
  ASSERT_EQ_INT(ac_snapshot_add(s, &a), 0);
  ASSERT_EQ_INT(ac_snapshot_add(s, &b), 0);
  ASSERT_EQ_INT(ac_snapshot_add(s, &c), 0);
  return s;
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  ASSERT_TRUE(f != NULL);
  fseek(f, 0, SEEK_END);
  *len = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc(*len + 1);
  ASSERT_EQ_UINT(fread(buf, 1, *len, f), *len);
  fclose(f);
  return buf;
}

TEST(write_then_read_round_trip) {
  char path[128];
  snprintf(path, sizeof path, "%s/s.acs", tmpdir());
  ac_snapshot_t *s = three_entries();
  ASSERT_EQ_UINT(ac_snapshot_count(s), 3);
  char msg[256];
  ASSERT_EQ_INT(ac_snapshot_write(s, path, msg, sizeof msg), 0);
  ASSERT_EQ_STR(msg, "");
  ac_snapshot_free(s);
  seen got = {0};
  ASSERT_EQ_INT(ac_snapshot_read(path, collect, &got, msg, sizeof msg), 0);
  ASSERT_EQ_INT(got.n, 3);
  ASSERT_EQ_STR(got.keys[0], "1:a=1");
  ASSERT_EQ_STR(got.keys[1], "2:bb=");
  ASSERT_EQ_STR(got.keys[2], "5:=xyz");
  ASSERT_TRUE(got.expiry[0] == 100.5 && isinf(got.expiry[1]) && got.expiry[2] == 0);
  unlink(path);
  rmdir(dir_tmpl);
}

TEST(add_refuses_bad_entries) {
  ac_snapshot_t *s = ac_snapshot_new();
  ac_snapshot_entry_t bad_tag = {0, "k", 1, "v", 1, 1};
  ac_snapshot_entry_t big_tag = {256, "k", 1, "v", 1, 1};
  ac_snapshot_entry_t nan = {1, "k", 1, "v", 1, NAN};
  ASSERT_EQ_INT(ac_snapshot_add(s, &bad_tag), AC_EINVAL);
  ASSERT_EQ_INT(ac_snapshot_add(s, &big_tag), AC_EINVAL);
  ASSERT_EQ_INT(ac_snapshot_add(s, &nan), AC_EINVAL);
  ASSERT_EQ_UINT(ac_snapshot_count(s), 0);
  ac_snapshot_free(s);
  ac_snapshot_free(NULL);
}

/* Every way a file can be wrong, each with its sentence, and no entry
 * handed out. */
TEST(reader_checks_everything_before_handing_out) {
  char path[128];
  snprintf(path, sizeof path, "%s/s.acs", tmpdir());
  ac_snapshot_t *s = three_entries();
  char msg[256];
  ASSERT_EQ_INT(ac_snapshot_write(s, path, msg, sizeof msg), 0);
  ac_snapshot_free(s);
  size_t len;
  char *good = slurp(path, &len);
  char *bad = malloc(len + 8);
  static const struct {
    const char *what;
    size_t at;    /* byte to change (or the length to cut to) */
    int cut;      /* 1: truncate to `at` bytes */
    const char *msg;
  } cases[] = {
      {"magic", 0, 0, "not an async-cache snapshot (bad magic)"},
      {"version", 8, 0, "snapshot format version"},
      {"header checksum", 20, 0, "header checksum mismatch: the header is corrupt"},
      {"body", 45, 0, "checksum mismatch: the body is corrupt"},
      {"short header", 30, 1, "truncated: shorter than the header"},
      {"short body", 50, 1, "truncated: the body is shorter than the header says"},
      {"empty", 0, 1, "truncated: shorter than the header"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    memcpy(bad, good, len);
    size_t n = len;
    if (cases[i].cut) n = cases[i].at;
    else bad[cases[i].at] ^= 0x10;
    seen got = {0};
    ASSERT_EQ_INT(ac_snapshot_parse(bad, n, collect, &got, msg, sizeof msg), AC_EFORMAT);
    ASSERT_TRUE(strstr(msg, cases[i].msg) == msg);
    ASSERT_EQ_INT(got.n, 0);
  }
  /* Extra bytes after the body. */
  memcpy(bad, good, len);
  bad[len] = 'x';
  ASSERT_EQ_INT(ac_snapshot_parse(bad, len + 1, collect, NULL, msg, sizeof msg), AC_EFORMAT);
  ASSERT_EQ_STR(msg, "bytes after the body");
  free(bad);
  free(good);
  unlink(path);
  rmdir(dir_tmpl);
}

TEST(read_of_a_missing_file_is_enoent) {
  char msg[256];
  ASSERT_EQ_INT(ac_snapshot_read("/nonexistent/x.acs", collect, NULL, msg, sizeof msg), AC_ENOENT);
  ASSERT_TRUE(strstr(msg, "No such file or directory") != NULL);
}

/* A write that cannot happen says why, leaves the old file as it was and
 * no temporary file behind. */
TEST(failed_write_keeps_the_old_file) {
  const char *dir = tmpdir();
  char path[128];
  snprintf(path, sizeof path, "%s/s.acs", dir);
  ac_snapshot_t *s = three_entries();
  char msg[256];
  ASSERT_EQ_INT(ac_snapshot_write(s, path, msg, sizeof msg), 0);
  size_t len;
  char *before = slurp(path, &len);
  if (geteuid() != 0) { /* root writes anywhere: the mode test means nothing */
    ASSERT_EQ_INT(chmod(dir, 0500), 0);
    ASSERT_EQ_INT(ac_snapshot_write(s, path, msg, sizeof msg), AC_EIO);
    ASSERT_TRUE(strstr(msg, "create ") == msg);
    ASSERT_EQ_INT(chmod(dir, 0700), 0);
  }
  char missing[160];
  snprintf(missing, sizeof missing, "%s/no/such/dir/s.acs", dir);
  ASSERT_EQ_INT(ac_snapshot_write(s, missing, msg, sizeof msg), AC_EIO);
  ASSERT_TRUE(strstr(msg, "No such file or directory") != NULL);
  size_t len2;
  char *after = slurp(path, &len2);
  ASSERT_EQ_UINT(len, len2);
  ASSERT_TRUE(memcmp(before, after, len) == 0);
  free(before);
  free(after);
  ac_snapshot_free(s);
  unlink(path);
  ASSERT_EQ_INT(rmdir(dir), 0); /* empty: no temporary file was left */
}

typedef struct {
  int calls, status;
  char msg[256];
} write_outcome;

static void on_written(void *arg, int status, const char *msg) {
  write_outcome *o = arg;
  o->calls++;
  o->status = status;
  snprintf(o->msg, sizeof o->msg, "%s", msg);
}

TEST(write_async_on_the_thread_pool) {
  char path[128];
  snprintf(path, sizeof path, "%s/s.acs", tmpdir());
  uv_loop_t loop;
  ASSERT_EQ_INT(uv_loop_init(&loop), 0);
  ac_snapshot_t *s = three_entries();
  write_outcome o = {0};
  ASSERT_EQ_INT(ac_snapshot_write_async(s, &loop, path, on_written, &o), 0);
  ASSERT_EQ_INT(o.calls, 0); /* never inside the call */
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ_INT(o.calls, 1);
  ASSERT_EQ_INT(o.status, 0);
  ac_snapshot_free(s);
  seen got = {0};
  char msg[256];
  ASSERT_EQ_INT(ac_snapshot_read(path, collect, &got, msg, sizeof msg), 0);
  ASSERT_EQ_INT(got.n, 3);
  ASSERT_EQ_INT(uv_loop_close(&loop), 0);
  unlink(path);
  rmdir(dir_tmpl);
}

/* Each allocation of building and writing, failed in turn: AC_ENOMEM, no
 * leak, and the snapshot stays usable. */
TEST(under_failing_allocator) {
  char path[128];
  snprintf(path, sizeof path, "%s/s.acs", tmpdir());
  install_counting_allocator();
  char big[3000];
  memset(big, 'v', sizeof big);
  for (long n = 1; n <= 10; n++) {
    fail_nth(n);
    ac_snapshot_t *s = ac_snapshot_new();
    int rc = s == NULL ? AC_ENOMEM : 0;
    for (int i = 0; s != NULL && i < 4 && rc == 0; i++) {
      ac_snapshot_entry_t e = {1, "key", 3, big, sizeof big, 1};
      rc = ac_snapshot_add(s, &e);
    }
    char msg[256];
    if (s != NULL && rc == 0) rc = ac_snapshot_write(s, path, msg, sizeof msg);
    disarm_failure();
    ASSERT_TRUE(rc == 0 || rc == AC_ENOMEM);
    ac_snapshot_free(s);
    ASSERT_EQ_INT(live_blocks, 0);
  }
  restore_allocator();
  unlink(path);
  rmdir(dir_tmpl);
}
