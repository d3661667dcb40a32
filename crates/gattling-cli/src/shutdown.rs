//! Ctrl-C (SIGINT) and SIGTERM: the handlers are installed once, before any command starts, so a
//! signal is never lost to a race with the command's first await; commands wait on [`requested`].

use std::sync::OnceLock;
use tokio::sync::watch;

static STOP: OnceLock<watch::Receiver<bool>> = OnceLock::new();

/// Installs the signal handlers (call once, inside the runtime, before anything starts).
pub fn install() {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = watch::channel(false);
    let _ = STOP.set(rx);
    let (int, term) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()));
    tokio::spawn(async move {
        match (int, term) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        tracing::debug!("interrupted: stopping");
        let _ = tx.send(true);
    });
}

/// Completes once Ctrl-C or SIGTERM arrived (never, if [`install`] was not called).
pub async fn requested() {
    let Some(rx) = STOP.get() else {
        return std::future::pending().await;
    };
    let mut rx = rx.clone();
    let _ = rx.wait_for(|stop| *stop).await;
}
