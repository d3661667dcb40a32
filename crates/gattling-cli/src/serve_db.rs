//! `gattling serve --db FILE.toml [--notify-every MS CHAR]`: serve a declared database,
//! logging every access, optionally counting one characteristic up and notifying it.

use crate::db_toml::Db;
use crate::names;
use gattling::proto::Uuid;
use gattling::Host;
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
        for ch in &service.characteristics {
            crate::serving::log_accesses(ch, names::uuid_label(&ch.uuid()));
        }
    }
    let counter = notify.and_then(|(period, uuid)| server.characteristic(uuid).map(|c| (c, period)));
    crate::serving::advertise_and_serve(host, name, "the database", counter).await
}
