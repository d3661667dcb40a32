//! gattling's std runtime: drives the sans-IO core ([`gattling_proto`]) over a transport on tokio
//! and offers the async host API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), gattling::Error> {
//! let host = gattling::Host::open("tcp-client:127.0.0.1:6402").await?;
//! let mut scan = host.scan(gattling::ScanOptions::default()).await?;
//! while let Some(report) = scan.next().await {
//!     println!("{} {}", report.address, report.rssi);
//! }
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod bonds;
pub mod btsnoop;
pub mod connection;
pub mod controller;
mod driver;
pub mod error;
pub mod gatt;
pub mod gatt_client;
pub mod host;
pub mod security;
pub mod transport;

pub use bonds::{Bond, BondError, BondStore, FileBondStore, MemoryBondStore};
pub use connection::{Connection, Phy, PhySet};
pub use error::Error;
pub use gatt::{GattServer, ReadRequest, ServerEvent, WriteRequest};
pub use gatt_client::{ClientOptions, GattClient};
pub use gattling_proto as proto;
pub use gattling_proto::hci::Reason;
pub use host::{
    AdvertisingKind, AdvertisingOptions, ConnectOptions, Host, HostOptions, LinkEnd, LinkState, Notification,
    ScanOptions, Scanner,
};
pub use security::{PairingDelegate, SecurityLevel, SecurityOptions};
pub use transport::{Transport, TransportSpec};
