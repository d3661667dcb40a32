//! The GATT server on a running host (virtual radio), driven by a raw ATT client: the Pycom
//! characteristic model (value, callbacks, events) and notifications through the runtime.

use gattling::gatt::{demo, events, CharacteristicDef, Properties};
use gattling::proto::gatt::ServiceDef;
use gattling::{AdvertisingOptions, ConnectOptions, Connection, Host};
use std::time::Duration;

async fn pair(radio: &str) -> (Host, Connection, Host, Connection) {
    let server = Host::open(&format!("virtual:{radio}")).await.expect("server");
    let client = Host::open(&format!("virtual:{radio}")).await.expect("client");
    server.advertise(&AdvertisingOptions::default()).await.expect("advertise");
    let c = client.connect(server.address(), ConnectOptions::default()).await.expect("connect");
    let s = server.accept().await.expect("accept");
    (server, s, client, c)
}

async fn request(c: &Connection, pdu: &[u8]) -> Vec<u8> {
    c.send_att(pdu).expect("send");
    tokio::time::timeout(Duration::from_secs(2), c.recv_att()).await.expect("answer in time").expect("answer")
}

#[tokio::test]
async fn pycom_model_values_callbacks_and_events() {
    let (server_host, _s, _client_host, c) = pair("gatt-pycom").await;
    let server = server_host.gatt_server("gattling", 0);
    let mut services = Vec::new();
    for def in gattling::gatt::demo_services() {
        services.push(server.add_service(def).expect("service"));
    }
    let chr1 = server.characteristic(demo::CHAR_1).expect("chr1");
    let h = chr1.value_handle().to_le_bytes();
    assert_eq!(chr1.value(), [5]);
    // A read with no callback answers the stored value.
    assert_eq!(request(&c, &[0x0A, h[0], h[1]]).await, [0x0B, 5]);
    assert_eq!(chr1.events(), events::CHAR_READ_EVENT);
    assert_eq!(chr1.events(), 0, "events() clears the bits");
    // A read callback may supply the value; the stored value stays.
    chr1.on_read(|_| Some(b"ABC DEF".to_vec()));
    assert_eq!(request(&c, &[0x0A, h[0], h[1]]).await, b"\x0bABC DEF");
    assert_eq!(chr1.value(), [5]);
    // A write callback sees the value and may reject it with an application error.
    chr1.on_write(|_, v| if v == b"no" { Err(0x80) } else { Ok(()) });
    assert_eq!(request(&c, &[0x12, h[0], h[1], b'n', b'o']).await, [0x01, 0x12, h[0], h[1], 0x80]);
    assert_eq!(chr1.value(), [5]);
    assert_eq!(request(&c, &[0x12, h[0], h[1], b'o', b'k']).await, [0x13]);
    assert_eq!(chr1.value(), b"ok");
    assert_eq!(chr1.events() & events::CHAR_WRITE_EVENT, events::CHAR_WRITE_EVENT);
    // Subscribing through the CCCD, then set_value notifies.
    let (seen, mut subscribed) = tokio::sync::mpsc::unbounded_channel();
    chr1.on_subscribe(move |_, cccd| {
        let _ = seen.send(cccd);
    });
    let cccd = (chr1.value_handle() + 1).to_le_bytes();
    assert_eq!(request(&c, &[0x12, cccd[0], cccd[1], 1, 0]).await, [0x13]);
    let cccd_value = tokio::time::timeout(Duration::from_secs(2), subscribed.recv()).await.expect("subscribe handler");
    assert_eq!(cccd_value, Some(1));
    assert_eq!(chr1.events(), events::CHAR_SUBSCRIBE_EVENT);
    chr1.set_value(b"pushed");
    let ntf = tokio::time::timeout(Duration::from_secs(2), c.recv_att()).await.expect("in time").expect("ntf");
    assert_eq!(ntf, [&[0x1B, h[0], h[1]][..], b"pushed"].concat());
}

#[tokio::test]
async fn service_added_at_run_time_is_indicated_and_changes_the_hash() {
    let (server_host, _s, _client_host, c) = pair("gatt-sc").await;
    let server = server_host.gatt_server("gattling", 0);
    let hash_before = server.database_hash();
    // Find Service Changed (0x2A05) among the characteristic declarations (Read By Type 0x2803).
    let mut start = 1u16;
    let sc = loop {
        let s = start.to_le_bytes();
        let rsp = request(&c, &[0x08, s[0], s[1], 0xFF, 0xFF, 0x03, 0x28]).await;
        assert_eq!(rsp[0], 0x09, "Service Changed not found: {rsp:02x?}");
        let found = rsp[2..].chunks(rsp[1] as usize).find_map(|r| {
            start = u16::from_le_bytes([r[0], r[1]]) + 1;
            (r[5..] == [0x05, 0x2A]).then(|| u16::from_le_bytes([r[3], r[4]]))
        });
        if let Some(h) = found {
            break h;
        }
    };
    let cccd = (sc + 1).to_le_bytes();
    assert_eq!(request(&c, &[0x12, cccd[0], cccd[1], 2, 0]).await, [0x13]);
    let service = server
        .add_service(ServiceDef::primary(0x180Fu16).characteristic(CharacteristicDef::new(
            0x2A19u16,
            Properties::READ,
            &[99],
        )))
        .expect("add");
    let ind = tokio::time::timeout(Duration::from_secs(2), c.recv_att()).await.expect("in time").expect("ind");
    let s = sc.to_le_bytes();
    let (a, b) = (service.handle.to_le_bytes(), service.end_handle.to_le_bytes());
    assert_eq!(ind, [0x1D, s[0], s[1], a[0], a[1], b[0], b[1]]);
    c.send_att(&[0x1E]).expect("confirm");
    assert_ne!(server.database_hash(), hash_before);
    // The Database Hash characteristic reads the new hash.
    let rsp = request(&c, &[0x08, 0x01, 0x00, 0xFF, 0xFF, 0x2A, 0x2B]).await;
    assert_eq!(&rsp[4..], &server.database_hash()[..]);
}

#[tokio::test]
async fn multiple_handle_value_notification_goes_to_clients_that_declared_support() {
    let (server_host, s, _client_host, c) = pair("gatt-multi").await;
    let server = server_host.gatt_server("gattling", 0);
    for def in gattling::gatt::demo_services() {
        server.add_service(def).expect("service");
    }
    let (c1, c2) = (server.characteristic(demo::CHAR_1).expect("c1"), server.characteristic(demo::CHAR_2).expect("c2"));
    for ch in [&c1, &c2] {
        let cccd = (ch.value_handle() + 1).to_le_bytes();
        assert_eq!(request(&c, &[0x12, cccd[0], cccd[1], 1, 0]).await, [0x13]);
    }
    // Without the feature bit: one notification per characteristic.
    server.notify_multiple(s.handle(), &[(&c1, b"a"), (&c2, b"b")]);
    assert_eq!(c.recv_att().await.expect("ntf")[0], 0x1B);
    assert_eq!(c.recv_att().await.expect("ntf")[0], 0x1B);
    // Client Supported Features bit 2: Multiple Handle Value Notifications.
    let rsp = request(&c, &[0x08, 0x01, 0x00, 0xFF, 0xFF, 0x29, 0x2B]).await;
    let features = u16::from_le_bytes([rsp[2], rsp[3]]).to_le_bytes();
    assert_eq!(request(&c, &[0x12, features[0], features[1], 0x04]).await, [0x13]);
    server.notify_multiple(s.handle(), &[(&c1, b"a"), (&c2, b"b")]);
    let (h1, h2) = (c1.value_handle().to_le_bytes(), c2.value_handle().to_le_bytes());
    assert_eq!(c.recv_att().await.expect("multi"), [0x23, h1[0], h1[1], 1, 0, b'a', h2[0], h2[1], 1, 0, b'b']);
}

#[tokio::test]
async fn a_callback_that_calls_back_into_the_server_works() {
    let (server_host, _s, _client_host, c) = pair("gatt-reentrant").await;
    let server = server_host.gatt_server("gattling", 0);
    for def in gattling::gatt::demo_services() {
        server.add_service(def).expect("service");
    }
    let chr1 = server.characteristic(demo::CHAR_1).expect("chr1");
    let inner = chr1.clone();
    // Pycom handlers call chr.value() / chr.events(); callbacks run outside the host lock.
    chr1.on_read(move |_| {
        let _ = inner.events();
        Some([inner.value().as_slice(), b"+"].concat())
    });
    let h = chr1.value_handle().to_le_bytes();
    assert_eq!(request(&c, &[0x0A, h[0], h[1]]).await, [0x0B, 5, b'+']);
    assert_eq!(chr1.value(), [5], "a read handler's answer leaves the stored value alone");
}
