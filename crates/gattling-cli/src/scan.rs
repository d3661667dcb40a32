//! `gattling scan`: live lines as devices appear and change, de-duplicated with counts, filters,
//! JSON lines, and a summary table on exit.

use crate::names;
use gattling::proto::gap::ad::AdvData;
use gattling::proto::gap::AddressType;
use gattling::proto::Uuid;
use gattling::{Host, ScanOptions};
use std::time::Duration;

/// What `gattling scan` was asked for.
pub struct Options {
    pub passive: bool,
    pub json: bool,
    pub duration: Option<Duration>,
    pub filter_name: Option<String>,
    pub filter_service: Option<Uuid>,
}

/// What a scan has learned about one device, merged from advertising and scan-response data.
#[derive(Default, Clone)]
struct Device {
    address: String,
    random: bool,
    rssi: i8,
    count: u64,
    name: Option<String>,
    services: Vec<Uuid>,
    manufacturer: Vec<(u16, Vec<u8>)>,
    appearance: Option<u16>,
    tx_power: Option<i8>,
    connectable: bool,
    /// Printed at least once (it matched the filters).
    shown: bool,
}

impl Device {
    /// Merges one report; true when something other than the RSSI changed.
    fn merge(&mut self, data: &AdvData<'_>, event_type: u8, rssi: i8) -> bool {
        self.count += 1;
        self.rssi = rssi;
        let mut changed = false;
        if let Some(n) = data.name_lossy() {
            if self.name.as_deref() != Some(n.as_str()) {
                self.name = Some(n);
                changed = true;
            }
        }
        for u in data.service_uuids() {
            let u = u.shortest();
            if !self.services.contains(&u) {
                self.services.push(u);
                changed = true;
            }
        }
        for (company, bytes) in data.manufacturer_data_all() {
            let entry = (company, bytes.to_vec());
            if !self.manufacturer.contains(&entry) {
                self.manufacturer.retain(|(c, _)| *c != company);
                self.manufacturer.push(entry);
                changed = true;
            }
        }
        if let Some(a) = data.appearance() {
            changed |= self.appearance.replace(a) != Some(a);
        }
        if let Some(t) = data.tx_power() {
            changed |= self.tx_power.replace(t) != Some(t);
        }
        // ADV_IND and ADV_DIRECT_IND are connectable; a scan response says nothing about it.
        if event_type != 4 {
            let c = matches!(event_type, 0 | 1);
            changed |= c != self.connectable && self.count > 1;
            self.connectable = c;
        }
        changed
    }

    fn matches(&self, o: &Options) -> bool {
        let name_ok = o
            .filter_name
            .as_ref()
            .is_none_or(|f| self.name.as_ref().is_some_and(|n| n.to_lowercase().contains(&f.to_lowercase())));
        let service_ok =
            o.filter_service.as_ref().is_none_or(|f| self.services.iter().any(|u| gattling::proto::uuid::same(u, f)));
        name_ok && service_ok
    }

    fn json(&self, event: &str) -> serde_json::Value {
        serde_json::json!({
            "event": event,
            "address": self.address,
            "address_type": if self.random { "random" } else { "public" },
            "rssi": self.rssi,
            "count": self.count,
            "name": self.name,
            "services": self.services.iter().map(names::uuid_str).collect::<Vec<_>>(),
            "service_names": self.services.iter().map(names::uuid).collect::<Vec<_>>(),
            "manufacturer_data": self.manufacturer.iter().map(|(c, d)| serde_json::json!({
                "company_id": c, "company": names::company(*c), "data": hex(d),
            })).collect::<Vec<_>>(),
            "appearance": self.appearance,
            "appearance_name": self.appearance.and_then(names::appearance),
            "tx_power": self.tx_power,
            "connectable": self.connectable,
        })
    }

    fn line(&self, event: &str) -> String {
        let mut l = format!(
            "{event:<4} {} ({}) rssi {:>4} dBm",
            self.address,
            if self.random { "random" } else { "public" },
            self.rssi
        );
        if let Some(n) = &self.name {
            l += &format!("  name {n:?}");
        }
        if !self.services.is_empty() {
            l +=
                &format!("  services [{}]", self.services.iter().map(names::uuid_label).collect::<Vec<_>>().join(", "));
        }
        for (c, d) in &self.manufacturer {
            l += &format!("  manufacturer {} {}", names::company_label(*c), hex(d));
        }
        if let Some(a) = self.appearance {
            l += &format!("  appearance {a:#06x}");
            if let Some(n) = names::appearance(a) {
                l += &format!(" ({n})");
            }
        }
        if let Some(t) = self.tx_power {
            l += &format!("  tx {t} dBm");
        }
        l += if self.connectable { "  connectable" } else { "  non-connectable" };
        l
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Scans until the duration passes or Ctrl-C, printing live lines, then the summary.
pub async fn run(host: &Host, o: Options) -> Result<(), gattling::Error> {
    let mut scanner = host.scan(ScanOptions { active: !o.passive, ..ScanOptions::default() }).await?;
    let mut devices: Vec<Device> = Vec::new();
    let deadline = tokio::time::sleep(o.duration.unwrap_or(Duration::from_secs(u64::MAX / 4)));
    tokio::pin!(deadline);
    loop {
        let r = tokio::select! {
            r = scanner.next() => match r {
                Some(r) => r,
                None => break,
            },
            _ = &mut deadline => break,
            _ = crate::shutdown::requested() => break,
        };
        let random = matches!(r.address.kind, AddressType::Random | AddressType::RandomIdentity);
        let address = r.address.addr.to_string();
        let data = AdvData::parse_lenient(&r.data);
        let i = match devices.iter().position(|d| d.address == address && d.random == random) {
            Some(i) => i,
            None => {
                devices.push(Device { address, random, ..Device::default() });
                devices.len() - 1
            }
        };
        let Some(dev) = devices.get_mut(i) else { continue };
        let changed = dev.merge(&data, r.event_type, r.rssi);
        if !dev.matches(&o) || (!changed && dev.shown) {
            continue;
        }
        let event = if dev.shown { "changed" } else { "new" };
        dev.shown = true;
        if o.json {
            println!("{}", dev.json(event));
        } else {
            println!("{}", dev.line(if event == "new" { "NEW" } else { "CHG" }));
        }
    }
    let _ = scanner.stop().await;
    if !o.json {
        summary(&devices);
    }
    Ok(())
}

fn summary(devices: &[Device]) {
    let shown: Vec<&Device> = devices.iter().filter(|d| d.shown).collect();
    println!();
    println!("{} device(s) seen", shown.len());
    if shown.is_empty() {
        return;
    }
    println!(
        "{:<17}  {:<6}  {:>4}  {:>7}  {:<4}  {:<20}  SERVICES",
        "ADDRESS", "TYPE", "RSSI", "REPORTS", "CONN", "NAME"
    );
    for d in shown {
        println!(
            "{:<17}  {:<6}  {:>4}  {:>7}  {:<4}  {:<20}  {}",
            d.address,
            if d.random { "random" } else { "public" },
            d.rssi,
            d.count,
            if d.connectable { "yes" } else { "no" },
            d.name.as_deref().unwrap_or("-"),
            d.services.iter().map(names::uuid_label).collect::<Vec<_>>().join(", ")
        );
    }
}
