//! Blocks: a stream's entries sorted by (timestamp, line), encoded back to back and compressed
//! as one unit, with the skip data a reader checks before decompressing (time bounds, counts,
//! and, once flushed, an n-gram bloom filter; see `bloom.rs`).
//!
//! Entry encoding inside a block (before compression), in (t_ns, line) order:
//!
//! ```text
//! t_ns - previous t_ns   signed varint (the first entry's previous is 0)
//! line                   varint length + bytes (UTF-8)
//! metadata               varint count, then name and value (varint length + UTF-8 each)
//! ```
//!
//! The codec byte says how the encoded entries were compressed, so the choice can change
//! without a format version: 0 none, 1 zstd. Layout in `docs/format/log-chunks.md`.

use std::sync::Arc;

use super::LogEntry;
use super::bloom::Bloom;
use super::records::{get_labels, skip_labels};
use crate::codec::{get_bytes, get_varint, put_bytes, put_varint};

/// No compression (tests and incompressible data).
pub(crate) const CODEC_NONE: u8 = 0;
/// zstd frame.
pub(crate) const CODEC_ZSTD: u8 = 1;

/// Largest uncompressed block a reader accepts: a bound on what a corrupt size field can make
/// a decompression allocate. Blocks are cut near 256 KiB; one entry may carry a long line.
pub(crate) const MAX_BLOCK_RAW_BYTES: u64 = 512 << 20;

/// Compression chosen for new blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogsCodec {
    /// Stored as is.
    None,
    /// zstd at this level (1 is fastest; 3 is zstd's default).
    Zstd { level: i32 },
}

/// What a reader knows about a block without decompressing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockMeta {
    pub min_t_ns: i64,
    pub max_t_ns: i64,
    pub entries: u32,
    /// Bytes of the encoded entries before compression (what a decompression must produce).
    pub raw_bytes: u32,
    /// Bytes of the lines alone, for stats.
    pub line_bytes: u64,
}

/// A sealed block held in memory: compressed, immutable, shared with readers.
#[derive(Debug)]
pub(crate) struct SealedBlock {
    pub meta: BlockMeta,
    pub codec: u8,
    pub data: Vec<u8>,
    /// Entries have stream sequence numbers below this (and at or above the previous block's).
    pub seq_end: u64,
    /// Built when the block is flushed; `None` in the head.
    pub bloom: Option<Bloom>,
}

/// Encodes entries given in (t_ns, line) order into `out`.
pub(crate) struct BlockEncoder<'a> {
    out: &'a mut Vec<u8>,
    previous_t_ns: i64,
    pub meta: BlockMeta,
}

impl<'a> BlockEncoder<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> BlockEncoder<'a> {
        out.clear();
        BlockEncoder {
            out,
            previous_t_ns: 0,
            meta: BlockMeta { min_t_ns: i64::MAX, max_t_ns: i64::MIN, entries: 0, raw_bytes: 0, line_bytes: 0 },
        }
    }

    /// Adds an entry whose metadata is already encoded.
    pub fn push(&mut self, t_ns: i64, line: &[u8], metadata: &[u8]) {
        put_varint(self.out, t_ns.wrapping_sub(self.previous_t_ns));
        self.previous_t_ns = t_ns;
        put_bytes(self.out, line);
        self.out.extend_from_slice(metadata);
        self.meta.min_t_ns = self.meta.min_t_ns.min(t_ns);
        self.meta.max_t_ns = self.meta.max_t_ns.max(t_ns);
        self.meta.entries += 1;
        self.meta.line_bytes += line.len() as u64;
    }

    pub fn finish(mut self) -> BlockMeta {
        self.meta.raw_bytes = u32::try_from(self.out.len()).unwrap_or(u32::MAX);
        self.meta
    }
}

/// Compresses encoded entries.
pub(crate) fn compress(codec: LogsCodec, raw: &[u8]) -> Vec<u8> {
    match codec {
        LogsCodec::None => raw.to_vec(),
        LogsCodec::Zstd { level } => {
            // One compression context per thread and level, reused: creating one costs more than
            // compressing a small block. Compression into a vector only fails on allocation
            // failure or a bad level (which zstd clamps): then the bytes are stored as they are.
            thread_local! {
                static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
                    const { std::cell::RefCell::new(None) };
            }
            COMPRESSOR.with(|cell| {
                let mut slot = cell.borrow_mut();
                if slot.as_ref().is_none_or(|(cached, _)| *cached != level) {
                    *slot = zstd::bulk::Compressor::new(level).ok().map(|compressor| (level, compressor));
                }
                match slot.as_mut() {
                    Some((_, compressor)) => compressor.compress(raw).unwrap_or_else(|_| raw.to_vec()),
                    None => raw.to_vec(),
                }
            })
        }
    }
}

/// Compresses with `codec`, or stores uncompressed when that is not smaller; returns the codec
/// byte that was used.
pub(crate) fn compress_best(codec: LogsCodec, raw: &[u8]) -> (u8, Vec<u8>) {
    match codec {
        LogsCodec::None => (CODEC_NONE, raw.to_vec()),
        LogsCodec::Zstd { .. } => {
            let data = compress(codec, raw);
            if data.len() >= raw.len() { (CODEC_NONE, raw.to_vec()) } else { (CODEC_ZSTD, data) }
        }
    }
}

/// Decompresses a block into `out`; the result must be exactly `raw_bytes` long.
pub(crate) fn decompress(codec: u8, data: &[u8], raw_bytes: u32, out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    if u64::from(raw_bytes) > MAX_BLOCK_RAW_BYTES {
        return Err(format!("block claims {raw_bytes} uncompressed bytes, over the limit"));
    }
    match codec {
        CODEC_NONE => out.extend_from_slice(data),
        CODEC_ZSTD => {
            // One decompression context per thread, reused. The output is capped at the size
            // the block's meta states, itself capped above.
            thread_local! {
                static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
                    const { std::cell::RefCell::new(None) };
            }
            out.reserve(raw_bytes as usize);
            DECOMPRESSOR.with(|cell| {
                let mut slot = cell.borrow_mut();
                if slot.is_none() {
                    *slot = Some(zstd::bulk::Decompressor::new().map_err(|error| error.to_string())?);
                }
                match slot.as_mut() {
                    Some(decompressor) => decompressor
                        .decompress_to_buffer(data, out)
                        .map(|_| ())
                        .map_err(|error| format!("zstd decompression failed: {error}")),
                    None => Err("no zstd decompression context".to_string()),
                }
            })?;
        }
        other => return Err(format!("unknown codec {other}")),
    }
    if out.len() != raw_bytes as usize {
        return Err(format!("block decompressed to {} bytes, expected {raw_bytes}", out.len()));
    }
    Ok(())
}

/// One entry of a decoded block: its time and where its line and metadata are.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntrySlot {
    pub t_ns: i64,
    pub line_start: u32,
    pub line_end: u32,
    pub metadata_end: u32,
}

/// A decompressed block, its entries located (not yet materialised).
#[derive(Debug)]
pub(crate) struct DecodedBlock {
    pub raw: Arc<Vec<u8>>,
    pub slots: Vec<EntrySlot>,
}

impl DecodedBlock {
    /// Locates every entry; checks the framing and that lines are UTF-8.
    pub fn parse(raw: Vec<u8>, expected_entries: u32) -> Result<DecodedBlock, String> {
        let mut slots = Vec::with_capacity((expected_entries as usize).min(raw.len() / 3 + 1));
        let mut input = raw.as_slice();
        let total = raw.len();
        let mut t_ns = 0i64;
        while !input.is_empty() {
            t_ns = t_ns.wrapping_add(get_varint(&mut input).ok_or("entry time is malformed")?);
            let line = get_bytes(&mut input).ok_or("entry line is malformed")?;
            if std::str::from_utf8(line).is_err() {
                return Err("entry line is not utf-8".into());
            }
            let line_end = total - input.len();
            let line_start = line_end - line.len();
            skip_labels(&mut input).map_err(|_| "entry metadata is malformed")?;
            let metadata_end = total - input.len();
            slots.push(EntrySlot {
                t_ns,
                line_start: line_start as u32,
                line_end: line_end as u32,
                metadata_end: metadata_end as u32,
            });
        }
        if slots.len() != expected_entries as usize {
            return Err(format!("block holds {} entries, expected {expected_entries}", slots.len()));
        }
        Ok(DecodedBlock { raw: Arc::new(raw), slots })
    }

    pub fn line(&self, slot: &EntrySlot) -> &[u8] {
        &self.raw[slot.line_start as usize..slot.line_end as usize]
    }

    pub fn metadata(&self, slot: &EntrySlot) -> &[u8] {
        &self.raw[slot.line_end as usize..slot.metadata_end as usize]
    }

    /// Materialises an entry.
    pub fn entry(&self, slot: &EntrySlot) -> Result<LogEntry, String> {
        // Checked to be UTF-8 by `parse`.
        let line = String::from_utf8_lossy(self.line(slot)).into_owned();
        let metadata = get_labels(&mut self.metadata(slot)).map_err(|_| "entry metadata is malformed".to_string())?;
        Ok(LogEntry { t_ns: slot.t_ns, line, metadata })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;
    use crate::logs::records::put_labels;

    #[test]
    fn blocks_round_trip_through_every_codec() {
        let metadata = Labels::from_pairs([("trace_id", "0af7651916cd43dd8448eb211c80319c")]).unwrap();
        let mut encoded_metadata = Vec::new();
        put_labels(&mut encoded_metadata, &metadata);
        let mut empty = Vec::new();
        put_labels(&mut empty, &Labels::empty());
        let mut raw = Vec::new();
        let mut encoder = BlockEncoder::new(&mut raw);
        for i in 0..1000i64 {
            let line = format!("GET /api/v1/items/{i} 200 {}ms", i % 17);
            encoder.push(-500 + i, line.as_bytes(), if i % 3 == 0 { &encoded_metadata } else { &empty });
        }
        let meta = encoder.finish();
        assert_eq!((meta.min_t_ns, meta.max_t_ns, meta.entries), (-500, 499, 1000));
        for codec in [LogsCodec::None, LogsCodec::Zstd { level: 1 }, LogsCodec::Zstd { level: 9 }] {
            let (codec_byte, data) = compress_best(codec, &raw);
            let mut out = Vec::new();
            decompress(codec_byte, &data, meta.raw_bytes, &mut out).unwrap();
            let block = DecodedBlock::parse(out, meta.entries).unwrap();
            let entry = block.entry(&block.slots[3]).unwrap();
            assert_eq!(
                entry,
                LogEntry { t_ns: -497, line: "GET /api/v1/items/3 200 3ms".into(), metadata: metadata.clone() }
            );
            assert!(block.entry(&block.slots[4]).unwrap().metadata.is_empty());
        }
        let (_, zstd) = compress_best(LogsCodec::Zstd { level: 3 }, &raw);
        assert!(zstd.len() * 4 < raw.len(), "{} of {}", zstd.len(), raw.len());
        // Damage is an error, never a panic.
        let (codec_byte, mut data) = compress_best(LogsCodec::Zstd { level: 3 }, &raw);
        data.truncate(data.len() / 2);
        assert!(decompress(codec_byte, &data, meta.raw_bytes, &mut Vec::new()).is_err());
        assert!(decompress(7, &raw, meta.raw_bytes, &mut Vec::new()).is_err());
        assert!(DecodedBlock::parse(raw[..raw.len() - 3].to_vec(), meta.entries).is_err());
    }
}
