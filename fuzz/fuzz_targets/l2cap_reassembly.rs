//! `Reassembler::push` on a sequence of ACL fragments, with a small PDU bound: a returned frame
//! never exceeds the bound and is a well-formed B-frame.
//!
//! Input: byte 0 sets the maximum payload (0..=63). Then records of one header byte (bits 0-1:
//! the packet boundary flag, bits 2-7: fragment length 0..=63) followed by that many bytes (fewer
//! at the end of the input).
#![no_main]

use gattling_proto::hci::acl::PacketBoundary;
use gattling_proto::l2cap::{BFrame, Reassembler, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fn boundary(bits: u8) -> PacketBoundary {
    match bits & 0b11 {
        0b00 => PacketBoundary::FirstNonFlushable,
        0b01 => PacketBoundary::Continuing,
        0b10 => PacketBoundary::FirstFlushable,
        _ => PacketBoundary::Complete,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, mut rest)) = data.split_first() else { return };
    let max = usize::from(ctl % 64);
    let mut r = Reassembler::new(max);
    while let Some((&h, tail)) = rest.split_first() {
        let len = usize::from(h >> 2).min(tail.len());
        let (frag, next) = tail.split_at(len);
        rest = next;
        let pb = boundary(h);

        // The one-shot decoder on each fragment on its own.
        if let Ok(f) = BFrame::decode(frag) {
            assert_eq!(f.payload.len() + HEADER_LEN, frag.len());
        }

        if let Ok(Some(frame)) = r.push(pb, frag) {
            assert!(frame.payload.len() <= max, "payload of {} bytes over the maximum {max}", frame.payload.len());
            let (cid, payload) = (frame.cid, frame.payload.to_vec());
            // A frame carried whole by one start fragment is that fragment, decoded.
            if pb.is_start() {
                assert_eq!(BFrame::decode(frag).map(|f| (f.cid, f.payload.to_vec())), Ok((cid, payload)));
            }
            assert!(!r.in_progress(), "still collecting after delivering a frame");
        }
    }
});
