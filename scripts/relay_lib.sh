# Sourced by the bench scripts (bench_v2_send.sh, bench_attach.sh).
#
# start_relay [NAME=VALUE ...]: starts "$bin/kavro-server" on a free loopback
# port, its data in "$work/relay", rate limits off, with the extra
# environment given; sets `relay` (its pid) and `url`, or exits with its log.
start_relay() {
  env KAVRO_DATA_DIR="$work/relay" KAVRO_RATE_LIMITS=off KAVRO_LOG_LEVEL=warn "$@" \
    "$bin/kavro-server" --bind 127.0.0.1:0 >"$work/relay.out" 2>"$work/relay.log" &
  relay=$!
  url=
  for _ in $(seq 300); do
    url=$(sed -n 's/^kavro-server listening on //p' "$work/relay.out" | head -n 1)
    [ -n "$url" ] && break
    kill -0 "$relay" 2>/dev/null || { cat "$work/relay.log"; exit 1; }
    sleep 0.1
  done
  [ -n "$url" ] || { echo "the relay did not start" >&2; exit 1; }
}
