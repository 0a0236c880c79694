//! Blocks: a stream's entries sorted by (timestamp, line), laid out as a lines section and a
//! columns section and compressed as two zstd frames, with the skip data a reader checks before
//! decompressing (time bounds, counts; blooms are per chunk, see `bloom.rs`).
//!
//! Layout of a block before compression (format version 2), entries in (t_ns, line) order:
//!
//! ```text
//! lines section     with newline framing: every line followed by '\n' (no line holds one);
//!                   with length framing: the lines back to back
//! columns section   first t_ns (signed varint), time unit (varint), then per later entry
//!                   (t_ns - previous t_ns) / unit (varint); per entry the metadata label set
//!                   (varint count, then name and value, varint length + UTF-8 each); with
//!                   length framing, per entry the line length (varint)
//! framing           u8: 1 newline, 0 lengths
//! ```
//!
//! Keeping the text apart from the numbers is what makes zstd's literal statistics fit the text;
//! the lines section's length follows from the block's meta (line bytes, plus one per entry with
//! newline framing), so it needs no field of its own. A compressed block is two zstd frames, the
//! lines section's and the rest's. The codec byte says how the block was compressed: 0 none,
//! 1 zstd. Layout in `docs/format/log-chunks.md`.

use std::sync::Arc;

use super::LogEntry;
use super::records::{get_labels, skip_labels};
use crate::codec::{get_uvarint, get_varint, put_uvarint, put_varint};

/// No compression (head blocks, tests and incompressible data).
pub(crate) const CODEC_NONE: u8 = 0;
/// zstd frames.
pub(crate) const CODEC_ZSTD: u8 = 1;

/// Lines back to back, their lengths in the columns section.
pub(crate) const FRAMING_LENGTHS: u8 = 0;
/// Every line followed by '\n'.
pub(crate) const FRAMING_NEWLINE: u8 = 1;

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
    /// Bytes of the block before compression (what a decompression must produce).
    pub raw_bytes: u32,
    /// Bytes of the lines alone, for stats and to find the end of the lines section.
    pub line_bytes: u64,
}

/// A sealed block held in memory: immutable, shared with readers. Head blocks are sealed
/// uncompressed (by default) and compressed by maintenance or the flush.
#[derive(Debug)]
pub(crate) struct SealedBlock {
    pub meta: BlockMeta,
    pub codec: u8,
    pub data: Vec<u8>,
    /// Entries have stream sequence numbers below this (and at or above the previous block's).
    pub seq_end: u64,
}

/// Builds a block from entries given in (t_ns, line) order.
#[derive(Debug, Default)]
pub(crate) struct BlockEncoder {
    /// Each line followed by '\n'.
    lines: Vec<u8>,
    /// Each entry's encoded metadata label set, back to back.
    metadata: Vec<u8>,
    times_ns: Vec<i64>,
    line_lengths: Vec<u32>,
    /// Whether some line holds a '\n', which rules out newline framing.
    line_has_newline: bool,
}

impl BlockEncoder {
    pub fn new() -> BlockEncoder {
        BlockEncoder::default()
    }

    /// An encoder over parts already built in key order: `lines` holds every line followed by
    /// '\n' (the head's open block arena, taken without copying it).
    pub fn from_parts(
        lines: Vec<u8>,
        metadata: Vec<u8>,
        times_ns: Vec<i64>,
        line_lengths: Vec<u32>,
        line_has_newline: bool,
    ) -> BlockEncoder {
        BlockEncoder { lines, metadata, times_ns, line_lengths, line_has_newline }
    }

    /// Adds an entry whose metadata is already encoded.
    pub fn push(&mut self, t_ns: i64, line: &[u8], metadata: &[u8]) {
        self.line_has_newline |= line.contains(&b'\n');
        self.lines.extend_from_slice(line);
        self.lines.push(b'\n');
        self.metadata.extend_from_slice(metadata);
        self.times_ns.push(t_ns);
        self.line_lengths.push(line.len() as u32);
    }

    /// The block before compression, and its meta.
    pub fn finish(self) -> (Vec<u8>, BlockMeta) {
        let BlockEncoder { mut lines, metadata, times_ns, line_lengths, line_has_newline } = self;
        let line_bytes: u64 = line_lengths.iter().map(|&length| u64::from(length)).sum();
        let framing = if line_has_newline {
            // Rebuild the section without the terminators (rare: multi-line entries).
            let mut plain = Vec::with_capacity(line_bytes as usize);
            let mut start = 0usize;
            for &length in &line_lengths {
                plain.extend_from_slice(&lines[start..start + length as usize]);
                start += length as usize + 1;
            }
            lines = plain;
            FRAMING_LENGTHS
        } else {
            FRAMING_NEWLINE
        };
        let mut out = lines;
        out.reserve(metadata.len() + times_ns.len() * 3 + 24);
        let first_ns = times_ns.first().copied().unwrap_or(0);
        // The time unit: the largest number dividing every step, so that timestamps kept at
        // millisecond or microsecond precision take a byte or two per entry.
        let mut unit_ns = 0u64;
        for pair in times_ns.windows(2) {
            unit_ns = gcd(unit_ns, pair[1].abs_diff(pair[0]));
            if unit_ns == 1 {
                break;
            }
        }
        let unit_ns = unit_ns.max(1);
        put_varint(&mut out, first_ns);
        put_uvarint(&mut out, unit_ns);
        for pair in times_ns.windows(2) {
            put_uvarint(&mut out, pair[1].abs_diff(pair[0]) / unit_ns);
        }
        out.extend_from_slice(&metadata);
        if framing == FRAMING_LENGTHS {
            for &length in &line_lengths {
                put_uvarint(&mut out, u64::from(length));
            }
        }
        out.push(framing);
        let meta = BlockMeta {
            min_t_ns: first_ns,
            max_t_ns: times_ns.last().copied().unwrap_or(0),
            entries: times_ns.len() as u32,
            raw_bytes: u32::try_from(out.len()).unwrap_or(u32::MAX),
            line_bytes,
        };
        (out, meta)
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Where the lines section of a raw block ends, checked against the block's length.
pub(crate) fn lines_section_len(raw: &[u8], meta: &BlockMeta) -> Result<usize, String> {
    let framing = *raw.last().ok_or("block is empty")?;
    let terminators = match framing {
        FRAMING_NEWLINE => u64::from(meta.entries),
        FRAMING_LENGTHS => 0,
        other => return Err(format!("unknown line framing {other}")),
    };
    let length = meta.line_bytes.checked_add(terminators).filter(|length| *length < raw.len() as u64);
    length.map(|length| length as usize).ok_or_else(|| "lines section runs past the block".to_string())
}

/// Compresses a zstd frame of `raw` onto the end of `out`, with one reused context per thread
/// and level. `false` if zstd failed (allocation failure; a bad level is clamped by zstd).
fn zstd_frame(level: i32, raw: &[u8], out: &mut Vec<u8>) -> bool {
    thread_local! {
        static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
            const { std::cell::RefCell::new(None) };
    }
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(cached, _)| *cached != level) {
            *slot = zstd::bulk::Compressor::new(level).ok().map(|compressor| (level, compressor));
        }
        let Some((_, compressor)) = slot.as_mut() else { return false };
        // Straight into the output, past what it holds.
        let start = out.len();
        out.resize(start + zstd::zstd_safe::compress_bound(raw.len()), 0);
        match compressor.compress_to_buffer(raw, &mut out[start..]) {
            Ok(written) => {
                out.truncate(start + written);
                true
            }
            Err(_) => {
                out.truncate(start);
                false
            }
        }
    })
}

/// Compresses a raw block with `codec`: the lines section and the rest as two frames. `None`
/// when the block is better kept as it is (no codec, or compression would not make it smaller).
pub(crate) fn compress_block(codec: LogsCodec, raw: &[u8], meta: &BlockMeta) -> Option<Vec<u8>> {
    let LogsCodec::Zstd { level } = codec else { return None };
    let split = lines_section_len(raw, meta).ok()?;
    let mut data = Vec::with_capacity(raw.len() / 4);
    let compressed = zstd_frame(level, &raw[..split], &mut data) && zstd_frame(level, &raw[split..], &mut data);
    (compressed && data.len() < raw.len()).then_some(data)
}

/// Counts the bytes of `bytes` equal to `wanted`, in a form the compiler vectorises.
pub(crate) fn count_bytes(bytes: &[u8], wanted: u8) -> usize {
    let mut total = 0usize;
    let mut chunks = bytes.chunks_exact(128);
    for chunk in &mut chunks {
        // At most 128 per chunk: the sum fits a u8.
        total += usize::from(chunk.iter().map(|&byte| u8::from(byte == wanted)).fold(0u8, u8::wrapping_add));
    }
    total + chunks.remainder().iter().filter(|&&byte| byte == wanted).count()
}

/// Decompresses a block into `out`; the result must be exactly `raw_bytes` long.
pub(crate) fn decompress(codec: u8, data: &[u8], raw_bytes: u32, out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    if u64::from(raw_bytes) > MAX_BLOCK_RAW_BYTES {
        return Err(format!("block claims {raw_bytes} uncompressed bytes, over the limit"));
    }
    match codec {
        CODEC_NONE => out.extend_from_slice(data),
        // The output is capped at the size the block's meta states, itself capped above;
        // every frame is decompressed.
        CODEC_ZSTD => zstd_decompress(data, raw_bytes as usize, out)?,
        other => return Err(format!("unknown codec {other}")),
    }
    if out.len() != raw_bytes as usize {
        return Err(format!("block decompressed to {} bytes, expected {raw_bytes}", out.len()));
    }
    Ok(())
}

/// Decompresses the zstd frames of `data` into `out`, at most `capacity` bytes, with one
/// reused decompression context per thread.
fn zstd_decompress(data: &[u8], capacity: usize, out: &mut Vec<u8>) -> Result<(), String> {
    thread_local! {
        static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    out.reserve(capacity);
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
    })
}

/// Whether some line of the block may contain every one of `needles`: `false` only when one
/// of them occurs nowhere in the block's lines section, so that no line holds it. Looks at the
/// lines section alone: for a compressed block only its first frame is decompressed (into
/// `scratch`), the columns are never touched. A needle found across two lines only makes the
/// answer a `true` the caller then checks line by line.
pub(crate) fn lines_may_contain_all(
    codec: u8,
    data: &[u8],
    meta: &BlockMeta,
    needles: &[memchr::memmem::Finder<'_>],
    scratch: &mut Vec<u8>,
) -> Result<bool, String> {
    let lines: &[u8] = match codec {
        // The lines section is the block's prefix; the rest can only add false positives.
        CODEC_NONE => data,
        CODEC_ZSTD => {
            let frame = zstd::zstd_safe::find_frame_compressed_size(data)
                .map_err(|code| format!("lines frame: {}", zstd::zstd_safe::get_error_name(code)))?;
            let capacity = meta.line_bytes.saturating_add(u64::from(meta.entries));
            if capacity > MAX_BLOCK_RAW_BYTES || frame > data.len() {
                return Err("lines frame claims more than the block holds".into());
            }
            scratch.clear();
            zstd_decompress(&data[..frame], capacity as usize, scratch)?;
            scratch
        }
        other => return Err(format!("unknown codec {other}")),
    };
    Ok(needles.iter().all(|needle| needle.find(lines).is_some()))
}

/// One entry of a decoded block: its time and where its line and metadata are.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntrySlot {
    pub t_ns: i64,
    pub line_start: u32,
    pub line_end: u32,
    pub metadata_start: u32,
    pub metadata_end: u32,
}

/// A decompressed block, its entries located (not yet materialised).
#[derive(Debug)]
pub(crate) struct DecodedBlock {
    pub raw: Arc<Vec<u8>>,
    pub slots: Vec<EntrySlot>,
}

impl DecodedBlock {
    /// Locates every entry; checks the framing against `meta`, that times do not go backwards
    /// and stay within the meta's bounds, and that lines are UTF-8.
    pub fn parse(raw: Vec<u8>, meta: &BlockMeta) -> Result<DecodedBlock, String> {
        let lines_len = lines_section_len(&raw, meta)?;
        let framing = raw[raw.len() - 1];
        let entries = meta.entries as usize;
        if entries == 0 {
            return Err("block holds no entries".into());
        }
        if entries > raw.len() {
            return Err(format!("block claims {entries} entries in {} bytes", raw.len()));
        }
        let total = raw.len();
        let mut columns = &raw[lines_len..total - 1];
        let offset = |rest: &[u8]| (total - 1 - rest.len()) as u32;
        let mut slots = Vec::with_capacity(entries);
        let mut t_ns = get_varint(&mut columns).ok_or("first entry time is malformed")?;
        let unit_ns = get_uvarint(&mut columns).filter(|unit| *unit > 0).ok_or("time unit is malformed")?;
        for index in 0..entries {
            if index > 0 {
                let steps = get_uvarint(&mut columns).ok_or("entry time is malformed")?;
                let step = steps.checked_mul(unit_ns).and_then(|step| i64::try_from(step).ok());
                t_ns = step.and_then(|step| t_ns.checked_add(step)).ok_or("entry time overflows")?;
            }
            slots.push(EntrySlot { t_ns, line_start: 0, line_end: 0, metadata_start: 0, metadata_end: 0 });
        }
        if slots[0].t_ns != meta.min_t_ns || t_ns != meta.max_t_ns {
            return Err("entry times disagree with the block's bounds".into());
        }
        for slot in &mut slots {
            slot.metadata_start = offset(columns);
            skip_labels(&mut columns).map_err(|_| "entry metadata is malformed")?;
            slot.metadata_end = offset(columns);
        }
        let lines = &raw[..lines_len];
        if framing == FRAMING_NEWLINE {
            // '\n' never occurs inside a multi-byte character, so the section is valid UTF-8
            // exactly when every line is.
            let text = std::str::from_utf8(lines).map_err(|_| "entry line is not utf-8")?;
            let mut start = 0usize;
            let mut pieces = text.split_terminator('\n');
            for slot in &mut slots {
                let line = pieces.next().ok_or("fewer lines than entries")?;
                slot.line_start = start as u32;
                slot.line_end = (start + line.len()) as u32;
                start += line.len() + 1;
            }
            if start != lines_len || pieces.next().is_some() {
                return Err("lines section does not hold one line per entry".into());
            }
        } else {
            let mut start = 0usize;
            for slot in &mut slots {
                let length = get_uvarint(&mut columns).ok_or("line length is malformed")? as usize;
                let end =
                    start.checked_add(length).filter(|end| *end <= lines_len).ok_or("line runs past its section")?;
                std::str::from_utf8(&lines[start..end]).map_err(|_| "entry line is not utf-8")?;
                slot.line_start = start as u32;
                slot.line_end = end as u32;
                start = end;
            }
            if start != lines_len {
                return Err("lines section does not hold one line per entry".into());
            }
        }
        if !columns.is_empty() {
            return Err("columns section has trailing bytes".into());
        }
        Ok(DecodedBlock { raw: Arc::new(raw), slots })
    }

    pub fn line(&self, slot: &EntrySlot) -> &[u8] {
        &self.raw[slot.line_start as usize..slot.line_end as usize]
    }

    pub fn metadata(&self, slot: &EntrySlot) -> &[u8] {
        &self.raw[slot.metadata_start as usize..slot.metadata_end as usize]
    }

    /// Materialises an entry.
    pub fn entry(&self, slot: &EntrySlot) -> Result<LogEntry, String> {
        // Checked to be UTF-8 by `parse`.
        let bytes = self.line(slot);
        let line =
            std::str::from_utf8(bytes).map_or_else(|_| String::from_utf8_lossy(bytes).into_owned(), str::to_owned);
        let metadata = get_labels(&mut self.metadata(slot)).map_err(|_| "entry metadata is malformed".to_string())?;
        Ok(LogEntry { t_ns: slot.t_ns, line, metadata })
    }
}

/// The lines of a raw block, one at a time, without materialising entries (for blooms).
pub(crate) fn for_each_line(raw: &[u8], meta: &BlockMeta, mut each: impl FnMut(&[u8])) -> Result<(), String> {
    let lines_len = lines_section_len(raw, meta)?;
    if raw[raw.len() - 1] == FRAMING_NEWLINE {
        // Grams across a '\n' are harmless extras: the whole section goes in one pass.
        each(&raw[..lines_len]);
        return Ok(());
    }
    let block = DecodedBlock::parse(raw.to_vec(), meta)?;
    for slot in &block.slots {
        each(block.line(slot));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;
    use crate::logs::records::put_labels;

    fn encode(lines: &[(i64, String, bool)]) -> (Vec<u8>, BlockMeta) {
        let metadata = Labels::from_pairs([("trace_id", "0af7651916cd43dd8448eb211c80319c")]).unwrap();
        let mut encoded_metadata = Vec::new();
        put_labels(&mut encoded_metadata, &metadata);
        let mut empty = Vec::new();
        put_labels(&mut empty, &Labels::empty());
        let mut encoder = BlockEncoder::new();
        for (t_ns, line, with_metadata) in lines {
            encoder.push(*t_ns, line.as_bytes(), if *with_metadata { &encoded_metadata } else { &empty });
        }
        encoder.finish()
    }

    #[test]
    fn blocks_round_trip_through_every_codec_and_framing() {
        let metadata = Labels::from_pairs([("trace_id", "0af7651916cd43dd8448eb211c80319c")]).unwrap();
        for multi_line in [false, true] {
            let lines: Vec<(i64, String, bool)> = (0..1000i64)
                .map(|i| {
                    let line = if multi_line && i % 100 == 7 {
                        format!("panic at item {i}\n  at main.rs:{i}\n")
                    } else if i % 250 == 0 {
                        // Empty lines are entries too.
                        String::new()
                    } else {
                        format!("GET /api/v1/items/{i} 200 {}ms é", i % 17)
                    };
                    (-500_000 + i * 1000, line, i % 3 == 0)
                })
                .collect();
            let (raw, meta) = encode(&lines);
            assert_eq!((meta.min_t_ns, meta.max_t_ns, meta.entries), (-500_000, 499_000, 1000));
            assert_eq!(raw[raw.len() - 1], if multi_line { FRAMING_LENGTHS } else { FRAMING_NEWLINE });
            for codec in [LogsCodec::None, LogsCodec::Zstd { level: 1 }, LogsCodec::Zstd { level: 9 }] {
                let (codec_byte, data) = match compress_block(codec, &raw, &meta) {
                    Some(data) => (CODEC_ZSTD, data),
                    None => (CODEC_NONE, raw.clone()),
                };
                let mut out = Vec::new();
                decompress(codec_byte, &data, meta.raw_bytes, &mut out).unwrap();
                assert_eq!(out, raw);
                let block = DecodedBlock::parse(out, &meta).unwrap();
                for (index, (t_ns, line, with_metadata)) in lines.iter().enumerate() {
                    let entry = block.entry(&block.slots[index]).unwrap();
                    assert_eq!((entry.t_ns, &entry.line), (*t_ns, line));
                    assert_eq!(entry.metadata, if *with_metadata { metadata.clone() } else { Labels::empty() });
                }
            }
            let mut seen = 0;
            for_each_line(&raw, &meta, |lines| seen += lines.len()).unwrap();
            assert!(seen as u64 >= meta.line_bytes);
        }
    }

    #[test]
    fn text_and_numbers_compress_apart() {
        let lines: Vec<(i64, String, bool)> =
            (0..2000i64).map(|i| (i * 1_000_000, format!("GET /api/v1/items/{i} 200 {}ms", i % 17), false)).collect();
        let (raw, meta) = encode(&lines);
        // A newline, a time step and an empty metadata set per entry: millisecond steps take one
        // varint byte each, as the time unit is 1 ms.
        assert!(raw.len() < meta.line_bytes as usize + 3 * 2000 + 32, "{} bytes", raw.len());
        let data = compress_block(LogsCodec::Zstd { level: 3 }, &raw, &meta).unwrap();
        assert!(data.len() * 4 < raw.len(), "{} of {}", data.len(), raw.len());
        assert_eq!(count_bytes(&raw, b'\n'), 2000 + count_bytes(&raw[meta.line_bytes as usize + 2000..], b'\n'));
        assert_eq!(count_bytes(&[b'\n'; 1000], b'\n'), 1000);
    }

    #[test]
    fn damage_is_an_error_never_a_panic() {
        let lines: Vec<(i64, String, bool)> =
            (0..50i64).map(|i| (i * 7, format!("line {i} with a few words"), i % 2 == 0)).collect();
        let (raw, meta) = encode(&lines);
        let mut data = compress_block(LogsCodec::Zstd { level: 3 }, &raw, &meta).unwrap();
        data.truncate(data.len() / 2);
        assert!(decompress(CODEC_ZSTD, &data, meta.raw_bytes, &mut Vec::new()).is_err());
        assert!(decompress(7, &raw, meta.raw_bytes, &mut Vec::new()).is_err());
        // Cut anywhere before the framing byte (then put back): always refused.
        for cut in 0..raw.len() - 1 {
            let mut shorter = raw[..cut].to_vec();
            shorter.push(FRAMING_NEWLINE);
            assert!(DecodedBlock::parse(shorter, &meta).is_err(), "cut at {cut}");
        }
        for position in 0..raw.len() {
            for flip in [0x01, 0x80, 0x0a] {
                let mut damaged = raw.clone();
                damaged[position] ^= flip;
                // Either refused, or (a flip inside a line's text) still one entry per slot.
                if let Ok(block) = DecodedBlock::parse(damaged, &meta) {
                    assert_eq!(block.slots.len(), 50);
                }
            }
        }
        let wrong_count = BlockMeta { entries: 49, ..meta };
        assert!(DecodedBlock::parse(raw.clone(), &wrong_count).is_err());
        let wrong_bounds = BlockMeta { max_t_ns: meta.max_t_ns + 1, ..meta };
        assert!(DecodedBlock::parse(raw, &wrong_bounds).is_err());
    }

    #[test]
    fn the_lines_section_alone_rules_blocks_out() {
        let lines: Vec<(i64, String, bool)> =
            (0..200i64).map(|i| (i, format!("GET /api/items/{i} status={}", 200 + i % 3), true)).collect();
        let (raw, meta) = encode(&lines);
        let compressed = compress_block(LogsCodec::Zstd { level: 1 }, &raw, &meta).unwrap();
        let finders = |needles: &[&'static str]| -> Vec<memchr::memmem::Finder<'static>> {
            needles.iter().map(|needle| memchr::memmem::Finder::new(needle.as_bytes())).collect()
        };
        let cases: [(&[&'static str], bool); 6] = [
            (&["items/199 "], true),
            (&["items/17 ", "status=202"], true),
            (&["items/200"], false),
            (&["status=203"], false),
            (&["status=200", "nowhere"], false),
            // Only in the metadata column: no line holds it, so the block is ruled out.
            (&["0af7651916cd43dd"], false),
        ];
        for (codec, data) in [(CODEC_ZSTD, &compressed), (CODEC_NONE, &raw)] {
            for (needles, expected) in cases {
                let found = lines_may_contain_all(codec, data, &meta, &finders(needles), &mut Vec::new()).unwrap();
                // Raw blocks are searched whole, columns included: a metadata match may pass.
                if codec == CODEC_NONE && needles == ["0af7651916cd43dd"] {
                    continue;
                }
                assert_eq!(found, expected, "codec {codec}, {needles:?}");
            }
        }
        // A damaged or cut frame is an error, never a panic.
        for cut in [0, 1, 5, compressed.len() / 3] {
            let _ = lines_may_contain_all(CODEC_ZSTD, &compressed[..cut], &meta, &finders(&["x"]), &mut Vec::new());
        }
        let small_meta = BlockMeta { line_bytes: 10, entries: 1, ..meta };
        assert!(
            lines_may_contain_all(CODEC_ZSTD, &compressed, &small_meta, &finders(&["x"]), &mut Vec::new()).is_err()
        );
    }
}
