#include <stdio.h>
#include <ac_lua.h>

int main(void) {
  char err[256];
  const char *dirs[] = { "scripts", NULL };          /* your Lua modules */
  ac_runtime_options_t o = { .loop = NULL, .module_dirs = dirs };
  ac_runtime_t *rt = ac_runtime_new(&o, err, sizeof err);
  if (!rt) {
    fprintf(stderr, "host: %s\n", err);
    return 1;
  }
  if (ac_runtime_dofile(rt, "scripts/game.lua", 0, NULL, err, sizeof err)) {
    fprintf(stderr, "host: %s\n", err);               /* cannot load it */
    ac_runtime_free(rt);
    return 1;
  }
  while (ac_runtime_step(rt)) {                       /* once per frame */
    /* ... render the frame ... */
  }
  unsigned failed = ac_runtime_errors(rt);            /* printed to stderr */
  ac_runtime_free(rt);                                /* closes every handle */
  return failed ? 1 : 0;
}
