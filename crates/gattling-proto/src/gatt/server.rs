//! The GATT server: answers every ATT request against a [`Database`], per connection, as Core
//! Vol 3 Part F §3.4 and Part G §4 specify, and produces notifications and indications.
//!
//! Sans-IO: [`Server::handle`] takes one PDU and the current time and writes the PDU to send back
//! (if any) into a caller-owned buffer, so answering a Read Request does not allocate.

use super::db::{AttrKind, Attribute, CharId, Database, DbError, ServiceDef};
use super::{events, uuids, Permissions, Properties};
use crate::att::{opcode, AttPdu, ErrorCode, ExecuteWriteFlags};
use crate::uuid::{self, Uuid};
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

/// The ATT transaction timeout (Core Vol 3 Part F §3.3.3): 30 s, in microseconds.
pub const TRANSACTION_TIMEOUT_US: u64 = 30_000_000;
/// The default and minimum LE ATT_MTU (Core Vol 3 Part F §3.2.8).
pub const DEFAULT_MTU: u16 = 23;

/// PDUs to send, each with the connection it goes to.
pub type Outgoing = Vec<(ConnId, Vec<u8>)>;

/// A connection, by its HCI connection handle.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ConnId(pub u16);

/// Server limits.
#[derive(Clone, Copy, Debug)]
pub struct ServerConfig {
    /// Our receive MTU, offered in Exchange MTU (23..=517).
    pub mtu: u16,
    /// Prepared writes queued per connection before Prepare Queue Full.
    pub prepare_queue_entries: usize,
    /// Bytes queued per connection before Prepare Queue Full.
    pub prepare_queue_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { mtu: 517, prepare_queue_entries: 64, prepare_queue_bytes: 4096 }
    }
}

/// Application hooks the server calls while answering requests.
pub trait Access {
    /// A client reads a characteristic value; `Some` supplies the value to answer with (the
    /// stored value is not changed).
    fn read(&mut self, _conn: ConnId, _ch: CharId) -> Option<Vec<u8>> {
        None
    }
    /// A client writes a characteristic value; `Err(code)` rejects it with an application
    /// error (0x80-0x9F).
    fn write(&mut self, _conn: ConnId, _ch: CharId, _value: &[u8]) -> Result<(), u8> {
        Ok(())
    }
    /// A client changed a characteristic's CCCD.
    fn subscribed(&mut self, _conn: ConnId, _ch: CharId, _cccd: u16) {}
    /// Authorization for attributes with an AUTHORIZED permission.
    fn authorize(&mut self, _conn: ConnId, _handle: u16, _write: bool) -> bool {
        true
    }
}

/// No hooks: stored values are served as they are.
impl Access for () {}

#[derive(Debug, Default)]
struct ConnState {
    mtu: u16,
    cccd: BTreeMap<u16, u16>,
    prepare: Vec<(u16, u16, Vec<u8>)>,
    prepare_bytes: usize,
    pending_indication: Option<u64>,
    queued_indications: VecDeque<Vec<u8>>,
    client_features: u8,
    encrypted: bool,
    authenticated: bool,
    closed: bool,
}

/// A GATT server over one database, serving any number of connections.
#[derive(Debug)]
pub struct Server {
    db: Database,
    config: ServerConfig,
    conns: BTreeMap<ConnId, ConnState>,
    service_changed: Option<CharId>,
    hash_char: Option<CharId>,
    features_char: Option<CharId>,
}

fn error(out: &mut Vec<u8>, request: u8, handle: u16, code: ErrorCode) {
    out.clear();
    out.extend_from_slice(&[opcode::ERROR_RSP, request]);
    out.extend_from_slice(&handle.to_le_bytes());
    out.push(code.0);
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
        let mut s =
            Self { db, config, conns: BTreeMap::new(), service_changed: None, hash_char: None, features_char: None };
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

    /// Starts serving a connection (ATT_MTU 23).
    pub fn connect(&mut self, conn: ConnId) {
        self.conns.insert(conn, ConnState { mtu: DEFAULT_MTU, ..ConnState::default() });
    }

    /// Forgets a connection and its per-connection state.
    pub fn disconnect(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
    }

    /// Records the link's security (from Encryption Change).
    pub fn set_security(&mut self, conn: ConnId, encrypted: bool, authenticated: bool) {
        if let Some(st) = self.conns.get_mut(&conn) {
            st.encrypted = encrypted;
            st.authenticated = authenticated && encrypted;
        }
    }

    /// The connection's ATT_MTU.
    pub fn mtu(&self, conn: ConnId) -> u16 {
        self.conns.get(&conn).map(|s| s.mtu).unwrap_or(DEFAULT_MTU)
    }

    /// The CCCD value a connection wrote for a characteristic.
    pub fn cccd(&self, conn: ConnId, ch: CharId) -> u16 {
        let Some(h) = self.db.characteristic(ch).and_then(|c| c.cccd_handle) else { return 0 };
        self.conns.get(&conn).and_then(|s| s.cccd.get(&h)).copied().unwrap_or(0)
    }

    /// True once the bearer closed after an ATT timeout (no more ATT on it, Vol 3 Part F §3.3.3).
    pub fn is_closed(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|s| s.closed)
    }

    /// Adds a service at run time; subscribed clients get a Service Changed indication
    /// (returned as PDUs to send) and the Database Hash changes (Core Vol 3 Part G §7.1).
    pub fn add_service(&mut self, def: ServiceDef, now: u64) -> Result<(u16, Outgoing), DbError> {
        let h = self.db.add_service(def)?;
        let end = self.db.attribute(h).map(|a| a.group_end).unwrap_or(h);
        self.refresh_builtins();
        Ok((h, self.service_changed_indications(h, end, now)))
    }

    /// Removes a service at run time; like [`Server::add_service`] for the indications.
    pub fn remove_service(&mut self, service_handle: u16, now: u64) -> Result<Outgoing, DbError> {
        let (s, e) = self.db.remove_service(service_handle)?;
        // Subscriptions to the removed attributes end with them.
        for st in self.conns.values_mut() {
            st.cccd.retain(|h, _| *h < s || *h > e);
        }
        self.refresh_builtins();
        Ok(self.service_changed_indications(s, e, now))
    }

    fn service_changed_indications(&mut self, start: u16, end: u16, now: u64) -> Outgoing {
        let Some(sc) = self.service_changed else { return Vec::new() };
        let mut v = start.to_le_bytes().to_vec();
        v.extend_from_slice(&end.to_le_bytes());
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        conns.into_iter().filter_map(|c| self.indicate(c, sc, &v, now).map(|p| (c, p))).collect()
    }

    /// Sets a characteristic's value and returns the notifications and indications to send to
    /// the connections subscribed to it (indications wait their turn per connection).
    pub fn set_value(&mut self, ch: CharId, value: &[u8], now: u64) -> Outgoing {
        let Some(c) = self.db.characteristic_mut(ch) else { return Vec::new() };
        c.value.clear();
        c.value.extend_from_slice(value.get(..value.len().min(super::db::MAX_VALUE_LEN)).unwrap_or(value));
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        let mut out = Vec::new();
        for conn in conns {
            let cccd = self.cccd(conn, ch);
            if cccd & 0x0002 != 0 {
                if let Some(p) = self.indicate(conn, ch, value, now) {
                    out.push((conn, p));
                }
            } else if cccd & 0x0001 != 0 {
                if let Some(p) = self.notification(conn, ch, value) {
                    out.push((conn, p));
                }
            }
        }
        out
    }

    /// A Handle Value Notification PDU for `conn` if it enabled notifications (value truncated
    /// to ATT_MTU-3, Core Vol 3 Part F §3.4.7.1).
    pub fn notification(&self, conn: ConnId, ch: CharId, value: &[u8]) -> Option<Vec<u8>> {
        let st = self.conns.get(&conn).filter(|s| !s.closed)?;
        if self.cccd(conn, ch) & 0x0001 == 0 {
            return None;
        }
        let n = value.len().min(st.mtu as usize - 3);
        let mut pdu = Vec::with_capacity(3 + n);
        pdu.push(opcode::HANDLE_VALUE_NTF);
        pdu.extend_from_slice(&ch.0.to_le_bytes());
        pdu.extend_from_slice(value.get(..n).unwrap_or(&[]));
        Some(pdu)
    }

    /// Notifications of several characteristics for `conn`: one Multiple Handle Value
    /// Notification when the client declared support (Client Supported Features bit 2), else one
    /// notification each (Core Vol 3 Part F §3.4.7.4).
    pub fn notify_multiple(&self, conn: ConnId, items: &[(CharId, &[u8])]) -> Vec<Vec<u8>> {
        let Some(st) = self.conns.get(&conn).filter(|s| !s.closed) else { return Vec::new() };
        let subscribed: Vec<&(CharId, &[u8])> = items.iter().filter(|(c, _)| self.cccd(conn, *c) & 1 != 0).collect();
        if st.client_features & 0x04 == 0 || subscribed.len() < 2 {
            return subscribed.iter().filter_map(|(c, v)| self.notification(conn, *c, v)).collect();
        }
        let mut pdus = Vec::new();
        let mut pdu = alloc::vec![opcode::MULTIPLE_HANDLE_VALUE_NTF];
        for (c, v) in subscribed {
            let need = 4 + v.len();
            if pdu.len() > 1 && pdu.len() + need > st.mtu as usize {
                pdus.push(core::mem::replace(&mut pdu, alloc::vec![opcode::MULTIPLE_HANDLE_VALUE_NTF]));
            }
            let room = (st.mtu as usize).saturating_sub(pdu.len() + 4);
            let v = v.get(..v.len().min(room)).unwrap_or(&[]);
            pdu.extend_from_slice(&c.0.to_le_bytes());
            pdu.extend_from_slice(&(v.len() as u16).to_le_bytes());
            pdu.extend_from_slice(v);
        }
        if pdu.len() > 1 {
            pdus.push(pdu);
        }
        pdus
    }

    /// An indication for `conn` if it enabled them: the PDU to send now, or `None` when one is
    /// already outstanding (it is queued and sent after the confirmation, Vol 3 Part F §3.4.7.2).
    pub fn indicate(&mut self, conn: ConnId, ch: CharId, value: &[u8], now: u64) -> Option<Vec<u8>> {
        if self.cccd(conn, ch) & 0x0002 == 0 {
            return None;
        }
        let st = self.conns.get_mut(&conn).filter(|s| !s.closed)?;
        let n = value.len().min(st.mtu as usize - 3);
        let mut pdu = Vec::with_capacity(3 + n);
        pdu.push(opcode::HANDLE_VALUE_IND);
        pdu.extend_from_slice(&ch.0.to_le_bytes());
        pdu.extend_from_slice(value.get(..n).unwrap_or(&[]));
        if st.pending_indication.is_some() {
            st.queued_indications.push_back(pdu);
            return None;
        }
        st.pending_indication = Some(now);
        Some(pdu)
    }

    /// True while an indication to `conn` awaits its confirmation.
    pub fn indication_pending(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|s| s.pending_indication.is_some())
    }

    /// Connections whose indication went unconfirmed for 30 s: their bearer is now closed and
    /// the caller should disconnect them (Core Vol 3 Part F §3.3.3).
    pub fn poll_timeouts(&mut self, now: u64) -> Vec<ConnId> {
        let mut out = Vec::new();
        for (c, st) in self.conns.iter_mut() {
            if let Some(sent) = st.pending_indication {
                if !st.closed && now.saturating_sub(sent) >= TRANSACTION_TIMEOUT_US {
                    st.closed = true;
                    out.push(*c);
                }
            }
        }
        out
    }

    /// When the next transaction timeout falls due, if an indication is outstanding.
    pub fn next_timeout(&self) -> Option<u64> {
        self.conns
            .values()
            .filter(|s| !s.closed)
            .filter_map(|s| s.pending_indication.map(|t| t + TRANSACTION_TIMEOUT_US))
            .min()
    }

    /// Takes one PDU from a client on `conn`. Writes the PDU to send back into `out` (a
    /// response, an error, or the next queued indication after a confirmation) and returns true
    /// if there is one. Commands and unknown commands produce nothing.
    pub fn handle(&mut self, conn: ConnId, pdu: &[u8], now: u64, access: &mut dyn Access, out: &mut Vec<u8>) -> bool {
        out.clear();
        let Some(&op) = pdu.first() else { return false };
        if !self.conns.contains_key(&conn) {
            self.connect(conn);
        }
        if self.conns.get(&conn).is_some_and(|s| s.closed) {
            return false;
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
        if pdu.len() > self.mtu_of(conn) {
            // Longer than ATT_MTU: not a valid PDU on this bearer.
            if opcode::kind(op) == Some(opcode::PduKind::Request) {
                error(out, op, 0, ErrorCode::INVALID_PDU);
                return true;
            }
            return false;
        }
        match decoded {
            AttPdu::ExchangeMtuReq { client_rx_mtu } => {
                let ours = self.config.mtu.clamp(DEFAULT_MTU, 517);
                if let Some(st) = self.conns.get_mut(&conn) {
                    st.mtu = client_rx_mtu.max(DEFAULT_MTU).min(ours);
                }
                out.push(opcode::EXCHANGE_MTU_RSP);
                out.extend_from_slice(&ours.to_le_bytes());
                true
            }
            AttPdu::FindInformationReq { start, end } => self.find_information(conn, start, end, out),
            AttPdu::FindByTypeValueReq { start, end, attribute_type, value } => {
                self.find_by_type_value(conn, start, end, attribute_type, value, out)
            }
            AttPdu::ReadByTypeReq { start, end, attribute_type } => {
                self.read_by_type(conn, start, end, attribute_type, access, out)
            }
            AttPdu::ReadReq { handle } => self.read(conn, op, handle, 0, access, out),
            AttPdu::ReadBlobReq { handle, offset } => self.read(conn, op, handle, offset, access, out),
            AttPdu::ReadMultipleReq { handles } => self.read_multiple(conn, op, handles.iter(), false, access, out),
            AttPdu::ReadMultipleVariableReq { handles } => {
                self.read_multiple(conn, op, handles.iter(), true, access, out)
            }
            AttPdu::ReadByGroupTypeReq { start, end, group_type } => {
                self.read_by_group_type(conn, start, end, group_type, out)
            }
            AttPdu::WriteReq { handle, value } => match self.write(conn, handle, value, access) {
                Ok(()) => {
                    out.push(opcode::WRITE_RSP);
                    true
                }
                Err(code) => {
                    error(out, op, handle, code);
                    true
                }
            },
            AttPdu::WriteCmd { handle, value } => {
                let _ = self.write(conn, handle, value, access);
                false
            }
            // Signing needs keys from pairing: ignored until then.
            AttPdu::SignedWriteCmd { .. } => false,
            AttPdu::PrepareWriteReq { handle, offset, value } => {
                self.prepare(conn, op, handle, offset, value, access, out)
            }
            AttPdu::ExecuteWriteReq { flags } => self.execute(conn, op, flags, access, out),
            AttPdu::HandleValueCfm => {
                let Some(st) = self.conns.get_mut(&conn) else { return false };
                if st.pending_indication.take().is_none() {
                    return false;
                }
                match st.queued_indications.pop_front() {
                    Some(next) => {
                        st.pending_indication = Some(now);
                        out.extend_from_slice(&next);
                        true
                    }
                    None => false,
                }
            }
            // Responses, notifications and indications belong to the client side.
            _ => false,
        }
    }

    fn mtu_of(&self, conn: ConnId) -> usize {
        self.mtu(conn) as usize
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
        let (encrypted, authenticated) =
            self.conns.get(&conn).map(|s| (s.encrypted, s.authenticated)).unwrap_or_default();
        if p.contains(auth) && !authenticated {
            return Err(ErrorCode::INSUFFICIENT_AUTHENTICATION);
        }
        if p.contains(enc) && !encrypted {
            return Err(ErrorCode::INSUFFICIENT_ENCRYPTION);
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
    ) -> &'s [u8] {
        let Some(attr) = self.db.attributes().get(index) else { return &[] };
        match attr.kind {
            AttrKind::Cccd => {
                let v = self.conns.get(&conn).and_then(|s| s.cccd.get(&attr.handle)).copied().unwrap_or(0);
                scratch.clear();
                scratch.extend_from_slice(&v.to_le_bytes());
                scratch
            }
            AttrKind::Value => {
                let Some(id) = attr.characteristic else { return &[] };
                if Some(id) == self.features_char {
                    let v = self.conns.get(&conn).map(|s| s.client_features).unwrap_or(0);
                    scratch.clear();
                    scratch.push(v);
                    return scratch;
                }
                let supplied = access.read(conn, id);
                let Some(c) = self.db.characteristic_mut(id) else { return &[] };
                c.events |= events::CHAR_READ_EVENT;
                match supplied {
                    Some(v) => {
                        *scratch = v;
                        scratch
                    }
                    None => &c.value,
                }
            }
            _ => self.db.attributes().get(index).map(|a| a.value.as_slice()).unwrap_or(&[]),
        }
    }

    fn read(
        &mut self,
        conn: ConnId,
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
        let mtu = self.mtu_of(conn);
        let mut scratch = Vec::new();
        let value = self.value_of(conn, index, access, &mut scratch);
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
        let n = part.len().min(mtu - 1);
        out.push(op + 1);
        out.extend_from_slice(part.get(..n).unwrap_or(&[]));
        true
    }

    fn range_ok(op: u8, start: u16, end: u16, out: &mut Vec<u8>) -> bool {
        if start == 0 || start > end {
            error(out, op, start, ErrorCode::INVALID_HANDLE);
            return false;
        }
        true
    }

    fn find_information(&mut self, conn: ConnId, start: u16, end: u16, out: &mut Vec<u8>) -> bool {
        let op = opcode::FIND_INFORMATION_REQ;
        if !Self::range_ok(op, start, end, out) {
            return true;
        }
        let mtu = self.mtu_of(conn);
        let mut format = 0u8;
        for a in self.db.attributes().get(self.db.lower_bound(start)..).unwrap_or(&[]) {
            if a.handle > end {
                break;
            }
            let f = if matches!(a.uuid, Uuid::U16(_)) { 1 } else { 2 };
            if format == 0 {
                format = f;
                out.extend_from_slice(&[opcode::FIND_INFORMATION_RSP, f]);
            } else if f != format {
                break;
            }
            let rec = 2 + a.uuid.wire_len();
            if out.len() + rec > mtu {
                break;
            }
            out.extend_from_slice(&a.handle.to_le_bytes());
            a.uuid.write_le(out);
        }
        if format == 0 {
            error(out, op, start, ErrorCode::ATTRIBUTE_NOT_FOUND);
        }
        true
    }

    fn find_by_type_value(
        &mut self,
        conn: ConnId,
        start: u16,
        end: u16,
        ty: u16,
        value: &[u8],
        out: &mut Vec<u8>,
    ) -> bool {
        let op = opcode::FIND_BY_TYPE_VALUE_REQ;
        if !Self::range_ok(op, start, end, out) {
            return true;
        }
        let mtu = self.mtu_of(conn);
        out.push(opcode::FIND_BY_TYPE_VALUE_RSP);
        for a in self.db.attributes().get(self.db.lower_bound(start)..).unwrap_or(&[]) {
            if a.handle > end {
                break;
            }
            if a.uuid != Uuid::U16(ty) || self.db.value(a) != value {
                continue;
            }
            if out.len() + 4 > mtu {
                break;
            }
            let group_end = if a.group_end != 0 { a.group_end } else { a.handle };
            out.extend_from_slice(&a.handle.to_le_bytes());
            out.extend_from_slice(&group_end.to_le_bytes());
        }
        if out.len() == 1 {
            error(out, op, start, ErrorCode::ATTRIBUTE_NOT_FOUND);
        }
        true
    }

    fn read_by_type(
        &mut self,
        conn: ConnId,
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
        let mtu = self.mtu_of(conn);
        let max_value = (mtu - 4).min(253);
        let mut each = None;
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
                if each.is_none() {
                    error(out, op, handle, code);
                    return true;
                }
                break;
            }
            let value = self.value_of(conn, index, access, &mut scratch);
            let n = value.len().min(max_value);
            match each {
                None => {
                    each = Some(n);
                    out.extend_from_slice(&[opcode::READ_BY_TYPE_RSP, (n + 2) as u8]);
                }
                Some(len) if len != n => break,
                Some(_) => {}
            }
            if out.len() + 2 + n > mtu {
                break;
            }
            out.extend_from_slice(&handle.to_le_bytes());
            out.extend_from_slice(value.get(..n).unwrap_or(&[]));
            index += 1;
        }
        if each.is_none() {
            error(out, op, start, ErrorCode::ATTRIBUTE_NOT_FOUND);
        }
        true
    }

    fn read_by_group_type(&mut self, conn: ConnId, start: u16, end: u16, ty: Uuid, out: &mut Vec<u8>) -> bool {
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
        let mtu = self.mtu_of(conn);
        let mut each = None;
        for a in self.db.attributes().get(self.db.lower_bound(start)..).unwrap_or(&[]) {
            if a.handle > end {
                break;
            }
            if a.kind != kind {
                continue;
            }
            let n = a.value.len().min((mtu - 6).min(251));
            match each {
                None => {
                    each = Some(n);
                    out.extend_from_slice(&[opcode::READ_BY_GROUP_TYPE_RSP, (n + 4) as u8]);
                }
                Some(len) if len != n => break,
                Some(_) => {}
            }
            if out.len() + 4 + n > mtu {
                break;
            }
            out.extend_from_slice(&a.handle.to_le_bytes());
            out.extend_from_slice(&a.group_end.to_le_bytes());
            out.extend_from_slice(a.value.get(..n).unwrap_or(&[]));
        }
        if each.is_none() {
            error(out, op, start, ErrorCode::ATTRIBUTE_NOT_FOUND);
        }
        true
    }

    fn read_multiple(
        &mut self,
        conn: ConnId,
        op: u8,
        handles: impl Iterator<Item = u16>,
        variable: bool,
        access: &mut dyn Access,
        out: &mut Vec<u8>,
    ) -> bool {
        let mtu = self.mtu_of(conn);
        out.push(op + 1);
        let mut scratch = Vec::new();
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
            let value = self.value_of(conn, index, access, &mut scratch);
            if variable {
                let len = (value.len() as u16).to_le_bytes();
                out.extend_from_slice(&len);
            }
            out.extend_from_slice(value);
        }
        out.truncate(mtu - 1 + 1);
        true
    }

    /// Applies a write (Write Request or Command) after the checks.
    fn write(&mut self, conn: ConnId, handle: u16, value: &[u8], access: &mut dyn Access) -> Result<(), ErrorCode> {
        let index = self.db.index_of(handle).ok_or(ErrorCode::INVALID_HANDLE)?;
        let attr = self.db.attributes().get(index).ok_or(ErrorCode::INVALID_HANDLE)?;
        self.check(conn, attr, true, access)?;
        if value.len() > attr.max_len {
            return Err(ErrorCode::INVALID_ATTRIBUTE_VALUE_LENGTH);
        }
        let (kind, ch) = (attr.kind, attr.characteristic);
        match kind {
            AttrKind::Cccd => {
                let Some(id) = ch else { return Err(ErrorCode::UNLIKELY_ERROR) };
                let bits = match *value {
                    [a, b] => u16::from_le_bytes([a, b]),
                    _ => return Err(ErrorCode::INVALID_ATTRIBUTE_VALUE_LENGTH),
                };
                let props = self.db.characteristic(id).map(|c| c.properties).unwrap_or_default();
                let bad = (bits & 0x0001 != 0 && !props.contains(Properties::NOTIFY))
                    || (bits & 0x0002 != 0 && !props.contains(Properties::INDICATE))
                    || bits & !0x0003 != 0;
                if bad {
                    return Err(ErrorCode::CCCD_IMPROPERLY_CONFIGURED);
                }
                if let Some(st) = self.conns.get_mut(&conn) {
                    st.cccd.insert(handle, bits);
                }
                if let Some(c) = self.db.characteristic_mut(id) {
                    c.events |= events::CHAR_SUBSCRIBE_EVENT;
                }
                access.subscribed(conn, id, bits);
                Ok(())
            }
            AttrKind::Value => {
                let Some(id) = ch else { return Err(ErrorCode::UNLIKELY_ERROR) };
                if Some(id) == self.features_char {
                    let st = self.conns.get_mut(&conn).ok_or(ErrorCode::UNLIKELY_ERROR)?;
                    let bits = value.first().copied().unwrap_or(0);
                    // A client may not clear a feature it enabled (Core Vol 3 Part G §7.2).
                    if st.client_features & !bits != 0 {
                        return Err(ErrorCode::VALUE_NOT_ALLOWED);
                    }
                    st.client_features = bits;
                    return Ok(());
                }
                access.write(conn, id, value).map_err(ErrorCode)?;
                if let Some(c) = self.db.characteristic_mut(id) {
                    c.value.clear();
                    c.value.extend_from_slice(value);
                    c.events |= events::CHAR_WRITE_EVENT;
                }
                Ok(())
            }
            AttrKind::Descriptor => {
                let i = self.db.index_of(handle).ok_or(ErrorCode::INVALID_HANDLE)?;
                self.db.set_descriptor(i, value);
                Ok(())
            }
            _ => Err(ErrorCode::WRITE_NOT_PERMITTED),
        }
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
        out.push(opcode::PREPARE_WRITE_RSP);
        out.extend_from_slice(&handle.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(value);
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
        let queue = core::mem::take(&mut st.prepare);
        st.prepare_bytes = 0;
        if flags == ExecuteWriteFlags::Cancel {
            out.push(opcode::EXECUTE_WRITE_RSP);
            return true;
        }
        // Build every new value first; nothing is written unless all are valid (§3.4.6.3).
        let mut staged: Vec<(u16, Vec<u8>)> = Vec::new();
        let mut scratch = Vec::new();
        for (handle, offset, part) in queue {
            let pos = match staged.iter().position(|(h, _)| *h == handle) {
                Some(p) => p,
                None => {
                    let Some(index) = self.db.index_of(handle) else {
                        error(out, op, handle, ErrorCode::INVALID_HANDLE);
                        return true;
                    };
                    let current = self.current_value(conn, index, &mut scratch);
                    staged.push((handle, current));
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
            if let Err(code) = self.write(conn, *handle, v, access) {
                error(out, op, *handle, code);
                return true;
            }
        }
        out.push(opcode::EXECUTE_WRITE_RSP);
        true
    }

    /// The stored value (no read hook) as prepared writes start from it.
    fn current_value(&self, conn: ConnId, index: usize, _scratch: &mut Vec<u8>) -> Vec<u8> {
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

impl Database {
    pub(crate) fn set_descriptor(&mut self, index: usize, value: &[u8]) {
        if let Some(a) = self.attrs_mut().get_mut(index) {
            a.value.clear();
            a.value.extend_from_slice(value);
        }
    }
}
