//! Proves the whole host, through the tokio runtime, handles a Read Request, a notification it
//! receives (as GATT client) and a notification it sends (as GATT server) without touching the
//! heap once the link is up and warm. The host runs over the in-process fake controller
//! (`fake_controller/mod.rs`, shared with `examples/host_bench.rs`), which never lets the
//! host's ACL credits run out and does not allocate while counting.
//!
//! A counting global allocator counts every allocation (and reallocation) while the counting
//! flag is set, on every thread of the test's runtime (its workers and blocking threads) and
//! on the test's own thread, which drives the main future. Threads outside the test (the test
//! harness's, which may print another test's result meanwhile) are not counted. The tests are
//! serialized, and each test's runtime is shut down before the next one starts, so no other
//! test's work runs while one counts.
//!
//! Each test builds a multi-thread runtime with 2 workers, as
//! `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` would (built by hand to mark
//! its threads as counted), connects, warms up with the same traffic as is counted, then counts
//! 1,000 lockstep rounds (one PDU in flight at a time), waiting on the fake's events, never on
//! sleeps. On failure the message carries a backtrace of the first counted allocation; set
//! `NO_ALLOC_BACKTRACE=N` to print the first N counted allocations' backtraces too.

mod fake_controller;

use fake_controller::{Fake, CONN_HANDLE};
use gattling::gatt::{AttrKind, CharacteristicDef, Properties, ServiceDef};
use gattling::gatt_client::{ClientOptions, GattClient};
use gattling::{AdvertisingOptions, Connection, Host, HostOptions};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

// ------------------------------------------------------------------ allocation counter

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
/// Backtraces still to print (`NO_ALLOC_BACKTRACE`).
static TRACES_LEFT: AtomicUsize = AtomicUsize::new(0);
/// The backtrace of the first counted allocation of the current window.
static FIRST: Mutex<Option<String>> = Mutex::new(None);

thread_local! {
    /// A thread of the running test (its own thread or one of its runtime's).
    static OURS: Cell<bool> = const { Cell::new(false) };
    /// Set while a backtrace is being taken, which allocates itself.
    static IN_TRACE: Cell<bool> = const { Cell::new(false) };
}

impl Counting {
    fn note(&self) {
        if !COUNTING.load(Ordering::Relaxed) {
            return;
        }
        // `try_with`: the allocator may run while thread-locals are being torn down.
        if !OURS.try_with(Cell::get).unwrap_or(false) || IN_TRACE.try_with(Cell::get).unwrap_or(true) {
            return;
        }
        let first = ALLOCS.fetch_add(1, Ordering::SeqCst) == 0;
        let print = TRACES_LEFT.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if first || print {
            IN_TRACE.with(|t| t.set(true));
            let trace = std::backtrace::Backtrace::force_capture().to_string();
            if print {
                eprintln!("counted allocation:\n{trace}");
            }
            if first {
                *FIRST.lock().unwrap_or_else(PoisonError::into_inner) = Some(trace);
            }
            IN_TRACE.with(|t| t.set(false));
        }
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting has no effect on
// the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.note();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A counting window: allocations are counted from `start` until `stop` (or drop).
struct Window;

impl Window {
    fn start() -> Window {
        let traces = std::env::var("NO_ALLOC_BACKTRACE").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        TRACES_LEFT.store(traces, Ordering::SeqCst);
        *FIRST.lock().unwrap_or_else(PoisonError::into_inner) = None;
        ALLOCS.store(0, Ordering::SeqCst);
        COUNTING.store(true, Ordering::SeqCst);
        Window
    }

    /// The allocations counted, and the backtrace of the first.
    fn stop(self) -> (u64, String) {
        COUNTING.store(false, Ordering::SeqCst);
        let first = FIRST.lock().unwrap_or_else(PoisonError::into_inner).take();
        (ALLOCS.load(Ordering::SeqCst), first.unwrap_or_default())
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        COUNTING.store(false, Ordering::SeqCst);
    }
}

/// Runs `test` on a fresh multi-thread runtime with 2 workers (what
/// `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` builds), one test at a time,
/// with every thread of the runtime and this thread counted; the runtime is shut down before
/// the next test may start.
fn run<F: Future<Output = ()>>(test: impl FnOnce() -> F) {
    static SERIAL: Mutex<()> = Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(|| OURS.with(|o| o.set(true)))
        .build()
        .expect("tokio runtime");
    OURS.with(|o| o.set(true));
    let result = rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), test()).await });
    OURS.with(|o| o.set(false));
    rt.shutdown_timeout(Duration::from_secs(10));
    result.expect("test not finished within 60 s");
}

// ------------------------------------------------------------------ fixtures

const ROUNDS: u64 = 1_000;
const VALUE20: [u8; 20] = *b"0123456789abcdefghij";

/// A 20-byte value that differs per round.
fn value(round: u64) -> [u8; 20] {
    let mut v = VALUE20;
    v[..8].copy_from_slice(&round.to_le_bytes());
    v
}

/// A host on a fresh fake controller.
async fn start() -> (Arc<Fake>, Host) {
    let fake = Fake::new();
    let host = Host::start(fake.transport(), HostOptions::default()).await.expect("host starts on the fake");
    (fake, host)
}

/// Advertises until the fake connects; the connection.
async fn connect(fake: &Fake, host: &Host) -> Connection {
    host.advertise(&AdvertisingOptions { data: vec![0x02, 0x01, 0x06], ..Default::default() })
        .await
        .expect("advertising starts");
    fake.wait_connected().await;
    let conn = host.accept().await.expect("connection accepted");
    assert_eq!(conn.handle(), CONN_HANDLE);
    conn
}

fn assert_no_allocations(what: &str, (count, first): (u64, String)) {
    assert_eq!(count, 0, "{count} allocations in {ROUNDS} {what}; the first one:\n{first}");
}

// ------------------------------------------------------------------ tests

/// The host as GATT server answers lockstep Read Requests for a 20-byte value.
#[test]
fn read_requests_through_the_runtime_do_not_allocate() {
    run(|| async {
        let (fake, host) = start().await;
        let gatt = host.gatt_server("no-alloc", 0);
        let service = gatt
            .add_service(ServiceDef::primary(0x1820u16).characteristic(CharacteristicDef::new(
                0x2A40u16,
                Properties::READ,
                &VALUE20,
            )))
            .expect("service added");
        let h = service.characteristics[0].value_handle().to_le_bytes();
        fake.set_request(&[0x0a, h[0], h[1]]);
        let _conn = connect(&fake, &host).await;

        // One checked request, then the warm-up.
        fake.arm(1);
        fake.wait_done().await;
        let mut last = Vec::new();
        fake.last_att(&mut last);
        assert_eq!(last, [&[0x0b][..], &VALUE20].concat(), "Read Response");
        fake.arm(ROUNDS);
        fake.wait_done().await;

        let window = Window::start();
        fake.arm(ROUNDS);
        fake.wait_done().await;
        let counted = window.stop();

        assert_eq!(fake.att_sent(0x0b), 1 + 2 * ROUNDS, "Read Responses written");
        assert_eq!(fake.counters().other_tx, 0, "nothing but Read Responses written");
        assert_no_allocations("Read Requests", counted);
    });
}

/// The host as GATT client takes lockstep Handle Value Notifications from the peer with
/// `Notifications::next_into`.
#[test]
fn notifications_received_do_not_allocate() {
    run(|| async {
        let (fake, host) = start().await;
        let conn = connect(&fake, &host).await;
        let client = GattClient::new(conn, ClientOptions { mtu: None }).await.expect("GATT client");
        let mut notifications = client.notifications();
        let mut buf = Vec::with_capacity(64);
        const HANDLE: u16 = 0x002a;
        let h = HANDLE.to_le_bytes();
        let mut pdu = [0u8; 23];
        pdu[..3].copy_from_slice(&[0x1b, h[0], h[1]]);

        // Warm-up, then the same traffic counted.
        let mut counted = (0, String::new());
        for phase in 0..2 {
            let window = (phase == 1).then(Window::start);
            for round in phase * ROUNDS..(phase + 1) * ROUNDS {
                pdu[3..].copy_from_slice(&value(round));
                fake.send_att(&pdu);
                let (handle, event) = notifications.next_into(&mut buf).await.expect("link up");
                assert_eq!((handle, event), (HANDLE, gattling::gatt_client::CHAR_NOTIFY_EVENT));
                assert_eq!(buf, value(round), "round {round}");
            }
            if let Some(window) = window {
                counted = window.stop();
            }
        }

        assert_eq!(fake.counters().other_tx, 0, "the host wrote nothing back");
        assert_no_allocations("notifications received", counted);
    });
}

/// The host as GATT server notifies a subscribed peer of each `Characteristic::set_value`,
/// one at a time (the next value is set once the fake saw the previous notification).
#[test]
fn notifications_sent_do_not_allocate() {
    run(|| async {
        let (fake, host) = start().await;
        let gatt = host.gatt_server("no-alloc", 0);
        let service = gatt
            .add_service(ServiceDef::primary(0x1820u16).characteristic(CharacteristicDef::new(
                0x2A40u16,
                Properties::READ | Properties::NOTIFY,
                &VALUE20,
            )))
            .expect("service added");
        let ch = service.characteristics[0].clone();
        let vh = ch.value_handle();
        let cccd = gatt
            .attributes()
            .iter()
            .find(|a| a.kind == AttrKind::Cccd && a.handle > vh)
            .map(|a| a.handle)
            .expect("CCCD");
        let _conn = connect(&fake, &host).await;

        // The peer's client enables notifications: Write Request to the CCCD, value 01 00.
        let c = cccd.to_le_bytes();
        fake.send_att(&[0x12, c[0], c[1], 0x01, 0x00]);
        fake.wait_att_sent(0x13, 1).await;
        assert_eq!(ch.cccd(CONN_HANDLE), 0x0001, "notifications enabled");

        // Warm-up, then the same traffic counted.
        let mut counted = (0, String::new());
        for phase in 0..2 {
            let window = (phase == 1).then(Window::start);
            for round in phase * ROUNDS..(phase + 1) * ROUNDS {
                ch.set_value(&value(round));
                fake.wait_att_sent(0x1b, round + 1).await;
            }
            if let Some(window) = window {
                counted = window.stop();
            }
        }

        let mut last = Vec::new();
        fake.last_att(&mut last);
        let h = vh.to_le_bytes();
        assert_eq!(last, [&[0x1b, h[0], h[1]][..], &value(2 * ROUNDS - 1)].concat(), "last notification");
        assert_eq!(fake.att_sent(0x1b), 2 * ROUNDS, "notifications written");
        assert_no_allocations("notifications sent", counted);
    });
}
