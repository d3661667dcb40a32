//! Conformance tests for the virtual LE controller, at the HCI level a host observes
//! (Core Vol 4 Part E; link-layer behaviour from Vol 6 Part B where the host can see it).
//!
//! Tests that found a controller bug stay as they are: their assertion messages start with "BUG:"
//! and say what the specification expects.

mod common;

use common::*;
use gattling_controller::{ControllerConfig, Fault, Relay, COMPLETED_REPORT_DELAY_US};
use gattling_proto::gap::BdAddr;
use gattling_proto::hci::command::{Command, ConnParams, Opcode};
use gattling_proto::hci::event::{subevent, Event, LeEvent};
use gattling_proto::hci::{status, PacketBoundary};
use gattling_proto::host::{HostEvent, Role};

const RANDOM: BdAddr = BdAddr([0x11, 0x22, 0x33, 0x44, 0x55, 0xC6]);
const RANDOM2: BdAddr = BdAddr([0x21, 0x32, 0x43, 0x54, 0x65, 0xD7]);

fn pair() -> (Bench, usize, usize) {
    let mut b = Bench::default();
    let (c, p) = (b.add_raw(ControllerConfig::default()), b.add_raw(ControllerConfig::default()));
    (b, c, p)
}

fn connected_raw() -> (Bench, usize, usize, u16, u16) {
    let (mut b, c, p) = pair();
    let (ch, ph) = b.connect(c, p);
    (b, c, p, ch, ph)
}

fn connected_hosts(config: ControllerConfig) -> (Bench, usize, usize, u16, u16) {
    let mut b = Bench::default();
    let (c, p) = (b.add_host(config), b.add_host(config));
    let (ch, ph) = b.connect(c, p);
    (b, c, p, ch, ph)
}

fn update_params() -> ConnParams {
    ConnParams { interval_min: 80, interval_max: 80, latency: 4, timeout: 500, min_ce_len: 0, max_ce_len: 0 }
}

// ---------------------------------------------------------------------------------------------
// 1. Reset and information commands (§7.3.2, §7.4, §7.8.2, §7.8.3)
// ---------------------------------------------------------------------------------------------

#[test]
fn reset_answers_command_complete_success_with_a_credit() {
    let mut b = Bench::default();
    let i = b.add_raw(ControllerConfig::default());
    let m = b.mark(i);
    b.send(i, &Command::Reset);
    b.pump();
    let ev = b.node(i).events_since(m);
    assert_eq!(ev, vec![Event::CommandComplete { num_packets: 1, opcode: Opcode::RESET, return_params: &[0] }]);
}

#[test]
fn read_local_version_reports_a_5_2_or_later_controller() {
    let mut b = Bench::default();
    let i = b.add_raw(ControllerConfig::default());
    let r = b.cmd(i, &Command::ReadLocalVersion);
    let p = r.complete();
    // Status, HCI_Version, HCI_Subversion(2), LMP_Version, Company_Identifier(2), LMP_Subversion(2).
    assert_eq!(p.len(), 9, "return parameters {p:02x?}");
    assert_eq!(p[0], 0);
    assert!(p[1] >= 0x0B, "LE Read Buffer Size v2 needs HCI version 5.2 (0x0B) or later, got {:#04x}", p[1]);
    assert_eq!(p[1], p[4], "HCI and LMP (Link Layer) versions agree");
}

#[test]
fn read_bd_addr_is_distinct_per_controller_and_honours_the_configured_address() {
    let mut b = Bench::default();
    let fixed = BdAddr([0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0x01]);
    let nodes = b.add_raws(5);
    let f = b.add_raw(ControllerConfig { public_address: Some(fixed), ..ControllerConfig::default() });
    let mut seen = std::collections::BTreeSet::new();
    for &i in &nodes {
        let p = b.ok(i, &Command::ReadBdAddr);
        assert_eq!(p.len(), 6);
        let a = BdAddr(p[..].try_into().unwrap());
        assert_eq!(a, b.addr(i), "Read BD_ADDR agrees with Radio::public_address");
        assert_ne!(a, BdAddr::default(), "a controller has a non-zero public address");
        assert!(seen.insert(a), "duplicate public address {a}");
    }
    assert_eq!(b.ok(f, &Command::ReadBdAddr), fixed.0.to_vec());
}

/// (octet, bit, opcode, parameters of the right length) of every command the controller is
/// expected to implement, from the Supported_Commands table (Core Vol 4 Part E §6.27).
const IMPLEMENTED: &[(usize, u8, u16, &[u8])] = &[
    (0, 5, 0x0406, &[0x01, 0x00, 0x13]),
    (5, 6, 0x0C01, &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F]),
    (5, 7, 0x0C03, &[]),
    (14, 3, 0x1001, &[]),
    (14, 5, 0x1003, &[]),
    (14, 7, 0x1005, &[]),
    (15, 1, 0x1009, &[]),
    (15, 5, 0x1405, &[0x40, 0x00]),
    (20, 4, 0x1408, &[1, 0]),
    (24, 5, 0x0C6C, &[]),
    (24, 6, 0x0C6D, &[1, 0]),
    (25, 0, 0x2001, &[0xFF, 0x0F, 0, 0, 0, 0, 0, 0]),
    (25, 1, 0x2002, &[]),
    (25, 2, 0x2003, &[]),
    (25, 4, 0x2005, &[1, 2, 3, 4, 5, 0xC6]),
    (25, 5, 0x2006, &[0xA0, 0, 0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0]),
    (25, 6, 0x2007, &[]),
    (25, 7, 0x2008, &[0; 32]),
    (26, 0, 0x2009, &[0; 32]),
    (26, 1, 0x200A, &[0]),
    (26, 2, 0x200B, &[0, 0x60, 0, 0x30, 0, 0, 0]),
    (26, 3, 0x200C, &[0, 0]),
    (26, 4, 0x200D, &[0x60, 0, 0x30, 0, 0, 0, 9, 9, 9, 9, 9, 9, 0, 24, 0, 40, 0, 0, 0, 0x90, 1, 0, 0, 0, 0]),
    (26, 5, 0x200E, &[]),
    (26, 6, 0x200F, &[]),
    (26, 7, 0x2010, &[]),
    (27, 0, 0x2011, &[0, 1, 2, 3, 4, 5, 6]),
    (27, 1, 0x2012, &[0, 1, 2, 3, 4, 5, 6]),
    (27, 2, 0x2013, &[1, 0, 24, 0, 40, 0, 0, 0, 0x90, 1, 0, 0, 0, 0]),
    (27, 5, 0x2016, &[1, 0]),
    (27, 6, 0x2017, &[0; 32]),
    (27, 7, 0x2018, &[]),
    (28, 0, 0x2019, &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    (28, 1, 0x201A, &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    (28, 2, 0x201B, &[1, 0]),
    (28, 3, 0x201C, &[]),
    (33, 4, 0x2020, &[1, 0, 24, 0, 40, 0, 0, 0, 0x90, 1, 0, 0, 0, 0]),
    (33, 5, 0x2021, &[1, 0, 0x3B]),
    (33, 6, 0x2022, &[1, 0, 0xFB, 0, 0x48, 0x08]),
    (33, 7, 0x2023, &[]),
    (34, 0, 0x2024, &[0xFB, 0, 0x48, 0x08]),
    (
        34,
        3,
        0x2027,
        &[
            0, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0,
        ],
    ),
    (34, 4, 0x2028, &[0, 1, 2, 3, 4, 5, 6]),
    (34, 5, 0x2029, &[]),
    (34, 6, 0x202A, &[]),
    (35, 1, 0x202D, &[0]),
    (35, 2, 0x202E, &[0x84, 0x03]),
    (35, 3, 0x202F, &[]),
    (35, 4, 0x2030, &[1, 0]),
    (35, 5, 0x2031, &[0, 3, 3]),
    (35, 6, 0x2032, &[1, 0, 0, 2, 2, 0, 0]),
    (41, 5, 0x2060, &[]),
];

#[test]
fn supported_commands_sets_exactly_the_bits_of_implemented_commands() {
    let mut b = Bench::default();
    let i = b.add_raw(ControllerConfig::default());
    let p = b.ok(i, &Command::ReadLocalSupportedCommands);
    assert_eq!(p.len(), 64, "Supported_Commands is 64 octets");
    let bit = |o: usize, n: u8| p[o] & (1 << n) != 0;
    assert!(bit(33, 6), "LE Set Data Length: octet 33 bit 6");
    assert!(bit(41, 5), "LE Read Buffer Size v2: octet 41 bit 5");
    assert!(bit(35, 6), "LE Set PHY: octet 35 bit 6");
    assert!(bit(28, 0), "LE Enable Encryption: octet 28 bit 0");
    assert!(!bit(0, 0), "Inquiry (BR/EDR) is not supported");
    assert!(!bit(27, 4), "LE Read Channel Map is not implemented");
    for o in 0..64 {
        for n in 0..8u8 {
            let listed = IMPLEMENTED.iter().any(|&(lo, ln, _, _)| (lo, ln) == (o, n));
            assert_eq!(bit(o, n), listed, "octet {o} bit {n}: supported bit and implemented command disagree");
        }
    }
}

#[test]
fn every_command_advertised_as_supported_is_recognised() {
    let mut b = Bench::default();
    let i = b.add_raw(ControllerConfig::default());
    for &(o, n, opcode, params) in IMPLEMENTED {
        let r = b.cmd_raw(i, Opcode(opcode), params);
        assert_ne!(r.status(), status::UNKNOWN_COMMAND, "octet {o} bit {n} ({opcode:#06x}) answered Unknown Command");
        assert_ne!(r.status(), status::INVALID_PARAMETERS, "{opcode:#06x} with well-formed parameters: {r:?}");
        let expects_status = matches!(opcode, 0x0406 | 0x200D | 0x2013 | 0x2016 | 0x2019 | 0x2032);
        assert_eq!(matches!(r, Reply::Status(_)), expects_status, "{opcode:#06x} answered with {r:?}");
    }
}

#[test]
fn le_buffer_sizes_reflect_the_configuration() {
    let mut b = Bench::default();
    let d = b.add_raw(ControllerConfig::default());
    let r = b.add_raw(ControllerConfig::rootcanal_like());
    let c = b.add_raw(ControllerConfig { acl_len: 100, acl_num: 3, public_address: None });
    for (i, len, num) in [(d, 251u16, 8u8), (r, 27, 20), (c, 100, 3)] {
        let v1 = b.ok(i, &Command::LeReadBufferSize);
        assert_eq!(v1, [len.to_le_bytes()[0], len.to_le_bytes()[1], num], "LE Read Buffer Size v1");
        let v2 = b.ok(i, &Command::LeReadBufferSizeV2);
        assert_eq!(v2.len(), 6, "v2 returns ACL length, ACL count, ISO length, ISO count");
        assert_eq!((le16(&v2, 0), v2[2]), (len, num), "LE Read Buffer Size v2");
        assert_eq!((le16(&v2, 3), v2[5]), (0, 0), "no ISO buffers");
        let legacy = b.ok(i, &Command::ReadBufferSize);
        assert_eq!(legacy.len(), 7);
        assert_eq!((le16(&legacy, 0), le16(&legacy, 3)), (len, num as u16), "Read Buffer Size");
    }
}

#[test]
fn local_features_announce_le_only_with_encryption_param_request_dle_and_2m() {
    let mut b = Bench::default();
    let i = b.add_raw(ControllerConfig::default());
    let f = b.ok(i, &Command::ReadLocalSupportedFeatures);
    assert_eq!(f.len(), 8);
    let lmp = u64::from_le_bytes(f[..].try_into().unwrap());
    assert!(lmp & (1 << 38) != 0, "LE Supported (Controller), bit 38");
    assert!(lmp & (1 << 37) != 0, "BR/EDR Not Supported, bit 37");
    let f = b.ok(i, &Command::LeReadLocalSupportedFeatures);
    let le = u64::from_le_bytes(f[..].try_into().unwrap());
    for (bit, name) in [(0, "LE Encryption"), (1, "Connection Parameters Request"), (5, "Data Length Ext"), (8, "2M")] {
        assert!(le & (1 << bit) != 0, "LE feature bit {bit} ({name})");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Legacy advertising and scanning (§7.8.5-§7.8.11, §7.7.65.2)
// ---------------------------------------------------------------------------------------------

fn reports_from(b: &Bench, scanner: usize, mark: usize, adv: BdAddr) -> Vec<(u8, u8, Vec<u8>)> {
    b.node(scanner).reports_since(mark).into_iter().filter(|r| r.2 == adv).map(|(t, at, _, d)| (t, at, d)).collect()
}

#[test]
fn passive_scan_reports_adv_ind_with_its_data() {
    let (mut b, s, a) = pair();
    let data = [2, 1, 6, 4, 9, b'a', b'b', b'c'];
    b.advertise(a, adv(0), &data, &[3, 9, b'x', b'y']);
    let m = b.mark(s);
    b.scan(s, false, true);
    b.run_for(200_000);
    let r = reports_from(&b, s, m, b.addr(a));
    assert_eq!(r, vec![(0, 0, data.to_vec())], "one ADV_IND report, public address, advertising data");
}

#[test]
fn passive_scan_reports_adv_scan_ind_as_2_and_adv_nonconn_ind_as_3() {
    let mut b = Bench::default();
    let [s, a, n] = b.add_raws(3)[..] else { unreachable!() };
    b.advertise(a, adv(2), &[2, 1, 4], &[]);
    b.advertise(n, adv(3), &[2, 1, 5], &[]);
    let m = b.mark(s);
    b.scan(s, false, true);
    b.run_for(200_000);
    assert_eq!(reports_from(&b, s, m, b.addr(a)), vec![(2, 0, vec![2, 1, 4])], "ADV_SCAN_IND");
    assert_eq!(reports_from(&b, s, m, b.addr(n)), vec![(3, 0, vec![2, 1, 5])], "ADV_NONCONN_IND");
}

#[test]
fn active_scan_adds_scan_rsp_reports_only_for_scannable_advertising() {
    let mut b = Bench::default();
    let [s, ind, scan_ind, nonconn, direct] = b.add_raws(5)[..] else { unreachable!() };
    let rsp = [5, 9, b'n', b'a', b'm', b'e'];
    b.advertise(ind, adv(0), &[2, 1, 6], &rsp);
    b.advertise(scan_ind, adv(2), &[2, 1, 4], &rsp);
    b.advertise(nonconn, adv(3), &[2, 1, 4], &rsp);
    let target = b.addr(s);
    b.advertise(direct, adv_directed(4, target), &[], &rsp);
    let m = b.mark(s);
    b.scan(s, true, true);
    b.run_for(200_000);
    let got = |i| reports_from(&b, s, m, b.addr(i));
    assert_eq!(got(ind), vec![(0, 0, vec![2, 1, 6]), (4, 0, rsp.to_vec())], "ADV_IND then its SCAN_RSP");
    assert_eq!(got(scan_ind), vec![(2, 0, vec![2, 1, 4]), (4, 0, rsp.to_vec())], "ADV_SCAN_IND then SCAN_RSP");
    assert_eq!(got(nonconn), vec![(3, 0, vec![2, 1, 4])], "ADV_NONCONN_IND is not scannable");
    assert_eq!(got(direct), vec![(1, 0, vec![])], "ADV_DIRECT_IND is not scannable and carries no data");
}

#[test]
fn passive_scan_never_reports_scan_rsp() {
    let mut b = Bench::default();
    let [s, a, c] = b.add_raws(3)[..] else { unreachable!() };
    b.advertise(a, adv(0), &[2, 1, 6], &[3, 9, b'x', b'y']);
    b.advertise(c, adv(2), &[2, 1, 4], &[3, 9, b'x', b'y']);
    let m = b.mark(s);
    b.scan(s, false, false);
    b.run_for(500_000);
    let r = b.node(s).reports_since(m);
    assert!(r.len() >= 4, "reports keep coming without duplicate filtering: {r:?}");
    assert!(r.iter().all(|r| r.0 != 4), "a passive scanner got a SCAN_RSP: {r:?}");
}

#[test]
fn duplicate_filtering_reports_each_address_and_type_once() {
    let mut b = Bench::default();
    let [s, a, c] = b.add_raws(3)[..] else { unreachable!() };
    b.advertise(a, adv(0), &[2, 1, 6], &[1, 9]);
    b.advertise(c, adv(3), &[2, 1, 4], &[]);
    let m = b.mark(s);
    b.scan(s, true, true);
    b.run_for(1_000_000);
    let mut r = b.node(s).reports_since(m);
    r.sort();
    let (aa, ca) = (b.addr(a), b.addr(c));
    let mut want = vec![(0, 0, aa, vec![2, 1, 6]), (4, 0, aa, vec![1, 9]), (3, 0, ca, vec![2, 1, 4])];
    want.sort();
    assert_eq!(r, want, "with filtering on, one report per (advertiser, type) over a second");
}

#[test]
fn without_duplicate_filtering_reports_repeat() {
    let (mut b, s, a) = pair();
    b.advertise(a, adv(3), &[2, 1, 4], &[]);
    let m = b.mark(s);
    b.scan(s, false, false);
    b.run_for(1_000_000);
    let n = b.node(s).reports_since(m).len();
    assert!(n >= 5, "expected repeated reports within a second, got {n}");
}

#[test]
fn scan_reenable_restarts_duplicate_filter() {
    let (mut b, s, a) = pair();
    b.advertise(a, adv(3), &[2, 1, 4], &[]);
    b.scan(s, false, true);
    b.run_for(200_000);
    b.ok(s, &Command::LeSetScanEnable { enable: false, filter_duplicates: true });
    let m = b.mark(s);
    b.ok(s, &Command::LeSetScanEnable { enable: true, filter_duplicates: true });
    b.run_for(200_000);
    assert_eq!(reports_from(&b, s, m, b.addr(a)).len(), 1, "a new scan reports the advertiser again, once");
}

#[test]
fn a_scanner_does_not_hear_its_own_advertising() {
    let (mut b, s, a) = pair();
    b.advertise(s, adv(0), &[2, 1, 6], &[1, 9]);
    b.advertise(a, adv(0), &[2, 1, 6], &[1, 9]);
    let m = b.mark(s);
    b.scan(s, true, false);
    b.run_for(300_000);
    let r = b.node(s).reports_since(m);
    assert!(!r.is_empty());
    assert!(r.iter().all(|r| r.2 == b.addr(a)), "scanner heard itself: {r:?}");
}

#[test]
fn random_own_address_type_advertises_the_le_set_random_address_value() {
    let (mut b, s, a) = pair();
    b.ok(a, &Command::LeSetRandomAddress(RANDOM));
    b.advertise(a, gattling_proto::hci::command::AdvParams { own_address_type: 1, ..adv(0) }, &[2, 1, 6], &[]);
    let m = b.mark(s);
    b.scan(s, false, true);
    b.run_for(200_000);
    let r = b.node(s).reports_since(m);
    assert_eq!(r, vec![(0, 1, RANDOM, vec![2, 1, 6])], "report carries address type 1 and the random address");
}

#[test]
fn advertising_enable_with_random_type_but_no_random_address_is_invalid() {
    let (mut b, s, a) = pair();
    b.ok(
        a,
        &Command::LeSetAdvertisingParameters(gattling_proto::hci::command::AdvParams { own_address_type: 1, ..adv(0) }),
    );
    let r = b.cmd(a, &Command::LeSetAdvertisingEnable(true));
    assert_eq!(r, Reply::Complete(vec![status::INVALID_PARAMETERS]), "§7.8.9: no random address => 0x12");
    let m = b.mark(s);
    b.scan(s, false, false);
    b.run_for(200_000);
    assert!(b.node(s).reports_since(m).is_empty(), "advertising did not start");
}

#[test]
fn scan_enable_with_random_type_but_no_random_address_is_invalid() {
    let (mut b, s, _) = pair();
    b.ok(
        s,
        &Command::LeSetScanParameters {
            scan_type: 0,
            interval: 0x60,
            window: 0x30,
            own_address_type: 1,
            filter_policy: 0,
        },
    );
    let r = b.cmd(s, &Command::LeSetScanEnable { enable: true, filter_duplicates: false });
    assert_eq!(r, Reply::Complete(vec![status::INVALID_PARAMETERS]));
}

#[test]
fn set_random_address_and_parameters_while_advertising_are_disallowed() {
    let (mut b, _, a) = pair();
    b.advertise(a, adv(0), &[], &[]);
    assert_eq!(b.cmd(a, &Command::LeSetRandomAddress(RANDOM)).status(), status::COMMAND_DISALLOWED);
    assert_eq!(b.cmd(a, &Command::LeSetAdvertisingParameters(adv(3))).status(), status::COMMAND_DISALLOWED);
    b.ok(a, &Command::LeSetAdvertisingEnable(false));
    b.ok(a, &Command::LeSetRandomAddress(RANDOM));
    b.ok(a, &Command::LeSetAdvertisingParameters(adv(3)));
}

#[test]
fn set_scan_parameters_while_scanning_is_disallowed() {
    let (mut b, s, _) = pair();
    b.scan(s, false, false);
    let r = b.cmd(
        s,
        &Command::LeSetScanParameters {
            scan_type: 1,
            interval: 0x60,
            window: 0x30,
            own_address_type: 0,
            filter_policy: 0,
        },
    );
    assert_eq!(r.status(), status::COMMAND_DISALLOWED);
    assert_eq!(b.cmd(s, &Command::LeSetRandomAddress(RANDOM)).status(), status::COMMAND_DISALLOWED);
}

#[test]
fn invalid_advertising_and_scan_parameters_are_rejected() {
    let (mut b, s, a) = pair();
    let base = adv(0);
    for bad in [
        gattling_proto::hci::command::AdvParams { adv_type: 5, ..base },
        gattling_proto::hci::command::AdvParams { interval_min: 0x1F, interval_max: 0x1F, ..base },
        gattling_proto::hci::command::AdvParams { interval_min: 0x100, interval_max: 0xA0, ..base },
        gattling_proto::hci::command::AdvParams { channel_map: 0, ..base },
        gattling_proto::hci::command::AdvParams { own_address_type: 4, ..base },
    ] {
        let r = b.cmd(a, &Command::LeSetAdvertisingParameters(bad));
        assert_eq!(r, Reply::Complete(vec![status::INVALID_PARAMETERS]), "{bad:?}");
    }
    for (scan_type, interval, window) in [(2, 0x60, 0x30), (0, 0x30, 0x60), (0, 3, 3), (0, 0x4001, 0x30)] {
        let r = b.cmd(
            s,
            &Command::LeSetScanParameters { scan_type, interval, window, own_address_type: 0, filter_policy: 0 },
        );
        assert_eq!(r, Reply::Complete(vec![status::INVALID_PARAMETERS]), "scan {scan_type} {interval} {window}");
    }
}

#[test]
fn advertising_data_longer_than_31_octets_is_invalid() {
    let (mut b, _, a) = pair();
    // Advertising_Data_Length 32 with a 31-octet field.
    let mut params = vec![32];
    params.extend_from_slice(&[0; 31]);
    let r = b.cmd_raw(a, Opcode::LE_SET_ADVERTISING_DATA, &params);
    assert_eq!(r, Reply::Complete(vec![status::INVALID_PARAMETERS]));
    let r = b.cmd_raw(a, Opcode::LE_SET_SCAN_RESPONSE_DATA, &params);
    assert_eq!(r, Reply::Complete(vec![status::INVALID_PARAMETERS]));
}

#[test]
fn advertising_disable_stops_reports() {
    let (mut b, s, a) = pair();
    b.advertise(a, adv(3), &[2, 1, 4], &[]);
    b.scan(s, false, false);
    b.run_for(200_000);
    b.ok(a, &Command::LeSetAdvertisingEnable(false));
    let m = b.mark(s);
    b.run_for(500_000);
    assert!(b.node(s).reports_since(m).is_empty());
}

#[test]
fn scan_disable_stops_reports() {
    let (mut b, s, a) = pair();
    b.advertise(a, adv(3), &[2, 1, 4], &[]);
    b.scan(s, false, false);
    b.run_for(200_000);
    b.ok(s, &Command::LeSetScanEnable { enable: false, filter_duplicates: false });
    let m = b.mark(s);
    b.run_for(500_000);
    assert!(b.node(s).reports_since(m).is_empty());
}

#[test]
fn toggling_scan_enable_does_not_multiply_the_report_rate() {
    fn reports_per_second(toggles: usize) -> usize {
        let (mut b, s, a) = pair();
        b.advertise(a, adv(3), &[2, 1, 4], &[]);
        b.scan(s, false, false);
        for _ in 0..toggles {
            b.ok(s, &Command::LeSetScanEnable { enable: false, filter_duplicates: false });
            b.ok(s, &Command::LeSetScanEnable { enable: true, filter_duplicates: false });
        }
        b.run_for(1);
        let m = b.mark(s);
        b.run_for(1_000_000);
        b.node(s).reports_since(m).len()
    }
    let once = reports_per_second(0);
    let toggled = reports_per_second(5);
    assert_eq!(
        toggled,
        once,
        "BUG: each disable/enable of scanning within one scan tick leaves the old ScanTick timer chain \
         running, so the scanner hears every advertiser {}x as often (timer leak)",
        toggled as f64 / once as f64
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Directed advertising (§7.8.5, Vol 6 Part B §4.4.2.4)
// ---------------------------------------------------------------------------------------------

#[test]
fn adv_direct_ind_is_reported_only_to_the_targeted_scanner() {
    for adv_type in [1u8, 4] {
        let mut b = Bench::default();
        let [target, other, d] = b.add_raws(3)[..] else { unreachable!() };
        let (mt, mo) = (b.mark(target), b.mark(other));
        b.scan(target, false, true);
        b.scan(other, false, true);
        b.advertise(d, adv_directed(adv_type, b.addr(target)), &[], &[]);
        b.run_for(200_000);
        assert_eq!(reports_from(&b, target, mt, b.addr(d)), vec![(1, 0, vec![])], "type {adv_type}: target");
        assert!(reports_from(&b, other, mo, b.addr(d)).is_empty(), "type {adv_type}: others must not hear it");
    }
}

#[test]
fn directed_advertising_accepts_only_the_targeted_initiator() {
    let mut b = Bench::default();
    let [target, other, d] = b.add_raws(3)[..] else { unreachable!() };
    b.advertise(d, adv_directed(4, b.addr(target)), &[], &[]);
    let (mo, md) = (b.mark(other), b.mark(d));
    assert_eq!(b.cmd(other, &create_connection(b.addr(d), 0, 0, ConnParams::default())).status(), 0);
    b.run_for(100_000);
    assert!(b.node(other).conn_completes_since(mo).is_empty(), "a non-target initiator connected");
    assert!(b.node(d).conn_completes_since(md).is_empty());
    let mt = b.mark(target);
    b.ok(target, &create_connection(b.addr(d), 0, 0, ConnParams::default()));
    let c = b.node(target).conn_completes_since(mt);
    assert_eq!((c.len(), c[0].status, c[0].role), (1, 0, 0));
    let p = b.node(d).conn_completes_since(md);
    assert_eq!((p.len(), p[0].status, p[0].role, p[0].peer_address), (1, 0, 1, b.addr(target)));
    b.ok(other, &Command::LeCreateConnectionCancel);
}

#[test]
fn high_duty_directed_advertising_times_out_after_1_28_s_with_0x3c() {
    let (mut b, t, d) = pair();
    let m = b.mark(d);
    let t0 = b.now;
    b.advertise(d, adv_directed(1, b.addr(t)), &[], &[]);
    b.run_until(t0 + 1_279_999);
    assert!(b.node(d).conn_completes_since(m).is_empty(), "timed out before 1.28 s");
    b.run_until(t0 + 1_280_000);
    let c = b.node(d).conn_completes_since(m);
    assert_eq!(c.len(), 1, "exactly one LE Connection Complete at 1.28 s");
    assert_eq!(c[0].status, status::ADVERTISING_TIMEOUT);
    // Advertising is off afterwards: its parameters may change again (§7.8.5 would say 0x0C otherwise).
    b.ok(d, &Command::LeSetAdvertisingParameters(adv(0)));
    b.run_for(2_000_000);
    assert_eq!(b.node(d).conn_completes_since(m).len(), 1);
}

#[test]
fn low_duty_directed_advertising_does_not_time_out() {
    let (mut b, t, d) = pair();
    let m = b.mark(d);
    b.advertise(d, adv_directed(4, b.addr(t)), &[], &[]);
    b.run_for(5_000_000);
    assert!(b.node(d).conn_completes_since(m).is_empty());
}

#[test]
fn high_duty_directed_advertising_connects_before_the_timeout_without_0x3c() {
    let (mut b, t, d) = pair();
    let md = b.mark(d);
    b.advertise(d, adv_directed(1, b.addr(t)), &[], &[]);
    b.run_for(500_000);
    b.ok(t, &create_connection(b.addr(d), 0, 0, ConnParams::default()));
    b.run_for(2_000_000);
    let c = b.node(d).conn_completes_since(md);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!((c[0].status, c[0].role), (0, 1));
}

#[test]
fn high_duty_directed_timeout_restarts_when_advertising_is_re_enabled() {
    let (mut b, t, d) = pair();
    let m = b.mark(d);
    let t0 = b.now;
    b.advertise(d, adv_directed(1, b.addr(t)), &[], &[]);
    b.run_until(t0 + 1_000_000);
    b.ok(d, &Command::LeSetAdvertisingEnable(false));
    b.ok(d, &Command::LeSetAdvertisingEnable(true));
    b.run_until(t0 + 2_279_999);
    let early = b.node(d).conn_completes_since(m);
    assert!(
        early.is_empty(),
        "BUG: re-enabled at 1.0 s, high duty directed advertising must run 1.28 s from then (until 2.28 s), \
         but the first enable's DirectedAdvTimeout timer ended it early: {early:?}"
    );
    b.run_until(t0 + 2_280_000);
    assert_eq!(b.node(d).conn_completes_since(m).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// 4. Connections (§7.8.12, §7.8.13, §7.7.65.1, §7.7.65.10)
// ---------------------------------------------------------------------------------------------

#[test]
fn connection_complete_gives_roles_parameters_and_peer_addresses() {
    let (mut b, c, p) = pair();
    let params = ConnParams { interval_min: 30, interval_max: 36, latency: 2, timeout: 300, ..ConnParams::default() };
    let (mc, mp) = (b.mark(c), b.mark(p));
    b.connect_with(c, p, params);
    let cc = b.node(c).conn_completes_since(mc)[0];
    let pc = b.node(p).conn_completes_since(mp)[0];
    let order: Vec<_> = b.node(c).events_since(mc);
    assert!(
        matches!(
            order[..],
            [
                Event::CommandStatus { status: 0, opcode: Opcode::LE_CREATE_CONNECTION, .. },
                Event::Le(LeEvent::ConnectionComplete(_))
            ]
        ),
        "Command Status comes before the connection complete: {order:?}"
    );
    assert_eq!(cc.subevent, subevent::CONNECTION_COMPLETE, "legacy event without LE mask bit 9");
    assert_eq!(pc.subevent, subevent::CONNECTION_COMPLETE);
    assert_eq!((cc.role, pc.role), (0, 1), "central role 0, peripheral role 1");
    assert_eq!((cc.peer_address_type, cc.peer_address), (0, b.addr(p)));
    assert_eq!((pc.peer_address_type, pc.peer_address), (0, b.addr(c)));
    assert!((params.interval_min..=params.interval_max).contains(&cc.interval), "interval within the range");
    assert_eq!((cc.interval, cc.latency, cc.supervision_timeout), (pc.interval, pc.latency, pc.supervision_timeout));
    assert_eq!((cc.latency, cc.supervision_timeout), (2, 300));
    assert!(cc.handle <= 0x0EFF && pc.handle <= 0x0EFF, "handles are in 0x000..=0xEFF");
    assert_eq!(b.radio.links(), 1);
}

#[test]
fn connection_with_random_addresses_reports_random_types_on_both_sides() {
    let (mut b, c, p) = pair();
    b.ok(p, &Command::LeSetRandomAddress(RANDOM));
    b.ok(c, &Command::LeSetRandomAddress(RANDOM2));
    b.advertise(p, gattling_proto::hci::command::AdvParams { own_address_type: 1, ..adv(0) }, &[], &[]);
    let (mc, mp) = (b.mark(c), b.mark(p));
    // The public address of the advertiser is not what it advertises with: no connection.
    b.ok(c, &create_connection(b.addr(p), 0, 1, ConnParams::default()));
    assert!(b.node(c).conn_completes_since(mc).is_empty());
    b.ok(c, &Command::LeCreateConnectionCancel);
    // Right address, wrong type: no connection either.
    let mc2 = b.mark(c);
    b.ok(c, &create_connection(RANDOM, 0, 1, ConnParams::default()));
    assert!(b.node(c).conn_completes_since(mc2).iter().all(|c| c.status != 0));
    b.ok(c, &Command::LeCreateConnectionCancel);
    let mc3 = b.mark(c);
    b.ok(c, &create_connection(RANDOM, 1, 1, ConnParams::default()));
    let cc = b.node(c).conn_completes_since(mc3);
    let pc = b.node(p).conn_completes_since(mp);
    assert_eq!(cc.len(), 1);
    assert_eq!((cc[0].status, cc[0].peer_address_type, cc[0].peer_address), (0, 1, RANDOM));
    assert_eq!(pc.len(), 1);
    assert_eq!((pc[0].status, pc[0].peer_address_type, pc[0].peer_address), (0, 1, RANDOM2));
}

#[test]
fn enhanced_connection_complete_only_when_le_mask_bit_9_is_set() {
    let (mut b, c, p) = pair();
    b.le_mask(c, LE_MASK_BENCH | LE_MASK_ENHANCED_CONN);
    let (mc, mp) = (b.mark(c), b.mark(p));
    b.connect(c, p);
    let cc = b.node(c).conn_completes_since(mc);
    let pc = b.node(p).conn_completes_since(mp);
    assert_eq!(cc[0].subevent, subevent::ENHANCED_CONNECTION_COMPLETE, "bit 9 set: enhanced (0x0A) only");
    assert_eq!((cc[0].local_rpa, cc[0].peer_rpa), (BdAddr::default(), BdAddr::default()), "no RPAs in use");
    assert_eq!(cc[0].peer_address, b.addr(p));
    assert_eq!(pc[0].subevent, subevent::CONNECTION_COMPLETE, "bit 9 clear: legacy (0x01)");
    // Only bit 9 (legacy bit 0 cleared) still gives the enhanced event.
    let mut b2 = Bench::default();
    let (c2, p2) = (b2.add_raw(ControllerConfig::default()), b2.add_raw(ControllerConfig::default()));
    b2.le_mask(c2, LE_MASK_ENHANCED_CONN);
    let m = b2.mark(c2);
    b2.advertise(p2, adv(0), &[], &[]);
    b2.ok(c2, &create_connection(b2.addr(p2), 0, 0, ConnParams::default()));
    let cc = b2.node(c2).conn_completes_since(m);
    assert_eq!(cc.len(), 1);
    assert_eq!(cc[0].subevent, subevent::ENHANCED_CONNECTION_COMPLETE);
}

#[test]
fn host_sees_connected_in_both_roles() {
    let (b, c, p, ch, ph) = connected_hosts(ControllerConfig::default());
    let central = b.node(c).host_events.iter().find_map(|e| match e {
        HostEvent::Connected(i) => Some(*i),
        _ => None,
    });
    let peripheral = b.node(p).host_events.iter().find_map(|e| match e {
        HostEvent::Connected(i) => Some(*i),
        _ => None,
    });
    let (ci, pi) = (central.expect("central Connected"), peripheral.expect("peripheral Connected"));
    assert_eq!((ci.handle, ci.role, ci.peer.addr), (ch, Role::Central, b.addr(p)));
    assert_eq!((pi.handle, pi.role, pi.peer.addr), (ph, Role::Peripheral, b.addr(c)));
}

#[test]
fn advertising_stops_when_a_connection_is_made() {
    let mut b = Bench::default();
    let [c, p, s] = b.add_raws(3)[..] else { unreachable!() };
    b.connect(c, p);
    let m = b.mark(s);
    b.scan(s, false, false);
    b.run_for(500_000);
    assert!(reports_from(&b, s, m, b.addr(p)).is_empty(), "the peripheral still advertises");
    // Parameters may change again: advertising is disabled (§7.8.5 gives 0x0C while enabled).
    b.ok(p, &Command::LeSetAdvertisingParameters(adv(3)));
}

#[test]
fn create_connection_completes_when_the_target_starts_advertising_later() {
    let (mut b, c, p) = pair();
    let (mc, mp) = (b.mark(c), b.mark(p));
    assert_eq!(b.cmd(c, &create_connection(b.addr(p), 0, 0, ConnParams::default())), Reply::Status(0));
    b.run_for(1_000_000);
    assert!(b.node(c).conn_completes_since(mc).is_empty());
    b.advertise(p, adv(0), &[], &[]);
    assert_eq!(b.node(c).conn_completes_since(mc).len(), 1);
    assert_eq!(b.node(p).conn_completes_since(mp).len(), 1);
}

#[test]
fn create_connection_does_not_connect_to_non_connectable_advertising() {
    for adv_type in [2u8, 3] {
        let (mut b, c, p) = pair();
        b.advertise(p, adv(adv_type), &[], &[]);
        let mc = b.mark(c);
        b.ok(c, &create_connection(b.addr(p), 0, 0, ConnParams::default()));
        b.run_for(500_000);
        assert!(b.node(c).conn_completes_since(mc).is_empty(), "connected to adv type {adv_type}");
        assert_eq!(b.radio.links(), 0);
    }
}

#[test]
fn create_connection_cancel_gives_command_complete_then_connection_complete_0x02() {
    let (mut b, c, _) = pair();
    let absent = BdAddr([1, 2, 3, 4, 5, 6]);
    assert_eq!(b.cmd(c, &create_connection(absent, 0, 0, ConnParams::default())), Reply::Status(0));
    b.run_for(1_000_000);
    let m = b.mark(c);
    b.send(c, &Command::LeCreateConnectionCancel);
    b.pump();
    let ev = b.node(c).events_since(m);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(
        ev[0],
        Event::CommandComplete { num_packets: 1, opcode: Opcode::LE_CREATE_CONNECTION_CANCEL, return_params: &[0] }
    );
    match ev[1] {
        Event::Le(LeEvent::ConnectionComplete(cc)) => {
            assert_eq!(cc.status, status::UNKNOWN_CONNECTION_ID);
            assert_eq!(cc.subevent, subevent::CONNECTION_COMPLETE);
        }
        other => panic!("expected LE Connection Complete after the cancel, got {other:?}"),
    }
    // Initiating is over: a new Create Connection is accepted.
    assert_eq!(b.cmd(c, &create_connection(absent, 0, 0, ConnParams::default())), Reply::Status(0));
}

#[test]
fn create_connection_cancel_uses_the_enhanced_event_when_enabled() {
    let (mut b, c, _) = pair();
    b.le_mask(c, LE_MASK_BENCH | LE_MASK_ENHANCED_CONN);
    b.ok(c, &create_connection(BdAddr([1, 2, 3, 4, 5, 6]), 0, 0, ConnParams::default()));
    let m = b.mark(c);
    b.ok(c, &Command::LeCreateConnectionCancel);
    let cc = b.node(c).conn_completes_since(m);
    assert_eq!(cc.len(), 1);
    assert_eq!((cc[0].status, cc[0].subevent), (status::UNKNOWN_CONNECTION_ID, subevent::ENHANCED_CONNECTION_COMPLETE));
}

#[test]
fn create_connection_cancel_with_nothing_pending_is_disallowed() {
    let (mut b, c, _) = pair();
    let m = b.mark(c);
    let r = b.cmd(c, &Command::LeCreateConnectionCancel);
    assert_eq!(r, Reply::Complete(vec![status::COMMAND_DISALLOWED]));
    assert!(b.node(c).conn_completes_since(m).is_empty(), "no Connection Complete after a failed cancel");
}

#[test]
fn second_create_connection_while_one_is_pending_is_disallowed() {
    let (mut b, c, p) = pair();
    b.ok(c, &create_connection(BdAddr([1, 2, 3, 4, 5, 6]), 0, 0, ConnParams::default()));
    let r = b.cmd(c, &create_connection(b.addr(p), 0, 0, ConnParams::default()));
    assert_eq!(r, Reply::Status(status::COMMAND_DISALLOWED));
    // The first attempt is still the pending one: the peripheral advertising does not connect.
    let mc = b.mark(c);
    b.advertise(p, adv(0), &[], &[]);
    assert!(b.node(c).conn_completes_since(mc).is_empty());
}

#[test]
fn create_connection_with_invalid_connection_parameters_is_rejected_with_0x12() {
    let (mut b, c, p) = pair();
    b.advertise(p, adv(0), &[], &[]);
    let d = ConnParams::default();
    for bad in [
        ConnParams { interval_min: 5, ..d },
        ConnParams { interval_max: 3201, ..d },
        ConnParams { interval_min: 50, interval_max: 40, ..d },
        ConnParams { latency: 500, ..d },
        ConnParams { timeout: 9, ..d },
        ConnParams { timeout: 3201, ..d },
        // timeout must exceed (1 + latency) * interval_max * 2: 100 ms vs (1+0)*50 ms*2.
        ConnParams { interval_min: 40, interval_max: 40, latency: 0, timeout: 10, ..d },
        ConnParams { interval_min: 40, interval_max: 40, latency: 3, timeout: 40, ..d },
    ] {
        let m = b.mark(c);
        let r = b.cmd(c, &create_connection(b.addr(p), 0, 0, bad));
        assert_eq!(r, Reply::Status(status::INVALID_PARAMETERS), "{bad:?}");
        assert!(b.node(c).conn_completes_since(m).is_empty());
    }
    let r = b.cmd(c, &create_connection(b.addr(p), 4, 0, d));
    assert_eq!(r, Reply::Status(status::INVALID_PARAMETERS), "peer address type 4");
    let r = b.cmd(c, &create_connection(b.addr(p), 0, 1, d));
    assert_eq!(r, Reply::Status(status::INVALID_PARAMETERS), "random own address type without a random address");
    assert_eq!(b.radio.links(), 0);
}

#[test]
fn create_connection_with_scan_window_larger_than_scan_interval_is_rejected() {
    let (mut b, c, p) = pair();
    b.advertise(p, adv(0), &[], &[]);
    let peer = b.addr(p);
    for (interval, window) in [(0x10u16, 0x20u16), (3, 3), (0x4001, 0x10)] {
        let cmd = Command::LeCreateConnection(gattling_proto::hci::command::CreateConnection {
            scan_interval: interval,
            scan_window: window,
            filter_policy: 0,
            peer_address_type: 0,
            peer_address: peer,
            own_address_type: 0,
            params: ConnParams::default(),
        });
        let r = b.cmd(c, &cmd);
        assert_eq!(
            r,
            Reply::Status(status::INVALID_PARAMETERS),
            "BUG: LE Create Connection with LE_Scan_Interval {interval:#06x} / LE_Scan_Window {window:#06x} \
             (range 0x0004..=0x4000, window <= interval, §7.8.12) must fail with 0x12"
        );
    }
}

#[test]
fn one_controller_can_hold_more_than_256_links() {
    // The worker reports each connection; a connection normally takes milliseconds, so a long
    // silence means the radio hangs (the thread is then left spinning until the process ends).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut b = Bench::default();
        let central = b.add_raw(ControllerConfig::default());
        let mut handles = std::collections::BTreeSet::new();
        for n in 0..260usize {
            let p = b.add_raw(ControllerConfig::default());
            let m = b.mark(central);
            b.advertise(p, adv(0), &[], &[]);
            b.send(central, &create_connection(b.addr(p), 0, 0, ConnParams::default()));
            b.pump();
            let cc = b.node(central).conn_completes_since(m);
            assert_eq!(cc.len(), 1, "link {n}: {cc:?}");
            if cc[0].status == 0 {
                assert!(handles.insert(cc[0].handle), "link {n}: handle {:#x} reused while in use", cc[0].handle);
                assert!(cc[0].handle <= 0x0EFF);
            }
            let _ = tx.send(Some(n));
        }
        let _ = tx.send(None);
        handles.len()
    });
    let mut last = None;
    loop {
        match rx.recv_timeout(std::time::Duration::from_secs(10)) {
            Ok(Some(n)) => last = Some(n),
            Ok(None) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!(
                "BUG: connection #{} of one controller never completes (the radio hangs): alloc_handle steps handles with `(h + 1) & 0x0EFF`, which clears bit 8, so only handles \
                 0x000..=0x0FF are ever used and the search for a free handle loops forever once all 256 are taken",
                last.map_or(1, |n| n + 2),
            ),
            Err(e) => panic!("worker failed after {last:?} links: {e}"),
        }
    }
}

#[test]
fn connection_handles_stay_in_range_over_300_connections() {
    // 300 connect/disconnect cycles on one controller: every handle is valid (§5.4.2).
    let mut b = Bench::default();
    let [c, p] = b.add_raws(2)[..] else { unreachable!() };
    let mut seen = Vec::new();
    for _ in 0..300 {
        let (ch, _) = b.connect(c, p);
        assert!(ch <= 0x0EFF, "handle {ch:#x} out of range");
        seen.push(ch);
        b.ok(c, &Command::Disconnect { handle: ch, reason: 0x13 });
    }
    assert_eq!(seen[1], seen[0] + 1, "handles advance");
}

// ---------------------------------------------------------------------------------------------
// 5. ACL data and buffer credits (§4.1.1, §5.4.2, §7.7.19, §7.7.26)
// ---------------------------------------------------------------------------------------------

#[test]
fn acl_reaches_the_peer_under_the_peers_handle_with_le_boundary_flags() {
    let mut b = Bench::default();
    let [c, p, x] = b.add_raws(3)[..] else { unreachable!() };
    // A first link makes the central's next handle differ from the peripheral's.
    let (ch0, _) = b.connect(c, x);
    let (ch, ph) = b.connect(c, p);
    assert_ne!(ch, ph, "test setup: distinct handles on the two sides");
    assert_ne!(ch, ch0);
    let (mp, mx, mc) = (b.mark(p), b.mark(x), b.mark(c));
    b.send_acl(c, ch, PacketBoundary::FirstNonFlushable, &[5, 0, 4, 0, 1, 2, 3, 4, 5]);
    b.send_acl(c, ch, PacketBoundary::Continuing, &[6, 7]);
    b.pump();
    let got = b.node(p).acl_since(mp);
    assert_eq!(
        got,
        vec![
            Acl { handle: ph, boundary: PacketBoundary::FirstFlushable, data: vec![5, 0, 4, 0, 1, 2, 3, 4, 5] },
            Acl { handle: ph, boundary: PacketBoundary::Continuing, data: vec![6, 7] },
        ],
        "controller-to-host LE ACL: start fragments as 0b10, continuations 0b01, the receiver's own handle"
    );
    assert!(b.node(x).acl_since(mx).is_empty(), "nothing leaks to another link");
    assert!(b.node(c).acl_since(mc).is_empty(), "no echo to the sender");
    // And back.
    let mc = b.mark(c);
    b.send_acl(p, ph, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 0x52]);
    b.pump();
    assert_eq!(
        b.node(c).acl_since(mc),
        vec![Acl { handle: ch, boundary: PacketBoundary::FirstFlushable, data: vec![1, 0, 4, 0, 0x52] }]
    );
}

fn completion_reports(b: &Bench, node: usize, mark: usize) -> Vec<Vec<(u16, u16)>> {
    b.node(node)
        .events_since(mark)
        .into_iter()
        .filter_map(|e| match e {
            Event::NumberOfCompletedPackets(c) => Some(c.iter().collect::<Vec<_>>()),
            _ => None,
        })
        .collect()
}

#[test]
fn sender_gets_number_of_completed_packets_in_batches_of_half_its_buffers() {
    let (mut b, c, _, ch, _) = connected_raw();
    assert_eq!(ControllerConfig::default().acl_num, 8);
    let m = b.mark(c);
    for i in 0..20u8 {
        b.send_acl(c, ch, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, i]);
        b.pump();
        let reported = b.node(c).completed_since(m, ch);
        assert_eq!(reported, u32::from(i + 1) / 4 * 4, "reported as each 4th of 8 buffers completes");
    }
    let nocp = completion_reports(&b, c, m);
    assert_eq!(nocp, vec![vec![(ch, 4)]; 5], "NOCP names the sender's handle, 4 packets each");
}

#[test]
fn a_lone_completed_packet_is_reported_after_the_report_delay() {
    let (mut b, c, _, ch, _) = connected_raw();
    let m = b.mark(c);
    b.send_acl(c, ch, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 1]);
    b.pump();
    assert_eq!(b.node(c).completed_since(m, ch), 0, "held back while 7 of 8 buffers are free");
    b.run_for(COMPLETED_REPORT_DELAY_US - 1);
    assert_eq!(b.node(c).completed_since(m, ch), 0);
    b.run_for(1);
    assert_eq!(completion_reports(&b, c, m), vec![vec![(ch, 1)]], "reported when the delay is up");
    b.run_for(10 * COMPLETED_REPORT_DELAY_US);
    assert_eq!(b.node(c).completed_since(m, ch), 1, "reported once");
}

#[test]
fn held_back_completions_go_out_before_the_next_packet_for_that_host() {
    let (mut b, c, p, ch, ph) = connected_raw();
    let m = b.mark(c);
    b.send_acl(c, ch, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 0x0A]);
    b.pump();
    assert_eq!(b.node(c).completed_since(m, ch), 0);
    // The answer: the central's host gets its completion in the same read, just before it.
    b.send_acl(p, ph, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 0x0B]);
    b.pump();
    let got = b.node(c).events_since(m);
    assert_eq!(completion_reports(&b, c, m), vec![vec![(ch, 1)]]);
    assert_eq!(b.node(c).acl_since(m).len(), 1);
    let tap = &b.node(c).tap;
    let (nocp_at, acl_at) = (
        tap.iter().rposition(|t| t.get(..2) == Some(&[0x04, 0x13])),
        tap.iter().rposition(|t| t.first() == Some(&0x02)),
    );
    assert!(nocp_at < acl_at, "completion before the ACL packet: {got:?}");
    // The peripheral's own completion waits for the next packet to it, or the delay.
    let mp = b.mark(p);
    b.run_for(COMPLETED_REPORT_DELAY_US);
    assert_eq!(completion_reports(&b, p, mp), vec![vec![(ph, 1)]]);
}

#[test]
fn held_back_completions_go_out_before_disconnection_complete() {
    let (mut b, c, p, ch, ph) = connected_raw();
    let m = b.mark(c);
    b.send_acl(c, ch, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 1]);
    b.pump();
    b.send(p, &Command::Disconnect { handle: ph, reason: 0x13 });
    b.pump();
    assert_eq!(completion_reports(&b, c, m), vec![vec![(ch, 1)]]);
    assert_eq!(b.node(c).disconnections_since(m), vec![(0, ch, 0x13)]);
    let tap = &b.node(c).tap;
    let nocp_at = tap.iter().rposition(|t| t.get(..2) == Some(&[0x04, 0x13]));
    let disc_at = tap.iter().rposition(|t| t.get(..2) == Some(&[0x04, 0x05]));
    assert!(nocp_at < disc_at, "the host hears of its buffers while it still knows the handle");
    b.run_for(10 * COMPLETED_REPORT_DELAY_US);
    assert_eq!(b.node(c).completed_since(m, ch), 1, "and not again");
}

#[test]
fn a_512_byte_att_pdu_fragmented_to_27_byte_acl_arrives_whole() {
    let (mut b, c, p, ch, ph) = connected_hosts(ControllerConfig::rootcanal_like());
    assert_eq!(b.host_mut(c).acl_buffers(), (27, 20));
    let mut pdu = vec![0x52, 0x03, 0x00];
    pdu.extend((0..509).map(|i| (i * 7 % 251) as u8));
    assert_eq!(pdu.len(), 512);
    let (mp, mc) = (b.mark(p), b.mark(c));
    b.host_mut(c).send_att(ch, &pdu).unwrap();
    b.pump();
    assert_eq!(b.node(p).att, vec![(ph, pdu.clone())], "the peer's host reassembled the PDU");
    let frags = b.node(p).acl_since(mp);
    assert_eq!(frags.len(), 516usize.div_ceil(27), "516 L2CAP bytes in 27-byte fragments");
    assert!(frags.iter().all(|f| f.handle == ph && f.data.len() <= 27));
    assert_eq!(frags[0].boundary, PacketBoundary::FirstFlushable);
    assert!(frags[1..].iter().all(|f| f.boundary == PacketBoundary::Continuing));
    assert_eq!(b.node(c).completed_since(mc, ch), frags.len() as u32);
    assert_eq!(b.host_mut(c).acl_free(), 20, "all credits came back");
    // The other direction too.
    b.host_mut(p).send_att(ph, &pdu).unwrap();
    b.pump();
    assert_eq!(b.node(c).att, vec![(ch, pdu)]);
}

#[test]
fn acl_for_a_handle_the_host_does_not_own_is_dropped_and_logged() {
    let mut b = Bench::default();
    let [c, p, x] = b.add_raws(3)[..] else { unreachable!() };
    let (ch, ph) = b.connect(c, p);
    b.radio.take_log();
    let marks: Vec<usize> = [c, p, x].iter().map(|&i| b.mark(i)).collect();
    // x has no connection, though c and p both own handle numbers like these.
    b.send_acl(x, ch, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 9]);
    b.send_acl(x, ph, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 9]);
    b.send_acl(c, 0x0ABC, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 9]);
    b.pump();
    for (&i, &m) in [c, p, x].iter().zip(&marks) {
        assert!(b.node(i).tap[m..].is_empty(), "node {i} got {:02x?}", &b.node(i).tap[m..]);
    }
    let log = b.radio.take_log();
    let dropped: Vec<_> = log.iter().filter(|(_, w)| w.contains("handle")).collect();
    assert_eq!(dropped.len(), 3, "each stray packet is logged: {log:?}");
    assert_eq!(dropped.iter().filter(|(id, _)| *id == b.id(x)).count(), 2);
    assert_eq!(dropped.iter().filter(|(id, _)| *id == b.id(c)).count(), 1);
}

#[test]
fn acl_longer_than_the_controllers_buffer_is_dropped_and_logged() {
    let mut b = Bench::default();
    let c = b.add_raw(ControllerConfig::rootcanal_like());
    let p = b.add_raw(ControllerConfig::rootcanal_like());
    let (ch, _) = b.connect(c, p);
    b.radio.take_log();
    let (mc, mp) = (b.mark(c), b.mark(p));
    b.send_acl(c, ch, PacketBoundary::FirstNonFlushable, &[0; 28]);
    b.pump();
    assert!(b.node(p).acl_since(mp).is_empty());
    assert_eq!(b.node(c).completed_since(mc, ch), 0);
    assert!(!b.radio.take_log().is_empty());
}

#[test]
fn delayed_acl_without_credits_overflows_with_data_buffer_overflow_event() {
    let (mut b, c, p, ch, ph) = connected_raw();
    b.radio.set_fault(Fault::DelayAcl(1_000));
    let (mc, mp) = (b.mark(c), b.mark(p));
    for i in 0..9u8 {
        b.send_acl(c, ch, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, i]);
    }
    b.pump();
    let ev = b.node(c).events_since(mc);
    assert_eq!(
        ev,
        vec![Event::Unknown { code: DATA_BUFFER_OVERFLOW, params: &[0x01] }],
        "the 9th packet of 8 buffers: Data Buffer Overflow (Link_Type 0x01 ACL), and no completions yet"
    );
    assert!(b.node(p).acl_since(mp).is_empty(), "nothing delivered before the delay");
    b.run_for(999);
    assert!(b.node(p).acl_since(mp).is_empty(), "nothing delivered before the delay");
    b.run_for(1);
    let got = b.node(p).acl_since(mp);
    assert_eq!(got.len(), 8, "the 8 buffered packets arrive, the overflowing one is lost");
    assert!(got.iter().enumerate().all(|(i, a)| a.handle == ph && a.data == [1, 0, 4, 0, i as u8]), "in order");
    assert_eq!(b.node(c).completed_since(mc, ch), 8);
    // Credits are back: the next packet is accepted.
    let mc = b.mark(c);
    b.send_acl(c, ch, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 0xFF]);
    b.run_for(1_000 + COMPLETED_REPORT_DELAY_US);
    assert_eq!(b.node(c).completed_since(mc, ch), 1);
}

#[test]
fn data_buffer_overflow_respects_event_mask_bit_25() {
    let (mut b, c, _, ch, _) = connected_raw();
    b.ok(c, &Command::SetEventMask(EVENT_MASK_BENCH & !EVENT_MASK_DATA_BUFFER_OVERFLOW));
    b.radio.set_fault(Fault::DelayAcl(1_000));
    let mc = b.mark(c);
    for i in 0..9u8 {
        b.send_acl(c, ch, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, i]);
    }
    b.pump();
    let ev = b.node(c).events_since(mc);
    assert!(
        ev.is_empty(),
        "BUG: Data Buffer Overflow (0x1A) is masked by Event_Mask bit 25 (§7.3.1) but was delivered: {ev:?}"
    );
}

#[test]
fn host_with_delayed_acl_never_overflows_and_everything_arrives() {
    let (mut b, c, p, ch, ph) = connected_hosts(ControllerConfig::rootcanal_like());
    b.radio.set_fault(Fault::DelayAcl(5_000));
    let pdus: Vec<Vec<u8>> =
        (0..10u8).map(|i| vec![0x52, i, 0].into_iter().chain(std::iter::repeat_n(i, 100)).collect()).collect();
    let mc = b.mark(c);
    for pdu in &pdus {
        b.host_mut(c).send_att(ch, pdu).unwrap();
    }
    b.run_for(200_000);
    assert!(
        b.node(c).events_since(mc).iter().all(|e| !matches!(e, Event::Unknown { code: DATA_BUFFER_OVERFLOW, .. })),
        "a host that waits for credits never overflows"
    );
    let got: Vec<_> = b.node(p).att.iter().map(|(h, d)| (*h, d.clone())).collect();
    assert_eq!(got, pdus.into_iter().map(|d| (ph, d)).collect::<Vec<_>>());
}

#[test]
fn drop_every_nth_acl_drops_those_packets_but_returns_their_credits() {
    let (mut b, c, p, ch, _) = connected_raw();
    b.radio.set_fault(Fault::DropEveryNthAcl(3));
    let (mc, mp) = (b.mark(c), b.mark(p));
    for i in 1..=9u8 {
        b.send_acl(c, ch, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, i]);
        b.pump();
    }
    let got: Vec<u8> = b.node(p).acl_since(mp).iter().map(|a| a.data[4]).collect();
    assert_eq!(got, vec![1, 2, 4, 5, 7, 8], "every 3rd packet is lost");
    b.run_for(COMPLETED_REPORT_DELAY_US);
    assert_eq!(b.node(c).completed_since(mc, ch), 9, "the sender still gets every buffer back");
    b.radio.set_fault(Fault::None);
    let mp = b.mark(p);
    for i in 0..6u8 {
        b.send_acl(c, ch, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, i]);
    }
    b.pump();
    assert_eq!(b.node(p).acl_since(mp).len(), 6, "no loss without the fault");
}

#[test]
fn routing_works_with_200_idle_links() {
    let mut b = Bench::default();
    let nodes = b.add_raws(400);
    let mut links = Vec::new();
    for pair in nodes.chunks(2) {
        let (ch, ph) = b.connect(pair[0], pair[1]);
        links.push((pair[0], pair[1], ch, ph));
    }
    assert_eq!(b.radio.links(), 200);
    let marks: Vec<usize> = nodes.iter().map(|&i| b.mark(i)).collect();
    let (c, p, ch, ph) = *links.last().unwrap();
    b.send_acl(c, ch, PacketBoundary::FirstNonFlushable, &[3, 0, 4, 0, 0x1B, 0x2A, 0x00]);
    b.send_acl(p, ph, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 0x13]);
    b.pump();
    for (&i, &m) in nodes.iter().zip(&marks) {
        let acl = b.node(i).acl_since(m);
        if i == p {
            assert_eq!(
                acl,
                vec![Acl {
                    handle: ph,
                    boundary: PacketBoundary::FirstFlushable,
                    data: vec![3, 0, 4, 0, 0x1B, 0x2A, 0]
                }]
            );
        } else if i == c {
            assert_eq!(
                acl,
                vec![Acl { handle: ch, boundary: PacketBoundary::FirstFlushable, data: vec![1, 0, 4, 0, 0x13] }]
            );
        } else {
            assert!(acl.is_empty(), "node {i} got traffic of another link");
        }
    }
    // The first link works as well.
    let (c0, p0, ch0, ph0) = links[0];
    let m = b.mark(p0);
    b.send_acl(c0, ch0, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 0x13]);
    b.pump();
    assert_eq!(b.node(p0).acl_since(m).len(), 1);
    assert_eq!(b.node(p0).acl_since(m)[0].handle, ph0);
}

// ---------------------------------------------------------------------------------------------
// 6. Disconnection (§7.1.6, §7.7.5)
// ---------------------------------------------------------------------------------------------

#[test]
fn disconnect_initiator_sees_0x16_and_the_peer_sees_the_given_reason() {
    for central_disconnects in [true, false] {
        let (mut b, c, p, ch, ph) = connected_raw();
        let (me, my_h, peer, peer_h) = if central_disconnects { (c, ch, p, ph) } else { (p, ph, c, ch) };
        let (mm, mp) = (b.mark(me), b.mark(peer));
        b.send(me, &Command::Disconnect { handle: my_h, reason: status::REMOTE_USER_TERMINATED });
        b.pump();
        let ev = b.node(me).events_since(mm);
        assert_eq!(
            ev,
            vec![
                Event::CommandStatus { status: 0, num_packets: 1, opcode: Opcode::DISCONNECT },
                Event::DisconnectionComplete { status: 0, handle: my_h, reason: status::LOCAL_HOST_TERMINATED },
            ],
            "central disconnects: {central_disconnects}"
        );
        assert_eq!(b.node(peer).disconnections_since(mp), vec![(0, peer_h, status::REMOTE_USER_TERMINATED)]);
        assert_eq!(b.radio.links(), 0);
    }
}

#[test]
fn disconnect_reason_is_passed_through_for_every_allowed_reason() {
    for reason in [0x05u8, 0x13, 0x14, 0x15, 0x1A, 0x29, 0x3B] {
        let (mut b, c, p, ch, ph) = connected_raw();
        let m = b.mark(p);
        b.ok(c, &Command::Disconnect { handle: ch, reason });
        assert_eq!(b.node(p).disconnections_since(m), vec![(0, ph, reason)]);
    }
}

#[test]
fn disconnect_with_a_reason_not_allowed_is_invalid_and_keeps_the_link() {
    let (mut b, c, p, ch, _) = connected_raw();
    for reason in [0x00u8, 0x08, 0x16, 0x3D, 0xFF] {
        let (mc, mp) = (b.mark(c), b.mark(p));
        assert_eq!(b.cmd(c, &Command::Disconnect { handle: ch, reason }), Reply::Status(status::INVALID_PARAMETERS));
        assert!(b.node(c).disconnections_since(mc).is_empty());
        assert!(b.node(p).disconnections_since(mp).is_empty());
    }
    assert_eq!(b.radio.links(), 1);
}

#[test]
fn disconnect_of_an_unknown_handle_is_0x02() {
    let (mut b, c, p, _, ph) = connected_raw();
    assert_eq!(
        b.cmd(c, &Command::Disconnect { handle: 0x0123, reason: 0x13 }),
        Reply::Status(status::UNKNOWN_CONNECTION_ID)
    );
    let x = b.add_raw(ControllerConfig::default());
    // The peripheral's handle number, but from a controller that does not own it.
    assert_eq!(
        b.cmd(x, &Command::Disconnect { handle: ph, reason: 0x13 }),
        Reply::Status(status::UNKNOWN_CONNECTION_ID)
    );
    assert_eq!(b.radio.links(), 1);
    let _ = p;
}

#[test]
fn host_sees_disconnected_with_the_reason() {
    let (mut b, c, p, ch, ph) = connected_hosts(ControllerConfig::default());
    b.ok(p, &Command::Disconnect { handle: ph, reason: status::REMOTE_POWER_OFF });
    assert!(b.node(c).host_events.contains(&HostEvent::Disconnected { handle: ch, reason: status::REMOTE_POWER_OFF }));
    assert!(b
        .node(p)
        .host_events
        .contains(&HostEvent::Disconnected { handle: ph, reason: status::LOCAL_HOST_TERMINATED }));
    assert!(b.host_mut(c).connection(ch).is_none());
}

#[test]
fn detached_peer_gives_connection_timeout_only_after_the_supervision_timeout() {
    let (mut b, c, p) = pair();
    let params = ConnParams { timeout: 100, ..ConnParams::default() };
    let (ch, _) = b.connect_with(c, p, params);
    b.run_for(123_456);
    let t0 = b.now;
    let m = b.mark(c);
    b.detach(p);
    b.run_until(t0 + 999_999);
    assert!(b.node(c).disconnections_since(m).is_empty(), "disconnected before the 1 s supervision timeout");
    assert_eq!(b.radio.links(), 1);
    b.run_until(t0 + 1_000_000);
    assert_eq!(b.node(c).disconnections_since(m), vec![(0, ch, status::CONNECTION_TIMEOUT)]);
    assert_eq!(b.radio.links(), 0);
    assert_eq!(b.radio.controllers(), 1);
}

#[test]
fn detach_uses_the_supervision_timeout_after_a_connection_update() {
    let (mut b, c, p, ch, _) = connected_raw();
    let params = ConnParams { interval_min: 6, interval_max: 6, latency: 0, timeout: 30, ..ConnParams::default() };
    b.ok(c, &Command::LeConnectionUpdate { handle: ch, params });
    b.run_for(100_000);
    let t0 = b.now;
    let m = b.mark(c);
    b.detach(p);
    b.run_until(t0 + 299_999);
    assert!(b.node(c).disconnections_since(m).is_empty());
    b.run_until(t0 + 300_000);
    assert_eq!(b.node(c).disconnections_since(m), vec![(0, ch, status::CONNECTION_TIMEOUT)]);
}

#[test]
fn drop_link_gives_connection_timeout_on_both_sides() {
    let (mut b, c, p, ch, ph) = connected_raw();
    let (mc, mp) = (b.mark(c), b.mark(p));
    assert!(b.radio.drop_link(b.id(p), ph));
    b.pump();
    assert_eq!(b.node(c).disconnections_since(mc), vec![(0, ch, status::CONNECTION_TIMEOUT)]);
    assert_eq!(b.node(p).disconnections_since(mp), vec![(0, ph, status::CONNECTION_TIMEOUT)]);
    assert!(!b.radio.drop_link(b.id(p), ph), "the link is gone");
    assert!(!b.radio.drop_link(b.id(c), 0x0777));
}

#[test]
fn acl_on_a_closed_handle_is_dropped() {
    let (mut b, c, p, ch, _) = connected_raw();
    b.ok(c, &Command::Disconnect { handle: ch, reason: 0x13 });
    let (mc, mp) = (b.mark(c), b.mark(p));
    b.send_acl(c, ch, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 1]);
    b.pump();
    assert!(b.node(p).acl_since(mp).is_empty());
    assert_eq!(b.node(c).completed_since(mc, ch), 0);
}

#[test]
fn delayed_acl_of_a_closed_link_is_not_delivered_nor_completed() {
    let (mut b, c, p, ch, _) = connected_raw();
    b.radio.set_fault(Fault::DelayAcl(10_000));
    let (mc, mp) = (b.mark(c), b.mark(p));
    b.send_acl(c, ch, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 1]);
    b.pump();
    b.ok(c, &Command::Disconnect { handle: ch, reason: 0x13 });
    b.run_for(20_000);
    assert!(b.node(p).acl_since(mp).is_empty(), "data of a closed link must not arrive");
    assert_eq!(b.node(c).completed_since(mc, ch), 0, "§4.3: no completions for a closed handle");
    // The buffer came back: 8 more packets on a new link fit.
    let p2 = b.add_raw(ControllerConfig::default());
    let (ch2, _) = b.connect(c, p2);
    let mc = b.mark(c);
    for i in 0..8u8 {
        b.send_acl(c, ch2, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, i]);
    }
    b.pump();
    assert!(b.node(c).events_since(mc).iter().all(|e| !matches!(e, Event::Unknown { code: DATA_BUFFER_OVERFLOW, .. })));
}

#[test]
fn reset_ends_links_silently_locally_and_with_0x08_at_the_peer() {
    let (mut b, c, p, _, ph) = connected_raw();
    let (mc, mp) = (b.mark(c), b.mark(p));
    assert_eq!(b.cmd(c, &Command::Reset), Reply::Complete(vec![0]));
    b.run_for(10_000_000);
    assert!(b.node(c).disconnections_since(mc).is_empty(), "Reset reports no Disconnection Complete locally");
    assert_eq!(b.node(p).disconnections_since(mp), vec![(0, ph, status::CONNECTION_TIMEOUT)]);
    assert_eq!(b.radio.links(), 0);
}

// ---------------------------------------------------------------------------------------------
// 7. Connection update, data length, PHY (§7.8.18, §7.8.31-33, §7.8.49, §7.7.65.3/6/7/12)
// ---------------------------------------------------------------------------------------------

fn update_completes(b: &Bench, i: usize, mark: usize) -> Vec<(u8, u16, u16, u16, u16)> {
    b.node(i)
        .le_events_since(mark)
        .into_iter()
        .filter_map(|e| match e {
            LeEvent::ConnectionUpdateComplete { status, handle, interval, latency, supervision_timeout } => {
                Some((status, handle, interval, latency, supervision_timeout))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn central_connection_update_completes_on_both_sides_with_the_new_values() {
    let (mut b, c, p, ch, ph) = connected_hosts(ControllerConfig::default());
    let u = ConnParams { interval_min: 60, interval_max: 80, latency: 4, timeout: 500, ..ConnParams::default() };
    let (mc, mp) = (b.mark(c), b.mark(p));
    assert_eq!(b.cmd(c, &Command::LeConnectionUpdate { handle: ch, params: u }), Reply::Status(0));
    b.run_for(100_000);
    let cu = update_completes(&b, c, mc);
    let pu = update_completes(&b, p, mp);
    assert_eq!(cu.len(), 1, "{cu:?}");
    assert_eq!(pu.len(), 1, "{pu:?}");
    let (s, h, interval, latency, timeout) = cu[0];
    assert_eq!((s, h, latency, timeout), (0, ch, 4, 500));
    assert!((60..=80).contains(&interval));
    assert_eq!(pu[0], (0, ph, interval, 4, 500), "both sides agree");
    let info = *b.host_mut(p).connection(ph).unwrap();
    assert_eq!((info.interval, info.latency, info.supervision_timeout), (interval, 4, 500));
}

#[test]
fn connection_update_with_invalid_parameters_or_unknown_handle_fails() {
    let (mut b, c, _, ch, _) = connected_raw();
    let bad = ConnParams { timeout: 5, ..ConnParams::default() };
    assert_eq!(
        b.cmd(c, &Command::LeConnectionUpdate { handle: ch, params: bad }),
        Reply::Status(status::INVALID_PARAMETERS)
    );
    let ok = update_params();
    assert_eq!(
        b.cmd(c, &Command::LeConnectionUpdate { handle: 0x0321, params: ok }),
        Reply::Status(status::UNKNOWN_CONNECTION_ID)
    );
}

#[test]
fn peripheral_update_asks_the_central_host_with_mask_bit_5_and_its_reply_updates_both() {
    let (mut b, c, p, ch, ph) = connected_hosts(ControllerConfig::default());
    b.le_mask(c, LE_MASK_BENCH | LE_MASK_REMOTE_CONN_PARAM_REQ);
    let u = update_params();
    let (mc, mp) = (b.mark(c), b.mark(p));
    assert_eq!(b.cmd(p, &Command::LeConnectionUpdate { handle: ph, params: u }), Reply::Status(0));
    let req: Vec<_> = b
        .node(c)
        .le_events_since(mc)
        .into_iter()
        .filter(|e| matches!(e, LeEvent::RemoteConnectionParameterRequest { .. }))
        .collect();
    assert_eq!(
        req,
        vec![LeEvent::RemoteConnectionParameterRequest {
            handle: ch,
            interval_min: 80,
            interval_max: 80,
            latency: 4,
            timeout: 500
        }]
    );
    // The gattling host answered with LE Remote Connection Parameter Request Reply on its own.
    assert_eq!(
        b.reply_since(c, mc, Opcode::LE_REMOTE_CONN_PARAM_REQ_REPLY),
        Reply::Complete(vec![0, ch as u8, (ch >> 8) as u8])
    );
    b.run_for(100_000);
    assert_eq!(update_completes(&b, c, mc), vec![(0, ch, 80, 4, 500)]);
    assert_eq!(update_completes(&b, p, mp), vec![(0, ph, 80, 4, 500)]);
}

#[test]
fn peripheral_update_without_mask_bit_5_is_accepted_by_the_controller() {
    let (mut b, c, p, ch, ph) = connected_raw();
    let (mc, mp) = (b.mark(c), b.mark(p));
    assert_eq!(b.cmd(p, &Command::LeConnectionUpdate { handle: ph, params: update_params() }), Reply::Status(0));
    b.run_for(100_000);
    assert!(b
        .node(c)
        .le_events_since(mc)
        .iter()
        .all(|e| !matches!(e, LeEvent::RemoteConnectionParameterRequest { .. })));
    assert_eq!(update_completes(&b, c, mc), vec![(0, ch, 80, 4, 500)]);
    assert_eq!(update_completes(&b, p, mp), vec![(0, ph, 80, 4, 500)]);
}

#[test]
fn negative_reply_gives_the_peripheral_update_complete_with_the_reason() {
    let (mut b, c, p, ch, ph) = connected_raw();
    b.le_mask(c, LE_MASK_BENCH | LE_MASK_REMOTE_CONN_PARAM_REQ);
    let (mc, mp) = (b.mark(c), b.mark(p));
    b.ok(p, &Command::LeConnectionUpdate { handle: ph, params: update_params() });
    b.run_for(100_000);
    assert!(update_completes(&b, p, mp).is_empty(), "nothing until the central's host answers");
    let r = b.cmd(
        c,
        &Command::LeRemoteConnParamReqNegReply { handle: ch, reason: status::UNACCEPTABLE_CONNECTION_PARAMETERS },
    );
    assert_eq!(r, Reply::Complete(vec![0, ch as u8, (ch >> 8) as u8]), "return parameters: status, handle");
    b.run_for(100_000);
    let pu = update_completes(&b, p, mp);
    assert_eq!(pu.len(), 1, "{pu:?}");
    assert_eq!((pu[0].0, pu[0].1), (status::UNACCEPTABLE_CONNECTION_PARAMETERS, ph));
    assert!(update_completes(&b, c, mc).is_empty(), "the central's host declined; it gets no update event");
}

#[test]
fn remote_conn_param_replies_for_unknown_handles_are_0x02() {
    let (mut b, c, _, _, _) = connected_raw();
    let r = b.cmd(c, &Command::LeRemoteConnParamReqReply { handle: 0x0456, params: update_params() });
    assert_eq!(r, Reply::Complete(vec![status::UNKNOWN_CONNECTION_ID, 0x56, 0x04]));
    let r = b.cmd(c, &Command::LeRemoteConnParamReqNegReply { handle: 0x0456, reason: 0x3B });
    assert_eq!(r, Reply::Complete(vec![status::UNKNOWN_CONNECTION_ID, 0x56, 0x04]));
}

fn data_length_changes(b: &Bench, i: usize, mark: usize) -> Vec<(u16, u16, u16, u16, u16)> {
    b.node(i)
        .le_events_since(mark)
        .into_iter()
        .filter_map(|e| match e {
            LeEvent::DataLengthChange { handle, max_tx_octets, max_tx_time, max_rx_octets, max_rx_time } => {
                Some((handle, max_tx_octets, max_tx_time, max_rx_octets, max_rx_time))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn set_data_length_completes_then_data_length_change_on_both_sides() {
    let (mut b, c, p, ch, ph) = connected_raw();
    let (mc, mp) = (b.mark(c), b.mark(p));
    b.send(c, &Command::LeSetDataLength { handle: ch, tx_octets: 251, tx_time: 2120 });
    b.run_for(100_000);
    let ev = b.node(c).events_since(mc);
    assert_eq!(
        ev.first(),
        Some(&Event::CommandComplete {
            num_packets: 1,
            opcode: Opcode::LE_SET_DATA_LENGTH,
            return_params: &[0, ch as u8, (ch >> 8) as u8]
        }),
        "Command Complete (status, handle) comes first"
    );
    let cd = data_length_changes(&b, c, mc);
    let pd = data_length_changes(&b, p, mp);
    assert_eq!(cd.len(), 1, "{cd:?}");
    assert_eq!(pd.len(), 1, "{pd:?}");
    assert_eq!((cd[0].0, cd[0].1), (ch, 251), "the initiator may now send 251 octets");
    assert_eq!((pd[0].0, pd[0].3), (ph, 251), "the peer may now receive 251 octets");
    assert!(cd[0].2 >= 328 && pd[0].4 >= 328);
    // The same value again changes nothing.
    let (mc, mp) = (b.mark(c), b.mark(p));
    b.ok(c, &Command::LeSetDataLength { handle: ch, tx_octets: 251, tx_time: 2120 });
    b.run_for(100_000);
    assert!(data_length_changes(&b, c, mc).is_empty() && data_length_changes(&b, p, mp).is_empty());
}

#[test]
fn data_length_change_reports_effective_receive_limits_from_the_peer() {
    let (mut b, c, p, ch, ph) = connected_raw();
    let (mc, mp) = (b.mark(c), b.mark(p));
    b.ok(c, &Command::LeSetDataLength { handle: ch, tx_octets: 251, tx_time: 2120 });
    b.run_for(100_000);
    let cd = data_length_changes(&b, c, mc);
    let pd = data_length_changes(&b, p, mp);
    // Vol 6 Part B §4.5.10: connEffectiveMaxRxOctets = min(connMaxRxOctets, connRemoteMaxTxOctets).
    // The peripheral's host never raised its TX octets (suggested default is 27), so the
    // central still receives at most 27 octets and the peripheral still sends at most 27.
    assert_eq!(
        (cd[0].0, cd[0].1, cd[0].3),
        (ch, 251, 27),
        "BUG: central's Data Length Change claims max_rx_octets {} although the peer's TX is still 27",
        cd[0].3
    );
    assert_eq!(
        (pd[0].0, pd[0].1, pd[0].3),
        (ph, 27, 251),
        "BUG: peripheral's Data Length Change claims max_tx_octets {} although its host never set it",
        pd[0].1
    );
}

#[test]
fn set_data_length_is_tracked_per_connection() {
    let mut b = Bench::default();
    let [c, p1, p2] = b.add_raws(3)[..] else { unreachable!() };
    let (ch1, _) = b.connect(c, p1);
    let (ch2, ph2) = b.connect(c, p2);
    b.ok(c, &Command::LeSetDataLength { handle: ch1, tx_octets: 251, tx_time: 2120 });
    b.run_for(100_000);
    let (mc, mp) = (b.mark(c), b.mark(p2));
    b.ok(c, &Command::LeSetDataLength { handle: ch2, tx_octets: 251, tx_time: 2120 });
    b.run_for(100_000);
    let cd = data_length_changes(&b, c, mc);
    let pd = data_length_changes(&b, p2, mp);
    assert!(
        cd.iter().any(|d| d.0 == ch2) && pd.iter().any(|d| d.0 == ph2),
        "BUG: the second link still uses 27 octets, so LE Set Data Length 251 on it must change its data length \
         (Data Length Change on both sides), but the controller keeps one data length per controller, not per \
         connection: central {cd:?}, peripheral {pd:?}"
    );
}

#[test]
fn set_data_length_out_of_range_or_unknown_handle_fails() {
    let (mut b, c, _, ch, _) = connected_raw();
    let h = [ch as u8, (ch >> 8) as u8];
    for (o, t) in [(26u16, 2120u16), (252, 2120), (251, 327), (251, 17041)] {
        let r = b.cmd(c, &Command::LeSetDataLength { handle: ch, tx_octets: o, tx_time: t });
        assert_eq!(r, Reply::Complete(vec![status::INVALID_PARAMETERS, h[0], h[1]]), "{o} {t}");
    }
    let r = b.cmd(c, &Command::LeSetDataLength { handle: 0x0777, tx_octets: 251, tx_time: 2120 });
    assert_eq!(r, Reply::Complete(vec![status::UNKNOWN_CONNECTION_ID, 0x77, 0x07]));
}

fn phy_updates(b: &Bench, i: usize, mark: usize) -> Vec<(u8, u16, u8, u8)> {
    b.node(i)
        .le_events_since(mark)
        .into_iter()
        .filter_map(|e| match e {
            LeEvent::PhyUpdateComplete { status, handle, tx_phy, rx_phy } => Some((status, handle, tx_phy, rx_phy)),
            _ => None,
        })
        .collect()
}

fn set_phy_2m(handle: u16) -> Command {
    Command::LeSetPhy { handle, all_phys: 0, tx_phys: 0b010, rx_phys: 0b010, phy_options: 0 }
}

#[test]
fn set_phy_2m_gives_phy_update_complete_2_2_on_both_sides() {
    let (mut b, c, p, ch, ph) = connected_hosts(ControllerConfig::default());
    let (mc, mp) = (b.mark(c), b.mark(p));
    assert_eq!(b.cmd(c, &set_phy_2m(ch)), Reply::Status(0));
    b.run_for(100_000);
    assert_eq!(phy_updates(&b, c, mc), vec![(0, ch, 2, 2)]);
    assert_eq!(phy_updates(&b, p, mp), vec![(0, ph, 2, 2)]);
    assert!(b.node(p).host_events.contains(&HostEvent::PhyUpdated { handle: ph, status: 0, tx_phy: 2, rx_phy: 2 }));
    assert_eq!(b.cmd(c, &set_phy_2m(0x0555)), Reply::Status(status::UNKNOWN_CONNECTION_ID));
}

#[test]
fn read_phy_reflects_the_phy_in_use() {
    let (mut b, c, p, ch, ph) = connected_raw();
    let h = |x: u16| [x as u8, (x >> 8) as u8];
    assert_eq!(
        b.cmd_raw(c, Opcode::LE_READ_PHY, &h(ch)),
        Reply::Complete(vec![0, h(ch)[0], h(ch)[1], 1, 1]),
        "1M after connecting"
    );
    b.ok(c, &set_phy_2m(ch));
    b.run_for(100_000);
    let rc = b.cmd_raw(c, Opcode::LE_READ_PHY, &h(ch));
    let rp = b.cmd_raw(p, Opcode::LE_READ_PHY, &h(ph));
    assert_eq!(
        (rc.complete().to_vec(), rp.complete().to_vec()),
        (vec![0, h(ch)[0], h(ch)[1], 2, 2], vec![0, h(ph)[0], h(ph)[1], 2, 2]),
        "BUG: after LE PHY Update Complete (2M, 2M), LE Read PHY (§7.8.47) still reports 1M: the PHY is not tracked"
    );
}

#[test]
fn read_remote_features_reports_the_peer_features() {
    let (mut b, c, _, ch, _) = connected_raw();
    let m = b.mark(c);
    assert_eq!(b.cmd_raw(c, Opcode::LE_READ_REMOTE_FEATURES, &[ch as u8, (ch >> 8) as u8]), Reply::Status(0));
    let ev: Vec<_> = b
        .node(c)
        .le_events_since(m)
        .into_iter()
        .filter_map(|e| match e {
            LeEvent::Unknown { subevent: READ_REMOTE_FEATURES_COMPLETE, params } => Some(params.to_vec()),
            _ => None,
        })
        .collect();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].len(), 11, "status, handle, 8 feature octets");
    assert_eq!((ev[0][0], le16(&ev[0], 1)), (0, ch));
    assert!(ev[0][3] & 1 != 0, "peer supports LE Encryption");
}

// ---------------------------------------------------------------------------------------------
// 8. LE Rand, LE Encrypt and link encryption (§7.8.22-§7.8.26, §7.7.8, §7.7.65.5)
// ---------------------------------------------------------------------------------------------

#[test]
fn le_rand_returns_8_octets_that_differ_between_calls() {
    let mut b = Bench::default();
    let i = b.add_raw(ControllerConfig::default());
    let draws: Vec<Vec<u8>> = (0..8).map(|_| b.ok(i, &Command::LeRand)).collect();
    assert!(draws.iter().all(|d| d.len() == 8));
    let distinct: std::collections::BTreeSet<_> = draws.iter().collect();
    assert_eq!(distinct.len(), draws.len(), "{draws:02x?}");
    assert!(draws.iter().all(|d| d.iter().any(|x| *x != 0)));
}

#[test]
fn le_encrypt_matches_the_fips_197_aes_128_vector() {
    let mut b = Bench::default();
    let i = b.add_raw(ControllerConfig::default());
    let mut key: [u8; 16] = core::array::from_fn(|n| n as u8);
    let mut plaintext: [u8; 16] = core::array::from_fn(|n| (n as u8) * 0x11);
    let mut expected = [0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30, 0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4, 0xc5, 0x5a];
    // HCI carries them least significant octet first.
    key.reverse();
    plaintext.reverse();
    expected.reverse();
    let out = b.ok(i, &Command::LeEncrypt { key, plaintext });
    assert_eq!(out, expected.to_vec());
}

const LTK: [u8; 16] = [0x4C, 0x68, 0x38, 0x41, 0x39, 0xF5, 0x74, 0xD8, 0x36, 0xBC, 0xF3, 0x4E, 0x9D, 0xFB, 0x01, 0xBF];
const RAND: u64 = 0xABCD_EF01_2345_6789;
const EDIV: u16 = 0xBEEF;

fn encryption_changes(b: &Bench, i: usize, mark: usize) -> Vec<(u8, u16, u8)> {
    b.node(i)
        .events_since(mark)
        .into_iter()
        .filter_map(|e| match e {
            Event::EncryptionChange { status, handle, enabled } => Some((status, handle, enabled)),
            _ => None,
        })
        .collect()
}

/// Starts encryption from the central and returns the peripheral's LTK request.
fn start_encryption(b: &mut Bench, c: usize, p: usize, ch: u16) -> Vec<LeEvent<'static>> {
    let mp = b.mark(p);
    let r = b.cmd_raw(c, Opcode::LE_ENABLE_ENCRYPTION, &enable_encryption_params(ch, RAND, EDIV, LTK));
    assert_eq!(r, Reply::Status(0));
    b.node(p)
        .le_events_since(mp)
        .into_iter()
        .filter_map(|e| match e {
            LeEvent::LongTermKeyRequest { handle, rand, ediv } => {
                Some(LeEvent::LongTermKeyRequest { handle, rand, ediv })
            }
            _ => None,
        })
        .collect()
}

#[test]
fn enable_encryption_sends_the_peripheral_an_ltk_request_with_rand_and_ediv() {
    let (mut b, c, p, ch, ph) = connected_raw();
    let req = start_encryption(&mut b, c, p, ch);
    assert_eq!(req, vec![LeEvent::LongTermKeyRequest { handle: ph, rand: RAND, ediv: EDIV }]);
}

#[test]
fn ltk_reply_with_the_same_key_enables_encryption_on_both_sides() {
    let (mut b, c, p, ch, ph) = connected_raw();
    start_encryption(&mut b, c, p, ch);
    let (mc, mp) = (b.mark(c), b.mark(p));
    let r = b.cmd_raw(p, Opcode::LE_LTK_REPLY, &ltk_reply_params(ph, LTK));
    assert_eq!(r, Reply::Complete(vec![0, ph as u8, (ph >> 8) as u8]));
    assert_eq!(encryption_changes(&b, c, mc), vec![(0, ch, 1)]);
    assert_eq!(encryption_changes(&b, p, mp), vec![(0, ph, 1)]);
    assert_eq!(b.radio.links(), 1);
    // Data still flows on the encrypted link.
    let mp = b.mark(p);
    b.send_acl(c, ch, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 0x13]);
    b.pump();
    assert_eq!(b.node(p).acl_since(mp).len(), 1);
}

#[test]
fn ltk_reply_with_a_different_key_disconnects_both_with_mic_failure() {
    let (mut b, c, p, ch, ph) = connected_raw();
    start_encryption(&mut b, c, p, ch);
    let (mc, mp) = (b.mark(c), b.mark(p));
    let mut wrong = LTK;
    wrong[0] ^= 1;
    let r = b.cmd_raw(p, Opcode::LE_LTK_REPLY, &ltk_reply_params(ph, wrong));
    assert_eq!(r, Reply::Complete(vec![0, ph as u8, (ph >> 8) as u8]));
    b.run_for(100_000);
    assert!(encryption_changes(&b, c, mc).is_empty() && encryption_changes(&b, p, mp).is_empty());
    assert_eq!(b.node(c).disconnections_since(mc), vec![(0, ch, status::MIC_FAILURE)]);
    assert_eq!(b.node(p).disconnections_since(mp), vec![(0, ph, status::MIC_FAILURE)]);
    assert_eq!(b.radio.links(), 0);
}

#[test]
fn ltk_negative_reply_gives_the_central_encryption_change_0x06() {
    let (mut b, c, p, ch, ph) = connected_raw();
    start_encryption(&mut b, c, p, ch);
    let (mc, mp) = (b.mark(c), b.mark(p));
    let r = b.cmd_raw(p, Opcode::LE_LTK_NEG_REPLY, &ph.to_le_bytes());
    assert_eq!(r, Reply::Complete(vec![0, ph as u8, (ph >> 8) as u8]));
    assert_eq!(encryption_changes(&b, c, mc), vec![(status::PIN_OR_KEY_MISSING, ch, 0)]);
    assert!(encryption_changes(&b, p, mp).is_empty());
    assert_eq!(b.radio.links(), 1, "the link survives a missing key");
}

#[test]
fn gattling_host_as_peripheral_refuses_ltk_and_the_central_sees_0x06() {
    let mut b = Bench::default();
    let c = b.add_raw(ControllerConfig::default());
    let p = b.add_host(ControllerConfig::default());
    let (ch, ph) = b.connect(c, p);
    let mc = b.mark(c);
    let mp = b.mark(p);
    start_encryption(&mut b, c, p, ch);
    assert_eq!(b.reply_since(p, mp, Opcode::LE_LTK_NEG_REPLY), Reply::Complete(vec![0, ph as u8, (ph >> 8) as u8]));
    assert_eq!(encryption_changes(&b, c, mc), vec![(status::PIN_OR_KEY_MISSING, ch, 0)]);
}

#[test]
fn enable_encryption_from_the_peripheral_or_unknown_handle_fails() {
    let (mut b, c, p, _, ph) = connected_raw();
    let r = b.cmd_raw(p, Opcode::LE_ENABLE_ENCRYPTION, &enable_encryption_params(ph, RAND, EDIV, LTK));
    assert_eq!(r, Reply::Status(status::COMMAND_DISALLOWED), "only the central starts encryption");
    let r = b.cmd_raw(c, Opcode::LE_ENABLE_ENCRYPTION, &enable_encryption_params(0x0444, RAND, EDIV, LTK));
    assert_eq!(r, Reply::Status(status::UNKNOWN_CONNECTION_ID));
    let r = b.cmd_raw(p, Opcode::LE_LTK_REPLY, &ltk_reply_params(0x0444, LTK));
    assert_eq!(r, Reply::Complete(vec![status::UNKNOWN_CONNECTION_ID, 0x44, 0x04]));
}

#[test]
fn re_encrypting_an_encrypted_link_reports_key_refresh_complete() {
    let (mut b, c, p, ch, ph) = connected_raw();
    start_encryption(&mut b, c, p, ch);
    b.ok(p, &Command::Other { opcode: Opcode::LE_LTK_REPLY, params: ltk_reply_params(ph, LTK) });
    let (mc, mp) = (b.mark(c), b.mark(p));
    let req = start_encryption(&mut b, c, p, ch);
    assert_eq!(req.len(), 1, "the peripheral is asked for the key again");
    b.ok(p, &Command::Other { opcode: Opcode::LE_LTK_REPLY, params: ltk_reply_params(ph, LTK) });
    let refresh = |i: usize, m: usize| -> Vec<Vec<u8>> {
        b.node(i)
            .events_since(m)
            .into_iter()
            .filter_map(|e| match e {
                Event::EncryptionKeyRefreshComplete { status, handle } => {
                    Some(vec![status, handle as u8, (handle >> 8) as u8])
                }
                _ => None,
            })
            .collect()
    };
    let (rc, rp) = (refresh(c, mc), refresh(p, mp));
    assert_eq!(
        (rc, rp, encryption_changes(&b, c, mc)),
        (vec![vec![0, ch as u8, (ch >> 8) as u8]], vec![vec![0, ph as u8, (ph >> 8) as u8]], vec![]),
        "BUG: §7.8.24: on an already encrypted link the controller reports HCI_Encryption_Key_Refresh_Complete \
         (0x30), not another Encryption Change"
    );
}

fn encryption_events(b: &Bench, i: usize) -> Vec<HostEvent> {
    b.node(i)
        .host_events
        .iter()
        .filter(|e| matches!(e, HostEvent::EncryptionChanged { .. } | HostEvent::EncryptionKeyRefreshed { .. }))
        .cloned()
        .collect()
}

#[test]
fn two_hosts_with_the_same_key_encrypt_then_refresh_the_link() {
    let (mut b, c, p, ch, ph) = connected_hosts(ControllerConfig::default());
    b.set_ltk(p, Some(LTK));
    b.host_mut(c).start_encryption(ch, LTK, RAND, EDIV).unwrap();
    b.pump();
    assert!(b.node(p).host_events.contains(&HostEvent::LongTermKeyRequest { handle: ph, rand: RAND, ediv: EDIV }));
    let on = |h| HostEvent::EncryptionChanged { handle: h, status: 0, encrypted: true, key_size: 16 };
    assert_eq!(encryption_events(&b, c), vec![on(ch)]);
    assert_eq!(encryption_events(&b, p), vec![on(ph)]);
    for (i, h) in [(c, ch), (p, ph)] {
        let sec = b.host_mut(i).security(h).unwrap();
        assert!(sec.encrypted && sec.key_size == 16, "{sec:?}");
        // The controller reports the key size it uses (Read Encryption Key Size, §7.5.7).
        assert_eq!(b.ok(i, &Command::ReadEncryptionKeySize { handle: h }), vec![h as u8, (h >> 8) as u8, 16]);
    }
    // Again on the encrypted link: a key refresh on both sides, no second Encryption Change.
    b.host_mut(c).start_encryption(ch, LTK, RAND, EDIV).unwrap();
    b.pump();
    assert_eq!(encryption_events(&b, c)[1..], [HostEvent::EncryptionKeyRefreshed { handle: ch, status: 0 }]);
    assert_eq!(encryption_events(&b, p)[1..], [HostEvent::EncryptionKeyRefreshed { handle: ph, status: 0 }]);
    assert_eq!(b.radio.links(), 1);
}

#[test]
fn a_host_without_the_key_refuses_and_the_central_host_sees_0x06() {
    let (mut b, c, p, ch, ph) = connected_hosts(ControllerConfig::default());
    b.host_mut(c).start_encryption(ch, LTK, RAND, EDIV).unwrap();
    b.pump();
    assert_eq!(
        encryption_events(&b, c),
        vec![HostEvent::EncryptionChanged {
            handle: ch,
            status: status::PIN_OR_KEY_MISSING,
            encrypted: false,
            key_size: 0
        }]
    );
    assert!(encryption_events(&b, p).is_empty());
    assert!(!b.host_mut(p).security(ph).unwrap().encrypted);
    assert_eq!(b.radio.links(), 1, "the link survives a missing key");
    // Not encrypted: there is no key size to read.
    assert_eq!(b.cmd(c, &Command::ReadEncryptionKeySize { handle: ch }).status(), status::COMMAND_DISALLOWED);
}

#[test]
fn two_hosts_with_different_keys_are_disconnected_with_mic_failure() {
    let (mut b, c, p, ch, ph) = connected_hosts(ControllerConfig::default());
    let mut other = LTK;
    other[15] ^= 0x80;
    b.set_ltk(p, Some(other));
    b.host_mut(c).start_encryption(ch, LTK, RAND, EDIV).unwrap();
    b.run_for(100_000);
    assert!(encryption_events(&b, c).is_empty() && encryption_events(&b, p).is_empty());
    assert!(b.node(c).host_events.contains(&HostEvent::Disconnected { handle: ch, reason: status::MIC_FAILURE }));
    assert!(b.node(p).host_events.contains(&HostEvent::Disconnected { handle: ph, reason: status::MIC_FAILURE }));
}

#[test]
fn a_second_enable_encryption_while_one_is_pending_is_disallowed() {
    let (mut b, c, p, ch, ph) = connected_raw();
    start_encryption(&mut b, c, p, ch);
    let r = b.cmd_raw(c, Opcode::LE_ENABLE_ENCRYPTION, &enable_encryption_params(ch, RAND, EDIV, LTK));
    assert_eq!(r, Reply::Status(status::COMMAND_DISALLOWED));
    // The first procedure still completes.
    let mc = b.mark(c);
    b.ok(p, &Command::LeLongTermKeyRequestReply { handle: ph, ltk: LTK });
    assert_eq!(encryption_changes(&b, c, mc), vec![(0, ch, 1)]);
}

#[test]
fn refused_key_refresh_leaves_the_link_unencrypted() {
    let (mut b, c, p, ch, ph) = connected_raw();
    start_encryption(&mut b, c, p, ch);
    b.ok(p, &Command::LeLongTermKeyRequestReply { handle: ph, ltk: LTK });
    start_encryption(&mut b, c, p, ch);
    let mc = b.mark(c);
    b.ok(p, &Command::LeLongTermKeyRequestNegativeReply { handle: ph });
    assert_eq!(encryption_changes(&b, c, mc), vec![(status::PIN_OR_KEY_MISSING, ch, 0)]);
    assert_eq!(b.cmd(p, &Command::ReadEncryptionKeySize { handle: ph }).status(), status::COMMAND_DISALLOWED);
    assert_eq!(b.radio.links(), 1);
}

#[test]
fn encryption_events_respect_the_event_mask() {
    let (mut b, c, p, ch, ph) = connected_raw();
    b.ok(c, &Command::SetEventMask(EVENT_MASK_BENCH & !EVENT_MASK_ENCRYPTION_CHANGE));
    b.ok(p, &Command::SetEventMask(EVENT_MASK_BENCH & !EVENT_MASK_KEY_REFRESH));
    start_encryption(&mut b, c, p, ch);
    let (mc, mp) = (b.mark(c), b.mark(p));
    b.ok(p, &Command::LeLongTermKeyRequestReply { handle: ph, ltk: LTK });
    assert!(encryption_changes(&b, c, mc).is_empty(), "bit 7 masked on the central");
    assert_eq!(encryption_changes(&b, p, mp), vec![(0, ph, 1)]);
    start_encryption(&mut b, c, p, ch);
    let (mc, mp) = (b.mark(c), b.mark(p));
    b.ok(p, &Command::LeLongTermKeyRequestReply { handle: ph, ltk: LTK });
    let refreshes = |i: usize, m: usize| {
        b.node(i).events_since(m).iter().filter(|e| matches!(e, Event::EncryptionKeyRefreshComplete { .. })).count()
    };
    assert_eq!((refreshes(c, mc), refreshes(p, mp)), (1, 0), "bit 47 masked on the peripheral only");
}

#[test]
fn resolving_list_stores_entries_up_to_its_size_and_validates_changes() {
    let mut b = Bench::default();
    let i = b.add_raw(ControllerConfig::default());
    assert_eq!(b.cmd_raw(i, Opcode::LE_READ_RESOLVING_LIST_SIZE, &[]), Reply::Complete(vec![0, 8]));
    let entry = |n: u8| Command::LeAddDeviceToResolvingList {
        peer_identity_address_type: 0,
        peer_identity_address: BdAddr([n, 1, 2, 3, 4, 5]),
        peer_irk: [n; 16],
        local_irk: [0xAA; 16],
    };
    for n in 0..8 {
        b.ok(i, &entry(n));
    }
    assert_eq!(b.cmd(i, &entry(8)).status(), status::MEMORY_CAPACITY_EXCEEDED, "a ninth entry does not fit");
    let remove = |n: u8| Command::LeRemoveDeviceFromResolvingList {
        peer_identity_address_type: 0,
        peer_identity_address: BdAddr([n, 1, 2, 3, 4, 5]),
    };
    b.ok(i, &remove(3));
    assert_eq!(b.cmd(i, &remove(3)).status(), status::UNKNOWN_CONNECTION_ID, "already removed");
    assert_eq!(b.cmd(i, &entry(0)).status(), status::INVALID_PARAMETERS, "an identity is listed once");
    b.ok(i, &entry(8));
    // With address resolution on, the list is frozen while advertising.
    b.ok(i, &Command::LeSetAddressResolutionEnable(true));
    b.ok(i, &Command::LeSetAdvertisingEnable(true));
    assert_eq!(b.cmd(i, &Command::LeClearResolvingList).status(), status::COMMAND_DISALLOWED);
    assert_eq!(b.cmd(i, &Command::LeSetAddressResolutionEnable(false)).status(), status::COMMAND_DISALLOWED);
    b.ok(i, &Command::LeSetAdvertisingEnable(false));
    b.ok(i, &Command::LeClearResolvingList);
    assert_eq!(b.cmd(i, &remove(8)).status(), status::UNKNOWN_CONNECTION_ID, "cleared");
}

/// A resolvable private address made from `irk` and `prand` (top bits forced to 0b01,
/// Core Vol 6 Part B §1.3.2.2): hash in the low three octets, prand in the high three.
fn rpa(irk: &[u8; 16], prand: [u8; 3]) -> BdAddr {
    let prand = [prand[0], prand[1], (prand[2] & 0x3F) | 0x40];
    let hash = gattling_proto::smp::crypto::ah(irk, &prand);
    BdAddr([hash[0], hash[1], hash[2], prand[0], prand[1], prand[2]])
}

const PEER_IRK: [u8; 16] = [0x5A; 16];
const IDENTITY: BdAddr = BdAddr([0x01, 0x02, 0x03, 0x04, 0x05, 0x06]);

/// Puts the peer (PEER_IRK, public identity IDENTITY) in node `i`'s resolving list.
fn list_peer(b: &mut Bench, i: usize, resolve: bool) {
    b.ok(
        i,
        &Command::LeAddDeviceToResolvingList {
            peer_identity_address_type: 0,
            peer_identity_address: IDENTITY,
            peer_irk: PEER_IRK,
            local_irk: [0; 16],
        },
    );
    b.ok(i, &Command::LeSetAddressResolutionEnable(resolve));
}

#[test]
fn advertising_reports_give_the_identity_of_a_resolved_rpa_only_with_resolution_enabled() {
    let (mut b, s, a) = pair();
    let private = rpa(&PEER_IRK, [1, 2, 3]);
    b.ok(a, &Command::LeSetRandomAddress(private));
    b.advertise(a, gattling_proto::hci::command::AdvParams { own_address_type: 1, ..adv(0) }, &[2, 1, 6], &[]);
    // Listed but resolution off: the address as it is on air.
    list_peer(&mut b, s, false);
    let m = b.mark(s);
    b.scan(s, false, false);
    b.run_for(200_000);
    let seen: Vec<_> = b.node(s).reports_since(m).into_iter().map(|r| (r.1, r.2)).collect();
    assert!(!seen.is_empty() && seen.iter().all(|r| *r == (1, private)), "{seen:?}");
    b.ok(s, &Command::LeSetScanEnable { enable: false, filter_duplicates: false });
    // Resolution on: public identity (0x02) and the identity address (Core Vol 4 Part E §7.7.65.2).
    b.ok(s, &Command::LeSetAddressResolutionEnable(true));
    let m = b.mark(s);
    b.scan(s, false, false);
    b.run_for(200_000);
    let seen: Vec<_> = b.node(s).reports_since(m).into_iter().map(|r| (r.1, r.2)).collect();
    assert!(!seen.is_empty() && seen.iter().all(|r| *r == (2, IDENTITY)), "{seen:?}");
    b.ok(s, &Command::LeSetScanEnable { enable: false, filter_duplicates: false });
    // An RPA from another IRK is not resolved.
    b.ok(a, &Command::LeSetAdvertisingEnable(false));
    let other = rpa(&[0x77; 16], [1, 2, 3]);
    b.ok(a, &Command::LeSetRandomAddress(other));
    b.ok(a, &Command::LeSetAdvertisingEnable(true));
    let m = b.mark(s);
    b.scan(s, false, false);
    b.run_for(200_000);
    let seen: Vec<_> = b.node(s).reports_since(m).into_iter().map(|r| (r.1, r.2)).collect();
    assert!(!seen.is_empty() && seen.iter().all(|r| *r == (1, other)), "{seen:?}");
}

#[test]
fn create_connection_to_a_listed_identity_reaches_its_rpa_and_reports_the_identity() {
    let (mut b, c, p) = pair();
    b.le_mask(c, LE_MASK_BENCH | LE_MASK_ENHANCED_CONN);
    let private = rpa(&PEER_IRK, [9, 8, 7]);
    b.ok(p, &Command::LeSetRandomAddress(private));
    b.advertise(p, gattling_proto::hci::command::AdvParams { own_address_type: 1, ..adv(0) }, &[], &[]);
    // Without the list, a public identity type does not find the advertiser.
    let mc = b.mark(c);
    b.ok(c, &create_connection(IDENTITY, 2, 0, ConnParams::default()));
    assert!(b.node(c).conn_completes_since(mc).is_empty());
    b.ok(c, &Command::LeCreateConnectionCancel);
    list_peer(&mut b, c, true);
    let (mc, mp) = (b.mark(c), b.mark(p));
    b.ok(c, &create_connection(IDENTITY, 2, 0, ConnParams::default()));
    let cc = b.node(c).conn_completes_since(mc);
    let pc = b.node(p).conn_completes_since(mp);
    assert_eq!(cc.len(), 1, "{cc:?}");
    assert_eq!(cc[0].subevent, subevent::ENHANCED_CONNECTION_COMPLETE);
    assert_eq!((cc[0].status, cc[0].peer_address_type, cc[0].peer_address), (0, 2, IDENTITY));
    assert_eq!(cc[0].peer_rpa, private, "the RPA it resolved (§7.7.65.10)");
    // The peripheral has no list: the central's public address as it is.
    assert_eq!((pc[0].peer_address_type, pc[0].peer_address, pc[0].peer_rpa), (0, b.addr(c), BdAddr::default()));
}

#[test]
fn legacy_connection_complete_gives_a_resolved_peer_with_its_base_type() {
    let (mut b, c, p) = pair();
    let private = rpa(&PEER_IRK, [4, 5, 6]);
    b.ok(p, &Command::LeSetRandomAddress(private));
    b.advertise(p, gattling_proto::hci::command::AdvParams { own_address_type: 1, ..adv(0) }, &[], &[]);
    list_peer(&mut b, c, true);
    let mc = b.mark(c);
    // Connecting to the RPA itself also works; the identity is reported (§7.7.65.1: 0x00/0x01).
    b.ok(c, &create_connection(private, 1, 0, ConnParams::default()));
    let cc = b.node(c).conn_completes_since(mc);
    assert_eq!(cc[0].subevent, subevent::CONNECTION_COMPLETE);
    assert_eq!((cc[0].status, cc[0].peer_address_type, cc[0].peer_address), (0, 0, IDENTITY));
}

#[test]
fn rpa_timeout_range_is_checked() {
    let mut b = Bench::default();
    let i = b.add_raw(ControllerConfig::default());
    b.ok(i, &Command::LeSetResolvablePrivateAddressTimeout(1));
    b.ok(i, &Command::LeSetResolvablePrivateAddressTimeout(0xA1B8));
    for bad in [0, 0xA1B9, 0xFFFF] {
        let st = b.cmd(i, &Command::LeSetResolvablePrivateAddressTimeout(bad)).status();
        assert_eq!(st, status::INVALID_PARAMETERS, "{bad:#06x}");
    }
}

// ---------------------------------------------------------------------------------------------
// 9. Bad input (§4.5, §7.7.14-16)
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_opcode_gets_command_complete_unknown_command() {
    let (mut b, c, _) = pair();
    for opcode in [Opcode::new(0x03, 0x0014), Opcode::new(0x3F, 0x0123), Opcode::new(0x08, 0x0200)] {
        let r = b.cmd_raw(c, opcode, &[1, 2, 3]);
        assert_eq!(r, Reply::Complete(vec![status::UNKNOWN_COMMAND]), "{:#06x}", opcode.0);
    }
    assert!(b.radio.take_log().iter().any(|(id, w)| *id == b.id(c) && w.contains("unknown command")));
}

#[test]
fn truncated_parameters_get_0x12_with_the_commands_usual_event() {
    let (mut b, c, _, ch, _) = connected_raw();
    // Commands answered with Command Status.
    for (opcode, len) in [
        (Opcode::LE_CREATE_CONNECTION, 24usize),
        (Opcode::DISCONNECT, 2),
        (Opcode::LE_CONNECTION_UPDATE, 13),
        (Opcode::LE_SET_PHY, 6),
        (Opcode::LE_ENABLE_ENCRYPTION, 27),
        (Opcode::LE_READ_REMOTE_FEATURES, 1),
    ] {
        let mut params = vec![0u8; len];
        params[0] = ch as u8;
        let r = b.cmd_raw(c, opcode, &params);
        assert_eq!(r, Reply::Status(status::INVALID_PARAMETERS), "{:#06x} with {len} octets", opcode.0);
    }
    // Commands answered with Command Complete.
    for (opcode, len) in [
        (Opcode::SET_EVENT_MASK, 7usize),
        (Opcode::LE_SET_EVENT_MASK, 4),
        (Opcode::LE_SET_RANDOM_ADDRESS, 5),
        (Opcode::LE_SET_ADVERTISING_PARAMETERS, 14),
        (Opcode::LE_SET_ADVERTISING_DATA, 31),
        (Opcode::LE_SET_SCAN_PARAMETERS, 6),
        (Opcode::LE_SET_SCAN_ENABLE, 1),
        (Opcode::LE_ENCRYPT, 31),
        (Opcode::LE_SET_DATA_LENGTH, 5),
        (Opcode::LE_READ_PHY, 1),
    ] {
        let r = b.cmd_raw(c, opcode, &vec![0u8; len]);
        assert_eq!(r.complete().first(), Some(&status::INVALID_PARAMETERS), "{:#06x} with {len} octets", opcode.0);
    }
    assert_eq!(b.radio.links(), 1, "nothing happened to the link");
}

#[test]
fn garbage_h4_gives_that_host_a_hardware_error_and_other_links_keep_working() {
    let mut b = Bench::default();
    let g = b.add_host(ControllerConfig::default());
    let (c, p) = (b.add_host(ControllerConfig::default()), b.add_host(ControllerConfig::default()));
    let (ch, ph) = b.connect(c, p);
    b.radio.take_log();
    let marks: Vec<usize> = [g, c, p].iter().map(|&i| b.mark(i)).collect();
    b.send_raw(g, &[0xFF, 0x00, 0x13, 0x37, 0x42]);
    let ev = b.node(g).events_since(marks[0]);
    assert_eq!(ev, vec![Event::HardwareError { code: 0x01 }]);
    assert!(b.node(g).host_events.contains(&HostEvent::HardwareError(0x01)));
    assert!(b.node(c).tap[marks[1]..].is_empty() && b.node(p).tap[marks[2]..].is_empty(), "others unaffected");
    assert!(b.radio.take_log().iter().any(|(id, _)| *id == b.id(g)));
    // An oversized ACL header is garbage too.
    let m = b.mark(g);
    b.send_raw(g, &[0x02, 0x01, 0x00, 0xFF, 0xFF]);
    assert_eq!(b.node(g).events_since(m), vec![Event::HardwareError { code: 0x01 }]);
    // The stream recovers for the next well-formed packet.
    assert_eq!(b.cmd(g, &Command::ReadBdAddr).status(), 0);
    b.host_mut(c).send_att(ch, &[0x52, 0x01, 0x00, 0xAA]).unwrap();
    b.pump();
    assert_eq!(b.node(p).att, vec![(ph, vec![0x52, 0x01, 0x00, 0xAA])]);
}

#[test]
fn events_sent_by_a_host_are_dropped_and_logged() {
    let (mut b, c, _) = pair();
    b.radio.take_log();
    let m = b.mark(c);
    b.send_raw(c, &[0x04, 0x0E, 0x04, 0x01, 0x03, 0x0C, 0x00]);
    assert!(b.node(c).tap[m..].is_empty());
    assert!(!b.radio.take_log().is_empty());
    assert_eq!(b.cmd(c, &Command::ReadBdAddr).status(), 0);
}

#[test]
fn commands_split_across_many_writes_are_reassembled() {
    let (mut b, c, _) = pair();
    let mut bytes = Vec::new();
    Command::LeRand.encode_h4(&mut bytes);
    Command::ReadBdAddr.encode_h4(&mut bytes);
    let m = b.mark(c);
    for byte in &bytes {
        b.send_raw(c, std::slice::from_ref(byte));
    }
    assert_eq!(b.reply_since(c, m, Opcode::LE_RAND).status(), 0);
    assert_eq!(b.reply_since(c, m, Opcode::READ_BD_ADDR).params(), b.addr(c).0);
}

// ---------------------------------------------------------------------------------------------
// 10. Event masks (§7.3.1, §7.8.1)
// ---------------------------------------------------------------------------------------------

#[test]
fn event_mask_without_bit_4_suppresses_disconnection_complete() {
    let (mut b, c, p, ch, ph) = connected_raw();
    b.ok(p, &Command::SetEventMask(EVENT_MASK_BENCH & !EVENT_MASK_DISCONNECTION));
    let (mc, mp) = (b.mark(c), b.mark(p));
    b.ok(c, &Command::Disconnect { handle: ch, reason: 0x13 });
    assert_eq!(b.node(c).disconnections_since(mc), vec![(0, ch, 0x16)], "the central's mask allows it");
    assert!(b.node(p).disconnections_since(mp).is_empty(), "masked at the peripheral");
    assert_eq!(b.radio.links(), 0, "the link is gone all the same");
    let _ = ph;
}

#[test]
fn le_mask_without_bit_1_suppresses_advertising_reports() {
    let (mut b, s, a) = pair();
    b.le_mask(s, LE_MASK_BENCH & !(1 << 1));
    b.advertise(a, adv(0), &[2, 1, 6], &[]);
    let m = b.mark(s);
    b.scan(s, true, false);
    b.run_for(500_000);
    assert!(b.node(s).reports_since(m).is_empty());
    b.le_mask(s, LE_MASK_BENCH);
    b.run_for(100_000);
    assert!(!b.node(s).reports_since(m).is_empty(), "reports resume when the bit is set again");
}

#[test]
fn event_mask_without_le_meta_bit_61_suppresses_all_le_events() {
    let (mut b, c, p) = pair();
    b.ok(c, &Command::SetEventMask(EVENT_MASK_BENCH & !EVENT_MASK_LE_META));
    let mc = b.mark(c);
    b.advertise(p, adv(0), &[], &[]);
    b.scan(c, false, false);
    b.run_for(200_000);
    b.ok(c, &Command::LeSetScanEnable { enable: false, filter_duplicates: false });
    b.ok(c, &create_connection(b.addr(p), 0, 0, ConnParams::default()));
    assert_eq!(b.radio.links(), 1);
    assert!(b.node(c).le_events_since(mc).is_empty());
    assert!(b.node(c).reports_since(mc).is_empty());
}

#[test]
fn masked_le_events_are_not_delivered_link_layer_procedures() {
    let (mut b, c, p, ch, _) = connected_raw();
    b.le_mask(c, LE_MASK_DEFAULT);
    b.le_mask(p, LE_MASK_DEFAULT);
    let (mc, mp) = (b.mark(c), b.mark(p));
    b.ok(c, &Command::LeSetDataLength { handle: ch, tx_octets: 200, tx_time: 1712 });
    b.ok(c, &set_phy_2m(ch));
    b.run_for(100_000);
    assert!(
        data_length_changes(&b, c, mc).is_empty() && data_length_changes(&b, p, mp).is_empty(),
        "bit 6 is off by default"
    );
    assert!(phy_updates(&b, c, mc).is_empty() && phy_updates(&b, p, mp).is_empty(), "bit 11 is off by default");
}

#[test]
fn reset_restores_the_default_event_masks() {
    let (mut b, s, a) = pair();
    b.advertise(a, adv(3), &[2, 1, 4], &[]);
    // Default Event_Mask (§7.3.1) has bit 61 (LE Meta) clear: no reports after a bare Reset.
    assert_eq!(b.cmd(s, &Command::Reset).status(), 0);
    let m = b.mark(s);
    b.scan(s, false, false);
    b.run_for(200_000);
    assert!(b.node(s).reports_since(m).is_empty(), "LE Meta is masked by the default Event_Mask");
    b.ok(s, &Command::LeSetScanEnable { enable: false, filter_duplicates: false });
    b.ok(s, &Command::SetEventMask(EVENT_MASK_DEFAULT | EVENT_MASK_LE_META));
    b.scan(s, false, false);
    b.run_for(200_000);
    assert!(!b.node(s).reports_since(m).is_empty(), "default LE mask has bit 1 (advertising report)");
}

#[test]
fn reset_stops_advertising_scanning_and_initiating() {
    let mut b = Bench::default();
    let [a, s, c, x] = b.add_raws(4)[..] else { unreachable!() };
    b.advertise(a, adv(0), &[], &[]);
    b.scan(s, false, false);
    b.ok(c, &create_connection(b.addr(x), 0, 0, ConnParams::default()));
    for i in [a, s, c] {
        b.init(i);
    }
    let (ms, mc) = (b.mark(s), b.mark(c));
    let obs = b.add_raw(ControllerConfig::default());
    let mo = b.mark(obs);
    b.scan(obs, false, false);
    b.advertise(x, adv(0), &[], &[]);
    b.run_for(300_000);
    assert!(reports_from(&b, obs, mo, b.addr(a)).is_empty(), "advertising stopped");
    assert!(b.node(s).reports_since(ms).is_empty(), "scanning stopped");
    assert!(b.node(c).conn_completes_since(mc).is_empty(), "initiating stopped");
    assert_eq!(b.radio.links(), 0);
}

#[test]
fn reset_restores_default_advertising_parameters() {
    let (mut b, s, a) = pair();
    b.ok(a, &Command::LeSetRandomAddress(RANDOM));
    b.ok(
        a,
        &Command::LeSetAdvertisingParameters(gattling_proto::hci::command::AdvParams { own_address_type: 1, ..adv(3) }),
    );
    b.init(a);
    // After Reset the advertising parameters are the defaults (§7.8.5: ADV_IND, public address),
    // so enabling advertising needs no random address.
    let r = b.cmd(a, &Command::LeSetAdvertisingEnable(true));
    assert_eq!(
        r,
        Reply::Complete(vec![0]),
        "BUG: Reset (§7.3.2) keeps the old LE advertising parameters (own address type random) while clearing \
         the random address, so LE Set Advertising Enable fails with 0x12 instead of advertising with defaults"
    );
    let m = b.mark(s);
    b.scan(s, false, true);
    b.run_for(100_000);
    assert_eq!(reports_from(&b, s, m, b.addr(a)).first().map(|r| (r.0, r.1)), Some((0, 0)), "default ADV_IND, public");
}

#[test]
fn reset_restores_default_scan_parameters() {
    let (mut b, s, a) = pair();
    b.advertise(a, adv(0), &[2, 1, 6], &[1, 9]);
    b.ok(
        s,
        &Command::LeSetScanParameters {
            scan_type: 1,
            interval: 0x60,
            window: 0x30,
            own_address_type: 0,
            filter_policy: 0,
        },
    );
    b.init(s);
    let m = b.mark(s);
    b.ok(s, &Command::LeSetScanEnable { enable: true, filter_duplicates: true });
    b.run_for(200_000);
    let types: Vec<u8> = reports_from(&b, s, m, b.addr(a)).iter().map(|r| r.0).collect();
    assert_eq!(
        types,
        vec![0],
        "BUG: after Reset the scan type is the default passive (§7.8.10: LE_Scan_Type 0x00), but the controller \
         kept active scanning from before the Reset and reported a SCAN_RSP"
    );
}

#[test]
fn unsolicited_ltk_replies_do_not_affect_the_link() {
    let (mut b, c, p, _, ph) = connected_raw();
    let (mc, mp) = (b.mark(c), b.mark(p));
    // No LE Long Term Key Request is pending on this link.
    let neg = b.cmd_raw(p, Opcode::LE_LTK_NEG_REPLY, &ph.to_le_bytes());
    b.run_for(100_000);
    let spurious = encryption_changes(&b, c, mc);
    let pos = b.cmd_raw(p, Opcode::LE_LTK_REPLY, &ltk_reply_params(ph, LTK));
    b.run_for(100_000);
    let dc = (b.node(c).disconnections_since(mc), b.node(p).disconnections_since(mp));
    assert!(
        spurious.is_empty() && dc.0.is_empty() && dc.1.is_empty() && b.radio.links() == 1,
        "BUG: LE Long Term Key Request (Negative) Reply with no LE Long Term Key Request pending must be refused \
         (Command Disallowed 0x0C expected), not acted on. Negative reply answered {neg:?} and gave the central \
         Encryption Change {spurious:?}; positive reply answered {pos:?} and disconnected both sides {dc:?}"
    );
    assert_eq!((neg.status(), pos.status()), (status::COMMAND_DISALLOWED, status::COMMAND_DISALLOWED));
}

#[test]
fn set_phy_with_an_unsupported_phy_is_refused() {
    let (mut b, c, p, ch, _) = connected_raw();
    let (mc, mp) = (b.mark(c), b.mark(p));
    // LE Coded PHY: LE feature bit 11 is not set, so the controller does not support it.
    let r = b.cmd(c, &Command::LeSetPhy { handle: ch, all_phys: 0, tx_phys: 0b100, rx_phys: 0b100, phy_options: 0 });
    b.run_for(100_000);
    assert_eq!(
        r,
        Reply::Status(status::UNSUPPORTED_FEATURE),
        "BUG: §7.8.49: a TX_PHYs/RX_PHYs bit for a PHY the controller does not support (Coded; LE feature bit 11 \
         clear) must give 0x11; central events {:?}, peripheral events {:?}",
        phy_updates(&b, c, mc),
        phy_updates(&b, p, mp)
    );
}

#[test]
fn disconnection_returns_the_links_acl_buffers_at_once() {
    // §4.3: after Disconnection Complete the host may count the link's in-flight packets as
    // completed; the controller must not keep those buffers.
    let mut b = Bench::default();
    let [c, p1, p2] = b.add_raws(3)[..] else { unreachable!() };
    let (ch1, _) = b.connect(c, p1);
    let (ch2, _) = b.connect(c, p2);
    b.radio.set_fault(Fault::DelayAcl(50_000));
    for i in 0..4u8 {
        b.send_acl(c, ch1, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, i]);
    }
    b.pump();
    b.ok(c, &Command::Disconnect { handle: ch1, reason: 0x13 });
    let mc = b.mark(c);
    for i in 0..8u8 {
        b.send_acl(c, ch2, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, i]);
    }
    b.pump();
    let overflow = b
        .node(c)
        .events_since(mc)
        .into_iter()
        .filter(|e| matches!(e, Event::Unknown { code: DATA_BUFFER_OVERFLOW, .. }))
        .count();
    assert_eq!(
        overflow, 0,
        "BUG: the closed link's 4 delayed packets still occupy controller buffers until their delay ends, so a \
         host that (per §4.3) took those credits back overflows the controller on another link"
    );
}

// ---------------------------------------------------------------------------------------------
// Radio API
// ---------------------------------------------------------------------------------------------

#[test]
fn take_touched_names_exactly_the_controllers_with_output() {
    let mut b = Bench::default();
    let [x, y, z] = b.add_raws(3)[..] else { unreachable!() };
    b.pump();
    assert!(b.radio.take_touched().is_empty());
    let mut bytes = Vec::new();
    Command::LeRand.encode_h4(&mut bytes);
    b.radio.receive(b.id(y), &bytes);
    assert_eq!(b.radio.take_touched(), vec![b.id(y)]);
    assert!(b.radio.take_touched().is_empty(), "take_touched clears");
    assert_eq!(b.radio.take_output(b.id(y)).count(), 1);
    assert_eq!(b.radio.take_output(b.id(x)).count(), 0);
    assert_eq!(b.radio.take_output(b.id(z)).count(), 0);
}

/// `take_output_into` hands over the same bytes as `take_output`, back to back, and each
/// controller is named once by `take_touched` however many packets it has, in id order.
#[test]
fn take_output_into_appends_the_packets_back_to_back() {
    let (mut a, mut b) = (Bench::default(), Bench::default());
    let [xa, ya] = a.add_raws(2)[..] else { unreachable!() };
    let [xb, yb] = b.add_raws(2)[..] else { unreachable!() };
    a.pump();
    b.pump();
    let mut bytes = Vec::new();
    for cmd in [Command::LeRand, Command::ReadBdAddr, Command::LeRand] {
        cmd.encode_h4(&mut bytes);
    }
    // Controller y first, then x: each named once, in id order.
    for (bench, first, second) in [(&mut a, ya, xa), (&mut b, yb, xb)] {
        let (first, second) = (bench.id(first), bench.id(second));
        bench.radio.receive(first, &bytes);
        bench.radio.receive(second, &bytes);
        bench.radio.receive(first, &bytes);
        let mut want = vec![first, second];
        want.sort();
        assert_eq!(bench.radio.take_touched(), want);
    }
    for _ in 0..2 {
        // The second round reuses the buffers the first gave back.
        let whole: Vec<u8> = a.radio.take_output(a.id(ya)).flatten().collect();
        let mut into = vec![0xEE];
        b.radio.take_output_into(b.id(yb), &mut into);
        assert_eq!(into[0], 0xEE, "appended, not replaced");
        assert_eq!(&into[1..], &whole[..]);
        assert!(!whole.is_empty());
        for (bench, y) in [(&mut a, ya), (&mut b, yb)] {
            let id = bench.id(y);
            bench.radio.receive(id, &bytes);
        }
    }
}

#[test]
fn detached_controllers_are_gone_and_ignore_input() {
    let mut b = Bench::default();
    let [x, y] = b.add_raws(2)[..] else { unreachable!() };
    let id = b.id(x);
    assert_eq!(b.radio.controllers(), 2);
    b.detach(x);
    assert_eq!(b.radio.controllers(), 1);
    assert_eq!(b.radio.public_address(id), None);
    let mut bytes = Vec::new();
    Command::Reset.encode_h4(&mut bytes);
    b.radio.receive(id, &bytes);
    assert_eq!(b.radio.take_output(id).count(), 0);
    assert!(!b.radio.take_touched().contains(&id));
    let fresh = b.add_raw(ControllerConfig::default());
    assert_ne!(b.id(fresh), id, "ids are not reused");
    assert_ne!(b.addr(fresh), b.addr(y));
}

#[test]
fn le_rand_and_addresses_are_reproducible_per_seed() {
    let run = |seed: u64| {
        let mut b = Bench::new(seed);
        let i = b.add_raw(ControllerConfig::default());
        (b.ok(i, &Command::LeRand), b.addr(i))
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7).0, run(8).0);
}

/// Every byte each host gets, in order, when ACL packets go through `relay_acl` where it takes
/// them and through `receive` otherwise; and how many it relayed.
fn streams_with_relay(relay: bool, ops: &[(bool, Vec<u8>, u64)]) -> (Vec<Vec<u8>>, usize) {
    let (mut b, c, p, _, _) = connected_raw();
    b.pump();
    let ids = [b.id(c), b.id(p)];
    let mut streams = vec![Vec::new(), Vec::new()];
    let mut relayed = 0;
    for (from_central, bytes, wait) in ops {
        let id = ids[usize::from(!from_central)];
        let outcome = if relay { b.radio.relay_acl(id, bytes) } else { Relay::General };
        match outcome {
            Relay::General => b.radio.receive(id, bytes),
            Relay::Done => {}
            Relay::Deliver { to, header } => {
                relayed += 1;
                let i = ids.iter().position(|x| *x == to).expect("a node of the bench");
                b.radio.write_relayed(to, header, bytes, &mut streams[i]);
            }
        }
        b.now += wait;
        b.radio.advance(b.now);
        for (i, id) in ids.iter().enumerate() {
            for packet in b.radio.take_output(*id) {
                streams[i].extend_from_slice(&packet);
            }
        }
    }
    (streams, relayed)
}

#[test]
fn relayed_acl_packets_reach_the_hosts_exactly_as_received_ones() {
    let (_, _, _, ch, ph) = connected_raw();
    let acl = |handle: u16, boundary, data: &[u8]| {
        let mut v = Vec::new();
        acl_bytes(handle, boundary, data, &mut v);
        v
    };
    let mut two = acl(ch, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 0x0A]);
    two.extend(acl(ch, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 0x0B]));
    let ops = vec![
        // A request, its answer, one each way, with and without time between them.
        (true, acl(ch, PacketBoundary::FirstNonFlushable, &[3, 0, 4, 0, 0x0A, 0x03, 0x00]), 0),
        (false, acl(ph, PacketBoundary::FirstNonFlushable, &[3, 0, 4, 0, 0x0B, 1, 2]), 10),
        (true, acl(ch, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 0x52]), COMPLETED_REPORT_DELAY_US),
        // Fragments, an empty packet, the longest one, one too long, a handle nobody owns.
        (true, acl(ch, PacketBoundary::FirstNonFlushable, &[9, 0, 4, 0, 1, 2, 3]), 0),
        (true, acl(ch, PacketBoundary::Continuing, &[4, 5, 6, 7, 8, 9]), 0),
        (true, acl(ch, PacketBoundary::FirstNonFlushable, &[]), 0),
        (false, acl(ph, PacketBoundary::FirstNonFlushable, &[0x5A; 251]), 0),
        (false, acl(ph, PacketBoundary::FirstNonFlushable, &[0x5A; 252]), 0),
        (true, acl(0x0EEE, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 0x52]), 0),
        // Two packets in one write, a part packet and its rest: the general path.
        (true, two, 0),
        (true, acl(ch, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 0x52])[..3].to_vec(), 0),
        (true, vec![1, 0, 1, 0, 4, 0, 0x52], 0),
        // Enough back to back for a batch of completions, then the report delay.
        (true, acl(ch, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 1]), 0),
        (true, acl(ch, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 2]), 0),
        (true, acl(ch, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 3]), 0),
        (true, acl(ch, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 4]), 0),
        (false, acl(ph, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 5]), 2 * COMPLETED_REPORT_DELAY_US),
    ];
    let (received, none) = streams_with_relay(false, &ops);
    let (relayed, count) = streams_with_relay(true, &ops);
    assert_eq!(none, 0);
    assert_eq!(count, 12, "the plain packets were relayed");
    assert_eq!(relayed, received, "each host got the same bytes");
    assert!(received[0].windows(2).any(|w| w == [0x04, 0x13]), "completions are in the streams compared");
}

#[test]
fn relay_leaves_faults_to_the_general_path() {
    let (mut b, c, _, ch, _) = connected_raw();
    let mut bytes = Vec::new();
    acl_bytes(ch, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 0x52], &mut bytes);
    let id = b.id(c);
    b.radio.set_fault(Fault::DropEveryNthAcl(2));
    assert_eq!(b.radio.relay_acl(id, &bytes), Relay::General);
    b.radio.set_fault(Fault::None);
    assert!(matches!(b.radio.relay_acl(id, &bytes), Relay::Deliver { .. }));
}

#[test]
fn connect_pair_connects_two_controllers_for_benches_and_fuzzing() {
    let mut radio = gattling_controller::Radio::new(1);
    let c = radio.attach(ControllerConfig::default());
    let p = radio.attach(ControllerConfig::default());
    let (ch, ph) = radio.connect_pair(c, p).expect("two fresh controllers connect");
    assert_eq!(radio.links(), 1);
    assert!(radio.take_touched().is_empty(), "the commands' output was taken");
    let mut bytes = Vec::new();
    acl_bytes(ch, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 0x52], &mut bytes);
    assert!(matches!(radio.relay_acl(c, &bytes), Relay::Deliver { to, .. } if to == p));
    // The peripheral's handle names the same link from its side.
    let mut back = Vec::new();
    acl_bytes(ph, PacketBoundary::FirstNonFlushable, &[1, 0, 4, 0, 0x0B], &mut back);
    assert!(matches!(radio.relay_acl(p, &back), Relay::Deliver { to, .. } if to == c));
    radio.detach(p);
    let q = radio.attach(ControllerConfig::default());
    assert_eq!(radio.connect_pair(c, p), None, "a detached controller cannot connect");
    assert!(radio.connect_pair(c, q).is_some());
}
