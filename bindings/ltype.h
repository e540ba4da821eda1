/* Userdata types of the binding (internal). */
#ifndef AC_LTYPE_H
#define AC_LTYPE_H

#include <lauxlib.h>

/* Registers the metatable `tname` once: `methods` become its __index
 * (also kept in its field "methods", where Lua modules add methods),
 * `meta` are set on it (__gc, __call, ...), and __name is `display`, the
 * name error messages use. Leaves the stack as it was. */
void ltype_register(lua_State *L, const char *tname, const char *display,
                    const luaL_Reg *methods, const luaL_Reg *meta);

#endif
