//! `gattling at` as a u-blox NORA-W36 module, driven through a real pseudo-terminal like a host MCU
//! driver (or u-blox's ucxclient) drives the module, against bumble peers on the interop test bed
//! (rootcanal, and gattling's own controller server). See issue 9 and
//! /work/shared/reference/ble-interfaces.md part B.
//!
//! Every test starts `gattling --transport <bed> at --pty <tmp>/ttyAT`, opens the link, reads
//! `+STARTUP`, puts its own side in raw mode and then talks AT: commands end in CR, responses are
//! read line by line with deadlines (ucxclient's 10 s per command), URCs are set aside until a test
//! waits for them. Nothing sleeps to synchronise: each step waits for the line or the peer event it
//! needs. A failure prints the whole PTY exchange and the end of gattling's log.
//!
//! - `the_module_side_of_the_pty_is_raw`: byte-exact `\r\n+STARTUP\r\n`, the PTY left raw by the
//!   module (its greeting is not echoed back to it as input: no ERROR before the first command),
//!   echo on by default and off after ATE0, byte-exact final results.
//! - `heart_rate_flow_from_the_user_guide`: ATE0, AT+USYEE=1, AT+UBTD, AT+UBTC, AT+UBTCST MTU,
//!   AT+UBTGPSD, AT+UBTGSCD, AT+UBTGCDD, AT+UBTGCCW, consecutive +UEBTGCN, AT+UBTDC.
//! - `every_gatt_client_command_and_its_errors`: AT+UBTGPSDU, AT+UBTGR (short, long, refused,
//!   missing handle), AT+UBTGRU, AT+UBTGW (accepted, refused by the application, not permitted),
//!   AT+UBTGWNR, AT+UBTGWL (one piece, pieces, reliable, cancelled), AT+UBTGCCW for notifications
//!   (+UEBTGCN) on and off and for indications (+UEBTGCI, confirmed), every
//!   GATT client command on a connection that does not exist, wrong parameters, an unknown command.
//! - `at_built_gatt_server_serves_a_bumble_central`: AT+UBTLN, AT+UBTGS, AT+UBTGC, AT+UBTGSA,
//!   AT+UBTAL; a bumble central connects (+UEBTC), discovers, reads, writes three ways (+UEBTGCW
//!   with options 1, 0, 2), subscribes and receives AT+UBTGNS notifications, which also update
//!   the value it reads afterwards, and AT+UBTGIS indications, confirmed with +UEBTGIC.
//!
//! `GATTLING_AT_TEST_TRANSCRIPT=1` prints every test's PTY exchange, passing or not.

#[path = "../../gattling/tests/support/mod.rs"]
#[macro_use]
mod support;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{skipped, Bed, Peer};
use tokio::sync::mpsc;

/// How long a peer or the module gets for one step.
const STEP: Duration = Duration::from_secs(15);
/// ucxclient's default command timeout: every command must end within it.
const COMMAND: Duration = Duration::from_secs(10);

/// Fails the test with the PTY exchange so far and the end of gattling's log.
macro_rules! ensure {
    ($m:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            $m.fail(&format!($($fmt)+));
        }
    };
}

/// The reply to one command: its information lines (URCs set aside) and its final result.
struct Reply {
    info: Vec<String>,
    result: String,
    /// Every byte received from sending the command to its final result (URCs included).
    raw: Vec<u8>,
}

/// `gattling at --pty`, seen from the other end of its pseudo-terminal.
struct Module {
    child: Child,
    dir: PathBuf,
    log: PathBuf,
    pty: File,
    chunks: mpsc::UnboundedReceiver<Vec<u8>>,
    partial: Vec<u8>,
    lines: VecDeque<String>,
    /// URCs that arrived while the test waited for something else, in arrival order.
    urcs: VecDeque<String>,
    raw: Vec<u8>,
    transcript: Vec<String>,
    t0: Instant,
    echo: bool,
    /// What the first read returned, as the module wrote it before the test touched the PTY.
    startup: Vec<u8>,
    /// The PTY's local modes as the module left them (before the test made its side raw).
    found_lflag: libc::tcflag_t,
    found_iflag: libc::tcflag_t,
}

fn unique_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir =
        std::env::temp_dir().join(format!("gattling-at-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn is_final(line: &str) -> bool {
    line == "OK"
        || line == "ERROR"
        || line.strip_prefix("ERROR:").is_some_and(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
}

fn is_urc(line: &str) -> bool {
    line.starts_with("+UE") || line == "+STARTUP"
}

/// Splits a response's parameters at commas outside quotes.
fn fields(params: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut escaped = false;
    for c in params.chars() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == ',' && !quoted {
            out.push(String::new());
            continue;
        }
        out.last_mut().expect("a field").push(c);
    }
    out
}

/// "FE:E3:F9:6A:E5:E0" (a peer's static random address) as a bd_addr: "FEE3F96AE5E0r".
fn bd_addr(peer_address: &serde_json::Value) -> String {
    let text = peer_address.as_str().expect("address string");
    format!("{}r", text.replace(':', ""))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn is_hex(s: &str) -> bool {
    s.len() & 1 == 0 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn poll_in(fd: i32, within: Duration) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    let ms = i32::try_from(within.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    n > 0
}

impl Module {
    /// Starts `gattling --transport <transport> at --pty <dir>/ttyAT`, opens the link and reads
    /// the greeting; the test's side is then raw (as ucxclient leaves it, and more).
    async fn start(transport: &str) -> Module {
        let dir = unique_dir();
        let link = dir.join("ttyAT");
        let log = dir.join("gattling.log");
        let logfile = File::create(&log).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_gattling"))
            .args(["--transport", transport, "at", "--pty"])
            .arg(&link)
            .arg("--settings")
            .arg(dir.join("settings"))
            .env_remove("GATTLING_TRANSPORT")
            .env("RUST_LOG", std::env::var("GATTLING_AT_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(logfile.try_clone().expect("log"))
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gattling at");

        // gattling reports the link once it exists: wait for that line (copying its log to the
        // log file as it comes), or for gattling to end first.
        let stderr = child.stderr.take().expect("stderr is piped");
        let (ready_tx, ready) = tokio::sync::oneshot::channel::<()>();
        let mut logfile = logfile;
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut ready_tx = Some(ready_tx);
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(logfile, "{line}");
                if line.contains("linked at") {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
        match tokio::time::timeout(STEP, ready).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!(
                "gattling at exited ({:?}) before creating {}:\n{}",
                child.wait(),
                link.display(),
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "gattling at did not create {} within {STEP:?}:\n{}",
                    link.display(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        }
        let pty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&link)
            .unwrap_or_else(|e| panic!("open {}: {e}", link.display()));
        let fd = pty.as_raw_fd();

        // The greeting, as the module wrote it, before this side changes any mode.
        let mut startup = Vec::new();
        let deadline = Instant::now() + STEP;
        while !(startup.len() >= 12 && startup.windows(8).any(|w| w == b"+STARTUP")) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !poll_in(fd, left) {
                let _ = child.kill();
                panic!(
                    "no +STARTUP on the PTY within {STEP:?} (got {:?}):\n{}",
                    String::from_utf8_lossy(&startup),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let mut buf = [0u8; 256];
            match (&pty).read(&mut buf) {
                Ok(n) if n > 0 => startup.extend_from_slice(&buf[..n]),
                r => panic!("reading the PTY: {r:?}"),
            }
        }

        // SAFETY: tcgetattr/cfmakeraw/tcsetattr on an open terminal fd with a zeroed termios.
        let (found_lflag, found_iflag) = unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(fd, &mut t), 0, "tcgetattr on the PTY");
            let found = (t.c_lflag, t.c_iflag);
            libc::cfmakeraw(&mut t);
            assert_eq!(libc::tcsetattr(fd, libc::TCSANOW, &t), 0, "tcsetattr on the PTY");
            found
        };

        let (tx, chunks) = mpsc::unbounded_channel();
        let mut reader = pty.try_clone().expect("dup PTY");
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once gattling closes its side.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });

        let mut m = Module {
            child,
            dir,
            log,
            pty,
            chunks,
            partial: Vec::new(),
            lines: VecDeque::new(),
            urcs: VecDeque::new(),
            raw: Vec::new(),
            transcript: Vec::new(),
            t0: Instant::now(),
            echo: true,
            startup: startup.clone(),
            found_lflag,
            found_iflag,
        };
        m.feed(&startup);
        let first = m.next_line(Instant::now() + STEP, "+STARTUP").await;
        ensure!(m, first == "+STARTUP", "the first line is {first:?}, not +STARTUP");
        m
    }

    /// Fails the test, showing the exchange so far and the end of gattling's log.
    #[track_caller]
    fn fail(&self, what: &str) -> ! {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        let exchange = self.transcript[self.transcript.len().saturating_sub(80)..].join("\n");
        panic!("{what}\n--- PTY exchange (> sent, < received):\n{exchange}\n--- gattling log (end):\n{tail}");
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.raw.extend_from_slice(bytes);
        for &b in bytes {
            if b == b'\r' || b == b'\n' {
                if !self.partial.is_empty() {
                    let line = std::mem::take(&mut self.partial);
                    match String::from_utf8(line) {
                        Ok(l) if l.bytes().all(|c| (0x20..0x7F).contains(&c)) => {
                            self.transcript.push(format!("{:>8.1} ms < {l}", self.t0.elapsed().as_secs_f64() * 1e3));
                            self.lines.push_back(l);
                        }
                        Ok(l) => self.fail(&format!("a line with control or non-ASCII bytes: {l:?}")),
                        Err(e) => self.fail(&format!("a line that is not UTF-8: {:?}", e.as_bytes())),
                    }
                }
            } else {
                self.partial.push(b);
            }
        }
    }

    /// The next line, waiting until `deadline`.
    async fn next_line(&mut self, deadline: Instant, waiting_for: &str) -> String {
        loop {
            if let Some(l) = self.lines.pop_front() {
                return l;
            }
            match tokio::time::timeout_at(deadline.into(), self.chunks.recv()).await {
                Ok(Some(bytes)) => self.feed(&bytes),
                Ok(None) => {
                    let status = self.child.try_wait();
                    self.fail(&format!("the PTY closed while waiting for {waiting_for} (gattling: {status:?})"))
                }
                Err(_) => self.fail(&format!(
                    "no {waiting_for} within {:?} (partial line: {:?})",
                    COMMAND,
                    String::from_utf8_lossy(&self.partial)
                )),
            }
        }
    }

    /// Writes `line` and the terminator (CR).
    fn send(&mut self, line: &str) {
        self.transcript.push(format!("{:>8.1} ms > {line}", self.t0.elapsed().as_secs_f64() * 1e3));
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\r');
        if let Err(e) = self.pty.write_all(&bytes) {
            self.fail(&format!("writing {line:?} to the PTY: {e}"));
        }
    }

    /// Sends one command and collects its reply (echo checked when echo is on). URCs that come
    /// before the first information line are set aside; one between information lines and the
    /// final result is a failure (URCs never come inside a response).
    async fn cmd(&mut self, line: &str) -> Reply {
        // Lines already received belong to no command: URCs, or a failure. (Reading everything
        // that has arrived first keeps the transcript in arrival order.)
        while let Ok(bytes) = self.chunks.try_recv() {
            self.feed(&bytes);
        }
        while let Some(l) = self.lines.pop_front() {
            ensure!(self, is_urc(&l), "unexpected line {l:?} before sending {line:?}");
            self.urcs.push_back(l);
        }
        self.raw.clear();
        self.send(line);
        let deadline = Instant::now() + COMMAND;
        if self.echo {
            loop {
                let l = self.next_line(deadline, &format!("the echo of {line:?}")).await;
                if l == line {
                    break;
                }
                ensure!(self, is_urc(&l), "{line}: expected its echo, got {l:?}");
                self.urcs.push_back(l);
            }
        }
        let mut info = Vec::new();
        loop {
            let l = self.next_line(deadline, &format!("the final result of {line:?}")).await;
            if is_final(&l) {
                return Reply { info, result: l, raw: std::mem::take(&mut self.raw) };
            }
            if is_urc(&l) {
                ensure!(self, info.is_empty(), "{line}: URC {l:?} inside the response (after {info:?})");
                self.urcs.push_back(l);
            } else {
                info.push(l);
            }
        }
    }

    /// Sends `line`, expects OK and returns the information lines.
    async fn ok(&mut self, line: &str) -> Vec<String> {
        let r = self.cmd(line).await;
        ensure!(self, r.result == "OK", "{line}: expected OK, got {} (after {:?})", r.result, r.info);
        r.info
    }

    /// Sends `line`, expects OK with no information line.
    async fn ok_bare(&mut self, line: &str) {
        let info = self.ok(line).await;
        ensure!(self, info.is_empty(), "{line}: expected no information line, got {info:?}");
    }

    /// Sends `line`, expects `ERROR:<code>` and no information line.
    async fn err(&mut self, line: &str, code: u16) {
        let r = self.cmd(line).await;
        let want = format!("ERROR:{code}");
        ensure!(self, r.result == want && r.info.is_empty(), "{line}: expected {want}, got {:?} {}", r.info, r.result);
    }

    /// Sends `line`, expects OK and information lines all named `name`; returns their fields.
    async fn list(&mut self, line: &str, name: &str) -> Vec<Vec<String>> {
        let info = self.ok(line).await;
        let prefix = format!("{name}:");
        let mut out = Vec::new();
        for l in &info {
            match l.strip_prefix(&prefix) {
                Some(rest) => out.push(fields(rest)),
                None => self.fail(&format!("{line}: a line not named {name}: {l:?}")),
            }
        }
        out
    }

    /// Sends `line`, expects OK and exactly one information line named `name`; returns its fields.
    async fn one(&mut self, line: &str, name: &str) -> Vec<String> {
        let mut all = self.list(line, name).await;
        ensure!(self, all.len() == 1, "{line}: expected one {name} line, got {all:?}");
        all.remove(0)
    }

    /// The next URC named `name` (in arrival order), waiting up to `within`; other URCs are set
    /// aside in order.
    async fn urc(&mut self, name: &str, within: Duration) -> Vec<String> {
        let prefix = format!("{name}:");
        if let Some(i) = self.urcs.iter().position(|u| u.starts_with(&prefix)) {
            let u = self.urcs.remove(i).expect("queued URC");
            return fields(&u[prefix.len()..]);
        }
        let deadline = Instant::now() + within;
        loop {
            let l = self.next_line(deadline, name).await;
            if let Some(rest) = l.strip_prefix(&prefix) {
                return fields(rest);
            }
            ensure!(self, is_urc(&l), "unexpected line {l:?} outside a command while waiting for {name}");
            self.urcs.push_back(l);
        }
    }

    /// Parses a decimal field.
    #[track_caller]
    fn int(&self, s: &str, what: &str) -> u32 {
        s.parse().unwrap_or_else(|_| self.fail(&format!("{what}: {s:?} is not a decimal integer")))
    }

    /// ATE0 then AT+USYEE=1, as ucxclient starts.
    async fn quiet_and_extended(&mut self) {
        self.ok_bare("ATE0").await;
        self.echo = false;
        self.ok_bare("AT+USYEE=1").await;
    }

    /// AT+UBTC to `addr`; returns the connection handle from +UEBTC.
    async fn connect(&mut self, addr: &str) -> u32 {
        self.ok_bare(&format!("AT+UBTC={addr}")).await;
        let c = self.urc("+UEBTC", STEP).await;
        ensure!(self, c.len() == 2 && c[1] == addr, "+UEBTC: expected <handle>,{addr}, got {c:?}");
        self.int(&c[0], "+UEBTC connection handle")
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        if std::env::var("GATTLING_AT_TEST_TRANSCRIPT").is_ok_and(|v| v == "1") {
            eprintln!("--- PTY exchange (> sent, < received):\n{}", self.transcript.join("\n"));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A discovered service: start, end, UUID.
type Svc = (u32, u32, String);
/// A discovered characteristic: declaration handle, properties, value handle, UUID, end handle.
type Chr = (u32, String, u32, String, u32);

async fn services(m: &mut Module, h: u32) -> Vec<Svc> {
    let lines = m.list(&format!("AT+UBTGPSD={h}"), "+UBTGPSD").await;
    let mut out: Vec<Svc> = Vec::new();
    for f in &lines {
        ensure!(m, f.len() == 4, "+UBTGPSD: four fields expected, got {f:?}");
        ensure!(m, m.int(&f[0], "+UBTGPSD conn_handle") == h, "+UBTGPSD: wrong connection handle in {f:?}");
        let (s, e) = (m.int(&f[1], "start"), m.int(&f[2], "end"));
        ensure!(m, s <= e && (f[3].len() == 4 || f[3].len() == 32) && is_hex(&f[3]), "+UBTGPSD: bad {f:?}");
        if let Some(prev) = out.last() {
            ensure!(m, prev.1 < s, "+UBTGPSD: services out of order or overlapping: {prev:?} then {f:?}");
        }
        out.push((s, e, f[3].to_ascii_uppercase()));
    }
    out
}

fn find_service(m: &Module, all: &[Svc], uuid: &str) -> (u32, u32) {
    match all.iter().find(|s| s.2 == uuid) {
        Some(s) => (s.0, s.1),
        None => m.fail(&format!("service {uuid} not among {all:?}")),
    }
}

async fn characteristics(m: &mut Module, h: u32, (start, end): (u32, u32)) -> Vec<Chr> {
    let lines = m.list(&format!("AT+UBTGSCD={h},{start},{end}"), "+UBTGSCD").await;
    let mut out: Vec<Chr> = Vec::new();
    for f in &lines {
        ensure!(m, f.len() == 5, "+UBTGSCD: five fields expected, got {f:?}");
        ensure!(m, m.int(&f[0], "+UBTGSCD conn_handle") == h, "+UBTGSCD: wrong connection handle in {f:?}");
        let (decl, value) = (m.int(&f[1], "attr_handle"), m.int(&f[3], "value_handle"));
        ensure!(m, f[2].len() == 2 && is_hex(&f[2]), "+UBTGSCD: properties are one hex byte: {f:?}");
        ensure!(m, start < decl && decl < value && value <= end, "+UBTGSCD: handles outside {start}..{end}: {f:?}");
        if let Some(prev) = out.last_mut() {
            ensure!(m, prev.2 < decl, "+UBTGSCD: out of order: {f:?}");
            prev.4 = decl - 1;
        }
        out.push((decl, f[2].to_ascii_uppercase(), value, f[4].to_ascii_uppercase(), end));
    }
    out
}

fn find_char(m: &Module, all: &[Chr], uuid: &str) -> Chr {
    match all.iter().find(|c| c.3 == uuid) {
        Some(c) => c.clone(),
        None => m.fail(&format!("characteristic {uuid} not among {all:?}")),
    }
}

/// AT+UBTGCDD for one characteristic: (char_handle, desc_handle, uuid) per descriptor.
async fn descriptors(m: &mut Module, h: u32, c: &Chr) -> Vec<(u32, u32, String)> {
    let lines = m.list(&format!("AT+UBTGCDD={h},{},{}", c.2, c.4), "+UBTGCDD").await;
    let mut out = Vec::new();
    for f in &lines {
        ensure!(m, f.len() == 4, "+UBTGCDD: four fields expected, got {f:?}");
        ensure!(m, m.int(&f[0], "+UBTGCDD conn_handle") == h, "+UBTGCDD: wrong connection handle in {f:?}");
        let (ch, d) = (m.int(&f[1], "char_handle"), m.int(&f[2], "desc_handle"));
        ensure!(m, c.2 < d && d <= c.4, "+UBTGCDD: descriptor {d} outside {}..={}: {f:?}", c.2 + 1, c.4);
        out.push((ch, d, f[3].to_ascii_uppercase()));
    }
    out
}

const HR_SERVICE: &str = "180D";
const TEST_SERVICE: &str = "A1B2C3D400004000800000000000AA00";
const DATA: &str = "A1B2C3D400004000800000000000AA01";
const LONG: &str = "A1B2C3D400004000800000000000AA02";
const ALERT: &str = "A1B2C3D400004000800000000000AA03";

fn start_heart_rate(bed: &Bed, name: &str) -> Peer {
    let transport = bed.transport();
    Peer::start(
        "bumble_heart_rate.py",
        &["--transport", &transport, "--name", name, "--interval", "40", "--wait-disconnect", "--timeout", "120"],
    )
}

/// The module's side of the PTY is raw: its greeting arrives byte-exact and is not echoed back
/// to it as input (ucxclient would otherwise get a stale ERROR for its first command); echo is on
/// by default and off after ATE0; final results are byte-exact.
async fn the_module_side_of_the_pty_is_raw(bed: Bed) {
    let mut m = Module::start(&bed.transport()).await;
    ensure!(
        m,
        m.startup.starts_with(b"\r\n+STARTUP\r\n"),
        "the greeting is {:?}, not \"\\r\\n+STARTUP\\r\\n\"",
        String::from_utf8_lossy(&m.startup)
    );
    let (lflag, iflag) = (m.found_lflag, m.found_iflag);
    ensure!(m, lflag & (libc::ECHO | libc::ICANON | libc::ISIG) == 0, "the PTY is not raw: c_lflag {lflag:#o}");
    ensure!(m, iflag & (libc::ICRNL | libc::IXON) == 0, "the PTY translates input: c_iflag {iflag:#o}");
    // Anything the module answered to its own greeting would come before this OK.
    let r = m.cmd("AT").await;
    ensure!(
        m,
        r.raw == b"AT\r\r\nOK\r\n",
        "AT with echo on: expected \"AT\\r\\r\\nOK\\r\\n\", got {:?}",
        String::from_utf8_lossy(&r.raw)
    );
    ensure!(m, m.urcs.is_empty(), "unexpected lines before the first command: {:?}", m.urcs);
    let r = m.cmd("ATE0").await;
    ensure!(m, r.raw == b"ATE0\r\r\nOK\r\n", "ATE0: got {:?}", String::from_utf8_lossy(&r.raw));
    m.echo = false;
    let r = m.cmd("AT").await;
    ensure!(m, r.raw == b"\r\nOK\r\n", "AT with echo off: got {:?}", String::from_utf8_lossy(&r.raw));
    let r = m.cmd("AT+UBTXYZ").await;
    ensure!(
        m,
        r.raw == b"\r\nERROR\r\n",
        "unknown command, extended errors off: got {:?}",
        String::from_utf8_lossy(&r.raw)
    );
    m.ok_bare("AT+USYEE=1").await;
    let r = m.cmd("AT+UBTXYZ").await;
    ensure!(
        m,
        r.raw == b"\r\nERROR:32\r\n",
        "unknown command, extended errors on: got {:?}",
        String::from_utf8_lossy(&r.raw)
    );
    // A command written in pieces, CR LF accepted (ucxclient may split its writes).
    m.transcript.push("> AT (in three writes, then CR LF)".into());
    m.raw.clear();
    for piece in [&b"A"[..], b"T", b"\r\n"] {
        m.pty.write_all(piece).expect("write");
    }
    let l = m.next_line(Instant::now() + COMMAND, "OK for a split AT").await;
    ensure!(m, l == "OK", "split AT: got {l:?}");
    let r = m.cmd("AT").await;
    ensure!(
        m,
        r.raw == b"\r\nOK\r\n",
        "AT after CR LF: got {:?} (the LF must not count as a line)",
        String::from_utf8_lossy(&r.raw)
    );
}

/// The u-blox user guide's heart-rate flow against a bumble Heart Rate peripheral.
async fn heart_rate_flow_from_the_user_guide(bed: Bed) {
    let name = "at-hr-flow";
    let mut hr = start_heart_rate(&bed, name);
    let adv = hr.expect("advertising", STEP).await;
    let addr = bd_addr(&adv["address"]);
    let mut m = Module::start(&bed.transport()).await;
    m.quiet_and_extended().await;

    // Discovery with the defaults (5 s): one +UBTD line per report.
    let reports = m.list("AT+UBTD", "+UBTD").await;
    let ours: Vec<&Vec<String>> = reports.iter().filter(|f| f.first() == Some(&addr)).collect();
    ensure!(m, !ours.is_empty(), "{addr} ({name}) not among the +UBTD lines: {reports:?}");
    for f in &ours {
        ensure!(m, f.len() == 5, "+UBTD: five fields expected, got {f:?}");
        let rssi: i32 = f[1].parse().unwrap_or(1000);
        ensure!(m, (-127..=20).contains(&rssi), "+UBTD: rssi {:?} in {f:?}", f[1]);
        ensure!(m, f[3] == "0" || f[3] == "1", "+UBTD: data_type is 0 (scan response) or 1 (advertising): {f:?}");
        // The advertising data carries the name; the (empty) scan response may repeat it or not.
        let named = f[2] == format!("\"{name}\"");
        ensure!(m, named || (f[3] == "0" && f[2] == "\"\""), "+UBTD: the name should be \"{name}\" in {f:?}");
        ensure!(m, is_hex(&f[4]), "+UBTD: data is not a hex byte array: {f:?}");
    }
    let name_ad = format!("{:02X}09{}", name.len() + 1, hex(name.as_bytes()));
    ensure!(
        m,
        ours.iter().any(|f| f[3] == "1" && f[4].to_ascii_uppercase().contains(&name_ad)),
        "no advertising report (data_type 1) carrying the name AD structure {name_ad}: {ours:?}"
    );

    let h = m.connect(&addr).await;
    hr.expect("connected", STEP).await;
    let mtu = m.one(&format!("AT+UBTCST={h},3"), "+UBTCST").await;
    ensure!(m, mtu.len() == 2 && mtu[0] == "3", "AT+UBTCST={h},3: expected +UBTCST:3,<mtu>, got {mtu:?}");
    let mtu = m.int(&mtu[1], "MTU");
    ensure!(m, (23..=517).contains(&mtu), "MTU {mtu} outside 23..517");
    let role = m.one(&format!("AT+UBTCST={h},7"), "+UBTCST").await;
    ensure!(m, role == ["7", "1"], "AT+UBTCST={h},7: expected +UBTCST:7,1 (central), got {role:?}");
    let rssi = m.one(&format!("AT+UBTRSS={h}"), "+UBTRSS").await;
    ensure!(m, rssi.len() == 1, "AT+UBTRSS={h}: expected +UBTRSS:<rssi>, got {rssi:?}");
    let rssi: Option<i64> = rssi[0].parse().ok();
    ensure!(m, rssi.is_some_and(|r| (-127..=20).contains(&r)), "RSSI {rssi:?} not a dBm value in -127..20");

    let all = services(&mut m, h).await;
    for uuid in ["1800", "1801", HR_SERVICE, TEST_SERVICE] {
        find_service(&m, &all, uuid);
    }
    let hr_range = find_service(&m, &all, HR_SERVICE);
    let chars = characteristics(&mut m, h, hr_range).await;
    let uuids: Vec<(&str, &str)> = chars.iter().map(|c| (c.3.as_str(), c.1.as_str())).collect();
    ensure!(
        m,
        uuids == [("2A37", "10"), ("2A38", "02"), ("2A39", "08")],
        "180D characteristics (uuid, properties): {uuids:?}"
    );
    let hrm = find_char(&m, &chars, "2A37");
    ensure!(m, hrm.2 == hrm.0 + 1, "2A37's value handle should follow its declaration: {hrm:?}");
    let descs = descriptors(&mut m, h, &hrm).await;
    // The guide: AT+UBTGCDD=0,14,15 -> +UBTGCDD:0,13,15,2902 (char_handle is the declaration).
    ensure!(
        m,
        descs.len() == 1 && descs[0].0 == hrm.0 && descs[0].2 == "2902",
        "2A37's descriptors: expected one 2902 with char_handle {} (the declaration, as in the guide), got {descs:?}",
        hrm.0
    );
    let cccd = descs[0].1;

    m.ok_bare(&format!("AT+UBTGCCW={h},{cccd},1")).await;
    let s = hr.expect("subscribed", STEP).await;
    assert_eq!((s["notify"].as_bool(), s["indicate"].as_bool()), (Some(true), Some(false)), "{s}");
    for i in 0..5u32 {
        let n = m.urc("+UEBTGCN", STEP).await;
        let want = format!("00{:02X}", 60 + i);
        ensure!(
            m,
            n.len() == 3 && n[0] == h.to_string() && n[1] == hrm.2.to_string() && n[2].eq_ignore_ascii_case(&want),
            "notification {i}: expected +UEBTGCN:{h},{},{want}, got {n:?}",
            hrm.2
        );
    }

    m.ok_bare(&format!("AT+UBTDC={h}")).await;
    let d = m.urc("+UEBTDC", STEP).await;
    ensure!(m, d == [h.to_string()], "expected +UEBTDC:{h}, got {d:?}");
    let d = hr.expect("disconnected", STEP).await;
    assert_eq!((d["reason"].as_u64(), d["by"].as_str()), (Some(0x13), Some("remote")), "{d}");
    // Notifications that arrived meanwhile continue the count: none lost, none reordered.
    let late: Vec<String> = m.urcs.iter().filter(|u| u.starts_with("+UEBTGCN:")).cloned().collect();
    for (i, u) in late.iter().enumerate() {
        let want = format!("+UEBTGCN:{h},{},00{:02X}", hrm.2, 65 + i);
        ensure!(m, u.eq_ignore_ascii_case(&want), "late notification {i}: expected {want}, got {u:?}");
    }
    m.err(&format!("AT+UBTGR={h},{}", hrm.2), 16).await;
    hr.finish().await;
}

/// Every GATT client command, and the errors a driver can meet, against the heart-rate peripheral.
async fn every_gatt_client_command_and_its_errors(bed: Bed) {
    let mut hr = start_heart_rate(&bed, "at-gatt-client");
    let adv = hr.expect("advertising", STEP).await;
    let addr = bd_addr(&adv["address"]);
    let mut m = Module::start(&bed.transport()).await;
    m.quiet_and_extended().await;
    let h = m.connect(&addr).await;
    hr.expect("connected", STEP).await;

    // Discovery, by UUID too (16- and 128-bit, either case on input).
    let all = services(&mut m, h).await;
    let hr_range = find_service(&m, &all, HR_SERVICE);
    let test_range = find_service(&m, &all, TEST_SERVICE);
    for (uuid, range) in
        [("180D", hr_range), (TEST_SERVICE, test_range), (&TEST_SERVICE.to_ascii_lowercase()[..], test_range)]
    {
        let f = m.one(&format!("AT+UBTGPSDU={h},{uuid}"), "+UBTGPSDU").await;
        let want = [h.to_string(), range.0.to_string(), range.1.to_string()];
        ensure!(m, f == want, "AT+UBTGPSDU={h},{uuid}: expected {want:?}, got {f:?}");
    }
    let r = m.cmd(&format!("AT+UBTGPSDU={h},FEFE")).await;
    ensure!(
        m,
        r.info.is_empty() && (r.result == "OK" || r.result == "ERROR:11"),
        "AT+UBTGPSDU for an absent service: expected no line and OK (or ERROR:11 not found), got {:?} {}",
        r.info,
        r.result
    );
    let hr_chars = characteristics(&mut m, h, hr_range).await;
    let hrm = find_char(&m, &hr_chars, "2A37");
    let loc = find_char(&m, &hr_chars, "2A38");
    let cp = find_char(&m, &hr_chars, "2A39");
    let test_chars = characteristics(&mut m, h, test_range).await;
    let props: Vec<(&str, &str)> = test_chars.iter().map(|c| (c.3.as_str(), c.1.as_str())).collect();
    ensure!(
        m,
        props == [(DATA, "8E"), (LONG, "02"), (ALERT, "20")],
        "test service characteristics (uuid, properties): {props:?}"
    );
    let data = find_char(&m, &test_chars, DATA);
    let long = find_char(&m, &test_chars, LONG);
    let alert = find_char(&m, &test_chars, ALERT);
    let d = descriptors(&mut m, h, &data).await;
    ensure!(m, d.len() == 1 && d[0].2 == "2900", "DATA's descriptors: expected one 2900, got {d:?}");
    let d = descriptors(&mut m, h, &hrm).await;
    ensure!(m, d.len() == 1 && d[0].2 == "2902", "2A37's descriptors: expected one 2902, got {d:?}");
    let cccd = d[0].1;

    // Reads: byte-exact, long (read blob), refused, missing handle.
    let line = format!("AT+UBTGR={h},{}", loc.2);
    let r = m.cmd(&line).await;
    let want = format!("\r\n+UBTGR:{h},{},01\r\n\r\nOK\r\n", loc.2);
    ensure!(m, r.raw == want.as_bytes(), "{line}: expected {want:?}, got {:?}", String::from_utf8_lossy(&r.raw));
    let f = m.one(&format!("AT+UBTGR={h},{}", long.2), "+UBTGR").await;
    let want: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    ensure!(m, f.len() == 3 && f[2].eq_ignore_ascii_case(&hex(&want)), "the 300-byte value came back as {f:?}");
    let f = m.one(&format!("AT+UBTGR={h},{}", data.2), "+UBTGR").await;
    ensure!(m, f.len() == 3 && f[2].eq_ignore_ascii_case("68656C6C6F"), "DATA reads {f:?}, not \"hello\"");
    m.err(&format!("AT+UBTGR={h},{}", cp.2), 92).await; // Read Not Permitted (0x02)
    m.err(&format!("AT+UBTGR={h},{}", hrm.2), 92).await;
    m.err(&format!("AT+UBTGR={h},4000"), 91).await; // Invalid Handle (0x01)
    let f = m.one(&format!("AT+UBTGRU={h},1,65535,2A38"), "+UBTGRU").await;
    ensure!(m, f == [h.to_string(), loc.2.to_string(), "01".into()], "AT+UBTGRU 2A38: {f:?}");
    let f = m.one(&format!("AT+UBTGRU={h},{},{},{DATA}", test_range.0, test_range.1), "+UBTGRU").await;
    ensure!(
        m,
        f.len() == 3 && f[1] == data.2.to_string() && f[2].eq_ignore_ascii_case("68656C6C6F"),
        "AT+UBTGRU DATA: {f:?}"
    );
    m.err(&format!("AT+UBTGRU={h},1,65535,2A19"), 100).await; // Attribute Not Found (0x0A)

    // Writes.
    m.ok_bare(&format!("AT+UBTGW={h},{},01", cp.2)).await;
    let e = hr.expect("control_point", STEP).await;
    assert_eq!((e["value"].as_str(), e["accepted"].as_bool()), (Some("01"), Some(true)), "{e}");
    // An application error (0x80 Control Point Value Not Supported) has no 90+code: GATT unknown.
    m.err(&format!("AT+UBTGW={h},{},02", cp.2), 114).await;
    let e = hr.expect("control_point", STEP).await;
    assert_eq!((e["value"].as_str(), e["accepted"].as_bool()), (Some("02"), Some(false)), "{e}");
    m.err(&format!("AT+UBTGW={h},{},02", loc.2), 93).await; // Write Not Permitted (0x03)
    m.ok_bare(&format!("AT+UBTGW={h},{},AABB", data.2)).await;
    assert_eq!(hr.expect("write", STEP).await["value"], "aabb");
    m.ok_bare(&format!("AT+UBTGWNR={h},{},ccdd", data.2)).await;
    assert_eq!(hr.expect("write", STEP).await["value"], "ccdd");
    let f = m.one(&format!("AT+UBTGR={h},{}", data.2), "+UBTGR").await;
    ensure!(m, f.len() == 3 && f[2].eq_ignore_ascii_case("CCDD"), "DATA after the write without response: {f:?}");

    // Write long: one final piece; two pieces; reliable in three pieces; cancelled.
    let one: Vec<u8> = (0..40u8).map(|i| 0xA0 ^ i).collect();
    m.ok_bare(&format!("AT+UBTGWL={h},{},{},0,0,0", data.2, hex(&one))).await;
    assert_eq!(hr.expect("write", STEP).await["value"], hex(&one).to_ascii_lowercase());
    let two: Vec<u8> = (0..100u8).map(|i| 0x30 + i).collect();
    m.ok_bare(&format!("AT+UBTGWL={h},{},{},0,1,0", data.2, hex(&two[..60]))).await;
    m.ok_bare(&format!("AT+UBTGWL={h},{},{},0,0,60", data.2, hex(&two[60..]))).await;
    assert_eq!(hr.expect("write", STEP).await["value"], hex(&two).to_ascii_lowercase());
    let f = m.one(&format!("AT+UBTGR={h},{}", data.2), "+UBTGR").await;
    ensure!(m, f.len() == 3 && f[2].eq_ignore_ascii_case(&hex(&two)), "DATA after the long write: {f:?}");
    let three: Vec<u8> = (0..50u8).map(|i| 0xFF - i).collect();
    m.ok_bare(&format!("AT+UBTGWL={h},{},{},1,1,0", data.2, hex(&three[..20]))).await;
    m.ok_bare(&format!("AT+UBTGWL={h},{},{},1,1,20", data.2, hex(&three[20..40]))).await;
    m.ok_bare(&format!("AT+UBTGWL={h},{},{},1,0,40", data.2, hex(&three[40..]))).await;
    assert_eq!(hr.expect("write", STEP).await["value"], hex(&three).to_ascii_lowercase());
    m.ok_bare(&format!("AT+UBTGWL={h},{},{},1,1,0", data.2, hex(&[0x55; 30]))).await;
    m.ok_bare(&format!("AT+UBTGWL={h},{},00,1,2,0", data.2)).await;
    m.ok_bare(&format!("AT+UBTGW={h},{},EE", data.2)).await;
    // The next write the peer sees is EE: the cancelled one never reached it.
    assert_eq!(hr.expect("write", STEP).await["value"], "ee");
    let f = m.one(&format!("AT+UBTGR={h},{}", data.2), "+UBTGR").await;
    ensure!(m, f.len() == 3 && f[2].eq_ignore_ascii_case("EE"), "DATA after the cancelled long write: {f:?}");

    // Notifications on, one arrives, off.
    m.ok_bare(&format!("AT+UBTGCCW={h},{cccd},1")).await;
    assert_eq!(hr.expect("subscribed", STEP).await["notify"], true);
    let n = m.urc("+UEBTGCN", STEP).await;
    ensure!(
        m,
        n.len() == 3 && n[1] == hrm.2.to_string() && n[2].eq_ignore_ascii_case("003C"),
        "first notification: {n:?}"
    );
    m.ok_bare(&format!("AT+UBTGCCW={h},{cccd},0")).await;
    assert_eq!(hr.expect("subscribed", STEP).await["notify"], false);
    // Indications: +UEBTGCI, each confirmed (the peer sends the next only after a confirmation).
    let d = descriptors(&mut m, h, &alert).await;
    ensure!(m, d.len() == 1 && d[0].2 == "2902", "ALERT's descriptors: expected one 2902, got {d:?}");
    m.ok_bare(&format!("AT+UBTGCCW={h},{},2", d[0].1)).await;
    for i in 1..=3u8 {
        let n = m.urc("+UEBTGCI", STEP).await;
        let want = [h.to_string(), alert.2.to_string(), format!("{i:02X}")];
        ensure!(m, n == want, "indication {i}: expected +UEBTGCI:{}, got {n:?}", want.join(","));
    }
    assert_eq!(hr.expect("indications_sent", STEP).await["count"], 3);

    // A connection that does not exist: not connected (16), for every command that takes one.
    let b = h + 7;
    for line in [
        format!("AT+UBTGPSD={b}"),
        format!("AT+UBTGPSDU={b},180D"),
        format!("AT+UBTGSCD={b},1,65535"),
        format!("AT+UBTGCDD={b},{},{}", hrm.2, hrm.4),
        format!("AT+UBTGR={b},{}", loc.2),
        format!("AT+UBTGRU={b},1,65535,2A38"),
        format!("AT+UBTGW={b},{},01", cp.2),
        format!("AT+UBTGWNR={b},{},01", data.2),
        format!("AT+UBTGWL={b},{},01,0,0,0", data.2),
        format!("AT+UBTGCCW={b},{cccd},1"),
        format!("AT+UBTCST={b},3"),
        format!("AT+UBTDC={b}"),
    ] {
        m.err(&line, 16).await;
    }

    // Wrong parameters: the manual's codes.
    m.err(&format!("AT+UBTGR={h}"), 34).await; // too few
    m.err(&format!("AT+UBTGR={h},{},1", loc.2), 34).await; // too many
    m.err(&format!("AT+UBTGW={h},{}", data.2), 34).await;
    m.err(&format!("AT+UBTGR={h},x1"), 35).await; // not an integer
    m.err(&format!("AT+UBTGR=abc,{}", loc.2), 35).await;
    m.err(&format!("AT+UBTGR={h},70000"), 36).await; // out of range
    m.err(&format!("AT+UBTGR={h},-1"), 36).await;
    m.err(&format!("AT+UBTGCCW={h},{cccd},4"), 39).await; // not one of the enumerator's values
    m.err(&format!("AT+UBTGWL={h},{},00,2,0,0", data.2), 39).await;
    m.err(&format!("AT+UBTGWL={h},{},00,0,3,0", data.2), 39).await;
    m.err(&format!("AT+UBTGW={h},{},ABC", data.2), 43).await; // odd length
    m.err(&format!("AT+UBTGW={h},{},GG", data.2), 43).await; // not hex
    m.err(&format!("AT+UBTGPSDU={h},18"), 44).await; // a UUID is 2 or 16 bytes
    m.err("AT+UBTC=12345", 42).await; // not a bd_addr
    m.err("AT+UBTC=AABBCCDDEEFFx", 42).await;
    m.err("AT+UBTXYZ", 32).await; // unknown command
    m.err(&format!("AT+UBTGRX={h},{}", loc.2), 32).await;
    let f = m.one("AT+USYEC?", "+USYEC").await;
    ensure!(m, f == ["32"], "AT+USYEC? after an unknown command: {f:?}");
    m.ok_bare("AT+USYEE=0").await;
    let r = m.cmd(&format!("AT+UBTGR={h},4000")).await;
    ensure!(
        m,
        r.result == "ERROR" && r.info.is_empty(),
        "extended errors off: expected ERROR, got {:?} {}",
        r.info,
        r.result
    );
    let f = m.one("AT+USYEC?", "+USYEC").await;
    ensure!(m, f == ["91"], "AT+USYEC? after the read of a missing handle: {f:?}");
    m.ok_bare("AT+USYEE=1").await;

    // Nothing above broke the link.
    let f = m.one(&format!("AT+UBTGR={h},{}", loc.2), "+UBTGR").await;
    ensure!(m, f.len() == 3 && f[2] == "01", "2A38 after the errors: {f:?}");
    m.ok_bare(&format!("AT+UBTDC={h}")).await;
    let d = m.urc("+UEBTDC", STEP).await;
    ensure!(m, d == [h.to_string()], "expected +UEBTDC:{h}, got {d:?}");
    hr.expect("disconnected", STEP).await;
    hr.finish().await;
}

/// A GATT server built with AT commands, used by a bumble central.
async fn at_built_gatt_server_serves_a_bumble_central(bed: Bed) {
    const SERVICE: &str = "A1B2C3D400004000800000000000BB00";
    const CHAR: &str = "A1B2C3D400004000800000000000BB01";
    const CHAR_DASHED: &str = "A1B2C3D4-0000-4000-8000-00000000BB01";
    const INDICATING: &str = "A1B2C3D400004000800000000000BB02";
    const INDICATING_DASHED: &str = "A1B2C3D4-0000-4000-8000-00000000BB02";
    let name = "at-server";
    let mut m = Module::start(&bed.transport()).await;
    m.quiet_and_extended().await;
    m.ok_bare(&format!("AT+UBTLN=\"{name}\"")).await;
    let f = m.one("AT+UBTLN?", "+UBTLN").await;
    ensure!(m, f == [format!("\"{name}\"")], "AT+UBTLN?: {f:?}");
    let f = m.one(&format!("AT+UBTGS={SERVICE}"), "+UBTGS").await;
    ensure!(m, f.len() == 1, "+UBTGS: one field expected: {f:?}");
    let service = m.int(&f[0], "ser_handle");
    // Read, write without response, write, notify (0x1E); no security; "Hello".
    let f = m.one(&format!("AT+UBTGC={CHAR},1E,1,1,48656C6C6F"), "+UBTGC").await;
    ensure!(m, f.len() == 2, "+UBTGC: two fields expected: {f:?}");
    let (vh, cccd) = (m.int(&f[0], "value_handle"), m.int(&f[1], "cccd_handle"));
    ensure!(m, service < vh && vh < cccd, "+UBTGC: handles service {service}, value {vh}, cccd {cccd}");
    // A read-only characteristic has no CCCD: cccd_handle 0.
    let f = m.one("AT+UBTGC=2A19,02,1,1,64", "+UBTGC").await;
    ensure!(m, f.len() == 2 && f[1] == "0", "+UBTGC for a read-only characteristic: {f:?}");
    // Read and indicate (0x22).
    let f = m.one(&format!("AT+UBTGC={INDICATING},22,1,1,00"), "+UBTGC").await;
    ensure!(m, f.len() == 2, "+UBTGC: two fields expected: {f:?}");
    let (ivh, icccd) = (m.int(&f[0], "value_handle"), m.int(&f[1], "cccd_handle"));
    ensure!(m, cccd < ivh && ivh < icccd, "+UBTGC: handles value {ivh}, cccd {icccd} after {vh}/{cccd}");
    m.ok_bare("AT+UBTGSA").await;
    m.ok_bare("AT+UBTAL").await;

    let transport = bed.transport();
    let central_addr = "C0:A7:5E:00:00:01";
    let long: Vec<u8> = (1..=30u8).collect();
    let long_hex = hex(&long);
    let mut central = Peer::start(
        "bumble_at_central.py",
        &[
            "--transport",
            &transport,
            "--name",
            name,
            "--own-address",
            central_addr,
            "--uuid",
            CHAR_DASHED,
            "--read",
            "--write",
            "0102",
            "--write-without-response",
            "0304",
            "--write-long",
            &long_hex,
            "--notify-count",
            "3",
            "--indicate-uuid",
            INDICATING_DASHED,
            "--indicate-count",
            "2",
            "--read-after",
            "--timeout",
            "60",
        ],
    );
    central.expect("connected", STEP).await;
    let c = m.urc("+UEBTC", STEP).await;
    let want_addr = format!("{}r", central_addr.replace(':', ""));
    ensure!(m, c.len() == 2 && c[1] == want_addr, "+UEBTC: expected <handle>,{want_addr}, got {c:?}");
    let h = m.int(&c[0], "+UEBTC connection handle");
    let role = m.one(&format!("AT+UBTCST={h},7"), "+UBTCST").await;
    ensure!(m, role == ["7", "2"], "AT+UBTCST={h},7: expected +UBTCST:7,2 (peripheral), got {role:?}");

    let d = central.expect("discovered", STEP).await;
    assert!(
        d["services"].as_array().is_some_and(|s| s.iter().any(|u| u == CHAR_DASHED.replace("BB01", "BB00").as_str())),
        "{d}"
    );
    assert_eq!(d["characteristic"]["value_handle"], vh, "{d}");
    assert_eq!(d["characteristic"]["properties"], 0x1E, "{d}");
    assert!(
        d["descriptors"].as_array().is_some_and(|ds| ds.iter().any(|x| x["uuid"] == "2902" && x["handle"] == cccd)),
        "{d}"
    );
    assert_eq!(central.expect("read", STEP).await["value"], "48656c6c6f");

    for (value, option) in [("0102", "1"), ("0304", "0"), (long_hex.as_str(), "2")] {
        let w = m.urc("+UEBTGCW", STEP).await;
        let want = [h.to_string(), vh.to_string(), value.to_string(), option.to_string()];
        ensure!(
            m,
            w.len() == 4 && w[0] == want[0] && w[1] == want[1] && w[2].eq_ignore_ascii_case(value) && w[3] == want[3],
            "expected +UEBTGCW:{}, got {w:?}",
            want.join(",")
        );
    }
    central.expect("subscribed", STEP).await;
    // The CCCD write is a write too (B.5, inferred there; the executor reports it):
    // +UEBTGCW:<h>,<cccd>,0100,1, delivered at once, with no command needed to flush it.
    let w = m.urc("+UEBTGCW", STEP).await;
    let want = [h.to_string(), cccd.to_string(), "0100".into(), "1".into()];
    ensure!(m, w == want, "after the central enabled notifications: expected +UEBTGCW:{}, got {w:?}", want.join(","));
    for value in ["0A0B", "0C0D", "0E0F"] {
        m.ok_bare(&format!("AT+UBTGNS={h},{vh},{value}")).await;
        let n = central.expect("notification", STEP).await;
        assert_eq!(
            (n["handle"].as_u64(), n["value"].as_str()),
            (Some(u64::from(vh)), Some(&*value.to_ascii_lowercase())),
            "{n}"
        );
    }
    central.expect("subscribed_indications", STEP).await;
    for value in ["A1", "A2"] {
        m.ok_bare(&format!("AT+UBTGIS={h},{ivh},{value}")).await;
        let c = m.urc("+UEBTGIC", STEP).await;
        ensure!(m, c == [h.to_string(), ivh.to_string()], "expected +UEBTGIC:{h},{ivh} (confirmed), got {c:?}");
        let n = central.expect("indication", STEP).await;
        let want = value.to_ascii_lowercase();
        assert_eq!((n["handle"].as_u64(), n["value"].as_str()), (Some(u64::from(ivh)), Some(want.as_str())), "{n}");
    }
    // AT+UBTGNS also updated the stored value.
    assert_eq!(central.expect("read_after", STEP).await["value"], "0e0f");
    let d = m.urc("+UEBTDC", STEP).await;
    ensure!(m, d == [h.to_string()], "expected +UEBTDC:{h}, got {d:?}");
    central.expect("disconnected", STEP).await;
    central.finish().await;
    m.err(&format!("AT+UBTGNS={h},{vh},01"), 16).await;
}

on_each_controller!(
    the_module_side_of_the_pty_is_raw,
    heart_rate_flow_from_the_user_guide,
    every_gatt_client_command_and_its_errors,
    at_built_gatt_server_serves_a_bumble_central,
);
