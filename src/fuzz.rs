//! Fuzz harnesses: each takes arbitrary bytes and drives one decoder to the end. They must
//! never panic, loop forever or allocate beyond what the input's validated fields allow.
//!
//! `fuzz/fuzz_targets/*.rs` (cargo fuzz, libFuzzer) call these; the tests below also run them
//! over seeded mutations of valid inputs, so the normal suite exercises them on stable Rust.

use crate::ltx;
use crate::proto::{self, ChunkedReader, Frame};
use crate::sqlite::{JournalReader, wal};
use std::io::{self, Cursor, Read};

/// Frames read per input at most: bounds the work of one fuzz iteration.
const FRAMES_MAX: usize = 10_000;

/// LTX: full verification, then decoding to a database image (into a sink).
pub fn ltx_decode(data: &[u8]) {
    let _ = ltx::verify(data);
    let _ = ltx::decode_database_to(data, io::sink());
    if let Ok(mut dec) = ltx::Decoder::new(data) {
        let mut page = vec![0u8; dec.header().page_size as usize];
        while let Ok(Some(_)) = dec.decode_page(&mut page) {}
        let _ = dec.finish();
    }
}

/// An LZ4 frame followed by anything.
pub fn lz4_frame(data: &[u8]) {
    if let Ok(mut r) = ltx::lz4::FrameReader::new(data) {
        let _ = io::copy(&mut r, &mut io::sink());
        let _ = r.finish();
    }
}

/// A WAL file: header, then every committed transaction and the checkpoint plan.
pub fn wal_reader(data: &[u8]) {
    let mut cursor = Cursor::new(data);
    let Ok(Some(header)) = wal::WalHeader::read_from(&mut cursor) else {
        return;
    };
    if let Ok((txns, _)) = wal::committed_transactions(cursor, &header, header.start()) {
        let _ = wal::checkpoint_plan(&txns);
    }
}

/// A rollback journal; the first byte picks the database page size the reader is told.
pub fn journal_reader(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let db_page_size = match selector % 4 {
        0 => None,
        1 => Some(512),
        2 => Some(4096),
        _ => Some(65536),
    };
    let Ok(mut reader) = JournalReader::new(Cursor::new(rest), db_page_size) else {
        return;
    };
    let _ =
        crate::sqlite::journal::rollback(&mut reader, |_, _| Ok::<(), crate::sqlite::Error>(()));
}

/// A `/stream` exchange: a position map, then frames with chunked LTX payloads.
pub fn stream_frames(data: &[u8]) {
    let mut r = data;
    let _ = proto::read_pos_map(&mut r);
    let mut r = data;
    for _ in 0..FRAMES_MAX {
        match Frame::read_from(&mut r) {
            Ok(Some(Frame::Ltx { .. })) => {
                let mut chunked = ChunkedReader::new(&mut r);
                let mut payload = Vec::new();
                if chunked.read_to_end(&mut payload).is_err() {
                    return;
                }
                ltx_decode(&payload);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::test_util::{Rng, journal_fixture, wal_fixture};
    use crate::types::{Checksum, TxId};

    /// Applies one of several mutations: bit flips, truncation, insertion, hostile u32s.
    fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
        let mut v = input.to_vec();
        if v.is_empty() {
            return rng.bytes(16);
        }
        let at = (rng.next_u64() as usize) % v.len();
        match rng.next_u64() % 5 {
            0 => v[at] ^= 1 << (rng.next_u64() % 8),
            1 => v.truncate(at),
            2 => v.insert(at, rng.next_u64() as u8),
            3 => {
                let end = (at + 4).min(v.len());
                v[at..end].fill(0xff);
            }
            _ => {
                for _ in 0..1 + rng.next_u64() % 8 {
                    let i = (rng.next_u64() as usize) % v.len();
                    v[i] = rng.next_u64() as u8;
                }
            }
        }
        v
    }

    fn run_mutations(seed: u64, seeds: &[Vec<u8>], count: usize, target: fn(&[u8])) {
        let mut rng = Rng(seed);
        for i in 0..count {
            let base = &seeds[i % seeds.len()];
            let input = mutate(&mut rng, base);
            target(&input);
        }
    }

    fn ltx_seeds() -> Vec<Vec<u8>> {
        let mut seeds = Vec::new();
        for flags in [0, ltx::FLAG_COMPRESS_LZ4] {
            let header = ltx::Header {
                flags,
                page_size: 512,
                commit: 3,
                min_txid: TxId(1),
                max_txid: TxId(2),
                ..ltx::Header::new()
            };
            let pages: Vec<Vec<u8>> = (1..=3u8).map(|b| vec![b; 512]).collect();
            let image = pages.concat();
            let mut enc = ltx::Encoder::new(Vec::new(), &header).unwrap();
            for (i, p) in pages.iter().enumerate() {
                enc.encode_page(i as u32 + 1, p).unwrap();
            }
            let post = Checksum(ltx::database_checksum(&image, 512));
            seeds.push(enc.finish(post).unwrap().0);
        }
        seeds
    }

    #[test]
    fn ltx_and_lz4_survive_mutations() {
        let seeds = ltx_seeds();
        run_mutations(1, &seeds, 3000, ltx_decode);
        let frames: Vec<Vec<u8>> = seeds
            .iter()
            .map(|s| s[100..s.len() - 16].to_vec())
            .collect();
        run_mutations(2, &frames[1..], 3000, lz4_frame);
    }

    #[test]
    fn wal_survives_mutations() {
        let fixture = wal_fixture(
            512,
            &[
                "CREATE TABLE t(x)",
                "INSERT INTO t VALUES (randomblob(900))",
            ],
        );
        run_mutations(3, &[fixture.wal], 3000, wal_reader);
    }

    #[test]
    fn journal_survives_mutations() {
        let fixture = journal_fixture(512, "DELETE", 20);
        let seeds: Vec<Vec<u8>> = (0..4u8)
            .map(|sel| [vec![sel], fixture.journal.clone()].concat())
            .collect();
        run_mutations(4, &seeds, 2000, journal_reader);
    }

    #[test]
    fn stream_survives_mutations() {
        let mut buf = Vec::new();
        let mut map = proto::PosMap::new();
        map.insert("db".into(), crate::types::Pos::new(3, 0x9d81a60d39fb4760));
        proto::write_pos_map(&mut buf, &map).unwrap();
        let mut stream = Vec::new();
        Frame::Ltx { name: "db".into() }
            .write_to(&mut stream)
            .unwrap();
        let mut w = proto::ChunkedWriter::new(&mut stream);
        std::io::Write::write_all(&mut w, &ltx_seeds()[1]).unwrap();
        w.finish().unwrap();
        Frame::Hwm {
            txid: TxId(5),
            name: "db".into(),
        }
        .write_to(&mut stream)
        .unwrap();
        Frame::Heartbeat { timestamp_ms: 1 }
            .write_to(&mut stream)
            .unwrap();
        Frame::Ready.write_to(&mut stream).unwrap();
        run_mutations(5, &[buf, stream], 3000, stream_frames);
    }
}
