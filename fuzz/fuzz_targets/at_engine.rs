//! The gattling-at AT line engine and parameter parser: arbitrary bytes pushed in chunks into an
//! `Engine`, every line drained, and every Set line's parameters (and a basic command's) run
//! through `Args::parse` and every accessor, with what they accept written back by `format` and
//! parsed again.
//!
//! Input: byte 0 picks the chunk size (bits 0-5: 1..=64 bytes), echo off (bit 6) and a 32-byte
//! line bound instead of the default (bit 7); byte 1 picks S3 (bits 0-1: CR, LF, `#`, CR) and
//! S5 (bit 2: 8 or 127); the rest is the serial stream.
#![no_main]

use gattling_at::engine::{Command, Engine, Form, Line, Registers, DEFAULT_MAX_LINE};
use gattling_at::format::{self, Field};
use gattling_at::params::Args;
use gattling_at::AtError;
use libfuzzer_sys::fuzz_target;

/// All lines of `stream` pushed in `chunk`-byte pieces, and the echo.
fn run(stream: &[u8], chunk: usize, max_line: usize, regs: Registers) -> (Vec<Line>, Vec<u8>) {
    let mut engine = Engine::new(max_line);
    engine.registers = regs;
    let mut lines = Vec::new();
    let mut echo = Vec::new();
    for piece in stream.chunks(chunk.max(1)) {
        engine.push(piece);
        echo.extend(engine.take_echo());
        lines.extend(std::iter::from_fn(|| engine.poll_line()));
    }
    (lines, echo)
}

/// The bytes a parsed command took on its line, without the terminator.
fn line_len(c: &Command) -> usize {
    let form = match c.form {
        Form::Action => 0,
        Form::Read | Form::Set => 1,
        Form::Test => 2,
    };
    2 + c.name.len() + form + c.params.len()
}

/// The text `format::info` writes for `fields`, between `+X:` and the trailer.
fn written(fields: &[Field<'_>]) -> String {
    let mut out = Vec::new();
    format::info(&mut out, &Registers::default(), "+X", fields);
    let body = &out[5..out.len() - 2];
    assert!(body.iter().all(|b| (0x20..=0x7E).contains(b)), "unprintable output {out:?}");
    String::from_utf8(body.to_vec()).expect("printable ASCII")
}

/// Every accessor on every parameter (and one past the end).
fn check_params(params: &str) {
    let args = match Args::parse(params) {
        Ok(args) => args,
        Err(e) => {
            assert_eq!(e, AtError::UNMATCHED_QUOTE);
            return;
        }
    };
    assert_eq!(args.is_empty(), params.is_empty());
    assert_eq!(args.count(args.len(), args.len()), Ok(()));
    for i in 0..=args.len() {
        if i == args.len() {
            assert!(!args.has(i));
            assert_eq!(args.int(i, 0, 1), Err(AtError::ARG_COUNT));
            assert_eq!(args.string(i, 0, 1), Err(AtError::ARG_COUNT));
            assert_eq!(args.bytes(i, 0, 1), Err(AtError::ARG_COUNT));
            assert_eq!(args.bd_addr(i), Err(AtError::ARG_COUNT));
            assert_eq!(args.uuid(i), Err(AtError::ARG_COUNT));
            assert_eq!(args.enumerator(i, &[0]), Err(AtError::ARG_COUNT));
            continue;
        }
        assert!(args.has(i));
        match args.int(i, i64::MIN, i64::MAX) {
            Ok(v) => {
                assert_eq!(args.int(i, v, v), Ok(v));
                assert_eq!(args.enumerator(i, &[v]), Ok(v));
                if v < i64::MAX {
                    assert_eq!(args.int(i, v + 1, i64::MAX), Err(AtError::INT_RANGE));
                    assert_eq!(args.enumerator(i, &[v + 1]), Err(AtError::ENUM_ARG));
                }
                let again = Args::parse(&written(&[Field::Int(v)])).expect("integer");
                assert_eq!(again.int(0, v, v), Ok(v));
            }
            Err(e) => {
                assert_eq!(e, AtError::INT_ARG);
                assert_eq!(args.enumerator(i, &[0, 1]), Err(AtError::INT_ARG));
            }
        }
        let _ = args.int(i, -10, 10);
        match args.string(i, 0, usize::MAX) {
            Ok(s) => {
                assert_eq!(args.string(i, s.len(), s.len()).as_ref(), Ok(&s));
                if !s.is_empty() {
                    assert_eq!(args.string(i, 0, s.len() - 1), Err(AtError::STR_LENGTH));
                }
                let again = Args::parse(&written(&[Field::Str(&s)])).expect("quoted string");
                assert_eq!(again.len(), 1);
                assert_eq!(again.string(0, 0, usize::MAX), Ok(s));
            }
            Err(e) => assert!([AtError::STR_ARG, AtError::ESCAPE_CODE].contains(&e), "string: {e:?}"),
        }
        match args.bytes(i, 0, usize::MAX) {
            // An empty field is an empty byte array only where none may be given (min 0).
            Ok(b) if b.is_empty() => assert_eq!(args.bytes(i, 1, usize::MAX), Err(AtError::BYTE_ARRAY)),
            Ok(b) => {
                assert_eq!(args.bytes(i, b.len() + 1, usize::MAX), Err(AtError::BYTE_ARRAY_LENGTH));
                let again = Args::parse(&written(&[Field::Hex(&b)])).expect("hex");
                assert_eq!(again.bytes(0, b.len(), b.len()), Ok(b.clone()));
                match args.uuid(i) {
                    Ok(u) => assert_eq!(u, b),
                    Err(e) => {
                        assert_eq!(e, AtError::BYTE_ARRAY_LENGTH);
                        assert!(b.len() != 2 && b.len() != 16);
                    }
                }
            }
            Err(e) => {
                assert_eq!(e, AtError::BYTE_ARRAY);
                assert_eq!(args.uuid(i), Err(AtError::BYTE_ARRAY));
            }
        }
        match args.bd_addr(i) {
            Ok(addr) => {
                let text = written(&[Field::Addr(addr)]);
                assert_eq!(text.len(), 13);
                assert_eq!(Args::parse(&text).and_then(|a| a.bd_addr(0)), Ok(addr));
            }
            Err(e) => assert_eq!(e, AtError::BD_ADDR),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [control, regs_byte, stream @ ..] = data else { return };
    let chunk = usize::from(control & 0x3F) + 1;
    let max_line = if control & 0x80 != 0 { 32 } else { DEFAULT_MAX_LINE };
    let regs = Registers {
        echo: control & 0x40 == 0,
        s3: [b'\r', b'\n', b'#', b'\r'][usize::from(regs_byte & 3)],
        s5: if regs_byte & 4 != 0 { 127 } else { 8 },
        ..Registers::default()
    };

    let (lines, echo) = run(stream, chunk, max_line, regs);
    let (whole, whole_echo) = run(stream, stream.len(), max_line, regs);
    assert_eq!(lines, whole, "chunked and one-piece lines differ");
    assert_eq!(echo, whole_echo);
    let printable: Vec<u8> = stream
        .iter()
        .copied()
        .filter(|&b| (0x20..=0x7E).contains(&b) || b == regs.s3 || b == b'\n' || b == regs.s5)
        .collect();
    assert_eq!(echo, if regs.echo { printable } else { Vec::new() });

    let mut out = Vec::new();
    for line in &lines {
        match line {
            Line::Command(c) => {
                assert!(line_len(c) <= max_line, "{c:?} over the bound {max_line}");
                assert!(c.name.bytes().all(|b| !b.is_ascii_lowercase()), "{c:?}");
                assert!(c.form == Form::Set || c.form == Form::Action || c.params.is_empty());
                if !c.params.is_empty() {
                    check_params(&c.params);
                }
                format::result(&mut out, &regs, Ok(()), true);
            }
            Line::Invalid(e) => {
                assert!([AtError::INVALID_COMMAND, AtError::INVALID_CHARACTER].contains(e), "{e:?}");
                format::result(&mut out, &regs, Err(*e), true);
            }
            Line::TooLong => format::result(&mut out, &regs, Err(AtError::INVALID_COMMAND), false),
        }
    }
    assert!(!out.contains(&0x01));
});
