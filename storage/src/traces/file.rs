//! Block files: one tenant's spans as one cut (or compaction) wrote them, under
//! `data/traces/<id>.ttrc`. Written to a temporary name, synced, renamed into place, the
//! directory synced; never modified afterwards.
//!
//! ```text
//! header       "TTRC", version u8 = 2, 3 reserved bytes
//! pages        per page: directory, frames, bloom, crc32c(bloom) u32
//! trace bloom  bloom filter over the trace IDs; then crc32c u32
//! meta         ids, tenant, level, sources, sequence number, counts, bounds, value index,
//!              page table with each page's first and last trace ID
//! footer       meta offset u64, meta length u64, crc32c(meta) u32, crc32c(footer) u32, "TTRF"
//! ```
//!
//! A page is stored as frames compressed one by one (its header, then its groups; see `page`),
//! behind a directory that gives each frame's codec, sizes and checksum, so that a reader
//! checks and decompresses only the frames it needs. Pages hold traces in ascending ID order,
//! each trace in one page, so the page of a trace is found by a binary search of the pages' ID
//! ranges (kept in memory), after the trace bloom said the block may hold it. At open the
//! footer, meta and trace bloom are checked; a page's directory, its frames and its bloom are
//! checked each time they are read. Every integer is little-endian; layout in
//! `docs/format/trace-blocks.md`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::SpanCondition;
use super::TraceId;
use super::TracesError;
use super::codec::{self, MAX_PAGE_RAW_BYTES, TracesCodec};
use super::hash::{Bloom, hash_bytes, stored_may_contain};
use super::index::{Bounds, ValueIndex, bloom_may_match};
use super::page::EncodedPage;
use crate::codec::{get_array, get_str, get_u8, get_u32, get_u64, get_uvarint, put_bytes, put_uvarint};

const HEADER_MAGIC: [u8; 4] = *b"TTRC";
const FOOTER_MAGIC: [u8; 4] = *b"TTRF";
/// 2: pages stored as separately compressed frames (a header and groups of traces) behind a
/// directory. Files of another version are not read.
pub(crate) const FORMAT_VERSION: u8 = 2;
const HEADER_LEN: usize = 8;
const FOOTER_LEN: usize = 28;

/// The seed of trace-ID hashes in the trace bloom.
const TRACE_BLOOM_SEED: u64 = 0x7472_6163_6569_6421;
/// Bits per trace ID in the trace bloom (rounded up to a whole word), and hashes per ID:
/// under 1% false positives.
const TRACE_BLOOM_BITS_PER_ID: u32 = 12;
const TRACE_BLOOM_HASHES: u8 = 6;
/// The same for the page blooms of keys and key=value pairs.
const PAGE_BLOOM_BITS_PER_ITEM: u32 = 10;
const PAGE_BLOOM_HASHES: u8 = 5;

/// The file name suffix of a block file, of one being written, and of one moved aside.
pub(crate) const FILE_SUFFIX: &str = ".ttrc";
pub(crate) const TEMP_SUFFIX: &str = ".ttrc.tmp";
pub(crate) const CORRUPT_SUFFIX: &str = ".ttrc.corrupt";

pub(crate) fn trace_hash(trace_id: &TraceId) -> u64 {
    hash_bytes(TRACE_BLOOM_SEED, trace_id)
}

/// A page as the page table describes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageEntry {
    pub offset: u64,
    /// Stored bytes of the directory and frames.
    pub data_len: u32,
    /// Uncompressed bytes of the frames.
    pub raw_len: u32,
    pub traces: u32,
    /// The smallest and largest trace ID of the page.
    pub first_trace_id: TraceId,
    pub last_trace_id: TraceId,
    pub bounds: Bounds,
    pub bloom_words: u32,
    pub bloom_hashes: u8,
}

impl PageEntry {
    fn bloom_offset(&self) -> u64 {
        self.offset + u64::from(self.data_len)
    }

    fn stored_bytes(&self) -> u64 {
        u64::from(self.data_len) + Bloom::byte_len(self.bloom_words) as u64 + 4
    }
}

/// An open block file.
#[derive(Debug)]
pub(crate) struct BlockFile {
    pub id: String,
    pub path: PathBuf,
    pub tenant: String,
    /// 1 for a cut; one more than the highest input for a compaction.
    pub level: u32,
    /// Files this one replaced (empty for a cut).
    pub sources: Vec<String>,
    /// Every span of the tenant appended with a sequence number below this was in the head
    /// when this block (or one of its sources) was cut.
    pub seq_end: u64,
    pub trace_count: u64,
    pub bounds: Bounds,
    pub index: ValueIndex,
    pub pages: Vec<PageEntry>,
    pub size_bytes: u64,
    trace_bloom: Bloom,
    map: memmap2::Mmap,
}

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> TracesError {
    move |source| TracesError::Io { context, source }
}

fn crc_at(map: &[u8], start: usize, len: usize) -> Option<(&[u8], bool)> {
    let bytes = map.get(start..start.checked_add(len)?.checked_add(4)?)?;
    let (data, crc) = bytes.split_at(len);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    Some((data, crc32c::crc32c(data) == stored))
}

struct Meta {
    id: String,
    tenant: String,
    level: u32,
    sources: Vec<String>,
    seq_end: u64,
    trace_count: u64,
    trace_bloom_offset: u64,
    trace_bloom_words: u32,
    trace_bloom_hashes: u8,
    bounds: Bounds,
    index: ValueIndex,
    pages: Vec<PageEntry>,
}

fn decode_meta(mut input: &[u8]) -> Result<Meta, String> {
    let malformed = |what: &str| format!("meta is malformed ({what})");
    let input = &mut input;
    let id = get_str(input).ok_or_else(|| malformed("file id"))?.to_string();
    let tenant = get_str(input).ok_or_else(|| malformed("tenant"))?.to_string();
    let level = u32::try_from(get_uvarint(input).ok_or_else(|| malformed("level"))?).map_err(|_| malformed("level"))?;
    let source_count = get_uvarint(input).ok_or_else(|| malformed("sources"))?;
    let mut sources = Vec::with_capacity(source_count.min(1024) as usize);
    for _ in 0..source_count {
        sources.push(get_str(input).ok_or_else(|| malformed("source"))?.to_string());
    }
    let seq_end = get_uvarint(input).ok_or_else(|| malformed("sequence number"))?;
    let trace_count = get_uvarint(input).ok_or_else(|| malformed("trace count"))?;
    let trace_bloom_offset = get_uvarint(input).ok_or_else(|| malformed("trace bloom"))?;
    let trace_bloom_words =
        get_uvarint(input).and_then(|v| u32::try_from(v).ok()).ok_or_else(|| malformed("trace bloom"))?;
    let trace_bloom_hashes = get_u8(input).ok_or_else(|| malformed("trace bloom"))?;
    let bounds = Bounds::decode(input).ok_or_else(|| malformed("bounds"))?;
    let index = ValueIndex::decode(input).map_err(|_| malformed("value index"))?;
    let page_count = get_uvarint(input).ok_or_else(|| malformed("page count"))?;
    let mut pages = Vec::with_capacity(page_count.min(1 << 20) as usize);
    for _ in 0..page_count {
        let offset = get_uvarint(input).ok_or_else(|| malformed("page offset"))?;
        let data_len =
            get_uvarint(input).and_then(|v| u32::try_from(v).ok()).ok_or_else(|| malformed("page length"))?;
        let raw_len = get_uvarint(input).and_then(|v| u32::try_from(v).ok()).ok_or_else(|| malformed("page size"))?;
        let traces = get_uvarint(input).and_then(|v| u32::try_from(v).ok()).ok_or_else(|| malformed("page traces"))?;
        let first_trace_id = get_array::<16>(input).ok_or_else(|| malformed("page first trace"))?;
        let last_trace_id = get_array::<16>(input).ok_or_else(|| malformed("page last trace"))?;
        let page_bounds = Bounds::decode(input).ok_or_else(|| malformed("page bounds"))?;
        let bloom_words =
            get_uvarint(input).and_then(|v| u32::try_from(v).ok()).ok_or_else(|| malformed("page bloom"))?;
        let bloom_hashes = get_u8(input).ok_or_else(|| malformed("page bloom"))?;
        pages.push(PageEntry {
            offset,
            data_len,
            raw_len,
            traces,
            first_trace_id,
            last_trace_id,
            bounds: page_bounds,
            bloom_words,
            bloom_hashes,
        });
    }
    if !input.is_empty() {
        return Err(malformed("trailing bytes"));
    }
    Ok(Meta {
        id,
        tenant,
        level,
        sources,
        seq_end,
        trace_count,
        trace_bloom_offset,
        trace_bloom_words,
        trace_bloom_hashes,
        bounds,
        index,
        pages,
    })
}

impl BlockFile {
    fn corrupt(&self, problem: String) -> TracesError {
        TracesError::Corrupt { file: self.path.display().to_string(), problem }
    }

    /// Opens a block file, checking its header, footer, meta, page table and trace bloom.
    pub fn open(path: &Path) -> Result<BlockFile, TracesError> {
        let corrupt = |problem: String| TracesError::Corrupt { file: path.display().to_string(), problem };
        let file = File::open(path).map_err(io_error(format!("opening {}", path.display())))?;
        // SAFETY: block files are immutable once renamed into place: nothing writes to them
        // again, and they are only unlinked, which keeps the mapping valid.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_error(format!("mapping {}", path.display())))?;
        if map.len() < HEADER_LEN + FOOTER_LEN {
            return Err(corrupt(format!("file of {} bytes is too short", map.len())));
        }
        if map[0..4] != HEADER_MAGIC {
            return Err(corrupt("bad header magic".into()));
        }
        if map[4] != FORMAT_VERSION {
            return Err(corrupt(format!("format version {} is not supported", map[4])));
        }
        let footer = &map[map.len() - FOOTER_LEN..];
        if footer[24..28] != FOOTER_MAGIC {
            return Err(corrupt("bad footer magic (file cut short?)".into()));
        }
        let mut fields = &footer[0..24];
        let (Some(meta_offset), Some(meta_len), Some(meta_crc), Some(footer_crc)) =
            (get_u64(&mut fields), get_u64(&mut fields), get_u32(&mut fields), get_u32(&mut fields))
        else {
            return Err(corrupt("footer is malformed".into()));
        };
        if crc32c::crc32c(&footer[0..20]) != footer_crc {
            return Err(corrupt("footer checksum mismatch".into()));
        }
        let meta_end = meta_offset.checked_add(meta_len).filter(|end| *end == (map.len() - FOOTER_LEN) as u64);
        if meta_end.is_none() || meta_offset < HEADER_LEN as u64 {
            return Err(corrupt("meta is out of bounds".into()));
        }
        let meta_bytes = &map[meta_offset as usize..(meta_offset + meta_len) as usize];
        if crc32c::crc32c(meta_bytes) != meta_crc {
            return Err(corrupt("meta checksum mismatch".into()));
        }
        let meta = decode_meta(meta_bytes).map_err(&corrupt)?;
        let id_from_name = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(FILE_SUFFIX))
            .unwrap_or_default();
        if meta.id != id_from_name {
            return Err(corrupt(format!("meta names file {}", meta.id)));
        }
        // Every part lies between the header and the meta, in order.
        let mut expected = HEADER_LEN as u64;
        for (index, page) in meta.pages.iter().enumerate() {
            if page.offset != expected {
                return Err(corrupt(format!("page {index} is out of place")));
            }
            if !Bloom::parts_valid(page.bloom_words, page.bloom_hashes) {
                return Err(corrupt(format!("page {index} bloom is malformed")));
            }
            expected += page.stored_bytes();
        }
        if meta.pages.windows(2).any(|pair| pair[0].last_trace_id >= pair[1].first_trace_id)
            || meta.pages.iter().any(|page| page.first_trace_id > page.last_trace_id || page.traces == 0)
            || meta.pages.iter().map(|page| u64::from(page.traces)).sum::<u64>() != meta.trace_count
        {
            return Err(corrupt("page table trace ranges are malformed".into()));
        }
        if !Bloom::parts_valid(meta.trace_bloom_words, meta.trace_bloom_hashes) {
            return Err(corrupt("trace bloom is malformed".into()));
        }
        let bloom_len = Bloom::byte_len(meta.trace_bloom_words);
        if meta.trace_bloom_offset != expected || expected.checked_add(bloom_len as u64 + 4) != Some(meta_offset) {
            return Err(corrupt("trace bloom is out of place".into()));
        }
        let trace_bloom = match crc_at(&map, meta.trace_bloom_offset as usize, bloom_len) {
            Some((bits, true)) => Bloom::from_parts(meta.trace_bloom_words, meta.trace_bloom_hashes, bits)
                .ok_or_else(|| corrupt("trace bloom is malformed".into()))?,
            _ => return Err(corrupt("trace bloom checksum mismatch".into())),
        };
        let size_bytes = map.len() as u64;
        Ok(BlockFile {
            id: meta.id,
            path: path.to_path_buf(),
            tenant: meta.tenant,
            level: meta.level,
            sources: meta.sources,
            seq_end: meta.seq_end,
            trace_count: meta.trace_count,
            bounds: meta.bounds,
            index: meta.index,
            pages: meta.pages,
            size_bytes,
            trace_bloom,
            map,
        })
    }

    /// The page that holds `trace_id` if the block has it: the bloom first, then a binary
    /// search of the pages' trace-ID ranges. The page may still not hold it (a bloom false
    /// positive that falls inside a page's range).
    pub fn find_trace(&self, trace_id: &TraceId) -> Option<u32> {
        if !self.trace_bloom.may_contain(trace_hash(trace_id)) {
            return None;
        }
        let index = self.pages.partition_point(|page| page.last_trace_id < *trace_id);
        let page = self.pages.get(index)?;
        (page.first_trace_id <= *trace_id).then_some(index as u32)
    }

    /// The directory of page `index` (checksum verified): its frames, ready to be read.
    pub fn page(&self, index: u32) -> Result<PageFrames<'_>, TracesError> {
        let page = self.pages.get(index as usize).ok_or_else(|| self.corrupt(format!("no page {index}")))?;
        let start = page.offset as usize;
        let data = start
            .checked_add(page.data_len as usize)
            .and_then(|end| self.map.get(start..end))
            .ok_or_else(|| self.corrupt(format!("page {index} out of bounds")))?;
        let (frames, body) =
            parse_directory(data).map_err(|problem| self.corrupt(format!("page {index} directory: {problem}")))?;
        let raw_total: u64 = frames.iter().map(|frame| u64::from(frame.raw_len)).sum();
        if raw_total != u64::from(page.raw_len) {
            return Err(self.corrupt(format!("page {index} directory does not match the page table")));
        }
        Ok(PageFrames { block: self, page: index, frames, body })
    }

    /// Whether page `index` may hold a span satisfying `conditions`, by its bloom filter
    /// (checksum verified).
    pub fn page_bloom_may_match(&self, index: u32, conditions: &[SpanCondition]) -> Result<bool, TracesError> {
        let page = self.pages.get(index as usize).ok_or_else(|| self.corrupt(format!("no page {index}")))?;
        let len = Bloom::byte_len(page.bloom_words);
        match crc_at(&self.map, page.bloom_offset() as usize, len) {
            Some((bits, true)) => {
                Ok(bloom_may_match(conditions, |hash| stored_may_contain(page.bloom_hashes, bits, hash)))
            }
            _ => Err(self.corrupt(format!("bloom of page {index} checksum mismatch"))),
        }
    }

    /// Checks every page's directory, frames and bloom.
    pub fn verify(&self) -> Result<(), TracesError> {
        let mut raw = Vec::new();
        for index in 0..self.pages.len() as u32 {
            let page = self.page(index)?;
            for frame in 0..page.frame_count() {
                page.read(frame, &mut raw)?;
            }
            self.page_bloom_may_match(index, &[])?;
        }
        Ok(())
    }
}

/// A frame of a page as its directory describes it.
#[derive(Debug, Clone, Copy)]
struct FrameEntry {
    codec: u8,
    /// Where its stored bytes start in the page's frames.
    start: u32,
    stored_len: u32,
    raw_len: u32,
    crc: u32,
}

/// Parses a page's directory; returns the frames and the bytes they are stored in, which
/// must be exactly the rest of the page.
fn parse_directory(data: &[u8]) -> Result<(Vec<FrameEntry>, &[u8]), String> {
    let mut input = data;
    let malformed = || "malformed".to_string();
    let count = get_uvarint(&mut input).ok_or_else(malformed)?;
    // A frame takes at least 7 bytes of directory.
    if count == 0 || count > input.len() as u64 / 7 {
        return Err(malformed());
    }
    let mut frames = Vec::with_capacity(count as usize);
    let mut start = 0u64;
    for _ in 0..count {
        let codec = get_u8(&mut input).ok_or_else(malformed)?;
        let stored_len = get_uvarint(&mut input).and_then(|v| u32::try_from(v).ok()).ok_or_else(malformed)?;
        let raw_len = get_uvarint(&mut input).and_then(|v| u32::try_from(v).ok()).ok_or_else(malformed)?;
        let crc = get_u32(&mut input).ok_or_else(malformed)?;
        if u64::from(raw_len) > MAX_PAGE_RAW_BYTES {
            return Err(format!("a frame claims {raw_len} uncompressed bytes, over the limit"));
        }
        frames.push(FrameEntry { codec, start: start as u32, stored_len, raw_len, crc });
        start += u64::from(stored_len);
        if start > u64::from(u32::MAX) {
            return Err(malformed());
        }
    }
    let directory_len = data.len() - input.len();
    let stored_crc = get_u32(&mut input).ok_or_else(malformed)?;
    if crc32c::crc32c(&data[..directory_len]) != stored_crc {
        return Err("checksum mismatch".into());
    }
    if input.len() as u64 != start {
        return Err("frames do not fill the page".into());
    }
    Ok((frames, input))
}

/// Writes a page's directory for frames stored as `frames` (codec, stored bytes, raw length).
fn put_directory(out: &mut Vec<u8>, frames: &[(u8, Vec<u8>, usize)]) {
    let start = out.len();
    put_uvarint(out, frames.len() as u64);
    for (codec, data, raw_len) in frames {
        out.push(*codec);
        put_uvarint(out, data.len() as u64);
        put_uvarint(out, *raw_len as u64);
        out.extend_from_slice(&crc32c::crc32c(data).to_le_bytes());
    }
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// The frames of one page of a block (the header is frame 0, group `g` frame `g + 1`).
pub(crate) struct PageFrames<'f> {
    block: &'f BlockFile,
    page: u32,
    frames: Vec<FrameEntry>,
    body: &'f [u8],
}

impl PageFrames<'_> {
    pub fn frame_count(&self) -> usize {
        self.frames.len()
    }

    /// Decompresses frame `frame` into `out`, checksum verified.
    pub fn read(&self, frame: usize, out: &mut Vec<u8>) -> Result<(), TracesError> {
        let page = self.page;
        let entry =
            self.frames.get(frame).ok_or_else(|| self.block.corrupt(format!("page {page} has no frame {frame}")))?;
        let start = entry.start as usize;
        let data = &self.body[start..start + entry.stored_len as usize];
        if crc32c::crc32c(data) != entry.crc {
            return Err(self.block.corrupt(format!("page {page} frame {frame} checksum mismatch")));
        }
        codec::decompress(entry.codec, data, u64::from(entry.raw_len), out)
            .map_err(|problem| self.block.corrupt(format!("page {page} frame {frame}: {problem}")))
    }

    /// The error for a page whose content does not decode.
    pub fn damaged(&self, problem: String) -> TracesError {
        self.block.corrupt(format!("page {}: {problem}", self.page))
    }
}

/// A new file ID: sortable by creation time, unique within the process and across restarts.
pub(crate) fn new_file_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let millis =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let sequence = COUNTER.fetch_add(1, Ordering::Relaxed);
    let salt = (u64::from(std::process::id()) << 24) ^ sequence.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!("{millis:013x}{salt:016x}")
}

/// Writes a block file: pages in trace-ID order, then [`BlockWriter::finish`].
pub(crate) struct BlockWriter {
    id: String,
    tenant: String,
    level: u32,
    sources: Vec<String>,
    codec: TracesCodec,
    final_path: PathBuf,
    temp_path: PathBuf,
    out: BufWriter<File>,
    offset: u64,
    pages: Vec<PageEntry>,
    /// Every trace ID written, for the trace bloom.
    trace_hashes: Vec<u64>,
}

impl BlockWriter {
    pub fn create(
        dir: &Path,
        tenant: &str,
        level: u32,
        sources: Vec<String>,
        codec: TracesCodec,
    ) -> Result<BlockWriter, TracesError> {
        let id = new_file_id();
        let final_path = dir.join(format!("{id}{FILE_SUFFIX}"));
        let temp_path = dir.join(format!("{id}{TEMP_SUFFIX}"));
        let file = File::create(&temp_path).map_err(io_error(format!("creating {}", temp_path.display())))?;
        let mut writer = BlockWriter {
            id,
            tenant: tenant.to_string(),
            level,
            sources,
            codec,
            final_path,
            temp_path,
            out: BufWriter::with_capacity(1 << 20, file),
            offset: 0,
            pages: Vec::new(),
            trace_hashes: Vec::new(),
        };
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(&HEADER_MAGIC);
        header.push(FORMAT_VERSION);
        header.extend_from_slice(&[0; 3]);
        writer.write(&header)?;
        Ok(writer)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), TracesError> {
        self.out.write_all(bytes).map_err(io_error(format!("writing {}", self.temp_path.display())))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Records a trace ID written (for the trace bloom).
    pub fn note_trace(&mut self, trace_id: &TraceId) {
        self.trace_hashes.push(trace_hash(trace_id));
    }

    /// Compresses and writes a page (its directory and frames) with its bloom filter.
    pub fn add_page(&mut self, page: &EncodedPage) -> Result<(), TracesError> {
        let summary = &page.summary;
        let frames: Vec<(u8, Vec<u8>, usize)> = page
            .frames
            .iter()
            .map(|raw| {
                let (codec_byte, data) = codec::compress(self.codec, raw);
                (codec_byte, data, raw.len())
            })
            .collect();
        let mut data = Vec::with_capacity(frames.iter().map(|(_, data, _)| data.len() + 16).sum::<usize>() + 8);
        put_directory(&mut data, &frames);
        for (_, bytes, _) in &frames {
            data.extend_from_slice(bytes);
        }
        let raw_len: usize = page.frames.iter().map(Vec::len).sum();
        let mut bloom = Bloom::for_items(summary.hashes.len(), PAGE_BLOOM_BITS_PER_ITEM, PAGE_BLOOM_HASHES);
        for hash in &summary.hashes {
            bloom.insert(*hash);
        }
        let bloom_bytes = bloom.to_bytes();
        let too_big = |what: &str| TracesError::Io {
            context: format!("writing {}", self.temp_path.display()),
            source: std::io::Error::other(format!("page {what} over 4 GiB")),
        };
        let data_len = u32::try_from(data.len()).map_err(|_| too_big("data"))?;
        let raw_len = u32::try_from(raw_len).map_err(|_| too_big("content"))?;
        let offset = self.offset;
        self.write(&data)?;
        self.write(&bloom_bytes)?;
        self.write(&crc32c::crc32c(&bloom_bytes).to_le_bytes())?;
        self.pages.push(PageEntry {
            offset,
            data_len,
            raw_len,
            traces: summary.traces,
            first_trace_id: summary.first_trace_id,
            last_trace_id: summary.last_trace_id,
            bounds: summary.bounds,
            bloom_words: bloom.word_count(),
            bloom_hashes: bloom.hashes(),
        });
        Ok(())
    }

    /// Writes the trace bloom, meta and footer; syncs, renames into place and
    /// syncs the directory. Returns `None` (and removes the temporary file) when no page was
    /// added.
    pub fn finish(
        mut self,
        seq_end: u64,
        bounds: &Bounds,
        index: &ValueIndex,
    ) -> Result<Option<BlockFile>, TracesError> {
        if self.pages.is_empty() {
            drop(self.out);
            fs::remove_file(&self.temp_path).map_err(io_error(format!("removing {}", self.temp_path.display())))?;
            return Ok(None);
        }
        let mut bloom = Bloom::for_items(self.trace_hashes.len(), TRACE_BLOOM_BITS_PER_ID, TRACE_BLOOM_HASHES);
        for hash in &self.trace_hashes {
            bloom.insert(*hash);
        }
        let bloom_offset = self.offset;
        let bloom_bytes = bloom.to_bytes();
        self.write(&bloom_bytes)?;
        self.write(&crc32c::crc32c(&bloom_bytes).to_le_bytes())?;

        let mut meta = Vec::new();
        put_bytes(&mut meta, self.id.as_bytes());
        put_bytes(&mut meta, self.tenant.as_bytes());
        put_uvarint(&mut meta, u64::from(self.level));
        put_uvarint(&mut meta, self.sources.len() as u64);
        for source in &self.sources {
            put_bytes(&mut meta, source.as_bytes());
        }
        put_uvarint(&mut meta, seq_end);
        put_uvarint(&mut meta, self.trace_hashes.len() as u64);
        put_uvarint(&mut meta, bloom_offset);
        put_uvarint(&mut meta, u64::from(bloom.word_count()));
        meta.push(bloom.hashes());
        bounds.encode(&mut meta);
        index.encode(&mut meta);
        put_uvarint(&mut meta, self.pages.len() as u64);
        for page in &self.pages {
            put_uvarint(&mut meta, page.offset);
            put_uvarint(&mut meta, u64::from(page.data_len));
            put_uvarint(&mut meta, u64::from(page.raw_len));
            put_uvarint(&mut meta, u64::from(page.traces));
            meta.extend_from_slice(&page.first_trace_id);
            meta.extend_from_slice(&page.last_trace_id);
            page.bounds.encode(&mut meta);
            put_uvarint(&mut meta, u64::from(page.bloom_words));
            meta.push(page.bloom_hashes);
        }
        let meta_offset = self.offset;
        let meta_crc = crc32c::crc32c(&meta);
        self.write(&meta)?;
        let mut footer = Vec::with_capacity(FOOTER_LEN);
        footer.extend_from_slice(&meta_offset.to_le_bytes());
        footer.extend_from_slice(&(meta.len() as u64).to_le_bytes());
        footer.extend_from_slice(&meta_crc.to_le_bytes());
        let footer_crc = crc32c::crc32c(&footer);
        footer.extend_from_slice(&footer_crc.to_le_bytes());
        footer.extend_from_slice(&FOOTER_MAGIC);
        self.write(&footer)?;

        let temp_path = self.temp_path.clone();
        let file = self.out.into_inner().map_err(|error| TracesError::Io {
            context: format!("flushing {}", temp_path.display()),
            source: error.into_error(),
        })?;
        file.sync_all().map_err(io_error(format!("syncing {}", temp_path.display())))?;
        drop(file);
        fs::rename(&temp_path, &self.final_path).map_err(io_error(format!("renaming {}", temp_path.display())))?;
        if let Some(parent) = self.final_path.parent() {
            sync_dir(parent)?;
        }
        BlockFile::open(&self.final_path).map(Some)
    }

    /// Abandons the file (after an error): removes the temporary file.
    pub fn abandon(self) {
        let path = self.temp_path.clone();
        drop(self.out);
        let _ = fs::remove_file(path);
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), TracesError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error(format!("syncing directory {}", dir.display())))
}
