//! Immutable log files: the chunks one flush (or compaction, or retention rewrite) wrote, with
//! each block's compressed entries and each chunk's bloom filter, and a stream table (tenant,
//! labels, chunks, block skip data) at the end, found through a fixed footer. Written to a temporary
//! name, synced, renamed into place, the directory synced; never modified afterwards.
//!
//! ```text
//! header   "TLOG", version u8 = 2, 3 reserved bytes
//! chunks   per chunk: per block, data, crc32c(data) u32; then, if it has one, the chunk's
//!          bloom, crc32c(bloom) u32
//! table    streams with their chunks and block metas; file ID, level, sources
//! footer   table offset u64, table length u64, crc32c(table) u32, crc32c(footer) u32, "TLGF"
//! ```
//!
//! Every integer is little-endian; layout in `docs/format/log-chunks.md` and `log-index.md`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::LogsError;
use super::block::{BlockMeta, MAX_BLOCK_RAW_BYTES};
use super::bloom::Bloom;
use super::records::{get_labels, put_labels};
use crate::codec::{get_str, get_u8, get_uvarint, get_varint, put_bytes, put_uvarint, put_varint};
use crate::labels::Labels;

const HEADER_MAGIC: [u8; 4] = *b"TLOG";
const FOOTER_MAGIC: [u8; 4] = *b"TLGF";
pub(crate) const FORMAT_VERSION: u8 = 2;
const HEADER_LEN: usize = 8;
const FOOTER_LEN: usize = 28;

/// The file name suffix of a log file, of one being written, and of one moved aside.
pub(crate) const FILE_SUFFIX: &str = ".tlog";
pub(crate) const TEMP_SUFFIX: &str = ".tlog.tmp";
pub(crate) const CORRUPT_SUFFIX: &str = ".tlog.corrupt";

/// A block as the stream table describes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileBlock {
    pub offset: u64,
    pub data_len: u32,
    pub codec: u8,
    pub meta: BlockMeta,
}

impl FileBlock {
    /// Bytes the block takes in the file: data and its checksum.
    pub fn stored_bytes(&self) -> u64 {
        u64::from(self.data_len) + 4
    }
}

/// Where a chunk's bloom filter is and how it was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkBloom {
    pub offset: u64,
    pub universe_log2: u8,
    pub bits: u64,
}

impl ChunkBloom {
    fn range(&self) -> Range<u64> {
        self.offset..self.offset + Bloom::byte_len(self.bits)
    }
}

/// A chunk: a run of blocks of one stream.
#[derive(Debug, Clone)]
pub(crate) struct FileChunk {
    /// Indices into the file's block list.
    pub blocks: Range<u32>,
    pub min_t_ns: i64,
    pub max_t_ns: i64,
    pub entries: u64,
    pub line_bytes: u64,
    /// The n-gram filter of the chunk's lines; `None` when written without one.
    pub bloom: Option<ChunkBloom>,
}

/// A stream's part of a file.
#[derive(Debug, Clone)]
pub(crate) struct FileStream {
    pub tenant: String,
    pub labels: Labels,
    /// Every entry of the stream with a sequence number below this was flushed by the time
    /// this file was written.
    pub seq_end: u64,
    pub chunks: Vec<FileChunk>,
}

/// An open log file.
#[derive(Debug)]
pub(crate) struct LogFile {
    pub id: String,
    pub path: PathBuf,
    /// 1 for a flush; one more than the highest input for a compaction or rewrite.
    pub level: u32,
    /// Files this one replaced (empty for a flush).
    pub sources: Vec<String>,
    pub streams: Vec<FileStream>,
    pub blocks: Vec<FileBlock>,
    pub size_bytes: u64,
    map: memmap2::Mmap,
}

/// A chunk of a file, as the catalog refers to it.
#[derive(Debug, Clone)]
pub(crate) struct FileChunkRef {
    pub file: Arc<LogFile>,
    pub stream: u32,
    pub chunk: u32,
}

impl FileChunkRef {
    pub fn meta(&self) -> &FileChunk {
        &self.file.streams[self.stream as usize].chunks[self.chunk as usize]
    }
}

impl LogFile {
    fn corrupt(&self, problem: String) -> LogsError {
        LogsError::Corrupt { file: self.path.display().to_string(), problem }
    }

    /// Opens a file, checking its header, footer and stream table (block checksums are
    /// checked when blocks are read).
    pub fn open(path: &Path) -> Result<LogFile, LogsError> {
        let corrupt = |problem: String| LogsError::Corrupt { file: path.display().to_string(), problem };
        let file = File::open(path).map_err(io_error(format!("opening {}", path.display())))?;
        // SAFETY: log files are immutable once renamed into place: nothing writes to them
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
        let stored_footer_crc = u32::from_le_bytes([footer[20], footer[21], footer[22], footer[23]]);
        if crc32c::crc32c(&footer[0..20]) != stored_footer_crc {
            return Err(corrupt("footer checksum mismatch".into()));
        }
        let mut fields = &footer[0..20];
        let (Some(table_offset), Some(table_len), Some(table_crc)) = (
            crate::codec::get_u64(&mut fields),
            crate::codec::get_u64(&mut fields),
            crate::codec::get_u32(&mut fields),
        ) else {
            return Err(corrupt("footer is malformed".into()));
        };
        let table_end = table_offset.checked_add(table_len).filter(|end| *end == (map.len() - FOOTER_LEN) as u64);
        if table_end.is_none() || table_offset < HEADER_LEN as u64 {
            return Err(corrupt("stream table is out of bounds".into()));
        }
        let table = &map[table_offset as usize..(table_offset + table_len) as usize];
        if crc32c::crc32c(table) != table_crc {
            return Err(corrupt("stream table checksum mismatch".into()));
        }
        let decoded = decode_table(table, table_offset).map_err(&corrupt)?;
        let id_from_name = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(FILE_SUFFIX))
            .unwrap_or_default();
        if decoded.id != id_from_name {
            return Err(corrupt(format!("stream table names file {}", decoded.id)));
        }
        let size_bytes = map.len() as u64;
        Ok(LogFile {
            id: decoded.id,
            path: path.to_path_buf(),
            level: decoded.level,
            sources: decoded.sources,
            streams: decoded.streams,
            blocks: decoded.blocks,
            size_bytes,
            map,
        })
    }

    /// The compressed bytes of block `index`, checksum verified.
    pub fn block_data(&self, index: u32) -> Result<(&FileBlock, &[u8]), LogsError> {
        let block = self.blocks.get(index as usize).ok_or_else(|| self.corrupt(format!("no block {index}")))?;
        let start = block.offset as usize;
        let end = start + block.data_len as usize;
        let data = self.map.get(start..end + 4).ok_or_else(|| self.corrupt(format!("block {index} out of bounds")))?;
        let stored = u32::from_le_bytes([
            data[end - start],
            data[end - start + 1],
            data[end - start + 2],
            data[end - start + 3],
        ]);
        let data = &data[..end - start];
        if crc32c::crc32c(data) != stored {
            return Err(self.corrupt(format!("block {index} checksum mismatch")));
        }
        Ok((block, data))
    }

    /// The stored bytes of a chunk's bloom filter, checksum verified; `None` if it has none.
    pub fn bloom_bytes(&self, chunk: &FileChunk) -> Result<Option<(ChunkBloom, &[u8])>, LogsError> {
        let Some(bloom) = chunk.bloom else { return Ok(None) };
        let range = bloom.range();
        let at = format!("bloom at {}", range.start);
        let bytes = self
            .map
            .get(range.start as usize..range.end as usize + 4)
            .ok_or_else(|| self.corrupt(format!("{at} out of bounds")))?;
        let (bits, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(bits) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
            return Err(self.corrupt(format!("{at} checksum mismatch")));
        }
        Ok(Some((bloom, bits)))
    }

    /// The bloom filter of a chunk, checksum verified; `None` if it has none.
    pub fn bloom(&self, chunk: &FileChunk) -> Result<Option<Bloom>, LogsError> {
        let Some((bloom, bytes)) = self.bloom_bytes(chunk)? else { return Ok(None) };
        Bloom::from_parts(bloom.universe_log2, bloom.bits, bytes)
            .map(Some)
            .ok_or_else(|| self.corrupt(format!("bloom at {} is malformed", bloom.offset)))
    }

    /// Checks every block's and bloom's checksum.
    pub fn verify(&self) -> Result<(), LogsError> {
        for index in 0..self.blocks.len() as u32 {
            self.block_data(index)?;
        }
        for stream in &self.streams {
            for chunk in &stream.chunks {
                self.bloom(chunk)?;
            }
        }
        Ok(())
    }
}

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> LogsError {
    move |source| LogsError::Io { context, source }
}

struct DecodedTable {
    id: String,
    level: u32,
    sources: Vec<String>,
    streams: Vec<FileStream>,
    blocks: Vec<FileBlock>,
}

fn decode_table(mut input: &[u8], table_offset: u64) -> Result<DecodedTable, String> {
    let malformed = |what: &str| format!("stream table is malformed ({what})");
    let id = get_str(&mut input).ok_or_else(|| malformed("file id"))?.to_string();
    let level = get_uvarint(&mut input).ok_or_else(|| malformed("level"))? as u32;
    let source_count = get_uvarint(&mut input).ok_or_else(|| malformed("sources"))?;
    let mut sources = Vec::with_capacity(source_count.min(1024) as usize);
    for _ in 0..source_count {
        sources.push(get_str(&mut input).ok_or_else(|| malformed("source"))?.to_string());
    }
    let stream_count = get_uvarint(&mut input).ok_or_else(|| malformed("stream count"))?;
    let mut streams = Vec::with_capacity(stream_count.min(1 << 16) as usize);
    let mut blocks: Vec<FileBlock> = Vec::new();
    for _ in 0..stream_count {
        let tenant = get_str(&mut input).ok_or_else(|| malformed("tenant"))?.to_string();
        let labels = get_labels(&mut input).map_err(|_| malformed("labels"))?;
        let seq_end = get_uvarint(&mut input).ok_or_else(|| malformed("sequence"))?;
        let chunk_count = get_uvarint(&mut input).ok_or_else(|| malformed("chunk count"))?;
        let mut chunks = Vec::with_capacity(chunk_count.min(1 << 12) as usize);
        for _ in 0..chunk_count {
            let block_count = get_uvarint(&mut input).ok_or_else(|| malformed("block count"))?;
            if block_count == 0 {
                return Err(malformed("empty chunk"));
            }
            let bloom = decode_chunk_bloom(&mut input).ok_or_else(|| malformed("chunk bloom"))?;
            if let Some(bloom) = bloom
                && (bloom.offset < HEADER_LEN as u64 || bloom.range().end.saturating_add(4) > table_offset)
            {
                return Err(format!("bloom at {} runs outside the chunks region", bloom.offset));
            }
            let first = blocks.len() as u32;
            let mut chunk = FileChunk {
                blocks: first..first,
                min_t_ns: i64::MAX,
                max_t_ns: i64::MIN,
                entries: 0,
                line_bytes: 0,
                bloom,
            };
            for _ in 0..block_count {
                let block = decode_block(&mut input).ok_or_else(|| malformed("block"))?;
                let end = block.offset + block.stored_bytes();
                if block.offset < HEADER_LEN as u64 || end > table_offset {
                    return Err(format!("block at {} runs outside the chunks region", block.offset));
                }
                if u64::from(block.meta.raw_bytes) > MAX_BLOCK_RAW_BYTES
                    || block.meta.min_t_ns > block.meta.max_t_ns
                    || block.meta.entries == 0
                {
                    return Err(malformed("block meta"));
                }
                chunk.min_t_ns = chunk.min_t_ns.min(block.meta.min_t_ns);
                chunk.max_t_ns = chunk.max_t_ns.max(block.meta.max_t_ns);
                chunk.entries += u64::from(block.meta.entries);
                chunk.line_bytes += block.meta.line_bytes;
                blocks.push(block);
            }
            chunk.blocks = first..blocks.len() as u32;
            chunks.push(chunk);
        }
        streams.push(FileStream { tenant, labels, seq_end, chunks });
    }
    if !input.is_empty() {
        return Err(malformed("trailing bytes"));
    }
    Ok(DecodedTable { id, level, sources, streams, blocks })
}

fn decode_block(input: &mut &[u8]) -> Option<FileBlock> {
    let offset = get_uvarint(input)?;
    let data_len = u32::try_from(get_uvarint(input)?).ok()?;
    let codec = get_u8(input)?;
    let raw_bytes = u32::try_from(get_uvarint(input)?).ok()?;
    let entries = u32::try_from(get_uvarint(input)?).ok()?;
    let line_bytes = get_uvarint(input)?;
    let min_t_ns = get_varint(input)?;
    let span = get_uvarint(input)?;
    let max_t_ns = min_t_ns.checked_add_unsigned(span)?;
    Some(FileBlock { offset, data_len, codec, meta: BlockMeta { min_t_ns, max_t_ns, entries, raw_bytes, line_bytes } })
}

/// A chunk's bloom fields: bits (0 for none), then universe and offset.
fn decode_chunk_bloom(input: &mut &[u8]) -> Option<Option<ChunkBloom>> {
    let bits = get_uvarint(input)?;
    if bits == 0 {
        return Some(None);
    }
    let universe_log2 = get_u8(input)?;
    let offset = get_uvarint(input)?;
    // Checked again (with the bytes) when the filter is read.
    if !bits.is_multiple_of(64) || universe_log2 > 63 || bits > 1u64 << universe_log2 {
        return None;
    }
    Some(Some(ChunkBloom { offset, universe_log2, bits }))
}

fn encode_chunk_bloom(out: &mut Vec<u8>, bloom: Option<ChunkBloom>) {
    match bloom {
        None => put_uvarint(out, 0),
        Some(bloom) => {
            put_uvarint(out, bloom.bits);
            out.push(bloom.universe_log2);
            put_uvarint(out, bloom.offset);
        }
    }
}

fn encode_block(out: &mut Vec<u8>, block: &FileBlock) {
    put_uvarint(out, block.offset);
    put_uvarint(out, u64::from(block.data_len));
    out.push(block.codec);
    put_uvarint(out, u64::from(block.meta.raw_bytes));
    put_uvarint(out, u64::from(block.meta.entries));
    put_uvarint(out, block.meta.line_bytes);
    put_varint(out, block.meta.min_t_ns);
    put_uvarint(out, block.meta.max_t_ns.abs_diff(block.meta.min_t_ns));
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

/// A block to write: compressed data and its skip data.
pub(crate) struct BlockToWrite<'a> {
    pub meta: BlockMeta,
    pub codec: u8,
    pub data: &'a [u8],
}

/// A chunk's bloom filter to write: built, or copied from another file.
pub(crate) enum BloomToWrite<'a> {
    Built(&'a Bloom),
    Stored { universe_log2: u8, bits: u64, bytes: &'a [u8] },
}

/// Writes a file: chunks are added stream by stream, in any order; the stream table is written
/// by [`FileWriter::finish`].
pub(crate) struct FileWriter {
    id: String,
    final_path: PathBuf,
    temp_path: PathBuf,
    out: BufWriter<File>,
    offset: u64,
    level: u32,
    sources: Vec<String>,
    /// (tenant, labels) -> index into `streams`.
    stream_index: std::collections::HashMap<(String, Labels), usize>,
    streams: Vec<FileStream>,
    blocks: Vec<FileBlock>,
}

impl FileWriter {
    pub fn create(dir: &Path, level: u32, sources: Vec<String>) -> Result<FileWriter, LogsError> {
        let id = new_file_id();
        let final_path = dir.join(format!("{id}{FILE_SUFFIX}"));
        let temp_path = dir.join(format!("{id}{TEMP_SUFFIX}"));
        let file = File::create(&temp_path).map_err(io_error(format!("creating {}", temp_path.display())))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut header = [0u8; HEADER_LEN];
        header[0..4].copy_from_slice(&HEADER_MAGIC);
        header[4] = FORMAT_VERSION;
        out.write_all(&header).map_err(io_error(format!("writing {}", temp_path.display())))?;
        Ok(FileWriter {
            id,
            final_path,
            temp_path,
            out,
            offset: HEADER_LEN as u64,
            level,
            sources,
            stream_index: std::collections::HashMap::new(),
            streams: Vec::new(),
            blocks: Vec::new(),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), LogsError> {
        self.out.write_all(bytes).map_err(io_error(format!("writing {}", self.temp_path.display())))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Adds a chunk of a stream. `seq_end` is the stream's flushed sequence number after it.
    pub fn add_chunk(
        &mut self,
        tenant: &str,
        labels: &Labels,
        seq_end: u64,
        blocks: &[BlockToWrite<'_>],
        bloom: Option<BloomToWrite<'_>>,
    ) -> Result<(), LogsError> {
        if blocks.is_empty() {
            return Ok(());
        }
        let first = self.blocks.len() as u32;
        let mut chunk = FileChunk {
            blocks: first..first,
            min_t_ns: i64::MAX,
            max_t_ns: i64::MIN,
            entries: 0,
            line_bytes: 0,
            bloom: None,
        };
        for block in blocks {
            let offset = self.offset;
            self.write(block.data)?;
            self.write(&crc32c::crc32c(block.data).to_le_bytes())?;
            self.blocks.push(FileBlock {
                offset,
                data_len: block.data.len() as u32,
                codec: block.codec,
                meta: block.meta,
            });
            chunk.min_t_ns = chunk.min_t_ns.min(block.meta.min_t_ns);
            chunk.max_t_ns = chunk.max_t_ns.max(block.meta.max_t_ns);
            chunk.entries += u64::from(block.meta.entries);
            chunk.line_bytes += block.meta.line_bytes;
        }
        chunk.blocks = first..self.blocks.len() as u32;
        if let Some(bloom) = bloom {
            let offset = self.offset;
            let built;
            let (universe_log2, bits, bytes) = match bloom {
                BloomToWrite::Built(bloom) => {
                    built = bloom.to_bytes();
                    (bloom.universe_log2(), bloom.bits(), built.as_slice())
                }
                BloomToWrite::Stored { universe_log2, bits, bytes } => (universe_log2, bits, bytes),
            };
            self.write(bytes)?;
            self.write(&crc32c::crc32c(bytes).to_le_bytes())?;
            chunk.bloom = Some(ChunkBloom { offset, universe_log2, bits });
        }
        let key = (tenant.to_string(), labels.clone());
        let index = match self.stream_index.get(&key) {
            Some(index) => *index,
            None => {
                self.streams.push(FileStream {
                    tenant: tenant.to_string(),
                    labels: labels.clone(),
                    seq_end: 0,
                    chunks: Vec::new(),
                });
                self.stream_index.insert(key, self.streams.len() - 1);
                self.streams.len() - 1
            }
        };
        let stream = &mut self.streams[index];
        stream.seq_end = stream.seq_end.max(seq_end);
        stream.chunks.push(chunk);
        Ok(())
    }

    /// Writes the stream table and footer, syncs, renames into place and syncs the directory.
    /// Returns `None` (and removes the temporary file) when no chunk was added.
    pub fn finish(mut self) -> Result<Option<LogFile>, LogsError> {
        if self.streams.is_empty() {
            drop(self.out);
            fs::remove_file(&self.temp_path).map_err(io_error(format!("removing {}", self.temp_path.display())))?;
            return Ok(None);
        }
        let mut table = Vec::new();
        put_bytes(&mut table, self.id.as_bytes());
        put_uvarint(&mut table, u64::from(self.level));
        put_uvarint(&mut table, self.sources.len() as u64);
        for source in &self.sources {
            put_bytes(&mut table, source.as_bytes());
        }
        put_uvarint(&mut table, self.streams.len() as u64);
        for stream in &self.streams {
            put_bytes(&mut table, stream.tenant.as_bytes());
            put_labels(&mut table, &stream.labels);
            put_uvarint(&mut table, stream.seq_end);
            put_uvarint(&mut table, stream.chunks.len() as u64);
            for chunk in &stream.chunks {
                put_uvarint(&mut table, u64::from(chunk.blocks.end - chunk.blocks.start));
                encode_chunk_bloom(&mut table, chunk.bloom);
                for block in &self.blocks[chunk.blocks.start as usize..chunk.blocks.end as usize] {
                    encode_block(&mut table, block);
                }
            }
        }
        let table_offset = self.offset;
        let table_crc = crc32c::crc32c(&table);
        self.write(&table)?;
        let mut footer = Vec::with_capacity(FOOTER_LEN);
        footer.extend_from_slice(&table_offset.to_le_bytes());
        footer.extend_from_slice(&(table.len() as u64).to_le_bytes());
        footer.extend_from_slice(&table_crc.to_le_bytes());
        let footer_crc = crc32c::crc32c(&footer);
        footer.extend_from_slice(&footer_crc.to_le_bytes());
        footer.extend_from_slice(&FOOTER_MAGIC);
        self.write(&footer)?;
        let temp_path = self.temp_path.clone();
        let file = self.out.into_inner().map_err(|error| LogsError::Io {
            context: format!("flushing {}", temp_path.display()),
            source: error.into_error(),
        })?;
        file.sync_all().map_err(io_error(format!("syncing {}", temp_path.display())))?;
        drop(file);
        fs::rename(&temp_path, &self.final_path).map_err(io_error(format!("renaming {}", temp_path.display())))?;
        if let Some(parent) = self.final_path.parent() {
            sync_dir(parent)?;
        }
        LogFile::open(&self.final_path).map(Some)
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogsError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error(format!("syncing directory {}", dir.display())))
}
