#!/usr/bin/env bash
# The demo: two gattling hosts on a rootcanal virtual controller. One advertises a name, the
# other scans for three seconds and prints what it finds (rootcanal's own beacons appear too).
# Needs only cargo and python3: rootcanal is installed into the project's .venv on first run.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
py="$(scripts/interop-env.sh | tail -n 1)"
cargo build --quiet -p gattling-cli
bin="$repo/target/debug/gattling"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log="$(mktemp -t gattling-demo-rootcanal.XXXXXX)"
setsid "$py" -m rootcanal --hci_port "$port" --test_port $((port + 1)) --link_port $((port + 2)) \
    --link_ble_port $((port + 3)) >"$log" 2>&1 &
rc=$!
trap 'kill -- -$rc 2>/dev/null || true; kill $adv 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
sleep 0.2

transport="tcp-client:127.0.0.1:$port"
"$bin" --transport "$transport" --random-address C0:FF:EE:00:00:01 advertise --name "gattling-demo" --connectable &
adv=$!
sleep 1
echo "--- gattling scan --duration 3 (rootcanal on port $port) ---"
"$bin" --transport "$transport" scan --duration 3
