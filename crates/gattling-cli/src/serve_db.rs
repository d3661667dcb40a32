//! `gattling serve --db FILE.toml [--notify-every MS CHAR]`: serve a declared database,
//! logging every access, optionally counting one characteristic up and notifying it.

use crate::db_toml::Db;
use crate::names;
use gattling::host::Notification;
use gattling::proto::gap::ad::{flags, AdvDataBuilder};
use gattling::proto::Uuid;
use gattling::{AdvertisingKind, AdvertisingOptions, Host};
use std::collections::HashMap;
use std::time::Duration;

/// Checks `--notify-every MS CHAR` (as given to clap) against the database.
pub fn parse_notify_every(db: &Db, args: &[String]) -> Result<(Duration, Uuid), gattling::Error> {
    let bad = |m: String| gattling::Error::InvalidArgument(m);
    let [ms, ch] = args else {
        return Err(bad("--notify-every takes MS and CHAR".into()));
    };
    let ms = match ms.parse::<u64>() {
        Ok(ms) if ms > 0 => ms,
        _ => return Err(bad(format!("--notify-every {ms:?}: expected a period in milliseconds (1 or more)"))),
    };
    let uuid = names::parse_uuid(ch).map_err(|e| bad(format!("--notify-every: {e}")))?;
    crate::db_toml::notify_target(db, &uuid).map_err(bad)?;
    Ok((Duration::from_millis(ms), uuid))
}

/// Adds the services (includes resolved to the handles the server gave) and serves until the
/// host stops.
pub async fn run(host: &Host, name: &str, db: Db, notify: Option<(Duration, Uuid)>) -> Result<(), gattling::Error> {
    let server = host.gatt_server(name, 0);
    let mut handles: HashMap<String, u16> = HashMap::new();
    for spec in db.services {
        let mut def = spec.def;
        for inc in &spec.includes {
            if let Some(&h) = handles.get(inc) {
                def = def.include(h);
            }
        }
        let service = server.add_service(def)?;
        if let Some(id) = spec.id {
            handles.insert(id, service.handle);
        }
        for ch in service.characteristics {
            let (label, handle) = (names::uuid_label(&ch.uuid()), ch.value_handle());
            let l2 = label.clone();
            let l3 = label.clone();
            ch.on_read(move |conn| {
                println!("read: {label} (handle {handle:#06x}) by connection {conn:#05x}");
                None
            });
            ch.on_written(move |conn, value| {
                let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
                println!("write: {l2} (handle {handle:#06x}) by connection {conn:#05x}: {hex}");
            });
            ch.on_subscribe(move |conn, cccd| {
                let what = match cccd & 3 {
                    0 => "unsubscribed",
                    1 => "notifications",
                    2 => "indications",
                    _ => "notifications and indications",
                };
                println!("subscribe: {l3} (handle {handle:#06x}) by connection {conn:#05x}: {what}");
            });
        }
    }
    let data = AdvDataBuilder::new()
        .flags(flags::LE_GENERAL_ONLY)
        .name(name)
        .build()
        .map_err(|e| gattling::Error::InvalidArgument(format!("--name {name:?}: {e}")))?;
    let opts = AdvertisingOptions { kind: AdvertisingKind::Connectable, data, ..Default::default() };
    let mut notes = host.notifications();
    host.advertise(&opts).await?;
    eprintln!("serving the database as {name:?} ({}) on {}", host.address(), host.transport_description());
    let accept_host = host.clone();
    tokio::spawn(async move {
        while let Ok(conn) = accept_host.accept().await {
            tokio::spawn(async move {
                let _ = conn.closed().await;
            });
        }
    });
    let (period, counter) = match notify {
        Some((p, u)) => (p, server.characteristic(u)),
        None => (Duration::from_secs(3600), None),
    };
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Some(c) = &counter {
                    c.set_value(&count_up(&c.value()));
                }
            }
            note = notes.recv() => match note {
                Ok(Notification::Connected(info)) => {
                    println!("connected: handle {:#05x} peer {}", info.handle, info.peer)
                }
                Ok(Notification::Disconnected { handle, reason }) => {
                    println!("disconnected: handle {handle:#05x} reason {:#04x} ({})", reason.code(), reason.name());
                    host.advertise(&opts).await?;
                }
                Ok(Notification::HardwareError(code)) => {
                    return Err(gattling::Error::Protocol(format!("controller hardware error {code:#04x}")))
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    return Err(gattling::Error::TransportClosed("the host stopped".into()))
                }
            },
        }
    }
}

/// The value plus one, as a little-endian unsigned integer of the same length (one byte if empty).
fn count_up(v: &[u8]) -> Vec<u8> {
    let mut v = if v.is_empty() { vec![0] } else { v.to_vec() };
    for b in v.iter_mut() {
        let (n, carry) = b.overflowing_add(1);
        *b = n;
        if !carry {
            break;
        }
    }
    v
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_up_little_endian_and_wraps() {
        assert_eq!(super::count_up(&[]), vec![1]);
        assert_eq!(super::count_up(&[0x48, 0]), vec![0x49, 0]);
        assert_eq!(super::count_up(&[0xFF, 0]), vec![0, 1]);
        assert_eq!(super::count_up(&[0xFF]), vec![0]);
    }
}
