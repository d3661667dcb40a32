"""One test per method of the Python API: return types, errors, constants. The stack runs on an
in-process virtual radio of its own, or (for the GATT client) against the seed's server example on
gattling's controller server."""

import _thread
import os
import signal
import threading

import pytest

import gattling
import network
from network import Bluetooth

CHAR1 = b'ab34567890123456'


@pytest.fixture
def bt():
    b = Bluetooth(transport=f"virtual:pytest-{os.getpid()}")
    yield b
    b.deinit()


# --- module, constructor, constants -----------------------------------------------------------

def test_import_names():
    assert network.Bluetooth is gattling.Bluetooth is gattling.network.Bluetooth
    for name in ["GATTCConnection", "GATTCService", "GATTCCharacteristic", "GATTSService", "GATTSCharacteristic"]:
        assert getattr(network, name) is getattr(gattling, name)


CONSTANTS = dict(
    CONN_ADV=0, CONN_DIR_ADV=1, DISC_ADV=2, NON_CONN_ADV=3, SCAN_RSP=4,
    PUBLIC_ADDR=0, RANDOM_ADDR=1, PUBLIC_RPA_ADDR=2, RANDOM_RPA_ADDR=3,
    ADV_BLE_ADDR_TYPE_PUBLIC=0, ADV_BLE_ADDR_TYPE_RANDOM=1, ADV_BLE_ADDR_TYPE_RPA_PUBLIC=2,
    ADV_BLE_ADDR_TYPE_RPA_RANDOM=3,
    ADV_FLAG=0x01, ADV_16SRV_PART=0x02, ADV_T16SRV_CMPL=0x03, ADV_32SRV_PART=0x04, ADV_32SRV_CMPL=0x05,
    ADV_128SRV_PART=0x06, ADV_128SRV_CMPL=0x07, ADV_NAME_SHORT=0x08, ADV_NAME_CMPL=0x09, ADV_TX_PWR=0x0A,
    ADV_DEV_CLASS=0x0D, ADV_SERVICE_DATA=0x16, ADV_APPEARANCE=0x19, ADV_ADV_INT=0x1A, ADV_32SERVICE_DATA=0x20,
    ADV_128SERVICE_DATA=0x21, ADV_MANUFACTURER_DATA=0xFF,
    PROP_BROADCAST=0x01, PROP_READ=0x02, PROP_WRITE_NR=0x04, PROP_WRITE=0x08, PROP_NOTIFY=0x10,
    PROP_INDICATE=0x20, PROP_AUTH=0x40, PROP_EXT_PROP=0x80,
    PERM_READ=0x001, PERM_READ_ENCRYPTED=0x002, PERM_READ_ENC_MITM=0x004, PERM_WRITE=0x010,
    PERM_WRITE_ENCRYPTED=0x020, PERM_WRITE_ENC_MITM=0x040, PERM_WRITE_SIGNED=0x080, PERM_WRITE_SIGNED_MITM=0x100,
    CHAR_CONFIG_NOTIFY=1, CHAR_CONFIG_INDICATE=2,
    NEW_ADV_EVENT=0x01, CLIENT_CONNECTED=0x02, CLIENT_DISCONNECTED=0x04, CHAR_READ_EVENT=0x08,
    CHAR_WRITE_EVENT=0x10, CHAR_NOTIFY_EVENT=0x20, CHAR_SUBSCRIBE_EVENT=0x80,
    INT_ANT=0, EXT_ANT=1, MAN_ANT=2,
    ADV_TYPE_IND=0, ADV_TYPE_DIRECT_IND_HIGH=1, ADV_TYPE_SCAN_IND=2, ADV_TYPE_NONCONN_IND=3, ADV_TYPE_DIRECT_IND_LOW=4,
    ADV_CHNL_37=1, ADV_CHNL_38=2, ADV_CHNL_39=4, ADV_CHNL_ALL=7,
    ADV_FILTER_ALLOW_SCAN_ANY_CON_ANY=0, ADV_FILTER_ALLOW_SCAN_WLST_CON_ANY=1,
    ADV_FILTER_ALLOW_SCAN_ANY_CON_WLST=2, ADV_FILTER_ALLOW_SCAN_WLST_CON_WLST=3,
    TX_PWR_CONN=0, TX_PWR_ADV=9, TX_PWR_SCAN=10, TX_PWR_DEFAULT=11,
    TX_PWR_N12=0, TX_PWR_N9=1, TX_PWR_N6=2, TX_PWR_N3=3, TX_PWR_0=4, TX_PWR_P3=5, TX_PWR_P6=6, TX_PWR_P9=7,
)


@pytest.mark.parametrize("name,value", sorted(CONSTANTS.items()))
def test_constant(name, value):
    assert getattr(Bluetooth, name) == value
    assert type(getattr(Bluetooth, name)) is int


def test_timeout_is_timeout_error():
    assert Bluetooth.timeout is TimeoutError


def test_constructor_and_init(bt):
    assert isinstance(bt, Bluetooth)
    assert Bluetooth() is not None  # the running stack is shared
    with pytest.raises(OSError):
        Bluetooth(1)
    for bad in [dict(mtu=22), dict(mtu=201), dict(pin=1000000), dict(pin=-1), dict(antenna=3)]:
        with pytest.raises(ValueError):
            Bluetooth(transport=f"virtual:pytest-{os.getpid()}", **bad)
    with pytest.raises(TypeError):
        Bluetooth(mtu="big")
    assert bt.init(transport=f"virtual:pytest-{os.getpid()}", mtu=100, antenna=Bluetooth.EXT_ANT, pin=123456,
                   privacy=False, secure_connections=False, modem_sleep=False, mode=0) is None
    with pytest.raises(OSError):
        bt.init(transport="no-such-transport:x")


def test_deinit_then_calls_fail(bt):
    assert bt.deinit() is None
    with pytest.raises(OSError):
        bt.start_scan(1)
    with pytest.raises(OSError):
        bt.service(1)


# --- GAP ----------------------------------------------------------------------------------------

def test_start_scan_stop_scan_isscanning(bt):
    with pytest.raises(ValueError, match="invalid scan time"):
        bt.start_scan(0)
    with pytest.raises(TypeError):
        bt.start_scan("1")
    assert bt.isscanning() is False
    assert bt.start_scan(-1) is None
    assert bt.isscanning() is True
    with pytest.raises(OSError, match="operation already in progress"):
        bt.start_scan(5)
    assert bt.stop_scan() is None
    assert bt.isscanning() is False
    assert bt.stop_scan() is None


def test_get_adv_and_get_advertisements_when_empty(bt):
    assert bt.get_adv() is None
    assert bt.get_advertisements() == []


def test_resolve_adv_data(bt):
    data = (bytes([2, 0x01, 0x06]) + bytes([2, 0x0A, 0xF4]) + bytes([5, 0x09]) + b"LoPy"
            + bytes([3, 0x03, 0x0D, 0x18]) + bytes([4, 0xFF, 0x4C, 0x00, 0x02]) + bytes([3, 0x19, 0x40, 0x03]))
    assert bt.resolve_adv_data(data, Bluetooth.ADV_FLAG) == 6
    assert bt.resolve_adv_data(data, Bluetooth.ADV_TX_PWR) == -12
    assert bt.resolve_adv_data(data, Bluetooth.ADV_NAME_CMPL) == "LoPy"
    assert bt.resolve_adv_data(data, Bluetooth.ADV_T16SRV_CMPL) == b"\x0d\x18"
    assert bt.resolve_adv_data(data, Bluetooth.ADV_MANUFACTURER_DATA) == b"\x4c\x00\x02"
    assert bt.resolve_adv_data(data, Bluetooth.ADV_APPEARANCE) is None
    assert bt.resolve_adv_data(data, Bluetooth.ADV_NAME_SHORT) is None
    assert bt.resolve_adv_data(None, Bluetooth.ADV_NAME_CMPL) is None
    assert bt.resolve_adv_data(b"\x05\x09Lo", Bluetooth.ADV_NAME_CMPL) is None or True  # truncated: no crash
    with pytest.raises(ValueError):
        bt.resolve_adv_data(data, 256)
    with pytest.raises(TypeError):
        bt.resolve_adv_data(12, Bluetooth.ADV_FLAG)


def test_connect_errors(bt):
    for bad in ["1122", "11223344556g", b"\x01\x02\x03", b"\x00" * 7]:
        with pytest.raises(ValueError):
            bt.connect(bad)
    with pytest.raises(TypeError):
        bt.connect(12)
    with pytest.raises(ValueError):
        bt.connect("112233eeddff", timeout=-5)
    with pytest.raises(TimeoutError, match="timed out"):
        bt.connect("112233eeddff", timeout=200)
    with pytest.raises(Bluetooth.timeout):
        bt.connect(b"\x11\x22\x33\xee\xdd\xff", timeout=100)


def test_ctrl_c_interrupts_a_blocking_connect(bt):
    # Python's own SIGINT handler for the test: a process started in the background by a
    # non-interactive shell inherits SIGINT ignored, and then interrupt_main() does nothing.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        timer = threading.Timer(0.3, _thread.interrupt_main)
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            bt.connect("112233eeddff")  # no timeout: waits until interrupted
        timer.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    # The attempt was cancelled: the next one runs (and times out) instead of "in progress".
    with pytest.raises(TimeoutError):
        bt.connect("112233eeddff", timeout=100)


def test_set_advertisement(bt):
    assert bt.set_advertisement(name="LoPy", manufacturer_data="lopy_v1", service_data=b"\x0d\x18",
                                service_uuid=b"1234567890123456") is None
    assert bt.set_advertisement(service_uuid=0x180D) is None
    assert bt.set_advertisement(service_uuid=0x1234ABCD) is None
    assert bt.set_advertisement() is None
    with pytest.raises(OSError, match="incorrect service UUID length"):
        bt.set_advertisement(service_uuid=b"123456789012345")
    with pytest.raises(ValueError):
        bt.set_advertisement(name="x" * 40)
    with pytest.raises(TypeError):
        bt.set_advertisement("LoPy")


def test_set_advertisement_raw(bt):
    assert bt.set_advertisement_raw(bytes([2, 1, 6])) is None
    assert bt.set_advertisement_raw(None) is None
    with pytest.raises(ValueError):
        bt.set_advertisement_raw(bytes(32))
    with pytest.raises(TypeError):
        bt.set_advertisement_raw("text")


def test_set_advertisement_params(bt):
    assert bt.set_advertisement_params(adv_int_min=0x30, adv_int_max=0x40, adv_type=Bluetooth.ADV_TYPE_IND,
                                       own_addr_type=Bluetooth.ADV_BLE_ADDR_TYPE_PUBLIC,
                                       channel_map=Bluetooth.ADV_CHNL_ALL,
                                       adv_filter_policy=Bluetooth.ADV_FILTER_ALLOW_SCAN_ANY_CON_ANY) is None
    for bad in [dict(adv_int_min=0x10), dict(adv_type=9), dict(channel_map=0), dict(adv_filter_policy=4),
                dict(adv_type=Bluetooth.ADV_TYPE_DIRECT_IND_HIGH)]:
        with pytest.raises(ValueError):
            bt.set_advertisement_params(**bad)


def test_advertise(bt):
    bt.set_advertisement(name="LoPy")
    assert bt.advertise(True) is None
    assert bt.advertise(False) is None
    with pytest.raises(TypeError):
        bt.advertise("yes")


def test_callback_and_events(bt):
    assert bt.events() == 0
    assert bt.callback(trigger=Bluetooth.CLIENT_CONNECTED | Bluetooth.CLIENT_DISCONNECTED, handler=lambda b: None) is None
    assert bt.callback(trigger=Bluetooth.NEW_ADV_EVENT, handler=None) is None
    with pytest.raises(ValueError, match="invalid trigger"):
        bt.callback(trigger=Bluetooth.CHAR_READ_EVENT, handler=lambda b: None)
    with pytest.raises(TypeError):
        bt.callback(trigger=Bluetooth.NEW_ADV_EVENT, handler=5)


def test_disconnect_client_and_gatts_mtu_without_client(bt):
    assert bt.disconnect_client() is None
    assert bt.gatts_mtu() is None


def test_tx_power_modem_sleep_set_pin_nvram_erase(bt):
    assert bt.tx_power(Bluetooth.TX_PWR_ADV) == 9
    assert bt.tx_power(Bluetooth.TX_PWR_ADV, Bluetooth.TX_PWR_N12) is None
    assert bt.tx_power(Bluetooth.TX_PWR_ADV) == -12
    with pytest.raises(ValueError):
        bt.tx_power(5)
    with pytest.raises(ValueError):
        bt.tx_power(Bluetooth.TX_PWR_CONN, 8)
    assert bt.modem_sleep(True) is None
    assert bt.modem_sleep() is True
    assert bt.set_pin(123456) is None
    with pytest.raises(ValueError):
        bt.set_pin(1000000)
    assert bt.nvram_erase() is None


# --- GATT server --------------------------------------------------------------------------------

def test_service(bt):
    s = bt.service(uuid=b"1234567890123456", isprimary=True)
    assert type(s).__name__ == "GATTSService"
    assert type(bt.service(0x1234, nbr_chars=2, start=False)).__name__ == "GATTSService"
    assert type(bt.service(0x12345678)).__name__ == "GATTSService"
    with pytest.raises(ValueError):
        bt.service(uuid=b"123456789012345")  # 15 bytes
    with pytest.raises(ValueError):
        bt.service(uuid=-1)
    with pytest.raises(ValueError):
        bt.service(uuid=1 << 40)
    with pytest.raises(ValueError):
        bt.service(uuid=1, nbr_chars=0)


def test_service_start_stop(bt):
    s = bt.service(0x1235, start=False)
    assert s.start() is None
    assert s.start() is None
    assert s.stop() is None
    assert s.stop() is None


def test_characteristic(bt):
    s = bt.service(0x1236, nbr_chars=3)
    c = s.characteristic(uuid=0x2A37)
    assert type(c).__name__ == "GATTSCharacteristic"
    assert c.value() == b"\x00"
    c2 = s.characteristic(uuid=CHAR1, value=0x1234, properties=Bluetooth.PROP_READ | Bluetooth.PROP_NOTIFY,
                          permissions=Bluetooth.PERM_READ)
    assert c2.value() == b"\x12\x34"
    c3 = s.characteristic(uuid=0x2A38, value="text")
    assert c3.value() == b"text"
    with pytest.raises(OSError):
        s.characteristic(uuid=0x2A39)  # beyond nbr_chars
    with pytest.raises(TypeError):
        s.characteristic(0x2A39)  # uuid is keyword-only
    with pytest.raises(ValueError):
        bt.service(0x1237).characteristic(uuid=b"short")
    with pytest.raises(ValueError):
        bt.service(0x1238).characteristic(uuid=1, value=1 << 40)
    with pytest.raises(ValueError):
        bt.service(0x1239).characteristic(uuid=1, properties=0x100)


def test_characteristic_value(bt):
    c = bt.service(0x1240).characteristic(uuid=0x2A40, value=5)
    assert c.value() == b"\x05"
    assert c.value(0x1234) is None
    assert c.value() == b"\x12\x34"
    assert c.value(0x12345678) is None
    assert c.value() == b"\x12\x34\x56\x78"
    c.value("ABC DEF")
    assert c.value() == b"ABC DEF"
    c.value(bytearray(b"\x01\x02"))
    assert c.value() == b"\x01\x02"
    with pytest.raises(ValueError):
        c.value(-1)
    with pytest.raises(ValueError):
        c.value(bytes(513))
    with pytest.raises(TypeError):
        c.value(1.5)


def test_characteristic_callback_events_config(bt):
    c = bt.service(0x1241).characteristic(uuid=0x2A41)
    assert c.callback(trigger=Bluetooth.CHAR_READ_EVENT | Bluetooth.CHAR_WRITE_EVENT | Bluetooth.CHAR_SUBSCRIBE_EVENT,
                      handler=lambda ch: None) is None
    assert c.callback(trigger=Bluetooth.CHAR_WRITE_EVENT, handler=lambda ch, ev: None, arg=42) is None
    assert c.callback(trigger=Bluetooth.CHAR_WRITE_EVENT, handler=None) is None
    with pytest.raises(ValueError, match="invalid trigger"):
        c.callback(trigger=Bluetooth.NEW_ADV_EVENT, handler=lambda ch: None)
    assert c.events() == 0
    assert c.config() == 0


# --- GATT client, against the seed's server ------------------------------------------------------

@pytest.fixture
def client(gattling_controller, seed_server):
    server = seed_server(gattling_controller)
    b = Bluetooth(transport=gattling_controller)
    found = threading.Event()
    advs = []

    def on_adv(bt_o):
        for adv in bt_o.get_advertisements():
            if bt_o.resolve_adv_data(adv.data, Bluetooth.ADV_NAME_CMPL) == "LoPy":
                advs.append(adv)
                found.set()

    b.callback(trigger=Bluetooth.NEW_ADV_EVENT, handler=on_adv)
    b.start_scan(-1)
    assert found.wait(20)
    b.callback(trigger=Bluetooth.NEW_ADV_EVENT, handler=None)
    yield b, advs[0], server
    b.deinit()


def test_handler_that_raises_keeps_the_stack_running(client, capfd):
    b, _, _ = client
    again = threading.Event()
    calls = []

    def on_adv(bt_o):
        calls.append(bt_o)
        if len(calls) == 1:
            raise RuntimeError("a handler that raises")
        again.set()

    b.callback(trigger=Bluetooth.NEW_ADV_EVENT, handler=on_adv)
    assert again.wait(10), "no callback after the one that raised"
    b.callback(trigger=Bluetooth.NEW_ADV_EVENT, handler=None)
    err = capfd.readouterr().err
    assert "Traceback" in err and "RuntimeError: a handler that raises" in err
    assert calls[0] is b


def test_two_argument_handler(client):
    b, _, _ = client
    got = []
    done = threading.Event()

    def on_adv(arg, event_value):
        got.append((arg, event_value))
        done.set()

    b.callback(trigger=Bluetooth.NEW_ADV_EVENT, handler=on_adv, arg="mine")
    assert done.wait(10)
    b.callback(trigger=Bluetooth.NEW_ADV_EVENT, handler=None)
    assert got[0] == ("mine", (Bluetooth.NEW_ADV_EVENT, None))


def test_adv_tuple(client):
    _, adv, _ = client
    assert isinstance(adv.mac, bytes) and len(adv.mac) == 6
    assert adv.addr_type == Bluetooth.PUBLIC_ADDR
    assert adv.adv_type in (Bluetooth.CONN_ADV, Bluetooth.SCAN_RSP)
    assert isinstance(adv.rssi, int)
    assert isinstance(adv.data, bytes)
    assert adv == (adv.mac, adv.addr_type, adv.adv_type, adv.rssi, adv.data)


def test_gattc_connection(client):
    b, adv, server = client
    conn = b.connect(adv.mac.hex())  # the documented 12-hex-digit form
    assert type(conn).__name__ == "GATTCConnection"
    server.expect("Client connected")
    assert conn.isconnected() is True
    assert isinstance(conn.get_mtu(), int) and 23 <= conn.get_mtu() <= 200
    assert b.gatts_mtu() is None  # we are the client here
    services = conn.services()
    assert all(type(s).__name__ == "GATTCService" for s in services)
    uuids = [s.uuid() for s in services]
    assert 0x1800 in uuids and 1234 in uuids and b"1234567890123456" in uuids
    svc1 = services[uuids.index(b"1234567890123456")]
    assert svc1.isprimary() is True
    assert svc1.instance() == 0
    chars = svc1.characteristics()
    assert [c.uuid() for c in chars] == [CHAR1]
    ch = chars[0]
    assert type(ch).__name__ == "GATTCCharacteristic"
    assert ch.instance() == 0
    assert ch.properties() == Bluetooth.PROP_READ | Bluetooth.PROP_WRITE | Bluetooth.PROP_NOTIFY
    assert ch.value() == b"\x00"
    assert ch.read() == b"\x05"
    assert ch.value() == b"\x05"
    server.expect("Read request on char 1")
    assert ch.write(b"xyz") is None
    server.expect("Write request with value = {}".format(b"xyz"))
    with pytest.raises(TypeError):
        ch.write(5)
    assert ch.read_descriptor(0x2902) == b"\x00\x00"
    assert ch.read_descriptor(0x2901) is None
    with pytest.raises(ValueError):
        ch.read_descriptor(0x12345)
    with pytest.raises(ValueError, match="invalid trigger"):
        ch.callback(Bluetooth.CHAR_READ_EVENT, lambda c: None)
    assert ch.callback(Bluetooth.CHAR_NOTIFY_EVENT, lambda c: None) is None
    assert conn.disconnect() is None
    server.expect("Client disconnected")
    assert conn.isconnected() is False
    assert conn.get_mtu() is None
    with pytest.raises(OSError, match="connection already closed"):
        conn.services()
    with pytest.raises(OSError, match="connection already closed"):
        ch.read()
    with pytest.raises(OSError, match="connection already closed"):
        ch.write(b"x")
    with pytest.raises(OSError, match="connection already closed"):
        svc1.characteristics()
    assert conn.disconnect() is None


def test_adv_fifo_holds_16_and_keeps_the_oldest(client):
    b, _, _ = client
    seen = []
    enough = threading.Event()

    def on_adv(bt_o):
        seen.append(1)
        if len(seen) >= 40:
            enough.set()

    b.get_advertisements()
    b.callback(trigger=Bluetooth.NEW_ADV_EVENT, handler=on_adv)
    assert enough.wait(20), "the server's advertisements stopped"
    b.callback(trigger=Bluetooth.NEW_ADV_EVENT, handler=None)
    advs = b.get_advertisements()
    assert len(advs) == 16
    assert all(type(a).__name__ == "adv" for a in advs)
    assert b.get_adv() is None
    assert b.events() & Bluetooth.NEW_ADV_EVENT
