//! Whole-host ATT server throughput through the tokio runtime, measured the way
//! `shared/perf-anchors/trouble-bench` measures trouble-host 0.8 (`full read`), so the two
//! `RESULT` lines can be put side by side (`scripts/bench-vs-trouble.sh`).
//!
//! A fake controller lives in this process as the host's [`Transport`]: its own
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
use gattling::{AdvertisingOptions, Host, HostOptions, Transport};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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

const CONN_HANDLE: u16 = 0x0040;
const ACL_LEN: u16 = 251;
const ACL_NUM: u8 = 8;
static VALUE20: [u8; 20] = *b"0123456789abcdefghij";

#[derive(Default)]
struct State {
    /// Command Complete / Status events not yet read by the host, one packet per read.
    control: VecDeque<Vec<u8>>,
    adv_enabled: bool,
    conn_sent: bool,
    pending_nocp: u16,
    /// The ATT request handed to the host (3 bytes).
    request: [u8; 3],
    to_send: u64,
    window: u32,
    /// Hand the host every packet that is ready in one read (a byte stream such as a UART or
    /// TCP delivers them so), instead of one packet per read as trouble-bench does.
    coalesce: bool,
    outstanding: u32,
    responses: u64,
    target: u64,
    /// ACL packets from the host that were not ATT Read Responses.
    other_tx: u64,
    /// The first Read Response seen while `capture` is set.
    capture: bool,
    captured: Option<Vec<u8>>,
    /// Bytes of a packet the host wrote only partly (kept across writes).
    carry: Vec<u8>,
    /// `poll_read` calls that returned a packet; `poll_write` calls.
    reads: u64,
    writes: u64,
    rx_waker: Option<Waker>,
    done_waker: Option<Waker>,
}

#[derive(Default)]
struct Fake {
    st: Mutex<State>,
}

fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

impl Fake {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands `n` more requests to the host.
    fn arm(&self, n: u64) {
        let waker = {
            let mut s = self.lock();
            s.to_send = n;
            s.target = s.responses + n;
            s.rx_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Resolves once every armed request has been answered.
    async fn wait_done(&self) {
        std::future::poll_fn(|cx| {
            let mut s = self.lock();
            if s.to_send == 0 && s.responses >= s.target {
                Poll::Ready(())
            } else {
                register(&mut s.done_waker, cx);
                Poll::Pending
            }
        })
        .await
    }

    async fn wait_connected(&self) {
        std::future::poll_fn(|cx| {
            let mut s = self.lock();
            if s.conn_sent {
                Poll::Ready(())
            } else {
                register(&mut s.done_waker, cx);
                Poll::Pending
            }
        })
        .await
    }
}

/// Return parameters after the status octet, by opcode (Core Vol 4 Part E §7); commands not
/// listed get none.
fn return_params(opcode: u16) -> Vec<u8> {
    match opcode {
        // Read Local Version Information: HCI 5.4 (0x0d), revision, LMP 5.4, company 0xFFFF, subversion.
        0x1001 => vec![0x0d, 0x01, 0x00, 0x0d, 0xff, 0xff, 0x01, 0x00],
        // Read Local Supported Commands: 64 octets; octet 41 bit 5 (LE Read Buffer Size v2) clear,
        // so the host asks v1, as trouble-bench's fake answers it.
        0x1002 => {
            let mut v = vec![0xff; 64];
            v[41] &= !0x20;
            v
        }
        // Read Local Supported Features: LE Supported (Controller), BR/EDR Not Supported.
        0x1003 => vec![0, 0, 0, 0, 0x60, 0, 0, 0],
        // Read Buffer Size.
        0x1005 => vec![0x1b, 0x00, 0, 8, 0],
        // Read BD_ADDR.
        0x1009 => vec![0x01, 0x02, 0x03, 0x04, 0x05, 0xc0],
        // LE Read Buffer Size v1: 251 x 8, as trouble-bench's fake.
        0x2002 => {
            let l = ACL_LEN.to_le_bytes();
            vec![l[0], l[1], ACL_NUM]
        }
        // LE Read Local Supported Features, LE Rand.
        0x2003 | 0x2018 => vec![0; 8],
        // LE Read Advertising Physical Channel Tx Power.
        0x2007 => vec![0],
        // LE Encrypt.
        0x2017 => vec![0; 16],
        // LE Set Data Length: the handle.
        0x2022 => CONN_HANDLE.to_le_bytes().to_vec(),
        // LE Read Buffer Size v2.
        0x2060 => {
            let l = ACL_LEN.to_le_bytes();
            vec![l[0], l[1], ACL_NUM, 0, 0, 0]
        }
        _ => Vec::new(),
    }
}

/// Commands answered with Command Status (Core Vol 4 Part E §7: the asynchronous ones).
fn answered_with_status(opcode: u16) -> bool {
    matches!(opcode, 0x0406 | 0x200d | 0x2013 | 0x2016 | 0x2032)
}

impl State {
    /// Takes one complete H4 packet the host wrote.
    fn host_packet(&mut self, p: &[u8]) {
        match p[0] {
            0x01 => {
                let opcode = u16::from_le_bytes([p[1], p[2]]);
                let params = &p[4..];
                if opcode == 0x200a && params.first() == Some(&1) {
                    self.adv_enabled = true;
                }
                let o = opcode.to_le_bytes();
                let ev = if answered_with_status(opcode) {
                    vec![0x04, 0x0f, 4, 0x00, 1, o[0], o[1]]
                } else {
                    let ret = return_params(opcode);
                    let mut ev = vec![0x04, 0x0e, (4 + ret.len()) as u8, 1, o[0], o[1], 0x00];
                    ev.extend_from_slice(&ret);
                    ev
                };
                self.control.push_back(ev);
            }
            0x02 => {
                self.pending_nocp += 1;
                // H4 type, handle (2), length (2), L2CAP length (2), CID (2), ATT PDU.
                let cid = u16::from_le_bytes([p[7], p[8]]);
                let att = &p[9..];
                if cid == 0x0004 && att.first() == Some(&0x0b) {
                    if self.capture && self.captured.is_none() {
                        self.captured = Some(att.to_vec());
                    }
                    self.responses += 1;
                    self.outstanding = self.outstanding.saturating_sub(1);
                } else {
                    self.other_tx += 1;
                }
            }
            other => panic!("fake controller: unexpected H4 packet type {other:#04x}"),
        }
    }

    /// Splits `bytes` into H4 packets; returns how many bytes form complete packets.
    fn host_bytes(&mut self, bytes: &[u8]) -> usize {
        let mut at = 0;
        loop {
            let rest = &bytes[at..];
            let len = match rest.first() {
                Some(0x01) if rest.len() >= 4 => 4 + rest[3] as usize,
                Some(0x02) if rest.len() >= 5 => 5 + u16::from_le_bytes([rest[3], rest[4]]) as usize,
                Some(0x01 | 0x02) | None => return at,
                Some(other) => panic!("fake controller: unexpected H4 packet type {other:#04x}"),
            };
            if rest.len() < len {
                return at;
            }
            self.host_packet(&rest[..len]);
            at += len;
        }
    }

    /// The next packet for the host, written into `b`; its length, or 0 if there is none.
    fn next_packet(&mut self, b: &mut [u8]) -> usize {
        if let Some(ev) = self.control.pop_front() {
            b[..ev.len()].copy_from_slice(&ev);
            return ev.len();
        }
        if self.adv_enabled && !self.conn_sent {
            self.conn_sent = true;
            if let Some(w) = self.done_waker.take() {
                w.wake();
            }
            // LE Meta, LE Connection Complete: status 0, handle, role peripheral, peer public
            // 06:05:04:03:02:01, interval 0x18, latency 0, timeout 0x1f4, accuracy 0
            // (the bytes trouble-bench's fake sends).
            let h = CONN_HANDLE.to_le_bytes();
            let ev = [
                0x04, 0x3e, 19, 0x01, 0x00, h[0], h[1], 0x01, 0x00, 1, 2, 3, 4, 5, 6, 0x18, 0x00, 0x00, 0x00, 0xf4,
                0x01, 0x00,
            ];
            b[..ev.len()].copy_from_slice(&ev);
            return ev.len();
        }
        if self.pending_nocp > 0 {
            let c = self.pending_nocp.to_le_bytes();
            self.pending_nocp = 0;
            let h = CONN_HANDLE.to_le_bytes();
            let ev = [0x04, 0x13, 5, 1, h[0], h[1], c[0], c[1]];
            b[..ev.len()].copy_from_slice(&ev);
            return ev.len();
        }
        if self.to_send > 0 && self.outstanding < self.window {
            self.to_send -= 1;
            self.outstanding += 1;
            // PB = 0b10, first automatically flushable packet.
            let h = (CONN_HANDLE | (0b10 << 12)).to_le_bytes();
            let r = self.request;
            let pkt = [0x02, h[0], h[1], 7, 0, 3, 0, 0x04, 0x00, r[0], r[1], r[2]];
            b[..pkt.len()].copy_from_slice(&pkt);
            return pkt.len();
        }
        0
    }
}

struct FakeReader(Arc<Fake>);
struct FakeWriter(Arc<Fake>);

impl AsyncRead for FakeReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut s = self.0.lock();
        // The packet is written straight into the host's buffer (4096 bytes, already
        // initialised by the host, so this costs no memset); every packet here is shorter than
        // 300 bytes.
        let out = buf.initialize_unfilled();
        assert!(out.len() >= 300, "host read buffer too small for the fake controller");
        let mut n = s.next_packet(out);
        while s.coalesce && n > 0 && out.len() - n >= 300 {
            match s.next_packet(&mut out[n..]) {
                0 => break,
                more => n += more,
            }
        }
        if n == 0 {
            register(&mut s.rx_waker, cx);
            return Poll::Pending;
        }
        s.reads += 1;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for FakeWriter {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        let (rx, done) = {
            let mut s = self.0.lock();
            let s = &mut *s;
            s.writes += 1;
            if s.carry.is_empty() {
                let used = s.host_bytes(bytes);
                s.carry.extend_from_slice(&bytes[used..]);
            } else {
                let mut carry = std::mem::take(&mut s.carry);
                carry.extend_from_slice(bytes);
                let used = s.host_bytes(&carry);
                carry.drain(..used);
                s.carry = carry;
            }
            let done = if s.to_send == 0 && s.responses >= s.target { s.done_waker.take() } else { None };
            (s.rx_waker.take(), done)
        };
        // Wake outside the lock (the woken task may run on another worker at once).
        if let Some(w) = rx {
            w.wake();
        }
        if let Some(w) = done {
            w.wake();
        }
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

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
    let fake = Arc::new(Fake::default());
    {
        let mut s = fake.lock();
        s.window = args.window;
        s.coalesce = args.coalesce;
        s.carry = Vec::with_capacity(1024);
    }
    let transport = Transport::new(FakeReader(fake.clone()), FakeWriter(fake.clone()), "fake in-process controller");
    let host = Host::start(transport, HostOptions::default()).await?;
    let value_handle = build_database(&host, args.layout)?;
    let h = value_handle.to_le_bytes();
    let request = [0x0a, h[0], h[1]];
    fake.lock().request = request;
    host.advertise(&AdvertisingOptions { data: vec![0x02, 0x01, 0x06], ..Default::default() }).await?;
    fake.wait_connected().await;
    let _conn = host.accept().await?;

    // Correctness: one request, its response captured.
    fake.lock().capture = true;
    fake.arm(1);
    fake.wait_done().await;
    let response = {
        let mut s = fake.lock();
        s.capture = false;
        s.captured.take().unwrap_or_default()
    };
    let mut expected = vec![0x0b];
    expected.extend_from_slice(&VALUE20);
    if response != expected {
        return Err(gattling::Error::Protocol(format!("unexpected response {}", hex(&response))));
    }
    // Warm-up.
    fake.arm(args.requests / 2);
    fake.wait_done().await;

    let (r0, w0) = {
        let s = fake.lock();
        (s.reads, s.writes)
    };
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
    let s = fake.lock();
    Ok(Measured {
        value_handle,
        request,
        response,
        rates,
        allocs_per_req: total_allocs as f64 / total,
        cpu_us_per_req: cpu.as_secs_f64() * 1e6 / total,
        reads_per_req: (s.reads - r0) as f64 / total,
        writes_per_req: (s.writes - w0) as f64 / total,
        other_tx: s.other_tx,
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
