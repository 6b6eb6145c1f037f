//! Merges a contiguous run of LTX files into one (spec §1.11).
//!
//! Streaming k-way merge: memory is one page per input, whatever the file sizes. For each page
//! number the version from the latest input wins; pages beyond the last input's Commit drop.
//! Unlike ltx v0.3.14 (which returned success without output on a header decode error, a bug
//! fixed upstream later) every header error is returned.

use super::decoder::{Decoder, Summary};
use super::encoder::Encoder;
use super::error::{Error, Result};
use super::header::Header;
use crate::types::NodeId;
use std::io::{Read, Write};

/// Options for a compaction.
#[derive(Clone, Copy, Debug, Default)]
pub struct Compactor {
    /// Header flags of the output (LiteFS: LZ4 when `data.compress` is on).
    pub flags: u32,
    /// Accept gaps between inputs' TXID ranges.
    pub allow_non_contiguous_txids: bool,
}

struct Input<R: Read> {
    decoder: Decoder<R>,
    page: Vec<u8>,
    pgno: Option<u32>,
}

impl<R: Read> Input<R> {
    fn advance(&mut self, index: usize) -> Result<()> {
        self.pgno = self
            .decoder
            .decode_page(&mut self.page)
            .map_err(|e| e.context(format!("decode page from input {index}")))?;
        Ok(())
    }
}

/// Compacts `inputs` into `w` with default options and the given output flags.
pub fn compact<R: Read, W: Write>(inputs: Vec<R>, w: W, flags: u32) -> Result<(W, Summary)> {
    Compactor {
        flags,
        ..Compactor::default()
    }
    .compact(inputs, w)
}

impl Compactor {
    pub fn compact<R: Read, W: Write>(&self, inputs: Vec<R>, w: W) -> Result<(W, Summary)> {
        if inputs.is_empty() {
            return Err(Error::InputRequired);
        }
        let mut decoders = Vec::with_capacity(inputs.len());
        for (index, r) in inputs.into_iter().enumerate() {
            let d = Decoder::new(r).map_err(|e| e.context(format!("decode header {index}")))?;
            decoders.push(d);
        }
        decoders.sort_by_key(|d| d.header().min_txid);
        for pair in decoders.windows(2) {
            let (a, b) = (pair[0].header(), pair[1].header());
            if a.page_size != b.page_size {
                return Err(Error::MismatchedPageSizes(a.page_size, b.page_size));
            }
            if !self.allow_non_contiguous_txids && a.max_txid.0.checked_add(1) != Some(b.min_txid.0)
            {
                return Err(Error::NonContiguous(
                    a.min_txid, a.max_txid, b.min_txid, b.max_txid,
                ));
            }
        }
        let (first, last) = (
            *decoders[0].header(),
            *decoders[decoders.len() - 1].header(),
        );
        let header = Header {
            flags: self.flags,
            page_size: first.page_size,
            commit: last.commit,
            min_txid: first.min_txid,
            max_txid: last.max_txid,
            timestamp_ms: last.timestamp_ms,
            pre_apply_checksum: first.pre_apply_checksum,
            node_id: NodeId(0),
            ..Header::new()
        };
        let mut enc = Encoder::new(w, &header)?;
        let mut inputs: Vec<Input<R>> = decoders
            .into_iter()
            .map(|decoder| Input {
                page: vec![0; header.page_size as usize],
                decoder,
                pgno: None,
            })
            .collect();
        for (index, input) in inputs.iter_mut().enumerate() {
            input.advance(index)?;
        }
        while let Some(pgno) = inputs.iter().filter_map(|i| i.pgno).min() {
            // The latest input holding this page wins.
            let Some(winner) = inputs.iter().rposition(|i| i.pgno == Some(pgno)) else {
                break;
            };
            if pgno <= header.commit {
                enc.encode_page(pgno, &inputs[winner].page)?;
            }
            for (index, input) in inputs.iter_mut().enumerate() {
                if input.pgno == Some(pgno) {
                    input.advance(index)?;
                }
            }
        }
        let page_count = enc.page_count();
        let mut post_apply = None;
        for (index, input) in inputs.into_iter().enumerate() {
            let (trailer, _) = input
                .decoder
                .finish()
                .map_err(|e| e.context(format!("close reader {index}")))?;
            post_apply = Some(trailer.post_apply_checksum);
        }
        let post_apply = post_apply.ok_or(Error::InputRequired)?;
        let (w, trailer) = enc.finish(post_apply)?;
        Ok((
            w,
            Summary {
                header,
                trailer,
                page_count,
            },
        ))
    }
}
