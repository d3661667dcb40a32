//! H4 (UART transport) framing: a packet-indicator byte before each HCI packet (Core Vol 4 Part A §2).

use crate::codec::DecodeError;
use alloc::vec::Vec;

/// The H4 packet indicator (Core Vol 4 Part A §2).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PacketType {
    /// HCI Command packet (0x01).
    Command = 0x01,
    /// HCI ACL Data packet (0x02).
    Acl = 0x02,
    /// HCI Synchronous Data packet (0x03).
    Sco = 0x03,
    /// HCI Event packet (0x04).
    Event = 0x04,
    /// HCI ISO Data packet (0x05).
    Iso = 0x05,
}

impl PacketType {
    /// Decodes an indicator byte.
    #[inline]
    pub fn from_u8(b: u8) -> Result<Self, DecodeError> {
        Ok(match b {
            0x01 => PacketType::Command,
            0x02 => PacketType::Acl,
            0x03 => PacketType::Sco,
            0x04 => PacketType::Event,
            0x05 => PacketType::Iso,
            _ => return Err(DecodeError::Unknown { what: "H4 packet indicator", code: b as u16 }),
        })
    }

    /// Header length after the indicator, and where its payload length lives.
    #[inline]
    fn header(self) -> usize {
        match self {
            PacketType::Command | PacketType::Sco => 3,
            PacketType::Acl | PacketType::Iso => 4,
            PacketType::Event => 2,
        }
    }

    /// Payload length announced by a complete header of this type.
    #[inline]
    fn payload_len(self, h: &[u8]) -> usize {
        let b = |i: usize| h.get(i).copied().unwrap_or(0) as usize;
        match self {
            PacketType::Command | PacketType::Sco => b(2),
            PacketType::Event => b(1),
            PacketType::Acl => b(2) | b(3) << 8,
            PacketType::Iso => (b(2) | b(3) << 8) & 0x3FFF,
        }
    }
}

/// One HCI packet: its type and the bytes after the indicator (header included).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct H4Packet<'a> {
    /// Packet type.
    pub kind: PacketType,
    /// The packet without the indicator byte: header and payload.
    pub body: &'a [u8],
}

impl<'a> H4Packet<'a> {
    /// Decodes exactly one H4 packet (indicator + header + payload) from `bytes`.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let (&ind, body) = bytes.split_first().ok_or(DecodeError::Truncated { what: "H4 packet", need: 1, have: 0 })?;
        let kind = PacketType::from_u8(ind)?;
        let hl = kind.header();
        if body.len() < hl {
            return Err(DecodeError::Truncated { what: "HCI packet header", need: hl, have: body.len() });
        }
        let total = hl + kind.payload_len(body);
        match body.len() {
            n if n < total => Err(DecodeError::Truncated { what: "HCI packet", need: total, have: n }),
            n if n > total => Err(DecodeError::Trailing { what: "HCI packet", extra: n - total }),
            _ => Ok(H4Packet { kind, body }),
        }
    }

    /// Appends the indicator and body to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.kind as u8);
        out.extend_from_slice(self.body);
    }
}

/// Reassembles H4 packets from a byte stream (TCP or UART), bounded by a maximum packet size.
///
/// An unknown indicator or an oversized length means the stream is out of step; the framer then
/// reports the error once and discards everything buffered, since H4 has no resynchronisation.
#[derive(Debug)]
pub struct H4Framer {
    buf: Vec<u8>,
    start: usize,
    max_body: usize,
}

/// Default bound on one packet body: a 4-byte ACL header plus the largest LE ACL payload we accept.
pub const DEFAULT_MAX_BODY: usize = 4 + 1024;

impl Default for H4Framer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BODY)
    }
}

impl H4Framer {
    /// A framer that rejects packets whose body exceeds `max_body` bytes (events are always allowed 257).
    pub fn new(max_body: usize) -> Self {
        let max_body = max_body.max(2 + 255);
        Self { buf: Vec::with_capacity(2 * (max_body + 1)), start: 0, max_body }
    }

    /// A framer with no buffer yet (it allocates on the first [`push`](Self::push)): a cheap
    /// stand-in while the real one is taken out of its owner.
    pub const fn unallocated(max_body: usize) -> Self {
        Self { buf: Vec::new(), start: 0, max_body }
    }

    /// Appends bytes read from the transport. Does not allocate while the buffered bytes fit the
    /// initial capacity (two maximum packets).
    pub fn push(&mut self, data: &[u8]) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 0 && self.buf.len() + data.len() > self.buf.capacity() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered but not yet returned as packets.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Takes the first packet straight from `input` when nothing is buffered and `input` starts
    /// with a whole, valid packet within the bound: the packet and the bytes it used, with no
    /// copy into the framer. `None` otherwise (an error or a part packet included): the caller
    /// then [`push`](Self::push)es the rest, so the framer reports and resynchronises exactly as
    /// it would have.
    #[inline]
    pub fn split_whole<'a>(&self, input: &'a [u8]) -> Option<(H4Packet<'a>, usize)> {
        if self.start != self.buf.len() {
            return None;
        }
        let (&ind, rest) = input.split_first()?;
        let kind = PacketType::from_u8(ind).ok()?;
        let hl = kind.header();
        let plen = kind.payload_len(rest.get(..hl)?);
        if hl + plen > self.max_body {
            return None;
        }
        let body = rest.get(..hl + plen)?;
        Some((H4Packet { kind, body }, 1 + hl + plen))
    }

    /// Returns the next complete packet, `None` if more bytes are needed, or an error when the
    /// stream is out of step (the buffer is then cleared).
    pub fn next_packet(&mut self) -> Option<Result<H4Packet<'_>, DecodeError>> {
        let avail = self.buf.get(self.start..).unwrap_or(&[]);
        let &ind = avail.first()?;
        let kind = match PacketType::from_u8(ind) {
            Ok(k) => k,
            Err(e) => return Some(Err(self.reset(e))),
        };
        let hl = kind.header();
        let header = avail.get(1..1 + hl)?;
        let plen = kind.payload_len(header);
        if hl + plen > self.max_body {
            let e = DecodeError::Oversized { what: "HCI packet", len: hl + plen, max: self.max_body };
            return Some(Err(self.reset(e)));
        }
        let end = 1 + hl + plen;
        if avail.len() < end {
            return None;
        }
        let begin = self.start + 1;
        self.start += end;
        let body = self.buf.get(begin..begin + hl + plen)?;
        Some(Ok(H4Packet { kind, body }))
    }

    fn reset(&mut self, e: DecodeError) -> DecodeError {
        self.buf.clear();
        self.start = 0;
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_joined_packets() {
        let stream = [0x04, 0x0e, 0x04, 0x01, 0x03, 0x0c, 0x00, 0x02, 0x40, 0x00, 0x01, 0x00, 0xAA];
        for split in 0..stream.len() {
            let mut f = H4Framer::default();
            let mut got = alloc::vec::Vec::new();
            for chunk in [&stream[..split], &stream[split..]] {
                f.push(chunk);
                while let Some(p) = f.next_packet() {
                    let p = p.unwrap();
                    got.push((p.kind, p.body.to_vec()));
                }
            }
            assert_eq!(got.len(), 2, "split at {split}");
            assert_eq!(got[0], (PacketType::Event, alloc::vec![0x0e, 0x04, 0x01, 0x03, 0x0c, 0x00]));
            assert_eq!(got[1], (PacketType::Acl, alloc::vec![0x40, 0x00, 0x01, 0x00, 0xAA]));
        }
    }

    #[test]
    fn unknown_indicator_is_reported_and_clears() {
        let mut f = H4Framer::default();
        f.push(&[0x09, 1, 2, 3]);
        assert!(matches!(f.next_packet(), Some(Err(DecodeError::Unknown { code: 9, .. }))));
        assert_eq!(f.pending(), 0);
        assert!(f.next_packet().is_none());
    }

    #[test]
    fn oversized_acl_is_rejected_without_buffering() {
        let mut f = H4Framer::new(300);
        f.push(&[0x02, 0x40, 0x00, 0xff, 0xff]);
        assert!(matches!(f.next_packet(), Some(Err(DecodeError::Oversized { .. }))));
    }

    #[test]
    fn one_shot_decode_checks_lengths() {
        assert!(H4Packet::decode(&[0x01, 0x03, 0x0c, 0x00]).is_ok());
        assert!(matches!(H4Packet::decode(&[0x01, 0x03, 0x0c, 0x01]), Err(DecodeError::Truncated { .. })));
        assert!(matches!(H4Packet::decode(&[0x04, 0x0e, 0x00, 0x00]), Err(DecodeError::Trailing { .. })));
        assert!(H4Packet::decode(&[]).is_err());
    }

    /// Frames `chunks` the way `Host::receive` does: whole packets straight from each chunk
    /// while nothing is buffered, the rest through the buffer. Packets (or errors) in order.
    fn frame_zero_copy(
        f: &mut H4Framer,
        chunks: &[alloc::vec::Vec<u8>],
    ) -> alloc::vec::Vec<Result<(PacketType, alloc::vec::Vec<u8>), DecodeError>> {
        let mut got = alloc::vec::Vec::new();
        for c in chunks {
            let mut rest = &c[..];
            while let Some((p, used)) = f.split_whole(rest) {
                got.push(Ok((p.kind, p.body.to_vec())));
                rest = &rest[used..];
            }
            if !rest.is_empty() {
                f.push(rest);
                while let Some(r) = f.next_packet() {
                    got.push(r.map(|p| (p.kind, p.body.to_vec())));
                }
            }
        }
        got
    }

    fn frame_buffered(
        f: &mut H4Framer,
        chunks: &[alloc::vec::Vec<u8>],
    ) -> alloc::vec::Vec<Result<(PacketType, alloc::vec::Vec<u8>), DecodeError>> {
        let mut got = alloc::vec::Vec::new();
        for c in chunks {
            f.push(c);
            while let Some(r) = f.next_packet() {
                got.push(r.map(|p| (p.kind, p.body.to_vec())));
            }
        }
        got
    }

    #[test]
    fn split_whole_takes_only_whole_packets_when_nothing_is_buffered() {
        let mut f = H4Framer::default();
        let two = [0x04, 0x13, 0x01, 0x00, 0x02, 0x40, 0x00, 0x01, 0x00, 0xAA];
        let (p, used) = f.split_whole(&two).unwrap();
        assert_eq!((p.kind, p.body, used), (PacketType::Event, &two[1..4], 4));
        let (p, used) = f.split_whole(&two[4..]).unwrap();
        assert_eq!((p.kind, p.body, used), (PacketType::Acl, &two[5..], 6));
        // A part packet, an unknown indicator, an oversized length: left to the buffer.
        assert!(f.split_whole(&two[..3]).is_none());
        assert!(f.split_whole(&[0x09, 0, 0]).is_none());
        assert!(H4Framer::new(300).split_whole(&[0x02, 0x40, 0x00, 0xff, 0xff]).is_none());
        // Bytes buffered: nothing is taken around them.
        f.push(&two[..2]);
        assert!(f.split_whole(&two).is_none());
    }

    proptest::proptest! {
        /// Taking whole packets straight from the input changes nothing: the same packets and
        /// errors, in the same order, as the buffer alone, however the stream is cut.
        #[test]
        fn zero_copy_framing_matches_the_buffer(
            chunks in proptest::collection::vec(proptest::collection::vec(
                proptest::prop_oneof![3 => 1u8..=5, 1 => proptest::num::u8::ANY, 4 => 0u8..8], 0..48), 0..12),
        ) {
            let zero_copy = frame_zero_copy(&mut H4Framer::new(40), &chunks);
            let buffered = frame_buffered(&mut H4Framer::new(40), &chunks);
            proptest::prop_assert_eq!(zero_copy, buffered);
        }

        #[test]
        fn framer_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0..16)) {
            let mut f = H4Framer::new(64);
            for c in &chunks {
                f.push(c);
                while let Some(r) = f.next_packet() { let _ = r; }
            }
        }

        #[test]
        fn one_shot_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = H4Packet::decode(&bytes);
        }
    }
}
