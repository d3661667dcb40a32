//! HCI transports: byte pipes to a controller, each carrying H4 framing.
//!
//! Every transport moves HCI packets prefixed by their H4 packet indicator (0x01 command,
//! 0x02 ACL, 0x04 event, ...). The host driver writes each complete packet with one
//! `write_all` followed by `flush`, and reads the other direction as a byte stream that it
//! frames with an H4 decoder. Packet-oriented transports (the Linux HCI socket) return whole
//! packets per read.
//!
//! A transport is chosen by a [`TransportSpec`], parsed from one string in the style of
//! bumble's transport names:
//!
//! - `tcp-client:HOST:PORT` (for example rootcanal's HCI port; IPv6 hosts go in `[brackets]`)
//! - `serial:DEVICE[,BAUD][,rtscts]` (an H4 UART controller; default 1000000 baud)
//! - `hci-socket[:N]` (Linux HCI user channel on `hciN`; default 0)

use std::fmt;
use std::io;
use std::str::FromStr;

use tokio::io::{AsyncRead, AsyncWrite};

#[cfg(target_os = "linux")]
mod hci_socket;
mod serial;
mod tcp;

/// Baud rate used for `serial:` specs that do not name one.
pub const DEFAULT_SERIAL_BAUD: u32 = 1_000_000;

/// The accepted spec forms, quoted in every parse error.
const ACCEPTED_FORMS: &str = "accepted forms: virtual[:NAME][,rootcanal|,acl=LENxNUM], tcp-client:HOST:PORT, \
                              serial:DEVICE[,BAUD][,rtscts], hci-socket[:N]";

/// Which controller to talk to, parsed from one string like bumble's transport names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportSpec {
    /// `tcp-client:HOST:PORT`: connect to a TCP server speaking H4 (rootcanal, bumble controllers).
    TcpClient {
        /// Host name or IP address, without IPv6 brackets.
        host: String,
        /// TCP port (non-zero).
        port: u16,
    },
    /// `serial:DEVICE[,BAUD][,rtscts]`: an H4 UART controller, 8N1.
    Serial {
        /// Device path, e.g. `/dev/ttyACM0`.
        device: String,
        /// Baud rate (non-zero).
        baud: u32,
        /// Hardware (RTS/CTS) flow control.
        rtscts: bool,
    },
    /// `hci-socket[:N]`: the Linux HCI user channel on adapter `hciN` (Linux only).
    HciSocket {
        /// Adapter index: the N of `hciN`.
        index: u16,
    },
    /// `virtual[:NAME][,rootcanal|,acl=LENxNUM]`: a fresh controller of gattling's built-in
    /// virtual controller on the in-process radio NAME (the default radio when NAME is empty).
    Virtual {
        /// Radio name; hosts on the same name share a radio.
        name: String,
        /// LE ACL buffer length and count (default 251 x 8; `rootcanal` = 27 x 20).
        acl: (u16, u8),
    },
}

/// Errors opening or describing a transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The transport spec string is malformed; the message names the bad part and the accepted forms.
    #[error("invalid transport spec: {0}")]
    Spec(String),
    /// An I/O error while opening the transport; `context` names the transport and what failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, starting with the transport spec (e.g. `serial:/dev/ttyACM0`).
        context: String,
        /// The underlying OS error.
        source: io::Error,
    },
    /// The transport cannot work on this platform (e.g. `hci-socket` outside Linux).
    #[error("{0}")]
    Unsupported(String),
}

impl TransportError {
    /// Builds an [`TransportError::Io`] from a context and an I/O error.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        TransportError::Io { context: context.into(), source }
    }
}

fn spec_error(msg: impl fmt::Display) -> TransportError {
    TransportError::Spec(format!("{msg}; {ACCEPTED_FORMS}"))
}

impl FromStr for TransportSpec {
    type Err = TransportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (scheme, rest) = match s.split_once(':') {
            Some((scheme, rest)) => (scheme, Some(rest)),
            None => (s, None),
        };
        match scheme {
            "tcp-client" => parse_tcp_client(rest.unwrap_or("")),
            "serial" => parse_serial(rest.unwrap_or("")),
            "hci-socket" => parse_hci_socket(rest),
            "virtual" => parse_virtual(rest.unwrap_or("")),
            "" => Err(spec_error("empty transport spec")),
            other => Err(spec_error(format_args!("unknown transport scheme {other:?} in {s:?}"))),
        }
    }
}

fn parse_virtual(rest: &str) -> Result<TransportSpec, TransportError> {
    let mut parts = rest.split(',');
    let name = parts.next().unwrap_or("").to_string();
    if name.contains(char::is_whitespace) {
        return Err(spec_error(format_args!("virtual: radio name {name:?} must not contain spaces")));
    }
    let default = gattling_controller::ControllerConfig::default();
    let mut acl = (default.acl_len, default.acl_num);
    for opt in parts {
        if opt == "rootcanal" {
            let rc = gattling_controller::ControllerConfig::rootcanal_like();
            acl = (rc.acl_len, rc.acl_num);
        } else if let Some(v) = opt.strip_prefix("acl=") {
            let parsed = v.split_once('x').and_then(|(l, n)| Some((l.parse::<u16>().ok()?, n.parse::<u8>().ok()?)));
            match parsed {
                Some((l, n)) if (27..=1024).contains(&l) && n > 0 => acl = (l, n),
                _ => {
                    return Err(spec_error(format_args!(
                        "virtual: bad acl={v:?} (expected LENxNUM with LEN 27-1024 and NUM 1-255, e.g. acl=27x20)"
                    )))
                }
            }
        } else {
            return Err(spec_error(format_args!("virtual: unknown option {opt:?} (rootcanal or acl=LENxNUM)")));
        }
    }
    Ok(TransportSpec::Virtual { name, acl })
}

fn parse_tcp_client(rest: &str) -> Result<TransportSpec, TransportError> {
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| spec_error(format_args!("tcp-client: missing ']' after IPv6 host in {rest:?}")))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| spec_error(format_args!("tcp-client: expected ':PORT' after [{host}] in {rest:?}")))?;
        (host, port)
    } else {
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| spec_error(format_args!("tcp-client: expected HOST:PORT, got {rest:?}")))?;
        if host.contains(':') {
            return Err(spec_error(format_args!(
                "tcp-client: IPv6 host {host:?} must be written in brackets, e.g. tcp-client:[::1]:6402"
            )));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(spec_error(format_args!("tcp-client: empty host in {rest:?}")));
    }
    let port = match port.parse::<u16>() {
        Ok(p) if p != 0 => p,
        _ => return Err(spec_error(format_args!("tcp-client: bad port {port:?} (expected 1-65535)"))),
    };
    Ok(TransportSpec::TcpClient { host: host.to_string(), port })
}

fn parse_serial(rest: &str) -> Result<TransportSpec, TransportError> {
    let mut parts = rest.split(',');
    let device = parts.next().unwrap_or("").trim();
    if device.is_empty() {
        return Err(spec_error("serial: missing device (e.g. serial:/dev/ttyACM0)"));
    }
    let mut baud = None;
    let mut rtscts = false;
    for part in parts {
        let part = part.trim();
        if part.eq_ignore_ascii_case("rtscts") {
            if rtscts {
                return Err(spec_error("serial: 'rtscts' given twice"));
            }
            rtscts = true;
        } else if part.bytes().all(|b| b.is_ascii_digit()) && !part.is_empty() {
            if baud.is_some() {
                return Err(spec_error(format_args!("serial: second baud rate {part:?}")));
            }
            match part.parse::<u32>() {
                Ok(b) if b != 0 => baud = Some(b),
                _ => return Err(spec_error(format_args!("serial: bad baud rate {part:?}"))),
            }
        } else {
            return Err(spec_error(format_args!(
                "serial: unexpected option {part:?} (expected a baud rate or 'rtscts')"
            )));
        }
    }
    Ok(TransportSpec::Serial { device: device.to_string(), baud: baud.unwrap_or(DEFAULT_SERIAL_BAUD), rtscts })
}

fn parse_hci_socket(rest: Option<&str>) -> Result<TransportSpec, TransportError> {
    let Some(rest) = rest else {
        return Ok(TransportSpec::HciSocket { index: 0 });
    };
    let digits = rest.strip_prefix("hci").unwrap_or(rest);
    match digits.parse::<u16>() {
        Ok(index) if !digits.starts_with('+') => Ok(TransportSpec::HciSocket { index }),
        _ => Err(spec_error(format_args!(
            "hci-socket: bad adapter index {rest:?} (expected a number such as 0 for hci0)"
        ))),
    }
}

impl fmt::Display for TransportSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportSpec::TcpClient { host, port } if host.contains(':') => {
                write!(f, "tcp-client:[{host}]:{port}")
            }
            TransportSpec::TcpClient { host, port } => write!(f, "tcp-client:{host}:{port}"),
            TransportSpec::Serial { device, baud, rtscts } => {
                write!(f, "serial:{device},{baud}")?;
                if *rtscts {
                    f.write_str(",rtscts")?;
                }
                Ok(())
            }
            TransportSpec::HciSocket { index } => write!(f, "hci-socket:{index}"),
            TransportSpec::Virtual { name, acl } => {
                write!(f, "virtual")?;
                if !name.is_empty() {
                    write!(f, ":{name}")?;
                }
                let d = gattling_controller::ControllerConfig::default();
                if *acl != (d.acl_len, d.acl_num) {
                    write!(f, ",acl={}x{}", acl.0, acl.1)?;
                }
                Ok(())
            }
        }
    }
}

/// An open byte pipe to a controller.
pub struct Transport {
    /// Bytes from the controller (H4 framed; packet transports return whole packets per read).
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
    /// Bytes to the controller: write each complete H4 packet with one `write_all`, then `flush`.
    pub writer: Box<dyn AsyncWrite + Send + Unpin>,
    /// Human-readable description for logs (the spec plus details such as addresses).
    pub description: String,
    /// Packet-oriented: every write must carry exactly one whole H4 packet (the Linux HCI
    /// socket). Byte streams (TCP, UART) take packets back to back in one write.
    pub packets: bool,
}

impl Transport {
    /// Builds a transport from an already split reader and writer.
    pub fn new(
        reader: impl AsyncRead + Send + Unpin + 'static,
        writer: impl AsyncWrite + Send + Unpin + 'static,
        description: impl Into<String>,
    ) -> Self {
        Transport {
            reader: Box::new(reader),
            writer: Box::new(writer),
            description: description.into(),
            packets: false,
        }
    }

    /// Marks the transport packet-oriented: the host writes one whole H4 packet per write.
    pub fn packet_oriented(mut self) -> Self {
        self.packets = true;
        self
    }

    /// Builds a transport from one bidirectional stream (e.g. one end of `tokio::io::duplex`).
    pub fn from_stream(stream: impl AsyncRead + AsyncWrite + Send + 'static, description: impl Into<String>) -> Self {
        let (reader, writer) = tokio::io::split(stream);
        Transport::new(reader, writer, description)
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport").field("description", &self.description).finish_non_exhaustive()
    }
}

/// Opens the transport described by `spec` (must be called inside a tokio runtime).
pub async fn open(spec: &TransportSpec) -> Result<Transport, TransportError> {
    let transport = match spec {
        TransportSpec::Virtual { name, acl } => {
            let config = gattling_controller::ControllerConfig { acl_len: acl.0, acl_num: acl.1, public_address: None };
            let ctrl = crate::controller::VirtualRadio::named(name).attach(config);
            ctrl.into_transport(spec.to_string())
        }
        TransportSpec::TcpClient { host, port } => tcp::open(spec, host, *port).await?,
        TransportSpec::Serial { device, baud, rtscts } => serial::open(spec, device, *baud, *rtscts).await?,
        #[cfg(target_os = "linux")]
        TransportSpec::HciSocket { index } => hci_socket::open(*index)?,
        #[cfg(not(target_os = "linux"))]
        TransportSpec::HciSocket { .. } => {
            return Err(TransportError::Unsupported(format!(
                "{spec}: the HCI user channel exists only on Linux; use serial: or tcp-client: here"
            )))
        }
    };
    tracing::debug!(transport = %transport.description, "transport open");
    Ok(transport)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> TransportSpec {
        match s.parse::<TransportSpec>() {
            Ok(spec) => spec,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn parse_err(s: &str) -> String {
        match s.parse::<TransportSpec>() {
            Ok(spec) => panic!("{s:?} should not parse, got {spec:?}"),
            Err(TransportError::Spec(msg)) => msg,
            Err(e) => panic!("{s:?}: expected a Spec error, got {e:?}"),
        }
    }

    #[test]
    fn parses_tcp_client() {
        assert_eq!(
            parse("tcp-client:127.0.0.1:6402"),
            TransportSpec::TcpClient { host: "127.0.0.1".into(), port: 6402 }
        );
        assert_eq!(parse("tcp-client:localhost:1"), TransportSpec::TcpClient { host: "localhost".into(), port: 1 });
        assert_eq!(parse("tcp-client:[::1]:6402"), TransportSpec::TcpClient { host: "::1".into(), port: 6402 });
        assert_eq!(
            parse("  tcp-client:[fe80::1%eth0]:65535 "),
            TransportSpec::TcpClient { host: "fe80::1%eth0".into(), port: 65535 }
        );
    }

    #[test]
    fn parses_serial() {
        assert_eq!(
            parse("serial:/dev/ttyACM0"),
            TransportSpec::Serial { device: "/dev/ttyACM0".into(), baud: DEFAULT_SERIAL_BAUD, rtscts: false }
        );
        assert_eq!(
            parse("serial:/dev/ttyUSB1,115200"),
            TransportSpec::Serial { device: "/dev/ttyUSB1".into(), baud: 115_200, rtscts: false }
        );
        assert_eq!(
            parse("serial:/dev/ttyUSB1,115200,rtscts"),
            TransportSpec::Serial { device: "/dev/ttyUSB1".into(), baud: 115_200, rtscts: true }
        );
        assert_eq!(
            parse("serial:COM3,rtscts"),
            TransportSpec::Serial { device: "COM3".into(), baud: DEFAULT_SERIAL_BAUD, rtscts: true }
        );
    }

    #[test]
    fn parses_hci_socket() {
        assert_eq!(parse("hci-socket"), TransportSpec::HciSocket { index: 0 });
        assert_eq!(parse("hci-socket:0"), TransportSpec::HciSocket { index: 0 });
        assert_eq!(parse("hci-socket:3"), TransportSpec::HciSocket { index: 3 });
        assert_eq!(parse("hci-socket:hci2"), TransportSpec::HciSocket { index: 2 });
    }

    #[test]
    fn errors_name_the_bad_part_and_list_forms() {
        let cases = [
            ("bogus:1", "\"bogus\""),
            ("", "empty"),
            ("tcp-client:127.0.0.1", "HOST:PORT"),
            ("tcp-client:127.0.0.1:http", "\"http\""),
            ("tcp-client:127.0.0.1:0", "\"0\""),
            ("tcp-client:127.0.0.1:70000", "\"70000\""),
            ("tcp-client::6402", "empty host"),
            ("tcp-client:::1:6402", "brackets"),
            ("tcp-client:[::1:6402", "']'"),
            ("tcp-client:[::1]6402", "':PORT'"),
            ("serial:", "missing device"),
            ("serial:/dev/ttyS0,fast", "\"fast\""),
            ("serial:/dev/ttyS0,0", "\"0\""),
            ("serial:/dev/ttyS0,9600,9600", "second baud"),
            ("serial:/dev/ttyS0,rtscts,rtscts", "twice"),
            ("hci-socket:x", "\"x\""),
            ("hci-socket:", "\"\""),
            ("hci-socket:70000", "\"70000\""),
        ];
        for (input, needle) in cases {
            let msg = parse_err(input);
            assert!(msg.contains(needle), "{input:?}: {msg:?} should mention {needle}");
            assert!(msg.contains(ACCEPTED_FORMS), "{input:?}: {msg:?} should list the forms");
        }
        let shown = "bogus:1".parse::<TransportSpec>().err().map(|e| e.to_string());
        assert!(shown.is_some_and(|s| s.starts_with("invalid transport spec: ")));
    }

    #[test]
    fn display_round_trips() {
        let specs = [
            "tcp-client:127.0.0.1:6402",
            "tcp-client:[::1]:6402",
            "tcp-client:example.org:1234",
            "serial:/dev/ttyACM0",
            "serial:/dev/ttyACM0,115200,rtscts",
            "serial:/dev/ttyACM0,rtscts",
            "hci-socket",
            "hci-socket:7",
        ];
        for s in specs {
            let spec = parse(s);
            let shown = spec.to_string();
            assert_eq!(parse(&shown), spec, "{s:?} displayed as {shown:?}");
        }
        assert_eq!(parse("serial:/dev/ttyACM0").to_string(), "serial:/dev/ttyACM0,1000000");
        assert_eq!(parse("tcp-client:[::1]:6402").to_string(), "tcp-client:[::1]:6402");
        assert_eq!(parse("hci-socket").to_string(), "hci-socket:0");
    }

    #[tokio::test]
    async fn from_stream_carries_bytes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (a, mut b) = tokio::io::duplex(64);
        let mut t = Transport::from_stream(a, "duplex");
        assert_eq!(format!("{t:?}"), "Transport { description: \"duplex\", .. }");
        t.writer.write_all(&[1, 3, 0x0c, 0]).await.unwrap();
        t.writer.flush().await.unwrap();
        let mut buf = [0u8; 4];
        b.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, [1, 3, 0x0c, 0]);
        b.write_all(&[4, 0x0e, 1, 1]).await.unwrap();
        let mut buf = [0u8; 4];
        t.reader.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, [4, 0x0e, 1, 1]);
    }
}
