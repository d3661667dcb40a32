//! GATT database and server unit tests; the conformance suite named after the GATT/SR test IDs
//! is in `tests/gatt_server.rs`.

use super::db::CharacteristicDef as C;
use super::*;
use crate::att::{Bearer, Route};
use alloc::collections::BTreeMap;
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

/// Routes `pdu` through the bearer to the server as a host does; the reply sent, if any.
fn exchange(s: &mut Server, bearer: &mut Bearer, conn: ConnId, pdu: &[u8]) -> Option<Vec<u8>> {
    assert_eq!(bearer.receive(pdu, 0), Route::Server);
    let mut out = Vec::new();
    if !s.handle(conn, bearer, pdu, &mut (), &mut out).is_reply() {
        return None;
    }
    bearer.send(&out, 0).unwrap();
    Some(out)
}

#[test]
fn read_write_subscribe_and_notify() {
    let (mut s, id) = server();
    let conn = ConnId(1);
    s.connect(conn);
    let mut bearers = BTreeMap::from([(conn, Bearer::new(517))]);
    let b = bearers.get_mut(&conn).unwrap();
    assert_eq!(exchange(&mut s, b, conn, &[0x0A, id.0 as u8, 0]).unwrap(), b"\x0bhello");
    assert_eq!(exchange(&mut s, b, conn, &[0x12, id.0 as u8, 0, b'h', b'i']).unwrap(), [0x13]);
    assert_eq!(s.db().characteristic(id).unwrap().value, b"hi");
    let cccd = s.db().characteristic(id).unwrap().cccd_handle.unwrap();
    assert_eq!(exchange(&mut s, b, conn, &[0x12, cccd as u8, 0, 1, 0]).unwrap(), [0x13]);
    let sent = s.set_value(id, b"new", 0, &mut bearers);
    assert_eq!(sent, vec![(conn, vec![0x1B, id.0 as u8, 0, b'n', b'e', b'w'])]);
    assert_eq!(
        s.db().characteristic(id).unwrap().events,
        events::CHAR_READ_EVENT | events::CHAR_WRITE_EVENT | events::CHAR_SUBSCRIBE_EVENT
    );
}

// ---- Raw attribute tables (Database::insert_records / records) ----

use super::db::{AttributeRecord, TableError, TableErrorKind as K};

fn rec(handle: u16, uuid: u16, value: &[u8]) -> AttributeRecord {
    AttributeRecord {
        handle,
        uuid: crate::Uuid::U16(uuid),
        value: value.to_vec(),
        permissions: Permissions::READ,
        max_len: db::MAX_VALUE_LEN,
    }
}

fn svc(handle: u16, uuid: u16) -> AttributeRecord {
    rec(handle, uuids::PRIMARY_SERVICE, &uuid.to_le_bytes())
}

fn decl(handle: u16, props: Properties, value_handle: u16, uuid: u16) -> AttributeRecord {
    let mut v = vec![props.bits()];
    v.extend_from_slice(&value_handle.to_le_bytes());
    v.extend_from_slice(&uuid.to_le_bytes());
    rec(handle, uuids::CHARACTERISTIC, &v)
}

/// The database of Core Vol 3 Part G Appendix B written as a raw table in handle order (the
/// include at 0x000F names the secondary service declared later, at 0x0014).
fn appendix_b_records() -> Vec<AttributeRecord> {
    let rw = Properties::READ | Properties::WRITE;
    vec![
        svc(1, 0x1800),
        decl(2, rw, 3, 0x2A00),
        rec(3, 0x2A00, b"x"),
        decl(4, Properties::READ, 5, 0x2A01),
        rec(5, 0x2A01, &[0, 0]),
        svc(6, 0x1801),
        decl(7, Properties::INDICATE, 8, 0x2A05),
        rec(8, 0x2A05, &[0; 4]),
        rec(9, uuids::CCCD, &[0, 0]),
        decl(10, rw, 11, 0x2B29),
        rec(11, 0x2B29, &[0]),
        decl(12, Properties::READ, 13, 0x2B2A),
        rec(13, 0x2B2A, &[0; 16]),
        svc(14, 0x1808),
        rec(15, uuids::INCLUDE, &[20, 0, 22, 0, 0x0F, 0x18]),
        decl(16, Properties::READ | Properties::INDICATE | Properties::EXTENDED_PROPERTIES, 17, 0x2A18),
        rec(17, 0x2A18, &[0]),
        rec(18, uuids::CCCD, &[0, 0]),
        rec(19, uuids::EXTENDED_PROPERTIES, &[0, 0]),
        rec(20, uuids::SECONDARY_SERVICE, &0x180Fu16.to_le_bytes()),
        decl(21, Properties::READ, 22, 0x2A19),
        rec(22, 0x2A19, &[100]),
    ]
}

fn appendix_b_hash() -> [u8; 16] {
    let mut expected = [0xF1, 0xCA, 0x2D, 0x48, 0xEC, 0xF5, 0x8B, 0xAC, 0x8A, 0x88, 0x30, 0xBB, 0xB9, 0xFB, 0xA9, 0x90];
    expected.reverse();
    expected
}

/// The spec's example hash comes out of the raw table too, and the table read back equals the
/// one the `ServiceDef` builder makes for the same database.
#[test]
fn raw_appendix_b_table_has_the_spec_hash() {
    let mut raw = Database::from_records(&appendix_b_records()).unwrap();
    assert_eq!(raw.hash(), appendix_b_hash());
    assert_eq!(raw.attribute(14).map(|a| a.group_end), Some(19));
    assert_eq!(raw.attribute(20).map(|a| (a.kind, a.group_end)), Some((AttrKind::SecondaryService, 22)));
    let c = raw.characteristic(CharId(17)).unwrap();
    assert_eq!((c.decl_handle, c.end_handle, c.cccd_handle), (16, 19, Some(18)));
    assert_eq!(raw.records(), appendix_b_records());
}

/// `records()` of a builder-made database rebuilds the same table and hash.
#[test]
fn builder_database_round_trips_through_records() {
    let mut db = Database::new();
    for s in server::builtin_services("gattling", 0x03C1) {
        db.add_service(s).unwrap();
    }
    let c = C::new(0xFFF1u16, Properties::READ | Properties::NOTIFY | Properties::WRITE, b"v")
        .extended_properties(1)
        .user_description("d")
        .presentation_format(4, 0, 0x2700, 1, 0)
        .at_handle(0x40);
    db.add_service(ServiceDef::primary(crate::Uuid::from_be_u128(0x1234)).at_handle(0x30).characteristic(c)).unwrap();
    let back = Database::from_records(&db.records()).unwrap();
    assert_eq!(back.records(), db.records());
    assert_eq!(back.compute_hash(), db.compute_hash());
    let id = CharId(0x40);
    assert_eq!(back.characteristic(id).map(|c| c.cccd_handle), db.characteristic(id).map(|c| c.cccd_handle));
}

/// Descriptors in any order: the CCCD after a user description is still the CCCD.
#[test]
fn descriptors_in_any_order() {
    let props = Properties::READ | Properties::NOTIFY;
    let table = [
        svc(0x10, 0x180D),
        decl(0x11, props, 0x12, 0x2A37),
        rec(0x12, 0x2A37, b"hr"),
        rec(0x13, uuids::USER_DESCRIPTION, b"Heart"),
        rec(0x14, 0xFFEE, b"custom"),
        rec(0x15, uuids::CCCD, &[0, 0]),
        rec(0x16, uuids::EXTENDED_PROPERTIES, &[0, 0]),
    ];
    let db = Database::from_records(&table).unwrap();
    let kinds: Vec<AttrKind> = db.attributes().iter().map(|a| a.kind).collect();
    use AttrKind::*;
    assert_eq!(kinds, [PrimaryService, CharacteristicDecl, Value, Descriptor, Descriptor, Cccd, Descriptor]);
    let c = db.characteristic(CharId(0x12)).unwrap();
    assert_eq!((c.cccd_handle, c.end_handle, c.value.as_slice(), c.properties), (Some(0x15), 0x16, &b"hr"[..], props));
    assert!(db.attributes().iter().skip(1).all(|a| a.characteristic == Some(CharId(0x12))));
    assert_eq!(db.records(), table);
}

#[test]
fn table_error_display_names_handle_and_reason() {
    let table = [svc(0x0A, 0x180D), decl(0x0C, Properties::READ, 0x10, 0x2A37), rec(0x0D, 0x2A37, b"")];
    let e = Database::from_records(&table).unwrap_err();
    assert_eq!(e, TableError { index: 1, handle: 0x0C, reason: K::ValuePointsElsewhere { expected: 0x0D, got: 0x10 } });
    assert_eq!(alloc::format!("{e}"), "handle 0x000c: characteristic declaration points at 0x0010, expected 0x000d");
    let wrapped: DbError = e.into();
    assert_eq!(wrapped, DbError::Table(e));
}

fn refused(table: &[AttributeRecord]) -> (usize, u16, K) {
    let e = Database::from_records(table).unwrap_err();
    (e.index, e.handle, e.reason)
}

#[test]
fn malformed_tables_are_refused_with_the_record_and_reason() {
    let r = Properties::READ;
    assert_eq!(refused(&[rec(0, uuids::PRIMARY_SERVICE, &[0, 0x18])]), (0, 0, K::HandleZero));
    assert_eq!(refused(&[rec(1, uuids::PRIMARY_SERVICE, &[0, 0x18, 0])]), (0, 1, K::BadServiceUuid { len: 3 }));
    assert_eq!(refused(&[svc(1, 0x1800), rec(2, uuids::INCLUDE, &[1, 0, 2])]), (1, 2, K::BadDeclaration { len: 3 }));
    assert_eq!(
        refused(&[svc(1, 0x1800), rec(2, uuids::CHARACTERISTIC, &[2, 3, 0])]),
        (1, 2, K::BadDeclaration { len: 3 })
    );
    // An include naming a service that does not exist, with the wrong end, the wrong UUID, or itself.
    let inc =
        |v: &[u8]| [svc(1, 0x1800), svc(5, 0x180F), decl(6, r, 7, 0x2A19), rec(7, 0x2A19, &[1]), rec(8, 0x2802, v)];
    assert_eq!(refused(&inc(&[4, 0, 7, 0, 0x0F, 0x18])), (4, 8, K::BadInclude { start: 4, end: 7 }));
    assert_eq!(refused(&inc(&[5, 0, 6, 0, 0x0F, 0x18])), (4, 8, K::BadInclude { start: 5, end: 6 }));
    assert_eq!(refused(&inc(&[5, 0, 7, 0, 0x0E, 0x18])), (4, 8, K::BadInclude { start: 5, end: 7 }));
    assert_eq!(refused(&inc(&[5, 0, 7, 0])), (4, 8, K::BadInclude { start: 5, end: 7 }));
    // The include is part of service 5 (0x0005-0x0008): a service may not include itself.
    assert_eq!(refused(&inc(&[5, 0, 8, 0, 0x0F, 0x18])), (4, 8, K::BadInclude { start: 5, end: 8 }));
    assert_eq!(refused(&[svc(1, 0x1800), decl(2, r, 3, 0x2A00)]), (1, 2, K::MissingValue));
    let mut long = rec(3, 0x2A00, &[0; 10]);
    long.max_len = 4;
    assert_eq!(refused(&[svc(1, 0x1800), decl(2, r, 3, 0x2A00), long]), (2, 3, K::ValueTooLong { len: 10, max: 4 }));
    let huge = rec(3, 0x2A00, &[0; 513]);
    assert_eq!(refused(&[svc(1, 0x1800), decl(2, r, 3, 0x2A00), huge]), (2, 3, K::ValueTooLong { len: 513, max: 512 }));
    assert_eq!(refused(&[svc(1, 0x1800), rec(2, 0x2901, b"x")]), (1, 2, K::OutsideCharacteristic));
    let n = Properties::NOTIFY;
    let two =
        [svc(1, 0x1800), decl(2, n, 3, 0x2A00), rec(3, 0x2A00, b""), rec(4, 0x2902, &[0, 0]), rec(5, 0x2902, &[0, 0])];
    assert_eq!(refused(&two), (4, 5, K::DuplicateCccd));
}

/// A new group may fill a gap between existing groups, never a gap inside one, nor span one.
#[test]
fn raw_groups_fill_gaps_between_services_only() {
    let mut db = Database::new();
    db.add_service(ServiceDef::primary(0x1800u16).characteristic(C::new(0x2A00u16, Properties::READ, b"a"))).unwrap();
    // Service 0x20..=0x26 with a gap 0x23..=0x24 between its characteristics.
    let two = C::new(0x2A02u16, Properties::READ, b"c").at_handle(0x26);
    let s = ServiceDef::primary(0x180Au16).at_handle(0x20).characteristic(C::new(0x2A01u16, Properties::READ, b"b"));
    db.add_service(s.characteristic(two)).unwrap();
    let before = db.records();
    let one = |h: u16| [svc(h, 0x180F), decl(h + 1, Properties::READ, h + 2, 0x2A19), rec(h + 2, 0x2A19, &[1])];
    // Inside the existing group's gap, overlapping an attribute, spanning a whole group.
    assert_eq!(
        db.insert_records(&[svc(0x23, 0x180F)]),
        Err(TableError { index: 0, handle: 0x23, reason: K::Overlaps })
    );
    assert_eq!(db.insert_records(&one(0x22)), Err(TableError { index: 0, handle: 0x22, reason: K::Overlaps }));
    assert_eq!(db.insert_records(&one(0x1F)), Err(TableError { index: 1, handle: 0x20, reason: K::Overlaps }));
    let span = [svc(0x10, 0x180F), decl(0x30, Properties::READ, 0x31, 0x2A19), rec(0x31, 0x2A19, &[1])];
    assert_eq!(db.insert_records(&span), Err(TableError { index: 1, handle: 0x30, reason: K::Overlaps }));
    assert_eq!(db.records(), before);
    // Between the groups: fine, and an include may name the new service in the same table.
    let mut table = one(0x10).to_vec();
    table.extend([svc(0x30, 0xFFF0), rec(0x31, uuids::INCLUDE, &[0x10, 0, 0x12, 0, 0x0F, 0x18])]);
    db.insert_records(&table).unwrap();
    let handles: Vec<u16> = db.attributes().iter().map(|a| a.handle).collect();
    assert_eq!(handles, [1, 2, 3, 0x10, 0x11, 0x12, 0x20, 0x21, 0x22, 0x25, 0x26, 0x30, 0x31]);
    assert_eq!(db.attribute(0x30).map(|a| a.group_end), Some(0x31));
    assert_eq!(Database::from_records(&db.records()).unwrap().records(), db.records());
}

/// Core Vol 3 Part G §7.3.1 over a raw table: descriptor order and Extended Properties values
/// change the hash; User Description values (hashed without value) and characteristic values
/// do not.
#[test]
fn raw_table_hash_follows_descriptor_rules() {
    let p = Properties::READ | Properties::NOTIFY | Properties::EXTENDED_PROPERTIES;
    let table = |cud: &[u8], ext: &[u8], value: &[u8], cccd_first: bool| {
        let (a, b) = if cccd_first { (5, 4) } else { (4, 5) };
        let mut t = vec![svc(1, 0x180D), decl(2, p, 3, 0x2A37), rec(3, 0x2A37, value)];
        t.push(rec(a, uuids::USER_DESCRIPTION, cud));
        t.push(rec(b, uuids::CCCD, &[0, 0]));
        t.push(rec(6, uuids::EXTENDED_PROPERTIES, ext));
        t.sort_by_key(|r| r.handle);
        Database::from_records(&t).unwrap().compute_hash()
    };
    let h = table(b"a", &[0, 0], b"v", false);
    assert_eq!(table(b"other text", &[0, 0], b"another value", false), h);
    assert_ne!(table(b"a", &[1, 0], b"v", false), h);
    assert_ne!(table(b"a", &[0, 0], b"v", true), h);
}
