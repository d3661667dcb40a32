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

from bumble.device import Device, Peer

from peerlib import add_scan_args, base_parser, emit, finish_connection, run, scan_and_connect


async def body(args, hci_transport):
    device = Device.with_hci("bumble-central", args.own_address, hci_transport.source, hci_transport.sink)
    await device.power_on()

    connection = await scan_and_connect(device, args)
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
    add_scan_args(p)
    p.add_argument("--gatt", action="store_true", help="run a GATT exchange with bumble_peripheral.py --gatt")
    args = p.parse_args()
    if args.name is None and args.address is None:
        p.error("give --name and/or --address")
    run(args, body)


if __name__ == "__main__":
    main()
