//! Security Manager Protocol (Core Vol 3 Part H).
