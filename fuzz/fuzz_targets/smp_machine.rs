//! Both roles of the SMP pairing machine fed arbitrary PDUs, user answers, encryption changes and
//! time, and relaying each other's PDUs: no panic, every PDU sent decodes, nothing is sent on a
//! link after the SMP timeout.
//!
//! Each side's P-256 key pair is made once per process and set with `Smp::set_key_pair` (as a
//! device with a long-lived key pair does): generating one per input cost more than everything
//! else the machine does, so the campaign's executions went to scalar multiplications instead of
//! the state machine. The peer's key is still checked and the DHKey computed per pairing.
//!
//! Input: a config octet (IO capability, MITM, SC, SC-only, keypress, approval bits), then records
//! `op, len, bytes[len]`; see `step` for the operations.
#![no_main]

use gattling_proto::smp::crypto::{KeyPair, SecureRandom};
use gattling_proto::smp::pairing::*;
use gattling_proto::smp::pdu::{IoCapability, KeyDistribution, SmpPdu};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

struct Rng(u64);

impl SecureRandom for Rng {
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = self.0 as u8;
        }
    }
}

struct Side {
    smp: Smp,
    rng: Rng,
    outbox: Vec<Vec<u8>>,
}

impl Side {
    /// Collects output and checks it: every PDU decodes, none after the timeout.
    fn drain(&mut self) {
        while let Some(pdu) = self.smp.poll_transmit() {
            assert!(!self.smp.is_timed_out(), "PDU sent after the SMP timeout");
            assert!(SmpPdu::decode(&pdu).is_ok(), "undecodable PDU sent: {pdu:?}");
            self.outbox.push(pdu);
        }
        while self.smp.poll_event().is_some() {}
    }
}

/// The two sides' key pairs, made once: secrets 0x11.. and 0x22.. are below the curve order.
fn key_pair(role: LinkRole) -> KeyPair {
    static KEYS: OnceLock<Option<[KeyPair; 2]>> = OnceLock::new();
    let keys =
        KEYS.get_or_init(|| Some([KeyPair::from_secret(&[0x11; 32]).ok()?, KeyPair::from_secret(&[0x22; 32]).ok()?]));
    let keys = keys.as_ref().expect("fixed secrets are valid P-256 scalars");
    keys[usize::from(role == LinkRole::Peripheral)].clone()
}

fn side(role: LinkRole, cfg: u8, seed: u64) -> Side {
    let a = SmpAddress { addr_type: 0, address: [1, 2, 3, 4, 5, 6] };
    let b = SmpAddress { addr_type: 1, address: [6, 5, 4, 3, 2, 0xC1] };
    let (local, peer) = if role == LinkRole::Central { (a, b) } else { (b, a) };
    let config = SmpConfig {
        io_capability: IoCapability::from_u8((cfg & 7) % 5).unwrap_or(IoCapability::NoInputNoOutput),
        mitm: cfg & 0x08 != 0,
        secure_connections: cfg & 0x10 != 0,
        sc_only: cfg & 0x20 != 0,
        keypress: cfg & 0x40 != 0,
        approve_pairing: cfg & 0x80 != 0,
        local_keys: KeyDistribution::ALL_LE,
        peer_keys: KeyDistribution::ALL_LE,
        ..SmpConfig::default()
    };
    let identity = LocalIdentity { irk: [cfg; 16], address: local, csrk: None };
    let mut smp = Smp::new(role, config, LinkAddresses { local, peer }, identity);
    smp.set_key_pair(key_pair(role));
    Side { smp, rng: Rng(seed), outbox: Vec::new() }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, mut rest)) = data.split_first() else { return };
    let mut sides =
        [side(LinkRole::Central, cfg, 0x9E37_79B9_7F4A_7C15), side(LinkRole::Peripheral, cfg, 0xD1B5_4A32_D192_ED03)];
    let mut now = 0u64;
    while let [op, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        let who = usize::from(op & 1);
        let arg = bytes.first().copied().unwrap_or(0);
        now += u64::from(op >> 4) * 1_000_000;
        let s = &mut sides[who];
        match (op >> 1) & 7 {
            0 => s.smp.receive(bytes, now, &mut s.rng),
            1 => {
                let _ = s.smp.start(now, &mut s.rng);
            }
            2 => {
                // Relay everything the other side sent.
                let pending: Vec<Vec<u8>> = core::mem::take(&mut sides[1 - who].outbox);
                let s = &mut sides[who];
                for pdu in pending {
                    s.smp.receive(&pdu, now, &mut s.rng);
                }
            }
            3 => {
                let key = bytes.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) % 1_100_000);
                s.smp.enter_passkey(key, now);
            }
            4 => s.smp.confirm_numeric(arg & 1 != 0, now),
            5 => s.smp.encryption_changed(arg & 0x80 != 0, arg & 0x1F, now),
            6 => {
                let _ = s.smp.ltk_request([0; 8], 0);
                let _ = s.smp.poll_timeout();
                s.smp.handle_timeout(now);
            }
            _ => match arg % 3 {
                0 => {
                    let oob = s.smp.generate_local_oob(&mut Rng(u64::from(arg) + 1));
                    sides[1 - who].smp.set_peer_oob(Some(oob));
                }
                1 => s.smp.set_legacy_oob_tk(Some([arg; 16])),
                _ => s.smp.accept_pairing(arg & 4 != 0, now),
            },
        }
        for s in sides.iter_mut() {
            s.drain();
        }
    }
});
