#!/usr/bin/env python3
"""bumble GATT speed: a bumble GATT server and a bumble GATT client in one Python process, each
on its own HCI transport to the same controller, measuring what gattling's
crates/gattling/examples/gatt_speed.rs measures, for a side-by-side comparison:

  (a) N sequential Read Requests of a 20-byte value (ATT_MTU 247): total time, reads/s, median
      and p99 time per read, process CPU per read;
  (b) 244-byte notifications for S seconds: the server pushes values as fast as its host takes
      them, keeping at most --window values beyond what the client has received (it sends a
      batch of 50, then waits for the client's count), and the client counts values and bytes:
      notifications/s, MB/s (10^6 value bytes), process CPU per notification.

CPU is this process's user + system time (time.process_time) over each measurement. Both hosts
run in this one process, so the combined figure is halved as an *estimate* per side. The
controller (rootcanal, or gattling's controller server) is another process and not counted.

By default both TCP transports get peerlib's tuning (TCP_NODELAY, TCP_QUICKACK re-armed after
every read), as gattling's own tcp-client transport does; --no-tune leaves bumble's sockets as
bumble opens them, which shows the delayed-ACK stall over rootcanal (~40 ms per exchange).

Usage: bumble_speed.py --transport tcp-client:127.0.0.1:PORT [--client-transport SPEC]
                       [--reads N] [--seconds S] [--window W] [--no-tune] [--timeout T]
Prints a table on stdout, then one JSON line starting with {"bench": "gatt_speed".
Exit 0 on success, 1 on an error or lost notifications, 3 at the --timeout deadline.
"""

import argparse
import asyncio
import json
import logging
import statistics
import struct
import sys
import time

from bumble import att
from bumble.core import UUID
from bumble.device import Device, Peer
from bumble.gatt import Characteristic, Service
from bumble.hci import Address
from bumble.transport import open_transport

from peerlib import log, tune_tcp

SERVICE = UUID("6a775000-9d1e-4b1c-a0a5-4b5c5e7ad0c0")
READ_CHAR = UUID("6a775001-9d1e-4b1c-a0a5-4b5c5e7ad0c0")
NOTIFY_CHAR = UUID("6a775002-9d1e-4b1c-a0a5-4b5c5e7ad0c0")
READ_LEN = 20
NOTIFY_LEN = 244
MTU = 247
BATCH = 50


def ad(ad_type, payload):
    return bytes([len(payload) + 1, ad_type]) + payload


class Flow:
    """Shared between the pusher (server side) and the counter (client side)."""

    def __init__(self):
        self.received = 0
        self.bytes = 0
        self.out_of_order = 0
        self.progress = asyncio.Event()

    def on_value(self, value):
        value = bytes(value)
        seq = struct.unpack_from("<Q", value)[0] if len(value) >= 8 else -1
        if seq != self.received or len(value) != NOTIFY_LEN:
            self.out_of_order += 1
        self.received += 1
        self.bytes += len(value)
        if self.received % BATCH == 0:
            self.progress.set()

    async def wait_progress(self, timeout):
        self.progress.clear()
        await asyncio.wait_for(self.progress.wait(), timeout)


async def push(device, connection, characteristic, flow, run_for, window):
    """Push values until run_for has passed with at most `window` in flight, then drain.
    Returns (sent, seconds from the first send to the last receipt, stalled)."""
    value = bytearray(i % 256 for i in range(NOTIFY_LEN))
    sent = 0
    stalled = False
    t0 = time.perf_counter()
    try:
        while time.perf_counter() - t0 < run_for:
            while sent - flow.received > window - BATCH:
                await flow.wait_progress(5.0)
            for _ in range(BATCH):
                struct.pack_into("<Q", value, 0, sent)
                await device.notify_subscriber(connection, characteristic, bytes(value))
                sent += 1
        while flow.received < sent:
            await flow.wait_progress(5.0)
    except asyncio.TimeoutError:
        stalled = True
    return sent, time.perf_counter() - t0, stalled


async def measure(args):
    tuned = not args.no_tune
    server_spec = args.transport
    client_spec = args.client_transport or args.transport
    # rootcanal accepts one connection at a time (backlog 1): open the transports one by one.
    async with await open_transport(server_spec) as server_hci:
        if tuned:
            tune_tcp(server_hci)
        async with await open_transport(client_spec) as client_hci:
            if tuned:
                tune_tcp(client_hci)
            return await run(args, server_hci, client_hci)


async def run(args, server_hci, client_hci):
    server = Device.with_hci("gatt-speed", Address.generate_static_address(), server_hci.source, server_hci.sink)
    read_c = Characteristic(READ_CHAR, Characteristic.Properties.READ, att.Attribute.READABLE,
                            bytes(range(READ_LEN)))
    notify_c = Characteristic(NOTIFY_CHAR, Characteristic.Properties.NOTIFY, att.Attribute.READABLE,
                              bytes(NOTIFY_LEN))
    server.add_services([Service(SERVICE, [read_c, notify_c])])
    await server.power_on()
    client = Device.with_hci("gatt-speed-client", Address.generate_static_address(), client_hci.source,
                             client_hci.sink)
    await client.power_on()

    server_conn = asyncio.get_running_loop().create_future()
    server.on("connection", lambda c: server_conn.done() or server_conn.set_result(c))
    await server.start_advertising(advertising_data=ad(0x01, bytes([0x06])) + ad(0x09, b"gatt-speed"),
                                   auto_restart=False, advertising_interval_min=20, advertising_interval_max=20)
    t = time.perf_counter()
    connection = await client.connect(server.random_address, timeout=10)
    connect_s = time.perf_counter() - t
    s_conn = await asyncio.wait_for(server_conn, 10)

    peer = Peer(connection)
    mtu = await peer.request_mtu(MTU)
    await peer.discover_services([SERVICE])
    services = peer.get_services_by_uuid(SERVICE)
    if not services:
        raise RuntimeError("service not found")
    chars = await peer.discover_characteristics(service=services[0])
    by_uuid = {c.uuid: c for c in chars}
    if READ_CHAR not in by_uuid or NOTIFY_CHAR not in by_uuid:
        raise RuntimeError("characteristics not found")
    read_p, notify_p = by_uuid[READ_CHAR], by_uuid[NOTIFY_CHAR]

    # (a) Sequential reads, after a short warm-up.
    first = await peer.gatt_client.read_value(read_p.handle, no_long_read=True)
    if len(first) != READ_LEN:
        raise RuntimeError(f"read {len(first)} bytes, expected {READ_LEN}")
    for _ in range(min(args.reads // 10, 100)):
        await peer.gatt_client.read_value(read_p.handle, no_long_read=True)
    samples = []
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for _ in range(args.reads):
        t = time.perf_counter()
        await peer.gatt_client.read_value(read_p.handle, no_long_read=True)
        samples.append(time.perf_counter() - t)
    read_total = time.perf_counter() - t0
    read_cpu = time.process_time() - cpu0
    samples.sort()

    # (b) Notifications.
    flow = Flow()
    subscribed = asyncio.get_running_loop().create_future()
    notify_c.on("subscription", lambda c, notify, indicate: notify and not subscribed.done()
                and subscribed.set_result(True))
    await peer.subscribe(notify_p, flow.on_value)
    await asyncio.wait_for(subscribed, 10)
    cpu2 = time.process_time()
    sent, notify_s, stalled = await push(server, s_conn, notify_c, flow, args.seconds, args.window)
    notify_cpu = time.process_time() - cpu2
    try:
        await asyncio.wait_for(connection.disconnect(), 5)
    except Exception:  # pylint: disable=broad-except
        pass

    return {
        "mtu": mtu, "connect_s": connect_s, "read_total": read_total, "samples": samples, "read_cpu": read_cpu,
        "sent": sent, "received": flow.received, "bytes": flow.bytes, "out_of_order": flow.out_of_order,
        "stalled": stalled, "notify_s": notify_s, "notify_cpu": notify_cpu,
    }


def report(args, r):
    reads = args.reads
    samples = r["samples"]
    reads_per_s = reads / r["read_total"]
    median = statistics.median(samples)
    p99 = samples[min(len(samples) * 99 // 100, len(samples) - 1)]
    read_cpu_us = r["read_cpu"] * 1e6 / reads
    secs = r["notify_s"]
    received = r["received"]
    ntf_per_s = received / secs
    mb_per_s = r["bytes"] / secs / 1e6
    ntf_cpu = r["notify_cpu"] * 1e6 / received if received else float("nan")
    tuning = "NODELAY+QUICKACK" if not args.no_tune else "none"

    def row(k, v):
        print(f"  {k:<44} {v:>14}")

    print("bumble_speed: bumble client <-> bumble server (one Python process)")
    print(f"  transport {args.transport}  TCP tuning {tuning}  ATT_MTU {r['mtu']}  "
          f"connect {r['connect_s'] * 1e3:.1f} ms")
    row("measure", "value")
    row(f"{reads} sequential reads (20 bytes), total", f"{r['read_total']:.3f} s")
    row("reads/s", f"{reads_per_s:.0f}")
    row("read, median", f"{median * 1e6:.1f} us")
    row("read, p99", f"{p99 * 1e6:.1f} us")
    row("process CPU per read (both hosts)", f"{read_cpu_us:.1f} us")
    row(f"notifications ({NOTIFY_LEN} B) received / sent", f"{received} / {r['sent']}")
    row(f"notifications/s (over {secs:.2f} s)", f"{ntf_per_s:.0f}")
    row("MB/s (10^6 value bytes)", f"{mb_per_s:.3f}")
    row("process CPU per notification (both hosts)", f"{ntf_cpu:.2f} us")
    row("  per side, estimate (half)", f"{ntf_cpu / 2:.2f} us")
    row("CPU busy during notifications", f"{100 * r['notify_cpu'] / secs:.0f} %")
    if r["out_of_order"] or r["stalled"]:
        print(f"  WARNING: {r['out_of_order']} values out of sequence, stalled: {r['stalled']}")
    print(json.dumps({
        "bench": "gatt_speed", "stack": "bumble", "transport": args.transport, "tcp_tuning": tuning,
        "mtu": r["mtu"], "connect_ms": r["connect_s"] * 1e3, "reads": reads, "read_total_s": r["read_total"],
        "reads_per_s": reads_per_s, "read_median_us": median * 1e6, "read_p99_us": p99 * 1e6,
        "read_cpu_us": read_cpu_us, "notify_value_len": NOTIFY_LEN, "notify_window": args.window,
        "notifications_sent": r["sent"], "notifications": received, "notify_seconds": secs,
        "notifications_per_s": ntf_per_s, "mb_per_s": mb_per_s, "cpu_us_per_notification_combined": ntf_cpu,
        "cpu_us_per_notification_per_side_est": ntf_cpu / 2, "out_of_order": r["out_of_order"],
        "stalled": r["stalled"],
    }), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--transport", required=True, help="server's bumble transport, e.g. tcp-client:127.0.0.1:6402")
    p.add_argument("--client-transport", help="client's transport (default: the same as --transport)")
    p.add_argument("--reads", type=int, default=1000, help="sequential reads (default 1000)")
    p.add_argument("--seconds", type=float, default=5.0, help="notification phase length (default 5)")
    p.add_argument("--window", type=int, default=100, help="values in flight at most (default 100)")
    p.add_argument("--no-tune", action="store_true", help="leave TCP_NODELAY/TCP_QUICKACK off")
    p.add_argument("--timeout", type=float, help="overall deadline in s (default: from --reads/--seconds)")
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args()
    if args.reads <= 0 or args.seconds <= 0:
        p.error("--reads and --seconds must be positive")
    args.window = max(2, -(-args.window // BATCH)) * BATCH
    if args.timeout is None:
        args.timeout = 60 + 2 * args.seconds + 0.1 * args.reads
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def main_with_deadline():
        try:
            return await asyncio.wait_for(measure(args), args.timeout)
        except asyncio.TimeoutError:
            log(f"error: timeout: not finished after {args.timeout} s")
            sys.exit(3)

    try:
        r = asyncio.run(main_with_deadline())
    except SystemExit:
        raise
    except Exception as exc:  # pylint: disable=broad-except
        logging.debug("failure", exc_info=True)
        log(f"error: {type(exc).__name__}: {exc}")
        sys.exit(1)
    report(args, r)
    sys.exit(1 if r["stalled"] or r["out_of_order"] else 0)


if __name__ == "__main__":
    main()
