//! Whole-host ATT server throughput through the tokio runtime, measured the way
//! `shared/perf-anchors/trouble-bench` measures trouble-host 0.8 (`full read`), so the two
//! `RESULT` lines can be put side by side (`scripts/bench-vs-trouble.sh`).
//!
//! A fake controller (`tests/fake_controller/mod.rs`, shared with `tests/no_alloc.rs`) lives in
//! this process as the host's [`gattling::Transport`]: its own
//! `AsyncRead`/`AsyncWrite` pair over shared state, no sockets, no radio, no controller
//! emulation. It answers every HCI command with Command Complete (status 0, plausible return
//! parameters; zero-filled ones of the right length for the rest), reports one LE Connection
//! Complete (peripheral role, handle 0x0040) once advertising is enabled, and then hands the
//! host H4 ACL packets carrying the ATT Read Request `0a HH HH` (L2CAP CID 4), one packet per
//! `read` call (as trouble-bench's fake returns one packet per `read`). It counts the Read
//! Responses the host writes and returns one Number Of Completed Packets event on the next
//! read for the ACL packets written since the last one. Lockstep: the next request is handed
//! over only after the previous response was written; `--window W` keeps up to W requests
//! outstanding.
//!
//! The host serves trouble-bench's database: one primary service (0x1820) with one read-only
//! 20-byte characteristic (0x2A40). With `--layout exact` (default) gattling's built-in GAP and
//! GATT services are removed first and the service is placed at handle 1, so the value handle
//! is 3 and the request bytes are exactly `0a 03 00`, as in trouble-bench; `--layout builtins`
//! keeps the built-ins and reads the value handle the server assigned (printed).
//!
//! Output: `req -> rsp` of one checked request, then a `RESULT` line in trouble-bench's shape
//! (median requests/s over the runs, allocations per request counted by a global counting
//! allocator over the measured runs only, on all threads), and a `detail` line with process
//! CPU per request and reads/writes per request on the fake transport.
//!
//! Run (release): `cargo run --release -p gattling --example host_bench -- [--runtime multi|current]
//! [--window W] [--requests N] [--runs R] [--layout exact|builtins] [--coalesce]`
//! (defaults: multi, 1, 500000, 7, exact). `--coalesce` hands the host every ready packet in
//! one read, as a byte-stream transport would (not trouble-bench's shape: it returns one
//! packet per read; the host can then answer a whole window per read). `multi` is what `#[tokio::main]` builds (a
//! multi-thread runtime with one worker per core); `current` a current-thread runtime.

use gattling::gatt::{CharacteristicDef, Properties, Service};
use gattling::proto::gatt::{AttrKind, Database, ServiceDef};
use gattling::{AdvertisingOptions, Host, HostOptions};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

// ------------------------------------------------------------------ allocation counter

struct CountingAlloc;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocs() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}

// ------------------------------------------------------------------ fake controller

#[path = "../tests/fake_controller/mod.rs"]
mod fake_controller;

use fake_controller::{Fake, ACL_NUM};

static VALUE20: [u8; 20] = *b"0123456789abcdefghij";

// ------------------------------------------------------------------ arguments and report

#[derive(Clone, Copy, PartialEq, Eq)]
enum Runtime {
    Multi,
    Current,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DbLayout {
    Exact,
    Builtins,
}

struct Args {
    runtime: Runtime,
    window: u32,
    requests: u64,
    runs: usize,
    layout: DbLayout,
    coalesce: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: host_bench [--runtime multi|current] [--window W] [--requests N] [--runs R] [--layout exact|builtins] \
         [--coalesce]\n\
         defaults: --runtime multi --window 1 --requests 500000 --runs 7 --layout exact"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        runtime: Runtime::Multi,
        window: 1,
        requests: 500_000,
        runs: 7,
        layout: DbLayout::Exact,
        coalesce: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--runtime" => {
                a.runtime = match value().as_str() {
                    "multi" => Runtime::Multi,
                    "current" => Runtime::Current,
                    _ => usage(),
                }
            }
            "--window" => a.window = value().parse().unwrap_or_else(|_| usage()),
            "--requests" => a.requests = value().parse().unwrap_or_else(|_| usage()),
            "--runs" => a.runs = value().parse().unwrap_or_else(|_| usage()),
            "--coalesce" => a.coalesce = true,
            "--layout" => {
                a.layout = match value().as_str() {
                    "exact" => DbLayout::Exact,
                    "builtins" => DbLayout::Builtins,
                    _ => usage(),
                }
            }
            _ => usage(),
        }
    }
    // The host keeps at most ACL_NUM packets in the controller; a larger window cannot fill.
    if a.window == 0 || a.window > u32::from(ACL_NUM) || a.requests == 0 || a.runs == 0 {
        usage()
    }
    a
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// User + system CPU time of the whole process.
fn process_cpu() -> Duration {
    // SAFETY: getrusage writes one `rusage` into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to an owned rusage; RUSAGE_SELF is a valid `who`.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::from_micros(t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

// ------------------------------------------------------------------ the bench

struct Measured {
    value_handle: u16,
    request: [u8; 3],
    response: Vec<u8>,
    rates: Vec<f64>,
    allocs_per_req: f64,
    cpu_us_per_req: f64,
    reads_per_req: f64,
    writes_per_req: f64,
    other_tx: u64,
}

/// Builds the bench database on the host's GATT server; returns the value handle.
fn build_database(host: &Host, layout: DbLayout) -> Result<u16, gattling::Error> {
    let gatt = host.gatt_server("host-bench", 0);
    let mut service =
        ServiceDef::primary(0x1820u16).characteristic(CharacteristicDef::new(0x2A40u16, Properties::READ, &VALUE20));
    if layout == DbLayout::Exact {
        // The built-in GAP and GATT services, as `gatt_server` adds them to an empty database.
        let mut db = Database::new();
        for s in gattling::proto::gatt::server::builtin_services("host-bench", 0) {
            db.add_service(s).map_err(|e| gattling::Error::InvalidArgument(e.to_string()))?;
        }
        let builtins: Vec<(u16, u16)> = db
            .attributes()
            .iter()
            .filter(|a| a.kind == AttrKind::PrimaryService)
            .map(|a| (a.handle, a.group_end))
            .collect();
        for (handle, end_handle) in builtins {
            gatt.remove_service(&Service { handle, end_handle, characteristics: Vec::new() })?;
        }
        service = service.at_handle(1);
    }
    let added = gatt.add_service(service)?;
    let value_handle = added
        .characteristics
        .first()
        .map(|c| c.value_handle())
        .ok_or_else(|| gattling::Error::Protocol("bench characteristic missing".into()))?;
    Ok(value_handle)
}

async fn bench(args: &Args) -> Result<Measured, gattling::Error> {
    let fake = Fake::new();
    fake.set_window(args.window);
    fake.set_coalesce(args.coalesce);
    let host = Host::start(fake.transport(), HostOptions::default()).await?;
    let value_handle = build_database(&host, args.layout)?;
    let h = value_handle.to_le_bytes();
    let request = [0x0a, h[0], h[1]];
    fake.set_request(&request);
    host.advertise(&AdvertisingOptions { data: vec![0x02, 0x01, 0x06], ..Default::default() }).await?;
    fake.wait_connected().await;
    let _conn = host.accept().await?;

    // Correctness: one request; its response is the last ATT PDU the host wrote.
    fake.arm(1);
    fake.wait_done().await;
    let mut response = Vec::new();
    fake.last_att(&mut response);
    let mut expected = vec![0x0b];
    expected.extend_from_slice(&VALUE20);
    if response != expected {
        return Err(gattling::Error::Protocol(format!("unexpected response {}", hex(&response))));
    }
    // Warm-up.
    fake.arm(args.requests / 2);
    fake.wait_done().await;

    let c0 = fake.counters();
    let mut rates = Vec::with_capacity(args.runs);
    let mut total_allocs = 0u64;
    let cpu0 = process_cpu();
    for _ in 0..args.runs {
        let a0 = allocs();
        let t0 = Instant::now();
        fake.arm(args.requests);
        fake.wait_done().await;
        let dt = t0.elapsed().as_secs_f64();
        total_allocs += allocs() - a0;
        rates.push(args.requests as f64 / dt);
    }
    let cpu = process_cpu().saturating_sub(cpu0);
    let total = (args.requests * args.runs as u64) as f64;
    let c = fake.counters();
    Ok(Measured {
        value_handle,
        request,
        response,
        rates,
        allocs_per_req: total_allocs as f64 / total,
        cpu_us_per_req: cpu.as_secs_f64() * 1e6 / total,
        reads_per_req: (c.reads - c0.reads) as f64 / total,
        writes_per_req: (c.writes - c0.writes) as f64 / total,
        other_tx: c.other_tx,
    })
}

fn main() {
    let args = parse_args();
    let rt = match args.runtime {
        // What `#[tokio::main]` builds: a multi-thread runtime, one worker per core.
        Runtime::Multi => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
        Runtime::Current => tokio::runtime::Builder::new_current_thread().enable_all().build(),
    }
    .expect("tokio runtime");
    let rt_name = match args.runtime {
        Runtime::Multi => "tokio multi-thread",
        Runtime::Current => "tokio current-thread",
    };
    let limit = Duration::from_secs(30 + args.requests * args.runs as u64 / 10_000);
    let result = rt.block_on(async { tokio::time::timeout(limit, bench(&args)).await });
    let mut m = match result {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            eprintln!("host_bench: error: {e}");
            std::process::exit(1)
        }
        Err(_) => {
            eprintln!("host_bench: error: not finished within {limit:?}");
            std::process::exit(3)
        }
    };
    let layout = match args.layout {
        DbLayout::Exact => "built-in GAP/GATT services removed, bench service at handle 1",
        DbLayout::Builtins => "built-in GAP/GATT services kept, bench service after them",
    };
    println!("database: {layout}; value handle {}", m.value_handle);
    println!("req {} -> rsp {}", hex(&m.request), hex(&m.response));
    if m.other_tx != 0 {
        println!("note: {} non-ATT ACL packets sent by host", m.other_tx);
    }
    let min = m.rates.iter().copied().fold(f64::INFINITY, f64::min);
    let max = m.rates.iter().copied().fold(0.0, f64::max);
    let med = median(&mut m.rates);
    let mut mode = if args.window > 1 { format!("window {}", args.window) } else { "lockstep".into() };
    if args.coalesce {
        mode.push_str(", coalesced reads");
    }
    println!(
        "RESULT gattling full-host read ({mode}; {rt_name}): median {med:.0} req/s (min {min:.0}, max {max:.0}; \
         {:.3} us/req median) runs={} allocs/req={:.3}",
        1e6 / med,
        m.rates.len(),
        m.allocs_per_req
    );
    println!("  runs: {:?}", m.rates.iter().map(|r| *r as u64).collect::<Vec<_>>());
    println!(
        "  detail: process CPU {:.3} us/req; fake transport {:.2} reads/req, {:.2} writes/req",
        m.cpu_us_per_req, m.reads_per_req, m.writes_per_req
    );
    drop(rt);
}
