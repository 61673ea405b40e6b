#!/usr/bin/env bash
# Makes assets/screenshot.png from a real run: a relay and two `kavro` chat
# apps in a private tmux server, a short conversation typed into the apps,
# then Alice's screen captured with its colours and rendered to PNG.
# Needs: a built workspace (cargo build), tmux, python3 with pillow and pyte.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/debug
work=$(mktemp -d)
sock="kavro-shot-$$"
cleanup() { tmux -L "$sock" kill-server 2>/dev/null || true; kill "$server" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

KAVRO_RATE_LIMITS=off "$bin/kavro-server" --bind 127.0.0.1:0 --data-dir "$work/relay" >"$work/relay.out" 2>/dev/null &
server=$!
for _ in $(seq 100); do grep -q listening "$work/relay.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^kavro-server listening on //p' "$work/relay.out")

user_env() { echo "KAVRO_SERVER=$url KAVRO_CONFIG_DIR=$work/$1/config KAVRO_DATA_DIR=$work/$1/data KAVRO_KEY_STORE=file KAVRO_PASSWORD=Sh0t-password"; }
for u in alice bob carol; do env $(user_env $u) "$bin/kavro" register $u >/dev/null 2>&1; done
env $(user_env carol) "$bin/kavro" send alice "Are we still on for Friday?" >/dev/null 2>&1
env $(user_env bob) "$bin/kavro" send alice "Hi Alice! Did the new relay come up?" >/dev/null 2>&1

tmux -L "$sock" new-session -d -s alice -x 100 -y 30 "env $(user_env alice) $bin/kavro"
tmux -L "$sock" new-session -d -s bob -x 100 -y 30 "env $(user_env bob) $bin/kavro"
sleep 2
# Alice opens Bob's conversation by name (Ctrl-N), and answers.
tmux -L "$sock" send-keys -t alice C-n
tmux -L "$sock" send-keys -t alice -l "bob"
tmux -L "$sock" send-keys -t alice Enter
sleep 1
tmux -L "$sock" send-keys -t alice -l "Yes, it runs on PostgreSQL now, two instances behind the load balancer."
tmux -L "$sock" send-keys -t alice Enter
sleep 1.5
tmux -L "$sock" send-keys -t bob -l "Great. Your messages show up here the moment you send them."
tmux -L "$sock" send-keys -t bob Enter
sleep 1.5
tmux -L "$sock" send-keys -t alice -l "Long-poll across instances through Redis :)"
tmux -L "$sock" send-keys -t alice Enter
sleep 11   # the delivery receipts are checked every 10 s
tmux -L "$sock" capture-pane -e -p -t alice > "$work/alice.txt"
python3 scripts/ansi_to_png.py "$work/alice.txt" 100 30 assets/screenshot.png
echo "wrote assets/screenshot.png"
