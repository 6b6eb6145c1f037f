//! CRC-64/GO-ISO checksums of pages, databases and files (spec §1.7).
//!
//! Go's `hash/crc64` with the ISO table is the catalogue algorithm CRC-64/GO-ISO (reflected
//! polynomial `0xD800000000000000`, init and xorout all ones). Every page is hashed twice on the
//! write path (file checksum and database checksum), so the CRC is on the hot path of every
//! commit. The `crc` crate's slice-by-16 table reaches ~2.2 GB/s on our 2-vCPU machines, so on
//! x86_64 CPUs with PCLMULQDQ we fold 64-byte blocks with carry-less multiplication (~12 GB/s,
//! numbers in `benches/README.md`) and use the table for short inputs, tails and other CPUs.
//! Both paths produce bit-identical results (tested against the `crc` crate below).

use crate::types::CHECKSUM_FLAG;
use crc::{Algorithm, CRC_64_GO_ISO, Crc, Table};

/// The reference table-driven CRC engine (the `crc` crate, slice-by-16).
pub static CRC64: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_GO_ISO);

/// CRC-64/GO-ISO without init and xorout, so that a digest started with
/// [`Crc::digest_with_initial`] continues from any raw register value and `finalize` returns
/// the raw register: the incremental hasher and the carry-less path share this table.
static RAW_ALGORITHM: Algorithm<u64> = Algorithm {
    init: 0,
    xorout: 0,
    ..CRC_64_GO_ISO
};
static RAW: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&RAW_ALGORITHM);

/// The register value before any byte (init all ones; the same bit-reflected).
const INIT: u64 = !0;
/// Shorter inputs (page numbers, headers, trailers) take the table: the carry-less path needs
/// at least 64 bytes and always ends with a 16-byte table step, so it only pays off on longer
/// ones. 128 is a round guess, not a tuned value; pages are ≥ 512 bytes either way.
#[cfg(target_arch = "x86_64")]
const CLMUL_MIN_LEN: usize = 128;

/// Advances the raw register `state` over `bytes` with the table.
fn update_table(state: u64, bytes: &[u8]) -> u64 {
    // `init` reflects the initial value for reflected algorithms; pre-reflect to cancel that.
    let mut digest = RAW.digest_with_initial(state.reverse_bits());
    digest.update(bytes);
    digest.finalize()
}

/// Advances the raw register `state` over `bytes` with the fastest path this CPU supports.
fn update(state: u64, bytes: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if bytes.len() >= CLMUL_MIN_LEN && clmul::is_supported() {
        // SAFETY: `is_supported` checked at run time that the CPU has the target features
        // `clmul::update` is compiled for.
        return unsafe { clmul::update(state, bytes) };
    }
    update_table(state, bytes)
}

/// The CRC-64/GO-ISO of `bytes` (no checksum flag).
pub fn crc64(bytes: &[u8]) -> u64 {
    update(INIT, bytes) ^ !0
}

/// An incremental CRC-64/GO-ISO hasher (the raw CRC, without the checksum flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hasher {
    state: u64,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher { state: INIT }
    }
}

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.state = update(self.state, bytes);
    }

    /// The CRC of everything hashed so far; the hasher can go on being updated.
    pub fn finalize(&self) -> u64 {
        self.state ^ !0
    }
}

/// Starts a new incremental hasher.
pub fn hasher() -> Hasher {
    Hasher::new()
}

/// Carry-less multiplication folding (Intel, "Fast CRC Computation for Generic Polynomials
/// Using PCLMULQDQ Instruction", 2009), bit-reflected variant.
///
/// A 16-byte block loaded little-endian holds a polynomial of degree < 128 whose first
/// message bit is the highest coefficient. Moving a block `d` bits further down the message
/// multiplies it by `x^d`; instead we multiply its two 64-bit halves by `x^d` and `x^(d+64)`
/// reduced mod P, which keeps it at 128 bits, and XOR it into the block `d` bits later. The
/// last 128-bit remainder is reduced by the table, which keeps this module free of Barrett
/// reduction constants.
#[cfg(target_arch = "x86_64")]
mod clmul {
    use core::arch::x86_64::{
        __m128i, _mm_clmulepi64_si128, _mm_cvtsi64_si128, _mm_loadu_si128, _mm_set_epi64x,
        _mm_storeu_si128, _mm_xor_si128,
    };

    /// P(x) = x^64 + x^4 + x^3 + x + 1, without the x^64 term, in normal bit order.
    const POLY_NORMAL: u64 = 0x1b;

    /// `x^n mod P` in reflected bit order (bit i holds the coefficient of x^(63-i)).
    const fn xpow_mod(n: u32) -> u64 {
        let mut r: u64 = 1;
        let mut i = 0;
        while i < n {
            let carry = r >> 63;
            r <<= 1;
            if carry != 0 {
                r ^= POLY_NORMAL;
            }
            i += 1;
        }
        r.reverse_bits()
    }

    /// Constants to move a 128-bit block `distance_bits` down the message: the low half (the
    /// earlier bytes) by `x^(d+64)`, the high half by `x^d`. A reflected carry-less product
    /// carries an extra factor x, hence the `- 1`.
    const fn fold_keys(distance_bits: u32) -> [u64; 2] {
        [
            xpow_mod(distance_bits + 64 - 1),
            xpow_mod(distance_bits - 1),
        ]
    }

    const KEYS_512: [u64; 2] = fold_keys(512);
    const KEYS_384: [u64; 2] = fold_keys(384);
    const KEYS_256: [u64; 2] = fold_keys(256);
    const KEYS_128: [u64; 2] = fold_keys(128);

    pub(super) fn is_supported() -> bool {
        // std caches the CPUID result: this is one relaxed atomic load.
        std::is_x86_feature_detected!("pclmulqdq") && std::is_x86_feature_detected!("sse4.1")
    }

    #[inline]
    #[target_feature(enable = "pclmulqdq,sse2")]
    fn keys(k: [u64; 2]) -> __m128i {
        _mm_set_epi64x(k[1] as i64, k[0] as i64)
    }

    /// `block · x^d mod P` (up to 128 bits) for the distance `keys` were made for.
    #[inline]
    #[target_feature(enable = "pclmulqdq,sse2")]
    fn fold(block: __m128i, keys: __m128i) -> __m128i {
        let low = _mm_clmulepi64_si128::<0x00>(block, keys);
        let high = _mm_clmulepi64_si128::<0x11>(block, keys);
        _mm_xor_si128(low, high)
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn load(bytes: &[u8; 16]) -> __m128i {
        // SAFETY: `bytes` is 16 readable bytes and `loadu` has no alignment requirement.
        unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
    }

    /// The `index`th 16-byte block of `chunk`.
    fn block(chunk: &[u8], index: usize) -> &[u8; 16] {
        chunk[index * 16..index * 16 + 16]
            .try_into()
            .expect("16-byte slice")
    }

    /// Advances the raw register `state` over `bytes` (at least 64 bytes long).
    ///
    /// # Safety
    ///
    /// The CPU must support PCLMULQDQ and SSE4.1 ([`is_supported`]).
    #[target_feature(enable = "pclmulqdq,sse2,sse4.1")]
    pub(super) unsafe fn update(state: u64, bytes: &[u8]) -> u64 {
        debug_assert!(bytes.len() >= 64);
        let mut chunks = bytes.chunks_exact(64);
        let Some(first) = chunks.next() else {
            return super::update_table(state, bytes);
        };
        // XOR-ing the register into the first 8 message bytes is how a reflected CRC continues.
        let mut lanes = [0, 1, 2, 3].map(|i| load(block(first, i)));
        lanes[0] = _mm_xor_si128(lanes[0], _mm_cvtsi64_si128(state as i64));
        let k512 = keys(KEYS_512);
        for chunk in chunks.by_ref() {
            for (i, lane) in lanes.iter_mut().enumerate() {
                *lane = _mm_xor_si128(fold(*lane, k512), load(block(chunk, i)));
            }
        }
        let mut acc = _mm_xor_si128(
            _mm_xor_si128(
                fold(lanes[0], keys(KEYS_384)),
                fold(lanes[1], keys(KEYS_256)),
            ),
            _mm_xor_si128(fold(lanes[2], keys(KEYS_128)), lanes[3]),
        );
        let rest = chunks.remainder();
        let mut blocks = rest.chunks_exact(16);
        let k128 = keys(KEYS_128);
        for b in blocks.by_ref() {
            acc = _mm_xor_si128(fold(acc, k128), load(block(b, 0)));
        }
        let mut remainder = [0u8; 16];
        // SAFETY: `remainder` is 16 writable bytes and `storeu` has no alignment requirement.
        unsafe { _mm_storeu_si128(remainder.as_mut_ptr().cast(), acc) };
        // The remainder is a 128-bit message congruent to everything so far: hashing it from a
        // zero register yields the register for everything so far.
        let state = super::update_table(0, &remainder);
        super::update_table(state, blocks.remainder())
    }
}

/// The lock page (holding SQLite's PENDING_BYTE) is never stored in LTX files and is left
/// out of every checksum (spec §0).
pub use crate::sqlite::lock_pgno;

/// `FLAG | crc64(u32_be(pgno) ‖ data)`: the checksum of one page.
pub fn page_checksum(pgno: u32, data: &[u8]) -> u64 {
    page_crc(pgno, data).checksum()
}

/// The CRC register after `u32_be(pgno) ‖ data`, started from the initial value: gives the
/// page's checksum, and lets a file [`Hasher`] take in the same bytes without a second pass
/// over them ([`Hasher::absorb`]). Every page of an LTX file is in both checksums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageCrc {
    raw: u64,
    len_bytes: usize,
}

/// Hashes one page record (`u32_be(pgno) ‖ data`) once.
pub fn page_crc(pgno: u32, data: &[u8]) -> PageCrc {
    page_crc_parts(pgno, &[data])
}

/// [`page_crc`] of a page held in pieces (`parts`, in order, joined the page).
pub fn page_crc_parts(pgno: u32, parts: &[&[u8]]) -> PageCrc {
    let mut raw = update(INIT, &pgno.to_be_bytes());
    let mut len_bytes = 4;
    for part in parts {
        raw = update(raw, part);
        len_bytes += part.len();
    }
    PageCrc { raw, len_bytes }
}

impl PageCrc {
    /// [`page_checksum`] of the page.
    pub fn checksum(&self) -> u64 {
        CHECKSUM_FLAG | (self.raw ^ !0)
    }
}

impl Hasher {
    /// The same as `update` over the page record `page` was computed from, in constant time.
    ///
    /// A CRC without init and xorout is linear: over bytes `m` of length n, the register goes
    /// from `s` to `Z_n(s) ^ R(m)`, where `Z_n` is n zero bytes' worth of shifting and `R(m)`
    /// is the register over `m` from 0. The page's register from INIT is `Z_n(INIT) ^ R(m)`,
    /// so the new state is `Z_n(s ^ INIT) ^ page.raw`; `Z_n` is 8 table lookups.
    pub fn absorb(&mut self, page: &PageCrc) {
        self.state = zero_shift(page.len_bytes)(self.state ^ INIT) ^ page.raw;
    }
}

/// Page sizes SQLite allows: 512 … 65536 bytes, a page record 4 bytes more.
const PAGE_SIZE_LOG2_MIN: u32 = 9;
const PAGE_SIZE_COUNT: usize = 8;

/// `Z_n` for n zero bytes as 8 tables, one per byte of the register (linearity: the shift of
/// a register is the XOR of the shifts of its bytes).
type ZeroShiftTables = [[u64; 256]; 8];

/// The `Z_n` tables of page records (n = 4 + page size), built once per page size (~0.1 ms
/// for 4 KiB pages, ~2 ms for 64 KiB).
static ZERO_SHIFTS: [std::sync::OnceLock<Box<ZeroShiftTables>>; PAGE_SIZE_COUNT] =
    [const { std::sync::OnceLock::new() }; PAGE_SIZE_COUNT];

/// `Z_n`: the register after n zero bytes, from any register.
fn zero_shift(len_bytes: usize) -> impl Fn(u64) -> u64 {
    let page_size = len_bytes.wrapping_sub(4);
    let slot = page_size
        .is_power_of_two()
        .then(|| page_size.trailing_zeros().checked_sub(PAGE_SIZE_LOG2_MIN))
        .flatten()
        .map(|i| i as usize)
        .filter(|&i| i < PAGE_SIZE_COUNT);
    let tables = slot.map(|i| &**ZERO_SHIFTS[i].get_or_init(|| zero_shift_tables(len_bytes)));
    move |state: u64| match tables {
        Some(t) => (0..8).fold(0, |acc, byte| {
            acc ^ t[byte][((state >> (8 * byte)) & 0xff) as usize]
        }),
        // Not a page record: shift by hashing the zeros.
        None => update(state, &vec![0u8; len_bytes]),
    }
}

fn zero_shift_tables(len_bytes: usize) -> Box<ZeroShiftTables> {
    let zeros = vec![0u8; len_bytes];
    let basis: Vec<u64> = (0..64).map(|bit| update(1u64 << bit, &zeros)).collect();
    let mut tables = Box::new([[0u64; 256]; 8]);
    for (byte, table) in tables.iter_mut().enumerate() {
        for (value, entry) in table.iter_mut().enumerate() {
            *entry = (0..8)
                .filter(|bit| value & (1 << bit) != 0)
                .fold(0, |acc, bit| acc ^ basis[8 * byte + bit]);
        }
    }
    tables
}

/// Accumulates the rolling database checksum: XOR of page checksums, flag set.
///
/// XOR is its own inverse, so a page can be removed by folding in its old checksum again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RollingChecksum(u64);

impl Default for RollingChecksum {
    fn default() -> Self {
        RollingChecksum(CHECKSUM_FLAG)
    }
}

impl RollingChecksum {
    /// The checksum of an empty database: `0x8000000000000000`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds in (or out) one page checksum as computed by [`page_checksum`].
    pub fn fold(&mut self, page_checksum: u64) {
        self.0 = (self.0 ^ page_checksum) | CHECKSUM_FLAG;
    }

    /// Folds in a page by content.
    pub fn add_page(&mut self, pgno: u32, data: &[u8]) {
        self.fold(page_checksum(pgno, data));
    }

    pub fn value(&self) -> u64 {
        self.0
    }
}

/// The rolling checksum of a whole database image (`pages.len()` must be a multiple of
/// `page_size`); the lock page is excluded.
pub fn database_checksum(image: &[u8], page_size: u32) -> u64 {
    let lock = lock_pgno(page_size);
    let mut sum = RollingChecksum::new();
    for (index, page) in image.chunks_exact(page_size as usize).enumerate() {
        let pgno = index as u32 + 1;
        if pgno != lock {
            sum.add_page(pgno, page);
        }
    }
    sum.value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absorbing_a_page_crc_equals_hashing_the_page() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        // Every SQLite page size, plus two records that are not pages (hashed, not tabled).
        for page_size in (9..=16).map(|l| 1usize << l).chain([100, 4097]) {
            let mut by_update = Hasher::new();
            by_update.update(&rng.bytes(100)); // a header first, as in a file
            let mut by_absorb = by_update;
            for pgno in [1u32, 2, 0x0102_0304, u32::MAX] {
                let data = rng.bytes(page_size);
                by_update.update(&pgno.to_be_bytes());
                by_update.update(&data);
                let crc = page_crc(pgno, &data);
                by_absorb.absorb(&crc);
                assert_eq!(by_absorb, by_update, "page size {page_size}, pgno {pgno}");
                assert_eq!(crc.checksum(), page_checksum_by_update(pgno, &data));
            }
        }
    }

    /// `page_checksum` as it was computed before `page_crc`: the reference.
    fn page_checksum_by_update(pgno: u32, data: &[u8]) -> u64 {
        let mut hasher = Hasher::new();
        hasher.update(&pgno.to_be_bytes());
        hasher.update(data);
        CHECKSUM_FLAG | hasher.finalize()
    }

    #[test]
    fn crc_catalogue_check_value() {
        // CRC-64/GO-ISO check value over ASCII "123456789".
        assert_eq!(CRC64.checksum(b"123456789"), 0xb90956c775a41001);
        assert_eq!(crc64(b"123456789"), 0xb90956c775a41001);
        let mut hasher = hasher();
        hasher.update(b"1234");
        hasher.update(b"56789");
        assert_eq!(hasher.finalize(), 0xb90956c775a41001);
    }

    use crate::testkit::XorShift64 as Rng;

    #[test]
    fn matches_crc_crate_on_random_inputs_and_splits() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..1000 {
            let len = rng.below(10_000);
            let data = rng.bytes(len);
            let want = CRC64.checksum(&data);
            assert_eq!(crc64(&data), want, "round {round}, len {len}");
            // Up to three random split points, so chunks straddle every path's thresholds.
            let mut splits: Vec<usize> = (0..rng.below(4)).map(|_| rng.below(len + 1)).collect();
            splits.sort_unstable();
            let mut hasher = hasher();
            let mut start = 0;
            for &split in splits.iter().chain([len].iter()) {
                hasher.update(&data[start..split]);
                start = split;
            }
            assert_eq!(hasher.finalize(), want, "round {round}, splits {splits:?}");
        }
    }

    #[test]
    fn table_path_matches_crc_crate() {
        let mut rng = Rng(42);
        for len in (0..300).chain([4096, 4100]) {
            let data = rng.bytes(len);
            assert_eq!(
                update_table(INIT, &data) ^ !0,
                CRC64.checksum(&data),
                "len {len}"
            );
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn clmul_path_matches_crc_crate_at_every_length_near_block_edges() {
        if !clmul::is_supported() {
            return;
        }
        let mut rng = Rng(7);
        for len in (64..600).chain(4090..4110) {
            let data = rng.bytes(len);
            let state = rng.next_u64();
            // SAFETY: `is_supported` returned true above.
            let got = unsafe { clmul::update(state, &data) };
            assert_eq!(got, update_table(state, &data), "len {len}");
        }
    }

    #[test]
    fn lock_page_numbers() {
        assert_eq!(lock_pgno(512), 2_097_153);
        assert_eq!(lock_pgno(4096), 262_145);
        assert_eq!(lock_pgno(65536), 16_385);
    }

    #[test]
    fn vector_checksum_reader_three_pages() {
        // ltx TestChecksumReader: pages 1..3 of 512 bytes filled with 0x01, 0x02, 0x03.
        let mut image = vec![1u8; 512];
        image.extend_from_slice(&[2u8; 512]);
        image.extend_from_slice(&[3u8; 512]);
        assert_eq!(database_checksum(&image, 512), 0xefffffffecd99000);
    }

    #[test]
    fn vector_single_page_checksums() {
        // litefs TestFileBackupClient_PosMap: page checksum of pgno 1.
        assert_eq!(page_checksum(1, &[0x01; 512]), 0xe4e4aaa102377eee);
        assert_eq!(page_checksum(1, &[0x05; 512]), 0x99b1d11ab98cc555);
    }

    #[test]
    fn vector_decoder_two_pages() {
        // ltx TestDecoder: pgno 1 = 1024 × '2', pgno 2 = 1024 × '3'.
        let mut image = vec![b'2'; 1024];
        image.extend_from_slice(&[b'3'; 1024]);
        assert_eq!(database_checksum(&image, 1024), 0xe1899b6d587aaaaa);
    }

    #[test]
    fn empty_database_checksum_is_flag() {
        assert_eq!(database_checksum(&[], 4096), CHECKSUM_FLAG);
    }

    #[test]
    fn folding_twice_removes_a_page() {
        let mut sum = RollingChecksum::new();
        sum.add_page(1, &[7; 512]);
        sum.add_page(2, &[8; 512]);
        sum.add_page(2, &[8; 512]);
        let mut one = RollingChecksum::new();
        one.add_page(1, &[7; 512]);
        assert_eq!(sum, one);
    }
}
