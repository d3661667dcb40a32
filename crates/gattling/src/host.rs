//! The async host API: one controller, driven by the driver tasks (reader, writer, timer) around the
//! sans-IO [`gattling_proto::host::Host`]; advertising, scanning, connecting and the registry of
//! links.

use crate::connection::Connection;
use crate::driver::{self, kick, lock, Inner, Shared};
use crate::error::Error;
use crate::transport::{self, Transport, TransportSpec};
use gattling_proto::att::bearer::MAX_MTU;
use gattling_proto::gap::{Address, AddressType, BdAddr};
use gattling_proto::hci::command::{AdvParams, Command, ConnParams, CreateConnection, Opcode};
use gattling_proto::hci::event::ret;
use gattling_proto::hci::{status, ConnHandle, Reason};
use gattling_proto::host::{self as core, AdvReport, ConnectionInfo, HostConfig};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, Notify};

/// How long the host waits for the controller to answer a command (Core Vol 4 Part E §4.4 sets none;
/// real controllers answer in milliseconds).
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Options for [`Host::open_with`].
#[derive(Clone, Debug, Default)]
pub struct HostOptions {
    /// Sans-IO core limits.
    pub config: HostConfig,
    /// A static random address to use instead of the controller's public address.
    pub random_address: Option<BdAddr>,
    /// The receive MTU every ATT bearer offers in Exchange MTU (23..=517; 0 means 517).
    pub att_mtu: u16,
    /// Record every HCI packet in this btsnoop file ([`crate::btsnoop`]).
    pub btsnoop: Option<Arc<crate::btsnoop::Btsnoop>>,
    /// Pairing, bonding and the pairing delegate ([`crate::security`]).
    pub security: crate::security::SecurityOptions,
}

/// How a connection ended, as seen by a [`Connection`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LinkEnd {
    /// Disconnection Complete with this reason.
    Disconnected(Reason),
    /// The transport to the controller closed.
    TransportClosed,
}

impl LinkEnd {
    /// The error a call on an ended link fails with.
    pub fn error(self, host: &Host) -> Error {
        match self {
            LinkEnd::Disconnected(reason) => Error::Disconnected { reason },
            LinkEnd::TransportClosed => Error::TransportClosed(host.closed_reason()),
        }
    }
}

/// Connection-level events delivered to [`Connection`] waiters.
#[derive(Clone, Debug)]
pub(crate) enum LinkEvent {
    Updated { status: u8, interval: u16, latency: u16, supervision_timeout: u16 },
    Phy { status: u8, tx_phy: u8, rx_phy: u8 },
    DataLength { max_tx_octets: u16, max_rx_octets: u16 },
    ParamAnswer { accepted: bool },
    Encryption { status: u8, encrypted: bool, key_size: u8 },
    KeyRefresh { status: u8 },
}

/// A link as the host knows it now ([`Host::link_state`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LinkState {
    /// Handle, role, peer and the connection parameters as last updated.
    pub info: ConnectionInfo,
    /// The bearer's ATT_MTU.
    pub att_mtu: u16,
    /// Maximum (TX, RX) link-layer payload octets (27 until a Data Length Change).
    pub data_length: (u16, u16),
    /// (TX, RX) PHYs (LE 1M until a PHY Update Complete).
    pub phy: (crate::Phy, crate::Phy),
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
        /// Why (an HCI error code).
        reason: Reason,
    },
    /// The controller reported a hardware error.
    HardwareError(u8),
    /// A link was secured by pairing (bond stored when `bonded`) or by encrypting with a bond's
    /// key (Core Vol 3 Part H §2.4).
    Secured {
        /// Handle.
        handle: ConnHandle,
        /// What the link has now.
        security: crate::security::LinkSecurity,
        /// The peer is bonded.
        bonded: bool,
    },
    /// Pairing on a link failed (Core Vol 3 Part H §3.5.5); `reason` is the Pairing Failed
    /// reason, 0 for the SMP timeout.
    PairingFailed {
        /// Handle.
        handle: ConnHandle,
        /// The Pairing Failed reason code.
        reason: u8,
        /// The peer sent it.
        remote: bool,
    },
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
    /// Interval in units of 0.625 ms (0 = 100 ms default): the minimum of the range.
    pub interval: u16,
    /// Maximum interval of the range (units of 0.625 ms; 0 = the same as `interval`).
    pub interval_max: u16,
    /// Advertising channels: bit 0 channel 37, bit 1 channel 38, bit 2 channel 39 (0 = all).
    pub channel_map: u8,
    /// Advertising filter policy (Core Vol 4 Part E §7.8.5): 0 any scanner and initiator, 1 scan
    /// requests from the Filter Accept List only, 2 connections from it only, 3 both.
    pub filter_policy: u8,
    /// Connectable advertising starts again after each connection is made, so more centrals
    /// can connect (the controller stops it at connection, Core Vol 6 Part B §4.4.2).
    pub auto_restart: bool,
}

/// Advertising reports a [`Scanner`] may have unread; later ones are dropped until it reads.
const SCAN_QUEUE: usize = 1024;

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
    rx: mpsc::Receiver<AdvReport>,
    stopped: bool,
}

impl Scanner {
    /// The next report, or `None` once scanning stopped or the transport closed. At most 1024
    /// unread reports are kept; later ones are dropped until the reader catches up.
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

/// Cancels a connection attempt whose [`Host::connect`] future was dropped before it finished.
struct AbandonedAttempt {
    host: Option<Host>,
}

impl Drop for AbandonedAttempt {
    fn drop(&mut self) {
        let Some(host) = self.host.take() else { return };
        let (tx, rx) = oneshot::channel();
        {
            let mut inner = host.lock();
            if inner.connecting.is_none() {
                return; // it settled already
            }
            // The dropped future's receiver is gone: the outcome comes here instead.
            inner.connecting = Some(tx);
            inner.connect_abandoned = true;
        }
        let settle = |host: &Host, timed_out: bool| {
            let mut inner = host.lock();
            if timed_out {
                inner.connecting = None;
            }
            inner.connect_abandoned = false;
            inner.connect_settled.send_modify(|g| *g += 1);
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            settle(&host, true);
            return;
        };
        rt.spawn(async move {
            let _ = host.command(Command::LeCreateConnectionCancel).await;
            let outcome = tokio::time::timeout(COMMAND_TIMEOUT, rx).await;
            if let Ok(Ok(Ok(info))) = &outcome {
                // It connected before the cancel took effect; nobody wants the link.
                if let Ok(c) = Connection::new(&host, *info) {
                    let _ = c.disconnect(status::REMOTE_USER_TERMINATED).await;
                }
            }
            settle(&host, outcome.is_err());
        });
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
        Opcode::READ_RSSI => "Read RSSI",
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
        Opcode::LE_ENABLE_ENCRYPTION => "LE Enable Encryption",
        Opcode::LE_LTK_REPLY => "LE Long Term Key Request Reply",
        Opcode::LE_LTK_NEG_REPLY => "LE Long Term Key Request Negative Reply",
        Opcode::READ_ENCRYPTION_KEY_SIZE => "Read Encryption Key Size",
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
        let spec: TransportSpec = spec.parse()?;
        let t = transport::open(&spec).await?;
        Self::start(t, options).await
    }

    /// Drives an already open transport and initialises the controller behind it.
    pub async fn start(t: Transport, options: HostOptions) -> Result<Host, Error> {
        let t = match &options.btsnoop {
            Some(snoop) => t.capture(snoop.clone()),
            None => t,
        };
        let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
        let local_mtu = if options.att_mtu == 0 { MAX_MTU } else { options.att_mtu };
        let mut config = options.config;
        config.security_manager = options.security.enabled;
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::new(core::Host::new(config), incoming_tx, local_mtu)),
            wake_writer: Arc::new(Notify::new()),
            wake_timer: Arc::new(Notify::new()),
            writer: Mutex::new(driver::WriterState::new(t.writer, t.packets)),
            tasks: Mutex::new(Vec::new()),
            notifications: broadcast::channel(64).0,
            incoming_rx: tokio::sync::Mutex::new(incoming_rx),
            description: t.description.clone(),
            epoch: tokio::time::Instant::now(),
        });
        let tasks = [
            tokio::spawn(driver::read_loop(Arc::downgrade(&shared), t.reader)).abort_handle(),
            tokio::spawn(driver::write_loop(Arc::downgrade(&shared), shared.wake_writer.clone())).abort_handle(),
            tokio::spawn(driver::timer_loop(Arc::downgrade(&shared))).abort_handle(),
        ];
        shared.tasks.lock().unwrap_or_else(|p| p.into_inner()).extend(tasks);
        let mut host = Host { shared, address: Address::default(), acl: (0, 0), supported_commands: [0; 64] };
        host.initialise(options.random_address).await?;
        {
            let mut inner = host.lock();
            inner.local_address = host.address;
            if options.security.enabled {
                inner.security = Some(crate::security::SecurityState::new(options.security, host.address));
            }
            crate::security::load_resolving_list(&mut inner, host.has_resolving_list());
        }
        host.kick();
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

    /// The own-address type for advertising, scanning and connecting; with privacy on, first
    /// renews the resolvable private address when it has expired (Core Vol 3 Part C §10.7).
    async fn own_address_type(&self) -> Result<u8, Error> {
        let next = {
            let now = self.shared.now();
            let mut inner = self.lock();
            match inner.security.as_mut() {
                Some(s) if s.private() => Some(s.next_private_address(now)),
                _ => None,
            }
        };
        match next {
            None => Ok(self.address.kind.peer_code()),
            Some(None) => Ok(AddressType::Random.peer_code()),
            Some(Some(rpa)) => {
                self.command(Command::LeSetRandomAddress(rpa)).await?;
                let mut inner = self.lock();
                inner.local_address = Address { addr: rpa, kind: AddressType::Random };
                // The timer renews it when it expires.
                crate::driver::arm_timer(&self.shared, &mut inner);
                drop(inner);
                tracing::debug!(address = %rpa, "new resolvable private address");
                Ok(AddressType::Random.peer_code())
            }
        }
    }

    /// The address peers see now: the current resolvable private address with privacy on,
    /// else [`Host::address`].
    pub fn address_on_air(&self) -> Address {
        self.lock().local_address
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.shared)
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Sends what the core has queued.
    pub(crate) fn kick(&self) {
        kick(&self.shared)
    }

    /// Microseconds on the host's clock (the bearers' time base).
    pub(crate) fn now(&self) -> u64 {
        self.shared.now()
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
            Opcode::LE_ADD_DEVICE_TO_RESOLVING_LIST => (34, 3),
            Opcode::LE_REMOVE_DEVICE_FROM_RESOLVING_LIST => (34, 4),
            Opcode::LE_CLEAR_RESOLVING_LIST => (34, 5),
            Opcode::LE_SET_ADDRESS_RESOLUTION_ENABLE => (35, 1),
            _ => return None,
        };
        Some(self.supported_commands.get(octet).is_some_and(|b| b & (1 << bit) != 0))
    }

    /// Whether the controller has a resolving list this host can use: it lists LE Add Device To,
    /// LE Remove Device From and LE Clear Resolving List and LE Set Address Resolution Enable
    /// (Core Vol 4 Part E §6.27, §7.8.38-§7.8.40, §7.8.44).
    pub fn has_resolving_list(&self) -> bool {
        [
            Opcode::LE_ADD_DEVICE_TO_RESOLVING_LIST,
            Opcode::LE_REMOVE_DEVICE_FROM_RESOLVING_LIST,
            Opcode::LE_CLEAR_RESOLVING_LIST,
            Opcode::LE_SET_ADDRESS_RESOLUTION_ENABLE,
        ]
        .into_iter()
        .all(|op| self.supports(op) == Some(true))
    }

    /// Whether the controller resolves bonded peers' private addresses now (its resolving list
    /// is loaded and address resolution enabled, Core Vol 6 Part B §4.7): then scan reports and
    /// connections show those peers by identity address with type
    /// [`AddressType::PublicIdentity`] / [`AddressType::RandomIdentity`].
    pub fn controller_resolves(&self) -> bool {
        self.lock().security.as_ref().is_some_and(crate::security::SecurityState::controller_resolves)
    }

    /// Registers the Long Term Key this host gives, as peripheral, when `peer` starts encryption
    /// with the same Rand and EDIV (LE Long Term Key Request Reply, Core Vol 4 Part E §7.8.25);
    /// requests without a matching key are answered negatively (§7.8.26). `ltk` and `rand` are
    /// in HCI order (least significant octet first); LE Secure Connections keys use Rand 0, EDIV 0
    /// (Core Vol 3 Part H §2.4.4.1). Replaces any key registered for `peer`.
    pub fn set_long_term_key(&self, peer: Address, ltk: [u8; 16], rand: u64, ediv: u16) {
        self.lock().keys.insert(peer, (ltk, rand, ediv));
    }

    /// Forgets the Long Term Key registered for `peer`, so its next request is answered negatively
    /// (Core Vol 4 Part E §7.8.26); returns whether there was one.
    pub fn remove_long_term_key(&self, peer: Address) -> bool {
        self.lock().keys.remove(&peer).is_some()
    }

    /// The links that are up, in no particular order.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.lock().links.0.values().map(|l| l.info).collect()
    }

    /// A [`Connection`] for the link with this handle (any number may exist for one link).
    pub fn connection(&self, handle: ConnHandle) -> Result<Connection, Error> {
        let info = self.lock().links.0.get(&handle).map(|l| l.info);
        match info {
            Some(info) => Connection::new(self, info),
            None => Err(Error::Disconnected { reason: gattling_proto::hci::Reason(status::UNKNOWN_CONNECTION_ID) }),
        }
    }

    /// What is known now about a link: its parameters as last updated, the ATT_MTU, the data
    /// length and the PHYs (Core Vol 4 Part E §7.7.65.3, §7.7.65.7, §7.7.65.12).
    pub fn link_state(&self, handle: ConnHandle) -> Option<LinkState> {
        let inner = self.lock();
        let l = inner.links.0.get(&handle)?;
        Some(LinkState {
            info: l.info,
            att_mtu: l.bearer.mtu(),
            data_length: l.data_length,
            phy: (crate::Phy::from_code(l.phy.0), crate::Phy::from_code(l.phy.1)),
        })
    }

    /// The link to `peer`, if one is up.
    pub fn connection_to(&self, peer: Address) -> Option<Connection> {
        let info = self.lock().links.0.values().find(|l| l.info.peer == peer).map(|l| l.info)?;
        Connection::new(self, info).ok()
    }

    /// The ATT_MTU of a link's bearer (Core Vol 3 Part F §3.4.2.2): one value, whichever side
    /// exchanged it.
    pub fn att_mtu(&self, handle: ConnHandle) -> Option<u16> {
        self.lock().links.0.get(&handle).map(|l| l.bearer.mtu())
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
        let (id, rx) = {
            let mut inner = self.lock();
            if let Some(why) = &inner.closed {
                return Err(Error::TransportClosed(why.clone()));
            }
            let id = inner.core.send_command(&cmd);
            let (tx, rx) = oneshot::channel();
            inner.commands.insert(id, (tx, command_name(opcode)));
            (id, rx)
        };
        kick(&self.shared);
        match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::TransportClosed(self.closed_reason())),
            Err(_) => {
                // Forget the waiter, and take back the command credit it holds so the commands
                // after it are not stuck behind it.
                {
                    let mut inner = self.lock();
                    inner.commands.remove(&id);
                    inner.core.abandon_command(id);
                }
                kick(&self.shared);
                Err(Error::Timeout("the controller did not answer a command"))
            }
        }
    }

    pub(crate) fn closed_reason(&self) -> String {
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
        let own_address_type = self.own_address_type().await?;
        let params = AdvParams {
            interval_min: interval,
            interval_max: if opts.interval_max == 0 { interval } else { opts.interval_max.max(interval) },
            adv_type,
            own_address_type,
            channel_map: if opts.channel_map & 0x07 == 0 { 0x07 } else { opts.channel_map & 0x07 },
            filter_policy: opts.filter_policy,
            ..AdvParams::default()
        };
        self.command(Command::LeSetAdvertisingParameters(params)).await?;
        self.command(Command::LeSetAdvertisingData(opts.data.clone())).await?;
        self.command(Command::LeSetScanResponseData(opts.scan_response.clone())).await?;
        self.command(Command::LeSetAdvertisingEnable(true)).await?;
        let restart = opts.auto_restart && opts.kind == AdvertisingKind::Connectable;
        let mut inner = self.lock();
        inner.auto_restart = restart.then(|| opts.clone());
        inner.advertising = true;
        Ok(())
    }

    /// Stops advertising (and its automatic restart).
    pub async fn stop_advertising(&self) -> Result<(), Error> {
        {
            let mut inner = self.lock();
            inner.auto_restart = None;
            inner.advertising = false;
        }
        self.command(Command::LeSetAdvertisingEnable(false)).await.map(drop)
    }

    /// Replaces the pairing options (capabilities, delegate, bond store, privacy) from now on:
    /// links that are not pairing right now take them at once, a pairing in progress finishes
    /// with the old ones (Core Vol 3 Part H §2.3).
    pub fn set_security(&self, options: crate::security::SecurityOptions) {
        {
            let mut inner = self.lock();
            let inner = &mut *inner;
            inner.core.set_security_manager(options.enabled);
            inner.security = options.enabled.then(|| crate::security::SecurityState::new(options, self.address));
            crate::security::load_resolving_list(inner, self.has_resolving_list());
            let local = inner.local_address;
            for link in inner.links.0.values_mut() {
                link.security.reconfigure(inner.security.as_ref(), link.info.role, local, link.info.peer_on_air);
            }
        }
        self.kick();
    }

    /// With privacy on, takes a new resolvable private address now (pausing advertising around
    /// the change, Core Vol 4 Part E §7.8.4) and returns it; `None` without privacy, or while
    /// scanning or connecting (the next start takes a new one then) (Core Vol 3 Part C §10.7).
    pub fn renew_private_address(&self) -> Option<BdAddr> {
        let now = self.shared.now();
        let new = crate::security::rotate_private_address(&mut self.lock(), now, true);
        self.kick();
        new
    }

    /// Starts scanning; reports arrive on the returned [`Scanner`].
    pub async fn scan(&self, opts: ScanOptions) -> Result<Scanner, Error> {
        let (tx, rx) = mpsc::channel(SCAN_QUEUE);
        {
            let mut inner = self.lock();
            if inner.scan.is_some() {
                return Err(Error::Busy("scanning"));
            }
            inner.scan = Some(tx);
        }
        let setup = async {
            let own_address_type = self.own_address_type().await?;
            self.command(Command::LeSetScanParameters {
                scan_type: opts.active as u8,
                interval: opts.interval,
                window: opts.window.min(opts.interval),
                own_address_type,
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
    ///
    /// Cancellation-safe: dropping the future (e.g. a caller's own timeout or Ctrl-C) cancels the
    /// attempt at the controller, and a later `connect` waits for that cancellation to settle
    /// instead of failing as busy; a connection that completed meanwhile is disconnected.
    pub async fn connect(&self, peer: Address, opts: ConnectOptions) -> Result<Connection, Error> {
        let own_address_type = self.own_address_type().await?;
        let (tx, rx) = oneshot::channel();
        let mut tx = Some(tx);
        loop {
            let mut settled = {
                let mut inner = self.lock();
                if inner.connecting.is_none() {
                    inner.connecting = tx.take();
                    break;
                }
                if !inner.connect_abandoned {
                    return Err(Error::Busy("a connection attempt"));
                }
                inner.connect_settled.subscribe()
            };
            if tokio::time::timeout(COMMAND_TIMEOUT * 2, settled.changed()).await.is_err() {
                return Err(Error::Busy("a connection attempt"));
            }
        }
        let mut guard = AbandonedAttempt { host: Some(self.clone()) };
        let result = self.connect_pending(peer, own_address_type, opts, rx).await;
        guard.host = None;
        result
    }

    async fn connect_pending(
        &self,
        peer: Address,
        own_address_type: u8,
        opts: ConnectOptions,
        mut rx: oneshot::Receiver<Result<ConnectionInfo, Error>>,
    ) -> Result<Connection, Error> {
        // An identity type (a peer the controller resolved) stays 0x02/0x03 when the controller
        // resolves: it then connects to whichever private address resolves to that identity
        // (Core Vol 4 Part E §7.8.12); otherwise it is the plain public/random type.
        let peer_address_type = if self.controller_resolves() { peer.kind.code() } else { peer.kind.peer_code() };
        let create = Command::LeCreateConnection(CreateConnection {
            scan_interval: 0x60,
            scan_window: 0x60,
            filter_policy: 0,
            peer_address_type,
            peer_address: peer.addr,
            own_address_type,
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
        Connection::new(self, info)
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
            Some(info) => Connection::new(self, info),
            None => Err(Error::TransportClosed(self.closed_reason())),
        }
    }
}
