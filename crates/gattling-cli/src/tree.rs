//! `gattling gatt discover`: the database as a tree with SIG names, optionally with values.

use crate::names;
use gattling::gatt_client::GattClient;
use gattling::proto::gatt::client::{CharacteristicInfo, DescriptorInfo, IncludeInfo, ServiceInfo};
use std::collections::HashMap;

/// One discovered service with its includes and characteristics (with their descriptors).
pub type Service = (ServiceInfo, Vec<IncludeInfo>, Vec<(CharacteristicInfo, Vec<DescriptorInfo>)>);

/// Values read during discovery (or the ATT error that answered the read), by handle.
pub type Values = HashMap<u16, Result<Vec<u8>, String>>;

const READ: u8 = 0x02;

/// Reads every characteristic with the read property and every descriptor.
pub async fn read_values(client: &GattClient, services: &[Service]) -> Values {
    let mut values = Values::new();
    for (_, _, chars) in services {
        for (c, descs) in chars {
            if c.properties & READ != 0 {
                values.insert(c.value_handle, client.read_long(c.value_handle).await.map_err(|e| e.to_string()));
            }
            for d in descs {
                values.insert(d.handle, client.read_long(d.handle).await.map_err(|e| e.to_string()));
            }
        }
    }
    values
}

/// A value as hex, with its text when it is printable UTF-8.
pub fn value_text(v: &[u8]) -> String {
    const SHOWN: usize = 32;
    if v.len() > SHOWN {
        let hex: String = v.iter().take(SHOWN).map(|b| format!("{b:02x}")).collect();
        return format!("{hex}... ({} bytes)", v.len());
    }
    let hex: String = v.iter().map(|b| format!("{b:02x}")).collect();
    match std::str::from_utf8(v) {
        Ok(s) if s.len() >= 2 && s.chars().all(|c| !c.is_control()) => format!("{hex} {s:?}"),
        _ => hex,
    }
}

/// A read result for JSON: the hex value, or the error.
pub fn value_json(v: &Result<Vec<u8>, String>) -> serde_json::Value {
    match v {
        Ok(v) => serde_json::json!(v.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        Err(e) => serde_json::json!({ "error": e }),
    }
}

fn value_suffix(values: &Values, handle: u16) -> String {
    match values.get(&handle) {
        Some(Ok(v)) => format!(" = {}", value_text(v)),
        Some(Err(e)) => format!(" = <{e}>"),
        None => String::new(),
    }
}

/// Discovers the whole database: every primary service with its includes, characteristics and
/// descriptors (Core Vol 3 Part G §4.4-§4.7).
pub async fn discover(client: &GattClient) -> Result<Vec<Service>, gattling::Error> {
    let mut services = Vec::new();
    for s in client.discover_services().await? {
        let includes = client.find_included_services(&s).await?;
        let mut chars = Vec::new();
        for c in client.discover_characteristics(s.start, s.end, None).await? {
            let descs = client.discover_descriptors(&c).await?;
            chars.push((c, descs));
        }
        services.push((s, includes, chars));
    }
    Ok(services)
}

/// Prints the tree: service -> characteristic (properties) -> descriptors.
pub fn print(services: &[Service], values: &Values) {
    for (s, inc, chars) in services {
        println!("service {} [{:#06x}-{:#06x}]", names::uuid_label(&s.uuid), s.start, s.end);
        let n = inc.len() + chars.len();
        let mut k = 0;
        for i in inc {
            k += 1;
            let branch = if k == n { "└──" } else { "├──" };
            println!(
                "{branch} include {} [{:#06x}-{:#06x}] at {:#06x}",
                names::uuid_label(&i.uuid),
                i.start,
                i.end,
                i.handle
            );
        }
        for (c, descs) in chars {
            k += 1;
            let last = k == n;
            let (branch, stem) = if last { ("└──", "    ") } else { ("├──", "│   ") };
            println!(
                "{branch} characteristic {} value {:#06x} ({}){}",
                names::uuid_label(&c.uuid),
                c.value_handle,
                crate::property_names(c.properties),
                value_suffix(values, c.value_handle)
            );
            for (j, d) in descs.iter().enumerate() {
                let b = if j + 1 == descs.len() { "└──" } else { "├──" };
                println!(
                    "{stem}{b} descriptor {} at {:#06x}{}",
                    names::uuid_label(&d.uuid),
                    d.handle,
                    value_suffix(values, d.handle)
                );
            }
        }
    }
}
