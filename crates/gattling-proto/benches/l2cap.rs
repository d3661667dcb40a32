//! L2CAP reassembly and host receive-path benchmarks (Core Vol 3 Part A §7.2, Core Vol 4 Part E
//! §5.4.2): reassembling a 512-byte SDU from 27-byte ACL fragments, and feeding H4 ACL bytes
//! through `Host::receive` up to a decoded ATT PDU.

use criterion::{criterion_group, criterion_main, Criterion};
use gattling_proto::att::{opcode, AttPdu};
use gattling_proto::gap::BdAddr;
use gattling_proto::hci::event::{ConnectionComplete, Event, LeEvent};
use gattling_proto::hci::AclPacket;
use gattling_proto::host::{Host, HostConfig};
use gattling_proto::l2cap::{self, cid, Reassembler};
use std::hint::black_box;

/// Connection handle used throughout.
const HANDLE: u16 = 0x0040;
/// The LE minimum ACL data length: 27 bytes per fragment.
const ACL_LEN: usize = 27;
/// SDU (L2CAP payload) size for the fragmented cases.
const SDU_LEN: usize = 512;

/// A 512-byte ATT PDU: a Read Response carrying 511 bytes of value.
fn att_512() -> Vec<u8> {
    let mut pdu = vec![opcode::READ_RSP];
    pdu.extend((0..SDU_LEN - 1).map(|i| i as u8));
    pdu
}

/// H4 ACL packets (indicator included) carrying `payload` on the ATT channel.
fn fragments(payload: &[u8], max_acl: usize) -> Vec<Vec<u8>> {
    let mut pkts = Vec::new();
    l2cap::fragment(HANDLE, cid::ATT, payload, max_acl, |p| pkts.push(p));
    pkts
}

/// A host with one connection (handle 0x0040) established, its events drained.
fn connected_host() -> Host {
    let mut host = Host::new(HostConfig::default());
    host.set_acl_buffers(ACL_LEN as u16, 8);
    let mut ev = Vec::new();
    Event::Le(LeEvent::ConnectionComplete(ConnectionComplete {
        status: 0,
        handle: HANDLE,
        role: 1,
        peer_address_type: 0,
        peer_address: BdAddr([1, 2, 3, 4, 5, 6]),
        local_rpa: Default::default(),
        peer_rpa: Default::default(),
        interval: 24,
        latency: 0,
        supervision_timeout: 400,
        clock_accuracy: 0,
        subevent: 1,
    }))
    .encode_h4(&mut ev);
    host.receive(&ev, &mut |_, _| unreachable!("no ATT data yet"));
    while host.poll_event().is_some() {}
    assert!(host.connection(HANDLE).is_some(), "connection not established");
    host
}

/// Feeds `bytes` once and checks that exactly one ATT PDU of `len` bytes decodes and nothing
/// else is reported.
fn check_receive(host: &mut Host, bytes: &[u8], len: usize) {
    let mut got = Vec::new();
    host.receive(bytes, &mut |h, pdu| got.push((h, pdu.len(), AttPdu::decode(pdu).is_ok())));
    assert_eq!(got, [(HANDLE, len, true)], "unexpected ATT delivery");
    assert!(host.poll_event().is_none(), "the receive path reported an event");
    assert!(host.poll_transmit().is_none(), "the receive path queued a packet");
}

/// Reassemble a 512-byte SDU from 27-byte fragments with one reused `Reassembler`.
fn reassemble_512_from_27(c: &mut Criterion) {
    let pkts = fragments(&att_512(), ACL_LEN);
    let acls: Vec<AclPacket<'_>> = pkts.iter().map(|p| AclPacket::decode(&p[1..]).unwrap()).collect();
    assert_eq!(acls.len(), (SDU_LEN + l2cap::HEADER_LEN).div_ceil(ACL_LEN));
    let mut r = Reassembler::new(SDU_LEN);
    let run = |r: &mut Reassembler| {
        let mut len = 0;
        for acl in &acls {
            if let Ok(Some(frame)) = r.push(acl.header.boundary, black_box(acl.data)) {
                len = black_box(frame).payload.len();
            }
        }
        len
    };
    assert_eq!(run(&mut r), SDU_LEN, "reassembly failed");
    c.bench_function("l2cap/reassemble_512_from_27", |b| b.iter(|| run(&mut r)));
}

/// Full host receive path for a single-fragment ATT Read Request, decoded in the callback.
fn host_receive_att_read_req(c: &mut Criterion) {
    let mut host = connected_host();
    let pkts = fragments(&[opcode::READ_REQ, 0x2A, 0x00], ACL_LEN);
    assert_eq!(pkts.len(), 1);
    let bytes = pkts.concat();
    check_receive(&mut host, &bytes, 3);
    c.bench_function("host/receive_att_read_req", |b| {
        b.iter(|| {
            host.receive(black_box(&bytes), &mut |h, pdu| {
                let _ = black_box((h, AttPdu::decode(pdu)));
            })
        })
    });
    if let Some(e) = host.poll_event() {
        panic!("the receive path reported {e:?}");
    }
}

/// Full host receive path for a 512-byte ATT PDU in 27-byte fragments, fed as one byte buffer.
fn host_receive_att_512_fragmented(c: &mut Criterion) {
    let mut host = connected_host();
    let bytes = fragments(&att_512(), ACL_LEN).concat();
    check_receive(&mut host, &bytes, SDU_LEN);
    c.bench_function("host/receive_att_512_fragmented", |b| {
        b.iter(|| {
            host.receive(black_box(&bytes), &mut |h, pdu| {
                let _ = black_box((h, AttPdu::decode(pdu)));
            })
        })
    });
    if let Some(e) = host.poll_event() {
        panic!("the receive path reported {e:?}");
    }
}

criterion_group!(benches, reassemble_512_from_27, host_receive_att_read_req, host_receive_att_512_fragmented);
criterion_main!(benches);
