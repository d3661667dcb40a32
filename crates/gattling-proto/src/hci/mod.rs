//! Host Controller Interface (Core Vol 4 Part E) and its UART (H4) framing (Core Vol 4 Part A).
//!
//! The `bt-hci` crate was evaluated for these types and not adopted: it models only the host's
//! direction (commands out, events in) behind its own async `Controller` traits, whereas gattling
//! also needs the controller's direction (decode commands, encode events) for its virtual
//! controller, decode errors that say which structure failed and why, and a codec that plugs into
//! a sans-IO state machine without embedded-io traits. The subset a host needs is small enough
//! to keep here, with both directions round-trip tested.

pub mod acl;
pub mod command;
pub mod event;
pub mod h4;

pub use acl::{AclHeader, AclPacket, PacketBoundary};
pub use command::{Command, Opcode};
pub use event::Event;
pub use h4::{H4Framer, H4Packet, PacketType};

/// A connection handle (12 bits, Core Vol 4 Part E §5.4.2).
pub type ConnHandle = u16;

/// An HCI error code given as the reason a connection ended (Core Vol 1 Part F), shown with
/// its spec name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Reason(pub u8);

impl Reason {
    /// The code.
    pub const fn code(self) -> u8 {
        self.0
    }

    /// The spec name of the code (Core Vol 1 Part F §1.3).
    pub fn name(self) -> &'static str {
        status::name(self.0)
    }
}

impl PartialEq<u8> for Reason {
    fn eq(&self, code: &u8) -> bool {
        self.0 == *code
    }
}

impl From<u8> for Reason {
    fn from(code: u8) -> Self {
        Reason(code)
    }
}

impl core::fmt::Display for Reason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({:#04x})", self.name(), self.0)
    }
}

/// HCI error codes the host uses by name (Core Vol 1 Part F §1.3).
pub mod status {
    /// Success.
    pub const SUCCESS: u8 = 0x00;
    /// Unknown HCI Command.
    pub const UNKNOWN_COMMAND: u8 = 0x01;
    /// Unknown Connection Identifier.
    pub const UNKNOWN_CONNECTION_ID: u8 = 0x02;
    /// Hardware Failure.
    pub const HARDWARE_FAILURE: u8 = 0x03;
    /// Connection Timeout (supervision timeout).
    pub const CONNECTION_TIMEOUT: u8 = 0x08;
    /// Command Disallowed.
    pub const COMMAND_DISALLOWED: u8 = 0x0C;
    /// Invalid HCI Command Parameters.
    pub const INVALID_PARAMETERS: u8 = 0x12;
    /// Remote User Terminated Connection.
    pub const REMOTE_USER_TERMINATED: u8 = 0x13;
    /// Remote Device Terminated Connection due to Low Resources.
    pub const REMOTE_LOW_RESOURCES: u8 = 0x14;
    /// Remote Device Terminated Connection due to Power Off.
    pub const REMOTE_POWER_OFF: u8 = 0x15;
    /// Connection Terminated By Local Host.
    pub const LOCAL_HOST_TERMINATED: u8 = 0x16;
    /// Unsupported Remote Feature.
    pub const UNSUPPORTED_REMOTE_FEATURE: u8 = 0x1A;
    /// PIN or Key Missing.
    pub const PIN_OR_KEY_MISSING: u8 = 0x06;
    /// Memory Capacity Exceeded.
    pub const MEMORY_CAPACITY_EXCEEDED: u8 = 0x07;
    /// Unsupported Feature or Parameter Value.
    pub const UNSUPPORTED_FEATURE: u8 = 0x11;
    /// Advertising Timeout.
    pub const ADVERTISING_TIMEOUT: u8 = 0x3C;
    /// Connection Terminated due to MIC Failure.
    pub const MIC_FAILURE: u8 = 0x3D;
    /// Unacceptable Connection Parameters.
    pub const UNACCEPTABLE_CONNECTION_PARAMETERS: u8 = 0x3B;
    /// Connection Failed to be Established.
    pub const CONNECTION_FAILED_TO_BE_ESTABLISHED: u8 = 0x3E;

    /// The spec's name for an HCI error code, or "Unknown" for codes not listed here.
    pub fn name(code: u8) -> &'static str {
        match code {
            0x00 => "Success",
            0x01 => "Unknown HCI Command",
            0x02 => "Unknown Connection Identifier",
            0x03 => "Hardware Failure",
            0x04 => "Page Timeout",
            0x05 => "Authentication Failure",
            0x06 => "PIN or Key Missing",
            0x07 => "Memory Capacity Exceeded",
            0x08 => "Connection Timeout",
            0x09 => "Connection Limit Exceeded",
            0x0B => "ACL Connection Already Exists",
            0x0C => "Command Disallowed",
            0x0D => "Connection Rejected due to Limited Resources",
            0x11 => "Unsupported Feature or Parameter Value",
            0x12 => "Invalid HCI Command Parameters",
            0x13 => "Remote User Terminated Connection",
            0x14 => "Remote Device Terminated Connection due to Low Resources",
            0x15 => "Remote Device Terminated Connection due to Power Off",
            0x16 => "Connection Terminated By Local Host",
            0x1A => "Unsupported Remote Feature",
            0x1F => "Unspecified Error",
            0x22 => "LL Response Timeout",
            0x28 => "Instant Passed",
            0x3B => "Unacceptable Connection Parameters",
            0x3C => "Advertising Timeout",
            0x3D => "Connection Terminated due to MIC Failure",
            0x3E => "Connection Failed to be Established",
            _ => "Unknown",
        }
    }
}
