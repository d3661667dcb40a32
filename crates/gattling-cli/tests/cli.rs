//! The `gattling` binary against rootcanal and bumble peers: the scan and advertise commands and
//! their flags, as a user runs them.

#[path = "../../gattling/tests/support/mod.rs"]
mod support;

mod common;

use common::{gattling, wait_for_stderr, STEP};
use std::process::Stdio;
use support::{skipped, Peer, RootCanal};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The child's stdout lines up to and including the first "disconnected:" line.
async fn stdout_until_disconnected(child: &mut tokio::process::Child) -> Vec<String> {
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut log = Vec::new();
    tokio::time::timeout(STEP, async {
        while let Some(l) = stdout.next_line().await.expect("stdout") {
            let done = l.starts_with("disconnected:");
            log.push(l);
            if done {
                return;
            }
        }
    })
    .await
    .expect("disconnection logged");
    log
}

async fn scan_json(transport: &str, extra: &[&str]) -> Vec<serde_json::Value> {
    let out = gattling()
        .args(["--transport", transport, "scan", "--duration", "2", "--json"])
        .args(extra)
        .output()
        .await
        .expect("run gattling scan");
    assert!(out.status.success(), "scan failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_json_reports_name_from_scan_response_and_services() {
    if skipped() {
        return;
    }
    let rc = RootCanal::start();
    let transport = rc.transport();
    let mut periph = Peer::start(
        "bumble_peripheral.py",
        &["--transport", &transport, "--name", "cli-scan-rsp", "--name-in-scan-response", "--wait-disconnect"],
    );
    let adv = periph.expect("advertising", STEP).await;
    let lines = scan_json(&transport, &[]).await;
    let dev: Vec<_> = lines.iter().filter(|l| l["address"] == adv["address"]).collect();
    assert!(!dev.is_empty(), "bumble peripheral not in scan output: {lines:?}");
    let last = dev.last().expect("a line");
    assert_eq!(last["name"], "cli-scan-rsp");
    assert_eq!(last["address_type"], "random");
    assert_eq!(last["services"], serde_json::json!(["180D"]));
    assert!(last["rssi"].is_i64());
    assert_eq!(last["connectable"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_scan_json_has_no_scan_response_name() {
    if skipped() {
        return;
    }
    let rc = RootCanal::start();
    let transport = rc.transport();
    let mut periph = Peer::start(
        "bumble_peripheral.py",
        &["--transport", &transport, "--name", "cli-passive", "--name-in-scan-response", "--wait-disconnect"],
    );
    let adv = periph.expect("advertising", STEP).await;
    let lines = scan_json(&transport, &["--passive"]).await;
    let dev: Vec<_> = lines.iter().filter(|l| l["address"] == adv["address"]).collect();
    assert!(!dev.is_empty(), "bumble peripheral not in passive scan output: {lines:?}");
    assert!(dev.iter().all(|l| l["name"].is_null()), "{dev:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advertise_logs_connection_and_disconnection() {
    if skipped() {
        return;
    }
    let rc = RootCanal::start();
    let transport = rc.transport();
    let mut adv = gattling()
        .args(["--transport", &transport, "--random-address", "C0:DE:C0:DE:00:01"])
        .args(["advertise", "--name", "cli-adv", "--connectable"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gattling advertise");
    wait_for_stderr(&mut adv, "advertising \"cli-adv\"").await;
    let mut central = Peer::start(
        "bumble_central.py",
        &["--transport", &transport, "--name", "cli-adv", "--disconnect-after", "0.3"],
    );
    let found = central.expect("found", STEP).await;
    assert_eq!(found["address"], "C0:DE:C0:DE:00:01");
    central.expect("disconnected", STEP).await;
    central.finish().await;
    let log = stdout_until_disconnected(&mut adv).await;
    assert!(log[0].starts_with("connected: handle"), "{log:?}");
    assert!(log[0].contains("Peripheral"), "{log:?}");
    assert!(log.last().is_some_and(|l| l.contains("reason 0x13")), "{log:?}");
    let _ = adv.kill().await;
}

#[tokio::test]
async fn bad_arguments_are_explained() {
    let out = gattling().args(["--transport", "bluetooth:0", "scan"]).output().await.expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bluetooth:0") && err.contains("tcp-client:HOST:PORT"), "{err}");

    let out = gattling()
        .args(["--transport", "tcp-client:127.0.0.1:1", "--random-address", "00:11:22:33:44:55", "scan"])
        .output()
        .await
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a static random address"));

    let out = gattling().args(["--random-address", "nonsense", "scan"]).output().await.expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid Bluetooth address"));
}

#[tokio::test]
async fn demo_shows_two_hosts_meeting_on_the_virtual_radio() {
    let out = gattling().arg("demo").output().await.expect("run gattling demo");
    assert!(out.status.success(), "demo failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "bob found \"alice\"",
        "connected: bob is central",
        "\"hello from alice\"",
        "bob disconnected: Connection Terminated By Local Host",
        "alice saw the disconnection: Remote User Terminated Connection",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_server_serves_the_cli_scan_and_advertise() {
    let (mut server, transport, banner) = common::controller_server_banner(&["--acl", "27x20"]).await;
    assert!(banner.contains("27x20"), "{banner}");
    let mut adv = gattling()
        .args(["--transport", &transport, "advertise", "--name", "served-by-gattling"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("advertise");
    // Printed once the controller has accepted LE Set Advertising Enable.
    wait_for_stderr(&mut adv, "advertising \"served-by-gattling\"").await;
    let lines = scan_json(&transport, &[]).await;
    let hit = lines.iter().find(|l| l["name"] == "served-by-gattling").expect("advertiser found via the server");
    assert_eq!(hit["connectable"], false, "advertise without --connectable is non-connectable");
    let _ = adv.kill().await;
    let _ = server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_a_bumble_client_and_logs_each_access() {
    if skipped() {
        return;
    }
    let rc = RootCanal::start();
    let transport = rc.transport();
    let mut serve = gattling()
        .args(["--transport", &transport, "serve", "--name", "cli-serve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gattling serve");
    wait_for_stderr(&mut serve, "serving the demo database").await;
    // Pycom example characteristic 2 (uuid=4567 = 0x11D7, value 0x1234) and the counter.
    let counter = "6A770002-9D1E-4B1C-A0A5-4B5C5E7AD0C0";
    let mut client = Peer::start(
        "bumble_gatt_client.py",
        &[
            "--transport",
            &transport,
            "--name",
            "cli-serve",
            "--read",
            "11D7",
            "--write",
            "11D7=beef",
            "--subscribe",
            &format!("{counter}:2"),
        ],
    );
    assert_eq!(client.expect("read", STEP).await["value"], "1234");
    client.expect("write", STEP).await;
    client.expect("notification", STEP).await;
    client.expect("done", STEP).await;
    client.finish().await;
    let log = stdout_until_disconnected(&mut serve).await;
    let has = |p: &str| log.iter().any(|l| l.starts_with(p) && l.contains("11D7"));
    assert!(has("read: 11D7"), "{log:?}");
    assert!(log.iter().any(|l| l.starts_with("write: 11D7") && l.ends_with("beef")), "{log:?}");
    assert!(log.iter().any(|l| l.starts_with("subscribe: 6A770002") && l.ends_with("notifications")), "{log:?}");
    let _ = serve.kill().await;
}

/// Starts `gattling controller` on a port the system picks; returns the child and the
/// transport string.
async fn controller_server() -> (tokio::process::Child, String) {
    common::controller_server(&[]).await
}

async fn gatt_cli(transport: &str, args: &[&str]) -> std::process::Output {
    gattling()
        .args(["--transport", transport, "gatt", "--name", "cli-gatt"])
        .args(args)
        .output()
        .await
        .expect("run gattling gatt")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gatt_command_discovers_reads_writes_and_subscribes() {
    let (mut controller, transport) = controller_server().await;
    let mut serve = gattling()
        .args(["--transport", &transport, "serve", "--name", "cli-gatt"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    // Printed once the database is installed and advertising is on.
    wait_for_stderr(&mut serve, "serving the demo database as \"cli-gatt\"").await;

    let out = gatt_cli(&transport, &["--json", "discover"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let services = doc["services"].as_array().expect("services");
    assert_eq!(services[0]["uuid"], "1800");
    let svc2 = services.iter().find(|s| s["uuid"] == "04D2").expect("Pycom service 2 (uuid=1234)");
    let chr2 = &svc2["characteristics"][0];
    assert_eq!(chr2["uuid"], "11D7");
    assert_eq!(chr2["properties"], 0x1A);
    let h = chr2["value_handle"].as_u64().expect("handle").to_string();
    let svc1 = services.iter().find(|s| s["uuid"].as_str().is_some_and(|u| u.len() == 36)).expect("128-bit service");
    assert_eq!(svc1["uuid"], "36353433-3231-3039-3837-363534333231", "Pycom's b'1234567890123456', little-endian");

    let out = gatt_cli(&transport, &["--json", "read", &h]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["value"], "1234");

    let out = gatt_cli(&transport, &["write", &h, "c0ffee", "--reliable"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = gatt_cli(&transport, &["read", &h]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("c0ffee"));

    let counter = services
        .iter()
        .flat_map(|s| s["characteristics"].as_array().cloned().unwrap_or_default())
        .find(|c| c["uuid"] == "6A770002-9D1E-4B1C-A0A5-4B5C5E7AD0C0")
        .expect("counter");
    let ch = counter["value_handle"].as_u64().expect("handle").to_string();
    let out = gatt_cli(&transport, &["--json", "subscribe", &ch, "--count", "2"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);

    // Failure: exit non-zero, the ATT error named.
    let out = gatt_cli(&transport, &["read", "0xFFF0"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Invalid Handle"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = serve.kill().await;
    let _ = controller.kill().await;
}

/// The seed's examples 1, 3 and a CCCD-carrying indicate channel after them, as hex text.
const ATT_LIST: &str = "0c 00 02 00 28 02 e7 fe\n0d 00 02 03 28 01 0c\n\
    0e 00 02 c7 fe 14 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00\n\
    0f 00 02 03 28 01 20\n10 00 02 c8 fe 04 00 00 00 00\n11 00 02 02 29 02 00 00\n00 00\n";

fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gattling-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write temp file");
    path
}

async fn run_with_stdin(args: &[&str], stdin: &[u8]) -> std::process::Output {
    use tokio::io::AsyncWriteExt;
    let mut child = gattling()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gattling");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).await.expect("write stdin");
    drop(input);
    child.wait_with_output().await.expect("output")
}

#[tokio::test]
async fn att_list_check_prints_the_tree_or_one_error_line() {
    let file = temp_file("ok.hex", ATT_LIST.as_bytes());
    let out = gattling().args(["att-list", "check"]).arg(&file).output().await.expect("check");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "0x000c primary service FEE7\n\
         \x20 0x000e characteristic FEC7 [write-without-response|write] declaration 0x000d, 20 bytes\n\
         \x20 0x0010 characteristic FEC8 [indicate] declaration 0x000f, 4 bytes\n\
         \x20   0x0011 CCCD\n"
    );
    // Binary from standard input.
    let bin = gattling::proto::gatt::att_list::hex_to_bytes(ATT_LIST).expect("hex");
    let out = run_with_stdin(&["att-list", "check", "-"], &bin).await;
    assert_eq!(out.status.code(), Some(0));
    // Invalid: a CCCD under the write channel.
    let bad = "0c 00 02 00 28 02 e7 fe\n0d 00 02 03 28 01 0c\n0e 00 02 c7 fe 01 00\n0f 00 02 02 29 02 00 00\n00 00\n";
    let file = temp_file("bad.hex", bad.as_bytes());
    let out = gattling().args(["att-list", "check"]).arg(&file).output().await.expect("check");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "{}: offset 22 (handle 0x000F): CCCD under a characteristic without notify or indicate (properties 0x0C)\n",
            file.display()
        )
    );
    let out = run_with_stdin(&["att-list", "check", "-"], b"0c 00 02 00 28 02 e7 fe\n").await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "-: offset 8 (handle 0x000C): missing terminator (00 00) at the end of the table\n"
    );
}

#[tokio::test]
async fn att_list_dump_gives_the_table_back_and_dumps_the_demo() {
    let file = temp_file("dump.hex", ATT_LIST.as_bytes());
    let out = gattling().args(["att-list", "dump", "--att-list"]).arg(&file).output().await.expect("dump");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), ATT_LIST, "load -> dump is identical");
    let out = gattling().args(["att-list", "dump", "--binary", "--att-list"]).arg(&file).output().await.expect("dump");
    assert_eq!(out.stdout, gattling::proto::gatt::att_list::hex_to_bytes(ATT_LIST).expect("hex"));
    // The demo database, built-ins included; its 512-byte value is cut with a warning.
    let out = gattling().args(["att-list", "dump", "--demo"]).output().await.expect("dump");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.starts_with("01 00 02 00 28 02 00 18\n"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("value of 512 bytes cut to 255"));
    let out = run_with_stdin(&["att-list", "check", "-"], text.as_bytes()).await;
    assert_eq!(out.status.code(), Some(0), "the demo dump is a valid table");
    assert!(String::from_utf8_lossy(&out.stdout).contains("0x0001 primary service 1800"));
    // Neither source: a usage error.
    let out = gattling().args(["att-list", "dump"]).output().await.expect("dump");
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_att_list_serves_the_table_and_logs_each_access() {
    use tokio::io::AsyncWriteExt;
    let (mut controller, transport) = controller_server().await;
    let mut serve = gattling()
        .args(["--transport", &transport, "serve", "--name", "cli-gatt", "--att-list", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let mut input = serve.stdin.take().expect("stdin");
    input.write_all(ATT_LIST.as_bytes()).await.expect("table on stdin");
    drop(input);
    wait_for_stderr(&mut serve, "serving an ATT_LIST table of 6 records from handle 0x000c as \"cli-gatt\"").await;

    let out = gatt_cli(&transport, &["--json", "discover"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let services = doc["services"].as_array().expect("services");
    let uuids: Vec<&str> = services.iter().filter_map(|s| s["uuid"].as_str()).collect();
    assert_eq!(uuids, ["1800", "1801", "FEE7"]);
    let fee7 = &services[2];
    let chars = fee7["characteristics"].as_array().expect("characteristics");
    assert_eq!((chars[0]["uuid"].as_str(), chars[0]["value_handle"].as_u64()), (Some("FEC7"), Some(0x0E)));
    assert_eq!(chars[0]["properties"], 0x0C);
    assert_eq!((chars[1]["uuid"].as_str(), chars[1]["properties"].as_u64()), (Some("FEC8"), Some(0x20)));

    let out = gatt_cli(&transport, &["write", "0x0e", "0102030405"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = gatt_cli(&transport, &["--json", "read", "0x0e"]).await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["value"], "0102030405");
    // Longer than the 20-byte buffer: Invalid Attribute Value Length.
    let out = gatt_cli(&transport, &["write", "0x0e", &"ab".repeat(21)]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Invalid Attribute Value Length"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The log: the write, the read, each connection's end.
    let mut stdout = BufReader::new(serve.stdout.take().expect("stdout")).lines();
    let mut log = Vec::new();
    tokio::time::timeout(STEP, async {
        while let Some(l) = stdout.next_line().await.expect("stdout") {
            log.push(l);
            if log.iter().any(|l| l.starts_with("read: FEC7")) && log.iter().any(|l| l.starts_with("write: FEC7")) {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("read and write logged: {log:?}"));
    assert!(log.iter().any(|l| l.starts_with("write: FEC7 (handle 0x000e)") && l.ends_with("0102030405")), "{log:?}");
    let _ = serve.kill().await;
    let _ = controller.kill().await;
}
