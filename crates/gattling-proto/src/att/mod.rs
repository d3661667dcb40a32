//! Attribute Protocol PDUs (Core Vol 3 Part F §3.4).
//!
//! [`AttPdu::decode`] parses one PDU without copying or allocating: values borrow the input, and
//! list parameters become pre-validated views ([`list`]) whose iterators cannot fail.
//! [`AttPdu::encode`] appends the wire bytes to a `Vec<u8>`; [`ListBuilder`] assembles list
//! responses record by record within an ATT_MTU. The codec checks structure only (lengths,
//! formats, flags); ATT_MTU limits and handle ranges are the caller's business.

pub mod bearer;
pub mod builder;
pub mod error;
pub mod list;
pub mod opcode;

#[cfg(test)]
mod tests;

pub use bearer::{Bearer, BearerError, Route};
pub use builder::{ListBuilder, ListKind};
pub use error::ErrorCode;
pub use list::{
    AttributeDataIter, AttributeDataList, GroupDataIter, GroupDataList, HandleIter, HandleList, HandleValueIter,
    HandleValueList, HandlesInformationIter, HandlesInformationList, InformationData, InformationFormat,
    InformationIter, LengthValueIter, LengthValueList,
};
pub use opcode::{expected_response, is_command, is_request, is_response, is_signed, PduKind};

use crate::codec::{DecodeError, Reader, Writer};
use crate::uuid::Uuid;
use alloc::vec::Vec;

/// Default and minimum LE ATT_MTU (Core Vol 3 Part F §3.2.8).
pub const DEFAULT_LE_MTU: u16 = 23;
/// Longest attribute value (Core Vol 3 Part F §3.2.9).
pub const MAX_ATTRIBUTE_VALUE_LEN: usize = 512;
/// Length of the Authentication Signature of a Signed Write Command (Core Vol 3 Part F §3.4.5.4).
pub const SIGNATURE_LEN: usize = 12;

/// Flags of an Execute Write Request (Core Vol 3 Part F §3.4.6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExecuteWriteFlags {
    /// 0x00: cancel all prepared writes (Core Vol 3 Part F §3.4.6.3).
    Cancel = 0x00,
    /// 0x01: immediately write all pending prepared values (Core Vol 3 Part F §3.4.6.3).
    Write = 0x01,
}

impl ExecuteWriteFlags {
    /// The flags for a wire value; other values are an Invalid PDU (Core Vol 3 Part F §3.4.6.3).
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0x00 => Some(Self::Cancel),
            0x01 => Some(Self::Write),
            _ => None,
        }
    }

    /// The wire value (Core Vol 3 Part F §3.4.6.3).
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

/// One ATT PDU, either direction, borrowing its variable-length parts (Core Vol 3 Part F §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttPdu<'a> {
    /// Error Response (Core Vol 3 Part F §3.4.1.1).
    ErrorRsp {
        /// Opcode of the request that failed.
        request_opcode: u8,
        /// Handle that caused the error, or 0x0000.
        handle: u16,
        /// Why the request failed.
        error: ErrorCode,
    },
    /// Exchange MTU Request (Core Vol 3 Part F §3.4.2.1).
    ExchangeMtuReq {
        /// Client receive MTU size.
        client_rx_mtu: u16,
    },
    /// Exchange MTU Response (Core Vol 3 Part F §3.4.2.2).
    ExchangeMtuRsp {
        /// Server receive MTU size.
        server_rx_mtu: u16,
    },
    /// Find Information Request (Core Vol 3 Part F §3.4.3.1).
    FindInformationReq {
        /// First requested handle.
        start: u16,
        /// Last requested handle.
        end: u16,
    },
    /// Find Information Response (Core Vol 3 Part F §3.4.3.2).
    FindInformationRsp {
        /// Format and (handle, UUID) pairs.
        data: InformationData<'a>,
    },
    /// Find By Type Value Request (Core Vol 3 Part F §3.4.3.3).
    FindByTypeValueReq {
        /// First requested handle.
        start: u16,
        /// Last requested handle.
        end: u16,
        /// 16-bit UUID of the attribute type to find.
        attribute_type: u16,
        /// Attribute value to find.
        value: &'a [u8],
    },
    /// Find By Type Value Response (Core Vol 3 Part F §3.4.3.4).
    FindByTypeValueRsp {
        /// (found attribute handle, group end handle) pairs.
        data: HandlesInformationList<'a>,
    },
    /// Read By Type Request (Core Vol 3 Part F §3.4.4.1).
    ReadByTypeReq {
        /// First requested handle.
        start: u16,
        /// Last requested handle.
        end: u16,
        /// Attribute type, 16- or 128-bit on the wire (a 32-bit UUID is sent in 128-bit form).
        attribute_type: Uuid,
    },
    /// Read By Type Response (Core Vol 3 Part F §3.4.4.2).
    ReadByTypeRsp {
        /// Length and (handle, value) pairs.
        data: AttributeDataList<'a>,
    },
    /// Read Request (Core Vol 3 Part F §3.4.4.3).
    ReadReq {
        /// Handle of the attribute to read.
        handle: u16,
    },
    /// Read Response (Core Vol 3 Part F §3.4.4.4).
    ReadRsp {
        /// Attribute value, at most ATT_MTU - 1 bytes.
        value: &'a [u8],
    },
    /// Read Blob Request (Core Vol 3 Part F §3.4.4.5).
    ReadBlobReq {
        /// Handle of the attribute to read.
        handle: u16,
        /// Offset of the first byte to read.
        offset: u16,
    },
    /// Read Blob Response (Core Vol 3 Part F §3.4.4.6).
    ReadBlobRsp {
        /// Part of the attribute value.
        value: &'a [u8],
    },
    /// Read Multiple Request (Core Vol 3 Part F §3.4.4.7).
    ReadMultipleReq {
        /// Two or more handles.
        handles: HandleList<'a>,
    },
    /// Read Multiple Response (Core Vol 3 Part F §3.4.4.8).
    ReadMultipleRsp {
        /// Concatenated values, possibly cut at ATT_MTU - 1 bytes.
        values: &'a [u8],
    },
    /// Read By Group Type Request (Core Vol 3 Part F §3.4.4.9).
    ReadByGroupTypeReq {
        /// First requested handle.
        start: u16,
        /// Last requested handle.
        end: u16,
        /// Group type, 16- or 128-bit on the wire (a 32-bit UUID is sent in 128-bit form).
        group_type: Uuid,
    },
    /// Read By Group Type Response (Core Vol 3 Part F §3.4.4.10).
    ReadByGroupTypeRsp {
        /// Length and (handle, end group handle, value) records.
        data: GroupDataList<'a>,
    },
    /// Write Request (Core Vol 3 Part F §3.4.5.1).
    WriteReq {
        /// Handle of the attribute to write.
        handle: u16,
        /// Value to write.
        value: &'a [u8],
    },
    /// Write Response (Core Vol 3 Part F §3.4.5.2).
    WriteRsp,
    /// Write Command (Core Vol 3 Part F §3.4.5.3).
    WriteCmd {
        /// Handle of the attribute to write.
        handle: u16,
        /// Value to write.
        value: &'a [u8],
    },
    /// Signed Write Command (Core Vol 3 Part F §3.4.5.4).
    SignedWriteCmd {
        /// Handle of the attribute to write.
        handle: u16,
        /// Value to write.
        value: &'a [u8],
        /// Authentication Signature (Core Vol 3 Part H §2.4.5).
        signature: [u8; SIGNATURE_LEN],
    },
    /// Prepare Write Request (Core Vol 3 Part F §3.4.6.1).
    PrepareWriteReq {
        /// Handle of the attribute to write.
        handle: u16,
        /// Offset of the first byte to write.
        offset: u16,
        /// Part of the value.
        value: &'a [u8],
    },
    /// Prepare Write Response, echoing the request (Core Vol 3 Part F §3.4.6.2).
    PrepareWriteRsp {
        /// Handle of the attribute to write.
        handle: u16,
        /// Offset of the first byte to write.
        offset: u16,
        /// Part of the value.
        value: &'a [u8],
    },
    /// Execute Write Request (Core Vol 3 Part F §3.4.6.3).
    ExecuteWriteReq {
        /// Cancel or write the prepared values.
        flags: ExecuteWriteFlags,
    },
    /// Execute Write Response (Core Vol 3 Part F §3.4.6.4).
    ExecuteWriteRsp,
    /// Handle Value Notification (Core Vol 3 Part F §3.4.7.1).
    HandleValueNtf {
        /// Handle of the attribute.
        handle: u16,
        /// Current value, at most ATT_MTU - 3 bytes.
        value: &'a [u8],
    },
    /// Handle Value Indication (Core Vol 3 Part F §3.4.7.2).
    HandleValueInd {
        /// Handle of the attribute.
        handle: u16,
        /// Current value, at most ATT_MTU - 3 bytes.
        value: &'a [u8],
    },
    /// Handle Value Confirmation (Core Vol 3 Part F §3.4.7.3).
    HandleValueCfm,
    /// Read Multiple Variable Request (Core Vol 3 Part F §3.4.4.11).
    ReadMultipleVariableReq {
        /// Two or more handles.
        handles: HandleList<'a>,
    },
    /// Read Multiple Variable Response (Core Vol 3 Part F §3.4.4.12).
    ReadMultipleVariableRsp {
        /// (length, value) tuples, the last possibly cut short.
        data: LengthValueList<'a>,
    },
    /// Multiple Handle Value Notification (Core Vol 3 Part F §3.4.7.4).
    MultipleHandleValueNtf {
        /// (handle, length, value) tuples.
        data: HandleValueList<'a>,
    },
}

/// The spec identifier used to name a PDU in decode errors.
const fn pdu_id(op: u8) -> &'static str {
    match op {
        opcode::ERROR_RSP => "ATT_ERROR_RSP",
        opcode::EXCHANGE_MTU_REQ => "ATT_EXCHANGE_MTU_REQ",
        opcode::EXCHANGE_MTU_RSP => "ATT_EXCHANGE_MTU_RSP",
        opcode::FIND_INFORMATION_REQ => "ATT_FIND_INFORMATION_REQ",
        opcode::FIND_INFORMATION_RSP => "ATT_FIND_INFORMATION_RSP",
        opcode::FIND_BY_TYPE_VALUE_REQ => "ATT_FIND_BY_TYPE_VALUE_REQ",
        opcode::FIND_BY_TYPE_VALUE_RSP => "ATT_FIND_BY_TYPE_VALUE_RSP",
        opcode::READ_BY_TYPE_REQ => "ATT_READ_BY_TYPE_REQ",
        opcode::READ_BY_TYPE_RSP => "ATT_READ_BY_TYPE_RSP",
        opcode::READ_REQ => "ATT_READ_REQ",
        opcode::READ_RSP => "ATT_READ_RSP",
        opcode::READ_BLOB_REQ => "ATT_READ_BLOB_REQ",
        opcode::READ_BLOB_RSP => "ATT_READ_BLOB_RSP",
        opcode::READ_MULTIPLE_REQ => "ATT_READ_MULTIPLE_REQ",
        opcode::READ_MULTIPLE_RSP => "ATT_READ_MULTIPLE_RSP",
        opcode::READ_BY_GROUP_TYPE_REQ => "ATT_READ_BY_GROUP_TYPE_REQ",
        opcode::READ_BY_GROUP_TYPE_RSP => "ATT_READ_BY_GROUP_TYPE_RSP",
        opcode::WRITE_REQ => "ATT_WRITE_REQ",
        opcode::WRITE_RSP => "ATT_WRITE_RSP",
        opcode::PREPARE_WRITE_REQ => "ATT_PREPARE_WRITE_REQ",
        opcode::PREPARE_WRITE_RSP => "ATT_PREPARE_WRITE_RSP",
        opcode::EXECUTE_WRITE_REQ => "ATT_EXECUTE_WRITE_REQ",
        opcode::EXECUTE_WRITE_RSP => "ATT_EXECUTE_WRITE_RSP",
        opcode::HANDLE_VALUE_NTF => "ATT_HANDLE_VALUE_NTF",
        opcode::HANDLE_VALUE_IND => "ATT_HANDLE_VALUE_IND",
        opcode::HANDLE_VALUE_CFM => "ATT_HANDLE_VALUE_CFM",
        opcode::READ_MULTIPLE_VARIABLE_REQ => "ATT_READ_MULTIPLE_VARIABLE_REQ",
        opcode::READ_MULTIPLE_VARIABLE_RSP => "ATT_READ_MULTIPLE_VARIABLE_RSP",
        opcode::MULTIPLE_HANDLE_VALUE_NTF => "ATT_MULTIPLE_HANDLE_VALUE_NTF",
        opcode::WRITE_CMD => "ATT_WRITE_CMD",
        opcode::SIGNED_WRITE_CMD => "ATT_SIGNED_WRITE_CMD",
        _ => "ATT PDU",
    }
}

/// Decodes a 16- or 128-bit attribute type (Core Vol 3 Part F §3.4.4.1, §3.4.4.9).
fn decode_type(bytes: &[u8], what: &'static str) -> Result<Uuid, DecodeError> {
    match bytes.len() {
        0 | 1 => Err(DecodeError::Truncated { what, need: 2, have: bytes.len() }),
        2 | 16 => Uuid::from_le_bytes(bytes),
        _ => Err(DecodeError::Invalid { what, reason: "attribute type is not 2 or 16 bytes" }),
    }
}

/// Wire length of an attribute type: 2 for 16-bit UUIDs, else 16.
fn type_len(uuid: &Uuid) -> usize {
    match uuid {
        Uuid::U16(_) => 2,
        _ => 16,
    }
}

/// Writes an attribute type, 32-bit UUIDs in their 128-bit form.
fn put_type(uuid: &Uuid, out: &mut Vec<u8>) {
    match *uuid {
        Uuid::U16(v) => out.put_u16(v),
        other => out.put(&other.to_u128_le()),
    }
}

impl<'a> AttPdu<'a> {
    /// Decodes one whole PDU, borrowing from `bytes` (Core Vol 3 Part F §3.3, §3.4).
    ///
    /// Errors: empty input is `Truncated`; an unknown opcode is `Unknown { what: "ATT PDU" }`;
    /// short parameters are `Truncated`, extra bytes `Trailing`, and bad formats, length fields
    /// or flags `Invalid`.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let Some((&op, params)) = bytes.split_first() else {
            return Err(DecodeError::Truncated { what: "ATT PDU", need: 1, have: 0 });
        };
        // Fast path for the request a server sees most.
        if let (opcode::READ_REQ, &[a, b]) = (op, params) {
            return Ok(AttPdu::ReadReq { handle: u16::from_le_bytes([a, b]) });
        }
        let what = pdu_id(op);
        let mut r = Reader::new(params, what);
        let pdu = match op {
            opcode::ERROR_RSP => {
                AttPdu::ErrorRsp { request_opcode: r.u8()?, handle: r.u16()?, error: ErrorCode(r.u8()?) }
            }
            opcode::EXCHANGE_MTU_REQ => AttPdu::ExchangeMtuReq { client_rx_mtu: r.u16()? },
            opcode::EXCHANGE_MTU_RSP => AttPdu::ExchangeMtuRsp { server_rx_mtu: r.u16()? },
            opcode::FIND_INFORMATION_REQ => AttPdu::FindInformationReq { start: r.u16()?, end: r.u16()? },
            opcode::FIND_INFORMATION_RSP => {
                let format = InformationFormat::from_u8(r.u8()?)
                    .ok_or(DecodeError::Invalid { what, reason: "format is not 0x01 or 0x02" })?;
                AttPdu::FindInformationRsp { data: InformationData::parse(format, r.rest(), what)? }
            }
            opcode::FIND_BY_TYPE_VALUE_REQ => {
                AttPdu::FindByTypeValueReq { start: r.u16()?, end: r.u16()?, attribute_type: r.u16()?, value: r.rest() }
            }
            opcode::FIND_BY_TYPE_VALUE_RSP => {
                AttPdu::FindByTypeValueRsp { data: HandlesInformationList::parse(r.rest(), what)? }
            }
            opcode::READ_BY_TYPE_REQ => {
                AttPdu::ReadByTypeReq { start: r.u16()?, end: r.u16()?, attribute_type: decode_type(r.rest(), what)? }
            }
            opcode::READ_BY_TYPE_RSP => {
                let length = r.u8()?;
                AttPdu::ReadByTypeRsp { data: AttributeDataList::parse(length, r.rest(), what)? }
            }
            opcode::READ_REQ => AttPdu::ReadReq { handle: r.u16()? },
            opcode::READ_RSP => AttPdu::ReadRsp { value: r.rest() },
            opcode::READ_BLOB_REQ => AttPdu::ReadBlobReq { handle: r.u16()?, offset: r.u16()? },
            opcode::READ_BLOB_RSP => AttPdu::ReadBlobRsp { value: r.rest() },
            opcode::READ_MULTIPLE_REQ => AttPdu::ReadMultipleReq { handles: HandleList::parse(r.rest(), what)? },
            opcode::READ_MULTIPLE_RSP => AttPdu::ReadMultipleRsp { values: r.rest() },
            opcode::READ_BY_GROUP_TYPE_REQ => {
                AttPdu::ReadByGroupTypeReq { start: r.u16()?, end: r.u16()?, group_type: decode_type(r.rest(), what)? }
            }
            opcode::READ_BY_GROUP_TYPE_RSP => {
                let length = r.u8()?;
                AttPdu::ReadByGroupTypeRsp { data: GroupDataList::parse(length, r.rest(), what)? }
            }
            opcode::WRITE_REQ => AttPdu::WriteReq { handle: r.u16()?, value: r.rest() },
            opcode::WRITE_RSP => AttPdu::WriteRsp,
            opcode::WRITE_CMD => AttPdu::WriteCmd { handle: r.u16()?, value: r.rest() },
            opcode::SIGNED_WRITE_CMD => {
                let handle = r.u16()?;
                let rest = r.rest();
                let Some((value, signature)) = rest.split_last_chunk::<SIGNATURE_LEN>() else {
                    return Err(DecodeError::Truncated { what, need: SIGNATURE_LEN, have: rest.len() });
                };
                AttPdu::SignedWriteCmd { handle, value, signature: *signature }
            }
            opcode::PREPARE_WRITE_REQ => {
                AttPdu::PrepareWriteReq { handle: r.u16()?, offset: r.u16()?, value: r.rest() }
            }
            opcode::PREPARE_WRITE_RSP => {
                AttPdu::PrepareWriteRsp { handle: r.u16()?, offset: r.u16()?, value: r.rest() }
            }
            opcode::EXECUTE_WRITE_REQ => AttPdu::ExecuteWriteReq {
                flags: ExecuteWriteFlags::from_u8(r.u8()?)
                    .ok_or(DecodeError::Invalid { what, reason: "flags are not 0x00 or 0x01" })?,
            },
            opcode::EXECUTE_WRITE_RSP => AttPdu::ExecuteWriteRsp,
            opcode::HANDLE_VALUE_NTF => AttPdu::HandleValueNtf { handle: r.u16()?, value: r.rest() },
            opcode::HANDLE_VALUE_IND => AttPdu::HandleValueInd { handle: r.u16()?, value: r.rest() },
            opcode::HANDLE_VALUE_CFM => AttPdu::HandleValueCfm,
            opcode::READ_MULTIPLE_VARIABLE_REQ => {
                AttPdu::ReadMultipleVariableReq { handles: HandleList::parse(r.rest(), what)? }
            }
            opcode::READ_MULTIPLE_VARIABLE_RSP => {
                AttPdu::ReadMultipleVariableRsp { data: LengthValueList::parse(r.rest(), what)? }
            }
            opcode::MULTIPLE_HANDLE_VALUE_NTF => {
                AttPdu::MultipleHandleValueNtf { data: HandleValueList::parse(r.rest(), what)? }
            }
            code => return Err(DecodeError::Unknown { what: "ATT PDU", code: u16::from(code) }),
        };
        r.finish()?;
        Ok(pdu)
    }

    /// The opcode byte of this PDU (Core Vol 3 Part F §3.4.8).
    pub const fn opcode(&self) -> u8 {
        match self {
            AttPdu::ErrorRsp { .. } => opcode::ERROR_RSP,
            AttPdu::ExchangeMtuReq { .. } => opcode::EXCHANGE_MTU_REQ,
            AttPdu::ExchangeMtuRsp { .. } => opcode::EXCHANGE_MTU_RSP,
            AttPdu::FindInformationReq { .. } => opcode::FIND_INFORMATION_REQ,
            AttPdu::FindInformationRsp { .. } => opcode::FIND_INFORMATION_RSP,
            AttPdu::FindByTypeValueReq { .. } => opcode::FIND_BY_TYPE_VALUE_REQ,
            AttPdu::FindByTypeValueRsp { .. } => opcode::FIND_BY_TYPE_VALUE_RSP,
            AttPdu::ReadByTypeReq { .. } => opcode::READ_BY_TYPE_REQ,
            AttPdu::ReadByTypeRsp { .. } => opcode::READ_BY_TYPE_RSP,
            AttPdu::ReadReq { .. } => opcode::READ_REQ,
            AttPdu::ReadRsp { .. } => opcode::READ_RSP,
            AttPdu::ReadBlobReq { .. } => opcode::READ_BLOB_REQ,
            AttPdu::ReadBlobRsp { .. } => opcode::READ_BLOB_RSP,
            AttPdu::ReadMultipleReq { .. } => opcode::READ_MULTIPLE_REQ,
            AttPdu::ReadMultipleRsp { .. } => opcode::READ_MULTIPLE_RSP,
            AttPdu::ReadByGroupTypeReq { .. } => opcode::READ_BY_GROUP_TYPE_REQ,
            AttPdu::ReadByGroupTypeRsp { .. } => opcode::READ_BY_GROUP_TYPE_RSP,
            AttPdu::WriteReq { .. } => opcode::WRITE_REQ,
            AttPdu::WriteRsp => opcode::WRITE_RSP,
            AttPdu::WriteCmd { .. } => opcode::WRITE_CMD,
            AttPdu::SignedWriteCmd { .. } => opcode::SIGNED_WRITE_CMD,
            AttPdu::PrepareWriteReq { .. } => opcode::PREPARE_WRITE_REQ,
            AttPdu::PrepareWriteRsp { .. } => opcode::PREPARE_WRITE_RSP,
            AttPdu::ExecuteWriteReq { .. } => opcode::EXECUTE_WRITE_REQ,
            AttPdu::ExecuteWriteRsp => opcode::EXECUTE_WRITE_RSP,
            AttPdu::HandleValueNtf { .. } => opcode::HANDLE_VALUE_NTF,
            AttPdu::HandleValueInd { .. } => opcode::HANDLE_VALUE_IND,
            AttPdu::HandleValueCfm => opcode::HANDLE_VALUE_CFM,
            AttPdu::ReadMultipleVariableReq { .. } => opcode::READ_MULTIPLE_VARIABLE_REQ,
            AttPdu::ReadMultipleVariableRsp { .. } => opcode::READ_MULTIPLE_VARIABLE_RSP,
            AttPdu::MultipleHandleValueNtf { .. } => opcode::MULTIPLE_HANDLE_VALUE_NTF,
        }
    }

    /// The method type of this PDU (Core Vol 3 Part F §3.3).
    pub const fn kind(&self) -> PduKind {
        match opcode::kind(self.opcode()) {
            Some(k) => k,
            // Every variant has a known opcode; this arm is never taken.
            None => PduKind::Command,
        }
    }

    /// The spec name of this PDU, e.g. "Read Request" (Core Vol 3 Part F §3.4.8).
    pub const fn name(&self) -> &'static str {
        match opcode::name(self.opcode()) {
            Some(n) => n,
            None => "ATT PDU",
        }
    }

    /// Bytes [`encode`](Self::encode) appends, opcode included (Core Vol 3 Part F §3.3).
    pub fn encoded_len(&self) -> usize {
        1 + match *self {
            AttPdu::ErrorRsp { .. } => 4,
            AttPdu::ExchangeMtuReq { .. } | AttPdu::ExchangeMtuRsp { .. } => 2,
            AttPdu::FindInformationReq { .. } => 4,
            AttPdu::FindInformationRsp { data } => 1 + data.as_bytes().len(),
            AttPdu::FindByTypeValueReq { value, .. } => 6 + value.len(),
            AttPdu::FindByTypeValueRsp { data } => data.as_bytes().len(),
            AttPdu::ReadByTypeReq { attribute_type: t, .. } | AttPdu::ReadByGroupTypeReq { group_type: t, .. } => {
                4 + type_len(&t)
            }
            AttPdu::ReadByTypeRsp { data } => 1 + data.as_bytes().len(),
            AttPdu::ReadReq { .. } => 2,
            AttPdu::ReadRsp { value } | AttPdu::ReadBlobRsp { value } => value.len(),
            AttPdu::ReadBlobReq { .. } => 4,
            AttPdu::ReadMultipleReq { handles } | AttPdu::ReadMultipleVariableReq { handles } => {
                handles.as_bytes().len()
            }
            AttPdu::ReadMultipleRsp { values } => values.len(),
            AttPdu::ReadByGroupTypeRsp { data } => 1 + data.as_bytes().len(),
            AttPdu::WriteReq { value, .. }
            | AttPdu::WriteCmd { value, .. }
            | AttPdu::HandleValueNtf { value, .. }
            | AttPdu::HandleValueInd { value, .. } => 2 + value.len(),
            AttPdu::WriteRsp | AttPdu::ExecuteWriteRsp | AttPdu::HandleValueCfm => 0,
            AttPdu::SignedWriteCmd { value, .. } => 2 + value.len() + SIGNATURE_LEN,
            AttPdu::PrepareWriteReq { value, .. } | AttPdu::PrepareWriteRsp { value, .. } => 4 + value.len(),
            AttPdu::ExecuteWriteReq { .. } => 1,
            AttPdu::ReadMultipleVariableRsp { data } => data.as_bytes().len(),
            AttPdu::MultipleHandleValueNtf { data } => data.as_bytes().len(),
        }
    }

    /// Whether the encoded PDU fits in an ATT_MTU of `mtu` bytes (Core Vol 3 Part F §3.2.8).
    pub fn fits_mtu(&self, mtu: u16) -> bool {
        self.encoded_len() <= usize::from(mtu)
    }

    /// Appends the wire bytes to `out`; allocates only if `out` lacks
    /// [`encoded_len`](Self::encoded_len) spare capacity (Core Vol 3 Part F §3.3).
    #[inline]
    pub fn encode(&self, out: &mut Vec<u8>) {
        // Fast path for the response a server sends most.
        if let AttPdu::ReadRsp { value } = *self {
            out.reserve(1 + value.len());
            out.push(opcode::READ_RSP);
            out.extend_from_slice(value);
            return;
        }
        out.reserve(self.encoded_len());
        out.put_u8(self.opcode());
        match *self {
            AttPdu::ErrorRsp { request_opcode, handle, error } => {
                out.put_u8(request_opcode);
                out.put_u16(handle);
                out.put_u8(error.0);
            }
            AttPdu::ExchangeMtuReq { client_rx_mtu: mtu } | AttPdu::ExchangeMtuRsp { server_rx_mtu: mtu } => {
                out.put_u16(mtu)
            }
            AttPdu::FindInformationReq { start, end } => {
                out.put_u16(start);
                out.put_u16(end);
            }
            AttPdu::FindInformationRsp { data } => {
                out.put_u8(data.format().as_u8());
                out.put(data.as_bytes());
            }
            AttPdu::FindByTypeValueReq { start, end, attribute_type, value } => {
                out.put_u16(start);
                out.put_u16(end);
                out.put_u16(attribute_type);
                out.put(value);
            }
            AttPdu::FindByTypeValueRsp { data } => out.put(data.as_bytes()),
            AttPdu::ReadByTypeReq { start, end, attribute_type: t }
            | AttPdu::ReadByGroupTypeReq { start, end, group_type: t } => {
                out.put_u16(start);
                out.put_u16(end);
                put_type(&t, out);
            }
            AttPdu::ReadByTypeRsp { data } => {
                out.put_u8(data.length());
                out.put(data.as_bytes());
            }
            AttPdu::ReadReq { handle } => out.put_u16(handle),
            AttPdu::ReadRsp { value } | AttPdu::ReadBlobRsp { value } => out.put(value),
            AttPdu::ReadBlobReq { handle, offset } => {
                out.put_u16(handle);
                out.put_u16(offset);
            }
            AttPdu::ReadMultipleReq { handles } | AttPdu::ReadMultipleVariableReq { handles } => {
                out.put(handles.as_bytes())
            }
            AttPdu::ReadMultipleRsp { values } => out.put(values),
            AttPdu::ReadByGroupTypeRsp { data } => {
                out.put_u8(data.length());
                out.put(data.as_bytes());
            }
            AttPdu::WriteReq { handle, value }
            | AttPdu::WriteCmd { handle, value }
            | AttPdu::HandleValueNtf { handle, value }
            | AttPdu::HandleValueInd { handle, value } => {
                out.put_u16(handle);
                out.put(value);
            }
            AttPdu::WriteRsp | AttPdu::ExecuteWriteRsp | AttPdu::HandleValueCfm => {}
            AttPdu::SignedWriteCmd { handle, value, signature } => {
                out.put_u16(handle);
                out.put(value);
                out.put(&signature);
            }
            AttPdu::PrepareWriteReq { handle, offset, value } | AttPdu::PrepareWriteRsp { handle, offset, value } => {
                out.put_u16(handle);
                out.put_u16(offset);
                out.put(value);
            }
            AttPdu::ExecuteWriteReq { flags } => out.put_u8(flags.as_u8()),
            AttPdu::ReadMultipleVariableRsp { data } => out.put(data.as_bytes()),
            AttPdu::MultipleHandleValueNtf { data } => out.put(data.as_bytes()),
        }
    }

    /// The wire bytes in a new vector of exactly [`encoded_len`](Self::encoded_len) bytes (Core Vol 3 Part F §3.3).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out
    }
}
