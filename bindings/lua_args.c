/* Canonical encoding of argument lists (see largs.h): a client of the
 * walker (lwalk.h), whose visitor appends each value's bytes to the key.
 *
 * The visitor never raises (the walker's rule).  Its bytes go to the
 * 256-byte buffer in the struct, then to a box: a userdata owning a buffer
 * from ac__malloc (freed by ac__largs_done, or by the box's __gc), grown with
 * ac__realloc, which never raises.  Each state has one shared box,
 * registered under the address of shared_key and reused by every long key
 * (busy while a key is in it): the visitor finds it with a raw registry
 * read, so a long key costs no Lua allocation.  When there is no free
 * shared box (the first long key of the state, or a key encoded while
 * another one is in it: a finalizer running between ac__largs_encode and
 * ac__largs_done), the visitor stops the walk; ac__largs_encode, with the stack
 * back as it was and nothing to release, makes the box (which may raise:
 * the shared one, or a private one referenced from the registry) and walks
 * again from the start.  So a raise never leaves memory or a reference
 * behind: before the box owns memory there is nothing to lose, and after,
 * nothing raises until ac__largs_done or ac__largs_pin, which ac__largs_encode calls
 * itself before raising an error. */
#include <lauxlib.h>
#include <stdint.h>
#include <string.h>

#include "alloc.h"
#include "largs.h"
#include "lwalk.h"

#define BOX_MT "ac.argkey"
#define NEED_BOX LWALK_ECLIENT /* no free box: make one, walk again */
#define BOX_MIN 1024            /* a box's first buffer */
#define SHARED_KEEP 65536       /* the shared box keeps a buffer up to this */

struct largs_box {
  char *p;  /* from ac__malloc, or NULL */
  size_t cap;
  int busy; /* the shared box: a key is in it */
};

static const char shared_key = 0; /* its address keys the shared box */

void ac__largs_init(lua_State *L, largs *k) {
  k->L = L;
  k->p = k->init;
  k->n = 0;
  k->cap = sizeof k->init;
  k->identity = 0;
  k->box = 0;
  k->boxp = NULL;
}

static int box_gc(lua_State *L) {
  largs_box *b = lua_touserdata(L, 1);
  ac__free(b->p);
  b->p = NULL;
  b->cap = 0;
  return 0;
}

/* Pushes a new empty box (raises on memory error, owning nothing yet). */
static largs_box *new_box(lua_State *L) {
  largs_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->p = NULL;
  b->cap = 0;
  b->busy = 0;
  if (luaL_newmetatable(L, BOX_MT)) {
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
  }
  lua_setmetatable(L, -2);
  return b;
}

/* The state's shared box if it exists and is free, else NULL; never
 * raises (a raw read, and no slot to read it into is NULL too). */
static largs_box *free_shared_box(lua_State *L) {
  if (!lua_checkstack(L, 1)) return NULL;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &shared_key);
  largs_box *b = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return b != NULL && !b->busy ? b : NULL;
}

/* Moves the key into box b (shared: marked busy; private: k->box already
 * refers to it), with room for len more bytes: 0 or LWALK_ENOMEM, the key
 * in b either way, so that ac__largs_done releases b. */
static int enter_box(largs *k, largs_box *b, size_t len) {
  if (k->box == 0) b->busy = 1;
  k->boxp = b;
  size_t cap = b->cap > BOX_MIN ? b->cap : BOX_MIN;
  while (cap < k->n + len) {
    if (cap > SIZE_MAX / 2) return LWALK_ENOMEM;
    cap *= 2;
  }
  if (cap != b->cap || b->p == NULL) {
    char *p = ac__realloc(b->p, cap);
    if (p == NULL) return LWALK_ENOMEM;
    b->p = p;
    b->cap = cap;
  }
  if (k->n != 0) memcpy(b->p, k->p, k->n);
  k->p = b->p;
  k->cap = b->cap;
  return 0;
}

/* After the walk stopped with NEED_BOX: makes the shared box if there is
 * none, else (it is busy) a private one, and moves the key into it.  Each
 * step that can raise comes while the box owns no memory and before a
 * reference exists, or (luaL_ref) leaves it garbage for __gc to free. */
static void make_box(largs *k) {
  lua_State *L = k->L;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &shared_key);
  largs_box *b = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (b == NULL) {
    b = new_box(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &shared_key);
  } else if (b->busy) {
    b = new_box(L);
    k->box = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (enter_box(k, b, 0) != 0) {
    ac__largs_done(k);
    luaL_error(L, "not enough memory");
  }
}

void ac__largs_done(largs *k) {
  largs_box *b = k->boxp;
  if (b == NULL) return;
  k->boxp = NULL;
  if (k->box != 0) { /* private: freed now, not at the box's collection */
    ac__free(b->p);
    b->p = NULL;
    b->cap = 0;
    luaL_unref(k->L, LUA_REGISTRYINDEX, k->box);
    k->box = 0;
    return;
  }
  if (b->cap > SHARED_KEEP) { /* a rare huge key: do not keep its buffer */
    ac__free(b->p);
    b->p = NULL;
    b->cap = 0;
  }
  b->busy = 0;
}

void ac__largs_pin(largs *k) {
  largs_box *b = k->boxp;
  if (b == NULL) return;
  lua_State *L = k->L;
  int private = k->box != 0;
  if (private) {
    /* The stack anchors the box from here on: if the copy below raises,
     * the box is garbage and its __gc frees the buffer. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, k->box);
    luaL_unref(L, LUA_REGISTRYINDEX, k->box);
    k->box = 0;
  }
  /* A copy the collector knows the size of.  If it raises, the shared box
   * stays busy: later long keys take private boxes (slower, not wrong). */
  char *copy = lua_newuserdatauv(L, k->n, 0);
  memcpy(copy, b->p, k->n);
  k->boxp = NULL;
  if (private) {
    ac__free(b->p);
    b->p = NULL;
    b->cap = 0;
    lua_replace(L, -2);
  } else {
    if (b->cap > SHARED_KEEP) {
      ac__free(b->p);
      b->p = NULL;
      b->cap = 0;
    }
    b->busy = 0;
  }
  k->p = copy;
  k->cap = k->n;
}

/* ---- the visitor: appending to the key -------------------------------------- */

/* Makes room for len more bytes: 0, NEED_BOX or LWALK_ENOMEM. */
static int grow(largs *k, size_t len) {
  if (k->boxp == NULL) {
    largs_box *b = free_shared_box(k->L);
    return b == NULL ? NEED_BOX : enter_box(k, b, len);
  }
  size_t cap = k->cap;
  while (cap < k->n + len) {
    if (cap > SIZE_MAX / 2) return LWALK_ENOMEM;
    cap *= 2;
  }
  char *p = ac__realloc(k->boxp->p, cap);
  if (p == NULL) return LWALK_ENOMEM; /* the old buffer is still the box's */
  k->boxp->p = k->p = p;
  k->boxp->cap = k->cap = cap;
  return 0;
}

/* A tag byte and len bytes of payload. */
static inline int put(largs *k, char tag, const void *src, size_t len) {
  if (k->n + 1 + len > k->cap) {
    int rc = grow(k, 1 + len);
    if (rc != 0) return rc;
  }
  k->p[k->n] = tag;
  if (len != 0) memcpy(k->p + k->n + 1, src, len);
  k->n += 1 + len;
  return 0;
}

/* A tag byte and a length in LEB128 (one byte below 128, the common case). */
static int put_len(largs *k, char tag, size_t len) {
  if (len < 0x80) {
    char b = (char)len;
    return put(k, tag, &b, 1);
  }
  char tmp[10];
  int i = 0;
  do {
    tmp[i++] = (char)((len & 0x7f) | (len >= 0x80 ? 0x80 : 0));
    len >>= 7;
  } while (len != 0);
  return put(k, tag, tmp, (size_t)i);
}

static int a_nil(void *ud) { return put(ud, 'N', NULL, 0); }

static int a_boolean(void *ud, int b) { return put(ud, b ? 'T' : 'F', NULL, 0); }

static int a_integer(void *ud, lua_Integer i) {
  int64_t v = (int64_t)i;
  return put(ud, 'I', &v, 8);
}

static int a_number(void *ud, lua_Number n) {
  double d = (double)n;
  return put(ud, 'D', &d, 8);
}

static int a_string(void *ud, const char *s, size_t len) {
  largs *k = ud;
  int rc = put_len(k, 'S', len);
  if (rc != 0 || len == 0) return rc;
  if (k->n + len > k->cap && (rc = grow(k, len)) != 0) return rc;
  memcpy(k->p + k->n, s, len);
  k->n += len;
  return 0;
}

static int a_array(void *ud, size_t n) { return put_len(ud, '[', n); }

static int a_map(void *ud, size_t n) { return put_len(ud, '{', n); }

static int a_opaque(void *ud, int type, const void *p) {
  char buf[1 + sizeof p];
  buf[0] = (char)type;
  memcpy(buf + 1, &p, sizeof p);
  return put(ud, 'R', buf, sizeof buf);
}

/* Counts say where arrays and maps end: no end marker. */
static const lwalk_visitor encoder = {a_nil, a_boolean, a_integer, a_number,
                                      a_string, a_array, a_map, NULL,
                                      a_opaque};

/* Integer and string arguments, the common ones, go to the visitor's own
 * callbacks directly: the same bytes as through the walker, for less. */
static int encode(largs *k, int first, int last) {
  lua_State *L = k->L;
  lwalk w;
  w.L = NULL; /* prepared at the first argument that needs it */
  int n = last >= first ? last - first + 1 : 0;
  int rc = put_len(k, 'A', (size_t)n);
  for (int i = first; rc == 0 && i <= last; i++) {
    if (lua_isinteger(L, i)) {
      rc = a_integer(k, lua_tointeger(L, i));
    } else if (lua_type(L, i) == LUA_TSTRING) {
      size_t len;
      const char *s = lua_tolstring(L, i, &len);
      rc = a_string(k, s, len);
    } else {
      if (w.L == NULL) ac__lwalk_init(&w, L, &encoder, k, LWALK_SORTED | LWALK_CANONICAL);
      rc = ac__lwalk_value(&w, i);
    }
  }
  if (w.L != NULL && w.opaque > 0) k->identity = 1;
  return rc;
}

void ac__largs_encode(largs *k, int first, int last) {
  size_t start = k->n;
  int identity = k->identity;
  int rc = encode(k, first, last);
  if (rc == NEED_BOX) {
    k->n = start;
    k->identity = identity;
    make_box(k);
    rc = encode(k, first, last);
  }
  if (rc == 0) return;
  ac__largs_done(k);
  lua_State *L = k->L;
  switch (rc) {
    case LWALK_ECYCLE: luaL_error(L, "cyclic table argument"); break;
    case LWALK_EDEPTH: luaL_error(L, "table argument nested too deeply"); break;
    case LWALK_ETOOBIG: luaL_error(L, "table argument too large"); break;
    default: luaL_error(L, "%s", ac__lwalk_strerror(rc)); break;
  }
}
