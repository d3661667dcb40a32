#!/usr/bin/env python3
"""bumble heart-rate peripheral: advertise NAME, serve Heart Rate (180D) and a test service, print JSON events.

Made for the u-connectXpress AT GATT client tests (crates/gattling-cli/tests/at_interop.rs): the user guide's
heart-rate flow plus every GATT client command and its error paths. Advertises connectable (flags, complete
local name, 16-bit service list 180D), accepts one connection and exits 0 when the link ends (or, with
--disconnect-after, after ending it itself); exit 3 at the --timeout deadline, 1 on an error.

Database (bumble assigns handles in this order after its own GAP 1800 and GATT 1801 services; the tests
discover them rather than assume them):
  primary 180D Heart Rate
    2A37 Heart Rate Measurement  NOTIFY (0x10)  not readable (Read Not Permitted), CCCD 2902 right after it
    2A38 Body Sensor Location    READ (0x02)    value 01 (chest)
    2A39 Heart Rate Control Pt   WRITE (0x08)   not readable; 01 (reset energy expended) is accepted, any
                                                other value answers 0x80 Control Point Value Not Supported
  primary A1B2C3D4-0000-4000-8000-00000000AA00 (test service)
    ...AA01 DATA  READ|WRITE_WITHOUT_RESPONSE|WRITE|EXTENDED_PROPERTIES (0x8E)  value "hello" (68656c6c6f)
      2900 Extended Properties 01 00 (Reliable Write)
    ...AA02 LONG  READ (0x02)  value bytes(i % 256 for i in 0..300): longer than any ATT_MTU - 1 up to 301
    ...AA03 ALERT INDICATE (0x20)  not readable, CCCD 2902 right after it
  Reads and writes honour the permissions above (bumble's own server does not check them); writes to
  read-only values answer Write Not Permitted (0x03).

Behaviour:
  Enabling notifications on 2A37 (CCCD bit 0 going 0 -> 1) starts sending one notification every
  --interval ms until they are disabled or the link ends: the Heart Rate Measurement format with
  flags 00 (uint8 bpm) and a bpm counting up from --first (wrapping at 256), so a client can check
  that none is lost or reordered: 003C, 003D, 003E, ... for --first 60. Re-enabling continues the count.
  Enabling indications on ALERT (CCCD bit 1 going 0 -> 1) sends --indicate-count indications, values
  01, 02, ... (one byte), each awaiting its confirmation.

Events, one JSON object per line:
  advertising {address}, connected {handle, peer}, mtu {mtu},
  subscribed {uuid, handle, notify, indicate}        (each CCCD write on 2A37)
  notified {handle, value}                           (each notification sent)
  indications_sent {count}                           (after the last confirmed ALERT indication)
  control_point {value, accepted}                    (each write to 2A39)
  write {uuid, handle, value}                        (each write to DATA: request, command, or executed
                                                      long/reliable write; the value after it)
  disconnected {reason, by}
UUIDs as in bumble_gatt_server.py ("2A37", "A1B2C3D4-0000-4000-8000-00000000AA01"); values lower-case hex.
"""

import asyncio
import struct

from bumble import att
from bumble.core import UUID
from bumble.device import Device
from bumble.gatt import GATT_CHARACTERISTIC_EXTENDED_PROPERTIES_DESCRIPTOR, Characteristic, Service

from bumble_gatt_server import StrictCharacteristic, StrictDescriptor, ad, uuid_str
from peerlib import addr_str, base_parser, emit, finish_connection, log, run

HEART_RATE_SERVICE = UUID.from_16_bits(0x180D)
MEASUREMENT = UUID.from_16_bits(0x2A37)
SENSOR_LOCATION = UUID.from_16_bits(0x2A38)
CONTROL_POINT = UUID.from_16_bits(0x2A39)
TEST_SERVICE = UUID("a1b2c3d4-0000-4000-8000-00000000aa00")
DATA = UUID("a1b2c3d4-0000-4000-8000-00000000aa01")
LONG = UUID("a1b2c3d4-0000-4000-8000-00000000aa02")
ALERT = UUID("a1b2c3d4-0000-4000-8000-00000000aa03")

CONTROL_POINT_NOT_SUPPORTED = 0x80  # Heart Rate Service 1.0, 3.3.2.1
FLAGS = 0x06  # LE General Discoverable, BR/EDR not supported

P = Characteristic.Properties
R = att.Attribute.READABLE
W = att.Attribute.WRITEABLE


class ControlPoint(StrictCharacteristic):
    """2A39: only 01 (reset energy expended) is supported."""

    async def write_value(self, bearer, value):
        accepted = bytes(value) == b"\x01"
        emit("control_point", value=bytes(value).hex(), accepted=accepted)
        if not accepted:
            raise att.ATT_Error(error_code=CONTROL_POINT_NOT_SUPPORTED, att_handle=self.handle)
        return await super().write_value(bearer, value)


def build_database(device):
    measurement = StrictCharacteristic(MEASUREMENT, P.NOTIFY, att.Attribute.Permissions(0), b"")
    location = StrictCharacteristic(SENSOR_LOCATION, P.READ, R, bytes([0x01]))
    control = ControlPoint(CONTROL_POINT, P.WRITE, W, b"")
    data = StrictCharacteristic(
        DATA, P.READ | P.WRITE | P.WRITE_WITHOUT_RESPONSE | P.EXTENDED_PROPERTIES, R | W, b"hello",
        descriptors=[StrictDescriptor(GATT_CHARACTERISTIC_EXTENDED_PROPERTIES_DESCRIPTOR, R,
                                      struct.pack("<H", 0x0001))])  # Reliable Write
    long_value = StrictCharacteristic(LONG, P.READ, R, bytes(i % 256 for i in range(300)))
    alert = StrictCharacteristic(ALERT, P.INDICATE, att.Attribute.Permissions(0), b"")
    device.add_services([Service(HEART_RATE_SERVICE, [measurement, location, control]),
                         Service(TEST_SERVICE, [data, long_value, alert])])
    data.on("write", lambda connection, value: emit(
        "write", uuid=uuid_str(DATA), handle=data.handle, value=bytes(value).hex()))
    return measurement, alert


class Alerts:
    """--indicate-count indications on ALERT each time they are enabled."""

    def __init__(self, device, alert, count):
        self.device = device
        self.alert = alert
        self.count = count
        self.enabled = False

    def on_subscription(self, connection, _notify, indicate):
        was, self.enabled = self.enabled, indicate
        if indicate and not was:
            asyncio.ensure_future(self.run(connection))

    async def run(self, connection):
        sent = 0
        try:
            for n in range(1, self.count + 1):
                await self.device.indicate_subscriber(connection, self.alert, bytes([n]))
                sent += 1
            emit("indications_sent", count=sent)
        except Exception as exc:  # pylint: disable=broad-except
            log(f"warning: indications stopped after {sent}: {type(exc).__name__}: {exc}")


class Pulse:
    """Notifications on 2A37 every `interval` ms while they are enabled."""

    def __init__(self, device, measurement, interval_ms, first):
        self.device = device
        self.measurement = measurement
        self.interval = interval_ms / 1000.0
        self.bpm = first
        self.task = None

    def on_subscription(self, connection, notify, indicate):
        emit("subscribed", uuid=uuid_str(self.measurement.uuid), handle=self.measurement.handle,
             notify=notify, indicate=indicate)
        if notify and self.task is None:
            self.task = asyncio.ensure_future(self.run(connection))
        elif not notify and self.task is not None:
            self.task.cancel()
            self.task = None

    async def run(self, connection):
        try:
            while True:
                value = bytes([0x00, self.bpm])
                await self.device.notify_subscriber(connection, self.measurement, value)
                emit("notified", handle=self.measurement.handle, value=value.hex())
                self.bpm = (self.bpm + 1) % 256
                await asyncio.sleep(self.interval)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # pylint: disable=broad-except
            log(f"warning: notifications stopped: {type(exc).__name__}: {exc}")

    def stop(self, _reason=None):
        if self.task is not None:
            self.task.cancel()
            self.task = None


async def body(args, hci_transport):
    device = Device.with_hci(args.name, args.own_address, hci_transport.source, hci_transport.sink)
    measurement, alert = build_database(device)
    pulse = Pulse(device, measurement, args.interval, args.first)
    measurement.on("subscription", pulse.on_subscription)
    alert.on("subscription", Alerts(device, alert, args.indicate_count).on_subscription)
    await device.power_on()

    connected = asyncio.get_running_loop().create_future()
    device.on("connection", lambda c: connected.done() or connected.set_result(c))
    adv_data = (ad(0x01, bytes([FLAGS])) + ad(0x03, struct.pack("<H", 0x180D))
                + ad(0x09, args.name.encode()))
    await device.start_advertising(advertising_data=adv_data, auto_restart=False,
                                   advertising_interval_min=args.adv_interval,
                                   advertising_interval_max=args.adv_interval)
    emit("advertising", address=addr_str(device.random_address))

    connection = await connected
    emit("connected", handle=connection.handle, peer=addr_str(connection.peer_address))
    connection.on("connection_att_mtu_update", lambda: emit("mtu", mtu=connection.att_mtu))
    connection.on("disconnection", pulse.stop)  # before finish_connection's listener
    await finish_connection(connection, args.disconnect_after)


def main():
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="complete local name to advertise (at most 20 bytes)")
    p.add_argument("--adv-interval", type=float, default=100.0, metavar="MS",
                   help="advertising interval in ms (default 100)")
    p.add_argument("--interval", type=float, default=50.0, metavar="MS",
                   help="period of the heart-rate notifications once subscribed (default 50 ms)")
    p.add_argument("--first", type=int, default=60, metavar="BPM",
                   help="bpm of the first notification, counting up from there (default 60)")
    p.add_argument("--indicate-count", type=int, default=3, metavar="N",
                   help="indications sent on ALERT each time the client enables them (default 3, at most 255)")
    args = p.parse_args()
    if not 0 <= args.indicate_count <= 255:
        p.error("--indicate-count must be 0..255")
    if len(args.name.encode()) > 20:
        p.error("--name: at most 20 bytes fit in the advertising data beside the flags and 180D")
    if not 0 <= args.first <= 255:
        p.error("--first must be 0..255")
    if args.interval <= 0:
        p.error("--interval must be positive")
    run(args, body)


if __name__ == "__main__":
    main()
