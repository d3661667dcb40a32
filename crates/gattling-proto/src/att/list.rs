//! Zero-copy, pre-validated views of the list parameters of ATT PDUs (Core Vol 3 Part F §3.4).
//!
//! Each view checks its bytes once, in `new` (or while [`AttPdu::decode`](super::AttPdu::decode)
//! runs), so iterating it afterwards cannot fail and never panics. The raw bytes are kept, so
//! encoding a decoded view gives back exactly the received bytes.

use crate::codec::DecodeError;
use crate::uuid::Uuid;
use core::iter::FusedIterator;
use core::slice::ChunksExact;

/// `IntoIterator` for a list type by its `iter()` method.
macro_rules! into_iterator {
    ($list:ident, $iter:ident, $item:ty) => {
        impl<'a> IntoIterator for $list<'a> {
            type Item = $item;
            type IntoIter = $iter<'a>;
            fn into_iter(self) -> Self::IntoIter {
                self.iter()
            }
        }
    };
}

/// The marker traits of iterators over fixed-size records (exact length, fused).
macro_rules! exact_and_fused {
    ($iter:ident) => {
        impl ExactSizeIterator for $iter<'_> {}
        impl FusedIterator for $iter<'_> {}
    };
}

const WHAT_INFO: &str = "ATT information data";
const WHAT_HANDLES_INFO: &str = "ATT handles information list";
const WHAT_ATTR_DATA: &str = "ATT attribute data list";
const WHAT_GROUP_DATA: &str = "ATT attribute group data list";
const WHAT_HANDLES: &str = "ATT handle list";
const WHAT_LENGTH_VALUE: &str = "ATT length value tuple list";
const WHAT_HANDLE_VALUE: &str = "ATT handle length value tuple list";

/// Checks that `data` holds one or more whole records of `rec_len` bytes.
fn check_records(what: &'static str, data: &[u8], rec_len: usize) -> Result<(), DecodeError> {
    let rec_len = rec_len.max(1);
    let partial = data.len() % rec_len;
    if data.is_empty() {
        Err(DecodeError::Truncated { what, need: rec_len, have: 0 })
    } else if partial != 0 {
        Err(DecodeError::Truncated { what, need: data.len() - partial + rec_len, have: data.len() })
    } else {
        Ok(())
    }
}

fn le16(b: [u8; 2]) -> u16 {
    u16::from_le_bytes(b)
}

/// Splits a record into its leading 16-bit handle and the rest.
fn split_u16(rec: &[u8]) -> Option<(u16, &[u8])> {
    rec.split_first_chunk::<2>().map(|(h, rest)| (le16(*h), rest))
}

/// Format of the Find Information Response data (Core Vol 3 Part F §3.4.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InformationFormat {
    /// 0x01: handles with 16-bit UUIDs (Core Vol 3 Part F §3.4.3.2).
    Uuid16 = 0x01,
    /// 0x02: handles with 128-bit UUIDs (Core Vol 3 Part F §3.4.3.2).
    Uuid128 = 0x02,
}

impl InformationFormat {
    /// The format for a wire value, `None` if reserved (Core Vol 3 Part F §3.4.3.2).
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0x01 => Some(Self::Uuid16),
            0x02 => Some(Self::Uuid128),
            _ => None,
        }
    }

    /// The wire value of the format field (Core Vol 3 Part F §3.4.3.2).
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// Bytes per handle-UUID pair: 4 or 18 (Core Vol 3 Part F §3.4.3.2).
    pub const fn record_len(self) -> usize {
        match self {
            Self::Uuid16 => 4,
            Self::Uuid128 => 18,
        }
    }
}

/// Find Information Response data: one or more (handle, UUID) pairs (Core Vol 3 Part F §3.4.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InformationData<'a> {
    format: InformationFormat,
    data: &'a [u8],
}

impl<'a> InformationData<'a> {
    /// Validates `data` as non-empty whole pairs of `format` (Core Vol 3 Part F §3.4.3.2).
    pub fn new(format: InformationFormat, data: &'a [u8]) -> Result<Self, DecodeError> {
        Self::parse(format, data, WHAT_INFO)
    }

    pub(crate) fn parse(format: InformationFormat, data: &'a [u8], what: &'static str) -> Result<Self, DecodeError> {
        check_records(what, data, format.record_len())?;
        Ok(Self { format, data })
    }

    /// The UUID format of every pair (Core Vol 3 Part F §3.4.3.2).
    pub fn format(&self) -> InformationFormat {
        self.format
    }

    /// The raw pairs as on the wire (Core Vol 3 Part F §3.4.3.2).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.data
    }

    /// Number of pairs (Core Vol 3 Part F §3.4.3.2).
    pub fn len(&self) -> usize {
        self.data.len() / self.format.record_len()
    }

    /// Whether there are no pairs; never true for a validated list (Core Vol 3 Part F §3.4.3.2).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Iterates the (handle, UUID) pairs (Core Vol 3 Part F §3.4.3.2).
    pub fn iter(&self) -> InformationIter<'a> {
        InformationIter { chunks: self.data.chunks_exact(self.format.record_len()) }
    }
}

into_iterator!(InformationData, InformationIter, (u16, Uuid));

/// Iterator over Find Information Response pairs (Core Vol 3 Part F §3.4.3.2).
#[derive(Debug, Clone)]
pub struct InformationIter<'a> {
    chunks: ChunksExact<'a, u8>,
}

impl Iterator for InformationIter<'_> {
    type Item = (u16, Uuid);
    fn next(&mut self) -> Option<Self::Item> {
        let (handle, uuid) = split_u16(self.chunks.next()?)?;
        Some((handle, Uuid::from_le_bytes(uuid).ok()?))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

exact_and_fused!(InformationIter);

/// Find By Type Value Response: (found handle, group end handle) pairs (Core Vol 3 Part F §3.4.3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandlesInformationList<'a> {
    data: &'a [u8],
}

impl<'a> HandlesInformationList<'a> {
    /// Validates `data` as one or more 4-byte pairs (Core Vol 3 Part F §3.4.3.4).
    pub fn new(data: &'a [u8]) -> Result<Self, DecodeError> {
        Self::parse(data, WHAT_HANDLES_INFO)
    }

    pub(crate) fn parse(data: &'a [u8], what: &'static str) -> Result<Self, DecodeError> {
        check_records(what, data, 4)?;
        Ok(Self { data })
    }

    /// The raw pairs as on the wire (Core Vol 3 Part F §3.4.3.4).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.data
    }

    /// Number of pairs (Core Vol 3 Part F §3.4.3.4).
    pub fn len(&self) -> usize {
        self.data.len() / 4
    }

    /// Whether there are no pairs; never true for a validated list (Core Vol 3 Part F §3.4.3.4).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Iterates (found attribute handle, group end handle) (Core Vol 3 Part F §3.4.3.4).
    pub fn iter(&self) -> HandlesInformationIter<'a> {
        HandlesInformationIter { chunks: self.data.chunks_exact(4) }
    }
}

into_iterator!(HandlesInformationList, HandlesInformationIter, (u16, u16));

/// Iterator over Find By Type Value Response pairs (Core Vol 3 Part F §3.4.3.4).
#[derive(Debug, Clone)]
pub struct HandlesInformationIter<'a> {
    chunks: ChunksExact<'a, u8>,
}

impl Iterator for HandlesInformationIter<'_> {
    type Item = (u16, u16);
    fn next(&mut self) -> Option<Self::Item> {
        match *self.chunks.next()? {
            [a, b, c, d] => Some((le16([a, b]), le16([c, d]))),
            _ => None,
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

exact_and_fused!(HandlesInformationIter);

/// Read By Type Response data: equal-length (handle, value) pairs (Core Vol 3 Part F §3.4.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttributeDataList<'a> {
    length: u8,
    data: &'a [u8],
}

impl<'a> AttributeDataList<'a> {
    /// Validates `length` (2..=255, handle included) and `data` as whole pairs (Core Vol 3 Part F §3.4.4.2).
    pub fn new(length: u8, data: &'a [u8]) -> Result<Self, DecodeError> {
        Self::parse(length, data, WHAT_ATTR_DATA)
    }

    pub(crate) fn parse(length: u8, data: &'a [u8], what: &'static str) -> Result<Self, DecodeError> {
        if length < 2 {
            return Err(DecodeError::Invalid { what, reason: "length field is below 2" });
        }
        check_records(what, data, usize::from(length))?;
        Ok(Self { length, data })
    }

    /// The Length field: bytes per pair, handle included (Core Vol 3 Part F §3.4.4.2).
    pub fn length(&self) -> u8 {
        self.length
    }

    /// Bytes of each value: Length - 2 (Core Vol 3 Part F §3.4.4.2).
    pub fn value_len(&self) -> usize {
        usize::from(self.length).saturating_sub(2)
    }

    /// The raw pairs as on the wire (Core Vol 3 Part F §3.4.4.2).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.data
    }

    /// Number of pairs (Core Vol 3 Part F §3.4.4.2).
    pub fn len(&self) -> usize {
        self.data.len() / usize::from(self.length.max(1))
    }

    /// Whether there are no pairs; never true for a validated list (Core Vol 3 Part F §3.4.4.2).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Iterates (attribute handle, value) (Core Vol 3 Part F §3.4.4.2).
    pub fn iter(&self) -> AttributeDataIter<'a> {
        AttributeDataIter { chunks: self.data.chunks_exact(usize::from(self.length.max(1))) }
    }
}

into_iterator!(AttributeDataList, AttributeDataIter, (u16, &'a [u8]));

/// Iterator over Read By Type Response pairs (Core Vol 3 Part F §3.4.4.2).
#[derive(Debug, Clone)]
pub struct AttributeDataIter<'a> {
    chunks: ChunksExact<'a, u8>,
}

impl<'a> Iterator for AttributeDataIter<'a> {
    type Item = (u16, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        split_u16(self.chunks.next()?)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

exact_and_fused!(AttributeDataIter);

/// Read By Group Type Response data: equal-length (handle, end group handle, value) records
/// (Core Vol 3 Part F §3.4.4.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupDataList<'a> {
    length: u8,
    data: &'a [u8],
}

impl<'a> GroupDataList<'a> {
    /// Validates `length` (4..=255, handles included) and `data` as whole records (Core Vol 3 Part F §3.4.4.10).
    pub fn new(length: u8, data: &'a [u8]) -> Result<Self, DecodeError> {
        Self::parse(length, data, WHAT_GROUP_DATA)
    }

    pub(crate) fn parse(length: u8, data: &'a [u8], what: &'static str) -> Result<Self, DecodeError> {
        if length < 4 {
            return Err(DecodeError::Invalid { what, reason: "length field is below 4" });
        }
        check_records(what, data, usize::from(length))?;
        Ok(Self { length, data })
    }

    /// The Length field: bytes per record, both handles included (Core Vol 3 Part F §3.4.4.10).
    pub fn length(&self) -> u8 {
        self.length
    }

    /// Bytes of each value: Length - 4 (Core Vol 3 Part F §3.4.4.10).
    pub fn value_len(&self) -> usize {
        usize::from(self.length).saturating_sub(4)
    }

    /// The raw records as on the wire (Core Vol 3 Part F §3.4.4.10).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.data
    }

    /// Number of records (Core Vol 3 Part F §3.4.4.10).
    pub fn len(&self) -> usize {
        self.data.len() / usize::from(self.length.max(1))
    }

    /// Whether there are no records; never true for a validated list (Core Vol 3 Part F §3.4.4.10).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Iterates (attribute handle, end group handle, value) (Core Vol 3 Part F §3.4.4.10).
    pub fn iter(&self) -> GroupDataIter<'a> {
        GroupDataIter { chunks: self.data.chunks_exact(usize::from(self.length.max(1))) }
    }
}

into_iterator!(GroupDataList, GroupDataIter, (u16, u16, &'a [u8]));

/// Iterator over Read By Group Type Response records (Core Vol 3 Part F §3.4.4.10).
#[derive(Debug, Clone)]
pub struct GroupDataIter<'a> {
    chunks: ChunksExact<'a, u8>,
}

impl<'a> Iterator for GroupDataIter<'a> {
    type Item = (u16, u16, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let (handle, rest) = split_u16(self.chunks.next()?)?;
        let (end, value) = split_u16(rest)?;
        Some((handle, end, value))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

exact_and_fused!(GroupDataIter);

/// Set of two or more handles of a Read Multiple (Variable) Request (Core Vol 3 Part F §3.4.4.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandleList<'a> {
    data: &'a [u8],
}

impl<'a> HandleList<'a> {
    /// Validates `data` as two or more little-endian handles (Core Vol 3 Part F §3.4.4.7).
    pub fn new(data: &'a [u8]) -> Result<Self, DecodeError> {
        Self::parse(data, WHAT_HANDLES)
    }

    pub(crate) fn parse(data: &'a [u8], what: &'static str) -> Result<Self, DecodeError> {
        if data.len() % 2 == 1 {
            return Err(DecodeError::Truncated { what, need: data.len() + 1, have: data.len() });
        }
        if data.len() < 4 {
            return Err(DecodeError::Invalid { what, reason: "fewer than two handles" });
        }
        Ok(Self { data })
    }

    /// The raw handles as on the wire (Core Vol 3 Part F §3.4.4.7).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.data
    }

    /// Number of handles (Core Vol 3 Part F §3.4.4.7).
    pub fn len(&self) -> usize {
        self.data.len() / 2
    }

    /// Whether there are no handles; never true for a validated list (Core Vol 3 Part F §3.4.4.7).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Iterates the handles in order (Core Vol 3 Part F §3.4.4.7).
    pub fn iter(&self) -> HandleIter<'a> {
        HandleIter { chunks: self.data.chunks_exact(2) }
    }
}

into_iterator!(HandleList, HandleIter, u16);

/// Iterator over a handle list (Core Vol 3 Part F §3.4.4.7).
#[derive(Debug, Clone)]
pub struct HandleIter<'a> {
    chunks: ChunksExact<'a, u8>,
}

impl Iterator for HandleIter<'_> {
    type Item = u16;
    fn next(&mut self) -> Option<Self::Item> {
        match *self.chunks.next()? {
            [a, b] => Some(le16([a, b])),
            _ => None,
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

exact_and_fused!(HandleIter);

/// Read Multiple Variable Response: (length, value) tuples, the last possibly cut short at
/// ATT_MTU - 1 (Core Vol 3 Part F §3.4.4.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LengthValueList<'a> {
    data: &'a [u8],
}

impl<'a> LengthValueList<'a> {
    /// Validates `data` as at least one length field; any cut after it is truncation (Core Vol 3 Part F §3.4.4.12).
    pub fn new(data: &'a [u8]) -> Result<Self, DecodeError> {
        Self::parse(data, WHAT_LENGTH_VALUE)
    }

    pub(crate) fn parse(data: &'a [u8], what: &'static str) -> Result<Self, DecodeError> {
        if data.len() < 2 {
            return Err(DecodeError::Truncated { what, need: 2, have: data.len() });
        }
        Ok(Self { data })
    }

    /// The raw tuples as on the wire (Core Vol 3 Part F §3.4.4.12).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.data
    }

    /// Whether the tuples were cut short: the last value is shorter than its length field says,
    /// or a length field is incomplete (Core Vol 3 Part F §3.4.4.12).
    pub fn is_truncated(&self) -> bool {
        let mut rest = self.data;
        while let Some((len, tail)) = split_u16(rest) {
            match tail.split_at_checked(usize::from(len)) {
                Some((_, next)) => rest = next,
                None => return true,
            }
        }
        !rest.is_empty()
    }

    /// Iterates the values, the last one possibly truncated (Core Vol 3 Part F §3.4.4.12).
    pub fn iter(&self) -> LengthValueIter<'a> {
        LengthValueIter { rest: self.data }
    }
}

into_iterator!(LengthValueList, LengthValueIter, &'a [u8]);

/// Iterator over Read Multiple Variable Response values (Core Vol 3 Part F §3.4.4.12).
#[derive(Debug, Clone)]
pub struct LengthValueIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for LengthValueIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<Self::Item> {
        let Some((len, tail)) = split_u16(self.rest) else {
            self.rest = &[];
            return None;
        };
        let (value, next) = tail.split_at_checked(usize::from(len)).unwrap_or((tail, &[]));
        self.rest = next;
        Some(value)
    }
}

impl FusedIterator for LengthValueIter<'_> {}

/// Multiple Handle Value Notification: whole (handle, length, value) tuples (Core Vol 3 Part F §3.4.7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandleValueList<'a> {
    data: &'a [u8],
}

impl<'a> HandleValueList<'a> {
    /// Validates `data` as one or more complete tuples (Core Vol 3 Part F §3.4.7.4).
    pub fn new(data: &'a [u8]) -> Result<Self, DecodeError> {
        Self::parse(data, WHAT_HANDLE_VALUE)
    }

    pub(crate) fn parse(data: &'a [u8], what: &'static str) -> Result<Self, DecodeError> {
        if data.is_empty() {
            return Err(DecodeError::Truncated { what, need: 4, have: 0 });
        }
        let mut rest = data;
        while !rest.is_empty() {
            let Some((header, tail)) = rest.split_first_chunk::<4>() else {
                return Err(DecodeError::Truncated { what, need: 4, have: rest.len() });
            };
            let [_, _, l0, l1] = *header;
            let len = usize::from(le16([l0, l1]));
            match tail.split_at_checked(len) {
                Some((_, next)) => rest = next,
                None => return Err(DecodeError::Truncated { what, need: 4 + len, have: rest.len() }),
            }
        }
        Ok(Self { data })
    }

    /// The raw tuples as on the wire (Core Vol 3 Part F §3.4.7.4).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.data
    }

    /// Iterates (handle, length, value); length always equals `value.len()` (Core Vol 3 Part F §3.4.7.4).
    pub fn iter(&self) -> HandleValueIter<'a> {
        HandleValueIter { rest: self.data }
    }
}

into_iterator!(HandleValueList, HandleValueIter, (u16, u16, &'a [u8]));

/// Iterator over Multiple Handle Value Notification tuples (Core Vol 3 Part F §3.4.7.4).
#[derive(Debug, Clone)]
pub struct HandleValueIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for HandleValueIter<'a> {
    type Item = (u16, u16, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let parsed = split_u16(self.rest).and_then(|(handle, tail)| {
            let (len, tail) = split_u16(tail)?;
            let (value, next) = tail.split_at_checked(usize::from(len))?;
            Some((handle, len, value, next))
        });
        match parsed {
            Some((handle, len, value, next)) => {
                self.rest = next;
                Some((handle, len, value))
            }
            None => {
                self.rest = &[];
                None
            }
        }
    }
}

impl FusedIterator for HandleValueIter<'_> {}
