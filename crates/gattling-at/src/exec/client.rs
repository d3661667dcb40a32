//! GATT client commands (the seed's chapter 6): AT+UBTGPSD, AT+UBTGPSDU, AT+UBTGSCD,
//! AT+UBTGCDD, AT+UBTGR, AT+UBTGRU, AT+UBTGW, AT+UBTGCCW, AT+UBTGWNR, AT+UBTGWL.

use super::{at_error, uuid_from_at, uuid_to_at, Prepared, Session, GATT_TIMEOUT};
use crate::codes::AtError;
use crate::engine::Form;
use crate::format::Field;
use crate::params::Args;
use gattling::proto::gatt::client::{DiscoverDescriptors, WriteLong};
use std::future::Future;

pub(super) const COMMANDS: &[&str] = &[
    "+UBTGPSD",
    "+UBTGPSDU",
    "+UBTGSCD",
    "+UBTGCDD",
    "+UBTGR",
    "+UBTGRU",
    "+UBTGW",
    "+UBTGCCW",
    "+UBTGWNR",
    "+UBTGWL",
];

/// Largest value a write takes (Core Vol 3 Part F §3.2.9).
const MAX_VALUE: usize = 512;

/// Runs a GATT procedure within ucxclient's command timeout.
async fn gatt<T>(f: impl Future<Output = Result<T, gattling::Error>>) -> Result<T, AtError> {
    match tokio::time::timeout(GATT_TIMEOUT, f).await {
        Ok(r) => r.map_err(|e| at_error(&e)),
        Err(_) => Err(AtError::TIMEOUT),
    }
}

fn handle(a: &Args, i: usize) -> Result<u16, AtError> {
    a.int(i, 1, 0xFFFF).map(|h| h as u16)
}

impl Session {
    pub(super) async fn exec_client(&mut self, name: &str, form: Form, params: &str) -> Option<Result<(), AtError>> {
        if form != Form::Set || !COMMANDS.contains(&name) {
            return None;
        }
        let r = match Args::parse(params) {
            Ok(a) => self.client_command(name, &a).await,
            Err(e) => Err(e),
        };
        Some(r)
    }

    async fn client_command(&mut self, name: &str, a: &Args) -> Result<(), AtError> {
        match name {
            "+UBTGPSD" => {
                a.count(1, 1)?;
                let h = a.int(0, 0, 0xFFFF)?;
                let c = self.client(h).await?;
                for s in gatt(c.discover_services()).await? {
                    let u = uuid_to_at(&s.uuid);
                    self.info(
                        name,
                        &[Field::Int(h), Field::Int(s.start as i64), Field::Int(s.end as i64), Field::Hex(&u)],
                    );
                }
                Ok(())
            }
            "+UBTGPSDU" => {
                a.count(2, 2)?;
                let h = a.int(0, 0, 0xFFFF)?;
                let uuid = uuid_from_at(&a.uuid(1)?)?;
                let c = self.client(h).await?;
                for s in gatt(c.discover_services_by_uuid(uuid)).await? {
                    self.info(name, &[Field::Int(h), Field::Int(s.start as i64), Field::Int(s.end as i64)]);
                }
                Ok(())
            }
            "+UBTGSCD" => {
                a.count(3, 3)?;
                let h = a.int(0, 0, 0xFFFF)?;
                let (start, end) = (handle(a, 1)?, handle(a, 2)?);
                let c = self.client(h).await?;
                for ch in gatt(c.discover_characteristics(start, end, None)).await? {
                    let u = uuid_to_at(&ch.uuid);
                    self.info(
                        name,
                        &[
                            Field::Int(h),
                            Field::Int(ch.handle as i64),
                            Field::Hex(&[ch.properties]),
                            Field::Int(ch.value_handle as i64),
                            Field::Hex(&u),
                        ],
                    );
                }
                Ok(())
            }
            "+UBTGCDD" => {
                a.count(3, 3)?;
                let h = a.int(0, 0, 0xFFFF)?;
                let (value, end) = (handle(a, 1)?, handle(a, 2)?);
                let c = self.client(h).await?;
                let list = gatt(c.run(DiscoverDescriptors::new(value.saturating_add(1), end))).await?;
                let decl = value.saturating_sub(1) as i64;
                for d in list {
                    let u = uuid_to_at(&d.uuid);
                    self.info(name, &[Field::Int(h), Field::Int(decl), Field::Int(d.handle as i64), Field::Hex(&u)]);
                }
                Ok(())
            }
            "+UBTGR" => {
                a.count(2, 2)?;
                let h = a.int(0, 0, 0xFFFF)?;
                let vh = handle(a, 1)?;
                let c = self.client(h).await?;
                let v = gatt(c.read_long(vh)).await?;
                self.info(name, &[Field::Int(h), Field::Int(vh as i64), Field::Hex(&v)]);
                Ok(())
            }
            "+UBTGRU" => {
                a.count(4, 4)?;
                let h = a.int(0, 0, 0xFFFF)?;
                let (start, end) = (handle(a, 1)?, handle(a, 2)?);
                let uuid = uuid_from_at(&a.uuid(3)?)?;
                let c = self.client(h).await?;
                let found = gatt(c.read_by_uuid(start, end, uuid)).await?;
                let full = c.mtu() as usize - 4;
                for (vh, mut v) in found {
                    // A value that filled the response may be longer: read all of it.
                    if v.len() >= full {
                        v = gatt(c.read_long(vh)).await?;
                    }
                    self.info(name, &[Field::Int(h), Field::Int(vh as i64), Field::Hex(&v)]);
                }
                Ok(())
            }
            "+UBTGW" => {
                a.count(3, 3)?;
                let h = a.int(0, 0, 0xFFFF)?;
                let vh = handle(a, 1)?;
                let v = a.bytes(2, 0, MAX_VALUE)?;
                let c = self.client(h).await?;
                gatt(c.write(vh, &v)).await
            }
            "+UBTGWNR" => {
                a.count(3, 3)?;
                let h = a.int(0, 0, 0xFFFF)?;
                let vh = handle(a, 1)?;
                let v = a.bytes(2, 0, MAX_VALUE)?;
                let c = self.client(h).await?;
                if v.len() > c.mtu() as usize - 3 {
                    return Err(AtError::BYTE_ARRAY_LENGTH);
                }
                gatt(c.write_without_response(vh, &v)).await
            }
            "+UBTGCCW" => {
                a.count(3, 3)?;
                let h = a.int(0, 0, 0xFFFF)?;
                let dh = handle(a, 1)?;
                let config = a.enumerator(2, &[0, 1, 2, 3])? as u16;
                let c = self.client(h).await?;
                gatt(c.write(dh, &config.to_le_bytes())).await
            }
            "+UBTGWL" => self.write_long(a).await,
            _ => Err(AtError::INVALID_COMMAND),
        }
    }

    /// AT+UBTGWL: parts are gathered per link (flag 1) from the first part's offset on and
    /// written with Prepare Write / Execute Write on the final part (flag 0), at their offsets;
    /// flag 2 drops what was gathered.
    async fn write_long(&mut self, a: &Args) -> Result<(), AtError> {
        a.count(6, 6)?;
        let h = a.int(0, 0, 0xFFFF)?;
        let vh = handle(a, 1)?;
        let data = a.bytes(2, 0, MAX_VALUE)?;
        let reliable = a.enumerator(3, &[0, 1])? == 1;
        let flag = a.enumerator(4, &[0, 1, 2])?;
        let offset = a.int(5, 0, MAX_VALUE as i64)? as usize;
        let at = u8::try_from(h).map_err(|_| AtError::NOT_CONNECTED)?;
        let pending = {
            let mut links = self.shared.links();
            let link = links.by_at.get_mut(&at).ok_or(AtError::NOT_CONNECTED)?;
            if flag == 2 {
                link.prepared = None;
                return Ok(());
            }
            let p = link.prepared.get_or_insert_with(|| Prepared {
                handle: vh,
                reliable,
                start: offset,
                value: Vec::new(),
            });
            // Parts continue (or rewrite the end of) what was gathered from the first offset on.
            let end = p.start + p.value.len();
            if p.handle != vh || offset < p.start || offset > end || offset + data.len() > MAX_VALUE {
                link.prepared = None;
                return Err(AtError::INVALID_PARAMETER);
            }
            p.reliable |= reliable;
            p.value.truncate(offset - p.start);
            p.value.extend_from_slice(&data);
            if flag == 1 {
                return Ok(());
            }
            link.prepared.take()
        };
        let Some(p) = pending else { return Ok(()) };
        let c = self.client(h).await?;
        let mtu = c.mtu();
        let start = u16::try_from(p.start).map_err(|_| AtError::INVALID_PARAMETER)?;
        gatt(c.run(WriteLong::at_offsets(&[(p.handle, start, &p.value)], mtu))).await
    }
}
