//! The async host: one controller, driven by a reader task and a writer task around the sans-IO
//! [`gattling_proto::host::Host`], shared behind a mutex that is never held across an await.

use crate::error::Error;
use crate::transport::{self, Transport, TransportSpec};
use gattling_proto::gap::{Address, AddressType, BdAddr};
use gattling_proto::hci::command::{AdvParams, Command, ConnParams, CreateConnection, Opcode};
use gattling_proto::hci::event::ret;
use gattling_proto::hci::{status, ConnHandle};
use gattling_proto::host::{self as core, AdvReport, CommandId, ConnectionInfo, HostConfig, HostEvent, Role};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWrite};
use tokio::sync::{broadcast, mpsc, oneshot, watch, Notify};

/// How long the host waits for the controller to answer a command (Core Vol 4 Part E §4.4 sets none;
/// real controllers answer in milliseconds).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Options for [`Host::open_with`].
#[derive(Clone, Debug, Default)]
pub struct HostOptions {
    /// Sans-IO core limits.
    pub config: HostConfig,
    /// A static random address to use instead of the controller's public address.
    pub random_address: Option<BdAddr>,
}

/// How a connection ended, as seen by a [`Connection`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LinkEnd {
    /// Disconnection Complete with this HCI reason.
    Disconnected(u8),
    /// The transport to the controller closed.
    TransportClosed,
}

/// Connection-level events delivered to [`Connection`] waiters.
#[derive(Clone, Debug)]
enum LinkEvent {
    Updated { status: u8, interval: u16, latency: u16, supervision_timeout: u16 },
    Phy { status: u8, tx_phy: u8, rx_phy: u8 },
    DataLength { max_tx_octets: u16, max_rx_octets: u16 },
    ParamAnswer { accepted: bool },
}

struct LinkState {
    att_tx: mpsc::UnboundedSender<Vec<u8>>,
    /// Taken by the [`Connection`] object; PDUs queue here until then.
    att_rx: Option<mpsc::UnboundedReceiver<Vec<u8>>>,
    end_tx: watch::Sender<Option<LinkEnd>>,
    events: broadcast::Sender<LinkEvent>,
}

/// Host-level notifications for logging and front-ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notification {
    /// A connection was established.
    Connected(ConnectionInfo),
    /// A connection ended with this reason.
    Disconnected {
        /// Handle.
        handle: ConnHandle,
        /// HCI reason.
        reason: u8,
    },
    /// The controller reported a hardware error.
    HardwareError(u8),
}

/// Where a command's return parameters (or its failure) are delivered.
type CommandWaiter = oneshot::Sender<Result<Vec<u8>, Error>>;

struct Inner {
    core: core::Host,
    /// Waiters for command completions, with the command's name for error messages.
    commands: HashMap<CommandId, (CommandWaiter, &'static str)>,
    links: HashMap<ConnHandle, LinkState>,
    connecting: Option<oneshot::Sender<Result<ConnectionInfo, Error>>>,
    incoming: mpsc::UnboundedSender<ConnectionInfo>,
    scan: Option<mpsc::UnboundedSender<AdvReport>>,
    closed: Option<String>,
    /// The GATT server, once installed: it answers requests, commands and confirmations.
    gatt: Option<crate::gatt::GattState>,
}

struct Shared {
    inner: Mutex<Inner>,
    wake_writer: Arc<Notify>,
    /// The transport's write half and the bytes not yet accepted by it. Writes happen inline
    /// from the caller when the transport is ready ([`kick`]), and in the writer task otherwise.
    writer: Mutex<WriterState>,
    /// Dropped with the host: tells the reader and writer tasks to stop and release the transport.
    _alive: watch::Sender<()>,
    notifications: broadcast::Sender<Notification>,
    incoming_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<ConnectionInfo>>,
    description: String,
}

/// A Bluetooth LE host on one controller. Cheap to clone; all clones drive the same controller.
/// When the last clone (and every [`Connection`], which holds one) is dropped, the host closes
/// its side of the transport.
#[derive(Clone)]
pub struct Host {
    shared: Arc<Shared>,
    address: Address,
    acl: (usize, u16),
    supported_commands: [u8; 64],
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").field("transport", &self.shared.description).field("address", &self.address).finish()
    }
}

/// Legacy advertising PDU types a host can choose (Core Vol 6 Part B §2.3.1).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum AdvertisingKind {
    /// ADV_IND: connectable and scannable.
    #[default]
    Connectable,
    /// ADV_SCAN_IND: scannable, not connectable.
    Scannable,
    /// ADV_NONCONN_IND: neither.
    NonConnectable,
}

/// What and how to advertise.
#[derive(Clone, Debug, Default)]
pub struct AdvertisingOptions {
    /// PDU type.
    pub kind: AdvertisingKind,
    /// Advertising data (at most 31 bytes).
    pub data: Vec<u8>,
    /// Scan response data (at most 31 bytes).
    pub scan_response: Vec<u8>,
    /// Interval in units of 0.625 ms (0 = 100 ms default).
    pub interval: u16,
}

/// How to scan.
#[derive(Clone, Copy, Debug)]
pub struct ScanOptions {
    /// Active scanning sends scan requests and yields scan responses too.
    pub active: bool,
    /// Scan interval (units of 0.625 ms).
    pub interval: u16,
    /// Scan window (units of 0.625 ms).
    pub window: u16,
    /// Ask the controller to filter duplicate reports.
    pub filter_duplicates: bool,
}

impl Default for ScanOptions {
    /// Active, 60 ms interval and window (continuous), no duplicate filtering.
    fn default() -> Self {
        Self { active: true, interval: 0x60, window: 0x60, filter_duplicates: false }
    }
}

/// How to connect.
#[derive(Clone, Copy, Debug)]
pub struct ConnectOptions {
    /// Give up (and cancel) after this long.
    pub timeout: Duration,
    /// Requested connection parameters.
    pub params: ConnParams,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(10), params: ConnParams::default() }
    }
}

/// A stream of advertising reports; scanning stops when it is dropped or [`Scanner::stop`] is called.
pub struct Scanner {
    host: Host,
    rx: mpsc::UnboundedReceiver<AdvReport>,
    stopped: bool,
}

impl Scanner {
    /// The next report, or `None` once scanning stopped or the transport closed.
    pub async fn next(&mut self) -> Option<AdvReport> {
        self.rx.recv().await
    }

    /// Stops scanning and waits for the controller to confirm.
    pub async fn stop(mut self) -> Result<(), Error> {
        self.stopped = true;
        self.host.stop_scan().await
    }
}

impl Drop for Scanner {
    fn drop(&mut self) {
        if !self.stopped {
            let host = self.host.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = host.stop_scan().await;
                });
            }
        }
    }
}

fn command_name(op: Opcode) -> &'static str {
    match op {
        Opcode::RESET => "Reset",
        Opcode::DISCONNECT => "Disconnect",
        Opcode::SET_EVENT_MASK => "Set Event Mask",
        Opcode::READ_LOCAL_VERSION => "Read Local Version Information",
        Opcode::READ_LOCAL_SUPPORTED_COMMANDS => "Read Local Supported Commands",
        Opcode::READ_LOCAL_SUPPORTED_FEATURES => "Read Local Supported Features",
        Opcode::READ_BUFFER_SIZE => "Read Buffer Size",
        Opcode::READ_BD_ADDR => "Read BD_ADDR",
        Opcode::LE_SET_EVENT_MASK => "LE Set Event Mask",
        Opcode::LE_READ_BUFFER_SIZE | Opcode::LE_READ_BUFFER_SIZE_V2 => "LE Read Buffer Size",
        Opcode::LE_READ_LOCAL_SUPPORTED_FEATURES => "LE Read Local Supported Features",
        Opcode::LE_SET_RANDOM_ADDRESS => "LE Set Random Address",
        Opcode::LE_SET_ADVERTISING_PARAMETERS => "LE Set Advertising Parameters",
        Opcode::LE_SET_ADVERTISING_DATA => "LE Set Advertising Data",
        Opcode::LE_SET_SCAN_RESPONSE_DATA => "LE Set Scan Response Data",
        Opcode::LE_SET_ADVERTISING_ENABLE => "LE Set Advertising Enable",
        Opcode::LE_SET_SCAN_PARAMETERS => "LE Set Scan Parameters",
        Opcode::LE_SET_SCAN_ENABLE => "LE Set Scan Enable",
        Opcode::LE_CREATE_CONNECTION => "LE Create Connection",
        Opcode::LE_CREATE_CONNECTION_CANCEL => "LE Create Connection Cancel",
        Opcode::LE_CONNECTION_UPDATE => "LE Connection Update",
        Opcode::LE_ENCRYPT => "LE Encrypt",
        Opcode::LE_RAND => "LE Rand",
        Opcode::LE_SET_DATA_LENGTH => "LE Set Data Length",
        Opcode::LE_SET_PHY => "LE Set PHY",
        _ => "vendor or other command",
    }
}

impl Host {
    /// Opens the controller named by a transport string (`tcp-client:HOST:PORT`,
    /// `serial:DEVICE[,BAUD][,rtscts]`, `hci-socket:N`) and initialises it.
    pub async fn open(spec: &str) -> Result<Host, Error> {
        Self::open_with(spec, HostOptions::default()).await
    }

    /// Like [`Host::open`], with options.
    pub async fn open_with(spec: &str, options: HostOptions) -> Result<Host, Error> {
        let spec: TransportSpec =
            spec.parse().map_err(|e: transport::TransportError| Error::Transport(e.to_string()))?;
        let t = transport::open(&spec).await.map_err(|e| Error::Transport(e.to_string()))?;
        Self::start(t, options).await
    }

    /// Drives an already open transport and initialises the controller behind it.
    pub async fn start(t: Transport, options: HostOptions) -> Result<Host, Error> {
        let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
        let (alive_tx, alive_rx) = watch::channel(());
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                core: core::Host::new(options.config),
                commands: HashMap::new(),
                links: HashMap::new(),
                connecting: None,
                incoming: incoming_tx,
                scan: None,
                closed: None,
                gatt: None,
            }),
            wake_writer: Arc::new(Notify::new()),
            writer: Mutex::new(WriterState { io: t.writer, pending: Vec::new() }),
            _alive: alive_tx,
            notifications: broadcast::channel(64).0,
            incoming_rx: tokio::sync::Mutex::new(incoming_rx),
            description: t.description.clone(),
        });
        let reader = t.reader;
        tokio::spawn(read_loop(Arc::downgrade(&shared), reader, alive_rx.clone()));
        tokio::spawn(write_loop(Arc::downgrade(&shared), shared.wake_writer.clone(), alive_rx));
        let mut host = Host { shared, address: Address::default(), acl: (0, 0), supported_commands: [0; 64] };
        host.initialise(options.random_address).await?;
        Ok(host)
    }

    async fn initialise(&mut self, random: Option<BdAddr>) -> Result<(), Error> {
        self.command(Command::Reset).await?;
        let version = self.command(Command::ReadLocalVersion).await?;
        let version = ret::local_version(&version).map_err(|e| Error::Protocol(e.to_string()))?;
        tracing::debug!(?version, "controller version");
        let commands = self.command(Command::ReadLocalSupportedCommands).await?;
        let commands = ret::supported_commands(&commands).map_err(|e| Error::Protocol(e.to_string()))?;
        self.supported_commands = commands;
        let _features = self.command(Command::ReadLocalSupportedFeatures).await?;
        let addr = self.command(Command::ReadBdAddr).await?;
        let public = ret::bd_addr(&addr).map_err(|e| Error::Protocol(e.to_string()))?;
        // Disconnection Complete, Encryption Change, Hardware Error, Encryption Key Refresh, LE Meta.
        self.command(Command::SetEventMask(0x2000_8000_0000_8090)).await?;
        // Connection Complete .. Data Length Change (bits 0-6), Enhanced Connection Complete (9),
        // PHY Update Complete (11).
        self.command(Command::LeSetEventMask(0x0000_0000_0000_0A7F)).await?;
        // Read Local Supported Commands octet 41 bit 5: LE Read Buffer Size [v2].
        let v2 = commands.get(41).is_some_and(|b| b & 0x20 != 0);
        let le = if v2 { Command::LeReadBufferSizeV2 } else { Command::LeReadBufferSize };
        let mut sizes = ret::le_buffer_size(&self.command(le).await?).map_err(|e| Error::Protocol(e.to_string()))?;
        if sizes.acl_len == 0 || sizes.acl_num == 0 {
            // LE shares the BR/EDR buffers (Core Vol 4 Part E §7.8.2).
            sizes = ret::buffer_size(&self.command(Command::ReadBufferSize).await?)
                .map_err(|e| Error::Protocol(e.to_string()))?;
        }
        if sizes.acl_len == 0 || sizes.acl_num == 0 {
            return Err(Error::Protocol(format!("controller reports no ACL buffers ({sizes:?})")));
        }
        self.command(Command::LeReadLocalSupportedFeatures).await?;
        self.lock().core.set_acl_buffers(sizes.acl_len, sizes.acl_num);
        self.acl = (sizes.acl_len as usize, sizes.acl_num);
        self.address = match random {
            Some(r) => {
                self.command(Command::LeSetRandomAddress(r)).await?;
                Address { addr: r, kind: AddressType::Random }
            }
            None => Address { addr: public, kind: AddressType::Public },
        };
        tracing::info!(address = %self.address, acl_len = sizes.acl_len, acl_num = sizes.acl_num, transport = %self.shared.description, "host ready");
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.shared)
    }

    /// Whether the controller lists `opcode` in Read Local Supported Commands (Core Vol 4 Part E
    /// §6.27); `None` for commands this host does not map to their bit.
    pub fn supports(&self, opcode: Opcode) -> Option<bool> {
        let (octet, bit) = match opcode {
            Opcode::LE_ENCRYPT => (27, 6),
            Opcode::LE_RAND => (27, 7),
            Opcode::LE_CONNECTION_UPDATE => (27, 2),
            Opcode::LE_SET_DATA_LENGTH => (33, 6),
            Opcode::LE_SET_PHY => (35, 6),
            Opcode::LE_READ_BUFFER_SIZE_V2 => (41, 5),
            _ => return None,
        };
        Some(self.supported_commands.get(octet).is_some_and(|b| b & (1 << bit) != 0))
    }

    /// Installs the GATT server built by `make` unless one is installed; existing connections
    /// are served from now on. Starts the task that enforces the ATT transaction timeout.
    pub(crate) fn with_gatt_install(&self, make: impl FnOnce() -> crate::gatt::GattState) {
        {
            let mut inner = self.lock();
            if inner.gatt.is_some() {
                return;
            }
            let mut state = make();
            let handles: Vec<ConnHandle> = inner.links.keys().copied().collect();
            for h in handles {
                state.server.connect(gattling_proto::gatt::ConnId(h));
            }
            inner.gatt = Some(state);
        }
        let weak = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            // Indications unconfirmed for 30 s close the bearer: disconnect (Vol 3 Part F §3.3.3).
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(shared) = weak.upgrade() else { return };
                let expired = {
                    let mut inner = lock(&shared);
                    if inner.closed.is_some() {
                        return;
                    }
                    match inner.gatt.as_mut() {
                        Some(g) => {
                            let now = g.now();
                            g.server.poll_timeouts(now)
                        }
                        None => Vec::new(),
                    }
                };
                for conn in expired {
                    tracing::warn!(handle = conn.0, "ATT transaction timeout: disconnecting");
                    let _ = lock(&shared)
                        .core
                        .send_command(&Command::Disconnect { handle: conn.0, reason: status::REMOTE_USER_TERMINATED });
                    kick(&shared);
                }
            }
        });
    }

    /// Runs `f` on the installed GATT server.
    pub(crate) fn with_gatt<T>(&self, f: impl FnOnce(&mut crate::gatt::GattState) -> T) -> Option<T> {
        self.lock().gatt.as_mut().map(f)
    }

    /// Queues ATT PDUs to several connections and sends them.
    pub(crate) fn send_att_many(&self, pdus: Vec<(gattling_proto::gatt::ConnId, Vec<u8>)>) {
        if pdus.is_empty() {
            return;
        }
        {
            let mut inner = self.lock();
            for (conn, pdu) in pdus {
                let _ = inner.core.send_att(conn.0, &pdu);
            }
        }
        kick(&self.shared);
    }

    /// Our address (public, or the static random address we set).
    pub fn address(&self) -> Address {
        self.address
    }

    /// The controller's ACL buffer length and count.
    pub fn acl_buffers(&self) -> (usize, u16) {
        self.acl
    }

    /// Which transport this host drives.
    pub fn transport_description(&self) -> &str {
        &self.shared.description
    }

    /// Subscribes to connection and disconnection notifications.
    pub fn notifications(&self) -> broadcast::Receiver<Notification> {
        self.shared.notifications.subscribe()
    }

    /// Sends a command and waits for its completion; returns the return parameters after the status.
    /// A non-zero status is an [`Error::Command`].
    pub async fn command(&self, cmd: Command) -> Result<Vec<u8>, Error> {
        let opcode = cmd.opcode();
        let rx = {
            let mut inner = self.lock();
            if let Some(why) = &inner.closed {
                return Err(Error::TransportClosed(why.clone()));
            }
            let id = inner.core.send_command(&cmd);
            let (tx, rx) = oneshot::channel();
            inner.commands.insert(id, (tx, command_name(opcode)));
            rx
        };
        kick(&self.shared);
        match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::TransportClosed(self.closed_reason())),
            Err(_) => Err(Error::Timeout("the controller did not answer a command")),
        }
    }

    fn closed_reason(&self) -> String {
        self.lock().closed.clone().unwrap_or_else(|| "host stopped".into())
    }

    /// Eight random octets from the controller (Core Vol 4 Part E §7.8.23).
    pub async fn le_rand(&self) -> Result<[u8; 8], Error> {
        let r = self.command(Command::LeRand).await?;
        ret::le_rand(&r).map(u64::to_le_bytes).map_err(|e| Error::Protocol(e.to_string()))
    }

    /// AES-128 in the controller (Core Vol 4 Part E §7.8.22). Key, plaintext and result are in
    /// HCI byte order: least significant octet first.
    pub async fn le_encrypt(&self, key: [u8; 16], plaintext: [u8; 16]) -> Result<[u8; 16], Error> {
        let r = self.command(Command::LeEncrypt { key, plaintext }).await?;
        ret::le_encrypt(&r).map_err(|e| Error::Protocol(e.to_string()))
    }

    /// Starts legacy advertising (Core Vol 4 Part E §7.8.5-§7.8.9) with the given data.
    pub async fn advertise(&self, opts: &AdvertisingOptions) -> Result<(), Error> {
        for (what, d) in [("advertising data", &opts.data), ("scan response data", &opts.scan_response)] {
            if d.len() > 31 {
                return Err(Error::InvalidArgument(format!(
                    "{what} is {} bytes; legacy advertising allows 31",
                    d.len()
                )));
            }
        }
        let interval = if opts.interval == 0 { 0xA0 } else { opts.interval };
        let adv_type = match opts.kind {
            AdvertisingKind::Connectable => 0x00,
            AdvertisingKind::Scannable => 0x02,
            AdvertisingKind::NonConnectable => 0x03,
        };
        let params = AdvParams {
            interval_min: interval,
            interval_max: interval,
            adv_type,
            own_address_type: self.address.kind.peer_code(),
            ..AdvParams::default()
        };
        self.command(Command::LeSetAdvertisingParameters(params)).await?;
        self.command(Command::LeSetAdvertisingData(opts.data.clone())).await?;
        self.command(Command::LeSetScanResponseData(opts.scan_response.clone())).await?;
        self.command(Command::LeSetAdvertisingEnable(true)).await?;
        Ok(())
    }

    /// Stops advertising.
    pub async fn stop_advertising(&self) -> Result<(), Error> {
        self.command(Command::LeSetAdvertisingEnable(false)).await.map(drop)
    }

    /// Starts scanning; reports arrive on the returned [`Scanner`].
    pub async fn scan(&self, opts: ScanOptions) -> Result<Scanner, Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut inner = self.lock();
            if inner.scan.is_some() {
                return Err(Error::Busy("scanning"));
            }
            inner.scan = Some(tx);
        }
        let setup = async {
            self.command(Command::LeSetScanParameters {
                scan_type: opts.active as u8,
                interval: opts.interval,
                window: opts.window.min(opts.interval),
                own_address_type: self.address.kind.peer_code(),
                filter_policy: 0,
            })
            .await?;
            self.command(Command::LeSetScanEnable { enable: true, filter_duplicates: opts.filter_duplicates }).await
        };
        if let Err(e) = setup.await {
            self.lock().scan = None;
            return Err(e);
        }
        Ok(Scanner { host: self.clone(), rx, stopped: false })
    }

    async fn stop_scan(&self) -> Result<(), Error> {
        self.lock().scan = None;
        self.command(Command::LeSetScanEnable { enable: false, filter_duplicates: false }).await.map(drop)
    }

    /// Connects as central to `peer`, cancelling after `opts.timeout` (Core Vol 4 Part E §7.8.12-13).
    pub async fn connect(&self, peer: Address, opts: ConnectOptions) -> Result<Connection, Error> {
        let (tx, mut rx) = oneshot::channel();
        {
            let mut inner = self.lock();
            if inner.connecting.is_some() {
                return Err(Error::Busy("a connection attempt"));
            }
            inner.connecting = Some(tx);
        }
        let create = Command::LeCreateConnection(CreateConnection {
            scan_interval: 0x60,
            scan_window: 0x60,
            filter_policy: 0,
            peer_address_type: peer.kind.peer_code(),
            peer_address: peer.addr,
            own_address_type: self.address.kind.peer_code(),
            params: opts.params,
        });
        if let Err(e) = self.command(create).await {
            self.lock().connecting = None;
            return Err(e);
        }
        let info = match tokio::time::timeout(opts.timeout, &mut rx).await {
            Ok(Ok(result)) => result?,
            Ok(Err(_)) => return Err(Error::TransportClosed(self.closed_reason())),
            Err(_) => {
                // Cancel; the controller then reports the attempt's end (status 0x02), or the
                // connection if it completed in the meantime.
                let _ = self.command(Command::LeCreateConnectionCancel).await;
                match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
                    Ok(Ok(Ok(info))) => info,
                    _ => {
                        self.lock().connecting = None;
                        return Err(Error::Timeout("connection attempt (cancelled)"));
                    }
                }
            }
        };
        self.connection(info)
    }

    /// Cancels a connection attempt in progress; the pending [`Host::connect`] fails.
    pub async fn cancel_connect(&self) -> Result<(), Error> {
        self.command(Command::LeCreateConnectionCancel).await.map(drop)
    }

    /// Waits for the next connection made to us while advertising (peripheral role).
    pub async fn accept(&self) -> Result<Connection, Error> {
        let info = {
            let mut rx = self.shared.incoming_rx.lock().await;
            rx.recv().await
        };
        match info {
            Some(info) => self.connection(info),
            None => Err(Error::TransportClosed(self.closed_reason())),
        }
    }

    fn connection(&self, info: ConnectionInfo) -> Result<Connection, Error> {
        let mut inner = self.lock();
        let Some(link) = inner.links.get_mut(&info.handle) else {
            // Already gone again (disconnected before we got here).
            return Err(Error::Disconnected { reason: status::UNKNOWN_CONNECTION_ID });
        };
        let Some(att_rx) = link.att_rx.take() else {
            return Err(Error::Busy("a Connection object for this link"));
        };
        let end_rx = link.end_tx.subscribe();
        let events = link.events.clone();
        drop(inner);
        Ok(Connection { host: self.clone(), info, att_rx: tokio::sync::Mutex::new(att_rx), end_rx, events })
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, Inner> {
    // A panic while holding the lock would be a bug in this module; keep serving regardless.
    shared.inner.lock().unwrap_or_else(|p| p.into_inner())
}

/// One LE connection, in either role.
pub struct Connection {
    host: Host,
    info: ConnectionInfo,
    att_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Vec<u8>>>,
    end_rx: watch::Receiver<Option<LinkEnd>>,
    events: broadcast::Sender<LinkEvent>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("info", &self.info).finish()
    }
}

impl Connection {
    /// Connection handle.
    pub fn handle(&self) -> ConnHandle {
        self.info.handle
    }

    /// What was known when the connection was made.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// Peer address.
    pub fn peer(&self) -> Address {
        self.info.peer
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.info.role
    }

    /// The host this connection belongs to.
    pub fn host(&self) -> &Host {
        &self.host
    }

    fn end_error(&self) -> Option<Error> {
        match *self.end_rx.borrow() {
            Some(LinkEnd::Disconnected(reason)) => Some(Error::Disconnected { reason }),
            Some(LinkEnd::TransportClosed) => Some(Error::TransportClosed(self.host.closed_reason())),
            None => None,
        }
    }

    /// Sends one ATT PDU (L2CAP channel 0x0004), fragmented to the controller's ACL size.
    pub fn send_att(&self, pdu: &[u8]) -> Result<(), Error> {
        if let Some(e) = self.end_error() {
            return Err(e);
        }
        {
            let mut inner = self.host.lock();
            inner.core.send_att(self.info.handle, pdu)?;
        }
        kick(&self.host.shared);
        Ok(())
    }

    /// Receives the next ATT PDU from the peer; fails once the link has ended and no PDU is left.
    pub async fn recv_att(&self) -> Result<Vec<u8>, Error> {
        let mut rx = self.att_rx.lock().await;
        let mut end = self.end_rx.clone();
        tokio::select! {
            biased;
            pdu = rx.recv() => match pdu {
                Some(p) => Ok(p),
                None => Err(self.end_error().unwrap_or(Error::TransportClosed(self.host.closed_reason()))),
            },
            _ = end.wait_for(|e| e.is_some()) => {
                // Deliver what arrived before the end first.
                match rx.try_recv() {
                    Ok(p) => Ok(p),
                    Err(_) => Err(self.end_error().unwrap_or(Error::TransportClosed(self.host.closed_reason()))),
                }
            }
        }
    }

    /// How the link ended, if it has.
    pub fn end(&self) -> Option<LinkEnd> {
        *self.end_rx.borrow()
    }

    /// Waits until the link ends and returns how.
    pub async fn closed(&self) -> LinkEnd {
        let mut end = self.end_rx.clone();
        let result = match end.wait_for(|e| e.is_some()).await {
            Ok(v) => v.unwrap_or(LinkEnd::TransportClosed),
            Err(_) => LinkEnd::TransportClosed,
        };
        result
    }

    /// Disconnects with `reason` (usually 0x13) and waits for Disconnection Complete; returns the
    /// reason the controller reported (0x16 Connection Terminated By Local Host).
    pub async fn disconnect(&self, reason: u8) -> Result<u8, Error> {
        if let Some(e) = self.end_error() {
            return Err(e);
        }
        self.host.command(Command::Disconnect { handle: self.info.handle, reason }).await?;
        match tokio::time::timeout(COMMAND_TIMEOUT, self.closed()).await {
            Ok(LinkEnd::Disconnected(r)) => Ok(r),
            Ok(LinkEnd::TransportClosed) => Err(Error::TransportClosed(self.host.closed_reason())),
            Err(_) => Err(Error::Timeout("Disconnection Complete")),
        }
    }

    async fn wait_link_event<T>(
        &self,
        mut rx: broadcast::Receiver<LinkEvent>,
        what: &'static str,
        pick: impl Fn(&LinkEvent) -> Option<T>,
    ) -> Result<T, Error> {
        let wait = async {
            loop {
                match rx.recv().await {
                    Ok(ev) => {
                        if let Some(t) = pick(&ev) {
                            return Ok(t);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(self.end_error().unwrap_or(Error::TransportClosed(self.host.closed_reason())))
                    }
                }
            }
        };
        tokio::select! {
            r = wait => r,
            end = self.closed() => Err(match end {
                LinkEnd::Disconnected(reason) => Error::Disconnected { reason },
                LinkEnd::TransportClosed => Error::TransportClosed(self.host.closed_reason()),
            }),
            _ = tokio::time::sleep(Duration::from_secs(30)) => Err(Error::Timeout(what)),
        }
    }

    /// As central, changes the connection parameters (Core Vol 4 Part E §7.8.18); returns the
    /// new interval, latency and timeout once the controller reports them.
    pub async fn update_parameters(&self, params: ConnParams) -> Result<(u16, u16, u16), Error> {
        let rx = self.events.subscribe();
        self.host.command(Command::LeConnectionUpdate { handle: self.info.handle, params }).await?;
        let (status, i, l, t) = self
            .wait_link_event(rx, "LE Connection Update Complete", |e| match *e {
                LinkEvent::Updated { status, interval, latency, supervision_timeout } => {
                    Some((status, interval, latency, supervision_timeout))
                }
                _ => None,
            })
            .await?;
        if status != 0 {
            return Err(Error::Command { opcode: Opcode::LE_CONNECTION_UPDATE, name: "LE Connection Update", status });
        }
        Ok((i, l, t))
    }

    /// As peripheral, asks the central for new parameters over L2CAP (Core Vol 3 Part A §4.20);
    /// returns whether the central accepted.
    pub async fn request_parameters(&self, params: ConnParams) -> Result<bool, Error> {
        let rx = self.events.subscribe();
        self.host.lock().core.request_connection_parameters(self.info.handle, &params)?;
        kick(&self.host.shared);
        self.wait_link_event(rx, "Connection Parameter Update Response", |e| match *e {
            LinkEvent::ParamAnswer { accepted } => Some(accepted),
            _ => None,
        })
        .await
    }

    /// Suggests a link-layer data length (Core Vol 4 Part E §7.8.33). The controller may keep the
    /// current length; a later Data Length Change event is logged if it changes.
    pub async fn set_data_length(&self, tx_octets: u16, tx_time: u16) -> Result<(), Error> {
        self.host.command(Command::LeSetDataLength { handle: self.info.handle, tx_octets, tx_time }).await.map(drop)
    }

    /// Waits for the next LE Data Length Change on this link: (max TX octets, max RX octets).
    pub async fn data_length_changed(&self) -> Result<(u16, u16), Error> {
        let rx = self.events.subscribe();
        self.wait_link_event(rx, "LE Data Length Change", |e| match *e {
            LinkEvent::DataLength { max_tx_octets, max_rx_octets } => Some((max_tx_octets, max_rx_octets)),
            _ => None,
        })
        .await
    }

    /// Requests PHYs (bit0 1M, bit1 2M, bit2 Coded) and waits for LE PHY Update Complete
    /// (Core Vol 4 Part E §7.8.49); returns the (TX, RX) PHYs in use.
    pub async fn set_phy(&self, tx_phys: u8, rx_phys: u8) -> Result<(u8, u8), Error> {
        let rx = self.events.subscribe();
        self.host
            .command(Command::LeSetPhy { handle: self.info.handle, all_phys: 0, tx_phys, rx_phys, phy_options: 0 })
            .await?;
        let (status, tx, rxp) = self
            .wait_link_event(rx, "LE PHY Update Complete", |e| match *e {
                LinkEvent::Phy { status, tx_phy, rx_phy } => Some((status, tx_phy, rx_phy)),
                _ => None,
            })
            .await?;
        if status != 0 {
            return Err(Error::Command { opcode: Opcode::LE_SET_PHY, name: "LE Set PHY", status });
        }
        Ok((tx, rxp))
    }
}

/// Resolves once the host has been dropped.
async fn host_dropped(alive: &mut watch::Receiver<()>) {
    while alive.changed().await.is_ok() {}
}

async fn read_loop(
    shared: std::sync::Weak<Shared>,
    mut reader: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    mut alive: watch::Receiver<()>,
) {
    let mut buf = vec![0u8; 4096];
    let why = loop {
        let read = tokio::select! {
            r = reader.read(&mut buf) => r,
            _ = host_dropped(&mut alive) => return,
        };
        let n = match read {
            Ok(0) => break "the controller closed the connection".to_string(),
            Ok(n) => n,
            Err(e) => break format!("read error: {e}"),
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let chunk = buf.get(..n).unwrap_or(&[]);
        let transmit = {
            let mut inner = lock(&shared);
            let inner = &mut *inner;
            let links = &inner.links;
            let gatt = &mut inner.gatt;
            let mut replies: Vec<(ConnHandle, Vec<u8>)> = Vec::new();
            inner.core.receive(chunk, &mut |handle, pdu| {
                // Requests, commands and confirmations go to the GATT server, if there is one;
                // everything else (responses, notifications, indications) to the connection.
                let for_server = pdu.first().is_some_and(|&op| {
                    gattling_proto::att::opcode::is_request(op)
                        || gattling_proto::att::opcode::is_command(op)
                        || op == gattling_proto::att::opcode::HANDLE_VALUE_CFM
                });
                if let (true, Some(g)) = (for_server, gatt.as_mut()) {
                    let now = g.now();
                    let crate::gatt::GattState { server, hooks, scratch, .. } = g;
                    let conn = gattling_proto::gatt::ConnId(handle);
                    if crate::gatt::in_hooks(|| server.handle(conn, pdu, now, hooks, scratch)) {
                        replies.push((handle, scratch.clone()));
                    }
                } else if let Some(link) = links.get(&handle) {
                    let _ = link.att_tx.send(pdu.to_vec());
                }
            });
            for (handle, pdu) in replies {
                let _ = inner.core.send_att(handle, &pdu);
            }
            dispatch_events(&shared, inner);
            inner.core.has_transmit()
        };
        // Send only when the controller's input produced something (command credits freed
        // queued commands, ACL credits freed fragments, automatic replies).
        if transmit {
            kick(&shared);
        }
    };
    if let Some(shared) = shared.upgrade() {
        tracing::warn!(transport = %shared.description, "transport closed: {why}");
        close(&shared, why);
    }
}

/// Fails everything pending: the controller is gone.
fn close(shared: &Shared, why: String) {
    let mut inner = lock(shared);
    if inner.closed.is_some() {
        return;
    }
    inner.closed = Some(why.clone());
    for (_, (tx, _)) in inner.commands.drain() {
        let _ = tx.send(Err(Error::TransportClosed(why.clone())));
    }
    if let Some(tx) = inner.connecting.take() {
        let _ = tx.send(Err(Error::TransportClosed(why.clone())));
    }
    for (_, link) in inner.links.drain() {
        let _ = link.end_tx.send_replace(Some(LinkEnd::TransportClosed));
    }
    inner.scan = None;
    // Dropping the incoming sender ends `accept`.
    let (dead, _) = mpsc::unbounded_channel();
    inner.incoming = dead;
    drop(inner);
    shared.wake_writer.notify_one();
}

fn dispatch_events(shared: &Shared, inner: &mut Inner) {
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
                }
            }
            HostEvent::Connected(info) => {
                let (att_tx, att_rx) = mpsc::unbounded_channel();
                let (end_tx, _) = watch::channel(None);
                let link = LinkState { att_tx, att_rx: Some(att_rx), end_tx, events: broadcast::channel(16).0 };
                inner.links.insert(info.handle, link);
                if let Some(g) = inner.gatt.as_mut() {
                    g.server.connect(gattling_proto::gatt::ConnId(info.handle));
                }
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
            HostEvent::Disconnected { handle, reason } => {
                tracing::info!(
                    handle,
                    reason = format_args!("{reason:#04x}"),
                    "disconnected: {}",
                    status::name(reason)
                );
                if let Some(g) = inner.gatt.as_mut() {
                    g.server.disconnect(gattling_proto::gatt::ConnId(handle));
                }
                if let Some(link) = inner.links.remove(&handle) {
                    let _ = link.end_tx.send_replace(Some(LinkEnd::Disconnected(reason)));
                }
                let _ = shared.notifications.send(Notification::Disconnected { handle, reason });
            }
            HostEvent::Advertisement(report) => {
                if let Some(tx) = &inner.scan {
                    let _ = tx.send(report);
                }
            }
            HostEvent::ConnectionUpdated { handle, status, interval, latency, supervision_timeout } => {
                link_event(inner, handle, LinkEvent::Updated { status, interval, latency, supervision_timeout })
            }
            HostEvent::ConnectionParameterUpdateAnswered { handle, accepted } => {
                link_event(inner, handle, LinkEvent::ParamAnswer { accepted })
            }
            HostEvent::DataLengthChanged { handle, max_tx_octets, max_rx_octets } => {
                tracing::debug!(handle, max_tx_octets, max_rx_octets, "data length changed");
                link_event(inner, handle, LinkEvent::DataLength { max_tx_octets, max_rx_octets })
            }
            HostEvent::PhyUpdated { handle, status, tx_phy, rx_phy } => {
                link_event(inner, handle, LinkEvent::Phy { status, tx_phy, rx_phy })
            }
            HostEvent::EncryptionChanged { handle, status, enabled } => {
                tracing::info!(handle, status, enabled, "encryption change");
                if let Some(g) = inner.gatt.as_mut() {
                    // Without pairing there are no MITM-protected keys: encrypted, not authenticated.
                    g.server.set_security(gattling_proto::gatt::ConnId(handle), status == 0 && enabled, false);
                }
            }
            HostEvent::HardwareError(code) => {
                tracing::error!(code, "controller hardware error");
                let _ = shared.notifications.send(Notification::HardwareError(code));
            }
            HostEvent::Dropped(what) => tracing::warn!(?what, "dropped"),
        }
    }
}

fn link_event(inner: &Inner, handle: ConnHandle, ev: LinkEvent) {
    if let Some(link) = inner.links.get(&handle) {
        let _ = link.events.send(ev);
    }
}

/// The write side: the transport's writer and bytes it has not taken yet.
struct WriterState {
    io: Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
    pending: Vec<u8>,
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
            while let Some(p) = inner.core.poll_transmit() {
                w.pending.extend_from_slice(&p);
            }
        }
        if w.pending.is_empty() {
            return Pin::new(&mut w.io).poll_flush(cx);
        }
        match Pin::new(&mut w.io).poll_write(cx, &w.pending) {
            Poll::Ready(Ok(0)) => {
                return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::WriteZero, "transport took no bytes")))
            }
            Poll::Ready(Ok(n)) => {
                w.pending.drain(..n.min(w.pending.len()));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    }
}

/// Sends what the core has queued: inline when the transport takes it at once (no task switch
/// on the hot path), otherwise by waking the writer task.
fn kick(shared: &Shared) {
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

async fn write_loop(shared: std::sync::Weak<Shared>, wake: Arc<Notify>, mut alive: watch::Receiver<()>) {
    loop {
        // Wait without holding the host, so dropping it ends this task (and the transport).
        tokio::select! {
            _ = wake.notified() => {}
            _ = host_dropped(&mut alive) => return,
        }
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
