//! Immutable blocks: a directory holding the samples of a time range, written once (to a
//! temporary directory, synced, renamed into place) and then only read or deleted.
//!
//! ```text
//! blocks/<id>/meta     block ID, time range, counts, compaction level and sources, CRC32C
//! blocks/<id>/chunks   every chunk, each with its own CRC32C
//! blocks/<id>/index    symbols, series, postings, table of contents (see index.rs)
//! ```
//!
//! Layouts in `docs/format/metrics-block.md` and `metrics-chunks.md`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::chunk::{self, MAX_SAMPLES_PER_CHUNK};
use super::index::{ChunkMeta, IndexReader, encode_index};
use super::postings;
use super::series::{SampleSource, ensure_sorted};
use super::{ChunkBytes, MetricsError, Sample, Series, TimeRange};
use crate::codec::{get_str, get_uvarint, get_varint, put_bytes, put_uvarint, put_varint};
use crate::labels::{Labels, Matcher};

const META_MAGIC: [u8; 4] = *b"TMET";
const CHUNKS_MAGIC: [u8; 4] = *b"TCHK";
const FORMAT_VERSION: u8 = 1;
const CHUNKS_HEADER_LEN: usize = 8;

/// What a block's meta file records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlockMeta {
    pub id: String,
    /// Smallest sample time in the block.
    pub min_t: i64,
    /// Largest sample time in the block.
    pub max_t: i64,
    pub series: u64,
    pub chunks: u64,
    pub samples: u64,
    /// 1 for a block cut from the head; one more than the highest of its sources when compacted.
    pub level: u32,
    /// IDs of the blocks this one replaced (itself, for a level 1 block).
    pub sources: Vec<String>,
}

fn encode_meta(meta: &BlockMeta) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&META_MAGIC);
    out.push(FORMAT_VERSION);
    put_bytes(&mut out, meta.id.as_bytes());
    put_varint(&mut out, meta.min_t);
    put_varint(&mut out, meta.max_t);
    put_uvarint(&mut out, meta.series);
    put_uvarint(&mut out, meta.chunks);
    put_uvarint(&mut out, meta.samples);
    put_uvarint(&mut out, u64::from(meta.level));
    put_uvarint(&mut out, meta.sources.len() as u64);
    for source in &meta.sources {
        put_bytes(&mut out, source.as_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn decode_meta(bytes: &[u8]) -> Result<BlockMeta, String> {
    if bytes.len() < 9 {
        return Err("meta file too short".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes(crc.try_into().map_err(|_| "meta crc")?);
    if crc32c::crc32c(body) != stored {
        return Err("meta checksum mismatch".into());
    }
    if body[0..4] != META_MAGIC {
        return Err("meta has a bad magic number".into());
    }
    if body[4] != FORMAT_VERSION {
        return Err(format!("meta format version {} is not supported", body[4]));
    }
    let mut input = &body[5..];
    let malformed = || "meta is malformed".to_string();
    let id = get_str(&mut input).ok_or_else(malformed)?.to_string();
    let min_t = get_varint(&mut input).ok_or_else(malformed)?;
    let max_t = get_varint(&mut input).ok_or_else(malformed)?;
    let series = get_uvarint(&mut input).ok_or_else(malformed)?;
    let chunks = get_uvarint(&mut input).ok_or_else(malformed)?;
    let samples = get_uvarint(&mut input).ok_or_else(malformed)?;
    let level = get_uvarint(&mut input).ok_or_else(malformed)? as u32;
    let source_count = get_uvarint(&mut input).ok_or_else(malformed)?;
    let mut sources = Vec::with_capacity(source_count.min(1024) as usize);
    for _ in 0..source_count {
        sources.push(get_str(&mut input).ok_or_else(malformed)?.to_string());
    }
    Ok(BlockMeta { id, min_t, max_t, series, chunks, samples, level, sources })
}

/// A new block ID: sortable by creation time, unique within the process and across restarts.
pub(crate) fn new_block_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let millis =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let sequence = COUNTER.fetch_add(1, Ordering::Relaxed);
    let salt = (u64::from(std::process::id()) << 20) ^ sequence.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!("{millis:013x}{salt:016x}")
}

/// Writes a block: series must be added in label order.
pub(crate) struct BlockWriter {
    final_dir: PathBuf,
    temp_dir: PathBuf,
    chunks: BufWriter<File>,
    chunks_offset: u64,
    series: Vec<(Labels, Vec<ChunkMeta>)>,
    meta: BlockMeta,
    frame: Vec<u8>,
}

impl BlockWriter {
    pub fn create(blocks_dir: &Path, level: u32, sources: Vec<String>) -> Result<BlockWriter, MetricsError> {
        let id = new_block_id();
        let final_dir = blocks_dir.join(&id);
        let temp_dir = blocks_dir.join(format!("{id}.tmp"));
        fs::create_dir_all(&temp_dir).map_err(MetricsError::io(format!("creating {}", temp_dir.display())))?;
        let path = temp_dir.join("chunks");
        let mut chunks = BufWriter::with_capacity(
            1 << 20,
            File::create(&path).map_err(MetricsError::io(format!("creating {}", path.display())))?,
        );
        let mut header = [0u8; CHUNKS_HEADER_LEN];
        header[0..4].copy_from_slice(&CHUNKS_MAGIC);
        header[4] = FORMAT_VERSION;
        chunks.write_all(&header).map_err(MetricsError::io(format!("writing {}", path.display())))?;
        let sources = if sources.is_empty() { vec![id.clone()] } else { sources };
        Ok(BlockWriter {
            final_dir,
            temp_dir,
            chunks,
            chunks_offset: CHUNKS_HEADER_LEN as u64,
            series: Vec::new(),
            meta: BlockMeta { id, min_t: i64::MAX, max_t: i64::MIN, series: 0, chunks: 0, samples: 0, level, sources },
            frame: Vec::new(),
        })
    }

    /// Adds a series with its samples (sorted, one per timestamp), re-encoded into chunks of the
    /// best encoding. Series with no samples are skipped.
    pub fn add_series_samples(&mut self, labels: &Labels, samples: &[Sample]) -> Result<(), MetricsError> {
        if samples.is_empty() {
            return Ok(());
        }
        let mut metas = Vec::new();
        for run in samples.chunks(MAX_SAMPLES_PER_CHUNK) {
            let encoded = chunk::encode_best(run);
            let offset = self.write_chunk(&encoded)?;
            metas.push(ChunkMeta { min_t: run[0].t_ms, max_t: run[run.len() - 1].t_ms, offset });
            self.meta.samples += run.len() as u64;
        }
        self.add_series_entry(labels, metas);
        Ok(())
    }

    /// Adds a series whose chunks are copied as they are (compaction of non-overlapping data).
    pub fn add_series_chunks(
        &mut self,
        labels: &Labels,
        chunks: &[(ChunkBytes, i64, i64)],
    ) -> Result<(), MetricsError> {
        if chunks.is_empty() {
            return Ok(());
        }
        let mut metas = Vec::with_capacity(chunks.len());
        for (bytes, min_t, max_t) in chunks {
            let offset = self.write_chunk(bytes.as_slice())?;
            metas.push(ChunkMeta { min_t: *min_t, max_t: *max_t, offset });
            self.meta.samples += chunk_sample_count(bytes.as_slice());
        }
        self.add_series_entry(labels, metas);
        Ok(())
    }

    fn add_series_entry(&mut self, labels: &Labels, metas: Vec<ChunkMeta>) {
        debug_assert!(self.series.last().is_none_or(|(last, _)| last < labels), "series out of order");
        self.meta.min_t = self.meta.min_t.min(metas[0].min_t);
        self.meta.max_t = self.meta.max_t.max(metas[metas.len() - 1].max_t);
        self.meta.chunks += metas.len() as u64;
        self.meta.series += 1;
        self.series.push((labels.clone(), metas));
    }

    fn write_chunk(&mut self, bytes: &[u8]) -> Result<u64, MetricsError> {
        let offset = self.chunks_offset;
        self.frame.clear();
        put_uvarint(&mut self.frame, bytes.len() as u64);
        self.frame.extend_from_slice(bytes);
        self.frame.extend_from_slice(&crc32c::crc32c(bytes).to_le_bytes());
        self.chunks.write_all(&self.frame).map_err(MetricsError::io("writing block chunks"))?;
        self.chunks_offset += self.frame.len() as u64;
        Ok(offset)
    }

    /// Writes the index and meta, syncs everything and renames the block into place. Returns
    /// `None` (and removes the temporary directory) if no series was added.
    pub fn finish(self) -> Result<Option<BlockMeta>, MetricsError> {
        let BlockWriter { final_dir, temp_dir, chunks, series, meta, .. } = self;
        let io = |what: &str| MetricsError::io(format!("{what} {}", temp_dir.display()));
        let chunks = chunks.into_inner().map_err(|error| MetricsError::Io {
            context: "flushing block chunks".into(),
            source: error.into_error(),
        })?;
        if series.is_empty() {
            drop(chunks);
            fs::remove_dir_all(&temp_dir).map_err(io("removing"))?;
            return Ok(None);
        }
        chunks.sync_all().map_err(io("syncing chunks of"))?;
        write_synced(&temp_dir.join("index"), &encode_index(&series))?;
        write_synced(&temp_dir.join("meta"), &encode_meta(&meta))?;
        sync_parent(&temp_dir)?;
        fs::rename(&temp_dir, &final_dir).map_err(io("renaming"))?;
        if let Some(parent) = final_dir.parent() {
            sync_parent(parent)?;
        }
        Ok(Some(meta))
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), MetricsError> {
    let mut file = File::create(path).map_err(MetricsError::io(format!("creating {}", path.display())))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(MetricsError::io(format!("writing {}", path.display())))
}

fn sync_parent(dir: &Path) -> Result<(), MetricsError> {
    File::open(dir).and_then(|handle| handle.sync_all()).map_err(MetricsError::io(format!("syncing {}", dir.display())))
}

/// Samples in a chunk, read from its header without decoding it.
fn chunk_sample_count(bytes: &[u8]) -> u64 {
    match bytes.first() {
        Some(&chunk::ENCODING_XOR) if bytes.len() >= 3 => u64::from(u16::from_le_bytes([bytes[1], bytes[2]])),
        Some(&chunk::ENCODING_PACKED) => {
            let mut input = &bytes[1..];
            // The packed count is a bit-aligned varint at the start, which is byte-aligned there.
            get_uvarint(&mut input).unwrap_or(0)
        }
        _ => 0,
    }
}

/// A series with its chunks (bytes, min time, max time), as compaction reads them.
pub(crate) type SeriesChunks = (Labels, Vec<(ChunkBytes, i64, i64)>);

/// An open block.
pub(crate) struct Block {
    pub dir: PathBuf,
    pub meta: BlockMeta,
    index: IndexReader,
    chunks: Arc<memmap2::Mmap>,
    /// Bytes on disk, for size-based retention.
    pub size_bytes: u64,
}

impl Block {
    /// Opens a block directory, checking the meta and index checksums.
    pub fn open(dir: &Path) -> Result<Block, MetricsError> {
        let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let corrupt = |problem: String| MetricsError::CorruptBlock { block: name.clone(), problem };
        let meta_bytes =
            fs::read(dir.join("meta")).map_err(MetricsError::io(format!("reading {}/meta", dir.display())))?;
        let meta = decode_meta(&meta_bytes).map_err(&corrupt)?;
        if meta.id != name {
            return Err(corrupt(format!("meta names block {}", meta.id)));
        }
        let index = IndexReader::open(map_file(&dir.join("index"))?).map_err(&corrupt)?;
        let chunks = map_file(&dir.join("chunks"))?;
        if chunks.len() < CHUNKS_HEADER_LEN || chunks[0..4] != CHUNKS_MAGIC {
            return Err(corrupt("chunks file has a bad header".into()));
        }
        if chunks[4] != FORMAT_VERSION {
            return Err(corrupt(format!("chunks format version {} is not supported", chunks[4])));
        }
        if index.series_count() as u64 != meta.series {
            return Err(corrupt(format!("index holds {} series, meta says {}", index.series_count(), meta.series)));
        }
        let size_bytes = [dir.join("meta"), dir.join("index"), dir.join("chunks")]
            .iter()
            .filter_map(|path| fs::metadata(path).ok())
            .map(|metadata| metadata.len())
            .sum();
        Ok(Block { dir: dir.to_path_buf(), meta, index, chunks, size_bytes })
    }

    fn corrupt(&self, problem: String) -> MetricsError {
        MetricsError::CorruptBlock { block: self.meta.id.clone(), problem }
    }

    /// The chunk at `offset`, its checksum verified.
    fn chunk(&self, offset: u64) -> Result<ChunkBytes, MetricsError> {
        let start = offset as usize;
        let mut input =
            self.chunks.get(start..).ok_or_else(|| self.corrupt(format!("chunk offset {offset} out of bounds")))?;
        let before = input.len();
        let len = get_uvarint(&mut input).ok_or_else(|| self.corrupt(format!("chunk at {offset} has a bad length")))?
            as usize;
        let data_start = start + (before - input.len());
        let data_end = data_start.checked_add(len).filter(|end| end + 4 <= self.chunks.len());
        let Some(data_end) = data_end else {
            return Err(self.corrupt(format!("chunk at {offset} runs past the end of the file")));
        };
        let stored =
            u32::from_le_bytes(self.chunks[data_end..data_end + 4].try_into().map_err(|_| self.corrupt("crc".into()))?);
        if crc32c::crc32c(&self.chunks[data_start..data_end]) != stored {
            return Err(self.corrupt(format!("chunk at {offset} checksum mismatch")));
        }
        Ok(ChunkBytes::Mapped { map: self.chunks.clone(), start: data_start, end: data_end })
    }

    /// The IDs of the series matching `matchers`, in label order (as the writer added them).
    pub fn series_ids(&self, matchers: &[Matcher]) -> Vec<u64> {
        postings::resolve(&self.index, matchers)
    }

    /// The labels of series `id`.
    pub fn labels_of(&self, id: u64) -> Result<Labels, MetricsError> {
        self.index.series(id).map(|(labels, _)| labels).map_err(|problem| self.corrupt(problem))
    }

    /// The series of `ids` (from [`Block::series_ids`]) with chunks overlapping `range`, in label
    /// order. Each series has room for `more_sources` sources besides its own (the head's,
    /// joined later).
    pub fn select(&self, ids: &[u64], range: TimeRange, more_sources: usize) -> Result<Vec<Series>, MetricsError> {
        if !range.overlaps(self.meta.min_t, self.meta.max_t) {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(ids.len());
        let mut chunks = Vec::new();
        // Series IDs follow label order as the writer added them; a damaged index may not,
        // which the labels' symbol IDs tell (symbols are sorted).
        let (mut symbol_ids, mut previous_ids, mut in_order) = (Vec::new(), Vec::new(), true);
        for &id in ids {
            let labels = self
                .index
                .series_with_symbols_into(id, &mut chunks, &mut symbol_ids)
                .map_err(|problem| self.corrupt(problem))?;
            in_order &= previous_ids < symbol_ids;
            std::mem::swap(&mut previous_ids, &mut symbol_ids);
            let mut sources = Vec::with_capacity(chunks.len() + more_sources);
            for meta in chunks.iter().filter(|meta| range.overlaps(meta.min_t, meta.max_t)) {
                sources.push(SampleSource::Chunk {
                    bytes: self.chunk(meta.offset)?,
                    min_t: meta.min_t,
                    max_t: meta.max_t,
                });
            }
            if !sources.is_empty() {
                out.push(Series::new(labels, sources, range));
            }
        }
        if !in_order {
            ensure_sorted(&mut out);
        }
        Ok(out)
    }

    /// Every series with all its chunks, in label order, for compaction.
    pub fn all_series(&self) -> Result<Vec<SeriesChunks>, MetricsError> {
        let mut out = Vec::with_capacity(self.index.series_count());
        for id in 0..self.index.series_count() as u64 {
            let (labels, metas) = self.index.series(id).map_err(|problem| self.corrupt(problem))?;
            let mut chunks = Vec::with_capacity(metas.len());
            for meta in metas {
                chunks.push((self.chunk(meta.offset)?, meta.min_t, meta.max_t));
            }
            out.push((labels, chunks));
        }
        Ok(out)
    }

    /// Label names of the series matching `matchers` (all when empty).
    pub fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, MetricsError> {
        if matchers.is_empty() {
            return Ok(self.index.label_names());
        }
        let mut names = std::collections::BTreeSet::new();
        for id in self.series_ids(matchers) {
            let (labels, _) = self.index.series(id).map_err(|problem| self.corrupt(problem))?;
            names.extend(labels.iter().map(|label| label.name.to_string()));
        }
        Ok(names.into_iter().collect())
    }

    /// Values of label `name` among the series matching `matchers`.
    pub fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, MetricsError> {
        use postings::PostingsIndex;
        if matchers.is_empty() {
            return Ok(self.index.values(name));
        }
        let mut values = std::collections::BTreeSet::new();
        for id in self.series_ids(matchers) {
            let (labels, _) = self.index.series(id).map_err(|problem| self.corrupt(problem))?;
            if let Some(value) = labels.get(name) {
                values.insert(value.to_string());
            }
        }
        Ok(values.into_iter().collect())
    }

    /// Checks every chunk's checksum; for tests and the startup check of freshly written blocks.
    pub fn verify_chunks(&self) -> Result<(), MetricsError> {
        self.all_series().map(|_| ())
    }
}

fn map_file(path: &Path) -> Result<Arc<memmap2::Mmap>, MetricsError> {
    let file = File::open(path).map_err(MetricsError::io(format!("opening {}", path.display())))?;
    // SAFETY: block files are immutable once renamed into place: Tripod never writes to them
    // again, and deletes them only after every reader has dropped its Arc<Block>.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(MetricsError::io(format!("mapping {}", path.display())))?;
    Ok(Arc::new(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_detects_damage() {
        let meta = BlockMeta {
            id: "abc".into(),
            min_t: -5,
            max_t: 7_200_000,
            series: 3,
            chunks: 4,
            samples: 500,
            level: 2,
            sources: vec!["x".into(), "y".into()],
        };
        let bytes = encode_meta(&meta);
        assert_eq!(decode_meta(&bytes).unwrap(), meta);
        for position in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x10;
            assert!(decode_meta(&damaged).is_err(), "flip at {position}");
        }
    }
}
