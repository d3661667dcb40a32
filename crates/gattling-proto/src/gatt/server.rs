//! The GATT server: answers every ATT request against a [`Database`], per connection, as Core
//! Vol 3 Part F §3.4 and Part G §4 specify, and produces notifications and indications.
//!
//! Sans-IO: [`Server::handle`] takes one PDU routed to the server role by the link's
//! [`Bearer`] and writes the PDU to send back (if any) into a caller-owned buffer, so answering a
//! Read Request does not allocate. The bearer owns the ATT_MTU, the transaction timeouts and the
//! indication flow; the server owns the per-connection GATT state (CCCDs, prepare queue, client
//! features, link security).
//!
//! Application hooks ([`Access`]) may answer a read or write later: the server then parks the
//! request ([`Outcome::Deferred`]) and finishes it when [`Server::answer`] brings the answer.

use super::db::{AttrKind, Attribute, CharId, Database, DbError, ServiceDef};
use super::{events, uuids, Permissions, Properties};
use crate::att::bearer::Bearer;
use crate::att::{opcode, AttPdu, ErrorCode, ExecuteWriteFlags, ListBuilder, ListKind};
use crate::uuid::{self, Uuid};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

pub use crate::att::bearer::{DEFAULT_MTU, TRANSACTION_TIMEOUT_US};

/// CCCD bit: notifications enabled (Core Vol 3 Part G §3.3.3.3).
pub const CCCD_NOTIFY: u16 = 0x0001;
/// CCCD bit: indications enabled (Core Vol 3 Part G §3.3.3.3).
pub const CCCD_INDICATE: u16 = 0x0002;
/// Client Supported Features bit 0: Robust Caching (Core Vol 3 Part G §7.2).
pub const FEATURE_ROBUST_CACHING: u8 = 0x01;
/// Client Supported Features bit 1: Enhanced ATT bearer (Core Vol 3 Part G §7.2).
pub const FEATURE_EATT: u8 = 0x02;
/// Client Supported Features bit 2: Multiple Handle Value Notifications (Core Vol 3 Part G §7.2).
pub const FEATURE_MULTIPLE_NOTIFICATIONS: u8 = 0x04;

/// PDUs to send, each with the connection it goes to.
pub type Outgoing = Vec<(ConnId, Vec<u8>)>;

/// A connection, by its HCI connection handle.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ConnId(pub u16);

/// Server limits (the receive MTU offered in Exchange MTU belongs to the [`Bearer`]).
#[derive(Clone, Copy, Debug)]
pub struct ServerConfig {
    /// Prepared writes queued per connection before Prepare Queue Full.
    pub prepare_queue_entries: usize,
    /// Bytes queued per connection before Prepare Queue Full.
    pub prepare_queue_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { prepare_queue_entries: 64, prepare_queue_bytes: 4096 }
    }
}

/// How an application hook answers a read of a characteristic value.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ReadAccess {
    /// Answer with the stored value.
    Stored,
    /// Answer with this value (the stored value is not changed).
    Value(Vec<u8>),
    /// Answer with this ATT error code.
    Error(u8),
    /// The application answers later through [`Server::answer`].
    Later,
}

/// How an application hook answers a write of a characteristic value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WriteAccess {
    /// Store the value.
    Accept,
    /// Refuse with this ATT error code (application errors are 0x80-0x9F).
    Reject(u8),
    /// The application answers later through [`Server::answer`] (Write Commands, which get
    /// no response, are accepted instead).
    Later,
}

/// How a client wrote a characteristic value (Core Vol 3 Part F §3.4.5, §3.4.6).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum WriteKind {
    /// Write Command (Write Without Response): no answer.
    Command,
    /// Write Request: answered with Write Response.
    Request,
    /// Prepare Write Requests applied by Execute Write (long or reliable writes).
    Prepared,
}

/// Application hooks the server calls while answering requests.
pub trait Access {
    /// A client reads a characteristic value.
    fn read(&mut self, _conn: ConnId, _ch: CharId) -> ReadAccess {
        ReadAccess::Stored
    }
    /// A client writes a characteristic value; called before the value is stored.
    fn write(&mut self, _conn: ConnId, _ch: CharId, _value: &[u8]) -> WriteAccess {
        WriteAccess::Accept
    }
    /// A characteristic value was stored by a client's write of this kind.
    fn written(&mut self, _conn: ConnId, _ch: CharId, _value: &[u8], _kind: WriteKind) {}
    /// A client changed a characteristic's CCCD.
    fn subscribed(&mut self, _conn: ConnId, _ch: CharId, _cccd: u16) {}
    /// Authorization for attributes with an AUTHORIZED permission.
    fn authorize(&mut self, _conn: ConnId, _handle: u16, _write: bool) -> bool {
        true
    }
}

/// No hooks: stored values are served as they are.
impl Access for () {}

/// The answer the application gives to a deferred read or write.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Answer {
    /// A read: the stored value.
    Stored,
    /// A read: this value.
    Value(Vec<u8>),
    /// A write: store the value.
    Accept,
    /// A read or write: fail with this ATT error code.
    Error(u8),
}

/// What a deferred request waits for.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum DeferredKind {
    /// The value of a read.
    Read,
    /// Whether to accept this value.
    Write(Vec<u8>),
}

/// A request the application answers later with [`Server::answer`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Deferred {
    /// The connection.
    pub conn: ConnId,
    /// The characteristic.
    pub ch: CharId,
    /// Read or write.
    pub kind: DeferredKind,
    /// Identifies this question among others on the connection; [`Server::answer`] needs it.
    pub token: u32,
}

/// What [`Server::handle`] produced.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// Nothing to send (commands, unknown commands, malformed non-requests).
    Silent,
    /// The PDU in `out` answers the request.
    Reply,
    /// The application must answer first; the request stays open.
    Deferred(Deferred),
}

impl Outcome {
    /// True when a reply is in `out`.
    pub fn is_reply(&self) -> bool {
        *self == Outcome::Reply
    }
}

/// A request parked until the application answers.
#[derive(Debug)]
struct Parked {
    pdu: Vec<u8>,
    ch: CharId,
    token: u32,
    answers: Vec<(CharId, Answer)>,
}

#[derive(Debug, Default)]
struct ConnState {
    /// Encryption key size in octets; 0 while unencrypted or unknown.
    key_size: u8,
    /// The key the client has with us, when the Security Manager said.
    peer_key: Option<PeerKey>,
    cccd: BTreeMap<u16, u16>,
    prepare: Vec<(u16, u16, Vec<u8>)>,
    prepare_bytes: usize,
    client_features: u8,
    encrypted: bool,
    authenticated: bool,
    parked: Option<Parked>,
}

/// The Long Term Key a client has with this server, from its bond (Core Vol 3 Part C §10.3.1).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PeerKey {
    /// No key: the client must pair.
    None,
    /// A key from unauthenticated pairing (Just Works).
    Unauthenticated,
    /// A key from authenticated (MITM-protected) pairing.
    Authenticated,
}

/// Where the server finds the bearer of a connection, to size and pace what it sends.
pub trait Bearers {
    /// The bearer of `conn`, if the link is up.
    fn bearer(&mut self, conn: ConnId) -> Option<&mut Bearer>;
}

impl Bearers for BTreeMap<ConnId, Bearer> {
    fn bearer(&mut self, conn: ConnId) -> Option<&mut Bearer> {
        self.get_mut(&conn)
    }
}

/// A GATT server over one database, serving any number of connections.
#[derive(Debug)]
pub struct Server {
    db: Database,
    config: ServerConfig,
    conns: BTreeMap<ConnId, ConnState>,
    service_changed: Option<CharId>,
    /// The smallest encryption key size accepted ([`Server::set_min_key_size`]).
    min_key_size: u8,
    hash_char: Option<CharId>,
    features_char: Option<CharId>,
    /// The buffer notifications and indications are built in.
    push_buf: Vec<u8>,
    /// Answers for the request being re-run after a deferral.
    answers: Vec<(CharId, Answer)>,
    /// Set when a hook deferred during the current request.
    deferred: Option<(CharId, DeferredKind)>,
    next_token: u32,
}

/// Replaces whatever `out` holds with an Error Response (Core Vol 3 Part F §3.4.1.1).
fn error(out: &mut Vec<u8>, request: u8, handle: u16, code: ErrorCode) {
    out.clear();
    AttPdu::ErrorRsp { request_opcode: request, handle, error: code }.encode(out);
}

/// The built-in GAP (0x1800) and GATT (0x1801) services (Core Vol 3 Part C §12, Part G §7).
pub fn builtin_services(device_name: &str, appearance: u16) -> [ServiceDef; 2] {
    use super::CharacteristicDef as C;
    let gap = ServiceDef::primary(uuids::GAP_SERVICE)
        .characteristic(C::new(uuids::DEVICE_NAME, Properties::READ, device_name.as_bytes()))
        .characteristic(C::new(uuids::APPEARANCE, Properties::READ, &appearance.to_le_bytes()));
    let gatt = ServiceDef::primary(uuids::GATT_SERVICE)
        .characteristic(C::new(uuids::SERVICE_CHANGED, Properties::INDICATE, &[0, 0, 0, 0]))
        .characteristic(C::new(uuids::CLIENT_SUPPORTED_FEATURES, Properties::READ | Properties::WRITE, &[0]).max_len(1))
        .characteristic(C::new(uuids::DATABASE_HASH, Properties::READ, &[0; 16]));
    [gap, gatt]
}

impl Server {
    /// A server for `db` (which should hold the built-in services, see [`builtin_services`]).
    pub fn new(db: Database, config: ServerConfig) -> Self {
        let mut s = Self {
            db,
            config,
            conns: BTreeMap::new(),
            service_changed: None,
            min_key_size: 7,
            hash_char: None,
            features_char: None,
            push_buf: Vec::new(),
            answers: Vec::new(),
            deferred: None,
            next_token: 0,
        };
        s.refresh_builtins();
        s
    }

    fn refresh_builtins(&mut self) {
        self.service_changed = self.db.find_characteristic(Uuid::U16(uuids::SERVICE_CHANGED));
        self.hash_char = self.db.find_characteristic(Uuid::U16(uuids::DATABASE_HASH));
        self.features_char = self.db.find_characteristic(Uuid::U16(uuids::CLIENT_SUPPORTED_FEATURES));
        let hash = self.db.hash();
        if let Some(c) = self.hash_char.and_then(|id| self.db.characteristic_mut(id)) {
            c.value = hash.to_vec();
        }
    }

    /// The database.
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Mutable database access for values and events (structure changes go through
    /// [`Server::add_service`] and [`Server::remove_service`]).
    pub fn db_mut(&mut self) -> &mut Database {
        &mut self.db
    }

    /// Starts serving a connection.
    pub fn connect(&mut self, conn: ConnId) {
        self.conns.insert(conn, ConnState::default());
    }

    /// Forgets a connection and its per-connection state (a parked request is dropped).
    pub fn disconnect(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
    }

    /// Records the link's security (from Encryption Change).
    pub fn set_security(&mut self, conn: ConnId, encrypted: bool, authenticated: bool) {
        if let Some(st) = self.conns.get_mut(&conn) {
            st.encrypted = encrypted;
            st.authenticated = authenticated && encrypted;
            if !encrypted {
                st.key_size = 0;
            }
        }
    }

    /// Records what key the client on `conn` has with us (from its bond), so an unencrypted
    /// request is refused with the code that tells it what to do (Core Vol 3 Part C §10.3.1).
    pub fn set_peer_key(&mut self, conn: ConnId, key: PeerKey) {
        if let Some(st) = self.conns.get_mut(&conn) {
            st.peer_key = Some(key);
        }
    }

    /// Records the encryption key size of an encrypted link, in octets (Core Vol 3 Part H §2.3.4).
    pub fn set_key_size(&mut self, conn: ConnId, key_size: u8) {
        if let Some(st) = self.conns.get_mut(&conn) {
            st.key_size = key_size;
        }
    }

    /// The smallest key size (7..=16 octets) the attributes that need encryption accept; a
    /// shorter key gets Insufficient Encryption Key Size (Core Vol 3 Part C §10.3.1.1). 7 by
    /// default.
    pub fn set_min_key_size(&mut self, key_size: u8) {
        self.min_key_size = key_size.clamp(7, 16);
    }

    /// The CCCD value a connection wrote for a characteristic.
    pub fn cccd(&self, conn: ConnId, ch: CharId) -> u16 {
        let Some(h) = self.db.characteristic(ch).and_then(|c| c.cccd_handle) else { return 0 };
        self.conns.get(&conn).and_then(|s| s.cccd.get(&h)).copied().unwrap_or(0)
    }

    /// Every CCCD value a connection wrote, as (CCCD handle, value), to keep for a bonded client
    /// (Core Vol 3 Part G §3.3.3.3).
    pub fn cccds(&self, conn: ConnId) -> Vec<(u16, u16)> {
        self.conns.get(&conn).map(|s| s.cccd.iter().map(|(&h, &v)| (h, v)).collect()).unwrap_or_default()
    }

    /// Restores a bonded client's CCCD values on a new connection: "the CCCD value persists
    /// across connections for bonded devices" (Core Vol 3 Part G §3.3.3.3). Handles that are
    /// not a CCCD of the current database are skipped (the database may have changed); returns
    /// how many values were restored.
    pub fn restore_cccds(&mut self, conn: ConnId, values: impl IntoIterator<Item = (u16, u16)>) -> usize {
        let Some(st) = self.conns.get_mut(&conn) else { return 0 };
        let mut restored = 0;
        for (handle, value) in values {
            let is_cccd = self.db.characteristics().iter().any(|c| c.cccd_handle == Some(handle));
            if is_cccd && value != 0 {
                st.cccd.insert(handle, value);
                restored += 1;
            }
        }
        restored
    }

    /// The Client Supported Features a connection enabled (Core Vol 3 Part G §7.2).
    pub fn client_features(&self, conn: ConnId) -> u8 {
        self.conns.get(&conn).map(|s| s.client_features).unwrap_or(0)
    }

    /// Replaces the whole database (Service Changed covers every handle; subscriptions end).
    /// Returns the PDUs to send: an Unlikely Error for each request parked for the application
    /// (its attribute is gone), then the Service Changed indications (Core Vol 3 Part G §7.1).
    pub fn replace_database(&mut self, db: Database, now: u64, bearers: &mut dyn Bearers) -> Outgoing {
        self.db = db;
        let mut out = Vec::new();
        for (conn, st) in self.conns.iter_mut() {
            st.cccd.clear();
            st.prepare.clear();
            st.prepare_bytes = 0;
            if let Some(p) = st.parked.take() {
                let request_opcode = p.pdu.first().copied().unwrap_or(0);
                let pdu = AttPdu::ErrorRsp { request_opcode, handle: p.ch.0, error: ErrorCode::UNLIKELY_ERROR };
                out.push((*conn, pdu.to_vec()));
            }
        }
        self.refresh_builtins();
        out.extend(self.service_changed_indications(0x0001, 0xFFFF, now, bearers));
        out
    }

    /// Adds a service at run time; subscribed clients get a Service Changed indication
    /// (returned as PDUs to send) and the Database Hash changes (Core Vol 3 Part G §7.1).
    pub fn add_service(
        &mut self,
        def: ServiceDef,
        now: u64,
        bearers: &mut dyn Bearers,
    ) -> Result<(u16, Outgoing), DbError> {
        let h = self.db.add_service(def)?;
        let end = self.db.attribute(h).map(|a| a.group_end).unwrap_or(h);
        self.refresh_builtins();
        Ok((h, self.service_changed_indications(h, end, now, bearers)))
    }

    /// Inserts a raw attribute table at its own handles ([`Database::insert_records`]); on an
    /// invalid table nothing changes. Subscribed clients get Service Changed for the handles
    /// the table covers (Core Vol 3 Part G §7.1).
    pub fn insert_records(
        &mut self,
        records: &[super::db::AttributeRecord],
        now: u64,
        bearers: &mut dyn Bearers,
    ) -> Result<Outgoing, DbError> {
        self.db.insert_records(records)?;
        let (Some(first), Some(last)) = (records.first(), records.last()) else { return Ok(Vec::new()) };
        self.refresh_builtins();
        Ok(self.service_changed_indications(first.handle, last.handle, now, bearers))
    }

    /// Removes a service at run time; like [`Server::add_service`] for the indications.
    pub fn remove_service(
        &mut self,
        service_handle: u16,
        now: u64,
        bearers: &mut dyn Bearers,
    ) -> Result<Outgoing, DbError> {
        let (s, e) = self.db.remove_service(service_handle)?;
        // Subscriptions to the removed attributes end with them.
        for st in self.conns.values_mut() {
            st.cccd.retain(|h, _| *h < s || *h > e);
        }
        self.refresh_builtins();
        Ok(self.service_changed_indications(s, e, now, bearers))
    }

    /// Service Changed indications for `start..=end` to the subscribed connections.
    pub fn service_changed_indications(
        &mut self,
        start: u16,
        end: u16,
        now: u64,
        bearers: &mut dyn Bearers,
    ) -> Outgoing {
        let Some(sc) = self.service_changed else { return Vec::new() };
        let mut v = [0u8; 4];
        v[..2].copy_from_slice(&start.to_le_bytes());
        v[2..].copy_from_slice(&end.to_le_bytes());
        self.push(sc, &v, now, bearers)
    }

    /// A Service Changed indication over the whole database for one connection, if it is
    /// subscribed: for a bonded client whose view of the database is out of date when it comes
    /// back (Core Vol 3 Part G §7.1). Returns the PDU to send now (it may also wait in the
    /// bearer behind an unconfirmed indication).
    pub fn service_changed_to(&mut self, conn: ConnId, now: u64, bearers: &mut dyn Bearers) -> Option<Vec<u8>> {
        let sc = self.service_changed?;
        if self.cccd(conn, sc) & CCCD_INDICATE == 0 {
            return None;
        }
        let bearer = bearers.bearer(conn)?;
        let pdu = AttPdu::HandleValueInd { handle: sc.0, value: &[0x01, 0x00, 0xFF, 0xFF] }.to_vec();
        bearer.queue_indication(pdu);
        bearer.poll_indication(now)
    }

    /// The Database Hash of the database served now (Core Vol 3 Part G §7.3).
    pub fn database_hash(&mut self) -> [u8; 16] {
        self.db.hash()
    }

    /// Sets a characteristic's value and returns the notifications and indications to send to
    /// the connections subscribed to it (indications wait their turn in each bearer).
    pub fn set_value(&mut self, ch: CharId, value: &[u8], now: u64, bearers: &mut dyn Bearers) -> Outgoing {
        let Some(c) = self.db.characteristic_mut(ch) else { return Vec::new() };
        c.value.clear();
        c.value.extend_from_slice(value.get(..value.len().min(super::db::MAX_VALUE_LEN)).unwrap_or(value));
        self.push(ch, value, now, bearers)
    }

    /// Notifies or indicates `value` of `ch` to every connection whose CCCD asks for it.
    pub fn push(&mut self, ch: CharId, value: &[u8], now: u64, bearers: &mut dyn Bearers) -> Outgoing {
        let mut out = Vec::new();
        self.push_with(ch, value, now, bearers, &mut |conn, pdu| out.push((conn, pdu.to_vec())));
        out
    }

    /// Like [`Server::set_value`], handing each PDU to `send` as it is built, in a buffer the
    /// server reuses: no allocation per notification (an indication that must wait behind an
    /// unconfirmed one is queued in its bearer).
    pub fn set_value_with(
        &mut self,
        ch: CharId,
        value: &[u8],
        now: u64,
        bearers: &mut dyn Bearers,
        send: &mut dyn FnMut(ConnId, &[u8]),
    ) {
        let Some(c) = self.db.characteristic_mut(ch) else { return };
        c.value.clear();
        c.value.extend_from_slice(value.get(..value.len().min(super::db::MAX_VALUE_LEN)).unwrap_or(value));
        self.push_with(ch, value, now, bearers, send)
    }

    /// Like [`Server::push`], handing each PDU to `send` as it is built (see
    /// [`Server::set_value_with`]). Indications released now count as outstanding in their
    /// bearer (Core Vol 3 Part F §3.4.7.2).
    pub fn push_with(
        &mut self,
        ch: CharId,
        value: &[u8],
        now: u64,
        bearers: &mut dyn Bearers,
        send: &mut dyn FnMut(ConnId, &[u8]),
    ) {
        let mut buf = core::mem::take(&mut self.push_buf);
        for &conn in self.conns.keys() {
            let Some(bearer) = bearers.bearer(conn) else { continue };
            if bearer.is_closed() {
                continue;
            }
            let cccd = self.cccd(conn, ch);
            let handle = ch.0;
            let value = value_within(value, bearer.mtu());
            buf.clear();
            if cccd & CCCD_INDICATE != 0 {
                AttPdu::HandleValueInd { handle, value }.encode(&mut buf);
                if bearer.indication_pending() || bearer.queued_indications() > 0 {
                    bearer.queue_indication(buf.clone());
                    if let Some(p) = bearer.poll_indication(now) {
                        send(conn, &p);
                    }
                } else if bearer.send(&buf, now).is_ok() {
                    send(conn, &buf);
                }
            } else if cccd & CCCD_NOTIFY != 0 {
                AttPdu::HandleValueNtf { handle, value }.encode(&mut buf);
                send(conn, &buf);
            }
        }
        self.push_buf = buf;
    }

    /// A Handle Value Notification PDU for `conn` if it enabled notifications (value truncated
    /// to ATT_MTU-3, Core Vol 3 Part F §3.4.7.1).
    pub fn notification(&self, bearer: &Bearer, conn: ConnId, ch: CharId, value: &[u8]) -> Option<Vec<u8>> {
        if bearer.is_closed() || self.cccd(conn, ch) & CCCD_NOTIFY == 0 {
            return None;
        }
        let value = value_within(value, bearer.mtu());
        Some(AttPdu::HandleValueNtf { handle: ch.0, value }.to_vec())
    }

    /// A Handle Value Indication PDU for `conn` if it enabled indications (value truncated to
    /// ATT_MTU-3, Core Vol 3 Part F §3.4.7.2); the caller queues it in the bearer.
    pub fn indication(&self, bearer: &Bearer, conn: ConnId, ch: CharId, value: &[u8]) -> Option<Vec<u8>> {
        if bearer.is_closed() || self.cccd(conn, ch) & CCCD_INDICATE == 0 {
            return None;
        }
        let value = value_within(value, bearer.mtu());
        Some(AttPdu::HandleValueInd { handle: ch.0, value }.to_vec())
    }

    /// Notifications of several characteristics for `conn`: one Multiple Handle Value
    /// Notification when the client declared support (Client Supported Features bit 2), else one
    /// notification each (Core Vol 3 Part F §3.4.7.4).
    pub fn notify_multiple(&self, bearer: &Bearer, conn: ConnId, items: &[(CharId, &[u8])]) -> Vec<Vec<u8>> {
        let Some(st) = self.conns.get(&conn) else { return Vec::new() };
        if bearer.is_closed() {
            return Vec::new();
        }
        let subscribed: Vec<&(CharId, &[u8])> =
            items.iter().filter(|(c, _)| self.cccd(conn, *c) & CCCD_NOTIFY != 0).collect();
        if st.client_features & FEATURE_MULTIPLE_NOTIFICATIONS == 0 || subscribed.len() < 2 {
            return subscribed.iter().filter_map(|(c, v)| self.notification(bearer, conn, *c, v)).collect();
        }
        // Whole tuples go in while they fit; one that does not starts the next PDU, where a
        // value too long for an empty PDU is cut to fit it (ATT_MTU - 5 bytes).
        let mut pdus = Vec::new();
        let mut items = subscribed.into_iter().peekable();
        while items.peek().is_some() {
            let mut pdu = Vec::new();
            let mut b = ListBuilder::new(ListKind::MultipleHandleValueNtf, bearer.mtu(), &mut pdu);
            while let Some(&&(c, v)) = items.peek() {
                if !b.push_handle_value(c.0, v) {
                    if !b.is_empty() {
                        break;
                    }
                    let room = b.remaining().saturating_sub(4);
                    // Only refused when the ATT_MTU cannot hold a tuple at all: the item is dropped.
                    let _ = b.push_handle_value(c.0, v.get(..room).unwrap_or(v));
                }
                items.next();
            }
            if b.finish().is_some() {
                pdus.push(pdu);
            }
        }
        pdus
    }

    /// Takes one PDU the bearer routed to the server role ([`crate::att::Route::Server`]) on
    /// `conn`. Writes the PDU to send back into `out` (a response or an error) and says whether
    /// there is one, or that the application must answer first.
    pub fn handle(
        &mut self,
        conn: ConnId,
        bearer: &Bearer,
        pdu: &[u8],
        access: &mut dyn Access,
        out: &mut Vec<u8>,
    ) -> Outcome {
        if !self.conns.contains_key(&conn) {
            self.connect(conn);
        }
        self.answers.clear();
        self.run(conn, bearer, pdu, access, out)
    }

    /// The common Read Request (Core Vol 3 Part F §3.4.4.3) without the general decoder: a
    /// characteristic value that needs no security and no authorization. The application is
    /// asked once, as on the general path, and every answer is served as there. `None` (nothing
    /// asked, nothing written) for any other attribute, which takes the general path.
    fn read_value_fast(
        &mut self,
        conn: ConnId,
        mtu: usize,
        handle: u16,
        access: &mut dyn Access,
        out: &mut Vec<u8>,
    ) -> Option<bool> {
        let attr = self.db.attribute(handle)?;
        let (AttrKind::Value, Some(ch)) = (attr.kind, attr.characteristic) else { return None };
        let guarded = Permissions::READ_ENCRYPTED | Permissions::READ_AUTHENTICATED | Permissions::READ_AUTHORIZED;
        let p = attr.permissions;
        if !p.contains(Permissions::READ)
            || p.intersects(guarded)
            || Some(ch) == self.features_char
            || !self.answers.is_empty()
        {
            return None;
        }
        let supplied = access.read(conn, ch);
        let c = self.db.characteristic_mut(ch)?;
        let value = match &supplied {
            ReadAccess::Stored => &c.value,
            ReadAccess::Value(v) => v,
            ReadAccess::Error(code) => {
                error(out, opcode::READ_REQ, handle, ErrorCode(*code));
                return Some(true);
            }
            ReadAccess::Later => {
                self.deferred = Some((ch, DeferredKind::Read));
                return Some(false);
            }
        };
        c.events |= events::CHAR_READ_EVENT;
        let value = value.get(..mtu.saturating_sub(1)).unwrap_or(value);
        out.reserve(1 + value.len());
        out.push(opcode::READ_RSP);
        out.extend_from_slice(value);
        Some(true)
    }

    /// Brings the application's answer to the request parked under `token` on `conn` and
    /// finishes it: the reply is in `out`, or the request waits for a further answer (a request
    /// touching several deferred characteristics asks for each in turn). An answer with an
    /// unknown token (the link or the request is gone) is ignored ([`Outcome::Silent`]).
    pub fn answer(
        &mut self,
        conn: ConnId,
        token: u32,
        answer: Answer,
        bearer: &Bearer,
        access: &mut dyn Access,
        out: &mut Vec<u8>,
    ) -> Outcome {
        out.clear();
        let Some(st) = self.conns.get_mut(&conn) else { return Outcome::Silent };
        if st.parked.as_ref().is_none_or(|p| p.token != token) {
            return Outcome::Silent;
        }
        let Some(mut parked) = st.parked.take() else { return Outcome::Silent };
        // Re-run with the answer, an error included: the request decides what an error means
        // (a Read By Type stops its list before the failing attribute, §3.4.4.1).
        parked.answers.push((parked.ch, answer));
        self.answers = parked.answers;
        self.run(conn, bearer, &parked.pdu, access, out)
    }

    /// Runs one request with the answers gathered so far; parks it if a hook defers.
    fn run(
        &mut self,
        conn: ConnId,
        bearer: &Bearer,
        pdu: &[u8],
        access: &mut dyn Access,
        out: &mut Vec<u8>,
    ) -> Outcome {
        self.deferred = None;
        let replied = self.dispatch(conn, bearer, pdu, access, out);
        match self.deferred.take() {
            Some((ch, kind)) => {
                out.clear();
                let token = self.next_token;
                self.next_token = self.next_token.wrapping_add(1);
                let answers = core::mem::take(&mut self.answers);
                if let Some(st) = self.conns.get_mut(&conn) {
                    st.parked = Some(Parked { pdu: pdu.to_vec(), ch, token, answers });
                }
                Outcome::Deferred(Deferred { conn, ch, kind, token })
            }
            None if replied => Outcome::Reply,
            None => Outcome::Silent,
        }
    }

    /// The answer already given for `ch` in the request being re-run.
    fn given(&self, ch: CharId) -> Option<&Answer> {
        self.answers.iter().find(|(c, _)| *c == ch).map(|(_, a)| a)
    }

    fn dispatch(
        &mut self,
        conn: ConnId,
        bearer: &Bearer,
        pdu: &[u8],
        access: &mut dyn Access,
        out: &mut Vec<u8>,
    ) -> bool {
        out.clear();
        let Some(&op) = pdu.first() else { return false };
        let att_mtu = bearer.mtu();
        let mtu = usize::from(att_mtu);
        if let [opcode::READ_REQ, lo, hi] = *pdu {
            if let Some(replied) = self.read_value_fast(conn, mtu, u16::from_le_bytes([lo, hi]), access, out) {
                return replied;
            }
        }
        let decoded = match AttPdu::decode(pdu) {
            Ok(p) => p,
            Err(_) => {
                // Only requests are answered: a malformed known request with Invalid PDU, an
                // unknown opcode (without the command flag) with Request Not Supported. Commands,
                // confirmations and client-side PDUs get nothing (Core Vol 3 Part F §3.4.1.1).
                let code = match opcode::kind(op) {
                    None if !opcode::is_command(op) => ErrorCode::REQUEST_NOT_SUPPORTED,
                    Some(opcode::PduKind::Request) => ErrorCode::INVALID_PDU,
                    _ => return false,
                };
                error(out, op, 0, code);
                return true;
            }
        };
        if pdu.len() > mtu {
            // Longer than ATT_MTU: not a valid PDU on this bearer.
            if opcode::kind(op) == Some(opcode::PduKind::Request) {
                error(out, op, 0, ErrorCode::INVALID_PDU);
                return true;
            }
            return false;
        }
        match decoded {
            AttPdu::ExchangeMtuReq { .. } => {
                // The bearer took the client's MTU when it routed the request.
                AttPdu::ExchangeMtuRsp { server_rx_mtu: bearer.local_mtu() }.encode(out);
                true
            }
            AttPdu::FindInformationReq { start, end } => self.find_information(att_mtu, start, end, out),
            AttPdu::FindByTypeValueReq { start, end, attribute_type, value } => {
                self.find_by_type_value(att_mtu, start, end, attribute_type, value, out)
            }
            AttPdu::ReadByTypeReq { start, end, attribute_type } => {
                self.read_by_type(conn, att_mtu, start, end, attribute_type, access, out)
            }
            AttPdu::ReadReq { handle } => self.read(conn, mtu, op, handle, 0, access, out),
            AttPdu::ReadBlobReq { handle, offset } => self.read(conn, mtu, op, handle, offset, access, out),
            AttPdu::ReadMultipleReq { handles } => {
                self.read_multiple(conn, att_mtu, op, handles.iter(), false, access, out)
            }
            AttPdu::ReadMultipleVariableReq { handles } => {
                self.read_multiple(conn, att_mtu, op, handles.iter(), true, access, out)
            }
            AttPdu::ReadByGroupTypeReq { start, end, group_type } => {
                self.read_by_group_type(att_mtu, start, end, group_type, out)
            }
            AttPdu::WriteReq { handle, value } => match self.write(conn, handle, value, true, access) {
                Ok(()) => {
                    AttPdu::WriteRsp.encode(out);
                    true
                }
                Err(code) => {
                    error(out, op, handle, code);
                    true
                }
            },
            AttPdu::WriteCmd { handle, value } => {
                let _ = self.write(conn, handle, value, false, access);
                false
            }
            // Signing needs keys from pairing: ignored until then.
            AttPdu::SignedWriteCmd { .. } => false,
            AttPdu::PrepareWriteReq { handle, offset, value } => {
                self.prepare(conn, op, handle, offset, value, access, out)
            }
            AttPdu::ExecuteWriteReq { flags } => self.execute(conn, op, flags, access, out),
            // Confirmations are the bearer's; responses, notifications and indications belong
            // to the client side.
            _ => false,
        }
    }

    fn check(&self, conn: ConnId, attr: &Attribute, write: bool, access: &mut dyn Access) -> Result<(), ErrorCode> {
        let p = attr.permissions;
        let (base, enc, auth, authz, denied) = if write {
            (
                Permissions::WRITE,
                Permissions::WRITE_ENCRYPTED,
                Permissions::WRITE_AUTHENTICATED,
                Permissions::WRITE_AUTHORIZED,
                ErrorCode::WRITE_NOT_PERMITTED,
            )
        } else {
            (
                Permissions::READ,
                Permissions::READ_ENCRYPTED,
                Permissions::READ_AUTHENTICATED,
                Permissions::READ_AUTHORIZED,
                ErrorCode::READ_NOT_PERMITTED,
            )
        };
        if !p.contains(base) {
            return Err(denied);
        }
        let (encrypted, authenticated, key_size, peer_key) =
            self.conns.get(&conn).map(|s| (s.encrypted, s.authenticated, s.key_size, s.peer_key)).unwrap_or_default();
        // Core Vol 3 Part C §10.3.1: on an unencrypted link, Insufficient Encryption when a key
        // good enough is available (the client should encrypt with it), Insufficient
        // Authentication when none is (the client must pair). Without word from the Security
        // Manager a key is assumed for encryption-only attributes.
        if !encrypted && (p.contains(auth) || p.contains(enc)) {
            let key_will_do = match peer_key {
                Some(PeerKey::Authenticated) => true,
                Some(PeerKey::Unauthenticated) => !p.contains(auth),
                Some(PeerKey::None) => false,
                None => !p.contains(auth),
            };
            return Err(if key_will_do {
                ErrorCode::INSUFFICIENT_ENCRYPTION
            } else {
                ErrorCode::INSUFFICIENT_AUTHENTICATION
            });
        }
        if p.contains(auth) && !authenticated {
            return Err(ErrorCode::INSUFFICIENT_AUTHENTICATION);
        }
        // Encrypted, but with a key shorter than the server requires (Core Vol 3 Part C §10.3.1.1).
        if (p.contains(enc) || p.contains(auth)) && key_size != 0 && key_size < self.min_key_size {
            return Err(ErrorCode::INSUFFICIENT_ENCRYPTION_KEY_SIZE);
        }
        if p.contains(authz) && !access.authorize(conn, attr.handle, write) {
            return Err(ErrorCode::INSUFFICIENT_AUTHORIZATION);
        }
        Ok(())
    }

    /// Reads an attribute's value for `conn`, running the read hook for characteristic values.
    /// Returns the value in `buf` when it comes from the hook or per-connection state, else a
    /// slice of the database.
    fn value_of<'s>(
        &'s mut self,
        conn: ConnId,
        index: usize,
        access: &mut dyn Access,
        scratch: &'s mut Vec<u8>,
    ) -> Result<&'s [u8], ErrorCode> {
        let Some(attr) = self.db.attributes().get(index) else { return Ok(&[]) };
        match (attr.kind, attr.characteristic) {
            (AttrKind::Cccd, _) => {
                let v = self.conns.get(&conn).and_then(|s| s.cccd.get(&attr.handle)).copied().unwrap_or(0);
                scratch.clear();
                scratch.extend_from_slice(&v.to_le_bytes());
                Ok(scratch)
            }
            (AttrKind::Value, Some(id)) if Some(id) == self.features_char => {
                scratch.clear();
                scratch.push(self.client_features(conn));
                Ok(scratch)
            }
            (AttrKind::Value, Some(id)) => {
                let supplied = match self.given(id) {
                    Some(Answer::Value(v)) => ReadAccess::Value(v.clone()),
                    Some(Answer::Error(code)) => ReadAccess::Error(*code),
                    Some(_) => ReadAccess::Stored,
                    None => access.read(conn, id),
                };
                match supplied {
                    ReadAccess::Error(code) => return Err(ErrorCode(code)),
                    ReadAccess::Later => {
                        self.deferred = Some((id, DeferredKind::Read));
                        // Discarded: the request is parked instead.
                        return Err(ErrorCode::UNLIKELY_ERROR);
                    }
                    _ => {}
                }
                let Some(c) = self.db.characteristic_mut(id) else { return Ok(&[]) };
                c.events |= events::CHAR_READ_EVENT;
                match supplied {
                    ReadAccess::Value(v) => {
                        *scratch = v;
                        Ok(scratch)
                    }
                    _ => Ok(&c.value),
                }
            }
            (AttrKind::Value, None) => Ok(&[]),
            _ => Ok(self.db.attributes().get(index).map(|a| a.value.as_slice()).unwrap_or(&[])),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &mut self,
        conn: ConnId,
        mtu: usize,
        op: u8,
        handle: u16,
        offset: u16,
        access: &mut dyn Access,
        out: &mut Vec<u8>,
    ) -> bool {
        let Some(index) = self.db.index_of(handle) else {
            error(out, op, handle, ErrorCode::INVALID_HANDLE);
            return true;
        };
        let Some(attr) = self.db.attributes().get(index) else { return false };
        let is_value = attr.kind == AttrKind::Value;
        if let Err(code) = self.check(conn, attr, false, access) {
            error(out, op, handle, code);
            return true;
        }
        let mut scratch = Vec::new();
        let value = match self.value_of(conn, index, access, &mut scratch) {
            Ok(v) => v,
            Err(code) => {
                error(out, op, handle, code);
                return true;
            }
        };
        let offset = offset as usize;
        if op == opcode::READ_BLOB_REQ {
            if offset > value.len() {
                error(out, op, handle, ErrorCode::INVALID_OFFSET);
                return true;
            }
            // Fixed-length attributes that fit a single read are "not long" (§3.4.4.5).
            if !is_value && offset > 0 && value.len() <= mtu - 3 {
                error(out, op, handle, ErrorCode::ATTRIBUTE_NOT_LONG);
                return true;
            }
        }
        let part = value.get(offset..).unwrap_or(&[]);
        let value = part.get(..mtu.saturating_sub(1)).unwrap_or(part);
        if op == opcode::READ_BLOB_REQ {
            AttPdu::ReadBlobRsp { value }.encode(out);
        } else {
            AttPdu::ReadRsp { value }.encode(out);
        }
        true
    }

    fn range_ok(op: u8, start: u16, end: u16, out: &mut Vec<u8>) -> bool {
        if start == 0 || start > end {
            error(out, op, start, ErrorCode::INVALID_HANDLE);
            return false;
        }
        true
    }

    fn find_information(&mut self, mtu: u16, start: u16, end: u16, out: &mut Vec<u8>) -> bool {
        let op = opcode::FIND_INFORMATION_REQ;
        if !Self::range_ok(op, start, end, out) {
            return true;
        }
        // The list stops at the ATT_MTU or at the first UUID of the other format (§3.4.3.2).
        let mut b = ListBuilder::new(ListKind::FindInformationRsp, mtu, out);
        for a in self.db.attributes().get(self.db.lower_bound(start)..).unwrap_or(&[]) {
            if a.handle > end || !b.push_information(a.handle, a.uuid) {
                break;
            }
        }
        if b.finish().is_none() {
            error(out, op, start, ErrorCode::ATTRIBUTE_NOT_FOUND);
        }
        true
    }

    fn find_by_type_value(&mut self, mtu: u16, start: u16, end: u16, ty: u16, value: &[u8], out: &mut Vec<u8>) -> bool {
        let op = opcode::FIND_BY_TYPE_VALUE_REQ;
        if !Self::range_ok(op, start, end, out) {
            return true;
        }
        let mut b = ListBuilder::new(ListKind::FindByTypeValueRsp, mtu, out);
        for a in self.db.attributes().get(self.db.lower_bound(start)..).unwrap_or(&[]) {
            if a.handle > end {
                break;
            }
            if a.uuid != Uuid::U16(ty) || self.db.value(a) != value {
                continue;
            }
            let group_end = if a.group_end != 0 { a.group_end } else { a.handle };
            if !b.push_handles_information(a.handle, group_end) {
                break;
            }
        }
        if b.finish().is_none() {
            error(out, op, start, ErrorCode::ATTRIBUTE_NOT_FOUND);
        }
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn read_by_type(
        &mut self,
        conn: ConnId,
        mtu: u16,
        start: u16,
        end: u16,
        ty: Uuid,
        access: &mut dyn Access,
        out: &mut Vec<u8>,
    ) -> bool {
        let op = opcode::READ_BY_TYPE_REQ;
        if !Self::range_ok(op, start, end, out) {
            return true;
        }
        // Values are cut to min(ATT_MTU - 4, 253) bytes; the list stops at the ATT_MTU or at
        // the first value whose (cut) length differs from the first one's (§3.4.4.2). An
        // attribute that cannot be read ends the list, or fails the request if it comes first.
        let mut b = ListBuilder::new(ListKind::ReadByTypeRsp, mtu, out);
        let mut index = self.db.lower_bound(start);
        let mut scratch = Vec::new();
        while let Some(a) = self.db.attributes().get(index) {
            if a.handle > end {
                break;
            }
            if !uuid::same(&a.uuid, &ty) {
                index += 1;
                continue;
            }
            let handle = a.handle;
            if let Err(code) = self.check(conn, a, false, access) {
                if b.is_empty() {
                    error(out, op, handle, code);
                    return true;
                }
                break;
            }
            let value = match self.value_of(conn, index, access, &mut scratch) {
                Ok(v) => v,
                Err(code) if b.is_empty() => {
                    error(out, op, handle, code);
                    return true;
                }
                Err(_) => break,
            };
            if !b.push_attribute(handle, value) {
                break;
            }
            index += 1;
        }
        if b.finish().is_none() {
            error(out, op, start, ErrorCode::ATTRIBUTE_NOT_FOUND);
        }
        true
    }

    fn read_by_group_type(&mut self, mtu: u16, start: u16, end: u16, ty: Uuid, out: &mut Vec<u8>) -> bool {
        let op = opcode::READ_BY_GROUP_TYPE_REQ;
        if !Self::range_ok(op, start, end, out) {
            return true;
        }
        let kind = match ty.as_u16() {
            Some(uuids::PRIMARY_SERVICE) => AttrKind::PrimaryService,
            Some(uuids::SECONDARY_SERVICE) => AttrKind::SecondaryService,
            _ => {
                error(out, op, start, ErrorCode::UNSUPPORTED_GROUP_TYPE);
                return true;
            }
        };
        // Values are cut to min(ATT_MTU - 6, 251) bytes; the list stops at the ATT_MTU or at
        // the first value whose (cut) length differs from the first one's (§3.4.4.10).
        let mut b = ListBuilder::new(ListKind::ReadByGroupTypeRsp, mtu, out);
        for a in self.db.attributes().get(self.db.lower_bound(start)..).unwrap_or(&[]) {
            if a.handle > end {
                break;
            }
            if a.kind != kind {
                continue;
            }
            if !b.push_group(a.handle, a.group_end, &a.value) {
                break;
            }
        }
        if b.finish().is_none() {
            error(out, op, start, ErrorCode::ATTRIBUTE_NOT_FOUND);
        }
        true
    }

    /// Read Multiple (Variable) Request: every handle is read (any failure answers with an
    /// error), and the response is cut at ATT_MTU - 1 bytes of parameters, mid-value or
    /// mid-tuple (Core Vol 3 Part F §3.4.4.8, §3.4.4.12).
    #[allow(clippy::too_many_arguments)]
    fn read_multiple(
        &mut self,
        conn: ConnId,
        mtu: u16,
        op: u8,
        handles: impl Iterator<Item = u16>,
        variable: bool,
        access: &mut dyn Access,
        out: &mut Vec<u8>,
    ) -> bool {
        let mut scratch = Vec::new();
        // Read Multiple: the values concatenated, up to ATT_MTU - 1 bytes.
        let room = usize::from(mtu).saturating_sub(1);
        let mut values = Vec::new();
        let mut b = variable.then(|| ListBuilder::new(ListKind::ReadMultipleVariableRsp, mtu, &mut *out));
        for handle in handles {
            let Some(index) = self.db.index_of(handle) else {
                error(out, op, handle, ErrorCode::INVALID_HANDLE);
                return true;
            };
            let Some(attr) = self.db.attributes().get(index) else { return false };
            if let Err(code) = self.check(conn, attr, false, access) {
                error(out, op, handle, code);
                return true;
            }
            let value = match self.value_of(conn, index, access, &mut scratch) {
                Ok(v) => v,
                Err(code) => {
                    error(out, op, handle, code);
                    return true;
                }
            };
            match b.as_mut() {
                // Once the list is cut the rest is only checked.
                Some(b) => {
                    let _ = b.push_value(value);
                }
                None => {
                    let take = room.saturating_sub(values.len());
                    values.extend_from_slice(value.get(..take).unwrap_or(value));
                }
            }
        }
        match b {
            // A Read Multiple Variable Request names at least two handles: never empty.
            Some(b) => b.finish().is_some(),
            None => {
                AttPdu::ReadMultipleRsp { values: &values }.encode(out);
                true
            }
        }
    }

    /// Checks a write (Write Request, Write Command or one staged by Execute Write) without
    /// applying it: permissions, length, CCCD bits, Client Supported Features, the application.
    /// A hook that answers later marks the request deferred (requests only; commands go ahead).
    fn check_write(
        &mut self,
        conn: ConnId,
        handle: u16,
        value: &[u8],
        request: bool,
        access: &mut dyn Access,
    ) -> Result<(), ErrorCode> {
        let attr = self.db.attribute(handle).ok_or(ErrorCode::INVALID_HANDLE)?;
        self.check(conn, attr, true, access)?;
        if value.len() > attr.max_len {
            return Err(ErrorCode::INVALID_ATTRIBUTE_VALUE_LENGTH);
        }
        let (kind, ch) = (attr.kind, attr.characteristic);
        match (kind, ch) {
            (AttrKind::Cccd, Some(id)) => {
                let bits = match *value {
                    [a, b] => u16::from_le_bytes([a, b]),
                    _ => return Err(ErrorCode::INVALID_ATTRIBUTE_VALUE_LENGTH),
                };
                let props = self.db.characteristic(id).map(|c| c.properties).unwrap_or_default();
                let bad = (bits & CCCD_NOTIFY != 0 && !props.contains(Properties::NOTIFY))
                    || (bits & CCCD_INDICATE != 0 && !props.contains(Properties::INDICATE))
                    || bits & !(CCCD_NOTIFY | CCCD_INDICATE) != 0;
                if bad {
                    return Err(ErrorCode::CCCD_IMPROPERLY_CONFIGURED);
                }
                Ok(())
            }
            (AttrKind::Value, Some(id)) if Some(id) == self.features_char => {
                let enabled = self.conns.get(&conn).map(|s| s.client_features).unwrap_or(0);
                // A client may not clear a feature it enabled (Core Vol 3 Part G §7.2).
                if enabled & !value.first().copied().unwrap_or(0) != 0 {
                    return Err(ErrorCode::VALUE_NOT_ALLOWED);
                }
                Ok(())
            }
            (AttrKind::Value, Some(id)) => {
                let verdict = match self.given(id) {
                    Some(Answer::Error(code)) => WriteAccess::Reject(*code),
                    Some(_) => WriteAccess::Accept,
                    None => access.write(conn, id, value),
                };
                match verdict {
                    WriteAccess::Accept => Ok(()),
                    WriteAccess::Reject(code) => Err(ErrorCode(code)),
                    WriteAccess::Later if request => {
                        self.deferred = Some((id, DeferredKind::Write(value.to_vec())));
                        // Discarded: the request is parked instead.
                        Err(ErrorCode::UNLIKELY_ERROR)
                    }
                    WriteAccess::Later => Ok(()),
                }
            }
            (AttrKind::Descriptor, _) => Ok(()),
            (AttrKind::Cccd | AttrKind::Value, None) => Err(ErrorCode::UNLIKELY_ERROR),
            _ => Err(ErrorCode::WRITE_NOT_PERMITTED),
        }
    }

    /// Stores a checked write and tells the application.
    fn apply_write(&mut self, conn: ConnId, handle: u16, value: &[u8], kind: WriteKind, access: &mut dyn Access) {
        let Some(index) = self.db.index_of(handle) else { return };
        let Some(attr) = self.db.attributes().get(index) else { return };
        match (attr.kind, attr.characteristic) {
            (AttrKind::Cccd, Some(id)) => {
                let bits = match *value {
                    [a, b] => u16::from_le_bytes([a, b]),
                    _ => return,
                };
                if let Some(st) = self.conns.get_mut(&conn) {
                    st.cccd.insert(handle, bits);
                }
                if let Some(c) = self.db.characteristic_mut(id) {
                    c.events |= events::CHAR_SUBSCRIBE_EVENT;
                }
                access.subscribed(conn, id, bits);
            }
            (AttrKind::Value, Some(id)) if Some(id) == self.features_char => {
                if let Some(st) = self.conns.get_mut(&conn) {
                    st.client_features = value.first().copied().unwrap_or(0);
                }
            }
            (AttrKind::Value, Some(id)) => {
                if let Some(c) = self.db.characteristic_mut(id) {
                    c.value.clear();
                    c.value.extend_from_slice(value);
                    c.events |= events::CHAR_WRITE_EVENT;
                }
                access.written(conn, id, value, kind);
            }
            (AttrKind::Descriptor, _) => self.db.set_descriptor(index, value),
            _ => {}
        }
    }

    /// A Write Request or Command: checked, then applied.
    fn write(
        &mut self,
        conn: ConnId,
        handle: u16,
        value: &[u8],
        request: bool,
        access: &mut dyn Access,
    ) -> Result<(), ErrorCode> {
        self.check_write(conn, handle, value, request, access)?;
        let kind = if request { WriteKind::Request } else { WriteKind::Command };
        self.apply_write(conn, handle, value, kind, access);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn prepare(
        &mut self,
        conn: ConnId,
        op: u8,
        handle: u16,
        offset: u16,
        value: &[u8],
        access: &mut dyn Access,
        out: &mut Vec<u8>,
    ) -> bool {
        let Some(attr) = self.db.attribute(handle) else {
            error(out, op, handle, ErrorCode::INVALID_HANDLE);
            return true;
        };
        if let Err(code) = self.check(conn, attr, true, access) {
            error(out, op, handle, code);
            return true;
        }
        let cfg = self.config;
        let Some(st) = self.conns.get_mut(&conn) else { return false };
        if st.prepare.len() >= cfg.prepare_queue_entries || st.prepare_bytes + value.len() > cfg.prepare_queue_bytes {
            error(out, op, handle, ErrorCode::PREPARE_QUEUE_FULL);
            return true;
        }
        st.prepare.push((handle, offset, value.to_vec()));
        st.prepare_bytes += value.len();
        AttPdu::PrepareWriteRsp { handle, offset, value }.encode(out);
        true
    }

    fn execute(
        &mut self,
        conn: ConnId,
        op: u8,
        flags: ExecuteWriteFlags,
        access: &mut dyn Access,
        out: &mut Vec<u8>,
    ) -> bool {
        let Some(st) = self.conns.get_mut(&conn) else { return false };
        if flags == ExecuteWriteFlags::Cancel {
            st.prepare.clear();
            st.prepare_bytes = 0;
            AttPdu::ExecuteWriteRsp.encode(out);
            return true;
        }
        // The queue stays until the request is answered: a deferred hook re-runs it.
        let queue = st.prepare.clone();
        let done = self.execute_queue(conn, op, queue, access, out);
        if self.deferred.is_none() {
            if let Some(st) = self.conns.get_mut(&conn) {
                st.prepare.clear();
                st.prepare_bytes = 0;
            }
        }
        done
    }

    fn execute_queue(
        &mut self,
        conn: ConnId,
        op: u8,
        queue: Vec<(u16, u16, Vec<u8>)>,
        access: &mut dyn Access,
        out: &mut Vec<u8>,
    ) -> bool {
        // Build every new value first; nothing is written unless all are valid (§3.4.6.3).
        let mut staged: Vec<(u16, Vec<u8>)> = Vec::new();
        for (handle, offset, part) in queue {
            let pos = match staged.iter().position(|(h, _)| *h == handle) {
                Some(p) => p,
                None => {
                    let Some(index) = self.db.index_of(handle) else {
                        error(out, op, handle, ErrorCode::INVALID_HANDLE);
                        return true;
                    };
                    staged.push((handle, self.current_value(conn, index)));
                    staged.len() - 1
                }
            };
            let Some((_, v)) = staged.get_mut(pos) else { return false };
            let offset = offset as usize;
            if offset > v.len() {
                error(out, op, handle, ErrorCode::INVALID_OFFSET);
                return true;
            }
            v.truncate(offset);
            v.extend_from_slice(&part);
            let max = self.db.attribute(handle).map(|a| a.max_len).unwrap_or(0);
            if v.len() > max {
                error(out, op, handle, ErrorCode::INVALID_ATTRIBUTE_VALUE_LENGTH);
                return true;
            }
        }
        for (handle, v) in &staged {
            if let Err(code) = self.check_write(conn, *handle, v, true, access) {
                error(out, op, *handle, code);
                return true;
            }
        }
        for (handle, v) in &staged {
            self.apply_write(conn, *handle, v, WriteKind::Prepared, access);
        }
        AttPdu::ExecuteWriteRsp.encode(out);
        true
    }

    /// The stored value (no read hook) as prepared writes start from it.
    fn current_value(&self, conn: ConnId, index: usize) -> Vec<u8> {
        let Some(attr) = self.db.attributes().get(index) else { return Vec::new() };
        match attr.kind {
            AttrKind::Cccd => {
                let v = self.conns.get(&conn).and_then(|s| s.cccd.get(&attr.handle)).copied().unwrap_or(0);
                v.to_le_bytes().to_vec()
            }
            _ => self.db.value(attr).to_vec(),
        }
    }
}

/// The part of a notified or indicated value that fits: ATT_MTU-3 bytes (Core Vol 3 Part F
/// §3.4.7.1-2).
fn value_within(value: &[u8], mtu: u16) -> &[u8] {
    value.get(..usize::from(mtu).saturating_sub(3)).unwrap_or(value)
}

impl Database {
    pub(crate) fn set_descriptor(&mut self, index: usize, value: &[u8]) {
        if let Some(a) = self.attrs_mut().get_mut(index) {
            a.value.clear();
            a.value.extend_from_slice(value);
        }
    }
}
