//! LE privacy building blocks: random address kinds, resolvable private addresses (RPAs), identity
//! resolution and RPA rotation (Core Vol 6 Part B §1.3.2, Vol 3 Part C §10.7).
//!
//! Sans-IO like the rest of the core: randomness comes from a [`SecureRandom`] and time is a `u64`
//! of microseconds given by the caller.
//!
//! # Byte order
//!
//! A [`BdAddr`] is little-endian as HCI carries it, so for an RPA `addr.0[0..3]` is the 24-bit
//! `hash` and `addr.0[3..6]` is `prand`, whose two most significant bits (`addr.0[5] >> 6`) are
//! `0b01` (Vol 6 Part B §1.3.2.2). IRKs are little-endian too, as SMP distributes them
//! (Core Vol 3 Part H §3.6.4) and as [`ah`] takes them.

use super::{Address, AddressType, BdAddr};
use crate::smp::crypto::{ah, SecureRandom};
use alloc::vec::Vec;
use core::fmt;

/// The default RPA rotation interval, TGAP(private_addr_int) = 15 minutes, in microseconds
/// (Core Vol 3 Part C Appendix A).
pub const DEFAULT_RPA_INTERVAL_US: u64 = 15 * 60 * 1_000_000;

/// The sub-type of a random device address, from its two most significant bits (Core Vol 6 Part B §1.3.2).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum RandomAddressKind {
    /// `0b11`: a static device address, the same until power cycle (§1.3.2.1).
    Static,
    /// `0b01`: a resolvable private address, `hash || prand` from an IRK (§1.3.2.2).
    Resolvable,
    /// `0b00`: a non-resolvable private address (§1.3.2.2).
    NonResolvable,
}

impl RandomAddressKind {
    /// Classifies a random address by its two most significant bits; `None` for the reserved
    /// `0b10` (Core Vol 6 Part B §1.3.2).
    pub fn of(addr: BdAddr) -> Option<Self> {
        match addr.0[5] >> 6 {
            0b11 => Some(RandomAddressKind::Static),
            0b01 => Some(RandomAddressKind::Resolvable),
            0b00 => Some(RandomAddressKind::NonResolvable),
            _ => None,
        }
    }

    /// True when `addr` is of this kind and its random part is neither all zeros nor all ones, as
    /// Core Vol 6 Part B §1.3.2.1 and §1.3.2.2 require (for an RPA the random part is the 22 random
    /// bits of `prand`; its hash is not checked here, see [`resolve_rpa`]).
    pub fn is_valid(self, addr: BdAddr) -> bool {
        if RandomAddressKind::of(addr) != Some(self) {
            return false;
        }
        let b = addr.0;
        match self {
            RandomAddressKind::Resolvable => random_part_ok(&[b[3], b[4], b[5] & 0x3F], 22),
            RandomAddressKind::Static | RandomAddressKind::NonResolvable => {
                random_part_ok(&[b[0], b[1], b[2], b[3], b[4], b[5] & 0x3F], 46)
            }
        }
    }
}

/// True when the low `bits` bits of `bytes` (little-endian) are neither all zeros nor all ones.
fn random_part_ok(bytes: &[u8], bits: u32) -> bool {
    let ones: u32 = bytes.iter().map(|b| b.count_ones()).sum();
    ones != 0 && ones != bits
}

/// The type of an identity address: public, or static random (Core Vol 3 Part H §3.6.5).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum IdentityAddressType {
    /// A public device address (Core Vol 6 Part B §1.3.1).
    Public,
    /// A static random device address (Core Vol 6 Part B §1.3.2.1).
    StaticRandom,
}

/// A device's identity address: the stable address a bond is keyed by, as distributed in SMP
/// Identity Address Information (Core Vol 3 Part H §3.6.5; Part C §10.7).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct IdentityAddress {
    /// Public or static random.
    pub kind: IdentityAddressType,
    /// The 48-bit address.
    pub addr: BdAddr,
}

impl IdentityAddress {
    /// A public identity address (Core Vol 6 Part B §1.3.1).
    pub fn public(addr: BdAddr) -> Self {
        IdentityAddress { kind: IdentityAddressType::Public, addr }
    }

    /// A static random identity address; `None` unless `addr` is a valid static address
    /// (top bits `0b11`, random part neither all zeros nor all ones; Core Vol 6 Part B §1.3.2.1).
    pub fn static_random(addr: BdAddr) -> Option<Self> {
        RandomAddressKind::Static
            .is_valid(addr)
            .then_some(IdentityAddress { kind: IdentityAddressType::StaticRandom, addr })
    }

    /// The identity address an HCI address is, if it is one: public addresses and (valid) static
    /// random ones, including the resolved identity types 0x02/0x03 (Core Vol 4 Part E §7.7.65.10).
    pub fn from_address(address: Address) -> Option<Self> {
        match address.kind {
            AddressType::Public | AddressType::PublicIdentity => Some(Self::public(address.addr)),
            AddressType::Random | AddressType::RandomIdentity => Self::static_random(address.addr),
        }
    }

    /// This identity as an HCI address of type public (0x00) or random (0x01) (Core Vol 4 Part E §7.8.12).
    pub fn to_address(self) -> Address {
        let kind = match self.kind {
            IdentityAddressType::Public => AddressType::Public,
            IdentityAddressType::StaticRandom => AddressType::Random,
        };
        Address { addr: self.addr, kind }
    }
}

impl fmt::Display for IdentityAddress {
    /// `C0:11:22:33:44:55/random` or `00:11:22:33:44:55/public`, like [`Address`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = match self.kind {
            IdentityAddressType::Public => "public",
            IdentityAddressType::StaticRandom => "random",
        };
        write!(f, "{}/{}", self.addr, t)
    }
}

/// Draws random bytes into a 6-octet address until `fix` makes it valid for `kind`.
fn draw_address(rng: &mut dyn SecureRandom, kind: RandomAddressKind, fix: u8) -> BdAddr {
    loop {
        let mut a = [0u8; 6];
        rng.fill_bytes(&mut a);
        a[5] = (a[5] & 0x3F) | fix;
        let addr = BdAddr(a);
        if kind.is_valid(addr) {
            return addr;
        }
    }
}

/// A fresh static random device address from `rng` (Core Vol 6 Part B §1.3.2.1, Vol 3 Part C §10.8.1).
pub fn generate_static_address(rng: &mut dyn SecureRandom) -> BdAddr {
    draw_address(rng, RandomAddressKind::Static, 0xC0)
}

/// A fresh non-resolvable private address from `rng` (Core Vol 6 Part B §1.3.2.2, Vol 3 Part C §10.8.2.1).
pub fn generate_nrpa(rng: &mut dyn SecureRandom) -> BdAddr {
    draw_address(rng, RandomAddressKind::NonResolvable, 0x00)
}

/// A fresh random Identity Resolving Key from `rng` (Core Vol 3 Part H §2.4.2.1), never all zeros,
/// which a resolving list takes as "no IRK" (Core Vol 4 Part E §7.8.38).
pub fn generate_irk(rng: &mut dyn SecureRandom) -> [u8; 16] {
    loop {
        let mut irk = [0u8; 16];
        rng.fill_bytes(&mut irk);
        if irk != [0; 16] {
            return irk;
        }
    }
}

/// A fresh resolvable private address for `irk`: a random `prand` (top bits `0b01`, random part
/// neither all zeros nor all ones) and `hash = ah(irk, prand)` (Core Vol 6 Part B §1.3.2.2,
/// Vol 3 Part C §10.8.2.2).
pub fn generate_rpa(irk: &[u8; 16], rng: &mut dyn SecureRandom) -> BdAddr {
    loop {
        let mut prand = [0u8; 3];
        rng.fill_bytes(&mut prand);
        prand[2] = (prand[2] & 0x3F) | 0x40;
        if random_part_ok(&[prand[0], prand[1], prand[2] & 0x3F], 22) {
            let hash = ah(irk, &prand);
            return BdAddr([hash[0], hash[1], hash[2], prand[0], prand[1], prand[2]]);
        }
    }
}

/// True when `addr` is a resolvable private address generated from `irk`: its top bits are `0b01`
/// and `ah(irk, prand)` equals its `hash` (Core Vol 6 Part B §1.3.2.3, Vol 3 Part C §10.8.2.3).
pub fn resolve_rpa(irk: &[u8; 16], addr: BdAddr) -> bool {
    let a = addr.0;
    if RandomAddressKind::of(addr) != Some(RandomAddressKind::Resolvable) {
        return false;
    }
    let hash = ah(irk, &[a[3], a[4], a[5]]);
    // Compare without an early exit.
    (hash[0] ^ a[0]) | (hash[1] ^ a[1]) | (hash[2] ^ a[2]) == 0
}

/// The host's resolving list: (peer IRK, peer identity) pairs that map a peer's resolvable private
/// address back to its identity address (Core Vol 3 Part C §10.7; Vol 6 Part B §1.3.2.3).
#[derive(Clone, Default)]
pub struct Resolver {
    entries: Vec<([u8; 16], IdentityAddress)>,
}

impl fmt::Debug for Resolver {
    /// Lists the identities only; IRKs are secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.entries.iter().map(|(_, id)| id)).finish()
    }
}

impl Resolver {
    /// An empty resolving list (Core Vol 3 Part C §10.7).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `identity` with its `irk`, replacing the IRK of an identity already listed
    /// (Core Vol 3 Part C §10.7).
    pub fn add(&mut self, irk: [u8; 16], identity: IdentityAddress) {
        match self.entries.iter_mut().find(|(_, id)| *id == identity) {
            Some(entry) => entry.0 = irk,
            None => self.entries.push((irk, identity)),
        }
    }

    /// Removes `identity`; true when it was listed (Core Vol 3 Part C §10.7).
    pub fn remove(&mut self, identity: &IdentityAddress) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(_, id)| id != identity);
        self.entries.len() != before
    }

    /// The number of listed identities.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The identity whose IRK resolves `addr`, when `addr` is a random resolvable private address
    /// (Core Vol 6 Part B §1.3.2.3). Other addresses are not resolvable and give `None`.
    pub fn resolve(&self, addr: Address) -> Option<IdentityAddress> {
        if addr.kind != AddressType::Random {
            return None;
        }
        self.entries.iter().find(|(irk, _)| resolve_rpa(irk, addr.addr)).map(|(_, id)| *id)
    }

    /// The identity `addr` belongs to: itself when it is a listed identity address, else the one
    /// its RPA resolves to (Core Vol 3 Part C §10.7).
    pub fn identity_of(&self, addr: Address) -> Option<IdentityAddress> {
        if let Some(id) = IdentityAddress::from_address(addr) {
            if self.entries.iter().any(|(_, listed)| *listed == id) {
                return Some(id);
            }
        }
        self.resolve(addr)
    }
}

/// Sans-IO rotation of our own resolvable private address every `interval` microseconds
/// (TGAP(private_addr_int), Core Vol 3 Part C §10.7 and Appendix A).
///
/// Call [`RpaRotation::handle_timeout`] once [`RpaRotation::poll_timeout`] has passed; the first
/// call makes the first address. The IRK is kept private ([`fmt::Debug`] does not show it).
#[derive(Clone)]
pub struct RpaRotation {
    irk: [u8; 16],
    interval_us: u64,
    current: Option<BdAddr>,
    next_at: Option<u64>,
}

impl fmt::Debug for RpaRotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpaRotation")
            .field("interval_us", &self.interval_us)
            .field("current", &self.current)
            .field("next_at", &self.next_at)
            .finish_non_exhaustive()
    }
}

impl RpaRotation {
    /// A rotation for our `irk` every `interval_us` microseconds (at least 1), with no address yet
    /// (Core Vol 3 Part C §10.7).
    pub fn new(irk: [u8; 16], interval_us: u64) -> Self {
        RpaRotation { irk, interval_us: interval_us.max(1), current: None, next_at: None }
    }

    /// A rotation every [`DEFAULT_RPA_INTERVAL_US`] (15 minutes, Core Vol 3 Part C Appendix A).
    pub fn with_default_interval(irk: [u8; 16]) -> Self {
        Self::new(irk, DEFAULT_RPA_INTERVAL_US)
    }

    /// The rotation interval in microseconds (TGAP(private_addr_int), Core Vol 3 Part C Appendix A).
    pub fn interval_us(&self) -> u64 {
        self.interval_us
    }

    /// The address in use, `None` before the first [`RpaRotation::handle_timeout`].
    pub fn current(&self) -> Option<BdAddr> {
        self.current
    }

    /// When to call [`RpaRotation::handle_timeout`] next: `Some(0)` (now) before the first
    /// address, else the time the current address expires (Core Vol 3 Part C §10.7).
    pub fn poll_timeout(&self) -> Option<u64> {
        Some(self.next_at.unwrap_or(0))
    }

    /// At or after [`RpaRotation::poll_timeout`]: a new RPA, valid until `now + interval`; the
    /// caller sets it in the controller (LE Set Random Address). Earlier calls change nothing and
    /// give `None` (Core Vol 3 Part C §10.7).
    pub fn handle_timeout(&mut self, now: u64, rng: &mut dyn SecureRandom) -> Option<BdAddr> {
        match self.next_at {
            Some(at) if now < at => None,
            _ => Some(self.rotate(now, rng)),
        }
    }

    /// A new RPA right away (for instance when advertising restarts), valid until `now + interval`
    /// (Core Vol 3 Part C §10.7).
    pub fn rotate(&mut self, now: u64, rng: &mut dyn SecureRandom) -> BdAddr {
        let mut addr = generate_rpa(&self.irk, rng);
        // A new address differs from the old one; redraw the (rare) repeat.
        while Some(addr) == self.current {
            addr = generate_rpa(&self.irk, rng);
        }
        self.current = Some(addr);
        self.next_at = Some(now.saturating_add(self.interval_us));
        addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A deterministic generator (xorshift) for tests, seeded by the caller.
    struct TestRng(u64);

    impl SecureRandom for TestRng {
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for b in dest {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                *b = self.0 as u8;
            }
        }
    }

    /// Replays fixed byte strings, one per `fill_bytes` call.
    struct Script<'a>(&'a [&'a [u8]]);

    impl SecureRandom for Script<'_> {
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            let (first, rest) = self.0.split_first().unwrap();
            dest.copy_from_slice(first);
            self.0 = rest;
        }
    }

    /// Core Vol 3 Part H Appendix D.7: IRK ec0234a3 57c8ad05 341010a6 0a397d9b (little-endian here).
    const IRK: [u8; 16] =
        [0x9b, 0x7d, 0x39, 0x0a, 0xa6, 0x10, 0x10, 0x34, 0x05, 0xad, 0xc8, 0x57, 0xa3, 0x34, 0x02, 0xec];

    /// The sample data's RPA: prand 0x708194, hash 0x0dfbaa, so 70:81:94:0D:FB:AA.
    fn sample_rpa() -> BdAddr {
        "70:81:94:0D:FB:AA".parse().unwrap()
    }

    #[test]
    fn appendix_d7_sample_resolves_and_generates() {
        assert!(resolve_rpa(&IRK, sample_rpa()));
        let mut other = IRK;
        other[0] ^= 1;
        assert!(!resolve_rpa(&other, sample_rpa()));
        // Generation with prand 0x708194 gives the sample address.
        let mut rng = Script(&[&[0x94, 0x81, 0x70]]);
        assert_eq!(generate_rpa(&IRK, &mut rng), sample_rpa());
        // A flipped hash bit or a non-RPA with the same bits does not resolve.
        let mut bad = sample_rpa();
        bad.0[0] ^= 0x01;
        assert!(!resolve_rpa(&IRK, bad));
        let mut not_rpa = sample_rpa();
        not_rpa.0[5] |= 0xC0;
        assert!(!resolve_rpa(&IRK, not_rpa));
    }

    #[test]
    fn classification_by_top_bits() {
        let a = |s: &str| s.parse::<BdAddr>().unwrap();
        assert_eq!(RandomAddressKind::of(a("C0:11:22:33:44:55")), Some(RandomAddressKind::Static));
        assert_eq!(RandomAddressKind::of(a("70:81:94:0D:FB:AA")), Some(RandomAddressKind::Resolvable));
        assert_eq!(RandomAddressKind::of(a("3F:11:22:33:44:55")), Some(RandomAddressKind::NonResolvable));
        assert_eq!(RandomAddressKind::of(a("80:11:22:33:44:55")), None);
        assert!(RandomAddressKind::Static.is_valid(a("C0:11:22:33:44:55")));
        assert!(!RandomAddressKind::Static.is_valid(a("C0:00:00:00:00:00")));
        assert!(!RandomAddressKind::Static.is_valid(a("FF:FF:FF:FF:FF:FF")));
        assert!(!RandomAddressKind::Static.is_valid(a("70:81:94:0D:FB:AA")));
        assert!(!RandomAddressKind::NonResolvable.is_valid(a("00:00:00:00:00:00")));
        assert!(!RandomAddressKind::NonResolvable.is_valid(a("3F:FF:FF:FF:FF:FF")));
        // An RPA's prand random part all zeros or all ones, whatever the hash.
        assert!(!RandomAddressKind::Resolvable.is_valid(a("40:00:00:12:34:56")));
        assert!(!RandomAddressKind::Resolvable.is_valid(a("7F:FF:FF:12:34:56")));
        assert!(RandomAddressKind::Resolvable.is_valid(a("40:00:01:00:00:00")));
    }

    #[test]
    fn generation_retries_invalid_draws() {
        // prand all zeros, then all ones (after the top bits are forced), then valid.
        let mut rng = Script(&[&[0, 0, 0], &[0xff, 0xff, 0xff], &[0x94, 0x81, 0x70]]);
        assert_eq!(generate_rpa(&IRK, &mut rng), sample_rpa());
        let mut rng = Script(&[&[0; 6], &[0xff; 6], &[0x55, 0x44, 0x33, 0x22, 0x11, 0x00]]);
        assert_eq!(generate_static_address(&mut rng), "C0:11:22:33:44:55".parse().unwrap());
        let mut rng = Script(&[&[0; 6], &[0xff, 0xff, 0xff, 0xff, 0xff, 0x3f], &[1, 2, 3, 4, 5, 0xff]]);
        assert_eq!(generate_nrpa(&mut rng), BdAddr([1, 2, 3, 4, 5, 0x3f]));
        let mut rng = Script(&[&[0; 16], &[7; 16]]);
        assert_eq!(generate_irk(&mut rng), [7; 16]);
    }

    #[test]
    fn identity_addresses() {
        let s: BdAddr = "C0:11:22:33:44:55".parse().unwrap();
        let id = IdentityAddress::static_random(s).unwrap();
        assert_eq!(alloc::format!("{id}"), "C0:11:22:33:44:55/random");
        assert_eq!(IdentityAddress::static_random(sample_rpa()), None);
        let random = Address { addr: s, kind: AddressType::Random };
        assert_eq!(IdentityAddress::from_address(random), Some(id));
        assert_eq!(id.to_address(), random);
        let p = Address { addr: sample_rpa(), kind: AddressType::PublicIdentity };
        assert_eq!(IdentityAddress::from_address(p), Some(IdentityAddress::public(sample_rpa())));
        assert_eq!(IdentityAddress::from_address(Address { addr: sample_rpa(), kind: AddressType::Random }), None);
    }

    #[test]
    fn resolver_maps_rpas_to_identities() {
        let alice = IdentityAddress::public("00:11:22:33:44:55".parse().unwrap());
        let bob = IdentityAddress::static_random("C0:11:22:33:44:55".parse().unwrap()).unwrap();
        let mut r = Resolver::new();
        assert!(r.is_empty());
        r.add([1; 16], alice);
        r.add([2; 16], bob);
        r.add(IRK, alice); // replaces alice's IRK
        assert_eq!(r.len(), 2);
        let rpa = Address { addr: sample_rpa(), kind: AddressType::Random };
        assert_eq!(r.resolve(rpa), Some(alice));
        assert_eq!(r.identity_of(rpa), Some(alice));
        // A public address with the same bits is not an RPA.
        assert_eq!(r.resolve(Address { addr: sample_rpa(), kind: AddressType::Public }), None);
        // Identity addresses map to themselves when listed.
        assert_eq!(r.identity_of(bob.to_address()), Some(bob));
        assert_eq!(
            r.identity_of(Address { addr: "C0:99:22:33:44:55".parse().unwrap(), kind: AddressType::Random }),
            None
        );
        // Bob's RPAs resolve to bob.
        let bobs = generate_rpa(&[2; 16], &mut TestRng(9));
        assert_eq!(r.resolve(Address { addr: bobs, kind: AddressType::Random }), Some(bob));
        assert!(r.remove(&alice));
        assert!(!r.remove(&alice));
        assert_eq!(r.resolve(rpa), None);
        assert!(!alloc::format!("{r:?}").contains("2, 2"), "Debug shows no IRK: {r:?}");
    }

    #[test]
    fn rotation_follows_the_interval() {
        let mut rot = RpaRotation::new(IRK, 1_000);
        let mut rng = TestRng(42);
        assert_eq!(rot.current(), None);
        assert_eq!(rot.poll_timeout(), Some(0));
        let first = rot.handle_timeout(5, &mut rng).unwrap();
        assert!(resolve_rpa(&IRK, first));
        assert_eq!(rot.current(), Some(first));
        assert_eq!(rot.poll_timeout(), Some(1_005));
        assert_eq!(rot.handle_timeout(1_004, &mut rng), None);
        assert_eq!(rot.current(), Some(first));
        let second = rot.handle_timeout(1_005, &mut rng).unwrap();
        assert_ne!(second, first);
        assert!(resolve_rpa(&IRK, second));
        assert_eq!(rot.poll_timeout(), Some(2_005));
        // Late: the next deadline counts from the handling time.
        let third = rot.handle_timeout(10_000, &mut rng).unwrap();
        assert_eq!(rot.current(), Some(third));
        assert_eq!(rot.poll_timeout(), Some(11_000));
        let forced = rot.rotate(10_500, &mut rng);
        assert_ne!(forced, third);
        assert_eq!(rot.poll_timeout(), Some(11_500));
        assert_eq!(RpaRotation::with_default_interval(IRK).interval_us(), 900_000_000);
        assert_eq!(RpaRotation::new(IRK, 0).interval_us(), 1);
    }

    #[test]
    fn rotation_redraws_a_repeated_address() {
        let mut rot = RpaRotation::new(IRK, 10);
        let same: &[u8] = &[0x94, 0x81, 0x70];
        let mut rng = Script(&[same, same, &[0x95, 0x81, 0x70]]);
        assert_eq!(rot.handle_timeout(0, &mut rng), Some(sample_rpa()));
        let next = rot.handle_timeout(10, &mut rng).unwrap();
        assert_eq!(&next.0[3..], &[0x95, 0x81, 0x70]);
    }

    proptest! {
        #[test]
        fn generated_rpas_resolve_only_with_their_irk(
            irk in any::<[u8; 16]>(), other in any::<[u8; 16]>(), seed in 1u64..,
        ) {
            prop_assume!(irk != other);
            let addr = generate_rpa(&irk, &mut TestRng(seed));
            prop_assert!(RandomAddressKind::Resolvable.is_valid(addr));
            prop_assert!(resolve_rpa(&irk, addr));
            // A 24-bit hash collides with probability 2^-24 per other key.
            prop_assert!(!resolve_rpa(&other, addr));
            let id = IdentityAddress::public(BdAddr([1, 2, 3, 4, 5, 6]));
            let mut r = Resolver::new();
            r.add(other, IdentityAddress::public(BdAddr([9; 6])));
            prop_assert_eq!(r.resolve(Address { addr, kind: AddressType::Random }), None);
            r.add(irk, id);
            prop_assert_eq!(r.resolve(Address { addr, kind: AddressType::Random }), Some(id));
        }

        #[test]
        fn generated_static_and_nrpa_are_valid(seed in 1u64..) {
            let mut rng = TestRng(seed);
            let s = generate_static_address(&mut rng);
            prop_assert!(RandomAddressKind::Static.is_valid(s));
            prop_assert!(IdentityAddress::static_random(s).is_some());
            prop_assert!(RandomAddressKind::NonResolvable.is_valid(generate_nrpa(&mut rng)));
            prop_assert_ne!(generate_irk(&mut rng), [0; 16]);
        }
    }
}
