//! Proves the receive path from H4 ACL bytes to a decoded ATT PDU does not touch the heap for
//! PDUs within the MTU, once a connection is up: the H4 framer's buffer is allocated when the
//! host is created and the L2CAP reassembly buffer at the first fragmented PDU (warm-up), kept
//! while fragmented PDUs follow one another.
//!
//! A counting global allocator counts allocations made on the measuring thread only, while a
//! thread-local flag is set, so the test harness's own threads cannot disturb the count. The
//! file holds a single test so nothing else runs on that thread while counting.
//!
//! Set `NO_ALLOC_BACKTRACE=1` to print a backtrace for each counted allocation (capped).

use gattling_proto::att::{opcode, AttPdu};
use gattling_proto::gap::BdAddr;
use gattling_proto::hci::event::{ConnectionComplete, Event, LeEvent};
use gattling_proto::host::{ConnHandle, Host, HostConfig};
use gattling_proto::l2cap::{self, cid};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static TRACES_LEFT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Count allocations on this thread.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Set while a backtrace is being printed, which allocates itself.
    static IN_TRACE: Cell<bool> = const { Cell::new(false) };
}

impl Counting {
    fn note(&self) {
        // `try_with`: the allocator may run while thread-locals are being torn down.
        if COUNTING.try_with(Cell::get).unwrap_or(false) && !IN_TRACE.try_with(Cell::get).unwrap_or(true) {
            ALLOCS.fetch_add(1, Ordering::SeqCst);
            let trace = TRACES_LEFT.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
            if trace {
                IN_TRACE.with(|t| t.set(true));
                eprintln!("counted allocation:\n{}", std::backtrace::Backtrace::force_capture());
                IN_TRACE.with(|t| t.set(false));
            }
        }
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting has no effect on
// the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.note();
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.note();
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.note();
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap allocations (including reallocations) made by `f` on this thread.
fn allocations<R>(f: impl FnOnce() -> R) -> (usize, R) {
    counted(false, f)
}

/// As [`allocations`]; with `trace`, prints backtraces if `NO_ALLOC_BACKTRACE` is set.
fn counted<R>(trace: bool, f: impl FnOnce() -> R) -> (usize, R) {
    if trace && std::env::var_os("NO_ALLOC_BACKTRACE").is_some() {
        TRACES_LEFT.store(5, Ordering::SeqCst);
    }
    ALLOCS.store(0, Ordering::SeqCst);
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    TRACES_LEFT.store(0, Ordering::SeqCst);
    (ALLOCS.load(Ordering::SeqCst), r)
}

const HANDLE: ConnHandle = 0x0040;
const ACL_LEN: usize = 27;

fn connected_host() -> Host {
    let mut host = Host::new(HostConfig::default());
    host.set_acl_buffers(ACL_LEN as u16, 8);
    let mut ev = Vec::new();
    Event::Le(LeEvent::ConnectionComplete(ConnectionComplete {
        status: 0,
        handle: HANDLE,
        role: 1,
        peer_address_type: 0,
        peer_address: BdAddr([1, 2, 3, 4, 5, 6]),
        local_rpa: Default::default(),
        peer_rpa: Default::default(),
        interval: 24,
        latency: 0,
        supervision_timeout: 400,
        clock_accuracy: 0,
        subevent: 1,
    }))
    .encode_h4(&mut ev);
    host.receive(&ev, &mut |_, _| panic!("no ATT data expected"));
    while host.poll_event().is_some() {}
    assert!(host.connection(HANDLE).is_some(), "connection not established");
    host
}

/// H4 ACL packets carrying `payload` on the ATT channel in `ACL_LEN`-byte fragments, as one
/// byte buffer.
fn att_bytes(payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    l2cap::fragment(HANDLE, cid::ATT, payload, ACL_LEN, |p| bytes.extend_from_slice(&p));
    bytes
}

/// Feeds `bytes` to `host` `iterations` times, decoding each ATT PDU in the callback; returns
/// the number of allocations and the number of PDUs that decoded with the expected length.
fn receive_loop(host: &mut Host, bytes: &[u8], len: usize, iterations: usize) -> (usize, usize) {
    counted(true, || {
        let mut ok = 0;
        for _ in 0..iterations {
            host.receive(bytes, &mut |h, pdu| {
                let decoded = AttPdu::decode(pdu);
                if h == HANDLE && pdu.len() == len && decoded.is_ok() {
                    ok += 1;
                }
                let _ = std::hint::black_box(decoded);
            });
        }
        ok
    })
}

#[test]
fn receive_path_does_not_allocate() {
    // The counter does count: a fresh allocation made while counting is seen.
    let (n, v) = allocations(|| std::hint::black_box(Vec::<u8>::with_capacity(8)));
    assert_eq!(n, 1, "the counting allocator missed Vec::with_capacity(8)");
    drop(v);
    let (n, ()) = allocations(|| ());
    assert_eq!(n, 0, "the counting allocator counted nothing as an allocation");

    const ITERATIONS: usize = 1000;

    // (a) A single-fragment ATT Read Request (Core Vol 3 Part F §3.4.4.3).
    let mut host = connected_host();
    let read_req = att_bytes(&[opcode::READ_REQ, 0x2A, 0x00]);
    // Warm-up: fill and compact the H4 framer buffer at least once.
    let (_, ok) = receive_loop(&mut host, &read_req, 3, 200);
    assert_eq!(ok, 200, "warm-up: Read Request not delivered/decoded");
    let (n, ok) = receive_loop(&mut host, &read_req, 3, ITERATIONS);
    assert_eq!(ok, ITERATIONS, "Read Request not delivered/decoded every time");
    assert_eq!(
        n, 0,
        "Host::receive + AttPdu::decode allocated {n} times over {ITERATIONS} single-fragment \
         ATT Read Requests (rerun with NO_ALLOC_BACKTRACE=1 to see where)"
    );
    assert!(host.poll_event().is_none(), "unexpected host event");
    assert!(host.poll_transmit().is_none(), "unexpected outgoing packet");
    // Control: the same path with a callback that copies the PDU is caught, once per PDU.
    let (n, ()) = allocations(|| {
        for _ in 0..10 {
            host.receive(&read_req, &mut |_, pdu| drop(std::hint::black_box(pdu.to_vec())));
        }
    });
    assert_eq!(n, 10, "the counter missed allocations made inside Host::receive's callback");

    // (b) A 512-byte ATT PDU (a Read Response with 511 value bytes) in 27-byte ACL fragments,
    // fed as one buffer.
    let mut host = connected_host();
    let mut pdu = vec![opcode::READ_RSP];
    pdu.extend((0..511).map(|i| i as u8));
    let big = att_bytes(&pdu);
    assert_eq!(big.len(), 20 * 5 + 516, "expected 20 ACL fragments");
    let (_, ok) = receive_loop(&mut host, &big, 512, 50);
    assert_eq!(ok, 50, "warm-up: 512-byte PDU not delivered/decoded");
    let (n, ok) = receive_loop(&mut host, &big, 512, ITERATIONS);
    assert_eq!(ok, ITERATIONS, "512-byte PDU not delivered/decoded every time");
    assert_eq!(
        n, 0,
        "Host::receive + AttPdu::decode allocated {n} times over {ITERATIONS} 512-byte ATT PDUs \
         in 27-byte fragments (rerun with NO_ALLOC_BACKTRACE=1 to see where)"
    );
    assert!(host.poll_event().is_none(), "unexpected host event");
    assert!(host.poll_transmit().is_none(), "unexpected outgoing packet");
}
