#!/usr/bin/env bash
# Sequential GATT reads between two gattling hosts on one tokio multi-thread runtime (2 workers,
# as `#[tokio::main]` gives on 2 cores), beside a bare tokio task-to-task ping-pong measured in
# the same process (crates/gattling/examples/gatt_speed.rs --runtime multi), in several rounds.
# Prints the machine, one line per round, then the median, lowest and highest over the rounds
# of the read mean and median, the ping-pong and the read mean over the ping-pong (the figure
# issue 8 asks to keep within 2 us), and the notification rate and CPU per notification.
#
#   scripts/bench-gatt-speed.sh [--rounds K] [--reads N] [--seconds S] [--runtime multi|single]
#
# Defaults: --rounds 9 --reads 30000 --seconds 1 --runtime multi. One process per round: the
# same binary gives quite different figures a minute apart on a shared VM, so a single run says
# little; the median over rounds is the figure to record.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

rounds=9
reads=30000
seconds=1
runtime=multi
usage() {
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds="${2:?}"; shift 2 ;;
        --reads) reads="${2:?}"; shift 2 ;;
        --seconds) seconds="${2:?}"; shift 2 ;;
        --runtime) runtime="${2:?}"; shift 2 ;;
        *) usage ;;
    esac
done

cargo build -q --release -p gattling --example gatt_speed
bin=target/release/examples/gatt_speed
scripts/machine-info.sh 2>/dev/null || true
echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u '+%Y-%m-%d %H:%M UTC')"

results=$(mktemp)
trap 'rm -f "$results"' EXIT
for round in $(seq 1 "$rounds"); do
    line=$("$bin" --runtime "$runtime" --reads "$reads" --seconds "$seconds" | grep '"bench":"gatt_speed"')
    echo "$line" >> "$results"
    python3 - "$round" "$line" <<'PY'
import json, sys
r = json.loads(sys.argv[2])
print(f"round {sys.argv[1]}: read mean {r['read_mean_us']:.2f} us, median {r['read_median_us']:.2f} us, "
      f"p99 {r['read_p99_us']:.1f} us; ping-pong {r['pingpong_us']:.2f} us; 3-task ring {r['ring3_us']:.2f} us; "
      f"mean over ping-pong +{r['read_mean_us'] - r['pingpong_us']:.2f} us; "
      f"{r['notifications_per_s']:.0f} notifications/s at {r['cpu_us_per_notification_combined']:.2f} us CPU")
PY
done

python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def col(f):
    return [f(r) for r in rows]
print()
print(f"{'over ' + str(len(rows)) + ' rounds':<40} {'median':>10} {'lowest':>10} {'highest':>10}")
for name, values, unit in [
    ("read mean", col(lambda r: r["read_mean_us"]), "us"),
    ("read median", col(lambda r: r["read_median_us"]), "us"),
    ("read p99", col(lambda r: r["read_p99_us"]), "us"),
    ("bare ping-pong", col(lambda r: r["pingpong_us"]), "us"),
    ("bare 3-task ring (a read's three hops)", col(lambda r: r["ring3_us"]), "us"),
    ("read mean over ping-pong", col(lambda r: r["read_mean_us"] - r["pingpong_us"]), "us"),
    ("read median over ping-pong", col(lambda r: r["read_median_us"] - r["pingpong_us"]), "us"),
    ("notifications/s", col(lambda r: r["notifications_per_s"]), ""),
    ("CPU per notification (both hosts)", col(lambda r: r["cpu_us_per_notification_combined"]), "us"),
]:
    fmt = (lambda v: f"{v:.0f}") if unit == "" else (lambda v: f"{v:.2f} {unit}")
    print(f"{name:<40} {fmt(statistics.median(values)):>10} {fmt(min(values)):>10} {fmt(max(values)):>10}")
within = sum(1 for r in rows if r["read_mean_us"] - r["pingpong_us"] <= 2.0)
print(f"rounds with the read mean within 2 us of the ping-pong: {within} of {len(rows)}")
within = sum(1 for r in rows if r["read_median_us"] - r["pingpong_us"] <= 2.0)
print(f"rounds with the read median within 2 us of the ping-pong: {within} of {len(rows)}")
PY
