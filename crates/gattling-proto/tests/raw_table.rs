//! Raw attribute tables (`Database::insert_records`, `from_records`, `records`; Core Vol 3 Part G
//! §3): builder-made databases round-trip through their records, every kind of malformed table
//! is refused with the offending record and leaves the database unchanged, and the GATT server
//! serves a table whose descriptors are in an unusual order.

mod gatt_common;

use gattling_proto::att::{Bearer, Route};
use gattling_proto::gatt::db::{AttributeRecord, CharacteristicDef as C, TableError, TableErrorKind as K};
use gattling_proto::gatt::server::builtin_services;
use gattling_proto::gatt::{
    uuids, CharId, ConnId, Database, Permissions as Perm, Properties as Prop, Server, ServerConfig, ServiceDef,
};
use gattling_proto::Uuid;
use proptest::prelude::*;
use std::collections::BTreeMap;

/// First handle of the generated databases (the built-in services sit below it).
const BASE: u16 = 0x20;

/// A generated characteristic: UUID, properties, value, spare write room, extended properties,
/// descriptors (0 user description, 1 presentation format, 2 server configuration, 3 custom
/// 128-bit), and the handle gap before its declaration.
type CharSpec = (Uuid, u8, Vec<u8>, usize, Option<u16>, Vec<(u8, Vec<u8>)>, u16);
/// A generated service: UUID, primary, whether it includes the previous service, the handle gap
/// before it, and its characteristics.
type ServiceSpec = (Uuid, bool, bool, u16, Vec<CharSpec>);

fn uuid() -> impl Strategy<Value = Uuid> {
    prop_oneof![
        (0x2A00u16..0x2B00).prop_map(Uuid::U16),
        any::<u128>().prop_map(Uuid::from_be_u128),
        any::<u32>().prop_map(|v| Uuid::U32(v | 0x0001_0000)),
    ]
}

fn characteristic() -> impl Strategy<Value = CharSpec> {
    (
        uuid(),
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..24),
        0usize..40,
        proptest::option::of(0u16..4),
        proptest::collection::vec((0u8..4, proptest::collection::vec(any::<u8>(), 0..12)), 0..3),
        prop_oneof![Just(0u16), 1u16..6],
    )
}

fn service() -> impl Strategy<Value = ServiceSpec> {
    (
        prop_oneof![(0x1800u16..0x1900).prop_map(Uuid::U16), any::<u128>().prop_map(Uuid::from_be_u128)],
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(0u16), 1u16..10],
        proptest::collection::vec(characteristic(), 0..5),
    )
}

/// Builds a database from generated services at `BASE` and above, with the handle gaps asked
/// for (fixed service and value handles), each service optionally including the previous one.
fn build(specs: &[ServiceSpec]) -> Database {
    let mut db = Database::new();
    let mut next = BASE;
    let mut previous: Option<u16> = None;
    for (uuid, primary, include, gap, chars) in specs {
        let start = next + gap;
        let mut def = if *primary { ServiceDef::primary(*uuid) } else { ServiceDef::secondary(*uuid) };
        def = def.at_handle(start);
        if let (true, Some(p)) = (include, previous) {
            def = def.include(p);
        }
        let mut last = start + def.includes.len() as u16;
        for (cu, props, value, room, ext, descs, cgap) in chars {
            let mut c = C::new(*cu, Prop(*props & !Prop::EXTENDED_PROPERTIES.0), value).max_len(value.len() + room);
            if let Some(bits) = ext {
                c = c.extended_properties(*bits);
            }
            for (kind, v) in descs {
                c = match kind {
                    0 => c.user_description(&String::from_utf8_lossy(v)),
                    1 => c.presentation_format(v.first().copied().unwrap_or(4), 0, 0x2700, 1, 0),
                    2 => c.server_configuration(),
                    _ => c.descriptor(Uuid::from_be_u128(0xD35C_0000 + v.len() as u128), v, Perm::READ | Perm::WRITE),
                };
            }
            if *cgap > 0 {
                c = c.at_handle(last + cgap + 2);
            }
            let handles = 2
                + u16::from(c.properties.intersects(Prop::NOTIFY | Prop::INDICATE))
                + u16::from(c.properties.contains(Prop::EXTENDED_PROPERTIES))
                + c.descriptors.len() as u16;
            last += cgap + handles;
            def = def.characteristic(c);
        }
        let h = db.add_service(def).expect("generated service fits");
        assert_eq!(h, start);
        let end = db.attribute(h).expect("declaration").group_end;
        assert_eq!(end, last, "handle bookkeeping of the generator");
        previous = Some(h);
        next = end + 1;
    }
    db
}

/// The built-in GAP and GATT services at 0x0001-0x000D, the database raw tables go into.
fn base() -> Database {
    let mut db = Database::new();
    for s in builtin_services("raw", 0) {
        db.add_service(s).expect("built-in");
    }
    db
}

fn is_declaration(r: &AttributeRecord) -> bool {
    matches!(r.uuid.as_u16(), Some(0x2800..=0x2803))
}

/// Indexes of characteristic value and descriptor records (everything inside a characteristic
/// after its declaration).
fn inside_characteristics(records: &[AttributeRecord]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut in_char = false;
    for (i, r) in records.iter().enumerate() {
        if is_declaration(r) {
            in_char = r.uuid == Uuid::U16(uuids::CHARACTERISTIC);
        } else if in_char {
            out.push(i);
        }
    }
    out
}

/// Inserting `table` into the base database fails with exactly `expected`, and leaves the
/// database unchanged.
fn assert_refused(table: &[AttributeRecord], expected: TableError) -> Result<(), TestCaseError> {
    let mut db = base();
    let (before, hash) = (db.records(), db.compute_hash());
    prop_assert_eq!(db.insert_records(table), Err(expected));
    prop_assert_eq!(db.records(), before);
    prop_assert_eq!(db.compute_hash(), hash);
    prop_assert_eq!(Database::from_records(table).err(), Some(expected));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// (a) Any builder-made database (services, includes, notify/indicate CCCDs, extended
    /// properties, descriptors, fixed handles with gaps) round-trips: `from_records(records())`
    /// has the same records, hash and characteristics, also when inserted next to the built-in
    /// services.
    #[test]
    fn builder_databases_round_trip(specs in proptest::collection::vec(service(), 1..5)) {
        let db = build(&specs);
        let records = db.records();
        let back = Database::from_records(&records).expect("own records are a valid table");
        prop_assert_eq!(back.records(), records.clone());
        prop_assert_eq!(back.compute_hash(), db.compute_hash());
        let summary = |d: &Database| -> Vec<_> {
            d.characteristics()
                .iter()
                .map(|c| (c.decl_handle, c.value_handle, c.end_handle, c.cccd_handle, c.properties, c.value.clone()))
                .collect()
        };
        prop_assert_eq!(summary(&back), summary(&db));
        for (a, b) in db.characteristics().iter().zip(back.characteristics()) {
            prop_assert!(gattling_proto::uuid::same(&a.uuid, &b.uuid));
        }
        let mut merged = base();
        merged.insert_records(&records).expect("fits above the built-in services");
        let mut expected = base().records();
        expected.extend(records);
        prop_assert_eq!(merged.records(), expected);
    }

    /// (b) A characteristic declaration pointing anywhere but the next handle is refused there.
    #[test]
    fn declaration_pointing_elsewhere_is_refused(specs in proptest::collection::vec(service(), 1..5), pick in any::<usize>(), to in any::<u16>()) {
        let mut table = build(&specs).records();
        let decls: Vec<usize> = (0..table.len()).filter(|&i| table[i].uuid == Uuid::U16(uuids::CHARACTERISTIC)).collect();
        prop_assume!(!decls.is_empty());
        let i = decls[pick % decls.len()];
        let handle = table[i].handle;
        prop_assume!(to != handle + 1);
        table[i].value[1..3].copy_from_slice(&to.to_le_bytes());
        assert_refused(&table, TableError { index: i, handle, reason: K::ValuePointsElsewhere { expected: handle + 1, got: to } })?;
    }

    /// (b) A handle gap before a characteristic value or one of its descriptors is refused at
    /// the record after the gap.
    #[test]
    fn gap_inside_a_characteristic_is_refused(specs in proptest::collection::vec(service(), 1..5), pick in any::<usize>(), shift in 1u16..4) {
        let mut table = build(&specs).records();
        let inside = inside_characteristics(&table);
        prop_assume!(!inside.is_empty());
        let j = inside[pick % inside.len()];
        let expected = table[j].handle;
        for r in &mut table[j..] {
            r.handle += shift;
        }
        assert_refused(&table, TableError { index: j, handle: expected + shift, reason: K::GapInCharacteristic { expected } })?;
    }

    /// (b) A value record whose type differs from the UUID in its declaration is refused.
    #[test]
    fn value_uuid_differing_from_the_declaration_is_refused(specs in proptest::collection::vec(service(), 1..5), pick in any::<usize>(), other in uuid()) {
        let mut table = build(&specs).records();
        let values: Vec<usize> = (1..table.len()).filter(|&i| table[i - 1].uuid == Uuid::U16(uuids::CHARACTERISTIC)).collect();
        prop_assume!(!values.is_empty());
        let i = values[pick % values.len()];
        let declared = table[i].uuid;
        prop_assume!(!gattling_proto::uuid::same(&declared, &other));
        table[i].uuid = other;
        let reason = K::UuidMismatch { declared, got: other.shortest_wire() };
        assert_refused(&table, TableError { index: i, handle: table[i].handle, reason })?;
    }

    /// (b) A handle not above the previous record's is refused.
    #[test]
    fn non_increasing_handles_are_refused(specs in proptest::collection::vec(service(), 1..5), pick in any::<usize>(), back in any::<u16>()) {
        let mut table = build(&specs).records();
        prop_assume!(table.len() > 1);
        let j = 1 + pick % (table.len() - 1);
        let previous = table[j - 1].handle;
        let handle = 1 + back % previous;
        table[j].handle = handle;
        assert_refused(&table, TableError { index: j, handle, reason: K::HandleNotIncreasing { previous } })?;
    }

    /// (b) A table that does not start with a service declaration is refused at its first record.
    #[test]
    fn table_not_starting_with_a_service_is_refused(specs in proptest::collection::vec(service(), 1..5), first in prop_oneof![Just(uuids::CHARACTERISTIC), Just(uuids::INCLUDE), Just(uuids::CCCD), 0x2A00u16..0x2B00]) {
        let mut table = build(&specs).records();
        table[0].uuid = Uuid::U16(first);
        assert_refused(&table, TableError { index: 0, handle: table[0].handle, reason: K::NotAService })?;
        // Without its service declaration the table starts inside the service.
        let rest = &build(&specs).records()[1..];
        if let Some(r) = rest.first().filter(|r| !matches!(r.uuid.as_u16(), Some(0x2800 | 0x2801))) {
            assert_refused(rest, TableError { index: 0, handle: r.handle, reason: K::NotAService })?;
        }
    }

    /// (b) A table overlapping an existing service is refused at its first record inside that
    /// service's group.
    #[test]
    fn overlapping_an_existing_service_is_refused(specs in proptest::collection::vec(service(), 1..5), start in 1u16..=0x0D) {
        // Shift the generated table down so it starts at `start`, inside the built-in services.
        let records = build(&specs).records();
        let first = records[0].handle;
        let table: Vec<AttributeRecord> = records
            .into_iter()
            .map(|mut r| {
                r.handle = r.handle - first + start;
                r
            })
            .collect();
        let mut db = base();
        let (before, hash) = (db.records(), db.compute_hash());
        let e = db.insert_records(&table).expect_err("overlaps");
        prop_assert_eq!((e.index, e.handle, e.reason), (0, start, K::Overlaps));
        prop_assert_eq!(db.records(), before);
        prop_assert_eq!(db.compute_hash(), hash);
    }
}

/// The conformance suite's fixture database round-trips through its records too.
#[test]
fn conformance_fixture_round_trips() {
    let db = gatt_common::database();
    let back = Database::from_records(&db.records()).expect("valid table");
    assert_eq!(back.records(), db.records());
    assert_eq!(back.compute_hash(), db.compute_hash());
}

fn rec(handle: u16, uuid: u16, value: &[u8], permissions: Perm) -> AttributeRecord {
    AttributeRecord { handle, uuid: Uuid::U16(uuid), value: value.to_vec(), permissions, max_len: 512 }
}

/// (c) A raw table with the user description before the CCCD and a presentation format after
/// it is served as given: Find Information lists the handles in table order, reads return the
/// descriptors, and writing the CCCD (wherever it is) enables notifications.
#[test]
fn server_serves_descriptors_in_table_order() {
    let r = Perm::READ;
    let table = [
        rec(0x01, uuids::PRIMARY_SERVICE, &[0x0D, 0x18], r),
        rec(0x02, uuids::CHARACTERISTIC, &[(Prop::READ | Prop::NOTIFY).bits(), 0x03, 0x00, 0x37, 0x2A], r),
        rec(0x03, 0x2A37, b"hr", r),
        rec(0x04, uuids::USER_DESCRIPTION, b"Heart", r),
        rec(0x05, uuids::CCCD, &[0, 0], r | Perm::WRITE),
        rec(0x06, uuids::PRESENTATION_FORMAT, &[4, 0, 0, 0x27, 1, 0, 0], r),
        // a gap after the last descriptor, then another service
        rec(0x10, uuids::PRIMARY_SERVICE, &[0x0F, 0x18], r),
    ];
    let db = Database::from_records(&table).expect("valid table");
    let mut server = Server::new(db, ServerConfig::default());
    let conn = ConnId(0x40);
    server.connect(conn);
    let mut bearer = Bearer::new(517);
    let mut send = |pdu: &[u8]| exchange(&mut server, &mut bearer, conn, pdu);
    // Find Information 0x0003-0x0010: value, CUD, CCCD, CPF, the next service, in table order.
    let expected =
        [0x05, 0x01, 3, 0, 0x37, 0x2A, 4, 0, 0x01, 0x29, 5, 0, 0x02, 0x29, 6, 0, 0x04, 0x29, 0x10, 0, 0, 0x28];
    assert_eq!(send(&[0x04, 0x03, 0x00, 0x10, 0x00]), expected);
    // Find Information past the end of the table.
    assert_eq!(send(&[0x04, 0x11, 0x00, 0xFF, 0xFF]), [0x01, 0x04, 0x11, 0x00, 0x0A]);
    // Read the user description and the (initially zero) CCCD.
    assert_eq!(send(&[0x0A, 0x04, 0x00]), b"\x0bHeart");
    assert_eq!(send(&[0x0A, 0x05, 0x00]), [0x0B, 0, 0]);
    // Primary service discovery sees both groups with their ends.
    assert_eq!(
        send(&[0x10, 0x01, 0x00, 0xFF, 0xFF, 0x00, 0x28]),
        [0x11, 6, 1, 0, 6, 0, 0x0D, 0x18, 0x10, 0, 0x10, 0, 0x0F, 0x18]
    );
    // Enable notifications through the CCCD at 0x0005.
    assert_eq!(send(&[0x12, 0x05, 0x00, 0x01, 0x00]), [0x13]);
    assert_eq!(send(&[0x0A, 0x05, 0x00]), [0x0B, 1, 0]);
    // Writing the user description is refused (read-only in the table).
    assert_eq!(send(&[0x12, 0x04, 0x00, b'x']), [0x01, 0x12, 0x04, 0x00, 0x03]);
    assert_eq!(server.cccd(conn, CharId(3)), 1);
    let mut bearers = BTreeMap::from([(conn, bearer)]);
    assert_eq!(server.set_value(CharId(3), b"x", 0, &mut bearers), vec![(conn, vec![0x1B, 0x03, 0x00, b'x'])]);
}

/// One request through the link's bearer to the server, and the response back through it.
fn exchange(server: &mut Server, bearer: &mut Bearer, conn: ConnId, pdu: &[u8]) -> Vec<u8> {
    assert_eq!(bearer.receive(pdu, 0), Route::Server);
    let mut out = Vec::new();
    assert!(server.handle(conn, bearer, pdu, &mut (), &mut out).is_reply(), "no reply to {pdu:02x?}");
    bearer.send(&out, 0).expect("the bearer takes the response");
    out
}
