//! `Event::decode` on an event packet body (after the H4 indicator), walking the advertising
//! report and completed-packet lists, and checking encode(decode(x)) decodes to the same event.
#![no_main]

use gattling_proto::gap::ad::AdvData;
use gattling_proto::hci::event::{Event, LeEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(ev) = Event::decode(data) else { return };
    match ev {
        Event::Le(LeEvent::AdvertisingReport(r)) => {
            let mut n = 0;
            for rep in r.iter() {
                assert!(rep.data.len() <= 31, "report data of {} bytes", rep.data.len());
                // What a scanner does next with each report.
                let ad = AdvData::parse_lenient(rep.data);
                let _ = (ad.local_name(), ad.flags(), ad.service_uuids().count());
                n += 1;
            }
            assert_eq!(n, r.len());
            assert!(!r.is_empty());
        }
        Event::NumberOfCompletedPackets(c) => {
            let entries = c.iter().count();
            assert_eq!(usize::from(data[2]), entries, "entry count differs from Num_Handles");
        }
        _ => {}
    }
    let mut wire = Vec::new();
    ev.encode_h4(&mut wire);
    assert_eq!(wire[0], 0x04);
    let back = Event::decode(&wire[1..]).expect("re-encoded event fails to decode");
    assert_eq!(back, ev);
});
