# Seed inputs for the cargo-fuzz targets of fuzz/: a few valid inputs per target, so a fuzzer
# starts from well-formed packets. Sourced (not run) by scripts/fuzz-smoke.sh and
# scripts/fuzz-campaign.sh:
#
#   source scripts/fuzz-seeds.sh
#   write_seeds DIR        # writes DIR/<target>/seed-<name> for every target
#
# The committed, minimised campaign corpus lives in fuzz/seeds/<target>/; these hand-written
# seeds are the starting point both scripts share.
# shellcheck shell=bash

# seed TARGET NAME HEX...: writes the bytes given as hex (spaces ignored) to $SEED_DIR/TARGET/seed-NAME.
seed() {
    local target="$1" name="$2" hex
    shift 2
    hex="$(printf '%s' "$*" | tr -d ' \n')"
    mkdir -p "$SEED_DIR/$target"
    # shellcheck disable=SC2059 # the format is built from hex digits only
    printf "$(printf '%s' "$hex" | sed 's/../\\x&/g')" >"$SEED_DIR/$target/seed-$name"
}

write_seeds() {
    SEED_DIR="${1:?usage: write_seeds DIR}"
    local addr="11 22 33 44 55 c6"
    # h4_framer: control byte (chunk size, bound) + H4 stream.
    seed h4_framer evt-acl 05  04 0e 04 01 03 0c 00  02 40 00 01 00 aa
    seed h4_framer cmd-adv 40  01 03 0c 00  04 3e 0f 02 01 00 01 $addr 03 02 01 06 c4
    seed h4_framer iso-sco 3f  05 01 00 02 00 aa bb  03 01 00 01 cc  04 0f 04 00 01 0d 20
    # hci_event: event body (code, length, parameters).
    seed hci_event cmd-complete 0e 04 01 03 0c 00
    seed hci_event cmd-status   0f 04 00 01 0d 20
    seed hci_event disconnect   05 04 00 40 00 13
    seed hci_event nocp         13 05 01 40 00 02 00
    seed hci_event encryption   08 04 00 40 00 01
    seed hci_event hw-error     10 01 00
    seed hci_event conn         3e 13 01 00 40 00 00 01 $addr 18 00 00 00 90 01 00
    seed hci_event enh-conn     3e 1f 0a 00 40 00 01 01 $addr $addr $addr 18 00 00 00 90 01 00
    seed hci_event adv-report   3e 0f 02 01 00 01 $addr 03 02 01 06 c4
    seed hci_event adv-report2  3e 19 02 02 00 04 01 00 $addr $addr 03 00 02 01 06 c4 b0
    seed hci_event conn-update  3e 0a 03 00 40 00 18 00 00 00 90 01
    seed hci_event ltk-request  3e 0d 05 40 00 01 02 03 04 05 06 07 08 09 0a
    seed hci_event param-req    3e 0b 06 40 00 06 00 0c 00 00 00 c8 00
    seed hci_event data-len     3e 0b 07 40 00 fb 00 48 08 fb 00 48 08
    seed hci_event phy-update   3e 06 0c 00 40 00 02 02
    seed hci_event encryption-v2 59 05 00 40 00 01 10
    seed hci_event key-refresh  30 03 00 40 00
    # hci_command: command body (opcode, length, parameters).
    seed hci_command reset       03 0c 00
    seed hci_command disconnect  06 04 03 40 00 13
    seed hci_command adv-data    08 20 20 03 02 01 06 $(printf '00 %.0s' {1..28})
    seed hci_command create-conn 0d 20 19 60 00 30 00 00 01 $addr 00 18 00 28 00 00 00 90 01 00 00 00 00
    seed hci_command scan-params 0b 20 07 01 60 00 30 00 00 00
    seed hci_command le-mask     01 20 08 ff ff ff ff ff ff ff ff
    seed hci_command set-phy     32 20 07 40 00 00 03 03 00 00
    seed hci_command enable-enc  19 20 1c 40 00 01 02 03 04 05 06 07 08 ef be $(printf '11 %.0s' {1..16})
    seed hci_command ltk-reply   1a 20 12 40 00 $(printf '22 %.0s' {1..16})
    seed hci_command ltk-neg     1b 20 02 40 00
    seed hci_command add-rl      27 20 27 00 $addr $(printf '33 %.0s' {1..32})
    seed hci_command vendor      23 fd 02 aa bb
    # acl: ACL body (handle + flags, length, data).
    seed acl att-read   40 20 07 00 03 00 04 00 0a 01 00
    seed acl continuing 40 10 02 00 aa bb
    # l2cap_reassembly: max payload byte, then (length << 2 | boundary flag, fragment) records.
    seed l2cap_reassembly whole      20  1e 03 00 04 00 0a 01 00
    seed l2cap_reassembly fragmented 20  14 05 00 04 00 12  11 01 00 aa bb
    seed l2cap_reassembly split-len  10  06 02  09 00 04  0d 00 aa bb
    seed l2cap_reassembly oversized  04  22 10 00 04 00 01 02 03 04  11 05 06 07 08  16 01 00 04 00 1e
    # l2cap_signaling: signaling command (code, identifier, length, data); SMP bytes too.
    seed l2cap_signaling update-req 12 01 08 00 06 00 0c 00 00 00 c8 00
    seed l2cap_signaling update-rsp 13 02 02 00 00 00
    seed l2cap_signaling reject     01 03 02 00 00 00
    seed l2cap_signaling credit-req 14 04 0a 00 80 00 40 00 00 02 00 02 05 00
    seed l2cap_signaling credit-rsp 15 04 0a 00 40 00 00 02 00 02 05 00 00 00
    seed l2cap_signaling disconnect 06 05 04 00 40 00 40 00
    seed l2cap_signaling smp-pair   01 03 00 01 10 07 07
    # att_pdu: one ATT PDU per file, at least one of each opcode.
    seed att_pdu error-rsp    01 0a 03 00 0a
    seed att_pdu mtu-req      02 17 00
    seed att_pdu mtu-rsp      03 f7 00
    seed att_pdu find-info    04 01 00 ff ff
    seed att_pdu find-info16  05 01 01 00 00 28 02 00 03 28
    seed att_pdu find-info128 05 02 10 00 fb 34 9b 5f 80 00 00 80 00 10 00 00 0d 18 00 00
    seed att_pdu find-type    06 01 00 ff ff 00 28 0d 18
    seed att_pdu find-type-r  07 01 00 05 00 06 00 09 00
    seed att_pdu by-type      08 01 00 ff ff 03 28
    seed att_pdu by-type-r    09 07 02 00 02 03 00 00 2a 04 00 0a 05 00 01 2a
    seed att_pdu read         0a 03 00
    seed att_pdu read-r       0b 41 42 43
    seed att_pdu blob         0c 03 00 05 00
    seed att_pdu blob-r       0d 41
    seed att_pdu multi        0e 01 00 02 00
    seed att_pdu multi-r      0f aa bb
    seed att_pdu group        10 01 00 ff ff 00 28
    seed att_pdu group-r      11 06 01 00 05 00 00 18 06 00 09 00 01 18
    seed att_pdu write        12 03 00 aa
    seed att_pdu write-r      13
    seed att_pdu prepare      16 03 00 00 00 aa bb
    seed att_pdu prepare-r    17 03 00 00 00 aa bb
    seed att_pdu execute      18 01
    seed att_pdu execute-r    19
    seed att_pdu ntf          1b 03 00 aa
    seed att_pdu ind          1d 03 00 aa
    seed att_pdu cfm          1e
    seed att_pdu multi-var    20 01 00 02 00
    seed att_pdu multi-var-r  21 02 00 aa bb 01 00 cc
    seed att_pdu multi-ntf    23 03 00 02 00 aa bb 05 00 01 00 cc
    seed att_pdu write-cmd    52 03 00 aa
    seed att_pdu signed       d2 03 00 aa 01 02 03 04 05 06 07 08 09 0a 0b 0c
    # ad_structures: advertising data (length, type, data)...
    seed ad_structures basic     02 01 06 03 03 0d 18 05 09 74 65 73 74
    seed ad_structures mfr-svc   05 ff 4c 00 02 15 04 16 0d 18 01 02 0a f4
    seed ad_structures uuid128   03 19 c1 03 05 08 61 62 63 64 11 07 00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff 00 00
    seed ad_structures misc      05 14 0d 18 0f 18 05 12 06 00 0c 00 05 05 01 02 03 04 07 20 78 56 34 12 01 02
    # host_receive: (action << 6 | length, bytes) records; see fuzz_targets/host_receive.rs.
    local conn="04 3e 13 01 00 40 00 00 01 $addr 18 00 00 00 90 01 00"
    seed host_receive central \
        16 $conn \
        0c 02 40 20 07 00 03 00 04 00 0a 01 00 \
        15 02 40 20 10 00 0c 00 05 00 12 01 08 00 06 00 0c 00 00 00 c8 00 \
        10 02 40 20 0b 00 07 00 06 00 01 03 00 01 10 07 07 \
        83 00 0b 41 \
        08 04 13 05 01 40 00 01 00 \
        07 04 0f 04 00 01 13 20 \
        c1 00 \
        07 04 0e 04 01 03 0c 00 \
        07 04 05 04 00 40 00 13
    seed host_receive scanner \
        c1 02 \
        07 04 0e 04 01 0c 20 00 \
        12 04 3e 0f 02 01 00 01 $addr 03 02 01 06 c4 \
        0e 04 3e 0b 06 40 00 06 00 0c 00 00 00 c8 00
    seed host_receive peripheral \
        16 04 3e 13 01 00 41 00 01 01 $addr 18 00 00 00 90 01 00 \
        c2 03 00 \
        0f 02 41 20 0a 00 06 00 05 00 13 01 02 00 00 00 \
        05 02 41 20 09 00 \
        09 05 00 04 00 12 03 00 aa bb \
        07 04 05 04 00 41 00 13
    # att_list: the seed's examples 1 + 5 (binary) and example 1 + 4 (as hex text).
    seed att_list indicate \
        0c 00 02 00 28 02 e7 fe  0d 00 02 03 28 01 20 \
        0e 00 02 c7 fe 14 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 \
        0f 00 02 02 29 02 00 00  00 00
    mkdir -p "$SEED_DIR/att_list"
    printf '0c 00 02 00 28 02 e7 fe\n0d 00 02 03 28 01 0c\n0e 00 10 ff ee dd cc bb aa 99 88 77 66 55 44 33 22 11 00 04 01 02 03 04\n00 00\n' \
        >"$SEED_DIR/att_list/seed-hex"
    # bond_file: FileBondStore bond files (TOML text), a full one and a minimal one.
    mkdir -p "$SEED_DIR/bond_file"
    printf '%s\n' 'version = 1' 'peer = "C0:11:22:33:44:55/random"' 'local = "00:1B:DC:AA:BB:CC/public"' \
        'secure_connections = true' 'authenticated = true' 'key_size = 16' \
        'peer_irk = "ec0234a357c8ad05341010a60a397d9b"' 'database_hash = "00112233445566778899aabbccddeeff"' \
        'service_changed_pending = false' '[ltk]' 'key = "11111111111111111111111111111111"' 'ediv = 0' \
        'rand = "0000000000000000"' '[local_ltk]' 'key = "22222222222222222222222222222222"' 'ediv = 48879' \
        'rand = "0807060504030201"' '[peer_csrk]' 'key = "44444444444444444444444444444444"' 'counter = 7' \
        '[local_csrk]' 'key = "55555555555555555555555555555555"' 'counter = 4294967295' \
        '[cccds]' '0x0012 = 1' '0xFFFF = 2' >"$SEED_DIR/bond_file/seed-full"
    printf '%s\n' 'version = 1' 'peer = "00:1B:DC:01:02:03/public"' 'secure_connections = false' \
        'authenticated = false' 'key_size = 7' >"$SEED_DIR/bond_file/seed-minimal"

    # radio: steps [flags, len, bytes, advance]; flags bit 1 wraps the bytes as ACL data on the
    # writer's link. A request and its answer, a write command, then raw H4 (a command, a
    # packet cut in two) and time for the held-back completions.
    seed radio exchange 02 05 01 00 04 00 52  00  03 05 01 00 04 00 0b  0a  02 07 03 00 04 00 12 03 00  00
    seed radio raw      00 04 01 03 0c 00  01  00 03 02 01 00  00  00 07 05 00 01 00 04 00 0a  0a
    seed radio fragments 02 07 09 00 04 00 01 02 03  00  06 06 04 05 06 07 08 09  00  03 00  ff
}
