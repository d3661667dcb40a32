//! The "ATT_LIST" service table: a compact GATT server definition used by some BLE modules,
//! loaded into a [`Database`] at exactly its own handles and dumped back from any database.
//!
//! # Format
//! A table is a list of records ended by the two bytes `00 00` (handle 0x0000):
//!
//! ```text
//! record := handle:u16le | uuid_len:u8 (2 or 16) | uuid:uuid_len bytes LE | value_len:u8 | value
//! ```
//!
//! | record | uuid | value |
//! |---|---|---|
//! | primary / secondary service | `00 28` / `01 28` | the service UUID, LE (2 or 16 bytes) |
//! | characteristic declaration | `03 28` | ONE byte: the properties (Core Vol 3 Part G §3.3.1.1) |
//! | characteristic value | the characteristic UUID | initial value; its length is the buffer size |
//! | CCCD | `02 29` | `00 00` (only under Notify or Indicate) |
//! | include declaration | `02 28` | the full declaration value (Core Vol 3 Part G §3.2; gattling's extension) |
//! | any other descriptor | its UUID | its value |
//!
//! Handles increase by one from record to record. The table may be given as raw bytes or as hex
//! text (pairs of hex digits separated by any whitespace, `#` starts a comment to the end of the
//! line); [`AttList::decode`] tells them apart by the NUL bytes every binary table contains.
//!
//! # Serving
//! [`AttList::to_records`] builds the raw attribute table for
//! [`Database::insert_records`]: the declaration value on the wire is built as Core Vol 3 Part G
//! §3.3.1 requires (properties, the next record's handle, its UUID). A value record's length is
//! its buffer size: reads return it, writes up to it are stored, longer ones are refused with
//! Invalid Attribute Value Length. Values are always readable (the module answers reads from the
//! buffer) and writable when the properties allow a write; other descriptors are read-only; the
//! CCCD is readable and writable.
//!
//! [`AttList::database`] puts gattling's built-in GAP and GATT services below the table's first
//! handle, as many as fit ([`builtins_below`]); a table starting at 0x0001 replaces them.
//!
//! # Dumping
//! [`AttList::from_database`] exports any database; a table loaded and dumped gives the same
//! bytes. The format has no permissions and no room for "current length below the buffer size",
//! so: a value whose write limit is at most 255 bytes is dumped padded with zeros to that limit
//! (its buffer); a value whose limit is larger (the API's default 512) is dumped as its current
//! bytes, which become its buffer on loading; permissions are dropped (loading applies the rule
//! above). Values longer than 255 bytes (unless cut by [`AttList::from_database_truncating`]),
//! handle gaps and tables the loader would refuse are errors ([`DumpError`]).

use super::db::{AttrKind, AttributeRecord, Database, TableErrorKind, MAX_VALUE_LEN};
use super::{uuids, CharacteristicDef, Permissions, Properties, ServiceDef};
use crate::uuid::Uuid;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write as _};

/// One record of an ATT_LIST table.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ListRecord {
    /// Byte offset of the record in the (binary) table.
    pub offset: usize,
    /// Attribute handle (Core Vol 3 Part F §3.2.2).
    pub handle: u16,
    /// Attribute type as written: 16-bit or 128-bit (Core Vol 3 Part F §3.2.1).
    pub uuid: Uuid,
    /// What the record defines.
    pub kind: AttrKind,
    /// The record's value bytes as written (one properties byte for a characteristic declaration).
    pub value: Vec<u8>,
}

/// A validated ATT_LIST table.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct AttList {
    records: Vec<ListRecord>,
}

/// Why an ATT_LIST table was refused.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum AttListErrorKind {
    /// Hex text holds a character that is neither a hex digit, whitespace nor a comment.
    #[error("line {line} column {column}: {ch:?} is not a hex digit")]
    NotHex {
        /// The character.
        ch: char,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
    },
    /// Hex text holds a run of hex digits of odd length.
    #[error("line {line} column {column}: odd number of hex digits")]
    OddHex {
        /// 1-based line.
        line: usize,
        /// 1-based column where the run starts.
        column: usize,
    },
    /// The table ends inside a record.
    #[error("truncated record: {field} needs {needed} bytes, {available} left")]
    Truncated {
        /// The field cut short.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// `uuid_len` is not 2 or 16 (Core Vol 3 Part F §3.2.1).
    #[error("uuid_len {0} is not 2 or 16")]
    BadUuidLen(u8),
    /// The handle is not the previous record's plus one.
    #[error("handle is not the previous one plus one (expected 0x{expected:04X})")]
    HandleNotNext {
        /// The handle the record should have.
        expected: u16,
    },
    /// A record with handle 0x0000, which only ends the table (Core Vol 3 Part F §3.2.2).
    #[error("handle 0x0000 before the end of the table (it is the terminator)")]
    HandleZero,
    /// The records run past handle 0xFFFF.
    #[error("the table is too large for the handle space (it runs past 0xFFFF)")]
    HandleSpace,
    /// A 128-bit UUID on the Bluetooth Base UUID whose 16-bit form must be used, so that the
    /// client sees what the table lists and a dump gives the same bytes (Core Vol 3 Part B §2.5.1).
    #[error("128-bit UUID {0} is a 16-bit SIG UUID: write it in its 2-byte form")]
    LongBaseUuid(Uuid),
    /// A service record's value is not a 2- or 16-byte UUID (Core Vol 3 Part G §3.1).
    #[error("service UUID of {0} bytes is not 2 or 16 bytes long")]
    ServiceUuidLen(u8),
    /// A characteristic declaration whose value is not the one properties byte.
    #[error("characteristic declaration value_len {0} is not 1 (the properties byte)")]
    DeclarationLen(u8),
    /// A characteristic declaration not followed by its value record (Core Vol 3 Part G §3.3).
    #[error("characteristic declaration is not followed by its value record")]
    MissingValue,
    /// A CCCD under a characteristic without Notify or Indicate (Core Vol 3 Part G §3.3.3.3).
    #[error("CCCD under a characteristic without notify or indicate (properties 0x{0:02X})")]
    CccdWithoutNotify(u8),
    /// A CCCD whose value is not `00 00` (Core Vol 3 Part G §3.3.3.3).
    #[error("CCCD value must be 00 00")]
    CccdValue,
    /// The table does not end with `00 00`.
    #[error("missing terminator (00 00) at the end of the table")]
    MissingTerminator,
    /// Bytes after the terminator.
    #[error("{0} trailing bytes after the terminator")]
    TrailingBytes(usize),
    /// The database rules refused the record (Core Vol 3 Part G §3).
    #[error("{0}")]
    Table(TableErrorKind),
}

/// An ATT_LIST table refused: where (byte offset of the offending field in the binary table, and
/// the record's handle when known) and why.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AttListError {
    /// Byte offset in the binary table.
    pub offset: usize,
    /// Handle of the offending record, when it could be read.
    pub handle: Option<u16>,
    /// Why.
    pub reason: AttListErrorKind,
}

impl fmt::Display for AttListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.handle {
            Some(h) => write!(f, "offset {} (handle 0x{h:04X}): {}", self.offset, self.reason),
            None => write!(f, "offset {}: {}", self.offset, self.reason),
        }
    }
}

impl core::error::Error for AttListError {}

/// Why a database could not be dumped as an ATT_LIST table.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum DumpError {
    /// A value longer than the 255 bytes `value_len` can express.
    #[error("handle 0x{handle:04X}: value of {len} bytes does not fit value_len (at most 255)")]
    ValueTooLong {
        /// The attribute.
        handle: u16,
        /// Its value length.
        len: usize,
    },
    /// Handles are not consecutive, which the format requires.
    #[error("handle 0x{handle:04X}: follows 0x{previous:04X}; the format needs consecutive handles")]
    HandleGap {
        /// The attribute after the gap.
        handle: u16,
        /// The attribute before it.
        previous: u16,
    },
    /// The dumped table would be refused by the loader (e.g. a CCCD without Notify/Indicate).
    #[error("the dump is not a valid table: {0}")]
    Invalid(AttListError),
}

fn err(offset: usize, handle: Option<u16>, reason: AttListErrorKind) -> AttListError {
    AttListError { offset, handle, reason }
}

/// Decodes hex text: pairs of hex digits, any whitespace between runs, `#` comments.
pub fn hex_to_bytes(text: &str) -> Result<Vec<u8>, AttListError> {
    let mut out = Vec::new();
    for (l, line) in text.lines().enumerate() {
        let line_no = l + 1;
        let mut run: Option<(usize, Option<u8>)> = None; // (start column, pending high nibble)
        for (c, ch) in line.chars().enumerate() {
            let column = c + 1;
            if ch == '#' {
                break;
            }
            if ch.is_whitespace() {
                if let Some((start, Some(_))) = run {
                    return Err(err(out.len(), None, AttListErrorKind::OddHex { line: line_no, column: start }));
                }
                run = None;
                continue;
            }
            let Some(d) = ch.to_digit(16) else {
                return Err(err(out.len(), None, AttListErrorKind::NotHex { ch, line: line_no, column }));
            };
            let d = d as u8;
            run = match run {
                None => Some((column, Some(d))),
                Some((start, None)) => Some((start, Some(d))),
                Some((start, Some(hi))) => {
                    out.push(hi << 4 | d);
                    Some((start, None))
                }
            };
        }
        if let Some((start, Some(_))) = run {
            return Err(err(out.len(), None, AttListErrorKind::OddHex { line: line_no, column: start }));
        }
    }
    Ok(out)
}

/// True when the bytes after a `00 00` look like the rest of a record (uuid_len, uuid,
/// value_len, value), i.e. handle 0 was used for a record rather than as the terminator.
fn looks_like_record(rest: &[u8]) -> bool {
    let Some(&ul) = rest.first() else { return false };
    if !matches!(ul, 2 | 16) {
        return false;
    }
    let ul = usize::from(ul);
    match rest.get(1 + ul) {
        Some(&vl) => rest.len() >= 2 + ul + usize::from(vl),
        None => false,
    }
}

fn is_long_base(uuid: &Uuid) -> bool {
    matches!(uuid, Uuid::U128(_)) && matches!(uuid.shortest(), Uuid::U16(_))
}

/// Reads `n` bytes at `pos` or reports the field as truncated.
fn take<'a>(
    bytes: &'a [u8],
    pos: usize,
    n: usize,
    field: &'static str,
    handle: Option<u16>,
) -> Result<&'a [u8], AttListError> {
    let available = bytes.len().saturating_sub(pos);
    pos.checked_add(n)
        .and_then(|end| bytes.get(pos..end))
        .ok_or_else(|| err(pos, handle, AttListErrorKind::Truncated { field, needed: n, available }))
}

impl AttList {
    /// Parses and validates a table given as binary bytes or as hex text: input without a NUL
    /// byte is hex text (a binary table always holds its `00 00` terminator).
    pub fn decode(input: &[u8]) -> Result<AttList, AttListError> {
        if input.contains(&0) {
            return Self::parse(input);
        }
        let text = core::str::from_utf8(input).map_err(|e| {
            let at = e.valid_up_to();
            let line = input.get(..at).map(|b| b.iter().filter(|&&c| c == b'\n').count() + 1).unwrap_or(1);
            err(0, None, AttListErrorKind::NotHex { ch: char::REPLACEMENT_CHARACTER, line, column: 0 })
        })?;
        Self::parse_hex(text)
    }

    /// Parses and validates a table given as hex text (whitespace and line breaks allowed).
    pub fn parse_hex(text: &str) -> Result<AttList, AttListError> {
        Self::parse(&hex_to_bytes(text)?)
    }

    /// Parses and validates a binary table: framing, every rule of the format, and the database
    /// rules of [`Database::insert_records`] (Core Vol 3 Part G §3).
    pub fn parse(bytes: &[u8]) -> Result<AttList, AttListError> {
        use AttListErrorKind as K;
        let mut records: Vec<ListRecord> = Vec::new();
        let mut pos = 0usize;
        // The declaration waiting for its value: (index in `records`).
        let mut pending: Option<usize> = None;
        // Properties of the characteristic whose value came last (descriptors may follow).
        let mut char_props: Option<u8> = None;
        loop {
            let start = pos;
            if pos >= bytes.len() {
                let handle = records.last().map(|r| r.handle);
                return Err(err(pos, handle, K::MissingTerminator));
            }
            let h = take(bytes, pos, 2, "handle", None)?;
            let handle = match *h {
                [a, b] => u16::from_le_bytes([a, b]),
                _ => 0,
            };
            pos += 2;
            if handle == 0 {
                let rest = bytes.get(pos..).unwrap_or(&[]);
                if rest.is_empty() {
                    break;
                }
                if looks_like_record(rest) {
                    // After 0xFFFF the next handle wraps to 0: the table outgrew the handle space.
                    let wrapped = records.last().is_some_and(|r| r.handle == u16::MAX);
                    return Err(err(start, Some(0), if wrapped { K::HandleSpace } else { K::HandleZero }));
                }
                let last = records.last().map(|r| r.handle);
                return Err(err(pos, last, K::TrailingBytes(rest.len())));
            }
            let h = Some(handle);
            if let Some(prev) = records.last().map(|r| r.handle) {
                match prev.checked_add(1) {
                    None => return Err(err(start, h, K::HandleSpace)),
                    Some(expected) if expected != handle => return Err(err(start, h, K::HandleNotNext { expected })),
                    Some(_) => {}
                }
            }
            let ul = take(bytes, pos, 1, "uuid_len", h)?.first().copied().unwrap_or(0);
            if !matches!(ul, 2 | 16) {
                return Err(err(pos, h, K::BadUuidLen(ul)));
            }
            pos += 1;
            let uuid_at = pos;
            let uuid_bytes = take(bytes, pos, usize::from(ul), "uuid", h)?;
            let uuid = Uuid::from_le_bytes(uuid_bytes).map_err(|_| err(pos, h, K::BadUuidLen(ul)))?;
            if is_long_base(&uuid) {
                return Err(err(uuid_at, h, K::LongBaseUuid(uuid)));
            }
            pos += usize::from(ul);
            let vl_at = pos;
            let vl = take(bytes, pos, 1, "value_len", h)?.first().copied().unwrap_or(0);
            pos += 1;
            let value_at = pos;
            let value = take(bytes, pos, usize::from(vl), "value", h)?.to_vec();
            pos += usize::from(vl);
            let t = match uuid {
                Uuid::U16(t) => Some(t),
                _ => None,
            };
            let is_decl_type = matches!(
                t,
                Some(uuids::PRIMARY_SERVICE | uuids::SECONDARY_SERVICE | uuids::INCLUDE | uuids::CHARACTERISTIC)
            );
            let kind = if let Some(i) = pending.take() {
                let decl = records.get(i).map(|r| (r.offset, r.handle, r.value.first().copied().unwrap_or(0)));
                let (d_off, d_handle, props) = decl.unwrap_or((start, handle, 0));
                if is_decl_type || t == Some(uuids::CCCD) {
                    return Err(err(d_off, Some(d_handle), K::MissingValue));
                }
                char_props = Some(props);
                AttrKind::Value
            } else {
                match t {
                    Some(t @ (uuids::PRIMARY_SERVICE | uuids::SECONDARY_SERVICE)) => {
                        if !matches!(vl, 2 | 16) {
                            return Err(err(vl_at, h, K::ServiceUuidLen(vl)));
                        }
                        let su = Uuid::from_le_bytes(&value).map_err(|_| err(vl_at, h, K::ServiceUuidLen(vl)))?;
                        if is_long_base(&su) {
                            return Err(err(value_at, h, K::LongBaseUuid(su)));
                        }
                        char_props = None;
                        if t == uuids::PRIMARY_SERVICE {
                            AttrKind::PrimaryService
                        } else {
                            AttrKind::SecondaryService
                        }
                    }
                    Some(uuids::CHARACTERISTIC) => {
                        if vl != 1 {
                            return Err(err(vl_at, h, K::DeclarationLen(vl)));
                        }
                        pending = Some(records.len());
                        char_props = None;
                        AttrKind::CharacteristicDecl
                    }
                    Some(uuids::INCLUDE) => {
                        char_props = None;
                        AttrKind::Include
                    }
                    Some(uuids::CCCD) => {
                        match char_props {
                            Some(p) if p & (Properties::NOTIFY.0 | Properties::INDICATE.0) != 0 => {}
                            Some(p) => return Err(err(start, h, K::CccdWithoutNotify(p))),
                            None => return Err(err(start, h, K::Table(TableErrorKind::OutsideCharacteristic))),
                        }
                        if value != [0, 0] {
                            return Err(err(vl_at, h, K::CccdValue));
                        }
                        AttrKind::Cccd
                    }
                    _ => AttrKind::Descriptor,
                }
            };
            records.push(ListRecord { offset: start, handle, uuid, kind, value });
        }
        if let Some(r) = pending.and_then(|i| records.get(i)) {
            return Err(err(r.offset, Some(r.handle), K::MissingValue));
        }
        let list = AttList { records };
        // The database rules (a table starts with a service, descriptors sit in a characteristic,
        // includes point at services, ...), checked by the one database implementation.
        list.table_database()?;
        Ok(list)
    }

    /// The records, in handle order.
    pub fn records(&self) -> &[ListRecord] {
        &self.records
    }

    /// The first handle, or `None` for an empty table.
    pub fn first_handle(&self) -> Option<u16> {
        self.records.first().map(|r| r.handle)
    }

    /// The raw attribute table for [`Database::insert_records`] (Core Vol 3 Part G §3), with the
    /// full characteristic declaration values (properties, value handle, UUID; §3.3.1) and the
    /// permissions described in the module documentation.
    pub fn to_records(&self) -> Vec<AttributeRecord> {
        let mut out = Vec::with_capacity(self.records.len());
        let mut props = 0u8;
        for (i, r) in self.records.iter().enumerate() {
            let (value, permissions, max_len) = match r.kind {
                AttrKind::CharacteristicDecl => {
                    props = r.value.first().copied().unwrap_or(0);
                    let mut v = alloc::vec![props];
                    if let Some(next) = self.records.get(i + 1) {
                        v.extend_from_slice(&next.handle.to_le_bytes());
                        next.uuid.write_le(&mut v);
                    }
                    (v, Permissions::READ, 0)
                }
                AttrKind::Value => {
                    let p = Properties(props);
                    let mut perms = Permissions::READ;
                    if p.intersects(
                        Properties::WRITE
                            | Properties::WRITE_WITHOUT_RESPONSE
                            | Properties::AUTHENTICATED_SIGNED_WRITES,
                    ) {
                        perms |= Permissions::WRITE;
                    }
                    (r.value.clone(), perms, r.value.len())
                }
                AttrKind::Cccd => (r.value.clone(), Permissions::READ | Permissions::WRITE, 2),
                _ => (r.value.clone(), Permissions::READ, r.value.len()),
            };
            out.push(AttributeRecord { handle: r.handle, uuid: r.uuid, value, permissions, max_len });
        }
        out
    }

    /// A database holding only the table.
    pub fn table_database(&self) -> Result<Database, AttListError> {
        let mut db = Database::new();
        self.insert_into(&mut db)?;
        Ok(db)
    }

    /// Inserts the table into `db` at its own handles; atomic (on error `db` is unchanged).
    pub fn insert_into(&self, db: &mut Database) -> Result<(), AttListError> {
        db.insert_records(&self.to_records()).map_err(|e| {
            let r = self.records.get(e.index);
            err(r.map(|r| r.offset).unwrap_or(0), Some(e.handle), AttListErrorKind::Table(e.reason))
        })
    }

    /// The database to serve: gattling's built-in GAP/GATT services below the table's first
    /// handle ([`builtins_below`]; none when it starts at 0x0001), then the table.
    pub fn database(&self, device_name: &str, appearance: u16) -> Result<Database, AttListError> {
        let first = self.first_handle().unwrap_or(u16::MAX);
        let mut db = builtins_below(first, device_name, appearance);
        self.insert_into(&mut db)?;
        Ok(db)
    }

    /// The binary table, terminator included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for r in &self.records {
            write_record(&mut out, r);
        }
        out.extend_from_slice(&[0, 0]);
        out
    }

    /// The table as hex text, one record per line as the seed lays it out, `00 00` last.
    pub fn to_hex(&self) -> String {
        let mut s = String::new();
        let mut buf = Vec::new();
        for r in &self.records {
            buf.clear();
            write_record(&mut buf, r);
            push_hex_line(&mut s, &buf);
        }
        push_hex_line(&mut s, &[0, 0]);
        s
    }

    /// Dumps the attributes of `db` from handle `first` on (1 for the whole database) as a
    /// table; see the module documentation for what the format cannot hold. The result is
    /// checked by parsing it back.
    pub fn from_database(db: &Database, first: u16) -> Result<AttList, DumpError> {
        Self::dump(db, first, false).map(|(list, _)| list)
    }

    /// As [`AttList::from_database`], but values longer than 255 bytes are cut to their first
    /// 255 bytes instead of refused; returns the table and the (handle, original length) of
    /// every value cut.
    pub fn from_database_truncating(db: &Database, first: u16) -> Result<(AttList, Vec<(u16, usize)>), DumpError> {
        Self::dump(db, first, true)
    }

    fn dump(db: &Database, first: u16, truncate: bool) -> Result<(AttList, Vec<(u16, usize)>), DumpError> {
        let mut cut = Vec::new();
        let mut bytes = Vec::new();
        let mut previous: Option<u16> = None;
        for a in db.attributes().iter().filter(|a| a.handle >= first) {
            if let Some(p) = previous {
                if p.checked_add(1) != Some(a.handle) {
                    return Err(DumpError::HandleGap { handle: a.handle, previous: p });
                }
            }
            previous = Some(a.handle);
            let value: Vec<u8> = match a.kind {
                AttrKind::CharacteristicDecl => a.value.first().map(|p| alloc::vec![*p]).unwrap_or_default(),
                AttrKind::Cccd => alloc::vec![0, 0],
                AttrKind::Value => {
                    let mut v = db.value(a).to_vec();
                    if a.max_len <= 255 && v.len() < a.max_len {
                        v.resize(a.max_len, 0);
                    }
                    v
                }
                _ => a.value.clone(),
            };
            let mut value = value;
            if truncate && value.len() > 255 {
                cut.push((a.handle, value.len()));
                value.truncate(255);
            }
            let vl = u8::try_from(value.len())
                .map_err(|_| DumpError::ValueTooLong { handle: a.handle, len: value.len() })?;
            bytes.extend_from_slice(&a.handle.to_le_bytes());
            let uuid = a.uuid.shortest_wire();
            bytes.push(uuid.wire_len() as u8);
            uuid.write_le(&mut bytes);
            bytes.push(vl);
            bytes.extend_from_slice(&value);
        }
        bytes.extend_from_slice(&[0, 0]);
        AttList::parse(&bytes).map(|list| (list, cut)).map_err(DumpError::Invalid)
    }
}

fn write_record(out: &mut Vec<u8>, r: &ListRecord) {
    out.extend_from_slice(&r.handle.to_le_bytes());
    out.push(r.uuid.wire_len() as u8);
    r.uuid.write_le(out);
    // Parsed records hold at most 255 value bytes.
    out.push(u8::try_from(r.value.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(r.value.get(..255).unwrap_or(&r.value));
}

fn push_hex_line(s: &mut String, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{b:02x}");
    }
    s.push('\n');
}

/// Handles the built-in services take in full (GAP with Device Name and Appearance, GATT with
/// Service Changed and its CCCD, Client Supported Features and Database Hash).
pub const FULL_BUILTIN_HANDLES: u16 = 13;

/// gattling's built-in GAP (0x1800) and GATT (0x1801) services (Core Vol 3 Part C §12, Part G
/// §7) compacted into the handles below `first` (handles 1..first-1), dropping parts from the
/// end while they do not fit:
///
/// | free handles | built-ins |
/// |---|---|
/// | 0-2 | none |
/// | 3-4 | GAP with Device Name |
/// | 5-8 | GAP with Device Name and Appearance |
/// | 9-10 | + GATT with Service Changed and its CCCD |
/// | 11-12 | + Client Supported Features |
/// | 13 or more | + Database Hash (the full built-ins) |
pub fn builtins_below(first: u16, device_name: &str, appearance: u16) -> Database {
    use CharacteristicDef as C;
    let room = first.saturating_sub(1);
    let mut db = Database::new();
    if room >= 3 {
        let mut gap = ServiceDef::primary(uuids::GAP_SERVICE).characteristic(C::new(
            uuids::DEVICE_NAME,
            Properties::READ,
            device_name.as_bytes().get(..MAX_VALUE_LEN).unwrap_or(device_name.as_bytes()),
        ));
        if room >= 5 {
            gap = gap.characteristic(C::new(uuids::APPEARANCE, Properties::READ, &appearance.to_le_bytes()));
        }
        let _ = db.add_service(gap);
    }
    if room >= 9 {
        let mut gatt = ServiceDef::primary(uuids::GATT_SERVICE).characteristic(C::new(
            uuids::SERVICE_CHANGED,
            Properties::INDICATE,
            &[0, 0, 0, 0],
        ));
        if room >= 11 {
            gatt = gatt.characteristic(
                C::new(uuids::CLIENT_SUPPORTED_FEATURES, Properties::READ | Properties::WRITE, &[0]).max_len(1),
            );
        }
        if room >= 13 {
            gatt = gatt.characteristic(C::new(uuids::DATABASE_HASH, Properties::READ, &[0; 16]));
        }
        let _ = db.add_service(gatt);
    }
    db
}
