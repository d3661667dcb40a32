//! Host Controller Interface (Core Vol 4 Part E) and its UART (H4) framing (Core Vol 4 Part A).
