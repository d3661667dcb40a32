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
    pub fn descriptor(mut self, uuid: impl Into<Uuid>, value: &[u8], permissions: Permissions) -> Self {
        self.descriptors.push(DescriptorDef { uuid: uuid.into(), value: value.to_vec(), permissions });
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
                    max_len: MAX_VALUE_LEN,
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
