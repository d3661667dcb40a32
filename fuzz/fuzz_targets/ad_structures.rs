//! `AdvData::parse` and `parse_lenient` on advertising data, then every accessor and `resolve`
//! for all 256 AD types (for data over 31 bytes: the types present and four absent ones). Properties: the strict and lenient views agree on valid input, the
//! lenient view is a valid prefix, the structures cover the significant bytes exactly, and
//! rebuilding them with `AdvDataBuilder::raw` gives the same bytes back.
#![no_main]

use gattling_proto::gap::ad::{ad_type, AdValue, AdvData, AdvDataBuilder};
use libfuzzer_sys::fuzz_target;

fn exercise(ad: &AdvData<'_>) {
    // The structures cover the significant bytes: length byte + type byte + data each.
    let mut covered = 0;
    let mut rebuilt = AdvDataBuilder::new();
    for s in ad.iter() {
        covered += 2 + s.data.len();
        rebuilt = rebuilt.raw(s.ad_type, s.data);
    }
    assert_eq!(covered, ad.len());
    assert_eq!(ad.is_empty(), ad.as_bytes().is_empty());
    assert_eq!(ad.into_iter().count(), ad.iter().count());
    let bytes = rebuilt.build_with_max(ad.len()).expect("rebuilding parsed structures fails");
    assert_eq!(bytes, ad.as_bytes(), "rebuilt AD differs");

    let _ = format!("{ad:?}");
    let _ = (ad.flags(), ad.tx_power(), ad.appearance(), ad.name_is_shortened());
    // local_name: the complete name if it is valid UTF-8, else the shortened one if valid;
    // name_lossy: the complete name if present, else the shortened one, either repaired.
    let as_str = |d: &[u8]| core::str::from_utf8(d).ok().map(str::to_owned);
    let lossy = |d: &[u8]| String::from_utf8_lossy(d).into_owned();
    let complete = ad.find(ad_type::COMPLETE_LOCAL_NAME);
    let short = ad.find(ad_type::SHORTENED_LOCAL_NAME);
    let want_name = complete.and_then(as_str).or_else(|| short.and_then(as_str));
    assert_eq!(ad.local_name().map(str::to_owned), want_name);
    assert_eq!(ad.name_lossy(), complete.or(short).map(lossy));
    assert_eq!(ad.name_is_shortened(), complete.is_none() && short.is_some());
    let _ = ad.service_uuids().count();
    let _ = ad.solicited_uuids().count();
    for w in [0, 2, 4, 16, 17] {
        let _ = ad.has_complete_uuid_list(w);
    }
    for (uuid, _) in ad.service_data() {
        let _ = uuid.shortest();
    }
    let first = ad.manufacturer_data();
    assert_eq!(first, ad.manufacturer_data_all().next());

    // Every type for legacy-sized data; beyond 31 bytes (extended advertising) the types present
    // plus a few absent ones, so long inputs do not spend the run on 256 scans each.
    let mut present = [false; 256];
    for s in ad.iter() {
        present[usize::from(s.ad_type)] = true;
    }
    let sweep_all = ad.len() <= 31;
    let mut absent_checked = 0;
    for t in 0..=255u8 {
        if !sweep_all && !present[usize::from(t)] {
            if absent_checked == 4 {
                continue;
            }
            absent_checked += 1;
        }
        let found = ad.find(t);
        assert_eq!(found.is_some(), present[usize::from(t)]);
        assert_eq!(found, ad.find_all(t).next());
        match ad.resolve(t) {
            None => {}
            Some(v) => {
                let data = found.expect("resolve found a type that find did not");
                match v {
                    AdValue::Int(i) => assert_eq!(i, i32::from(data[0] as i8)),
                    AdValue::Bytes(b) => assert_eq!(b, data),
                    AdValue::Str(s) => assert_eq!(s.as_bytes(), data),
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let lenient = AdvData::parse_lenient(data);
    assert!(data.starts_with(lenient.as_bytes()));
    // What the lenient parse kept is itself valid and parses to the same view.
    assert_eq!(AdvData::parse(lenient.as_bytes()), Ok(lenient));
    exercise(&lenient);

    if let Ok(strict) = AdvData::parse(data) {
        assert_eq!(strict, lenient, "strict and lenient parses disagree on valid input");
        assert_eq!(AdvData::try_from(data), Ok(strict));
    }
});
