//! The simulated radio shared by every attached controller: advertising, scanning, connections
//! and ACL routing (Core Vol 6 Part B at the level a host observes it).

use crate::slots::{SlotKey, Slots};
use crate::ControllerConfig;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;
use gattling_proto::gap::BdAddr;
use gattling_proto::hci::command::{AdvParams, Command, ConnParams, CreateConnection};
use gattling_proto::hci::event::{subevent, AdvertisingReport, AdvertisingReports, ConnectionComplete, Event, LeEvent};
use gattling_proto::hci::{status, AclHeader, AclPacket, H4Framer, PacketBoundary, PacketType};

/// What a scanner hears from one advertiser: address, address type, parameters, data, scan response.
type Heard = (BdAddr, u8, AdvParams, Vec<u8>, Vec<u8>);

/// Packet buffers the radio keeps for reuse.
const SPARE_BUFFERS: usize = 64;

/// Identifies one controller on a [`Radio`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ControllerId(pub u32);

impl SlotKey for ControllerId {
    fn index(self) -> usize {
        self.0 as usize
    }
    fn from_index(i: usize) -> Self {
        ControllerId(i as u32)
    }
}

/// Faults a test can inject into the radio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Fault {
    /// No fault.
    #[default]
    None,
    /// Deliver every ACL packet this many microseconds late.
    DelayAcl(u64),
    /// Drop every Nth ACL packet (the sender still gets its buffer back).
    DropEveryNthAcl(u32),
}

/// How often a scanner hears each advertiser (virtual microseconds).
const SCAN_TICK_US: u64 = 50_000;
/// High duty cycle directed advertising ends after 1.28 s (Core Vol 6 Part B §4.4.2.4.3).
const DIRECTED_ADV_TIMEOUT_US: u64 = 1_280_000;
/// Delay before a link-layer procedure (update, PHY) completes: a few connection events.
const PROCEDURE_DELAY_US: u64 = 10_000;

/// Default event masks after Reset (Core Vol 4 Part E §7.3.1, §7.8.1).
pub(crate) const DEFAULT_EVENT_MASK: u64 = 0x0000_1FFF_FFFF_FFFF;
pub(crate) const DEFAULT_LE_EVENT_MASK: u64 = 0x0000_0000_0000_001F;

#[derive(Debug, Clone)]
pub(crate) struct Advertising {
    pub params: AdvParams,
    pub enabled: bool,
    pub data: Vec<u8>,
    pub scan_response: Vec<u8>,
    pub generation: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Scanning {
    pub active: bool,
    pub own_address_type: u8,
    pub enabled: bool,
    pub filter_duplicates: bool,
    pub seen: BTreeSet<(BdAddr, u8, bool)>,
    pub generation: u32,
}

/// One end of a connection, seen from its controller.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkEnd {
    pub link: u32,
    pub central: bool,
}

#[derive(Debug)]
pub(crate) struct Ctrl {
    pub config: ControllerConfig,
    pub public: BdAddr,
    pub random: Option<BdAddr>,
    pub event_mask: u64,
    pub le_event_mask: u64,
    pub framer: H4Framer,
    pub out: VecDeque<Vec<u8>>,
    /// Listed in the radio's `touched` since the last take.
    pub touched: bool,
    pub adv: Advertising,
    pub scan: Scanning,
    pub initiating: Option<CreateConnection>,
    pub handles: BTreeMap<u16, LinkEnd>,
    pub next_handle: u16,
    pub acl_used: u16,
    /// ACL packets sent but not yet reported to the host, per handle: Number Of Completed
    /// Packets goes out in batches (see [`Radio::ack_acl`]).
    pub completed: Vec<(u16, u16)>,
    /// A [`Timer::ReportCompleted`] for this controller is scheduled.
    pub completed_timer: bool,
    pub privacy: Privacy,
}

/// One resolving list entry: identity address type and address, peer IRK, local IRK
/// (Core Vol 4 Part E §7.8.38).
pub(crate) type ResolvingEntry = (u8, BdAddr, [u8; 16], [u8; 16]);

/// The resolving list and its settings (Core Vol 6 Part B §4.7). With address resolution
/// enabled, peers' resolvable private addresses are resolved with it; local private addresses
/// are not generated from it (own address types 0x02/0x03 use the public or random address).
#[derive(Debug, Clone, Default)]
pub(crate) struct Privacy {
    pub resolving_list: Vec<ResolvingEntry>,
    pub address_resolution: bool,
    /// RPA timeout in seconds.
    pub rpa_timeout: u16,
}

/// Entries the resolving list holds (LE Read Resolving List Size, Core Vol 4 Part E §7.8.41).
pub(crate) const RESOLVING_LIST_SIZE: usize = 8;
/// The default RPA timeout, 15 minutes (Core Vol 4 Part E §7.8.45).
pub(crate) const DEFAULT_RPA_TIMEOUT: u16 = 900;

#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub central: (ControllerId, u16),
    pub peripheral: (ControllerId, u16),
    pub params: (u16, u16, u16),
    pub pending_ltk: Option<[u8; 16]>,
    pub encrypted: bool,
    pub pending_update: Option<ConnParams>,
    /// connMaxTxOctets of the central and of the peripheral (Core Vol 6 Part B §4.5.10).
    pub tx_octets: [u16; 2],
    /// PHY in use (1 = 1M, 2 = 2M).
    pub phy: u8,
    /// ACL packets held back by a delay fault, per side (central, peripheral), still occupying
    /// their controller's buffers.
    pub delayed: [u16; 2],
}

#[derive(Debug, Clone)]
pub(crate) enum Timer {
    /// A scan interval of one scanning session (the generation tells stale ticks apart).
    ScanTick(ControllerId, u32),
    /// End of high duty cycle directed advertising started in the given generation.
    DirectedAdvTimeout(ControllerId, u32),
    SupervisionTimeout(u32),
    UpdateComplete {
        link: u32,
        params: ConnParams,
    },
    PhyComplete {
        link: u32,
        phy: u8,
    },
    Deliver {
        link: u32,
        to: ControllerId,
        packet: Vec<u8>,
        from: (ControllerId, u16),
    },
    /// Reports the completed packets a controller still holds back.
    ReportCompleted(ControllerId),
}

/// One Number Of Completed Packets event (H4) for up to 63 of the `completed` pairs, which
/// it removes (Core Vol 4 Part E §7.7.19: one (Connection_Handle, Num_Completed_Packets) pair
/// per handle; 63 pairs fill the 255-byte parameter limit).
fn encode_completed(completed: &mut Vec<(u16, u16)>, out: &mut Vec<u8>) {
    let pairs = completed.len().min(63);
    out.extend_from_slice(&[
        PacketType::Event as u8,
        gattling_proto::hci::event::code::NUMBER_OF_COMPLETED_PACKETS,
        (1 + 4 * pairs) as u8,
        pairs as u8,
    ]);
    for (handle, count) in completed.drain(..pairs) {
        out.extend_from_slice(&handle.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
    }
}

/// An ACL packet a controller took from its host.
struct Admitted<'b> {
    link: u32,
    /// The controller of the other end.
    peer: ControllerId,
    /// The sender's handle.
    handle: u16,
    /// The header the peer's host gets.
    header: AclHeader,
    data: &'b [u8],
}

/// What [`Radio::relay_acl`] did with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relay {
    /// Not a case it relays: hand the bytes to [`Radio::receive`].
    General,
    /// Refused or dropped, with its notes and events queued: nothing to deliver.
    Done,
    /// Write the packet into `to`'s host stream with [`Radio::write_relayed`].
    Deliver {
        /// The controller whose host gets the packet.
        to: ControllerId,
        /// The H4 indicator and ACL header it gets there (the peer's handle).
        header: [u8; 5],
    },
}

/// How long a sent ACL packet may go unreported while fewer than half of the controller's
/// buffers wait for their report, in microseconds (about one short connection interval).
pub const COMPLETED_REPORT_DELAY_US: u64 = 1_000;

/// A shared simulated radio with any number of virtual LE controllers on it.
#[derive(Debug)]
pub struct Radio {
    now: u64,
    pub(crate) ctrls: Slots<ControllerId, Ctrl>,
    next_ctrl: u32,
    pub(crate) links: Slots<u32, Link>,
    next_link: u32,
    timers: BTreeMap<(u64, u64), Timer>,
    timer_seq: u64,
    rng: u64,
    /// Controllers with output since the last `take_touched`, each once (`Ctrl::touched`).
    touched: Vec<ControllerId>,
    /// Packet buffers given back by [`Radio::take_output_into`], reused for the next packets.
    spare: Vec<Vec<u8>>,
    fault: Fault,
    acl_count: u32,
    log: VecDeque<(ControllerId, &'static str)>,
}

impl Default for Radio {
    fn default() -> Self {
        Self::new(0x5EED_6A77_11A6)
    }
}

impl Radio {
    /// An empty radio; `seed` makes LE Rand and assigned addresses reproducible.
    pub fn new(seed: u64) -> Self {
        Self {
            now: 0,
            ctrls: Slots::new(),
            next_ctrl: 0,
            links: Slots::new(),
            next_link: 0,
            timers: BTreeMap::new(),
            timer_seq: 0,
            rng: seed | 1,
            touched: Vec::new(),
            spare: Vec::new(),
            fault: Fault::None,
            acl_count: 0,
            log: VecDeque::new(),
        }
    }

    /// Virtual time in microseconds.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Adds a controller (as if a host connected to a fresh one) and returns its id.
    pub fn attach(&mut self, config: ControllerConfig) -> ControllerId {
        let id = ControllerId(self.next_ctrl);
        self.next_ctrl += 1;
        let n = id.0;
        let public =
            config.public_address.unwrap_or(BdAddr([n as u8, (n >> 8) as u8, (n >> 16) as u8, 0x77, 0x6A, 0x6A]));
        self.ctrls.insert(id, Ctrl::new(config, public));
        id
    }

    /// Removes a controller whose host vanished: its peers see a supervision timeout (0x08)
    /// once their links' supervision timeout has passed.
    pub fn detach(&mut self, id: ControllerId) {
        let Some(ctrl) = self.ctrls.remove(&id) else { return };
        for end in ctrl.handles.values() {
            if let Some(link) = self.links.get(&end.link) {
                let timeout_us = link.params.2 as u64 * 10_000;
                self.schedule(timeout_us, Timer::SupervisionTimeout(end.link));
            }
        }
        self.touched.retain(|t| *t != id);
    }

    /// Connects two attached controllers the way their hosts would over HCI (every event
    /// unmasked, the peripheral advertising connectably, the central creating the connection),
    /// for benches and fuzzing: the connection handles (central's, peripheral's), or `None` when
    /// no connection came up. The output the commands produced is taken and dropped.
    pub fn connect_pair(&mut self, central: ControllerId, peripheral: ControllerId) -> Option<(u16, u16)> {
        let peer = self.public_address(peripheral)?;
        let create = CreateConnection {
            scan_interval: 0x60,
            scan_window: 0x30,
            filter_policy: 0,
            peer_address_type: 0,
            peer_address: peer,
            own_address_type: 0,
            params: ConnParams::default(),
        };
        let commands = [
            (central, Command::SetEventMask(u64::MAX)),
            (peripheral, Command::SetEventMask(u64::MAX)),
            (central, Command::LeSetEventMask(u64::MAX)),
            (peripheral, Command::LeSetEventMask(u64::MAX)),
            (peripheral, Command::LeSetAdvertisingParameters(AdvParams::default())),
            (peripheral, Command::LeSetAdvertisingEnable(true)),
            (central, Command::LeCreateConnection(create)),
        ];
        let mut bytes = Vec::new();
        for (id, cmd) in commands {
            bytes.clear();
            cmd.encode_h4(&mut bytes);
            self.receive(id, &bytes);
        }
        let mut handle_of = |id: ControllerId| {
            let mut handle = None;
            for packet in self.take_output(id) {
                if let Some(Ok(Event::Le(LeEvent::ConnectionComplete(cc)))) = packet.get(1..).map(Event::decode) {
                    handle = (cc.status == 0).then_some(cc.handle);
                }
            }
            handle
        };
        let handles = (handle_of(central), handle_of(peripheral));
        self.touched.retain(|t| *t != central && *t != peripheral);
        for id in [central, peripheral] {
            if let Some(c) = self.ctrls.get_mut(&id) {
                c.touched = false;
            }
        }
        Some((handles.0?, handles.1?))
    }

    /// Number of controllers attached.
    pub fn controllers(&self) -> usize {
        self.ctrls.len()
    }

    /// Number of live connections.
    pub fn links(&self) -> usize {
        self.links.len()
    }

    /// The public address of a controller.
    pub fn public_address(&self, id: ControllerId) -> Option<BdAddr> {
        self.ctrls.get(&id).map(|c| c.public)
    }

    /// Sets a fault for later ACL traffic.
    pub fn set_fault(&mut self, fault: Fault) {
        self.fault = fault;
        self.acl_count = 0;
    }

    /// Drops the link behind `handle` of controller `id` as if the radio lost it: both sides get
    /// Disconnection Complete with reason 0x08 (Connection Timeout).
    pub fn drop_link(&mut self, id: ControllerId, handle: u16) -> bool {
        let Some(end) = self.ctrls.get(&id).and_then(|c| c.handles.get(&handle)).copied() else { return false };
        self.end_link(end.link, status::CONNECTION_TIMEOUT, status::CONNECTION_TIMEOUT);
        true
    }

    /// Takes H4 bytes written by the host of controller `id`.
    pub fn receive(&mut self, id: ControllerId, bytes: &[u8]) {
        let Some(ctrl) = self.ctrls.get_mut(&id) else { return };
        // Out of the controller while its packets are handled (they borrow it), so nothing is
        // copied; a stand-in that owns no buffer takes its place meanwhile.
        let mut framer = core::mem::replace(&mut ctrl.framer, H4Framer::unallocated(0));
        // Whole packets at the front are handled where they lie; the rest goes through the framer.
        let mut rest = bytes;
        while let Some((p, used)) = framer.split_whole(rest) {
            rest = rest.get(used..).unwrap_or_default();
            self.on_packet(id, p.kind, p.body);
            if self.ctrls.get(&id).is_none() {
                return;
            }
        }
        framer.push(rest);
        loop {
            if self.ctrls.get(&id).is_none() {
                // The packet before detached it: what is left goes with it.
                return;
            }
            match framer.next_packet() {
                None => break,
                Some(Err(_)) => {
                    // The host's byte stream is out of step: report it (Hardware Error, §7.7.16).
                    self.note(id, "garbage H4 from the host; framer reset");
                    self.emit(id, &Event::HardwareError { code: 0x01 });
                }
                Some(Ok(p)) => self.on_packet(id, p.kind, p.body),
            }
        }
        if let Some(ctrl) = self.ctrls.get_mut(&id) {
            ctrl.framer = framer;
        }
    }

    fn on_packet(&mut self, id: ControllerId, kind: PacketType, body: &[u8]) {
        match kind {
            PacketType::Command => self.on_command(id, body),
            PacketType::Acl => self.on_acl(id, body),
            _ => self.note(id, "unsupported packet type from the host; dropped"),
        }
    }

    /// H4 packets waiting for the host of controller `id`.
    pub fn take_output(&mut self, id: ControllerId) -> impl Iterator<Item = Vec<u8>> + '_ {
        // Drained in place: the queue keeps its room for the next packets.
        self.ctrls.get_mut(&id).into_iter().flat_map(|c| c.out.drain(..))
    }

    /// The H4 packets waiting for the host of controller `id`, appended to `out` back to back
    /// (a byte stream, as a UART or TCP carries them); their buffers are kept for reuse.
    pub fn take_output_into(&mut self, id: ControllerId, out: &mut Vec<u8>) {
        let Some(ctrl) = self.ctrls.get_mut(&id) else { return };
        for mut packet in ctrl.out.drain(..) {
            out.extend_from_slice(&packet);
            if self.spare.len() < SPARE_BUFFERS {
                packet.clear();
                self.spare.push(packet);
            }
        }
    }

    /// An empty packet buffer with room for `len` bytes, reused when one is spare.
    fn packet_buffer(&mut self, len: usize) -> Vec<u8> {
        let mut b = self.spare.pop().unwrap_or_default();
        b.reserve(len);
        b
    }

    /// Controllers that have output since the last call, in id order.
    pub fn take_touched(&mut self) -> Vec<ControllerId> {
        let mut ids = Vec::new();
        self.drain_touched(&mut ids);
        ids
    }

    /// [`take_touched`](Self::take_touched) into `out` (cleared first), so a caller that keeps
    /// `out` does not allocate.
    pub fn drain_touched(&mut self, out: &mut Vec<ControllerId>) {
        out.clear();
        for id in self.touched.drain(..) {
            if let Some(c) = self.ctrls.get_mut(&id) {
                c.touched = false;
                out.push(id);
            }
        }
        out.sort_unstable();
    }

    /// Whether there are diagnostic notes to take.
    #[inline]
    pub fn has_notes(&self) -> bool {
        !self.log.is_empty()
    }

    /// Diagnostic notes (e.g. garbage from a host), oldest first.
    pub fn take_log(&mut self) -> Vec<(ControllerId, &'static str)> {
        self.log.drain(..).collect()
    }

    /// When the next timer fires, in virtual microseconds.
    #[inline]
    pub fn next_timer(&self) -> Option<u64> {
        self.timers.keys().next().map(|(t, _)| *t)
    }

    /// Moves virtual time to `now` and runs every timer due by then.
    pub fn advance(&mut self, now: u64) {
        self.now = self.now.max(now);
        while let Some((&key, _)) = self.timers.iter().next() {
            if key.0 > self.now {
                break;
            }
            if let Some(t) = self.timers.remove(&key) {
                self.fire(t);
            }
        }
    }

    pub(crate) fn note(&mut self, id: ControllerId, what: &'static str) {
        if self.log.len() >= 64 {
            self.log.pop_front();
        }
        self.log.push_back((id, what));
    }

    pub(crate) fn schedule(&mut self, after_us: u64, t: Timer) {
        self.timer_seq += 1;
        self.timers.insert((self.now.saturating_add(after_us), self.timer_seq), t);
    }

    pub(crate) fn random_u64(&mut self) -> u64 {
        // xorshift64*: deterministic per seed, good enough for a simulated LE Rand.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Queues an event for the host of `id` if its event masks allow it (Core Vol 4 Part E §7.3.1).
    pub(crate) fn emit(&mut self, id: ControllerId, ev: &Event<'_>) {
        if !self.ctrls.get(&id).is_some_and(|c| c.allows(ev)) {
            return;
        }
        let mut out = self.packet_buffer(16);
        ev.encode_h4(&mut out);
        self.push_raw(id, out);
    }

    /// Queues an H4 packet for the host of `id`. Completions held back go first: the host
    /// reads them in the same wake-up, and they name handles it still knows.
    pub(crate) fn push_raw(&mut self, id: ControllerId, packet: Vec<u8>) {
        if self.ctrls.get(&id).is_some_and(|c| !c.completed.is_empty()) {
            self.report_completed(id);
        }
        self.queue(id, packet);
    }

    fn queue(&mut self, id: ControllerId, packet: Vec<u8>) {
        if let Some(ctrl) = self.ctrls.get_mut(&id) {
            ctrl.out.push_back(packet);
            if !ctrl.touched {
                ctrl.touched = true;
                self.touched.push(id);
            }
        }
    }

    /// Sends Number Of Completed Packets for everything held back (§7.7.19).
    fn report_completed(&mut self, id: ControllerId) {
        while self.ctrls.get(&id).is_some_and(|c| !c.completed.is_empty()) {
            let mut out = self.packet_buffer(3 + 4 * 63);
            let Some(ctrl) = self.ctrls.get_mut(&id) else { return };
            encode_completed(&mut ctrl.completed, &mut out);
            self.queue(id, out);
        }
    }

    /// Writes what [`Relay::Deliver`] names into `out`, the byte stream of `to`'s host: the
    /// output queued for that host ([`Radio::take_output_into`]), its held-back completions
    /// (they go before the packet, as through the queue), then `header` and the packet's data
    /// (`bytes`, as given to [`Radio::relay_acl`], after its own 5-byte header).
    pub fn write_relayed(&mut self, to: ControllerId, header: [u8; 5], bytes: &[u8], out: &mut Vec<u8>) {
        self.take_output_into(to, out);
        if let Some(ctrl) = self.ctrls.get_mut(&to) {
            while !ctrl.completed.is_empty() {
                encode_completed(&mut ctrl.completed, out);
            }
        }
        out.extend_from_slice(&header);
        out.extend_from_slice(bytes.get(header.len()..).unwrap_or_default());
    }

    fn fire(&mut self, t: Timer) {
        match t {
            Timer::ReportCompleted(id) => {
                let Some(ctrl) = self.ctrls.get_mut(&id) else { return };
                ctrl.completed_timer = false;
                if !ctrl.completed.is_empty() {
                    self.report_completed(id);
                }
            }
            Timer::ScanTick(id, generation) => {
                if self.ctrls.get(&id).is_some_and(|c| c.scan.generation == generation) {
                    self.scan_tick(id)
                }
            }
            Timer::DirectedAdvTimeout(id, generation) => {
                let Some(ctrl) = self.ctrls.get_mut(&id) else { return };
                if ctrl.adv.enabled && ctrl.adv.params.adv_type == 0x01 && ctrl.adv.generation == generation {
                    ctrl.adv.enabled = false;
                    let cc = ConnectionComplete {
                        status: status::ADVERTISING_TIMEOUT,
                        ..ConnectionComplete::failed(subevent::CONNECTION_COMPLETE)
                    };
                    self.emit_connection_complete(id, cc);
                }
            }
            Timer::SupervisionTimeout(link) => {
                self.end_link(link, status::CONNECTION_TIMEOUT, status::CONNECTION_TIMEOUT)
            }
            Timer::UpdateComplete { link, params } => {
                let Some(l) = self.links.get_mut(&link) else { return };
                l.params = (params.interval_max, params.latency, params.timeout);
                l.pending_update = None;
                let (c, p) = (l.central, l.peripheral);
                for (id, handle) in [c, p] {
                    self.emit(
                        id,
                        &Event::Le(LeEvent::ConnectionUpdateComplete {
                            status: 0,
                            handle,
                            interval: params.interval_max,
                            latency: params.latency,
                            supervision_timeout: params.timeout,
                        }),
                    );
                }
            }
            Timer::PhyComplete { link, phy } => {
                let Some(l) = self.links.get_mut(&link) else { return };
                l.phy = phy;
                let (c, p) = (l.central, l.peripheral);
                for (id, handle) in [c, p] {
                    self.emit(
                        id,
                        &Event::Le(LeEvent::PhyUpdateComplete { status: 0, handle, tx_phy: phy, rx_phy: phy }),
                    );
                }
            }
            Timer::Deliver { link, to, packet, from } => {
                // A link that ended already gave its buffers back (see `end_link`).
                let Some(l) = self.links.get_mut(&link) else { return };
                let side = usize::from(l.central.0 != from.0 || l.central.1 != from.1);
                l.delayed[side] = l.delayed[side].saturating_sub(1);
                self.push_raw(to, packet);
                self.ack_acl(from.0, from.1);
            }
        }
    }

    /// The address a controller uses on air for the given own-address type.
    pub(crate) fn own_address(&self, id: ControllerId, own_type: u8) -> Option<(BdAddr, u8)> {
        let c = self.ctrls.get(&id)?;
        match own_type & 1 {
            0 => Some((c.public, 0)),
            _ => c.random.map(|r| (r, 1)),
        }
    }

    /// The identity behind a peer's on-air address: with address resolution enabled on `id`,
    /// the resolving list entry whose peer IRK resolves `addr` gives its identity address and
    /// type 0x02/0x03 (Core Vol 6 Part B §4.7, Vol 4 Part E §7.7.65.2).
    pub(crate) fn resolve_peer(&self, id: ControllerId, addr: BdAddr, addr_type: u8) -> Option<(BdAddr, u8)> {
        let p = &self.ctrls.get(&id)?.privacy;
        if !p.address_resolution || addr_type != 1 {
            return None;
        }
        p.resolving_list
            .iter()
            .find(|e| gattling_proto::gap::privacy::resolve_rpa(&e.2, addr))
            .map(|e| (e.1, e.0.saturating_add(2)))
    }

    /// Starts scan ticks for a scanner that was just enabled.
    pub(crate) fn start_scanning(&mut self, id: ControllerId) {
        if let Some(c) = self.ctrls.get_mut(&id) {
            c.scan.generation = c.scan.generation.wrapping_add(1);
        }
        self.scan_tick(id);
    }

    /// One scan interval: the scanner hears every advertiser once.
    fn scan_tick(&mut self, id: ControllerId) {
        let Some(scanner) = self.ctrls.get(&id) else { return };
        if !scanner.scan.enabled {
            return;
        }
        let active = scanner.scan.active;
        let scanner_addr = self.own_address(id, scanner.scan.own_address_type).map(|a| a.0);
        let adverts: Vec<Heard> = self
            .ctrls
            .iter()
            .filter(|(other, c)| *other != id && c.adv.enabled)
            .filter_map(|(other, c)| {
                let (addr, t) = self.own_address(other, c.adv.params.own_address_type)?;
                Some((addr, t, c.adv.params, c.adv.data.clone(), c.adv.scan_response.clone()))
            })
            .collect();
        for (addr, addr_type, params, data, scan_response) in adverts {
            let directed = matches!(params.adv_type, 0x01 | 0x04);
            if directed && Some(params.peer_address) != scanner_addr {
                continue;
            }
            let event_type = match params.adv_type {
                0x00 => 0,
                0x01 | 0x04 => 1,
                0x02 => 2,
                _ => 3,
            };
            let adv_data: &[u8] = if directed { &[] } else { &data };
            let (addr, addr_type) = self.resolve_peer(id, addr, addr_type).unwrap_or((addr, addr_type));
            self.report(id, addr, addr_type, event_type, adv_data);
            if active && matches!(params.adv_type, 0x00 | 0x02) {
                self.report(id, addr, addr_type, 4, &scan_response);
            }
        }
        let generation = self.ctrls.get(&id).map(|c| c.scan.generation).unwrap_or(0);
        self.schedule(SCAN_TICK_US, Timer::ScanTick(id, generation));
    }

    fn report(&mut self, id: ControllerId, addr: BdAddr, addr_type: u8, event_type: u8, data: &[u8]) {
        let Some(ctrl) = self.ctrls.get_mut(&id) else { return };
        if ctrl.scan.filter_duplicates && !ctrl.scan.seen.insert((addr, addr_type, event_type == 4)) {
            return;
        }
        let report = AdvertisingReport {
            event_type,
            address_type: addr_type,
            address: addr,
            data,
            rssi: crate::commands::LINK_RSSI,
        };
        let mut params = Vec::with_capacity(12 + data.len());
        AdvertisingReports::encode(&[report], &mut params);
        let ev = Event::Le(LeEvent::Unknown {
            subevent: subevent::ADVERTISING_REPORT,
            params: params.get(1..).unwrap_or(&[]),
        });
        self.emit(id, &ev);
    }

    /// Tries to connect an initiator to the advertiser it targets; called when either side changes.
    pub(crate) fn try_connect(&mut self) {
        let initiators: Vec<(ControllerId, CreateConnection)> =
            self.ctrls.iter().filter_map(|(id, c)| c.initiating.map(|cc| (id, cc))).collect();
        for (init, cc) in initiators {
            let Some((init_addr, init_type)) = self.own_address(init, cc.own_address_type) else { continue };
            let target = self.ctrls.iter().find_map(|(id, c)| {
                if id == init || !c.adv.enabled || !matches!(c.adv.params.adv_type, 0x00 | 0x01 | 0x04) {
                    return None;
                }
                let (addr, t) = self.own_address(id, c.adv.params.own_address_type)?;
                let directed_ok =
                    !matches!(c.adv.params.adv_type, 0x01 | 0x04) || c.adv.params.peer_address == init_addr;
                // Identity types 0x02/0x03 also match an advertiser whose private address the
                // initiator's resolving list resolves to that identity (Core Vol 4 Part E §7.8.12).
                let on_air = addr == cc.peer_address && t == cc.peer_address_type & 1;
                let resolved = cc.peer_address_type >= 2
                    && self.resolve_peer(init, addr, t) == Some((cc.peer_address, cc.peer_address_type));
                ((on_air || resolved) && directed_ok).then_some((id, addr, t))
            });
            if let Some((adv, adv_addr, adv_type)) = target {
                self.connect(init, cc, (init_addr, init_type), adv, (adv_addr, adv_type));
            }
        }
    }

    fn connect(
        &mut self,
        init: ControllerId,
        cc: CreateConnection,
        init_addr: (BdAddr, u8),
        adv: ControllerId,
        adv_addr: (BdAddr, u8),
    ) {
        let link = self.next_link;
        self.next_link += 1;
        let params = (cc.params.interval_max, cc.params.latency, cc.params.timeout);
        let (Some(ch), Some(ph)) = (self.alloc_handle(init, link, true), self.alloc_handle(adv, link, false)) else {
            return;
        };
        self.links.insert(
            link,
            Link {
                central: (init, ch),
                peripheral: (adv, ph),
                params,
                pending_ltk: None,
                encrypted: false,
                pending_update: None,
                tx_octets: [27, 27],
                phy: 1,
                delayed: [0, 0],
            },
        );
        if let Some(c) = self.ctrls.get_mut(&init) {
            c.initiating = None;
        }
        if let Some(c) = self.ctrls.get_mut(&adv) {
            c.adv.enabled = false;
        }
        // Each side reports the other's identity when its resolving list resolves the address,
        // with the private address itself as Peer_Resolvable_Private_Address (§7.7.65.10).
        let seen = |radio: &Self, by: ControllerId, (addr, t): (BdAddr, u8)| match radio.resolve_peer(by, addr, t) {
            Some((identity, it)) => (identity, it, addr),
            None => (addr, t, BdAddr::default()),
        };
        let (adv_seen, init_seen) = (seen(self, init, adv_addr), seen(self, adv, init_addr));
        let base = ConnectionComplete {
            status: 0,
            handle: ch,
            role: gattling_proto::host::ROLE_CENTRAL,
            peer_address_type: adv_seen.1,
            peer_address: adv_seen.0,
            local_rpa: BdAddr::default(),
            peer_rpa: adv_seen.2,
            interval: params.0,
            latency: params.1,
            supervision_timeout: params.2,
            clock_accuracy: 0,
            subevent: subevent::CONNECTION_COMPLETE,
        };
        self.emit_connection_complete(init, base);
        let peripheral = ConnectionComplete {
            handle: ph,
            role: gattling_proto::host::ROLE_PERIPHERAL,
            peer_address_type: init_seen.1,
            peer_address: init_seen.0,
            peer_rpa: init_seen.2,
            ..base
        };
        self.emit_connection_complete(adv, peripheral);
    }

    fn alloc_handle(&mut self, id: ControllerId, link: u32, central: bool) -> Option<u16> {
        let c = self.ctrls.get_mut(&id)?;
        // Handles 0x0000..=0x0EFF are valid (Core Vol 4 Part E §5.4.2); wrap within them.
        let next = |h: u16| if h >= 0x0EFF { 0x0001 } else { h + 1 };
        let mut h = c.next_handle;
        let mut tries = 0;
        while c.handles.contains_key(&h) {
            h = next(h);
            tries += 1;
            if tries > 0x0F00 {
                return None;
            }
        }
        c.next_handle = next(h);
        c.handles.insert(h, LinkEnd { link, central });
        Some(h)
    }

    /// LE (Enhanced) Connection Complete, whichever the host enabled (Core Vol 4 Part E §7.7.65.10).
    pub(crate) fn emit_connection_complete(&mut self, id: ControllerId, mut cc: ConnectionComplete) {
        let Some(c) = self.ctrls.get(&id) else { return };
        cc.subevent = if c.le_event_mask & (1 << 9) != 0 {
            subevent::ENHANCED_CONNECTION_COMPLETE
        } else {
            // LE Connection Complete has only types 0x00/0x01 (§7.7.65.1): a resolved peer is
            // reported by its identity address with the identity's base type.
            cc.peer_address_type &= 1;
            subevent::CONNECTION_COMPLETE
        };
        self.emit(id, &Event::Le(LeEvent::ConnectionComplete(cc)));
    }

    /// Ends a link: each side gets Disconnection Complete with its reason.
    pub(crate) fn end_link(&mut self, link: u32, central_reason: u8, peripheral_reason: u8) {
        let Some(l) = self.links.remove(&link) else { return };
        for (((id, handle), reason), delayed) in
            [(l.central, central_reason), (l.peripheral, peripheral_reason)].into_iter().zip(l.delayed)
        {
            if let Some(c) = self.ctrls.get_mut(&id) {
                // Packets still queued for a closed link are flushed: their buffers are free (§4.3).
                c.acl_used = c.acl_used.saturating_sub(delayed);
                c.handles.remove(&handle);
                self.emit(id, &Event::DisconnectionComplete { status: 0, handle, reason });
            }
        }
    }

    /// The other end of the link behind (`id`, `handle`).
    pub(crate) fn peer_of(&self, id: ControllerId, handle: u16) -> Option<(u32, (ControllerId, u16), bool)> {
        let end = self.ctrls.get(&id)?.handles.get(&handle)?;
        let l = self.links.get(&end.link)?;
        Some((end.link, if end.central { l.peripheral } else { l.central }, end.central))
    }

    /// Takes an ACL packet from the host of `id` into a buffer (Core Vol 4 Part E §4.1.1): its
    /// link, the peer it goes to and the header it gets there. `None` when it is refused (noted,
    /// and Data Buffer Overflow sent when the host had no credit).
    fn admit_acl<'b>(&mut self, id: ControllerId, body: &'b [u8]) -> Option<Admitted<'b>> {
        let Ok(acl) = AclPacket::decode(body) else {
            self.note(id, "malformed ACL packet from the host; dropped");
            return None;
        };
        let handle = acl.header.handle;
        let Some((link, (peer, peer_handle), _)) = self.peer_of(id, handle) else {
            self.note(id, "ACL data for a handle the host does not own; dropped");
            return None;
        };
        let ctrl = self.ctrls.get_mut(&id)?;
        if acl.data.len() > ctrl.config.acl_len as usize {
            self.note(id, "ACL packet longer than the controller's buffers; dropped");
            return None;
        }
        if ctrl.acl_used >= ctrl.config.acl_num as u16 {
            // Data Buffer Overflow (§7.7.26): the host sent without a credit.
            self.note(id, "ACL buffer overflow");
            self.emit(id, &Event::Unknown { code: 0x1A, params: &[0x01] });
            return None;
        }
        ctrl.acl_used += 1;
        let boundary = match acl.header.boundary {
            PacketBoundary::Continuing => PacketBoundary::Continuing,
            _ => PacketBoundary::FirstFlushable,
        };
        let header = AclHeader { handle: peer_handle, boundary, broadcast: 0, len: acl.header.len };
        self.acl_count = self.acl_count.wrapping_add(1);
        Some(Admitted { link, peer, handle, header, data: acl.data })
    }

    /// Relays one ACL packet from the host of `id` when `bytes` is exactly one whole H4 ACL
    /// packet, nothing is buffered before it and no fault is set: the radio's accounting is
    /// done as [`Radio::receive`] would (credits, completions, refusals), but the packet is not
    /// copied into the radio. [`Relay::Deliver`] tells the caller to hand the peer host's byte
    /// stream to [`Radio::write_relayed`]. Time does not move here: a timer it starts counts
    /// from the radio's last [`Radio::advance`].
    pub fn relay_acl(&mut self, id: ControllerId, bytes: &[u8]) -> Relay {
        if self.fault != Fault::None {
            return Relay::General;
        }
        let Some(ctrl) = self.ctrls.get(&id) else { return Relay::General };
        match ctrl.framer.split_whole(bytes) {
            Some((p, used)) if p.kind == PacketType::Acl && used == bytes.len() => {}
            _ => return Relay::General,
        }
        let Some(body) = bytes.get(1..) else { return Relay::General };
        let Some(a) = self.admit_acl(id, body) else { return Relay::Done };
        self.ack_acl(id, a.handle);
        let h = a.header.to_bytes();
        Relay::Deliver { to: a.peer, header: [PacketType::Acl as u8, h[0], h[1], h[2], h[3]] }
    }

    /// ACL data from a host: consume a buffer, route to the peer, return the buffer with
    /// Number Of Completed Packets (Core Vol 4 Part E §4.1.1).
    fn on_acl(&mut self, id: ControllerId, body: &[u8]) {
        let Some(Admitted { link, peer, handle, header, data }) = self.admit_acl(id, body) else { return };
        let mut packet = self.packet_buffer(5 + data.len());
        AclPacket { header, data }.encode_h4(&mut packet);
        match self.fault {
            Fault::DelayAcl(us) => {
                if let Some(l) = self.links.get_mut(&link) {
                    let side = usize::from(l.central != (id, handle));
                    l.delayed[side] += 1;
                }
                return self.schedule(us, Timer::Deliver { link, to: peer, packet, from: (id, handle) });
            }
            Fault::DropEveryNthAcl(n) if n != 0 && self.acl_count.is_multiple_of(n) => {}
            _ => self.push_raw(peer, packet),
        }
        self.ack_acl(id, handle);
    }

    /// The packet left the controller's buffer: it is reported with Number Of Completed Packets
    /// (§7.7.19), whose rate is the controller's choice. Reports are batched as controllers do:
    /// at once when half of the host's buffers wait for one, else before the next packet or
    /// event this controller sends its host, or [`COMPLETED_REPORT_DELAY_US`] later at the latest.
    /// A lone request/response exchange then wakes each host once, not twice.
    fn ack_acl(&mut self, id: ControllerId, handle: u16) {
        let Some(ctrl) = self.ctrls.get_mut(&id) else { return };
        ctrl.acl_used = ctrl.acl_used.saturating_sub(1);
        if !ctrl.handles.contains_key(&handle) {
            // The link is gone; the host already took its buffers back (§4.3).
            return;
        }
        match ctrl.completed.iter_mut().find(|(h, _)| *h == handle) {
            Some((_, count)) => *count = count.saturating_add(1),
            None => ctrl.completed.push((handle, 1)),
        }
        let waiting: u32 = ctrl.completed.iter().map(|&(_, n)| u32::from(n)).sum();
        if waiting * 2 >= u32::from(ctrl.config.acl_num) {
            self.report_completed(id);
        } else if !ctrl.completed_timer {
            ctrl.completed_timer = true;
            self.schedule(COMPLETED_REPORT_DELAY_US, Timer::ReportCompleted(id));
        }
    }

    pub(crate) fn schedule_update(&mut self, link: u32, params: ConnParams) {
        if let Some(l) = self.links.get_mut(&link) {
            l.pending_update = Some(params);
        }
        self.schedule(PROCEDURE_DELAY_US, Timer::UpdateComplete { link, params });
    }

    pub(crate) fn schedule_phy(&mut self, link: u32, phy: u8) {
        self.schedule(PROCEDURE_DELAY_US, Timer::PhyComplete { link, phy });
    }

    pub(crate) fn schedule_directed_timeout(&mut self, id: ControllerId) {
        let Some(c) = self.ctrls.get_mut(&id) else { return };
        c.adv.generation = c.adv.generation.wrapping_add(1);
        let generation = c.adv.generation;
        self.schedule(DIRECTED_ADV_TIMEOUT_US, Timer::DirectedAdvTimeout(id, generation));
    }
}

impl Ctrl {
    pub(crate) fn new(config: ControllerConfig, public: BdAddr) -> Self {
        Self {
            config,
            public,
            random: None,
            event_mask: DEFAULT_EVENT_MASK,
            le_event_mask: DEFAULT_LE_EVENT_MASK,
            framer: H4Framer::new(4 + 1024),
            touched: false,
            out: VecDeque::new(),
            adv: Advertising {
                params: AdvParams { interval_min: 0x800, interval_max: 0x800, ..AdvParams::default() },
                enabled: false,
                data: Vec::new(),
                scan_response: Vec::new(),
                generation: 0,
            },
            scan: Scanning {
                active: false,
                own_address_type: 0,
                enabled: false,
                filter_duplicates: false,
                seen: BTreeSet::new(),
                generation: 0,
            },
            initiating: None,
            handles: BTreeMap::new(),
            next_handle: 0x0001,
            acl_used: 0,
            completed: Vec::new(),
            completed_timer: false,
            privacy: Privacy { rpa_timeout: DEFAULT_RPA_TIMEOUT, ..Privacy::default() },
        }
    }

    /// Event mask filtering (Core Vol 4 Part E §7.3.1, §7.8.1).
    fn allows(&self, ev: &Event<'_>) -> bool {
        let bit = |m: u64, b: u32| m & (1u64 << b) != 0;
        match ev {
            Event::DisconnectionComplete { .. } => bit(self.event_mask, 4),
            // v2 is unmasked on Event Mask Page 2, which this controller does not implement:
            // it only ever sends v1.
            Event::EncryptionChange { .. } | Event::EncryptionChangeV2 { .. } => bit(self.event_mask, 7),
            Event::HardwareError { .. } => bit(self.event_mask, 15),
            Event::Unknown { code: 0x1A, .. } => bit(self.event_mask, 25),
            Event::EncryptionKeyRefreshComplete { .. } => bit(self.event_mask, 47),
            Event::Le(le) => {
                let sub = match le {
                    LeEvent::ConnectionComplete(c) => c.subevent,
                    LeEvent::AdvertisingReport(_) => subevent::ADVERTISING_REPORT,
                    LeEvent::ConnectionUpdateComplete { .. } => subevent::CONNECTION_UPDATE_COMPLETE,
                    LeEvent::LongTermKeyRequest { .. } => subevent::LONG_TERM_KEY_REQUEST,
                    LeEvent::RemoteConnectionParameterRequest { .. } => subevent::REMOTE_CONNECTION_PARAMETER_REQUEST,
                    LeEvent::DataLengthChange { .. } => subevent::DATA_LENGTH_CHANGE,
                    LeEvent::PhyUpdateComplete { .. } => subevent::PHY_UPDATE_COMPLETE,
                    LeEvent::Unknown { subevent, .. } => *subevent,
                };
                bit(self.event_mask, 61) && sub >= 1 && bit(self.le_event_mask, sub as u32 - 1)
            }
            _ => true,
        }
    }
}

/// Helper for building a failed connection-complete event.
pub(crate) trait Failed {
    fn failed(subevent: u8) -> Self;
}

impl Failed for ConnectionComplete {
    fn failed(subevent: u8) -> Self {
        ConnectionComplete {
            status: status::UNKNOWN_CONNECTION_ID,
            handle: 0,
            role: gattling_proto::host::ROLE_CENTRAL,
            peer_address_type: 0,
            peer_address: BdAddr::default(),
            local_rpa: BdAddr::default(),
            peer_rpa: BdAddr::default(),
            interval: 0,
            latency: 0,
            supervision_timeout: 0,
            clock_accuracy: 0,
            subevent,
        }
    }
}
