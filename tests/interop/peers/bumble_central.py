#!/usr/bin/env python3
"""bumble central: scan for NAME (and/or ADDR), connect, end the link, print JSON events.

Events: found {address, address_type, rssi}, connected {handle, peer}, disconnected {reason, by}.
"""

import asyncio

from bumble.core import AdvertisingData
from bumble.device import Device

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
    await finish_connection(connection, args.disconnect_after)


def main():
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--name", help="complete or shortened local name to look for")
    p.add_argument("--address", help="advertiser address to look for (XX:XX:XX:XX:XX:XX)")
    p.add_argument("--scan-timeout", type=float, default=10.0, help="give up scanning after this (default 10 s)")
    args = p.parse_args()
    if args.name is None and args.address is None:
        p.error("give --name and/or --address")
    run(args, body)


if __name__ == "__main__":
    main()
