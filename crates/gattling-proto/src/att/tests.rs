//! Tests for the ATT codec: exact byte vectors, error cases, builders and property tests.

use super::*;
use alloc::vec;
use alloc::vec::Vec;
use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Union};

const GAP_UUID128: [u8; 16] =
    [0xF0, 0xDE, 0xBC, 0x9A, 0x78, 0x56, 0x34, 0x12, 0x78, 0x56, 0x34, 0x12, 0x78, 0x56, 0x34, 0x12];

fn roundtrip(bytes: &[u8]) -> AttPdu<'_> {
    let pdu = AttPdu::decode(bytes).expect("decodes");
    assert_eq!(pdu.to_vec(), bytes, "re-encoding {pdu:?}");
    assert_eq!(pdu.encoded_len(), bytes.len());
    pdu
}

// ---------------------------------------------------------------- exact byte vectors

#[test]
fn error_rsp_bytes() {
    let bytes = [0x01, 0x10, 0x01, 0x00, 0x0A];
    let pdu = roundtrip(&bytes);
    assert_eq!(
        pdu,
        AttPdu::ErrorRsp {
            request_opcode: opcode::READ_BY_GROUP_TYPE_REQ,
            handle: 0x0001,
            error: ErrorCode::ATTRIBUTE_NOT_FOUND,
        }
    );
    assert_eq!(pdu.kind(), PduKind::Response);
    assert_eq!(pdu.name(), "Error Response");
}

#[test]
fn read_by_group_type_rsp_16_bit() {
    // GAP service 0x0001..0x0007, GATT service 0x0008..0x000B.
    let bytes = [0x11, 0x06, 0x01, 0x00, 0x07, 0x00, 0x00, 0x18, 0x08, 0x00, 0x0B, 0x00, 0x01, 0x18];
    let AttPdu::ReadByGroupTypeRsp { data } = roundtrip(&bytes) else { panic!("wrong variant") };
    assert_eq!(data.length(), 6);
    assert_eq!(data.value_len(), 2);
    assert_eq!(data.len(), 2);
    let groups: Vec<_> = data.iter().collect();
    assert_eq!(groups, vec![(0x0001, 0x0007, &[0x00, 0x18][..]), (0x0008, 0x000B, &[0x01, 0x18][..])]);
}

#[test]
fn read_by_group_type_rsp_128_bit() {
    let mut bytes = vec![0x11, 0x14, 0x0C, 0x00, 0x0F, 0x00];
    bytes.extend_from_slice(&GAP_UUID128);
    let AttPdu::ReadByGroupTypeRsp { data } = roundtrip(&bytes) else { panic!("wrong variant") };
    assert_eq!(data.length(), 20);
    let groups: Vec<_> = data.iter().collect();
    assert_eq!(groups, vec![(0x000C, 0x000F, &GAP_UUID128[..])]);
    assert_eq!(Uuid::from_le_bytes(groups[0].2), Ok(Uuid::U128(GAP_UUID128)));
}

#[test]
fn find_information_rsp_format_2() {
    let mut bytes = vec![0x05, 0x02, 0x10, 0x00];
    bytes.extend_from_slice(&GAP_UUID128);
    let AttPdu::FindInformationRsp { data } = roundtrip(&bytes) else { panic!("wrong variant") };
    assert_eq!(data.format(), InformationFormat::Uuid128);
    assert_eq!(data.iter().collect::<Vec<_>>(), vec![(0x0010, Uuid::U128(GAP_UUID128))]);
}

#[test]
fn find_information_rsp_format_1() {
    let bytes = [0x05, 0x01, 0x03, 0x00, 0x02, 0x29, 0x04, 0x00, 0x01, 0x29];
    let AttPdu::FindInformationRsp { data } = roundtrip(&bytes) else { panic!("wrong variant") };
    assert_eq!(data.iter().collect::<Vec<_>>(), vec![(3, Uuid::U16(0x2902)), (4, Uuid::U16(0x2901))]);
    assert_eq!(data.iter().len(), 2);
}

#[test]
fn simple_request_bytes() {
    assert_eq!(roundtrip(&[0x02, 0x17, 0x00]), AttPdu::ExchangeMtuReq { client_rx_mtu: 23 });
    assert_eq!(roundtrip(&[0x0A, 0x03, 0x00]), AttPdu::ReadReq { handle: 3 });
    assert_eq!(roundtrip(&[0x0C, 0x03, 0x00, 0x16, 0x00]), AttPdu::ReadBlobReq { handle: 3, offset: 22 });
    assert_eq!(
        roundtrip(&[0x08, 0x01, 0x00, 0xFF, 0xFF, 0x03, 0x28]),
        AttPdu::ReadByTypeReq { start: 1, end: 0xFFFF, attribute_type: Uuid::U16(0x2803) }
    );
    assert_eq!(
        roundtrip(&[0x06, 0x01, 0x00, 0xFF, 0xFF, 0x00, 0x28, 0x0D, 0x18]),
        AttPdu::FindByTypeValueReq { start: 1, end: 0xFFFF, attribute_type: 0x2800, value: &[0x0D, 0x18] }
    );
    assert_eq!(roundtrip(&[0x18, 0x01]), AttPdu::ExecuteWriteReq { flags: ExecuteWriteFlags::Write });
    assert_eq!(roundtrip(&[0x13]), AttPdu::WriteRsp);
    assert_eq!(roundtrip(&[0x1E]), AttPdu::HandleValueCfm);
    assert_eq!(roundtrip(&[0x52, 0x05, 0x00, 0x01, 0x02]), AttPdu::WriteCmd { handle: 5, value: &[1, 2] });
}

#[test]
fn read_by_type_req_128_bit_and_32_bit_encoding() {
    let mut bytes = vec![0x08, 0x01, 0x00, 0x05, 0x00];
    bytes.extend_from_slice(&GAP_UUID128);
    assert_eq!(roundtrip(&bytes), AttPdu::ReadByTypeReq { start: 1, end: 5, attribute_type: Uuid::U128(GAP_UUID128) });
    // A 32-bit UUID goes out in its 128-bit form.
    let pdu = AttPdu::ReadByGroupTypeReq { start: 1, end: 2, group_type: Uuid::U32(0x1234_5678) };
    let out = pdu.to_vec();
    assert_eq!(out.len(), pdu.encoded_len());
    assert_eq!(out.len(), 21);
    assert_eq!(&out[5..], &Uuid::U32(0x1234_5678).to_u128_le());
}

#[test]
fn signed_write_cmd_bytes() {
    let mut bytes = vec![0xD2, 0x21, 0x00, 0xAA, 0xBB];
    bytes.extend(1..=12u8);
    let pdu = roundtrip(&bytes);
    assert_eq!(
        pdu,
        AttPdu::SignedWriteCmd {
            handle: 0x21,
            value: &[0xAA, 0xBB],
            signature: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
        }
    );
    assert_eq!(pdu.kind(), PduKind::Command);
}

#[test]
fn multiple_handle_value_ntf_bytes() {
    let bytes = [0x23, 0x03, 0x00, 0x02, 0x00, 0xAA, 0xBB, 0x05, 0x00, 0x01, 0x00, 0xCC];
    let AttPdu::MultipleHandleValueNtf { data } = roundtrip(&bytes) else { panic!("wrong variant") };
    assert_eq!(data.iter().collect::<Vec<_>>(), vec![(3, 2, &[0xAA, 0xBB][..]), (5, 1, &[0xCC][..])]);
}

#[test]
fn read_multiple_variable_rsp_truncated_last_value() {
    // Values of 2 and 4 bytes; the second is cut after 1 byte.
    let bytes = [0x21, 0x02, 0x00, 0x11, 0x22, 0x04, 0x00, 0x33];
    let AttPdu::ReadMultipleVariableRsp { data } = roundtrip(&bytes) else { panic!("wrong variant") };
    assert_eq!(data.iter().collect::<Vec<_>>(), vec![&[0x11, 0x22][..], &[0x33][..]]);
    assert!(data.is_truncated());
    // Cut inside a length field: the dangling byte yields nothing.
    let bytes = [0x21, 0x01, 0x00, 0x11, 0x07];
    let AttPdu::ReadMultipleVariableRsp { data } = roundtrip(&bytes) else { panic!("wrong variant") };
    assert_eq!(data.iter().collect::<Vec<_>>(), vec![&[0x11][..]]);
    assert!(data.is_truncated());
    let complete = LengthValueList::new(&[0x01, 0x00, 0x11, 0x00, 0x00]).unwrap();
    assert_eq!(complete.iter().collect::<Vec<_>>(), vec![&[0x11][..], &[][..]]);
    assert!(!complete.is_truncated());
}

#[test]
fn read_multiple_req_handles() {
    let AttPdu::ReadMultipleReq { handles } = roundtrip(&[0x0E, 0x03, 0x00, 0x05, 0x00, 0x00, 0x01]) else {
        panic!("wrong variant")
    };
    assert_eq!(handles.iter().collect::<Vec<_>>(), vec![3, 5, 0x0100]);
    assert_eq!(handles.len(), 3);
}

// ---------------------------------------------------------------- errors

fn err(bytes: &[u8]) -> DecodeError {
    AttPdu::decode(bytes).expect_err("must not decode")
}

#[test]
fn empty_and_unknown() {
    assert_eq!(err(&[]), DecodeError::Truncated { what: "ATT PDU", need: 1, have: 0 });
    for code in [0x00u8, 0x14, 0x15, 0x1A, 0x1C, 0x1F, 0x22, 0x24, 0x53, 0x92, 0xFF] {
        assert_eq!(err(&[code, 0, 0]), DecodeError::Unknown { what: "ATT PDU", code: code.into() });
    }
}

#[test]
fn fixed_length_errors() {
    assert_eq!(err(&[0x0A, 0x03]), DecodeError::Truncated { what: "ATT_READ_REQ", need: 2, have: 1 });
    assert_eq!(err(&[0x0A, 0x03, 0x00, 0x00]), DecodeError::Trailing { what: "ATT_READ_REQ", extra: 1 });
    assert_eq!(err(&[0x13, 0x00]), DecodeError::Trailing { what: "ATT_WRITE_RSP", extra: 1 });
    assert_eq!(err(&[0x01, 0x0A, 0x01, 0x00]), DecodeError::Truncated { what: "ATT_ERROR_RSP", need: 1, have: 0 });
    assert!(matches!(err(&[0x12, 0x01]), DecodeError::Truncated { .. }));
    assert!(matches!(err(&[0x1B]), DecodeError::Truncated { .. }));
}

#[test]
fn execute_write_flags() {
    assert_eq!(roundtrip(&[0x18, 0x00]), AttPdu::ExecuteWriteReq { flags: ExecuteWriteFlags::Cancel });
    assert!(matches!(err(&[0x18, 0x02]), DecodeError::Invalid { what: "ATT_EXECUTE_WRITE_REQ", .. }));
    assert!(matches!(err(&[0x18, 0xFF]), DecodeError::Invalid { .. }));
    assert!(matches!(err(&[0x18]), DecodeError::Truncated { .. }));
}

#[test]
fn bad_list_lengths() {
    // Find Information Response: reserved format, partial pair, no pairs.
    assert!(matches!(err(&[0x05, 0x03, 1, 0, 2, 0]), DecodeError::Invalid { .. }));
    assert_eq!(
        err(&[0x05, 0x01, 1, 0, 2, 0, 3]),
        DecodeError::Truncated { what: "ATT_FIND_INFORMATION_RSP", need: 8, have: 5 }
    );
    assert!(matches!(err(&[0x05, 0x01]), DecodeError::Truncated { need: 4, have: 0, .. }));
    assert!(matches!(err(&[0x05, 0x02, 1, 0, 2, 0]), DecodeError::Truncated { need: 18, .. }));
    // Find By Type Value Response.
    assert!(matches!(err(&[0x07]), DecodeError::Truncated { .. }));
    assert!(matches!(err(&[0x07, 1, 0, 2, 0, 3]), DecodeError::Truncated { need: 8, have: 5, .. }));
    // Read By Type Response: length too small, data not a multiple, empty.
    assert!(matches!(err(&[0x09, 0x01, 1]), DecodeError::Invalid { .. }));
    assert!(matches!(err(&[0x09, 0x04, 1, 0, 2, 0, 3, 0]), DecodeError::Truncated { need: 8, have: 6, .. }));
    assert!(matches!(err(&[0x09, 0x04]), DecodeError::Truncated { .. }));
    assert!(matches!(err(&[0x09]), DecodeError::Truncated { .. }));
    // Read By Group Type Response.
    assert!(matches!(err(&[0x11, 0x03, 1, 0, 2]), DecodeError::Invalid { .. }));
    assert!(matches!(err(&[0x11, 0x06, 1, 0, 2, 0, 3]), DecodeError::Truncated { .. }));
    // Read Multiple (Variable) Request: one handle, odd length.
    assert!(matches!(err(&[0x0E, 1, 0]), DecodeError::Invalid { .. }));
    assert!(matches!(err(&[0x0E, 1, 0, 2]), DecodeError::Truncated { .. }));
    assert!(matches!(err(&[0x20]), DecodeError::Invalid { .. }));
    // Read By (Group) Type Request with a 4-byte or 1-byte type.
    assert!(matches!(err(&[0x08, 1, 0, 2, 0, 1, 2, 3, 4]), DecodeError::Invalid { .. }));
    assert!(matches!(err(&[0x10, 1, 0, 2, 0, 1]), DecodeError::Truncated { .. }));
    // Signed Write Command without a whole signature.
    assert!(matches!(err(&[0xD2, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]), DecodeError::Truncated { .. }));
    // Read Multiple Variable Response with fewer than 2 bytes.
    assert!(matches!(err(&[0x21, 0x01]), DecodeError::Truncated { .. }));
    // Multiple Handle Value Notification: empty, cut header, cut value.
    assert!(matches!(err(&[0x23]), DecodeError::Truncated { .. }));
    assert!(matches!(err(&[0x23, 1, 0, 1]), DecodeError::Truncated { .. }));
    assert!(matches!(err(&[0x23, 1, 0, 2, 0, 0xAA]), DecodeError::Truncated { need: 6, have: 5, .. }));
}

// ---------------------------------------------------------------- opcodes and error codes

#[test]
fn opcode_classification() {
    assert!(is_command(opcode::WRITE_CMD));
    assert!(is_command(opcode::SIGNED_WRITE_CMD));
    assert!(is_signed(opcode::SIGNED_WRITE_CMD));
    assert!(!is_command(opcode::WRITE_REQ));
    assert!(is_request(opcode::READ_MULTIPLE_VARIABLE_REQ));
    assert!(!is_request(opcode::HANDLE_VALUE_IND));
    assert!(is_response(opcode::ERROR_RSP));
    assert!(!is_response(opcode::HANDLE_VALUE_CFM));
    assert_eq!(expected_response(opcode::READ_REQ), Some(opcode::READ_RSP));
    assert_eq!(expected_response(opcode::EXCHANGE_MTU_REQ), Some(opcode::EXCHANGE_MTU_RSP));
    assert_eq!(expected_response(opcode::READ_MULTIPLE_VARIABLE_REQ), Some(opcode::READ_MULTIPLE_VARIABLE_RSP));
    assert_eq!(expected_response(opcode::HANDLE_VALUE_IND), Some(opcode::HANDLE_VALUE_CFM));
    assert_eq!(expected_response(opcode::WRITE_CMD), None);
    assert_eq!(expected_response(opcode::READ_RSP), None);
    assert_eq!(expected_response(0x14), None);
    for op in 0..=255u8 {
        if let Some(PduKind::Request) = opcode::kind(op) {
            let rsp = expected_response(op).unwrap();
            assert!(is_response(rsp), "{op:#04x}");
        }
        assert_eq!(opcode::kind(op).is_some(), opcode::name(op).is_some());
    }
}

#[test]
fn error_code_names() {
    assert_eq!(ErrorCode::INVALID_HANDLE.name(), "Invalid Handle");
    assert_eq!(ErrorCode(0x13).name(), "Value Not Allowed");
    assert_eq!(ErrorCode(0x85).name(), "Application Error");
    assert!(ErrorCode(0x85).is_application());
    assert_eq!(ErrorCode(0xE5).name(), "Common Profile and Service Error");
    assert!(ErrorCode::OUT_OF_RANGE.is_common_profile());
    assert_eq!(ErrorCode(0x14).name(), "Reserved");
    assert_eq!(ErrorCode(0x00).name(), "Reserved");
    assert_eq!(alloc::format!("{}", ErrorCode::ATTRIBUTE_NOT_FOUND), "Attribute Not Found (0x0a)");
    // Unknown codes survive a decode/encode round trip.
    assert_eq!(
        roundtrip(&[0x01, 0x0A, 0x01, 0x00, 0xA7]),
        AttPdu::ErrorRsp { request_opcode: 0x0A, handle: 1, error: ErrorCode(0xA7) }
    );
}

// ---------------------------------------------------------------- builders

#[test]
fn builder_read_by_type_fills_mtu() {
    let mut out = Vec::with_capacity(64);
    out.push(0xEE); // existing content is left alone
    let mut b = ListBuilder::new(ListKind::ReadByTypeRsp, 23, &mut out);
    // Characteristic declarations: properties, value handle, 16-bit UUID.
    assert!(b.push_attribute(2, &[0x02, 0x03, 0x00, 0x00, 0x2A]));
    assert!(b.push_attribute(4, &[0x02, 0x05, 0x00, 0x01, 0x2A]));
    assert!(!b.push_attribute(6, &[0x02; 19]), "different length");
    assert!(b.push_attribute(6, &[0x0A, 0x07, 0x00, 0x04, 0x2A]));
    assert_eq!(b.remaining(), 0);
    assert!(!b.push_attribute(8, &[0x02, 0x09, 0x00, 0x05, 0x2A]), "full");
    assert_eq!(b.finish(), Some(23));
    assert_eq!(out[0], 0xEE);
    let AttPdu::ReadByTypeRsp { data } = roundtrip(&out[1..]) else { panic!("wrong variant") };
    assert_eq!(data.length(), 7);
    assert_eq!(data.iter().map(|(h, _)| h).collect::<Vec<_>>(), vec![2, 4, 6]);
}

#[test]
fn builder_truncates_long_values() {
    let mut out = Vec::new();
    let mut b = ListBuilder::new(ListKind::ReadByTypeRsp, 23, &mut out);
    assert!(b.push_attribute(9, &[0x55; 40]));
    assert_eq!(b.finish(), Some(23));
    let AttPdu::ReadByTypeRsp { data } = roundtrip(&out) else { panic!("wrong variant") };
    assert_eq!(data.value_len(), 19);

    let mut out = Vec::new();
    let mut b = ListBuilder::new(ListKind::ReadByGroupTypeRsp, 517, &mut out);
    assert!(b.push_group(1, 5, &[0x66; 300]));
    assert!(b.finish().is_some());
    let AttPdu::ReadByGroupTypeRsp { data } = roundtrip(&out) else { panic!("wrong variant") };
    assert_eq!(data.value_len(), 251);
    assert_eq!(data.length(), 255);
}

#[test]
fn builder_find_information_keeps_one_format() {
    let mut out = Vec::new();
    let mut b = ListBuilder::new(ListKind::FindInformationRsp, 23, &mut out);
    // A 128-bit UUID on the Base UUID is sent in its 16-bit form.
    assert!(b.push_information(3, Uuid::U128(Uuid::U16(0x2902).to_u128_le())));
    assert!(!b.push_information(4, Uuid::U128(GAP_UUID128)));
    assert!(b.push_information(5, Uuid::U16(0x2901)));
    assert!(!b.push_handle(7), "wrong record kind");
    assert_eq!(b.finish(), Some(10));
    assert_eq!(out, [0x05, 0x01, 0x03, 0x00, 0x02, 0x29, 0x05, 0x00, 0x01, 0x29]);
}

#[test]
fn builder_empty_list_is_removed() {
    let mut out = vec![1, 2, 3];
    let b = ListBuilder::new(ListKind::FindByTypeValueRsp, 23, &mut out);
    assert_eq!(b.finish(), None);
    assert_eq!(out, [1, 2, 3]);
    let mut b = ListBuilder::new(ListKind::ReadMultipleReq, 23, &mut out);
    assert!(b.push_handle(1));
    assert_eq!(b.finish(), None, "one handle is not enough");
    assert_eq!(out, [1, 2, 3]);
    let mut b = ListBuilder::new(ListKind::ReadMultipleVariableReq, 23, &mut out);
    assert!(b.push_handle(1));
    assert!(b.push_handle(2));
    assert_eq!(b.finish(), Some(5));
    assert_eq!(out, [1, 2, 3, 0x20, 1, 0, 2, 0]);
}

#[test]
fn builder_read_multiple_variable_cuts_at_mtu() {
    let mut out = Vec::new();
    let mut b = ListBuilder::new(ListKind::ReadMultipleVariableRsp, 23, &mut out);
    assert!(b.push_value(&[0xA1; 10]));
    assert!(!b.push_value(&[0xB2; 10]));
    assert!(!b.push_value(&[0xC3; 1]), "full after a cut");
    assert_eq!(b.records(), 2);
    assert_eq!(b.finish(), Some(23));
    let AttPdu::ReadMultipleVariableRsp { data } = roundtrip(&out) else { panic!("wrong variant") };
    assert!(data.is_truncated());
    assert_eq!(data.iter().collect::<Vec<_>>(), vec![&[0xA1; 10][..], &[0xB2; 8][..]]);
    assert_eq!(&out[13..15], &[10, 0], "the length field keeps the full length");
}

#[test]
fn builder_multiple_notifications() {
    let mut out = Vec::new();
    let mut b = ListBuilder::new(ListKind::MultipleHandleValueNtf, 23, &mut out);
    assert!(b.push_handle_value(3, &[1, 2, 3]));
    assert!(!b.push_handle_value(4, &[0; 12]), "4 + 12 does not fit in 15 bytes");
    assert!(b.push_handle_value(4, &[9; 11]));
    assert_eq!(b.finish(), Some(23));
    let AttPdu::MultipleHandleValueNtf { data } = roundtrip(&out) else { panic!("wrong variant") };
    assert_eq!(data.iter().map(|(h, l, _)| (h, l)).collect::<Vec<_>>(), vec![(3, 3), (4, 11)]);
}

#[test]
fn builder_does_not_allocate_with_capacity() {
    let mut out = Vec::with_capacity(23);
    let ptr = out.as_ptr();
    let mut b = ListBuilder::new(ListKind::FindByTypeValueRsp, 23, &mut out);
    while b.push_handles_information(1, 2) {}
    assert_eq!(b.records(), 5);
    assert_eq!(b.finish(), Some(21));
    assert_eq!(out.as_ptr(), ptr);
    let pdu = AttPdu::ReadRsp { value: &[7; 22] };
    out.clear();
    pdu.encode(&mut out);
    assert_eq!(out.as_ptr(), ptr);
}

// ---------------------------------------------------------------- property tests

/// Owned mirror of a PDU: list parameters are kept as raw wire bytes plus the records expected
/// from iterating them.
#[derive(Debug, Clone)]
enum Owned {
    Error(u8, u16, u8),
    MtuReq(u16),
    MtuRsp(u16),
    FindInfoReq(u16, u16),
    FindInfoRsp(InformationFormat, Vec<u8>, Vec<(u16, Uuid)>),
    FindByTypeValueReq(u16, u16, u16, Vec<u8>),
    FindByTypeValueRsp(Vec<u8>, Vec<(u16, u16)>),
    ReadByTypeReq(u16, u16, Uuid),
    ReadByTypeRsp(u8, Vec<u8>, Vec<(u16, Vec<u8>)>),
    Read(u16),
    ReadRsp(Vec<u8>),
    ReadBlob(u16, u16),
    ReadBlobRsp(Vec<u8>),
    ReadMultiple(Vec<u8>, Vec<u16>),
    ReadMultipleRsp(Vec<u8>),
    ReadByGroupReq(u16, u16, Uuid),
    ReadByGroupRsp(u8, Vec<u8>, Vec<(u16, u16, Vec<u8>)>),
    Write(u16, Vec<u8>),
    WriteRsp,
    WriteCmd(u16, Vec<u8>),
    SignedWrite(u16, Vec<u8>, [u8; 12]),
    PrepareReq(u16, u16, Vec<u8>),
    PrepareRsp(u16, u16, Vec<u8>),
    Execute(ExecuteWriteFlags),
    ExecuteRsp,
    Ntf(u16, Vec<u8>),
    Ind(u16, Vec<u8>),
    Cfm,
    ReadMultipleVar(Vec<u8>, Vec<u16>),
    ReadMultipleVarRsp(Vec<u8>, Vec<Vec<u8>>),
    MultiNtf(Vec<u8>, Vec<(u16, Vec<u8>)>),
}

impl Owned {
    fn pdu(&self) -> AttPdu<'_> {
        match self {
            Owned::Error(op, h, e) => AttPdu::ErrorRsp { request_opcode: *op, handle: *h, error: ErrorCode(*e) },
            Owned::MtuReq(m) => AttPdu::ExchangeMtuReq { client_rx_mtu: *m },
            Owned::MtuRsp(m) => AttPdu::ExchangeMtuRsp { server_rx_mtu: *m },
            Owned::FindInfoReq(s, e) => AttPdu::FindInformationReq { start: *s, end: *e },
            Owned::FindInfoRsp(f, raw, _) => {
                AttPdu::FindInformationRsp { data: InformationData::new(*f, raw).unwrap() }
            }
            Owned::FindByTypeValueReq(s, e, t, v) => {
                AttPdu::FindByTypeValueReq { start: *s, end: *e, attribute_type: *t, value: v }
            }
            Owned::FindByTypeValueRsp(raw, _) => {
                AttPdu::FindByTypeValueRsp { data: HandlesInformationList::new(raw).unwrap() }
            }
            Owned::ReadByTypeReq(s, e, t) => AttPdu::ReadByTypeReq { start: *s, end: *e, attribute_type: *t },
            Owned::ReadByTypeRsp(l, raw, _) => AttPdu::ReadByTypeRsp { data: AttributeDataList::new(*l, raw).unwrap() },
            Owned::Read(h) => AttPdu::ReadReq { handle: *h },
            Owned::ReadRsp(v) => AttPdu::ReadRsp { value: v },
            Owned::ReadBlob(h, o) => AttPdu::ReadBlobReq { handle: *h, offset: *o },
            Owned::ReadBlobRsp(v) => AttPdu::ReadBlobRsp { value: v },
            Owned::ReadMultiple(raw, _) => AttPdu::ReadMultipleReq { handles: HandleList::new(raw).unwrap() },
            Owned::ReadMultipleRsp(v) => AttPdu::ReadMultipleRsp { values: v },
            Owned::ReadByGroupReq(s, e, t) => AttPdu::ReadByGroupTypeReq { start: *s, end: *e, group_type: *t },
            Owned::ReadByGroupRsp(l, raw, _) => {
                AttPdu::ReadByGroupTypeRsp { data: GroupDataList::new(*l, raw).unwrap() }
            }
            Owned::Write(h, v) => AttPdu::WriteReq { handle: *h, value: v },
            Owned::WriteRsp => AttPdu::WriteRsp,
            Owned::WriteCmd(h, v) => AttPdu::WriteCmd { handle: *h, value: v },
            Owned::SignedWrite(h, v, s) => AttPdu::SignedWriteCmd { handle: *h, value: v, signature: *s },
            Owned::PrepareReq(h, o, v) => AttPdu::PrepareWriteReq { handle: *h, offset: *o, value: v },
            Owned::PrepareRsp(h, o, v) => AttPdu::PrepareWriteRsp { handle: *h, offset: *o, value: v },
            Owned::Execute(f) => AttPdu::ExecuteWriteReq { flags: *f },
            Owned::ExecuteRsp => AttPdu::ExecuteWriteRsp,
            Owned::Ntf(h, v) => AttPdu::HandleValueNtf { handle: *h, value: v },
            Owned::Ind(h, v) => AttPdu::HandleValueInd { handle: *h, value: v },
            Owned::Cfm => AttPdu::HandleValueCfm,
            Owned::ReadMultipleVar(raw, _) => {
                AttPdu::ReadMultipleVariableReq { handles: HandleList::new(raw).unwrap() }
            }
            Owned::ReadMultipleVarRsp(raw, _) => {
                AttPdu::ReadMultipleVariableRsp { data: LengthValueList::new(raw).unwrap() }
            }
            Owned::MultiNtf(raw, _) => AttPdu::MultipleHandleValueNtf { data: HandleValueList::new(raw).unwrap() },
        }
    }

    /// Checks that iterating the decoded lists gives back the generated records.
    fn check_records(&self, pdu: &AttPdu<'_>) {
        match (self, *pdu) {
            (Owned::FindInfoRsp(_, _, want), AttPdu::FindInformationRsp { data }) => {
                assert_eq!(&data.iter().collect::<Vec<_>>(), want);
                assert_eq!(data.len(), want.len());
            }
            (Owned::FindByTypeValueRsp(_, want), AttPdu::FindByTypeValueRsp { data }) => {
                assert_eq!(&data.iter().collect::<Vec<_>>(), want);
            }
            (Owned::ReadByTypeRsp(_, _, want), AttPdu::ReadByTypeRsp { data }) => {
                let got: Vec<_> = data.iter().map(|(h, v)| (h, v.to_vec())).collect();
                assert_eq!(&got, want);
            }
            (Owned::ReadByGroupRsp(_, _, want), AttPdu::ReadByGroupTypeRsp { data }) => {
                let got: Vec<_> = data.iter().map(|(h, e, v)| (h, e, v.to_vec())).collect();
                assert_eq!(&got, want);
            }
            (Owned::ReadMultiple(_, want), AttPdu::ReadMultipleReq { handles })
            | (Owned::ReadMultipleVar(_, want), AttPdu::ReadMultipleVariableReq { handles }) => {
                assert_eq!(&handles.iter().collect::<Vec<_>>(), want);
            }
            (Owned::ReadMultipleVarRsp(_, want), AttPdu::ReadMultipleVariableRsp { data }) => {
                let got: Vec<_> = data.iter().map(<[u8]>::to_vec).collect();
                assert_eq!(&got, want);
            }
            (Owned::MultiNtf(_, want), AttPdu::MultipleHandleValueNtf { data }) => {
                let got: Vec<_> = data
                    .iter()
                    .map(|(h, l, v)| {
                        assert_eq!(usize::from(l), v.len());
                        (h, v.to_vec())
                    })
                    .collect();
                assert_eq!(&got, want);
            }
            _ => {}
        }
    }
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..48)
}

fn att_type() -> impl Strategy<Value = Uuid> {
    prop_oneof![any::<u16>().prop_map(Uuid::U16), any::<[u8; 16]>().prop_map(Uuid::U128)]
}

fn handles() -> impl Strategy<Value = (Vec<u8>, Vec<u16>)> {
    prop::collection::vec(any::<u16>(), 2..16).prop_map(|hs| (hs.iter().flat_map(|h| h.to_le_bytes()).collect(), hs))
}

fn find_info_rsp() -> impl Strategy<Value = Owned> {
    let pairs16 = prop::collection::vec((any::<u16>(), any::<u16>()), 1..8).prop_map(|ps| {
        let raw = ps.iter().flat_map(|(h, u)| [h.to_le_bytes(), u.to_le_bytes()].concat()).collect();
        let want = ps.iter().map(|&(h, u)| (h, Uuid::U16(u))).collect();
        Owned::FindInfoRsp(InformationFormat::Uuid16, raw, want)
    });
    let pairs128 = prop::collection::vec((any::<u16>(), any::<[u8; 16]>()), 1..4).prop_map(|ps| {
        let raw = ps.iter().flat_map(|(h, u)| [&h.to_le_bytes()[..], &u[..]].concat()).collect();
        let want = ps.iter().map(|&(h, u)| (h, Uuid::U128(u))).collect();
        Owned::FindInfoRsp(InformationFormat::Uuid128, raw, want)
    });
    prop_oneof![pairs16, pairs128]
}

fn read_by_type_rsp() -> impl Strategy<Value = Owned> {
    (0usize..24, 1usize..6)
        .prop_flat_map(|(vlen, n)| {
            prop::collection::vec((any::<u16>(), prop::collection::vec(any::<u8>(), vlen)), n)
                .prop_map(move |recs| (vlen, recs))
        })
        .prop_map(|(vlen, recs)| {
            let raw = recs.iter().flat_map(|(h, v)| [&h.to_le_bytes()[..], v].concat()).collect();
            Owned::ReadByTypeRsp((vlen + 2) as u8, raw, recs)
        })
}

fn read_by_group_rsp() -> impl Strategy<Value = Owned> {
    (0usize..24, 1usize..6)
        .prop_flat_map(|(vlen, n)| {
            let rec = (any::<u16>(), any::<u16>(), prop::collection::vec(any::<u8>(), vlen));
            prop::collection::vec(rec, n).prop_map(move |recs| (vlen, recs))
        })
        .prop_map(|(vlen, recs)| {
            let raw =
                recs.iter().flat_map(|(h, e, v)| [&h.to_le_bytes()[..], &e.to_le_bytes()[..], v].concat()).collect();
            Owned::ReadByGroupRsp((vlen + 4) as u8, raw, recs)
        })
}

/// Length-value tuples cut at an arbitrary point at or after the first length field, with the
/// values a reader should see computed independently of the iterator.
fn read_multiple_var_rsp() -> impl Strategy<Value = Owned> {
    (prop::collection::vec(value(), 1..6), any::<prop::sample::Index>()).prop_map(|(values, cut)| {
        let full: Vec<u8> = values.iter().flat_map(|v| [&(v.len() as u16).to_le_bytes()[..], v].concat()).collect();
        let keep = 2 + cut.index(full.len() - 1);
        let mut want = Vec::new();
        let mut off = 0;
        for v in &values {
            if off + 2 > keep {
                break;
            }
            let avail = keep - off - 2;
            want.push(v[..v.len().min(avail)].to_vec());
            off += 2 + v.len();
        }
        Owned::ReadMultipleVarRsp(full[..keep].to_vec(), want)
    })
}

fn multi_ntf() -> impl Strategy<Value = Owned> {
    prop::collection::vec((any::<u16>(), value()), 1..6).prop_map(|recs| {
        let raw = recs
            .iter()
            .flat_map(|(h, v)| [&h.to_le_bytes()[..], &(v.len() as u16).to_le_bytes()[..], v].concat())
            .collect();
        Owned::MultiNtf(raw, recs)
    })
}

fn owned_pdu() -> impl Strategy<Value = Owned> {
    let h = any::<u16>;
    let arms: Vec<BoxedStrategy<Owned>> = vec![
        (any::<u8>(), h(), any::<u8>()).prop_map(|(o, h, e)| Owned::Error(o, h, e)).boxed(),
        h().prop_map(Owned::MtuReq).boxed(),
        h().prop_map(Owned::MtuRsp).boxed(),
        (h(), h()).prop_map(|(s, e)| Owned::FindInfoReq(s, e)).boxed(),
        find_info_rsp().boxed(),
        (h(), h(), h(), value()).prop_map(|(s, e, t, v)| Owned::FindByTypeValueReq(s, e, t, v)).boxed(),
        prop::collection::vec((h(), h()), 1..8)
            .prop_map(|ps| {
                let raw = ps.iter().flat_map(|(a, b)| [a.to_le_bytes(), b.to_le_bytes()].concat()).collect();
                Owned::FindByTypeValueRsp(raw, ps)
            })
            .boxed(),
        (h(), h(), att_type()).prop_map(|(s, e, t)| Owned::ReadByTypeReq(s, e, t)).boxed(),
        read_by_type_rsp().boxed(),
        h().prop_map(Owned::Read).boxed(),
        value().prop_map(Owned::ReadRsp).boxed(),
        (h(), h()).prop_map(|(a, o)| Owned::ReadBlob(a, o)).boxed(),
        value().prop_map(Owned::ReadBlobRsp).boxed(),
        handles().prop_map(|(raw, hs)| Owned::ReadMultiple(raw, hs)).boxed(),
        value().prop_map(Owned::ReadMultipleRsp).boxed(),
        (h(), h(), att_type()).prop_map(|(s, e, t)| Owned::ReadByGroupReq(s, e, t)).boxed(),
        read_by_group_rsp().boxed(),
        (h(), value()).prop_map(|(a, v)| Owned::Write(a, v)).boxed(),
        Just(Owned::WriteRsp).boxed(),
        (h(), value()).prop_map(|(a, v)| Owned::WriteCmd(a, v)).boxed(),
        (h(), value(), any::<[u8; 12]>()).prop_map(|(a, v, s)| Owned::SignedWrite(a, v, s)).boxed(),
        (h(), h(), value()).prop_map(|(a, o, v)| Owned::PrepareReq(a, o, v)).boxed(),
        (h(), h(), value()).prop_map(|(a, o, v)| Owned::PrepareRsp(a, o, v)).boxed(),
        prop_oneof![Just(ExecuteWriteFlags::Cancel), Just(ExecuteWriteFlags::Write)].prop_map(Owned::Execute).boxed(),
        Just(Owned::ExecuteRsp).boxed(),
        (h(), value()).prop_map(|(a, v)| Owned::Ntf(a, v)).boxed(),
        (h(), value()).prop_map(|(a, v)| Owned::Ind(a, v)).boxed(),
        Just(Owned::Cfm).boxed(),
        handles().prop_map(|(raw, hs)| Owned::ReadMultipleVar(raw, hs)).boxed(),
        read_multiple_var_rsp().boxed(),
        multi_ntf().boxed(),
    ];
    assert_eq!(arms.len(), 31, "one arm per PDU");
    Union::new(arms)
}

const KNOWN_OPCODES: [u8; 31] = [
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11, 0x12, 0x13,
    0x16, 0x17, 0x18, 0x19, 0x1B, 0x1D, 0x1E, 0x20, 0x21, 0x23, 0x52, 0xD2,
];

/// Decoding must never panic; whatever decodes re-encodes to the same bytes, and its lists
/// iterate without panicking.
fn check_arbitrary(bytes: &[u8]) {
    if let Ok(pdu) = AttPdu::decode(bytes) {
        assert_eq!(pdu.to_vec(), bytes);
        assert_eq!(pdu.encoded_len(), bytes.len());
        assert_eq!(Some(pdu.opcode()), bytes.first().copied());
        match pdu {
            AttPdu::FindInformationRsp { data } => assert_eq!(data.iter().count(), data.len()),
            AttPdu::FindByTypeValueRsp { data } => assert_eq!(data.iter().count(), data.len()),
            AttPdu::ReadByTypeRsp { data } => assert_eq!(data.iter().count(), data.len()),
            AttPdu::ReadByGroupTypeRsp { data } => assert_eq!(data.iter().count(), data.len()),
            AttPdu::ReadMultipleReq { handles } | AttPdu::ReadMultipleVariableReq { handles } => {
                assert_eq!(handles.iter().count(), handles.len())
            }
            AttPdu::ReadMultipleVariableRsp { data } => {
                let total: usize = data.iter().map(|v| v.len() + 2).sum();
                assert!(total >= data.as_bytes().len().saturating_sub(1));
                let _ = data.is_truncated();
            }
            AttPdu::MultipleHandleValueNtf { data } => {
                let total: usize = data.iter().map(|(_, _, v)| v.len() + 4).sum();
                assert_eq!(total, data.as_bytes().len());
            }
            _ => {}
        }
    }
}

proptest! {
    #[test]
    fn prop_roundtrip_every_pdu(owned in owned_pdu()) {
        let pdu = owned.pdu();
        let mut bytes = Vec::new();
        pdu.encode(&mut bytes);
        prop_assert_eq!(pdu.encoded_len(), bytes.len());
        prop_assert_eq!(bytes[0], pdu.opcode());
        let decoded = AttPdu::decode(&bytes);
        prop_assert_eq!(decoded, Ok(pdu));
        owned.check_records(&pdu);
    }

    #[test]
    fn prop_decode_arbitrary_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        check_arbitrary(&bytes);
    }

    #[test]
    fn prop_decode_known_opcode_never_panics(
        op in prop::sample::select(KNOWN_OPCODES.to_vec()),
        rest in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut bytes = vec![op];
        bytes.extend_from_slice(&rest);
        check_arbitrary(&bytes);
    }

    #[test]
    fn prop_builder_output_decodes(
        mtu in 23u16..300,
        kind in prop::sample::select(vec![
            ListKind::FindInformationRsp,
            ListKind::FindByTypeValueRsp,
            ListKind::ReadByTypeRsp,
            ListKind::ReadByGroupTypeRsp,
            ListKind::ReadMultipleReq,
            ListKind::ReadMultipleVariableReq,
            ListKind::ReadMultipleVariableRsp,
            ListKind::MultipleHandleValueNtf,
        ]),
        recs in prop::collection::vec((any::<u16>(), any::<u16>(), att_type(), prop::collection::vec(any::<u8>(), 0..40)), 0..30),
    ) {
        let mut out = vec![0xAB];
        let mut b = ListBuilder::new(kind, mtu, &mut out);
        let mut pushed = 0;
        for (h, e, u, v) in &recs {
            let ok = match kind {
                ListKind::FindInformationRsp => b.push_information(*h, *u),
                ListKind::FindByTypeValueRsp => b.push_handles_information(*h, *e),
                ListKind::ReadByTypeRsp => b.push_attribute(*h, v),
                ListKind::ReadByGroupTypeRsp => b.push_group(*h, *e, v),
                ListKind::ReadMultipleReq | ListKind::ReadMultipleVariableReq => b.push_handle(*h),
                ListKind::ReadMultipleVariableRsp => b.push_value(v),
                ListKind::MultipleHandleValueNtf => b.push_handle_value(*h, v),
            };
            pushed += usize::from(ok);
            prop_assert!(b.len() <= usize::from(mtu));
        }
        let records = b.records();
        prop_assert!(records >= pushed);
        match b.finish() {
            None => prop_assert_eq!(&out, &vec![0xAB]),
            Some(n) => {
                prop_assert_eq!(n + 1, out.len());
                prop_assert!(n <= usize::from(mtu));
                let pdu = AttPdu::decode(&out[1..]);
                prop_assert!(pdu.is_ok(), "{:?}", pdu);
                let pdu = pdu.unwrap();
                prop_assert_eq!(pdu.opcode(), kind.opcode());
            }
        }
    }
}
