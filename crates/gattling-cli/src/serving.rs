//! What every `gattling serve` variant shares: logging each access to a characteristic, and
//! advertising connectable while printing connections, optionally counting one characteristic
//! up and notifying it.

use gattling::gatt::Characteristic;
use gattling::host::Notification;
use gattling::proto::gap::ad::{flags, AdvDataBuilder};
use gattling::{AdvertisingKind, AdvertisingOptions, Host};
use std::time::Duration;

/// Prints every read, write and subscription of `ch` as it happens, naming it `label`.
pub fn log_accesses(ch: &Characteristic, label: String) {
    let handle = ch.value_handle();
    let (l2, l3) = (label.clone(), label.clone());
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

/// Advertises connectable under `name` (again after each disconnection) and serves until the
/// host stops, printing connections; every `period` counts `counter` up and notifies it.
pub async fn advertise_and_serve(
    host: &Host,
    name: &str,
    what: &str,
    counter: Option<(Characteristic, Duration)>,
) -> Result<(), gattling::Error> {
    let data = AdvDataBuilder::new()
        .flags(flags::LE_GENERAL_ONLY)
        .name(name)
        .build()
        .map_err(|e| gattling::Error::InvalidArgument(format!("--name {name:?}: {e}")))?;
    let opts = AdvertisingOptions { kind: AdvertisingKind::Connectable, data, ..Default::default() };
    let mut notes = host.notifications();
    host.advertise(&opts).await?;
    eprintln!("serving {what} as {name:?} ({}) on {}", host.address(), host.transport_description());
    let accept_host = host.clone();
    tokio::spawn(async move {
        while let Ok(conn) = accept_host.accept().await {
            tokio::spawn(async move {
                let _ = conn.closed().await;
            });
        }
    });
    let period = counter.as_ref().map_or(Duration::from_secs(3600), |(_, p)| *p);
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Some((c, _)) = &counter {
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
                Ok(note) => println!("{}", describe_security(&note)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    return Err(gattling::Error::TransportClosed("the host stopped".into()))
                }
            },
        }
    }
}

/// The value plus one, as a little-endian unsigned integer of the same length (one byte if empty).
pub fn count_up(v: &[u8]) -> Vec<u8> {
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

/// One line for a pairing outcome (Secured / PairingFailed notifications).
pub(crate) fn describe_security(note: &Notification) -> String {
    match note {
        Notification::Secured { handle, security, bonded } => format!(
            "secured: handle {handle:#05x} {:?} key {} octets{}",
            gattling::SecurityLevel::of(security),
            security.key_size,
            if *bonded { ", bonded" } else { "" }
        ),
        Notification::PairingFailed { handle, reason, remote } => {
            let name = gattling::proto::smp::pdu::Reason::from_u8(*reason).name();
            let by = if *remote { "by the peer" } else { "here" };
            format!("pairing failed: handle {handle:#05x} reason {reason:#04x} ({name}) {by}")
        }
        other => format!("{other:?}"),
    }
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
