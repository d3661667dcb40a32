//! `--btsnoop`: captures that Wireshark's dissectors (run as `tshark`) decode: a scan, a
//! connection and an ATT read, from the host and from `gattling controller --btsnoop DIR`.
//! tshark is required (CI installs it); a missing tshark fails these tests.

mod common;

use common::*;
use std::path::Path;
use std::process::Stdio;

/// Runs tshark on `file` with a display filter; returns one line per matching packet with the
/// fields separated by commas.
fn tshark(file: &Path, filter: &str, fields: &[&str]) -> Vec<String> {
    let mut c = std::process::Command::new("tshark");
    c.arg("-r").arg(file).args(["-Y", filter, "-T", "fields", "-E", "separator=,"]);
    for f in fields {
        c.args(["-e", f]);
    }
    let out = c.output().unwrap_or_else(|e| panic!("tshark is needed (apt-get install tshark): {e}"));
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// The scan, the connection and the read of `gattling gatt --name cli-snoop read 3` against
/// the demo database's Device Name ("cli-snoop").
fn assert_scan_connect_read(file: &Path, central: bool) {
    // LE Set Scan Enable: on, then off (flags: host to controller, command).
    let scan = tshark(file, "bthci_cmd.opcode == 0x200c", &["bthci_cmd.le_scan_enable", "hci_h4.direction"]);
    assert_eq!(scan.first().map(String::as_str), Some("0x01,0x00"), "{scan:?}");
    assert!(scan.iter().any(|l| l == "0x00,0x00"), "{scan:?}");
    // LE (Enhanced) Connection Complete: success, our role (0 central, 1 peripheral), received.
    let cc = tshark(
        file,
        "bthci_evt.le_meta_subevent == 0x0a || bthci_evt.le_meta_subevent == 0x01",
        &["bthci_evt.status", "bthci_evt.role", "hci_h4.direction"],
    );
    let role = if central { "0x00" } else { "0x01" };
    assert_eq!(cc, vec![format!("0x00,{role},0x01")]);
    // The Read Request for handle 3 and its Read Response with the device name.
    let req = tshark(file, "btatt.opcode == 0x0a", &["btatt.handle", "hci_h4.direction"]);
    assert_eq!(req, vec!["0x0003,0x00"]);
    // Wireshark decodes the value as a Device Name when the capture holds the discovery that
    // found handle 3 (`read 3` checks it is a characteristic first), as raw bytes otherwise.
    let rsp = tshark(file, "btatt.opcode == 0x0b", &["btatt.value", "btatt.device_name", "hci_h4.direction"]);
    assert!(
        rsp == vec![format!("{},,0x01", hex(b"cli-snoop"))] || rsp == vec![",cli-snoop,0x01".to_string()],
        "{rsp:?}"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captures_scan_connection_and_read_for_wireshark() {
    let dir = temp_dir("btsnoop");
    let ctl_dir = dir.join("controller");
    let (mut controller, transport) = controller_server(&["--btsnoop", ctl_dir.to_str().expect("utf-8")]).await;
    let mut serve = serve(&transport, &["--name", "cli-snoop"]).await;
    let file = dir.join("central.btsnoop");
    let out = gattling()
        .args(["--transport", &transport, "--btsnoop", file.to_str().expect("utf-8")])
        .args(["gatt", "--name", "cli-snoop", "read", "3"])
        .output()
        .await
        .expect("run gattling gatt");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_scan_connect_read(&file, true);
    // Timestamps are microseconds since 0 AD: tshark shows today's date.
    let year = tshark(&file, "frame.number == 1", &["frame.time_epoch"]);
    let epoch: f64 = year[0].parse().expect("epoch seconds");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
    assert!((now - epoch).abs() < 120.0, "first packet at {epoch}, now {now}");

    // The controller wrote one file per attached host: the server (host-1) and the client (host-2).
    let _ = serve.kill().await;
    let _ = controller.kill().await;
    let ctl_central = ctl_dir.join("host-2.btsnoop");
    assert_scan_connect_read(&ctl_central, true);
    let peripheral = ctl_dir.join("host-1.btsnoop");
    let cc = tshark(&peripheral, "bthci_evt.le_meta_subevent == 0x0a", &["bthci_evt.role"]);
    assert_eq!(cc, vec!["0x01"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_leaves_a_complete_capture() {
    let dir = temp_dir("btsnoop-int");
    let file = dir.join("serve.btsnoop");
    let mut serve = gattling()
        .args(["--btsnoop", file.to_str().expect("utf-8"), "serve", "--name", "int"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    wait_for_stderr(&mut serve, "serving").await;
    let status = interrupt(&mut serve).await;
    assert!(status.success(), "{status:?}");
    let adv = tshark(&file, "bthci_cmd.opcode == 0x200a", &["bthci_cmd.le_advts_enable"]);
    assert_eq!(adv, vec!["0x01"]);

    // Killed outright (SIGKILL, no chance to close): every packet is already in the file.
    let file = dir.join("killed.btsnoop");
    let mut serve = gattling()
        .args(["--btsnoop", file.to_str().expect("utf-8"), "serve", "--name", "int"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    wait_for_stderr(&mut serve, "serving").await;
    let _ = serve.kill().await;
    let adv = tshark(&file, "bthci_cmd.opcode == 0x200a", &["bthci_cmd.le_advts_enable"]);
    assert_eq!(adv, vec!["0x01"]);
    let done = tshark(&file, "bthci_evt.opcode == 0x200a", &["bthci_evt.status"]);
    assert_eq!(done, vec!["0x00"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn unwritable_capture_path_fails_before_anything_starts() {
    // The transport would fail too (nothing listens on port 1): the capture is checked first.
    let out = gattling()
        .args(["--transport", "tcp-client:127.0.0.1:1", "--btsnoop", "/nonexistent-dir/x.btsnoop", "scan"])
        .output()
        .await
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--btsnoop /nonexistent-dir/x.btsnoop") && !err.contains("tcp-client"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
