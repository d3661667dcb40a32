//! Advertising and scan-response data (Core Vol 3 Part C §11, Core Supplement Part A).
