//! Test bench for the virtual controller: one [`Radio`] with several controllers on it, each
//! driven either by a sans-IO [`Host`] or by the test itself speaking raw H4, on a virtual clock.
//!
//! Every H4 packet a controller hands to its host is also kept in the node's `tap`, so tests can
//! check exact event fields (Core Vol 4 Part E §7.7) whether or not a `Host` sits on top.

#![allow(dead_code)]

use gattling_controller::{ControllerConfig, ControllerId, Radio};
use gattling_proto::gap::BdAddr;
use gattling_proto::hci::command::{AdvParams, Command, ConnParams, CreateConnection, Opcode};
use gattling_proto::hci::event::{ConnectionComplete, Event, LeEvent};
use gattling_proto::hci::{AclHeader, AclPacket, PacketBoundary, PacketType};
use gattling_proto::host::{Host, HostConfig, HostEvent};

/// Event codes not named by `gattling_proto::hci::event::code`.
pub const DATA_BUFFER_OVERFLOW: u8 = 0x1A;
/// Encryption Key Refresh Complete (§7.7.39).
pub const ENCRYPTION_KEY_REFRESH_COMPLETE: u8 = 0x30;
/// LE Read Remote Features Complete subevent (§7.7.65.4).
pub const READ_REMOTE_FEATURES_COMPLETE: u8 = 0x04;

/// Default LE event mask after Reset (§7.8.1): bits 0-4.
pub const LE_MASK_DEFAULT: u64 = 0x1F;
/// LE event mask bit 5: LE Remote Connection Parameter Request.
pub const LE_MASK_REMOTE_CONN_PARAM_REQ: u64 = 1 << 5;
/// LE event mask bit 6: LE Data Length Change; bit 11: PHY Update Complete.
pub const LE_MASK_DATA_LENGTH_AND_PHY: u64 = (1 << 6) | (1 << 11);
/// LE event mask bit 9: LE Enhanced Connection Complete.
pub const LE_MASK_ENHANCED_CONN: u64 = 1 << 9;
/// The LE event mask the bench sets after Reset: the default bits plus Data Length Change and
/// PHY Update Complete, so that link-layer procedures are visible.
pub const LE_MASK_BENCH: u64 = LE_MASK_DEFAULT | LE_MASK_DATA_LENGTH_AND_PHY;
/// The Event_Mask default after Reset (§7.3.1): bits 0-44; LE Meta (bit 61) is off.
pub const EVENT_MASK_DEFAULT: u64 = 0x0000_1FFF_FFFF_FFFF;
/// Event mask bit 4: Disconnection Complete.
pub const EVENT_MASK_DISCONNECTION: u64 = 1 << 4;
/// Event mask bit 7: Encryption Change.
pub const EVENT_MASK_ENCRYPTION_CHANGE: u64 = 1 << 7;
/// Event mask bit 15: Hardware Error.
pub const EVENT_MASK_HARDWARE_ERROR: u64 = 1 << 15;
/// Event mask bit 25: Data Buffer Overflow.
pub const EVENT_MASK_DATA_BUFFER_OVERFLOW: u64 = 1 << 25;
/// Event mask bit 47: Encryption Key Refresh Complete.
pub const EVENT_MASK_KEY_REFRESH: u64 = 1 << 47;
/// Event mask bit 61: LE Meta.
pub const EVENT_MASK_LE_META: u64 = 1 << 61;
/// The Event_Mask the bench sets after Reset (what gattling's host sets, plus Data Buffer Overflow).
pub const EVENT_MASK_BENCH: u64 = EVENT_MASK_DISCONNECTION
    | EVENT_MASK_ENCRYPTION_CHANGE
    | EVENT_MASK_HARDWARE_ERROR
    | EVENT_MASK_DATA_BUFFER_OVERFLOW
    | EVENT_MASK_KEY_REFRESH
    | EVENT_MASK_LE_META;

/// How a controller answered a command: Command Complete (return parameters including the
/// status octet) or Command Status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Command Complete with its return parameters (status first).
    Complete(Vec<u8>),
    /// Command Status with its status.
    Status(u8),
}

impl Reply {
    /// The HCI status of the answer.
    pub fn status(&self) -> u8 {
        match self {
            Reply::Complete(p) => p.first().copied().expect("Command Complete without a status octet"),
            Reply::Status(s) => *s,
        }
    }

    /// Return parameters after the status (Command Complete only).
    pub fn params(&self) -> &[u8] {
        match self {
            Reply::Complete(p) => p.get(1..).unwrap_or(&[]),
            Reply::Status(_) => panic!("Command Status has no return parameters: {self:?}"),
        }
    }

    /// Asserts a Command Complete and returns its full return parameters.
    pub fn complete(&self) -> &[u8] {
        match self {
            Reply::Complete(p) => p,
            Reply::Status(s) => panic!("expected Command Complete, got Command Status {s:#04x}"),
        }
    }
}

/// One ACL packet a controller handed to its host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    /// Connection handle.
    pub handle: u16,
    /// Packet boundary flag.
    pub boundary: PacketBoundary,
    /// Payload.
    pub data: Vec<u8>,
}

/// One controller on the radio and whatever drives it.
pub struct Node {
    /// The controller.
    pub id: ControllerId,
    /// The sans-IO host on top, or `None` when the test speaks raw H4.
    pub host: Option<Host>,
    /// Every H4 packet the controller produced for this node, in order.
    pub tap: Vec<Vec<u8>>,
    /// Events the `Host` reported.
    pub host_events: Vec<HostEvent>,
    /// ATT PDUs the `Host` reassembled, with their handle.
    pub att: Vec<(u16, Vec<u8>)>,
    /// False after `Bench::detach`.
    pub attached: bool,
    /// The key the `Host` gives when its controller asks for one (LE Long Term Key Request);
    /// `None` answers with a negative reply.
    pub ltk: Option<[u8; 16]>,
}

impl Node {
    /// Position in the tap; pass it to the `*_since` helpers to look only at later packets.
    pub fn mark(&self) -> usize {
        self.tap.len()
    }

    /// Events received since `mark`, decoded (a malformed event fails the test).
    pub fn events_since(&self, mark: usize) -> Vec<Event<'_>> {
        self.tap
            .get(mark..)
            .unwrap_or(&[])
            .iter()
            .filter(|p| p.first() == Some(&(PacketType::Event as u8)))
            .map(|p| {
                Event::decode(&p[1..]).unwrap_or_else(|e| panic!("controller sent a malformed event {p:02x?}: {e}"))
            })
            .collect()
    }

    /// Every event received so far.
    pub fn events(&self) -> Vec<Event<'_>> {
        self.events_since(0)
    }

    /// ACL packets received since `mark`.
    pub fn acl_since(&self, mark: usize) -> Vec<Acl> {
        self.tap
            .get(mark..)
            .unwrap_or(&[])
            .iter()
            .filter(|p| p.first() == Some(&(PacketType::Acl as u8)))
            .map(|p| {
                let a = AclPacket::decode(&p[1..]).unwrap_or_else(|e| panic!("malformed ACL {p:02x?}: {e}"));
                Acl { handle: a.header.handle, boundary: a.header.boundary, data: a.data.to_vec() }
            })
            .collect()
    }

    /// LE (Enhanced) Connection Complete events since `mark`.
    pub fn conn_completes_since(&self, mark: usize) -> Vec<ConnectionComplete> {
        self.events_since(mark)
            .into_iter()
            .filter_map(|e| match e {
                Event::Le(LeEvent::ConnectionComplete(c)) => Some(c),
                _ => None,
            })
            .collect()
    }

    /// Disconnection Complete events since `mark` as (status, handle, reason).
    pub fn disconnections_since(&self, mark: usize) -> Vec<(u8, u16, u8)> {
        self.events_since(mark)
            .into_iter()
            .filter_map(|e| match e {
                Event::DisconnectionComplete { status, handle, reason } => Some((status, handle, reason)),
                _ => None,
            })
            .collect()
    }

    /// Advertising reports since `mark` as (event type, address type, address, data).
    pub fn reports_since(&self, mark: usize) -> Vec<(u8, u8, BdAddr, Vec<u8>)> {
        self.events_since(mark)
            .into_iter()
            .flat_map(|e| match e {
                Event::Le(LeEvent::AdvertisingReport(r)) => {
                    r.iter().map(|r| (r.event_type, r.address_type, r.address, r.data.to_vec())).collect::<Vec<_>>()
                }
                _ => Vec::new(),
            })
            .collect()
    }

    /// Number Of Completed Packets totals per handle since `mark`.
    pub fn completed_since(&self, mark: usize, handle: u16) -> u32 {
        self.events_since(mark)
            .into_iter()
            .map(|e| match e {
                Event::NumberOfCompletedPackets(c) => {
                    c.iter().filter(|(h, _)| *h == handle).map(|(_, n)| n as u32).sum::<u32>()
                }
                _ => 0,
            })
            .sum()
    }

    /// LE Meta events since `mark`, excluding advertising reports.
    pub fn le_events_since(&self, mark: usize) -> Vec<LeEvent<'_>> {
        self.events_since(mark)
            .into_iter()
            .filter_map(|e| match e {
                Event::Le(LeEvent::AdvertisingReport(_)) => None,
                Event::Le(le) => Some(le),
                _ => None,
            })
            .collect()
    }

    /// Events other than Command Complete / Command Status / Number Of Completed Packets /
    /// advertising reports since `mark`: what a test means by "nothing happened".
    pub fn unsolicited_since(&self, mark: usize) -> Vec<Event<'_>> {
        self.events_since(mark)
            .into_iter()
            .filter(|e| {
                !matches!(
                    e,
                    Event::CommandComplete { .. }
                        | Event::CommandStatus { .. }
                        | Event::NumberOfCompletedPackets(_)
                        | Event::Le(LeEvent::AdvertisingReport(_))
                )
            })
            .collect()
    }
}

/// A radio, its nodes and a virtual clock.
pub struct Bench {
    /// The radio under test.
    pub radio: Radio,
    /// Controllers in attach order.
    pub nodes: Vec<Node>,
    /// Virtual time in microseconds.
    pub now: u64,
}

impl Default for Bench {
    fn default() -> Self {
        Self::new(0xB1E_55ED)
    }
}

impl Bench {
    /// An empty bench.
    pub fn new(seed: u64) -> Self {
        Self { radio: Radio::new(seed), nodes: Vec::new(), now: 0 }
    }

    fn attach(&mut self, config: ControllerConfig, host: Option<Host>) -> usize {
        let id = self.radio.attach(config);
        self.nodes.push(Node {
            id,
            host,
            tap: Vec::new(),
            host_events: Vec::new(),
            att: Vec::new(),
            attached: true,
            ltk: None,
        });
        self.nodes.len() - 1
    }

    /// A controller driven by a `Host`, reset and with its ACL buffers read (LE Read Buffer Size).
    pub fn add_host(&mut self, config: ControllerConfig) -> usize {
        let i = self.attach(config, Some(Host::new(HostConfig::default())));
        self.init(i);
        let r = self.cmd(i, &Command::LeReadBufferSize);
        let p = r.params();
        let (len, num) = (u16::from_le_bytes([p[0], p[1]]), p[2] as u16);
        self.host_mut(i).set_acl_buffers(len, num);
        i
    }

    /// Several host-driven controllers with the default configuration.
    pub fn add_hosts(&mut self, n: usize) -> Vec<usize> {
        (0..n).map(|_| self.add_host(ControllerConfig::default())).collect()
    }

    /// A controller the test drives with raw H4 (no `Host`), after a Reset.
    pub fn add_raw(&mut self, config: ControllerConfig) -> usize {
        let i = self.attach(config, None);
        self.init(i);
        i
    }

    /// Several raw controllers with the default configuration.
    pub fn add_raws(&mut self, n: usize) -> Vec<usize> {
        (0..n).map(|_| self.add_raw(ControllerConfig::default())).collect()
    }

    /// Reset, then the bench's event masks.
    pub fn init(&mut self, i: usize) {
        assert_eq!(self.cmd(i, &Command::Reset).status(), 0, "Reset");
        self.ok(i, &Command::SetEventMask(EVENT_MASK_BENCH));
        self.ok(i, &Command::LeSetEventMask(LE_MASK_BENCH));
    }

    /// The `Host` of node `i`.
    pub fn host_mut(&mut self, i: usize) -> &mut Host {
        self.nodes[i].host.as_mut().expect("node has no Host")
    }

    /// The controller id of node `i`.
    pub fn id(&self, i: usize) -> ControllerId {
        self.nodes[i].id
    }

    /// The public address of node `i`.
    pub fn addr(&self, i: usize) -> BdAddr {
        self.radio.public_address(self.nodes[i].id).expect("attached")
    }

    /// Sets the key node `i`'s `Host` answers LE Long Term Key Requests with (`None`: refuse).
    pub fn set_ltk(&mut self, i: usize, ltk: Option<[u8; 16]>) {
        self.nodes[i].ltk = ltk;
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// Tap position of node `i`.
    pub fn mark(&self, i: usize) -> usize {
        self.nodes[i].mark()
    }

    /// Moves bytes between hosts and the radio until nothing moves. Also checks that
    /// `take_touched` names every controller that has output.
    pub fn pump(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            for n in self.nodes.iter_mut().filter(|n| n.attached) {
                if let Some(h) = n.host.as_mut() {
                    while let Some(bytes) = h.poll_transmit() {
                        self.radio.receive(n.id, &bytes);
                        moved = true;
                    }
                }
            }
            let touched = self.radio.take_touched();
            for n in self.nodes.iter_mut().filter(|n| n.attached) {
                let out: Vec<Vec<u8>> = self.radio.take_output(n.id).collect();
                if out.is_empty() {
                    continue;
                }
                assert!(touched.contains(&n.id), "take_touched() did not name {:?}, which had output", n.id);
                moved = true;
                let Node { host, tap, host_events, att, ltk, .. } = n;
                for p in out {
                    if let Some(h) = host.as_mut() {
                        h.receive(&p, &mut |handle, pdu| att.push((handle, pdu.to_vec())));
                    }
                    tap.push(p);
                }
                if let Some(h) = host.as_mut() {
                    while let Some(e) = h.poll_event() {
                        if let HostEvent::LongTermKeyRequest { handle, .. } = e {
                            let answered = match ltk {
                                Some(k) => h.long_term_key_reply(handle, *k),
                                None => h.long_term_key_negative_reply(handle),
                            };
                            answered.expect("the host accepts an answer to its own key request");
                        }
                        host_events.push(e);
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the bench did not settle: hosts and controllers keep talking");
    }

    /// Runs virtual time forward by `us`, stopping at every timer on the way and pumping after each.
    pub fn run_for(&mut self, us: u64) {
        let target = self.now + us;
        self.run_until(target);
    }

    /// Runs virtual time up to `target`.
    pub fn run_until(&mut self, target: u64) {
        self.pump();
        while let Some(t) = self.radio.next_timer() {
            if t > target {
                break;
            }
            self.now = self.now.max(t);
            self.radio.advance(self.now);
            self.pump();
        }
        self.now = self.now.max(target);
        self.radio.advance(self.now);
        self.pump();
    }

    /// Writes raw H4 bytes as node `i`'s host and pumps.
    pub fn send_raw(&mut self, i: usize, bytes: &[u8]) {
        let id = self.nodes[i].id;
        self.radio.receive(id, bytes);
        self.pump();
    }

    /// Sends a command from node `i` (through its `Host` if it has one) without waiting.
    pub fn send(&mut self, i: usize, cmd: &Command) {
        let id = self.nodes[i].id;
        match self.nodes[i].host.as_mut() {
            Some(h) => {
                h.send_command(cmd);
            }
            None => {
                let mut bytes = Vec::new();
                cmd.encode_h4(&mut bytes);
                self.radio.receive(id, &bytes);
            }
        }
    }

    /// Sends a command from node `i`, pumps, and returns the controller's answer to it.
    pub fn cmd(&mut self, i: usize, cmd: &Command) -> Reply {
        let mark = self.mark(i);
        self.send(i, cmd);
        self.pump();
        self.reply_since(i, mark, cmd.opcode())
    }

    /// A raw command (opcode and parameter bytes) from node `i`.
    pub fn cmd_raw(&mut self, i: usize, opcode: Opcode, params: &[u8]) -> Reply {
        self.cmd(i, &Command::Other { opcode, params: params.to_vec() })
    }

    /// The first Command Complete / Command Status for `opcode` after `mark`.
    pub fn reply_since(&self, i: usize, mark: usize, opcode: Opcode) -> Reply {
        self.try_reply_since(i, mark, opcode)
            .unwrap_or_else(|| panic!("no Command Complete/Status for opcode {:#06x} on node {i}", opcode.0))
    }

    /// Like `reply_since` but `None` when there is no answer.
    pub fn try_reply_since(&self, i: usize, mark: usize, opcode: Opcode) -> Option<Reply> {
        self.nodes[i].events_since(mark).into_iter().find_map(|e| match e {
            Event::CommandComplete { num_packets, opcode: o, return_params } if o == opcode => {
                assert!(num_packets >= 1, "Command Complete must grant a command credit");
                Some(Reply::Complete(return_params.to_vec()))
            }
            Event::CommandStatus { status, num_packets, opcode: o } if o == opcode => {
                assert!(num_packets >= 1, "Command Status must grant a command credit");
                Some(Reply::Status(status))
            }
            _ => None,
        })
    }

    /// Sends a command that must succeed; returns its return parameters after the status.
    pub fn ok(&mut self, i: usize, cmd: &Command) -> Vec<u8> {
        let r = self.cmd(i, cmd);
        assert_eq!(r.status(), 0, "{cmd:?} on node {i} failed: {r:?}");
        match r {
            Reply::Complete(p) => p[1..].to_vec(),
            Reply::Status(_) => Vec::new(),
        }
    }

    /// Sets node `i`'s LE event mask.
    pub fn le_mask(&mut self, i: usize, mask: u64) {
        self.ok(i, &Command::LeSetEventMask(mask));
    }

    /// Configures and enables advertising on node `i`.
    pub fn advertise(&mut self, i: usize, params: AdvParams, data: &[u8], scan_response: &[u8]) {
        self.ok(i, &Command::LeSetAdvertisingParameters(params));
        self.ok(i, &Command::LeSetAdvertisingData(data.to_vec()));
        self.ok(i, &Command::LeSetScanResponseData(scan_response.to_vec()));
        self.ok(i, &Command::LeSetAdvertisingEnable(true));
    }

    /// Starts scanning on node `i` (public own address).
    pub fn scan(&mut self, i: usize, active: bool, filter_duplicates: bool) {
        self.scan_with(i, active, filter_duplicates, 0);
    }

    /// Starts scanning on node `i` with the given own address type.
    pub fn scan_with(&mut self, i: usize, active: bool, filter_duplicates: bool, own_address_type: u8) {
        self.ok(
            i,
            &Command::LeSetScanParameters {
                scan_type: active as u8,
                interval: 0x60,
                window: 0x30,
                own_address_type,
                filter_policy: 0,
            },
        );
        self.ok(i, &Command::LeSetScanEnable { enable: true, filter_duplicates });
    }

    /// Connects `central` to `peripheral` (ADV_IND from the peripheral's public address, LE
    /// Create Connection from the central) and returns (central handle, peripheral handle).
    pub fn connect(&mut self, central: usize, peripheral: usize) -> (u16, u16) {
        self.connect_with(central, peripheral, ConnParams::default())
    }

    /// `connect` with explicit connection parameters.
    pub fn connect_with(&mut self, central: usize, peripheral: usize, params: ConnParams) -> (u16, u16) {
        let (mc, mp) = (self.mark(central), self.mark(peripheral));
        self.advertise(peripheral, adv(0), &[2, 1, 6], &[]);
        let peer = self.addr(peripheral);
        self.ok(central, &create_connection(peer, 0, 0, params));
        let c = self.nodes[central].conn_completes_since(mc);
        let p = self.nodes[peripheral].conn_completes_since(mp);
        assert_eq!(c.len(), 1, "central connection complete: {c:?}");
        assert_eq!(p.len(), 1, "peripheral connection complete: {p:?}");
        assert_eq!((c[0].status, p[0].status), (0, 0));
        (c[0].handle, p[0].handle)
    }

    /// Removes node `i`'s controller from the radio (its host vanished).
    pub fn detach(&mut self, i: usize) {
        self.radio.detach(self.nodes[i].id);
        self.nodes[i].attached = false;
        self.pump();
    }

    /// Queues ACL data as node `i`'s raw host: one packet, given boundary flag.
    pub fn send_acl(&mut self, i: usize, handle: u16, boundary: PacketBoundary, data: &[u8]) {
        let mut bytes = Vec::new();
        acl_bytes(handle, boundary, data, &mut bytes);
        let id = self.nodes[i].id;
        self.radio.receive(id, &bytes);
    }
}

/// H4 bytes of one ACL packet.
pub fn acl_bytes(handle: u16, boundary: PacketBoundary, data: &[u8], out: &mut Vec<u8>) {
    let header = AclHeader { handle, boundary, broadcast: 0, len: data.len() as u16 };
    AclPacket { header, data }.encode_h4(out);
}

/// Advertising parameters of the given type, public own address, 100 ms.
pub fn adv(adv_type: u8) -> AdvParams {
    AdvParams { adv_type, ..AdvParams::default() }
}

/// Directed advertising parameters targeting `peer` (public).
pub fn adv_directed(adv_type: u8, peer: BdAddr) -> AdvParams {
    AdvParams { adv_type, peer_address_type: 0, peer_address: peer, ..AdvParams::default() }
}

/// LE Create Connection to `peer`.
pub fn create_connection(peer: BdAddr, peer_type: u8, own_type: u8, params: ConnParams) -> Command {
    Command::LeCreateConnection(CreateConnection {
        scan_interval: 0x60,
        scan_window: 0x30,
        filter_policy: 0,
        peer_address_type: peer_type,
        peer_address: peer,
        own_address_type: own_type,
        params,
    })
}

/// LE Enable Encryption parameters (§7.8.24): handle, Random_Number, Encrypted_Diversifier, LTK.
pub fn enable_encryption_params(handle: u16, rand: u64, ediv: u16, ltk: [u8; 16]) -> Vec<u8> {
    let mut p = Vec::with_capacity(28);
    p.extend_from_slice(&handle.to_le_bytes());
    p.extend_from_slice(&rand.to_le_bytes());
    p.extend_from_slice(&ediv.to_le_bytes());
    p.extend_from_slice(&ltk);
    p
}

/// LE Long Term Key Request Reply parameters (§7.8.25).
pub fn ltk_reply_params(handle: u16, ltk: [u8; 16]) -> Vec<u8> {
    let mut p = handle.to_le_bytes().to_vec();
    p.extend_from_slice(&ltk);
    p
}

/// Little-endian u16 from two bytes of a slice.
pub fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
