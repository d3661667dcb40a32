//! The everyday tools on `gattling controller` (no external peers): names in human output,
//! UUID targets, the discover tree, scan lines, filters and summary.

mod common;

use common::*;

async fn run(transport: &str, args: &[&str]) -> std::process::Output {
    gattling().args(["--transport", transport]).args(args).output().await.expect("run gattling")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_tree_names_and_reads_and_uuid_targets() {
    let (mut controller, transport) = controller_server(&[]).await;
    let mut serve = serve(&transport, &["--name", "cli-tree"]).await;

    let out = run(&transport, &["gatt", "--name", "cli-tree", "discover", "--read"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tree = text(&out.stdout);
    for expected in [
        "service 1800 (Generic Access) [0x0001-",
        "├── characteristic 2A00 (Device Name) value 0x0003 (read) = 636c692d74726565 \"cli-tree\"",
        "descriptor 2902 (Client Characteristic Configuration) at ",
        "descriptor 2901 (Characteristic User Description) at 0x001a = 636f756e746572 \"counter\"",
        "... (512 bytes)",
    ] {
        assert!(tree.contains(expected), "missing {expected:?} in:\n{tree}");
    }

    let out = run(&transport, &["gatt", "--name", "cli-tree", "--json", "discover"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["services"][0]["name"], "Generic Access");
    assert_eq!(doc["services"][0]["characteristics"][0]["name"], "Device Name");

    // A UUID (by SIG name, by hex) instead of a handle.
    for target in ["Device Name", "2A00", "0x0003", "00002A00-0000-1000-8000-00805F9B34FB"] {
        let out = run(&transport, &["gatt", "--name", "cli-tree", "read", target]).await;
        assert!(out.status.success(), "{target}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), "0x0003: 636c692d74726565", "{target}");
    }
    // A UUID no characteristic has: exit 2, one line.
    let out = run(&transport, &["gatt", "--name", "cli-tree", "read", "Battery Level"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("no characteristic has UUID 2A19 (Battery Level)"), "{err}");
    // Not a UUID at all: clap's usage error, exit 2.
    let out = run(&transport, &["gatt", "--name", "cli-tree", "read", "2A1"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("expected a UUID"), "{}", text(&out.stderr));

    let _ = serve.kill().await;
    let _ = controller.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_lines_filters_and_summary() {
    let (mut controller, transport) = controller_server(&[]).await;
    let mut a = serve(&transport, &["--name", "scan-alpha"]).await;
    let mut b = serve(&transport, &["--name", "scan-beta"]).await;

    let out = run(&transport, &["scan", "--duration", "1.5"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    // One NEW line per device however many reports arrived, then the summary table.
    assert_eq!(t.lines().filter(|l| l.starts_with("NEW ") && l.contains("\"scan-alpha\"")).count(), 1, "{t}");
    assert!(t.lines().any(|l| l.starts_with("NEW ") && l.contains("\"scan-beta\"") && l.ends_with("connectable")));
    assert!(t.contains("2 device(s) seen"), "{t}");
    let row = t.lines().find(|l| l.contains("scan-alpha") && !l.starts_with("NEW")).expect("summary row");
    let reports: u64 = row.split_whitespace().nth(3).and_then(|n| n.parse().ok()).expect("report count");
    assert!(reports >= 2, "{row}");

    let out = run(&transport, &["scan", "--duration", "1", "--json", "--filter-name", "ALPHA"]).await;
    let lines: Vec<serde_json::Value> =
        text(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["name"], "scan-alpha");
    assert_eq!(lines[0]["event"], "new");

    let out = run(&transport, &["scan", "--duration", "1", "--filter-service", "Heart Rate"]).await;
    assert!(text(&out.stdout).contains("0 device(s) seen"), "{}", text(&out.stdout));

    let _ = a.kill().await;
    let _ = b.kill().await;
    let _ = controller.kill().await;
}
