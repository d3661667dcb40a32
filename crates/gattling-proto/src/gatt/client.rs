//! GATT client procedures (Core Vol 3 Part G §4) as sans-IO state machines: each procedure
//! gives the next request to send and takes the server's answer, until it is done. The caller
//! keeps one request outstanding per bearer (Core Vol 3 Part F §3.3.2).
//!
//! Every answer is checked: the wrong PDU, a malformed one, handles outside the requested range,
//! a discovery that does not advance, or a value longer than 512 bytes end the procedure with a
//! typed [`ClientError`].

use crate::att::{opcode, AttPdu, ErrorCode, ExecuteWriteFlags, HandleList};
use crate::codec::DecodeError;
use crate::gatt::db::MAX_VALUE_LEN;
use crate::gatt::uuids;
use crate::uuid::{self, Uuid};
use alloc::vec::Vec;

/// Why a procedure failed.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an ATT error.
    #[error("ATT error {code} on handle {handle:#06x} (request {request:#04x})")]
    Att {
        /// Opcode of the request.
        request: u8,
        /// Handle the error names.
        handle: u16,
        /// Error code.
        code: ErrorCode,
    },
    /// The server answered with a PDU that does not answer the request.
    #[error("unexpected ATT PDU {got:#04x} in answer to request {request:#04x}")]
    Unexpected {
        /// Opcode of the request.
        request: u8,
        /// Opcode received.
        got: u8,
    },
    /// The answer could not be decoded.
    #[error("malformed answer: {0}")]
    Malformed(DecodeError),
    /// The answer names a handle outside the requested range.
    #[error("handle {handle:#06x} is outside the requested range {start:#06x}-{end:#06x}")]
    OutOfRange {
        /// The handle received.
        handle: u16,
        /// Range start.
        start: u16,
        /// Range end.
        end: u16,
    },
    /// A discovery answer did not move past the previous one (it would loop forever).
    #[error("discovery did not advance past handle {0:#06x}")]
    NoProgress(u16),
    /// An attribute value longer than the 512 bytes ATT allows.
    #[error("attribute value longer than 512 bytes ({0})")]
    ValueTooLong(usize),
    /// A prepared write came back different from what was sent (reliable write); the queue was
    /// cancelled.
    #[error("prepared write to {handle:#06x} at offset {offset} was echoed wrongly; the queue was cancelled")]
    EchoMismatch {
        /// Handle.
        handle: u16,
        /// Offset of the chunk.
        offset: u16,
    },
}

/// What a procedure wants next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<T> {
    /// Send this request and pass its answer to `on_response`.
    Send(Vec<u8>),
    /// The procedure is complete.
    Done(T),
}

/// A GATT client procedure.
pub trait Procedure {
    /// Its result.
    type Output;
    /// The first request.
    fn start(&mut self) -> Step<Self::Output>;
    /// Takes the answer to the last request.
    fn on_response(&mut self, pdu: &[u8]) -> Result<Step<Self::Output>, ClientError>;
}

/// Decodes `pdu`, turning an Error Response to `request` into [`ClientError::Att`] and any PDU
/// other than `expected` into [`ClientError::Unexpected`].
fn answer(pdu: &[u8], request: u8, expected: u8) -> Result<AttPdu<'_>, ClientError> {
    let p = AttPdu::decode(pdu).map_err(ClientError::Malformed)?;
    match p {
        AttPdu::ErrorRsp { request_opcode, handle, error } if request_opcode == request => {
            Err(ClientError::Att { request, handle, code: error })
        }
        p if p.opcode() == expected => Ok(p),
        p => Err(ClientError::Unexpected { request, got: p.opcode() }),
    }
}

fn op_of(pdu: &[u8]) -> u8 {
    pdu.first().copied().unwrap_or(0)
}

/// A Read By Type Request for `attribute_type` over `start..=end`, the type in its shortest
/// wire form (Core Vol 3 Part F §3.4.4.1).
fn read_by_type(start: u16, end: u16, attribute_type: Uuid) -> Vec<u8> {
    AttPdu::ReadByTypeReq { start, end, attribute_type: attribute_type.shortest_wire() }.to_vec()
}

/// An Execute Write Request (Core Vol 3 Part F §3.4.6.3).
fn execute(flags: ExecuteWriteFlags) -> Vec<u8> {
    AttPdu::ExecuteWriteReq { flags }.to_vec()
}

fn in_range(handle: u16, start: u16, end: u16) -> Result<(), ClientError> {
    if handle < start || handle > end {
        return Err(ClientError::OutOfRange { handle, start, end });
    }
    Ok(())
}

/// Exchange MTU (§4.3.1): offers our receive MTU; the output is the server's.
#[derive(Debug)]
pub struct ExchangeMtu(pub u16);

impl Procedure for ExchangeMtu {
    type Output = u16;
    fn start(&mut self) -> Step<u16> {
        Step::Send(AttPdu::ExchangeMtuReq { client_rx_mtu: self.0 }.to_vec())
    }
    fn on_response(&mut self, pdu: &[u8]) -> Result<Step<u16>, ClientError> {
        match answer(pdu, opcode::EXCHANGE_MTU_REQ, opcode::EXCHANGE_MTU_RSP)? {
            AttPdu::ExchangeMtuRsp { server_rx_mtu } => Ok(Step::Done(server_rx_mtu)),
            _ => Err(ClientError::Unexpected { request: opcode::EXCHANGE_MTU_REQ, got: op_of(pdu) }),
        }
    }
}

/// A discovered service.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ServiceInfo {
    /// Declaration handle.
    pub start: u16,
    /// Last handle.
    pub end: u16,
    /// Service UUID.
    pub uuid: Uuid,
}

/// Discover All Primary Services (§4.4.1) or Discover Primary Service by UUID (§4.4.2).
#[derive(Debug)]
pub struct DiscoverServices {
    uuid: Option<Uuid>,
    start: u16,
    found: Vec<ServiceInfo>,
}

impl DiscoverServices {
    /// All primary services.
    pub fn all() -> Self {
        Self { uuid: None, start: 1, found: Vec::new() }
    }

    /// Primary services with this UUID.
    pub fn by_uuid(uuid: Uuid) -> Self {
        Self { uuid: Some(uuid), start: 1, found: Vec::new() }
    }

    fn request(&self) -> Vec<u8> {
        let (start, end) = (self.start, 0xFFFF);
        match self.uuid {
            None => AttPdu::ReadByGroupTypeReq { start, end, group_type: Uuid::U16(uuids::PRIMARY_SERVICE) }.to_vec(),
            Some(u) => {
                let mut value = Vec::with_capacity(16);
                u.shortest_wire().write_le(&mut value);
                AttPdu::FindByTypeValueReq { start, end, attribute_type: uuids::PRIMARY_SERVICE, value: &value }
                    .to_vec()
            }
        }
    }
}

impl Procedure for DiscoverServices {
    type Output = Vec<ServiceInfo>;
    fn start(&mut self) -> Step<Self::Output> {
        Step::Send(self.request())
    }
    fn on_response(&mut self, pdu: &[u8]) -> Result<Step<Self::Output>, ClientError> {
        let (request, expected) = match self.uuid {
            None => (opcode::READ_BY_GROUP_TYPE_REQ, opcode::READ_BY_GROUP_TYPE_RSP),
            Some(_) => (opcode::FIND_BY_TYPE_VALUE_REQ, opcode::FIND_BY_TYPE_VALUE_RSP),
        };
        let mut last_end = 0u16;
        match answer(pdu, request, expected) {
            Err(ClientError::Att { code: ErrorCode::ATTRIBUTE_NOT_FOUND, .. }) => {
                return Ok(Step::Done(core::mem::take(&mut self.found)))
            }
            Err(e) => return Err(e),
            Ok(AttPdu::ReadByGroupTypeRsp { data }) => {
                for (start, end, value) in data.iter() {
                    in_range(start, self.start, 0xFFFF)?;
                    let uuid = Uuid::from_le_bytes(value).map_err(ClientError::Malformed)?;
                    if end < start {
                        return Err(ClientError::OutOfRange { handle: end, start, end: 0xFFFF });
                    }
                    self.found.push(ServiceInfo { start, end, uuid });
                    last_end = end;
                }
            }
            Ok(AttPdu::FindByTypeValueRsp { data }) => {
                for (start, end) in data.iter() {
                    in_range(start, self.start, 0xFFFF)?;
                    let uuid = self.uuid.unwrap_or(Uuid::U16(0));
                    self.found.push(ServiceInfo { start, end: end.max(start), uuid });
                    last_end = end.max(start);
                }
            }
            Ok(_) => return Err(ClientError::Unexpected { request, got: op_of(pdu) }),
        }
        if last_end < self.start {
            return Err(ClientError::NoProgress(self.start));
        }
        if last_end == 0xFFFF {
            return Ok(Step::Done(core::mem::take(&mut self.found)));
        }
        self.start = last_end + 1;
        Ok(Step::Send(self.request()))
    }
}

/// An included service (§4.5.1).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IncludeInfo {
    /// Handle of the include declaration.
    pub handle: u16,
    /// Included service's declaration handle.
    pub start: u16,
    /// Included service's last handle.
    pub end: u16,
    /// Included service's UUID (read from its declaration when it is 128-bit).
    pub uuid: Uuid,
}

/// Find Included Services (§4.5.1), reading 128-bit included service UUIDs with Read Requests.
#[derive(Debug)]
pub struct FindIncludedServices {
    next: u16,
    end: u16,
    scanned: bool,
    found: Vec<IncludeInfo>,
    reading: Option<usize>,
}

impl FindIncludedServices {
    /// Included services within a service's handle range.
    pub fn new(start: u16, end: u16) -> Self {
        Self { next: start, end, scanned: start > end, found: Vec::new(), reading: None }
    }

    fn next_step(&mut self) -> Step<Vec<IncludeInfo>> {
        if !self.scanned {
            return Step::Send(read_by_type(self.next, self.end, Uuid::U16(uuids::INCLUDE)));
        }
        // Then read the UUID of each include that arrived without one (128-bit services).
        if let Some((i, f)) = self.found.iter().enumerate().find(|(_, f)| f.uuid == Uuid::U16(0)) {
            let start = f.start;
            self.reading = Some(i);
            return Step::Send(AttPdu::ReadReq { handle: start }.to_vec());
        }
        Step::Done(core::mem::take(&mut self.found))
    }
}

impl Procedure for FindIncludedServices {
    type Output = Vec<IncludeInfo>;
    fn start(&mut self) -> Step<Self::Output> {
        self.next_step()
    }
    fn on_response(&mut self, pdu: &[u8]) -> Result<Step<Self::Output>, ClientError> {
        if let Some(i) = self.reading.take() {
            let AttPdu::ReadRsp { value } = answer(pdu, opcode::READ_REQ, opcode::READ_RSP)? else {
                return Err(ClientError::Unexpected { request: opcode::READ_REQ, got: op_of(pdu) });
            };
            if value.len() != 16 {
                return Err(ClientError::Malformed(DecodeError::Invalid {
                    what: "included service declaration",
                    reason: "a 128-bit service UUID was expected",
                }));
            }
            let uuid = Uuid::from_le_bytes(value).map_err(ClientError::Malformed)?;
            if let Some(f) = self.found.get_mut(i) {
                f.uuid = uuid;
            }
            return Ok(self.next_step());
        }
        match answer(pdu, opcode::READ_BY_TYPE_REQ, opcode::READ_BY_TYPE_RSP) {
            Err(ClientError::Att { code: ErrorCode::ATTRIBUTE_NOT_FOUND, .. }) => {
                self.scanned = true;
                Ok(self.next_step())
            }
            Err(e) => Err(e),
            Ok(AttPdu::ReadByTypeRsp { data }) => {
                let mut last = 0;
                for (handle, value) in data.iter() {
                    in_range(handle, self.next, self.end)?;
                    let (start, end, uuid) = match *value {
                        [a, b, c, d] => (u16::from_le_bytes([a, b]), u16::from_le_bytes([c, d]), Uuid::U16(0)),
                        [a, b, c, d, e, f] => (
                            u16::from_le_bytes([a, b]),
                            u16::from_le_bytes([c, d]),
                            Uuid::U16(u16::from_le_bytes([e, f])),
                        ),
                        _ => {
                            return Err(ClientError::Malformed(DecodeError::Invalid {
                                what: "include declaration",
                                reason: "value is not 4 or 6 bytes",
                            }))
                        }
                    };
                    self.found.push(IncludeInfo { handle, start, end, uuid });
                    last = handle;
                }
                if last < self.next {
                    return Err(ClientError::NoProgress(self.next));
                }
                if last >= self.end {
                    self.scanned = true;
                } else {
                    self.next = last + 1;
                }
                Ok(self.next_step())
            }
            Ok(_) => Err(ClientError::Unexpected { request: opcode::READ_BY_TYPE_REQ, got: op_of(pdu) }),
        }
    }
}

/// A discovered characteristic (§4.6).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CharacteristicInfo {
    /// Declaration handle.
    pub handle: u16,
    /// Properties.
    pub properties: u8,
    /// Value handle.
    pub value_handle: u16,
    /// UUID.
    pub uuid: Uuid,
    /// Last handle of the characteristic (before the next declaration or the service end).
    pub end_handle: u16,
}

/// Discover All Characteristics of a Service (§4.6.1) or Discover Characteristics by UUID (§4.6.2).
#[derive(Debug)]
pub struct DiscoverCharacteristics {
    next: u16,
    end: u16,
    filter: Option<Uuid>,
    found: Vec<CharacteristicInfo>,
}

impl DiscoverCharacteristics {
    /// All characteristics in `start..=end`, optionally only those with `filter`'s UUID.
    pub fn new(start: u16, end: u16, filter: Option<Uuid>) -> Self {
        Self { next: start, end, filter, found: Vec::new() }
    }

    fn done(&mut self) -> Step<Vec<CharacteristicInfo>> {
        let mut all = core::mem::take(&mut self.found);
        let ends: Vec<u16> =
            all.iter().skip(1).map(|c| c.handle.saturating_sub(1)).chain(core::iter::once(self.end)).collect();
        for (c, e) in all.iter_mut().zip(ends) {
            c.end_handle = e;
        }
        if let Some(f) = self.filter {
            all.retain(|c| uuid::same(&c.uuid, &f));
        }
        Step::Done(all)
    }
}

impl Procedure for DiscoverCharacteristics {
    type Output = Vec<CharacteristicInfo>;
    fn start(&mut self) -> Step<Self::Output> {
        if self.next > self.end {
            return self.done();
        }
        Step::Send(read_by_type(self.next, self.end, Uuid::U16(uuids::CHARACTERISTIC)))
    }
    fn on_response(&mut self, pdu: &[u8]) -> Result<Step<Self::Output>, ClientError> {
        match answer(pdu, opcode::READ_BY_TYPE_REQ, opcode::READ_BY_TYPE_RSP) {
            Err(ClientError::Att { code: ErrorCode::ATTRIBUTE_NOT_FOUND, .. }) => Ok(self.done()),
            Err(e) => Err(e),
            Ok(AttPdu::ReadByTypeRsp { data }) => {
                let mut last = 0;
                for (handle, value) in data.iter() {
                    in_range(handle, self.next, self.end)?;
                    let (&properties, rest) =
                        value.split_first().ok_or(ClientError::Malformed(DecodeError::Truncated {
                            what: "characteristic declaration",
                            need: 5,
                            have: 0,
                        }))?;
                    let (vh, u) = rest.split_at_checked(2).ok_or(ClientError::Malformed(DecodeError::Truncated {
                        what: "characteristic declaration",
                        need: 5,
                        have: value.len(),
                    }))?;
                    let value_handle = match *vh {
                        [a, b] => u16::from_le_bytes([a, b]),
                        _ => 0,
                    };
                    let uuid = Uuid::from_le_bytes(u).map_err(ClientError::Malformed)?;
                    self.found.push(CharacteristicInfo { handle, properties, value_handle, uuid, end_handle: 0 });
                    last = handle;
                }
                if last < self.next {
                    return Err(ClientError::NoProgress(self.next));
                }
                if last >= self.end {
                    return Ok(self.done());
                }
                self.next = last + 1;
                Ok(Step::Send(read_by_type(self.next, self.end, Uuid::U16(uuids::CHARACTERISTIC))))
            }
            Ok(_) => Err(ClientError::Unexpected { request: opcode::READ_BY_TYPE_REQ, got: op_of(pdu) }),
        }
    }
}

/// A discovered descriptor (§4.7.1).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DescriptorInfo {
    /// Handle.
    pub handle: u16,
    /// Descriptor type.
    pub uuid: Uuid,
}

/// Discover All Characteristic Descriptors (§4.7.1) in `start..=end` (after a value handle).
#[derive(Debug)]
pub struct DiscoverDescriptors {
    next: u16,
    end: u16,
    found: Vec<DescriptorInfo>,
}

impl DiscoverDescriptors {
    /// Descriptors in `start..=end`.
    pub fn new(start: u16, end: u16) -> Self {
        Self { next: start, end, found: Vec::new() }
    }
}

impl Procedure for DiscoverDescriptors {
    type Output = Vec<DescriptorInfo>;
    fn start(&mut self) -> Step<Self::Output> {
        if self.next > self.end || self.next == 0 {
            return Step::Done(Vec::new());
        }
        Step::Send(AttPdu::FindInformationReq { start: self.next, end: self.end }.to_vec())
    }
    fn on_response(&mut self, pdu: &[u8]) -> Result<Step<Self::Output>, ClientError> {
        match answer(pdu, opcode::FIND_INFORMATION_REQ, opcode::FIND_INFORMATION_RSP) {
            Err(ClientError::Att { code: ErrorCode::ATTRIBUTE_NOT_FOUND, .. }) => {
                Ok(Step::Done(core::mem::take(&mut self.found)))
            }
            Err(e) => Err(e),
            Ok(AttPdu::FindInformationRsp { data }) => {
                let mut last = 0;
                for (handle, uuid) in data.iter() {
                    in_range(handle, self.next, self.end)?;
                    self.found.push(DescriptorInfo { handle, uuid });
                    last = handle;
                }
                if last < self.next {
                    return Err(ClientError::NoProgress(self.next));
                }
                if last >= self.end {
                    return Ok(Step::Done(core::mem::take(&mut self.found)));
                }
                self.next = last + 1;
                Ok(Step::Send(AttPdu::FindInformationReq { start: self.next, end: self.end }.to_vec()))
            }
            Ok(_) => Err(ClientError::Unexpected { request: opcode::FIND_INFORMATION_REQ, got: op_of(pdu) }),
        }
    }
}

/// Read (§4.8.1), and with `long` Read Long Characteristic Values (§4.8.3): Read Blob while the
/// answer fills the MTU.
#[derive(Debug)]
pub struct Read {
    handle: u16,
    mtu: u16,
    long: bool,
    value: Vec<u8>,
}

impl Read {
    /// Reads `handle`; with `long`, continues with Read Blob requests at ATT_MTU `mtu`.
    pub fn new(handle: u16, mtu: u16, long: bool) -> Self {
        Self { handle, mtu: mtu.max(23), long, value: Vec::new() }
    }
}

impl Procedure for Read {
    type Output = Vec<u8>;
    fn start(&mut self) -> Step<Vec<u8>> {
        Step::Send(AttPdu::ReadReq { handle: self.handle }.to_vec())
    }
    fn on_response(&mut self, pdu: &[u8]) -> Result<Step<Vec<u8>>, ClientError> {
        let blob = !self.value.is_empty();
        let (request, expected) =
            if blob { (opcode::READ_BLOB_REQ, opcode::READ_BLOB_RSP) } else { (opcode::READ_REQ, opcode::READ_RSP) };
        let part = match answer(pdu, request, expected) {
            Ok(AttPdu::ReadRsp { value }) | Ok(AttPdu::ReadBlobRsp { value }) => value,
            // The server has no more: the value ended exactly at the previous part.
            Err(ClientError::Att { code: ErrorCode::ATTRIBUTE_NOT_LONG | ErrorCode::INVALID_OFFSET, .. }) if blob => {
                return Ok(Step::Done(core::mem::take(&mut self.value)))
            }
            Err(e) => return Err(e),
            Ok(_) => return Err(ClientError::Unexpected { request, got: op_of(pdu) }),
        };
        self.value.extend_from_slice(part);
        if self.value.len() > MAX_VALUE_LEN {
            return Err(ClientError::ValueTooLong(self.value.len()));
        }
        let full = part.len() == self.mtu as usize - 1;
        if self.long && full && !part.is_empty() && self.value.len() < MAX_VALUE_LEN {
            let offset = self.value.len() as u16;
            return Ok(Step::Send(AttPdu::ReadBlobReq { handle: self.handle, offset }.to_vec()));
        }
        Ok(Step::Done(core::mem::take(&mut self.value)))
    }
}

/// Read Using Characteristic UUID (§4.8.2): (handle, value) pairs. Read By Type Requests
/// continue from the last handle + 1 until the end of the range; Attribute Not Found on a later
/// request ends the procedure with what was collected (on the first it is an error).
#[derive(Debug)]
pub struct ReadByUuid {
    next: u16,
    end: u16,
    uuid: Uuid,
    first: bool,
    found: Vec<(u16, Vec<u8>)>,
}

impl ReadByUuid {
    /// Values of characteristics with `uuid` in `start..=end`.
    pub fn new(start: u16, end: u16, uuid: Uuid) -> Self {
        Self { next: start, end, uuid, first: true, found: Vec::new() }
    }

    fn request(&self) -> Vec<u8> {
        read_by_type(self.next, self.end, self.uuid)
    }
}

impl Procedure for ReadByUuid {
    type Output = Vec<(u16, Vec<u8>)>;
    fn start(&mut self) -> Step<Self::Output> {
        Step::Send(self.request())
    }
    fn on_response(&mut self, pdu: &[u8]) -> Result<Step<Self::Output>, ClientError> {
        let first = core::mem::replace(&mut self.first, false);
        match answer(pdu, opcode::READ_BY_TYPE_REQ, opcode::READ_BY_TYPE_RSP) {
            Err(ClientError::Att { code: ErrorCode::ATTRIBUTE_NOT_FOUND, .. }) if !first => {
                Ok(Step::Done(core::mem::take(&mut self.found)))
            }
            Err(e) => Err(e),
            Ok(AttPdu::ReadByTypeRsp { data }) => {
                let mut last = 0;
                for (h, v) in data.iter() {
                    in_range(h, self.next, self.end)?;
                    self.found.push((h, v.to_vec()));
                    last = h;
                }
                if last < self.next {
                    return Err(ClientError::NoProgress(self.next));
                }
                if last >= self.end || last == 0xFFFF {
                    return Ok(Step::Done(core::mem::take(&mut self.found)));
                }
                self.next = last + 1;
                Ok(Step::Send(self.request()))
            }
            Ok(_) => Err(ClientError::Unexpected { request: opcode::READ_BY_TYPE_REQ, got: op_of(pdu) }),
        }
    }
}

/// Read Multiple (§4.8.4) or Read Multiple Variable (§4.8.5).
#[derive(Debug)]
pub struct ReadMultiple {
    handles: Vec<u16>,
    variable: bool,
}

impl ReadMultiple {
    /// Reads several handles in one request.
    pub fn new(handles: &[u16], variable: bool) -> Self {
        Self { handles: handles.to_vec(), variable }
    }
}

impl Procedure for ReadMultiple {
    /// The values: one concatenation for Read Multiple, one value each for the variable form.
    type Output = Vec<Vec<u8>>;
    fn start(&mut self) -> Step<Self::Output> {
        let bytes: Vec<u8> = self.handles.iter().flat_map(|h| h.to_le_bytes()).collect();
        match HandleList::new(&bytes) {
            Ok(handles) if self.variable => Step::Send(AttPdu::ReadMultipleVariableReq { handles }.to_vec()),
            Ok(handles) => Step::Send(AttPdu::ReadMultipleReq { handles }.to_vec()),
            // Fewer than two handles is no valid request, and the codec builds none; it is sent
            // as given all the same, for the server to refuse (Invalid PDU) as it always was.
            Err(_) => {
                let op = if self.variable { opcode::READ_MULTIPLE_VARIABLE_REQ } else { opcode::READ_MULTIPLE_REQ };
                Step::Send(core::iter::once(op).chain(bytes).collect())
            }
        }
    }
    fn on_response(&mut self, pdu: &[u8]) -> Result<Step<Self::Output>, ClientError> {
        if self.variable {
            match answer(pdu, opcode::READ_MULTIPLE_VARIABLE_REQ, opcode::READ_MULTIPLE_VARIABLE_RSP)? {
                AttPdu::ReadMultipleVariableRsp { data } => Ok(Step::Done(data.iter().map(<[u8]>::to_vec).collect())),
                _ => Err(ClientError::Unexpected { request: opcode::READ_MULTIPLE_VARIABLE_REQ, got: op_of(pdu) }),
            }
        } else {
            match answer(pdu, opcode::READ_MULTIPLE_REQ, opcode::READ_MULTIPLE_RSP)? {
                AttPdu::ReadMultipleRsp { values } => Ok(Step::Done(alloc::vec![values.to_vec()])),
                _ => Err(ClientError::Unexpected { request: opcode::READ_MULTIPLE_REQ, got: op_of(pdu) }),
            }
        }
    }
}

/// Write Characteristic Value (§4.9.3) or a descriptor (§4.12.3).
#[derive(Debug)]
pub struct Write {
    handle: u16,
    value: Vec<u8>,
}

impl Write {
    /// Writes `value` to `handle` with a Write Request.
    pub fn new(handle: u16, value: &[u8]) -> Self {
        Self { handle, value: value.to_vec() }
    }
}

impl Procedure for Write {
    type Output = ();
    fn start(&mut self) -> Step<()> {
        Step::Send(AttPdu::WriteReq { handle: self.handle, value: &self.value }.to_vec())
    }
    fn on_response(&mut self, pdu: &[u8]) -> Result<Step<()>, ClientError> {
        answer(pdu, opcode::WRITE_REQ, opcode::WRITE_RSP).map(|_| Step::Done(()))
    }
}

/// Write Long Characteristic Values (§4.9.4) and Reliable Writes (§4.9.5): Prepare Write
/// chunks of ATT_MTU-5, each echo checked, then Execute Write. A wrong echo cancels the queue.
#[derive(Debug)]
pub struct WriteLong {
    chunks: Vec<(u16, u16, Vec<u8>)>,
    sent: usize,
    failed: Option<ClientError>,
}

impl WriteLong {
    /// Writes (handle, value) pairs atomically at ATT_MTU `mtu`.
    pub fn new(writes: &[(u16, &[u8])], mtu: u16) -> Self {
        let at_zero: Vec<(u16, u16, &[u8])> = writes.iter().map(|(h, v)| (*h, 0, *v)).collect();
        Self::at_offsets(&at_zero, mtu)
    }

    /// Writes (handle, offset, value) parts atomically at ATT_MTU `mtu`: each value goes into
    /// its attribute from `offset` on (Core Vol 3 Part F §3.4.6.1), the rest of the attribute
    /// as the server keeps it.
    pub fn at_offsets(writes: &[(u16, u16, &[u8])], mtu: u16) -> Self {
        let size = (mtu.max(23) - 5) as usize;
        let mut chunks = Vec::new();
        for (handle, offset, value) in writes {
            if value.is_empty() {
                chunks.push((*handle, *offset, Vec::new()));
            }
            for (i, c) in value.chunks(size).enumerate() {
                let at = usize::from(*offset).saturating_add(i * size).min(usize::from(u16::MAX)) as u16;
                chunks.push((*handle, at, c.to_vec()));
            }
        }
        Self { chunks, sent: 0, failed: None }
    }

    fn prepare(&self, i: usize) -> Option<Vec<u8>> {
        let (handle, offset, value) = self.chunks.get(i)?;
        Some(AttPdu::PrepareWriteReq { handle: *handle, offset: *offset, value }.to_vec())
    }
}

impl Procedure for WriteLong {
    type Output = ();
    fn start(&mut self) -> Step<()> {
        match self.prepare(0) {
            Some(p) => Step::Send(p),
            None => Step::Done(()),
        }
    }
    fn on_response(&mut self, pdu: &[u8]) -> Result<Step<()>, ClientError> {
        if self.sent >= self.chunks.len() {
            // The answer to Execute Write (write or cancel).
            answer(pdu, opcode::EXECUTE_WRITE_REQ, opcode::EXECUTE_WRITE_RSP)?;
            return match self.failed.take() {
                Some(e) => Err(e),
                None => Ok(Step::Done(())),
            };
        }
        let echo_ok = match answer(pdu, opcode::PREPARE_WRITE_REQ, opcode::PREPARE_WRITE_RSP) {
            Ok(AttPdu::PrepareWriteRsp { handle, offset, value }) => {
                self.chunks.get(self.sent).is_some_and(|(h, o, v)| *h == handle && *o == offset && v == value)
            }
            Ok(_) => false,
            Err(e) => {
                // Anything queued so far is cancelled.
                self.sent = self.chunks.len();
                self.failed = Some(e);
                return Ok(Step::Send(execute(ExecuteWriteFlags::Cancel)));
            }
        };
        if !echo_ok {
            let (handle, offset, _) = self.chunks.get(self.sent).cloned().unwrap_or_default();
            self.sent = self.chunks.len();
            self.failed = Some(ClientError::EchoMismatch { handle, offset });
            return Ok(Step::Send(execute(ExecuteWriteFlags::Cancel)));
        }
        self.sent += 1;
        match self.prepare(self.sent) {
            Some(p) => Ok(Step::Send(p)),
            None => Ok(Step::Send(execute(ExecuteWriteFlags::Write))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn write_long_at_an_offset_prepares_from_that_offset() {
        let mut w = WriteLong::at_offsets(&[(0x0010, 100, &[7u8; 30][..])], 23);
        // 18 bytes per Prepare Write at ATT_MTU 23: offsets 100 and 118.
        assert_eq!(
            w.start(),
            Step::Send(AttPdu::PrepareWriteReq { handle: 0x10, offset: 100, value: &[7; 18] }.to_vec())
        );
        let echo = AttPdu::PrepareWriteRsp { handle: 0x10, offset: 100, value: &[7; 18] }.to_vec();
        let next = AttPdu::PrepareWriteReq { handle: 0x10, offset: 118, value: &[7; 12] }.to_vec();
        assert_eq!(w.on_response(&echo), Ok(Step::Send(next)));
    }

    /// Drives a procedure with scripted answers; returns the result or None if it wants more.
    fn drive<P: Procedure>(mut p: P, answers: &[Vec<u8>]) -> Option<Result<P::Output, ClientError>> {
        let mut step = p.start();
        for a in answers {
            match step {
                Step::Done(out) => return Some(Ok(out)),
                Step::Send(_) => match p.on_response(a) {
                    Ok(s) => step = s,
                    Err(e) => return Some(Err(e)),
                },
            }
        }
        match step {
            Step::Done(out) => Some(Ok(out)),
            Step::Send(_) => None,
        }
    }

    #[test]
    fn service_discovery_walks_until_attribute_not_found() {
        let answers = [
            alloc::vec![0x11, 6, 1, 0, 5, 0, 0x00, 0x18, 6, 0, 9, 0, 0x01, 0x18],
            alloc::vec![0x01, 0x10, 10, 0, 0x0A],
        ];
        let out = drive(DiscoverServices::all(), &answers).expect("done").expect("ok");
        assert_eq!(out.len(), 2);
        assert_eq!((out[1].start, out[1].end, out[1].uuid), (6, 9, Uuid::U16(0x1801)));
    }

    #[test]
    fn reliable_write_cancels_on_a_wrong_echo() {
        let mut p = WriteLong::new(&[(3, b"abc")], 23);
        assert_eq!(p.start(), Step::Send(alloc::vec![0x16, 3, 0, 0, 0, b'a', b'b', b'c']));
        // The echo differs: the queue is cancelled (Execute Write flags 0), then the error.
        assert_eq!(p.on_response(&[0x17, 3, 0, 0, 0, b'a', b'b', b'X']), Ok(Step::Send(alloc::vec![0x18, 0x00])));
        assert_eq!(p.on_response(&[0x19]), Err(ClientError::EchoMismatch { handle: 3, offset: 0 }));
    }

    /// Drives a procedure against a server that repeats `answers` cyclically, for at most
    /// `budget` answers; returns the result and the number of answers it took, or None if the
    /// procedure still wanted more after `budget` answers (it loops).
    fn drive_cyclic<P: Procedure>(
        mut p: P,
        answers: &[Vec<u8>],
        budget: usize,
    ) -> Option<(Result<P::Output, ClientError>, usize)> {
        let mut step = p.start();
        let mut used = 0;
        for a in answers.iter().cycle().take(budget) {
            match step {
                Step::Done(out) => return Some((Ok(out), used)),
                Step::Send(_) => {
                    used += 1;
                    match p.on_response(a) {
                        Ok(s) => step = s,
                        Err(e) => return Some((Err(e), used)),
                    }
                }
            }
        }
        match step {
            Step::Done(out) => Some((Ok(out), used)),
            Step::Send(_) => None,
        }
    }

    /// A server that answers every request with a Write Response (well-formed, but never what
    /// was asked) ends every procedure with `Unexpected` after one answer (Reliable Write: after
    /// cancelling its queue, on the answer to the Execute Write).
    #[test]
    fn a_server_answering_garbage_ends_every_procedure_with_unexpected() {
        let garbage = [alloc::vec![opcode::WRITE_RSP]];
        let unexpected = |request| ClientError::Unexpected { request, got: opcode::WRITE_RSP };
        fn err<T: core::fmt::Debug>(r: Option<(Result<T, ClientError>, usize)>) -> (ClientError, usize) {
            match r {
                Some((Err(e), n)) => (e, n),
                other => panic!("expected an error, got {other:?}"),
            }
        }
        let group = opcode::READ_BY_GROUP_TYPE_REQ;
        let by_type = opcode::READ_BY_TYPE_REQ;
        assert_eq!(err(drive_cyclic(DiscoverServices::all(), &garbage, 100)), (unexpected(group), 1));
        let by_value = opcode::FIND_BY_TYPE_VALUE_REQ;
        let by_uuid = DiscoverServices::by_uuid(Uuid::U16(0x180D));
        assert_eq!(err(drive_cyclic(by_uuid, &garbage, 100)), (unexpected(by_value), 1));
        assert_eq!(err(drive_cyclic(FindIncludedServices::new(1, 0xFFFF), &garbage, 100)), (unexpected(by_type), 1));
        let chars = DiscoverCharacteristics::new(1, 0xFFFF, None);
        assert_eq!(err(drive_cyclic(chars, &garbage, 100)), (unexpected(by_type), 1));
        let find_info = opcode::FIND_INFORMATION_REQ;
        assert_eq!(err(drive_cyclic(DiscoverDescriptors::new(1, 0xFFFF), &garbage, 100)), (unexpected(find_info), 1));
        assert_eq!(err(drive_cyclic(Read::new(3, 23, true), &garbage, 100)), (unexpected(opcode::READ_REQ), 1));
        let read_by_uuid = ReadByUuid::new(1, 0xFFFF, Uuid::U16(0x2A00));
        assert_eq!(err(drive_cyclic(read_by_uuid, &garbage, 100)), (unexpected(by_type), 1));
        let multiple = opcode::READ_MULTIPLE_VARIABLE_REQ;
        assert_eq!(err(drive_cyclic(ReadMultiple::new(&[1, 2], true), &garbage, 100)), (unexpected(multiple), 1));
        let write_long = WriteLong::new(&[(3, &[1u8; 60][..])], 23);
        assert_eq!(err(drive_cyclic(write_long, &garbage, 100)), (unexpected(opcode::EXECUTE_WRITE_REQ), 2));
    }

    /// `drive_cyclic` reports a procedure that keeps asking (so the bounded tests can fail).
    #[test]
    fn drive_cyclic_detects_a_procedure_that_never_ends() {
        struct Forever;
        impl Procedure for Forever {
            type Output = ();
            fn start(&mut self) -> Step<()> {
                Step::Send(alloc::vec![opcode::READ_REQ, 1, 0])
            }
            fn on_response(&mut self, _pdu: &[u8]) -> Result<Step<()>, ClientError> {
                Ok(self.start())
            }
        }
        assert!(drive_cyclic(Forever, &[alloc::vec![0x0B]], 1000).is_none());
    }

    /// A Read By Type Response with 2-byte values at `handles`.
    fn read_by_type_rsp(handles: &[u16]) -> Vec<u8> {
        let mut v = alloc::vec![opcode::READ_BY_TYPE_RSP, 4];
        for h in handles {
            v.extend_from_slice(&h.to_le_bytes());
            v.extend_from_slice(&[h.to_le_bytes()[0], 0xAA]);
        }
        v
    }

    fn not_found(handle: u16) -> Vec<u8> {
        let h = handle.to_le_bytes();
        alloc::vec![opcode::ERROR_RSP, opcode::READ_BY_TYPE_REQ, h[0], h[1], 0x0A]
    }

    fn pairs(handles: &[u16]) -> Vec<(u16, Vec<u8>)> {
        handles.iter().map(|h| (*h, alloc::vec![h.to_le_bytes()[0], 0xAA])).collect()
    }

    /// §4.8.2: after each response the next Read By Type Request starts at the last handle + 1;
    /// Attribute Not Found on a later request ends the procedure with everything collected.
    #[test]
    fn read_by_uuid_continues_until_attribute_not_found() {
        let mut p = ReadByUuid::new(1, 0xFFFF, Uuid::U16(0x2A00));
        assert_eq!(p.start(), Step::Send(alloc::vec![0x08, 1, 0, 0xFF, 0xFF, 0x00, 0x2A]));
        assert_eq!(
            p.on_response(&read_by_type_rsp(&[3, 5])),
            Ok(Step::Send(alloc::vec![0x08, 6, 0, 0xFF, 0xFF, 0x00, 0x2A]))
        );
        assert_eq!(
            p.on_response(&read_by_type_rsp(&[9])),
            Ok(Step::Send(alloc::vec![0x08, 10, 0, 0xFF, 0xFF, 0x00, 0x2A]))
        );
        assert_eq!(p.on_response(&not_found(10)), Ok(Step::Done(pairs(&[3, 5, 9]))));
    }

    /// Attribute Not Found on the first request stays an error (callers rely on it).
    #[test]
    fn read_by_uuid_not_found_at_first_is_an_error() {
        let r = drive(ReadByUuid::new(1, 0xFFFF, Uuid::U16(0x2A00)), &[not_found(1)]);
        let e = ClientError::Att { request: opcode::READ_BY_TYPE_REQ, handle: 1, code: ErrorCode::ATTRIBUTE_NOT_FOUND };
        assert_eq!(r, Some(Err(e)));
        // Other errors on a later request are errors too.
        let denied = alloc::vec![opcode::ERROR_RSP, opcode::READ_BY_TYPE_REQ, 6, 0, 0x02];
        let r = drive(ReadByUuid::new(1, 0xFFFF, Uuid::U16(0x2A00)), &[read_by_type_rsp(&[5]), denied]);
        assert!(
            matches!(r, Some(Err(ClientError::Att { handle: 6, code: ErrorCode::READ_NOT_PERMITTED, .. }))),
            "{r:?}"
        );
    }

    /// No request is sent past the end of the range or past 0xFFFF.
    #[test]
    fn read_by_uuid_stops_at_the_end_of_the_range() {
        let r = drive(ReadByUuid::new(1, 9, Uuid::U16(0x2A00)), &[read_by_type_rsp(&[4, 9])]);
        assert_eq!(r, Some(Ok(pairs(&[4, 9]))));
        let r = drive(ReadByUuid::new(0xFFF0, 0xFFFF, Uuid::U16(0x2A00)), &[read_by_type_rsp(&[0xFFFF])]);
        assert_eq!(r, Some(Ok(pairs(&[0xFFFF]))));
    }

    /// A later response naming handles before the continuation point (a stuck server repeating
    /// its page) or past the end of the range is refused.
    #[test]
    fn read_by_uuid_checks_progress_and_range() {
        let page = read_by_type_rsp(&[3, 5]);
        let r = drive(ReadByUuid::new(1, 0xFFFF, Uuid::U16(0x2A00)), &[page.clone(), page]);
        assert_eq!(r, Some(Err(ClientError::OutOfRange { handle: 3, start: 6, end: 0xFFFF })));
        let r = drive(ReadByUuid::new(1, 9, Uuid::U16(0x2A00)), &[read_by_type_rsp(&[3, 10])]);
        assert_eq!(r, Some(Err(ClientError::OutOfRange { handle: 10, start: 1, end: 9 })));
    }

    proptest! {
        /// Against a simulated server holding `handles` and answering at most `page` of them per
        /// response, Read Using Characteristic UUID returns exactly the handles in its range,
        /// with one request per page plus the final Attribute Not Found (or none when the last
        /// page ends at the range end); an empty range is Attribute Not Found.
        #[test]
        fn read_by_uuid_collects_every_handle_in_range(
            handles in proptest::collection::btree_set(1u16..=0xFFFF, 0..40),
            pages in proptest::collection::vec(1usize..5, 1..8),
            start in 1u16..0x8000,
            len in 0u16..0x8000,
        ) {
            let end = start.saturating_add(len);
            let mut p = ReadByUuid::new(start, end, Uuid::U16(0x2A00));
            let mut step = p.start();
            let mut requests = 0usize;
            let expected: Vec<u16> = handles.iter().copied().filter(|h| (start..=end).contains(h)).collect();
            let result = loop {
                let req = match step {
                    Step::Done(out) => break Ok(out),
                    Step::Send(req) => req,
                };
                requests += 1;
                prop_assert!(requests <= expected.len() + 1, "too many requests");
                let from = u16::from_le_bytes([req[1], req[2]]);
                let to = u16::from_le_bytes([req[3], req[4]]);
                prop_assert_eq!(to, end);
                let page = pages[requests % pages.len()];
                let hits: Vec<u16> = handles.iter().copied().filter(|h| (from..=to).contains(h)).take(page).collect();
                let answer = if hits.is_empty() { not_found(from) } else { read_by_type_rsp(&hits) };
                match p.on_response(&answer) {
                    Ok(s) => step = s,
                    Err(e) => break Err(e),
                }
            };
            if expected.is_empty() {
                let not_found = matches!(result, Err(ClientError::Att { code: ErrorCode::ATTRIBUTE_NOT_FOUND, .. }));
                prop_assert!(not_found, "{:?}", result);
            } else {
                prop_assert_eq!(result, Ok(pairs(&expected)));
            }
        }

        /// Arbitrary answers never panic, and no procedure loops: against a server that repeats
        /// up to 12 arbitrary answers over and over, every procedure ends (with a result or a
        /// typed error) within 1000 answers. Discovery must advance past each answer, so a
        /// repeated answer is out of range; long reads stop at 512 bytes; writes have a fixed
        /// number of chunks.
        #[test]
        fn arbitrary_answers_never_panic_or_loop(answers in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..12)) {
            let budget = 1000;
            prop_assert!(drive_cyclic(DiscoverServices::all(), &answers, budget).is_some());
            prop_assert!(drive_cyclic(DiscoverServices::by_uuid(Uuid::U16(0x180D)), &answers, budget).is_some());
            prop_assert!(drive_cyclic(FindIncludedServices::new(1, 0xFFFF), &answers, budget).is_some());
            prop_assert!(drive_cyclic(DiscoverCharacteristics::new(1, 0xFFFF, None), &answers, budget).is_some());
            prop_assert!(drive_cyclic(DiscoverDescriptors::new(1, 0xFFFF), &answers, budget).is_some());
            prop_assert!(drive_cyclic(Read::new(3, 23, true), &answers, budget).is_some());
            prop_assert!(drive_cyclic(ReadByUuid::new(1, 0xFFFF, Uuid::U16(0x2A00)), &answers, budget).is_some());
            prop_assert!(drive_cyclic(ReadMultiple::new(&[1, 2], true), &answers, budget).is_some());
            prop_assert!(drive_cyclic(WriteLong::new(&[(3, &[1u8; 60][..])], 23), &answers, budget).is_some());
        }

        /// A server that always answers with a "full" discovery page of the same handles is caught.
        #[test]
        fn repeated_pages_are_caught(h in 1u16..0xFFF0) {
            let b = h.to_le_bytes();
            let page = alloc::vec![0x05, 0x01, b[0], b[1], 0x02, 0x29];
            let r = drive(DiscoverDescriptors::new(h, 0xFFFF), &[page.clone(), page.clone(), page]);
            prop_assert!(matches!(r, Some(Err(ClientError::OutOfRange { .. } | ClientError::NoProgress(_)))), "{:?}", r);
        }
    }
}
