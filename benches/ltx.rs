//! LTX codec benchmarks: CRC-64/GO-ISO variants, and encode / decode+verify of whole files.
//!
//! Run with `cargo bench --bench ltx`; what each group measures is in `benches/README.md`.

use crc::{CRC_64_GO_ISO, Crc, NoTable, Table};
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group,
    criterion_main, measurement::WallTime,
};
use litefs::ltx::{self, Encoder, FLAG_COMPRESS_LZ4, Header, RollingChecksum, checksum};
use litefs::types::{CHECKSUM_FLAG, Checksum, TxId};
use std::hint::black_box;
use std::time::Duration;

const PAGE_SIZE_BYTES: usize = 4096;

static CRC_NO_TABLE: Crc<u64, NoTable> = Crc::<u64, NoTable>::new(&CRC_64_GO_ISO);
static CRC_TABLE_1: Crc<u64, Table<1>> = Crc::<u64, Table<1>>::new(&CRC_64_GO_ISO);
static CRC_TABLE_16: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_GO_ISO);

use litefs::testkit::XorShift64 as Rng;

/// A SQLite-table-leaf-like page: the first half is rows with a repeated layout and a counter
/// (compresses well), the second half is random payload bytes (does not compress at all), so
/// LZ4 sees roughly the 2:1 mix of real databases holding text and blobs.
fn page(rng: &mut Rng, pgno: u32) -> Vec<u8> {
    let mut data = Vec::with_capacity(PAGE_SIZE_BYTES);
    data.extend_from_slice(&[0x0d, 0, 0, 0, 0x20, 0x0f, 0xa0, 0]);
    let mut row = 0u32;
    while data.len() < PAGE_SIZE_BYTES / 2 {
        let line = format!("\u{3}\u{5}row {pgno:08}-{row:04} status=active name=user_{row:04};");
        data.extend_from_slice(line.as_bytes());
        row += 1;
    }
    data.truncate(PAGE_SIZE_BYTES / 2);
    while data.len() < PAGE_SIZE_BYTES {
        data.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    data
}

fn pages(count: u32) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    (1..=count).map(|pgno| page(&mut rng, pgno)).collect()
}

/// A transaction file (not a snapshot, so no database checksum pass) for pages 1..=count.
fn header(count: u32, flags: u32) -> Header {
    Header {
        flags,
        page_size: PAGE_SIZE_BYTES as u32,
        commit: count,
        min_txid: TxId(2),
        max_txid: TxId(2),
        timestamp_ms: 1_700_000_000_000,
        pre_apply_checksum: Checksum(CHECKSUM_FLAG | 1),
        ..Header::new()
    }
}

/// Encodes into `out` (cleared first). The caller reuses `out` across iterations: a fresh
/// 40 MB buffer per iteration would measure the kernel's page faults, not the codec.
fn encode_into(out: &mut Vec<u8>, header: &Header, pages: &[Vec<u8>], post_apply: Checksum) {
    out.clear();
    // As a capture does: the page count is known, so pages LZ4 does not try pass straight
    // through (`Encoder::new` instead: 16.8 against 15.3 ms for 10,000 random pages).
    let mut enc = Encoder::with_page_count(out, header, pages.len() as u32).expect("header");
    for (index, data) in pages.iter().enumerate() {
        enc.encode_page(index as u32 + 1, data).expect("page");
    }
    enc.finish(post_apply).expect("finish");
}

fn bench_crc64(c: &mut Criterion) {
    let mut group = c.benchmark_group("crc64");
    configure(&mut group);
    let mut rng = Rng(1);
    for len_bytes in [4096usize, 1 << 20] {
        let data: Vec<u8> = (0..len_bytes).map(|_| rng.next_u64() as u8).collect();
        let want = CRC_TABLE_16.checksum(&data);
        assert_eq!(checksum::crc64(&data), want);
        group.throughput(Throughput::Bytes(len_bytes as u64));
        group.bench_with_input(
            BenchmarkId::new("crc_no_table", len_bytes),
            &data,
            |b, d| b.iter(|| CRC_NO_TABLE.checksum(black_box(d))),
        );
        group.bench_with_input(BenchmarkId::new("crc_table_1", len_bytes), &data, |b, d| {
            b.iter(|| CRC_TABLE_1.checksum(black_box(d)))
        });
        group.bench_with_input(
            BenchmarkId::new("crc_table_16", len_bytes),
            &data,
            |b, d| b.iter(|| CRC_TABLE_16.checksum(black_box(d))),
        );
        group.bench_with_input(
            BenchmarkId::new("litefs_clmul", len_bytes),
            &data,
            |b, d| b.iter(|| checksum::crc64(black_box(d))),
        );
    }
    group.finish();
}

fn bench_codec(c: &mut Criterion) {
    for page_count in [1u32, 10_000] {
        let pages = pages(page_count);
        let mut post_apply = RollingChecksum::new();
        for (index, data) in pages.iter().enumerate() {
            post_apply.add_page(index as u32 + 1, data);
        }
        let post_apply = Checksum(post_apply.value());
        let logical_bytes = u64::from(page_count) * PAGE_SIZE_BYTES as u64;
        for (name, flags) in [("raw", 0), ("lz4", FLAG_COMPRESS_LZ4)] {
            let header = header(page_count, flags);
            let mut file = Vec::new();
            encode_into(&mut file, &header, &pages, post_apply);
            let id = format!("{name}/{page_count}_pages");
            let summary = ltx::verify(file.as_slice()).expect("valid file");
            assert_eq!(summary.page_count, page_count);

            let mut group = c.benchmark_group("ltx_encode");
            configure(&mut group);
            group.throughput(Throughput::Bytes(logical_bytes));
            let mut out = Vec::with_capacity(file.len());
            group.bench_function(&id, |b| {
                b.iter(|| encode_into(&mut out, black_box(&header), black_box(&pages), post_apply))
            });
            group.finish();

            let mut group = c.benchmark_group("ltx_verify");
            configure(&mut group);
            group.throughput(Throughput::Bytes(logical_bytes));
            group.bench_function(&id, |b| {
                b.iter(|| ltx::verify(black_box(file.as_slice())).expect("valid file"))
            });
            group.finish();
        }
    }
}

/// LZ4 encoding of pages that do not compress at all (blobs: random, encrypted or already
/// compressed data), where the writer stops trying LZ4 after two raw blocks in a row.
fn bench_encode_blobs(c: &mut Criterion) {
    let page_count = 10_000u32;
    let mut rng = Rng(0xb10b_5eed);
    let pages: Vec<Vec<u8>> = (0..page_count)
        .map(|_| rng.bytes(PAGE_SIZE_BYTES))
        .collect();
    let mut post_apply = RollingChecksum::new();
    for (index, data) in pages.iter().enumerate() {
        post_apply.add_page(index as u32 + 1, data);
    }
    let post_apply = Checksum(post_apply.value());
    let header = header(page_count, FLAG_COMPRESS_LZ4);
    let mut out = Vec::new();
    encode_into(&mut out, &header, &pages, post_apply);
    let mut group = c.benchmark_group("ltx_encode");
    configure(&mut group);
    group.throughput(Throughput::Bytes(
        u64::from(page_count) * PAGE_SIZE_BYTES as u64,
    ));
    group.bench_function(format!("lz4/{page_count}_random_pages"), |b| {
        b.iter(|| encode_into(&mut out, black_box(&header), black_box(&pages), post_apply))
    });
    group.finish();
}

/// Short runs keep the whole suite under ~2 minutes on 2 vCPUs; flat sampling because the
/// 10,000-page iterations take tens of milliseconds each.
fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sampling_mode(SamplingMode::Flat);
}

criterion_group!(benches, bench_crc64, bench_codec, bench_encode_blobs);
criterion_main!(benches);
