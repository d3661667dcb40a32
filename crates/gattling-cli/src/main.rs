//! `gattling`: the command line of the gattling Bluetooth LE host.

use clap::{Args, Parser, Subcommand};
use gattling::host::Notification;
use gattling::proto::gap::ad::{flags, AdvData, AdvDataBuilder};
use gattling::proto::gap::{AddressType, BdAddr};
use gattling::proto::hci::status;
use gattling::{AdvertisingKind, AdvertisingOptions, Host, HostOptions, ScanOptions};
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

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
    /// Controller transport: tcp-client:HOST:PORT, serial:DEVICE[,BAUD][,rtscts] or hci-socket:N.
    #[arg(long, global = true, default_value = "tcp-client:127.0.0.1:6402", env = "GATTLING_TRANSPORT")]
    transport: String,
    /// Use this static random address (e.g. C0:11:22:33:44:55) instead of the controller's public one.
    #[arg(long, global = true, value_name = "ADDR")]
    random_address: Option<BdAddr>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Scan and print each device as it is found.
    Scan {
        /// Stop after this many seconds (default: until interrupted).
        #[arg(long, value_name = "S")]
        duration: Option<f64>,
        /// Passive scanning (no scan requests, so no scan responses).
        #[arg(long)]
        passive: bool,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "gattling=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gattling: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn open(global: &Global) -> Result<Host, gattling::Error> {
    let options = HostOptions { random_address: global.random_address, ..HostOptions::default() };
    if let Some(a) = global.random_address {
        if !a.is_static_random() {
            return Err(gattling::Error::InvalidArgument(format!(
                "{a} is not a static random address: its two most significant bits must be 1 (e.g. C0:...)"
            )));
        }
    }
    Host::open_with(&global.transport, options).await
}

async fn run(cli: Cli) -> Result<(), gattling::Error> {
    match cli.command {
        Cmd::Scan { duration, passive, json } => {
            let host = open(&cli.global).await?;
            let scan = scan(&host, passive, json);
            match duration {
                Some(s) if s.is_finite() && s > 0.0 => {
                    let _ = tokio::time::timeout(Duration::from_secs_f64(s), scan).await;
                    Ok(())
                }
                Some(s) => Err(gattling::Error::InvalidArgument(format!(
                    "--duration {s}: must be a positive number of seconds"
                ))),
                None => tokio::select! {
                    r = scan => r,
                    _ = tokio::signal::ctrl_c() => Ok(()),
                },
            }
        }
        Cmd::Advertise { name, connectable } => {
            let host = open(&cli.global).await?;
            tokio::select! {
                r = advertise(&host, &name, connectable) => r,
                _ = tokio::signal::ctrl_c() => Ok(()),
            }
        }
    }
}

/// What a scan has learned about one device, merged from advertising and scan-response data.
#[derive(Default)]
struct Seen {
    name: Option<String>,
    services: Vec<String>,
    connectable: bool,
}

async fn scan(host: &Host, passive: bool, json: bool) -> Result<(), gattling::Error> {
    let mut scanner = host.scan(ScanOptions { active: !passive, ..ScanOptions::default() }).await?;
    let mut seen: HashMap<(BdAddr, bool), Seen> = HashMap::new();
    while let Some(r) = scanner.next().await {
        let random = matches!(r.address.kind, AddressType::Random | AddressType::RandomIdentity);
        let key = (r.address.addr, random);
        let data = AdvData::parse_lenient(&r.data);
        let new = !seen.contains_key(&key);
        let entry = seen.entry(key).or_default();
        let mut changed = new;
        if let Some(n) = data.name_lossy() {
            if entry.name.as_deref() != Some(n.as_str()) {
                entry.name = Some(n);
                changed = true;
            }
        }
        for u in data.service_uuids() {
            let u = u.to_string();
            if !entry.services.contains(&u) {
                entry.services.push(u);
                changed = true;
            }
        }
        entry.connectable |= matches!(r.event_type, 0 | 1);
        if !changed {
            continue;
        }
        let kind = if random { "random" } else { "public" };
        if json {
            let line = serde_json::json!({
                "address": r.address.addr.to_string(),
                "address_type": kind,
                "rssi": r.rssi,
                "name": entry.name,
                "services": entry.services,
                "connectable": entry.connectable,
                "flags": data.flags(),
                "tx_power": data.tx_power(),
            });
            println!("{line}");
        } else {
            println!(
                "{} ({kind}) rssi {:>4} dBm  name {:?}  services [{}]",
                r.address.addr,
                r.rssi,
                entry.name.as_deref().unwrap_or(""),
                entry.services.join(", ")
            );
        }
    }
    Ok(())
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
                println!("disconnected: handle {handle:#05x} reason {reason:#04x} ({})", status::name(reason));
                if connectable {
                    host.advertise(&opts).await?;
                }
            }
            Ok(Notification::HardwareError(code)) => {
                return Err(gattling::Error::Protocol(format!("controller hardware error {code:#04x}")))
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                return Err(gattling::Error::TransportClosed("the host stopped".into()))
            }
        }
    }
}
