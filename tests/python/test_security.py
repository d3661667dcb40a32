"""Pycom's secure mode on gattling: Bluetooth(pin=..., secure_connections=...) makes new
characteristics need encryption, pairs as DisplayOnly with bonding (MITM with Secure
Connections), keeps bonds, and set_pin() with a new pin / nvram_erase() remove them. The peer is
the gattling CLI (`gatt --pair`, `--bonds`) on gattling's controller server."""

import subprocess
import sys

from conftest import HERE, Proc, python_env

SERVER = HERE / "peers" / "py_secure_server.py"
CLI_ADDRESS = "C0:5E:C0:00:00:42"


def secure_server(transport, pin, sc):
    p = Proc([sys.executable, "-u", SERVER, str(pin), "1" if sc else "0"], env=python_env(transport),
             name="py_secure_server.py")
    p.expect("ready", 30)
    return p


def gatt(gattling_bin, transport, *args):
    return subprocess.run([str(gattling_bin), "--transport", transport, "--random-address", CLI_ADDRESS,
                           "gatt", "--name", "PySecure", *args],
                          capture_output=True, text=True, timeout=60)


def command(server, line):
    server.p.stdin.write(line + "\n")
    server.p.stdin.flush()
    server.expect("done", 20)


def test_secure_mode_characteristics_need_encryption_and_bonds_are_kept_until_the_pin_changes(
        gattling_bin, gattling_controller, tmp_path):
    server = secure_server(gattling_controller, 123456, sc=False)
    try:
        out = gatt(gattling_bin, gattling_controller, "read", "FEE1")
        assert out.returncode == 1 and "Insufficient Authentication" in out.stderr, out.stderr  # no key yet (Core Vol 3 Part C §10.3.1)

        bonds = str(tmp_path / "bonds")
        # Without Secure Connections the firmware asks for bonding only (no MITM): Just Works.
        out = gatt(gattling_bin, gattling_controller, "--pair", "--bonds", bonds, "read", "FEE1")
        assert out.returncode == 0, out.stderr
        assert out.stdout.endswith(": " + b"secret".hex() + "\n"), out.stdout
        assert "paired: Encrypted, legacy, key 16 octets, bonded" in out.stderr, out.stderr

        # The server kept the bond: the next connection encrypts with it.
        out = gatt(gattling_bin, gattling_controller, "--pair", "--bonds", bonds, "read", "FEE1")
        assert out.returncode == 0, out.stderr
        assert "encrypted with the bond" in out.stderr, out.stderr

        # The same pin keeps the bonds; a new pin removes them: the CLI pairs again.
        command(server, "set_pin 123456")
        out = gatt(gattling_bin, gattling_controller, "--pair", "--bonds", bonds, "read", "FEE1")
        assert "encrypted with the bond" in out.stderr, out.stderr
        command(server, "set_pin 654321")
        out = gatt(gattling_bin, gattling_controller, "--pair", "--bonds", bonds, "read", "FEE1")
        assert out.returncode == 0, out.stderr
        assert "paired:" in out.stderr, out.stderr

        # nvram_erase() removes them too.
        command(server, "nvram_erase")
        out = gatt(gattling_bin, gattling_controller, "--pair", "--bonds", bonds, "read", "FEE1")
        assert out.returncode == 0 and "paired:" in out.stderr, out.stderr
    finally:
        server.kill()


def test_secure_connections_secure_mode_demands_mitm_protection(gattling_bin, gattling_controller):
    server = secure_server(gattling_controller, 123456, sc=True)
    try:
        # A peer without IO can only do Just Works, which the server refuses (SC_MITM_BOND).
        out = gatt(gattling_bin, gattling_controller, "--pair", "read", "FEE1")
        assert out.returncode == 1, out.stderr
        assert "pairing failed" in out.stderr and "Authentication Requirements" in out.stderr, out.stderr
        # A peer with a keyboard types the pin: Passkey Entry, authenticated.
        out = gatt(gattling_bin, gattling_controller, "--pair", "--io", "keyboard-only", "--passkey", "123456",
                   "read", "FEE1")
        assert out.returncode == 0, out.stderr
        assert "paired: SecureConnections" in out.stderr, out.stderr
        # A wrong pin fails the confirm check.
        out = gatt(gattling_bin, gattling_controller, "--pair", "--io", "keyboard-only", "--passkey", "111111",
                   "read", "FEE1")
        assert out.returncode == 1 and "Confirm Value Failed" in out.stderr, out.stderr
    finally:
        server.kill()
