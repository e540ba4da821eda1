/* Userdata types of the binding: one metatable per type, and the argument
 * errors of their methods (see ltype.h). */
#include <math.h>
#include <string.h>

#include "ltype.h"

void ac__ltype_register(lua_State *L, const char *tname, const char *display,
                    const luaL_Reg *methods, const luaL_Reg *meta) {
  if (luaL_newmetatable(L, tname)) {
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "methods");
    lua_setfield(L, -2, "__index");
    luaL_setfuncs(L, meta, 0);
    lua_pushstring(L, display);
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
}

int ac__ltype_argerror(lua_State *L, const char *fname, int arg, const char *msg) {
  return luaL_error(L, "bad argument #%d to '%s' (%s)", arg, fname, msg);
}

void *ac__ltype_check_self(lua_State *L, int idx, const char *tname,
                       const char *fname) {
  void *p = luaL_testudata(L, idx, tname);
  if (p != NULL) return p;
  const char *expected = tname;
  if (luaL_getmetatable(L, tname) == LUA_TTABLE &&
      lua_getfield(L, -1, "__name") == LUA_TSTRING)
    expected = lua_tostring(L, -1);
  const char *got = luaL_typename(L, idx);
  if (luaL_getmetafield(L, idx, "__name") == LUA_TSTRING) got = lua_tostring(L, -1);
  ac__ltype_argerror(L, fname, 1, lua_pushfstring(L, "%s expected, got %s", expected, got));
  return NULL;
}

const char *ac__ltype_describe(lua_State *L, int idx) {
  switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
      if (isnan(lua_tonumber(L, idx))) return lua_pushliteral(L, "nan");
      /* fall through */
    case LUA_TBOOLEAN:
      return luaL_tolstring(L, idx, NULL) ? lua_tostring(L, -1) : "";
    case LUA_TSTRING:
      return lua_pushfstring(L, "string \"%s\"", lua_tostring(L, idx));
    default:
      return lua_pushstring(L, luaL_typename(L, idx));
  }
}

void ac__ltype_check_options(lua_State *L, int idx, const char *who,
                         const char *const allowed[]) {
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    int known = 0;
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -1);
      for (int i = 0; allowed[i] != NULL && !known; i++)
        known = strcmp(k, allowed[i]) == 0;
    }
    if (known) continue;
    luaL_Buffer b;
    const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                       : ac__ltype_describe(L, -1);
    luaL_buffinit(L, &b);
    luaL_addstring(&b, who);
    luaL_addstring(&b, ": unknown option '");
    luaL_addstring(&b, name);
    luaL_addstring(&b, "' (options: ");
    for (int i = 0; allowed[i] != NULL; i++) {
      if (i > 0) luaL_addstring(&b, ", ");
      luaL_addstring(&b, allowed[i]);
    }
    luaL_addstring(&b, ")");
    luaL_pushresult(&b);
    lua_error(L);
  }
}

static int push_string(lua_State *L) {
  lua_pushstring(L, lua_touserdata(L, 1));
  return 1;
}

void ac__ltype_push_safe(lua_State *L, const char *s) {
  lua_pushcfunction(L, push_string);
  lua_pushlightuserdata(L, (void *)s);
  lua_pcall(L, 1, 1, 0); /* the string, or the memory error's message */
}
