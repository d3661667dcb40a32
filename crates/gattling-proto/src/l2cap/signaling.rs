//! LE signaling channel commands (Core Vol 3 Part A §4): the ones an LE host must answer.

use crate::codec::{DecodeError, Reader, Writer};
use alloc::vec::Vec;

/// Signaling command codes (Core Vol 3 Part A §4, Table 4.2).
pub mod code {
    /// L2CAP_COMMAND_REJECT_RSP.
    pub const COMMAND_REJECT: u8 = 0x01;
    /// L2CAP_DISCONNECTION_REQ.
    pub const DISCONNECTION_REQ: u8 = 0x06;
    /// L2CAP_DISCONNECTION_RSP.
    pub const DISCONNECTION_RSP: u8 = 0x07;
    /// L2CAP_CONNECTION_PARAMETER_UPDATE_REQ.
    pub const CONNECTION_PARAMETER_UPDATE_REQ: u8 = 0x12;
    /// L2CAP_CONNECTION_PARAMETER_UPDATE_RSP.
    pub const CONNECTION_PARAMETER_UPDATE_RSP: u8 = 0x13;
    /// L2CAP_LE_CREDIT_BASED_CONNECTION_REQ.
    pub const LE_CREDIT_BASED_CONNECTION_REQ: u8 = 0x14;
    /// L2CAP_LE_CREDIT_BASED_CONNECTION_RSP.
    pub const LE_CREDIT_BASED_CONNECTION_RSP: u8 = 0x15;
}

/// Command Reject reasons (Core Vol 3 Part A §4.1).
pub mod reject {
    /// Command not understood.
    pub const NOT_UNDERSTOOD: u16 = 0x0000;
    /// Signaling MTU exceeded.
    pub const MTU_EXCEEDED: u16 = 0x0001;
    /// Invalid CID in request.
    pub const INVALID_CID: u16 = 0x0002;
}

/// Connection Parameter Update Response results (Core Vol 3 Part A §4.21).
pub mod update_result {
    /// Connection Parameters accepted.
    pub const ACCEPTED: u16 = 0x0000;
    /// Connection Parameters rejected.
    pub const REJECTED: u16 = 0x0001;
}

/// LE Credit Based Connection Response result "SPSM not supported" (Core Vol 3 Part A §4.23).
pub const SPSM_NOT_SUPPORTED: u16 = 0x0002;

/// One signaling command (the C-frame payload on CID 0x0005).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Signal<'a> {
    /// Command Reject (§4.1).
    CommandReject {
        /// Identifier of the rejected request.
        identifier: u8,
        /// Reason code.
        reason: u16,
        /// Reason data.
        data: &'a [u8],
    },
    /// Connection Parameter Update Request (§4.20), sent by a peripheral.
    ConnectionParameterUpdateReq {
        /// Identifier.
        identifier: u8,
        /// Minimum interval (1.25 ms units).
        interval_min: u16,
        /// Maximum interval (1.25 ms units).
        interval_max: u16,
        /// Peripheral latency.
        latency: u16,
        /// Supervision timeout multiplier (10 ms units).
        timeout: u16,
    },
    /// Connection Parameter Update Response (§4.21).
    ConnectionParameterUpdateRsp {
        /// Identifier.
        identifier: u8,
        /// 0 accepted, 1 rejected.
        result: u16,
    },
    /// LE Credit Based Connection Request (§4.22).
    LeCreditBasedConnectionReq {
        /// Identifier.
        identifier: u8,
        /// Protocol/service multiplexer.
        spsm: u16,
        /// Source CID.
        scid: u16,
        /// MTU.
        mtu: u16,
        /// MPS.
        mps: u16,
        /// Initial credits.
        initial_credits: u16,
    },
    /// LE Credit Based Connection Response (§4.23).
    LeCreditBasedConnectionRsp {
        /// Identifier.
        identifier: u8,
        /// Destination CID.
        dcid: u16,
        /// MTU.
        mtu: u16,
        /// MPS.
        mps: u16,
        /// Initial credits.
        initial_credits: u16,
        /// Result.
        result: u16,
    },
    /// Any other command, kept so it can be rejected by identifier.
    Other {
        /// Command code.
        code: u8,
        /// Identifier.
        identifier: u8,
        /// Data.
        data: &'a [u8],
    },
}

impl<'a> Signal<'a> {
    /// Decodes one signaling command: code(1), identifier(1), length(2), data.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, "L2CAP signaling command");
        let code = r.u8()?;
        let identifier = r.u8()?;
        let len = r.u16()? as usize;
        let data = r.take(len)?;
        r.finish()?;
        let mut d = Reader::new(data, "L2CAP signaling data");
        let sig = match code {
            code::COMMAND_REJECT => Signal::CommandReject { identifier, reason: d.u16()?, data: d.rest() },
            code::CONNECTION_PARAMETER_UPDATE_REQ => Signal::ConnectionParameterUpdateReq {
                identifier,
                interval_min: d.u16()?,
                interval_max: d.u16()?,
                latency: d.u16()?,
                timeout: d.u16()?,
            },
            code::CONNECTION_PARAMETER_UPDATE_RSP => {
                Signal::ConnectionParameterUpdateRsp { identifier, result: d.u16()? }
            }
            code::LE_CREDIT_BASED_CONNECTION_REQ => Signal::LeCreditBasedConnectionReq {
                identifier,
                spsm: d.u16()?,
                scid: d.u16()?,
                mtu: d.u16()?,
                mps: d.u16()?,
                initial_credits: d.u16()?,
            },
            code::LE_CREDIT_BASED_CONNECTION_RSP => Signal::LeCreditBasedConnectionRsp {
                identifier,
                dcid: d.u16()?,
                mtu: d.u16()?,
                mps: d.u16()?,
                initial_credits: d.u16()?,
                result: d.u16()?,
            },
            _ => return Ok(Signal::Other { code, identifier, data }),
        };
        d.finish()?;
        Ok(sig)
    }

    /// The identifier that pairs requests with responses.
    pub fn identifier(&self) -> u8 {
        match *self {
            Signal::CommandReject { identifier, .. }
            | Signal::ConnectionParameterUpdateReq { identifier, .. }
            | Signal::ConnectionParameterUpdateRsp { identifier, .. }
            | Signal::LeCreditBasedConnectionReq { identifier, .. }
            | Signal::LeCreditBasedConnectionRsp { identifier, .. }
            | Signal::Other { identifier, .. } => identifier,
        }
    }

    /// Appends the encoded command to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (code, identifier) = match *self {
            Signal::CommandReject { identifier, .. } => (code::COMMAND_REJECT, identifier),
            Signal::ConnectionParameterUpdateReq { identifier, .. } => {
                (code::CONNECTION_PARAMETER_UPDATE_REQ, identifier)
            }
            Signal::ConnectionParameterUpdateRsp { identifier, .. } => {
                (code::CONNECTION_PARAMETER_UPDATE_RSP, identifier)
            }
            Signal::LeCreditBasedConnectionReq { identifier, .. } => (code::LE_CREDIT_BASED_CONNECTION_REQ, identifier),
            Signal::LeCreditBasedConnectionRsp { identifier, .. } => (code::LE_CREDIT_BASED_CONNECTION_RSP, identifier),
            Signal::Other { code, identifier, .. } => (code, identifier),
        };
        out.put_u8(code);
        out.put_u8(identifier);
        let len_at = out.len();
        out.put_u16(0);
        match *self {
            Signal::CommandReject { reason, data, .. } => {
                out.put_u16(reason);
                out.put(data);
            }
            Signal::ConnectionParameterUpdateReq { interval_min, interval_max, latency, timeout, .. } => {
                for v in [interval_min, interval_max, latency, timeout] {
                    out.put_u16(v);
                }
            }
            Signal::ConnectionParameterUpdateRsp { result, .. } => out.put_u16(result),
            Signal::LeCreditBasedConnectionReq { spsm, scid, mtu, mps, initial_credits, .. } => {
                for v in [spsm, scid, mtu, mps, initial_credits] {
                    out.put_u16(v);
                }
            }
            Signal::LeCreditBasedConnectionRsp { dcid, mtu, mps, initial_credits, result, .. } => {
                for v in [dcid, mtu, mps, initial_credits, result] {
                    out.put_u16(v);
                }
            }
            Signal::Other { data, .. } => out.put(data),
        }
        let n = (out.len() - len_at - 2) as u16;
        if let Some(s) = out.get_mut(len_at..len_at + 2) {
            s.copy_from_slice(&n.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parameter_update_request_bytes() {
        let bytes = [0x12, 0x01, 0x08, 0x00, 0x06, 0x00, 0x0c, 0x00, 0x00, 0x00, 0xc8, 0x00];
        let s = Signal::decode(&bytes).unwrap();
        assert_eq!(
            s,
            Signal::ConnectionParameterUpdateReq {
                identifier: 1,
                interval_min: 6,
                interval_max: 12,
                latency: 0,
                timeout: 200
            }
        );
        let mut out = Vec::new();
        s.encode(&mut out);
        assert_eq!(out, bytes);
        assert!(Signal::decode(&bytes[..11]).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(id in any::<u8>(), a in any::<u16>(), b in any::<u16>(), c in any::<u16>(), data in proptest::collection::vec(any::<u8>(), 0..16)) {
            let sigs = [
                Signal::CommandReject { identifier: id, reason: a, data: &data },
                Signal::ConnectionParameterUpdateReq { identifier: id, interval_min: a, interval_max: b, latency: c, timeout: a },
                Signal::ConnectionParameterUpdateRsp { identifier: id, result: b },
                Signal::LeCreditBasedConnectionReq { identifier: id, spsm: a, scid: b, mtu: c, mps: a, initial_credits: b },
                Signal::LeCreditBasedConnectionRsp { identifier: id, dcid: a, mtu: b, mps: c, initial_credits: 1, result: 2 },
                Signal::Other { code: 0x7f, identifier: id, data: &data },
            ];
            for s in sigs {
                let mut out = Vec::new();
                s.encode(&mut out);
                prop_assert_eq!(Signal::decode(&out), Ok(s));
            }
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = Signal::decode(&bytes);
        }
    }
}
