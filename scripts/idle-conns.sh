#!/usr/bin/env bash
# Idle connections: sluice holding IDLE_CONNECTIONS (default 10,000)
# keep-alive connections at once, each of which sent one request first (so
# the connection is real), then stays idle. Measures sluice's RSS before and
# while it holds them and prints the RSS per connection; checks that sluice
# still answers a normal request meanwhile, and how many it closed.
# `proxy.header_read_timeout` is raised above the hold time: sluice closes a
# keep-alive connection idle for that long (10 s by default).
#
# Environment:
#   IDLE_CONNECTIONS=10000  connections to open
#   HOLD_SECONDS=30         how long to hold them after they are all open
#   SLUICE_BIN=...          use this sluice binary instead of a release build
#   SLUICE_THREADS=...      passed to sluice (default: one worker per core)
#   KEEP_TMP=1              keep the temp dir with configs and logs
# Exit status: non-zero when a connection could not be opened, sluice
# failed the normal request, or closed held connections.
set -euo pipefail

SCRIPT=idle-conns
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
HOLD_SECONDS=${HOLD_SECONDS:-30}

[[ "$(uname -s)" == Linux ]] || die "needs Linux (/proc)"
install_missing nginx:nginx curl:curl python3:python3
# Both ends of every connection live on this machine: sluice needs one fd per
# client connection, the clients as many again.
ulimit -n "$(ulimit -Hn)" || true
(($(ulimit -n) > IDLE_CONNECTIONS + 1000)) ||
    die "ulimit -n is $(ulimit -n); $((IDLE_CONNECTIONS + 1000)) or more are needed (raise the hard limit)"
build_sluice

TMP=$(mktemp -d -t sluice-idle.XXXXXX)
UPSTREAM_PORT=$(free_port)
PROXY_PORT=$(free_port)
ADMIN_PORT=$(free_port)
start_nginx_upstreams "v1:$UPSTREAM_PORT"
# $1: extra lines under `proxy:`.
write_config() {
    cat >"$TMP/sluice.yaml" <<EOF
$(sluice_config_head "$PROXY_PORT" "$ADMIN_PORT" "$TMP/sluice.db")
proxy:
  # hyper applies it to the idle wait between two requests of a keep-alive
  # connection as well: the default 10s would close the connections under test.
  header_read_timeout: $((HOLD_SECONDS + 600))s
$1
services:
  - name: web
    versions:
      stable: { endpoints: ["$HOST:$UPSTREAM_PORT"] }
EOF
}
# Room for the held connections plus the normal request, where the build has
# proxy.limits (its max_connections default, 10000, would shed the latter).
write_config "  limits: { max_connections: $((IDLE_CONNECTIONS + 100)) }"
if ! "$SLUICE_BIN" config validate -c "$TMP/sluice.yaml" >/dev/null 2>&1; then
    write_config ""
fi
"$SLUICE_BIN" config validate -c "$TMP/sluice.yaml" >/dev/null || die "the idle-connections config is invalid"
start_bg "$TMP/sluice.log" "$SLUICE_BIN" run -c "$TMP/sluice.yaml"
SLUICE_PID=$LAST_PID
wait_http_ok "$PROXY_PORT" / sluice
for _ in $(seq 1 200); do status_of "$PROXY_PORT" / >/dev/null; done
sleep 1
RSS_BEFORE=$(rss_kib "$SLUICE_PID")
FD_BEFORE=$(fd_count "$SLUICE_PID")
log "sluice pid $SLUICE_PID: RSS ${RSS_BEFORE} KiB, $FD_BEFORE fds before; opening $IDLE_CONNECTIONS connections"

start_bg "$TMP/idle.jsonl" python3 "$ROOT/scripts/soak_clients.py" idle --port "$PROXY_PORT" \
    --count "$IDLE_CONNECTIONS" --hold "$((HOLD_SECONDS + 600))"
CLIENT_PID=$LAST_PID
deadline=$((SECONDS + 600))
until [[ -s "$TMP/idle.jsonl" ]]; do
    kill -0 "$CLIENT_PID" 2>/dev/null || die "the idle client stopped: $(cat "$TMP/idle.jsonl")"
    ((SECONDS < deadline)) || die "the connections were not open within 600 s"
    sleep 0.5
done
OPENED=$(head -n1 "$TMP/idle.jsonl")
log "opened: $OPENED"
OPEN=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["open"])' "$OPENED")
FAILED_OPEN=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["failed"])' "$OPENED")
sleep 2
RSS_HELD=$(rss_kib "$SLUICE_PID")
FD_HELD=$(fd_count "$SLUICE_PID")
NORMAL=$(status_of "$PROXY_PORT" /)
log "holding: RSS ${RSS_HELD} KiB, $FD_HELD fds; a normal request meanwhile answered $NORMAL"
sleep "$HOLD_SECONDS"
RSS_END=$(rss_kib "$SLUICE_PID")
FD_END=$(fd_count "$SLUICE_PID")
kill -TERM "$CLIENT_PID"
wait "$CLIENT_PID" || true
HELD=$(tail -n1 "$TMP/idle.jsonl")
CLOSED=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("closed_by_server", "?"))' "$HELD")

echo
echo "idle keep-alive connections: $OPEN open ($FAILED_OPEN failed to open), held ${HOLD_SECONDS}s"
echo "sluice RSS before:        $RSS_BEFORE KiB ($FD_BEFORE fds)"
echo "sluice RSS holding:       $RSS_HELD KiB ($FD_HELD fds)"
echo "sluice RSS after ${HOLD_SECONDS}s:     $RSS_END KiB ($FD_END fds)"
awk -v a="$RSS_BEFORE" -v b="$RSS_HELD" -v n="$OPEN" \
    'BEGIN { if (n > 0) printf "RSS per connection:       %.2f KiB\n", (b - a) / n }'
echo "normal request while holding: HTTP $NORMAL"
echo "connections closed by sluice while held: $CLOSED"
[[ "$FAILED_OPEN" == 0 && "$NORMAL" == 200 && "$CLOSED" == 0 ]] || die "see above"
