//! The manual's parameter types (u-connectXpress "Data types"): each accessor checks one
//! parameter and fails with the manual's code for that mistake.
//!
//! | type | form | error |
//! |---|---|---|
//! | integer | decimal, optional `-` | 35 not an integer, 36 out of range |
//! | enumerator | an integer from a list | 39 |
//! | string | `"…"` with `\r \n \t \b \" \\ \0 \xHH` | 37 not quoted, 38 length, 45 unmatched quote, 48 bad escape |
//! | byte_array | hex digit pairs, either case, no separators | 43 odd length or not hex, 44 length |
//! | bd_addr | 12 hex digits + optional `p`/`r` (either case on input) | 42 |
//! | count | wrong number of parameters | 34 |

use crate::codes::AtError;
use alloc::string::String;
use alloc::vec::Vec;

/// An address type suffix of a bd_addr (`p` public, `r` random).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AddrKind {
    /// `p`, the default when there is no suffix.
    Public,
    /// `r`.
    Random,
}

/// A parsed bd_addr: the 6 bytes in reading order (most significant first, as written) and its type.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BdAddr {
    /// The address as written, most significant byte first.
    pub bytes: [u8; 6],
    /// Public or random.
    pub kind: AddrKind,
}

/// The parameters of one command, split at commas outside quotes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Args {
    fields: Vec<String>,
}

impl Args {
    /// Splits `params` (the text after `=`) at commas outside quoted strings. An unclosed quote
    /// is [`AtError::UNMATCHED_QUOTE`]. An empty text has no parameters.
    ///
    /// Inside a quoted string a backslash escapes the next character, so `\"` does not close
    /// it. The fields are kept as written (quotes and escapes included, no trimming); `a,` has
    /// two parameters, the second empty.
    pub fn parse(params: &str) -> Result<Args, AtError> {
        let mut fields = Vec::new();
        if params.is_empty() {
            return Ok(Args { fields });
        }
        let mut field = String::new();
        let mut quoted = false;
        let mut escaped = false;
        for c in params.chars() {
            if quoted {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    quoted = false;
                }
            } else if c == '"' {
                quoted = true;
            } else if c == ',' {
                fields.push(core::mem::take(&mut field));
                continue;
            }
            field.push(c);
        }
        if quoted {
            return Err(AtError::UNMATCHED_QUOTE);
        }
        fields.push(field);
        Ok(Args { fields })
    }

    /// Parameter `i` as written, or [`AtError::ARG_COUNT`] when it is missing.
    fn field(&self, i: usize) -> Result<&str, AtError> {
        self.fields.get(i).map(String::as_str).ok_or(AtError::ARG_COUNT)
    }

    /// The number of parameters.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Fails with [`AtError::ARG_COUNT`] unless there are `min..=max` parameters.
    pub fn count(&self, min: usize, max: usize) -> Result<(), AtError> {
        if (min..=max).contains(&self.fields.len()) {
            Ok(())
        } else {
            Err(AtError::ARG_COUNT)
        }
    }

    /// True when parameter `i` is present.
    pub fn has(&self, i: usize) -> bool {
        i < self.fields.len()
    }

    /// Parameter `i` as an integer in `min..=max`.
    ///
    /// An optional `-` and decimal digits only (no `+`, no spaces) that fit an `i64`, else
    /// [`AtError::INT_ARG`]; outside `min..=max`, [`AtError::INT_RANGE`].
    pub fn int(&self, i: usize, min: i64, max: i64) -> Result<i64, AtError> {
        let v = parse_int(self.field(i)?).ok_or(AtError::INT_ARG)?;
        if (min..=max).contains(&v) {
            Ok(v)
        } else {
            Err(AtError::INT_RANGE)
        }
    }

    /// Parameter `i` as an enumerator: one of `values`.
    ///
    /// Not an integer (as for [`Args::int`]) is [`AtError::INT_ARG`]; an integer not in
    /// `values` is [`AtError::ENUM_ARG`].
    pub fn enumerator(&self, i: usize, values: &[i64]) -> Result<i64, AtError> {
        let v = parse_int(self.field(i)?).ok_or(AtError::INT_ARG)?;
        if values.contains(&v) {
            Ok(v)
        } else {
            Err(AtError::ENUM_ARG)
        }
    }

    /// Parameter `i` as a quoted string (escapes resolved) of `min..=max` bytes.
    ///
    /// Not enclosed in double quotes, or holding a bare `"` inside, is [`AtError::STR_ARG`];
    /// an escape other than `\r \n \t \b \" \\ \0 \xHH` (two hex digits, either case), or
    /// `\xHH` bytes that do not form UTF-8, is [`AtError::ESCAPE_CODE`]; a length in bytes
    /// (after unescaping) outside `min..=max` is [`AtError::STR_LENGTH`].
    pub fn string(&self, i: usize, min: usize, max: usize) -> Result<String, AtError> {
        let field = self.field(i)?.as_bytes();
        let inner = match field {
            [b'"', inner @ .., b'"'] => inner,
            _ => return Err(AtError::STR_ARG),
        };
        let mut out = Vec::with_capacity(inner.len());
        let mut it = inner.iter();
        while let Some(&c) = it.next() {
            match c {
                b'"' => return Err(AtError::STR_ARG),
                b'\\' => {
                    let b = match it.next() {
                        Some(b'r') => b'\r',
                        Some(b'n') => b'\n',
                        Some(b't') => b'\t',
                        Some(b'b') => 0x08,
                        Some(b'"') => b'"',
                        Some(b'\\') => b'\\',
                        Some(b'0') => 0,
                        Some(b'x') => {
                            let hi = it.next().and_then(|&d| hex_digit(d));
                            let lo = it.next().and_then(|&d| hex_digit(d));
                            match (hi, lo) {
                                (Some(hi), Some(lo)) => (hi << 4) | lo,
                                _ => return Err(AtError::ESCAPE_CODE),
                            }
                        }
                        _ => return Err(AtError::ESCAPE_CODE),
                    };
                    out.push(b);
                }
                c => out.push(c),
            }
        }
        let s = String::from_utf8(out).map_err(|_| AtError::ESCAPE_CODE)?;
        if (min..=max).contains(&s.len()) {
            Ok(s)
        } else {
            Err(AtError::STR_LENGTH)
        }
    }

    /// Parameter `i` as a byte_array of `min..=max` bytes (empty only when `min` is 0).
    ///
    /// An odd number of digits, a character that is not a hex digit, or an empty value where
    /// `min` is above 0 is [`AtError::BYTE_ARRAY`];
    /// a byte count outside `min..=max` is [`AtError::BYTE_ARRAY_LENGTH`].
    pub fn bytes(&self, i: usize, min: usize, max: usize) -> Result<Vec<u8>, AtError> {
        let field = self.field(i)?;
        if field.is_empty() && min == 0 {
            return Ok(Vec::new());
        }
        let v = parse_hex(field.as_bytes()).ok_or(AtError::BYTE_ARRAY)?;
        if v.is_empty() {
            return Err(AtError::BYTE_ARRAY);
        }
        if (min..=max).contains(&v.len()) {
            Ok(v)
        } else {
            Err(AtError::BYTE_ARRAY_LENGTH)
        }
    }

    /// Parameter `i` as a bd_addr.
    ///
    /// Exactly 12 hex digits (either case) and an optional `p`/`P` (public, the default) or
    /// `r`/`R` (random) suffix, else [`AtError::BD_ADDR`].
    pub fn bd_addr(&self, i: usize) -> Result<BdAddr, AtError> {
        let field = self.field(i)?.as_bytes();
        let (digits, kind) = match field {
            [digits @ .., b'p' | b'P'] => (digits, AddrKind::Public),
            [digits @ .., b'r' | b'R'] => (digits, AddrKind::Random),
            digits => (digits, AddrKind::Public),
        };
        let v = parse_hex(digits).ok_or(AtError::BD_ADDR)?;
        let bytes: [u8; 6] = v.try_into().map_err(|_| AtError::BD_ADDR)?;
        Ok(BdAddr { bytes, kind })
    }

    /// Parameter `i` as a UUID: a byte_array of 2 or 16 bytes in reading order (most
    /// significant first: `180D`, `7905F431B5CE4E99A40F4B1E122D00D0`).
    ///
    /// Not a byte_array (as for [`Args::bytes`]) is [`AtError::BYTE_ARRAY`]; any length other
    /// than 2 or 16 bytes is [`AtError::BYTE_ARRAY_LENGTH`].
    pub fn uuid(&self, i: usize) -> Result<Vec<u8>, AtError> {
        let v = self.bytes(i, 1, usize::MAX)?;
        if v.len() == 2 || v.len() == 16 {
            Ok(v)
        } else {
            Err(AtError::BYTE_ARRAY_LENGTH)
        }
    }
}

/// An optional `-` and one or more decimal digits that fit an `i64`.
fn parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Only `-` and digits are left, which `i64::from_str` reads (and bounds) as written.
    s.parse().ok()
}

/// The value of one hex digit, either case.
fn hex_digit(d: u8) -> Option<u8> {
    match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        b'A'..=b'F' => Some(d - b'A' + 10),
        _ => None,
    }
}

/// Hex digit pairs (either case, no separators) as bytes; `None` for an odd count or a
/// character that is not a hex digit. Empty input gives an empty vector.
fn parse_hex(s: &[u8]) -> Option<Vec<u8>> {
    let pairs = s.chunks(2);
    let mut out = Vec::with_capacity(pairs.len());
    for pair in pairs {
        match *pair {
            [hi, lo] => out.push((hex_digit(hi)? << 4) | hex_digit(lo)?),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn args(s: &str) -> Args {
        Args::parse(s).expect("valid parameter text")
    }

    fn fields(s: &str) -> Vec<String> {
        args(s).fields
    }

    #[test]
    fn split_at_commas_outside_quotes() {
        assert!(args("").is_empty());
        assert_eq!(args("").len(), 0);
        assert_eq!(fields("1"), vec!["1"]);
        assert_eq!(fields("1,2,3"), vec!["1", "2", "3"]);
        assert_eq!(fields("1,"), vec!["1", ""]);
        assert_eq!(fields(",,"), vec!["", "", ""]);
        assert_eq!(fields("\"a,b\",c"), vec!["\"a,b\"", "c"]);
        assert_eq!(fields("\"a\\\",b\",c"), vec!["\"a\\\",b\"", "c"]);
        assert_eq!(fields("\"a\\\\\",b"), vec!["\"a\\\\\"", "b"]);
        // A backslash outside quotes is an ordinary character.
        assert_eq!(fields("a\\,\"b\""), vec!["a\\", "\"b\""]);
        assert_eq!(args("1,2").len(), 2);
    }

    #[test]
    fn unmatched_quotes() {
        for s in ["\"", "\"abc", "1,\"a,b", "\"a\\\"", "\"a\"\"", "\"a\\\\\\\""] {
            assert_eq!(Args::parse(s), Err(AtError::UNMATCHED_QUOTE), "{s}");
        }
    }

    #[test]
    fn count_and_has() {
        let a = args("1,2");
        assert_eq!(a.count(2, 2), Ok(()));
        assert_eq!(a.count(1, 3), Ok(()));
        assert_eq!(a.count(3, 4), Err(AtError::ARG_COUNT));
        assert_eq!(a.count(0, 1), Err(AtError::ARG_COUNT));
        assert!(a.has(1));
        assert!(!a.has(2));
    }

    #[test]
    fn missing_parameters_are_arg_count() {
        let a = args("1");
        assert_eq!(a.int(1, 0, 9), Err(AtError::ARG_COUNT));
        assert_eq!(a.enumerator(1, &[1]), Err(AtError::ARG_COUNT));
        assert_eq!(a.string(1, 0, 9), Err(AtError::ARG_COUNT));
        assert_eq!(a.bytes(1, 0, 9), Err(AtError::ARG_COUNT));
        assert_eq!(a.bd_addr(1), Err(AtError::ARG_COUNT));
        assert_eq!(a.uuid(1), Err(AtError::ARG_COUNT));
        assert_eq!(args("").int(0, 0, 9), Err(AtError::ARG_COUNT));
    }

    #[test]
    fn integers() {
        let a = args("0,-5,42,007,9223372036854775807,-9223372036854775808");
        assert_eq!(a.int(0, 0, 1), Ok(0));
        assert_eq!(a.int(1, -10, 10), Ok(-5));
        assert_eq!(a.int(2, 42, 42), Ok(42));
        assert_eq!(a.int(3, 0, 10), Ok(7));
        assert_eq!(a.int(4, i64::MIN, i64::MAX), Ok(i64::MAX));
        assert_eq!(a.int(5, i64::MIN, i64::MAX), Ok(i64::MIN));
        assert_eq!(a.int(1, 0, 10), Err(AtError::INT_RANGE));
        assert_eq!(a.int(2, 0, 41), Err(AtError::INT_RANGE));
        assert_eq!(a.int(2, 43, 50), Err(AtError::INT_RANGE));
    }

    #[test]
    fn not_integers() {
        let a = args("x,,-,+5, 5,5 ,1.5,0x10,\"5\",9223372036854775808,--1,1-");
        for i in 0..a.len() {
            assert_eq!(a.int(i, i64::MIN, i64::MAX), Err(AtError::INT_ARG), "{i}");
            assert_eq!(a.enumerator(i, &[5]), Err(AtError::INT_ARG), "{i}");
        }
    }

    #[test]
    fn enumerators() {
        let a = args("1,2,-1");
        assert_eq!(a.enumerator(0, &[0, 1]), Ok(1));
        assert_eq!(a.enumerator(1, &[0, 1]), Err(AtError::ENUM_ARG));
        assert_eq!(a.enumerator(2, &[-1]), Ok(-1));
        assert_eq!(a.enumerator(0, &[]), Err(AtError::ENUM_ARG));
    }

    #[test]
    fn strings_and_escapes() {
        let a = args(r#""Hello, World","","a\r\n\t\b\"\\\0z","\x41\x7e\x7E","\xC3\xA9","Mixed Case""#);
        assert_eq!(a.string(0, 0, 100).as_deref(), Ok("Hello, World"));
        assert_eq!(a.string(1, 0, 0).as_deref(), Ok(""));
        assert_eq!(a.string(2, 0, 100).as_deref(), Ok("a\r\n\t\u{8}\"\\\0z"));
        assert_eq!(a.string(3, 0, 100).as_deref(), Ok("A~~"));
        assert_eq!(a.string(4, 2, 2).as_deref(), Ok("é"));
        assert_eq!(a.string(5, 0, 100).as_deref(), Ok("Mixed Case"));
    }

    #[test]
    fn string_length_is_in_bytes_after_unescaping() {
        let a = args(r#""abc","\x41\x42","\xC3\xA9""#);
        assert_eq!(a.string(0, 3, 3).as_deref(), Ok("abc"));
        assert_eq!(a.string(0, 4, 10), Err(AtError::STR_LENGTH));
        assert_eq!(a.string(0, 0, 2), Err(AtError::STR_LENGTH));
        assert_eq!(a.string(1, 2, 2).as_deref(), Ok("AB"));
        assert_eq!(a.string(1, 3, 8), Err(AtError::STR_LENGTH));
        assert_eq!(a.string(2, 0, 1), Err(AtError::STR_LENGTH));
        assert_eq!(args("\"\"").string(0, 1, 10), Err(AtError::STR_LENGTH));
    }

    #[test]
    fn strings_must_be_quoted() {
        let a = args(r#"abc,,5,"abc"x,x"abc","a"b"c""#);
        for i in 0..a.len() {
            assert_eq!(a.string(i, 0, 100), Err(AtError::STR_ARG), "{i}");
        }
    }

    #[test]
    fn bad_escapes() {
        let a = args(r#""\q","\x","\x4","\xG1","\x4G","\X41","\ ","\xFF","\xC3","\u0041""#);
        for i in 0..a.len() {
            assert_eq!(a.string(i, 0, 100), Err(AtError::ESCAPE_CODE), "{i}");
        }
    }

    #[test]
    fn byte_arrays() {
        let a = args("00,aAbB,0102030405,");
        assert_eq!(a.bytes(0, 1, 1), Ok(vec![0]));
        assert_eq!(a.bytes(1, 1, 4), Ok(vec![0xAA, 0xBB]));
        assert_eq!(a.bytes(2, 5, 5), Ok(vec![1, 2, 3, 4, 5]));
        assert_eq!(a.bytes(2, 6, 10), Err(AtError::BYTE_ARRAY_LENGTH));
        assert_eq!(a.bytes(2, 1, 4), Err(AtError::BYTE_ARRAY_LENGTH));
        assert_eq!(a.bytes(3, 0, 10), Ok(vec![]), "an empty value where none is allowed");
        assert_eq!(a.bytes(3, 1, 10), Err(AtError::BYTE_ARRAY), "an empty value where one is needed");
    }

    #[test]
    fn not_byte_arrays() {
        let a = args(r#"0,abc,0g,g0,"00",00 ,-1,0x00"#);
        for i in 0..a.len() {
            assert_eq!(a.bytes(i, 0, 100), Err(AtError::BYTE_ARRAY), "{i}");
            assert_eq!(a.uuid(i), Err(AtError::BYTE_ARRAY), "{i}");
        }
    }

    #[test]
    fn bd_addrs() {
        let a = args("0123456789ABp,a1b2c3d4e5f6r,AABBCCDDEEFF,112233445566P,112233445566R");
        let bytes = [0x01, 0x23, 0x45, 0x67, 0x89, 0xAB];
        assert_eq!(a.bd_addr(0), Ok(BdAddr { bytes, kind: AddrKind::Public }));
        let bytes = [0xA1, 0xB2, 0xC3, 0xD4, 0xE5, 0xF6];
        assert_eq!(a.bd_addr(1), Ok(BdAddr { bytes, kind: AddrKind::Random }));
        let bytes = [0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF];
        assert_eq!(a.bd_addr(2), Ok(BdAddr { bytes, kind: AddrKind::Public }));
        let bytes = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66];
        assert_eq!(a.bd_addr(3), Ok(BdAddr { bytes, kind: AddrKind::Public }));
        assert_eq!(a.bd_addr(4), Ok(BdAddr { bytes, kind: AddrKind::Random }));
    }

    #[test]
    fn not_bd_addrs() {
        let a = args(
            r#",p,0123456789A,0123456789Ap,0123456789ABC,0123456789ABx,0123456789ABpp,0123456789AG,"0123456789AB",01:23:45:67:89:AB"#,
        );
        for i in 0..a.len() {
            assert_eq!(a.bd_addr(i), Err(AtError::BD_ADDR), "{i}");
        }
    }

    #[test]
    fn uuids() {
        let a = args("180D,7905F431B5CE4E99A40F4B1E122D00D0,18,180D00,7905F431B5CE4E99A40F4B1E122D00D000");
        assert_eq!(a.uuid(0), Ok(vec![0x18, 0x0D]));
        assert_eq!(
            a.uuid(1),
            Ok(vec![0x79, 0x05, 0xF4, 0x31, 0xB5, 0xCE, 0x4E, 0x99, 0xA4, 0x0F, 0x4B, 0x1E, 0x12, 0x2D, 0x00, 0xD0])
        );
        for i in 2..5 {
            assert_eq!(a.uuid(i), Err(AtError::BYTE_ARRAY_LENGTH), "{i}");
        }
    }
}
