"""bumble against the Python module: a bumble central reads and writes the seed's Python server;
the Python client reads, writes and subscribes to a bumble peripheral."""

import threading

from conftest import PEERS, Proc

from network import Bluetooth

CHAR1 = b'ab34567890123456'
ECHO = "3e1f0002-6a5b-4c2d-9e8f-0a1b2c3d4e5f"


def uuid_str(le16):
    h = le16[::-1].hex().upper()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def test_bumble_central_reads_and_writes_python_server(controller, seed_server, interop_python):
    server = seed_server(controller)
    central = Proc([interop_python, PEERS / "bumble_gatt_client.py", "--transport", controller, "--name", "LoPy",
                    "--read", "11D7", "--read", uuid_str(CHAR1), "--write", uuid_str(CHAR1) + "=6869",
                    "--read", "2A00"], name="bumble_gatt_client.py", stdin=None)
    try:
        central.event("connected")
        server.expect("Client connected")
        reads = [central.event("read"), central.event("read"), central.event("read")]
        assert reads[0]["value"] == "1234"      # char 2's handler returned None: the stored 0x1234
        assert reads[1]["value"] == "05"        # char 1's first read: stored value, handler prints
        assert reads[2]["value"] == b"LoPy".hex()
        server.expect("Read request on char 1")
        write = central.event("write")
        assert write["value"] == "6869"
        server.expect("Write request with value = {}".format(b'hi'))
        central.event("disconnected")
        server.expect("Client disconnected")
        assert central.finish() == 0
    finally:
        central.kill()


def test_python_client_reads_bumble_peripheral(controller, interop_python):
    peripheral = Proc([interop_python, PEERS / "bumble_peripheral.py", "--transport", controller,
                       "--name", "bumble-echo", "--gatt", "--wait-disconnect"], name="bumble_peripheral.py", stdin=None)
    bt = Bluetooth(transport=controller)
    try:
        peripheral.event("advertising")
        found = threading.Event()
        seen = []

        def on_adv(bt_o):
            if bt_o.events() & Bluetooth.NEW_ADV_EVENT:
                for adv in bt_o.get_advertisements():
                    if bt_o.resolve_adv_data(adv.data, Bluetooth.ADV_NAME_CMPL) == "bumble-echo":
                        seen.append(adv)
                        found.set()

        bt.callback(trigger=Bluetooth.NEW_ADV_EVENT, handler=on_adv)
        bt.start_scan(-1)
        assert found.wait(20), "the bumble peripheral was not seen"
        bt.callback(trigger=Bluetooth.NEW_ADV_EVENT, handler=None)
        adv = seen[0]
        assert adv.addr_type == Bluetooth.RANDOM_ADDR
        conn = bt.connect(adv.mac, timeout=10000)
        peripheral.event("connected")
        assert conn.isconnected()
        echo_uuid = bytes.fromhex(ECHO.replace("-", ""))[::-1]
        chars = [c for s in conn.services() for c in s.characteristics()]
        echo = next(c for c in chars if c.uuid() == echo_uuid)
        assert echo.properties() & Bluetooth.PROP_READ
        assert echo.read() == b"gattling"
        assert echo.value() == b"gattling"
        notified = threading.Event()
        got = []

        def on_notify(ch, event_value):
            got.append(event_value)
            notified.set()

        echo.callback(Bluetooth.CHAR_NOTIFY_EVENT, on_notify)
        peripheral.event("subscribed")
        echo.write(b"over-the-air")
        assert peripheral.event("write")["value"] == b"over-the-air".hex()
        assert notified.wait(10)
        assert got[0] == (Bluetooth.CHAR_NOTIFY_EVENT, b"over-the-air")
        assert echo.value() == b"over-the-air"
        conn.disconnect()
        peripheral.event("disconnected")
        assert peripheral.finish() == 0
    finally:
        peripheral.kill()
        bt.deinit()


def test_bumble_central_subscribes_to_python_server(controller, interop_python):
    import sys

    from conftest import HERE, SEEDS, python_env

    server = Proc([sys.executable, "-u", SEEDS / "run.py", HERE / "peers" / "py_server.py", "--stay"],
                  env=python_env(controller), name="py_server.py")
    central = None
    try:
        server.expect("== script done", 30)
        central = Proc([interop_python, PEERS / "bumble_gatt_client.py", "--transport", controller,
                        "--name", "PyServer", "--read", "FEE1", "--write", "FEE1=6869", "--subscribe", "FEE1:1"],
                       name="bumble_gatt_client.py", stdin=None)
        server.expect("connected")
        assert central.event("read")["value"] == b"from-handler".hex()
        server.expect("read")
        assert central.event("write")["value"] == "6869"
        line = server.expect("write ")
        assert "write {}".format(b"hi") in line and "stored={}".format(b"hi") in line, line
        assert int(line.split("events=")[1].split()[0]) & Bluetooth.CHAR_WRITE_EVENT, line
        central.event("subscribed")
        assert server.expect("subscribed") == "subscribed config=1 mtu=200"
        assert central.event("notification")["value"] == b"notified".hex()
        central.event("disconnected")
        server.expect("disconnected")
        assert central.finish() == 0
        assert not any("Traceback" in line for line in server.seen), "\n".join(server.seen)
    finally:
        server.kill()
        if central:
            central.kill()
