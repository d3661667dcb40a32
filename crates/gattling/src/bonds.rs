//! The bond store: the keys and per-peer state kept after pairing, so a peer can reconnect and
//! re-encrypt without pairing again (Core Vol 3 Part H §2.4.1, Part C §9.4, Part G §3.3.3.3).
//!
//! [`BondStore`] is synchronous on purpose: bond writes are rare, and the runtime calls it from a
//! blocking-safe place (or `spawn_blocking`). Two stores:
//! - [`MemoryBondStore`]: bonds for the life of the process.
//! - [`FileBondStore`]: one TOML file per bond in a directory, named after the peer's identity
//!   address (`C0-11-22-33-44-55-random.bond`), written atomically and readable by the owner only.
//!
//! # File format
//!
//! ```toml
//! # gattling bond (Core Vol 3 Part H §2.4.1). It holds secret keys: keep it private.
//! version = 1
//! peer = "C0:11:22:33:44:55/random"
//! local = "00:1B:DC:01:02:03/public"  # optional: our identity for this bond
//! secure_connections = true
//! authenticated = true                # MITM protection
//! key_size = 16
//! peer_irk = "ec0234a357c8ad05341010a60a397d9b"   # optional
//! database_hash = "..."               # optional: the Database Hash the peer last saw
//! service_changed_pending = false
//!
//! [ltk]                               # optional: used when we are central
//! key = "..."
//! ediv = 0
//! rand = "0000000000000000"
//!
//! [local_ltk]                         # optional: used when the peer is central
//! [peer_csrk]                         # optional: key + counter = 0
//! [local_csrk]                        # optional
//!
//! [cccds]                             # Client Characteristic Configuration values by handle
//! 0x0012 = 1
//! ```
//!
//! Keys, `rand` and hashes are hex, **most significant octet first** as the specification writes
//! them (the in-memory arrays are little-endian, as SMP and HCI carry them). Unknown fields are
//! refused. [`fmt::Debug`] of a bond or key never shows key material.

use crate::proto::gap::privacy::{IdentityAddress, IdentityAddressType, Resolver};
use crate::proto::gap::BdAddr;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// The file format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The largest bond file read, in bytes; larger files are refused as corrupt.
pub const MAX_FILE_LEN: u64 = 1 << 20;

/// The extension of bond files in a [`FileBondStore`] directory.
pub const FILE_EXTENSION: &str = "bond";

/// A Long Term Key with its EDIV and Rand, as distributed in Encryption Information and Central
/// Identification (Core Vol 3 Part H §3.6.2, §3.6.3); for LE Secure Connections EDIV and Rand are 0
/// (§2.4.4.2). Arrays are little-endian. [`fmt::Debug`] redacts the key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LongTermKey {
    /// The 128-bit LTK.
    pub key: [u8; 16],
    /// The Encrypted Diversifier.
    pub ediv: u16,
    /// The 64-bit random number.
    pub rand: [u8; 8],
}

impl LongTermKey {
    /// A Secure Connections LTK: EDIV and Rand zero (Core Vol 3 Part H §2.4.4.2).
    pub fn secure_connections(key: [u8; 16]) -> Self {
        LongTermKey { key, ediv: 0, rand: [0; 8] }
    }
}

impl fmt::Debug for LongTermKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LongTermKey")
            .field("key", &Redacted)
            .field("ediv", &self.ediv)
            .field("rand", &Redacted)
            .finish()
    }
}

/// A Connection Signature Resolving Key and its sign counter, for signed writes
/// (Core Vol 3 Part H §2.4.2.2, §3.6.6; Part F §3.4.5.4). [`fmt::Debug`] redacts the key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SigningKey {
    /// The 128-bit CSRK, little-endian.
    pub key: [u8; 16],
    /// The SignCounter: the last counter used (ours) or accepted (the peer's) (Core Vol 3 Part H §2.4.5).
    pub counter: u32,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("key", &Redacted).field("counter", &self.counter).finish()
    }
}

/// Stands in for key material in `Debug` output.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What a bond with one peer holds (Core Vol 3 Part H §2.4.1, Part C §9.4, Part G §3.3.3.3 and
/// §7.3). [`fmt::Debug`] redacts every key.
#[derive(Clone, PartialEq, Eq)]
pub struct Bond {
    /// The peer, identified by its identity address (Core Vol 3 Part H §3.6.5).
    pub peer: IdentityAddress,
    /// Our identity for this bond, when we distributed one.
    pub local: Option<IdentityAddress>,
    /// Paired with LE Secure Connections (Core Vol 3 Part H §2.3.5.6).
    pub secure_connections: bool,
    /// The keys have MITM protection (authenticated pairing, Core Vol 3 Part H §2.3.5.1).
    pub authenticated: bool,
    /// The encryption key size in octets, 7 to 16 (Core Vol 3 Part H §2.3.4).
    pub key_size: u8,
    /// The LTK to encrypt with when we are central: the peer's distributed LTK in legacy pairing,
    /// the Secure Connections LTK otherwise (Core Vol 3 Part H §2.4.4.2).
    pub ltk: Option<LongTermKey>,
    /// The LTK we distributed in legacy pairing, answered to the peer's LTK request when it is
    /// central (Core Vol 3 Part H §2.4.4.2; Vol 4 Part E §7.7.65.5).
    pub local_ltk: Option<LongTermKey>,
    /// The peer's Identity Resolving Key, to resolve its private addresses (Core Vol 3 Part H §3.6.4).
    pub peer_irk: Option<[u8; 16]>,
    /// The peer's CSRK and the last sign counter accepted from it (Core Vol 3 Part H §3.6.6).
    pub peer_csrk: Option<SigningKey>,
    /// Our CSRK for this peer and the last sign counter we used (Core Vol 3 Part H §3.6.6).
    pub local_csrk: Option<SigningKey>,
    /// Client Characteristic Configuration values by descriptor handle, kept across connections
    /// for a bonded client (Core Vol 3 Part G §3.3.3.3). Absent means 0.
    pub cccds: BTreeMap<u16, u16>,
    /// The Database Hash the peer last read, to tell whether it is out of date
    /// (Core Vol 3 Part G §2.5.2.1, §7.3).
    pub database_hash: Option<[u8; 16]>,
    /// A Service Changed indication is owed to the peer (Core Vol 3 Part G §7.1).
    pub service_changed_pending: bool,
}

impl fmt::Debug for Bond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |present: bool| if present { Some(Redacted) } else { None };
        f.debug_struct("Bond")
            .field("peer", &self.peer)
            .field("local", &self.local)
            .field("secure_connections", &self.secure_connections)
            .field("authenticated", &self.authenticated)
            .field("key_size", &self.key_size)
            .field("ltk", &self.ltk)
            .field("local_ltk", &self.local_ltk)
            .field("peer_irk", &redact(self.peer_irk.is_some()))
            .field("peer_csrk", &self.peer_csrk)
            .field("local_csrk", &self.local_csrk)
            .field("cccds", &self.cccds)
            .field("database_hash", &self.database_hash.map(Hex))
            .field("service_changed_pending", &self.service_changed_pending)
            .finish()
    }
}

/// A 128-bit value shown most significant octet first (not secret: the Database Hash).
struct Hex([u8; 16]);

impl fmt::Debug for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex_msb_first(&self.0))
    }
}

impl Bond {
    /// An empty bond with `peer`: no keys, unauthenticated legacy pairing, key size 16
    /// (Core Vol 3 Part H §2.4.1).
    pub fn new(peer: IdentityAddress) -> Self {
        Bond {
            peer,
            local: None,
            secure_connections: false,
            authenticated: false,
            key_size: 16,
            ltk: None,
            local_ltk: None,
            peer_irk: None,
            peer_csrk: None,
            local_csrk: None,
            cccds: BTreeMap::new(),
            database_hash: None,
            service_changed_pending: false,
        }
    }

    /// The LTK to answer an HCI LE Long Term Key Request with when the peer is central: the
    /// Secure Connections LTK for EDIV = Rand = 0, else our distributed legacy LTK when EDIV and
    /// Rand match it (Core Vol 3 Part H §2.4.4.2; Vol 4 Part E §7.7.65.5).
    pub fn ltk_for_request(&self, ediv: u16, rand: [u8; 8]) -> Option<[u8; 16]> {
        if self.secure_connections {
            return self.ltk.filter(|k| ediv == 0 && rand == [0; 8] && k.ediv == 0 && k.rand == [0; 8]).map(|k| k.key);
        }
        self.local_ltk.filter(|k| k.ediv == ediv && k.rand == rand).map(|k| k.key)
    }

    /// The file name of `peer`'s bond in a [`FileBondStore`]: `C0-11-22-33-44-55-random.bond`
    /// (no ':' so it is valid on every file system).
    pub fn file_name(peer: &IdentityAddress) -> String {
        let b = peer.addr.0;
        let kind = type_name(peer.kind);
        format!("{:02X}-{:02X}-{:02X}-{:02X}-{:02X}-{:02X}-{kind}.{FILE_EXTENSION}", b[5], b[4], b[3], b[2], b[1], b[0])
    }

    /// The bond as the TOML text of a bond file (see the module documentation).
    pub fn to_toml(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_toml(&mut s);
        s
    }

    fn write_toml(&self, s: &mut String) -> fmt::Result {
        writeln!(s, "# gattling bond (Core Vol 3 Part H §2.4.1). It holds secret keys: keep it private.")?;
        writeln!(s, "version = {FORMAT_VERSION}")?;
        writeln!(s, "peer = \"{}\"", address_text(&self.peer))?;
        if let Some(local) = &self.local {
            writeln!(s, "local = \"{}\"", address_text(local))?;
        }
        writeln!(s, "secure_connections = {}", self.secure_connections)?;
        writeln!(s, "authenticated = {}", self.authenticated)?;
        writeln!(s, "key_size = {}", self.key_size)?;
        if let Some(irk) = &self.peer_irk {
            writeln!(s, "peer_irk = \"{}\"", hex_msb_first(irk))?;
        }
        if let Some(hash) = &self.database_hash {
            writeln!(s, "database_hash = \"{}\"", hex_msb_first(hash))?;
        }
        writeln!(s, "service_changed_pending = {}", self.service_changed_pending)?;
        for (name, ltk) in [("ltk", &self.ltk), ("local_ltk", &self.local_ltk)] {
            if let Some(k) = ltk {
                writeln!(s, "\n[{name}]")?;
                writeln!(s, "key = \"{}\"", hex_msb_first(&k.key))?;
                writeln!(s, "ediv = {}", k.ediv)?;
                writeln!(s, "rand = \"{}\"", hex_msb_first(&k.rand))?;
            }
        }
        for (name, csrk) in [("peer_csrk", &self.peer_csrk), ("local_csrk", &self.local_csrk)] {
            if let Some(k) = csrk {
                writeln!(s, "\n[{name}]")?;
                writeln!(s, "key = \"{}\"", hex_msb_first(&k.key))?;
                writeln!(s, "counter = {}", k.counter)?;
            }
        }
        if !self.cccds.is_empty() {
            writeln!(s, "\n[cccds]")?;
            for (handle, value) in &self.cccds {
                writeln!(s, "0x{handle:04X} = {value}")?;
            }
        }
        Ok(())
    }

    /// Parses the TOML text of a bond file (see the module documentation); every error names the
    /// field and what was wrong, never a key's value.
    pub fn from_toml(text: &str) -> Result<Bond, BondFormatError> {
        let raw: BondToml = toml::from_str(text).map_err(|e| BondFormatError::Syntax {
            line: e.span().map(|span| line_of(text, span.start)).unwrap_or(0),
            message: e.message().trim().to_string(),
        })?;
        if raw.version != FORMAT_VERSION {
            return Err(BondFormatError::Version(raw.version));
        }
        if !(7..=16).contains(&raw.key_size) {
            return Err(field("key_size", "must be 7 to 16 octets (Core Vol 3 Part H §2.3.4)"));
        }
        let mut cccds = BTreeMap::new();
        for (key, value) in raw.cccds {
            let handle = key
                .strip_prefix("0x")
                .or_else(|| key.strip_prefix("0X"))
                .filter(|digits| digits.len() == 4)
                .and_then(|digits| u16::from_str_radix(digits, 16).ok())
                .filter(|h| *h != 0)
                .ok_or_else(|| field("cccds", "handles are written 0x0001 to 0xFFFF"))?;
            cccds.insert(handle, value);
        }
        Ok(Bond {
            peer: parse_identity("peer", &raw.peer)?,
            local: raw.local.as_deref().map(|s| parse_identity("local", s)).transpose()?,
            secure_connections: raw.secure_connections,
            authenticated: raw.authenticated,
            key_size: raw.key_size,
            ltk: raw.ltk.map(|k| k.parse("ltk")).transpose()?,
            local_ltk: raw.local_ltk.map(|k| k.parse("local_ltk")).transpose()?,
            peer_irk: raw.peer_irk.as_deref().map(|s| parse_hex("peer_irk", s)).transpose()?,
            peer_csrk: raw.peer_csrk.map(|k| k.parse("peer_csrk")).transpose()?,
            local_csrk: raw.local_csrk.map(|k| k.parse("local_csrk")).transpose()?,
            cccds,
            database_hash: raw.database_hash.as_deref().map(|s| parse_hex("database_hash", s)).transpose()?,
            service_changed_pending: raw.service_changed_pending,
        })
    }
}

/// A resolving list of every bond's peer IRK, to map the peers' private addresses to their
/// identities (Core Vol 3 Part C §10.7).
pub fn resolver_from(bonds: &[Bond]) -> Resolver {
    let mut r = Resolver::new();
    for bond in bonds {
        if let Some(irk) = bond.peer_irk {
            r.add(irk, bond.peer);
        }
    }
    r
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BondToml {
    version: u32,
    peer: String,
    local: Option<String>,
    secure_connections: bool,
    authenticated: bool,
    key_size: u8,
    peer_irk: Option<String>,
    database_hash: Option<String>,
    #[serde(default)]
    service_changed_pending: bool,
    ltk: Option<LtkToml>,
    local_ltk: Option<LtkToml>,
    peer_csrk: Option<CsrkToml>,
    local_csrk: Option<CsrkToml>,
    #[serde(default)]
    cccds: BTreeMap<String, u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LtkToml {
    key: String,
    ediv: u16,
    rand: String,
}

impl LtkToml {
    fn parse(self, table: &'static str) -> Result<LongTermKey, BondFormatError> {
        Ok(LongTermKey { key: parse_hex(table, &self.key)?, ediv: self.ediv, rand: parse_hex(table, &self.rand)? })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CsrkToml {
    key: String,
    counter: u32,
}

impl CsrkToml {
    fn parse(self, table: &'static str) -> Result<SigningKey, BondFormatError> {
        Ok(SigningKey { key: parse_hex(table, &self.key)?, counter: self.counter })
    }
}

fn field(field: &'static str, problem: &'static str) -> BondFormatError {
    BondFormatError::Field { field, problem }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).bytes().filter(|b| *b == b'\n').count() + 1
}

fn type_name(kind: IdentityAddressType) -> &'static str {
    match kind {
        IdentityAddressType::Public => "public",
        IdentityAddressType::StaticRandom => "random",
    }
}

fn address_text(id: &IdentityAddress) -> String {
    format!("{}/{}", id.addr, type_name(id.kind))
}

fn parse_identity(name: &'static str, text: &str) -> Result<IdentityAddress, BondFormatError> {
    let bad = || field(name, "expected an identity address like C0:11:22:33:44:55/random or 00:11:22:33:44:55/public");
    let (addr, kind) = text.split_once('/').ok_or_else(bad)?;
    let addr: BdAddr = addr.parse().map_err(|_| bad())?;
    let kind = match kind {
        "public" => IdentityAddressType::Public,
        "random" => IdentityAddressType::StaticRandom,
        _ => return Err(bad()),
    };
    Ok(IdentityAddress { kind, addr })
}

/// Hex of a little-endian array, most significant octet first.
fn hex_msb_first(bytes: &[u8]) -> String {
    bytes.iter().rev().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Parses `2 * N` hex digits written most significant octet first into a little-endian array.
fn parse_hex<const N: usize>(name: &'static str, text: &str) -> Result<[u8; N], BondFormatError> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return Err(field(name, "wrong number of hex digits"));
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().rev().zip(digits.chunks_exact(2)) {
        let hi = (pair[0] as char).to_digit(16);
        let lo = (pair[1] as char).to_digit(16);
        match (hi, lo) {
            (Some(hi), Some(lo)) => *o = (hi << 4 | lo) as u8,
            _ => return Err(field(name, "not hex digits")),
        }
    }
    Ok(out)
}

/// Why a bond file's text was refused (see the module documentation for the format).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BondFormatError {
    /// Not TOML, or a field of the wrong type, missing or unknown.
    #[error("line {line}: {message}")]
    Syntax {
        /// The 1-based line of the problem (0 when unknown).
        line: usize,
        /// What was wrong.
        message: String,
    },
    /// A format version this build does not read.
    #[error("format version {0} is not supported (this build reads version {FORMAT_VERSION})")]
    Version(u32),
    /// A field whose value is invalid.
    #[error("field `{field}`: {problem}")]
    Field {
        /// The field (or table) name.
        field: &'static str,
        /// What was wrong.
        problem: &'static str,
    },
}

/// Why a bond store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BondError {
    /// The store holds `capacity` bonds and refuses a new peer (replacing a bond is allowed).
    #[error("the bond store is full ({capacity} bonds): remove a bond before bonding with a new peer")]
    Full {
        /// The store's capacity.
        capacity: usize,
    },
    /// No bond with this peer.
    #[error("no bond with {peer}")]
    NotBonded {
        /// The peer asked for.
        peer: IdentityAddress,
    },
    /// A file system operation failed.
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done ("read", "write", ...).
        action: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
    /// A bond file's contents are invalid.
    #[error("{}: {source}", path.display())]
    Format {
        /// The bond file.
        path: PathBuf,
        /// What was wrong.
        source: BondFormatError,
    },
    /// A bond file larger than [`MAX_FILE_LEN`].
    #[error("{}: {len} bytes, more than the {MAX_FILE_LEN} a bond file may have", path.display())]
    TooLarge {
        /// The bond file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// A bond file whose name is not the name of the peer it holds.
    #[error("{}: holds the bond with {peer}, which belongs in {expected}", path.display())]
    MisplacedFile {
        /// The bond file.
        path: PathBuf,
        /// The peer in the file.
        peer: IdentityAddress,
        /// The file name that peer's bond has.
        expected: String,
    },
}

/// A bond file that [`FileBondStore::open`] skipped, and why.
#[derive(Debug)]
pub struct SkippedBond {
    /// The file.
    pub path: PathBuf,
    /// What was wrong with it.
    pub error: BondError,
}

/// Where bonds are kept (Core Vol 3 Part C §9.4: a bond is the keys stored after pairing).
/// Synchronous: call it from blocking-safe code.
pub trait BondStore: Send + Sync {
    /// The most bonds the store keeps.
    fn capacity(&self) -> usize;

    /// Every bond, in identity address order.
    fn list(&self) -> Vec<Bond>;

    /// The bond with `peer`, if any.
    fn get(&self, peer: &IdentityAddress) -> Option<Bond>;

    /// Stores `bond`, replacing any bond with the same peer; [`BondError::Full`] for a new peer
    /// when the store is at capacity.
    fn put(&self, bond: Bond) -> Result<(), BondError>;

    /// Deletes the bond with `peer`; true when there was one.
    fn remove(&self, peer: &IdentityAddress) -> Result<bool, BondError>;

    /// Changes the bond with `peer` in place with `change` (its `peer` stays as it was) and
    /// stores it when it changed; [`BondError::NotBonded`] when there is no such bond.
    fn modify(&self, peer: &IdentityAddress, change: &mut dyn FnMut(&mut Bond)) -> Result<(), BondError>;

    /// Records the value a bonded client wrote to the CCCD at `handle` (0 clears it), so it holds
    /// on the next connection (Core Vol 3 Part G §3.3.3.3).
    fn update_cccd(&self, peer: &IdentityAddress, handle: u16, value: u16) -> Result<(), BondError> {
        self.modify(peer, &mut |bond| {
            if value == 0 {
                bond.cccds.remove(&handle);
            } else {
                bond.cccds.insert(handle, value);
            }
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves the map consistent (every update is one insert).
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Bonds in memory, lost when the process ends; also the cache behind [`FileBondStore`], whose
/// writes go through the `persist` hooks while the lock orders them.
#[derive(Debug)]
pub struct MemoryBondStore {
    capacity: usize,
    bonds: Mutex<BTreeMap<IdentityAddress, Bond>>,
}

impl MemoryBondStore {
    /// An empty store keeping at most `capacity` bonds.
    pub fn new(capacity: usize) -> Self {
        Self::with(capacity, BTreeMap::new())
    }

    fn with(capacity: usize, bonds: BTreeMap<IdentityAddress, Bond>) -> Self {
        MemoryBondStore { capacity, bonds: Mutex::new(bonds) }
    }

    /// `put`, with `persist` run under the lock before the cache changes.
    fn put_with(&self, bond: Bond, persist: impl FnOnce(&Bond) -> Result<(), BondError>) -> Result<(), BondError> {
        let mut bonds = lock(&self.bonds);
        if !bonds.contains_key(&bond.peer) && bonds.len() >= self.capacity {
            return Err(BondError::Full { capacity: self.capacity });
        }
        persist(&bond)?;
        bonds.insert(bond.peer, bond);
        Ok(())
    }

    /// `remove`, with `persist` run under the lock first.
    fn remove_with(
        &self,
        peer: &IdentityAddress,
        persist: impl FnOnce() -> Result<(), BondError>,
    ) -> Result<bool, BondError> {
        let mut bonds = lock(&self.bonds);
        persist()?;
        Ok(bonds.remove(peer).is_some())
    }

    /// `modify`, with `persist` run under the lock when the bond changed.
    fn modify_with(
        &self,
        peer: &IdentityAddress,
        change: &mut dyn FnMut(&mut Bond),
        persist: impl FnOnce(&Bond) -> Result<(), BondError>,
    ) -> Result<(), BondError> {
        let mut bonds = lock(&self.bonds);
        let old = bonds.get(peer).ok_or(BondError::NotBonded { peer: *peer })?;
        let mut bond = old.clone();
        change(&mut bond);
        bond.peer = *peer;
        if bond != *old {
            persist(&bond)?;
            bonds.insert(*peer, bond);
        }
        Ok(())
    }
}

impl BondStore for MemoryBondStore {
    fn capacity(&self) -> usize {
        self.capacity
    }

    fn list(&self) -> Vec<Bond> {
        lock(&self.bonds).values().cloned().collect()
    }

    fn get(&self, peer: &IdentityAddress) -> Option<Bond> {
        lock(&self.bonds).get(peer).cloned()
    }

    fn put(&self, bond: Bond) -> Result<(), BondError> {
        self.put_with(bond, |_| Ok(()))
    }

    fn remove(&self, peer: &IdentityAddress) -> Result<bool, BondError> {
        self.remove_with(peer, || Ok(()))
    }

    fn modify(&self, peer: &IdentityAddress, change: &mut dyn FnMut(&mut Bond)) -> Result<(), BondError> {
        self.modify_with(peer, change, |_| Ok(()))
    }
}

/// Bonds in a directory, one TOML file each (see the module documentation), so they survive a
/// restart. Files are written atomically (temporary file, fsync, rename, fsync of the directory)
/// with mode 0600; a directory it creates gets mode 0700. Bonds are read once, by
/// [`FileBondStore::open`], and cached.
#[derive(Debug)]
pub struct FileBondStore {
    dir: PathBuf,
    cache: MemoryBondStore,
    skipped: Vec<SkippedBond>,
}

impl FileBondStore {
    /// Opens the store in `dir` (created, mode 0700, when missing) keeping at most `capacity`
    /// bonds, and reads every `*.bond` file. A file that cannot be read or parsed is skipped,
    /// logged and listed by [`FileBondStore::skipped`]; temporary files of an interrupted write
    /// are deleted. Fails only when the directory cannot be created or listed. More bonds than
    /// `capacity` on disk are all loaded, but no new peer is accepted until some are removed.
    pub fn open(dir: impl Into<PathBuf>, capacity: usize) -> Result<Self, BondError> {
        let dir = dir.into();
        create_dir(&dir)?;
        let mut names = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_error(&dir, "list the bond directory"))? {
            let entry = entry.map_err(io_error(&dir, "list the bond directory"))?;
            names.push(entry.file_name());
        }
        names.sort();
        let mut bonds = BTreeMap::new();
        let mut skipped = Vec::new();
        for name in names {
            let Some(name) = name.to_str() else { continue };
            let path = dir.join(name);
            if is_temp_name(name) {
                match fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "removed the temporary file of an interrupted bond write")
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot remove a stale temporary bond file")
                    }
                }
                continue;
            }
            if !name.ends_with(&format!(".{FILE_EXTENSION}")) {
                continue;
            }
            match read_bond(&path, name) {
                Ok(bond) => {
                    bonds.insert(bond.peer, bond);
                }
                Err(error) => {
                    tracing::warn!(%error, "skipping an unreadable bond file");
                    skipped.push(SkippedBond { path, error });
                }
            }
        }
        Ok(FileBondStore { dir, cache: MemoryBondStore::with(capacity, bonds), skipped })
    }

    /// The directory holding the bond files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The bond files [`FileBondStore::open`] skipped, with the reason for each.
    pub fn skipped(&self) -> &[SkippedBond] {
        &self.skipped
    }

    /// The path of `peer`'s bond file.
    pub fn path_of(&self, peer: &IdentityAddress) -> PathBuf {
        self.dir.join(Bond::file_name(peer))
    }

    fn write(&self, bond: &Bond) -> Result<(), BondError> {
        let name = Bond::file_name(&bond.peer);
        let tmp = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let path = self.dir.join(&name);
        let result = write_file(&tmp, bond.to_toml().as_bytes())
            .and_then(|()| {
                fs::rename(&tmp, &path).map_err(|source| BondError::Io {
                    path: path.clone(),
                    action: "rename the new bond file into place",
                    source,
                })
            })
            .and_then(|()| sync_dir(&self.dir));
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

impl BondStore for FileBondStore {
    fn capacity(&self) -> usize {
        self.cache.capacity()
    }

    fn list(&self) -> Vec<Bond> {
        self.cache.list()
    }

    fn get(&self, peer: &IdentityAddress) -> Option<Bond> {
        self.cache.get(peer)
    }

    fn put(&self, bond: Bond) -> Result<(), BondError> {
        // The cache's lock is held across the write so writes to one file are ordered.
        self.cache.put_with(bond, |b| self.write(b))
    }

    fn remove(&self, peer: &IdentityAddress) -> Result<bool, BondError> {
        let path = self.path_of(peer);
        self.cache.remove_with(peer, || {
            // Also deletes a skipped (corrupt) file of this peer.
            match fs::remove_file(&path) {
                Ok(()) => sync_dir(&self.dir),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(BondError::Io { path: path.clone(), action: "delete the bond file", source }),
            }
        })
    }

    fn modify(&self, peer: &IdentityAddress, change: &mut dyn FnMut(&mut Bond)) -> Result<(), BondError> {
        self.cache.modify_with(peer, change, |b| self.write(b))
    }
}

/// True for the temporary file names [`FileBondStore`] writes before renaming: `.NAME.bond.PID.tmp`.
fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp") && name.contains(&format!(".{FILE_EXTENSION}."))
}

/// Maps an I/O error on `path` while doing `action` to [`BondError::Io`].
fn io_error<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> BondError + 'a {
    move |source| BondError::Io { path: path.to_path_buf(), action, source }
}

fn create_dir(dir: &Path) -> Result<(), BondError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| BondError::Io {
        path: dir.to_path_buf(),
        action: "create the bond directory",
        source,
    })
}

fn read_bond(path: &Path, name: &str) -> Result<Bond, BondError> {
    let file = fs::File::open(path).map_err(io_error(path, "open"))?;
    let len = file.metadata().map_err(io_error(path, "stat"))?.len();
    if len > MAX_FILE_LEN {
        return Err(BondError::TooLarge { path: path.to_path_buf(), len });
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_LEN + 1).read_to_end(&mut bytes).map_err(io_error(path, "read"))?;
    let format = |source| BondError::Format { path: path.to_path_buf(), source };
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        format(BondFormatError::Syntax {
            line: line_of_bytes(&bytes, e.valid_up_to()),
            message: "not UTF-8 text".into(),
        })
    })?;
    let bond = Bond::from_toml(text).map_err(format)?;
    let expected = Bond::file_name(&bond.peer);
    if expected != name {
        return Err(BondError::MisplacedFile { path: path.to_path_buf(), peer: bond.peer, expected });
    }
    Ok(bond)
}

fn line_of_bytes(bytes: &[u8], offset: usize) -> usize {
    bytes.get(..offset).unwrap_or(bytes).iter().filter(|b| **b == b'\n').count() + 1
}

/// Creates `path` anew with mode 0600 and writes and fsyncs `contents`.
fn write_file(path: &Path, contents: &[u8]) -> Result<(), BondError> {
    // A stale file of that name (another mode, another owner) is replaced, not reused.
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(io_error(path, "remove the old temporary file")(e))
        }
        _ => {}
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io_error(path, "create"))?;
    file.write_all(contents).map_err(io_error(path, "write"))?;
    file.sync_all().map_err(io_error(path, "fsync"))
}

/// Makes a rename or delete in `dir` durable (no-op where directories cannot be opened).
fn sync_dir(dir: &Path) -> Result<(), BondError> {
    #[cfg(unix)]
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|source| BondError::Io {
        path: dir.to_path_buf(),
        action: "fsync the bond directory",
        source,
    })?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system temp dir, deleted on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("gattling-bonds-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            TempDir(path)
        }

        fn files(&self) -> Vec<String> {
            let mut names: Vec<String> =
                fs::read_dir(&self.0).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
            names.sort();
            names
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn alice() -> IdentityAddress {
        IdentityAddress::static_random("C0:11:22:33:44:55".parse().unwrap()).unwrap()
    }

    fn bob() -> IdentityAddress {
        IdentityAddress::public("00:1B:DC:01:02:03".parse().unwrap())
    }

    fn full_bond(peer: IdentityAddress) -> Bond {
        let mut b = Bond::new(peer);
        b.local = Some(IdentityAddress::public("00:1B:DC:AA:BB:CC".parse().unwrap()));
        b.secure_connections = true;
        b.authenticated = true;
        b.key_size = 16;
        b.ltk = Some(LongTermKey::secure_connections([0x11; 16]));
        b.local_ltk = Some(LongTermKey { key: [0x22; 16], ediv: 0xBEEF, rand: [1, 2, 3, 4, 5, 6, 7, 8] });
        b.peer_irk = Some([0x33; 16]);
        b.peer_csrk = Some(SigningKey { key: [0x44; 16], counter: 7 });
        b.local_csrk = Some(SigningKey { key: [0x55; 16], counter: u32::MAX });
        b.cccds.insert(0x0012, 0x0001);
        b.cccds.insert(0xFFFF, 0x0002);
        b.database_hash = Some([0x66; 16]);
        b.service_changed_pending = true;
        b
    }

    #[test]
    fn text_format_is_readable_and_round_trips() {
        let mut bond = full_bond(alice());
        bond.peer_irk =
            Some([0x9b, 0x7d, 0x39, 0x0a, 0xa6, 0x10, 0x10, 0x34, 0x05, 0xad, 0xc8, 0x57, 0xa3, 0x34, 0x02, 0xec]);
        let text = bond.to_toml();
        assert!(text.contains("peer = \"C0:11:22:33:44:55/random\"\n"), "{text}");
        assert!(text.contains("peer_irk = \"ec0234a357c8ad05341010a60a397d9b\"\n"), "MSB first: {text}");
        assert!(text.contains("rand = \"0807060504030201\"\n"), "{text}");
        assert!(text.contains("ediv = 48879\n"), "{text}");
        assert!(text.contains("[cccds]\n0x0012 = 1\n0xFFFF = 2\n"), "{text}");
        assert_eq!(Bond::from_toml(&text), Ok(bond));
        let minimal = Bond::new(bob());
        assert_eq!(Bond::from_toml(&minimal.to_toml()), Ok(minimal));
        assert_eq!(Bond::file_name(&alice()), "C0-11-22-33-44-55-random.bond");
        assert_eq!(Bond::file_name(&bob()), "00-1B-DC-01-02-03-public.bond");
    }

    #[test]
    fn format_errors_name_the_field_not_the_key() {
        let good = full_bond(alice()).to_toml();
        let err = |text: &str| Bond::from_toml(text).unwrap_err();
        assert_eq!(
            err(&good.replace("key_size = 16", "key_size = 6")),
            BondFormatError::Field { field: "key_size", problem: "must be 7 to 16 octets (Core Vol 3 Part H §2.3.4)" }
        );
        assert_eq!(err(&good.replace("version = 1", "version = 2")), BondFormatError::Version(2));
        let e = err(&good.replace("33333333", "3333333z"));
        assert_eq!(e, BondFormatError::Field { field: "peer_irk", problem: "not hex digits" });
        assert!(!e.to_string().contains("333"), "{e}");
        let e = err(&good.replace("/random", "/static"));
        assert!(matches!(e, BondFormatError::Field { field: "peer", .. }), "{e}");
        let e = err(&good.replace("0x0012", "0x12"));
        assert!(matches!(e, BondFormatError::Field { field: "cccds", .. }), "{e}");
        let e = err(&good.replace("0x0012", "0x0000"));
        assert!(matches!(e, BondFormatError::Field { field: "cccds", .. }), "{e}");
        let e = err(&good.replace("counter = 7", "counter = -1"));
        assert!(matches!(e, BondFormatError::Syntax { .. }), "{e}");
        let e = err(&format!("surprise = true\n{good}"));
        assert!(e.to_string().contains("surprise"), "{e}");
        let e = err("version = 1\npeer = \n");
        assert!(matches!(e, BondFormatError::Syntax { line: 2, .. }), "{e}");
        assert!(matches!(err(""), BondFormatError::Syntax { .. }));
    }

    #[test]
    fn debug_redacts_keys() {
        let text = format!("{:?}", full_bond(alice()));
        for secret in ["0x11", "17, 17", "34, 34", "51, 51", "68, 68", "85, 85", "[1, 2, 3"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("<redacted>") && text.contains("ediv: 48879") && text.contains("counter: 7"), "{text}");
        assert!(text.contains("6666666666"), "the database hash is not secret: {text}");
    }

    #[test]
    fn ltk_request_answers() {
        let sc = full_bond(alice());
        assert_eq!(sc.ltk_for_request(0, [0; 8]), Some([0x11; 16]));
        assert_eq!(sc.ltk_for_request(1, [0; 8]), None);
        let mut legacy = full_bond(alice());
        legacy.secure_connections = false;
        assert_eq!(legacy.ltk_for_request(0xBEEF, [1, 2, 3, 4, 5, 6, 7, 8]), Some([0x22; 16]));
        assert_eq!(legacy.ltk_for_request(0xBEEF, [0; 8]), None);
        assert_eq!(Bond::new(bob()).ltk_for_request(0, [0; 8]), None);
    }

    #[test]
    fn resolving_list_from_bonds() {
        let mut with_irk = Bond::new(alice());
        with_irk.peer_irk = Some([7; 16]);
        let r = resolver_from(&[with_irk, Bond::new(bob())]);
        assert_eq!(r.len(), 1);
    }

    /// Runs the store contract shared by both stores.
    fn contract(store: &dyn BondStore) {
        assert_eq!(store.capacity(), 2);
        assert_eq!(store.get(&alice()), None);
        store.put(full_bond(alice())).unwrap();
        assert_eq!(store.get(&alice()), Some(full_bond(alice())));
        store.put(Bond::new(bob())).unwrap();
        let carol = IdentityAddress::public("00:00:00:00:00:01".parse().unwrap());
        assert!(matches!(store.put(Bond::new(carol)), Err(BondError::Full { capacity: 2 })));
        assert_eq!(
            BondError::Full { capacity: 2 }.to_string(),
            "the bond store is full (2 bonds): remove a bond before bonding with a new peer"
        );
        // Replacing a bond at capacity is allowed.
        let mut replaced = Bond::new(alice());
        replaced.key_size = 7;
        store.put(replaced.clone()).unwrap();
        assert_eq!(store.get(&alice()), Some(replaced));
        assert_eq!(store.list().iter().map(|b| b.peer).collect::<Vec<_>>(), vec![bob(), alice()]);
        store.update_cccd(&bob(), 0x0010, 2).unwrap();
        assert_eq!(store.get(&bob()).unwrap().cccds.get(&0x0010), Some(&2));
        store.update_cccd(&bob(), 0x0010, 0).unwrap();
        assert!(store.get(&bob()).unwrap().cccds.is_empty());
        assert!(matches!(store.update_cccd(&carol, 1, 1), Err(BondError::NotBonded { .. })));
        // modify keeps the peer.
        store.modify(&bob(), &mut |b| b.peer = carol).unwrap();
        assert!(store.get(&bob()).is_some() && store.get(&carol).is_none());
        assert!(store.remove(&alice()).unwrap());
        assert!(!store.remove(&alice()).unwrap());
        store.put(Bond::new(carol)).unwrap();
        assert_eq!(store.list().len(), 2);
    }

    #[test]
    fn memory_store_contract() {
        contract(&MemoryBondStore::new(2));
    }

    #[test]
    fn file_store_contract_and_restart() {
        let dir = TempDir::new();
        let store = FileBondStore::open(dir.0.join("nested/bonds"), 2).unwrap();
        contract(&store);
        let expect = store.list();
        drop(store);
        let again = FileBondStore::open(dir.0.join("nested/bonds"), 2).unwrap();
        assert_eq!(again.list(), expect);
        assert!(again.skipped().is_empty());
    }

    #[test]
    fn restart_sees_bonds_and_cccd_updates() {
        let dir = TempDir::new();
        let store = FileBondStore::open(&dir.0, 8).unwrap();
        store.put(full_bond(alice())).unwrap();
        store.put(Bond::new(bob())).unwrap();
        store.update_cccd(&alice(), 0x0030, 0x0002).unwrap();
        store.modify(&bob(), &mut |b| b.service_changed_pending = true).unwrap();
        drop(store);
        let store = FileBondStore::open(&dir.0, 8).unwrap();
        let a = store.get(&alice()).unwrap();
        assert_eq!(a.cccds.get(&0x0030), Some(&2));
        assert_eq!(a.ltk, full_bond(alice()).ltk);
        assert!(store.get(&bob()).unwrap().service_changed_pending);
        assert_eq!(dir.files(), ["00-1B-DC-01-02-03-public.bond", "C0-11-22-33-44-55-random.bond"]);
        // A removal persists too.
        assert!(store.remove(&bob()).unwrap());
        drop(store);
        let store = FileBondStore::open(&dir.0, 8).unwrap();
        assert_eq!(store.list().len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn permissions_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new();
        let store = FileBondStore::open(&dir.0, 8).unwrap();
        store.put(full_bond(alice())).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.0), 0o700);
        assert_eq!(mode(&store.path_of(&alice())), 0o600);
        // A file made readable by others is replaced by a private one on the next write.
        fs::set_permissions(store.path_of(&alice()), fs::Permissions::from_mode(0o644)).unwrap();
        store.update_cccd(&alice(), 5, 1).unwrap();
        assert_eq!(mode(&store.path_of(&alice())), 0o600);
    }

    #[test]
    fn corrupt_files_are_skipped_and_reported() {
        let dir = TempDir::new();
        let store = FileBondStore::open(&dir.0, 8).unwrap();
        store.put(full_bond(alice())).unwrap();
        drop(store);
        let corrupt = dir.0.join("00-1B-DC-01-02-03-public.bond");
        fs::write(&corrupt, "version = 1\npeer = [[[\n").unwrap();
        let misplaced = dir.0.join("C0-99-22-33-44-55-random.bond");
        fs::write(&misplaced, full_bond(alice()).to_toml()).unwrap();
        let binary = dir.0.join("C0-11-22-33-44-66-random.bond");
        fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        fs::write(dir.0.join("README.txt"), "not a bond").unwrap();
        let store = FileBondStore::open(&dir.0, 8).unwrap();
        assert_eq!(store.list(), vec![full_bond(alice())]);
        let skipped: Vec<(&Path, String)> =
            store.skipped().iter().map(|s| (s.path.as_path(), s.error.to_string())).collect();
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert_eq!(skipped[0].0, corrupt);
        assert!(skipped[0].1.starts_with(&format!("{}: line 2:", corrupt.display())), "{skipped:?}");
        assert_eq!(skipped[1].0, binary);
        assert!(skipped[1].1.ends_with("line 1: not UTF-8 text"), "{skipped:?}");
        assert_eq!(skipped[2].0, misplaced);
        assert!(skipped[2].1.contains("belongs in C0-11-22-33-44-55-random.bond"), "{skipped:?}");
        // Removing the peer of a corrupt file deletes it.
        assert!(!store.remove(&bob()).unwrap());
        assert!(!corrupt.exists());
    }

    #[test]
    fn oversized_files_are_skipped() {
        let dir = TempDir::new();
        fs::create_dir_all(&dir.0).unwrap();
        let path = dir.0.join("C0-11-22-33-44-55-random.bond");
        let file = fs::File::create(&path).unwrap();
        file.set_len(MAX_FILE_LEN + 1).unwrap();
        let store = FileBondStore::open(&dir.0, 8).unwrap();
        assert!(matches!(store.skipped(), [SkippedBond { error: BondError::TooLarge { .. }, .. }]));
    }

    #[test]
    fn interrupted_write_leaves_the_old_bond_and_no_temp_files() {
        let dir = TempDir::new();
        let store = FileBondStore::open(&dir.0, 8).unwrap();
        store.put(full_bond(alice())).unwrap();
        store.update_cccd(&alice(), 9, 1).unwrap();
        assert_eq!(dir.files(), ["C0-11-22-33-44-55-random.bond"], "no temporary files after writes");
        let old = store.get(&alice()).unwrap();
        drop(store);
        // A crash after writing the temporary file and before the rename.
        let mut newer = old.clone();
        newer.key_size = 7;
        let tmp = dir.0.join(".C0-11-22-33-44-55-random.bond.4242.tmp");
        fs::write(&tmp, newer.to_toml()).unwrap();
        let half = dir.0.join(".00-1B-DC-01-02-03-public.bond.4242.tmp");
        fs::write(&half, "version = 1\npeer = \"00:1B").unwrap();
        let store = FileBondStore::open(&dir.0, 8).unwrap();
        assert_eq!(store.list(), vec![old]);
        assert!(store.skipped().is_empty());
        assert_eq!(dir.files(), ["C0-11-22-33-44-55-random.bond"], "stale temporary files are cleaned");
    }

    #[test]
    fn unwritable_directory_is_an_error_naming_it() {
        let dir = TempDir::new();
        fs::create_dir_all(&dir.0).unwrap();
        let file = dir.0.join("plain-file");
        fs::write(&file, "x").unwrap();
        let err = FileBondStore::open(file.join("bonds"), 8).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!("{}: cannot create the bond directory", file.join("bonds").display())),
            "{err}"
        );
    }

    fn identity() -> impl Strategy<Value = IdentityAddress> {
        (any::<bool>(), any::<[u8; 6]>()).prop_map(|(public, a)| IdentityAddress {
            kind: if public { IdentityAddressType::Public } else { IdentityAddressType::StaticRandom },
            addr: BdAddr(a),
        })
    }

    fn ltk() -> impl Strategy<Value = LongTermKey> {
        (any::<[u8; 16]>(), any::<u16>(), any::<[u8; 8]>()).prop_map(|(key, ediv, rand)| LongTermKey {
            key,
            ediv,
            rand,
        })
    }

    fn csrk() -> impl Strategy<Value = SigningKey> {
        (any::<[u8; 16]>(), any::<u32>()).prop_map(|(key, counter)| SigningKey { key, counter })
    }

    prop_compose! {
        fn bond()(
            peer in identity(), local in proptest::option::of(identity()),
            flags in any::<(bool, bool, bool)>(), key_size in 7u8..=16,
            ltk in proptest::option::of(ltk()), local_ltk in proptest::option::of(ltk()),
            peer_irk in proptest::option::of(any::<[u8; 16]>()),
            peer_csrk in proptest::option::of(csrk()), local_csrk in proptest::option::of(csrk()),
            cccds in proptest::collection::btree_map(1u16.., any::<u16>(), 0..8),
            database_hash in proptest::option::of(any::<[u8; 16]>()),
        ) -> Bond {
            Bond {
                peer, local, secure_connections: flags.0, authenticated: flags.1, key_size, ltk, local_ltk,
                peer_irk, peer_csrk, local_csrk, cccds, database_hash, service_changed_pending: flags.2,
            }
        }
    }

    proptest! {
        #[test]
        fn any_bond_round_trips_through_text(bond in bond()) {
            prop_assert_eq!(Bond::from_toml(&bond.to_toml()), Ok(bond));
        }

        #[test]
        fn parser_never_panics(text in "\\PC*") {
            let _ = Bond::from_toml(&text);
        }
    }
}
