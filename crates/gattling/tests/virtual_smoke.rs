//! Smoke test: two gattling hosts on an in-process virtual radio find and connect to each other.

use gattling::proto::gap::ad::{AdvData, AdvDataBuilder};
use gattling::{AdvertisingOptions, ConnectOptions, Host, LinkEnd, ScanOptions};
use std::time::Duration;

#[tokio::test]
async fn two_hosts_meet_on_a_virtual_radio() {
    let a = Host::open("virtual:smoke").await.expect("host a");
    let b = Host::open("virtual:smoke").await.expect("host b");
    let data = AdvDataBuilder::new().flags(6).name("smoke-a").build().expect("ad");
    a.advertise(&AdvertisingOptions { data, ..Default::default() }).await.expect("advertise");
    let mut scan = b.scan(ScanOptions::default()).await.expect("scan");
    let report = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let r = scan.next().await.expect("report");
            if AdvData::parse_lenient(&r.data).local_name() == Some("smoke-a") {
                return r;
            }
        }
    })
    .await
    .expect("found");
    scan.stop().await.expect("stop");
    assert_eq!(report.address, a.address());
    let c = b.connect(report.address, ConnectOptions::default()).await.expect("connect");
    let p = a.accept().await.expect("accept");
    c.send_att(&[0x0A, 0x01, 0x00]).expect("send");
    assert_eq!(p.recv_att().await.expect("recv"), [0x0A, 0x01, 0x00]);
    assert_eq!(c.disconnect(0x13).await.expect("disconnect"), 0x16);
    assert_eq!(p.closed().await, LinkEnd::Disconnected(0x13));
}
