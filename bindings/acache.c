/* acache: runs a Lua script's main chunk in a coroutine of the cache
 * runtime and drives the event loop until it, and everything it spawned,
 * has finished.
 *
 *   acache [--load DIR]... script.lua [args...]
 *
 * Exit status: 0; 1 when an error reached the error hook or the script
 * never finished (it waits for something that can never happen, reported
 * with the traceback of where it waits); 2 on bad usage or a script that
 * cannot be loaded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ac_lua.h"

static int usage(FILE *to) {
  fprintf(to,
          "usage: acache [--load DIR]... script.lua [args...]\n"
          "  --load DIR   search DIR for Lua modules first (repeatable)\n");
  return to == stdout ? 0 : 2;
}

int main(int argc, char **argv) {
  const char **dirs = calloc((size_t)argc + 1, sizeof *dirs);
  if (dirs == NULL) return 2;
  int ndirs = 0, i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (strcmp(argv[i], "--load") == 0 && i + 1 < argc) {
      dirs[ndirs++] = argv[++i];
    } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      free(dirs);
      return usage(stdout);
    } else {
      fprintf(stderr, "acache: unknown option '%s'\n", argv[i]);
      free(dirs);
      return usage(stderr);
    }
  }
  if (i >= argc) {
    free(dirs);
    return usage(stderr);
  }
  char err[512];
  ac_runtime_options_t opts = {.module_dirs = dirs};
  ac_runtime_t *rt = ac_runtime_new(&opts, err, sizeof err);
  free(dirs);
  if (rt == NULL) {
    fprintf(stderr, "acache: %s\n", err);
    return 2;
  }
  if (ac_runtime_dofile(rt, argv[i], argc - i - 1, argv + i + 1, err, sizeof err) != 0) {
    fprintf(stderr, "acache: %s\n", err);
    ac_runtime_free(rt);
    return 2;
  }
  int status = ac_runtime_run(rt) != 0 || ac_runtime_errors(rt) > 0 ? 1 : 0;
  ac_runtime_free(rt);
  return status;
}
