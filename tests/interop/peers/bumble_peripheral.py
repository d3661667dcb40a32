#!/usr/bin/env python3
"""bumble peripheral: advertise NAME, accept one connection, end it, print JSON events.

Events: advertising {address}, connected {handle, peer}, [subscribed {notify, indicate}],
[write {value}], disconnected {reason, by}.
"""

import asyncio
import struct

from bumble.device import Device
from bumble.gatt import Characteristic, CharacteristicValue, Service

from peerlib import addr_str, base_parser, emit, finish_connection, run

# --gatt test service: one characteristic that can be read, written and notified;
# each write is reported as a "write" event and notified back to subscribers.
GATT_SERVICE_UUID = "3e1f0001-6a5b-4c2d-9e8f-0a1b2c3d4e5f"
GATT_ECHO_UUID = "3e1f0002-6a5b-4c2d-9e8f-0a1b2c3d4e5f"

FLAGS = 0x06  # LE General Discoverable, BR/EDR not supported


def ad(ad_type, payload):
    return bytes([len(payload) + 1, ad_type]) + payload


def echo_service(device):
    state = {"value": b"gattling"}
    echo = None

    async def on_write(connection, value):
        state["value"] = bytes(value)
        emit("write", value=state["value"].hex())
        await device.notify_subscribers(echo, state["value"])

    echo = Characteristic(
        GATT_ECHO_UUID,
        Characteristic.Properties.READ | Characteristic.Properties.WRITE
        | Characteristic.Properties.WRITE_WITHOUT_RESPONSE | Characteristic.Properties.NOTIFY,
        Characteristic.READABLE | Characteristic.WRITEABLE,
        CharacteristicValue(read=lambda connection: state["value"], write=on_write),
    )
    echo.on("subscription", lambda connection, notify, indicate:
            emit("subscribed", notify=notify, indicate=indicate))
    return Service(GATT_SERVICE_UUID, [echo])


async def body(args, hci_transport):
    device = Device.with_hci(args.name, args.own_address, hci_transport.source, hci_transport.sink)
    if args.gatt:
        device.add_service(echo_service(device))
    await device.power_on()

    name = ad(0x09, args.name.encode())  # Complete Local Name
    if args.name_in_scan_response:
        adv_data = ad(0x01, bytes([FLAGS])) + ad(0x03, struct.pack("<H", 0x180D))
        scan_rsp = name
    else:
        adv_data = ad(0x01, bytes([FLAGS])) + name
        scan_rsp = b""

    connected = asyncio.get_running_loop().create_future()
    device.on("connection", lambda c: connected.done() or connected.set_result(c))
    await device.start_advertising(advertising_data=adv_data, scan_response_data=scan_rsp,
                                   auto_restart=False,
                                   advertising_interval_min=args.adv_interval,
                                   advertising_interval_max=args.adv_interval)
    emit("advertising", address=addr_str(device.random_address))

    connection = await connected
    emit("connected", handle=connection.handle, peer=addr_str(connection.peer_address))
    await finish_connection(connection, args.disconnect_after)


def main():
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="complete local name to advertise")
    p.add_argument("--name-in-scan-response", action="store_true",
                   help="put the name only in the scan response (adv data: flags + UUID16 0x180D)")
    p.add_argument("--adv-interval", type=float, default=100.0, metavar="MS",
                   help="advertising interval in ms (default 100; bumble's own default is 1000)")
    p.add_argument("--gatt", action="store_true",
                   help=f"serve a test service {GATT_SERVICE_UUID} with a read/write/notify echo "
                        f"characteristic {GATT_ECHO_UUID}")
    run(p.parse_args(), body)


if __name__ == "__main__":
    main()
