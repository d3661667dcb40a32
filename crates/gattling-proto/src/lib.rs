//! Sans-IO Bluetooth LE host protocol core.
//!
//! Everything here takes bytes (and time) in and gives bytes and events out: no sockets, threads or
//! async runtime. The crate builds as `no_std` + `alloc` (disable the default `std` feature).
//!
//! Layers, bottom up, each in its own module (dependencies point downward only):
//! - [`hci`]: H4 framing, HCI commands, events and ACL data (Core Vol 4 Part A and Part E).
//! - [`l2cap`]: basic-mode L2CAP on the LE fixed channels, fragmentation and reassembly (Core Vol 3 Part A).
//! - [`att`]: every ATT PDU (Core Vol 3 Part F §3.4).
//! - [`smp`]: the Security Manager: SMP commands ([`smp::pdu`]), the per-link pairing state
//!   machine in both roles ([`smp::pairing`]), the cryptographic toolbox and P-256 keys
//!   ([`smp::crypto`]) (Core Vol 3 Part H).
//! - [`gap`]: advertising data (Core Supplement Part A) and addresses.
//! - [`gatt`]: the attribute database and the GATT server (Core Vol 3 Part G).
//! - [`host`]: the host state machine that ties them together over one controller.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod att;
pub mod codec;
pub mod gap;
pub mod gatt;
pub mod hci;
pub mod host;
pub mod l2cap;
pub mod smp;
pub mod uuid;

pub use codec::DecodeError;
pub use uuid::Uuid;
