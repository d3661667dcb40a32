//! `SmpPdu::decode` on one SMP PDU: a decoded PDU re-encodes to exactly the input bytes and
//! decodes to an equal PDU; a refused one maps to a Pairing Failed reason of the spec.
#![no_main]

use gattling_proto::smp::pdu::{PduError, Reason, SmpPdu};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match SmpPdu::decode(data) {
        Ok(pdu) => {
            assert_eq!(pdu.code(), data[0]);
            let wire = pdu.to_vec();
            assert_eq!(wire, data, "SMP re-encoding differs from the input");
            assert_eq!(SmpPdu::decode(&wire), Ok(pdu));
        }
        Err(e) => {
            let r = e.reason();
            assert!(r == Reason::CommandNotSupported || r == Reason::InvalidParameters);
            if let PduError::UnknownCode(c) = e {
                assert_eq!(Some(&c), data.first());
            }
        }
    }
});
