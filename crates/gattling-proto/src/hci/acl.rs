//! HCI ACL Data packets (Core Vol 4 Part E §5.4.2).

use crate::codec::{DecodeError, Reader};
use alloc::vec::Vec;

/// The Packet_Boundary_Flag of an ACL packet (Core Vol 4 Part E §5.4.2).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PacketBoundary {
    /// 0b00: first fragment of a non-automatically-flushable PDU (host to controller on LE).
    FirstNonFlushable,
    /// 0b01: continuing fragment.
    Continuing,
    /// 0b10: first fragment of an automatically flushable PDU (controller to host on LE).
    FirstFlushable,
    /// 0b11: a complete automatically flushable PDU (BR/EDR only; treated as a start).
    Complete,
}

impl PacketBoundary {
    fn from_bits(b: u16) -> Self {
        match b & 0b11 {
            0b00 => PacketBoundary::FirstNonFlushable,
            0b01 => PacketBoundary::Continuing,
            0b10 => PacketBoundary::FirstFlushable,
            _ => PacketBoundary::Complete,
        }
    }

    fn bits(self) -> u16 {
        match self {
            PacketBoundary::FirstNonFlushable => 0b00,
            PacketBoundary::Continuing => 0b01,
            PacketBoundary::FirstFlushable => 0b10,
            PacketBoundary::Complete => 0b11,
        }
    }

    /// True for every flag that starts a new L2CAP PDU.
    pub fn is_start(self) -> bool {
        self != PacketBoundary::Continuing
    }
}

/// The 4-byte ACL header: handle, flags and data length (Core Vol 4 Part E §5.4.2).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AclHeader {
    /// Connection handle (12 bits).
    pub handle: u16,
    /// Packet boundary flag.
    pub boundary: PacketBoundary,
    /// Broadcast flag (2 bits; always 0 on LE).
    pub broadcast: u8,
    /// Length of the data that follows.
    pub len: u16,
}

impl AclHeader {
    /// Encodes the header into its 4 wire bytes.
    #[inline]
    pub fn to_bytes(&self) -> [u8; 4] {
        let w = (self.handle & 0x0FFF) | self.boundary.bits() << 12 | ((self.broadcast as u16) & 0b11) << 14;
        let [a, b] = w.to_le_bytes();
        let [c, d] = self.len.to_le_bytes();
        [a, b, c, d]
    }
}

/// One ACL packet with its data borrowed from the input.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AclPacket<'a> {
    /// Header fields.
    pub header: AclHeader,
    /// The data (an L2CAP PDU or a fragment of one).
    pub data: &'a [u8],
}

impl<'a> AclPacket<'a> {
    /// Decodes an ACL packet body (after the H4 indicator), checking the length field exactly.
    #[inline]
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body, "ACL packet");
        let w = r.u16()?;
        let len = r.u16()?;
        let data = r.take(len as usize)?;
        r.finish()?;
        let header = AclHeader {
            handle: w & 0x0FFF,
            boundary: PacketBoundary::from_bits(w >> 12),
            broadcast: (w >> 14) as u8 & 0b11,
            len,
        };
        Ok(AclPacket { header, data })
    }

    /// Appends the H4 indicator, header and data to `out`.
    pub fn encode_h4(&self, out: &mut Vec<u8>) {
        out.push(super::PacketType::Acl as u8);
        out.extend_from_slice(&self.header.to_bytes());
        out.extend_from_slice(self.data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_flags_and_handle() {
        let p = AclPacket::decode(&[0x01, 0x20, 0x02, 0x00, 0xAA, 0xBB]).unwrap();
        assert_eq!(p.header.handle, 0x001);
        assert_eq!(p.header.boundary, PacketBoundary::FirstFlushable);
        assert_eq!(p.data, &[0xAA, 0xBB]);
        assert!(AclPacket::decode(&[0x01, 0x20, 0x03, 0x00, 0xAA]).is_err());
        assert!(AclPacket::decode(&[0x01, 0x20, 0x00, 0x00, 0xAA]).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(handle in 0u16..0x0FFF, pb in 0u16..4, data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let header = AclHeader { handle, boundary: PacketBoundary::from_bits(pb), broadcast: 0, len: data.len() as u16 };
            let mut out = Vec::new();
            AclPacket { header, data: &data }.encode_h4(&mut out);
            let back = AclPacket::decode(&out[1..]).unwrap();
            prop_assert_eq!(back.header, header);
            prop_assert_eq!(back.data, &data[..]);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = AclPacket::decode(&bytes);
        }
    }
}
