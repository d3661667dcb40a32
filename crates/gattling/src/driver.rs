//! The host driver: the reader, writer and timer tasks around the sans-IO core, and the state
//! they share behind one mutex that is never held across an await or while application code
//! runs.
//!
//! Every ATT PDU goes through its link's [`Bearer`]: the bearer routes it to the GATT server,
//! the GATT client or the raw [`crate::Connection`] queue, and owns the ATT_MTU, the outstanding
//! transactions and their 30 s timeout. Application callbacks never run here: they are queued
//! to the link's application task ([`crate::gatt::AppJob`]).

use crate::error::Error;
use crate::gatt::{AppJob, GattState, Recorder};
use crate::gatt_client::ClientLink;
use crate::host::{AdvertisingOptions, LinkEnd, LinkEvent, Notification};
use gattling_proto::att::bearer::{Bearer, Route, Timeout};
use gattling_proto::att::{opcode, ErrorCode};
use gattling_proto::gap::Address;
use gattling_proto::gatt::server::{Bearers, Outcome};
use gattling_proto::gatt::ConnId;
use gattling_proto::hci::command::{Command, Opcode};
use gattling_proto::hci::{status, ConnHandle};
use gattling_proto::host::{self as core, AdvReport, CommandId, ConnectionInfo, HostEvent, Role};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, mpsc, oneshot, watch, Notify};

/// Where a command's return parameters (or its failure) are delivered.
pub(crate) type CommandWaiter = oneshot::Sender<Result<Vec<u8>, Error>>;

/// One link's state in the driver.
pub(crate) struct Link {
    pub(crate) info: ConnectionInfo,
    pub(crate) bearer: Bearer,
    /// Raw ATT PDUs for [`crate::Connection::recv_att`]: server-role PDUs when no GATT server is
    /// installed, client-role PDUs when no GATT client is attached. Bounded ([`RAW_QUEUE`]): a
    /// peer flooding a link nobody reads cannot grow it without bound.
    /// The queue is made on first use ([`Link::raw_sender`]): most links never need one.
    pub(crate) raw_tx: Option<mpsc::Sender<Vec<u8>>>,
    /// The receiving end, shared with every [`crate::Connection`] on this link.
    pub(crate) raw: Arc<RawQueue>,
    /// The GATT client attached to this link, if any.
    pub(crate) client: Option<Arc<ClientLink>>,
    pub(crate) end_tx: watch::Sender<Option<LinkEnd>>,
    pub(crate) events: broadcast::Sender<LinkEvent>,
    /// The link's application task: callbacks run there, in order, outside the lock. Started
    /// with the link's first callback: links without callbacks cost no task and no channel.
    pub(crate) app: AppTask,
    /// Maximum (TX, RX) payload octets, from LE Data Length Change.
    pub(crate) data_length: (u16, u16),
    /// (TX, RX) PHY codes, from LE PHY Update Complete.
    pub(crate) phy: (u8, u8),
    /// The link's Security Manager and its waiters.
    pub(crate) security: crate::security::LinkSecurityManager,
}

/// Raw ATT PDUs a link queues for [`crate::Connection::recv_att`]; later ones are dropped
/// until the application reads.
pub(crate) const RAW_QUEUE: usize = 256;

/// Callbacks (values written, subscriptions, confirmations, notifications) a link's application
/// task may have waiting; later ones are dropped while a slow or blocked callback holds it up.
/// Parked requests are never dropped: their answers are due (one per bearer at a time).
pub(crate) const APP_QUEUE: usize = 1024;

/// The receiving end of a link's raw ATT queue, set when the queue is made.
#[derive(Default)]
pub(crate) struct RawQueue(pub(crate) std::sync::OnceLock<tokio::sync::Mutex<mpsc::Receiver<Vec<u8>>>>);

/// A link's application task, started on first use.
pub(crate) enum AppTask {
    /// No callback yet: what the task needs to start.
    Idle(Weak<Shared>),
    /// Running: its queue, and the jobs sent to it and not yet taken (bounded by [`APP_QUEUE`]).
    Running(mpsc::UnboundedSender<AppJob>, Arc<AtomicUsize>),
}

impl Link {
    /// The raw ATT queue's sending end, making the queue on first use.
    pub(crate) fn raw_sender(&mut self) -> &mpsc::Sender<Vec<u8>> {
        let raw = &self.raw;
        self.raw_tx.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel(RAW_QUEUE);
            let _ = raw.0.set(tokio::sync::Mutex::new(rx));
            tx
        })
    }

    /// Sends a job to the link's application task, starting it on first use; false when the
    /// task is [`APP_QUEUE`] callbacks behind and the job is not a parked request.
    fn send_job(&mut self, job: AppJob) -> bool {
        if let AppTask::Idle(shared) = &self.app {
            let (tx, rx) = mpsc::unbounded_channel();
            let queued = Arc::new(AtomicUsize::new(0));
            tokio::spawn(crate::gatt::app_loop(shared.clone(), self.info.handle, rx, queued.clone()));
            self.app = AppTask::Running(tx, queued);
        }
        let AppTask::Running(tx, queued) = &self.app else { return false };
        let parked = matches!(job, AppJob::Deferred(_));
        if !parked && queued.load(Ordering::Relaxed) >= APP_QUEUE {
            return false;
        }
        queued.fetch_add(1, Ordering::Relaxed);
        let _ = tx.send(job);
        true
    }
}

/// Queues a raw ATT PDU for the application, dropping it when the queue is full.
fn queue_raw(link: &mut Link, handle: ConnHandle, pdu: &[u8]) {
    if let Err(mpsc::error::TrySendError::Full(_)) = link.raw_sender().try_send(pdu.to_vec()) {
        tracing::debug!(handle, "raw ATT queue full ({RAW_QUEUE} PDUs unread); PDU dropped");
    }
}

/// The links by handle; also how the GATT server finds bearers.
#[derive(Default)]
pub(crate) struct Links(pub(crate) HandleMap<Link>);

impl Links {
    /// Gives back the map's room once most links are gone (a quarter or less of it in use),
    /// keeping twice what is left, so churn does not reallocate on every link.
    fn shrink(&mut self) {
        let (len, cap) = (self.0.len(), self.0.capacity());
        if cap > 8 && len * 4 <= cap {
            self.0.shrink_to(len * 2);
        }
    }
}

impl Bearers for Links {
    fn bearer(&mut self, conn: ConnId) -> Option<&mut Bearer> {
        self.0.get_mut(&conn.0).map(|l| &mut l.bearer)
    }
}

pub(crate) struct Inner {
    pub(crate) core: core::Host,
    /// Waiters for command completions, with the command's name for error messages.
    pub(crate) commands: HashMap<CommandId, (CommandWaiter, &'static str)>,
    pub(crate) links: Links,
    pub(crate) connecting: Option<oneshot::Sender<Result<ConnectionInfo, Error>>>,
    /// The pending attempt in `connecting` was abandoned (its `Host::connect` future dropped)
    /// and is being cancelled at the controller.
    pub(crate) connect_abandoned: bool,
    /// Bumped when an abandoned attempt has settled; later `connect` calls wait for it.
    pub(crate) connect_settled: tokio::sync::watch::Sender<u64>,
    pub(crate) incoming: mpsc::UnboundedSender<ConnectionInfo>,
    pub(crate) scan: Option<mpsc::Sender<AdvReport>>,
    pub(crate) closed: Option<String>,
    /// The GATT server, once installed: it answers requests and commands.
    pub(crate) gatt: Option<GattState>,
    /// Our receive MTU, offered in Exchange MTU on every bearer.
    pub(crate) local_mtu: u16,
    /// Connectable advertising to restart after each connection (bumble's `auto_restart`).
    pub(crate) auto_restart: Option<AdvertisingOptions>,
    /// Advertising is enabled in the controller (as far as the host knows).
    pub(crate) advertising: bool,
    /// True while the timer task sleeps towards a deadline; false while it waits for work.
    pub(crate) timer_armed: bool,
    pub(crate) scratch: Vec<u8>,
    pub(crate) jobs: Vec<(ConnHandle, AppJob)>,
    /// ATT PDUs that arrived in the same read as their link's Connection Complete, before the
    /// link existed here; routed once the event made it.
    pub(crate) early: Vec<(ConnHandle, Vec<u8>)>,
    /// Long Term Keys this host gives as peripheral, per peer: (LTK, Rand, EDIV)
    /// ([`crate::Host::set_long_term_key`]).
    pub(crate) keys: HashMap<Address, ([u8; 16], u64, u16)>,
    /// The Security Manager's settings and state; `None` until the host knows its own address,
    /// and when pairing is disabled.
    pub(crate) security: Option<crate::security::SecurityState>,
    /// Our own address, as peers see it.
    pub(crate) local_address: Address,
}

pub(crate) struct Shared {
    pub(crate) inner: Mutex<Inner>,
    pub(crate) wake_writer: Arc<Notify>,
    /// Wakes the timer task when a transaction opens while it sleeps without a deadline.
    pub(crate) wake_timer: Arc<Notify>,
    /// The transport's write half and the bytes not yet accepted by it. Writes happen inline
    /// from the caller when the transport is ready ([`kick`]), and in the writer task otherwise.
    pub(crate) writer: Mutex<WriterState>,
    /// The driver tasks, stopped when the host is dropped (which releases the transport).
    pub(crate) tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    pub(crate) notifications: broadcast::Sender<Notification>,
    pub(crate) incoming_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<ConnectionInfo>>,
    pub(crate) description: String,
    /// Time zero of the microsecond clock the bearers run on: tokio's clock, so the
    /// transaction timers follow a paused test clock too.
    pub(crate) epoch: tokio::time::Instant,
}

impl Shared {
    /// Microseconds since the host started.
    pub(crate) fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
}

/// Hashes small integer ids (connection handles, controller ids) with one multiply.
#[derive(Default, Clone, Copy)]
pub(crate) struct HandleHasher(u64);

impl std::hash::Hasher for HandleHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u16(&mut self, n: u16) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A map keyed by a small integer id, hashed with [`HandleHasher`].
pub(crate) type IdMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<HandleHasher>>;

/// A map keyed by connection handle.
pub(crate) type HandleMap<V> = IdMap<ConnHandle, V>;

pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, Inner> {
    // Application code never runs under this lock; a poisoned lock means a bug in the driver,
    // and serving on is better than hanging every waiter.
    shared.inner.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    pub(crate) fn new(core: core::Host, incoming: mpsc::UnboundedSender<ConnectionInfo>, local_mtu: u16) -> Self {
        Inner {
            core,
            commands: HashMap::new(),
            links: Links::default(),
            connecting: None,
            connect_abandoned: false,
            connect_settled: tokio::sync::watch::channel(0).0,
            incoming,
            scan: None,
            closed: None,
            gatt: None,
            local_mtu,
            auto_restart: None,
            advertising: false,
            timer_armed: false,
            scratch: Vec::with_capacity(600),
            jobs: Vec::new(),
            early: Vec::new(),
            keys: HashMap::new(),
            security: None,
            local_address: Address::default(),
        }
    }

    /// Sends one ATT PDU on a link through its bearer (which checks the transaction rules).
    pub(crate) fn send_att(&mut self, handle: ConnHandle, pdu: &[u8], now: u64) -> Result<(), Error> {
        let link = self
            .links
            .0
            .get_mut(&handle)
            .ok_or(Error::Disconnected { reason: gattling_proto::hci::Reason(status::UNKNOWN_CONNECTION_ID) })?;
        link.bearer.send(pdu, now)?;
        self.core.send_att(handle, pdu)?;
        Ok(())
    }

    /// Queues PDUs the GATT server produced (notifications, and indications the bearer
    /// already counted as outstanding when it released them) and sends them.
    pub(crate) fn send_outgoing(&mut self, out: Vec<(ConnId, Vec<u8>)>) {
        for (conn, pdu) in out {
            // A response (to a request the server dropped) closes the peer's transaction.
            let response = pdu.first().is_some_and(|&op| opcode::is_response(op));
            if let (true, Some(link)) = (response, self.links.0.get_mut(&conn.0)) {
                if link.bearer.send(&pdu, 0).is_err() {
                    continue;
                }
            }
            if let Err(e) = self.core.send_att(conn.0, &pdu) {
                tracing::debug!(handle = conn.0, "not sent: {e}");
            }
        }
    }

    /// Hands queued application jobs to their links' tasks.
    pub(crate) fn dispatch_jobs(&mut self) {
        if self.jobs.is_empty() {
            return;
        }
        for (handle, job) in self.jobs.drain(..) {
            if let Some(link) = self.links.0.get_mut(&handle) {
                if !link.send_job(job) {
                    tracing::debug!(handle, "application task {APP_QUEUE} callbacks behind; callback dropped");
                }
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().unwrap_or_else(|p| p.into_inner()).drain(..) {
            task.abort();
        }
    }
}

/// Input chunks taken in one poll before the task yields to others: a backstop for transports
/// that are always ready (in-process fakes). Tokio's own transports (TCP, serial, channels) make
/// the read return `Pending` when the task's cooperative budget runs out long before this. Large,
/// because on the multi-thread runtime each yield wakes an idle worker that takes the task over
/// (with a cold cache): 1,024 cost about a tenth of the requests per second in
/// `examples/host_bench.rs`; at 16,384 (a few milliseconds of work) the hand-over is rare.
const READ_BATCH: usize = 16384;

pub(crate) async fn read_loop(shared: Weak<Shared>, mut reader: Box<dyn tokio::io::AsyncRead + Send + Unpin>) {
    let mut buf = vec![0u8; 4096];
    // Everything the transport has ready is taken before anything is written, so a window of
    // requests is answered with one write and one lock of the writer.
    let why = std::future::poll_fn(|cx| {
        // Upgraded for this poll only: the task must not keep the host alive while it waits.
        let Some(shared) = shared.upgrade() else { return Poll::Ready(None) };
        let mut guard: Option<MutexGuard<'_, Inner>> = None;
        let mut chunks = 0;
        let end = loop {
            let mut rb = tokio::io::ReadBuf::new(&mut buf);
            match Pin::new(&mut reader).poll_read(cx, &mut rb) {
                Poll::Pending => match guard.take() {
                    // The replies go out now; they may make the controller answer at once
                    // (credits, the next request), so look again before sleeping.
                    Some(g) if g.core.has_transmit() => send_taken(&shared, g),
                    _ => break Poll::Pending,
                },
                Poll::Ready(Err(e)) => break Poll::Ready(Some(format!("read error: {e}"))),
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    break Poll::Ready(Some("the controller closed the connection".to_string()))
                }
                Poll::Ready(Ok(())) => {
                    // No select on the host's end here: dropping the host aborts this task.
                    let inner = guard.get_or_insert_with(|| lock(&shared));
                    take_input(&shared, inner, rb.filled());
                    if inner.closed.is_some() {
                        // A hardware error closed the host: nothing more from this controller is used.
                        break Poll::Ready(None);
                    }
                    chunks += 1;
                    if chunks == READ_BATCH {
                        // Let other tasks run; come back at once.
                        cx.waker().wake_by_ref();
                        break Poll::Pending;
                    }
                }
            }
        };
        if let Some(guard) = guard {
            send_taken(&shared, guard);
        }
        end
    })
    .await;
    if let (Some(why), Some(shared)) = (why, shared.upgrade()) {
        tracing::warn!(transport = %shared.description, "transport closed: {why}");
        close(&shared, why);
    }
}

/// Feeds one chunk of controller input to the core: ATT PDUs through their bearers, events to
/// their waiters, application jobs to their links' tasks.
fn take_input(shared: &Arc<Shared>, inner: &mut Inner, chunk: &[u8]) {
    let mut clock = None;
    let mut arm = false;
    {
        let Inner { core, links, gatt, jobs, early, .. } = inner;
        // The clock is read at most once per chunk, and only when a PDU leaves a transaction
        // open (requests answered at once need no time stamp).
        let mut now = || *clock.get_or_insert_with(|| shared.now());
        // An answer given at once goes straight to the core's transmit queue.
        core.receive_answering(chunk, &mut |handle, pdu, answer| match links.0.get_mut(&handle) {
            Some(link) => {
                let routed = route_att(link, gatt, answer, jobs, handle, pdu, &mut now);
                arm |= routed.opened;
                routed.answered
            }
            None => {
                early.push((handle, pdu.to_vec()));
                false
            }
        });
    }
    if inner.core.has_events() {
        dispatch_events(shared, inner);
    }
    if !inner.early.is_empty() {
        // The links those PDUs belong to exist now (or never will: then they are dropped).
        let mut now = || *clock.get_or_insert_with(|| shared.now());
        let Inner { core, links, gatt, scratch, jobs, early, .. } = inner;
        for (handle, pdu) in early.drain(..) {
            scratch.clear();
            let Some(link) = links.0.get_mut(&handle) else { continue };
            let routed = route_att(link, gatt, scratch, jobs, handle, &pdu, &mut now);
            arm |= routed.opened;
            if routed.answered {
                let _ = core.send_att(handle, scratch);
            }
        }
    }
    if !inner.jobs.is_empty() {
        inner.dispatch_jobs();
    }
    if arm && !inner.timer_armed {
        inner.timer_armed = true;
        shared.wake_timer.notify_one();
    }
}

/// Sends what the controller's input produced (command credits freed queued commands, ACL
/// credits freed fragments, ATT replies): inline, taking the packets while the host is still
/// locked, so the hot path locks it once per batch.
pub(crate) fn send_taken(shared: &Shared, mut guard: MutexGuard<'_, Inner>) {
    if !guard.core.has_transmit() {
        return;
    }
    match shared.writer.try_lock() {
        Ok(mut w) => {
            w.take_packets(&mut guard.core);
            drop(guard);
            let mut cx = Context::from_waker(std::task::Waker::noop());
            match write_pending(&mut w, &mut cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    drop(w);
                    close(shared, format!("write error: {e}"));
                }
                Poll::Pending => shared.wake_writer.notify_one(),
            }
        }
        // Someone is writing right now; make sure the writer task looks again afterwards.
        Err(_) => {
            drop(guard);
            shared.wake_writer.notify_one();
        }
    }
}

/// What [`route_att`] did with a PDU.
struct Routed {
    /// An answer to send back on the same link is in the answer buffer.
    answered: bool,
    /// A transaction stays open (the timer task must be armed).
    opened: bool,
}

/// Routes one received ATT PDU through its link's bearer. An answer to send at once (a
/// response, an error, a confirmation, the next queued indication) is written into `answer`,
/// which is empty when called. `now` is called only when a transaction stays open and needs
/// its time stamp.
fn route_att(
    link: &mut Link,
    gatt: &mut Option<GattState>,
    answer: &mut Vec<u8>,
    jobs: &mut Vec<(ConnHandle, AppJob)>,
    handle: ConnHandle,
    pdu: &[u8],
    now: &mut dyn FnMut() -> u64,
) -> Routed {
    let quiet = Routed { answered: false, opened: false };
    // Stamped below, and only if the request is still open after the server had it.
    let route = link.bearer.receive(pdu, 0);
    match route {
        Route::Server => match gatt.as_mut() {
            Some(g) => {
                let conn = ConnId(handle);
                let mut access = Recorder::new(&g.hooks, jobs, handle);
                let answered = match g.server.handle(conn, &link.bearer, pdu, &mut access, answer) {
                    Outcome::Reply => link.bearer.send(answer, 0).is_ok(),
                    Outcome::Deferred(d) => {
                        jobs.push((handle, AppJob::Deferred(d)));
                        false
                    }
                    Outcome::Silent => false,
                };
                Routed { answered, opened: stamp_if_open(&mut link.bearer, now) }
            }
            None if link.client.is_none() => {
                queue_raw(link, handle, pdu);
                Routed { answered: false, opened: stamp_if_open(&mut link.bearer, now) }
            }
            None => {
                // A GATT client but no server on this host: the MTU is still the bearer's to
                // exchange; every other request is unsupported (Core Vol 3 Part F §3.4.1.1). With
                // neither, the PDUs go to the raw queue: the application speaks ATT itself.
                let Some(&op) = pdu.first() else { return quiet };
                if op == opcode::EXCHANGE_MTU_REQ {
                    answer.push(opcode::EXCHANGE_MTU_RSP);
                    answer.extend_from_slice(&link.bearer.local_mtu().to_le_bytes());
                } else if link.bearer.peer_request_pending() {
                    answer.extend_from_slice(&[opcode::ERROR_RSP, op, 0, 0, ErrorCode::REQUEST_NOT_SUPPORTED.0]);
                } else {
                    return quiet;
                }
                Routed { answered: link.bearer.send(answer, 0).is_ok(), opened: false }
            }
        },
        Route::Confirmation => {
            let next = if link.bearer.queued_indications() > 0 { link.bearer.poll_indication(now()) } else { None };
            if let Some(next) = &next {
                answer.extend_from_slice(next);
            }
            if gatt.as_ref().is_some_and(|g| g.wants_confirmations()) {
                jobs.push((handle, AppJob::Confirmed));
            }
            Routed { answered: next.is_some(), opened: link.bearer.indication_pending() }
        }
        Route::Response => {
            match &link.client {
                Some(client) => client.answer(pdu),
                None => queue_raw(link, handle, pdu),
            }
            quiet
        }
        Route::Notification | Route::Indication => {
            let Some(client) = &link.client else {
                queue_raw(link, handle, pdu);
                return quiet;
            };
            if client.deliver(pdu) {
                jobs.push((handle, AppJob::Notified(pdu.to_vec())));
            }
            let confirm = route == Route::Indication && link.bearer.send(&[opcode::HANDLE_VALUE_CFM], 0).is_ok();
            if confirm {
                answer.push(opcode::HANDLE_VALUE_CFM);
            }
            Routed { answered: confirm, opened: false }
        }
        Route::Dropped(why) => {
            tracing::debug!(handle, ?why, "ATT PDU dropped");
            quiet
        }
    }
}

/// Stamps the peer's request with the time if it is still open (answered later, or by the
/// application); true when it is, so the timer task must be armed.
fn stamp_if_open(bearer: &mut Bearer, now: &mut dyn FnMut() -> u64) -> bool {
    let open = bearer.peer_request_pending();
    if open {
        bearer.stamp_peer_request(now());
    }
    open
}

/// Ends every open ATT transaction that went past 30 s (Core Vol 3 Part F §3.3.3): the bearer
/// closes and the link is disconnected. Sleeps until the earliest deadline, or until woken
/// when a transaction opens while nothing was pending.
pub(crate) async fn timer_loop(shared: Weak<Shared>) {
    loop {
        let next = {
            let Some(shared) = shared.upgrade() else { return };
            let now = shared.now();
            let mut inner = lock(&shared);
            if inner.closed.is_some() {
                return;
            }
            let mut expired: Vec<(ConnHandle, Timeout)> = Vec::new();
            let mut smp_due: Vec<ConnHandle> = Vec::new();
            for (h, link) in inner.links.0.iter_mut() {
                if let Some(t) = link.bearer.handle_timeout(now) {
                    expired.push((*h, t));
                }
                if link.security.poll_timeout().is_some_and(|t| t <= now) {
                    smp_due.push(*h);
                }
            }
            for handle in smp_due {
                crate::security::on_timeout(&shared, &mut inner, handle, now);
            }
            if inner.security.as_ref().and_then(|s| s.private_address_due()).is_some_and(|t| t <= now) {
                crate::security::rotate_private_address(&mut inner, now, false);
            }
            let mut next = inner.security.as_ref().and_then(|s| s.private_address_due());
            inner.dispatch_jobs();
            for link in inner.links.0.values() {
                for t in [link.bearer.poll_timeout(), link.security.poll_timeout()] {
                    next = match (next, t) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
            for (handle, which) in expired {
                tracing::warn!(handle, ?which, "ATT transaction timeout: the bearer is closed, disconnecting");
                if let Some(client) = inner.links.0.get(&handle).and_then(|l| l.client.clone()) {
                    client.fail(Error::Timeout("ATT transaction (30 s); the link was closed"));
                }
                inner.core.send_command(&Command::Disconnect { handle, reason: status::REMOTE_USER_TERMINATED });
            }
            inner.timer_armed = next.is_some();
            drop(inner);
            kick(&shared);
            next.map(|t| Duration::from_micros(t.saturating_sub(now)))
        };
        let woken = async {
            match next {
                Some(d) => tokio::time::sleep(d).await,
                None => {
                    let Some(wake) = shared.upgrade().map(|s| s.wake_timer.clone()) else { return };
                    // A wake-up sent before this wait starts is kept as a permit, not lost.
                    // The scan that follows finds the new deadline and sleeps until it.
                    wake.notified().await;
                }
            }
        };
        woken.await;
    }
}

/// Fails everything pending: the controller is gone.
pub(crate) fn close(shared: &Shared, why: String) {
    let mut inner = lock(shared);
    if inner.closed.is_some() {
        return;
    }
    fail_all(&mut inner, why);
    drop(inner);
    shared.wake_writer.notify_one();
    shared.wake_timer.notify_one();
}

/// Marks the host closed and fails every pending command, connection attempt and link (the
/// caller holds the lock and wakes the writer and timer tasks afterwards).
fn fail_all(inner: &mut Inner, why: String) {
    inner.closed = Some(why.clone());
    for (_, (tx, _)) in inner.commands.drain() {
        let _ = tx.send(Err(Error::TransportClosed(why.clone())));
    }
    if let Some(tx) = inner.connecting.take() {
        let _ = tx.send(Err(Error::TransportClosed(why.clone())));
    }
    for (_, mut link) in inner.links.0.drain() {
        if let Some(client) = &link.client {
            client.fail(Error::TransportClosed(why.clone()));
        }
        link.security.fail(&Error::TransportClosed(why.clone()));
        let _ = link.end_tx.send_replace(Some(LinkEnd::TransportClosed));
    }
    inner.scan = None;
    // Dropping the incoming sender ends `accept`.
    let (dead, _) = mpsc::unbounded_channel();
    inner.incoming = dead;
}

fn dispatch_events(shared: &Arc<Shared>, inner: &mut Inner) {
    while let Some(ev) = inner.core.poll_event() {
        match ev {
            HostEvent::CommandDone { id, opcode, status, return_params } => {
                if let Some((tx, name)) = inner.commands.remove(&id) {
                    let result = match status {
                        status::SUCCESS => Ok(return_params),
                        status::UNKNOWN_COMMAND => Err(Error::Unsupported(name)),
                        _ => Err(Error::Command { opcode, name, status }),
                    };
                    let _ = tx.send(result);
                } else if status != status::SUCCESS {
                    tracing::warn!(opcode = opcode.0, status, "command sent by the host failed");
                }
            }
            HostEvent::Connected(info) => {
                let mut link = new_link(shared, inner.local_mtu, info);
                link.security = crate::security::LinkSecurityManager::new(
                    inner.security.as_ref(),
                    info.role,
                    inner.local_address,
                    info.peer_on_air,
                );
                inner.links.0.insert(info.handle, link);
                if let Some(g) = inner.gatt.as_mut() {
                    g.server.connect(ConnId(info.handle));
                }
                crate::security::tell_server_peer_key(inner, info.handle);
                tracing::info!(handle = info.handle, peer = %info.peer, role = ?info.role, "connected");
                let _ = shared.notifications.send(Notification::Connected(info));
                match info.role {
                    Role::Central => match inner.connecting.take() {
                        Some(tx) => {
                            let _ = tx.send(Ok(info));
                        }
                        None => tracing::warn!(handle = info.handle, "central connection nobody asked for"),
                    },
                    Role::Peripheral => {
                        let _ = inner.incoming.send(info);
                        // The controller stops advertising when a connection is made.
                        inner.advertising = inner.auto_restart.is_some();
                        if inner.auto_restart.is_some() {
                            // The controller stopped advertising when the connection was made
                            // (Core Vol 6 Part B §4.4.2): start it again.
                            inner.core.send_command(&Command::LeSetAdvertisingEnable(true));
                        }
                    }
                }
            }
            HostEvent::ConnectionFailed { status } => {
                if let Some(tx) = inner.connecting.take() {
                    let err = if status == status::UNKNOWN_CONNECTION_ID {
                        Error::Cancelled("connection attempt")
                    } else {
                        Error::Command { opcode: Opcode::LE_CREATE_CONNECTION, name: "LE Create Connection", status }
                    };
                    let _ = tx.send(Err(err));
                }
            }
            HostEvent::Disconnected { handle, reason: code } => {
                let reason = gattling_proto::hci::Reason(code);
                tracing::info!(handle, %reason, "disconnected");
                if let Some(g) = inner.gatt.as_mut() {
                    g.server.disconnect(ConnId(handle));
                }
                if let Some(mut link) = inner.links.0.remove(&handle) {
                    if let Some(client) = &link.client {
                        client.fail(Error::Disconnected { reason });
                    }
                    link.security.fail(&Error::Disconnected { reason });
                    let _ = link.end_tx.send_replace(Some(LinkEnd::Disconnected(reason)));
                }
                inner.links.shrink();
                let _ = shared.notifications.send(Notification::Disconnected { handle, reason });
            }
            HostEvent::Advertisement(report) => {
                // A reader that fell behind loses the newest reports, not memory.
                if let Some(tx) = &inner.scan {
                    let _ = tx.try_send(report);
                }
            }
            HostEvent::ConnectionUpdated { handle, status, interval, latency, supervision_timeout } => {
                if let (status::SUCCESS, Some(l)) = (status, inner.links.0.get_mut(&handle)) {
                    (l.info.interval, l.info.latency, l.info.supervision_timeout) =
                        (interval, latency, supervision_timeout);
                }
                link_event(inner, handle, LinkEvent::Updated { status, interval, latency, supervision_timeout })
            }
            HostEvent::ConnectionParameterUpdateAnswered { handle, accepted } => {
                link_event(inner, handle, LinkEvent::ParamAnswer { accepted })
            }
            HostEvent::DataLengthChanged { handle, max_tx_octets, max_rx_octets } => {
                tracing::debug!(handle, max_tx_octets, max_rx_octets, "data length changed");
                if let Some(l) = inner.links.0.get_mut(&handle) {
                    l.data_length = (max_tx_octets, max_rx_octets);
                }
                link_event(inner, handle, LinkEvent::DataLength { max_tx_octets, max_rx_octets })
            }
            HostEvent::PhyUpdated { handle, status, tx_phy, rx_phy } => {
                if let (status::SUCCESS, Some(l)) = (status, inner.links.0.get_mut(&handle)) {
                    l.phy = (tx_phy, rx_phy);
                }
                link_event(inner, handle, LinkEvent::Phy { status, tx_phy, rx_phy })
            }
            HostEvent::EncryptionChanged { handle, status, encrypted, key_size } => {
                tracing::info!(handle, status, encrypted, key_size, "encryption change");
                let now = shared.now();
                crate::security::on_encryption_changed(shared, inner, handle, status, encrypted, key_size, now);
                link_event(inner, handle, LinkEvent::Encryption { status, encrypted, key_size })
            }
            HostEvent::EncryptionKeyRefreshed { handle, status } => {
                tracing::info!(handle, status, "encryption key refreshed");
                // Pairing again on an encrypted link ends with a key refresh, not an
                // Encryption Change (Core Vol 3 Part H §2.4.4).
                let key_size = inner.core.security(handle).map_or(0, |s| s.key_size);
                let now = shared.now();
                crate::security::on_encryption_changed(shared, inner, handle, status, status == 0, key_size, now);
                link_event(inner, handle, LinkEvent::KeyRefresh { status })
            }
            HostEvent::LongTermKeyRequest { handle, rand, ediv } => {
                crate::security::on_ltk_request(inner, handle, rand, ediv)
            }
            HostEvent::Smp { handle, pdu } => {
                let now = shared.now();
                crate::security::on_pdu(shared, inner, handle, &pdu, now);
            }
            HostEvent::HardwareError(code) => {
                // The controller's state (links, commands) is lost (Core Vol 4 Part E §7.7.16):
                // end every pending call now instead of letting each run into its timeout.
                tracing::error!(code, "controller hardware error");
                let _ = shared.notifications.send(Notification::HardwareError(code));
                if inner.closed.is_none() {
                    fail_all(inner, format!("controller hardware error {code:#04x}; open the host again to reset it"));
                    shared.wake_writer.notify_one();
                    shared.wake_timer.notify_one();
                }
                return;
            }
            HostEvent::Dropped(what) => tracing::warn!(?what, "dropped"),
        }
    }
}

/// A new link's state; its raw ATT queue and application task are made on first use.
fn new_link(shared: &Arc<Shared>, local_mtu: u16, info: ConnectionInfo) -> Link {
    let (end_tx, _) = watch::channel(None);
    Link {
        info,
        bearer: Bearer::new(local_mtu),
        raw_tx: None,
        raw: Arc::default(),
        client: None,
        end_tx,
        events: broadcast::channel(16).0,
        app: AppTask::Idle(Arc::downgrade(shared)),
        // The defaults until the controller reports a change (Core Vol 6 Part B §4.5.10, §5.1.10).
        data_length: (27, 27),
        phy: (1, 1),
        security: crate::security::LinkSecurityManager::new(None, info.role, Address::default(), info.peer),
    }
}

fn link_event(inner: &Inner, handle: ConnHandle, ev: LinkEvent) {
    if let Some(link) = inner.links.0.get(&handle) {
        let _ = link.events.send(ev);
    }
}

/// The write side: the transport's writer and what it has not taken yet.
pub(crate) struct WriterState {
    pub(crate) io: Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
    /// Byte streams: packets back to back.
    pub(crate) pending: Vec<u8>,
    /// Packet transports: whole packets, in order.
    pub(crate) whole: std::collections::VecDeque<Vec<u8>>,
    /// Written packet buffers to hand back to the core.
    pub(crate) spent: Vec<Vec<u8>>,
    pub(crate) packets: bool,
}

impl WriterState {
    pub(crate) fn new(io: Box<dyn tokio::io::AsyncWrite + Send + Unpin>, packets: bool) -> Self {
        WriterState { io, pending: Vec::new(), whole: Default::default(), spent: Vec::new(), packets }
    }

    /// Takes the core's queued packets (the core is locked by the caller) and gives back the
    /// buffers already written.
    fn take_packets(&mut self, core: &mut core::Host) {
        for done in self.spent.drain(..) {
            core.recycle(done);
        }
        while let Some(p) = core.poll_transmit() {
            if self.packets {
                self.whole.push_back(p);
            } else {
                self.pending.extend_from_slice(&p);
                core.recycle(p);
            }
        }
    }
}

/// Moves queued packets from the core into the transport until it would block. With a no-op
/// waker this is the inline fast path; the writer task calls it with its own waker.
fn pump_writes(shared: &Shared, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
    let mut w = shared.writer.lock().unwrap_or_else(|p| p.into_inner());
    let w = &mut *w;
    loop {
        {
            let mut inner = lock(shared);
            if inner.closed.is_some() {
                return Poll::Ready(Ok(()));
            }
            w.take_packets(&mut inner.core);
        }
        if w.pending.is_empty() && w.whole.is_empty() {
            return Pin::new(&mut w.io).poll_flush(cx);
        }
        std::task::ready!(write_pending(w, cx))?;
    }
}

/// Writes the buffered packets until the transport would block, then flushes.
fn write_pending(w: &mut WriterState, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
    // A packet transport gets each packet whole, straight from the core's buffer.
    while let Some(p) = w.whole.front() {
        match std::task::ready!(Pin::new(&mut w.io).poll_write(cx, p)) {
            Ok(n) if n == p.len() => {
                if let Some(done) = w.whole.pop_front() {
                    w.spent.push(done);
                }
            }
            Ok(n) => {
                let msg = format!("packet transport took {n} of a {}-byte packet", p.len());
                return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::WriteZero, msg)));
            }
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
    while !w.pending.is_empty() {
        match std::task::ready!(Pin::new(&mut w.io).poll_write(cx, &w.pending)) {
            Ok(0) => {
                return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::WriteZero, "transport took no bytes")))
            }
            Ok(n) if n >= w.pending.len() => w.pending.clear(),
            Ok(n) => {
                w.pending.drain(..n);
            }
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
    Pin::new(&mut w.io).poll_flush(cx)
}

/// Sends what the core has queued: inline when the transport takes it at once (no task switch
/// on the hot path), otherwise by waking the writer task.
pub(crate) fn kick(shared: &Shared) {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    if shared.writer.try_lock().is_err() {
        // Someone is writing right now; make sure the writer task looks again afterwards.
        shared.wake_writer.notify_one();
        return;
    }
    match pump_writes(shared, &mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => close(shared, format!("write error: {e}")),
        Poll::Pending => shared.wake_writer.notify_one(),
    }
}

pub(crate) async fn write_loop(shared: Weak<Shared>, wake: Arc<Notify>) {
    loop {
        // Wait without holding the host; dropping it aborts this task (and releases the transport).
        wake.notified().await;
        let result = std::future::poll_fn(|cx| match shared.upgrade() {
            Some(s) => pump_writes(&s, cx),
            None => Poll::Ready(Ok(())),
        })
        .await;
        if let Err(e) = result {
            if let Some(s) = shared.upgrade() {
                close(&s, format!("write error: {e}"));
            }
            return;
        }
    }
}

/// Arms the timer task if a transaction just opened while it waited for work.
pub(crate) fn arm_timer(shared: &Shared, inner: &mut Inner) {
    if !inner.timer_armed {
        inner.timer_armed = true;
        shared.wake_timer.notify_one();
    }
}
