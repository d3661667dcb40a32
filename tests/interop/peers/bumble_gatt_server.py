#!/usr/bin/env python3
"""bumble GATT server: advertise NAME, serve a fixed test database to one central, print JSON events.

Made for testing a GATT *client*: advertises (connectable, flags + complete local name), accepts one
connection, serves the database below and exits 0 when the central disconnects (or, with
--disconnect-after, after disconnecting itself); exit 3 at the --timeout deadline, 1 on an error.

Database (handles as bumble 0.0.236 assigns them; 0x0001-0x000D are bumble's own GAP and GATT
services). Service C is added before Service B so that bumble does not nest it inside B, and B's
include declaration is rewritten to start(2) end(2) with no UUID, as Vol 3 Part G 3.2 requires for
a 128-bit included service (bumble writes a 2-byte truncation of the UUID there):

  0x0001-0x0005  primary 1800 (GAP: 2A00 Device Name = NAME, 2A01 Appearance)
  0x0006-0x000D  primary 1801 (GATT: 2A05 Service Changed + CCCD 0x0009, 2B29 Client Supported
                 Features, 2B2A Database Hash)
  0x000E-0x0015  Service A: primary 180D
    0x000F/0x0010  2A37  READ|NOTIFY (0x12)  value 00 48
      0x0011         2901 User Description "heart rate"
      0x0012         2902 CCCD (notifications are accepted but never sent)
    0x0013/0x0014  2A38  READ (0x02)  value 01
      0x0015         2904 Presentation Format 04 00 00 27 01 00 00 (uint8, exp 0, unitless, SIG, 0)
  0x0016-0x0018  Service C: SECONDARY 0000AAAA-0000-1000-8000-00805F9B34FC (not on the base UUID)
    0x0017/0x0018  2A19  READ (0x02)  value 64
  0x0019-0x0027  Service B: primary 12345678-1234-5678-1234-56789ABCDEF0
    0x001A         include -> C: value 16 00 18 00 (start 0x0016, end 0x0018, no UUID)
    0x001B/0x001C  ...DEF1  READ|WRITE (0x0A)  value bytes(i % 256 for i in 0..511), 512 bytes
    0x001D/0x001E  ...DEF2  READ|WRITE_WITHOUT_RESPONSE|WRITE (0x0E)  value "hello"
    0x001F/0x0020  ...DEF3  NOTIFY|INDICATE (0x30)  no readable value (Read Not Permitted)
      0x0021         2902 CCCD
    0x0022/0x0023  ...DEF4  READ|WRITE|EXTENDED_PROPERTIES (0x8A)  value "rel"
      0x0024         2900 Extended Properties 01 00 (Reliable Write)
    0x0025/0x0026  ...DEF5  READ (0x02)  value "custom"
      0x0027         12345678-1234-5678-1234-56789ABCDEF9 (custom descriptor)  value "custom"
  (declaration/value handles; "...DEFn" is 12345678-1234-5678-1234-56789ABCDEFn)

Behaviour:
  - Enabling notifications on DEF3 (CCCD bit 0 going 0 -> 1) sends --notify-count notifications,
    values 0..N-1 as 2-byte little-endian, back to back; enabling indications (bit 1 going 0 -> 1)
    sends --indicate-count indications, values 0..M-1 (2-byte LE), each awaiting its confirmation.
    Both at once (CCCD 03 00) run both. Re-enabling after a burst ends starts a new one.
  - Writes are accepted on DEF1/DEF2/DEF4 only (Write Request, Write Command on DEF2, Prepare +
    Execute Write for long and reliable writes). Other attributes answer Write Not Permitted (0x03),
    or Read Not Permitted (0x02) for DEF3's value (also in Read Multiple), except in the GAP/GATT
    services, which are bumble's. A Write Command to a read-only value is dropped (bumble logs a
    traceback on stderr for it).
    bumble reassembles queued Prepare Writes from offset 0 of an empty buffer, so after a long or
    reliable write the value is exactly the bytes written (a queue not starting at offset 0 fails
    with Invalid Offset); the whole queue is committed at Execute Write.

Events, one JSON object per line:
  advertising {address}, connected {handle, peer},
  mtu {mtu}                                      (each ATT_MTU change)
  subscribed {uuid, handle, notify, indicate}    (each CCCD write on 2A37 or DEF3)
  write {uuid, handle, value}                    (each write to DEF1/DEF2/DEF4, the value after it;
                                                  a long/reliable write gives one per characteristic
                                                  at Execute Write)
  notifications_sent {count, [stopped]}          (a burst ended; stopped: "disabled" / "disconnected"
  indications_sent {count, [stopped]}             / an error message when fewer than asked were sent)
  disconnected {reason, by}
UUIDs are written like bumble_gatt_client.py's: "2A37", "12345678-1234-5678-1234-56789ABCDEF1".
Values are lower-case hex; indications_sent counts confirmed indications.
"""

import asyncio
import struct

from bumble import att
from bumble.core import UUID
from bumble.device import Device
from bumble.gatt import (
    GATT_CHARACTERISTIC_EXTENDED_PROPERTIES_DESCRIPTOR,
    GATT_CHARACTERISTIC_PRESENTATION_FORMAT_DESCRIPTOR,
    GATT_CHARACTERISTIC_USER_DESCRIPTION_DESCRIPTOR,
    Characteristic,
    Descriptor,
    IncludedServiceDeclaration,
    Service,
)

from peerlib import addr_str, base_parser, emit, finish_connection, log, run

SERVICE_A = UUID.from_16_bits(0x180D)
HEART_RATE = UUID.from_16_bits(0x2A37)
SENSOR_LOCATION = UUID.from_16_bits(0x2A38)
SERVICE_B = UUID("12345678-1234-5678-1234-56789abcdef0")
LONG = UUID("12345678-1234-5678-1234-56789abcdef1")
SHORT = UUID("12345678-1234-5678-1234-56789abcdef2")
STREAM = UUID("12345678-1234-5678-1234-56789abcdef3")
RELIABLE = UUID("12345678-1234-5678-1234-56789abcdef4")
CUSTOM = UUID("12345678-1234-5678-1234-56789abcdef5")
CUSTOM_DESCRIPTOR = UUID("12345678-1234-5678-1234-56789abcdef9")
SERVICE_C = UUID("0000aaaa-0000-1000-8000-00805f9b34fc")
BATTERY_LEVEL = UUID.from_16_bits(0x2A19)

FLAGS = 0x06  # LE General Discoverable, BR/EDR not supported

P = Characteristic.Properties
R = att.Attribute.READABLE
W = att.Attribute.WRITEABLE


def ad(ad_type, payload):
    return bytes([len(payload) + 1, ad_type]) + payload


def uuid_str(uuid):
    """'180D' for a 16-bit UUID, the 36-character upper-case form for a 128-bit one."""
    return uuid.to_hex_str("-" if len(uuid.to_bytes()) == 16 else "")


class Strict(att.Attribute):
    """Enforce the READABLE/WRITEABLE permissions, which bumble's server does not check:
    Read Not Permitted / Write Not Permitted instead of serving or overwriting the value."""

    async def read_value(self, bearer):
        if not self.permissions & att.Attribute.READABLE:
            raise att.ATT_Error(error_code=att.ATT_READ_NOT_PERMITTED_ERROR, att_handle=self.handle)
        return await super().read_value(bearer)

    async def write_value(self, bearer, value):
        if not self.permissions & att.Attribute.WRITEABLE:
            raise att.ATT_Error(error_code=att.ATT_WRITE_NOT_PERMITTED_ERROR, att_handle=self.handle)
        return await super().write_value(bearer, value)


class StrictCharacteristic(Strict, Characteristic):
    pass


class StrictDescriptor(Strict, Descriptor):
    pass


def guard_read_multiple(server):
    """bumble's Read Multiple (Variable) handlers do not catch an attribute's read error and then
    send no response at all: answer Read Not Permitted for DEF3's value up front instead."""
    for name in ("on_att_read_multiple_request", "on_att_read_multiple_variable_request"):
        original = getattr(server, name)

        def guarded(bearer, request, original=original):
            for handle in request.set_of_handles:
                attribute = server.get_attribute(handle)
                if isinstance(attribute, Strict) and not attribute.permissions & att.Attribute.READABLE:
                    # on_gatt_pdu turns this into an Error Response for the request
                    raise att.ATT_Error(error_code=att.ATT_READ_NOT_PERMITTED_ERROR, att_handle=handle)
            original(bearer, request)

        setattr(server, name, guarded)


def fix_includes(server):
    """bumble packs an include declaration as start, end and bytes(uuid)[:2]; the UUID belongs
    there only when it is a 16-bit one (Vol 3 Part G 3.2): drop it for a 128-bit service."""
    for attribute in server.attributes:
        if isinstance(attribute, IncludedServiceDeclaration):
            service = attribute.service
            uuid = service.uuid.to_pdu_bytes()
            attribute.value = (struct.pack("<HH", service.handle, service.end_group_handle)
                               + (uuid if len(uuid) == 2 else b""))


def build_database(device):
    """Add services A, C, B (C before B, so that bumble does not nest it inside B).
    Returns the characteristics the peer acts on."""
    heart_rate = StrictCharacteristic(
        HEART_RATE, P.READ | P.NOTIFY, R, bytes([0x00, 0x48]),
        descriptors=[StrictDescriptor(GATT_CHARACTERISTIC_USER_DESCRIPTION_DESCRIPTOR, R, b"heart rate")])
    location = StrictCharacteristic(
        SENSOR_LOCATION, P.READ, R, bytes([0x01]),
        # format uint8 (0x04), exponent 0, unit 0x2700 (unitless), namespace 0x01 (SIG), description 0
        descriptors=[StrictDescriptor(GATT_CHARACTERISTIC_PRESENTATION_FORMAT_DESCRIPTOR, R,
                                      struct.pack("<BbHBH", 0x04, 0, 0x2700, 0x01, 0x0000))])
    service_a = Service(SERVICE_A, [heart_rate, location])

    service_c = Service(SERVICE_C, [StrictCharacteristic(BATTERY_LEVEL, P.READ, R, bytes([0x64]))],
                        primary=False)

    long_value = StrictCharacteristic(LONG, P.READ | P.WRITE, R | W, bytes(i % 256 for i in range(512)))
    short_value = StrictCharacteristic(SHORT, P.READ | P.WRITE | P.WRITE_WITHOUT_RESPONSE, R | W, b"hello")
    stream = StrictCharacteristic(STREAM, P.NOTIFY | P.INDICATE, att.Attribute.Permissions(0), b"")
    reliable = StrictCharacteristic(
        RELIABLE, P.READ | P.WRITE | P.EXTENDED_PROPERTIES, R | W, b"rel",
        descriptors=[StrictDescriptor(GATT_CHARACTERISTIC_EXTENDED_PROPERTIES_DESCRIPTOR, R,
                                      struct.pack("<H", 0x0001))])  # Reliable Write
    custom = StrictCharacteristic(CUSTOM, P.READ, R, b"custom",
                                  descriptors=[StrictDescriptor(CUSTOM_DESCRIPTOR, R, b"custom")])
    service_b = Service(SERVICE_B, [long_value, short_value, stream, reliable, custom],
                        included_services=[service_c])

    device.add_services([service_a, service_c, service_b])
    fix_includes(device.gatt_server)
    guard_read_multiple(device.gatt_server)

    for characteristic in (long_value, short_value, reliable):
        characteristic.on("write", lambda connection, value, c=characteristic: emit(
            "write", uuid=uuid_str(c.uuid), handle=c.handle, value=bytes(value).hex()))
    return heart_rate, stream


class Bursts:
    """Notification / indication bursts on the DEF3 characteristic, started by CCCD writes."""

    def __init__(self, device, stream, notify_count, indicate_count):
        self.device = device
        self.stream = stream
        self.counts = {"notifications": notify_count, "indications": indicate_count}
        self.enabled = {"notifications": False, "indications": False}
        self.running = {}  # kind -> [task, sent count, reported]

    def on_subscription(self, connection, notify, indicate):
        for kind, on in (("notifications", notify), ("indications", indicate)):
            was = self.enabled[kind]
            self.enabled[kind] = on
            if on and not was and kind not in self.running:
                state = [None, 0, False]
                self.running[kind] = state
                state[0] = asyncio.ensure_future(self.burst(connection, kind, state))

    def report(self, kind, state, stopped=None):
        if state[2]:
            return
        state[2] = True
        if self.running.get(kind) is state:
            del self.running[kind]
        emit(f"{kind}_sent", count=state[1], **({"stopped": stopped} if stopped else {}))

    async def burst(self, connection, kind, state):
        try:
            for n in range(self.counts[kind]):
                if not self.enabled[kind]:
                    self.report(kind, state, "disabled")
                    return
                value = struct.pack("<H", n)
                if kind == "notifications":
                    await self.device.notify_subscriber(connection, self.stream, value)
                else:
                    await self.device.indicate_subscriber(connection, self.stream, value)
                state[1] += 1
            self.report(kind, state)
        except asyncio.CancelledError:
            self.report(kind, state, "disconnected")
        except Exception as exc:  # pylint: disable=broad-except
            log(f"warning: {kind} burst failed: {type(exc).__name__}: {exc}")
            self.report(kind, state, f"{type(exc).__name__}: {exc}")

    def on_disconnection(self, _reason):
        """Report unfinished bursts before 'disconnected' (a pending indication would otherwise
        wait for bumble's 30 s confirmation timeout)."""
        self.enabled = {kind: False for kind in self.enabled}
        for kind, state in list(self.running.items()):
            self.report(kind, state, "disconnected")
            state[0].cancel()


async def body(args, hci_transport):
    device = Device.with_hci(args.name, args.own_address, hci_transport.source, hci_transport.sink)
    heart_rate, stream = build_database(device)
    bursts = Bursts(device, stream, args.notify_count, args.indicate_count)
    for characteristic in (heart_rate, stream):
        characteristic.on("subscription", lambda connection, notify, indicate, c=characteristic: emit(
            "subscribed", uuid=uuid_str(c.uuid), handle=c.handle, notify=notify, indicate=indicate))
    stream.on("subscription", bursts.on_subscription)
    await device.power_on()

    connected = asyncio.get_running_loop().create_future()
    device.on("connection", lambda c: connected.done() or connected.set_result(c))
    await device.start_advertising(advertising_data=ad(0x01, bytes([FLAGS])) + ad(0x09, args.name.encode()),
                                   auto_restart=False,
                                   advertising_interval_min=args.adv_interval,
                                   advertising_interval_max=args.adv_interval)
    emit("advertising", address=addr_str(device.random_address))

    connection = await connected
    emit("connected", handle=connection.handle, peer=addr_str(connection.peer_address))
    connection.on("connection_att_mtu_update", lambda: emit("mtu", mtu=connection.att_mtu))
    connection.on("disconnection", bursts.on_disconnection)  # before finish_connection's listener
    await finish_connection(connection, args.disconnect_after)


def main():
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="complete local name to advertise")
    p.add_argument("--adv-interval", type=float, default=100.0, metavar="MS",
                   help="advertising interval in ms (default 100; bumble's own default is 1000)")
    p.add_argument("--notify-count", type=int, default=100, metavar="N",
                   help="notifications sent on DEF3 when the client enables them (default 100)")
    p.add_argument("--indicate-count", type=int, default=20, metavar="M",
                   help="indications sent on DEF3 when the client enables them (default 20)")
    args = p.parse_args()
    for option in ("notify_count", "indicate_count"):
        if not 0 <= getattr(args, option) <= 0x10000:
            p.error(f"--{option.replace('_', '-')} must be 0..65536 (values are 2-byte counters)")
    run(args, body)


if __name__ == "__main__":
    main()
