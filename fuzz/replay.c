/* Runs a fuzz target over files, without libFuzzer: the main() that the
 * normal build links with each fuzz/fuzz_<name>.c, so that CTest replays
 * the checked-in corpus (and the sanitizer build replays it under ASan).
 *
 *   replay_<name> PATH...
 *
 * Each PATH is a file, or a directory whose regular files are all
 * replayed (not recursively), in name order so that runs are
 * reproducible.  Every input is copied into a buffer of exactly its size,
 * as libFuzzer does, so that ASan sees a read one byte past the end.
 * Exits 0 after the last input; 2 when a path cannot be read or no input
 * was found at all (a replay of nothing would pass without testing
 * anything).  A target's failed check aborts the process. */
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
    return -1;
  }
  size_t cap = 4096, len = 0;
  uint8_t *buf = malloc(cap);
  for (;;) {
    if (buf == NULL) {
      fprintf(stderr, "replay: %s: out of memory\n", path);
      fclose(f);
      return -1;
    }
    len += fread(buf + len, 1, cap - len, f);
    if (len < cap) break;
    uint8_t *bigger = realloc(buf, cap *= 2);
    if (bigger == NULL) free(buf);
    buf = bigger;
  }
  int failed = ferror(f);
  fclose(f);
  if (failed) {
    fprintf(stderr, "replay: %s: read error\n", path);
    free(buf);
    return -1;
  }
  /* Exactly len bytes (none for an empty file): an over-read is seen. */
  uint8_t *exact = malloc(len ? len : 1);
  if (exact == NULL) {
    free(buf);
    return -1;
  }
  memcpy(exact, buf, len);
  free(buf);
  LLVMFuzzerTestOneInput(exact, len);
  free(exact);
  return 0;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replays the regular files of dir; returns how many, or -1. */
static long replay_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) {
    fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
    return -1;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 64;
      char **more = realloc(names, cap * sizeof *names);
      if (more == NULL) break;
      names = more;
    }
    size_t len = strlen(dir) + strlen(e->d_name) + 2;
    if ((names[n] = malloc(len)) == NULL) break;
    snprintf(names[n++], len, "%s/%s", dir, e->d_name);
  }
  closedir(d);
  if (n > 0) qsort(names, n, sizeof *names, by_name);
  long count = 0;
  for (size_t i = 0; i < n; i++) {
    struct stat st;
    if (count >= 0 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode))
      count = replay_file(names[i]) == 0 ? count + 1 : -1;
    free(names[i]);
  }
  free(names);
  return count;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s FILE-OR-DIRECTORY...\n", argv[0]);
    return 2;
  }
  long total = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
      return 2;
    }
    long n = S_ISDIR(st.st_mode) ? replay_dir(argv[i]) : replay_file(argv[i]) == 0 ? 1 : -1;
    if (n < 0) return 2;
    total += n;
  }
  if (total == 0) {
    fprintf(stderr, "replay: no input found\n");
    return 2;
  }
  printf("replayed %ld inputs\n", total);
  return 0;
}
