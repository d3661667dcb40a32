#!/usr/bin/env bash
# Smoke-runs every cargo-fuzz target of fuzz/ for a few seconds each and fails on any crash.
#
#   scripts/fuzz-smoke.sh [SECONDS_PER_TARGET]     (default 10)
#
# Environment: FUZZ_TARGETS="att_pdu acl" runs only those targets; FUZZ_SANITIZER=none|address
# (default address). Works on a stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its
# nightly-only flags (-Zsanitizer=address and friends) to the stable compiler.
#
# Seeds: a few valid inputs per target (scripts/fuzz-seeds.sh, shared with
# scripts/fuzz-campaign.sh) plus the committed campaign corpus fuzz/seeds/<target>/ (which also
# holds the inputs of fixed crashes, so every smoke run replays them) are copied into the
# (gitignored) fuzz/corpus/<target>/ before each run. Crash inputs land in fuzz/artifacts/<target>/.
set -euo pipefail

SECS="${1:-10}"
case "$SECS" in '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2 ;; esac
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ="$ROOT/fuzz"
SANITIZER="${FUZZ_SANITIZER:-address}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# shellcheck source=scripts/fuzz-seeds.sh
source "$ROOT/scripts/fuzz-seeds.sh"

cd "$FUZZ"
targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"
write_seeds "$FUZZ/corpus"
for t in $targets; do
    if [ -d "$FUZZ/seeds/$t" ]; then
        mkdir -p "$FUZZ/corpus/$t"
        cp -rp "$FUZZ/seeds/$t/." "$FUZZ/corpus/$t/"
    fi
done

start=$(date +%s)
echo "fuzz-smoke: building (sanitizer: $SANITIZER)"
cargo fuzz build --sanitizer "$SANITIZER"
echo "fuzz-smoke: built in $(($(date +%s) - start)) s; running each target for $SECS s"

failed=()
mkdir -p "$FUZZ/artifacts"
for t in $targets; do
    log="$FUZZ/artifacts/$t.log"
    mkdir -p "$FUZZ/corpus/$t"
    set +e
    cargo fuzz run --sanitizer "$SANITIZER" "$t" "$FUZZ/corpus/$t" -- \
        -max_total_time="$SECS" -timeout=10 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1 || true)
    rate=$(grep -Eo 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1 || true)
    cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+' || true)
    corpus=$(find "$FUZZ/corpus/$t" -type f | wc -l)
    if [ "$rc" -eq 0 ]; then
        printf '%-18s ok     %10s runs  %8s/s  cov %-5s corpus %s\n' "$t" "${runs:-?}" "${rate:-?}" "${cov:-?}" "$corpus"
    else
        printf '%-18s FAILED (exit %s) after %s runs; log: %s\n' "$t" "$rc" "${runs:-?}" "$log"
        grep -E -m4 "panicked at|^error|==ERROR|SUMMARY|Test unit written" -A1 "$log" | sed 's/^/    /' || true
        failed+=("$t")
    fi
done

echo "fuzz-smoke: total $(($(date +%s) - start)) s"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz-smoke: crashes in: ${failed[*]} (inputs under fuzz/artifacts/<target>/)" >&2
    exit 1
fi
echo "fuzz-smoke: all targets ran clean"
