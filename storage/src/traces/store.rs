//! [`TracesStore`]: the per-tenant heads and the block files behind the [`TracesAppender`] and
//! [`TracesQueryable`] seams, plus maintenance: cutting heads into blocks, compacting small
//! blocks, applying retention, and deciding what a WAL checkpoint keeps.
//!
//! Rules the store keeps:
//! - Every append is one WAL record numbered with the store's next sequence number. A tenant's
//!   appends and cuts are serialised, so a cut takes every record of the tenant numbered below
//!   the block's `seq_end`; replay skips and checkpoints drop the tenant's records below the
//!   highest `seq_end` of its blocks, so nothing is stored twice or lost.
//! - A span is in the WAL before it is in the head, and in the head before `append` returns.
//! - Readers look at the heads (and heads being cut) before the file list, and a cut installs
//!   its block before it lets its head go, so a span is never in neither place for a reader.
//! - Cuts, compaction and retention happen in `maintenance`, never on the append path.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use super::assemble::{self, SpanInput, StoredSpan, TraceCollector};
use super::codec::TracesCodec;
use super::file::{self, BlockFile, BlockWriter, PageFrames};
use super::filter::{resource_side_holds, span_matches};
use super::head::{HeadRecord, HeadSegment, RECORD_BUFFERS, RecordContexts, SpanRef, TenantHead, for_each_span};
use super::index::{Bounds, IndexBuilder, span_extent};
use super::page::{DecodedGroup, GroupSelection, PageContexts, PageEncoder, PageHeader};
use super::records::{self, Layout, MAX_VALUE_DEPTH, MalformedRecord, RecordHeader, SpansRecord};
use super::{
    AttrValue, NsRange, ResourceSpans, ScopedTagNames, SearchResult, SearchStats, Span, SpanFilter, TagRef, TagScope,
    TagValue, Trace, TraceId, TracesAppendCounts, TracesAppender, TracesError, TracesQueryable,
};
use crate::prefetch::prefetch_lines;
use crate::record_kinds;
use crate::wal::{RecordKind, Wal};

const SECOND_NS: i64 = 1_000_000_000;
const MINUTE_NS: i64 = 60 * SECOND_NS;
const HOUR_NS: i64 = 60 * MINUTE_NS;

/// How long no record is made before the buffers kept for records are let go.
const RECORD_BUFFERS_QUIET: std::time::Duration = std::time::Duration::from_secs(60);

/// How many traces ahead a cut asks for spans to be brought into the caches.
const CUT_LOOKAHEAD_TRACES: usize = 4;
/// The cache lines of a span asked for: its head and first attributes.
const SPAN_PREFETCH_LINES: usize = 10;

/// Cache lines asked for of a record's string table, and of its strings, ahead of the cut
/// (the whole table of most records: 8 KiB).
const TABLE_PREFETCH_LINES: usize = 128;

/// Where the store reads the current time, in nanoseconds since the Unix epoch: for head ages
/// and retention. Tests inject a fixed clock.
#[derive(Clone)]
pub struct TracesClock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl TracesClock {
    /// The system clock.
    pub fn system() -> TracesClock {
        TracesClock(Arc::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX))
                .unwrap_or(0)
        }))
    }

    /// A clock that answers whatever `now_ns` returns.
    pub fn from_fn(now_ns: impl Fn() -> i64 + Send + Sync + 'static) -> TracesClock {
        TracesClock(Arc::new(now_ns))
    }

    pub fn now_ns(&self) -> i64 {
        (self.0)()
    }
}

impl Default for TracesClock {
    fn default() -> Self {
        TracesClock::system()
    }
}

impl fmt::Debug for TracesClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TracesClock")
    }
}

/// How the traces store behaves.
#[derive(Debug, Clone)]
pub struct TracesOptions {
    /// Head records are grouped into segments of about this many bytes; a full segment is
    /// frozen and gets skip data, so searches skip it when it cannot match.
    pub head_segment_bytes: u64,
    /// Maintenance cuts a tenant's head into a block once its records reach this size (the
    /// default, 512 MiB, makes blocks of about 35 MB of realistic spans, past
    /// `compaction_small_file_bytes`: a busy tenant's blocks are written once, never merged)...
    pub block_target_bytes: u64,
    /// ...or once its first span arrived this long ago.
    pub max_head_age_ns: i64,
    /// Pages are closed once their uncompressed bytes reach this size.
    pub page_target_bytes: usize,
    /// Within a page, a group of traces is closed (and compressed on its own) once its
    /// uncompressed columns reach this size: a lookup by trace ID decompresses one group.
    pub group_target_bytes: usize,
    /// Compression of pages.
    pub codec: TracesCodec,
    /// Distinct values kept per attribute key and block for tag values and exact skipping; a
    /// key with more is marked incomplete (its values are then answered in part and searches
    /// fall back on the page bloom filters).
    pub max_values_per_key: usize,
    /// Blocks whose every span ended longer ago than this (by the clock) are deleted; `None`
    /// keeps everything.
    pub retention_ns: Option<i64>,
    /// Per-tenant retention, overriding `retention_ns`.
    pub tenant_retention_ns: HashMap<String, i64>,
    /// Blocks smaller than this (those of quiet tenants, cut by age) are merged by
    /// compaction...
    pub compaction_small_file_bytes: u64,
    /// ...once at least this many of one tenant end in the same window...
    pub compaction_min_files: usize,
    /// ...of this length (so a compacted block spans a bounded time and retention can delete
    /// it whole).
    pub compaction_window_ns: i64,
    /// A maintenance pass asks for a WAL checkpoint once this many head bytes were cut since
    /// the last one.
    pub checkpoint_after_cut_bytes: u64,
    pub clock: TracesClock,
}

impl Default for TracesOptions {
    fn default() -> Self {
        TracesOptions {
            head_segment_bytes: 4 << 20,
            block_target_bytes: 512 << 20,
            max_head_age_ns: 10 * MINUTE_NS,
            page_target_bytes: 512 << 10,
            group_target_bytes: 32 << 10,
            codec: TracesCodec::Zstd { level: 3 },
            max_values_per_key: 1000,
            retention_ns: Some(14 * 24 * HOUR_NS),
            tenant_retention_ns: HashMap::new(),
            compaction_small_file_bytes: 16 << 20,
            compaction_min_files: 4,
            compaction_window_ns: HOUR_NS,
            checkpoint_after_cut_bytes: 64 << 20,
            clock: TracesClock::system(),
        }
    }
}

/// Figures for self-metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TracesStats {
    pub head_spans: u64,
    pub head_traces: u64,
    /// Record bytes held by the heads.
    pub head_bytes: u64,
    pub blocks: u64,
    pub block_bytes: u64,
    pub block_spans: u64,
    pub block_traces: u64,
    /// Totals since start.
    pub appended: TracesAppendCounts,
    pub blocks_cut: u64,
    pub compactions: u64,
    pub blocks_deleted_by_retention: u64,
    /// Blocks a search read pages of, and blocks its skip data let it pass over.
    pub blocks_searched: u64,
    pub blocks_skipped: u64,
    pub pages_read: u64,
    pub pages_skipped: u64,
    pub replay_malformed_records: u64,
    /// WAL spans found already in blocks at replay.
    pub replay_spans_already_flushed: u64,
    /// Block files found damaged at open and moved aside.
    pub corrupt_files: u64,
}

/// What a maintenance pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TracesMaintenanceOutcome {
    pub blocks_cut: u64,
    pub compactions: u64,
    pub blocks_deleted: u64,
    /// Enough was cut since the last checkpoint that one is worth its cost.
    pub checkpoint_wanted: bool,
}

#[derive(Default)]
struct Counters {
    blocks_cut: AtomicU64,
    compactions: AtomicU64,
    blocks_deleted: AtomicU64,
    blocks_searched: AtomicU64,
    blocks_skipped: AtomicU64,
    pages_read: AtomicU64,
    pages_skipped: AtomicU64,
    replay_malformed: AtomicU64,
    replay_already_flushed: AtomicU64,
    corrupt_files: AtomicU64,
    cut_bytes_since_checkpoint: AtomicU64,
}

pub struct TracesStore {
    /// `data/traces`: the block files.
    dir: PathBuf,
    options: TracesOptions,
    heads: RwLock<HashMap<Arc<str>, Arc<TenantHead>>>,
    /// Open block files of every tenant, oldest first.
    files: RwLock<Vec<Arc<BlockFile>>>,
    /// Per tenant, the highest `seq_end` of its blocks: its records below it are in blocks (or
    /// were, before retention). Only grows.
    flushed_seq_end: Mutex<HashMap<String, u64>>,
    next_seq: AtomicU64,
    /// Set once the WAL replay is over; appends before that are refused.
    wal: OnceLock<Arc<Wal>>,
    maintenance_lock: Mutex<()>,
    totals: Mutex<TracesAppendCounts>,
    counters: Counters,
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poison| poison.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poison| poison.into_inner())
}

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> TracesError {
    move |source| TracesError::Io { context, source }
}

/// A head record that does not decode: the store wrote and checked it, so this is a bug.
fn head_corrupt(_: MalformedRecord) -> TracesError {
    TracesError::Corrupt { file: "head".into(), problem: "a head record does not decode".into() }
}

fn value_depth_ok(value: &AttrValue, depth: u32) -> bool {
    match value {
        AttrValue::Array(values) => depth < MAX_VALUE_DEPTH && values.iter().all(|v| value_depth_ok(v, depth + 1)),
        AttrValue::KvList(pairs) => depth < MAX_VALUE_DEPTH && pairs.iter().all(|(_, v)| value_depth_ok(v, depth + 1)),
        _ => true,
    }
}

pub(crate) fn attributes_depth_ok(attributes: &[(String, AttrValue)]) -> bool {
    attributes.iter().all(|(_, value)| value_depth_ok(value, 0))
}

pub(crate) fn span_valid(span: &Span) -> bool {
    span.trace_id != [0; 16]
        && span.span_id != [0; 8]
        && attributes_depth_ok(&span.attributes)
        && span.events.iter().all(|event| attributes_depth_ok(&event.attributes))
        && span.links.iter().all(|link| attributes_depth_ok(&link.attributes))
}

/// Whether a span overlaps a range.
fn span_overlaps(span: &Span, range: NsRange) -> bool {
    let (low, high) = span_extent(span);
    range.overlaps(low, high)
}

/// Reads every trace of a page, in ID order, with its spans materialised; `header_raw` and
/// `group_raw` are buffers to reuse.
fn read_page_traces(
    page: &PageFrames<'_>,
    header_raw: &mut Vec<u8>,
    group_raw: &mut Vec<u8>,
    mut each: impl FnMut(TraceId, Vec<StoredSpan>),
) -> Result<(), TracesError> {
    page.read(0, header_raw)?;
    let header = PageHeader::parse(header_raw).map_err(|problem| page.damaged(problem))?;
    if page.frame_count() != header.groups.len() + 1 {
        return Err(page.damaged("the frames do not match the groups".into()));
    }
    let mut contexts = PageContexts::default();
    for group in 0..header.groups.len() {
        page.read(group + 1, group_raw)?;
        let decoded = DecodedGroup::parse(&header, group, group_raw, GroupSelection::All)
            .map_err(|problem| page.damaged(problem))?
            .ok_or_else(|| page.damaged("a group did not decode".into()))?;
        for index in 0..decoded.traces.len() {
            let spans = decoded.trace_spans(index, &mut contexts).map_err(|problem| page.damaged(problem))?;
            each(decoded.traces[index].trace_id, spans);
        }
    }
    Ok(())
}

/// Buffers for the frames a trace lookup decompresses.
#[derive(Default)]
struct FrameBuffers {
    header: Vec<u8>,
    group: Vec<u8>,
}

impl FrameBuffers {
    /// Lets go of buffers a very large trace grew, rather than keep them for the thread's life.
    fn release_if_large(&mut self) {
        if self.header.capacity() + self.group.capacity() > 16 << 20 {
            *self = FrameBuffers::default();
        }
    }
}

thread_local! {
    /// Each thread's lookup buffers: a lookup then allocates no page-sized buffer.
    static FRAME_BUFFERS: std::cell::RefCell<FrameBuffers> = std::cell::RefCell::new(FrameBuffers::default());
}

/// Adds the spans a block holds of a trace to `collector`: the trace bloom and the pages'
/// ID ranges find the page, its header the group, and only that group is decompressed.
fn trace_from_block(
    block: &BlockFile,
    trace_id: &TraceId,
    buffers: &mut FrameBuffers,
    collector: &mut TraceCollector,
) -> Result<(), TracesError> {
    let Some(page_index) = block.find_trace(trace_id) else { return Ok(()) };
    let page = block.page(page_index)?;
    page.read(0, &mut buffers.header)?;
    let header = PageHeader::parse(&buffers.header).map_err(|problem| page.damaged(problem))?;
    let Some(group) = header.find_group(trace_id) else { return Ok(()) };
    page.read(group + 1, &mut buffers.group)?;
    // `None`: the bloom let through a trace the page does not have.
    let Some(decoded) = DecodedGroup::parse(&header, group, &buffers.group, GroupSelection::Trace(trace_id))
        .map_err(|problem| page.damaged(problem))?
    else {
        return Ok(());
    };
    for stored in decoded.trace_spans(0, &mut PageContexts::default()).map_err(|problem| page.damaged(problem))? {
        collector.add(stored);
    }
    Ok(())
}

/// A block's traces in ID order, page by page, for a compaction.
struct BlockStream<'a> {
    file: &'a BlockFile,
    next_page: u32,
    queue: VecDeque<(TraceId, Vec<StoredSpan>)>,
    header_raw: Vec<u8>,
    group_raw: Vec<u8>,
}

impl BlockStream<'_> {
    /// The next trace ID of the block, loading pages as needed.
    fn front(&mut self) -> Result<Option<TraceId>, TracesError> {
        while self.queue.is_empty() && (self.next_page as usize) < self.file.pages.len() {
            let page = self.file.page(self.next_page)?;
            let queue = &mut self.queue;
            read_page_traces(&page, &mut self.header_raw, &mut self.group_raw, |trace_id, spans| {
                queue.push_back((trace_id, spans));
            })?;
            self.next_page += 1;
        }
        Ok(self.queue.front().map(|(trace_id, _)| *trace_id))
    }
}

/// Fills a block: traces go into pages (closed at the target size) and the block's index.
struct BlockBuilder<'w> {
    writer: &'w mut BlockWriter,
    index: IndexBuilder,
    encoder: PageEncoder,
    page_target_bytes: usize,
}

impl BlockBuilder<'_> {
    fn add_trace(&mut self, trace_id: &TraceId, spans: &[SpanInput<'_>]) -> Result<(), TracesError> {
        self.writer.note_trace(trace_id);
        self.encoder.add_trace(trace_id, spans, &mut self.index).map_err(head_corrupt)?;
        if self.encoder.raw_bytes() >= self.page_target_bytes {
            self.finish_page()?;
        }
        Ok(())
    }

    fn finish_page(&mut self) -> Result<(), TracesError> {
        if self.encoder.trace_count() == 0 {
            return Ok(());
        }
        let page = self.encoder.finish();
        self.writer.add_page(&page)
    }
}

impl TracesStore {
    /// Opens the store in `dir`: loads its block files (a damaged one is moved aside and
    /// reported), removes what an interrupted cut or compaction left. The WAL is replayed into
    /// it next, then attached with [`TracesStore::attach_wal`].
    pub fn open(dir: &Path, options: TracesOptions) -> Result<TracesStore, TracesError> {
        fs::create_dir_all(dir).map_err(io_error(format!("creating {}", dir.display())))?;
        let counters = Counters::default();
        let mut files = Vec::new();
        let entries = fs::read_dir(dir).map_err(io_error(format!("listing {}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(io_error(format!("listing {}", dir.display())))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            if name.ends_with(file::TEMP_SUFFIX) {
                tracing::info!(file = %name, "removing unfinished block file");
                fs::remove_file(&path).map_err(io_error(format!("removing {}", path.display())))?;
                continue;
            }
            if !name.ends_with(file::FILE_SUFFIX) {
                continue;
            }
            match BlockFile::open(&path) {
                Ok(block) => files.push(Arc::new(block)),
                Err(TracesError::Corrupt { file, problem }) => {
                    let aside =
                        dir.join(format!("{}{}", name.trim_end_matches(file::FILE_SUFFIX), file::CORRUPT_SUFFIX));
                    tracing::error!(file = %file, problem = %problem, moved_to = %aside.display(), "block file is damaged, not reading it");
                    fs::rename(&path, &aside).map_err(io_error(format!("moving {}", path.display())))?;
                    counters.corrupt_files.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => return Err(error),
            }
        }
        // A compaction that crashed after writing its output but before deleting its inputs
        // leaves both: the inputs are named as sources of the output.
        let replaced: BTreeSet<String> = files.iter().flat_map(|file| file.sources.iter().cloned()).collect();
        let (superseded, mut files): (Vec<_>, Vec<_>) = files.into_iter().partition(|file| replaced.contains(&file.id));
        for block in superseded {
            tracing::info!(file = %block.id, "removing block file already compacted into another");
            fs::remove_file(&block.path).map_err(io_error(format!("removing {}", block.path.display())))?;
        }
        files.sort_by(|a, b| a.id.cmp(&b.id));
        let mut flushed: HashMap<String, u64> = HashMap::new();
        let mut next_seq = 0;
        for block in &files {
            let entry = flushed.entry(block.tenant.clone()).or_default();
            *entry = (*entry).max(block.seq_end);
            next_seq = u64::max(next_seq, block.seq_end);
        }
        RECORD_BUFFERS.keep_at_least(options.block_target_bytes);
        Ok(TracesStore {
            dir: dir.to_path_buf(),
            options,
            heads: RwLock::new(HashMap::new()),
            files: RwLock::new(files),
            flushed_seq_end: Mutex::new(flushed),
            next_seq: AtomicU64::new(next_seq),
            wal: OnceLock::new(),
            maintenance_lock: Mutex::new(()),
            totals: Mutex::new(TracesAppendCounts::default()),
            counters,
        })
    }

    /// Starts accepting appends, which go to `wal`. Called once replay is over.
    pub fn attach_wal(&self, wal: Arc<Wal>) {
        let _ = self.wal.set(wal);
    }

    fn flushed_below(&self, tenant: &str) -> u64 {
        self.flushed_seq_end.lock().unwrap_or_else(|poison| poison.into_inner()).get(tenant).copied().unwrap_or(0)
    }

    fn head(&self, tenant: &str) -> Option<Arc<TenantHead>> {
        read(&self.heads).get(tenant).cloned()
    }

    fn head_or_create(&self, tenant: &str) -> Arc<TenantHead> {
        if let Some(head) = self.head(tenant) {
            return head;
        }
        write(&self.heads)
            .entry(Arc::from(tenant))
            .or_insert_with(|| Arc::new(TenantHead::new(Arc::from(tenant))))
            .clone()
    }

    fn all_heads(&self) -> Vec<Arc<TenantHead>> {
        let mut heads: Vec<Arc<TenantHead>> = read(&self.heads).values().cloned().collect();
        heads.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        heads
    }

    /// The tenant's block files, oldest first.
    fn tenant_files(&self, tenant: &str) -> Vec<Arc<BlockFile>> {
        read(&self.files).iter().filter(|file| file.tenant == tenant).cloned().collect()
    }

    // -----------------------------------------------------------------------------------------
    // Replay

    /// Applies one WAL record of a traces kind. Everything the WAL holds was acknowledged, so
    /// every record is taken, except those whose spans are already in blocks.
    pub fn replay_record(&self, kind: RecordKind, payload: &[u8]) {
        let Some(layout) = Layout::of_kind(kind) else {
            self.counters.replay_malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut locations = Vec::new();
        let Ok(RecordHeader { seq, tenant, strings }) =
            records::walk_record(payload, layout, |location| locations.push(location))
        else {
            self.counters.replay_malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.next_seq.fetch_max(seq + 1, Ordering::Relaxed);
        if seq < self.flushed_below(tenant) {
            self.counters.replay_already_flushed.fetch_add(locations.len() as u64, Ordering::Relaxed);
            return;
        }
        let head = self.head_or_create(tenant);
        let now_ns = self.options.clock.now_ns();
        head.write().insert(
            HeadRecord { seq, wal_segment: 0, bytes: RECORD_BUFFERS.copy_of(&[payload]), strings },
            &locations,
            now_ns,
            self.options.head_segment_bytes.max(1),
        );
    }

    /// For a WAL checkpoint: what to keep of a traces record. `None` drops it: its spans are
    /// in blocks (or the record is unreadable).
    pub fn checkpoint_record(&self, kind: RecordKind, payload: &[u8]) -> Option<Vec<u8>> {
        if Layout::of_kind(kind).is_none() {
            return Some(payload.to_vec());
        }
        let (seq, tenant) = records::decode_header(payload).ok()?;
        (seq >= self.flushed_below(tenant)).then(|| payload.to_vec())
    }

    // -----------------------------------------------------------------------------------------
    // Append

    fn append_batch(&self, tenant: &str, batch: &[ResourceSpans]) -> Result<TracesAppendCounts, TracesError> {
        let wal =
            self.wal.get().ok_or(TracesError::NotWritable("the write-ahead log is still being replayed"))?.clone();
        let head = self.head_or_create(tenant);
        let mut guard = head.lock_appends();
        let scratch = &mut *guard;
        scratch.keep.clear();
        scratch.batch_spans.clear();
        let mut counts = TracesAppendCounts::default();

        // 1. Judge every span: invalid ones and those the head (or the batch) already holds
        //    are not stored.
        {
            let state = head.read();
            for resource in batch {
                let resource_ok = attributes_depth_ok(&resource.resource.attributes);
                for scope in &resource.scope_spans {
                    let scope_ok = resource_ok && attributes_depth_ok(&scope.scope.attributes);
                    for span in &scope.spans {
                        if !scope_ok || !span_valid(span) {
                            counts.invalid += 1;
                            scratch.keep.push(false);
                        } else if !scratch.batch_spans.insert((span.trace_id, span.span_id))
                            || state.contains(&span.trace_id, &span.span_id)
                        {
                            counts.duplicates += 1;
                            scratch.keep.push(false);
                        } else {
                            counts.appended += 1;
                            scratch.keep.push(true);
                        }
                    }
                }
            }
        }

        // 2. Log and apply.
        if counts.appended > 0 {
            // Every span kept passed the checks the writer makes.
            let (record, buffer) =
                SpansRecord::from_kept(tenant, batch, &scratch.keep, std::mem::take(&mut scratch.record));
            scratch.record = buffer;
            let mut record = record.ok_or_else(|| TracesError::Corrupt {
                file: "spans record".to_string(),
                problem: "the writer refused spans the append accepted".to_string(),
            })?;
            let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
            record.set_seq(seq);
            let position = wal.append_one(record_kinds::TRACES_SPANS, &record.bytes)?;
            let SpansRecord { bytes, table, locations } = record;
            let record = HeadRecord { seq, wal_segment: position.segment, bytes, strings: Some(table) };
            let now_ns = self.options.clock.now_ns();
            counts.traces_created =
                head.write().insert(record, &locations, now_ns, self.options.head_segment_bytes.max(1));
        }
        scratch.release_if_large();
        drop(guard);
        self.totals.lock().unwrap_or_else(|poison| poison.into_inner()).add(&counts);
        Ok(counts)
    }

    /// Appends a record a producer built: the spans the head (or the record) already holds
    /// are counted as duplicates and the record is written again without them (rare: a
    /// client's retry); otherwise it goes to the WAL and the head as it is, not copied.
    fn append_built(&self, mut record: SpansRecord) -> Result<TracesAppendCounts, TracesError> {
        if record.locations.is_empty() {
            return Ok(TracesAppendCounts::default());
        }
        let wal =
            self.wal.get().ok_or(TracesError::NotWritable("the write-ahead log is still being replayed"))?.clone();
        let tenant = record.tenant().to_string();
        let head = self.head_or_create(&tenant);
        let mut guard = head.lock_appends();
        let scratch = &mut *guard;
        scratch.batch_spans.clear();
        let duplicates = {
            let state = head.read();
            record
                .locations
                .iter()
                .filter(|location| {
                    !scratch.batch_spans.insert((location.trace_id, location.span_id))
                        || state.contains(&location.trace_id, &location.span_id)
                })
                .count()
        };
        if duplicates > 0 {
            drop(guard);
            let batch = record.to_batch().map_err(|_| TracesError::Corrupt {
                file: "spans record".to_string(),
                problem: "a record built for an append does not read back".to_string(),
            })?;
            return self.append_batch(&tenant, &batch);
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        record.set_seq(seq);
        let position = wal.append_one(record_kinds::TRACES_SPANS, &record.bytes)?;
        let counts = TracesAppendCounts { appended: record.locations.len() as u64, ..TracesAppendCounts::default() };
        let SpansRecord { mut bytes, table, locations } = record;
        // The producer sized the buffer from the request; a head keeps records until the cut.
        if bytes.capacity() > bytes.len() + bytes.len() / 4 {
            bytes = bytes.as_slice().to_vec();
        }
        let now_ns = self.options.clock.now_ns();
        let traces_created = head.write().insert(
            HeadRecord { seq, wal_segment: position.segment, bytes, strings: Some(table) },
            &locations,
            now_ns,
            self.options.head_segment_bytes.max(1),
        );
        drop(guard);
        let counts = TracesAppendCounts { traces_created, ..counts };
        self.totals.lock().unwrap_or_else(|poison| poison.into_inner()).add(&counts);
        Ok(counts)
    }

    // -----------------------------------------------------------------------------------------
    // Reading

    /// The head's references to a trace's spans: heads being cut first, then the live head.
    fn head_spans(&self, tenant: &str, trace_id: &TraceId) -> Vec<SpanRef> {
        let Some(head) = self.head(tenant) else { return Vec::new() };
        let state = head.read();
        let mut out = Vec::new();
        for cutting in head.cutting() {
            out.extend(cutting.traces.get(trace_id).into_iter().flatten().cloned());
        }
        out.extend(state.traces.get(trace_id).into_iter().flatten().cloned());
        out
    }

    /// Every stored span of a trace, in (start, span ID) order: blocks oldest first, then the
    /// head (the first copy of a span ID wins). `known` holds the trace's spans of one block
    /// already read (by a search), so that block is not read again.
    fn collect_trace(
        &self,
        tenant: &str,
        trace_id: &TraceId,
        mut known: Option<(&str, Vec<StoredSpan>)>,
    ) -> Result<Vec<StoredSpan>, TracesError> {
        // The head before the files: see the module rules.
        let head_spans = self.head_spans(tenant, trace_id);
        let files = self.tenant_files(tenant);
        let mut collector = TraceCollector::default();
        FRAME_BUFFERS.with(|cell| {
            // Buffers of this thread, or new ones if they are in use further up the stack.
            let mut own = FrameBuffers::default();
            let mut borrowed = cell.try_borrow_mut();
            let buffers = match borrowed.as_deref_mut() {
                Ok(buffers) => buffers,
                Err(_) => &mut own,
            };
            for block in &files {
                if known.as_ref().is_some_and(|(id, _)| *id == block.id)
                    && let Some((_, spans)) = known.take()
                {
                    for stored in spans {
                        collector.add(stored);
                    }
                    continue;
                }
                trace_from_block(block, trace_id, buffers, &mut collector)?;
            }
            buffers.release_if_large();
            Ok::<(), TracesError>(())
        })?;
        let mut contexts = RecordContexts::default();
        for span in &head_spans {
            collector.add(contexts.resolve(span).map_err(head_corrupt)?);
        }
        Ok(collector.into_sorted())
    }

    /// The head segments of a tenant, newest first, each with whether it is frozen.
    fn head_segments(&self, tenant: &str) -> Vec<(Arc<HeadSegment>, bool)> {
        let Some(head) = self.head(tenant) else { return Vec::new() };
        let state = head.read();
        let mut out = vec![(Arc::new(state.open.snapshot()), false)];
        out.extend(state.frozen.iter().rev().map(|segment| (segment.clone(), true)));
        for cutting in head.cutting().iter().rev() {
            out.push((Arc::new(cutting.open.snapshot()), true));
            out.extend(cutting.frozen.iter().rev().map(|segment| (segment.clone(), true)));
        }
        out
    }

    fn search_traces(
        &self,
        tenant: &str,
        filter: &SpanFilter,
        range: NsRange,
        limit: usize,
    ) -> Result<SearchResult, TracesError> {
        let conditions = &filter.conditions;
        let mut stats = SearchStats::default();
        let mut found: Vec<TraceId> = Vec::new();
        let mut seen: HashSet<TraceId> = HashSet::new();
        // Spans of found traces read from a block page, by trace: the block and the spans.
        let mut from_pages: HashMap<TraceId, (String, Vec<StoredSpan>)> = HashMap::new();
        let wanted = limit.saturating_add(1);
        let max_values = self.options.max_values_per_key;

        // The head (newest data first), then the blocks newest first.
        let segments = self.head_segments(tenant);
        let files = self.tenant_files(tenant);
        'scan: {
            for (segment, frozen) in &segments {
                if found.len() >= wanted {
                    break 'scan;
                }
                if !segment.overlaps(range) {
                    continue;
                }
                if *frozen {
                    let mut index = segment.index.lock().unwrap_or_else(|poison| poison.into_inner());
                    let (bounds, values) = index.catch_up(&segment.records, max_values).map_err(head_corrupt)?;
                    if !bounds.may_match(conditions) || !values.may_match(conditions) {
                        continue;
                    }
                }
                let mut traces_seen = HashSet::new();
                for_each_span(&segment.records, |stored| {
                    stats.inspected_spans += 1;
                    traces_seen.insert(stored.span.trace_id);
                    if span_overlaps(&stored.span, range)
                        && span_matches(conditions, &stored.resource.resource, &stored.span)
                        && seen.insert(stored.span.trace_id)
                    {
                        found.push(stored.span.trace_id);
                    }
                })
                .map_err(head_corrupt)?;
                stats.inspected_traces += traces_seen.len() as u64;
                stats.inspected_bytes += segment.bytes;
            }
            let (mut header_raw, mut group_raw) = (Vec::new(), Vec::new());
            for block in files.iter().rev() {
                if !block.bounds.overlaps(range) {
                    continue;
                }
                stats.blocks_total += 1;
                if !block.bounds.may_match(conditions) || !block.index.may_match(conditions) {
                    stats.blocks_skipped += 1;
                    continue;
                }
                let mut read_any = false;
                for (page_index, page) in block.pages.iter().enumerate() {
                    if found.len() >= wanted {
                        break 'scan;
                    }
                    let page_index = page_index as u32;
                    if !page.bounds.overlaps(range)
                        || !page.bounds.may_match(conditions)
                        || !block.page_bloom_may_match(page_index, conditions)?
                    {
                        stats.pages_skipped += 1;
                        continue;
                    }
                    read_any = true;
                    let page = block.page(page_index)?;
                    page.read(0, &mut header_raw)?;
                    let header = PageHeader::parse(&header_raw).map_err(|problem| page.damaged(problem))?;
                    if page.frame_count() != header.groups.len() + 1 {
                        return Err(page.damaged("the frames do not match the groups".into()));
                    }
                    stats.pages_read += 1;
                    stats.inspected_bytes += header_raw.len() as u64;
                    let mut contexts = PageContexts::default();
                    // Per resource of the page: whether it satisfies each condition's resource side.
                    let mut resource_sides: HashMap<u32, Vec<bool>> = HashMap::new();
                    for group in 0..header.groups.len() {
                        if found.len() >= wanted {
                            break 'scan;
                        }
                        page.read(group + 1, &mut group_raw)?;
                        let decoded = DecodedGroup::parse(&header, group, &group_raw, GroupSelection::All)
                            .map_err(|problem| page.damaged(problem))?
                            .ok_or_else(|| page.damaged("a group did not decode".into()))?;
                        stats.inspected_bytes += group_raw.len() as u64;
                        stats.inspected_traces += decoded.traces.len() as u64;
                        for trace_index in 0..decoded.traces.len() {
                            let trace = decoded.traces[trace_index];
                            if seen.contains(&trace.trace_id) {
                                continue;
                            }
                            stats.inspected_spans += u64::from(trace.span_count);
                            // Spans are checked where they lie; only a matching trace is
                            // materialised.
                            let mut matches = false;
                            for row in trace.first_span..trace.first_span + trace.span_count {
                                let (resource, low, high) = decoded.span_resource_and_extent(row as usize);
                                if !range.overlaps(low, high) {
                                    continue;
                                }
                                let sides = match resource_sides.entry(resource) {
                                    std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                                    std::collections::hash_map::Entry::Vacant(entry) => {
                                        let info = contexts
                                            .resource(&header, resource)
                                            .map_err(|problem| page.damaged(problem))?;
                                        entry.insert(
                                            conditions
                                                .iter()
                                                .map(|condition| resource_side_holds(condition, &info.resource))
                                                .collect(),
                                        )
                                    }
                                };
                                if decoded
                                    .span_satisfies(row as usize, conditions, sides)
                                    .map_err(|problem| page.damaged(problem))?
                                {
                                    matches = true;
                                    break;
                                }
                            }
                            if matches && found.len() < wanted {
                                let spans = decoded
                                    .trace_spans(trace_index, &mut contexts)
                                    .map_err(|problem| page.damaged(problem))?;
                                seen.insert(trace.trace_id);
                                found.push(trace.trace_id);
                                from_pages.insert(trace.trace_id, (block.id.clone(), spans));
                            }
                        }
                    }
                }
                if !read_any {
                    stats.blocks_skipped += 1;
                }
            }
        }
        self.counters.blocks_searched.fetch_add(stats.blocks_total - stats.blocks_skipped, Ordering::Relaxed);
        self.counters.blocks_skipped.fetch_add(stats.blocks_skipped, Ordering::Relaxed);
        self.counters.pages_read.fetch_add(stats.pages_read, Ordering::Relaxed);
        self.counters.pages_skipped.fetch_add(stats.pages_skipped, Ordering::Relaxed);

        let complete = found.len() <= limit;
        found.truncate(limit);
        let mut traces = Vec::with_capacity(found.len());
        for trace_id in found {
            let spans = match from_pages.remove(&trace_id) {
                Some((block_id, spans)) => self.collect_trace(tenant, &trace_id, Some((&block_id, spans)))?,
                None => self.collect_trace(tenant, &trace_id, None)?,
            };
            let matched: Vec<_> = spans
                .iter()
                .filter(|stored| {
                    span_overlaps(&stored.span, range)
                        && span_matches(conditions, &stored.resource.resource, &stored.span)
                })
                .map(|stored| stored.span.span_id)
                .collect();
            if matched.is_empty() {
                continue;
            }
            traces.push(assemble::search_trace(trace_id, spans, matched));
        }
        traces.sort_by(|a, b| b.start_ns.cmp(&a.start_ns).then(a.trace_id.cmp(&b.trace_id)));
        Ok(SearchResult { traces, complete, stats })
    }

    /// Calls `each` with the bounds and value index of every head segment and block of the
    /// tenant that overlaps `range`.
    fn for_each_index(
        &self,
        tenant: &str,
        range: NsRange,
        mut each: impl FnMut(&Bounds, &super::index::ValueIndex),
    ) -> Result<(), TracesError> {
        let segments = self.head_segments(tenant);
        let files = self.tenant_files(tenant);
        for (segment, _) in &segments {
            if !segment.overlaps(range) {
                continue;
            }
            let mut index = segment.index.lock().unwrap_or_else(|poison| poison.into_inner());
            let (bounds, values) =
                index.catch_up(&segment.records, self.options.max_values_per_key).map_err(head_corrupt)?;
            each(bounds, values);
        }
        for block in &files {
            if block.bounds.overlaps(range) {
                each(&block.bounds, &block.index);
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Maintenance

    /// Cuts full and old heads into blocks, compacts small blocks, applies retention.
    /// Blocking: run it off the async runtime.
    pub fn maintenance(&self) -> Result<TracesMaintenanceOutcome, TracesError> {
        let _serial = self.maintenance_lock.lock().unwrap_or_else(|poison| poison.into_inner());
        let now_ns = self.options.clock.now_ns();
        let mut outcome = TracesMaintenanceOutcome { blocks_cut: self.cut(now_ns, false)?, ..Default::default() };
        // Spans stopped arriving: the buffers kept for the next records go back.
        RECORD_BUFFERS.release_if_unused(RECORD_BUFFERS_QUIET);
        outcome.compactions = self.compact()?;
        outcome.blocks_deleted = self.apply_retention(now_ns)?;
        outcome.checkpoint_wanted = self.counters.cut_bytes_since_checkpoint.load(Ordering::Relaxed)
            >= self.options.checkpoint_after_cut_bytes.max(1);
        Ok(outcome)
    }

    /// Cuts every head into a block, whatever its size or age (for shutdown and tests).
    /// Returns the number of blocks written.
    pub fn flush_all(&self) -> Result<u64, TracesError> {
        let _serial = self.maintenance_lock.lock().unwrap_or_else(|poison| poison.into_inner());
        self.cut(self.options.clock.now_ns(), true)
    }

    /// The oldest WAL segment a head still needs (the segment of its first record); `None`
    /// when every head is empty. Segments before it hold no traces record to keep, so a
    /// checkpoint that ends there copies none.
    pub fn oldest_needed_wal_segment(&self) -> Option<u32> {
        let mut oldest: Option<u32> = None;
        for head in self.all_heads() {
            let live = head.read().first_wal_segment;
            let cutting = head.cutting().iter().filter_map(|taken| taken.first_wal_segment).min();
            for segment in [live, cutting].into_iter().flatten() {
                oldest = Some(oldest.map_or(segment, |current| current.min(segment)));
            }
        }
        oldest
    }

    /// Called once a WAL checkpoint has dropped what blocks hold.
    pub fn note_checkpoint(&self) {
        self.counters.cut_bytes_since_checkpoint.store(0, Ordering::Relaxed);
    }

    fn cut(&self, now_ns: i64, everything: bool) -> Result<u64, TracesError> {
        let mut cut = 0;
        for head in self.all_heads() {
            let due = {
                let state = head.read();
                !state.is_empty()
                    && (everything
                        || state.bytes >= self.options.block_target_bytes
                        || state
                            .first_append_ns
                            .is_some_and(|first| now_ns.saturating_sub(first) >= self.options.max_head_age_ns))
            };
            if due && self.cut_tenant(&head)? {
                cut += 1;
            }
        }
        Ok(cut)
    }

    /// Writes a tenant's whole head into a block and lets it go once the block is in place.
    fn cut_tenant(&self, head: &TenantHead) -> Result<bool, TracesError> {
        let started = Instant::now();
        let taken = {
            let _appends = head.lock_appends();
            match head.take_for_cut() {
                Some(taken) => taken,
                None => return Ok(false),
            }
        };
        let mut traces: Vec<(&TraceId, &Vec<SpanRef>)> = taken.traces.iter().collect();
        traces.sort_unstable_by_key(|(trace_id, _)| **trace_id);
        let written = self.write_block(&head.tenant, 1, Vec::new(), taken.seq_end, |builder| {
            // Spans go from the head's records to the pages without being copied out. Going
            // in trace order jumps around the head's records, so the spans a few traces ahead
            // are asked into the caches first (and the lists of spans of traces further on).
            let mut contexts = RecordContexts::default();
            let mut parts = Vec::new();
            for (at, (trace_id, spans)) in traces.iter().enumerate() {
                if let Some((_, further)) = traces.get(at + 2 * CUT_LOOKAHEAD_TRACES) {
                    prefetch_lines(further.as_slice(), 2);
                }
                if let Some((_, ahead)) = traces.get(at + CUT_LOOKAHEAD_TRACES) {
                    let mut previous: Option<&Arc<HeadRecord>> = None;
                    for span in ahead.iter() {
                        let record = &span.record;
                        let bytes = record.bytes.get(span.span_offset as usize..).unwrap_or_default();
                        prefetch_lines(bytes, SPAN_PREFETCH_LINES);
                        // The spans of a trace mostly share a record, and its string table.
                        if !previous.is_some_and(|previous| Arc::ptr_eq(previous, record))
                            && let Some(strings) = &record.strings
                        {
                            strings.prefetch(&record.bytes, TABLE_PREFETCH_LINES);
                        }
                        previous = Some(record);
                    }
                }
                parts.clear();
                for span in spans.iter() {
                    let (resource, scope) = contexts
                        .contexts(&span.record, span.resource_offset, span.scope_offset)
                        .map_err(head_corrupt)?;
                    let view = span.record.span_at(span.span_offset).map_err(head_corrupt)?;
                    parts.push((resource, scope, view));
                }
                parts.sort_by_key(|(_, _, view)| (view.head.start_ns, view.head.span_id));
                let inputs = parts
                    .iter()
                    .map(|(resource, scope, view)| SpanInput::from_view(*view, resource, scope))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(head_corrupt)?;
                builder.add_trace(trace_id, &inputs)?;
            }
            Ok(())
        });
        let block = match written {
            Ok(Some(block)) => block,
            Ok(None) => {
                head.cut_done(&taken);
                return Ok(false);
            }
            Err(error) => {
                // The spans stay in the head (and the WAL); the next pass tries again.
                head.restore(&taken);
                return Err(error);
            }
        };
        let (block_id, spans, bytes) = (block.id.clone(), block.bounds.spans, block.size_bytes);
        self.install(vec![block], &[]);
        head.cut_done(&taken);
        self.counters.blocks_cut.fetch_add(1, Ordering::Relaxed);
        self.counters.cut_bytes_since_checkpoint.fetch_add(taken.bytes, Ordering::Relaxed);
        tracing::info!(
            tenant = %head.tenant,
            file = %block_id,
            spans,
            traces = taken.traces.len(),
            head_bytes = taken.bytes,
            file_bytes = bytes,
            duration_ms = started.elapsed().as_millis() as u64,
            "traces head cut into a block"
        );
        Ok(true)
    }

    /// Adds new blocks and removes replaced ones from the file list at once; raises the
    /// tenants' flushed sequence numbers.
    fn install(&self, added: Vec<Arc<BlockFile>>, removed: &[String]) {
        {
            let mut flushed = self.flushed_seq_end.lock().unwrap_or_else(|poison| poison.into_inner());
            for block in &added {
                let entry = flushed.entry(block.tenant.clone()).or_default();
                *entry = (*entry).max(block.seq_end);
            }
        }
        let mut files = write(&self.files);
        files.retain(|file| !removed.contains(&file.id));
        files.extend(added);
        files.sort_by(|a, b| a.id.cmp(&b.id));
    }

    /// Writes a block of the traces `feed` adds (ascending IDs, spans sorted, one copy each).
    fn write_block(
        &self,
        tenant: &str,
        level: u32,
        sources: Vec<String>,
        seq_end: u64,
        feed: impl FnOnce(&mut BlockBuilder<'_>) -> Result<(), TracesError>,
    ) -> Result<Option<Arc<BlockFile>>, TracesError> {
        let mut writer = BlockWriter::create(&self.dir, tenant, level, sources, self.options.codec)?;
        let mut builder = BlockBuilder {
            writer: &mut writer,
            index: IndexBuilder::new(self.options.max_values_per_key),
            encoder: PageEncoder::new(self.options.group_target_bytes),
            page_target_bytes: self.options.page_target_bytes,
        };
        let filled = feed(&mut builder).and_then(|()| builder.finish_page());
        let index = builder.index;
        match filled {
            Ok(()) => {
                let (bounds, values) = index.finish();
                Ok(writer.finish(seq_end, &bounds, &values)?.map(Arc::new))
            }
            Err(error) => {
                writer.abandon();
                Err(error)
            }
        }
    }

    /// Merges small blocks of one tenant that end in the same window, once there are enough.
    fn compact(&self) -> Result<u64, TracesError> {
        let window = self.options.compaction_window_ns.max(1);
        let mut groups: BTreeMap<(String, i64), Vec<Arc<BlockFile>>> = BTreeMap::new();
        for block in read(&self.files).iter() {
            if block.size_bytes < self.options.compaction_small_file_bytes {
                groups
                    .entry((block.tenant.clone(), block.bounds.max_time_ns.div_euclid(window)))
                    .or_default()
                    .push(block.clone());
            }
        }
        let mut compactions = 0;
        for ((tenant, _), inputs) in groups {
            if inputs.len() < self.options.compaction_min_files.max(2) {
                continue;
            }
            let started = Instant::now();
            self.merge_blocks(&tenant, &inputs)?;
            compactions += 1;
            tracing::info!(
                tenant = %tenant,
                inputs = inputs.len(),
                duration_ms = started.elapsed().as_millis() as u64,
                "trace blocks compacted"
            );
        }
        self.counters.compactions.fetch_add(compactions, Ordering::Relaxed);
        Ok(compactions)
    }

    /// Writes the traces of `inputs` (oldest first) into one block, merging each trace's spans
    /// (one copy per span ID), swaps it in and deletes the inputs.
    fn merge_blocks(&self, tenant: &str, inputs: &[Arc<BlockFile>]) -> Result<(), TracesError> {
        let level = inputs.iter().map(|block| block.level).max().unwrap_or(1) + 1;
        let sources: Vec<String> = inputs.iter().map(|block| block.id.clone()).collect();
        let seq_end = inputs.iter().map(|block| block.seq_end).max().unwrap_or(0);
        let mut streams: Vec<BlockStream<'_>> = inputs
            .iter()
            .map(|block| BlockStream {
                file: block,
                next_page: 0,
                queue: VecDeque::new(),
                header_raw: Vec::new(),
                group_raw: Vec::new(),
            })
            .collect();
        let output = self.write_block(tenant, level, sources.clone(), seq_end, |builder| {
            loop {
                let mut smallest: Option<TraceId> = None;
                for stream in &mut streams {
                    if let Some(trace_id) = stream.front()? {
                        smallest = Some(smallest.map_or(trace_id, |current| current.min(trace_id)));
                    }
                }
                let Some(trace_id) = smallest else { return Ok(()) };
                let mut collector = TraceCollector::default();
                for stream in &mut streams {
                    if stream.queue.front().is_some_and(|(front, _)| *front == trace_id)
                        && let Some((_, spans)) = stream.queue.pop_front()
                    {
                        for stored in spans {
                            collector.add(stored);
                        }
                    }
                }
                let spans = collector.into_sorted();
                let inputs: Vec<SpanInput<'_>> = spans.iter().map(SpanInput::from_stored).collect();
                builder.add_trace(&trace_id, &inputs)?;
            }
        })?;
        self.install(output.into_iter().collect(), &sources);
        for input in inputs {
            fs::remove_file(&input.path).map_err(io_error(format!("removing {}", input.path.display())))?;
        }
        file::sync_dir(&self.dir)?;
        Ok(())
    }

    /// The retention period of a tenant; `None`: kept forever.
    pub fn retention_for(&self, tenant: &str) -> Option<i64> {
        self.options.tenant_retention_ns.get(tenant).copied().or(self.options.retention_ns)
    }

    /// Deletes blocks whose every span ended before their tenant's retention period.
    fn apply_retention(&self, now_ns: i64) -> Result<u64, TracesError> {
        let expired: Vec<Arc<BlockFile>> = read(&self.files)
            .iter()
            .filter(|block| {
                self.retention_for(&block.tenant)
                    .is_some_and(|period| block.bounds.max_time_ns < now_ns.saturating_sub(period))
            })
            .cloned()
            .collect();
        if expired.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = expired.iter().map(|block| block.id.clone()).collect();
        self.install(Vec::new(), &ids);
        for block in &expired {
            fs::remove_file(&block.path).map_err(io_error(format!("removing {}", block.path.display())))?;
            tracing::info!(tenant = %block.tenant, file = %block.id, "trace block deleted by retention");
        }
        file::sync_dir(&self.dir)?;
        self.counters.blocks_deleted.fetch_add(expired.len() as u64, Ordering::Relaxed);
        Ok(expired.len() as u64)
    }

    // -----------------------------------------------------------------------------------------
    // Figures

    /// Figures about the whole store, for self-metrics.
    pub fn store_stats(&self) -> TracesStats {
        let mut stats = TracesStats::default();
        for head in self.all_heads() {
            let state = head.read();
            stats.head_spans += state.spans;
            stats.head_traces += state.traces.len() as u64;
            stats.head_bytes += state.bytes;
        }
        for block in read(&self.files).iter() {
            stats.blocks += 1;
            stats.block_bytes += block.size_bytes;
            stats.block_spans += block.bounds.spans;
            stats.block_traces += block.trace_count;
        }
        stats.appended = *self.totals.lock().unwrap_or_else(|poison| poison.into_inner());
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        stats.blocks_cut = load(&self.counters.blocks_cut);
        stats.compactions = load(&self.counters.compactions);
        stats.blocks_deleted_by_retention = load(&self.counters.blocks_deleted);
        stats.blocks_searched = load(&self.counters.blocks_searched);
        stats.blocks_skipped = load(&self.counters.blocks_skipped);
        stats.pages_read = load(&self.counters.pages_read);
        stats.pages_skipped = load(&self.counters.pages_skipped);
        stats.replay_malformed_records = load(&self.counters.replay_malformed);
        stats.replay_spans_already_flushed = load(&self.counters.replay_already_flushed);
        stats.corrupt_files = load(&self.counters.corrupt_files);
        stats
    }

    /// Paths of the block files, oldest first: for tests and operators.
    pub fn file_paths(&self) -> Vec<PathBuf> {
        read(&self.files).iter().map(|block| block.path.clone()).collect()
    }

    /// Checks every page's and bloom's checksum in every block.
    pub fn verify_files(&self) -> Result<(), TracesError> {
        for block in read(&self.files).iter() {
            block.verify()?;
        }
        Ok(())
    }
}

impl TracesAppender for TracesStore {
    fn append(&self, tenant: &str, batch: &[ResourceSpans]) -> Result<TracesAppendCounts, TracesError> {
        self.append_batch(tenant, batch)
    }

    fn append_record(&self, record: SpansRecord) -> Result<TracesAppendCounts, TracesError> {
        self.append_built(record)
    }
}

impl TracesQueryable for TracesStore {
    /// The hint is not needed: every block's trace-ID bloom is checked (cheap), then only the
    /// blocks that may hold the trace are read.
    fn trace(
        &self,
        tenant: &str,
        trace_id: &TraceId,
        _range_hint: Option<NsRange>,
    ) -> Result<Option<Trace>, TracesError> {
        let spans = self.collect_trace(tenant, trace_id, None)?;
        if spans.is_empty() {
            return Ok(None);
        }
        Ok(Some(assemble::into_trace(*trace_id, spans)))
    }

    fn search(
        &self,
        tenant: &str,
        filter: &SpanFilter,
        range: NsRange,
        limit: usize,
    ) -> Result<SearchResult, TracesError> {
        self.search_traces(tenant, filter, range, limit)
    }

    fn tag_names(
        &self,
        tenant: &str,
        scope: Option<TagScope>,
        range: NsRange,
    ) -> Result<Vec<ScopedTagNames>, TracesError> {
        let scopes: Vec<TagScope> = match scope {
            Some(scope) => vec![scope],
            None => TagScope::ALL.to_vec(),
        };
        let mut names: BTreeMap<TagScope, BTreeSet<String>> = BTreeMap::new();
        let mut buffer = Vec::new();
        self.for_each_index(tenant, range, |bounds, values| {
            for scope in &scopes {
                buffer.clear();
                values.names(*scope, bounds, &mut buffer);
                names.entry(*scope).or_default().extend(buffer.drain(..));
            }
        })?;
        Ok(names
            .into_iter()
            .filter(|(_, names)| !names.is_empty())
            .map(|(scope, names)| ScopedTagNames { scope, names: names.into_iter().collect() })
            .collect())
    }

    fn tag_values(
        &self,
        tenant: &str,
        tag: &TagRef,
        range: NsRange,
        limit: usize,
    ) -> Result<Vec<TagValue>, TracesError> {
        let mut values = Vec::new();
        self.for_each_index(tenant, range, |bounds, index| index.values(tag.scope, &tag.name, bounds, &mut values))?;
        values.sort_by(|a, b| a.total_cmp(b));
        values.dedup_by(|a, b| a.total_cmp(b).is_eq());
        values.truncate(limit);
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traces::records::tests::{full_span, inline_record};
    use crate::traces::{Resource, ScopeSpans};
    use crate::wal::{SyncPolicy, WalOptions};
    use crate::{Storage, StorageOptions};

    #[test]
    fn records_of_the_inline_layout_replay_beside_tabled_ones() {
        let dir = tempfile::tempdir().unwrap();
        let options = || StorageOptions {
            wal: WalOptions { sync: SyncPolicy::Never, ..WalOptions::default() },
            ..StorageOptions::default()
        };
        let batch = |trace: u8| {
            vec![ResourceSpans {
                resource: Resource {
                    attributes: vec![("service.name".into(), AttrValue::String("api".into()))],
                    dropped_attributes_count: 0,
                },
                schema_url: String::new(),
                scope_spans: vec![ScopeSpans {
                    spans: vec![full_span(trace, 1, None), full_span(trace, 2, Some(1))],
                    ..ScopeSpans::default()
                }],
            }]
        };
        {
            // A WAL as an older version left it, then an append of this one.
            let (wal, _) = Wal::open(&dir.path().join("wal"), options().wal, |_, _| {}).unwrap();
            wal.append_one(record_kinds::TRACES_SPANS_INLINE, &inline_record(0, "t", &batch(1))).unwrap();
            wal.close().unwrap();
            let storage = Storage::open(dir.path(), options()).unwrap();
            storage.traces().append("t", &batch(2)).unwrap();
            storage.close().unwrap();
        }
        let storage = Storage::open(dir.path(), options()).unwrap();
        let stats = storage.traces().store_stats();
        assert_eq!(stats.replay_malformed_records, 0);
        for trace in [1, 2] {
            let found = storage.traces().trace("t", &[trace; 16], None).unwrap().expect("the trace is replayed");
            let spans: Vec<&Span> =
                found.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans).collect();
            let mut expected = full_span(trace, 1, None);
            expected.attributes.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(spans.len(), 2);
            assert_eq!(spans[0], &expected);
        }
        // The next append is numbered after both.
        storage.traces().append("t", &batch(3)).unwrap();
        assert!(storage.traces().trace("t", &[3; 16], None).unwrap().is_some());
    }
}
