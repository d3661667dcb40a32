//! Memory per link: the heap the central host holds for each connection (issue 14 part 5).
//!
//! A tagging global allocator puts a small header in front of every block saying whether a
//! thread of the *central* runtime allocated it, and keeps the bytes live in such blocks. The
//! central host runs alone on its own runtime (one worker thread, plus the test's thread while
//! it drives `block_on`); the peripheral hosts, the virtual radio and its controllers run on a
//! second runtime. The central's controller is reached through a `tokio::io::duplex` pipe that a
//! task on the second runtime copies to and from the virtual controller, so the radio's work
//! (which runs inline in the controller's `poll_write`) is done on the second runtime's threads
//! and is not counted. What is counted: the central's `Host` driver state, per-link state, the
//! per-link application task, the `Connection` and `GattClient` handles the application holds,
//! and the central runtime's own bookkeeping for them.
//!
//! Bytes per link = (central bytes live with N links up, after a read on each) minus (central
//! bytes live before), over N. The tests assert at most 4096 bytes per link with the default
//! MTU settings (the client exchanges MTU 517), that the buffer a 512-byte read (fragmented
//! over 251-octet ACL packets) grew is given back at the next PDU that arrives whole, and that
//! nothing is left once every link is gone. Set `MEMORY_REPORT=1` to print the figures and
//! `MEMORY_TRACE=1` to print the live blocks by call site.

use gattling::gatt::{CharacteristicDef, Properties, ServiceDef};
use gattling::gatt_client::{ClientOptions, GattClient};
use gattling::{AdvertisingOptions, ConnectOptions, Connection, Host, HostOptions, Transport};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

// ------------------------------------------------------------------ tagging allocator

/// Header size in front of every block: room for the tag, keeping the block's alignment.
const HEADER: usize = 16;
const CENTRAL: u8 = 0xC1;
const OTHER: u8 = 0x00;

/// Bytes live in blocks a central thread allocated.
static CENTRAL_LIVE: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    /// This thread works for the central host.
    static IS_CENTRAL: Cell<bool> = const { Cell::new(false) };
}

struct Tagging;

impl Tagging {
    fn header(layout: Layout) -> usize {
        HEADER.max(layout.align())
    }

    fn outer(layout: Layout) -> Option<Layout> {
        Layout::from_size_align(layout.size().checked_add(Self::header(layout))?, layout.align()).ok()
    }
}

// SAFETY: every block comes from the system allocator with a larger layout of the same
// alignment; the pointer handed out is `header` bytes into it (a multiple of the alignment), and
// `dealloc` undoes exactly that with the same layout computation.
unsafe impl GlobalAlloc for Tagging {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(outer) = Self::outer(layout) else { return std::ptr::null_mut() };
        // SAFETY: `outer` has a non-zero size.
        let base = unsafe { System.alloc(outer) };
        if base.is_null() {
            return base;
        }
        let central = IS_CENTRAL.try_with(Cell::get).unwrap_or(false);
        // SAFETY: `base` points to at least `header` writable bytes.
        unsafe { base.write(if central { CENTRAL } else { OTHER }) };
        // SAFETY: `header` < outer size.
        let ptr = unsafe { base.add(Self::header(layout)) };
        if central {
            CENTRAL_LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
            trace::alloc(ptr as usize, layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(outer) = Self::outer(layout) else { return };
        // SAFETY: `ptr` came from `alloc` with this layout, `header` bytes into its block.
        let base = unsafe { ptr.sub(Self::header(layout)) };
        // SAFETY: the tag written by `alloc`.
        if unsafe { base.read() } == CENTRAL {
            CENTRAL_LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
            trace::dealloc(ptr as usize);
        }
        // SAFETY: the block and layout `alloc` got from the system allocator.
        unsafe { System.dealloc(base, outer) }
    }
}

/// `MEMORY_TRACE=1`: while a window is open, remembers where every central block still live
/// was allocated, and prints the live ones by call site when it closes.
mod trace {
    use std::cell::Cell;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    static ON: AtomicBool = AtomicBool::new(false);
    static LIVE: Mutex<Option<HashMap<usize, (usize, String)>>> = Mutex::new(None);
    thread_local! { static BUSY: Cell<bool> = const { Cell::new(false) }; }

    fn guarded(f: impl FnOnce()) {
        if !ON.load(Ordering::Relaxed) || BUSY.try_with(Cell::get).unwrap_or(true) {
            return;
        }
        BUSY.with(|b| b.set(true));
        f();
        BUSY.with(|b| b.set(false));
    }

    pub fn alloc(ptr: usize, size: usize) {
        guarded(|| {
            let bt = std::backtrace::Backtrace::force_capture().to_string();
            let site: Vec<&str> = bt
                .lines()
                .filter(|l| {
                    !l.trim_start().starts_with("at ")
                        && (l.contains("gattling")
                            || l.contains("tokio::sync")
                            || l.contains("tokio::runtime::task")
                            || l.contains("spawn"))
                })
                .filter(|l| !l.contains("memory::trace") && !l.contains("memory::Tagging"))
                .take(6)
                .collect();
            if let Some(m) = LIVE.lock().unwrap().as_mut() {
                m.insert(ptr, (size, site.join("\n")));
            }
        });
    }

    pub fn dealloc(ptr: usize) {
        guarded(|| {
            if let Some(m) = LIVE.lock().unwrap().as_mut() {
                m.remove(&ptr);
            }
        });
    }

    pub fn start() {
        if std::env::var_os("MEMORY_TRACE").is_some() {
            *LIVE.lock().unwrap() = Some(HashMap::new());
            ON.store(true, Ordering::SeqCst);
        }
    }

    pub fn stop(links: usize) {
        if !ON.swap(false, Ordering::SeqCst) {
            return;
        }
        let live = LIVE.lock().unwrap().take().unwrap_or_default();
        let mut by_site: HashMap<String, (usize, usize)> = HashMap::new();
        for (size, site) in live.into_values() {
            let e = by_site.entry(site).or_default();
            e.0 += 1;
            e.1 += size;
        }
        let mut v: Vec<_> = by_site.into_iter().collect();
        v.sort_by_key(|(_, (_, bytes))| std::cmp::Reverse(*bytes));
        for (site, (count, bytes)) in v.into_iter().take(25) {
            eprintln!("{} bytes/link ({count} blocks, {bytes} bytes):\n{site}\n", bytes / links);
        }
    }
}

#[global_allocator]
static GLOBAL: Tagging = Tagging;

fn central_live() -> isize {
    CENTRAL_LIVE.load(Ordering::SeqCst)
}

fn report(what: &str, bytes: isize, links: usize) {
    if std::env::var_os("MEMORY_REPORT").is_some() {
        eprintln!("{what}: {bytes} bytes for {links} links = {} bytes per link", bytes / links as isize);
    }
}

// ------------------------------------------------------------------ fixture

/// Links brought up per test: enough that per-host costs and map growth average out.
const LINKS: usize = 64;
/// The most a link may cost the central host.
const PER_LINK_LIMIT: isize = 4096;
/// The long value each peripheral serves.
const LONG: usize = 512;

/// Runs `f` with the central runtime (its worker and this thread tagged) and a second runtime
/// for everything else. One test at a time: the counter is process-wide.
fn run<F: std::future::Future<Output = ()>>(f: impl FnOnce(tokio::runtime::Handle) -> F) {
    static SERIAL: Mutex<()> = Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let others = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let central = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .on_thread_start(|| IS_CENTRAL.with(|c| c.set(true)))
        .on_thread_stop(|| IS_CENTRAL.with(|c| c.set(false)))
        .build()
        .unwrap();
    IS_CENTRAL.with(|c| c.set(true));
    let handle = others.handle().clone();
    let r = central.block_on(async { tokio::time::timeout(Duration::from_secs(120), f(handle)).await });
    IS_CENTRAL.with(|c| c.set(false));
    central.shutdown_timeout(Duration::from_secs(5));
    others.shutdown_timeout(Duration::from_secs(5));
    r.expect("memory test finished within 120 s");
}

/// The other runtime's side: a radio, the central's controller behind a duplex pipe, and
/// peripherals on demand.
struct World {
    others: tokio::runtime::Handle,
    radio: Arc<gattling::controller::VirtualRadio>,
}

impl World {
    /// A radio on the other runtime and the central host on this one, its controller on the
    /// radio reached through a pipe the other runtime copies.
    async fn start(others: tokio::runtime::Handle, name: &str) -> (World, Host) {
        let radio = gattling::controller::VirtualRadio::new(name);
        let (ours, theirs) = tokio::io::duplex(4096);
        let r = radio.clone();
        // The copy runs until the central host drops its end of the pipe.
        drop(others.spawn(async move {
            let mut ctrl = r.attach(gattling::controller::ControllerConfig::default());
            let mut theirs = theirs;
            let _ = tokio::io::copy_bidirectional(&mut theirs, &mut ctrl).await;
        }));
        let central = Host::start(Transport::from_stream(ours, "duplex to virtual"), HostOptions::default())
            .await
            .expect("central host");
        (World { others, radio }, central)
    }

    /// A peripheral host on the other runtime with a 512-byte readable value, advertising.
    async fn peripheral(&self) -> (Host, u16) {
        let radio = self.radio.clone();
        self.others
            .spawn(async move {
                let ctrl = radio.attach(gattling::controller::ControllerConfig::default());
                let host = Host::start(Transport::from_stream(ctrl, "virtual"), HostOptions::default())
                    .await
                    .expect("peripheral host");
                let gatt = host.gatt_server("p", 0);
                let long: Vec<u8> = (0..LONG).map(|i| i as u8).collect();
                let service = gatt
                    .add_service(ServiceDef::primary(0x1820u16).characteristic(CharacteristicDef::new(
                        0x2A40u16,
                        Properties::READ,
                        &long,
                    )))
                    .expect("service");
                host.advertise(&AdvertisingOptions::default()).await.expect("advertise");
                (host, service.characteristics[0].value_handle())
            })
            .await
            .expect("peripheral task")
    }

    /// Accepts the link on the peripheral (so its host keeps serving it).
    async fn accept(&self, host: &Host) -> Connection {
        let host = host.clone();
        self.others.spawn(async move { host.accept().await.expect("accept") }).await.expect("accept task")
    }
}

/// One link's central side as an application holds it.
struct Link {
    client: GattClient,
    value: u16,
    _peripheral: (Host, Connection),
}

/// Brings `n` links up from `central`, with a GATT client each (MTU exchanged, 517) and one
/// short read done on each, so nothing is still in flight.
async fn links(world: &World, central: &Host, n: usize, out: &mut Vec<Link>) {
    for _ in 0..n {
        let (p, value) = world.peripheral().await;
        let c = central.connect(p.address(), ConnectOptions::default()).await.expect("connect");
        let pc = world.accept(&p).await;
        let client = GattClient::new(c, ClientOptions::default()).await.expect("client");
        out.push(Link { client, value, _peripheral: (p, pc) });
    }
    for l in out.iter() {
        assert_eq!(l.client.read(0x0001).await.expect("read").len(), 2, "primary service declaration");
    }
}

/// Disconnects every link and waits for each to end (the vector keeps its room).
async fn drop_links(links: &mut Vec<Link>) {
    for l in links.drain(..) {
        l.client.disconnect().await.expect("disconnect");
        l.client.connection().closed().await;
    }
}

// ------------------------------------------------------------------ tests

/// With the default MTU settings each link costs the central host at most 4 KiB, buffers a
/// 512-byte read grew are given back, and taking every link down gives everything back.
#[test]
fn a_link_costs_the_central_host_at_most_4_kib_and_buffers_shrink_back() {
    run(|others| async move {
        let (world, central) = World::start(others, "memory").await;
        // Warm-up: one link up and down (first-use allocations of the host and runtime).
        // The application's own vector of links is made first: it is not the host's.
        let mut up = Vec::with_capacity(LINKS);
        links(&world, &central, 1, &mut up).await;
        let _ = up[0].client.read_long(up[0].value).await.expect("warm read");
        drop_links(&mut up).await;

        let before = central_live();
        trace::start();
        links(&world, &central, LINKS, &mut up).await;
        let with_links = central_live() - before;
        trace::stop(LINKS);
        report("links up", with_links, LINKS);
        assert!(
            with_links <= PER_LINK_LIMIT * LINKS as isize,
            "{} bytes per link (limit {PER_LINK_LIMIT})",
            with_links / LINKS as isize
        );

        // A 512-byte value on every link, read in one 517-octet response.
        for l in &up {
            let v = l.client.read_long(l.value).await.expect("long read");
            assert_eq!(v.len(), LONG);
            assert_eq!(v[LONG - 1], (LONG - 1) as u8);
        }
        let after_long = central_live() - before;
        report("right after a 512-byte read on each link", after_long, LINKS);
        // The next PDU that arrives whole (a short read's response) gives the buffer back.
        for l in &up {
            assert_eq!(l.client.read(0x0001).await.expect("read").len(), 2);
        }
        let after_short = central_live() - before;
        report("after a short read on each link", after_short, LINKS);
        assert!(
            after_short <= with_links + 64 * LINKS as isize,
            "buffers did not shrink back: {} bytes per link before the long reads, {} right after, {} after a short read",
            with_links / LINKS as isize,
            after_long / LINKS as isize,
            after_short / LINKS as isize
        );

        drop_links(&mut up).await;
        let after = central_live() - before;
        report("every link gone", after, LINKS);
        assert!(after <= 256 * LINKS as isize, "{after} bytes left after every link went");
        drop(central);
    });
}

/// The Security Manager's per-link state, reported for the integrator (it is created per link).
#[test]
fn smp_state_size_is_reported() {
    let size = std::mem::size_of::<gattling::proto::smp::pairing::Smp>();
    if std::env::var_os("MEMORY_REPORT").is_some() {
        eprintln!("size_of::<Smp>() = {size} bytes");
    }
    assert!(size > 0);
}
