#!/usr/bin/env bash
# GATT client speed (issue 5), reproducible: sequential 20-byte reads and 244-byte notifications
# at ATT_MTU 247, gattling host to gattling host, and bumble to bumble for comparison.
# Results: BENCHMARKS.md, section "GATT client (issue 5)".
#
#   scripts/bench-gatt.sh [--reads N] [--seconds S] [--no-untuned] [--no-gattling-server]
#
# 1. gatt_speed on gattling's in-process virtual controller (ACL 251 x 8), one thread
#    (--runtime single), server/client on two threads (--runtime split), and everything on one
#    tokio multi-thread runtime with 2 workers (--runtime multi, what #[tokio::main] gives on
#    2 cores). Each also times a bare tokio task-to-task ping-pong on the same runtime(s),
#    printed under its row so the hosts' overhead over the scheduler's floor shows.
# 2. rootcanal 1.10.0 (from .venv, installed by scripts/interop-env.sh) on free ports, in its own
#    process group, one fresh instance per run, killed afterwards and on exit:
#    gatt_speed over it, bumble_speed.py over it with peerlib's TCP tuning (TCP_NODELAY +
#    TCP_QUICKACK, what gattling's transport does), and bumble_speed.py without the tuning
#    (100 reads only: every exchange stalls on delayed ACKs; skip with --no-untuned).
# 3. gattling's own controller server over TCP (`gattling controller --listen`, ACL 251 x 8,
#    no simulated tick): the same two hosts on a controller with no per-exchange delay, so the
#    hosts' own speed shows (skip with --no-gattling-server).
# Every run has a deadline (timeout(1)); a failed run is reported and the script goes on.
# The summary at the end puts the JSON lines of all runs side by side.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

reads=1000
seconds=5
untuned=1
gattling_server=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --reads) reads="$2"; shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        --no-untuned) untuned=0; shift ;;
        --no-gattling-server) gattling_server=0; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "bench-gatt: unknown argument $1" >&2; exit 2 ;;
    esac
done

"$repo/scripts/machine-info.sh"

echo "== build"
cargo build --release -q -p gattling --example gatt_speed
cargo build --release -q -p gattling-cli
target="${CARGO_TARGET_DIR:-$repo/target}"
speed="$target/release/examples/gatt_speed"
gattling_bin="$target/release/gattling"
py="$(scripts/interop-env.sh | tail -n 1)"
"$py" -c 'import bumble, rootcanal' || { echo "bench-gatt: the venv lacks bumble/rootcanal" >&2; exit 1; }
peers="$repo/tests/interop/peers"

work="$(mktemp -d "${TMPDIR:-/tmp}/bench-gatt.XXXXXX")"
results="$work/results.jsonl"
: > "$results"
bg_pid=""   # the background controller (rootcanal or gattling), leader of its own process group

stop_bg() {
    if [[ -n "$bg_pid" ]]; then
        kill -TERM -- "-$bg_pid" 2>/dev/null || true
        for _ in $(seq 1 20); do
            kill -0 "$bg_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$bg_pid" 2>/dev/null || true
        wait "$bg_pid" 2>/dev/null || true
        bg_pid=""
    fi
}
cleanup() {
    stop_bg
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_ports() {  # N free TCP ports on 127.0.0.1
    "$py" - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

wait_port() {  # PORT: until it accepts (at most 15 s) while the background process lives
    local port="$1"
    for _ in $(seq 1 300); do
        kill -0 "$bg_pid" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            sleep 0.2  # the probe took rootcanal's single backlog slot
            return 0
        fi
        sleep 0.05
    done
    return 1
}

# Runs "$@" in a new process group (pgid = its pid, so kill -- -PID takes its children too).
start_group() {
    "$py" -c 'import os, sys; os.setpgid(0, 0); os.execvp(sys.argv[1], sys.argv[1:])' "$@" &
    bg_pid=$!
}

start_rootcanal() {  # sets bg_pid, hci_port
    local attempt ports
    for attempt in 1 2 3; do
        read -r -a ports <<< "$(free_ports 4)"
        start_group "$py" -m rootcanal --hci_port "${ports[0]}" --test_port "${ports[1]}" \
            --link_port "${ports[2]}" --link_ble_port "${ports[3]}" > "$work/rootcanal.log" 2>&1
        hci_port="${ports[0]}"
        if wait_port "$hci_port"; then
            return 0
        fi
        echo "bench-gatt: rootcanal did not start (attempt $attempt): $(tail -n 5 "$work/rootcanal.log")" >&2
        stop_bg
    done
    return 1
}

start_gattling_server() {  # sets bg_pid, hci_port
    read -r -a ports <<< "$(free_ports 1)"
    start_group "$gattling_bin" controller --listen "127.0.0.1:${ports[0]}" > "$work/gattling-controller.log" 2>&1
    hci_port="${ports[0]}"
    wait_port "$hci_port"
}

# run LABEL DEADLINE_S CMD...: runs one measurement, shows its output, keeps its JSON line.
run() {
    local label="$1" deadline="$2"
    shift 2
    echo
    echo "== $label"
    local out="$work/out.txt" rc=0
    timeout --kill-after=5 "$deadline" "$@" > "$out" 2> "$work/err.txt" || rc=$?
    cat "$out"
    if [[ $rc -ne 0 ]]; then
        echo "bench-gatt: $label failed (exit $rc); stderr:" >&2
        tail -n 20 "$work/err.txt" >&2
    fi
    local json
    json="$(grep '^{"' "$out" | tail -n 1 || true)"
    if [[ -n "$json" ]]; then
        printf '{"label": "%s", "exit": %d, "result": %s}\n' "$label" "$rc" "$json" >> "$results"
    else
        printf '{"label": "%s", "exit": %d, "result": null}\n' "$label" "$rc" >> "$results"
    fi
}

deadline=$(( 120 + 3 * ${seconds%.*} + reads / 10 ))

run "gattling, virtual (in-process), 1 thread" "$deadline" \
    "$speed" --reads "$reads" --seconds "$seconds" --runtime single
run "gattling, virtual (in-process), 2 threads" "$deadline" \
    "$speed" --reads "$reads" --seconds "$seconds" --runtime split
run "gattling, virtual (in-process), multi-thread rt" "$deadline" \
    "$speed" --reads "$reads" --seconds "$seconds" --runtime multi

if start_rootcanal; then
    run "gattling, rootcanal" "$deadline" \
        "$speed" --transport "tcp-client:127.0.0.1:$hci_port" --reads "$reads" --seconds "$seconds"
    stop_bg
else
    echo "bench-gatt: rootcanal unavailable; skipping its gattling run" >&2
fi
if start_rootcanal; then
    run "bumble, rootcanal, TCP tuned" "$deadline" \
        "$py" "$peers/bumble_speed.py" --transport "tcp-client:127.0.0.1:$hci_port" --reads "$reads" --seconds "$seconds"
    stop_bg
fi
if [[ $untuned -eq 1 ]] && start_rootcanal; then
    run "bumble, rootcanal, TCP untuned (100 reads)" "$deadline" \
        "$py" "$peers/bumble_speed.py" --transport "tcp-client:127.0.0.1:$hci_port" --reads 100 --seconds "$seconds" \
        --no-tune
    stop_bg
fi
if [[ $gattling_server -eq 1 ]]; then
    if start_gattling_server; then
        run "gattling, gattling controller over TCP" "$deadline" \
            "$speed" --transport "tcp-client:127.0.0.1:$hci_port" --reads "$reads" --seconds "$seconds"
        stop_bg
    fi
    if start_gattling_server; then
        run "bumble, gattling controller over TCP, TCP tuned" "$deadline" \
            "$py" "$peers/bumble_speed.py" --transport "tcp-client:127.0.0.1:$hci_port" --reads "$reads" \
            --seconds "$seconds"
        stop_bg
    fi
fi

echo
echo "== summary (reads: 20-byte values; notifications: 244-byte values at ATT_MTU 247;"
echo "   CPU: process user+system time of both hosts, the controller too when in-process, per item)"
python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
head = f"{'run':48} {'reads/s':>9} {'read med':>10} {'CPU/read':>9} {'ntf/s':>9} {'MB/s':>8} {'CPU/ntf':>9} {'/side':>8}"
print(head)
print("-" * len(head))
for row in rows:
    r = row["result"]
    if r is None:
        print(f"{row['label']:48} failed (exit {row['exit']})")
        continue
    flag = "" if row["exit"] == 0 else f"  (exit {row['exit']}, lost/stalled?)"
    print(f"{row['label']:48} {r['reads_per_s']:9.0f} {r['read_median_us']:8.1f}us {r['read_cpu_us']:7.1f}us "
          f"{r['notifications_per_s']:9.0f} {r['mb_per_s']:8.3f} {r['cpu_us_per_notification_combined']:7.2f}us "
          f"{r['cpu_us_per_notification_per_side_est']:6.2f}us{flag}")
    threads = r.get("cpu_us_per_notification_threads")
    if threads:
        print(f"{'':48} per thread CPU/ntf: client {threads['client_us']:.2f} us, server {threads['server_us']:.2f} us")
    if "pingpong_us" in r:
        print(f"{'':48} read mean {r['read_mean_us']:.2f} us vs bare tokio ping-pong {r['pingpong_us']:.2f} us "
              f"({r['pingpong_round_trips_per_s']:.0f} round trips/s)")
PY
