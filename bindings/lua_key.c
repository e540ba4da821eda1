/* Lua values as store keys: the cases off the fast path (see lkey.h). */
#include <lauxlib.h>
#include <math.h>
#include <string.h>

#include "lkey.h"
#include "ltype.h"

void ac__lkey_check(lua_State *L, int idx, lkey *k, const char *fname) {
  switch (lua_type(L, idx)) {
    case LUA_TSTRING:
    case LUA_TNUMBER:
      if (lkey_fast(L, idx, k)) return;
      {
        lua_Number n = lua_tonumber(L, idx);
        if (isnan(n)) ac__ltype_argerror(L, fname, idx - 1, "key must not be NaN");
        int64_t v;
        if (lkey_integral(n, &v)) {
          memcpy(k->buf, &v, 8);
          k->tag = LKEY_INTEGER;
        } else {
          memcpy(k->buf, &n, 8);
          k->tag = LKEY_FLOAT;
        }
        k->p = k->buf;
        k->len = 8;
        return;
      }
    case LUA_TBOOLEAN:
      k->buf[0] = (char)lua_toboolean(L, idx);
      k->tag = LKEY_BOOLEAN;
      k->p = k->buf;
      k->len = 1;
      return;
    default:
      ac__ltype_argerror(L, fname, idx - 1,
                     lua_pushfstring(L, "key must be a string, number or boolean, got %s",
                                     luaL_typename(L, idx)));
  }
}

void ac__lkey_push(lua_State *L, int tag, const char *p, size_t len) {
  switch (tag) {
    case LKEY_STRING:
      lua_pushlstring(L, p, len);
      return;
    case LKEY_INTEGER: {
      int64_t v;
      memcpy(&v, p, 8);
      lua_pushinteger(L, (lua_Integer)v);
      return;
    }
    case LKEY_FLOAT: {
      lua_Number n;
      memcpy(&n, p, 8);
      lua_pushnumber(L, n);
      return;
    }
    case LKEY_BOOLEAN:
      lua_pushboolean(L, p[0] != 0);
      return;
    default:
      lua_pushlstring(L, p, len);
      return;
  }
}
