//! Proves the GATT server answers a Read Request without touching the heap: the request goes
//! through the link's ATT bearer to the server as in a host, and the response is written into a
//! caller-owned buffer with room for an ATT_MTU and accounted by the bearer; and it notifies a
//! subscribed client without touching the heap either. A counting global allocator counts
//! allocations on this thread only while a thread-local flag is set.

use gattling_proto::att::{Bearer, Route};
use gattling_proto::gatt::db::CharacteristicDef;
use gattling_proto::gatt::server::builtin_services;
use gattling_proto::gatt::{ConnId, Database, Properties, Server, ServerConfig, ServiceDef};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Allocations counted on this thread (tests run in parallel on several threads).
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn count_one() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        System.alloc(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.with(Cell::get) - before
}

#[test]
fn read_request_is_answered_without_allocating() {
    // The counter works: an allocation is counted.
    assert_eq!(allocations(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(8)))), 1);

    let mut db = Database::new();
    for s in builtin_services("gattling", 0) {
        db.add_service(s).expect("built-ins");
    }
    let def = ServiceDef::primary(0x180Du16).characteristic(CharacteristicDef::new(
        0x2A37u16,
        Properties::READ | Properties::NOTIFY,
        &[0x5A; 20],
    ));
    db.add_service(def).expect("service");
    let handle = db.find_characteristic(0x2A37u16.into()).expect("char").0;
    let mut server = Server::new(db, ServerConfig::default());
    let conn = ConnId(0x40);
    server.connect(conn);
    let req = [0x0A, handle as u8, (handle >> 8) as u8];
    let mut bearer = Bearer::new(517);
    let mut out = Vec::with_capacity(517);
    // One request/response exchange, as a host runs it.
    let exchange = |server: &mut Server, bearer: &mut Bearer, out: &mut Vec<u8>| {
        assert_eq!(bearer.receive(&req, 0), Route::Server);
        assert!(server.handle(conn, bearer, &req, &mut (), out).is_reply());
        assert_eq!(bearer.send(out, 0), Ok(()));
    };
    // Warm up, then count.
    for _ in 0..10 {
        exchange(&mut server, &mut bearer, &mut out);
    }
    let n = allocations(|| {
        for _ in 0..10_000 {
            exchange(&mut server, &mut bearer, &mut out);
        }
    });
    assert_eq!(out.len(), 21);
    assert_eq!(n, 0, "allocations while answering 10,000 Read Requests");
}

#[test]
fn notifications_are_built_without_allocating() {
    let mut db = Database::new();
    let def = ServiceDef::primary(0x180Du16).characteristic(CharacteristicDef::new(
        0x2A37u16,
        Properties::READ | Properties::NOTIFY,
        &[0; 20],
    ));
    db.add_service(def).expect("service");
    let ch = db.find_characteristic(0x2A37u16.into()).expect("char");
    let cccd = ch.0 + 1;
    let mut server = Server::new(db, ServerConfig::default());
    let conn = ConnId(0x40);
    let mut bearers = std::collections::BTreeMap::new();
    bearers.insert(conn, Bearer::new(517));
    // The client enables notifications through the CCCD.
    let req = [0x12, cccd as u8, (cccd >> 8) as u8, 0x01, 0x00];
    let mut out = Vec::with_capacity(517);
    let bearer = bearers.get_mut(&conn).expect("bearer");
    assert_eq!(bearer.receive(&req, 0), Route::Server);
    assert!(server.handle(conn, bearer, &req, &mut (), &mut out).is_reply());
    assert_eq!(out, [0x13]);
    bearer.send(&out, 0).expect("write response");
    let value = [0xA5; 20];
    let mut sent = 0usize;
    let mut notify = |server: &mut Server, bearers: &mut std::collections::BTreeMap<ConnId, Bearer>| {
        server.set_value_with(ch, &value, 0, bearers, &mut |c, pdu| {
            assert_eq!((c, pdu.len(), pdu.first()), (conn, 23, Some(&0x1B)));
            sent += 1;
        });
    };
    for _ in 0..10 {
        notify(&mut server, &mut bearers);
    }
    let n = allocations(|| {
        for _ in 0..10_000 {
            notify(&mut server, &mut bearers);
        }
    });
    assert_eq!(sent, 10_010, "every notification was handed over");
    assert_eq!(n, 0, "allocations while building 10,000 notifications");
}
