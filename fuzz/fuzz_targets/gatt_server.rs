//! The GATT server answering arbitrary client PDUs on two connections (split by the first byte
//! of each chunk): no panic, every answer decodes as ATT and fits the connection's ATT_MTU.
#![no_main]

use gattling_proto::att::AttPdu;
use gattling_proto::gatt::db::CharacteristicDef;
use gattling_proto::gatt::server::builtin_services;
use gattling_proto::gatt::{ConnId, Database, Properties, Server, ServerConfig, ServiceDef};
use libfuzzer_sys::fuzz_target;

fn server() -> Server {
    let mut db = Database::new();
    for s in builtin_services("fuzz", 0) {
        let _ = db.add_service(s);
    }
    let rw = Properties::READ | Properties::WRITE | Properties::NOTIFY | Properties::INDICATE;
    let _ = db.add_service(
        ServiceDef::primary(0x180Du16)
            .characteristic(CharacteristicDef::new(0x2A37u16, rw, &[1, 2, 3]).user_description("x"))
            .characteristic(CharacteristicDef::new(0x2A38u16, Properties::READ, &[7; 300]).extended_properties(1)),
    );
    Server::new(db, ServerConfig { prepare_queue_entries: 4, prepare_queue_bytes: 64, ..ServerConfig::default() })
}

fuzz_target!(|data: &[u8]| {
    let mut s = server();
    let mut out = Vec::new();
    let mut now = 0u64;
    for chunk in data.split(|b| *b == 0xA5) {
        let Some((&sel, pdu)) = chunk.split_first() else { continue };
        let conn = ConnId(u16::from(sel & 1));
        now += 1_000_000 * u64::from(sel >> 5);
        if s.handle(conn, pdu, now, &mut (), &mut out) {
            assert!(AttPdu::decode(&out).is_ok(), "answer does not decode: {out:02x?}");
            assert!(out.len() <= s.mtu(conn) as usize, "answer longer than ATT_MTU");
        }
        if sel & 0x10 != 0 {
            if let Some(id) = s.db().find_characteristic(0x2A37u16.into()) {
                let _ = s.set_value(id, pdu, now);
            }
        }
        let _ = s.poll_timeouts(now);
    }
});
