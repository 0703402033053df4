#!/usr/bin/env bash
# The whole test suite, as CI runs it (`.ci/run` calls exactly this).
# Installs what the tests need when it is missing, then: rustfmt check,
# clippy with warnings as errors, and every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages, installed with sudo only when not root.
apt_install() {
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

need_apt=()
# promtool checks the /metrics exposition (Debian's `prometheus` package).
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
# The dashboard's end-to-end tests (crates/sluice/tests/ui.rs) drive a
# headless Chromium through chromedriver (WebDriver).
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium chromium-driver)
# The etcd store suite and the cluster-mode tests run against a real etcd (Debian's `etcd-server`).
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
if ((${#need_apt[@]})); then
    apt_install "${need_apt[@]}"
fi

# The OpenFeature interop test (crates/sluice/tests/ofrep_sdk.rs) runs the
# Python SDK and its OFREP provider from a virtualenv of these exact versions
# (the whole dependency set, so CI does not drift). Made again only when the
# list changes.
py_ofrep=target/py-ofrep
py_ofrep_packages=(
    openfeature-sdk==0.10.0
    openfeature-provider-ofrep==0.3.0
    requests==2.34.2
    urllib3==2.8.0
    idna==3.20
    charset-normalizer==3.5.2
    certifi==2026.10.18
)
if [ ! -x "$py_ofrep/bin/python" ] || [ "$(cat "$py_ofrep/pinned" 2>/dev/null)" != "${py_ofrep_packages[*]}" ]; then
    echo "== python: $py_ofrep"
    # Debian's own python3 makes virtualenvs only with python3-venv.
    if ! python3 -m venv --clear "$py_ofrep" >/dev/null 2>&1; then
        apt_install python3-venv
        python3 -m venv --clear "$py_ofrep"
    fi
    "$py_ofrep/bin/python" -m pip install -q --disable-pip-version-check "${py_ofrep_packages[@]}"
    echo "${py_ofrep_packages[*]}" >"$py_ofrep/pinned"
fi
export SLUICE_TEST_PYTHON="$PWD/$py_ofrep/bin/python"

echo "== rustfmt"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
    cargo test --workspace --locked --doc
else
    cargo test --workspace --locked --no-fail-fast
fi

# Dependencies and hostile input: cargo-deny (licences, duplicate versions,
# sources; advisories when the RustSec database can be fetched) and a short
# run of every fuzz target (scripts/fuzz.sh; FUZZ_SECONDS, default 30).
cargo_deny_version=0.20.2
if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $cargo_deny_version" ]; then
    echo "== installing cargo-deny $cargo_deny_version"
    cargo install --locked "cargo-deny@$cargo_deny_version"
fi
echo "== cargo deny"
cargo deny --locked check licenses bans sources
if cargo deny fetch db; then
    cargo deny --frozen check advisories
else
    echo "!! cargo deny: advisories NOT CHECKED: the RustSec advisory database" \
        "could not be fetched (it lives on github.com); licences, bans and sources were checked" >&2
fi
echo "== fuzz"
bash scripts/fuzz.sh
