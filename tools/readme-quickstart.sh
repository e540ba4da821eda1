#!/bin/sh
# Runs the README's first Lua code block as written:
#   readme-quickstart.sh README.md OUT.lua ACACHE
set -eu
awk '/^```lua$/ { f = 1; next } /^```$/ { if (f) exit } f' "$1" > "$2"
exec "$3" "$2"
