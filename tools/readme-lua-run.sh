#!/bin/sh
# Runs the commands the README gives for its Lua quickstart, as written, in
# a directory laid out like the repository root after a build (lua/ and
# build/ there are links to the source tree's lua/ and to BUILD), with the
# quickstart block saved as quickstart.lua:
#   readme-lua-run.sh SOURCE_DIR BUILD_DIR WORK_DIR
# The commands are the indented lines of the "## Lua quickstart" section;
# one of them must run the stock lua5.4.  AC_LUA_PRELOAD, when set, is
# given to each command as LD_PRELOAD (the sanitizer build's lua5.4 needs
# it; this shell does not get it).
set -eu
src=$1 build=$2 work=$3
readme=$src/README.md
rm -rf "$work" && mkdir -p "$work"
ln -s "$src/lua" "$work/lua"
ln -s "$build" "$work/build"
sh "$src/tools/readme-block.sh" lua "$readme" > "$work/quickstart.lua"
awk '/^## / { f = ($0 == "## Lua quickstart") } /^### / { f = 0 }
     f && /^    [^ ]/ { sub(/^    /, ""); print }' "$readme" > "$work/commands"
grep -q 'lua5\.4 ' "$work/commands" || {
  echo "README: no lua5.4 command in the Lua quickstart section" >&2
  exit 1
}
unset LUA_PATH LUA_CPATH LUA_PATH_5_4 LUA_CPATH_5_4 LUA_INIT LUA_INIT_5_4 LD_LIBRARY_PATH
status=0
while IFS= read -r cmd; do
  echo "\$ $cmd"
  rc=0
  out=$(cd "$work" && { [ -z "${AC_LUA_PRELOAD:-}" ] || export LD_PRELOAD="$AC_LUA_PRELOAD"; } &&
        eval "$cmd" 2>&1 </dev/null) || rc=$?
  echo "$out"
  if [ $rc -ne 0 ]; then
    echo "exit status $rc" >&2; status=1
  else
    case $out in
      0.2*) ;;
      *) echo "expected the hit rate (0.2...)" >&2; status=1 ;;
    esac
  fi
done < "$work/commands"
exit $status
