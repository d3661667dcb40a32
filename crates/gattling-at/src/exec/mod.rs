//! The command executor on gattling's runtime: [`serve`] runs one AT session over any byte
//! stream (stdin/stdout, TCP, a pseudo-terminal, a serial port).
//!
//! - At start (and after `AT+CPWROFF`) the host is opened, the stored settings loaded and
//!   `+STARTUP` printed.
//! - Input bytes go through the [`Engine`]; each command runs to its final result before the
//!   next is taken; the echo, the information lines and the result are written in that order.
//! - Events (connections, notifications, writes, read requests, background discovery) become
//!   URCs on a queue that is written only between commands, never inside a response, and paced
//!   at the configured bytes per second so a client reading at UART speed loses nothing.
//! - AT connection handles are small numbers (0, 1, ...) mapped to the link registry's HCI
//!   handles, in both roles.
//! - Security (`security`): AT+UBTIOC and AT+UBTBSM are stored at once and configure the
//!   Security Manager when the host is opened (start, AT+CPWROFF), because the runtime takes
//!   its pairing options only then; AT+UBTPM takes effect at once. Pairing questions become
//!   `+UEBTUC` / `+UEBTUPD` / `+UEBTUPE`, outcomes `+UEBTB`; bonds live in
//!   `Options::host.security.bonds` (kept across restarts, removed by AT+USYFR).

mod client;
mod gap;
mod security;
mod server;
mod settings;

pub use security::MAX_BONDS;

use crate::codes::AtError;
use crate::engine::{Command, Engine, Form, Line, Registers};
use crate::format::{self, Field};
use crate::params::{AddrKind, Args, BdAddr};
use gattling::gatt::{GattServer, ServerEvent, WriteKind};
use gattling::proto::gap::{Address, AddressType};
use gattling::proto::hci::ConnHandle;
use gattling::proto::Uuid;
use gattling::{Connection, GattClient, Host, HostOptions, Notification, ReadRequest};
use settings::Settings;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The module's model name (`AT+CGMM`).
pub const MODEL: &str = "NORA-W36";
/// The manufacturer (`AT+CGMI`).
pub const MANUFACTURER: &str = "u-blox";
/// The type code (`ATI0`).
pub const TYPE_CODE: &str = "NORA-W36X-00B";
/// The software version (`AT+CGMR`, `ATI9`): the command set's version and gattling's.
pub const VERSION: &str = concat!("3.4.0-gattling-", env!("CARGO_PKG_VERSION"));

/// The ATT_MTU the module offers (as a NORA-W36 does).
const MODULE_MTU: u16 = 247;
/// Bound on one GATT command, well within ucxclient's 10 s.
const GATT_TIMEOUT: Duration = Duration::from_secs(8);

/// How [`serve`] runs.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The controller transport (`virtual:NAME`, `tcp-client:HOST:PORT`, `serial:...`, `hci-socket:N`).
    pub transport: String,
    /// Host options (random address, ATT MTU: 0 means the module's 247).
    pub host: HostOptions,
    /// Where `AT&W` stores the settings (`None`: not persisted).
    pub settings: Option<PathBuf>,
    /// The default local name (`AT+UBTLN` before any is set); `None`: `NORA-W36-XXXXXX` from
    /// the last three address bytes.
    pub device_name: Option<String>,
    /// URC pacing in bytes per second (e.g. baud/10 for a UART-speed reader); `None`: unpaced.
    pub urc_bytes_per_sec: Option<u32>,
}

/// One field of a queued URC.
#[derive(Clone, Debug)]
pub(crate) enum UrcField {
    Int(i64),
    Hex(Vec<u8>),
    Str(String),
    Addr(BdAddr),
}

/// A queued unsolicited result code.
#[derive(Clone, Debug)]
pub(crate) struct Urc {
    name: &'static str,
    fields: Vec<UrcField>,
}

impl Urc {
    pub(crate) fn new(name: &'static str, fields: Vec<UrcField>) -> Urc {
        Urc { name, fields }
    }

    fn format(&self, out: &mut Vec<u8>, regs: &Registers) {
        let fields: Vec<Field<'_>> = self
            .fields
            .iter()
            .map(|f| match f {
                UrcField::Int(i) => Field::Int(*i),
                UrcField::Hex(h) => Field::Hex(h),
                UrcField::Str(s) => Field::Str(s),
                UrcField::Addr(a) => Field::Addr(*a),
            })
            .collect();
        if self.name == "+STARTUP" {
            format::text(out, regs, self.name);
        } else {
            format::info(out, regs, self.name, &fields);
        }
    }
}

/// A pending `AT+UBTGWL` sequence on one link.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    handle: u16,
    reliable: bool,
    /// Where the gathered bytes go in the attribute.
    start: usize,
    value: Vec<u8>,
}

/// One link as the AT layer sees it.
pub(crate) struct Link {
    hci: ConnHandle,
    conn: Connection,
    peer: Address,
    /// `+UEBTC` was printed.
    announced: bool,
    client: Option<GattClient>,
    prepared: Option<Prepared>,
    /// Reads of host-controlled characteristics waiting for `AT+UBTGRRR`.
    reads: VecDeque<ReadRequest>,
    /// Value handles of indications sent with `AT+UBTGIS`, waiting for confirmation.
    indications: VecDeque<u16>,
}

/// The AT handle ↔ link map.
#[derive(Default)]
pub(crate) struct Links {
    by_at: BTreeMap<u8, Link>,
}

impl Links {
    fn at_of(&self, hci: ConnHandle) -> Option<u8> {
        self.by_at.iter().find(|(_, l)| l.hci == hci).map(|(h, _)| *h)
    }

    fn free(&self) -> u8 {
        (0..=u8::MAX).find(|h| !self.by_at.contains_key(h)).unwrap_or(u8::MAX)
    }
}

/// State shared by the executor and the event tasks of one power cycle.
pub(crate) struct Shared {
    links: Mutex<Links>,
    urc: mpsc::UnboundedSender<Urc>,
    pairing: Mutex<security::Pairing>,
}

impl Shared {
    fn links(&self) -> MutexGuard<'_, Links> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pairing(&self) -> MutexGuard<'_, security::Pairing> {
        self.pairing.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn urc(&self, name: &'static str, fields: Vec<UrcField>) {
        let _ = self.urc.send(Urc::new(name, fields));
    }
}

/// The AT form of an address.
pub(crate) fn at_addr(a: &Address) -> BdAddr {
    let mut bytes = a.addr.0;
    bytes.reverse();
    let kind = match a.kind {
        AddressType::Public | AddressType::PublicIdentity => AddrKind::Public,
        _ => AddrKind::Random,
    };
    BdAddr { bytes, kind }
}

/// A UUID from its AT form (2 or 16 bytes in reading order).
pub(crate) fn uuid_from_at(b: &[u8]) -> Result<Uuid, AtError> {
    match b.len() {
        2 => Ok(Uuid::U16(u16::from_be_bytes([b[0], b[1]]))),
        16 => {
            let mut le = [0u8; 16];
            le.copy_from_slice(b);
            le.reverse();
            Ok(Uuid::U128(le).shortest())
        }
        _ => Err(AtError::BYTE_ARRAY_LENGTH),
    }
}

/// The AT form of a UUID: 16-bit as 2 bytes, anything else as 16, reading order.
pub(crate) fn uuid_to_at(u: &Uuid) -> Vec<u8> {
    match u.shortest() {
        Uuid::U16(v) => v.to_be_bytes().to_vec(),
        other => {
            let mut b = other.to_u128_le();
            b.reverse();
            b.to_vec()
        }
    }
}

/// The AT error for a runtime error.
pub(crate) fn at_error(e: &gattling::Error) -> AtError {
    use gattling::proto::gatt::client::ClientError;
    match e {
        gattling::Error::Gatt(ClientError::Att { code, .. }) => AtError::from_att(code.0),
        gattling::Error::Gatt(_) => AtError::GATT_UNKNOWN,
        gattling::Error::Disconnected { .. } => AtError::NOT_CONNECTED,
        gattling::Error::Timeout(_) => AtError::TIMEOUT,
        gattling::Error::Busy(_) => AtError::IN_PROGRESS,
        gattling::Error::Bearer(_) => AtError::PROCEDURE_IN_PROGRESS,
        gattling::Error::InvalidArgument(_) => AtError::INVALID_PARAMETER,
        gattling::Error::Unsupported(_) => AtError::NOT_SUPPORTED,
        gattling::Error::TransportClosed(_) | gattling::Error::Transport(_) => AtError::DEVICE_ERROR,
        _ => AtError::UNKNOWN,
    }
}

/// A background scan (`AT+UBTBGD`).
pub(crate) struct Background {
    kind: i64,
    mode: i64,
    output: i64,
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// One power cycle: the host and everything built on it.
pub(crate) struct Session {
    host: Host,
    shared: Arc<Shared>,
    server: GattServer,
    settings: Settings,
    /// The settings at boot (what `AT&W` changes and `AT+USYFR` resets are stored; the
    /// running values are these plus the changes made since).
    options: Options,
    regs: Registers,
    out: Vec<u8>,
    last_error: u16,
    tasks: Vec<JoinHandle<()>>,
    background: Option<Background>,
    gatt: server::Builder,
    advertising: bool,
    /// The Bluetooth mode this power cycle runs in (AT+UBTM takes effect after AT&W and a
    /// restart): 0 off, 1 central, 2 peripheral, 3 both.
    mode: u8,
}

impl Drop for Session {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(b) = &self.background {
            b.task.abort();
        }
    }
}

impl Session {
    async fn start(options: &Options, urc: mpsc::UnboundedSender<Urc>) -> Result<Session, gattling::Error> {
        let settings = Settings::load(options.settings.as_deref());
        let mut host_options = options.host.clone();
        if host_options.att_mtu == 0 {
            host_options.att_mtu = MODULE_MTU;
        }
        let pairing = security::Pairing { enabled: settings.pairing_mode, ..Default::default() };
        let shared = Arc::new(Shared { links: Mutex::new(Links::default()), urc, pairing: Mutex::new(pairing) });
        // AT+UBTIOC and AT+UBTBSM as stored; the questions go to the AT user as URCs.
        security::apply(&mut host_options.security, settings.io_cap, settings.security_mode);
        host_options.security.delegate = Arc::new(security::AtDelegate { shared: Arc::downgrade(&shared) });
        let host = Host::open_with(&options.transport, host_options).await?;
        let notes = host.notifications();
        let name = settings.local_name.clone().unwrap_or_else(|| default_name(options, &host));
        let server = host.gatt_server(&name, 0);
        let events = server.events();
        let regs =
            Registers { s2: settings.s2, s3: settings.s3, s4: settings.s4, s5: settings.s5, echo: settings.echo };
        let mut s = Session {
            host: host.clone(),
            shared: shared.clone(),
            server: server.clone(),
            settings,
            options: options.clone(),
            regs,
            out: Vec::new(),
            last_error: 0,
            tasks: Vec::new(),
            background: None,
            gatt: server::Builder::default(),
            advertising: false,
            mode: 3,
        };
        s.mode = s.settings.bt_mode;
        s.tasks.push(tokio::spawn(pump(shared, host, server, notes, events)));
        if s.settings.advertising && s.mode & 2 != 0 {
            if let Err(e) = s.start_advertising().await {
                tracing::warn!(error = %e, "cannot start stored advertising");
            }
        }
        Ok(s)
    }

    /// Ends the power cycle: every task stopped and awaited, so the host is released.
    async fn stop(mut self) {
        let mut tasks = std::mem::take(&mut self.tasks);
        if let Some(b) = self.background.take() {
            b.task.abort();
            tasks.push(b.task);
        }
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    fn info(&mut self, name: &str, fields: &[Field<'_>]) {
        format::info(&mut self.out, &self.regs, name, fields);
    }

    fn text(&mut self, t: &str) {
        format::text(&mut self.out, &self.regs, t);
    }

    pub(crate) fn local_name(&self) -> String {
        self.settings.local_name.clone().unwrap_or_else(|| default_name(&self.options, &self.host))
    }

    /// The link behind an AT handle, or ERROR:16.
    pub(crate) fn conn(&self, at: i64) -> Result<Connection, AtError> {
        let links = self.shared.links();
        u8::try_from(at).ok().and_then(|h| links.by_at.get(&h)).map(|l| l.conn.clone()).ok_or(AtError::NOT_CONNECTED)
    }

    /// The GATT client of an AT handle's link (created on first use).
    pub(crate) async fn client(&self, at: i64) -> Result<GattClient, AtError> {
        let existing = {
            let links = self.shared.links();
            let h = u8::try_from(at).map_err(|_| AtError::NOT_CONNECTED)?;
            let link = links.by_at.get(&h).ok_or(AtError::NOT_CONNECTED)?;
            link.client.clone().ok_or_else(|| link.conn.clone())
        };
        match existing {
            Ok(c) => Ok(c),
            Err(conn) => GattClient::new(conn, gattling::ClientOptions { mtu: None }).await.map_err(|e| at_error(&e)),
        }
    }

    /// Runs one command line; returns true when the stack must restart (`AT+CPWROFF`).
    async fn run(&mut self, line: Line) -> bool {
        self.out.clear();
        let mut restart = false;
        let outcome = match line {
            Line::Command(cmd) => {
                let r = self.exec(&cmd).await;
                restart = r.is_ok() && cmd.name == "+CPWROFF";
                r
            }
            Line::Invalid(e) => Err(e),
            Line::TooLong => Err(AtError::INVALID_ARGUMENTS),
        };
        if let Err(e) = outcome {
            self.last_error = e.code();
        }
        let extended = self.settings.extended_errors;
        format::result(&mut self.out, &self.regs, outcome, extended);
        restart
    }

    async fn exec(&mut self, cmd: &Command) -> Result<(), AtError> {
        let name = cmd.name.as_str();
        let form = cmd.form;
        if form == Form::Test {
            // The syntax test of every known command answers OK.
            return if is_known(name) { Ok(()) } else { Err(AtError::INVALID_COMMAND) };
        }
        let args = || Args::parse(&cmd.params);
        match (name, form) {
            ("", Form::Action) => Ok(()),
            ("E", Form::Action) => {
                let a = Args::parse(&cmd.params)?;
                let v = if a.is_empty() { 0 } else { a.int(0, 0, 1)? };
                self.regs.echo = v == 1;
                self.settings.echo = v == 1;
                Ok(())
            }
            ("E", Form::Read) => {
                let v = if self.regs.echo { "1" } else { "0" };
                self.text(v);
                Ok(())
            }
            ("I", Form::Action) => {
                let a = Args::parse(&cmd.params)?;
                let v = if a.is_empty() { 0 } else { a.int(0, 0, 9)? };
                match v {
                    0 => self.text(TYPE_CODE),
                    9 => {
                        let t = format!("{},{}", format::quoted(VERSION), format::quoted(&self.serial()));
                        self.text(&t);
                    }
                    _ => return Err(AtError::INVALID_ARGUMENTS),
                }
                Ok(())
            }
            ("+CGMI" | "+GMI", Form::Action) => {
                self.text(MANUFACTURER);
                Ok(())
            }
            ("+CGMM" | "+GMM", Form::Action) => {
                self.text(MODEL);
                Ok(())
            }
            ("+CGMR" | "+GMR", Form::Action) => {
                self.text(VERSION);
                Ok(())
            }
            ("+CGSN" | "+GSN", Form::Action) => {
                let s = self.serial();
                self.text(&s);
                Ok(())
            }
            ("+USYEE", Form::Set) => {
                let a = args()?;
                a.count(1, 1)?;
                self.settings.extended_errors = a.enumerator(0, &[0, 1])? == 1;
                Ok(())
            }
            ("+USYEE", Form::Read) => {
                let v = self.settings.extended_errors as i64;
                self.info("+USYEE", &[Field::Int(v)]);
                Ok(())
            }
            ("+USYEC", Form::Read) => {
                let v = self.last_error as i64;
                self.info("+USYEC", &[Field::Int(v)]);
                Ok(())
            }
            ("&W", Form::Action) => self.store(),
            ("+USYFR" | "+USYDS", Form::Action) => {
                if let Some(p) = &self.options.settings {
                    Settings::default().store(p).map_err(|_| AtError::DEVICE_ERROR)?;
                }
                if name == "+USYFR" {
                    // A factory restore also removes the bonds; default settings keep them.
                    security::remove_all(self.options.host.security.bonds.as_ref())?;
                }
                Ok(())
            }
            ("+CPWROFF", Form::Action) => Ok(()),
            ("S2" | "S3" | "S4" | "S5", Form::Set) => {
                let a = args()?;
                a.count(1, 1)?;
                let v = a.int(0, 0, 127)? as u8;
                match name {
                    "S2" => self.regs.s2 = v,
                    "S3" => self.regs.s3 = v,
                    "S4" => self.regs.s4 = v,
                    _ => self.regs.s5 = v,
                }
                Ok(())
            }
            ("S2" | "S3" | "S4" | "S5", Form::Read) => {
                let v = match name {
                    "S2" => self.regs.s2,
                    "S3" => self.regs.s3,
                    "S4" => self.regs.s4,
                    _ => self.regs.s5,
                };
                self.text(&v.to_string());
                Ok(())
            }
            _ if name.starts_with("+UBTG") => {
                if let Some(r) = self.exec_client(name, form, &cmd.params).await {
                    return r;
                }
                match self.exec_server(name, form, &cmd.params).await {
                    Some(r) => r,
                    None => Err(AtError::INVALID_COMMAND),
                }
            }
            _ if name.starts_with("+UBT") && !self.role_enabled(name) => Err(AtError::NOT_CONFIGURED),
            _ if name.starts_with("+UBT") => {
                if let Some(r) = self.exec_security(name, form, &cmd.params).await {
                    return r;
                }
                match self.exec_gap(name, form, &cmd.params).await {
                    Some(r) => r,
                    None => Err(AtError::INVALID_COMMAND),
                }
            }
            _ => Err(AtError::INVALID_COMMAND),
        }
    }

    /// Whether the Bluetooth mode of this power cycle allows the command: scanning and
    /// connecting need the central role, advertising the peripheral role, and with Bluetooth
    /// off only AT+UBTM itself works.
    fn role_enabled(&self, name: &str) -> bool {
        const CENTRAL: u8 = 1;
        const PERIPHERAL: u8 = 2;
        match name {
            "+UBTM" => true,
            "+UBTD" | "+UBTBGD" | "+UBTC" => self.mode & CENTRAL != 0,
            "+UBTAL" => self.mode & PERIPHERAL != 0,
            _ => self.mode != 0,
        }
    }

    fn serial(&self) -> String {
        let mut b = self.host.address().addr.0;
        b.reverse();
        b.iter().map(|x| format!("{x:02X}")).collect()
    }

    fn store(&mut self) -> Result<(), AtError> {
        self.settings.echo = self.regs.echo;
        self.settings.s2 = self.regs.s2;
        self.settings.s3 = self.regs.s3;
        self.settings.s4 = self.regs.s4;
        self.settings.s5 = self.regs.s5;
        if let Some(p) = &self.options.settings {
            self.settings.store(p).map_err(|e| {
                tracing::warn!(error = %e, path = %p.display(), "AT&W: cannot store settings");
                AtError::DEVICE_ERROR
            })?;
        }
        Ok(())
    }
}

fn default_name(options: &Options, host: &Host) -> String {
    if let Some(n) = &options.device_name {
        return n.clone();
    }
    let a = host.address().addr.0;
    format!("{MODEL}-{:02X}{:02X}{:02X}", a[2], a[1], a[0])
}

/// Every command name this executor knows (for the `=?` test form).
fn is_known(name: &str) -> bool {
    const KNOWN: &[&str] = &[
        "", "E", "I", "+CGMI", "+GMI", "+CGMM", "+GMM", "+CGMR", "+GMR", "+CGSN", "+GSN", "+USYEE", "+USYEC", "&W",
        "+USYFR", "+USYDS", "+CPWROFF", "S2", "S3", "S4", "S5",
    ];
    KNOWN.contains(&name)
        || gap::COMMANDS.contains(&name)
        || client::COMMANDS.contains(&name)
        || server::COMMANDS.contains(&name)
        || security::COMMANDS.contains(&name)
}

/// Turns link and server events into URCs, in the order they happened.
async fn pump(
    shared: Arc<Shared>,
    host: Host,
    server: GattServer,
    mut notes: tokio::sync::broadcast::Receiver<Notification>,
    mut events: gattling::gatt::ServerEvents,
) {
    struct AbortAll(Vec<JoinHandle<()>>);
    impl Drop for AbortAll {
        fn drop(&mut self) {
            for t in &self.0 {
                t.abort();
            }
        }
    }
    let mut link_tasks = AbortAll(Vec::new());
    loop {
        tokio::select! {
            biased;
            n = notes.recv() => match n {
                Ok(Notification::Connected(info)) => {
                    let Ok(conn) = host.connection(info.handle) else { continue };
                    let at = {
                        let mut links = shared.links();
                        let at = links.free();
                        links.by_at.insert(at, Link {
                            hci: info.handle,
                            conn: conn.clone(),
                            peer: info.peer,
                            announced: false,
                            client: None,
                            prepared: None,
                            reads: VecDeque::new(),
                            indications: VecDeque::new(),
                        });
                        at
                    };
                    link_tasks.0.retain(|t| !t.is_finished());
                    link_tasks.0.push(tokio::spawn(link_task(shared.clone(), at, conn)));
                }
                Ok(Notification::Disconnected { handle, .. }) => {
                    let mut links = shared.links();
                    if let Some(at) = links.at_of(handle) {
                        if let Some(link) = links.by_at.remove(&at) {
                            security::forget_pairing(&shared, link.peer);
                        }
                        shared.urc("+UEBTDC", vec![UrcField::Int(at as i64)]);
                    }
                }
                Ok(Notification::Secured { handle, bonded, .. }) => {
                    let peer = shared.links().by_at.values().find(|l| l.hci == handle).map(|l| l.peer);
                    if let Some(peer) = peer {
                        security::bonded(&shared, peer, security::secured_status(bonded));
                    }
                }
                Ok(Notification::PairingFailed { handle, reason, .. }) => {
                    let peer = shared.links().by_at.values().find(|l| l.hci == handle).map(|l| l.peer);
                    if let Some(peer) = peer {
                        security::bonded(&shared, peer, security::failed_status(reason));
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(n, "missed host notifications");
                }
                Err(_) => break,
            },
            e = events.next() => match e {
                Some(ServerEvent::Written { conn, value_handle, value, kind }) => {
                    let links = shared.links();
                    if let Some(at) = links.at_of(conn) {
                        let option = match kind {
                            WriteKind::Command => 0,
                            WriteKind::Request => 1,
                            WriteKind::Prepared => 2,
                        };
                        shared.urc("+UEBTGCW", vec![
                            UrcField::Int(at as i64),
                            UrcField::Int(value_handle as i64),
                            UrcField::Hex(value),
                            UrcField::Int(option),
                        ]);
                    }
                }
                Some(ServerEvent::Subscribed { conn, value_handle, cccd }) => {
                    let cccd_handle = value_handle.wrapping_add(1);
                    let is_cccd = server
                        .database()
                        .attribute(cccd_handle)
                        .is_some_and(|a| a.uuid == Uuid::U16(gattling::proto::gatt::uuids::CCCD));
                    let links = shared.links();
                    if let (Some(at), true) = (links.at_of(conn), is_cccd) {
                        shared.urc("+UEBTGCW", vec![
                            UrcField::Int(at as i64),
                            UrcField::Int(cccd_handle as i64),
                            UrcField::Hex(cccd.to_le_bytes().to_vec()),
                            UrcField::Int(1),
                        ]);
                    }
                }
                Some(ServerEvent::Confirmed { conn }) => {
                    let mut links = shared.links();
                    if let Some(at) = links.at_of(conn) {
                        if let Some(vh) = links.by_at.get_mut(&at).and_then(|l| l.indications.pop_front()) {
                            shared.urc("+UEBTGIC", vec![UrcField::Int(at as i64), UrcField::Int(vh as i64)]);
                        }
                    }
                }
                None => break,
            },
        }
    }
}

/// A new link: exchange MTU (as the module does), then `+UEBTC`, then its notifications and
/// indications as `+UEBTGCN` / `+UEBTGCI`.
async fn link_task(shared: Arc<Shared>, at: u8, conn: Connection) {
    let client = match GattClient::new(conn.clone(), gattling::ClientOptions { mtu: None }).await {
        Ok(c) => c,
        Err(_) => return,
    };
    let mut values = client.notifications();
    let exchange = client.run(gattling::proto::gatt::client::ExchangeMtu(MODULE_MTU));
    let _ = tokio::time::timeout(Duration::from_secs(2), exchange).await;
    {
        let mut links = shared.links();
        let Some(link) = links.by_at.get_mut(&at).filter(|l| l.hci == conn.handle()) else { return };
        link.client = Some(client);
        link.announced = true;
        let addr = at_addr(&link.peer);
        shared.urc("+UEBTC", vec![UrcField::Int(at as i64), UrcField::Addr(addr)]);
    }
    while let Some(ev) = values.next().await {
        let name = if ev.event == gattling::gatt_client::CHAR_INDICATE_EVENT { "+UEBTGCI" } else { "+UEBTGCN" };
        shared.urc(name, vec![UrcField::Int(at as i64), UrcField::Int(ev.handle as i64), UrcField::Hex(ev.value)]);
    }
}

/// Runs one AT session on `reader` / `writer` until the reader ends.
pub async fn serve<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    mut reader: R,
    mut writer: W,
    options: Options,
) -> Result<(), gattling::Error> {
    let io = |e: std::io::Error| gattling::Error::TransportClosed(format!("AT stream: {e}"));
    let mut engine = Engine::default();
    let mut buf = vec![0u8; 1024];
    let pace = options.urc_bytes_per_sec.filter(|r| *r > 0);
    let mut next_urc = Instant::now();
    let paced = |n: usize, next: &mut Instant| {
        if let Some(rate) = pace {
            let now = Instant::now();
            let start = if *next > now { *next } else { now };
            *next = start + Duration::from_secs_f64(n as f64 / rate as f64);
        }
    };
    loop {
        let (urc_tx, mut urc_rx) = mpsc::unbounded_channel();
        let mut session = Session::start(&options, urc_tx).await?;
        engine.registers = session.regs;
        let mut out = Vec::new();
        format::text(&mut out, &session.regs, "+STARTUP");
        writer.write_all(&out).await.map_err(io)?;
        writer.flush().await.map_err(io)?;
        paced(out.len(), &mut next_urc);
        let restart = 'session: loop {
            tokio::select! {
                biased;
                n = reader.read(&mut buf) => {
                    let n = n.map_err(io)?;
                    if n == 0 {
                        session.stop().await;
                        return Ok(());
                    }
                    // Byte by byte, so each command's echo comes right before its response.
                    let mut i = 0;
                    while i < n {
                        engine.push(&buf[i..i + 1]);
                        i += 1;
                        let line = engine.poll_line();
                        if line.is_some() && i < n && buf[i] == b'\n' {
                            // The LF of a CR LF terminator is echoed with it.
                            engine.push(b"\n");
                            i += 1;
                        }
                        let echo = engine.take_echo();
                        if !echo.is_empty() {
                            writer.write_all(&echo).await.map_err(io)?;
                            paced(echo.len(), &mut next_urc);
                        }
                        let Some(line) = line else { continue };
                        session.regs = engine.registers;
                        let restart = session.run(line).await;
                        engine.registers = session.regs;
                        writer.write_all(&session.out).await.map_err(io)?;
                        writer.flush().await.map_err(io)?;
                        paced(session.out.len(), &mut next_urc);
                        if restart {
                            break 'session true;
                        }
                    }
                    writer.flush().await.map_err(io)?;
                }
                urc = async {
                    tokio::time::sleep_until(next_urc).await;
                    urc_rx.recv().await
                } => {
                    let Some(urc) = urc else { break 'session false };
                    out.clear();
                    urc.format(&mut out, &session.regs);
                    writer.write_all(&out).await.map_err(io)?;
                    writer.flush().await.map_err(io)?;
                    paced(out.len(), &mut next_urc);
                }
            }
        };
        session.stop().await;
        if !restart {
            return Ok(());
        }
        engine = Engine::default();
    }
}
