#!/usr/bin/env bash
# gattling's whole tokio host (crates/gattling/examples/host_bench.rs) beside trouble-host 0.8's whole
# host (shared/perf-anchors/trouble-bench, `full read`), in one run on one machine: the same fake
# in-process controller shape, the same Read Request `0a 03 00`, the same one-service database,
# lockstep and a window of 8 requests. Prints the machine, every RESULT line, then a table with
# the ratio gattling / trouble (absolute figures move between runs on a shared VM; ratios of one
# run hold better).
#
#   scripts/bench-vs-trouble.sh [--requests N] [--runs R] [--runtime multi|current|both]
#                               [--profile like-trouble|release]
#
# Defaults: --requests 500000 --runs 7 --runtime both --profile like-trouble.
# Profiles: trouble-bench is always built with its own release profile (fat LTO, one codegen
# unit, debug=1). `like-trouble` builds gattling the same way (through CARGO_PROFILE_RELEASE_*
# variables, into its own target directory so the ordinary release build stays cached);
# `release` uses the workspace's plain release profile (no cross-crate LTO, 16 codegen units).
# Needs crates.io the first time (trouble-bench's dependencies). PERF_ANCHORS overrides where
# shared/perf-anchors is (default: ../shared/perf-anchors from the project root).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

requests=500000
runs=7
runtimes="multi current"
profile=like-trouble
usage() {
    sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
        --requests) requests="${2:?}"; shift 2 ;;
        --runs) runs="${2:?}"; shift 2 ;;
        --runtime)
            case "${2:-}" in
                multi|current) runtimes="$2" ;;
                both) runtimes="multi current" ;;
                *) usage ;;
            esac
            shift 2 ;;
        --profile)
            case "${2:-}" in
                like-trouble|release) profile="$2" ;;
                *) usage ;;
            esac
            shift 2 ;;
        -h|--help) usage ;;
        *) usage ;;
    esac
done

anchors="${PERF_ANCHORS:-$repo/../shared/perf-anchors}"
if [ ! -f "$anchors/trouble-bench/Cargo.toml" ]; then
    echo "bench-vs-trouble: no trouble-bench under $anchors (set PERF_ANCHORS)" >&2
    exit 1
fi

"$repo/scripts/machine-info.sh"

echo "== build trouble-bench (its release profile: fat LTO, codegen-units 1)"
# As shared/perf-anchors/README.md says: from the project root, its own target directory.
cargo build --release --manifest-path "$anchors/trouble-bench/Cargo.toml" --target-dir target/perf-anchors
trouble="$repo/target/perf-anchors/release/trouble-bench"

target="${CARGO_TARGET_DIR:-$repo/target}"
echo "== build gattling examples/host_bench (profile: $profile)"
if [ "$profile" = like-trouble ]; then
    CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_DEBUG=1 \
        CARGO_TARGET_DIR="$target/like-trouble" cargo build --release -p gattling --example host_bench
    gattling="$target/like-trouble/release/examples/host_bench"
else
    cargo build --release -p gattling --example host_bench
    gattling="$target/release/examples/host_bench"
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for window in 1 8; do
    echo
    echo "== window $window: trouble full read $requests $runs $window"
    if [ "$window" = 1 ]; then
        "$trouble" full read "$requests" "$runs" | tee -a "$log"
    else
        "$trouble" full read "$requests" "$runs" "$window" | tee -a "$log"
    fi
    for rt in $runtimes; do
        echo "== window $window: gattling host_bench --runtime $rt"
        "$gattling" --runtime "$rt" --window "$window" --requests "$requests" --runs "$runs" | tee -a "$log"
    done
done

echo
echo "== summary ($requests requests x $runs runs; median requests/s; gattling profile: $profile)"
python3 - "$log" <<'PY'
import re, sys
rows = []
pat = re.compile(r"^RESULT (\S+) full-host read \(([^)]*)\): median (\d+) req/s .*allocs/req=([\d.]+)")
for line in open(sys.argv[1]):
    m = pat.match(line)
    if not m:
        continue
    stack, what, rate, allocs = m.group(1), m.group(2), float(m.group(3)), float(m.group(4))
    parts = [p.strip() for p in what.split(";")]
    mode = parts[0]
    runtime = parts[1] if len(parts) > 1 else "futures block_on (1 thread)"
    rows.append((mode, stack, runtime, rate, allocs))
trouble = {mode: rate for mode, stack, _, rate, _ in rows if stack == "trouble"}
print(f"{'mode':10} {'stack':9} {'executor':28} {'req/s':>11} {'us/req':>8} {'allocs/req':>11} {'vs trouble':>11}")
for mode, stack, runtime, rate, allocs in rows:
    ratio = rate / trouble[mode] if mode in trouble else float("nan")
    print(f"{mode:10} {stack:9} {runtime:28} {rate:11,.0f} {1e6 / rate:8.3f} {allocs:11.3f} {ratio:10.2f}x")
print("target: gattling >= 2.00x trouble, 0 allocations per request")
PY
