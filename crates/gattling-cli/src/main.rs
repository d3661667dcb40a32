//! `gattling`: the command line of the gattling Bluetooth LE host.

use clap::{Args, Parser, Subcommand};
use gattling::host::Notification;
use gattling::proto::gap::ad::{flags, AdvData, AdvDataBuilder};
use gattling::proto::gap::BdAddr;
use gattling::transport::TransportError;
use gattling::{AdvertisingKind, AdvertisingOptions, Host, HostOptions, ScanOptions};
use std::process::ExitCode;
use std::time::Duration;

mod capture;
mod completions;
mod db_toml;
mod demo;
mod names;
mod pairing;
mod report;
mod scan;
mod serve_db;
mod serving;
mod shutdown;
mod tree;

/// A Bluetooth LE host stack that turns any HCI controller into a GATT module.
#[derive(Parser, Debug)]
#[command(name = "gattling", version, about)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args, Debug)]
struct Global {
    /// Controller transport: virtual[:NAME] (built-in virtual controller), tcp-client:HOST:PORT,
    /// serial:DEVICE[,BAUD][,rtscts] or hci-socket:N.
    #[arg(long, global = true, default_value = "virtual", env = "GATTLING_TRANSPORT")]
    transport: String,
    /// Use this static random address (e.g. C0:11:22:33:44:55) instead of the controller's public one.
    #[arg(long, global = true, value_name = "ADDR")]
    random_address: Option<BdAddr>,
    /// Write all HCI traffic of the host to FILE in btsnoop format (open it in Wireshark);
    /// for `gattling controller`, a directory that gets one file per attached host.
    #[arg(long, global = true, value_name = "FILE")]
    btsnoop: Option<std::path::PathBuf>,
    /// More log output on stderr: -v info, -vv debug, -vvv trace (without it, RUST_LOG decides).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// The open capture file (from --btsnoop), shared by every host the command opens.
    #[arg(skip)]
    capture: Option<std::sync::Arc<gattling::btsnoop::Btsnoop>>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Show two hosts finding, connecting and talking to each other: scan, connect, discover,
    /// read, write, subscribe (on the in-process radio, or --transport with room for two hosts).
    Demo,
    /// Serve virtual controllers over TCP: every client gets a fresh controller on one shared
    /// radio and speaks H4, like rootcanal's HCI port.
    Controller {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:6402", value_name = "ADDR:PORT")]
        listen: std::net::SocketAddr,
        /// LE ACL buffers as LENxNUM (default 251x8; rootcanal uses 27x20).
        #[arg(long, value_name = "LENxNUM", value_parser = parse_acl)]
        acl: Option<(u16, u8)>,
    },
    /// Scan and print each device as it is found.
    Scan {
        /// Stop after this many seconds (default: until interrupted).
        #[arg(long, value_name = "S")]
        duration: Option<f64>,
        /// Passive scanning (no scan requests, so no scan responses).
        #[arg(long)]
        passive: bool,
        /// One JSON object per line instead of text (no summary).
        #[arg(long)]
        json: bool,
        /// Only devices whose name contains this (case-insensitive).
        #[arg(long, value_name = "SUBSTR")]
        filter_name: Option<String>,
        /// Only devices advertising this service UUID (hex or a SIG name).
        #[arg(long, value_name = "UUID", value_parser = names::parse_uuid)]
        filter_service: Option<gattling::proto::Uuid>,
    },
    /// Advertise connectable and serve the demo GATT database (or an ATT_LIST table) until
    /// interrupted, logging reads, writes and subscriptions.
    Serve {
        /// The local name to advertise (also the GAP Device Name).
        #[arg(long, default_value = "gattling")]
        name: String,
        /// Serve this ATT_LIST table (binary or hex text; `-` reads standard input) at its own
        /// handles instead of the demo database.
        #[arg(long, value_name = "FILE", conflicts_with = "db")]
        att_list: Option<std::path::PathBuf>,
        /// Serve this database (TOML; see examples/sensor.toml) instead of the demo database.
        #[arg(long, value_name = "FILE.toml")]
        db: Option<std::path::PathBuf>,
        /// With --db: every MS milliseconds count CHAR (a UUID or SIG name) up by one and notify
        /// or indicate it to subscribers.
        #[arg(long, num_args = 2, value_names = ["MS", "CHAR"], requires = "db")]
        notify_every: Option<Vec<String>>,
        #[command(flatten)]
        security: pairing::SecurityArgs,
    },
    /// ATT_LIST service tables: validate one, or dump a database in the format.
    #[command(subcommand)]
    AttList(AttListCmd),
    /// Connect to a GATT server (found by scanning) and run one GATT command.
    Gatt {
        /// The peer's address (its type is taken from its advertisement).
        #[arg(long, value_name = "XX:XX:XX:XX:XX:XX", conflicts_with = "name", required_unless_present = "name")]
        address: Option<BdAddr>,
        /// The peer's advertised name.
        #[arg(long)]
        name: Option<String>,
        /// One JSON document instead of text.
        #[arg(long, global = true)]
        json: bool,
        /// Give up finding the peer after this many seconds.
        #[arg(long, default_value_t = 10.0, value_name = "S")]
        scan_timeout: f64,
        /// Secure the link before the command: encrypt with the bond's key when there is a bond
        /// (see --bonds), otherwise pair (with --io, --passkey, --confirm).
        #[arg(long)]
        pair: bool,
        #[command(flatten)]
        security: pairing::SecurityArgs,
        #[command(subcommand)]
        command: GattCmd,
    },
    /// The bonds kept in a --bonds directory: list them, or remove one.
    #[command(subcommand)]
    Bonds(pairing::BondsCmd),
    /// Answer u-blox u-connectXpress AT commands like a NORA-W36 module (stdin/stdout by default).
    At {
        /// Serve one TCP client at a time on this address instead of stdin/stdout.
        #[arg(long, value_name = "ADDR:PORT", conflicts_with_all = ["pty", "serial"])]
        listen: Option<std::net::SocketAddr>,
        /// Create a pseudo-terminal (raw mode) and a symbolic link to its device at LINK.
        #[arg(long, value_name = "LINK", conflicts_with = "serial")]
        pty: Option<std::path::PathBuf>,
        /// Serve on a serial port: DEVICE[,BAUD] (default 115200).
        #[arg(long, value_name = "DEVICE[,BAUD]")]
        serial: Option<String>,
        /// Where AT&W stores the settings.
        #[arg(long, value_name = "FILE")]
        settings: Option<std::path::PathBuf>,
        /// The default local name (AT+UBTLN before one is set).
        #[arg(long)]
        name: Option<String>,
        /// Keep the module's bonds (AT+UBTB, AT+UBTBDL, AT+UBTUB) in this directory instead of in
        /// memory; at most 20, as on a NORA-W36.
        #[arg(long, value_name = "DIR")]
        bonds: Option<std::path::PathBuf>,
    },
    /// Print a shell completion script: `gattling completions bash > /etc/bash_completion.d/gattling`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `gattling man | man -l -`.
    Man,
    /// Advertise a name until interrupted, logging connections and disconnections.
    Advertise {
        /// The local name to advertise.
        #[arg(long)]
        name: String,
        /// Accept connections (ADV_IND); without it the advertising is non-connectable.
        #[arg(long)]
        connectable: bool,
    },
}

/// A command of `gattling att-list`.
#[derive(Subcommand, Debug)]
enum AttListCmd {
    /// Validate a table (binary or hex text; `-` reads standard input) and print the services and
    /// characteristics it defines; an invalid table prints `FILE: offset N (handle 0xHHHH):
    /// reason` on stderr and exits with status 2.
    Check {
        /// The table.
        file: std::path::PathBuf,
    },
    /// Write a database as an ATT_LIST table: hex text, one record per line (or binary).
    Dump {
        /// Dump this table (loaded and validated).
        #[arg(long, value_name = "FILE", conflicts_with = "demo", required_unless_present = "demo")]
        att_list: Option<std::path::PathBuf>,
        /// Dump the demo database of `gattling serve` (with its built-in services; values over
        /// 255 bytes are cut to 255 with a warning, as value_len is one byte).
        #[arg(long)]
        demo: bool,
        /// Write the binary table instead of hex text.
        #[arg(long)]
        binary: bool,
    },
}

/// A GATT command of `gattling gatt`.
#[derive(Subcommand, Debug)]
enum GattCmd {
    /// The whole tree: services, included services, characteristics with properties, descriptors.
    Discover {
        /// Also read every readable characteristic value and descriptor.
        #[arg(long)]
        read: bool,
    },
    /// Read a value (long reads included).
    Read {
        /// Attribute handle (decimal or 0x-hex), or a characteristic UUID (2A19, the 128-bit form,
        /// a SIG name such as "Battery Level", or uuid:2902 for an all-digit UUID).
        #[arg(value_parser = parse_target, value_name = "HANDLE|UUID")]
        handle: Target,
    },
    /// Write a value given in hex.
    Write {
        /// Attribute handle (decimal or 0x-hex).
        #[arg(value_parser = parse_handle)]
        handle: u16,
        /// The value, as hex digits.
        #[arg(value_parser = parse_hex)]
        value: HexBytes,
        /// Write Without Response.
        #[arg(long, conflicts_with_all = ["long", "reliable"])]
        no_response: bool,
        /// Write Long (prepare/execute) even if the value fits one PDU.
        #[arg(long, conflicts_with = "reliable")]
        long: bool,
        /// Reliable write: every prepared chunk's echo is checked.
        #[arg(long)]
        reliable: bool,
    },
    /// Subscribe to a characteristic's value handle and print each value as it arrives.
    Subscribe {
        /// The characteristic's value handle (decimal or 0x-hex), or its UUID.
        #[arg(value_parser = parse_target, value_name = "HANDLE|UUID")]
        handle: Target,
        /// Indications instead of notifications.
        #[arg(long)]
        indicate: bool,
        /// Stop after this many values (default: until interrupted).
        #[arg(long)]
        count: Option<u64>,
    },
}

/// A handle, or a UUID to find (the value handle of the one characteristic with that UUID).
#[derive(Clone, Debug)]
enum Target {
    Handle(u16),
    Uuid(gattling::proto::Uuid),
}

fn parse_target(s: &str) -> Result<Target, String> {
    if let Some(u) = s.strip_prefix("uuid:") {
        return names::parse_uuid(u).map(Target::Uuid);
    }
    let is_handle = s.bytes().all(|b| b.is_ascii_digit()) || s.starts_with("0x") || s.starts_with("0X");
    if is_handle {
        parse_handle(s).map(Target::Handle)
    } else {
        names::parse_uuid(s).map(Target::Uuid)
    }
}

/// Bytes parsed from hex on the command line.
#[derive(Clone, Debug)]
struct HexBytes(Vec<u8>);

fn parse_handle(s: &str) -> Result<u16, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u16::from_str_radix(h, 16),
        None => s.parse::<u16>(),
    };
    match r {
        Ok(h) if h != 0 => Ok(h),
        _ => Err(format!("{s:?}: expected a handle 1-65535, decimal or 0x-hex")),
    }
}

fn parse_hex(s: &str) -> Result<HexBytes, String> {
    let s = s.trim_start_matches("0x");
    if !s.len().is_multiple_of(2) {
        return Err(format!("{s:?}: an even number of hex digits is needed"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2).unwrap_or(""), 16))
        .collect::<Result<Vec<u8>, _>>()
        .map(HexBytes)
        .map_err(|_| format!("{s:?}: not hex"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    shutdown::install();
    report::init_logging(cli.global.verbose);
    if let Cmd::AttList(cmd) = &cli.command {
        return att_list::run(cmd);
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report::fail(&e),
    }
}

async fn open(global: &Global) -> Result<Host, gattling::Error> {
    open_secured(global, gattling::SecurityOptions::default()).await
}

/// Opens the host with these pairing options (Core Vol 3 Part H §2.3).
async fn open_secured(global: &Global, security: gattling::SecurityOptions) -> Result<Host, gattling::Error> {
    let options = HostOptions {
        random_address: global.random_address,
        btsnoop: global.capture.clone(),
        security,
        ..HostOptions::default()
    };
    if let Some(a) = global.random_address {
        if !a.is_static_random() {
            return Err(gattling::Error::InvalidArgument(format!(
                "{a} is not a static random address: its two most significant bits must be 1 (e.g. C0:...)"
            )));
        }
    }
    Host::open_with(&global.transport, options).await
}

fn parse_acl(s: &str) -> Result<(u16, u8), String> {
    let bad = || format!("{s:?}: expected LENxNUM with LEN 27-1024 and NUM 1-255, e.g. 27x20");
    let (l, n) = s.split_once('x').ok_or_else(bad)?;
    match (l.parse::<u16>(), n.parse::<u8>()) {
        (Ok(l), Ok(n)) if (27..=1024).contains(&l) && n > 0 => Ok((l, n)),
        _ => Err(bad()),
    }
}

async fn run(mut cli: Cli) -> Result<(), gattling::Error> {
    let capture_dir = match (&cli.global.btsnoop, &cli.command) {
        (Some(dir), Cmd::Controller { .. }) => Some(capture::check_dir(dir)?),
        (Some(file), _) => {
            cli.global.capture = Some(capture::open_file(file)?);
            None
        }
        (None, _) => None,
    };
    let result = run_command(cli.command, &cli.global, capture_dir).await;
    if let Some(c) = &cli.global.capture {
        c.close();
    }
    result
}

async fn run_command(
    command: Cmd,
    global: &Global,
    capture_dir: Option<std::path::PathBuf>,
) -> Result<(), gattling::Error> {
    match command {
        Cmd::Completions { shell } => completions::completions(shell),
        Cmd::Man => completions::man(),
        Cmd::Demo => demo::run(&global.transport, global.capture.clone()).await,
        Cmd::Controller { listen, acl } => {
            let mut config = gattling::controller::ControllerConfig::default();
            if let Some((len, num)) = acl {
                config.acl_len = len;
                config.acl_num = num;
            }
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|source| TransportError::Io { context: format!("cannot listen on {listen}"), source })?;
            // The address bound, so `--listen 127.0.0.1:0` (a port the system picks) can be used.
            let listen = listener
                .local_addr()
                .map_err(|source| TransportError::Io { context: format!("cannot listen on {listen}"), source })?;
            eprintln!(
                "virtual controller listening on {listen} (H4 over TCP; ACL {}x{}); connect hosts with --transport tcp-client:{listen}",
                config.acl_len, config.acl_num
            );
            let radio = gattling::controller::VirtualRadio::new(listen.to_string());
            tokio::select! {
                r = gattling::controller::serve_capturing(listener, radio, config, capture_dir) => {
                    r.map_err(|source| TransportError::Io { context: format!("controller server on {listen}"), source }.into())
                }
                _ = shutdown::requested() => Ok(()),
            }
        }
        Cmd::Scan { duration, passive, json, filter_name, filter_service } => {
            let duration = match duration {
                Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
                Some(s) => {
                    return Err(gattling::Error::InvalidArgument(format!(
                        "--duration {s}: must be a positive number of seconds"
                    )))
                }
                None => None,
            };
            let host = open(global).await?;
            scan::run(&host, scan::Options { passive, json, duration, filter_name, filter_service }).await
        }
        Cmd::Gatt { address, name, json, scan_timeout, pair, security, command } => {
            let host = open_secured(global, security.options()?).await?;
            gatt(&host, Find { address, name, scan_timeout }, json, pair, command).await
        }
        Cmd::Bonds(cmd) => pairing::run(cmd),
        Cmd::AttList(_) => Ok(()),
        Cmd::Serve { name, db: Some(file), notify_every, security, .. } => {
            // The whole file (and --notify-every) is validated before the host starts.
            let db = db_toml::load(&file).map_err(gattling::Error::InvalidArgument)?;
            let notify = match &notify_every {
                Some(args) => Some(serve_db::parse_notify_every(&db, args)?),
                None => None,
            };
            let host = open_secured(global, security.options()?).await?;
            tokio::select! {
                r = serve_db::run(&host, &name, db, notify) => r,
                _ = shutdown::requested() => Ok(()),
            }
        }
        Cmd::Serve { name, att_list, security, .. } => {
            // Read and validate the table before touching the controller.
            let table = match &att_list {
                Some(path) => {
                    let bytes = att_list::read(path)?;
                    let list = gattling::gatt::AttList::decode(&bytes)
                        .map_err(|e| gattling::Error::InvalidArgument(format!("{}: {e}", path.display())))?;
                    Some(list)
                }
                None => None,
            };
            let host = open_secured(global, security.options()?).await?;
            tokio::select! {
                r = serve(&host, &name, table) => r,
                _ = shutdown::requested() => Ok(()),
            }
        }
        Cmd::At { listen, pty, serial, settings, name, bonds } => {
            if let Some(a) = global.random_address {
                if !a.is_static_random() {
                    return Err(gattling::Error::InvalidArgument(format!(
                        "{a} is not a static random address: its two most significant bits must be 1 (e.g. C0:...)"
                    )));
                }
            }
            let mut security = gattling::SecurityOptions::default();
            if let Some(dir) = &bonds {
                let store = pairing::open_store(dir, true, gattling_at::exec::MAX_BONDS)?;
                security.bonds = std::sync::Arc::new(store);
            }
            let options = gattling_at::exec::Options {
                transport: global.transport.clone(),
                host: HostOptions {
                    random_address: global.random_address,
                    btsnoop: global.capture.clone(),
                    security,
                    ..HostOptions::default()
                },
                settings,
                device_name: name,
                urc_bytes_per_sec: None,
            };
            at::run(options, listen, pty, serial).await
        }
        Cmd::Advertise { name, connectable } => {
            let host = open(global).await?;
            tokio::select! {
                r = advertise(&host, &name, connectable) => r,
                _ = shutdown::requested() => Ok(()),
            }
        }
    }
}

async fn advertise(host: &Host, name: &str, connectable: bool) -> Result<(), gattling::Error> {
    let data = AdvDataBuilder::new()
        .flags(flags::LE_GENERAL_ONLY)
        .name(name)
        .build()
        .map_err(|e| gattling::Error::InvalidArgument(format!("--name {name:?}: {e}")))?;
    let opts = AdvertisingOptions {
        kind: if connectable { AdvertisingKind::Connectable } else { AdvertisingKind::NonConnectable },
        data,
        ..AdvertisingOptions::default()
    };
    let mut notes = host.notifications();
    host.advertise(&opts).await?;
    eprintln!(
        "advertising {name:?} as {} ({}) on {}",
        host.address(),
        if connectable { "connectable" } else { "non-connectable" },
        host.transport_description()
    );
    // Accept connections (and drop them when the peer leaves); restart advertising after each link.
    let accept_host = host.clone();
    tokio::spawn(async move {
        while let Ok(conn) = accept_host.accept().await {
            tokio::spawn(async move {
                // Hold the connection until it ends; ATT is served by later issues.
                let _ = conn.closed().await;
            });
        }
    });
    loop {
        match notes.recv().await {
            Ok(Notification::Connected(info)) => {
                println!("connected: handle {:#05x} peer {} role {:?}", info.handle, info.peer, info.role)
            }
            Ok(Notification::Disconnected { handle, reason }) => {
                println!("disconnected: handle {handle:#05x} reason {:#04x} ({})", reason.code(), reason.name());
                if connectable {
                    host.advertise(&opts).await?;
                }
            }
            Ok(Notification::HardwareError(code)) => {
                return Err(gattling::Error::Protocol(format!("controller hardware error {code:#04x}")))
            }
            Ok(note) => println!("{}", serving::describe_security(&note)),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                return Err(gattling::Error::TransportClosed("the host stopped".into()))
            }
        }
    }
}

/// `gattling serve`: the demo database (or an ATT_LIST table), advertised under `name`, with
/// every access logged.
async fn serve(host: &Host, name: &str, table: Option<gattling::gatt::AttList>) -> Result<(), gattling::Error> {
    let (server, chars, what) = match &table {
        None => {
            let server = host.gatt_server(name, 0);
            let mut chars = Vec::new();
            for def in gattling::gatt::demo_services() {
                chars.extend(server.add_service(def)?.characteristics);
            }
            chars.extend(server.add_service(secured_service())?.characteristics);
            (server, chars, "the demo database".to_string())
        }
        Some(list) => {
            let server = host.gatt_server_with(list.database(name, 0)?);
            let first = list.first_handle().unwrap_or(u16::MAX);
            let chars: Vec<_> = server.characteristics().into_iter().filter(|c| c.value_handle() >= first).collect();
            let n = list.records().len();
            (server, chars, format!("an ATT_LIST table of {n} records from handle {first:#06x}"))
        }
    };
    for ch in &chars {
        serving::log_accesses(ch, ch.uuid().to_string());
    }
    let counter = match table {
        None => server.characteristic(gattling::gatt::demo::COUNTER).map(|c| (c, Duration::from_secs(1))),
        Some(_) => None,
    };
    serving::advertise_and_serve(host, name, &what, counter).await
}

/// The demo's secured service (6A770010-...): a characteristic that needs an encrypted link and
/// one that needs an authenticated (MITM-protected) one, to read and to write (Core Vol 3 Part C
/// §10.3, Part F §3.2.5).
fn secured_service() -> gattling::gatt::ServiceDef {
    use gattling::gatt::{CharacteristicDef, Permissions, Properties, ServiceDef};
    let props = Properties::READ | Properties::WRITE;
    ServiceDef::primary(SECURED_SERVICE)
        .characteristic(
            CharacteristicDef::new(SECURED_ENCRYPTED, props, b"encrypted")
                .permissions(
                    Permissions::READ | Permissions::READ_ENCRYPTED | Permissions::WRITE | Permissions::WRITE_ENCRYPTED,
                )
                .user_description("needs encryption"),
        )
        .characteristic(
            CharacteristicDef::new(SECURED_AUTHENTICATED, props, b"authenticated")
                .permissions(
                    Permissions::READ
                        | Permissions::READ_AUTHENTICATED
                        | Permissions::WRITE
                        | Permissions::WRITE_AUTHENTICATED,
                )
                .user_description("needs authentication (MITM)"),
        )
}

/// The demo's secured service.
const SECURED_SERVICE: gattling::proto::Uuid =
    gattling::proto::Uuid::from_be_u128(0x6a77_0010_9d1e_4b1c_a0a5_4b5c_5e7a_d0c0);
/// Its characteristic that needs encryption.
const SECURED_ENCRYPTED: gattling::proto::Uuid =
    gattling::proto::Uuid::from_be_u128(0x6a77_0011_9d1e_4b1c_a0a5_4b5c_5e7a_d0c0);
/// Its characteristic that needs authentication.
const SECURED_AUTHENTICATED: gattling::proto::Uuid =
    gattling::proto::Uuid::from_be_u128(0x6a77_0012_9d1e_4b1c_a0a5_4b5c_5e7a_d0c0);

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn uuid_str(u: &gattling::proto::Uuid) -> String {
    // 4 hex digits for 16-bit UUIDs, the 36-character form for everything else.
    match u.shortest() {
        gattling::proto::Uuid::U16(v) => format!("{v:04X}"),
        _ => gattling::proto::Uuid::U128(u.to_u128_le()).to_string(),
    }
}

/// How `gattling gatt` finds its peer.
struct Find {
    address: Option<BdAddr>,
    name: Option<String>,
    scan_timeout: f64,
}

/// `gattling gatt`: find the peer, connect, secure the link with --pair, run one command,
/// disconnect.
async fn gatt(host: &Host, find: Find, json: bool, pair: bool, command: GattCmd) -> Result<(), gattling::Error> {
    use gattling::gatt_client::{ClientOptions, GattClient};
    let Find { address, name, scan_timeout } = find;
    let want = match (&address, &name) {
        (Some(a), _) => a.to_string(),
        (_, Some(n)) => format!("{n:?}"),
        _ => return Err(gattling::Error::InvalidArgument("give --address or --name".into())),
    };
    let mut scan = host.scan(ScanOptions::default()).await?;
    let found = tokio::time::timeout(Duration::from_secs_f64(scan_timeout.max(0.1)), async {
        while let Some(r) = scan.next().await {
            let by_addr = address.is_some_and(|a| a == r.address.addr);
            let by_name = name.as_deref().is_some_and(|n| AdvData::parse_lenient(&r.data).local_name() == Some(n));
            if by_addr || by_name {
                return Some(r);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or(gattling::Error::Timeout("no advertiser matched within --scan-timeout"))?;
    scan.stop().await?;
    eprintln!("found {want} at {}", found.address);
    let conn = host.connect(found.address, gattling::ConnectOptions::default()).await?;
    if pair {
        if let Err(e) = secure(&conn).await {
            let _ = conn.disconnect(0x13).await;
            return Err(e);
        }
    }
    let client = GattClient::new(conn, ClientOptions::default()).await?;
    // Pairing only when asked for: without --pair a refusal is reported (with a hint).
    client.set_secure_on_error(pair);
    // Ctrl-C ends the command (e.g. an endless subscribe) and still disconnects cleanly.
    let result = tokio::select! {
        r = run_gatt(&client, json, command) => r,
        _ = shutdown::requested() => Ok(()),
    };
    let _ = client.disconnect().await;
    result
}

/// Brings the link to an encrypted level (Core Vol 3 Part C §10.2.1): with the bond's key when
/// there is one, else by pairing; says on stderr which it was and what the link has.
async fn secure(conn: &gattling::Connection) -> Result<(), gattling::Error> {
    let key_of = |c: &gattling::Connection| c.bond().and_then(|b| b.ltk.map(|k| k.key));
    let before = key_of(conn);
    let security = tokio::select! {
        r = conn.secure(gattling::SecurityLevel::Encrypted) => r?,
        _ = shutdown::requested() => return Err(gattling::Error::Cancelled("pairing")),
    };
    let after = key_of(conn);
    let how = if before.is_some() && before == after { "encrypted with the bond" } else { "paired" };
    eprintln!(
        "{how}: {:?}, {}, key {} octets{}",
        gattling::SecurityLevel::of(&security),
        if security.secure_connections { "LE Secure Connections" } else { "legacy" },
        security.key_size,
        if after.is_some() { ", bonded" } else { "" }
    );
    Ok(())
}

async fn run_gatt(
    client: &gattling::gatt_client::GattClient,
    json: bool,
    command: GattCmd,
) -> Result<(), gattling::Error> {
    match command {
        GattCmd::Discover { read } => {
            let services = tree::discover(client).await?;
            let values = if read { tree::read_values(client, &services).await } else { Default::default() };
            if json {
                let doc = serde_json::json!({ "services": services.iter().map(|(s, inc, chars)| serde_json::json!({
                    "uuid": uuid_str(&s.uuid), "name": names::uuid(&s.uuid), "start": s.start, "end": s.end,
                    "includes": inc.iter().map(|i| serde_json::json!({"handle": i.handle, "start": i.start, "end": i.end, "uuid": uuid_str(&i.uuid)})).collect::<Vec<_>>(),
                    "characteristics": chars.iter().map(|(c, d)| serde_json::json!({
                        "uuid": uuid_str(&c.uuid), "handle": c.handle, "value_handle": c.value_handle,
                        "properties": c.properties, "end_handle": c.end_handle,
                        "name": names::uuid(&c.uuid),
                        "value": values.get(&c.value_handle).map(tree::value_json),
                        "descriptors": d.iter().map(|d| serde_json::json!({"handle": d.handle, "uuid": uuid_str(&d.uuid), "name": names::uuid(&d.uuid), "value": values.get(&d.handle).map(tree::value_json)})).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>() });
                println!("{doc}");
            } else {
                tree::print(&services, &values);
            }
        }
        GattCmd::Read { handle } => {
            let handle = resolve(client, &handle).await?.value_handle;
            let value = client.read_long(handle).await?;
            if json {
                println!("{}", serde_json::json!({"handle": handle, "value": hex(&value)}));
            } else {
                println!("{handle:#06x}: {}", hex(&value));
            }
        }
        GattCmd::Write { handle, value, no_response, long, reliable } => {
            let v = value.0;
            if no_response {
                client.write_without_response(handle, &v).await?;
            } else if reliable {
                client.reliable_write(&[(handle, &v)]).await?;
            } else if long {
                client.write_long(handle, &v).await?;
            } else {
                client.write(handle, &v).await?;
            }
            if json {
                println!("{}", serde_json::json!({"handle": handle, "written": hex(&v)}));
            } else {
                println!("{handle:#06x}: wrote {} bytes", v.len());
            }
        }
        GattCmd::Subscribe { handle, indicate, count } => {
            let ch = resolve(client, &handle).await?;
            let handle = ch.value_handle;
            let mut sub = client.subscribe(&ch, indicate).await?;
            let mut n = 0u64;
            while count.is_none_or(|c| n < c) {
                let Some(v) = sub.next().await else { break };
                n += 1;
                if json {
                    println!("{}", serde_json::json!({"handle": handle, "value": hex(&v)}));
                } else {
                    println!("{handle:#06x}: {}", hex(&v));
                }
            }
        }
    }
    Ok(())
}

/// The characteristic a command line target names: by value handle, or the one with a UUID
/// (several matches are an error that lists them).
async fn resolve(
    client: &gattling::gatt_client::GattClient,
    target: &Target,
) -> Result<gattling::proto::gatt::client::CharacteristicInfo, gattling::Error> {
    let uuid = match target {
        Target::Handle(h) => {
            return match find_characteristic(client, *h).await {
                Ok(c) => Ok(c),
                // A plain attribute (a descriptor, a declaration): read it by handle.
                Err(_) => Ok(gattling::proto::gatt::client::CharacteristicInfo {
                    handle: h.saturating_sub(1),
                    properties: 0,
                    value_handle: *h,
                    uuid: gattling::proto::Uuid::U16(0),
                    end_handle: *h,
                }),
            };
        }
        Target::Uuid(u) => u,
    };
    let mut found = Vec::new();
    for s in client.discover_services().await? {
        for c in client.discover_characteristics(s.start, s.end, None).await? {
            if gattling::proto::uuid::same(&c.uuid, uuid) {
                found.push(c);
            }
        }
    }
    match found.len() {
        0 => Err(gattling::Error::InvalidArgument(format!(
            "no characteristic has UUID {}; try `gattling gatt ... discover`",
            names::uuid_label(uuid)
        ))),
        1 => Ok(found.remove(0)),
        _ => Err(gattling::Error::InvalidArgument(format!(
            "{} characteristics have UUID {} (value handles {}); give a handle instead",
            found.len(),
            names::uuid_label(uuid),
            found.iter().map(|c| format!("{:#06x}", c.value_handle)).collect::<Vec<_>>().join(", ")
        ))),
    }
}

async fn find_characteristic(
    client: &gattling::gatt_client::GattClient,
    value_handle: u16,
) -> Result<gattling::proto::gatt::client::CharacteristicInfo, gattling::Error> {
    for s in client.discover_services().await? {
        if value_handle < s.start || value_handle > s.end {
            continue;
        }
        if let Some(c) = client
            .discover_characteristics(s.start, s.end, None)
            .await?
            .into_iter()
            .find(|c| c.value_handle == value_handle)
        {
            return Ok(c);
        }
    }
    Err(gattling::Error::InvalidArgument(format!("no characteristic has its value at handle {value_handle:#06x}")))
}

fn property_names(p: u8) -> String {
    let names =
        ["broadcast", "read", "write-without-response", "write", "notify", "indicate", "signed-write", "extended"];
    names.iter().enumerate().filter(|(i, _)| p & (1 << i) != 0).map(|(_, n)| *n).collect::<Vec<_>>().join("|")
}

/// `gattling att-list`: check and dump ATT_LIST tables.
mod att_list {
    use gattling::gatt::{AttList, AttrKind};
    use std::io::{Read, Write};
    use std::path::Path;
    use std::process::ExitCode;

    /// Reads a table file; `-` is standard input.
    pub fn read(path: &Path) -> Result<Vec<u8>, gattling::Error> {
        let mut bytes = Vec::new();
        let r = if path == Path::new("-") {
            std::io::stdin().read_to_end(&mut bytes).map(|_| ())
        } else {
            std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map(|_| ())
        };
        r.map_err(|e| gattling::Error::InvalidArgument(format!("{}: {e}", path.display())))?;
        Ok(bytes)
    }

    fn load(path: &Path) -> Result<AttList, String> {
        let bytes = read(path).map_err(|e| format!("{e}"))?;
        AttList::decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Runs `gattling att-list ...`; status 2 for an invalid table, 1 for other failures.
    pub fn run(cmd: &super::AttListCmd) -> ExitCode {
        match cmd {
            super::AttListCmd::Check { file } => {
                let bytes = match read(file) {
                    Ok(b) => b,
                    Err(e) => {
                        eprintln!("gattling: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                match AttList::decode(&bytes) {
                    Ok(list) => {
                        print!("{}", tree(&list));
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("{}: {e}", file.display());
                        ExitCode::from(2)
                    }
                }
            }
            super::AttListCmd::Dump { att_list, demo, binary } => {
                let dumped = match att_list {
                    Some(path) => match load(path) {
                        Ok(list) => list
                            .table_database()
                            .map_err(|e| format!("{}: {e}", path.display()))
                            .and_then(|db| {
                                AttList::from_database(&db, list.first_handle().unwrap_or(1))
                                    .map_err(|e| format!("{}: {e}", path.display()))
                            }),
                        Err(e) => {
                            eprintln!("{e}");
                            return ExitCode::from(2);
                        }
                    },
                    // The demo's 512-byte value does not fit value_len: it is cut, with a warning.
                    None if *demo => demo_database().and_then(|db| {
                        let (list, cut) = AttList::from_database_truncating(&db, 1).map_err(|e| e.to_string())?;
                        for (handle, len) in cut {
                            eprintln!("warning: handle {handle:#06x}: value of {len} bytes cut to 255 (value_len is one byte)");
                        }
                        Ok(list)
                    }),
                    None => Err("give --att-list FILE or --demo".to_string()),
                };
                let list = match dumped {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("gattling: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                let out = if *binary { list.to_bytes() } else { list.to_hex().into_bytes() };
                let mut stdout = std::io::stdout().lock();
                match stdout.write_all(&out).and_then(|_| stdout.flush()) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("gattling: writing the table: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
        }
    }

    /// The database `gattling serve` serves without a table (device name "gattling").
    fn demo_database() -> Result<gattling::gatt::Database, String> {
        let mut db = gattling::gatt::Database::new();
        for s in gattling::proto::gatt::server::builtin_services("gattling", 0) {
            db.add_service(s).map_err(|e| e.to_string())?;
        }
        for s in gattling::gatt::demo_services() {
            db.add_service(s).map_err(|e| e.to_string())?;
        }
        Ok(db)
    }

    /// The services and characteristics of a table as an indented tree with handles.
    pub fn tree(list: &AttList) -> String {
        let mut s = String::new();
        let mut props = 0u8;
        for r in list.records() {
            let uuid = super::uuid_str(&r.uuid);
            let value_uuid = gattling::proto::Uuid::from_le_bytes(&r.value).map(|u| super::uuid_str(&u));
            let line = match r.kind {
                AttrKind::PrimaryService | AttrKind::SecondaryService => {
                    let kind = if r.kind == AttrKind::PrimaryService { "primary" } else { "secondary" };
                    format!("{:#06x} {kind} service {}", r.handle, value_uuid.unwrap_or_default())
                }
                AttrKind::Include => format!("  {:#06x} include {}", r.handle, super::hex(&r.value)),
                AttrKind::CharacteristicDecl => {
                    props = r.value.first().copied().unwrap_or(0);
                    continue;
                }
                AttrKind::Value => format!(
                    "  {:#06x} characteristic {uuid} [{}] declaration {:#06x}, {} bytes",
                    r.handle,
                    super::property_names(props),
                    r.handle.saturating_sub(1),
                    r.value.len()
                ),
                AttrKind::Cccd => format!("    {:#06x} CCCD", r.handle),
                AttrKind::Descriptor => format!("    {:#06x} descriptor {uuid}: {}", r.handle, super::hex(&r.value)),
            };
            s.push_str(&line);
            s.push('\n');
        }
        s
    }
}

/// The I/O front-ends of `gattling at`: stdin/stdout, TCP, a pseudo-terminal, a serial port.
mod at {
    use gattling::transport::TransportError;
    use gattling_at::exec::{serve, Options};
    use std::io::{Read, Write};
    use std::path::{Path, PathBuf};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    fn io_error(context: String, source: std::io::Error) -> gattling::Error {
        TransportError::Io { context, source }.into()
    }

    pub async fn run(
        options: Options,
        listen: Option<std::net::SocketAddr>,
        pty: Option<PathBuf>,
        serial: Option<String>,
    ) -> Result<(), gattling::Error> {
        if let Some(addr) = listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| io_error(format!("cannot listen on {addr}"), e))?;
            eprintln!("gattling at: listening on {addr}");
            loop {
                let (stream, peer) = tokio::select! {
                    r = listener.accept() => r.map_err(|e| io_error("accept".into(), e))?,
                    _ = stop_signal() => return Ok(()),
                };
                eprintln!("gattling at: client {peer}");
                let (r, w) = stream.into_split();
                tokio::select! {
                    r = serve(r, w, options.clone()) => {
                        if let Err(e) = r {
                            eprintln!("gattling at: session ended: {e}");
                        }
                    }
                    _ = stop_signal() => return Ok(()),
                }
            }
        }
        if let Some(link) = pty {
            let (master, slave, device) =
                open_pty().map_err(|e| io_error("cannot open a pseudo-terminal".into(), e))?;
            if std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
                let _ = std::fs::remove_file(&link);
            }
            std::os::unix::fs::symlink(&device, &link)
                .map_err(|e| io_error(format!("cannot link {} to {}", link.display(), device.display()), e))?;
            eprintln!("gattling at: pseudo-terminal {} linked at {}", device.display(), link.display());
            let reader = master.try_clone().map_err(|e| io_error("pty".into(), e))?;
            let stream = bridge(reader, master, None);
            let (r, w) = tokio::io::split(stream);
            // A client reading at UART speed (115200 baud) loses nothing.
            let options = Options { urc_bytes_per_sec: options.urc_bytes_per_sec.or(Some(11_520)), ..options };
            let result = tokio::select! {
                r = serve(r, w, options) => r,
                _ = stop_signal() => Ok(()),
            };
            drop(slave);
            remove_link(&link);
            return result;
        }
        if let Some(spec) = serial {
            let (device, baud) = match spec.split_once(',') {
                Some((d, b)) => (
                    d.to_string(),
                    b.parse::<u32>()
                        .map_err(|_| gattling::Error::InvalidArgument(format!("--serial {spec}: bad baud rate")))?,
                ),
                None => (spec.clone(), 115_200),
            };
            let port = serialport::new(&device, baud)
                .timeout(std::time::Duration::from_millis(100))
                .open()
                .map_err(|e| io_error(format!("cannot open {device}"), std::io::Error::other(e)))?;
            let reader = port.try_clone().map_err(|e| io_error(device.clone(), std::io::Error::other(e)))?;
            let stream = bridge(reader, port, None);
            let (r, w) = tokio::io::split(stream);
            let options = Options { urc_bytes_per_sec: options.urc_bytes_per_sec.or(Some(baud / 10)), ..options };
            return tokio::select! {
                r = serve(r, w, options) => r,
                _ = stop_signal() => Ok(()),
            };
        }
        tokio::select! {
            r = serve(tokio::io::stdin(), tokio::io::stdout(), options) => r,
            _ = stop_signal() => Ok(()),
        }
    }

    async fn stop_signal() {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }

    fn remove_link(link: &Path) {
        if std::fs::symlink_metadata(link).is_ok_and(|m| m.file_type().is_symlink()) {
            let _ = std::fs::remove_file(link);
        }
    }

    /// Joins a blocking byte stream to an async one with two threads.
    fn bridge<R, W>(mut reader: R, mut writer: W, _unused: Option<()>) -> DuplexStream
    where
        R: Read + Send + 'static,
        W: Write + Send + 'static,
    {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let (mut rd, mut wr) = tokio::io::split(ours);
        let rt = tokio::runtime::Handle::current();
        let rt2 = rt.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        if rt.block_on(wr.write_all(&buf[..n])).is_err() {
                            return;
                        }
                    }
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                        // No one has the pseudo-terminal open: wait for a client.
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    Err(_) => return,
                }
            }
        });
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            loop {
                let n = match rt2.block_on(rd.read(&mut buf)) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if writer.write_all(&buf[..n]).and_then(|_| writer.flush()).is_err() {
                    return;
                }
            }
        });
        theirs
    }

    /// Opens a pseudo-terminal: the master, the slave (kept open, in raw mode) and the slave's path.
    fn open_pty() -> std::io::Result<(std::fs::File, std::fs::File, PathBuf)> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain libc calls on a descriptor this function owns; every result is checked.
        unsafe {
            let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let master = std::fs::File::from_raw_fd(fd);
            if libc::grantpt(fd) != 0 || libc::unlockpt(fd) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut name = [0 as libc::c_char; 128];
            if libc::ptsname_r(fd, name.as_mut_ptr(), name.len()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let path = PathBuf::from(std::ffi::CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned());
            let slave = std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOCTTY).open(&path)?;
            let sfd = std::os::fd::AsRawFd::as_raw_fd(&slave);
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(sfd, &mut t) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::cfmakeraw(&mut t);
            if libc::tcsetattr(sfd, libc::TCSANOW, &t) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok((master, slave, path))
        }
    }

    use std::os::unix::fs::OpenOptionsExt;
}
