/* Userdata types of the binding: one metatable per type (see ltype.h). */
#include "ltype.h"

void ltype_register(lua_State *L, const char *tname, const char *display,
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
