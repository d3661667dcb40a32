//! Security and bonding over AT (NORA-W36 3.4.0): AT+UBTIOC / AT+UBTBSM / AT+UBTPM settings
//! byte-exact and stored by AT&W, a gattling peer pairing with the module by passkey entry
//! (`+UEBTUPE` answered with AT+UBTUPE) and numeric comparison started by AT+UBTB (`+UEBTUC`
//! answered with AT+UBTUC), `+UEBTB` outcomes, AT+UBTBDL and AT+UBTUB.

mod common;

use common::*;
use gattling::proto::smp::pdu::Reason;
use gattling::security::{FixedAnswers, IoCapability, SecurityOptions};
use gattling::{AdvertisingOptions, ConnectOptions, Connection, Error, Host, HostOptions};
use gattling_at::exec::Options;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;

fn settings_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gattling-at-sec-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("settings.txt");
    let _ = std::fs::remove_file(&path);
    path
}

/// A module on `radio` whose settings file is fresh, echo off and extended errors on.
async fn module(radio: &str) -> (At, PathBuf) {
    let path = settings_file(radio);
    let options = Options { transport: format!("virtual:{radio}"), settings: Some(path.clone()), ..Options::default() };
    let mut at = At::start(options).await;
    at.exchange("ATE0\r", "ATE0\r\r\nOK\r\n").await;
    at.exchange("AT+USYEE=1\r", "\r\nOK\r\n").await;
    (at, path)
}

/// A gattling peer with this IO capability, asking for MITM protection unless it has no IO;
/// the numbers it is shown arrive on the receiver.
async fn peer(radio: &str, io: IoCapability, confirm: bool) -> (Host, mpsc::UnboundedReceiver<u32>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let delegate = FixedAnswers {
        passkey: None,
        confirm,
        on_display: Some(Box::new(move |n| {
            let _ = tx.send(n);
        })),
    };
    let mitm = io != IoCapability::NoInputNoOutput;
    let security =
        SecurityOptions { io_capability: io, mitm, delegate: Arc::new(delegate), ..SecurityOptions::default() };
    let host = Host::open_with(&format!("virtual:{radio}"), HostOptions { security, ..HostOptions::default() })
        .await
        .expect("peer");
    (host, rx)
}

/// The peer connects to the advertising module; returns its link once `+UEBTC` is out.
async fn connect_to_module(at: &mut At, peer: &Host, urcs: &mut Vec<String>) -> Connection {
    // A central with a GATT server of its own answers the module's Exchange MTU.
    let _own = peer.gatt_server("peer", 0);
    let mut scan = peer.scan(gattling::ScanOptions::default()).await.expect("scan");
    let report = tokio::time::timeout(DEADLINE, scan.next()).await.expect("adv").expect("report");
    drop(scan);
    let conn = peer.connect(report.address, ConnectOptions::default()).await.expect("connect");
    let up = at.urc("+UEBTC:", urcs).await;
    assert_eq!(up, format!("+UEBTC:0,{}", at_addr(peer)));
    conn
}

async fn shown(rx: &mut mpsc::UnboundedReceiver<u32>) -> u32 {
    tokio::time::timeout(DEADLINE, rx.recv()).await.expect("shown in time").expect("a value")
}

#[tokio::test]
async fn security_settings_answer_byte_exact_and_are_stored() {
    let (mut at, path) = module("at-sec-settings").await;
    at.exchange("AT+UBTIOC?\r", "\r\n+UBTIOC:0\r\n\r\nOK\r\n").await;
    at.exchange("AT+UBTBSM?\r", "\r\n+UBTBSM:0\r\n\r\nOK\r\n").await;
    at.exchange("AT+UBTPM?\r", "\r\n+UBTPM:0\r\n\r\nOK\r\n").await;
    at.exchange("AT+UBTIOC=3\r", "\r\nOK\r\n").await;
    at.exchange("AT+UBTIOC?\r", "\r\n+UBTIOC:3\r\n\r\nOK\r\n").await;
    at.exchange("AT+UBTIOC=5\r", "\r\nERROR:39\r\n").await;
    at.exchange("AT+UBTBSM=4\r", "\r\nOK\r\n").await;
    at.exchange("AT+UBTBSM=x\r", "\r\nERROR:35\r\n").await;
    at.exchange("AT+UBTPM=1\r", "\r\nOK\r\n").await;
    at.exchange("AT+UBTPM=2\r", "\r\nERROR:39\r\n").await;
    at.exchange("AT+UBTPM=1,1\r", "\r\nERROR:34\r\n").await;
    at.exchange("AT+UBTIOC=?\r", "\r\nOK\r\n").await;
    // No bonds yet; nothing to confirm or type.
    at.exchange("AT+UBTBDL\r", "\r\nOK\r\n").await;
    at.exchange("AT+UBTUC=001122334455p,1\r", "\r\nERROR:11\r\n").await;
    at.exchange("AT+UBTUPE=001122334455p,1,123456\r", "\r\nERROR:11\r\n").await;
    at.exchange("AT+UBTUPE=001122334455p,1\r", "\r\nERROR:34\r\n").await;
    at.exchange("AT+UBTUPE=001122334455p,1,1000000\r", "\r\nERROR:36\r\n").await;
    at.exchange("AT+UBTUB=001122334455p\r", "\r\nERROR:11\r\n").await;
    at.exchange("AT+UBTUB=0011223344\r", "\r\nERROR:42\r\n").await;
    at.exchange("AT+UBTUB\r", "\r\nOK\r\n").await;
    at.exchange("AT&W\r", "\r\nOK\r\n").await;
    at.exchange("AT+CPWROFF\r", "\r\nOK\r\n\r\n+STARTUP\r\n").await;
    at.exchange("AT+UBTIOC?\r", "\r\n+UBTIOC:3\r\n\r\nOK\r\n").await;
    at.exchange("AT+UBTBSM?\r", "\r\n+UBTBSM:4\r\n\r\nOK\r\n").await;
    at.exchange("AT+UBTPM?\r", "\r\n+UBTPM:1\r\n\r\nOK\r\n").await;
    let text = std::fs::read_to_string(&path).expect("settings file");
    assert!(text.contains("io_cap=3\n") && text.contains("security_mode=4\n") && text.contains("pairing_mode=1\n"));
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

#[tokio::test]
async fn a_peer_pairs_by_passkey_entry_typed_with_at_ubtupe_and_the_bond_is_listed_and_removed() {
    let radio = "at-sec-passkey";
    let (mut at, path) = module(radio).await;
    let mut urcs = Vec::new();
    // Keyboard only, authenticated Secure Connections, pairable; applied at the restart.
    for c in ["AT+UBTIOC=3", "AT+UBTBSM=3", "AT+UBTPM=1", "AT&W"] {
        assert_eq!(at.cmd(c, &mut urcs).await, ["OK"], "{c}");
    }
    at.exchange("AT+CPWROFF\r", "\r\nOK\r\n\r\n+STARTUP\r\n").await;
    assert_eq!(at.cmd("AT+UBTAL", &mut urcs).await, ["OK"]);

    let (central, mut shown_rx) = peer(radio, IoCapability::DisplayOnly, false).await;
    let conn = connect_to_module(&mut at, &central, &mut urcs).await;
    let addr = at_addr(&central);
    let pairing = tokio::spawn(async move {
        let r = conn.pair().await;
        (conn, r)
    });
    assert_eq!(at.urc("+UEBTUPE:", &mut urcs).await, format!("+UEBTUPE:{addr}"));
    let passkey = shown(&mut shown_rx).await;
    assert_eq!(at.cmd(&format!("AT+UBTUPE={addr},1,{passkey}"), &mut urcs).await, ["OK"]);
    assert_eq!(at.urc("+UEBTB:", &mut urcs).await, format!("+UEBTB:{addr},0"));
    let (_conn, result) = tokio::time::timeout(DEADLINE, pairing).await.expect("in time").expect("task");
    let security = result.expect("paired");
    assert!(security.authenticated && security.secure_connections && security.encrypted, "{security:?}");

    assert_eq!(at.cmd("AT+UBTBDL", &mut urcs).await, [format!("+UBTBDL:{addr}"), "OK".into()]);
    assert_eq!(at.cmd(&format!("AT+UBTUB={addr}"), &mut urcs).await, ["OK"]);
    assert_eq!(at.cmd("AT+UBTBDL", &mut urcs).await, ["OK"]);
    assert_eq!(at.cmd(&format!("AT+UBTUB={addr}"), &mut urcs).await, ["ERROR:11"]);
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

#[tokio::test]
async fn at_ubtb_bonds_as_central_by_numeric_comparison_confirmed_with_at_ubtuc() {
    let radio = "at-sec-numeric";
    let (mut at, path) = module(radio).await;
    let mut urcs = Vec::new();
    // Applied at once, without a restart.
    for c in ["AT+UBTIOC=2", "AT+UBTBSM=3"] {
        assert_eq!(at.cmd(c, &mut urcs).await, ["OK"], "{c}");
    }

    let (peripheral, mut shown_rx) = peer(radio, IoCapability::DisplayYesNo, true).await;
    let _server = peripheral.gatt_server("peer", 0);
    peripheral.advertise(&AdvertisingOptions::default()).await.expect("advertise");
    let addr = at_addr(&peripheral);
    assert_eq!(at.cmd(&format!("AT+UBTB={addr}"), &mut urcs).await, ["OK"]);
    let ask = at.urc("+UEBTUC:", &mut urcs).await;
    let number = shown(&mut shown_rx).await;
    assert_eq!(ask, format!("+UEBTUC:{addr},{number}"));
    assert_eq!(at.cmd(&format!("AT+UBTUC={addr},1"), &mut urcs).await, ["OK"]);
    assert_eq!(at.urc("+UEBTB:", &mut urcs).await, format!("+UEBTB:{addr},0"));
    assert_eq!(at.urc("+UEBTC:", &mut urcs).await, format!("+UEBTC:0,{addr}"));
    assert_eq!(at.cmd("AT+UBTBDL", &mut urcs).await, [format!("+UBTBDL:{addr}"), "OK".into()]);
    // A factory restore removes the bond.
    assert_eq!(at.cmd("AT+USYFR", &mut urcs).await, ["OK"]);
    assert_eq!(at.cmd("AT+UBTBDL", &mut urcs).await, ["OK"]);
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

#[tokio::test]
async fn pairing_is_refused_until_at_ubtpm_enables_it() {
    let radio = "at-sec-refused";
    let (mut at, path) = module(radio).await;
    let mut urcs = Vec::new();
    assert_eq!(at.cmd("AT+UBTAL", &mut urcs).await, ["OK"]);
    let (central, _shown) = peer(radio, IoCapability::NoInputNoOutput, false).await;
    let conn = connect_to_module(&mut at, &central, &mut urcs).await;
    let addr = at_addr(&central);

    // Pairing mode off (the default): the Pairing Request is refused.
    match tokio::time::timeout(DEADLINE, conn.pair()).await.expect("in time") {
        Err(Error::Pairing { reason, remote: true }) => assert_eq!(reason, Reason::PairingNotSupported),
        other => panic!("not refused: {other:?}"),
    }
    assert_eq!(at.urc("+UEBTB:", &mut urcs).await, format!("+UEBTB:{addr},2"));

    // AT+UBTPM=1 takes effect at once: Just Works (no MITM in security mode 0) bonds. A new
    // link, so the refusal does not count as a repeated attempt (Core Vol 3 Part H §2.3.6).
    assert_eq!(at.cmd("AT+UBTPM=1", &mut urcs).await, ["OK"]);
    conn.disconnect(0x13).await.expect("disconnect");
    assert_eq!(at.urc("+UEBTDC:", &mut urcs).await, "+UEBTDC:0");
    let conn = connect_to_module(&mut at, &central, &mut urcs).await;
    let security = tokio::time::timeout(DEADLINE, conn.pair()).await.expect("in time").expect("paired");
    assert!(security.encrypted && !security.authenticated, "{security:?}");
    assert_eq!(at.urc("+UEBTB:", &mut urcs).await, format!("+UEBTB:{addr},0"));
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

#[tokio::test]
async fn a_passkey_request_denied_with_at_ubtupe_fails_the_bonding() {
    let radio = "at-sec-deny";
    let (mut at, path) = module(radio).await;
    let mut urcs = Vec::new();
    for c in ["AT+UBTIOC=3", "AT+UBTBSM=1", "AT+UBTPM=1", "AT&W"] {
        assert_eq!(at.cmd(c, &mut urcs).await, ["OK"], "{c}");
    }
    at.exchange("AT+CPWROFF\r", "\r\nOK\r\n\r\n+STARTUP\r\n").await;
    assert_eq!(at.cmd("AT+UBTAL", &mut urcs).await, ["OK"]);
    let (central, _shown) = peer(radio, IoCapability::DisplayOnly, false).await;
    let conn = connect_to_module(&mut at, &central, &mut urcs).await;
    let addr = at_addr(&central);
    let pairing = tokio::spawn(async move { conn.pair().await });
    assert_eq!(at.urc("+UEBTUPE:", &mut urcs).await, format!("+UEBTUPE:{addr}"));
    assert_eq!(at.cmd(&format!("AT+UBTUPE={addr},0"), &mut urcs).await, ["OK"]);
    assert_eq!(at.urc("+UEBTB:", &mut urcs).await, format!("+UEBTB:{addr},2"));
    match tokio::time::timeout(DEADLINE, pairing).await.expect("in time").expect("task") {
        Err(Error::Pairing { reason, remote: true }) => assert_eq!(reason, Reason::PasskeyEntryFailed),
        other => panic!("not failed: {other:?}"),
    }
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}
