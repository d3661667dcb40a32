#!/usr/bin/env bash
# Self-test of the bumble peers: both against each other on a private rootcanal.
# Usage: tests/interop/peers/selftest.sh   (exit 0 when every case passes)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="$("$here/../../../scripts/interop-env.sh" | tail -n 1)"
tmp="$(mktemp -d)"
rc_pid=""
cleanup() {
    # `python -m rootcanal` runs the real binary as a child: stop the whole process group.
    [[ -n "$rc_pid" ]] && { kill -- "-$rc_pid" 2>/dev/null || kill "$rc_pid" 2>/dev/null || true; }
    rm -rf "$tmp"
}
trap cleanup EXIT

# shellcheck source=selftest-lib.sh
source "$here/selftest-lib.sh"
start_controller "$tmp/rootcanal.log"

passed=0 failed=0
fail() { echo "FAIL $1: $2" >&2; for f in "$tmp/$1".*; do echo "--- $f" >&2; cat "$f" >&2; done; failed=$((failed + 1)); }

# run_case NAME "PERIPHERAL ARGS" "CENTRAL ARGS" DISCONNECTER(central|peripheral)
run_case() {
    local name=$1 pargs=$2 cargs=$3 by=$4 central_addr=C0:11:22:33:44:55 p_pid
    # shellcheck disable=SC2086  # argument lists
    "$PY" "$here/bumble_peripheral.py" --transport "$transport" --name "gat-$name" $pargs \
        > "$tmp/$name.p.out" 2> "$tmp/$name.p.err" &
    p_pid=$!
    # rootcanal's listen backlog is 1: start the central only once the peripheral is up.
    wait_line "$tmp/$name.p.out" '"advertising"' 20 || true
    # shellcheck disable=SC2086
    "$PY" "$here/bumble_central.py" --transport "$transport" --name "gat-$name" \
        --own-address "$central_addr" $cargs > "$tmp/$name.c.out" 2> "$tmp/$name.c.err" \
        || { kill "$p_pid" 2>/dev/null; wait "$p_pid" || true; fail "$name" "central exited $?"; return; }
    wait "$p_pid" || { fail "$name" "peripheral exited $?"; return; }
    if "$PY" - "$tmp/$name.p.out" "$tmp/$name.c.out" "$by" "$central_addr" <<'PYEOF'
import json, sys
p_out, c_out, by, central_addr = sys.argv[1:]
p = [json.loads(line) for line in open(p_out)]
c = [json.loads(line) for line in open(c_out)]
assert [e["event"] for e in p] == ["advertising", "connected", "disconnected"], p
assert [e["event"] for e in c] == ["found", "connected", "disconnected"], c
adv_addr = p[0]["address"]
assert int(adv_addr.split(":")[0], 16) >> 6 == 3, f"not static random: {adv_addr}"
assert c[0]["address"] == adv_addr and c[0]["address_type"] == "random", c[0]
assert isinstance(c[0]["rssi"], int), c[0]
assert c[1]["peer"] == adv_addr and p[1]["peer"] == central_addr, (c[1], p[1])
assert isinstance(c[1]["handle"], int) and isinstance(p[1]["handle"], int)
local, remote = (c[2], p[2]) if by == "central" else (p[2], c[2])
# Disconnect(reason 0x13): the initiator's controller reports 0x16, the peer gets 0x13.
assert local == {"event": "disconnected", "reason": 0x16, "by": "local"}, local
assert remote == {"event": "disconnected", "reason": 0x13, "by": "remote"}, remote
PYEOF
    then echo "ok   $name"; passed=$((passed + 1)); else fail "$name" "unexpected events"; fi
}

# expect_exit NAME CODE ARGS...: the central must fail with CODE
expect_exit() {
    local name=$1 want=$2 got=0
    shift 2
    "$PY" "$here/bumble_central.py" --transport "$transport" "$@" > "$tmp/$name.c.out" 2> "$tmp/$name.c.err" || got=$?
    if [[ $got == "$want" && ! -s "$tmp/$name.c.out" ]]; then echo "ok   $name"; passed=$((passed + 1));
    else fail "$name" "exit $got, want $want"; fi
}

start=$(date +%s%N)
run_case adv-central-disc   "--wait-disconnect"                                  "--disconnect-after 0.2" central
run_case adv-periph-disc    "--disconnect-after 0.2"                             "--wait-disconnect"      peripheral
run_case scanrsp-central-disc "--name-in-scan-response --gatt --wait-disconnect" "--disconnect-after 0.2" central
run_case scanrsp-periph-disc  "--name-in-scan-response --disconnect-after 0.2"   "--wait-disconnect"      peripheral
expect_exit not-found 1 --name gat-nobody --scan-timeout 0.5
expect_exit deadline  3 --name gat-nobody --scan-timeout 5 --timeout 1
echo "selftest: $(( ($(date +%s%N) - start) / 1000000 )) ms"
echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
