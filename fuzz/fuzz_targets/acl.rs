//! `AclPacket::decode` on an ACL packet body (after the H4 indicator): every header bit is
//! kept, so a decoded packet must re-encode to exactly the input.
#![no_main]

use gattling_proto::hci::acl::AclPacket;
use gattling_proto::l2cap::BFrame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = AclPacket::decode(data) else { return };
    assert_eq!(usize::from(p.header.len), p.data.len());
    assert!(p.header.handle <= 0x0FFF);
    let mut wire = Vec::new();
    p.encode_h4(&mut wire);
    assert_eq!(wire[0], 0x02);
    assert_eq!(&wire[1..], data, "ACL re-encoding differs from the input");
    assert_eq!(AclPacket::decode(&wire[1..]), Ok(p));
    // A whole L2CAP PDU in one packet, as the host's fast path sees it.
    if let Ok(f) = BFrame::decode(p.data) {
        assert_eq!(f.payload.len() + 4, p.data.len());
    }
});
