//! A virtual Bluetooth LE controller: the controller side of HCI for any number of hosts sharing
//! one simulated radio.
//!
//! [`Radio`] is sans-IO like the host core: each attached controller takes the H4 bytes its host
//! writes ([`Radio::receive`]) and produces the H4 bytes its host reads ([`Radio::take_output`]);
//! time only moves when the caller says so ([`Radio::advance`]), so a runtime can drive it from a
//! real clock or a paused test clock. Behaviour follows the Core Specification's HCI
//! (Vol 4 Part E) and link layer (Vol 6) at the level a host can observe, without RF timing:
//! legacy advertising, passive and active scanning, connection creation and cancel, ACL routing
//! with per-controller buffer credits, disconnection, connection update, data length and PHY
//! updates, LE Rand, LE Encrypt (AES-128) and LE encryption start with the LTK exchange.
//!
//! Encryption (Core Vol 4 Part E §7.8.24-§7.8.26, Vol 6 Part B §5.1.3): the central's LE Enable
//! Encryption gives the peripheral's host an LE Long Term Key Request; a reply with the same key
//! encrypts the link (Encryption Change v1, key size 16, on both sides; Encryption Key Refresh
//! Complete when it was already encrypted), a different key drops the link with 0x3D (MIC
//! failure), a negative reply gives the central Encryption Change with 0x06. Where this differs
//! from rootcanal 1.10 (which does not compare keys, reports 0x05 for a negative reply and lets a
//! peripheral start encryption), the spec's behaviour is kept. No packet is actually encrypted.
//! The resolving list commands are accepted, validated and stored, but addresses are neither
//! generated nor resolved with it (a stub for hosts that configure privacy).
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod commands;
mod radio;
mod slots;

pub use radio::{ControllerId, Fault, Radio};

use gattling_proto::gap::BdAddr;

/// Per-controller settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControllerConfig {
    /// LE ACL data packet length (LE Read Buffer Size).
    pub acl_len: u16,
    /// Number of LE ACL data packets the controller buffers.
    pub acl_num: u8,
    /// Public address; `None` assigns a unique one.
    pub public_address: Option<BdAddr>,
}

impl Default for ControllerConfig {
    /// 251-byte ACL payloads, 8 buffers.
    fn default() -> Self {
        Self { acl_len: 251, acl_num: 8, public_address: None }
    }
}

impl ControllerConfig {
    /// Buffers like rootcanal 1.10: 27-byte ACL payloads, 20 buffers.
    pub fn rootcanal_like() -> Self {
        Self { acl_len: 27, acl_num: 20, public_address: None }
    }
}
