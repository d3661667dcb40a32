//! Response lines, byte-exact (u-connectXpress "General conventions"): information text
//! `S3 S4 +NAME:v1,v2 S3 S4`, final results `S3 S4 OK S3 S4`, `S3 S4 ERROR S3 S4` or
//! `S3 S4 ERROR:<code> S3 S4`, URCs like information text, bare values (`AT+CGMI` → `u-blox`)
//! without a prefix.
//!
//! Field forms: integers in decimal; byte arrays as upper-case hex pairs; strings quoted, with
//! `"`, `\` and every byte outside printable ASCII escaped (`\"`, `\\`, `\xNN`), so no line ever
//! carries 0x01 or other control bytes; bd_addr as 12 upper-case hex digits and a lower-case
//! `p` or `r`; no space after the colon.

use crate::engine::Registers;
use crate::params::{AddrKind, BdAddr};
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// One field of a response or URC line.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Field<'a> {
    /// An integer, in decimal.
    Int(i64),
    /// A byte array, as upper-case hex.
    Hex(&'a [u8]),
    /// A string, quoted and escaped.
    Str(&'a str),
    /// A Bluetooth device address with its type suffix.
    Addr(BdAddr),
    /// Text written as it is (already in its final form).
    Raw(&'a str),
}

/// Appends `S3 S4 name:f1,f2 S3 S4` (a `+NAME:` information line or URC) to `out`.
///
/// `name` is written as given, so it carries its `+` (`+UBTGR`). With no fields the line is
/// `name:` with nothing after the colon.
pub fn info(out: &mut Vec<u8>, regs: &Registers, name: &str, fields: &[Field<'_>]) {
    out.extend_from_slice(&[regs.s3, regs.s4]);
    out.extend_from_slice(name.as_bytes());
    out.push(b':');
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_field(out, field);
    }
    out.extend_from_slice(&[regs.s3, regs.s4]);
}

/// Appends one field in its response form.
fn write_field(out: &mut Vec<u8>, field: &Field<'_>) {
    match *field {
        Field::Int(v) => out.extend_from_slice(v.to_string().as_bytes()),
        Field::Hex(bytes) => write_hex(out, bytes),
        Field::Str(s) => write_quoted(out, s),
        Field::Addr(addr) => {
            write_hex(out, &addr.bytes);
            out.push(match addr.kind {
                AddrKind::Public => b'p',
                AddrKind::Random => b'r',
            });
        }
        Field::Raw(s) => out.extend_from_slice(s.as_bytes()),
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `b` as two upper-case hex digits.
fn write_hex_byte(out: &mut Vec<u8>, b: u8) {
    out.push(HEX[usize::from(b >> 4)]);
    out.push(HEX[usize::from(b & 0x0F)]);
}

/// Appends `bytes` as upper-case hex pairs.
fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        write_hex_byte(out, b);
    }
}

/// Appends `s` quoted and escaped (see [`quoted`]).
fn write_quoted(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for b in s.bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x20..=0x7E => out.push(b),
            _ => {
                out.extend_from_slice(b"\\x");
                write_hex_byte(out, b);
            }
        }
    }
    out.push(b'"');
}

/// Appends `S3 S4 text S3 S4` (a bare value such as `u-blox`, or `+STARTUP`) to `out`.
pub fn text(out: &mut Vec<u8>, regs: &Registers, text: &str) {
    out.extend_from_slice(&[regs.s3, regs.s4]);
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&[regs.s3, regs.s4]);
}

/// Appends the final result: `OK`, `ERROR`, or `ERROR:<code>` when `extended` is set.
pub fn result(out: &mut Vec<u8>, regs: &Registers, outcome: Result<(), crate::AtError>, extended: bool) {
    out.extend_from_slice(&[regs.s3, regs.s4]);
    match outcome {
        Ok(()) => out.extend_from_slice(b"OK"),
        Err(e) if extended => {
            out.extend_from_slice(b"ERROR:");
            out.extend_from_slice(e.code().to_string().as_bytes());
        }
        Err(_) => out.extend_from_slice(b"ERROR"),
    }
    out.extend_from_slice(&[regs.s3, regs.s4]);
}

/// A string field in its quoted, escaped form.
///
/// `"` becomes `\"`, `\` becomes `\\`, and every byte outside printable ASCII `0x20..=0x7E`
/// (CR, LF and TAB included, and each byte of a non-ASCII character) becomes `\xNN` with
/// upper-case hex, so [`crate::params::Args::string`] reads back the same string.
pub fn quoted(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    write_quoted(&mut out, s);
    // Only printable ASCII was written.
    out.into_iter().map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::AddrKind;
    use crate::AtError;

    fn info_line(name: &str, fields: &[Field<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        info(&mut out, &Registers::default(), name, fields);
        out
    }

    #[test]
    fn information_lines() {
        let addr = BdAddr { bytes: [0x01, 0x23, 0x45, 0x67, 0x89, 0xAB], kind: AddrKind::Random };
        assert_eq!(
            info_line(
                "+UBTGR",
                &[
                    Field::Int(0),
                    Field::Int(-12),
                    Field::Hex(&[0x0a, 0xbc]),
                    Field::Str("a\"b"),
                    Field::Addr(addr),
                    Field::Raw("[1,2]"),
                ]
            ),
            b"\r\n+UBTGR:0,-12,0ABC,\"a\\\"b\",0123456789ABr,[1,2]\r\n"
        );
        let addr = BdAddr { bytes: [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff], kind: AddrKind::Public };
        assert_eq!(info_line("+UEBTC", &[Field::Int(1), Field::Addr(addr)]), b"\r\n+UEBTC:1,AABBCCDDEEFFp\r\n");
        assert_eq!(info_line("+X", &[]), b"\r\n+X:\r\n");
        assert_eq!(info_line("+X", &[Field::Hex(&[])]), b"\r\n+X:\r\n");
        assert_eq!(info_line("+X", &[Field::Int(i64::MIN)]), b"\r\n+X:-9223372036854775808\r\n");
    }

    #[test]
    fn lines_use_s3_and_s4() {
        let regs = Registers { s3: b'#', s4: b'$', ..Registers::default() };
        let mut out = Vec::new();
        info(&mut out, &regs, "+A", &[Field::Int(1)]);
        text(&mut out, &regs, "u-blox");
        result(&mut out, &regs, Ok(()), false);
        assert_eq!(out, b"#$+A:1#$#$u-blox#$#$OK#$");
    }

    #[test]
    fn appends_to_what_is_there() {
        let mut out = b"AT\r".to_vec();
        text(&mut out, &Registers::default(), "+STARTUP");
        assert_eq!(out, b"AT\r\r\n+STARTUP\r\n");
    }

    #[test]
    fn text_lines() {
        let mut out = Vec::new();
        text(&mut out, &Registers::default(), "\"3.4.0\",\"0123\"");
        assert_eq!(out, b"\r\n\"3.4.0\",\"0123\"\r\n");
    }

    #[test]
    fn final_results() {
        let regs = Registers::default();
        let cases: [(Result<(), AtError>, bool, &[u8]); 5] = [
            (Ok(()), false, b"\r\nOK\r\n"),
            (Ok(()), true, b"\r\nOK\r\n"),
            (Err(AtError::INVALID_COMMAND), false, b"\r\nERROR\r\n"),
            (Err(AtError::INVALID_COMMAND), true, b"\r\nERROR:32\r\n"),
            (Err(AtError::from_att(0x0A)), true, b"\r\nERROR:100\r\n"),
        ];
        for (outcome, extended, expected) in cases {
            let mut out = Vec::new();
            result(&mut out, &regs, outcome, extended);
            assert_eq!(out, expected, "{outcome:?} {extended}");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(quoted(""), "\"\"");
        assert_eq!(quoted("Hello, World"), "\"Hello, World\"");
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quoted("\r\n\t\u{1}\u{7f}"), "\"\\x0D\\x0A\\x09\\x01\\x7F\"");
        assert_eq!(quoted("é"), "\"\\xC3\\xA9\"");
        assert_eq!(quoted("~ "), "\"~ \"");
    }

    #[test]
    fn no_control_bytes_in_output() {
        let mut out = Vec::new();
        info(&mut out, &Registers::default(), "+X", &[Field::Str("\u{1}\0\r\n\u{ff}")]);
        let body = &out[2..out.len() - 2];
        assert!(body.iter().all(|b| (0x20..=0x7E).contains(b)), "{out:?}");
    }
}
