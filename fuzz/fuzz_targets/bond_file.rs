//! `Bond::from_toml` (the text of a `FileBondStore` bond file) on arbitrary input. Properties: it
//! never panics; a bond it accepts writes back to text that parses to the same bond, and writing
//! that bond again gives the same text.
#![no_main]

use gattling::bonds::Bond;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Bond files are read as UTF-8; other bytes are refused before parsing.
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Bond::from_toml(text) {
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(bond) => {
            let written = bond.to_toml();
            let again = Bond::from_toml(&written).expect("a written bond parses");
            assert_eq!(again, bond, "text round trip differs");
            assert_eq!(again.to_toml(), written, "writing is not stable");
        }
    }
});
