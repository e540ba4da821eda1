/* Userdata types of the binding, and the argument errors every method
 * raises (internal). */
#ifndef AC_LTYPE_H
#define AC_LTYPE_H

#include <lauxlib.h>

/* Registers the metatable `tname` once: `methods` become its __index
 * (also kept in its field "methods", where Lua modules add methods),
 * `meta` are set on it (__gc, __call, ...), and __name is `display`, the
 * name error messages use. Leaves the stack as it was. */
void ac__ltype_register(lua_State *L, const char *tname, const char *display,
                    const luaL_Reg *methods, const luaL_Reg *meta);

/* Raises "bad argument #arg to 'fname' (msg)".  Unlike luaL_argerror it
 * names the function itself, so the message is the same however the
 * method was called (c:get(...), pcall(c.get, c, ...), a stored
 * reference).  arg counts the arguments after self, as a method call
 * reads them. */
int ac__ltype_argerror(lua_State *L, const char *fname, int arg, const char *msg);

/* The userdata at idx when its metatable is `tname`; raises
 * "bad argument #1 to 'fname' (<display> expected, got <type>)" otherwise. */
void *ac__ltype_check_self(lua_State *L, int idx, const char *tname,
                       const char *fname);

/* Pushes the value at idx as error messages show it: numbers as written
 * (NaN as "nan", whatever its sign bit), strings quoted with their type,
 * other values by type name.  Returns the pushed string. */
const char *ac__ltype_describe(lua_State *L, int idx);

/* Checks the keys of the options table at idx against `allowed` (a NULL
 * terminated list); an unknown one raises "<who>: unknown option 'x'
 * (options: a, b, c)".  Reads the table raw: no metamethod runs. */
void ac__ltype_check_options(lua_State *L, int idx, const char *who,
                         const char *const allowed[]);

/* Pushes the string s, or, when even that allocation fails, Lua's own
 * "not enough memory" message: never raises (for code that runs where an
 * error must not escape, such as settling a load).  Needs one free stack
 * slot. */
void ac__ltype_push_safe(lua_State *L, const char *s);

#endif
