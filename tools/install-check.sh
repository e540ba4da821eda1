#!/bin/sh
# Installs a build into a fresh prefix and uses it as a user would, with
# nothing pointing back at the build or source tree:
#   - the README's C host, compiled with the README's compile line
#     (pkg-config against the prefix), runs without ldconfig or
#     LD_LIBRARY_PATH;
#   - a host of the core alone links the shared library (async-cache.pc)
#     with an rpath and runs;
#   - the installed acache runs examples/quickstart.lua with the modules
#     installed next to it;
#   - the stock lua5.4 runs it with LUA_PATH/LUA_CPATH into the prefix.
#
#   install-check.sh CMAKE SOURCE_DIR BUILD_DIR WORK_DIR
#
# Environment: CC, the compiler for `cc` in the compile line; AC_HOST_CFLAGS,
# flags added to it (the sanitizer build's archives need -fsanitize=...);
# AC_LUA_PRELOAD, given to lua5.4 as LD_PRELOAD (sanitizer build).
set -eu
cmake=$1 src=$2 build=$3 work=$4
fail() { echo "install-check: $*" >&2; exit 1; }
unset LD_LIBRARY_PATH LUA_PATH LUA_CPATH LUA_PATH_5_4 LUA_CPATH_5_4 LUA_INIT LUA_INIT_5_4

rm -rf "$work" && mkdir -p "$work/prefix" "$work/host/scripts"
prefix=$(cd "$work/prefix" && pwd -P)
"$cmake" --install "$build" --prefix "$prefix" > "$work/install.log"
pc=$(find "$prefix" -name async-cache-lua.pc)
[ -n "$pc" ] || fail "no async-cache-lua.pc under $prefix"
PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_PATH

echo "== the README's C host, built against $prefix"
sh "$src/tools/readme-block.sh" c "$src/README.md" > "$work/host/host.c"
cp "$src/examples/scripts/game.lua" "$work/host/scripts/"
line=$(sed -n 's/^    \(cc host\.c .*\)$/\1/p' "$src/README.md")
[ -n "$line" ] || fail "README: no 'cc host.c ...' compile line"
cc() { command ${CC:-cc} ${AC_HOST_CFLAGS:-} "$@"; }
echo "\$ $line"
(cd "$work/host" && eval "$line")
if command -v readelf > /dev/null; then
  ! readelf -d "$work/host/host" | grep -q 'NEEDED.*libasynccache' ||
    fail "the host links a shared libasynccache"
fi
out=$(cd "$work/host" && ./host) || fail "the host failed: $out"
echo "$out"
case $out in *"game: asset:hero.png for 3 entities, 1 load"*) ;; *) fail "unexpected output" ;; esac

echo "== a C host of the core alone (async-cache: the shared library, with an rpath)"
cat > "$work/host/core.c" <<'C'
#include <stdio.h>
#include <ac.h>
int main(void) { puts(ac_strerror(AC_ENOMEM)); return 0; }
C
(cd "$work/host" && cc core.c $(pkg-config --cflags --libs async-cache) \
   -Wl,-rpath,"$(pkg-config --variable=libdir async-cache)" -o core)
out=$(cd "$work/host" && ./core) || fail "the core host failed: $out"
[ "$out" = "out of memory" ] || fail "unexpected output: $out"
echo "$out"

cat > "$work/where.lua" <<'LUA'
local _, lua_file = require "cache"
print(lua_file)
LUA

echo "== $prefix/bin/acache"
where=$("$prefix/bin/acache" "$work/where.lua")
echo "loads $where"
case $where in "$prefix"/*) ;; *) fail "acache loaded cache from $where" ;; esac
"$prefix/bin/acache" "$src/examples/quickstart.lua" > "$work/acache.out" ||
  fail "acache examples/quickstart.lua failed"
grep "hit_rate=" "$work/acache.out"

echo "== lua5.4 with LUA_PATH/LUA_CPATH into $prefix"
LUA_PATH="$(pkg-config --variable=luadir async-cache-lua)/?.lua;;"
LUA_CPATH="$(pkg-config --variable=luacdir async-cache-lua)/?.so;;"
export LUA_PATH LUA_CPATH
echo "LUA_PATH=$LUA_PATH LUA_CPATH=$LUA_CPATH"
lua54() ( [ -z "${AC_LUA_PRELOAD:-}" ] || export LD_PRELOAD="$AC_LUA_PRELOAD"; exec lua5.4 "$@" )
where=$(lua54 -e 'local _, c = require "cache.core"; local _, l = require "cache"; print(c); print(l)')
echo "loads" $where
for f in $where; do
  case $f in "$prefix"/*) ;; *) fail "lua5.4 loaded $f" ;; esac
done
lua54 "$src/examples/quickstart.lua" > "$work/lua54.out" || fail "lua5.4 examples/quickstart.lua failed"
grep "hit_rate=" "$work/lua54.out"
echo "install-check: ok"
