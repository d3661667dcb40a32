#!/usr/bin/env bash
# gattling's whole tokio host (crates/gattling/examples/host_bench.rs) beside trouble-host 0.8's whole
# host (shared/perf-anchors/trouble-bench, `full read`), in one run on one machine: the same fake
# in-process controller shape, the same Read Request `0a 03 00`, the same one-service database,
# lockstep and a window of 8 requests. Prints the machine, every RESULT line, then a table with
# the ratio gattling / trouble.
#
# Absolute figures move a lot between processes on a shared VM (the same binary has given 2.9
# and 5.5 million requests/s a minute apart), so the programs are interleaved in rounds: each
# round runs trouble-bench and then gattling on each runtime, back to back, and the ratio is
# taken within the round. The table gives the median over the rounds of each rate and of each
# ratio, and the lowest and highest ratio.
#
#   scripts/bench-vs-trouble.sh [--requests N] [--runs R] [--rounds K] [--runtime multi|current|both]
#                               [--profile like-trouble|release]
#
# Defaults: --requests 300000 --runs 3 --rounds 7 --runtime both --profile like-trouble.
# Profiles: trouble-bench is always built with its own release profile (fat LTO, one codegen
# unit, debug=1). `like-trouble` builds gattling the same way (through CARGO_PROFILE_RELEASE_*
# variables, into its own target directory so the ordinary release build stays cached);
# `release` uses the workspace's plain release profile (no cross-crate LTO, 16 codegen units).
# Needs crates.io the first time (trouble-bench's dependencies). PERF_ANCHORS overrides where
# shared/perf-anchors is (default: ../shared/perf-anchors from the project root).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

requests=300000
runs=3
rounds=7
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
        --rounds) rounds="${2:?}"; shift 2 ;;
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
    for round in $(seq 1 "$rounds"); do
        echo
        echo "== window $window, round $round: trouble full read $requests $runs $window"
        if [ "$window" = 1 ]; then
            "$trouble" full read "$requests" "$runs" | sed "s/^RESULT/RESULT round=$round/" | tee -a "$log"
        else
            "$trouble" full read "$requests" "$runs" "$window" | sed "s/^RESULT/RESULT round=$round/" | tee -a "$log"
        fi
        for rt in $runtimes; do
            echo "== window $window, round $round: gattling host_bench --runtime $rt"
            "$gattling" --runtime "$rt" --window "$window" --requests "$requests" --runs "$runs" \
                | sed "s/^RESULT/RESULT round=$round/" | tee -a "$log"
        done
    done
done

echo
echo "== summary ($rounds rounds of $requests requests x $runs runs; gattling profile: $profile)"
python3 - "$log" <<'PY'
import re, statistics, sys
pat = re.compile(r"^RESULT round=(\d+) (\S+) full-host read \(([^)]*)\): median (\d+) req/s .*allocs/req=([\d.]+)")
runs = {}      # (mode, stack, runtime) -> {round: rate}
allocs = {}
for line in open(sys.argv[1]):
    m = pat.match(line)
    if not m:
        continue
    rnd, stack, what, rate, alloc = int(m.group(1)), m.group(2), m.group(3), float(m.group(4)), float(m.group(5))
    parts = [p.strip() for p in what.split(";")]
    key = (parts[0], stack, parts[1] if len(parts) > 1 else "futures block_on (1 thread)")
    runs.setdefault(key, {})[rnd] = rate
    allocs[key] = max(allocs.get(key, 0.0), alloc)
print(f"{'mode':9} {'stack':9} {'executor':28} {'req/s':>11} {'us/req':>7} {'allocs/req':>10} "
      f"{'vs trouble':>10} {'lowest':>7} {'highest':>7}")
for key in sorted(runs, key=lambda k: (k[0], k[1] != "trouble", k[2])):
    mode, stack, runtime = key
    rate = statistics.median(runs[key].values())
    base = runs.get((mode, "trouble", "futures block_on (1 thread)"), {})
    ratios = [r / base[n] for n, r in runs[key].items() if n in base]
    med = statistics.median(ratios) if ratios else float("nan")
    lo = min(ratios) if ratios else float("nan")
    hi = max(ratios) if ratios else float("nan")
    print(f"{mode:9} {stack:9} {runtime:28} {rate:11,.0f} {1e6 / rate:7.3f} {allocs[key]:10.3f} "
          f"{med:9.2f}x {lo:6.2f}x {hi:6.2f}x")
print("target: gattling >= 2.00x trouble, 0 allocations per request")
PY
