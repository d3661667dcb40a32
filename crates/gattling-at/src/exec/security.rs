//! Security and bonding commands: AT+UBTIOC, AT+UBTBSM, AT+UBTPM, AT+UBTB, AT+UBTUB,
//! AT+UBTBDL, AT+UBTUC, AT+UBTUPE, and their URCs `+UEBTB`, `+UEBTUC`, `+UEBTUPD`,
//! `+UEBTUPE`, on the runtime's Security Manager (Core Vol 3 Part H).
//!
//! The pairing questions of the runtime ([`PairingDelegate`]) become URCs and wait (up to the
//! SMP timeout, Core Vol 3 Part H §3.4) for the answering command. The delegate is not told
//! which link asks, so the peer named in a URC is the one being bonded with `AT+UBTB`, or the
//! one whose Pairing Request was accepted, or else the only connected peer; a question that
//! cannot be tied to one peer is refused.

use super::{at_addr, Session, Shared, UrcField};
use crate::codes::AtError;
use crate::engine::Form;
use crate::format::Field;
use crate::params::{AddrKind, Args, BdAddr};
use gattling::bonds::BondStore;
use gattling::proto::gap::privacy::{IdentityAddress, IdentityAddressType};
use gattling::proto::gap::{Address, AddressType};
use gattling::security::{BoxFuture, IoCapability, PairingDelegate, PairingLink, SecurityOptions};
use gattling::ConnectOptions;
use std::sync::Weak;
use std::time::Duration;
use tokio::sync::oneshot;

pub(super) const COMMANDS: &[&str] =
    &["+UBTIOC", "+UBTBSM", "+UBTPM", "+UBTB", "+UBTUB", "+UBTBDL", "+UBTUC", "+UBTUPE"];

/// The most bonds a NORA-W36 stores (`MAX_BLE_BONDED_DEVICE_COUNT`).
pub const MAX_BONDS: usize = 20;

/// How long a pairing question waits for its answer: the SMP timeout (Core Vol 3 Part H §3.4).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// `+UEBTB` bond status: bonding succeeded.
const BOND_OK: i64 = 0;
/// `+UEBTB` bond status: no connection could be made (page timeout) or the SMP timer ran out.
const BOND_TIMEOUT: i64 = 1;
/// `+UEBTB` bond status: authentication or pairing failed (e.g. a wrong passkey).
const BOND_AUTH: i64 = 2;
/// `+UEBTB` bond status: MITM protection could not be had.
const BOND_MITM: i64 = 3;

/// Pairing state shared by the delegate, the event pump and the commands.
#[derive(Default)]
pub(crate) struct Pairing {
    /// `AT+UBTPM=1`: Pairing Requests from peers are accepted.
    pub enabled: bool,
    /// The peer a pairing is going on with, when known (`AT+UBTB`, or an accepted request).
    pub peer: Option<Address>,
    /// Numeric comparisons waiting for `AT+UBTUC`.
    pub numeric: Vec<(BdAddr, oneshot::Sender<bool>)>,
    /// Passkey requests waiting for `AT+UBTUPE`.
    pub passkey: Vec<(BdAddr, oneshot::Sender<Option<u32>>)>,
}

/// The IO capability of an `AT+UBTIOC` value (Core Vol 3 Part H §3.5.1, Table 3.4).
pub(crate) fn io_capability(io_cap: u8) -> IoCapability {
    match io_cap {
        1 => IoCapability::DisplayOnly,
        2 => IoCapability::DisplayYesNo,
        3 => IoCapability::KeyboardOnly,
        4 => IoCapability::KeyboardDisplay,
        _ => IoCapability::NoInputNoOutput,
    }
}

/// Applies `AT+UBTIOC` and `AT+UBTBSM` values to the Security Manager options: modes 2 to 4
/// ask for MITM protection, mode 2 has no Secure Connections, mode 4 refuses legacy pairing;
/// the module always bonds (Core Vol 3 Part H §2.3.1, §3.5.1; Part C §10.2.4).
pub(crate) fn apply(options: &mut SecurityOptions, io_cap: u8, security_mode: u8) {
    options.enabled = true;
    options.io_capability = io_capability(io_cap);
    options.bonding = true;
    options.mitm = security_mode >= 2;
    options.secure_connections = security_mode != 2;
    options.legacy_pairing = security_mode != 4;
}

/// The `+UEBTB` status for a Pairing Failed reason (Core Vol 3 Part H §3.5.5); 0 is the
/// runtime's SMP timeout.
fn bond_status(reason: u8) -> i64 {
    match reason {
        0 => BOND_TIMEOUT,
        // Authentication Requirements, Encryption Key Size: the required protection is missing.
        0x03 | 0x06 => BOND_MITM,
        _ => BOND_AUTH,
    }
}

/// The AT form of a bonded peer's identity address.
fn identity_at(id: &IdentityAddress) -> BdAddr {
    let mut bytes = id.addr.0;
    bytes.reverse();
    let kind = match id.kind {
        IdentityAddressType::Public => AddrKind::Public,
        IdentityAddressType::StaticRandom => AddrKind::Random,
    };
    BdAddr { bytes, kind }
}

/// The HCI address of an AT `bd_addr`.
fn address_of(a: &BdAddr) -> Address {
    let mut le = a.bytes;
    le.reverse();
    let kind = if a.kind == AddrKind::Random { AddressType::Random } else { AddressType::Public };
    Address { addr: gattling::proto::gap::BdAddr(le), kind }
}

/// Answers the runtime's pairing questions with URCs and the user's AT commands.
pub(crate) struct AtDelegate {
    /// The power cycle's shared state (weak: the host holds the delegate).
    pub shared: Weak<Shared>,
}

impl AtDelegate {
    /// The shared state and the peer a question is about, in AT form.
    fn asking(&self, link: PairingLink) -> Option<(std::sync::Arc<Shared>, BdAddr)> {
        Some((self.shared.upgrade()?, at_addr(&link.peer)))
    }
}

impl PairingDelegate for AtDelegate {
    fn accept_pairing(&self, link: PairingLink) -> BoxFuture<bool> {
        let peer = link.peer;
        let ok = self.shared.upgrade().is_some_and(|s| {
            let mut p = s.pairing();
            let ok = p.enabled || p.peer == Some(peer);
            if ok {
                p.peer = Some(peer);
            }
            ok
        });
        Box::pin(async move { ok })
    }

    fn confirm_numeric(&self, link: PairingLink, number: u32) -> BoxFuture<bool> {
        let Some((shared, addr)) = self.asking(link) else { return Box::pin(async { false }) };
        let (tx, rx) = oneshot::channel();
        shared.pairing().numeric.push((addr, tx));
        shared.urc("+UEBTUC", vec![UrcField::Addr(addr), UrcField::Int(number.into())]);
        Box::pin(async move { matches!(tokio::time::timeout(ANSWER_TIMEOUT, rx).await, Ok(Ok(true))) })
    }

    fn display_passkey(&self, link: PairingLink, passkey: u32) {
        if let Some((shared, addr)) = self.asking(link) {
            shared.urc("+UEBTUPD", vec![UrcField::Addr(addr), UrcField::Int(passkey.into())]);
        }
    }

    fn request_passkey(&self, link: PairingLink) -> BoxFuture<Option<u32>> {
        let Some((shared, addr)) = self.asking(link) else { return Box::pin(async { None }) };
        let (tx, rx) = oneshot::channel();
        shared.pairing().passkey.push((addr, tx));
        shared.urc("+UEBTUPE", vec![UrcField::Addr(addr)]);
        Box::pin(async move { tokio::time::timeout(ANSWER_TIMEOUT, rx).await.ok().and_then(|r| r.ok()).flatten() })
    }
}

/// A pairing on `peer` ended: `+UEBTB` with its status; the questions about it are dropped.
pub(crate) fn bonded(shared: &Shared, peer: Address, status: i64) {
    forget_pairing(shared, peer);
    shared.urc("+UEBTB", vec![UrcField::Addr(at_addr(&peer)), UrcField::Int(status)]);
}

/// A pairing with `peer` is over (its outcome came, or the link went down): it is no longer the
/// pairing peer, and its unanswered questions are dropped.
pub(crate) fn forget_pairing(shared: &Shared, peer: Address) {
    let addr = at_addr(&peer);
    let mut p = shared.pairing();
    if p.peer == Some(peer) {
        p.peer = None;
    }
    p.numeric.retain(|(a, _)| *a != addr);
    p.passkey.retain(|(a, _)| *a != addr);
}

/// The `+UEBTB` status of a Secured notification.
pub(crate) fn secured_status(bonded: bool) -> i64 {
    if bonded {
        BOND_OK
    } else {
        BOND_AUTH
    }
}

/// The `+UEBTB` status of a PairingFailed notification.
pub(crate) fn failed_status(reason: u8) -> i64 {
    bond_status(reason)
}

impl Session {
    /// AT+UBTIOC / AT+UBTBSM take effect at once: the next pairing uses them.
    fn reapply_security(&self) {
        let mut options = self.options.host.security.clone();
        apply(&mut options, self.settings.io_cap, self.settings.security_mode);
        options.delegate = std::sync::Arc::new(AtDelegate { shared: std::sync::Arc::downgrade(&self.shared) });
        self.host.set_security(options);
    }

    pub(super) async fn exec_security(&mut self, name: &str, form: Form, params: &str) -> Option<Result<(), AtError>> {
        let r = match (name, form) {
            ("+UBTIOC", Form::Set) => Args::parse(params).and_then(|a| {
                a.count(1, 1)?;
                self.settings.io_cap = a.enumerator(0, &[0, 1, 2, 3, 4])? as u8;
                self.reapply_security();
                Ok(())
            }),
            ("+UBTIOC", Form::Read) => {
                let v = self.settings.io_cap as i64;
                self.info("+UBTIOC", &[Field::Int(v)]);
                Ok(())
            }
            ("+UBTBSM", Form::Set) => Args::parse(params).and_then(|a| {
                a.count(1, 1)?;
                self.settings.security_mode = a.enumerator(0, &[0, 1, 2, 3, 4])? as u8;
                self.reapply_security();
                Ok(())
            }),
            ("+UBTBSM", Form::Read) => {
                let v = self.settings.security_mode as i64;
                self.info("+UBTBSM", &[Field::Int(v)]);
                Ok(())
            }
            ("+UBTPM", Form::Set) => Args::parse(params).and_then(|a| {
                a.count(1, 1)?;
                let on = a.enumerator(0, &[0, 1])? == 1;
                self.settings.pairing_mode = on;
                self.shared.pairing().enabled = on;
                Ok(())
            }),
            ("+UBTPM", Form::Read) => {
                let v = self.settings.pairing_mode as i64;
                self.info("+UBTPM", &[Field::Int(v)]);
                Ok(())
            }
            ("+UBTUC", Form::Set) => Args::parse(params).and_then(|a| {
                a.count(2, 2)?;
                let addr = a.bd_addr(0)?;
                let yes = a.enumerator(1, &[0, 1])? == 1;
                let mut p = self.shared.pairing();
                let i = p.numeric.iter().position(|(x, _)| *x == addr).ok_or(AtError::NOT_FOUND)?;
                let (_, tx) = p.numeric.remove(i);
                let _ = tx.send(yes);
                Ok(())
            }),
            ("+UBTUPE", Form::Set) => Args::parse(params).and_then(|a| {
                a.count(2, 3)?;
                let addr = a.bd_addr(0)?;
                let yes = a.enumerator(1, &[0, 1])? == 1;
                let passkey = match yes {
                    true => Some(a.int(2, 0, 999_999)? as u32),
                    false => None,
                };
                let mut p = self.shared.pairing();
                let i = p.passkey.iter().position(|(x, _)| *x == addr).ok_or(AtError::NOT_FOUND)?;
                let (_, tx) = p.passkey.remove(i);
                let _ = tx.send(passkey);
                Ok(())
            }),
            ("+UBTB", Form::Set) => self.bond(params),
            ("+UBTUB", Form::Set) => Args::parse(params).and_then(|a| {
                a.count(1, 1)?;
                let addr = a.bd_addr(0)?;
                let store = self.options.host.security.bonds.clone();
                let peer = store.list().into_iter().map(|b| b.peer).find(|p| identity_at(p) == addr);
                let peer = peer.ok_or(AtError::NOT_FOUND)?;
                store.remove(&peer).map(drop).map_err(|_| AtError::DEVICE_ERROR)
            }),
            ("+UBTUB", Form::Action) => remove_all(self.options.host.security.bonds.as_ref()),
            ("+UBTBDL", Form::Action) => {
                for b in self.options.host.security.bonds.list() {
                    self.info("+UBTBDL", &[Field::Addr(identity_at(&b.peer))]);
                }
                Ok(())
            }
            _ => return None,
        };
        Some(r)
    }

    /// AT+UBTB: OK now; pairs on the link with the peer (connecting first when there is
    /// none), and `+UEBTB` reports the outcome.
    fn bond(&mut self, params: &str) -> Result<(), AtError> {
        let a = Args::parse(params)?;
        a.count(1, 1)?;
        let addr = a.bd_addr(0)?;
        let peer = address_of(&addr);
        let existing = self.shared.links().by_at.values().find(|l| l.peer == peer).map(|l| l.conn.clone());
        {
            let mut p = self.shared.pairing();
            if p.peer.is_some_and(|q| q != peer) {
                return Err(AtError::IN_PROGRESS);
            }
            p.peer = Some(peer);
        }
        let host = self.host.clone();
        let shared = self.shared.clone();
        self.tasks.retain(|t| !t.is_finished());
        self.tasks.push(tokio::spawn(async move {
            let conn = match existing {
                Some(c) => c,
                None => {
                    let opts = ConnectOptions { timeout: Duration::from_secs(5), ..ConnectOptions::default() };
                    match host.connect(peer, opts).await {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::info!(error = %e, "AT+UBTB: no connection");
                            bonded(&shared, peer, BOND_TIMEOUT);
                            return;
                        }
                    }
                }
            };
            // Success and Pairing Failed come as host notifications (and become +UEBTB there).
            if let Err(e) = conn.pair().await {
                tracing::info!(error = %e, "AT+UBTB: pairing failed");
                if matches!(e, gattling::Error::Disconnected { .. } | gattling::Error::Cancelled(_)) {
                    bonded(&shared, peer, BOND_AUTH);
                }
            }
        }));
        Ok(())
    }
}

/// Removes every bond (`AT+UBTUB` without an address, factory reset).
pub(crate) fn remove_all(store: &dyn BondStore) -> Result<(), AtError> {
    for b in store.list() {
        store.remove(&b.peer).map_err(|_| AtError::DEVICE_ERROR)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_modes_map_onto_the_security_manager() {
        let mut o = SecurityOptions::default();
        apply(&mut o, 0, 0);
        assert!(!o.mitm && o.secure_connections && o.legacy_pairing && o.bonding);
        assert_eq!(o.io_capability, IoCapability::NoInputNoOutput);
        apply(&mut o, 2, 2);
        assert!(o.mitm && !o.secure_connections && o.legacy_pairing);
        assert_eq!(o.io_capability, IoCapability::DisplayYesNo);
        apply(&mut o, 3, 3);
        assert!(o.mitm && o.secure_connections && o.legacy_pairing);
        assert_eq!(o.io_capability, IoCapability::KeyboardOnly);
        apply(&mut o, 4, 4);
        assert!(o.mitm && o.secure_connections && !o.legacy_pairing);
        assert_eq!(o.io_capability, IoCapability::KeyboardDisplay);
        apply(&mut o, 1, 1);
        assert_eq!(o.io_capability, IoCapability::DisplayOnly);
        assert!(!o.mitm);
    }

    #[test]
    fn pairing_failures_map_onto_bond_status() {
        assert_eq!(bond_status(0), BOND_TIMEOUT);
        assert_eq!(bond_status(0x03), BOND_MITM);
        assert_eq!(bond_status(0x04), BOND_AUTH);
        assert_eq!(bond_status(0x01), BOND_AUTH);
        assert_eq!(bond_status(0x0C), BOND_AUTH);
    }

    #[test]
    fn identities_print_as_the_manual_writes_addresses() {
        let id = IdentityAddress::public(gattling::proto::gap::BdAddr([0x55, 0x44, 0x33, 0x22, 0x11, 0x00]));
        let a = identity_at(&id);
        assert_eq!(a.bytes, [0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
        assert_eq!(a.kind, AddrKind::Public);
        assert_eq!(address_of(&a).addr, id.addr);
    }
}
