//! The whole sans-IO `Host` fed arbitrary controller bytes in chunks, with some calls from the
//! layer above interleaved. It must never panic, and:
//! - every packet it transmits is a well-formed H4 packet (commands decode, ACL data fits the
//!   controller's 27-byte buffers);
//! - ACL buffer accounting holds: free buffers + packets in flight = the controller's 4 buffers;
//! - an ATT PDU handed up never exceeds the configured L2CAP bound.
//!
//! Input: records of one control byte (bits 6-7: action, bits 0-5: length 0..=63) and that many
//! bytes. Action 0: `receive` the bytes. Action 1: `receive_answering` them, answering every ATT
//! PDU whose first byte is even with that PDU echoed (fragmented and queued by the host as
//! `send_att` would). Action 2: `send_att` the bytes on the connection
//! picked by the first byte. Action 3: a command or a connection parameter request, picked by the
//! first byte.
#![no_main]

use gattling_proto::hci::command::{Command, ConnParams};
use gattling_proto::hci::{AclPacket, H4Packet, PacketType};
use gattling_proto::host::{Host, HostConfig};
use libfuzzer_sys::fuzz_target;

const ACL_LEN: u16 = 27;
const ACL_NUM: u16 = 4;

fn pick_handle(host: &Host, b: u8) -> u16 {
    let handles: Vec<u16> = host.connections().map(|c| c.handle).collect();
    match handles.len() {
        0 => u16::from(b),
        n => handles[usize::from(b) % n],
    }
}

fn drain(host: &mut Host) {
    while host.poll_event().is_some() {}
    while let Some(pkt) = host.poll_transmit() {
        let p = H4Packet::decode(&pkt).expect("host transmitted a malformed H4 packet");
        match p.kind {
            PacketType::Command => {
                Command::decode(p.body).expect("host transmitted an undecodable command");
            }
            PacketType::Acl => {
                let acl = AclPacket::decode(p.body).expect("host transmitted a malformed ACL packet");
                assert!(acl.data.len() <= usize::from(ACL_LEN), "ACL fragment over the controller's size");
            }
            other => panic!("host transmitted a {other:?} packet"),
        }
    }
    let in_flight: u32 = host.connections().map(|c| u32::from(host.in_flight(c.handle).unwrap_or(0))).sum();
    assert_eq!(u32::from(host.acl_free()) + in_flight, u32::from(ACL_NUM), "ACL buffer accounting drifted");
}

fuzz_target!(|data: &[u8]| {
    let config = HostConfig::default();
    let max_att = config.max_l2cap_payload;
    let mut host = Host::new(config);
    host.set_acl_buffers(ACL_LEN, ACL_NUM);
    let mut on_att = |_h: u16, pdu: &[u8]| {
        assert!(pdu.len() <= max_att, "ATT PDU of {} bytes over the bound", pdu.len());
    };
    let mut answering = |_h: u16, pdu: &[u8], answer: &mut Vec<u8>| {
        assert!(pdu.len() <= max_att, "ATT PDU of {} bytes over the bound", pdu.len());
        assert!(answer.is_empty(), "the answer buffer was handed over with something in it");
        let echo = pdu.first().is_some_and(|b| b % 2 == 0);
        if echo {
            answer.extend_from_slice(pdu);
        }
        echo
    };

    let mut rest = data;
    while let Some((&ctl, tail)) = rest.split_first() {
        let len = usize::from(ctl & 0x3F).min(tail.len());
        let (chunk, next) = tail.split_at(len);
        rest = next;
        match ctl >> 6 {
            0 => host.receive(chunk, &mut on_att),
            1 => host.receive_answering(chunk, &mut answering),
            2 => {
                let handle = pick_handle(&host, chunk.first().copied().unwrap_or(0));
                let _ = host.send_att(handle, chunk);
            }
            _ => {
                let b = chunk.first().copied().unwrap_or(0);
                let handle = pick_handle(&host, chunk.get(1).copied().unwrap_or(0));
                match b % 4 {
                    0 => {
                        host.send_command(&Command::Reset);
                    }
                    1 => {
                        host.send_command(&Command::Disconnect { handle, reason: 0x13 });
                    }
                    2 => {
                        host.send_command(&Command::LeSetScanEnable {
                            enable: b & 0x80 != 0,
                            filter_duplicates: false,
                        });
                    }
                    _ => {
                        let _ = host.request_connection_parameters(handle, &ConnParams::default());
                    }
                }
            }
        }
        drain(&mut host);
    }
});
