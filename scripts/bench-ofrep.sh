#!/usr/bin/env bash
# OFREP over HTTP: single-flag evaluations per second from wrk against
# `sluice run --flags examples/flags.json`, on 127.0.0.1 only, sluice on
# core 1 and wrk on core 0. Three flags: a static one, one with targeting
# and a fractional split, and one with sem_ver. Numbers, never pass/fail.
#
# Environment:
#   DURATION=10     seconds per wrk run
#   CONNECTIONS=32  wrk connections
#   SLUICE_BIN=...  use this binary instead of building target/release/sluice
set -euo pipefail

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
HOST=127.0.0.1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { echo "bench-ofrep: $*" >&2; }
command -v wrk >/dev/null || { log "wrk is needed (apt-get install wrk)"; exit 1; }

TMP=$(mktemp -d)
PID=""
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

BIN=${SLUICE_BIN:-}
if [ -z "$BIN" ]; then
    (cd "$ROOT" && cargo build --release -p sluice >&2)
    BIN="$ROOT/target/release/sluice"
fi

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cp "$ROOT/examples/flags.json" "$TMP/flags.json"
(cd "$TMP" && SLUICE_THREADS=1 SLUICE_LOG=warn exec taskset -c 1 "$BIN" run --flags flags.json --admin "$HOST:$PORT") 2>"$TMP/sluice.log" &
PID=$!
for _ in $(seq 100); do
    grep -q "admin API on" "$TMP/sluice.log" 2>/dev/null && break
    sleep 0.1
done
grep -q "admin API on" "$TMP/sluice.log" || { cat "$TMP/sluice.log" >&2; exit 1; }

printf '%-18s %12s %10s %10s\n' flag "req/s" p50 p99
for case in "banner-text|{\"context\":{\"targetingKey\":\"u1\"}}" \
            "new-checkout|{\"context\":{\"targetingKey\":\"user-42\",\"email\":\"a@b.org\"}}" \
            "min-app-version|{\"context\":{\"targetingKey\":\"u1\",\"version\":\"2.5.1\"}}"; do
    flag=${case%%|*}
    body=${case#*|}
    cat >"$TMP/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.0f %.0f %.0f\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99)))
end
LUA
    out=$(taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$TMP/post.lua" \
        "http://$HOST:$PORT/ofrep/v1/evaluate/flags/$flag")
    read -r _ rps p50 p99 <<<"$(grep RESULT <<<"$out")"
    errors=$(grep -Eo "Non-2xx or 3xx responses: [0-9]+" <<<"$out" || true)
    printf '%-18s %12s %8sus %8sus %s\n' "$flag" "$rps" "$p50" "$p99" "$errors"
done
