//! Two `Smp`s back to back, and raw-PDU exchanges for every failure (Core Vol 3 Part H).

use super::*;
use crate::smp::crypto::DEBUG_PUBLIC_KEY;
use alloc::vec;
use proptest::prelude::*;

/// Deterministic xorshift64* generator: tests only.
struct TestRng(u64);

impl SecureRandom for TestRng {
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            *b = (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8;
        }
    }
}

const CENTRAL_ADDR: SmpAddress = SmpAddress { addr_type: 0, address: [0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6] };
const PERIPHERAL_ADDR: SmpAddress = SmpAddress { addr_type: 1, address: [0xB1, 0xB2, 0xB3, 0xB4, 0xB5, 0xC6] };

fn identity(tag: u8, address: SmpAddress) -> LocalIdentity {
    LocalIdentity { irk: [tag; 16], address, csrk: Some([tag ^ 0xFF; 16]) }
}

fn central(config: SmpConfig) -> Smp {
    let addresses = LinkAddresses { local: CENTRAL_ADDR, peer: PERIPHERAL_ADDR };
    Smp::new(LinkRole::Central, config, addresses, identity(0x11, CENTRAL_ADDR))
}

fn peripheral(config: SmpConfig) -> Smp {
    let addresses = LinkAddresses { local: PERIPHERAL_ADDR, peer: CENTRAL_ADDR };
    Smp::new(LinkRole::Peripheral, config, addresses, identity(0x22, PERIPHERAL_ADDR))
}

fn config(io: IoCapability, mitm: bool, sc: bool) -> SmpConfig {
    SmpConfig {
        io_capability: io,
        mitm,
        secure_connections: sc,
        local_keys: KeyDistribution::ALL_LE,
        peer_keys: KeyDistribution::ALL_LE,
        ..SmpConfig::default()
    }
}

/// A loopback moving PDUs between a central and a peripheral, simulating encryption.
struct Link {
    c: Smp,
    p: Smp,
    now: u64,
    c_rng: TestRng,
    p_rng: TestRng,
    c_events: Vec<SmpEvent>,
    p_events: Vec<SmpEvent>,
    /// Every PDU seen on the air: (from central, bytes).
    air: Vec<(bool, Vec<u8>)>,
    /// Rewrites PDUs in flight: (from central, bytes).
    tamper: Option<fn(bool, &mut Vec<u8>)>,
    /// The peripheral's keys reach the central before the central's Encryption Change.
    peripheral_encrypts_first: bool,
}

impl Link {
    fn new(c: SmpConfig, p: SmpConfig) -> Self {
        Self {
            c: central(c),
            p: peripheral(p),
            now: 1_000,
            c_rng: TestRng(0x1234_5678_9ABC_DEF1),
            p_rng: TestRng(0x0FED_CBA9_8765_4321),
            c_events: Vec::new(),
            p_events: Vec::new(),
            air: Vec::new(),
            tamper: None,
            peripheral_encrypts_first: false,
        }
    }

    fn start(&mut self) {
        self.c.start(self.now, &mut self.c_rng).unwrap();
        self.pump();
    }

    /// Moves PDUs and events until both sides are quiet; answers StartEncryption.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            self.now += 100;
            let mut moved = false;
            while let Some(mut pdu) = self.c.poll_transmit() {
                if let Some(t) = self.tamper {
                    t(true, &mut pdu);
                }
                self.air.push((true, pdu.clone()));
                self.p.receive(&pdu, self.now, &mut self.p_rng);
                moved = true;
            }
            while let Some(mut pdu) = self.p.poll_transmit() {
                if let Some(t) = self.tamper {
                    t(false, &mut pdu);
                }
                self.air.push((false, pdu.clone()));
                self.c.receive(&pdu, self.now, &mut self.c_rng);
                moved = true;
            }
            while let Some(e) = self.c.poll_event() {
                if let SmpEvent::StartEncryption { ltk, rand, ediv, key_size } = e {
                    // The controller's LTK Request on the peripheral side must find the same key.
                    assert_eq!(self.p.ltk_request(rand, ediv), Some(ltk));
                    assert_eq!(self.p.ltk_request([1; 8], 0), None);
                    if self.peripheral_encrypts_first {
                        self.p.encryption_changed(true, key_size, self.now);
                        while let Some(pdu) = self.p.poll_transmit() {
                            self.air.push((false, pdu.clone()));
                            self.c.receive(&pdu, self.now, &mut self.c_rng);
                        }
                        self.c.encryption_changed(true, key_size, self.now);
                    } else {
                        self.c.encryption_changed(true, key_size, self.now);
                        self.p.encryption_changed(true, key_size, self.now);
                    }
                }
                self.c_events.push(e);
                moved = true;
            }
            while let Some(e) = self.p.poll_event() {
                self.p_events.push(e);
                moved = true;
            }
            if !moved {
                return;
            }
        }
        panic!("loopback never went quiet");
    }

    fn complete(&self) -> (&PairingResult, &PairingResult) {
        let find = |events: &[SmpEvent]| {
            events
                .iter()
                .find_map(|e| if let SmpEvent::Complete(r) = e { Some(r) } else { None })
                .unwrap_or_else(|| panic!("no Complete in {events:?}"))
                .clone()
        };
        let _ = (find(&self.c_events), find(&self.p_events));
        let c = self.c_events.iter().find_map(|e| if let SmpEvent::Complete(r) = e { Some(r) } else { None });
        let p = self.p_events.iter().find_map(|e| if let SmpEvent::Complete(r) = e { Some(r) } else { None });
        (c.unwrap(), p.unwrap())
    }

    fn failed_on_air(&self) -> Vec<(bool, u8)> {
        self.air.iter().filter(|(_, b)| b[0] == 0x05).map(|(from_c, b)| (*from_c, b[1])).collect()
    }
}

fn find<T>(events: &[SmpEvent], f: impl Fn(&SmpEvent) -> Option<T>) -> Option<T> {
    events.iter().find_map(f)
}

fn passkey_shown(events: &[SmpEvent]) -> Option<u32> {
    find(events, |e| if let SmpEvent::DisplayPasskey(v) = e { Some(*v) } else { None })
}

fn numeric(events: &[SmpEvent]) -> Option<u32> {
    find(events, |e| if let SmpEvent::NumericComparison(v) = e { Some(*v) } else { None })
}

fn asked_passkey(events: &[SmpEvent]) -> bool {
    events.contains(&SmpEvent::PasskeyRequest)
}

/// Both ends hold each other's identity and agree on the keys.
fn check_keys(c: &PairingResult, p: &PairingResult, sc: bool) {
    assert_eq!(c.secure_connections, sc);
    assert_eq!(p.secure_connections, sc);
    assert_eq!(c.key_size, 16);
    assert!(c.bonded && p.bonded);
    assert_eq!(c.peer_irk, Some([0x22; 16]));
    assert_eq!(c.peer_identity, Some(PERIPHERAL_ADDR));
    assert_eq!(p.peer_irk, Some([0x11; 16]));
    assert_eq!(p.peer_identity, Some(CENTRAL_ADDR));
    assert_eq!(c.peer_csrk, Some([0x22 ^ 0xFF; 16]));
    assert_eq!(p.peer_csrk, Some([0x11 ^ 0xFF; 16]));
    assert_eq!(c.peer_csrk, p.local_csrk);
    assert!(c.local_irk_sent && p.local_irk_sent);
    if sc {
        assert!(c.ltk.is_some());
        assert_eq!(c.ltk, p.ltk);
        assert!(c.peer_ltk.is_none() && c.local_ltk.is_none() && p.peer_ltk.is_none());
    } else {
        assert!(c.ltk.is_none());
        assert!(c.peer_ltk.is_some() && p.peer_ltk.is_some());
        assert_eq!(c.peer_ltk, p.local_ltk);
        assert_eq!(p.peer_ltk, c.local_ltk);
        assert_ne!(c.peer_ltk, c.local_ltk);
    }
}

#[test]
fn sc_just_works() {
    let mut link = Link::new(
        config(IoCapability::NoInputNoOutput, false, true),
        SmpConfig { local_keys: KeyDistribution::ALL_LE, peer_keys: KeyDistribution::ALL_LE, ..SmpConfig::default() },
    );
    link.start();
    assert!(matches!(link.p_events[0], SmpEvent::PairingRequest { .. }));
    let (c, p) = link.complete();
    check_keys(c, p, true);
    assert!(!c.authenticated && !p.authenticated);
    // With SC the LTK is not distributed: no Encryption Information on the air.
    assert!(!link.air.iter().any(|(_, b)| b[0] == 0x06 || b[0] == 0x07));
    assert!(link.failed_on_air().is_empty());
    assert!(!link.c.is_pairing() && !link.p.is_pairing());
    assert_eq!(link.c.poll_timeout(), None);
}

#[test]
fn sc_numeric_comparison_both_see_the_same_number() {
    let cfg = config(IoCapability::DisplayYesNo, true, true);
    let mut link = Link::new(cfg.clone(), cfg);
    link.start();
    let (vc, vp) = (numeric(&link.c_events).unwrap(), numeric(&link.p_events).unwrap());
    assert_eq!(vc, vp);
    assert!(vc < 1_000_000);
    // The central confirms first: its Ea reaches the peripheral before the peripheral's user answers.
    link.c.confirm_numeric(true, link.now);
    link.pump();
    assert!(link.p.is_pairing());
    link.p.confirm_numeric(true, link.now);
    link.pump();
    let (c, p) = link.complete();
    check_keys(c, p, true);
    assert!(c.authenticated && p.authenticated);
}

#[test]
fn sc_numeric_comparison_rejected() {
    let cfg = config(IoCapability::DisplayYesNo, true, true);
    let mut link = Link::new(cfg.clone(), cfg);
    link.start();
    link.p.confirm_numeric(false, link.now);
    link.pump();
    assert_eq!(link.failed_on_air(), vec![(false, 0x0C)]);
    assert!(link.c_events.contains(&SmpEvent::Failed { reason: Reason::NumericComparisonFailed, remote: true }));
}

fn passkey_link(c_io: IoCapability, p_io: IoCapability, sc: bool) -> Link {
    Link::new(config(c_io, true, sc), config(p_io, true, sc))
}

/// Runs Passkey Entry: the displaying side's passkey is typed on the other (or `typed` on both).
fn run_passkey(link: &mut Link, typed: Option<u32>) {
    link.start();
    let shown = passkey_shown(&link.c_events).or(passkey_shown(&link.p_events));
    let key = typed.or(shown).unwrap();
    if asked_passkey(&link.c_events) {
        link.c.enter_passkey(Some(key), link.now);
        link.pump();
    }
    if asked_passkey(&link.p_events) {
        link.p.enter_passkey(Some(key), link.now);
        link.pump();
    }
}

#[test]
fn sc_passkey_responder_displays_initiator_enters() {
    let mut link = passkey_link(IoCapability::KeyboardOnly, IoCapability::DisplayOnly, true);
    run_passkey(&mut link, None);
    assert!(passkey_shown(&link.p_events).is_some() && asked_passkey(&link.c_events));
    let (c, p) = link.complete();
    check_keys(c, p, true);
    assert!(c.authenticated && p.authenticated);
    // 20 rounds of Confirm and Random each way.
    assert_eq!(link.air.iter().filter(|(_, b)| b[0] == 0x03).count(), 40);
    assert_eq!(link.air.iter().filter(|(_, b)| b[0] == 0x04).count(), 40);
}

#[test]
fn sc_passkey_initiator_displays_responder_enters() {
    let mut link = passkey_link(IoCapability::DisplayOnly, IoCapability::KeyboardOnly, true);
    run_passkey(&mut link, None);
    assert!(passkey_shown(&link.c_events).is_some() && asked_passkey(&link.p_events));
    let (c, p) = link.complete();
    check_keys(c, p, true);
    assert!(c.authenticated);
}

#[test]
fn sc_passkey_both_enter() {
    let mut link = passkey_link(IoCapability::KeyboardOnly, IoCapability::KeyboardOnly, true);
    run_passkey(&mut link, Some(123_456));
    let (c, p) = link.complete();
    check_keys(c, p, true);
}

#[test]
fn sc_wrong_passkey_is_confirm_value_failed() {
    let mut link = passkey_link(IoCapability::KeyboardOnly, IoCapability::DisplayOnly, true);
    link.start();
    let shown = passkey_shown(&link.p_events).unwrap();
    link.c.enter_passkey(Some(shown ^ 1), link.now);
    link.pump();
    let failed = link.failed_on_air();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].1, 0x04);
    assert!(!link.c.is_pairing() && !link.p.is_pairing());
}

#[test]
fn passkey_cancelled_is_passkey_entry_failed() {
    let mut link = passkey_link(IoCapability::KeyboardOnly, IoCapability::DisplayOnly, true);
    assert_eq!(link.c.pairing_method(), None);
    link.start();
    let method = PairingMethod::PasskeyEntry { initiator_inputs: true, responder_inputs: false };
    assert_eq!((link.c.pairing_method(), link.p.pairing_method()), (Some(method), Some(method)));
    link.c.enter_passkey(None, link.now);
    link.pump();
    assert_eq!(link.failed_on_air(), vec![(true, 0x01)]);
    assert!(link.p_events.contains(&SmpEvent::Failed { reason: Reason::PasskeyEntryFailed, remote: true }));
}

#[test]
fn keypress_notifications_reach_the_displaying_side() {
    let mut c = config(IoCapability::KeyboardOnly, true, true);
    c.keypress = true;
    let mut p = config(IoCapability::DisplayOnly, true, true);
    p.keypress = true;
    let mut link = Link::new(c, p);
    link.start();
    link.c.send_keypress(KeypressType::EntryStarted, link.now).unwrap();
    link.c.send_keypress(KeypressType::DigitEntered, link.now).unwrap();
    assert_eq!(link.p.send_keypress(KeypressType::DigitEntered, link.now), Err(SmpError::NotExpected));
    link.pump();
    assert!(link.p_events.contains(&SmpEvent::KeypressNotification(KeypressType::DigitEntered)));
    let shown = passkey_shown(&link.p_events).unwrap();
    link.c.enter_passkey(Some(shown), link.now);
    link.pump();
    link.complete();
}

#[test]
fn sc_oob_both_directions() {
    let mut link = Link::new(
        config(IoCapability::NoInputNoOutput, false, true),
        config(IoCapability::NoInputNoOutput, false, true),
    );
    let oc = link.c.generate_local_oob(&mut TestRng(7));
    let op = link.p.generate_local_oob(&mut TestRng(8));
    link.c.set_peer_oob(Some(op));
    link.p.set_peer_oob(Some(oc));
    link.start();
    let (c, p) = link.complete();
    check_keys(c, p, true);
    assert!(c.authenticated && p.authenticated);
    // OOB needs no Pairing Confirm over the air.
    assert!(!link.air.iter().any(|(_, b)| b[0] == 0x03));
}

#[test]
fn sc_oob_one_direction() {
    let mut link = Link::new(
        config(IoCapability::NoInputNoOutput, false, true),
        config(IoCapability::NoInputNoOutput, false, true),
    );
    let op = link.p.generate_local_oob(&mut TestRng(8));
    link.c.set_peer_oob(Some(op));
    link.start();
    let (c, p) = link.complete();
    check_keys(c, p, true);
}

#[test]
fn sc_oob_wrong_confirm_is_confirm_value_failed() {
    let mut link = Link::new(
        config(IoCapability::NoInputNoOutput, false, true),
        config(IoCapability::NoInputNoOutput, false, true),
    );
    let mut op = link.p.generate_local_oob(&mut TestRng(8));
    op.confirm[0] ^= 1;
    link.c.set_peer_oob(Some(op));
    link.start();
    assert_eq!(link.failed_on_air(), vec![(true, 0x04)]);
}

#[test]
fn legacy_just_works() {
    let cfg = config(IoCapability::NoInputNoOutput, false, false);
    let mut link = Link::new(cfg.clone(), cfg);
    link.start();
    let (c, p) = link.complete();
    check_keys(c, p, false);
    assert!(!c.authenticated);
    // Phase 3 order: responder's EncKey, IdKey, SignKey, then the initiator's.
    let codes: Vec<(bool, u8)> =
        link.air.iter().filter(|(_, b)| b[0] >= 0x06 && b[0] <= 0x0A).map(|(c, b)| (*c, b[0])).collect();
    let side = |from_c| [(from_c, 6), (from_c, 7), (from_c, 8), (from_c, 9), (from_c, 0x0A)];
    let expected: Vec<(bool, u8)> = side(false).into_iter().chain(side(true)).collect();
    assert_eq!(codes, expected);
}

#[test]
fn legacy_passkey() {
    let mut link = passkey_link(IoCapability::KeyboardDisplay, IoCapability::DisplayOnly, false);
    run_passkey(&mut link, None);
    let (c, p) = link.complete();
    check_keys(c, p, false);
    assert!(c.authenticated && p.authenticated);
}

#[test]
fn legacy_passkey_responder_enters_after_confirm_arrived() {
    let mut link = passkey_link(IoCapability::DisplayOnly, IoCapability::KeyboardOnly, false);
    run_passkey(&mut link, None);
    let (c, p) = link.complete();
    check_keys(c, p, false);
}

#[test]
fn legacy_oob() {
    let cfg = config(IoCapability::NoInputNoOutput, false, false);
    let mut link = Link::new(cfg.clone(), cfg);
    link.c.set_legacy_oob_tk(Some([0x5A; 16]));
    link.p.set_legacy_oob_tk(Some([0x5A; 16]));
    link.start();
    let (c, p) = link.complete();
    check_keys(c, p, false);
    assert!(c.authenticated);
}

#[test]
fn legacy_wrong_passkey_is_confirm_value_failed() {
    let mut link = passkey_link(IoCapability::KeyboardOnly, IoCapability::DisplayOnly, false);
    link.start();
    let shown = passkey_shown(&link.p_events).unwrap();
    link.c.enter_passkey(Some((shown + 1) % 1_000_000), link.now);
    link.pump();
    // The responder checks Mconfirm when Mrand arrives.
    assert_eq!(link.failed_on_air(), vec![(false, 0x04)]);
    assert!(link.c_events.contains(&SmpEvent::Failed { reason: Reason::ConfirmValueFailed, remote: true }));
    assert!(link.p_events.contains(&SmpEvent::Failed { reason: Reason::ConfirmValueFailed, remote: false }));
}

#[test]
fn legacy_key_size_is_the_smaller_maximum_and_keys_are_masked() {
    let mut c = config(IoCapability::NoInputNoOutput, false, false);
    c.max_key_size = 10;
    let mut link = Link::new(c, config(IoCapability::NoInputNoOutput, false, false));
    link.start();
    let stk = find(&link.c_events, |e| {
        if let SmpEvent::StartEncryption { ltk, key_size, .. } = e {
            Some((*ltk, *key_size))
        } else {
            None
        }
    })
    .unwrap();
    assert_eq!(stk.1, 10);
    assert_eq!(stk.0[10..], [0; 6]);
    let (c, p) = link.complete();
    assert_eq!((c.key_size, p.key_size), (10, 10));
    assert_eq!(c.peer_ltk.as_ref().unwrap().ltk[10..], [0; 6]);
}

#[test]
fn dhkey_check_tampered_is_dhkey_check_failed() {
    let mut link = Link::new(
        config(IoCapability::NoInputNoOutput, false, true),
        config(IoCapability::NoInputNoOutput, false, true),
    );
    link.tamper = Some(|from_c, pdu| {
        if from_c && pdu[0] == 0x0D {
            pdu[5] ^= 0x40;
        }
    });
    link.start();
    assert_eq!(link.failed_on_air(), vec![(false, 0x0B)]);
    assert!(link.c_events.contains(&SmpEvent::Failed { reason: Reason::DhKeyCheckFailed, remote: true }));
}

#[test]
fn confirm_tampered_in_sc_just_works_is_confirm_value_failed() {
    let mut link = Link::new(
        config(IoCapability::NoInputNoOutput, false, true),
        config(IoCapability::NoInputNoOutput, false, true),
    );
    link.tamper = Some(|from_c, pdu| {
        if !from_c && pdu[0] == 0x03 {
            pdu[1] ^= 1;
        }
    });
    link.start();
    assert_eq!(link.failed_on_air(), vec![(true, 0x04)]);
}

// ---- raw PDU exchanges ----

fn rng() -> TestRng {
    TestRng(99)
}

fn tx_all(smp: &mut Smp) -> Vec<Vec<u8>> {
    core::iter::from_fn(|| smp.poll_transmit()).collect()
}

fn events(smp: &mut Smp) -> Vec<SmpEvent> {
    core::iter::from_fn(|| smp.poll_event()).collect()
}

/// A Pairing Request: NoInputNoOutput, no OOB, bonding + SC, key size 16, all keys.
const PREQ_SC: [u8; 7] = [0x01, 0x03, 0x00, 0x09, 0x10, 0x07, 0x07];
/// The answer to our default Pairing Request (EncKey | IdKey both ways).
const PRSP_SC: [u8; 7] = [0x02, 0x03, 0x00, 0x09, 0x10, 0x03, 0x03];

#[test]
fn raw_sc_peripheral_answers_request_and_public_key() {
    let mut p = peripheral(SmpConfig::default());
    let mut r = rng();
    p.receive(&PREQ_SC, 0, &mut r);
    // Default keys: EncKey | IdKey both ways.
    assert_eq!(tx_all(&mut p), vec![vec![0x02, 0x03, 0x00, 0x09, 0x10, 0x03, 0x03]]);
    let peer = KeyPair::generate(&mut TestRng(5));
    let mut pk = vec![0x0C];
    pk.extend_from_slice(peer.public_key());
    p.receive(&pk, 10, &mut r);
    let out = tx_all(&mut p);
    assert_eq!(out.len(), 2);
    assert_eq!((out[0][0], out[0].len()), (0x0C, 65));
    assert_eq!((out[1][0], out[1].len()), (0x03, 17));
}

fn central_waiting_public_key(config: SmpConfig) -> Smp {
    let mut c = central(config);
    let mut r = rng();
    c.start(0, &mut r).unwrap();
    assert_eq!(tx_all(&mut c), vec![vec![0x01, 0x03, 0x00, 0x09, 0x10, 0x03, 0x03]]);
    c.receive(&[0x02, 0x03, 0x00, 0x09, 0x10, 0x03, 0x03], 10, &mut r);
    let out = tx_all(&mut c);
    assert_eq!(out[0][0], 0x0C);
    c
}

#[test]
fn invalid_public_key_is_dhkey_check_failed() {
    let mut c = central_waiting_public_key(SmpConfig::default());
    let mut pdu = vec![0x0C];
    pdu.extend_from_slice(&[0x01; 64]); // (x, y) = (0x0101.., 0x0101..) is not on P-256
    c.receive(&pdu, 20, &mut rng());
    assert_eq!(tx_all(&mut c), vec![vec![0x05, 0x0B]]);
    assert_eq!(events(&mut c), vec![SmpEvent::Failed { reason: Reason::DhKeyCheckFailed, remote: false }]);
    assert!(!c.is_pairing());
}

#[test]
fn debug_public_key_refused_unless_allowed() {
    let mut pdu = vec![0x0C];
    pdu.extend_from_slice(&DEBUG_PUBLIC_KEY);
    let mut c = central_waiting_public_key(SmpConfig::default());
    c.receive(&pdu, 20, &mut rng());
    assert_eq!(tx_all(&mut c), vec![vec![0x05, 0x03]]);
    let mut c = central_waiting_public_key(SmpConfig { allow_debug_key: true, ..SmpConfig::default() });
    c.receive(&pdu, 20, &mut rng());
    assert!(tx_all(&mut c).is_empty());
    assert!(c.is_pairing());
}

#[test]
fn key_size_too_small_is_encryption_key_size() {
    // Peripheral needs 16 octets; the central offers 10.
    let mut p = peripheral(SmpConfig { min_key_size: 16, ..SmpConfig::default() });
    p.receive(&[0x01, 0x03, 0x00, 0x09, 0x0A, 0x03, 0x03], 0, &mut rng());
    assert_eq!(tx_all(&mut p), vec![vec![0x05, 0x06]]);
    // Central needs 12; the peripheral answers 7.
    let mut c = central(SmpConfig { min_key_size: 12, ..SmpConfig::default() });
    c.start(0, &mut rng()).unwrap();
    tx_all(&mut c);
    c.receive(&[0x02, 0x03, 0x00, 0x09, 0x07, 0x03, 0x03], 10, &mut rng());
    assert_eq!(tx_all(&mut c), vec![vec![0x05, 0x06]]);
    assert_eq!(events(&mut c), vec![SmpEvent::Failed { reason: Reason::EncryptionKeySize, remote: false }]);
}

#[test]
fn key_size_out_of_range_is_invalid_parameters() {
    let mut p = peripheral(SmpConfig::default());
    p.receive(&[0x01, 0x03, 0x00, 0x09, 0x06, 0x03, 0x03], 0, &mut rng());
    assert_eq!(tx_all(&mut p), vec![vec![0x05, 0x0A]]);
    let mut p = peripheral(SmpConfig::default());
    p.receive(&[0x01, 0x03, 0x00, 0x09, 0x11, 0x03, 0x03], 0, &mut rng());
    assert_eq!(tx_all(&mut p), vec![vec![0x05, 0x0A]]);
}

#[test]
fn response_adding_key_bits_is_invalid_parameters() {
    let mut c = central(SmpConfig { peer_keys: KeyDistribution(1), ..SmpConfig::default() });
    c.start(0, &mut rng()).unwrap();
    assert_eq!(tx_all(&mut c), vec![vec![0x01, 0x03, 0x00, 0x09, 0x10, 0x03, 0x01]]);
    c.receive(&[0x02, 0x03, 0x00, 0x09, 0x10, 0x03, 0x03], 10, &mut rng());
    assert_eq!(tx_all(&mut c), vec![vec![0x05, 0x0A]]);
}

#[test]
fn unexpected_pdu_is_unspecified_reason_and_back_to_idle() {
    let mut p = peripheral(SmpConfig::default());
    let mut r = rng();
    // Idle: a Pairing Random out of the blue.
    p.receive(&[0x04; 17], 0, &mut r);
    assert_eq!(tx_all(&mut p), vec![vec![0x05, 0x08]]);
    // Mid-pairing: a DHKey Check while waiting for the public key.
    p.receive(&PREQ_SC, 10, &mut r);
    tx_all(&mut p);
    events(&mut p);
    assert!(p.is_pairing());
    p.receive(&[0x0D; 17], 20, &mut r);
    assert_eq!(tx_all(&mut p), vec![vec![0x05, 0x08]]);
    assert_eq!(events(&mut p), vec![SmpEvent::Failed { reason: Reason::UnspecifiedReason, remote: false }]);
    assert!(!p.is_pairing());
    assert_eq!(p.poll_timeout(), None);
}

#[test]
fn bad_pdus_get_command_not_supported_or_invalid_parameters() {
    let mut p = peripheral(SmpConfig::default());
    let mut r = rng();
    p.receive(&[0x0F, 0x00], 0, &mut r);
    p.receive(&[0x03, 0x00], 0, &mut r);
    p.receive(&[0x0B, 0x01], 0, &mut r); // Security Request to a peripheral
    p.receive(&[0x05, 0x08], 0, &mut r); // Pairing Failed while idle: ignored
    assert_eq!(tx_all(&mut p), vec![vec![0x05, 0x07], vec![0x05, 0x0A], vec![0x05, 0x07]]);
    let mut c = central(SmpConfig::default());
    c.receive(&PREQ_SC, 0, &mut r); // Pairing Request to a central
    assert_eq!(tx_all(&mut c), vec![vec![0x05, 0x07]]);
}

#[test]
fn remote_pairing_failed_is_reported() {
    let mut c = central(SmpConfig::default());
    c.start(0, &mut rng()).unwrap();
    tx_all(&mut c);
    c.receive(&[0x05, 0x05], 10, &mut rng());
    assert!(tx_all(&mut c).is_empty());
    assert_eq!(events(&mut c), vec![SmpEvent::Failed { reason: Reason::PairingNotSupported, remote: true }]);
    assert!(!c.is_pairing());
}

#[test]
fn timeout_after_30_s_closes_smp_on_the_link() {
    let mut c = central(SmpConfig::default());
    let mut r = rng();
    c.start(1_000, &mut r).unwrap();
    tx_all(&mut c);
    assert_eq!(c.poll_timeout(), Some(1_000 + SMP_TIMEOUT_US));
    c.handle_timeout(SMP_TIMEOUT_US);
    assert!(events(&mut c).is_empty());
    // A received PDU restarts the timer.
    c.receive(&PRSP_SC, 5_000_000, &mut r);
    tx_all(&mut c);
    assert_eq!(c.poll_timeout(), Some(5_000_000 + SMP_TIMEOUT_US));
    c.handle_timeout(5_000_000 + SMP_TIMEOUT_US);
    assert_eq!(events(&mut c), vec![SmpEvent::Timeout]);
    assert!(c.is_timed_out() && !c.is_pairing());
    assert_eq!(c.poll_timeout(), None);
    // No more SMP on this link.
    c.receive(&[0x0B, 0x01], 40_000_000, &mut r);
    assert!(tx_all(&mut c).is_empty() && events(&mut c).is_empty());
    assert_eq!(c.start(40_000_000, &mut r), Err(SmpError::TimedOut));
}

#[test]
fn peripheral_security_request_then_timeout() {
    let mut p = peripheral(SmpConfig { mitm: true, io_capability: IoCapability::DisplayOnly, ..SmpConfig::default() });
    p.start(0, &mut rng()).unwrap();
    assert_eq!(tx_all(&mut p), vec![vec![0x0B, 0x0D]]);
    assert_eq!(p.start(1, &mut rng()), Err(SmpError::Busy));
    p.handle_timeout(SMP_TIMEOUT_US);
    assert_eq!(events(&mut p), vec![SmpEvent::Timeout]);
    p.receive(&PREQ_SC, SMP_TIMEOUT_US + 1, &mut rng());
    assert!(tx_all(&mut p).is_empty());
}

#[test]
fn central_reports_security_request() {
    let mut c = central(SmpConfig::default());
    c.receive(&[0x0B, 0x0D], 0, &mut rng());
    assert_eq!(events(&mut c), vec![SmpEvent::SecurityRequest { auth_req: AuthReq(0x0D) }]);
    assert!(tx_all(&mut c).is_empty());
}

#[test]
fn repeated_attempts_back_off_doubles() {
    let cfg = SmpConfig { min_key_size: 16, retry_interval_us: 2_000_000, ..SmpConfig::default() };
    let mut p = peripheral(cfg);
    let mut r = rng();
    let small = [0x01, 0x03, 0x00, 0x09, 0x0A, 0x03, 0x03];
    p.receive(&small, 0, &mut r);
    assert_eq!(tx_all(&mut p), vec![vec![0x05, 0x06]]);
    // Within 2 s: Repeated Attempts, whatever the request.
    p.receive(&PREQ_SC, 1_999_999, &mut r);
    assert_eq!(tx_all(&mut p), vec![vec![0x05, 0x09]]);
    // After 2 s the request is examined again, and fails again: the interval doubles to 4 s.
    p.receive(&small, 2_000_000, &mut r);
    assert_eq!(tx_all(&mut p), vec![vec![0x05, 0x06]]);
    p.receive(&PREQ_SC, 5_999_999, &mut r);
    assert_eq!(tx_all(&mut p), vec![vec![0x05, 0x09]]);
    p.receive(&PREQ_SC, 6_000_000, &mut r);
    assert_eq!(tx_all(&mut p)[0][0], 0x02);
}

#[test]
fn sc_only_refuses_legacy() {
    let mut p = peripheral(SmpConfig { sc_only: true, ..SmpConfig::default() });
    p.receive(&[0x01, 0x03, 0x00, 0x01, 0x10, 0x03, 0x03], 0, &mut rng());
    assert_eq!(tx_all(&mut p), vec![vec![0x05, 0x03]]);
    let mut link = Link::new(
        SmpConfig { sc_only: true, ..SmpConfig::default() },
        config(IoCapability::NoInputNoOutput, false, false),
    );
    link.start();
    assert_eq!(link.failed_on_air(), vec![(true, 0x03)]);
}

#[test]
fn mitm_required_but_just_works_is_authentication_requirements() {
    let mut link =
        Link::new(config(IoCapability::DisplayYesNo, false, true), config(IoCapability::NoInputNoOutput, true, true));
    link.start();
    assert_eq!(link.failed_on_air(), vec![(false, 0x03)]);
}

#[test]
fn method_tables() {
    use IoCapability::*;
    use PairingMethod::*;
    let params = |io, mitm, oob| PairingParams {
        io_capability: io,
        oob_data_present: oob,
        auth_req: AuthReq::new(true, mitm, true, false, false),
        max_key_size: 16,
        initiator_keys: KeyDistribution::NONE,
        responder_keys: KeyDistribution::NONE,
    };
    let pk = |i, r| PasskeyEntry { initiator_inputs: i, responder_inputs: r };
    let m = |sc, i, r| select_method(sc, &params(i, true, false), &params(r, false, false));
    assert_eq!(m(true, DisplayYesNo, DisplayYesNo), NumericComparison);
    assert_eq!(m(false, DisplayYesNo, DisplayYesNo), JustWorks);
    assert_eq!(m(true, KeyboardDisplay, KeyboardDisplay), NumericComparison);
    assert_eq!(m(false, KeyboardDisplay, KeyboardDisplay), pk(false, true));
    assert_eq!(m(false, KeyboardOnly, KeyboardOnly), pk(true, true));
    assert_eq!(m(true, KeyboardOnly, DisplayYesNo), pk(true, false));
    assert_eq!(m(true, DisplayOnly, KeyboardDisplay), pk(false, true));
    assert_eq!(m(true, KeyboardDisplay, NoInputNoOutput), JustWorks);
    // Neither side asks for MITM: Just Works whatever the IO.
    assert_eq!(select_method(true, &params(KeyboardOnly, false, false), &params(DisplayOnly, false, false)), JustWorks);
    // OOB: one flag suffices with SC, legacy needs both.
    assert_eq!(select_method(true, &params(KeyboardOnly, true, true), &params(DisplayOnly, false, false)), OutOfBand);
    assert_eq!(
        select_method(false, &params(KeyboardOnly, true, true), &params(DisplayOnly, false, false)),
        pk(true, false)
    );
    assert_eq!(
        select_method(false, &params(NoInputNoOutput, false, true), &params(NoInputNoOutput, false, true)),
        OutOfBand
    );
}

fn arb_pdu_bytes() -> impl Strategy<Value = Vec<u8>> {
    let lens = [0usize, 7, 7, 17, 17, 2, 17, 11, 17, 8, 17, 2, 65, 17, 2];
    prop_oneof![
        (0u8..=0x0E, any::<[u8; 65]>(), any::<bool>()).prop_map(move |(code, body, valid)| {
            let mut v = body.to_vec();
            v[0] = code;
            let len = if valid { lens[usize::from(code)].max(1) } else { usize::from(body[1] % 66) };
            v.truncate(len);
            // Keep IO capability and OOB flag plausible in pairing features.
            if valid && (code == 1 || code == 2) {
                v[1] %= 5;
                v[2] &= 1;
                v[4] = 7 + v[4] % 10;
            }
            v
        }),
        proptest::collection::vec(any::<u8>(), 0..70),
    ]
}

#[derive(Debug, Clone)]
enum Action {
    Receive(bool, Vec<u8>),
    Start(bool),
    Passkey(bool, Option<u32>),
    Numeric(bool, bool),
    Encrypted(bool, bool, u8),
    Tick(u64),
}

fn arb_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (any::<bool>(), arb_pdu_bytes()).prop_map(|(c, b)| Action::Receive(c, b)),
        1 => any::<bool>().prop_map(Action::Start),
        1 => (any::<bool>(), proptest::option::of(0u32..1_100_000)).prop_map(|(c, p)| Action::Passkey(c, p)),
        1 => (any::<bool>(), any::<bool>()).prop_map(|(c, a)| Action::Numeric(c, a)),
        1 => (any::<bool>(), any::<bool>(), 0u8..17).prop_map(|(c, e, k)| Action::Encrypted(c, e, k)),
        1 => (0u64..40_000_000).prop_map(Action::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random PDU sequences and user actions never panic either role, and every PDU sent decodes.
    #[test]
    fn random_sequences_never_panic(actions in proptest::collection::vec(arb_action(), 0..40), sc in any::<bool>()) {
        let cfg = config(IoCapability::KeyboardDisplay, false, sc);
        let mut link = Link::new(cfg.clone(), cfg);
        for a in actions {
            let now = link.now;
            match a {
                Action::Receive(true, b) => link.c.receive(&b, now, &mut link.c_rng),
                Action::Receive(false, b) => link.p.receive(&b, now, &mut link.p_rng),
                Action::Start(true) => { let _ = link.c.start(now, &mut link.c_rng); }
                Action::Start(false) => { let _ = link.p.start(now, &mut link.p_rng); }
                Action::Passkey(true, p) => link.c.enter_passkey(p, now),
                Action::Passkey(false, p) => link.p.enter_passkey(p, now),
                Action::Numeric(true, x) => link.c.confirm_numeric(x, now),
                Action::Numeric(false, x) => link.p.confirm_numeric(x, now),
                Action::Encrypted(true, e, k) => link.c.encryption_changed(e, k, now),
                Action::Encrypted(false, e, k) => link.p.encryption_changed(e, k, now),
                Action::Tick(dt) => {
                    link.now += dt;
                    link.c.handle_timeout(link.now);
                    link.p.handle_timeout(link.now);
                }
            }
            for smp in [&mut link.c, &mut link.p] {
                while let Some(pdu) = smp.poll_transmit() {
                    prop_assert!(SmpPdu::decode(&pdu).is_ok());
                }
                while smp.poll_event().is_some() {}
            }
        }
    }

    /// Whatever the two IO capabilities and MITM wishes, a back-to-back pairing either completes
    /// with the same LTK on both sides or fails with one Pairing Failed on the air.
    #[test]
    fn any_features_pair_or_fail_cleanly(cio in 0u8..5, pio in 0u8..5, cm in any::<bool>(), pm in any::<bool>(), sc in any::<bool>()) {
        let mut link = Link::new(
            config(IoCapability::from_u8(cio).unwrap(), cm, sc),
            config(IoCapability::from_u8(pio).unwrap(), pm, sc),
        );
        link.start();
        let key = passkey_shown(&link.c_events).or(passkey_shown(&link.p_events)).unwrap_or(314_159);
        if asked_passkey(&link.c_events) { link.c.enter_passkey(Some(key), link.now); link.pump(); }
        if asked_passkey(&link.p_events) { link.p.enter_passkey(Some(key), link.now); link.pump(); }
        if numeric(&link.c_events).is_some() {
            link.c.confirm_numeric(true, link.now);
            link.p.confirm_numeric(true, link.now);
            link.pump();
        }
        let failed = link.failed_on_air();
        if failed.is_empty() {
            let (c, p) = link.complete();
            prop_assert_eq!(c.ltk, p.ltk);
            prop_assert_eq!(&c.peer_ltk, &p.local_ltk);
        } else {
            prop_assert_eq!(failed.len(), 1);
            prop_assert_eq!(failed[0].1, 0x03);
        }
    }
}

/// Plays back given bytes first, then falls back to a generator.
struct ScriptedRng(Vec<u8>, TestRng);

impl SecureRandom for ScriptedRng {
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            *b = if self.0.is_empty() { next_byte(&mut self.1) } else { self.0.remove(0) };
        }
    }
}

fn next_byte(rng: &mut TestRng) -> u8 {
    let mut b = [0u8];
    rng.fill_bytes(&mut b);
    b[0]
}

/// Hex as written in the spec (most significant octet first) into little-endian order.
fn le<const N: usize>(spec: &str) -> [u8; N] {
    let digits: Vec<u8> = spec.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(core::str::from_utf8(&digits[2 * i..2 * i + 2]).unwrap(), 16).unwrap();
    }
    out.reverse();
    out
}

/// SC Just Works end to end with the Appendix D keys, nonces and addresses: both sides derive
/// the `f5` sample LTK (Core Vol 3 Part H Appendix D.3), having exchanged the sample public keys
/// and the `f4` commitment over the nonce N2.
#[test]
fn sc_exchange_matches_appendix_d() {
    let private_a = le::<32>("3f49f6d4 a3c55f38 74c9b3e3 d2103f50 4aff607b eb40b799 5899b8a6 cd3c1abd");
    let private_b = le::<32>("55188b3d 32f6bb9a 900afcfb eed4e72a 59cb9ac2 f19d7cfb 6b4fdd49 f47fc5fd");
    let n1 = le::<16>("d5cb8454 d177733e ffffb2ec 712baeab");
    let n2 = le::<16>("a6e8e7cc 25a75f6e 216583f7 ff3dc4cf");
    let a1 = le::<7>("00561237 37bfce");
    let a2 = le::<7>("00a71370 2dcfc1");
    let addr = |a: [u8; 7]| SmpAddress { addr_type: a[6], address: [a[0], a[1], a[2], a[3], a[4], a[5]] };
    let (ia, ra) = (addr(a1), addr(a2));
    assert_eq!(ia.to_f5(), a1);

    let cfg = SmpConfig { allow_debug_key: true, ..config(IoCapability::NoInputNoOutput, false, true) };
    let mut link = Link::new(cfg.clone(), cfg);
    link.c = Smp::new(
        LinkRole::Central,
        link.c.config.clone(),
        LinkAddresses { local: ia, peer: ra },
        identity(0x11, CENTRAL_ADDR),
    );
    link.p = Smp::new(
        LinkRole::Peripheral,
        link.p.config.clone(),
        LinkAddresses { local: ra, peer: ia },
        identity(0x22, PERIPHERAL_ADDR),
    );
    let key_a = KeyPair::from_secret(&private_a).unwrap();
    let key_b = KeyPair::from_secret(&private_b).unwrap();
    let (pka, pkb) = (*key_a.public_key(), *key_b.public_key());
    link.c.set_key_pair(key_a);
    link.p.set_key_pair(key_b);
    // The first random octets each side draws are its nonce (Na = N1, Nb = N2).
    let mut c_rng = ScriptedRng(n1.to_vec(), TestRng(3));
    link.c.start(link.now, &mut c_rng).unwrap();
    link.p_rng = TestRng(4);
    let mut p_rng = ScriptedRng(n2.to_vec(), TestRng(4));
    let preq = link.c.poll_transmit().unwrap();
    link.p.receive(&preq, link.now, &mut p_rng);
    link.air.push((true, preq));
    link.pump();

    let (c, p) = link.complete();
    let ltk = le::<16>("69867911 69d7cd23 980522b5 94750a38");
    assert_eq!(c.ltk, Some(ltk));
    assert_eq!(p.ltk, Some(ltk));
    // What went over the air: the sample public keys, Cb = f4(PKbx, PKax, N2, 0), then N1 and N2.
    let sent = |code: u8, from_c: bool| {
        link.air.iter().find(|(c, b)| *c == from_c && b[0] == code).map(|(_, b)| b[1..].to_vec()).unwrap()
    };
    assert_eq!(sent(0x0C, true), pka.to_vec());
    assert_eq!(sent(0x0C, false), pkb.to_vec());
    let x = |pk: &[u8; 64]| -> [u8; 32] { pk[..32].try_into().unwrap() };
    assert_eq!(sent(0x03, false), crypto::f4(&x(&pkb), &x(&pka), &n2, 0).to_vec());
    assert_eq!(sent(0x04, true), n1.to_vec());
    assert_eq!(sent(0x04, false), n2.to_vec());
}

#[test]
fn user_answers_before_the_question_are_ignored() {
    let mut p = peripheral(config(IoCapability::DisplayYesNo, true, true));
    p.receive(&[0x01, 0x01, 0x00, 0x0D, 0x10, 0x00, 0x00], 0, &mut rng());
    assert_eq!(tx_all(&mut p)[0][0], 0x02);
    assert_eq!(p.pairing_method(), Some(PairingMethod::NumericComparison));
    p.confirm_numeric(false, 1);
    p.enter_passkey(Some(1), 1);
    p.enter_passkey(None, 1);
    assert!(tx_all(&mut p).is_empty());
    assert!(p.is_pairing());
}

#[test]
fn peripheral_app_approves_or_refuses_pairing() {
    let approve = SmpConfig { approve_pairing: true, ..config(IoCapability::NoInputNoOutput, false, true) };
    let mut link = Link::new(config(IoCapability::NoInputNoOutput, false, true), approve.clone());
    link.start();
    assert!(matches!(link.p_events[..], [SmpEvent::PairingRequest { .. }]));
    // Nothing answered yet: only the Pairing Request is on the air.
    assert_eq!(link.air.len(), 1);
    assert_eq!(link.p.pairing_method(), Some(PairingMethod::JustWorks));
    link.p.accept_pairing(true, link.now);
    link.pump();
    let (c, p) = link.complete();
    check_keys(c, p, true);

    let mut link = Link::new(config(IoCapability::NoInputNoOutput, false, true), approve);
    link.start();
    link.p.accept_pairing(false, link.now);
    link.pump();
    assert_eq!(link.failed_on_air(), vec![(false, 0x05)]);
    assert!(link.c_events.contains(&SmpEvent::Failed { reason: Reason::PairingNotSupported, remote: true }));
}

#[test]
fn keys_overtaking_the_encryption_change_are_kept() {
    for sc in [false, true] {
        let cfg = config(IoCapability::NoInputNoOutput, false, sc);
        let mut link = Link::new(cfg.clone(), cfg);
        link.peripheral_encrypts_first = true;
        link.start();
        let (c, p) = link.complete();
        check_keys(c, p, sc);
    }
}

#[test]
fn keys_before_encryption_are_not_trusted_when_encryption_fails() {
    let cfg = config(IoCapability::NoInputNoOutput, false, false);
    let mut link = Link::new(cfg.clone(), cfg);
    link.c.start(link.now, &mut link.c_rng).unwrap();
    // Run phase 1 and 2 by hand up to StartEncryption, then feed an early key and fail encryption.
    for _ in 0..10 {
        while let Some(pdu) = link.c.poll_transmit() {
            link.p.receive(&pdu, link.now, &mut link.p_rng);
        }
        while let Some(pdu) = link.p.poll_transmit() {
            link.c.receive(&pdu, link.now, &mut link.c_rng);
        }
    }
    assert!(events(&mut link.c).iter().any(|e| matches!(e, SmpEvent::StartEncryption { .. })));
    link.c.receive(&[0x06; 17], link.now, &mut link.c_rng);
    assert!(tx_all(&mut link.c).is_empty());
    link.c.encryption_changed(false, 0, link.now);
    assert_eq!(tx_all(&mut link.c), vec![vec![0x05, 0x08]]);
    assert_eq!(events(&mut link.c), vec![SmpEvent::Failed { reason: Reason::UnspecifiedReason, remote: false }]);
}

/// A peripheral's Security Request answered by encryption with a bonded key ends the request:
/// no pairing, no SMP timeout later (Core Vol 3 Part H §2.4.6).
#[test]
fn a_security_request_answered_by_bonded_encryption_ends_without_pairing() {
    let mut rng = TestRng(7);
    let mut p = peripheral(SmpConfig::default());
    p.start(0, &mut rng).unwrap();
    assert_eq!(p.poll_transmit().map(|v| v[0]), Some(0x0B), "Security Request sent");
    assert!(p.is_pairing() && p.poll_timeout().is_some());
    p.encryption_changed(true, 16, 1_000);
    assert!(!p.is_pairing(), "done");
    assert_eq!(p.poll_timeout(), None, "no SMP timeout pending");
    p.handle_timeout(40_000_000);
    assert_eq!(p.poll_event(), None, "no timeout event later");
    // A failed encryption leaves the request standing.
    let mut p = peripheral(SmpConfig::default());
    p.start(0, &mut rng).unwrap();
    p.encryption_changed(false, 0, 1_000);
    assert!(p.is_pairing());
}

/// SweynTooth "DHCheck Skipping": a central that never sends its DHKey Check and starts
/// encryption anyway finds no key on the peripheral, which never completes pairing and times
/// out (Core Vol 3 Part H §2.3.5.6.5).
#[test]
fn a_skipped_dhkey_check_gives_no_key_and_no_pairing() {
    let cfg = || config(IoCapability::NoInputNoOutput, false, true);
    let mut l = Link::new(cfg(), cfg());
    l.c.start(l.now, &mut l.c_rng).unwrap();
    let mut skipped = false;
    for _ in 0..100 {
        l.now += 100;
        let mut moved = false;
        while let Some(pdu) = l.c.poll_transmit() {
            moved = true;
            if pdu[0] == 0x0D {
                skipped = true;
                continue;
            }
            l.p.receive(&pdu, l.now, &mut l.p_rng);
        }
        while let Some(pdu) = l.p.poll_transmit() {
            moved = true;
            l.c.receive(&pdu, l.now, &mut l.c_rng);
        }
        while l.c.poll_event().is_some() {
            moved = true;
        }
        while let Some(e) = l.p.poll_event() {
            moved = true;
            assert!(!matches!(e, SmpEvent::Complete(_)), "{e:?}");
        }
        if !moved {
            break;
        }
    }
    assert!(skipped, "the central's DHKey Check was sent and dropped");
    assert_eq!(l.p.ltk_request([0; 8], 0), None, "no key without a verified DHKey Check");
    l.p.handle_timeout(l.now + SMP_TIMEOUT_US);
    assert_eq!(l.p.poll_event(), Some(SmpEvent::Timeout));
    assert_eq!(l.p.ltk_request([0; 8], 0), None);
}
