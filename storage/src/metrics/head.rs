//! The head: the in-memory part of the metrics store. It holds the most recent samples of every
//! active series in XOR chunks (one open chunk per series, closed chunks kept as shared bytes),
//! out-of-order samples beside them, and an inverted index from label pairs to series.
//!
//! The store serialises appends and head truncation; the head itself only guarantees that
//! readers see a consistent series (each series' state sits behind its own mutex).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use super::chunk::XorChunk;
use super::postings::{self, PostingsIndex};
use super::series::SampleSource;
use super::{ChunkBytes, Sample, Series, TimeRange};
use crate::labels::{Label, Labels, Matcher};

/// Samples per head chunk before it is closed, as in Prometheus: small enough that a query of
/// recent data decodes little, large enough to compress well.
pub(crate) const HEAD_CHUNK_SAMPLES: usize = 120;

/// A closed head chunk.
#[derive(Debug, Clone)]
pub(crate) struct HeadChunk {
    pub bytes: Arc<[u8]>,
    pub min_t: i64,
    pub max_t: i64,
}

/// The mutable part of a series.
#[derive(Debug, Default)]
pub(crate) struct SeriesState {
    /// Closed chunks, oldest first.
    pub closed: Vec<HeadChunk>,
    /// The chunk in-order samples are appended to.
    pub open: Option<XorChunk>,
    /// Out-of-order samples, sorted by time, one per timestamp.
    pub ooo: Vec<Sample>,
    /// Timestamp of the newest in-order sample, `i64::MIN` if none.
    pub last_t: i64,
    /// Bits of the newest in-order sample's value.
    pub last_bits: u64,
}

impl SeriesState {
    fn new() -> SeriesState {
        SeriesState {
            last_t: i64::MIN,
            ..SeriesState::default()
        }
    }

    /// Smallest and largest sample time, or `None` without samples.
    pub fn bounds(&self) -> Option<(i64, i64)> {
        let mut bounds: Option<(i64, i64)> = None;
        let mut widen = |min_t: i64, max_t: i64| {
            bounds = Some(match bounds {
                Some((lo, hi)) => (lo.min(min_t), hi.max(max_t)),
                None => (min_t, max_t),
            });
        };
        if let Some(first) = self.closed.first() {
            widen(
                first.min_t,
                self.closed.last().map_or(first.max_t, |c| c.max_t),
            );
        }
        if let Some(open) = self.open.as_ref().filter(|open| open.count() > 0) {
            widen(open.min_t(), open.max_t());
        }
        if let (Some(first), Some(last)) = (self.ooo.first(), self.ooo.last()) {
            widen(first.t_ms, last.t_ms);
        }
        bounds
    }

    pub fn append_in_order(&mut self, sample: Sample) {
        let open = self.open.get_or_insert_with(XorChunk::new);
        if open.count() >= HEAD_CHUNK_SAMPLES {
            let full = std::mem::take(open);
            self.closed.push(HeadChunk {
                min_t: full.min_t(),
                max_t: full.max_t(),
                bytes: full.to_bytes().into(),
            });
        }
        let open = self.open.get_or_insert_with(XorChunk::new);
        open.append(sample.t_ms, sample.value);
        self.last_t = sample.t_ms;
        self.last_bits = sample.value.to_bits();
    }

    /// Inserts an out-of-order sample; an existing one at the same timestamp is kept.
    pub fn insert_out_of_order(&mut self, sample: Sample) {
        match self.ooo.binary_search_by_key(&sample.t_ms, |s| s.t_ms) {
            Ok(_) => {}
            Err(position) => self.ooo.insert(position, sample),
        }
    }

    /// The value stored out of order at `t_ms`, if any.
    pub fn out_of_order_at(&self, t_ms: i64) -> Option<f64> {
        self.ooo
            .binary_search_by_key(&t_ms, |s| s.t_ms)
            .ok()
            .map(|i| self.ooo[i].value)
    }

    /// Every sample with `t < before`, in time order, merged with out-of-order samples.
    pub fn samples_before(&self, before: i64) -> Vec<Sample> {
        let mut samples = Vec::new();
        for chunk in &self.closed {
            if chunk.min_t < before {
                // Head chunks were encoded here; a decode failure is impossible short of memory
                // corruption, and would only lose this chunk from the block.
                let _ = super::chunk::decode(&chunk.bytes, &mut samples);
            }
        }
        if let Some(open) = self
            .open
            .as_ref()
            .filter(|open| open.count() > 0 && open.min_t() < before)
        {
            let _ = super::chunk::decode(&open.to_bytes(), &mut samples);
        }
        samples.retain(|sample| sample.t_ms < before);
        let ooo: Vec<Sample> = self
            .ooo
            .iter()
            .copied()
            .filter(|sample| sample.t_ms < before)
            .collect();
        if !ooo.is_empty() {
            samples.extend(ooo);
            samples.sort_by_key(|sample| sample.t_ms);
            samples.dedup_by_key(|sample| sample.t_ms);
        }
        samples
    }

    /// Drops every sample with `t < before`. Returns whether the series still holds samples.
    pub fn truncate_before(&mut self, before: i64) -> bool {
        self.closed.retain(|chunk| chunk.max_t >= before);
        if let Some(first) = self.closed.first().cloned()
            && first.min_t < before
        {
            let mut samples = Vec::new();
            let _ = super::chunk::decode(&first.bytes, &mut samples);
            samples.retain(|sample| sample.t_ms >= before);
            let chunk = super::chunk::encode_xor(&samples);
            self.closed[0] = HeadChunk {
                bytes: chunk.into(),
                min_t: samples[0].t_ms,
                max_t: first.max_t,
            };
        }
        if let Some(open) = self
            .open
            .as_ref()
            .filter(|open| open.count() > 0 && open.min_t() < before)
        {
            let mut samples = Vec::new();
            let _ = super::chunk::decode(&open.to_bytes(), &mut samples);
            let mut rebuilt = XorChunk::new();
            for sample in samples.iter().filter(|sample| sample.t_ms >= before) {
                rebuilt.append(sample.t_ms, sample.value);
            }
            self.open = (rebuilt.count() > 0).then_some(rebuilt);
        }
        self.ooo.retain(|sample| sample.t_ms >= before);
        self.bounds().is_some()
    }

    /// Sources for a query over `range`.
    fn sources(&self, range: TimeRange) -> Vec<SampleSource> {
        let mut sources = Vec::new();
        for chunk in &self.closed {
            if range.overlaps(chunk.min_t, chunk.max_t) {
                sources.push(SampleSource::Chunk {
                    bytes: ChunkBytes::Owned(chunk.bytes.clone()),
                    min_t: chunk.min_t,
                    max_t: chunk.max_t,
                });
            }
        }
        if let Some(open) = self.open.as_ref().filter(|open| open.count() > 0)
            && range.overlaps(open.min_t(), open.max_t())
        {
            sources.push(SampleSource::Chunk {
                bytes: ChunkBytes::Owned(open.to_bytes().into()),
                min_t: open.min_t(),
                max_t: open.max_t(),
            });
        }
        let ooo: Vec<Sample> = self
            .ooo
            .iter()
            .copied()
            .filter(|sample| range.contains(sample.t_ms))
            .collect();
        if !ooo.is_empty() {
            sources.push(SampleSource::Samples(ooo.into()));
        }
        sources
    }

    /// Bytes of memory the samples take.
    pub fn memory_bytes(&self) -> usize {
        self.closed
            .iter()
            .map(|c| c.bytes.len() + std::mem::size_of::<HeadChunk>())
            .sum::<usize>()
            + self.open.as_ref().map_or(0, XorChunk::memory_bytes)
            + self.ooo.capacity() * std::mem::size_of::<Sample>()
    }
}

/// A series in the head.
#[derive(Debug)]
pub(crate) struct MemSeries {
    pub series_ref: u64,
    pub labels: Labels,
    state: Mutex<SeriesState>,
}

impl MemSeries {
    pub fn lock(&self) -> MutexGuard<'_, SeriesState> {
        // A panic while holding a series lock cannot leave a torn chunk: XorChunk::append only
        // mutates after all bits are computed. Recovering the guard is safe.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Interned label strings, so that a label value shared by a million series is stored once.
#[derive(Default)]
struct Symbols {
    strings: HashMap<Arc<str>, ()>,
}

impl Symbols {
    fn intern(&mut self, text: &Arc<str>) -> Arc<str> {
        if let Some((existing, ())) = self.strings.get_key_value(text) {
            return existing.clone();
        }
        self.strings.insert(text.clone(), ());
        text.clone()
    }
}

#[derive(Default)]
struct HeadIndex {
    series: HashMap<u64, Arc<MemSeries>>,
    by_hash: HashMap<u64, Vec<u64>>,
    /// Series refs per label name and value, sorted ascending.
    postings: HashMap<Arc<str>, HashMap<Arc<str>, Vec<u64>>>,
}

impl PostingsIndex for HeadIndex {
    fn postings(&self, name: &str, value: &str) -> Vec<u64> {
        self.postings
            .get(name)
            .and_then(|values| values.get(value))
            .cloned()
            .unwrap_or_default()
    }

    fn values(&self, name: &str) -> Vec<String> {
        self.postings
            .get(name)
            .map(|values| values.keys().map(|v| v.to_string()).collect())
            .unwrap_or_default()
    }

    fn all_postings(&self) -> Vec<u64> {
        let mut all: Vec<u64> = self.series.keys().copied().collect();
        all.sort_unstable();
        all
    }
}

pub(crate) struct Head {
    symbols: Mutex<Symbols>,
    index: RwLock<HeadIndex>,
    next_ref: AtomicU64,
    /// Largest sample time appended, `i64::MIN` when empty.
    max_t: AtomicI64,
    /// Smallest sample time held, `i64::MAX` when empty.
    min_t: AtomicI64,
    /// Samples below this time have been cut into blocks; in-order appends must be at or above.
    min_valid_t: AtomicI64,
}

impl Head {
    pub fn new() -> Head {
        Head {
            symbols: Mutex::new(Symbols::default()),
            index: RwLock::new(HeadIndex::default()),
            next_ref: AtomicU64::new(1),
            max_t: AtomicI64::new(i64::MIN),
            min_t: AtomicI64::new(i64::MAX),
            min_valid_t: AtomicI64::new(i64::MIN),
        }
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, HeadIndex> {
        self.index
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn write_index(&self) -> std::sync::RwLockWriteGuard<'_, HeadIndex> {
        self.index
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn max_t(&self) -> i64 {
        self.max_t.load(Ordering::Acquire)
    }

    pub fn min_t(&self) -> i64 {
        self.min_t.load(Ordering::Acquire)
    }

    pub fn min_valid_t(&self) -> i64 {
        self.min_valid_t.load(Ordering::Acquire)
    }

    pub fn set_min_valid_t(&self, t: i64) {
        self.min_valid_t.fetch_max(t, Ordering::AcqRel);
    }

    /// Widens the head's time bounds to include `t`.
    pub fn observe_time(&self, t: i64) {
        self.max_t.fetch_max(t, Ordering::AcqRel);
        self.min_t.fetch_min(t, Ordering::AcqRel);
    }

    pub fn series_count(&self) -> usize {
        self.read_index().series.len()
    }

    pub fn get(&self, series_ref: u64) -> Option<Arc<MemSeries>> {
        self.read_index().series.get(&series_ref).cloned()
    }

    pub fn find(&self, labels: &Labels) -> Option<Arc<MemSeries>> {
        let index = self.read_index();
        let refs = index.by_hash.get(&labels.stable_hash())?;
        refs.iter()
            .filter_map(|r| index.series.get(r))
            .find(|series| series.labels == *labels)
            .cloned()
    }

    /// Reserves a reference for a series about to be created.
    pub fn allocate_ref(&self) -> u64 {
        self.next_ref.fetch_add(1, Ordering::Relaxed)
    }

    /// Makes sure future references are above `series_ref` (after replaying it).
    pub fn bump_ref(&self, series_ref: u64) {
        self.next_ref.fetch_max(series_ref + 1, Ordering::Relaxed);
    }

    /// Adds a series under a reference from [`Head::allocate_ref`] or the WAL. If a series with
    /// the same labels exists, that one is returned instead.
    pub fn insert(&self, series_ref: u64, labels: &Labels) -> Arc<MemSeries> {
        let interned = {
            let mut symbols = self
                .symbols
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let labels: Vec<Label> = labels
                .iter()
                .map(|label| Label {
                    name: symbols.intern(&label.name),
                    value: symbols.intern(&label.value),
                })
                .collect();
            Labels::from_sorted_unchecked(labels)
        };
        let mut index = self.write_index();
        let hash = interned.stable_hash();
        if let Some(existing) = index.by_hash.get(&hash).and_then(|refs| {
            refs.iter()
                .filter_map(|r| index.series.get(r))
                .find(|s| s.labels == interned)
        }) {
            return existing.clone();
        }
        let series = Arc::new(MemSeries {
            series_ref,
            labels: interned,
            state: Mutex::new(SeriesState::new()),
        });
        for label in &series.labels {
            let list = index
                .postings
                .entry(label.name.clone())
                .or_default()
                .entry(label.value.clone())
                .or_default();
            // References only grow, except when replay creates series out of order.
            match list.last() {
                Some(last) if *last > series_ref => {
                    let position = list.partition_point(|r| *r < series_ref);
                    list.insert(position, series_ref);
                }
                _ => list.push(series_ref),
            }
        }
        index.by_hash.entry(hash).or_default().push(series_ref);
        index.series.insert(series_ref, series.clone());
        self.bump_ref(series_ref);
        series
    }

    /// Removes series that hold no samples. Returns how many.
    pub fn remove_empty_series(&self) -> usize {
        let mut index = self.write_index();
        let empty: Vec<u64> = index
            .series
            .iter()
            .filter(|(_, series)| series.lock().bounds().is_none())
            .map(|(r, _)| *r)
            .collect();
        for series_ref in &empty {
            let Some(series) = index.series.remove(series_ref) else {
                continue;
            };
            let hash = series.labels.stable_hash();
            if let Some(refs) = index.by_hash.get_mut(&hash) {
                refs.retain(|r| r != series_ref);
                if refs.is_empty() {
                    index.by_hash.remove(&hash);
                }
            }
            for label in &series.labels {
                let Some(values) = index.postings.get_mut(&label.name) else {
                    continue;
                };
                if let Some(list) = values.get_mut(&label.value) {
                    list.retain(|r| r != series_ref);
                    if list.is_empty() {
                        values.remove(&label.value);
                    }
                }
                if values.is_empty() {
                    index.postings.remove(&label.name);
                }
            }
        }
        if !empty.is_empty() {
            // Drop symbols no series uses any more.
            let mut symbols = self
                .symbols
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            symbols
                .strings
                .retain(|text, ()| Arc::strong_count(text) > 1);
        }
        empty.len()
    }

    /// The series matching `matchers`, sorted by labels.
    pub fn matching(&self, matchers: &[Matcher]) -> Vec<Arc<MemSeries>> {
        let index = self.read_index();
        let refs = postings::resolve(&*index, matchers);
        let mut series: Vec<Arc<MemSeries>> = refs
            .iter()
            .filter_map(|r| index.series.get(r).cloned())
            .collect();
        drop(index);
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        series
    }

    /// The series matching `matchers` with samples in `range`.
    pub fn select(&self, matchers: &[Matcher], range: TimeRange) -> Vec<Series> {
        if !range.overlaps(self.min_t(), self.max_t()) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for series in self.matching(matchers) {
            let sources = series.lock().sources(range);
            let selected = Series::new(series.labels.clone(), sources, range);
            if selected.has_data() {
                out.push(selected);
            }
        }
        out
    }

    /// Every series, sorted by labels, for cutting a block.
    pub fn all_series_sorted(&self) -> Vec<Arc<MemSeries>> {
        self.matching(&[])
    }

    /// Recomputes the head's minimum time after a truncation.
    pub fn recompute_min_t(&self, at_least: i64) {
        let mut min_t = i64::MAX;
        for series in self.read_index().series.values() {
            if let Some((lo, _)) = series.lock().bounds() {
                min_t = min_t.min(lo);
            }
        }
        self.min_t.store(
            if min_t == i64::MAX { at_least } else { min_t },
            Ordering::Release,
        );
    }

    /// Approximate bytes of memory the head uses: series, labels, index and chunks.
    pub fn memory_bytes(&self) -> usize {
        let index = self.read_index();
        let mut total = 0usize;
        for series in index.series.values() {
            total += std::mem::size_of::<MemSeries>() + 16; // the Arc's counts
            total += series.labels.len() * std::mem::size_of::<Label>()
                + std::mem::size_of::<Vec<Label>>();
            total += std::mem::size_of::<SeriesState>() + series.lock().memory_bytes();
            total += 3 * 8 + 16; // entry in `series` with hashing overhead
        }
        for values in index.postings.values() {
            for refs in values.values() {
                total += refs.capacity() * 8 + 16 + 24 + 8;
            }
        }
        total += index.by_hash.len() * (8 + 24 + 8 + 8);
        drop(index);
        let symbols = self
            .symbols
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        total += symbols
            .strings
            .keys()
            .map(|s| s.len() + 16 + 16)
            .sum::<usize>();
        total
    }
}
