//! GATT server benchmarks (sans-IO): Read Requests per second for a 20-byte value, and a full
//! discovery (services, characteristics, descriptors) of a database with 1,000 characteristics,
//! with the number of request/response pairs it takes at ATT_MTU 23 and 247. Every request goes
//! through the link's ATT bearer to the server and every response back through it, as in a host.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gattling_proto::att::{Bearer, Route};
use gattling_proto::gatt::db::CharacteristicDef;
use gattling_proto::gatt::server::builtin_services;
use gattling_proto::gatt::{ConnId, Database, Properties, Server, ServerConfig, ServiceDef};
use std::hint::black_box;

fn database(services: u16, per_service: u16) -> Database {
    let mut db = Database::new();
    for s in builtin_services("bench", 0) {
        db.add_service(s).expect("built-ins");
    }
    for s in 0..services {
        let mut def = ServiceDef::primary(0xA000 + s);
        for c in 0..per_service {
            let props = if c % 4 == 0 { Properties::READ | Properties::NOTIFY } else { Properties::READ };
            def = def.characteristic(CharacteristicDef::new(0xB000 + c, props, &[0x5A; 20]));
        }
        db.add_service(def).expect("service");
    }
    db
}

fn read_request(c: &mut Criterion) {
    let db = database(1, 1);
    let handle = db.find_characteristic(0xB000u16.into()).expect("char").0;
    let mut server = Server::new(db, ServerConfig::default());
    let conn = ConnId(1);
    server.connect(conn);
    let req = [0x0A, handle as u8, (handle >> 8) as u8];
    let mut bearer = Bearer::new(517);
    let mut out = Vec::with_capacity(517);
    let mut g = c.benchmark_group("gatt");
    g.throughput(Throughput::Elements(1));
    g.bench_function("read_request_20", |b| {
        b.iter(|| {
            let mut pdus = 0;
            ask(&mut server, &mut bearer, conn, black_box(&req), &mut out, &mut pdus);
            black_box(&out);
        })
    });
    g.finish();
}

/// One request/response exchange through the bearer; counts it.
fn ask(server: &mut Server, bearer: &mut Bearer, conn: ConnId, req: &[u8], out: &mut Vec<u8>, pdus: &mut u32) {
    *pdus += 1;
    assert_eq!(bearer.receive(req, 0), Route::Server);
    assert!(server.handle(conn, bearer, req, &mut (), out).is_reply());
    bearer.send(out, 0).expect("the bearer takes the response");
}

/// Discovers everything: primary services (Read By Group Type), characteristics per service
/// (Read By Type 0x2803) and descriptors per characteristic (Find Information). Returns
/// (request/response pairs, characteristics found).
fn discover(server: &mut Server, bearer: &mut Bearer, conn: ConnId) -> (u32, u32) {
    let mut out = Vec::with_capacity(517);
    let mut pdus = 0;
    let mut services = Vec::new();
    let mut start = 1u16;
    loop {
        let s = start.to_le_bytes();
        ask(server, bearer, conn, &[0x10, s[0], s[1], 0xFF, 0xFF, 0x00, 0x28], &mut out, &mut pdus);
        if out[0] != 0x11 {
            break;
        }
        let len = out[1] as usize;
        let mut last = start;
        for r in out[2..].chunks(len) {
            let (h, e) = (u16::from_le_bytes([r[0], r[1]]), u16::from_le_bytes([r[2], r[3]]));
            services.push((h, e));
            last = e;
        }
        if last == 0xFFFF {
            break;
        }
        start = last + 1;
    }
    let mut chars = Vec::new();
    for (s, e) in services {
        let mut start = s;
        let mut found: Vec<u16> = Vec::new();
        loop {
            let (a, b) = (start.to_le_bytes(), e.to_le_bytes());
            ask(server, bearer, conn, &[0x08, a[0], a[1], b[0], b[1], 0x03, 0x28], &mut out, &mut pdus);
            if out[0] != 0x09 {
                break;
            }
            let len = out[1] as usize;
            for r in out[2..].chunks(len) {
                found.push(u16::from_le_bytes([r[3], r[4]]));
                start = u16::from_le_bytes([r[0], r[1]]) + 1;
            }
            if start > e {
                break;
            }
        }
        for (i, v) in found.iter().enumerate() {
            let end = found.get(i + 1).map(|n| n - 2).unwrap_or(e);
            chars.push((*v, end));
        }
    }
    let n = chars.len() as u32;
    for (v, end) in chars {
        let mut start = v + 1;
        while start <= end {
            let (a, b) = (start.to_le_bytes(), end.to_le_bytes());
            ask(server, bearer, conn, &[0x04, a[0], a[1], b[0], b[1]], &mut out, &mut pdus);
            if out[0] != 0x05 {
                break;
            }
            let rec = if out[1] == 1 { 4 } else { 18 };
            let last = out[2..].chunks(rec).last().map(|r| u16::from_le_bytes([r[0], r[1]])).unwrap_or(end);
            start = last + 1;
        }
    }
    (pdus, n)
}

fn discovery(c: &mut Criterion) {
    let mut g = c.benchmark_group("gatt");
    for mtu in [23u16, 247] {
        let mut server = Server::new(database(10, 100), ServerConfig::default());
        let conn = ConnId(1);
        server.connect(conn);
        let mut bearer = Bearer::new(517);
        let mut out = Vec::new();
        let m = mtu.to_le_bytes();
        ask(&mut server, &mut bearer, conn, &[0x02, m[0], m[1]], &mut out, &mut 0);
        assert_eq!(bearer.mtu(), mtu);
        let (pdus, chars) = discover(&mut server, &mut bearer, conn);
        eprintln!("discovery at ATT_MTU {mtu}: {chars} characteristics, {pdus} request/response pairs");
        g.bench_function(format!("discover_1000_characteristics_mtu{mtu}"), |b| {
            b.iter(|| black_box(discover(&mut server, &mut bearer, conn)))
        });
    }
    g.finish();
}

criterion_group!(benches, read_request, discovery);
criterion_main!(benches);
