#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/, cargo-fuzz + libFuzzer) and runs each one
# for FUZZ_SECONDS (default 30) from its corpus in fuzz/corpus/<target>/.
# Any crash, panic, timeout or out-of-memory fails the script; the input
# that caused it is kept in fuzz/artifacts/<target>/ and its path printed.
#
#   scripts/fuzz.sh                      # every target, 30 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh config targeting
#   FUZZ_KEEP=1 scripts/fuzz.sh config   # also add new inputs to the corpus
#   FUZZ_ARGS="-seed=1 -jobs=2" scripts/fuzz.sh config   # more libFuzzer flags
#
# Works with the stable toolchain: libFuzzer's coverage instrumentation
# needs no nightly flag, and the address sanitizer is left out
# (`--sanitizer none`): the crates fuzzed forbid unsafe code.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
seconds="${FUZZ_SECONDS:-30}"
all_targets=(config targeting ofrep_context admin_inputs)
targets=("$@")
((${#targets[@]})) || targets=("${all_targets[@]}")

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install --locked "cargo-fuzz@$CARGO_FUZZ_VERSION"
fi

dict_of() {
    case "$1" in
    config) echo fuzz/dicts/config.dict ;;
    *) echo fuzz/dicts/flags.dict ;;
    esac
}

# The fuzz workspace's Cargo.lock is committed: refuse to change it, and
# fetch everything first so that the build itself needs no network.
cargo fetch --locked --manifest-path fuzz/Cargo.toml
# One target dir for everything (CARGO_TARGET_DIR when set).
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
fuzz_build=(--sanitizer none --target-dir "$target_dir")
echo "== fuzz: building ${targets[*]}"
for target in "${targets[@]}"; do
    cargo fuzz build "${fuzz_build[@]}" "$target"
done

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
passed=0
failed=()
for target in "${targets[@]}"; do
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus" "fuzz/artifacts/$target"
    # New inputs go to the first directory: a scratch one, so a short run
    # leaves the committed corpus as it is (unless FUZZ_KEEP=1).
    dirs=("$scratch/$target" "$corpus")
    [ "${FUZZ_KEEP:-0}" = 1 ] && dirs=("$corpus")
    mkdir -p "$scratch/$target"
    log="$scratch/$target.log"
    echo "== fuzz: $target for ${seconds}s"
    if cargo fuzz run "${fuzz_build[@]}" "$target" "${dirs[@]}" -- \
        -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 \
        -dict="$(dict_of "$target")" -print_final_stats=1 ${FUZZ_ARGS:-} >"$log" 2>&1; then
        grep -E '^stat::(number_of_executed_units|peak_rss_mb|new_units_added)' "$log" |
            sed "s/^/   $target /" || true
        grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 | sed "s/^/   $target /" || true
        passed=$((passed + 1))
    else
        echo "!! fuzz: $target failed; the end of its log:" >&2
        tail -n 60 "$log" >&2
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "fuzz: targets that failed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
fi
echo "fuzz: $passed passed, ${#failed[@]} failed"
((${#failed[@]} == 0))
