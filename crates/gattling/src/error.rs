//! The runtime's error type: every failure names what was being done and why.

use gattling_proto::hci::{status, Opcode};
use gattling_proto::host::HostError;

/// Why a host operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The transport could not be opened; the source says why.
    #[error("transport: {0}")]
    Transport(#[source] std::sync::Arc<crate::transport::TransportError>),
    /// The controller went away (TCP closed, serial error); every pending operation fails with this.
    #[error("transport closed: {0}")]
    TransportClosed(String),
    /// The controller rejected a command.
    #[error("HCI command {opcode:#06x} ({name}) failed: {reason} (status {status:#04x})", opcode = opcode.0, reason = status::name(*status))]
    Command {
        /// Opcode of the failed command.
        opcode: Opcode,
        /// Short name of the command.
        name: &'static str,
        /// HCI status code.
        status: u8,
    },
    /// The controller sent something the host could not use.
    #[error("controller protocol error: {0}")]
    Protocol(String),
    /// An operation did not finish in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The operation was cancelled (e.g. a connection attempt by [`crate::Host::cancel_connect`]).
    #[error("cancelled: {0}")]
    Cancelled(&'static str),
    /// The connection ended.
    #[error("disconnected: {reason}")]
    Disconnected {
        /// Why (an HCI error code, Core Vol 1 Part F).
        reason: gattling_proto::hci::Reason,
    },
    /// Another operation of the same kind is already running.
    #[error("busy: {0} already in progress")]
    Busy(&'static str),
    /// A GATT procedure failed (an ATT error from the server, or a bad answer).
    #[error("GATT: {0}")]
    Gatt(#[from] gattling_proto::gatt::client::ClientError),
    /// A request the host state machine refused.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The controller does not support a command the operation needs.
    #[error("the controller does not support {0}")]
    Unsupported(&'static str),
    /// A bad argument from the caller.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The ATT bearer refused a PDU (Core Vol 3 Part F §3.3): a second request, a response
    /// nobody asked for, or a bearer closed by a transaction timeout.
    #[error("ATT bearer: {0}")]
    Bearer(#[from] gattling_proto::att::BearerError),
    /// The GATT database refused a change.
    #[error("GATT database: {0}")]
    Database(#[from] gattling_proto::gatt::DbError),
    /// An ATT_LIST service table was refused (`gattling_proto::gatt::att_list`).
    #[error("ATT_LIST table: {0}")]
    AttList(#[from] gattling_proto::gatt::AttListError),
    /// Advertising data could not be built.
    #[error("advertising data: {0}")]
    AdvertisingData(#[from] gattling_proto::gap::ad::AdBuildError),
    /// Pairing failed with this Pairing Failed reason, sent by us or by the peer (`remote`)
    /// (Core Vol 3 Part H §3.5.5).
    #[error("pairing failed ({by}): {reason}", by = if *remote { "by the peer" } else { "here" }, reason = reason.name())]
    Pairing {
        /// The reason code.
        reason: gattling_proto::smp::pdu::Reason,
        /// The peer sent the Pairing Failed.
        remote: bool,
    },
    /// The link did not reach the security level asked for.
    #[error("the link reached {reached:?}, not {wanted:?}")]
    InsufficientSecurity {
        /// The level asked for.
        wanted: crate::security::SecurityLevel,
        /// The level the link has.
        reached: crate::security::SecurityLevel,
    },
    /// The bond store failed.
    #[error("bond store: {0}")]
    Bond(std::sync::Arc<crate::bonds::BondError>),
}

impl From<crate::bonds::BondError> for Error {
    fn from(e: crate::bonds::BondError) -> Self {
        Error::Bond(std::sync::Arc::new(e))
    }
}

impl From<crate::transport::TransportError> for Error {
    fn from(e: crate::transport::TransportError) -> Self {
        Error::Transport(std::sync::Arc::new(e))
    }
}
