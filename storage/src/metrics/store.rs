//! [`MetricsStore`]: the head, the blocks, exemplars and metadata behind the
//! [`MetricsAppender`] and [`MetricsQueryable`] seams, plus maintenance: cutting blocks from the
//! head, compacting blocks, applying retention, and deciding what a WAL checkpoint keeps.
//!
//! Rules the store keeps:
//! - Appends are serialised by `append_lock`, so the order of records in the WAL is the order
//!   in which the head applied them, and replay rebuilds the same head.
//! - A sample is in the WAL before it is in the head, and in the head before `append` returns.
//! - Out-of-order samples are accepted within the window behind the newest sample, but never
//!   below the last block boundary: what was cut into a block is final until compaction.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use super::block::{Block, BlockWriter};
use super::exemplars::ExemplarStore;
use super::head::{Head, MemSeries, SeriesState};
use super::records::{self, RefExemplar, RefSample};
use super::series::{SampleSource, compare_labels, ensure_sorted, merge_sorted};
use super::{
    AppendCounts, AppendResult, ChunkBytes, Exemplar, MetricMetadata, MetricsAppender, MetricsError, MetricsQueryable,
    Sample, Series, SeriesExemplars, SeriesKey, SeriesSamples, TimeRange,
};
use crate::labels::{Labels, Matcher};
use crate::record_kinds;
use crate::wal::{RecordKind, Wal};

/// From this many series matching a select (in a block or the head), it is cut in parts done
/// on threads of their own (below, a thread costs more than it saves).
const PARALLEL_SELECT_MIN_SERIES: usize = 2_000;
/// At most this many threads take part in one select.
const MAX_SELECT_THREADS: usize = 2;

/// How the metrics store behaves.
#[derive(Debug, Clone)]
pub struct MetricsOptions {
    /// How far behind the newest sample an out-of-order sample may be; 0 turns out-of-order
    /// ingestion off.
    pub out_of_order_window_ms: i64,
    /// The time range of a block cut from the head.
    pub block_range_ms: i64,
    /// Blocks wholly older than this behind the newest sample are deleted; `None` keeps all.
    pub retention_ms: Option<i64>,
    /// The oldest blocks are deleted while all blocks together are larger; `None`: no limit.
    pub retention_bytes: Option<u64>,
    /// Exemplars kept, across all series.
    pub max_exemplars: usize,
}

impl Default for MetricsOptions {
    fn default() -> Self {
        MetricsOptions {
            out_of_order_window_ms: 3_600_000,
            block_range_ms: 7_200_000,
            retention_ms: Some(15 * 24 * 3_600_000),
            retention_bytes: None,
            max_exemplars: 100_000,
        }
    }
}

/// Figures for self-metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsStats {
    pub head_series: u64,
    pub head_chunks: u64,
    pub head_memory_bytes: u64,
    pub head_min_t: i64,
    pub head_max_t: i64,
    pub blocks: u64,
    pub block_bytes: u64,
    pub block_samples: u64,
    /// Totals since start, per reason.
    pub appended: AppendCounts,
    pub blocks_cut: u64,
    pub compactions: u64,
    pub blocks_deleted_by_retention: u64,
    pub replay_malformed_records: u64,
    pub exemplars: u64,
}

/// What a maintenance pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceOutcome {
    pub blocks_cut: u64,
    pub compactions: u64,
    pub blocks_deleted: u64,
    /// Set when blocks were cut: WAL records of samples below this time are no longer needed.
    pub checkpoint_below: Option<i64>,
}

pub struct MetricsStore {
    /// `data/metrics`; blocks live in `data/metrics/blocks`.
    dir: PathBuf,
    options: MetricsOptions,
    head: Head,
    /// Open blocks, sorted by min time.
    blocks: RwLock<Vec<Arc<Block>>>,
    /// Set once the WAL replay is over; appends before that are refused.
    wal: OnceLock<Arc<Wal>>,
    /// Serialises appends and head truncation; holds reusable encode buffers.
    append_lock: Mutex<AppendScratch>,
    exemplars: Mutex<ExemplarStore>,
    metadata: RwLock<BTreeMap<String, Vec<MetricMetadata>>>,
    /// Serialises maintenance passes.
    maintenance_lock: Mutex<()>,
    totals: Mutex<AppendCounts>,
    blocks_cut: AtomicU64,
    compactions: AtomicU64,
    blocks_deleted: AtomicU64,
    replay_malformed: AtomicU64,
    /// Scratch for replay, reused across records.
    replay_scratch: Mutex<Vec<RefSample>>,
}

/// Buffers an append reuses, so that a batch of ten thousand series does not allocate ten
/// thousand small vectors. Held under `append_lock`.
#[derive(Default)]
struct AppendScratch {
    series_record: Vec<u8>,
    samples_record: Vec<u8>,
    exemplars_record: Vec<u8>,
    /// One entry's samples, sorted by time.
    sorted: Vec<Sample>,
    /// Accepted samples in batch order: (batch entry, sample, in order or not).
    judged: Vec<(usize, Sample, Verdict)>,
    /// Accepted samples, for the WAL record.
    accepted: Vec<RefSample>,
    accepted_exemplars: Vec<RefExemplar>,
    /// Newest in-order timestamp and value bits per series after the batch's earlier samples.
    virtual_last: HashMap<u64, (i64, u64), std::hash::BuildHasherDefault<super::head::IntHasher>>,
    /// Out-of-order (series, timestamp) pairs accepted earlier in the batch.
    batch_ooo: HashSet<(u64, i64)>,
}

impl AppendScratch {
    fn clear(&mut self) {
        self.series_record.clear();
        self.samples_record.clear();
        self.exemplars_record.clear();
        self.sorted.clear();
        self.judged.clear();
        self.accepted.clear();
        self.accepted_exemplars.clear();
        self.virtual_last.clear();
        self.batch_ooo.clear();
    }

    /// Gives memory back after an unusually large batch.
    fn release_if_large(&mut self) {
        const KEEP: usize = 1 << 18;
        if self.judged.capacity() > KEEP {
            *self = AppendScratch::default();
        }
    }
}

/// A series an append is about to write to: existing, or created by this append.
enum Target {
    Existing(Arc<MemSeries>),
    New { series_ref: u64 },
    Unknown,
}

/// Where a judged sample goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    InOrder,
    OutOfOrder,
    Duplicate,
    RejectOutOfOrder,
    RejectTooOld,
    RejectDuplicateTimestamp,
}

impl MetricsStore {
    /// Opens the store in `dir`: loads its blocks (a damaged one is moved aside and reported),
    /// removes what an interrupted block write or compaction left. The WAL is replayed into it
    /// next, then attached with [`MetricsStore::attach_wal`].
    pub fn open(dir: &Path, options: MetricsOptions) -> Result<MetricsStore, MetricsError> {
        let blocks_dir = dir.join("blocks");
        fs::create_dir_all(&blocks_dir).map_err(MetricsError::io(format!("creating {}", blocks_dir.display())))?;
        let mut blocks = Vec::new();
        let entries =
            fs::read_dir(&blocks_dir).map_err(MetricsError::io(format!("listing {}", blocks_dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(MetricsError::io(format!("listing {}", blocks_dir.display())))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            if name.ends_with(".tmp") {
                tracing::info!(block = %name, "removing unfinished metrics block");
                fs::remove_dir_all(&path).map_err(MetricsError::io(format!("removing {}", path.display())))?;
                continue;
            }
            if name.ends_with(".corrupt") || !path.is_dir() {
                continue;
            }
            match Block::open(&path) {
                Ok(block) => blocks.push(Arc::new(block)),
                Err(error) => {
                    let aside = blocks_dir.join(format!("{name}.corrupt"));
                    tracing::error!(block = %name, error = %error, moved_to = %aside.display(), "metrics block is damaged, not reading it");
                    fs::rename(&path, &aside).map_err(MetricsError::io(format!("moving {}", path.display())))?;
                }
            }
        }
        // A compaction that crashed after writing its output but before deleting its inputs
        // leaves both: the inputs are named as sources of the output.
        let replaced: HashSet<String> = blocks
            .iter()
            .filter(|block| block.meta.level > 1)
            .flat_map(|block| block.meta.sources.iter().filter(|s| **s != block.meta.id).cloned())
            .collect();
        let (superseded, kept): (Vec<_>, Vec<_>) =
            blocks.into_iter().partition(|block| replaced.contains(&block.meta.id));
        for block in superseded {
            tracing::info!(block = %block.meta.id, "removing metrics block already compacted into another");
            fs::remove_dir_all(&block.dir).map_err(MetricsError::io(format!("removing {}", block.dir.display())))?;
        }
        let mut blocks = kept;
        blocks.sort_by_key(|block| (block.meta.min_t, block.meta.max_t));

        let head = Head::new();
        if let Some(max_t) = blocks.iter().map(|block| block.meta.max_t).max() {
            head.set_min_valid_t(max_t.saturating_add(1));
        }
        let max_exemplars = options.max_exemplars;
        Ok(MetricsStore {
            dir: dir.to_path_buf(),
            options,
            head,
            blocks: RwLock::new(blocks),
            wal: OnceLock::new(),
            append_lock: Mutex::new(AppendScratch::default()),
            exemplars: Mutex::new(ExemplarStore::new(max_exemplars)),
            metadata: RwLock::new(BTreeMap::new()),
            maintenance_lock: Mutex::new(()),
            totals: Mutex::new(AppendCounts::default()),
            blocks_cut: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            blocks_deleted: AtomicU64::new(0),
            replay_malformed: AtomicU64::new(0),
            replay_scratch: Mutex::new(Vec::new()),
        })
    }

    /// Starts accepting appends, which go to `wal`. Called once replay is over.
    pub fn attach_wal(&self, wal: Arc<Wal>) {
        let _ = self.wal.set(wal);
    }

    fn blocks(&self) -> Vec<Arc<Block>> {
        self.blocks.read().unwrap_or_else(|poison| poison.into_inner()).clone()
    }

    // -----------------------------------------------------------------------------------------
    // Replay

    /// Applies one WAL record of a metrics kind. Everything the WAL holds was acknowledged, so
    /// every sample is taken (in order if newer than its series, out of order otherwise),
    /// whatever the window is now.
    pub fn replay_record(&self, kind: RecordKind, payload: &[u8]) {
        let malformed = || {
            self.replay_malformed.fetch_add(1, Ordering::Relaxed);
        };
        if kind == record_kinds::METRICS_SERIES {
            match records::decode_series(payload) {
                Ok(series) => {
                    for record in series {
                        self.head.insert(record.series_ref, &record.labels);
                    }
                }
                Err(_) => malformed(),
            }
        } else if kind == record_kinds::METRICS_SAMPLES {
            let mut scratch = self.replay_scratch.lock().unwrap_or_else(|poison| poison.into_inner());
            scratch.clear();
            if records::decode_samples(payload, &mut scratch).is_err() {
                malformed();
                return;
            }
            self.head.apply_replayed(&scratch);
        } else if kind == record_kinds::METRICS_EXEMPLARS {
            match records::decode_exemplars(payload) {
                Ok(exemplars) => {
                    let mut store = self.exemplars.lock().unwrap_or_else(|poison| poison.into_inner());
                    for entry in exemplars {
                        store.add(
                            entry.series_ref,
                            Exemplar { labels: entry.labels, value: entry.value, t_ms: entry.t_ms },
                        );
                    }
                }
                Err(_) => malformed(),
            }
        } else if kind == record_kinds::METRICS_METADATA {
            match records::decode_metadata(payload) {
                Ok(entries) => {
                    for (name, metadata) in entries {
                        self.remember_metadata(name, metadata);
                    }
                }
                Err(_) => malformed(),
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Append

    fn judge(&self, state: &SeriesState, last_t: i64, last_bits: u64, sample: Sample, head_max_t: i64) -> Verdict {
        let min_valid_t = self.head.min_valid_t();
        let window = self.options.out_of_order_window_ms;
        if sample.t_ms < min_valid_t {
            return Verdict::RejectTooOld;
        }
        if last_t == i64::MIN || sample.t_ms > last_t {
            return Verdict::InOrder;
        }
        if sample.t_ms == last_t {
            return if sample.value.to_bits() == last_bits {
                Verdict::Duplicate
            } else {
                Verdict::RejectDuplicateTimestamp
            };
        }
        if window <= 0 {
            return Verdict::RejectOutOfOrder;
        }
        if sample.t_ms < head_max_t.saturating_sub(window) {
            return Verdict::RejectTooOld;
        }
        match state.out_of_order_at(sample.t_ms) {
            Some(value) if value.to_bits() == sample.value.to_bits() => Verdict::Duplicate,
            Some(_) => Verdict::RejectDuplicateTimestamp,
            None => Verdict::OutOfOrder,
        }
    }

    fn append_batch(&self, batch: &[SeriesSamples<'_>]) -> Result<AppendResult, MetricsError> {
        let wal =
            self.wal.get().ok_or(MetricsError::NotWritable("the write-ahead log is still being replayed"))?.clone();
        let mut guard = self.append_lock.lock().unwrap_or_else(|poison| poison.into_inner());
        let scratch = &mut *guard;
        scratch.clear();
        let mut counts = AppendCounts::default();

        // 1. Resolve every series; labels seen for the first time get a new reference.
        let mut pending_new: HashMap<Labels, u64> = HashMap::new();
        let mut targets = Vec::with_capacity(batch.len());
        for entry in batch {
            let target = match entry.key {
                SeriesKey::Ref(series_ref) => match self.head.get(series_ref.0) {
                    Some(series) => Target::Existing(series),
                    None => Target::Unknown,
                },
                SeriesKey::Labels(labels) => match self.head.find(labels) {
                    Some(series) => Target::Existing(series),
                    None => {
                        let series_ref = *pending_new.entry(labels.clone()).or_insert_with(|| {
                            counts.series_created += 1;
                            self.head.allocate_ref()
                        });
                        Target::New { series_ref }
                    }
                },
            };
            targets.push(target);
        }

        // 2. Judge every sample against its series as it will be after the earlier samples of
        // the batch. Verdicts go to one flat list, grouped by batch entry.
        let mut head_max_t = self.head.max_t();
        let mut refs = Vec::with_capacity(batch.len());
        {
            let exemplar_store = self.exemplars.lock().unwrap_or_else(|poison| poison.into_inner());
            let empty_state = SeriesState::default();
            for (entry_index, (entry, target)) in batch.iter().zip(&targets).enumerate() {
                let (series_ref, guard) = match target {
                    Target::Existing(series) => (series.series_ref, Some(series.lock())),
                    Target::New { series_ref } => (*series_ref, None),
                    Target::Unknown => {
                        counts.unknown_series_ref += 1;
                        refs.push(None);
                        continue;
                    }
                };
                refs.push(Some(super::SeriesRef(series_ref)));
                let state: &SeriesState = guard.as_deref().unwrap_or(&empty_state);
                let (mut last_t, mut last_bits) = scratch
                    .virtual_last
                    .remove(&series_ref)
                    .unwrap_or((if guard.is_some() { state.last_t } else { i64::MIN }, state.last_bits));
                scratch.sorted.clear();
                scratch.sorted.extend_from_slice(entry.samples);
                if !scratch.sorted.is_sorted_by_key(|sample| sample.t_ms) {
                    scratch.sorted.sort_by_key(|sample| sample.t_ms);
                }
                for index in 0..scratch.sorted.len() {
                    let sample = scratch.sorted[index];
                    let mut verdict = self.judge(state, last_t, last_bits, sample, head_max_t);
                    if verdict == Verdict::OutOfOrder && !scratch.batch_ooo.insert((series_ref, sample.t_ms)) {
                        verdict = Verdict::Duplicate;
                    }
                    match verdict {
                        Verdict::InOrder => {
                            last_t = sample.t_ms;
                            last_bits = sample.value.to_bits();
                            head_max_t = head_max_t.max(sample.t_ms);
                            scratch.accepted.push(RefSample { series_ref, sample });
                            counts.appended += 1;
                        }
                        Verdict::OutOfOrder => {
                            scratch.accepted.push(RefSample { series_ref, sample });
                            counts.appended_out_of_order += 1;
                        }
                        Verdict::Duplicate => counts.duplicates += 1,
                        Verdict::RejectOutOfOrder => counts.rejected_out_of_order += 1,
                        Verdict::RejectTooOld => counts.rejected_too_old += 1,
                        Verdict::RejectDuplicateTimestamp => counts.rejected_duplicate_timestamp += 1,
                    }
                    if matches!(verdict, Verdict::InOrder | Verdict::OutOfOrder) {
                        scratch.judged.push((entry_index, sample, verdict));
                    }
                }
                scratch.virtual_last.insert(series_ref, (last_t, last_bits));
                let mut newest_exemplar = i64::MIN;
                for exemplar in entry.exemplars {
                    if exemplar_store.accepts(series_ref, exemplar.t_ms) && exemplar.t_ms > newest_exemplar {
                        newest_exemplar = exemplar.t_ms;
                        scratch.accepted_exemplars.push(RefExemplar {
                            series_ref,
                            t_ms: exemplar.t_ms,
                            value: exemplar.value,
                            labels: exemplar.labels.clone(),
                        });
                        counts.exemplars_appended += 1;
                    } else {
                        counts.exemplars_rejected += 1;
                    }
                }
            }
        }

        // 3. Log: new series first, then samples and exemplars, as one batch.
        let mut wal_batch: Vec<(RecordKind, &[u8])> = Vec::with_capacity(3);
        if !pending_new.is_empty() {
            let mut new_series: Vec<(u64, &Labels)> = pending_new.iter().map(|(labels, r)| (*r, labels)).collect();
            new_series.sort_by_key(|(r, _)| *r);
            records::encode_series(&mut scratch.series_record, &new_series);
            wal_batch.push((record_kinds::METRICS_SERIES, scratch.series_record.as_slice()));
        }
        if !scratch.accepted.is_empty() {
            records::encode_samples(&mut scratch.samples_record, &scratch.accepted);
            wal_batch.push((record_kinds::METRICS_SAMPLES, scratch.samples_record.as_slice()));
        }
        if !scratch.accepted_exemplars.is_empty() {
            records::encode_exemplars(&mut scratch.exemplars_record, &scratch.accepted_exemplars);
            wal_batch.push((record_kinds::METRICS_EXEMPLARS, scratch.exemplars_record.as_slice()));
        }
        if !wal_batch.is_empty() {
            wal.append(&wal_batch)?;
        }

        // 4. Apply to the head, one series lock per run of the same batch entry.
        let mut created: HashMap<u64, Arc<MemSeries>> = HashMap::new();
        let mut new_series: Vec<(u64, Labels)> = pending_new.into_iter().map(|(labels, r)| (r, labels)).collect();
        new_series.sort_by_key(|(r, _)| *r);
        for (series_ref, labels) in new_series {
            created.insert(series_ref, self.head.insert(series_ref, &labels));
        }
        let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
        let mut position = 0;
        while position < scratch.judged.len() {
            let entry_index = scratch.judged[position].0;
            let run_end =
                position + scratch.judged[position..].iter().take_while(|(i, _, _)| *i == entry_index).count();
            let series = match &targets[entry_index] {
                Target::Existing(series) => Some(series),
                Target::New { series_ref } => created.get(series_ref),
                Target::Unknown => None,
            };
            if let Some(series) = series {
                let mut state = series.lock();
                for (_, sample, verdict) in &scratch.judged[position..run_end] {
                    match verdict {
                        Verdict::InOrder => state.append_in_order(*sample),
                        _ => state.insert_out_of_order(*sample),
                    }
                    min_t = min_t.min(sample.t_ms);
                    max_t = max_t.max(sample.t_ms);
                }
            }
            position = run_end;
        }
        if min_t <= max_t {
            self.head.observe_times(min_t, max_t);
        }
        if !scratch.accepted_exemplars.is_empty() {
            let mut store = self.exemplars.lock().unwrap_or_else(|poison| poison.into_inner());
            for entry in scratch.accepted_exemplars.drain(..) {
                store.add(entry.series_ref, Exemplar { labels: entry.labels, value: entry.value, t_ms: entry.t_ms });
            }
        }
        scratch.release_if_large();
        drop(guard);
        self.totals.lock().unwrap_or_else(|poison| poison.into_inner()).add(&counts);
        Ok(AppendResult { refs, counts })
    }

    fn remember_metadata(&self, name: String, metadata: MetricMetadata) {
        let mut all = self.metadata.write().unwrap_or_else(|poison| poison.into_inner());
        let entries = all.entry(name).or_default();
        if !entries.contains(&metadata) {
            // The newest description first; a few alternatives are kept, as Prometheus reports
            // every distinct one its targets expose.
            entries.insert(0, metadata);
            entries.truncate(8);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Maintenance

    /// Cuts blocks from the head when it spans more than one and a half block ranges, compacts
    /// blocks, applies retention. Blocking: run it off the async runtime.
    pub fn maintenance(&self) -> Result<MaintenanceOutcome, MetricsError> {
        let _serial = self.maintenance_lock.lock().unwrap_or_else(|poison| poison.into_inner());
        let mut outcome = MaintenanceOutcome::default();
        self.head.pack_closed_chunks();
        let range = self.options.block_range_ms.max(1);
        loop {
            let (min_t, max_t) = (self.head.min_t(), self.head.max_t());
            if min_t == i64::MAX || max_t == i64::MIN || max_t.saturating_sub(min_t) <= range / 2 * 3 {
                break;
            }
            let boundary = min_t.div_euclid(range) * range + range;
            self.cut_block(boundary)?;
            outcome.blocks_cut += 1;
            outcome.checkpoint_below = Some(boundary);
        }
        outcome.compactions = self.compact()?;
        outcome.blocks_deleted = self.apply_retention()?;
        Ok(outcome)
    }

    /// Writes every head sample below `boundary` into a new block, then drops them from the head.
    fn cut_block(&self, boundary: i64) -> Result<(), MetricsError> {
        let started = Instant::now();
        // From here on nothing below the boundary is accepted, so the head below it is final.
        {
            let _appends = self.append_lock.lock().unwrap_or_else(|poison| poison.into_inner());
            self.head.set_min_valid_t(boundary);
        }
        let mut writer = BlockWriter::create(&self.dir.join("blocks"), 1, Vec::new())?;
        for (labels, series) in self.head.all_series_sorted() {
            let samples = series.lock().samples_before(boundary);
            writer.add_series_samples(&labels, &samples)?;
        }
        let written = writer.finish()?;
        if let Some(meta) = &written {
            let block = Arc::new(Block::open(&self.dir.join("blocks").join(&meta.id))?);
            let mut blocks = self.blocks.write().unwrap_or_else(|poison| poison.into_inner());
            blocks.push(block);
            blocks.sort_by_key(|block| (block.meta.min_t, block.meta.max_t));
        }
        {
            let _appends = self.append_lock.lock().unwrap_or_else(|poison| poison.into_inner());
            for (_, series) in self.head.all_series_sorted() {
                series.lock().truncate_before(boundary);
            }
            let removed = self.head.remove_empty_series();
            self.head.recompute_min_t(boundary);
            tracing::info!(
                boundary_ms = boundary,
                series = written.as_ref().map_or(0, |m| m.series),
                samples = written.as_ref().map_or(0, |m| m.samples),
                series_removed = removed,
                duration_ms = started.elapsed().as_millis() as u64,
                "metrics block cut from head"
            );
        }
        self.blocks_cut.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The ranges blocks are compacted into: the block range times 3, 9, 27, ... up to a tenth
    /// of the retention (at most 31 days).
    fn compaction_ranges(&self) -> Vec<i64> {
        let limit = self.options.retention_ms.map_or(31 * 86_400_000, |r| (r / 10).min(31 * 86_400_000));
        let mut ranges = Vec::new();
        let mut range = self.options.block_range_ms.saturating_mul(3);
        while range <= limit {
            ranges.push(range);
            range = range.saturating_mul(3);
        }
        ranges
    }

    /// Merges overlapping blocks, then groups of blocks that fill a larger aligned range.
    fn compact(&self) -> Result<u64, MetricsError> {
        let mut compactions = 0;
        // Overlapping blocks (out-of-order data cut after its range was already a block).
        loop {
            let blocks = self.blocks();
            let mut group: Vec<Arc<Block>> = Vec::new();
            for pair in blocks.windows(2) {
                if pair[1].meta.min_t <= pair[0].meta.max_t {
                    group = blocks
                        .iter()
                        .filter(|b| {
                            b.meta.min_t <= pair[0].meta.max_t.max(pair[1].meta.max_t)
                                && b.meta.max_t >= pair[0].meta.min_t
                        })
                        .cloned()
                        .collect();
                    break;
                }
            }
            if group.len() < 2 {
                break;
            }
            self.merge_blocks(&group)?;
            compactions += 1;
        }
        for range in self.compaction_ranges() {
            loop {
                let blocks = self.blocks();
                let newest = blocks.iter().map(|b| b.meta.max_t).max().unwrap_or(i64::MIN).max(self.head.max_t());
                let mut groups: BTreeMap<i64, Vec<Arc<Block>>> = BTreeMap::new();
                for block in &blocks {
                    let window = block.meta.min_t.div_euclid(range);
                    if block.meta.max_t.div_euclid(range) == window {
                        groups.entry(window).or_default().push(block.clone());
                    }
                }
                let ready = groups.into_iter().find(|(window, group)| {
                    let window_end = (window + 1) * range;
                    group.len() > 1
                        && newest >= window_end
                        && group.iter().any(|b| b.meta.max_t - b.meta.min_t < range - 1)
                });
                let Some((_, group)) = ready else { break };
                self.merge_blocks(&group)?;
                compactions += 1;
            }
        }
        self.compactions.fetch_add(compactions, Ordering::Relaxed);
        Ok(compactions)
    }

    fn merge_blocks(&self, group: &[Arc<Block>]) -> Result<(), MetricsError> {
        let started = Instant::now();
        let level = group.iter().map(|b| b.meta.level).max().unwrap_or(1) + 1;
        let sources: Vec<String> = group.iter().map(|b| b.meta.id.clone()).collect();
        let mut merged: BTreeMap<Labels, Vec<(ChunkBytes, i64, i64)>> = BTreeMap::new();
        for block in group {
            for (labels, chunks) in block.all_series()? {
                merged.entry(labels).or_default().extend(chunks);
            }
        }
        let mut writer = BlockWriter::create(&self.dir.join("blocks"), level, sources.clone())?;
        for (labels, mut chunks) in merged {
            chunks.sort_by_key(|(_, min_t, _)| *min_t);
            let overlapping = chunks.windows(2).any(|pair| pair[1].1 <= pair[0].2);
            if overlapping {
                let series = Series::new(
                    labels.clone(),
                    chunks
                        .into_iter()
                        .map(|(bytes, min_t, max_t)| SampleSource::Chunk { bytes, min_t, max_t })
                        .collect(),
                    TimeRange::all(),
                );
                let samples = series.samples().map_err(|error| MetricsError::CorruptBlock {
                    block: sources.join(","),
                    problem: format!("chunk of {labels} does not decode: {error}"),
                })?;
                writer.add_series_samples(&labels, &samples)?;
            } else {
                writer.add_series_chunks(&labels, &chunks)?;
            }
        }
        let meta = writer.finish()?;
        let new_block = match &meta {
            Some(meta) => Some(Arc::new(Block::open(&self.dir.join("blocks").join(&meta.id))?)),
            None => None,
        };
        {
            let mut blocks = self.blocks.write().unwrap_or_else(|poison| poison.into_inner());
            blocks.retain(|b| !sources.contains(&b.meta.id));
            if let Some(block) = new_block {
                blocks.push(block);
            }
            blocks.sort_by_key(|block| (block.meta.min_t, block.meta.max_t));
        }
        for block in group {
            fs::remove_dir_all(&block.dir).map_err(MetricsError::io(format!("removing {}", block.dir.display())))?;
        }
        tracing::info!(
            inputs = group.len(),
            level,
            samples = meta.as_ref().map_or(0, |m| m.samples),
            duration_ms = started.elapsed().as_millis() as u64,
            "metrics blocks compacted"
        );
        Ok(())
    }

    fn apply_retention(&self) -> Result<u64, MetricsError> {
        let blocks = self.blocks();
        let newest = blocks.iter().map(|b| b.meta.max_t).max().unwrap_or(i64::MIN).max(self.head.max_t());
        let mut doomed: Vec<Arc<Block>> = Vec::new();
        if let Some(retention) = self.options.retention_ms {
            let cutoff = newest.saturating_sub(retention);
            doomed.extend(blocks.iter().filter(|b| b.meta.max_t < cutoff).cloned());
        }
        if let Some(limit) = self.options.retention_bytes {
            let mut total: u64 =
                blocks.iter().filter(|b| !doomed.iter().any(|d| d.meta.id == b.meta.id)).map(|b| b.size_bytes).sum();
            for block in &blocks {
                if total <= limit {
                    break;
                }
                if !doomed.iter().any(|d| d.meta.id == block.meta.id) {
                    total -= block.size_bytes;
                    doomed.push(block.clone());
                }
            }
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        {
            let mut current = self.blocks.write().unwrap_or_else(|poison| poison.into_inner());
            current.retain(|b| !doomed.iter().any(|d| d.meta.id == b.meta.id));
        }
        for block in &doomed {
            tracing::info!(block = %block.meta.id, min_t = block.meta.min_t, max_t = block.meta.max_t, "metrics block deleted by retention");
            fs::remove_dir_all(&block.dir).map_err(MetricsError::io(format!("removing {}", block.dir.display())))?;
        }
        self.blocks_deleted.fetch_add(doomed.len() as u64, Ordering::Relaxed);
        Ok(doomed.len() as u64)
    }

    /// For a WAL checkpoint after blocks were cut below `below`: what to keep of a metrics
    /// record. `None` drops it; `Some(bytes)` keeps it (rewritten when partly obsolete).
    pub fn checkpoint_record(&self, kind: RecordKind, payload: &[u8], below: i64) -> Option<Vec<u8>> {
        if kind == record_kinds::METRICS_SERIES {
            let series = records::decode_series(payload).ok()?;
            let live: Vec<(u64, &Labels)> = series
                .iter()
                .filter(|record| {
                    self.head.get(record.series_ref).is_some_and(|s| self.head.labels_of(&s) == record.labels)
                })
                .map(|record| (record.series_ref, &record.labels))
                .collect();
            if live.is_empty() {
                return None;
            }
            let mut out = Vec::new();
            records::encode_series(&mut out, &live);
            Some(out)
        } else if kind == record_kinds::METRICS_SAMPLES {
            let mut samples = Vec::new();
            records::decode_samples(payload, &mut samples).ok()?;
            samples.retain(|entry| entry.sample.t_ms >= below && self.head.get(entry.series_ref).is_some());
            if samples.is_empty() {
                return None;
            }
            let mut out = Vec::new();
            records::encode_samples(&mut out, &samples);
            Some(out)
        } else if kind == record_kinds::METRICS_EXEMPLARS {
            let mut exemplars = records::decode_exemplars(payload).ok()?;
            exemplars.retain(|entry| entry.t_ms >= below && self.head.get(entry.series_ref).is_some());
            if exemplars.is_empty() {
                return None;
            }
            let mut out = Vec::new();
            records::encode_exemplars(&mut out, &exemplars);
            Some(out)
        } else {
            // Metadata is small and has no time: keep it.
            Some(payload.to_vec())
        }
    }

    pub fn stats(&self) -> MetricsStats {
        let blocks = self.blocks();
        MetricsStats {
            head_series: self.head.series_count() as u64,
            head_chunks: self.head.chunk_count() as u64,
            head_memory_bytes: self.head.memory_bytes() as u64,
            head_min_t: self.head.min_t(),
            head_max_t: self.head.max_t(),
            blocks: blocks.len() as u64,
            block_bytes: blocks.iter().map(|b| b.size_bytes).sum(),
            block_samples: blocks.iter().map(|b| b.meta.samples).sum(),
            appended: *self.totals.lock().unwrap_or_else(|poison| poison.into_inner()),
            blocks_cut: self.blocks_cut.load(Ordering::Relaxed),
            compactions: self.compactions.load(Ordering::Relaxed),
            blocks_deleted_by_retention: self.blocks_deleted.load(Ordering::Relaxed),
            replay_malformed_records: self.replay_malformed.load(Ordering::Relaxed),
            exemplars: self.exemplars.lock().unwrap_or_else(|poison| poison.into_inner()).len() as u64,
        }
    }

    /// Time ranges of the blocks, oldest first: for tests and the TSDB status endpoint.
    pub fn block_ranges(&self) -> Vec<(i64, i64)> {
        self.blocks().iter().map(|b| (b.meta.min_t, b.meta.max_t)).collect()
    }

    /// Checks every chunk checksum of every block.
    pub fn verify_blocks(&self) -> Result<(), MetricsError> {
        for block in self.blocks() {
            block.verify_chunks()?;
        }
        Ok(())
    }
}

impl MetricsAppender for MetricsStore {
    fn append(&self, batch: &[SeriesSamples<'_>]) -> Result<AppendResult, MetricsError> {
        self.append_batch(batch)
    }

    fn set_metadata(&self, metric_name: &str, metadata: MetricMetadata) -> Result<(), MetricsError> {
        let known = self
            .metadata
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .get(metric_name)
            .is_some_and(|entries| entries.first() == Some(&metadata));
        if known {
            return Ok(());
        }
        let wal = self.wal.get().ok_or(MetricsError::NotWritable("the write-ahead log is still being replayed"))?;
        let mut record = Vec::new();
        records::encode_metadata(&mut record, &[(metric_name, &metadata)]);
        wal.append_one(record_kinds::METRICS_METADATA, &record)?;
        self.remember_metadata(metric_name.to_string(), metadata);
        Ok(())
    }
}

impl MetricsQueryable for MetricsStore {
    fn select(&self, matchers: &[Matcher], range: TimeRange) -> Result<Vec<Series>, MetricsError> {
        // Each source answers in label order; the lists are merged in source order (blocks
        // oldest first, then the head), which is the order samples of equal time are kept in.
        // Each block answers in label order, the head joins in its sources (after the blocks',
        // which is the order samples of equal time are kept in) and adds its other series. With
        // many series, the label space is cut in parts done on threads of their own.
        let blocks: Vec<Arc<Block>> =
            self.blocks().into_iter().filter(|block| range.overlaps(block.meta.min_t, block.meta.max_t)).collect();
        let ids: Vec<Vec<u64>> = blocks.iter().map(|block| block.series_ids(matchers)).collect();
        let in_head = self.head.overlaps(range);
        // Room in each block series for the head's chunks, so that joining does not reallocate.
        let head_sources = if in_head { self.head.sources_hint(matchers, range) } else { 0 };
        self.head.with_view(|view| {
            let matched = if in_head { view.matching(matchers) } else { Vec::new() };
            let most = ids.iter().map(Vec::len).max().unwrap_or(0).max(matched.len());
            let threads = if most >= PARALLEL_SELECT_MIN_SERIES {
                std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_SELECT_THREADS)
            } else {
                1
            };
            let cuts = cut_label_space(&blocks, &ids, threads)?;
            let parts = in_parts(threads, |part| {
                let mut lists = Vec::with_capacity(blocks.len());
                for ((block, ids), cuts) in blocks.iter().zip(&ids).zip(&cuts) {
                    lists.push(block.select(&ids[cuts[part]..cuts[part + 1]], range, head_sources)?);
                }
                Ok(merge_sorted(lists))
            })?;
            let mut list: Vec<Series> = Vec::with_capacity(most);
            let mut in_order = true;
            for mut part in parts {
                // Parts follow each other in label order unless an index was out of order.
                if let (Some(last), Some(first)) = (list.last(), part.first()) {
                    in_order &= compare_labels(&last.labels, &first.labels) == std::cmp::Ordering::Less;
                }
                list.append(&mut part);
            }
            if !in_order {
                ensure_sorted(&mut list);
            }
            if matched.is_empty() {
                return Ok(list);
            }
            // The head's series go to those of the list with their labels, taken in the
            // head's order (about that of memory), in parts too.
            let keys = view.join_keys(&list);
            let head_threads = if matched.len() >= PARALLEL_SELECT_MIN_SERIES { threads } else { 1 };
            let taken = in_parts(head_threads, |part| {
                let (start, end) = (matched.len() * part / head_threads, matched.len() * (part + 1) / head_threads);
                Ok(view.join_part(&matched[start..end], &keys, range))
            })?;
            let others = view.join_finish(taken, &mut list, range);
            Ok(if others.is_empty() { list } else { merge_sorted(vec![list, others]) })
        })
    }

    fn label_names(&self, matchers: &[Matcher], range: TimeRange) -> Result<Vec<String>, MetricsError> {
        let mut names = BTreeSet::new();
        for block in self.blocks().iter().filter(|b| range.overlaps(b.meta.min_t, b.meta.max_t)) {
            names.extend(block.label_names(matchers)?);
        }
        for labels in self.head_labels_in_range(matchers, range) {
            names.extend(labels.iter().map(|label| label.name.to_string()));
        }
        Ok(names.into_iter().collect())
    }

    fn label_values(&self, name: &str, matchers: &[Matcher], range: TimeRange) -> Result<Vec<String>, MetricsError> {
        let mut values = BTreeSet::new();
        for block in self.blocks().iter().filter(|b| range.overlaps(b.meta.min_t, b.meta.max_t)) {
            values.extend(block.label_values(name, matchers)?);
        }
        for labels in self.head_labels_in_range(matchers, range) {
            if let Some(value) = labels.get(name) {
                values.insert(value.to_string());
            }
        }
        Ok(values.into_iter().collect())
    }

    fn exemplars(&self, selectors: &[Vec<Matcher>], range: TimeRange) -> Result<Vec<SeriesExemplars>, MetricsError> {
        let mut series_by_ref: HashMap<u64, Labels> = HashMap::new();
        for matchers in selectors {
            for (labels, series) in self.head.matching(matchers) {
                series_by_ref.insert(series.series_ref, labels);
            }
        }
        let refs: HashSet<u64> = series_by_ref.keys().copied().collect();
        let found = self.exemplars.lock().unwrap_or_else(|poison| poison.into_inner()).query(&refs, range);
        let mut out: Vec<SeriesExemplars> = found
            .into_iter()
            .filter_map(|(series_ref, exemplars)| {
                series_by_ref.remove(&series_ref).map(|series| SeriesExemplars { series, exemplars })
            })
            .collect();
        out.sort_by(|a, b| a.series.cmp(&b.series));
        Ok(out)
    }

    fn metadata(&self, metric_name: Option<&str>) -> Result<Vec<(String, Vec<MetricMetadata>)>, MetricsError> {
        let all = self.metadata.read().unwrap_or_else(|poison| poison.into_inner());
        Ok(match metric_name {
            Some(name) => all.get(name).map(|entries| vec![(name.to_string(), entries.clone())]).unwrap_or_default(),
            None => all.iter().map(|(name, entries)| (name.clone(), entries.clone())).collect(),
        })
    }
}

/// Runs `work` for parts `0..parts`, part 0 on this thread and each other on a thread of its
/// own; the results come in part order. A panic in a part (a bug) is raised again here.
fn in_parts<T: Send>(
    parts: usize,
    work: impl Fn(usize) -> Result<T, MetricsError> + Sync,
) -> Result<Vec<T>, MetricsError> {
    if parts <= 1 {
        return Ok(vec![work(0)?]);
    }
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (1..parts).map(|part| scope.spawn(move || work(part))).collect();
        let mut results = vec![work(0)];
        for handle in handles {
            results.push(handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        }
        results.into_iter().collect()
    })
}

/// Cuts the label space of a select into `parts` consecutive parts, as positions in each
/// block's IDs (`cuts[block]` holds `parts + 1` positions, from 0 to the end): at the labels
/// of the middle series of the block with the most, looked for in the others by bisection.
fn cut_label_space(blocks: &[Arc<Block>], ids: &[Vec<u64>], parts: usize) -> Result<Vec<Vec<usize>>, MetricsError> {
    let largest = ids.iter().enumerate().max_by_key(|(_, ids)| ids.len()).map(|(index, _)| index);
    let mut pivots = Vec::with_capacity(parts.saturating_sub(1));
    if let Some(largest) = largest {
        for part in 1..parts {
            let position = ids[largest].len() * part / parts;
            if let Some(&id) = ids[largest].get(position) {
                pivots.push(blocks[largest].labels_of(id)?);
            }
        }
    }
    let mut cuts = Vec::with_capacity(blocks.len());
    for (block, ids) in blocks.iter().zip(ids) {
        let mut block_cuts = Vec::with_capacity(parts + 1);
        block_cuts.push(0);
        for pivot in &pivots {
            // The first series whose labels are not below the pivot, from the last cut on.
            let (mut low, mut high) = (block_cuts.last().copied().unwrap_or(0), ids.len());
            while low < high {
                let middle = low + (high - low) / 2;
                if compare_labels(&block.labels_of(ids[middle])?, pivot) == std::cmp::Ordering::Less {
                    low = middle + 1;
                } else {
                    high = middle;
                }
            }
            block_cuts.push(low);
        }
        while block_cuts.len() < parts + 1 {
            block_cuts.push(ids.len());
        }
        if let Some(last) = block_cuts.last_mut() {
            *last = ids.len();
        }
        cuts.push(block_cuts);
    }
    Ok(cuts)
}

impl MetricsStore {
    fn head_labels_in_range(&self, matchers: &[Matcher], range: TimeRange) -> Vec<Labels> {
        if !range.overlaps(self.head.min_t(), self.head.max_t()) {
            return Vec::new();
        }
        self.head
            .matching(matchers)
            .into_iter()
            .filter(|(_, series)| series.lock().bounds().is_some_and(|(lo, hi)| range.overlaps(lo, hi)))
            .map(|(labels, _)| labels)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::MatchOp;
    use crate::metrics::memory::MemoryMetrics;
    use crate::metrics::{MetricsAppender, STALE_NAN, SeriesKey, SeriesSamples};
    use crate::wal::{SyncPolicy, WalOptions};
    use crate::{Storage, StorageOptions};

    const MINUTE: i64 = 60_000;

    /// What a select answers, as comparable values.
    fn answers(store: &dyn MetricsQueryable, matchers: &[Matcher], range: TimeRange) -> Vec<(String, Vec<(i64, u64)>)> {
        let selected = store.select(matchers, range).unwrap();
        let mut out = Vec::with_capacity(selected.len());
        for series in &selected {
            let mut samples = series.samples().unwrap();
            // Range selectors drop staleness markers; the comparison keeps them as they are.
            samples.retain(|sample| range.contains(sample.t_ms));
            out.push((series.labels.to_string(), samples.iter().map(|s| (s.t_ms, s.value.to_bits())).collect()));
        }
        out
    }

    #[test]
    fn selects_in_parts_answer_as_the_whole() {
        // Enough series for a select to be cut in parts, across several blocks and the head:
        // series that stop before the head (blocks only), series that start late (head only),
        // series in both, out-of-order samples, a staleness marker.
        let dir = tempfile::tempdir().unwrap();
        let metrics = MetricsOptions {
            block_range_ms: 10 * MINUTE,
            out_of_order_window_ms: 5 * MINUTE,
            retention_ms: None,
            ..MetricsOptions::default()
        };
        let options = StorageOptions {
            wal: WalOptions { segment_size_bytes: 8 << 20, sync: SyncPolicy::Never },
            metrics,
            ..StorageOptions::default()
        };
        let storage = Storage::open(dir.path(), options).unwrap();
        let memory = MemoryMetrics::new();
        let series: Vec<Labels> = (0..PARALLEL_SELECT_MIN_SERIES + 600)
            .map(|i| {
                let (id, group) = (format!("{i:05}"), (i % 7).to_string());
                let name = if i % 11 == 0 { "other_total" } else { "work_total" };
                Labels::from_pairs([("__name__", name), ("group", group.as_str()), ("id", id.as_str())]).unwrap()
            })
            .collect();
        let alive = |i: usize, t: i64| match i % 5 {
            0 => t < 22 * MINUTE,
            1 => t >= 37 * MINUTE,
            _ => true,
        };
        for step in 0..(50 * MINUTE / 15_000) {
            let t = step * 15_000 + 3_000;
            let samples: Vec<[Sample; 1]> = (0..series.len())
                .map(|i| {
                    let value =
                        if i % 389 == 0 && step == 150 { STALE_NAN } else { (step as f64) * (1.0 + i as f64 / 8.0) };
                    [Sample { t_ms: t, value }]
                })
                .collect();
            let batch: Vec<SeriesSamples> = (0..series.len())
                .filter(|&i| alive(i, t))
                .map(|i| SeriesSamples { key: SeriesKey::Labels(&series[i]), samples: &samples[i], exemplars: &[] })
                .collect();
            storage.metrics().append(&batch).unwrap();
            memory.append(&batch).unwrap();
            if step == 26 * MINUTE / 15_000 || step == 44 * MINUTE / 15_000 {
                storage.maintenance().unwrap();
            }
        }
        storage.maintenance().unwrap();
        // Out of order, inside the window, between samples already there.
        for i in (0..series.len()).step_by(97).filter(|&i| alive(i, 47 * MINUTE)) {
            let late = [Sample { t_ms: 47 * MINUTE + 10_000, value: -1.0 }];
            let batch = [SeriesSamples { key: SeriesKey::Labels(&series[i]), samples: &late, exemplars: &[] }];
            assert_eq!(storage.metrics().append(&batch).unwrap().counts.appended_out_of_order, 1);
            memory.append(&batch).unwrap();
        }
        assert!(storage.metrics().block_ranges().len() >= 2, "{:?}", storage.metrics().block_ranges());
        let matcher = |op, name: &str, value: &str| Matcher::new(op, name, value).unwrap();
        let selections = [
            vec![],
            vec![matcher(MatchOp::Equal, "__name__", "work_total")],
            vec![matcher(MatchOp::RegexMatch, "group", "1|4"), matcher(MatchOp::NotEqual, "__name__", "other_total")],
            vec![matcher(MatchOp::Equal, "id", "00042")],
        ];
        let ranges = [
            TimeRange::all(),
            TimeRange::new(5 * MINUTE, 30 * MINUTE).unwrap(),
            TimeRange::new(38 * MINUTE, 60 * MINUTE).unwrap(),
            TimeRange::new(0, 21 * MINUTE).unwrap(),
        ];
        for matchers in &selections {
            for range in ranges {
                let from_store = answers(storage.metrics(), matchers, range);
                let from_memory = answers(&memory, matchers, range);
                assert_eq!(from_store.len(), from_memory.len(), "{matchers:?} {range:?}");
                assert!(from_store == from_memory, "{matchers:?} {range:?}");
            }
        }
    }
}
