/* acache: runs a Lua script's main chunk in a coroutine of the cache
 * runtime and drives the event loop until it, and everything it spawned,
 * has finished.
 *
 *   acache [--load DIR]... script.lua [args...]
 *
 * Exit status: 0; 1 when an error reached the error hook or the script
 * never finished (it waits for something that can never happen, reported
 * with the traceback of where it waits); 2 on bad usage or a script that
 * cannot be loaded.
 *
 * An installed acache finds the Lua modules installed with it from its own
 * location (bin/../share/lua/5.4), so a prefix chosen at install time
 * (cmake --install build --prefix X) works.  The paths compiled into the
 * embedding library (the configured prefix's, the source tree's) come
 * after it. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ac_lua.h"

static int usage(FILE *to) {
  fprintf(to,
          "usage: acache [--load DIR]... script.lua [args...]\n"
          "  --load DIR   search DIR for Lua modules first (repeatable)\n");
  return to == stdout ? 0 : 2;
}

/* The module directory next to this executable when it runs from an
 * install tree (AC_LUA_FROM_BINDIR is relative to the bin dir), or NULL in
 * the build tree, whose acache runs the source tree's modules. */
static char *installed_lua_dir(void) {
  char exe[PATH_MAX], dir[PATH_MAX + sizeof AC_LUA_FROM_BINDIR + 16];
  size_t n = sizeof exe; /* uv_exepath resolves symlinks */
  if (uv_exepath(exe, &n) != 0) return NULL;
  char *slash = strrchr(exe, '/');
  if (slash == NULL) return NULL;
  *slash = '\0';
  char *build = realpath(AC_BUILD_BINDIR, NULL);
  int in_build = build != NULL && strcmp(build, exe) == 0;
  free(build);
  if (in_build) return NULL;
  snprintf(dir, sizeof dir, "%s/%s/cache.lua", exe, AC_LUA_FROM_BINDIR);
  if (access(dir, R_OK) != 0) return NULL; /* not an install tree */
  *strrchr(dir, '/') = '\0';
  return realpath(dir, NULL);
}

int main(int argc, char **argv) {
  /* --load dirs, the installed modules' dir, NULL */
  const char **dirs = calloc((size_t)argc + 2, sizeof *dirs);
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
  char *installed = installed_lua_dir();
  if (installed != NULL) dirs[ndirs++] = installed;
  char err[512];
  ac_runtime_options_t opts = {.module_dirs = dirs};
  ac_runtime_t *rt = ac_runtime_new(&opts, err, sizeof err);
  free(dirs); /* package.path holds copies */
  free(installed);
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
