#!/usr/bin/env bash
# Attachment throughput and memory (issue #14, docs/BENCHMARKS.md): starts the
# release relay on a free loopback port (SQLite and blobs in a temporary
# directory, rate limits off, cap raised to fit the file), registers alice and
# bob (one Kavro v2 device each, file key store), makes a file of SIZE_MIB
# random MiB, then times `kavro send bob --file` (seal + upload) and bob's
# `kavro inbox` (download + open + check), and prints MB/s, each client's peak
# RSS (/usr/bin/time) against the same commands moving a 1 KiB file (their
# growth), and the relay's RSS growth (VmRSS before and after,
# VmHWM), and the 1-minute load average before each transfer (the machine
# is shared). Checks that the saved file is the same bytes. BIN_DIR picks
# the binaries (A/B runs of two builds).
#
#   cargo build --release -p kavro-server -p kavro-tui
#   SIZE_MIB=1024 scripts/bench_attach.sh
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${SIZE_MIB:-1024}
bin=${BIN_DIR:-target/release}
work=$(mktemp -d)
relay=
trap 'if [ -n "$relay" ]; then kill "$relay" 2>/dev/null || true; fi; rm -rf "$work"' EXIT

cap=$(( (size_mib + 64) * 1024 * 1024 ))
. scripts/relay_lib.sh
start_relay KAVRO_BLOB_MAX_BYTES=$cap KAVRO_BLOB_QUOTA_BYTES=$cap

client() { # client USER ARGS...
  local user=$1; shift
  env -i PATH="$PATH" HOME="$work/$user" KAVRO_SERVER="$url" \
    KAVRO_CONFIG_DIR="$work/$user/config" KAVRO_DATA_DIR="$work/$user/data" \
    KAVRO_KEY_STORE=file KAVRO_PASSWORD=Bench-passw0rd NO_COLOR=1 \
    KAVRO_DOWNLOAD_DIR="$work/downloads" \
    /usr/bin/time -f '%e %M' -o "$work/time.$user" "$bin/kavro" "$@"
}
rss() { awk '/^VmRSS/ {print $2}' "/proc/$relay/status"; }

client alice register alice >/dev/null
client bob register bob >/dev/null
client alice send bob warm-up >/dev/null
client bob inbox >/dev/null
# The clients' baseline: the same commands moving a 1 KiB file (start-up,
# keys, MLS state, one request of each kind); what the big file adds on top
# is their RSS growth.
head -c 1024 /dev/urandom >"$work/small.bin"
client alice send bob --file "$work/small.bin" >/dev/null
read -r _ small_up_kib <"$work/time.alice"
client bob inbox >/dev/null
read -r _ small_down_kib <"$work/time.bob"
head -c "$((size_mib * 1024 * 1024))" /dev/urandom >"$work/file.bin"
sync # the new file's writeback does not compete with the transfer
before=$(rss)

load_up=$(cut -d' ' -f1 /proc/loadavg)
client alice send bob --file "$work/file.bin" >/dev/null
read -r up_s up_kib <"$work/time.alice"
after_up=$(rss)
load_down=$(cut -d' ' -f1 /proc/loadavg)
client bob inbox >/dev/null
read -r down_s down_kib <"$work/time.bob"
after_down=$(rss)
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$relay/status")
cmp "$work/file.bin" "$work/downloads/file.bin"

python3 - "$size_mib" "$up_s" "$up_kib" "$down_s" "$down_kib" "$before" "$after_up" "$after_down" "$hwm" "$load_up" "$load_down" "$bin" "$small_up_kib" "$small_down_kib" <<'PY'
import sys
mib, up_s, up_kib, down_s, down_kib, before, after_up, after_down, hwm, load_up, load_down, bin_dir, small_up, small_down = sys.argv[1:]
mb = int(mib) * 1024 * 1024 / 1e6
print(f"{mib} MiB file, embedded relay (SQLite, local blobs), loopback, binaries in {bin_dir}; the saved file is identical")
print(f"  send (seal + upload + message): {float(up_s):.2f} s = {mb/float(up_s):.0f} MB/s, client peak RSS {int(up_kib)/1024:.1f} MiB, load average {load_up} before")
print(f"  inbox (download + open + check + save): {float(down_s):.2f} s = {mb/float(down_s):.0f} MB/s, client peak RSS {int(down_kib)/1024:.1f} MiB, load average {load_down} before")
print(f"  client peak RSS with a 1 KiB file: send {int(small_up)/1024:.1f} MiB, inbox {int(small_down)/1024:.1f} MiB; growth for this file: send {(int(up_kib)-int(small_up))/1024:.1f} MiB, inbox {(int(down_kib)-int(small_down))/1024:.1f} MiB")
print(f"  relay RSS {int(before)/1024:.1f} MiB before, {int(after_up)/1024:.1f} after the upload, {int(after_down)/1024:.1f} after the download (peak {int(hwm)/1024:.1f})")
PY
