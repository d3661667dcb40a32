#!/usr/bin/env python3
"""bumble central for an AT-built GATT server: scan for NAME, connect, discover, use one characteristic.

Made for the u-connectXpress AT GATT server test (crates/gattling-cli/tests/at_interop.rs): the module
builds a service with AT+UBTGS/AT+UBTGC and advertises; this central finds it by name (in advertising
data or scan response), connects and, on the characteristic --uuid, runs these steps in order (each only
when its option is given):
  1. discovery of all services, characteristics and the characteristic's descriptors
  2. --read: read the value
  3. --write HEX: Write Request
  4. --write-without-response HEX: Write Command
  5. --write-long HEX: Prepare Write Requests (ATT_MTU-5 bytes each) + Execute Write
  6. --notify-count N: enable notifications, wait for N of them
  7. --indicate-uuid UUID2 --indicate-count M: enable indications on a second characteristic, wait
     for M of them (bumble confirms each)
  8. --read-after: read the value again (a notification also updates the stored value)
then ends the link (--disconnect-after, default at once) or waits for the peer to end it
(--wait-disconnect). No MTU exchange is made: the link stays at ATT_MTU 23 unless the server asks.

Events, one JSON object per line:
  found {address, address_type, rssi}, connected {handle, peer},
  discovered {services: [uuid...], characteristic: {uuid, value_handle, properties},
              descriptors: [{uuid, handle}]}
  read {value}, written {value, how: "request"|"command"|"long"},
  subscribed {handle}, notification {handle, value}   (the first N, in arrival order)
  subscribed_indications {handle}, indication {handle, value}   (the first M, in arrival order)
  read_after {value}, disconnected {reason, by}
  error {step, message, [att_error]}                  (then exit 1)
UUIDs: "180D" for 16-bit, upper-case 36-character form for 128-bit; values lower-case hex.
"""

import argparse
import asyncio

from bumble import att
from bumble.core import UUID
from bumble.device import Device, Peer

from peerlib import add_scan_args, base_parser, emit, finish_connection, run, scan_and_connect


class StepFailed(Exception):
    """A step failed; its error event has been printed."""


def uuid_str(uuid):
    return uuid.to_hex_str("-" if len(uuid.to_bytes()) == 16 else "")


def parse_uuid(text):
    try:
        return UUID(text.strip())
    except Exception as exc:  # pylint: disable=broad-except
        raise argparse.ArgumentTypeError(f"bad UUID {text!r}: {exc}") from None


def parse_hex(text):
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad hex value {text!r}") from None


async def step(name, coroutine):
    try:
        return await coroutine
    except att.ATT_Error as exc:
        emit("error", step=name, message=str(exc), att_error=exc.error_code)
        raise StepFailed(name) from None
    except Exception as exc:  # pylint: disable=broad-except
        emit("error", step=name, message=f"{type(exc).__name__}: {exc}")
        raise StepFailed(name) from None


def find(peer, wanted):
    characteristic = next((c for s in peer.services for c in s.characteristics if c.uuid == wanted), None)
    if characteristic is None:
        raise LookupError(f"characteristic {uuid_str(wanted)} not found by discovery")
    return characteristic


async def found(peer, wanted):
    return find(peer, wanted)


async def discover(peer, wanted):
    await peer.discover_services()
    for service in peer.services:
        await service.discover_characteristics()
    characteristic = find(peer, wanted)
    descriptors = await characteristic.discover_descriptors()
    emit("discovered", services=[uuid_str(s.uuid) for s in peer.services],
         characteristic={"uuid": uuid_str(characteristic.uuid), "value_handle": characteristic.handle,
                         "properties": int(characteristic.properties)},
         descriptors=[{"uuid": uuid_str(d.type), "handle": d.handle} for d in descriptors])
    return characteristic


async def body(args, hci_transport):
    device = Device.with_hci("bumble-at-central", args.own_address, hci_transport.source, hci_transport.sink)
    await device.power_on()
    connection = await step("connect", scan_and_connect(device, args))
    try:
        await script(args, connection)
    except StepFailed:
        try:
            await asyncio.wait_for(connection.disconnect(), 2)
        except Exception:  # pylint: disable=broad-except
            pass
        raise
    await finish_connection(connection, args.disconnect_after)


async def script(args, connection):
    peer = Peer(connection)
    characteristic = await step("discovery", discover(peer, args.uuid))
    # CharacteristicProxy.handle is the value handle.
    if args.read:
        value = await step("read", characteristic.read_value())
        emit("read", value=bytes(value).hex())
    if args.write is not None:
        await step("write", peer.gatt_client.write_value(characteristic.handle, args.write, with_response=True))
        emit("written", value=args.write.hex(), how="request")
    if args.write_without_response is not None:
        await step("write-without-response",
                   peer.gatt_client.write_value(characteristic.handle, args.write_without_response))
        emit("written", value=args.write_without_response.hex(), how="command")
    if args.write_long is not None:
        await step("write-long", peer.gatt_client.write_long_value(characteristic.handle, args.write_long))
        emit("written", value=args.write_long.hex(), how="long")
    if args.notify_count:
        await receive(connection, "notification", characteristic, args.notify_count, True)
    if args.indicate_count:
        indicating = await step("discovery", found(peer, args.indicate_uuid))
        await receive(connection, "indication", indicating, args.indicate_count, False)
    if args.read_after:
        value = await step("read-after", characteristic.read_value())
        emit("read_after", value=bytes(value).hex())


async def receive(connection, event, characteristic, wanted, notify):
    """Subscribe (notifications or indications) and wait for `wanted` values, reported as `event`."""
    received = asyncio.get_running_loop().create_future()
    count = [0]
    held = []  # values that arrive before the CCCD write completes: reported after 'subscribed'

    def report(value):
        emit(event, handle=characteristic.handle, value=bytes(value).hex())

    def on_value(value):
        if count[0] >= wanted:
            return
        count[0] += 1
        if held is not None:
            held.append(value)
        else:
            report(value)
        if count[0] == wanted and not received.done():
            received.set_result(None)

    await step("subscribe", characteristic.subscribe(on_value, prefer_notify=notify))
    emit("subscribed" if notify else "subscribed_indications", handle=characteristic.handle)
    for value in held:
        report(value)
    held = None
    ended = asyncio.get_running_loop().create_future()
    connection.on("disconnection", lambda reason: ended.done() or ended.set_result(reason))
    done, _ = await asyncio.wait({received, ended}, return_when=asyncio.FIRST_COMPLETED)
    if received not in done:
        emit("error", step=f"{event}s", message=f"link ended after {count[0]} of {wanted} {event}s")
        raise StepFailed(f"{event}s")


def main():
    p = base_parser(__doc__.splitlines()[0])
    add_scan_args(p)
    p.add_argument("--uuid", type=parse_uuid, required=True, help="the characteristic to use")
    p.add_argument("--read", action="store_true", help="read the value after discovery")
    p.add_argument("--write", type=parse_hex, metavar="HEX", help="write with a Write Request")
    p.add_argument("--write-without-response", type=parse_hex, metavar="HEX", help="write with a Write Command")
    p.add_argument("--write-long", type=parse_hex, metavar="HEX",
                   help="write with Prepare Write Requests + Execute Write")
    p.add_argument("--notify-count", type=int, default=0, metavar="N",
                   help="enable notifications and wait for N of them")
    p.add_argument("--indicate-uuid", type=parse_uuid, metavar="UUID",
                   help="a second characteristic to receive indications from")
    p.add_argument("--indicate-count", type=int, default=0, metavar="M",
                   help="enable indications on --indicate-uuid and wait for M of them")
    p.add_argument("--read-after", action="store_true", help="read the value again at the end")
    args = p.parse_args()
    if args.name is None and args.address is None:
        p.error("give --name and/or --address")
    if args.indicate_count and args.indicate_uuid is None:
        p.error("--indicate-count needs --indicate-uuid")
    if not args.wait_disconnect and args.disconnect_after is None:
        args.disconnect_after = 0.0
    run(args, body)


if __name__ == "__main__":
    main()
