//! L2CAP benchmarks (placeholder until the reassembly benches land).

fn main() {}
