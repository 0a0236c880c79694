//! The head: the in-memory part of the logs store. Each stream has an open block (entries in
//! arrival order in byte arenas, no allocation per entry), sealed blocks (sorted, immutable,
//! shared with readers) grouped into chunks, and chunks closed by size that wait for the next
//! flush. Sealing is cheap: the open block's lines arena is already laid out as a block's lines
//! section, so a block whose entries came in order is sealed without copying its lines, and
//! compression is left to maintenance unless `head_codec` asks for it. Every entry gets the stream's next sequence number; blocks and chunks cover runs of
//! sequence numbers, which is how a flush, a WAL checkpoint and a replay agree on what is
//! already in files.
//!
//! The store serialises appends; each stream's state sits behind its own mutex so that
//! readers see it consistent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::block::{
    BlockEncoder, CODEC_NONE, CODEC_ZSTD, DecodedBlock, LogsCodec, SealedBlock, compress_block, count_bytes, decompress,
};
use super::records::{get_labels, put_labels};
use super::{LineFilter, LogEntry, NsRange};
use crate::labels::Labels;

/// Sizes and codec the head seals with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SealPolicy {
    pub block_target_bytes: usize,
    pub chunk_target_bytes: u64,
    pub codec: LogsCodec,
}

/// A stream in the head.
#[derive(Debug)]
pub(crate) struct HeadStream {
    /// Names the stream in WAL records; valid for the life of this head stream.
    pub stream_ref: u64,
    pub tenant: Arc<str>,
    pub labels: Labels,
    state: Mutex<StreamState>,
}

impl HeadStream {
    pub fn new(stream_ref: u64, tenant: Arc<str>, labels: Labels, next_seq: u64, newest_t_ns: i64) -> HeadStream {
        HeadStream {
            stream_ref,
            tenant,
            labels,
            state: Mutex::new(StreamState {
                closed: Vec::new(),
                open_chunk: HeadChunk::default(),
                open: OpenBlock::new(next_seq),
                next_seq,
                newest_t_ns,
                last_append_ns: i64::MIN,
            }),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, StreamState> {
        // A panic while holding the lock leaves at worst an entry half pushed into the arena,
        // which `OpenBlock::push` never does (slots are pushed after their bytes).
        self.state.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

/// A run of sealed blocks of one stream, flushed together.
#[derive(Debug, Default, Clone)]
pub(crate) struct HeadChunk {
    pub blocks: Vec<Arc<SealedBlock>>,
    /// Encoded (uncompressed) bytes of the blocks.
    pub raw_bytes: u64,
    /// Clock time of the chunk's first entry, for the maximum chunk age.
    pub started_ns: Option<i64>,
}

impl HeadChunk {
    pub fn seq_end(&self) -> Option<u64> {
        self.blocks.last().map(|block| block.seq_end)
    }
}

/// One entry of the open block: where its line and metadata sit in the arenas.
#[derive(Debug, Clone, Copy)]
struct OpenSlot {
    t_ns: i64,
    line_start: u32,
    line_end: u32,
    metadata_start: u32,
    metadata_end: u32,
}

/// The block entries are appended to, unsorted and uncompressed.
#[derive(Debug)]
pub(crate) struct OpenBlock {
    /// Each entry's line followed by '\n', back to back: the lines section of a block.
    lines: Vec<u8>,
    /// Each entry's encoded metadata, back to back.
    metadata: Vec<u8>,
    slots: Vec<OpenSlot>,
    /// Whether `slots` are in (t_ns, line) order, so lookups can binary search and sealing
    /// keeps the arena as it is.
    sorted: bool,
    /// Sequence number of the first entry.
    seq_start: u64,
    line_bytes: u64,
}

impl OpenBlock {
    fn new(seq_start: u64) -> OpenBlock {
        OpenBlock { lines: Vec::new(), metadata: Vec::new(), slots: Vec::new(), sorted: true, seq_start, line_bytes: 0 }
    }

    fn line(&self, slot: &OpenSlot) -> &[u8] {
        &self.lines[slot.line_start as usize..slot.line_end as usize]
    }

    fn metadata(&self, slot: &OpenSlot) -> &[u8] {
        &self.metadata[slot.metadata_start as usize..slot.metadata_end as usize]
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Bytes the block will hold, before compression (near enough to cut blocks by).
    fn encoded_bytes(&self) -> usize {
        self.lines.len() + self.metadata.len() + self.slots.len() * 2
    }

    fn push(&mut self, t_ns: i64, line: &[u8], metadata: MetadataSource<'_>) {
        let line_start = self.lines.len() as u32;
        self.lines.extend_from_slice(line);
        let line_end = self.lines.len() as u32;
        self.lines.push(b'\n');
        let metadata_start = self.metadata.len() as u32;
        match metadata {
            MetadataSource::Labels(labels) => put_labels(&mut self.metadata, labels),
            MetadataSource::Encoded(bytes) => self.metadata.extend_from_slice(bytes),
        }
        let slot = OpenSlot { t_ns, line_start, line_end, metadata_start, metadata_end: self.metadata.len() as u32 };
        if self.sorted
            && let Some(last) = self.slots.last()
        {
            self.sorted = (last.t_ns, self.line(last)) <= (t_ns, line);
        }
        self.slots.push(slot);
        self.line_bytes += line.len() as u64;
    }

    fn contains(&self, t_ns: i64, line: &[u8]) -> bool {
        if self.sorted {
            self.slots.binary_search_by(|slot| (slot.t_ns, self.line(slot)).cmp(&(t_ns, line))).is_ok()
        } else {
            self.slots.iter().any(|slot| slot.t_ns == t_ns && self.line(slot) == line)
        }
    }

    fn bounds(&self) -> Option<(i64, i64)> {
        let first = self.slots.first()?;
        let mut bounds = (first.t_ns, first.t_ns);
        for slot in &self.slots {
            bounds = (bounds.0.min(slot.t_ns), bounds.1.max(slot.t_ns));
        }
        Some(bounds)
    }

    /// Slot indices in (t_ns, line) order.
    fn sorted_order(&self) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.slots.len() as u32).collect();
        if !self.sorted {
            order.sort_by(|&a, &b| {
                let (a, b) = (&self.slots[a as usize], &self.slots[b as usize]);
                (a.t_ns, self.line(a)).cmp(&(b.t_ns, self.line(b)))
            });
        }
        order
    }
}

/// Metadata as the caller has it: a label set, or already encoded (replay).
#[derive(Clone, Copy)]
pub(crate) enum MetadataSource<'a> {
    Labels(&'a Labels),
    Encoded(&'a [u8]),
}

/// The mutable part of a stream.
#[derive(Debug)]
pub(crate) struct StreamState {
    /// Chunks closed by size (or age, by the flush), oldest first, waiting to be flushed.
    pub closed: Vec<HeadChunk>,
    /// Sealed blocks of the chunk being filled.
    pub open_chunk: HeadChunk,
    pub open: OpenBlock,
    /// Sequence number the next entry gets.
    pub next_seq: u64,
    /// Newest entry time stored for the stream, `i64::MIN` if none.
    pub newest_t_ns: i64,
    /// Clock time of the last append, for the idle period.
    pub last_append_ns: i64,
}

impl StreamState {
    /// Appends an entry (already judged) and seals the open block when it is full.
    pub fn push(&mut self, t_ns: i64, line: &[u8], metadata: MetadataSource<'_>, now_ns: i64, policy: &SealPolicy) {
        if self.open.slots.is_empty() {
            self.open.seq_start = self.next_seq;
        }
        self.open.push(t_ns, line, metadata);
        self.next_seq += 1;
        self.newest_t_ns = self.newest_t_ns.max(t_ns);
        self.last_append_ns = now_ns;
        if self.open_chunk.started_ns.is_none() {
            self.open_chunk.started_ns = Some(now_ns);
        }
        if self.open.encoded_bytes() >= policy.block_target_bytes {
            self.seal_open_block(policy);
        }
    }

    /// Seals the open block into the open chunk, and closes the chunk when it is full.
    pub fn seal_open_block(&mut self, policy: &SealPolicy) {
        if self.open.slots.is_empty() {
            return;
        }
        let open = &mut self.open;
        let encoder = if open.sorted {
            // The arena becomes the block's lines section as it is. The next arena is sized for
            // a full block, with room for the columns, so that neither grows by copying.
            let room = policy.block_target_bytes + policy.block_target_bytes / 16;
            let lines = std::mem::replace(&mut open.lines, Vec::with_capacity(room));
            let times_ns = open.slots.iter().map(|slot| slot.t_ns).collect();
            let line_lengths = open.slots.iter().map(|slot| slot.line_end - slot.line_start).collect();
            // One terminator per line means no line holds a '\n' (counted once per block: a
            // vectorised pass, cheaper than a search per line).
            let newlines = count_bytes(&lines, b'\n');
            let line_has_newline = newlines != open.slots.len();
            BlockEncoder::from_parts(lines, open.metadata.clone(), times_ns, line_lengths, line_has_newline)
        } else {
            let mut encoder = BlockEncoder::new();
            for index in open.sorted_order() {
                let slot = &open.slots[index as usize];
                encoder.push(slot.t_ns, open.line(slot), open.metadata(slot));
            }
            encoder
        };
        let (raw, meta) = encoder.finish();
        let (codec, data) = match compress_block(policy.codec, &raw, &meta) {
            Some(data) => (CODEC_ZSTD, data),
            None => (CODEC_NONE, raw),
        };
        let block = SealedBlock { meta, codec, data, seq_end: open.seq_start + open.slots.len() as u64 };
        self.open_chunk.raw_bytes += u64::from(meta.raw_bytes);
        self.open_chunk.blocks.push(Arc::new(block));
        // Keep the arenas' capacity: the next block will be as large.
        self.open.lines.clear();
        self.open.metadata.clear();
        self.open.slots.clear();
        self.open.sorted = true;
        self.open.line_bytes = 0;
        self.open.seq_start = self.next_seq;
        if self.open_chunk.raw_bytes >= policy.chunk_target_bytes {
            self.close_open_chunk();
        }
    }

    fn close_open_chunk(&mut self) {
        if !self.open_chunk.blocks.is_empty() {
            let chunk = std::mem::take(&mut self.open_chunk);
            self.closed.push(chunk);
        }
    }

    /// Seals the open block and closes the open chunk (a flush by age or idleness).
    pub fn close_everything(&mut self, policy: &SealPolicy) {
        self.seal_open_block(policy);
        self.close_open_chunk();
    }

    /// Drops closed chunks whose entries all have sequence numbers below `seq_end` (they are
    /// in files now). Returns the number dropped.
    pub fn drop_flushed(&mut self, seq_end: u64) -> usize {
        let before = self.closed.len();
        self.closed.retain(|chunk| chunk.seq_end().is_none_or(|end| end > seq_end));
        before - self.closed.len()
    }

    /// Puts `new` where `old` is (the same entries, compressed); `false` if `old` is gone (a
    /// flush let it go meanwhile).
    pub fn replace_block(&mut self, old: &Arc<SealedBlock>, new: Arc<SealedBlock>) -> bool {
        let chunks = self.closed.iter_mut().chain(std::iter::once(&mut self.open_chunk));
        for chunk in chunks {
            if let Some(slot) = chunk.blocks.iter_mut().find(|block| Arc::ptr_eq(block, old)) {
                *slot = new;
                return true;
            }
        }
        false
    }

    /// Every sealed block, oldest chunk first.
    pub fn sealed_blocks(&self) -> impl Iterator<Item = &Arc<SealedBlock>> {
        self.closed.iter().flat_map(|chunk| chunk.blocks.iter()).chain(self.open_chunk.blocks.iter())
    }

    pub fn is_empty(&self) -> bool {
        self.open.slots.is_empty() && self.open_chunk.blocks.is_empty() && self.closed.is_empty()
    }

    /// Chunks in memory: closed ones, plus the open one if it holds anything.
    pub fn chunk_count(&self) -> usize {
        self.closed.len() + usize::from(!self.open_chunk.blocks.is_empty() || !self.open.slots.is_empty())
    }

    /// Entries, line bytes and encoded bytes held.
    pub fn sizes(&self) -> (u64, u64, u64) {
        let mut entries = self.open.slots.len() as u64;
        let mut line_bytes = self.open.line_bytes;
        let mut memory = (self.open.lines.capacity()
            + self.open.metadata.capacity()
            + self.open.slots.capacity() * std::mem::size_of::<OpenSlot>()) as u64;
        for block in self.sealed_blocks() {
            entries += u64::from(block.meta.entries);
            line_bytes += block.meta.line_bytes;
            memory += block.data.len() as u64;
        }
        (entries, line_bytes, memory)
    }

    /// Smallest and largest entry time held, or `None`.
    pub fn bounds(&self) -> Option<(i64, i64)> {
        let mut bounds = self.open.bounds();
        for block in self.sealed_blocks() {
            let (lo, hi) = (block.meta.min_t_ns, block.meta.max_t_ns);
            bounds = Some(bounds.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
        }
        bounds
    }

    /// Whether the head holds an entry with this time and line. Sealed blocks that could hold
    /// it are decompressed once per append and kept in `cache`.
    pub fn contains(&self, t_ns: i64, line: &[u8], cache: &mut DecodedCache) -> bool {
        if self.open.contains(t_ns, line) {
            return true;
        }
        for block in self.sealed_blocks() {
            if t_ns < block.meta.min_t_ns || t_ns > block.meta.max_t_ns {
                continue;
            }
            if let Some(decoded) = cache.get(block) {
                let found =
                    decoded.slots.binary_search_by(|slot| (slot.t_ns, decoded.line(slot)).cmp(&(t_ns, line))).is_ok();
                if found {
                    return true;
                }
            }
        }
        false
    }

    /// The open block's entries within `range` that pass `filters`, sorted by (t_ns, line).
    pub fn open_entries(&self, range: NsRange, filters: &[LineFilter]) -> Vec<LogEntry> {
        let mut out = Vec::new();
        for index in self.open.sorted_order() {
            let slot = &self.open.slots[index as usize];
            if !range.contains(slot.t_ns) {
                continue;
            }
            let Ok(line) = std::str::from_utf8(self.open.line(slot)) else { continue };
            if !filters.iter().all(|filter| filter.matches(line)) {
                continue;
            }
            let metadata = get_labels(&mut self.open.metadata(slot)).unwrap_or_default();
            out.push(LogEntry { t_ns: slot.t_ns, line: line.to_string(), metadata });
        }
        out
    }

    /// Entries and line bytes of the open block within `range`.
    pub fn open_sizes_in(&self, range: NsRange) -> (u64, u64) {
        let mut entries = 0;
        let mut bytes = 0;
        for slot in self.open.slots.iter().filter(|slot| range.contains(slot.t_ns)) {
            entries += 1;
            bytes += u64::from(slot.line_end - slot.line_start);
        }
        (entries, bytes)
    }
}

/// Sealed blocks decompressed during one append, for duplicate checks.
#[derive(Default)]
pub(crate) struct DecodedCache {
    blocks: HashMap<usize, Option<DecodedBlock>>,
    scratch: Vec<u8>,
}

impl DecodedCache {
    pub fn clear(&mut self) {
        self.blocks.clear();
    }

    fn get(&mut self, block: &Arc<SealedBlock>) -> Option<&DecodedBlock> {
        let key = Arc::as_ptr(block) as usize;
        let scratch = &mut self.scratch;
        self.blocks
            .entry(key)
            .or_insert_with(|| {
                // Head blocks were encoded here; a failure would only skip the duplicate check.
                decompress(block.codec, &block.data, block.meta.raw_bytes, scratch).ok()?;
                DecodedBlock::parse(std::mem::take(scratch), &block.meta).ok()
            })
            .as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> SealPolicy {
        SealPolicy { block_target_bytes: 200, chunk_target_bytes: 600, codec: LogsCodec::Zstd { level: 1 } }
    }

    #[test]
    fn blocks_seal_and_chunks_close_by_size() {
        let stream = HeadStream::new(1, "t".into(), Labels::empty(), 10, i64::MIN);
        let mut state = stream.lock();
        for i in 0..100i64 {
            let line = format!("line number {i:04} with some padding");
            state.push(1000 - i, line.as_bytes(), MetadataSource::Labels(&Labels::empty()), 5, &policy());
        }
        assert!(!state.closed.is_empty());
        assert_eq!(state.next_seq, 110);
        let mut cache = DecodedCache::default();
        assert!(state.contains(1000, b"line number 0000 with some padding", &mut cache));
        assert!(state.contains(901, b"line number 0099 with some padding", &mut cache));
        assert!(!state.contains(901, b"line number 0098 with some padding", &mut cache));
        let (entries, _, _) = state.sizes();
        assert_eq!(entries, 100);
        assert_eq!(state.bounds(), Some((901, 1000)));
        // Sequence numbers of sealed blocks follow the stream's first.
        let blocks: Vec<(u64, u32)> = state.sealed_blocks().map(|b| (b.seq_end, b.meta.entries)).collect();
        assert_eq!(blocks[0].0, 10 + u64::from(blocks[0].1));
        assert!(blocks.windows(2).all(|pair| pair[1].0 == pair[0].0 + u64::from(pair[1].1)));
        let first_closed_end = state.closed[0].seq_end().unwrap();
        assert_eq!(state.drop_flushed(first_closed_end), 1);
    }
}
