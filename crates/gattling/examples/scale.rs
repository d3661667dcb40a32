//! Scale check for the virtual controller: one central connected to N peripherals (default
//! 1,000) in one process. Reports connection setup time, memory per connection, and the ATT
//! round-trip time on one link with 0 and with N-1 other idle links, which must not differ much.
//!
//! Run: `cargo run --release -p gattling --example scale -- [N]`

use gattling::proto::gap::ad::AdvDataBuilder;
use gattling::{AdvertisingOptions, ConnectOptions, Connection, Host};
use std::time::{Duration, Instant};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// Median ATT round trip over `link`, whose peer answers every Read Request.
async fn median_rtt(link: &Connection, rounds: usize) -> Duration {
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        link.send_att(&[0x0A, 0x03, 0x00]).expect("send");
        link.recv_att().await.expect("recv");
        samples.push(t.elapsed());
    }
    samples.sort();
    samples[samples.len() / 2]
}

async fn answer_reads(link: Connection) {
    while let Ok(req) = link.recv_att().await {
        if req.first() == Some(&0x0A) && link.send_att(&[0x0B, 0x5A, 0x5A]).is_err() {
            return;
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let radio = format!("virtual:scale-{}", std::process::id());
    let central = Host::open(&radio).await.expect("central");
    let data = AdvDataBuilder::new().flags(6).name("p").build().expect("ad");
    let adv = AdvertisingOptions { data, ..Default::default() };

    // Baseline: one link, nothing else on the radio.
    let first = Host::open(&radio).await.expect("peripheral");
    first.advertise(&adv).await.expect("advertise");
    let link = central.connect(first.address(), ConnectOptions::default()).await.expect("connect");
    tokio::spawn(answer_reads(first.accept().await.expect("accept")));
    median_rtt(&link, 200).await;
    let rtt_one = median_rtt(&link, 2000).await;

    let rss0 = rss_bytes();
    let t0 = Instant::now();
    let mut peripherals = Vec::with_capacity(n);
    let mut links = Vec::with_capacity(n);
    for _ in 1..n {
        let p = Host::open(&radio).await.expect("peripheral");
        p.advertise(&adv).await.expect("advertise");
        links.push(central.connect(p.address(), ConnectOptions::default()).await.expect("connect"));
        let served = p.accept().await.expect("accept");
        tokio::spawn(answer_reads(served));
        peripherals.push(p);
    }
    let setup = t0.elapsed();
    let rss1 = rss_bytes();
    let per_conn = (rss1.saturating_sub(rss0)) / (n.max(2) as u64 - 1);

    median_rtt(&link, 200).await;
    let rtt_many = median_rtt(&link, 2000).await;

    println!("connections:                 {n} (one central, {n} peripherals, one process)");
    println!(
        "setup of {} connections:     {:.2} s ({:.0} µs each, including host start-up)",
        n - 1,
        setup.as_secs_f64(),
        setup.as_secs_f64() * 1e6 / (n - 1) as f64
    );
    println!(
        "memory per connection:       {:.1} KiB (RSS, both hosts and their controllers)",
        per_conn as f64 / 1024.0
    );
    println!("ATT round trip, 1 link:      {:.1} µs median", rtt_one.as_secs_f64() * 1e6);
    println!("ATT round trip, {n} links:  {:.1} µs median", rtt_many.as_secs_f64() * 1e6);
}
