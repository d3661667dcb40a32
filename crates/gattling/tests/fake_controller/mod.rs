//! A fake HCI controller in the same process as the host: its own `AsyncRead`/`AsyncWrite`
//! pair over shared state, for [`gattling::Host::start`]; no sockets, no radio, no controller
//! emulation. Shared by `examples/host_bench.rs` (`#[path]` include) and `tests/no_alloc.rs`.
//!
//! - Every HCI command is answered with Command Complete (status 0, plausible return
//!   parameters; zero-filled ones of the right length for the rest) or, for the asynchronous
//!   ones, Command Status.
//! - One LE Connection Complete (peripheral role, handle [`CONN_HANDLE`]) is reported once
//!   advertising is enabled.
//! - Every ACL packet the host writes is returned as credit: one Number Of Completed Packets
//!   event on the next read covers every ACL packet written since the last one, so the host's
//!   ACL credits never run out.
//! - ACL packets for the host: [`Fake::send_att`] queues an arbitrary ATT PDU (as if from the
//!   peer), [`Fake::send_h4`] an arbitrary H4 packet; [`Fake::arm`] hands the host a stream of
//!   one repeated request ([`Fake::set_request`]), lockstep or with a window of outstanding
//!   requests, counting the responses.
//! - What the host wrote: ATT PDUs counted per opcode ([`Fake::att_sent`],
//!   [`Fake::wait_att_sent`]) and the last one kept ([`Fake::last_att`]).
//!
//! One packet is handed over per `read` call (as trouble-bench's fake does) unless coalescing
//! is on. Nothing here allocates once the host is connected and the fake's buffers are warm
//! (commands aside), so the fake can sit inside an allocation-counting window.

#![allow(dead_code)]

use gattling::Transport;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The connection handle of the one link.
pub const CONN_HANDLE: u16 = 0x0040;
/// LE ACL data packet length the fake reports.
pub const ACL_LEN: u16 = 251;
/// LE ACL data packets the fake reports it can hold.
pub const ACL_NUM: u8 = 8;
/// The ATT fixed channel (Core Vol 3 Part A §2.1).
const ATT_CID: u16 = 0x0004;
/// Room reserved for queued packets to the host, so queueing does not allocate.
const INJECT_BYTES: usize = 64 * 1024;
const INJECT_PACKETS: usize = 2048;

/// What the task waiting in [`Fake::wait`] waits for (one waiter at a time).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    Nothing,
    Connected,
    /// Every armed request answered.
    Done,
    /// At least `.1` ATT PDUs with opcode `.0` written by the host.
    Sent(u8, u64),
}

struct State {
    /// Command Complete / Status events not yet read by the host, one packet per read.
    control: VecDeque<Vec<u8>>,
    adv_enabled: bool,
    conn_sent: bool,
    pending_nocp: u16,
    /// H4 packets queued for the host (back to back) and their lengths.
    inject: VecDeque<u8>,
    inject_lens: VecDeque<usize>,
    /// The ATT request handed to the host by [`Fake::arm`], and the opcode of its answer.
    request: Vec<u8>,
    reply_opcode: u8,
    to_send: u64,
    window: u32,
    /// Hand the host every packet that is ready in one read (a byte stream such as a UART or
    /// TCP delivers them so), instead of one packet per read as trouble-bench does.
    coalesce: bool,
    outstanding: u32,
    responses: u64,
    target: u64,
    /// ACL packets from the host that were not answers to the armed requests.
    other_tx: u64,
    /// ATT PDUs written by the host, per opcode.
    att_tx: [u64; 256],
    /// The last ATT PDU written by the host.
    last_att: Vec<u8>,
    /// Bytes of a packet the host wrote only partly (kept across writes).
    carry: Vec<u8>,
    /// `poll_read` calls that returned a packet; `poll_write` calls.
    reads: u64,
    writes: u64,
    wait: Wait,
    rx_waker: Option<Waker>,
    done_waker: Option<Waker>,
}

impl Default for State {
    fn default() -> Self {
        State {
            control: VecDeque::new(),
            adv_enabled: false,
            conn_sent: false,
            pending_nocp: 0,
            inject: VecDeque::with_capacity(INJECT_BYTES),
            inject_lens: VecDeque::with_capacity(INJECT_PACKETS),
            request: Vec::new(),
            reply_opcode: 0,
            to_send: 0,
            window: 1,
            coalesce: false,
            outstanding: 0,
            responses: 0,
            target: 0,
            other_tx: 0,
            att_tx: [0; 256],
            last_att: Vec::with_capacity(usize::from(ACL_LEN)),
            carry: Vec::with_capacity(1024),
            reads: 0,
            writes: 0,
            wait: Wait::Nothing,
            rx_waker: None,
            done_waker: None,
        }
    }
}

/// Counters of the fake transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// `poll_read` calls that handed the host at least one packet.
    pub reads: u64,
    /// `poll_write` calls.
    pub writes: u64,
    /// ACL packets from the host that were not answers to armed requests.
    pub other_tx: u64,
}

/// The fake controller; [`Fake::transport`] gives the host its two ends.
#[derive(Default)]
pub struct Fake {
    st: Mutex<State>,
}

fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

impl Fake {
    pub fn new() -> Arc<Fake> {
        Arc::new(Fake::default())
    }

    /// The host's transport over this fake.
    pub fn transport(self: &Arc<Self>) -> Transport {
        Transport::new(FakeReader(self.clone()), FakeWriter(self.clone()), "fake in-process controller")
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps up to `window` armed requests outstanding (default 1: lockstep).
    pub fn set_window(&self, window: u32) {
        self.lock().window = window;
    }

    /// Hands the host every ready packet in one read.
    pub fn set_coalesce(&self, on: bool) {
        self.lock().coalesce = on;
    }

    /// The ATT request [`Fake::arm`] hands to the host; its answer is the PDU with the next
    /// opcode (a Read Request 0x0a is answered by a Read Response 0x0b).
    pub fn set_request(&self, pdu: &[u8]) {
        assert!(!pdu.is_empty() && pdu.len() <= usize::from(ACL_LEN) - 4, "request does not fit one ACL packet");
        let mut s = self.lock();
        s.request.clear();
        s.request.extend_from_slice(pdu);
        s.reply_opcode = pdu[0].wrapping_add(1);
    }

    /// Hands `n` more requests to the host.
    pub fn arm(&self, n: u64) {
        let waker = {
            let mut s = self.lock();
            s.to_send = n;
            s.target = s.responses + n;
            s.rx_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Queues one H4 packet (type octet first) for the host; it is handed over once the link
    /// is up, after the packets queued before it.
    pub fn send_h4(&self, packet: &[u8]) {
        assert!(packet.len() <= 300, "packet too long for the fake controller");
        let waker = {
            let mut s = self.lock();
            s.inject.extend(packet);
            s.inject_lens.push_back(packet.len());
            s.rx_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Queues one ATT PDU for the host, as the peer would send it: one ACL packet on the ATT
    /// channel of [`CONN_HANDLE`].
    pub fn send_att(&self, pdu: &[u8]) {
        let mut pkt = [0u8; 9 + ACL_LEN as usize - 4];
        let n = att_packet(pdu, &mut pkt);
        self.send_h4(&pkt[..n]);
    }

    /// How many ATT PDUs with `opcode` the host has written.
    pub fn att_sent(&self, opcode: u8) -> u64 {
        self.lock().att_tx[usize::from(opcode)]
    }

    /// The last ATT PDU the host wrote, into `out` (its contents replaced).
    pub fn last_att(&self, out: &mut Vec<u8>) {
        let s = self.lock();
        out.clear();
        out.extend_from_slice(&s.last_att);
    }

    /// Counters of the fake transport.
    pub fn counters(&self) -> Counters {
        let s = self.lock();
        Counters { reads: s.reads, writes: s.writes, other_tx: s.other_tx }
    }

    async fn wait(&self, what: Wait) {
        std::future::poll_fn(|cx| {
            let mut s = self.lock();
            if s.met(what) {
                s.wait = Wait::Nothing;
                Poll::Ready(())
            } else {
                s.wait = what;
                register(&mut s.done_waker, cx);
                Poll::Pending
            }
        })
        .await
    }

    /// Resolves once every armed request has been answered.
    pub async fn wait_done(&self) {
        self.wait(Wait::Done).await
    }

    /// Resolves once the LE Connection Complete has been handed to the host.
    pub async fn wait_connected(&self) {
        self.wait(Wait::Connected).await
    }

    /// Resolves once the host has written at least `count` ATT PDUs with `opcode` in all.
    pub async fn wait_att_sent(&self, opcode: u8, count: u64) {
        self.wait(Wait::Sent(opcode, count)).await
    }
}

/// Writes one H4 ACL packet carrying `pdu` on the ATT channel of [`CONN_HANDLE`] into `out`;
/// its length.
fn att_packet(pdu: &[u8], out: &mut [u8]) -> usize {
    assert!(pdu.len() <= usize::from(ACL_LEN) - 4, "ATT PDU does not fit one ACL packet");
    // PB = 0b10, first automatically flushable packet.
    let h = (CONN_HANDLE | (0b10 << 12)).to_le_bytes();
    let acl = ((pdu.len() + 4) as u16).to_le_bytes();
    let l2 = (pdu.len() as u16).to_le_bytes();
    let c = ATT_CID.to_le_bytes();
    out[..9].copy_from_slice(&[0x02, h[0], h[1], acl[0], acl[1], l2[0], l2[1], c[0], c[1]]);
    out[9..9 + pdu.len()].copy_from_slice(pdu);
    9 + pdu.len()
}

/// Return parameters after the status octet, by opcode (Core Vol 4 Part E §7); commands not
/// listed get none.
fn return_params(opcode: u16) -> Vec<u8> {
    match opcode {
        // Read Local Version Information: HCI 5.4 (0x0d), revision, LMP 5.4, company 0xFFFF, subversion.
        0x1001 => vec![0x0d, 0x01, 0x00, 0x0d, 0xff, 0xff, 0x01, 0x00],
        // Read Local Supported Commands: 64 octets; octet 41 bit 5 (LE Read Buffer Size v2) clear,
        // so the host asks v1, as trouble-bench's fake answers it.
        0x1002 => {
            let mut v = vec![0xff; 64];
            v[41] &= !0x20;
            v
        }
        // Read Local Supported Features: LE Supported (Controller), BR/EDR Not Supported.
        0x1003 => vec![0, 0, 0, 0, 0x60, 0, 0, 0],
        // Read Buffer Size.
        0x1005 => vec![0x1b, 0x00, 0, 8, 0],
        // Read BD_ADDR.
        0x1009 => vec![0x01, 0x02, 0x03, 0x04, 0x05, 0xc0],
        // LE Read Buffer Size v1: 251 x 8, as trouble-bench's fake.
        0x2002 => {
            let l = ACL_LEN.to_le_bytes();
            vec![l[0], l[1], ACL_NUM]
        }
        // LE Read Local Supported Features, LE Rand.
        0x2003 | 0x2018 => vec![0; 8],
        // LE Read Advertising Physical Channel Tx Power.
        0x2007 => vec![0],
        // LE Encrypt.
        0x2017 => vec![0; 16],
        // LE Set Data Length: the handle.
        0x2022 => CONN_HANDLE.to_le_bytes().to_vec(),
        // LE Read Buffer Size v2.
        0x2060 => {
            let l = ACL_LEN.to_le_bytes();
            vec![l[0], l[1], ACL_NUM, 0, 0, 0]
        }
        _ => Vec::new(),
    }
}

/// Commands answered with Command Status (Core Vol 4 Part E §7: the asynchronous ones).
fn answered_with_status(opcode: u16) -> bool {
    matches!(opcode, 0x0406 | 0x200d | 0x2013 | 0x2016 | 0x2032)
}

impl State {
    fn met(&self, what: Wait) -> bool {
        match what {
            Wait::Nothing => false,
            Wait::Connected => self.conn_sent,
            Wait::Done => self.to_send == 0 && self.responses >= self.target,
            Wait::Sent(op, n) => self.att_tx[usize::from(op)] >= n,
        }
    }

    /// Takes one complete H4 packet the host wrote.
    fn host_packet(&mut self, p: &[u8]) {
        match p[0] {
            0x01 => {
                let opcode = u16::from_le_bytes([p[1], p[2]]);
                let params = &p[4..];
                if opcode == 0x200a && params.first() == Some(&1) {
                    self.adv_enabled = true;
                }
                let o = opcode.to_le_bytes();
                let ev = if answered_with_status(opcode) {
                    vec![0x04, 0x0f, 4, 0x00, 1, o[0], o[1]]
                } else {
                    let ret = return_params(opcode);
                    let mut ev = vec![0x04, 0x0e, (4 + ret.len()) as u8, 1, o[0], o[1], 0x00];
                    ev.extend_from_slice(&ret);
                    ev
                };
                self.control.push_back(ev);
            }
            0x02 => {
                self.pending_nocp += 1;
                // H4 type, handle and flags (2), length (2), then in a first fragment the
                // L2CAP length (2), CID (2) and the ATT PDU.
                let first = (p[2] >> 4) & 0b11 != 0b01;
                let att = (first && p.len() >= 9 && u16::from_le_bytes([p[7], p[8]]) == ATT_CID).then(|| &p[9..]);
                match att {
                    Some(att) if !att.is_empty() => {
                        self.att_tx[usize::from(att[0])] += 1;
                        self.last_att.clear();
                        self.last_att.extend_from_slice(att);
                        if att[0] == self.reply_opcode {
                            self.responses += 1;
                            self.outstanding = self.outstanding.saturating_sub(1);
                        } else {
                            self.other_tx += 1;
                        }
                    }
                    _ => self.other_tx += 1,
                }
            }
            other => panic!("fake controller: unexpected H4 packet type {other:#04x}"),
        }
    }

    /// Splits `bytes` into H4 packets; returns how many bytes form complete packets.
    fn host_bytes(&mut self, bytes: &[u8]) -> usize {
        let mut at = 0;
        loop {
            let rest = &bytes[at..];
            let len = match rest.first() {
                Some(0x01) if rest.len() >= 4 => 4 + rest[3] as usize,
                Some(0x02) if rest.len() >= 5 => 5 + u16::from_le_bytes([rest[3], rest[4]]) as usize,
                Some(0x01 | 0x02) | None => return at,
                Some(other) => panic!("fake controller: unexpected H4 packet type {other:#04x}"),
            };
            if rest.len() < len {
                return at;
            }
            self.host_packet(&rest[..len]);
            at += len;
        }
    }

    /// The next packet for the host, written into `b`; its length, or 0 if there is none.
    fn next_packet(&mut self, b: &mut [u8]) -> usize {
        if let Some(ev) = self.control.pop_front() {
            b[..ev.len()].copy_from_slice(&ev);
            return ev.len();
        }
        if self.adv_enabled && !self.conn_sent {
            self.conn_sent = true;
            if let Some(w) = self.done_waker.take() {
                w.wake();
            }
            // LE Meta, LE Connection Complete: status 0, handle, role peripheral, peer public
            // 06:05:04:03:02:01, interval 0x18, latency 0, timeout 0x1f4, accuracy 0
            // (the bytes trouble-bench's fake sends).
            let h = CONN_HANDLE.to_le_bytes();
            let ev = [
                0x04, 0x3e, 19, 0x01, 0x00, h[0], h[1], 0x01, 0x00, 1, 2, 3, 4, 5, 6, 0x18, 0x00, 0x00, 0x00, 0xf4,
                0x01, 0x00,
            ];
            b[..ev.len()].copy_from_slice(&ev);
            return ev.len();
        }
        if self.pending_nocp > 0 {
            let c = self.pending_nocp.to_le_bytes();
            self.pending_nocp = 0;
            let h = CONN_HANDLE.to_le_bytes();
            let ev = [0x04, 0x13, 5, 1, h[0], h[1], c[0], c[1]];
            b[..ev.len()].copy_from_slice(&ev);
            return ev.len();
        }
        if !self.conn_sent {
            return 0;
        }
        if let Some(len) = self.inject_lens.pop_front() {
            for (dst, src) in b[..len].iter_mut().zip(self.inject.drain(..len)) {
                *dst = src;
            }
            return len;
        }
        if self.to_send > 0 && self.outstanding < self.window {
            self.to_send -= 1;
            self.outstanding += 1;
            return att_packet(&self.request, b);
        }
        0
    }
}

struct FakeReader(Arc<Fake>);
struct FakeWriter(Arc<Fake>);

impl AsyncRead for FakeReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut s = self.0.lock();
        // The packet is written straight into the host's buffer (4096 bytes, already
        // initialised by the host, so this costs no memset); every packet here is at most 300
        // bytes long.
        let out = buf.initialize_unfilled();
        assert!(out.len() >= 300, "host read buffer too small for the fake controller");
        let mut n = s.next_packet(out);
        while s.coalesce && n > 0 && out.len() - n >= 300 {
            match s.next_packet(&mut out[n..]) {
                0 => break,
                more => n += more,
            }
        }
        if n == 0 {
            register(&mut s.rx_waker, cx);
            return Poll::Pending;
        }
        s.reads += 1;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for FakeWriter {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        let (rx, done) = {
            let mut s = self.0.lock();
            let s = &mut *s;
            s.writes += 1;
            if s.carry.is_empty() {
                let used = s.host_bytes(bytes);
                s.carry.extend_from_slice(&bytes[used..]);
            } else {
                let mut carry = std::mem::take(&mut s.carry);
                carry.extend_from_slice(bytes);
                let used = s.host_bytes(&carry);
                carry.drain(..used);
                s.carry = carry;
            }
            let done = if s.met(s.wait) { s.done_waker.take() } else { None };
            (s.rx_waker.take(), done)
        };
        // Wake outside the lock (the woken task may run on another worker at once).
        if let Some(w) = rx {
            w.wake();
        }
        if let Some(w) = done {
            w.wake();
        }
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
