//! FUSE-over-io_uring per-request pure work: turning a ring entry into the `/dev/fuse`
//! message fuse-backend-rs decodes, and writing the reply header back. This is copying and
//! bounds checks on every request, so it must stay far below the ~10 µs of a round trip.
//!
//! `backing_io` measures what issue 6's "backing I/O from the worker's ring" would buy: a
//! 4 KiB write (or read) to a file by syscall followed by the reply's ring submission, against
//! the same I/O as an SQE linked to the reply in one submission (ARCHITECTURE §8). The file is
//! created under `$LITEFS_BENCH_DIR` (default: the temp dir); point it at the file system of
//! interest.
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

/// One 4 KiB buffered write or read per iteration at a rotating offset, then a NOP standing for
/// the FUSE reply's COMMIT_AND_FETCH: by syscall plus one ring submission, or as one linked
/// pair of SQEs in one submission.
fn bench_backing_io(c: &mut Criterion) {
    use io_uring::{IoUring, opcode, squeue, types};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    const PAGE_BYTES: usize = 4096;
    const PAGES: u64 = 1024;
    let dir = std::env::var_os("LITEFS_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let path = dir.join(format!("litefs-bench-backing-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("bench file");
    let mut buf = vec![7u8; PAGE_BYTES];
    file.write_all_at(&vec![1u8; PAGE_BYTES * PAGES as usize], 0)
        .expect("fill");
    let mut ring = IoUring::new(8).expect("io_uring");
    let fd = types::Fd(file.as_raw_fd());
    let mut group = c.benchmark_group("backing_io");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    // Submits `sqes` and reaps their completions; returns the first result.
    let mut submit = |sqes: &[squeue::Entry]| -> i32 {
        for sqe in sqes {
            // SAFETY: every SQE points at `buf`, which outlives the wait for its completion.
            unsafe { ring.submission().push(sqe).expect("queue has room") };
        }
        ring.submit_and_wait(sqes.len()).expect("submit");
        let results: Vec<i32> = ring.completion().map(|c| c.result()).collect();
        assert_eq!(results.len(), sqes.len(), "completions");
        results[0]
    };
    let nop = || opcode::Nop::new().build();
    let mut i = 0u64;
    let mut next_offset = || {
        i += 1;
        (i % PAGES) * PAGE_BYTES as u64
    };
    group.bench_function("pwrite_then_submit", |b| {
        b.iter(|| {
            file.write_all_at(&buf, next_offset()).expect("pwrite");
            submit(&[nop()])
        })
    });
    let ptr = buf.as_mut_ptr();
    // One page's I/O linked to the reply's submission; the first completion is the I/O's.
    fn linked(submit: &mut impl FnMut(&[squeue::Entry]) -> i32, io: squeue::Entry, what: &str) {
        let nop = opcode::Nop::new().build();
        let done = submit(&[io.flags(squeue::Flags::IO_LINK), nop]);
        assert_eq!(done, PAGE_BYTES as i32, "{what} result");
    }
    group.bench_function("linked_write_and_submit", |b| {
        b.iter(|| {
            let write = opcode::Write::new(fd, ptr, PAGE_BYTES as u32).offset(next_offset());
            linked(&mut submit, write.build(), "write")
        })
    });
    group.bench_function("pread_then_submit", |b| {
        b.iter(|| {
            file.read_exact_at(black_box(&mut buf), next_offset())
                .expect("pread");
            submit(&[nop()])
        })
    });
    group.bench_function("linked_read_and_submit", |b| {
        b.iter(|| {
            let read = opcode::Read::new(fd, ptr, PAGE_BYTES as u32).offset(next_offset());
            linked(&mut submit, read.build(), "read")
        })
    });
    group.finish();
    drop(file);
    let _ = std::fs::remove_file(path);
}

criterion_group!(benches, bench_assemble, bench_backing_io);
criterion_main!(benches);
