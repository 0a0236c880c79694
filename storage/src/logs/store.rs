//! [`LogsStore`]: the head, the files and the catalog behind the [`LogsAppender`] and
//! [`LogsQueryable`] seams, plus maintenance: flushing chunks to files, compacting small files,
//! applying retention, and deciding what a WAL checkpoint keeps.
//!
//! Rules the store keeps:
//! - Appends are serialised by `append_lock`, so the order of records in the WAL is the order
//!   in which the head applied them, and replay rebuilds the same head.
//! - An entry is in the WAL before it is in the head, and in the head before `append` returns.
//! - Every stored entry has a per-stream sequence number. A file records, per stream, the
//!   sequence number below which everything was flushed; replay skips WAL entries below it
//!   and a checkpoint drops them, so nothing is counted twice.
//! - Flushing, compaction and retention happen in `maintenance`, never on the append path.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard, mpsc};
use std::time::Instant;

use super::block::{CODEC_NONE, CODEC_ZSTD, LogsCodec, SealedBlock, compress_block, decompress, for_each_line};
use super::bloom::BloomBuilder;
use super::catalog::{Catalog, CatalogStream};
use super::cursor::{MergeCursor, ReadCounters, Source, SourceKind};
use super::file::{self, BlockToWrite, BloomToWrite, FileChunkRef, FileWriter, LogFile};
use super::head::{DecodedCache, HeadChunk, HeadStream, MetadataSource, SealPolicy};
use super::records::{self, EntriesWriter};
use super::{
    LineFilter, LogAppendCounts, LogSelection, LogStats, LogsAppender, LogsError, LogsQueryable, NsRange, StreamCursor,
    StreamEntries,
};
use crate::labels::{Labels, Matcher, matches_all};
use crate::record_kinds;
use crate::wal::{RecordKind, Wal};

const SECOND_NS: i64 = 1_000_000_000;
const HOUR_NS: i64 = 3_600 * SECOND_NS;

/// Where the store reads the current time, in nanoseconds since the Unix epoch: for chunk
/// ages, idle periods and retention. Tests inject a fixed clock.
#[derive(Clone)]
pub struct LogsClock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl LogsClock {
    /// The system clock.
    pub fn system() -> LogsClock {
        LogsClock(Arc::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX))
                .unwrap_or(0)
        }))
    }

    /// A clock that answers whatever `now_ns` returns.
    pub fn from_fn(now_ns: impl Fn() -> i64 + Send + Sync + 'static) -> LogsClock {
        LogsClock(Arc::new(now_ns))
    }

    pub fn now_ns(&self) -> i64 {
        (self.0)()
    }
}

impl Default for LogsClock {
    fn default() -> Self {
        LogsClock::system()
    }
}

impl fmt::Debug for LogsClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LogsClock")
    }
}

/// A retention period for the streams a selector matches (optionally of one tenant).
#[derive(Debug, Clone)]
pub struct StreamRetention {
    /// The tenant the rule applies to; `None`: every tenant.
    pub tenant: Option<String>,
    /// Streams matching all of these.
    pub matchers: Vec<Matcher>,
    pub period_ns: i64,
}

/// How the logs store behaves.
#[derive(Debug, Clone)]
pub struct LogsOptions {
    /// A block is sealed (sorted, and compressed with `head_codec`) once its entries reach this
    /// size.
    pub block_target_bytes: usize,
    /// A chunk is closed, to be flushed, once its blocks hold this many encoded bytes.
    pub chunk_target_bytes: u64,
    /// A chunk is flushed once its first entry was appended this long ago.
    pub max_chunk_age_ns: i64,
    /// A chunk is flushed once its stream received nothing for this long.
    pub chunk_idle_period_ns: i64,
    /// Compression of blocks sealed in the head, on the append path. `None` (the default)
    /// leaves compression off the append path: a background thread compresses sealed head
    /// blocks with `codec` whenever `head_raw_bytes_limit` line bytes were appended since it
    /// last did, and maintenance does on every pass. Appends then only copy bytes.
    pub head_codec: LogsCodec,
    /// With `head_codec` `None`: line bytes appended after which the head's raw sealed blocks
    /// are compressed in the background, bounding the raw bytes the head holds between
    /// maintenance passes at about this much.
    pub head_raw_bytes_limit: u64,
    /// Compression of blocks in files and of head blocks compressed by maintenance. Blocks
    /// already compressed in the head are written as they are.
    pub codec: LogsCodec,
    /// Bloom filter size: bits per distinct 4-gram of a chunk's lines. With 3, a gram absent
    /// from the chunk passes by chance about a quarter of the time, so a 6-byte word about 2%
    /// of the time and a 32-digit trace ID practically never.
    pub bloom_bits_per_gram: u32,
    /// Bloom filter cap: at most this many bits per KiB of a chunk's line bytes. 0 writes no
    /// blooms.
    pub bloom_bits_per_kib: u32,
    /// Entries older than this (by the clock) are deleted; `None` keeps everything.
    pub retention_ns: Option<i64>,
    /// Per-tenant retention, overriding `retention_ns`.
    pub tenant_retention_ns: HashMap<String, i64>,
    /// Per-selector retention, overriding both: the rule with the most matchers among those
    /// that match wins, the first listed on a tie.
    pub stream_retention: Vec<StreamRetention>,
    /// Files smaller than this are merged by compaction...
    pub compaction_small_file_bytes: u64,
    /// ...once there are at least this many of them.
    pub compaction_min_files: usize,
    /// A maintenance pass asks for a WAL checkpoint once this many line bytes were flushed
    /// since the last one.
    pub checkpoint_after_flushed_bytes: u64,
    pub clock: LogsClock,
}

impl Default for LogsOptions {
    fn default() -> Self {
        LogsOptions {
            block_target_bytes: 256 << 10,
            chunk_target_bytes: 1536 << 10,
            max_chunk_age_ns: 2 * HOUR_NS,
            chunk_idle_period_ns: HOUR_NS / 2,
            // Measured on Loghub-like lines (benches/README.md): compressing on the append path
            // took most of its time; level 3 gains nothing over level 1 there and compresses at
            // half the speed.
            head_codec: LogsCodec::None,
            head_raw_bytes_limit: 64 << 20,
            codec: LogsCodec::Zstd { level: 1 },
            bloom_bits_per_gram: 3,
            bloom_bits_per_kib: 256,
            retention_ns: Some(744 * HOUR_NS),
            tenant_retention_ns: HashMap::new(),
            stream_retention: Vec::new(),
            compaction_small_file_bytes: 64 << 20,
            compaction_min_files: 4,
            checkpoint_after_flushed_bytes: 64 << 20,
            clock: LogsClock::system(),
        }
    }
}

/// Figures for self-metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogsStats {
    /// Streams with a head (Loki's `loki_ingester_streams`).
    pub streams: u64,
    /// Chunks in memory (Loki's `loki_ingester_memory_chunks`).
    pub memory_chunks: u64,
    pub head_entries: u64,
    /// Line bytes held in the head.
    pub head_line_bytes: u64,
    /// Bytes the head's blocks and arenas take.
    pub head_memory_bytes: u64,
    pub files: u64,
    pub file_bytes: u64,
    pub file_chunks: u64,
    pub file_entries: u64,
    pub file_line_bytes: u64,
    /// Totals since start, per reason.
    pub appended: LogAppendCounts,
    pub chunks_flushed: u64,
    pub files_written: u64,
    pub compactions: u64,
    pub files_deleted_by_retention: u64,
    pub files_rewritten_by_retention: u64,
    /// Sealed head blocks compressed off the append path (by the background thread and by
    /// maintenance).
    pub head_blocks_compressed: u64,
    /// Blocks decompressed by readers, and blocks their bloom filter let them skip.
    pub blocks_read: u64,
    pub blocks_skipped_by_bloom: u64,
    pub replay_malformed_records: u64,
    /// WAL entries found already in files at replay.
    pub replay_entries_already_flushed: u64,
    /// Files found damaged at open and moved aside.
    pub corrupt_files: u64,
}

/// What a maintenance pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogsMaintenanceOutcome {
    pub chunks_flushed: u64,
    pub files_written: u64,
    pub compactions: u64,
    pub files_deleted: u64,
    pub files_rewritten: u64,
    /// Enough was flushed since the last checkpoint that one is worth its cost.
    pub checkpoint_wanted: bool,
}

#[derive(Default)]
struct Counters {
    chunks_flushed: AtomicU64,
    files_written: AtomicU64,
    compactions: AtomicU64,
    files_deleted: AtomicU64,
    files_rewritten: AtomicU64,
    replay_malformed: AtomicU64,
    replay_already_flushed: AtomicU64,
    corrupt_files: AtomicU64,
    flushed_since_checkpoint: AtomicU64,
    /// Line bytes appended since the head's raw blocks were last handed to the compressor.
    raw_since_compression: AtomicU64,
}

/// An accepted entry of the batch being appended: which batch item and which entry.
#[derive(Clone, Copy)]
struct Accepted {
    item: u32,
    entry: u32,
}

/// Buffers an append reuses. Held under `append_lock`.
#[derive(Default)]
struct AppendScratch {
    streams_record: Vec<u8>,
    entries_record: Vec<u8>,
    /// The head stream of each batch item.
    targets: Vec<Arc<HeadStream>>,
    /// Streams created by this batch, by labels.
    new_streams: HashMap<Labels, Arc<HeadStream>>,
    new_order: Vec<Arc<HeadStream>>,
    /// Newest time and next sequence number per stream after the batch's earlier items.
    virtual_state: HashMap<u64, (i64, u64)>,
    accepted: Vec<Accepted>,
    order: Vec<u32>,
    decoded: DecodedCache,
}

impl AppendScratch {
    fn clear(&mut self) {
        self.targets.clear();
        self.new_streams.clear();
        self.new_order.clear();
        self.virtual_state.clear();
        self.accepted.clear();
        self.order.clear();
        self.decoded.clear();
    }

    fn release_if_large(&mut self) {
        if self.accepted.capacity() > 1 << 18 || self.entries_record.capacity() > 64 << 20 {
            *self = AppendScratch::default();
        }
    }
}

pub struct LogsStore {
    /// `data/logs`: the log files.
    dir: PathBuf,
    options: LogsOptions,
    catalog: RwLock<Catalog>,
    /// Head streams by WAL reference (several references may name one stream after replay).
    head_by_ref: RwLock<HashMap<u64, Arc<HeadStream>>>,
    next_ref: AtomicU64,
    /// Open files, oldest first.
    files: RwLock<Vec<Arc<LogFile>>>,
    /// Set once the WAL replay is over; appends before that are refused.
    wal: OnceLock<Arc<Wal>>,
    append_lock: Mutex<AppendScratch>,
    maintenance_lock: Mutex<()>,
    totals: Mutex<LogAppendCounts>,
    counters: Counters,
    read_counters: Arc<ReadCounters>,
    /// Hands head streams to the background compressor; `None` when blocks are compressed on
    /// the append path or not at all.
    compressor: Option<mpsc::SyncSender<Vec<Arc<HeadStream>>>>,
    /// Blocks compressed off the append path, shared with the compressor thread.
    head_blocks_compressed: Arc<AtomicU64>,
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poison| poison.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poison| poison.into_inner())
}

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> LogsError {
    move |source| LogsError::Io { context, source }
}

impl LogsStore {
    /// Opens the store in `dir`: loads its files (a damaged one is moved aside and reported),
    /// removes what an interrupted flush or compaction left. The WAL is replayed into it next,
    /// then attached with [`LogsStore::attach_wal`].
    pub fn open(dir: &Path, options: LogsOptions) -> Result<LogsStore, LogsError> {
        fs::create_dir_all(dir).map_err(io_error(format!("creating {}", dir.display())))?;
        let counters = Counters::default();
        let mut files = Vec::new();
        let entries = fs::read_dir(dir).map_err(io_error(format!("listing {}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(io_error(format!("listing {}", dir.display())))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            if name.ends_with(file::TEMP_SUFFIX) {
                tracing::info!(file = %name, "removing unfinished log file");
                fs::remove_file(&path).map_err(io_error(format!("removing {}", path.display())))?;
                continue;
            }
            if !name.ends_with(file::FILE_SUFFIX) {
                continue;
            }
            match LogFile::open(&path) {
                Ok(file) => files.push(Arc::new(file)),
                Err(LogsError::Corrupt { file, problem }) => {
                    let aside =
                        dir.join(format!("{}{}", name.trim_end_matches(file::FILE_SUFFIX), file::CORRUPT_SUFFIX));
                    tracing::error!(file = %file, problem = %problem, moved_to = %aside.display(), "log file is damaged, not reading it");
                    fs::rename(&path, &aside).map_err(io_error(format!("moving {}", path.display())))?;
                    counters.corrupt_files.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => return Err(error),
            }
        }
        // A compaction or rewrite that crashed after writing its output but before deleting its
        // inputs leaves both: the inputs are named as sources of the output.
        let replaced: BTreeSet<String> = files.iter().flat_map(|file| file.sources.iter().cloned()).collect();
        let (superseded, mut files): (Vec<_>, Vec<_>) = files.into_iter().partition(|file| replaced.contains(&file.id));
        for file in superseded {
            tracing::info!(file = %file.id, "removing log file already compacted into another");
            fs::remove_file(&file.path).map_err(io_error(format!("removing {}", file.path.display())))?;
        }
        files.sort_by(|a, b| a.id.cmp(&b.id));
        let head_blocks_compressed = Arc::new(AtomicU64::new(0));
        let compressor = (options.head_codec == LogsCodec::None && options.codec != LogsCodec::None)
            .then(|| spawn_compressor(options.codec, head_blocks_compressed.clone()))
            .transpose()?;
        let store = LogsStore {
            dir: dir.to_path_buf(),
            options,
            catalog: RwLock::new(Catalog::default()),
            head_by_ref: RwLock::new(HashMap::new()),
            next_ref: AtomicU64::new(1),
            files: RwLock::new(files),
            wal: OnceLock::new(),
            append_lock: Mutex::new(AppendScratch::default()),
            maintenance_lock: Mutex::new(()),
            totals: Mutex::new(LogAppendCounts::default()),
            counters,
            read_counters: Arc::new(ReadCounters::default()),
            compressor,
            head_blocks_compressed,
        };
        store.rebuild_file_chunks();
        Ok(store)
    }

    /// Starts accepting appends, which go to `wal`. Called once replay is over.
    pub fn attach_wal(&self, wal: Arc<Wal>) {
        let _ = self.wal.set(wal);
    }

    fn seal_policy(&self) -> SealPolicy {
        SealPolicy {
            block_target_bytes: self.options.block_target_bytes.max(1),
            chunk_target_bytes: self.options.chunk_target_bytes.max(1),
            codec: self.options.head_codec,
        }
    }

    /// Points every catalog stream at the chunks of the current files. Sequence numbers and
    /// newest times only grow: a deleted file does not make flushed entries unflushed.
    fn rebuild_file_chunks(&self) {
        let files = read(&self.files).clone();
        let mut catalog = write(&self.catalog);
        for tenant in catalog.tenants.values_mut() {
            for stream in &mut tenant.streams {
                stream.chunks.clear();
            }
        }
        for file in &files {
            for (stream_index, file_stream) in file.streams.iter().enumerate() {
                let tenant = catalog.tenant_mut(&file_stream.tenant);
                let id = tenant.get_or_insert(&file_stream.labels);
                let stream = &mut tenant.streams[id as usize];
                stream.flushed_seq_end = stream.flushed_seq_end.max(file_stream.seq_end);
                for (chunk_index, chunk) in file_stream.chunks.iter().enumerate() {
                    stream.flushed_newest_t_ns = stream.flushed_newest_t_ns.max(chunk.max_t_ns);
                    stream.chunks.push(FileChunkRef {
                        file: file.clone(),
                        stream: stream_index as u32,
                        chunk: chunk_index as u32,
                    });
                }
            }
        }
        for tenant in catalog.tenants.values_mut() {
            tenant.compact();
        }
        catalog.tenants.retain(|_, tenant| !tenant.streams.is_empty());
    }

    // -----------------------------------------------------------------------------------------
    // Replay

    /// Applies one WAL record of a logs kind. Everything the WAL holds was acknowledged, so
    /// every entry is taken, except those already in files (by sequence number).
    pub fn replay_record(&self, kind: RecordKind, payload: &[u8]) {
        let malformed = || {
            self.counters.replay_malformed.fetch_add(1, Ordering::Relaxed);
        };
        if kind == record_kinds::LOGS_STREAMS {
            let Ok(streams) = records::decode_streams(payload) else { return malformed() };
            for record in streams {
                self.next_ref.fetch_max(record.stream_ref + 1, Ordering::Relaxed);
                if read(&self.head_by_ref).contains_key(&record.stream_ref) {
                    continue;
                }
                let head = self.head_stream_for(record.stream_ref, &record.tenant, &record.labels);
                write(&self.head_by_ref).insert(record.stream_ref, head);
            }
        } else if kind == record_kinds::LOGS_ENTRIES {
            let Ok(groups) = records::decode_entries(payload) else { return malformed() };
            let policy = self.seal_policy();
            let now_ns = self.options.clock.now_ns();
            let mut already_flushed = 0u64;
            for group in groups {
                let Some(stream) = read(&self.head_by_ref).get(&group.stream_ref).cloned() else {
                    malformed();
                    continue;
                };
                let mut state = stream.lock();
                for (index, entry) in group.entries.iter().enumerate() {
                    let seq = group.first_seq + index as u64;
                    if seq < state.next_seq {
                        already_flushed += 1;
                        continue;
                    }
                    state.next_seq = seq;
                    state.push(entry.t_ns, entry.line, MetadataSource::Encoded(entry.metadata), now_ns, &policy);
                }
            }
            self.counters.replay_already_flushed.fetch_add(already_flushed, Ordering::Relaxed);
        }
    }

    /// The head stream for (tenant, labels): the catalog's if it has one, else a new one
    /// numbered after what the files hold, registered in the catalog.
    fn head_stream_for(&self, stream_ref: u64, tenant: &str, labels: &Labels) -> Arc<HeadStream> {
        let mut catalog = write(&self.catalog);
        let streams = catalog.tenant_mut(tenant);
        let id = streams.get_or_insert(labels);
        let stream = &mut streams.streams[id as usize];
        if let Some(head) = &stream.head {
            return head.clone();
        }
        let head = Arc::new(HeadStream::new(
            stream_ref,
            Arc::from(tenant),
            labels.clone(),
            stream.flushed_seq_end,
            stream.flushed_newest_t_ns,
        ));
        stream.head = Some(head.clone());
        head
    }

    // -----------------------------------------------------------------------------------------
    // Append

    fn append_batch(&self, tenant: &str, batch: &[StreamEntries<'_>]) -> Result<LogAppendCounts, LogsError> {
        let wal = self.wal.get().ok_or(LogsError::NotWritable("the write-ahead log is still being replayed"))?.clone();
        let mut guard = self.append_lock.lock().unwrap_or_else(|poison| poison.into_inner());
        let scratch = &mut *guard;
        scratch.clear();
        let now_ns = self.options.clock.now_ns();
        let mut counts = LogAppendCounts::default();

        // 1. Resolve every stream; streams seen for the first time get a new head stream,
        //    registered once the WAL has them.
        {
            let catalog = read(&self.catalog);
            let tenant_streams = catalog.tenant(tenant);
            let mut tenant_arc: Option<Arc<str>> = None;
            for item in batch {
                let existing = tenant_streams.and_then(|streams| {
                    let id = streams.find(item.labels)?;
                    let stream = &streams.streams[id as usize];
                    Some((stream.head.clone(), stream.flushed_seq_end, stream.flushed_newest_t_ns))
                });
                let head = match existing {
                    Some((Some(head), _, _)) => head,
                    found => match scratch.new_streams.get(item.labels) {
                        Some(head) => head.clone(),
                        None => {
                            let (next_seq, newest) = found.map_or((0, i64::MIN), |(_, seq, newest)| (seq, newest));
                            let tenant_arc = tenant_arc.get_or_insert_with(|| Arc::from(tenant)).clone();
                            let stream_ref = self.next_ref.fetch_add(1, Ordering::Relaxed);
                            let head = Arc::new(HeadStream::new(
                                stream_ref,
                                tenant_arc,
                                item.labels.clone(),
                                next_seq,
                                newest,
                            ));
                            scratch.new_streams.insert(item.labels.clone(), head.clone());
                            scratch.new_order.push(head.clone());
                            counts.streams_created += 1;
                            head
                        }
                    },
                };
                scratch.targets.push(head);
            }
        }

        // 2. Judge every entry, in (t_ns, line) order per item, against its stream as it will
        //    be after the batch's earlier entries; accepted ones go straight into the record.
        let mut writer = EntriesWriter::new(&mut scratch.entries_record);
        for (item_index, item) in batch.iter().enumerate() {
            let stream = &scratch.targets[item_index];
            let state = stream.lock();
            let seen_before = scratch.virtual_state.contains_key(&stream.stream_ref);
            let (mut newest, mut next_seq) =
                scratch.virtual_state.get(&stream.stream_ref).copied().unwrap_or((state.newest_t_ns, state.next_seq));
            scratch.order.clear();
            scratch.order.extend(0..item.entries.len() as u32);
            let in_key_order =
                item.entries.windows(2).all(|pair| (pair[0].t_ns, &pair[0].line) <= (pair[1].t_ns, &pair[1].line));
            if !in_key_order {
                scratch.order.sort_by(|&a, &b| {
                    let (a, b) = (&item.entries[a as usize], &item.entries[b as usize]);
                    (a.t_ns, &a.line).cmp(&(b.t_ns, &b.line))
                });
            }
            let mut group_started = false;
            let mut previous: Option<usize> = None;
            for &entry_index in &scratch.order {
                let entry = &item.entries[entry_index as usize];
                let line = entry.line.as_bytes();
                let duplicate = entry.t_ns <= newest && {
                    let same_as_previous = previous.is_some_and(|p| {
                        let previous = &item.entries[p];
                        previous.t_ns == entry.t_ns && previous.line == entry.line
                    });
                    same_as_previous
                        || state.contains(entry.t_ns, line, &mut scratch.decoded)
                        || (seen_before
                            && scratch.accepted.iter().any(|accepted| {
                                let other = &batch[accepted.item as usize].entries[accepted.entry as usize];
                                Arc::ptr_eq(&scratch.targets[accepted.item as usize], stream)
                                    && other.t_ns == entry.t_ns
                                    && other.line == entry.line
                            }))
                };
                previous = Some(entry_index as usize);
                if duplicate {
                    counts.duplicates += 1;
                    continue;
                }
                if !group_started {
                    writer.begin_group(stream.stream_ref, next_seq);
                    group_started = true;
                }
                writer.entry(entry.t_ns, line, &entry.metadata);
                scratch.accepted.push(Accepted { item: item_index as u32, entry: entry_index });
                if entry.t_ns < newest {
                    counts.appended_out_of_order += 1;
                }
                newest = newest.max(entry.t_ns);
                next_seq += 1;
                counts.appended += 1;
                counts.line_bytes += line.len() as u64;
            }
            drop(state);
            scratch.virtual_state.insert(stream.stream_ref, (newest, next_seq));
        }
        let groups = writer.finish();

        // 3. Log: new streams first, then the entries, as one batch.
        let mut wal_batch: Vec<(RecordKind, &[u8])> = Vec::with_capacity(2);
        if !scratch.new_order.is_empty() {
            let new_streams: Vec<(u64, &str, &Labels)> =
                scratch.new_order.iter().map(|head| (head.stream_ref, tenant, &head.labels)).collect();
            records::encode_streams(&mut scratch.streams_record, &new_streams);
            wal_batch.push((record_kinds::LOGS_STREAMS, scratch.streams_record.as_slice()));
        }
        if groups > 0 {
            wal_batch.push((record_kinds::LOGS_ENTRIES, scratch.entries_record.as_slice()));
        }
        if !wal_batch.is_empty() {
            wal.append(&wal_batch)?;
        }

        // 4. Apply: register new streams, then push entries in record order.
        if !scratch.new_order.is_empty() {
            let mut catalog = write(&self.catalog);
            let mut by_ref = write(&self.head_by_ref);
            let streams = catalog.tenant_mut(tenant);
            for head in &scratch.new_order {
                let id = streams.get_or_insert(&head.labels);
                streams.streams[id as usize].head = Some(head.clone());
                by_ref.insert(head.stream_ref, head.clone());
            }
        }
        let policy = self.seal_policy();
        let mut position = 0;
        while position < scratch.accepted.len() {
            let item_index = scratch.accepted[position].item;
            let run_end = position
                + scratch.accepted[position..].iter().take_while(|accepted| accepted.item == item_index).count();
            let item = &batch[item_index as usize];
            let mut state = scratch.targets[item_index as usize].lock();
            for accepted in &scratch.accepted[position..run_end] {
                let entry = &item.entries[accepted.entry as usize];
                state.push(entry.t_ns, entry.line.as_bytes(), MetadataSource::Labels(&entry.metadata), now_ns, &policy);
            }
            position = run_end;
        }
        scratch.release_if_large();
        drop(guard);
        self.totals.lock().unwrap_or_else(|poison| poison.into_inner()).add(&counts);
        self.note_raw_bytes(counts.line_bytes);
        Ok(counts)
    }

    /// Counts line bytes that went into raw head blocks; past the limit, hands every head
    /// stream to the background compressor (unless it is still busy with the last batch, in
    /// which case the next append tries again).
    fn note_raw_bytes(&self, line_bytes: u64) {
        let Some(compressor) = &self.compressor else { return };
        let pending = self.counters.raw_since_compression.fetch_add(line_bytes, Ordering::Relaxed) + line_bytes;
        if pending < self.options.head_raw_bytes_limit.max(1) {
            return;
        }
        match compressor.try_send(self.head_streams()) {
            Ok(()) => self.counters.raw_since_compression.store(0, Ordering::Relaxed),
            Err(mpsc::TrySendError::Full(_)) => {}
            Err(mpsc::TrySendError::Disconnected(_)) => {
                tracing::error!("logs head compressor stopped, head blocks wait for maintenance");
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Maintenance

    /// Flushes full, old and idle chunks to a new file, compacts small files, applies
    /// retention. Blocking: run it off the async runtime.
    pub fn maintenance(&self) -> Result<LogsMaintenanceOutcome, LogsError> {
        let _serial = self.maintenance_lock.lock().unwrap_or_else(|poison| poison.into_inner());
        let now_ns = self.options.clock.now_ns();
        let mut outcome = LogsMaintenanceOutcome::default();
        let (chunks, written) = self.flush(now_ns, false)?;
        outcome.chunks_flushed = chunks;
        outcome.files_written = u64::from(written);
        let head_blocks_compressed = self.compress_head_blocks();
        if head_blocks_compressed > 0 {
            tracing::debug!(blocks = head_blocks_compressed, "head blocks compressed");
        }
        self.drop_idle_streams(now_ns);
        outcome.compactions = self.compact()?;
        let (deleted, rewritten) = self.apply_retention(now_ns)?;
        outcome.files_deleted = deleted;
        outcome.files_rewritten = rewritten;
        outcome.checkpoint_wanted = self.counters.flushed_since_checkpoint.load(Ordering::Relaxed)
            >= self.options.checkpoint_after_flushed_bytes.max(1);
        Ok(outcome)
    }

    /// Flushes everything the head holds to a file, whatever its size or age (for shutdown
    /// and tests). Returns the number of chunks flushed.
    pub fn flush_all(&self) -> Result<u64, LogsError> {
        let _serial = self.maintenance_lock.lock().unwrap_or_else(|poison| poison.into_inner());
        let (chunks, _) = self.flush(self.options.clock.now_ns(), true)?;
        Ok(chunks)
    }

    /// Called once a WAL checkpoint has dropped what was flushed.
    pub fn note_checkpoint(&self) {
        self.counters.flushed_since_checkpoint.store(0, Ordering::Relaxed);
    }

    fn head_streams(&self) -> Vec<Arc<HeadStream>> {
        let by_ref = read(&self.head_by_ref);
        let mut seen = std::collections::HashSet::new();
        let mut streams: Vec<Arc<HeadStream>> =
            by_ref.values().filter(|head| seen.insert(Arc::as_ptr(head) as usize)).cloned().collect();
        streams.sort_by(|a, b| (&a.tenant, &a.labels).cmp(&(&b.tenant, &b.labels)));
        streams
    }

    /// Closes old and idle chunks (all of them with `everything`), writes every closed chunk
    /// to one new file, then drops them from the head.
    fn flush(&self, now_ns: i64, everything: bool) -> Result<(u64, bool), LogsError> {
        let started = Instant::now();
        let policy = self.seal_policy();
        let mut to_flush: Vec<(Arc<HeadStream>, Vec<HeadChunk>)> = Vec::new();
        for head in self.head_streams() {
            let mut state = head.lock();
            let open_has_data = !state.open_chunk.blocks.is_empty() || state.open.len() > 0;
            if open_has_data {
                let age = state.open_chunk.started_ns.map_or(0, |started| now_ns.saturating_sub(started));
                let idle = now_ns.saturating_sub(state.last_append_ns);
                if everything || age >= self.options.max_chunk_age_ns || idle >= self.options.chunk_idle_period_ns {
                    state.close_everything(&policy);
                }
            }
            if !state.closed.is_empty() {
                to_flush.push((head.clone(), state.closed.clone()));
            }
        }
        if to_flush.is_empty() {
            return Ok((0, false));
        }
        let mut writer = FileWriter::create(&self.dir, 1, Vec::new())?;
        let mut chunks = 0u64;
        let mut line_bytes = 0u64;
        let mut raw = Vec::new();
        let mut bloom = BloomBuilder::default();
        let wants_bloom = self.options.bloom_bits_per_kib > 0 && self.options.bloom_bits_per_gram > 0;
        for (head, head_chunks) in &to_flush {
            for chunk in head_chunks {
                let chunk_line_bytes: u64 = chunk.blocks.iter().map(|block| block.meta.line_bytes).sum();
                if wants_bloom {
                    bloom.start(chunk_line_bytes);
                }
                // Each block once: its lines into the bloom, then compressed if it is raw.
                let mut compressed: Vec<Option<(u8, Vec<u8>)>> = Vec::with_capacity(chunk.blocks.len());
                for block in &chunk.blocks {
                    compressed.push(self.prepare_for_file(block, wants_bloom.then_some(&mut bloom), &mut raw)?);
                }
                let blocks: Vec<BlockToWrite<'_>> = chunk
                    .blocks
                    .iter()
                    .zip(&compressed)
                    .map(|(block, compressed)| match compressed {
                        Some((codec, data)) => BlockToWrite { meta: block.meta, codec: *codec, data },
                        None => BlockToWrite { meta: block.meta, codec: block.codec, data: &block.data },
                    })
                    .collect();
                let built = wants_bloom.then(|| {
                    bloom.finish(self.options.bloom_bits_per_gram, self.options.bloom_bits_per_kib, chunk_line_bytes)
                });
                let seq_end = chunk.seq_end().unwrap_or(0);
                writer.add_chunk(
                    &head.tenant,
                    &head.labels,
                    seq_end,
                    &blocks,
                    built.as_ref().map(BloomToWrite::Built),
                )?;
                line_bytes += chunk_line_bytes;
                chunks += 1;
            }
        }
        let Some(file) = writer.finish()? else { return Ok((0, false)) };
        let file = Arc::new(file);
        let file_id = file.id.clone();
        write(&self.files).push(file);
        // Readers now see the chunks in the file and still in the head; the cursor merges the
        // two. Then the head lets them go.
        self.rebuild_file_chunks();
        for (head, head_chunks) in &to_flush {
            if let Some(seq_end) = head_chunks.iter().filter_map(HeadChunk::seq_end).max() {
                head.lock().drop_flushed(seq_end);
            }
        }
        self.counters.chunks_flushed.fetch_add(chunks, Ordering::Relaxed);
        self.counters.files_written.fetch_add(1, Ordering::Relaxed);
        self.counters.flushed_since_checkpoint.fetch_add(line_bytes, Ordering::Relaxed);
        tracing::info!(
            file = %file_id,
            chunks,
            streams = to_flush.len(),
            line_bytes,
            duration_ms = started.elapsed().as_millis() as u64,
            "log chunks flushed"
        );
        Ok((chunks, true))
    }

    /// A sealed head block made ready for a file: its lines go into `bloom`, and a raw block is
    /// compressed with the file codec. `None`: the block's data goes in as it is.
    fn prepare_for_file(
        &self,
        block: &SealedBlock,
        bloom: Option<&mut BloomBuilder>,
        raw: &mut Vec<u8>,
    ) -> Result<Option<(u8, Vec<u8>)>, LogsError> {
        let compress = block.codec == CODEC_NONE && self.options.codec != LogsCodec::None;
        if !compress && bloom.is_none() {
            return Ok(None);
        }
        let corrupt = |problem: String| LogsError::Corrupt { file: "head block".into(), problem };
        let raw: &[u8] = if block.codec == CODEC_NONE {
            &block.data
        } else {
            decompress(block.codec, &block.data, block.meta.raw_bytes, raw).map_err(corrupt)?;
            raw
        };
        if let Some(bloom) = bloom {
            for_each_line(raw, &block.meta, |lines| bloom.insert(lines)).map_err(corrupt)?;
        }
        if !compress {
            return Ok(None);
        }
        Ok(compress_block(self.options.codec, raw, &block.meta).map(|data| (CODEC_ZSTD, data)))
    }

    /// Compresses the head's raw sealed blocks with the file codec, so that memory holds raw
    /// bytes for at most one maintenance interval. Returns the blocks compressed.
    fn compress_head_blocks(&self) -> u64 {
        if self.options.codec == LogsCodec::None {
            return 0;
        }
        let compressed = compress_raw_blocks(self.options.codec, &self.head_streams());
        self.head_blocks_compressed.fetch_add(compressed, Ordering::Relaxed);
        compressed
    }

    /// Forgets head streams that hold nothing and received nothing for an idle period.
    fn drop_idle_streams(&self, now_ns: i64) {
        let _appends = self.append_lock.lock().unwrap_or_else(|poison| poison.into_inner());
        let mut catalog = write(&self.catalog);
        let mut by_ref = write(&self.head_by_ref);
        let mut dropped = 0;
        by_ref.retain(|_, head| {
            let state = head.lock();
            let keep =
                !state.is_empty() || now_ns.saturating_sub(state.last_append_ns) < self.options.chunk_idle_period_ns;
            if !keep {
                dropped += 1;
                if let Some(streams) = catalog.tenants.get_mut(&*head.tenant)
                    && let Some(id) = streams.find(&head.labels)
                {
                    streams.streams[id as usize].head = None;
                }
            }
            keep
        });
        if dropped > 0 {
            for tenant in catalog.tenants.values_mut() {
                tenant.compact();
            }
            catalog.tenants.retain(|_, tenant| !tenant.streams.is_empty());
        }
    }

    /// Merges small files into one once there are enough of them.
    fn compact(&self) -> Result<u64, LogsError> {
        let small: Vec<Arc<LogFile>> = read(&self.files)
            .iter()
            .filter(|file| file.size_bytes < self.options.compaction_small_file_bytes)
            .cloned()
            .collect();
        if small.len() < self.options.compaction_min_files.max(2) {
            return Ok(0);
        }
        let started = Instant::now();
        self.rewrite_files(&small, |_, _, _| true)?;
        self.counters.compactions.fetch_add(1, Ordering::Relaxed);
        tracing::info!(inputs = small.len(), duration_ms = started.elapsed().as_millis() as u64, "log files compacted");
        Ok(1)
    }

    /// Writes the chunks of `inputs` that `keep(tenant, labels, chunk max time)` keeps into one
    /// new file (blocks and blooms copied as they are), swaps it in and deletes the inputs.
    fn rewrite_files(
        &self,
        inputs: &[Arc<LogFile>],
        keep: impl Fn(&str, &Labels, i64) -> bool,
    ) -> Result<Option<Arc<LogFile>>, LogsError> {
        let level = inputs.iter().map(|file| file.level).max().unwrap_or(1) + 1;
        let sources: Vec<String> = inputs.iter().map(|file| file.id.clone()).collect();
        let mut writer = FileWriter::create(&self.dir, level, sources.clone())?;
        for file in inputs {
            for stream in &file.streams {
                for chunk in &stream.chunks {
                    if !keep(&stream.tenant, &stream.labels, chunk.max_t_ns) {
                        continue;
                    }
                    let mut blocks = Vec::with_capacity(chunk.blocks.len());
                    for index in chunk.blocks.clone() {
                        let (meta, data) = file.block_data(index)?;
                        blocks.push(BlockToWrite { meta: meta.meta, codec: meta.codec, data });
                    }
                    let bloom = file.bloom_bytes(chunk)?.map(|(bloom, bytes)| BloomToWrite::Stored {
                        universe_log2: bloom.universe_log2,
                        bits: bloom.bits,
                        bytes,
                    });
                    writer.add_chunk(&stream.tenant, &stream.labels, stream.seq_end, &blocks, bloom)?;
                }
            }
        }
        let output = writer.finish()?.map(Arc::new);
        {
            let mut files = write(&self.files);
            files.retain(|file| !sources.contains(&file.id));
            if let Some(output) = &output {
                files.push(output.clone());
            }
            files.sort_by(|a, b| a.id.cmp(&b.id));
        }
        self.rebuild_file_chunks();
        for input in inputs {
            fs::remove_file(&input.path).map_err(io_error(format!("removing {}", input.path.display())))?;
        }
        file::sync_dir(&self.dir)?;
        Ok(output)
    }

    /// The retention period of a stream: the most specific matching stream rule, else the
    /// tenant's, else the default. `None`: kept forever.
    pub fn retention_for(&self, tenant: &str, labels: &Labels) -> Option<i64> {
        let mut best: Option<&StreamRetention> = None;
        for rule in &self.options.stream_retention {
            if rule.tenant.as_deref().is_some_and(|only| only != tenant) || !matches_all(labels, &rule.matchers) {
                continue;
            }
            if best.is_none_or(|current| rule.matchers.len() > current.matchers.len()) {
                best = Some(rule);
            }
        }
        if let Some(rule) = best {
            return Some(rule.period_ns);
        }
        self.options.tenant_retention_ns.get(tenant).copied().or(self.options.retention_ns)
    }

    /// Deletes files whose chunks are all past retention, rewrites those with some.
    fn apply_retention(&self, now_ns: i64) -> Result<(u64, u64), LogsError> {
        let expired = |tenant: &str, labels: &Labels, max_t_ns: i64| {
            self.retention_for(tenant, labels).is_some_and(|period| max_t_ns < now_ns.saturating_sub(period))
        };
        let files = read(&self.files).clone();
        let (mut deleted, mut rewritten) = (0, 0);
        for file in files {
            let total: usize = file.streams.iter().map(|stream| stream.chunks.len()).sum();
            let gone: usize = file
                .streams
                .iter()
                .map(|stream| {
                    stream.chunks.iter().filter(|c| expired(&stream.tenant, &stream.labels, c.max_t_ns)).count()
                })
                .sum();
            if gone == 0 {
                continue;
            }
            if gone == total {
                write(&self.files).retain(|other| other.id != file.id);
                self.rebuild_file_chunks();
                fs::remove_file(&file.path).map_err(io_error(format!("removing {}", file.path.display())))?;
                file::sync_dir(&self.dir)?;
                tracing::info!(file = %file.id, "log file deleted by retention");
                deleted += 1;
            } else {
                self.rewrite_files(std::slice::from_ref(&file), |tenant, labels, max_t_ns| {
                    !expired(tenant, labels, max_t_ns)
                })?;
                tracing::info!(file = %file.id, chunks_dropped = gone, "log file rewritten by retention");
                rewritten += 1;
            }
        }
        self.counters.files_deleted.fetch_add(deleted, Ordering::Relaxed);
        self.counters.files_rewritten.fetch_add(rewritten, Ordering::Relaxed);
        Ok((deleted, rewritten))
    }

    /// For a WAL checkpoint: what to keep of a logs record. `None` drops it; `Some(bytes)`
    /// keeps it (rewritten when partly obsolete). Streams are kept while they have a head;
    /// entries while they are not in files.
    pub fn checkpoint_record(&self, kind: RecordKind, payload: &[u8]) -> Option<Vec<u8>> {
        if kind == record_kinds::LOGS_STREAMS {
            let streams = records::decode_streams(payload).ok()?;
            let by_ref = read(&self.head_by_ref);
            let live: Vec<(u64, &str, &Labels)> = streams
                .iter()
                .filter(|record| by_ref.contains_key(&record.stream_ref))
                .map(|record| (record.stream_ref, record.tenant.as_str(), &record.labels))
                .collect();
            if live.is_empty() {
                return None;
            }
            if live.len() == streams.len() {
                return Some(payload.to_vec());
            }
            let mut out = Vec::new();
            records::encode_streams(&mut out, &live);
            Some(out)
        } else if kind == record_kinds::LOGS_ENTRIES {
            let groups = records::decode_entries(payload).ok()?;
            // Lock order everywhere: catalog, then references, then a stream.
            let catalog = read(&self.catalog);
            let by_ref = read(&self.head_by_ref);
            let mut kept = Vec::with_capacity(groups.len());
            let mut changed = false;
            for mut group in groups {
                let Some(head) = by_ref.get(&group.stream_ref) else {
                    changed = true;
                    continue;
                };
                let flushed = catalog
                    .tenant(&head.tenant)
                    .and_then(|streams| {
                        streams.find(&head.labels).map(|id| streams.streams[id as usize].flushed_seq_end)
                    })
                    .unwrap_or(0);
                if group.first_seq < flushed {
                    let skip = (flushed - group.first_seq).min(group.entries.len() as u64) as usize;
                    group.entries.drain(..skip);
                    group.first_seq += skip as u64;
                    changed = true;
                }
                if group.entries.is_empty() {
                    changed = true;
                    continue;
                }
                kept.push(group);
            }
            if kept.is_empty() {
                return None;
            }
            if !changed {
                return Some(payload.to_vec());
            }
            let mut out = Vec::new();
            records::encode_groups(&mut out, &kept);
            Some(out)
        } else {
            Some(payload.to_vec())
        }
    }

    /// Figures about the whole store, for self-metrics (the seam's `stats` answers per selector).
    pub fn store_stats(&self) -> LogsStats {
        let mut stats = LogsStats::default();
        for head in self.head_streams() {
            let state = head.lock();
            stats.streams += 1;
            stats.memory_chunks += state.chunk_count() as u64;
            let (entries, line_bytes, memory) = state.sizes();
            stats.head_entries += entries;
            stats.head_line_bytes += line_bytes;
            stats.head_memory_bytes += memory;
        }
        for file in read(&self.files).iter() {
            stats.files += 1;
            stats.file_bytes += file.size_bytes;
            for stream in &file.streams {
                stats.file_chunks += stream.chunks.len() as u64;
                for chunk in &stream.chunks {
                    stats.file_entries += chunk.entries;
                    stats.file_line_bytes += chunk.line_bytes;
                }
            }
        }
        stats.appended = *self.totals.lock().unwrap_or_else(|poison| poison.into_inner());
        stats.chunks_flushed = self.counters.chunks_flushed.load(Ordering::Relaxed);
        stats.files_written = self.counters.files_written.load(Ordering::Relaxed);
        stats.compactions = self.counters.compactions.load(Ordering::Relaxed);
        stats.files_deleted_by_retention = self.counters.files_deleted.load(Ordering::Relaxed);
        stats.files_rewritten_by_retention = self.counters.files_rewritten.load(Ordering::Relaxed);
        stats.head_blocks_compressed = self.head_blocks_compressed.load(Ordering::Relaxed);
        stats.blocks_read = self.read_counters.blocks_read.load(Ordering::Relaxed);
        stats.blocks_skipped_by_bloom = self.read_counters.blocks_skipped_by_bloom.load(Ordering::Relaxed);
        stats.replay_malformed_records = self.counters.replay_malformed.load(Ordering::Relaxed);
        stats.replay_entries_already_flushed = self.counters.replay_already_flushed.load(Ordering::Relaxed);
        stats.corrupt_files = self.counters.corrupt_files.load(Ordering::Relaxed);
        stats
    }

    /// Paths of the files, oldest first: for tests and operators.
    pub fn file_paths(&self) -> Vec<PathBuf> {
        read(&self.files).iter().map(|file| file.path.clone()).collect()
    }

    /// Checks every block's and bloom's checksum in every file.
    pub fn verify_files(&self) -> Result<(), LogsError> {
        for file in read(&self.files).iter() {
            file.verify()?;
        }
        Ok(())
    }

    /// The streams of `tenant` matching `matchers` that have data in `range`, in label order.
    fn matching_streams<T>(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        range: NsRange,
        mut each: impl FnMut(&CatalogStream) -> Result<Option<T>, LogsError>,
    ) -> Result<Vec<T>, LogsError> {
        let catalog = read(&self.catalog);
        let Some(streams) = catalog.tenant(tenant) else { return Ok(Vec::new()) };
        let mut ids = streams.resolve(matchers);
        ids.sort_by(|a, b| streams.streams[*a as usize].labels.cmp(&streams.streams[*b as usize].labels));
        let mut out = Vec::new();
        for id in ids {
            let stream = &streams.streams[id as usize];
            if !stream.overlaps(range.start_ns(), range.end_ns()) {
                continue;
            }
            if let Some(value) = each(stream)? {
                out.push(value);
            }
        }
        Ok(out)
    }
}

/// The needles of `Contains` filters long enough for a bloom filter to answer.
/// Compresses the raw sealed blocks of `streams` with `codec`. Each block is compressed outside
/// its stream's lock and swapped in if the stream still has it (a flush may have taken it
/// meanwhile). Returns the blocks swapped.
fn compress_raw_blocks(codec: LogsCodec, streams: &[Arc<HeadStream>]) -> u64 {
    let mut compressed = 0;
    for head in streams {
        let raw_blocks: Vec<Arc<SealedBlock>> =
            head.lock().sealed_blocks().filter(|block| block.codec == CODEC_NONE).cloned().collect();
        for block in raw_blocks {
            let Some(data) = compress_block(codec, &block.data, &block.meta) else { continue };
            let smaller = Arc::new(SealedBlock { meta: block.meta, codec: CODEC_ZSTD, data, seq_end: block.seq_end });
            compressed += u64::from(head.lock().replace_block(&block, smaller));
        }
    }
    compressed
}

/// Starts the thread that compresses sealed head blocks off the append path. It holds only
/// head streams, never the store, and ends when the store drops its sender.
fn spawn_compressor(
    codec: LogsCodec,
    compressed: Arc<AtomicU64>,
) -> Result<mpsc::SyncSender<Vec<Arc<HeadStream>>>, LogsError> {
    let (sender, receiver) = mpsc::sync_channel::<Vec<Arc<HeadStream>>>(1);
    std::thread::Builder::new()
        .name("logs-compress".into())
        .spawn(move || {
            for streams in receiver {
                let blocks = compress_raw_blocks(codec, &streams);
                compressed.fetch_add(blocks, Ordering::Relaxed);
                tracing::debug!(blocks, "head blocks compressed in the background");
            }
        })
        .map_err(io_error("starting the logs head compressor".to_string()))?;
    Ok(sender)
}

fn bloom_needles(filters: &[LineFilter]) -> Vec<&[u8]> {
    filters
        .iter()
        .filter_map(|filter| match filter {
            LineFilter::Contains(needle) if needle.len() >= super::bloom::GRAM_BYTES => Some(needle.as_bytes()),
            _ => None,
        })
        .collect()
}

impl LogsAppender for LogsStore {
    fn append(&self, tenant: &str, batch: &[StreamEntries<'_>]) -> Result<LogAppendCounts, LogsError> {
        self.append_batch(tenant, batch)
    }
}

impl LogsQueryable for LogsStore {
    fn select(&self, tenant: &str, selection: &LogSelection<'_>) -> Result<Vec<StreamCursor>, LogsError> {
        let range = selection.range;
        let needles = bloom_needles(selection.filters);
        self.matching_streams(tenant, selection.matchers, range, |stream| {
            let mut sources = Vec::new();
            for chunk in &stream.chunks {
                let meta = chunk.meta();
                if !range.overlaps(meta.min_t_ns, meta.max_t_ns) {
                    continue;
                }
                let in_range = |index: &u32| {
                    let block = &chunk.file.blocks[*index as usize];
                    range.overlaps(block.meta.min_t_ns, block.meta.max_t_ns)
                };
                if !needles.is_empty()
                    && let Some(bloom) = chunk.file.bloom(meta)?
                    && !needles.iter().all(|needle| bloom.may_contain(needle))
                {
                    let skipped = meta.blocks.clone().filter(in_range).count() as u64;
                    self.read_counters.blocks_skipped_by_bloom.fetch_add(skipped, Ordering::Relaxed);
                    continue;
                }
                for index in meta.blocks.clone().filter(in_range) {
                    let block = &chunk.file.blocks[index as usize];
                    sources.push(Source {
                        min_t_ns: block.meta.min_t_ns,
                        max_t_ns: block.meta.max_t_ns,
                        kind: SourceKind::File { file: chunk.file.clone(), block: index },
                    });
                }
            }
            if let Some(head) = &stream.head {
                let state = head.lock();
                for block in state.sealed_blocks() {
                    if range.overlaps(block.meta.min_t_ns, block.meta.max_t_ns) {
                        sources.push(Source {
                            min_t_ns: block.meta.min_t_ns,
                            max_t_ns: block.meta.max_t_ns,
                            kind: SourceKind::Head(block.clone()),
                        });
                    }
                }
                let open = state.open_entries(range, selection.filters);
                if let (Some(first), Some(last)) = (open.first(), open.last()) {
                    sources.push(Source { min_t_ns: first.t_ns, max_t_ns: last.t_ns, kind: SourceKind::Entries(open) });
                }
            }
            if sources.is_empty() {
                return Ok(None);
            }
            let cursor = MergeCursor::new(
                sources,
                selection.direction,
                range,
                selection.filters.to_vec(),
                self.read_counters.clone(),
            );
            Ok(Some(StreamCursor { labels: stream.labels.clone(), entries: Box::new(cursor) }))
        })
    }

    fn series(&self, tenant: &str, matchers: &[Matcher], range: NsRange) -> Result<Vec<Labels>, LogsError> {
        self.matching_streams(tenant, matchers, range, |stream| Ok(Some(stream.labels.clone())))
    }

    fn label_names(&self, tenant: &str, matchers: &[Matcher], range: NsRange) -> Result<Vec<String>, LogsError> {
        let mut names = BTreeSet::new();
        self.matching_streams(tenant, matchers, range, |stream| {
            names.extend(stream.labels.iter().map(|label| label.name.to_string()));
            Ok(None::<()>)
        })?;
        Ok(names.into_iter().collect())
    }

    fn label_values(
        &self,
        tenant: &str,
        name: &str,
        matchers: &[Matcher],
        range: NsRange,
    ) -> Result<Vec<String>, LogsError> {
        let mut values = BTreeSet::new();
        self.matching_streams(tenant, matchers, range, |stream| {
            if let Some(value) = stream.labels.get(name) {
                values.insert(value.to_string());
            }
            Ok(None::<()>)
        })?;
        Ok(values.into_iter().collect())
    }

    /// Entries and bytes are counted per block: a block that overlaps the range counts whole
    /// (the open block is counted exactly).
    fn stats(&self, tenant: &str, matchers: &[Matcher], range: NsRange) -> Result<LogStats, LogsError> {
        let mut stats = LogStats::default();
        self.matching_streams(tenant, matchers, range, |stream| {
            stats.streams += 1;
            for chunk in &stream.chunks {
                let meta = chunk.meta();
                if !range.overlaps(meta.min_t_ns, meta.max_t_ns) {
                    continue;
                }
                stats.chunks += 1;
                for block in &chunk.file.blocks[meta.blocks.start as usize..meta.blocks.end as usize] {
                    if range.overlaps(block.meta.min_t_ns, block.meta.max_t_ns) {
                        stats.entries += u64::from(block.meta.entries);
                        stats.bytes += block.meta.line_bytes;
                    }
                }
            }
            if let Some(head) = &stream.head {
                let state = head.lock();
                let chunks = state.closed.iter().chain(std::iter::once(&state.open_chunk));
                for chunk in chunks {
                    let mut overlapping = false;
                    for block in &chunk.blocks {
                        if range.overlaps(block.meta.min_t_ns, block.meta.max_t_ns) {
                            overlapping = true;
                            stats.entries += u64::from(block.meta.entries);
                            stats.bytes += block.meta.line_bytes;
                        }
                    }
                    stats.chunks += u64::from(overlapping);
                }
                let (entries, bytes) = state.open_sizes_in(range);
                if entries > 0
                    && state.open_chunk.blocks.iter().all(|b| !range.overlaps(b.meta.min_t_ns, b.meta.max_t_ns))
                {
                    stats.chunks += 1;
                }
                stats.entries += entries;
                stats.bytes += bytes;
            }
            Ok(None::<()>)
        })?;
        Ok(stats)
    }
}
