//! Robustness: whatever several hosts write, interleaved with time passing, the radio neither
//! panics nor emits a malformed H4 packet, and links it did not break keep their handles.

mod common;

use common::*;
use gattling_controller::{ControllerConfig, Fault, Radio};
use gattling_proto::hci::command::{Command, ConnParams, Opcode};
use gattling_proto::hci::event::Event;
use gattling_proto::hci::{AclPacket, H4Packet, PacketBoundary, PacketType};
use proptest::prelude::*;

/// Opcodes the controller knows, so that structured inputs reach deep into command handling.
const OPCODES: &[u16] = &[
    0x0406, 0x0C01, 0x0C03, 0x1001, 0x1002, 0x1003, 0x1005, 0x1009, 0x0C6C, 0x0C6D, 0x2001, 0x2002, 0x2003, 0x2005,
    0x2006, 0x2007, 0x2008, 0x2009, 0x200A, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2010, 0x2011, 0x2012, 0x2013,
    0x2016, 0x2017, 0x2018, 0x2019, 0x201A, 0x201B, 0x201C, 0x2020, 0x2021, 0x2022, 0x2023, 0x2024, 0x202F, 0x2030,
    0x2031, 0x2032, 0x2060, 0xFC01,
];

#[derive(Clone, Debug)]
enum Step {
    /// Arbitrary bytes from host `usize`.
    Bytes(usize, Vec<u8>),
    /// A well-framed command with arbitrary parameters.
    Command(usize, u16, Vec<u8>),
    /// A well-framed ACL packet on a small handle.
    Acl(usize, u16, u8, Vec<u8>),
    /// Time passes.
    Advance(u64),
    /// A fault for later ACL traffic.
    Fault(Fault),
    /// The radio loses a link.
    DropLink(usize, u16),
}

fn step() -> impl Strategy<Value = Step> {
    let host = 0usize..4;
    prop_oneof![
        3 => (host.clone(), proptest::collection::vec(any::<u8>(), 0..80)).prop_map(|(h, b)| Step::Bytes(h, b)),
        4 => (host.clone(), proptest::sample::select(OPCODES), proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(h, o, p)| Step::Command(h, o, p)),
        3 => (host.clone(), 0u16..4, 0u8..4, proptest::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(h, handle, pb, d)| Step::Acl(h, handle, pb, d)),
        3 => (0u64..3_000_000).prop_map(Step::Advance),
        1 => prop_oneof![
            Just(Fault::None),
            (0u64..50_000).prop_map(Fault::DelayAcl),
            (0u32..5).prop_map(Fault::DropEveryNthAcl)
        ]
        .prop_map(Step::Fault),
        1 => (host, 0u16..4).prop_map(|(h, handle)| Step::DropLink(h, handle)),
    ]
}

/// Every packet a controller emits must be a well-formed H4 event or ACL packet.
fn check_output(radio: &mut Radio, ids: &[gattling_controller::ControllerId]) {
    for &id in ids {
        for p in radio.take_output(id) {
            let h4 = H4Packet::decode(&p).unwrap_or_else(|e| panic!("malformed H4 from the controller {p:02x?}: {e}"));
            match h4.kind {
                PacketType::Event => {
                    Event::decode(h4.body).unwrap_or_else(|e| panic!("malformed event {p:02x?}: {e}"));
                }
                PacketType::Acl => {
                    let a = AclPacket::decode(h4.body).unwrap_or_else(|e| panic!("malformed ACL {p:02x?}: {e}"));
                    assert!(
                        matches!(a.header.boundary, PacketBoundary::FirstFlushable | PacketBoundary::Continuing),
                        "controller-to-host LE ACL uses PB 0b10 or 0b01: {p:02x?}"
                    );
                }
                other => panic!("controller emitted a {other:?} packet"),
            }
        }
    }
    radio.take_touched();
}

proptest! {
    #[test]
    fn arbitrary_host_input_never_panics_nor_yields_malformed_output(steps in proptest::collection::vec(step(), 1..60)) {
        // Two controllers connected through the bench, two more idle.
        let mut b = Bench::new(42);
        let c = b.add_raw(ControllerConfig::default());
        let p = b.add_raw(ControllerConfig::rootcanal_like());
        b.add_raw(ControllerConfig { acl_len: 64, acl_num: 2, public_address: None });
        b.add_raw(ControllerConfig::default());
        b.connect(c, p);
        let ids: Vec<_> = b.nodes.iter().map(|n| n.id).collect();
        let mut radio = b.radio;
        let mut now = b.now;
        for s in steps {
            match s {
                Step::Bytes(h, bytes) => radio.receive(ids[h], &bytes),
                Step::Command(h, opcode, params) => {
                    let mut out = Vec::new();
                    Command::Other { opcode: Opcode(opcode), params }.encode_h4(&mut out);
                    radio.receive(ids[h], &out);
                }
                Step::Acl(h, handle, pb, data) => {
                    let boundary = match pb {
                        0 => PacketBoundary::FirstNonFlushable,
                        1 => PacketBoundary::Continuing,
                        2 => PacketBoundary::FirstFlushable,
                        _ => PacketBoundary::Complete,
                    };
                    let mut out = Vec::new();
                    acl_bytes(handle, boundary, &data, &mut out);
                    radio.receive(ids[h], &out);
                }
                Step::Advance(us) => {
                    now += us;
                    radio.advance(now);
                }
                Step::Fault(f) => radio.set_fault(f),
                Step::DropLink(h, handle) => {
                    radio.drop_link(ids[h], handle);
                }
            }
            check_output(&mut radio, &ids);
            if let Some(t) = radio.next_timer() {
                prop_assert!(t >= now, "a timer is due in the past after advance: {} < {}", t, now);
            }
            for (id, _) in radio.take_log() {
                prop_assert!(ids.contains(&id));
            }
        }
        // Drain everything still scheduled within a minute of virtual time.
        radio.advance(now + 60_000_000);
        check_output(&mut radio, &ids);
    }

    #[test]
    fn a_connection_survives_garbage_from_other_hosts(garbage in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..64), 1..20)) {
        let mut b = Bench::new(7);
        let (c, p, g) = (b.add_raw(ControllerConfig::default()), b.add_raw(ControllerConfig::default()), b.add_raw(ControllerConfig::default()));
        let (ch, ph) = b.connect_with(c, p, ConnParams::default());
        for chunk in &garbage {
            b.send_raw(g, chunk);
        }
        prop_assert_eq!(b.radio.links(), 1);
        let m = b.mark(p);
        b.send_acl(c, ch, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 0x13]);
        b.pump();
        let got = b.node(p).acl_since(m);
        prop_assert_eq!(got.len(), 1);
        prop_assert_eq!(got[0].handle, ph);
    }
}
