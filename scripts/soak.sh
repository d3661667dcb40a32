#!/usr/bin/env bash
# Soak test (issue 14 part 1), reproducible and bounded in time. Results: RELIABILITY.md,
# section "Soak".
#
#   scripts/soak.sh [--secs S] [--links N] [--tcp-links N] [--only virtual|tcp] [--round-ms MS]
#
# 1. virtual: N links (default 1,000) on the in-process virtual controller, 4 central hosts
#    each connected to N/4 peripheral hosts, for S seconds (default 60), with 100 links drained,
#    dropped and made again every 10 s; a round every 200 ms per side of each link.
# 2. tcp: N links (default 50) through `gattling controller` over TCP (a separate process on a
#    free port on 127.0.0.1, in its own process group, stopped afterwards and on exit), one
#    central, 5 links churned every 10 s (the same 10 %); a round every 50 ms per side.
# --round-ms sets the round period of both (0: back to back, as fast as the machine goes).
# On every link both hosts run a GATT server and a GATT client: read, write, one notification
# and one indication per round, each way (crates/gattling/examples/soak.rs). Each run prints
# operations, notifications/indications sent and received, lost and reordered values, p50/p99
# latency, RSS (start, after the 10 s warm-up, middle, end), open descriptors before and after
# and tokio tasks alive after shutdown, then one JSON line. A run fails (exit status 1) when a
# value is lost or reordered, a task or descriptor is left, or RSS grows 5 % or more after the
# warm-up. Every run has a deadline (timeout(1)).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

secs=60
links=1000
tcp_links=50
only=""
round_virtual=200
round_tcp=50
while [[ $# -gt 0 ]]; do
    case "$1" in
        --secs) secs="$2"; shift 2 ;;
        --links) links="$2"; shift 2 ;;
        --tcp-links) tcp_links="$2"; shift 2 ;;
        --only) only="$2"; shift 2 ;;
        --round-ms) round_virtual="$2"; round_tcp="$2"; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "soak: unknown argument $1" >&2; exit 2 ;;
    esac
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
cargo build --release -q -p gattling --example soak
cargo build --release -q -p gattling-cli
soak_bin="$CARGO_TARGET_DIR/release/examples/soak"
gattling_bin="$CARGO_TARGET_DIR/release/gattling"

scripts/machine-info.sh

work="$(mktemp -d)"
bg_pid=""
stop_bg() {
    if [[ -n "$bg_pid" ]]; then
        kill -- "-$bg_pid" 2>/dev/null || true
        wait "$bg_pid" 2>/dev/null || true
        bg_pid=""
    fi
}
trap 'stop_bg; rm -rf "$work"' EXIT

free_port() {  # a free TCP port on 127.0.0.1
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
    for _ in $(seq 1 100); do
        kill -0 "$bg_pid" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

status=0
results=()
# check LABEL: fails the run unless its JSON line shows nothing lost, reordered or left behind.
check() {
    local label="$1" json="$2"
    python3 - "$label" "$json" <<'PY' || status=1
import json, sys
label, r = sys.argv[1], json.loads(sys.argv[2])
problems = []
for key in ("lost", "reordered", "bad_values", "errors", "tasks_alive_after_shutdown"):
    if r[key] != 0:
        problems.append(f"{key} = {r[key]}")
if r["notify_sent"] != r["notify_recv"] or r["indicate_sent"] != r["indicate_recv"]:
    problems.append("sent != received")
if r["fds_after"] > r["fds_before"]:
    problems.append(f"descriptors {r['fds_before']} -> {r['fds_after']}")
if r["rss_growth_pct"] >= 5.0:
    problems.append(f"RSS grew {r['rss_growth_pct']} % after warm-up")
print(f"== {label}: " + ("PASS" if not problems else "FAIL: " + "; ".join(problems)))
sys.exit(1 if problems else 0)
PY
}

run() {  # LABEL ARGS...
    local label="$1"; shift
    echo "== $label"
    local out="$work/$label.out"
    if timeout "$((secs + 240))" "$soak_bin" "$@" | tee "$out"; then :; else
        echo "== $label: soak exited with status $? (see above)"
        status=1
    fi
    local json
    json="$(grep '^{' "$out" | tail -n 1 || true)"
    if [[ -n "$json" ]]; then
        results+=("$label $json")
        check "$label" "$json"
    else
        echo "== $label: no result line"
        status=1
    fi
    echo
}

if [[ -z "$only" || "$only" == virtual ]]; then
    run "virtual-$links" --links "$links" --centrals 4 --secs "$secs" --churn $((links / 10)) --churn-every 10 \
        --warmup 10 --round-ms "$round_virtual" --transport virtual
fi

if [[ -z "$only" || "$only" == tcp ]]; then
    port="$(free_port)"
    setsid "$gattling_bin" controller --listen "127.0.0.1:$port" > "$work/controller.log" 2>&1 &
    bg_pid=$!
    if wait_port "$port"; then
        run "tcp-$tcp_links" --links "$tcp_links" --centrals 1 --secs "$secs" --churn $((tcp_links / 10)) \
            --churn-every 10 --warmup 10 --round-ms "$round_tcp" --transport "tcp-client:127.0.0.1:$port"
    else
        echo "soak: gattling controller did not start: $(tail -n 5 "$work/controller.log")" >&2
        status=1
    fi
    stop_bg
fi

echo "== summary"
for r in "${results[@]}"; do
    echo "$r"
done
exit "$status"
