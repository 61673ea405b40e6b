#!/usr/bin/env bash
# Builds Kavro, starts the relay with its embedded defaults (SQLite in your data
# directory) on http://127.0.0.1:8000 unless one already answers there, and
# opens the chat app against it. The relay this script started stops when you
# quit the app. Arguments are passed to `kavro` (e.g. `--profile bob`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet -p kavro-server -p kavro-tui
relay=
if ! (exec 3<>/dev/tcp/127.0.0.1/8000) 2>/dev/null; then
  log="${TMPDIR:-/tmp}/kavro-relay-$$.log"
  target/debug/kavro-server >"$log" 2>&1 &
  relay=$!
  trap 'kill "$relay" 2>/dev/null || true' EXIT
  for _ in $(seq 100); do
    grep -q "listening on" "$log" 2>/dev/null && break
    kill -0 "$relay" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.1
  done
  echo "relay started on http://127.0.0.1:8000 (log: $log)"
fi
target/debug/kavro "$@"
