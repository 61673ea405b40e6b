#!/usr/bin/env bash
# Whole-process time of `kavro send '#GROUP'` to a group of 10 devices
# (issue #12, docs/BENCHMARKS.md): starts the release relay on a free
# loopback port (SQLite in a temporary directory, rate limits off), registers
# 10 users with the release `kavro` (one device each, file key store), lets
# the first create a group of all 10, then times RUNS sends by the first
# (each a new process: unlock, device session, queue sync, key package
# count, encrypt, outbox, post) and prints mean, p50, p95, min and max.
#
#   cargo build --release -p kavro-server -p kavro-tui
#   RUNS=100 nice -n 10 scripts/bench_v2_send.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-50}
devices=10
bin=${BIN_DIR:-target/release}
work=$(mktemp -d)
relay=
trap 'if [ -n "$relay" ]; then kill "$relay" 2>/dev/null || true; fi; rm -rf "$work"' EXIT

. scripts/relay_lib.sh
start_relay

client() { # client USER ARGS...: the release client in USER's own profile
  local user=$1; shift
  env -i PATH="$PATH" HOME="$work/$user" KAVRO_SERVER="$url" \
    KAVRO_CONFIG_DIR="$work/$user/config" KAVRO_DATA_DIR="$work/$user/data" \
    KAVRO_KEY_STORE=file KAVRO_PASSWORD=Bench-passw0rd NO_COLOR=1 \
    "$bin/kavro" "$@"
}

members=()
for i in $(seq 1 "$devices"); do
  client "user$i" register "user$i" >/dev/null
  if [ "$i" -gt 1 ]; then members+=(--member "user$i"); fi
done
client user1 group create bench "${members[@]}" >/dev/null
client user1 send '#bench' warm-up >/dev/null
devices_in_group=$(client user1 --json group list | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["devices"])')

times="$work/times"
for i in $(seq 1 "$runs"); do
  start=$(date +%s%N)
  client user1 send '#bench' "message $i of the benchmark, about sixty bytes long..." >/dev/null
  end=$(date +%s%N)
  echo $(( (end - start) / 1000 )) >>"$times"
done

python3 - "$times" "$runs" "$devices_in_group" <<'PY'
import statistics, sys
micros = sorted(int(line) for line in open(sys.argv[1]))
ms = [m / 1000 for m in micros]
def pct(p):
    return ms[min(len(ms) - 1, int(round(p / 100 * (len(ms) - 1))))]
print(f"kavro send '#bench' to a group of {sys.argv[3]} devices, {sys.argv[2]} runs (whole process, wall clock):")
print(f"  mean {statistics.mean(ms):.1f} ms  p50 {pct(50):.1f} ms  p95 {pct(95):.1f} ms  min {ms[0]:.1f} ms  max {ms[-1]:.1f} ms")
PY
