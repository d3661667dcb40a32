//! One ATT bearer (Core Vol 3 Part F §3.2.11, §3.3): the state both ATT roles share on a link.
//!
//! A bearer owns the single ATT_MTU of the link (§3.4.2.2: one value, whichever side exchanged
//! it), the one outstanding request in each direction (§3.3.2), the one unconfirmed indication
//! (§3.4.7.2) and the 30 s transaction timeout (§3.3.3), and routes every received PDU by its
//! opcode class to the server or the client role. Sans-IO: time comes in as microseconds, the
//! caller drives [`Bearer::poll_timeout`] / [`Bearer::handle_timeout`].

use super::opcode::{self, PduKind};
use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// The ATT transaction timeout (Core Vol 3 Part F §3.3.3): 30 s, in microseconds.
pub const TRANSACTION_TIMEOUT_US: u64 = 30_000_000;
/// The default and minimum LE ATT_MTU (Core Vol 3 Part F §3.2.8).
pub const DEFAULT_MTU: u16 = 23;
/// The largest ATT_MTU gattling offers: a 512-byte value plus a Read Blob Response header and
/// the largest Prepare Write header (Core Vol 3 Part F §3.2.9, §3.4.6.1).
pub const MAX_MTU: u16 = 517;

/// Where a received PDU goes (Core Vol 3 Part F §3.3: requests, commands and confirmations are
/// for the server role; responses, notifications and indications for the client role).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Route {
    /// A request, a command, an unknown opcode (answered Request Not Supported unless it has
    /// the command flag, §3.4.1.1): for the local server.
    Server,
    /// A Handle Value Confirmation of our outstanding indication; the next queued indication
    /// may now go out ([`Bearer::poll_indication`]).
    Confirmation,
    /// The answer to our outstanding request: for the local client.
    Response,
    /// A Handle Value Notification or Multiple Handle Value Notification: for the local client.
    Notification,
    /// A Handle Value Indication: for the local client, which confirms it.
    Indication,
    /// Not delivered; the reason says why.
    Dropped(DropReason),
}

/// Why a received PDU was not delivered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DropReason {
    /// An empty PDU.
    Empty,
    /// The bearer is closed after a transaction timeout (§3.3.3).
    Closed,
    /// A response while no request of ours was outstanding.
    UnexpectedResponse,
    /// A confirmation while no indication of ours was outstanding.
    UnexpectedConfirmation,
    /// A second request before we answered the first (§3.3.2).
    RequestWhilePending,
    /// A confirmation with parameters (a malformed PDU; only requests are answered, §3.4.1.1).
    Malformed,
}

/// Why a PDU may not be sent now.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum BearerError {
    /// The bearer is closed after a transaction timeout (Core Vol 3 Part F §3.3.3).
    #[error("the ATT bearer is closed after a transaction timeout")]
    Closed,
    /// A request of ours is still unanswered (Core Vol 3 Part F §3.3.2).
    #[error("an ATT request is already outstanding on this bearer")]
    RequestPending,
    /// An indication of ours is still unconfirmed (Core Vol 3 Part F §3.4.7.2).
    #[error("an indication is already awaiting its confirmation")]
    IndicationPending,
    /// A response while no request from the peer is open.
    #[error("no ATT request from the peer is waiting for a response")]
    NoRequest,
    /// The PDU is empty.
    #[error("empty ATT PDU")]
    Empty,
}

/// Which transaction timed out (Core Vol 3 Part F §3.3.3).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Timeout {
    /// Our request went unanswered.
    Request,
    /// Our indication went unconfirmed.
    Indication,
    /// A request from the peer was not answered locally in time.
    Response,
}

/// Counters of a bearer, for diagnostics.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct BearerStats {
    /// PDUs dropped on receipt (see [`DropReason`]).
    pub dropped: u32,
    /// Of those, responses with no request outstanding.
    pub unexpected_responses: u32,
}

/// The little-endian u16 at `at`, if the PDU is long enough.
fn le16(pdu: &[u8], at: usize) -> Option<u16> {
    match pdu.get(at..at + 2)? {
        &[a, b] => Some(u16::from_le_bytes([a, b])),
        _ => None,
    }
}

/// The state of one ATT bearer (Core Vol 3 Part F §3.2.11).
#[derive(Clone, Debug)]
pub struct Bearer {
    mtu: u16,
    local_mtu: u16,
    /// Our outstanding request: its opcode and when it was sent.
    request: Option<(u8, u64)>,
    /// The peer's request we have not answered yet: its opcode and when it arrived.
    peer_request: Option<(u8, u64)>,
    /// When our unconfirmed indication was sent.
    indication: Option<u64>,
    /// Indications waiting for the outstanding one to be confirmed.
    queued: VecDeque<Vec<u8>>,
    closed: bool,
    stats: BearerStats,
}

impl Bearer {
    /// A bearer at ATT_MTU 23 that offers `local_mtu` (clamped to 23..=517) as its receive MTU.
    pub fn new(local_mtu: u16) -> Self {
        Self {
            mtu: DEFAULT_MTU,
            local_mtu: local_mtu.clamp(DEFAULT_MTU, MAX_MTU),
            request: None,
            peer_request: None,
            indication: None,
            queued: VecDeque::new(),
            closed: false,
            stats: BearerStats::default(),
        }
    }

    /// The ATT_MTU of the bearer (Core Vol 3 Part F §3.4.2.2).
    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    /// The receive MTU this side offers in Exchange MTU.
    pub fn local_mtu(&self) -> u16 {
        self.local_mtu
    }

    /// Sets the receive MTU this side offers (clamped to 23..=517); the current ATT_MTU never
    /// exceeds it.
    pub fn set_local_mtu(&mut self, local_mtu: u16) {
        self.local_mtu = local_mtu.clamp(DEFAULT_MTU, MAX_MTU);
        self.mtu = self.mtu.min(self.local_mtu);
    }

    /// True after a transaction timeout: no more ATT PDUs on this bearer (§3.3.3).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// True while a request of ours awaits its response.
    pub fn request_pending(&self) -> bool {
        self.request.is_some()
    }

    /// True while a request from the peer awaits our response.
    pub fn peer_request_pending(&self) -> bool {
        self.peer_request.is_some()
    }

    /// True while an indication of ours awaits its confirmation.
    pub fn indication_pending(&self) -> bool {
        self.indication.is_some()
    }

    /// Diagnostic counters.
    pub fn stats(&self) -> BearerStats {
        self.stats
    }

    fn agree_mtu(&mut self, theirs: u16) {
        // The smaller of the two receive MTUs, never below the default (§3.4.2.2).
        self.mtu = theirs.clamp(DEFAULT_MTU, self.local_mtu);
    }

    fn dropped(&mut self, why: DropReason) -> Route {
        self.stats.dropped = self.stats.dropped.saturating_add(1);
        if why == DropReason::UnexpectedResponse {
            self.stats.unexpected_responses = self.stats.unexpected_responses.saturating_add(1);
        }
        Route::Dropped(why)
    }

    /// Takes one PDU from the peer at time `now` and says which role it is for. Updates the
    /// ATT_MTU on Exchange MTU (either direction) and closes the transactions it ends.
    pub fn receive(&mut self, pdu: &[u8], now: u64) -> Route {
        let Some(&op) = pdu.first() else { return self.dropped(DropReason::Empty) };
        if self.closed {
            return self.dropped(DropReason::Closed);
        }
        match opcode::kind(op) {
            Some(PduKind::Request) => {
                if self.peer_request.is_some() {
                    return self.dropped(DropReason::RequestWhilePending);
                }
                if op == opcode::EXCHANGE_MTU_REQ && pdu.len() == 3 {
                    // A malformed request is answered Invalid PDU and changes nothing.
                    if let Some(theirs) = le16(pdu, 1) {
                        self.agree_mtu(theirs);
                    }
                }
                self.peer_request = Some((op, now));
                Route::Server
            }
            Some(PduKind::Command) => Route::Server,
            Some(PduKind::Confirmation) => {
                if pdu.len() != 1 {
                    return self.dropped(DropReason::Malformed);
                }
                if self.indication.take().is_none() {
                    return self.dropped(DropReason::UnexpectedConfirmation);
                }
                Route::Confirmation
            }
            Some(PduKind::Response) => {
                let Some((request, _)) = self.request.take() else {
                    return self.dropped(DropReason::UnexpectedResponse);
                };
                if request == opcode::EXCHANGE_MTU_REQ && op == opcode::EXCHANGE_MTU_RSP && pdu.len() == 3 {
                    if let Some(theirs) = le16(pdu, 1) {
                        self.agree_mtu(theirs);
                    }
                }
                Route::Response
            }
            Some(PduKind::Notification) => Route::Notification,
            Some(PduKind::Indication) => Route::Indication,
            None if opcode::is_command(op) => Route::Server,
            None => {
                // An unknown request: the server answers Request Not Supported (§3.4.1.1).
                if self.peer_request.is_some() {
                    return self.dropped(DropReason::RequestWhilePending);
                }
                self.peer_request = Some((op, now));
                Route::Server
            }
        }
    }

    /// Re-stamps the peer's open request with the time it arrived. A caller that answers most
    /// requests at once may pass any `now` to [`Bearer::receive`] and stamp only the requests it
    /// leaves open (the 30 s timeout counts from this stamp, Core Vol 3 Part F §3.3.3).
    pub fn stamp_peer_request(&mut self, now: u64) {
        if let Some((_, at)) = self.peer_request.as_mut() {
            *at = now;
        }
    }

    /// Accounts for one PDU about to be sent at `now`: a request opens our transaction, a
    /// response (or Error Response) closes the peer's, an indication needs the previous one
    /// confirmed. On error nothing changes and the PDU must not be sent.
    pub fn send(&mut self, pdu: &[u8], now: u64) -> Result<(), BearerError> {
        let Some(&op) = pdu.first() else { return Err(BearerError::Empty) };
        if self.closed {
            return Err(BearerError::Closed);
        }
        let kind = opcode::kind(op);
        // An unknown opcode without the command flag is a request the peer answers with an
        // Error Response (§3.4.1.1), so it opens a transaction like any other.
        if kind == Some(PduKind::Request) || (kind.is_none() && !opcode::is_command(op)) {
            if self.request.is_some() {
                return Err(BearerError::RequestPending);
            }
            self.request = Some((op, now));
            return Ok(());
        }
        match kind {
            Some(PduKind::Response) if self.peer_request.take().is_none() => return Err(BearerError::NoRequest),
            Some(PduKind::Indication) => {
                if self.indication.is_some() {
                    return Err(BearerError::IndicationPending);
                }
                self.indication = Some(now);
            }
            _ => {}
        }
        Ok(())
    }

    /// Queues an indication PDU; it goes out through [`Bearer::poll_indication`] once no other
    /// indication is awaiting its confirmation (Core Vol 3 Part F §3.4.7.2).
    pub fn queue_indication(&mut self, pdu: Vec<u8>) {
        if !self.closed {
            self.queued.push_back(pdu);
        }
    }

    /// The next queued indication to send now, if none is outstanding; it counts as sent at `now`.
    pub fn poll_indication(&mut self, now: u64) -> Option<Vec<u8>> {
        if self.closed || self.indication.is_some() {
            return None;
        }
        let pdu = self.queued.pop_front()?;
        self.indication = Some(now);
        Some(pdu)
    }

    /// Indications queued behind the outstanding one.
    pub fn queued_indications(&self) -> usize {
        self.queued.len()
    }

    /// When the earliest open transaction times out, if any is open.
    #[inline]
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.closed {
            return None;
        }
        [self.request.map(|r| r.1), self.indication, self.peer_request.map(|r| r.1)]
            .into_iter()
            .flatten()
            .map(|t| t.saturating_add(TRANSACTION_TIMEOUT_US))
            .min()
    }

    /// Checks the transaction timers at `now`. When one has expired the bearer closes (no
    /// further ATT PDUs either way, §3.3.3; the caller should disconnect the link) and the
    /// expired transaction is returned.
    pub fn handle_timeout(&mut self, now: u64) -> Option<Timeout> {
        if self.closed {
            return None;
        }
        let expired = |t: Option<u64>| t.is_some_and(|t| now.saturating_sub(t) >= TRANSACTION_TIMEOUT_US);
        let which = if expired(self.request.map(|r| r.1)) {
            Timeout::Request
        } else if expired(self.indication) {
            Timeout::Indication
        } else if expired(self.peer_request.map(|r| r.1)) {
            Timeout::Response
        } else {
            return None;
        };
        self.close();
        Some(which)
    }

    /// Closes the bearer: open transactions and queued indications are dropped.
    pub fn close(&mut self) {
        self.closed = true;
        self.request = None;
        self.peer_request = None;
        self.indication = None;
        self.queued.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_opcode_class() {
        let mut b = Bearer::new(517);
        assert_eq!(b.receive(&[opcode::READ_REQ, 3, 0], 0), Route::Server);
        assert!(b.peer_request_pending());
        assert_eq!(b.send(&[opcode::READ_RSP, 1], 0), Ok(()));
        assert!(!b.peer_request_pending());
        assert_eq!(b.receive(&[opcode::WRITE_CMD, 3, 0, 1], 0), Route::Server);
        assert_eq!(b.receive(&[0x1F], 0), Route::Server, "unknown request goes to the server");
        assert_eq!(b.send(&[opcode::ERROR_RSP, 0x1F, 0, 0, 0x06], 0), Ok(()));
        assert_eq!(b.receive(&[0x7F], 0), Route::Server, "unknown command goes to the server");
        assert!(!b.peer_request_pending(), "a command opens no transaction");
        assert_eq!(b.receive(&[opcode::HANDLE_VALUE_NTF, 3, 0, 1], 0), Route::Notification);
        assert_eq!(b.receive(&[opcode::MULTIPLE_HANDLE_VALUE_NTF, 3, 0, 1, 0, 1], 0), Route::Notification);
        assert_eq!(b.receive(&[opcode::HANDLE_VALUE_IND, 3, 0, 1], 0), Route::Indication);
        assert_eq!(b.receive(&[], 0), Route::Dropped(DropReason::Empty));
    }

    #[test]
    fn a_restamped_request_times_out_from_its_new_stamp() {
        let mut b = Bearer::new(23);
        b.receive(&[opcode::READ_REQ, 3, 0], 0);
        b.stamp_peer_request(5_000_000);
        assert_eq!(b.poll_timeout(), Some(5_000_000 + TRANSACTION_TIMEOUT_US));
        assert_eq!(b.handle_timeout(TRANSACTION_TIMEOUT_US + 4_999_999), None);
        assert_eq!(b.handle_timeout(TRANSACTION_TIMEOUT_US + 5_000_000), Some(Timeout::Response));
        // With nothing open, a stamp changes nothing.
        let mut b = Bearer::new(23);
        b.stamp_peer_request(7);
        assert_eq!(b.poll_timeout(), None);
    }

    #[test]
    fn a_response_without_a_request_is_dropped_and_counted() {
        let mut b = Bearer::new(517);
        assert_eq!(b.receive(&[opcode::READ_RSP, 1], 0), Route::Dropped(DropReason::UnexpectedResponse));
        assert_eq!(b.stats().unexpected_responses, 1);
        b.send(&[opcode::READ_REQ, 3, 0], 0).unwrap();
        assert_eq!(b.receive(&[opcode::READ_RSP, 1], 0), Route::Response);
        assert_eq!(b.receive(&[opcode::READ_RSP, 1], 0), Route::Dropped(DropReason::UnexpectedResponse));
        assert_eq!(b.stats().unexpected_responses, 2);
        assert_eq!(b.stats().dropped, 2);
    }

    #[test]
    fn one_request_outstanding_in_each_direction() {
        let mut b = Bearer::new(517);
        b.send(&[opcode::READ_REQ, 3, 0], 0).unwrap();
        assert_eq!(b.send(&[opcode::READ_REQ, 3, 0], 0), Err(BearerError::RequestPending));
        // The peer's request is independent of ours.
        assert_eq!(b.receive(&[opcode::READ_REQ, 3, 0], 0), Route::Server);
        assert_eq!(b.receive(&[opcode::READ_REQ, 3, 0], 0), Route::Dropped(DropReason::RequestWhilePending));
        assert_eq!(b.send(&[opcode::WRITE_RSP], 0), Ok(()));
        assert_eq!(b.send(&[opcode::WRITE_RSP], 0), Err(BearerError::NoRequest));
    }

    #[test]
    fn an_unknown_request_we_send_opens_a_transaction() {
        let mut b = Bearer::new(23);
        b.send(&[0x1F, 1], 0).unwrap();
        assert!(b.request_pending());
        assert_eq!(b.receive(&[opcode::ERROR_RSP, 0x1F, 0, 0, 0x06], 0), Route::Response);
        b.send(&[0x7F, 1], 0).unwrap();
        assert!(!b.request_pending(), "an unknown command opens none");
    }

    #[test]
    fn the_mtu_is_one_value_whichever_side_exchanged_it() {
        // Our client exchanged it.
        let mut b = Bearer::new(247);
        b.send(&[opcode::EXCHANGE_MTU_REQ, 247, 0], 0).unwrap();
        assert_eq!(b.receive(&[opcode::EXCHANGE_MTU_RSP, 0x05, 0x02], 0), Route::Response);
        assert_eq!(b.mtu(), 247);
        // The peer's client exchanged it.
        let mut b = Bearer::new(517);
        assert_eq!(b.receive(&[opcode::EXCHANGE_MTU_REQ, 100, 0], 0), Route::Server);
        assert_eq!(b.mtu(), 100);
        // Never below 23, never above what we offer.
        let mut b = Bearer::new(64);
        b.receive(&[opcode::EXCHANGE_MTU_REQ, 5, 0], 0);
        assert_eq!(b.mtu(), 23);
        b.send(&[opcode::EXCHANGE_MTU_RSP, 64, 0], 0).unwrap();
        b.send(&[opcode::EXCHANGE_MTU_REQ, 64, 0], 0).unwrap();
        b.receive(&[opcode::EXCHANGE_MTU_RSP, 0xFF, 0xFF], 0);
        assert_eq!(b.mtu(), 64);
        // A malformed request leaves the MTU alone, short or long.
        let mut b = Bearer::new(517);
        b.receive(&[opcode::EXCHANGE_MTU_REQ, 100], 0);
        assert_eq!(b.mtu(), 23);
        b.send(&[opcode::ERROR_RSP, opcode::EXCHANGE_MTU_REQ, 0, 0, 0x04], 0).unwrap();
        b.receive(&[opcode::EXCHANGE_MTU_REQ, 0xF7, 0x00, 0x00], 0);
        assert_eq!(b.mtu(), 23);
    }

    #[test]
    fn indications_go_one_at_a_time() {
        let mut b = Bearer::new(23);
        b.queue_indication(alloc::vec![opcode::HANDLE_VALUE_IND, 3, 0, 1]);
        b.queue_indication(alloc::vec![opcode::HANDLE_VALUE_IND, 3, 0, 2]);
        assert_eq!(b.poll_indication(5), Some(alloc::vec![opcode::HANDLE_VALUE_IND, 3, 0, 1]));
        assert_eq!(b.poll_indication(6), None, "the first is unconfirmed");
        assert_eq!(b.send(&[opcode::HANDLE_VALUE_IND, 3, 0, 9], 6), Err(BearerError::IndicationPending));
        assert_eq!(b.receive(&[opcode::HANDLE_VALUE_CFM, 0], 7), Route::Dropped(DropReason::Malformed));
        assert!(b.indication_pending(), "a malformed confirmation confirms nothing");
        assert_eq!(b.receive(&[opcode::HANDLE_VALUE_CFM], 7), Route::Confirmation);
        assert_eq!(b.receive(&[opcode::HANDLE_VALUE_CFM], 7), Route::Dropped(DropReason::UnexpectedConfirmation));
        assert_eq!(b.poll_indication(8), Some(alloc::vec![opcode::HANDLE_VALUE_IND, 3, 0, 2]));
        assert_eq!(b.poll_timeout(), Some(8 + TRANSACTION_TIMEOUT_US));
    }

    proptest::proptest! {
        /// Any interleaving of received and sent PDUs and passing time keeps the bearer's
        /// invariants: the MTU stays within 23..=local, a timeout is due exactly while a
        /// transaction is open, and a closed bearer neither routes nor sends.
        #[test]
        fn any_sequence_keeps_the_invariants(
            local in 23u16..=600,
            ops in proptest::collection::vec(
                (0u8..4, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..6), 0u64..20_000_000),
                0..60,
            ),
        ) {
            let mut b = Bearer::new(local);
            let mut now = 0u64;
            for (what, pdu, dt) in ops {
                now += dt;
                match what {
                    0 => {
                        let route = b.receive(&pdu, now);
                        if b.is_closed() {
                            proptest::prop_assert!(matches!(route, Route::Dropped(_)));
                        }
                    }
                    1 => {
                        let closed = b.is_closed();
                        let r = b.send(&pdu, now);
                        if closed {
                            proptest::prop_assert!(r.is_err());
                        }
                    }
                    2 => {
                        b.queue_indication(pdu);
                        let _ = b.poll_indication(now);
                    }
                    _ => {
                        let due = b.poll_timeout();
                        let fired = b.handle_timeout(now);
                        proptest::prop_assert_eq!(fired.is_some(), due.is_some_and(|d| now >= d));
                    }
                }
                proptest::prop_assert!((DEFAULT_MTU..=local.min(MAX_MTU)).contains(&b.mtu()));
                let open = b.request_pending() || b.peer_request_pending() || b.indication_pending();
                proptest::prop_assert_eq!(b.poll_timeout().is_some(), open && !b.is_closed());
            }
        }
    }

    #[test]
    fn a_transaction_timeout_closes_the_bearer() {
        let mut b = Bearer::new(23);
        assert_eq!(b.poll_timeout(), None);
        b.send(&[opcode::READ_REQ, 3, 0], 100).unwrap();
        b.receive(&[opcode::READ_REQ, 3, 0], 200);
        assert_eq!(b.poll_timeout(), Some(100 + TRANSACTION_TIMEOUT_US));
        assert_eq!(b.handle_timeout(100 + TRANSACTION_TIMEOUT_US - 1), None);
        assert_eq!(b.handle_timeout(100 + TRANSACTION_TIMEOUT_US), Some(Timeout::Request));
        assert!(b.is_closed());
        assert_eq!(b.poll_timeout(), None);
        assert_eq!(b.receive(&[opcode::READ_RSP], 0), Route::Dropped(DropReason::Closed));
        assert_eq!(b.send(&[opcode::HANDLE_VALUE_NTF, 3, 0], 0), Err(BearerError::Closed));
        // An unanswered peer request times out too (a deferred answer that never came).
        let mut b = Bearer::new(23);
        b.receive(&[opcode::READ_REQ, 3, 0], 0);
        assert_eq!(b.handle_timeout(TRANSACTION_TIMEOUT_US), Some(Timeout::Response));
        let mut b = Bearer::new(23);
        b.send(&[opcode::HANDLE_VALUE_IND, 3, 0], 0).unwrap();
        assert_eq!(b.handle_timeout(TRANSACTION_TIMEOUT_US), Some(Timeout::Indication));
    }
}
