//! Building list PDUs record by record within an ATT_MTU (Core Vol 3 Part F §3.4).

use super::list::InformationFormat;
use super::opcode;
use crate::codec::Writer;
use crate::uuid::Uuid;
use alloc::vec::Vec;

/// Which list PDU a [`ListBuilder`] builds (Core Vol 3 Part F §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// Find Information Response, records via [`ListBuilder::push_information`] (Core Vol 3 Part F §3.4.3.2).
    FindInformationRsp,
    /// Find By Type Value Response, records via [`ListBuilder::push_handles_information`] (Core Vol 3 Part F §3.4.3.4).
    FindByTypeValueRsp,
    /// Read By Type Response, records via [`ListBuilder::push_attribute`] (Core Vol 3 Part F §3.4.4.2).
    ReadByTypeRsp,
    /// Read By Group Type Response, records via [`ListBuilder::push_group`] (Core Vol 3 Part F §3.4.4.10).
    ReadByGroupTypeRsp,
    /// Read Multiple Request, records via [`ListBuilder::push_handle`] (Core Vol 3 Part F §3.4.4.7).
    ReadMultipleReq,
    /// Read Multiple Variable Request, records via [`ListBuilder::push_handle`] (Core Vol 3 Part F §3.4.4.11).
    ReadMultipleVariableReq,
    /// Read Multiple Variable Response, records via [`ListBuilder::push_value`] (Core Vol 3 Part F §3.4.4.12).
    ReadMultipleVariableRsp,
    /// Multiple Handle Value Notification, records via [`ListBuilder::push_handle_value`] (Core Vol 3 Part F §3.4.7.4).
    MultipleHandleValueNtf,
}

impl ListKind {
    /// The opcode of the PDU being built (Core Vol 3 Part F §3.4.8).
    pub const fn opcode(self) -> u8 {
        match self {
            Self::FindInformationRsp => opcode::FIND_INFORMATION_RSP,
            Self::FindByTypeValueRsp => opcode::FIND_BY_TYPE_VALUE_RSP,
            Self::ReadByTypeRsp => opcode::READ_BY_TYPE_RSP,
            Self::ReadByGroupTypeRsp => opcode::READ_BY_GROUP_TYPE_RSP,
            Self::ReadMultipleReq => opcode::READ_MULTIPLE_REQ,
            Self::ReadMultipleVariableReq => opcode::READ_MULTIPLE_VARIABLE_REQ,
            Self::ReadMultipleVariableRsp => opcode::READ_MULTIPLE_VARIABLE_RSP,
            Self::MultipleHandleValueNtf => opcode::MULTIPLE_HANDLE_VALUE_NTF,
        }
    }

    /// Opcode plus the format/length byte where the PDU has one.
    const fn header_len(self) -> usize {
        match self {
            Self::FindInformationRsp | Self::ReadByTypeRsp | Self::ReadByGroupTypeRsp => 2,
            _ => 1,
        }
    }

    /// Fewest records for a valid PDU.
    const fn min_records(self) -> usize {
        match self {
            Self::ReadMultipleReq | Self::ReadMultipleVariableReq => 2,
            _ => 1,
        }
    }
}

/// Appends a list PDU to a buffer record by record, refusing records that would not fit in the
/// ATT_MTU or that differ in length or format from the first one (Core Vol 3 Part F §3.4).
///
/// Start with [`ListBuilder::new`], push records until one is refused, then call
/// [`ListBuilder::finish`]. Nothing allocates when the buffer already has `mtu` bytes spare.
#[derive(Debug)]
pub struct ListBuilder<'o> {
    out: &'o mut Vec<u8>,
    start: usize,
    mtu: usize,
    kind: ListKind,
    record_len: usize,
    records: usize,
    full: bool,
}

impl<'o> ListBuilder<'o> {
    /// Starts a `kind` PDU of at most `mtu` bytes at the end of `out` (Core Vol 3 Part F §3.4).
    pub fn new(kind: ListKind, mtu: u16, out: &'o mut Vec<u8>) -> Self {
        let start = out.len();
        out.put_u8(kind.opcode());
        if kind.header_len() == 2 {
            out.put_u8(0);
        }
        Self { out, start, mtu: usize::from(mtu), kind, record_len: 0, records: 0, full: false }
    }

    /// The PDU being built (Core Vol 3 Part F §3.4).
    pub fn kind(&self) -> ListKind {
        self.kind
    }

    /// Records pushed so far (Core Vol 3 Part F §3.4).
    pub fn records(&self) -> usize {
        self.records
    }

    /// Bytes of the PDU so far, opcode included (Core Vol 3 Part F §3.4).
    pub fn len(&self) -> usize {
        self.out.len().saturating_sub(self.start)
    }

    /// Whether no record has been pushed yet (Core Vol 3 Part F §3.4).
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Bytes left before the PDU reaches the ATT_MTU (Core Vol 3 Part F §3.4).
    pub fn remaining(&self) -> usize {
        self.mtu.saturating_sub(self.len())
    }

    /// Starts a record of `rec_len` bytes if it fits and matches the earlier ones; writes the
    /// format/length byte with the first record.
    fn admit(&mut self, kind: ListKind, rec_len: usize, header: Option<u8>) -> bool {
        if self.kind != kind || self.full || (self.records > 0 && rec_len != self.record_len) {
            return false;
        }
        if rec_len > self.remaining() {
            return false;
        }
        if self.records == 0 {
            self.record_len = rec_len;
            if let (Some(h), Some(slot)) = (header, self.out.get_mut(self.start + 1)) {
                *slot = h;
            }
        }
        self.records += 1;
        true
    }

    /// Adds a (handle, UUID) pair, 16-bit when the UUID has a 16-bit form (Core Vol 3 Part F §3.4.3.2).
    #[must_use = "false means the pair was not added"]
    pub fn push_information(&mut self, handle: u16, uuid: Uuid) -> bool {
        let short = uuid.shortest();
        let format = match short {
            Uuid::U16(_) => InformationFormat::Uuid16,
            _ => InformationFormat::Uuid128,
        };
        if !self.admit(ListKind::FindInformationRsp, format.record_len(), Some(format.as_u8())) {
            return false;
        }
        self.out.put_u16(handle);
        match short {
            Uuid::U16(v) => self.out.put_u16(v),
            other => self.out.put(&other.to_u128_le()),
        }
        true
    }

    /// Adds a (found attribute handle, group end handle) pair (Core Vol 3 Part F §3.4.3.4).
    #[must_use = "false means the pair was not added"]
    pub fn push_handles_information(&mut self, found: u16, group_end: u16) -> bool {
        if !self.admit(ListKind::FindByTypeValueRsp, 4, None) {
            return false;
        }
        self.out.put_u16(found);
        self.out.put_u16(group_end);
        true
    }

    /// Adds a (handle, value) pair, the value cut to min(ATT_MTU - 4, 253) bytes; refused if its
    /// (cut) length differs from the first pair's (Core Vol 3 Part F §3.4.4.2).
    #[must_use = "false means the pair was not added"]
    pub fn push_attribute(&mut self, handle: u16, value: &[u8]) -> bool {
        let cap = self.mtu.saturating_sub(4).min(253);
        let value = value.get(..cap).unwrap_or(value);
        let rec_len = 2 + value.len();
        if !self.admit(ListKind::ReadByTypeRsp, rec_len, u8::try_from(rec_len).ok()) {
            return false;
        }
        self.out.put_u16(handle);
        self.out.put(value);
        true
    }

    /// Adds a (handle, end group handle, value) record, the value cut to min(ATT_MTU - 6, 251)
    /// bytes; refused if its (cut) length differs from the first record's (Core Vol 3 Part F §3.4.4.10).
    #[must_use = "false means the record was not added"]
    pub fn push_group(&mut self, handle: u16, end_group: u16, value: &[u8]) -> bool {
        let cap = self.mtu.saturating_sub(6).min(251);
        let value = value.get(..cap).unwrap_or(value);
        let rec_len = 4 + value.len();
        if !self.admit(ListKind::ReadByGroupTypeRsp, rec_len, u8::try_from(rec_len).ok()) {
            return false;
        }
        self.out.put_u16(handle);
        self.out.put_u16(end_group);
        self.out.put(value);
        true
    }

    /// Adds a handle to a Read Multiple (Variable) Request (Core Vol 3 Part F §3.4.4.7, §3.4.4.11).
    #[must_use = "false means the handle was not added"]
    pub fn push_handle(&mut self, handle: u16) -> bool {
        let kind = match self.kind {
            ListKind::ReadMultipleVariableReq => ListKind::ReadMultipleVariableReq,
            _ => ListKind::ReadMultipleReq,
        };
        if !self.admit(kind, 2, None) {
            return false;
        }
        self.out.put_u16(handle);
        true
    }

    /// Adds a (length, value) tuple; past ATT_MTU - 1 bytes the list is cut mid-tuple as the spec
    /// requires and the builder is then full. True only if the whole tuple went in (Core Vol 3 Part F §3.4.4.12).
    #[must_use = "false means the value was cut or not added"]
    pub fn push_value(&mut self, value: &[u8]) -> bool {
        if self.kind != ListKind::ReadMultipleVariableRsp || self.full {
            return false;
        }
        let room = self.remaining();
        if room == 0 {
            self.full = true;
            return false;
        }
        let value = value.get(..usize::from(u16::MAX)).unwrap_or(value);
        let len = u16::try_from(value.len()).unwrap_or(u16::MAX).to_le_bytes();
        self.records += 1;
        let whole = 2 + value.len() <= room;
        let cut_len = len.get(..room).unwrap_or(&len);
        self.out.put(cut_len);
        let value_room = room.saturating_sub(cut_len.len());
        self.out.put(value.get(..value_room).unwrap_or(value));
        if !whole {
            self.full = true;
        }
        whole
    }

    /// Adds a whole (handle, length, value) tuple if it fits (Core Vol 3 Part F §3.4.7.4).
    #[must_use = "false means the tuple was not added"]
    pub fn push_handle_value(&mut self, handle: u16, value: &[u8]) -> bool {
        let Ok(len) = u16::try_from(value.len()) else {
            return false;
        };
        if self.kind != ListKind::MultipleHandleValueNtf || 4 + value.len() > self.remaining() {
            return false;
        }
        self.records += 1;
        self.out.put_u16(handle);
        self.out.put_u16(len);
        self.out.put(value);
        true
    }

    /// Ends the PDU and returns its length, or removes it and returns `None` when it holds too
    /// few records to be valid (Core Vol 3 Part F §3.4).
    pub fn finish(self) -> Option<usize> {
        if self.records < self.kind.min_records() {
            self.out.truncate(self.start);
            None
        } else {
            Some(self.len())
        }
    }
}
