"""Pycom's MicroPython ``network.Bluetooth`` API on CPython, backed by gattling.

Scripts written for Pycom boards run on a PC with the import line as the only change, or none
(``from network import Bluetooth`` works: the package installs a ``network`` alias).

Runtime model
-------------
* One Bluetooth LE stack per process: every ``Bluetooth()`` instance drives the same one (the
  firmware's singleton). The constructor runs ``init`` when keyword arguments are given or the
  stack is not running yet.
* The controller: ``Bluetooth(transport="tcp-client:127.0.0.1:6402")``, else the
  ``GATTLING_TRANSPORT`` environment variable, else the in-process virtual radio (``virtual``).
* The stack runs on a background tokio runtime. Blocking calls (``connect``, ``services``,
  ``read``, ``write``, ...) release the GIL and can be interrupted with Ctrl-C
  (``KeyboardInterrupt``; a pending connection attempt is then cancelled).
* Handlers run on one dedicated callback thread, in the order the events happened. A handler
  that raises has its traceback printed; the stack keeps running. Handlers may call back into
  the API (``chr.events()``, ``chr.value()``, ``bt.events()``).
* Handlers take one argument (``handler(arg)``, the seed example's form) or two
  (``handler(arg, (event, value))``, later firmware's form); the choice is made once, at
  registration, from the handler's signature.
* A read handler (``CHAR_READ_EVENT``) answers the read: a non-None return value (int, str or
  bytes) is what the peer reads, and the stored value is unchanged; ``None`` sends the stored
  value.

Errors: bad arguments raise ``ValueError`` (e.g. ``start_scan(0)``: "invalid scan time", a UUID
that is not an int or exactly 16 bytes, an out-of-range pin or mtu), ``TypeError`` for a value
of the wrong type, ``OSError`` for stack failures ("operation already in progress",
"connection refused", "connection already closed", "incorrect service UUID length"), and
``TimeoutError`` ("timed out", also ``Bluetooth.timeout``) for a connection attempt that ran
out of time. None of them crash the interpreter.

Deviations from the Pycom firmware (1.20.2), where it contradicts its documentation or where
this stack differs
-----------------------------------------------------------------------------------------------
1. ``connect('112233eeddff')`` parses the 12 hex digits as the documentation says (the firmware
   takes the string's first 6 ASCII bytes); 6 raw bytes (``adv.mac``) also work, anything else
   raises ValueError. The address type defaults to the one last seen in a scan for that MAC.
2. ``get_adv().data`` is the advertising (or scan-response) payload as received, not
   zero-padded to 62 bytes; scan responses are separate entries with ``adv_type == SCAN_RSP``
   (4), where the firmware masks the type with ``& 3`` and reports 0.
3. ``GATTSCharacteristic.value(int)`` encodes the int like the initial value: big-endian in 1,
   2 or 4 bytes (the firmware's setter is little-endian and never 4 bytes wide). Values may be
   up to 512 bytes (the firmware truncates to 197); longer raises ValueError.
4. ``value(v)`` notifies or indicates only a client that enabled it in its CCCD (the firmware
   sends regardless of the CCCD); a write of 0x0001 to the CCCD does not notify the current value.
5. ``set_advertisement(service_uuid=int)`` encodes a 16-bit or 32-bit UUID list (the firmware
   reads stack garbage); the advertisement carries no TX power or connection-interval AD
   structures. Data that does not fit 31 bytes raises ValueError.
6. ``set_advertisement_raw`` accepts up to 31 bytes (the firmware truncates 31 to 30) and
   raises ValueError above.
7. ``set_advertisement_params``: validated and applied (interval range, PDU type, channel map,
   filter policy), except ``own_addr_type``: the own address is the controller's (or the
   host's static random one). The directed types (1 and 4) raise ValueError.
8. Security: ``pin`` (or ``set_pin()``) turns on secure mode as the firmware does: pairing as
   DisplayOnly with bonding and 16-octet keys, MITM protection when ``secure_connections`` is
   True (SC_MITM_BOND), bonding only when False (BOND); characteristics created afterwards
   default to encrypted read and write (0x22). An encrypted or MITM permission alone allows
   the access on such a link, as in ESP-IDF. Bonds live for the process (the firmware's NVS);
   ``set_pin()`` with a different pin and ``nvram_erase()`` remove them. Differences: the
   passkey shown is chosen at random by the stack and printed on stderr (the stack cannot use
   the pin as a static passkey yet), and ``set_pin()``'s pairing parameters apply from the next
   ``init()``. ``privacy`` is accepted and ignored. ``antenna``, ``modem_sleep`` and
   ``tx_power`` are recorded and returned, not applied.
9. ``mtu`` outside 23..200 raises ValueError (the firmware clamps above 200).
10. ``characteristic()`` beyond ``nbr_chars`` raises OSError (the firmware adds a broken one).
    A CCCD is added only to characteristics with NOTIFY or INDICATE.
11. ``GATTCService.instance()`` and ``GATTCCharacteristic.instance()`` return 0;
    ``GATTCService.isprimary()`` is True for discovered services.
12. ``GATTCCharacteristic.read()`` returns the whole value (Read Blob for long values) rather
    than truncating to 197 bytes.
13. More than one central may connect to the GATT server; ``CLIENT_CONNECTED`` and
    ``gatts_mtu()``/``disconnect_client()`` follow the most recent one. ``gatts_mtu()`` returns at
    once (no 1 s wait for the MTU exchange).
14. ``callback()`` with a trigger bit that does not belong to the object raises ValueError.
"""

from ._gattling import (
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
]
