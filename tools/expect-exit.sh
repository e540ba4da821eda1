#!/bin/sh
# Runs a command and checks its exit status and what it printed:
#   expect-exit.sh STATUS PATTERN COMMAND [ARGS...]
# passes when COMMAND exits with STATUS and its output (stdout and stderr)
# matches the extended regular expression PATTERN (across lines).
set -u
want=$1 pattern=$2
shift 2
out=$("$@" 2>&1)
got=$?
printf '%s\n' "$out"
if [ "$got" -ne "$want" ]; then
  echo "expect-exit: exit status $got, expected $want" >&2
  exit 1
fi
if ! printf '%s\n' "$out" | grep -Ezq -- "$pattern"; then
  echo "expect-exit: output does not match /$pattern/" >&2
  exit 1
fi
