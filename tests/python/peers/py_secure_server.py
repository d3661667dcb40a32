"""A Python GATT server in Pycom's secure mode: Bluetooth(pin=..., secure_connections=...).

Characteristic 0xFEE1 takes the secure mode's default permissions (encrypted read and write).
Prints "ready" once advertising; then reads commands on stdin, one a line: "set_pin N" and
"nvram_erase" (each answered with "done").
Usage: py_secure_server.py PIN SECURE_CONNECTIONS(0|1)
"""
import sys

from network import Bluetooth

pin = int(sys.argv[1])
sc = sys.argv[2] == "1"
bt = Bluetooth(pin=pin, secure_connections=sc)
bt.set_advertisement(name='PySecure')
srv = bt.service(0xFEE0)
ch = srv.characteristic(uuid=0xFEE1, value=b'secret', properties=Bluetooth.PROP_READ | Bluetooth.PROP_WRITE)
bt.advertise(True)
print("ready", flush=True)
for line in sys.stdin:
    words = line.split()
    if words[:1] == ["set_pin"]:
        bt.set_pin(int(words[1]))
    elif words[:1] == ["nvram_erase"]:
        bt.nvram_erase()
    print("done", flush=True)
