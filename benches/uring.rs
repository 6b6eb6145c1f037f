//! FUSE-over-io_uring per-request pure work: turning a ring entry into the `/dev/fuse`
//! message fuse-backend-rs decodes, and writing the reply header back. This is copying and
//! bounds checks on every request, so it must stay far below the ~10 µs of a round trip.
//!
//! Run with `cargo bench --bench uring`; see `benches/README.md`.

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use litefs::fuse::uring::abi::{self, HEADER_BYTES, OutHeader};
use std::hint::black_box;
use std::time::Duration;

/// A ring entry holding a FUSE_WRITE of `data_bytes`: in header, `fuse_write_in`, payload.
fn write_entry(data_bytes: usize) -> ([u8; HEADER_BYTES], Vec<u8>) {
    let mut header = [0u8; HEADER_BYTES];
    let len = (abi::IN_HEADER_BYTES + 40 + data_bytes) as u32;
    header[0..4].copy_from_slice(&len.to_le_bytes());
    header[4..8].copy_from_slice(&16u32.to_le_bytes()); // FUSE_WRITE
    header[8..16].copy_from_slice(&42u64.to_le_bytes());
    header[128..168].fill(7); // op_in: fuse_write_in
    header[264..272].copy_from_slice(&42u64.to_le_bytes()); // commit id
    header[272..276].copy_from_slice(&(data_bytes as u32).to_le_bytes());
    (header, vec![9u8; 1 << 20])
}

fn bench_assemble(c: &mut Criterion) {
    let mut group = c.benchmark_group("uring_assemble_request");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sampling_mode(SamplingMode::Flat);
    let mut out = vec![0u8; 4096 + (1 << 20)];
    for data_bytes in [0usize, 4096, 128 << 10] {
        let (header, payload) = write_entry(data_bytes);
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("write_{data_bytes}_bytes"), |b| {
            b.iter(|| {
                let n = abi::assemble_request(black_box(&header), &payload, &mut out).unwrap();
                assert_eq!(
                    n,
                    abi::IN_HEADER_BYTES + 40 + data_bytes,
                    "assembled length"
                );
                n
            })
        });
    }
    group.bench_function("put_reply", |b| {
        let mut header = [0u8; HEADER_BYTES];
        let out = OutHeader {
            len_bytes: 16 + 8,
            error: 0,
            unique: 42,
        };
        b.iter(|| abi::put_reply(black_box(&mut header), black_box(&out)))
    });
    group.finish();
}

criterion_group!(benches, bench_assemble);
criterion_main!(benches);
