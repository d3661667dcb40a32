//! Generic Attribute Profile (Core Vol 3 Part G): the attribute database and the server.

pub mod att_list;
pub mod client;
pub mod db;
pub mod server;

pub use att_list::{AttList, AttListError, AttListErrorKind, DumpError, ListRecord};
pub use db::{
    AttrKind, Attribute, AttributeRecord, CharId, Characteristic, CharacteristicDef, Database, DbError, ServiceDef,
    TableError, TableErrorKind,
};
pub use server::{Access, ConnId, Server, ServerConfig};

/// GATT attribute types and well-known UUIDs (Core Vol 3 Part G §3, Assigned Numbers).
pub mod uuids {
    /// Primary Service declaration.
    pub const PRIMARY_SERVICE: u16 = 0x2800;
    /// Secondary Service declaration.
    pub const SECONDARY_SERVICE: u16 = 0x2801;
    /// Include declaration.
    pub const INCLUDE: u16 = 0x2802;
    /// Characteristic declaration.
    pub const CHARACTERISTIC: u16 = 0x2803;
    /// Characteristic Extended Properties.
    pub const EXTENDED_PROPERTIES: u16 = 0x2900;
    /// Characteristic User Description.
    pub const USER_DESCRIPTION: u16 = 0x2901;
    /// Client Characteristic Configuration.
    pub const CCCD: u16 = 0x2902;
    /// Server Characteristic Configuration.
    pub const SERVER_CONFIGURATION: u16 = 0x2903;
    /// Characteristic Presentation Format.
    pub const PRESENTATION_FORMAT: u16 = 0x2904;
    /// Characteristic Aggregate Format.
    pub const AGGREGATE_FORMAT: u16 = 0x2905;
    /// Generic Access service.
    pub const GAP_SERVICE: u16 = 0x1800;
    /// Generic Attribute service.
    pub const GATT_SERVICE: u16 = 0x1801;
    /// Device Name.
    pub const DEVICE_NAME: u16 = 0x2A00;
    /// Appearance.
    pub const APPEARANCE: u16 = 0x2A01;
    /// Service Changed.
    pub const SERVICE_CHANGED: u16 = 0x2A05;
    /// Client Supported Features.
    pub const CLIENT_SUPPORTED_FEATURES: u16 = 0x2B29;
    /// Database Hash.
    pub const DATABASE_HASH: u16 = 0x2B2A;
}

macro_rules! bit_set {
    ($(#[$m:meta])* $name:ident($t:ty) { $($(#[$cm:meta])* $c:ident = $v:expr;)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
        pub struct $name(pub $t);

        impl $name {
            $($(#[$cm])* pub const $c: $name = $name($v);)*

            /// No bits.
            pub const fn empty() -> Self {
                $name(0)
            }
            /// The raw bits.
            pub const fn bits(self) -> $t {
                self.0
            }
            /// True when every bit of `other` is set.
            pub const fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }
            /// True when any bit of `other` is set.
            pub const fn intersects(self, other: Self) -> bool {
                self.0 & other.0 != 0
            }
        }

        impl core::ops::BitOr for $name {
            type Output = Self;
            fn bitor(self, o: Self) -> Self {
                $name(self.0 | o.0)
            }
        }

        impl core::ops::BitOrAssign for $name {
            fn bitor_assign(&mut self, o: Self) {
                self.0 |= o.0;
            }
        }
    };
}

bit_set! {
    /// Characteristic properties (Core Vol 3 Part G §3.3.1.1).
    Properties(u8) {
        /// Broadcast.
        BROADCAST = 0x01;
        /// Read.
        READ = 0x02;
        /// Write Without Response.
        WRITE_WITHOUT_RESPONSE = 0x04;
        /// Write.
        WRITE = 0x08;
        /// Notify.
        NOTIFY = 0x10;
        /// Indicate.
        INDICATE = 0x20;
        /// Authenticated Signed Writes.
        AUTHENTICATED_SIGNED_WRITES = 0x40;
        /// Extended Properties.
        EXTENDED_PROPERTIES = 0x80;
    }
}

bit_set! {
    /// Attribute permissions (Core Vol 3 Part F §3.2.5): access, encryption, authentication and
    /// authorization requirements for reads and writes.
    Permissions(u16) {
        /// Readable.
        READ = 0x0001;
        /// Reading needs an encrypted link.
        READ_ENCRYPTED = 0x0002;
        /// Reading needs an authenticated (MITM-protected) encrypted link.
        READ_AUTHENTICATED = 0x0004;
        /// Reading needs the application's authorization.
        READ_AUTHORIZED = 0x0008;
        /// Writable.
        WRITE = 0x0010;
        /// Writing needs an encrypted link.
        WRITE_ENCRYPTED = 0x0020;
        /// Writing needs an authenticated encrypted link.
        WRITE_AUTHENTICATED = 0x0040;
        /// Writing needs the application's authorization.
        WRITE_AUTHORIZED = 0x0080;
    }
}

/// Event bits a characteristic accumulates (Pycom's constants).
pub mod events {
    /// A client read the value.
    pub const CHAR_READ_EVENT: u16 = 0x08;
    /// A client wrote the value.
    pub const CHAR_WRITE_EVENT: u16 = 0x10;
    /// A client changed the CCCD.
    pub const CHAR_SUBSCRIBE_EVENT: u16 = 0x80;
}

#[cfg(test)]
mod tests;
