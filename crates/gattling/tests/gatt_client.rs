//! The GATT client against gattling's own GATT server on the virtual radio (every procedure),
//! and against a scripted server that misbehaves (typed errors, nothing hangs or loops).

use gattling::gatt::{demo, CharacteristicDef, Properties};
use gattling::gatt_client::{ClientOptions, GattClient};
use gattling::proto::gatt::client::ClientError;
use gattling::proto::gatt::ServiceDef;
use gattling::proto::hci::status;
use gattling::{AdvertisingOptions, ConnectOptions, Connection, Error, Host, LinkEnd};
use std::time::Duration;

async fn link(radio: &str) -> (Host, Connection, Host, Connection) {
    let server = Host::open(&format!("virtual:{radio}")).await.expect("server");
    let client = Host::open(&format!("virtual:{radio}")).await.expect("client");
    server.advertise(&AdvertisingOptions::default()).await.expect("advertise");
    let c = client.connect(server.address(), ConnectOptions::default()).await.expect("connect");
    let s = server.accept().await.expect("accept");
    (server, s, client, c)
}

/// A server with the demo database, a secondary 128-bit service included by a primary one, and
/// an indicate characteristic.
fn install(host: &Host) -> gattling::gatt::GattServer {
    let server = host.gatt_server("gattling", 0);
    for def in gattling::gatt::demo_services() {
        server.add_service(def).expect("demo");
    }
    let secondary = server
        .add_service(ServiceDef::secondary(demo::SERVICE_3).characteristic(CharacteristicDef::new(
            0x2A19u16,
            Properties::READ,
            &[64],
        )))
        .expect("secondary");
    server
        .add_service(ServiceDef::primary(0xFFF0u16).include(secondary.handle).characteristic(CharacteristicDef::new(
            0xFFF4u16,
            Properties::INDICATE | Properties::NOTIFY,
            &[0],
        )))
        .expect("primary");
    server
}

#[tokio::test]
async fn every_procedure_against_the_gattling_server() {
    let (server_host, _s, _client_host, c) = link("gc-all").await;
    let server = install(&server_host);
    let client = GattClient::new(c, ClientOptions::default()).await.expect("client");
    assert_eq!(client.mtu(), 517, "both sides allow 517");

    // Discovery: services, the include with a 128-bit UUID read from its declaration, characteristics, descriptors.
    let services = client.discover_services().await.expect("services");
    let uuids: Vec<String> = services.iter().map(|s| s.uuid.to_string()).collect();
    assert_eq!(uuids[..2], ["1800", "1801"]);
    assert!(uuids.contains(&"04D2".to_string()) && uuids.contains(&"FFF0".to_string()), "{uuids:?}");
    assert!(
        !uuids.contains(&demo::SERVICE_3.to_string())
            || uuids.iter().filter(|u| **u == demo::SERVICE_3.to_string()).count() == 1
    );
    let fff0 = services.iter().find(|s| s.uuid.to_string() == "FFF0").expect("FFF0");
    let includes = client.find_included_services(fff0).await.expect("includes");
    assert_eq!(includes.len(), 1);
    assert_eq!(includes[0].uuid, demo::SERVICE_3, "128-bit included UUID read with a Read Request");
    let by_uuid = client.discover_services_by_uuid(gattling::proto::Uuid::U16(0x1801)).await.expect("by uuid");
    assert_eq!(by_uuid.len(), 1);
    assert_eq!(by_uuid[0].start, services[1].start);
    let s3 = services.iter().find(|s| s.uuid == demo::SERVICE_3).expect("service 3");
    let chars = client.discover_characteristics(s3.start, s3.end, None).await.expect("chars");
    assert_eq!(chars.len(), 2);
    let (counter, long) = (chars[0], chars[1]);
    assert_eq!((counter.uuid, long.uuid), (demo::COUNTER, demo::LONG));
    assert_eq!(counter.properties, 0x32);
    let descs: Vec<u16> =
        client.discover_descriptors(&counter).await.expect("descs").iter().filter_map(|d| d.uuid.as_u16()).collect();
    assert_eq!(descs, [0x2902, 0x2901]);
    let only_long = client.discover_characteristics(s3.start, s3.end, Some(demo::LONG)).await.expect("by uuid");
    assert_eq!(only_long, [long]);

    // Reads.
    let long_value = server.characteristic(demo::LONG).expect("long").value();
    assert_eq!(client.read_long(long.value_handle).await.expect("read long"), long_value);
    assert_eq!(client.read(long.value_handle).await.expect("read").len(), 512.min(client.mtu() as usize - 1));
    let c2 = server.characteristic(demo::CHAR_2).expect("c2");
    let by = client.read_by_uuid(1, 0xFFFF, demo::CHAR_2).await.expect("read by uuid");
    assert_eq!(by, [(c2.value_handle(), vec![0x12, 0x34])]);
    let c1 = server.characteristic(demo::CHAR_1).expect("c1");
    let handles = [c1.value_handle(), c2.value_handle()];
    assert_eq!(client.read_multiple(&handles).await.expect("multiple"), [5, 0x12, 0x34]);
    assert_eq!(client.read_multiple_variable(&handles).await.expect("variable"), [vec![5], vec![0x12, 0x34]]);

    // Writes.
    client.write(c2.value_handle(), &[0xab]).await.expect("write");
    assert_eq!(c2.value(), [0xab]);
    let new_long: Vec<u8> = (0..512u32).map(|i| (i * 7) as u8).collect();
    client.write_long(long.value_handle, &new_long).await.expect("write long");
    assert_eq!(server.characteristic(demo::LONG).expect("long").value(), new_long);
    client.reliable_write(&[(c1.value_handle(), b"one"), (c2.value_handle(), b"two")]).await.expect("reliable");
    assert_eq!((c1.value(), c2.value()), (b"one".to_vec(), b"two".to_vec()));
    client.write_without_response(c2.value_handle(), b"cmd").await.expect("command");
    // A Write Command has no answer; the server handles the bearer's PDUs in order, so the answer
    // to a later Read Request proves the command was applied.
    assert_eq!(client.read(c2.value_handle()).await.expect("read after command"), b"cmd");
    assert_eq!(c2.value(), b"cmd");

    // 100 notifications and 20 indications, in order and complete.
    let mut notes = client.subscribe(&counter, false).await.expect("subscribe");
    let counter_c = server.characteristic(demo::COUNTER).expect("counter");
    for n in 0..100u8 {
        counter_c.set_value(&[n]);
    }
    for n in 0..100u8 {
        assert_eq!(tokio::time::timeout(Duration::from_secs(2), notes.next()).await.expect("in time"), Some(vec![n]));
    }
    let fff4 = client.discover_characteristics(fff0.start, fff0.end, None).await.expect("fff0 chars")[0];
    let mut inds = client.subscribe(&fff4, true).await.expect("indications");
    let ind_c = server.characteristic(0xFFF4u16).expect("fff4");
    for n in 0..20u8 {
        ind_c.set_value(&[n]);
    }
    for n in 0..20u8 {
        let (event, v) =
            tokio::time::timeout(Duration::from_secs(2), inds.next_event()).await.expect("in time").expect("value");
        assert_eq!((event, v), (0x40, vec![n]));
    }

    // Pycom-style callback.
    let (sink, mut got) = tokio::sync::mpsc::unbounded_channel();
    let s = client.services().await.expect("objects");
    let svc = s.iter().find(|s| s.uuid() == demo::SERVICE_1).expect("service 1");
    let ch = svc.characteristics().await.expect("chars").into_iter().next().expect("char 1");
    assert_eq!((ch.uuid(), ch.properties()), (demo::CHAR_1, 0x1A));
    assert_eq!(ch.read().await.expect("read"), b"one");
    ch.callback(move |event, v| {
        let _ = sink.send((event, v.to_vec()));
    })
    .await
    .expect("callback");
    c1.set_value(b"cb");
    let call = tokio::time::timeout(Duration::from_secs(2), got.recv()).await.expect("callback in time");
    assert_eq!(call, Some((0x20, b"cb".to_vec())));
    // Exactly one call per notification: the call for a second change comes next, no repeat between.
    c1.set_value(b"cb2");
    let call = tokio::time::timeout(Duration::from_secs(2), got.recv()).await.expect("callback in time");
    assert_eq!(call, Some((0x20, b"cb2".to_vec())));
    assert!(got.try_recv().is_err(), "no further calls");
}

#[tokio::test]
async fn multiple_handle_value_notifications_are_split_per_characteristic() {
    let (server_host, s, _client_host, c) = link("gc-multi").await;
    let server = install(&server_host);
    let client = GattClient::new(c, ClientOptions::default()).await.expect("client");
    assert!(client.enable_multiple_notifications().await.expect("features"));
    let services = client.discover_services().await.expect("services");
    let s1 = services.iter().find(|x| x.uuid == demo::SERVICE_1).expect("s1");
    let s2 = services.iter().find(|x| x.uuid == demo::SERVICE_2).expect("s2");
    let ch1 = client.discover_characteristics(s1.start, s1.end, None).await.expect("c1")[0];
    let ch2 = client.discover_characteristics(s2.start, s2.end, None).await.expect("c2")[0];
    let mut sub1 = client.subscribe(&ch1, false).await.expect("sub1");
    let mut sub2 = client.subscribe(&ch2, false).await.expect("sub2");
    let (c1, c2) = (server.characteristic(demo::CHAR_1).expect("c1"), server.characteristic(demo::CHAR_2).expect("c2"));
    server.notify_multiple(s.handle(), &[(&c1, b"first"), (&c2, b"second")]);
    assert_eq!(sub1.next().await, Some(b"first".to_vec()));
    assert_eq!(sub2.next().await, Some(b"second".to_vec()));
}

#[tokio::test]
async fn concurrent_calls_queue_and_all_complete_and_disconnect_fails_pending() {
    let (server_host, s, _client_host, c) = link("gc-concurrent").await;
    let server = install(&server_host);
    let client = GattClient::new(c, ClientOptions::default()).await.expect("client");
    let h = server.characteristic(demo::CHAR_2).expect("c2").value_handle();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let cl = client.clone();
        tasks.push(tokio::spawn(async move { cl.read(h).await }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task").expect("read"), [0x12, 0x34]);
    }
    // The server side disconnects while a long read is queued behind others.
    let long = server.characteristic(demo::LONG).expect("long").value_handle();
    let pending: Vec<_> = (0..5)
        .map(|_| {
            let cl = client.clone();
            tokio::spawn(async move { cl.read_long(long).await })
        })
        .collect();
    s.disconnect(0x13).await.expect("disconnect");
    let mut failed = 0;
    for t in pending {
        match t.await.expect("task") {
            Ok(v) => assert_eq!(v.len(), 512),
            Err(Error::Disconnected { reason: gattling::Reason(0x13) }) => failed += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(failed > 0, "at least the calls still queued fail with the disconnect reason");
}

/// A peer that is not a GATT server but answers by script, to test the client's checks.
async fn scripted(radio: &str, answers: Vec<Vec<u8>>) -> (Host, GattClient, tokio::task::JoinHandle<()>) {
    let (server_host, s, _client_host, c) = link(radio).await;
    let task = tokio::spawn(async move {
        let mut answers = answers.into_iter();
        while let Ok(req) = s.recv_att().await {
            if req.first() == Some(&0x02) {
                let _ = s.send_att(&[0x03, 0x17, 0x00]);
                continue;
            }
            match answers.next() {
                Some(a) if a.is_empty() => {} // stay silent
                Some(a) => {
                    let _ = s.send_att(&a);
                }
                None => {
                    let _ = s.send_att(&[0x01, req[0], 0, 0, 0x0A]);
                }
            }
        }
    });
    let client = GattClient::new(c, ClientOptions::default()).await.expect("client");
    (server_host, client, task)
}

#[tokio::test]
async fn misbehaving_servers_get_typed_errors_and_the_link_stays_usable() {
    // A service discovery answer that does not advance.
    let (_h, client, _t) = scripted(
        "gc-loop",
        vec![vec![0x11, 6, 0x05, 0x00, 0x08, 0x00, 0x0D, 0x18], vec![0x11, 6, 0x05, 0x00, 0x04, 0x00, 0x0D, 0x18]],
    )
    .await;
    match client.discover_services().await {
        Err(Error::Gatt(ClientError::NoProgress(9) | ClientError::OutOfRange { .. })) => {}
        other => panic!("expected no-progress, got {other:?}"),
    }
    // The wrong PDU in answer to a read; then a good answer still works on the same link.
    let (_h, client, _t) = scripted("gc-wrong", vec![vec![0x13], vec![0x0B, 1, 2]]).await;
    assert!(matches!(client.read(3).await, Err(Error::Gatt(ClientError::Unexpected { request: 0x0A, got: 0x13 }))));
    assert_eq!(client.read(3).await.expect("usable"), [1, 2]);
    // A characteristic outside the requested range; a malformed response.
    let (_h, client, _t) =
        scripted("gc-range", vec![vec![0x09, 7, 0x30, 0x00, 0x02, 0x31, 0x00, 0x37, 0x2A], vec![0x09, 7, 0x05]]).await;
    assert!(matches!(
        client.discover_characteristics(1, 0x10, None).await,
        Err(Error::Gatt(ClientError::OutOfRange { handle: 0x30, .. }))
    ));
    assert!(matches!(
        client.discover_characteristics(1, 0x10, None).await,
        Err(Error::Gatt(ClientError::Malformed(_)))
    ));
    // A value longer than 512 bytes from endless full blobs.
    let full = |op: u8| [vec![op], vec![0xEE; 516]].concat();
    let (_h, client, _t) = scripted("gc-long", vec![full(0x0B), full(0x0D), full(0x0D)]).await;
    assert!(matches!(client.read_long(3).await, Err(Error::Gatt(ClientError::ValueTooLong(_)))));
    // An ATT error is named.
    let (_h, client, _t) = scripted("gc-err", vec![vec![0x01, 0x0A, 0x03, 0x00, 0x02]]).await;
    let e = client.read(3).await.expect_err("read not permitted");
    assert!(e.to_string().contains("Read Not Permitted"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn a_silent_server_times_out_after_30_s_and_the_link_is_closed() {
    let (_h, client, peer) = scripted("gc-silent", vec![vec![]]).await;
    let t0 = tokio::time::Instant::now();
    let r = client.read(3).await;
    assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
    assert!(t0.elapsed() >= Duration::from_secs(30));
    // No more ATT on this bearer (Core Vol 3 Part F §3.3.3): the client disconnected the link...
    let end = tokio::time::timeout(Duration::from_secs(5), client.connection().closed()).await.expect("link ends");
    assert_eq!(end, LinkEnd::Disconnected(gattling::Reason(status::LOCAL_HOST_TERMINATED)));
    // ...so the scripted peer saw the link go (its receive loop ended)...
    tokio::time::timeout(Duration::from_secs(5), peer).await.expect("peer sees the link end").expect("peer task");
    // ...and a further request fails at once with the link's end, not with another timeout.
    let t1 = tokio::time::Instant::now();
    let r = client.read(3).await;
    assert!(matches!(r, Err(Error::Disconnected { reason: gattling::Reason(status::LOCAL_HOST_TERMINATED) })), "{r:?}");
    assert!(t1.elapsed() < Duration::from_secs(1), "fails without waiting: {:?}", t1.elapsed());
}
