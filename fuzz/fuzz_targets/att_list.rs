//! `AttList::decode` (ATT_LIST tables, binary or hex text) on arbitrary input. Properties: it
//! never panics; an error's offset lies within the decoded table; a valid table re-encodes to
//! the same bytes (binary input), parses back from its hex form, builds a database, and dumps
//! from that database byte-identically.
#![no_main]

use gattling_proto::gatt::att_list::AttList;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match AttList::decode(data) {
        Err(e) => {
            let _ = e.to_string();
            if data.contains(&0) {
                assert!(e.offset <= data.len(), "offset {} past the end", e.offset);
            }
        }
        Ok(list) => {
            let bin = list.to_bytes();
            if data.contains(&0) {
                assert_eq!(bin, data, "re-encoding differs");
            }
            assert_eq!(AttList::parse_hex(&list.to_hex()).as_ref(), Ok(&list));
            let db = list.table_database().expect("a valid table builds a database");
            let first = list.first_handle().unwrap_or(1);
            let dumped = AttList::from_database(&db, first).expect("a loaded table dumps");
            assert_eq!(dumped.to_bytes(), bin, "load -> dump differs");
            let _ = list.database("fuzz", 0).expect("built-ins fit below the table");
        }
    }
});
