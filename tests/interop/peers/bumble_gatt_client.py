#!/usr/bin/env python3
"""bumble GATT client: scan for NAME, connect, run a GATT client script, disconnect, print JSON events.

Events, in this order (a step's events appear only when its options were given):
  found {address, address_type, rssi}, connected {handle, peer},
  mtu {mtu},
  discovery {services: [{uuid, start, end, primary, includes: [{handle, start, end, uuid}],
             characteristics: [{uuid, handle, value_handle, properties,
                                descriptors: [{uuid, handle}]}]}]},
  [subscribed {uuid, handle, mode: "indicate"}]            (--expect-service-changed, right after discovery)
  read {uuid, handle, value}                                (--read, one per option)
  read_multiple {uuids, handles, value}                     (--read-multiple)
  write {uuid, handle, value, long}                         (--write)
  write_long {uuid, handle, value}                          (--write-long)
  reliable_write {writes: [{uuid, handle, value}], prepares} (--reliable-write)
  hash {handle, value}                                      (--read-hash)
  subscribed {uuid, handle, mode: "notify"|"indicate"}      (--subscribe / --indicate, all first)
  notification {uuid, handle, value} / indication {uuid, handle, value}  (as they arrive, up to COUNT)
  service_changed {start, end}                              (--expect-service-changed)
  done, disconnected {reason, by}.
Values are lower-case hex. UUIDs: "180D" for 16-bit, "6E400001-B5A3-F393-E0A9-E50E24DCCA9E" for
128-bit, in the size the server sent them. Services are sorted by handle; secondary services
(primary: false) are those reached only through an include. Handles are the value handles
except "handle" in discovery's characteristics/includes (the declaration's).
A failed step (connect, mtu, discovery, read, read-multiple, write, write-long, reliable-write,
read-hash, subscribe, expect-service-changed) prints error {step, message, [uuid | uuids],
[att_error, att_handle, request]} as the last event, disconnects if the link is still up and
exits 1; at the --timeout deadline: error {step, [uuid | uuids], message: "timeout"}, exit 3.
"""

import argparse
import asyncio
import struct

from bumble import att
from bumble.core import UUID
from bumble.device import Device, Peer
from bumble.gatt import (
    GATT_CHARACTERISTIC_ATTRIBUTE_TYPE,
    GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR,
    GATT_INCLUDE_ATTRIBUTE_TYPE,
    GATT_PRIMARY_SERVICE_ATTRIBUTE_TYPE,
    Characteristic,
)
from bumble.gatt_client import CharacteristicProxy, DescriptorProxy, ServiceProxy

from peerlib import add_scan_args, base_parser, emit, finish_connection, run, scan_and_connect

SERVICE_CHANGED = UUID.from_16_bits(0x2A05)
DATABASE_HASH = UUID.from_16_bits(0x2B2A)


class StepFailed(Exception):
    """A step failed; its error event has been printed."""


# ---------------------------------------------------------------------------- CLI parsing

def parse_uuid(text):
    text = text.strip()
    if text.lower().startswith("0x"):
        text = text[2:]
    try:
        return UUID(text)
    except Exception as exc:  # bumble raises InvalidArgumentError / ValueError
        raise argparse.ArgumentTypeError(f"bad UUID {text!r}: {exc}") from None


def parse_hex(text):
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad hex value {text!r}") from None


def uuid_value(text):
    """UUID=HEX"""
    uuid, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected UUID=HEX, got {text!r}")
    return parse_uuid(uuid), parse_hex(value)


def uuid_value_list(text):
    """UUID=HEX[,UUID=HEX...]"""
    return [uuid_value(item) for item in text.split(",")]


def uuid_list(text):
    """UUID,UUID[,...]"""
    uuids = [parse_uuid(item) for item in text.split(",")]
    if len(uuids) < 2:
        raise argparse.ArgumentTypeError("Read Multiple needs at least two UUIDs")
    return uuids


def uuid_count(text):
    """UUID:COUNT"""
    uuid, sep, count = text.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected UUID:COUNT, got {text!r}")
    try:
        n = int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad count in {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"negative count in {text!r}")
    return parse_uuid(uuid), n


# ---------------------------------------------------------------------------- helpers

def uuid_str(uuid):
    """'180D' for a 16-bit UUID, the 36-character upper-case form for a 128-bit one."""
    return uuid.to_hex_str("-" if len(uuid.to_bytes()) == 16 else "")


def att_error_fields(exc):
    """Error event fields for an ATT Error Response. bumble's own procedures raise ATT_Error with
    att_handle 0 and the Error Response PDU as message; request() fills both in properly."""
    response = exc.message if isinstance(exc.message, att.ATT_Error_Response) else None
    handle = response.attribute_handle_in_error if response is not None else exc.att_handle
    code = int(exc.error_code)
    fields = {"att_error": code, "att_handle": handle}
    name = att.ErrorCode(code).name
    if response is not None:
        request_name = att.Opcode(response.request_opcode_in_error).name
        fields["request"] = request_name
        fields["message"] = f"{name} (0x{code:02X}) on handle 0x{handle:04X} in reply to {request_name}"
    else:
        fields["message"] = f"{name} (0x{code:02X}) on handle 0x{handle:04X}: {exc.message}"
    return fields


async def request(client, pdu):
    """Send an ATT request through bumble's client; raise ATT_Error on an Error Response."""
    response = await client.send_request(pdu)
    if response.op_code == att.Opcode.ATT_ERROR_RESPONSE:
        raise att.ATT_Error(error_code=response.error_code, message=response)
    return response


async def read_by_type(client, start, end, uuid):
    """Read By Type over [start, end] until Attribute Not Found: [(handle, value)]."""
    found = []
    while start <= end:
        try:
            response = await request(client, att.ATT_Read_By_Type_Request(
                starting_handle=start, ending_handle=end, attribute_type=uuid))
        except att.ATT_Error as exc:
            if exc.error_code == att.ATT_ATTRIBUTE_NOT_FOUND_ERROR:
                break
            raise
        if not response.attributes:
            raise RuntimeError(f"empty Read By Type Response (length={response.length})")
        for handle, value in response.attributes:
            if handle < start or handle > end:
                raise RuntimeError(f"Read By Type Response handle 0x{handle:04X} outside "
                                   f"0x{start:04X}-0x{end:04X}")
            found.append((handle, value))
        start = response.attributes[-1][0] + 1
    return found


async def discover_includes(client, service):
    """Find Included Services (bumble's own cannot handle 128-bit included services, whose
    declaration value has no UUID: read it from the included service's declaration)."""
    includes = []
    for handle, value in await read_by_type(client, service.handle, service.end_group_handle,
                                            GATT_INCLUDE_ATTRIBUTE_TYPE):
        if len(value) == 6:
            start, end = struct.unpack_from("<HH", value)
            uuid = UUID.from_bytes(value[4:])
        elif len(value) == 4:
            start, end = struct.unpack_from("<HH", value)
            declaration = await request(client, att.ATT_Read_Request(attribute_handle=start))
            if len(declaration.attribute_value) != 16:
                raise RuntimeError(f"service declaration 0x{start:04X} of a 4-byte include is "
                                   f"{declaration.attribute_value.hex()}, not a 128-bit UUID")
            uuid = UUID.from_bytes(declaration.attribute_value)
        else:
            raise RuntimeError(f"include declaration 0x{handle:04X} has a {len(value)}-byte value")
        includes.append({"handle": handle, "start": start, "end": end, "uuid": uuid})
    return includes


async def discover_characteristics(client, service):
    """Discover All Characteristics of a Service, keeping the declaration handles that bumble's
    own discovery drops. Returns bumble CharacteristicProxy objects (handle = value handle)
    with a .declaration_handle attribute, and sets service.characteristics."""
    characteristics = []
    for handle, value in await read_by_type(client, service.handle, service.end_group_handle,
                                            GATT_CHARACTERISTIC_ATTRIBUTE_TYPE):
        if len(value) not in (5, 19):
            raise RuntimeError(f"characteristic declaration 0x{handle:04X} has a {len(value)}-byte value")
        properties, value_handle = struct.unpack_from("<BH", value)
        characteristic = CharacteristicProxy(client, value_handle, 0, UUID.from_bytes(value[3:]), properties)
        characteristic.declaration_handle = handle
        if characteristics:
            characteristics[-1].end_group_handle = handle - 1
        characteristics.append(characteristic)
    if characteristics:
        characteristics[-1].end_group_handle = service.end_group_handle
    service.characteristics = characteristics
    return characteristics


async def discover_descriptors(client, characteristic):
    """Discover All Characteristic Descriptors with Find Information over (value handle, end of
    the characteristic]. Unlike bumble's own, fails on an unexpected error instead of returning []."""
    descriptors = []
    start, end = characteristic.handle + 1, characteristic.end_group_handle
    while start <= end:
        try:
            response = await request(client, att.ATT_Find_Information_Request(
                starting_handle=start, ending_handle=end))
        except att.ATT_Error as exc:
            if exc.error_code == att.ATT_ATTRIBUTE_NOT_FOUND_ERROR:
                break
            raise
        if not response.information:
            raise RuntimeError("empty Find Information Response")
        for handle, uuid in response.information:
            if handle < start or handle > end:
                raise RuntimeError(f"Find Information Response handle 0x{handle:04X} outside "
                                   f"0x{start:04X}-0x{end:04X}")
            descriptors.append(DescriptorProxy(client, handle, UUID.from_bytes(uuid)))
        start = response.information[-1][0] + 1
    characteristic.descriptors = descriptors
    characteristic.descriptors_discovered = True  # so that bumble's subscribe() does not redo it
    return descriptors


class Script:
    def __init__(self, args, connection, deadline):
        self.args = args
        self.connection = connection
        self.peer = Peer(connection)
        self.client = connection.gatt_client
        self.loop = asyncio.get_running_loop()
        self.deadline = deadline  # loop time of the --timeout deadline
        self.step, self.context = "connect", {}
        self.services = []
        self.includes = {}  # service start handle -> include list
        self.disconnected = self.loop.create_future()
        connection.on("disconnection", lambda reason: self.disconnected.done()
                      or self.disconnected.set_result(reason))
        self.service_changed = self.loop.create_future()

    # ---- plumbing

    def characteristic(self, uuid):
        for service in self.services:
            for characteristic in service.characteristics:
                if characteristic.uuid == uuid:
                    return characteristic
        raise LookupError(f"no characteristic {uuid_str(uuid)} found by discovery")

    def remaining(self, margin=0.5):
        """Time left before the --timeout deadline, keeping a margin to report and disconnect."""
        return max(0.0, self.deadline - self.loop.time() - margin)

    async def until_disconnected(self, awaitable, timeout, what):
        """Await awaitable, but fail on a disconnection or after timeout seconds."""
        task = asyncio.ensure_future(awaitable)
        done, _ = await asyncio.wait({task, self.disconnected}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        if self.disconnected in done:
            raise ConnectionError(f"disconnected by the peer (reason 0x{self.disconnected.result():02X}) "
                                  f"while waiting for {what}")
        raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")

    async def run_step(self, step, coro, **context):
        """Run one step; print an error event and raise StepFailed if it fails."""
        self.step, self.context = step, context
        try:
            return await coro
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the --timeout deadline: reported by body()
            # bumble cancels a pending ATT request when the link goes down
            fields = {"message": "ATT request cancelled: link lost"}
            if self.disconnected.done():
                fields["message"] = f"disconnected by the peer (reason 0x{self.disconnected.result():02X})"
        except att.ATT_Error as exc:
            fields = att_error_fields(exc)
        except Exception as exc:  # pylint: disable=broad-except
            fields = {"message": f"{type(exc).__name__}: {exc}"}
        emit("error", step=step, **context, **fields)
        raise StepFailed(f"step {step} failed: {fields['message']}")

    # ---- steps

    async def mtu(self):
        if self.args.mtu:
            mtu = await self.peer.request_mtu(self.args.mtu)
        else:
            mtu = self.client.mtu
        emit("mtu", mtu=mtu)

    async def discovery(self):
        primaries = await self.client.discover_services()
        self.services = list(primaries)
        known = {s.handle for s in self.services}
        todo = list(self.services)
        while todo:
            service = todo.pop(0)
            includes = await discover_includes(self.client, service)
            self.includes[service.handle] = includes
            for inc in includes:
                if inc["start"] not in known:
                    # Not a primary service: a secondary one, only reachable through includes.
                    secondary = ServiceProxy(self.client, inc["start"], inc["end"], inc["uuid"], primary=False)
                    secondary.included_services = []
                    known.add(secondary.handle)
                    self.services.append(secondary)
                    self.client.services.append(secondary)
                    todo.append(secondary)
        self.services.sort(key=lambda s: s.handle)
        for service in self.services:
            for characteristic in await discover_characteristics(self.client, service):
                await discover_descriptors(self.client, characteristic)
        emit("discovery", services=[{
            "uuid": uuid_str(s.uuid), "start": s.handle, "end": s.end_group_handle,
            "primary": s.type == GATT_PRIMARY_SERVICE_ATTRIBUTE_TYPE,
            "includes": [{**inc, "uuid": uuid_str(inc["uuid"])} for inc in self.includes[s.handle]],
            "characteristics": [{
                "uuid": uuid_str(c.uuid), "handle": c.declaration_handle, "value_handle": c.handle,
                "properties": int(c.properties),
                "descriptors": [{"uuid": uuid_str(d.type), "handle": d.handle} for d in c.descriptors],
            } for c in s.characteristics],
        } for s in self.services])

    async def enable_service_changed(self):
        characteristic = self.characteristic(SERVICE_CHANGED)

        def on_indication(value):
            if len(value) != 4:
                if not self.service_changed.done():
                    self.service_changed.set_exception(
                        RuntimeError(f"Service Changed indication with a {len(value)}-byte value: {value.hex()}"))
                return
            if not self.service_changed.done():
                self.service_changed.set_result(struct.unpack("<HH", value))

        await self.subscribe(characteristic, on_indication, indicate=True)

    async def subscribe(self, characteristic, callback, indicate):
        wanted = Characteristic.Properties.INDICATE if indicate else Characteristic.Properties.NOTIFY
        if not characteristic.properties & wanted:
            raise RuntimeError(f"characteristic {uuid_str(characteristic.uuid)} lacks the "
                               f"{wanted.name} property ({characteristic.properties!s})")
        if characteristic.get_descriptor(GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR) is None:
            raise RuntimeError(f"characteristic {uuid_str(characteristic.uuid)} has no CCCD")
        # bumble registers the callback before writing the CCCD, so nothing is missed.
        await characteristic.subscribe(callback, prefer_notify=not indicate)
        emit("subscribed", uuid=uuid_str(characteristic.uuid), handle=characteristic.handle,
             mode="indicate" if indicate else "notify")

    async def read(self, uuid):
        characteristic = self.characteristic(uuid)
        value = bytes(await characteristic.read_value())  # long read when the value fills ATT_MTU-1
        emit("read", uuid=uuid_str(characteristic.uuid), handle=characteristic.handle, value=value.hex())

    async def read_multiple(self, uuids):
        characteristics = [self.characteristic(uuid) for uuid in uuids]
        handles = [c.handle for c in characteristics]
        response = await request(self.client, att.ATT_Read_Multiple_Request(set_of_handles=handles))
        emit("read_multiple", uuids=[uuid_str(c.uuid) for c in characteristics], handles=handles,
             value=bytes(response.set_of_values).hex())

    async def write(self, uuid, value):
        characteristic = self.characteristic(uuid)
        long = len(value) > self.client.mtu - 3  # bumble then uses Prepare/Execute Write itself
        await characteristic.write_value(value, with_response=True)
        emit("write", uuid=uuid_str(characteristic.uuid), handle=characteristic.handle,
             value=value.hex(), long=long)

    async def write_long(self, uuid, value):
        characteristic = self.characteristic(uuid)
        await self.client.write_long_value(characteristic.handle, value)
        emit("write_long", uuid=uuid_str(characteristic.uuid), handle=characteristic.handle, value=value.hex())

    async def reliable_write(self, pairs):
        """Reliable Writes (Vol 3 Part G 4.9.5): queue every part with Prepare Write Requests,
        check each echoed part, then Execute Write (flags 0x01); cancel (flags 0x00) on a mismatch."""
        writes = []
        prepares = 0
        chunk = self.client.mtu - 5
        try:
            for uuid, value in pairs:
                characteristic = self.characteristic(uuid)
                writes.append({"uuid": uuid_str(characteristic.uuid), "handle": characteristic.handle,
                               "value": value.hex()})
                for offset in range(0, max(len(value), 1), chunk):
                    part = value[offset:offset + chunk]
                    response = await request(self.client, att.ATT_Prepare_Write_Request(
                        attribute_handle=characteristic.handle, value_offset=offset, part_attribute_value=part))
                    prepares += 1
                    echo = (response.attribute_handle, response.value_offset, bytes(response.part_attribute_value))
                    if echo != (characteristic.handle, offset, part):
                        raise RuntimeError(
                            f"Prepare Write Response mismatch: sent (0x{characteristic.handle:04X}, {offset}, "
                            f"{part.hex()}), got (0x{echo[0]:04X}, {echo[1]}, {echo[2].hex()})")
        except Exception:
            if not self.disconnected.done():
                try:
                    await asyncio.wait_for(request(self.client, att.ATT_Execute_Write_Request(flags=0x00)), 2)
                except Exception:  # pylint: disable=broad-except
                    pass
            raise
        await request(self.client, att.ATT_Execute_Write_Request(flags=0x01))
        emit("reliable_write", writes=writes, prepares=prepares)

    async def read_hash(self):
        # Read Using Characteristic UUID, as GATT caching clients do (Vol 3 Part G 2.5.2.1).
        values = await read_by_type(self.client, 0x0001, 0xFFFF, DATABASE_HASH)
        if not values:
            raise LookupError("no Database Hash characteristic (0x2B2A)")
        handle, value = values[0]
        emit("hash", handle=handle, value=bytes(value).hex())

    async def subscriptions(self):
        wanted = {}  # value handle -> [remaining count]
        complete = self.loop.create_future()

        def check():
            if not complete.done() and all(n[0] <= 0 for n in wanted.values()):
                complete.set_result(None)

        # Values that arrive while still subscribing are held back, so that every 'subscribed'
        # event comes before the first notification/indication event.
        held = []

        def make_callback(characteristic, event, counter):
            def on_value(value):
                if counter[0] <= 0:
                    return  # beyond COUNT: ignored
                counter[0] -= 1
                fields = dict(uuid=uuid_str(characteristic.uuid), handle=characteristic.handle,
                              value=bytes(value).hex())
                if held is not None:
                    held.append((event, fields))
                else:
                    emit(event, **fields)
                check()
            return on_value

        requested = {}  # (uuid, indicate) -> total count, in command-line order
        for uuid, count, indicate in ([(u, n, False) for u, n in self.args.subscribe]
                                      + [(u, n, True) for u, n in self.args.indicate]):
            requested[(uuid, indicate)] = requested.get((uuid, indicate), 0) + count
        for (uuid, indicate), count in requested.items():
            characteristic = self.characteristic(uuid)
            counter = wanted[(characteristic.handle, indicate)] = [count, uuid_str(characteristic.uuid)]
            await self.subscribe(characteristic, make_callback(
                characteristic, "indication" if indicate else "notification", counter), indicate)
        for event, fields in held:
            emit(event, **fields)
        held = None
        check()

        def missing():
            return ", ".join(f"{n[0]} more {'indications' if indicate else 'notifications'} on {n[1]}"
                             for (_, indicate), n in wanted.items() if n[0] > 0)
        try:
            await self.until_disconnected(complete, self.remaining(), "notifications/indications")
        except (TimeoutError, ConnectionError) as exc:
            raise type(exc)(f"{exc}; still expected: {missing()}") from None

    async def wait_service_changed(self):
        start, end = await self.until_disconnected(asyncio.shield(self.service_changed), self.remaining(),
                                                   "a Service Changed indication")
        emit("service_changed", start=start, end=end)

    # ---- the script

    async def run(self):
        a = self.args
        await self.run_step("mtu", self.mtu())
        await self.run_step("discovery", self.discovery())
        if a.expect_service_changed:
            await self.run_step("expect-service-changed", self.enable_service_changed(), uuid="2A05")
        for uuid in a.read:
            await self.run_step("read", self.read(uuid), uuid=uuid_str(uuid))
        for uuids in a.read_multiple:
            await self.run_step("read-multiple", self.read_multiple(uuids), uuids=[uuid_str(u) for u in uuids])
        for uuid, value in a.write:
            await self.run_step("write", self.write(uuid, value), uuid=uuid_str(uuid))
        for uuid, value in a.write_long:
            await self.run_step("write-long", self.write_long(uuid, value), uuid=uuid_str(uuid))
        for pairs in a.reliable_write:
            await self.run_step("reliable-write", self.reliable_write(pairs),
                                uuids=[uuid_str(u) for u, _ in pairs])
        if a.read_hash:
            await self.run_step("read-hash", self.read_hash())
        if a.subscribe or a.indicate:
            await self.run_step("subscribe", self.subscriptions())
        if a.expect_service_changed:
            await self.run_step("expect-service-changed", self.wait_service_changed())
        emit("done")


async def body(args, hci_transport):
    deadline = asyncio.get_running_loop().time() + args.timeout
    device = Device.with_hci("bumble-gatt-client", args.own_address, hci_transport.source, hci_transport.sink)
    await device.power_on()
    try:
        connection = await scan_and_connect(device, args)
    except asyncio.CancelledError:
        emit("error", step="connect", message="timeout")
        raise
    except Exception as exc:
        emit("error", step="connect", message=f"{type(exc).__name__}: {exc}")
        raise
    script = Script(args, connection, deadline)
    try:
        await script.run()
    except StepFailed:
        if not script.disconnected.done():
            try:
                await asyncio.wait_for(connection.disconnect(), 2)
            except Exception:  # pylint: disable=broad-except
                pass
        raise
    except asyncio.CancelledError:
        emit("error", step=script.step, **script.context, message="timeout")
        raise
    await finish_connection(connection, args.disconnect_after)


def main():
    p = base_parser(__doc__.splitlines()[0])
    add_scan_args(p)
    p.add_argument("--mtu", type=int, default=517,
                   help="ATT_MTU to request in an Exchange MTU Request (default 517; 0: no exchange, stay at 23)")
    p.add_argument("--read", type=parse_uuid, action="append", default=[], metavar="UUID",
                   help="read a characteristic value (bumble reads on with Read Blob when it fills ATT_MTU-1)")
    p.add_argument("--read-multiple", type=uuid_list, action="append", default=[], metavar="UUID,UUID",
                   help="Read Multiple Request on these characteristics' value handles")
    p.add_argument("--write", type=uuid_value, action="append", default=[], metavar="UUID=HEX",
                   help="write with response (bumble switches to Prepare/Execute Write above ATT_MTU-3 bytes)")
    p.add_argument("--write-long", type=uuid_value, action="append", default=[], metavar="UUID=HEX",
                   help="write with Prepare Write Requests (ATT_MTU-5 bytes each) + Execute Write")
    p.add_argument("--reliable-write", type=uuid_value_list, action="append", default=[],
                   metavar="UUID=HEX[,UUID=HEX...]",
                   help="Reliable Write: prepare every part (checking each echo), then execute; "
                        "the pairs of one option form one transaction")
    p.add_argument("--read-hash", action="store_true", help="read the Database Hash (0x2B2A) by UUID")
    p.add_argument("--subscribe", type=uuid_count, action="append", default=[], metavar="UUID:COUNT",
                   help="enable notifications and wait for COUNT of them")
    p.add_argument("--indicate", type=uuid_count, action="append", default=[], metavar="UUID:COUNT",
                   help="enable indications and wait for COUNT of them (bumble confirms each)")
    p.add_argument("--expect-service-changed", action="store_true",
                   help="enable Service Changed (0x2A05) indications right after discovery and, last, "
                        "wait (within --timeout) for one")
    p.add_argument("--wait-before-disconnect", type=float, default=0.0, metavar="SECONDS",
                   help="after 'done', wait this long (or until the peer disconnects) before disconnecting")
    args = p.parse_args()
    if args.name is None and args.address is None:
        p.error("give --name and/or --address")
    if args.mtu and not 23 <= args.mtu <= 0xFFFF:
        p.error("--mtu must be 0 or 23..65535")
    both = ({u for u, _ in args.subscribe} & {u for u, _ in args.indicate})
    if both:
        p.error(f"--subscribe and --indicate on the same characteristic: {', '.join(map(uuid_str, both))}")
    if args.disconnect_after is not None and args.wait_before_disconnect:
        p.error("--disconnect-after and --wait-before-disconnect are the same option: give one")
    if not args.wait_disconnect and args.disconnect_after is None:
        args.disconnect_after = args.wait_before_disconnect
    run(args, body)


if __name__ == "__main__":
    main()
