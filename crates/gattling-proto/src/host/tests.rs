//! Host state machine tests: the controller side is played by hand-built HCI packets.

use super::*;
use crate::hci::event::{AdvertisingReport, AdvertisingReports, ConnectionComplete};
use crate::hci::AclHeader;
use crate::hci::PacketBoundary;
use crate::l2cap::fragment;
use alloc::vec;

fn ev(e: Event<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    e.encode_h4(&mut out);
    out
}

fn complete(opcode: Opcode, num: u8, ret: &[u8]) -> Vec<u8> {
    ev(Event::CommandComplete { num_packets: num, opcode, return_params: ret })
}

fn connected(handle: u16, role: u8) -> Vec<u8> {
    ev(Event::Le(LeEvent::ConnectionComplete(ConnectionComplete {
        status: 0,
        handle,
        role,
        peer_address_type: 1,
        peer_address: crate::gap::BdAddr([handle as u8, 0, 0, 0, 0, 0xC0]),
        local_rpa: Default::default(),
        peer_rpa: Default::default(),
        interval: 24,
        latency: 0,
        supervision_timeout: 400,
        clock_accuracy: 0,
        subevent: 1,
    })))
}

fn acl(handle: u16, boundary: PacketBoundary, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    AclPacket { header: AclHeader { handle, boundary, broadcast: 0, len: data.len() as u16 }, data }
        .encode_h4(&mut out);
    out
}

fn l2cap_pdu(cid: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u16).to_le_bytes().to_vec();
    v.extend_from_slice(&cid.to_le_bytes());
    v.extend_from_slice(payload);
    v
}

struct Harness {
    host: Host,
    att: Vec<(ConnHandle, Vec<u8>)>,
}

impl Harness {
    fn new(acl_len: u16, acl_num: u16) -> Self {
        let mut host = Host::new(HostConfig::default());
        host.set_acl_buffers(acl_len, acl_num);
        Self { host, att: Vec::new() }
    }

    fn feed(&mut self, bytes: &[u8]) {
        let att = &mut self.att;
        self.host.receive(bytes, &mut |h, p| att.push((h, p.to_vec())));
    }

    fn sent(&mut self) -> Vec<Vec<u8>> {
        core::iter::from_fn(|| self.host.poll_transmit()).collect()
    }

    fn events(&mut self) -> Vec<HostEvent> {
        core::iter::from_fn(|| self.host.poll_event()).collect()
    }
}

#[test]
fn commands_wait_for_credits() {
    let mut h = Harness::new(27, 4);
    let a = h.host.send_command(&Command::Reset);
    let b = h.host.send_command(&Command::ReadBdAddr);
    let c = h.host.send_command(&Command::LeRand);
    assert_eq!(h.sent(), vec![vec![0x01, 0x03, 0x0c, 0x00]], "one credit at start");
    h.feed(&complete(Opcode::RESET, 2, &[0]));
    assert_eq!(h.sent().len(), 2, "two credits granted");
    h.feed(&complete(Opcode::LE_RAND, 0, &[0, 1, 2, 3, 4, 5, 6, 7, 8]));
    h.feed(&complete(Opcode::READ_BD_ADDR, 1, &[0, 1, 2, 3, 4, 5, 6]));
    let done: Vec<_> = h
        .events()
        .into_iter()
        .map(|e| match e {
            HostEvent::CommandDone { id, return_params, .. } => (id, return_params.len()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(done, vec![(a, 0), (c, 8), (b, 6)]);
}

#[test]
fn command_status_completes_commands_that_finish_later() {
    let mut h = Harness::new(27, 4);
    let id = h.host.send_command(&Command::LeCreateConnectionCancel);
    h.sent();
    h.feed(&ev(Event::CommandStatus { status: 0x0C, num_packets: 1, opcode: Opcode::LE_CREATE_CONNECTION_CANCEL }));
    assert_eq!(
        h.events(),
        vec![HostEvent::CommandDone {
            id,
            opcode: Opcode::LE_CREATE_CONNECTION_CANCEL,
            status: 0x0C,
            return_params: vec![]
        }]
    );
    h.feed(&complete(Opcode::RESET, 1, &[0]));
    assert_eq!(h.events(), vec![HostEvent::Dropped(Dropped::UnexpectedCompletion(Opcode::RESET))]);
}

#[test]
fn acl_credits_are_shared_round_robin_and_returned() {
    let mut h = Harness::new(27, 2);
    h.feed(&connected(1, 0));
    h.feed(&connected(2, 1));
    h.events();
    let big = vec![0xAB; 27 * 3 - 4];
    h.host.send_att(1, &big).unwrap();
    h.host.send_att(2, &big).unwrap();
    let handle_of = |p: &Vec<u8>| p[1] as u16 | ((p[2] as u16 & 0x0F) << 8);
    let first: Vec<_> = h.sent().iter().map(handle_of).collect();
    assert_eq!(first, vec![1, 2], "one buffer each, not both to the first link");
    assert_eq!(h.host.acl_free(), 0);
    h.feed(&ev(Event::NumberOfCompletedPackets(crate::hci::event::CompletedPackets::from_raw(&[
        1, 0, 1, 0, 2, 0, 1, 0,
    ]))));
    let second: Vec<_> = h.sent().iter().map(handle_of).collect();
    assert_eq!(second, vec![1, 2]);
    // Disconnecting link 1 returns its in-flight buffer; link 2 then gets it.
    h.feed(&ev(Event::DisconnectionComplete { status: 0, handle: 1, reason: 0x13 }));
    assert_eq!(h.events(), vec![HostEvent::Disconnected { handle: 1, reason: 0x13 }]);
    let third: Vec<_> = h.sent().iter().map(handle_of).collect();
    assert_eq!(third, vec![2]);
    assert_eq!(h.host.in_flight(2), Some(2));
}

#[test]
fn fragmented_att_pdu_reaches_the_callback() {
    let mut h = Harness::new(27, 4);
    h.feed(&connected(0x40, 1));
    h.events();
    let value: Vec<u8> = (0..200u8).collect();
    let pdu = l2cap_pdu(cid::ATT, &value);
    for (i, chunk) in pdu.chunks(27).enumerate() {
        let pb = if i == 0 { PacketBoundary::FirstFlushable } else { PacketBoundary::Continuing };
        h.feed(&acl(0x40, pb, chunk));
    }
    assert_eq!(h.att, vec![(0x40, value)]);
    assert!(h.events().is_empty());
}

/// `receive_answering`: an answer written by the handler goes out on the PDU's link as
/// `send_att` would send it (one packet when it fits, fragments when it does not), in the order
/// the requests came, with one chunk holding several packets and a part packet.
#[test]
fn answers_given_while_receiving_go_out_on_the_same_link() {
    let mut h = Harness::new(27, 8);
    h.feed(&connected(0x40, 1));
    h.feed(&connected(0x41, 1));
    h.events();
    let mut input = acl(0x40, PacketBoundary::FirstFlushable, &l2cap_pdu(cid::ATT, &[0x0a, 0x03, 0x00]));
    input.extend(acl(0x41, PacketBoundary::FirstFlushable, &l2cap_pdu(cid::ATT, &[0x0a, 0x05, 0x00])));
    let third = acl(0x40, PacketBoundary::FirstFlushable, &l2cap_pdu(cid::ATT, &[0x52, 0x03, 0x00, 0xEE]));
    input.extend_from_slice(&third[..4]);
    let long: Vec<u8> = core::iter::once(0x0b).chain(0..40u8).collect();
    let mut seen = Vec::new();
    let mut answer_for = |handle: ConnHandle, pdu: &[u8], answer: &mut Vec<u8>| {
        assert!(answer.is_empty(), "the answer buffer is handed over empty");
        seen.push((handle, pdu.to_vec()));
        match pdu.first() {
            // A Write Command gets no answer.
            Some(0x52) => false,
            _ if handle == 0x41 => {
                answer.extend_from_slice(&long);
                true
            }
            _ => {
                answer.extend_from_slice(&[0x0b, 0xAA]);
                true
            }
        }
    };
    h.host.receive_answering(&input, &mut answer_for);
    h.host.receive_answering(&third[4..], &mut answer_for);
    assert_eq!(
        seen,
        vec![(0x40, vec![0x0a, 0x03, 0x00]), (0x41, vec![0x0a, 0x05, 0x00]), (0x40, vec![0x52, 0x03, 0x00, 0xEE])]
    );
    let mut want = Vec::new();
    fragment(0x40, cid::ATT, &[0x0b, 0xAA], 27, |p| want.push(p));
    fragment(0x41, cid::ATT, &long, 27, |p| want.push(p));
    assert_eq!(want.len(), 3, "the long answer takes two fragments");
    assert_eq!(h.sent(), want);
    assert_eq!((h.host.in_flight(0x40), h.host.in_flight(0x41)), (Some(1), Some(2)));
    assert!(h.events().is_empty());
}

#[test]
fn bad_acl_is_dropped_and_reported() {
    let mut h = Harness::new(27, 4);
    h.feed(&connected(1, 1));
    h.events();
    h.feed(&acl(9, PacketBoundary::FirstFlushable, &l2cap_pdu(cid::ATT, &[1])));
    h.feed(&acl(1, PacketBoundary::FirstFlushable, &l2cap_pdu(0x0044, &[1])));
    h.feed(&acl(1, PacketBoundary::Continuing, &[1, 2, 3]));
    let mut oversized = l2cap_pdu(cid::ATT, &[0; 20]);
    oversized[..2].copy_from_slice(&600u16.to_le_bytes());
    h.feed(&acl(1, PacketBoundary::FirstFlushable, &oversized));
    assert_eq!(
        h.events(),
        vec![
            HostEvent::Dropped(Dropped::UnknownHandle(9)),
            HostEvent::Dropped(Dropped::UnknownChannel { handle: 1, cid: 0x0044 }),
            HostEvent::Dropped(Dropped::Reassembly { handle: 1, error: ReassemblyError::UnexpectedContinuation }),
            HostEvent::Dropped(Dropped::Reassembly {
                handle: 1,
                error: ReassemblyError::TooLong { len: 604, max: 521 }
            }),
        ]
    );
    assert!(h.att.is_empty());
}

#[test]
fn garbage_from_the_controller_is_reported_not_fatal() {
    let mut h = Harness::new(27, 4);
    h.feed(&[0x07, 0x01, 0x02]);
    h.feed(&[0x04, 0x05, 0x01, 0x00]);
    h.feed(&[0x04, 0xF0, 0x01, 0x00]);
    let evs = h.events();
    assert!(matches!(evs[0], HostEvent::Dropped(Dropped::Malformed(DecodeError::Unknown { code: 7, .. }))));
    assert!(matches!(evs[1], HostEvent::Dropped(Dropped::Malformed(_))));
    assert_eq!(evs[2], HostEvent::Dropped(Dropped::UnknownEvent { code: 0xF0, subevent: None }));
}

fn signaling_reply(h: &mut Harness) -> Vec<Vec<u8>> {
    h.sent().into_iter().collect()
}

#[test]
fn central_accepts_parameter_update_request_and_updates_link() {
    let mut h = Harness::new(27, 4);
    h.feed(&connected(1, 0));
    h.sent();
    let req = [0x12, 0x05, 0x08, 0x00, 0x10, 0x00, 0x20, 0x00, 0x00, 0x00, 0x90, 0x01];
    h.feed(&acl(1, PacketBoundary::FirstFlushable, &l2cap_pdu(cid::LE_SIGNALING, &req)));
    let out = signaling_reply(&mut h);
    // L2CAP response (accepted) on CID 5, then LE Connection Update.
    assert_eq!(out[0][5..], [0x06, 0x00, 0x05, 0x00, 0x13, 0x05, 0x02, 0x00, 0x00, 0x00]);
    assert_eq!(out[1][..3], [0x01, 0x13, 0x20]);
    // The host's own LE Connection Update is not reported as a completion of an app command.
    h.events();
    h.feed(&ev(Event::CommandStatus { status: 0, num_packets: 1, opcode: Opcode::LE_CONNECTION_UPDATE }));
    assert!(h.events().is_empty());
}

#[test]
fn peripheral_rejects_parameter_update_request_and_unknown_commands() {
    let mut h = Harness::new(27, 4);
    h.feed(&connected(1, 1));
    h.sent();
    let req = [0x12, 0x05, 0x08, 0x00, 0x10, 0x00, 0x20, 0x00, 0x00, 0x00, 0x90, 0x01];
    h.feed(&acl(1, PacketBoundary::FirstFlushable, &l2cap_pdu(cid::LE_SIGNALING, &req)));
    h.feed(&acl(1, PacketBoundary::FirstFlushable, &l2cap_pdu(cid::LE_SIGNALING, &[0x77, 0x09, 0x00, 0x00])));
    let out = signaling_reply(&mut h);
    assert_eq!(out[0][9..], [0x01, 0x05, 0x02, 0x00, 0x00, 0x00]);
    assert_eq!(out[1][9..], [0x01, 0x09, 0x02, 0x00, 0x00, 0x00]);
}

#[test]
fn pairing_request_gets_pairing_not_supported() {
    let mut h = Harness::new(27, 4);
    h.feed(&connected(1, 1));
    h.sent();
    h.events();
    h.feed(&acl(1, PacketBoundary::FirstFlushable, &l2cap_pdu(cid::SMP, &[0x01, 0x03, 0x00, 0x01, 0x10, 0x07, 0x07])));
    let out = h.sent();
    assert_eq!(out, vec![vec![0x02, 0x01, 0x00, 0x06, 0x00, 0x02, 0x00, 0x06, 0x00, 0x05, 0x05]]);
    assert_eq!(h.events(), vec![HostEvent::Dropped(Dropped::PairingRefused(1))]);
}

#[test]
fn with_a_security_manager_smp_pdus_go_up_and_out() {
    let mut h = Harness::new(27, 4);
    h.host = Host::new(HostConfig { security_manager: true, ..HostConfig::default() });
    h.host.set_acl_buffers(27, 4);
    h.feed(&connected(1, 1));
    h.sent();
    h.events();
    let request = [0x01, 0x03, 0x00, 0x01, 0x10, 0x07, 0x07];
    h.feed(&acl(1, PacketBoundary::FirstFlushable, &l2cap_pdu(cid::SMP, &request)));
    assert!(h.sent().is_empty(), "the host itself answers nothing");
    assert_eq!(h.events(), vec![HostEvent::Smp { handle: 1, pdu: request.to_vec() }]);
    h.host.send_smp(1, &[0x05, 0x08]).unwrap();
    assert_eq!(h.sent(), vec![vec![0x02, 0x01, 0x00, 0x06, 0x00, 0x02, 0x00, 0x06, 0x00, 0x05, 0x08]]);
}

#[test]
fn advertising_reports_become_events() {
    let mut h = Harness::new(27, 4);
    let reports = [AdvertisingReport {
        event_type: 0,
        address_type: 1,
        address: crate::gap::BdAddr([1, 2, 3, 4, 5, 0xC6]),
        data: &[2, 1, 6],
        rssi: -50,
    }];
    let mut params = Vec::new();
    AdvertisingReports::encode(&reports, &mut params);
    let mut pkt = vec![0x04, 0x3E, params.len() as u8];
    pkt.extend_from_slice(&params);
    h.feed(&pkt);
    match &h.events()[..] {
        [HostEvent::Advertisement(r)] => {
            assert_eq!(r.rssi, -50);
            assert_eq!(r.address.kind, AddressType::Random);
            assert_eq!(r.data, vec![2, 1, 6]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn remote_parameter_request_is_answered_by_the_host() {
    let mut h = Harness::new(27, 4);
    h.feed(&connected(1, 0));
    h.sent();
    h.events();
    h.feed(&ev(Event::Le(LeEvent::RemoteConnectionParameterRequest {
        handle: 1,
        interval_min: 6,
        interval_max: 12,
        latency: 0,
        timeout: 100,
    })));
    assert_eq!(h.sent()[0][..3], [0x01, 0x20, 0x20]);
    h.feed(&complete(Opcode::LE_REMOTE_CONN_PARAM_REQ_REPLY, 1, &[0, 1, 0]));
    assert!(h.events().is_empty(), "internal commands are not reported");
    h.feed(&ev(Event::Le(LeEvent::RemoteConnectionParameterRequest {
        handle: 1,
        interval_min: 6,
        interval_max: 12,
        latency: 0,
        timeout: 1,
    })));
    assert_eq!(h.sent()[0][..3], [0x01, 0x21, 0x20]);
}

#[test]
fn sending_needs_buffers_and_a_connection() {
    let mut host = Host::new(HostConfig::default());
    assert_eq!(host.send_att(1, &[1]), Err(HostError::NotInitialized));
    host.set_acl_buffers(27, 1);
    assert_eq!(host.send_att(1, &[1]), Err(HostError::UnknownConnection(1)));
}

const LTK: [u8; 16] = [0x4C, 0x68, 0x38, 0x41, 0x39, 0xF5, 0x74, 0xD8, 0x36, 0xBC, 0xF3, 0x4E, 0x9D, 0xFB, 0x01, 0xBF];

/// A harness with one connection of the given role (handle 1), its events drained.
fn with_link(role: u8) -> Harness {
    let mut h = Harness::new(27, 4);
    h.feed(&connected(1, role));
    h.events();
    h
}

#[test]
fn start_encryption_sends_le_enable_encryption_for_a_central_link_only() {
    let mut h = with_link(ROLE_CENTRAL);
    h.host.start_encryption(1, LTK, 0x0102_0304_0506_0708, 0xBEEF).unwrap();
    let mut want = Vec::new();
    Command::LeEnableEncryption { handle: 1, rand: 0x0102_0304_0506_0708, ediv: 0xBEEF, ltk: LTK }.encode_h4(&mut want);
    assert_eq!(h.sent(), vec![want]);
    assert_eq!(h.host.start_encryption(9, LTK, 0, 0), Err(HostError::UnknownConnection(9)));

    let mut p = with_link(ROLE_PERIPHERAL);
    assert_eq!(p.host.start_encryption(1, LTK, 0, 0), Err(HostError::WrongRole(Role::Central)));
    assert!(p.sent().is_empty());
}

#[test]
fn encryption_change_v1_marks_the_link_encrypted_with_the_assumed_key_size() {
    let mut h = with_link(ROLE_CENTRAL);
    assert_eq!(h.host.security(1), Some(LinkSecurity::default()));
    h.feed(&ev(Event::EncryptionChange { status: 0, handle: 1, enabled: 1 }));
    assert_eq!(
        h.events(),
        vec![HostEvent::EncryptionChanged { handle: 1, status: 0, encrypted: true, key_size: ASSUMED_KEY_SIZE }]
    );
    let sec = h.host.security(1).unwrap();
    assert!(sec.encrypted && sec.key_size == 16 && !sec.authenticated && !sec.secure_connections);
    // SMP records what it knows about the key, including a shorter negotiated size.
    h.host.set_key_properties(1, true, true, Some(7)).unwrap();
    let sec = h.host.security(1).unwrap();
    assert!(sec.authenticated && sec.secure_connections && sec.key_size == 7);
    assert_eq!(h.host.set_key_properties(2, true, true, None), Err(HostError::UnknownConnection(2)));
}

#[test]
fn encryption_change_v2_reports_the_controllers_key_size() {
    let mut h = with_link(ROLE_CENTRAL);
    h.feed(&ev(Event::EncryptionChangeV2 { status: 0, handle: 1, enabled: 1, key_size: 10 }));
    assert_eq!(h.events(), vec![HostEvent::EncryptionChanged { handle: 1, status: 0, encrypted: true, key_size: 10 }]);
    assert_eq!(h.host.security(1).map(|s| (s.encrypted, s.key_size)), Some((true, 10)));
}

#[test]
fn failed_encryption_change_leaves_the_link_as_it_was() {
    let mut h = with_link(ROLE_CENTRAL);
    h.feed(&ev(Event::EncryptionChange { status: status::PIN_OR_KEY_MISSING, handle: 1, enabled: 0 }));
    assert_eq!(
        h.events(),
        vec![HostEvent::EncryptionChanged {
            handle: 1,
            status: status::PIN_OR_KEY_MISSING,
            encrypted: false,
            key_size: 0
        }]
    );
    assert!(!h.host.security(1).unwrap().encrypted);
    // Encrypted, then a failed change: still encrypted.
    h.feed(&ev(Event::EncryptionChange { status: 0, handle: 1, enabled: 1 }));
    h.feed(&ev(Event::EncryptionChange { status: 0x1F, handle: 1, enabled: 0 }));
    assert_eq!(
        h.events().last(),
        Some(&HostEvent::EncryptionChanged { handle: 1, status: 0x1F, encrypted: true, key_size: 16 })
    );
    // Encryption turned off clears the key's properties.
    h.host.set_key_properties(1, true, false, None).unwrap();
    h.feed(&ev(Event::EncryptionChange { status: 0, handle: 1, enabled: 0 }));
    assert_eq!(h.host.security(1), Some(LinkSecurity::default()));
}

#[test]
fn encryption_events_for_unknown_handles_are_dropped() {
    let mut h = with_link(ROLE_CENTRAL);
    h.feed(&ev(Event::EncryptionChange { status: 0, handle: 7, enabled: 1 }));
    h.feed(&ev(Event::EncryptionKeyRefreshComplete { status: 0, handle: 7 }));
    h.feed(&ev(Event::Le(LeEvent::LongTermKeyRequest { handle: 7, rand: 0, ediv: 0 })));
    assert_eq!(h.events(), vec![HostEvent::Dropped(Dropped::UnknownHandle(7)); 3]);
    assert!(h.sent().is_empty(), "no reply for a link we do not know");
}

#[test]
fn key_refresh_complete_is_reported() {
    let mut h = with_link(ROLE_CENTRAL);
    h.feed(&ev(Event::EncryptionChange { status: 0, handle: 1, enabled: 1 }));
    h.events();
    h.feed(&ev(Event::EncryptionKeyRefreshComplete { status: 0, handle: 1 }));
    assert_eq!(h.events(), vec![HostEvent::EncryptionKeyRefreshed { handle: 1, status: 0 }]);
    assert!(h.host.security(1).unwrap().encrypted);
}

#[test]
fn ltk_request_is_reported_and_answered_once() {
    let mut h = with_link(ROLE_PERIPHERAL);
    h.feed(&ev(Event::Le(LeEvent::LongTermKeyRequest { handle: 1, rand: 0x1122, ediv: 0x3344 })));
    assert_eq!(h.events(), vec![HostEvent::LongTermKeyRequest { handle: 1, rand: 0x1122, ediv: 0x3344 }]);
    assert!(h.sent().is_empty(), "the host no longer answers on its own");
    let id = h.host.long_term_key_reply(1, LTK).unwrap();
    let mut want = Vec::new();
    Command::LeLongTermKeyRequestReply { handle: 1, ltk: LTK }.encode_h4(&mut want);
    assert_eq!(h.sent(), vec![want]);
    // Answered: a second answer is refused.
    assert_eq!(h.host.long_term_key_negative_reply(1), Err(HostError::NoKeyRequestPending(1)));
    h.feed(&complete(Opcode::LE_LTK_REPLY, 1, &[0, 1, 0]));
    assert_eq!(
        h.events(),
        vec![HostEvent::CommandDone { id, opcode: Opcode::LE_LTK_REPLY, status: 0, return_params: vec![1, 0] }]
    );
}

#[test]
fn ltk_negative_reply_needs_a_pending_request_and_the_peripheral_role() {
    let mut h = with_link(ROLE_PERIPHERAL);
    assert_eq!(h.host.long_term_key_negative_reply(1), Err(HostError::NoKeyRequestPending(1)));
    assert_eq!(h.host.long_term_key_reply(3, LTK), Err(HostError::UnknownConnection(3)));
    h.feed(&ev(Event::Le(LeEvent::LongTermKeyRequest { handle: 1, rand: 0, ediv: 0 })));
    h.events();
    h.host.long_term_key_negative_reply(1).unwrap();
    assert_eq!(h.sent(), vec![vec![0x01, 0x1B, 0x20, 0x02, 0x01, 0x00]]);

    let mut c = with_link(ROLE_CENTRAL);
    assert_eq!(c.host.long_term_key_reply(1, LTK), Err(HostError::WrongRole(Role::Peripheral)));
}

#[test]
fn a_reconnection_under_the_same_handle_starts_unencrypted() {
    let mut h = with_link(ROLE_PERIPHERAL);
    h.feed(&ev(Event::Le(LeEvent::LongTermKeyRequest { handle: 1, rand: 0, ediv: 0 })));
    h.feed(&ev(Event::EncryptionChange { status: 0, handle: 1, enabled: 1 }));
    h.feed(&ev(Event::DisconnectionComplete { status: 0, handle: 1, reason: 0x13 }));
    h.feed(&connected(1, ROLE_PERIPHERAL));
    assert_eq!(h.host.security(1), Some(LinkSecurity::default()));
    assert_eq!(h.host.long_term_key_negative_reply(1), Err(HostError::NoKeyRequestPending(1)));
}
