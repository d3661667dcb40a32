//! Logging (`-v`/`-vv`, `RUST_LOG`) and the one-line failure report with its exit code:
//! 1 for an operation that failed, 2 for bad usage or input.

use gattling::transport::TransportError;
use std::process::ExitCode;

/// Logs to stderr through `tracing`: warnings by default, `-v` info, `-vv` debug, `-vvv` trace;
/// without `-v`, `RUST_LOG` (a tracing filter such as `gattling=debug`) decides when set.
pub fn init_logging(verbose: u8) {
    let from_env = || {
        std::env::var("RUST_LOG")
            .ok()
            .filter(|v| !v.is_empty())
            .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
    };
    let filter = match verbose {
        0 => from_env().unwrap_or_else(|| tracing_subscriber::EnvFilter::new("warn")),
        1 => tracing_subscriber::EnvFilter::new("info"),
        2 => tracing_subscriber::EnvFilter::new("debug"),
        _ => tracing_subscriber::EnvFilter::new("trace"),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Whether a failure was bad usage or input (exit 2) rather than a failed operation (exit 1).
pub fn is_usage(e: &gattling::Error) -> bool {
    match e {
        gattling::Error::InvalidArgument(_) => true,
        gattling::Error::Transport(t) => matches!(**t, TransportError::Spec(_)),
        _ => false,
    }
}

/// What to try after a failure, when there is something useful to say.
fn hint(e: &gattling::Error) -> Option<&'static str> {
    match e {
        gattling::Error::Transport(t) => match &**t {
            TransportError::Io { source, .. } if source.kind() == std::io::ErrorKind::ConnectionRefused => {
                Some("is the controller running? Start one with `gattling controller` or rootcanal")
            }
            TransportError::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                Some("check the device's permissions: the dialout group, or CAP_NET_ADMIN for hci-socket")
            }
            _ => None,
        },
        gattling::Error::TransportClosed(_) => Some("the controller went away; check it and retry"),
        gattling::Error::Timeout(what) if what.contains("advertiser") => {
            Some("is the peer advertising? check --name/--address, or raise --scan-timeout")
        }
        gattling::Error::Timeout(_) => {
            Some("the controller or the peer did not answer in time; retry with -v to see why")
        }
        gattling::Error::Disconnected { .. } => Some("the peer went away; check it is in range and retry"),
        gattling::Error::Unsupported(_) => Some("use a controller that supports it"),
        gattling::Error::Gatt(gattling::proto::gatt::client::ClientError::Att { code, .. })
            if *code == gattling::proto::att::ErrorCode::INSUFFICIENT_ENCRYPTION =>
        {
            Some("the attribute needs an encrypted link: add --pair")
        }
        gattling::Error::Gatt(gattling::proto::gatt::client::ClientError::Att { code, .. })
            if *code == gattling::proto::att::ErrorCode::INSUFFICIENT_AUTHENTICATION =>
        {
            // Core Vol 3 Part C §10.3.1: no usable key yet, or one without MITM protection.
            Some("the peer wants pairing first: add --pair (and --io with --passkey or --confirm if it needs MITM protection)")
        }
        gattling::Error::Pairing { .. } | gattling::Error::InsufficientSecurity { .. } => {
            Some("check --io, --passkey and --confirm on both sides")
        }
        _ => None,
    }
}

/// Prints the failure as one line on stderr and returns the exit code.
pub fn fail(e: &gattling::Error) -> ExitCode {
    let mut line = format!("gattling: {e}");
    if let Some(h) = hint(e) {
        line += &format!("; {h}");
    }
    // One line, whatever the error's sources put in it.
    let line: String = line.split_whitespace().collect::<Vec<_>>().join(" ");
    eprintln!("{line}");
    if is_usage(e) {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}
