//! Soak test (issue 14 part 1): many links carrying reads, writes, notifications and indications
//! in both directions for a fixed time, with connection churn, on the in-process virtual
//! controller or through `gattling controller` over TCP. Run by `scripts/soak.sh`.
//!
//! Layout: `--centrals` central hosts, each connected to its share of `--links` peripheral hosts
//! (one link per peripheral). Every host serves GATT: a read/write characteristic, a notify one
//! and an indicate one. On every link both sides run a GATT client against the other side's
//! server, one round every `--round-ms` per side (0: back to back, as fast as the link goes;
//! the links' rounds are spread over the period): read, write, then one notification and one
//! indication to the peer. Every value carries a per-link, per-stream sequence number and the
//! time it was sent, so the receiver proves nothing was lost or reordered and measures the
//! one-way latency. Traffic starts once every link is up. A sender keeps at most 64 values in
//! flight per stream (application flow control; notifications have none).
//!
//! Churn: every `--churn-every` seconds, `--churn` links are drained (their workers stop, then
//! every value sent is waited for, with a deadline) and disconnected, and new links are made to
//! the same peripherals.
//!
//! Reported: operations completed, notifications and indications sent/received, lost and
//! reordered values, p50/p99 latency of requests and of values, RSS (start, after warm-up,
//! middle, end), open file descriptors before and after, and tokio tasks alive after shutdown.
//! The last line is the same as one JSON object.
//!
//! ```text
//! cargo run --release -p gattling --example soak -- [--links 1000] [--centrals 4] [--secs 60]
//!     [--churn 100] [--churn-every 10] [--warmup 10] [--round-ms 200]
//!     [--transport virtual|tcp-client:HOST:PORT]
//! ```

use gattling::gatt::{Characteristic, CharacteristicDef, Properties, ServiceDef};
use gattling::gatt_client::{ClientOptions, GattClient, Subscription};
use gattling::proto::uuid::Uuid;
use gattling::{AdvertisingOptions, ConnectOptions, Connection, Host};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SERVICE: Uuid = Uuid::from_be_u128(0x6a77_5000_9d1e_4b1c_a0a5_4b5c_5e7a_d0c0);
const RW: Uuid = Uuid::from_be_u128(0x6a77_5001_9d1e_4b1c_a0a5_4b5c_5e7a_d0c0);
const NOTIFY: Uuid = Uuid::from_be_u128(0x6a77_5002_9d1e_4b1c_a0a5_4b5c_5e7a_d0c0);
const INDICATE: Uuid = Uuid::from_be_u128(0x6a77_5003_9d1e_4b1c_a0a5_4b5c_5e7a_d0c0);
/// Value length: sequence number (4), send time in µs (8), padding; fits the default ATT_MTU.
const VALUE_LEN: usize = 20;

// ------------------------------------------------------------------ options

struct Options {
    links: usize,
    centrals: usize,
    secs: u64,
    churn: usize,
    churn_every: u64,
    warmup: u64,
    round_ms: u64,
    transport: String,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        links: 1000,
        centrals: 4,
        secs: 60,
        churn: 100,
        churn_every: 10,
        warmup: 10,
        round_ms: 200,
        transport: "virtual".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = || value.parse::<u64>().map_err(|e| format!("{flag} {value}: {e}"));
        match flag.as_str() {
            "--links" => o.links = num()? as usize,
            "--centrals" => o.centrals = num()? as usize,
            "--secs" => o.secs = num()?,
            "--churn" => o.churn = num()? as usize,
            "--churn-every" => o.churn_every = num()?,
            "--warmup" => o.warmup = num()?,
            "--round-ms" => o.round_ms = num()?,
            "--transport" => o.transport = value,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if o.links == 0 || o.centrals == 0 || o.centrals > o.links || o.churn > o.links || o.churn_every == 0 {
        return Err("need 0 < centrals <= links, churn <= links, churn-every > 0".into());
    }
    Ok(o)
}

// ------------------------------------------------------------------ measurements

/// Latency histogram in µs: exact below 2048 µs, then 1024 steps per power of two (< 0.1 %).
struct Histogram {
    buckets: Vec<AtomicU64>,
}

impl Histogram {
    const LINEAR: u64 = 2048;

    fn new() -> Self {
        Histogram { buckets: (0..Self::LINEAR as usize + 40 * 1024).map(|_| AtomicU64::new(0)).collect() }
    }

    fn index(us: u64) -> usize {
        if us < Self::LINEAR {
            return us as usize;
        }
        let exp = 63 - us.leading_zeros() as u64 - 10; // us >> exp is in 1024..2048
        let mant = (us >> exp) - 1024;
        (Self::LINEAR + (exp - 1) * 1024 + mant) as usize
    }

    fn value(index: usize) -> u64 {
        let i = index as u64;
        if i < Self::LINEAR {
            return i;
        }
        let exp = (i - Self::LINEAR) / 1024 + 1;
        let mant = (i - Self::LINEAR) % 1024 + 1024;
        mant << exp
    }

    fn record(&self, d: Duration) {
        let i = Self::index(d.as_micros() as u64).min(self.buckets.len() - 1);
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The value at quantile `q` (0..=1), in µs.
    fn quantile(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let target = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return Self::value(i);
            }
        }
        0
    }
}

#[derive(Default)]
struct Counters {
    reads: AtomicU64,
    writes: AtomicU64,
    notify_sent: AtomicU64,
    notify_recv: AtomicU64,
    indicate_sent: AtomicU64,
    indicate_recv: AtomicU64,
    lost: AtomicU64,
    reordered: AtomicU64,
    bad_values: AtomicU64,
    errors: AtomicU64,
    links_made: AtomicU64,
    links_dropped: AtomicU64,
    drain_timeouts: AtomicU64,
    window_waits: AtomicU64,
}

struct Stats {
    /// Set once every link is up: the workers start.
    go: tokio::sync::watch::Sender<bool>,
    c: Counters,
    requests: Histogram,
    values: Histogram,
    epoch: Instant,
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `SOAK_DEBUG=1`: lists the open descriptors.
fn debug_fds(when: &str) {
    if std::env::var_os("SOAK_DEBUG").is_some() {
        for e in std::fs::read_dir("/proc/self/fd").into_iter().flatten().flatten() {
            eprintln!("fd {when} {:?} -> {:?}", e.file_name(), std::fs::read_link(e.path()));
        }
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

// ------------------------------------------------------------------ hosts

/// A host's GATT server: the three characteristics.
#[derive(Clone)]
struct Served {
    notify: Characteristic,
    indicate: Characteristic,
}

fn serve(host: &Host) -> Served {
    let gatt = host.gatt_server("soak", 0);
    let service = gatt
        .add_service(
            ServiceDef::primary(SERVICE)
                .characteristic(CharacteristicDef::new(RW, Properties::READ | Properties::WRITE, &[0; VALUE_LEN]))
                .characteristic(CharacteristicDef::new(NOTIFY, Properties::NOTIFY, &[0; VALUE_LEN]))
                .characteristic(CharacteristicDef::new(INDICATE, Properties::INDICATE, &[0; VALUE_LEN])),
        )
        .expect("soak service");
    let by = |u: Uuid| service.characteristics.iter().find(|c| c.uuid() == u).cloned().expect("characteristic");
    Served { notify: by(NOTIFY), indicate: by(INDICATE) }
}

struct Peripheral {
    host: Host,
    served: Served,
}

struct Central {
    host: Host,
    served: Served,
}

// ------------------------------------------------------------------ one link

/// One direction's stream of values (notify or indicate): what was sent, what arrived.
#[derive(Default)]
struct Stream {
    sent: AtomicU64,
    /// The next sequence number the receiver expects (= values received in order).
    next: AtomicU64,
    /// Woken at every value received (the sender's window, [`WINDOW`]).
    received: tokio::sync::Notify,
}

/// Values a sender may have in flight per stream: the application's flow control, which
/// notifications do not have (Core Vol 3 Part F §3.4.7.1); a receiver that falls this far
/// behind holds the sender up instead of overflowing its 512-value queue (which drops the
/// oldest by design, RELIABILITY.md). A gap is then a loss in the stack, not in the test.
const WINDOW: u64 = 64;

/// Waits until the stream has fewer than [`WINDOW`] values in flight.
async fn window(stream: &Stream, stats: &Stats) {
    loop {
        let woken = stream.received.notified();
        let (sent, next) = (stream.sent.load(Ordering::Acquire), stream.next.load(Ordering::Acquire));
        if sent.saturating_sub(next) < WINDOW {
            return;
        }
        bump(&stats.c.window_waits);
        woken.await;
    }
}

/// One side of a link: its GATT client on the peer's server, its own server's characteristics,
/// and the streams it sends.
struct Side {
    client: GattClient,
    served: Served,
    peer_rw: u16,
    notify_out: Arc<Stream>,
    indicate_out: Arc<Stream>,
}

/// One connection between a central and a peripheral, while it lasts.
struct Session {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    receivers: Vec<tokio::task::JoinHandle<()>>,
    streams: [Arc<Stream>; 4],
    central_conn: Connection,
}

fn value(seq: u64, epoch: Instant) -> [u8; VALUE_LEN] {
    let mut v = [0u8; VALUE_LEN];
    v[..4].copy_from_slice(&(seq as u32).to_le_bytes());
    v[4..12].copy_from_slice(&(epoch.elapsed().as_micros() as u64).to_le_bytes());
    v
}

/// Attaches a GATT client to `conn`, finds the peer's soak characteristics and subscribes.
async fn client_side(conn: Connection) -> Result<(GattClient, u16, Subscription, Subscription), gattling::Error> {
    let client = GattClient::new(conn, ClientOptions::default()).await?;
    let services = client.discover_services_by_uuid(SERVICE).await?;
    let service = services.first().ok_or(gattling::Error::Protocol("no soak service".into()))?;
    let chars = client.discover_characteristics(service.start, service.end, None).await?;
    let find = |u: Uuid| chars.iter().find(|c| c.uuid == u).cloned();
    let (Some(rw), Some(n), Some(i)) = (find(RW), find(NOTIFY), find(INDICATE)) else {
        return Err(gattling::Error::Protocol("soak characteristics missing".into()));
    };
    let sub_n = client.subscribe(&n, false).await?;
    let sub_i = client.subscribe(&i, true).await?;
    Ok((client, rw.value_handle, sub_n, sub_i))
}

/// Checks one received value against its stream.
fn received(stats: &Stats, stream: &Stream, v: &[u8], indication: bool) {
    let (Some(seq), Some(sent_us)) = (
        v.get(..4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes),
        v.get(4..12).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes),
    ) else {
        bump(&stats.c.bad_values);
        return;
    };
    let now = stats.epoch.elapsed().as_micros() as u64;
    stats.values.record(Duration::from_micros(now.saturating_sub(sent_us)));
    bump(if indication { &stats.c.indicate_recv } else { &stats.c.notify_recv });
    let seq = u64::from(seq);
    let next = stream.next.load(Ordering::Relaxed);
    if seq == next {
        stream.next.store(next + 1, Ordering::Release);
    } else if seq > next {
        stats.c.lost.fetch_add(seq - next, Ordering::Relaxed);
        stream.next.store(seq + 1, Ordering::Release);
    } else {
        bump(&stats.c.reordered);
    }
    stream.received.notify_one();
}

/// Receives the peer's notifications and indications until the link ends or is aborted.
async fn receive(stats: Arc<Stats>, mut n: Subscription, mut i: Subscription, sn: Arc<Stream>, si: Arc<Stream>) {
    let (mut bn, mut bi) = (Vec::with_capacity(32), Vec::with_capacity(32));
    loop {
        tokio::select! {
            e = n.next_into(&mut bn) => match e {
                Some(_) => received(&stats, &sn, &bn, false),
                None => return,
            },
            e = i.next_into(&mut bi) => match e {
                Some(_) => received(&stats, &si, &bi, true),
                None => return,
            },
        }
    }
}

/// One side's lockstep work: read and write the peer's value, then one notification and one
/// indication to the peer; until `stop`.
async fn work(
    stats: Arc<Stats>,
    side: Side,
    stop: Arc<AtomicBool>,
    check_reads: bool,
    round: Duration,
    offset: Duration,
) {
    // Traffic starts once every link is up (set up links would slow the setup of the rest).
    let mut go = stats.go.subscribe();
    if go.wait_for(|go| *go).await.is_err() {
        return;
    }
    let conn = side.client.connection().handle();
    let mut last_written: Option<[u8; VALUE_LEN]> = None;
    // One round per `round` (none when zero: as fast as the link goes), links spread over it.
    let mut ticks = (!round.is_zero()).then(|| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + offset, round);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    while !stop.load(Ordering::Relaxed) {
        if let Some(t) = ticks.as_mut() {
            t.tick().await;
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
        let t = Instant::now();
        match side.client.read(side.peer_rw).await {
            Ok(v) => {
                stats.requests.record(t.elapsed());
                bump(&stats.c.reads);
                if v.len() != VALUE_LEN || (check_reads && last_written.is_some_and(|w| w[..] != v[..])) {
                    bump(&stats.c.bad_values);
                }
            }
            Err(_) => {
                bump(&stats.c.errors);
                return;
            }
        }
        let w = value(get(&stats.c.writes), stats.epoch);
        let t = Instant::now();
        if side.client.write(side.peer_rw, &w).await.is_err() {
            bump(&stats.c.errors);
            return;
        }
        stats.requests.record(t.elapsed());
        bump(&stats.c.writes);
        last_written = Some(w);
        window(&side.notify_out, &stats).await;
        window(&side.indicate_out, &stats).await;
        let seq = side.notify_out.sent.load(Ordering::Relaxed);
        if side.served.notify.notify(conn, &value(seq, stats.epoch)) {
            side.notify_out.sent.store(seq + 1, Ordering::Release);
            bump(&stats.c.notify_sent);
        }
        let seq = side.indicate_out.sent.load(Ordering::Relaxed);
        if side.served.indicate.indicate(conn, &value(seq, stats.epoch)) {
            side.indicate_out.sent.store(seq + 1, Ordering::Release);
            bump(&stats.c.indicate_sent);
        }
    }
}

/// Connects `central` to `p` and starts both sides' workers and receivers.
async fn open_session(
    stats: &Arc<Stats>,
    central: &Central,
    p: &Peripheral,
    round: Duration,
    offset: Duration,
) -> Result<Session, gattling::Error> {
    p.host.advertise(&AdvertisingOptions::default()).await?;
    let c_conn = central.host.connect(p.host.address(), ConnectOptions::default()).await?;
    let p_conn = p.host.accept().await?;
    let (c_side, p_side) = tokio::join!(client_side(c_conn.clone()), client_side(p_conn));
    let (c_client, c_rw, c_n, c_i) = c_side?;
    let (p_client, p_rw, p_n, p_i) = p_side?;
    // Streams: central → peripheral notify / indicate, peripheral → central notify / indicate.
    let streams: [Arc<Stream>; 4] = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let receivers = vec![
        // The peripheral receives what the central sends, and the other way round.
        tokio::spawn(receive(stats.clone(), p_n, p_i, streams[0].clone(), streams[1].clone())),
        tokio::spawn(receive(stats.clone(), c_n, c_i, streams[2].clone(), streams[3].clone())),
    ];
    let c = Side {
        client: c_client,
        served: central.served.clone(),
        peer_rw: c_rw,
        notify_out: streams[0].clone(),
        indicate_out: streams[1].clone(),
    };
    let pside = Side {
        client: p_client,
        served: p.served.clone(),
        peer_rw: p_rw,
        notify_out: streams[2].clone(),
        indicate_out: streams[3].clone(),
    };
    // Only the central writes the peripheral's value, so its reads must return its last write;
    // the central's value is written by all its peripherals.
    let workers = vec![
        tokio::spawn(work(stats.clone(), c, stop.clone(), true, round, offset)),
        tokio::spawn(work(stats.clone(), pside, stop.clone(), false, round, offset + round / 2)),
    ];
    bump(&stats.c.links_made);
    Ok(Session { stop, workers, receivers, streams, central_conn: c_conn })
}

/// Stops a session's workers, waits (at most 5 s) for every value sent to arrive, counts what
/// did not as lost, and disconnects.
async fn close_session(stats: &Stats, s: Session) {
    s.stop.store(true, Ordering::Relaxed);
    for w in s.workers {
        let _ = w.await;
    }
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let pending = s.streams.iter().any(|st| st.next.load(Ordering::Acquire) < st.sent.load(Ordering::Acquire));
            if !pending {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    if drained.is_err() {
        bump(&stats.c.drain_timeouts);
        for st in &s.streams {
            let (sent, next) = (st.sent.load(Ordering::Acquire), st.next.load(Ordering::Acquire));
            stats.c.lost.fetch_add(sent.saturating_sub(next), Ordering::Relaxed);
        }
    }
    if s.central_conn.disconnect(0x13).await.is_err() {
        bump(&stats.c.errors);
    }
    // The receivers end with the link.
    for r in s.receivers {
        let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
    }
    bump(&stats.c.links_dropped);
}

// ------------------------------------------------------------------ the run

fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let handle = rt.handle().clone();
    // Descriptors are counted inside the runtime (its own epoll, eventfd and signal pipe are
    // there before and after), before any host opens and after every host is gone.
    let fds_before = open_fds();
    debug_fds("before");
    let report = rt.block_on(run(o, fds_before));
    // Everything the run made has been dropped: wait (at most 5 s) for the tasks to end.
    let deadline = Instant::now() + Duration::from_secs(5);
    let alive = loop {
        let n = handle.metrics().num_alive_tasks();
        if n == 0 || Instant::now() > deadline {
            break n;
        }
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(10)).await });
    };
    let fds_after = open_fds();
    debug_fds("after");
    drop(handle);
    drop(rt);
    let mut report = report;
    report.push(("tasks_alive_after_shutdown", alive.to_string()));
    report.push(("fds_before", fds_before.to_string()));
    report.push(("fds_after", fds_after.to_string()));
    println!("tasks alive after shutdown: {alive}");
    println!("open fds before / after:    {fds_before} / {fds_after}");
    let json: Vec<String> = report.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
    println!("{{{}}}", json.join(", "));
    let failed = alive != 0 || fds_after > fds_before;
    if failed {
        std::process::exit(1);
    }
}

async fn run(o: Options, fds_before: usize) -> Vec<(&'static str, String)> {
    let spec =
        if o.transport == "virtual" { format!("virtual:soak-{}", std::process::id()) } else { o.transport.clone() };
    let stats = Arc::new(Stats {
        go: tokio::sync::watch::channel(false).0,
        c: Counters::default(),
        requests: Histogram::new(),
        values: Histogram::new(),
        epoch: Instant::now(),
    });
    println!(
        "soak: {} links ({} centrals), {} s, a round every {} ms per side, churn {} links every {} s, warm-up {} s, transport {spec}, fds before {fds_before}",
        o.links, o.centrals, o.secs, o.round_ms, o.churn, o.churn_every, o.warmup
    );

    // Hosts.
    let t0 = Instant::now();
    let mut centrals = Vec::with_capacity(o.centrals);
    for _ in 0..o.centrals {
        let host = Host::open(&spec).await.expect("central host");
        let served = serve(&host);
        centrals.push(Central { host, served });
    }
    let mut peripherals = Vec::with_capacity(o.links);
    for _ in 0..o.links {
        let host = Host::open(&spec).await.expect("peripheral host");
        let served = serve(&host);
        peripherals.push(Peripheral { host, served });
    }
    let round = Duration::from_millis(o.round_ms);
    let offset = |i: usize| round * i as u32 / o.links as u32;
    // Links: peripheral i belongs to central i % centrals.
    let mut sessions: Vec<Option<Session>> = Vec::with_capacity(o.links);
    for (i, p) in peripherals.iter().enumerate() {
        let s = open_session(&stats, &centrals[i % o.centrals], p, round, offset(i)).await.expect("link set up");
        sessions.push(Some(s));
        if (i + 1) % 100 == 0 {
            eprintln!("  {} links up after {:.1} s", i + 1, t0.elapsed().as_secs_f64());
        }
    }
    let setup = t0.elapsed();
    stats.go.send_replace(true);
    println!("setup: {} hosts, {} links in {:.2} s", o.centrals + o.links, o.links, setup.as_secs_f64());

    // Traffic with churn; RSS sampled as it runs.
    let rss_start = rss_kib();
    let (mut rss_warm, mut rss_mid) = (rss_start, rss_start);
    let start = Instant::now();
    let end = start + Duration::from_secs(o.secs);
    let mut next_churn = start + Duration::from_secs(o.churn_every);
    let (mut warm_done, mut mid_done) = (false, false);
    let mut churn_at = 0usize;
    let mut churn_times = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    loop {
        ticker.tick().await;
        let now = Instant::now();
        if !warm_done && now >= start + Duration::from_secs(o.warmup) {
            rss_warm = rss_kib();
            warm_done = true;
        }
        if !mid_done && now >= start + Duration::from_secs(o.secs / 2) {
            rss_mid = rss_kib();
            mid_done = true;
        }
        if now >= end {
            break;
        }
        if now >= next_churn && o.churn > 0 {
            let t = Instant::now();
            let picked: Vec<usize> = (0..o.churn).map(|k| (churn_at + k) % o.links).collect();
            churn_at = (churn_at + o.churn) % o.links;
            let closing: Vec<Session> = picked.iter().filter_map(|&i| sessions[i].take()).collect();
            futures_join_all(closing.into_iter().map(|s| close_session(&stats, s))).await;
            // Each central makes its links again one after the other; the centrals in parallel.
            let reopened = std::sync::Mutex::new(Vec::new());
            futures_join_all((0..o.centrals).map(|c| {
                let (picked, stats, centrals, peripherals, reopened) =
                    (&picked, &stats, &centrals, &peripherals, &reopened);
                async move {
                    for &i in picked.iter().filter(|&&i| i % o.centrals == c) {
                        match open_session(stats, &centrals[c], &peripherals[i], round, offset(i)).await {
                            Ok(s) => reopened.lock().unwrap_or_else(|p| p.into_inner()).push((i, s)),
                            Err(e) => {
                                eprintln!("re-connect of link {i} failed: {e}");
                                bump(&stats.c.errors);
                            }
                        }
                    }
                }
            }))
            .await;
            for (i, s) in reopened.into_inner().unwrap_or_else(|p| p.into_inner()) {
                sessions[i] = Some(s);
            }
            churn_times.push(t.elapsed());
            next_churn += Duration::from_secs(o.churn_every);
        }
    }
    let elapsed = start.elapsed();
    let rss_end = rss_kib();

    // Drain and close every link, then every host.
    let closing: Vec<Session> = sessions.iter_mut().filter_map(Option::take).collect();
    futures_join_all(closing.into_iter().map(|s| close_session(&stats, s))).await;
    drop(peripherals);
    drop(centrals);
    if std::env::var_os("SOAK_DEBUG").is_some() && o.transport == "virtual" {
        let name = spec.trim_start_matches("virtual:");
        eprintln!("radio counts after close: {:?}", gattling::controller::VirtualRadio::named(name).counts());
    }

    let c = &stats.c;
    let ops = get(&c.reads) + get(&c.writes) + get(&c.notify_recv) + get(&c.indicate_recv);
    let growth = (rss_end as f64 - rss_warm as f64) * 100.0 / rss_warm.max(1) as f64;
    let (rp50, rp99) = (stats.requests.quantile(0.50), stats.requests.quantile(0.99));
    let (vp50, vp99) = (stats.values.quantile(0.50), stats.values.quantile(0.99));
    let churn_max = churn_times.iter().max().copied().unwrap_or_default();
    println!("ran:                        {:.1} s", elapsed.as_secs_f64());
    println!(
        "operations completed:       {ops} ({:.0}/s): {} reads, {} writes, {} notifications and {} indications received",
        ops as f64 / elapsed.as_secs_f64(),
        get(&c.reads),
        get(&c.writes),
        get(&c.notify_recv),
        get(&c.indicate_recv)
    );
    println!(
        "notifications sent/received: {} / {}; indications sent/received: {} / {}",
        get(&c.notify_sent),
        get(&c.notify_recv),
        get(&c.indicate_sent),
        get(&c.indicate_recv)
    );
    println!(
        "lost: {}, reordered: {}, bad values: {}, errors: {}, drain timeouts: {}, sender window waits: {}",
        get(&c.lost),
        get(&c.reordered),
        get(&c.bad_values),
        get(&c.errors),
        get(&c.drain_timeouts),
        get(&c.window_waits)
    );
    println!(
        "links made / dropped:       {} / {} (churn rounds: {}, longest {:.2} s)",
        get(&c.links_made),
        get(&c.links_dropped),
        churn_times.len(),
        churn_max.as_secs_f64()
    );
    println!("request latency p50 / p99:  {rp50} / {rp99} µs (read or write, request to response)");
    println!("value latency p50 / p99:    {vp50} / {vp99} µs (notification or indication, send to receipt)");
    println!(
        "RSS start / warm / mid / end: {rss_start} / {rss_warm} / {rss_mid} / {rss_end} KiB (growth after warm-up {growth:+.1} %)"
    );
    vec![
        ("links", o.links.to_string()),
        ("centrals", o.centrals.to_string()),
        ("secs", format!("{:.1}", elapsed.as_secs_f64())),
        ("transport", format!("\"{spec}\"")),
        ("round_ms", o.round_ms.to_string()),
        ("setup_s", format!("{:.2}", setup.as_secs_f64())),
        ("churn_rounds", churn_times.len().to_string()),
        ("churn_longest_s", format!("{:.2}", churn_max.as_secs_f64())),
        ("window_waits", get(&c.window_waits).to_string()),
        ("ops", ops.to_string()),
        ("reads", get(&c.reads).to_string()),
        ("writes", get(&c.writes).to_string()),
        ("notify_sent", get(&c.notify_sent).to_string()),
        ("notify_recv", get(&c.notify_recv).to_string()),
        ("indicate_sent", get(&c.indicate_sent).to_string()),
        ("indicate_recv", get(&c.indicate_recv).to_string()),
        ("lost", get(&c.lost).to_string()),
        ("reordered", get(&c.reordered).to_string()),
        ("bad_values", get(&c.bad_values).to_string()),
        ("errors", get(&c.errors).to_string()),
        ("links_made", get(&c.links_made).to_string()),
        ("links_dropped", get(&c.links_dropped).to_string()),
        ("request_p50_us", rp50.to_string()),
        ("request_p99_us", rp99.to_string()),
        ("value_p50_us", vp50.to_string()),
        ("value_p99_us", vp99.to_string()),
        ("rss_start_kib", rss_start.to_string()),
        ("rss_warm_kib", rss_warm.to_string()),
        ("rss_mid_kib", rss_mid.to_string()),
        ("rss_end_kib", rss_end.to_string()),
        ("rss_growth_pct", format!("{growth:.2}")),
    ]
}

/// Runs futures concurrently on this task and waits for all of them.
async fn futures_join_all<F: std::future::Future<Output = ()>>(futs: impl Iterator<Item = F>) {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    std::future::poll_fn(|cx| {
        set.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if set.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}
