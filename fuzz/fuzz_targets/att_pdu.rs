//! `AttPdu::decode` on one ATT PDU: every list view is walked, and a decoded PDU must re-encode
//! to exactly the input bytes (the codec keeps the raw bytes of every list) and decode to an
//! equal PDU. The opcode helpers are run on the first byte of every input.
#![no_main]

use gattling_proto::att::{self, AttPdu};
use libfuzzer_sys::fuzz_target;

/// Walks every list iterator of `pdu`, checking counts against the views' own lengths.
fn walk(pdu: &AttPdu<'_>) {
    match *pdu {
        AttPdu::FindInformationRsp { data } => {
            let items: Vec<_> = data.iter().collect();
            assert_eq!(items.len(), data.len());
            assert_eq!(data.iter().len(), data.len());
            assert!(!data.is_empty());
            for (_, uuid) in items {
                assert_eq!(uuid.wire_len(), data.format().record_len() - 2);
            }
        }
        AttPdu::FindByTypeValueRsp { data } => {
            assert_eq!(data.iter().count(), data.len());
            assert_eq!(data.into_iter().len(), data.len());
            assert!(!data.is_empty());
        }
        AttPdu::ReadByTypeRsp { data } => {
            let mut n = 0;
            for (_, value) in data.iter() {
                assert_eq!(value.len(), data.value_len());
                n += 1;
            }
            assert_eq!(n, data.len());
            assert!(!data.is_empty());
        }
        AttPdu::ReadByGroupTypeRsp { data } => {
            let mut n = 0;
            for (_, _, value) in data.iter() {
                assert_eq!(value.len(), data.value_len());
                n += 1;
            }
            assert_eq!(n, data.len());
            assert!(!data.is_empty());
        }
        AttPdu::ReadMultipleReq { handles } | AttPdu::ReadMultipleVariableReq { handles } => {
            assert_eq!(handles.iter().count(), handles.len());
            assert!(handles.len() >= 2);
        }
        AttPdu::ReadMultipleVariableRsp { data } => {
            // Every byte is iterated: 2 per length field plus the value (the last value may be
            // cut short); at most one stray byte after the last tuple is left over.
            let total = data.as_bytes().len();
            let mut it = data.iter();
            let used: usize = (&mut it).map(|value| 2 + value.len()).sum();
            assert!(it.next().is_none(), "iterator not fused");
            assert!(used <= total && total - used <= 1, "{used} of {total} bytes iterated");
            if total - used == 1 {
                assert!(data.is_truncated());
            }
        }
        AttPdu::MultipleHandleValueNtf { data } => {
            let mut used = 0;
            for (_, len, value) in data.iter() {
                assert_eq!(usize::from(len), value.len());
                used += 4 + value.len();
            }
            assert_eq!(used, data.as_bytes().len(), "validated list not fully iterated");
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(&op) = data.first() {
        let _ = (att::opcode::kind(op), att::opcode::name(op), att::is_command(op), att::is_signed(op));
        let (req, rsp) = (att::is_request(op), att::is_response(op));
        assert!(!(req && rsp));
        if let Some(r) = att::expected_response(op) {
            assert!(att::is_response(r) || r == att::opcode::HANDLE_VALUE_CFM);
        }
    }

    let Ok(pdu) = AttPdu::decode(data) else { return };
    assert_eq!(pdu.opcode(), data[0]);
    let _ = (pdu.kind(), pdu.name(), pdu.fits_mtu(att::DEFAULT_LE_MTU));
    walk(&pdu);

    assert_eq!(pdu.encoded_len(), data.len(), "encoded_len disagrees with the decoded length");
    let wire = pdu.to_vec();
    assert_eq!(wire, data, "ATT re-encoding differs from the input");
    let back = AttPdu::decode(&wire).expect("re-encoded PDU fails to decode");
    assert_eq!(back, pdu);
});
