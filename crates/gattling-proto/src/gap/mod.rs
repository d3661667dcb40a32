//! Generic Access Profile: device addresses and advertising data (Core Vol 3 Part C, Vol 6 Part B §1.3).

pub mod ad;
pub mod privacy;

use core::fmt;
use core::str::FromStr;

/// A 48-bit device address, stored little-endian as HCI carries it (Core Vol 6 Part B §1.3).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct BdAddr(pub [u8; 6]);

impl BdAddr {
    /// True when the two most significant bits are `11`: a static random address (Vol 6 Part B §1.3.2.1).
    pub fn is_static_random(&self) -> bool {
        self.0[5] & 0xC0 == 0xC0
    }

    /// Forces the two most significant bits to `11`, making a valid static random address
    /// (unless the rest is all zeros or all ones, which the spec forbids).
    pub fn into_static_random(mut self) -> Self {
        self.0[5] |= 0xC0;
        self
    }
}

impl fmt::Display for BdAddr {
    /// Most significant byte first, colon separated: `C0:11:22:33:44:55`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}", b[5], b[4], b[3], b[2], b[1], b[0])
    }
}

impl fmt::Debug for BdAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BdAddr({self})")
    }
}

/// A device address that could not be parsed from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Bluetooth address: expected 6 hex bytes like C0:11:22:33:44:55 or c01122334455")]
pub struct AddrParseError;

impl FromStr for BdAddr {
    type Err = AddrParseError;

    /// Accepts `XX:XX:XX:XX:XX:XX`, `XX-XX-...` or 12 bare hex digits, most significant byte first.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.bytes().filter(|c| *c != b':' && *c != b'-');
        let mut nibbles = [0u8; 12];
        let mut n = 0;
        for c in digits {
            let v = (c as char).to_digit(16).ok_or(AddrParseError)? as u8;
            *nibbles.get_mut(n).ok_or(AddrParseError)? = v;
            n += 1;
        }
        if n != 12 || (s.contains([':', '-']) && s.len() != 17) {
            return Err(AddrParseError);
        }
        let mut out = [0u8; 6];
        for (i, o) in out.iter_mut().enumerate() {
            *o = nibbles[10 - 2 * i] << 4 | nibbles[11 - 2 * i];
        }
        Ok(BdAddr(out))
    }
}

/// The type of a device address as HCI reports it (Core Vol 4 Part E §7.7.65.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum AddressType {
    /// Public device address (0x00).
    #[default]
    Public,
    /// Random device address (0x01).
    Random,
    /// Public identity address, resolved from an RPA (0x02).
    PublicIdentity,
    /// Random (static) identity address, resolved from an RPA (0x03).
    RandomIdentity,
}

impl AddressType {
    /// The HCI code of this type.
    pub fn code(self) -> u8 {
        match self {
            AddressType::Public => 0,
            AddressType::Random => 1,
            AddressType::PublicIdentity => 2,
            AddressType::RandomIdentity => 3,
        }
    }

    /// Decodes an HCI address-type code; unknown codes are `None`.
    pub fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0 => AddressType::Public,
            1 => AddressType::Random,
            2 => AddressType::PublicIdentity,
            3 => AddressType::RandomIdentity,
            _ => return None,
        })
    }

    /// The address type to use when connecting to a peer reported with this type
    /// (identity types map back to public/random for LE Create Connection).
    pub fn peer_code(self) -> u8 {
        match self {
            AddressType::Public | AddressType::PublicIdentity => 0,
            AddressType::Random | AddressType::RandomIdentity => 1,
        }
    }
}

/// An address together with its type.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Address {
    /// The 48-bit address.
    pub addr: BdAddr,
    /// Public or random.
    pub kind: AddressType,
}

impl fmt::Display for Address {
    /// `C0:11:22:33:44:55/random`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = match self.kind {
            AddressType::Public | AddressType::PublicIdentity => "public",
            AddressType::Random | AddressType::RandomIdentity => "random",
        };
        write!(f, "{}/{}", self.addr, t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_text_round_trip() {
        let a: BdAddr = "C0:11:22:33:44:55".parse().unwrap();
        assert_eq!(a.0, [0x55, 0x44, 0x33, 0x22, 0x11, 0xC0]);
        assert_eq!(alloc::format!("{a}"), "C0:11:22:33:44:55");
        assert!(a.is_static_random());
        assert_eq!("c01122334455".parse::<BdAddr>(), Ok(a));
        assert!("C0:11:22:33:44".parse::<BdAddr>().is_err());
        assert!("C0:11:22:33:44:5G".parse::<BdAddr>().is_err());
        assert!("C0:11:22:33:44:55:66".parse::<BdAddr>().is_err());
    }
}
