//! The attribute database of a GATT server (Core Vol 3 Part G §3): services, included services,
//! characteristics and descriptors laid out as ATT attributes, with handle allocation and the
//! Database Hash (§7.3).

use super::{uuids, Permissions, Properties};
use crate::uuid::Uuid;
use alloc::vec::Vec;

/// Largest attribute value (Core Vol 3 Part F §3.2.9).
pub const MAX_VALUE_LEN: usize = 512;

/// Identifies a characteristic in a [`Database`]: the handle of its value.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct CharId(pub u16);

/// What an attribute is, which decides how the server reads and writes it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AttrKind {
    /// Primary Service declaration (0x2800).
    PrimaryService,
    /// Secondary Service declaration (0x2801).
    SecondaryService,
    /// Include declaration (0x2802).
    Include,
    /// Characteristic declaration (0x2803).
    CharacteristicDecl,
    /// A characteristic value; its bytes live in the characteristic.
    Value,
    /// Client Characteristic Configuration (0x2902): one value per connection.
    Cccd,
    /// Any other descriptor, stored in the attribute.
    Descriptor,
}

/// One ATT attribute (Core Vol 3 Part F §3.2).
#[derive(Clone, Debug)]
pub struct Attribute {
    /// Handle.
    pub handle: u16,
    /// Attribute type.
    pub uuid: Uuid,
    /// Kind.
    pub kind: AttrKind,
    /// Stored value (declarations and descriptors; characteristic values use [`Characteristic::value`]).
    pub value: Vec<u8>,
    /// Access permissions.
    pub permissions: Permissions,
    /// The characteristic this attribute belongs to (its value handle), if any.
    pub characteristic: Option<CharId>,
    /// Maximum value length for writes.
    pub max_len: usize,
    /// Last handle of the service group (service declarations only).
    pub group_end: u16,
}

/// A characteristic's state (Core Vol 3 Part G §3.3).
#[derive(Clone, Debug)]
pub struct Characteristic {
    /// Declaration handle.
    pub decl_handle: u16,
    /// Value handle.
    pub value_handle: u16,
    /// Last handle of the characteristic (its last descriptor).
    pub end_handle: u16,
    /// Characteristic UUID.
    pub uuid: Uuid,
    /// Property bits.
    pub properties: Properties,
    /// Current value.
    pub value: Vec<u8>,
    /// CCCD handle if notify or indicate is set.
    pub cccd_handle: Option<u16>,
    /// Accumulated event bits (Pycom's CHAR_READ_EVENT 0x08, CHAR_WRITE_EVENT 0x10, CHAR_SUBSCRIBE_EVENT 0x80).
    pub events: u16,
}

/// Builder input for a descriptor.
#[derive(Clone, Debug)]
pub struct DescriptorDef {
    /// Descriptor type.
    pub uuid: Uuid,
    /// Initial value.
    pub value: Vec<u8>,
    /// Permissions.
    pub permissions: Permissions,
    /// Longest value a client may write (at most 512).
    pub max_len: usize,
}

/// Builder input for a characteristic.
#[derive(Clone, Debug)]
pub struct CharacteristicDef {
    /// Characteristic UUID.
    pub uuid: Uuid,
    /// Properties.
    pub properties: Properties,
    /// Value permissions.
    pub permissions: Permissions,
    /// Initial value.
    pub value: Vec<u8>,
    /// Maximum length a client may write (at most 512).
    pub max_len: usize,
    /// Extended properties (0x2900 descriptor added when `properties` has EXTENDED_PROPERTIES).
    pub extended_properties: u16,
    /// Descriptors besides the automatic CCCD and Extended Properties.
    pub descriptors: Vec<DescriptorDef>,
    /// Fixed value handle (the declaration takes the handle before it).
    pub handle: Option<u16>,
}

impl CharacteristicDef {
    /// A characteristic with the given UUID, properties and initial value; readable and writable
    /// according to its properties, maximum length 512.
    pub fn new(uuid: impl Into<Uuid>, properties: Properties, value: &[u8]) -> Self {
        let mut permissions = Permissions::empty();
        if properties.contains(Properties::READ) {
            permissions |= Permissions::READ;
        }
        if properties.intersects(Properties::WRITE | Properties::WRITE_WITHOUT_RESPONSE) {
            permissions |= Permissions::WRITE;
        }
        Self {
            uuid: uuid.into(),
            properties,
            permissions,
            value: value.to_vec(),
            max_len: MAX_VALUE_LEN,
            extended_properties: 0,
            descriptors: Vec::new(),
            handle: None,
        }
    }

    /// Sets the permissions.
    pub fn permissions(mut self, p: Permissions) -> Self {
        self.permissions = p;
        self
    }

    /// Sets the maximum value length (capped at 512).
    pub fn max_len(mut self, n: usize) -> Self {
        self.max_len = n.min(MAX_VALUE_LEN);
        self
    }

    /// Adds a descriptor.
    pub fn descriptor(self, uuid: impl Into<Uuid>, value: &[u8], permissions: Permissions) -> Self {
        self.descriptor_max(uuid, value, permissions, MAX_VALUE_LEN)
    }

    /// Adds a descriptor that takes writes of at most `max_len` bytes (capped at 512).
    pub fn descriptor_max(
        mut self,
        uuid: impl Into<Uuid>,
        value: &[u8],
        permissions: Permissions,
        max_len: usize,
    ) -> Self {
        let max_len = max_len.min(MAX_VALUE_LEN);
        self.descriptors.push(DescriptorDef { uuid: uuid.into(), value: value.to_vec(), permissions, max_len });
        self
    }

    /// Adds a Characteristic User Description (0x2901), read-only.
    pub fn user_description(self, text: &str) -> Self {
        self.descriptor(uuids::USER_DESCRIPTION, text.as_bytes(), Permissions::READ)
    }

    /// Adds a Characteristic Presentation Format (0x2904): format, exponent, unit, namespace, description.
    pub fn presentation_format(self, format: u8, exponent: i8, unit: u16, namespace: u8, description: u16) -> Self {
        let mut v = alloc::vec![format, exponent as u8];
        v.extend_from_slice(&unit.to_le_bytes());
        v.push(namespace);
        v.extend_from_slice(&description.to_le_bytes());
        self.descriptor(uuids::PRESENTATION_FORMAT, &v, Permissions::READ)
    }

    /// Adds a Server Characteristic Configuration (0x2903), readable and writable.
    pub fn server_configuration(self) -> Self {
        self.descriptor(uuids::SERVER_CONFIGURATION, &[0, 0], Permissions::READ | Permissions::WRITE)
    }

    /// Sets the extended properties (bit 0 reliable write, bit 1 writable auxiliaries) and the
    /// EXTENDED_PROPERTIES property.
    pub fn extended_properties(mut self, bits: u16) -> Self {
        self.extended_properties = bits;
        self.properties |= Properties::EXTENDED_PROPERTIES;
        self
    }

    /// Asks for a fixed value handle.
    pub fn at_handle(mut self, value_handle: u16) -> Self {
        self.handle = Some(value_handle);
        self
    }
}

/// Builder input for a service.
#[derive(Clone, Debug)]
pub struct ServiceDef {
    /// Service UUID.
    pub uuid: Uuid,
    /// Primary or secondary.
    pub primary: bool,
    /// Included services, by the handle of their declaration.
    pub includes: Vec<u16>,
    /// Characteristics.
    pub characteristics: Vec<CharacteristicDef>,
    /// Fixed handle of the service declaration.
    pub handle: Option<u16>,
}

impl ServiceDef {
    /// A primary service.
    pub fn primary(uuid: impl Into<Uuid>) -> Self {
        Self { uuid: uuid.into(), primary: true, includes: Vec::new(), characteristics: Vec::new(), handle: None }
    }

    /// A secondary service.
    pub fn secondary(uuid: impl Into<Uuid>) -> Self {
        Self { primary: false, ..Self::primary(uuid) }
    }

    /// Includes the service whose declaration is at `service_handle`.
    pub fn include(mut self, service_handle: u16) -> Self {
        self.includes.push(service_handle);
        self
    }

    /// Adds a characteristic.
    pub fn characteristic(mut self, c: CharacteristicDef) -> Self {
        self.characteristics.push(c);
        self
    }

    /// Asks for a fixed declaration handle.
    pub fn at_handle(mut self, handle: u16) -> Self {
        self.handle = Some(handle);
        self
    }
}

/// Why a service could not be added.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum DbError {
    /// A fixed handle overlaps existing attributes or is out of order.
    #[error("handle {0:#06x} is already used or out of order")]
    HandleInUse(u16),
    /// The handle space (0x0001-0xFFFF) is exhausted.
    #[error("no handles left")]
    NoHandles,
    /// An included service handle does not point at a service declaration.
    #[error("included service at {0:#06x} does not exist")]
    NoSuchService(u16),
    /// A value is longer than 512 bytes.
    #[error("value of {0} bytes exceeds the 512-byte attribute maximum")]
    ValueTooLong(usize),
    /// No service starts at this handle.
    #[error("no service at handle {0:#06x}")]
    NotFound(u16),
    /// A raw attribute table was refused (Core Vol 3 Part G §3).
    #[error("raw attribute table refused: {0}")]
    Table(#[from] TableError),
}

/// One attribute of a raw attribute table as a client sees it (Core Vol 3 Part F §3.2): the unit
/// of [`Database::insert_records`] and [`Database::records`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AttributeRecord {
    /// Attribute handle (Core Vol 3 Part F §3.2.2).
    pub handle: u16,
    /// Attribute type (Core Vol 3 Part F §3.2.1).
    pub uuid: Uuid,
    /// Attribute value (Core Vol 3 Part F §3.2.4); declarations in their Core Vol 3 Part G §3 format.
    pub value: Vec<u8>,
    /// Attribute permissions (Core Vol 3 Part F §3.2.5).
    pub permissions: Permissions,
    /// Largest value a client may write (capped at 512, Core Vol 3 Part F §3.2.9); for a
    /// characteristic value, its buffer size.
    pub max_len: usize,
}

/// Why a raw attribute table was refused (Core Vol 3 Part G §3 attribute layout rules).
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum TableErrorKind {
    /// Handle 0x0000 is reserved (Core Vol 3 Part F §3.2.2).
    #[error("handle 0x0000 is reserved")]
    HandleZero,
    /// Handles must strictly increase through the table (Core Vol 3 Part F §3.2.2).
    #[error("handle is not above the previous record's {previous:#06x}")]
    HandleNotIncreasing {
        /// Handle of the previous record.
        previous: u16,
    },
    /// The attribute falls inside, or its service group spans, a service already in the database.
    #[error("overlaps an existing service")]
    Overlaps,
    /// The table does not start with a service declaration (Core Vol 3 Part G §3.1).
    #[error("the table does not start with a service declaration")]
    NotAService,
    /// A service declaration's value is not a 16- or 128-bit UUID (Core Vol 3 Part G §3.1).
    #[error("service declaration value of {len} bytes is not a 16- or 128-bit UUID")]
    BadServiceUuid {
        /// Value length.
        len: usize,
    },
    /// An include declaration does not name an existing service declaration with its group end
    /// and UUID (Core Vol 3 Part G §3.2).
    #[error("include declaration does not match a service at {start:#06x}-{end:#06x}")]
    BadInclude {
        /// Included service handle named by the declaration.
        start: u16,
        /// End group handle named by the declaration.
        end: u16,
    },
    /// An include or characteristic declaration value has the wrong length (Core Vol 3 Part G
    /// §3.2, §3.3.1).
    #[error("declaration value of {len} bytes is malformed")]
    BadDeclaration {
        /// Value length.
        len: usize,
    },
    /// A characteristic declaration's value handle is not the next handle (Core Vol 3 Part G §3.3.1.2).
    #[error("characteristic declaration points at {got:#06x}, expected {expected:#06x}")]
    ValuePointsElsewhere {
        /// The handle after the declaration.
        expected: u16,
        /// The value handle in the declaration.
        got: u16,
    },
    /// The value's type differs from the UUID in its declaration (Core Vol 3 Part G §3.3.2).
    #[error("value type {got} differs from the declared characteristic UUID {declared}")]
    UuidMismatch {
        /// UUID in the characteristic declaration.
        declared: Uuid,
        /// Type of the value record.
        got: Uuid,
    },
    /// Handles inside a characteristic definition are not consecutive (Core Vol 3 Part G §3.3).
    #[error("gap inside a characteristic: expected handle {expected:#06x}")]
    GapInCharacteristic {
        /// The handle the next attribute of the characteristic must have.
        expected: u16,
    },
    /// A value longer than 512 bytes or than its record's `max_len` (Core Vol 3 Part F §3.2.9).
    #[error("value of {len} bytes exceeds its maximum of {max}")]
    ValueTooLong {
        /// Value length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The table ends right after a characteristic declaration (Core Vol 3 Part G §3.3).
    #[error("characteristic declaration is not followed by its value")]
    MissingValue,
    /// A descriptor-like attribute that follows no characteristic value (Core Vol 3 Part G §3.3.3).
    #[error("attribute is not part of any characteristic")]
    OutsideCharacteristic,
    /// A second Client Characteristic Configuration in one characteristic (Core Vol 3 Part G §3.3.3.3).
    #[error("second Client Characteristic Configuration descriptor in one characteristic")]
    DuplicateCccd,
}

/// A raw attribute table refused by [`Database::insert_records`] (Core Vol 3 Part G §3): which
/// record and why.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error("handle {handle:#06x}: {reason}")]
pub struct TableError {
    /// Index of the offending record in the table.
    pub index: usize,
    /// Its handle.
    pub handle: u16,
    /// Why it was refused.
    pub reason: TableErrorKind,
}

fn is_service(kind: AttrKind) -> bool {
    matches!(kind, AttrKind::PrimaryService | AttrKind::SecondaryService)
}

/// A characteristic declaration waiting for its value record.
struct PendingValue {
    index: usize,
    decl: u16,
    value_handle: u16,
    uuid: Uuid,
    properties: Properties,
}

/// An include declaration checked once every new service group is known.
struct PendingInclude {
    index: usize,
    handle: u16,
    service: u16,
    start: u16,
    end: u16,
    uuid16: Option<[u8; 2]>,
}

/// The attribute database, sorted by handle.
#[derive(Clone, Debug, Default)]
pub struct Database {
    attrs: Vec<Attribute>,
    chars: Vec<Characteristic>,
    hash: Option<[u8; 16]>,
}

impl Database {
    /// An empty database.
    pub fn new() -> Self {
        Self::default()
    }

    /// All attributes in handle order.
    pub fn attributes(&self) -> &[Attribute] {
        &self.attrs
    }

    /// The attribute at `handle`.
    pub fn attribute(&self, handle: u16) -> Option<&Attribute> {
        self.index_of(handle).and_then(|i| self.attrs.get(i))
    }

    pub(crate) fn attrs_mut(&mut self) -> &mut [Attribute] {
        &mut self.attrs
    }

    pub(crate) fn index_of(&self, handle: u16) -> Option<usize> {
        self.attrs.binary_search_by_key(&handle, |a| a.handle).ok()
    }

    /// Index of the first attribute with handle >= `handle`.
    pub(crate) fn lower_bound(&self, handle: u16) -> usize {
        self.attrs.partition_point(|a| a.handle < handle)
    }

    /// The characteristic whose value is at `id`.
    pub fn characteristic(&self, id: CharId) -> Option<&Characteristic> {
        self.chars.binary_search_by_key(&id.0, |c| c.value_handle).ok().and_then(|i| self.chars.get(i))
    }

    /// Mutable access to a characteristic.
    pub fn characteristic_mut(&mut self, id: CharId) -> Option<&mut Characteristic> {
        let i = self.chars.binary_search_by_key(&id.0, |c| c.value_handle).ok()?;
        self.chars.get_mut(i)
    }

    /// All characteristics in handle order.
    pub fn characteristics(&self) -> &[Characteristic] {
        &self.chars
    }

    /// The characteristic with this UUID (the first one), if any.
    pub fn find_characteristic(&self, uuid: Uuid) -> Option<CharId> {
        self.chars.iter().find(|c| crate::uuid::same(&c.uuid, &uuid)).map(|c| CharId(c.value_handle))
    }

    /// The value of an attribute for reads (characteristic values come from the characteristic).
    pub fn value<'a>(&'a self, attr: &'a Attribute) -> &'a [u8] {
        match (attr.kind, attr.characteristic) {
            (AttrKind::Value, Some(id)) => self.characteristic(id).map(|c| c.value.as_slice()).unwrap_or(&[]),
            _ => &attr.value,
        }
    }

    fn next_free(&self) -> u16 {
        self.attrs.last().map(|a| a.handle.saturating_add(1)).unwrap_or(1)
    }

    /// Adds a service and returns the handle of its declaration. Handles are allocated after the
    /// last attribute unless fixed handles are given, which must not overlap existing ones.
    pub fn add_service(&mut self, def: ServiceDef) -> Result<u16, DbError> {
        let mut handle = def.handle.unwrap_or_else(|| self.next_free());
        if handle == 0 {
            return Err(DbError::HandleInUse(handle));
        }
        let mut new: Vec<Attribute> = Vec::new();
        let mut chars: Vec<Characteristic> = Vec::new();
        let start = handle;
        let push = |new: &mut Vec<Attribute>, h: u16, uuid: u16, kind, value: Vec<u8>, perms, ch| {
            new.push(Attribute {
                handle: h,
                uuid: Uuid::U16(uuid),
                kind,
                value,
                permissions: perms,
                characteristic: ch,
                max_len: MAX_VALUE_LEN,
                group_end: 0,
            });
        };
        let decl_type = if def.primary { uuids::PRIMARY_SERVICE } else { uuids::SECONDARY_SERVICE };
        let mut uuid_bytes = Vec::new();
        def.uuid.shortest_wire().write_le(&mut uuid_bytes);
        let kind = if def.primary { AttrKind::PrimaryService } else { AttrKind::SecondaryService };
        push(&mut new, handle, decl_type, kind, uuid_bytes, Permissions::READ, None);
        for inc in &def.includes {
            let (end, uuid) = self
                .attribute(*inc)
                .filter(|a| matches!(a.kind, AttrKind::PrimaryService | AttrKind::SecondaryService))
                .map(|a| (a.group_end, a.value.clone()))
                .ok_or(DbError::NoSuchService(*inc))?;
            handle = handle.checked_add(1).ok_or(DbError::NoHandles)?;
            let mut v = Vec::with_capacity(6);
            v.extend_from_slice(&inc.to_le_bytes());
            v.extend_from_slice(&end.to_le_bytes());
            if uuid.len() == 2 {
                v.extend_from_slice(&uuid);
            }
            push(&mut new, handle, uuids::INCLUDE, AttrKind::Include, v, Permissions::READ, None);
        }
        for c in def.characteristics {
            if c.value.len() > MAX_VALUE_LEN {
                return Err(DbError::ValueTooLong(c.value.len()));
            }
            let decl = match c.handle {
                Some(vh) if vh > handle.saturating_add(1) => vh - 1,
                Some(vh) => return Err(DbError::HandleInUse(vh)),
                None => handle.checked_add(1).ok_or(DbError::NoHandles)?,
            };
            let value_handle = decl.checked_add(1).ok_or(DbError::NoHandles)?;
            let id = CharId(value_handle);
            let mut dv = Vec::with_capacity(19);
            dv.push(c.properties.bits());
            dv.extend_from_slice(&value_handle.to_le_bytes());
            c.uuid.shortest_wire().write_le(&mut dv);
            push(&mut new, decl, uuids::CHARACTERISTIC, AttrKind::CharacteristicDecl, dv, Permissions::READ, Some(id));
            new.push(Attribute {
                handle: value_handle,
                uuid: c.uuid.shortest_wire(),
                kind: AttrKind::Value,
                value: Vec::new(),
                permissions: c.permissions,
                characteristic: Some(id),
                max_len: c.max_len,
                group_end: 0,
            });
            handle = value_handle;
            let mut cccd_handle = None;
            if c.properties.intersects(Properties::NOTIFY | Properties::INDICATE) {
                handle = handle.checked_add(1).ok_or(DbError::NoHandles)?;
                cccd_handle = Some(handle);
                let perms = Permissions::READ | Permissions::WRITE;
                push(&mut new, handle, uuids::CCCD, AttrKind::Cccd, alloc::vec![0, 0], perms, Some(id));
            }
            if c.properties.contains(Properties::EXTENDED_PROPERTIES) {
                handle = handle.checked_add(1).ok_or(DbError::NoHandles)?;
                let v = c.extended_properties.to_le_bytes().to_vec();
                push(
                    &mut new,
                    handle,
                    uuids::EXTENDED_PROPERTIES,
                    AttrKind::Descriptor,
                    v,
                    Permissions::READ,
                    Some(id),
                );
            }
            for d in c.descriptors {
                handle = handle.checked_add(1).ok_or(DbError::NoHandles)?;
                new.push(Attribute {
                    handle,
                    uuid: d.uuid.shortest_wire(),
                    kind: AttrKind::Descriptor,
                    max_len: d.max_len,
                    value: d.value,
                    permissions: d.permissions,
                    characteristic: Some(id),
                    group_end: 0,
                });
            }
            chars.push(Characteristic {
                decl_handle: decl,
                value_handle,
                end_handle: handle,
                uuid: c.uuid,
                properties: c.properties,
                value: c.value,
                cccd_handle,
                events: 0,
            });
        }
        if let Some(first) = new.first_mut() {
            first.group_end = handle;
        }
        // The new group may fill a gap between existing services but must not overlap them.
        let at = self.lower_bound(start);
        if self.attrs.get(at).is_some_and(|a| a.handle <= handle) {
            return Err(DbError::HandleInUse(start));
        }
        self.attrs.splice(at..at, new);
        let at = self.chars.partition_point(|c| c.value_handle < start);
        self.chars.splice(at..at, chars);
        self.hash = None;
        Ok(start)
    }

    /// A database holding exactly the raw attribute table `records` (Core Vol 3 Part G §3); see
    /// [`Database::insert_records`].
    pub fn from_records(records: &[AttributeRecord]) -> Result<Database, TableError> {
        let mut db = Database::new();
        db.insert_records(records)?;
        Ok(db)
    }

    /// Inserts a raw attribute table at exactly its handles (Core Vol 3 Part G §3): one or more
    /// service groups, declarations taken as given but validated, descriptors in any order.
    /// Atomic: on error the database is unchanged.
    pub fn insert_records(&mut self, records: &[AttributeRecord]) -> Result<(), TableError> {
        let (attrs, chars) = self.parse_records(records)?;
        if attrs.is_empty() {
            return Ok(());
        }
        self.attrs.extend(attrs);
        self.attrs.sort_by_key(|a| a.handle);
        self.chars.extend(chars);
        self.chars.sort_by_key(|c| c.value_handle);
        self.hash = None;
        Ok(())
    }

    /// Validates `records` against the database and builds their attributes and characteristics
    /// (one attribute per record, in record order).
    fn parse_records(&self, records: &[AttributeRecord]) -> Result<(Vec<Attribute>, Vec<Characteristic>), TableError> {
        // Existing service groups, sorted by start handle.
        let existing: Vec<(u16, u16)> =
            self.attrs.iter().filter(|a| is_service(a.kind)).map(|a| (a.handle, a.group_end)).collect();
        let mut new: Vec<Attribute> = Vec::with_capacity(records.len());
        let mut chars: Vec<Characteristic> = Vec::new();
        let mut includes: Vec<PendingInclude> = Vec::new();
        // Index in `new` of the open service declaration.
        let mut service: Option<usize> = None;
        let mut pending: Option<PendingValue> = None;
        // True while descriptors may follow (after a characteristic value).
        let mut in_char = false;
        for (index, r) in records.iter().enumerate() {
            let handle = r.handle;
            let err = |reason| TableError { index, handle, reason };
            if handle == 0 {
                return Err(err(TableErrorKind::HandleZero));
            }
            if let Some(previous) = new.last().map(|a| a.handle) {
                if handle <= previous {
                    return Err(err(TableErrorKind::HandleNotIncreasing { previous }));
                }
            }
            // Inside an existing group, or an existing group lies between this service's start and here.
            let at = existing.partition_point(|(s, _)| *s <= handle);
            let inside = at.checked_sub(1).and_then(|i| existing.get(i)).is_some_and(|(_, e)| *e >= handle);
            let uuid = r.uuid.shortest_wire();
            let starts_group =
                pending.is_none() && matches!(uuid.as_u16(), Some(uuids::PRIMARY_SERVICE | uuids::SECONDARY_SERVICE));
            let open_start = service.and_then(|i| new.get(i)).map(|a| a.handle);
            let spans = !starts_group
                && open_start.is_some_and(|start| {
                    existing.get(existing.partition_point(|(s, _)| *s <= start)).is_some_and(|(s, _)| *s <= handle)
                });
            if inside || spans || self.index_of(handle).is_some() {
                return Err(err(TableErrorKind::Overlaps));
            }
            let max_len = r.max_len.min(MAX_VALUE_LEN);
            let mut attr = Attribute {
                handle,
                uuid,
                kind: AttrKind::Descriptor,
                value: r.value.clone(),
                permissions: r.permissions,
                characteristic: None,
                max_len,
                group_end: 0,
            };
            if let Some(p) = pending.take() {
                // The record after a characteristic declaration is its value.
                if handle != p.value_handle {
                    return Err(err(TableErrorKind::GapInCharacteristic { expected: p.value_handle }));
                }
                if !crate::uuid::same(&uuid, &p.uuid) {
                    return Err(err(TableErrorKind::UuidMismatch { declared: p.uuid, got: uuid }));
                }
                if r.value.len() > max_len {
                    return Err(err(TableErrorKind::ValueTooLong { len: r.value.len(), max: max_len }));
                }
                attr.kind = AttrKind::Value;
                attr.value = Vec::new();
                attr.characteristic = Some(CharId(handle));
                chars.push(Characteristic {
                    decl_handle: p.decl,
                    value_handle: handle,
                    end_handle: handle,
                    uuid: p.uuid,
                    properties: p.properties,
                    value: r.value.clone(),
                    cccd_handle: None,
                    events: 0,
                });
                new.push(attr);
                in_char = true;
                continue;
            }
            match uuid.as_u16() {
                Some(t @ (uuids::PRIMARY_SERVICE | uuids::SECONDARY_SERVICE)) => {
                    if !matches!(r.value.len(), 2 | 16) {
                        return Err(err(TableErrorKind::BadServiceUuid { len: r.value.len() }));
                    }
                    close_group(&mut new, service);
                    attr.kind =
                        if t == uuids::PRIMARY_SERVICE { AttrKind::PrimaryService } else { AttrKind::SecondaryService };
                    service = Some(new.len());
                    in_char = false;
                }
                _ if service.is_none() => return Err(err(TableErrorKind::NotAService)),
                Some(uuids::INCLUDE) => {
                    let (start, end, uuid16) = match *r.value.as_slice() {
                        [a, b, c, d] => (u16::from_le_bytes([a, b]), u16::from_le_bytes([c, d]), None),
                        [a, b, c, d, e, f] => (u16::from_le_bytes([a, b]), u16::from_le_bytes([c, d]), Some([e, f])),
                        _ => return Err(err(TableErrorKind::BadDeclaration { len: r.value.len() })),
                    };
                    let own = open_start.unwrap_or(0);
                    includes.push(PendingInclude { index, handle, service: own, start, end, uuid16 });
                    attr.kind = AttrKind::Include;
                    in_char = false;
                }
                Some(uuids::CHARACTERISTIC) => {
                    let (properties, got, declared) = match r.value.as_slice() {
                        [p, a, b, u @ ..] if matches!(u.len(), 2 | 16) => {
                            let declared = Uuid::from_le_bytes(u)
                                .map_err(|_| err(TableErrorKind::BadDeclaration { len: r.value.len() }))?;
                            (Properties(*p), u16::from_le_bytes([*a, *b]), declared.shortest_wire())
                        }
                        _ => return Err(err(TableErrorKind::BadDeclaration { len: r.value.len() })),
                    };
                    let Some(expected) = handle.checked_add(1) else {
                        return Err(err(TableErrorKind::MissingValue));
                    };
                    if got != expected {
                        return Err(err(TableErrorKind::ValuePointsElsewhere { expected, got }));
                    }
                    attr.kind = AttrKind::CharacteristicDecl;
                    attr.characteristic = Some(CharId(expected));
                    pending =
                        Some(PendingValue { index, decl: handle, value_handle: expected, uuid: declared, properties });
                    in_char = false;
                }
                t => {
                    let Some(c) = chars.last_mut().filter(|_| in_char) else {
                        return Err(err(TableErrorKind::OutsideCharacteristic));
                    };
                    let expected = c.end_handle.saturating_add(1);
                    if handle != expected {
                        return Err(err(TableErrorKind::GapInCharacteristic { expected }));
                    }
                    if t == Some(uuids::CCCD) {
                        if c.cccd_handle.is_some() {
                            return Err(err(TableErrorKind::DuplicateCccd));
                        }
                        c.cccd_handle = Some(handle);
                        attr.kind = AttrKind::Cccd;
                        attr.value = alloc::vec![0, 0];
                    } else if r.value.len() > max_len {
                        return Err(err(TableErrorKind::ValueTooLong { len: r.value.len(), max: max_len }));
                    }
                    attr.characteristic = Some(CharId(c.value_handle));
                    c.end_handle = handle;
                }
            }
            new.push(attr);
        }
        if let Some(p) = pending {
            let handle = records.get(p.index).map(|r| r.handle).unwrap_or(p.decl);
            return Err(TableError { index: p.index, handle, reason: TableErrorKind::MissingValue });
        }
        close_group(&mut new, service);
        for inc in &includes {
            let target = self
                .attribute(inc.start)
                .or_else(|| new.binary_search_by_key(&inc.start, |a| a.handle).ok().and_then(|i| new.get(i)))
                .filter(|a| is_service(a.kind) && a.handle != inc.service);
            let ok = target.is_some_and(|a| {
                a.group_end == inc.end
                    && match inc.uuid16 {
                        Some(u) => a.value == u,
                        None => a.value.len() == 16,
                    }
            });
            if !ok {
                let reason = TableErrorKind::BadInclude { start: inc.start, end: inc.end };
                return Err(TableError { index: inc.index, handle: inc.handle, reason });
            }
        }
        Ok((new, chars))
    }

    /// The whole database as the raw attribute table a client sees, in handle order (Core Vol 3
    /// Part G §3): declarations as stored, characteristic values from [`Characteristic::value`],
    /// CCCDs as `[0, 0]`. [`Database::from_records`] rebuilds an equivalent database from it.
    pub fn records(&self) -> Vec<AttributeRecord> {
        self.attrs
            .iter()
            .map(|a| AttributeRecord {
                handle: a.handle,
                uuid: a.uuid,
                value: match a.kind {
                    AttrKind::Cccd => alloc::vec![0, 0],
                    _ => self.value(a).to_vec(),
                },
                permissions: a.permissions,
                max_len: a.max_len,
            })
            .collect()
    }

    /// Removes the service declared at `service_handle` with all its attributes; returns the
    /// handle range it occupied.
    pub fn remove_service(&mut self, service_handle: u16) -> Result<(u16, u16), DbError> {
        let end = self
            .attribute(service_handle)
            .filter(|a| matches!(a.kind, AttrKind::PrimaryService | AttrKind::SecondaryService))
            .map(|a| a.group_end)
            .ok_or(DbError::NotFound(service_handle))?;
        self.attrs.retain(|a| a.handle < service_handle || a.handle > end);
        self.chars.retain(|c| c.value_handle < service_handle || c.value_handle > end);
        self.hash = None;
        Ok((service_handle, end))
    }

    /// The Database Hash (Core Vol 3 Part G §7.3): AES-CMAC with a zero key over, in handle
    /// order, handle ‖ type ‖ value of every service, include, characteristic declaration and
    /// extended-properties descriptor, and handle ‖ type of the other GATT-defined descriptors.
    /// Returned in the order it is sent over the air (least significant octet first).
    pub fn hash(&mut self) -> [u8; 16] {
        if let Some(h) = self.hash {
            return h;
        }
        let h = self.compute_hash();
        self.hash = Some(h);
        h
    }

    /// The hash as last computed, recomputing if the database changed.
    pub fn compute_hash(&self) -> [u8; 16] {
        use cmac::Mac;
        let mut mac = <cmac::Cmac<aes::Aes128> as cmac::digest::KeyInit>::new(&[0u8; 16].into());
        for a in &self.attrs {
            let Some(t) = a.uuid.as_u16() else { continue };
            let with_value = matches!(
                t,
                uuids::PRIMARY_SERVICE
                    | uuids::SECONDARY_SERVICE
                    | uuids::INCLUDE
                    | uuids::CHARACTERISTIC
                    | uuids::EXTENDED_PROPERTIES
            );
            let without_value = matches!(t, 0x2901..=0x2905);
            if !(with_value || without_value) {
                continue;
            }
            mac.update(&a.handle.to_le_bytes());
            mac.update(&t.to_le_bytes());
            if with_value {
                mac.update(&a.value);
            }
        }
        let out: [u8; 16] = mac.finalize().into_bytes().into();
        let mut le = out;
        le.reverse();
        le
    }
}

/// Sets the group end of the service declaration at `service` in `new` to the last attribute.
fn close_group(new: &mut [Attribute], service: Option<usize>) {
    let last = new.last().map(|a| a.handle).unwrap_or(0);
    if let Some(a) = service.and_then(|i| new.get_mut(i)) {
        a.group_end = last;
    }
}

impl Uuid {
    /// The form a UUID takes in the database: 16-bit when it has one, otherwise 128-bit
    /// (32-bit UUIDs are sent as 128-bit on the wire, Core Vol 3 Part F §3.2.1).
    pub fn shortest_wire(&self) -> Uuid {
        match self.shortest() {
            Uuid::U32(_) => Uuid::U128(self.to_u128_le()),
            other => other,
        }
    }
}
