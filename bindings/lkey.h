/* Lua values as store keys (internal).
 *
 * A key is (tag, bytes).  Strings are used in place, without a copy;
 * numbers are canonical so that 1 and 1.0 are one key (a float with an
 * integral value in the int64 range becomes that integer); booleans are one
 * byte.  The tag keeps types apart: the string "1" and the number 1 differ. */
#ifndef AC_LKEY_H
#define AC_LKEY_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

enum {
  LKEY_STRING = 1,
  LKEY_INTEGER = 2,
  LKEY_FLOAT = 3,
  LKEY_BOOLEAN = 4,
  LKEY_ARGS = 5 /* encoded argument lists of decorated functions */
};

typedef struct {
  int tag;
  const char *p;
  size_t len;
  char buf[8];
} lkey;

/* Converts the value at idx (an argument of method `fname`, after self);
 * on a bad key raises an argument error naming the method (e.g. "get"). */
void ac__lkey_check(lua_State *L, int idx, lkey *k, const char *fname);
/* Pushes the Lua value of a stored key. */
void ac__lkey_push(lua_State *L, int tag, const char *p, size_t len);

/* Is n a whole number in the int64 range? Then *i is it: keys and
 * argument keys store such floats as integers, so 1 == 1.0.  (2^63 is the
 * first float past the range.) */
static inline int lkey_integral(lua_Number n, int64_t *i) {
  if (!(n >= -9223372036854775808.0 && n < 9223372036854775808.0)) return 0;
  if (n != (lua_Number)(int64_t)n) return 0;
  *i = (int64_t)n;
  return 1;
}

/* The fast path, inline: strings and integers, the common keys. */
static inline int lkey_fast(lua_State *L, int idx, lkey *k) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    k->tag = LKEY_STRING;
    k->p = lua_tolstring(L, idx, &k->len);
    return 1;
  }
  if (lua_isinteger(L, idx)) {
    int64_t i = (int64_t)lua_tointeger(L, idx);
    __builtin_memcpy(k->buf, &i, 8);
    k->tag = LKEY_INTEGER;
    k->p = k->buf;
    k->len = 8;
    return 1;
  }
  return 0;
}

static inline void lkey_get(lua_State *L, int idx, lkey *k, const char *fname) {
  if (!lkey_fast(L, idx, k)) ac__lkey_check(L, idx, k, fname);
}

#endif
