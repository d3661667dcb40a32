//! ATT codec benchmarks (Core Vol 3 Part F §3.4): decoding a Read Request and encoding a Read
//! Response into a reused buffer.

use criterion::{criterion_group, criterion_main, Criterion};
use gattling_proto::att::{opcode, AttPdu};
use std::hint::black_box;

/// Decode a 3-byte Read Request (Core Vol 3 Part F §3.4.4.3).
fn decode_read_req(c: &mut Criterion) {
    let bytes = [opcode::READ_REQ, 0x2A, 0x00];
    c.bench_function("att/decode_read_req", |b| b.iter(|| AttPdu::decode(black_box(&bytes[..]))));
}

/// Encode a Read Response with a 22-byte value into a reused buffer (Core Vol 3 Part F §3.4.4.4).
fn encode_read_rsp_22(c: &mut Criterion) {
    let value = [0x5Au8; 22];
    let mut out = Vec::with_capacity(64);
    c.bench_function("att/encode_read_rsp_22", |b| {
        b.iter(|| {
            out.clear();
            black_box(AttPdu::ReadRsp { value: black_box(&value[..]) }).encode(&mut out);
            black_box(out.len())
        })
    });
}

criterion_group!(benches, decode_read_req, encode_read_rsp_22);
criterion_main!(benches);
