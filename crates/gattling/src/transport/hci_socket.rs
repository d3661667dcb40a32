//! `hci-socket[:N]`: the Linux HCI user channel, exclusive raw access to adapter `hciN`.
//!
//! The kernel hands the whole controller to one socket (`HCI_CHANNEL_USER`): every `read` returns
//! exactly one packet with its H4 indicator, and every `write` must carry exactly one packet. The
//! writer therefore reassembles H4 packets from whatever chunks it is given and sends each one
//! with a single system call; the reader returns one packet per read (split across reads only if
//! the caller's buffer is smaller than the packet).

use std::io::{self, Read};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Transport, TransportError};

/// `BTPROTO_HCI` from `<bluetooth/bluetooth.h>` (not in the libc crate).
const BTPROTO_HCI: libc::c_int = 1;
/// `HCI_CHANNEL_USER` from `<bluetooth/hci.h>`: exclusive access, the kernel stack steps aside.
const HCI_CHANNEL_USER: u16 = 1;
/// Largest packet we accept from the kernel: indicator, 4-byte ACL header, 65535-byte payload.
const MAX_PACKET: usize = 1 + 4 + 0xFFFF;

/// `struct sockaddr_hci` from `<bluetooth/hci.h>`.
#[repr(C)]
#[derive(Clone, Copy)]
struct SockaddrHci {
    hci_family: libc::sa_family_t,
    hci_dev: u16,
    hci_channel: u16,
}

/// Opens the user channel on `hci<index>`.
pub(super) fn open(index: u16) -> Result<Transport, TransportError> {
    let name = format!("hci-socket:{index}");
    let open_error = |e: io::Error| {
        let message = e.raw_os_error().map_or_else(
            || format!("cannot open the HCI user channel on hci{index}"),
            |errno| open_error_message(index, errno),
        );
        TransportError::io(format!("{name}: {message}"), e)
    };
    // socket2 adds SOCK_CLOEXEC; the reactor needs the socket non-blocking.
    let socket = Socket::new(
        Domain::from(libc::AF_BLUETOOTH),
        Type::from(libc::SOCK_RAW | libc::SOCK_NONBLOCK),
        Some(Protocol::from(BTPROTO_HCI)),
    )
    .map_err(open_error)?;
    socket.bind(&user_channel_addr(index).map_err(open_error)?).map_err(open_error)?;
    let fd = register(socket)
        .map_err(|e| TransportError::io(format!("{name}: cannot register the socket with tokio"), e))?;
    let fd = Arc::new(fd);
    let reader = HciReader::new(Arc::clone(&fd), index);
    let writer = HciWriter { fd, pending: Vec::new() };
    Ok(Transport::new(reader, writer, name).packet_oriented())
}

/// Registers the socket with the tokio reactor (requires a runtime).
fn register(socket: Socket) -> io::Result<AsyncFd<Socket>> {
    // SAFETY: `Socket` owns its descriptor (an `OwnedFd`), always reports that same descriptor
    // from `as_raw_fd`, and closes it only when dropped, i.e. when the `AsyncFd` that now owns it
    // is dropped or gives it back through `into_inner`.
    unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)
}

/// The address binding a socket to `hci<index>`'s user channel.
fn user_channel_addr(index: u16) -> io::Result<SockAddr> {
    let addr = SockaddrHci {
        hci_family: libc::AF_BLUETOOTH as libc::sa_family_t,
        hci_dev: index,
        hci_channel: HCI_CHANNEL_USER,
    };
    // SAFETY: `try_init` hands us a zeroed `sockaddr_storage` (larger than and at least as aligned
    // as `SockaddrHci`) and its length; we store a complete `sockaddr_hci` whose family field says
    // AF_BLUETOOTH and set the length to exactly its size, which is what the contract requires.
    let ((), sockaddr) = unsafe {
        SockAddr::try_init(|storage, len| {
            storage.cast::<SockaddrHci>().write(addr);
            *len = std::mem::size_of::<SockaddrHci>() as libc::socklen_t;
            Ok(())
        })
    }?;
    Ok(sockaddr)
}

/// Explains why opening the user channel on `hci<index>` failed with `errno`, and what to do.
pub(crate) fn open_error_message(index: u16, errno: i32) -> String {
    match errno {
        libc::EAFNOSUPPORT => "this kernel has no Bluetooth socket support (AF_BLUETOOTH), \
             or this process is not in the host's network namespace (e.g. a container without \
             host networking)"
            .to_string(),
        libc::EPROTONOSUPPORT => {
            "this kernel has no HCI socket support (BTPROTO_HCI): load the bluetooth module".to_string()
        }
        libc::EPERM | libc::EACCES => {
            "needs CAP_NET_ADMIN (run as root or `setcap cap_net_admin+ep` on the binary)".to_string()
        }
        libc::EBUSY => format!(
            "hci{index} is up: bring it down first with `sudo hciconfig hci{index} down` or \
             `btmgmt --index {index} power off`"
        ),
        libc::EUSERS => {
            format!("hci{index} is already used by another program through the HCI user channel")
        }
        libc::ENODEV => format!("no adapter hci{index}"),
        libc::ERFKILL => {
            format!("hci{index} is blocked by rfkill: unblock it with `rfkill unblock bluetooth`")
        }
        libc::EINVAL => format!("the kernel rejected the HCI user channel on hci{index}"),
        _ => format!("cannot open the HCI user channel on hci{index}"),
    }
}

/// Total length (indicator included) of the H4 packet starting at `bytes[0]`, `None` while the
/// header is incomplete, or an error for an unknown packet indicator.
fn h4_packet_len(bytes: &[u8]) -> Option<io::Result<usize>> {
    let &indicator = bytes.first()?;
    let header = match indicator {
        0x01 | 0x03 => 3, // command, SCO: 8-bit length at offset 2 of the header
        0x02 | 0x05 => 4, // ACL, ISO: 16-bit length at offset 2 (ISO: 14 bits)
        0x04 => 2,        // event: 8-bit length at offset 1
        other => {
            return Some(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not an H4 packet: unknown packet indicator {other:#04x}"),
            )))
        }
    };
    let h = bytes.get(1..1 + header)?;
    let byte = |i: usize| usize::from(h.get(i).copied().unwrap_or(0));
    let payload = match indicator {
        0x01 | 0x03 => byte(2),
        0x04 => byte(1),
        0x02 => byte(2) | byte(3) << 8,
        _ => (byte(2) | byte(3) << 8) & 0x3FFF,
    };
    Some(Ok(1 + header + payload))
}

/// Reads packets from the user channel.
struct HciReader {
    fd: Arc<AsyncFd<Socket>>,
    /// Receive buffer (allocated on first read); `buf[pos..end]` is the rest of the last packet,
    /// left over only when the caller's buffer was smaller than the packet.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// Set after an error: the adapter is gone, later reads return EOF.
    done: bool,
    index: u16,
}

impl HciReader {
    fn new(fd: Arc<AsyncFd<Socket>>, index: u16) -> Self {
        HciReader { fd, buf: Vec::new(), pos: 0, end: 0, done: false, index }
    }

    /// Receives the next packet into `buf[..end]`; `Ready(Ok(false))` at end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if self.done {
            return Poll::Ready(Ok(false));
        }
        if self.buf.len() < MAX_PACKET {
            self.buf.resize(MAX_PACKET, 0);
        }
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let buf = &mut self.buf;
            match guard.try_io(|inner| inner.get_ref().read(buf)) {
                Ok(Ok(0)) => {
                    self.done = true;
                    return Poll::Ready(Ok(false));
                }
                Ok(Ok(n)) => {
                    self.pos = 0;
                    self.end = n;
                    return Poll::Ready(Ok(true));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => {
                    // The kernel reports a removed or reset adapter once (EPIPE and the like)
                    // and then goes quiet: end the stream after the error.
                    self.done = true;
                    let msg = format!("hci-socket:{}: adapter error: {e}", self.index);
                    return Poll::Ready(Err(io::Error::new(e.kind(), msg)));
                }
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncRead for HciReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos >= this.end && !ready!(this.poll_fill(cx))? {
            return Poll::Ready(Ok(())); // EOF
        }
        let avail = this.buf.get(this.pos..this.end).unwrap_or_default();
        let n = avail.len().min(out.remaining());
        out.put_slice(avail.get(..n).unwrap_or_default());
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// Writes packets to the user channel, one system call per H4 packet.
struct HciWriter {
    fd: Arc<AsyncFd<Socket>>,
    /// Bytes of a packet not yet sent: a partial packet, or a complete one waiting for the socket.
    pending: Vec<u8>,
}

/// Sends one complete packet with one system call.
fn poll_send(fd: &AsyncFd<Socket>, cx: &mut Context<'_>, packet: &[u8]) -> Poll<io::Result<()>> {
    loop {
        let mut guard = ready!(fd.poll_write_ready(cx))?;
        match guard.try_io(|inner| inner.get_ref().send(packet)) {
            Ok(Ok(n)) if n == packet.len() => return Poll::Ready(Ok(())),
            Ok(Ok(n)) => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("HCI socket took {n} of a {}-byte packet", packet.len()),
                )))
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            Ok(Err(e)) => return Poll::Ready(Err(e)),
            Err(_would_block) => continue,
        }
    }
}

impl HciWriter {
    /// Sends the buffered packet if it is complete; `Ready(Ok)` when nothing complete is left.
    fn poll_send_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match h4_packet_len(&self.pending) {
            Some(Ok(len)) if len == self.pending.len() => {
                let res = ready!(poll_send(&self.fd, cx, &self.pending));
                self.pending.clear();
                Poll::Ready(res)
            }
            _ => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for HciWriter {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(this.poll_send_pending(cx))?;
        if this.pending.is_empty() {
            // Fast path: the caller handed us at least one whole packet.
            match h4_packet_len(buf) {
                Some(Ok(len)) if len <= buf.len() => {
                    let packet = buf.get(..len).unwrap_or_default();
                    ready!(poll_send(&this.fd, cx, packet))?;
                    return Poll::Ready(Ok(len));
                }
                Some(Err(e)) => return Poll::Ready(Err(e)),
                _ => {}
            }
        }
        // Slow path: accumulate up to the end of the current packet.
        let mut taken = 0;
        loop {
            match h4_packet_len(&this.pending) {
                None => match buf.get(taken) {
                    // The header is at most five bytes: take it byte by byte.
                    Some(&b) => {
                        this.pending.push(b);
                        taken += 1;
                    }
                    None => break,
                },
                Some(Err(e)) => {
                    this.pending.clear();
                    return Poll::Ready(Err(e));
                }
                Some(Ok(len)) => {
                    let rest = buf.get(taken..).unwrap_or_default();
                    let take = (len - this.pending.len()).min(rest.len());
                    this.pending.extend_from_slice(rest.get(..take).unwrap_or_default());
                    taken += take;
                    break;
                }
            }
        }
        // Try to send a just-completed packet now; if the socket is full, flush finishes it.
        if let Poll::Ready(Err(e)) = this.poll_send_pending(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(taken))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_send_pending(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn errno_messages_say_what_to_do() {
        let msg = open_error_message(0, libc::EAFNOSUPPORT);
        assert!(msg.contains("no Bluetooth socket support (AF_BLUETOOTH)"), "{msg}");
        for errno in [libc::EPERM, libc::EACCES] {
            let msg = open_error_message(0, errno);
            assert!(msg.contains("needs CAP_NET_ADMIN"), "{msg}");
            assert!(msg.contains("setcap cap_net_admin+ep"), "{msg}");
        }
        let msg = open_error_message(1, libc::EBUSY);
        assert!(msg.starts_with("hci1 is up"), "{msg}");
        assert!(msg.contains("sudo hciconfig hci1 down"), "{msg}");
        assert!(msg.contains("btmgmt --index 1 power off"), "{msg}");
        assert_eq!(open_error_message(2, libc::ENODEV), "no adapter hci2");
        assert!(open_error_message(0, libc::ERFKILL).contains("rfkill unblock"));
        assert!(open_error_message(0, libc::EUSERS).contains("another program"));
        assert_eq!(open_error_message(3, libc::EIO), "cannot open the HCI user channel on hci3");
    }

    #[test]
    fn sockaddr_is_sockaddr_hci() {
        assert_eq!(std::mem::size_of::<SockaddrHci>(), 6);
        let addr = user_channel_addr(0x0102).unwrap();
        assert_eq!(addr.len() as usize, 6);
        assert_eq!(addr.family(), libc::AF_BLUETOOTH as libc::sa_family_t);
        // SAFETY: `as_ptr` points at a live `sockaddr_storage` of at least 6 initialised bytes.
        let bytes = unsafe { std::slice::from_raw_parts(addr.as_ptr().cast::<u8>(), 6) };
        let family = (libc::AF_BLUETOOTH as u16).to_ne_bytes();
        let dev = 0x0102u16.to_ne_bytes();
        let chan = HCI_CHANNEL_USER.to_ne_bytes();
        assert_eq!(bytes, [family[0], family[1], dev[0], dev[1], chan[0], chan[1]]);
    }

    #[test]
    fn h4_lengths() {
        let len = |b: &[u8]| h4_packet_len(b).map(|r| r.map_err(|e| e.kind()));
        assert_eq!(len(&[]), None);
        assert_eq!(len(&[0x01, 0x03]), None);
        assert_eq!(len(&[0x01, 0x03, 0x0c, 0x00]), Some(Ok(4)));
        assert_eq!(len(&[0x01, 0x01, 0x20, 0x08]), Some(Ok(12)));
        assert_eq!(len(&[0x02, 0x40, 0x00, 0x1b]), None);
        assert_eq!(len(&[0x02, 0x40, 0x00, 0x1b, 0x00]), Some(Ok(32)));
        assert_eq!(len(&[0x02, 0x40, 0x00, 0x00, 0x01]), Some(Ok(261)));
        assert_eq!(len(&[0x03, 0x01, 0x00, 0x10]), Some(Ok(20)));
        assert_eq!(len(&[0x04, 0x0e, 0x04]), Some(Ok(7)));
        assert_eq!(len(&[0x05, 0x01, 0x00, 0x10, 0xc0]), Some(Ok(21)));
        assert_eq!(len(&[0x07]), Some(Err(io::ErrorKind::InvalidInput)));
    }

    /// A connected pair of datagram sockets standing in for the kernel's packet socket.
    fn fake_channel() -> (HciReader, HciWriter, std::os::unix::net::UnixDatagram) {
        let (ours, theirs) = std::os::unix::net::UnixDatagram::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        theirs.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let socket = Socket::from(std::os::fd::OwnedFd::from(ours));
        let fd = Arc::new(register(socket).unwrap());
        (HciReader::new(Arc::clone(&fd), 0), HciWriter { fd, pending: Vec::new() }, theirs)
    }

    #[tokio::test]
    async fn one_send_per_packet_however_written() {
        let (_reader, mut writer, kernel) = fake_channel();
        let reset = [0x01, 0x03, 0x0c, 0x00];
        let acl = [0x02, 0x40, 0x00, 0x03, 0x00, 0xaa, 0xbb, 0xcc];
        // One packet per write_all.
        writer.write_all(&reset).await.unwrap();
        writer.flush().await.unwrap();
        // Two packets in one buffer.
        let mut two = reset.to_vec();
        two.extend_from_slice(&acl);
        writer.write_all(&two).await.unwrap();
        // A packet dribbled in byte by byte.
        for b in acl {
            writer.write_all(&[b]).await.unwrap();
        }
        writer.flush().await.unwrap();
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        for _ in 0..4 {
            let n = kernel.recv(&mut buf).unwrap();
            got.push(buf[..n].to_vec());
        }
        assert_eq!(got, [reset.to_vec(), reset.to_vec(), acl.to_vec(), acl.to_vec()]);
        // Garbage is refused rather than sent.
        assert!(writer.write_all(&[0x09, 0x00]).await.is_err());
    }

    #[tokio::test]
    async fn reads_return_whole_packets() {
        let (mut reader, _writer, kernel) = fake_channel();
        let evt = [0x04, 0x0e, 0x04, 0x01, 0x03, 0x0c, 0x00];
        kernel.send(&evt).unwrap();
        kernel.send(&evt).unwrap();
        let mut buf = [0u8; 1100];
        let n = reader.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], evt);
        // A caller with a tiny buffer still gets every byte, in order.
        let mut small = [0u8; 3];
        let mut got = Vec::new();
        while got.len() < evt.len() {
            let n = reader.read(&mut small).await.unwrap();
            got.extend_from_slice(&small[..n]);
        }
        assert_eq!(got, evt);
    }

    #[tokio::test]
    async fn open_here_fails_helpfully() {
        let spec = crate::transport::TransportSpec::HciSocket { index: 0 };
        match crate::transport::open(&spec).await {
            // A machine with a powered-down hci0 and CAP_NET_ADMIN: nothing to check.
            Ok(t) => drop(t),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.starts_with("hci-socket:0: "), "{msg}");
                let known = [
                    "AF_BLUETOOTH",
                    "BTPROTO_HCI",
                    "CAP_NET_ADMIN",
                    "hci0 is up",
                    "no adapter hci0",
                    "rfkill",
                    "another program",
                ];
                assert!(known.iter().any(|k| msg.contains(k)), "unexpected: {msg}");
                assert!(matches!(e, TransportError::Io { .. }));
            }
        }
    }
}
