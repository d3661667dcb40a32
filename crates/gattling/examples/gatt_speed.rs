//! GATT client speed (issue 5): two gattling hosts on one controller, a GATT server and a
//! [`GattClient`] (ATT_MTU 247), measuring
//!
//! (a) N sequential Read Requests of a 20-byte value: total time, reads/s, median (and p99)
//!     time per read, process CPU per read;
//! (b) 244-byte notifications for S seconds: the server pushes values as fast as the host takes
//!     them, with a bounded window of values in flight (it sends a batch, then waits until the
//!     client has received all but one window's worth), and the client counts values and bytes:
//!     notifications/s, MB/s (10^6 value bytes), and CPU per notification.
//!
//! CPU is the process's user + system time (getrusage) over the measurement. Both hosts run in
//! this one process, so the combined figure is halved as an *estimate* per side. On the
//! in-process `virtual` controller the process also runs the controller (radio routing and
//! HCI parsing on the controller side), so there the combined figure includes it; over
//! `tcp-client:` the controller is another process and the figure is the two hosts alone.
//! `--runtime split` runs the server host on a second thread with its own tokio runtime and
//! reports each thread's CPU time as well (each side's figure then includes the controller work
//! its writes trigger: the in-process controller runs inline in the writer).
//! `--runtime multi` puts both hosts and the client on one tokio multi-thread runtime with 2
//! worker threads (what `#[tokio::main]` builds on a 2-core machine).
//!
//! Beside the reads, every mode measures a bare tokio task-to-task ping-pong on the same
//! runtime(s): two tasks (in `split` one per runtime, as the two hosts) exchanging a number
//! through two tokio `mpsc` channels of capacity 1, `--pings N` round trips after a warm-up.
//! Its round-trip time is the floor the scheduler sets for a request/response between tasks;
//! the read's median minus it is what the hosts, the controller and the GATT client add. A
//! ring of three tasks (`--pings N` laps) is measured as well: a read takes three task hops
//! (the client task, the server host's read loop, the client host's read loop), so this is the
//! scheduler's own share of a read.
//!
//! Run: `cargo run --release -p gattling --example gatt_speed -- [--transport SPEC] [--reads N]
//! [--seconds S] [--runtime single|split|multi] [--window W] [--pings N]`
//! (default `virtual:speed`: gattling's in-process virtual controller, ACL 251 x 8; with
//! `tcp-client:HOST:PORT` both hosts connect to the same controller server, e.g. rootcanal).
//! Prints a table, then one JSON line (keys in alphabetical order) with `"bench":"gatt_speed"`.

use gattling::gatt::{Characteristic, CharacteristicDef, Properties};
use gattling::gatt_client::{ClientOptions, GattClient};
use gattling::proto::gatt::ServiceDef;
use gattling::proto::Uuid;
use gattling::{AdvertisingOptions, ConnectOptions, Connection, Host};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::Notify;

const SERVICE: Uuid = Uuid::from_be_u128(0x6a77_5000_9d1e_4b1c_a0a5_4b5c_5e7a_d0c0);
const READ_CHAR: Uuid = Uuid::from_be_u128(0x6a77_5001_9d1e_4b1c_a0a5_4b5c_5e7a_d0c0);
const NOTIFY_CHAR: Uuid = Uuid::from_be_u128(0x6a77_5002_9d1e_4b1c_a0a5_4b5c_5e7a_d0c0);
const READ_LEN: usize = 20;
const NOTIFY_LEN: usize = 244;
const MTU: u16 = 247;
/// Values sent back to back before the pusher looks at the client's receipt count again.
const BATCH: u64 = 50;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Both hosts on one current-thread tokio runtime (one thread).
    Single,
    /// The server host on a second thread with its own current-thread runtime.
    Split,
    /// Both hosts and the client on one multi-thread runtime with 2 worker threads.
    Multi,
}

/// Worker threads of the `multi` runtime (what `#[tokio::main]` gives on 2 cores).
const MULTI_WORKERS: usize = 2;

#[derive(Clone)]
struct Args {
    transport: String,
    reads: usize,
    seconds: f64,
    mode: Mode,
    window: u64,
    pings: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: gatt_speed [--transport SPEC] [--reads N] [--seconds S] [--runtime single|split|multi] [--window W] \
         [--pings N]\n\
         defaults: --transport virtual:speed --reads 1000 --seconds 5 --runtime single --window 100 --pings 100000"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        transport: "virtual:speed".into(),
        reads: 1000,
        seconds: 5.0,
        mode: Mode::Single,
        window: 100,
        pings: 100_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--transport" => a.transport = value(),
            "--reads" => a.reads = value().parse().unwrap_or_else(|_| usage()),
            "--seconds" => a.seconds = value().parse().unwrap_or_else(|_| usage()),
            "--window" => a.window = value().parse().unwrap_or_else(|_| usage()),
            "--pings" => a.pings = value().parse().unwrap_or_else(|_| usage()),
            "--runtime" => {
                a.mode = match value().as_str() {
                    "single" => Mode::Single,
                    "split" => Mode::Split,
                    "multi" => Mode::Multi,
                    _ => usage(),
                }
            }
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    // The window is a whole number of batches, at least two (one in flight while one is sent).
    a.window = (a.window.div_ceil(BATCH)).max(2) * BATCH;
    if a.reads == 0 || a.seconds <= 0.0 || a.pings == 0 {
        usage()
    }
    a
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_micros(t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64)
}

/// User + system CPU time of the whole process.
fn process_cpu() -> Duration {
    // SAFETY: getrusage writes one `rusage` into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to an owned rusage; RUSAGE_SELF is a valid `who`.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    timeval(ru.ru_utime) + timeval(ru.ru_stime)
}

/// CPU time of one thread of this process (`pthread_getcpuclockid` + `clock_gettime`).
fn thread_cpu(thread: libc::pthread_t) -> Duration {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `thread` is a live thread of this process (both threads outlive every call);
    // the clock id is written into a local.
    if unsafe { libc::pthread_getcpuclockid(thread, &mut clock) } != 0 {
        return Duration::ZERO;
    }
    // SAFETY: clock_gettime writes one timespec into a zeroed local.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid clock id and pointer.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU snapshot: the process, and in split mode each thread (client, server).
#[derive(Clone, Copy)]
struct Cpu {
    process: Duration,
    threads: Option<(Duration, Duration)>,
}

#[derive(Clone, Copy)]
struct Clocks {
    client: libc::pthread_t,
    server: Option<libc::pthread_t>,
}

impl Clocks {
    fn now(&self) -> Cpu {
        Cpu { process: process_cpu(), threads: self.server.map(|s| (thread_cpu(self.client), thread_cpu(s))) }
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// What the server side hands to the client side.
struct ServerSide {
    host: Host,
    notify: Characteristic,
    acl: (usize, u16),
}

/// Starts the server host (on whatever runtime runs this future): GAP/GATT services plus one
/// service with a 20-byte readable and a 244-byte notifiable characteristic; advertises.
async fn start_server(spec: String) -> Result<ServerSide, gattling::Error> {
    let host = Host::open(&spec).await?;
    let gatt = host.gatt_server("gatt-speed", 0);
    let read_value: Vec<u8> = (0..READ_LEN as u8).collect();
    let service = gatt.add_service(
        ServiceDef::primary(SERVICE)
            .characteristic(CharacteristicDef::new(READ_CHAR, Properties::READ, &read_value))
            .characteristic(CharacteristicDef::new(NOTIFY_CHAR, Properties::NOTIFY, &[0u8; NOTIFY_LEN])),
    )?;
    let notify = service
        .characteristics
        .iter()
        .find(|c| c.uuid() == NOTIFY_CHAR)
        .cloned()
        .ok_or_else(|| gattling::Error::InvalidArgument("notify characteristic missing".into()))?;
    host.advertise(&AdvertisingOptions::default()).await?;
    let acl = host.acl_buffers();
    Ok(ServerSide { host, notify, acl })
}

/// Shared between the pusher (server side) and the counter (client side).
struct Flow {
    received: AtomicU64,
    bytes: AtomicU64,
    /// Values that arrived out of sequence (lost, duplicated or reordered).
    out_of_order: AtomicU64,
    /// Signalled by the counter every BATCH values.
    progress: Notify,
}

/// Pushes 244-byte values until `run_for` has passed, keeping at most `window` values beyond
/// what the client has received, then waits until everything sent has arrived. Returns the
/// number sent, the time from the first send to the last receipt, and whether it stalled.
async fn push(ch: Characteristic, flow: Arc<Flow>, run_for: Duration, window: u64) -> (u64, Duration, bool) {
    let mut value = [0u8; NOTIFY_LEN];
    for (i, b) in value.iter_mut().enumerate().skip(8) {
        *b = i as u8;
    }
    let mut sent = 0u64;
    let t0 = Instant::now();
    let mut stalled = false;
    'outer: while t0.elapsed() < run_for {
        while sent - flow.received.load(Ordering::Acquire) > window - BATCH {
            if tokio::time::timeout(Duration::from_secs(5), flow.progress.notified()).await.is_err() {
                stalled = true;
                break 'outer;
            }
        }
        for _ in 0..BATCH {
            value[..8].copy_from_slice(&sent.to_le_bytes());
            ch.set_value(&value);
            sent += 1;
        }
    }
    // Drain: every value sent must arrive (the counter signals at multiples of BATCH).
    while !stalled && flow.received.load(Ordering::Acquire) < sent {
        if tokio::time::timeout(Duration::from_secs(5), flow.progress.notified()).await.is_err() {
            stalled = true;
        }
    }
    (sent, t0.elapsed(), stalled)
}

/// Bare tokio ring of `tasks` tasks passing a number around through `mpsc` channels of
/// capacity 1: a timing task on the current runtime and `tasks - 1` forwarders spawned on
/// `rt`; `n` laps after a warm-up of `n / 10`. Returns the time of the `n` laps. Two tasks are
/// the ping-pong (a request and its response between tasks); three are a read's hops (client
/// task, server host, client host).
async fn ring(rt: &Handle, n: usize, tasks: usize) -> Result<Duration, gattling::Error> {
    let (first_tx, mut rx) = tokio::sync::mpsc::channel::<u64>(1);
    let mut forwarders = Vec::new();
    for _ in 1..tasks {
        let (tx, next_rx) = tokio::sync::mpsc::channel::<u64>(1);
        let mut from = std::mem::replace(&mut rx, next_rx);
        forwarders.push(rt.spawn(async move {
            while let Some(v) = from.recv().await {
                if tx.send(v).await.is_err() {
                    break;
                }
            }
        }));
    }
    let timer = tokio::spawn(async move {
        for (count, timed) in [(n / 10, false), (n, true)] {
            let t0 = Instant::now();
            for i in 0..count as u64 {
                if first_tx.send(i).await.is_err() || rx.recv().await != Some(i) {
                    return None;
                }
            }
            if timed {
                return Some(t0.elapsed());
            }
        }
        None
    });
    let elapsed = timer.await.map_err(|e| gattling::Error::Protocol(e.to_string()))?;
    for f in forwarders {
        let _ = f.await;
    }
    elapsed.ok_or_else(|| gattling::Error::Protocol("ring task lost a message".into()))
}

struct Results {
    acl: (usize, u16),
    mtu: u16,
    connect: Duration,
    reads: usize,
    read_total: Duration,
    read_median: Duration,
    read_p99: Duration,
    read_cpu: Cpu,
    pings: usize,
    ping_total: Duration,
    ring_total: Duration,
    sent: u64,
    received: u64,
    bytes: u64,
    out_of_order: u64,
    stalled: bool,
    notify_time: Duration,
    notify_cpu: Cpu,
}

async fn run(args: &Args, server_rt: Handle, clocks: &Clocks) -> Result<Results, gattling::Error> {
    // The scheduler's floor for a round trip between two tasks, before the hosts exist.
    let ping_total = ring(&server_rt, args.pings, 2).await?;
    let ring_total = ring(&server_rt, args.pings, 3).await?;

    let spec = args.transport.clone();
    let server = server_rt.spawn(start_server(spec)).await.map_err(|e| gattling::Error::Protocol(e.to_string()))??;
    let client_host = Host::open(&args.transport).await?;
    let t = Instant::now();
    let conn = client_host.connect(server.host.address(), ConnectOptions::default()).await?;
    let connect = t.elapsed();
    // Take the server's Connection object (its GATT server answers inline either way).
    let accepting = server.host.clone();
    let _server_conn: Connection = server_rt
        .spawn(async move { accepting.accept().await })
        .await
        .map_err(|e| gattling::Error::Protocol(e.to_string()))??;

    let client = GattClient::new(conn, ClientOptions { mtu: Some(MTU) }).await?;
    let mtu = client.mtu();
    let services = client.discover_services_by_uuid(SERVICE).await?;
    let svc = services.first().ok_or_else(|| gattling::Error::Protocol("service not found".into()))?;
    let chars = client.discover_characteristics(svc.start, svc.end, None).await?;
    let read_ch = chars.iter().find(|c| c.uuid == READ_CHAR).copied();
    let notify_ch = chars.iter().find(|c| c.uuid == NOTIFY_CHAR).copied();
    let (Some(read_ch), Some(notify_ch)) = (read_ch, notify_ch) else {
        return Err(gattling::Error::Protocol("characteristics not found".into()));
    };

    // (a) Sequential reads, after a short warm-up.
    let first = client.read(read_ch.value_handle).await?;
    if first.len() != READ_LEN {
        return Err(gattling::Error::Protocol(format!("read {} bytes, expected {READ_LEN}", first.len())));
    }
    for _ in 0..(args.reads / 10).min(100) {
        client.read(read_ch.value_handle).await?;
    }
    let mut samples = Vec::with_capacity(args.reads);
    let cpu0 = clocks.now();
    let t0 = Instant::now();
    // One clock read per read: the reads run back to back, so each one's time is from the end
    // of the one before to its own end (the loop's own work between them is a few instructions).
    let mut last = t0;
    for _ in 0..args.reads {
        client.read(read_ch.value_handle).await?;
        let now = Instant::now();
        samples.push(now - last);
        last = now;
    }
    let read_total = last - t0;
    let cpu1 = clocks.now();
    samples.sort();
    let read_median = samples[samples.len() / 2];
    let read_p99 = samples[(samples.len() * 99 / 100).min(samples.len() - 1)];

    // (b) Notifications.
    let mut sub = client.subscribe(&notify_ch, false).await?;
    let flow = Arc::new(Flow {
        received: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        out_of_order: AtomicU64::new(0),
        progress: Notify::new(),
    });
    let counter_flow = flow.clone();
    let counter = tokio::spawn(async move {
        let mut n = 0u64;
        let mut bytes = 0u64;
        let mut to_signal = BATCH;
        while let Some(v) = sub.next().await {
            let seq = v.get(..8).and_then(|s| s.try_into().ok()).map(u64::from_le_bytes);
            if seq != Some(n) || v.len() != NOTIFY_LEN {
                counter_flow.out_of_order.fetch_add(1, Ordering::Relaxed);
            }
            n += 1;
            bytes += v.len() as u64;
            counter_flow.bytes.store(bytes, Ordering::Relaxed);
            counter_flow.received.store(n, Ordering::Release);
            to_signal -= 1;
            if to_signal == 0 {
                to_signal = BATCH;
                counter_flow.progress.notify_one();
            }
        }
    });
    let run_for = Duration::from_secs_f64(args.seconds);
    let cpu2 = clocks.now();
    let (sent, notify_time, stalled) = server_rt
        .spawn(push(server.notify.clone(), flow.clone(), run_for, args.window))
        .await
        .map_err(|e| gattling::Error::Protocol(e.to_string()))?;
    let cpu3 = clocks.now();
    counter.abort();
    let _ = client.disconnect().await;

    let diff = |a: Cpu, b: Cpu| Cpu {
        process: b.process.saturating_sub(a.process),
        threads: match (a.threads, b.threads) {
            (Some((ac, as_)), Some((bc, bs))) => Some((bc.saturating_sub(ac), bs.saturating_sub(as_))),
            _ => None,
        },
    };
    Ok(Results {
        acl: server.acl,
        mtu,
        connect,
        reads: args.reads,
        read_total,
        read_median,
        read_p99,
        read_cpu: diff(cpu0, cpu1),
        pings: args.pings,
        ping_total,
        ring_total,
        sent,
        received: flow.received.load(Ordering::Acquire),
        bytes: flow.bytes.load(Ordering::Relaxed),
        out_of_order: flow.out_of_order.load(Ordering::Relaxed),
        stalled,
        notify_time,
        notify_cpu: diff(cpu2, cpu3),
    })
}

fn report(args: &Args, r: &Results) {
    let reads_per_s = r.reads as f64 / r.read_total.as_secs_f64();
    let read_cpu = us(r.read_cpu.process) / r.reads as f64;
    let secs = r.notify_time.as_secs_f64();
    let ntf_per_s = r.received as f64 / secs;
    let mb_per_s = r.bytes as f64 / secs / 1e6;
    let per_ntf = |d: Duration| if r.received == 0 { f64::NAN } else { us(d) / r.received as f64 };
    let ntf_cpu = per_ntf(r.notify_cpu.process);
    let mode = match args.mode {
        Mode::Single => "single",
        Mode::Split => "split",
        Mode::Multi => "multi",
    };
    let ping_us = us(r.ping_total) / r.pings as f64;
    let pings_per_s = r.pings as f64 / r.ping_total.as_secs_f64();
    let ring_us = us(r.ring_total) / r.pings as f64;
    let read_us = us(r.read_total) / r.reads as f64;
    println!("gatt_speed: gattling client <-> gattling server");
    println!(
        "  transport {}  runtime {mode}  ACL {}x{}  ATT_MTU {}  connect {:.1} ms",
        args.transport,
        r.acl.0,
        r.acl.1,
        r.mtu,
        r.connect.as_secs_f64() * 1e3
    );
    println!("  {:<44} {:>14}", "measure", "value");
    println!(
        "  {:<44} {:>14}",
        format!("{} sequential reads (20 bytes), total", r.reads),
        format!("{:.3} s", r.read_total.as_secs_f64())
    );
    println!("  {:<44} {:>14.0}", "reads/s", reads_per_s);
    println!("  {:<44} {:>14}", "read, median", format!("{:.1} us", us(r.read_median)));
    println!("  {:<44} {:>14}", "read, p99", format!("{:.1} us", us(r.read_p99)));
    println!("  {:<44} {:>14}", "process CPU per read (both hosts)", format!("{read_cpu:.1} us"));
    println!("  {:<44} {:>14}", "read, mean (total / reads)", format!("{read_us:.2} us"));
    println!("  {:<44} {:>14.0}", format!("bare tokio ping-pong, round trips/s ({})", r.pings), pings_per_s);
    println!("  {:<44} {:>14}", "bare tokio ping-pong, per round trip", format!("{ping_us:.2} us"));
    println!("  {:<44} {:>14}", "bare tokio 3-task ring (a read's hops), per lap", format!("{ring_us:.2} us"));
    println!(
        "  {:<44} {:>14}",
        "read mean over ping-pong (minus / ratio)",
        format!("+{:.2} us / {:.1}x", read_us - ping_us, read_us / ping_us)
    );
    println!(
        "  {:<44} {:>14}",
        format!("notifications ({NOTIFY_LEN} B) received / sent"),
        format!("{} / {}", r.received, r.sent)
    );
    println!("  {:<44} {:>14.0}", format!("notifications/s (over {secs:.2} s)"), ntf_per_s);
    println!("  {:<44} {:>14.3}", "MB/s (10^6 value bytes)", mb_per_s);
    println!("  {:<44} {:>14}", "process CPU per notification (both hosts)", format!("{ntf_cpu:.2} us"));
    println!("  {:<44} {:>14}", "  per side, estimate (half)", format!("{:.2} us", ntf_cpu / 2.0));
    if let Some((c, s)) = r.notify_cpu.threads {
        println!("  {:<44} {:>14}", "  client thread CPU per notification", format!("{:.2} us", per_ntf(c)));
        println!("  {:<44} {:>14}", "  server thread CPU per notification", format!("{:.2} us", per_ntf(s)));
    }
    println!(
        "  {:<44} {:>14}",
        "CPU busy during notifications",
        format!("{:.0} %", 100.0 * r.notify_cpu.process.as_secs_f64() / secs)
    );
    if r.out_of_order > 0 || r.stalled {
        println!("  WARNING: {} values out of sequence, stalled: {}", r.out_of_order, r.stalled);
    }
    let threads =
        r.notify_cpu.threads.map(|(c, s)| serde_json::json!({"client_us": per_ntf(c), "server_us": per_ntf(s)}));
    let json = serde_json::json!({
        "bench": "gatt_speed",
        "stack": "gattling",
        "transport": args.transport,
        "runtime": mode,
        "acl": [r.acl.0, r.acl.1],
        "mtu": r.mtu,
        "connect_ms": r.connect.as_secs_f64() * 1e3,
        "reads": r.reads,
        "read_total_s": r.read_total.as_secs_f64(),
        "reads_per_s": reads_per_s,
        "read_median_us": us(r.read_median),
        "read_p99_us": us(r.read_p99),
        "read_cpu_us": read_cpu,
        "read_mean_us": read_us,
        "pingpong_round_trips": r.pings,
        "pingpong_round_trips_per_s": pings_per_s,
        "pingpong_us": ping_us,
        "ring3_us": ring_us,
        "notify_value_len": NOTIFY_LEN,
        "notify_window": args.window,
        "notifications_sent": r.sent,
        "notifications": r.received,
        "notify_seconds": secs,
        "notifications_per_s": ntf_per_s,
        "mb_per_s": mb_per_s,
        "cpu_us_per_notification_combined": ntf_cpu,
        "cpu_us_per_notification_per_side_est": ntf_cpu / 2.0,
        "cpu_us_per_notification_threads": threads,
        "out_of_order": r.out_of_order,
        "stalled": r.stalled,
    });
    println!("{json}");
}

fn main() {
    let args = parse_args();
    let rt = match args.mode {
        Mode::Single | Mode::Split => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        Mode::Multi => tokio::runtime::Builder::new_multi_thread().worker_threads(MULTI_WORKERS).enable_all().build(),
    }
    .expect("runtime");
    // SAFETY: pthread_self has no preconditions.
    let client_thread = unsafe { libc::pthread_self() };
    let mut server_thread = None;
    let server_rt = match args.mode {
        Mode::Single | Mode::Multi => rt.handle().clone(),
        Mode::Split => {
            use std::os::unix::thread::JoinHandleExt;
            let (tx, rx) = std::sync::mpsc::channel();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let th = std::thread::Builder::new()
                .name("server-host".into())
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                    let _ = tx.send(rt.handle().clone());
                    rt.block_on(async {
                        let _ = stop_rx.await;
                    });
                })
                .expect("server thread");
            let pthread = th.as_pthread_t();
            server_thread = Some((th, stop_tx, pthread));
            rx.recv().expect("server runtime")
        }
    };
    let clocks = Clocks { client: client_thread, server: server_thread.as_ref().map(|(_, _, p)| *p) };
    let limit = Duration::from_secs_f64(60.0 + args.seconds * 2.0 + args.reads as f64 * 0.1);
    let bench = {
        let args = args.clone();
        async move { run(&args, server_rt, &clocks).await }
    };
    // The time limit waits on the benchmark from outside: a timeout wrapped around `run` would
    // look at its timer every time the client is polled, a cost the ping-pong does not pay.
    let result = match args.mode {
        // On the multi-thread runtime the client runs as a task on a worker, as the hosts do
        // (block_on would keep it on the main thread, outside the runtime's workers).
        Mode::Multi => rt.block_on(async {
            let task = tokio::spawn(bench);
            tokio::time::timeout(limit, task).await.map(|joined| joined.expect("bench task"))
        }),
        Mode::Single | Mode::Split => rt.block_on(async { tokio::time::timeout(limit, bench).await }),
    };
    let code = match result {
        Ok(Ok(r)) => {
            report(&args, &r);
            i32::from(r.stalled || r.out_of_order > 0)
        }
        Ok(Err(e)) => {
            eprintln!("gatt_speed: error: {e}");
            1
        }
        Err(_) => {
            eprintln!("gatt_speed: error: not finished within {limit:?}");
            3
        }
    };
    if let Some((th, stop, _)) = server_thread {
        let _ = stop.send(());
        let _ = th.join();
    }
    drop(rt);
    std::process::exit(code);
}
