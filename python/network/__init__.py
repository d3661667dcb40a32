"""Compatibility alias so Pycom scripts run unchanged: ``from network import Bluetooth``."""

from gattling.network import *  # noqa: F401,F403
from gattling.network import __all__  # noqa: F401
