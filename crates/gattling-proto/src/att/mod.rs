//! Attribute Protocol PDUs (Core Vol 3 Part F §3.4).
