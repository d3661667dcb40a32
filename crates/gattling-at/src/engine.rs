//! The sans-IO command line engine (u-connectXpress "General conventions"): bytes from the
//! serial line in, complete command lines and the echo out.
//!
//! - A line is `AT<name><params><S3>`; S3 (the terminator) is CR by default; an LF after it is
//!   ignored, so CR LF is accepted. Names are case-insensitive.
//! - Echo (on by default, `ATE0`/`ATE1`) returns the received bytes as they arrive, through
//!   [`Engine::take_echo`].
//! - S5 (backspace, 8 by default) deletes the last buffered character.
//! - A line longer than [`Engine::max_line`] is rejected ([`Line::TooLong`]) without the buffer
//!   growing; bytes that are not printable ASCII (other than the terminator, LF and backspace)
//!   make the line invalid ([`Line::Invalid`]); in both cases the engine resynchronises at the
//!   next terminator. Empty lines are ignored.

use crate::codes::AtError;
use alloc::string::String;
use alloc::vec::Vec;

/// Default bound on one command line, in bytes (the longest documented command, a 244-byte
/// value as hex plus its parameters, fits).
pub const DEFAULT_MAX_LINE: usize = 1024;

/// What kind of command a line is (`AT+NAME`, `AT+NAME?`, `AT+NAME=?`, `AT+NAME=params`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Form {
    /// `AT+NAME` (or a basic command like `ATE1`, `ATI9`, `AT&W`, `ATS3=13`).
    Action,
    /// `AT+NAME?`: read the current setting.
    Read,
    /// `AT+NAME=?`: test (list the syntax).
    Test,
    /// `AT+NAME=<params>`: set or execute with parameters.
    Set,
}

/// A command line, split into its name and its raw parameter text.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Command {
    /// The command name upper-cased without the `AT` prefix: `+UBTGR`, `E`, `I`, `&W`, `S3`, or
    /// the empty string for a bare `AT`. For basic commands with a digit argument (`ATE0`,
    /// `ATI9`) the digits are parameters, not part of the name: `E` with params `0`.
    pub name: String,
    /// Which form.
    pub form: Form,
    /// The text after `=` (for [`Form::Set`]) or after a basic command's letter, unparsed
    /// (see [`crate::params::Args`]). Empty otherwise.
    pub params: String,
}

/// One outcome of the line engine.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Line {
    /// A complete command.
    Command(Command),
    /// The line did not start with `AT` (case-insensitive) or held invalid characters: answer
    /// with this error.
    Invalid(AtError),
    /// The line exceeded the bound and was dropped up to its terminator.
    TooLong,
}

/// The S-registers and settings the engine uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Registers {
    /// S2: escape character (43, `+`).
    pub s2: u8,
    /// S3: line terminator (13, CR).
    pub s3: u8,
    /// S4: response formatting character (10, LF).
    pub s4: u8,
    /// S5: backspace (8).
    pub s5: u8,
    /// Echo of received bytes (on by default).
    pub echo: bool,
}

impl Default for Registers {
    fn default() -> Self {
        Registers { s2: 43, s3: 13, s4: 10, s5: 8, echo: true }
    }
}

/// The line engine.
#[derive(Debug)]
pub struct Engine {
    /// The S-registers and echo setting; the executor changes them for ATE and ATSn.
    pub registers: Registers,
    max_line: usize,
    buf: Vec<u8>,
    /// Dropping the rest of an invalid or overlong line until its terminator.
    discarding: Option<Line>,
    echo: Vec<u8>,
    lines: alloc::collections::VecDeque<Line>,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new(DEFAULT_MAX_LINE)
    }
}

impl Engine {
    /// An engine with default registers that accepts lines of up to `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        Engine {
            registers: Registers::default(),
            max_line,
            buf: Vec::with_capacity(max_line),
            discarding: None,
            echo: Vec::new(),
            lines: Default::default(),
        }
    }

    /// The bound on one line.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Takes bytes from the serial line.
    ///
    /// Each byte is handled as it arrives, with the registers as they are at that moment (a
    /// register change made by the executor applies to the bytes pushed after it):
    ///
    /// - with echo on, the byte is copied to the echo if it is printable ASCII, the terminator,
    ///   LF or S5 (other control bytes and non-ASCII garbage are not echoed: a host client such
    ///   as ucxclient takes 0x01 as the start of binary data);
    /// - S3 ends the line: an empty line or one of spaces only is ignored; otherwise one
    ///   [`Line`] is queued for [`Engine::poll_line`] (the error of an invalid or overlong
    ///   line is reported here, once, at its terminator);
    /// - LF (when it is not S3) is ignored, so CR LF terminates a line once;
    /// - S5 removes the last buffered byte (nothing once the line is invalid or overlong);
    /// - a byte outside printable ASCII (`0x20..=0x7E`) makes the line
    ///   [`AtError::INVALID_CHARACTER`], and a byte past [`Engine::max_line`] makes it
    ///   [`Line::TooLong`]; either way the buffer is emptied and the rest of the line dropped.
    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.push_byte(b);
        }
    }

    fn push_byte(&mut self, b: u8) {
        let regs = self.registers;
        if regs.echo && ((0x20..=0x7E).contains(&b) || b == regs.s3 || b == b'\n' || b == regs.s5) {
            self.echo.push(b);
        }
        if b == regs.s3 {
            self.end_line();
        } else if b == b'\n' {
            // LF after (or anywhere around) the terminator: ignored, so CR LF works.
        } else if b == regs.s5 {
            if self.discarding.is_none() {
                self.buf.pop();
            }
        } else if self.discarding.is_some() {
            // Dropping the rest of a bad line.
        } else if !(0x20..=0x7E).contains(&b) {
            self.discard(Line::Invalid(AtError::INVALID_CHARACTER));
        } else if self.buf.len() >= self.max_line {
            self.discard(Line::TooLong);
        } else {
            self.buf.push(b);
        }
    }

    /// Drops the buffered line; `line` is reported at the terminator.
    fn discard(&mut self, line: Line) {
        self.buf.clear();
        self.discarding = Some(line);
    }

    /// The terminator: queues the finished line (if any) and starts a new one.
    fn end_line(&mut self) {
        if let Some(line) = self.discarding.take() {
            self.lines.push_back(line);
        } else if self.buf.iter().any(|&b| b != b' ') {
            self.lines.push_back(parse_line(&self.buf));
        }
        self.buf.clear();
    }

    /// The next complete line, if any.
    pub fn poll_line(&mut self) -> Option<Line> {
        self.lines.pop_front()
    }

    /// The echo of the bytes received since the last call (empty with echo off).
    pub fn take_echo(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.echo)
    }
}

/// The printable-ASCII bytes `b` as a string (the engine only buffers `0x20..=0x7E`).
fn ascii(b: &[u8]) -> String {
    b.iter().map(|&c| char::from(c)).collect()
}

/// Splits a line (printable ASCII, without its terminator) into a [`Command`].
///
/// - It must start with `AT` in either case, else [`AtError::INVALID_COMMAND`].
/// - `AT` alone: name `""`, [`Form::Action`].
/// - Extended, `AT+NAME…`: the name runs from the `+` up to the first `=` or `?` (or the end)
///   and is upper-cased; then nothing is [`Form::Action`], `?` is [`Form::Read`], `=?` is
///   [`Form::Test`], and `=<params>` is [`Form::Set`] with the raw text after `=` (its case
///   kept). Anything else after the name (`AT+X?1`, `AT+X=?1`) is
///   [`AtError::INVALID_COMMAND`].
/// - Basic, `AT&<letter>…`, `ATS<digits>…` or `AT<letter>…`: the name is `&W`, `S3` or the
///   letter, upper-cased; what follows is read like an extended command's tail (`ATS3?`,
///   `ATS3=13`, `ATE?`), except that any other text is the parameters of a
///   [`Form::Action`] (`ATE0`: `E`, `0`; `ATI9`: `I`, `9`).
/// - Anything else after `AT` (`AT?`, `AT=1`, `AT5`) is [`AtError::INVALID_COMMAND`].
fn parse_line(line: &[u8]) -> Line {
    let rest = match line {
        [a, t, rest @ ..] if a.eq_ignore_ascii_case(&b'A') && t.eq_ignore_ascii_case(&b'T') => rest,
        _ => return Line::Invalid(AtError::INVALID_COMMAND),
    };
    let (name_len, basic) = match rest {
        [] => (0, false),
        [b'+', tail @ ..] => (1 + tail.iter().take_while(|&&c| c != b'=' && c != b'?').count(), false),
        [b'&', c, ..] if c.is_ascii_alphabetic() => (2, true),
        [s, tail @ ..] if s.eq_ignore_ascii_case(&b'S') && tail.first().is_some_and(u8::is_ascii_digit) => {
            (1 + tail.iter().take_while(|c| c.is_ascii_digit()).count(), true)
        }
        [c, ..] if c.is_ascii_alphabetic() => (1, true),
        _ => return Line::Invalid(AtError::INVALID_COMMAND),
    };
    let Some((name, tail)) = rest.split_at_checked(name_len) else {
        return Line::Invalid(AtError::INVALID_COMMAND);
    };
    let mut name = ascii(name);
    name.make_ascii_uppercase();
    let (form, params) = match tail {
        [] => (Form::Action, String::new()),
        [b'?'] => (Form::Read, String::new()),
        [b'=', b'?'] => (Form::Test, String::new()),
        [b'=', params @ ..] if params.first() != Some(&b'?') => (Form::Set, ascii(params)),
        _ if basic && !matches!(tail.first(), Some(b'?' | b'=')) => (Form::Action, ascii(tail)),
        _ => return Line::Invalid(AtError::INVALID_COMMAND),
    };
    Line::Command(Command { name, form, params })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn cmd(name: &str, form: Form, params: &str) -> Line {
        Line::Command(Command { name: name.into(), form, params: params.into() })
    }

    fn lines(e: &mut Engine) -> Vec<Line> {
        core::iter::from_fn(|| e.poll_line()).collect()
    }

    fn feed(input: &[u8]) -> Vec<Line> {
        let mut e = Engine::default();
        e.push(input);
        lines(&mut e)
    }

    #[test]
    fn bare_at_and_extended_forms() {
        assert_eq!(feed(b"AT\r"), vec![cmd("", Form::Action, "")]);
        assert_eq!(feed(b"AT+CPWROFF\r"), vec![cmd("+CPWROFF", Form::Action, "")]);
        assert_eq!(feed(b"AT+USYEE?\r"), vec![cmd("+USYEE", Form::Read, "")]);
        assert_eq!(feed(b"AT+USYEE=?\r"), vec![cmd("+USYEE", Form::Test, "")]);
        assert_eq!(feed(b"AT+USYEE=1\r"), vec![cmd("+USYEE", Form::Set, "1")]);
        assert_eq!(feed(b"AT+X=\r"), vec![cmd("+X", Form::Set, "")]);
        assert_eq!(feed(b"AT+UBTGW=0,3,\"AbC=?\",aa\r"), vec![cmd("+UBTGW", Form::Set, "0,3,\"AbC=?\",aa")]);
    }

    #[test]
    fn names_are_case_insensitive_params_keep_their_case() {
        assert_eq!(feed(b"at\r"), vec![cmd("", Form::Action, "")]);
        assert_eq!(feed(b"aT+ubtgr?\r"), vec![cmd("+UBTGR", Form::Read, "")]);
        assert_eq!(feed(b"At+csgt=1,\"Hello\"\r"), vec![cmd("+CSGT", Form::Set, "1,\"Hello\"")]);
        assert_eq!(feed(b"ate0\r"), vec![cmd("E", Form::Action, "0")]);
        assert_eq!(feed(b"at&w\r"), vec![cmd("&W", Form::Action, "")]);
        assert_eq!(feed(b"ats3?\r"), vec![cmd("S3", Form::Read, "")]);
    }

    #[test]
    fn basic_commands() {
        assert_eq!(feed(b"ATE0\r"), vec![cmd("E", Form::Action, "0")]);
        assert_eq!(feed(b"ATE1\r"), vec![cmd("E", Form::Action, "1")]);
        assert_eq!(feed(b"ATE?\r"), vec![cmd("E", Form::Read, "")]);
        assert_eq!(feed(b"ATE\r"), vec![cmd("E", Form::Action, "")]);
        assert_eq!(feed(b"ATI9\r"), vec![cmd("I", Form::Action, "9")]);
        assert_eq!(feed(b"ATI0\r"), vec![cmd("I", Form::Action, "0")]);
        assert_eq!(feed(b"AT&W\r"), vec![cmd("&W", Form::Action, "")]);
        assert_eq!(feed(b"ATS3=13\r"), vec![cmd("S3", Form::Set, "13")]);
        assert_eq!(feed(b"ATS3?\r"), vec![cmd("S3", Form::Read, "")]);
        assert_eq!(feed(b"ATS12=?\r"), vec![cmd("S12", Form::Test, "")]);
        // `S` without digits is a plain letter command.
        assert_eq!(feed(b"ATS\r"), vec![cmd("S", Form::Action, "")]);
    }

    #[test]
    fn malformed_command_lines() {
        for line in [
            &b"A\r"[..],
            b"XAT\r",
            b" AT\r",
            b"A T\r",
            b"+UBTGR\r",
            b"AT?\r",
            b"AT=1\r",
            b"AT5\r",
            b"AT&\r",
            b"AT&1\r",
            b"AT+X?1\r",
            b"AT+X=?1\r",
            b"ATE?1\r",
            b"ATS3=?x\r",
        ] {
            assert_eq!(feed(line), vec![Line::Invalid(AtError::INVALID_COMMAND)], "{line:?}");
        }
    }

    #[test]
    fn cr_lf_and_lf_are_one_terminator() {
        assert_eq!(
            feed(b"AT\r\nATE0\r\n\nAT+X?\r"),
            vec![cmd("", Form::Action, ""), cmd("E", Form::Action, "0"), cmd("+X", Form::Read, "")]
        );
        // LF alone does not end a line.
        assert_eq!(feed(b"AT\n+X?\r"), vec![cmd("+X", Form::Read, "")]);
    }

    #[test]
    fn empty_and_blank_lines_are_ignored() {
        assert_eq!(feed(b"\r\r\n   \r \r\n"), vec![]);
        assert_eq!(feed(b"\rAT\r\r"), vec![cmd("", Form::Action, "")]);
    }

    #[test]
    fn commands_in_pieces() {
        let mut e = Engine::default();
        e.push(b"A");
        e.push(b"T+UB");
        assert_eq!(e.poll_line(), None);
        e.push(b"TGR?");
        assert_eq!(e.poll_line(), None);
        e.push(b"\rAT");
        assert_eq!(e.poll_line(), Some(cmd("+UBTGR", Form::Read, "")));
        assert_eq!(e.poll_line(), None);
        e.push(b"\r");
        e.push(b"\n");
        assert_eq!(lines(&mut e), vec![cmd("", Form::Action, "")]);
    }

    #[test]
    fn backspace_removes_the_last_byte() {
        assert_eq!(feed(b"ATX\x08E0\r"), vec![cmd("E", Form::Action, "0")]);
        assert_eq!(feed(b"AT+AB\x08\x08\x08\r"), vec![cmd("", Form::Action, "")]);
        // More backspaces than bytes: the line is empty, then filled again.
        assert_eq!(feed(b"A\x08\x08\x08AT\r"), vec![cmd("", Form::Action, "")]);
        assert_eq!(feed(b"AT\x08\x08\r"), vec![]);
        // S5 is a register.
        let mut e = Engine::default();
        e.registers.s5 = 0x7F;
        e.push(b"ATQ\x7FE1\r");
        assert_eq!(lines(&mut e), vec![cmd("E", Form::Action, "1")]);
        // With another S5, 8 is an invalid character.
        e.push(b"ATQ\x08E1\r");
        assert_eq!(lines(&mut e), vec![Line::Invalid(AtError::INVALID_CHARACTER)]);
    }

    #[test]
    fn backspace_does_not_revive_a_bad_line() {
        assert_eq!(feed(b"AT\x01\x08\r"), vec![Line::Invalid(AtError::INVALID_CHARACTER)]);
        let mut e = Engine::new(4);
        e.push(b"AT+XY\x08\r");
        assert_eq!(lines(&mut e), vec![Line::TooLong]);
    }

    #[test]
    fn echo_on_copies_every_printable_byte() {
        let mut e = Engine::default();
        let input = b"AT\x08T\r\n\x01\r";
        e.push(&input[..3]);
        assert_eq!(e.take_echo(), b"AT\x08");
        e.push(&input[3..]);
        assert_eq!(e.take_echo(), b"T\r\n\r", "0x01 is not echoed");
        assert_eq!(e.take_echo(), b"");
        assert_eq!(lines(&mut e), vec![cmd("", Form::Action, ""), Line::Invalid(AtError::INVALID_CHARACTER)]);
    }

    #[test]
    fn echo_off_copies_nothing() {
        let mut e = Engine::default();
        e.registers.echo = false;
        e.push(b"ATE1\r");
        assert_eq!(e.take_echo(), b"");
        assert_eq!(lines(&mut e), vec![cmd("E", Form::Action, "1")]);
        // Turned back on, it applies to the bytes that follow.
        e.registers.echo = true;
        e.push(b"AT\r");
        assert_eq!(e.take_echo(), b"AT\r");
    }

    #[test]
    fn invalid_characters_are_reported_once_and_resync() {
        assert_eq!(
            feed(b"AT+X=\x01\x02\xFF\"a\"\rAT\r"),
            vec![Line::Invalid(AtError::INVALID_CHARACTER), cmd("", Form::Action, "")]
        );
        // Garbage before a line, tab inside one.
        assert_eq!(
            feed(b"\x00\x80\x1b[A\rAT\tE0\rATE0\r"),
            vec![
                Line::Invalid(AtError::INVALID_CHARACTER),
                Line::Invalid(AtError::INVALID_CHARACTER),
                cmd("E", Form::Action, "0")
            ]
        );
        // Not reported before the terminator.
        let mut e = Engine::default();
        e.push(b"AT\x01xyz");
        assert_eq!(e.poll_line(), None);
        e.push(b"\r");
        assert_eq!(lines(&mut e), vec![Line::Invalid(AtError::INVALID_CHARACTER)]);
    }

    #[test]
    fn overlong_lines_are_reported_once_and_resync() {
        let mut e = Engine::new(8);
        let capacity = e.buf.capacity();
        assert_eq!(e.max_line(), 8);
        // Exactly the bound is accepted.
        e.push(b"AT+ABCDE\r");
        assert_eq!(lines(&mut e), vec![cmd("+ABCDE", Form::Action, "")]);
        e.push(b"AT+ABCDEF");
        e.push(&[b'X'; 100]);
        assert_eq!(e.poll_line(), None);
        // The buffer never grew past its initial allocation.
        assert!(e.buf.is_empty());
        assert_eq!(e.buf.capacity(), capacity);
        e.push(b"\r\nAT\r");
        assert_eq!(lines(&mut e), vec![Line::TooLong, cmd("", Form::Action, "")]);
        // Whichever problem comes first is the one reported.
        e.push(b"AT+ABCDEF\x01\r");
        e.push(b"AT\x01+ABCDEFGH\r");
        assert_eq!(lines(&mut e), vec![Line::TooLong, Line::Invalid(AtError::INVALID_CHARACTER)]);
    }

    #[test]
    fn terminator_is_s3() {
        let mut e = Engine::default();
        e.registers.s3 = b'#';
        e.push(b"AT+X?#ATE0#");
        assert_eq!(lines(&mut e), vec![cmd("+X", Form::Read, ""), cmd("E", Form::Action, "0")]);
        // CR is no longer a terminator: it is an invalid character.
        e.push(b"AT\r#");
        assert_eq!(lines(&mut e), vec![Line::Invalid(AtError::INVALID_CHARACTER)]);
        // S3 = LF: LF terminates.
        e.registers.s3 = b'\n';
        e.push(b"AT\n");
        assert_eq!(lines(&mut e), vec![cmd("", Form::Action, "")]);
    }
}
