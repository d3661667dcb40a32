//! Helpers shared by the CLI test files that run `gattling` on `gattling controller`.
#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

pub const STEP: Duration = Duration::from_secs(15);

pub fn gattling() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gattling"));
    c.env_remove("GATTLING_TRANSPORT").env("RUST_LOG", "warn").kill_on_drop(true);
    c
}

/// Starts `gattling controller` on a port the system picks, with `extra` arguments; returns the
/// child and the transport string.
pub async fn controller_server(extra: &[&str]) -> (tokio::process::Child, String) {
    let (server, transport, _) = controller_server_banner(extra).await;
    (server, transport)
}

/// [`controller_server`], also returning its banner line.
pub async fn controller_server_banner(extra: &[&str]) -> (tokio::process::Child, String, String) {
    let mut server = gattling()
        .args(["controller", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .expect("controller");
    let mut stderr = BufReader::new(server.stderr.take().expect("stderr")).lines();
    let banner = tokio::time::timeout(STEP, stderr.next_line()).await.expect("banner").expect("read");
    let banner = banner.expect("the controller server exited without a banner");
    // "virtual controller listening on ADDR (...)": the address the server bound.
    let listen = banner
        .split_once("listening on ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("not the controller server's banner: {banner:?}"))
        .to_string();
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
    (server, format!("tcp-client:{listen}"), banner)
}

/// Waits until the child prints a line containing `text` on stderr, then drains the rest.
pub async fn wait_for_stderr(child: &mut tokio::process::Child, text: &str) {
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    tokio::time::timeout(STEP, async {
        while let Some(l) = stderr.next_line().await.expect("stderr") {
            if l.contains(text) {
                return;
            }
        }
        panic!("the program exited before printing {text:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("no {text:?} within {STEP:?}"));
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
}

/// Waits until the child prints a line containing `text` on stdout, then drains the rest.
pub async fn wait_for_stdout(child: &mut tokio::process::Child, text: &str) -> Vec<String> {
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    tokio::time::timeout(STEP, async {
        while let Some(l) = stdout.next_line().await.expect("stdout") {
            let hit = l.contains(text);
            seen.push(l);
            if hit {
                return;
            }
        }
        panic!("the program exited before printing {text:?}: {seen:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("no {text:?} within {STEP:?}"));
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
    seen
}

/// Starts `gattling serve` with `args` on `transport` and waits until it advertises.
pub async fn serve(transport: &str, args: &[&str]) -> tokio::process::Child {
    let mut serve = gattling()
        .args(["--transport", transport, "serve"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    wait_for_stderr(&mut serve, "serving").await;
    serve
}

/// Sends SIGINT (Ctrl-C) to a child and waits for it to exit.
pub async fn interrupt(child: &mut tokio::process::Child) -> std::process::ExitStatus {
    let pid = child.id().expect("running") as i32;
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(pid, libc::SIGINT) };
    tokio::time::timeout(STEP, child.wait()).await.expect("exits after Ctrl-C").expect("wait")
}

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("gattling-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}
