//! Hostile peers and controllers at the core (issue 14, part 3): the sans-IO host fed raw HCI
//! bytes. Nothing panics, nothing grows without bound, and each bad PDU is dropped (or the
//! link refused) as the spec says. `RELIABILITY.md` maps the SweynTooth and BrakTooth classes
//! to these tests.

use gattling_proto::att::bearer::{Bearer, DropReason, Route};
use gattling_proto::hci::command::{Command, Opcode};
use gattling_proto::hci::event::Event;
use gattling_proto::hci::{AclHeader, AclPacket, PacketBoundary};
use gattling_proto::host::{ConnHandle, Dropped, Host, HostConfig, HostEvent};
use gattling_proto::l2cap::ReassemblyError;

const ATT: u16 = 0x0004;
const SIGNALING: u16 = 0x0005;
const SMP: u16 = 0x0006;
const LINK: u16 = 0x0040;

/// The host under attack, with what it handed up.
struct Harness {
    host: Host,
    att: Vec<(ConnHandle, Vec<u8>)>,
}

impl Harness {
    /// A host with `acl_num` ACL buffers of 27 bytes and one link (we are central).
    fn new(acl_num: u16) -> Self {
        let mut host = Host::new(HostConfig::default());
        host.set_acl_buffers(27, acl_num);
        let mut h = Harness { host, att: Vec::new() };
        h.feed(&connection_complete(LINK));
        assert!(h.events().iter().any(|e| matches!(e, HostEvent::Connected(_))));
        h
    }

    fn feed(&mut self, bytes: &[u8]) {
        let att = &mut self.att;
        self.host.receive(bytes, &mut |h, p| att.push((h, p.to_vec())));
    }

    fn sent(&mut self) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| self.host.poll_transmit()).collect()
    }

    fn events(&mut self) -> Vec<HostEvent> {
        std::iter::from_fn(|| self.host.poll_event()).collect()
    }

    fn dropped(&mut self) -> Vec<Dropped> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                HostEvent::Dropped(d) => Some(d),
                _ => None,
            })
            .collect()
    }

    /// A well-formed ATT PDU still gets through: the link survived what came before.
    fn still_delivers(&mut self) {
        self.att.clear();
        self.feed(&acl(LINK, PacketBoundary::FirstFlushable, &l2cap(ATT, &[0x0A, 0x03, 0x00])));
        assert_eq!(self.att, [(LINK, vec![0x0A, 0x03, 0x00])], "a good PDU after the bad ones");
    }

    /// Number Of Completed Packets for `n` packets on the link.
    fn complete(&mut self, n: u16) {
        let mut ev = vec![0x04, 0x13, 5, 1];
        ev.extend(LINK.to_le_bytes());
        ev.extend(n.to_le_bytes());
        self.feed(&ev);
    }
}

fn connection_complete(handle: u16) -> Vec<u8> {
    let h = handle.to_le_bytes();
    let mut ev = vec![0x04, 0x3E, 0x13, 0x01, 0x00, h[0], h[1], 0x00, 0x00];
    ev.extend_from_slice(&[1, 2, 3, 4, 5, 6, 0x18, 0x00, 0x00, 0x00, 0x48, 0x00, 0x00]);
    ev
}

fn acl(handle: u16, boundary: PacketBoundary, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    AclPacket { header: AclHeader { handle, boundary, broadcast: 0, len: data.len() as u16 }, data }
        .encode_h4(&mut out);
    out
}

fn l2cap(cid: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u16).to_le_bytes().to_vec();
    v.extend_from_slice(&cid.to_le_bytes());
    v.extend_from_slice(payload);
    v
}

fn is_reassembly(d: &Dropped, want: fn(&ReassemblyError) -> bool) -> bool {
    matches!(d, Dropped::Reassembly { handle: LINK, error } if want(error))
}

// ---------------------------------------------------------------------------------------------
// L2CAP framing (Core Vol 3 Part A §3, §7.2).

/// An L2CAP length larger than the ACL carries: the host waits for continuations; a new start
/// instead drops the partial PDU (SweynTooth "Truncated L2CAP").
#[test]
fn l2cap_length_above_the_acl_data_is_a_partial_pdu_dropped_at_the_next_start() {
    let mut h = Harness::new(4);
    let mut pdu = l2cap(ATT, &[0x0A, 0x03, 0x00]);
    pdu[0] = 200; // announces 200 octets, carries 3
    h.feed(&acl(LINK, PacketBoundary::FirstFlushable, &pdu));
    assert!(h.att.is_empty());
    // The next start replaces it: only the new PDU is delivered.
    h.still_delivers();
    assert!(h.sent().is_empty(), "nothing answered for a dropped PDU");
    // Cut off by a start that does not complete at once, the loss is reported too.
    h.feed(&acl(LINK, PacketBoundary::FirstFlushable, &pdu));
    h.feed(&acl(LINK, PacketBoundary::FirstFlushable, &pdu[..5]));
    let d = h.dropped();
    assert!(d.iter().any(|d| is_reassembly(d, |e| matches!(e, ReassemblyError::Interrupted { .. }))), "{d:?}");
}

/// An L2CAP length smaller than the ACL carries: the PDU is dropped, not truncated and used.
#[test]
fn l2cap_length_below_the_acl_data_drops_the_pdu() {
    let mut h = Harness::new(4);
    let mut pdu = l2cap(ATT, &[0x0A, 0x03, 0x00, 0xEE, 0xEE]);
    pdu[0] = 3;
    h.feed(&acl(LINK, PacketBoundary::FirstFlushable, &pdu));
    assert!(h.att.is_empty(), "not delivered: {:?}", h.att);
    let d = h.dropped();
    assert!(d.iter().any(|d| is_reassembly(d, |e| matches!(e, ReassemblyError::Overrun { .. }))), "{d:?}");
    h.still_delivers();
}

/// Start fragments shorter than the L2CAP header, empty fragments, and a header split across
/// fragments (SweynTooth "Invalid L2CAP fragment"): no panic, no delivery of garbage.
#[test]
fn fragments_shorter_than_the_header_are_handled() {
    let mut h = Harness::new(4);
    // Header split 1 + 3, then the payload: a valid PDU in three fragments.
    let pdu = l2cap(ATT, &[0x0A, 0x05, 0x00]);
    h.feed(&acl(LINK, PacketBoundary::FirstFlushable, &pdu[..1]));
    h.feed(&acl(LINK, PacketBoundary::Continuing, &pdu[1..4]));
    h.feed(&acl(LINK, PacketBoundary::Continuing, &[]));
    h.feed(&acl(LINK, PacketBoundary::Continuing, &pdu[4..]));
    assert_eq!(h.att, [(LINK, vec![0x0A, 0x05, 0x00])]);
    // One-octet and empty starts that never complete, each cut off by the next start.
    for start in [&[0x05u8][..], &[], &[0x03, 0x00, 0x04]] {
        h.feed(&acl(LINK, PacketBoundary::FirstFlushable, start));
    }
    h.still_delivers();
}

/// Continuation fragments with no start are dropped, however many come.
#[test]
fn continuations_without_a_start_are_dropped() {
    let mut h = Harness::new(4);
    for _ in 0..1000 {
        h.feed(&acl(LINK, PacketBoundary::Continuing, &[0x0A, 0x03, 0x00, 0x01, 0x02]));
    }
    assert!(h.att.is_empty());
    let d = h.dropped();
    assert_eq!(d.len(), 1000);
    assert!(d.iter().all(|d| is_reassembly(d, |e| *e == ReassemblyError::UnexpectedContinuation)));
    h.still_delivers();
}

/// A PDU announced beyond the maximum (the ATT_MTU bound, 517) is discarded as it arrives,
/// without buffering it, and its continuations are skipped, not taken for new PDUs.
#[test]
fn reassembly_beyond_the_mtu_is_discarded_as_it_arrives() {
    let mut h = Harness::new(4);
    let mut start = l2cap(ATT, &[0x12; 23]);
    start[..2].copy_from_slice(&60_000u16.to_le_bytes());
    h.feed(&acl(LINK, PacketBoundary::FirstFlushable, &start));
    // 60 000 octets of continuations that look like ATT PDUs of their own.
    let chunk = l2cap(ATT, &[0x12; 23]);
    let mut fed = start.len() - 4;
    while fed < 60_000 {
        let n = chunk.len().min(60_000 - fed);
        h.feed(&acl(LINK, PacketBoundary::Continuing, &chunk[..n]));
        fed += n;
    }
    assert!(h.att.is_empty(), "nothing of the oversized PDU is delivered");
    let d = h.dropped();
    assert_eq!(d.len(), 1, "one drop for the whole PDU: {:?}", &d[..d.len().min(3)]);
    assert!(is_reassembly(&d[0], |e| matches!(e, ReassemblyError::TooLong { len: 60_004, max: 521 })));
    h.still_delivers();
    // Continuations that would grow a PDU past its announced length are an overrun.
    let pdu = l2cap(ATT, &[0x0A, 0x03, 0x00]);
    h.feed(&acl(LINK, PacketBoundary::FirstFlushable, &pdu[..5]));
    h.feed(&acl(LINK, PacketBoundary::Continuing, &[0x03, 0x00, 0xEE, 0xEE]));
    let d = h.dropped();
    assert!(d.iter().any(|d| is_reassembly(d, |e| matches!(e, ReassemblyError::Overrun { .. }))), "{d:?}");
    h.still_delivers();
}

/// ACL data for a handle with no link: dropped and reported, nothing sent back.
#[test]
fn acl_on_an_unknown_handle_is_dropped() {
    let mut h = Harness::new(4);
    for handle in [0x0000, 0x0041, 0x0EFF, 0x0FFF] {
        h.feed(&acl(handle, PacketBoundary::FirstFlushable, &l2cap(SIGNALING, &[0x0A, 1, 0, 0])));
    }
    let d = h.dropped();
    assert_eq!(d, [0x0000, 0x0041, 0x0EFF, 0x0FFF].map(Dropped::UnknownHandle));
    assert!(h.sent().is_empty());
    assert!(h.att.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Floods: what the host sends back on its own is bounded while the controller holds the ACL
// buffers.

/// Sends `n` copies of an L2CAP PDU the host answers by itself, with no Number Of Completed
/// Packets; then frees every buffer and counts the answers that were queued meanwhile.
fn flood(cid: u16, payload: &[u8], n: usize) -> usize {
    let mut h = Harness::new(2);
    let one = acl(LINK, PacketBoundary::FirstFlushable, &l2cap(cid, payload));
    for _ in 0..n {
        h.feed(&one);
    }
    let mut answers = h.sent().len();
    // The controller catches up; everything queued comes out.
    loop {
        h.complete(2);
        let more = h.sent().len();
        if more == 0 {
            break;
        }
        answers += more;
    }
    h.events();
    answers
}

/// A flood of signaling requests (unknown ones, rejected with Command Reject) while the
/// controller's buffers are full: the queued rejects are bounded, not one per request.
#[test]
fn a_signaling_flood_queues_a_bounded_number_of_answers() {
    // Echo Request is not an LE signaling command: Command Not Understood (Core Vol 3 Part A §4.1).
    let answers = flood(SIGNALING, &[0x08, 0x01, 0x00, 0x00], 10_000);
    assert!(answers > 0, "requests are answered");
    assert!(answers <= 64, "{answers} answers queued for 10 000 requests");
}

/// The same for SMP: a Pairing Request flood gets a bounded number of Pairing Failed.
#[test]
fn an_smp_flood_queues_a_bounded_number_of_answers() {
    let answers = flood(SMP, &[0x01, 0x03, 0x00, 0x01, 0x10, 0x07, 0x07], 10_000);
    assert!(answers > 0, "requests are answered");
    assert!(answers <= 64, "{answers} answers queued for 10 000 requests");
}

/// The signaling channel still answers once a flood is over.
#[test]
fn after_a_flood_the_signaling_channel_answers_again() {
    let mut h = Harness::new(2);
    let one = acl(LINK, PacketBoundary::FirstFlushable, &l2cap(SIGNALING, &[0x08, 0x01, 0x00, 0x00]));
    for _ in 0..1000 {
        h.feed(&one);
    }
    loop {
        h.complete(2);
        if h.sent().is_empty() {
            break;
        }
    }
    h.feed(&acl(LINK, PacketBoundary::FirstFlushable, &l2cap(SIGNALING, &[0x08, 0x07, 0x00, 0x00])));
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    // H4 + ACL header + L2CAP header, then Command Reject (0x01) for identifier 7.
    assert_eq!(&sent[0][9..11], [0x01, 0x07]);
}

// ---------------------------------------------------------------------------------------------
// A controller sending events of the wrong length (Core Vol 4 Part E §5.4.4).

/// Every event the host decodes, cut short at every length and with an octet too many: no
/// panic, each is dropped as malformed, and the host's state is intact afterwards.
#[test]
fn events_with_wrong_lengths_are_dropped() {
    let well_formed: Vec<Vec<u8>> = vec![
        vec![0x05, 4, 0x00, 0x40, 0x00, 0x13],                // Disconnection Complete
        vec![0x08, 4, 0x00, 0x40, 0x00, 0x01],                // Encryption Change
        vec![0x0E, 4, 0x01, 0x03, 0x0C, 0x00],                // Command Complete (Reset)
        vec![0x0F, 4, 0x00, 0x01, 0x03, 0x0C],                // Command Status
        vec![0x10, 1, 0x00],                                  // Hardware Error
        vec![0x13, 5, 0x01, 0x40, 0x00, 0x01, 0x00],          // Number Of Completed Packets
        connection_complete(0x0041)[1..].to_vec(),            // LE Connection Complete
        vec![0x3E, 10, 0x03, 0, 0x40, 0, 24, 0, 0, 0, 72, 0], // LE Connection Update Complete
        vec![0x3E, 13, 0x05, 0x40, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9], // LE Long Term Key Request
        vec![0x3E, 11, 0x06, 0x40, 0, 6, 0, 6, 0, 0, 0, 72, 0], // LE Remote Connection Parameter Request
        vec![0x3E, 11, 0x07, 0x40, 0, 27, 0, 0x48, 0x01, 27, 0, 0x48, 0x01], // LE Data Length Change
        vec![0x3E, 6, 0x0C, 0x00, 0x40, 0x00, 2, 2],          // LE PHY Update Complete
        vec![0x3E, 12, 0x02, 1, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0xC4], // LE Advertising Report
    ];
    for ev in &well_formed {
        let mut bad: Vec<Vec<u8>> = (2..ev.len())
            .map(|cut| {
                let mut e = ev[..cut].to_vec();
                e[1] = (cut - 2) as u8;
                e
            })
            .collect();
        let mut long = ev.clone();
        long.push(0xEE);
        long[1] += 1;
        bad.push(long);
        for b in bad {
            let mut h = Harness::new(4);
            let reset = h.host.send_command(&Command::Reset);
            h.sent();
            h.feed(&[&[0x04][..], &b].concat());
            let events = h.events();
            // Only a malformed report, or an event the host could still use (an LE event with
            // extra octets, an advertising report with a short count).
            for e in &events {
                assert!(
                    matches!(
                        e,
                        HostEvent::Dropped(_)
                            | HostEvent::Advertisement(_)
                            | HostEvent::CommandDone { .. }
                            | HostEvent::Connected(_)
                    ),
                    "{b:02x?} gave {e:?}"
                );
            }
            // The link and the pending command are still as they were.
            assert!(h.host.connection(LINK).is_some() || b[0] == 0x05, "{b:02x?} lost the link");
            h.feed(&[0x04, 0x0E, 4, 0x01, 0x03, 0x0C, 0x00]);
            let done = h.events().into_iter().any(|e| matches!(e, HostEvent::CommandDone { id, .. } if id == reset));
            // A Command Complete cut before the status completes the Reset as it stands.
            let completed_by_bad = b[0] == 0x0E && b.len() >= 5;
            assert!(done || completed_by_bad, "{b:02x?}: the command still completes");
            assert!(h.host.acl_free() <= 4, "{b:02x?}: ACL credits stay within the controller's");
        }
    }
}

/// Number Of Completed Packets for more packets than were sent, or for unknown handles, does
/// not mint ACL credits beyond the controller's buffers.
#[test]
fn completed_packets_beyond_what_was_sent_are_capped() {
    let mut h = Harness::new(4);
    h.complete(u16::MAX);
    let mut ev = vec![0x04, 0x13, 9, 2];
    ev.extend([0x41, 0x00, 0xFF, 0xFF, 0xFF, 0x0F, 0xFF, 0xFF]);
    h.feed(&ev);
    assert_eq!(h.host.acl_free(), 4);
    // Sending still works, four at a time.
    for _ in 0..6 {
        h.host.send_att(LINK, &[0x52, 0x03, 0x00, 0x01]).expect("queued");
    }
    // At most 4 in flight, less the one buffer... no other link: all four.
    assert_eq!(h.sent().len(), 4);
    assert_eq!(h.host.in_flight(LINK), Some(4));
}

/// A Command Complete for a command nobody sent is reported and ignored.
#[test]
fn a_completion_nobody_asked_for_is_dropped() {
    let mut h = Harness::new(4);
    h.feed(&[0x04, 0x0E, 4, 0x01, 0x03, 0x0C, 0x00]);
    assert_eq!(h.dropped(), [Dropped::UnexpectedCompletion(Opcode::RESET)]);
}

/// A command the controller never completes: abandoning it gives the credit back, so the next
/// command goes out (the runtime does this at its command timeout).
#[test]
fn an_abandoned_command_gives_its_credit_back() {
    let mut h = Harness::new(4);
    let stuck = h.host.send_command(&Command::LeRand);
    assert_eq!(h.sent().len(), 1);
    let next = h.host.send_command(&Command::ReadBdAddr);
    let queued = h.host.send_command(&Command::Reset);
    assert!(h.sent().is_empty(), "no credit while the first is in flight");
    // A queued (never sent) command is simply forgotten.
    assert!(h.host.abandon_command(queued));
    assert!(h.host.abandon_command(stuck));
    assert_eq!(h.sent().len(), 1, "the next command goes out");
    // A late completion for the abandoned one is reported, not taken for the next.
    let mut late = Vec::new();
    Event::CommandComplete { num_packets: 1, opcode: Opcode::LE_RAND, return_params: &[0; 9] }.encode_h4(&mut late);
    h.feed(&late);
    assert_eq!(h.dropped(), [Dropped::UnexpectedCompletion(Opcode::LE_RAND)]);
    assert!(!h.host.abandon_command(stuck), "already gone");
    h.feed(&[0x04, 0x0E, 10, 0x01, 0x09, 0x10, 0x00, 1, 2, 3, 4, 5, 6]);
    let done: Vec<_> = h.events().into_iter().filter(|e| matches!(e, HostEvent::CommandDone { .. })).collect();
    assert!(matches!(done[..], [HostEvent::CommandDone { id, .. }] if id == next));
    assert!(h.sent().is_empty(), "the forgotten Reset is never sent");
}

// ---------------------------------------------------------------------------------------------
// SweynTooth host-side classes at the ATT and SMP layers.

/// SweynTooth "Sequential ATT Deadlock": a peer sends a second request before the first is
/// answered. The bearer drops it (Core Vol 3 Part F §3.3.2) and answers the first normally;
/// nothing deadlocks.
#[test]
fn sequential_att_requests_do_not_deadlock_the_bearer() {
    let mut b = Bearer::new(23);
    assert_eq!(b.receive(&[0x0A, 0x03, 0x00], 0), Route::Server);
    for _ in 0..100 {
        assert_eq!(b.receive(&[0x0A, 0x03, 0x00], 0), Route::Dropped(DropReason::RequestWhilePending));
    }
    b.send(&[0x0B, 0x01], 1).expect("the first request is answered");
    assert_eq!(b.receive(&[0x0A, 0x03, 0x00], 2), Route::Server, "the bearer takes requests again");
}

/// Sends one SMP PDU and returns the host's SMP answer, if any.
fn smp_answer(pdu: &[u8]) -> Option<Vec<u8>> {
    let mut h = Harness::new(4);
    h.feed(&acl(LINK, PacketBoundary::FirstFlushable, &l2cap(SMP, pdu)));
    let sent = h.sent();
    assert!(sent.len() <= 1);
    sent.first().map(|p| {
        assert_eq!(&p[7..9], SMP.to_le_bytes(), "answered on the SMP channel");
        p[9..].to_vec()
    })
}

/// SweynTooth "Key Size Overflow": a Pairing Request with a maximum encryption key size above
/// 16 is answered with Pairing Failed (Core Vol 3 Part H §3.5.1, §3.5.5), never accepted.
#[test]
fn pairing_request_with_an_oversized_key_is_refused() {
    let answer = smp_answer(&[0x01, 0x03, 0x00, 0x01, 253, 0x07, 0x07]).expect("answered");
    assert_eq!(answer[0], 0x05, "Pairing Failed: {answer:02x?}");
}

/// SweynTooth "Unexpected Public Key" / "Public Key Crash": a Pairing Public Key (here with an
/// off-curve point) out of sequence is answered with Pairing Failed, and nothing panics.
#[test]
fn an_unexpected_public_key_is_refused() {
    let mut pdu = vec![0x0C];
    pdu.extend([0xFF; 64]);
    let answer = smp_answer(&pdu).expect("answered");
    assert_eq!(answer[0], 0x05, "Pairing Failed: {answer:02x?}");
    // Truncated SMP PDUs of every length are answered or ignored without a panic.
    for len in 0..pdu.len() {
        if let Some(a) = smp_answer(&pdu[..len]) {
            assert_eq!(a[0], 0x05);
        }
    }
}

/// SweynTooth "Zero LTK Installation": the core never answers an LE Long Term Key Request with
/// a key of its own making (a zero key): it hands the request up, and the layer that has no
/// key sends the negative reply (the runtime's side: `security.rs`, `tests/security.rs`).
#[test]
fn a_long_term_key_request_without_a_bond_gets_the_negative_reply() {
    let mut h = Harness::new(4);
    h.feed(&[0x04, 0x3E, 13, 0x05, 0x40, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert!(h.sent().is_empty(), "no answer made up by the core");
    assert!(h.events().contains(&HostEvent::LongTermKeyRequest { handle: 0x40, rand: 0, ediv: 0 }));
    // This link is central: a controller asking a central for a key is answered nothing.
    assert!(h.host.long_term_key_negative_reply(0x40).is_err());
    assert!(h.host.long_term_key_reply(0x40, [0; 16]).is_err(), "never a zero key");
    assert!(h.sent().is_empty());
}

/// A flood of valid Connection Parameter Update Requests to a central (each one accepted and
/// turned into an LE Connection Update command) while the controller is slow to take commands:
/// the commands the host queues for itself are bounded too.
#[test]
fn a_parameter_update_flood_queues_a_bounded_number_of_commands() {
    let mut h = Harness::new(4);
    // Take the only command credit, so the host's own commands queue.
    h.host.send_command(&Command::LeRand);
    h.sent();
    let req = l2cap(SIGNALING, &[0x12, 0x01, 0x08, 0x00, 0x06, 0x00, 0x10, 0x00, 0x00, 0x00, 0x48, 0x00]);
    let one = acl(LINK, PacketBoundary::FirstFlushable, &req);
    for _ in 0..1000 {
        h.feed(&one);
        // The controller takes every answer at once: the ACL side never backs up.
        let n = h.sent().len() as u16;
        h.complete(n);
    }
    h.events();
    let mut updates = 0;
    loop {
        // One Command Status per command: a credit each time.
        h.feed(&[0x04, 0x0F, 4, 0x00, 0x01, 0x13, 0x20]);
        let sent = h.sent();
        if sent.is_empty() {
            break;
        }
        updates += sent.iter().filter(|p| p[..3] == [0x01, 0x13, 0x20]).count();
    }
    assert!(updates > 0, "the first requests are honoured");
    assert!(updates <= 64, "{updates} LE Connection Update commands queued for 1000 requests");
}
