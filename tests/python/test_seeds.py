"""The seed's server example (001) and client loop (003), as two processes on one controller
(gattling's controller server and rootcanal), each checking what the other sees."""

import subprocess
import sys

from conftest import SEEDS, python_env

CHAR1 = b'ab34567890123456'
# (char 1, char 2) as the client reads them on its 1st, 2nd and 3rd run: char 1's handler
# returns 'ABC DEF' from its third read on; char 2's returns its counter from 0xF2 on.
READS = [(b'\x05', b'\x124'), (b'\x05', b'\xf2'), (b'ABC DEF', b'\xf3')]


def run_client(transport):
    r = subprocess.run([sys.executable, "-u", str(SEEDS / "run.py"), str(SEEDS / "client_003.py")],
                       env=python_env(transport), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_seed_server_and_client_loop(controller, seed_server):
    server = seed_server(controller)
    for run, (char1, char2) in enumerate(READS):
        out = run_client(controller)
        assert "Error while connecting" not in out, out
        # What the client sees of the server.
        assert "Reading chars from service = 1800" in out, out
        assert "Reading chars from service = {}".format(b'1234567890123456') in out, out
        assert "Reading chars from service = 4d2" in out, out
        assert "char 10752 value = {}".format(b'LoPy') in out, out
        assert "char {} value = {}".format(CHAR1, char1) in out, out
        assert "char 4567 value = {}".format(char2) in out, out
        # What the server saw of the client.
        server.expect("Client connected")
        if run < 2:
            server.expect("Read request on char 1")
        server.expect("Client disconnected")
    assert not any("Traceback" in line for line in server.seen), "\n".join(server.seen)
