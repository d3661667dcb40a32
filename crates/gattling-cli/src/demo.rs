//! `gattling demo`: two hosts on one radio. Alice serves the Pycom example's database (plus a
//! counter); bob scans, prints her advertisement, connects, discovers and prints the tree,
//! reads (her read handler changes its answer after two reads), writes, subscribes to the
//! counter for three notifications and disconnects. Every step is timed.

use crate::{names, tree};
use gattling::gatt::demo;
use gattling::gatt_client::{ClientOptions, GattClient};
use gattling::proto::gap::ad::{flags, AdvData, AdvDataBuilder};
use gattling::{AdvertisingKind, AdvertisingOptions, Host, HostOptions, ScanOptions};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reads of the changing characteristic answered with the stored value before the answer changes.
const READS_BEFORE_CHANGE: u32 = 2;

/// The controller both hosts use: the default `virtual` becomes a radio of this process alone.
fn radio(transport: &str) -> String {
    if transport == "virtual" {
        format!("virtual:demo-{}", std::process::id())
    } else {
        transport.to_string()
    }
}

pub async fn run(transport: &str, capture: Option<Arc<gattling::btsnoop::Btsnoop>>) -> Result<(), gattling::Error> {
    let t0 = Instant::now();
    let step = |what: String| println!("[{:>6.1} ms] {what}", t0.elapsed().as_secs_f64() * 1e3);
    let spec = radio(transport);
    let alice = Host::open(&spec).await?;
    // The capture (--btsnoop) records bob, the central.
    let bob = Host::open_with(&spec, HostOptions { btsnoop: capture, ..HostOptions::default() }).await?;
    step(format!("two hosts on {spec}: alice {} and bob {}", alice.address(), bob.address()));

    // Alice: the Pycom example's two services and gattling's counter service.
    let server = alice.gatt_server("alice", 0x0341);
    for def in gattling::gatt::demo_services() {
        server.add_service(def)?;
    }
    let reads = Arc::new(AtomicU32::new(0));
    if let Some(ch) = server.characteristic(demo::CHAR_2) {
        let reads = reads.clone();
        ch.on_read(move |_| {
            let n = reads.fetch_add(1, Ordering::SeqCst) + 1;
            (n > READS_BEFORE_CHANGE).then(|| b"hello from alice".to_vec())
        });
    }
    let counter = server.characteristic(demo::COUNTER);
    let ticker = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut n: u8 = 0;
        loop {
            tick.tick().await;
            n = n.wrapping_add(1);
            if let Some(c) = &counter {
                c.set_value(&[n]);
            }
        }
    });
    let data = AdvDataBuilder::new()
        .flags(flags::LE_GENERAL_ONLY)
        .name("alice")
        .uuids16(&[0x04D2], false)
        .appearance(0x0341)
        .manufacturer_data(0xFFFF, b"demo")
        .build()
        .map_err(|e| gattling::Error::InvalidArgument(e.to_string()))?;
    alice.advertise(&AdvertisingOptions { kind: AdvertisingKind::Connectable, data, ..Default::default() }).await?;
    step("alice advertises as \"alice\" and serves the Pycom example's database".into());

    let result = central(&bob, &alice, &step).await;
    ticker.abort();
    result
}

async fn central(bob: &Host, alice: &Host, step: &impl Fn(String)) -> Result<(), gattling::Error> {
    let mut scan = bob.scan(ScanOptions::default()).await?;
    let found = loop {
        let Some(r) = scan.next().await else {
            return Err(gattling::Error::Protocol("the scan ended before alice was found".into()));
        };
        let ad = AdvData::parse_lenient(&r.data);
        if ad.local_name() == Some("alice") {
            step(format!("bob found \"alice\" at {} (rssi {} dBm)", r.address, r.rssi));
            let services: Vec<String> = ad.service_uuids().map(|u| names::uuid_label(&u)).collect();
            println!("           advertisement: services [{}]", services.join(", "));
            if let Some(a) = ad.appearance() {
                println!(
                    "           appearance {a:#06x} ({})",
                    names::appearance(a).unwrap_or_else(|| "unknown".into())
                );
            }
            for (c, d) in ad.manufacturer_data_all() {
                println!("           manufacturer {} {}", names::company_label(c), tree::value_text(d));
            }
            break r;
        }
    };
    scan.stop().await?;
    let conn = bob.connect(found.address, gattling::ConnectOptions::default()).await?;
    let served = alice.accept().await?;
    step(format!(
        "connected: bob is central on handle {:#05x}, alice peripheral on {:#05x}",
        conn.handle(),
        served.handle()
    ));
    let client = GattClient::new(conn, ClientOptions::default()).await?;
    let services = tree::discover(&client).await?;
    step(format!("bob discovered {} services:", services.len()));
    tree::print(&services, &Default::default());
    let find = |uuid: gattling::proto::Uuid| {
        services
            .iter()
            .flat_map(|(_, _, cs)| cs.iter().map(|(c, _)| *c))
            .find(|c| gattling::proto::uuid::same(&c.uuid, &uuid))
            .ok_or_else(|| gattling::Error::Protocol(format!("alice has no {}", names::uuid_label(&uuid))))
    };
    let ch2 = find(demo::CHAR_2)?;
    for _ in 0..=READS_BEFORE_CHANGE {
        let v = client.read(ch2.value_handle).await?;
        step(format!("bob read {} at {:#06x}: {}", names::uuid_label(&ch2.uuid), ch2.value_handle, shown(&v)));
    }
    let ch1 = find(demo::CHAR_1)?;
    client.write(ch1.value_handle, &[0x2A]).await?;
    let v = client.read(ch1.value_handle).await?;
    step(format!("bob wrote 2a to {:#06x} and read back {}", ch1.value_handle, shown(&v)));
    let counter = find(demo::COUNTER)?;
    let mut sub = client.subscribe(&counter, false).await?;
    step(format!("bob subscribed to the counter at {:#06x}", counter.value_handle));
    for i in 1..=3 {
        let Some(v) = sub.next().await else {
            return Err(gattling::Error::Protocol("the subscription ended".into()));
        };
        step(format!("notification {i}: counter = {}", tree::value_text(&v)));
    }
    drop(sub);
    let reason = client.disconnect().await?;
    step(format!("bob disconnected: {}", reason.name()));
    if let gattling::LinkEnd::Disconnected(r) = served.closed().await {
        step(format!("alice saw the disconnection: {}", r.name()));
    }
    Ok(())
}

/// A value as hex, and as text when it is text.
fn shown(v: &[u8]) -> String {
    match std::str::from_utf8(v) {
        Ok(s) if v.len() >= 2 && s.chars().all(|c| !c.is_control()) => format!("{s:?}"),
        _ => tree::value_text(v),
    }
}
