//! Scripted AT sessions through `exec::serve` over an in-memory duplex, on the in-process
//! virtual radio: byte-exact system responses, the GATT client flow of the u-blox user guide
//! against a gattling GATT server, and an AT-built GATT server used by a gattling client.

use gattling::gatt::{CharacteristicDef, Permissions, Properties, ServiceDef};
use gattling::gatt_client::{ClientOptions, GattClient};
use gattling::proto::Uuid;
use gattling::{AdvertisingOptions, ConnectOptions, Host, HostOptions};
use gattling_at::exec::Options;
use tokio::io::AsyncWriteExt;

mod common;

use common::*;

#[tokio::test]
async fn system_commands_answer_byte_exact() {
    let mut at = At::on("at-system").await;
    at.exchange("AT\r", "AT\r\r\nOK\r\n").await;
    at.exchange("at\r\n", "at\r\n\r\nOK\r\n").await;
    at.exchange("AT+FOO\r", "AT+FOO\r\r\nERROR\r\n").await;
    at.exchange("AT+USYEE=1\r", "AT+USYEE=1\r\r\nOK\r\n").await;
    at.exchange("AT+FOO\r", "AT+FOO\r\r\nERROR:32\r\n").await;
    at.exchange("AT+USYEC?\r", "AT+USYEC?\r\r\n+USYEC:32\r\n\r\nOK\r\n").await;
    at.exchange("ATE0\r", "ATE0\r\r\nOK\r\n").await;
    at.exchange("ATE?\r", "\r\n0\r\n\r\nOK\r\n").await;
    at.exchange("AT+USYEE?\r", "\r\n+USYEE:1\r\n\r\nOK\r\n").await;
    at.exchange("AT+GMI\r", "\r\nu-blox\r\n\r\nOK\r\n").await;
    at.exchange("AT+CGMI\r", "\r\nu-blox\r\n\r\nOK\r\n").await;
    at.exchange("AT+CGMM\r", "\r\nNORA-W36\r\n\r\nOK\r\n").await;
    at.send("ATI9\r").await;
    let l = at.line().await;
    assert!(l.starts_with("\"3.4.0-gattling-") && l.ends_with('"') && l.contains("\",\""), "{l}");
    at.expect("\r\nOK\r\n").await;
    at.exchange("ATS3?\r", "\r\n13\r\n\r\nOK\r\n").await;
    at.exchange("ATS4=200\r", "\r\nERROR:36\r\n").await;
    at.exchange("AT+UBTM?\r", "\r\n+UBTM:3\r\n\r\nOK\r\n").await;
    at.exchange("AT+UBTLN=\"ab\\\"c\"\r", "\r\nOK\r\n").await;
    at.exchange("AT+UBTLN?\r", "\r\n+UBTLN:\"ab\\\"c\"\r\n\r\nOK\r\n").await;
    at.exchange("AT+UBTM=7\r", "\r\nERROR:39\r\n").await;
    at.exchange("AT+UBTGR=0,1\r", "\r\nERROR:16\r\n").await;
    at.exchange("AT+UBTGR=0\r", "\r\nERROR:34\r\n").await;
    at.exchange("AT+UBTGW=0,1,ABC\r", "\r\nERROR:43\r\n").await;
    at.exchange("AT+UBTC=12345\r", "\r\nERROR:42\r\n").await;
    at.exchange("AT+UBTALS=100,50\r", "\r\nERROR:33\r\n").await;
    at.exchange("AT+UBTALS=100,200\r", "\r\nOK\r\n").await;
    at.exchange("AT+UBTALS?\r", "\r\n+UBTALS:100,200\r\n\r\nOK\r\n").await;
    at.exchange("AT+UBTCL\r", "\r\nOK\r\n").await;
    at.exchange("AT+UBTBGD?\r", "\r\n+UBTBGD:0\r\n\r\nOK\r\n").await;
}

#[tokio::test]
async fn settings_survive_a_restart_after_at_w() {
    let dir = std::env::temp_dir().join(format!("gattling-at-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("settings.txt");
    let _ = std::fs::remove_file(&path);
    let options =
        Options { transport: "virtual:at-settings".into(), settings: Some(path.clone()), ..Options::default() };
    let mut at = At::start(options).await;
    at.exchange("ATE0\r", "ATE0\r\r\nOK\r\n").await;
    at.exchange("AT+USYEE=1\r", "\r\nOK\r\n").await;
    at.exchange("AT+UBTLN=\"stored\"\r", "\r\nOK\r\n").await;
    at.exchange("AT&W\r", "\r\nOK\r\n").await;
    at.exchange("AT+UBTLN=\"lost\"\r", "\r\nOK\r\n").await;
    at.exchange("AT+CPWROFF\r", "\r\nOK\r\n\r\n+STARTUP\r\n").await;
    // Echo stays off, extended errors on, the stored name is back.
    at.exchange("AT+FOO\r", "\r\nERROR:32\r\n").await;
    at.exchange("AT+UBTLN?\r", "\r\n+UBTLN:\"stored\"\r\n\r\nOK\r\n").await;
    let text = std::fs::read_to_string(&path).expect("settings file");
    assert!(text.contains("echo=0") && text.contains("local_name=\"stored\""), "{text}");
    // The Bluetooth mode takes effect after AT&W and a restart: peripheral only cannot scan.
    at.exchange("AT+UBTM=2\r", "\r\nOK\r\n").await;
    at.exchange("AT+UBTD=0,1,100\r", "\r\nOK\r\n").await;
    at.exchange("AT&W\r", "\r\nOK\r\n").await;
    at.exchange("AT+CPWROFF\r", "\r\nOK\r\n\r\n+STARTUP\r\n").await;
    at.exchange("AT+UBTM?\r", "\r\n+UBTM:2\r\n\r\nOK\r\n").await;
    at.exchange("AT+UBTD=0,1,100\r", "\r\nERROR:20\r\n").await;
    at.exchange("AT+UBTAL\r", "\r\nOK\r\n").await;
    // Factory restore takes effect at the next restart.
    at.exchange("AT+USYFR\r", "\r\nOK\r\n").await;
    at.exchange("AT+CPWROFF\r", "\r\nOK\r\n\r\n+STARTUP\r\n").await;
    at.exchange("AT\r", "AT\r\r\nOK\r\n").await;
    let _ = std::fs::remove_dir_all(&dir);
}

const HRS: u16 = 0x180D;
const HRM: u16 = 0x2A37;
const RW: Uuid = Uuid::from_be_u128(0x6a77_2001_9d1e_4b1c_a0a5_4b5c_5e7a_d0c0);
const SECRET: Uuid = Uuid::from_be_u128(0x6a77_2002_9d1e_4b1c_a0a5_4b5c_5e7a_d0c0);

/// A gattling peripheral with a heart-rate-like service; returns the host, the notifier and
/// the handles (service start, HRM value, HRM CCCD, RW value, secret value).
async fn heart_rate_peer(radio: &str) -> (Host, gattling::gatt::Characteristic, [u16; 5]) {
    let host = Host::open_with(&format!("virtual:{radio}"), HostOptions::default()).await.expect("peer");
    let server = host.gatt_server("peer", 0);
    let svc = server
        .add_service(
            ServiceDef::primary(HRS)
                .characteristic(CharacteristicDef::new(HRM, Properties::READ | Properties::NOTIFY, &[0x00, 60]))
                .characteristic(CharacteristicDef::new(RW, Properties::READ | Properties::WRITE, b"hello"))
                .characteristic(
                    CharacteristicDef::new(SECRET, Properties::READ, b"no").permissions(Permissions::empty()),
                ),
        )
        .expect("service");
    let hrm = svc.characteristics[0].clone();
    let handles = [
        svc.handle,
        hrm.value_handle(),
        hrm.value_handle() + 1,
        svc.characteristics[1].value_handle(),
        svc.characteristics[2].value_handle(),
    ];
    host.advertise(&AdvertisingOptions { auto_restart: true, ..AdvertisingOptions::default() }).await.expect("adv");
    (host, hrm, handles)
}

#[tokio::test]
async fn the_user_guide_heart_rate_flow_and_every_client_command() {
    let (peer, hrm, [svc, hrm_vh, cccd, rw, secret]) = heart_rate_peer("at-client").await;
    let mut at = At::on("at-client").await;
    let mut urcs = Vec::new();
    at.exchange("ATE0\r", "ATE0\r\r\nOK\r\n").await;
    assert_eq!(at.cmd("AT+USYEE=1", &mut urcs).await, ["OK"]);
    let addr = at_addr(&peer);
    assert_eq!(at.cmd(&format!("AT+UBTC={addr}"), &mut urcs).await, ["OK"]);
    assert_eq!(at.urc("+UEBTC:", &mut urcs).await, format!("+UEBTC:0,{addr}"));
    assert_eq!(at.cmd("AT+UBTCL", &mut urcs).await, [format!("+UBTCL:0,{addr}"), "OK".into()]);
    assert_eq!(at.cmd("AT+UBTCST=0,3", &mut urcs).await, ["+UBTCST:3,247", "OK"]);
    assert_eq!(at.cmd("AT+UBTCST=0,7", &mut urcs).await, ["+UBTCST:7,1", "OK"]);
    // LE defaults until the controller reports a change: 27-octet payloads, no DLE, LE 1M.
    assert_eq!(at.cmd("AT+UBTCST=0,4", &mut urcs).await, ["+UBTCST:4,27", "OK"]);
    assert_eq!(at.cmd("AT+UBTCST=0,8", &mut urcs).await, ["+UBTCST:8,1", "OK"]);
    // The virtual radio hears every link at -40 dBm (HCI Read RSSI).
    assert_eq!(at.cmd("AT+UBTRSS=0", &mut urcs).await, ["+UBTRSS:-40", "OK"]);
    assert_eq!(at.cmd("AT+UBTRSS=5", &mut urcs).await, ["ERROR:16"]);

    let services = at.cmd("AT+UBTGPSD=0", &mut urcs).await;
    let line = services.iter().find(|l| l.ends_with(",180D")).expect("180D listed").clone();
    let f: Vec<&str> = line.trim_start_matches("+UBTGPSD:").split(',').collect();
    assert_eq!(f[0], "0");
    assert_eq!(f[1], svc.to_string());
    let end = f[2].to_string();
    assert_eq!(services.last().map(String::as_str), Some("OK"));
    assert_eq!(at.cmd("AT+UBTGPSDU=0,180D", &mut urcs).await, [format!("+UBTGPSDU:0,{svc},{end}"), "OK".into()]);

    let chars = at.cmd(&format!("AT+UBTGSCD=0,{svc},{end}"), &mut urcs).await;
    assert_eq!(chars[0], format!("+UBTGSCD:0,{},12,{hrm_vh},2A37", hrm_vh - 1));
    assert_eq!(chars[1], format!("+UBTGSCD:0,{},0A,{rw},6A7720019D1E4B1CA0A54B5C5E7AD0C0", rw - 1));
    assert_eq!(chars.len(), 4);
    assert_eq!(
        at.cmd(&format!("AT+UBTGCDD=0,{hrm_vh},{}", rw - 2), &mut urcs).await,
        [format!("+UBTGCDD:0,{},{cccd},2902", hrm_vh - 1), "OK".into()]
    );
    // The peer learns of the subscription (its subscribe handler), then notifies.
    let (subscribed_tx, mut subscribed) = tokio::sync::mpsc::unbounded_channel();
    hrm.on_subscribe(move |_, cccd| {
        let _ = subscribed_tx.send(cccd);
    });
    assert_eq!(at.cmd(&format!("AT+UBTGCCW=0,{cccd},1"), &mut urcs).await, ["OK"]);
    let cccd_value = tokio::time::timeout(DEADLINE, subscribed.recv()).await.expect("subscription seen in time");
    assert_eq!(cccd_value, Some(1));
    let peer_conn = peer.connections()[0].handle;
    assert_eq!(hrm.cccd(peer_conn), 1);
    for bpm in [60u8, 61, 62] {
        assert!(hrm.notify(peer_conn, &[0x00, bpm]));
    }
    for bpm in [60u8, 61, 62] {
        assert_eq!(at.urc("+UEBTGCN:", &mut urcs).await, format!("+UEBTGCN:0,{hrm_vh},00{bpm:02X}"));
    }

    assert_eq!(
        at.cmd(&format!("AT+UBTGR=0,{rw}"), &mut urcs).await,
        [format!("+UBTGR:0,{rw},68656C6C6F"), "OK".into()]
    );
    assert_eq!(at.cmd(&format!("AT+UBTGW=0,{rw},0102"), &mut urcs).await, ["OK"]);
    assert_eq!(at.cmd(&format!("AT+UBTGR=0,{rw}"), &mut urcs).await, [format!("+UBTGR:0,{rw},0102"), "OK".into()]);
    assert_eq!(at.cmd(&format!("AT+UBTGWNR=0,{rw},03"), &mut urcs).await, ["OK"]);
    assert_eq!(at.cmd(&format!("AT+UBTGR=0,{rw}"), &mut urcs).await, [format!("+UBTGR:0,{rw},03"), "OK".into()]);
    assert_eq!(
        at.cmd(&format!("AT+UBTGRU=0,1,65535,{}", "6A7720019D1E4B1CA0A54B5C5E7AD0C0"), &mut urcs).await,
        [format!("+UBTGRU:0,{rw},03"), "OK".into()]
    );
    // Write long in two parts, then final.
    let long: Vec<u8> = (0..100u8).collect();
    assert_eq!(at.cmd(&format!("AT+UBTGWL=0,{rw},{},1,1,0", hex(&long[..60])), &mut urcs).await, ["OK"]);
    assert_eq!(at.cmd(&format!("AT+UBTGWL=0,{rw},{},1,0,60", hex(&long[60..])), &mut urcs).await, ["OK"]);
    assert_eq!(
        at.cmd(&format!("AT+UBTGR=0,{rw}"), &mut urcs).await,
        [format!("+UBTGR:0,{rw},{}", hex(&long)), "OK".into()]
    );
    // Cancel drops the gathered parts.
    assert_eq!(at.cmd(&format!("AT+UBTGWL=0,{rw},AA,0,1,0"), &mut urcs).await, ["OK"]);
    assert_eq!(at.cmd(&format!("AT+UBTGWL=0,{rw},AA,0,2,0"), &mut urcs).await, ["OK"]);
    assert_eq!(
        at.cmd(&format!("AT+UBTGR=0,{rw}"), &mut urcs).await,
        [format!("+UBTGR:0,{rw},{}", hex(&long)), "OK".into()]
    );
    // A write from an offset: the peer (a gattling server) keeps the bytes before it and ends
    // the variable-length value after the written part.
    assert_eq!(at.cmd(&format!("AT+UBTGWL=0,{rw},AABB,0,0,10"), &mut urcs).await, ["OK"]);
    let expected: Vec<u8> = long[..10].iter().copied().chain([0xAA, 0xBB]).collect();
    assert_eq!(
        at.cmd(&format!("AT+UBTGR=0,{rw}"), &mut urcs).await,
        [format!("+UBTGR:0,{rw},{}", hex(&expected)), "OK".into()]
    );
    // ATT errors: Read Not Permitted (0x02) -> 92, Invalid Handle (0x01) -> 91.
    assert_eq!(at.cmd(&format!("AT+UBTGR=0,{secret}"), &mut urcs).await, ["ERROR:92"]);
    assert_eq!(at.cmd("AT+UBTGR=0,65000", &mut urcs).await, ["ERROR:91"]);
    assert_eq!(at.cmd("AT+UBTGR=1,3", &mut urcs).await, ["ERROR:16"]);
    assert_eq!(at.cmd("AT+USYEE=0", &mut urcs).await, ["OK"]);
    assert_eq!(at.cmd(&format!("AT+UBTGR=0,{secret}"), &mut urcs).await, ["ERROR"]);

    assert_eq!(at.cmd("AT+UBTDC=0", &mut urcs).await, ["OK"]);
    assert_eq!(at.urc("+UEBTDC:", &mut urcs).await, "+UEBTDC:0");
    assert_eq!(at.cmd("AT+UBTCL", &mut urcs).await, ["OK"]);
}

#[tokio::test]
async fn an_at_built_server_is_read_written_and_notifies() {
    let mut at = At::on("at-server").await;
    let mut urcs = Vec::new();
    at.exchange("ATE0\r", "ATE0\r\r\nOK\r\n").await;
    assert_eq!(at.cmd("AT+USYEE=1", &mut urcs).await, ["OK"]);
    let s = at.cmd("AT+UBTGS=180D", &mut urcs).await;
    let svc: u16 = s[0].trim_start_matches("+UBTGS:").parse().expect("service handle");
    let (hrm, cccd) = (svc + 2, svc + 3);
    assert_eq!(at.cmd("AT+UBTGC=2A37,1A,1,1,0048", &mut urcs).await, [format!("+UBTGC:{hrm},{cccd}"), "OK".into()]);
    let hcc = cccd + 2;
    assert_eq!(at.cmd("AT+UBTGHCC=2A38,02,1,1", &mut urcs).await, [format!("+UBTGHCC:{hcc},0"), "OK".into()]);
    assert_eq!(at.cmd("AT+UBTGD=2901,1,1,6869,4", &mut urcs).await, [format!("+UBTGD:{}", hcc + 1), "OK".into()]);
    assert_eq!(at.cmd("AT+UBTGSA", &mut urcs).await, ["OK"]);
    assert_eq!(at.cmd("AT+UBTAL", &mut urcs).await, ["OK"]);

    // A gattling central finds the module by its address and connects.
    let central = Host::open("virtual:at-server").await.expect("central");
    // A central with a GATT server of its own, as phones and bumble have: it answers the
    // module's Exchange MTU.
    let _own = central.gatt_server("central", 0);
    let mut scan = central.scan(gattling::ScanOptions::default()).await.expect("scan");
    let report = tokio::time::timeout(DEADLINE, scan.next()).await.expect("adv").expect("report");
    drop(scan);
    let conn = central.connect(report.address, ConnectOptions::default()).await.expect("connect");
    let client = GattClient::new(conn, ClientOptions::default()).await.expect("client");
    let up = at.urc("+UEBTC:", &mut urcs).await;
    assert!(up.starts_with("+UEBTC:0,"), "{up}");

    let chars = client.discover_characteristics(svc, 0xFFFF, None).await.expect("chars");
    assert_eq!(chars[0].value_handle, hrm);
    assert_eq!(chars[0].uuid, Uuid::U16(0x2A37));
    assert_eq!(chars[1].value_handle, hcc);
    assert_eq!(client.read(hrm).await.expect("read"), [0x00, 0x48]);
    client.write(hrm, &[1, 2, 3]).await.expect("write");
    assert_eq!(at.urc("+UEBTGCW:", &mut urcs).await, format!("+UEBTGCW:0,{hrm},010203,1"));
    client.write_without_response(hrm, &[4]).await.expect("write cmd");
    assert_eq!(at.urc("+UEBTGCW:", &mut urcs).await, format!("+UEBTGCW:0,{hrm},04,0"));
    client.write_long(hrm, &[5, 6]).await.expect("write long");
    assert_eq!(at.urc("+UEBTGCW:", &mut urcs).await, format!("+UEBTGCW:0,{hrm},0506,2"));

    let mut values = client.notifications();
    client.write(cccd, &[1, 0]).await.expect("subscribe");
    assert_eq!(at.urc("+UEBTGCW:", &mut urcs).await, format!("+UEBTGCW:0,{cccd},0100,1"));
    assert_eq!(at.cmd(&format!("AT+UBTGNS=0,{hrm},0050"), &mut urcs).await, ["OK"]);
    let v = tokio::time::timeout(DEADLINE, values.next()).await.expect("in time").expect("value");
    assert_eq!((v.handle, v.value), (hrm, vec![0x00, 0x50]));
    assert_eq!(client.read(hrm).await.expect("read"), [0x00, 0x50]);
    // Not subscribed to indications: the CCCD is not configured for them.
    assert_eq!(at.cmd(&format!("AT+UBTGIS=0,{hrm},01"), &mut urcs).await, ["ERROR:111"]);

    // A host-controlled read: +UEBTGRR, answered by AT+UBTGRRR.
    let reader = client.clone();
    let read = tokio::spawn(async move { reader.read(hcc).await });
    assert_eq!(at.urc("+UEBTGRR:", &mut urcs).await, format!("+UEBTGRR:0,{hcc}"));
    assert_eq!(at.cmd("AT+UBTGRRR=0,CAFE", &mut urcs).await, ["OK"]);
    assert_eq!(read.await.expect("task").expect("read"), [0xCA, 0xFE]);
    let reader = client.clone();
    let read = tokio::spawn(async move { reader.read(hcc).await });
    assert_eq!(at.urc("+UEBTGRR:", &mut urcs).await, format!("+UEBTGRR:0,{hcc}"));
    assert_eq!(at.cmd("AT+UBTGRRRE=0,81", &mut urcs).await, ["OK"]);
    let err = read.await.expect("task").expect_err("rejected");
    assert!(err.to_string().contains("129") || err.to_string().contains("0x81"), "{err}");

    // The descriptor takes writes up to its max_len (4), no longer.
    client.write(hcc + 1, b"abcd").await.expect("4 bytes fit");
    assert_eq!(client.read(hcc + 1).await.expect("read back"), b"abcd");
    let err = client.write(hcc + 1, b"abcde").await.expect_err("5 bytes do not");
    assert!(err.to_string().contains("Invalid Attribute Value Length"), "{err}");

    // AT+UBTGAV sets the value silently.
    assert_eq!(at.cmd(&format!("AT+UBTGAV={hrm},07"), &mut urcs).await, ["OK"]);
    assert_eq!(client.read(hrm).await.expect("read"), [0x07]);
    assert_eq!(at.cmd("AT+UBTGRRR=0,00", &mut urcs).await, ["ERROR:11"]);
}

#[tokio::test]
async fn discovery_reports_each_advertiser_with_its_name() {
    let peer = Host::open("virtual:at-scan").await.expect("peer");
    let data = gattling::proto::gap::ad::AdvDataBuilder::new()
        .flags(gattling::proto::gap::ad::flags::LE_GENERAL_ONLY)
        .name("hr-peer")
        .build()
        .expect("ad");
    peer.advertise(&AdvertisingOptions { data: data.clone(), ..AdvertisingOptions::default() }).await.expect("adv");
    let addr = at_addr(&peer);
    let mut at = At::on("at-scan").await;
    let mut urcs = Vec::new();
    at.exchange("ATE0\r", "ATE0\r\r\nOK\r\n").await;
    let lines = at.cmd("AT+UBTD=1,1,500", &mut urcs).await;
    assert_eq!(lines, [format!("+UBTD:{addr},-40,\"hr-peer\",1,{}", hex(&data)), "OK".into()], "{lines:?}");
    assert_eq!(at.cmd("AT+UBTD=1,0,50000", &mut urcs).await, ["ERROR"]);
    assert_eq!(at.cmd("AT+UBTBGD=1,1,1", &mut urcs).await, ["OK"]);
    assert_eq!(at.cmd("AT+UBTBGD?", &mut urcs).await, ["+UBTBGD:1,1,1,1,0", "OK"]);
    let found = at.urc("+UEBTBGD:", &mut urcs).await;
    assert!(found.starts_with(&format!("+UEBTBGD:{addr},")), "{found}");
    assert_eq!(at.cmd("AT+UBTBGDS", &mut urcs).await, ["OK"]);
    assert_eq!(at.cmd("AT+UBTBGD?", &mut urcs).await, ["+UBTBGD:0", "OK"]);
}

#[tokio::test]
async fn indications_are_confirmed_with_uebtgic_and_garbage_resynchronises() {
    let mut at = At::on("at-ind").await;
    let mut urcs = Vec::new();
    at.exchange("ATE0\r", "ATE0\r\r\nOK\r\n").await;
    assert_eq!(at.cmd("AT+USYEE=1", &mut urcs).await, ["OK"]);
    // Binary garbage and an overlong line are rejected; the next command works.
    at.tx.write_all(b"\x01\x02garbage\xff\x80\r").await.expect("write");
    let l = at.line().await;
    assert!(l.starts_with("ERROR:"), "{l}");
    at.send(&format!("AT+{}\r", "X".repeat(5000))).await;
    let l = at.line().await;
    assert!(l.starts_with("ERROR:"), "{l}");
    assert_eq!(at.cmd("AT", &mut urcs).await, ["OK"]);

    let s = at.cmd("AT+UBTGS=7905F431B5CE4E99A40F4B1E122D00D0", &mut urcs).await;
    let svc: u16 = s[0].trim_start_matches("+UBTGS:").parse().expect("handle");
    let (vh, cccd) = (svc + 2, svc + 3);
    assert_eq!(
        at.cmd("AT+UBTGC=7905F431B5CE4E99A40F4B1E122D00D1,22,1,1,00", &mut urcs).await,
        [format!("+UBTGC:{vh},{cccd}"), "OK".into()]
    );
    assert_eq!(at.cmd("AT+UBTGSA", &mut urcs).await, ["OK"]);
    assert_eq!(at.cmd("AT+UBTAL", &mut urcs).await, ["OK"]);
    let central = Host::open("virtual:at-ind").await.expect("central");
    let _own = central.gatt_server("central", 0);
    let mut scan = central.scan(gattling::ScanOptions::default()).await.expect("scan");
    let report = tokio::time::timeout(DEADLINE, scan.next()).await.expect("adv").expect("report");
    drop(scan);
    let conn = central.connect(report.address, ConnectOptions::default()).await.expect("connect");
    let client = GattClient::new(conn, ClientOptions::default()).await.expect("client");
    at.urc("+UEBTC:0,", &mut urcs).await;
    let services = client.discover_services_by_uuid(Uuid::from_be_u128(0x7905F431B5CE4E99A40F4B1E122D00D0)).await;
    assert_eq!(services.expect("found")[0].start, svc);
    let mut values = client.notifications();
    client.write(cccd, &[2, 0]).await.expect("indications on");
    assert_eq!(at.urc("+UEBTGCW:", &mut urcs).await, format!("+UEBTGCW:0,{cccd},0200,1"));
    assert_eq!(at.cmd(&format!("AT+UBTGIS=0,{vh},AB"), &mut urcs).await, ["OK"]);
    let v = tokio::time::timeout(DEADLINE, values.next()).await.expect("in time").expect("value");
    assert_eq!(v.value, [0xAB]);
    assert_eq!(at.urc("+UEBTGIC:", &mut urcs).await, format!("+UEBTGIC:0,{vh}"));
    assert_eq!(at.cmd(&format!("AT+UBTGNS=0,{vh},AB"), &mut urcs).await, ["ERROR:111"]);
    // The central disconnects: +UEBTDC.
    client.disconnect().await.expect("disconnect");
    assert_eq!(at.urc("+UEBTDC:", &mut urcs).await, "+UEBTDC:0");
    assert_eq!(at.cmd(&format!("AT+UBTGIS=0,{vh},AB"), &mut urcs).await, ["ERROR:16"]);
}

#[tokio::test]
async fn an_att_list_table_loaded_by_at_ubtgattl_is_served() {
    let mut at = At::on("at-att-list").await;
    let mut urcs = Vec::new();
    at.exchange("ATE0\r", "ATE0\r\r\nOK\r\n").await;
    assert_eq!(at.cmd("AT+USYEE=1", &mut urcs).await, ["OK"]);
    // The seed's example 1 + example 3 (the FEC7 write channel), in two parts.
    let part1 = "0C0002002802E7FE0D0002032801 0C";
    let part2 = "0E0002C7FE140000000000000000000000000000000000000000 0000";
    // A bad table (the value record is missing) is refused and explained by the read form.
    assert_eq!(at.cmd("AT+UBTGATTL=0C0002002802E7FE0D00020328010C0000", &mut urcs).await, ["ERROR:5"]);
    assert_eq!(
        at.cmd("AT+UBTGATTL?", &mut urcs).await,
        ["+UBTGATTL:8,13,\"characteristic declaration is not followed by its value record\"", "OK"]
    );
    assert_eq!(at.cmd("AT+UBTGATTL=0C0", &mut urcs).await, ["ERROR:43"]);
    assert_eq!(at.cmd(&format!("AT+UBTGATTL={},1", part1.replace(' ', "")), &mut urcs).await, ["OK"]);
    assert_eq!(at.cmd(&format!("AT+UBTGATTL={}", part2.replace(' ', "")), &mut urcs).await, ["OK"]);
    assert_eq!(at.cmd("AT+UBTGATTL?", &mut urcs).await, ["+UBTGATTL:-1,0,\"\"", "OK"]);
    assert_eq!(at.cmd("AT+UBTAL", &mut urcs).await, ["OK"]);

    let central = Host::open("virtual:at-att-list").await.expect("central");
    let _own = central.gatt_server("central", 0);
    let mut scan = central.scan(gattling::ScanOptions::default()).await.expect("scan");
    let report = tokio::time::timeout(DEADLINE, scan.next()).await.expect("adv").expect("report");
    drop(scan);
    let conn = central.connect(report.address, ConnectOptions::default()).await.expect("connect");
    let client = GattClient::new(conn, ClientOptions::default()).await.expect("client");
    let services = client.discover_services().await.expect("services");
    let fee7 = services.iter().find(|s| s.uuid == Uuid::U16(0xFEE7)).expect("FEE7");
    assert_eq!((fee7.start, fee7.end), (0x0C, 0x0E));
    let chars = client.discover_characteristics(0x0C, 0x0E, None).await.expect("chars");
    assert_eq!((chars[0].handle, chars[0].value_handle, chars[0].uuid), (0x0D, 0x0E, Uuid::U16(0xFEC7)));
    assert_eq!(chars[0].properties, 0x0C);
    client.write(0x0E, b"hello").await.expect("write");
    assert_eq!(at.urc("+UEBTGCW:", &mut urcs).await, "+UEBTGCW:0,14,68656C6C6F,1");
    assert_eq!(client.read(0x0E).await.expect("read"), b"hello");
}
