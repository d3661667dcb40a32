#!/usr/bin/env bash
# Self-test of bumble_pairing.py: a bumble peripheral and a bumble central pair on a private rootcanal
# (or, with GATTLING_BIN=path/to/gattling, on gattling's own virtual controller, `gattling controller`).
# Usage: tests/interop/peers/selftest_pairing.sh [CASE...]   (exit 0 when every case passes;
# with CASE names, run only those; KEEP_TMP=1 keeps the outputs)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="$("$here/../../../scripts/interop-env.sh" | tail -n 1)"
tmp="$(mktemp -d)"
rc_pid=""
cleanup() {
    # `python -m rootcanal` runs the real binary as a child: stop the whole process group.
    [[ -n "$rc_pid" ]] && { kill -- "-$rc_pid" 2>/dev/null || kill "$rc_pid" 2>/dev/null || true; }
    if [[ -n "${KEEP_TMP:-}" ]]; then echo "outputs kept in $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

# shellcheck source=selftest-lib.sh
source "$here/selftest-lib.sh"
start_controller "$tmp/controller.log"

ENC=3E1F0102-6A5B-4C2D-9E8F-0A1B2C3D4E5F
AUTH=3E1F0103-6A5B-4C2D-9E8F-0A1B2C3D4E5F
P_ADDR=C1:00:00:00:00:01
C_ADDR=C2:00:00:00:00:02

passed=0 failed=0 case_no=0 selected=("$@")
fail() { echo "FAIL $1: $2" >&2; for f in "$tmp/$1".*; do echo "--- $f" >&2; cat "$f" >&2; done; failed=$((failed + 1)); }

# pair_case NAME "PERIPHERAL ARGS" "CENTRAL ARGS" CHECK
# Runs the peripheral, then (once it is advertising) the central, which disconnects when its steps
# are done; CHECK is Python run with p and c = the two event lists and the helpers below.
pair_case() {
    local name=$1 pargs=$2 cargs=$3 check=$4 p_pid
    case_no=$((case_no + 1))
    if [[ ${#selected[@]} -gt 0 && ! " ${selected[*]} " =~ " $name " ]]; then return; fi
    # shellcheck disable=SC2086  # argument lists
    "$PY" "$here/bumble_pairing.py" --role peripheral --transport "$transport" --name "gp-$case_no" \
        --address "$P_ADDR" --timeout 20 $pargs > "$tmp/$name.p.out" 2> "$tmp/$name.p.err" &
    p_pid=$!
    # rootcanal's listen backlog is 1: start the central only once the peripheral is up.
    wait_line "$tmp/$name.p.out" '"ready"' 20 || true
    # shellcheck disable=SC2086
    "$PY" "$here/bumble_pairing.py" --role central --transport "$transport" --name "gp-$case_no" \
        --address "$C_ADDR" --timeout 20 --disconnect-after 0 $cargs > "$tmp/$name.c.out" 2> "$tmp/$name.c.err" \
        || { local rc=$?; kill "$p_pid" 2>/dev/null || true; wait "$p_pid" || true; fail "$name" "central exited $rc"; return; }
    wait "$p_pid" || { fail "$name" "peripheral exited $?"; return; }
    if "$PY" - "$tmp/$name.p.out" "$tmp/$name.c.out" "$check" <<'PYEOF'
import json, os, sys
p_out, c_out, check = sys.argv[1:]
CONTROLLER = os.environ["CONTROLLER"]
p = [json.loads(line) for line in open(p_out)]
c = [json.loads(line) for line in open(c_out)]
# both controllers answer Read Encryption Key Size (gattling's since its typed encryption commands)
KEY_SIZE = 16
ENC, AUTH = "3E1F0102-6A5B-4C2D-9E8F-0A1B2C3D4E5F", "3E1F0103-6A5B-4C2D-9E8F-0A1B2C3D4E5F"
INSUFFICIENT_AUTHENTICATION, INSUFFICIENT_ENCRYPTION = 0x05, 0x0F

def names(events):
    return [e["event"] for e in events]

def one(events, name):
    found = [e for e in events if e["event"] == name]
    assert len(found) == 1, f"want one {name}, got {found} in {names(events)}"
    return found[0]

def none(events, *what):
    assert not [e for e in events if e["event"] in what], f"unexpected {what} in {names(events)}"

def paired(sc, authenticated, bonded=True):
    """Both sides report the same successful pairing; returns (peripheral, central) events."""
    pc, cc = one(p, "pairing_complete"), one(c, "pairing_complete")
    for side, other in ((pc, "C2:00:00:00:00:02"), (cc, "C1:00:00:00:00:01")):
        assert side["sc"] is sc and side["authenticated"] is authenticated and side["bonded"] is bonded, side
        assert side["key_size"] == 16 and side["peer_identity"] == other, side
        assert side["peer_identity_type"] == "random", side
    assert pc["ltk"] == cc["ltk"] and len(pc["ltk"]) == 32, (pc, cc)
    for events in (p, c):
        one(events, "pairing_started")
        # encryption_change comes first, then key distribution, then pairing_complete
        e = one(events, "encryption_change")
        assert e == {"event": "encryption_change", "encrypted": True, "key_size": KEY_SIZE}, e
        assert names(events).index("encryption_change") < names(events).index("pairing_complete")
        none(events, "pairing_failed", "encryption_failed")
    return pc, cc

def failed(reason):
    """Both sides report a failed pairing with this SMP reason and no encryption."""
    for events in (p, c):
        f = one(events, "pairing_failed")
        assert f["reason"] == reason, f
        none(events, "pairing_complete", "encryption_change")

def reads(*expected):
    """The central's read / read_error events, as (uuid, value-or-error-code)."""
    got = [(e["uuid"], e.get("value", e.get("code"))) for e in c if e["event"] in ("read", "read_error")]
    assert got == list(expected), got

ENC_VALUE, AUTH_VALUE = b"encrypted".hex(), b"authenticated".hex()
assert names(p)[:2] == ["ready", "connected"] and names(p)[-1] == "disconnected", names(p)
assert names(c)[:3] in (["ready", "found", "connected"], ["ready", "connected", names(c)[2]]), names(c)
assert "connected" in names(c)[:3] and names(c)[-2:] == ["done", "disconnected"], names(c)
exec(check)
PYEOF
    then echo "ok   $name"; passed=$((passed + 1)); else fail "$name" "unexpected events"; fi
}

start=$(date +%s%N)

# LE Secure Connections
pair_case sc-just-works "--io no-io" "--io no-io --pair --read-uuid $ENC --read-uuid $AUTH" '
paired(sc=True, authenticated=False)
none(p + c, "numeric_comparison", "passkey_display", "passkey_request")
reads((ENC, ENC_VALUE), (AUTH, INSUFFICIENT_AUTHENTICATION))'

pair_case sc-numeric "--io display-yesno --mitm" "--io display-yesno --mitm --pair --read-uuid $AUTH" '
paired(sc=True, authenticated=True)
n_p, n_c = one(p, "numeric_comparison"), one(c, "numeric_comparison")
assert n_p["number"] == n_c["number"] and 0 <= n_p["number"] <= 999999, (n_p, n_c)
reads((AUTH, AUTH_VALUE))'

pair_case sc-numeric-reject "--io display-yesno --mitm --numeric reject" "--io display-yesno --mitm --pair" '
failed(0x0C)  # Numeric Comparison Failed
one(p, "numeric_comparison")'

# the central enters what the peripheral displays
pair_case sc-passkey-central-enters "--io display-only --mitm --passkey 123456" \
    "--io keyboard-only --mitm --passkey 123456 --pair --read-uuid $AUTH" '
paired(sc=True, authenticated=True)
assert one(p, "passkey_display")["passkey"] == 123456
one(c, "passkey_request")
none(c, "passkey_display"); none(p, "passkey_request")
reads((AUTH, AUTH_VALUE))'

# the peripheral enters what the central displays
pair_case sc-passkey-peripheral-enters "--io keyboard-only --mitm --passkey 654321" \
    "--io display-only --mitm --passkey 654321 --pair --read-uuid $AUTH" '
paired(sc=True, authenticated=True)
assert one(c, "passkey_display")["passkey"] == 654321
one(p, "passkey_request")
reads((AUTH, AUTH_VALUE))'

# the central connects to --peer without scanning; asked for a passkey it has none: it refuses
pair_case passkey-refused "--io display-only --mitm" "--peer $P_ADDR --io keyboard-only --mitm --pair" '
failed(0x01)  # Passkey Entry Failed
one(c, "passkey_request")  # (the peripheral may fail before it got to display its passkey)
none(c, "found")'

pair_case sc-passkey-wrong "--io keyboard-only --mitm --passkey 111111" \
    "--io display-only --mitm --passkey 222222 --pair" '
failed(0x04)  # Confirm Value Failed'

# MITM required but the IO capabilities allow only Just Works: refused either way round
pair_case require-mitm-responder "--require-mitm --io display-yesno" "--io no-io --pair" '
failed(0x03)  # Authentication Requirements'
pair_case require-mitm-initiator "--io no-io" "--require-mitm --io display-yesno --pair" '
failed(0x03)'

# LE legacy pairing
pair_case legacy-just-works "--no-sc" "--no-sc --pair --read-uuid $ENC --read-uuid $AUTH" '
pc, cc = paired(sc=False, authenticated=False)
# legacy: the LTK the peripheral distributed, with its EDIV and Rand (bumble sends 0 and 0)
assert (pc["ediv"], pc["rand"]) == (cc["ediv"], cc["rand"]) == (0, "00" * 8), (pc, cc)
reads((ENC, ENC_VALUE), (AUTH, INSUFFICIENT_AUTHENTICATION))'

pair_case legacy-passkey "--no-sc --io display-only --mitm --passkey 000042" \
    "--no-sc --io keyboard-only --mitm --passkey 42 --pair --read-uuid $AUTH" '
paired(sc=False, authenticated=True)
assert one(p, "passkey_display")["passkey"] == 42
one(c, "passkey_request")
reads((AUTH, AUTH_VALUE))'

# Security Request from the peripheral: the central pairs
pair_case security-request "--pair --io display-yesno --mitm" "--io display-yesno --mitm --wait-security" '
paired(sc=True, authenticated=True)
assert one(c, "security_request") == {"event": "security_request", "auth_req": 0x0D, "action": "pair"}
# the peripheral goes on (done) only once pairing has ended (if the link is still up by then)
assert "done" not in names(p) or names(p).index("pairing_complete") < names(p).index("done")'

# without pairing: both protected reads fail with Insufficient Authentication (no key stored)
pair_case no-pairing "" "--read-uuid $ENC --read-uuid $AUTH" '
none(p + c, "pairing_started", "encryption_change")
reads((ENC, INSUFFICIENT_AUTHENTICATION), (AUTH, INSUFFICIENT_AUTHENTICATION))'

# reads by handle (the handles "ready" reports): open, then encrypted without pairing
pair_case read-handle "" "--read 0x0010 --read 18" '
h = one(p, "ready")["handles"]
assert (h["open"], h["enc"], h["enc_cccd"], h["auth"]) == (0x10, 0x12, 0x13, 0x15), h
got = [e for e in c if e["event"] in ("read", "read_error")]
assert got == [{"event": "read", "handle": 0x10, "value": b"open".hex()},
               {"event": "read_error", "handle": 0x12, "code": INSUFFICIENT_AUTHENTICATION}], got'

# bumble's GATT client does not pair on Insufficient Authentication; --pair-on-error does it
pair_case read-triggers-pairing "" "--pair-on-error --read-uuid $ENC" '
reads((ENC, INSUFFICIENT_AUTHENTICATION), (ENC, ENC_VALUE))
paired(sc=True, authenticated=False)'

pair_case subscribe "" "--pair --subscribe $ENC --notifications 1" '
paired(sc=True, authenticated=False)
s = one(c, "subscribed")
assert one(c, "notification") == {"event": "notification", "handle": s["handle"], "value": ENC_VALUE}'

pair_case no-bonding "--no-bonding --keystore $tmp/nb.p.json" "--no-bonding --pair --keystore $tmp/nb.c.json" '
paired(sc=True, authenticated=False, bonded=False)
import os
for f in ("'"$tmp"'/nb.p.json", "'"$tmp"'/nb.c.json"):
    assert not os.path.exists(f) or "C1:" not in open(f).read() and "C2:" not in open(f).read(), f'

# bonded reconnection: pair once with keystores, then encrypt with the stored keys
for mode in sc legacy; do
    sc_opt=$([[ $mode == sc ]] && echo "" || echo "--no-sc")
    rm -f "$tmp/$mode.p.json" "$tmp/$mode.c.json"
    pair_case "bond-$mode" "$sc_opt --io display-only --mitm --passkey 5 --keystore $tmp/$mode.p.json" \
        "$sc_opt --io keyboard-only --mitm --passkey 5 --pair --keystore $tmp/$mode.c.json" '
pc, _ = paired(sc='"$([[ $mode == sc ]] && echo True || echo False)"', authenticated=True)
open("'"$tmp/$mode"'.ltk", "w").write(pc["ltk"])'
    pair_case "reconnect-$mode" "--keystore $tmp/$mode.p.json" \
        "--keystore $tmp/$mode.c.json --encrypt --read-uuid $AUTH" '
none(p + c, "pairing_started", "pairing_complete", "pairing_failed", "encryption_failed")
for events in (p, c):
    assert one(events, "encryption_change") == {"event": "encryption_change", "encrypted": True, "key_size": KEY_SIZE}
reads((AUTH, AUTH_VALUE))  # the stored key is an authenticated one'
    # bonded, not encrypted yet: Insufficient Encryption, and --pair-on-error encrypts (no pairing)
    pair_case "reconnect-read-$mode" "--keystore $tmp/$mode.p.json" \
        "--keystore $tmp/$mode.c.json --pair-on-error --read-uuid $ENC" '
reads((ENC, INSUFFICIENT_ENCRYPTION), (ENC, ENC_VALUE))
none(p + c, "pairing_started")
one(c, "encryption_change")'
done

# a bonded peripheral's Security Request: the central encrypts with the stored key, no pairing
pair_case reconnect-security-request "--pair --keystore $tmp/sc.p.json" \
    "--keystore $tmp/sc.c.json --wait-security --read-uuid $AUTH" '
assert one(c, "security_request") == {"event": "security_request", "auth_req": 0x09, "action": "encrypt"}
none(p + c, "pairing_started")
for events in (p, c):
    one(events, "encryption_change")
reads((AUTH, AUTH_VALUE))'

# the peripheral lost the bond: it answers the LTK Request with a Negative Reply; the central's
# encryption fails with 0x06 PIN or Key Missing (Vol 6 Part B 5.1.3.1) - rootcanal reports
# 0x05 Authentication Failure instead - and the peripheral is told nothing
pair_case reconnect-key-missing "" "--keystore $tmp/sc.c.json --encrypt --read-uuid $ENC" '
status = 0x05 if CONTROLLER == "rootcanal" else 0x06
assert one(c, "encryption_failed") == {"event": "encryption_failed", "status": status}, c
none(p + c, "encryption_change")
reads((ENC, INSUFFICIENT_AUTHENTICATION))'

# encrypting an encrypted link refreshes the key: Encryption Key Refresh Complete on both sides
pair_case key-refresh "--keystore $tmp/kr.p.json" "--keystore $tmp/kr.c.json --pair --encrypt --read-uuid $ENC" '
paired(sc=True, authenticated=False)
for events in (p, c):
    one(events, "key_refresh")
    assert names(events).index("pairing_complete") < names(events).index("key_refresh")
reads((ENC, ENC_VALUE))'

# the central has no key: nothing is sent
pair_case encrypt-no-key "" "--encrypt" '
assert one(c, "encryption_failed") == {"event": "encryption_failed", "status": None,
                                       "error": "no key stored for the peer"}, c
none(p, "encryption_change", "encryption_failed")'

echo "selftest_pairing ($CONTROLLER): $(( ($(date +%s%N) - start) / 1000000 )) ms"
echo "$passed passed, $failed failed"
[[ $failed == 0 && $passed -gt 0 ]]
