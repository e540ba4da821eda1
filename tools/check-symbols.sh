#!/bin/sh
# Every global symbol the static archives define is ac_ (public API), ac__
# (internal) or luaopen_cache_* (the Lua module's entry point), so linking
# them into a host cannot clash with the host's own symbols (the
# sanitizer build's own __odr_asan markers aside):
#   check-symbols.sh LIB.a...
set -eu
status=0
for lib in "$@"; do
  bad=$(nm -g --defined-only "$lib" | awk 'NF == 3 { print $3 }' |
        grep -Ev '^(ac_|luaopen_cache_|__odr_asan[._]|__asan_)' || true)
  if [ -n "$bad" ]; then
    echo "$lib: global symbols without the ac_/ac__ prefix:" >&2
    echo "$bad" >&2
    status=1
  fi
done
[ "$status" -eq 0 ] && echo "every global symbol of $* has the ac_ prefix"
exit "$status"
