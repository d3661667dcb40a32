//! The interop test bed: rootcanal (controller) and bumble (peer host) from a project-local
//! virtualenv, started per test on free ports. A missing peer fails the test; the only way to
//! skip is to set `GATTLING_SKIP_INTEROP=1` explicitly.

#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
}

/// True when the developer explicitly opted out of interop tests.
pub fn skipped() -> bool {
    if std::env::var("GATTLING_SKIP_INTEROP").is_ok_and(|v| v == "1") {
        eprintln!("GATTLING_SKIP_INTEROP=1: interop test skipped by request");
        return true;
    }
    false
}

/// The virtualenv python with rootcanal and bumble, installed on first use (once per process).
pub fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let script = repo().join("scripts/interop-env.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(out.status.success(), "interop peers could not be installed ({}); see the output above", out.status);
        let text = String::from_utf8_lossy(&out.stdout);
        let py = PathBuf::from(text.lines().last().unwrap_or_default().trim());
        assert!(py.exists(), "interop-env.sh printed {py:?}, which does not exist");
        py
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A running rootcanal, killed on drop.
pub struct RootCanal {
    child: std::process::Child,
    /// Its HCI port (H4 over TCP).
    pub hci_port: u16,
    log: PathBuf,
}

impl RootCanal {
    /// Starts rootcanal 1.10.0 on free ports and waits until its HCI port accepts connections.
    pub fn start() -> RootCanal {
        let py = python();
        for attempt in 0..3 {
            let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
            let log = std::env::temp_dir().join(format!("gattling-rootcanal-{}-{}.log", std::process::id(), ports[0]));
            let logfile = std::fs::File::create(&log).expect("rootcanal log");
            // `python -m rootcanal` starts the real binary as a child: give both a process group
            // of their own so that killing the group leaves nothing behind.
            let child = std::process::Command::new(py)
                .process_group(0)
                .args(["-m", "rootcanal"])
                .args(["--hci_port", &ports[0].to_string()])
                .args(["--test_port", &ports[1].to_string()])
                .args(["--link_port", &ports[2].to_string()])
                .args(["--link_ble_port", &ports[3].to_string()])
                .stdout(logfile.try_clone().expect("log"))
                .stderr(logfile)
                .spawn()
                .expect("rootcanal must start (python -m rootcanal)");
            let mut rc = RootCanal { child, hci_port: ports[0], log };
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = rc.child.try_wait() {
                    eprintln!("rootcanal exited early ({status}), attempt {attempt}: {}", rc.log_tail());
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", rc.hci_port)).is_ok() {
                    // That probe took rootcanal's single backlog slot; give it a moment.
                    std::thread::sleep(Duration::from_millis(100));
                    return rc;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            rc.kill();
        }
        panic!("rootcanal did not start listening");
    }

    /// Transport string for a host on this rootcanal.
    pub fn transport(&self) -> String {
        format!("tcp-client:127.0.0.1:{}", self.hci_port)
    }

    /// The last lines of rootcanal's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Kills rootcanal now (to test a vanishing controller).
    pub fn kill(&mut self) {
        if let Ok(pgid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) with a negative pid signals that process group; no memory is involved.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        let _ = self.child.wait();
    }
}

impl Drop for RootCanal {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A bumble peer program from tests/interop/peers, printing one JSON event per line.
pub struct Peer {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    name: String,
}

impl Peer {
    /// Starts `tests/interop/peers/<script>` with `args` under the virtualenv python.
    pub fn start(script: &str, args: &[&str]) -> Peer {
        let path = repo().join("tests/interop/peers").join(script);
        let mut child = Command::new(python())
            .arg(&path)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        Peer { child, lines: BufReader::new(stdout).lines(), name: script.to_string() }
    }

    /// Waits for the next event named `event` (skipping others) and returns it.
    pub async fn expect(&mut self, event: &str, within: Duration) -> serde_json::Value {
        self.expect_any(&[event], within).await
    }

    /// Waits for the next event whose name is one of `events` (skipping others) and returns it.
    pub async fn expect_any(&mut self, events: &[&str], within: Duration) -> serde_json::Value {
        let wait = async {
            loop {
                match self.lines.next_line().await {
                    Ok(Some(line)) => {
                        let v: serde_json::Value = serde_json::from_str(&line)
                            .unwrap_or_else(|e| panic!("{}: bad JSON line {line:?}: {e}", self.name));
                        if events.iter().any(|e| v["event"] == *e) {
                            return v;
                        }
                        if v["event"] == "error" {
                            panic!("{} reported an error while waiting for {events:?}: {v}", self.name);
                        }
                    }
                    Ok(None) => panic!("{} exited before reporting {events:?}", self.name),
                    Err(e) => panic!("{}: reading output: {e}", self.name),
                }
            }
        };
        match tokio::time::timeout(within, wait).await {
            Ok(v) => v,
            Err(_) => panic!("{} did not report {events:?} within {within:?}", self.name),
        }
    }

    /// Waits for the program to exit and asserts success.
    pub async fn finish(mut self) {
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit", self.name))
            .expect("wait");
        assert!(status.success(), "{} exited with {status}", self.name);
    }
}

/// A fresh static random address, distinct per call within a run.
pub fn static_random() -> gattling::proto::gap::BdAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let b = [n as u8, (n >> 8) as u8, pid as u8, (pid >> 8) as u8, (pid >> 16) as u8, 0xC0 | (n as u8 & 0x3F)];
    gattling::proto::gap::BdAddr(b)
}

/// gattling's own virtual controller served over TCP in this process, like rootcanal's HCI port.
pub struct GattlingServer {
    /// Its HCI port.
    pub hci_port: u16,
    radio: std::sync::Arc<gattling::controller::VirtualRadio>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl GattlingServer {
    /// Starts a server with rootcanal-like 27 x 20 ACL buffers, so the same tests hold on both.
    pub async fn start() -> GattlingServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let hci_port = listener.local_addr().expect("addr").port();
        let radio = gattling::controller::VirtualRadio::new(format!("test-{hci_port}"));
        let config = gattling::controller::ControllerConfig::rootcanal_like();
        let task = tokio::spawn(gattling::controller::serve(listener, radio.clone(), config));
        GattlingServer { hci_port, radio, task }
    }

    /// The radio behind the server (for fault injection).
    pub fn radio(&self) -> &std::sync::Arc<gattling::controller::VirtualRadio> {
        &self.radio
    }
}

impl Drop for GattlingServer {
    fn drop(&mut self) {
        self.task.abort();
        self.radio.shutdown();
    }
}

/// The controller a test runs on: rootcanal or gattling's virtual controller, both over TCP.
pub enum Bed {
    /// rootcanal 1.10.0.
    RootCanal(RootCanal),
    /// gattling's controller server.
    Gattling(GattlingServer),
}

impl Bed {
    /// A rootcanal bed.
    pub fn rootcanal() -> Bed {
        Bed::RootCanal(RootCanal::start())
    }

    /// A gattling controller-server bed.
    pub async fn gattling() -> Bed {
        Bed::Gattling(GattlingServer::start().await)
    }

    /// Which controller this bed runs, for messages.
    #[allow(dead_code)]
    pub fn name(&self) -> &'static str {
        match self {
            Bed::RootCanal(_) => "rootcanal",
            Bed::Gattling(_) => "gattling controller",
        }
    }

    /// Transport string for a host on this bed.
    pub fn transport(&self) -> String {
        match self {
            Bed::RootCanal(rc) => rc.transport(),
            Bed::Gattling(g) => format!("tcp-client:127.0.0.1:{}", g.hci_port),
        }
    }

    /// Makes the controller vanish for every host on it.
    pub fn kill(&mut self) {
        match self {
            Bed::RootCanal(rc) => rc.kill(),
            Bed::Gattling(g) => {
                g.task.abort();
                g.radio.shutdown();
            }
        }
    }
}

/// Runs each listed test on rootcanal and on gattling's controller server (the file needs
/// `skipped` and `Bed` in scope).
#[allow(unused_macros)]
macro_rules! on_each_controller {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rootcanal() {
                if super::skipped() {
                    return;
                }
                super::$name(super::Bed::rootcanal()).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn gattling_controller() {
                if super::skipped() {
                    return;
                }
                super::$name(super::Bed::gattling().await).await
            }
        }
    )*};
}
