//! GAP and connection commands: AT+UBTM, AT+UBTLN, AT+UBTD, AT+UBTBGD(S), AT+UBTC, AT+UBTDC,
//! AT+UBTCL, AT+UBTCST, AT+UBTRSS, AT+UBTADL(C), AT+UBTASD(C), AT+UBTAL, AT+UBTALD, AT+UBTALS.

use super::{at_addr, at_error, Background, Session, UrcField};
use crate::codes::AtError;
use crate::engine::Form;
use crate::format::Field;
use crate::params::{AddrKind, Args};
use gattling::proto::gap::ad::AdvData;
use gattling::proto::gap::{Address, AddressType, BdAddr};
use gattling::proto::hci::command::Command as Hci;
use gattling::proto::host::{AdvReport, Role};
use gattling::{AdvertisingKind, AdvertisingOptions, ConnectOptions, ScanOptions};
use std::collections::HashSet;
use std::time::Duration;

pub(super) const COMMANDS: &[&str] = &[
    "+UBTM", "+UBTLN", "+UBTD", "+UBTBGD", "+UBTBGDS", "+UBTC", "+UBTDC", "+UBTCL", "+UBTCST", "+UBTRSS", "+UBTADL",
    "+UBTADLC", "+UBTASD", "+UBTASDC", "+UBTAL", "+UBTALD", "+UBTALS",
];

/// u-blox Serial Port Service UUID (2456e1b9-26e2-8f83-e744-f34f01e9d701), little-endian: the
/// module's default advertising data.
const SPS_SERVICE: [u8; 16] =
    [0x01, 0xd7, 0xe9, 0x01, 0x4f, 0xf3, 0x44, 0xe7, 0x83, 0x8f, 0xe2, 0x26, 0xb9, 0xe1, 0x56, 0x24];

/// One discovery report as `+UBTD` / `+UEBTBGD` fields.
fn report_fields(r: &AdvReport) -> Vec<UrcField> {
    let name = AdvData::parse_lenient(&r.data).name_lossy().unwrap_or_default();
    let data_type = if r.event_type == 4 { 0 } else { 1 };
    vec![
        UrcField::Addr(at_addr(&r.address)),
        UrcField::Int(r.rssi as i64),
        UrcField::Str(name),
        UrcField::Int(data_type),
        UrcField::Hex(r.data.clone()),
    ]
}

fn as_fields(f: &[UrcField]) -> Vec<Field<'_>> {
    f.iter()
        .map(|f| match f {
            UrcField::Int(i) => Field::Int(*i),
            UrcField::Hex(h) => Field::Hex(h),
            UrcField::Str(s) => Field::Str(s),
            UrcField::Addr(a) => Field::Addr(*a),
        })
        .collect()
}

impl Session {
    pub(super) async fn exec_gap(&mut self, name: &str, form: Form, params: &str) -> Option<Result<(), AtError>> {
        let r = match (name, form) {
            ("+UBTM", Form::Set) => (|| {
                let a = Args::parse(params)?;
                a.count(1, 1)?;
                self.settings.bt_mode = a.enumerator(0, &[0, 1, 2, 3])? as u8;
                Ok(())
            })(),
            ("+UBTM", Form::Read) => {
                let m = self.settings.bt_mode as i64;
                self.info("+UBTM", &[Field::Int(m)]);
                Ok(())
            }
            ("+UBTLN", Form::Set) => self.set_name(params).await,
            ("+UBTLN", Form::Read) => {
                let n = self.local_name();
                self.info("+UBTLN", &[Field::Str(&n)]);
                Ok(())
            }
            ("+UBTD", Form::Action) => self.discover(0, 0, 5000).await,
            ("+UBTD", Form::Set) => match self.discovery_args(params) {
                Ok((t, m, len)) => self.discover(t, m, len).await,
                Err(e) => Err(e),
            },
            ("+UBTBGD", Form::Action) => self.background(0, 0, 1).await,
            ("+UBTBGD", Form::Set) => match Args::parse(params).and_then(|a| {
                a.count(1, 3)?;
                let t = a.enumerator(0, &[0, 1, 2, 3])?;
                let m = if a.has(1) { a.enumerator(1, &[0, 1])? } else { 0 };
                let o = if a.has(2) { a.enumerator(2, &[0, 1])? } else { 1 };
                Ok((t, m, o))
            }) {
                Ok((t, m, o)) => self.background(t, m, o).await,
                Err(e) => Err(e),
            },
            ("+UBTBGD", Form::Read) => {
                match &self.background {
                    Some(b) => {
                        let f = [
                            Field::Int(1),
                            Field::Int(b.kind),
                            Field::Int(b.mode),
                            Field::Int(b.output),
                            Field::Int(0),
                        ];
                        self.info("+UBTBGD", &f);
                    }
                    None => self.info("+UBTBGD", &[Field::Int(0)]),
                }
                Ok(())
            }
            ("+UBTBGDS", Form::Action) => {
                self.stop_background().await;
                Ok(())
            }
            ("+UBTC", Form::Set) => self.connect(params),
            ("+UBTDC", Form::Set) => self.disconnect(params).await,
            ("+UBTCL", Form::Action) => {
                let list: Vec<_> = {
                    let links = self.shared.links();
                    links.by_at.iter().filter(|(_, l)| l.announced).map(|(h, l)| (*h, at_addr(&l.peer))).collect()
                };
                for (h, a) in list {
                    self.info("+UBTCL", &[Field::Int(h as i64), Field::Addr(a)]);
                }
                Ok(())
            }
            ("+UBTCST", Form::Set) => self.status(params),
            ("+UBTRSS", Form::Set) => self.rssi(params).await,
            ("+UBTADL", Form::Set) => {
                let r = (|| {
                    let a = Args::parse(params)?;
                    a.count(1, 2)?;
                    let data = a.bytes(0, 3, 31)?;
                    let kind = if a.has(1) { a.enumerator(1, &[0, 1, 2])? as u8 } else { 0 };
                    if kind == 0 && data.len() > 28 {
                        return Err(AtError::BYTE_ARRAY_LENGTH);
                    }
                    self.settings.adv_data = Some(data);
                    self.settings.adv_type = kind;
                    Ok(())
                })();
                match r {
                    Ok(()) => self.refresh_advertising().await,
                    e => e,
                }
            }
            ("+UBTADL", Form::Read) => {
                let data = self.settings.adv_data.clone().unwrap_or_else(default_adv_custom);
                let t = self.settings.adv_type as i64;
                self.info("+UBTADL", &[Field::Hex(&data), Field::Int(t)]);
                Ok(())
            }
            ("+UBTADLC", Form::Action) => {
                self.settings.adv_data = None;
                self.settings.adv_type = 0;
                self.refresh_advertising().await
            }
            ("+UBTASD", Form::Set) => {
                let r = Args::parse(params).and_then(|a| {
                    a.count(1, 1)?;
                    a.bytes(0, 1, 31)
                });
                match r {
                    Ok(d) => {
                        self.settings.scan_rsp = Some(d);
                        self.refresh_advertising().await
                    }
                    Err(e) => Err(e),
                }
            }
            ("+UBTASD", Form::Read) => {
                let d = self.scan_response();
                self.info("+UBTASD", &[Field::Hex(&d)]);
                Ok(())
            }
            ("+UBTASDC", Form::Action) => {
                self.settings.scan_rsp = None;
                self.refresh_advertising().await
            }
            ("+UBTAL", Form::Action) => {
                self.settings.advertising = true;
                self.start_advertising().await.map_err(|e| at_error(&e))
            }
            ("+UBTALD", Form::Action) => {
                self.settings.advertising = false;
                self.advertising = false;
                self.host.stop_advertising().await.map_err(|e| at_error(&e))
            }
            ("+UBTALS", Form::Set) => {
                let r = Args::parse(params).and_then(|a| {
                    a.count(2, 2)?;
                    let lo = a.int(0, 32, 16384)?;
                    let hi = a.int(1, 32, 16384)?;
                    if lo > hi {
                        return Err(AtError::INVALID_ARGUMENTS);
                    }
                    Ok((lo as u16, hi as u16))
                });
                match r {
                    Ok((lo, hi)) => {
                        self.settings.adv_min = lo;
                        self.settings.adv_max = hi;
                        self.refresh_advertising().await
                    }
                    Err(e) => Err(e),
                }
            }
            ("+UBTALS", Form::Read) => {
                let (lo, hi) = (self.settings.adv_min as i64, self.settings.adv_max as i64);
                self.info("+UBTALS", &[Field::Int(lo), Field::Int(hi)]);
                Ok(())
            }
            _ => return None,
        };
        Some(r)
    }

    async fn set_name(&mut self, params: &str) -> Result<(), AtError> {
        let a = Args::parse(params)?;
        a.count(1, 1)?;
        let n = a.string(0, 0, 29)?;
        self.settings.local_name = if n.is_empty() { None } else { Some(n) };
        let name = self.local_name();
        if let Some(c) = self.server.characteristic(gattling::proto::Uuid::U16(0x2A00)) {
            c.store_value(name.as_bytes());
        }
        self.refresh_advertising().await
    }

    fn discovery_args(&self, params: &str) -> Result<(i64, i64, i64), AtError> {
        let a = Args::parse(params)?;
        a.count(1, 3)?;
        let t = a.enumerator(0, &[0, 1, 2, 3])?;
        let m = if a.has(1) { a.enumerator(1, &[0, 1])? } else { 0 };
        let len = if a.has(2) { a.int(2, 10, 40000)? } else { 5000 };
        Ok((t, m, len))
    }

    /// AT+UBTD: one `+UBTD` line per report for `len` ms. Types 2 and 3 (data filters) report
    /// like 0 and 1: AT+UBTDFD filters are not implemented.
    async fn discover(&mut self, kind: i64, mode: i64, len: i64) -> Result<(), AtError> {
        let mut scanner = self
            .host
            .scan(ScanOptions { active: mode == 0, ..ScanOptions::default() })
            .await
            .map_err(|e| at_error(&e))?;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(len as u64);
        let mut seen = HashSet::new();
        loop {
            let r = match tokio::time::timeout_at(deadline, scanner.next()).await {
                Ok(Some(r)) => r,
                _ => break,
            };
            if kind % 2 == 1 && !seen.insert((r.address, r.event_type == 4)) {
                continue;
            }
            let f = report_fields(&r);
            self.info("+UBTD", &as_fields(&f));
        }
        scanner.stop().await.map_err(|e| at_error(&e))
    }

    async fn background(&mut self, kind: i64, mode: i64, output: i64) -> Result<(), AtError> {
        self.stop_background().await;
        let mut scanner = self
            .host
            .scan(ScanOptions { active: mode == 0, ..ScanOptions::default() })
            .await
            .map_err(|e| at_error(&e))?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = self.shared.clone();
        let task = tokio::spawn(async move {
            let mut seen = HashSet::new();
            loop {
                tokio::select! {
                    r = scanner.next() => {
                        let Some(r) = r else { return };
                        if output == 0 || (kind % 2 == 1 && !seen.insert((r.address, r.event_type == 4))) {
                            continue;
                        }
                        shared.urc("+UEBTBGD", report_fields(&r));
                    }
                    _ = &mut stopped => {
                        let _ = scanner.stop().await;
                        return;
                    }
                }
            }
        });
        self.background = Some(Background { kind, mode, output, stop, task });
        Ok(())
    }

    async fn stop_background(&mut self) {
        if let Some(b) = self.background.take() {
            let _ = b.stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(3), b.task).await;
        }
    }

    /// AT+UBTC: OK now, `+UEBTC` (from the link registry) or `+UEBTDC` later.
    fn connect(&mut self, params: &str) -> Result<(), AtError> {
        let a = Args::parse(params)?;
        a.count(1, 1)?;
        let addr = a.bd_addr(0)?;
        let mut le = addr.bytes;
        le.reverse();
        let peer = Address {
            addr: BdAddr(le),
            kind: if addr.kind == AddrKind::Random { AddressType::Random } else { AddressType::Public },
        };
        let host = self.host.clone();
        let shared = self.shared.clone();
        self.tasks.retain(|t| !t.is_finished());
        self.tasks.push(tokio::spawn(async move {
            let opts = ConnectOptions { timeout: Duration::from_secs(5), ..ConnectOptions::default() };
            if let Err(e) = host.connect(peer, opts).await {
                tracing::info!(error = %e, "AT+UBTC failed");
                let links = shared.links();
                let h = links.free();
                shared.urc("+UEBTDC", vec![UrcField::Int(h as i64)]);
            }
        }));
        Ok(())
    }

    async fn disconnect(&mut self, params: &str) -> Result<(), AtError> {
        let a = Args::parse(params)?;
        a.count(1, 1)?;
        let conn = self.conn(a.int(0, 0, 255)?)?;
        let cmd =
            Hci::Disconnect { handle: conn.handle(), reason: gattling::proto::hci::status::REMOTE_USER_TERMINATED };
        self.host.command(cmd).await.map(drop).map_err(|e| at_error(&e))
    }

    async fn rssi(&mut self, params: &str) -> Result<(), AtError> {
        let a = Args::parse(params)?;
        a.count(1, 1)?;
        let conn = self.conn(a.int(0, 0, 255)?)?;
        let rssi = conn.rssi().await.map_err(|e| at_error(&e))?;
        self.info("+UBTRSS", &[Field::Int(rssi.into())]);
        Ok(())
    }

    fn status(&mut self, params: &str) -> Result<(), AtError> {
        let a = Args::parse(params)?;
        a.count(1, 2)?;
        let conn = self.conn(a.int(0, 0, 255)?)?;
        let prop = if a.has(1) { Some(a.enumerator(1, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9])?) } else { None };
        let st = self.host.link_state(conn.handle()).ok_or(AtError::NOT_CONNECTED)?;
        let info = st.info;
        // PHY bits as AT+UBTCS and LE Set PHY write them: 1 LE 1M, 2 LE 2M, 4 LE Coded.
        let phy_bit = |p: gattling::Phy| match p {
            gattling::Phy::Le1M => 1,
            gattling::Phy::Le2M => 2,
            gattling::Phy::LeCoded => 4,
            gattling::Phy::Other(_) => 0,
        };
        let values: [i64; 10] = [
            info.interval as i64,
            info.latency as i64,
            info.supervision_timeout as i64 * 10,
            st.att_mtu as i64,
            st.data_length.0 as i64,
            st.data_length.1 as i64,
            // Data length extension in use: larger than the 27-octet default either way.
            i64::from(st.data_length.0 > 27 || st.data_length.1 > 27),
            if info.role == Role::Central { 1 } else { 2 },
            phy_bit(st.phy.0),
            phy_bit(st.phy.1),
        ];
        for (i, v) in values.iter().enumerate() {
            if prop.map_or(true, |p| p == i as i64) {
                self.info("+UBTCST", &[Field::Int(i as i64), Field::Int(*v)]);
            }
        }
        Ok(())
    }

    fn scan_response(&self) -> Vec<u8> {
        if let Some(d) = &self.settings.scan_rsp {
            return d.clone();
        }
        let name = self.local_name();
        let n = &name.as_bytes()[..name.len().min(29)];
        let mut d = vec![n.len() as u8 + 1, 0x09];
        d.extend_from_slice(n);
        d
    }

    fn advertising_options(&self) -> AdvertisingOptions {
        let custom = self.settings.adv_data.clone();
        let kind = match self.settings.adv_type {
            1 => AdvertisingKind::Scannable,
            2 => AdvertisingKind::NonConnectable,
            _ => AdvertisingKind::Connectable,
        };
        let data = match (custom, kind) {
            (Some(d), AdvertisingKind::Connectable) => [&[2u8, 0x01, 0x06][..], &d].concat(),
            (Some(d), _) => d,
            (None, _) => [&[2u8, 0x01, 0x06][..], &default_adv_custom()].concat(),
        };
        AdvertisingOptions {
            kind,
            data,
            scan_response: self.scan_response(),
            interval: self.settings.adv_min,
            auto_restart: true,
            ..AdvertisingOptions::default()
        }
    }

    pub(super) async fn start_advertising(&mut self) -> Result<(), gattling::Error> {
        if self.advertising {
            let _ = self.host.stop_advertising().await;
        }
        self.host.advertise(&self.advertising_options()).await?;
        self.advertising = true;
        Ok(())
    }

    /// Applies changed advertising settings when advertising runs.
    async fn refresh_advertising(&mut self) -> Result<(), AtError> {
        if self.advertising {
            self.start_advertising().await.map_err(|e| at_error(&e))?;
        }
        Ok(())
    }
}

/// The default custom part of the advertising data: the SPS service UUID.
fn default_adv_custom() -> Vec<u8> {
    let mut d = vec![17u8, 0x07];
    d.extend_from_slice(&SPS_SERVICE);
    d
}
