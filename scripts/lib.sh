# Shared by scripts/soak.sh, scripts/idle-conns.sh and scripts/bench-proxy.sh
# (sourced, not run; the sourcing script sets SCRIPT, its name in messages):
# processes stopped by PID on exit, free ports, Debian tools, nginx configs,
# the sluice binary and its config head, and RSS / fd sampling. 127.0.0.1 only.

HOST=127.0.0.1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$PATH:/usr/sbin:/sbin"

log() { echo "$SCRIPT: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# === processes, stopped by PID on exit ===

PIDS=()
TMP=""
cleanup() {
    local pid deadline
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    deadline=$((SECONDS + 15))
    for pid in "${PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid did not stop in time; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    if [[ -n "$TMP" && -d "$TMP" ]]; then
        if [[ "${KEEP_TMP:-0}" == 1 ]]; then
            log "kept $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts "$@" in the background with output to $1; remembers its PID in LAST_PID.
start_bg() {
    local logfile=$1
    shift
    "$@" >"$logfile" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# Starts "$@" in the background pinned to core $1, with output to $2.
start_pinned() {
    local core=$1 logfile=$2
    shift 2
    start_bg "$logfile" taskset -c "$core" "$@"
}

# === tools ===

# Installs the Debian packages of the commands named as "command:package".
install_missing() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
    done
    ((${#missing[@]} == 0)) && return
    log "installing ${missing[*]}"
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# A port on 127.0.0.1 that nothing answers on (and that this run has not handed out).
USED_PORTS=" "
free_port() {
    local port
    for _ in $(seq 1 200); do
        port=$((20000 + RANDOM % 30000))
        [[ "$USED_PORTS" == *" $port "* ]] && continue
        if ! (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null; then
            USED_PORTS+="$port "
            echo "$port"
            return
        fi
    done
    die "no free port found on $HOST"
}

# The status code of GET http://127.0.0.1:$1$2 (000 on a transport error).
status_of() {
    curl -s -o /dev/null -m 10 -w '%{http_code}' "http://$HOST:$1$2" || true
}

# Waits (at most 30 s) until GET http://127.0.0.1:$1$2 answers 200.
wait_http_ok() {
    local port=$1 path=$2 name=$3 deadline=$((SECONDS + 30)) status=""
    while ((SECONDS < deadline)); do
        status=$(status_of "$port" "$path")
        [[ "$status" == 200 ]] && return
        sleep 0.2
    done
    die "$name on $HOST:$port$path did not answer 200 within 30s (last status: ${status:-none}); see $TMP"
}

# === nginx ===

# The head of an nginx config living in folder $1: one worker, $2 worker
# connections, no access log, keep-alive of $3, temp paths inside the folder.
# The `http {` block stays open for the caller's servers.
nginx_head() {
    local dir=$1 connections=$2 keepalive=$3
    cat <<EOF
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $connections; }
http {
    access_log off;
    keepalive_timeout $keepalive;
    keepalive_requests 1000000;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
EOF
}

# The upstream: one nginx worker, one server block per "name:port[:flaky]".
# Each answers 200 "NAME\n" with `x-upstream: NAME`; a flaky one answers 500
# (still from the upstream, with the header) while $FLAG_DIR/NAME.fail exists.
start_nginx_upstreams() {
    local dir=$TMP/upstream pair name port rest
    mkdir -p "$dir"
    # nginx's worker runs as another user: it must be able to stat the flag files.
    FLAG_DIR=$TMP/flags
    mkdir -p "$FLAG_DIR"
    chmod 711 "$TMP"
    chmod 755 "$FLAG_DIR"
    {
        nginx_head "$dir" 16384 300s
        for pair in "$@"; do
            name=${pair%%:*}
            rest=${pair#*:}
            port=${rest%%:*}
            echo "    server {"
            echo "        listen $HOST:$port;"
            echo "        location / {"
            echo "            default_type text/plain;"
            echo "            add_header x-upstream $name always;"
            if [[ "$rest" == *:flaky ]]; then
                echo "            if (-f $FLAG_DIR/$name.fail) { return 500 \"$name failing\\n\"; }"
            fi
            echo "            return 200 \"$name\\n\";"
            echo "        }"
            echo "    }"
        done
        echo "}"
    } >"$dir/nginx.conf"
    start_bg "$dir/stdout.log" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
    for pair in "$@"; do
        rest=${pair#*:}
        wait_http_ok "${rest%%:*}" / "upstream ${pair%%:*}"
    done
}

# === sluice ===

# Sets SLUICE_BIN: $SLUICE_BIN if given, else a release build of this tree.
build_sluice() {
    if [[ -z "${SLUICE_BIN:-}" ]]; then
        log "building sluice (release)"
        (cd "$ROOT" && cargo build --release -p sluice) >&2
        SLUICE_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice"
    fi
    [[ -x "$SLUICE_BIN" ]] || die "no sluice binary at $SLUICE_BIN"
}

# The head of a sluice config: proxy on $HOST:$1, admin on $HOST:$2, the
# embedded store at $3. The caller appends `proxy:`, `services:` and the rest.
sluice_config_head() {
    cat <<EOF
listeners:
  - address: $HOST:$1
admin:
  address: $HOST:$2
store: $3
EOF
}

# === sampling ===

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
