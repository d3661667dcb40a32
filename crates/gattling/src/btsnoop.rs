//! btsnoop capture: every HCI packet between the host and its controller, in the file format
//! Wireshark, `btmon -r` and Android's HCI snoop log use.
//!
//! The file is btsnoop version 1 with datalink 1002 (HCI UART/H4): each record carries the H4
//! packet indicator and the packet, the direction (bit 0: 0 = host to controller, 1 = controller
//! to host) and whether it is a command or event (bit 1), and a timestamp in microseconds since
//! midnight, January 1st of year 0 AD. Every record is written with one `write` call and no
//! buffering, so a killed process leaves a readable file.
//!
//! Capture a host with [`crate::HostOptions::btsnoop`], or wrap any [`Transport`] with
//! [`Transport::capture`] (or [`CaptureRead`]/[`CaptureWrite`] for other byte pipes).

use crate::transport::Transport;
use gattling_proto::hci::h4::H4Framer;
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The 8-byte identification pattern that opens a btsnoop file.
pub const MAGIC: &[u8; 8] = b"btsnoop\0";
/// The btsnoop format version written.
pub const VERSION: u32 = 1;
/// Datalink type 1002: HCI UART (H4), packets prefixed by their indicator byte.
pub const DATALINK_H4: u32 = 1002;
/// Microseconds from "0 AD" as btsnoop counts it to the Unix epoch: the constant BlueZ, Android
/// and Wireshark use (0x00dcddb30f2f8000, 719,540 days).
pub const EPOCH_OFFSET_US: u64 = 0x00DC_DDB3_0F2F_8000;

/// Which way a packet went.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direction {
    /// Host to controller (commands, outgoing ACL): flag bit 0 clear.
    Sent,
    /// Controller to host (events, incoming ACL): flag bit 0 set.
    Received,
}

/// The record flags for an H4 packet going `dir`: bit 0 is the direction, bit 1 set for commands
/// and events.
pub fn flags(dir: Direction, h4_indicator: u8) -> u32 {
    let received = u32::from(dir == Direction::Received);
    let command_or_event = matches!(h4_indicator, 0x01 | 0x04);
    received | u32::from(command_or_event) << 1
}

/// The current time as btsnoop counts it: microseconds since 0 AD.
pub fn timestamp_now() -> u64 {
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
    unix + EPOCH_OFFSET_US
}

/// Encodes one record (24-byte header and the packet) into `out`.
pub fn encode_record(out: &mut Vec<u8>, dir: Direction, h4: &[u8], timestamp_us: u64) {
    let len = h4.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()); // original length
    out.extend_from_slice(&len.to_be_bytes()); // included length
    out.extend_from_slice(&flags(dir, h4.first().copied().unwrap_or(0)).to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes()); // cumulative drops
    out.extend_from_slice(&timestamp_us.to_be_bytes());
    out.extend_from_slice(h4);
}

/// The 16-byte file header.
pub fn file_header() -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_be_bytes());
    h[12..].copy_from_slice(&DATALINK_H4.to_be_bytes());
    h
}

/// An open btsnoop file; shared (behind an `Arc`) by the two directions of a transport.
pub struct Btsnoop {
    file: Mutex<Option<File>>,
    path: PathBuf,
}

impl fmt::Debug for Btsnoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Btsnoop").field("path", &self.path).finish()
    }
}

impl Btsnoop {
    /// Creates (or truncates) `path` and writes the file header. Fails here, before anything
    /// starts, when the path cannot be written.
    pub fn create(path: impl AsRef<Path>) -> io::Result<Arc<Btsnoop>> {
        let path = path.as_ref().to_path_buf();
        let mut file = File::create(&path)?;
        file.write_all(&file_header())?;
        Ok(Arc::new(Btsnoop { file: Mutex::new(Some(file)), path }))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one H4 packet (indicator first). Write errors stop the capture with a warning;
    /// they never disturb the host.
    pub fn record(&self, dir: Direction, h4: &[u8]) {
        let mut rec = Vec::with_capacity(24 + h4.len());
        encode_record(&mut rec, dir, h4, timestamp_now());
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = guard.as_mut() {
            if let Err(e) = file.write_all(&rec) {
                tracing::warn!(path = %self.path.display(), "btsnoop capture stopped: {e}");
                *guard = None;
            }
        }
    }

    /// Syncs the file to disk and stops recording (later packets are dropped).
    pub fn close(&self) {
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = guard.take() {
            let _ = file.sync_all();
        }
    }
}

/// Frames a byte stream into H4 packets and records each whole packet.
struct Recorder {
    snoop: Arc<Btsnoop>,
    dir: Direction,
    framer: H4Framer,
    packet: Vec<u8>,
}

impl Recorder {
    fn new(snoop: Arc<Btsnoop>, dir: Direction) -> Self {
        // Room for the largest ACL packets any controller announces.
        Recorder { snoop, dir, framer: H4Framer::new(4 + 0xFFFF), packet: Vec::new() }
    }

    fn feed(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.framer.push(bytes);
        while let Some(p) = self.framer.next_packet() {
            match p {
                Ok(p) => {
                    self.packet.clear();
                    p.encode(&mut self.packet);
                    self.snoop.record(self.dir, &self.packet);
                }
                Err(e) => tracing::debug!("btsnoop: stream out of step: {e}"),
            }
        }
    }
}

/// An [`AsyncRead`] that records every H4 packet read through it.
pub struct CaptureRead<R> {
    inner: R,
    rec: Recorder,
}

impl<R> CaptureRead<R> {
    /// Records what `inner` yields as going `dir`.
    pub fn new(inner: R, snoop: Arc<Btsnoop>, dir: Direction) -> Self {
        CaptureRead { inner, rec: Recorder::new(snoop, dir) }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for CaptureRead<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            this.rec.feed(buf.filled().get(before..).unwrap_or(&[]));
        }
        r
    }
}

/// An [`AsyncWrite`] that records every H4 packet written through it (the bytes the inner writer
/// accepted).
pub struct CaptureWrite<W> {
    inner: W,
    rec: Recorder,
}

impl<W> CaptureWrite<W> {
    /// Records what is written to `inner` as going `dir`.
    pub fn new(inner: W, snoop: Arc<Btsnoop>, dir: Direction) -> Self {
        CaptureWrite { inner, rec: Recorder::new(snoop, dir) }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for CaptureWrite<W> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            this.rec.feed(buf.get(..n).unwrap_or(&[]));
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Transport {
    /// Wraps the transport so that every HCI packet in both directions is recorded in `snoop`.
    pub fn capture(self, snoop: Arc<Btsnoop>) -> Transport {
        Transport {
            reader: Box::new(CaptureRead::new(self.reader, snoop.clone(), Direction::Received)),
            writer: Box::new(CaptureWrite::new(self.writer, snoop, Direction::Sent)),
            description: self.description,
            packets: self.packets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn be32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn epoch_offset_is_the_one_wireshark_reads() {
        assert_eq!(EPOCH_OFFSET_US, 0x00dc_ddb3_0f2f_8000);
        assert_eq!(EPOCH_OFFSET_US, 719_540 * 86_400 * 1_000_000);
    }

    #[tokio::test]
    async fn file_format_header_records_flags_and_timestamps() {
        let dir = std::env::temp_dir().join(format!("gattling-btsnoop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("unit.btsnoop");
        let snoop = Btsnoop::create(&path).unwrap();
        let (a, mut b) = tokio::io::duplex(1024);
        let (r, w) = tokio::io::split(a);
        let t = Transport::new(r, w, "test").capture(snoop.clone());
        let (mut reader, mut writer) = (t.reader, t.writer);
        // Host sends HCI Reset (command), in two writes.
        writer.write_all(&[0x01, 0x03]).await.unwrap();
        writer.write_all(&[0x0c, 0x00]).await.unwrap();
        let mut got = [0u8; 4];
        b.read_exact(&mut got).await.unwrap();
        // Controller answers Command Complete and an ACL packet back to back in one write.
        b.write_all(&[0x04, 0x0e, 0x04, 0x01, 0x03, 0x0c, 0x00, 0x02, 0x40, 0x00, 0x01, 0x00, 0xAA]).await.unwrap();
        let mut rx = [0u8; 13];
        reader.read_exact(&mut rx).await.unwrap();
        let before = timestamp_now();
        snoop.close();
        let f = std::fs::read(&path).unwrap();
        assert_eq!(&f[..8], b"btsnoop\0");
        assert_eq!(be32(&f, 8), 1);
        assert_eq!(be32(&f, 12), 1002);
        let mut at = 16;
        let mut recs = Vec::new();
        while at < f.len() {
            let (orig, incl, flags, drops) = (be32(&f, at), be32(&f, at + 4), be32(&f, at + 8), be32(&f, at + 12));
            let ts = u64::from_be_bytes(f[at + 16..at + 24].try_into().unwrap());
            assert_eq!(orig, incl);
            assert_eq!(drops, 0);
            assert!(ts <= before && before - ts < 60_000_000, "timestamp {ts} vs now {before}");
            // Year 2020 or later, counted from 0 AD.
            assert!(ts > EPOCH_OFFSET_US + 1_577_836_800_000_000);
            recs.push((flags, f[at + 24..at + 24 + incl as usize].to_vec()));
            at += 24 + incl as usize;
        }
        assert_eq!(
            recs,
            vec![
                (2, vec![0x01, 0x03, 0x0c, 0x00]),
                (3, vec![0x04, 0x0e, 0x04, 0x01, 0x03, 0x0c, 0x00]),
                (1, vec![0x02, 0x40, 0x00, 0x01, 0x00, 0xAA]),
            ]
        );
        // After close nothing more is written.
        snoop.record(Direction::Sent, &[0x01, 0x03, 0x0c, 0x00]);
        assert_eq!(std::fs::read(&path).unwrap().len(), f.len());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unwritable_path_fails_at_create() {
        assert!(Btsnoop::create("/nonexistent-dir/x.btsnoop").is_err());
    }
}
