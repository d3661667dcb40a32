#!/usr/bin/env python3
"""bumble pairing peer: SMP pairing / encryption interop (Core Vol 3 Part H), either role, JSON events.

One program for both roles, built on bumble's own Security Manager (bumble.smp through
bumble.pairing.PairingConfig / PairingDelegate), with the few corrections listed in PAIRING.md:

  --role peripheral  advertise --name (connectable, flags + complete local name), accept one
                     connection, serve the test database below. --pair sends an SMP Security
                     Request (Vol 3 Part H 3.6.7) and waits until the central has paired (or
                     encrypted with a bonded key) or pairing failed.
  --role central     connect to --peer ADDR, or scan for the device advertising --name. --pair
                     pairs (Pairing Request); --encrypt encrypts with the key stored in --keystore
                     (LE Enable Encryption, no pairing; on an encrypted link: key refresh). A
                     Security Request is answered at any time: encrypt with a stored key that
                     satisfies its MITM bit, else pair (Vol 3 Part H 2.4.6).

Steps, in this order: --pair / --wait-security, --encrypt, --read HANDLE (repeatable),
--read-uuid UUID (repeatable), --subscribe UUID [--notifications N], --listen UUID [--notifications N];
then "done", then wait for
the peer to disconnect, or disconnect locally --disconnect-after SECONDS after "done" (0: at once).
If the link ends first, the remaining steps are dropped (no "done"). Exit 0 once the link is gone,
3 at the --timeout deadline, 1 on an error (bad option, no advertiser found, connect failed).

Security options: --io display-only|display-yesno|keyboard-only|no-io|keyboard-display,
--sc/--no-sc (default SC), --mitm/--no-mitm (default no MITM; bumble asks for MITM but pairs Just
Works anyway when the IO capabilities allow nothing else), --require-mitm (refuse such a pairing
with Pairing Failed Authentication Requirements 0x03), --bonding/--no-bonding (default
bonding: keys distributed and stored; without it none are), --passkey N (entered when this side
is asked for one; displayed when this side displays one, else a random one is shown; without it
an entry request is answered negatively: Passkey Entry Failed), --passkey-file FILE (entered when
asked: the number FILE holds once it exists, for a test that learns it only during pairing; it is
waited for up to 30 s, the SMP timeout), --numeric accept|reject (answer
to a numeric comparison; reject fails with Numeric Comparison Failed 0x0C), --keystore FILE
(bumble JsonKeyStore, one namespace per own address: run again with the same --address and file
to reconnect bonded; default in memory), --pair-on-error (central: an Insufficient
Authentication / Encryption read error makes it encrypt (stored key good enough) or pair, then
read again once - bumble's GATT client never does this by itself).
Use fixed --address values (static random) when keys must survive a run.

Test database on the peripheral (handles as bumble 0.0.236 assigns them after its GAP and GATT
services at 0x0001-0x000D; the "ready" event repeats the value handles):
  0x000E        primary service  3E1F0100-6A5B-4C2D-9E8F-0A1B2C3D4E5F
  0x000F/0x0010 OPEN  3E1F0101-6A5B-4C2D-9E8F-0A1B2C3D4E5F  READ         value "open"
  0x0011/0x0012 ENC   3E1F0102-6A5B-4C2D-9E8F-0A1B2C3D4E5F  READ|NOTIFY  value "encrypted"
    0x0013        CCCD (open); enabling notifications makes the server notify the value once.
                  Reading the value needs an encrypted link.
  0x0014/0x0015 AUTH  3E1F0103-6A5B-4C2D-9E8F-0A1B2C3D4E5F  READ         value "authenticated"
                  Reading needs a link encrypted with an authenticated (MITM) key.
Read errors follow Core Vol 3 Part C 10.3.1 (bumble's own check treats every encrypted LE link as
authenticated):
  not encrypted, no key stored for the peer (or only an unauthenticated one, for AUTH)
                                                       -> Insufficient Authentication (0x05)
  not encrypted, a good enough key stored for the peer -> Insufficient Encryption (0x0F)
  AUTH on a link encrypted with an unauthenticated key -> Insufficient Authentication (0x05)

Events, one JSON object per line (addresses "XX:XX:XX:XX:XX:XX", values and keys lower-case hex
as sent on the air, i.e. least significant octet first):
  ready {role, address, [handles {open, enc, enc_cccd, auth}]}   (peripheral: advertising)
  found {address, address_type, rssi}                            (central, after a scan)
  connected {peer, role, handle}                                 (role: this side's role)
  security_request {auth_req, action}        (central got one; action "pair" or "encrypt")
  pairing_started
  passkey_display {passkey}                  (this side displays it; the peer must enter it)
  passkey_request                            (this side must enter one; answered with --passkey)
  numeric_comparison {number}                (answered with --numeric)
  pairing_complete {sc, authenticated, bonded, key_size, ltk, peer_identity, peer_identity_type,
                    [ediv, rand]}
      authenticated: not Just Works; bonded: both asked for bonding; key_size: the size SMP
      agreed on (smaller Maximum Encryption Key Size); ltk: the LTK a reconnection encrypts with
      (legacy pairing: the one the peripheral distributed, with its ediv and rand);
      peer_identity: the identity address the peer distributed, else its connection address
  pairing_failed {reason, name}              (SMP reason, Vol 3 Part H 3.5.5, e.g. 0x04
                                              Confirm Value Failed, 0x0C Numeric Comparison Failed)
  encryption_change {encrypted, key_size}    (key_size from Read Encryption Key Size; null when
                                              the controller cannot tell)
  encryption_failed {status, [error]}        (HCI status of a failed encryption; status null and
                                              error set when this side has no key to encrypt with)
  key_refresh                                (Encryption Key Refresh Complete)
  read {handle, value, [uuid]} / read_error {handle, code, [uuid]}
  subscribed {uuid, handle} / notification {handle, value}
  listening {uuid, handle}                   (--listen: notifications of that characteristic are
                                              reported, without writing its CCCD)
  done, disconnected {reason, by}            (by: "local" or "remote"; reports of pairing and
                                              encryption always come before "disconnected")
"""

import argparse
import asyncio

from bumble import att, smp
from bumble.core import UUID, ProtocolError
from bumble.device import Device
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.hci import (
    HCI_READ_ENCRYPTION_KEY_SIZE_COMMAND,
    Address,
    HCI_Error,
    HCI_Read_Encryption_Key_Size_Command,
    Role,
)
from bumble.keys import JsonKeyStore, MemoryKeyStore
from bumble.pairing import PairingConfig, PairingDelegate

from peerlib import addr_str, base_parser, emit, log, run, scan_for

SERVICE_UUID = UUID("3e1f0100-6a5b-4c2d-9e8f-0a1b2c3d4e5f")
OPEN_UUID = UUID("3e1f0101-6a5b-4c2d-9e8f-0a1b2c3d4e5f")
ENC_UUID = UUID("3e1f0102-6a5b-4c2d-9e8f-0a1b2c3d4e5f")
AUTH_UUID = UUID("3e1f0103-6a5b-4c2d-9e8f-0a1b2c3d4e5f")

FLAGS = 0x06  # LE General Discoverable, BR/EDR not supported

IO_CAPABILITIES = {
    "display-only": PairingDelegate.IoCapability.DISPLAY_OUTPUT_ONLY,
    "display-yesno": PairingDelegate.IoCapability.DISPLAY_OUTPUT_AND_YES_NO_INPUT,
    "keyboard-only": PairingDelegate.IoCapability.KEYBOARD_INPUT_ONLY,
    "no-io": PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT,
    "keyboard-display": PairingDelegate.IoCapability.DISPLAY_OUTPUT_AND_KEYBOARD_INPUT,
}


def ad(ad_type, payload):
    return bytes([len(payload) + 1, ad_type]) + payload


def uuid_str(uuid):
    return uuid.to_hex_str("-" if len(uuid.to_bytes()) == 16 else "")


class Delegate(PairingDelegate):
    """The user of this side: reports what it is shown or asked, answers from the options."""

    def __init__(self, args):
        # no bonding: no keys to distribute (Vol 3 Part H 3.6.1)
        distribution = (PairingDelegate.DEFAULT_KEY_DISTRIBUTION if args.bonding
                        else PairingDelegate.KeyDistribution(0))
        super().__init__(io_capability=IO_CAPABILITIES[args.io],
                         local_initiator_key_distribution=distribution,
                         local_responder_key_distribution=distribution)
        self.args = args

    async def compare_numbers(self, number, digits):
        emit("numeric_comparison", number=number)
        return self.args.numeric == "accept"

    async def get_number(self):
        emit("passkey_request")
        if self.args.passkey_file is not None:
            return await passkey_from_file(self.args.passkey_file)
        return self.args.passkey  # None: negative reply, Passkey Entry Failed

    async def generate_passkey(self):
        if self.args.passkey is not None:
            return self.args.passkey
        return await super().generate_passkey()

    async def display_number(self, number, digits):
        emit("passkey_display", passkey=number)


async def passkey_from_file(path, within=30.0):
    """The passkey written to `path` (decimal), once the file exists; None after `within` seconds
    (the SMP timeout, Vol 3 Part H 3.4) or for a bad number: the entry is then refused."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        try:
            with open(path, encoding="ascii") as f:
                text = f.read().strip()
        except FileNotFoundError:
            text = ""
        if text:
            try:
                return parse_passkey(text)
            except argparse.ArgumentTypeError as exc:
                log(f"--passkey-file: {exc}")
                return None
        await asyncio.sleep(0.02)
    log(f"--passkey-file: {path} did not appear within {within} s")
    return None


class Session(smp.Session):
    """bumble's SMP session with one correction: a rejected numeric comparison fails with
    Numeric Comparison Failed (0x0C, Vol 3 Part H 3.5.5), not bumble's Confirm Value Failed."""

    def prompt_user_for_numeric_comparison(self, code, next_steps):
        async def prompt():
            try:
                accepted = await self.pairing_config.delegate.compare_numbers(code, digits=6)
            except Exception:  # pylint: disable=broad-except
                accepted = False
            if accepted:
                next_steps()
            else:
                self.send_pairing_failed(smp.ErrorCode.NUMERIC_COMPARISON_FAILED)

        self.connection.cancel_on_disconnection(prompt())

    def mitm_refused(self):
        """--require-mitm: the method agreed on cannot give MITM protection (Just Works)."""
        return (getattr(self.pairing_config, "require_mitm", False)
                and self.pairing_method == smp.PairingMethod.JUST_WORKS)

    def send_pairing_response_command(self):
        """Responder: refuse a pairing without MITM protection with Authentication Requirements
        (0x03, Vol 3 Part H 2.3.5.1) instead of answering it; bumble never refuses."""
        if self.mitm_refused():
            self.send_pairing_failed(smp.ErrorCode.AUTHENTICATION_REQUIREMENTS)
            return
        super().send_pairing_response_command()

    def on_smp_pairing_response_command(self, command):
        """Initiator: the same check on the Pairing Response, before phase 2 starts."""
        if self.is_initiator and getattr(self.pairing_config, "require_mitm", False):
            sc = self.sc
            self.sc = sc and bool(command.auth_req & smp.AuthReq.SC)
            self.decide_pairing_method(command.auth_req, self.io_capability, command.io_capability)
            self.sc = sc
            if self.mitm_refused():
                self.send_pairing_failed(smp.ErrorCode.AUTHENTICATION_REQUIREMENTS)
                return
        super().on_smp_pairing_response_command(command)

    pairing_task = None

    def on_peer_key_distribution_complete(self):
        """As bumble's, but the pairing's completion is not cancelled by a disconnection: when the
        last key PDU (or the Encryption Change) and the Disconnection Complete arrive in one read,
        bumble would drop a pairing that did complete."""
        if self.is_initiator:
            self.distribute_keys()
        self.pairing_task = asyncio.ensure_future(self.on_pairing())


class Security:
    """What this side knows about the link's key: stored keys and the key in use."""

    def __init__(self, device):
        self.device = device

    async def stored_keys(self, connection):
        if self.device.keystore is None:
            return None
        return await self.device.keystore.get(str(connection.peer_address))

    @staticmethod
    def ltk_of(keys):
        """The stored LTK a reconnection is encrypted with: the LE Secure Connections LTK, or for
        legacy pairing the one the peripheral distributed (bumble's ltk_central, in both roles)."""
        if keys is None:
            return None
        return keys.ltk if keys.ltk is not None else keys.ltk_central

    async def long_term_key(self, connection_handle, rand, ediv):
        """LTK for the controller's LE Long Term Key Request (Vol 4 Part E 7.7.65.5): the pairing's
        key, else the stored one. Replaces bumble's lookup, which answers a legacy bond with the
        LTK the central distributed and ignores the EDIV and Rand that name a legacy LTK
        (Vol 3 Part H 2.4); an SC LTK is asked for with EDIV 0 and Rand 0."""
        connection = self.device.lookup_connection(connection_handle)
        if connection is None:
            return None
        key = self.device.smp_manager.get_long_term_key(connection, rand, ediv)
        if key is not None:
            return key
        keys = await self.stored_keys(connection)
        if keys is None:
            return None
        if keys.ltk is not None:
            return keys.ltk.value if (ediv, bytes(rand)) == (0, bytes(8)) else None
        key = keys.ltk_central
        if key is None or (ediv, bytes(rand)) != (key.ediv or 0, bytes(key.rand or bytes(8))):
            return None
        return key.value

    async def key_authenticated(self, connection):
        """Whether the key the link is encrypted with is authenticated: the pairing's method on
        this link, else the stored key's flag. Decided at the time of the request, not from the
        encryption report, which on rootcanal awaits Read Encryption Key Size first and so can
        come after the peer's next request."""
        session = self.device.smp_manager.sessions.get(connection.handle)
        if session is not None:
            return session.pairing_method != smp.PairingMethod.JUST_WORKS
        key = self.ltk_of(await self.stored_keys(connection))
        return bool(key is not None and key.authenticated)

    async def check(self, connection, need_mitm):
        """Core Vol 3 Part C 10.3.1: the ATT error for a read needing (authenticated) encryption."""
        if connection.is_encrypted:
            if need_mitm and not await self.key_authenticated(connection):
                raise att.ATT_Error(att.ATT_INSUFFICIENT_AUTHENTICATION_ERROR)
            return
        key = self.ltk_of(await self.stored_keys(connection))
        if key is None or (need_mitm and not key.authenticated):
            raise att.ATT_Error(att.ATT_INSUFFICIENT_AUTHENTICATION_ERROR)
        raise att.ATT_Error(att.ATT_INSUFFICIENT_ENCRYPTION_ERROR)


def build_database(device, security):
    P = Characteristic.Properties
    R = Characteristic.READABLE

    def guarded(value, need_mitm):
        async def read(connection):
            await security.check(connection, need_mitm)
            return value
        return CharacteristicValue(read=read)

    open_char = Characteristic(OPEN_UUID, P.READ, R, b"open")
    enc_char = Characteristic(ENC_UUID, P.READ | P.NOTIFY, R, guarded(b"encrypted", False))
    auth_char = Characteristic(AUTH_UUID, P.READ, R, guarded(b"authenticated", True))
    device.add_service(Service(SERVICE_UUID, [open_char, enc_char, auth_char]))

    def on_subscription(connection, notify, _indicate):
        if notify:
            connection.cancel_on_disconnection(
                device.notify_subscriber(connection, enc_char, b"encrypted"))

    enc_char.on("subscription", on_subscription)
    # a characteristic object is its value attribute; bumble adds the CCCD as its last descriptor
    return {"open": open_char.handle, "enc": enc_char.handle, "enc_cccd": enc_char.end_group_handle,
            "auth": auth_char.handle}


class Link:
    """One connection: reports its security events in order, answers a Security Request as a
    central, and runs pairing / encryption to the end of their reports."""

    def __init__(self, device, connection, security):
        self.device = device
        self.connection = connection
        self.security = security
        self.pairing = False
        finished = asyncio.get_running_loop().create_future()
        finished.set_result(None)
        self.encryption_report = finished  # the task reporting the last Encryption Change
        self.pairing_report = finished  # the task reporting the last pairing
        self.outcome = asyncio.get_running_loop().create_future()  # first security outcome reported
        self.session = None  # the SMP session of the last pairing
        connection.on("pairing_start", self.on_pairing_start)
        connection.on("pairing", self.on_pairing)
        connection.on("pairing_failure", self.on_pairing_failure)
        connection.on("connection_encryption_change", self.on_encryption_change)
        connection.on("connection_encryption_failure", self.on_encryption_failure)
        connection.on("connection_encryption_key_refresh", lambda: emit("key_refresh"))
        if connection.role == Role.CENTRAL:
            connection.on("security_request", self.on_security_request)

    def settled(self):
        if not self.outcome.done():
            self.outcome.set_result(None)

    def on_pairing_start(self):
        self.pairing = True
        self.session = self.device.smp_manager.sessions.get(self.connection.handle)
        emit("pairing_started")

    def on_pairing(self, keys):
        # the session of this pairing (bumble forgets it at a disconnection, which may come first)
        session = self.session or self.device.smp_manager.sessions.get(self.connection.handle)
        authenticated = bool(session is not None and session.pairing_method != smp.PairingMethod.JUST_WORKS)
        bonded = bool(session is not None and session.bonding)
        # The key size SMP agreed on: the smaller Maximum Encryption Key Size of the Pairing
        # Request and Response (Vol 3 Part H 3.5.1, 2.3.4)
        key_size = min(session.preq[4], session.pres[4]) if session is not None else None
        # Reports are not cancelled by a disconnection: they come before "disconnected".
        self.pairing_report = asyncio.ensure_future(
            self.report_pairing(keys, authenticated, bonded, key_size))

    async def report_pairing(self, keys, authenticated, bonded, key_size):
        await self.encryption_report  # after encryption_change, with the key size known
        connection = self.connection
        ltk = keys.ltk if keys.ltk is not None else keys.ltk_central
        extra = {}
        if keys.ltk is None and ltk is not None:
            extra = {"ediv": ltk.ediv, "rand": (ltk.rand or b"").hex()}
        emit("pairing_complete", sc=bool(connection.sc), authenticated=authenticated, bonded=bonded,
             key_size=key_size,
             ltk=ltk.value.hex() if ltk is not None else None,
             peer_identity=addr_str(connection.peer_address),
             peer_identity_type="public" if connection.peer_address.is_public else "random", **extra)
        self.pairing = False
        self.settled()

    def on_pairing_failure(self, reason):
        self.pairing = False
        try:
            name = smp.ErrorCode(reason).name
        except ValueError:
            name = f"0x{reason:02X}"
        emit("pairing_failed", reason=int(reason), name=name)
        self.settled()

    def on_encryption_change(self):
        self.encryption_report = asyncio.ensure_future(self.report_encryption())

    async def report_encryption(self):
        connection = self.connection
        # rootcanal sends Encryption Change v1, which has no key size: ask the controller
        # (Read Encryption Key Size, Vol 4 Part E 7.5.7)
        if (connection.is_encrypted and not connection.encryption_key_size
                and self.device.host.supports_command(HCI_READ_ENCRYPTION_KEY_SIZE_COMMAND)):
            try:
                response = await self.device.send_sync_command(
                    HCI_Read_Encryption_Key_Size_Command(connection_handle=connection.handle))
                connection.encryption_key_size = response.key_size
            except Exception as exc:  # pylint: disable=broad-except  # the report must go out
                log(f"warning: Read Encryption Key Size failed: {type(exc).__name__}: {exc}")
        emit("encryption_change", encrypted=connection.is_encrypted,
             key_size=(connection.encryption_key_size or None) if connection.is_encrypted else None)
        if not self.pairing:
            self.settled()

    def on_encryption_failure(self, status):
        emit("encryption_failed", status=int(status))
        self.settled()

    def on_security_request(self, auth_req):
        if not self.pairing:
            self.connection.cancel_on_disconnection(self.answer_security_request(auth_req))

    async def answer_security_request(self, auth_req):
        """Vol 3 Part H 2.4.6: encrypt with a stored key good enough for the request, else pair."""
        key = Security.ltk_of(await self.security.stored_keys(self.connection))
        mitm = bool(auth_req & smp.AuthReq.MITM)
        action = "encrypt" if key is not None and (key.authenticated or not mitm) else "pair"
        emit("security_request", auth_req=int(auth_req), action=action)
        if action == "encrypt":
            await self.encrypt()
        else:
            await self.pair()

    async def settle(self):
        """Wait for the reports of what has happened so far (pairing completing included)."""
        task = getattr(self.session, "pairing_task", None)
        if task is not None:
            try:
                await task
            except Exception as exc:  # pylint: disable=broad-except
                log(f"warning: pairing completion failed: {type(exc).__name__}: {exc}")
        await self.encryption_report
        await self.pairing_report

    async def pair(self):
        """Pair as the initiator; the outcome is reported by the pairing events."""
        try:
            await self.connection.pair()
        except ProtocolError:
            pass  # pairing_failed was emitted from the pairing_failure event
        await self.settle()

    async def encrypt(self):
        """Encrypt with the stored key; the outcome is reported by the encryption events."""
        if Security.ltk_of(await self.security.stored_keys(self.connection)) is None:
            emit("encryption_failed", status=None, error="no key stored for the peer")
            self.settled()
            return
        # On an encrypted link this is a key refresh (pause and restart encryption, Vol 6 Part B
        # 5.1.3.2): the controller answers with Encryption Key Refresh Complete, for which
        # bumble's encrypt() does not wait (it would wait for an Encryption Change forever).
        refreshed = asyncio.get_running_loop().create_future()
        on_refresh = lambda: refreshed.done() or refreshed.set_result(None)  # noqa: E731
        self.connection.on("connection_encryption_key_refresh", on_refresh)
        encrypting = asyncio.ensure_future(self.connection.encrypt())
        try:
            await asyncio.wait({encrypting, refreshed}, return_when=asyncio.FIRST_COMPLETED)
            if encrypting.done():
                encrypting.result()
        except HCI_Error:
            pass  # encryption_failed was emitted from the encryption failure event
        finally:
            encrypting.cancel()
            self.connection.remove_listener("connection_encryption_key_refresh", on_refresh)
        await self.settle()

    async def wait_outcome(self):
        """Wait until pairing has ended or the link was encrypted (or encryption failed)."""
        await self.connection.cancel_on_disconnection(asyncio.shield(self.outcome))
        await self.settle()


async def read(link, args, handle, **extra):
    """Read one attribute. With --pair-on-error, an Insufficient Authentication / Encryption
    error makes a central encrypt (with a stored key that suffices) or pair, and read again once."""
    connection = link.connection
    client = connection.gatt_client
    try:
        value = await client.read_value(handle, no_long_read=True)
    except att.ATT_Error as exc:
        emit("read_error", handle=handle, code=int(exc.error_code), **extra)
        if not (args.pair_on_error and connection.role == Role.CENTRAL and exc.error_code in (
                att.ATT_INSUFFICIENT_AUTHENTICATION_ERROR, att.ATT_INSUFFICIENT_ENCRYPTION_ERROR)):
            return
        key = Security.ltk_of(await link.security.stored_keys(connection))
        if (exc.error_code == att.ATT_INSUFFICIENT_ENCRYPTION_ERROR and key is not None
                and not connection.is_encrypted):
            await link.encrypt()
        else:
            await link.pair()
        try:
            value = await client.read_value(handle, no_long_read=True)
        except att.ATT_Error as again:
            emit("read_error", handle=handle, code=int(again.error_code), **extra)
            return
    emit("read", handle=handle, value=bytes(value).hex(), **extra)


async def find_characteristic(client, uuid):
    if not client.services:
        await client.discover_services()
    found = await client.discover_characteristics([uuid], None)
    if not found:
        raise RuntimeError(f"characteristic {uuid_str(uuid)} not found")
    return found[0]


async def steps(link, args):
    """The steps asked for on the command line, in their documented order."""
    connection = link.connection
    if args.pair:
        if connection.role == Role.CENTRAL:
            await link.pair()
        else:
            connection.request_pairing()
            await link.wait_outcome()
    elif args.wait_security:
        await link.wait_outcome()
    if args.encrypt:
        await link.encrypt()
    client = connection.gatt_client
    for handle in args.read:
        await read(link, args, handle)
    for uuid in args.read_uuid:
        characteristic = await find_characteristic(client, uuid)
        await read(link, args, characteristic.handle, uuid=uuid_str(uuid))
    if args.subscribe is not None:
        characteristic = await find_characteristic(client, args.subscribe)
        received = [0]
        enough = asyncio.get_running_loop().create_future()

        def on_value(value):
            emit("notification", handle=characteristic.handle, value=bytes(value).hex())
            received[0] += 1
            if received[0] >= args.notifications and not enough.done():
                enough.set_result(None)

        await client.subscribe(characteristic, on_value)
        emit("subscribed", uuid=uuid_str(args.subscribe), handle=characteristic.handle)
        if args.notifications > received[0]:
            await enough
    if args.listen is not None:
        # A bonded client's CCCD persists across connections (Vol 3 Part G 3.3.3.3): take the
        # server's notifications without writing the CCCD again. bumble's client passes a
        # notification only to the subscribers registered for its handle.
        characteristic = await find_characteristic(client, args.listen)
        received = [0]
        enough = asyncio.get_running_loop().create_future()

        def on_listened(value):
            emit("notification", handle=characteristic.handle, value=bytes(value).hex())
            received[0] += 1
            if received[0] >= args.notifications and not enough.done():
                enough.set_result(None)

        client.notification_subscribers.setdefault(characteristic.handle, set()).add(on_listened)
        emit("listening", uuid=uuid_str(args.listen), handle=characteristic.handle)
        if args.notifications > received[0]:
            await enough


def keystore(args, device):
    if args.keystore is None:
        return MemoryKeyStore()
    # One namespace per own address, so one file can hold several identities.
    return JsonKeyStore(namespace=str(device.static_address), filename=args.keystore)


def store_only_bonds(device):
    """bumble stores the keys of every pairing; keep only those of a bonding pairing."""
    manager = device.smp_manager
    original = manager.on_pairing

    async def on_pairing(session, identity_address, keys):
        if session.bonding:
            await original(session, identity_address, keys)
        else:
            device.on_pairing(session.connection, identity_address, keys, session.sc)

    manager.on_pairing = on_pairing


async def body(args, hci_transport):
    name = args.name or "bumble-pairing"
    device = Device.with_hci(name, args.own_address, hci_transport.source, hci_transport.sink)
    device.keystore = keystore(args, device)
    def pairing_config(_connection):
        config = PairingConfig(sc=args.sc, mitm=args.mitm or args.require_mitm,
                               bonding=args.bonding, delegate=Delegate(args),
                               identity_address_type=PairingConfig.AddressType.RANDOM)
        config.require_mitm = args.require_mitm
        return config

    device.pairing_config_factory = pairing_config
    device.smp_session_proxy = Session
    store_only_bonds(device)
    security = Security(device)
    device.host.long_term_key_provider = security.long_term_key
    handles = build_database(device, security) if args.role == "peripheral" else None
    await device.power_on()

    # Watch the link from its Connection Complete on: a Security Request can arrive before
    # device.connect() returns, and bumble drops it when no one listens yet.
    linked = asyncio.get_running_loop().create_future()
    ended = asyncio.get_running_loop().create_future()

    def on_connection(connection):
        if linked.done():
            return
        connection.on("disconnection", lambda reason: ended.done() or ended.set_result(reason))
        role = "central" if connection.role == Role.CENTRAL else "peripheral"
        emit("connected", peer=addr_str(connection.peer_address), role=role, handle=connection.handle)
        linked.set_result(Link(device, connection, security))

    device.on("connection", on_connection)
    if args.role == "peripheral":
        await device.start_advertising(
            advertising_data=ad(0x01, bytes([FLAGS])) + ad(0x09, name.encode()),
            auto_restart=False, advertising_interval_min=args.adv_interval,
            advertising_interval_max=args.adv_interval)
        emit("ready", role="peripheral", address=addr_str(device.random_address), handles=handles)
    else:
        emit("ready", role="central", address=addr_str(device.random_address))
        if args.peer is not None:
            target = args.peer
        else:
            advertisement = await scan_for(device, args.name, None, args.scan_timeout)
            target = advertisement.address
        await device.connect(target, timeout=args.timeout)
    link = await linked
    connection = link.connection

    # Run the steps until they end or the link does (a step cut by the disconnection is dropped).
    task = asyncio.ensure_future(steps(link, args))
    await asyncio.wait({task, ended}, return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        task.cancel()
    try:
        await task
        emit("done")
    except asyncio.CancelledError:
        if not ended.done():
            raise
        log("steps cut by the disconnection")
    except Exception as exc:  # pylint: disable=broad-except
        if not ended.done():
            raise
        log(f"steps cut by the disconnection: {type(exc).__name__}: {exc}")

    by = "remote"
    if not ended.done() and args.disconnect_after is not None:
        try:
            await asyncio.wait_for(asyncio.shield(ended), args.disconnect_after)
        except asyncio.TimeoutError:
            by = "local"
            await connection.disconnect()  # reason 0x13, Remote User Terminated Connection
    reason = await ended
    await link.settle()
    emit("disconnected", reason=reason, by=by)


def parse_address(text):
    """'XX:XX:XX:XX:XX:XX' (random) or 'XX:XX:XX:XX:XX:XX/P' (public)."""
    try:
        if text.upper().endswith("/P"):
            return Address(text[:-2], Address.PUBLIC_DEVICE_ADDRESS)
        return Address(text, Address.RANDOM_DEVICE_ADDRESS)
    except Exception as exc:  # bumble raises InvalidArgumentError / ValueError
        raise argparse.ArgumentTypeError(f"bad address {text!r}: {exc}") from None


def parse_uuid(text):
    try:
        return UUID(text.strip())
    except Exception as exc:  # bumble raises InvalidArgumentError / ValueError
        raise argparse.ArgumentTypeError(f"bad UUID {text!r}: {exc}") from None


def parse_handle(text):
    try:
        handle = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad handle {text!r}") from None
    if not 0x0001 <= handle <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"handle {text!r} out of range 0x0001..0xFFFF")
    return handle


def parse_passkey(text):
    try:
        passkey = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad passkey {text!r}") from None
    if not 0 <= passkey <= 999999:
        raise argparse.ArgumentTypeError("passkey must be 0..999999")
    return passkey


def main():
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--address", dest="own_address", help="same as --own-address")
    p.add_argument("--role", choices=("peripheral", "central"), required=True)
    p.add_argument("--name", help="peripheral: name to advertise; central: name to look for")
    p.add_argument("--peer", type=parse_address,
                   help="central: connect to this address without scanning (suffix /P: public)")
    p.add_argument("--scan-timeout", type=float, default=10.0,
                   help="give up scanning after this (default 10 s)")
    p.add_argument("--adv-interval", type=float, default=100.0, metavar="MS",
                   help="advertising interval in ms (default 100)")
    p.add_argument("--io", choices=tuple(IO_CAPABILITIES), default="no-io",
                   help="IO capability (default no-io)")
    p.add_argument("--sc", action=argparse.BooleanOptionalAction, default=True,
                   help="LE Secure Connections (default on)")
    p.add_argument("--mitm", action=argparse.BooleanOptionalAction, default=False,
                   help="request MITM protection (default off)")
    p.add_argument("--require-mitm", action="store_true",
                   help="implies --mitm; refuse a pairing that would be Just Works with Pairing Failed "
                        "Authentication Requirements (0x03), as bumble itself never does")
    p.add_argument("--bonding", action=argparse.BooleanOptionalAction, default=True,
                   help="request bonding, distribute and store keys (default on)")
    p.add_argument("--passkey", type=parse_passkey,
                   help="passkey entered when asked, and displayed when this side displays one "
                        "(default: a random one is displayed, an entry request is rejected)")
    p.add_argument("--passkey-file", metavar="FILE",
                   help="passkey entered when asked: the decimal number FILE holds once it exists "
                        "(waited for up to 30 s); for a test that learns the passkey during pairing")
    p.add_argument("--numeric", choices=("accept", "reject"), default="accept",
                   help="answer to a numeric comparison (default accept)")
    p.add_argument("--keystore", metavar="FILE", help="JSON keystore (default: in memory)")
    p.add_argument("--pair", action="store_true",
                   help="central: pair; peripheral: send a Security Request")
    p.add_argument("--encrypt", action="store_true", help="central: encrypt with the stored key")
    p.add_argument("--wait-security", action="store_true",
                   help="before the GATT steps, wait until pairing has ended or the link is encrypted "
                        "(e.g. a central answering the peripheral's Security Request)")
    p.add_argument("--read", type=parse_handle, action="append", default=[], metavar="HANDLE",
                   help="read this handle (repeatable)")
    p.add_argument("--read-uuid", type=parse_uuid, action="append", default=[], metavar="UUID",
                   help="discover the characteristic with this UUID and read it (repeatable)")
    p.add_argument("--pair-on-error", action="store_true",
                   help="central: on Insufficient Authentication/Encryption from a read, encrypt "
                        "(a stored key suffices) or pair, then read again once (bumble does not)")
    p.add_argument("--subscribe", type=parse_uuid, metavar="UUID",
                   help="discover the characteristic with this UUID and enable notifications")
    p.add_argument("--listen", type=parse_uuid, metavar="UUID",
                   help="discover the characteristic with this UUID and report its notifications "
                        "without writing its CCCD (a bonded client's CCCD persists)")
    p.add_argument("--notifications", type=int, default=0, metavar="N",
                   help="with --subscribe / --listen: wait for N notifications before going on "
                        "(default 0)")
    args = p.parse_args()
    if args.role == "peripheral" and args.name is None:
        p.error("a peripheral needs --name")
    if args.role == "central" and args.name is None and args.peer is None:
        p.error("a central needs --name or --peer")
    if args.encrypt and args.role != "central":
        p.error("--encrypt is for a central (only a central starts encryption)")
    if args.disconnect_after is not None and args.disconnect_after < 0:
        p.error("--disconnect-after must be >= 0")
    run(args, body)


if __name__ == "__main__":
    main()
