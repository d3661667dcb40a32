//! L2CAP basic mode on LE fixed channels (Core Vol 3 Part A).
