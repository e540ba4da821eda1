/* Canonical keys for argument lists (internal).
 *
 * Decorated functions are cached by their arguments.  largs_encode turns a
 * range of stack values into bytes such that equal arguments give equal
 * bytes:
 *   nil 'N', false 'F', true 'T'
 *   numbers 'I' + int64 when integral and in range (so 1 == 1.0), else
 *     'D' + the double (every NaN encoded alike)
 *   strings 'S' + length (LEB128) + bytes
 *   tables '{' + their (key, value) pairs sorted by the key's encoding + '}'
 *     (by contents, nested, metatables ignored; a cycle is an error)
 *   functions, userdata, threads: 'R' + type + address (identity); the
 *     caller must keep such arguments alive as long as the key is in use.
 * The argument count is encoded first, so trailing and middle nils count. */
#ifndef AC_LARGS_H
#define AC_LARGS_H

#include <lua.h>
#include <stddef.h>

typedef struct {
  lua_State *L;
  int box;        /* registry ref of the grown buffer, or 0 */
  char *p;
  size_t n, cap;
  int identity;   /* an argument was keyed by identity */
  int depth;
  const void *visiting[64]; /* tables being encoded: cycle detection */
  char init[256];
} largs;

/* Starts an empty key (pushes nothing). */
void largs_init(lua_State *L, largs *k);
/* Releases a buffer the key grew into (keys over 256 bytes); k->p is
 * invalid afterwards. */
void largs_done(largs *k);
/* For a key used across a yield: moves a grown buffer's anchor from the
 * registry to the top of the stack (pushes it, or nothing when the key
 * never grew), so it lives as long as the calling C frame. */
void largs_pin(largs *k);
/* Encodes the values at first..last (absolute indices; an empty range is
 * a call without arguments).  Raises "cyclic table argument" or "table
 * argument nested too deeply" as Lua errors. */
void largs_encode(largs *k, int first, int last);

#endif
