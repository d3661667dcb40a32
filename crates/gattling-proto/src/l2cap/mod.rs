//! L2CAP basic mode on the LE fixed channels (Core Vol 3 Part A §3, §2.1): the basic header,
//! bounded reassembly of ACL fragments, fragmentation to the controller's ACL size, and the LE
//! signaling channel.

pub mod signaling;

use crate::codec::DecodeError;
use crate::hci::acl::{AclHeader, PacketBoundary};
use alloc::vec::Vec;

/// LE fixed channel identifiers (Core Vol 3 Part A §2.1).
pub mod cid {
    /// Attribute Protocol.
    pub const ATT: u16 = 0x0004;
    /// LE L2CAP signaling channel.
    pub const LE_SIGNALING: u16 = 0x0005;
    /// Security Manager Protocol.
    pub const SMP: u16 = 0x0006;
}

/// Length of the basic L2CAP header: length(2) + channel id(2) (Core Vol 3 Part A §3.1).
pub const HEADER_LEN: usize = 4;

/// One complete basic-mode L2CAP PDU (B-frame), borrowed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BFrame<'a> {
    /// Destination channel.
    pub cid: u16,
    /// Information payload.
    pub payload: &'a [u8],
}

impl<'a> BFrame<'a> {
    /// Decodes a complete B-frame; the length field must match the data exactly.
    pub fn decode(pdu: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = crate::codec::Reader::new(pdu, "L2CAP B-frame");
        let len = r.u16()? as usize;
        let cid = r.u16()?;
        let payload = r.take(len)?;
        r.finish()?;
        Ok(BFrame { cid, payload })
    }
}

/// Why an incoming L2CAP PDU was dropped during reassembly.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum ReassemblyError {
    /// The PDU announced a length above the configured maximum; its fragments are discarded
    /// as they arrive without being buffered.
    #[error("L2CAP PDU of {len} bytes exceeds the maximum of {max}; discarded")]
    TooLong {
        /// Announced length including the header.
        len: usize,
        /// Configured maximum including the header.
        max: usize,
    },
    /// A continuation fragment arrived with no PDU in progress.
    #[error("L2CAP continuation fragment without a start; dropped")]
    UnexpectedContinuation,
    /// A new PDU started before the previous one was complete; the partial PDU was dropped.
    #[error("L2CAP PDU interrupted by a new start after {have} of {need} bytes; partial PDU dropped")]
    Interrupted {
        /// Bytes received of the dropped PDU.
        have: usize,
        /// Bytes it announced.
        need: usize,
    },
    /// The fragments carried more bytes than the PDU's length field announced.
    #[error("L2CAP fragments overran the announced length of {need} bytes; dropped")]
    Overrun {
        /// Announced length including the header.
        need: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    /// Collecting fragments of a PDU of this total length (header included).
    Collecting(usize),
    /// Skipping this many more bytes of an oversized PDU.
    Discarding(usize),
    /// The buffer holds a complete PDU handed out last time; clear on the next fragment.
    Delivered,
}

/// Reassembles L2CAP PDUs from ACL fragments for one connection, within a fixed bound.
///
/// A PDU that arrives in one ACL packet is returned as a slice of that packet (no copy); a
/// fragmented one is collected in a buffer grown to that PDU when its start arrives. The buffer
/// is kept while fragmented PDUs follow one another (no allocation per PDU) and freed at the
/// next PDU that arrives whole: a link back to small PDUs holds no buffer.
#[derive(Debug)]
pub struct Reassembler {
    buf: Vec<u8>,
    max_pdu: usize,
    state: State,
}

impl Reassembler {
    /// A reassembler accepting PDUs whose payload is at most `max_payload` bytes.
    pub fn new(max_payload: usize) -> Self {
        let max_pdu = max_payload + HEADER_LEN;
        Self { buf: Vec::new(), max_pdu, state: State::Idle }
    }

    /// Bytes of buffer held for fragmented PDUs: 0 until one arrives and again after the next
    /// PDU that arrives whole (Core Vol 3 Part A §7.2).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Takes one ACL fragment; returns a complete frame when this fragment finishes one.
    pub fn push<'a>(
        &'a mut self,
        boundary: PacketBoundary,
        data: &'a [u8],
    ) -> Result<Option<BFrame<'a>>, ReassemblyError> {
        if self.state == State::Delivered {
            self.buf.clear();
            self.state = State::Idle;
        }
        if boundary.is_start() {
            let interrupted = match self.state {
                State::Collecting(need) => Some(ReassemblyError::Interrupted { have: self.buf.len(), need }),
                _ => None,
            };
            self.buf.clear();
            self.state = State::Idle;
            let started = self.start(data);
            return match interrupted {
                // Report the loss; the new PDU has started (or finished) regardless.
                Some(e) if matches!(started, Ok(None)) => Err(e),
                _ => started,
            };
        }
        match self.state {
            State::Idle | State::Delivered => Err(ReassemblyError::UnexpectedContinuation),
            State::Discarding(left) => {
                self.state = if data.len() >= left { State::Idle } else { State::Discarding(left - data.len()) };
                Ok(None)
            }
            State::Collecting(need) => {
                if self.buf.len() + data.len() > need {
                    self.buf.clear();
                    self.state = State::Idle;
                    return Err(ReassemblyError::Overrun { need });
                }
                self.buf.extend_from_slice(data);
                self.finish_if_complete(need)
            }
        }
    }

    fn start<'a>(&'a mut self, data: &'a [u8]) -> Result<Option<BFrame<'a>>, ReassemblyError> {
        let need = match data.get(..2) {
            Some(&[a, b]) => u16::from_le_bytes([a, b]) as usize + HEADER_LEN,
            _ => {
                // A start shorter than the length field: buffer and wait (max_pdu >= 4).
                self.buf.extend_from_slice(data);
                self.state = State::Collecting(usize::MAX);
                return Ok(None);
            }
        };
        if need > self.max_pdu {
            self.state = State::Discarding(need.saturating_sub(data.len()));
            if data.len() >= need {
                self.state = State::Idle;
            }
            return Err(ReassemblyError::TooLong { len: need, max: self.max_pdu });
        }
        match data.len() {
            n if n == need => {
                // Back to whole PDUs: give the fragments' buffer back.
                if self.buf.capacity() != 0 {
                    self.buf = Vec::new();
                }
                Ok(BFrame::decode(data).ok())
            }
            n if n > need => Err(ReassemblyError::Overrun { need }),
            _ => {
                // Grown to this PDU only (at most `max_pdu`), on demand.
                self.buf.reserve_exact(need.saturating_sub(self.buf.capacity()));
                self.buf.extend_from_slice(data);
                self.state = State::Collecting(need);
                Ok(None)
            }
        }
    }

    fn finish_if_complete(&mut self, need: usize) -> Result<Option<BFrame<'_>>, ReassemblyError> {
        let need = if need == usize::MAX {
            // The length field arrived split across fragments.
            match self.buf.get(..2) {
                Some(&[a, b]) => {
                    let n = u16::from_le_bytes([a, b]) as usize + HEADER_LEN;
                    if n > self.max_pdu {
                        let have = self.buf.len();
                        self.buf.clear();
                        self.state = if have >= n { State::Idle } else { State::Discarding(n - have) };
                        return Err(ReassemblyError::TooLong { len: n, max: self.max_pdu });
                    }
                    if self.buf.len() > n {
                        self.buf.clear();
                        self.state = State::Idle;
                        return Err(ReassemblyError::Overrun { need: n });
                    }
                    self.state = State::Collecting(n);
                    n
                }
                _ => return Ok(None),
            }
        } else {
            need
        };
        if self.buf.len() < need {
            return Ok(None);
        }
        self.state = State::Delivered;
        Ok(BFrame::decode(&self.buf).ok())
    }

    /// True while part of a PDU is buffered.
    pub fn in_progress(&self) -> bool {
        matches!(self.state, State::Collecting(_))
    }
}

/// Splits one L2CAP PDU (header added here) into H4 ACL packets of at most `max_acl` data bytes,
/// first fragment marked "first non-flushable", the rest "continuing" (Core Vol 3 Part A §7.2).
pub fn fragment(handle: u16, cid: u16, payload: &[u8], max_acl: usize, emit: impl FnMut(Vec<u8>)) {
    fragment_into(handle, cid, payload, max_acl, Vec::new, emit)
}

/// Writes `payload` on channel `cid` as one H4 ACL packet into `out` (its contents replaced):
/// what [`fragment_into`] makes when the whole B-frame fits one fragment (the caller checks
/// `payload.len() + 4` against the controller's ACL size).
#[inline]
pub fn single_fragment(handle: u16, cid: u16, payload: &[u8], out: &mut Vec<u8>) {
    let acl = AclHeader {
        handle,
        boundary: PacketBoundary::FirstNonFlushable,
        broadcast: 0,
        len: (HEADER_LEN + payload.len()) as u16,
    }
    .to_bytes();
    let [l0, l1] = (payload.len() as u16).to_le_bytes();
    let [c0, c1] = cid.to_le_bytes();
    out.clear();
    out.reserve(1 + 4 + HEADER_LEN + payload.len());
    out.extend_from_slice(&[crate::hci::PacketType::Acl as u8, acl[0], acl[1], acl[2], acl[3], l0, l1, c0, c1]);
    out.extend_from_slice(payload);
}

/// Like [`fragment`], writing each packet into a buffer from `buffer` (a pool of cleared
/// vectors, so steady-state sending does not allocate).
pub fn fragment_into(
    handle: u16,
    cid: u16,
    payload: &[u8],
    max_acl: usize,
    mut buffer: impl FnMut() -> Vec<u8>,
    mut emit: impl FnMut(Vec<u8>),
) {
    let max_acl = max_acl.max(1);
    let mut header = [0u8; HEADER_LEN];
    header[..2].copy_from_slice(&(payload.len() as u16).to_le_bytes());
    header[2..].copy_from_slice(&cid.to_le_bytes());
    let total = HEADER_LEN + payload.len();
    let mut offset = 0;
    while offset < total {
        let n = (total - offset).min(max_acl);
        let boundary = if offset == 0 { PacketBoundary::FirstNonFlushable } else { PacketBoundary::Continuing };
        let acl = AclHeader { handle, boundary, broadcast: 0, len: n as u16 };
        let mut pkt = buffer();
        pkt.clear();
        pkt.reserve(1 + 4 + n);
        pkt.push(crate::hci::PacketType::Acl as u8);
        pkt.extend_from_slice(&acl.to_bytes());
        // The part of the header in this fragment, then the part of the payload.
        let end = offset + n;
        pkt.extend_from_slice(header.get(offset.min(HEADER_LEN)..end.min(HEADER_LEN)).unwrap_or(&[]));
        let (from, to) = (offset.saturating_sub(HEADER_LEN), end.saturating_sub(HEADER_LEN));
        pkt.extend_from_slice(payload.get(from..to).unwrap_or(&[]));
        emit(pkt);
        offset += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hci::acl::AclPacket;
    use proptest::prelude::*;

    fn frags(payload: &[u8], max_acl: usize) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        fragment(0x40, cid::ATT, payload, max_acl, |p| v.push(p));
        v
    }

    #[test]
    fn single_fragment_is_zero_copy() {
        let f = frags(&[0x0a, 0x01, 0x00], 27);
        assert_eq!(f.len(), 1);
        let acl = AclPacket::decode(&f[0][1..]).unwrap();
        let mut r = Reassembler::new(512);
        let frame = r.push(acl.header.boundary, acl.data).unwrap().unwrap();
        assert_eq!(frame, BFrame { cid: cid::ATT, payload: &[0x0a, 0x01, 0x00] });
        assert!(core::ptr::eq(frame.payload.as_ptr(), acl.data[4..].as_ptr()));
    }

    proptest! {
        /// The one-fragment writer makes exactly what the general fragmenter makes for a PDU
        /// that fits one ACL packet, into a reused buffer.
        #[test]
        fn single_fragment_matches_fragment(
            handle in 0u16..0x0F00,
            cid in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            old in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut whole = Vec::new();
            fragment(handle, cid, &payload, payload.len() + HEADER_LEN, |p| whole.push(p));
            let mut out = old;
            single_fragment(handle, cid, &payload, &mut out);
            prop_assert_eq!(whole, alloc::vec![out]);
        }
    }

    #[test]
    fn oversized_pdu_is_discarded_without_buffering() {
        let payload = alloc::vec![7u8; 100];
        let f = frags(&payload, 27);
        let mut r = Reassembler::new(50);
        let mut results = Vec::new();
        for p in &f {
            let acl = AclPacket::decode(&p[1..]).unwrap();
            results.push(r.push(acl.header.boundary, acl.data).map(|o| o.is_some()));
        }
        assert_eq!(results[0], Err(ReassemblyError::TooLong { len: 104, max: 54 }));
        assert!(results[1..].iter().all(|r| *r == Ok(false)));
        assert!(r.buf.capacity() <= 54);
        // The next PDU is received normally.
        let g = frags(&[1, 2, 3], 27);
        let acl = AclPacket::decode(&g[0][1..]).unwrap();
        assert_eq!(r.push(acl.header.boundary, acl.data).unwrap().unwrap().payload, &[1, 2, 3]);
    }

    #[test]
    fn continuation_without_start_and_interruption() {
        let mut r = Reassembler::new(100);
        assert_eq!(r.push(PacketBoundary::Continuing, &[1, 2]), Err(ReassemblyError::UnexpectedContinuation));
        assert_eq!(r.push(PacketBoundary::FirstFlushable, &[10, 0, 4, 0, 1]), Ok(None));
        assert_eq!(
            r.push(PacketBoundary::FirstFlushable, &[1, 0, 4, 0, 9]).unwrap().map(|f| f.payload.to_vec()),
            Some(alloc::vec![9])
        );
        assert_eq!(r.push(PacketBoundary::FirstFlushable, &[3, 0, 4, 0, 1]), Ok(None));
        assert_eq!(
            r.push(PacketBoundary::FirstFlushable, &[1, 0, 4, 0]),
            Err(ReassemblyError::Interrupted { have: 5, need: 7 })
        );
        assert_eq!(r.push(PacketBoundary::Continuing, &[1, 2]), Err(ReassemblyError::Overrun { need: 5 }));
    }

    #[test]
    fn buffer_grows_to_the_pdu_and_is_released_at_the_next_whole_pdu() {
        let mut r = Reassembler::new(512);
        assert_eq!(r.capacity(), 0, "nothing held before a fragmented PDU");
        let payload = alloc::vec![5u8; 300];
        let f = frags(&payload, 27);
        let mut got = None;
        for p in &f {
            let acl = AclPacket::decode(&p[1..]).unwrap();
            if let Some(frame) = r.push(acl.header.boundary, acl.data).unwrap() {
                got = Some(frame.payload.to_vec());
            }
            assert!(r.capacity() <= 304, "grown to this PDU only: {}", r.capacity());
        }
        assert_eq!(got, Some(payload.clone()));
        // The next fragmented PDU reuses the buffer.
        for p in &f {
            let acl = AclPacket::decode(&p[1..]).unwrap();
            r.push(acl.header.boundary, acl.data).unwrap();
            assert_eq!(r.capacity(), 304, "kept while fragmented PDUs follow one another");
        }
        // A PDU that arrives whole gives it back.
        let g = frags(&[1, 2, 3], 27);
        let acl = AclPacket::decode(&g[0][1..]).unwrap();
        assert_eq!(r.push(acl.header.boundary, acl.data).unwrap().unwrap().payload, &[1, 2, 3]);
        assert_eq!(r.capacity(), 0, "released at the next whole PDU");
    }

    #[test]
    fn header_split_across_fragments() {
        let mut r = Reassembler::new(100);
        assert_eq!(r.push(PacketBoundary::FirstFlushable, &[2]), Ok(None));
        assert_eq!(r.push(PacketBoundary::Continuing, &[0, 4]), Ok(None));
        let f = r.push(PacketBoundary::Continuing, &[0, 0xAA, 0xBB]).unwrap().unwrap();
        assert_eq!(f, BFrame { cid: 4, payload: &[0xAA, 0xBB] });
    }

    proptest! {
        #[test]
        fn fragment_then_reassemble(payload in proptest::collection::vec(any::<u8>(), 0..600), max_acl in 1usize..300) {
            let mut r = Reassembler::new(600);
            let mut got = None;
            let pieces = frags(&payload, max_acl);
            let last = pieces.len() - 1;
            for (i, p) in pieces.iter().enumerate() {
                let acl = AclPacket::decode(&p[1..]).unwrap();
                prop_assert!(acl.data.len() <= max_acl);
                let out = r.push(acl.header.boundary, acl.data).unwrap();
                if i == last {
                    got = out.map(|f| (f.cid, f.payload.to_vec()));
                } else {
                    prop_assert!(out.is_none());
                }
            }
            prop_assert_eq!(got, Some((cid::ATT, payload)));
        }

        #[test]
        fn arbitrary_fragments_never_panic_and_stay_bounded(
            frags in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..80)), 0..20)
        ) {
            let mut r = Reassembler::new(64);
            for (start, data) in &frags {
                let pb = if *start { PacketBoundary::FirstFlushable } else { PacketBoundary::Continuing };
                if let Ok(Some(f)) = r.push(pb, data) {
                    prop_assert!(f.payload.len() <= 64);
                }
                prop_assert!(r.buf.len() <= 68);
            }
        }
    }
}
