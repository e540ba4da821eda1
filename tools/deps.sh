#!/usr/bin/env bash
# Installs the Debian packages async-cache needs to build, test and run its
# demo (only those missing).  Uses sudo when not run as root.
set -euo pipefail
PACKAGES=(build-essential cmake pkg-config lua5.4 liblua5.4-dev libuv1-dev
          libhiredis-dev libmsgpack-dev zlib1g-dev lua-busted redis-server zstd valgrind
          lua-messagepack python3-msgpack strace)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
