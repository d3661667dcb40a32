//! ATT error codes carried in an Error Response (Core Vol 3 Part F §3.4.1.1, Table 3.4).

use core::fmt;

/// An ATT error code; any byte is kept as received (Core Vol 3 Part F §3.4.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode(pub u8);

impl ErrorCode {
    /// 0x01 Invalid Handle (Core Vol 3 Part F §3.4.1.1).
    pub const INVALID_HANDLE: Self = Self(0x01);
    /// 0x02 Read Not Permitted (Core Vol 3 Part F §3.4.1.1).
    pub const READ_NOT_PERMITTED: Self = Self(0x02);
    /// 0x03 Write Not Permitted (Core Vol 3 Part F §3.4.1.1).
    pub const WRITE_NOT_PERMITTED: Self = Self(0x03);
    /// 0x04 Invalid PDU (Core Vol 3 Part F §3.4.1.1).
    pub const INVALID_PDU: Self = Self(0x04);
    /// 0x05 Insufficient Authentication (Core Vol 3 Part F §3.4.1.1).
    pub const INSUFFICIENT_AUTHENTICATION: Self = Self(0x05);
    /// 0x06 Request Not Supported (Core Vol 3 Part F §3.4.1.1).
    pub const REQUEST_NOT_SUPPORTED: Self = Self(0x06);
    /// 0x07 Invalid Offset (Core Vol 3 Part F §3.4.1.1).
    pub const INVALID_OFFSET: Self = Self(0x07);
    /// 0x08 Insufficient Authorization (Core Vol 3 Part F §3.4.1.1).
    pub const INSUFFICIENT_AUTHORIZATION: Self = Self(0x08);
    /// 0x09 Prepare Queue Full (Core Vol 3 Part F §3.4.1.1).
    pub const PREPARE_QUEUE_FULL: Self = Self(0x09);
    /// 0x0A Attribute Not Found (Core Vol 3 Part F §3.4.1.1).
    pub const ATTRIBUTE_NOT_FOUND: Self = Self(0x0A);
    /// 0x0B Attribute Not Long (Core Vol 3 Part F §3.4.1.1).
    pub const ATTRIBUTE_NOT_LONG: Self = Self(0x0B);
    /// 0x0C Insufficient Encryption Key Size, i.e. the key is too short (Core Vol 3 Part F §3.4.1.1).
    pub const INSUFFICIENT_ENCRYPTION_KEY_SIZE: Self = Self(0x0C);
    /// 0x0D Invalid Attribute Value Length (Core Vol 3 Part F §3.4.1.1).
    pub const INVALID_ATTRIBUTE_VALUE_LENGTH: Self = Self(0x0D);
    /// 0x0E Unlikely Error (Core Vol 3 Part F §3.4.1.1).
    pub const UNLIKELY_ERROR: Self = Self(0x0E);
    /// 0x0F Insufficient Encryption (Core Vol 3 Part F §3.4.1.1).
    pub const INSUFFICIENT_ENCRYPTION: Self = Self(0x0F);
    /// 0x10 Unsupported Group Type (Core Vol 3 Part F §3.4.1.1).
    pub const UNSUPPORTED_GROUP_TYPE: Self = Self(0x10);
    /// 0x11 Insufficient Resources (Core Vol 3 Part F §3.4.1.1).
    pub const INSUFFICIENT_RESOURCES: Self = Self(0x11);
    /// 0x12 Database Out Of Sync (Core Vol 3 Part F §3.4.1.1).
    pub const DATABASE_OUT_OF_SYNC: Self = Self(0x12);
    /// 0x13 Value Not Allowed (Core Vol 3 Part F §3.4.1.1).
    pub const VALUE_NOT_ALLOWED: Self = Self(0x13);
    /// 0xFC Write Request Rejected (Core Specification Supplement Part B).
    pub const WRITE_REQUEST_REJECTED: Self = Self(0xFC);
    /// 0xFD Client Characteristic Configuration Descriptor Improperly Configured (Core Specification Supplement Part B).
    pub const CCCD_IMPROPERLY_CONFIGURED: Self = Self(0xFD);
    /// 0xFE Procedure Already in Progress (Core Specification Supplement Part B).
    pub const PROCEDURE_ALREADY_IN_PROGRESS: Self = Self(0xFE);
    /// 0xFF Out of Range (Core Specification Supplement Part B).
    pub const OUT_OF_RANGE: Self = Self(0xFF);

    /// Whether this is an application error, 0x80-0x9F (Core Vol 3 Part F §3.4.1.1).
    pub const fn is_application(self) -> bool {
        matches!(self.0, 0x80..=0x9F)
    }

    /// Whether this is a common profile and service error, 0xE0-0xFF (Core Vol 3 Part F §3.4.1.1).
    pub const fn is_common_profile(self) -> bool {
        self.0 >= 0xE0
    }

    /// The spec name, e.g. "Invalid Handle"; ranges get their range name (Core Vol 3 Part F §3.4.1.1).
    pub const fn name(self) -> &'static str {
        match self.0 {
            0x01 => "Invalid Handle",
            0x02 => "Read Not Permitted",
            0x03 => "Write Not Permitted",
            0x04 => "Invalid PDU",
            0x05 => "Insufficient Authentication",
            0x06 => "Request Not Supported",
            0x07 => "Invalid Offset",
            0x08 => "Insufficient Authorization",
            0x09 => "Prepare Queue Full",
            0x0A => "Attribute Not Found",
            0x0B => "Attribute Not Long",
            0x0C => "Insufficient Encryption Key Size",
            0x0D => "Invalid Attribute Value Length",
            0x0E => "Unlikely Error",
            0x0F => "Insufficient Encryption",
            0x10 => "Unsupported Group Type",
            0x11 => "Insufficient Resources",
            0x12 => "Database Out Of Sync",
            0x13 => "Value Not Allowed",
            0x80..=0x9F => "Application Error",
            0xFC => "Write Request Rejected",
            0xFD => "Client Characteristic Configuration Descriptor Improperly Configured",
            0xFE => "Procedure Already in Progress",
            0xFF => "Out of Range",
            0xE0..=0xFB => "Common Profile and Service Error",
            _ => "Reserved",
        }
    }
}

impl From<u8> for ErrorCode {
    fn from(v: u8) -> Self {
        Self(v)
    }
}

impl From<ErrorCode> for u8 {
    fn from(e: ErrorCode) -> Self {
        e.0
    }
}

impl fmt::Display for ErrorCode {
    /// The spec name followed by the code, e.g. "Invalid Handle (0x01)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#04x})", self.name(), self.0)
    }
}
