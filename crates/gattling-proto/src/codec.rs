//! Byte-level helpers shared by every codec: a bounds-checked little-endian reader and the typed
//! decode error. Nothing here panics on any input.

use alloc::vec::Vec;

/// Why a sequence of bytes could not be decoded. `what` names the structure being decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before the structure did.
    #[error("{what}: truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Structure being decoded.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// A length field or the input is longer than allowed.
    #[error("{what}: oversized: {len} bytes exceeds the maximum of {max}")]
    Oversized {
        /// Structure being decoded.
        what: &'static str,
        /// Length found.
        len: usize,
        /// Maximum allowed.
        max: usize,
    },
    /// A code (opcode, packet type, event code, ...) that this decoder does not know.
    #[error("{what}: unknown code {code:#04x}")]
    Unknown {
        /// Structure being decoded.
        what: &'static str,
        /// The unknown code.
        code: u16,
    },
    /// The structure is malformed in a way other than its length.
    #[error("{what}: invalid: {reason}")]
    Invalid {
        /// Structure being decoded.
        what: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
    /// The input carries bytes after the end of the structure.
    #[error("{what}: {extra} trailing bytes")]
    Trailing {
        /// Structure being decoded.
        what: &'static str,
        /// Number of unexpected bytes.
        extra: usize,
    },
}

/// A bounds-checked little-endian cursor over a borrowed byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Starts reading `buf`; `what` names the structure in errors.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated { what: self.what, need: n, have: self.buf.len() });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Takes exactly `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// Reads one signed byte.
    pub fn i8(&mut self) -> Result<i8, DecodeError> {
        Ok(self.u8()? as i8)
    }

    /// Reads a little-endian u16.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// Reads a little-endian 24-bit value.
    pub fn u24(&mut self) -> Result<u32, DecodeError> {
        let b: [u8; 3] = self.array()?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], 0]))
    }

    /// Reads a little-endian u32.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// Reads a little-endian u64.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Takes everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.buf)
    }

    /// Fails with [`DecodeError::Trailing`] unless everything was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing { what: self.what, extra: self.buf.len() })
        }
    }
}

/// Little-endian writing helpers on a byte vector.
pub trait Writer {
    /// Appends one byte.
    fn put_u8(&mut self, v: u8);
    /// Appends a little-endian u16.
    fn put_u16(&mut self, v: u16);
    /// Appends a little-endian u32.
    fn put_u32(&mut self, v: u32);
    /// Appends raw bytes.
    fn put(&mut self, bytes: &[u8]);
}

impl Writer for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reports_truncation_with_sizes() {
        let mut r = Reader::new(&[1, 2, 3], "thing");
        assert_eq!(r.u16(), Ok(0x0201));
        assert_eq!(r.u16(), Err(DecodeError::Truncated { what: "thing", need: 2, have: 1 }));
        assert_eq!(r.u8(), Ok(3));
        assert!(r.finish().is_ok());
    }

    #[test]
    fn finish_reports_trailing_bytes() {
        let r = Reader::new(&[1, 2], "x");
        assert_eq!(r.finish(), Err(DecodeError::Trailing { what: "x", extra: 2 }));
    }
}
