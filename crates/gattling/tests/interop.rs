//! Interop tests against implementations gattling did not write: rootcanal 1.10.0 as the
//! controller and bumble 0.0.236 as the peer host (see /work/shared/reference/interop-testbed.md).
//! They install both into the project's virtualenv on first use; a missing peer is a failure.
//!
//! Every test runs twice from one list: on rootcanal, and on gattling's own virtual controller
//! served over TCP (with rootcanal's 27 x 20 buffers), so the two controllers are held to the
//! same observable behaviour.

#[macro_use]
mod support;

use gattling::proto::gap::ad::{flags, AdvData, AdvDataBuilder};
use gattling::proto::gap::Address;
use gattling::proto::hci::status;
use gattling::proto::host::{AdvReport, Role};
use gattling::{
    AdvertisingKind, AdvertisingOptions, ConnectOptions, Connection, Host, HostOptions, LinkEnd, ScanOptions,
};
use std::time::Duration;
use support::{skipped, static_random, Bed, Peer};

const STEP: Duration = Duration::from_secs(15);

async fn host_on(rc: &Bed) -> Host {
    let options = HostOptions { random_address: Some(static_random()), ..HostOptions::default() };
    Host::open_with(&rc.transport(), options).await.expect("gattling host on the test bed")
}

async fn advertise_name(host: &Host, name: &str) {
    let data = AdvDataBuilder::new().flags(flags::LE_GENERAL_ONLY).name(name).build().expect("adv data");
    host.advertise(&AdvertisingOptions { kind: AdvertisingKind::Connectable, data, ..Default::default() })
        .await
        .expect("advertise");
}

/// Scans until a report (advertising or scan response) carries `name`; rootcanal's own beacons
/// and other tests' devices are skipped by name.
async fn find_by_name(host: &Host, name: &str) -> AdvReport {
    let mut scan = host.scan(ScanOptions::default()).await.expect("scan");
    let found = tokio::time::timeout(STEP, async {
        while let Some(r) = scan.next().await {
            if AdvData::parse_lenient(&r.data).local_name() == Some(name) {
                return r;
            }
        }
        panic!("scan ended before {name} was found");
    })
    .await
    .unwrap_or_else(|_| panic!("{name} not found within {STEP:?}"));
    scan.stop().await.expect("stop scan");
    found
}

async fn accept(host: &Host) -> Connection {
    tokio::time::timeout(STEP, host.accept()).await.expect("no incoming connection").expect("accept")
}

async fn closed(conn: &Connection) -> LinkEnd {
    tokio::time::timeout(STEP, conn.closed()).await.expect("link did not end")
}

/// Two gattling hosts on one rootcanal, connected: (central link, peripheral link).
async fn connected_pair(rc: &Bed, name: &str) -> (Host, Connection, Host, Connection) {
    let periph = host_on(rc).await;
    advertise_name(&periph, name).await;
    let central = host_on(rc).await;
    let report = find_by_name(&central, name).await;
    assert_eq!(report.address, periph.address(), "found the advertiser under its static random address");
    let c = central.connect(report.address, ConnectOptions::default()).await.expect("connect");
    let p = accept(&periph).await;
    assert_eq!((c.role(), p.role()), (Role::Central, Role::Peripheral));
    assert_eq!(p.peer(), central.address());
    (central, c, periph, p)
}

async fn bumble_central_finds_connects_and_disconnects_from_gattling_advertiser(rc: Bed) {
    let host = host_on(&rc).await;
    advertise_name(&host, "gattling-adv-a").await;
    let mut central = Peer::start(
        "bumble_central.py",
        &["--transport", &rc.transport(), "--name", "gattling-adv-a", "--disconnect-after", "0.3"],
    );
    let found = central.expect("found", STEP).await;
    assert_eq!(found["address"], host.address().addr.to_string());
    assert_eq!(found["address_type"], "random");
    central.expect("connected", STEP).await;
    let conn = accept(&host).await;
    assert_eq!(conn.role(), Role::Peripheral);
    // (d) a disconnect by the remote side arrives with its reason.
    assert_eq!(closed(&conn).await, LinkEnd::Disconnected(gattling::Reason(status::REMOTE_USER_TERMINATED)));
    let d = central.expect("disconnected", STEP).await;
    assert_eq!(d["by"], "local");
    central.finish().await;
}

async fn gattling_central_against_bumble_peripheral(rc: Bed, name: &str, extra: &[&str]) {
    let host = host_on(&rc).await;
    let transport = rc.transport();
    let mut args = vec!["--transport", &transport, "--name", name, "--wait-disconnect"];
    args.extend_from_slice(extra);
    let mut periph = Peer::start("bumble_peripheral.py", &args);
    let adv = periph.expect("advertising", STEP).await;
    let report = find_by_name(&host, name).await;
    assert_eq!(report.address.addr.to_string(), adv["address"].as_str().expect("address"));
    let conn = host.connect(report.address, ConnectOptions::default()).await.expect("connect to bumble");
    assert_eq!(conn.role(), Role::Central);
    periph.expect("connected", STEP).await;
    // (d) our disconnect is seen by the peer with 0x13, and locally as 0x16.
    let local = conn.disconnect(status::REMOTE_USER_TERMINATED).await.expect("disconnect");
    assert_eq!(local, status::LOCAL_HOST_TERMINATED);
    let d = periph.expect("disconnected", STEP).await;
    assert_eq!(d["reason"], status::REMOTE_USER_TERMINATED);
    assert_eq!(d["by"], "remote");
    periph.finish().await;
}

async fn gattling_scans_and_connects_to_bumble_peripheral_name_in_advertising_data(rc: Bed) {
    gattling_central_against_bumble_peripheral(rc, "bumble-adv-b1", &[]).await;
}

async fn gattling_scans_and_connects_to_bumble_peripheral_name_in_scan_response(rc: Bed) {
    gattling_central_against_bumble_peripheral(rc, "bumble-adv-b2", &["--name-in-scan-response"]).await;
}

async fn passive_scan_sees_advertising_data_but_no_scan_response(rc: Bed) {
    let host = host_on(&rc).await;
    let transport = rc.transport();
    let mut periph = Peer::start(
        "bumble_peripheral.py",
        &[
            "--transport",
            &transport,
            "--name",
            "bumble-passive",
            "--name-in-scan-response",
            "--wait-disconnect",
            "--timeout",
            "6",
        ],
    );
    let adv = periph.expect("advertising", STEP).await;
    let mut scan = host.scan(ScanOptions { active: false, ..ScanOptions::default() }).await.expect("scan");
    let mut seen_adv = 0;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(r) = scan.next().await {
            if r.address.addr.to_string() == adv["address"].as_str().unwrap_or_default() {
                assert_ne!(r.event_type, 4, "a passive scan must not produce SCAN_RSP reports");
                assert_eq!(AdvData::parse_lenient(&r.data).local_name(), None);
                seen_adv += 1;
            }
        }
    })
    .await;
    assert!(seen_adv > 0, "the peripheral's advertising was not seen");
    scan.stop().await.expect("stop");
}

async fn two_gattling_hosts_connect_and_disconnect_both_ways(rc: Bed) {
    let (central, c, periph, p) = connected_pair(&rc, "gattling-pair-c").await;
    // Central disconnects: peripheral sees 0x13.
    assert_eq!(c.disconnect(status::REMOTE_USER_TERMINATED).await.expect("disconnect"), status::LOCAL_HOST_TERMINATED);
    assert_eq!(closed(&p).await, LinkEnd::Disconnected(gattling::Reason(status::REMOTE_USER_TERMINATED)));
    // Again, and this time the peripheral disconnects: central sees 0x13.
    advertise_name(&periph, "gattling-pair-c").await;
    let c = central.connect(periph.address(), ConnectOptions::default()).await.expect("reconnect");
    let p = accept(&periph).await;
    assert_eq!(p.disconnect(status::REMOTE_USER_TERMINATED).await.expect("disconnect"), status::LOCAL_HOST_TERMINATED);
    assert_eq!(closed(&c).await, LinkEnd::Disconnected(gattling::Reason(status::REMOTE_USER_TERMINATED)));
}

async fn a_512_byte_att_exchange_is_fragmented_to_27_byte_acl_packets(rc: Bed) {
    let (central, c, _periph, p) = connected_pair(&rc, "gattling-frag-e").await;
    assert_eq!(central.acl_buffers().0, 27, "rootcanal's LE ACL buffers are 27 bytes");
    let value: Vec<u8> = (0..512u32).map(|i| (i * 7 + 3) as u8).collect();
    let server = tokio::spawn(async move {
        // Exchange MTU Request -> Response (517), then Read Request -> Read Response of 512 bytes.
        let req = p.recv_att().await.expect("mtu req");
        assert_eq!(req, [0x02, 0x05, 0x02]);
        p.send_att(&[0x03, 0x05, 0x02]).expect("mtu rsp");
        let req = p.recv_att().await.expect("read req");
        assert_eq!(req, [0x0A, 0x03, 0x00]);
        let mut rsp = vec![0x0B];
        rsp.extend((0..512u32).map(|i| (i * 7 + 3) as u8));
        p.send_att(&rsp).expect("read rsp");
        p
    });
    c.send_att(&[0x02, 0x05, 0x02]).expect("mtu req");
    let rsp = tokio::time::timeout(STEP, c.recv_att()).await.expect("mtu rsp in time").expect("mtu rsp");
    assert_eq!(rsp, [0x03, 0x05, 0x02]);
    c.send_att(&[0x0A, 0x03, 0x00]).expect("read req");
    let rsp = tokio::time::timeout(STEP, c.recv_att()).await.expect("read rsp in time").expect("read rsp");
    assert_eq!(rsp.len(), 513);
    assert_eq!(rsp[0], 0x0B);
    assert_eq!(&rsp[1..], &value[..]);
    let p = server.await.expect("server task");
    // The link is still up and usable after the large exchange.
    p.send_att(&[0x1B, 0x03, 0x00, 0xAA]).expect("notification");
    let ntf = tokio::time::timeout(STEP, c.recv_att()).await.expect("ntf in time").expect("ntf");
    assert_eq!(ntf, [0x1B, 0x03, 0x00, 0xAA]);
}

async fn a_vanishing_controller_fails_everything_promptly(mut rc: Bed) {
    let (central, c, _periph, p) = connected_pair(&rc, "gattling-vanish").await;
    let pending = tokio::spawn(async move { c.recv_att().await });
    rc.kill();
    let end = tokio::time::timeout(Duration::from_secs(3), p.closed()).await.expect("prompt");
    assert_eq!(end, LinkEnd::TransportClosed);
    let r = tokio::time::timeout(Duration::from_secs(3), pending).await.expect("prompt").expect("task");
    assert!(matches!(r, Err(gattling::Error::TransportClosed(_))), "{r:?}");
    let e = central.scan(ScanOptions::default()).await.err().expect("scan must fail");
    assert!(e.to_string().contains("transport closed"), "{e}");
}

async fn connect_times_out_and_cancels_when_nobody_advertises(rc: Bed) {
    let host = host_on(&rc).await;
    let ghost = Address { addr: static_random(), kind: gattling::proto::gap::AddressType::Random };
    let t0 = std::time::Instant::now();
    let r = host.connect(ghost, ConnectOptions { timeout: Duration::from_millis(300), ..Default::default() }).await;
    assert!(matches!(r, Err(gattling::Error::Timeout(_))), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    // The host is usable again: a new attempt is not "busy".
    let r = host.connect(ghost, ConnectOptions { timeout: Duration::from_millis(100), ..Default::default() }).await;
    assert!(matches!(r, Err(gattling::Error::Timeout(_))), "{r:?}");
}

async fn link_layer_procedures_and_controller_crypto_work(rc: Bed) {
    let (central, c, _periph, p) = connected_pair(&rc, "gattling-ll").await;

    // LE Encrypt: the FIPS-197 AES-128 example, in HCI (least significant octet first) order.
    let mut key: [u8; 16] = core::array::from_fn(|i| i as u8);
    let mut plain: [u8; 16] = core::array::from_fn(|i| (i as u8) * 0x11);
    key.reverse();
    plain.reverse();
    let mut cipher = central.le_encrypt(key, plain).await.expect("LE Encrypt");
    cipher.reverse();
    assert_eq!(
        cipher,
        [0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30, 0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4, 0xc5, 0x5a]
    );
    let (a, b) = (central.le_rand().await.expect("LE Rand"), central.le_rand().await.expect("LE Rand"));
    assert_ne!(a, b, "two LE Rand results should differ");

    // Central-initiated connection update.
    let params = gattling::proto::hci::command::ConnParams {
        interval_min: 12,
        interval_max: 12,
        latency: 0,
        timeout: 300,
        ..Default::default()
    };
    let (interval, latency, timeout) = c.update_parameters(params).await.expect("connection update");
    assert_eq!((interval, latency, timeout), (12, 0, 300));

    // Peripheral asks over L2CAP; the gattling central accepts and applies it.
    let wanted = gattling::proto::hci::command::ConnParams {
        interval_min: 24,
        interval_max: 24,
        latency: 0,
        timeout: 400,
        ..Default::default()
    };
    assert!(p.request_parameters(wanted).await.expect("L2CAP parameter request"), "central accepts");

    // 2M PHY; LE Set Data Length only where the controller lists it (rootcanal 1.10 does not).
    assert_eq!(
        c.set_phy(gattling::PhySet::LE_2M, gattling::PhySet::LE_2M).await.expect("LE Set PHY"),
        (gattling::Phy::Le2M, gattling::Phy::Le2M)
    );
    let dl = c.set_data_length(251, 2120).await;
    match central.supports(gattling::proto::hci::Opcode::LE_SET_DATA_LENGTH) {
        Some(true) => assert!(dl.is_ok(), "{dl:?}"),
        _ => assert!(matches!(dl, Err(gattling::Error::Unsupported("LE Set Data Length"))), "{dl:?}"),
    }

    // The link still carries ATT afterwards.
    c.send_att(&[0x0A, 0x01, 0x00]).expect("send");
    let got = tokio::time::timeout(STEP, p.recv_att()).await.expect("in time").expect("recv");
    assert_eq!(got, [0x0A, 0x01, 0x00]);
}

const LTK: [u8; 16] = [0x4C, 0x68, 0x38, 0x41, 0x39, 0xF5, 0x74, 0xD8, 0x36, 0xBC, 0xF3, 0x4E, 0x9D, 0xFB, 0x01, 0xBF];
const RAND: u64 = 0xABCD_EF01_2345_6789;
const EDIV: u16 = 0xBEEF;

/// LE link encryption with a Long Term Key both hosts were given (no pairing): refused while the
/// peripheral has no key, then encrypted, then refreshed; ATT still flows.
async fn two_gattling_hosts_encrypt_a_link_with_a_known_key(rc: Bed) {
    let (central, c, periph, p) = connected_pair(&rc, "gattling-enc").await;
    assert_eq!((c.encryption(), p.encryption()), ((false, 0), (false, 0)));
    // The peripheral may not start encryption.
    assert!(matches!(p.start_encryption(LTK, RAND, EDIV).await, Err(gattling::Error::Host(_))));

    // No key registered on the peripheral: its host refuses, the central sees a failed start.
    let refused = tokio::time::timeout(STEP, c.start_encryption(LTK, RAND, EDIV)).await.expect("in time");
    let status = match refused {
        Err(gattling::Error::Command { status, .. }) => status,
        other => panic!("expected a failed start, got {other:?}"),
    };
    // The link layer rejects with PIN or Key Missing (Core Vol 6 Part B §5.1.3.1); rootcanal
    // 1.10 reports Authentication Failure instead.
    let expected = if matches!(rc, Bed::RootCanal(_)) { 0x05 } else { status::PIN_OR_KEY_MISSING };
    assert_eq!(status, expected, "{}: status of a refused key", rc.name());
    assert_eq!(c.encryption(), (false, 0));

    // A key for this central under another EDIV does not match the request: refused too.
    periph.set_long_term_key(central.address(), LTK, RAND, EDIV ^ 1);
    let refused = tokio::time::timeout(STEP, c.start_encryption(LTK, RAND, EDIV)).await.expect("in time");
    assert!(matches!(refused, Err(gattling::Error::Command { status: s, .. }) if s == expected), "{refused:?}");

    // The peripheral knows the key for this central (with this Rand and EDIV): encrypted.
    periph.set_long_term_key(central.address(), LTK, RAND, EDIV);
    let p_changed = p.encryption_changed();
    let key_size = tokio::time::timeout(STEP, c.start_encryption(LTK, RAND, EDIV)).await.expect("in time");
    assert_eq!(key_size.expect("encryption starts"), 16);
    assert_eq!(tokio::time::timeout(STEP, p_changed).await.expect("in time").expect("event"), (0, true, 16));
    assert_eq!((c.encryption(), p.encryption()), ((true, 16), (true, 16)));

    // Again on the encrypted link: a key refresh on both sides.
    let p_refreshed = p.encryption_changed();
    let again = tokio::time::timeout(STEP, c.start_encryption(LTK, RAND, EDIV)).await.expect("in time");
    assert_eq!(again.expect("key refresh"), 16);
    assert_eq!(tokio::time::timeout(STEP, p_refreshed).await.expect("in time").expect("event"), (0, true, 16));

    // The encrypted link carries ATT both ways.
    c.send_att(&[0x0A, 0x01, 0x00]).expect("send");
    assert_eq!(tokio::time::timeout(STEP, p.recv_att()).await.expect("in time").expect("recv"), [0x0A, 0x01, 0x00]);
    p.send_att(&[0x01, 0x0A, 0x01, 0x00, 0x0A]).expect("send");
    let got = tokio::time::timeout(STEP, c.recv_att()).await.expect("in time").expect("recv");
    assert_eq!(got, [0x01, 0x0A, 0x01, 0x00, 0x0A]);

    // A refresh with a key the peripheral does not hold: real link layers fail the MIC check and
    // drop the link (0x3D); rootcanal 1.10 does not compare the keys and refreshes.
    let mut wrong = LTK;
    wrong[0] ^= 1;
    let r = tokio::time::timeout(STEP, c.start_encryption(wrong, RAND, EDIV)).await.expect("in time");
    if matches!(rc, Bed::RootCanal(_)) {
        assert_eq!(r.expect("rootcanal refreshes"), 16);
    } else {
        let mic = gattling::Reason(status::MIC_FAILURE);
        assert!(matches!(r, Err(gattling::Error::Disconnected { reason }) if reason == mic), "{r:?}");
        assert_eq!(closed(&p).await, LinkEnd::Disconnected(mic));
    }
}

async fn one_central_keeps_three_links_busy_at_once(rc: Bed) {
    let central = host_on(&rc).await;
    let mut links = Vec::new();
    for i in 0..3 {
        let name = format!("gattling-multi-{i}");
        let periph = host_on(&rc).await;
        advertise_name(&periph, &name).await;
        let report = find_by_name(&central, &name).await;
        let c = central.connect(report.address, ConnectOptions::default()).await.expect("connect");
        let p = accept(&periph).await;
        links.push((c, p, periph));
    }
    let handles: std::collections::HashSet<_> = links.iter().map(|(c, _, _)| c.handle()).collect();
    assert_eq!(handles.len(), 3, "three distinct connection handles");
    // Every link carries 20 large PDUs in both directions at the same time.
    let mut tasks = Vec::new();
    for (i, (c, p, periph)) in links.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let echo = tokio::spawn(async move {
                for _ in 0..20 {
                    let pdu = p.recv_att().await.expect("peripheral recv");
                    p.send_att(&pdu).expect("echo");
                }
                (p, periph)
            });
            for n in 0..20u8 {
                let pdu: Vec<u8> = std::iter::once(0x52).chain((0..200).map(|k| k as u8 ^ n ^ i as u8)).collect();
                c.send_att(&pdu).expect("central send");
                let back = tokio::time::timeout(STEP, c.recv_att()).await.expect("echo in time").expect("recv");
                assert_eq!(back, pdu, "link {i} message {n}");
            }
            // Keep the peripheral host alive: dropping a Host closes its controller connection.
            let peripheral = echo.await.expect("echo task");
            (c, peripheral)
        }));
    }
    for t in tasks {
        let (c, _peripheral) = t.await.expect("link task");
        assert_eq!(
            c.disconnect(status::REMOTE_USER_TERMINATED).await.expect("disconnect"),
            status::LOCAL_HOST_TERMINATED
        );
    }
}

async fn a_public_address_advertiser_is_found_as_public_by_bumble(rc: Bed) {
    let host = Host::open(&rc.transport()).await.expect("host with its public address");
    assert_eq!(host.address().kind, gattling::proto::gap::AddressType::Public);
    advertise_name(&host, "gattling-public").await;
    let transport = rc.transport();
    let mut central = Peer::start(
        "bumble_central.py",
        &["--transport", &transport, "--name", "gattling-public", "--disconnect-after", "0.2"],
    );
    let found = central.expect("found", STEP).await;
    assert_eq!(found["address_type"], "public");
    assert_eq!(found["address"], host.address().addr.to_string());
    central.expect("connected", STEP).await;
    let conn = accept(&host).await;
    assert_eq!(conn.peer().kind, gattling::proto::gap::AddressType::Random);
    assert_eq!(closed(&conn).await, LinkEnd::Disconnected(gattling::Reason(status::REMOTE_USER_TERMINATED)));
    central.finish().await;
}

on_each_controller!(
    bumble_central_finds_connects_and_disconnects_from_gattling_advertiser,
    gattling_scans_and_connects_to_bumble_peripheral_name_in_advertising_data,
    gattling_scans_and_connects_to_bumble_peripheral_name_in_scan_response,
    passive_scan_sees_advertising_data_but_no_scan_response,
    two_gattling_hosts_connect_and_disconnect_both_ways,
    a_512_byte_att_exchange_is_fragmented_to_27_byte_acl_packets,
    a_vanishing_controller_fails_everything_promptly,
    connect_times_out_and_cancels_when_nobody_advertises,
    link_layer_procedures_and_controller_crypto_work,
    two_gattling_hosts_encrypt_a_link_with_a_known_key,
    one_central_keeps_three_links_busy_at_once,
    a_public_address_advertiser_is_found_as_public_by_bumble,
    bumble_central_and_peripheral_run_gatt_across_the_controller,
);

async fn bumble_central_and_peripheral_run_gatt_across_the_controller(rc: Bed) {
    let transport = rc.transport();
    let mut periph = Peer::start(
        "bumble_peripheral.py",
        &["--transport", &transport, "--name", "bumble-gatt", "--gatt", "--wait-disconnect"],
    );
    periph.expect("advertising", STEP).await;
    let mut central = Peer::start(
        "bumble_central.py",
        &["--transport", &transport, "--name", "bumble-gatt", "--gatt", "--disconnect-after", "0.1"],
    );
    central.expect("connected", STEP).await;
    let gatt = central.expect("gatt", STEP).await;
    assert!(
        gatt["services"].as_array().is_some_and(|s| s
            .iter()
            .any(|u| u == "3E1F0001-6A5B-4C2D-9E8F-0A1B2C3D4E5F" || u == "3e1f0001-6a5b-4c2d-9e8f-0a1b2c3d4e5f")),
        "{gatt}"
    );
    assert_eq!(gatt["read"], "gattling");
    assert_eq!(gatt["notified"], "over-the-virtual-air");
    let sub = periph.expect("subscribed", STEP).await;
    assert_eq!(sub["notify"], true);
    let write = periph.expect("write", STEP).await;
    assert_eq!(write["value"], hex(b"over-the-virtual-air"));
    assert_eq!(periph.expect("disconnected", STEP).await["reason"], status::REMOTE_USER_TERMINATED);
    central.finish().await;
    periph.finish().await;
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The GATT server a bumble client exercises: the `gattling serve` demo database, plus a service
/// that includes a secondary service and carries an indicate-only characteristic.
async fn gatt_server_host(rc: &Bed, name: &str) -> (Host, gattling::gatt::GattServer) {
    use gattling::gatt::{CharacteristicDef, Properties};
    use gattling::proto::gatt::ServiceDef;
    let host = host_on(rc).await;
    let server = host.gatt_server(name, 0x0340);
    for def in gattling::gatt::demo_services() {
        server.add_service(def).expect("demo service");
    }
    let secondary = server
        .add_service(
            ServiceDef::secondary(0x180Fu16)
                .characteristic(CharacteristicDef::new(0x2A19u16, Properties::READ, &[87]).user_description("battery")),
        )
        .expect("secondary");
    server
        .add_service(ServiceDef::primary(0xFFF0u16).include(secondary.handle).characteristic(CharacteristicDef::new(
            0xFFF4u16,
            Properties::INDICATE,
            &[0],
        )))
        .expect("primary with include");
    advertise_name(&host, name).await;
    (host, server)
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn bumble_client_runs_every_gatt_procedure_against_the_gattling_server(rc: Bed) {
    use gattling::gatt::demo;
    let (_host, server) = gatt_server_host(&rc, "gattling-gatt").await;
    let long = gattling::gatt::demo_services()[2].characteristics[1].value.clone();
    let new_long: Vec<u8> = (0..300u32).map(|i| (i * 3) as u8).collect();
    let transport = rc.transport();
    let (c1, c2, counter, long_uuid) =
        (demo::CHAR_1.to_string(), demo::CHAR_2.to_string(), demo::COUNTER.to_string(), demo::LONG.to_string());
    let args: Vec<String> = vec![
        "--transport".into(),
        transport,
        "--name".into(),
        "gattling-gatt".into(),
        "--read".into(),
        c2.clone(),
        "--read".into(),
        long_uuid.clone(),
        "--read-multiple".into(),
        format!("{c1},{c2}"),
        "--write".into(),
        format!("{c2}=abcd"),
        "--write-long".into(),
        format!("{long_uuid}={}", hexs(&new_long)),
        "--reliable-write".into(),
        format!("{c1}=0102030405060708090a0b0c0d0e0f101112131415161718191a"),
        "--read-hash".into(),
        "--subscribe".into(),
        format!("{counter}:3"),
        "--indicate".into(),
        "FFF4:2".into(),
        "--expect-service-changed".into(),
        "--timeout".into(),
        "30".into(),
    ];
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut client = Peer::start("bumble_gatt_client.py", &argv);
    client.expect("connected", STEP).await;
    let mtu = client.expect("mtu", STEP).await;
    assert_eq!(mtu["mtu"], 517);

    // Discovery: every service, the include, characteristics with properties, descriptors.
    let disc = client.expect("discovery", STEP).await;
    let services = disc["services"].as_array().expect("services").clone();
    let uuids: Vec<String> = services.iter().map(|s| s["uuid"].as_str().unwrap_or_default().to_string()).collect();
    for want in ["1800", "1801", &demo::SERVICE_1.to_string(), "04D2", &demo::SERVICE_3.to_string(), "FFF0", "180F"] {
        assert!(uuids.iter().any(|u| u == want), "service {want} missing from {uuids:?}");
    }
    let fff0 = services.iter().find(|s| s["uuid"] == "FFF0").expect("FFF0");
    assert_eq!(fff0["includes"][0]["uuid"], "180F", "{fff0}");
    let counter_char = services
        .iter()
        .flat_map(|s| s["characteristics"].as_array().cloned().unwrap_or_default())
        .find(|c| c["uuid"] == counter.as_str())
        .expect("counter characteristic");
    assert_eq!(counter_char["properties"], 0x32, "read | notify | indicate");
    let descs: Vec<&str> = counter_char["descriptors"]
        .as_array()
        .expect("descriptors")
        .iter()
        .filter_map(|d| d["uuid"].as_str())
        .collect();
    assert_eq!(descs, ["2902", "2901"]);

    // The client enables Service Changed indications right after discovery; add a service now.
    client.expect("subscribed", STEP).await;
    let added = server.add_service(gattling::proto::gatt::ServiceDef::primary(0x1815u16)).expect("add service");

    // Reads: short, long (512 bytes, Read Blob), multiple.
    let r = client.expect("read", STEP).await;
    assert_eq!(r["value"], "1234");
    let r = client.expect("read", STEP).await;
    assert_eq!(r["value"], hexs(&long), "512-byte long read");
    let r = client.expect("read_multiple", STEP).await;
    assert_eq!(r["value"], "051234");
    // Writes: short, long (prepare/execute), reliable.
    client.expect("write", STEP).await;
    client.expect("write_long", STEP).await;
    let rw = client.expect("reliable_write", STEP).await;
    assert!(rw["prepares"].as_u64().is_some_and(|n| n >= 1), "{rw}");
    assert_eq!(server.characteristic(demo::CHAR_2).expect("c2").value(), [0xab, 0xcd]);
    assert_eq!(server.characteristic(demo::LONG).expect("long").value(), new_long);
    assert_eq!(server.characteristic(demo::CHAR_1).expect("c1").value(), (1..=0x1a).collect::<Vec<u8>>());
    // The Database Hash as the server computes it (after the added service).
    let h = client.expect("hash", STEP).await;
    assert_eq!(h["value"], hexs(&server.database_hash()));

    // Notifications and indications, pushed by the application.
    let counter_c = server.characteristic(demo::COUNTER).expect("counter");
    let ind_c = server.characteristic(0xFFF4u16).expect("fff4");
    let pusher = tokio::spawn(async move {
        for n in 1..=40u8 {
            counter_c.set_value(&[n]);
            ind_c.set_value(&[0xA0 + n]);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut notifications = 0;
    let mut indications = 0;
    while notifications < 3 || indications < 2 {
        let ev = client.expect_any(&["notification", "indication"], STEP).await;
        if ev["event"] == "notification" {
            notifications += 1;
        } else {
            indications += 1;
        }
    }
    let sc = client.expect("service_changed", STEP).await;
    assert_eq!((sc["start"].as_u64(), sc["end"].as_u64()), (Some(added.handle as u64), Some(added.end_handle as u64)));
    client.expect("done", STEP).await;
    client.finish().await;
    pusher.abort();
}

on_each_controller!(bumble_client_runs_every_gatt_procedure_against_the_gattling_server);

async fn gattling_client_runs_every_procedure_against_a_bumble_server(rc: Bed) {
    use gattling::gatt_client::{ClientOptions, GattClient};
    use gattling::proto::Uuid;
    let transport = rc.transport();
    let mut server =
        Peer::start("bumble_gatt_server.py", &["--transport", &transport, "--name", "bumble-gatts", "--timeout", "40"]);
    server.expect("advertising", STEP).await;
    let host = host_on(&rc).await;
    let report = find_by_name(&host, "bumble-gatts").await;
    let conn = host.connect(report.address, ConnectOptions::default()).await.expect("connect");
    let client = GattClient::new(conn, ClientOptions::default()).await.expect("client");
    assert_eq!(client.mtu(), 517);
    let b = |n: u8| Uuid::from_be_u128(0x12345678_1234_5678_1234_56789abcdef0 + n as u128);

    // Discovery with 16- and 128-bit UUIDs, an included 128-bit secondary service, descriptors.
    let services = client.discover_services().await.expect("services");
    let svc_a = *services.iter().find(|s| s.uuid == Uuid::U16(0x180D)).expect("service A");
    let svc_b = *services.iter().find(|s| s.uuid == b(0)).expect("service B (128-bit)");
    let inc = client.find_included_services(&svc_b).await.expect("includes");
    assert_eq!(inc.len(), 1);
    assert_eq!(
        inc[0].uuid,
        Uuid::from_be_u128(0x0000aaaa_0000_1000_8000_00805f9b34fc),
        "128-bit include read from its declaration"
    );
    let chars_a = client.discover_characteristics(svc_a.start, svc_a.end, None).await.expect("chars A");
    let chars_b = client.discover_characteristics(svc_b.start, svc_b.end, None).await.expect("chars B");
    assert_eq!(chars_a.len(), 2);
    assert_eq!(chars_b.iter().map(|c| c.uuid).collect::<Vec<_>>(), (1..=5).map(b).collect::<Vec<_>>());
    let mut descriptors = Vec::new();
    for c in [&chars_a[0], &chars_a[1], &chars_b[3], &chars_b[4]] {
        let found = client.discover_descriptors(c).await.expect("descriptors");
        descriptors.push(found.iter().map(|d| d.uuid).collect::<Vec<_>>());
    }
    assert_eq!(descriptors[0], [Uuid::U16(0x2901), Uuid::U16(0x2902)]);
    assert_eq!(descriptors[1], [Uuid::U16(0x2904)]);
    assert_eq!(descriptors[2], [Uuid::U16(0x2900)]);
    assert_eq!(descriptors[3], [b(9)]);

    // Reads: short, 512-byte long, by UUID, multiple.
    let (hr, loc) = (chars_a[0].value_handle, chars_a[1].value_handle);
    assert_eq!(client.read(hr).await.expect("read"), [0x00, 0x48]);
    let long: Vec<u8> = (0..512u32).map(|i| i as u8).collect();
    assert_eq!(client.read_long(chars_b[0].value_handle).await.expect("read long"), long);
    assert_eq!(client.read_by_uuid(1, 0xFFFF, Uuid::U16(0x2A38)).await.expect("by uuid"), [(loc, vec![1])]);
    assert_eq!(client.read_multiple(&[hr, loc]).await.expect("multiple"), [0x00, 0x48, 0x01]);

    // Writes: short, long, reliable.
    client.write(chars_b[1].value_handle, b"hi").await.expect("write");
    assert_eq!(server.expect("write", STEP).await["value"], "6869");
    let new_long: Vec<u8> = (0..512u32).map(|i| (i * 3) as u8).collect();
    client.write_long(chars_b[0].value_handle, &new_long).await.expect("write long");
    assert_eq!(server.expect("write", STEP).await["value"], hexs(&new_long));
    client.reliable_write(&[(chars_b[3].value_handle, b"reliable!")]).await.expect("reliable write");
    assert_eq!(server.expect("write", STEP).await["value"], hexs(b"reliable!"));

    // 100 notifications, then 20 indications, in order and complete.
    let mut notes = client.subscribe(&chars_b[2], false).await.expect("notify");
    for n in 0..100u16 {
        let v = tokio::time::timeout(STEP, notes.next()).await.expect("in time").expect("notification");
        assert_eq!(v, n.to_le_bytes(), "notification {n}");
    }
    let mut inds = client.subscribe(&chars_b[2], true).await.expect("indicate");
    for n in 0..20u16 {
        let (event, v) = tokio::time::timeout(STEP, inds.next_event()).await.expect("in time").expect("indication");
        assert_eq!((event, v), (0x40, n.to_le_bytes().to_vec()), "indication {n}");
    }
    assert_eq!(server.expect("notifications_sent", STEP).await["count"], 100);
    assert_eq!(server.expect("indications_sent", STEP).await["count"], 20);
    client.disconnect().await.expect("disconnect");
    server.finish().await;
}

on_each_controller!(gattling_client_runs_every_procedure_against_a_bumble_server);

/// One ATT bearer, one ATT_MTU (Core Vol 3 Part F §3.4.2.2): gattling, central and GATT client,
/// exchanges MTU 247 with a bumble peripheral; bumble then acts as GATT client on the same link,
/// without an exchange of its own, and reads gattling's 200-byte characteristic with a single
/// Read Request. The whole value must come back in one Read Response (at ATT_MTU 23 it would be
/// cut to 22 bytes).
async fn gattling_client_mtu_is_the_servers_mtu_too(rc: Bed) {
    use gattling::gatt::{CharacteristicDef, Properties};
    use gattling::gatt_client::{ClientOptions, GattClient};
    use gattling::proto::gatt::ServiceDef;
    use gattling::proto::Uuid;
    const SERVICE: u128 = 0x6a7b0000_51c3_4e2d_9f10_3c5d7e9fa1b2;
    const VALUE_200: u128 = 0x6a7b0001_51c3_4e2d_9f10_3c5d7e9fa1b2;
    let value: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
    let value_uuid = Uuid::from_be_u128(VALUE_200);

    let transport = rc.transport();
    let uuid_arg = value_uuid.to_string();
    let mut periph = Peer::start(
        "bumble_peripheral_reader.py",
        &[
            "--transport",
            &transport,
            "--name",
            "bumble-mtu-reader",
            "--wait-mtu",
            "247",
            "--read",
            &uuid_arg,
            "--wait-disconnect",
            "--timeout",
            "30",
        ],
    );
    periph.expect("advertising", STEP).await;

    // gattling's GATT server (serves every link of the host), installed before connecting.
    let host = host_on(&rc).await;
    let server = host.gatt_server("gattling-mtu", 0x0000);
    server
        .add_service(ServiceDef::primary(Uuid::from_be_u128(SERVICE)).characteristic(CharacteristicDef::new(
            value_uuid,
            Properties::READ,
            &value,
        )))
        .expect("service with the 200-byte characteristic");
    let served = server.characteristic(value_uuid).expect("served characteristic");
    assert_eq!(served.value(), value);

    let report = find_by_name(&host, "bumble-mtu-reader").await;
    let conn = host.connect(report.address, ConnectOptions::default()).await.expect("connect to bumble");
    assert_eq!(conn.role(), Role::Central);
    let handle = conn.handle();
    periph.expect("connected", STEP).await;
    assert_eq!(conn.att_mtu(), 23, "no exchange yet");

    // gattling exchanges MTU as client, offering 247; bumble's server answers 517.
    let client = GattClient::new(conn.clone(), ClientOptions { mtu: Some(247) }).await.expect("client");
    assert_eq!(client.mtu(), 247);
    assert_eq!(conn.att_mtu(), 247);
    assert_eq!(host.att_mtu(handle), Some(247));
    assert_eq!(server.mtu(handle), 247, "the server role sees the bearer's MTU");
    // bumble took 247 from our request, on its one bearer too.
    assert_eq!(periph.expect("mtu", STEP).await["mtu"], 247);
    assert_eq!(periph.expect("mtu_ready", STEP).await["mtu"], 247);

    // bumble, as client on the same link, reads our 200-byte value with ONE Read Request.
    let read = periph.expect("read", STEP).await;
    assert_eq!(read["uuid"], uuid_arg.as_str(), "{read}");
    assert_eq!(read["handle"], served.value_handle(), "{read}");
    assert_eq!(read["mtu"], 247, "{read}");
    assert_eq!(read["length"], 200, "the whole value in one Read Response at ATT_MTU 247: {read}");
    assert_eq!(read["value"], hexs(&value), "{read}");
    periph.expect("done", STEP).await;

    // The bearer still serves gattling's client afterwards, at the same MTU.
    let name = client.read_by_uuid(1, 0xFFFF, Uuid::U16(0x2A00)).await.expect("read bumble's device name");
    assert_eq!(name.len(), 1, "{name:?}");
    assert_eq!(name[0].1, b"bumble-mtu-reader");
    assert_eq!((client.mtu(), server.mtu(handle)), (247, 247));

    assert_eq!(client.disconnect().await.expect("disconnect"), status::LOCAL_HOST_TERMINATED);
    let d = periph.expect("disconnected", STEP).await;
    assert_eq!((d["reason"].as_u64(), d["by"].as_str()), (Some(status::REMOTE_USER_TERMINATED as u64), Some("remote")));
    periph.finish().await;
}

on_each_controller!(gattling_client_mtu_is_the_servers_mtu_too);

/// The seed's five ATT_LIST examples, verbatim (`../shared/seeds/004_73ba63f8e15c7bc6.txt`):
/// 16-bit service FEE7, 128-bit service, the FEC7 write channel, the 128-bit write channel, the
/// indicate channel with its CCCD (the seed calls it "notify" but its byte 0x20 is Indicate).
mod seed {
    pub const EX1: &str = "0c 00 02 00 28 02 e7 fe";
    pub const EX2: &str = "0c 00 02 00 28 10 0f 0e 0d 0c 0b 0a 09 08 07 06 05 04 03 02 01 00";
    pub const EX3: &str =
        "0d 00 02 03 28 01 0c\n0e 00 02 c7 fe 14 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00";
    pub const EX4: &str = "0d 00 02 03 28 01 0c\n0e 00 10 ff ee dd cc bb aa 99 88 77 66 55 44 33 22 11 00 14 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00";
    pub const EX5: &str = "0d 00 02 03 28 01 20\n0e 00 02 c7 fe 14 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00\n0f 00 02 02 29 02 00 00";
    pub const SERVICE_128: &str = "00010203-0405-0607-0809-0A0B0C0D0E0F";
    pub const CHAR_128: &str = "00112233-4455-6677-8899-AABBCCDDEEFF";
}

/// A gattling host serving an ATT_LIST table (the seed's examples composed with the terminator)
/// and advertising `name`.
async fn att_list_host(rc: &Bed, name: &str, parts: &[&str]) -> (Host, gattling::gatt::GattServer) {
    let text = format!("{}\n00 00\n", parts.join("\n"));
    let list = gattling::gatt::AttList::parse_hex(&text).unwrap_or_else(|e| panic!("{parts:?}: {e}"));
    let host = host_on(rc).await;
    let server = host.gatt_server_with(list.database(name, 0).expect("database"));
    advertise_name(&host, name).await;
    (host, server)
}

/// Runs bumble_gatt_client.py against `name` with `extra` options; returns the client after its
/// discovery event and that event's services.
async fn bumble_discovers(rc: &Bed, name: &str, extra: &[&str]) -> (Peer, Vec<serde_json::Value>) {
    let transport = rc.transport();
    let mut args = vec!["--transport", transport.as_str(), "--name", name, "--timeout", "30"];
    args.extend_from_slice(extra);
    let mut client = Peer::start("bumble_gatt_client.py", &args);
    client.expect("connected", STEP).await;
    let disc = client.expect("discovery", STEP).await;
    let services = disc["services"].as_array().expect("services").clone();
    (client, services)
}

/// An expected characteristic: UUID, declaration handle, value handle, properties, descriptors
/// (UUID, handle).
type WantChar<'a> = (&'a str, u64, u64, u64, &'a [(&'a str, u64)]);

/// The table's service as bumble discovered it: exact handles, UUID, characteristics with their
/// declaration and value handles, properties and descriptors.
fn assert_service(services: &[serde_json::Value], uuid: &str, end: u64, chars: &[WantChar<'_>]) {
    let s =
        services.iter().find(|s| s["start"] == 0x0C).unwrap_or_else(|| panic!("no service at 0x000C: {services:?}"));
    assert_eq!(s["uuid"], uuid, "{s}");
    assert_eq!(s["end"], end, "{s}");
    assert_eq!(s["primary"], true, "{s}");
    let got = s["characteristics"].as_array().expect("characteristics");
    assert_eq!(got.len(), chars.len(), "{s}");
    for (c, (cu, handle, value_handle, props, descs)) in got.iter().zip(chars) {
        assert_eq!(c["uuid"], *cu, "{c}");
        assert_eq!(c["handle"], *handle, "{c}");
        assert_eq!(c["value_handle"], *value_handle, "{c}");
        assert_eq!(c["properties"], *props, "{c}");
        let d: Vec<(String, u64)> = c["descriptors"]
            .as_array()
            .expect("descriptors")
            .iter()
            .map(|d| (d["uuid"].as_str().unwrap_or_default().to_string(), d["handle"].as_u64().unwrap_or(0)))
            .collect();
        let want: Vec<(String, u64)> = descs.iter().map(|(u, h)| (u.to_string(), *h)).collect();
        assert_eq!(d, want, "{c}");
    }
    // The built-ins sit below the table: GAP and GATT, nothing between them and 0x000C.
    let below: Vec<&str> =
        services.iter().filter(|s| s["start"].as_u64() < Some(0x0C)).filter_map(|s| s["uuid"].as_str()).collect();
    assert_eq!(below, ["1800", "1801"]);
}

async fn the_seed_att_list_examples_are_served_exactly(rc: Bed) {
    use gattling::gatt::ServerEvent;
    // Examples 1 and 2: the services alone.
    for (name, part, uuid) in [("attl-ex1", seed::EX1, "FEE7"), ("attl-ex2", seed::EX2, seed::SERVICE_128)] {
        let (_host, _server) = att_list_host(&rc, name, &[part]).await;
        let (client, services) = bumble_discovers(&rc, name, &[]).await;
        assert_service(&services, uuid, 0x0C, &[]);
        client.finish().await;
    }
    // Example 4: the 128-bit write channel under example 2's service.
    let (_host, _server) = att_list_host(&rc, "attl-ex4", &[seed::EX2, seed::EX4]).await;
    let (client, services) = bumble_discovers(&rc, "attl-ex4", &[]).await;
    assert_service(&services, seed::SERVICE_128, 0x0E, &[(seed::CHAR_128, 0x0D, 0x0E, 0x0C, &[])]);
    client.finish().await;

    // Example 3: the FEC7 write channel; a write is stored and read back by a second connection.
    let (host, server) = att_list_host(&rc, "attl-ex3", &[seed::EX1, seed::EX3]).await;
    let mut events = server.events();
    let mut notes = host.notifications();
    let (mut client, services) = bumble_discovers(&rc, "attl-ex3", &["--write", "FEC7=c0ffee0102"]).await;
    assert_service(&services, "FEE7", 0x0E, &[("FEC7", 0x0D, 0x0E, 0x0C, &[])]);
    assert_eq!(client.expect("write", STEP).await["handle"], 0x0E);
    let written = tokio::time::timeout(STEP, events.next()).await.expect("write event in time").expect("event");
    assert!(
        matches!(&written, ServerEvent::Written { value_handle: 0x0E, value, .. } if value == &[0xc0, 0xff, 0xee, 1, 2]),
        "{written:?}"
    );
    client.expect("done", STEP).await;
    client.finish().await;
    // Advertising stopped with the connection: advertise again once the link is down.
    tokio::time::timeout(STEP, async {
        while !matches!(notes.recv().await, Ok(gattling::Notification::Disconnected { .. })) {}
    })
    .await
    .expect("disconnection seen");
    advertise_name(&host, "attl-ex3").await;
    let (mut client, _) = bumble_discovers(&rc, "attl-ex3", &["--read", "FEC7"]).await;
    let r = client.expect("read", STEP).await;
    assert_eq!((r["handle"].as_u64(), r["value"].as_str()), (Some(0x0E), Some("c0ffee0102")));
    client.expect("done", STEP).await;
    client.finish().await;

    // Example 5: the indicate channel; the client subscribes and receives the server's indication.
    let (_host, server) = att_list_host(&rc, "attl-ex5", &[seed::EX1, seed::EX5]).await;
    let mut events = server.events();
    let (mut client, services) = bumble_discovers(&rc, "attl-ex5", &["--indicate", "FEC7:1"]).await;
    assert_service(&services, "FEE7", 0x0F, &[("FEC7", 0x0D, 0x0E, 0x20, &[("2902", 0x0F)])]);
    assert_eq!(client.expect("subscribed", STEP).await["mode"], "indicate");
    let conn = match tokio::time::timeout(STEP, events.next()).await.expect("subscription in time").expect("event") {
        ServerEvent::Subscribed { conn, value_handle: 0x0E, cccd: 2 } => conn,
        other => panic!("unexpected {other:?}"),
    };
    let ch = server.characteristic_at(0x0E).expect("FEC7");
    assert!(ch.indicate(conn, b"indicated"), "the indication is sent");
    let ind = client.expect("indication", STEP).await;
    assert_eq!((ind["handle"].as_u64(), ind["value"].as_str()), (Some(0x0E), Some(hex(b"indicated").as_str())));
    // (No assertion on the Confirmed event: the client disconnects right after its last value,
    // which may race its confirmation.)
    client.expect("done", STEP).await;
    client.finish().await;
}

on_each_controller!(the_seed_att_list_examples_are_served_exactly);
