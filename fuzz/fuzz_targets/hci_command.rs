//! `Command::decode` on a command packet body (after the H4 indicator); a decoded command must
//! re-encode to bytes that decode to the same command with the same opcode.
#![no_main]

use gattling_proto::hci::command::Command;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(cmd) = Command::decode(data) else { return };
    assert_eq!(cmd.opcode().0, u16::from_le_bytes([data[0], data[1]]));
    let mut wire = Vec::new();
    cmd.encode_h4(&mut wire);
    assert_eq!(wire[0], 0x01);
    assert_eq!(usize::from(wire[3]) + 4, wire.len(), "length byte disagrees with the parameters");
    assert_eq!(Command::decode(&wire[1..]), Ok(cmd.clone()), "round trip changed the command");
    // The parameters alone, as the virtual controller would read them.
    let mut params = Vec::new();
    cmd.write_params(&mut params);
    assert_eq!(&wire[4..], &params[..]);
});
