//! The fault matrix (issue 14, part 2): every fault ends every pending call within a bounded
//! time with a typed error, leaves no task behind, and other links keep working. The
//! controller is scripted on in-memory pipes and the test plays the peer's ATT; the 5 s, 30 s
//! and 60 s timeouts run on tokio's paused clock. `RELIABILITY.md` lists each fault with the
//! test that covers it.

mod chunks;

use chunks::Chunks;
use gattling::proto::hci::command::{Command, Opcode};
use gattling::proto::hci::event::Event;
use gattling::proto::hci::{H4Framer, PacketType};
use gattling::{ClientOptions, Connection, Error, GattClient, Host, HostOptions, LinkEnd, Transport};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};

/// How long a test waits for something that must happen (on the paused clock this is virtual
/// time: it only passes when nothing else can run).
const DEADLINE: Duration = Duration::from_secs(5);
/// The ATT transaction timeout (Core Vol 3 Part F §3.3.3).
const ATT_TIMEOUT: Duration = Duration::from_secs(30);
const ATT: u16 = 0x0004;

/// What the scripted controller does differently from a well-behaved one.
#[derive(Default)]
struct Behaviour {
    /// Commands (by opcode) that are never answered.
    silent: HashSet<u16>,
    /// Links whose Number Of Completed Packets never comes.
    starved: HashSet<u16>,
    /// Disconnect gets its Command Status but no Disconnection Complete.
    hold_disconnect: bool,
}

/// The scripted controller's handle for the test: inject packets, see the host's L2CAP PDUs
/// and commands, change the behaviour, hang up.
struct Ctrl {
    to_host: ToHost,
    pdus: mpsc::UnboundedReceiver<(u16, u16, Vec<u8>)>,
    /// PDUs already taken from `pdus` for other links, per handle.
    stash: HashMap<u16, VecDeque<(u16, Vec<u8>)>>,
    commands: Arc<Mutex<Vec<Command>>>,
    command_count: watch::Receiver<usize>,
    behaviour: Arc<Mutex<Behaviour>>,
}

fn standard(cmd: &Command) -> Vec<u8> {
    match cmd.opcode() {
        Opcode::READ_LOCAL_VERSION => vec![0, 0x0C, 0, 0, 0x0C, 0xFF, 0xFF, 0, 0],
        Opcode::READ_LOCAL_SUPPORTED_COMMANDS => vec![0u8; 65],
        Opcode::READ_LOCAL_SUPPORTED_FEATURES | Opcode::LE_READ_LOCAL_SUPPORTED_FEATURES => vec![0; 9],
        Opcode::READ_BD_ADDR => vec![0, 1, 2, 3, 4, 5, 6],
        // 251-byte LE ACL buffers, 8 of them.
        Opcode::LE_READ_BUFFER_SIZE => vec![0, 251, 0, 8],
        _ => vec![0],
    }
}

fn command_status(opcode: Opcode) -> Vec<u8> {
    let mut out = Vec::new();
    Event::CommandStatus { status: 0, num_packets: 1, opcode }.encode_h4(&mut out);
    out
}

fn disconnection_complete(handle: u16, reason: u8) -> Vec<u8> {
    let mut out = Vec::new();
    Event::DisconnectionComplete { status: 0, handle, reason }.encode_h4(&mut out);
    out
}

/// ACL packets (H4) carrying one L2CAP PDU, fragmented at 27 bytes as a peer's link layer might.
fn acl_pdu(handle: u16, cid: u16, payload: &[u8]) -> Vec<u8> {
    let mut l2cap = (payload.len() as u16).to_le_bytes().to_vec();
    l2cap.extend_from_slice(&cid.to_le_bytes());
    l2cap.extend_from_slice(payload);
    let mut out = Vec::new();
    for (i, frag) in l2cap.chunks(27).enumerate() {
        let pb: u16 = if i == 0 { 0x2000 } else { 0x1000 };
        out.push(0x02);
        out.extend_from_slice(&(handle | pb).to_le_bytes());
        out.extend_from_slice(&(frag.len() as u16).to_le_bytes());
        out.extend_from_slice(frag);
    }
    out
}

/// The controller's output to the host; `None` once it hung up.
type ToHost = Arc<Mutex<Option<mpsc::UnboundedSender<Vec<u8>>>>>;

/// Runs the controller side on the host's write pipe.
fn spawn_controller(
    mut from_host: tokio::io::DuplexStream,
    to_host: ToHost,
    behaviour: Arc<Mutex<Behaviour>>,
    commands: Arc<Mutex<Vec<Command>>>,
    count: watch::Sender<usize>,
    pdus: mpsc::UnboundedSender<(u16, u16, Vec<u8>)>,
) {
    tokio::spawn(async move {
        let mut framer = H4Framer::default();
        let mut buf = [0u8; 1024];
        // Reassembly of the host's L2CAP PDUs, per handle.
        let mut partial: HashMap<u16, Vec<u8>> = HashMap::new();
        loop {
            let n = match from_host.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            framer.push(&buf[..n]);
            while let Some(Ok(p)) = framer.next_packet() {
                let mut out = Vec::new();
                match p.kind {
                    PacketType::Command => {
                        let cmd = Command::decode(p.body).expect("host sent a well-formed command");
                        let b = behaviour.lock().unwrap();
                        if b.silent.contains(&cmd.opcode().0) {
                        } else if let Command::Disconnect { handle, .. } = cmd {
                            out.extend(command_status(cmd.opcode()));
                            if !b.hold_disconnect {
                                out.extend(disconnection_complete(handle, 0x16));
                            }
                        } else if cmd.opcode() == Opcode::LE_CREATE_CONNECTION {
                            out.extend(command_status(cmd.opcode()));
                        } else {
                            let ret = standard(&cmd);
                            Event::CommandComplete { num_packets: 1, opcode: cmd.opcode(), return_params: &ret }
                                .encode_h4(&mut out);
                        }
                        drop(b);
                        commands.lock().unwrap().push(cmd);
                        count.send_modify(|c| *c += 1);
                    }
                    PacketType::Acl => {
                        let raw = u16::from_le_bytes([p.body[0], p.body[1]]);
                        let (handle, start) = (raw & 0x0FFF, raw & 0x3000 != 0x1000);
                        let data = &p.body[4..];
                        let acc = partial.entry(handle).or_default();
                        if start {
                            acc.clear();
                        }
                        acc.extend_from_slice(data);
                        if acc.len() >= 4 {
                            let len = usize::from(u16::from_le_bytes([acc[0], acc[1]]));
                            if acc.len() >= 4 + len {
                                let cid = u16::from_le_bytes([acc[2], acc[3]]);
                                let _ = pdus.send((handle, cid, acc[4..4 + len].to_vec()));
                                acc.clear();
                            }
                        }
                        if !behaviour.lock().unwrap().starved.contains(&handle) {
                            // Number Of Completed Packets: this one packet.
                            out.extend([0x04, 0x13, 5, 1]);
                            out.extend(handle.to_le_bytes());
                            out.extend(1u16.to_le_bytes());
                        }
                    }
                    _ => {}
                }
                if !out.is_empty() {
                    match to_host.lock().unwrap().as_ref() {
                        Some(tx) if tx.send(out).is_ok() => {}
                        _ => return,
                    }
                }
            }
        }
    });
}

/// A host on a scripted controller.
async fn start() -> (Host, Ctrl) {
    let (host_w, ctrl_r) = tokio::io::duplex(64 * 1024);
    let (tx, rx) = mpsc::unbounded_channel();
    let to_host: ToHost = Arc::new(Mutex::new(Some(tx)));
    let (pdus_tx, pdus) = mpsc::unbounded_channel();
    let behaviour = Arc::new(Mutex::new(Behaviour::default()));
    let commands = Arc::new(Mutex::new(Vec::new()));
    let (count_tx, command_count) = watch::channel(0);
    spawn_controller(ctrl_r, to_host.clone(), behaviour.clone(), commands.clone(), count_tx, pdus_tx);
    let transport = Transport::new(Chunks::new(rx), host_w, "scripted faults");
    let host = Host::start(transport, HostOptions::default()).await.expect("host initialised");
    let ctrl = Ctrl { to_host, pdus, stash: HashMap::new(), commands, command_count, behaviour };
    (host, ctrl)
}

impl Ctrl {
    fn inject(&self, bytes: Vec<u8>) {
        self.to_host.lock().unwrap().as_ref().expect("controller still up").send(bytes).expect("host reading");
    }

    /// The controller hangs up: the host's next read sees the end of the stream.
    fn close(&mut self) {
        self.to_host.lock().unwrap().take();
    }

    fn behave(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.behaviour.lock().unwrap());
    }

    /// LE Connection Complete for `handle` with us as peripheral; returns the accepted link.
    async fn connect(&self, host: &Host, handle: u16) -> Connection {
        let h = handle.to_le_bytes();
        let mut ev = vec![0x04, 0x3E, 0x13, 0x01, 0x00, h[0], h[1], 0x01, 0x00];
        ev.extend_from_slice(&[handle as u8, 2, 3, 4, 5, 6, 0x18, 0x00, 0x00, 0x00, 0x48, 0x00, 0x00]);
        self.inject(ev);
        let conn = tokio::time::timeout(DEADLINE, host.accept()).await.expect("accepted in time").expect("link");
        assert_eq!(conn.handle(), handle);
        conn
    }

    /// The peer sends one ATT PDU on `handle`.
    fn att(&self, handle: u16, pdu: &[u8]) {
        self.inject(acl_pdu(handle, ATT, pdu));
    }

    /// The next L2CAP PDU the host sent on `handle` (channel, payload), waiting up to the deadline.
    async fn next_pdu(&mut self, handle: u16) -> (u16, Vec<u8>) {
        if let Some(p) = self.stash.get_mut(&handle).and_then(VecDeque::pop_front) {
            return p;
        }
        let wait = async {
            loop {
                let (h, cid, pdu) = self.pdus.recv().await.expect("controller running");
                if h == handle {
                    return (cid, pdu);
                }
                self.stash.entry(h).or_default().push_back((cid, pdu));
            }
        };
        tokio::time::timeout(DEADLINE, wait).await.expect("the host sent a PDU in time")
    }

    /// The next ATT PDU the host sent on `handle`.
    async fn next_att(&mut self, handle: u16) -> Vec<u8> {
        let (cid, pdu) = self.next_pdu(handle).await;
        assert_eq!(cid, ATT, "expected ATT, got channel {cid:#06x}: {pdu:02x?}");
        pdu
    }

    /// True when the host has not sent anything more on `handle` (nothing in flight to us).
    fn nothing_sent(&mut self, handle: u16) -> bool {
        while let Ok((h, cid, pdu)) = self.pdus.try_recv() {
            self.stash.entry(h).or_default().push_back((cid, pdu));
        }
        self.stash.get(&handle).is_none_or(VecDeque::is_empty)
    }

    /// Waits until the host has sent a command matching `pred`.
    async fn wait_command(&mut self, pred: impl Fn(&Command) -> bool) -> Command {
        let commands = self.commands.clone();
        let wait = async {
            loop {
                if let Some(c) = commands.lock().unwrap().iter().find(|c| pred(c)) {
                    return c.clone();
                }
                self.command_count.changed().await.expect("controller running");
            }
        };
        tokio::time::timeout(DEADLINE, wait).await.expect("the host sent the command in time")
    }

    fn sent_command(&self, pred: impl Fn(&Command) -> bool) -> bool {
        self.commands.lock().unwrap().iter().any(pred)
    }
}

/// A GATT client on `conn` that keeps the default ATT_MTU of 23.
async fn client(conn: &Connection) -> GattClient {
    GattClient::new(conn.clone(), ClientOptions { mtu: None }).await.expect("client")
}

/// The peer answers one Read Request on `handle` with `value` and checks it asked for `attr`.
async fn serve_read(ctrl: &mut Ctrl, handle: u16, attr: u16, value: &[u8]) {
    let req = ctrl.next_att(handle).await;
    assert_eq!(req, [&[0x0A][..], &attr.to_le_bytes()].concat(), "a Read Request");
    ctrl.att(handle, &[&[0x0B][..], value].concat());
}

/// A read on another link still works: the fault stayed on its own link.
async fn other_link_works(ctrl: &mut Ctrl, other: &GattClient, value: &[u8]) {
    let handle = other.connection().handle();
    let read = other.read(0x0003);
    let serve = serve_read(ctrl, handle, 0x0003, value);
    let (got, ()) = tokio::join!(async { tokio::time::timeout(DEADLINE, read).await }, serve);
    assert_eq!(got.expect("in time").expect("read on the other link"), value);
}

/// Tasks alive in this runtime now.
fn alive() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

/// Lets aborted and finished tasks be reaped, then checks no task outlived the host.
async fn assert_no_tasks_left(baseline: usize) {
    for _ in 0..1000 {
        if alive() <= baseline {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("{} tasks alive, {baseline} before the host started", alive());
}

fn assert_transport_closed<T: std::fmt::Debug>(r: Result<T, Error>) {
    match r {
        Err(Error::TransportClosed(_)) => {}
        other => panic!("expected TransportClosed, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Controller transport closed mid-procedure.

#[tokio::test(start_paused = true)]
async fn transport_closed_mid_read_fails_the_read_and_frees_every_task() {
    let baseline = alive();
    let (host, mut ctrl) = start().await;
    let a = ctrl.connect(&host, 0x40).await;
    let b = ctrl.connect(&host, 0x41).await;
    let (ca, cb) = (client(&a).await, client(&b).await);
    let read = tokio::spawn({
        let ca = ca.clone();
        async move { ca.read(0x0003).await }
    });
    assert_eq!(ctrl.next_att(0x40).await, [0x0A, 0x03, 0x00]);
    ctrl.close();
    let r = tokio::time::timeout(DEADLINE, read).await.expect("ended in time").expect("task");
    assert_transport_closed(r);
    // Every link ended, every later call fails at once with the same typed error.
    assert_eq!(a.end(), Some(LinkEnd::TransportClosed));
    assert_eq!(tokio::time::timeout(DEADLINE, b.closed()).await, Ok(LinkEnd::TransportClosed));
    assert_transport_closed(cb.read(0x0003).await);
    assert_transport_closed(host.command(Command::LeRand).await);
    assert_transport_closed(tokio::time::timeout(DEADLINE, host.accept()).await.expect("accept ends"));
    drop((host, a, b, ca, cb));
    assert_no_tasks_left(baseline).await;
}

#[tokio::test(start_paused = true)]
async fn transport_closed_mid_long_write_fails_the_write() {
    let baseline = alive();
    let (host, mut ctrl) = start().await;
    let a = ctrl.connect(&host, 0x40).await;
    let ca = client(&a).await;
    let value: Vec<u8> = (0..100).collect();
    let write = tokio::spawn({
        let ca = ca.clone();
        async move { ca.write_long(0x0005, &value).await }
    });
    // The first Prepare Write Request (18 octets at offset 0), echoed; then the controller dies.
    let req = ctrl.next_att(0x40).await;
    assert_eq!(&req[..5], [0x16, 0x05, 0x00, 0x00, 0x00]);
    ctrl.att(0x40, &[&[0x17][..], &req[1..]].concat());
    assert_eq!(ctrl.next_att(0x40).await[..5], [0x16, 0x05, 0x00, 18, 0x00]);
    ctrl.close();
    let r = tokio::time::timeout(DEADLINE, write).await.expect("ended in time").expect("task");
    assert_transport_closed(r);
    drop((host, a, ca));
    assert_no_tasks_left(baseline).await;
}

#[tokio::test(start_paused = true)]
async fn transport_closed_mid_discovery_fails_the_discovery() {
    let baseline = alive();
    let (host, mut ctrl) = start().await;
    let a = ctrl.connect(&host, 0x40).await;
    let ca = client(&a).await;
    let discovery = tokio::spawn({
        let ca = ca.clone();
        async move { ca.discover_services().await }
    });
    // Read By Group Type Request for primary services; one service answered, then the end.
    assert_eq!(ctrl.next_att(0x40).await, [0x10, 0x01, 0x00, 0xFF, 0xFF, 0x00, 0x28]);
    ctrl.att(0x40, &[0x11, 6, 0x01, 0x00, 0x05, 0x00, 0x00, 0x18]);
    assert_eq!(ctrl.next_att(0x40).await, [0x10, 0x06, 0x00, 0xFF, 0xFF, 0x00, 0x28]);
    ctrl.close();
    let r = tokio::time::timeout(DEADLINE, discovery).await.expect("ended in time").expect("task");
    assert_transport_closed(r);
    drop((host, a, ca));
    assert_no_tasks_left(baseline).await;
}

// ---------------------------------------------------------------------------------------------
// Controller faults.

/// Hardware Error (Core Vol 4 Part E §7.7.16): the controller's state is lost, so every pending
/// call ends at once with a typed error naming it, instead of each waiting for its own timeout.
#[tokio::test(start_paused = true)]
async fn hardware_error_ends_every_pending_call() {
    let baseline = alive();
    let (host, mut ctrl) = start().await;
    let mut notes = host.notifications();
    let a = ctrl.connect(&host, 0x40).await;
    let ca = client(&a).await;
    ctrl.behave(|b| {
        b.silent.insert(Opcode::LE_RAND.0);
    });
    let started = tokio::time::Instant::now();
    let read = tokio::spawn({
        let ca = ca.clone();
        async move { ca.read(0x0003).await }
    });
    let rand = tokio::spawn({
        let host = host.clone();
        async move { host.command(Command::LeRand).await }
    });
    assert_eq!(ctrl.next_att(0x40).await, [0x0A, 0x03, 0x00]);
    ctrl.wait_command(|c| *c == Command::LeRand).await;
    ctrl.inject(vec![0x04, 0x10, 0x01, 0x2A]);
    let r = tokio::time::timeout(DEADLINE, read).await.expect("read ended in time").expect("task");
    let c = tokio::time::timeout(DEADLINE, rand).await.expect("command ended in time").expect("task");
    assert!(started.elapsed() < Duration::from_secs(1), "ended by the event, not a timeout");
    for r in [r.map(drop), c.map(drop)] {
        match r {
            Err(Error::TransportClosed(why)) => assert!(why.contains("hardware error 0x2a"), "{why}"),
            other => panic!("expected the hardware error, got {other:?}"),
        }
    }
    assert_eq!(a.end(), Some(LinkEnd::TransportClosed));
    // The notification still tells front-ends what happened.
    loop {
        match notes.recv().await.expect("notification") {
            gattling::Notification::HardwareError(0x2A) => break,
            _ => continue,
        }
    }
    drop((host, a, ca));
    assert_no_tasks_left(baseline).await;
}

/// A command the controller never completes fails with a timeout after 5 s; the links keep
/// working, and so do later commands once the controller answers again.
#[tokio::test(start_paused = true)]
async fn a_command_that_never_completes_times_out_and_the_links_keep_working() {
    let (host, mut ctrl) = start().await;
    let a = ctrl.connect(&host, 0x40).await;
    let ca = client(&a).await;
    ctrl.behave(|b| {
        b.silent.insert(Opcode::LE_RAND.0);
    });
    let started = tokio::time::Instant::now();
    match host.command(Command::LeRand).await {
        Err(Error::Timeout(what)) => assert!(what.contains("command"), "{what}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    other_link_works(&mut ctrl, &ca, b"still here").await;
    // The controller recovers: the next command goes out and completes.
    ctrl.behave(|b| b.silent.clear());
    let r = tokio::time::timeout(DEADLINE * 2, host.command(Command::ReadBdAddr)).await.expect("no hang");
    assert!(r.is_ok(), "a later command completes: {r:?}");
}

/// ACL credit starvation (Core Vol 4 Part E §4.1.1): one link's Number Of Completed Packets
/// never comes. Its request never reaches the peer and fails with the ATT timeout (the link is
/// disconnected and its buffers come back); the other link keeps its share and keeps working.
#[tokio::test(start_paused = true)]
async fn acl_credit_starvation_on_one_link_leaves_the_others_working() {
    let (host, mut ctrl) = start().await;
    let a = ctrl.connect(&host, 0x40).await;
    let b = ctrl.connect(&host, 0x41).await;
    let (ca, cb) = (client(&a).await, client(&b).await);
    ctrl.behave(|b| {
        b.starved.insert(0x40);
    });
    // Link A fills every buffer it may take (the controller has 8).
    for i in 0..20u8 {
        ca.write_without_response(0x0005, &[i]).await.expect("queued");
    }
    let started = tokio::time::Instant::now();
    let read = tokio::spawn({
        let ca = ca.clone();
        async move { ca.read(0x0003).await }
    });
    // B goes on, many times over A's stuck buffers.
    for i in 0..12u8 {
        other_link_works(&mut ctrl, &cb, &[i; 3]).await;
    }
    let r = tokio::time::timeout(ATT_TIMEOUT + DEADLINE, read).await.expect("ended in time").expect("task");
    assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
    assert_eq!(started.elapsed(), ATT_TIMEOUT);
    // The bearer closed and the link was disconnected (Core Vol 3 Part F §3.3.3).
    ctrl.wait_command(|c| matches!(c, Command::Disconnect { handle: 0x40, .. })).await;
    assert!(matches!(tokio::time::timeout(DEADLINE, a.closed()).await, Ok(LinkEnd::Disconnected(_))));
    // A saw at most 7 of the 8 buffers: one stayed for B.
    let mut sent_on_a = 0;
    while !ctrl.nothing_sent(0x40) {
        ctrl.next_pdu(0x40).await;
        sent_on_a += 1;
    }
    assert_eq!(sent_on_a, 7, "A took all but B's reserved buffer");
    other_link_works(&mut ctrl, &cb, b"after").await;
}

/// Supervision timeout (Disconnection Complete, reason 0x08) during a reliable write: the
/// write fails with the reason; the other link is untouched.
#[tokio::test(start_paused = true)]
async fn supervision_timeout_during_a_reliable_write_fails_it_with_the_reason() {
    let baseline = alive();
    let (host, mut ctrl) = start().await;
    let a = ctrl.connect(&host, 0x40).await;
    let b = ctrl.connect(&host, 0x41).await;
    let (ca, cb) = (client(&a).await, client(&b).await);
    let write = tokio::spawn({
        let ca = ca.clone();
        async move { ca.reliable_write(&[(0x0005, &[1u8; 30][..]), (0x0007, &[2u8; 4][..])]).await }
    });
    let req = ctrl.next_att(0x40).await;
    assert_eq!(req[0], 0x16, "Prepare Write Request");
    ctrl.att(0x40, &[&[0x17][..], &req[1..]].concat());
    assert_eq!(ctrl.next_att(0x40).await[0], 0x16, "the second Prepare Write Request");
    ctrl.inject(disconnection_complete(0x40, 0x08));
    let r = tokio::time::timeout(DEADLINE, write).await.expect("ended in time").expect("task");
    match r {
        Err(Error::Disconnected { reason }) => assert_eq!(reason.0, 0x08),
        other => panic!("expected Disconnected(0x08), got {other:?}"),
    }
    assert!(matches!(ca.read(0x0003).await, Err(Error::Disconnected { .. })), "later calls fail at once");
    other_link_works(&mut ctrl, &cb, b"unaffected").await;
    drop((host, a, b, ca, cb));
    assert_no_tasks_left(baseline).await;
}

/// A GATT server with one readable, writable, indicating characteristic; returns its value
/// handle after each link subscribed to indications.
async fn indicating_server(host: &Host, ctrl: &mut Ctrl, links: &[u16]) -> gattling::gatt::Characteristic {
    use gattling::proto::gatt::{CharacteristicDef, Properties, ServiceDef};
    let server = host.gatt_server("faults", 0);
    let props = Properties::READ | Properties::WRITE | Properties::INDICATE;
    server
        .add_service(ServiceDef::primary(0x180Fu16).characteristic(CharacteristicDef::new(0x2A19u16, props, &[7])))
        .expect("service");
    let ch = server.characteristic(0x2A19u16).expect("characteristic");
    let cccd = (ch.value_handle() + 1).to_le_bytes();
    for &h in links {
        ctrl.att(h, &[0x12, cccd[0], cccd[1], 0x02, 0x00]);
        assert_eq!(ctrl.next_att(h).await, [0x13], "CCCD written");
    }
    ch
}

/// The peer disappears (supervision timeout) with an indication unconfirmed: the link's state
/// goes with it, no 30 s indication timer fires for the dead link, and the other link's
/// indications go on.
#[tokio::test(start_paused = true)]
async fn supervision_timeout_with_an_unconfirmed_indication_leaves_nothing_behind() {
    let (host, mut ctrl) = start().await;
    let a = ctrl.connect(&host, 0x40).await;
    let _b = ctrl.connect(&host, 0x41).await;
    let ch = indicating_server(&host, &mut ctrl, &[0x40, 0x41]).await;
    assert!(ch.indicate(0x40, b"one"));
    assert!(ch.indicate(0x40, b"two"), "queued behind the unconfirmed one");
    let h = ch.value_handle().to_le_bytes();
    assert_eq!(ctrl.next_att(0x40).await, [0x1D, h[0], h[1], b'o', b'n', b'e']);
    ctrl.inject(disconnection_complete(0x40, 0x08));
    match tokio::time::timeout(DEADLINE, a.closed()).await.expect("ended in time") {
        LinkEnd::Disconnected(r) => assert_eq!(r.0, 0x08),
        other => panic!("{other:?}"),
    }
    assert!(!ch.indicate(0x40, b"three"), "no indication on a link that is gone");
    // Past the indication's 30 s: the host does not disconnect a link that no longer exists.
    // (Virtual time; this proves the absence of an event, it does not wait for one.)
    tokio::time::advance(ATT_TIMEOUT + Duration::from_secs(1)).await;
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(!ctrl.sent_command(|c| matches!(c, Command::Disconnect { .. })), "no Disconnect for a dead link");
    assert!(ctrl.nothing_sent(0x40), "the queued indication died with the link");
    // The other link's indications still flow and are confirmed.
    assert!(ch.indicate(0x41, b"b1"));
    assert_eq!(ctrl.next_att(0x41).await, [0x1D, h[0], h[1], b'b', b'1']);
    ctrl.att(0x41, &[0x1E]);
    assert!(ch.indicate(0x41, b"b2"));
    assert_eq!(ctrl.next_att(0x41).await, [0x1D, h[0], h[1], b'b', b'2']);
}

/// ATT timeout (the peer never answers): the call fails after 30 s, the link is disconnected,
/// and until the controller reports the disconnection the bearer is dead (Core Vol 3 Part F
/// §3.3.3): no request, command or response goes out on it.
#[tokio::test(start_paused = true)]
async fn after_an_att_timeout_the_bearer_refuses_further_use() {
    let (host, mut ctrl) = start().await;
    let a = ctrl.connect(&host, 0x40).await;
    let b = ctrl.connect(&host, 0x41).await;
    let (ca, cb) = (client(&a).await, client(&b).await);
    let ch = indicating_server(&host, &mut ctrl, &[0x40]).await;
    ctrl.behave(|b| b.hold_disconnect = true);
    let started = tokio::time::Instant::now();
    let read = tokio::spawn({
        let ca = ca.clone();
        async move { ca.read(0x0003).await }
    });
    assert_eq!(ctrl.next_att(0x40).await, [0x0A, 0x03, 0x00]);
    let r = tokio::time::timeout(ATT_TIMEOUT + DEADLINE, read).await.expect("ended in time").expect("task");
    assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
    assert_eq!(started.elapsed(), ATT_TIMEOUT);
    ctrl.wait_command(|c| matches!(c, Command::Disconnect { handle: 0x40, .. })).await;
    assert_eq!(a.end(), None, "Disconnection Complete is still to come");
    // Every further use of the bearer is refused, and nothing reaches the peer.
    assert!(matches!(ca.read(0x0003).await, Err(Error::Timeout(_))));
    assert!(matches!(ca.write_without_response(0x0005, b"x").await, Err(Error::Timeout(_) | Error::Bearer(_))));
    assert!(matches!(a.send_att(&[0x0A, 0x03, 0x00]), Err(Error::Bearer(_))));
    assert!(!ch.indicate(0x40, b"late"), "no indication on a timed-out bearer");
    // The peer's request is not answered either.
    ctrl.att(0x40, &[0x0A, 0x03, 0x00]);
    other_link_works(&mut ctrl, &cb, b"other").await;
    assert!(ctrl.nothing_sent(0x40), "nothing sent on the dead bearer");
    ctrl.inject(disconnection_complete(0x40, 0x16));
    assert!(matches!(tokio::time::timeout(DEADLINE, a.closed()).await, Ok(LinkEnd::Disconnected(_))));
}

// ---------------------------------------------------------------------------------------------
// The application misbehaves.

/// A GATT call dropped while its request is outstanding (a caller's timeout, an aborted task):
/// the next call on the bearer waits for the stale answer (one request at a time, Core Vol 3
/// Part F §3.3.2) instead of failing, and never takes the stale answer for its own.
#[tokio::test(start_paused = true)]
async fn a_gatt_call_dropped_mid_request_does_not_break_the_next_one() {
    let (host, mut ctrl) = start().await;
    let a = ctrl.connect(&host, 0x40).await;
    let ca = client(&a).await;
    let dropped = tokio::spawn({
        let ca = ca.clone();
        async move { ca.read(0x0003).await }
    });
    assert_eq!(ctrl.next_att(0x40).await, [0x0A, 0x03, 0x00]);
    dropped.abort();
    assert!(dropped.await.expect_err("aborted").is_cancelled());
    let next = tokio::spawn({
        let ca = ca.clone();
        async move { ca.read(0x0005).await }
    });
    tokio::task::yield_now().await;
    assert!(ctrl.nothing_sent(0x40), "no second request while the first is unanswered");
    ctrl.att(0x40, b"\x0bstale");
    serve_read(&mut ctrl, 0x40, 0x0005, b"fresh").await;
    let r = tokio::time::timeout(DEADLINE, next).await.expect("in time").expect("task");
    assert_eq!(r.expect("read"), b"fresh");
}

/// A call dropped and its request never answered: the next call fails with the bearer's
/// timeout 30 s after the first request (not later), and the link is disconnected.
#[tokio::test(start_paused = true)]
async fn a_gatt_call_dropped_and_never_answered_times_the_bearer_out() {
    let (host, mut ctrl) = start().await;
    let a = ctrl.connect(&host, 0x40).await;
    let ca = client(&a).await;
    let started = tokio::time::Instant::now();
    let dropped = tokio::time::timeout(Duration::from_secs(1), ca.read(0x0003)).await;
    assert!(dropped.is_err(), "the caller gave up");
    let r = tokio::time::timeout(ATT_TIMEOUT + DEADLINE, ca.read(0x0005)).await.expect("ended in time");
    assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
    assert_eq!(started.elapsed(), ATT_TIMEOUT);
    ctrl.wait_command(|c| matches!(c, Command::Disconnect { handle: 0x40, .. })).await;
}

/// The application drops its `Host`, `Connection` and `GattClient` in the middle of a
/// procedure: every task ends and the transport is released.
#[tokio::test(start_paused = true)]
async fn dropping_every_handle_mid_procedure_leaves_no_task() {
    let baseline = alive();
    let (host, mut ctrl) = start().await;
    let a = ctrl.connect(&host, 0x40).await;
    let ca = client(&a).await;
    let discovery = tokio::spawn({
        let ca = ca.clone();
        async move { ca.discover_services().await }
    });
    assert_eq!(ctrl.next_att(0x40).await[0], 0x10);
    discovery.abort();
    let _ = discovery.await;
    drop((host, a, ca));
    assert_no_tasks_left(baseline).await;
    // The controller saw its pipe close (its task ended with the host's writer).
    assert!(ctrl.pdus.recv().await.is_none());
}

/// A GATT callback that blocks (here until the test releases it, up to 60 s) holds up only
/// its own link: the other link's requests are answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_gatt_callback_leaves_the_other_links_alone() {
    let (host, mut ctrl) = start().await;
    let _a = ctrl.connect(&host, 0x40).await;
    let _b = ctrl.connect(&host, 0x41).await;
    let ch = indicating_server(&host, &mut ctrl, &[]).await;
    let (entered_tx, entered) = std::sync::mpsc::channel::<u16>();
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    ch.on_read(move |conn| {
        if conn == 0x40 {
            let _ = entered_tx.send(conn);
            // Blocks this thread, as a careless handler would.
            let _ = gate.lock().unwrap().recv_timeout(Duration::from_secs(60));
        }
        Some(vec![conn as u8])
    });
    let h = ch.value_handle().to_le_bytes();
    ctrl.att(0x40, &[0x0A, h[0], h[1]]);
    tokio::task::spawn_blocking(move || entered.recv_timeout(Duration::from_secs(5)))
        .await
        .expect("task")
        .expect("the handler runs");
    for _ in 0..20 {
        ctrl.att(0x41, &[0x0A, h[0], h[1]]);
        assert_eq!(ctrl.next_att(0x41).await, [0x0B, 0x41], "link B answered while A's handler blocks");
    }
    assert!(ctrl.nothing_sent(0x40), "A waits for its handler");
    release.send(()).expect("handler waiting");
    assert_eq!(ctrl.next_att(0x40).await, [0x0B, 0x40]);
}

// ---------------------------------------------------------------------------------------------
// Hostile peers and controllers, seen from the runtime (the core's own tests are in
// gattling-proto/tests/hostile.rs).

/// A peer floods Write Commands on a link whose raw ATT queue nobody reads (no GATT server or
/// client on this host): the queue is bounded, the oldest PDUs are kept, and the host stays
/// responsive.
#[tokio::test(start_paused = true)]
async fn an_unread_raw_att_queue_is_bounded() {
    let (host, ctrl) = start().await;
    let a = ctrl.connect(&host, 0x40).await;
    let b = ctrl.connect(&host, 0x41).await;
    for i in 0..5000u16 {
        let v = i.to_le_bytes();
        ctrl.att(0x40, &[0x52, 0x03, 0x00, v[0], v[1]]);
    }
    // The host has read everything once the other link's request (sent last) shows up.
    ctrl.att(0x41, &[0x0A, 0x03, 0x00]);
    let r = tokio::time::timeout(DEADLINE, b.recv_att()).await.expect("in time").expect("pdu");
    assert_eq!(r, [0x0A, 0x03, 0x00]);
    let mut queued = 0u16;
    while let Ok(Ok(pdu)) = tokio::time::timeout(Duration::from_millis(1), a.recv_att()).await {
        assert_eq!(pdu[3..], queued.to_le_bytes(), "kept in order, oldest first");
        queued += 1;
    }
    assert!(queued >= 64, "a burst fits: {queued}");
    assert!(queued <= 1024, "{queued} PDUs queued for a reader that never came");
}

/// Events of the wrong length from the controller in the middle of a session are dropped;
/// the links and pending calls carry on.
#[tokio::test(start_paused = true)]
async fn malformed_controller_events_mid_session_are_survived() {
    let (host, mut ctrl) = start().await;
    let a = ctrl.connect(&host, 0x40).await;
    let ca = client(&a).await;
    for bad in [
        vec![0x04, 0x05, 0x02, 0x00, 0x40],                   // Disconnection Complete, short
        vec![0x04, 0x13, 0x05, 0x03, 0x40, 0x00, 0x01, 0x00], // NOCP claiming 3 handles
        vec![0x04, 0x3E, 0x02, 0x01, 0x00],                   // LE Connection Complete, short
        vec![0x04, 0x0E, 0x01, 0x01],                         // Command Complete without opcode
        vec![0x04, 0x3E, 0x00],                               // LE Meta without subevent
        vec![0x04, 0x10, 0x00],                               // Hardware Error without its code
    ] {
        ctrl.inject(bad);
    }
    other_link_works(&mut ctrl, &ca, b"survived").await;
    assert_eq!(a.end(), None);
    assert!(host.command(Command::LeRand).await.is_ok(), "commands still complete");
}

/// A signaling flood on one link while its ACL buffers are held: the other link keeps working
/// and the flooded link's queue stays bounded (see the core test for the count).
#[tokio::test(start_paused = true)]
async fn a_signaling_flood_on_one_link_leaves_the_others_working() {
    let (host, mut ctrl) = start().await;
    let _a = ctrl.connect(&host, 0x40).await;
    let b = ctrl.connect(&host, 0x41).await;
    let cb = client(&b).await;
    ctrl.behave(|b| {
        b.starved.insert(0x40);
    });
    for i in 0..5000u16 {
        ctrl.inject(acl_pdu(0x40, 0x0005, &[0x08, (i % 255 + 1) as u8, 0x00, 0x00]));
    }
    other_link_works(&mut ctrl, &cb, b"fine").await;
    let mut rejects = 0;
    while !ctrl.nothing_sent(0x40) {
        let (cid, pdu) = ctrl.next_pdu(0x40).await;
        assert_eq!((cid, pdu[0]), (0x0005, 0x01), "Command Reject");
        rejects += 1;
    }
    assert!(rejects <= 16, "{rejects} rejects went out with the buffers held");
}

/// A peer floods notifications to a client whose subscriber reads nothing: the values queued
/// for it are bounded (oldest kept), and the link stays responsive.
#[tokio::test(start_paused = true)]
async fn an_unread_notification_stream_is_bounded() {
    let (host, mut ctrl) = start().await;
    let a = ctrl.connect(&host, 0x40).await;
    let b = ctrl.connect(&host, 0x41).await;
    let ca = client(&a).await;
    let cb = client(&b).await;
    let mut values = ca.notifications();
    for i in 0..5000u16 {
        let v = i.to_le_bytes();
        ctrl.att(0x40, &[0x1B, 0x03, 0x00, v[0], v[1]]);
    }
    // Everything before it has been read once the other link's read is answered.
    other_link_works(&mut ctrl, &cb, b"ok").await;
    let mut queued = 0u16;
    while let Ok(Some(v)) = tokio::time::timeout(Duration::from_millis(1), values.next()).await {
        assert_eq!(v.value, queued.to_le_bytes(), "kept in order, oldest first");
        queued += 1;
    }
    assert!(queued >= 64, "a burst fits: {queued}");
    assert!(queued <= 1024, "{queued} values queued for a reader that never came");
    other_link_works(&mut ctrl, &ca, b"still").await;
}

/// A peer floods Write Commands while the characteristic's callback blocks: the callbacks
/// waiting for the link's application task are bounded (the values are still stored), and the
/// other link is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_flood_behind_a_blocking_callback_is_bounded() {
    use gattling::proto::gatt::{CharacteristicDef, Properties, ServiceDef};
    let (host, mut ctrl) = start().await;
    let _a = ctrl.connect(&host, 0x40).await;
    let _b = ctrl.connect(&host, 0x41).await;
    let server = host.gatt_server("faults", 0);
    let props = Properties::READ | Properties::WRITE_WITHOUT_RESPONSE;
    server
        .add_service(
            ServiceDef::primary(0x180Fu16)
                .characteristic(CharacteristicDef::new(0x2A19u16, props, &[0, 0]))
                .characteristic(CharacteristicDef::new(0x2A1Au16, Properties::READ, &[0])),
        )
        .expect("service");
    let ch = server.characteristic(0x2A19u16).expect("characteristic");
    // A read handler runs on the same task, after every callback queued before it.
    let marker = server.characteristic(0x2A1Au16).expect("characteristic");
    marker.on_read(|_| Some(vec![0x42]));
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    ch.on_written({
        let calls = calls.clone();
        move |_, _| {
            if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                let _ = entered_tx.send(());
                let _ = gate.lock().unwrap().recv_timeout(Duration::from_secs(60));
            }
        }
    });
    let h = ch.value_handle().to_le_bytes();
    ctrl.att(0x40, &[0x52, h[0], h[1], 0xFF, 0xFF]);
    tokio::task::spawn_blocking(move || entered.recv_timeout(Duration::from_secs(5)))
        .await
        .expect("task")
        .expect("the callback runs");
    for i in 0..5000u16 {
        let v = i.to_le_bytes();
        ctrl.att(0x40, &[0x52, h[0], h[1], v[0], v[1]]);
    }
    ctrl.att(0x41, &[0x0A, h[0], h[1]]);
    assert_eq!(ctrl.next_att(0x41).await, [0x0B, 0x87, 0x13], "B served; A's last write stored");
    release.send(()).expect("callback waiting");
    // The marker's read is answered once A's task ran everything queued before it.
    let m = marker.value_handle().to_le_bytes();
    ctrl.att(0x40, &[0x0A, m[0], m[1]]);
    assert_eq!(ctrl.next_att(0x40).await, [0x0B, 0x42]);
    let calls = calls.load(std::sync::atomic::Ordering::SeqCst);
    assert!(calls >= 64, "a burst is delivered: {calls}");
    assert!(calls <= 1100, "{calls} callbacks queued behind a blocked one for 5000 writes");
}

/// Nearby advertisers flood reports while the application does not read its `Scanner`: the
/// reports queued for it are bounded (oldest kept).
#[tokio::test(start_paused = true)]
async fn an_unread_scanner_is_bounded() {
    let (host, ctrl) = start().await;
    let mut scanner = host.scan(gattling::ScanOptions::default()).await.expect("scanning");
    for i in 0..5000u16 {
        let v = i.to_le_bytes();
        // LE Advertising Report: one ADV_IND from a random address, 2 octets of data.
        ctrl.inject(vec![0x04, 0x3E, 14, 0x02, 1, 0, 1, v[0], v[1], 3, 4, 5, 0xC6, 2, v[0], v[1], 0xC4]);
    }
    // The command's completion comes after every report: all are read once it completes.
    host.command(Command::LeRand).await.expect("command");
    let mut queued = 0u16;
    while let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(1), scanner.next()).await {
        assert_eq!(r.data, queued.to_le_bytes(), "kept in order, oldest first");
        queued += 1;
    }
    assert!(queued >= 64, "a burst fits: {queued}");
    assert!(queued <= 1024, "{queued} reports queued for a reader that never came");
}

/// A peer floods Write Commands while the application does not read `GattServer::events`:
/// the events queued for it are bounded (oldest kept).
#[tokio::test(start_paused = true)]
async fn an_unread_server_event_stream_is_bounded() {
    use gattling::proto::gatt::{CharacteristicDef, Properties, ServiceDef};
    let (host, mut ctrl) = start().await;
    let _a = ctrl.connect(&host, 0x40).await;
    let _b = ctrl.connect(&host, 0x41).await;
    let server = host.gatt_server("faults", 0);
    let props = Properties::READ | Properties::WRITE_WITHOUT_RESPONSE;
    server
        .add_service(ServiceDef::primary(0x180Fu16).characteristic(CharacteristicDef::new(0x2A19u16, props, &[0, 0])))
        .expect("service");
    let ch = server.characteristic(0x2A19u16).expect("characteristic");
    let mut events = server.events();
    let h = ch.value_handle().to_le_bytes();
    for i in 0..5000u16 {
        let v = i.to_le_bytes();
        ctrl.att(0x40, &[0x52, h[0], h[1], v[0], v[1]]);
    }
    ctrl.att(0x41, &[0x0A, h[0], h[1]]);
    assert_eq!(ctrl.next_att(0x41).await, [0x0B, 0x87, 0x13], "every write read and stored");
    let mut queued = 0u16;
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(1), events.next()).await {
        match e {
            gattling::ServerEvent::Written { value, .. } => assert_eq!(value, queued.to_le_bytes()),
            other => panic!("{other:?}"),
        }
        queued += 1;
    }
    assert!(queued >= 64, "a burst fits: {queued}");
    assert!(queued <= 1100, "{queued} events queued for a reader that never came");
}
