//! The virtual controller's radio fed host bytes (what any TCP client writes to gattling's
//! controller server), on two controllers already connected to each other. Every step goes to
//! one radio through `Radio::receive` and to a twin radio through `Radio::relay_acl` where that
//! takes it (the in-process transport's fast path): both hosts must get the same bytes from
//! either radio, and nothing may panic.
//!
//! Input: steps of `[flags, len, bytes[len], advance]`. Flags bit 0 picks the writing host
//! (central or peripheral); bit 1 writes the bytes as the data of one ACL packet on the writer's
//! link (so steps reach the relay and the peer), the flags' bits 2-3 giving its boundary flag;
//! otherwise the bytes are raw H4. `advance` moves time by that many 100 µs.
#![no_main]

use gattling_controller::{ControllerConfig, ControllerId, Radio, Relay};
use gattling_proto::hci::{AclHeader, AclPacket, PacketBoundary};
use libfuzzer_sys::fuzz_target;

/// Two controllers connected to each other: the radio, the two ids (central, peripheral) and
/// their connection handles.
fn connected() -> Option<(Radio, [ControllerId; 2], [u16; 2])> {
    let mut r = Radio::new(0x5EED);
    let ids = [r.attach(ControllerConfig::default()), r.attach(ControllerConfig::default())];
    let (c, p) = r.connect_pair(ids[0], ids[1])?;
    Some((r, ids, [c, p]))
}

/// Everything each host has been sent so far, appended to `streams`.
fn drain(r: &mut Radio, ids: &[ControllerId; 2], streams: &mut [Vec<u8>; 2]) {
    for (i, id) in ids.iter().enumerate() {
        for packet in r.take_output(*id) {
            streams[i].extend_from_slice(&packet);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (Some((mut plain, ids, handles)), Some((mut relayed, _, _))) = (connected(), connected()) else {
        panic!("two controllers on a fresh radio always connect");
    };
    let (mut a, mut b) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    let mut now = 0u64;
    let mut rest = data;
    while let [flags, len, tail @ ..] = rest {
        let take = (*len as usize).min(tail.len());
        let (bytes, after) = tail.split_at(take);
        let (advance, after) = match after {
            [adv, more @ ..] => (*adv, more),
            [] => (0, after),
        };
        rest = after;
        let who = usize::from(flags & 1);
        let mut wire = Vec::new();
        if flags & 2 != 0 {
            let boundary = match (flags >> 2) & 3 {
                0 => PacketBoundary::FirstNonFlushable,
                1 => PacketBoundary::Continuing,
                2 => PacketBoundary::FirstFlushable,
                _ => PacketBoundary::Complete,
            };
            let header = AclHeader { handle: handles[who], boundary, broadcast: 0, len: bytes.len() as u16 };
            AclPacket { header, data: bytes }.encode_h4(&mut wire);
        } else {
            wire.extend_from_slice(bytes);
        }
        plain.receive(ids[who], &wire);
        match relayed.relay_acl(ids[who], &wire) {
            Relay::General => relayed.receive(ids[who], &wire),
            Relay::Done => {}
            Relay::Deliver { to, header } => {
                let i = ids.iter().position(|id| *id == to).expect("the relay names a controller of the radio");
                relayed.write_relayed(to, header, &wire, &mut b[i]);
            }
        }
        now += u64::from(advance) * 100;
        plain.advance(now);
        relayed.advance(now);
        drain(&mut plain, &ids, &mut a);
        drain(&mut relayed, &ids, &mut b);
        assert_eq!(a, b, "the relay gave a host other bytes than receive");
    }
});
