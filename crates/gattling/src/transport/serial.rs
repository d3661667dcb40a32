//! `serial:DEVICE[,BAUD][,rtscts]`: H4 over a UART, bridged from the blocking `serialport`
//! crate to async with two threads.
//!
//! - The reader thread does blocking reads with a short timeout and forwards each chunk over a
//!   bounded channel; the async reader returns the chunks, then an error and EOF once the device
//!   fails (unplugged, hung up).
//! - The writer thread receives chunks over an unbounded channel and writes them fully; `flush`
//!   on the async writer waits until the thread has handed every queued chunk to the OS, which
//!   gives the host back-pressure packet by packet.
//!
//! Both threads notice within one read timeout that the [`Transport`] was dropped and exit,
//! closing the device.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use serialport::{DataBits, FlowControl, Parity, SerialPort, StopBits};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use super::{Transport, TransportError, TransportSpec};

/// How long a blocking read or write waits before the thread checks whether it should exit.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Size of one read from the device.
const READ_CHUNK: usize = 2048;
/// Chunks buffered between the reader thread and the async reader.
const READ_QUEUE: usize = 64;

/// Opens the serial device and starts the bridge threads.
pub(super) async fn open(
    spec: &TransportSpec,
    device: &str,
    baud: u32,
    rtscts: bool,
) -> Result<Transport, TransportError> {
    let builder = serialport::new(device, baud)
        .data_bits(DataBits::Eight)
        .parity(Parity::None)
        .stop_bits(StopBits::One)
        .flow_control(if rtscts { FlowControl::Hardware } else { FlowControl::None })
        .timeout(POLL_INTERVAL);
    let opened = tokio::task::spawn_blocking(move || {
        let port = builder.open()?;
        let writer = port.try_clone()?;
        Ok::<_, serialport::Error>((port, writer))
    })
    .await
    .map_err(|e| TransportError::io(format!("serial:{device}: open task failed"), io::Error::other(e)))?;
    // Errors name the device the way users type it: "serial:/dev/ttyACM0: No such file or directory".
    let name = format!("serial:{device}");
    let (read_port, write_port) = opened.map_err(|e| TransportError::io(name.clone(), io::Error::from(e)))?;

    let shared = Arc::new(Shared::default());
    let (read_tx, read_rx) = mpsc::channel(READ_QUEUE);
    let (write_tx, write_rx) = mpsc::unbounded_channel();

    spawn_thread(format!("{name} reader"), {
        let shared = Arc::clone(&shared);
        let name = name.clone();
        move || reader_thread(read_port, read_tx, shared, name)
    })?;
    spawn_thread(format!("{name} writer"), {
        let shared = Arc::clone(&shared);
        let name = name.clone();
        move || writer_thread(write_port, write_rx, shared, name)
    })?;

    let reader = SerialReader { rx: read_rx, pending: Vec::new(), pos: 0 };
    let writer = SerialWriter { tx: Some(write_tx), queued: 0, shared };
    Ok(Transport::new(reader, writer, spec.to_string()))
}

fn spawn_thread(name: String, f: impl FnOnce() + Send + 'static) -> Result<(), TransportError> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .map(drop)
        .map_err(|e| TransportError::io(format!("{name}: cannot start thread"), e))
}

/// State shared by the async writer and both threads.
#[derive(Default)]
struct Shared {
    /// Chunks the writer thread has finished writing.
    written: AtomicU64,
    /// Set once either thread hit a fatal device error.
    failed: AtomicBool,
    /// The first fatal error, as (kind, message), for reporting to the async side.
    error: Mutex<Option<(io::ErrorKind, String)>>,
    /// Waker of a pending `poll_flush`.
    flush_waker: Mutex<Option<Waker>>,
}

impl Shared {
    /// Records a fatal error (the first one wins) and wakes a pending flush.
    fn fail(&self, kind: io::ErrorKind, message: String) {
        if let Ok(mut slot) = self.error.lock() {
            slot.get_or_insert((kind, message));
        }
        self.failed.store(true, Ordering::Release);
        self.wake_flush();
    }

    /// The recorded fatal error as a fresh `io::Error`.
    fn error(&self) -> io::Error {
        let recorded = self.error.lock().ok().and_then(|slot| slot.clone());
        match recorded {
            Some((kind, message)) => io::Error::new(kind, message),
            None => io::Error::new(io::ErrorKind::BrokenPipe, "serial transport closed"),
        }
    }

    fn wake_flush(&self) {
        let waker = self.flush_waker.lock().ok().and_then(|mut w| w.take());
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Describes a device error for the host, e.g. "serial:/dev/ttyACM0: device error: Broken pipe".
fn device_error(name: &str, e: &io::Error) -> (io::ErrorKind, String) {
    (e.kind(), format!("{name}: device error: {e}"))
}

fn reader_thread(
    mut port: Box<dyn SerialPort>,
    tx: mpsc::Sender<io::Result<Vec<u8>>>,
    shared: Arc<Shared>,
    name: String,
) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        match port.read(&mut buf) {
            Ok(0) => {
                tracing::debug!(transport = %name, "serial device reported end of file");
                shared.fail(io::ErrorKind::UnexpectedEof, format!("{name}: device closed"));
                return;
            }
            Ok(n) => {
                let chunk = buf.get(..n).unwrap_or_default().to_vec();
                if tx.blocking_send(Ok(chunk)).is_err() {
                    return; // Transport dropped.
                }
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::Interrupted) => {
                if tx.is_closed() {
                    return;
                }
                if shared.failed.load(Ordering::Acquire) {
                    let _ = tx.blocking_send(Err(shared.error()));
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(transport = %name, "serial read failed: {e}");
                let (kind, message) = device_error(&name, &e);
                shared.fail(kind, message.clone());
                let _ = tx.blocking_send(Err(io::Error::new(kind, message)));
                return;
            }
        }
    }
}

fn writer_thread(
    mut port: Box<dyn SerialPort>,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    shared: Arc<Shared>,
    name: String,
) {
    while let Some(chunk) = rx.blocking_recv() {
        let mut rest = chunk.as_slice();
        while !rest.is_empty() {
            match port.write(rest) {
                Ok(0) => {
                    shared.fail(io::ErrorKind::WriteZero, format!("{name}: device accepts no data"));
                    return;
                }
                Ok(n) => rest = rest.get(n..).unwrap_or_default(),
                // Flow control is holding us off (or a signal): keep trying unless dropped.
                Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::Interrupted) => {
                    if rx.is_closed() || shared.failed.load(Ordering::Acquire) {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(transport = %name, "serial write failed: {e}");
                    let (kind, message) = device_error(&name, &e);
                    shared.fail(kind, message);
                    return;
                }
            }
        }
        shared.written.fetch_add(1, Ordering::AcqRel);
        shared.wake_flush();
    }
}

/// Async side of the reader thread.
struct SerialReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    /// The chunk being handed out and how much of it was consumed.
    pending: Vec<u8>,
    pos: usize,
}

impl AsyncRead for SerialReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos >= this.pending.len() {
            match this.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(Ok(())), // EOF
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(Some(Ok(chunk))) => {
                    this.pending = chunk;
                    this.pos = 0;
                }
            }
        }
        let avail = this.pending.get(this.pos..).unwrap_or_default();
        let n = avail.len().min(buf.remaining());
        buf.put_slice(avail.get(..n).unwrap_or_default());
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// Async side of the writer thread.
struct SerialWriter {
    /// `None` after shutdown.
    tx: Option<mpsc::UnboundedSender<Vec<u8>>>,
    /// Chunks handed to the writer thread so far.
    queued: u64,
    shared: Arc<Shared>,
}

impl SerialWriter {
    fn flushed(&self) -> bool {
        self.shared.written.load(Ordering::Acquire) >= self.queued
    }
}

impl AsyncWrite for SerialWriter {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.shared.failed.load(Ordering::Acquire) {
            return Poll::Ready(Err(this.shared.error()));
        }
        let Some(tx) = &this.tx else {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "serial transport was shut down")));
        };
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if tx.send(buf.to_vec()).is_err() {
            return Poll::Ready(Err(this.shared.error()));
        }
        this.queued += 1;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.flushed() {
            return Poll::Ready(Ok(()));
        }
        if let Ok(mut slot) = this.shared.flush_waker.lock() {
            *slot = Some(cx.waker().clone());
        }
        // Re-check after registering so a completion in between is not missed.
        if this.flushed() {
            Poll::Ready(Ok(()))
        } else if this.shared.failed.load(Ordering::Acquire) {
            Poll::Ready(Err(this.shared.error()))
        } else {
            Poll::Pending
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.tx.is_some() {
            std::task::ready!(self.as_mut().poll_flush(cx))?;
            self.tx = None;
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_device_error_names_it() {
        let spec: TransportSpec = "serial:/dev/gattling-no-such-tty,115200".parse().unwrap();
        let err = crate::transport::open(&spec).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("serial:/dev/gattling-no-such-tty: "), "{msg}");
        #[cfg(unix)]
        assert!(msg.contains("No such file or directory"), "{msg}");
        assert!(matches!(err, TransportError::Io { .. }));
    }

    /// Tests against a pseudo-terminal standing in for a UART controller.
    #[cfg(unix)]
    mod pty {
        use super::*;
        use serialport::TTYPort;
        use std::time::Instant;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        /// A pseudo-terminal pair: the master end plays the controller, the slave path is our device.
        fn pty() -> (TTYPort, String) {
            let (mut master, slave) = TTYPort::pair().unwrap();
            master.set_timeout(Duration::from_secs(5)).unwrap();
            let path = slave.name().unwrap();
            drop(slave); // The device stays available while the master is open.
            (master, path)
        }

        fn read_exactly(port: &mut TTYPort, n: usize) -> Vec<u8> {
            let mut out = vec![0u8; n];
            port.read_exact(&mut out).unwrap();
            out
        }

        #[tokio::test]
        async fn pty_carries_bytes_both_ways() {
            let (master, path) = pty();
            let spec = TransportSpec::Serial { device: path.clone(), baud: 115_200, rtscts: false };
            let mut t = crate::transport::open(&spec).await.unwrap();
            assert_eq!(t.description, format!("serial:{path},115200"));

            let controller = std::thread::spawn(move || {
                let mut master = master;
                let cmd = read_exactly(&mut master, 4);
                master.write_all(&[0x04, 0x0e, 0x04, 0x01, 0x03, 0x0c, 0x00]).unwrap();
                (master, cmd)
            });
            t.writer.write_all(&[0x01, 0x03, 0x0c, 0x00]).await.unwrap();
            t.writer.flush().await.unwrap();
            let mut evt = [0u8; 7];
            tokio::time::timeout(Duration::from_secs(5), t.reader.read_exact(&mut evt)).await.unwrap().unwrap();
            assert_eq!(evt, [0x04, 0x0e, 0x04, 0x01, 0x03, 0x0c, 0x00]);
            let (master, cmd) = controller.join().unwrap();
            assert_eq!(cmd, [0x01, 0x03, 0x0c, 0x00]);

            // Many packets, larger than one read chunk in total.
            let payload: Vec<u8> = (0..5000u32).map(|i| (i % 256) as u8).collect();
            let expected = payload.clone();
            let controller = std::thread::spawn(move || {
                let mut master = master;
                let got = read_exactly(&mut master, expected.len());
                assert_eq!(got, expected);
                master
            });
            for chunk in payload.chunks(250) {
                t.writer.write_all(chunk).await.unwrap();
                t.writer.flush().await.unwrap();
            }
            let master = controller.join().unwrap();

            // Unplugging (closing the master) ends the reader promptly with an error or EOF.
            drop(master);
            let start = Instant::now();
            let mut buf = [0u8; 1100];
            let res = tokio::time::timeout(Duration::from_secs(2), t.reader.read(&mut buf)).await.unwrap();
            match res {
                Ok(n) => assert_eq!(n, 0),
                Err(e) => assert!(e.to_string().contains(&path), "{e}"),
            }
            assert!(start.elapsed() < Duration::from_secs(1));
            // Afterwards: EOF, and writes fail instead of hanging.
            let n = t.reader.read(&mut buf).await.unwrap();
            assert_eq!(n, 0);
            let write = async {
                t.writer.write_all(&[0x01, 0x03, 0x0c, 0x00]).await?;
                t.writer.flush().await
            };
            let res = tokio::time::timeout(Duration::from_secs(2), write).await.unwrap();
            assert!(res.is_err());
        }

        #[tokio::test]
        async fn dropping_the_transport_releases_the_device() {
            let (_master, path) = pty();
            let spec = TransportSpec::Serial { device: path, baud: 1_000_000, rtscts: false };
            let t = crate::transport::open(&spec).await.unwrap();
            // The port is opened exclusively: a second open fails while the first is alive.
            assert!(crate::transport::open(&spec).await.is_err());
            drop(t);
            // Both threads notice within a poll interval and close their descriptors.
            let start = Instant::now();
            loop {
                match crate::transport::open(&spec).await {
                    Ok(_) => break,
                    Err(e) if start.elapsed() > Duration::from_secs(2) => panic!("still busy: {e}"),
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
    }
}
