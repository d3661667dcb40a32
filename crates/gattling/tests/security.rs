//! Pairing, encryption and bonding through the runtime, two gattling hosts on the virtual
//! radio (Core Vol 3 Part H): every pairing method in both roles, bonded reconnection without
//! pairing, CCCDs restored for a bonded client, pairing failures reported with their reason.
//! Interop with bumble is in `interop.rs`.

use gattling::bonds::BondStore;
use gattling::gatt::{CharacteristicDef, Permissions, Properties, ServiceDef};
use gattling::proto::smp::pdu::Reason;
use gattling::security::{FixedAnswers, IoCapability, LinkSecurity, SecurityOptions};
use gattling::{
    AdvertisingOptions, ConnectOptions, Connection, Error, Host, HostOptions, MemoryBondStore, SecurityLevel,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const STEP: Duration = Duration::from_secs(10);

fn options(security: SecurityOptions) -> HostOptions {
    HostOptions { security, ..HostOptions::default() }
}

async fn pair_of(
    radio: &str,
    central: SecurityOptions,
    peripheral: SecurityOptions,
) -> (Host, Connection, Host, Connection) {
    let p = Host::open_with(&format!("virtual:{radio}"), options(peripheral)).await.expect("peripheral");
    let c = Host::open_with(&format!("virtual:{radio}"), options(central)).await.expect("central");
    p.advertise(&AdvertisingOptions::default()).await.expect("advertise");
    let cc = c.connect(p.address(), ConnectOptions::default()).await.expect("connect");
    let pc = p.accept().await.expect("accept");
    (c, cc, p, pc)
}

/// A delegate that types `passkey` and records what it was shown.
fn answers(passkey: Option<u32>, confirm: bool) -> (Arc<FixedAnswers>, Arc<Mutex<Vec<u32>>>) {
    let shown = Arc::new(Mutex::new(Vec::new()));
    let log = shown.clone();
    let d = FixedAnswers { passkey, confirm, on_display: Some(Box::new(move |n| log.lock().unwrap().push(n))) };
    (Arc::new(d), shown)
}

fn with(io: IoCapability, mitm: bool, sc: bool, delegate: Arc<FixedAnswers>) -> SecurityOptions {
    SecurityOptions { io_capability: io, mitm, secure_connections: sc, delegate, ..SecurityOptions::default() }
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f).await.expect("in time")
}

/// Waits for the host's next Secured notification (the bond is stored by then).
async fn secured(notes: &mut tokio::sync::broadcast::Receiver<gattling::Notification>) -> LinkSecurity {
    within(async {
        loop {
            if let Ok(gattling::Notification::Secured { security, .. }) = notes.recv().await {
                return security;
            }
        }
    })
    .await
}

/// Both ends paired: same level on both, encrypted with a 16-octet key.
fn assert_paired(a: &LinkSecurity, b: &LinkSecurity, authenticated: bool, sc: bool) {
    assert!(a.encrypted && b.encrypted, "{a:?} {b:?}");
    assert_eq!((a.key_size, b.key_size), (16, 16));
    assert_eq!((a.authenticated, b.authenticated), (authenticated, authenticated), "{a:?} {b:?}");
    assert_eq!((a.secure_connections, b.secure_connections), (sc, sc), "{a:?} {b:?}");
}

#[tokio::test]
async fn secure_connections_just_works_both_sides_bond() {
    let (c, cc, p, pc) = pair_of("sec-jw", SecurityOptions::default(), SecurityOptions::default()).await;
    let mut notes = p.notifications();
    let got = within(cc.pair()).await.expect("paired");
    assert_paired(&got, &pc.security(), false, true);
    assert_eq!(cc.security_level(), SecurityLevel::Encrypted);
    let bond_c = cc.bond().expect("central keeps a bond");
    secured(&mut notes).await;
    let bond_p = pc.bond().expect("peripheral keeps a bond");
    assert_eq!(bond_c.ltk.map(|k| k.key), bond_p.ltk.map(|k| k.key), "one Secure Connections LTK");
    assert!(bond_c.peer_irk.is_some() && bond_p.peer_irk.is_some(), "identity keys went both ways");
    drop((c, p));
}

#[tokio::test]
async fn secure_connections_numeric_comparison_shows_one_number_on_both_sides() {
    let (dc, shown_c) = answers(None, true);
    let (dp, shown_p) = answers(None, true);
    let (_c, cc, _p, pc) = pair_of(
        "sec-nc",
        with(IoCapability::DisplayYesNo, true, true, dc),
        with(IoCapability::DisplayYesNo, true, true, dp),
    )
    .await;
    let got = within(cc.pair()).await.expect("paired");
    assert_paired(&got, &pc.security(), true, true);
    assert_eq!(cc.security_level(), SecurityLevel::SecureConnections);
    let (a, b) = (shown_c.lock().unwrap().clone(), shown_p.lock().unwrap().clone());
    assert_eq!(a.len(), 1);
    assert_eq!(a, b, "both users compared the same six digits");
    assert!(a[0] <= 999_999);
}

#[tokio::test]
async fn numeric_comparison_rejected_by_the_user_fails_with_its_reason() {
    let (dc, _) = answers(None, true);
    let (dp, _) = answers(None, false);
    let (_c, cc, _p, pc) = pair_of(
        "sec-nc-no",
        with(IoCapability::DisplayYesNo, true, true, dc),
        with(IoCapability::DisplayYesNo, true, true, dp),
    )
    .await;
    match within(cc.pair()).await {
        Err(Error::Pairing { reason: Reason::NumericComparisonFailed, remote: true }) => {}
        other => panic!("{other:?}"),
    }
    assert!(!pc.security().encrypted);
}

/// Passkey Entry in both directions and in both pairing variants: the displaying side's
/// passkey is what the typing side enters.
#[tokio::test]
async fn passkey_entry_in_both_directions_secure_connections_and_legacy() {
    for (i, (sc, central_types)) in [(true, true), (true, false), (false, true), (false, false)].into_iter().enumerate()
    {
        // The displaying side shows a random passkey; the test hands it to the typing side.
        let (typed_tx, typed) = tokio::sync::watch::channel(None::<u32>);
        let shown = Arc::new(Mutex::new(Vec::new()));
        let (display_io, keyboard_io) = (IoCapability::DisplayOnly, IoCapability::KeyboardOnly);
        let show = shown.clone();
        let displayer = Arc::new(FixedAnswers {
            passkey: None,
            confirm: false,
            on_display: Some(Box::new(move |n| {
                show.lock().unwrap().push(n);
                let _ = typed_tx.send(Some(n));
            })),
        });
        let typist = Arc::new(PasskeyFrom(typed));
        let disp = SecurityOptions {
            io_capability: display_io,
            mitm: true,
            secure_connections: sc,
            delegate: displayer,
            ..SecurityOptions::default()
        };
        let keyb = SecurityOptions {
            io_capability: keyboard_io,
            mitm: true,
            secure_connections: sc,
            delegate: typist,
            ..SecurityOptions::default()
        };
        let (central, peripheral) = if central_types { (keyb, disp) } else { (disp, keyb) };
        let (_c, cc, _p, pc) = pair_of(&format!("sec-pk-{i}"), central, peripheral).await;
        let got = within(cc.pair()).await.unwrap_or_else(|e| panic!("case {i}: {e}"));
        assert_paired(&got, &pc.security(), true, sc);
        assert_eq!(shown.lock().unwrap().len(), 1, "case {i}: one passkey displayed");
    }
}

/// Types whatever passkey the other side displayed, waiting for it if need be.
struct PasskeyFrom(tokio::sync::watch::Receiver<Option<u32>>);

impl gattling::PairingDelegate for PasskeyFrom {
    fn request_passkey(&self, _link: gattling::security::PairingLink) -> gattling::security::BoxFuture<Option<u32>> {
        let mut shown = self.0.clone();
        Box::pin(async move { shown.wait_for(Option::is_some).await.ok().and_then(|v| *v) })
    }
}

#[tokio::test]
async fn a_wrong_passkey_fails_with_confirm_value_failed() {
    let (dp, _) = answers(None, false);
    let wrong = Arc::new(FixedAnswers { passkey: Some(1), confirm: false, on_display: None });
    let (_c, cc, _p, _pc) = pair_of(
        "sec-pk-wrong",
        with(IoCapability::KeyboardOnly, true, true, wrong),
        with(IoCapability::DisplayOnly, true, true, dp),
    )
    .await;
    match within(cc.pair()).await {
        Err(Error::Pairing { reason: Reason::ConfirmValueFailed, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn legacy_just_works_when_one_side_has_no_secure_connections() {
    let legacy = SecurityOptions { secure_connections: false, ..SecurityOptions::default() };
    let (_c, cc, _p, pc) = pair_of("sec-legacy", SecurityOptions::default(), legacy).await;
    let got = within(cc.pair()).await.expect("paired");
    assert_paired(&got, &pc.security(), false, false);
    let bond = cc.bond().expect("bond");
    assert!(!bond.secure_connections && bond.ltk.is_some(), "the peripheral's distributed LTK: {bond:?}");
}

#[tokio::test]
async fn secure_connections_only_refuses_legacy_with_authentication_requirements() {
    let legacy = SecurityOptions { secure_connections: false, ..SecurityOptions::default() };
    let sc_only = SecurityOptions { legacy_pairing: false, ..SecurityOptions::default() };
    let (_c, cc, _p, _pc) = pair_of("sec-sconly", sc_only, legacy).await;
    match within(cc.pair()).await {
        Err(Error::Pairing { reason: Reason::AuthenticationRequirements, remote: false }) => {}
        other => panic!("{other:?}"),
    }
}

/// A bonded central reconnects and encrypts with the stored key: no pairing; the peripheral
/// asks for security with a Security Request and gets it from the bond too.
#[tokio::test]
async fn a_bonded_reconnection_encrypts_without_pairing_in_both_directions() {
    let _ = tracing_subscriber::fmt().with_env_filter("gattling=debug").with_test_writer().try_init();
    let store_c = Arc::new(MemoryBondStore::new(8));
    let store_p = Arc::new(MemoryBondStore::new(8));
    let (dc, shown_c) = answers(None, true);
    let (dp, _) = answers(None, true);
    let sc = SecurityOptions {
        io_capability: IoCapability::DisplayYesNo,
        mitm: true,
        delegate: dc,
        bonds: store_c.clone(),
        ..SecurityOptions::default()
    };
    let sp = SecurityOptions {
        io_capability: IoCapability::DisplayYesNo,
        mitm: true,
        delegate: dp,
        bonds: store_p.clone(),
        ..SecurityOptions::default()
    };
    let (c, cc, p, pc) = pair_of("sec-bond", sc.clone(), sp.clone()).await;
    let mut notes = p.notifications();
    within(cc.pair()).await.expect("paired");
    assert_eq!(shown_c.lock().unwrap().len(), 1);
    secured(&mut notes).await;
    assert_eq!(store_p.list().len(), 1);
    cc.disconnect(0x13).await.expect("disconnect");
    let _ = within(pc.closed()).await;

    // Central side: secure() uses the bond, no numeric comparison this time.
    p.advertise(&AdvertisingOptions::default()).await.expect("advertise");
    let cc = c.connect(p.address(), ConnectOptions::default()).await.expect("reconnect");
    let pc = p.accept().await.expect("accept");
    let got = within(cc.secure(SecurityLevel::Authenticated)).await.expect("encrypted with the bond");
    assert_paired(&got, &pc.security(), true, true);
    assert_eq!(shown_c.lock().unwrap().len(), 1, "no second comparison: the bond was used");
    cc.disconnect(0x13).await.expect("disconnect");
    let _ = within(pc.closed()).await;

    // Peripheral side: its Security Request is answered with the bond's key.
    p.advertise(&AdvertisingOptions::default()).await.expect("advertise");
    let cc = c.connect(p.address(), ConnectOptions::default()).await.expect("reconnect");
    let pc = p.accept().await.expect("accept");
    let got = within(pc.pair()).await.expect("secured by the central's bond");
    assert_paired(&got, &cc.security(), true, true);
    assert_eq!(shown_c.lock().unwrap().len(), 1, "still no second comparison");
}

/// An encrypted characteristic: refused with Insufficient Encryption (or Authentication) until
/// the link is secured, then read.
#[tokio::test]
async fn an_encrypted_characteristic_is_refused_then_read_after_pairing() {
    let (c, cc, p, pc) = pair_of("sec-read", SecurityOptions::default(), SecurityOptions::default()).await;
    let server = p.gatt_server("sec", 0);
    let svc = server
        .add_service(
            ServiceDef::primary(0xFFF0u16).characteristic(
                CharacteristicDef::new(0xFFF1u16, Properties::READ, b"secret")
                    .permissions(Permissions::READ | Permissions::READ_ENCRYPTED),
            ),
        )
        .expect("service");
    let h = svc.characteristics[0].value_handle().to_le_bytes();
    cc.send_att(&[0x0A, h[0], h[1]]).expect("read");
    let rsp = within(cc.recv_att()).await.expect("answer");
    assert!(rsp[0] == 0x01 && (rsp[4] == 0x05 || rsp[4] == 0x0F), "refused before pairing: {rsp:02x?}");
    within(cc.pair()).await.expect("paired");
    cc.send_att(&[0x0A, h[0], h[1]]).expect("read");
    assert_eq!(within(cc.recv_att()).await.expect("answer"), b"\x0bsecret");
    drop((c, p, pc));
}

/// The GATT client secures the link when the server asks (Insufficient Encryption or
/// Authentication) and retries once: the encrypted read succeeds after Just Works pairing; the
/// MITM-protected one still fails, after one retry, with Insufficient Authentication.
#[tokio::test]
async fn the_gatt_client_pairs_on_insufficient_security_and_retries_once() {
    use gattling::gatt_client::{ClientOptions, GattClient};
    use gattling::proto::att::ErrorCode;
    use gattling::proto::gatt::client::ClientError;
    let (_c, cc, p, _pc) = pair_of("sec-retry", SecurityOptions::default(), SecurityOptions::default()).await;
    let server = p.gatt_server("sec", 0);
    let svc = server
        .add_service(
            ServiceDef::primary(0xFFF0u16)
                .characteristic(
                    CharacteristicDef::new(0xFFF1u16, Properties::READ, b"encrypted")
                        .permissions(Permissions::READ | Permissions::READ_ENCRYPTED),
                )
                .characteristic(
                    CharacteristicDef::new(0xFFF2u16, Properties::READ, b"mitm")
                        .permissions(Permissions::READ | Permissions::READ_AUTHENTICATED),
                ),
        )
        .expect("service");
    let (enc, mitm) = (svc.characteristics[0].value_handle(), svc.characteristics[1].value_handle());
    let mut notes = p.notifications();
    let client = GattClient::new(cc.clone(), ClientOptions::default()).await.expect("client");
    assert_eq!(within(client.read(enc)).await.expect("read after pairing"), b"encrypted");
    assert_eq!(cc.security_level(), SecurityLevel::Encrypted);
    secured(&mut notes).await;
    match within(client.read(mitm)).await {
        Err(Error::Gatt(ClientError::Att { code: ErrorCode::INSUFFICIENT_AUTHENTICATION, .. })) => {}
        other => panic!("{other:?}"),
    }
    // Turned off, the error comes back at once.
    client.set_secure_on_error(false);
    let fresh = pair_of("sec-retry-off", SecurityOptions::default(), SecurityOptions::default()).await;
    let server = fresh.2.gatt_server("sec", 0);
    let svc = server
        .add_service(
            ServiceDef::primary(0xFFF0u16).characteristic(
                CharacteristicDef::new(0xFFF1u16, Properties::READ, b"x")
                    .permissions(Permissions::READ | Permissions::READ_ENCRYPTED),
            ),
        )
        .expect("service");
    let client = GattClient::new(fresh.1.clone(), ClientOptions::default()).await.expect("client");
    client.set_secure_on_error(false);
    match within(client.read(svc.characteristics[0].value_handle())).await {
        Err(Error::Gatt(ClientError::Att { code: ErrorCode::INSUFFICIENT_ENCRYPTION, .. })) => {}
        other => panic!("{other:?}"),
    }
    assert!(!fresh.1.security().encrypted, "no pairing when turned off");
}

/// A bonded client's subscriptions survive the link (Core Vol 3 Part G §3.3.3.3): after
/// reconnecting and encrypting with the bond, it gets notifications without subscribing again,
/// and, because the database changed while it was away, a Service Changed indication (§7.1).
#[tokio::test]
async fn a_bonded_client_keeps_its_cccds_and_hears_of_database_changes() {
    use gattling::gatt_client::{ClientOptions, GattClient};
    let (c, cc, p, pc) = pair_of("sec-cccd", SecurityOptions::default(), SecurityOptions::default()).await;
    let server = p.gatt_server("sec", 0);
    let svc = server
        .add_service(ServiceDef::primary(0xFFF0u16).characteristic(CharacteristicDef::new(
            0xFFF1u16,
            Properties::READ | Properties::NOTIFY,
            b"0",
        )))
        .expect("service");
    let ch = svc.characteristics[0].clone();
    let client = GattClient::new(cc.clone(), ClientOptions::default()).await.expect("client");
    let mut sc_char = None;
    let mut our_char = None;
    for s in client.services().await.expect("services") {
        for k in s.characteristics().await.expect("characteristics") {
            if k.uuid() == gattling::proto::Uuid::from(0x2A05u16) {
                sc_char = Some(k.clone());
            }
            if k.uuid() == gattling::proto::Uuid::from(0xFFF1u16) {
                our_char = Some(k.clone());
            }
        }
    }
    let (sc_char, our_char) = (sc_char.expect("Service Changed"), our_char.expect("ours"));
    let mut notes = p.notifications();
    within(cc.pair()).await.expect("paired");
    secured(&mut notes).await;
    sc_char.subscribe(true).await.expect("subscribe to Service Changed");
    our_char.subscribe(false).await.expect("subscribe");
    // The subscriptions reach the bond (written off the lock): wait until they are there.
    within(async {
        while pc.bond().map_or(0, |b| b.cccds.len()) < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    cc.disconnect(0x13).await.expect("disconnect");
    let _ = within(pc.closed()).await;

    // The database changes while the client is away.
    server.add_service(ServiceDef::primary(0xFFE0u16)).expect("another service");
    p.advertise(&AdvertisingOptions::default()).await.expect("advertise");
    let cc = c.connect(p.address(), ConnectOptions::default()).await.expect("reconnect");
    let _pc = p.accept().await.expect("accept");
    let client = GattClient::new(cc.clone(), ClientOptions { mtu: None }).await.expect("client");
    let mut values = client.notifications();
    within(cc.secure(SecurityLevel::Encrypted)).await.expect("encrypted with the bond");
    let first = within(values.next()).await.expect("Service Changed");
    assert_eq!(first.handle, sc_char.info().value_handle);
    assert_eq!(first.value, [0x01, 0x00, 0xFF, 0xFF]);
    ch.set_value(b"1");
    let second = within(values.next()).await.expect("a notification without subscribing again");
    assert_eq!((second.handle, second.value.as_slice()), (our_char.info().value_handle, &b"1"[..]));
}

/// The address of the first advertiser named `name` that `host` hears.
async fn find(host: &Host, name: &str) -> gattling::proto::gap::Address {
    use gattling::proto::gap::ad::AdvData;
    let mut scan = host.scan(gattling::ScanOptions::default()).await.expect("scan");
    let found = within(async {
        loop {
            let r = scan.next().await.expect("scan runs");
            if AdvData::parse_lenient(&r.data).local_name() == Some(name) {
                return r.address;
            }
        }
    })
    .await;
    scan.stop().await.expect("stop scan");
    found
}

/// LE privacy (Core Vol 3 Part C §10.7): a host with privacy advertises from a resolvable
/// private address, a new one each time this one expires; its bonded peer resolves the new
/// address on the host with the IRK it received (the controller's resolving list is not used
/// here) and encrypts with the bond, without pairing again.
#[tokio::test]
async fn a_private_peripheral_is_recognised_behind_a_new_address_by_its_bond() {
    use gattling::proto::gap::ad::AdvDataBuilder;
    use gattling::proto::gap::privacy::RandomAddressKind;
    let private = SecurityOptions { privacy: true, ..SecurityOptions::default() };
    let host_resolves = SecurityOptions { controller_resolution: false, ..SecurityOptions::default() };
    let p = Host::open_with("virtual:sec-rpa", options(private)).await.expect("peripheral");
    let c = Host::open_with("virtual:sec-rpa", options(host_resolves)).await.expect("central");
    assert!(c.has_resolving_list() && !c.controller_resolves());
    let data = AdvDataBuilder::new().name("private").build().expect("adv data");
    let adv = AdvertisingOptions { data, ..AdvertisingOptions::default() };
    p.advertise(&adv).await.expect("advertise");
    let first = find(&c, "private").await;
    assert_eq!(RandomAddressKind::of(first.addr), Some(RandomAddressKind::Resolvable), "{first}");
    assert_ne!(first.addr, p.address().addr, "the identity address stays off the air");
    let cc = c.connect(first, ConnectOptions::default()).await.expect("connect");
    let pc = p.accept().await.expect("accept");
    let mut notes = p.notifications();
    within(cc.pair()).await.expect("paired");
    secured(&mut notes).await;
    assert_eq!(cc.bond().expect("bond").peer.addr, p.address().addr, "bonded under its identity");
    cc.disconnect(0x13).await.expect("disconnect");
    let _ = within(pc.closed()).await;

    let renewed = p.renew_private_address().expect("a new address");
    p.advertise(&adv).await.expect("advertise again");
    let second = find(&c, "private").await;
    assert_eq!(second.addr, renewed);
    assert_ne!(second.addr, first.addr, "a new private address");
    let cc = c.connect(second, ConnectOptions::default()).await.expect("reconnect");
    let _pc = p.accept().await.expect("accept");
    assert!(cc.bond().is_some(), "the new address resolves to the bond");
    within(cc.secure(SecurityLevel::Encrypted)).await.expect("encrypted with the bond");
}

/// LE privacy with the controller's resolving list (Core Vol 6 Part B §4.7): once bonded, the
/// central's controller resolves the private peripheral's new address and reports it by its
/// identity address (type 0x02, Core Vol 4 Part E §7.7.65.2); connecting to that identity
/// (LE Create Connection peer type 0x02, §7.8.12) reaches the peripheral, and the bond's key
/// encrypts the link without pairing again.
#[tokio::test]
async fn the_controller_resolves_a_bonded_private_peripheral_to_its_identity() {
    use gattling::proto::gap::ad::AdvDataBuilder;
    use gattling::proto::gap::privacy::RandomAddressKind;
    use gattling::proto::gap::{Address, AddressType};
    let private = SecurityOptions { privacy: true, ..SecurityOptions::default() };
    let p = Host::open_with("virtual:sec-rl", options(private)).await.expect("peripheral");
    let c = Host::open_with("virtual:sec-rl", options(SecurityOptions::default())).await.expect("central");
    assert!(c.has_resolving_list() && c.controller_resolves(), "the virtual controller has a resolving list");
    let data = AdvDataBuilder::new().name("private").build().expect("adv data");
    let adv = AdvertisingOptions { data, ..AdvertisingOptions::default() };
    p.advertise(&adv).await.expect("advertise");
    let first = find(&c, "private").await;
    assert_eq!(first.kind, AddressType::Random, "not bonded yet: reported as it is on air");
    assert_eq!(RandomAddressKind::of(first.addr), Some(RandomAddressKind::Resolvable), "{first}");
    let cc = c.connect(first, ConnectOptions::default()).await.expect("connect");
    let pc = p.accept().await.expect("accept");
    let mut notes = p.notifications();
    within(cc.pair()).await.expect("paired");
    secured(&mut notes).await;
    let bond = cc.bond().expect("bond");
    assert!(bond.peer_irk.is_some(), "the peripheral distributed its IRK");
    cc.disconnect(0x13).await.expect("disconnect");
    let _ = within(pc.closed()).await;

    let renewed = p.renew_private_address().expect("a new address");
    assert_ne!(renewed, first.addr);
    p.advertise(&adv).await.expect("advertise again");
    let second = find(&c, "private").await;
    let identity = Address { addr: p.address().addr, kind: AddressType::PublicIdentity };
    assert_eq!(second, identity, "the controller reports the identity behind {renewed}");
    let cc = c.connect(second, ConnectOptions::default()).await.expect("connect to the identity");
    let pc = p.accept().await.expect("accept");
    assert_eq!(cc.peer(), identity);
    assert_eq!(pc.peer().addr, c.address().addr);
    within(cc.secure(SecurityLevel::Encrypted)).await.expect("encrypted with the bond");
    assert!(cc.security().encrypted);
    let again = cc.bond().expect("the bond");
    assert_eq!(again.ltk, bond.ltk, "no new pairing: the same key");
    // Pairing again on this link takes the addresses used on air (the peripheral's private
    // address, not the identity the controller reported) into f6 (Core Vol 3 Part H §2.2.8).
    let mut notes = p.notifications();
    within(cc.pair()).await.expect("paired again over the resolved link");
    secured(&mut notes).await;
    assert_ne!(cc.bond().expect("bond").ltk, bond.ltk, "a new key");
}

/// A full bond store refuses the new bond with a clear error; the link stays encrypted.
#[tokio::test]
async fn a_full_bond_store_refuses_the_new_bond_clearly() {
    let full = SecurityOptions { bonds: Arc::new(MemoryBondStore::new(0)), ..SecurityOptions::default() };
    let (_c, cc, _p, _pc) = pair_of("sec-full", full, SecurityOptions::default()).await;
    match within(cc.pair()).await {
        Err(Error::Bond(e)) => assert!(e.to_string().contains("full"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(cc.security().encrypted, "paired and encrypted, just not bonded");
    assert!(cc.bond().is_none());
}

/// Out-of-band data exchanged over another channel (here: the test) makes Secure Connections
/// pairing authenticated without any user interaction (Core Vol 3 Part H §2.3.5.6.4).
#[tokio::test]
async fn secure_connections_out_of_band_pairing_is_authenticated() {
    let (_c, cc, _p, pc) = pair_of("sec-oob", SecurityOptions::default(), SecurityOptions::default()).await;
    let from_c = cc.local_oob_data().expect("central OOB data");
    let from_p = pc.local_oob_data().expect("peripheral OOB data");
    cc.set_peer_oob_data(Some(from_p));
    pc.set_peer_oob_data(Some(from_c));
    let got = within(cc.pair()).await.expect("paired");
    assert_paired(&got, &pc.security(), true, true);
    // Wrong data from the peer: the confirm check fails.
    let (_c, cc, _p, pc) = pair_of("sec-oob-bad", SecurityOptions::default(), SecurityOptions::default()).await;
    let mut bad = pc.local_oob_data().expect("peripheral OOB data");
    bad.confirm[0] ^= 1;
    cc.set_peer_oob_data(Some(bad));
    match within(cc.pair()).await {
        Err(Error::Pairing { reason: Reason::ConfirmValueFailed, .. }) => {}
        other => panic!("{other:?}"),
    }
}

/// The private address is renewed by the host's timer while it advertises (advertising paused
/// around the change), every `rpa_interval`; each one resolves with the host's IRK
/// (Core Vol 3 Part C §10.7).
#[tokio::test]
async fn a_private_address_is_renewed_while_advertising() {
    use gattling::proto::gap::ad::{AdvData, AdvDataBuilder};
    use gattling::proto::gap::privacy::resolve_rpa;
    use gattling::ScanOptions;
    let irk = [0x5Au8; 16];
    let private = SecurityOptions {
        privacy: true,
        rpa_interval: Duration::from_secs(1),
        identity_resolving_key: Some(irk),
        ..SecurityOptions::default()
    };
    let p = Host::open_with("virtual:sec-rpa-timer", options(private)).await.expect("peripheral");
    let c = Host::open("virtual:sec-rpa-timer").await.expect("central");
    let data = AdvDataBuilder::new().name("rotating").build().expect("adv data");
    p.advertise(&AdvertisingOptions { data, ..AdvertisingOptions::default() }).await.expect("advertise");
    let mut scan = c.scan(ScanOptions::default()).await.expect("scan");
    let mut seen = Vec::new();
    within(async {
        while seen.len() < 2 {
            let r = scan.next().await.expect("scan runs");
            if AdvData::parse_lenient(&r.data).local_name() == Some("rotating") && !seen.contains(&r.address.addr) {
                seen.push(r.address.addr);
            }
        }
    })
    .await;
    assert!(seen.iter().all(|a| resolve_rpa(&irk, *a)), "every address resolves with the IRK: {seen:?}");
    assert!(seen.iter().all(|a| *a != p.address().addr));
}

/// Pairing options change on a running host: without a Security Manager the peripheral refuses
/// with Pairing Not Supported; once turned on, the same link pairs.
#[tokio::test]
async fn security_options_change_on_a_running_host() {
    let off = SecurityOptions { enabled: false, ..SecurityOptions::default() };
    let (_c, cc, p, pc) = pair_of("sec-switch", SecurityOptions::default(), off).await;
    match within(cc.pair()).await {
        Err(Error::Pairing { reason: Reason::PairingNotSupported, remote: true }) => {}
        other => panic!("{other:?}"),
    }
    p.set_security(SecurityOptions::default());
    let got = within(cc.pair()).await.expect("paired once turned on");
    assert_paired(&got, &pc.security(), false, true);
}
