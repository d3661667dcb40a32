//! ATT_LIST tables (`gatt::att_list`): the seed's five examples load and dump byte-identically,
//! every bad-input case of issue 10 is reported with its offset, handle and reason, random valid
//! tables round-trip, random corruption never panics, and the server serves a table with its
//! own handles, buffer sizes and built-ins below it.

use gattling_proto::att::{Bearer, Route};
use gattling_proto::gatt::att_list::{builtins_below, AttList, AttListError, AttListErrorKind as K, DumpError};
use gattling_proto::gatt::db::{CharacteristicDef as C, TableErrorKind};
use gattling_proto::gatt::{uuids, AttrKind, ConnId, Database, Properties as Prop, Server, ServerConfig, ServiceDef};
use gattling_proto::Uuid;
use proptest::prelude::*;

/// Seed example 1: 16-bit service FEE7 at 0x000C.
const EX1: &str = "0c 00 02 00 28 02 e7 fe";
/// Seed example 2: 128-bit service at 0x000C.
const EX2: &str = "0c 00 02 00 28 10 0f 0e 0d 0c 0b 0a 09 08 07 06 05 04 03 02 01 00";
/// Seed example 3: 16-bit write channel FEC7 (write + write without response).
const EX3: &str = "0d 00 02 03 28 01 0c\n0e 00 02 c7 fe 14 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00";
/// Seed example 4: 128-bit write channel.
const EX4: &str = "0d 00 02 03 28 01 0c\n0e 00 10 ff ee dd cc bb aa 99 88 77 66 55 44 33 22 11 00 14 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00";
/// Seed example 5: the indicate channel (0x20) with its CCCD.
const EX5: &str = "0d 00 02 03 28 01 20\n0e 00 02 c7 fe 14 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00\n0f 00 02 02 29 02 00 00";

fn table(parts: &[&str]) -> String {
    let mut s = parts.join("\n");
    s.push_str("\n00 00\n");
    s
}

fn bytes(hex: &str) -> Vec<u8> {
    gattling_proto::gatt::att_list::hex_to_bytes(hex).expect("test hex")
}

fn refused(hex: &str) -> AttListError {
    match AttList::decode(hex.as_bytes()) {
        Ok(t) => panic!("accepted {hex:?}: {t:?}"),
        Err(e) => e,
    }
}

#[test]
fn seed_examples_load_and_dump_byte_identically() {
    for parts in [&[EX1][..], &[EX2], &[EX1, EX3], &[EX1, EX4], &[EX1, EX5], &[EX2, EX5]] {
        let text = table(parts);
        let list = AttList::parse_hex(&text).unwrap_or_else(|e| panic!("{parts:?}: {e}"));
        assert_eq!(list.to_hex(), text, "hex dump");
        let bin = bytes(&text);
        assert_eq!(list.to_bytes(), bin);
        assert_eq!(AttList::decode(&bin).as_ref(), Ok(&list), "binary and hex agree");
        let db = list.table_database().expect("database");
        let dumped = AttList::from_database(&db, 1).expect("dump");
        assert_eq!(dumped.to_bytes(), bin, "load -> dump of {parts:?}");
        // With built-ins below, dumping from the table's first handle gives the table back.
        let served = list.database("x", 0).expect("served");
        assert_eq!(AttList::from_database(&served, 0x0C).expect("dump").to_bytes(), bin);
    }
}

#[test]
fn declarations_are_built_as_the_spec_requires() {
    let list = AttList::parse_hex(&table(&[EX1, EX4])).expect("valid");
    let records = list.to_records();
    let decl = records.iter().find(|r| r.handle == 0x0D).expect("declaration");
    let mut want = vec![0x0C, 0x0E, 0x00];
    want.extend_from_slice(&bytes("ff ee dd cc bb aa 99 88 77 66 55 44 33 22 11 00"));
    assert_eq!(decl.value, want);
    let kinds: Vec<AttrKind> = list.records().iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [AttrKind::PrimaryService, AttrKind::CharacteristicDecl, AttrKind::Value]);
}

#[test]
fn builtins_fit_below_the_first_handle() {
    let count = |first| builtins_below(first, "n", 0).attributes().len();
    assert_eq!(count(1), 0);
    assert_eq!(count(3), 0);
    assert_eq!(count(4), 3);
    assert_eq!(count(6), 5);
    assert_eq!(count(0x0A), 9);
    assert_eq!(count(0x0C), 11);
    assert_eq!(count(0x0D), 11);
    assert_eq!(count(0x0E), 13);
    assert_eq!(count(0x100), 13);
    let db = AttList::parse_hex(&table(&[EX1, EX5])).expect("valid").database("n", 0).expect("db");
    let handles: Vec<u16> = db.attributes().iter().map(|a| a.handle).collect();
    assert_eq!(handles, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x0C, 0x0D, 0x0E, 0x0F]);
    assert!(db.find_characteristic(Uuid::U16(uuids::SERVICE_CHANGED)).is_some());
    // A table at 0x0001 replaces the built-ins.
    let own = "01 00 02 00 28 02 00 18\n02 00 02 03 28 01 02\n03 00 02 00 2a 03 61 62 63";
    let db = AttList::parse_hex(&table(&[own])).expect("valid").database("n", 0).expect("db");
    assert_eq!(db.attributes().len(), 3);
    assert_eq!(db.value(db.attribute(3).expect("value")), b"abc");
}

fn case(hex: &str, offset: usize, handle: Option<u16>, reason: K) {
    let e = refused(hex);
    assert_eq!(e, AttListError { offset, handle, reason: reason.clone() }, "{hex:?}: {e}");
}

#[test]
fn every_bad_input_is_reported_with_offset_handle_and_reason() {
    // Truncated records: in the handle, the uuid, the value.
    case("0c 00 02 00 28 02 e7 fe 00", 8, None, K::Truncated { field: "handle", needed: 2, available: 1 });
    case("0c 00 02 00", 3, Some(0x0C), K::Truncated { field: "uuid", needed: 2, available: 1 });
    case("0c 00 02 00 28 02 e7", 6, Some(0x0C), K::Truncated { field: "value", needed: 2, available: 1 });
    case("0c 00 02 00 28", 5, Some(0x0C), K::Truncated { field: "value_len", needed: 1, available: 0 });
    // uuid_len other than 2 or 16.
    case("0c 00 04 00 28 00 00 02 e7 fe 00 00", 2, Some(0x0C), K::BadUuidLen(4));
    // Handle not increasing by one.
    case(&format!("{EX1}\n0e 00 02 03 28 01 0c 00 00"), 8, Some(0x0E), K::HandleNotNext { expected: 0x0D });
    case(&format!("{EX1}\n0c 00 02 00 28 02 e7 fe 00 00"), 8, Some(0x0C), K::HandleNotNext { expected: 0x0D });
    // A handle of 0 before the end: a whole record follows the 00 00.
    case(&format!("{EX1}\n00 00 02 03 28 01 0c 00 00"), 8, Some(0), K::HandleZero);
    // A declaration whose value is not one byte.
    case(&format!("{EX1}\n0d 00 02 03 28 02 0c 00 0e 00 02 c7 fe 00 00 00"), 13, Some(0x0D), K::DeclarationLen(2));
    // A declaration not followed by its value: another declaration, a CCCD, the end.
    let decl = "0d 00 02 03 28 01 0c";
    case(&format!("{EX1}\n{decl}\n0e 00 02 03 28 01 0c 0f 00 02 c7 fe 00 00 00"), 8, Some(0x0D), K::MissingValue);
    case(&format!("{EX1}\n0d 00 02 03 28 01 10\n0e 00 02 02 29 02 00 00 00 00"), 8, Some(0x0D), K::MissingValue);
    case(&table(&[EX1, decl]), 8, Some(0x0D), K::MissingValue);
    // A CCCD under a characteristic without notify or indicate.
    case(&table(&[EX1, EX3, "0f 00 02 02 29 02 00 00"]), 41, Some(0x0F), K::CccdWithoutNotify(0x0C));
    case(&table(&[EX1, "0d 00 02 02 29 02 00 00"]), 8, Some(0x0D), K::Table(TableErrorKind::OutsideCharacteristic));
    case(
        &table(&[EX1, "0d 00 02 03 28 01 20\n0e 00 02 c7 fe 00\n0f 00 02 02 29 02 01 00"]),
        26,
        Some(0x0F),
        K::CccdValue,
    );
    // A missing terminator.
    case(EX1, 8, Some(0x0C), K::MissingTerminator);
    case("", 0, None, K::MissingTerminator);
    // Trailing bytes after it.
    case(&format!("{EX1} 00 00 ff"), 10, Some(0x0C), K::TrailingBytes(1));
    // A table too large for the handle space.
    case("ff ff 02 00 28 02 e7 fe\n00 00 02 01 28 02 e7 fe 00 00", 8, Some(0), K::HandleSpace);
    case("fe ff 02 00 28 02 e7 fe\nff ff 02 03 28 01 02 00 00", 8, Some(0xFFFF), K::MissingValue);
    let too_many = "fe ff 02 00 28 02 e7 fe\nff ff 02 00 28 02 e7 fe\n00 00 02 00 28 02 e7 fe 00 00";
    case(too_many, 16, Some(0), K::HandleSpace);
    // A table must start with a service; the service UUID must be 2 or 16 bytes.
    case(&table(&[EX3]), 0, Some(0x0D), K::Table(TableErrorKind::NotAService));
    case("0c 00 02 00 28 03 e7 fe 00 00 00", 5, Some(0x0C), K::ServiceUuidLen(3));
    // 128-bit spellings of 16-bit UUIDs would not be served as written.
    let long = "0c 00 10 fb 34 9b 5f 80 00 00 80 00 10 00 00 00 28 00 00 02 e7 fe 00 00";
    case(
        long,
        3,
        Some(0x0C),
        K::LongBaseUuid(Uuid::U128(bytes("fb 34 9b 5f 80 00 00 80 00 10 00 00 00 28 00 00").try_into().expect("16"))),
    );
    // Hex text errors.
    case("0c 00 0x 00", 2, None, K::NotHex { ch: 'x', line: 1, column: 8 });
    case("0c 0\n", 1, None, K::OddHex { line: 1, column: 4 });
}

#[test]
fn display_names_offset_handle_and_reason() {
    let e = refused(&table(&[EX1, EX3, "0f 00 02 02 29 02 00 00"]));
    assert_eq!(
        e.to_string(),
        "offset 41 (handle 0x000F): CCCD under a characteristic without notify or indicate (properties 0x0C)"
    );
    assert_eq!(refused("0c 0").to_string(), "offset 1: line 1 column 4: odd number of hex digits");
}

#[test]
fn hex_text_takes_comments_and_any_spacing() {
    let text = "# FEE7\n0c000200 28 02e7fe   # service\n\t00 00\r\n";
    let list = AttList::decode(text.as_bytes()).expect("valid");
    assert_eq!(list.to_bytes(), bytes(&table(&[EX1])));
}

/// Runs a request through a server and returns the reply.
fn request(server: &mut Server, bearer: &mut Bearer, pdu: &[u8]) -> Vec<u8> {
    assert_eq!(bearer.receive(pdu, 0), Route::Server);
    let mut out = Vec::new();
    assert!(server.handle(ConnId(1), bearer, pdu, &mut (), &mut out).is_reply(), "no reply to {pdu:02x?}");
    bearer.send(&out, 0).expect("the bearer takes the response");
    out
}

#[test]
fn server_serves_buffer_sizes_and_refuses_longer_writes() {
    let db = AttList::parse_hex(&table(&[EX1, EX3])).expect("valid").database("n", 0).expect("db");
    let mut server = Server::new(db, ServerConfig::default());
    let mut bearer = Bearer::new(517);
    assert_eq!(request(&mut server, &mut bearer, &[0x02, 0x00, 0x02]), [0x03, 0x05, 0x02]);
    // Read returns the 20-byte buffer even though the properties lack Read.
    assert_eq!(request(&mut server, &mut bearer, &[0x0A, 0x0E, 0x00]), [&[0x0Bu8][..], &[0; 20]].concat());
    // A write of 20 bytes is stored, 21 is too long.
    let mut w = vec![0x12, 0x0E, 0x00];
    w.extend(1..=20u8);
    assert_eq!(request(&mut server, &mut bearer, &w), [0x13]);
    assert_eq!(request(&mut server, &mut bearer, &[0x0A, 0x0E, 0x00]), [&[0x0Bu8][..], &w[3..]].concat());
    w.push(21);
    assert_eq!(request(&mut server, &mut bearer, &w), [0x01, 0x12, 0x0E, 0x00, 0x0D]);
    // The declaration as a client reads it.
    assert_eq!(request(&mut server, &mut bearer, &[0x0A, 0x0D, 0x00]), [0x0B, 0x0C, 0x0E, 0x00, 0xC7, 0xFE]);
}

#[test]
fn databases_that_do_not_fit_the_format_are_refused_or_documented() {
    // The demo-like database built by the API dumps (values at their current length).
    let mut db = Database::new();
    db.add_service(
        ServiceDef::primary(0x180F_u16)
            .characteristic(C::new(0x2A19_u16, Prop::READ | Prop::NOTIFY, &[99]))
            .characteristic(C::new(0x2A00_u16, Prop::READ, b"name").max_len(8).user_description("n")),
    )
    .expect("service");
    let list = AttList::from_database(&db, 1).expect("dump");
    assert_eq!(
        list.to_hex(),
        "01 00 02 00 28 02 0f 18\n02 00 02 03 28 01 12\n03 00 02 19 2a 01 63\n04 00 02 02 29 02 00 00\n\
         05 00 02 03 28 01 02\n06 00 02 00 2a 08 6e 61 6d 65 00 00 00 00\n07 00 02 01 29 01 6e\n00 00\n"
    );
    // A value over 255 bytes.
    let mut big = Database::new();
    big.add_service(ServiceDef::primary(0x180F_u16).characteristic(C::new(0x2A19_u16, Prop::READ, &[7; 300])))
        .expect("service");
    assert_eq!(AttList::from_database(&big, 1), Err(DumpError::ValueTooLong { handle: 3, len: 300 }));
    // A handle gap (built-ins at 0x0001-0x000D below a table starting at 0x0010).
    let served = AttList::parse_hex(&table(&["10 00 02 00 28 02 e7 fe"])).expect("valid").database("n", 0).expect("db");
    assert_eq!(AttList::from_database(&served, 1), Err(DumpError::HandleGap { handle: 0x10, previous: 13 }));
    // Without a gap the whole served database dumps, built-ins included, and loads back.
    let served = AttList::parse_hex(&table(&[EX1, EX5])).expect("valid").database("n", 0).expect("db");
    let whole = AttList::from_database(&served, 1).expect("dump");
    assert_eq!(whole.first_handle(), Some(1));
    assert_eq!(whole.records().len(), 15);
}

/// A generated record body: (kind, uuid 128-bit?, uuid value, value).
type CharGen = (u8, bool, u128, Vec<u8>, bool);

fn gen_uuid(long: bool, v: u128) -> Vec<u8> {
    if long {
        // Away from the Base UUID: force a non-zero byte in its first 12 (LE) bytes.
        let mut b = v.to_le_bytes();
        b[0] |= 1;
        b[11] = 0xAA;
        b.to_vec()
    } else {
        (v as u16 | 0x0100).max(0x3000).to_le_bytes().to_vec()
    }
}

fn record(out: &mut Vec<u8>, handle: u16, uuid: &[u8], value: &[u8]) {
    out.extend_from_slice(&handle.to_le_bytes());
    out.push(uuid.len() as u8);
    out.extend_from_slice(uuid);
    out.push(value.len() as u8);
    out.extend_from_slice(value);
}

/// Builds a valid table from generated services and characteristics.
fn build(first: u16, services: &[(bool, u128, Vec<CharGen>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut h = first;
    for (long, su, chars) in services {
        record(&mut out, h, &[0x00, 0x28], &gen_uuid(*long, *su));
        h += 1;
        for (props, long, cu, value, descriptor) in chars {
            record(&mut out, h, &[0x03, 0x28], &[*props]);
            record(&mut out, h + 1, &gen_uuid(*long, *cu), value);
            h += 2;
            if props & 0x30 != 0 {
                record(&mut out, h, &[0x02, 0x29], &[0, 0]);
                h += 1;
            }
            if *descriptor {
                record(&mut out, h, &[0x01, 0x29], b"desc");
                h += 1;
            }
        }
    }
    out.extend_from_slice(&[0, 0]);
    out
}

fn services() -> impl Strategy<Value = Vec<(bool, u128, Vec<CharGen>)>> {
    let ch = (any::<u8>(), any::<bool>(), any::<u128>(), proptest::collection::vec(any::<u8>(), 0..40), any::<bool>());
    proptest::collection::vec((any::<bool>(), any::<u128>(), proptest::collection::vec(ch, 0..4)), 1..4)
}

proptest! {
    #[test]
    fn random_valid_tables_round_trip(first in 1u16..0x200, svcs in services()) {
        let bin = build(first, &svcs);
        let list = AttList::parse(&bin).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(list.to_bytes(), bin.clone());
        let reparsed = AttList::parse_hex(&list.to_hex());
        prop_assert_eq!(reparsed.as_ref(), Ok(&list));
        let db = list.database("p", 0).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let dumped = AttList::from_database(&db, first).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(dumped.to_bytes(), bin);
    }

    #[test]
    fn random_corruption_never_panics_and_is_reported(
        svcs in services(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bin = build(0x0C, &svcs);
        for (i, b) in &edits {
            let i = i.index(bin.len());
            bin[i] = *b;
        }
        if truncate {
            bin.truncate(cut.index(bin.len()));
        }
        match AttList::parse(&bin) {
            Ok(list) => prop_assert_eq!(list.to_bytes(), bin.clone()),
            Err(e) => {
                prop_assert!(e.offset <= bin.len(), "offset {} past the end", e.offset);
                let text = e.to_string();
                let prefix = format!("offset {}", e.offset);
                prop_assert!(text.starts_with(&prefix), "{}", text);
                // The hex form reports the same error.
                let hex: String = bin.iter().map(|b| format!("{b:02x} ")).collect();
                if !bin.is_empty() && !bin.contains(&0) {
                    prop_assert_eq!(AttList::decode(hex.as_bytes()), Err(e));
                }
            }
        }
        let _ = AttList::decode(&bin);
    }
}
