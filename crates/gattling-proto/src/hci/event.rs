//! HCI events a host handles, decoded without copying and encoded for controllers and tests
//! (Core Vol 4 Part E §7.7).

use super::command::Opcode;
use crate::codec::{DecodeError, Reader, Writer};
use crate::gap::BdAddr;
use alloc::vec::Vec;

/// Event codes (Core Vol 4 Part E §7.7).
pub mod code {
    /// Disconnection Complete (§7.7.5).
    pub const DISCONNECTION_COMPLETE: u8 = 0x05;
    /// Encryption Change (v1) (§7.7.8).
    pub const ENCRYPTION_CHANGE: u8 = 0x08;
    /// Command Complete (§7.7.14).
    pub const COMMAND_COMPLETE: u8 = 0x0E;
    /// Command Status (§7.7.15).
    pub const COMMAND_STATUS: u8 = 0x0F;
    /// Hardware Error (§7.7.16).
    pub const HARDWARE_ERROR: u8 = 0x10;
    /// Number Of Completed Packets (§7.7.19).
    pub const NUMBER_OF_COMPLETED_PACKETS: u8 = 0x13;
    /// Encryption Key Refresh Complete (§7.7.39).
    pub const ENCRYPTION_KEY_REFRESH_COMPLETE: u8 = 0x30;
    /// Encryption Change (v2) (§7.7.8), with the key size.
    pub const ENCRYPTION_CHANGE_V2: u8 = 0x59;
    /// LE Meta (§7.7.65).
    pub const LE_META: u8 = 0x3E;
}

/// LE Meta subevent codes (Core Vol 4 Part E §7.7.65).
pub mod subevent {
    /// LE Connection Complete (§7.7.65.1).
    pub const CONNECTION_COMPLETE: u8 = 0x01;
    /// LE Advertising Report (§7.7.65.2).
    pub const ADVERTISING_REPORT: u8 = 0x02;
    /// LE Connection Update Complete (§7.7.65.3).
    pub const CONNECTION_UPDATE_COMPLETE: u8 = 0x03;
    /// LE Long Term Key Request (§7.7.65.5).
    pub const LONG_TERM_KEY_REQUEST: u8 = 0x05;
    /// LE Remote Connection Parameter Request (§7.7.65.6).
    pub const REMOTE_CONNECTION_PARAMETER_REQUEST: u8 = 0x06;
    /// LE Data Length Change (§7.7.65.7).
    pub const DATA_LENGTH_CHANGE: u8 = 0x07;
    /// LE Enhanced Connection Complete (v1) (§7.7.65.10).
    pub const ENHANCED_CONNECTION_COMPLETE: u8 = 0x0A;
    /// LE PHY Update Complete (§7.7.65.12).
    pub const PHY_UPDATE_COMPLETE: u8 = 0x0C;
    /// LE Enhanced Connection Complete (v2) (§7.7.65.10).
    pub const ENHANCED_CONNECTION_COMPLETE_V2: u8 = 0x29;
}

/// LE Connection Complete and LE Enhanced Connection Complete (v1/v2) share these fields
/// (Core Vol 4 Part E §7.7.65.1, §7.7.65.10).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ConnectionComplete {
    /// Status; non-zero means no connection was made.
    pub status: u8,
    /// Connection handle.
    pub handle: u16,
    /// 0 central, 1 peripheral.
    pub role: u8,
    /// Peer address type.
    pub peer_address_type: u8,
    /// Peer address.
    pub peer_address: BdAddr,
    /// Local resolvable private address (enhanced only; zero otherwise).
    pub local_rpa: BdAddr,
    /// Peer resolvable private address (enhanced only; zero otherwise).
    pub peer_rpa: BdAddr,
    /// Connection interval (units of 1.25 ms).
    pub interval: u16,
    /// Peripheral latency.
    pub latency: u16,
    /// Supervision timeout (units of 10 ms).
    pub supervision_timeout: u16,
    /// Central clock accuracy.
    pub clock_accuracy: u8,
    /// Which of the three encodings this came from (subevent 0x01, 0x0A or 0x29).
    pub subevent: u8,
}

/// One entry of an LE Advertising Report (Core Vol 4 Part E §7.7.65.2).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AdvertisingReport<'a> {
    /// 0 ADV_IND, 1 ADV_DIRECT_IND, 2 ADV_SCAN_IND, 3 ADV_NONCONN_IND, 4 SCAN_RSP.
    pub event_type: u8,
    /// Advertiser address type.
    pub address_type: u8,
    /// Advertiser address.
    pub address: BdAddr,
    /// Advertising or scan response data.
    pub data: &'a [u8],
    /// RSSI in dBm (127 = not available).
    pub rssi: i8,
}

/// The reports of one LE Advertising Report event, validated at decode time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AdvertisingReports<'a> {
    count: u8,
    body: &'a [u8],
}

impl<'a> AdvertisingReports<'a> {
    /// Validates the report list (the spec's column layout: all types, then addresses, ...).
    fn parse(params: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(params, "LE Advertising Report");
        let count = r.u8()?;
        if count == 0 {
            return Err(DecodeError::Invalid { what: "LE Advertising Report", reason: "zero reports" });
        }
        let body = r.rest();
        let n = count as usize;
        // event types, address types, addresses
        let fixed = n * (1 + 1 + 6);
        let lens = body.get(fixed..fixed + n).ok_or(DecodeError::Truncated {
            what: "LE Advertising Report",
            need: fixed + n,
            have: body.len(),
        })?;
        let data_total: usize = lens.iter().map(|l| *l as usize).sum();
        let need = fixed + n + data_total + n;
        if body.len() != need {
            return Err(if body.len() < need {
                DecodeError::Truncated { what: "LE Advertising Report", need, have: body.len() }
            } else {
                DecodeError::Trailing { what: "LE Advertising Report", extra: body.len() - need }
            });
        }
        if lens.iter().any(|l| *l > 31) {
            return Err(DecodeError::Oversized { what: "advertising report data", len: 32, max: 31 });
        }
        Ok(Self { count, body })
    }

    /// Number of reports.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Always false: an event carries at least one report.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The reports in order.
    pub fn iter(&self) -> impl Iterator<Item = AdvertisingReport<'a>> + 'a {
        let n = self.count as usize;
        let body = self.body;
        let byte = move |i: usize| body.get(i).copied().unwrap_or(0);
        let lens_at = n * 8;
        let data_at = lens_at + n;
        let mut offset = data_at;
        let data_total: usize = (0..n).map(|i| byte(lens_at + i) as usize).sum();
        let rssi_at = data_at + data_total;
        (0..n).map(move |i| {
            let len = byte(lens_at + i) as usize;
            let data = body.get(offset..offset + len).unwrap_or(&[]);
            offset += len;
            let mut a = [0u8; 6];
            if let Some(s) = body.get(2 * n + 6 * i..2 * n + 6 * i + 6) {
                a.copy_from_slice(s);
            }
            AdvertisingReport {
                event_type: byte(i),
                address_type: byte(n + i),
                address: BdAddr(a),
                data,
                rssi: byte(rssi_at + i) as i8,
            }
        })
    }

    /// Encodes reports into LE Advertising Report parameters (subevent code included).
    pub fn encode(reports: &[AdvertisingReport<'_>], out: &mut Vec<u8>) {
        out.put_u8(subevent::ADVERTISING_REPORT);
        out.put_u8(reports.len() as u8);
        reports.iter().for_each(|r| out.put_u8(r.event_type));
        reports.iter().for_each(|r| out.put_u8(r.address_type));
        reports.iter().for_each(|r| out.put(&r.address.0));
        reports.iter().for_each(|r| out.put_u8(r.data.len() as u8));
        reports.iter().for_each(|r| out.put(r.data));
        reports.iter().for_each(|r| out.put_u8(r.rssi as u8));
    }
}

/// Entries of a Number Of Completed Packets event: (handle, completed count) pairs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CompletedPackets<'a>(&'a [u8]);

impl<'a> CompletedPackets<'a> {
    /// Wraps raw (handle, count) entries, 4 bytes each.
    pub fn from_raw(entries: &'a [u8]) -> Self {
        CompletedPackets(entries)
    }

    /// The (connection handle, number of completed packets) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (u16, u16)> + 'a {
        self.0.chunks_exact(4).map(|c| {
            let w = |i: usize| c.get(i).copied().unwrap_or(0) as u16;
            (w(0) | w(1) << 8, w(2) | w(3) << 8)
        })
    }
}

/// LE Meta subevents (Core Vol 4 Part E §7.7.65).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LeEvent<'a> {
    /// LE Connection Complete or LE Enhanced Connection Complete (v1/v2).
    ConnectionComplete(ConnectionComplete),
    /// LE Advertising Report.
    AdvertisingReport(AdvertisingReports<'a>),
    /// LE Connection Update Complete (§7.7.65.3).
    ConnectionUpdateComplete {
        /// Status.
        status: u8,
        /// Connection handle.
        handle: u16,
        /// New interval (1.25 ms units).
        interval: u16,
        /// New latency.
        latency: u16,
        /// New supervision timeout (10 ms units).
        supervision_timeout: u16,
    },
    /// LE Long Term Key Request (§7.7.65.5).
    LongTermKeyRequest {
        /// Connection handle.
        handle: u16,
        /// Random number.
        rand: u64,
        /// Encrypted diversifier.
        ediv: u16,
    },
    /// LE Remote Connection Parameter Request (§7.7.65.6).
    RemoteConnectionParameterRequest {
        /// Connection handle.
        handle: u16,
        /// Minimum interval.
        interval_min: u16,
        /// Maximum interval.
        interval_max: u16,
        /// Latency.
        latency: u16,
        /// Supervision timeout.
        timeout: u16,
    },
    /// LE Data Length Change (§7.7.65.7).
    DataLengthChange {
        /// Connection handle.
        handle: u16,
        /// Max TX octets.
        max_tx_octets: u16,
        /// Max TX time.
        max_tx_time: u16,
        /// Max RX octets.
        max_rx_octets: u16,
        /// Max RX time.
        max_rx_time: u16,
    },
    /// LE PHY Update Complete (§7.7.65.12).
    PhyUpdateComplete {
        /// Status.
        status: u8,
        /// Connection handle.
        handle: u16,
        /// TX PHY (1 = 1M, 2 = 2M, 3 = Coded).
        tx_phy: u8,
        /// RX PHY.
        rx_phy: u8,
    },
    /// A subevent this host does not handle.
    Unknown {
        /// Subevent code.
        subevent: u8,
        /// Parameters after the subevent code.
        params: &'a [u8],
    },
}

/// An HCI event, borrowing its variable-length parts from the input (Core Vol 4 Part E §7.7).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Event<'a> {
    /// Disconnection Complete (§7.7.5).
    DisconnectionComplete {
        /// Status.
        status: u8,
        /// Connection handle.
        handle: u16,
        /// Reason.
        reason: u8,
    },
    /// Encryption Change (v1) (§7.7.8).
    EncryptionChange {
        /// Status.
        status: u8,
        /// Connection handle.
        handle: u16,
        /// Encryption enabled (0 off, 1 on: AES-CCM on an LE link).
        enabled: u8,
    },
    /// Encryption Change (v2) (§7.7.8): as v1, with the negotiated key size.
    EncryptionChangeV2 {
        /// Status.
        status: u8,
        /// Connection handle.
        handle: u16,
        /// Encryption enabled (0 off, 1 on: AES-CCM on an LE link).
        enabled: u8,
        /// Encryption_Key_Size in octets (7..=16).
        key_size: u8,
    },
    /// Encryption Key Refresh Complete (§7.7.39): an encrypted link now uses a new key.
    EncryptionKeyRefreshComplete {
        /// Status.
        status: u8,
        /// Connection handle.
        handle: u16,
    },
    /// Command Complete (§7.7.14).
    CommandComplete {
        /// Command credits granted.
        num_packets: u8,
        /// Opcode of the command that completed.
        opcode: Opcode,
        /// Return parameters (usually starting with a status byte).
        return_params: &'a [u8],
    },
    /// Command Status (§7.7.15).
    CommandStatus {
        /// Status.
        status: u8,
        /// Command credits granted.
        num_packets: u8,
        /// Opcode of the command.
        opcode: Opcode,
    },
    /// Hardware Error (§7.7.16).
    HardwareError {
        /// Vendor-specific code.
        code: u8,
    },
    /// Number Of Completed Packets (§7.7.19).
    NumberOfCompletedPackets(CompletedPackets<'a>),
    /// LE Meta (§7.7.65).
    Le(LeEvent<'a>),
    /// Any event this host does not handle; logged and ignored.
    Unknown {
        /// Event code.
        code: u8,
        /// Parameters.
        params: &'a [u8],
    },
}

fn read_conn_complete(p: &mut Reader<'_>, subevent: u8) -> Result<ConnectionComplete, DecodeError> {
    let status = p.u8()?;
    let handle = p.u16()? & 0x0FFF;
    let role = p.u8()?;
    let peer_address_type = p.u8()?;
    let peer_address = BdAddr(p.array()?);
    let (local_rpa, peer_rpa) = if subevent == subevent::CONNECTION_COMPLETE {
        (BdAddr::default(), BdAddr::default())
    } else {
        (BdAddr(p.array()?), BdAddr(p.array()?))
    };
    let interval = p.u16()?;
    let latency = p.u16()?;
    let supervision_timeout = p.u16()?;
    let clock_accuracy = p.u8()?;
    if subevent == subevent::ENHANCED_CONNECTION_COMPLETE_V2 {
        // Advertising_Handle and Sync_Handle: not used by a legacy-advertising host.
        p.take(3)?;
    }
    Ok(ConnectionComplete {
        status,
        handle,
        role,
        peer_address_type,
        peer_address,
        local_rpa,
        peer_rpa,
        interval,
        latency,
        supervision_timeout,
        clock_accuracy,
        subevent,
    })
}

impl<'a> Event<'a> {
    /// Decodes an event packet body (after the H4 indicator). Unknown event and subevent codes
    /// decode to `Unknown`; known ones with bad lengths are errors.
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body, "HCI event");
        let code = r.u8()?;
        let len = r.u8()? as usize;
        let params = r.take(len)?;
        r.finish()?;
        let mut p = Reader::new(params, "HCI event parameters");
        let ev = match code {
            code::DISCONNECTION_COMPLETE => {
                Event::DisconnectionComplete { status: p.u8()?, handle: p.u16()? & 0x0FFF, reason: p.u8()? }
            }
            code::ENCRYPTION_CHANGE => {
                Event::EncryptionChange { status: p.u8()?, handle: p.u16()? & 0x0FFF, enabled: p.u8()? }
            }
            code::ENCRYPTION_CHANGE_V2 => Event::EncryptionChangeV2 {
                status: p.u8()?,
                handle: p.u16()? & 0x0FFF,
                enabled: p.u8()?,
                key_size: p.u8()?,
            },
            code::ENCRYPTION_KEY_REFRESH_COMPLETE => {
                Event::EncryptionKeyRefreshComplete { status: p.u8()?, handle: p.u16()? & 0x0FFF }
            }
            code::COMMAND_COMPLETE => {
                Event::CommandComplete { num_packets: p.u8()?, opcode: Opcode(p.u16()?), return_params: p.rest() }
            }
            code::COMMAND_STATUS => {
                Event::CommandStatus { status: p.u8()?, num_packets: p.u8()?, opcode: Opcode(p.u16()?) }
            }
            code::HARDWARE_ERROR => Event::HardwareError { code: p.u8()? },
            code::NUMBER_OF_COMPLETED_PACKETS => {
                let n = p.u8()? as usize;
                Event::NumberOfCompletedPackets(CompletedPackets(p.take(4 * n)?))
            }
            code::LE_META => Event::Le(Self::decode_le(&mut p)?),
            _ => return Ok(Event::Unknown { code, params }),
        };
        p.finish()?;
        Ok(ev)
    }

    fn decode_le(p: &mut Reader<'a>) -> Result<LeEvent<'a>, DecodeError> {
        let sub = p.u8()?;
        Ok(match sub {
            subevent::CONNECTION_COMPLETE
            | subevent::ENHANCED_CONNECTION_COMPLETE
            | subevent::ENHANCED_CONNECTION_COMPLETE_V2 => LeEvent::ConnectionComplete(read_conn_complete(p, sub)?),
            subevent::ADVERTISING_REPORT => LeEvent::AdvertisingReport(AdvertisingReports::parse(p.rest())?),
            subevent::CONNECTION_UPDATE_COMPLETE => LeEvent::ConnectionUpdateComplete {
                status: p.u8()?,
                handle: p.u16()? & 0x0FFF,
                interval: p.u16()?,
                latency: p.u16()?,
                supervision_timeout: p.u16()?,
            },
            subevent::LONG_TERM_KEY_REQUEST => {
                LeEvent::LongTermKeyRequest { handle: p.u16()? & 0x0FFF, rand: p.u64()?, ediv: p.u16()? }
            }
            subevent::REMOTE_CONNECTION_PARAMETER_REQUEST => LeEvent::RemoteConnectionParameterRequest {
                handle: p.u16()? & 0x0FFF,
                interval_min: p.u16()?,
                interval_max: p.u16()?,
                latency: p.u16()?,
                timeout: p.u16()?,
            },
            subevent::DATA_LENGTH_CHANGE => LeEvent::DataLengthChange {
                handle: p.u16()? & 0x0FFF,
                max_tx_octets: p.u16()?,
                max_tx_time: p.u16()?,
                max_rx_octets: p.u16()?,
                max_rx_time: p.u16()?,
            },
            subevent::PHY_UPDATE_COMPLETE => LeEvent::PhyUpdateComplete {
                status: p.u8()?,
                handle: p.u16()? & 0x0FFF,
                tx_phy: p.u8()?,
                rx_phy: p.u8()?,
            },
            _ => LeEvent::Unknown { subevent: sub, params: p.rest() },
        })
    }

    /// Appends the whole H4 event packet (indicator, code, length, parameters) to `out`.
    pub fn encode_h4(&self, out: &mut Vec<u8>) {
        out.put_u8(super::PacketType::Event as u8);
        let code_at = out.len();
        out.put_u8(0);
        out.put_u8(0);
        let code = self.write_params(out);
        let n = out.len() - code_at - 2;
        if let Some(b) = out.get_mut(code_at) {
            *b = code;
        }
        if let Some(b) = out.get_mut(code_at + 1) {
            *b = n.min(255) as u8;
        }
    }

    /// Appends the parameters and returns the event code.
    fn write_params(&self, out: &mut Vec<u8>) -> u8 {
        match self {
            Event::DisconnectionComplete { status, handle, reason } => {
                out.put_u8(*status);
                out.put_u16(*handle);
                out.put_u8(*reason);
                code::DISCONNECTION_COMPLETE
            }
            Event::EncryptionChange { status, handle, enabled } => {
                out.put_u8(*status);
                out.put_u16(*handle);
                out.put_u8(*enabled);
                code::ENCRYPTION_CHANGE
            }
            Event::EncryptionChangeV2 { status, handle, enabled, key_size } => {
                out.put_u8(*status);
                out.put_u16(*handle);
                out.put_u8(*enabled);
                out.put_u8(*key_size);
                code::ENCRYPTION_CHANGE_V2
            }
            Event::EncryptionKeyRefreshComplete { status, handle } => {
                out.put_u8(*status);
                out.put_u16(*handle);
                code::ENCRYPTION_KEY_REFRESH_COMPLETE
            }
            Event::CommandComplete { num_packets, opcode, return_params } => {
                out.put_u8(*num_packets);
                out.put_u16(opcode.0);
                out.put(return_params);
                code::COMMAND_COMPLETE
            }
            Event::CommandStatus { status, num_packets, opcode } => {
                out.put_u8(*status);
                out.put_u8(*num_packets);
                out.put_u16(opcode.0);
                code::COMMAND_STATUS
            }
            Event::HardwareError { code } => {
                out.put_u8(*code);
                code::HARDWARE_ERROR
            }
            Event::NumberOfCompletedPackets(c) => {
                out.put_u8((c.0.len() / 4) as u8);
                out.put(c.0);
                code::NUMBER_OF_COMPLETED_PACKETS
            }
            Event::Le(le) => {
                write_le(le, out);
                code::LE_META
            }
            Event::Unknown { code, params } => {
                out.put(params);
                *code
            }
        }
    }
}

fn write_le(le: &LeEvent<'_>, out: &mut Vec<u8>) {
    match le {
        LeEvent::ConnectionComplete(c) => {
            out.put_u8(c.subevent);
            out.put_u8(c.status);
            out.put_u16(c.handle);
            out.put_u8(c.role);
            out.put_u8(c.peer_address_type);
            out.put(&c.peer_address.0);
            if c.subevent != subevent::CONNECTION_COMPLETE {
                out.put(&c.local_rpa.0);
                out.put(&c.peer_rpa.0);
            }
            out.put_u16(c.interval);
            out.put_u16(c.latency);
            out.put_u16(c.supervision_timeout);
            out.put_u8(c.clock_accuracy);
            if c.subevent == subevent::ENHANCED_CONNECTION_COMPLETE_V2 {
                out.put(&[0xFF, 0xFF, 0xFF]);
            }
        }
        LeEvent::AdvertisingReport(r) => {
            out.put_u8(subevent::ADVERTISING_REPORT);
            out.put_u8(r.count);
            out.put(r.body);
        }
        LeEvent::ConnectionUpdateComplete { status, handle, interval, latency, supervision_timeout } => {
            out.put_u8(subevent::CONNECTION_UPDATE_COMPLETE);
            out.put_u8(*status);
            for v in [*handle, *interval, *latency, *supervision_timeout] {
                out.put_u16(v);
            }
        }
        LeEvent::LongTermKeyRequest { handle, rand, ediv } => {
            out.put_u8(subevent::LONG_TERM_KEY_REQUEST);
            out.put_u16(*handle);
            out.put(&rand.to_le_bytes());
            out.put_u16(*ediv);
        }
        LeEvent::RemoteConnectionParameterRequest { handle, interval_min, interval_max, latency, timeout } => {
            out.put_u8(subevent::REMOTE_CONNECTION_PARAMETER_REQUEST);
            for v in [*handle, *interval_min, *interval_max, *latency, *timeout] {
                out.put_u16(v);
            }
        }
        LeEvent::DataLengthChange { handle, max_tx_octets, max_tx_time, max_rx_octets, max_rx_time } => {
            out.put_u8(subevent::DATA_LENGTH_CHANGE);
            for v in [*handle, *max_tx_octets, *max_tx_time, *max_rx_octets, *max_rx_time] {
                out.put_u16(v);
            }
        }
        LeEvent::PhyUpdateComplete { status, handle, tx_phy, rx_phy } => {
            out.put_u8(subevent::PHY_UPDATE_COMPLETE);
            out.put_u8(*status);
            out.put_u16(*handle);
            out.put_u8(*tx_phy);
            out.put_u8(*rx_phy);
        }
        LeEvent::Unknown { subevent, params } => {
            out.put_u8(*subevent);
            out.put(params);
        }
    }
}

/// Typed return parameters of the Command Complete events the host reads (Core Vol 4 Part E §7.4, §7.8).
pub mod ret {
    use crate::codec::{DecodeError, Reader};
    use crate::gap::BdAddr;

    /// Read Local Version Information return parameters (§7.4.1).
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub struct LocalVersion {
        /// HCI version (e.g. 0x0C = 5.3).
        pub hci_version: u8,
        /// HCI subversion.
        pub hci_subversion: u16,
        /// LMP/LL version.
        pub lmp_version: u8,
        /// Company identifier.
        pub company: u16,
        /// LMP/LL subversion.
        pub lmp_subversion: u16,
    }

    /// Parses Read Local Version return parameters after the status byte.
    pub fn local_version(p: &[u8]) -> Result<LocalVersion, DecodeError> {
        let mut r = Reader::new(p, "Read Local Version");
        Ok(LocalVersion {
            hci_version: r.u8()?,
            hci_subversion: r.u16()?,
            lmp_version: r.u8()?,
            company: r.u16()?,
            lmp_subversion: r.u16()?,
        })
    }

    /// Parses Read BD_ADDR return parameters after the status byte (§7.4.6).
    pub fn bd_addr(p: &[u8]) -> Result<BdAddr, DecodeError> {
        Ok(BdAddr(Reader::new(p, "Read BD_ADDR").array()?))
    }

    /// ACL buffer size and count, as read from LE Read Buffer Size v1/v2 or Read Buffer Size.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub struct BufferSize {
        /// Maximum ACL payload per packet.
        pub acl_len: u16,
        /// Number of ACL packets the controller can hold.
        pub acl_num: u16,
    }

    /// LE Read Buffer Size (v1) or (v2) (the ISO fields of v2 are ignored) (§7.8.2).
    pub fn le_buffer_size(p: &[u8]) -> Result<BufferSize, DecodeError> {
        let mut r = Reader::new(p, "LE Read Buffer Size");
        Ok(BufferSize { acl_len: r.u16()?, acl_num: r.u8()? as u16 })
    }

    /// Read Buffer Size (BR/EDR; used when the LE buffers are shared) (§7.4.5).
    pub fn buffer_size(p: &[u8]) -> Result<BufferSize, DecodeError> {
        let mut r = Reader::new(p, "Read Buffer Size");
        let acl_len = r.u16()?;
        let _sco_len = r.u8()?;
        let acl_num = r.u16()?;
        Ok(BufferSize { acl_len, acl_num })
    }

    /// Read Local Supported Commands (§7.4.2): the 64-octet bit mask.
    pub fn supported_commands(p: &[u8]) -> Result<[u8; 64], DecodeError> {
        Reader::new(p, "Read Local Supported Commands").array()
    }

    /// An 8-octet feature mask (Read Local Supported Features, LE Read Local Supported Features).
    pub fn features(p: &[u8]) -> Result<u64, DecodeError> {
        Reader::new(p, "supported features").u64()
    }

    /// LE Rand (§7.8.23): 8 random octets.
    pub fn le_rand(p: &[u8]) -> Result<u64, DecodeError> {
        Reader::new(p, "LE Rand").u64()
    }

    /// Read RSSI (§7.5.4): the connection handle and the RSSI in dBm.
    pub fn read_rssi(p: &[u8]) -> Result<(u16, i8), DecodeError> {
        let mut r = Reader::new(p, "Read RSSI");
        Ok((r.u16()?, r.u8()? as i8))
    }

    /// The Connection_Handle that LE Long Term Key Request Reply / Negative Reply (and other
    /// per-connection commands) return after the status (§7.8.25, §7.8.26).
    pub fn connection_handle(p: &[u8]) -> Result<u16, DecodeError> {
        let mut r = Reader::new(p, "connection handle return");
        let handle = r.u16()? & 0x0FFF;
        r.finish()?;
        Ok(handle)
    }

    /// Read Encryption Key Size (§7.5.7): the connection handle and the key size in octets.
    pub fn encryption_key_size(p: &[u8]) -> Result<(u16, u8), DecodeError> {
        let mut r = Reader::new(p, "Read Encryption Key Size");
        let out = (r.u16()? & 0x0FFF, r.u8()?);
        r.finish()?;
        Ok(out)
    }

    /// LE Encrypt (§7.8.22): the 16-octet ciphertext.
    pub fn le_encrypt(p: &[u8]) -> Result<[u8; 16], DecodeError> {
        Reader::new(p, "LE Encrypt").array()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn command_complete_for_reset() {
        let ev = Event::decode(&[0x0e, 0x04, 0x01, 0x03, 0x0c, 0x00]).unwrap();
        assert_eq!(ev, Event::CommandComplete { num_packets: 1, opcode: Opcode::RESET, return_params: &[0] });
    }

    #[test]
    fn advertising_report_two_entries() {
        let reports = [
            AdvertisingReport { event_type: 0, address_type: 1, address: BdAddr([1; 6]), data: &[2, 1, 6], rssi: -40 },
            AdvertisingReport { event_type: 4, address_type: 0, address: BdAddr([2; 6]), data: &[], rssi: -90 },
        ];
        let mut params = Vec::new();
        AdvertisingReports::encode(&reports, &mut params);
        let mut pkt = alloc::vec![code::LE_META, params.len() as u8];
        pkt.extend_from_slice(&params);
        match Event::decode(&pkt).unwrap() {
            Event::Le(LeEvent::AdvertisingReport(r)) => {
                assert_eq!(r.iter().collect::<Vec<_>>(), reports);
            }
            other => panic!("{other:?}"),
        }
        // A report whose data length runs past the end is rejected.
        pkt[2 + 1 + 1 + 2 + 2 + 12] = 30;
        assert!(Event::decode(&pkt).is_err());
    }

    #[test]
    fn unknown_events_are_not_errors() {
        assert_eq!(Event::decode(&[0xFF, 0x01, 0x42]), Ok(Event::Unknown { code: 0xFF, params: &[0x42] }));
        assert!(matches!(Event::decode(&[0x3E, 0x02, 0x99, 0x01]), Ok(Event::Le(LeEvent::Unknown { .. }))));
    }

    #[test]
    fn bad_lengths_are_errors() {
        assert!(Event::decode(&[0x05, 0x03, 0x00, 0x01, 0x00]).is_err());
        assert!(Event::decode(&[0x05, 0x05, 0x00, 0x01, 0x00, 0x13, 0x00]).is_err());
        assert!(Event::decode(&[0x13, 0x05, 0x02, 0x01, 0x00, 0x01, 0x00]).is_err());
        assert!(Event::decode(&[0x0e]).is_err());
    }

    #[test]
    fn encryption_events_match_the_wire_and_reject_bad_lengths() {
        assert_eq!(
            Event::decode(&[0x59, 0x05, 0x00, 0x40, 0x00, 0x01, 0x10]),
            Ok(Event::EncryptionChangeV2 { status: 0, handle: 0x40, enabled: 1, key_size: 16 })
        );
        assert_eq!(
            Event::decode(&[0x30, 0x03, 0x00, 0x40, 0x00]),
            Ok(Event::EncryptionKeyRefreshComplete { status: 0, handle: 0x40 })
        );
        assert_eq!(
            Event::decode(&[0x3E, 0x0D, 0x05, 0x40, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 0xEF, 0xBE]),
            Ok(Event::Le(LeEvent::LongTermKeyRequest { handle: 0x40, rand: 0x0807_0605_0403_0201, ediv: 0xBEEF }))
        );
        // Each one octet short and one octet long.
        assert!(Event::decode(&[0x08, 0x03, 0x00, 0x40, 0x00]).is_err());
        assert!(Event::decode(&[0x08, 0x05, 0x00, 0x40, 0x00, 0x01, 0x00]).is_err());
        assert!(Event::decode(&[0x59, 0x04, 0x00, 0x40, 0x00, 0x01]).is_err());
        assert!(Event::decode(&[0x59, 0x06, 0x00, 0x40, 0x00, 0x01, 0x10, 0x00]).is_err());
        assert!(Event::decode(&[0x30, 0x02, 0x00, 0x40]).is_err());
        assert!(Event::decode(&[0x30, 0x04, 0x00, 0x40, 0x00, 0x00]).is_err());
        assert!(Event::decode(&[0x3E, 0x0C, 0x05, 0x40, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 0xEF]).is_err());
        assert!(Event::decode(&[0x3E, 0x0E, 0x05, 0x40, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 0xEF, 0xBE, 0]).is_err());
    }

    #[test]
    fn encryption_return_parameters() {
        assert_eq!(ret::connection_handle(&[0x40, 0x00]), Ok(0x40));
        assert!(ret::connection_handle(&[0x40]).is_err());
        assert_eq!(ret::encryption_key_size(&[0x40, 0x00, 16]), Ok((0x40, 16)));
        assert!(ret::encryption_key_size(&[0x40, 0x00]).is_err());
    }

    fn arb_conn_complete() -> impl Strategy<Value = ConnectionComplete> {
        (
            any::<u8>(),
            0u16..0x0F00,
            0u8..2,
            any::<[u8; 6]>(),
            any::<[u8; 6]>(),
            any::<(u16, u16, u16)>(),
            prop_oneof![Just(0x01u8), Just(0x0A), Just(0x29)],
        )
            .prop_map(|(status, handle, role, peer, rpa, (interval, latency, to), sub)| ConnectionComplete {
                status,
                handle,
                role,
                peer_address_type: 1,
                peer_address: BdAddr(peer),
                local_rpa: if sub == 1 { BdAddr::default() } else { BdAddr(rpa) },
                peer_rpa: BdAddr::default(),
                interval,
                latency,
                supervision_timeout: to,
                clock_accuracy: 0,
                subevent: sub,
            })
    }

    proptest! {
        #[test]
        fn round_trip_fixed_events(
            cc in arb_conn_complete(),
            status in any::<u8>(),
            handle in 0u16..0x0F00,
            a in any::<u16>(),
            b in any::<u16>(),
            params in proptest::collection::vec(any::<u8>(), 0..20),
            nocp in proptest::collection::vec(any::<u8>(), 0..5).prop_map(|v| v.into_iter().flat_map(|x| [x, 0, 1, 0]).collect::<Vec<u8>>()),
        ) {
            let events = [
                Event::DisconnectionComplete { status, handle, reason: 0x13 },
                Event::EncryptionChange { status, handle, enabled: 1 },
                Event::EncryptionChangeV2 { status, handle, enabled: (a & 1) as u8, key_size: (b % 10 + 7) as u8 },
                Event::EncryptionKeyRefreshComplete { status, handle },
                Event::CommandComplete { num_packets: 1, opcode: Opcode(a), return_params: &params },
                Event::CommandStatus { status, num_packets: 2, opcode: Opcode(b) },
                Event::HardwareError { code: status },
                Event::NumberOfCompletedPackets(CompletedPackets(&nocp)),
                Event::Le(LeEvent::ConnectionComplete(cc)),
                Event::Le(LeEvent::ConnectionUpdateComplete { status, handle, interval: a, latency: b, supervision_timeout: 9 }),
                Event::Le(LeEvent::LongTermKeyRequest { handle, rand: 7, ediv: a }),
                Event::Le(LeEvent::RemoteConnectionParameterRequest { handle, interval_min: a, interval_max: b, latency: 0, timeout: 100 }),
                Event::Le(LeEvent::DataLengthChange { handle, max_tx_octets: a, max_tx_time: b, max_rx_octets: 27, max_rx_time: 328 }),
                Event::Le(LeEvent::PhyUpdateComplete { status, handle, tx_phy: 2, rx_phy: 2 }),
            ];
            for ev in events {
                let mut out = Vec::new();
                ev.encode_h4(&mut out);
                prop_assert_eq!(Event::decode(&out[1..]), Ok(ev));
            }
        }

        #[test]
        fn reports_round_trip(entries in proptest::collection::vec((0u8..5, 0u8..2, any::<[u8; 6]>(), proptest::collection::vec(any::<u8>(), 0..=31), any::<i8>()), 1..4)) {
            let reports: Vec<_> = entries.iter().map(|(t, at, a, d, r)| AdvertisingReport { event_type: *t, address_type: *at, address: BdAddr(*a), data: d, rssi: *r }).collect();
            let mut params = Vec::new();
            AdvertisingReports::encode(&reports, &mut params);
            let mut pkt = alloc::vec![code::LE_META, params.len() as u8];
            pkt.extend_from_slice(&params);
            match Event::decode(&pkt) {
                Ok(Event::Le(LeEvent::AdvertisingReport(r))) => prop_assert_eq!(r.iter().collect::<Vec<_>>(), reports),
                other => prop_assert!(false, "{:?}", other),
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(Event::Le(LeEvent::AdvertisingReport(r))) = Event::decode(&bytes) {
                for rep in r.iter() { let _ = rep; }
            }
            if let Ok(Event::NumberOfCompletedPackets(c)) = Event::decode(&bytes) {
                for e in c.iter() { let _ = e; }
            }
        }
    }
}
