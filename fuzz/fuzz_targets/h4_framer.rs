//! H4 framing of a byte stream: `H4Framer` fed in chunks, cross-checked against the one-shot
//! `H4Packet::decode` and against the same stream pushed in one piece.
//!
//! Input: byte 0 picks the chunk size (bits 0-5: 1..=64 bytes) and the framer bound (bit 6:
//! 64-byte bodies, which the framer raises to 257, or the default); the rest is the stream.
#![no_main]

use gattling_proto::hci::h4::DEFAULT_MAX_BODY;
use gattling_proto::hci::{H4Framer, H4Packet, PacketType};
use libfuzzer_sys::fuzz_target;

/// Packets (indicator + body) until the first error, and whether an error was reported.
fn frame(stream: &[u8], chunk: usize, max_body: usize) -> (Vec<Vec<u8>>, bool) {
    let mut framer = H4Framer::new(max_body);
    let bound = max_body.max(2 + 255);
    let mut packets = Vec::new();
    let mut pushed = 0usize;
    for piece in stream.chunks(chunk.max(1)) {
        framer.push(piece);
        pushed += piece.len();
        while let Some(next) = framer.next_packet() {
            match next {
                Ok(p) => {
                    assert!(p.body.len() <= bound, "packet body {} over the bound {bound}", p.body.len());
                    let mut wire = Vec::with_capacity(1 + p.body.len());
                    p.encode(&mut wire);
                    // What the framer cut out must be exactly one packet for the one-shot decoder.
                    let again = H4Packet::decode(&wire).expect("framed packet fails one-shot decode");
                    assert_eq!(again, p);
                    packets.push(wire);
                }
                Err(_) => {
                    assert_eq!(framer.pending(), 0, "the framer keeps bytes after an error");
                    return (packets, true);
                }
            }
        }
        assert!(framer.pending() <= pushed);
    }
    (packets, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, stream)) = data.split_first() else { return };
    let chunk = usize::from(ctl & 0x3F) + 1;
    let max_body = if ctl & 0x40 != 0 { 64 } else { DEFAULT_MAX_BODY };

    let (chunked, chunked_err) = frame(stream, chunk, max_body);
    let (whole, whole_err) = frame(stream, stream.len().max(1), max_body);
    // Up to the first error the stream's framing cannot depend on how it was split.
    assert_eq!(chunked, whole, "framing depends on the chunking");
    assert_eq!(chunked_err, whole_err, "an error depends on the chunking");

    // The one-shot decoder on the raw input.
    if let Ok(p) = H4Packet::decode(stream) {
        assert_eq!(p.body.len() + 1, stream.len());
        assert_eq!(PacketType::from_u8(stream[0]).ok(), Some(p.kind));
    }
});
