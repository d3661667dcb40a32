//! Failures are one line on stderr saying what failed, why and what to try; exit code 1 for a
//! failed operation, 2 for bad usage or input. `-v`/`-vv` and `RUST_LOG` control the logging.

mod common;

use common::*;

async fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = gattling().args(args).output().await.expect("run gattling");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn bad_usage_and_input_exit_2_in_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (&["--transport", "bluetooth:0", "scan"], "unknown transport scheme \"bluetooth\""),
        (&["gatt", "--name", "x", "read", "0"], "expected a handle 1-65535"),
        (&["gatt", "--name", "x", "read", "12G4"], "expected a UUID"),
        (&["gatt", "--name", "x", "write", "3", "abc"], "an even number of hex digits"),
        (&["gatt", "--address", "11:22:33", "read", "3"], "invalid Bluetooth address"),
        (&["scan", "--duration", "0"], "--duration 0: must be a positive number"),
        (&["--btsnoop", "/nonexistent-dir/x", "scan"], "--btsnoop /nonexistent-dir/x"),
    ];
    for (args, want) in cases {
        let (code, err) = run(args).await;
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        // clap adds a usage line and a help hint; our own errors are a single line.
        if err.starts_with("gattling:") {
            assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        }
    }
}

#[tokio::test]
async fn failed_operations_exit_1_with_what_to_try() {
    let (code, err) = run(&["--transport", "tcp-client:127.0.0.1:1", "scan"]).await;
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("tcp-client:127.0.0.1:1") && err.contains("Connection refused"), "{err}");
    assert!(err.contains("is the controller running?"), "{err}");

    let (code, err) = run(&["gatt", "--name", "nobody", "--scan-timeout", "0.2", "read", "3"]).await;
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("no advertiser matched") && err.contains("raise --scan-timeout"), "{err}");
}

#[tokio::test]
async fn verbosity_flags_and_rust_log() {
    let (_, quiet) = run(&["demo"]).await;
    assert!(!quiet.contains("INFO"), "{quiet}");
    let (_, info) = run(&["-v", "demo"]).await;
    assert!(info.contains("INFO") && info.contains("host ready"), "{info}");
    assert!(!info.contains("DEBUG"), "{info}");
    let (_, debug) = run(&["-vv", "demo"]).await;
    assert!(debug.contains("DEBUG"), "{debug}");
    // Without -v, RUST_LOG decides (the tests run with RUST_LOG=warn).
    let out = gattling().env("RUST_LOG", "debug").arg("demo").output().await.expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("DEBUG"));
}
