//! Advertising and scan-response data (Core Vol 3 Part C §11, Core Supplement Part A).
//!
//! Advertising data is a sequence of AD structures, each `length (1) | AD type (1) | data`, where
//! `length` counts the type byte and the data. A length byte of zero ends the significant part; the
//! rest of the buffer is padding (Core Vol 3 Part C §11).
//!
//! - [`AdvData`] validates a received buffer once and then reads it without copying: [`AdvData::iter`]
//!   walks the [`AdStructure`]s and typed accessors pick out flags, names, UUIDs and so on.
//! - [`AdvData::resolve`] mirrors Pycom's `Bluetooth.resolve_adv_data(data, type)`.
//! - [`AdvDataBuilder`] assembles a payload and checks it against the 31-byte legacy limit (or a
//!   larger extended-advertising limit).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::iter::FusedIterator;

use crate::codec::{DecodeError, Writer};
use crate::uuid::Uuid;

/// Maximum legacy advertising or scan-response payload, in bytes (Core Vol 6 Part B §2.3.1).
pub const LEGACY_MAX_LEN: usize = 31;

/// Maximum extended advertising payload a controller may accept, in bytes (Core Vol 4 Part E §7.8.57).
pub const EXTENDED_MAX_LEN: usize = 1650;

/// Maximum data bytes in one AD structure: the one-byte length also counts the type (Core Vol 3 Part C §11).
pub const MAX_AD_DATA_LEN: usize = 254;

/// AD type codes (Core Supplement Part A §1; Assigned Numbers §2.3).
pub mod ad_type {
    /// Flags (Core Supplement Part A §1.3).
    pub const FLAGS: u8 = 0x01;
    /// Incomplete list of 16-bit service UUIDs (Core Supplement Part A §1.1).
    pub const INCOMPLETE_16: u8 = 0x02;
    /// Complete list of 16-bit service UUIDs (Core Supplement Part A §1.1).
    pub const COMPLETE_16: u8 = 0x03;
    /// Incomplete list of 32-bit service UUIDs (Core Supplement Part A §1.1).
    pub const INCOMPLETE_32: u8 = 0x04;
    /// Complete list of 32-bit service UUIDs (Core Supplement Part A §1.1).
    pub const COMPLETE_32: u8 = 0x05;
    /// Incomplete list of 128-bit service UUIDs (Core Supplement Part A §1.1).
    pub const INCOMPLETE_128: u8 = 0x06;
    /// Complete list of 128-bit service UUIDs (Core Supplement Part A §1.1).
    pub const COMPLETE_128: u8 = 0x07;
    /// Shortened local name (Core Supplement Part A §1.2).
    pub const SHORTENED_LOCAL_NAME: u8 = 0x08;
    /// Complete local name (Core Supplement Part A §1.2).
    pub const COMPLETE_LOCAL_NAME: u8 = 0x09;
    /// TX power level, signed dBm (Core Supplement Part A §1.5).
    pub const TX_POWER_LEVEL: u8 = 0x0A;
    /// Class of Device (Core Supplement Part A §1.6).
    pub const CLASS_OF_DEVICE: u8 = 0x0D;
    /// Peripheral connection interval range (Core Supplement Part A §1.9).
    pub const PERIPHERAL_CONNECTION_INTERVAL_RANGE: u8 = 0x12;
    /// List of 16-bit service solicitation UUIDs (Core Supplement Part A §1.10).
    pub const SOLICITATION_16: u8 = 0x14;
    /// List of 128-bit service solicitation UUIDs (Core Supplement Part A §1.10).
    pub const SOLICITATION_128: u8 = 0x15;
    /// Service data with a 16-bit UUID (Core Supplement Part A §1.11).
    pub const SERVICE_DATA_16: u8 = 0x16;
    /// Public target address (Core Supplement Part A §1.13).
    pub const PUBLIC_TARGET_ADDRESS: u8 = 0x17;
    /// Random target address (Core Supplement Part A §1.14).
    pub const RANDOM_TARGET_ADDRESS: u8 = 0x18;
    /// Appearance (Core Supplement Part A §1.12).
    pub const APPEARANCE: u8 = 0x19;
    /// Advertising interval (Core Supplement Part A §1.15).
    pub const ADVERTISING_INTERVAL: u8 = 0x1A;
    /// LE Bluetooth device address (Core Supplement Part A §1.16).
    pub const LE_DEVICE_ADDRESS: u8 = 0x1B;
    /// LE role (Core Supplement Part A §1.17).
    pub const LE_ROLE: u8 = 0x1C;
    /// List of 32-bit service solicitation UUIDs (Core Supplement Part A §1.10).
    pub const SOLICITATION_32: u8 = 0x1F;
    /// Service data with a 32-bit UUID (Core Supplement Part A §1.11).
    pub const SERVICE_DATA_32: u8 = 0x20;
    /// Service data with a 128-bit UUID (Core Supplement Part A §1.11).
    pub const SERVICE_DATA_128: u8 = 0x21;
    /// URI (Core Supplement Part A §1.18).
    pub const URI: u8 = 0x24;
    /// Manufacturer specific data, company identifier first (Core Supplement Part A §1.4).
    pub const MANUFACTURER_SPECIFIC_DATA: u8 = 0xFF;
}

/// Bits of the Flags AD type (Core Supplement Part A §1.3).
pub mod flags {
    /// LE Limited Discoverable Mode (Core Supplement Part A §1.3, bit 0).
    pub const LE_LIMITED_DISCOVERABLE: u8 = 0x01;
    /// LE General Discoverable Mode (Core Supplement Part A §1.3, bit 1).
    pub const LE_GENERAL_DISCOVERABLE: u8 = 0x02;
    /// BR/EDR Not Supported (Core Supplement Part A §1.3, bit 2).
    pub const BR_EDR_NOT_SUPPORTED: u8 = 0x04;
    /// Simultaneous LE and BR/EDR, controller (Core Supplement Part A §1.3, bit 3).
    pub const LE_BR_EDR_CONTROLLER: u8 = 0x08;
    /// Simultaneous LE and BR/EDR, host (Core Supplement Part A §1.3, bit 4).
    pub const LE_BR_EDR_HOST: u8 = 0x10;
    /// The usual LE-only peripheral value 0x06: general discoverable, BR/EDR not supported (Core Supplement Part A §1.3).
    pub const LE_GENERAL_ONLY: u8 = LE_GENERAL_DISCOVERABLE | BR_EDR_NOT_SUPPORTED;
}

const WHAT: &str = "AD structure";

/// Width of one UUID in a service UUID list of this AD type (Core Supplement Part A §1.1).
fn uuid_list_width(t: u8) -> Option<usize> {
    match t {
        ad_type::INCOMPLETE_16 | ad_type::COMPLETE_16 => Some(2),
        ad_type::INCOMPLETE_32 | ad_type::COMPLETE_32 => Some(4),
        ad_type::INCOMPLETE_128 | ad_type::COMPLETE_128 => Some(16),
        _ => None,
    }
}

/// Width of one UUID in a solicitation list of this AD type (Core Supplement Part A §1.10).
fn solicitation_width(t: u8) -> Option<usize> {
    match t {
        ad_type::SOLICITATION_16 => Some(2),
        ad_type::SOLICITATION_32 => Some(4),
        ad_type::SOLICITATION_128 => Some(16),
        _ => None,
    }
}

/// Width of the UUID that starts a service data structure of this AD type (Core Supplement Part A §1.11).
fn service_data_width(t: u8) -> Option<usize> {
    match t {
        ad_type::SERVICE_DATA_16 => Some(2),
        ad_type::SERVICE_DATA_32 => Some(4),
        ad_type::SERVICE_DATA_128 => Some(16),
        _ => None,
    }
}

/// Splits `data` into UUIDs of `width` bytes; an incomplete tail is ignored.
fn uuids_in(data: &[u8], width: usize) -> impl Iterator<Item = Uuid> + '_ {
    data.chunks_exact(width).filter_map(|c| Uuid::from_le_bytes(c).ok())
}

/// Walks `bytes` and returns the length of the well-formed significant prefix (up to, not
/// including, a zero length byte or the end) and the first error found, if any.
fn scan(bytes: &[u8]) -> (usize, Option<DecodeError>) {
    let mut pos = 0usize;
    while let Some(&len) = bytes.get(pos) {
        if len == 0 {
            break;
        }
        let have = bytes.len().saturating_sub(pos + 1);
        let need = usize::from(len);
        if need > have {
            return (pos, Some(DecodeError::Truncated { what: WHAT, need, have }));
        }
        pos += 1 + need;
    }
    (pos, None)
}

/// One AD structure: its type and the data after the type byte (Core Vol 3 Part C §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AdStructure<'a> {
    /// The AD type code, see [`ad_type`] (Core Supplement Part A §1).
    pub ad_type: u8,
    /// The AD data, without the length and type bytes (Core Vol 3 Part C §11).
    pub data: &'a [u8],
}

/// A validated advertising or scan-response payload, read in place (Core Vol 3 Part C §11).
///
/// Only the significant part is kept: anything from the first zero length byte on is padding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AdvData<'a> {
    bytes: &'a [u8],
}

impl<'a> AdvData<'a> {
    /// Validates every AD structure of `bytes` (Core Vol 3 Part C §11).
    ///
    /// A zero length byte ends the significant part and everything after it is ignored as
    /// padding. A structure whose length runs past the end is [`DecodeError::Truncated`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        match scan(bytes) {
            (_, Some(e)) => Err(e),
            (n, None) => Ok(Self { bytes: bytes.get(..n).unwrap_or(bytes) }),
        }
    }

    /// Keeps the well-formed AD structures before the first malformed one (Core Vol 3 Part C §11).
    ///
    /// Never fails: scanners can still show what they can of a malformed advertisement.
    pub fn parse_lenient(bytes: &'a [u8]) -> Self {
        let (n, _) = scan(bytes);
        Self { bytes: bytes.get(..n).unwrap_or(&[]) }
    }

    /// The significant bytes: every AD structure, without padding (Core Vol 3 Part C §11).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Length of the significant part in bytes (Core Vol 3 Part C §11).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True when there is no AD structure at all (Core Vol 3 Part C §11).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Iterates the AD structures in order (Core Vol 3 Part C §11).
    pub fn iter(&self) -> AdIter<'a> {
        AdIter { rest: self.bytes }
    }

    /// Data of the first structure of type `ad_type` (Core Vol 3 Part C §11).
    pub fn find(&self, ad_type: u8) -> Option<&'a [u8]> {
        self.iter().find(|s| s.ad_type == ad_type).map(|s| s.data)
    }

    /// Data of every structure of type `ad_type`, in order (Core Vol 3 Part C §11).
    pub fn find_all(&self, ad_type: u8) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter().filter(move |s| s.ad_type == ad_type).map(|s| s.data)
    }

    /// The first byte of the Flags structure; an empty Flags structure means all bits clear
    /// (Core Supplement Part A §1.3).
    pub fn flags(&self) -> Option<u8> {
        self.find(ad_type::FLAGS).map(|d| d.first().copied().unwrap_or(0))
    }

    /// The local name: the complete name if present and valid UTF-8, else the shortened one;
    /// `None` when neither is present as valid UTF-8 (Core Supplement Part A §1.2).
    pub fn local_name(&self) -> Option<&'a str> {
        let as_str = |d: &'a [u8]| core::str::from_utf8(d).ok();
        self.find(ad_type::COMPLETE_LOCAL_NAME)
            .and_then(as_str)
            .or_else(|| self.find(ad_type::SHORTENED_LOCAL_NAME).and_then(as_str))
    }

    /// The local name (complete preferred, else shortened), with invalid UTF-8 replaced by
    /// U+FFFD (Core Supplement Part A §1.2).
    pub fn name_lossy(&self) -> Option<String> {
        self.find(ad_type::COMPLETE_LOCAL_NAME)
            .or_else(|| self.find(ad_type::SHORTENED_LOCAL_NAME))
            .map(|d| String::from_utf8_lossy(d).into_owned())
    }

    /// True when the only name present is the shortened one (Core Supplement Part A §1.2).
    pub fn name_is_shortened(&self) -> bool {
        self.find(ad_type::COMPLETE_LOCAL_NAME).is_none() && self.find(ad_type::SHORTENED_LOCAL_NAME).is_some()
    }

    /// The advertised TX power level in dBm (Core Supplement Part A §1.5).
    pub fn tx_power(&self) -> Option<i8> {
        self.find(ad_type::TX_POWER_LEVEL).and_then(|d| d.first()).map(|&b| i8::from_le_bytes([b]))
    }

    /// The appearance value, little-endian (Core Supplement Part A §1.12).
    pub fn appearance(&self) -> Option<u16> {
        match *self.find(ad_type::APPEARANCE)? {
            [a, b, ..] => Some(u16::from_le_bytes([a, b])),
            _ => None,
        }
    }

    /// Every service UUID from the 16-, 32- and 128-bit lists, complete and incomplete, in the
    /// order they appear (Core Supplement Part A §1.1).
    pub fn service_uuids(&self) -> impl Iterator<Item = Uuid> + 'a {
        self.iter().filter_map(|s| uuid_list_width(s.ad_type).map(|w| (s.data, w))).flat_map(|(d, w)| uuids_in(d, w))
    }

    /// True when a service UUID list of that size is marked complete (Core Supplement Part A §1.1).
    pub fn has_complete_uuid_list(&self, width: usize) -> bool {
        let t = match width {
            2 => ad_type::COMPLETE_16,
            4 => ad_type::COMPLETE_32,
            16 => ad_type::COMPLETE_128,
            _ => return false,
        };
        self.find(t).is_some()
    }

    /// Every service solicitation UUID, 16-, 32- and 128-bit (Core Supplement Part A §1.10).
    pub fn solicited_uuids(&self) -> impl Iterator<Item = Uuid> + 'a {
        self.iter().filter_map(|s| solicitation_width(s.ad_type).map(|w| (s.data, w))).flat_map(|(d, w)| uuids_in(d, w))
    }

    /// Every service data structure (types 0x16, 0x20, 0x21) as `(uuid, data)`; structures too
    /// short for their UUID are skipped (Core Supplement Part A §1.11).
    pub fn service_data(&self) -> impl Iterator<Item = (Uuid, &'a [u8])> + 'a {
        self.iter().filter_map(|s| {
            let w = service_data_width(s.ad_type)?;
            let uuid = Uuid::from_le_bytes(s.data.get(..w)?).ok()?;
            Some((uuid, s.data.get(w..)?))
        })
    }

    /// The first manufacturer specific data as `(company identifier, data)` (Core Supplement Part A §1.4).
    pub fn manufacturer_data(&self) -> Option<(u16, &'a [u8])> {
        self.manufacturer_data_all().next()
    }

    /// Every manufacturer specific data structure as `(company identifier, data)`; structures
    /// shorter than the company identifier are skipped (Core Supplement Part A §1.4).
    pub fn manufacturer_data_all(&self) -> impl Iterator<Item = (u16, &'a [u8])> + 'a {
        self.find_all(ad_type::MANUFACTURER_SPECIFIC_DATA).filter_map(|d| match *d {
            [a, b, ref rest @ ..] => Some((u16::from_le_bytes([a, b]), rest)),
            _ => None,
        })
    }

    /// Pycom `Bluetooth.resolve_adv_data(data, type)`: the first structure of `ad_type`, typed the
    /// way the Pycom firmware types it (Core Supplement Part A §1; Pycom `modbt.c`).
    ///
    /// This mirrors Pycom's behaviour, not the spec's data formats:
    /// - FLAGS (0x01) and TX_POWER_LEVEL (0x0A): [`AdValue::Int`] of the first byte read as a
    ///   *signed* `int8` (so flags 0x80 gives -128).
    /// - The UUID lists 0x02..=0x07, SERVICE_DATA_16 (0x16) and MANUFACTURER_SPECIFIC_DATA (0xFF):
    ///   [`AdValue::Bytes`] of the raw data.
    /// - The names 0x08 and 0x09: [`AdValue::Str`].
    /// - Everything else, including CLASS_OF_DEVICE, APPEARANCE, ADVERTISING_INTERVAL,
    ///   SERVICE_DATA_32 and SERVICE_DATA_128, and any absent type: `None`.
    ///
    /// Deviations, where the firmware reads past the structure or builds an invalid `str`: an
    /// empty FLAGS/TX_POWER structure and a name that is not valid UTF-8 give `None`.
    pub fn resolve(&self, ad_type: u8) -> Option<AdValue<'a>> {
        let data = self.find(ad_type)?;
        match ad_type {
            ad_type::FLAGS | ad_type::TX_POWER_LEVEL => {
                data.first().map(|&b| AdValue::Int(i32::from(i8::from_le_bytes([b]))))
            }
            ad_type::INCOMPLETE_16..=ad_type::COMPLETE_128
            | ad_type::SERVICE_DATA_16
            | ad_type::MANUFACTURER_SPECIFIC_DATA => Some(AdValue::Bytes(data)),
            ad_type::SHORTENED_LOCAL_NAME | ad_type::COMPLETE_LOCAL_NAME => {
                core::str::from_utf8(data).ok().map(AdValue::Str)
            }
            _ => None,
        }
    }
}

impl<'a> TryFrom<&'a [u8]> for AdvData<'a> {
    type Error = DecodeError;

    /// Same as [`AdvData::parse`] (Core Vol 3 Part C §11).
    fn try_from(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        Self::parse(bytes)
    }
}

impl<'a> IntoIterator for AdvData<'a> {
    type Item = AdStructure<'a>;
    type IntoIter = AdIter<'a>;

    fn into_iter(self) -> AdIter<'a> {
        self.iter()
    }
}

impl<'a> IntoIterator for &AdvData<'a> {
    type Item = AdStructure<'a>;
    type IntoIter = AdIter<'a>;

    fn into_iter(self) -> AdIter<'a> {
        self.iter()
    }
}

impl fmt::Debug for AdvData<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Iterator over the AD structures of an [`AdvData`] (Core Vol 3 Part C §11).
#[derive(Debug, Clone)]
pub struct AdIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for AdIter<'a> {
    type Item = AdStructure<'a>;

    fn next(&mut self) -> Option<AdStructure<'a>> {
        let (&len, tail) = self.rest.split_first()?;
        let len = usize::from(len);
        // Input was validated by `scan`; stop quietly rather than panic if it somehow was not.
        let (Some(body), Some(after)) = (tail.get(..len), tail.get(len..)) else {
            self.rest = &[];
            return None;
        };
        let Some((&ad_type, data)) = body.split_first() else {
            self.rest = &[];
            return None;
        };
        self.rest = after;
        Some(AdStructure { ad_type, data })
    }
}

impl FusedIterator for AdIter<'_> {}

/// A value typed the way Pycom's `resolve_adv_data` returns it (Core Supplement Part A §1; Pycom `modbt.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdValue<'a> {
    /// A Python `int`: flags and TX power, first byte read as signed (Core Supplement Part A §1.3, §1.5).
    Int(i32),
    /// A Python `bytes`: UUID lists, 16-bit service data and manufacturer data (Core Supplement Part A §1.1, §1.4, §1.11).
    Bytes(&'a [u8]),
    /// A Python `str`: the shortened or complete local name (Core Supplement Part A §1.2).
    Str(&'a str),
}

/// Why [`AdvDataBuilder`] could not produce a payload (Core Vol 3 Part C §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdBuildError {
    /// The whole payload is longer than the advertising PDU allows (Core Vol 6 Part B §2.3.1).
    #[error("advertising data is {len} bytes, the maximum is {max}")]
    TooLong {
        /// Length the payload would have.
        len: usize,
        /// Maximum allowed.
        max: usize,
    },
    /// One structure carries more than 254 data bytes, which its length byte cannot express
    /// (Core Vol 3 Part C §11).
    #[error("AD structure of type {ad_type:#04x} has {len} data bytes, the maximum is 254")]
    StructureTooLong {
        /// The AD type of the structure.
        ad_type: u8,
        /// Its data length.
        len: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Ad {
        ad_type: u8,
        data: Vec<u8>,
    },
    /// A name whose complete/shortened form is decided at build time.
    Name(String),
}

/// Assembles advertising or scan-response data, one AD structure per call, in call order
/// (Core Vol 3 Part C §11).
///
/// Methods consume and return the builder so calls chain; [`build`](Self::build) borrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdvDataBuilder {
    items: Vec<Item>,
}

impl AdvDataBuilder {
    /// An empty builder (Core Vol 3 Part C §11).
    pub fn new() -> Self {
        Self::default()
    }

    fn push(mut self, ad_type: u8, data: Vec<u8>) -> Self {
        self.items.push(Item::Ad { ad_type, data });
        self
    }

    /// Adds a Flags structure, see [`flags`] for the bits (Core Supplement Part A §1.3).
    pub fn flags(self, flags: u8) -> Self {
        self.push(ad_type::FLAGS, alloc::vec![flags])
    }

    /// Adds a list of 16-bit service UUIDs, complete or incomplete; written even when empty
    /// (Core Supplement Part A §1.1).
    pub fn uuids16(self, uuids: &[u16], complete: bool) -> Self {
        let mut d = Vec::with_capacity(uuids.len() * 2);
        uuids.iter().for_each(|&u| d.put_u16(u));
        let t = if complete { ad_type::COMPLETE_16 } else { ad_type::INCOMPLETE_16 };
        self.push(t, d)
    }

    /// Adds a list of 32-bit service UUIDs, complete or incomplete; written even when empty
    /// (Core Supplement Part A §1.1).
    pub fn uuids32(self, uuids: &[u32], complete: bool) -> Self {
        let mut d = Vec::with_capacity(uuids.len() * 4);
        uuids.iter().for_each(|&u| d.put_u32(u));
        let t = if complete { ad_type::COMPLETE_32 } else { ad_type::INCOMPLETE_32 };
        self.push(t, d)
    }

    /// Adds a list of 128-bit service UUIDs given as little-endian (over-the-air) bytes, complete
    /// or incomplete; written even when empty (Core Supplement Part A §1.1).
    pub fn uuids128(self, uuids: &[[u8; 16]], complete: bool) -> Self {
        let d: Vec<u8> = uuids.iter().flatten().copied().collect();
        let t = if complete { ad_type::COMPLETE_128 } else { ad_type::INCOMPLETE_128 };
        self.push(t, d)
    }

    /// Adds service UUIDs grouped by their shortest form into 16-, 32- and 128-bit lists, in that
    /// order; empty groups are left out (Core Supplement Part A §1.1).
    pub fn service_uuids(mut self, uuids: &[Uuid], complete: bool) -> Self {
        let mut lists: [Vec<u8>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for u in uuids {
            let s = u.shortest();
            let slot = match s {
                Uuid::U16(_) => &mut lists[0],
                Uuid::U32(_) => &mut lists[1],
                Uuid::U128(_) => &mut lists[2],
            };
            s.write_le(slot);
        }
        let types = if complete {
            [ad_type::COMPLETE_16, ad_type::COMPLETE_32, ad_type::COMPLETE_128]
        } else {
            [ad_type::INCOMPLETE_16, ad_type::INCOMPLETE_32, ad_type::INCOMPLETE_128]
        };
        for (t, d) in types.into_iter().zip(lists) {
            if !d.is_empty() {
                self = self.push(t, d);
            }
        }
        self
    }

    /// Adds a Complete Local Name, whatever its length (Core Supplement Part A §1.2).
    pub fn complete_name(self, name: &str) -> Self {
        self.push(ad_type::COMPLETE_LOCAL_NAME, name.as_bytes().to_vec())
    }

    /// Adds a Shortened Local Name exactly as given (Core Supplement Part A §1.2).
    pub fn shortened_name(self, name: &str) -> Self {
        self.push(ad_type::SHORTENED_LOCAL_NAME, name.as_bytes().to_vec())
    }

    /// Adds the local name at this position: complete if it fits in the space the other structures
    /// leave at build time, otherwise shortened to fit, cut on a UTF-8 character boundary
    /// (Core Supplement Part A §1.2). A second call replaces the first name.
    pub fn name(mut self, name: &str) -> Self {
        let new = Item::Name(String::from(name));
        match self.items.iter_mut().find(|i| matches!(i, Item::Name(_))) {
            Some(slot) => *slot = new,
            None => self.items.push(new),
        }
        self
    }

    /// Adds the TX power level in dBm (Core Supplement Part A §1.5).
    pub fn tx_power(self, dbm: i8) -> Self {
        self.push(ad_type::TX_POWER_LEVEL, dbm.to_le_bytes().to_vec())
    }

    /// Adds the appearance value (Core Supplement Part A §1.12).
    pub fn appearance(self, appearance: u16) -> Self {
        self.push(ad_type::APPEARANCE, appearance.to_le_bytes().to_vec())
    }

    /// Adds a Peripheral Connection Interval Range, both bounds in 1.25 ms units, 0xFFFF for none
    /// (Core Supplement Part A §1.9).
    pub fn connection_interval_range(self, min: u16, max: u16) -> Self {
        let mut d = Vec::with_capacity(4);
        d.put_u16(min);
        d.put_u16(max);
        self.push(ad_type::PERIPHERAL_CONNECTION_INTERVAL_RANGE, d)
    }

    /// Adds service data; the UUID's shortest form picks type 0x16, 0x20 or 0x21
    /// (Core Supplement Part A §1.11).
    pub fn service_data(self, uuid: Uuid, data: &[u8]) -> Self {
        let s = uuid.shortest();
        let t = match s {
            Uuid::U16(_) => ad_type::SERVICE_DATA_16,
            Uuid::U32(_) => ad_type::SERVICE_DATA_32,
            Uuid::U128(_) => ad_type::SERVICE_DATA_128,
        };
        let mut d = Vec::with_capacity(s.wire_len() + data.len());
        s.write_le(&mut d);
        d.put(data);
        self.push(t, d)
    }

    /// Adds manufacturer specific data after the little-endian company identifier
    /// (Core Supplement Part A §1.4).
    pub fn manufacturer_data(self, company: u16, data: &[u8]) -> Self {
        let mut d = Vec::with_capacity(2 + data.len());
        d.put_u16(company);
        d.put(data);
        self.push(ad_type::MANUFACTURER_SPECIFIC_DATA, d)
    }

    /// Adds a structure of any type with the given data (Core Vol 3 Part C §11).
    pub fn raw(self, ad_type: u8, data: &[u8]) -> Self {
        self.push(ad_type, data.to_vec())
    }

    /// Encodes the structures for legacy advertising, at most 31 bytes (Core Vol 6 Part B §2.3.1).
    pub fn build(&self) -> Result<Vec<u8>, AdBuildError> {
        self.build_with_max(LEGACY_MAX_LEN)
    }

    /// Encodes the structures with a maximum of `max_len` bytes, e.g. for extended advertising
    /// (Core Vol 3 Part C §11, Core Vol 4 Part E §7.8.54).
    pub fn build_with_max(&self, max_len: usize) -> Result<Vec<u8>, AdBuildError> {
        let fixed: usize = self
            .items
            .iter()
            .map(|i| match i {
                Item::Ad { data, .. } => 2 + data.len(),
                Item::Name(_) => 0,
            })
            .sum();
        let mut out = Vec::with_capacity(max_len.min(fixed + 2 + MAX_AD_DATA_LEN));
        for item in &self.items {
            match item {
                Item::Ad { ad_type, data } => put_structure(&mut out, *ad_type, data)?,
                Item::Name(name) => {
                    let space = max_len.saturating_sub(fixed + 2).min(MAX_AD_DATA_LEN);
                    let cut = floor_char_boundary(name, space);
                    match name.get(..cut) {
                        Some(short) if cut < name.len() && cut > 0 => {
                            put_structure(&mut out, ad_type::SHORTENED_LOCAL_NAME, short.as_bytes())?
                        }
                        // Fits, or not even one character fits: write it whole and let the
                        // length checks report the problem.
                        _ => put_structure(&mut out, ad_type::COMPLETE_LOCAL_NAME, name.as_bytes())?,
                    }
                }
            }
        }
        if out.len() > max_len {
            return Err(AdBuildError::TooLong { len: out.len(), max: max_len });
        }
        Ok(out)
    }
}

/// The largest `n <= max` that is a char boundary of `s`.
fn floor_char_boundary(s: &str, max: usize) -> usize {
    let mut n = max.min(s.len());
    while n > 0 && !s.is_char_boundary(n) {
        n -= 1;
    }
    n
}

/// Appends `len | type | data`.
fn put_structure(out: &mut Vec<u8>, ad_type: u8, data: &[u8]) -> Result<(), AdBuildError> {
    let len = data
        .len()
        .checked_add(1)
        .and_then(|l| u8::try_from(l).ok())
        .ok_or(AdBuildError::StructureTooLong { ad_type, len: data.len() })?;
    out.put_u8(len);
    out.put_u8(ad_type);
    out.put(data);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    fn structures(a: &AdvData<'_>) -> Vec<(u8, Vec<u8>)> {
        a.iter().map(|s| (s.ad_type, s.data.to_vec())).collect()
    }

    #[test]
    fn flags_and_complete_name_exact_bytes() {
        let out = AdvDataBuilder::new().flags(flags::LE_GENERAL_ONLY).name("gattling").build().unwrap();
        assert_eq!(out, [0x02, 0x01, 0x06, 0x09, 0x09, 0x67, 0x61, 0x74, 0x74, 0x6c, 0x69, 0x6e, 0x67]);
        let ad = AdvData::parse(&out).unwrap();
        assert_eq!(ad.flags(), Some(0x06));
        assert_eq!(ad.local_name(), Some("gattling"));
        assert!(!ad.name_is_shortened());
        assert_eq!(ad.len(), 13);
    }

    #[test]
    fn long_name_is_shortened_to_fit() {
        let name = "a-very-long-device-name-that-does-not-fit";
        let out = AdvDataBuilder::new().flags(0x06).name(name).build().unwrap();
        assert_eq!(out.len(), 31);
        assert_eq!(&out[3..5], &[27, ad_type::SHORTENED_LOCAL_NAME]);
        let ad = AdvData::parse(&out).unwrap();
        assert_eq!(ad.local_name(), Some(&name[..26]));
        assert!(ad.name_is_shortened());
        // The same name fits whole in an extended advertisement.
        let ext = AdvDataBuilder::new().flags(0x06).name(name).build_with_max(251).unwrap();
        assert_eq!(AdvData::parse(&ext).unwrap().local_name(), Some(name));
        assert!(!AdvData::parse(&ext).unwrap().name_is_shortened());
    }

    #[test]
    fn name_space_counts_structures_added_after_it() {
        let out = AdvDataBuilder::new().name("abcdefghijklmnopqrstuvwxyz").tx_power(-4).build().unwrap();
        // 31 - 3 (tx power) - 2 (name header) = 26: the name just fits complete.
        assert_eq!(out.len(), 31);
        assert_eq!(out[1], ad_type::COMPLETE_LOCAL_NAME);
        let out = AdvDataBuilder::new().name("abcdefghijklmnopqrstuvwxyz!").tx_power(-4).build().unwrap();
        assert_eq!(out[1], ad_type::SHORTENED_LOCAL_NAME);
        assert_eq!(&out[28..], &[2, ad_type::TX_POWER_LEVEL, 0xFC]);
    }

    #[test]
    fn shortened_name_cuts_on_char_boundary() {
        // 25 ASCII bytes then a 2-byte 'é' straddling the 26-byte limit.
        let name = "abcdefghijklmnopqrstuvwxyé!";
        let out = AdvDataBuilder::new().flags(0x06).name(name).build().unwrap();
        let ad = AdvData::parse(&out).unwrap();
        assert_eq!(ad.local_name(), Some("abcdefghijklmnopqrstuvwxy"));
        assert_eq!(out.len(), 30);
    }

    #[test]
    fn second_name_call_replaces_the_first() {
        let out = AdvDataBuilder::new().name("one").flags(6).name("two").build().unwrap();
        assert_eq!(out, [4, 9, b't', b'w', b'o', 2, 1, 6]);
    }

    #[test]
    fn name_without_room_is_an_error() {
        let err = AdvDataBuilder::new().manufacturer_data(0x1234, &[0; 27]).name("x").build().unwrap_err();
        assert_eq!(err, AdBuildError::TooLong { len: 34, max: 31 });
    }

    #[test]
    fn build_errors() {
        let err = AdvDataBuilder::new().flags(6).complete_name("abcdefghijklmnopqrstuvwxyz0123").build().unwrap_err();
        assert_eq!(err, AdBuildError::TooLong { len: 35, max: 31 });
        assert_eq!(err.to_string(), "advertising data is 35 bytes, the maximum is 31");
        let err = AdvDataBuilder::new().raw(0x24, &[0; 255]).build_with_max(EXTENDED_MAX_LEN).unwrap_err();
        assert_eq!(err, AdBuildError::StructureTooLong { ad_type: 0x24, len: 255 });
        assert!(err.to_string().contains("255"));
        let ok = AdvDataBuilder::new().raw(0x24, &[0; 254]).build_with_max(EXTENDED_MAX_LEN).unwrap();
        assert_eq!(&ok[..2], &[255, 0x24]);
        assert_eq!(AdvDataBuilder::new().build().unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn typed_builder_methods_encode_little_endian() {
        let u128le: [u8; 16] = core::array::from_fn(|i| i as u8 + 1);
        let out =
            AdvDataBuilder::new().uuids16(&[0x180D, 0x180F], true).uuids32(&[0x1234_5678], false).build().unwrap();
        assert_eq!(out, [5, 0x03, 0x0D, 0x18, 0x0F, 0x18, 5, 0x04, 0x78, 0x56, 0x34, 0x12]);
        let out = AdvDataBuilder::new().uuids128(&[u128le], true).tx_power(-8).appearance(0x03C1).build().unwrap();
        assert_eq!(out[..2], [17, 0x07]);
        assert_eq!(out[2..18], u128le);
        assert_eq!(out[18..], [2, 0x0A, 0xF8, 3, 0x19, 0xC1, 0x03]);
        let ad = AdvData::parse(&out).unwrap();
        assert_eq!(ad.tx_power(), Some(-8));
        assert_eq!(ad.appearance(), Some(0x03C1));
        assert!(ad.has_complete_uuid_list(16));
        assert!(!ad.has_complete_uuid_list(2));
        let out = AdvDataBuilder::new()
            .manufacturer_data(0x004C, &[1, 2])
            .connection_interval_range(0x0006, 0x0C80)
            .build()
            .unwrap();
        assert_eq!(out, [5, 0xFF, 0x4C, 0x00, 1, 2, 5, 0x12, 0x06, 0x00, 0x80, 0x0C]);
    }

    #[test]
    fn service_uuids_group_by_shortest_size() {
        let custom = Uuid::from_be_u128(0x6E40_0001_B5A3_F393_E0A9_E50E_24DC_CA9E);
        let uuids = [Uuid::U16(0x180D), custom, Uuid::U128(Uuid::U16(0x180F).to_u128_le()), Uuid::U32(0x0001_0000)];
        let out = AdvDataBuilder::new().service_uuids(&uuids, false).build().unwrap();
        let ad = AdvData::parse(&out).unwrap();
        let types: Vec<u8> = ad.iter().map(|s| s.ad_type).collect();
        assert_eq!(types, [ad_type::INCOMPLETE_16, ad_type::INCOMPLETE_32, ad_type::INCOMPLETE_128]);
        let got: Vec<Uuid> = ad.service_uuids().collect();
        assert_eq!(got, [Uuid::U16(0x180D), Uuid::U16(0x180F), Uuid::U32(0x0001_0000), custom]);
        assert_eq!(AdvDataBuilder::new().service_uuids(&[], true).build().unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn service_data_and_manufacturer_data() {
        let custom = Uuid::from_be_u128(0x0102_0304_0506_0708_090A_0B0C_0D0E_0F10);
        let out = AdvDataBuilder::new()
            .service_data(Uuid::U16(0xFEAA), &[0x10, 0x00])
            .service_data(Uuid::U32(0x0012_3456), &[])
            .build()
            .unwrap();
        assert_eq!(out, [5, 0x16, 0xAA, 0xFE, 0x10, 0x00, 5, 0x20, 0x56, 0x34, 0x12, 0x00]);
        let out2 = AdvDataBuilder::new().service_data(custom, &[7]).manufacturer_data(0x0059, &[9, 8]).build().unwrap();
        let ad = AdvData::parse(&out).unwrap();
        let sd: Vec<(Uuid, &[u8])> = ad.service_data().collect();
        assert_eq!(sd, [(Uuid::U16(0xFEAA), &[0x10, 0x00][..]), (Uuid::U32(0x0012_3456), &[][..])]);
        let ad2 = AdvData::parse(&out2).unwrap();
        assert_eq!(ad2.service_data().collect::<Vec<_>>(), [(custom, &[7][..])]);
        assert_eq!(ad2.manufacturer_data(), Some((0x0059, &[9, 8][..])));
        assert_eq!(ad.manufacturer_data(), None);
        // Too short for its UUID / company id: skipped, not an error.
        let short = [2, 0x16, 0xAA, 2, 0xFF, 0x01];
        let ad = AdvData::parse(&short).unwrap();
        assert_eq!(ad.service_data().count(), 0);
        assert_eq!(ad.manufacturer_data(), None);
    }

    #[test]
    fn resolve_follows_pycom_table() {
        let custom = [0x11u8; 16];
        let bytes = AdvDataBuilder::new()
            .flags(0x06)
            .uuids16(&[0x180D], false)
            .uuids16(&[0x180F], true)
            .raw(ad_type::INCOMPLETE_32, &[1, 2, 3, 4])
            .raw(ad_type::COMPLETE_32, &[5, 6, 7, 8])
            .raw(ad_type::INCOMPLETE_128, &custom)
            .raw(ad_type::COMPLETE_128, &custom)
            .shortened_name("gatt")
            .complete_name("gattling")
            .tx_power(-12)
            .raw(ad_type::CLASS_OF_DEVICE, &[0x0C, 0x02, 0x5A])
            .service_data(Uuid::U16(0xFEAA), &[1])
            .appearance(0x0340)
            .raw(ad_type::ADVERTISING_INTERVAL, &[0x20, 0x00])
            .service_data(Uuid::U32(0x0012_3456), &[2])
            .service_data(Uuid::U128(custom), &[3])
            .manufacturer_data(0x004C, &[0xAB])
            .raw(ad_type::URI, b"\x16//x")
            .build_with_max(EXTENDED_MAX_LEN)
            .unwrap();
        let ad = AdvData::parse(&bytes).unwrap();
        use AdValue::*;
        assert_eq!(ad.resolve(ad_type::FLAGS), Some(Int(6)));
        assert_eq!(ad.resolve(ad_type::INCOMPLETE_16), Some(Bytes(&[0x0D, 0x18])));
        assert_eq!(ad.resolve(ad_type::COMPLETE_16), Some(Bytes(&[0x0F, 0x18])));
        assert_eq!(ad.resolve(ad_type::INCOMPLETE_32), Some(Bytes(&[1, 2, 3, 4])));
        assert_eq!(ad.resolve(ad_type::COMPLETE_32), Some(Bytes(&[5, 6, 7, 8])));
        assert_eq!(ad.resolve(ad_type::INCOMPLETE_128), Some(Bytes(&custom)));
        assert_eq!(ad.resolve(ad_type::COMPLETE_128), Some(Bytes(&custom)));
        assert_eq!(ad.resolve(ad_type::SHORTENED_LOCAL_NAME), Some(Str("gatt")));
        assert_eq!(ad.resolve(ad_type::COMPLETE_LOCAL_NAME), Some(Str("gattling")));
        assert_eq!(ad.resolve(ad_type::TX_POWER_LEVEL), Some(Int(-12)));
        assert_eq!(ad.resolve(ad_type::CLASS_OF_DEVICE), None);
        assert_eq!(ad.resolve(ad_type::SERVICE_DATA_16), Some(Bytes(&[0xAA, 0xFE, 1])));
        assert_eq!(ad.resolve(ad_type::APPEARANCE), None);
        assert_eq!(ad.resolve(ad_type::ADVERTISING_INTERVAL), None);
        assert_eq!(ad.resolve(ad_type::SERVICE_DATA_32), None);
        assert_eq!(ad.resolve(ad_type::SERVICE_DATA_128), None);
        assert_eq!(ad.resolve(ad_type::MANUFACTURER_SPECIFIC_DATA), Some(Bytes(&[0x4C, 0x00, 0xAB])));
        assert_eq!(ad.resolve(ad_type::URI), None);
        assert_eq!(ad.resolve(ad_type::LE_ROLE), None);
        // Flags are signed like TX power; names must be UTF-8.
        let ad = AdvData::parse(&[2, 0x01, 0x80, 3, 0x09, 0xFF, 0xFE, 1, 0x0A]).unwrap();
        assert_eq!(ad.resolve(ad_type::FLAGS), Some(Int(-128)));
        assert_eq!(ad.resolve(ad_type::COMPLETE_LOCAL_NAME), None);
        assert_eq!(ad.resolve(ad_type::TX_POWER_LEVEL), None);
    }

    #[test]
    fn truncated_structures_are_errors() {
        assert_eq!(
            AdvData::parse(&[2, 1, 6, 5, 9, b'a']),
            Err(DecodeError::Truncated { what: "AD structure", need: 5, have: 2 })
        );
        assert_eq!(AdvData::parse(&[2]), Err(DecodeError::Truncated { what: "AD structure", need: 2, have: 0 }));
        assert_eq!(AdvData::parse(&[255, 1]), Err(DecodeError::Truncated { what: "AD structure", need: 255, have: 1 }));
        // The lenient parse keeps the valid prefix.
        let ad = AdvData::parse_lenient(&[2, 1, 6, 5, 9, b'a']);
        assert_eq!(structures(&ad), [(1, vec![6])]);
        assert_eq!(ad.flags(), Some(6));
        assert!(AdvData::parse_lenient(&[7]).is_empty());
    }

    #[test]
    fn zero_length_ends_significant_part() {
        let mut buf = [0u8; 31];
        buf[..3].copy_from_slice(&[2, 1, 6]);
        let ad = AdvData::parse(&buf).unwrap();
        assert_eq!(structures(&ad), [(1, vec![6])]);
        assert_eq!(ad.as_bytes(), &[2, 1, 6]);
        // Whatever follows the terminator is ignored, even non-zero bytes.
        let ad = AdvData::parse(&[2, 1, 6, 0, 9, 9]).unwrap();
        assert_eq!(ad.iter().count(), 1);
        assert!(AdvData::parse(&[]).unwrap().is_empty());
        assert!(AdvData::parse(&[0; 62]).unwrap().is_empty());
        // A length of 1 is a type with no data.
        let ad = AdvData::parse(&[1, 0x09, 2, 0x0A, 0xFC]).unwrap();
        assert_eq!(ad.find(ad_type::COMPLETE_LOCAL_NAME), Some(&[][..]));
        assert_eq!(ad.local_name(), Some(""));
        assert_eq!(ad.tx_power(), Some(-4));
        assert_eq!(AdvData::try_from(&[1u8, 1][..]).unwrap().flags(), Some(0));
    }

    #[test]
    fn name_accessors() {
        let ad = AdvData::parse(&[3, 0x08, b'a', b'b', 3, 0x09, 0xC3, 0x28]).unwrap();
        // Complete name is invalid UTF-8: fall back to the shortened one.
        assert_eq!(ad.local_name(), Some("ab"));
        assert_eq!(ad.name_lossy().as_deref(), Some("\u{FFFD}("));
        let ad = AdvData::parse(&[3, 0x08, b'a', b'b']).unwrap();
        assert_eq!(ad.local_name(), Some("ab"));
        assert!(ad.name_is_shortened());
        assert_eq!(AdvData::parse(&[2, 1, 6]).unwrap().name_lossy(), None);
    }

    #[test]
    fn iteration_and_debug() {
        let bytes = [2, 1, 6, 3, 0x03, 0x0D, 0x18, 3, 0x14, 0x0F, 0x18];
        let ad = AdvData::parse(&bytes).unwrap();
        let mut n = 0;
        for s in &ad {
            n += s.data.len();
        }
        assert_eq!(n, 5);
        assert_eq!(ad.solicited_uuids().collect::<Vec<_>>(), [Uuid::U16(0x180F)]);
        assert_eq!(ad.find_all(0x03).count(), 1);
        assert!(alloc::format!("{ad:?}").contains("ad_type: 3"));
    }

    #[derive(Debug, Clone)]
    enum Field {
        Flags(u8),
        Uuids16(Vec<u16>, bool),
        Uuids32(Vec<u32>, bool),
        Uuids128(Vec<[u8; 16]>, bool),
        CompleteName(String),
        TxPower(i8),
        Appearance(u16),
        ServiceData(Uuid, Vec<u8>),
        Manufacturer(u16, Vec<u8>),
        Raw(u8, Vec<u8>),
    }

    fn any_uuid() -> impl Strategy<Value = Uuid> {
        prop_oneof![
            any::<u16>().prop_map(Uuid::U16),
            any::<u32>().prop_map(Uuid::U32),
            any::<[u8; 16]>().prop_map(Uuid::U128),
        ]
    }

    fn any_field() -> impl Strategy<Value = Field> {
        let small = || proptest::collection::vec(any::<u8>(), 0..6);
        prop_oneof![
            any::<u8>().prop_map(Field::Flags),
            (proptest::collection::vec(any::<u16>(), 0..4), any::<bool>()).prop_map(|(v, c)| Field::Uuids16(v, c)),
            (proptest::collection::vec(any::<u32>(), 0..3), any::<bool>()).prop_map(|(v, c)| Field::Uuids32(v, c)),
            (proptest::collection::vec(any::<[u8; 16]>(), 0..2), any::<bool>())
                .prop_map(|(v, c)| Field::Uuids128(v, c)),
            "[a-zA-Z0-9 é€]{0,10}".prop_map(Field::CompleteName),
            any::<i8>().prop_map(Field::TxPower),
            any::<u16>().prop_map(Field::Appearance),
            (any_uuid(), small()).prop_map(|(u, d)| Field::ServiceData(u, d)),
            (any::<u16>(), small()).prop_map(|(c, d)| Field::Manufacturer(c, d)),
            (any::<u8>(), small()).prop_map(|(t, d)| Field::Raw(t, d)),
        ]
    }

    /// The structure each field should produce, computed independently of the builder.
    fn expected(f: &Field) -> (u8, Vec<u8>) {
        let pick = |c: bool, inc: u8| if c { inc + 1 } else { inc };
        match f {
            Field::Flags(v) => (0x01, vec![*v]),
            Field::Uuids16(v, c) => (pick(*c, 0x02), v.iter().flat_map(|u| u.to_le_bytes()).collect()),
            Field::Uuids32(v, c) => (pick(*c, 0x04), v.iter().flat_map(|u| u.to_le_bytes()).collect()),
            Field::Uuids128(v, c) => (pick(*c, 0x06), v.concat()),
            Field::CompleteName(s) => (0x09, s.as_bytes().to_vec()),
            Field::TxPower(p) => (0x0A, vec![*p as u8]),
            Field::Appearance(a) => (0x19, a.to_le_bytes().to_vec()),
            Field::ServiceData(u, d) => {
                let s = u.shortest();
                let t = [0x16, 0x20, 0x21][[2, 4, 16].iter().position(|w| *w == s.wire_len()).unwrap()];
                let mut v = Vec::new();
                s.write_le(&mut v);
                v.extend_from_slice(d);
                (t, v)
            }
            Field::Manufacturer(c, d) => (0xFF, [&c.to_le_bytes()[..], d].concat()),
            Field::Raw(t, d) => (*t, d.clone()),
        }
    }

    fn apply(b: AdvDataBuilder, f: &Field) -> AdvDataBuilder {
        match f {
            Field::Flags(v) => b.flags(*v),
            Field::Uuids16(v, c) => b.uuids16(v, *c),
            Field::Uuids32(v, c) => b.uuids32(v, *c),
            Field::Uuids128(v, c) => b.uuids128(v, *c),
            Field::CompleteName(s) => b.complete_name(s),
            Field::TxPower(p) => b.tx_power(*p),
            Field::Appearance(a) => b.appearance(*a),
            Field::ServiceData(u, d) => b.service_data(*u, d),
            Field::Manufacturer(c, d) => b.manufacturer_data(*c, d),
            Field::Raw(t, d) => b.raw(*t, d),
        }
    }

    fn exercise(ad: &AdvData<'_>) -> usize {
        let mut n = ad.iter().count();
        n += ad.flags().is_some() as usize;
        n += ad.local_name().map_or(0, str::len);
        n += ad.name_lossy().map_or(0, |s| s.len());
        n += ad.tx_power().is_some() as usize + ad.appearance().is_some() as usize;
        n += ad.service_uuids().count() + ad.solicited_uuids().count() + ad.service_data().count();
        n += ad.manufacturer_data_all().count();
        n += (0..=255u8).filter(|&t| ad.resolve(t).is_some()).count();
        n
    }

    proptest! {
        #[test]
        fn builder_round_trips(fields in proptest::collection::vec(any_field(), 0..5)) {
            let want: Vec<(u8, Vec<u8>)> = fields.iter().map(expected).collect();
            let total: usize = want.iter().map(|(_, d)| 2 + d.len()).sum();
            let b = fields.iter().fold(AdvDataBuilder::new(), apply);
            match b.build() {
                Ok(bytes) => {
                    prop_assert!(total <= LEGACY_MAX_LEN);
                    prop_assert_eq!(bytes.len(), total);
                    let ad = AdvData::parse(&bytes).unwrap();
                    prop_assert_eq!(structures(&ad), want.clone());
                    let uuids: Vec<Uuid> = ad.service_uuids().collect();
                    let mut want_uuids = Vec::new();
                    for (t, d) in &want {
                        if let Some(w) = uuid_list_width(*t) {
                            want_uuids.extend(d.chunks_exact(w).map(|c| Uuid::from_le_bytes(c).unwrap()));
                        }
                    }
                    prop_assert_eq!(uuids, want_uuids);
                    let first_flags = want.iter().find(|(t, _)| *t == 1).map(|(_, d)| d.first().copied().unwrap_or(0));
                    prop_assert_eq!(ad.flags(), first_flags);
                }
                Err(e) => {
                    prop_assert!(total > LEGACY_MAX_LEN);
                    prop_assert_eq!(e, AdBuildError::TooLong { len: total, max: LEGACY_MAX_LEN });
                }
            }
        }

        #[test]
        fn name_fits_or_is_cut_at_the_longest_prefix(
            name in "[a-z0-9é€😀]{0,40}",
            flags in proptest::option::of(any::<u8>()),
            max in 5usize..40,
        ) {
            let mut b = AdvDataBuilder::new();
            if let Some(f) = flags {
                b = b.flags(f);
            }
            let bytes = b.name(&name).build_with_max(max);
            let fixed = if flags.is_some() { 3 } else { 0 };
            let Ok(bytes) = bytes else {
                // Only when not even the first character fits.
                prop_assert!(!name.is_empty());
                let first = name.chars().next().unwrap().len_utf8();
                prop_assert!(fixed + 2 + first > max);
                return Ok(());
            };
            prop_assert!(bytes.len() <= max);
            let ad = AdvData::parse(&bytes).unwrap();
            let got = ad.local_name().unwrap();
            prop_assert!(name.starts_with(got));
            if ad.name_is_shortened() {
                let next = name[got.len()..].chars().next().unwrap().len_utf8();
                prop_assert!(fixed + 2 + got.len() + next > max);
            } else {
                prop_assert_eq!(got, name.as_str());
            }
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(ad) = AdvData::parse(&bytes) {
                exercise(&ad);
                prop_assert_eq!(ad, AdvData::parse_lenient(&bytes));
            }
        }

        #[test]
        fn lenient_parse_never_panics_and_keeps_a_prefix(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let ad = AdvData::parse_lenient(&bytes);
            exercise(&ad);
            prop_assert!(bytes.starts_with(ad.as_bytes()));
            let mut re = Vec::new();
            for s in &ad {
                put_structure(&mut re, s.ad_type, s.data).unwrap();
            }
            prop_assert_eq!(re.as_slice(), ad.as_bytes());
            // The prefix itself is valid.
            prop_assert_eq!(AdvData::parse(ad.as_bytes()), Ok(ad));
        }
    }
}
