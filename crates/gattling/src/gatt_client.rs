//! The GATT client on a connection: every procedure of Core Vol 3 Part G §4 as async calls, at
//! handle level (what the AT interface needs) and as an object model like Pycom's
//! `GATTCConnection` -> `GATTCService` -> `GATTCCharacteristic`.
//!
//! One request is outstanding per bearer (Core Vol 3 Part F §3.3.2): procedures from many tasks
//! queue and run one at a time. A dispatcher task owns the connection's incoming ATT PDUs, so
//! notifications arriving during a procedure are never lost. A request unanswered for 30 s fails
//! with a timeout and closes the bearer (the link is disconnected, §3.3.3); a disconnect fails
//! every pending call with its reason.

use crate::error::Error;
use crate::host::{Connection, LinkEnd};
use gattling_proto::att::opcode;
use gattling_proto::gatt::client::{
    CharacteristicInfo, DescriptorInfo, DiscoverCharacteristics, DiscoverDescriptors, DiscoverServices, ExchangeMtu,
    FindIncludedServices, IncludeInfo, Procedure, Read, ReadByUuid, ReadMultiple, ServiceInfo, Step, Write, WriteLong,
};
use gattling_proto::gatt::uuids;
use gattling_proto::hci::status;
use gattling_proto::Uuid;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The ATT transaction timeout (Core Vol 3 Part F §3.3.3).
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Pycom's event value for a notification.
pub const CHAR_NOTIFY_EVENT: u8 = 0x20;
/// The event value Pycom passes for an indication.
pub const CHAR_INDICATE_EVENT: u8 = 0x40;

type Callback = Arc<dyn Fn(u8, &[u8]) + Send + Sync>;
/// Where a subscription's (event, value) pairs go.
type ValueSender = mpsc::UnboundedSender<(u8, Vec<u8>)>;

struct Shared {
    conn: Connection,
    mtu: AtomicU16,
    /// Serializes procedures: one request outstanding per bearer.
    procedure: tokio::sync::Mutex<()>,
    /// Where the answer to the outstanding request goes.
    pending: Mutex<Option<oneshot::Sender<Vec<u8>>>>,
    /// Subscribers per value handle.
    streams: Mutex<HashMap<u16, Vec<ValueSender>>>,
    callbacks: Mutex<HashMap<u16, Vec<Callback>>>,
    /// Our receive MTU, offered in Exchange MTU.
    local_mtu: u16,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A GATT client on one connection. Cheap to clone.
#[derive(Clone)]
pub struct GattClient {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for GattClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GattClient").field("handle", &self.shared.conn.handle()).field("mtu", &self.mtu()).finish()
    }
}

/// Options for [`GattClient::new`].
#[derive(Clone, Copy, Debug)]
pub struct ClientOptions {
    /// Exchange MTU right away, offering this receive MTU (23..=517); `None` stays at 23.
    pub mtu: Option<u16>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self { mtu: Some(517) }
    }
}

impl GattClient {
    /// Takes over the connection's ATT traffic and, by default, exchanges MTU (Core Vol 3 Part G §4.3.1).
    pub async fn new(conn: Connection, options: ClientOptions) -> Result<GattClient, Error> {
        let local_mtu = options.mtu.unwrap_or(23).clamp(23, 517);
        let shared = Arc::new(Shared {
            conn,
            mtu: AtomicU16::new(23),
            procedure: tokio::sync::Mutex::new(()),
            pending: Mutex::new(None),
            streams: Mutex::new(HashMap::new()),
            callbacks: Mutex::new(HashMap::new()),
            local_mtu,
        });
        tokio::spawn(dispatch(Arc::downgrade(&shared)));
        let client = GattClient { shared };
        if options.mtu.is_some() {
            let server = client.run(ExchangeMtu(local_mtu)).await?;
            // Never above what both sides allow (Core Vol 3 Part F §3.4.2.2).
            client.shared.mtu.store(server.max(23).min(local_mtu), Ordering::SeqCst);
        }
        Ok(client)
    }

    /// The ATT_MTU in use.
    pub fn mtu(&self) -> u16 {
        self.shared.mtu.load(Ordering::SeqCst)
    }

    /// The connection this client runs on.
    pub fn connection(&self) -> &Connection {
        &self.shared.conn
    }

    /// Disconnects (reason 0x13) and returns the reason the controller reported.
    pub async fn disconnect(&self) -> Result<u8, Error> {
        self.shared.conn.disconnect(status::REMOTE_USER_TERMINATED).await
    }

    fn link_error(&self) -> Error {
        match self.shared.conn.end() {
            Some(LinkEnd::Disconnected(reason)) => Error::Disconnected { reason },
            Some(LinkEnd::TransportClosed) => Error::TransportClosed("the controller went away".into()),
            None => Error::Disconnected { reason: status::CONNECTION_TIMEOUT },
        }
    }

    /// Sends one request and waits for its answer (the caller holds the procedure lock).
    async fn exchange(&self, pdu: Vec<u8>) -> Result<Vec<u8>, Error> {
        let (tx, rx) = oneshot::channel();
        *lock(&self.shared.pending) = Some(tx);
        self.shared.conn.send_att(&pdu)?;
        match tokio::time::timeout(TRANSACTION_TIMEOUT, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(self.link_error()),
            Err(_) => {
                // No more ATT on this bearer: close it (Core Vol 3 Part F §3.3.3).
                let _ = self.shared.conn.disconnect(status::REMOTE_USER_TERMINATED).await;
                Err(Error::Timeout("ATT transaction (30 s); the link was closed"))
            }
        }
    }

    /// Runs a procedure to completion, one request at a time.
    pub async fn run<P: Procedure>(&self, mut p: P) -> Result<P::Output, Error> {
        let _turn = self.shared.procedure.lock().await;
        let mut step = p.start();
        loop {
            match step {
                Step::Done(out) => return Ok(out),
                Step::Send(req) => {
                    let answer = self.exchange(req).await?;
                    step = p.on_response(&answer)?;
                }
            }
        }
    }

    /// Discover All Primary Services (§4.4.1).
    pub async fn discover_services(&self) -> Result<Vec<ServiceInfo>, Error> {
        self.run(DiscoverServices::all()).await
    }

    /// Discover Primary Service by UUID (§4.4.2).
    pub async fn discover_services_by_uuid(&self, uuid: Uuid) -> Result<Vec<ServiceInfo>, Error> {
        self.run(DiscoverServices::by_uuid(uuid)).await
    }

    /// Find Included Services (§4.5.1) of a service.
    pub async fn find_included_services(&self, service: &ServiceInfo) -> Result<Vec<IncludeInfo>, Error> {
        self.run(FindIncludedServices::new(service.start, service.end)).await
    }

    /// Discover All Characteristics of a Service (§4.6.1), or by UUID (§4.6.2).
    pub async fn discover_characteristics(
        &self,
        start: u16,
        end: u16,
        uuid: Option<Uuid>,
    ) -> Result<Vec<CharacteristicInfo>, Error> {
        self.run(DiscoverCharacteristics::new(start, end, uuid)).await
    }

    /// Discover All Characteristic Descriptors (§4.7.1) of a characteristic.
    pub async fn discover_descriptors(&self, ch: &CharacteristicInfo) -> Result<Vec<DescriptorInfo>, Error> {
        self.run(DiscoverDescriptors::new(ch.value_handle.saturating_add(1), ch.end_handle)).await
    }

    /// Read (§4.8.1): one Read Request.
    pub async fn read(&self, handle: u16) -> Result<Vec<u8>, Error> {
        self.run(Read::new(handle, self.mtu(), false)).await
    }

    /// Read Long (§4.8.3): Read, then Read Blob until the value is complete.
    pub async fn read_long(&self, handle: u16) -> Result<Vec<u8>, Error> {
        self.run(Read::new(handle, self.mtu(), true)).await
    }

    /// Read Using Characteristic UUID (§4.8.2): (handle, value) pairs.
    pub async fn read_by_uuid(&self, start: u16, end: u16, uuid: Uuid) -> Result<Vec<(u16, Vec<u8>)>, Error> {
        self.run(ReadByUuid::new(start, end, uuid)).await
    }

    /// Read Multiple (§4.8.4): the values concatenated.
    pub async fn read_multiple(&self, handles: &[u16]) -> Result<Vec<u8>, Error> {
        Ok(self.run(ReadMultiple::new(handles, false)).await?.concat())
    }

    /// Read Multiple Variable (§4.8.5): one value per handle.
    pub async fn read_multiple_variable(&self, handles: &[u16]) -> Result<Vec<Vec<u8>>, Error> {
        self.run(ReadMultiple::new(handles, true)).await
    }

    /// Write Without Response (§4.9.1).
    pub async fn write_without_response(&self, handle: u16, value: &[u8]) -> Result<(), Error> {
        let _turn = self.shared.procedure.lock().await;
        let mut pdu = vec![opcode::WRITE_CMD];
        pdu.extend_from_slice(&handle.to_le_bytes());
        pdu.extend_from_slice(value.get(..value.len().min(self.mtu() as usize - 3)).unwrap_or(value));
        self.shared.conn.send_att(&pdu)
    }

    /// Write (§4.9.3); values longer than ATT_MTU-3 use Write Long.
    pub async fn write(&self, handle: u16, value: &[u8]) -> Result<(), Error> {
        if value.len() > self.mtu() as usize - 3 {
            return self.write_long(handle, value).await;
        }
        self.run(Write::new(handle, value)).await
    }

    /// Write Long (§4.9.4): Prepare Write chunks, then Execute Write.
    pub async fn write_long(&self, handle: u16, value: &[u8]) -> Result<(), Error> {
        self.run(WriteLong::new(&[(handle, value)], self.mtu())).await
    }

    /// Reliable Writes (§4.9.5): every prepared chunk's echo is checked; a mismatch cancels the
    /// queue and fails with [`gattling_proto::gatt::client::ClientError::EchoMismatch`].
    pub async fn reliable_write(&self, writes: &[(u16, &[u8])]) -> Result<(), Error> {
        self.run(WriteLong::new(writes, self.mtu())).await
    }

    /// Subscribes to a characteristic's notifications (or indications) by writing its CCCD;
    /// values arrive on the returned [`Subscription`] (indications are confirmed automatically).
    pub async fn subscribe(&self, ch: &CharacteristicInfo, indicate: bool) -> Result<Subscription, Error> {
        let cccd = self.cccd_of(ch).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.shared.streams).entry(ch.value_handle).or_default().push(tx);
        self.write(cccd, &(if indicate { 2u16 } else { 1u16 }).to_le_bytes()).await?;
        Ok(Subscription { rx })
    }

    /// Turns notifications and indications off (CCCD 0) and ends the subscriptions.
    pub async fn unsubscribe(&self, ch: &CharacteristicInfo) -> Result<(), Error> {
        let cccd = self.cccd_of(ch).await?;
        self.write(cccd, &[0, 0]).await?;
        lock(&self.shared.streams).remove(&ch.value_handle);
        lock(&self.shared.callbacks).remove(&ch.value_handle);
        Ok(())
    }

    /// Calls `handler(event, value)` for each notification (event 0x20) or indication (0x40) of
    /// the characteristic, and enables notifications: Pycom's `callback(trigger=CHAR_NOTIFY_EVENT, handler)`.
    pub async fn on_notify(
        &self,
        ch: &CharacteristicInfo,
        handler: impl Fn(u8, &[u8]) + Send + Sync + 'static,
    ) -> Result<(), Error> {
        let cccd = self.cccd_of(ch).await?;
        lock(&self.shared.callbacks).entry(ch.value_handle).or_default().push(Arc::new(handler));
        self.write(cccd, &[1, 0]).await
    }

    async fn cccd_of(&self, ch: &CharacteristicInfo) -> Result<u16, Error> {
        let descriptors = self.discover_descriptors(ch).await?;
        descriptors.iter().find(|d| d.uuid.as_u16() == Some(uuids::CCCD)).map(|d| d.handle).ok_or_else(|| {
            Error::InvalidArgument(format!("characteristic {} at {:#06x} has no CCCD", ch.uuid, ch.value_handle))
        })
    }

    /// Declares support for Multiple Handle Value Notifications by setting bit 2 of the server's
    /// Client Supported Features (Core Vol 3 Part G §7.2); such notifications are then split back
    /// into one value per characteristic for subscribers. Returns false if the server has no
    /// Client Supported Features characteristic.
    pub async fn enable_multiple_notifications(&self) -> Result<bool, Error> {
        let found = match self.read_by_uuid(1, 0xFFFF, Uuid::U16(uuids::CLIENT_SUPPORTED_FEATURES)).await {
            Ok(f) => f,
            Err(Error::Gatt(gattling_proto::gatt::client::ClientError::Att { .. })) => return Ok(false),
            Err(e) => return Err(e),
        };
        let Some((handle, value)) = found.into_iter().next() else { return Ok(false) };
        let bits = value.first().copied().unwrap_or(0) | 0x04;
        self.write(handle, &[bits]).await?;
        Ok(true)
    }

    /// All primary services as objects (Pycom `GATTCConnection.services()`).
    pub async fn services(&self) -> Result<Vec<RemoteService>, Error> {
        Ok(self
            .discover_services()
            .await?
            .into_iter()
            .map(|info| RemoteService { client: self.clone(), info })
            .collect())
    }
}

/// Values from one subscription, in the order they arrived.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<(u8, Vec<u8>)>,
}

impl Subscription {
    /// The next value, or `None` once the link ended or the subscription was dropped.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        self.rx.recv().await.map(|(_, v)| v)
    }

    /// The next value with its event (0x20 notification, 0x40 indication).
    pub async fn next_event(&mut self) -> Option<(u8, Vec<u8>)> {
        self.rx.recv().await
    }
}

/// A service on the server (Pycom `GATTCService`).
#[derive(Clone, Debug)]
pub struct RemoteService {
    client: GattClient,
    info: ServiceInfo,
}

impl RemoteService {
    /// The service's UUID.
    pub fn uuid(&self) -> Uuid {
        self.info.uuid
    }

    /// Its handle range.
    pub fn info(&self) -> &ServiceInfo {
        &self.info
    }

    /// Always true: services come from primary service discovery.
    pub fn is_primary(&self) -> bool {
        true
    }

    /// Its included services.
    pub async fn included(&self) -> Result<Vec<IncludeInfo>, Error> {
        self.client.find_included_services(&self.info).await
    }

    /// Its characteristics (Pycom `characteristics()`).
    pub async fn characteristics(&self) -> Result<Vec<RemoteCharacteristic>, Error> {
        let chars = self.client.discover_characteristics(self.info.start, self.info.end, None).await?;
        Ok(chars.into_iter().map(|info| RemoteCharacteristic { client: self.client.clone(), info }).collect())
    }
}

/// A characteristic on the server (Pycom `GATTCCharacteristic`).
#[derive(Clone, Debug)]
pub struct RemoteCharacteristic {
    client: GattClient,
    info: CharacteristicInfo,
}

impl RemoteCharacteristic {
    /// Its UUID.
    pub fn uuid(&self) -> Uuid {
        self.info.uuid
    }

    /// Its property bits.
    pub fn properties(&self) -> u8 {
        self.info.properties
    }

    /// Its handles.
    pub fn info(&self) -> &CharacteristicInfo {
        &self.info
    }

    /// Reads the whole value (Read Long when it fills the MTU).
    pub async fn read(&self) -> Result<Vec<u8>, Error> {
        self.client.read_long(self.info.value_handle).await
    }

    /// Writes with a response (Write Long when needed).
    pub async fn write(&self, value: &[u8]) -> Result<(), Error> {
        self.client.write(self.info.value_handle, value).await
    }

    /// Its descriptors.
    pub async fn descriptors(&self) -> Result<Vec<DescriptorInfo>, Error> {
        self.client.discover_descriptors(&self.info).await
    }

    /// Subscribes to notifications (or indications).
    pub async fn subscribe(&self, indicate: bool) -> Result<Subscription, Error> {
        self.client.subscribe(&self.info, indicate).await
    }

    /// Pycom's `callback(trigger=CHAR_NOTIFY_EVENT, handler)`: `handler(event, value)`.
    pub async fn callback(&self, handler: impl Fn(u8, &[u8]) + Send + Sync + 'static) -> Result<(), Error> {
        self.client.on_notify(&self.info, handler).await
    }
}

fn deliver(shared: &Shared, handle: u16, event: u8, value: &[u8]) {
    if let Some(subs) = lock(&shared.streams).get_mut(&handle) {
        subs.retain(|tx| tx.send((event, value.to_vec())).is_ok());
    }
    let callbacks: Vec<Callback> = lock(&shared.callbacks).get(&handle).cloned().unwrap_or_default();
    for f in callbacks {
        f(event, value);
    }
}

/// Routes the connection's incoming ATT PDUs: answers to the outstanding request, notifications
/// and indications to subscribers, and a reply to requests when no GATT server is installed.
async fn dispatch(weak: std::sync::Weak<Shared>) {
    loop {
        let Some(shared) = weak.upgrade() else { return };
        // The dispatcher lives as long as the link: it holds the client while it waits.
        let pdu = {
            match shared.conn.recv_att().await {
                Ok(p) => p,
                Err(_) => {
                    // Link gone: fail the outstanding request and end every subscription.
                    lock(&shared.pending).take();
                    lock(&shared.streams).clear();
                    return;
                }
            }
        };
        let Some(&op) = pdu.first() else { continue };
        match op {
            opcode::HANDLE_VALUE_NTF | opcode::HANDLE_VALUE_IND => {
                if let [_, a, b, value @ ..] = pdu.as_slice() {
                    let event = if op == opcode::HANDLE_VALUE_NTF { CHAR_NOTIFY_EVENT } else { CHAR_INDICATE_EVENT };
                    deliver(&shared, u16::from_le_bytes([*a, *b]), event, value);
                }
                if op == opcode::HANDLE_VALUE_IND {
                    let _ = shared.conn.send_att(&[opcode::HANDLE_VALUE_CFM]);
                }
            }
            opcode::MULTIPLE_HANDLE_VALUE_NTF => {
                if let Ok(gattling_proto::att::AttPdu::MultipleHandleValueNtf { data }) =
                    gattling_proto::att::AttPdu::decode(&pdu)
                {
                    for (handle, _len, value) in data.iter() {
                        deliver(&shared, handle, CHAR_NOTIFY_EVENT, value);
                    }
                }
            }
            opcode::EXCHANGE_MTU_REQ => {
                // The peer's client asks; we have no GATT server here but the MTU is the bearer's.
                let theirs = pdu.get(1..3).map(|b| u16::from_le_bytes([b[0], b[1]])).unwrap_or(23);
                let ours = shared.local_mtu;
                shared.mtu.store(theirs.max(23).min(ours), Ordering::SeqCst);
                let mut rsp = vec![opcode::EXCHANGE_MTU_RSP];
                rsp.extend_from_slice(&ours.to_le_bytes());
                let _ = shared.conn.send_att(&rsp);
            }
            op if opcode::is_request(op) => {
                // No GATT server on this host: every other request is unsupported.
                let _ = shared.conn.send_att(&[opcode::ERROR_RSP, op, 0, 0, 0x06]);
            }
            op if opcode::is_command(op) || op == opcode::HANDLE_VALUE_CFM => {}
            _ => {
                if let Some(tx) = lock(&shared.pending).take() {
                    let _ = tx.send(pdu);
                }
            }
        }
    }
}
