//! ATT opcodes and their classification (Core Vol 3 Part F §3.3.1 and §3.4.8).
//!
//! Bits 0-5 of the opcode are the method, bit 6 is the Command flag and bit 7 the Authentication
//! Signature flag.

/// Error Response (Core Vol 3 Part F §3.4.1.1).
pub const ERROR_RSP: u8 = 0x01;
/// Exchange MTU Request (Core Vol 3 Part F §3.4.2.1).
pub const EXCHANGE_MTU_REQ: u8 = 0x02;
/// Exchange MTU Response (Core Vol 3 Part F §3.4.2.2).
pub const EXCHANGE_MTU_RSP: u8 = 0x03;
/// Find Information Request (Core Vol 3 Part F §3.4.3.1).
pub const FIND_INFORMATION_REQ: u8 = 0x04;
/// Find Information Response (Core Vol 3 Part F §3.4.3.2).
pub const FIND_INFORMATION_RSP: u8 = 0x05;
/// Find By Type Value Request (Core Vol 3 Part F §3.4.3.3).
pub const FIND_BY_TYPE_VALUE_REQ: u8 = 0x06;
/// Find By Type Value Response (Core Vol 3 Part F §3.4.3.4).
pub const FIND_BY_TYPE_VALUE_RSP: u8 = 0x07;
/// Read By Type Request (Core Vol 3 Part F §3.4.4.1).
pub const READ_BY_TYPE_REQ: u8 = 0x08;
/// Read By Type Response (Core Vol 3 Part F §3.4.4.2).
pub const READ_BY_TYPE_RSP: u8 = 0x09;
/// Read Request (Core Vol 3 Part F §3.4.4.3).
pub const READ_REQ: u8 = 0x0A;
/// Read Response (Core Vol 3 Part F §3.4.4.4).
pub const READ_RSP: u8 = 0x0B;
/// Read Blob Request (Core Vol 3 Part F §3.4.4.5).
pub const READ_BLOB_REQ: u8 = 0x0C;
/// Read Blob Response (Core Vol 3 Part F §3.4.4.6).
pub const READ_BLOB_RSP: u8 = 0x0D;
/// Read Multiple Request (Core Vol 3 Part F §3.4.4.7).
pub const READ_MULTIPLE_REQ: u8 = 0x0E;
/// Read Multiple Response (Core Vol 3 Part F §3.4.4.8).
pub const READ_MULTIPLE_RSP: u8 = 0x0F;
/// Read By Group Type Request (Core Vol 3 Part F §3.4.4.9).
pub const READ_BY_GROUP_TYPE_REQ: u8 = 0x10;
/// Read By Group Type Response (Core Vol 3 Part F §3.4.4.10).
pub const READ_BY_GROUP_TYPE_RSP: u8 = 0x11;
/// Write Request (Core Vol 3 Part F §3.4.5.1).
pub const WRITE_REQ: u8 = 0x12;
/// Write Response (Core Vol 3 Part F §3.4.5.2).
pub const WRITE_RSP: u8 = 0x13;
/// Prepare Write Request (Core Vol 3 Part F §3.4.6.1).
pub const PREPARE_WRITE_REQ: u8 = 0x16;
/// Prepare Write Response (Core Vol 3 Part F §3.4.6.2).
pub const PREPARE_WRITE_RSP: u8 = 0x17;
/// Execute Write Request (Core Vol 3 Part F §3.4.6.3).
pub const EXECUTE_WRITE_REQ: u8 = 0x18;
/// Execute Write Response (Core Vol 3 Part F §3.4.6.4).
pub const EXECUTE_WRITE_RSP: u8 = 0x19;
/// Handle Value Notification (Core Vol 3 Part F §3.4.7.1).
pub const HANDLE_VALUE_NTF: u8 = 0x1B;
/// Handle Value Indication (Core Vol 3 Part F §3.4.7.2).
pub const HANDLE_VALUE_IND: u8 = 0x1D;
/// Handle Value Confirmation (Core Vol 3 Part F §3.4.7.3).
pub const HANDLE_VALUE_CFM: u8 = 0x1E;
/// Read Multiple Variable Request, Core 5.2+ (Core Vol 3 Part F §3.4.4.11).
pub const READ_MULTIPLE_VARIABLE_REQ: u8 = 0x20;
/// Read Multiple Variable Response, Core 5.2+ (Core Vol 3 Part F §3.4.4.12).
pub const READ_MULTIPLE_VARIABLE_RSP: u8 = 0x21;
/// Multiple Handle Value Notification, Core 5.2+ (Core Vol 3 Part F §3.4.7.4).
pub const MULTIPLE_HANDLE_VALUE_NTF: u8 = 0x23;
/// Write Command (Core Vol 3 Part F §3.4.5.3).
pub const WRITE_CMD: u8 = 0x52;
/// Signed Write Command (Core Vol 3 Part F §3.4.5.4).
pub const SIGNED_WRITE_CMD: u8 = 0xD2;

/// Command Flag, opcode bit 6 (Core Vol 3 Part F §3.3.1).
pub const COMMAND_FLAG: u8 = 0x40;
/// Authentication Signature Flag, opcode bit 7 (Core Vol 3 Part F §3.3.1).
pub const AUTH_SIGNATURE_FLAG: u8 = 0x80;

/// The six ATT method types (Core Vol 3 Part F §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PduKind {
    /// Client to server, no response (Core Vol 3 Part F §3.3).
    Command,
    /// Client to server, answered by a response (Core Vol 3 Part F §3.3).
    Request,
    /// Server to client, answers a request (Core Vol 3 Part F §3.3).
    Response,
    /// Server to client, unacknowledged (Core Vol 3 Part F §3.3).
    Notification,
    /// Server to client, answered by a confirmation (Core Vol 3 Part F §3.3).
    Indication,
    /// Client to server, acknowledges an indication (Core Vol 3 Part F §3.3).
    Confirmation,
}

/// The method type of a known opcode, `None` for unknown ones (Core Vol 3 Part F §3.4.8).
pub const fn kind(opcode: u8) -> Option<PduKind> {
    match opcode {
        WRITE_CMD | SIGNED_WRITE_CMD => Some(PduKind::Command),
        EXCHANGE_MTU_REQ
        | FIND_INFORMATION_REQ
        | FIND_BY_TYPE_VALUE_REQ
        | READ_BY_TYPE_REQ
        | READ_REQ
        | READ_BLOB_REQ
        | READ_MULTIPLE_REQ
        | READ_BY_GROUP_TYPE_REQ
        | WRITE_REQ
        | PREPARE_WRITE_REQ
        | EXECUTE_WRITE_REQ
        | READ_MULTIPLE_VARIABLE_REQ => Some(PduKind::Request),
        ERROR_RSP
        | EXCHANGE_MTU_RSP
        | FIND_INFORMATION_RSP
        | FIND_BY_TYPE_VALUE_RSP
        | READ_BY_TYPE_RSP
        | READ_RSP
        | READ_BLOB_RSP
        | READ_MULTIPLE_RSP
        | READ_BY_GROUP_TYPE_RSP
        | WRITE_RSP
        | PREPARE_WRITE_RSP
        | EXECUTE_WRITE_RSP
        | READ_MULTIPLE_VARIABLE_RSP => Some(PduKind::Response),
        HANDLE_VALUE_NTF | MULTIPLE_HANDLE_VALUE_NTF => Some(PduKind::Notification),
        HANDLE_VALUE_IND => Some(PduKind::Indication),
        HANDLE_VALUE_CFM => Some(PduKind::Confirmation),
        _ => None,
    }
}

/// Whether the Command Flag (bit 6) is set, known opcode or not (Core Vol 3 Part F §3.3.1).
pub const fn is_command(opcode: u8) -> bool {
    opcode & COMMAND_FLAG != 0
}

/// Whether the Authentication Signature Flag (bit 7) is set (Core Vol 3 Part F §3.3.1).
pub const fn is_signed(opcode: u8) -> bool {
    opcode & AUTH_SIGNATURE_FLAG != 0
}

/// Whether `opcode` is a known request (Core Vol 3 Part F §3.4.8).
pub const fn is_request(opcode: u8) -> bool {
    matches!(kind(opcode), Some(PduKind::Request))
}

/// Whether `opcode` is a known response, Error Response included (Core Vol 3 Part F §3.4.8).
pub const fn is_response(opcode: u8) -> bool {
    matches!(kind(opcode), Some(PduKind::Response))
}

/// The success answer to a request (its opcode + 1), or Confirmation for an Indication; an Error
/// Response may always come instead (Core Vol 3 Part F §3.4.9).
pub const fn expected_response(request_opcode: u8) -> Option<u8> {
    match kind(request_opcode) {
        Some(PduKind::Request) | Some(PduKind::Indication) => Some(request_opcode + 1),
        _ => None,
    }
}

/// The spec name of a known opcode, e.g. "Read Request" (Core Vol 3 Part F §3.4.8).
pub const fn name(opcode: u8) -> Option<&'static str> {
    Some(match opcode {
        ERROR_RSP => "Error Response",
        EXCHANGE_MTU_REQ => "Exchange MTU Request",
        EXCHANGE_MTU_RSP => "Exchange MTU Response",
        FIND_INFORMATION_REQ => "Find Information Request",
        FIND_INFORMATION_RSP => "Find Information Response",
        FIND_BY_TYPE_VALUE_REQ => "Find By Type Value Request",
        FIND_BY_TYPE_VALUE_RSP => "Find By Type Value Response",
        READ_BY_TYPE_REQ => "Read By Type Request",
        READ_BY_TYPE_RSP => "Read By Type Response",
        READ_REQ => "Read Request",
        READ_RSP => "Read Response",
        READ_BLOB_REQ => "Read Blob Request",
        READ_BLOB_RSP => "Read Blob Response",
        READ_MULTIPLE_REQ => "Read Multiple Request",
        READ_MULTIPLE_RSP => "Read Multiple Response",
        READ_BY_GROUP_TYPE_REQ => "Read By Group Type Request",
        READ_BY_GROUP_TYPE_RSP => "Read By Group Type Response",
        WRITE_REQ => "Write Request",
        WRITE_RSP => "Write Response",
        PREPARE_WRITE_REQ => "Prepare Write Request",
        PREPARE_WRITE_RSP => "Prepare Write Response",
        EXECUTE_WRITE_REQ => "Execute Write Request",
        EXECUTE_WRITE_RSP => "Execute Write Response",
        HANDLE_VALUE_NTF => "Handle Value Notification",
        HANDLE_VALUE_IND => "Handle Value Indication",
        HANDLE_VALUE_CFM => "Handle Value Confirmation",
        READ_MULTIPLE_VARIABLE_REQ => "Read Multiple Variable Request",
        READ_MULTIPLE_VARIABLE_RSP => "Read Multiple Variable Response",
        MULTIPLE_HANDLE_VALUE_NTF => "Multiple Handle Value Notification",
        WRITE_CMD => "Write Command",
        SIGNED_WRITE_CMD => "Signed Write Command",
        _ => return None,
    })
}
