"""Fixtures for the Python module's tests: controllers (gattling's virtual controller server and
rootcanal), processes whose output is awaited line by line, and the interop virtualenv.

Interop peers (rootcanal, bumble) come from the project's .venv (scripts/interop-env.sh). A
missing peer FAILS the test; GATTLING_SKIP_INTEROP=1 is the only way to skip them.
"""

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SEEDS = HERE / "seeds"
PEERS = REPO / "tests" / "interop" / "peers"


def skip_interop():
    return os.environ.get("GATTLING_SKIP_INTEROP") == "1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A child process whose stdout lines are awaited (never slept on)."""

    def __init__(self, args, env=None, name=None, stdin=subprocess.PIPE):
        self.name = name or Path(str(args[1] if len(args) > 1 else args[0])).name
        self.lines = queue.Queue()
        self.seen = []
        self.p = subprocess.Popen(
            [str(a) for a in args], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env=env, start_new_session=True)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.p.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, predicate, within=20.0):
        """The next line for which predicate(line) holds (a str predicate: substring)."""
        if isinstance(predicate, str):
            text = predicate
            predicate = lambda line: text in line  # noqa: E731
        deadline = time.monotonic() + within
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0))
            except queue.Empty:
                raise AssertionError(f"{self.name}: nothing matching within {within} s; output so far:\n"
                                     + "\n".join(self.seen)) from None
            if line is None:
                raise AssertionError(f"{self.name} exited ({self.p.wait()}) first; output:\n" + "\n".join(self.seen))
            self.seen.append(line)
            if predicate(line):
                return line

    def event(self, name, within=20.0):
        """The next JSON event `name` of a bumble peer; an error event fails the test."""
        def match(line):
            try:
                ev = json.loads(line)
            except ValueError:
                return False
            if ev.get("event") == "error":
                raise AssertionError(f"{self.name} reported {ev}; output:\n" + "\n".join(self.seen))
            return ev.get("event") == name
        return json.loads(self.expect(match, within))

    def finish(self, within=20.0):
        try:
            if self.p.stdin:
                self.p.stdin.close()
            return self.p.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not exit; output:\n" + "\n".join(self.seen)) from None

    def kill(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait()


def cargo_target_dir():
    if os.environ.get("CARGO_TARGET_DIR"):
        return Path(os.environ["CARGO_TARGET_DIR"])
    out = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    return Path(json.loads(out)["target_directory"])


@pytest.fixture(scope="session")
def gattling_bin():
    """The `gattling` CLI (GATTLING_BIN, or built by cargo)."""
    if os.environ.get("GATTLING_BIN"):
        return Path(os.environ["GATTLING_BIN"])
    if shutil.which("cargo") is None:
        pytest.fail("cargo is needed to build the gattling CLI (or set GATTLING_BIN)")
    subprocess.run(["cargo", "build", "-q", "-p", "gattling-cli"], cwd=REPO, check=True)
    return cargo_target_dir() / "debug" / "gattling"


@pytest.fixture(scope="session")
def interop_python():
    """The interop virtualenv's python (rootcanal + bumble), installed on first use."""
    if skip_interop():
        pytest.skip("GATTLING_SKIP_INTEROP=1")
    r = subprocess.run([str(REPO / "scripts" / "interop-env.sh")], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail("the interop peers (rootcanal, bumble) are missing and could not be installed:\n" + r.stderr)
    return r.stdout.strip().splitlines()[-1]


def start_gattling_controller(gattling_bin):
    # Port 0: the system picks a free one and the banner names it (no race for a probed port).
    p = Proc([gattling_bin, "controller", "--listen", "127.0.0.1:0"], name="gattling controller",
             stdin=subprocess.DEVNULL)
    banner = p.expect("virtual controller listening on ", 30)
    listen = banner.split("listening on ", 1)[1].split()[0]
    return p, f"tcp-client:{listen}"


def start_rootcanal(interop_python):
    for _attempt in range(3):
        ports = [free_port() for _ in range(4)]
        p = Proc([interop_python, "-m", "rootcanal", "--hci_port", ports[0], "--test_port", ports[1],
                  "--link_port", ports[2], "--link_ble_port", ports[3]], name="rootcanal", stdin=subprocess.DEVNULL)
        # Readiness is rootcanal's own log line for the HCI port (a probe connection would take
        # the port's one HCI slot). A port taken meanwhile makes it exit: try other ports.
        try:
            p.expect(f"Listening on: {ports[0]} ", 15)
            return p, f"tcp-client:127.0.0.1:{ports[0]}"
        except AssertionError:
            p.kill()
    pytest.fail("rootcanal did not start listening")


@pytest.fixture(params=["gattling", "rootcanal"])
def controller(request, gattling_bin):
    """A controller server both processes reach as GATTLING_TRANSPORT: gattling's own or rootcanal."""
    if request.param == "gattling":
        p, transport = start_gattling_controller(gattling_bin)
    else:
        p, transport = start_rootcanal(request.getfixturevalue("interop_python"))
    yield transport
    p.kill()


@pytest.fixture
def gattling_controller(gattling_bin):
    p, transport = start_gattling_controller(gattling_bin)
    yield transport
    p.kill()


def python_env(transport):
    env = dict(os.environ)
    env["GATTLING_TRANSPORT"] = transport
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def seed_server():
    """Starts the seed's server example on a transport; returns a factory."""
    procs = []

    def start(transport):
        p = Proc([sys.executable, "-u", SEEDS / "run.py", SEEDS / "server_001.py", "--stay"],
                 env=python_env(transport), name="server_001.py")
        p.expect("== script done", 30)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.kill()
