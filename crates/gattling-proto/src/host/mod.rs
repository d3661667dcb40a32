//! The sans-IO host: one controller's HCI traffic in, bytes to send and host events out.
//!
//! [`Host`] frames the byte stream (H4), keeps command flow control (Num_HCI_Command_Packets,
//! Core Vol 4 Part E §4.4), shares the controller's ACL buffers fairly between connections
//! (Number Of Completed Packets, §4.1.1), fragments outgoing and reassembles incoming L2CAP PDUs,
//! routes the LE fixed channels, answers the LE signaling and SMP channels itself, and hands ATT
//! PDUs to the caller without copying them.

use crate::gap::{Address, AddressType, BdAddr};
use crate::hci::command::{Command, ConnParams, Opcode};
use crate::hci::event::{CompletedPackets, Event, LeEvent};
use crate::hci::{status, AclPacket, H4Framer, H4Packet, PacketType};
use crate::l2cap::signaling::{self, Signal};
use crate::l2cap::{self, cid, Reassembler, ReassemblyError};
use crate::{smp, DecodeError};
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

pub use crate::hci::ConnHandle;

/// Identifies a command submitted with [`Host::send_command`], echoed in [`HostEvent::CommandDone`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct CommandId(pub u64);

/// Our role on a connection (Core Vol 6 Part B §1.1).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// We initiated the connection.
    Central,
    /// We accepted it while advertising.
    Peripheral,
}

/// What the host knows about a connection when it is established (Core Vol 4 Part E §7.7.65.1).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ConnectionInfo {
    /// Connection handle.
    pub handle: ConnHandle,
    /// Our role.
    pub role: Role,
    /// The peer's address (its identity address, type 0x02/0x03, when the controller resolved it).
    pub peer: Address,
    /// The address the peer used on air: its resolvable private address when the controller
    /// resolved it (Peer_Resolvable_Private_Address, Core Vol 4 Part E §7.7.65.10), else `peer`;
    /// the address pairing takes into its confirm and check values (Core Vol 3 Part H §2.2).
    pub peer_on_air: Address,
    /// Connection interval (units of 1.25 ms).
    pub interval: u16,
    /// Peripheral latency.
    pub latency: u16,
    /// Supervision timeout (units of 10 ms).
    pub supervision_timeout: u16,
}

/// A link's security state: whether it is encrypted and with what key (Core Vol 3 Part C §10.2,
/// Core Vol 4 Part E §7.7.8).
///
/// `authenticated` and `secure_connections` describe the key, not the link layer: the controller
/// cannot know them; the Security Manager sets them with [`Host::set_key_properties`] when it
/// starts encryption with a key it generated or distributed (Core Vol 3 Part H §2.4).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct LinkSecurity {
    /// True while the link is encrypted (AES-CCM).
    pub encrypted: bool,
    /// Encryption key size in octets (7..=16); 0 while unencrypted.
    pub key_size: u8,
    /// The key came from an authenticated (MITM-protected) pairing.
    pub authenticated: bool,
    /// The key came from LE Secure Connections pairing.
    pub secure_connections: bool,
}

/// The key size assumed when the controller reports Encryption Change v1, which carries none
/// (Core Vol 4 Part E §7.7.8): 16 octets, the size every LE controller negotiates unless the
/// Security Manager agreed on a shorter key (Core Vol 3 Part H §2.3.4), in which case SMP knows
/// the real size and can override it with [`Host::set_key_properties`].
pub const ASSUMED_KEY_SIZE: u8 = 16;

/// One advertising report, owned (Core Vol 4 Part E §7.7.65.2).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AdvReport {
    /// Advertiser address and type.
    pub address: Address,
    /// 0 ADV_IND, 1 ADV_DIRECT_IND, 2 ADV_SCAN_IND, 3 ADV_NONCONN_IND, 4 SCAN_RSP.
    pub event_type: u8,
    /// RSSI in dBm (127 = unavailable).
    pub rssi: i8,
    /// Advertising or scan-response data.
    pub data: Vec<u8>,
}

/// Something the host dropped or ignored, reported so the runtime can log it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Dropped {
    /// Bytes from the controller that could not be decoded.
    Malformed(DecodeError),
    /// An HCI event this host does not handle (event code, LE subevent code if LE Meta).
    UnknownEvent {
        /// Event code.
        code: u8,
        /// LE subevent code when `code` is LE Meta.
        subevent: Option<u8>,
    },
    /// ACL data or an event for a connection handle the host does not know.
    UnknownHandle(ConnHandle),
    /// A PDU on a fixed channel the host does not serve.
    UnknownChannel {
        /// Connection handle.
        handle: ConnHandle,
        /// Channel id.
        cid: u16,
    },
    /// An L2CAP PDU lost in reassembly.
    Reassembly {
        /// Connection handle.
        handle: ConnHandle,
        /// Why.
        error: ReassemblyError,
    },
    /// A Command Complete/Status for a command the host did not send.
    UnexpectedCompletion(Opcode),
    /// A Command Reject from the peer's L2CAP signaling.
    SignalingRejected {
        /// Connection handle.
        handle: ConnHandle,
        /// Reject reason.
        reason: u16,
    },
    /// An SMP PDU answered with Pairing Failed because pairing is not implemented yet.
    PairingRefused(ConnHandle),
    /// A signaling or SMP answer the host did not queue: the link already has
    /// [`MAX_QUEUED_CONTROL`] of them waiting for ACL buffers (a peer flooding requests;
    /// Core Vol 3 Part A §4, Part H §3).
    Flooded {
        /// Connection handle.
        handle: ConnHandle,
        /// The channel of the unanswered request.
        cid: u16,
    },
}

/// What the host reports to the layer above (Core Vol 4 Part E §7.7).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum HostEvent {
    /// A command finished: with Command Complete (`return_params` after the status byte), or with
    /// Command Status for commands whose outcome comes later as another event.
    CommandDone {
        /// The id returned by [`Host::send_command`].
        id: CommandId,
        /// Its opcode.
        opcode: Opcode,
        /// HCI status (0 = success).
        status: u8,
        /// Return parameters after the status byte (empty for Command Status).
        return_params: Vec<u8>,
    },
    /// A connection was established, in either role.
    Connected(ConnectionInfo),
    /// A connection attempt ended without a connection (e.g. 0x02 after a cancel).
    ConnectionFailed {
        /// HCI status.
        status: u8,
    },
    /// A connection ended (Core Vol 4 Part E §7.7.5).
    Disconnected {
        /// Its handle.
        handle: ConnHandle,
        /// The HCI reason code.
        reason: u8,
    },
    /// An advertising or scan-response report.
    Advertisement(AdvReport),
    /// Connection parameters changed or the update failed (§7.7.65.3).
    ConnectionUpdated {
        /// Handle.
        handle: ConnHandle,
        /// HCI status.
        status: u8,
        /// New interval.
        interval: u16,
        /// New latency.
        latency: u16,
        /// New supervision timeout.
        supervision_timeout: u16,
    },
    /// The peer answered our L2CAP Connection Parameter Update Request (Core Vol 3 Part A §4.21).
    ConnectionParameterUpdateAnswered {
        /// Handle.
        handle: ConnHandle,
        /// True when the central accepted.
        accepted: bool,
    },
    /// The link-layer data length changed (§7.7.65.7).
    DataLengthChanged {
        /// Handle.
        handle: ConnHandle,
        /// Max TX octets.
        max_tx_octets: u16,
        /// Max RX octets.
        max_rx_octets: u16,
    },
    /// The PHY changed or the change failed (§7.7.65.12).
    PhyUpdated {
        /// Handle.
        handle: ConnHandle,
        /// HCI status.
        status: u8,
        /// TX PHY.
        tx_phy: u8,
        /// RX PHY.
        rx_phy: u8,
    },
    /// Link encryption was turned on or off, or failed to start (Encryption Change v1 or v2,
    /// Core Vol 4 Part E §7.7.8). For v1, which has no key size, `key_size` is
    /// [`ASSUMED_KEY_SIZE`] when encrypted (the host does not send Read Encryption Key Size).
    /// A failed start (e.g. 0x06 PIN or Key Missing when the peer has no key) leaves the link
    /// as it was.
    EncryptionChanged {
        /// Handle.
        handle: ConnHandle,
        /// HCI status (0 = success).
        status: u8,
        /// True when the link is now encrypted.
        encrypted: bool,
        /// Key size in octets when encrypted, 0 otherwise.
        key_size: u8,
    },
    /// An encrypted link now uses a new key, or the refresh failed (Encryption Key Refresh
    /// Complete, Core Vol 4 Part E §7.7.39).
    EncryptionKeyRefreshed {
        /// Handle.
        handle: ConnHandle,
        /// HCI status (0 = success).
        status: u8,
    },
    /// As peripheral, the central started encryption: answer with [`Host::long_term_key_reply`]
    /// or [`Host::long_term_key_negative_reply`] (LE Long Term Key Request, Core Vol 4 Part E
    /// §7.7.65.5). Rand and EDIV are 0 when the central uses an LE Secure Connections key.
    LongTermKeyRequest {
        /// Handle.
        handle: ConnHandle,
        /// Random_Number the central sent.
        rand: u64,
        /// Encrypted_Diversifier the central sent.
        ediv: u16,
    },
    /// An SMP PDU from the peer, for the Security Manager above (Core Vol 3 Part H §3.3); only
    /// with [`HostConfig::security_manager`].
    Smp {
        /// Handle.
        handle: ConnHandle,
        /// The SMP command, code first.
        pdu: Vec<u8>,
    },
    /// The controller reported a hardware error (§7.7.16); the host should reset it.
    HardwareError(u8),
    /// Something was dropped or ignored; log it.
    Dropped(Dropped),
}

/// Why the host refused a request from the layer above.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum HostError {
    /// No connection with this handle.
    #[error("no connection with handle {0:#05x}")]
    UnknownConnection(ConnHandle),
    /// ACL buffer sizes are not known yet: the controller has not been initialised.
    #[error("the controller's ACL buffer size is not known yet (initialise the host first)")]
    NotInitialized,
    /// The payload does not fit in one L2CAP PDU.
    #[error("L2CAP payload of {0} bytes exceeds 65535")]
    PayloadTooLong(usize),
    /// The operation needs the other role on this connection.
    #[error("this operation needs the {0:?} role on the connection")]
    WrongRole(Role),
    /// No LE Long Term Key Request is waiting for an answer on this connection (Core Vol 4
    /// Part E §7.8.25).
    #[error("no LE Long Term Key Request is pending on handle {0:#05x}")]
    NoKeyRequestPending(ConnHandle),
}

/// Host settings that bound memory and behaviour.
#[derive(Clone, Copy, Debug)]
pub struct HostConfig {
    /// Largest incoming L2CAP payload accepted; bigger PDUs are discarded as they arrive.
    /// Defaults to 517, the largest ATT_MTU (Core Vol 3 Part F §3.2.8).
    pub max_l2cap_payload: usize,
    /// Largest HCI packet body accepted from the controller.
    pub max_hci_packet: usize,
    /// The layer above runs a Security Manager: SMP PDUs are handed up as [`HostEvent::Smp`].
    /// Without one the host answers pairing attempts itself with Pairing Not Supported
    /// (Core Vol 3 Part H §3.5.5).
    pub security_manager: bool,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self { max_l2cap_payload: 517, max_hci_packet: crate::hci::h4::DEFAULT_MAX_BODY, security_manager: false }
    }
}

/// Per-connection state.
#[derive(Debug)]
struct Link {
    info: ConnectionInfo,
    rx: Reassembler,
    tx: VecDeque<Vec<u8>>,
    /// Signaling and SMP PDUs among `tx` (bounded by [`MAX_QUEUED_CONTROL`] against floods).
    control_queued: u16,
    in_flight: u16,
    next_signal_id: u8,
    security: LinkSecurity,
    /// An LE Long Term Key Request is waiting for the layer above to answer.
    key_request_pending: bool,
}

/// Signaling and SMP PDUs a link may have waiting for ACL buffers before the host stops
/// answering that peer's requests on those channels, and commands the host may have queued on
/// its own behalf before it stops answering requests that need one: a peer flooding requests
/// while the controller holds the buffers cannot make a queue grow without bound (signaling,
/// Core Vol 3 Part A §4; SMP, Core Vol 3 Part H §3).
pub const MAX_QUEUED_CONTROL: u16 = 16;

/// True when an outgoing H4 ACL packet starts an L2CAP PDU on a channel other than ATT.
fn starts_control_pdu(packet: &[u8]) -> bool {
    // H4 indicator, handle and flags (the Packet_Boundary_Flag in bits 12-13), length, then
    // the L2CAP length and channel id.
    let start = packet.get(2).is_some_and(|flags| flags & 0x30 != 0x10);
    match packet.get(7..9) {
        Some(&[a, b]) => start && u16::from_le_bytes([a, b]) != cid::ATT,
        _ => false,
    }
}

/// The sans-IO host state machine for one controller.
#[derive(Debug)]
pub struct Host {
    config: HostConfig,
    framer: H4Framer,
    next_command: u64,
    command_credits: u8,
    command_queue: VecDeque<(CommandId, Opcode, Vec<u8>)>,
    commands_in_flight: Vec<(CommandId, Opcode)>,
    acl_len: usize,
    acl_total: u16,
    acl_free: u16,
    links: BTreeMap<ConnHandle, Link>,
    /// Links with queued ACL fragments, in service order.
    ready: VecDeque<ConnHandle>,
    /// Links with no ACL packet in flight.
    idle_links: usize,
    outbox: VecDeque<Vec<u8>>,
    events: VecDeque<HostEvent>,
    /// Written packet buffers, reused for the next ACL fragments.
    pool: Vec<Vec<u8>>,
    /// Reused for the signaling and SMP answers of one ACL packet.
    replies: Replies,
    /// Reused for the ATT answer a [`Host::receive_answering`] handler writes.
    att_answer: Vec<u8>,
}

/// Handles one received ATT PDU for [`Host::receive_answering`]: may write one ATT PDU to send
/// back into the buffer (empty when called) and return true.
pub type AttHandler<'a> = dyn FnMut(ConnHandle, &[u8], &mut Vec<u8>) -> bool + 'a;

/// The Role field of LE Connection Complete: we are the central (Core Vol 4 Part E §7.7.65.1).
pub const ROLE_CENTRAL: u8 = 0x00;
/// The Role field of LE Connection Complete: we are the peripheral (Core Vol 4 Part E §7.7.65.1).
pub const ROLE_PERIPHERAL: u8 = 0x01;

/// Packet buffers [`Host::recycle`] keeps for reuse.
pub const POOL_BUFFERS: usize = 64;

impl Host {
    /// A host with no connections, one command credit and unknown ACL buffers.
    pub fn new(config: HostConfig) -> Self {
        Self {
            framer: H4Framer::new(config.max_hci_packet),
            config,
            next_command: 0,
            command_credits: 1,
            command_queue: VecDeque::new(),
            commands_in_flight: Vec::new(),
            acl_len: 0,
            acl_total: 0,
            acl_free: 0,
            links: BTreeMap::new(),
            ready: VecDeque::new(),
            idle_links: 0,
            outbox: VecDeque::new(),
            events: VecDeque::with_capacity(16),
            pool: Vec::new(),
            replies: Replies::default(),
            att_answer: Vec::new(),
        }
    }

    /// Queues a command; it is sent as soon as the controller grants a command credit.
    pub fn send_command(&mut self, cmd: &Command) -> CommandId {
        let id = CommandId(self.next_command);
        self.next_command += 1;
        let mut bytes = Vec::with_capacity(4 + 8);
        cmd.encode_h4(&mut bytes);
        self.command_queue.push_back((id, cmd.opcode(), bytes));
        self.pump_commands();
        id
    }

    /// Gives up on a command the controller never completed (the caller's command timeout):
    /// forgets it and, if it was sent, takes back the credit it used so later commands are not
    /// blocked forever (Core Vol 4 Part E §4.4 sets no timeout; BlueZ does the same after its
    /// own). A late completion for it is then reported as [`Dropped::UnexpectedCompletion`].
    /// Returns false when the command had already completed.
    pub fn abandon_command(&mut self, id: CommandId) -> bool {
        if let Some(i) = self.command_queue.iter().position(|(c, ..)| *c == id) {
            self.command_queue.remove(i);
            return true;
        }
        let Some(i) = self.commands_in_flight.iter().position(|(c, _)| *c == id) else {
            return false;
        };
        self.commands_in_flight.remove(i);
        self.command_credits = self.command_credits.max(1);
        self.pump_commands();
        true
    }

    /// Records the controller's LE ACL buffers (from LE Read Buffer Size, or Read Buffer Size
    /// when LE reports 0) (Core Vol 4 Part E §7.8.2).
    pub fn set_acl_buffers(&mut self, acl_len: u16, acl_num: u16) {
        let used = self.acl_total - self.acl_free;
        self.acl_len = acl_len as usize;
        self.acl_total = acl_num;
        self.acl_free = acl_num.saturating_sub(used);
        self.pump_acl();
    }

    /// The controller's ACL data length and packet count, as set by [`Host::set_acl_buffers`].
    pub fn acl_buffers(&self) -> (usize, u16) {
        (self.acl_len, self.acl_total)
    }

    /// ACL buffers currently free in the controller.
    pub fn acl_free(&self) -> u16 {
        self.acl_free
    }

    /// Information about an open connection.
    pub fn connection(&self, handle: ConnHandle) -> Option<&ConnectionInfo> {
        self.links.get(&handle).map(|l| &l.info)
    }

    /// Handles of all open connections.
    pub fn connections(&self) -> impl Iterator<Item = &ConnectionInfo> {
        self.links.values().map(|l| &l.info)
    }

    /// Queues an L2CAP PDU on a fixed channel, fragmented to the controller's ACL size.
    pub fn send_l2cap(&mut self, handle: ConnHandle, cid: u16, payload: &[u8]) -> Result<(), HostError> {
        if payload.len() > u16::MAX as usize {
            return Err(HostError::PayloadTooLong(payload.len()));
        }
        if self.acl_len == 0 {
            return Err(HostError::NotInitialized);
        }
        let acl_len = self.acl_len;
        let link = self.links.get_mut(&handle).ok_or(HostError::UnknownConnection(handle))?;
        // Fast path: one fragment, nothing queued anywhere, a buffer free beyond the reserve
        // kept for idle links (the rule of `pump_acl`): straight to the outbox.
        if cid == cid::ATT && link.tx.is_empty() && self.ready.is_empty() && payload.len() + 4 <= acl_len {
            let idle_others = self.idle_links - usize::from(link.in_flight == 0);
            let reserve = idle_others.min(self.acl_total as usize / 2);
            if (self.acl_free as usize) > reserve {
                let mut p = self.pool.pop().unwrap_or_default();
                l2cap::single_fragment(handle, cid, payload, &mut p);
                if link.in_flight == 0 {
                    self.idle_links -= 1;
                }
                link.in_flight += 1;
                self.acl_free -= 1;
                self.outbox.push_back(p);
                return Ok(());
            }
        }
        if link.tx.is_empty() {
            self.ready.push_back(handle);
        }
        let pool = &mut self.pool;
        l2cap::fragment_into(
            handle,
            cid,
            payload,
            acl_len,
            || pool.pop().unwrap_or_default(),
            |p| link.tx.push_back(p),
        );
        if cid != cid::ATT {
            link.control_queued = link.control_queued.saturating_add(1);
        }
        self.pump_acl();
        Ok(())
    }

    /// Turns handing SMP PDUs up ([`HostConfig::security_manager`]) on or off.
    pub fn set_security_manager(&mut self, on: bool) {
        self.config.security_manager = on;
    }

    /// Queues an SMP PDU to the peer (L2CAP channel 0x0006, Core Vol 3 Part H §3.2).
    pub fn send_smp(&mut self, handle: ConnHandle, pdu: &[u8]) -> Result<(), HostError> {
        self.send_l2cap(handle, cid::SMP, pdu)
    }

    /// Queues an ATT PDU to the peer (L2CAP channel 0x0004).
    pub fn send_att(&mut self, handle: ConnHandle, pdu: &[u8]) -> Result<(), HostError> {
        self.send_l2cap(handle, cid::ATT, pdu)
    }

    /// As peripheral, asks the central for new connection parameters over L2CAP
    /// (Core Vol 3 Part A §4.20); the answer arrives as [`HostEvent::ConnectionParameterUpdateAnswered`].
    pub fn request_connection_parameters(&mut self, handle: ConnHandle, p: &ConnParams) -> Result<(), HostError> {
        let link = self.links.get_mut(&handle).ok_or(HostError::UnknownConnection(handle))?;
        if link.info.role != Role::Peripheral {
            return Err(HostError::WrongRole(Role::Peripheral));
        }
        let identifier = next_id(link);
        let mut out = Vec::new();
        Signal::ConnectionParameterUpdateReq {
            identifier,
            interval_min: p.interval_min,
            interval_max: p.interval_max,
            latency: p.latency,
            timeout: p.timeout,
        }
        .encode(&mut out);
        self.send_l2cap(handle, cid::LE_SIGNALING, &out)
    }

    /// The security state of an open connection.
    pub fn security(&self, handle: ConnHandle) -> Option<LinkSecurity> {
        self.links.get(&handle).map(|l| l.security)
    }

    /// As central, starts encryption with a Long Term Key, or refreshes the key of an encrypted
    /// link (LE Enable Encryption, Core Vol 4 Part E §7.8.24). The outcome arrives as
    /// [`HostEvent::EncryptionChanged`] or [`HostEvent::EncryptionKeyRefreshed`]; the command's
    /// own status as [`HostEvent::CommandDone`]. `ltk`, `rand` and `ediv` are in HCI order
    /// (least significant octet first). The host keeps sending queued ACL data: the link layer
    /// pauses it during the procedure (Core Vol 6 Part B §5.1.3.1).
    pub fn start_encryption(
        &mut self,
        handle: ConnHandle,
        ltk: [u8; 16],
        rand: u64,
        ediv: u16,
    ) -> Result<CommandId, HostError> {
        let link = self.links.get(&handle).ok_or(HostError::UnknownConnection(handle))?;
        if link.info.role != Role::Central {
            return Err(HostError::WrongRole(Role::Central));
        }
        Ok(self.send_command(&Command::LeEnableEncryption { handle, rand, ediv, ltk }))
    }

    /// As peripheral, answers a pending [`HostEvent::LongTermKeyRequest`] with the key (LE Long
    /// Term Key Request Reply, Core Vol 4 Part E §7.8.25).
    pub fn long_term_key_reply(&mut self, handle: ConnHandle, ltk: [u8; 16]) -> Result<CommandId, HostError> {
        self.take_key_request(handle)?;
        Ok(self.send_command(&Command::LeLongTermKeyRequestReply { handle, ltk }))
    }

    /// As peripheral, answers a pending [`HostEvent::LongTermKeyRequest`] with "no key"; the
    /// central sees Encryption Change with 0x06 PIN or Key Missing (LE Long Term Key Request
    /// Negative Reply, Core Vol 4 Part E §7.8.26).
    pub fn long_term_key_negative_reply(&mut self, handle: ConnHandle) -> Result<CommandId, HostError> {
        self.take_key_request(handle)?;
        Ok(self.send_command(&Command::LeLongTermKeyRequestNegativeReply { handle }))
    }

    /// Records what the Security Manager knows about the key in use: MITM protection and LE
    /// Secure Connections (Core Vol 3 Part H §2.4), and the key size it negotiated when the
    /// controller reported none (`Some(size)` overrides [`ASSUMED_KEY_SIZE`] on an encrypted link).
    pub fn set_key_properties(
        &mut self,
        handle: ConnHandle,
        authenticated: bool,
        secure_connections: bool,
        key_size: Option<u8>,
    ) -> Result<(), HostError> {
        let link = self.links.get_mut(&handle).ok_or(HostError::UnknownConnection(handle))?;
        link.security.authenticated = authenticated;
        link.security.secure_connections = secure_connections;
        if let (Some(size), true) = (key_size, link.security.encrypted) {
            link.security.key_size = size;
        }
        Ok(())
    }

    fn take_key_request(&mut self, handle: ConnHandle) -> Result<(), HostError> {
        let link = self.links.get_mut(&handle).ok_or(HostError::UnknownConnection(handle))?;
        if link.info.role != Role::Peripheral {
            return Err(HostError::WrongRole(Role::Peripheral));
        }
        if !core::mem::take(&mut link.key_request_pending) {
            return Err(HostError::NoKeyRequestPending(handle));
        }
        Ok(())
    }

    /// The next HCI packet (H4 framed) to write to the transport. Hand the buffer back with
    /// [`Host::recycle`] once written, so the next packets reuse it instead of allocating.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop_front()
    }

    /// Returns a written packet's buffer for reuse (at most [`POOL_BUFFERS`] are kept).
    pub fn recycle(&mut self, buffer: Vec<u8>) {
        if self.pool.len() < POOL_BUFFERS {
            self.pool.push(buffer);
        }
    }

    /// True when [`Host::poll_transmit`] has a packet to give.
    #[inline]
    pub fn has_transmit(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// True when [`poll_event`](Self::poll_event) has an event to give.
    #[inline]
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The next event for the layer above.
    pub fn poll_event(&mut self) -> Option<HostEvent> {
        self.events.pop_front()
    }

    /// Takes bytes read from the transport. Complete ATT PDUs are passed to `on_att` as they are
    /// reassembled, borrowed (no allocation for PDUs within the bounds); everything else becomes
    /// events and outgoing packets.
    pub fn receive(&mut self, bytes: &[u8], on_att: &mut dyn FnMut(ConnHandle, &[u8])) {
        self.receive_answering(bytes, &mut |handle, pdu, _| {
            on_att(handle, pdu);
            false
        })
    }

    /// As [`receive`](Self::receive), and `on_att` may answer a PDU at once: it writes the answer
    /// (one ATT PDU) into the buffer it is given and returns true, and the host queues it to
    /// the same link as [`send_att`](Self::send_att) would, with no copy in between.
    pub fn receive_answering(&mut self, bytes: &[u8], on_att: &mut AttHandler<'_>) {
        // Whole packets are taken straight from the input while nothing is buffered (the usual
        // case: a packet transport, or a stream read that ends on a packet boundary).
        let mut rest = bytes;
        while let Some((packet, used)) = self.framer.split_whole(rest) {
            rest = rest.get(used..).unwrap_or(&[]);
            self.on_packet(packet, on_att);
        }
        if !rest.is_empty() {
            // Out of the way while its packets are handled; a stand-in that owns no buffer.
            let mut framer = core::mem::replace(&mut self.framer, H4Framer::unallocated(0));
            framer.push(rest);
            loop {
                match framer.next_packet() {
                    None => break,
                    Some(Err(e)) => self.events.push_back(HostEvent::Dropped(Dropped::Malformed(e))),
                    Some(Ok(packet)) => self.on_packet(packet, on_att),
                }
            }
            self.framer = framer;
        }
        if self.command_credits > 0 && !self.command_queue.is_empty() {
            self.pump_commands();
        }
        if self.acl_free > 0 && !self.ready.is_empty() {
            self.pump_acl();
        }
    }

    /// Takes one HCI packet from the controller.
    fn on_packet(&mut self, packet: H4Packet<'_>, on_att: &mut AttHandler<'_>) {
        if let (PacketType::Event, [0x13, len, n, entries @ ..]) = (packet.kind, packet.body) {
            // Number Of Completed Packets (Core Vol 4 Part E §7.7.19), the most frequent event,
            // without the general decoder; a malformed one takes the general path and its error.
            if usize::from(*len) == 1 + entries.len() && entries.len() == 4 * usize::from(*n) {
                self.on_completed_packets(CompletedPackets::from_raw(entries));
                return;
            }
        }
        match packet.kind {
            PacketType::Event => match Event::decode(packet.body) {
                Ok(ev) => Self::on_event(
                    &mut self.links,
                    &mut State {
                        config: &self.config,
                        command_credits: &mut self.command_credits,
                        commands_in_flight: &mut self.commands_in_flight,
                        acl_free: &mut self.acl_free,
                        acl_total: self.acl_total,
                        idle_links: &mut self.idle_links,
                        events: &mut self.events,
                        command_queue: &mut self.command_queue,
                    },
                    ev,
                ),
                Err(e) => self.events.push_back(HostEvent::Dropped(Dropped::Malformed(e))),
            },
            PacketType::Acl => match AclPacket::decode(packet.body) {
                Ok(acl) => {
                    let smp = self.config.security_manager;
                    let (links, events, replies, answer) =
                        (&mut self.links, &mut self.events, &mut self.replies, &mut self.att_answer);
                    if let Some(handle) = Self::on_acl(links, events, replies, answer, acl, smp, on_att) {
                        // The link exists: the request just arrived on it.
                        let answer = core::mem::take(&mut self.att_answer);
                        let _ = self.send_l2cap(handle, cid::ATT, &answer);
                        self.att_answer = answer;
                    }
                    if !self.replies.is_empty() {
                        let mut replies = core::mem::take(&mut self.replies);
                        self.apply(&mut replies);
                        self.replies = replies;
                    }
                }
                Err(e) => self.events.push_back(HostEvent::Dropped(Dropped::Malformed(e))),
            },
            other => {
                self.events.push_back(HostEvent::Dropped(Dropped::UnknownEvent { code: other as u8, subevent: None }))
            }
        }
    }

    fn on_event(links: &mut BTreeMap<ConnHandle, Link>, st: &mut State<'_>, ev: Event<'_>) {
        match ev {
            Event::CommandComplete { num_packets, opcode, return_params } => {
                *st.command_credits = num_packets;
                if opcode == Opcode::NOP {
                    return;
                }
                let (status, rest) = match return_params.split_first() {
                    Some((s, rest)) => (*s, rest),
                    None => (status::SUCCESS, &[][..]),
                };
                st.complete(opcode, status, rest.to_vec());
            }
            Event::CommandStatus { status, num_packets, opcode } => {
                *st.command_credits = num_packets;
                if opcode != Opcode::NOP {
                    st.complete(opcode, status, Vec::new());
                }
            }
            Event::DisconnectionComplete { status, handle, reason } => {
                if status != status::SUCCESS {
                    return;
                }
                match links.remove(&handle) {
                    Some(link) => {
                        if link.in_flight == 0 {
                            *st.idle_links -= 1;
                        }
                        // The controller frees a closed link's buffers (Core Vol 4 Part E §4.3).
                        *st.acl_free = (*st.acl_free + link.in_flight).min(st.acl_total);
                        st.events.push_back(HostEvent::Disconnected { handle, reason });
                    }
                    None => st.events.push_back(HostEvent::Dropped(Dropped::UnknownHandle(handle))),
                }
            }
            Event::NumberOfCompletedPackets(c) => Self::completed(links, st.idle_links, st.acl_free, st.acl_total, c),
            Event::HardwareError { code } => st.events.push_back(HostEvent::HardwareError(code)),
            Event::EncryptionChange { status, handle, enabled } => {
                Self::on_encryption_change(links, st, status, handle, enabled != 0, ASSUMED_KEY_SIZE)
            }
            Event::EncryptionChangeV2 { status, handle, enabled, key_size } => {
                Self::on_encryption_change(links, st, status, handle, enabled != 0, key_size)
            }
            Event::EncryptionKeyRefreshComplete { status, handle } => match links.get_mut(&handle) {
                Some(_) => st.events.push_back(HostEvent::EncryptionKeyRefreshed { handle, status }),
                None => st.events.push_back(HostEvent::Dropped(Dropped::UnknownHandle(handle))),
            },
            Event::Le(le) => Self::on_le_event(links, st, le),
            Event::Unknown { code, .. } => {
                st.events.push_back(HostEvent::Dropped(Dropped::UnknownEvent { code, subevent: None }))
            }
        }
    }

    fn on_completed_packets(&mut self, c: CompletedPackets<'_>) {
        Self::completed(&mut self.links, &mut self.idle_links, &mut self.acl_free, self.acl_total, c);
    }

    /// Number Of Completed Packets (Core Vol 4 Part E §7.7.19): the controller's buffers come
    /// back; counts beyond what a link has in flight, and unknown handles, are ignored.
    fn completed(
        links: &mut BTreeMap<ConnHandle, Link>,
        idle_links: &mut usize,
        acl_free: &mut u16,
        acl_total: u16,
        c: CompletedPackets<'_>,
    ) {
        for (handle, n) in c.iter() {
            if let Some(link) = links.get_mut(&handle) {
                let n = n.min(link.in_flight);
                link.in_flight -= n;
                if n > 0 && link.in_flight == 0 {
                    *idle_links += 1;
                }
                *acl_free = (*acl_free + n).min(acl_total);
            }
        }
    }

    /// Encryption Change v1/v2 (Core Vol 4 Part E §7.7.8): records the link's new state.
    fn on_encryption_change(
        links: &mut BTreeMap<ConnHandle, Link>,
        st: &mut State<'_>,
        status: u8,
        handle: ConnHandle,
        enabled: bool,
        key_size: u8,
    ) {
        let Some(link) = links.get_mut(&handle) else {
            st.events.push_back(HostEvent::Dropped(Dropped::UnknownHandle(handle)));
            return;
        };
        let sec = &mut link.security;
        if status == status::SUCCESS {
            sec.encrypted = enabled;
            sec.key_size = if enabled { key_size } else { 0 };
            if !enabled {
                sec.authenticated = false;
                sec.secure_connections = false;
            }
        }
        st.events.push_back(HostEvent::EncryptionChanged {
            handle,
            status,
            encrypted: sec.encrypted,
            key_size: sec.key_size,
        });
    }

    fn on_le_event(links: &mut BTreeMap<ConnHandle, Link>, st: &mut State<'_>, le: LeEvent<'_>) {
        match le {
            LeEvent::ConnectionComplete(c) => {
                if c.status != status::SUCCESS {
                    st.events.push_back(HostEvent::ConnectionFailed { status: c.status });
                    return;
                }
                let peer = Address {
                    addr: c.peer_address,
                    kind: AddressType::from_code(c.peer_address_type).unwrap_or(AddressType::Random),
                };
                let resolved = c.peer_address_type >= 2 && c.peer_rpa != BdAddr::default();
                let peer_on_air = if resolved { Address { addr: c.peer_rpa, kind: AddressType::Random } } else { peer };
                let info = ConnectionInfo {
                    handle: c.handle,
                    role: if c.role == ROLE_CENTRAL { Role::Central } else { Role::Peripheral },
                    peer,
                    peer_on_air,
                    interval: c.interval,
                    latency: c.latency,
                    supervision_timeout: c.supervision_timeout,
                };
                let stale = links.insert(
                    c.handle,
                    Link {
                        info,
                        rx: Reassembler::new(st.config.max_l2cap_payload),
                        tx: VecDeque::new(),
                        control_queued: 0,
                        in_flight: 0,
                        next_signal_id: 1,
                        security: LinkSecurity::default(),
                        key_request_pending: false,
                    },
                );
                // A stale link under a reused handle is replaced; its buffers come back.
                if let Some(old) = stale {
                    if old.in_flight == 0 {
                        *st.idle_links -= 1;
                    }
                    *st.acl_free = (*st.acl_free + old.in_flight).min(st.acl_total);
                }
                *st.idle_links += 1;
                st.events.push_back(HostEvent::Connected(info));
            }
            LeEvent::AdvertisingReport(reports) => {
                for r in reports.iter() {
                    st.events.push_back(HostEvent::Advertisement(AdvReport {
                        address: Address {
                            addr: r.address,
                            kind: AddressType::from_code(r.address_type).unwrap_or(AddressType::Random),
                        },
                        event_type: r.event_type,
                        rssi: r.rssi,
                        data: r.data.to_vec(),
                    }));
                }
            }
            LeEvent::ConnectionUpdateComplete { status, handle, interval, latency, supervision_timeout } => {
                if let Some(link) = links.get_mut(&handle) {
                    if status == status::SUCCESS {
                        link.info.interval = interval;
                        link.info.latency = latency;
                        link.info.supervision_timeout = supervision_timeout;
                    }
                }
                st.events.push_back(HostEvent::ConnectionUpdated {
                    handle,
                    status,
                    interval,
                    latency,
                    supervision_timeout,
                });
            }
            LeEvent::RemoteConnectionParameterRequest { handle, interval_min, interval_max, latency, timeout } => {
                let params = ConnParams { interval_min, interval_max, latency, timeout, min_ce_len: 0, max_ce_len: 0 };
                let cmd = if params.is_valid() {
                    Command::LeRemoteConnParamReqReply { handle, params }
                } else {
                    Command::LeRemoteConnParamReqNegReply { handle, reason: status::UNACCEPTABLE_CONNECTION_PARAMETERS }
                };
                st.internal_command(&cmd);
            }
            LeEvent::DataLengthChange { handle, max_tx_octets, max_rx_octets, .. } => {
                st.events.push_back(HostEvent::DataLengthChanged { handle, max_tx_octets, max_rx_octets })
            }
            LeEvent::PhyUpdateComplete { status, handle, tx_phy, rx_phy } => {
                st.events.push_back(HostEvent::PhyUpdated { handle, status, tx_phy, rx_phy })
            }
            LeEvent::LongTermKeyRequest { handle, rand, ediv } => match links.get_mut(&handle) {
                Some(link) => {
                    link.key_request_pending = true;
                    st.events.push_back(HostEvent::LongTermKeyRequest { handle, rand, ediv });
                }
                None => st.events.push_back(HostEvent::Dropped(Dropped::UnknownHandle(handle))),
            },
            LeEvent::Unknown { subevent, .. } => st.events.push_back(HostEvent::Dropped(Dropped::UnknownEvent {
                code: crate::hci::event::code::LE_META,
                subevent: Some(subevent),
            })),
        }
    }

    fn on_acl(
        links: &mut BTreeMap<ConnHandle, Link>,
        events: &mut VecDeque<HostEvent>,
        replies: &mut Replies,
        answer: &mut Vec<u8>,
        acl: AclPacket<'_>,
        smp: bool,
        on_att: &mut AttHandler<'_>,
    ) -> Option<ConnHandle> {
        let handle = acl.header.handle;
        let Some(link) = links.get_mut(&handle) else {
            events.push_back(HostEvent::Dropped(Dropped::UnknownHandle(handle)));
            return None;
        };
        let role = link.info.role;
        let frame = match link.rx.push(acl.header.boundary, acl.data) {
            Ok(Some(frame)) => frame,
            Ok(None) => return None,
            Err(error) => {
                events.push_back(HostEvent::Dropped(Dropped::Reassembly { handle, error }));
                return None;
            }
        };
        match frame.cid {
            cid::ATT => {
                answer.clear();
                if on_att(handle, frame.payload, answer) {
                    return Some(handle);
                }
            }
            cid::LE_SIGNALING => match Signal::decode(frame.payload) {
                Ok(sig) => on_signal(handle, role, sig, events, replies),
                Err(_) => {
                    // Malformed request: reject it by identifier if one can be read.
                    if let Some(&identifier) = frame.payload.get(1) {
                        replies.reject(handle, identifier, signaling::reject::NOT_UNDERSTOOD);
                    }
                }
            },
            cid::SMP if smp => events.push_back(HostEvent::Smp { handle, pdu: frame.payload.to_vec() }),
            cid::SMP => {
                if let Some(reply) = smp::reply_without_pairing(frame.payload) {
                    replies.l2cap.push((handle, cid::SMP, reply.to_vec()));
                    events.push_back(HostEvent::Dropped(Dropped::PairingRefused(handle)));
                }
            }
            other => events.push_back(HostEvent::Dropped(Dropped::UnknownChannel { handle, cid: other })),
        }
        None
    }

    fn apply(&mut self, replies: &mut Replies) {
        // An answer that asks for a command is not given while the host's own commands are
        // backed up (the controller is slow to take them and the peer keeps asking).
        let commands_full = !replies.commands.is_empty()
            && self.command_queue.iter().filter(|(id, ..)| *id == INTERNAL).count() >= usize::from(MAX_QUEUED_CONTROL);
        let mut flooded = false;
        for (handle, channel, payload) in replies.l2cap.drain(..) {
            if commands_full || self.links.get(&handle).is_some_and(|l| l.control_queued >= MAX_QUEUED_CONTROL) {
                self.events.push_back(HostEvent::Dropped(Dropped::Flooded { handle, cid: channel }));
                flooded = true;
                continue;
            }
            // The link exists (the request just arrived on it) unless buffers are unknown.
            let _ = self.send_l2cap(handle, channel, &payload);
        }
        if flooded || commands_full {
            // Nor is a command issued for a request left unanswered.
            replies.commands.clear();
            return;
        }
        for cmd in replies.commands.drain(..) {
            // Issued by the host itself (e.g. accepting a peer's parameter request): not reported.
            let mut bytes = Vec::new();
            cmd.encode_h4(&mut bytes);
            self.command_queue.push_back((INTERNAL, cmd.opcode(), bytes));
        }
    }

    fn pump_commands(&mut self) {
        while self.command_credits > 0 {
            let Some((id, opcode, bytes)) = self.command_queue.pop_front() else {
                break;
            };
            self.command_credits -= 1;
            self.commands_in_flight.push((id, opcode));
            self.outbox.push_back(bytes);
        }
    }

    /// Sends queued ACL fragments while buffers are free, one per ready connection in turn.
    ///
    /// Fairness: a link may not take the buffers kept in reserve for other links that have
    /// nothing in flight (at most half of all buffers), so a busy link cannot starve a link that
    /// becomes busy later, and a lone busy link still uses most of the controller.
    fn pump_acl(&mut self) {
        let mut blocked = 0;
        while self.acl_free > 0 && blocked < self.ready.len() {
            let Some(handle) = self.ready.pop_front() else {
                break;
            };
            let Some(link) = self.links.get_mut(&handle) else {
                continue;
            };
            let idle_others = self.idle_links - usize::from(link.in_flight == 0);
            let reserve = idle_others.min(self.acl_total as usize / 2);
            if (self.acl_free as usize) <= reserve {
                self.ready.push_back(handle);
                blocked += 1;
                continue;
            }
            let Some(pkt) = link.tx.pop_front() else {
                continue;
            };
            if link.tx.is_empty() {
                link.control_queued = 0;
            } else if starts_control_pdu(&pkt) {
                link.control_queued = link.control_queued.saturating_sub(1);
            }
            blocked = 0;
            if link.in_flight == 0 {
                self.idle_links -= 1;
            }
            link.in_flight += 1;
            self.acl_free -= 1;
            if !link.tx.is_empty() {
                self.ready.push_back(handle);
            }
            self.outbox.push_back(pkt);
        }
    }

    /// Number of ACL packets handed to the controller and not yet completed on `handle`.
    pub fn in_flight(&self, handle: ConnHandle) -> Option<u16> {
        self.links.get(&handle).map(|l| l.in_flight)
    }
}

fn next_id(link: &mut Link) -> u8 {
    let id = link.next_signal_id;
    // Identifier 0 is never used (Core Vol 3 Part A §4).
    link.next_signal_id = link.next_signal_id.checked_add(1).unwrap_or(1);
    id
}

/// Replies collected while a received PDU is still borrowed.
#[derive(Default, Debug)]
struct Replies {
    l2cap: Vec<(ConnHandle, u16, Vec<u8>)>,
    commands: Vec<Command>,
}

impl Replies {
    fn is_empty(&self) -> bool {
        self.l2cap.is_empty() && self.commands.is_empty()
    }

    fn reject(&mut self, handle: ConnHandle, identifier: u8, reason: u16) {
        let mut out = Vec::new();
        Signal::CommandReject { identifier, reason, data: &[] }.encode(&mut out);
        self.l2cap.push((handle, cid::LE_SIGNALING, out));
    }
}

fn on_signal(handle: ConnHandle, role: Role, sig: Signal<'_>, events: &mut VecDeque<HostEvent>, replies: &mut Replies) {
    let identifier = sig.identifier();
    match sig {
        Signal::ConnectionParameterUpdateReq { interval_min, interval_max, latency, timeout, .. } => {
            if role != Role::Central {
                // Only a central accepts this request (Core Vol 3 Part A §4.20).
                replies.reject(handle, identifier, signaling::reject::NOT_UNDERSTOOD);
                return;
            }
            let params = ConnParams { interval_min, interval_max, latency, timeout, min_ce_len: 0, max_ce_len: 0 };
            let ok = params.is_valid();
            let result = if ok { signaling::update_result::ACCEPTED } else { signaling::update_result::REJECTED };
            let mut out = Vec::new();
            Signal::ConnectionParameterUpdateRsp { identifier, result }.encode(&mut out);
            replies.l2cap.push((handle, cid::LE_SIGNALING, out));
            if ok {
                replies.commands.push(Command::LeConnectionUpdate { handle, params });
            }
        }
        Signal::ConnectionParameterUpdateRsp { result, .. } => {
            events.push_back(HostEvent::ConnectionParameterUpdateAnswered {
                handle,
                accepted: result == signaling::update_result::ACCEPTED,
            });
        }
        Signal::CommandReject { reason, .. } => {
            events.push_back(HostEvent::Dropped(Dropped::SignalingRejected { handle, reason }))
        }
        Signal::LeCreditBasedConnectionReq { .. } => {
            let mut out = Vec::new();
            Signal::LeCreditBasedConnectionRsp {
                identifier,
                dcid: 0,
                mtu: 0,
                mps: 0,
                initial_credits: 0,
                result: signaling::SPSM_NOT_SUPPORTED,
            }
            .encode(&mut out);
            replies.l2cap.push((handle, cid::LE_SIGNALING, out));
        }
        Signal::LeCreditBasedConnectionRsp { .. } => {}
        Signal::Other { code, .. } => {
            // Responses we never asked for are ignored; unknown requests are rejected.
            let is_response = matches!(code, 0x07 | 0x15 | 0x18 | 0x1A);
            if !is_response && identifier != 0 {
                replies.reject(handle, identifier, signaling::reject::NOT_UNDERSTOOD);
            }
        }
    }
}

/// The parts of [`Host`] an event handler may touch while `links` is borrowed separately.
struct State<'h> {
    config: &'h HostConfig,
    command_credits: &'h mut u8,
    commands_in_flight: &'h mut Vec<(CommandId, Opcode)>,
    acl_free: &'h mut u16,
    acl_total: u16,
    idle_links: &'h mut usize,
    events: &'h mut VecDeque<HostEvent>,
    command_queue: &'h mut VecDeque<(CommandId, Opcode, Vec<u8>)>,
}

/// Id of commands the host sends on its own behalf.
const INTERNAL: CommandId = CommandId(u64::MAX);

impl State<'_> {
    fn complete(&mut self, opcode: Opcode, status: u8, return_params: Vec<u8>) {
        match self.commands_in_flight.iter().position(|(_, op)| *op == opcode) {
            Some(i) => {
                let (id, _) = self.commands_in_flight.remove(i);
                if id != INTERNAL {
                    self.events.push_back(HostEvent::CommandDone { id, opcode, status, return_params });
                }
            }
            None => self.events.push_back(HostEvent::Dropped(Dropped::UnexpectedCompletion(opcode))),
        }
    }

    /// Queues a command the host issues on its own; its completion is not reported.
    fn internal_command(&mut self, cmd: &Command) {
        let mut bytes = Vec::new();
        cmd.encode_h4(&mut bytes);
        self.command_queue.push_back((INTERNAL, cmd.opcode(), bytes));
    }
}

#[cfg(test)]
mod tests;
