#!/usr/bin/env bash
# The chat app's memory with many conversations (issue #12): a fresh relay on a
# free loopback port; alice gets N conversations, half of them Kavro v2 groups
# (with bob, alice writing M lines in each) and half 1:1 v1 chats (another
# user writing M messages to her). Then alice's release app starts in a
# private tmux server (100×30), and its RSS is read from /proc once it has
# settled (online, the groups listed, then 3 s for the first v2 sync).
#
#   scripts/app_rss.sh [CONVERSATIONS=100] [LINES=5]
#
# Prints the RSS (VmRSS and VmHWM, the peak) in MiB. Needs tmux and a release
# build (`cargo build --release -p kavro-server -p kavro-tui`); KAVRO_BIN /
# KAVRO_SERVER_BIN override the binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
conversations=${1:-100}
lines=${2:-5}
groups=$((conversations / 2))
chats=$((conversations - groups))
kavro=${KAVRO_BIN:-target/release/kavro}
relay_bin=${KAVRO_SERVER_BIN:-target/release/kavro-server}
work=$(mktemp -d)
socket="kavro-rss-$$"
relay=
cleanup() {
  tmux -L "$socket" kill-server 2>/dev/null || true
  [ -n "$relay" ] && kill "$relay" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/relay"
KAVRO_DATA_DIR="$work/relay" KAVRO_RATE_LIMITS=off KAVRO_LOG_LEVEL=warn \
  "$relay_bin" --bind 127.0.0.1:0 >"$work/relay.out" 2>"$work/relay.log" &
relay=$!
url=
for _ in $(seq 600); do
  url=$(sed -n 's/^kavro-server listening on //p' "$work/relay.out" | head -n1)
  [ -n "$url" ] && break
  kill -0 "$relay" 2>/dev/null || { cat "$work/relay.log"; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "the relay did not start" >&2; exit 1; }

# `as NAME kavro ARGS…`: runs the client as NAME (own config, data, file key store).
as() {
  local name=$1
  shift
  mkdir -p "$work/$name/config" "$work/$name/data"
  env -i PATH="$PATH" HOME="$work/$name/data" KAVRO_SERVER="$url" \
    KAVRO_CONFIG_DIR="$work/$name/config" KAVRO_DATA_DIR="$work/$name/data" \
    KAVRO_KEY_STORE=file KAVRO_PASSWORD=Corr3ct-horse NO_COLOR=1 "$kavro" "$@"
}

as alice register alice >/dev/null
as bob register bob >/dev/null
echo "seeding $chats 1:1 chats and $groups groups, $lines lines each..." >&2
for c in $(seq "$chats"); do
  as "peer$c" register "peer$c" >/dev/null
  for l in $(seq "$lines"); do
    as "peer$c" send alice "line $l from peer$c: some ordinary chat text" >/dev/null
  done
done
# Alice reads her inbox, so the 1:1 chats are in her history; the groups come
# after it: newest first, they top the list, so seeing one listed means the
# v2 side has loaded.
as alice inbox >/dev/null
for g in $(seq "$groups"); do
  as alice group create "g$g" --member bob >/dev/null
  for l in $(seq "$lines"); do
    as alice send "#g$g" "line $l of group $g: some ordinary chat text" >/dev/null
  done
done

tmux -L "$socket" new-session -d -s alice -x 100 -y 30 \
  "env -i PATH='$PATH' HOME='$work/alice/data' KAVRO_SERVER='$url' \
   KAVRO_CONFIG_DIR='$work/alice/config' KAVRO_DATA_DIR='$work/alice/data' \
   KAVRO_KEY_STORE=file KAVRO_PASSWORD=Corr3ct-horse NO_COLOR=1 '$kavro'; sleep 60"
# Settled: the status bar says online and the groups are listed.
for _ in $(seq 600); do
  screen=$(tmux -L "$socket" capture-pane -p -t alice)
  if grep -q "online" <<<"$screen" && grep -q "#g" <<<"$screen"; then break; fi
  sleep 0.1
done
sleep 3 # the first v2 sync and the list's histories
pid=$(pgrep -n -f "^$kavro\$" || pgrep -n -x kavro)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
shown=$(tmux -L "$socket" capture-pane -p -t alice | grep -c '#g' || true)
echo "conversations=$conversations (groups=$groups, 1:1=$chats) lines=$lines"
echo "list rows on screen with a group: $shown"
awk -v r="$rss" -v h="$hwm" 'BEGIN { printf "app RSS %.1f MiB (peak %.1f MiB)\n", r / 1024, h / 1024 }'
