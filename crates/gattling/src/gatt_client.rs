//! The GATT client on a connection: every procedure of Core Vol 3 Part G §4 as async calls, at
//! handle level (what the AT interface needs) and as an object model like Pycom's
//! `GATTCConnection` -> `GATTCService` -> `GATTCCharacteristic`.
//!
//! One request is outstanding per bearer (Core Vol 3 Part F §3.3.2): procedures from many tasks
//! queue and run one at a time. The host's driver routes the link's responses to the waiting
//! call and its notifications and indications to the subscribers, so values arriving during a
//! procedure are never lost. A request unanswered for 30 s fails with a timeout and closes the
//! bearer (the link is disconnected, §3.3.3); a disconnect fails every pending call with its
//! reason.

use crate::connection::Connection;
use crate::error::Error;
use crate::security::SecurityLevel;
use gattling_proto::att::{opcode, ErrorCode};
use gattling_proto::gatt::client::{
    CharacteristicInfo, DescriptorInfo, DiscoverCharacteristics, DiscoverDescriptors, DiscoverServices, ExchangeMtu,
    FindIncludedServices, IncludeInfo, Procedure, Read, ReadByUuid, ReadMultiple, ServiceInfo, Step, Write, WriteLong,
};
use gattling_proto::gatt::server::{CCCD_INDICATE, CCCD_NOTIFY, FEATURE_MULTIPLE_NOTIFICATIONS};
use gattling_proto::gatt::uuids;
use gattling_proto::Uuid;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

pub use gattling_proto::att::bearer::TRANSACTION_TIMEOUT_US;

/// Pycom's event value for a notification.
pub const CHAR_NOTIFY_EVENT: u8 = 0x20;
/// The event value Pycom passes for an indication.
pub const CHAR_INDICATE_EVENT: u8 = 0x40;

type Callback = Arc<dyn Fn(u8, &[u8]) + Send + Sync>;
type AnyCallback = Arc<dyn Fn(ValueEvent) + Send + Sync>;
/// Values queued for one reader: the bytes of every value back to back in one ring buffer, so
/// a steady stream of notifications is queued and taken without allocating.
#[derive(Default)]
pub(crate) struct ValueQueue {
    state: Mutex<QueueState>,
    ready: tokio::sync::Notify,
}

#[derive(Default)]
struct QueueState {
    bytes: std::collections::VecDeque<u8>,
    /// (handle, event, length) of each queued value.
    items: std::collections::VecDeque<(u16, u8, usize)>,
    closed: bool,
}

/// Values one subscriber may have unread; later ones are dropped until it reads, so a peer
/// flooding notifications cannot grow the queue without bound.
pub(crate) const VALUE_QUEUE: usize = 512;

impl ValueQueue {
    fn push(&self, handle: u16, event: u8, value: &[u8]) {
        let mut st = lock(&self.state);
        if st.items.len() >= VALUE_QUEUE {
            tracing::debug!(handle, "subscriber {VALUE_QUEUE} values behind; value dropped");
            return;
        }
        st.bytes.extend(value);
        st.items.push_back((handle, event, value.len()));
        drop(st);
        self.ready.notify_one();
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.ready.notify_one();
    }

    /// The next value into `buf` (replacing its contents): its (handle, event), or `None` once
    /// the queue is closed and empty.
    async fn pop_into(&self, buf: &mut Vec<u8>) -> Option<(u16, u8)> {
        loop {
            {
                let mut st = lock(&self.state);
                if let Some((handle, event, len)) = st.items.pop_front() {
                    buf.clear();
                    let len = len.min(st.bytes.len());
                    buf.extend(st.bytes.drain(..len));
                    return Some((handle, event));
                }
                if st.closed {
                    return None;
                }
            }
            // A notify_one sent since the check is kept as a permit: no wake-up is lost.
            self.ready.notified().await;
        }
    }
}

/// Where a subscription's values go; the reader holds the other reference.
type ValueSender = Arc<ValueQueue>;

/// One notification or indication as the catch-all stream reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueEvent {
    /// The characteristic's value handle.
    pub handle: u16,
    /// [`CHAR_NOTIFY_EVENT`] or [`CHAR_INDICATE_EVENT`].
    pub event: u8,
    /// The value.
    pub value: Vec<u8>,
}

/// The GATT client side of one link, shared by the driver (which delivers answers and values
/// under the host lock, without running application code) and every [`GattClient`] clone.
#[derive(Default)]
pub(crate) struct ClientLink {
    /// The outstanding request's answer, or the reason there will be none.
    exchange: Mutex<Exchange>,
    /// Subscribers per value handle.
    streams: Mutex<HashMap<u16, Vec<ValueSender>>>,
    /// Subscribers to every value, whatever enabled it.
    all: Mutex<Vec<ValueSender>>,
    /// Callbacks per value handle, run on the link's application task.
    callbacks: Mutex<HashMap<u16, Vec<Callback>>>,
    /// Callbacks for every value.
    any_callbacks: Mutex<Vec<AnyCallback>>,
    /// Serializes procedures: one request outstanding per bearer (Core Vol 3 Part F §3.3.2).
    procedure: tokio::sync::Mutex<()>,
    /// Do not secure the link and retry when the server asks for more security.
    no_secure_on_error: std::sync::atomic::AtomicBool,
}

/// The room an answer buffer keeps between requests; a longer response's room is given back
/// at the next response that fits in this.
const KEPT_ANSWER: usize = 32;

/// The one request a link's client has outstanding (Core Vol 3 Part F §3.3.2) and its answer:
/// a slot reused from request to request, so a request/response allocates nothing here.
#[derive(Default)]
struct Exchange {
    /// A request was sent and neither its answer nor the link's end has come yet.
    outstanding: bool,
    /// `answer` holds the response to the last request, not yet taken.
    answered: bool,
    /// The response's bytes (the buffer keeps its room for the next one).
    answer: Vec<u8>,
    /// Why the outstanding request will have no answer (the transaction timed out, the link
    /// ended), for the call that sent it.
    unanswered: Option<Error>,
    /// The call waiting for the answer.
    waker: Option<Waker>,
    /// Set once the link is gone: the error every later call fails with.
    failed: Option<Error>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Splits a Handle Value Notification / Indication / Multiple Handle Value Notification into
/// (handle, event, value) items (Core Vol 3 Part F §3.4.7).
fn values(pdu: &[u8], mut f: impl FnMut(u16, u8, &[u8])) {
    match pdu {
        [opcode::HANDLE_VALUE_NTF, a, b, value @ ..] => f(u16::from_le_bytes([*a, *b]), CHAR_NOTIFY_EVENT, value),
        [opcode::HANDLE_VALUE_IND, a, b, value @ ..] => f(u16::from_le_bytes([*a, *b]), CHAR_INDICATE_EVENT, value),
        [opcode::MULTIPLE_HANDLE_VALUE_NTF, ..] => {
            if let Ok(gattling_proto::att::AttPdu::MultipleHandleValueNtf { data }) =
                gattling_proto::att::AttPdu::decode(pdu)
            {
                for (handle, _len, value) in data.iter() {
                    f(handle, CHAR_NOTIFY_EVENT, value);
                }
            }
        }
        _ => {}
    }
}

impl ClientLink {
    /// The answer to the outstanding request arrived (the bearer let it through: a request
    /// was outstanding, though its call may have been dropped since).
    pub(crate) fn answer(&self, pdu: &[u8]) {
        let waker = {
            let mut ex = lock(&self.exchange);
            ex.outstanding = false;
            ex.answered = true;
            ex.answer.clear();
            if pdu.len() <= KEPT_ANSWER && ex.answer.capacity() > KEPT_ANSWER {
                // A long response's room is given back at the next short one.
                ex.answer = Vec::new();
            }
            ex.answer.extend_from_slice(pdu);
            ex.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Hands a notification or indication to the streams; true when callbacks want it too.
    pub(crate) fn deliver(&self, pdu: &[u8]) -> bool {
        let mut streams = lock(&self.streams);
        let mut all = lock(&self.all);
        values(pdu, |handle, event, value| {
            // A queue only this link holds has lost its reader: forget it.
            if let Some(subs) = streams.get_mut(&handle) {
                subs.retain(|q| Arc::strong_count(q) > 1);
                for q in subs.iter() {
                    q.push(handle, event, value);
                }
            }
            all.retain(|q| Arc::strong_count(q) > 1);
            for q in all.iter() {
                q.push(handle, event, value);
            }
        });
        !lock(&self.callbacks).is_empty() || !lock(&self.any_callbacks).is_empty()
    }

    /// Runs the callbacks for a notification or indication (on the application task).
    pub(crate) fn run_callbacks(&self, pdu: &[u8]) {
        values(pdu, |handle, event, value| {
            let per_handle: Vec<Callback> = lock(&self.callbacks).get(&handle).cloned().unwrap_or_default();
            for f in per_handle {
                f(event, value);
            }
            let any: Vec<AnyCallback> = lock(&self.any_callbacks).clone();
            for f in any {
                f(ValueEvent { handle, event, value: value.to_vec() });
            }
        });
    }

    /// The link is gone: fails the outstanding request and ends every stream.
    pub(crate) fn fail(&self, error: Error) {
        let waker = {
            let mut ex = lock(&self.exchange);
            if ex.outstanding && ex.unanswered.is_none() {
                ex.unanswered = Some(error.clone());
            }
            ex.outstanding = false;
            ex.failed = Some(error);
            ex.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        for q in lock(&self.streams).drain().flat_map(|(_, subs)| subs) {
            q.close();
        }
        for q in lock(&self.all).drain(..) {
            q.close();
        }
    }

    /// Ready once no request is outstanding any more: its answer came (true) or the link
    /// ended (the error).
    fn poll_settled(&self, cx: &mut std::task::Context<'_>) -> Poll<Result<bool, Error>> {
        let mut ex = lock(&self.exchange);
        if ex.answered {
            return Poll::Ready(Ok(true));
        }
        if let Some(e) = ex.unanswered.take() {
            return Poll::Ready(Err(e));
        }
        if let Some(e) = &ex.failed {
            return Poll::Ready(Err(e.clone()));
        }
        if !ex.outstanding {
            return Poll::Ready(Ok(false));
        }
        match &mut ex.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// The error code of an Error Response that asks for more security (Insufficient
/// Authentication, Encryption or Encryption Key Size; Core Vol 3 Part F §3.4.1.1).
fn security_error(answer: &[u8]) -> Option<ErrorCode> {
    let &[opcode::ERROR_RSP, _, _, _, code] = answer else { return None };
    let code = ErrorCode(code);
    matches!(
        code,
        ErrorCode::INSUFFICIENT_AUTHENTICATION
            | ErrorCode::INSUFFICIENT_ENCRYPTION
            | ErrorCode::INSUFFICIENT_ENCRYPTION_KEY_SIZE
    )
    .then_some(code)
}

/// A GATT client on one connection. Cheap to clone.
#[derive(Clone)]
pub struct GattClient {
    conn: Connection,
    link: Arc<ClientLink>,
}

impl std::fmt::Debug for GattClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GattClient").field("handle", &self.conn.handle()).field("mtu", &self.mtu()).finish()
    }
}

/// Options for [`GattClient::new`].
#[derive(Clone, Copy, Debug)]
pub struct ClientOptions {
    /// Exchange MTU right away, offering this receive MTU (23..=517; it becomes the link's
    /// offer in both roles); `None` stays at 23 unless the peer exchanges it.
    pub mtu: Option<u16>,
}

impl Default for ClientOptions {
    /// Exchange MTU offering 517.
    fn default() -> Self {
        Self { mtu: Some(gattling_proto::att::bearer::MAX_MTU) }
    }
}

impl GattClient {
    /// Attaches the GATT client role to the connection's link (responses, notifications and
    /// indications come to it from now on) and, by default, exchanges MTU
    /// (Core Vol 3 Part G §4.3.1). A link has one client: a second `new` shares it.
    pub async fn new(conn: Connection, options: ClientOptions) -> Result<GattClient, Error> {
        let link = {
            let mut inner = conn.host().lock();
            let Some(l) = inner.links.0.get_mut(&conn.handle()) else {
                return Err(conn.end_error().unwrap_or(Error::Disconnected {
                    reason: gattling_proto::hci::Reason(gattling_proto::hci::status::UNKNOWN_CONNECTION_ID),
                }));
            };
            if let Some(mtu) = options.mtu {
                l.bearer.set_local_mtu(mtu);
            }
            l.client.get_or_insert_with(|| Arc::new(ClientLink::default())).clone()
        };
        let client = GattClient { conn, link };
        if options.mtu.is_some() {
            let offer = client.conn.host().lock().links.0.get(&client.conn.handle()).map(|l| l.bearer.local_mtu());
            client.run(ExchangeMtu(offer.unwrap_or(gattling_proto::att::bearer::MAX_MTU))).await?;
        }
        Ok(client)
    }

    /// The ATT_MTU of the link's bearer (Core Vol 3 Part F §3.4.2.2).
    pub fn mtu(&self) -> u16 {
        self.conn.att_mtu()
    }

    /// The connection this client runs on.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Disconnects (reason 0x13) and returns the reason the controller reported.
    pub async fn disconnect(&self) -> Result<gattling_proto::hci::Reason, Error> {
        self.conn.disconnect(gattling_proto::hci::status::REMOTE_USER_TERMINATED).await
    }

    /// Sends one request and waits for its answer (the caller holds the procedure lock), which
    /// is then in the link's answer slot. The bearer's 30 s transaction timeout closes the link
    /// and fails the call.
    async fn exchange(&self, pdu: &[u8]) -> Result<(), Error> {
        // A call dropped mid-request left its request outstanding: its answer (dropped here),
        // the bearer's 30 s timeout or the link's end comes first (one request at a time,
        // Core Vol 3 Part F §3.3.2).
        std::future::poll_fn(|cx| self.link.poll_settled(cx)).await?;
        {
            let mut ex = lock(&self.link.exchange);
            ex.answered = false;
            ex.outstanding = true;
        }
        if let Err(e) = self.conn.send_att(pdu) {
            lock(&self.link.exchange).outstanding = false;
            return Err(e);
        }
        match std::future::poll_fn(|cx| self.link.poll_settled(cx)).await? {
            true => Ok(()),
            // Not answered and not failed: only a send the bearer refused gets here.
            false => Err(self.conn.end_error().unwrap_or(Error::Cancelled("GATT request"))),
        }
    }

    /// Hands the answer in the slot to `p` (under the slot's lock, which `on_response` does not
    /// outlive), unless it is an Error Response asking for security and `check_security` is
    /// set: then its 5 bytes come back for the caller to act on first.
    fn take_answer<P: Procedure>(
        &self,
        p: &mut P,
        check_security: bool,
    ) -> Result<Result<Step<P::Output>, [u8; 5]>, Error> {
        let mut ex = lock(&self.link.exchange);
        ex.answered = false;
        if check_security {
            if let Ok(error_rsp) = <[u8; 5]>::try_from(ex.answer.as_slice()) {
                if security_error(&error_rsp).is_some() {
                    return Ok(Err(error_rsp));
                }
            }
        }
        Ok(Ok(p.on_response(&ex.answer)?))
    }

    /// Runs a procedure to completion, one request at a time. When the server answers a request
    /// with Insufficient Authentication, Insufficient Encryption or Insufficient Encryption Key
    /// Size, the link is secured (encrypted with the bond's key, or paired) and that request is
    /// sent once more (Core Vol 3 Part C §10.3.1.1; as BlueZ does); see
    /// [`GattClient::set_secure_on_error`].
    pub async fn run<P: Procedure>(&self, mut p: P) -> Result<P::Output, Error> {
        let _turn = match self.link.procedure.try_lock() {
            Ok(turn) => turn,
            Err(_) => self.link.procedure.lock().await,
        };
        let mut step = p.start();
        let mut retried = false;
        loop {
            match step {
                Step::Done(out) => return Ok(out),
                Step::Send(req) => {
                    self.exchange(&req).await?;
                    step = match self.take_answer(&mut p, !retried)? {
                        Ok(next) => next,
                        Err(error_rsp) => match self.security_wanted(&error_rsp) {
                            None => p.on_response(&error_rsp)?,
                            Some(level) => {
                                retried = true;
                                tracing::info!(
                                    handle = self.conn.handle(),
                                    ?level,
                                    "the server asks for security: securing the link"
                                );
                                match self.conn.secure(level).await {
                                    // The server has the last word: retry and report its answer.
                                    Ok(_) | Err(Error::InsufficientSecurity { .. }) => {}
                                    Err(e) => return Err(e),
                                }
                                self.exchange(&req).await?;
                                match self.take_answer(&mut p, false)? {
                                    Ok(next) => next,
                                    Err(error_rsp) => p.on_response(&error_rsp)?,
                                }
                            }
                        },
                    };
                }
            }
        }
    }

    /// Turns the secure-and-retry of [`GattClient::run`] on (the default while the host runs a
    /// Security Manager) or off.
    pub fn set_secure_on_error(&self, on: bool) {
        self.link.no_secure_on_error.store(!on, std::sync::atomic::Ordering::Relaxed);
    }

    /// The level to reach before retrying, when `answer` is an Error Response asking for more
    /// security (Core Vol 3 Part F §3.4.1.1, Part C §10.3.1.1).
    fn security_wanted(&self, answer: &[u8]) -> Option<SecurityLevel> {
        let code = security_error(answer)?;
        if self.link.no_secure_on_error.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        // Without a Security Manager, or without any input or output (Just Works only: no MITM
        // protection to gain, Core Vol 3 Part H §2.3.5.1), securing cannot help.
        let io = self.conn.host().lock().security.as_ref().map(|s| s.options.io_capability)?;
        let now = self.conn.security_level();
        let level = match code {
            ErrorCode::INSUFFICIENT_ENCRYPTION => SecurityLevel::Encrypted,
            // Unencrypted: encryption may be all it takes; encrypted already: a MITM-protected key.
            ErrorCode::INSUFFICIENT_AUTHENTICATION if now < SecurityLevel::Encrypted => SecurityLevel::Encrypted,
            ErrorCode::INSUFFICIENT_AUTHENTICATION => SecurityLevel::Authenticated,
            ErrorCode::INSUFFICIENT_ENCRYPTION_KEY_SIZE => SecurityLevel::SecureConnections,
            _ => return None,
        };
        let no_io = io == crate::security::IoCapability::NoInputNoOutput;
        (level > now && !(no_io && level >= SecurityLevel::Authenticated)).then_some(level)
    }

    /// Every notification and indication on this link from now on, whatever enabled it (a
    /// CCCD written by [`GattClient::subscribe`], by a raw [`GattClient::write`], or by the
    /// server's own choice). Indications are confirmed automatically. At most 512 unread
    /// values are kept; later ones are dropped until the reader catches up.
    pub fn notifications(&self) -> Notifications {
        let queue = Arc::new(ValueQueue::default());
        lock(&self.link.all).push(queue.clone());
        Notifications { queue, buf: Vec::new() }
    }

    /// Calls `handler` for every notification and indication on this link, on the link's
    /// application task (it may call any gattling API).
    pub fn on_any_notification(&self, handler: impl Fn(ValueEvent) + Send + Sync + 'static) {
        lock(&self.link.any_callbacks).push(Arc::new(handler));
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
        // The ATT_MTU matters only to Read Long (whether to continue with Read Blob).
        self.run(Read::new(handle, gattling_proto::att::bearer::DEFAULT_MTU, false)).await
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
        let _turn = self.link.procedure.lock().await;
        let mut pdu = vec![opcode::WRITE_CMD];
        pdu.extend_from_slice(&handle.to_le_bytes());
        pdu.extend_from_slice(value.get(..value.len().min(self.mtu() as usize - 3)).unwrap_or(value));
        self.conn.send_att(&pdu)
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
    /// values arrive on the returned [`Subscription`] (indications are confirmed automatically;
    /// at most 512 unread values are kept, later ones are dropped until the reader catches up).
    pub async fn subscribe(&self, ch: &CharacteristicInfo, indicate: bool) -> Result<Subscription, Error> {
        let cccd = self.cccd_of(ch).await?;
        let queue = Arc::new(ValueQueue::default());
        lock(&self.link.streams).entry(ch.value_handle).or_default().push(queue.clone());
        self.write(cccd, &(if indicate { CCCD_INDICATE } else { CCCD_NOTIFY }).to_le_bytes()).await?;
        Ok(Subscription { queue })
    }

    /// Turns notifications and indications off (CCCD 0) and ends the subscriptions.
    pub async fn unsubscribe(&self, ch: &CharacteristicInfo) -> Result<(), Error> {
        let cccd = self.cccd_of(ch).await?;
        self.write(cccd, &[0, 0]).await?;
        lock(&self.link.streams).remove(&ch.value_handle);
        lock(&self.link.callbacks).remove(&ch.value_handle);
        Ok(())
    }

    /// Calls `handler(event, value)` for each notification (event 0x20) or indication (0x40) of
    /// the characteristic, and enables notifications: Pycom's `callback(trigger=CHAR_NOTIFY_EVENT, handler)`.
    /// The handler runs on the link's application task and may call any gattling API.
    pub async fn on_notify(
        &self,
        ch: &CharacteristicInfo,
        handler: impl Fn(u8, &[u8]) + Send + Sync + 'static,
    ) -> Result<(), Error> {
        let cccd = self.cccd_of(ch).await?;
        lock(&self.link.callbacks).entry(ch.value_handle).or_default().push(Arc::new(handler));
        self.write(cccd, &CCCD_NOTIFY.to_le_bytes()).await
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
        let bits = value.first().copied().unwrap_or(0) | FEATURE_MULTIPLE_NOTIFICATIONS;
        self.write(handle, &[bits]).await?;
        Ok(true)
    }

    /// All primary services as objects (Pycom `GATTCConnection.services()`).
    pub async fn services(&self) -> Result<Vec<RemoteService>, Error> {
        Ok(self
            .discover_services()
            .await?
            .into_iter()
            .map(|info| RemoteService { client: self.clone(), info, primary: true })
            .collect())
    }
}

/// Values from one subscription, in the order they arrived.
pub struct Subscription {
    queue: Arc<ValueQueue>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next value, or `None` once the link ended or the subscription was dropped.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        self.next_event().await.map(|(_, v)| v)
    }

    /// The next value with its event (0x20 notification, 0x40 indication).
    pub async fn next_event(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut v = Vec::new();
        let (_, event) = self.queue.pop_into(&mut v).await?;
        Some((event, v))
    }

    /// The next value into `buf` (its contents replaced; no allocation once `buf` is large
    /// enough); returns the event, or `None` once the link ended.
    pub async fn next_into(&mut self, buf: &mut Vec<u8>) -> Option<u8> {
        self.queue.pop_into(buf).await.map(|(_, event)| event)
    }
}

/// Every notification and indication of a link ([`GattClient::notifications`]).
pub struct Notifications {
    queue: Arc<ValueQueue>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Notifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifications").finish_non_exhaustive()
    }
}

impl Notifications {
    /// The next value; `None` once the link ended.
    pub async fn next(&mut self) -> Option<ValueEvent> {
        let (handle, event) = self.queue.pop_into(&mut self.buf).await?;
        Some(ValueEvent { handle, event, value: self.buf.clone() })
    }

    /// The next value into `buf` (no allocation once `buf` is large enough): its (handle,
    /// event), or `None` once the link ended.
    pub async fn next_into(&mut self, buf: &mut Vec<u8>) -> Option<(u16, u8)> {
        self.queue.pop_into(buf).await
    }
}

/// A service on the server (Pycom `GATTCService`).
#[derive(Clone, Debug)]
pub struct RemoteService {
    client: GattClient,
    info: ServiceInfo,
    primary: bool,
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

    /// True for a primary service, false for a secondary one (reached through an include).
    pub fn is_primary(&self) -> bool {
        self.primary
    }

    /// Its include declarations.
    pub async fn included(&self) -> Result<Vec<IncludeInfo>, Error> {
        self.client.find_included_services(&self.info).await
    }

    /// The services it includes, as objects; each says whether it is primary (found by
    /// primary service discovery) or secondary (Core Vol 3 Part G §3.1, §4.5).
    pub async fn included_services(&self) -> Result<Vec<RemoteService>, Error> {
        let includes = self.client.find_included_services(&self.info).await?;
        if includes.is_empty() {
            return Ok(Vec::new());
        }
        let primaries = self.client.discover_services().await?;
        Ok(includes
            .into_iter()
            .map(|inc| RemoteService {
                client: self.client.clone(),
                primary: primaries.iter().any(|p| p.start == inc.start),
                info: ServiceInfo { start: inc.start, end: inc.end, uuid: inc.uuid },
            })
            .collect())
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
