//! Property tests of the line engine, the parameter parser and the response formatter together.

use gattling_at::engine::{Command, Engine, Form, Line, Registers};
use gattling_at::format::{self, Field};
use gattling_at::params::{AddrKind, Args, BdAddr};
use proptest::prelude::*;

fn drain(e: &mut Engine) -> Vec<Line> {
    std::iter::from_fn(|| e.poll_line()).collect()
}

/// The number of bytes a parsed command took on its line (without the terminator).
fn line_len(c: &Command) -> usize {
    let form = match c.form {
        Form::Action => 0,
        Form::Read | Form::Set => 1,
        Form::Test => 2,
    };
    2 + c.name.len() + form + c.params.len()
}

/// The single Set command of a line, or a test failure.
fn set_params(line: &[u8]) -> Result<String, TestCaseError> {
    let mut e = Engine::default();
    e.push(line);
    match drain(&mut e).as_slice() {
        [Line::Command(Command { form: Form::Set, params, .. })] => Ok(params.clone()),
        other => Err(TestCaseError::fail(format!("{line:?} gave {other:?}"))),
    }
}

/// Splits `bytes` at the given cut points (taken modulo its length).
fn pieces<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut start = 0;
    for c in cuts {
        out.push(&bytes[start..c]);
        start = c;
    }
    out.push(&bytes[start..]);
    out
}

/// Plausible command lines, with terminators, and some garbage.
fn line_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"AT\r".to_vec()),
        Just(b"ATE0\r\n".to_vec()),
        Just(b"at+ubtgr?\r".to_vec()),
        Just(b"AT+USYEE=?\r".to_vec()),
        Just(b"ATS3=13\r".to_vec()),
        Just(b"AT+X\x08+UBTC=0123456789ABp\r".to_vec()),
        "[ -~]{0,40}".prop_map(|s| format!("AT+UBTGW={s}\r").into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..40),
    ]
}

proptest! {
    /// Any bytes, in any pieces: no panic, no line longer than the bound, the echo is the input
    /// (its printable part),
    /// and after garbage much longer than the bound a valid line still parses.
    #[test]
    fn any_bytes_never_break_the_engine(
        max_line in 0usize..48,
        input in proptest::collection::vec(any::<u8>(), 0..512),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        filler in any::<u8>(),
    ) {
        let mut e = Engine::new(max_line);
        prop_assert_eq!(e.max_line(), max_line);
        for piece in pieces(&input, &cuts) {
            e.push(piece);
        }
        // The echo is the input without control bytes other than CR, LF and backspace.
        let echoed: Vec<u8> =
            input.iter().copied().filter(|&b| (0x20..=0x7E).contains(&b) || matches!(b, b'\r' | b'\n' | 8)).collect();
        prop_assert_eq!(e.take_echo(), echoed);
        for line in drain(&mut e) {
            if let Line::Command(c) = &line {
                prop_assert!(line_len(c) <= max_line, "{:?} longer than {}", c, max_line);
            }
        }
        // max_line * 4 bytes without a terminator (the filler, unless it is CR), then CR, then a
        // valid line (which needs 2 bytes of room).
        let filler = if filler == b'\r' { b'x' } else { filler };
        e.push(&vec![filler; max_line * 4 + 1]);
        e.push(b"\r");
        e.push(b"AT+X?\r");
        let lines = drain(&mut e);
        if max_line >= 5 {
            let expected = Line::Command(Command { name: "+X".into(), form: Form::Read, params: String::new() });
            prop_assert_eq!(lines.last(), Some(&expected));
        } else {
            prop_assert_eq!(lines.last(), Some(&Line::TooLong));
        }
    }

    /// A string written by `format::quoted`, sent on a command line, reads back unchanged.
    #[test]
    fn quoted_strings_read_back(s in any::<String>(), n in 0i64..100) {
        let q = format::quoted(&s);
        let direct = Args::parse(&q).and_then(|a| a.string(0, 0, usize::MAX));
        prop_assert_eq!(direct.as_deref(), Ok(s.as_str()));

        let mut line = format!("AT+UBTGW={n},{q},{q}").into_bytes();
        line.push(b'\r');
        let params = set_params(&line)?;
        let args = Args::parse(&params).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(args.len(), 3);
        prop_assert_eq!(args.int(0, 0, 99), Ok(n));
        prop_assert_eq!(args.string(1, s.len(), s.len()), Ok(s.clone()));
        prop_assert_eq!(args.string(2, 0, usize::MAX), Ok(s.clone()));
    }

    /// A byte array and a bd_addr written by `format::info` read back through `Args`.
    #[test]
    fn hex_and_addresses_read_back(
        bytes in proptest::collection::vec(any::<u8>(), 1..64),
        addr in any::<[u8; 6]>(),
        random in any::<bool>(),
    ) {
        let kind = if random { AddrKind::Random } else { AddrKind::Public };
        let addr = BdAddr { bytes: addr, kind };
        let mut out = Vec::new();
        format::info(&mut out, &Registers::default(), "+X", &[Field::Hex(&bytes), Field::Addr(addr)]);
        let body = out
            .strip_prefix(b"\r\n+X:")
            .and_then(|b| b.strip_suffix(b"\r\n"))
            .ok_or_else(|| TestCaseError::fail(format!("{out:?}")))?;
        let text = std::str::from_utf8(body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(!text.bytes().any(|b| b.is_ascii_lowercase() && b != b'p' && b != b'r'));
        let args = Args::parse(text).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(args.bytes(0, bytes.len(), bytes.len()), Ok(bytes.clone()));
        prop_assert_eq!(args.bd_addr(1), Ok(addr));
        if bytes.len() == 2 || bytes.len() == 16 {
            prop_assert_eq!(args.uuid(0), Ok(bytes.clone()));
        }
    }

    /// Lines arriving in arbitrary pieces give the same lines and echo as in one piece.
    #[test]
    fn pieces_give_the_same_lines(
        lines in proptest::collection::vec(line_strategy(), 0..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..16),
        max_line in prop_oneof![Just(16usize), Just(1024usize)],
    ) {
        let input: Vec<u8> = lines.concat();
        let mut whole = Engine::new(max_line);
        whole.push(&input);
        let mut split = Engine::new(max_line);
        let mut echo = Vec::new();
        for piece in pieces(&input, &cuts) {
            split.push(piece);
            echo.extend(split.take_echo());
        }
        prop_assert_eq!(drain(&mut split), drain(&mut whole));
        prop_assert_eq!(echo, whole.take_echo());
    }

    /// Byte-at-a-time delivery of a command equals delivery in one piece (parameters that do
    /// not start with `?`, which would make `=?` a test form).
    #[test]
    fn byte_at_a_time(params in "([ ->@-~][ -~]{0,59})?") {
        let line = format!("AT+UBTGW={params}\r\n");
        let mut whole = Engine::default();
        whole.push(line.as_bytes());
        let mut split = Engine::default();
        for b in line.bytes() {
            split.push(&[b]);
        }
        let expected = drain(&mut whole);
        let expected_line = Line::Command(Command { name: "+UBTGW".into(), form: Form::Set, params });
        prop_assert_eq!(expected.as_slice(), &[expected_line][..]);
        prop_assert_eq!(drain(&mut split), expected);
    }
}
