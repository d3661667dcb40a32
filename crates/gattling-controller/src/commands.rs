//! HCI command handling of the virtual controller (Core Vol 4 Part E §7): every command answers
//! with Command Complete or Command Status; unknown commands get status 0x01 and commands with
//! bad parameters 0x12.

use crate::radio::{
    ControllerId, Failed, Privacy, Radio, DEFAULT_EVENT_MASK, DEFAULT_LE_EVENT_MASK, DEFAULT_RPA_TIMEOUT,
    RESOLVING_LIST_SIZE,
};
use aes::cipher::{BlockEncrypt, KeyInit};
use alloc::vec::Vec;
use gattling_proto::codec::Reader;
use gattling_proto::hci::command::{Command, Opcode};
use gattling_proto::hci::event::{subevent, ConnectionComplete, Event, LeEvent};
use gattling_proto::hci::status;

/// (octet, bit) of every command this controller implements in the Supported_Commands
/// bit mask (Core Vol 4 Part E §6.27).
const SUPPORTED: &[(usize, u8)] = &[
    (0, 5),  // Disconnect
    (5, 6),  // Set Event Mask
    (5, 7),  // Reset
    (14, 3), // Read Local Version Information
    (14, 5), // Read Local Supported Features
    (14, 7), // Read Buffer Size
    (15, 1), // Read BD_ADDR
    (24, 5), // Read LE Host Support
    (24, 6), // Write LE Host Support
    (25, 0), // LE Set Event Mask
    (25, 1), // LE Read Buffer Size
    (25, 2), // LE Read Local Supported Features
    (25, 4), // LE Set Random Address
    (25, 5), // LE Set Advertising Parameters
    (15, 5), // Read RSSI
    (20, 4), // Read Encryption Key Size
    (25, 6), // LE Read Advertising Physical Channel Tx Power
    (25, 7), // LE Set Advertising Data
    (26, 0), // LE Set Scan Response Data
    (26, 1), // LE Set Advertising Enable
    (26, 2), // LE Set Scan Parameters
    (26, 3), // LE Set Scan Enable
    (26, 4), // LE Create Connection
    (26, 5), // LE Create Connection Cancel
    (26, 6), // LE Read Filter Accept List Size
    (26, 7), // LE Clear Filter Accept List
    (27, 0), // LE Add Device To Filter Accept List
    (27, 1), // LE Remove Device From Filter Accept List
    (27, 2), // LE Connection Update
    (27, 5), // LE Read Remote Features
    (27, 6), // LE Encrypt
    (27, 7), // LE Rand
    (28, 0), // LE Enable Encryption
    (28, 1), // LE Long Term Key Request Reply
    (28, 2), // LE Long Term Key Request Negative Reply
    (28, 3), // LE Read Supported States
    (33, 4), // LE Remote Connection Parameter Request Reply
    (33, 5), // LE Remote Connection Parameter Request Negative Reply
    (33, 6), // LE Set Data Length
    (33, 7), // LE Read Suggested Default Data Length
    (34, 0), // LE Write Suggested Default Data Length
    (34, 3), // LE Add Device To Resolving List
    (34, 4), // LE Remove Device From Resolving List
    (34, 5), // LE Clear Resolving List
    (34, 6), // LE Read Resolving List Size
    (35, 1), // LE Set Address Resolution Enable
    (35, 2), // LE Set Resolvable Private Address Timeout
    (35, 3), // LE Read Maximum Data Length
    (35, 4), // LE Read PHY
    (35, 5), // LE Set Default PHY
    (35, 6), // LE Set PHY
    (41, 5), // LE Read Buffer Size v2
];

/// LE features: Encryption, Connection Parameters Request, Data Packet Length Extension, 2M PHY
/// (Core Vol 6 Part B §4.6).
const LE_FEATURES: [u8; 8] = [0x23, 0x01, 0, 0, 0, 0, 0, 0];

/// The key size every encrypted link of this controller reports, in octets (Read Encryption Key
/// Size, Core Vol 4 Part E §7.5.7): the simulated link layer always uses the full 128-bit key.
const LINK_KEY_SIZE: u8 = 16;

/// The RSSI the simulated radio reports for every packet, in dBm.
pub(crate) const LINK_RSSI: i8 = -40;

fn supported_commands() -> [u8; 64] {
    let mut m = [0u8; 64];
    for &(octet, bit) in SUPPORTED {
        if let Some(b) = m.get_mut(octet) {
            *b |= 1 << bit;
        }
    }
    m
}

/// Disconnect reasons a host may give (Core Vol 4 Part E §7.1.6).
fn valid_disconnect_reason(r: u8) -> bool {
    matches!(r, 0x05 | 0x13 | 0x14 | 0x15 | 0x1A | 0x29 | 0x3B)
}

impl Radio {
    fn complete(&mut self, id: ControllerId, opcode: Opcode, ret: &[u8]) {
        self.emit(id, &Event::CommandComplete { num_packets: 1, opcode, return_params: ret });
    }

    fn status(&mut self, id: ControllerId, opcode: Opcode, st: u8) {
        self.emit(id, &Event::CommandStatus { status: st, num_packets: 1, opcode });
    }

    /// Answers a command that failed before it started: Command Status for commands that
    /// normally answer with it, Command Complete otherwise.
    fn fail(&mut self, id: ControllerId, opcode: Opcode, st: u8) {
        if opcode.completes_with_status() || opcode == Opcode::LE_READ_REMOTE_FEATURES {
            self.status(id, opcode, st)
        } else {
            self.complete(id, opcode, &[st])
        }
    }

    pub(crate) fn on_command(&mut self, id: ControllerId, body: &[u8]) {
        let opcode =
            Opcode(u16::from_le_bytes([body.first().copied().unwrap_or(0), body.get(1).copied().unwrap_or(0)]));
        let cmd = match Command::decode(body) {
            Ok(c) => c,
            Err(_) => {
                self.note(id, "malformed command parameters");
                return self.fail(id, opcode, status::INVALID_PARAMETERS);
            }
        };
        match cmd {
            Command::Reset => self.reset(id),
            Command::SetEventMask(m) => {
                self.with(id, |c| c.event_mask = m);
                self.complete(id, opcode, &[0]);
            }
            Command::LeSetEventMask(m) => {
                self.with(id, |c| c.le_event_mask = m);
                self.complete(id, opcode, &[0]);
            }
            Command::ReadLocalVersion => {
                self.complete(id, opcode, &[0, 0x0D, 0x01, 0x00, 0x0D, 0xFF, 0xFF, 0x01, 0x00])
            }
            Command::ReadLocalSupportedCommands => {
                let mut ret = Vec::with_capacity(65);
                ret.push(0);
                ret.extend_from_slice(&supported_commands());
                self.complete(id, opcode, &ret);
            }
            Command::ReadLocalSupportedFeatures => {
                // LE Supported (Controller), BR/EDR Not Supported (Core Vol 2 Part C §3.3).
                self.complete(id, opcode, &[0, 0, 0, 0, 0, 0x60, 0, 0, 0]);
            }
            Command::ReadBufferSize => {
                let (len, num) = self.acl_config(id);
                self.complete(id, opcode, &[0, len as u8, (len >> 8) as u8, 0, num, 0, 0, 0]);
            }
            Command::ReadBdAddr => {
                let a = self.ctrls.get(&id).map(|c| c.public).unwrap_or_default();
                let mut ret = [0u8; 7];
                ret[1..].copy_from_slice(&a.0);
                self.complete(id, opcode, &ret);
            }
            Command::LeReadBufferSize => {
                let (len, num) = self.acl_config(id);
                self.complete(id, opcode, &[0, len as u8, (len >> 8) as u8, num]);
            }
            Command::LeReadBufferSizeV2 => {
                let (len, num) = self.acl_config(id);
                self.complete(id, opcode, &[0, len as u8, (len >> 8) as u8, num, 0, 0, 0]);
            }
            Command::LeReadLocalSupportedFeatures => {
                let mut ret = [0u8; 9];
                ret[1..].copy_from_slice(&LE_FEATURES);
                self.complete(id, opcode, &ret);
            }
            Command::LeSetRandomAddress(a) => {
                let busy = self.ctrls.get(&id).is_some_and(|c| c.adv.enabled || c.scan.enabled);
                if busy {
                    return self.complete(id, opcode, &[status::COMMAND_DISALLOWED]);
                }
                self.with(id, |c| c.random = Some(a));
                self.complete(id, opcode, &[0]);
            }
            Command::LeSetAdvertisingParameters(p) => {
                if self.ctrls.get(&id).is_some_and(|c| c.adv.enabled) {
                    return self.complete(id, opcode, &[status::COMMAND_DISALLOWED]);
                }
                let undirected = p.adv_type != 0x01;
                let ok = p.adv_type <= 4
                    && p.own_address_type <= 3
                    && (1..=7).contains(&p.channel_map)
                    && p.filter_policy <= 3
                    && (!undirected
                        || ((0x20..=0x4000).contains(&p.interval_min)
                            && (0x20..=0x4000).contains(&p.interval_max)
                            && p.interval_min <= p.interval_max));
                if !ok {
                    return self.complete(id, opcode, &[status::INVALID_PARAMETERS]);
                }
                self.with(id, |c| c.adv.params = p);
                self.complete(id, opcode, &[0]);
            }
            Command::LeSetAdvertisingData(d) => {
                self.with(id, |c| c.adv.data = d);
                self.complete(id, opcode, &[0]);
            }
            Command::LeSetScanResponseData(d) => {
                self.with(id, |c| c.adv.scan_response = d);
                self.complete(id, opcode, &[0]);
            }
            Command::LeSetAdvertisingEnable(enable) => self.set_advertising(id, opcode, enable),
            Command::LeSetScanParameters { scan_type, interval, window, own_address_type, filter_policy } => {
                if self.ctrls.get(&id).is_some_and(|c| c.scan.enabled) {
                    return self.complete(id, opcode, &[status::COMMAND_DISALLOWED]);
                }
                let ok = scan_type <= 1
                    && (4..=0x4000).contains(&interval)
                    && (4..=0x4000).contains(&window)
                    && window <= interval
                    && own_address_type <= 3
                    && filter_policy <= 3;
                if !ok {
                    return self.complete(id, opcode, &[status::INVALID_PARAMETERS]);
                }
                self.with(id, |c| {
                    c.scan.active = scan_type == 1;
                    c.scan.own_address_type = own_address_type;
                });
                self.complete(id, opcode, &[0]);
            }
            Command::LeSetScanEnable { enable, filter_duplicates } => {
                let was = self.ctrls.get(&id).is_some_and(|c| c.scan.enabled);
                let own = self.ctrls.get(&id).map(|c| c.scan.own_address_type).unwrap_or(0);
                if enable && self.own_address(id, own).is_none() {
                    return self.complete(id, opcode, &[status::INVALID_PARAMETERS]);
                }
                self.with(id, |c| {
                    c.scan.enabled = enable;
                    c.scan.filter_duplicates = filter_duplicates;
                    if enable && !was {
                        c.scan.seen.clear();
                    }
                });
                self.complete(id, opcode, &[0]);
                if enable && !was {
                    self.start_scanning(id);
                }
            }
            Command::LeCreateConnection(cc) => {
                if self.ctrls.get(&id).is_some_and(|c| c.initiating.is_some()) {
                    return self.status(id, opcode, status::COMMAND_DISALLOWED);
                }
                let scan_ok = (4..=0x4000).contains(&cc.scan_interval)
                    && (4..=0x4000).contains(&cc.scan_window)
                    && cc.scan_window <= cc.scan_interval;
                if !scan_ok
                    || !cc.params.is_valid()
                    || cc.filter_policy > 1
                    || cc.peer_address_type > 3
                    || cc.own_address_type > 3
                {
                    return self.status(id, opcode, status::INVALID_PARAMETERS);
                }
                if cc.filter_policy == 1 {
                    // The filter accept list is always empty here.
                    return self.status(id, opcode, status::UNSUPPORTED_FEATURE);
                }
                if self.own_address(id, cc.own_address_type).is_none() {
                    return self.status(id, opcode, status::INVALID_PARAMETERS);
                }
                self.with(id, |c| c.initiating = Some(cc));
                self.status(id, opcode, 0);
                self.try_connect();
            }
            Command::LeCreateConnectionCancel => {
                if self.ctrls.get(&id).is_none_or(|c| c.initiating.is_none()) {
                    return self.complete(id, opcode, &[status::COMMAND_DISALLOWED]);
                }
                self.with(id, |c| c.initiating = None);
                self.complete(id, opcode, &[0]);
                self.emit_connection_complete(id, ConnectionComplete::failed(subevent::CONNECTION_COMPLETE));
            }
            Command::Disconnect { handle, reason } => {
                let Some((link, _, central)) = self.peer_of(id, handle) else {
                    return self.status(id, opcode, status::UNKNOWN_CONNECTION_ID);
                };
                if !valid_disconnect_reason(reason) {
                    return self.status(id, opcode, status::INVALID_PARAMETERS);
                }
                self.status(id, opcode, 0);
                let (c, p) = if central {
                    (status::LOCAL_HOST_TERMINATED, reason)
                } else {
                    (reason, status::LOCAL_HOST_TERMINATED)
                };
                self.end_link(link, c, p);
            }
            Command::LeConnectionUpdate { handle, params } => {
                let Some((link, (peer, peer_handle), central)) = self.peer_of(id, handle) else {
                    return self.status(id, opcode, status::UNKNOWN_CONNECTION_ID);
                };
                if !params.is_valid() {
                    return self.status(id, opcode, status::INVALID_PARAMETERS);
                }
                self.status(id, opcode, 0);
                let central_asks = self.ctrls.get(&peer).is_some_and(|c| c.le_event_mask & (1 << 5) != 0);
                if central || !central_asks {
                    self.schedule_update(link, params);
                } else {
                    // Connection Parameters Request procedure: the central's host decides (§7.7.65.6).
                    if let Some(l) = self.links.get_mut(&link) {
                        l.pending_update = Some(params);
                    }
                    self.emit(
                        peer,
                        &Event::Le(LeEvent::RemoteConnectionParameterRequest {
                            handle: peer_handle,
                            interval_min: params.interval_min,
                            interval_max: params.interval_max,
                            latency: params.latency,
                            timeout: params.timeout,
                        }),
                    );
                }
            }
            Command::LeRemoteConnParamReqReply { handle, params } => {
                let h = handle.to_le_bytes();
                let Some((link, _, _)) = self.peer_of(id, handle) else {
                    return self.complete(id, opcode, &[status::UNKNOWN_CONNECTION_ID, h[0], h[1]]);
                };
                if !params.is_valid() {
                    return self.complete(id, opcode, &[status::INVALID_PARAMETERS, h[0], h[1]]);
                }
                self.complete(id, opcode, &[0, h[0], h[1]]);
                self.schedule_update(link, params);
            }
            Command::LeRemoteConnParamReqNegReply { handle, reason } => {
                let h = handle.to_le_bytes();
                let Some((link, (peer, peer_handle), _)) = self.peer_of(id, handle) else {
                    return self.complete(id, opcode, &[status::UNKNOWN_CONNECTION_ID, h[0], h[1]]);
                };
                self.complete(id, opcode, &[0, h[0], h[1]]);
                let params = self.links.get_mut(&link).and_then(|l| l.pending_update.take()).unwrap_or_default();
                self.emit(
                    peer,
                    &Event::Le(LeEvent::ConnectionUpdateComplete {
                        status: reason,
                        handle: peer_handle,
                        interval: params.interval_max,
                        latency: params.latency,
                        supervision_timeout: params.timeout,
                    }),
                );
            }
            Command::LeEncrypt { key, plaintext } => {
                let mut ret = [0u8; 17];
                ret[1..].copy_from_slice(&aes128_hci(key, plaintext));
                self.complete(id, opcode, &ret);
            }
            Command::ReadRssi { handle } => {
                // Every link of the simulated radio is heard as strongly as an advertiser.
                let (st, rssi) = match self.peer_of(id, handle) {
                    Some(_) => (0, LINK_RSSI),
                    None => (status::UNKNOWN_CONNECTION_ID, 0),
                };
                let h = handle.to_le_bytes();
                self.complete(id, opcode, &[st, h[0], h[1], rssi as u8]);
            }
            Command::LeRand => {
                let r = self.random_u64().to_le_bytes();
                let mut ret = [0u8; 9];
                ret[1..].copy_from_slice(&r);
                self.complete(id, opcode, &ret);
            }
            Command::LeSetDataLength { handle, tx_octets, tx_time } => {
                let h = handle.to_le_bytes();
                let Some((_, (peer, peer_handle), _)) = self.peer_of(id, handle) else {
                    return self.complete(id, opcode, &[status::UNKNOWN_CONNECTION_ID, h[0], h[1]]);
                };
                if !(27..=251).contains(&tx_octets) || !(328..=17040).contains(&tx_time) {
                    return self.complete(id, opcode, &[status::INVALID_PARAMETERS, h[0], h[1]]);
                }
                self.complete(id, opcode, &[0, h[0], h[1]]);
                let Some((link, _, central)) = self.peer_of(id, handle) else { return };
                let Some(l) = self.links.get_mut(&link) else { return };
                let (me, other) = if central { (0, 1) } else { (1, 0) };
                if l.tx_octets[me] == tx_octets {
                    return;
                }
                l.tx_octets[me] = tx_octets;
                let (my_tx, peer_tx) = (tx_octets, l.tx_octets[other]);
                // Each side's effective limits: its own TX, the peer's TX as its RX (Vol 6 Part B §4.5.10).
                let time = |o: u16| (o + 14) * 8;
                for (who, hh, tx, rx) in [(id, handle, my_tx, peer_tx), (peer, peer_handle, peer_tx, my_tx)] {
                    self.emit(
                        who,
                        &Event::Le(LeEvent::DataLengthChange {
                            handle: hh,
                            max_tx_octets: tx,
                            max_tx_time: time(tx),
                            max_rx_octets: rx,
                            max_rx_time: time(rx),
                        }),
                    );
                }
            }
            Command::LeSetPhy { handle, all_phys, tx_phys, rx_phys, .. } => {
                let Some((link, _, _)) = self.peer_of(id, handle) else {
                    return self.status(id, opcode, status::UNKNOWN_CONNECTION_ID);
                };
                // Only 1M and 2M exist here: a direction that allows neither is unsupported (§7.8.49).
                let tx_none = all_phys & 0b01 == 0 && tx_phys & 0b011 == 0;
                let rx_none = all_phys & 0b10 == 0 && rx_phys & 0b011 == 0;
                if tx_none || rx_none {
                    return self.status(id, opcode, status::UNSUPPORTED_FEATURE);
                }
                self.status(id, opcode, 0);
                let both = |bit: u8| all_phys == 0 && tx_phys & bit != 0 && rx_phys & bit != 0;
                let phy = if both(0b010) { 2 } else { 1 };
                self.schedule_phy(link, phy);
            }
            Command::LeEnableEncryption { handle, rand, ediv, ltk } => {
                self.enable_encryption(id, opcode, handle, rand, ediv, ltk)
            }
            Command::LeLongTermKeyRequestReply { handle, ltk } => self.ltk_reply(id, opcode, handle, Some(ltk)),
            Command::LeLongTermKeyRequestNegativeReply { handle } => self.ltk_reply(id, opcode, handle, None),
            Command::ReadEncryptionKeySize { handle } => {
                let h = handle.to_le_bytes();
                match self.peer_of(id, handle).and_then(|(link, _, _)| self.links.get(&link)) {
                    Some(l) if l.encrypted => self.complete(id, opcode, &[0, h[0], h[1], LINK_KEY_SIZE]),
                    // Not encrypted: there is no key whose size could be read.
                    Some(_) => self.complete(id, opcode, &[status::COMMAND_DISALLOWED, h[0], h[1], 0]),
                    None => self.complete(id, opcode, &[status::UNKNOWN_CONNECTION_ID, h[0], h[1], 0]),
                }
            }
            Command::LeAddDeviceToResolvingList {
                peer_identity_address_type,
                peer_identity_address,
                peer_irk,
                local_irk,
            } => {
                let st = self.privacy_change_allowed(id).and_then(|p| {
                    let key = (peer_identity_address_type, peer_identity_address);
                    if peer_identity_address_type > 1 || p.resolving_list.iter().any(|e| (e.0, e.1) == key) {
                        Err(status::INVALID_PARAMETERS)
                    } else if p.resolving_list.len() >= RESOLVING_LIST_SIZE {
                        Err(status::MEMORY_CAPACITY_EXCEEDED)
                    } else {
                        Ok(())
                    }
                });
                if st.is_ok() {
                    let entry = (peer_identity_address_type, peer_identity_address, peer_irk, local_irk);
                    self.with(id, |c| c.privacy.resolving_list.push(entry));
                }
                self.complete(id, opcode, &[st.err().unwrap_or(0)]);
            }
            Command::LeRemoveDeviceFromResolvingList { peer_identity_address_type, peer_identity_address } => {
                let key = (peer_identity_address_type, peer_identity_address);
                let st = self.privacy_change_allowed(id).and_then(|p| {
                    p.resolving_list.iter().position(|e| (e.0, e.1) == key).ok_or(status::UNKNOWN_CONNECTION_ID)
                });
                if let Ok(i) = st {
                    self.with(id, |c| {
                        c.privacy.resolving_list.remove(i);
                    });
                }
                self.complete(id, opcode, &[st.err().unwrap_or(0)]);
            }
            Command::LeClearResolvingList => {
                let st = self.privacy_change_allowed(id).map(|_| ());
                if st.is_ok() {
                    self.with(id, |c| c.privacy.resolving_list.clear());
                }
                self.complete(id, opcode, &[st.err().unwrap_or(0)]);
            }
            Command::LeSetAddressResolutionEnable(enable) => {
                let st = self.privacy_change_allowed(id).map(|_| ());
                if st.is_ok() {
                    self.with(id, |c| c.privacy.address_resolution = enable);
                }
                self.complete(id, opcode, &[st.err().unwrap_or(0)]);
            }
            Command::LeSetResolvablePrivateAddressTimeout(t) => {
                if !(1..=0xA1B8).contains(&t) {
                    return self.complete(id, opcode, &[status::INVALID_PARAMETERS]);
                }
                self.with(id, |c| c.privacy.rpa_timeout = t);
                self.complete(id, opcode, &[0]);
            }
            Command::Other { opcode, params } => self.other_command(id, opcode, &params),
        }
    }

    /// The resolving list and address resolution may not change while address resolution is
    /// enabled and advertising, scanning or initiating is on (Core Vol 4 Part E §7.8.38-§7.8.40,
    /// §7.8.44).
    fn privacy_change_allowed(&self, id: ControllerId) -> Result<&Privacy, u8> {
        let c = self.ctrls.get(&id).ok_or(status::COMMAND_DISALLOWED)?;
        let busy = c.adv.enabled || c.scan.enabled || c.initiating.is_some();
        if c.privacy.address_resolution && busy {
            return Err(status::COMMAND_DISALLOWED);
        }
        Ok(&c.privacy)
    }

    /// LE Enable Encryption (Core Vol 4 Part E §7.8.24): only the central may start it; the
    /// peripheral's host is asked for the key (LE Long Term Key Request, §7.7.65.5). On an
    /// encrypted link this is the encryption pause and restart that refreshes the key
    /// (Core Vol 6 Part B §5.1.3.2). Rootcanal 1.10 accepts it from either role; the spec
    /// reserves it to the central, so a peripheral gets Command Disallowed here.
    fn enable_encryption(
        &mut self,
        id: ControllerId,
        opcode: Opcode,
        handle: u16,
        rand: u64,
        ediv: u16,
        ltk: [u8; 16],
    ) {
        let Some((link, (peer, peer_handle), central)) = self.peer_of(id, handle) else {
            return self.status(id, opcode, status::UNKNOWN_CONNECTION_ID);
        };
        if !central {
            return self.status(id, opcode, status::COMMAND_DISALLOWED);
        }
        if self.links.get(&link).is_some_and(|l| l.pending_ltk.is_some()) {
            // One encryption procedure at a time (Core Vol 6 Part B §5.1.3).
            return self.status(id, opcode, status::COMMAND_DISALLOWED);
        }
        self.status(id, opcode, 0);
        if let Some(l) = self.links.get_mut(&link) {
            l.pending_ltk = Some(ltk);
        }
        self.emit(peer, &Event::Le(LeEvent::LongTermKeyRequest { handle: peer_handle, rand, ediv }));
    }

    /// LE Long Term Key Request Reply (`Some(key)`) or Negative Reply (`None`) (Core Vol 4 Part E
    /// §7.8.25, §7.8.26).
    ///
    /// - Same key as the central's: both hosts get Encryption Change (on), or Encryption Key
    ///   Refresh Complete when the link was already encrypted (§7.7.39).
    /// - Different key: the first encrypted packet fails its MIC check and both sides disconnect
    ///   with 0x3D (Core Vol 6 Part B §5.1.3.1), as real controllers do. Rootcanal 1.10 does not
    ///   compare the keys and reports success.
    /// - Negative reply: the peripheral's link layer rejects with PIN or Key Missing, the central's
    ///   host gets Encryption Change with status 0x06 and the link stays up, unencrypted
    ///   (Core Vol 6 Part B §5.1.3.1). On an encrypted link (a refresh), encryption was paused, so
    ///   the link is left unencrypted too.
    fn ltk_reply(&mut self, id: ControllerId, opcode: Opcode, handle: u16, ltk: Option<[u8; 16]>) {
        let h = handle.to_le_bytes();
        let Some((link, (peer, peer_handle), _)) = self.peer_of(id, handle) else {
            return self.complete(id, opcode, &[status::UNKNOWN_CONNECTION_ID, h[0], h[1]]);
        };
        let Some(expected) = self.links.get_mut(&link).and_then(|l| l.pending_ltk.take()) else {
            // No LTK request is outstanding on this link (§7.8.25).
            return self.complete(id, opcode, &[status::COMMAND_DISALLOWED, h[0], h[1]]);
        };
        self.complete(id, opcode, &[0, h[0], h[1]]);
        let Some(ltk) = ltk else {
            if let Some(l) = self.links.get_mut(&link) {
                l.encrypted = false;
            }
            let ev = Event::EncryptionChange { status: status::PIN_OR_KEY_MISSING, handle: peer_handle, enabled: 0 };
            return self.emit(peer, &ev);
        };
        if expected != ltk {
            // Different keys: the link fails its first MIC check (Core Vol 6 Part B §5.1.3.1).
            return self.end_link(link, status::MIC_FAILURE, status::MIC_FAILURE);
        }
        let refresh = self.links.get_mut(&link).is_some_and(|l| core::mem::replace(&mut l.encrypted, true));
        // The central's host hears first: its link layer gets the peripheral's LL_START_ENC_RSP
        // before the peripheral gets the central's (Core Vol 6 Part B §5.1.3.1).
        for (who, hh) in [(peer, peer_handle), (id, handle)] {
            if refresh {
                self.emit(who, &Event::EncryptionKeyRefreshComplete { status: 0, handle: hh });
            } else {
                self.emit(who, &Event::EncryptionChange { status: 0, handle: hh, enabled: 1 });
            }
        }
    }

    fn other_command(&mut self, id: ControllerId, opcode: Opcode, params: &[u8]) {
        let mut r = Reader::new(params, "HCI command parameters");
        match opcode {
            Opcode::WRITE_LE_HOST_SUPPORT
            | Opcode::LE_CLEAR_FAL
            | Opcode::LE_ADD_FAL
            | Opcode::LE_REMOVE_FAL
            | Opcode::LE_WRITE_SUGGESTED_DATA_LENGTH
            | Opcode::LE_SET_DEFAULT_PHY => self.complete(id, opcode, &[0]),
            Opcode::READ_LE_HOST_SUPPORT => self.complete(id, opcode, &[0, 1, 0]),
            Opcode::LE_READ_ADV_TX_POWER => self.complete(id, opcode, &[0, 0]),
            Opcode::LE_READ_FAL_SIZE => self.complete(id, opcode, &[0, 8]),
            Opcode::LE_READ_RESOLVING_LIST_SIZE => self.complete(id, opcode, &[0, RESOLVING_LIST_SIZE as u8]),
            Opcode::LE_READ_SUPPORTED_STATES => self.complete(id, opcode, &[0, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0, 0, 0]),
            Opcode::LE_READ_SUGGESTED_DATA_LENGTH => self.complete(id, opcode, &[0, 27, 0, 0x48, 0x01]),
            Opcode::LE_READ_MAX_DATA_LENGTH => self.complete(id, opcode, &[0, 251, 0, 0x90, 0x42, 251, 0, 0x90, 0x42]),
            Opcode::LE_READ_PHY => {
                let Ok(handle) = r.u16() else { return self.complete(id, opcode, &[status::INVALID_PARAMETERS]) };
                let h = handle.to_le_bytes();
                match self.peer_of(id, handle).and_then(|(link, _, _)| self.links.get(&link)) {
                    Some(l) => {
                        let phy = l.phy;
                        self.complete(id, opcode, &[0, h[0], h[1], phy, phy])
                    }
                    None => self.complete(id, opcode, &[status::UNKNOWN_CONNECTION_ID, h[0], h[1], 0, 0]),
                }
            }
            Opcode::LE_READ_REMOTE_FEATURES => {
                let Ok(handle) = r.u16() else { return self.status(id, opcode, status::INVALID_PARAMETERS) };
                if self.peer_of(id, handle).is_none() {
                    return self.status(id, opcode, status::UNKNOWN_CONNECTION_ID);
                }
                self.status(id, opcode, 0);
                let mut p = Vec::with_capacity(11);
                p.push(0);
                p.extend_from_slice(&handle.to_le_bytes());
                p.extend_from_slice(&LE_FEATURES);
                self.emit(id, &Event::Le(LeEvent::Unknown { subevent: 0x04, params: &p }));
            }
            _ => {
                self.note(id, "unknown command");
                self.complete(id, opcode, &[status::UNKNOWN_COMMAND]);
            }
        }
    }

    fn with(&mut self, id: ControllerId, f: impl FnOnce(&mut crate::radio::Ctrl)) {
        if let Some(c) = self.ctrls.get_mut(&id) {
            f(c)
        }
    }

    fn acl_config(&self, id: ControllerId) -> (u16, u8) {
        self.ctrls.get(&id).map(|c| (c.config.acl_len, c.config.acl_num)).unwrap_or((27, 1))
    }

    fn reset(&mut self, id: ControllerId) {
        // Links end: the peer sees the link time out (Core Vol 4 Part E §7.3.2).
        let links: Vec<u32> =
            self.ctrls.get(&id).map(|c| c.handles.values().map(|e| e.link).collect()).unwrap_or_default();
        for link in links {
            self.end_link_quietly_for(id, link);
        }
        self.with(id, |c| {
            c.event_mask = DEFAULT_EVENT_MASK;
            c.le_event_mask = DEFAULT_LE_EVENT_MASK;
            c.random = None;
            let defaults = crate::radio::Ctrl::new(c.config, c.public);
            c.adv = defaults.adv;
            c.scan = defaults.scan;
            c.initiating = None;
            c.acl_used = 0;
            c.completed.clear();
            c.privacy = Privacy { rpa_timeout: DEFAULT_RPA_TIMEOUT, ..Privacy::default() };
        });
        self.complete(id, Opcode::RESET, &[0]);
    }

    fn end_link_quietly_for(&mut self, id: ControllerId, link: u32) {
        let Some(l) = self.links.remove(&link) else { return };
        for (ctrl, handle) in [l.central, l.peripheral] {
            if let Some(c) = self.ctrls.get_mut(&ctrl) {
                c.handles.remove(&handle);
            }
            if ctrl != id {
                self.emit(
                    ctrl,
                    &Event::DisconnectionComplete { status: 0, handle, reason: status::CONNECTION_TIMEOUT },
                );
            }
        }
    }

    fn set_advertising(&mut self, id: ControllerId, opcode: Opcode, enable: bool) {
        let Some(c) = self.ctrls.get(&id) else { return };
        let params = c.adv.params;
        if enable && self.own_address(id, params.own_address_type).is_none() {
            // Random own address type without a random address set (Core Vol 4 Part E §7.8.9).
            return self.complete(id, opcode, &[status::INVALID_PARAMETERS]);
        }
        let was = c.adv.enabled;
        self.with(id, |c| c.adv.enabled = enable);
        self.complete(id, opcode, &[0]);
        if enable && !was {
            if params.adv_type == 0x01 {
                self.schedule_directed_timeout(id);
            }
            self.try_connect();
        }
    }
}

/// AES-128 with key and data in HCI order (least significant octet first), as LE Encrypt
/// defines it (Core Vol 4 Part E §7.8.22).
pub(crate) fn aes128_hci(key: [u8; 16], plaintext: [u8; 16]) -> [u8; 16] {
    let mut k = key;
    k.reverse();
    let mut block = plaintext;
    block.reverse();
    let cipher = aes::Aes128::new(&k.into());
    let mut b = block.into();
    cipher.encrypt_block(&mut b);
    let mut out: [u8; 16] = b.into();
    out.reverse();
    out
}
