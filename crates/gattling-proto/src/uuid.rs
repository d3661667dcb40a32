//! Bluetooth UUIDs in their 16-, 32- and 128-bit forms (Core Vol 3 Part B §2.5.1).

use crate::codec::DecodeError;
use core::fmt;

/// The Bluetooth Base UUID `00000000-0000-1000-8000-00805F9B34FB`, little-endian (over-the-air order).
pub const BASE_UUID_LE: [u8; 16] =
    [0xFB, 0x34, 0x9B, 0x5F, 0x80, 0x00, 0x00, 0x80, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00];

/// A Bluetooth UUID. 16- and 32-bit forms are aliases into the Base UUID; 128-bit values are stored
/// little-endian as they travel over the air.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Uuid {
    /// A 16-bit SIG-assigned UUID.
    U16(u16),
    /// A 32-bit UUID.
    U32(u32),
    /// A full 128-bit UUID, little-endian bytes.
    U128([u8; 16]),
}

impl Uuid {
    /// Decodes a UUID from its 2, 4 or 16 little-endian wire bytes.
    pub fn from_le_bytes(b: &[u8]) -> Result<Self, DecodeError> {
        match *b {
            [a, c] => Ok(Uuid::U16(u16::from_le_bytes([a, c]))),
            [a, c, d, e] => Ok(Uuid::U32(u32::from_le_bytes([a, c, d, e]))),
            _ => match <[u8; 16]>::try_from(b) {
                Ok(arr) => Ok(Uuid::U128(arr)),
                Err(_) => Err(DecodeError::Invalid { what: "UUID", reason: "length is not 2, 4 or 16 bytes" }),
            },
        }
    }

    /// Builds a 128-bit UUID from its big-endian (reading-order) bytes.
    pub const fn from_be_u128(v: u128) -> Self {
        Uuid::U128(v.to_le_bytes())
    }

    /// The full 128-bit value, little-endian.
    pub fn to_u128_le(&self) -> [u8; 16] {
        match *self {
            Uuid::U16(v) => Self::expand(v as u32),
            Uuid::U32(v) => Self::expand(v),
            Uuid::U128(b) => b,
        }
    }

    fn expand(v: u32) -> [u8; 16] {
        let mut b = BASE_UUID_LE;
        b[12..16].copy_from_slice(&v.to_le_bytes());
        b
    }

    /// The shortest equivalent form (a 128-bit value on the Base UUID becomes 16- or 32-bit).
    pub fn shortest(&self) -> Self {
        let b = self.to_u128_le();
        if b[..12] == BASE_UUID_LE[..12] {
            let v = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
            match u16::try_from(v) {
                Ok(s) => Uuid::U16(s),
                Err(_) => Uuid::U32(v),
            }
        } else {
            Uuid::U128(b)
        }
    }

    /// The 16-bit value, if this UUID has one.
    pub fn as_u16(&self) -> Option<u16> {
        match self.shortest() {
            Uuid::U16(v) => Some(v),
            _ => None,
        }
    }

    /// Wire length of this form: 2, 4 or 16.
    pub fn wire_len(&self) -> usize {
        match self {
            Uuid::U16(_) => 2,
            Uuid::U32(_) => 4,
            Uuid::U128(_) => 16,
        }
    }

    /// Appends the little-endian wire bytes of this form.
    pub fn write_le(&self, out: &mut alloc::vec::Vec<u8>) {
        match *self {
            Uuid::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Uuid::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Uuid::U128(b) => out.extend_from_slice(&b),
        }
    }
}

impl From<u16> for Uuid {
    fn from(v: u16) -> Self {
        Uuid::U16(v)
    }
}

/// Equality is by value: `U16(0x180D)` equals the 128-bit form of 0x180D.
pub fn same(a: &Uuid, b: &Uuid) -> bool {
    a.to_u128_le() == b.to_u128_le()
}

impl fmt::Display for Uuid {
    /// 16-bit as 4 hex digits, 32-bit as 8, 128-bit in the standard 36-character form (upper case).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Uuid::U16(v) => write!(f, "{v:04X}"),
            Uuid::U32(v) => write!(f, "{v:08X}"),
            Uuid::U128(le) => {
                let mut be = le;
                be.reverse();
                for (i, byte) in be.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{byte:02X}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_forms() {
        assert_eq!(alloc::format!("{}", Uuid::U16(0x180d)), "180D");
        let full = Uuid::U16(0x180d).to_u128_le();
        assert_eq!(alloc::format!("{}", Uuid::U128(full)), "0000180D-0000-1000-8000-00805F9B34FB");
    }

    #[test]
    fn shortest_recovers_aliases() {
        let u = Uuid::U128(Uuid::U32(0x1234_5678).to_u128_le());
        assert_eq!(u.shortest(), Uuid::U32(0x1234_5678));
        assert_eq!(Uuid::U128(Uuid::U16(0x2a00).to_u128_le()).as_u16(), Some(0x2a00));
    }

    #[test]
    fn bad_lengths_are_errors() {
        assert!(Uuid::from_le_bytes(&[1, 2, 3]).is_err());
        assert_eq!(Uuid::from_le_bytes(&[0x0d, 0x18]), Ok(Uuid::U16(0x180d)));
    }
}
