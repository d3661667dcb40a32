//! The GATT server on a running host, with the characteristic model of Pycom's
//! `GATTSService` / `GATTSCharacteristic`: `value()` / `set_value()`, read, write and subscribe
//! callbacks, and accumulated event bits.
//!
//! The sans-IO [`gattling_proto::gatt::Server`] answers requests inline in the host's receive
//! task when no application code is involved (no task switch per request). Application
//! callbacks never run there: a read or write of a characteristic with a handler is parked
//! (the ATT transaction stays open) and the handler runs on the link's application task,
//! outside every lock, so it may call any gattling API (`value()`, `set_value()`, GATT client
//! calls, disconnect, ...). It answers at once by returning, or later through the
//! [`ReadRequest`] / [`WriteRequest`] it was given; an unanswered request fails after the 30 s
//! ATT transaction timeout. A handler that panics answers Unlikely Error (0x0E) and the host
//! serves on.

use crate::driver::{lock, Shared};
use crate::error::Error;
use crate::host::Host;
pub use gattling_proto::gatt::server::WriteKind;
use gattling_proto::gatt::server::{builtin_services, Answer, ConnId, Deferred, DeferredKind, ReadAccess, WriteAccess};
use gattling_proto::gatt::{Access, CharId, ServerConfig};
use gattling_proto::hci::ConnHandle;
use gattling_proto::Uuid;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Weak};
use tokio::sync::mpsc;

pub use gattling_proto::gatt::att_list::{AttList, AttListError, AttListErrorKind};
pub use gattling_proto::gatt::db::{
    AttrKind, Attribute, AttributeRecord, DbError, DescriptorDef, TableError, TableErrorKind,
};
use gattling_proto::gatt::uuids;
pub use gattling_proto::gatt::Database;
pub use gattling_proto::gatt::{events, CharacteristicDef, Permissions, Properties, ServiceDef};

type ReadHook = Arc<dyn Fn(ReadRequest) + Send + Sync>;
type WriteHook = Arc<dyn Fn(WriteRequest) + Send + Sync>;
type WrittenHook = Arc<dyn Fn(ConnHandle, &[u8]) + Send + Sync>;
type SubscribeHook = Arc<dyn Fn(ConnHandle, u16) + Send + Sync>;
type AuthorizeHook = Arc<dyn Fn(ConnHandle, u16, bool) -> bool + Send + Sync>;

/// The application hooks of every characteristic.
#[derive(Default, Clone)]
pub(crate) struct Hooks {
    read: HashMap<CharId, ReadHook>,
    write: HashMap<CharId, WriteHook>,
    written: HashMap<CharId, WrittenHook>,
    subscribe: HashMap<CharId, SubscribeHook>,
    authorize: Option<AuthorizeHook>,
    /// Receivers of every [`ServerEvent`].
    listeners: Vec<mpsc::Sender<ServerEvent>>,
}

/// Something a client did to the server, as reported by [`GattServer::events`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerEvent {
    /// A client's write stored a characteristic value.
    Written {
        /// The connection.
        conn: ConnHandle,
        /// The characteristic's value handle.
        value_handle: u16,
        /// The value stored.
        value: Vec<u8>,
        /// How the client wrote it: Write Command, Write Request, or prepared (long or
        /// reliable) writes applied by Execute Write.
        kind: WriteKind,
    },
    /// A client wrote a characteristic's CCCD (bit 0 notify, bit 1 indicate).
    Subscribed {
        /// The connection.
        conn: ConnHandle,
        /// The characteristic's value handle.
        value_handle: u16,
        /// The new CCCD value.
        cccd: u16,
    },
    /// A client confirmed an indication (Core Vol 3 Part F §3.4.7.3).
    Confirmed {
        /// The connection.
        conn: ConnHandle,
    },
}

/// Events one [`ServerEvents`] reader may have unread; later ones are dropped until it reads.
const SERVER_EVENTS: usize = 1024;

/// Work for a link's application task.
#[derive(Debug)]
pub(crate) enum AppJob {
    /// A parked read or write waits for its handler.
    Deferred(Deferred),
    /// A value was stored.
    Written(CharId, Vec<u8>, WriteKind),
    /// A CCCD was written.
    Subscribed(CharId, u16),
    /// An indication was confirmed.
    Confirmed,
    /// A notification or indication for the GATT client's callbacks (the whole PDU).
    Notified(Vec<u8>),
    /// A pairing question for the user ([`crate::security::PairingDelegate`]).
    Security(crate::security::Ask),
}

/// The server's view of the application while it answers a request under the host lock: a
/// characteristic with a handler is answered later; stores and subscriptions become jobs.
pub(crate) struct Recorder<'a> {
    hooks: &'a Hooks,
    jobs: &'a mut Vec<(ConnHandle, AppJob)>,
    handle: ConnHandle,
}

impl<'a> Recorder<'a> {
    pub(crate) fn new(hooks: &'a Hooks, jobs: &'a mut Vec<(ConnHandle, AppJob)>, handle: ConnHandle) -> Self {
        Self { hooks, jobs, handle }
    }
}

impl Access for Recorder<'_> {
    fn read(&mut self, _conn: ConnId, ch: CharId) -> ReadAccess {
        if self.hooks.read.contains_key(&ch) {
            ReadAccess::Later
        } else {
            ReadAccess::Stored
        }
    }

    fn write(&mut self, _conn: ConnId, ch: CharId, _value: &[u8]) -> WriteAccess {
        if self.hooks.write.contains_key(&ch) {
            WriteAccess::Later
        } else {
            WriteAccess::Accept
        }
    }

    fn written(&mut self, _conn: ConnId, ch: CharId, value: &[u8], kind: WriteKind) {
        if self.hooks.written.contains_key(&ch) || !self.hooks.listeners.is_empty() {
            self.jobs.push((self.handle, AppJob::Written(ch, value.to_vec(), kind)));
        }
    }

    fn subscribed(&mut self, _conn: ConnId, ch: CharId, cccd: u16) {
        // Always: a bonded client's CCCD is kept in its bond (Core Vol 3 Part G §3.3.3.3).
        self.jobs.push((self.handle, AppJob::Subscribed(ch, cccd)));
    }

    fn authorize(&mut self, conn: ConnId, handle: u16, write: bool) -> bool {
        self.hooks.authorize.as_ref().is_none_or(|f| f(conn.0, handle, write))
    }
}

/// The server state a host carries once [`Host::gatt_server`] installed it.
pub(crate) struct GattState {
    pub(crate) server: gattling_proto::gatt::Server,
    pub(crate) hooks: Hooks,
}

impl GattState {
    /// True when someone listens for indication confirmations.
    pub(crate) fn wants_confirmations(&self) -> bool {
        !self.hooks.listeners.is_empty()
    }
}

/// A read of a characteristic value waiting for the application's answer. Answer it once,
/// now or later, from any thread; dropping it unanswered answers Unlikely Error (0x0E).
pub struct ReadRequest {
    answer: Answering,
}

/// A write of a characteristic value waiting for the application's verdict; the value is
/// stored only when accepted. Dropping it unanswered answers Unlikely Error (0x0E).
pub struct WriteRequest {
    answer: Answering,
    value: Vec<u8>,
}

/// The parked request a [`ReadRequest`] or [`WriteRequest`] answers.
struct Answering {
    shared: Weak<Shared>,
    conn: ConnHandle,
    ch: CharId,
    token: u32,
    answered: bool,
}

impl Answering {
    fn give(&mut self, answer: Answer) {
        if std::mem::replace(&mut self.answered, true) {
            return;
        }
        if let Some(shared) = self.shared.upgrade() {
            answer_parked(&shared, self.conn, self.token, answer);
        }
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.give(Answer::Error(gattling_proto::att::ErrorCode::UNLIKELY_ERROR.0));
    }
}

impl std::fmt::Debug for ReadRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadRequest").field("conn", &self.answer.conn).field("value_handle", &self.answer.ch.0).finish()
    }
}

impl std::fmt::Debug for WriteRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteRequest")
            .field("conn", &self.answer.conn)
            .field("value_handle", &self.answer.ch.0)
            .field("value", &self.value)
            .finish()
    }
}

impl ReadRequest {
    /// The connection that reads.
    pub fn conn(&self) -> ConnHandle {
        self.answer.conn
    }

    /// The characteristic's value handle.
    pub fn value_handle(&self) -> u16 {
        self.answer.ch.0
    }

    /// Answers with `value` (the stored value is not changed); a Read Blob takes its part.
    pub fn respond(mut self, value: &[u8]) {
        self.answer.give(Answer::Value(value.to_vec()));
    }

    /// Answers with the stored value.
    pub fn respond_stored(mut self) {
        self.answer.give(Answer::Stored);
    }

    /// Answers with an ATT error (application errors are 0x80-0x9F).
    pub fn reject(mut self, code: u8) {
        self.answer.give(Answer::Error(code));
    }
}

impl WriteRequest {
    /// The connection that writes.
    pub fn conn(&self) -> ConnHandle {
        self.answer.conn
    }

    /// The characteristic's value handle.
    pub fn value_handle(&self) -> u16 {
        self.answer.ch.0
    }

    /// The value the client writes.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// Stores the value and answers Write Response.
    pub fn accept(mut self) {
        self.answer.give(Answer::Accept);
    }

    /// Refuses with an ATT error (application errors are 0x80-0x9F); nothing is stored.
    pub fn reject(mut self, code: u8) {
        self.answer.give(Answer::Error(code));
    }
}

/// Finishes a parked request with the application's answer and sends the reply.
fn answer_parked(shared: &Shared, conn: ConnHandle, token: u32, answer: Answer) {
    let now = shared.now();
    {
        let mut guard = lock(shared);
        let inner = &mut *guard;
        let crate::driver::Inner { links, gatt, scratch, jobs, core, .. } = inner;
        let (Some(g), Some(link)) = (gatt.as_mut(), links.0.get_mut(&conn)) else { return };
        let mut access = Recorder::new(&g.hooks, jobs, conn);
        match g.server.answer(ConnId(conn), token, answer, &link.bearer, &mut access, scratch) {
            gattling_proto::gatt::server::Outcome::Reply => {
                if link.bearer.send(scratch, now).is_ok() {
                    let _ = core.send_att(conn, scratch);
                }
            }
            gattling_proto::gatt::server::Outcome::Deferred(d) => jobs.push((conn, AppJob::Deferred(d))),
            gattling_proto::gatt::server::Outcome::Silent => {}
        }
        inner.dispatch_jobs();
    }
    crate::driver::kick(shared);
}

/// Runs a handler, turning a panic into a logged error (its request, dropped while
/// unwinding, answers Unlikely Error).
fn guarded(what: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(AssertUnwindSafe(f)).is_err() {
        tracing::error!("GATT {what} handler panicked; answered Unlikely Error (0x0E)");
    }
}

/// A link's application task: runs callbacks in the order their events arrived, outside the
/// host lock, until the link ends.
pub(crate) async fn app_loop(
    shared: Weak<Shared>,
    conn: ConnHandle,
    mut jobs: mpsc::UnboundedReceiver<AppJob>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
) {
    while let Some(job) = jobs.recv().await {
        queued.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let Some(s) = shared.upgrade() else { return };
        match job {
            AppJob::Deferred(d) => {
                let answer = Answering { shared: shared.clone(), conn, ch: d.ch, token: d.token, answered: false };
                let hooks = lock(&s)
                    .gatt
                    .as_ref()
                    .map(|g| (g.hooks.read.get(&d.ch).cloned(), g.hooks.write.get(&d.ch).cloned()));
                drop(s);
                match (d.kind, hooks) {
                    (DeferredKind::Read, Some((Some(f), _))) => guarded("read", || f(ReadRequest { answer })),
                    (DeferredKind::Write(value), Some((_, Some(f)))) => {
                        guarded("write", || f(WriteRequest { answer, value }))
                    }
                    // The handler went away meanwhile: `answer` drops and answers an error.
                    _ => {}
                }
            }
            AppJob::Written(ch, value, kind) => {
                let (hook, listeners) = match lock(&s).gatt.as_mut() {
                    Some(g) => {
                        g.hooks.listeners.retain(|l| !l.is_closed());
                        (g.hooks.written.get(&ch).cloned(), g.hooks.listeners.clone())
                    }
                    None => (None, Vec::new()),
                };
                drop(s);
                for l in listeners {
                    let _ = l.try_send(ServerEvent::Written { conn, value_handle: ch.0, value: value.clone(), kind });
                }
                if let Some(f) = hook {
                    guarded("write", || f(conn, &value));
                }
            }
            AppJob::Subscribed(ch, cccd) => {
                let (hook, listeners) = {
                    let inner = lock(&s);
                    let cccd_handle =
                        inner.gatt.as_ref().and_then(|g| g.server.db().characteristic(ch)).and_then(|c| c.cccd_handle);
                    if let Some(h) = cccd_handle {
                        crate::security::persist_cccd(&inner, conn, h, cccd);
                    }
                    match inner.gatt.as_ref() {
                        Some(g) => (g.hooks.subscribe.get(&ch).cloned(), g.hooks.listeners.clone()),
                        None => (None, Vec::new()),
                    }
                };
                drop(s);
                for l in listeners {
                    let _ = l.try_send(ServerEvent::Subscribed { conn, value_handle: ch.0, cccd });
                }
                if let Some(f) = hook {
                    guarded("subscribe", || f(conn, cccd));
                }
            }
            AppJob::Confirmed => {
                let listeners = lock(&s).gatt.as_ref().map(|g| g.hooks.listeners.clone()).unwrap_or_default();
                drop(s);
                for l in listeners {
                    let _ = l.try_send(ServerEvent::Confirmed { conn });
                }
            }
            AppJob::Security(question) => {
                drop(s);
                // The user may take a while: other jobs of this link go on meanwhile.
                tokio::spawn(crate::security::ask(shared.clone(), conn, question));
            }
            AppJob::Notified(pdu) => {
                let client = lock(&s).links.0.get(&conn).and_then(|l| l.client.clone());
                drop(s);
                if let Some(client) = client {
                    guarded("notification", || client.run_callbacks(&pdu));
                }
            }
        }
    }
}

/// Handle to a host's GATT server. Cheap to clone.
#[derive(Clone)]
pub struct GattServer {
    host: Host,
}

impl std::fmt::Debug for GattServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GattServer").finish_non_exhaustive()
    }
}

/// A service added to a [`GattServer`].
#[derive(Clone, Debug)]
pub struct Service {
    /// Handle of the service declaration.
    pub handle: u16,
    /// Last handle of the service.
    pub end_handle: u16,
    /// Its characteristics, in handle order.
    pub characteristics: Vec<Characteristic>,
}

/// One characteristic of a running server, in the shape of Pycom's `GATTSCharacteristic`.
#[derive(Clone)]
pub struct Characteristic {
    server: GattServer,
    id: CharId,
    uuid: Uuid,
}

impl std::fmt::Debug for Characteristic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Characteristic").field("uuid", &self.uuid).field("value_handle", &self.id.0).finish()
    }
}

fn new_state(db: Database) -> GattState {
    GattState { server: gattling_proto::gatt::Server::new(db, ServerConfig::default()), hooks: Hooks::default() }
}

impl Host {
    /// Installs the GATT server built by `make` unless one is installed; existing connections
    /// are served from now on.
    fn install_gatt(&self, make: impl FnOnce() -> GattState) {
        let mut inner = self.lock();
        if inner.gatt.is_some() {
            return;
        }
        let mut state = make();
        for h in inner.links.0.keys() {
            state.server.connect(gattling_proto::gatt::ConnId(*h));
        }
        inner.gatt = Some(state);
    }

    /// Installs (once) and returns this host's GATT server, with the GAP service (Device Name
    /// `device_name`, Appearance) and the GATT service (Service Changed, Client Supported
    /// Features, Database Hash) (Core Vol 3 Part G §7).
    pub fn gatt_server(&self, device_name: &str, appearance: u16) -> GattServer {
        self.install_gatt(|| {
            let mut db = Database::new();
            for s in builtin_services(device_name, appearance) {
                // The built-ins fit an empty database.
                let _ = db.add_service(s);
            }
            new_state(db)
        });
        GattServer { host: self.clone() }
    }

    /// Installs a GATT server that serves `db` exactly as prepared (its own built-in services,
    /// or none); if a server is installed already, its database is replaced
    /// ([`GattServer::replace_database`]).
    pub fn gatt_server_with(&self, db: Database) -> GattServer {
        let mut db = Some(db);
        self.install_gatt(|| new_state(db.take().unwrap_or_default()));
        let server = GattServer { host: self.clone() };
        if let Some(db) = db {
            server.replace_database(db);
        }
        server
    }
}

impl GattServer {
    /// Runs `f` on the server state with the links (for bearers), then sends what it produced.
    fn with<T>(&self, f: impl FnOnce(&mut GattState, &mut crate::driver::Links, u64) -> (T, Outgoing)) -> Option<T> {
        let now = self.host.now();
        let shared = self.host.shared().clone();
        let result = {
            let mut guard = self.host.lock();
            let inner = &mut *guard;
            let g = inner.gatt.as_mut()?;
            let (t, out) = f(g, &mut inner.links, now);
            if !out.is_empty() {
                inner.send_outgoing(out);
                crate::driver::arm_timer(&shared, inner);
            }
            t
        };
        self.host.kick();
        Some(result)
    }

    /// Reads the server state.
    fn read<T>(&self, f: impl FnOnce(&GattState) -> T) -> Option<T> {
        self.host.lock().gatt.as_ref().map(f)
    }

    fn no_server() -> Error {
        Error::InvalidArgument("no GATT server on this host".into())
    }

    /// Adds a service; clients that enabled Service Changed indications are told.
    pub fn add_service(&self, def: ServiceDef) -> Result<Service, Error> {
        let (handle, end_handle, chars) = self
            .with(|g, links, now| match g.server.add_service(def, now, links) {
                Ok((h, out)) => {
                    let db = g.server.db();
                    let end = db.attribute(h).map(|a| a.group_end).unwrap_or(h);
                    let chars: Vec<(CharId, Uuid)> = db
                        .characteristics()
                        .iter()
                        .filter(|c| c.value_handle > h && c.value_handle <= end)
                        .map(|c| (CharId(c.value_handle), c.uuid))
                        .collect();
                    (Ok((h, end, chars)), out)
                }
                Err(e) => (Err(e), Vec::new()),
            })
            .ok_or_else(Self::no_server)??;
        let characteristics =
            chars.into_iter().map(|(id, uuid)| Characteristic { server: self.clone(), id, uuid }).collect();
        Ok(Service { handle, end_handle, characteristics })
    }

    /// Removes a service; clients that enabled Service Changed indications are told.
    pub fn remove_service(&self, service: &Service) -> Result<(), Error> {
        self.with(|g, links, now| match g.server.remove_service(service.handle, now, links) {
            Ok(out) => (Ok(()), out),
            Err(e) => (Err(e), Vec::new()),
        })
        .ok_or_else(Self::no_server)??;
        Ok(())
    }

    /// Inserts a raw attribute table at its own handles (declarations as given, validated:
    /// see [`Database::insert_records`]). An invalid table is refused with the handle and the
    /// reason, and the database stays as it was; otherwise clients subscribed to Service
    /// Changed are told.
    pub fn insert_records(&self, records: &[AttributeRecord]) -> Result<(), Error> {
        self.with(|g, links, now| match g.server.insert_records(records, now, links) {
            Ok(out) => (Ok(()), out),
            Err(e) => (Err(e), Vec::new()),
        })
        .ok_or_else(Self::no_server)??;
        Ok(())
    }

    /// Replaces the whole database; connected clients get Service Changed for every handle
    /// (Core Vol 3 Part G §7.1) and their subscriptions end.
    pub fn replace_database(&self, db: Database) {
        self.with(|g, links, now| ((), g.server.replace_database(db, now, links)));
    }

    /// Loads an ATT_LIST service table (binary or hex text, see
    /// [`gattling_proto::gatt::att_list`]) in place of the whole database: the table at its own
    /// handles, the built-in services compacted below its first handle (keeping the current
    /// Device Name and Appearance). An invalid table is refused with its offset, handle and
    /// reason and the database stays as it was; otherwise as [`GattServer::replace_database`].
    pub fn load_att_list(&self, table: &[u8]) -> Result<AttList, Error> {
        let list = AttList::decode(table)?;
        let (name, appearance) = self
            .read(|g| {
                let db = g.server.db();
                let value = |u: u16| {
                    db.find_characteristic(Uuid::U16(u)).and_then(|id| db.characteristic(id)).map(|c| c.value.clone())
                };
                let name = value(uuids::DEVICE_NAME).unwrap_or_default();
                let appearance = match value(uuids::APPEARANCE).as_deref() {
                    Some(&[a, b]) => u16::from_le_bytes([a, b]),
                    _ => 0,
                };
                (String::from_utf8_lossy(&name).into_owned(), appearance)
            })
            .ok_or_else(Self::no_server)?;
        let db = list.database(&name, appearance)?;
        self.replace_database(db);
        Ok(list)
    }

    /// The whole database as attributes, in handle order (Core Vol 3 Part F §3.2).
    pub fn attributes(&self) -> Vec<Attribute> {
        self.read(|g| g.server.db().attributes().to_vec()).unwrap_or_default()
    }

    /// The smallest encryption key size (7..=16 octets) the attributes that need encryption
    /// accept; clients on links with shorter keys get Insufficient Encryption Key Size (Core Vol 3
    /// Part C §10.3.1.1). 7 by default.
    pub fn set_min_key_size(&self, key_size: u8) {
        self.with(|g, _, _| {
            g.server.set_min_key_size(key_size);
            ((), Vec::new())
        });
    }

    /// A copy of the database as it is now.
    pub fn database(&self) -> Database {
        self.read(|g| g.server.db().clone()).unwrap_or_default()
    }

    /// The first characteristic with this UUID.
    pub fn characteristic(&self, uuid: impl Into<Uuid>) -> Option<Characteristic> {
        let uuid = uuid.into();
        let id = self.read(|g| g.server.db().find_characteristic(uuid)).flatten()?;
        Some(Characteristic { server: self.clone(), id, uuid })
    }

    /// The characteristic whose value is at `value_handle`.
    pub fn characteristic_at(&self, value_handle: u16) -> Option<Characteristic> {
        let uuid = self.read(|g| g.server.db().characteristic(CharId(value_handle)).map(|c| c.uuid)).flatten()?;
        Some(Characteristic { server: self.clone(), id: CharId(value_handle), uuid })
    }

    /// Every characteristic, in handle order.
    pub fn characteristics(&self) -> Vec<Characteristic> {
        let list: Vec<(CharId, Uuid)> = self
            .read(|g| g.server.db().characteristics().iter().map(|c| (CharId(c.value_handle), c.uuid)).collect())
            .unwrap_or_default();
        list.into_iter().map(|(id, uuid)| Characteristic { server: self.clone(), id, uuid }).collect()
    }

    /// The Database Hash (Core Vol 3 Part G §7.3), least significant octet first.
    pub fn database_hash(&self) -> [u8; 16] {
        self.read(|g| g.server.db().compute_hash()).unwrap_or_default()
    }

    /// Sets an authorization hook for attributes with an AUTHORIZED permission:
    /// `f(connection, handle, is_write)`. It runs while the request is answered, under the host
    /// lock: it must decide quickly and must not call gattling.
    pub fn on_authorize(&self, f: impl Fn(ConnHandle, u16, bool) -> bool + Send + Sync + 'static) {
        self.with(|g, _, _| (g.hooks.authorize = Some(Arc::new(f)), Vec::new()));
    }

    /// Every write, subscription and confirmation from now on, in the order they happened. At
    /// most 1024 unread events are kept; later ones are dropped until the reader catches up.
    pub fn events(&self) -> ServerEvents {
        let (tx, rx) = mpsc::channel(SERVER_EVENTS);
        self.with(|g, _, _| (g.hooks.listeners.push(tx), Vec::new()));
        ServerEvents { rx }
    }

    /// Notifies several characteristics to `conn` at once: one Multiple Handle Value
    /// Notification if the client declared support for it, else one notification each
    /// (Core Vol 3 Part F §3.4.7.4). Only characteristics `conn` subscribed to are sent.
    pub fn notify_multiple(&self, conn: ConnHandle, items: &[(&Characteristic, &[u8])]) {
        self.with(|g, links, _| {
            let Some(link) = links.0.get(&conn) else { return ((), Vec::new()) };
            let list: Vec<(CharId, &[u8])> = items.iter().map(|(c, v)| (c.id, *v)).collect();
            let pdus = g.server.notify_multiple(&link.bearer, ConnId(conn), &list);
            ((), pdus.into_iter().map(|p| (ConnId(conn), p)).collect())
        });
    }

    /// The ATT_MTU of a connection's bearer.
    pub fn mtu(&self, conn: ConnHandle) -> u16 {
        self.host.att_mtu(conn).unwrap_or(gattling_proto::att::bearer::DEFAULT_MTU)
    }
}

/// PDUs to send, each with its connection.
type Outgoing = Vec<(ConnId, Vec<u8>)>;

/// The stream of [`ServerEvent`]s from [`GattServer::events`].
#[derive(Debug)]
pub struct ServerEvents {
    rx: mpsc::Receiver<ServerEvent>,
}

impl ServerEvents {
    /// The next event; `None` once the host is gone.
    pub async fn next(&mut self) -> Option<ServerEvent> {
        self.rx.recv().await
    }
}

impl Characteristic {
    /// The characteristic's UUID.
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// The handle of its value.
    pub fn value_handle(&self) -> u16 {
        self.id.0
    }

    /// The stored value (Pycom `value()`).
    pub fn value(&self) -> Vec<u8> {
        self.server
            .read(|g| g.server.db().characteristic(self.id).map(|c| c.value.clone()))
            .flatten()
            .unwrap_or_default()
    }

    /// Stores a value and notifies or indicates every client subscribed to it (Pycom `value(v)`,
    /// but only to subscribed clients, as the CCCD says).
    pub fn set_value(&self, value: &[u8]) {
        let host = &self.server.host;
        let now = host.now();
        {
            let mut guard = host.lock();
            let inner = &mut *guard;
            let crate::driver::Inner { gatt, links, core, .. } = inner;
            let Some(g) = gatt.as_mut() else { return };
            // Each PDU goes to the core as it is built: no allocation per notification.
            let mut indicated = false;
            g.server.set_value_with(self.id, value, now, links, &mut |conn, pdu| {
                indicated |= pdu.first() == Some(&gattling_proto::att::opcode::HANDLE_VALUE_IND);
                let _ = core.send_att(conn.0, pdu);
            });
            if indicated {
                crate::driver::arm_timer(host.shared(), inner);
            }
        }
        host.kick();
    }

    /// Stores a value without notifying or indicating anyone (u-connectXpress `AT+UBTGAV`;
    /// `AT+UBTGNS` notifies one connection and updates the stored value this way).
    pub fn store_value(&self, value: &[u8]) {
        self.server.with(|g, _, _| {
            if let Some(c) = g.server.db_mut().characteristic_mut(self.id) {
                c.value.clear();
                c.value.extend_from_slice(value);
            }
            ((), Vec::new())
        });
    }

    /// Notifies `value` to `conn` if it enabled notifications (Core Vol 3 Part F §3.4.7.1);
    /// returns whether a notification was sent. The stored value is unchanged.
    pub fn notify(&self, conn: ConnHandle, value: &[u8]) -> bool {
        self.server
            .with(|g, links, _| {
                let pdu =
                    links.0.get(&conn).and_then(|l| g.server.notification(&l.bearer, ConnId(conn), self.id, value));
                let sent = pdu.is_some();
                (sent, pdu.map(|p| (ConnId(conn), p)).into_iter().collect())
            })
            .unwrap_or(false)
    }

    /// Indicates `value` to `conn` if it enabled indications (Core Vol 3 Part F §3.4.7.2); it
    /// waits its turn behind an unconfirmed one. Returns whether it was queued. The
    /// confirmation arrives as [`ServerEvent::Confirmed`].
    pub fn indicate(&self, conn: ConnHandle, value: &[u8]) -> bool {
        self.server
            .with(|g, links, now| {
                let Some(link) = links.0.get_mut(&conn) else { return (false, Vec::new()) };
                let Some(pdu) = g.server.indication(&link.bearer, ConnId(conn), self.id, value) else {
                    return (false, Vec::new());
                };
                link.bearer.queue_indication(pdu);
                (true, link.bearer.poll_indication(now).map(|p| (ConnId(conn), p)).into_iter().collect())
            })
            .unwrap_or(false)
    }

    /// Returns the accumulated event bits (0x08 read, 0x10 write, 0x80 subscribe) and clears them.
    pub fn events(&self) -> u16 {
        self.server
            .with(|g, _, _| {
                let bits = g.server.db_mut().characteristic_mut(self.id).map(|c| std::mem::take(&mut c.events));
                (bits, Vec::new())
            })
            .flatten()
            .unwrap_or(0)
    }

    /// The CCCD value `conn` wrote (bit 0 notify, bit 1 indicate).
    pub fn cccd(&self, conn: ConnHandle) -> u16 {
        self.server.read(|g| g.server.cccd(ConnId(conn), self.id)).unwrap_or(0)
    }

    fn set_hook(&self, f: impl FnOnce(&mut Hooks)) {
        self.server.with(|g, _, _| (f(&mut g.hooks), Vec::new()));
    }

    /// Read handler: `Some(value)` answers with that value (the stored value is unchanged),
    /// `None` with the stored value. Runs on the link's application task.
    pub fn on_read(&self, f: impl Fn(ConnHandle) -> Option<Vec<u8>> + Send + Sync + 'static) {
        self.on_read_request(move |req| match f(req.conn()) {
            Some(v) => req.respond(&v),
            None => req.respond_stored(),
        });
    }

    /// Read handler that answers through the [`ReadRequest`], now or later (e.g. a host MCU
    /// answering over a serial line, or an async task).
    pub fn on_read_request(&self, f: impl Fn(ReadRequest) + Send + Sync + 'static) {
        let id = self.id;
        self.set_hook(|h| {
            h.read.insert(id, Arc::new(f));
        });
    }

    /// Write validator: sees the value before it is stored; `Err(code)` rejects it with that
    /// ATT error (application errors are 0x80-0x9F).
    pub fn on_write(&self, f: impl Fn(ConnHandle, &[u8]) -> Result<(), u8> + Send + Sync + 'static) {
        self.on_write_request(move |req| match f(req.conn(), req.value()) {
            Ok(()) => req.accept(),
            Err(code) => req.reject(code),
        });
    }

    /// Write validator that answers through the [`WriteRequest`], now or later.
    pub fn on_write_request(&self, f: impl Fn(WriteRequest) + Send + Sync + 'static) {
        let id = self.id;
        self.set_hook(|h| {
            h.write.insert(id, Arc::new(f));
        });
    }

    /// Called after a client's write stored a new value (Pycom's CHAR_WRITE_EVENT handler,
    /// which reads the new value with `value()`). While a slow callback holds up its link's
    /// task, at most 1024 callbacks wait; later ones are dropped (the values are still stored).
    pub fn on_written(&self, f: impl Fn(ConnHandle, &[u8]) + Send + Sync + 'static) {
        let id = self.id;
        self.set_hook(|h| {
            h.written.insert(id, Arc::new(f));
        });
    }

    /// Subscribe handler: called with the new CCCD value.
    pub fn on_subscribe(&self, f: impl Fn(ConnHandle, u16) + Send + Sync + 'static) {
        let id = self.id;
        self.set_hook(|h| {
            h.subscribe.insert(id, Arc::new(f));
        });
    }
}

/// UUIDs of the demo database served by `gattling serve`.
pub mod demo {
    use gattling_proto::Uuid;

    /// Service 1 of the Pycom example: `uuid=b'1234567890123456'` (bytes taken as little-endian).
    pub const SERVICE_1: Uuid = Uuid::U128(*b"1234567890123456");
    /// Its characteristic `uuid=b'ab34567890123456'`, initial value 5.
    pub const CHAR_1: Uuid = Uuid::U128(*b"ab34567890123456");
    /// Service 2 of the Pycom example: `uuid=1234`.
    pub const SERVICE_2: Uuid = Uuid::U16(1234);
    /// Its characteristic `uuid=4567`, initial value 0x1234.
    pub const CHAR_2: Uuid = Uuid::U16(4567);
    /// gattling's demo service.
    pub const SERVICE_3: Uuid = Uuid::from_be_u128(0x6a77_0001_9d1e_4b1c_a0a5_4b5c_5e7a_d0c0);
    /// A counter that can be notified or indicated.
    pub const COUNTER: Uuid = Uuid::from_be_u128(0x6a77_0002_9d1e_4b1c_a0a5_4b5c_5e7a_d0c0);
    /// A 512-byte readable and writable value.
    pub const LONG: Uuid = Uuid::from_be_u128(0x6a77_0003_9d1e_4b1c_a0a5_4b5c_5e7a_d0c0);
}

/// The services of `gattling serve`: the two services of Pycom's example (Properties READ,
/// WRITE, NOTIFY as Pycom's defaults), a counter characteristic with NOTIFY and INDICATE, and a
/// 512-byte readable and writable value with a user description.
pub fn demo_services() -> Vec<ServiceDef> {
    let pycom = Properties::READ | Properties::WRITE | Properties::NOTIFY;
    let long: Vec<u8> = (0..512u32).map(|i| (i % 251) as u8).collect();
    vec![
        ServiceDef::primary(demo::SERVICE_1).characteristic(CharacteristicDef::new(demo::CHAR_1, pycom, &[5])),
        ServiceDef::primary(demo::SERVICE_2).characteristic(CharacteristicDef::new(demo::CHAR_2, pycom, &[0x12, 0x34])),
        ServiceDef::primary(demo::SERVICE_3)
            .characteristic(
                CharacteristicDef::new(
                    demo::COUNTER,
                    Properties::READ | Properties::NOTIFY | Properties::INDICATE,
                    &[0],
                )
                .user_description("counter"),
            )
            .characteristic(
                CharacteristicDef::new(demo::LONG, Properties::READ | Properties::WRITE, &long)
                    .extended_properties(0x0001)
                    .user_description("512 bytes"),
            ),
    ]
}
