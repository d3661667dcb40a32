//! The GATT server on a running host, with the characteristic model of Pycom's
//! `GATTSService` / `GATTSCharacteristic`: `value()` / `set_value()`, read, write and subscribe
//! callbacks, and accumulated event bits.
//!
//! The sans-IO [`gattling_proto::gatt::Server`] answers requests inline in the host's receive
//! task (no task switch per request); callbacks run there too, with the host locked, so they
//! must be quick and must not call back into the server (such calls are refused and logged;
//! spawn a task for follow-up work such as `set_value`).

use crate::error::Error;
use crate::host::Host;
use gattling_proto::gatt::server::{builtin_services, ConnId};
use gattling_proto::gatt::{Access, CharId, Database, ServerConfig, ServiceDef};
use gattling_proto::hci::ConnHandle;
use gattling_proto::Uuid;
use std::collections::HashMap;
use std::sync::Arc;

pub use gattling_proto::gatt::{events, CharacteristicDef, Permissions, Properties};

type ReadHook = Arc<dyn Fn(ConnHandle) -> Option<Vec<u8>> + Send + Sync>;
type WriteHook = Arc<dyn Fn(ConnHandle, &[u8]) -> Result<(), u8> + Send + Sync>;
type SubscribeHook = Arc<dyn Fn(ConnHandle, u16) + Send + Sync>;
type AuthorizeHook = Arc<dyn Fn(ConnHandle, u16, bool) -> bool + Send + Sync>;

/// The application hooks of every characteristic.
#[derive(Default, Clone)]
pub(crate) struct Hooks {
    read: HashMap<CharId, ReadHook>,
    write: HashMap<CharId, WriteHook>,
    subscribe: HashMap<CharId, SubscribeHook>,
    authorize: Option<AuthorizeHook>,
}

impl Access for Hooks {
    fn read(&mut self, conn: ConnId, ch: CharId) -> Option<Vec<u8>> {
        self.read.get(&ch).and_then(|f| f(conn.0))
    }

    fn write(&mut self, conn: ConnId, ch: CharId, value: &[u8]) -> Result<(), u8> {
        match self.write.get(&ch) {
            Some(f) => f(conn.0, value).map_err(|code| if (0x80..=0x9F).contains(&code) { code } else { 0x80 }),
            None => Ok(()),
        }
    }

    fn subscribed(&mut self, conn: ConnId, ch: CharId, cccd: u16) {
        if let Some(f) = self.subscribe.get(&ch) {
            f(conn.0, cccd)
        }
    }

    fn authorize(&mut self, conn: ConnId, handle: u16, write: bool) -> bool {
        self.authorize.as_ref().is_none_or(|f| f(conn.0, handle, write))
    }
}

thread_local! {
    /// Set while the server runs application hooks (with the host locked).
    static IN_HOOK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the hook guard set, so hooks that call back into the server are refused
/// instead of deadlocking.
pub(crate) fn in_hooks<T>(f: impl FnOnce() -> T) -> T {
    IN_HOOK.with(|g| g.set(true));
    let r = f();
    IN_HOOK.with(|g| g.set(false));
    r
}

/// The server state a host carries once [`Host::gatt_server`] installed it.
pub(crate) struct GattState {
    pub(crate) server: gattling_proto::gatt::Server,
    pub(crate) hooks: Hooks,
    pub(crate) epoch: std::time::Instant,
    pub(crate) scratch: Vec<u8>,
}

impl GattState {
    pub(crate) fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
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

impl Host {
    /// Installs (once) and returns this host's GATT server, with the GAP service (Device Name
    /// `device_name`, Appearance) and the GATT service (Service Changed, Client Supported
    /// Features, Database Hash) (Core Vol 3 Part G §7).
    pub fn gatt_server(&self, device_name: &str, appearance: u16) -> GattServer {
        self.with_gatt_install(|| {
            let mut db = Database::new();
            for s in builtin_services(device_name, appearance) {
                // The built-ins fit an empty database.
                let _ = db.add_service(s);
            }
            GattState {
                server: gattling_proto::gatt::Server::new(db, ServerConfig::default()),
                hooks: Hooks::default(),
                epoch: std::time::Instant::now(),
                scratch: Vec::with_capacity(600),
            }
        });
        GattServer { host: self.clone() }
    }
}

impl GattServer {
    fn with<T>(&self, f: impl FnOnce(&mut GattState) -> T) -> Option<T> {
        if IN_HOOK.with(std::cell::Cell::get) {
            // The host is locked while a hook runs; calling back in would deadlock.
            tracing::warn!("GATT server called from inside a read/write/subscribe callback: ignored");
            return None;
        }
        self.host.with_gatt(f)
    }

    /// Adds a service; clients that enabled Service Changed indications are told.
    pub fn add_service(&self, def: ServiceDef) -> Result<Service, Error> {
        let result = self
            .with(|g| {
                let now = g.now();
                let (h, indications) = g.server.add_service(def, now)?;
                let end = g.server.db().attribute(h).map(|a| a.group_end).unwrap_or(h);
                let chars: Vec<(CharId, Uuid)> = g
                    .server
                    .db()
                    .characteristics()
                    .iter()
                    .filter(|c| c.value_handle > h && c.value_handle <= end)
                    .map(|c| (CharId(c.value_handle), c.uuid))
                    .collect();
                Ok::<_, gattling_proto::gatt::DbError>((h, end, chars, indications))
            })
            .ok_or_else(|| Error::InvalidArgument("no GATT server on this host".into()))?;
        let (handle, end_handle, chars, indications) = result.map_err(|e| Error::InvalidArgument(e.to_string()))?;
        self.host.send_att_many(indications);
        let characteristics =
            chars.into_iter().map(|(id, uuid)| Characteristic { server: self.clone(), id, uuid }).collect();
        Ok(Service { handle, end_handle, characteristics })
    }

    /// Removes a service; clients that enabled Service Changed indications are told.
    pub fn remove_service(&self, service: &Service) -> Result<(), Error> {
        let r = self
            .with(|g| {
                let now = g.now();
                g.server.remove_service(service.handle, now)
            })
            .ok_or_else(|| Error::InvalidArgument("no GATT server on this host".into()))?;
        let indications = r.map_err(|e| Error::InvalidArgument(e.to_string()))?;
        self.host.send_att_many(indications);
        Ok(())
    }

    /// The first characteristic with this UUID.
    pub fn characteristic(&self, uuid: impl Into<Uuid>) -> Option<Characteristic> {
        let uuid = uuid.into();
        let id = self.with(|g| g.server.db().find_characteristic(uuid)).flatten()?;
        Some(Characteristic { server: self.clone(), id, uuid })
    }

    /// The Database Hash (Core Vol 3 Part G §7.3), least significant octet first.
    pub fn database_hash(&self) -> [u8; 16] {
        self.with(|g| g.server.db().compute_hash()).unwrap_or_default()
    }

    /// Sets an authorization hook for attributes with an AUTHORIZED permission:
    /// `f(connection, handle, is_write)`.
    pub fn on_authorize(&self, f: impl Fn(ConnHandle, u16, bool) -> bool + Send + Sync + 'static) {
        self.with(|g| g.hooks.authorize = Some(Arc::new(f)));
    }

    /// Notifies several characteristics to `conn` at once: one Multiple Handle Value
    /// Notification if the client declared support for it, else one notification each
    /// (Core Vol 3 Part F §3.4.7.4). Only characteristics `conn` subscribed to are sent.
    pub fn notify_multiple(&self, conn: ConnHandle, items: &[(&Characteristic, &[u8])]) {
        let pdus = self
            .with(|g| {
                let list: Vec<(CharId, &[u8])> = items.iter().map(|(c, v)| (c.id, *v)).collect();
                g.server.notify_multiple(ConnId(conn), &list)
            })
            .unwrap_or_default();
        self.host.send_att_many(pdus.into_iter().map(|p| (ConnId(conn), p)).collect());
    }

    /// The negotiated ATT_MTU of a connection.
    pub fn mtu(&self, conn: ConnHandle) -> u16 {
        self.with(|g| g.server.mtu(ConnId(conn))).unwrap_or(23)
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
            .with(|g| g.server.db().characteristic(self.id).map(|c| c.value.clone()))
            .flatten()
            .unwrap_or_default()
    }

    /// Stores a value and notifies or indicates every client subscribed to it (Pycom `value(v)`,
    /// but only to subscribed clients, as the CCCD says).
    pub fn set_value(&self, value: &[u8]) {
        let out = self
            .server
            .with(|g| {
                let now = g.now();
                g.server.set_value(self.id, value, now)
            })
            .unwrap_or_default();
        self.server.host.send_att_many(out);
    }

    /// Returns the accumulated event bits (0x08 read, 0x10 write, 0x80 subscribe) and clears them.
    pub fn events(&self) -> u16 {
        self.server
            .with(|g| g.server.db_mut().characteristic_mut(self.id).map(|c| std::mem::take(&mut c.events)))
            .flatten()
            .unwrap_or(0)
    }

    /// The CCCD value `conn` wrote (bit 0 notify, bit 1 indicate).
    pub fn cccd(&self, conn: ConnHandle) -> u16 {
        self.server.with(|g| g.server.cccd(ConnId(conn), self.id)).unwrap_or(0)
    }

    /// Read callback: `Some(value)` answers with that value (the stored one is unchanged).
    pub fn on_read(&self, f: impl Fn(ConnHandle) -> Option<Vec<u8>> + Send + Sync + 'static) {
        self.server.with(|g| g.hooks.read.insert(self.id, Arc::new(f)));
    }

    /// Write callback: sees the new value; `Err(code)` rejects it with application error
    /// `code` (0x80-0x9F; other codes become 0x80).
    pub fn on_write(&self, f: impl Fn(ConnHandle, &[u8]) -> Result<(), u8> + Send + Sync + 'static) {
        self.server.with(|g| g.hooks.write.insert(self.id, Arc::new(f)));
    }

    /// Subscribe callback: called with the new CCCD value.
    pub fn on_subscribe(&self, f: impl Fn(ConnHandle, u16) + Send + Sync + 'static) {
        self.server.with(|g| g.hooks.subscribe.insert(self.id, Arc::new(f)));
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
