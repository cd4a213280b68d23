#!/usr/bin/env bash
# Builds the SQLite extension for statement deadlines (libs/storage/native/statement_guard.c) into
# dist/native/statement_guard.so, against the SQLite headers better-sqlite3 ships. Part of
# `npm run build`. Needs a C compiler (`cc`; the same toolchain better-sqlite3's source build uses).
# Without one the build says so and goes on: replicas then run without statement deadlines and
# log why at start. Linked with -z nodelete: SQLite dlcloses an extension with the last connection
# that loaded it, and the watchdog thread runs on in its code.
set -euo pipefail
cd "$(dirname "$0")/.."
src=libs/storage/native/statement_guard.c
out=dist/native/statement_guard.so
headers=node_modules/better-sqlite3/deps/sqlite3
cc="${CC:-}"
if [ -z "$cc" ]; then
  for c in cc gcc clang; do
    if command -v "$c" >/dev/null 2>&1; then cc="$c"; break; fi
  done
fi
if [ -z "$cc" ]; then
  echo "build-native: no C compiler (cc, gcc, clang): $out not built; statement deadlines are off" >&2
  exit 0
fi
mkdir -p "$(dirname "$out")"
if [ -f "$out" ] && [ "$out" -nt "$src" ] && [ "$out" -nt "$headers/sqlite3ext.h" ] && [ "$out" -nt "$0" ]; then exit 0; fi
"$cc" -O2 -fPIC -shared -Wall -Wextra -Werror -Wl,-z,nodelete -I "$headers" -o "$out.tmp" "$src" -lpthread
mv "$out.tmp" "$out"
