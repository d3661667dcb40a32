//! GATT client procedures fed arbitrary server answers (chunks split on 0xA5): no panic, and
//! every procedure ends within the answers given or asks for more, never loops on one answer.
#![no_main]

use gattling_proto::gatt::client::*;
use gattling_proto::Uuid;
use libfuzzer_sys::fuzz_target;

fn drive<P: Procedure>(mut p: P, answers: &[&[u8]]) {
    let mut step = p.start();
    for a in answers {
        match step {
            Step::Done(_) => return,
            Step::Send(_) => match p.on_response(a) {
                Ok(s) => step = s,
                Err(_) => return,
            },
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let answers: Vec<&[u8]> = data.split(|b| *b == 0xA5).collect();
    drive(DiscoverServices::all(), &answers);
    drive(DiscoverServices::by_uuid(Uuid::U16(0x180D)), &answers);
    drive(FindIncludedServices::new(1, 0xFFFF), &answers);
    drive(DiscoverCharacteristics::new(1, 0xFFFF, None), &answers);
    drive(DiscoverDescriptors::new(1, 0xFFFF), &answers);
    drive(Read::new(3, 23, true), &answers);
    drive(ReadByUuid::new(1, 0xFFFF, Uuid::U16(0x2A00)), &answers);
    drive(ReadMultiple::new(&[1, 2], true), &answers);
    drive(WriteLong::new(&[(3, &[1u8; 60][..]), (4, &[2u8; 5][..])], 23), &answers);
});
