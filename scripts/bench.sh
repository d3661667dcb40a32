#!/usr/bin/env bash
# Reproducible micro-benchmarks for the sans-IO core (criterion): the ATT codec (benches/att.rs),
# the GATT server (benches/gatt.rs)
# and L2CAP reassembly / host receive path (benches/l2cap.rs). Results: BENCHMARKS.md.
# Prints the machine first so a run can be compared with the table there.
#   scripts/bench.sh                    # all att + l2cap benches
#   scripts/bench.sh 'l2cap/'           # extra args go to criterion (here: a name filter)
# Criterion keeps its reports in target/criterion (compare runs with --save-baseline/--baseline).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

"$repo/scripts/machine-info.sh"

echo "== cargo bench -p gattling-proto --bench att --bench l2cap --bench gatt"
cargo bench -p gattling-proto --bench att --bench l2cap --bench gatt -- \
    --warm-up-time 1 --measurement-time 3 --noplot "$@"

# Summary from criterion's estimates (median of the per-sample times, and the slope estimate
# criterion prints as "time:").
echo
echo "== summary (ns per iteration)"
target="${CARGO_TARGET_DIR:-$repo/target}"
python3 - "$target/criterion" <<'PY'
import json, pathlib, sys
root = pathlib.Path(sys.argv[1])
names = ["att/decode_read_req", "att/encode_read_rsp_22", "l2cap/reassemble_512_from_27",
         "host/receive_att_read_req", "host/receive_att_512_fragmented"]
print(f"{'bench':34} {'median':>10} {'slope':>10} {'mean':>10}")
for name in names:
    f = root / name.replace("/", "_") / "new" / "estimates.json"
    if not f.exists():
        continue
    e = json.loads(f.read_text())
    get = lambda k: (e.get(k) or {}).get("point_estimate", float("nan"))
    print(f"{name:34} {get('median'):10.1f} {get('slope'):10.1f} {get('mean'):10.1f}")
PY
