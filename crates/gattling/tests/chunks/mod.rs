//! A host reader for scripted controllers that write in chunks: each read returns bytes of one
//! chunk only, as a packet transport does, so chunk boundaries are read boundaries; EOF once the
//! sender is gone. Shared by `scripted_controller.rs` and `faults.rs`.

use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

/// Reads the chunks sent on `rx`, one at a time.
pub struct Chunks {
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    rest: Vec<u8>,
}

impl Chunks {
    /// A reader of the chunks sent on `rx`.
    pub fn new(rx: mpsc::UnboundedReceiver<Vec<u8>>) -> Self {
        Chunks { rx, rest: Vec::new() }
    }
}

impl AsyncRead for Chunks {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.rest.is_empty() {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(chunk)) => self.rest = chunk,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = buf.remaining().min(self.rest.len());
        buf.put_slice(&self.rest[..n]);
        self.rest.drain(..n);
        Poll::Ready(Ok(()))
    }
}
