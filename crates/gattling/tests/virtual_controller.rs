//! The built-in virtual controller through the runtime: in-process radios, virtual time, fault
//! hooks and hostile hosts. Interop with foreign hosts over its TCP server is in `interop.rs`.

use gattling::controller::{ControllerConfig, Fault, VirtualRadio};
use gattling::proto::gap::ad::{AdvData, AdvDataBuilder};
use gattling::proto::hci::command::{ConnParams, Opcode};
use gattling::proto::hci::event::Event;
use gattling::proto::hci::{status, H4Framer, PacketType};
use gattling::{AdvertisingOptions, ConnectOptions, Connection, Host, HostOptions, LinkEnd, ScanOptions, Transport};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

/// Passes the controller's bytes through to the host and reports every Command Status event
/// (opcode, status) as the host reads it.
struct CommandStatusTap<R> {
    inner: R,
    framer: H4Framer,
    seen: tokio::sync::mpsc::UnboundedSender<(Opcode, u8)>,
}

impl<R: AsyncRead + Unpin> AsyncRead for CommandStatusTap<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.framer.push(&buf.filled()[before..]);
        while let Some(packet) = this.framer.next_packet() {
            let Ok(packet) = packet else { continue };
            if packet.kind != PacketType::Event {
                continue;
            }
            if let Ok(Event::CommandStatus { status, opcode, .. }) = Event::decode(packet.body) {
                let _ = this.seen.send((opcode, status));
            }
        }
        r
    }
}

async fn advertise(host: &Host, name: &str) {
    let data = AdvDataBuilder::new().flags(6).name(name).build().expect("ad");
    host.advertise(&AdvertisingOptions { data, ..Default::default() }).await.expect("advertise");
}

/// Connects `central` to the advertiser named `name`; returns (central link, peripheral link).
async fn connect(central: &Host, periph: &Host, name: &str, opts: ConnectOptions) -> (Connection, Connection) {
    advertise(periph, name).await;
    let mut scan = central.scan(ScanOptions::default()).await.expect("scan");
    let report = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let r = scan.next().await.expect("report");
            if AdvData::parse_lenient(&r.data).local_name() == Some(name) {
                return r;
            }
        }
    })
    .await
    .expect("found");
    scan.stop().await.expect("stop");
    assert_eq!(report.address, periph.address());
    let c = central.connect(report.address, opts).await.expect("connect");
    let p = periph.accept().await.expect("accept");
    (c, p)
}

#[tokio::test]
async fn two_hosts_meet_on_a_virtual_radio() {
    let a = Host::open("virtual:meet").await.expect("host a");
    let b = Host::open("virtual:meet").await.expect("host b");
    assert_eq!(a.acl_buffers(), (251, 8), "default buffers");
    let (c, p) = connect(&b, &a, "meet-a", ConnectOptions::default()).await;
    c.send_att(&[0x0A, 0x01, 0x00]).expect("send");
    assert_eq!(p.recv_att().await.expect("recv"), [0x0A, 0x01, 0x00]);
    assert_eq!(c.disconnect(0x13).await.expect("disconnect"), 0x16);
    assert_eq!(p.closed().await, LinkEnd::Disconnected(gattling::Reason(0x13)));
}

#[tokio::test]
async fn rootcanal_preset_gives_27_by_20_buffers() {
    let h = Host::open("virtual:preset,rootcanal").await.expect("host");
    assert_eq!(h.acl_buffers(), (27, 20));
    let h = Host::open("virtual:preset,acl=100x3").await.expect("host");
    assert_eq!(h.acl_buffers(), (100, 3));
}

#[tokio::test(start_paused = true)]
async fn supervision_timeout_runs_in_virtual_time() {
    let a = Host::open("virtual:vt").await.expect("host a");
    let b = Host::open("virtual:vt").await.expect("host b");
    let (c, _p) = connect(&b, &a, "vt-a", ConnectOptions::default()).await;
    assert_eq!(c.info().supervision_timeout, 400, "4 s");
    let wall = std::time::Instant::now();
    let t0 = tokio::time::Instant::now();
    drop(_p);
    drop(a); // the peripheral's host vanishes: its transport closes and the controller detaches
    assert_eq!(c.closed().await, LinkEnd::Disconnected(gattling::Reason(status::CONNECTION_TIMEOUT)));
    let virtual_elapsed = t0.elapsed();
    assert!(virtual_elapsed >= Duration::from_secs(4), "not before the 4 s timeout: {virtual_elapsed:?}");
    assert!(virtual_elapsed < Duration::from_secs(6), "{virtual_elapsed:?}");
    assert!(wall.elapsed() < Duration::from_secs(2), "virtual time must not wait in real time");
}

#[tokio::test]
async fn fault_hooks_drop_links_delay_acl_and_remove_controllers() {
    let radio = VirtualRadio::named("faults");
    let a = Host::open("virtual:faults").await.expect("host a");
    let b = Host::open("virtual:faults").await.expect("host b");
    let (c, p) = connect(&b, &a, "faults-a", ConnectOptions::default()).await;

    // Delayed ACL: the PDU still arrives, later.
    radio.set_fault(Fault::DelayAcl(50_000));
    let t0 = tokio::time::Instant::now();
    c.send_att(&[0x0A, 0x02, 0x00]).expect("send");
    assert_eq!(p.recv_att().await.expect("recv"), [0x0A, 0x02, 0x00]);
    assert!(t0.elapsed() >= Duration::from_millis(50), "{:?}", t0.elapsed());
    radio.set_fault(Fault::None);

    // Dropped link: both sides see a connection timeout.
    let id = radio.controller_by_address(b.address().addr).expect("b's controller");
    assert!(radio.drop_link(id, c.handle()));
    assert_eq!(c.closed().await, LinkEnd::Disconnected(gattling::Reason(status::CONNECTION_TIMEOUT)));
    assert_eq!(p.closed().await, LinkEnd::Disconnected(gattling::Reason(status::CONNECTION_TIMEOUT)));

    // A controller that disappears: its host fails promptly with "transport closed".
    radio.vanish(id);
    let e = tokio::time::timeout(Duration::from_secs(2), b.le_rand()).await.expect("prompt").expect_err("gone");
    assert!(matches!(e, gattling::Error::TransportClosed(_)), "{e}");
}

#[tokio::test]
async fn peers_of_a_killed_tcp_client_see_the_disconnect() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let radio = VirtualRadio::new("tcp-kill");
    tokio::spawn(gattling::controller::serve(listener, radio.clone(), ControllerConfig::default()));
    let transport = format!("tcp-client:127.0.0.1:{port}");
    let a = Host::open(&transport).await.expect("a");
    let b = Host::open(&transport).await.expect("b");
    // A short supervision timeout (100 ms) keeps the test quick on the real clock.
    let params = ConnParams { interval_min: 6, interval_max: 6, latency: 0, timeout: 10, ..Default::default() };
    let (c, p) = connect(&b, &a, "kill-a", ConnectOptions { params, ..Default::default() }).await;
    assert_eq!(radio.counts(), (2, 1));
    drop(p);
    drop(a); // closes the TCP connection mid-stream
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(3), c.closed()).await.expect("in time"),
        LinkEnd::Disconnected(gattling::Reason(status::CONNECTION_TIMEOUT))
    );
    // The killed client's controller is freed. No wait is needed: the radio times the link out
    // only because that controller was detached (detaching schedules the supervision timeout),
    // so by the time `c` saw the timeout the controller was gone and the link removed.
    assert_eq!(radio.counts(), (1, 0));
}

#[tokio::test]
async fn a_garbage_host_gets_an_error_event_and_others_are_unaffected() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let radio = VirtualRadio::new("garbage");
    tokio::spawn(gattling::controller::serve(listener, radio, ControllerConfig::default()));
    let transport = format!("tcp-client:127.0.0.1:{port}");
    let a = Host::open(&transport).await.expect("a");
    let b = Host::open(&transport).await.expect("b");
    let (c, p) = connect(&b, &a, "garbage-a", ConnectOptions::default()).await;

    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("raw client");
    // An unknown H4 packet type: Hardware Error event (04 10 01 01).
    raw.write_all(&[0x42, 0x00, 0x01]).await.expect("write");
    let mut ev = [0u8; 4];
    raw.read_exact(&mut ev).await.expect("error event");
    assert_eq!(ev, [0x04, 0x10, 0x01, 0x01]);
    // A truncated command (LE Set Advertising Enable without its parameter): status 0x12.
    raw.write_all(&[0x01, 0x0A, 0x20, 0x00]).await.expect("write");
    let mut ev = [0u8; 7];
    raw.read_exact(&mut ev).await.expect("command complete");
    assert_eq!(ev, [0x04, 0x0E, 0x04, 0x01, 0x0A, 0x20, 0x12]);
    // ACL data for a handle it does not own (the other hosts' handle): dropped.
    raw.write_all(&[0x02, 0x01, 0x00, 0x05, 0x00, 0x01, 0x00, 0x04, 0x00, 0xEE]).await.expect("write");

    // The other hosts' link is untouched.
    c.send_att(&[0x0A, 0x05, 0x00]).expect("send");
    assert_eq!(p.recv_att().await.expect("recv"), [0x0A, 0x05, 0x00]);
    p.send_att(&[0x0B, 0x01]).expect("send");
    assert_eq!(c.recv_att().await.expect("recv"), [0x0B, 0x01]);
}

#[tokio::test]
async fn a_connection_attempt_can_be_cancelled_explicitly() {
    // A host on a tapped virtual controller: the tap reports when the controller has accepted
    // LE Create Connection, so the cancel is sent only once the attempt is really in progress.
    let ctrl = VirtualRadio::new("cancel").attach(ControllerConfig::default());
    let (ctrl_r, ctrl_w) = tokio::io::split(ctrl);
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    let tap = CommandStatusTap { inner: ctrl_r, framer: H4Framer::default(), seen: accepted_tx };
    let host = Host::start(Transport::new(tap, ctrl_w, "tapped virtual"), HostOptions::default()).await.expect("host");
    let ghost = gattling::proto::gap::Address {
        addr: gattling::proto::gap::BdAddr([1, 2, 3, 4, 5, 0xC6]),
        kind: gattling::proto::gap::AddressType::Random,
    };
    let h = host.clone();
    let attempt = tokio::spawn(async move { h.connect(ghost, ConnectOptions::default()).await });
    let status = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            let (opcode, status) = accepted.recv().await.expect("tap open");
            if opcode == Opcode::LE_CREATE_CONNECTION {
                return status;
            }
        }
    })
    .await
    .expect("LE Create Connection reaches the controller");
    assert_eq!(status, 0, "the controller started the attempt");
    host.cancel_connect().await.expect("cancel");
    let r = tokio::time::timeout(Duration::from_secs(2), attempt).await.expect("ends promptly").expect("task");
    assert!(matches!(r, Err(gattling::Error::Cancelled(_))), "{r:?}");
    // Nothing left pending: cancelling again is refused by the controller.
    assert!(host.cancel_connect().await.is_err());
}

/// The radio's timer task ends once the last controller on the radio is gone, even for a named
/// radio that stays registered (the soak run counts tasks alive after shutdown).
#[tokio::test]
async fn the_radio_timer_task_ends_with_the_last_controller() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let radio = VirtualRadio::named("timer-task-ends");
    let ctrl = radio.attach(ControllerConfig::default());
    assert_eq!(metrics.num_alive_tasks(), before + 1, "the timer task runs");
    // Let it park with nothing to time.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    drop(ctrl);
    tokio::time::timeout(Duration::from_secs(5), async {
        while metrics.num_alive_tasks() > before {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} tasks still alive, {before} before", metrics.num_alive_tasks()));
}
