#!/usr/bin/env bash
# The relay goals of issues #11 and #15 in one go (docs/BENCHMARKS.md):
# for each backend (SQLite, then PostgreSQL + Redis) a fresh release relay
# on a free loopback port, then
#   groups of 10 and of 2 at 200 group messages/s    (#11: cost in v1 sends, p99)
#   ceiling at 32 connections                        (#15: ratio to pgbench's plain insert)
#   send at half the ceiling run's rate              (#15: p99 at half the maximum)
#   send to 10 users empty vs 10,000 pending         (#15: within 10 %)
#   delivery at 200/s                                (#15: long-poll latency)
# Prints each kavro-bench report and the load average before each run (the
# machine may be shared). OUT keeps the reports (default: a temporary dir).
#
#   cargo build --release -p kavro-server -p kavro-bench
#   scripts/bench_relay_goals.sh            # BACKENDS="sqlite postgres" by default
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN_DIR:-target/release}
out=${OUT:-$(mktemp -d)}
pg=${PG_URL:-postgres://postgres@127.0.0.1:5432}
redis=${REDIS_URL:-redis://127.0.0.1:6379}
duration=${DURATION:-15s}
work=$(mktemp -d)
relay=
db=
cleanup() {
  if [ -n "$relay" ]; then kill "$relay" 2>/dev/null || true; wait "$relay" 2>/dev/null || true; fi
  if [ -n "$db" ]; then psql "$pg/postgres" -qc "drop database if exists $db" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
. scripts/relay_lib.sh

run() { # run NAME ARGS...: one kavro-bench run, its report kept as NAME.txt
  local name=$1; shift
  printf '\n== %s %s (load average %s)\n' "$backend" "$name" "$(cut -d' ' -f1 /proc/loadavg)"
  "$bin/kavro-bench" --url "$url" --duration "$duration" --warmup 2s --server-pid "$relay" "$@" \
    | tee "$out/$backend-$name.txt"
}

for backend in ${BACKENDS:-sqlite postgres}; do
  extra=(KAVRO_MAX_PENDING_PER_RECIPIENT=100000 KAVRO_MAX_PENDING_PER_SENDER=100000)
  rm -rf "$work/relay"
  if [ "$backend" = postgres ]; then
    db="kavro_goals_$$"
    psql "$pg/postgres" -qc "create database $db" >/dev/null
    secrets=$("$bin/kavro-server" gen-secrets)
    extra+=(KAVRO_DATABASE_URL="$pg/$db" KAVRO_REDIS_URL="$redis" KAVRO_REDIS_PREFIX="$db" $secrets)
  fi
  start_relay "${extra[@]}"
  run groups10 --users 40 -c 8 --rate 200 groups --group-size 10
  run groups2 --users 40 -c 8 --rate 200 groups --group-size 2
  run ceiling --users 100 -c 32 ceiling --pg-url "$pg/postgres"
  max=$(sed -n 's/.*relay sends per s[^0-9]*\([0-9.,]*\).*/\1/p' "$out/$backend-ceiling.txt" | tr -d , | head -n 1)
  half=$(python3 -c "print(max(1, int(float('${max:-2}') / 2)))")
  run half-send --users 100 -c 32 --rate "$half" send
  run empty --users 10 -c 32 send
  run pending --users 10 -c 32 send --pending 10000
  run delivery --users 100 -c 32 --rate 200 delivery
  kill "$relay"; wait "$relay" 2>/dev/null || true; relay=
  if [ -n "$db" ]; then
    redis-cli -u "$redis" --scan --pattern "$db*" | xargs -r redis-cli -u "$redis" del >/dev/null
    psql "$pg/postgres" -qc "drop database $db" >/dev/null; db=
  fi
done
echo "reports in $out"
