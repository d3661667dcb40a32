//! Pairing, encryption and bonding as the application sees them (Core Vol 3 Part H, Part C §10).
//!
//! The Security Manager itself is the core's sans-IO [`Smp`](gattling_proto::smp::pairing::Smp),
//! one per link, driven by the runtime: it feeds it the peer's SMP PDUs, the controller's
//! encryption events and the user's answers, starts encryption with the keys it produces,
//! answers the controller's LTK requests, and keeps bonds in a [`BondStore`](crate::bonds::BondStore).
//! The application chooses the local capabilities with [`SecurityOptions`] and answers the
//! user-facing questions through a [`PairingDelegate`].

use gattling_proto::smp::crypto::SecureRandom;
use gattling_proto::smp::pairing::SmpConfig;
use gattling_proto::smp::pdu::KeyDistribution;
use std::future::Future;
use std::pin::Pin;

pub use gattling_proto::host::LinkSecurity;
pub use gattling_proto::smp::pairing::PairingMethod;
pub use gattling_proto::smp::pdu::{IoCapability, Reason as PairingFailure};

/// A boxed future, as the [`PairingDelegate`] methods return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What this host offers and demands when pairing (Core Vol 3 Part H §2.3, §3.5.1).
#[derive(Clone, Debug)]
pub struct SecurityOptions {
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
}

impl Default for SecurityOptions {
    /// Just Works with bonding and Secure Connections, legacy allowed, keys of 7 octets or more.
    fn default() -> Self {
        SecurityOptions {
            io_capability: IoCapability::NoInputNoOutput,
            bonding: true,
            mitm: false,
            secure_connections: true,
            legacy_pairing: true,
            min_key_size: 7,
            allow_debug_key: false,
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

/// The user's side of pairing: confirming numbers, showing and typing passkeys
/// (Core Vol 3 Part H §2.3.5). Methods run on the link's application task, outside the host
/// lock; they may take as long as the user does (the SMP timeout is 30 s, §3.4).
///
/// The defaults accept Just Works only: numeric comparison is refused, no passkey is typed.
pub trait PairingDelegate: Send + Sync + 'static {
    /// A central asks to pair (its Pairing Request, §3.5.1): false refuses it with Pairing
    /// Failed. By default every request is accepted.
    fn accept_pairing(&self, _peer: gattling_proto::gap::Address) -> BoxFuture<bool> {
        Box::pin(async { true })
    }
    /// Numeric Comparison: true when the user confirms both devices show `number` (§2.3.5.6.2).
    fn confirm_numeric(&self, _number: u32) -> BoxFuture<bool> {
        Box::pin(async { false })
    }
    /// Passkey Entry: show `passkey` (six digits, zero-padded) to the user (§2.3.5.3).
    fn display_passkey(&self, _passkey: u32) {}
    /// Passkey Entry: the passkey the user typed, or `None` to cancel (§2.3.5.3).
    fn request_passkey(&self) -> BoxFuture<Option<u32>> {
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
    fn confirm_numeric(&self, number: u32) -> BoxFuture<bool> {
        if let Some(show) = &self.on_display {
            show(number);
        }
        let yes = self.confirm;
        Box::pin(async move { yes })
    }
    fn display_passkey(&self, passkey: u32) {
        if let Some(show) = &self.on_display {
            show(passkey);
        }
    }
    fn request_passkey(&self) -> BoxFuture<Option<u32>> {
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
