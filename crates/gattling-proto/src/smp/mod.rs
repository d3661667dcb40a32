//! Security Manager Protocol on the LE SMP channel (Core Vol 3 Part H §3).
//!
//! - [`pdu`]: every SMP command as plain data, decoded and encoded (§3.5, §3.6).
//! - [`pairing`]: the per-link pairing state machine, both roles, legacy and Secure Connections
//!   (§2.3, §2.4).
//! - [`crypto`]: the cryptographic toolbox and P-256 keys (§2.2).
//!
//! The core [`Host`](crate::host::Host) hands SMP PDUs to the layer above when it runs a
//! Security Manager ([`HostConfig::security_manager`](crate::host::HostConfig)); without one it
//! answers every pairing attempt with Pairing Failed "Pairing Not Supported" through
//! [`reply_without_pairing`].

/// SMP command codes (Core Vol 3 Part H §3.3).
pub mod code {
    /// Pairing Request.
    pub const PAIRING_REQUEST: u8 = 0x01;
    /// Pairing Response.
    pub const PAIRING_RESPONSE: u8 = 0x02;
    /// Pairing Failed.
    pub const PAIRING_FAILED: u8 = 0x05;
    /// Security Request.
    pub const SECURITY_REQUEST: u8 = 0x0B;
}

/// Pairing Failed reason codes (Core Vol 3 Part H §3.5.5).
pub mod reason {
    /// Pairing Not Supported.
    pub const PAIRING_NOT_SUPPORTED: u8 = 0x05;
    /// Command Not Supported.
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x07;
}

/// The reply a host without pairing support sends to an SMP PDU, if any (Core Vol 3 Part H §3.5.5):
/// Pairing Not Supported for Pairing Request and Security Request, Command Not Supported for
/// other unknown commands, nothing for Pairing Failed or an empty PDU.
pub fn reply_without_pairing(pdu: &[u8]) -> Option<[u8; 2]> {
    match pdu.first().copied()? {
        code::PAIRING_REQUEST | code::SECURITY_REQUEST => Some([code::PAIRING_FAILED, reason::PAIRING_NOT_SUPPORTED]),
        code::PAIRING_FAILED => None,
        _ => Some([code::PAIRING_FAILED, reason::COMMAND_NOT_SUPPORTED]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairing_request_is_refused() {
        let req = [0x01, 0x03, 0x00, 0x01, 0x10, 0x07, 0x07];
        assert_eq!(reply_without_pairing(&req), Some([0x05, 0x05]));
        assert_eq!(reply_without_pairing(&[0x05, 0x05]), None);
        assert_eq!(reply_without_pairing(&[]), None);
        assert_eq!(reply_without_pairing(&[0x33]), Some([0x05, 0x07]));
    }
}

pub mod crypto;
pub mod pairing;
pub mod pdu;
