//! HCI commands a host needs, encoded for the controller and decoded back (Core Vol 4 Part E §7).

use crate::codec::{DecodeError, Reader, Writer};
use crate::gap::BdAddr;
use alloc::vec::Vec;

/// A command opcode: OGF (6 bits) << 10 | OCF (10 bits) (Core Vol 4 Part E §5.4.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Opcode(pub u16);

impl Opcode {
    /// Builds an opcode from its group and command fields.
    pub const fn new(ogf: u16, ocf: u16) -> Self {
        Opcode(ogf << 10 | ocf)
    }
    /// The "no operation" opcode used by controllers to grant command credits (0x0000).
    pub const NOP: Opcode = Opcode(0);
    /// Disconnect (§7.1.6).
    pub const DISCONNECT: Opcode = Opcode::new(0x01, 0x0006);
    /// Set Event Mask (§7.3.1).
    pub const SET_EVENT_MASK: Opcode = Opcode::new(0x03, 0x0001);
    /// Reset (§7.3.2).
    pub const RESET: Opcode = Opcode::new(0x03, 0x0003);
    /// Read Local Version Information (§7.4.1).
    pub const READ_LOCAL_VERSION: Opcode = Opcode::new(0x04, 0x0001);
    /// Read Local Supported Commands (§7.4.2).
    pub const READ_LOCAL_SUPPORTED_COMMANDS: Opcode = Opcode::new(0x04, 0x0002);
    /// Read Local Supported Features (§7.4.3).
    pub const READ_LOCAL_SUPPORTED_FEATURES: Opcode = Opcode::new(0x04, 0x0003);
    /// Read Buffer Size (§7.4.5).
    pub const READ_BUFFER_SIZE: Opcode = Opcode::new(0x04, 0x0005);
    /// Read BD_ADDR (§7.4.6).
    pub const READ_BD_ADDR: Opcode = Opcode::new(0x04, 0x0009);
    /// LE Set Event Mask (§7.8.1).
    pub const LE_SET_EVENT_MASK: Opcode = Opcode::new(0x08, 0x0001);
    /// LE Read Buffer Size (v1) (§7.8.2).
    pub const LE_READ_BUFFER_SIZE: Opcode = Opcode::new(0x08, 0x0002);
    /// LE Read Local Supported Features (§7.8.3).
    pub const LE_READ_LOCAL_SUPPORTED_FEATURES: Opcode = Opcode::new(0x08, 0x0003);
    /// LE Set Random Address (§7.8.4).
    pub const LE_SET_RANDOM_ADDRESS: Opcode = Opcode::new(0x08, 0x0005);
    /// LE Set Advertising Parameters (§7.8.5).
    pub const LE_SET_ADVERTISING_PARAMETERS: Opcode = Opcode::new(0x08, 0x0006);
    /// LE Set Advertising Data (§7.8.7).
    pub const LE_SET_ADVERTISING_DATA: Opcode = Opcode::new(0x08, 0x0008);
    /// LE Set Scan Response Data (§7.8.8).
    pub const LE_SET_SCAN_RESPONSE_DATA: Opcode = Opcode::new(0x08, 0x0009);
    /// LE Set Advertising Enable (§7.8.9).
    pub const LE_SET_ADVERTISING_ENABLE: Opcode = Opcode::new(0x08, 0x000A);
    /// LE Set Scan Parameters (§7.8.10).
    pub const LE_SET_SCAN_PARAMETERS: Opcode = Opcode::new(0x08, 0x000B);
    /// LE Set Scan Enable (§7.8.11).
    pub const LE_SET_SCAN_ENABLE: Opcode = Opcode::new(0x08, 0x000C);
    /// LE Create Connection (§7.8.12).
    pub const LE_CREATE_CONNECTION: Opcode = Opcode::new(0x08, 0x000D);
    /// LE Create Connection Cancel (§7.8.13).
    pub const LE_CREATE_CONNECTION_CANCEL: Opcode = Opcode::new(0x08, 0x000E);
    /// LE Connection Update (§7.8.18).
    pub const LE_CONNECTION_UPDATE: Opcode = Opcode::new(0x08, 0x0013);
    /// LE Encrypt (§7.8.22).
    pub const LE_ENCRYPT: Opcode = Opcode::new(0x08, 0x0017);
    /// LE Rand (§7.8.23).
    pub const LE_RAND: Opcode = Opcode::new(0x08, 0x0018);
    /// Read RSSI (Core Vol 4 Part E §7.5.4).
    pub const READ_RSSI: Opcode = Opcode::new(0x05, 0x0005);
    /// Read Encryption Key Size (Core Vol 4 Part E §7.5.7).
    pub const READ_ENCRYPTION_KEY_SIZE: Opcode = Opcode::new(0x05, 0x0008);
    /// LE Remote Connection Parameter Request Reply (§7.8.31).
    pub const LE_REMOTE_CONN_PARAM_REQ_REPLY: Opcode = Opcode::new(0x08, 0x0020);
    /// LE Remote Connection Parameter Request Negative Reply (§7.8.32).
    pub const LE_REMOTE_CONN_PARAM_REQ_NEG_REPLY: Opcode = Opcode::new(0x08, 0x0021);
    /// LE Set Data Length (§7.8.33).
    pub const LE_SET_DATA_LENGTH: Opcode = Opcode::new(0x08, 0x0022);
    /// LE Set PHY (§7.8.49).
    pub const LE_SET_PHY: Opcode = Opcode::new(0x08, 0x0032);
    /// LE Read Buffer Size (v2) (§7.8.2).
    pub const LE_READ_BUFFER_SIZE_V2: Opcode = Opcode::new(0x08, 0x0060);

    /// Read LE Host Support (§7.3.78).
    pub const READ_LE_HOST_SUPPORT: Opcode = Opcode::new(0x03, 0x006C);
    /// Write LE Host Support (§7.3.79).
    pub const WRITE_LE_HOST_SUPPORT: Opcode = Opcode::new(0x03, 0x006D);
    /// LE Read Advertising Physical Channel Tx Power (§7.8.6).
    pub const LE_READ_ADV_TX_POWER: Opcode = Opcode::new(0x08, 0x0007);
    /// LE Read Filter Accept List Size (§7.8.14).
    pub const LE_READ_FAL_SIZE: Opcode = Opcode::new(0x08, 0x000F);
    /// LE Clear Filter Accept List (§7.8.15).
    pub const LE_CLEAR_FAL: Opcode = Opcode::new(0x08, 0x0010);
    /// LE Add Device To Filter Accept List (§7.8.16).
    pub const LE_ADD_FAL: Opcode = Opcode::new(0x08, 0x0011);
    /// LE Remove Device From Filter Accept List (§7.8.17).
    pub const LE_REMOVE_FAL: Opcode = Opcode::new(0x08, 0x0012);
    /// LE Read Remote Features (§7.8.21).
    pub const LE_READ_REMOTE_FEATURES: Opcode = Opcode::new(0x08, 0x0016);
    /// LE Enable Encryption (§7.8.24).
    pub const LE_ENABLE_ENCRYPTION: Opcode = Opcode::new(0x08, 0x0019);
    /// LE Long Term Key Request Reply (§7.8.25).
    pub const LE_LTK_REPLY: Opcode = Opcode::new(0x08, 0x001A);
    /// LE Long Term Key Request Negative Reply (§7.8.26).
    pub const LE_LTK_NEG_REPLY: Opcode = Opcode::new(0x08, 0x001B);
    /// LE Read Supported States (§7.8.27).
    pub const LE_READ_SUPPORTED_STATES: Opcode = Opcode::new(0x08, 0x001C);
    /// LE Read Suggested Default Data Length (§7.8.34).
    pub const LE_READ_SUGGESTED_DATA_LENGTH: Opcode = Opcode::new(0x08, 0x0023);
    /// LE Write Suggested Default Data Length (§7.8.35).
    pub const LE_WRITE_SUGGESTED_DATA_LENGTH: Opcode = Opcode::new(0x08, 0x0024);
    /// LE Read Maximum Data Length (§7.8.46).
    pub const LE_READ_MAX_DATA_LENGTH: Opcode = Opcode::new(0x08, 0x002F);
    /// LE Add Device To Resolving List (§7.8.38).
    pub const LE_ADD_DEVICE_TO_RESOLVING_LIST: Opcode = Opcode::new(0x08, 0x0027);
    /// LE Remove Device From Resolving List (§7.8.39).
    pub const LE_REMOVE_DEVICE_FROM_RESOLVING_LIST: Opcode = Opcode::new(0x08, 0x0028);
    /// LE Clear Resolving List (§7.8.40).
    pub const LE_CLEAR_RESOLVING_LIST: Opcode = Opcode::new(0x08, 0x0029);
    /// LE Read Resolving List Size (§7.8.41).
    pub const LE_READ_RESOLVING_LIST_SIZE: Opcode = Opcode::new(0x08, 0x002A);
    /// LE Set Address Resolution Enable (§7.8.44).
    pub const LE_SET_ADDRESS_RESOLUTION_ENABLE: Opcode = Opcode::new(0x08, 0x002D);
    /// LE Set Resolvable Private Address Timeout (§7.8.45).
    pub const LE_SET_RPA_TIMEOUT: Opcode = Opcode::new(0x08, 0x002E);
    /// LE Read PHY (§7.8.47).
    pub const LE_READ_PHY: Opcode = Opcode::new(0x08, 0x0030);
    /// LE Set Default PHY (§7.8.48).
    pub const LE_SET_DEFAULT_PHY: Opcode = Opcode::new(0x08, 0x0031);

    /// True for commands the controller answers with Command Status and a later event, not Command Complete.
    pub fn completes_with_status(self) -> bool {
        matches!(
            self,
            Opcode::DISCONNECT
                | Opcode::LE_CREATE_CONNECTION
                | Opcode::LE_CONNECTION_UPDATE
                | Opcode::LE_SET_PHY
                | Opcode::LE_ENABLE_ENCRYPTION
        )
    }
}

/// Connection parameters shared by LE Create Connection, LE Connection Update and the remote
/// parameter request reply (Core Vol 4 Part E §7.8.12). Units: interval 1.25 ms, timeout 10 ms.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ConnParams {
    /// Minimum connection interval (units of 1.25 ms, 6..=3200).
    pub interval_min: u16,
    /// Maximum connection interval (units of 1.25 ms, 6..=3200).
    pub interval_max: u16,
    /// Peripheral latency in connection events (0..=499).
    pub latency: u16,
    /// Supervision timeout (units of 10 ms, 10..=3200).
    pub timeout: u16,
    /// Minimum connection event length (units of 0.625 ms).
    pub min_ce_len: u16,
    /// Maximum connection event length (units of 0.625 ms).
    pub max_ce_len: u16,
}

impl Default for ConnParams {
    /// 30-50 ms interval, no latency, 4 s supervision timeout.
    fn default() -> Self {
        Self { interval_min: 24, interval_max: 40, latency: 0, timeout: 400, min_ce_len: 0, max_ce_len: 0 }
    }
}

impl ConnParams {
    /// Checks the ranges and the rule that the timeout exceeds (1 + latency) * interval_max * 2
    /// (Core Vol 4 Part E §7.8.12).
    pub fn is_valid(&self) -> bool {
        let ranges = (6..=3200).contains(&self.interval_min)
            && (6..=3200).contains(&self.interval_max)
            && self.interval_min <= self.interval_max
            && self.latency <= 499
            && (10..=3200).contains(&self.timeout);
        // timeout(ms) = t * 10 > (1 + latency) * interval_max * 1.25 * 2  <=>  t*4 > (1+l)*imax
        ranges && (self.timeout as u32) * 4 > (1 + self.latency as u32) * self.interval_max as u32
    }

    fn write(&self, out: &mut Vec<u8>, with_ce: bool) {
        out.put_u16(self.interval_min);
        out.put_u16(self.interval_max);
        out.put_u16(self.latency);
        out.put_u16(self.timeout);
        if with_ce {
            out.put_u16(self.min_ce_len);
            out.put_u16(self.max_ce_len);
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            interval_min: r.u16()?,
            interval_max: r.u16()?,
            latency: r.u16()?,
            timeout: r.u16()?,
            min_ce_len: r.u16()?,
            max_ce_len: r.u16()?,
        })
    }
}

/// LE Set Advertising Parameters (Core Vol 4 Part E §7.8.5).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AdvParams {
    /// Minimum advertising interval (units of 0.625 ms, 0x20..=0x4000).
    pub interval_min: u16,
    /// Maximum advertising interval (units of 0.625 ms).
    pub interval_max: u16,
    /// 0 ADV_IND, 1 ADV_DIRECT_IND high duty, 2 ADV_SCAN_IND, 3 ADV_NONCONN_IND, 4 ADV_DIRECT_IND low duty.
    pub adv_type: u8,
    /// 0 public, 1 random, 2/3 resolvable with fallback.
    pub own_address_type: u8,
    /// Peer address type for directed advertising.
    pub peer_address_type: u8,
    /// Peer address for directed advertising.
    pub peer_address: BdAddr,
    /// Channel map bits (37, 38, 39).
    pub channel_map: u8,
    /// Filter policy (0 = accept all).
    pub filter_policy: u8,
}

impl Default for AdvParams {
    /// Connectable undirected, 100 ms interval, public address, all channels.
    fn default() -> Self {
        Self {
            interval_min: 0xA0,
            interval_max: 0xA0,
            adv_type: 0,
            own_address_type: 0,
            peer_address_type: 0,
            peer_address: BdAddr::default(),
            channel_map: 0x07,
            filter_policy: 0,
        }
    }
}

/// LE Create Connection parameters (Core Vol 4 Part E §7.8.12).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CreateConnection {
    /// Scan interval (units of 0.625 ms).
    pub scan_interval: u16,
    /// Scan window (units of 0.625 ms).
    pub scan_window: u16,
    /// 0: connect to the peer address below; 1: use the filter accept list.
    pub filter_policy: u8,
    /// Peer address type (0 public, 1 random, ...).
    pub peer_address_type: u8,
    /// Peer address.
    pub peer_address: BdAddr,
    /// Own address type.
    pub own_address_type: u8,
    /// Connection parameters.
    pub params: ConnParams,
}

/// An HCI command with its parameters (Core Vol 4 Part E §7).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Command {
    /// Disconnect (§7.1.6).
    Disconnect {
        /// Connection handle.
        handle: u16,
        /// Reason (e.g. 0x13 Remote User Terminated Connection).
        reason: u8,
    },
    /// Set Event Mask (§7.3.1).
    SetEventMask(u64),
    /// Reset (§7.3.2).
    Reset,
    /// Read Local Version Information (§7.4.1).
    ReadLocalVersion,
    /// Read Local Supported Commands (§7.4.2).
    ReadLocalSupportedCommands,
    /// Read Local Supported Features (§7.4.3).
    ReadLocalSupportedFeatures,
    /// Read Buffer Size (§7.4.5).
    ReadBufferSize,
    /// Read BD_ADDR (§7.4.6).
    ReadBdAddr,
    /// Read RSSI of a connection (§7.5.4).
    ReadRssi {
        /// Connection handle.
        handle: u16,
    },
    /// LE Set Event Mask (§7.8.1).
    LeSetEventMask(u64),
    /// LE Read Buffer Size v1 (§7.8.2).
    LeReadBufferSize,
    /// LE Read Buffer Size v2 (§7.8.2).
    LeReadBufferSizeV2,
    /// LE Read Local Supported Features (§7.8.3).
    LeReadLocalSupportedFeatures,
    /// LE Set Random Address (§7.8.4).
    LeSetRandomAddress(BdAddr),
    /// LE Set Advertising Parameters (§7.8.5).
    LeSetAdvertisingParameters(AdvParams),
    /// LE Set Advertising Data (§7.8.7); at most 31 bytes.
    LeSetAdvertisingData(Vec<u8>),
    /// LE Set Scan Response Data (§7.8.8); at most 31 bytes.
    LeSetScanResponseData(Vec<u8>),
    /// LE Set Advertising Enable (§7.8.9).
    LeSetAdvertisingEnable(bool),
    /// LE Set Scan Parameters (§7.8.10).
    LeSetScanParameters {
        /// 0 passive, 1 active.
        scan_type: u8,
        /// Scan interval (units of 0.625 ms).
        interval: u16,
        /// Scan window (units of 0.625 ms).
        window: u16,
        /// Own address type.
        own_address_type: u8,
        /// Filter policy.
        filter_policy: u8,
    },
    /// LE Set Scan Enable (§7.8.11).
    LeSetScanEnable {
        /// Enable or disable.
        enable: bool,
        /// Controller-side duplicate filtering.
        filter_duplicates: bool,
    },
    /// LE Create Connection (§7.8.12).
    LeCreateConnection(CreateConnection),
    /// LE Create Connection Cancel (§7.8.13).
    LeCreateConnectionCancel,
    /// LE Connection Update (§7.8.18).
    LeConnectionUpdate {
        /// Connection handle.
        handle: u16,
        /// New parameters.
        params: ConnParams,
    },
    /// LE Encrypt (§7.8.22): AES-128 of `plaintext` under `key` (both most significant octet last).
    LeEncrypt {
        /// Key.
        key: [u8; 16],
        /// Plaintext.
        plaintext: [u8; 16],
    },
    /// LE Rand (§7.8.23).
    LeRand,
    /// LE Enable Encryption (§7.8.24): the central starts (or, on an encrypted link, refreshes)
    /// encryption with a Long Term Key; answered with Command Status, then Encryption Change or
    /// Encryption Key Refresh Complete.
    LeEnableEncryption {
        /// Connection handle.
        handle: u16,
        /// Random_Number (Rand), least significant octet first on the wire.
        rand: u64,
        /// Encrypted_Diversifier (EDIV).
        ediv: u16,
        /// Long_Term_Key, least significant octet first.
        ltk: [u8; 16],
    },
    /// LE Long Term Key Request Reply (§7.8.25): the peripheral's host gives the key asked for.
    LeLongTermKeyRequestReply {
        /// Connection handle.
        handle: u16,
        /// Long_Term_Key, least significant octet first.
        ltk: [u8; 16],
    },
    /// LE Long Term Key Request Negative Reply (§7.8.26): the peripheral's host has no key.
    LeLongTermKeyRequestNegativeReply {
        /// Connection handle.
        handle: u16,
    },
    /// Read Encryption Key Size (§7.5.7) of an encrypted connection.
    ReadEncryptionKeySize {
        /// Connection handle.
        handle: u16,
    },
    /// LE Add Device To Resolving List (§7.8.38).
    LeAddDeviceToResolvingList {
        /// Peer identity address type (0 public, 1 random static).
        peer_identity_address_type: u8,
        /// Peer identity address.
        peer_identity_address: BdAddr,
        /// Peer IRK, least significant octet first.
        peer_irk: [u8; 16],
        /// Local IRK, least significant octet first.
        local_irk: [u8; 16],
    },
    /// LE Remove Device From Resolving List (§7.8.39).
    LeRemoveDeviceFromResolvingList {
        /// Peer identity address type (0 public, 1 random static).
        peer_identity_address_type: u8,
        /// Peer identity address.
        peer_identity_address: BdAddr,
    },
    /// LE Clear Resolving List (§7.8.40).
    LeClearResolvingList,
    /// LE Set Address Resolution Enable (§7.8.44).
    LeSetAddressResolutionEnable(bool),
    /// LE Set Resolvable Private Address Timeout (§7.8.45), in seconds (1..=3600).
    LeSetResolvablePrivateAddressTimeout(u16),
    /// LE Remote Connection Parameter Request Reply (§7.8.31).
    LeRemoteConnParamReqReply {
        /// Connection handle.
        handle: u16,
        /// Accepted parameters.
        params: ConnParams,
    },
    /// LE Remote Connection Parameter Request Negative Reply (§7.8.32).
    LeRemoteConnParamReqNegReply {
        /// Connection handle.
        handle: u16,
        /// Reason (e.g. 0x3B Unacceptable Connection Parameters).
        reason: u8,
    },
    /// LE Set Data Length (§7.8.33).
    LeSetDataLength {
        /// Connection handle.
        handle: u16,
        /// Preferred maximum TX octets (27..=251).
        tx_octets: u16,
        /// Preferred maximum TX time (µs, 328..=17040).
        tx_time: u16,
    },
    /// LE Set PHY (§7.8.49).
    LeSetPhy {
        /// Connection handle.
        handle: u16,
        /// ALL_PHYS bits.
        all_phys: u8,
        /// Preferred TX PHYs (bit0 1M, bit1 2M, bit2 Coded).
        tx_phys: u8,
        /// Preferred RX PHYs.
        rx_phys: u8,
        /// Coded PHY options.
        phy_options: u16,
    },
    /// Any other command, carried as raw parameters.
    Other {
        /// Opcode.
        opcode: Opcode,
        /// Raw parameters.
        params: Vec<u8>,
    },
}

/// Copies advertising or scan response data into the fixed 31-byte field with its length byte.
fn put_adv_data(out: &mut Vec<u8>, data: &[u8]) {
    let n = data.len().min(31);
    out.put_u8(n as u8);
    out.put(data.get(..n).unwrap_or(&[]));
    out.extend(core::iter::repeat_n(0, 31 - n));
}

impl Command {
    /// This command's opcode.
    pub fn opcode(&self) -> Opcode {
        match self {
            Command::Disconnect { .. } => Opcode::DISCONNECT,
            Command::SetEventMask(_) => Opcode::SET_EVENT_MASK,
            Command::Reset => Opcode::RESET,
            Command::ReadLocalVersion => Opcode::READ_LOCAL_VERSION,
            Command::ReadLocalSupportedCommands => Opcode::READ_LOCAL_SUPPORTED_COMMANDS,
            Command::ReadLocalSupportedFeatures => Opcode::READ_LOCAL_SUPPORTED_FEATURES,
            Command::ReadBufferSize => Opcode::READ_BUFFER_SIZE,
            Command::ReadBdAddr => Opcode::READ_BD_ADDR,
            Command::ReadRssi { .. } => Opcode::READ_RSSI,
            Command::LeSetEventMask(_) => Opcode::LE_SET_EVENT_MASK,
            Command::LeReadBufferSize => Opcode::LE_READ_BUFFER_SIZE,
            Command::LeReadBufferSizeV2 => Opcode::LE_READ_BUFFER_SIZE_V2,
            Command::LeReadLocalSupportedFeatures => Opcode::LE_READ_LOCAL_SUPPORTED_FEATURES,
            Command::LeSetRandomAddress(_) => Opcode::LE_SET_RANDOM_ADDRESS,
            Command::LeSetAdvertisingParameters(_) => Opcode::LE_SET_ADVERTISING_PARAMETERS,
            Command::LeSetAdvertisingData(_) => Opcode::LE_SET_ADVERTISING_DATA,
            Command::LeSetScanResponseData(_) => Opcode::LE_SET_SCAN_RESPONSE_DATA,
            Command::LeSetAdvertisingEnable(_) => Opcode::LE_SET_ADVERTISING_ENABLE,
            Command::LeSetScanParameters { .. } => Opcode::LE_SET_SCAN_PARAMETERS,
            Command::LeSetScanEnable { .. } => Opcode::LE_SET_SCAN_ENABLE,
            Command::LeCreateConnection(_) => Opcode::LE_CREATE_CONNECTION,
            Command::LeCreateConnectionCancel => Opcode::LE_CREATE_CONNECTION_CANCEL,
            Command::LeConnectionUpdate { .. } => Opcode::LE_CONNECTION_UPDATE,
            Command::LeEncrypt { .. } => Opcode::LE_ENCRYPT,
            Command::LeRand => Opcode::LE_RAND,
            Command::LeEnableEncryption { .. } => Opcode::LE_ENABLE_ENCRYPTION,
            Command::LeLongTermKeyRequestReply { .. } => Opcode::LE_LTK_REPLY,
            Command::LeLongTermKeyRequestNegativeReply { .. } => Opcode::LE_LTK_NEG_REPLY,
            Command::ReadEncryptionKeySize { .. } => Opcode::READ_ENCRYPTION_KEY_SIZE,
            Command::LeAddDeviceToResolvingList { .. } => Opcode::LE_ADD_DEVICE_TO_RESOLVING_LIST,
            Command::LeRemoveDeviceFromResolvingList { .. } => Opcode::LE_REMOVE_DEVICE_FROM_RESOLVING_LIST,
            Command::LeClearResolvingList => Opcode::LE_CLEAR_RESOLVING_LIST,
            Command::LeSetAddressResolutionEnable(_) => Opcode::LE_SET_ADDRESS_RESOLUTION_ENABLE,
            Command::LeSetResolvablePrivateAddressTimeout(_) => Opcode::LE_SET_RPA_TIMEOUT,
            Command::LeRemoteConnParamReqReply { .. } => Opcode::LE_REMOTE_CONN_PARAM_REQ_REPLY,
            Command::LeRemoteConnParamReqNegReply { .. } => Opcode::LE_REMOTE_CONN_PARAM_REQ_NEG_REPLY,
            Command::LeSetDataLength { .. } => Opcode::LE_SET_DATA_LENGTH,
            Command::LeSetPhy { .. } => Opcode::LE_SET_PHY,
            Command::Other { opcode, .. } => *opcode,
        }
    }

    /// Appends the command parameters (without the header) to `out`.
    pub fn write_params(&self, out: &mut Vec<u8>) {
        match self {
            Command::Disconnect { handle, reason } => {
                out.put_u16(*handle);
                out.put_u8(*reason);
            }
            Command::SetEventMask(m) | Command::LeSetEventMask(m) => out.put(&m.to_le_bytes()),
            Command::ReadRssi { handle }
            | Command::LeLongTermKeyRequestNegativeReply { handle }
            | Command::ReadEncryptionKeySize { handle } => out.put_u16(*handle),
            Command::LeEnableEncryption { handle, rand, ediv, ltk } => {
                out.put_u16(*handle);
                out.put(&rand.to_le_bytes());
                out.put_u16(*ediv);
                out.put(ltk);
            }
            Command::LeLongTermKeyRequestReply { handle, ltk } => {
                out.put_u16(*handle);
                out.put(ltk);
            }
            Command::LeAddDeviceToResolvingList {
                peer_identity_address_type,
                peer_identity_address,
                peer_irk,
                local_irk,
            } => {
                out.put_u8(*peer_identity_address_type);
                out.put(&peer_identity_address.0);
                out.put(peer_irk);
                out.put(local_irk);
            }
            Command::LeRemoveDeviceFromResolvingList { peer_identity_address_type, peer_identity_address } => {
                out.put_u8(*peer_identity_address_type);
                out.put(&peer_identity_address.0);
            }
            Command::LeSetAddressResolutionEnable(e) => out.put_u8(*e as u8),
            Command::LeSetResolvablePrivateAddressTimeout(t) => out.put_u16(*t),
            Command::Reset
            | Command::ReadLocalVersion
            | Command::ReadLocalSupportedCommands
            | Command::ReadLocalSupportedFeatures
            | Command::ReadBufferSize
            | Command::ReadBdAddr
            | Command::LeReadBufferSize
            | Command::LeReadBufferSizeV2
            | Command::LeReadLocalSupportedFeatures
            | Command::LeCreateConnectionCancel
            | Command::LeClearResolvingList
            | Command::LeRand => {}
            Command::LeSetRandomAddress(a) => out.put(&a.0),
            Command::LeSetAdvertisingParameters(p) => {
                out.put_u16(p.interval_min);
                out.put_u16(p.interval_max);
                out.put_u8(p.adv_type);
                out.put_u8(p.own_address_type);
                out.put_u8(p.peer_address_type);
                out.put(&p.peer_address.0);
                out.put_u8(p.channel_map);
                out.put_u8(p.filter_policy);
            }
            Command::LeSetAdvertisingData(d) | Command::LeSetScanResponseData(d) => put_adv_data(out, d),
            Command::LeSetAdvertisingEnable(e) => out.put_u8(*e as u8),
            Command::LeSetScanParameters { scan_type, interval, window, own_address_type, filter_policy } => {
                out.put_u8(*scan_type);
                out.put_u16(*interval);
                out.put_u16(*window);
                out.put_u8(*own_address_type);
                out.put_u8(*filter_policy);
            }
            Command::LeSetScanEnable { enable, filter_duplicates } => {
                out.put_u8(*enable as u8);
                out.put_u8(*filter_duplicates as u8);
            }
            Command::LeCreateConnection(c) => {
                out.put_u16(c.scan_interval);
                out.put_u16(c.scan_window);
                out.put_u8(c.filter_policy);
                out.put_u8(c.peer_address_type);
                out.put(&c.peer_address.0);
                out.put_u8(c.own_address_type);
                c.params.write(out, true);
            }
            Command::LeConnectionUpdate { handle, params } | Command::LeRemoteConnParamReqReply { handle, params } => {
                out.put_u16(*handle);
                params.write(out, true);
            }
            Command::LeEncrypt { key, plaintext } => {
                out.put(key);
                out.put(plaintext);
            }
            Command::LeRemoteConnParamReqNegReply { handle, reason } => {
                out.put_u16(*handle);
                out.put_u8(*reason);
            }
            Command::LeSetDataLength { handle, tx_octets, tx_time } => {
                out.put_u16(*handle);
                out.put_u16(*tx_octets);
                out.put_u16(*tx_time);
            }
            Command::LeSetPhy { handle, all_phys, tx_phys, rx_phys, phy_options } => {
                out.put_u16(*handle);
                out.put_u8(*all_phys);
                out.put_u8(*tx_phys);
                out.put_u8(*rx_phys);
                out.put_u16(*phy_options);
            }
            Command::Other { params, .. } => out.put(params),
        }
    }

    /// Appends the whole H4 command packet: indicator, opcode, length, parameters.
    pub fn encode_h4(&self, out: &mut Vec<u8>) {
        out.put_u8(super::PacketType::Command as u8);
        out.put_u16(self.opcode().0);
        let len_at = out.len();
        out.put_u8(0);
        self.write_params(out);
        let n = out.len() - len_at - 1;
        if let Some(b) = out.get_mut(len_at) {
            *b = n.min(255) as u8;
        }
    }

    /// Decodes a command packet body (after the H4 indicator); unknown opcodes become [`Command::Other`].
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body, "HCI command");
        let opcode = Opcode(r.u16()?);
        let len = r.u8()? as usize;
        let params = r.take(len)?;
        r.finish()?;
        let mut p = Reader::new(params, "HCI command parameters");
        let cmd = match opcode {
            Opcode::DISCONNECT => Command::Disconnect { handle: p.u16()?, reason: p.u8()? },
            Opcode::SET_EVENT_MASK => Command::SetEventMask(p.u64()?),
            Opcode::RESET => Command::Reset,
            Opcode::READ_LOCAL_VERSION => Command::ReadLocalVersion,
            Opcode::READ_LOCAL_SUPPORTED_COMMANDS => Command::ReadLocalSupportedCommands,
            Opcode::READ_LOCAL_SUPPORTED_FEATURES => Command::ReadLocalSupportedFeatures,
            Opcode::READ_BUFFER_SIZE => Command::ReadBufferSize,
            Opcode::READ_BD_ADDR => Command::ReadBdAddr,
            Opcode::READ_RSSI => Command::ReadRssi { handle: p.u16()? },
            Opcode::LE_SET_EVENT_MASK => Command::LeSetEventMask(p.u64()?),
            Opcode::LE_READ_BUFFER_SIZE => Command::LeReadBufferSize,
            Opcode::LE_READ_BUFFER_SIZE_V2 => Command::LeReadBufferSizeV2,
            Opcode::LE_READ_LOCAL_SUPPORTED_FEATURES => Command::LeReadLocalSupportedFeatures,
            Opcode::LE_SET_RANDOM_ADDRESS => Command::LeSetRandomAddress(BdAddr(p.array()?)),
            Opcode::LE_SET_ADVERTISING_PARAMETERS => Command::LeSetAdvertisingParameters(AdvParams {
                interval_min: p.u16()?,
                interval_max: p.u16()?,
                adv_type: p.u8()?,
                own_address_type: p.u8()?,
                peer_address_type: p.u8()?,
                peer_address: BdAddr(p.array()?),
                channel_map: p.u8()?,
                filter_policy: p.u8()?,
            }),
            Opcode::LE_SET_ADVERTISING_DATA | Opcode::LE_SET_SCAN_RESPONSE_DATA => {
                let n = p.u8()? as usize;
                let field: [u8; 31] = p.array()?;
                let data = field
                    .get(..n)
                    .ok_or(DecodeError::Oversized { what: "advertising data length", len: n, max: 31 })?
                    .to_vec();
                if opcode == Opcode::LE_SET_ADVERTISING_DATA {
                    Command::LeSetAdvertisingData(data)
                } else {
                    Command::LeSetScanResponseData(data)
                }
            }
            Opcode::LE_SET_ADVERTISING_ENABLE => Command::LeSetAdvertisingEnable(p.u8()? != 0),
            Opcode::LE_SET_SCAN_PARAMETERS => Command::LeSetScanParameters {
                scan_type: p.u8()?,
                interval: p.u16()?,
                window: p.u16()?,
                own_address_type: p.u8()?,
                filter_policy: p.u8()?,
            },
            Opcode::LE_SET_SCAN_ENABLE => {
                Command::LeSetScanEnable { enable: p.u8()? != 0, filter_duplicates: p.u8()? != 0 }
            }
            Opcode::LE_CREATE_CONNECTION => Command::LeCreateConnection(CreateConnection {
                scan_interval: p.u16()?,
                scan_window: p.u16()?,
                filter_policy: p.u8()?,
                peer_address_type: p.u8()?,
                peer_address: BdAddr(p.array()?),
                own_address_type: p.u8()?,
                params: ConnParams::read(&mut p)?,
            }),
            Opcode::LE_CREATE_CONNECTION_CANCEL => Command::LeCreateConnectionCancel,
            Opcode::LE_CONNECTION_UPDATE => {
                Command::LeConnectionUpdate { handle: p.u16()?, params: ConnParams::read(&mut p)? }
            }
            Opcode::LE_ENCRYPT => Command::LeEncrypt { key: p.array()?, plaintext: p.array()? },
            Opcode::LE_RAND => Command::LeRand,
            Opcode::LE_ENABLE_ENCRYPTION => {
                Command::LeEnableEncryption { handle: p.u16()?, rand: p.u64()?, ediv: p.u16()?, ltk: p.array()? }
            }
            Opcode::LE_LTK_REPLY => Command::LeLongTermKeyRequestReply { handle: p.u16()?, ltk: p.array()? },
            Opcode::LE_LTK_NEG_REPLY => Command::LeLongTermKeyRequestNegativeReply { handle: p.u16()? },
            Opcode::READ_ENCRYPTION_KEY_SIZE => Command::ReadEncryptionKeySize { handle: p.u16()? },
            Opcode::LE_ADD_DEVICE_TO_RESOLVING_LIST => Command::LeAddDeviceToResolvingList {
                peer_identity_address_type: p.u8()?,
                peer_identity_address: BdAddr(p.array()?),
                peer_irk: p.array()?,
                local_irk: p.array()?,
            },
            Opcode::LE_REMOVE_DEVICE_FROM_RESOLVING_LIST => Command::LeRemoveDeviceFromResolvingList {
                peer_identity_address_type: p.u8()?,
                peer_identity_address: BdAddr(p.array()?),
            },
            Opcode::LE_CLEAR_RESOLVING_LIST => Command::LeClearResolvingList,
            Opcode::LE_SET_ADDRESS_RESOLUTION_ENABLE => Command::LeSetAddressResolutionEnable(p.u8()? != 0),
            Opcode::LE_SET_RPA_TIMEOUT => Command::LeSetResolvablePrivateAddressTimeout(p.u16()?),
            Opcode::LE_REMOTE_CONN_PARAM_REQ_REPLY => {
                Command::LeRemoteConnParamReqReply { handle: p.u16()?, params: ConnParams::read(&mut p)? }
            }
            Opcode::LE_REMOTE_CONN_PARAM_REQ_NEG_REPLY => {
                Command::LeRemoteConnParamReqNegReply { handle: p.u16()?, reason: p.u8()? }
            }
            Opcode::LE_SET_DATA_LENGTH => {
                Command::LeSetDataLength { handle: p.u16()?, tx_octets: p.u16()?, tx_time: p.u16()? }
            }
            Opcode::LE_SET_PHY => Command::LeSetPhy {
                handle: p.u16()?,
                all_phys: p.u8()?,
                tx_phys: p.u8()?,
                rx_phys: p.u8()?,
                phy_options: p.u16()?,
            },
            _ => return Ok(Command::Other { opcode, params: params.to_vec() }),
        };
        p.finish()?;
        Ok(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reset_matches_the_wire() {
        let mut out = Vec::new();
        Command::Reset.encode_h4(&mut out);
        assert_eq!(out, [0x01, 0x03, 0x0c, 0x00]);
    }

    #[test]
    fn advertising_data_is_padded_to_31() {
        let mut out = Vec::new();
        Command::LeSetAdvertisingData(alloc::vec![2, 1, 6]).encode_h4(&mut out);
        assert_eq!(out.len(), 1 + 3 + 32);
        assert_eq!(&out[..8], &[0x01, 0x08, 0x20, 0x20, 0x03, 2, 1, 6]);
    }

    #[test]
    fn encryption_commands_match_the_wire() {
        let mut out = Vec::new();
        let ltk: [u8; 16] = core::array::from_fn(|i| 0x10 + i as u8);
        Command::LeEnableEncryption { handle: 0x0040, rand: 0x0807_0605_0403_0201, ediv: 0xBEEF, ltk }
            .encode_h4(&mut out);
        let mut want = alloc::vec![0x01, 0x19, 0x20, 28, 0x40, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 0xEF, 0xBE];
        want.extend_from_slice(&ltk);
        assert_eq!(out, want);
        out.clear();
        Command::LeLongTermKeyRequestNegativeReply { handle: 0x0041 }.encode_h4(&mut out);
        assert_eq!(out, [0x01, 0x1B, 0x20, 2, 0x41, 0x00]);
        out.clear();
        Command::ReadEncryptionKeySize { handle: 0x0041 }.encode_h4(&mut out);
        assert_eq!(out, [0x01, 0x08, 0x14, 2, 0x41, 0x00]);
    }

    #[test]
    fn encryption_commands_with_bad_lengths_are_errors() {
        // LE Enable Encryption one octet short, and one octet long.
        let mut short = alloc::vec![0x19, 0x20, 27];
        short.extend_from_slice(&[0; 27]);
        assert!(Command::decode(&short).is_err());
        let mut long = alloc::vec![0x19, 0x20, 29];
        long.extend_from_slice(&[0; 29]);
        assert!(Command::decode(&long).is_err());
        // LTK Reply without its key; Negative Reply with a trailing octet.
        assert!(Command::decode(&[0x1A, 0x20, 2, 0x40, 0x00]).is_err());
        assert!(Command::decode(&[0x1B, 0x20, 3, 0x40, 0x00, 0x00]).is_err());
        // Add Device To Resolving List missing the local IRK.
        let mut rl = alloc::vec![0x27, 0x20, 23];
        rl.extend_from_slice(&[0; 23]);
        assert!(Command::decode(&rl).is_err());
    }

    #[test]
    fn conn_params_validity() {
        assert!(ConnParams::default().is_valid());
        assert!(!ConnParams { timeout: 10, interval_max: 3200, interval_min: 3200, ..Default::default() }.is_valid());
        assert!(!ConnParams { interval_min: 5, ..Default::default() }.is_valid());
    }

    fn arb_params() -> impl Strategy<Value = ConnParams> {
        (any::<u16>(), any::<u16>(), any::<u16>(), any::<u16>(), any::<u16>(), any::<u16>()).prop_map(
            |(a, b, c, d, e, f)| ConnParams {
                interval_min: a,
                interval_max: b,
                latency: c,
                timeout: d,
                min_ce_len: e,
                max_ce_len: f,
            },
        )
    }

    fn arb_command() -> impl Strategy<Value = Command> {
        let addr = any::<[u8; 6]>().prop_map(BdAddr);
        prop_oneof![
            (0u16..0x0F00, any::<u8>()).prop_map(|(handle, reason)| Command::Disconnect { handle, reason }),
            any::<u64>().prop_map(Command::SetEventMask),
            Just(Command::Reset),
            Just(Command::ReadLocalVersion),
            Just(Command::ReadBdAddr),
            (0u16..0x0F00).prop_map(|handle| Command::ReadRssi { handle }),
            Just(Command::LeReadBufferSizeV2),
            any::<u64>().prop_map(Command::LeSetEventMask),
            addr.clone().prop_map(Command::LeSetRandomAddress),
            proptest::collection::vec(any::<u8>(), 0..=31).prop_map(Command::LeSetAdvertisingData),
            proptest::collection::vec(any::<u8>(), 0..=31).prop_map(Command::LeSetScanResponseData),
            any::<bool>().prop_map(Command::LeSetAdvertisingEnable),
            (any::<u16>(), any::<u16>(), any::<u8>(), addr.clone(), any::<u8>()).prop_map(|(a, b, t, peer, m)| {
                Command::LeSetAdvertisingParameters(AdvParams {
                    interval_min: a,
                    interval_max: b,
                    adv_type: t,
                    own_address_type: 1,
                    peer_address_type: 0,
                    peer_address: peer,
                    channel_map: m,
                    filter_policy: 0,
                })
            }),
            (any::<bool>(), any::<bool>())
                .prop_map(|(enable, filter_duplicates)| { Command::LeSetScanEnable { enable, filter_duplicates } }),
            (any::<u8>(), any::<u16>(), any::<u16>()).prop_map(|(scan_type, interval, window)| {
                Command::LeSetScanParameters { scan_type, interval, window, own_address_type: 1, filter_policy: 0 }
            }),
            (addr, arb_params()).prop_map(|(peer_address, params)| Command::LeCreateConnection(CreateConnection {
                scan_interval: 0x60,
                scan_window: 0x30,
                filter_policy: 0,
                peer_address_type: 1,
                peer_address,
                own_address_type: 0,
                params,
            })),
            Just(Command::LeCreateConnectionCancel),
            (any::<u16>(), arb_params()).prop_map(|(handle, params)| Command::LeConnectionUpdate { handle, params }),
            (any::<[u8; 16]>(), any::<[u8; 16]>()).prop_map(|(key, plaintext)| Command::LeEncrypt { key, plaintext }),
            Just(Command::LeRand),
            (any::<u16>(), any::<u64>(), any::<u16>(), any::<[u8; 16]>())
                .prop_map(|(handle, rand, ediv, ltk)| Command::LeEnableEncryption { handle, rand, ediv, ltk }),
            (any::<u16>(), any::<[u8; 16]>())
                .prop_map(|(handle, ltk)| Command::LeLongTermKeyRequestReply { handle, ltk }),
            any::<u16>().prop_map(|handle| Command::LeLongTermKeyRequestNegativeReply { handle }),
            any::<u16>().prop_map(|handle| Command::ReadEncryptionKeySize { handle }),
            (0u8..2, any::<[u8; 6]>(), any::<[u8; 16]>(), any::<[u8; 16]>()).prop_map(|(t, a, peer_irk, local_irk)| {
                Command::LeAddDeviceToResolvingList {
                    peer_identity_address_type: t,
                    peer_identity_address: BdAddr(a),
                    peer_irk,
                    local_irk,
                }
            }),
            (0u8..2, any::<[u8; 6]>()).prop_map(|(t, a)| Command::LeRemoveDeviceFromResolvingList {
                peer_identity_address_type: t,
                peer_identity_address: BdAddr(a),
            }),
            Just(Command::LeClearResolvingList),
            any::<bool>().prop_map(Command::LeSetAddressResolutionEnable),
            any::<u16>().prop_map(Command::LeSetResolvablePrivateAddressTimeout),
            (any::<u16>(), arb_params())
                .prop_map(|(handle, params)| Command::LeRemoteConnParamReqReply { handle, params }),
            (any::<u16>(), any::<u8>())
                .prop_map(|(handle, reason)| { Command::LeRemoteConnParamReqNegReply { handle, reason } }),
            (any::<u16>(), any::<u16>(), any::<u16>())
                .prop_map(|(handle, tx_octets, tx_time)| { Command::LeSetDataLength { handle, tx_octets, tx_time } }),
            (any::<u16>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<u16>()).prop_map(
                |(handle, all_phys, tx_phys, rx_phys, phy_options)| {
                    Command::LeSetPhy { handle, all_phys, tx_phys, rx_phys, phy_options }
                }
            ),
            proptest::collection::vec(any::<u8>(), 0..40)
                .prop_map(|params| Command::Other { opcode: Opcode::new(0x3F, 0x0123), params }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(cmd in arb_command()) {
            let mut out = Vec::new();
            cmd.encode_h4(&mut out);
            prop_assert_eq!(Command::decode(&out[1..]), Ok(cmd));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = Command::decode(&bytes);
        }
    }
}
