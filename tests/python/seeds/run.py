"""Runs a Pycom script as the board would: the script, then (for a server) stay alive like the
board's REPL until stdin closes. Usage: run.py SCRIPT [--stay]."""
import runpy
import sys

script = sys.argv[1]
stay = "--stay" in sys.argv[2:]
runpy.run_path(script, run_name="__main__")
print("== script done", flush=True)
if stay:
    sys.stdin.read()
