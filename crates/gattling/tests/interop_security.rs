//! Pairing interop (Core Vol 3 Part H): gattling against bumble 0.0.236's own Security Manager
//! (`tests/interop/peers/bumble_pairing.py`, notes in `tests/interop/peers/PAIRING.md`), in both
//! roles, on rootcanal 1.10.0 and on gattling's controller:
//! - LE Secure Connections Just Works, Numeric Comparison, Passkey Entry (each side typing);
//!   legacy Just Works and Passkey Entry (each side typing). Both sides must agree on the method
//!   (authenticated or not), the key (bumble's `pairing_complete` LTK against gattling's bond),
//!   EDIV and Rand for legacy, the key size and the identity addresses.
//! - A bonded reconnection encrypts with the stored LTK, without pairing, in both roles; a
//!   Security Request is answered with the bond in both roles, and with pairing without one.
//! - A read of a protected characteristic makes the reader pair (gattling's GATT client by its
//!   secure-and-retry, bumble's by the peer's `--pair-on-error`), then succeeds.
//! - A bonded client's CCCD is restored on reconnection (Core Vol 3 Part G §3.3.3.3).
//! - Refusals: a rejected numeric comparison, and gattling refusing Just Works when it
//!   requires MITM protection, reported with the same reason on both sides.
//! - Two gattling bugs found here are kept as ignored tests (see their comments):
//!   `gattling_server_refuses_with_the_codes_of_10_3_1` and
//!   `the_secured_notification_survives_an_immediate_disconnection`.
//!
//! Keys and values in bumble's events are lower-case hex, least significant octet first, the
//! order gattling keeps them in.

#[macro_use]
mod support;

use gattling::bonds::{Bond, BondStore, LongTermKey};
use gattling::gatt::{CharacteristicDef, GattServer, Permissions, Properties};
use gattling::proto::att::ErrorCode;
use gattling::proto::gap::ad::{flags, AdvData, AdvDataBuilder};
use gattling::proto::gap::privacy::IdentityAddress;
use gattling::proto::gap::{Address, AddressType, BdAddr};
use gattling::proto::gatt::client::ClientError;
use gattling::proto::gatt::ServiceDef;
use gattling::proto::hci::status;
use gattling::proto::host::Role;
use gattling::proto::Uuid;
use gattling::security::{BoxFuture, IoCapability, LinkSecurity, PairingDelegate, SecurityOptions};
use gattling::{
    AdvertisingKind, AdvertisingOptions, ClientOptions, ConnectOptions, Connection, Error, GattClient, Host,
    HostOptions, MemoryBondStore, Notification, SecurityLevel,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use support::{skipped, static_random, Bed, Peer};
use tokio::sync::{broadcast, mpsc, watch};

/// The longest one step may take; pairing itself is bounded by the SMP timeout (30 s, §3.4).
const STEP: Duration = Duration::from_secs(20);
/// The peer's own deadline for a whole run (seconds).
const PEER_TIMEOUT: &str = "40";

/// gattling's test service for a bumble client.
const G_SERVICE: u128 = 0x7c1d0100_2b3a_4e5f_8a9b_0c1d2e3f4a5b;
/// READ | NOTIFY, reading needs an encrypted link; it has a CCCD.
const G_ENC: u128 = 0x7c1d0101_2b3a_4e5f_8a9b_0c1d2e3f4a5b;
/// READ, reading needs an authenticated (MITM) key.
const G_AUTH: u128 = 0x7c1d0102_2b3a_4e5f_8a9b_0c1d2e3f4a5b;

// ------------------------------------------------------------------------------ helpers

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f).await.unwrap_or_else(|_| panic!("{what}: not within {STEP:?}"))
}

/// How the two users take part (Core Vol 3 Part H §2.3.5.1, Tables 2.7 and 2.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    /// Neither side has IO: Just Works.
    JustWorks,
    /// Both DisplayYesNo: Numeric Comparison (Secure Connections only).
    Numeric,
    /// gattling KeyboardOnly, bumble DisplayOnly: gattling types bumble's passkey.
    GattlingTypes,
    /// gattling DisplayOnly, bumble KeyboardOnly: bumble types gattling's passkey.
    BumbleTypes,
}

/// One pairing: Secure Connections or legacy, and the method.
#[derive(Clone, Copy, Debug)]
struct Case {
    sc: bool,
    method: Method,
}

impl Case {
    fn authenticated(self) -> bool {
        self.method != Method::JustWorks
    }

    /// The level both sides must reach with a 16-octet key (Core Vol 3 Part C §10.2.1).
    fn level(self) -> SecurityLevel {
        match (self.authenticated(), self.sc) {
            (false, _) => SecurityLevel::Encrypted,
            (true, false) => SecurityLevel::Authenticated,
            (true, true) => SecurityLevel::SecureConnections,
        }
    }

    /// gattling's options for this case (bonds in `store`, the user behind `delegate`).
    fn options(self, delegate: Arc<User>, store: Arc<MemoryBondStore>) -> SecurityOptions {
        let io = match self.method {
            Method::JustWorks => IoCapability::NoInputNoOutput,
            Method::Numeric => IoCapability::DisplayYesNo,
            Method::GattlingTypes => IoCapability::KeyboardOnly,
            Method::BumbleTypes => IoCapability::DisplayOnly,
        };
        SecurityOptions {
            io_capability: io,
            mitm: self.authenticated(),
            secure_connections: self.sc,
            delegate,
            bonds: store,
            ..SecurityOptions::default()
        }
    }

    /// The peer's security options for this case (`passkey_file`: where bumble's typed passkey comes from).
    fn peer_args(self, passkey_file: &Path) -> Vec<String> {
        let mut a: Vec<String> = match self.method {
            Method::JustWorks => vec!["--io".into(), "no-io".into()],
            Method::Numeric => vec!["--io".into(), "display-yesno".into(), "--mitm".into()],
            Method::GattlingTypes => vec!["--io".into(), "display-only".into(), "--mitm".into()],
            Method::BumbleTypes => vec![
                "--io".into(),
                "keyboard-only".into(),
                "--mitm".into(),
                "--passkey-file".into(),
                passkey_file.display().to_string(),
            ],
        };
        if !self.sc {
            a.push("--no-sc".into());
        }
        a
    }
}

/// gattling's user: reports every number it is shown, types what the test hands it, confirms
/// every numeric comparison (the test compares the numbers).
struct User {
    shown: mpsc::UnboundedSender<u32>,
    typed: watch::Receiver<Option<u32>>,
}

/// The test's end of [`User`].
struct UserSide {
    shown: mpsc::UnboundedReceiver<u32>,
    typed: watch::Sender<Option<u32>>,
}

impl PairingDelegate for User {
    fn confirm_numeric(&self, _link: gattling::security::PairingLink, number: u32) -> BoxFuture<bool> {
        let _ = self.shown.send(number);
        Box::pin(async { true })
    }
    fn display_passkey(&self, _link: gattling::security::PairingLink, passkey: u32) {
        let _ = self.shown.send(passkey);
    }
    fn request_passkey(&self, _link: gattling::security::PairingLink) -> BoxFuture<Option<u32>> {
        let mut typed = self.typed.clone();
        Box::pin(async move { typed.wait_for(Option::is_some).await.ok().and_then(|v| *v) })
    }
}

fn user() -> (Arc<User>, UserSide) {
    let (shown_tx, shown) = mpsc::unbounded_channel();
    let (typed, typed_rx) = watch::channel(None);
    (Arc::new(User { shown: shown_tx, typed: typed_rx }), UserSide { shown, typed })
}

/// A file path private to this test run (removed on drop).
struct TempPath(PathBuf);

impl TempPath {
    fn new(what: &str) -> TempPath {
        let unique = static_random();
        TempPath(std::env::temp_dir().join(format!("gattling-iop-{}-{what}-{}", std::process::id(), hex(&unique.0))))
    }
    fn arg(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One side of the interop: a gattling host with its own bond store and user.
struct Gattling {
    host: Host,
    store: Arc<MemoryBondStore>,
    user: UserSide,
    notes: broadcast::Receiver<Notification>,
}

async fn gattling_on(rc: &Bed, case: Case) -> Gattling {
    let (delegate, user) = user();
    let store = Arc::new(MemoryBondStore::new(32));
    let options = HostOptions {
        random_address: Some(static_random()),
        security: case.options(delegate, store.clone()),
        ..HostOptions::default()
    };
    let host = Host::open_with(&rc.transport(), options).await.expect("gattling host on the test bed");
    let notes = host.notifications();
    Gattling { host, store, user, notes }
}

impl Gattling {
    /// The bond kept for the peer at `addr` (static random).
    fn bond_with(&self, addr: &str) -> Bond {
        let id = identity(addr);
        self.store.get(&id).unwrap_or_else(|| panic!("no bond with {id}: {:?}", self.store.list()))
    }

    /// Waits for the host's next Secured notification (the bond is stored by then); a pairing
    /// failure is a test failure.
    async fn secured(&mut self) -> (LinkSecurity, bool) {
        within("Secured notification", async {
            loop {
                match self.notes.recv().await {
                    Ok(Notification::Secured { security, bonded, .. }) => return (security, bonded),
                    Ok(Notification::PairingFailed { reason, remote, .. }) => {
                        panic!("gattling reports pairing failed: reason {reason:#04x}, remote {remote}")
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("notifications: {e}"),
                }
            }
        })
        .await
    }

    /// Forgets the notifications so far (the next [`Gattling::secured`] is a new one).
    fn drain_notifications(&mut self) {
        while matches!(self.notes.try_recv(), Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_))) {}
    }

    /// No number was shown to gattling's user since the last look (no pairing ran).
    fn assert_nothing_shown(&mut self, when: &str) {
        assert!(self.user.shown.try_recv().is_err(), "{when}: gattling's user was asked again (pairing ran)");
    }

    async fn advertise(&self, name: &str) {
        let data = AdvDataBuilder::new().flags(flags::LE_GENERAL_ONLY).name(name).build().expect("adv data");
        self.host
            .advertise(&AdvertisingOptions { kind: AdvertisingKind::Connectable, data, ..Default::default() })
            .await
            .expect("advertise");
    }

    async fn accept(&self) -> Connection {
        within("incoming connection", self.host.accept()).await.expect("accept")
    }

    /// Scans for the advertiser named `name` and connects to it.
    async fn connect_to(&self, name: &str) -> Connection {
        let mut scan = self.host.scan(Default::default()).await.expect("scan");
        let found = within(&format!("scan for {name}"), async {
            while let Some(r) = scan.next().await {
                if AdvData::parse_lenient(&r.data).local_name() == Some(name) {
                    return r;
                }
            }
            panic!("scan ended before {name} was found");
        })
        .await;
        scan.stop().await.expect("stop scan");
        let conn = self.host.connect(found.address, ConnectOptions::default()).await.expect("connect to bumble");
        assert_eq!(conn.role(), Role::Central);
        conn
    }

    fn address(&self) -> String {
        self.host.address().addr.to_string()
    }
}

fn identity(addr: &str) -> IdentityAddress {
    let mut b = [0u8; 6];
    let parts: Vec<&str> = addr.split(':').collect();
    assert_eq!(parts.len(), 6, "address {addr}");
    for (i, p) in parts.iter().enumerate() {
        b[5 - i] = u8::from_str_radix(p, 16).expect("hex octet");
    }
    let a = Address { addr: BdAddr(b), kind: AddressType::Random };
    IdentityAddress::from_address(a).expect("a static random identity")
}

/// A fresh static random address for a bumble peer ("XX:XX:XX:XX:XX:XX").
fn peer_address() -> String {
    static_random().to_string()
}

/// Starts bumble_pairing.py on `rc` with `args` (plus transport and deadline) and waits for "ready".
async fn start_peer(rc: &Bed, args: &[String]) -> (Peer, Value) {
    let transport = rc.transport();
    let mut all: Vec<&str> = vec!["--transport", &transport, "--timeout", PEER_TIMEOUT];
    all.extend(args.iter().map(String::as_str));
    let mut peer = Peer::start("bumble_pairing.py", &all);
    let ready = peer.expect("ready", STEP).await;
    (peer, ready)
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Plays both users' part of `method` while pairing runs: hands the displayed passkey to the
/// side that types it, checks that Numeric Comparison showed one number on both sides.
async fn play_users(method: Method, peer: &mut Peer, user: &mut UserSide, passkey_file: &TempPath) {
    match method {
        Method::JustWorks => {}
        Method::Numeric => {
            let theirs = peer.expect("numeric_comparison", STEP).await["number"].as_u64();
            let ours = within("gattling's comparison value", user.shown.recv()).await.expect("shown");
            assert_eq!(theirs, Some(u64::from(ours)), "both users compare the same six digits (§2.3.5.6.2)");
        }
        Method::GattlingTypes => {
            let shown = peer.expect("passkey_display", STEP).await["passkey"].as_u64().expect("passkey");
            let passkey = u32::try_from(shown).expect("six digits");
            assert!(passkey <= 999_999);
            user.typed.send_replace(Some(passkey));
        }
        Method::BumbleTypes => {
            let passkey = within("gattling's passkey", user.shown.recv()).await.expect("shown");
            assert!(passkey <= 999_999);
            // Written whole, then renamed: the peer never reads half a number.
            let partial = passkey_file.0.with_extension("partial");
            std::fs::write(&partial, passkey.to_string()).expect("passkey file");
            std::fs::rename(&partial, &passkey_file.0).expect("passkey file");
            peer.expect("passkey_request", STEP).await;
        }
    }
}

/// The key a reconnection encrypts with, as bumble reports it in `pairing_complete`: the Secure
/// Connections LTK, or in legacy pairing the one the peripheral distributed (§2.4.4.2). In
/// gattling's bond that is `ltk` (SC; legacy as central) or `local_ltk` (legacy as peripheral).
fn reconnection_key(bond: &Bond, sc: bool, gattling_role: Role) -> LongTermKey {
    let key = match (sc, gattling_role) {
        (true, _) | (false, Role::Central) => bond.ltk,
        (false, Role::Peripheral) => bond.local_ltk,
    };
    key.unwrap_or_else(|| panic!("the bond has no reconnection key: {bond:?}"))
}

/// Both sides agree on what pairing produced.
fn assert_agreement(
    case: Case,
    role: Role,
    done: &Value,
    security: &LinkSecurity,
    bond: &Bond,
    gattling_addr: &str,
    bumble_addr: &str,
) {
    let what = format!("{case:?}, gattling {role:?}: bumble {done}, gattling {security:?} {bond:?}");
    // The method and the key size both sides ended with.
    assert_eq!(done["sc"], case.sc, "{what}");
    assert_eq!(done["authenticated"], case.authenticated(), "{what}");
    assert_eq!(done["bonded"], true, "{what}");
    assert_eq!(done["key_size"], 16, "{what}");
    assert!(security.encrypted, "{what}");
    assert_eq!(security.key_size, 16, "{what}");
    assert_eq!((security.authenticated, security.secure_connections), (case.authenticated(), case.sc), "{what}");
    assert_eq!(SecurityLevel::of(security), case.level(), "{what}");
    assert_eq!((bond.secure_connections, bond.authenticated, bond.key_size), (case.sc, case.authenticated(), 16));
    // One key.
    let key = reconnection_key(bond, case.sc, role);
    assert_eq!(done["ltk"].as_str(), Some(hex(&key.key).as_str()), "the LTK differs: {what}");
    if case.sc {
        assert_eq!((key.ediv, key.rand), (0, [0; 8]), "an SC LTK has EDIV and Rand 0 (§2.4.4.2)");
    } else {
        assert_eq!(done["ediv"], key.ediv, "EDIV differs: {what}");
        assert_eq!(done["rand"].as_str(), Some(hex(&key.rand).as_str()), "Rand differs: {what}");
    }
    // The identities each side distributed (§3.6.5): bumble's static random address, gattling's.
    assert!(bond.peer.addr.to_string().eq_ignore_ascii_case(bumble_addr), "{what}");
    let theirs = done["peer_identity"].as_str().unwrap_or_default();
    assert!(theirs.eq_ignore_ascii_case(gattling_addr), "bumble's view of gattling's identity: {what}");
    assert_eq!(done["peer_identity_type"], "random", "{what}");
}

// ---------------------------------------------------- pairing, gattling central / bumble peripheral

/// gattling central pairs with a bumble peripheral: returns the pieces for a later run.
async fn central_pairs(rc: &Bed, g: &mut Gattling, case: Case, name: &str, extra: &[String]) -> (Peer, Connection) {
    let passkey_file = TempPath::new("passkey");
    let bumble_addr = peer_address();
    let mut args = strings(&["--role", "peripheral", "--name", name, "--address", &bumble_addr]);
    args.extend(case.peer_args(&passkey_file.0));
    args.extend_from_slice(extra);
    let (mut peer, ready) = start_peer(rc, &args).await;
    assert!(ready["address"].as_str().is_some_and(|a| a.eq_ignore_ascii_case(&bumble_addr)), "{ready}");
    let conn = g.connect_to(name).await;
    peer.expect("connected", STEP).await;

    let pairing = tokio::spawn({
        let conn = conn.clone();
        async move { conn.pair().await }
    });
    play_users(case.method, &mut peer, &mut g.user, &passkey_file).await;
    let security = within("gattling's pair()", pairing).await.expect("pair task").expect("gattling paired");
    let done = peer.expect("pairing_complete", STEP).await;
    assert_eq!(conn.security_level(), case.level());
    let bond = g.bond_with(&bumble_addr);
    let from_conn = conn.bond().expect("Connection::bond() after pairing");
    assert_eq!(from_conn.ltk, bond.ltk, "Connection::bond() is the stored bond");
    assert_agreement(case, Role::Central, &done, &security, &bond, &g.address(), &bumble_addr);
    g.assert_nothing_shown("after pairing");
    (peer, conn)
}

/// Ends a gattling central's link to a bumble peripheral and the peripheral with it.
async fn central_hangs_up(mut peer: Peer, conn: Connection) {
    assert_eq!(
        conn.disconnect(status::REMOTE_USER_TERMINATED).await.expect("disconnect"),
        status::LOCAL_HOST_TERMINATED
    );
    let d = peer.expect("disconnected", STEP).await;
    assert_eq!(d["by"], "remote", "{d}");
    peer.finish().await;
}

async fn gattling_central_pairs(rc: Bed, case: Case) {
    let mut g = gattling_on(&rc, case).await;
    let (peer, conn) = central_pairs(&rc, &mut g, case, "bp-c", &[]).await;
    central_hangs_up(peer, conn).await;
}

// ---------------------------------------------------- pairing, gattling peripheral / bumble central

/// A bumble central pairs with the advertising gattling peripheral; gattling hangs up once both
/// sides are checked (see `the_secured_notification_survives_an_immediate_disconnection` for
/// why the central does not hang up itself). Returns the bumble address.
async fn peripheral_pairs(rc: &Bed, g: &mut Gattling, case: Case, extra: &[String]) -> String {
    let passkey_file = TempPath::new("passkey");
    let bumble_addr = peer_address();
    g.advertise("gattling-pairing").await;
    let gattling_addr = g.address();
    let mut args = strings(&["--role", "central", "--peer", &gattling_addr, "--address", &bumble_addr, "--pair"]);
    args.extend(case.peer_args(&passkey_file.0));
    args.extend_from_slice(extra);
    let (mut peer, _) = start_peer(rc, &args).await;
    let conn = g.accept().await;
    assert_eq!(conn.role(), Role::Peripheral);
    assert!(conn.peer().addr.to_string().eq_ignore_ascii_case(&bumble_addr));
    peer.expect("connected", STEP).await;
    play_users(case.method, &mut peer, &mut g.user, &passkey_file).await;
    let (security, bonded) = g.secured().await;
    assert!(bonded, "gattling stored the bond");
    let done = peer.expect("pairing_complete", STEP).await;
    let bond = g.bond_with(&bumble_addr);
    assert_agreement(case, Role::Peripheral, &done, &security, &bond, &gattling_addr, &bumble_addr);
    assert_eq!(conn.security(), security, "the link's state is what the notification said");
    assert_eq!(conn.security_level(), case.level());
    let from_conn = conn.bond().expect("Connection::bond() after pairing");
    assert_eq!(
        (from_conn.ltk, from_conn.local_ltk),
        (bond.ltk, bond.local_ltk),
        "Connection::bond() is the stored bond"
    );
    peer.expect("done", STEP).await;
    peripheral_hangs_up(peer, conn).await;
    g.assert_nothing_shown("after pairing");
    bumble_addr
}

/// Ends a gattling peripheral's link to a bumble central and the central with it.
async fn peripheral_hangs_up(mut peer: Peer, conn: Connection) {
    assert_eq!(
        conn.disconnect(status::REMOTE_USER_TERMINATED).await.expect("disconnect"),
        status::LOCAL_HOST_TERMINATED
    );
    let d = peer.expect("disconnected", STEP).await;
    assert_eq!(
        (d["by"].as_str(), d["reason"].as_u64()),
        (Some("remote"), Some(u64::from(status::REMOTE_USER_TERMINATED))),
        "{d}"
    );
    peer.finish().await;
}

async fn gattling_peripheral_pairs(rc: Bed, case: Case) {
    let mut g = gattling_on(&rc, case).await;
    peripheral_pairs(&rc, &mut g, case, &[]).await;
}

/// One test per method and variant, in each role, on each controller.
macro_rules! pairing_matrix {
    ($($name:ident: $sc:expr, $method:ident;)*) => {
        mod gattling_central {
            use super::*;
            $(
                async fn $name(rc: Bed) {
                    gattling_central_pairs(rc, Case { sc: $sc, method: Method::$method }).await
                }
            )*
            on_each_controller!($($name),*);
        }
        mod gattling_peripheral {
            use super::*;
            $(
                async fn $name(rc: Bed) {
                    gattling_peripheral_pairs(rc, Case { sc: $sc, method: Method::$method }).await
                }
            )*
            on_each_controller!($($name),*);
        }
    };
}

pairing_matrix! {
    sc_just_works: true, JustWorks;
    sc_numeric_comparison: true, Numeric;
    sc_passkey_gattling_types: true, GattlingTypes;
    sc_passkey_bumble_types: true, BumbleTypes;
    legacy_just_works: false, JustWorks;
    legacy_passkey_gattling_types: false, GattlingTypes;
    legacy_passkey_bumble_types: false, BumbleTypes;
}

// ------------------------------------------------------------------------ bonded reconnection

/// The kinds of bond a reconnection is tested with: authenticated SC, unauthenticated legacy.
const SC_NUMERIC: Case = Case { sc: true, method: Method::Numeric };
const LEGACY_JUST_WORKS: Case = Case { sc: false, method: Method::JustWorks };

/// gattling central, bonded with a bumble peripheral (bumble's keys in a keystore file),
/// reconnects to a restarted peripheral: `secure()` encrypts with the bond's LTK, no pairing on
/// either side, and bumble serves the value that needs the bond's security.
async fn gattling_central_reconnects_bonded(rc: Bed, case: Case) {
    let keystore = TempPath::new("keystore.json");
    let mut g = gattling_on(&rc, case).await;
    let ks = strings(&["--keystore", &keystore.arg()]);
    let (peer, conn) = central_pairs(&rc, &mut g, case, "bp-bond-1", &ks).await;
    let bumble_addr = identity_string(&conn);
    central_hangs_up(peer, conn).await;

    let mut args = strings(&["--role", "peripheral", "--name", "bp-bond-2", "--address", &bumble_addr]);
    args.extend(case.peer_args(Path::new("/nonexistent")));
    args.extend(ks);
    let (mut peer, ready) = start_peer(&rc, &args).await;
    let conn = g.connect_to("bp-bond-2").await;
    peer.expect("connected", STEP).await;
    let security = within("secure() with the bond", conn.secure(case.level())).await.expect("encrypted with the bond");
    let first = peer.expect_any(&["pairing_started", "encryption_change"], STEP).await;
    assert_eq!(first["event"], "encryption_change", "the bond's key, no pairing: {first}");
    assert_eq!((first["encrypted"].as_bool(), first["key_size"].as_u64()), (Some(true), Some(16)), "{first}");
    assert!(security.encrypted && security.key_size == 16, "{security:?}");
    assert_eq!((security.authenticated, security.secure_connections), (case.authenticated(), case.sc));
    assert_eq!(conn.security_level(), case.level());
    g.assert_nothing_shown("bonded reconnection");

    // bumble takes the link's key as its stored bond's: it serves the value that needs it.
    let (handle, value) = if case.authenticated() {
        (&ready["handles"]["auth"], "authenticated")
    } else {
        (&ready["handles"]["enc"], "encrypted")
    };
    let handle = u16::try_from(handle.as_u64().expect("handle")).expect("handle");
    let client = GattClient::new(conn.clone(), ClientOptions::default()).await.expect("client");
    assert_eq!(within("read", client.read(handle)).await.expect("read over the bonded link"), value.as_bytes());
    central_hangs_up(peer, conn).await;

    // The peripheral asks with a Security Request; gattling's bond is good enough for its MITM
    // bit, so gattling encrypts with it instead of pairing (Core Vol 3 Part H §2.4.6).
    g.drain_notifications();
    let mut args = strings(&["--role", "peripheral", "--name", "bp-bond-3", "--address", &bumble_addr, "--pair"]);
    args.extend(case.peer_args(Path::new("/nonexistent")));
    args.extend(strings(&["--keystore", &keystore.arg()]));
    let (mut peer, _) = start_peer(&rc, &args).await;
    let conn = g.connect_to("bp-bond-3").await;
    let (security, bonded) = g.secured().await;
    assert!(bonded, "secured with the bond");
    assert_eq!(SecurityLevel::of(&security), case.level(), "{security:?}");
    let first = peer.expect_any(&["pairing_started", "encryption_change"], STEP).await;
    assert_eq!(first["event"], "encryption_change", "the bond's key, no pairing: {first}");
    assert_eq!((first["encrypted"].as_bool(), first["key_size"].as_u64()), (Some(true), Some(16)), "{first}");
    peer.expect("done", STEP).await;
    g.assert_nothing_shown("Security Request answered with the bond");
    central_hangs_up(peer, conn).await;
}

/// A bumble peripheral asks for security (Security Request, MITM) on a fresh link: gattling,
/// central without a bond, pairs (Numeric Comparison) without being told to (§2.4.6).
async fn a_bumble_security_request_makes_gattling_pair(rc: Bed) {
    let case = SC_NUMERIC;
    let passkey_file = TempPath::new("passkey");
    let mut g = gattling_on(&rc, case).await;
    let bumble_addr = peer_address();
    let mut args = strings(&["--role", "peripheral", "--name", "bp-asks", "--address", &bumble_addr, "--pair"]);
    args.extend(case.peer_args(&passkey_file.0));
    let (mut peer, _) = start_peer(&rc, &args).await;
    let conn = g.connect_to("bp-asks").await;
    play_users(case.method, &mut peer, &mut g.user, &passkey_file).await;
    let (security, bonded) = g.secured().await;
    assert!(bonded);
    let done = peer.expect("pairing_complete", STEP).await;
    let bond = g.bond_with(&bumble_addr);
    assert_agreement(case, Role::Central, &done, &security, &bond, &g.address(), &bumble_addr);
    peer.expect("done", STEP).await;
    central_hangs_up(peer, conn).await;
}

fn identity_string(conn: &Connection) -> String {
    conn.bond().expect("bonded").peer.addr.to_string()
}

/// gattling peripheral, bonded with a bumble central: the central reconnects and encrypts with
/// its stored key (gattling answers the LTK request from the bond), then on a third link
/// gattling asks with a Security Request and bumble answers by encrypting with the bond.
async fn gattling_peripheral_reconnects_bonded(rc: Bed, case: Case) {
    let keystore = TempPath::new("keystore.json");
    let mut g = gattling_on(&rc, case).await;
    let ks = strings(&["--keystore", &keystore.arg()]);
    let bumble_addr = peripheral_pairs(&rc, &mut g, case, &ks).await;
    let gattling_addr = g.address();
    let bonded_run = |steps: &[&str]| {
        let mut args = strings(&["--role", "central", "--peer", &gattling_addr, "--address", &bumble_addr]);
        args.extend(strings(steps));
        args.extend(case.peer_args(Path::new("/nonexistent")));
        args.extend(ks.clone());
        args
    };

    // The central encrypts with its stored key.
    g.advertise("gattling-pairing").await;
    let (mut peer, _) = start_peer(&rc, &bonded_run(&["--encrypt"])).await;
    let conn = g.accept().await;
    let first = peer.expect_any(&["pairing_started", "encryption_change"], STEP).await;
    assert_eq!(first["event"], "encryption_change", "the bond's key, no pairing: {first}");
    assert_eq!((first["encrypted"].as_bool(), first["key_size"].as_u64()), (Some(true), Some(16)), "{first}");
    let (security, bonded) = g.secured().await;
    assert!(bonded);
    assert_eq!(SecurityLevel::of(&security), case.level(), "{security:?}");
    assert_eq!(security.key_size, 16);
    assert_eq!(conn.security(), security, "the link's state is what gattling reported");
    peer.expect("done", STEP).await;
    peripheral_hangs_up(peer, conn).await;

    // gattling asks for security; bumble's stored key is good enough (§2.4.6): it encrypts.
    g.advertise("gattling-pairing").await;
    let (mut peer, _) = start_peer(&rc, &bonded_run(&["--wait-security"])).await;
    let conn = g.accept().await;
    peer.expect("connected", STEP).await;
    let security = within("pair() as peripheral", conn.pair()).await.expect("secured by the central's bond");
    let request = peer.expect("security_request", STEP).await;
    assert_eq!(request["action"], "encrypt", "{request}");
    let mitm = request["auth_req"].as_u64().expect("auth_req") & 0x04 != 0;
    assert_eq!(mitm, case.authenticated(), "the Security Request asks for MITM as configured (§3.6.7): {request}");
    let first = peer.expect_any(&["pairing_started", "encryption_change"], STEP).await;
    assert_eq!(first["event"], "encryption_change", "{first}");
    assert_eq!(SecurityLevel::of(&security), case.level(), "{security:?}");
    assert_eq!(conn.security(), security, "the link's state is what gattling reported");
    peer.expect("done", STEP).await;
    peripheral_hangs_up(peer, conn).await;
    g.assert_nothing_shown("bonded reconnections");
}

async fn gattling_central_reconnects_with_an_sc_bond(rc: Bed) {
    gattling_central_reconnects_bonded(rc, SC_NUMERIC).await
}

async fn gattling_central_reconnects_with_a_legacy_bond(rc: Bed) {
    gattling_central_reconnects_bonded(rc, LEGACY_JUST_WORKS).await
}

async fn gattling_peripheral_reconnects_with_an_sc_bond(rc: Bed) {
    gattling_peripheral_reconnects_bonded(rc, SC_NUMERIC).await
}

async fn gattling_peripheral_reconnects_with_a_legacy_bond(rc: Bed) {
    gattling_peripheral_reconnects_bonded(rc, LEGACY_JUST_WORKS).await
}

on_each_controller!(
    a_bumble_security_request_makes_gattling_pair,
    gattling_central_reconnects_with_an_sc_bond,
    gattling_central_reconnects_with_a_legacy_bond,
    gattling_peripheral_reconnects_with_an_sc_bond,
    gattling_peripheral_reconnects_with_a_legacy_bond,
);

/// A bumble central that pairs and hangs up at once (bumble's `pair()` returns once the
/// controller took its last key PDU): gattling's Secured notification must still describe the
/// link the pairing produced (encrypted, 16-octet key), every time.
///
/// KNOWN GATTLING BUG (ignored until fixed). Intermittent: it needs the last key PDU and the
/// Disconnection Complete in one read, which happens when the host is slow (under load). It
/// failed once in the pairing matrix of this file, when bumble still hung up at once there;
/// run alone, these 25 rounds usually pass, so a pass here does not prove a fix. The runtime
/// builds `Notification::Secured.security` (and the `pair()` waiters' result) from
/// `core.security(handle)` when pairing completes (`security::completed`). When the core has
/// already processed the Disconnection Complete that came in the same read as the last key
/// PDU, that is `None` and the notification says `LinkSecurity::default()`: not encrypted,
/// key size 0, although the bond it stored is right.
async fn the_secured_notification_survives_an_immediate_disconnection(rc: Bed) {
    let case = Case { sc: true, method: Method::JustWorks };
    let mut g = gattling_on(&rc, case).await;
    let gattling_addr = g.address();
    for round in 0..25 {
        g.advertise("gattling-hangup").await;
        let args = strings(&[
            "--role",
            "central",
            "--peer",
            &gattling_addr,
            "--address",
            &peer_address(),
            "--io",
            "no-io",
            "--pair",
            "--disconnect-after",
            "0",
        ]);
        // No accept(): the link may be gone before it would return.
        let (mut peer, _) = start_peer(&rc, &args).await;
        let (security, bonded) = g.secured().await;
        assert!(bonded, "round {round}");
        assert!(security.encrypted && security.key_size == 16, "round {round}: Secured says {security:?}");
        peer.expect("pairing_complete", STEP).await;
        peer.expect("disconnected", STEP).await;
        peer.finish().await;
    }
}

mod the_secured_notification_survives_an_immediate_disconnection {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rootcanal() {
        if super::skipped() {
            return;
        }
        super::the_secured_notification_survives_an_immediate_disconnection(super::Bed::rootcanal()).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gattling_controller() {
        if super::skipped() {
            return;
        }
        super::the_secured_notification_survives_an_immediate_disconnection(super::Bed::gattling().await).await
    }
}

// --------------------------------------------------------------------------- refusals

/// How a pairing attempt ended on gattling's side, whichever role it had.
async fn gattling_failure(g: &mut Gattling) -> (u8, bool) {
    within("PairingFailed notification", async {
        loop {
            match g.notes.recv().await {
                Ok(Notification::PairingFailed { reason, remote, .. }) => return (reason, remote),
                Ok(Notification::Secured { security, .. }) => panic!("paired although it must fail: {security:?}"),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("notifications: {e}"),
            }
        }
    })
    .await
}

/// Runs a pairing that must fail in both roles: gattling (`case`'s options) against bumble
/// (`peer_io` and `extra`), gattling central then gattling peripheral. gattling must report
/// `reason` (sent by the peer when `remote`), bumble the same reason; nothing is stored and
/// the link stays up, unencrypted.
async fn pairing_fails_in_both_roles(
    rc: &Bed,
    case: Case,
    peer_args: &[&str],
    reason: gattling::security::PairingFailure,
    remote: bool,
) {
    let mut g = gattling_on(rc, case).await;
    let code = u64::from(reason.to_u8());

    // gattling central.
    let mut args = strings(&["--role", "peripheral", "--name", "bp-refusal", "--address", &peer_address()]);
    args.extend(strings(peer_args));
    let (mut peer, _) = start_peer(rc, &args).await;
    let conn = g.connect_to("bp-refusal").await;
    peer.expect("connected", STEP).await;
    match within("pair()", conn.pair()).await {
        Err(Error::Pairing { reason: r, remote: m }) if r == reason && m == remote => {}
        other => panic!("gattling central: expected {reason:?} (remote {remote}), got {other:?}"),
    }
    assert_eq!(gattling_failure(&mut g).await, (reason.to_u8(), remote));
    let failed = peer.expect("pairing_failed", STEP).await;
    assert_eq!(failed["reason"], code, "{failed}");
    assert!(!conn.security().encrypted && conn.bond().is_none());
    assert!(g.store.list().is_empty(), "nothing stored");
    central_hangs_up(peer, conn).await;

    // gattling peripheral.
    g.advertise("gattling-refusal").await;
    let gattling_addr = g.address();
    let mut args = strings(&["--role", "central", "--peer", &gattling_addr, "--address", &peer_address()]);
    args.extend(strings(&["--pair"]));
    args.extend(strings(peer_args));
    let (mut peer, _) = start_peer(rc, &args).await;
    let conn = g.accept().await;
    assert_eq!(gattling_failure(&mut g).await, (reason.to_u8(), remote), "gattling peripheral");
    let failed = peer.expect("pairing_failed", STEP).await;
    assert_eq!(failed["reason"], code, "{failed}");
    peer.expect("done", STEP).await;
    peripheral_hangs_up(peer, conn).await;
    assert!(g.store.list().is_empty(), "nothing stored");
}

/// bumble's user rejects the numeric comparison: Numeric Comparison Failed (0x0C, §3.5.5)
/// from bumble, in either role.
async fn a_rejected_numeric_comparison_fails_pairing(rc: Bed) {
    let args = ["--io", "display-yesno", "--mitm", "--numeric", "reject"];
    pairing_fails_in_both_roles(
        &rc,
        SC_NUMERIC,
        &args,
        gattling::security::PairingFailure::NumericComparisonFailed,
        true,
    )
    .await
}

/// gattling requires MITM protection and bumble has no IO, so only Just Works is possible:
/// gattling refuses with Authentication Requirements (0x03, §2.3.5.1), in either role.
async fn gattling_requiring_mitm_refuses_just_works(rc: Bed) {
    let args = ["--io", "no-io"];
    pairing_fails_in_both_roles(
        &rc,
        SC_NUMERIC,
        &args,
        gattling::security::PairingFailure::AuthenticationRequirements,
        false,
    )
    .await
}

on_each_controller!(a_rejected_numeric_comparison_fails_pairing, gattling_requiring_mitm_refuses_just_works);

// ------------------------------------------------------------- security-driven reads

fn att_error(r: &Result<Vec<u8>, Error>) -> Option<ErrorCode> {
    match r {
        Err(Error::Gatt(ClientError::Att { code, .. })) => Some(*code),
        _ => None,
    }
}

/// gattling's client reads bumble's encrypted value. With its secure-and-retry off the read is
/// refused with Insufficient Authentication (no key yet, Core Vol 3 Part C §10.3.1); with it
/// on (the default) the same read pairs (Just Works) and succeeds by itself. The value that
/// needs MITM stays refused: a host without IO cannot get an authenticated key, so the client
/// does not try.
async fn gattling_client_read_of_an_encrypted_characteristic_pairs_then_reads(rc: Bed) {
    let case = Case { sc: true, method: Method::JustWorks };
    let mut g = gattling_on(&rc, case).await;
    let args = strings(&["--role", "peripheral", "--name", "bp-read", "--io", "no-io"]);
    let (mut peer, ready) = start_peer(&rc, &args).await;
    let handle = |k: &str| u16::try_from(ready["handles"][k].as_u64().expect("handle")).expect("handle");
    let conn = g.connect_to("bp-read").await;
    peer.expect("connected", STEP).await;
    let client = GattClient::new(conn.clone(), ClientOptions::default()).await.expect("client");
    assert_eq!(within("read", client.read(handle("open"))).await.expect("open value"), b"open");
    client.set_secure_on_error(false);
    let refused = within("read", client.read(handle("enc"))).await;
    assert_eq!(att_error(&refused), Some(ErrorCode::INSUFFICIENT_AUTHENTICATION), "{refused:?}");
    assert_eq!(conn.security_level(), SecurityLevel::Open, "nothing was done about it");

    client.set_secure_on_error(true);
    let value = within("read that pairs", client.read(handle("enc"))).await.expect("paired and read");
    assert_eq!(value, b"encrypted");
    let done = peer.expect("pairing_complete", STEP).await;
    assert_eq!((done["sc"].as_bool(), done["authenticated"].as_bool()), (Some(true), Some(false)), "{done}");
    assert_eq!(conn.security_level(), SecurityLevel::Encrypted);
    let bond = conn.bond().expect("bonded by the read");
    assert_eq!(done["ltk"].as_str(), bond.ltk.map(|k| hex(&k.key)).as_deref(), "one LTK");

    let refused = within("read", client.read(handle("auth"))).await;
    assert_eq!(
        att_error(&refused),
        Some(ErrorCode::INSUFFICIENT_AUTHENTICATION),
        "a Just Works key does not give MITM protection: {refused:?}"
    );
    g.assert_nothing_shown("Just Works");
    central_hangs_up(peer, conn).await;
}

/// gattling's client, able to compare numbers and asking for MITM protection, reads bumble's
/// value that needs an authenticated key on a fresh link: refused, it pairs (Numeric
/// Comparison) and reads it.
async fn gattling_client_read_of_an_authenticated_characteristic_pairs_with_mitm(rc: Bed) {
    let case = SC_NUMERIC;
    let mut g = gattling_on(&rc, case).await;
    let mut args = strings(&["--role", "peripheral", "--name", "bp-read-auth"]);
    args.extend(case.peer_args(Path::new("/nonexistent")));
    let (mut peer, ready) = start_peer(&rc, &args).await;
    let auth = u16::try_from(ready["handles"]["auth"].as_u64().expect("handle")).expect("handle");
    let conn = g.connect_to("bp-read-auth").await;
    peer.expect("connected", STEP).await;
    let client = GattClient::new(conn.clone(), ClientOptions::default()).await.expect("client");
    let read = tokio::spawn(async move { client.read(auth).await });
    play_users(case.method, &mut peer, &mut g.user, &TempPath::new("unused")).await;
    let value = within("read that pairs", read).await.expect("read task").expect("paired and read");
    assert_eq!(value, b"authenticated");
    let done = peer.expect("pairing_complete", STEP).await;
    assert_eq!((done["sc"].as_bool(), done["authenticated"].as_bool()), (Some(true), Some(true)), "{done}");
    assert_eq!(conn.security_level(), SecurityLevel::SecureConnections);
    central_hangs_up(peer, conn).await;
}

/// gattling's test service: an encrypted, notifiable value (with its CCCD) and an
/// authenticated one.
fn serve(g: &Gattling) -> GattServer {
    let server = g.host.gatt_server("gattling-iop", 0);
    server
        .add_service(
            ServiceDef::primary(Uuid::from_be_u128(G_SERVICE))
                .characteristic(
                    CharacteristicDef::new(Uuid::from_be_u128(G_ENC), Properties::READ | Properties::NOTIFY, b"secret")
                        .permissions(Permissions::READ | Permissions::READ_ENCRYPTED),
                )
                .characteristic(
                    CharacteristicDef::new(Uuid::from_be_u128(G_AUTH), Properties::READ, b"authentic")
                        .permissions(Permissions::READ | Permissions::READ_AUTHENTICATED),
                ),
        )
        .expect("service");
    server
}

/// A bumble central reads gattling's protected values, pairing when refused; then, bonded and
/// reconnected but not yet encrypted, reads again and encrypts with the bond when refused.
/// The refusals follow Core Vol 3 Part C §10.3.1 only with `strict` (see the ignored test
/// below); otherwise the first refusal may be either code and the second run reads the value
/// gattling refuses correctly today.
async fn bumble_reads_gattling_protected_values(rc: Bed, strict: bool) {
    let case = SC_NUMERIC;
    let keystore = TempPath::new("keystore.json");
    let mut g = gattling_on(&rc, case).await;
    let _server = serve(&g);
    let (enc, auth) = (Uuid::from_be_u128(G_ENC).to_string(), Uuid::from_be_u128(G_AUTH).to_string());
    let bumble_addr = peer_address();
    let gattling_addr = g.address();
    let reader = |extra: &[&str]| {
        let mut args = strings(&["--role", "central", "--peer", &gattling_addr, "--address", &bumble_addr]);
        args.extend(strings(&["--keystore", &keystore.arg(), "--pair-on-error"]));
        args.extend(case.peer_args(Path::new("/nonexistent")));
        args.extend(strings(extra));
        args
    };
    let read_of = |v: &Value| (v["event"].as_str().map(String::from), v["value"].as_str().map(String::from));
    let value = |b: &[u8]| (Some("read".to_string()), Some(hex(b)));

    // No key yet: refused, bumble pairs (Numeric Comparison), reads both values.
    g.advertise("gattling-reads").await;
    let (mut peer, _) = start_peer(&rc, &reader(&["--read-uuid", &enc, "--read-uuid", &auth])).await;
    let conn = g.accept().await;
    let refused = peer.expect("read_error", STEP).await;
    if strict {
        assert_eq!(refused["code"], 0x05, "no LTK for this client: Insufficient Authentication (§10.3.1): {refused}");
    } else {
        assert!(refused["code"] == 0x05 || refused["code"] == 0x0F, "{refused}");
    }
    play_users(case.method, &mut peer, &mut g.user, &TempPath::new("unused")).await;
    let (security, bonded) = g.secured().await;
    assert!(bonded && SecurityLevel::of(&security) == SecurityLevel::SecureConnections, "{security:?}");
    peer.expect("pairing_complete", STEP).await;
    let read = peer.expect_any(&["read", "read_error"], STEP).await;
    assert_eq!(read_of(&read), value(b"secret"), "{read}");
    let read = peer.expect_any(&["read", "read_error"], STEP).await;
    assert_eq!(read_of(&read), value(b"authentic"), "{read}");
    peer.expect("done", STEP).await;
    peripheral_hangs_up(peer, conn).await;

    // Bonded (with an authenticated key), not encrypted yet: Insufficient Encryption, bumble
    // encrypts with the bond (no pairing) and reads.
    let (first, second) = if strict { (&auth, &enc) } else { (&enc, &auth) };
    g.advertise("gattling-reads").await;
    let (mut peer, _) = start_peer(&rc, &reader(&["--read-uuid", first, "--read-uuid", second])).await;
    let conn = g.accept().await;
    let refused = peer.expect("read_error", STEP).await;
    assert_eq!(refused["code"], 0x0F, "a bonded client on an unencrypted link (§10.3.1): {refused}");
    let next = peer.expect_any(&["pairing_started", "encryption_change"], STEP).await;
    assert_eq!(next["event"], "encryption_change", "bumble encrypts with the bond: {next}");
    let (_, bonded) = g.secured().await;
    assert!(bonded);
    let expected = |uuid: &String| if *uuid == enc { value(b"secret") } else { value(b"authentic") };
    let read = peer.expect_any(&["read", "read_error"], STEP).await;
    assert_eq!(read_of(&read), expected(first), "{read}");
    let read = peer.expect_any(&["read", "read_error"], STEP).await;
    assert_eq!(read_of(&read), expected(second), "the bond's key is authenticated: {read}");
    peer.expect("done", STEP).await;
    peripheral_hangs_up(peer, conn).await;
    g.assert_nothing_shown("bonded reconnection");
}

async fn bumble_read_of_a_gattling_encrypted_characteristic_pairs_then_reads(rc: Bed) {
    bumble_reads_gattling_protected_values(rc, false).await
}

on_each_controller!(
    gattling_client_read_of_an_encrypted_characteristic_pairs_then_reads,
    gattling_client_read_of_an_authenticated_characteristic_pairs_with_mitm,
    bumble_read_of_a_gattling_encrypted_characteristic_pairs_then_reads,
);

/// Core Vol 3 Part C §10.3.1: a client without an LTK reading a value that needs encryption
/// gets Insufficient Authentication (0x05); a client whose LTK exists (and is good enough) but
/// whose link is not encrypted gets Insufficient Encryption (0x0F).
///
/// KNOWN GATTLING BUG (ignored until fixed): gattling's GATT server does not know whether the
/// peer has a key. On an unencrypted link it answers READ_ENCRYPTED with 0x0F for everyone and
/// READ_AUTHENTICATED with 0x05 for everyone (`gattling_proto::gatt::server`, the permission
/// check): an unbonded client is told to encrypt with a key it does not have, and a client
/// bonded with an authenticated key is told to pair again (bumble then re-pairs, asking its
/// user for a new comparison, instead of encrypting with the bond).
async fn gattling_server_refuses_with_the_codes_of_10_3_1(rc: Bed) {
    bumble_reads_gattling_protected_values(rc, true).await
}

mod gattling_server_refuses_with_the_codes_of_10_3_1 {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rootcanal() {
        if super::skipped() {
            return;
        }
        super::gattling_server_refuses_with_the_codes_of_10_3_1(super::Bed::rootcanal()).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gattling_controller() {
        if super::skipped() {
            return;
        }
        super::gattling_server_refuses_with_the_codes_of_10_3_1(super::Bed::gattling().await).await
    }
}

// ---------------------------------------------------------------------- CCCD restored

/// A bonded bumble client subscribes to gattling's characteristic and disconnects; it
/// reconnects, encrypts with the bond and receives a notification without writing the CCCD
/// again (Core Vol 3 Part G §3.3.3.3).
async fn a_bonded_clients_cccd_is_restored_on_reconnection(rc: Bed) {
    let case = Case { sc: true, method: Method::JustWorks };
    let keystore = TempPath::new("keystore.json");
    let mut g = gattling_on(&rc, case).await;
    let server = serve(&g);
    let ch = server.characteristic(Uuid::from_be_u128(G_ENC)).expect("served");
    let mut events = server.events();
    let enc = Uuid::from_be_u128(G_ENC).to_string();
    let bumble_addr = peer_address();
    let gattling_addr = g.address();
    let run = |steps: &[&str]| {
        let mut args = strings(&["--role", "central", "--peer", &gattling_addr, "--address", &bumble_addr]);
        args.extend(strings(&["--keystore", &keystore.arg(), "--io", "no-io"]));
        args.extend(strings(steps));
        args
    };

    // Pair (bond), then subscribe.
    g.advertise("gattling-cccd").await;
    let (mut peer, _) = start_peer(&rc, &run(&["--pair", "--subscribe", &enc])).await;
    let conn = g.accept().await;
    let (_, bonded) = g.secured().await;
    assert!(bonded);
    peer.expect("pairing_complete", STEP).await;
    let subscribed = within("Subscribed", events.next()).await.expect("server event");
    assert!(
        matches!(subscribed, gattling::ServerEvent::Subscribed { value_handle, cccd: 1, .. } if value_handle == ch.value_handle()),
        "{subscribed:?}"
    );
    peer.expect("subscribed", STEP).await;
    peer.expect("done", STEP).await;
    peripheral_hangs_up(peer, conn).await;

    // Reconnect bonded: encrypt, then only listen.
    g.advertise("gattling-cccd").await;
    let (mut peer, _) = start_peer(&rc, &run(&["--encrypt", "--listen", &enc, "--notifications", "1"])).await;
    let conn = g.accept().await;
    let (security, bonded) = g.secured().await;
    assert!(bonded && security.encrypted, "{security:?}");
    let listening = peer.expect("listening", STEP).await;
    assert_eq!(listening["handle"], ch.value_handle(), "{listening}");
    assert!(ch.notify(conn.handle(), b"restored"), "the bonded client's CCCD was restored: the notification goes out");
    let n = peer.expect("notification", STEP).await;
    assert_eq!(
        (n["handle"].as_u64(), n["value"].as_str()),
        (Some(u64::from(ch.value_handle())), Some(hex(b"restored").as_str()))
    );
    peer.expect("done", STEP).await;
    peripheral_hangs_up(peer, conn).await;
    let bond = g.bond_with(&bumble_addr);
    assert_eq!(bond.cccds.values().copied().collect::<Vec<_>>(), [1], "the bond keeps the CCCD: {bond:?}");
}

on_each_controller!(a_bonded_clients_cccd_is_restored_on_reconnection);
