/* One walker over Lua values (internal): argument keys and MessagePack.
 *
 * ac__lwalk_value visits a value depth first and tells a visitor what it
 * meets, in a data model of nil, booleans, integers, floats, strings,
 * arrays, maps and opaque values.  Tables are read raw: metatables
 * (__pairs, __index, __len) are ignored.
 *
 *   array   a table whose keys are exactly the integers 1..n (n >= 0; the
 *           empty table is the empty array), visited as array(n), its n
 *           values in index order, end().
 *   map     any other table, visited as map(n), n (key, value) pairs,
 *           end().  A sparse array ({ 1, nil, 3 }: keys 1 and 3) is a map,
 *           so is { [0] = x }.  Lua itself stores a float key with an
 *           integral value as the integer (t[1.0] is t[1], t[-0.0] is
 *           t[0]), so such keys are integers here too; a float key is
 *           never NaN.
 *   numbers an integer goes to integer(), a float to number(), as they
 *           are.  With LWALK_CANONICAL, a float with an integral value in
 *           the int64 range goes to integer() (1.0 is 1, -0.0 is 0) and
 *           every NaN goes to number() as one NaN.
 *   opaque  functions, full and light userdata, threads: opaque(type, p),
 *           p their address (identity).  They cannot be encoded as data:
 *           with LWALK_DATA, or when the visitor has no opaque callback,
 *           meeting one stops the walk with LWALK_EOPAQUE (w->bad_type
 *           says which type).  That is the verdict on a value: a walk with
 *           LWALK_DATA and a visitor of NULL callbacks returns LWALK_OK
 *           only for plain data.
 *
 * With LWALK_SORTED, map pairs come in one canonical order of their keys:
 * by type, in the order of Lua's type tags (boolean, light userdata,
 * number, string, table, function, userdata, thread); then false before
 * true, numbers by value, strings bytewise (a prefix first), tables by a
 * 64-bit hash of their contents (walked sorted and canonical), others by
 * address.  Equal tables thus give equal walks, whatever the insertion
 * order.  Ties (two key tables of equal contents, or a hash collision)
 * are ordered by address: several keys of equal contents, or colliding
 * ones, may come in a different order in two walks of equal tables.
 * Without the flag, pairs come in lua_next order (cheaper, no stack cost).
 *
 * Errors are returned, never raised: the walker calls no Lua function
 * that can raise, keeps its scratch memory (sorting, beyond a few pairs)
 * from ac__malloc and frees it on every path, and leaves the stack as it
 * found it.  So the client chooses: raise (argument keys) or return
 * nil, err (a codec).
 *   LWALK_ECYCLE   a table met again while it is being visited (on the
 *                  current path; the same table twice side by side is fine)
 *   LWALK_EDEPTH   tables nested more than LWALK_MAX_DEPTH deep, or the Lua
 *                  stack cannot grow for the next level
 *   LWALK_ETOOBIG  a sorted map with more pairs than the Lua stack holds
 *                  (two slots a pair, about 500,000 pairs with Lua's
 *                  default LUAI_MAXSTACK)
 *   LWALK_EOPAQUE  an opaque value, refused (see above)
 *   LWALK_ENOMEM   scratch memory could not be allocated
 * A callback returns 0 to go on; anything else stops the walk, which
 * returns that value (LWALK_ENOMEM when the client's own allocation
 * failed, or a code of the client's, at most LWALK_ECLIENT).  Callbacks
 * must not raise, yield, run Lua code or change the tables being walked
 * (a raw read that leaves the stack as it was is fine, after its own
 * lua_checkstack); they may be NULL (nothing to do), except as said for
 * opaque.  A string's bytes are valid while the value walked is.
 *
 * Clients: argument keys (lua_args.c: sorted, canonical, opaque values
 * keyed by address) and, later, the MessagePack codec (a visitor over
 * msgpack_packer; LWALK_DATA, so that what cannot be encoded is refused
 * with a message instead of written). */
#ifndef AC_LWALK_H
#define AC_LWALK_H

#include <lua.h>
#include <stddef.h>

/* Tables nested deeper than this are LWALK_EDEPTH (the argument itself is
 * level 1). */
#define LWALK_MAX_DEPTH 64

enum {
  LWALK_SORTED = 1,    /* map keys in canonical order */
  LWALK_CANONICAL = 2, /* integral floats as integers, one NaN */
  LWALK_DATA = 4       /* opaque values are LWALK_EOPAQUE */
};

enum {
  LWALK_OK = 0,
  LWALK_ECYCLE = -1,
  LWALK_EDEPTH = -2,
  LWALK_ETOOBIG = -3,
  LWALK_EOPAQUE = -4,
  LWALK_ENOMEM = -5,
  LWALK_ECLIENT = -64 /* clients' own codes: this and below */
};

typedef struct lwalk_visitor {
  int (*nil)(void *ud);
  int (*boolean)(void *ud, int b);
  int (*integer)(void *ud, lua_Integer i);
  int (*number)(void *ud, lua_Number n);
  int (*string)(void *ud, const char *s, size_t len);
  int (*array)(void *ud, size_t n); /* n values follow, then end */
  int (*map)(void *ud, size_t n);   /* n (key, value) pairs follow, then end */
  int (*end)(void *ud);
  int (*opaque)(void *ud, int type, const void *p); /* type: LUA_T* */
} lwalk_visitor;

/* A walk in progress.  Lives on the caller's C stack; holds nothing to
 * release between or after walks. */
typedef struct lwalk {
  lua_State *L;
  const lwalk_visitor *v;
  void *ud;
  int flags;
  int depth;        /* tables on the current path */
  int bad_type;     /* LWALK_EOPAQUE: the LUA_T* of the value refused */
  size_t opaque;    /* opaque values visited so far */
  const void *path[LWALK_MAX_DEPTH]; /* the tables on the current path */
} lwalk;

/* Prepares a walk; v (kept by pointer) and ud are passed to every
 * callback.  One lwalk may walk several values in turn (an argument
 * list): w->opaque adds up. */
void ac__lwalk_init(lwalk *w, lua_State *L, const lwalk_visitor *v, void *ud,
                int flags);
/* Visits the value at idx.  Returns LWALK_OK, an LWALK_E* code or a
 * callback's nonzero result; the stack is as it was, in every case. */
int ac__lwalk_value(lwalk *w, int idx);
/* A static message for an LWALK_E* code ("cyclic table", ...). */
const char *ac__lwalk_strerror(int rc);

#endif
