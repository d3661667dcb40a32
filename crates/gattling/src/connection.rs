//! One LE connection, in either role: raw ATT access, link events and link-level procedures.

use crate::error::Error;
use crate::host::{Host, LinkEnd, LinkEvent, COMMAND_TIMEOUT};
use crate::security::SecurityLevel;
use gattling_proto::gap::Address;
use gattling_proto::hci::command::{Command, ConnParams, Opcode};
use gattling_proto::hci::{status, ConnHandle, Reason};
use gattling_proto::host::{ConnectionInfo, Role};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// An LE PHY in use on a link (Core Vol 4 Part E §7.7.65.12).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Phy {
    /// LE 1M.
    Le1M,
    /// LE 2M.
    Le2M,
    /// LE Coded.
    LeCoded,
    /// A code this host does not know.
    Other(u8),
}

impl Phy {
    /// The PHY of an HCI PHY code (1, 2, 3).
    pub fn from_code(code: u8) -> Phy {
        match code {
            1 => Phy::Le1M,
            2 => Phy::Le2M,
            3 => Phy::LeCoded,
            other => Phy::Other(other),
        }
    }
}

/// A set of PHYs a host prefers (the bit field of LE Set PHY, Core Vol 4 Part E §7.8.49).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PhySet(pub u8);

impl PhySet {
    /// LE 1M.
    pub const LE_1M: PhySet = PhySet(0b001);
    /// LE 2M.
    pub const LE_2M: PhySet = PhySet(0b010);
    /// LE Coded.
    pub const LE_CODED: PhySet = PhySet(0b100);
}

impl std::ops::BitOr for PhySet {
    type Output = PhySet;
    fn bitor(self, o: PhySet) -> PhySet {
        PhySet(self.0 | o.0)
    }
}

/// One LE connection, in either role. Cheap to clone; every clone and every
/// [`Host::connection`] for the same link share its raw ATT queue.
#[derive(Clone)]
pub struct Connection {
    host: Host,
    info: ConnectionInfo,
    raw: Arc<crate::driver::RawQueue>,
    end_rx: watch::Receiver<Option<LinkEnd>>,
    events: broadcast::Sender<LinkEvent>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("info", &self.info).finish()
    }
}

impl Connection {
    /// A handle on the link `info` describes; fails if it is no longer up.
    pub(crate) fn new(host: &Host, info: ConnectionInfo) -> Result<Connection, Error> {
        let inner = host.lock();
        let Some(link) = inner.links.0.get(&info.handle) else {
            // Already gone again (disconnected before we got here).
            return Err(Error::Disconnected { reason: gattling_proto::hci::Reason(status::UNKNOWN_CONNECTION_ID) });
        };
        let conn = Connection {
            host: host.clone(),
            info,
            raw: link.raw.clone(),
            end_rx: link.end_tx.subscribe(),
            events: link.events.clone(),
        };
        Ok(conn)
    }

    /// Connection handle.
    pub fn handle(&self) -> ConnHandle {
        self.info.handle
    }

    /// What was known when the connection was made.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// Peer address.
    pub fn peer(&self) -> Address {
        self.info.peer
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.info.role
    }

    /// The host this connection belongs to.
    pub fn host(&self) -> &Host {
        &self.host
    }

    pub(crate) fn end_error(&self) -> Option<Error> {
        self.end().map(|e| e.error(&self.host))
    }

    /// The received signal strength of the link in dBm (HCI Read RSSI, Core Vol 4 Part E §7.5.4).
    pub async fn rssi(&self) -> Result<i8, Error> {
        let r = self.host.command(Command::ReadRssi { handle: self.info.handle }).await?;
        let (_, rssi) = gattling_proto::hci::event::ret::read_rssi(&r).map_err(|e| Error::Protocol(e.to_string()))?;
        Ok(rssi)
    }

    /// The ATT_MTU of the link's bearer (Core Vol 3 Part F §3.4.2.2).
    pub fn att_mtu(&self) -> u16 {
        self.host.att_mtu(self.info.handle).unwrap_or(gattling_proto::att::bearer::DEFAULT_MTU)
    }

    /// Sends one raw ATT PDU (L2CAP channel 0x0004), fragmented to the controller's ACL size.
    /// It goes through the link's bearer: a second request before the first is answered, a
    /// response with no request from the peer, or a PDU on a timed-out bearer is refused
    /// ([`Error::Bearer`]).
    pub fn send_att(&self, pdu: &[u8]) -> Result<(), Error> {
        if let Some(e) = self.end_error() {
            return Err(e);
        }
        let now = self.host.now();
        let shared = self.host.shared();
        let mut inner = self.host.lock();
        inner.send_att(self.info.handle, pdu, now)?;
        if inner.links.0.get(&self.info.handle).is_some_and(|l| l.bearer.poll_timeout().is_some()) {
            crate::driver::arm_timer(shared, &mut inner);
        }
        // Written inline while the host is still locked for the queue, as the read loop does.
        crate::driver::send_taken(shared, inner);
        Ok(())
    }

    /// Receives the next ATT PDU from the peer; fails once the link has ended and no PDU is left.
    /// Up to 256 unread PDUs are kept; later ones are dropped until the application reads.
    pub async fn recv_att(&self) -> Result<Vec<u8>, Error> {
        let queue = match self.raw.0.get() {
            Some(q) => q,
            None => {
                // First use: make the link's queue (the driver may make it first, for a PDU).
                {
                    let mut inner = self.host.lock();
                    if let Some(link) = inner.links.0.get_mut(&self.info.handle) {
                        if Arc::ptr_eq(&link.raw, &self.raw) {
                            link.raw_sender();
                        }
                    }
                }
                match self.raw.0.get() {
                    Some(q) => q,
                    // The link is gone (its handle may already name another link).
                    None => {
                        return Err(self
                            .end_error()
                            .unwrap_or_else(|| Error::TransportClosed(self.host.closed_reason())))
                    }
                }
            }
        };
        let mut rx = queue.lock().await;
        let mut end = self.end_rx.clone();
        tokio::select! {
            biased;
            pdu = rx.recv() => match pdu {
                Some(p) => Ok(p),
                None => Err(self.end_error().unwrap_or_else(|| Error::TransportClosed(self.host.closed_reason()))),
            },
            _ = end.wait_for(|e| e.is_some()) => {
                // Deliver what arrived before the end first.
                match rx.try_recv() {
                    Ok(p) => Ok(p),
                    Err(_) => Err(self.end_error().unwrap_or_else(|| Error::TransportClosed(self.host.closed_reason()))),
                }
            }
        }
    }

    /// How the link ended, if it has.
    pub fn end(&self) -> Option<LinkEnd> {
        *self.end_rx.borrow()
    }

    /// Waits until the link ends and returns how.
    pub async fn closed(&self) -> LinkEnd {
        let mut end = self.end_rx.clone();
        let result = match end.wait_for(|e| e.is_some()).await {
            Ok(v) => v.unwrap_or(LinkEnd::TransportClosed),
            Err(_) => LinkEnd::TransportClosed,
        };
        result
    }

    /// Disconnects with `reason` (usually 0x13) and waits for Disconnection Complete; returns the
    /// reason the controller reported (0x16 Connection Terminated By Local Host).
    pub async fn disconnect(&self, reason: u8) -> Result<Reason, Error> {
        if let Some(e) = self.end_error() {
            return Err(e);
        }
        self.host.command(Command::Disconnect { handle: self.info.handle, reason }).await?;
        match tokio::time::timeout(COMMAND_TIMEOUT, self.closed()).await {
            Ok(LinkEnd::Disconnected(r)) => Ok(r),
            Ok(LinkEnd::TransportClosed) => Err(Error::TransportClosed(self.host.closed_reason())),
            Err(_) => Err(Error::Timeout("Disconnection Complete")),
        }
    }

    async fn wait_link_event<T>(
        &self,
        mut rx: broadcast::Receiver<LinkEvent>,
        what: &'static str,
        pick: impl Fn(&LinkEvent) -> Option<T>,
    ) -> Result<T, Error> {
        let wait = async {
            loop {
                match rx.recv().await {
                    Ok(ev) => {
                        if let Some(t) = pick(&ev) {
                            return Ok(t);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(self
                            .end_error()
                            .unwrap_or_else(|| Error::TransportClosed(self.host.closed_reason())))
                    }
                }
            }
        };
        tokio::select! {
            r = wait => r,
            end = self.closed() => Err(match end {
                LinkEnd::Disconnected(reason) => Error::Disconnected { reason },
                LinkEnd::TransportClosed => Error::TransportClosed(self.host.closed_reason()),
            }),
            _ = tokio::time::sleep(Duration::from_secs(30)) => Err(Error::Timeout(what)),
        }
    }

    /// The link's security: encryption, key size, and how the key was made (Core Vol 3 Part C
    /// §10.2); all off once the link is gone.
    pub fn security(&self) -> crate::security::LinkSecurity {
        self.host.lock().core.security(self.info.handle).unwrap_or_default()
    }

    /// The LE Security Mode 1 level the link has reached (Core Vol 3 Part C §10.2.1).
    pub fn security_level(&self) -> SecurityLevel {
        SecurityLevel::of(&self.security())
    }

    /// The bond with this link's peer, if there is one ([`crate::bonds`]).
    pub fn bond(&self) -> Option<crate::bonds::Bond> {
        let inner = self.host.lock();
        inner.security.as_ref().and_then(|s| s.bond_of(self.info.peer))
    }

    /// This side's LE Secure Connections out-of-band data for the next pairing on this link, to
    /// hand to the peer over another channel (NFC, a QR code) (Core Vol 3 Part H §2.3.5.6.4);
    /// `None` without a Security Manager or once the link is gone.
    pub fn local_oob_data(&self) -> Option<crate::security::OobData> {
        let mut inner = self.host.lock();
        let inner = &mut *inner;
        let rng = &mut inner.security.as_mut()?.rng;
        let smp = inner.links.0.get_mut(&self.info.handle)?.security.smp_mut()?;
        Some(smp.generate_local_oob(rng))
    }

    /// The peer's LE Secure Connections out-of-band data, received over another channel: the
    /// next pairing on this link uses the OOB method (authenticated) (Core Vol 3 Part H
    /// §2.3.5.6.4). `None` clears it.
    pub fn set_peer_oob_data(&self, data: Option<crate::security::OobData>) {
        let mut inner = self.host.lock();
        if let Some(smp) = inner.links.0.get_mut(&self.info.handle).and_then(|l| l.security.smp_mut()) {
            smp.set_peer_oob(data);
        }
    }

    /// Pairs now and waits for the outcome (Core Vol 3 Part H §2.3): as central with a Pairing
    /// Request; as peripheral with a Security Request, which the central may also answer by
    /// encrypting with a key from an earlier bond. With bonding the keys go to the bond store.
    /// Fails with [`Error::Pairing`] (the Pairing Failed reason), [`Error::Timeout`] (the 30 s
    /// SMP timeout) or [`Error::Disconnected`].
    pub async fn pair(&self) -> Result<crate::security::LinkSecurity, Error> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let shared = self.host.shared().clone();
        {
            let now = shared.now();
            let mut inner = self.host.lock();
            crate::security::start(&shared, &mut inner, self.info.handle, tx, now);
            inner.dispatch_jobs();
        }
        crate::driver::kick(&shared);
        rx.await.map_err(|_| Error::Cancelled("pairing"))?
    }

    /// Makes sure the link reaches `level` (Core Vol 3 Part C §10.2.1): at once if it has; as
    /// central by encrypting with the bond's key when the bond is good enough, otherwise by
    /// pairing (a peer that lost its bond is paired again). Fails with
    /// [`Error::InsufficientSecurity`] when pairing gave less than `level`.
    pub async fn secure(&self, level: SecurityLevel) -> Result<crate::security::LinkSecurity, Error> {
        if self.security_level() >= level {
            return Ok(self.security());
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let shared = self.host.shared().clone();
        {
            let now = shared.now();
            let mut inner = self.host.lock();
            crate::security::secure(&shared, &mut inner, self.info.handle, level, tx, now);
            inner.dispatch_jobs();
        }
        crate::driver::kick(&shared);
        let got = rx.await.map_err(|_| Error::Cancelled("pairing"))??;
        let reached = SecurityLevel::of(&got);
        if reached < level {
            return Err(Error::InsufficientSecurity { wanted: level, reached });
        }
        Ok(got)
    }

    /// Whether the link is encrypted and the key size in octets (0 when not encrypted)
    /// (Core Vol 4 Part E §7.7.8); `(false, 0)` once the link is gone.
    pub fn encryption(&self) -> (bool, u8) {
        match self.host.lock().core.security(self.info.handle) {
            Some(s) => (s.encrypted, s.key_size),
            None => (false, 0),
        }
    }

    /// As central, encrypts the link with a Long Term Key, or refreshes the key of an encrypted
    /// link (LE Enable Encryption, Core Vol 4 Part E §7.8.24), and waits for Encryption Change or
    /// Encryption Key Refresh Complete; returns the key size. `ltk` and `rand` are in HCI order
    /// (least significant octet first). A peer without the key fails it with
    /// [`Error::Command`] status 0x06 (PIN or Key Missing) and the link stays up, unencrypted;
    /// a peer with a different key ends the link (0x3D, [`Error::Disconnected`]).
    pub async fn start_encryption(&self, ltk: [u8; 16], rand: u64, ediv: u16) -> Result<u8, Error> {
        if let Some(e) = self.end_error() {
            return Err(e);
        }
        if self.info.role != Role::Central {
            return Err(Error::Host(gattling_proto::host::HostError::WrongRole(Role::Central)));
        }
        let events = self.events.subscribe();
        let handle = self.info.handle;
        self.host.command(Command::LeEnableEncryption { handle, rand, ediv, ltk }).await?;
        let (status, encrypted, key_size) = self
            .wait_link_event(events, "Encryption Change", |e| match *e {
                LinkEvent::Encryption { status, encrypted, key_size } => Some((status, encrypted, key_size)),
                LinkEvent::KeyRefresh { status } => Some((status, true, self.encryption().1)),
                _ => None,
            })
            .await?;
        if status != 0 {
            return Err(Error::Command { opcode: Opcode::LE_ENABLE_ENCRYPTION, name: "LE Enable Encryption", status });
        }
        if !encrypted {
            return Err(Error::Protocol("Encryption Change reported success with encryption off".into()));
        }
        Ok(key_size)
    }

    /// Waits for the link's next Encryption Change or Encryption Key Refresh Complete, in either
    /// role (Core Vol 4 Part E §7.7.8, §7.7.39): (HCI status, encrypted, key size). It listens
    /// from the moment it is called, not from its first poll, so an event that arrives before
    /// the returned future is awaited is not missed.
    pub fn encryption_changed(&self) -> impl std::future::Future<Output = Result<(u8, bool, u8), Error>> + '_ {
        let rx = self.events.subscribe();
        async move {
            self.wait_link_event(rx, "Encryption Change", |e| match *e {
                LinkEvent::Encryption { status, encrypted, key_size } => Some((status, encrypted, key_size)),
                LinkEvent::KeyRefresh { status } => Some((status, true, self.encryption().1)),
                _ => None,
            })
            .await
        }
    }

    /// As central, changes the connection parameters (Core Vol 4 Part E §7.8.18); returns the
    /// new interval, latency and timeout once the controller reports them.
    pub async fn update_parameters(&self, params: ConnParams) -> Result<(u16, u16, u16), Error> {
        let rx = self.events.subscribe();
        self.host.command(Command::LeConnectionUpdate { handle: self.info.handle, params }).await?;
        let (status, i, l, t) = self
            .wait_link_event(rx, "LE Connection Update Complete", |e| match *e {
                LinkEvent::Updated { status, interval, latency, supervision_timeout } => {
                    Some((status, interval, latency, supervision_timeout))
                }
                _ => None,
            })
            .await?;
        if status != 0 {
            return Err(Error::Command { opcode: Opcode::LE_CONNECTION_UPDATE, name: "LE Connection Update", status });
        }
        Ok((i, l, t))
    }

    /// As peripheral, asks the central for new parameters over L2CAP (Core Vol 3 Part A §4.20);
    /// returns whether the central accepted.
    pub async fn request_parameters(&self, params: ConnParams) -> Result<bool, Error> {
        let rx = self.events.subscribe();
        self.host.lock().core.request_connection_parameters(self.info.handle, &params)?;
        self.host.kick();
        self.wait_link_event(rx, "Connection Parameter Update Response", |e| match *e {
            LinkEvent::ParamAnswer { accepted } => Some(accepted),
            _ => None,
        })
        .await
    }

    /// Suggests a link-layer data length (Core Vol 4 Part E §7.8.33). The controller may keep the
    /// current length; a later Data Length Change event is logged if it changes.
    pub async fn set_data_length(&self, tx_octets: u16, tx_time: u16) -> Result<(), Error> {
        self.host.command(Command::LeSetDataLength { handle: self.info.handle, tx_octets, tx_time }).await.map(drop)
    }

    /// Waits for the next LE Data Length Change on this link: (max TX octets, max RX octets).
    pub async fn data_length_changed(&self) -> Result<(u16, u16), Error> {
        let rx = self.events.subscribe();
        self.wait_link_event(rx, "LE Data Length Change", |e| match *e {
            LinkEvent::DataLength { max_tx_octets, max_rx_octets } => Some((max_tx_octets, max_rx_octets)),
            _ => None,
        })
        .await
    }

    /// Requests PHYs and waits for LE PHY Update Complete (Core Vol 4 Part E §7.8.49,
    /// §7.7.65.12); returns the (TX, RX) PHYs in use.
    pub async fn set_phy(&self, tx: PhySet, rx: PhySet) -> Result<(Phy, Phy), Error> {
        let events = self.events.subscribe();
        let cmd =
            Command::LeSetPhy { handle: self.info.handle, all_phys: 0, tx_phys: tx.0, rx_phys: rx.0, phy_options: 0 };
        self.host.command(cmd).await?;
        let (status, tx, rx) = self
            .wait_link_event(events, "LE PHY Update Complete", |e| match *e {
                LinkEvent::Phy { status, tx_phy, rx_phy } => Some((status, tx_phy, rx_phy)),
                _ => None,
            })
            .await?;
        if status != 0 {
            return Err(Error::Command { opcode: Opcode::LE_SET_PHY, name: "LE Set PHY", status });
        }
        Ok((Phy::from_code(tx), Phy::from_code(rx)))
    }
}
