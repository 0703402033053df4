#!/usr/bin/env bash
# Proxy benchmark: sluice side by side with nginx and haproxy, on 127.0.0.1 only.
#
# One fast upstream (nginx answering "ok\n", 1 worker, core 0); each proxy on
# core 1, single-threaded, keeping keep-alive connections to the upstream;
# wrk on core 0 (-t1 -c32). Prints req/s, p50 and p99 per target and the
# ratios sluice/nginx and sluice/haproxy. Numbers, never a pass/fail.
#
# Environment:
#   DURATION=10     seconds per measured wrk run
#   WARMUP=2        seconds of warm-up per target (not measured)
#   ROUNDS=1        rounds of all targets, interleaved; the median is reported
#   CONNECTIONS=32  wrk connections
#   SKIP_SLUICE=1   measure only direct, nginx, haproxy (no cargo build)
#   SLUICE_BIN=...  use this sluice binary instead of building target/release/sluice
#   KEEP_TMP=1      keep the temp dir with configs and logs
set -euo pipefail

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-1}
CONNECTIONS=${CONNECTIONS:-32}
SKIP_SLUICE=${SKIP_SLUICE:-0}

SCRIPT=bench-proxy
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# === configs ===

write_upstream_nginx() {
    local dir=$TMP/upstream
    mkdir -p "$dir"
    { nginx_head "$dir" 4096 75s; cat <<EOF
    server {
        listen $HOST:$UPSTREAM_PORT;
        location / {
            default_type text/plain;
            return 200 "ok\n";
        }
    }
}
EOF
    } >"$dir/nginx.conf"
}

write_proxy_nginx() {
    local dir=$TMP/nginx
    mkdir -p "$dir"
    { nginx_head "$dir" 4096 75s; cat <<EOF
    upstream bench {
        server $HOST:$UPSTREAM_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen $HOST:$NGINX_PORT;
        location / {
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    } >"$dir/nginx.conf"
}

write_proxy_haproxy() {
    mkdir -p "$TMP/haproxy"
    cat >"$TMP/haproxy/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    http-reuse always
frontend bench
    bind $HOST:$HAPROXY_PORT
    default_backend upstream
backend upstream
    server upstream1 $HOST:$UPSTREAM_PORT
EOF
}

write_proxy_sluice() {
    mkdir -p "$TMP/sluice"
    cat >"$TMP/sluice/sluice.yaml" <<EOF
$(sluice_config_head "$SLUICE_PORT" "$SLUICE_ADMIN_PORT" "$TMP/sluice/sluice.db")
services:
  - name: bench
    versions:
      stable:
        endpoints: ["$HOST:$UPSTREAM_PORT"]
EOF
}

# === wrk ===

# Microseconds from a wrk duration such as 326.07us, 1.02ms, 1.20s, 2.00m.
to_us() {
    awk -v v="$1" 'BEGIN {
        if (match(v, /us$/)) { n = substr(v, 1, RSTART - 1); f = 1 }
        else if (match(v, /ms$/)) { n = substr(v, 1, RSTART - 1); f = 1000 }
        else if (match(v, /s$/)) { n = substr(v, 1, RSTART - 1); f = 1000000 }
        else if (match(v, /m$/)) { n = substr(v, 1, RSTART - 1); f = 60000000 }
        else if (match(v, /h$/)) { n = substr(v, 1, RSTART - 1); f = 3600000000 }
        else { print "NaN"; exit }
        printf "%.1f\n", n * f
    }'
}

# Runs wrk against a port; prints "req_per_sec p50_us p99_us errors".
measure() {
    local port=$1 seconds=$2 out
    out=$(taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d"${seconds}s" --latency "http://$HOST:$port/")
    local rps p50 p99 non2xx socket_errors
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    p50=$(awk '$1 == "50%" { print $2 }' <<<"$out")
    p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$out")
    socket_errors=$(awk '/Socket errors:/ {
        s = 0; for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) s += $i; print s }' <<<"$out")
    [[ -n "$rps" && -n "$p50" && -n "$p99" ]] || die "cannot parse wrk output for port $port:
$out"
    echo "$rps $(to_us "$p50") $(to_us "$p99") $((${non2xx:-0} + ${socket_errors:-0}))"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# === main ===

[[ "$(uname -s)" == Linux ]] || die "needs Linux (taskset)"
install_missing nginx:nginx haproxy:haproxy wrk:wrk taskset:util-linux curl:curl
if [[ "$SKIP_SLUICE" != 1 ]]; then
    build_sluice
fi

TMP=$(mktemp -d -t sluice-bench.XXXXXX)
UPSTREAM_PORT=$(free_port)
NGINX_PORT=$(free_port)
HAPROXY_PORT=$(free_port)
SLUICE_PORT=$(free_port)
SLUICE_ADMIN_PORT=$(free_port)

write_upstream_nginx
write_proxy_nginx
write_proxy_haproxy
start_pinned 0 "$TMP/upstream/stdout.log" nginx -p "$TMP/upstream" -c "$TMP/upstream/nginx.conf" -e "$TMP/upstream/error.log"
wait_http_ok "$UPSTREAM_PORT" / "upstream nginx"
start_pinned 1 "$TMP/nginx/stdout.log" nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log"
start_pinned 1 "$TMP/haproxy/stdout.log" haproxy -db -f "$TMP/haproxy/haproxy.cfg"
TARGETS=(direct nginx haproxy)
declare -A PORT=([direct]=$UPSTREAM_PORT [nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT)
if [[ "$SKIP_SLUICE" != 1 ]]; then
    write_proxy_sluice
    start_pinned 1 "$TMP/sluice/stdout.log" env SLUICE_THREADS=1 "$SLUICE_BIN" run -c "$TMP/sluice/sluice.yaml"
    TARGETS+=(sluice)
    PORT[sluice]=$SLUICE_PORT
fi
for name in "${TARGETS[@]}"; do
    wait_http_ok "${PORT[$name]}" / "$name"
done

log "upstream $HOST:$UPSTREAM_PORT; proxies on core 1, wrk and upstream on core 0; ${DURATION}s x $ROUNDS round(s), $CONNECTIONS connections"
for name in "${TARGETS[@]}"; do
    log "warming up $name"
    measure "${PORT[$name]}" "$WARMUP" >/dev/null
done
for round in $(seq 1 "$ROUNDS"); do
    for name in "${TARGETS[@]}"; do
        result=$(measure "${PORT[$name]}" "$DURATION")
        log "round $round $name: $result (req/s p50_us p99_us errors)"
        echo "$result" >>"$TMP/results.$name"
    done
done

declare -A RPS P50 P99 ERRORS
for name in "${TARGETS[@]}"; do
    RPS[$name]=$(awk '{ print $1 }' "$TMP/results.$name" | median)
    P50[$name]=$(awk '{ print $2 }' "$TMP/results.$name" | median)
    P99[$name]=$(awk '{ print $3 }' "$TMP/results.$name" | median)
    ERRORS[$name]=$(awk '{ s += $4 } END { print s }' "$TMP/results.$name")
done

echo
printf '%-8s %12s %10s %10s %8s\n' target "req/s" "p50 ms" "p99 ms" errors
for name in "${TARGETS[@]}"; do
    awk -v n="$name" -v r="${RPS[$name]}" -v a="${P50[$name]}" -v b="${P99[$name]}" -v e="${ERRORS[$name]}" \
        'BEGIN { printf "%-8s %12.0f %10.3f %10.3f %8d\n", n, r, a / 1000, b / 1000, e }'
done
if [[ "$SKIP_SLUICE" != 1 ]]; then
    echo
    for other in nginx haproxy; do
        awk -v o="$other" -v rs="${RPS[sluice]}" -v ro="${RPS[$other]}" -v ps="${P99[sluice]}" -v po="${P99[$other]}" \
            'BEGIN { printf "sluice/%-8s throughput %.2fx   p99 %.2fx\n", o, rs / ro, ps / po }'
    done
fi
for name in "${TARGETS[@]}"; do
    if [[ "${ERRORS[$name]}" != 0 ]]; then
        log "warning: $name had ${ERRORS[$name]} non-2xx answers or socket errors; its numbers are suspect"
    fi
done
