//! `gattling completions SHELL` and `gattling man` come from the clap definition.

mod common;

use common::*;

#[tokio::test]
async fn completions_for_every_shell_know_the_commands_and_flags() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = gattling().args(["completions", shell]).output().await.expect("run");
        assert!(out.status.success(), "{shell}: {}", String::from_utf8_lossy(&out.stderr));
        let script = String::from_utf8_lossy(&out.stdout);
        for word in [
            "scan",
            "serve",
            "gatt",
            "btsnoop",
            "filter-service",
            "notify-every",
            "bonds",
            "passkey",
            "keyboard-display",
        ] {
            assert!(script.contains(word), "{shell} completion lacks {word:?}");
        }
    }
    if std::process::Command::new("bash").arg("--version").output().is_ok() {
        // The bash script at least parses.
        let out = gattling().args(["completions", "bash"]).output().await.expect("run");
        let check = std::process::Command::new("bash")
            .args(["-n", "-c", &String::from_utf8_lossy(&out.stdout)])
            .status()
            .expect("bash");
        assert!(check.success());
    }
    let out = gattling().args(["completions", "tcsh"]).output().await.expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn man_page_is_roff_with_the_options() {
    let out = gattling().arg("man").output().await.expect("run");
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH gattling 1"), "{page}");
    for word in [".SH SYNOPSIS", ".SH OPTIONS", "btsnoop", "completions", "serve", "bonds"] {
        assert!(page.contains(word), "man page lacks {word:?}");
    }
}

#[tokio::test]
async fn a_reader_that_closes_the_pipe_early_is_not_a_failure() {
    for args in [&["completions", "bash"][..], &["man"][..]] {
        let mut child = gattling()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run");
        // Close the reading end before the output is written, as `| head -c0` would.
        drop(child.stdout.take());
        let out = child.wait_with_output().await.expect("exit");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
