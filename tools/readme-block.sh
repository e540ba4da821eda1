#!/bin/sh
# Prints the first fenced code block of language LANG in a Markdown file;
# given FILE, fails with a diff unless the block and FILE are identical:
#   readme-block.sh LANG README.md [FILE]
set -eu
block() { awk -v open="\`\`\`$1" '$0 == open { f = 1; next } /^```$/ { if (f) exit } f' "$2"; }
if [ $# -ge 3 ]; then
  block "$1" "$2" | diff -u "$3" - || {
    echo "the first \`\`\`$1 block of $2 and $3 differ: make them the same" >&2
    exit 1
  }
else
  block "$1" "$2"
fi
