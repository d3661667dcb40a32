//! `tcp-client:HOST:PORT`: H4 over a TCP connection (rootcanal, bumble's controllers).
//!
//! rootcanal writes each HCI packet as two TCP segments with Nagle's algorithm on, so a host that
//! leaves delayed ACKs on stalls ~40 ms per exchange. We set `TCP_NODELAY` and, on Linux, re-arm
//! `TCP_QUICKACK` after every successful read (the kernel clears it again by itself), so each
//! command completes in one controller tick.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

use super::{Transport, TransportError, TransportSpec};

/// Delays between connection attempts refused by the server (rootcanal's backlog is 1, and a
/// freshly started server may not be listening yet): about one second in total.
const REFUSED_RETRY_DELAYS_MS: [u64; 4] = [100, 200, 300, 400];

/// Connects to `host:port` and wraps the stream for H4.
pub(super) async fn open(spec: &TransportSpec, host: &str, port: u16) -> Result<Transport, TransportError> {
    let stream = connect_with_retry(spec, host, port).await?;
    stream.set_nodelay(true).map_err(|e| TransportError::io(format!("{spec}: cannot set TCP_NODELAY"), e))?;
    let description = match (stream.local_addr(), stream.peer_addr()) {
        (Ok(local), Ok(peer)) => format!("{spec} ({local} -> {peer})"),
        _ => spec.to_string(),
    };
    let (read_half, write_half) = stream.into_split();

    #[cfg(target_os = "linux")]
    let reader = quickack::QuickAckReader::new(read_half);
    #[cfg(not(target_os = "linux"))]
    let reader = read_half;

    Ok(Transport::new(reader, write_half, description))
}

async fn connect_with_retry(spec: &TransportSpec, host: &str, port: u16) -> Result<TcpStream, TransportError> {
    let mut delays = REFUSED_RETRY_DELAYS_MS.iter();
    loop {
        match TcpStream::connect((host, port)).await {
            Ok(stream) => return Ok(stream),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => match delays.next() {
                Some(&ms) => {
                    tracing::debug!(transport = %spec, "connection refused; retrying in {ms} ms");
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                None => return Err(TransportError::io(format!("{spec}: cannot connect"), e)),
            },
            Err(e) => return Err(TransportError::io(format!("{spec}: cannot connect"), e)),
        }
    }
}

#[cfg(target_os = "linux")]
mod quickack {
    //! A read half that re-arms `TCP_QUICKACK` after every read that returned data.

    use std::io;
    use std::os::fd::{AsRawFd, RawFd};
    use std::pin::Pin;
    use std::task::{ready, Context, Poll};

    use tokio::io::{AsyncRead, ReadBuf};
    use tokio::net::tcp::OwnedReadHalf;

    /// Wraps the read half of a TCP stream, re-enabling quick ACKs after each read.
    pub(super) struct QuickAckReader {
        inner: OwnedReadHalf,
        /// Cleared after the first failure so a socket that refuses the option costs nothing more.
        enabled: bool,
    }

    impl QuickAckReader {
        /// Wraps `inner` and arms quick ACKs once up front.
        pub(super) fn new(inner: OwnedReadHalf) -> Self {
            let mut reader = QuickAckReader { inner, enabled: true };
            reader.rearm();
            reader
        }

        fn rearm(&mut self) {
            if !self.enabled {
                return;
            }
            if let Err(e) = set_quickack(self.inner.as_ref().as_raw_fd()) {
                tracing::warn!("cannot set TCP_QUICKACK ({e}); reads may stall on delayed ACKs");
                self.enabled = false;
            }
        }
    }

    impl AsyncRead for QuickAckReader {
        fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            if buf.filled().len() > before {
                this.rearm();
            }
            Poll::Ready(Ok(()))
        }
    }

    /// `setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, 1)`.
    pub(super) fn set_quickack(fd: RawFd) -> io::Result<()> {
        let one: libc::c_int = 1;
        // SAFETY: `fd` is the descriptor of a TCP socket kept open by the caller's stream for the
        // duration of the call; the option value points to a live `c_int` whose exact size is
        // passed, and setsockopt does not retain the pointer.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn listener() -> (TcpListener, TransportSpec) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        (listener, TransportSpec::TcpClient { host: "127.0.0.1".into(), port })
    }

    #[tokio::test]
    async fn carries_bytes_both_ways_and_sees_eof() {
        let (listener, spec) = listener().await;
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            // HCI_Reset in, Command Complete out (as rootcanal would answer).
            let mut cmd = [0u8; 4];
            sock.read_exact(&mut cmd).await.unwrap();
            sock.write_all(&[0x04, 0x0e, 0x04, 0x01, 0x03, 0x0c, 0x00]).await.unwrap();
            cmd
        });
        let mut t = crate::transport::open(&spec).await.unwrap();
        assert!(t.description.starts_with("tcp-client:127.0.0.1:"), "{}", t.description);
        t.writer.write_all(&[0x01, 0x03, 0x0c, 0x00]).await.unwrap();
        t.writer.flush().await.unwrap();
        let mut evt = [0u8; 7];
        t.reader.read_exact(&mut evt).await.unwrap();
        assert_eq!(evt, [0x04, 0x0e, 0x04, 0x01, 0x03, 0x0c, 0x00]);
        assert_eq!(server.await.unwrap(), [0x01, 0x03, 0x0c, 0x00]);
        // The server task dropped its socket: the reader sees EOF.
        let mut buf = [0u8; 1100];
        let n = tokio::time::timeout(Duration::from_secs(5), t.reader.read(&mut buf)).await.unwrap().unwrap();
        assert_eq!(n, 0);
    }

    #[tokio::test]
    async fn many_small_reads_in_order() {
        // Exercises the quick-ACK re-arm on every read: data must still arrive intact.
        let (listener, spec) = listener().await;
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            sock.set_nodelay(true).unwrap();
            for i in 0..200u32 {
                let b = (i % 251) as u8;
                sock.write_all(&[0x04, 0xff, 0x01, b]).await.unwrap();
                let mut ack = [0u8; 1];
                sock.read_exact(&mut ack).await.unwrap();
                assert_eq!(ack[0], b);
            }
        });
        let mut t = crate::transport::open(&spec).await.unwrap();
        let start = Instant::now();
        for i in 0..200u32 {
            let mut pkt = [0u8; 4];
            t.reader.read_exact(&mut pkt).await.unwrap();
            assert_eq!(pkt, [0x04, 0xff, 0x01, (i % 251) as u8]);
            t.writer.write_all(&[pkt[3]]).await.unwrap();
            t.writer.flush().await.unwrap();
        }
        server.await.unwrap();
        // 200 ping-pongs over loopback must not take delayed-ACK time (~40 ms each).
        assert!(start.elapsed() < Duration::from_secs(4), "{:?}", start.elapsed());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn quickack_can_be_set_on_a_tcp_socket() {
        use std::os::fd::AsRawFd;
        let (listener, spec) = listener().await;
        let TransportSpec::TcpClient { host, port } = &spec else { unreachable!() };
        let accept = tokio::spawn(async move { listener.accept().await.unwrap() });
        let stream = TcpStream::connect((host.as_str(), *port)).await.unwrap();
        quickack::set_quickack(stream.as_raw_fd()).unwrap();
        // A non-socket descriptor is refused with an error, not a crash.
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(quickack::set_quickack(file.as_raw_fd()).is_err());
        drop(accept.await.unwrap());
    }

    #[tokio::test]
    async fn retries_refused_connections() {
        // Find a free port, then start listening on it only after the first attempt was refused.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let spec = TransportSpec::TcpClient { host: "127.0.0.1".into(), port };
        let server = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let l = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
            let (mut sock, _) = l.accept().await.unwrap();
            sock.write_all(&[0x04, 0x0e, 0x00]).await.unwrap();
        });
        let mut t = crate::transport::open(&spec).await.unwrap();
        let mut buf = [0u8; 3];
        t.reader.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, [0x04, 0x0e, 0x00]);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn refused_for_good_reports_the_spec() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let spec = TransportSpec::TcpClient { host: "127.0.0.1".into(), port };
        let start = Instant::now();
        let err = crate::transport::open(&spec).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("{spec}: cannot connect: ")), "{msg}");
        assert!(
            matches!(err, TransportError::Io { ref source, .. } if source.kind() == io::ErrorKind::ConnectionRefused)
        );
        assert!(start.elapsed() >= Duration::from_millis(900), "{:?}", start.elapsed());
    }
}
