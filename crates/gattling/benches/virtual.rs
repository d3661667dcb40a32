//! An in-process ATT round trip over the built-in virtual controller: host A sends a Read
//! Request through its controller and the radio to host B, which answers with a Read Response
//! the same way back. Everything runs on one tokio current-thread runtime, as an embedded
//! application would.

use criterion::{criterion_group, criterion_main, Criterion};
use gattling::proto::gap::ad::AdvDataBuilder;
use gattling::{AdvertisingOptions, ConnectOptions, Host};
use std::time::Duration;

fn att_round_trip(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (central, _peripheral_task) = rt.block_on(async {
        let a = Host::open("virtual:bench-rtt").await.expect("host a");
        let b = Host::open("virtual:bench-rtt").await.expect("host b");
        let data = AdvDataBuilder::new().flags(6).name("rtt").build().expect("ad");
        a.advertise(&AdvertisingOptions { data, ..Default::default() }).await.expect("advertise");
        let central = b.connect(a.address(), ConnectOptions::default()).await.expect("connect");
        let peripheral = a.accept().await.expect("accept");
        // The peripheral answers every Read Request with a 22-byte Read Response.
        let task = tokio::spawn(async move {
            let mut rsp = vec![0x0B];
            rsp.extend_from_slice(&[0x5A; 22]);
            while let Ok(req) = peripheral.recv_att().await {
                if req.first() == Some(&0x0A) && peripheral.send_att(&rsp).is_err() {
                    break;
                }
            }
        });
        (central, task)
    });
    let mut group = c.benchmark_group("virtual");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("att_round_trip", |b| {
        b.to_async(&rt).iter(|| async {
            central.send_att(&[0x0A, 0x03, 0x00]).expect("send");
            let rsp = central.recv_att().await.expect("recv");
            assert_eq!(rsp.len(), 23);
        })
    });
    group.finish();
}

criterion_group!(benches, att_round_trip);
criterion_main!(benches);
