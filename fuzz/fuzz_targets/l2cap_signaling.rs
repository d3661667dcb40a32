//! `Signal::decode` on an LE signaling C-frame payload, plus the SMP channel's
//! `smp::reply_without_pairing` on the same bytes. A decoded signal re-encodes to exactly the input.
#![no_main]

use gattling_proto::l2cap::signaling::Signal;
use gattling_proto::smp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // SMP: no reply for an empty PDU or Pairing Failed; otherwise always Pairing Failed.
    match smp::reply_without_pairing(data) {
        None => assert!(data.is_empty() || data[0] == smp::code::PAIRING_FAILED),
        Some([code, reason]) => {
            assert_eq!(code, smp::code::PAIRING_FAILED);
            assert!(reason == smp::reason::PAIRING_NOT_SUPPORTED || reason == smp::reason::COMMAND_NOT_SUPPORTED);
        }
    }

    let Ok(sig) = Signal::decode(data) else { return };
    assert_eq!(sig.identifier(), data[1]);
    let mut wire = Vec::new();
    sig.encode(&mut wire);
    assert_eq!(wire, data, "signaling re-encoding differs from the input");
    assert_eq!(Signal::decode(&wire), Ok(sig));
});
