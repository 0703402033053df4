#!/usr/bin/env bash
# Soak: SOAK_SECONDS (default 600) of mixed traffic through a release build of
# sluice while a canary rollout runs, the config is reloaded (SIGHUP) every
# few seconds, and a breaker trips and recovers. On 127.0.0.1 only.
#
#   upstreams   one nginx worker: v1 (stable), v2 (canary), flaky (answers 500
#               for the first third of every FLAKY_PERIOD)
#   service web     /       canary rollout v1 -> v2, 10 steps over the run
#   service flaky   /flaky  breaker: opens after 5 failures, trial after 3 s
#   traffic     wrk keep-alive (16 connections), wrk `Connection: close`
#               (4 connections, a new connection per request), h2load HTTP/2
#               (4 clients x 8 streams), 4 slow clients (head sent over ~3 s,
#               answer read slowly), a classifier on /flaky (20 new
#               connections/s); each paced so that the machine is not saturated
#   samples     sluice's RSS and open fds every 10 s into $SOAK_CSV
#
# At the end it prints the requests, the client-visible failures that were not
# the upstream's own errors (must be 0), RSS and fd first/max/last, and exits
# non-zero on a failure, a refused reload, a dead sluice, or growth after the
# warm-up (the sample at 1/5 of the run) beyond RSS_TOLERANCE_PCT (default 25%)
# plus 8 MiB, or FD_TOLERANCE (default 64) fds.
#
# Environment:
#   SOAK_SECONDS=600   length of the run
#   RELOAD_EVERY=5     seconds between config reloads
#   SOAK_CSV=...       where the samples go (default: soak-rss.csv in the current folder)
#   SLUICE_BIN=...     use this sluice binary instead of a release build
#   KEEP_TMP=1         keep the temp dir with configs and logs
set -euo pipefail

SCRIPT=soak
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SOAK_SECONDS=${SOAK_SECONDS:-600}
RELOAD_EVERY=${RELOAD_EVERY:-5}
SOAK_CSV=${SOAK_CSV:-$PWD/soak-rss.csv}
RSS_TOLERANCE_PCT=${RSS_TOLERANCE_PCT:-25}
FD_TOLERANCE=${FD_TOLERANCE:-64}
((SOAK_SECONDS >= 30)) || die "SOAK_SECONDS must be at least 30"
INTERVAL=$((SOAK_SECONDS / 12))   # rollout analysis interval: 10 steps + promotion
FLAKY_PERIOD=$((SOAK_SECONDS / 10 > 15 ? SOAK_SECONDS / 10 : 15))

[[ "$(uname -s)" == Linux ]] || die "needs Linux (/proc)"
install_missing nginx:nginx wrk:wrk h2load:nghttp2-client curl:curl python3:python3
ulimit -n "$(ulimit -Hn)" || true
build_sluice

TMP=$(mktemp -d -t sluice-soak.XXXXXX)
V1_PORT=$(free_port)
V2_PORT=$(free_port)
FLAKY_PORT=$(free_port)
PROXY_PORT=$(free_port)
ADMIN_PORT=$(free_port)
start_nginx_upstreams "v1:$V1_PORT" "v2:$V2_PORT" "flaky:$FLAKY_PORT:flaky"

# The config; $1 alternates what each reload changes (the upstream idle
# timeout and the exported latency buckets), so every reload applies a change.
write_config() {
    local variant=$1
    cat >"$TMP/sluice.yaml.new" <<EOF
$(sluice_config_head "$PROXY_PORT" "$ADMIN_PORT" "$TMP/sluice.db")
proxy:
  idle_timeout: $((90 + variant))s
  latency_buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, $((5 + variant))]
breakers:
  policies:
    flaky:
      failure_threshold: 5
      open_duration: 3s
      backoff_multiplier: 1
      success_threshold: 2
services:
  - name: web
    versions:
      stable: { endpoints: ["$HOST:$V1_PORT"] }
      canary: { endpoints: ["$HOST:$V2_PORT"] }
    rollout:
      interval: ${INTERVAL}s
      step_weights: [5, 10, 20, 30, 40, 50, 60, 70, 80, 90]
  - name: flaky
    match: { path_prefix: /flaky }
    versions:
      stable: { endpoints: ["$HOST:$FLAKY_PORT"] }
    breaker:
      policy: flaky
EOF
    mv "$TMP/sluice.yaml.new" "$TMP/sluice.yaml"
}
write_config 0
"$SLUICE_BIN" config validate -c "$TMP/sluice.yaml" >/dev/null || die "the soak config is invalid"
start_bg "$TMP/sluice.log" "$SLUICE_BIN" run -c "$TMP/sluice.yaml"
SLUICE_PID=$LAST_PID
wait_http_ok "$PROXY_PORT" / sluice
wait_http_ok "$PROXY_PORT" /flaky "sluice (flaky)"
log "sluice pid $SLUICE_PID on $HOST:$PROXY_PORT, admin $HOST:$ADMIN_PORT; ${SOAK_SECONDS}s, reload every ${RELOAD_EVERY}s, rollout interval ${INTERVAL}s, flaky period ${FLAKY_PERIOD}s"

# === background actors, each ending by itself after SOAK_SECONDS ===

END=$((SECONDS + SOAK_SECONDS))
echo "seconds,rss_kib,fds" >"$SOAK_CSV"
sample() {
    local started=$SECONDS
    while ((SECONDS <= END)) && kill -0 "$SLUICE_PID" 2>/dev/null; do
        echo "$((SECONDS - started)),$(rss_kib "$SLUICE_PID"),$(fd_count "$SLUICE_PID")" >>"$SOAK_CSV"
        sleep 10
    done
}
reload() {
    local n=0
    while ((SECONDS + RELOAD_EVERY < END)); do
        sleep "$RELOAD_EVERY"
        n=$((n + 1))
        write_config $((n % 2))
        kill -HUP "$SLUICE_PID"
    done
    echo "$n" >"$TMP/reloads.sent"
}
flap() {
    while ((SECONDS + FLAKY_PERIOD <= END)); do
        touch "$FLAG_DIR/flaky.fail"
        sleep $((FLAKY_PERIOD / 3))
        rm -f "$FLAG_DIR/flaky.fail"
        sleep $((FLAKY_PERIOD - FLAKY_PERIOD / 3))
    done
}
cat >"$TMP/pace.lua" <<'EOF'
-- Each connection waits this many ms between its requests.
function delay() return 10 end
EOF

start_bg "$TMP/sampler.log" sample
start_bg "$TMP/reloader.log" reload
RELOADER_PID=$LAST_PID
start_bg "$TMP/flap.log" flap
URL="http://$HOST:$PROXY_PORT/"
start_bg "$TMP/wrk-keepalive.txt" wrk -t1 -c16 -d"${SOAK_SECONDS}s" --timeout 30s -s "$TMP/pace.lua" "$URL"
WAIT=("$LAST_PID")
start_bg "$TMP/wrk-close.txt" wrk -t1 -c4 -d"${SOAK_SECONDS}s" --timeout 30s -s "$TMP/pace.lua" -H "Connection: close" "$URL"
WAIT+=("$LAST_PID")
start_bg "$TMP/h2load.txt" h2load -D "$SOAK_SECONDS" -c4 -m8 --rps 25 "$URL"
WAIT+=("$LAST_PID")
start_bg "$TMP/slow.json" python3 "$ROOT/scripts/soak_clients.py" slow --port "$PROXY_PORT" --clients 4 --seconds "$SOAK_SECONDS"
WAIT+=("$LAST_PID")
start_bg "$TMP/flaky.json" python3 "$ROOT/scripts/soak_clients.py" classify --port "$PROXY_PORT" --path /flaky --rate 20 --seconds "$SOAK_SECONDS"
WAIT+=("$LAST_PID")
for pid in "${WAIT[@]}"; do
    wait "$pid" || log "a client (pid $pid) exited with $?"
done
wait "$RELOADER_PID" || true
kill -0 "$SLUICE_PID" 2>/dev/null || die "sluice died during the soak; see $TMP/sluice.log"
echo "$SOAK_SECONDS,$(rss_kib "$SLUICE_PID"),$(fd_count "$SLUICE_PID")" >>"$SOAK_CSV"

# === results ===

wrk_field() { awk "$2" "$TMP/$1"; }
# wrk: requests, then non-2xx plus socket errors.
wrk_counts() {
    local requests errors
    requests=$(awk '/ requests in / { print $1 }' "$TMP/$1")
    errors=$(awk '/Non-2xx or 3xx responses:/ { s += $NF }
        /Socket errors:/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) s += $i }
        END { print s + 0 }' "$TMP/$1")
    [[ -n "$requests" ]] || die "cannot parse $1: $(cat "$TMP/$1")"
    echo "$requests $errors"
}
read -r KA_REQ KA_ERR <<<"$(wrk_counts wrk-keepalive.txt)"
read -r CL_REQ CL_ERR <<<"$(wrk_counts wrk-close.txt)"
H2_LINE=$(grep -E '^requests: ' "$TMP/h2load.txt" || die "cannot parse h2load: $(cat "$TMP/h2load.txt")")
H2_REQ=$(awk '{ print $2 }' <<<"$H2_LINE")
H2_OK=$(awk '/^status codes: / { gsub(",", ""); print $3 }' "$TMP/h2load.txt")
H2_ERR=$((H2_REQ - H2_OK))
json() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$TMP/$1" "$2"; }
SLOW_OK=$(json slow.json ok)
SLOW_ERR=$(json slow.json failed)
FL_OK=$(json flaky.json ok)
FL_UP=$(json flaky.json upstream_errors)
FL_BR=$(json flaky.json breaker)
FL_ERR=$(json flaky.json failed)
METRICS=$(curl -s -m 10 "http://$HOST:$ADMIN_PORT/metrics")
RELOAD_OK=$(awk '/^sluice_config_reloads_total\{result="success"\}/ { print $2 }' <<<"$METRICS")
RELOAD_FAIL=$(awk '/^sluice_config_reloads_total\{result="failure"\}/ { print $2 }' <<<"$METRICS")
OPENED=$(awk '/^sluice_circuit_breaker_state_transitions_total\{.*service="flaky".*to="open"/ { s += $2 } END { print s + 0 }' <<<"$METRICS")
CLOSED=$(awk '/^sluice_circuit_breaker_state_transitions_total\{.*service="flaky".*to="closed"/ { s += $2 } END { print s + 0 }' <<<"$METRICS")
ROLLOUT=$(curl -s -m 10 "http://$HOST:$ADMIN_PORT/api/v1/rollouts/web" |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print(r.get("phase"), "canary weight", r.get("weight"))' 2>/dev/null || echo "?")

FAILURES=$((KA_ERR + CL_ERR + H2_ERR + SLOW_ERR + FL_ERR))
TOTAL=$((KA_REQ + CL_REQ + H2_REQ + SLOW_OK + SLOW_ERR + FL_OK + FL_UP + FL_BR + FL_ERR))
WARM_AT=$((SOAK_SECONDS / 5))
read -r RSS_FIRST RSS_WARM RSS_MAX RSS_LAST FD_FIRST FD_WARM FD_MAX FD_LAST < <(awk -F, -v warm="$WARM_AT" '
    NR == 1 { next }
    NR == 2 { rf = $2; ff = $3 }
    !w && $1 >= warm { rw = $2; fw = $3; w = 1 }
    { if ($2 > rm) rm = $2; if ($3 > fm) fm = $3; rl = $2; fl = $3 }
    END { print rf, rw, rm, rl, ff, fw, fm, fl }' "$SOAK_CSV")

echo
echo "soak: ${SOAK_SECONDS}s through sluice (pid $SLUICE_PID), samples in $SOAK_CSV"
printf '%-28s %10s %10s\n' client requests failures
printf '%-28s %10s %10s\n' "wrk keep-alive" "$KA_REQ" "$KA_ERR"
printf '%-28s %10s %10s\n' "wrk Connection: close" "$CL_REQ" "$CL_ERR"
printf '%-28s %10s %10s\n' "h2load HTTP/2" "$H2_REQ" "$H2_ERR"
printf '%-28s %10s %10s\n' "slow clients" "$((SLOW_OK + SLOW_ERR))" "$SLOW_ERR"
printf '%-28s %10s %10s\n' "/flaky (breaker)" "$((FL_OK + FL_UP + FL_BR + FL_ERR))" "$FL_ERR"
echo "/flaky answers: $FL_OK ok, $FL_UP upstream's own 500s, $FL_BR breaker rejections; breaker opened $OPENED times, closed $CLOSED times"
echo "requests: $TOTAL; client-visible failures that were not the upstream's own errors: $FAILURES"
echo "config reloads: $(cat "$TMP/reloads.sent" 2>/dev/null || echo ?) sent, ${RELOAD_OK:-?} applied, ${RELOAD_FAIL:-?} refused"
echo "rollout of web at the end: $ROLLOUT"
echo "RSS KiB: first $RSS_FIRST, at ${WARM_AT}s $RSS_WARM, max $RSS_MAX, last $RSS_LAST"
echo "fds:     first $FD_FIRST, at ${WARM_AT}s $FD_WARM, max $FD_MAX, last $FD_LAST"

STATUS=0
if ((FAILURES > 0)); then
    log "FAIL: $FAILURES failed requests; see $TMP (KEEP_TMP=1 keeps it)"
    grep -h -A3 -E 'Non-2xx|Socket errors' "$TMP"/wrk-*.txt >&2 || true
    head -c 2000 "$TMP/slow.json" "$TMP/flaky.json" >&2 || true
    STATUS=1
fi
if [[ "${RELOAD_FAIL:-1}" != 0 ]]; then
    log "FAIL: ${RELOAD_FAIL:-?} reloads refused"
    STATUS=1
fi
if ((RSS_LAST * 100 > RSS_WARM * (100 + RSS_TOLERANCE_PCT) + 8192 * 100)); then
    log "FAIL: RSS grew from $RSS_WARM KiB (at ${WARM_AT}s) to $RSS_LAST KiB, beyond ${RSS_TOLERANCE_PCT}% + 8 MiB"
    STATUS=1
fi
if ((FD_LAST > FD_WARM + FD_TOLERANCE)); then
    log "FAIL: open fds grew from $FD_WARM (at ${WARM_AT}s) to $FD_LAST, beyond $FD_TOLERANCE"
    STATUS=1
fi
exit "$STATUS"
