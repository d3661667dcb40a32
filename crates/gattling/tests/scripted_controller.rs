//! Host runtime behaviour that real controllers rarely show on demand (LE buffers shared with
//! BR/EDR, a controller that dies mid-command, garbage on the wire), driven by a scripted
//! controller on an in-memory pipe. Interop with real controllers is in `interop.rs`.

mod chunks;

use chunks::Chunks;
use gattling::proto::hci::command::{Command, Opcode};
use gattling::proto::hci::event::Event;
use gattling::proto::hci::{H4Framer, PacketType};
use gattling::{Error, Host, HostOptions, Transport};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// How the scripted controller answers one command: return parameters (status first), or
/// `None` to stay silent.
type Script = Box<dyn Fn(&Command) -> Option<Vec<u8>> + Send>;

fn standard(cmd: &Command) -> Option<Vec<u8>> {
    Some(match cmd.opcode() {
        Opcode::READ_LOCAL_VERSION => vec![0, 0x0C, 0, 0, 0x0C, 0xFF, 0xFF, 0, 0],
        Opcode::READ_LOCAL_SUPPORTED_COMMANDS => {
            let mut v = vec![0u8; 65];
            v[1 + 41] = 0x20; // LE Read Buffer Size v2 supported
            v
        }
        Opcode::READ_LOCAL_SUPPORTED_FEATURES | Opcode::LE_READ_LOCAL_SUPPORTED_FEATURES => {
            vec![0; 9]
        }
        Opcode::READ_BD_ADDR => vec![0, 1, 2, 3, 4, 5, 6],
        Opcode::LE_READ_BUFFER_SIZE_V2 => vec![0, 251, 0, 8, 0, 0, 0],
        Opcode::LE_READ_BUFFER_SIZE => vec![0, 27, 0, 4],
        Opcode::READ_BUFFER_SIZE => vec![0, 0x00, 0x04, 0x40, 10, 0, 0, 0],
        _ => vec![0],
    })
}

/// Runs a controller on `io` that answers with `script`, recording every command it receives.
fn controller(mut io: DuplexStream, script: Script) -> Arc<Mutex<Vec<Command>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut framer = H4Framer::default();
        let mut buf = [0u8; 512];
        loop {
            let n = match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            framer.push(&buf[..n]);
            let mut replies = Vec::new();
            while let Some(Ok(p)) = framer.next_packet() {
                if p.kind != PacketType::Command {
                    continue;
                }
                let cmd = Command::decode(p.body).expect("host sent a well-formed command");
                if let Some(ret) = script(&cmd) {
                    Event::CommandComplete { num_packets: 1, opcode: cmd.opcode(), return_params: &ret }
                        .encode_h4(&mut replies);
                }
                log.lock().unwrap().push(cmd);
            }
            if io.write_all(&replies).await.is_err() {
                return;
            }
        }
    });
    seen
}

async fn host_with(script: Script) -> (Result<Host, Error>, Arc<Mutex<Vec<Command>>>) {
    let (host_io, ctrl_io) = tokio::io::duplex(4096);
    let seen = controller(ctrl_io, script);
    let host = Host::start(Transport::from_stream(host_io, "scripted"), HostOptions::default()).await;
    (host, seen)
}

#[tokio::test]
async fn le_read_buffer_size_v2_is_used_when_supported() {
    let (host, seen) = host_with(Box::new(standard)).await;
    let host = host.expect("init");
    assert_eq!(host.acl_buffers(), (251, 8));
    let seen = seen.lock().unwrap();
    assert!(seen.contains(&Command::LeReadBufferSizeV2));
    assert!(!seen.contains(&Command::LeReadBufferSize));
    assert_eq!(seen.first(), Some(&Command::Reset), "initialisation starts with Reset");
    assert_eq!(host.address().addr.to_string(), "06:05:04:03:02:01");
}

#[tokio::test]
async fn br_edr_buffer_size_is_read_when_le_reports_zero() {
    let (host, seen) = host_with(Box::new(|cmd| match cmd.opcode() {
        Opcode::READ_LOCAL_SUPPORTED_COMMANDS => Some(vec![0u8; 65]),
        Opcode::LE_READ_BUFFER_SIZE => Some(vec![0, 0, 0, 0]),
        _ => standard(cmd),
    }))
    .await;
    let host = host.expect("init");
    assert_eq!(host.acl_buffers(), (1024, 10), "Read Buffer Size: 1024-byte ACL x 10");
    let seen = seen.lock().unwrap();
    assert!(seen.contains(&Command::LeReadBufferSize), "v1 without the v2 bit");
    assert!(seen.contains(&Command::ReadBufferSize));
}

#[tokio::test]
async fn advertising_parameters_carry_the_interval_range_channels_and_filter_policy() {
    let (host, seen) = host_with(Box::new(standard)).await;
    let host = host.expect("init");
    let opts = gattling::AdvertisingOptions {
        interval: 0x30,
        interval_max: 0x40,
        channel_map: 0x05,
        filter_policy: 2,
        ..Default::default()
    };
    host.advertise(&opts).await.expect("advertise");
    host.advertise(&gattling::AdvertisingOptions::default()).await.expect("advertise with defaults");
    let params: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|c| match c {
            Command::LeSetAdvertisingParameters(p) => Some(*p),
            _ => None,
        })
        .collect();
    assert_eq!(params.len(), 2);
    assert_eq!((params[0].interval_min, params[0].interval_max), (0x30, 0x40));
    assert_eq!((params[0].channel_map, params[0].filter_policy), (0x05, 2));
    // Defaults: 100 ms, one interval, every channel, no filter.
    assert_eq!((params[1].interval_min, params[1].interval_max), (0xA0, 0xA0));
    assert_eq!((params[1].channel_map, params[1].filter_policy), (0x07, 0));
}

#[tokio::test]
async fn a_failed_command_names_the_command_and_status() {
    let (host, _) = host_with(Box::new(|cmd| match cmd {
        Command::LeSetAdvertisingEnable(true) => Some(vec![0x12]),
        _ => standard(cmd),
    }))
    .await;
    let host = host.expect("init");
    let e = host.advertise(&Default::default()).await.expect_err("must fail");
    let text = e.to_string();
    assert!(text.contains("LE Set Advertising Enable"), "{text}");
    assert!(text.contains("Invalid HCI Command Parameters"), "{text}");
}

#[tokio::test]
async fn a_controller_that_vanishes_mid_command_fails_it_promptly() {
    let (host_io, mut ctrl_io) = tokio::io::duplex(4096);
    let init = tokio::spawn(Host::start(Transport::from_stream(host_io, "scripted"), HostOptions::default()));
    // Read the Reset command, then hang up without answering.
    let mut buf = [0u8; 4];
    ctrl_io.read_exact(&mut buf).await.expect("reset");
    assert_eq!(buf, [0x01, 0x03, 0x0c, 0x00]);
    drop(ctrl_io);
    let r = tokio::time::timeout(Duration::from_secs(2), init).await.expect("no hang").expect("task");
    match r {
        Err(Error::TransportClosed(why)) => assert!(why.contains("closed"), "{why}"),
        other => panic!("expected transport closed, got {other:?}"),
    }
}

#[tokio::test]
async fn a_silent_controller_times_out_instead_of_hanging() {
    tokio::time::pause();
    let (host, _) = host_with(Box::new(|cmd| match cmd {
        Command::ReadBdAddr => None,
        _ => standard(cmd),
    }))
    .await;
    match host {
        Err(Error::Timeout(what)) => assert!(what.contains("command"), "{what}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn garbage_from_the_controller_is_survived() {
    let (host_w, mut ctrl_r) = tokio::io::duplex(4096);
    let (ctrl_w, rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let transport = Transport::new(Chunks::new(rx), host_w, "scripted, chunked");
    let init = tokio::spawn(Host::start(transport, HostOptions::default()));
    let mut framer = H4Framer::default();
    let mut buf = [0u8; 512];
    let mut sent_garbage = false;
    loop {
        let n = ctrl_r.read(&mut buf).await.expect("read");
        if n == 0 {
            panic!("the host hung up during initialisation: {:?}", init.await);
        }
        framer.push(&buf[..n]);
        let mut out = Vec::new();
        while let Some(Ok(p)) = framer.next_packet() {
            let cmd = Command::decode(p.body).expect("command");
            if !sent_garbage {
                // An unknown packet type, then a truncated-length event for no command. The host's
                // framer discards what it buffered with the garbage, so the answer goes in a chunk
                // (a read) of its own.
                ctrl_w.send(vec![0x09, 0xFF, 0xFF]).expect("host reading");
                sent_garbage = true;
            }
            let ret = standard(&cmd).unwrap_or_default();
            Event::CommandComplete { num_packets: 1, opcode: cmd.opcode(), return_params: &ret }.encode_h4(&mut out);
            if cmd == Command::LeReadLocalSupportedFeatures {
                ctrl_w.send(out).expect("host reading");
                let host = tokio::time::timeout(Duration::from_secs(2), init).await.expect("init done").expect("task");
                assert!(host.is_ok(), "{host:?}");
                return;
            }
        }
        ctrl_w.send(out).expect("host reading");
    }
}

/// A Connection Complete and the peer's first ATT request in one read: the request is
/// answered (the link must exist before its first PDU is routed).
#[tokio::test]
async fn an_att_request_in_the_same_read_as_its_connection_is_answered() {
    let (host_io, ctrl_io) = tokio::io::duplex(4096);
    let (mut ctrl_rx, mut ctrl_tx) = tokio::io::split(ctrl_io);
    let (connect_tx, mut connect_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (acl_tx, mut acl_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        let mut framer = H4Framer::default();
        let mut buf = [0u8; 512];
        loop {
            let n = tokio::select! {
                r = ctrl_rx.read(&mut buf) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
                Some(()) = connect_rx.recv() => {
                    // LE Connection Complete (peripheral, handle 0x0040) then ACL carrying the
                    // ATT Read Request 0a 03 00, written as one chunk.
                    let mut bytes = vec![0x04, 0x3E, 0x13, 0x01, 0x00, 0x40, 0x00, 0x01, 0x00];
                    bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6, 0x18, 0x00, 0x00, 0x00, 0x48, 0x00, 0x00]);
                    bytes.extend_from_slice(&[0x02, 0x40, 0x20, 0x07, 0x00, 0x03, 0x00, 0x04, 0x00, 0x0A, 0x03, 0x00]);
                    if ctrl_tx.write_all(&bytes).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            framer.push(&buf[..n]);
            let mut replies = Vec::new();
            while let Some(Ok(p)) = framer.next_packet() {
                match p.kind {
                    PacketType::Command => {
                        let cmd = Command::decode(p.body).expect("well-formed command");
                        if let Some(ret) = standard(&cmd) {
                            Event::CommandComplete { num_packets: 1, opcode: cmd.opcode(), return_params: &ret }
                                .encode_h4(&mut replies);
                        }
                    }
                    PacketType::Acl => {
                        let _ = acl_tx.send(p.body.to_vec());
                    }
                    _ => {}
                }
            }
            if ctrl_tx.write_all(&replies).await.is_err() {
                return;
            }
        }
    });
    let host = Host::start(Transport::from_stream(host_io, "scripted"), HostOptions::default()).await.expect("host");
    let _server = host.gatt_server("early", 0);
    connect_tx.send(()).expect("controller alive");
    let acl = tokio::time::timeout(Duration::from_secs(5), acl_rx.recv()).await.expect("answered in time");
    // ACL header (4), L2CAP header (4), then the Read Response with the Device Name.
    assert_eq!(acl.expect("ACL").get(8..), Some(&b"\x0bearly"[..]));
}

/// Records each write a packet-oriented transport receives: (bytes, whole single H4 packet?).
struct PacketCheck<W> {
    inner: W,
    writes: Arc<Mutex<Vec<(usize, bool)>>>,
}

impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for PacketCheck<W> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let whole = gattling::proto::hci::H4Packet::decode(buf).is_ok();
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            this.writes.lock().unwrap().push((n, whole && n == buf.len()));
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn a_packet_transport_gets_one_whole_packet_per_write() {
    let (host_io, ctrl_io) = tokio::io::duplex(4096);
    let seen = controller(ctrl_io, Box::new(standard));
    let (reader, writer) = tokio::io::split(host_io);
    let writes = Arc::new(Mutex::new(Vec::new()));
    let checked = PacketCheck { inner: writer, writes: writes.clone() };
    let t = Transport::new(reader, checked, "packets").packet_oriented();
    let host = Host::start(t, HostOptions::default()).await.expect("host");
    host.command(Command::ReadLocalVersion).await.expect("one more command");
    let writes = writes.lock().unwrap().clone();
    assert_eq!(writes.len(), seen.lock().unwrap().len(), "one write per command: {writes:?}");
    assert!(writes.iter().all(|&(_, whole)| whole), "every write is one whole H4 packet: {writes:?}");
}

/// A host with `security` on a controller that lists the resolving-list commands or not (Read
/// Local Supported Commands octet 34 bits 3-5, octet 35 bit 1, Core Vol 4 Part E §6.27); returns
/// every command the controller got up to a later command the host awaited.
async fn resolving_list_commands(with_list: bool, security: gattling::SecurityOptions) -> (Host, Vec<Command>) {
    let script = move |cmd: &Command| match cmd.opcode() {
        Opcode::READ_LOCAL_SUPPORTED_COMMANDS if with_list => {
            let mut v = vec![0u8; 65];
            v[1 + 34] = 0b0011_1000; // LE Add / Remove Device, LE Clear Resolving List
            v[1 + 35] = 0b0000_0010; // LE Set Address Resolution Enable
            v[1 + 41] = 0x20;
            Some(v)
        }
        _ => standard(cmd),
    };
    let (host_io, ctrl_io) = tokio::io::duplex(4096);
    let seen = controller(ctrl_io, Box::new(script));
    let options = HostOptions { security, ..HostOptions::default() };
    let host = Host::start(Transport::from_stream(host_io, "scripted"), options).await.expect("init");
    // Commands go out one at a time in order: once this one completes, the host's own commands
    // queued at start have reached the controller.
    host.command(Command::ReadLocalVersion).await.expect("a later command");
    let seen = seen.lock().unwrap().clone();
    (host, seen)
}

fn is_resolving_list_command(c: &Command) -> bool {
    matches!(
        c,
        Command::LeClearResolvingList
            | Command::LeAddDeviceToResolvingList { .. }
            | Command::LeRemoveDeviceFromResolvingList { .. }
            | Command::LeSetAddressResolutionEnable(_)
    )
}

/// The bonded peers' IRKs go into the controller's resolving list only when it lists the
/// commands (Core Vol 6 Part B §4.7): clear, one entry per bond with an IRK, then resolution on.
#[tokio::test]
async fn the_resolving_list_is_loaded_only_when_the_controller_supports_it() {
    use gattling::bonds::{Bond, BondStore};
    use gattling::proto::gap::privacy::IdentityAddress;
    use gattling::proto::gap::BdAddr;
    let with_irk = IdentityAddress::public(BdAddr([1, 1, 1, 1, 1, 1]));
    let without_irk = IdentityAddress::public(BdAddr([2, 2, 2, 2, 2, 2]));
    let store = Arc::new(gattling::MemoryBondStore::new(4));
    let mut bond = Bond::new(with_irk);
    bond.peer_irk = Some([0xAB; 16]);
    store.put(bond).unwrap();
    store.put(Bond::new(without_irk)).unwrap();
    let security = gattling::SecurityOptions {
        bonds: store,
        identity_resolving_key: Some([0xCD; 16]),
        ..gattling::SecurityOptions::default()
    };

    let (host, seen) = resolving_list_commands(false, security.clone()).await;
    assert!(!host.has_resolving_list() && !host.controller_resolves());
    assert!(!seen.iter().any(is_resolving_list_command), "nothing sent without support: {seen:?}");

    let (host, seen) = resolving_list_commands(true, security.clone()).await;
    assert!(host.has_resolving_list() && host.controller_resolves());
    let sent: Vec<_> = seen.into_iter().filter(is_resolving_list_command).collect();
    assert_eq!(
        sent,
        [
            Command::LeClearResolvingList,
            Command::LeAddDeviceToResolvingList {
                peer_identity_address_type: 0,
                peer_identity_address: with_irk.to_address().addr,
                peer_irk: [0xAB; 16],
                local_irk: [0xCD; 16],
            },
            Command::LeSetAddressResolutionEnable(true),
        ]
    );

    // Supported but turned off in the options: resolution stays off in the controller.
    let off = gattling::SecurityOptions { controller_resolution: false, ..security };
    let (host, seen) = resolving_list_commands(true, off).await;
    assert!(host.has_resolving_list() && !host.controller_resolves());
    let sent: Vec<_> = seen.into_iter().filter(is_resolving_list_command).collect();
    assert_eq!(sent, [Command::LeSetAddressResolutionEnable(false)]);
}
