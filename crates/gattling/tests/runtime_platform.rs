//! The runtime as a platform for front-ends: ATT routed by the link's bearer (unknown opcodes,
//! one ATT_MTU per bearer), GATT callbacks outside the host lock (handlers that call back into
//! gattling, deferred answers, panicking handlers), raw attribute tables, the catch-all
//! notification stream and the registry of links. Raw ATT PDUs on the virtual radio.

use gattling::gatt::{CharacteristicDef, Permissions, Properties, ServerEvent, ServiceDef};
use gattling::gatt_client::{ClientOptions, GattClient, CHAR_NOTIFY_EVENT};
use gattling::proto::gatt::db::AttributeRecord;
use gattling::proto::gatt::Database;
use gattling::proto::Uuid;
use gattling::{AdvertisingOptions, ConnectOptions, Connection, Host, Notification};
use std::time::Duration;

const STEP: Duration = Duration::from_secs(5);

async fn link(radio: &str) -> (Host, Connection, Host, Connection) {
    let server = Host::open(&format!("virtual:{radio}")).await.expect("server");
    let client = Host::open(&format!("virtual:{radio}")).await.expect("client");
    server.advertise(&AdvertisingOptions::default()).await.expect("advertise");
    let c = client.connect(server.address(), ConnectOptions::default()).await.expect("connect");
    let s = server.accept().await.expect("accept");
    (server, s, client, c)
}

async fn request(c: &Connection, pdu: &[u8]) -> Vec<u8> {
    c.send_att(pdu).expect("send");
    tokio::time::timeout(STEP, c.recv_att()).await.expect("answer in time").expect("answer")
}

fn le(h: u16) -> [u8; 2] {
    h.to_le_bytes()
}

const CHAR_A: Uuid = Uuid::from_be_u128(0x6a77_1001_9d1e_4b1c_a0a5_4b5c_5e7a_d0c0);
const CHAR_B: Uuid = Uuid::from_be_u128(0x6a77_1002_9d1e_4b1c_a0a5_4b5c_5e7a_d0c0);

fn two_chars(server: &gattling::gatt::GattServer) -> (gattling::gatt::Characteristic, gattling::gatt::Characteristic) {
    let rw = Properties::READ | Properties::WRITE | Properties::NOTIFY;
    let svc = server
        .add_service(
            ServiceDef::primary(0xFFE0u16)
                .characteristic(CharacteristicDef::new(CHAR_A, rw, b"a"))
                .characteristic(CharacteristicDef::new(CHAR_B, rw, b"b")),
        )
        .expect("service");
    (svc.characteristics[0].clone(), svc.characteristics[1].clone())
}

#[tokio::test]
async fn an_unknown_request_is_answered_request_not_supported_through_the_runtime() {
    let (server_host, _s, _client_host, c) = link("rp-unknown").await;
    let _server = server_host.gatt_server("gattling", 0);
    // Opcode 0x1F has no command flag: a request the server does not know (Core Vol 3 Part F §3.4.1.1).
    assert_eq!(request(&c, &[0x1F, 1, 2]).await, [0x01, 0x1F, 0x00, 0x00, 0x06]);
    // The bearer is free again: the next request is answered normally.
    assert_eq!(request(&c, &[0x02, 0x00, 0x01]).await, [0x03, 0x05, 0x02]);
}

#[tokio::test]
async fn the_att_mtu_is_one_value_per_bearer_whichever_side_exchanged_it() {
    let (server_host, s, client_host, c) = link("rp-mtu").await;
    // The central is the GATT client and exchanges 247; the peripheral's raw side then reads
    // the central's GATT server on the same link, without an exchange of its own.
    let long: Vec<u8> = (0..200u8).collect();
    let central_server = client_host.gatt_server("central", 0);
    let svc = central_server
        .add_service(ServiceDef::primary(0xFFE0u16).characteristic(CharacteristicDef::new(
            CHAR_A,
            Properties::READ,
            &long,
        )))
        .expect("service");
    let _peripheral_server = server_host.gatt_server("peripheral", 0);
    let client = GattClient::new(c, ClientOptions { mtu: Some(247) }).await.expect("client");
    assert_eq!(client.mtu(), 247);
    assert_eq!(s.att_mtu(), 247, "the peripheral's bearer took the MTU from the request it answered");
    let h = le(svc.characteristics[0].value_handle());
    let rsp = request(&s, &[0x0A, h[0], h[1]]).await;
    assert_eq!(rsp.len(), 201, "all 200 bytes in one Read Response");
    assert_eq!(rsp[1..], long[..]);
}

#[tokio::test]
async fn pycom_style_handlers_call_back_into_the_server() {
    let (server_host, _s, _client_host, c) = link("rp-pycom").await;
    let server = server_host.gatt_server("gattling", 0);
    let (a, b) = two_chars(&server);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // A write handler that reads the new value, the event bits, and sets another value, as
    // Pycom's examples do.
    let (a2, b2) = (a.clone(), b.clone());
    a.on_written(move |_, _| {
        let value = a2.value();
        let events = a2.events();
        b2.set_value(&[value.as_slice(), b"!"].concat());
        let _ = tx.send((value, events));
    });
    let (ha, hb) = (le(a.value_handle()), le(b.value_handle()));
    assert_eq!(request(&c, &[0x12, ha[0], ha[1], b'h', b'i']).await, [0x13]);
    let (value, events) = tokio::time::timeout(STEP, rx.recv()).await.expect("handler ran").expect("sent");
    assert_eq!(value, b"hi", "the handler sees the stored value");
    assert_eq!(events, gattling::gatt::events::CHAR_WRITE_EVENT);
    assert_eq!(request(&c, &[0x0A, hb[0], hb[1]]).await, b"\x0bhi!");
    // A read handler that answers with a value computed from the server's own state.
    let a3 = a.clone();
    b.on_read(move |_| Some([b"a=".as_slice(), a3.value().as_slice()].concat()));
    assert_eq!(request(&c, &[0x0A, hb[0], hb[1]]).await, b"\x0ba=hi");
    assert_eq!(b.value(), b"hi!", "the stored value is unchanged by a read handler");
}

#[tokio::test]
async fn a_deferred_read_is_answered_later_while_another_link_is_served() {
    let server_host = Host::open("virtual:rp-defer").await.expect("server");
    let server = server_host.gatt_server("gattling", 0);
    let (a, b) = two_chars(&server);
    let opts = AdvertisingOptions { auto_restart: true, ..AdvertisingOptions::default() };
    server_host.advertise(&opts).await.expect("advertise");
    let slow = Host::open("virtual:rp-defer").await.expect("slow client");
    let fast = Host::open("virtual:rp-defer").await.expect("fast client");
    let c_slow = slow.connect(server_host.address(), ConnectOptions::default()).await.expect("slow connects");
    server_host.accept().await.expect("accept slow");
    // Advertising restarted by itself: a second central connects without another advertise().
    let c_fast = fast.connect(server_host.address(), ConnectOptions::default()).await.expect("fast connects");
    server_host.accept().await.expect("accept fast");
    assert_eq!(server_host.connections().len(), 2);

    // The read handler hands the request to the test, which answers it when it chooses.
    let (reads_tx, mut reads) = tokio::sync::mpsc::unbounded_channel();
    a.on_read_request(move |req| {
        let _ = reads_tx.send(req);
    });
    let (ha, hb) = (le(a.value_handle()), le(b.value_handle()));
    c_slow.send_att(&[0x0A, ha[0], ha[1]]).expect("slow read");
    let parked = tokio::time::timeout(STEP, reads.recv()).await.expect("handler ran").expect("request");
    // While that read is open (its answer is in the test's hand), the other link is served.
    assert_eq!(request(&c_fast, &[0x0A, hb[0], hb[1]]).await, b"\x0bb");
    parked.respond(b"late");
    let slow_rsp = tokio::time::timeout(STEP, c_slow.recv_att()).await.expect("in time").expect("answer");
    assert_eq!(slow_rsp, b"\x0blate");
    // A deferred write: accepted or refused later, stored only when accepted.
    let (writes_tx, mut writes) = tokio::sync::mpsc::unbounded_channel();
    b.on_write_request(move |req| {
        let _ = writes_tx.send(req);
    });
    for (value, accept) in [(&b"no"[..], false), (&b"ok"[..], true)] {
        c_fast.send_att(&[&[0x12, hb[0], hb[1]][..], value].concat()).expect("write");
        let req = tokio::time::timeout(STEP, writes.recv()).await.expect("handler ran").expect("request");
        assert_eq!(req.value(), value);
        assert_eq!(b.value(), b"b", "nothing stored before the answer");
        if accept {
            req.accept();
        } else {
            req.reject(0x80);
        }
        let rsp = tokio::time::timeout(STEP, c_fast.recv_att()).await.expect("in time").expect("answer");
        let want = if accept { vec![0x13] } else { vec![0x01, 0x12, hb[0], hb[1], 0x80] };
        assert_eq!(rsp, want);
    }
    assert_eq!(b.value(), b"ok");
}

#[tokio::test]
async fn a_panicking_handler_answers_unlikely_error_and_the_host_serves_on() {
    let (server_host, _s, _client_host, c) = link("rp-panic").await;
    let server = server_host.gatt_server("gattling", 0);
    let (a, b) = two_chars(&server);
    a.on_read(|_| panic!("handler bug"));
    b.on_write(|_, _| panic!("handler bug"));
    let (ha, hb) = (le(a.value_handle()), le(b.value_handle()));
    assert_eq!(request(&c, &[0x0A, ha[0], ha[1]]).await, [0x01, 0x0A, ha[0], ha[1], 0x0E]);
    assert_eq!(request(&c, &[0x12, hb[0], hb[1], 1]).await, [0x01, 0x12, hb[0], hb[1], 0x0E]);
    // A dropped responder answers too.
    a.on_read_request(drop);
    assert_eq!(request(&c, &[0x0A, ha[0], ha[1]]).await, [0x01, 0x0A, ha[0], ha[1], 0x0E]);
    // The host still serves.
    assert_eq!(request(&c, &[0x0A, 3, 0]).await, b"\x0bgattling");
}

#[tokio::test]
async fn a_handler_may_use_the_gatt_client_on_the_same_link() {
    let (server_host, s, client_host, c) = link("rp-client-in-handler").await;
    let server = server_host.gatt_server("gattling", 0);
    let _peer = client_host.gatt_server("the-peer", 0);
    let (a, _) = two_chars(&server);
    let back = GattClient::new(s, ClientOptions { mtu: None }).await.expect("client back to the peer");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // On a read, ask the peer's GATT server for its name and answer with it.
    a.on_read_request(move |req| {
        let (back, tx) = (back.clone(), tx.clone());
        tokio::spawn(async move {
            let name = back.read(3).await.expect("peer's Device Name");
            req.respond(&name);
            let _ = tx.send(());
        });
    });
    let h = le(a.value_handle());
    assert_eq!(request(&c, &[0x0A, h[0], h[1]]).await, b"\x0bthe-peer");
    tokio::time::timeout(STEP, rx.recv()).await.expect("handler finished");
}

#[tokio::test]
async fn every_notification_reaches_the_catch_all_stream_whatever_enabled_it() {
    let (server_host, _s, _client_host, c) = link("rp-catch-all").await;
    let server = server_host.gatt_server("gattling", 0);
    let (a, _) = two_chars(&server);
    let client = GattClient::new(c, ClientOptions::default()).await.expect("client");
    let mut all = client.notifications();
    let (tx, mut cb) = tokio::sync::mpsc::unbounded_channel();
    client.on_any_notification(move |v| {
        let _ = tx.send(v);
    });
    // The CCCD is written as a plain write, as AT+UBTGCCW does: no subscribe() involved.
    client.write(a.value_handle() + 1, &[1, 0]).await.expect("CCCD write");
    let mut events = server.events();
    a.set_value(b"n1");
    let got = tokio::time::timeout(STEP, all.next()).await.expect("in time").expect("value");
    assert_eq!((got.handle, got.event, got.value.as_slice()), (a.value_handle(), CHAR_NOTIFY_EVENT, &b"n1"[..]));
    let got = tokio::time::timeout(STEP, cb.recv()).await.expect("in time").expect("callback");
    assert_eq!(got.value, b"n1");
    // The server reports writes through its event stream.
    client.write(a.value_handle(), b"w").await.expect("write");
    let ev = tokio::time::timeout(STEP, events.next()).await.expect("in time").expect("event");
    assert!(matches!(ev, ServerEvent::Written { ref value, .. } if value == b"w"), "{ev:?}");
}

#[tokio::test]
async fn the_registry_lists_links_and_hands_out_connections() {
    let (server_host, s, client_host, c) = link("rp-registry").await;
    let mut notes = server_host.notifications();
    let links = server_host.connections();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].handle, s.handle());
    assert_eq!(links[0].peer, client_host.address());
    let again = server_host.connection(s.handle()).expect("by handle");
    assert_eq!(again.peer(), client_host.address());
    assert!(server_host.connection_to(client_host.address()).is_some());
    assert!(server_host.connection(0x0EFF).is_err());
    // The link's state follows the controller's reports: PHY, RSSI.
    let st = client_host.link_state(c.handle()).expect("link state");
    assert_eq!((st.att_mtu, st.data_length, st.phy), (23, (27, 27), (gattling::Phy::Le1M, gattling::Phy::Le1M)));
    let phys = c.set_phy(gattling::PhySet::LE_2M, gattling::PhySet::LE_2M).await.expect("PHY update");
    assert_eq!(phys, (gattling::Phy::Le2M, gattling::Phy::Le2M));
    let st = client_host.link_state(c.handle()).expect("link state");
    assert_eq!(st.phy, (gattling::Phy::Le2M, gattling::Phy::Le2M));
    assert_eq!(c.rssi().await.expect("Read RSSI"), -40);
    c.disconnect(0x13).await.expect("disconnect");
    let ended = tokio::time::timeout(STEP, async {
        loop {
            if let Ok(Notification::Disconnected { handle, .. }) = notes.recv().await {
                break handle;
            }
        }
    })
    .await
    .expect("disconnect notification");
    assert_eq!(ended, s.handle());
    assert!(server_host.connections().is_empty());
}

#[tokio::test]
async fn a_raw_table_is_served_with_its_own_handles() {
    let (server_host, _s, _client_host, c) = link("rp-raw-table").await;
    let rec = |handle, uuid: u16, value: &[u8], permissions| AttributeRecord {
        handle,
        uuid: Uuid::U16(uuid),
        value: value.to_vec(),
        permissions,
        max_len: 10,
    };
    let (r, rw) = (Permissions::READ, Permissions::READ | Permissions::WRITE);
    // A service at 0x0010 whose characteristic has its descriptors out of the usual order.
    let table = [
        rec(0x0010, 0x2800, &[0xE0, 0xFF], r),
        rec(0x0011, 0x2803, &[0x1A, 0x12, 0x00, 0xE1, 0xFF], r),
        rec(0x0012, 0xFFE1, b"raw", rw),
        rec(0x0013, 0x2901, b"desc", r),
        rec(0x0014, 0x2902, &[0, 0], rw),
    ];
    let db = Database::from_records(&table).expect("valid table");
    let server = server_host.gatt_server_with(db);
    assert_eq!(
        request(&c, &[0x04, 0x10, 0x00, 0xFF, 0xFF]).await,
        [
            0x05, 0x01, 0x10, 0x00, 0x00, 0x28, 0x11, 0x00, 0x03, 0x28, 0x12, 0x00, 0xE1, 0xFF, 0x13, 0x00, 0x01, 0x29,
            0x14, 0x00, 0x02, 0x29
        ]
    );
    assert_eq!(request(&c, &[0x0A, 0x12, 0x00]).await, b"\x0braw");
    // Writes up to the value's buffer size are stored; longer ones are refused.
    assert_eq!(request(&c, &[0x12, 0x12, 0x00, b'x', b'y']).await, [0x13]);
    assert_eq!(request(&c, &[&[0x12u8, 0x12, 0x00][..], &[b'z'; 11]].concat()).await, [0x01, 0x12, 0x12, 0x00, 0x0D]);
    assert_eq!(server.characteristic_at(0x12).expect("characteristic").value(), b"xy");
    // The CCCD after the user description still enables notifications.
    assert_eq!(request(&c, &[0x12, 0x14, 0x00, 0x01, 0x00]).await, [0x13]);
    server.characteristic_at(0x12).expect("characteristic").set_value(b"n");
    let ntf = tokio::time::timeout(STEP, c.recv_att()).await.expect("in time").expect("notification");
    assert_eq!(ntf, [0x1B, 0x12, 0x00, b'n']);
    // Read back as records: the table as served.
    let back: Vec<u16> = server.attributes().iter().map(|a| a.handle).collect();
    assert_eq!(back, [0x10, 0x11, 0x12, 0x13, 0x14]);
    // A bad table (a declaration that points elsewhere) is refused with the handle and the
    // reason; the server keeps its database.
    let bad = [
        rec(0x0020, 0x2800, &[0xE2, 0xFF], r),
        rec(0x0021, 0x2803, &[0x02, 0x30, 0x00, 0xE3, 0xFF], r),
        rec(0x0022, 0xFFE3, b"x", r),
    ];
    let err = server.insert_records(&bad).expect_err("declaration points elsewhere");
    assert!(err.to_string().contains("0x0021"), "{err}");
    assert_eq!(server.attributes().len(), 5, "nothing of the bad table was kept");
    assert_eq!(request(&c, &[0x0A, 0x12, 0x00]).await, b"\x0bn", "still served");
    // A good one is added at its own handles and served.
    let good = [
        rec(0x0020, 0x2800, &[0xE2, 0xFF], r),
        rec(0x0021, 0x2803, &[0x02, 0x22, 0x00, 0xE3, 0xFF], r),
        rec(0x0022, 0xFFE3, b"x", r),
    ];
    server.insert_records(&good).expect("valid table");
    assert_eq!(request(&c, &[0x0A, 0x22, 0x00]).await, b"\x0bx");
}

#[tokio::test]
async fn an_att_list_table_is_served_and_a_bad_one_leaves_the_database_unchanged() {
    let (server_host, _s, _client_host, c) = link("rp-att-list").await;
    let server = server_host.gatt_server("attl", 0);
    // The seed's example 1 + example 5 (the indicate channel), as hex text.
    let table = "0c 00 02 00 28 02 e7 fe\n0d 00 02 03 28 01 20\n\
                 0e 00 02 c7 fe 14 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00\n\
                 0f 00 02 02 29 02 00 00\n00 00\n";
    server.load_att_list(table.as_bytes()).expect("valid table");
    let handles: Vec<u16> = server.attributes().iter().map(|a| a.handle).collect();
    assert_eq!(handles, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x0C, 0x0D, 0x0E, 0x0F]);
    assert_eq!(request(&c, &[0x0A, 0x03, 0x00]).await, b"\x0battl", "Device Name kept");
    assert_eq!(request(&c, &[0x0A, 0x0D, 0x00]).await, [0x0B, 0x20, 0x0E, 0x00, 0xC7, 0xFE]);
    let before = server.database().records();
    // Each bad table is refused with offset, handle and reason; nothing is half-applied.
    for (bad, want) in [
        (
            "0c 00 02 00 28 02 e7 fe\n0d 00 02 03 28 01 0c\n00 00",
            "offset 8 (handle 0x000D): characteristic declaration is not followed by its value record",
        ),
        (
            "0c 00 02 00 28 02 e7 fe\n0e 00 02 03 28 01 0c\n00 00",
            "offset 8 (handle 0x000E): handle is not the previous one plus one (expected 0x000D)",
        ),
        ("0c 00 02 00 28 02 e7 fe", "offset 8 (handle 0x000C): missing terminator (00 00) at the end of the table"),
    ] {
        let err = server.load_att_list(bad.as_bytes()).expect_err("bad table");
        assert_eq!(err.to_string(), format!("ATT_LIST table: {want}"));
        assert_eq!(server.database().records(), before, "database unchanged after {bad:?}");
    }
    assert_eq!(request(&c, &[0x0A, 0x0E, 0x00]).await, [&[0x0Bu8][..], &[0; 20]].concat(), "still served");
}

#[tokio::test]
async fn a_dropped_connect_is_cancelled_and_the_next_one_runs() {
    let central = Host::open("virtual:rp-drop-connect").await.expect("central");
    let peripheral = Host::open("virtual:rp-drop-connect").await.expect("peripheral");
    let absent = gattling::proto::gap::Address {
        addr: gattling::proto::gap::BdAddr([1, 2, 3, 4, 5, 6]),
        kind: gattling::proto::gap::AddressType::Public,
    };
    let long = ConnectOptions { timeout: Duration::from_secs(3600), ..ConnectOptions::default() };
    // The caller gives up (its own timeout drops the future) while the controller still tries.
    let gave_up = tokio::time::timeout(Duration::from_millis(50), central.connect(absent, long)).await;
    assert!(gave_up.is_err(), "nothing answers at that address");
    // Not "busy": the next attempt waits for the cancellation, then runs (and times out).
    let short = ConnectOptions { timeout: Duration::from_millis(100), ..ConnectOptions::default() };
    match central.connect(absent, short).await {
        Err(gattling::Error::Timeout(_)) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    // And a real one connects.
    peripheral.advertise(&AdvertisingOptions::default()).await.expect("advertise");
    let c = central.connect(peripheral.address(), ConnectOptions::default()).await.expect("connect");
    peripheral.accept().await.expect("accept");
    assert_eq!(central.connections().len(), 1, "only the wanted link is up: {:?}", central.connections());
    c.disconnect(0x13).await.expect("disconnect");
}

/// A read the application never answers closes the bearer 30 s after the request arrived, not
/// before (Core Vol 3 Part F §3.3.3): the runtime time-stamps only the requests it leaves open.
#[tokio::test(start_paused = true)]
async fn an_unanswered_deferred_read_times_out_thirty_seconds_after_it_arrived() {
    let (server_host, s, client, c) = link("rp-never").await;
    let server = server_host.gatt_server("gattling", 0);
    let (a, _) = two_chars(&server);
    let (reads_tx, mut reads) = tokio::sync::mpsc::unbounded_channel();
    a.on_read_request(move |req| {
        let _ = reads_tx.send(req);
    });
    // Time passes before the request, so a stamp of 0 would expire it early.
    tokio::time::advance(Duration::from_secs(20)).await;
    let ha = le(a.value_handle());
    c.send_att(&[0x0A, ha[0], ha[1]]).expect("read");
    let t0 = tokio::time::Instant::now();
    let _parked = reads.recv().await.expect("the handler got the request");
    let end = s.closed().await;
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_secs(30), "closed after {waited:?}: {end:?}");
    assert!(waited < Duration::from_secs(31), "closed after {waited:?}");
    drop((client, server_host));
}
