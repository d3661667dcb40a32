//! Pairing, encryption and bonding as the application sees them (Core Vol 3 Part H, Part C §10).
//!
//! The Security Manager itself is the core's sans-IO [`Smp`],
//! one per link, driven by the runtime: it feeds it the peer's SMP PDUs, the controller's
//! encryption events and the user's answers, starts encryption with the keys it produces,
//! answers the controller's LTK requests, and keeps bonds in a [`BondStore`].
//! The application chooses the local capabilities with [`SecurityOptions`] and answers the
//! user-facing questions through a [`PairingDelegate`].

use crate::bonds::{BondStore, MemoryBondStore};
use gattling_proto::smp::crypto::SecureRandom;
use gattling_proto::smp::pairing::SmpConfig;
use gattling_proto::smp::pdu::KeyDistribution;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use gattling_proto::host::LinkSecurity;
pub use gattling_proto::smp::pairing::{OobData, PairingMethod};
pub use gattling_proto::smp::pdu::{IoCapability, Reason as PairingFailure};

/// A boxed future, as the [`PairingDelegate`] methods return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What this host offers and demands when pairing (Core Vol 3 Part H §2.3, §3.5.1), who answers
/// the user's questions, and where bonds are kept.
#[derive(Clone)]
pub struct SecurityOptions {
    /// Run the Security Manager; false answers every pairing attempt with Pairing Not Supported
    /// (Core Vol 3 Part H §3.5.5), as a host without SMP does.
    pub enabled: bool,
    /// Our IO capability; decides which pairing methods are possible (§2.3.5.1, Table 2.8).
    pub io_capability: IoCapability,
    /// Ask for bonding: the keys are stored and used on later connections (§3.5.1).
    pub bonding: bool,
    /// Ask for MITM protection: Just Works is refused (§2.3.1).
    pub mitm: bool,
    /// Offer LE Secure Connections (§2.3.5.6).
    pub secure_connections: bool,
    /// Accept LE legacy pairing from peers without Secure Connections (§2.3.5.2); false is
    /// Secure Connections Only mode (Core Vol 3 Part C §10.2.4).
    pub legacy_pairing: bool,
    /// Smallest encryption key size accepted, 7 to 16 octets (§2.3.4).
    pub min_key_size: u8,
    /// Accept the specification's debug P-256 key from a peer (§2.3.5.6.1); for sniffing tests only.
    pub allow_debug_key: bool,
    /// Passkey Entry: the passkey (0-999999) this side displays instead of a random one per
    /// pairing: a device's fixed PIN, as Pycom's `pin` (§2.3.5.3; random ones are safer).
    pub static_passkey: Option<u32>,
    /// Our Identity Resolving Key, distributed to bonded peers (§3.6.4); a random one per host
    /// when `None` (then peers cannot resolve our private addresses after a restart).
    pub identity_resolving_key: Option<[u8; 16]>,
    /// Answers numeric comparisons and passkeys ([`JustWorksOnly`] by default).
    pub delegate: Arc<dyn PairingDelegate>,
    /// Where bonds are kept: in memory by default; a [`FileBondStore`](crate::bonds::FileBondStore)
    /// keeps them across restarts.
    pub bonds: Arc<dyn BondStore>,
    /// LE privacy: advertise, scan and connect from a resolvable private address made from our
    /// IRK, renewed every `rpa_interval` (Core Vol 3 Part C §10.7, Vol 6 Part B §1.3.2.2). Bonded
    /// peers resolve it with the IRK we distributed; the identity address stays off the air.
    pub privacy: bool,
    /// How long one resolvable private address is used (TGAP(private_addr_int): 15 minutes by
    /// default, Core Vol 3 Part C Appendix A). A new one is taken when advertising, scanning or
    /// connecting starts after it expired (the controller refuses a new random address while one
    /// of them runs, Core Vol 4 Part E §7.8.4).
    pub rpa_interval: std::time::Duration,
    /// Resolve bonded peers' private addresses in the controller when it has a resolving list
    /// (Core Vol 6 Part B §4.7, Vol 4 Part E §7.8.38): the host loads every bond's IRK into it
    /// and enables address resolution, and the controller then reports those peers by their
    /// identity address (types 0x02/0x03). Without one, or when false, the host resolves them.
    pub controller_resolution: bool,
}

impl std::fmt::Debug for SecurityOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityOptions")
            .field("enabled", &self.enabled)
            .field("io_capability", &self.io_capability)
            .field("bonding", &self.bonding)
            .field("mitm", &self.mitm)
            .field("secure_connections", &self.secure_connections)
            .field("legacy_pairing", &self.legacy_pairing)
            .field("min_key_size", &self.min_key_size)
            .field("allow_debug_key", &self.allow_debug_key)
            .field("privacy", &self.privacy)
            .field("rpa_interval", &self.rpa_interval)
            .field("controller_resolution", &self.controller_resolution)
            .finish_non_exhaustive()
    }
}

/// Bonds a host keeps in memory unless told otherwise.
pub const DEFAULT_BOND_CAPACITY: usize = 64;

impl Default for SecurityOptions {
    /// Just Works with bonding and Secure Connections, legacy allowed, keys of 7 octets or more,
    /// bonds in memory.
    fn default() -> Self {
        SecurityOptions {
            enabled: true,
            io_capability: IoCapability::NoInputNoOutput,
            bonding: true,
            mitm: false,
            secure_connections: true,
            legacy_pairing: true,
            min_key_size: 7,
            allow_debug_key: false,
            static_passkey: None,
            identity_resolving_key: None,
            delegate: Arc::new(JustWorksOnly),
            bonds: Arc::new(MemoryBondStore::new(DEFAULT_BOND_CAPACITY)),
            privacy: false,
            rpa_interval: std::time::Duration::from_micros(gattling_proto::gap::privacy::DEFAULT_RPA_INTERVAL_US),
            controller_resolution: true,
        }
    }
}

impl SecurityOptions {
    /// The core Security Manager's configuration for these options.
    pub(crate) fn smp_config(&self) -> SmpConfig {
        let keys = KeyDistribution(KeyDistribution::ENC_KEY | KeyDistribution::ID_KEY);
        SmpConfig {
            io_capability: self.io_capability,
            bonding: self.bonding,
            mitm: self.mitm,
            secure_connections: self.secure_connections,
            sc_only: !self.legacy_pairing,
            min_key_size: self.min_key_size.clamp(7, 16),
            local_keys: keys,
            peer_keys: keys,
            allow_debug_key: self.allow_debug_key,
            // The delegate approves every Pairing Request first.
            approve_pairing: true,
            static_passkey: self.static_passkey.filter(|p| *p <= 999_999),
            ..SmpConfig::default()
        }
    }
}

/// The security level a link has reached (LE Security Mode 1, Core Vol 3 Part C §10.2.1).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum SecurityLevel {
    /// Level 1: no encryption.
    Open,
    /// Level 2: encrypted with a key from unauthenticated pairing (Just Works).
    Encrypted,
    /// Level 3: encrypted with a key from authenticated (MITM-protected) pairing.
    Authenticated,
    /// Level 4: authenticated LE Secure Connections pairing with a 128-bit key.
    SecureConnections,
}

impl SecurityLevel {
    /// The level a link's security state amounts to (Core Vol 3 Part C §10.2.1).
    pub fn of(s: &LinkSecurity) -> SecurityLevel {
        match (s.encrypted, s.authenticated, s.secure_connections && s.key_size == 16) {
            (false, _, _) => SecurityLevel::Open,
            (true, false, _) => SecurityLevel::Encrypted,
            (true, true, false) => SecurityLevel::Authenticated,
            (true, true, true) => SecurityLevel::SecureConnections,
        }
    }
}

/// The link a pairing question is about.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PairingLink {
    /// Its connection handle.
    pub handle: ConnHandle,
    /// The peer's address on this link.
    pub peer: Address,
}

/// The user's side of pairing: confirming numbers, showing and typing passkeys
/// (Core Vol 3 Part H §2.3.5). Methods run on the link's application task, outside the host
/// lock; they may take as long as the user does (the SMP timeout is 30 s, §3.4).
///
/// The defaults accept Just Works only: numeric comparison is refused, no passkey is typed.
pub trait PairingDelegate: Send + Sync + 'static {
    /// A central asks to pair (its Pairing Request, §3.5.1): false refuses it with Pairing
    /// Failed. By default every request is accepted.
    fn accept_pairing(&self, _link: PairingLink) -> BoxFuture<bool> {
        Box::pin(async { true })
    }
    /// Numeric Comparison: true when the user confirms both devices show `number` (§2.3.5.6.2).
    fn confirm_numeric(&self, _link: PairingLink, _number: u32) -> BoxFuture<bool> {
        Box::pin(async { false })
    }
    /// Passkey Entry: show `passkey` (six digits, zero-padded) to the user (§2.3.5.3).
    fn display_passkey(&self, _link: PairingLink, _passkey: u32) {}
    /// Passkey Entry: the passkey the user typed, or `None` to cancel (§2.3.5.3).
    fn request_passkey(&self, _link: PairingLink) -> BoxFuture<Option<u32>> {
        Box::pin(async { None })
    }
}

/// The default delegate: Just Works only.
#[derive(Clone, Copy, Debug, Default)]
pub struct JustWorksOnly;

impl PairingDelegate for JustWorksOnly {}

/// A delegate for scripts and tests: a fixed passkey typed when asked, numeric comparison
/// answered with a fixed choice, displayed values handed to a callback.
pub struct FixedAnswers {
    /// The passkey typed when one is requested.
    pub passkey: Option<u32>,
    /// The answer to every numeric comparison.
    pub confirm: bool,
    /// Called with every passkey or number to display (passkey, or the comparison value).
    pub on_display: Option<Box<dyn Fn(u32) + Send + Sync>>,
}

impl std::fmt::Debug for FixedAnswers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixedAnswers").field("confirm", &self.confirm).finish_non_exhaustive()
    }
}

impl PairingDelegate for FixedAnswers {
    fn confirm_numeric(&self, _link: PairingLink, number: u32) -> BoxFuture<bool> {
        if let Some(show) = &self.on_display {
            show(number);
        }
        let yes = self.confirm;
        Box::pin(async move { yes })
    }
    fn display_passkey(&self, _link: PairingLink, passkey: u32) {
        if let Some(show) = &self.on_display {
            show(passkey);
        }
    }
    fn request_passkey(&self, _link: PairingLink) -> BoxFuture<Option<u32>> {
        let p = self.passkey;
        Box::pin(async move { p })
    }
}

/// The operating system's random number generator (`getrandom`), for keys and nonces.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsRandom;

impl SecureRandom for OsRandom {
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        // A host that cannot read the system's randomness must not pair with weak keys.
        if let Err(e) = getrandom::fill(dest) {
            panic!("the operating system's random number generator failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_key() {
        let mut s = LinkSecurity::default();
        assert_eq!(SecurityLevel::of(&s), SecurityLevel::Open);
        s.encrypted = true;
        s.key_size = 16;
        assert_eq!(SecurityLevel::of(&s), SecurityLevel::Encrypted);
        s.authenticated = true;
        assert_eq!(SecurityLevel::of(&s), SecurityLevel::Authenticated);
        s.secure_connections = true;
        assert_eq!(SecurityLevel::of(&s), SecurityLevel::SecureConnections);
        s.key_size = 15;
        assert_eq!(SecurityLevel::of(&s), SecurityLevel::Authenticated, "level 4 needs a 128-bit key");
    }

    #[test]
    fn os_random_fills() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        OsRandom.fill_bytes(&mut a);
        OsRandom.fill_bytes(&mut b);
        assert_ne!(a, b);
    }
}

// ------------------------------------------------------------------ driving the Security Manager

use crate::bonds::{Bond, LongTermKey, SigningKey};
use crate::driver::{Inner, Shared};
use crate::error::Error;
use crate::gatt::AppJob;
use crate::host::Notification;
use gattling_proto::gap::privacy::{generate_irk, IdentityAddress, Resolver};
use gattling_proto::gap::{Address, AddressType};
use gattling_proto::gatt::server::PeerKey;
use gattling_proto::gatt::ConnId;
use gattling_proto::hci::ConnHandle;
use gattling_proto::host::Role;
use gattling_proto::smp::pairing::{LinkAddresses, LinkRole, LocalIdentity, PairingResult, Smp, SmpAddress, SmpEvent};
use tokio::sync::oneshot;

/// Where a [`crate::Connection::pair`] call waits for the outcome.
pub(crate) type PairWaiter = oneshot::Sender<Result<LinkSecurity, Error>>;

/// The host's Security Manager settings and what it knows across links.
pub(crate) struct SecurityState {
    pub(crate) options: SecurityOptions,
    config: SmpConfig,
    identity: LocalIdentity,
    /// Our resolvable private addresses, with privacy on.
    rpa: Option<gattling_proto::gap::privacy::RpaRotation>,
    /// When the timer last renewed the address.
    last_rotation: u64,
    /// The bonded peers' IRKs, to recognise them behind resolvable private addresses.
    resolver: Resolver,
    /// The controller's resolving list is in use (it has one and the options allow it).
    controller_list: bool,
    pub(crate) rng: OsRandom,
}

impl SecurityState {
    /// The state for a host whose own address is `local`; learns the bonded peers' IRKs.
    pub(crate) fn new(options: SecurityOptions, local: Address) -> Self {
        let mut rng = OsRandom;
        let irk = options.identity_resolving_key.unwrap_or_else(|| generate_irk(&mut rng));
        let identity = LocalIdentity { irk, address: smp_address(local), csrk: None };
        let mut resolver = Resolver::new();
        for bond in options.bonds.list() {
            if let Some(irk) = bond.peer_irk {
                resolver.add(irk, bond.peer);
            }
        }
        let rpa = options.privacy.then(|| {
            let interval = u64::try_from(options.rpa_interval.as_micros()).unwrap_or(u64::MAX);
            gattling_proto::gap::privacy::RpaRotation::new(irk, interval)
        });
        SecurityState {
            config: options.smp_config(),
            options,
            identity,
            resolver,
            rpa,
            last_rotation: 0,
            controller_list: false,
            rng,
        }
    }

    /// With privacy on: a new resolvable private address when the current one has expired (or
    /// there is none yet), to set in the controller before advertising, scanning or connecting.
    pub(crate) fn next_private_address(&mut self, now: u64) -> Option<gattling_proto::gap::BdAddr> {
        let rpa = self.rpa.as_mut()?;
        rpa.handle_timeout(now, &mut self.rng)
    }

    /// True when the controller resolves bonded peers' addresses with its resolving list.
    pub(crate) fn controller_resolves(&self) -> bool {
        self.controller_list
    }

    /// True when we advertise and connect from resolvable private addresses.
    pub(crate) fn private(&self) -> bool {
        self.rpa.is_some()
    }

    /// When the current resolvable private address expires (none before the first one).
    pub(crate) fn private_address_due(&self) -> Option<u64> {
        let rpa = self.rpa.as_ref()?;
        rpa.current()?;
        // Never more often than once a second from the timer, whatever the interval.
        rpa.poll_timeout().map(|t| t.max(self.last_rotation.saturating_add(1_000_000)))
    }

    /// The identity behind a peer's address: its own identity address, or the bonded identity
    /// whose IRK resolves it (Core Vol 3 Part C §10.8.2.3).
    fn identity_of(&self, peer: Address) -> Option<IdentityAddress> {
        IdentityAddress::from_address(peer).or_else(|| self.resolver.resolve(peer))
    }

    /// The bond with the peer at `peer`, if any.
    pub(crate) fn bond_of(&self, peer: Address) -> Option<Bond> {
        self.identity_of(peer).and_then(|id| self.options.bonds.get(&id))
    }
}

/// One link's Security Manager and who waits on it.
pub(crate) struct LinkSecurityManager {
    /// Boxed: a link that never pairs pays a pointer, not the machine's few hundred bytes.
    smp: Option<Box<Smp>>,
    waiters: Vec<PairWaiter>,
    /// The bond in use on this link (set when a bonded key encrypts it or pairing bonds).
    bonded: Option<IdentityAddress>,
    /// (authenticated, secure connections, key size) of the bonded key encryption was started with.
    bond_key: Option<(bool, bool, u8)>,
}

impl LinkSecurityManager {
    /// A link's manager; `None` inside when the host runs no Security Manager. `peer` is the
    /// address the peer used on air, as pairing takes it (Core Vol 3 Part H §2.2).
    pub(crate) fn new(state: Option<&SecurityState>, role: Role, local: Address, peer: Address) -> Self {
        let smp = state.map(|s| {
            let role = match role {
                Role::Central => LinkRole::Central,
                Role::Peripheral => LinkRole::Peripheral,
            };
            let addresses = LinkAddresses { local: smp_address(local), peer: smp_address(peer) };
            Box::new(Smp::new(role, s.config.clone(), addresses, s.identity.clone()))
        });
        LinkSecurityManager { smp, waiters: Vec::new(), bonded: None, bond_key: None }
    }

    /// Takes new options ([`crate::Host::set_security`]) unless a pairing is in progress.
    pub(crate) fn reconfigure(&mut self, state: Option<&SecurityState>, role: Role, local: Address, peer: Address) {
        if self.smp.as_ref().is_some_and(|s| s.is_pairing()) {
            return;
        }
        self.smp = LinkSecurityManager::new(state, role, local, peer).smp;
    }

    /// The link's Security Manager, if the host runs one.
    pub(crate) fn smp_mut(&mut self) -> Option<&mut Smp> {
        self.smp.as_deref_mut()
    }

    /// When the Security Manager's timer fires next.
    pub(crate) fn poll_timeout(&self) -> Option<u64> {
        self.smp.as_ref().and_then(|s| s.poll_timeout())
    }

    /// Fails every waiter with `e` (the link went away).
    pub(crate) fn fail(&mut self, e: &Error) {
        for w in self.waiters.drain(..) {
            let _ = w.send(Err(e.clone()));
        }
    }
}

/// A question for the user, asked on the link's application task.
#[derive(Debug)]
pub(crate) enum Ask {
    /// Accept a Pairing Request from this peer?
    Accept,
    /// Numeric Comparison of this value.
    Numeric(u32),
    /// Show this passkey.
    Display(u32),
    /// Type the passkey.
    Passkey,
}

/// An address as `c1`, `f5` and `f6` take it: the type bit and the address (Core Vol 3 Part H §2.2).
fn smp_address(a: Address) -> SmpAddress {
    let addr_type = match a.kind {
        AddressType::Public | AddressType::PublicIdentity => 0,
        AddressType::Random | AddressType::RandomIdentity => 1,
    };
    SmpAddress { addr_type, address: a.addr.0 }
}

fn identity_from(a: SmpAddress) -> Option<IdentityAddress> {
    let kind = if a.addr_type == 0 { AddressType::Public } else { AddressType::Random };
    IdentityAddress::from_address(Address { addr: gattling_proto::gap::BdAddr(a.address), kind })
}

/// Fills the controller's resolving list when `supported` (the controller lists LE Clear / Add
/// Device To Resolving List and LE Set Address Resolution Enable, Core Vol 4 Part E §6.27) and
/// the options allow it: clears it, adds every bond with a peer IRK (peer identity, peer IRK, our
/// IRK, §7.8.38) and enables address resolution (§7.8.44). The commands are the host's own: a
/// refusal (Command Disallowed while advertising, scanning or initiating with resolution on, or
/// Memory Capacity Exceeded for more bonds than entries) is logged, and the host still resolves
/// every bonded peer itself. Otherwise, on a controller that has one, address resolution is
/// disabled. Returns whether the controller's list is now in use.
pub(crate) fn load_resolving_list(inner: &mut Inner, supported: bool) -> bool {
    use gattling_proto::hci::command::Command;
    let Some(state) = inner.security.as_mut().filter(|s| supported && s.options.controller_resolution) else {
        if supported {
            // Not (or no longer) used: the controller reports peers' addresses as they are.
            inner.core.send_command(&Command::LeSetAddressResolutionEnable(false));
        }
        return false;
    };
    state.controller_list = true;
    let local_irk = state.identity.irk;
    inner.core.send_command(&Command::LeClearResolvingList);
    for bond in state.options.bonds.list() {
        if let Some(peer_irk) = bond.peer_irk {
            inner.core.send_command(&resolving_entry(bond.peer, peer_irk, local_irk));
        }
    }
    inner.core.send_command(&Command::LeSetAddressResolutionEnable(true));
    true
}

/// LE Add Device To Resolving List for a bonded peer (Core Vol 4 Part E §7.8.38).
fn resolving_entry(
    peer: IdentityAddress,
    peer_irk: [u8; 16],
    local_irk: [u8; 16],
) -> gattling_proto::hci::command::Command {
    let address = peer.to_address();
    gattling_proto::hci::command::Command::LeAddDeviceToResolvingList {
        peer_identity_address_type: address.kind.peer_code(),
        peer_identity_address: address.addr,
        peer_irk,
        local_irk,
    }
}

/// Takes a new resolvable private address now: sets it in the controller, pausing advertising
/// around the change (the controller refuses a new random address while advertising, scanning
/// or initiating, Core Vol 4 Part E §7.8.4). While scanning or connecting nothing changes: the
/// next start takes a new address. `forced`: even if the current one has not expired.
pub(crate) fn rotate_private_address(inner: &mut Inner, now: u64, forced: bool) -> Option<gattling_proto::gap::BdAddr> {
    if inner.scan.is_some() || inner.connecting.is_some() {
        return None;
    }
    let state = inner.security.as_mut()?;
    let rpa = state.rpa.as_mut()?;
    let new = if forced { rpa.rotate(now, &mut state.rng) } else { rpa.handle_timeout(now, &mut state.rng)? };
    state.last_rotation = now;
    let advertising = inner.advertising;
    if advertising {
        inner.core.send_command(&gattling_proto::hci::command::Command::LeSetAdvertisingEnable(false));
    }
    inner.core.send_command(&gattling_proto::hci::command::Command::LeSetRandomAddress(new));
    if advertising {
        inner.core.send_command(&gattling_proto::hci::command::Command::LeSetAdvertisingEnable(true));
    }
    inner.local_address = Address { addr: new, kind: AddressType::Random };
    tracing::debug!(address = %new, "new resolvable private address");
    Some(new)
}

/// Starts pairing on a link (central: Pairing Request; peripheral: Security Request) and
/// registers `waiter` for the outcome.
pub(crate) fn start(shared: &Arc<Shared>, inner: &mut Inner, handle: ConnHandle, waiter: PairWaiter, now: u64) {
    let Some(state) = inner.security.as_mut() else {
        let _ = waiter.send(Err(Error::Unsupported("pairing (the Security Manager is disabled)")));
        return;
    };
    let Some(link) = inner.links.0.get_mut(&handle) else {
        let _ = waiter.send(Err(Error::Disconnected { reason: gattling_proto::hci::Reason(0x02) }));
        return;
    };
    let Some(smp) = link.security.smp.as_mut() else {
        let _ = waiter.send(Err(Error::Unsupported("pairing (the Security Manager is disabled)")));
        return;
    };
    let started = if smp.is_pairing() { Ok(()) } else { smp.start(now, &mut state.rng) };
    match started {
        Ok(()) => link.security.waiters.push(waiter),
        Err(e) => {
            let _ = waiter.send(Err(Error::Protocol(format!("pairing not started: {e}"))));
        }
    }
    drive(shared, inner, handle, now);
}

/// Brings a link up to `level`: as central with a bond good enough, encrypts with its key;
/// otherwise pairs. `waiter` gets the outcome.
pub(crate) fn secure(
    shared: &Arc<Shared>,
    inner: &mut Inner,
    handle: ConnHandle,
    level: SecurityLevel,
    waiter: PairWaiter,
    now: u64,
) {
    let usable = inner.security.is_some() && inner.links.0.get(&handle).is_some_and(|l| l.security.waiters.is_empty());
    let need_mitm = level >= SecurityLevel::Authenticated;
    if need_mitm {
        // Pairing for an authenticated key asks for MITM protection whatever the options say.
        if let Some(smp) = inner.links.0.get_mut(&handle).and_then(|l| l.security.smp.as_mut()) {
            smp.set_mitm(true);
        }
    }
    if usable && encrypt_with_bond(inner, handle, need_mitm) {
        if let Some(link) = inner.links.0.get_mut(&handle) {
            link.security.waiters.push(waiter);
        }
        return;
    }
    start(shared, inner, handle, waiter, now);
}

/// Encrypts a central link with the bond's key, if there is a usable one; true when started.
pub(crate) fn encrypt_with_bond(inner: &mut Inner, handle: ConnHandle, need_mitm: bool) -> bool {
    let Some(state) = inner.security.as_ref() else { return false };
    let Some(link) = inner.links.0.get_mut(&handle) else { return false };
    if link.info.role != Role::Central {
        return false;
    }
    let Some(bond) = state.bond_of(link.info.peer) else { return false };
    let Some(key) = bond.ltk.filter(|_| bond.authenticated || !need_mitm) else { return false };
    let rand = u64::from_le_bytes(key.rand);
    if inner.core.start_encryption(handle, key.key, rand, key.ediv).is_err() {
        return false;
    }
    link.security.bond_key = Some((bond.authenticated, bond.secure_connections, bond.key_size));
    link.security.bonded = Some(bond.peer);
    true
}

/// An SMP PDU from the peer.
pub(crate) fn on_pdu(shared: &Arc<Shared>, inner: &mut Inner, handle: ConnHandle, pdu: &[u8], now: u64) {
    let Some(state) = inner.security.as_mut() else { return };
    if let Some(smp) = inner.links.0.get_mut(&handle).and_then(|l| l.security.smp.as_mut()) {
        smp.receive(pdu, now, &mut state.rng);
    }
    drive(shared, inner, handle, now);
}

/// The user's answer to a question from [`Ask`].
pub(crate) fn answer(
    shared: &Arc<Shared>,
    inner: &mut Inner,
    handle: ConnHandle,
    ask: &Ask,
    yes: bool,
    passkey: Option<u32>,
    now: u64,
) {
    if let Some(smp) = inner.links.0.get_mut(&handle).and_then(|l| l.security.smp.as_mut()) {
        match ask {
            Ask::Accept => smp.accept_pairing(yes, now),
            Ask::Numeric(_) => smp.confirm_numeric(yes, now),
            Ask::Passkey => smp.enter_passkey(passkey, now),
            Ask::Display(_) => {}
        }
    }
    drive(shared, inner, handle, now);
}

/// Encryption Change on a link: tells the Security Manager (pairing goes on with key
/// distribution) or, for a bonded key, sets the link's key properties and restores the bonded
/// client's CCCDs.
pub(crate) fn on_encryption_changed(
    shared: &Arc<Shared>,
    inner: &mut Inner,
    handle: ConnHandle,
    status: u8,
    encrypted: bool,
    key_size: u8,
    now: u64,
) {
    let Some(link) = inner.links.0.get_mut(&handle) else { return };
    let ok = status == 0 && encrypted;
    // Pairing goes on with key distribution; a Security Request answered with a bond's key ends.
    if let Some(smp) = link.security.smp.as_mut() {
        smp.encryption_changed(ok, key_size, now);
    }
    let pairing = link.security.smp.as_ref().is_some_and(|s| s.is_pairing());
    if let Some((authenticated, sc, size)) = link.security.bond_key.take() {
        if ok {
            let _ = inner.core.set_key_properties(handle, authenticated, sc, Some(size.min(key_size)));
            restore_cccds(inner, handle, now);
            let security = inner.core.security(handle).unwrap_or_default();
            let _ = shared.notifications.send(Notification::Secured { handle, security, bonded: true });
            finish(inner, handle, Ok(()));
        } else if status == gattling_proto::hci::status::PIN_OR_KEY_MISSING && !link.security.waiters.is_empty() {
            // The peer lost the bond: pair again (as BlueZ and bumble do).
            tracing::info!(handle, "the peer has no key for the bond: pairing again");
            if let (Some(state), Some(smp)) = (inner.security.as_mut(), link.security.smp.as_mut()) {
                if let Err(e) = smp.start(now, &mut state.rng) {
                    tracing::warn!(handle, %e, "pairing not started");
                }
            }
        } else {
            let e = Error::Command {
                opcode: gattling_proto::hci::Opcode::LE_ENABLE_ENCRYPTION,
                name: "LE Enable Encryption",
                status,
            };
            finish(inner, handle, Err(e));
        }
    } else if ok && !pairing && !link.security.waiters.is_empty() {
        // A peripheral's Security Request answered by encryption with a key we already gave.
        finish(inner, handle, Ok(()));
    }
    update_server_security(inner, handle);
    drive(shared, inner, handle, now);
}

/// LE Long Term Key Request on a peripheral link: the key being paired, else the bond's, else
/// a key registered with [`crate::Host::set_long_term_key`], else "no key" (Core Vol 3 Part H
/// §2.4.4.2; Vol 4 Part E §7.8.25, §7.8.26).
pub(crate) fn on_ltk_request(inner: &mut Inner, handle: ConnHandle, rand: u64, ediv: u16) {
    let rand_bytes = rand.to_le_bytes();
    let Some(link) = inner.links.0.get_mut(&handle) else { return };
    let mut key = link.security.smp.as_ref().and_then(|s| s.ltk_request(rand_bytes, ediv));
    if key.is_none() {
        if let Some(bond) = inner.security.as_ref().and_then(|s| s.bond_of(link.info.peer)) {
            key = bond.ltk_for_request(ediv, rand_bytes);
            if key.is_some() {
                link.security.bond_key = Some((bond.authenticated, bond.secure_connections, bond.key_size));
                link.security.bonded = Some(bond.peer);
            }
        }
    }
    if key.is_none() {
        let peer = link.info.peer;
        key = inner.keys.get(&peer).filter(|k| (k.1, k.2) == (rand, ediv)).map(|k| k.0);
    }
    tracing::info!(handle, ediv, known = key.is_some(), "long term key request");
    let answered = match key {
        Some(ltk) => inner.core.long_term_key_reply(handle, ltk),
        None => inner.core.long_term_key_negative_reply(handle),
    };
    if let Err(e) = answered {
        tracing::warn!(handle, %e, "long term key request not answered");
    }
}

/// The Security Manager's timer.
pub(crate) fn on_timeout(shared: &Arc<Shared>, inner: &mut Inner, handle: ConnHandle, now: u64) {
    if let Some(smp) = inner.links.0.get_mut(&handle).and_then(|l| l.security.smp.as_mut()) {
        if smp.poll_timeout().is_some_and(|t| t <= now) {
            smp.handle_timeout(now);
        }
    }
    drive(shared, inner, handle, now);
}

/// Sends what the link's Security Manager produced and acts on its events.
fn drive(shared: &Arc<Shared>, inner: &mut Inner, handle: ConnHandle, now: u64) {
    loop {
        let Some(link) = inner.links.0.get_mut(&handle) else { return };
        let Some(smp) = link.security.smp.as_mut() else { return };
        while let Some(pdu) = smp.poll_transmit() {
            if let Err(e) = inner.core.send_smp(handle, &pdu) {
                tracing::debug!(handle, %e, "SMP PDU not sent");
            }
        }
        let Some(event) = smp.poll_event() else { return };
        match event {
            SmpEvent::PairingRequest { .. } => inner.jobs.push((handle, AppJob::Security(Ask::Accept))),
            SmpEvent::SecurityRequest { auth_req } => {
                // A bond good enough encrypts at once; otherwise pair (Core Vol 3 Part H §2.4.6).
                if !encrypt_with_bond(inner, handle, auth_req.mitm()) {
                    if let (Some(state), Some(smp)) =
                        (inner.security.as_mut(), inner.links.0.get_mut(&handle).and_then(|l| l.security.smp.as_mut()))
                    {
                        if let Err(e) = smp.start(now, &mut state.rng) {
                            tracing::warn!(handle, %e, "Security Request not answered with pairing");
                        }
                    }
                }
            }
            SmpEvent::NumericComparison(n) => inner.jobs.push((handle, AppJob::Security(Ask::Numeric(n)))),
            SmpEvent::DisplayPasskey(n) => inner.jobs.push((handle, AppJob::Security(Ask::Display(n)))),
            SmpEvent::PasskeyRequest => inner.jobs.push((handle, AppJob::Security(Ask::Passkey))),
            SmpEvent::StartEncryption { ltk, rand, ediv, .. } => {
                if let Err(e) = inner.core.start_encryption(handle, ltk, u64::from_le_bytes(rand), ediv) {
                    tracing::warn!(handle, %e, "encryption not started");
                }
            }
            SmpEvent::KeypressNotification(k) => tracing::debug!(handle, ?k, "keypress"),
            SmpEvent::Complete(result) => completed(shared, inner, handle, &result),
            SmpEvent::Failed { reason, remote } => {
                tracing::info!(handle, reason = reason.name(), remote, "pairing failed");
                let _ =
                    shared.notifications.send(Notification::PairingFailed { handle, reason: reason.to_u8(), remote });
                finish(inner, handle, Err(Error::Pairing { reason, remote }));
            }
            SmpEvent::Timeout => {
                tracing::info!(handle, "SMP timeout");
                let _ = shared.notifications.send(Notification::PairingFailed { handle, reason: 0, remote: false });
                finish(inner, handle, Err(Error::Timeout("pairing (SMP, 30 s)")));
            }
        }
    }
}

/// Pairing succeeded: the link's key properties, the bond (stored off the lock), the waiters.
fn completed(shared: &Arc<Shared>, inner: &mut Inner, handle: ConnHandle, r: &PairingResult) {
    tracing::info!(handle, sc = r.secure_connections, authenticated = r.authenticated, bonded = r.bonded, "paired");
    let _ = inner.core.set_key_properties(handle, r.authenticated, r.secure_connections, Some(r.key_size));
    update_server_security(inner, handle);
    let Some(link) = inner.links.0.get_mut(&handle) else { return };
    let peer = link.info.peer;
    let identity = r.peer_identity.and_then(identity_from).or_else(|| IdentityAddress::from_address(peer));
    let (Some(state), true, Some(identity)) = (inner.security.as_mut(), r.bonded, identity) else {
        let security = paired_security(r);
        let _ = shared.notifications.send(Notification::Secured { handle, security, bonded: false });
        finish(inner, handle, Ok(()));
        return;
    };
    let mut bond = Bond::new(identity);
    bond.local = identity_from(state.identity.address).filter(|_| r.local_irk_sent);
    bond.secure_connections = r.secure_connections;
    bond.authenticated = r.authenticated;
    bond.key_size = r.key_size;
    bond.ltk = match (r.ltk, r.peer_ltk.as_ref()) {
        (Some(k), _) => Some(LongTermKey::secure_connections(k)),
        (None, Some(k)) => Some(LongTermKey { key: k.ltk, ediv: k.ediv, rand: k.rand }),
        _ => None,
    };
    // A Secure Connections bond uses `ltk` in both roles; `local_ltk` is legacy only.
    bond.local_ltk = match (r.ltk, r.local_ltk.as_ref()) {
        (None, Some(k)) => Some(LongTermKey { key: k.ltk, ediv: k.ediv, rand: k.rand }),
        _ => None,
    };
    bond.peer_irk = r.peer_irk;
    bond.peer_csrk = r.peer_csrk.map(|key| SigningKey { key, counter: 0 });
    bond.local_csrk = r.local_csrk.map(|key| SigningKey { key, counter: 0 });
    if let Some(g) = inner.gatt.as_mut() {
        bond.cccds = g.server.cccds(ConnId(handle)).into_iter().collect();
        bond.database_hash = Some(g.server.database_hash());
    }
    if let Some(irk) = r.peer_irk {
        let known = state.resolver.remove(&identity);
        state.resolver.add(irk, identity);
        if state.controller_list {
            // The new bond's IRK into the controller's list too (replacing an older one); a
            // refusal while advertising or scanning is logged and the host resolves the peer.
            if known {
                let address = identity.to_address();
                inner.core.send_command(&gattling_proto::hci::command::Command::LeRemoveDeviceFromResolvingList {
                    peer_identity_address_type: address.kind.peer_code(),
                    peer_identity_address: address.addr,
                });
            }
            inner.core.send_command(&resolving_entry(identity, irk, state.identity.irk));
        }
    }
    link.security.bonded = Some(identity);
    let store = state.options.bonds.clone();
    // From the pairing itself: the core may have dropped the link already (a disconnection in
    // the same read as the last key).
    let security = paired_security(r);
    let waiters = std::mem::take(&mut link.security.waiters);
    let notes = shared.notifications.clone();
    // The store may write a file: not under the host lock.
    tokio::task::spawn_blocking(move || {
        let stored = store.put(bond).map_err(Arc::new);
        if let Err(e) = &stored {
            tracing::warn!(%identity, %e, "bond not stored");
        }
        let _ = notes.send(Notification::Secured { handle, security, bonded: stored.is_ok() });
        for w in waiters {
            let _ = w.send(match &stored {
                Ok(()) => Ok(security),
                Err(e) => Err(Error::Bond(e.clone())),
            });
        }
    });
}

/// What a link encrypted with the key of pairing `r` has.
fn paired_security(r: &PairingResult) -> LinkSecurity {
    LinkSecurity {
        encrypted: true,
        key_size: r.key_size,
        authenticated: r.authenticated,
        secure_connections: r.secure_connections,
    }
}

/// Ends every waiter on the link's pairing.
fn finish(inner: &mut Inner, handle: ConnHandle, outcome: Result<(), Error>) {
    let security = inner.core.security(handle).unwrap_or_default();
    let Some(link) = inner.links.0.get_mut(&handle) else { return };
    for w in link.security.waiters.drain(..) {
        let _ = w.send(outcome.clone().map(|()| security));
    }
}

/// Tells the GATT server what the link's key allows (Core Vol 3 Part C §10.3).
fn update_server_security(inner: &mut Inner, handle: ConnHandle) {
    let s = inner.core.security(handle).unwrap_or_default();
    if let Some(g) = inner.gatt.as_mut() {
        g.server.set_security(ConnId(handle), s.encrypted, s.encrypted && s.authenticated);
        g.server.set_key_size(ConnId(handle), s.key_size);
    }
    tell_server_peer_key(inner, handle);
}

/// Tells the GATT server which key the client on `handle` has with us, from its bond, so an
/// unencrypted request is refused with the code that says what to do (Core Vol 3 Part C §10.3.1).
pub(crate) fn tell_server_peer_key(inner: &mut Inner, handle: ConnHandle) {
    let Some(state) = inner.security.as_ref() else { return };
    let Some(peer) = inner.links.0.get(&handle).map(|l| l.info.peer) else { return };
    let key = match state.bond_of(peer) {
        Some(b) if b.ltk.is_some() || b.local_ltk.is_some() => {
            if b.authenticated {
                PeerKey::Authenticated
            } else {
                PeerKey::Unauthenticated
            }
        }
        _ => PeerKey::None,
    };
    if let Some(g) = inner.gatt.as_mut() {
        g.server.set_peer_key(ConnId(handle), key);
    }
}

/// Gives a bonded client back the CCCD values it had (Core Vol 3 Part G §3.3.3.3) and, when
/// the database changed since it last saw it, indicates Service Changed over every handle
/// (§7.1); the bond then records the database it was told about.
fn restore_cccds(inner: &mut Inner, handle: ConnHandle, now: u64) {
    let Some(identity) = inner.links.0.get(&handle).and_then(|l| l.security.bonded) else { return };
    let Some(store) = inner.security.as_ref().map(|s| s.options.bonds.clone()) else { return };
    let Some(bond) = store.get(&identity) else { return };
    let Inner { gatt, links, core, .. } = inner;
    let Some(g) = gatt.as_mut() else { return };
    let conn = ConnId(handle);
    let n = g.server.restore_cccds(conn, bond.cccds.iter().map(|(&h, &v)| (h, v)));
    tracing::debug!(handle, restored = n, "CCCDs restored for a bonded client");
    let hash = g.server.database_hash();
    if bond.database_hash == Some(hash) {
        return;
    }
    if let Some(pdu) = g.server.service_changed_to(conn, now, links) {
        tracing::info!(handle, "the database changed since the bonded client saw it: Service Changed");
        if let Err(e) = core.send_att(handle, &pdu) {
            tracing::debug!(handle, %e, "Service Changed not sent");
        }
    }
    tokio::task::spawn_blocking(move || {
        if let Err(e) = store.modify(&identity, &mut |b| b.database_hash = Some(hash)) {
            tracing::warn!(%identity, %e, "database hash not kept for the bond");
        }
    });
}

/// Keeps a bonded client's CCCD change (Core Vol 3 Part G §3.3.3.3); off the lock.
pub(crate) fn persist_cccd(inner: &Inner, handle: ConnHandle, cccd_handle: u16, value: u16) {
    let Some(identity) = inner.links.0.get(&handle).and_then(|l| l.security.bonded) else { return };
    let Some(store) = inner.security.as_ref().map(|s| s.options.bonds.clone()) else { return };
    tokio::task::spawn_blocking(move || {
        if let Err(e) = store.update_cccd(&identity, cccd_handle, value) {
            tracing::warn!(%identity, %e, "CCCD not kept for the bond");
        }
    });
}

/// Asks the user through the delegate and feeds the answer back (on the link's application task).
pub(crate) async fn ask(shared: std::sync::Weak<Shared>, handle: ConnHandle, question: Ask) {
    let Some((delegate, link)) = shared.upgrade().and_then(|s| {
        let inner = crate::driver::lock(&s);
        let peer = inner.links.0.get(&handle)?.info.peer;
        let delegate = inner.security.as_ref()?.options.delegate.clone();
        Some((delegate, PairingLink { handle, peer }))
    }) else {
        return;
    };
    let (yes, passkey) = match &question {
        Ask::Accept => (delegate.accept_pairing(link).await, None),
        Ask::Numeric(n) => (delegate.confirm_numeric(link, *n).await, None),
        Ask::Display(n) => {
            delegate.display_passkey(link, *n);
            return;
        }
        Ask::Passkey => {
            let p = delegate.request_passkey(link).await.filter(|p| *p <= 999_999);
            (p.is_some(), p)
        }
    };
    let Some(s) = shared.upgrade() else { return };
    let now = s.now();
    {
        let mut inner = crate::driver::lock(&s);
        answer(&s, &mut inner, handle, &question, yes, passkey, now);
        inner.dispatch_jobs();
    }
    crate::driver::kick(&s);
}
