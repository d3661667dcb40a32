"""Shared plumbing for the bumble peer programs: JSON events, CLI basics, deadline."""

import argparse
import asyncio
import json
import logging
import socket
import sys

from bumble.hci import Address
from bumble.transport import open_transport

EXIT_ERROR = 1
EXIT_TIMEOUT = 3


def emit(event, **fields):
    """Print one newline-delimited JSON event on stdout."""
    print(json.dumps({"event": event, **fields}), flush=True)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def addr_str(address):
    """'XX:XX:XX:XX:XX:XX', most significant byte first, without bumble's '/P' suffix."""
    return address.to_string(with_type_qualifier=False)


def static_address(text):
    """Own address: the given one, else a fresh static random address (rootcanal reuses addresses)."""
    if text is None:
        return Address.generate_static_address()
    address = Address(text, Address.RANDOM_DEVICE_ADDRESS)
    if not address.is_static:
        raise argparse.ArgumentTypeError(f"{text} is not a static random address (top two bits must be set)")
    return address


def tune_tcp(hci_transport):
    """Avoid rootcanal's Nagle/delayed-ACK stall (~40 ms per HCI exchange) on a TCP transport:
    set TCP_NODELAY and re-arm TCP_QUICKACK after every read. No-op for other transports."""
    stream = getattr(hci_transport.sink, "transport", None)
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is None:
        return
    source = hci_transport.source
    received = source.data_received

    def data_received(data):
        sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)
        received(data)

    sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)
    source.data_received = data_received


def base_parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--transport", required=True, help="bumble transport, e.g. tcp-client:127.0.0.1:6402")
    p.add_argument("--own-address", help="static random own address (default: a random one per run)")
    end = p.add_mutually_exclusive_group()
    end.add_argument("--disconnect-after", type=float, metavar="SECONDS",
                     help="disconnect locally this long after connecting")
    end.add_argument("--wait-disconnect", action="store_true",
                     help="wait for the peer to disconnect (the default)")
    p.add_argument("--timeout", type=float, default=20.0, help="overall deadline in seconds (default 20)")
    p.add_argument("--log-level", default="WARNING", help="log level for bumble's logs on stderr")
    return p


async def finish_connection(connection, disconnect_after):
    """Wait for the link to end (locally after N s, or by the peer) and report it."""
    ended = asyncio.get_running_loop().create_future()
    connection.on("disconnection", lambda reason: ended.done() or ended.set_result(reason))
    by = "remote"
    if disconnect_after is not None:
        try:
            reason = await asyncio.wait_for(asyncio.shield(ended), disconnect_after)
        except asyncio.TimeoutError:
            by = "local"
            await connection.disconnect()  # reason 0x13, Remote User Terminated Connection
    reason = await ended
    emit("disconnected", reason=reason, by=by)


def run(args, body):
    """Open the transport, run body(args, hci_transport) under the --timeout deadline, and exit."""
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.own_address = static_address(args.own_address)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        log(f"error: bad --own-address: {exc}")
        sys.exit(EXIT_ERROR)

    async def main():
        async with await open_transport(args.transport) as hci_transport:
            tune_tcp(hci_transport)
            await body(args, hci_transport)

    async def with_deadline():
        task = asyncio.create_task(main())
        done, _ = await asyncio.wait({task}, timeout=args.timeout)
        if not done:
            task.cancel()
            log(f"error: timeout: not finished after {args.timeout} s")
            return EXIT_TIMEOUT
        try:
            task.result()
        except Exception as exc:  # pylint: disable=broad-except
            logging.debug("failure", exc_info=True)
            log(f"error: {type(exc).__name__}: {exc}")
            return EXIT_ERROR
        return 0

    sys.exit(asyncio.run(with_deadline()))


def add_scan_args(p):
    """--name/--address/--scan-timeout for a central that finds its peer by scanning."""
    p.add_argument("--name", help="complete or shortened local name to look for")
    p.add_argument("--address", help="advertiser address to look for (XX:XX:XX:XX:XX:XX)")
    p.add_argument("--scan-timeout", type=float, default=10.0, help="give up scanning after this (default 10 s)")


async def scan_for(device, name, address, scan_timeout):
    """Actively scan for an advertiser matching name and/or address (None: any), emit
    found {address, address_type, rssi} and return its advertisement; RuntimeError after
    scan_timeout seconds. Bumble merges a scannable advertisement with its scan response, so a
    name in either matches."""
    from bumble.core import AdvertisingData  # pylint: disable=import-outside-toplevel

    def names(data):
        return (data.get_all(AdvertisingData.COMPLETE_LOCAL_NAME)
                + data.get_all(AdvertisingData.SHORTENED_LOCAL_NAME))

    found = asyncio.get_running_loop().create_future()

    def on_advertisement(adv):
        if found.done():
            return
        if name is not None and name not in names(adv.data):
            return
        if address is not None and addr_str(adv.address).upper() != address.upper():
            return
        found.set_result(adv)

    device.on("advertisement", on_advertisement)
    await device.start_scanning(active=True, filter_duplicates=False)
    try:
        adv = await asyncio.wait_for(found, scan_timeout)
    except asyncio.TimeoutError:
        raise RuntimeError(f"no advertiser matching name={name!r} address={address!r} "
                           f"within {scan_timeout} s") from None
    finally:
        device.remove_listener("advertisement", on_advertisement)
    await device.stop_scanning()
    emit("found", address=addr_str(adv.address),
         address_type="public" if adv.address.is_public else "random", rssi=adv.rssi)
    return adv


async def scan_and_connect(device, args):
    """Actively scan for an advertiser matching args.name / args.address, connect to it and
    return the connection; emits found {address, address_type, rssi} and connected {handle, peer}."""
    adv = await scan_for(device, args.name, args.address, args.scan_timeout)
    # adv.address carries the advertiser's address type, so connect() uses it as found.
    connection = await device.connect(adv.address, timeout=args.timeout)
    emit("connected", handle=connection.handle, peer=addr_str(connection.peer_address))
    return connection
