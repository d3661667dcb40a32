"""gattling for Python: Pycom's ``network.Bluetooth`` API on CPython, backed by the gattling
Bluetooth LE host stack (Rust, through PyO3).

    from gattling.network import Bluetooth   # or: from network import Bluetooth

The controller comes from ``Bluetooth(transport=...)``, else ``$GATTLING_TRANSPORT``
(``tcp-client:HOST:PORT``, ``serial:DEVICE``, ``hci-socket:N``, ``virtual[:NAME]``), else the
in-process virtual radio. See :mod:`gattling.network` for the behaviour and every deviation
from the Pycom firmware.
"""

from . import network
from .network import (
    Bluetooth,
    GATTCCharacteristic,
    GATTCConnection,
    GATTCService,
    GATTSCharacteristic,
    GATTSService,
)

__all__ = [
    "Bluetooth",
    "GATTCCharacteristic",
    "GATTCConnection",
    "GATTCService",
    "GATTSCharacteristic",
    "GATTSService",
    "network",
]
