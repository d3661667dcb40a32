//! SMP commands as plain data, their decoder and encoder (Core Vol 3 Part H §3.3, §3.5, §3.6).
//!
//! Every multi-octet field is carried little-endian, exactly as on the air; the arrays here are
//! in that order (see [`super::crypto`] for the byte-order conventions of the keys).

use alloc::vec::Vec;

/// SMP command codes (Core Vol 3 Part H §3.3, Table 3.3).
pub mod code {
    pub use super::super::code::{PAIRING_FAILED, PAIRING_REQUEST, PAIRING_RESPONSE, SECURITY_REQUEST};
    /// Pairing Confirm (§3.5.3).
    pub const PAIRING_CONFIRM: u8 = 0x03;
    /// Pairing Random (§3.5.4).
    pub const PAIRING_RANDOM: u8 = 0x04;
    /// Encryption Information (§3.6.2).
    pub const ENCRYPTION_INFORMATION: u8 = 0x06;
    /// Central Identification (§3.6.3).
    pub const CENTRAL_IDENTIFICATION: u8 = 0x07;
    /// Identity Information (§3.6.4).
    pub const IDENTITY_INFORMATION: u8 = 0x08;
    /// Identity Address Information (§3.6.5).
    pub const IDENTITY_ADDRESS_INFORMATION: u8 = 0x09;
    /// Signing Information (§3.6.6).
    pub const SIGNING_INFORMATION: u8 = 0x0A;
    /// Pairing Public Key (§3.5.6).
    pub const PAIRING_PUBLIC_KEY: u8 = 0x0C;
    /// Pairing DHKey Check (§3.5.7).
    pub const PAIRING_DHKEY_CHECK: u8 = 0x0D;
    /// Keypress Notification (§3.5.8).
    pub const KEYPRESS_NOTIFICATION: u8 = 0x0E;
}

/// IO Capability of a device (Core Vol 3 Part H §3.5.1, Table 3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoCapability {
    /// DisplayOnly (0x00).
    DisplayOnly,
    /// DisplayYesNo (0x01).
    DisplayYesNo,
    /// KeyboardOnly (0x02).
    KeyboardOnly,
    /// NoInputNoOutput (0x03).
    NoInputNoOutput,
    /// KeyboardDisplay (0x04).
    KeyboardDisplay,
}

impl IoCapability {
    /// The IO capability with value `v`, or `None` for a reserved value (Core Vol 3 Part H §3.5.1).
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x00 => Self::DisplayOnly,
            0x01 => Self::DisplayYesNo,
            0x02 => Self::KeyboardOnly,
            0x03 => Self::NoInputNoOutput,
            0x04 => Self::KeyboardDisplay,
            _ => return None,
        })
    }

    /// The octet carried in the Pairing Request/Response (Core Vol 3 Part H §3.5.1).
    pub fn to_u8(self) -> u8 {
        match self {
            Self::DisplayOnly => 0x00,
            Self::DisplayYesNo => 0x01,
            Self::KeyboardOnly => 0x02,
            Self::NoInputNoOutput => 0x03,
            Self::KeyboardDisplay => 0x04,
        }
    }
}

/// The AuthReq field: bonding flags, MITM, SC, Keypress and CT2 bits (Core Vol 3 Part H §3.5.1).
/// Reserved bits are kept as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AuthReq(pub u8);

impl AuthReq {
    /// Bonding_Flags value "Bonding" in bits 0-1 (Core Vol 3 Part H §3.5.1, Table 3.5).
    pub const BONDING: u8 = 0x01;
    /// MITM protection requested (Core Vol 3 Part H §3.5.1).
    pub const MITM: u8 = 0x04;
    /// LE Secure Connections supported (Core Vol 3 Part H §3.5.1).
    pub const SC: u8 = 0x08;
    /// Keypress notifications used in Passkey Entry (Core Vol 3 Part H §3.5.1).
    pub const KEYPRESS: u8 = 0x10;
    /// h7 supported for cross-transport key derivation (Core Vol 3 Part H §3.5.1).
    pub const CT2: u8 = 0x20;

    /// AuthReq built from its flags (Core Vol 3 Part H §3.5.1).
    pub fn new(bonding: bool, mitm: bool, sc: bool, keypress: bool, ct2: bool) -> Self {
        let bit = |on: bool, b: u8| if on { b } else { 0 };
        Self(
            bit(bonding, Self::BONDING)
                | bit(mitm, Self::MITM)
                | bit(sc, Self::SC)
                | bit(keypress, Self::KEYPRESS)
                | bit(ct2, Self::CT2),
        )
    }

    /// Whether the Bonding_Flags say "Bonding" (Core Vol 3 Part H §3.5.1, Table 3.5).
    pub fn bonding(self) -> bool {
        self.0 & 0x03 == Self::BONDING
    }

    /// Whether MITM protection is requested (Core Vol 3 Part H §3.5.1).
    pub fn mitm(self) -> bool {
        self.0 & Self::MITM != 0
    }

    /// Whether LE Secure Connections is supported (Core Vol 3 Part H §3.5.1).
    pub fn secure_connections(self) -> bool {
        self.0 & Self::SC != 0
    }

    /// Whether keypress notifications are requested (Core Vol 3 Part H §3.5.1).
    pub fn keypress(self) -> bool {
        self.0 & Self::KEYPRESS != 0
    }

    /// Whether the CT2 bit is set (Core Vol 3 Part H §3.5.1).
    pub fn ct2(self) -> bool {
        self.0 & Self::CT2 != 0
    }
}

/// Initiator/Responder Key Distribution bits: EncKey, IdKey, SignKey, LinkKey (Core Vol 3 Part H
/// §3.6.1). Reserved bits are kept as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct KeyDistribution(pub u8);

impl KeyDistribution {
    /// EncKey: LTK, EDIV and Rand (legacy pairing only) (Core Vol 3 Part H §3.6.1).
    pub const ENC_KEY: u8 = 0x01;
    /// IdKey: IRK and identity address (Core Vol 3 Part H §3.6.1).
    pub const ID_KEY: u8 = 0x02;
    /// SignKey: CSRK (Core Vol 3 Part H §3.6.1).
    pub const SIGN_KEY: u8 = 0x04;
    /// LinkKey: derive the BR/EDR link key (Core Vol 3 Part H §3.6.1).
    pub const LINK_KEY: u8 = 0x08;
    /// No key at all (Core Vol 3 Part H §3.6.1).
    pub const NONE: Self = Self(0);
    /// EncKey, IdKey and SignKey (Core Vol 3 Part H §3.6.1).
    pub const ALL_LE: Self = Self(Self::ENC_KEY | Self::ID_KEY | Self::SIGN_KEY);

    /// Whether EncKey is set (Core Vol 3 Part H §3.6.1).
    pub fn enc_key(self) -> bool {
        self.0 & Self::ENC_KEY != 0
    }

    /// Whether IdKey is set (Core Vol 3 Part H §3.6.1).
    pub fn id_key(self) -> bool {
        self.0 & Self::ID_KEY != 0
    }

    /// Whether SignKey is set (Core Vol 3 Part H §3.6.1).
    pub fn sign_key(self) -> bool {
        self.0 & Self::SIGN_KEY != 0
    }

    /// Whether LinkKey is set (Core Vol 3 Part H §3.6.1).
    pub fn link_key(self) -> bool {
        self.0 & Self::LINK_KEY != 0
    }

    /// The keys set in both `self` and `other` (Core Vol 3 Part H §3.6.1).
    pub fn intersect(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }
}

/// Pairing Failed reason codes (Core Vol 3 Part H §3.5.5, Table 3.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// 0x01: the user input of the passkey failed or was cancelled.
    PasskeyEntryFailed,
    /// 0x02: the OOB data is not available.
    OobNotAvailable,
    /// 0x03: the authentication requirements cannot be met.
    AuthenticationRequirements,
    /// 0x04: the confirm value does not match the calculated one.
    ConfirmValueFailed,
    /// 0x05: pairing is not supported by the device.
    PairingNotSupported,
    /// 0x06: the resultant encryption key size is too small.
    EncryptionKeySize,
    /// 0x07: the SMP command is not supported.
    CommandNotSupported,
    /// 0x08: pairing failed for another reason.
    UnspecifiedReason,
    /// 0x09: too little time has elapsed since the last pairing attempt.
    RepeatedAttempts,
    /// 0x0A: the command length or a parameter is invalid.
    InvalidParameters,
    /// 0x0B: the DHKey Check value does not match.
    DhKeyCheckFailed,
    /// 0x0C: the confirm values in numeric comparison do not match.
    NumericComparisonFailed,
    /// 0x0D: pairing over BR/EDR is in progress.
    BrEdrPairingInProgress,
    /// 0x0E: the BR/EDR link key or LE keys cannot be derived.
    CrossTransportKeyDerivationNotAllowed,
    /// 0x0F: the device chose not to accept a distributed key.
    KeyRejected,
    /// A reserved reason code, kept as received.
    Reserved(u8),
}

impl Reason {
    /// The reason with code `v` (Core Vol 3 Part H §3.5.5).
    pub fn from_u8(v: u8) -> Self {
        match v {
            0x01 => Self::PasskeyEntryFailed,
            0x02 => Self::OobNotAvailable,
            0x03 => Self::AuthenticationRequirements,
            0x04 => Self::ConfirmValueFailed,
            0x05 => Self::PairingNotSupported,
            0x06 => Self::EncryptionKeySize,
            0x07 => Self::CommandNotSupported,
            0x08 => Self::UnspecifiedReason,
            0x09 => Self::RepeatedAttempts,
            0x0A => Self::InvalidParameters,
            0x0B => Self::DhKeyCheckFailed,
            0x0C => Self::NumericComparisonFailed,
            0x0D => Self::BrEdrPairingInProgress,
            0x0E => Self::CrossTransportKeyDerivationNotAllowed,
            0x0F => Self::KeyRejected,
            other => Self::Reserved(other),
        }
    }

    /// The code octet of the Pairing Failed PDU (Core Vol 3 Part H §3.5.5).
    pub fn to_u8(self) -> u8 {
        match self {
            Self::PasskeyEntryFailed => 0x01,
            Self::OobNotAvailable => 0x02,
            Self::AuthenticationRequirements => 0x03,
            Self::ConfirmValueFailed => 0x04,
            Self::PairingNotSupported => 0x05,
            Self::EncryptionKeySize => 0x06,
            Self::CommandNotSupported => 0x07,
            Self::UnspecifiedReason => 0x08,
            Self::RepeatedAttempts => 0x09,
            Self::InvalidParameters => 0x0A,
            Self::DhKeyCheckFailed => 0x0B,
            Self::NumericComparisonFailed => 0x0C,
            Self::BrEdrPairingInProgress => 0x0D,
            Self::CrossTransportKeyDerivationNotAllowed => 0x0E,
            Self::KeyRejected => 0x0F,
            Self::Reserved(v) => v,
        }
    }

    /// The spec's name of the reason (Core Vol 3 Part H §3.5.5, Table 3.7).
    pub fn name(self) -> &'static str {
        match self {
            Self::PasskeyEntryFailed => "Passkey Entry Failed",
            Self::OobNotAvailable => "OOB Not Available",
            Self::AuthenticationRequirements => "Authentication Requirements",
            Self::ConfirmValueFailed => "Confirm Value Failed",
            Self::PairingNotSupported => "Pairing Not Supported",
            Self::EncryptionKeySize => "Encryption Key Size",
            Self::CommandNotSupported => "Command Not Supported",
            Self::UnspecifiedReason => "Unspecified Reason",
            Self::RepeatedAttempts => "Repeated Attempts",
            Self::InvalidParameters => "Invalid Parameters",
            Self::DhKeyCheckFailed => "DHKey Check Failed",
            Self::NumericComparisonFailed => "Numeric Comparison Failed",
            Self::BrEdrPairingInProgress => "BR/EDR pairing in progress",
            Self::CrossTransportKeyDerivationNotAllowed => "Cross-transport Key Derivation/Generation not allowed",
            Self::KeyRejected => "Key Rejected",
            Self::Reserved(_) => "Reserved",
        }
    }
}

/// Notification Type of the Keypress Notification (Core Vol 3 Part H §3.5.8, Table 3.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeypressType {
    /// 0: passkey entry started.
    EntryStarted,
    /// 1: passkey digit entered.
    DigitEntered,
    /// 2: passkey digit erased.
    DigitErased,
    /// 3: passkey cleared.
    Cleared,
    /// 4: passkey entry completed.
    EntryCompleted,
}

impl KeypressType {
    /// The notification type with value `v`, `None` if reserved (Core Vol 3 Part H §3.5.8).
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::EntryStarted,
            1 => Self::DigitEntered,
            2 => Self::DigitErased,
            3 => Self::Cleared,
            4 => Self::EntryCompleted,
            _ => return None,
        })
    }

    /// The octet carried in the Keypress Notification (Core Vol 3 Part H §3.5.8).
    pub fn to_u8(self) -> u8 {
        match self {
            Self::EntryStarted => 0,
            Self::DigitEntered => 1,
            Self::DigitErased => 2,
            Self::Cleared => 3,
            Self::EntryCompleted => 4,
        }
    }
}

/// The six parameters of a Pairing Request or Pairing Response (Core Vol 3 Part H §3.5.1, §3.5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PairingParams {
    /// IO Capability.
    pub io_capability: IoCapability,
    /// OOB data flag: OOB authentication data from the remote device is present.
    pub oob_data_present: bool,
    /// AuthReq.
    pub auth_req: AuthReq,
    /// Maximum Encryption Key Size in octets (7 to 16).
    pub max_key_size: u8,
    /// Initiator Key Distribution.
    pub initiator_keys: KeyDistribution,
    /// Responder Key Distribution.
    pub responder_keys: KeyDistribution,
}

impl PairingParams {
    /// The three octets IO Capability, OOB data flag, AuthReq as used by `f6` (Core Vol 3 Part H
    /// §2.2.8).
    pub fn io_cap_octets(&self) -> [u8; 3] {
        [self.io_capability.to_u8(), u8::from(self.oob_data_present), self.auth_req.0]
    }

    /// The 7-octet PDU with command `code`, as `c1` takes it (Core Vol 3 Part H §2.2.3).
    pub(super) fn encode_into(&self, code: u8) -> [u8; 7] {
        [
            code,
            self.io_capability.to_u8(),
            u8::from(self.oob_data_present),
            self.auth_req.0,
            self.max_key_size,
            self.initiator_keys.0,
            self.responder_keys.0,
        ]
    }

    fn decode(p: &[u8]) -> Result<Self, PduError> {
        let &[io, oob, auth, max, ikeys, rkeys] = p else { return Err(PduError::InvalidLength) };
        let io_capability = IoCapability::from_u8(io).ok_or(PduError::InvalidValue)?;
        let oob_data_present = match oob {
            0 => false,
            1 => true,
            _ => return Err(PduError::InvalidValue),
        };
        Ok(Self {
            io_capability,
            oob_data_present,
            auth_req: AuthReq(auth),
            max_key_size: max,
            initiator_keys: KeyDistribution(ikeys),
            responder_keys: KeyDistribution(rkeys),
        })
    }
}

/// One SMP command (Core Vol 3 Part H §3.5, §3.6).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SmpPdu {
    /// Pairing Request (§3.5.1).
    PairingRequest(PairingParams),
    /// Pairing Response (§3.5.2).
    PairingResponse(PairingParams),
    /// Pairing Confirm: Mconfirm/Sconfirm or Ca/Cb (§3.5.3).
    PairingConfirm([u8; 16]),
    /// Pairing Random: Mrand/Srand or Na/Nb (§3.5.4).
    PairingRandom([u8; 16]),
    /// Pairing Failed (§3.5.5).
    PairingFailed(Reason),
    /// Encryption Information: the LTK (§3.6.2).
    EncryptionInformation([u8; 16]),
    /// Central Identification: EDIV and Rand (§3.6.3).
    CentralIdentification {
        /// Encrypted Diversifier.
        ediv: u16,
        /// 64-bit Rand.
        rand: [u8; 8],
    },
    /// Identity Information: the IRK (§3.6.4).
    IdentityInformation([u8; 16]),
    /// Identity Address Information (§3.6.5).
    IdentityAddressInformation {
        /// 0x00 public, 0x01 static random.
        addr_type: u8,
        /// The address, little-endian.
        address: [u8; 6],
    },
    /// Signing Information: the CSRK (§3.6.6).
    SigningInformation([u8; 16]),
    /// Security Request (§3.6.7).
    SecurityRequest(AuthReq),
    /// Pairing Public Key: X || Y, each little-endian (§3.5.6).
    PairingPublicKey([u8; 64]),
    /// Pairing DHKey Check: Ea or Eb (§3.5.7).
    PairingDhKeyCheck([u8; 16]),
    /// Keypress Notification (§3.5.8).
    KeypressNotification(KeypressType),
}

/// Why an SMP PDU failed to decode (Core Vol 3 Part H §3.3, §3.5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    /// The PDU has no code octet.
    #[error("empty SMP PDU")]
    Empty,
    /// The code is reserved or unknown.
    #[error("unknown SMP command code {0:#04x}")]
    UnknownCode(u8),
    /// The length does not match the command.
    #[error("SMP PDU length does not match its command")]
    InvalidLength,
    /// A parameter holds a reserved value.
    #[error("SMP PDU parameter holds a reserved value")]
    InvalidValue,
}

impl PduError {
    /// The Pairing Failed reason a peer gets for this error (Core Vol 3 Part H §3.5.5):
    /// Command Not Supported for an unknown code, Invalid Parameters otherwise.
    pub fn reason(self) -> Reason {
        match self {
            Self::UnknownCode(_) => Reason::CommandNotSupported,
            Self::Empty | Self::InvalidLength | Self::InvalidValue => Reason::InvalidParameters,
        }
    }
}

fn array<const N: usize>(p: &[u8]) -> Result<[u8; N], PduError> {
    p.try_into().map_err(|_| PduError::InvalidLength)
}

impl SmpPdu {
    /// Decodes one SMP PDU (code octet first) (Core Vol 3 Part H §3.3).
    pub fn decode(pdu: &[u8]) -> Result<Self, PduError> {
        let (&code, p) = pdu.split_first().ok_or(PduError::Empty)?;
        Ok(match code {
            code::PAIRING_REQUEST => Self::PairingRequest(PairingParams::decode(p)?),
            code::PAIRING_RESPONSE => Self::PairingResponse(PairingParams::decode(p)?),
            code::PAIRING_CONFIRM => Self::PairingConfirm(array(p)?),
            code::PAIRING_RANDOM => Self::PairingRandom(array(p)?),
            code::PAIRING_FAILED => Self::PairingFailed(Reason::from_u8(array::<1>(p)?[0])),
            code::ENCRYPTION_INFORMATION => Self::EncryptionInformation(array(p)?),
            code::CENTRAL_IDENTIFICATION => {
                let [e0, e1, rand @ ..] = array::<10>(p)?;
                Self::CentralIdentification { ediv: u16::from_le_bytes([e0, e1]), rand }
            }
            code::IDENTITY_INFORMATION => Self::IdentityInformation(array(p)?),
            code::IDENTITY_ADDRESS_INFORMATION => {
                let [addr_type, address @ ..] = array::<7>(p)?;
                Self::IdentityAddressInformation { addr_type, address }
            }
            code::SIGNING_INFORMATION => Self::SigningInformation(array(p)?),
            code::SECURITY_REQUEST => Self::SecurityRequest(AuthReq(array::<1>(p)?[0])),
            code::PAIRING_PUBLIC_KEY => Self::PairingPublicKey(array(p)?),
            code::PAIRING_DHKEY_CHECK => Self::PairingDhKeyCheck(array(p)?),
            code::KEYPRESS_NOTIFICATION => {
                Self::KeypressNotification(KeypressType::from_u8(array::<1>(p)?[0]).ok_or(PduError::InvalidValue)?)
            }
            other => return Err(PduError::UnknownCode(other)),
        })
    }

    /// The command code (Core Vol 3 Part H §3.3).
    pub fn code(&self) -> u8 {
        match self {
            Self::PairingRequest(_) => code::PAIRING_REQUEST,
            Self::PairingResponse(_) => code::PAIRING_RESPONSE,
            Self::PairingConfirm(_) => code::PAIRING_CONFIRM,
            Self::PairingRandom(_) => code::PAIRING_RANDOM,
            Self::PairingFailed(_) => code::PAIRING_FAILED,
            Self::EncryptionInformation(_) => code::ENCRYPTION_INFORMATION,
            Self::CentralIdentification { .. } => code::CENTRAL_IDENTIFICATION,
            Self::IdentityInformation(_) => code::IDENTITY_INFORMATION,
            Self::IdentityAddressInformation { .. } => code::IDENTITY_ADDRESS_INFORMATION,
            Self::SigningInformation(_) => code::SIGNING_INFORMATION,
            Self::SecurityRequest(_) => code::SECURITY_REQUEST,
            Self::PairingPublicKey(_) => code::PAIRING_PUBLIC_KEY,
            Self::PairingDhKeyCheck(_) => code::PAIRING_DHKEY_CHECK,
            Self::KeypressNotification(_) => code::KEYPRESS_NOTIFICATION,
        }
    }

    /// Appends the encoded PDU, code octet first, to `out` (Core Vol 3 Part H §3.3).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::PairingRequest(p) => out.extend_from_slice(&p.encode_into(code::PAIRING_REQUEST)),
            Self::PairingResponse(p) => out.extend_from_slice(&p.encode_into(code::PAIRING_RESPONSE)),
            Self::PairingConfirm(v)
            | Self::PairingRandom(v)
            | Self::EncryptionInformation(v)
            | Self::IdentityInformation(v)
            | Self::SigningInformation(v)
            | Self::PairingDhKeyCheck(v) => {
                out.push(self.code());
                out.extend_from_slice(v);
            }
            Self::PairingFailed(r) => out.extend_from_slice(&[code::PAIRING_FAILED, r.to_u8()]),
            Self::CentralIdentification { ediv, rand } => {
                out.push(code::CENTRAL_IDENTIFICATION);
                out.extend_from_slice(&ediv.to_le_bytes());
                out.extend_from_slice(rand);
            }
            Self::IdentityAddressInformation { addr_type, address } => {
                out.extend_from_slice(&[code::IDENTITY_ADDRESS_INFORMATION, *addr_type]);
                out.extend_from_slice(address);
            }
            Self::SecurityRequest(a) => out.extend_from_slice(&[code::SECURITY_REQUEST, a.0]),
            Self::PairingPublicKey(k) => {
                out.push(code::PAIRING_PUBLIC_KEY);
                out.extend_from_slice(k);
            }
            Self::KeypressNotification(t) => out.extend_from_slice(&[code::KEYPRESS_NOTIFICATION, t.to_u8()]),
        }
    }

    /// The encoded PDU, code octet first (Core Vol 3 Part H §3.3).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(65);
        self.encode(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pairing_request_decodes() {
        let pdu = SmpPdu::decode(&[0x01, 0x04, 0x00, 0x2D, 0x10, 0x0F, 0x0F]).unwrap();
        let SmpPdu::PairingRequest(p) = pdu else { panic!("{pdu:?}") };
        assert_eq!(p.io_capability, IoCapability::KeyboardDisplay);
        assert!(p.auth_req.bonding() && p.auth_req.mitm() && p.auth_req.secure_connections() && p.auth_req.ct2());
        assert!(!p.auth_req.keypress());
        assert_eq!(p.max_key_size, 16);
        assert!(p.initiator_keys.link_key() && p.responder_keys.enc_key());
    }

    #[test]
    fn errors_map_to_reasons() {
        assert_eq!(SmpPdu::decode(&[]), Err(PduError::Empty));
        assert_eq!(SmpPdu::decode(&[0x0F]).unwrap_err().reason().to_u8(), 0x07);
        assert_eq!(SmpPdu::decode(&[0x03, 1, 2]).unwrap_err().reason().to_u8(), 0x0A);
        assert_eq!(SmpPdu::decode(&[0x01, 0x05, 0, 0, 16, 0, 0]).unwrap_err().reason(), Reason::InvalidParameters);
        assert_eq!(SmpPdu::decode(&[0x0E, 5]), Err(PduError::InvalidValue));
        assert_eq!(SmpPdu::decode(&[0x05, 0x0B]), Ok(SmpPdu::PairingFailed(Reason::DhKeyCheckFailed)));
        assert_eq!(SmpPdu::decode(&[0x05, 0x0B, 0]), Err(PduError::InvalidLength));
    }

    #[test]
    fn reason_codes_round_trip() {
        for v in 0..=255u8 {
            assert_eq!(Reason::from_u8(v).to_u8(), v);
        }
        assert_eq!(Reason::from_u8(0x0B).name(), "DHKey Check Failed");
    }

    fn arb_params() -> impl Strategy<Value = PairingParams> {
        (0u8..5, any::<bool>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(io, oob, a, m, i, r)| {
            PairingParams {
                io_capability: IoCapability::from_u8(io).unwrap(),
                oob_data_present: oob,
                auth_req: AuthReq(a),
                max_key_size: m,
                initiator_keys: KeyDistribution(i),
                responder_keys: KeyDistribution(r),
            }
        })
    }

    fn arb_pdu() -> impl Strategy<Value = SmpPdu> {
        prop_oneof![
            arb_params().prop_map(SmpPdu::PairingRequest),
            arb_params().prop_map(SmpPdu::PairingResponse),
            any::<[u8; 16]>().prop_map(SmpPdu::PairingConfirm),
            any::<[u8; 16]>().prop_map(SmpPdu::PairingRandom),
            any::<u8>().prop_map(|r| SmpPdu::PairingFailed(Reason::from_u8(r))),
            any::<[u8; 16]>().prop_map(SmpPdu::EncryptionInformation),
            (any::<u16>(), any::<[u8; 8]>()).prop_map(|(ediv, rand)| SmpPdu::CentralIdentification { ediv, rand }),
            any::<[u8; 16]>().prop_map(SmpPdu::IdentityInformation),
            (any::<u8>(), any::<[u8; 6]>())
                .prop_map(|(addr_type, address)| SmpPdu::IdentityAddressInformation { addr_type, address }),
            any::<[u8; 16]>().prop_map(SmpPdu::SigningInformation),
            any::<u8>().prop_map(|a| SmpPdu::SecurityRequest(AuthReq(a))),
            proptest::collection::vec(any::<u8>(), 64).prop_map(|v| SmpPdu::PairingPublicKey(v.try_into().unwrap())),
            any::<[u8; 16]>().prop_map(SmpPdu::PairingDhKeyCheck),
            (0u8..5).prop_map(|t| SmpPdu::KeypressNotification(KeypressType::from_u8(t).unwrap())),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(pdu in arb_pdu()) {
            let wire = pdu.to_vec();
            prop_assert_eq!(wire[0], pdu.code());
            prop_assert_eq!(SmpPdu::decode(&wire), Ok(pdu));
        }

        #[test]
        fn decode_never_panics_and_reencodes(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(pdu) = SmpPdu::decode(&bytes) {
                prop_assert_eq!(pdu.to_vec(), bytes);
            }
        }
    }
}
