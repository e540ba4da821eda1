/* Canonical keys for argument lists (internal).
 *
 * Decorated functions are cached by their arguments.  ac__largs_encode turns a
 * range of stack values into bytes such that equal arguments give equal
 * bytes, by walking them (lwalk.h: sorted map keys, canonical numbers):
 *   nil 'N', false 'F', true 'T'
 *   numbers 'I' + int64 when integral and in range (so 1 == 1.0, -0.0 ==
 *     0), else 'D' + the double (every NaN encoded alike)
 *   strings 'S' + length (LEB128) + bytes
 *   arrays (keys exactly 1..n) '[' + n (LEB128) + the n values
 *   other tables '{' + their pair count (LEB128) + the (key, value) pairs
 *     in the walker's canonical key order (by contents, nested, metatables
 *     ignored; a cycle is an error)
 *   functions, userdata, threads: 'R' + type + address (identity), also
 *     inside tables; the caller must keep such arguments alive as long as
 *     the key is in use (k->identity says there were some).
 * The argument count is encoded first, so trailing and middle nils count;
 * every value's encoding says where it ends, so different lists give
 * different bytes.
 *
 * The key lives in the struct (init, on the C stack) up to sizeof init
 * bytes, else in a box: a userdata owning a buffer from the core's
 * allocator, the state's shared one (kept in the registry, reused) or, if
 * that one is in use, a private one referenced from the registry.  No Lua
 * error leaks a box or a reference: ac__largs_encode releases the box before
 * it raises, and between ac__largs_encode and ac__largs_done or ac__largs_pin the
 * caller must call nothing that can raise. */
#ifndef AC_LARGS_H
#define AC_LARGS_H

#include <lua.h>
#include <stddef.h>

typedef struct largs_box largs_box;

typedef struct {
  lua_State *L;
  char *p;          /* the key's bytes: init, the box's buffer or a pin */
  size_t n, cap;
  int identity;     /* an argument was keyed by identity */
  int box;          /* registry ref of a private boxp, or 0 */
  largs_box *boxp;  /* the box the key is in, or NULL */
  char init[256];
} largs;

/* Starts an empty key (pushes nothing). */
void ac__largs_init(lua_State *L, largs *k);
/* Releases the box the key grew into (keys over 256 bytes); k->p is
 * invalid afterwards.  Never raises. */
void ac__largs_done(largs *k);
/* For a key used across a yield: moves a grown key to a userdata at the
 * top of the stack (pushes it, or nothing when the key never grew), so it
 * lives as long as the calling C frame; the box is released.  Needs two
 * free stack slots; may raise a memory error, leaking nothing. */
void ac__largs_pin(largs *k);
/* Encodes the values at first..last (absolute indices; an empty range is
 * a call without arguments).  Raises "cyclic table argument", "table
 * argument nested too deeply" (more than LWALK_MAX_DEPTH levels), "table
 * argument too large" or "not enough memory" as Lua errors, with the box
 * released. */
void ac__largs_encode(largs *k, int first, int last);

#endif
