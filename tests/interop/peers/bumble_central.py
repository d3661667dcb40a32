#!/usr/bin/env python3
"""bumble central: scan for NAME (and/or ADDR), connect, end the link, print JSON events.

Events: found {address, address_type, rssi}, connected {handle, peer}, [gatt {...}],
disconnected {reason, by}.

With --gatt it runs bumble's own GATT client against bumble_peripheral.py --gatt before ending
the link: discover all services and characteristics, read the echo characteristic, subscribe,
write a value and wait for it to come back as a notification; it reports
gatt {services, read, notified}.
"""

import asyncio

from bumble.core import AdvertisingData
from bumble.device import Device, Peer

from peerlib import addr_str, base_parser, emit, finish_connection, log, run


def names(data):
    return (data.get_all(AdvertisingData.COMPLETE_LOCAL_NAME)
            + data.get_all(AdvertisingData.SHORTENED_LOCAL_NAME))


async def body(args, hci_transport):
    device = Device.with_hci("bumble-central", args.own_address, hci_transport.source, hci_transport.sink)
    await device.power_on()

    # Active scanning: bumble merges a scannable advertisement with its scan response
    # into one 'advertisement' event, so a name in either is seen.
    found = asyncio.get_running_loop().create_future()

    def on_advertisement(adv):
        if found.done():
            return
        if args.name is not None and args.name not in names(adv.data):
            return
        if args.address is not None and addr_str(adv.address).upper() != args.address.upper():
            return
        found.set_result(adv)

    device.on("advertisement", on_advertisement)
    await device.start_scanning(active=True, filter_duplicates=False)
    try:
        adv = await asyncio.wait_for(found, args.scan_timeout)
    except asyncio.TimeoutError:
        raise RuntimeError(f"no advertiser matching name={args.name!r} address={args.address!r} "
                           f"within {args.scan_timeout} s") from None
    await device.stop_scanning()
    emit("found", address=addr_str(adv.address),
         address_type="public" if adv.address.is_public else "random", rssi=adv.rssi)

    # adv.address carries the advertiser's address type, so connect() uses it as found.
    connection = await device.connect(adv.address, timeout=args.timeout)
    emit("connected", handle=connection.handle, peer=addr_str(connection.peer_address))
    if args.gatt:
        await gatt_exchange(connection)
    await finish_connection(connection, args.disconnect_after)


ECHO_UUID = "3e1f0002-6a5b-4c2d-9e8f-0a1b2c3d4e5f"


async def gatt_exchange(connection):
    peer = Peer(connection)
    await peer.discover_services()
    for service in peer.services:
        await service.discover_characteristics()
    echo = next((c for s in peer.services for c in s.characteristics if str(c.uuid).lower() == ECHO_UUID), None)
    if echo is None:
        raise RuntimeError("echo characteristic not found by discovery")
    await echo.discover_descriptors()
    value = bytes(await echo.read_value())
    notified = asyncio.get_running_loop().create_future()
    await echo.subscribe(lambda v: notified.done() or notified.set_result(bytes(v)))
    await echo.write_value(b"over-the-virtual-air", with_response=True)
    back = await asyncio.wait_for(notified, 10)
    emit("gatt", services=[str(s.uuid) for s in peer.services], read=value.decode(errors="replace"),
         notified=back.decode(errors="replace"))


def main():
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--name", help="complete or shortened local name to look for")
    p.add_argument("--address", help="advertiser address to look for (XX:XX:XX:XX:XX:XX)")
    p.add_argument("--gatt", action="store_true", help="run a GATT exchange with bumble_peripheral.py --gatt")
    p.add_argument("--scan-timeout", type=float, default=10.0, help="give up scanning after this (default 10 s)")
    args = p.parse_args()
    if args.name is None and args.address is None:
        p.error("give --name and/or --address")
    run(args, body)


if __name__ == "__main__":
    main()
