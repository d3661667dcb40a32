# Shared by selftest.sh and selftest_pairing.sh (sourced, not run): free ports, a controller on
# them, and waits on lines the programs print (no fixed sleeps).

# wait_line FILE PATTERN SECONDS: returns 0 once a line of FILE contains PATTERN, 1 after SECONDS.
wait_line() {
    grep -m1 -q -- "$2" < <(timeout "$3" tail -n +1 -F "$1" 2>/dev/null)
}

# free_ports: sets hci, test, link and link_ble to four free TCP ports on 127.0.0.1.
free_ports() {
    read -r hci test link link_ble < <("$PY" - <<'PYEOF'
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PYEOF
)
}

# start_controller LOG: rootcanal (or `$GATTLING_BIN controller` when GATTLING_BIN is set) on the
# free ports; waits for its listening line, sets rc_pid, CONTROLLER and transport.
start_controller() {
    local log=$1 ready
    free_ports
    if [[ -n "${GATTLING_BIN:-}" ]]; then
        export CONTROLLER=gattling
        setsid "$GATTLING_BIN" controller --listen "127.0.0.1:$hci" --acl 27x20 > "$log" 2>&1 &
        ready="virtual controller listening"
    else
        export CONTROLLER=rootcanal
        setsid "$PY" -m rootcanal --hci_port "$hci" --test_port "$test" --link_port "$link" \
            --link_ble_port "$link_ble" > "$log" 2>&1 &
        ready="Listening on: $hci "
    fi
    rc_pid=$!
    wait_line "$log" "$ready" 15 || { echo "$CONTROLLER did not start" >&2; cat "$log" >&2; exit 1; }
    transport="tcp-client:127.0.0.1:$hci"
}
