//! `gattling demo`: every step of the tour, timed, in under a second on the in-process radio, and
//! the same demo across `gattling controller`.

mod common;

use common::*;

fn check(out: &std::process::Output) {
    assert!(out.status.success(), "demo failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "bob found \"alice\"",
        "advertisement: services [04D2]",
        "appearance 0x0341 (Heart Rate Sensor: Heart Rate Belt)",
        "service 1800 (Generic Access)",
        "└── characteristic 11D7 value 0x0014 (read|write|notify)",
        "bob read 11D7 at 0x0014: 1234",
        "bob read 11D7 at 0x0014: \"hello from alice\"",
        "and read back 2a",
        "notification 3: counter = ",
        "bob disconnected: Connection Terminated By Local Host",
        "alice saw the disconnection: Remote User Terminated Connection",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // The answer changes after exactly two reads.
    assert_eq!(text.matches("bob read 11D7 at 0x0014: 1234").count(), 2, "{text}");
    // Every step is timed; the last one within a second.
    let last = text.lines().filter_map(|l| l.strip_prefix('[')?.split_once(" ms]")).next_back().expect("timed steps").0;
    let ms: f64 = last.trim().parse().expect("milliseconds");
    assert!(ms < 1000.0, "the demo took {ms} ms:\n{text}");
}

#[tokio::test]
async fn demo_tours_the_stack_in_under_a_second() {
    check(&gattling().arg("demo").output().await.expect("run gattling demo"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_across_the_controller_server() {
    let (mut controller, transport) = controller_server(&[]).await;
    check(&gattling().args(["--transport", &transport, "demo"]).output().await.expect("run gattling demo"));
    let _ = controller.kill().await;
}

#[path = "../../gattling/tests/support/mod.rs"]
mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_across_rootcanal() {
    if support::skipped() {
        return;
    }
    let rc = support::RootCanal::start();
    check(&gattling().args(["--transport", &rc.transport(), "demo"]).output().await.expect("run gattling demo"));
}
