//! GATT server commands (NORA-W36 3.4.0 §7): AT+UBTGS, AT+UBTGC, AT+UBTGHCC, AT+UBTGD,
//! AT+UBTGSA, AT+UBTGRRR, AT+UBTGRRRE, AT+UBTGNS, AT+UBTGIS, AT+UBTGAV, AT+UBTGSCI; and
//! gattling's own extension AT+UBTGATTL (not a u-blox command):
//!
//! - `AT+UBTGATTL=<table>[,<more>]`: loads an ATT_LIST service table
//!   (`gattling::proto::gatt::att_list`) given as a byte_array (hex), replacing the whole GATT
//!   database: the table at its own handles, the built-in GAP/GATT services compacted below its
//!   first handle. A table too long for one line is sent in parts with `<more>` = 1 on every part
//!   but the last (at most 512 bytes a part, 16384 in all). Replies `OK`, or `ERROR:5` (invalid
//!   parameter) for an invalid table, which leaves the database as it was; `ERROR:43`/`44` for
//!   bad hex; `ERROR:17` when the parts exceed 16384 bytes.
//! - `AT+UBTGATTL?`: `+UBTGATTL:<offset>,<handle>,"<reason>"` for the last refused table (byte
//!   offset, handle or 0, reason), `+UBTGATTL:-1,0,""` when the last table loaded.
//!
//! A service is gathered by AT+UBTGS / AT+UBTGC / AT+UBTGHCC / AT+UBTGD with its handles
//! allocated at once (declaration, value, CCCD, descriptors, in the order the runtime lays them
//! out), and added at exactly those handles on AT+UBTGSA.

use super::{uuid_from_at, Session, UrcField};
use crate::codes::AtError;
use crate::engine::Form;
use crate::format::Field;
use crate::params::Args;
use gattling::gatt::{CharacteristicDef, Permissions, Properties, ServiceDef};
use gattling::proto::Uuid;

pub(super) const COMMANDS: &[&str] = &[
    "+UBTGS",
    "+UBTGC",
    "+UBTGHCC",
    "+UBTGD",
    "+UBTGSA",
    "+UBTGRRR",
    "+UBTGRRRE",
    "+UBTGNS",
    "+UBTGIS",
    "+UBTGAV",
    "+UBTGSCI",
    "+UBTGATTL",
];

/// Largest part of an AT+UBTGATTL table.
const MAX_ATT_LIST_PART: usize = 512;
/// Largest AT+UBTGATTL table.
const MAX_ATT_LIST: usize = 16384;

/// Largest characteristic value (DEFAULT_BLE_CHARACTERISTICS_LENGTH).
const MAX_CHAR: usize = 244;

struct PendingChar {
    def: CharacteristicDef,
    value_handle: u16,
    host_controlled: bool,
}

struct PendingService {
    handle: u16,
    uuid: Uuid,
    next: u16,
    chars: Vec<PendingChar>,
}

/// The service being defined.
#[derive(Default)]
pub(crate) struct Builder {
    pending: Option<PendingService>,
    /// AT+UBTGATTL parts gathered so far.
    att_list: Vec<u8>,
    /// Why the last AT+UBTGATTL table was refused.
    att_list_error: Option<gattling::gatt::AttListError>,
}

fn permissions(props: Properties, read_sec: i64, write_sec: i64, always: bool) -> Permissions {
    let mut p = Permissions::empty();
    if always || props.contains(Properties::READ) {
        p |= Permissions::READ;
        if read_sec >= 2 {
            p |= Permissions::READ_ENCRYPTED;
        }
        if read_sec >= 3 {
            p |= Permissions::READ_AUTHENTICATED;
        }
    }
    if always || props.intersects(Properties::WRITE | Properties::WRITE_WITHOUT_RESPONSE) {
        p |= Permissions::WRITE;
        if write_sec >= 2 {
            p |= Permissions::WRITE_ENCRYPTED;
        }
        if write_sec >= 3 {
            p |= Permissions::WRITE_AUTHENTICATED;
        }
    }
    p
}

impl Session {
    pub(super) async fn exec_server(&mut self, name: &str, form: Form, params: &str) -> Option<Result<(), AtError>> {
        let r = match (name, form) {
            ("+UBTGSA", Form::Action) => self.activate(),
            ("+UBTGATTL", Form::Read) => {
                let (offset, handle, reason) = match &self.gatt.att_list_error {
                    Some(e) => (e.offset as i64, i64::from(e.handle.unwrap_or(0)), e.reason.to_string()),
                    None => (-1, 0, String::new()),
                };
                self.info(name, &[Field::Int(offset), Field::Int(handle), Field::Str(&reason)]);
                Ok(())
            }
            (_, Form::Set) if COMMANDS.contains(&name) => match Args::parse(params) {
                Ok(a) => self.server_command(name, &a),
                Err(e) => Err(e),
            },
            _ => return None,
        };
        Some(r)
    }

    fn next_free(&self) -> u16 {
        self.server.attributes().last().map(|a| a.handle.saturating_add(1)).unwrap_or(1)
    }

    fn server_command(&mut self, name: &str, a: &Args) -> Result<(), AtError> {
        match name {
            "+UBTGS" => {
                a.count(1, 1)?;
                let uuid = uuid_from_at(&a.uuid(0)?)?;
                let handle = self.next_free();
                let next = handle.checked_add(1).ok_or(AtError::LIMIT_REACHED)?;
                self.gatt.pending = Some(PendingService { handle, uuid, next, chars: Vec::new() });
                self.info(name, &[Field::Int(handle as i64)]);
                Ok(())
            }
            "+UBTGC" | "+UBTGHCC" => {
                let host_controlled = name == "+UBTGHCC";
                if host_controlled {
                    a.count(4, 4)?;
                } else {
                    a.count(5, 6)?;
                }
                let uuid = uuid_from_at(&a.uuid(0)?)?;
                let props = a.bytes(1, 1, 1)?[0];
                let read_sec = a.enumerator(2, &[1, 2, 3])?;
                let write_sec = a.enumerator(3, &[1, 2, 3])?;
                let (value, max_len) = if host_controlled {
                    (Vec::new(), MAX_CHAR)
                } else {
                    let value = a.bytes(4, 0, MAX_CHAR)?;
                    let max = if a.has(5) { a.int(5, 1, MAX_CHAR as i64)? as usize } else { MAX_CHAR };
                    if value.len() > max {
                        return Err(AtError::BYTE_ARRAY_LENGTH);
                    }
                    (value, max)
                };
                if props & 0x80 != 0 {
                    return Err(AtError::INVALID_PARAMETER);
                }
                let props = Properties(props);
                let Some(s) = self.gatt.pending.as_mut() else { return Err(AtError::NOT_FOUND) };
                let has_cccd = props.intersects(Properties::NOTIFY | Properties::INDICATE);
                let value_handle = s.next.checked_add(1).ok_or(AtError::LIMIT_REACHED)?;
                let after = value_handle.checked_add(1 + has_cccd as u16).ok_or(AtError::LIMIT_REACHED)?;
                let cccd = if has_cccd { value_handle + 1 } else { 0 };
                s.next = after;
                let def = CharacteristicDef::new(uuid, props, &value)
                    .permissions(permissions(props, read_sec, write_sec, false))
                    .max_len(max_len)
                    .at_handle(value_handle);
                s.chars.push(PendingChar { def, value_handle, host_controlled });
                self.info(name, &[Field::Int(value_handle as i64), Field::Int(cccd as i64)]);
                Ok(())
            }
            "+UBTGD" => {
                a.count(4, 5)?;
                let uuid = uuid_from_at(&a.uuid(0)?)?;
                let read_sec = a.enumerator(1, &[1, 2, 3])?;
                let write_sec = a.enumerator(2, &[1, 2, 3])?;
                let value = a.bytes(3, 0, 23)?;
                let max = if a.has(4) { a.int(4, 1, 23)? as usize } else { 23 };
                if value.len() > max {
                    return Err(AtError::BYTE_ARRAY_LENGTH);
                }
                let Some(s) = self.gatt.pending.as_mut() else { return Err(AtError::NOT_FOUND) };
                let handle = s.next;
                let next = handle.checked_add(1).ok_or(AtError::LIMIT_REACHED)?;
                let Some(c) = s.chars.last_mut() else { return Err(AtError::NOT_FOUND) };
                let perms = permissions(Properties::empty(), read_sec, write_sec, true);
                c.def = std::mem::replace(&mut c.def, CharacteristicDef::new(Uuid::U16(0), Properties::empty(), &[]))
                    .descriptor_max(uuid, &value, perms, max);
                s.next = next;
                self.info(name, &[Field::Int(handle as i64)]);
                Ok(())
            }
            "+UBTGRRR" | "+UBTGRRRE" => {
                a.count(2, 2)?;
                let h = a.int(0, 0, 0xFFFF)?;
                let answer = if name == "+UBTGRRR" { Ok(a.bytes(1, 0, MAX_CHAR)?) } else { Err(a.bytes(1, 1, 1)?[0]) };
                let at = u8::try_from(h).map_err(|_| AtError::NOT_CONNECTED)?;
                let req = {
                    let mut links = self.shared.links();
                    let link = links.by_at.get_mut(&at).ok_or(AtError::NOT_CONNECTED)?;
                    link.reads.pop_front().ok_or(AtError::NOT_FOUND)?
                };
                match answer {
                    Ok(v) => req.respond(&v),
                    Err(code) => req.reject(code),
                }
                Ok(())
            }
            "+UBTGNS" | "+UBTGIS" => {
                a.count(3, 3)?;
                let h = a.int(0, 0, 0xFFFF)?;
                let vh = a.int(1, 1, 0xFFFF)? as u16;
                let v = a.bytes(2, 0, MAX_CHAR)?;
                let conn = self.conn(h)?;
                let c = self.server.characteristic_at(vh).ok_or(AtError::NOT_FOUND)?;
                if v.len() > conn.att_mtu() as usize - 3 {
                    return Err(AtError::BYTE_ARRAY_LENGTH);
                }
                if name == "+UBTGNS" {
                    c.store_value(&v);
                    if !c.notify(conn.handle(), &v) {
                        return Err(AtError::CCCD_IMPROPER);
                    }
                } else {
                    let at = h as u8;
                    if let Some(l) = self.shared.links().by_at.get_mut(&at) {
                        l.indications.push_back(vh);
                    }
                    if !c.indicate(conn.handle(), &v) {
                        if let Some(l) = self.shared.links().by_at.get_mut(&at) {
                            l.indications.pop_back();
                        }
                        return Err(AtError::CCCD_IMPROPER);
                    }
                }
                Ok(())
            }
            "+UBTGAV" => {
                a.count(2, 2)?;
                let handle = a.int(0, 1, 0xFFFF)? as u16;
                let v = a.bytes(1, 0, MAX_CHAR)?;
                if let Some(c) = self.server.characteristic_at(handle) {
                    c.store_value(&v);
                    return Ok(());
                }
                let pending =
                    self.gatt.pending.as_mut().and_then(|s| s.chars.iter_mut().find(|c| c.value_handle == handle));
                match pending {
                    Some(c) => {
                        c.def.value = v;
                        Ok(())
                    }
                    None => Err(AtError::NOT_FOUND),
                }
            }
            "+UBTGSCI" => {
                a.count(3, 3)?;
                let h = a.int(0, 0, 0xFFFF)?;
                let start = a.int(1, 1, 0xFFFF)? as u16;
                let end = a.int(2, 1, 0xFFFF)? as u16;
                let conn = self.conn(h)?;
                let sc = self.server.characteristic(Uuid::U16(0x2A05)).ok_or(AtError::NOT_SUPPORTED)?;
                let mut v = start.to_le_bytes().to_vec();
                v.extend_from_slice(&end.to_le_bytes());
                if sc.indicate(conn.handle(), &v) {
                    Ok(())
                } else {
                    Err(AtError::CCCD_IMPROPER)
                }
            }
            "+UBTGATTL" => {
                a.count(1, 2)?;
                let part = a.bytes(0, 1, MAX_ATT_LIST_PART)?;
                let more = if a.has(1) { a.enumerator(1, &[0, 1])? == 1 } else { false };
                if self.gatt.att_list.len() + part.len() > MAX_ATT_LIST {
                    self.gatt.att_list.clear();
                    return Err(AtError::LIMIT_REACHED);
                }
                self.gatt.att_list.extend_from_slice(&part);
                if more {
                    return Ok(());
                }
                let table = std::mem::take(&mut self.gatt.att_list);
                match self.server.load_att_list(&table) {
                    Ok(_) => {
                        self.gatt.pending = None;
                        self.gatt.att_list_error = None;
                        Ok(())
                    }
                    Err(gattling::Error::AttList(e)) => {
                        tracing::warn!(error = %e, "AT+UBTGATTL: table refused");
                        self.gatt.att_list_error = Some(e);
                        Err(AtError::INVALID_PARAMETER)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "AT+UBTGATTL: table not loaded");
                        Err(AtError::DEVICE_ERROR)
                    }
                }
            }
            _ => Err(AtError::INVALID_COMMAND),
        }
    }

    /// AT+UBTGSA: the gathered service goes into the database at its handles.
    fn activate(&mut self) -> Result<(), AtError> {
        let s = self.gatt.pending.take().ok_or(AtError::NOT_FOUND)?;
        let mut def = ServiceDef::primary(s.uuid).at_handle(s.handle);
        let mut host_controlled = Vec::new();
        for c in s.chars {
            if c.host_controlled {
                host_controlled.push(c.value_handle);
            }
            def = def.characteristic(c.def);
        }
        self.server.add_service(def).map_err(|e| {
            tracing::warn!(error = %e, "AT+UBTGSA: service refused");
            AtError::INVALID_PARAMETER
        })?;
        for vh in host_controlled {
            let Some(c) = self.server.characteristic_at(vh) else { continue };
            let shared = self.shared.clone();
            c.on_read_request(move |req| {
                let mut links = shared.links();
                let Some(at) = links.at_of(req.conn()) else { return };
                let vh = req.value_handle();
                if let Some(l) = links.by_at.get_mut(&at) {
                    l.reads.push_back(req);
                    shared.urc("+UEBTGRR", vec![UrcField::Int(at as i64), UrcField::Int(vh as i64)]);
                }
            });
        }
        Ok(())
    }
}
