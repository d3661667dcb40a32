//! Pairing from the command line: `gatt --pair` against `serve`'s secured characteristics on
//! `gattling controller` (Just Works, passkey entry, numeric comparison), `--bonds` keeping keys
//! across runs, `gattling bonds list|remove`, and bad options explained.

mod common;

use common::*;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The demo's characteristic that needs encryption, and the one that needs authentication.
const ENCRYPTED: &str = "6A770011-9D1E-4B1C-A0A5-4B5C5E7AD0C0";
const AUTHENTICATED: &str = "6A770012-9D1E-4B1C-A0A5-4B5C5E7AD0C0";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn gatt(transport: &str, name: &str, args: &[&str]) -> std::process::Output {
    gattling()
        .args(["--transport", transport, "gatt", "--name", name])
        .args(args)
        .output()
        .await
        .expect("run gattling gatt")
}

/// The first stdout line of `child` starting with `prefix`, waiting at most one step.
async fn stdout_line(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>, prefix: &str) -> String {
    tokio::time::timeout(STEP, async {
        while let Some(l) = lines.next_line().await.expect("stdout") {
            if l.starts_with(prefix) {
                return l;
            }
        }
        panic!("the program exited before printing {prefix:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("no {prefix:?} line within {STEP:?}"))
}

fn stdout_lines(child: &mut tokio::process::Child) -> tokio::io::Lines<BufReader<tokio::process::ChildStdout>> {
    BufReader::new(child.stdout.take().expect("stdout")).lines()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gatt_pair_reads_the_encrypted_characteristic_and_just_works_is_not_enough_for_mitm() {
    let (mut controller, transport) = controller_server(&[]).await;
    let mut serve = serve(&transport, &["--name", "cli-jw"]).await;

    // Without --pair the server refuses (no key yet: Insufficient Authentication, Core Vol 3 Part C
    // §10.3.1) and the hint says what to do.
    let out = gatt(&transport, "cli-jw", &["read", ENCRYPTED]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("Insufficient Authentication") && err.contains("add --pair"), "{err}");

    let out = gatt(&transport, "cli-jw", &["--pair", "read", ENCRYPTED]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).ends_with(&format!(": {}\n", hex(b"encrypted"))), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("paired: Encrypted, LE Secure Connections, key 16 octets, bonded"), "{err}");

    // Just Works gives no MITM protection: the authenticated characteristic stays closed.
    let out = gatt(&transport, "cli-jw", &["--pair", "read", AUTHENTICATED]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("Insufficient Authentication") && err.contains("--io"), "{err}");

    let _ = serve.kill().await;
    let _ = controller.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkey_entry_on_both_keyboards_authenticates_and_a_wrong_passkey_fails() {
    let (mut controller, transport) = controller_server(&[]).await;
    let mut serve = serve(&transport, &["--name", "cli-pk", "--io", "keyboard-only", "--passkey", "123456"]).await;

    let pair = ["--pair", "--io", "keyboard-only", "--passkey", "123456", "read", AUTHENTICATED];
    let out = gatt(&transport, "cli-pk", &pair).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).ends_with(&format!(": {}\n", hex(b"authenticated"))), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("paired: SecureConnections"), "{}", text(&out.stderr));

    let wrong = ["--pair", "--io", "keyboard-only", "--passkey", "654321", "read", AUTHENTICATED];
    let out = gatt(&transport, "cli-pk", &wrong).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("pairing failed") && err.contains("Confirm Value Failed"), "{err}");

    let _ = serve.kill().await;
    let _ = controller.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_displayed_passkey_is_printed_for_scripts_and_a_keyboard_without_one_fails() {
    let (mut controller, transport) = controller_server(&[]).await;
    let mut serve = serve(&transport, &["--name", "cli-disp", "--io", "display-only"]).await;
    let mut serve_out = stdout_lines(&mut serve);

    let out = gatt(&transport, "cli-disp", &["--pair", "--io", "keyboard-only", "read", ENCRYPTED]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("give --passkey") && err.contains("pairing failed"), "{err}");
    let shown = stdout_line(&mut serve_out, "passkey: ").await;
    let digits = shown.trim_start_matches("passkey: ");
    assert!(digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()), "{shown:?}");

    let _ = serve.kill().await;
    let _ = controller.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_comparison_shows_one_number_on_both_sides_and_needs_confirm() {
    let (mut controller, transport) = controller_server(&[]).await;
    let mut serve = serve(&transport, &["--name", "cli-nc", "--io", "display-yesno", "--confirm"]).await;
    let mut serve_out = stdout_lines(&mut serve);

    let out =
        gatt(&transport, "cli-nc", &["--pair", "--io", "display-yesno", "--confirm", "read", AUTHENTICATED]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let ours = stdout.lines().find(|l| l.starts_with("compare: ")).expect("a compare line").to_string();
    assert!(stdout.ends_with(&format!(": {}\n", hex(b"authenticated"))), "{stdout}");
    assert_eq!(stdout_line(&mut serve_out, "compare: ").await, ours);

    // Without --confirm the comparison is rejected.
    let out = gatt(&transport, "cli-nc", &["--pair", "--io", "display-yesno", "read", AUTHENTICATED]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("give --confirm") && err.contains("Numeric Comparison Failed"), "{err}");

    let _ = serve.kill().await;
    let _ = controller.kill().await;
}

async fn bonds(args: &[&str]) -> std::process::Output {
    gattling().arg("bonds").args(args).output().await.expect("run gattling bonds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bonds_persist_across_runs_then_are_listed_and_removed() {
    let dir = temp_dir("bonds");
    let (server_bonds, client_bonds) = (dir.join("serve"), dir.join("gatt"));
    let (sb, cb) = (server_bonds.to_str().expect("utf-8"), client_bonds.to_str().expect("utf-8"));
    let (mut controller, transport) = controller_server(&[]).await;
    let serve_args = ["--random-address", "C0:5E:C0:00:00:01", "serve", "--name", "cli-bond", "--bonds", sb];
    let start_serve = || {
        gattling()
            .args(["--transport", &transport])
            .args(serve_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve")
    };
    let run_gatt = || {
        gattling()
            .args(["--transport", &transport, "--random-address", "C0:5E:C0:00:00:02"])
            .args(["gatt", "--name", "cli-bond", "--pair", "--bonds", cb, "read", ENCRYPTED])
            .output()
    };
    let mut serve = start_serve();
    wait_for_stderr(&mut serve, "serving").await;

    let out = run_gatt().await.expect("gatt");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("paired: Encrypted"), "{}", text(&out.stderr));

    // Both sides stored the bond in their directory.
    let out = bonds(&["list", "--bonds", cb]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "C0:5E:C0:00:00:01/random secure-connections unauthenticated key-size 16 irk yes cccds 0\n"
    );
    let out = bonds(&["list", "--bonds", sb]).await;
    assert!(text(&out.stdout).starts_with("C0:5E:C0:00:00:02/random secure-connections unauthenticated"));

    // A new serve process, the same directories: encrypted with the stored keys, no pairing.
    assert!(interrupt(&mut serve).await.success());
    let mut serve = start_serve();
    wait_for_stderr(&mut serve, "serving").await;
    let out = run_gatt().await.expect("gatt");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).ends_with(&format!(": {}\n", hex(b"encrypted"))));
    let err = text(&out.stderr);
    assert!(err.contains("encrypted with the bond: Encrypted") && !err.contains("paired:"), "{err}");

    // Remove the bond by its bare address; removing it again is an error.
    let out = bonds(&["remove", "C0:5E:C0:00:00:01", "--bonds", cb]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "removed C0:5E:C0:00:00:01/random\n");
    let out = bonds(&["list", "--bonds", cb]).await;
    assert!(out.status.success() && out.stdout.is_empty());
    assert!(text(&out.stderr).contains("no bonds in"), "{}", text(&out.stderr));
    let out = bonds(&["remove", "C0:5E:C0:00:00:01/random", "--bonds", cb]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no bond with C0:5E:C0:00:00:01/random"), "{}", text(&out.stderr));

    // A corrupt bond file is skipped with a warning; the good one is still listed.
    std::fs::write(server_bonds.join("C0-11-22-33-44-55-random.bond"), "format = 1\nnonsense").expect("write");
    let out = bonds(&["list", "--bonds", sb]).await;
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).lines().count(), 1, "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("warning: skipped bond file"), "{}", text(&out.stderr));

    let _ = serve.kill().await;
    let _ = controller.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn bad_pairing_options_are_explained_before_anything_starts() {
    let dir = temp_dir("badsec");
    let file = dir.join("plain-file");
    std::fs::write(&file, "x").expect("write");
    let file = file.to_str().expect("utf-8");
    let missing = dir.join("missing");
    let missing = missing.to_str().expect("utf-8");
    // A transport that refuses: every case must fail on the options, before connecting.
    let t = "tcp-client:127.0.0.1:1";
    let cases: &[(&[&str], &str)] = &[
        (&["gatt", "--name", "x", "--io", "bogus", "read", "3"], "possible values: display-only, display-yesno"),
        (&["gatt", "--name", "x", "--io", "keyboard-only", "--passkey", "1234567", "read", "3"], "0-999999"),
        (&["gatt", "--name", "x", "--io", "keyboard-only", "--passkey", "12ab", "read", "3"], "0-999999"),
        (&["gatt", "--name", "x", "--passkey", "123456", "read", "3"], "--passkey needs --io keyboard-only"),
        (&["serve", "--confirm"], "--confirm needs --io display-yesno"),
        (&["gatt", "--name", "x", "--bonds", file, "read", "3"], "not a directory"),
        (&["serve", "--bonds", file], "not a directory"),
        (&["at", "--bonds", file], "not a directory"),
        (&["bonds", "list", "--bonds", missing], "no such directory"),
        (&["bonds", "remove", "nonsense", "--bonds", dir.to_str().expect("utf-8")], "expected a Bluetooth address"),
        (&["bonds", "remove", "00:11:22:33:44:55/other", "--bonds", dir.to_str().expect("utf-8")], "public or random"),
    ];
    for (args, expected) in cases {
        let out = gattling().args(["--transport", t]).args(*args).output().await.expect("run");
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("Connection refused") && !err.contains("panicked"), "{args:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
