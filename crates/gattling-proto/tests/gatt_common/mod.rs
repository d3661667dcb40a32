//! The fixed test database and the PDU-exchange runner shared by the GATT server conformance
//! suite (`tests/gatt_server.rs`): every PDU passes through the connection's ATT [`Bearer`]
//! before (and after) the server, as in a host.
//!
//! Layout of [`database`] (checked by `fixture_layout_matches_the_documented_handles`):
//!
//! ```text
//! 0x0001 Primary Service 0x1800 (GAP)                      group end 0x0005
//! 0x0002   Characteristic  READ              -> 0x0003 Device Name 0x2A00 = "gattling"
//! 0x0004   Characteristic  READ              -> 0x0005 Appearance  0x2A01 = C1 03
//! 0x0006 Primary Service 0x1801 (GATT)                     group end 0x000D
//! 0x0007   Characteristic  INDICATE          -> 0x0008 Service Changed 0x2A05
//! 0x0009     CCCD
//! 0x000A   Characteristic  READ|WRITE        -> 0x000B Client Supported Features 0x2B29 (max 1)
//! 0x000C   Characteristic  READ              -> 0x000D Database Hash 0x2B2A
//! 0x000E Secondary Service 0x180F (Battery)                group end 0x0010
//! 0x000F   Characteristic  READ              -> 0x0010 Battery Level 0x2A19 = 64
//! 0x0011 Primary Service 0xFFF0 (test)                     group end 0x002F
//! 0x0012   Include 0x000E..0x0010 0x180F
//! 0x0013   Characteristic  READ|WWR|WRITE    -> 0x0014 0xFFF1 = "rw" (max_len 20)
//! 0x0015     CUD "RW"
//! 0x0016     CPF uint8, exp 0, unit 0x2700, ns 1, desc 0
//! 0x0017   Characteristic  READ|NOTIFY       -> 0x0018 0xFFF2 = 01
//! 0x0019     CCCD
//! 0x001A   Characteristic  READ|INDICATE     -> 0x001B 0xFFF3 = 02
//! 0x001C     CCCD
//! 0x001D   Characteristic  READ|WRITE|EXT    -> 0x001E 0xFFF4 = 512 bytes (i % 251)
//! 0x001F     Extended Properties 0x0001 (reliable write)
//! 0x0020     SCC 0x0000 (read/write)
//! 0x0021     custom 128-bit descriptor = 40 bytes (read/write)
//! 0x0022   Characteristic  READ|WRITE        -> 0x0023 0xFFF5 = "enc"   (encryption required)
//! 0x0024   Characteristic  READ|WRITE        -> 0x0025 0xFFF6 = "auth"  (authentication required)
//! 0x0026   Characteristic  READ|WRITE        -> 0x0027 0xFFF7 = "authz" (authorization; hook denies)
//! 0x0028   Characteristic  READ              -> 0x0029 0xFFF8 = "ro"
//! 0x002A   Characteristic  WRITE             -> 0x002B 0xFFF9 = "wo"    (write only)
//! 0x002C   Characteristic  READ|WRITE        -> 0x002D 0xFFFA = "app"   (write hook: error 0x80)
//! 0x002E   Characteristic  READ              -> 0x002F 0xFFFB = "static" (read hook supplies "dyn")
//! 0x0030 Primary Service 128-bit SERVICE_128               group end 0x0033
//! 0x0031   Characteristic  READ|WRITE|NOTIFY -> 0x0032 CHAR_128 = "128"
//! 0x0033     CCCD
//! ```
#![allow(dead_code)]

use gattling_proto::att::bearer::{Bearer, BearerError, Route, Timeout, DEFAULT_MTU, MAX_MTU};
use gattling_proto::att::AttPdu;
use gattling_proto::gatt::db::CharacteristicDef as C;
use gattling_proto::gatt::server::{builtin_services, Answer, Deferred, Outcome, Outgoing, ReadAccess, WriteAccess};
use gattling_proto::gatt::{
    Access, CharId, ConnId, Database, DbError, Permissions as Perm, Properties as Prop, Server, ServerConfig,
    ServiceDef,
};
use gattling_proto::Uuid;
use std::collections::BTreeMap;

/// The default connection.
pub const C1: ConnId = ConnId(0x0040);
/// A second connection.
pub const C2: ConnId = ConnId(0x0041);

/// The Device Name of the fixture.
pub const DEVICE_NAME: &str = "gattling";
/// The Appearance of the fixture.
pub const APPEARANCE: u16 = 0x03C1;

/// 128-bit service UUID 12345678-1234-5678-1234-56789ABCDEF0.
pub const SERVICE_128: Uuid = Uuid::from_be_u128(0x1234_5678_1234_5678_1234_5678_9ABC_DEF0);
/// 128-bit characteristic UUID 12345678-1234-5678-1234-56789ABCDEF1.
pub const CHAR_128: Uuid = Uuid::from_be_u128(0x1234_5678_1234_5678_1234_5678_9ABC_DEF1);
/// 128-bit descriptor UUID 12345678-1234-5678-1234-56789ABCDEF2.
pub const DESC_128: Uuid = Uuid::from_be_u128(0x1234_5678_1234_5678_1234_5678_9ABC_DEF2);

/// Value of the long custom descriptor (40 bytes).
pub const LONG_DESC: &[u8; 40] = b"0123456789abcdefghijklmnopqrstuvwxyzABCD";

/// Handles of the fixture (see the module docs).
pub mod h {
    pub const GAP: u16 = 0x0001;
    pub const DEVICE_NAME: u16 = 0x0003;
    pub const APPEARANCE: u16 = 0x0005;
    pub const GATT: u16 = 0x0006;
    pub const SERVICE_CHANGED: u16 = 0x0008;
    pub const SERVICE_CHANGED_CCCD: u16 = 0x0009;
    pub const CLIENT_FEATURES: u16 = 0x000B;
    pub const DB_HASH: u16 = 0x000D;
    pub const BATTERY: u16 = 0x000E;
    pub const BATTERY_LEVEL: u16 = 0x0010;
    pub const TEST: u16 = 0x0011;
    pub const TEST_END: u16 = 0x002F;
    pub const INCLUDE: u16 = 0x0012;
    pub const RW: u16 = 0x0014;
    pub const RW_CUD: u16 = 0x0015;
    pub const RW_CPF: u16 = 0x0016;
    pub const NOTIFY: u16 = 0x0018;
    pub const NOTIFY_CCCD: u16 = 0x0019;
    pub const INDICATE: u16 = 0x001B;
    pub const INDICATE_CCCD: u16 = 0x001C;
    pub const LONG: u16 = 0x001E;
    pub const LONG_EXT: u16 = 0x001F;
    pub const LONG_SCC: u16 = 0x0020;
    pub const LONG_DESC: u16 = 0x0021;
    pub const ENCRYPTED: u16 = 0x0023;
    pub const AUTHENTICATED: u16 = 0x0025;
    pub const AUTHORIZED: u16 = 0x0027;
    pub const READ_ONLY: u16 = 0x0029;
    pub const WRITE_ONLY: u16 = 0x002B;
    pub const APP_ERROR: u16 = 0x002D;
    pub const DYNAMIC: u16 = 0x002F;
    pub const SVC_128: u16 = 0x0030;
    pub const SVC_128_END: u16 = 0x0033;
    pub const CHAR_128: u16 = 0x0032;
    pub const CHAR_128_CCCD: u16 = 0x0033;
    /// First handle after the database.
    pub const END: u16 = 0x0034;
}

/// The 512-byte value of characteristic 0xFFF4.
pub fn long_value() -> Vec<u8> {
    (0..512u32).map(|i| (i % 251) as u8).collect()
}

/// Builds the fixed test database.
pub fn database() -> Database {
    let mut db = Database::new();
    for s in builtin_services(DEVICE_NAME, APPEARANCE) {
        db.add_service(s).expect("built-in service");
    }
    let battery = db
        .add_service(ServiceDef::secondary(0x180Fu16).characteristic(C::new(0x2A19u16, Prop::READ, &[100])))
        .expect("secondary service");
    let rw = Prop::READ | Prop::WRITE;
    let test = ServiceDef::primary(0xFFF0u16)
        .include(battery)
        .characteristic(
            C::new(0xFFF1u16, rw | Prop::WRITE_WITHOUT_RESPONSE, b"rw")
                .max_len(20)
                .user_description("RW")
                .presentation_format(0x04, 0, 0x2700, 0x01, 0x0000),
        )
        .characteristic(C::new(0xFFF2u16, Prop::READ | Prop::NOTIFY, &[0x01]))
        .characteristic(C::new(0xFFF3u16, Prop::READ | Prop::INDICATE, &[0x02]))
        .characteristic(
            C::new(0xFFF4u16, rw, &long_value()).extended_properties(0x0001).server_configuration().descriptor(
                DESC_128,
                LONG_DESC,
                Perm::READ | Perm::WRITE,
            ),
        )
        .characteristic(
            C::new(0xFFF5u16, rw, b"enc")
                .permissions(Perm::READ | Perm::READ_ENCRYPTED | Perm::WRITE | Perm::WRITE_ENCRYPTED),
        )
        .characteristic(C::new(0xFFF6u16, rw, b"auth").permissions(
            Perm::READ | Perm::READ_ENCRYPTED | Perm::READ_AUTHENTICATED | Perm::WRITE | Perm::WRITE_AUTHENTICATED,
        ))
        .characteristic(
            C::new(0xFFF7u16, rw, b"authz")
                .permissions(Perm::READ | Perm::READ_AUTHORIZED | Perm::WRITE | Perm::WRITE_AUTHORIZED),
        )
        .characteristic(C::new(0xFFF8u16, Prop::READ, b"ro"))
        .characteristic(C::new(0xFFF9u16, Prop::WRITE, b"wo"))
        .characteristic(C::new(0xFFFAu16, rw, b"app"))
        .characteristic(C::new(0xFFFBu16, Prop::READ, b"static"));
    db.add_service(test).expect("test service");
    db.add_service(ServiceDef::primary(SERVICE_128).characteristic(C::new(CHAR_128, rw | Prop::NOTIFY, b"128")))
        .expect("128-bit service");
    db
}

/// Application hooks of the fixture: authorization denied unless `allow_authorization`, the
/// 0xFFFA write hook fails with application error 0x80, the 0xFFFB read hook supplies "dyn".
/// Reads and writes of the value handles in `later_reads` / `later_writes` are answered later
/// (`ReadAccess::Later`, `WriteAccess::Later`).
#[derive(Debug, Default)]
pub struct TestAccess {
    /// Whether `authorize` grants access.
    pub allow_authorization: bool,
    /// Every `authorize` call: (conn, handle, write).
    pub authorize_calls: Vec<(ConnId, u16, bool)>,
    /// Every `read` call.
    pub reads: Vec<(ConnId, CharId)>,
    /// Every `write` the hook accepted on the spot.
    pub writes: Vec<(ConnId, CharId, Vec<u8>)>,
    /// Every `written` call (a value stored by a client's write).
    pub written: Vec<(ConnId, CharId, Vec<u8>)>,
    /// Every `subscribed` call.
    pub subscriptions: Vec<(ConnId, CharId, u16)>,
    /// Value handles whose read hook answers later.
    pub later_reads: Vec<u16>,
    /// Value handles whose write hook answers later.
    pub later_writes: Vec<u16>,
    /// Value handles whose read hook answers with an ATT error code at once.
    pub read_errors: Vec<(u16, u8)>,
}

impl Access for TestAccess {
    fn read(&mut self, conn: ConnId, ch: CharId) -> ReadAccess {
        self.reads.push((conn, ch));
        if self.later_reads.contains(&ch.0) {
            ReadAccess::Later
        } else if let Some(&(_, code)) = self.read_errors.iter().find(|e| e.0 == ch.0) {
            ReadAccess::Error(code)
        } else if ch == CharId(h::DYNAMIC) {
            ReadAccess::Value(b"dyn".to_vec())
        } else {
            ReadAccess::Stored
        }
    }

    fn write(&mut self, conn: ConnId, ch: CharId, value: &[u8]) -> WriteAccess {
        if self.later_writes.contains(&ch.0) {
            return WriteAccess::Later;
        }
        if ch == CharId(h::APP_ERROR) {
            return WriteAccess::Reject(0x80);
        }
        self.writes.push((conn, ch, value.to_vec()));
        WriteAccess::Accept
    }

    fn written(&mut self, conn: ConnId, ch: CharId, value: &[u8], _kind: gattling_proto::gatt::server::WriteKind) {
        self.written.push((conn, ch, value.to_vec()));
    }

    fn subscribed(&mut self, conn: ConnId, ch: CharId, cccd: u16) {
        self.subscriptions.push((conn, ch, cccd));
    }

    fn authorize(&mut self, conn: ConnId, handle: u16, write: bool) -> bool {
        self.authorize_calls.push((conn, handle, write));
        self.allow_authorization
    }
}

/// Parses a PDU written as hex bytes (whitespace ignored), with `'text'` for ASCII runs:
/// `"0B 'gattling'"`.
pub fn hex(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    let mut nibble: Option<u8> = None;
    while let Some(c) = chars.next() {
        if c == '\'' {
            assert!(nibble.is_none(), "odd hex digit before text in {s:?}");
            for t in chars.by_ref() {
                if t == '\'' {
                    break;
                }
                out.push(t as u8);
            }
            continue;
        }
        if c.is_whitespace() || c == '_' {
            continue;
        }
        let v = c.to_digit(16).unwrap_or_else(|| panic!("bad hex digit {c:?} in {s:?}")) as u8;
        match nibble.take() {
            Some(hi) => out.push(hi << 4 | v),
            None => nibble = Some(v),
        }
    }
    assert!(nibble.is_none(), "odd number of hex digits in {s:?}");
    out
}

/// Formats bytes as spaced hex.
pub fn fmt_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect::<Vec<_>>().join(" ")
}

/// Little-endian bytes of a handle.
pub fn le(v: u16) -> [u8; 2] {
    v.to_le_bytes()
}

/// An Error Response PDU.
pub fn err(request: u8, handle: u16, code: u8) -> Vec<u8> {
    let [a, b] = handle.to_le_bytes();
    vec![0x01, request, a, b, code]
}

/// The server under test with the ATT bearer of each connection, its hooks and clock.
///
/// Every PDU goes the way a host sends it: through the connection's [`Bearer`] first
/// (`Bearer::receive`), to the server for [`Route::Server`], to `Bearer::poll_indication` for
/// [`Route::Confirmation`] (the next queued indication is the answer), nowhere otherwise; every
/// PDU the server emits is accounted by `Bearer::send` before it counts as sent.
pub struct Fixture {
    /// The server.
    pub server: Server,
    /// The ATT bearer of each connection (created on first use at `local_mtu`).
    pub bearers: BTreeMap<ConnId, Bearer>,
    /// The receive MTU the bearers offer in Exchange MTU.
    pub local_mtu: u16,
    /// The application hooks.
    pub access: TestAccess,
    /// Current time in microseconds, passed to the bearers.
    pub now: u64,
    /// How the bearer routed the last PDU given to [`Fixture::send`].
    pub route: Option<Route>,
    /// What the server made of the last PDU it handled or the last answer it took
    /// ([`Fixture::send`], [`Fixture::answer`]); `None` when the bearer did not route it to the server.
    pub outcome: Option<Outcome>,
    /// The question of the request each connection has parked for the application.
    pub parked: BTreeMap<ConnId, Deferred>,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    /// The fixture database behind a default-configured server, with `C1` connected; the
    /// bearers offer ATT_MTU 517.
    pub fn new() -> Self {
        Self::with_config(ServerConfig::default())
    }

    /// Like [`Fixture::new`] with another server configuration.
    pub fn with_config(config: ServerConfig) -> Self {
        Self::build(config, MAX_MTU)
    }

    /// Like [`Fixture::new`] with bearers that offer `local_mtu` as their receive MTU.
    pub fn with_mtu(local_mtu: u16) -> Self {
        Self::build(ServerConfig::default(), local_mtu)
    }

    fn build(config: ServerConfig, local_mtu: u16) -> Self {
        let mut fx = Self {
            server: Server::new(database(), config),
            bearers: BTreeMap::new(),
            local_mtu,
            access: TestAccess::default(),
            now: 0,
            route: None,
            outcome: None,
            parked: BTreeMap::new(),
        };
        fx.connect(C1);
        fx
    }

    /// Connects `conn`: server state and a fresh bearer at ATT_MTU 23.
    pub fn connect(&mut self, conn: ConnId) {
        self.server.connect(conn);
        self.bearers.insert(conn, Bearer::new(self.local_mtu));
    }

    /// Disconnects `conn`: the server forgets it and its bearer is gone.
    pub fn disconnect(&mut self, conn: ConnId) {
        self.server.disconnect(conn);
        self.bearers.remove(&conn);
        self.parked.remove(&conn);
    }

    /// The bearer of `conn`, created (at ATT_MTU 23) if the connection has none yet.
    pub fn bearer(&mut self, conn: ConnId) -> &mut Bearer {
        let mtu = self.local_mtu;
        self.bearers.entry(conn).or_insert_with(|| Bearer::new(mtu))
    }

    /// The ATT_MTU of `conn` (23 before any exchange).
    pub fn mtu(&self, conn: ConnId) -> u16 {
        self.bearers.get(&conn).map_or(DEFAULT_MTU, Bearer::mtu)
    }

    /// True while an indication to `conn` awaits its confirmation.
    pub fn indication_pending(&self, conn: ConnId) -> bool {
        self.bearers.get(&conn).is_some_and(Bearer::indication_pending)
    }

    /// True once the bearer of `conn` closed after a transaction timeout.
    pub fn is_closed(&self, conn: ConnId) -> bool {
        self.bearers.get(&conn).is_some_and(Bearer::is_closed)
    }

    /// When the next transaction timeout of any bearer falls due.
    pub fn next_timeout(&self) -> Option<u64> {
        self.bearers.values().filter_map(Bearer::poll_timeout).min()
    }

    /// Checks every bearer's timers at `now`: the transactions that expired, each closing its
    /// bearer (reported once).
    pub fn handle_timeouts(&mut self, now: u64) -> Vec<(ConnId, Timeout)> {
        self.bearers.iter_mut().filter_map(|(c, b)| b.handle_timeout(now).map(|t| (*c, t))).collect()
    }

    /// The connections whose bearer closed on a transaction timeout at `now` (the caller would
    /// disconnect them).
    pub fn poll_timeouts(&mut self, now: u64) -> Vec<ConnId> {
        self.handle_timeouts(now).into_iter().map(|(c, _)| c).collect()
    }

    /// Sets a characteristic value; the notifications and indications to send.
    pub fn set_value(&mut self, ch: CharId, value: &[u8], now: u64) -> Outgoing {
        self.server.set_value(ch, value, now, &mut self.bearers)
    }

    /// Adds a service at run time; its handle and the Service Changed indications to send.
    pub fn add_service(&mut self, def: ServiceDef, now: u64) -> Result<(u16, Outgoing), DbError> {
        self.server.add_service(def, now, &mut self.bearers)
    }

    /// Removes a service at run time; the Service Changed indications to send.
    pub fn remove_service(&mut self, handle: u16, now: u64) -> Result<Outgoing, DbError> {
        self.server.remove_service(handle, now, &mut self.bearers)
    }

    /// A notification of `value` to `conn`, if it subscribed.
    pub fn notification(&mut self, conn: ConnId, ch: CharId, value: &[u8]) -> Option<Vec<u8>> {
        let bearer = self.bearers.entry(conn).or_insert_with(|| Bearer::new(self.local_mtu));
        self.server.notification(bearer, conn, ch, value)
    }

    /// An indication of `value` to `conn`, if it subscribed: queued in the bearer, and the PDU
    /// to send now unless another indication awaits its confirmation.
    pub fn indicate(&mut self, conn: ConnId, ch: CharId, value: &[u8], now: u64) -> Option<Vec<u8>> {
        let bearer = self.bearers.entry(conn).or_insert_with(|| Bearer::new(self.local_mtu));
        if let Some(pdu) = self.server.indication(bearer, conn, ch, value) {
            bearer.queue_indication(pdu);
        }
        bearer.poll_indication(now)
    }

    /// Notifications of several characteristics to `conn`.
    pub fn notify_multiple(&mut self, conn: ConnId, items: &[(CharId, &[u8])]) -> Vec<Vec<u8>> {
        let bearer = self.bearers.entry(conn).or_insert_with(|| Bearer::new(self.local_mtu));
        self.server.notify_multiple(bearer, conn, items)
    }

    /// Accounts for a server PDU in the bearer and returns it if the bearer lets it go (checks
    /// that the server answers only open requests).
    fn emit(bearer: &mut Bearer, now: u64, outcome: &Outcome, out: Vec<u8>) -> Option<Vec<u8>> {
        match outcome {
            Outcome::Reply => match bearer.send(&out, now) {
                Ok(()) => Some(out),
                // A closed bearer sends nothing more (Core Vol 3 Part F §3.3.3).
                Err(BearerError::Closed) => None,
                Err(e) => panic!("the bearer refuses the server's reply {}: {e}", fmt_hex(&out)),
            },
            _ => {
                assert!(out.is_empty(), "{outcome:?} but the server wrote {}", fmt_hex(&out));
                None
            }
        }
    }

    /// Sends one PDU on `conn` through its bearer; the PDU sent back, if any: the server's
    /// response, or the next queued indication after a confirmation. [`Fixture::route`] and
    /// [`Fixture::outcome`] say what happened.
    pub fn send(&mut self, conn: ConnId, pdu: &[u8]) -> Option<Vec<u8>> {
        let now = self.now;
        let bearer = self.bearers.entry(conn).or_insert_with(|| Bearer::new(self.local_mtu));
        let busy = bearer.peer_request_pending();
        let route = bearer.receive(pdu, now);
        self.route = Some(route);
        self.outcome = None;
        match route {
            Route::Server => {
                // A request (or unknown non-command opcode) opens a transaction on the bearer.
                let opened = !busy && bearer.peer_request_pending();
                let mut out = Vec::new();
                let outcome = self.server.handle(conn, bearer, pdu, &mut self.access, &mut out);
                if outcome == Outcome::Silent {
                    assert!(!opened, "BUG: request {} left without an answer (the bearer waits for one)", fmt_hex(pdu));
                }
                let sent = Self::emit(bearer, now, &outcome, out);
                if let Outcome::Deferred(d) = &outcome {
                    self.parked.insert(conn, d.clone());
                }
                self.outcome = Some(outcome);
                sent
            }
            Route::Confirmation => bearer.poll_indication(now),
            _ => None,
        }
    }

    /// Sends `request`, which the server must park for the application; the question it asks.
    pub fn send_deferred(&mut self, conn: ConnId, request: &[u8]) -> Deferred {
        let sent = self.send(conn, request);
        assert_eq!(sent, None, "a deferred request {} is answered at once", fmt_hex(request));
        self.last_deferred()
    }

    /// The question of the last outcome, which must be a deferral.
    pub fn last_deferred(&self) -> Deferred {
        match &self.outcome {
            Some(Outcome::Deferred(d)) => d.clone(),
            other => panic!("expected a deferred request, got {other:?}"),
        }
    }

    /// Brings the application's answer to the request parked under `token` on `conn`; the
    /// reply sent, if any ([`Fixture::outcome`] says whether the request waits again).
    pub fn answer(&mut self, conn: ConnId, token: u32, answer: Answer) -> Option<Vec<u8>> {
        let now = self.now;
        let mut gone = Bearer::new(self.local_mtu);
        let bearer = self.bearers.get_mut(&conn).unwrap_or(&mut gone);
        let mut out = Vec::new();
        let outcome = self.server.answer(conn, token, answer, bearer, &mut self.access, &mut out);
        let sent = Self::emit(bearer, now, &outcome, out);
        match &outcome {
            Outcome::Deferred(d) => {
                self.parked.insert(conn, d.clone());
            }
            Outcome::Reply => {
                self.parked.remove(&conn);
            }
            Outcome::Silent => {}
        }
        self.outcome = Some(outcome);
        sent
    }

    /// Sends `request` and checks the answer (`None`: no response at all).
    pub fn check(&mut self, conn: ConnId, request: &[u8], expected: Option<&[u8]>, context: &str) {
        let actual = self.send(conn, request);
        let show = |v: &Option<Vec<u8>>| v.as_deref().map(fmt_hex).unwrap_or_else(|| "(no response)".into());
        assert_eq!(
            actual.as_deref(),
            expected,
            "{context}\n  request:  {}\n  expected: {}\n  actual:   {}",
            fmt_hex(request),
            show(&expected.map(<[u8]>::to_vec)),
            show(&actual),
        );
        if let Some(rsp) = &actual {
            assert!(AttPdu::decode(rsp).is_ok(), "{context}: response {} does not decode", fmt_hex(rsp));
        }
    }

    /// Runs a table of (request, expected response) steps written in [`hex`]; an empty
    /// expectation means no response.
    pub fn run(&mut self, conn: ConnId, steps: &[(&str, &str)]) {
        self.run_labelled(conn, steps, "");
    }

    /// Like [`Fixture::run`], prefixing failures with `label` (e.g. "BUG: ...").
    pub fn run_labelled(&mut self, conn: ConnId, steps: &[(&str, &str)], label: &str) {
        for (i, (req, rsp)) in steps.iter().enumerate() {
            let expected = hex(rsp);
            let expected = (!rsp.trim().is_empty()).then_some(expected.as_slice());
            self.check(conn, &hex(req), expected, &format!("{label}step {i}"));
        }
    }

    /// Runs byte steps built at run time.
    pub fn run_bytes(&mut self, conn: ConnId, steps: &[(Vec<u8>, Option<Vec<u8>>)], label: &str) {
        for (i, (req, rsp)) in steps.iter().enumerate() {
            self.check(conn, req, rsp.as_deref(), &format!("{label}step {i}"));
        }
    }

    /// The stored value of the characteristic whose value is at `handle`.
    pub fn value(&self, handle: u16) -> Vec<u8> {
        self.server.db().characteristic(CharId(handle)).expect("characteristic").value.clone()
    }

    /// The event bits of the characteristic whose value is at `handle`.
    pub fn events(&self, handle: u16) -> u16 {
        self.server.db().characteristic(CharId(handle)).expect("characteristic").events
    }
}
