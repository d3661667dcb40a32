//! The GATT server behind an ATT bearer per connection, answering arbitrary client PDUs on two
//! connections (split by the first byte of each chunk) the way a host runs it: every PDU goes
//! through `Bearer::receive`, requests to `Server::handle`, confirmations release the next
//! queued indication, every reply through `Bearer::send`. Hooks may answer later and the
//! application answers parked requests. No panic; every answer decodes as ATT, fits the
//! connection's ATT_MTU, and is accepted by the bearer (the server answers open requests only).
//!
//! Selector byte: bit 0 the connection, bit 1 hooks answer later during this chunk, bit 2 the
//! chunk is the application's answer to the connection's parked request (not a PDU), bit 3 the
//! connection drops and comes back first, bit 4 the 0x2A37 value is set to the chunk, bits 5-7
//! seconds that pass.
#![no_main]

use gattling_proto::att::{AttPdu, Bearer, Route};
use gattling_proto::gatt::db::CharacteristicDef;
use gattling_proto::gatt::server::{Answer, Outcome, ReadAccess, WriteAccess};
use gattling_proto::gatt::{Access, CharId, ConnId, Database, Properties, Server, ServerConfig, ServiceDef};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fn server() -> Server {
    let mut db = Database::new();
    for s in gattling_proto::gatt::server::builtin_services("fuzz", 0) {
        let _ = db.add_service(s);
    }
    let rw = Properties::READ | Properties::WRITE | Properties::NOTIFY | Properties::INDICATE;
    let _ = db.add_service(
        ServiceDef::primary(0x180Du16)
            .characteristic(CharacteristicDef::new(0x2A37u16, rw, &[1, 2, 3]).user_description("x"))
            .characteristic(CharacteristicDef::new(0x2A38u16, Properties::READ, &[7; 300]).extended_properties(1)),
    );
    Server::new(db, ServerConfig { prepare_queue_entries: 4, prepare_queue_bytes: 64 })
}

/// Hooks that answer every read and write later while `later` is set.
struct Hooks {
    later: bool,
}

impl Access for Hooks {
    fn read(&mut self, _conn: ConnId, _ch: CharId) -> ReadAccess {
        if self.later {
            ReadAccess::Later
        } else {
            ReadAccess::Stored
        }
    }

    fn write(&mut self, _conn: ConnId, _ch: CharId, _value: &[u8]) -> WriteAccess {
        if self.later {
            WriteAccess::Later
        } else {
            WriteAccess::Accept
        }
    }
}

/// The application's answer, from a chunk.
fn answer(chunk: &[u8]) -> Answer {
    match chunk.split_first() {
        None => Answer::Stored,
        Some((&k, rest)) => match k % 4 {
            0 => Answer::Stored,
            1 => Answer::Value(rest.to_vec()),
            2 => Answer::Accept,
            _ => Answer::Error(rest.first().copied().unwrap_or(0x80)),
        },
    }
}

/// Checks and accounts for a reply of the server on `bearer`.
fn reply(bearer: &mut Bearer, outcome: &Outcome, out: &[u8], now: u64) {
    if !outcome.is_reply() {
        assert!(out.is_empty(), "{outcome:?} with {out:02x?} written");
        return;
    }
    assert!(AttPdu::decode(out).is_ok(), "answer does not decode: {out:02x?}");
    assert!(out.len() <= bearer.mtu() as usize, "answer longer than ATT_MTU");
    if let Err(e) = bearer.send(out, now) {
        assert!(bearer.is_closed(), "the bearer refuses the answer {out:02x?}: {e}");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut s = server();
    let mut bearers: BTreeMap<ConnId, Bearer> = BTreeMap::new();
    let mut parked: BTreeMap<ConnId, u32> = BTreeMap::new();
    let mut hooks = Hooks { later: false };
    let mut out = Vec::new();
    let mut now = 0u64;
    for chunk in data.split(|b| *b == 0xA5) {
        let Some((&sel, pdu)) = chunk.split_first() else { continue };
        let conn = ConnId(u16::from(sel & 1));
        now += 1_000_000 * u64::from(sel >> 5);
        if sel & 0x08 != 0 {
            s.disconnect(conn);
            bearers.remove(&conn);
            parked.remove(&conn);
            s.connect(conn);
        }
        hooks.later = sel & 0x02 != 0;
        let bearer = bearers.entry(conn).or_insert_with(|| Bearer::new(247));
        if sel & 0x04 != 0 {
            if let Some(token) = parked.remove(&conn) {
                let outcome = s.answer(conn, token, answer(pdu), bearer, &mut hooks, &mut out);
                if let Outcome::Deferred(d) = &outcome {
                    parked.insert(conn, d.token);
                }
                reply(bearer, &outcome, &out, now);
            }
        } else {
            let busy = bearer.peer_request_pending();
            match bearer.receive(pdu, now) {
                Route::Server => {
                    let opened = !busy && bearer.peer_request_pending();
                    let outcome = s.handle(conn, bearer, pdu, &mut hooks, &mut out);
                    assert!(!opened || outcome != Outcome::Silent, "request {pdu:02x?} left without an answer");
                    if let Outcome::Deferred(d) = &outcome {
                        parked.insert(conn, d.token);
                    }
                    reply(bearer, &outcome, &out, now);
                }
                Route::Confirmation => {
                    if let Some(ind) = bearer.poll_indication(now) {
                        assert!(ind.len() <= bearer.mtu() as usize, "indication longer than ATT_MTU");
                    }
                }
                _ => {}
            }
        }
        if sel & 0x10 != 0 {
            if let Some(id) = s.db().find_characteristic(0x2A37u16.into()) {
                for (c, p) in s.set_value(id, pdu, now, &mut bearers) {
                    let mtu = bearers.get(&c).map_or(23, Bearer::mtu);
                    assert!(p.len() <= mtu as usize, "notification longer than ATT_MTU");
                }
            }
        }
        for bearer in bearers.values_mut() {
            let _ = bearer.handle_timeout(now);
        }
    }
});
