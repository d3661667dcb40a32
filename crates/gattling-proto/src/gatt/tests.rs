//! GATT database and server unit tests; the conformance suite named after the GATT/SR test IDs
//! is in `tests/gatt_server.rs`.

use super::db::CharacteristicDef as C;
use super::*;
use alloc::vec;
use alloc::vec::Vec;

/// The example database of Core Vol 3 Part G Appendix B and its hash: handles 1-22 holding GAP,
/// GATT (Service Changed, Client Supported Features, Database Hash), a primary service that
/// includes a secondary one, a characteristic with a CCCD and Extended Properties.
#[test]
fn database_hash_matches_the_spec_example() {
    let mut db = Database::new();
    let gap = ServiceDef::primary(0x1800u16)
        .characteristic(C::new(0x2A00u16, Properties::READ | Properties::WRITE, b"x"))
        .characteristic(C::new(0x2A01u16, Properties::READ, &[0, 0]));
    let gatt = ServiceDef::primary(0x1801u16)
        .characteristic(C::new(0x2A05u16, Properties::INDICATE, &[0; 4]))
        .characteristic(C::new(0x2B29u16, Properties::READ | Properties::WRITE, &[0]))
        .characteristic(C::new(0x2B2Au16, Properties::READ, &[0; 16]));
    assert_eq!(db.add_service(gap), Ok(1));
    assert_eq!(db.add_service(gatt), Ok(6));
    let secondary =
        ServiceDef::secondary(0x180Fu16).at_handle(20).characteristic(C::new(0x2A19u16, Properties::READ, &[100]));
    assert_eq!(db.add_service(secondary), Ok(20));
    let primary = ServiceDef::primary(0x1808u16)
        .at_handle(14)
        .include(20)
        .characteristic(C::new(0x2A18u16, Properties::READ | Properties::INDICATE, &[0]).extended_properties(0x0000));
    assert_eq!(db.add_service(primary), Ok(14));
    let handles: Vec<u16> = db.attributes().iter().map(|a| a.handle).collect();
    assert_eq!(handles, (1..=22).collect::<Vec<u16>>());
    let mut expected = [0xF1, 0xCA, 0x2D, 0x48, 0xEC, 0xF5, 0x8B, 0xAC, 0x8A, 0x88, 0x30, 0xBB, 0xB9, 0xFB, 0xA9, 0x90];
    expected.reverse(); // sent least significant octet first
    assert_eq!(db.hash(), expected);
}

#[test]
fn overlapping_fixed_handles_are_refused() {
    let mut db = Database::new();
    db.add_service(ServiceDef::primary(0x180Du16).characteristic(C::new(0x2A37u16, Properties::NOTIFY, &[]))).unwrap();
    assert_eq!(db.add_service(ServiceDef::primary(0x180Fu16).at_handle(2)), Err(DbError::HandleInUse(2)));
    assert_eq!(db.add_service(ServiceDef::primary(0x180Fu16).include(9)), Err(DbError::NoSuchService(9)));
}

fn server() -> (Server, CharId) {
    let mut db = Database::new();
    for s in server::builtin_services("gattling", 0) {
        db.add_service(s).unwrap();
    }
    db.add_service(ServiceDef::primary(0x180Du16).characteristic(C::new(
        0x2A37u16,
        Properties::READ | Properties::WRITE | Properties::NOTIFY,
        b"hello",
    )))
    .unwrap();
    let id = db.find_characteristic(crate::Uuid::U16(0x2A37)).unwrap();
    (Server::new(db, ServerConfig::default()), id)
}

#[test]
fn read_write_subscribe_and_notify() {
    let (mut s, id) = server();
    let conn = ConnId(1);
    s.connect(conn);
    let mut out = Vec::new();
    assert!(s.handle(conn, &[0x0A, id.0 as u8, 0], 0, &mut (), &mut out));
    assert_eq!(out, b"\x0bhello");
    assert!(s.handle(conn, &[0x12, id.0 as u8, 0, b'h', b'i'], 0, &mut (), &mut out));
    assert_eq!(out, [0x13]);
    assert_eq!(s.db().characteristic(id).unwrap().value, b"hi");
    let cccd = s.db().characteristic(id).unwrap().cccd_handle.unwrap();
    assert!(s.handle(conn, &[0x12, cccd as u8, 0, 1, 0], 0, &mut (), &mut out));
    assert_eq!(out, [0x13]);
    let sent = s.set_value(id, b"new", 0);
    assert_eq!(sent, vec![(conn, vec![0x1B, id.0 as u8, 0, b'n', b'e', b'w'])]);
    assert_eq!(
        s.db().characteristic(id).unwrap().events,
        events::CHAR_READ_EVENT | events::CHAR_WRITE_EVENT | events::CHAR_SUBSCRIBE_EVENT
    );
}
