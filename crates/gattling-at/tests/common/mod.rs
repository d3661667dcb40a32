//! The scripted AT session the integration tests drive: `exec::serve` over an in-memory duplex.
#![allow(dead_code)]

use gattling::Host;
use gattling_at::exec::{serve, Options};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

pub const DEADLINE: Duration = Duration::from_secs(10);

pub struct At {
    pub tx: WriteHalf<DuplexStream>,
    pub rx: ReadHalf<DuplexStream>,
    pub buf: Vec<u8>,
}

impl At {
    pub async fn start(options: Options) -> At {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let (sr, sw) = tokio::io::split(theirs);
        tokio::spawn(async move {
            if let Err(e) = serve(sr, sw, options).await {
                panic!("serve: {e}");
            }
        });
        let (rx, tx) = tokio::io::split(ours);
        let mut at = At { tx, rx, buf: Vec::new() };
        at.expect("\r\n+STARTUP\r\n").await;
        at
    }

    pub async fn on(radio: &str) -> At {
        At::start(Options { transport: format!("virtual:{radio}"), ..Options::default() }).await
    }

    pub async fn fill(&mut self) {
        let mut b = [0u8; 4096];
        let n = tokio::time::timeout(DEADLINE, self.rx.read(&mut b))
            .await
            .unwrap_or_else(|_| panic!("timed out; have {:?}", String::from_utf8_lossy(&self.buf)))
            .expect("read");
        assert!(n > 0, "stream ended; have {:?}", String::from_utf8_lossy(&self.buf));
        self.buf.extend_from_slice(&b[..n]);
    }

    pub async fn send(&mut self, line: &str) {
        self.tx.write_all(line.as_bytes()).await.expect("write");
    }

    /// The next bytes are exactly `exact`.
    pub async fn expect(&mut self, exact: &str) {
        while self.buf.len() < exact.len() {
            self.fill().await;
        }
        let got: Vec<u8> = self.buf.drain(..exact.len()).collect();
        assert_eq!(String::from_utf8_lossy(&got), exact);
    }

    /// Sends `line` and expects exactly `answer` back.
    pub async fn exchange(&mut self, line: &str, answer: &str) {
        self.send(line).await;
        self.expect(answer).await;
    }

    /// The next complete line (without CR LF), skipping empty ones.
    pub async fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l: Vec<u8> = self.buf.drain(..i + 2).collect();
                let s = String::from_utf8_lossy(&l[..i]).into_owned();
                if !s.is_empty() {
                    return s;
                }
                continue;
            }
            self.fill().await;
        }
    }

    /// Sends a command (echo off) and returns its lines up to and including the final result;
    /// URCs seen before the response are kept in `urcs`.
    pub async fn cmd(&mut self, line: &str, urcs: &mut Vec<String>) -> Vec<String> {
        self.send(&format!("{line}\r")).await;
        let mut lines = Vec::new();
        loop {
            let l = self.line().await;
            let last = l == "OK" || l.starts_with("ERROR");
            if l.starts_with("+UE") && lines.is_empty() {
                urcs.push(l);
                continue;
            }
            lines.push(l);
            if last {
                return lines;
            }
        }
    }

    /// Waits for a URC starting with `prefix` (others are kept in `urcs`).
    pub async fn urc(&mut self, prefix: &str, urcs: &mut Vec<String>) -> String {
        if let Some(i) = urcs.iter().position(|u| u.starts_with(prefix)) {
            return urcs.remove(i);
        }
        loop {
            let l = self.line().await;
            if l.starts_with(prefix) {
                return l;
            }
            urcs.push(l);
        }
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

pub fn at_addr(host: &Host) -> String {
    let mut a = host.address().addr.0;
    a.reverse();
    format!("{}p", hex(&a))
}
