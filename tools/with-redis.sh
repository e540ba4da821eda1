#!/usr/bin/env bash
# Runs a command with a redis-server of its own on a free loopback port
# (no persistence), stopped afterwards however the command ends.  The
# port is passed as the command's last argument and as $AC_REDIS_PORT.
#
#   tools/with-redis.sh ./build/acache examples/redis_two_instances.lua
set -euo pipefail
dir="$(mktemp -d)"
port=""
for _ in 1 2 3 4 5 6 7 8 9 10; do
  p=$(( 20000 + RANDOM % 40000 ))
  if ! redis-cli -p "$p" PING >/dev/null 2>&1; then port="$p"; break; fi
done
[ -n "$port" ] || { echo "with-redis: no free port" >&2; exit 2; }
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --pidfile "$dir/redis.pid" --dir "$dir" --logfile "$dir/redis.log" >/dev/null
cleanup() {
  [ -f "$dir/redis.pid" ] && kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 1 300); do
  [ "$(redis-cli -p "$port" PING 2>/dev/null)" = PONG ] && break
  sleep 0.01
done
export AC_REDIS_PORT="$port"
"$@" "$port"
