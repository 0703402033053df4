#!/usr/bin/env bash
# The cost of TLS to etcd: one plain and one TLS etcd member (the test
# certificates, --client-cert-auth) on loopback, and the store's read
# through each, first call and kept-alive mean. Prints numbers; asserts
# nothing. Usage: scripts/bench-etcd.sh [CALLS]
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-2000}
tls=crates/sluice-store/tests/fixtures/etcd-tls
dir=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
member() { # name scheme client-port extra-args...
  local name=$1 scheme=$2 client=$3; shift 3
  local peer; peer=$(port)
  etcd --name "$name" --data-dir "$dir/$name" \
    --listen-client-urls "$scheme://127.0.0.1:$client" --advertise-client-urls "$scheme://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "$name=http://127.0.0.1:$peer" "$@" >"$dir/$name.log" 2>&1 &
  pids+=($!)
}
plain=$(port); secure=$(port)
member plain http "$plain"
member tls https "$secure" --cert-file "$tls/server.pem" --key-file "$tls/server-key.pem" \
  --trusted-ca-file "$tls/ca.pem" --client-cert-auth
cargo build -q --release -p sluice-store --example etcd_calls
sleep 3
target/release/examples/etcd_calls "$calls" \
  "etcd://127.0.0.1:$plain/bench" \
  "etcds://127.0.0.1:$secure/bench?ca=$tls/ca.pem&cert=$tls/client.pem&key=$tls/client-key.pem"
