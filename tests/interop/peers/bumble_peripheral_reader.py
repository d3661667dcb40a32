#!/usr/bin/env python3
"""bumble peripheral that reads its central's GATT server: advertise NAME, accept one connection,
wait for the central's Exchange MTU, then read characteristics of the central with single Read
Requests, and print JSON events.

Made for testing that a central's ATT_MTU is one value per bearer (Core Vol 3 Part F 3.4.2.2):
the central exchanges MTU as GATT client, and this peer, as GATT client on the same link, never
exchanges MTU itself. bumble's GATT server answers the central's Exchange MTU Request and sets the
connection's att_mtu (shared by bumble's GATT client on that link) to min(517, client_rx_mtu).

Steps, on the one connection:
  1. --wait-mtu N: wait until the connection's ATT_MTU is N (it is 23 until the central
     exchanges MTU); without it, go on at once.
  2. --read UUID (repeatable): Discover Characteristics by UUID (Read By Type 0x2803 over
     0x0001-0xFFFF, Vol 3 Part G 4.6.2), then ONE Read Request on its value handle. No Read Blob
     follows, so a value cut at ATT_MTU - 1 bytes is reported as it arrived.
  3. done, then wait for the central to disconnect (or --disconnect-after).

Events, one JSON object per line:
  advertising {address}, connected {handle, peer},
  mtu {mtu}                                (each ATT_MTU change of the connection)
  mtu_ready {mtu}                          (step 1 finished; the ATT_MTU the reads run at)
  read {uuid, handle, length, value, mtu}  (one per --read: value handle, bytes in the Read
                                            Response, lower-case hex value, ATT_MTU at the time)
  done, disconnected {reason, by}.
A failed step prints error {step, message, [uuid], [att_error]} (exit 1); at the --timeout
deadline exit 3. UUIDs are written as in bumble_gatt_client.py: "2A37" or the 36-character
upper-case form.
"""

import argparse
import asyncio
import struct

from bumble import att
from bumble.core import UUID
from bumble.device import Device
from bumble.gatt import GATT_CHARACTERISTIC_ATTRIBUTE_TYPE

from peerlib import addr_str, base_parser, emit, finish_connection, run

FLAGS = 0x06  # LE General Discoverable, BR/EDR not supported


class StepFailed(Exception):
    """A step failed; its error event has been printed."""


def ad(ad_type, payload):
    return bytes([len(payload) + 1, ad_type]) + payload


def uuid_str(uuid):
    """'180D' for a 16-bit UUID, the 36-character upper-case form for a 128-bit one."""
    return uuid.to_hex_str("-" if len(uuid.to_bytes()) == 16 else "")


def parse_uuid(text):
    text = text.strip()
    if text.lower().startswith("0x"):
        text = text[2:]
    try:
        return UUID(text)
    except Exception as exc:  # bumble raises InvalidArgumentError / ValueError
        raise argparse.ArgumentTypeError(f"bad UUID {text!r}: {exc}") from None


def fail(step, message, **fields):
    emit("error", step=step, message=message, **fields)
    raise StepFailed(f"{step}: {message}")


async def request(client, pdu):
    """Send one ATT request through bumble's client; return the response (Error Responses too)."""
    response = await client.send_request(pdu)
    if response is None:
        raise RuntimeError(f"no response to {pdu}")
    return response


async def find_characteristic(client, uuid):
    """Discover Characteristics by UUID over the whole handle range: the first value handle."""
    start = 0x0001
    while start <= 0xFFFF:
        response = await request(client, att.ATT_Read_By_Type_Request(
            starting_handle=start, ending_handle=0xFFFF, attribute_type=GATT_CHARACTERISTIC_ATTRIBUTE_TYPE))
        if response.op_code == att.Opcode.ATT_ERROR_RESPONSE:
            if response.error_code == att.ATT_ATTRIBUTE_NOT_FOUND_ERROR:
                break
            fail("discover", f"Read By Type: error 0x{response.error_code:02X}", uuid=uuid_str(uuid),
                 att_error=int(response.error_code))
        if not response.attributes:
            fail("discover", "empty Read By Type Response", uuid=uuid_str(uuid))
        for handle, value in response.attributes:
            if len(value) not in (5, 19):
                fail("discover", f"declaration 0x{handle:04X} has a {len(value)}-byte value", uuid=uuid_str(uuid))
            _properties, value_handle = struct.unpack_from("<BH", value)
            if UUID.from_bytes(value[3:]) == uuid:
                return value_handle
        last = response.attributes[-1][0]
        if last < start:
            fail("discover", f"Read By Type Response went backwards to 0x{last:04X}", uuid=uuid_str(uuid))
        start = last + 1
    return fail("discover", "characteristic not found", uuid=uuid_str(uuid))


async def wait_mtu(connection, want, mtu_changed):
    while connection.att_mtu != want:
        await mtu_changed.wait()
        mtu_changed.clear()


async def body(args, hci_transport):
    device = Device.with_hci(args.name, args.own_address, hci_transport.source, hci_transport.sink)
    await device.power_on()

    connected = asyncio.get_running_loop().create_future()
    mtu_changed = asyncio.Event()

    def on_connection(connection):
        if connected.done():
            return
        # Listen at once: the central's Exchange MTU may follow the connection immediately.
        def on_mtu():
            emit("mtu", mtu=connection.att_mtu)
            mtu_changed.set()
        connection.on("connection_att_mtu_update", on_mtu)
        connected.set_result(connection)

    device.on("connection", on_connection)
    await device.start_advertising(advertising_data=ad(0x01, bytes([FLAGS])) + ad(0x09, args.name.encode()),
                                   auto_restart=False,
                                   advertising_interval_min=args.adv_interval,
                                   advertising_interval_max=args.adv_interval)
    emit("advertising", address=addr_str(device.random_address))

    connection = await connected
    emit("connected", handle=connection.handle, peer=addr_str(connection.peer_address))
    try:
        if args.wait_mtu is not None:
            try:
                await asyncio.wait_for(wait_mtu(connection, args.wait_mtu, mtu_changed), args.mtu_timeout)
            except asyncio.TimeoutError:
                fail("mtu", f"ATT_MTU is {connection.att_mtu}, not {args.wait_mtu}, "
                            f"after {args.mtu_timeout} s")
        emit("mtu_ready", mtu=connection.att_mtu)

        client = connection.gatt_client
        for uuid in args.read:
            handle = await find_characteristic(client, uuid)
            mtu = connection.att_mtu
            response = await request(client, att.ATT_Read_Request(attribute_handle=handle))
            if response.op_code == att.Opcode.ATT_ERROR_RESPONSE:
                fail("read", f"Read Request on 0x{handle:04X}: error 0x{response.error_code:02X}",
                     uuid=uuid_str(uuid), att_error=int(response.error_code))
            value = bytes(response.attribute_value)
            emit("read", uuid=uuid_str(uuid), handle=handle, length=len(value), value=value.hex(), mtu=mtu)
        emit("done")
    except StepFailed:
        if connection.handle in device.connections:
            await connection.disconnect()
        raise
    await finish_connection(connection, args.disconnect_after)


def main():
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="complete local name to advertise")
    p.add_argument("--adv-interval", type=float, default=100.0, metavar="MS",
                   help="advertising interval in ms (default 100; bumble's own default is 1000)")
    p.add_argument("--wait-mtu", type=int, metavar="N",
                   help="before reading, wait until the central has made the ATT_MTU N")
    p.add_argument("--mtu-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="give up waiting for --wait-mtu after this (default 10 s)")
    p.add_argument("--read", type=parse_uuid, action="append", default=[], metavar="UUID",
                   help="characteristic of the central to find by UUID and read with one Read Request")
    args = p.parse_args()
    if args.wait_mtu is not None and not 23 <= args.wait_mtu <= 517:
        p.error("--wait-mtu must be 23..517")
    run(args, body)


if __name__ == "__main__":
    main()
