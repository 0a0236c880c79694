//! The lazy reader behind a [`super::StreamCursor`]: a merge of one stream's sources (file
//! blocks, sealed head blocks, a snapshot of the open block), each sorted by (t_ns, line).
//! A source is decompressed only when the merge reaches its first possible entry, so blocks that
//! do not overlap are read one at a time and a caller that stops early reads no further.
//! Entries equal in time and line (the same entry in two places, e.g. written to a file and
//! still in the WAL-replayed head) come out once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use memchr::memmem::Finder;

use super::block::{DecodedBlock, SealedBlock, decompress, lines_may_contain_all};
use super::file::LogFile;
use super::{Direction, LineFilter, LogEntry, LogsError, NsRange};

/// Read-side counters shared by every cursor of a store.
#[derive(Debug, Default)]
pub(crate) struct ReadCounters {
    pub blocks_read: AtomicU64,
    pub blocks_skipped_by_bloom: AtomicU64,
}

/// Where a source's entries come from.
pub(crate) enum SourceKind {
    /// Already materialised and sorted (the open block's snapshot).
    Entries(Vec<LogEntry>),
    /// A sealed head block.
    Head(Arc<SealedBlock>),
    /// A block of a file.
    File { file: Arc<LogFile>, block: u32 },
}

/// A source not opened yet, with the time bounds that decide when it must be.
pub(crate) struct Source {
    pub min_t_ns: i64,
    pub max_t_ns: i64,
    pub kind: SourceKind,
}

/// An opened source: the positions of its entries that pass the range and filters, in the
/// cursor's direction.
enum Opened {
    Entries { entries: std::vec::IntoIter<LogEntry>, peeked: Option<LogEntry> },
    Block { block: DecodedBlock, positions: Vec<u32>, next: usize },
}

impl Opened {
    /// The key of the next entry: (t_ns, line).
    fn peek(&self) -> Option<(i64, &[u8])> {
        match self {
            Opened::Entries { peeked, .. } => peeked.as_ref().map(|entry| (entry.t_ns, entry.line.as_bytes())),
            Opened::Block { block, positions, next } => positions.get(*next).map(|&index| {
                let slot = &block.slots[index as usize];
                (slot.t_ns, block.line(slot))
            }),
        }
    }

    fn take(&mut self) -> Option<Result<LogEntry, String>> {
        match self {
            Opened::Entries { entries, peeked } => {
                let entry = peeked.take();
                *peeked = entries.next();
                entry.map(Ok)
            }
            Opened::Block { block, positions, next } => {
                let index = *positions.get(*next)?;
                *next += 1;
                Some(block.entry(&block.slots[index as usize]))
            }
        }
    }
}

/// A line filter with its searcher built once.
struct CompiledFilter {
    finder: Finder<'static>,
    /// The line must not contain the needle.
    negated: bool,
}

pub(crate) struct MergeCursor {
    direction: Direction,
    range: NsRange,
    filters: Vec<CompiledFilter>,
    /// The needles every passing line contains, to rule out a block from its lines section.
    required: Vec<Finder<'static>>,
    /// Sources not opened yet; the next to open is last.
    pending: Vec<Source>,
    active: Vec<Opened>,
    /// The last entry returned, to drop an equal one from another source.
    last: Option<(i64, Vec<u8>)>,
    counters: Arc<ReadCounters>,
    /// Reused decompression buffer.
    scratch: Vec<u8>,
    failed: bool,
}

impl MergeCursor {
    pub fn new(
        mut sources: Vec<Source>,
        direction: Direction,
        range: NsRange,
        filters: Vec<LineFilter>,
        counters: Arc<ReadCounters>,
    ) -> MergeCursor {
        match direction {
            // Opened in ascending order of their first entry: the smallest min last.
            Direction::Forward => sources.sort_by_key(|source| std::cmp::Reverse(source.min_t_ns)),
            Direction::Backward => sources.sort_by_key(|source| source.max_t_ns),
        }
        let compile = |needle: &str| Finder::new(needle.as_bytes()).into_owned();
        let required = filters
            .iter()
            .filter_map(|filter| match filter {
                LineFilter::Contains(needle) if !needle.is_empty() => Some(compile(needle)),
                _ => None,
            })
            .collect();
        let filters = filters
            .iter()
            .map(|filter| match filter {
                LineFilter::Contains(needle) => CompiledFilter { finder: compile(needle), negated: false },
                LineFilter::NotContains(needle) => CompiledFilter { finder: compile(needle), negated: true },
            })
            .collect();
        MergeCursor {
            direction,
            range,
            filters,
            required,
            pending: sources,
            active: Vec::new(),
            last: None,
            counters,
            scratch: Vec::new(),
            failed: false,
        }
    }

    fn passes(&self, t_ns: i64, line: &[u8]) -> bool {
        if !self.range.contains(t_ns) {
            return false;
        }
        // Block lines are checked to be UTF-8 when the block is parsed.
        self.filters.iter().all(|filter| filter.finder.find(line).is_some() != filter.negated)
    }

    /// Whether a stored block may hold a passing line, judged from its lines section alone.
    fn may_pass(&mut self, codec: u8, data: &[u8], meta: &super::block::BlockMeta) -> Result<bool, String> {
        if self.required.is_empty() {
            return Ok(true);
        }
        lines_may_contain_all(codec, data, meta, &self.required, &mut self.scratch)
    }

    fn open(&mut self, source: Source) -> Result<Option<Opened>, LogsError> {
        let block = match source.kind {
            SourceKind::Entries(entries) => {
                let mut entries = entries;
                if self.direction == Direction::Backward {
                    entries.reverse();
                }
                let mut entries = entries.into_iter();
                let peeked = entries.next();
                return Ok(peeked.is_some().then_some(Opened::Entries { entries, peeked }));
            }
            SourceKind::Head(block) => {
                let corrupt = |problem| LogsError::Corrupt { file: "head block".into(), problem };
                self.counters.blocks_read.fetch_add(1, Ordering::Relaxed);
                if !self.may_pass(block.codec, &block.data, &block.meta).map_err(corrupt)? {
                    return Ok(None);
                }
                decompress(block.codec, &block.data, block.meta.raw_bytes, &mut self.scratch)
                    .and_then(|()| DecodedBlock::parse(std::mem::take(&mut self.scratch), &block.meta))
                    .map_err(corrupt)?
            }
            SourceKind::File { file, block } => {
                let corrupt = |problem| LogsError::Corrupt {
                    file: file.path.display().to_string(),
                    problem: format!("block {block}: {problem}"),
                };
                self.counters.blocks_read.fetch_add(1, Ordering::Relaxed);
                let (stored, data) = file.block_data(block)?;
                if !self.may_pass(stored.codec, data, &stored.meta).map_err(corrupt)? {
                    return Ok(None);
                }
                decompress(stored.codec, data, stored.meta.raw_bytes, &mut self.scratch).map_err(corrupt)?;
                DecodedBlock::parse(std::mem::take(&mut self.scratch), &stored.meta).map_err(corrupt)?
            }
        };
        let mut positions: Vec<u32> = Vec::new();
        for (index, slot) in block.slots.iter().enumerate() {
            if self.passes(slot.t_ns, block.line(slot)) {
                positions.push(index as u32);
            }
        }
        if self.direction == Direction::Backward {
            positions.reverse();
        }
        Ok((!positions.is_empty()).then_some(Opened::Block { block, positions, next: 0 }))
    }

    /// Index of the active source whose next entry comes first in the cursor's direction.
    fn best(&self) -> Option<usize> {
        let mut best: Option<(usize, (i64, &[u8]))> = None;
        for (index, opened) in self.active.iter().enumerate() {
            let Some(key) = opened.peek() else { continue };
            let better = match best {
                None => true,
                Some((_, current)) => match self.direction {
                    Direction::Forward => key < current,
                    Direction::Backward => key > current,
                },
            };
            if better {
                best = Some((index, key));
            }
        }
        best.map(|(index, _)| index)
    }

    fn next_entry(&mut self) -> Result<Option<LogEntry>, LogsError> {
        loop {
            // Open every pending source that may hold an entry before the best active one.
            while let Some(source) = self.pending.pop() {
                let must_open = match self.best().and_then(|index| self.active[index].peek()) {
                    None => true,
                    Some((t_ns, _)) => match self.direction {
                        Direction::Forward => source.min_t_ns <= t_ns,
                        Direction::Backward => source.max_t_ns >= t_ns,
                    },
                };
                if !must_open {
                    self.pending.push(source);
                    break;
                }
                if let Some(opened) = self.open(source)? {
                    self.active.push(opened);
                }
            }
            let Some(index) = self.best() else { return Ok(None) };
            let entry = self.active[index].take();
            if self.active[index].peek().is_none() {
                self.active.swap_remove(index);
            }
            let entry = match entry {
                Some(Ok(entry)) => entry,
                Some(Err(problem)) => return Err(LogsError::Corrupt { file: "block".into(), problem }),
                None => continue,
            };
            let duplicate =
                self.last.as_ref().is_some_and(|(t_ns, line)| *t_ns == entry.t_ns && line == entry.line.as_bytes());
            if duplicate {
                continue;
            }
            match &mut self.last {
                Some((t_ns, line)) => {
                    *t_ns = entry.t_ns;
                    line.clear();
                    line.extend_from_slice(entry.line.as_bytes());
                }
                None => self.last = Some((entry.t_ns, entry.line.as_bytes().to_vec())),
            }
            return Ok(Some(entry));
        }
    }
}

impl Iterator for MergeCursor {
    type Item = Result<LogEntry, LogsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_entry() {
            Ok(entry) => entry.map(Ok),
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}
