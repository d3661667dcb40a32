//! The radio's per-packet cost: routing one ACL packet between two controllers (and returning
//! its buffer) with 0, 100 and 1000 other idle links on the radio. The cost must not grow with
//! the number of idle links.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use gattling_controller::{ControllerConfig, ControllerId, Radio};
use gattling_proto::hci::{AclHeader, AclPacket, PacketBoundary};
use std::hint::black_box;

/// Connects a new central to a new peripheral; returns the central and its handle.
fn pair(radio: &mut Radio) -> (ControllerId, u16) {
    let p = radio.attach(ControllerConfig::default());
    let c = radio.attach(ControllerConfig::default());
    let (handle, _) = radio.connect_pair(c, p).expect("two fresh controllers connect");
    (c, handle)
}

fn route_acl(c: &mut Criterion) {
    let mut group = c.benchmark_group("radio/route_acl_27");
    for idle in [0usize, 100, 1000] {
        let mut radio = Radio::default();
        for _ in 0..idle {
            pair(&mut radio);
        }
        let (central, handle) = pair(&mut radio);
        let data = [0x42u8; 27];
        let mut pkt = Vec::new();
        let header = AclHeader { handle, boundary: PacketBoundary::FirstNonFlushable, broadcast: 0, len: 27 };
        AclPacket { header, data: &data }.encode_h4(&mut pkt);
        let peripheral = ControllerId(central.0 - 1);
        group.bench_with_input(BenchmarkId::from_parameter(idle), &idle, |b, _| {
            b.iter(|| {
                radio.receive(central, black_box(&pkt));
                black_box(radio.take_output(peripheral).count());
                black_box(radio.take_output(central).count());
                radio.take_touched();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, route_acl);
criterion_main!(benches);
