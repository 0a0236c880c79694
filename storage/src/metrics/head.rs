//! The head: the in-memory part of the metrics store. It holds the most recent samples of every
//! active series in XOR chunks (one open chunk per series, closed chunks kept as shared bytes),
//! out-of-order samples beside them, and an inverted index from label pairs to series.
//!
//! The store serialises appends and head truncation; the head itself only guarantees that
//! readers see a consistent series (each series' state sits behind its own mutex).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::chunk::XorChunk;
use super::postings::{self, PostingsIndex};
use super::series::{SampleSource, compare_labels};
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
    /// Whether the bytes were re-encoded in the smallest encoding (see [`Head::pack_closed_chunks`]).
    pub packed: bool,
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
        SeriesState { last_t: i64::MIN, ..SeriesState::default() }
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
            widen(first.min_t, self.closed.last().map_or(first.max_t, |c| c.max_t));
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
                packed: false,
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
        self.ooo.binary_search_by_key(&t_ms, |s| s.t_ms).ok().map(|i| self.ooo[i].value)
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
        if let Some(open) = self.open.as_ref().filter(|open| open.count() > 0 && open.min_t() < before) {
            let _ = super::chunk::decode(&open.to_bytes(), &mut samples);
        }
        samples.retain(|sample| sample.t_ms < before);
        let ooo: Vec<Sample> = self.ooo.iter().copied().filter(|sample| sample.t_ms < before).collect();
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
            let chunk = super::chunk::encode_best(&samples);
            self.closed[0] =
                HeadChunk { bytes: chunk.into(), min_t: samples[0].t_ms, max_t: first.max_t, packed: true };
        }
        if let Some(open) = self.open.as_ref().filter(|open| open.count() > 0 && open.min_t() < before) {
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

    /// Re-encodes closed chunks not yet packed in the smallest encoding. Returns bytes saved.
    pub fn pack_closed(&mut self) -> usize {
        let mut saved = 0;
        let mut samples = Vec::new();
        for chunk in self.closed.iter_mut().filter(|chunk| !chunk.packed) {
            samples.clear();
            if super::chunk::decode(&chunk.bytes, &mut samples).is_ok() {
                let best = super::chunk::encode_best(&samples);
                saved += chunk.bytes.len().saturating_sub(best.len());
                if best.len() < chunk.bytes.len() {
                    chunk.bytes = best.into();
                }
            }
            chunk.packed = true;
        }
        if self.closed.capacity() > self.closed.len() * 2 {
            self.closed.shrink_to_fit();
        }
        saved
    }

    /// Bytes of memory the samples take.
    pub fn memory_bytes(&self) -> usize {
        self.closed.iter().map(|c| c.bytes.len() + std::mem::size_of::<HeadChunk>()).sum::<usize>()
            + self.open.as_ref().map_or(0, XorChunk::memory_bytes)
            + self.ooo.capacity() * std::mem::size_of::<Sample>()
    }
}

/// A fast hasher for integer keys (series references, label hashes, symbol IDs), which need no
/// protection against crafted collisions: multiply-xorshift.
#[derive(Default, Clone, Copy)]
pub(crate) struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_u32(&mut self, value: u32) {
        self.write_u64(u64::from(value));
    }
}

pub(crate) type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// The sources of head series taken for a select, each for a series of its list (by
/// position): closed chunks shared, the open chunks' bytes copied into one buffer (shared by
/// all once done: one allocation instead of one per series), out-of-order samples copied.
pub(crate) struct HeadSources {
    /// (position in the list, source), a series' sources together and in order.
    sources: Vec<(u32, SampleSource)>,
    open_bytes: Vec<u8>,
    /// Sources standing in for open chunks until `open_bytes` is shared: (index in
    /// `sources`, bytes in `open_bytes`).
    pending: Vec<(usize, std::ops::Range<usize>)>,
    /// What the stand-ins hold meanwhile.
    empty: Arc<[u8]>,
    /// Matched series no series of the list has, by reference.
    others: Vec<u64>,
}

impl HeadSources {
    fn new() -> HeadSources {
        HeadSources {
            sources: Vec::new(),
            open_bytes: Vec::new(),
            pending: Vec::new(),
            empty: Arc::from(&[][..]),
            others: Vec::new(),
        }
    }

    /// Takes the sources over `range` of `state` (locked) for the series at `position`.
    fn add(&mut self, state: &SeriesState, range: TimeRange, position: u32) {
        for chunk in &state.closed {
            if range.overlaps(chunk.min_t, chunk.max_t) {
                let bytes = ChunkBytes::Owned(chunk.bytes.clone());
                self.sources.push((position, SampleSource::Chunk { bytes, min_t: chunk.min_t, max_t: chunk.max_t }));
            }
        }
        if let Some(open) = state.open.as_ref().filter(|open| open.count() > 0)
            && range.overlaps(open.min_t(), open.max_t())
        {
            let start = self.open_bytes.len();
            open.write_bytes_into(&mut self.open_bytes);
            self.pending.push((self.sources.len(), start..self.open_bytes.len()));
            let bytes = ChunkBytes::Owned(self.empty.clone());
            self.sources.push((position, SampleSource::Chunk { bytes, min_t: open.min_t(), max_t: open.max_t() }));
        }
        if state.ooo.iter().any(|sample| range.contains(sample.t_ms)) {
            let ooo: Vec<Sample> = state.ooo.iter().copied().filter(|sample| range.contains(sample.t_ms)).collect();
            self.sources.push((position, SampleSource::Samples(ooo.into())));
        }
    }

    /// Puts the open chunks' bytes, shared, in place of their stand-ins.
    fn share_open_chunks(&mut self) {
        let shared: Arc<[u8]> = std::mem::take(&mut self.open_bytes).into();
        for (index, bytes) in self.pending.drain(..) {
            if let Some((_, SampleSource::Chunk { bytes: stand_in, .. })) = self.sources.get_mut(index) {
                *stand_in = ChunkBytes::Shared { bytes: shared.clone(), start: bytes.start, end: bytes.end };
            }
        }
    }

    /// Appends each source to the sources of its series in `list`, then puts those in order.
    fn give_to(self, list: &mut [Series]) {
        let mut previous = None;
        let mut given = Vec::new();
        for (position, source) in self.sources {
            let Some(series) = list.get_mut(position as usize) else { continue };
            series.sources.push(source);
            if previous != Some(position) {
                given.push(position);
                previous = Some(position);
            }
        }
        for position in given {
            if let Some(series) = list.get_mut(position as usize) {
                series.sources_added();
            }
        }
    }
}

/// The series of a select's list (from blocks) by the head symbol IDs of their labels, for
/// finding the head's matched series among them (see [`HeadView::join_keys`]).
pub(crate) struct JoinKeys {
    /// The IDs (name, value) of each keyed series, one after another.
    ids: Vec<(u32, u32)>,
    /// (hash of a series' IDs, its position in the list, where its IDs are in `ids`), sorted.
    keys: Vec<(u64, u32, u32, u32)>,
}

/// A hash of label symbol IDs (any fixed mixing will do: equal IDs are checked after).
fn ids_hash(ids: &[(u32, u32)]) -> u64 {
    let mut hasher = IntHasher::default();
    for &(name, value) in ids {
        hasher.write_u64((u64::from(name) << 32) | u64::from(value));
    }
    hasher.finish()
}

/// A read-only view of the head's index for a select: the matching series found and joined
/// with the series blocks gave, from one thread or several.
#[derive(Clone, Copy)]
pub(crate) struct HeadView<'a> {
    index: &'a HeadIndex,
}

impl HeadView<'_> {
    /// The references of the series matching `matchers`, ascending.
    pub fn matching(self, matchers: &[Matcher]) -> Vec<u64> {
        postings::resolve(self.index, matchers)
    }

    /// Keys `list` (series from blocks) by the head symbol IDs of their labels: a series with
    /// a string the head does not hold is not in the head.
    pub fn join_keys(self, list: &[Series]) -> JoinKeys {
        let mut symbols = SymbolIds::default();
        let mut ids = Vec::with_capacity(list.len() * list.first().map_or(0, |series| series.labels.len()));
        let mut keys = Vec::with_capacity(list.len());
        for (position, series) in list.iter().enumerate() {
            let start = ids.len();
            let all_known = series.labels.iter().all(|label| {
                let name = symbols.get(&self.index.symbols, &label.name);
                let value = symbols.get(&self.index.symbols, &label.value);
                name.zip(value).map(|pair| ids.push(pair)).is_some()
            });
            if !all_known {
                ids.truncate(start);
                continue;
            }
            keys.push((ids_hash(&ids[start..]), position as u32, start as u32, ids.len() as u32));
        }
        keys.sort_unstable();
        JoinKeys { ids, keys }
    }

    /// Takes the sources over `range` of the matched series `part` (references, in order, as
    /// [`HeadView::matching`] gave them: about the order the series are in memory), each for
    /// the series of the keyed list with its labels; those without one are kept aside.
    pub fn join_part(self, part: &[u64], keys: &JoinKeys, range: TimeRange) -> HeadSources {
        let mut taken = HeadSources::new();
        for series_ref in part {
            let Some(series) = self.index.series.get(series_ref) else { continue };
            let hash = ids_hash(&series.label_ids);
            let first = keys.keys.partition_point(|key| key.0 < hash);
            let found = keys.keys[first..]
                .iter()
                .take_while(|key| key.0 == hash)
                .find(|&&(_, _, start, end)| keys.ids.get(start as usize..end as usize) == Some(&series.label_ids[..]));
            match found {
                Some(&(_, position, _, _)) => taken.add(&series.lock(), range, position),
                None => taken.others.push(*series_ref),
            }
        }
        taken.share_open_chunks();
        taken
    }

    /// Gives the sources taken by [`HeadView::join_part`] to the series of `list`; returns
    /// the matched series no series of the list has that have samples in `range`, sorted by
    /// labels.
    pub fn join_finish(self, parts: Vec<HeadSources>, list: &mut [Series], range: TimeRange) -> Vec<Series> {
        let mut others = HeadSources::new();
        let mut labels = Vec::new();
        for part in parts {
            for series_ref in &part.others {
                let Some(series) = self.index.series.get(series_ref) else { continue };
                others.add(&series.lock(), range, labels.len() as u32);
                labels.push(self.index.labels_of(series));
            }
            part.give_to(list);
        }
        others.share_open_chunks();
        let mut others_list: Vec<Series> =
            labels.into_iter().map(|labels| Series { labels, sources: Vec::new(), range }).collect();
        others.give_to(&mut others_list);
        others_list.retain(Series::has_data);
        // Label sets in the head are unique, so an unstable sort gives the one order.
        others_list.sort_unstable_by(|a, b| compare_labels(&a.labels, &b.labels));
        others_list
    }
}

/// Head symbol IDs of strings from elsewhere (a block's labels), looked up once per string:
/// keyed by the address of the shared string, which the labels holding it keep alive.
#[derive(Default)]
struct SymbolIds(IntMap<u64, Option<u32>>);

impl SymbolIds {
    fn get(&mut self, symbols: &Symbols, text: &Arc<str>) -> Option<u32> {
        let address = Arc::as_ptr(text).cast::<u8>() as u64;
        *self.0.entry(address).or_insert_with(|| symbols.lookup(text))
    }
}

/// Applies replayed samples to their series; returns their time bounds.
fn apply_replayed_samples(index: &HeadIndex, samples: &[super::records::RefSample]) -> (i64, i64) {
    let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
    let mut current: Option<&Arc<MemSeries>> = None;
    for entry in samples {
        if current.is_none_or(|series| series.series_ref != entry.series_ref) {
            current = index.series.get(&entry.series_ref);
        }
        let Some(series) = current else { continue };
        let mut state = series.lock();
        if state.last_t == i64::MIN || entry.sample.t_ms > state.last_t {
            state.append_in_order(entry.sample);
        } else if entry.sample.t_ms != state.last_t {
            state.insert_out_of_order(entry.sample);
        }
        min_t = min_t.min(entry.sample.t_ms);
        max_t = max_t.max(entry.sample.t_ms);
    }
    (min_t, max_t)
}

/// A series in the head. Its labels are stored as symbol IDs (8 bytes a label); they are turned
/// back into strings when a query needs them.
#[derive(Debug)]
pub(crate) struct MemSeries {
    pub series_ref: u64,
    label_ids: Box<[(u32, u32)]>,
    state: Mutex<SeriesState>,
}

impl MemSeries {
    pub fn lock(&self) -> MutexGuard<'_, SeriesState> {
        // A panic while holding a series lock cannot leave a torn chunk: XorChunk::append only
        // mutates after all bits are computed. Recovering the guard is safe.
        self.state.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Interned label strings with reference counts, so a value shared by a million series is
/// stored once and a string no series uses any more is freed.
#[derive(Default)]
struct Symbols {
    ids: HashMap<Arc<str>, u32>,
    strings: Vec<Option<Arc<str>>>,
    uses: Vec<u32>,
    free: Vec<u32>,
}

impl Symbols {
    fn intern(&mut self, text: &str) -> u32 {
        if let Some(id) = self.ids.get(text) {
            self.uses[*id as usize] += 1;
            return *id;
        }
        let text: Arc<str> = Arc::from(text);
        let id = match self.free.pop() {
            Some(id) => {
                self.strings[id as usize] = Some(text.clone());
                self.uses[id as usize] = 1;
                id
            }
            None => {
                self.strings.push(Some(text.clone()));
                self.uses.push(1);
                (self.strings.len() - 1) as u32
            }
        };
        self.ids.insert(text, id);
        id
    }

    fn release(&mut self, id: u32) {
        let Some(uses) = self.uses.get_mut(id as usize) else {
            return;
        };
        *uses = uses.saturating_sub(1);
        if *uses == 0
            && let Some(text) = self.strings[id as usize].take()
        {
            self.ids.remove(&text);
            self.free.push(id);
        }
    }

    fn lookup(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    fn get(&self, id: u32) -> Arc<str> {
        // IDs come from series that hold a use of them, so the slot is filled.
        self.strings.get(id as usize).and_then(Clone::clone).unwrap_or_else(|| Arc::from(""))
    }
}

/// Everything behind the head's one index lock: series, label hash lookup, postings, symbols.
#[derive(Default)]
struct HeadIndex {
    series: IntMap<u64, Arc<MemSeries>>,
    /// Label-set hash → the series with that hash (almost always one).
    by_hash: IntMap<u64, u64>,
    /// Further series for a hash that collided.
    collisions: IntMap<u64, Vec<u64>>,
    /// Series refs per label name and value (symbol IDs), sorted ascending.
    postings: IntMap<u32, IntMap<u32, Vec<u64>>>,
    symbols: Symbols,
}

impl HeadIndex {
    fn labels_of(&self, series: &MemSeries) -> Labels {
        let labels: Vec<Label> = series
            .label_ids
            .iter()
            .map(|(name, value)| Label { name: self.symbols.get(*name), value: self.symbols.get(*value) })
            .collect();
        Labels::from_sorted_unchecked(labels)
    }

    /// The symbol IDs of `labels`, or `None` if some string is not interned (then no series
    /// has these labels).
    fn ids_of(&self, labels: &Labels) -> Option<Vec<(u32, u32)>> {
        labels
            .iter()
            .map(|label| Some((self.symbols.lookup(&label.name)?, self.symbols.lookup(&label.value)?)))
            .collect()
    }

    fn candidates(&self, hash: u64) -> impl Iterator<Item = u64> + '_ {
        self.by_hash.get(&hash).copied().into_iter().chain(self.collisions.get(&hash).into_iter().flatten().copied())
    }

    fn find(&self, labels: &Labels) -> Option<Arc<MemSeries>> {
        let ids = self.ids_of(labels)?;
        self.candidates(labels.stable_hash())
            .filter_map(|series_ref| self.series.get(&series_ref))
            .find(|series| *series.label_ids == *ids)
            .cloned()
    }
}

impl PostingsIndex for HeadIndex {
    fn postings(&self, name: &str, value: &str) -> Vec<u64> {
        let (Some(name), Some(value)) = (self.symbols.lookup(name), self.symbols.lookup(value)) else {
            return Vec::new();
        };
        self.postings.get(&name).and_then(|values| values.get(&value)).cloned().unwrap_or_default()
    }

    fn values(&self, name: &str) -> Vec<String> {
        let Some(name) = self.symbols.lookup(name) else {
            return Vec::new();
        };
        self.postings
            .get(&name)
            .map(|values| values.keys().map(|id| self.symbols.get(*id).to_string()).collect())
            .unwrap_or_default()
    }

    fn all_postings(&self) -> Vec<u64> {
        let mut all: Vec<u64> = self.series.keys().copied().collect();
        all.sort_unstable();
        all
    }
}

pub(crate) struct Head {
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
            index: RwLock::new(HeadIndex::default()),
            next_ref: AtomicU64::new(1),
            max_t: AtomicI64::new(i64::MIN),
            min_t: AtomicI64::new(i64::MAX),
            min_valid_t: AtomicI64::new(i64::MIN),
        }
    }

    fn read_index(&self) -> RwLockReadGuard<'_, HeadIndex> {
        self.index.read().unwrap_or_else(|poison| poison.into_inner())
    }

    fn write_index(&self) -> RwLockWriteGuard<'_, HeadIndex> {
        self.index.write().unwrap_or_else(|poison| poison.into_inner())
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

    /// Widens the head's time bounds to include `[min_t, max_t]`.
    pub fn observe_times(&self, min_t: i64, max_t: i64) {
        if max_t > self.max_t.load(Ordering::Relaxed) {
            self.max_t.fetch_max(max_t, Ordering::AcqRel);
        }
        if min_t < self.min_t.load(Ordering::Relaxed) {
            self.min_t.fetch_min(min_t, Ordering::AcqRel);
        }
    }

    pub fn series_count(&self) -> usize {
        self.read_index().series.len()
    }

    pub fn get(&self, series_ref: u64) -> Option<Arc<MemSeries>> {
        self.read_index().series.get(&series_ref).cloned()
    }

    pub fn find(&self, labels: &Labels) -> Option<Arc<MemSeries>> {
        self.read_index().find(labels)
    }

    /// The labels of a series of this head.
    pub fn labels_of(&self, series: &MemSeries) -> Labels {
        self.read_index().labels_of(series)
    }

    /// Reserves a reference for a series about to be created.
    pub fn allocate_ref(&self) -> u64 {
        self.next_ref.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a series under a reference from [`Head::allocate_ref`] or the WAL. If a series with
    /// the same labels exists, that one is returned instead.
    pub fn insert(&self, series_ref: u64, labels: &Labels) -> Arc<MemSeries> {
        let mut index = self.write_index();
        if let Some(existing) = index.find(labels) {
            return existing;
        }
        let label_ids: Box<[(u32, u32)]> = labels
            .iter()
            .map(|label| (index.symbols.intern(&label.name), index.symbols.intern(&label.value)))
            .collect();
        let series = Arc::new(MemSeries { series_ref, label_ids, state: Mutex::new(SeriesState::new()) });
        for (name, value) in series.label_ids.iter() {
            let list = index.postings.entry(*name).or_default().entry(*value).or_default();
            // References only grow, except when replay creates series out of order.
            match list.last() {
                Some(last) if *last > series_ref => {
                    let position = list.partition_point(|r| *r < series_ref);
                    list.insert(position, series_ref);
                }
                _ => list.push(series_ref),
            }
        }
        let hash = labels.stable_hash();
        match index.by_hash.entry(hash) {
            std::collections::hash_map::Entry::Occupied(_) => {
                index.collisions.entry(hash).or_default().push(series_ref);
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(series_ref);
            }
        }
        index.series.insert(series_ref, series.clone());
        self.next_ref.fetch_max(series_ref + 1, Ordering::Relaxed);
        series
    }

    /// Removes series that hold no samples. Returns how many.
    pub fn remove_empty_series(&self) -> usize {
        let mut index = self.write_index();
        let empty: Vec<u64> =
            index.series.iter().filter(|(_, series)| series.lock().bounds().is_none()).map(|(r, _)| *r).collect();
        for series_ref in &empty {
            let Some(series) = index.series.remove(series_ref) else {
                continue;
            };
            let hash = index.labels_of(&series).stable_hash();
            if index.by_hash.get(&hash) == Some(series_ref) {
                index.by_hash.remove(&hash);
                if let Some(mut others) = index.collisions.remove(&hash)
                    && let Some(first) = others.pop()
                {
                    index.by_hash.insert(hash, first);
                    if !others.is_empty() {
                        index.collisions.insert(hash, others);
                    }
                }
            } else if let Some(others) = index.collisions.get_mut(&hash) {
                others.retain(|r| r != series_ref);
                if others.is_empty() {
                    index.collisions.remove(&hash);
                }
            }
            for (name, value) in series.label_ids.iter() {
                if let Some(values) = index.postings.get_mut(name) {
                    if let Some(list) = values.get_mut(value) {
                        list.retain(|r| r != series_ref);
                        if list.is_empty() {
                            values.remove(value);
                        }
                    }
                    if values.is_empty() {
                        index.postings.remove(name);
                    }
                }
                index.symbols.release(*name);
                index.symbols.release(*value);
            }
        }
        empty.len()
    }

    /// The series matching `matchers` with their labels, sorted by labels.
    pub fn matching(&self, matchers: &[Matcher]) -> Vec<(Labels, Arc<MemSeries>)> {
        self.labelled(self.resolve(matchers))
    }

    /// The series matching `matchers`, without their labels (see [`Head::labelled`]): cheap
    /// enough to learn how many there are before deciding how to read them.
    pub fn resolve(&self, matchers: &[Matcher]) -> Vec<Arc<MemSeries>> {
        let index = self.read_index();
        let refs = postings::resolve(&*index, matchers);
        refs.iter().filter_map(|r| index.series.get(r)).cloned().collect()
    }

    /// Series from [`Head::resolve`] with their labels, sorted by labels; those removed from
    /// the head since (which hold no samples) are left out.
    pub fn labelled(&self, found: Vec<Arc<MemSeries>>) -> Vec<(Labels, Arc<MemSeries>)> {
        let index = self.read_index();
        let mut series: Vec<(Labels, Arc<MemSeries>)> = found
            .into_iter()
            // Still in the index: the symbols of its labels are still held.
            .filter(|series| index.series.get(&series.series_ref).is_some_and(|held| Arc::ptr_eq(held, series)))
            .map(|series| (index.labels_of(&series), series))
            .collect();
        drop(index);
        // Label sets in the head are unique, so an unstable sort gives the one order.
        series.sort_unstable_by(|a, b| compare_labels(&a.0, &b.0));
        series
    }

    /// About how many sources each series matching `matchers` has over `range`, judged by
    /// the first: a capacity hint for callers that join them with others (at most 64).
    pub fn sources_hint(&self, matchers: &[Matcher], range: TimeRange) -> usize {
        let index = self.read_index();
        let first = postings::resolve(&*index, matchers).first().and_then(|first| index.series.get(first).cloned());
        drop(index);
        first.map_or(0, |series| {
            let state = series.lock();
            let closed = state.closed.iter().filter(|chunk| range.overlaps(chunk.min_t, chunk.max_t)).count();
            closed.min(62) + 2
        })
    }

    /// Whether the head may hold samples in `range`.
    pub fn overlaps(&self, range: TimeRange) -> bool {
        range.overlaps(self.min_t(), self.max_t())
    }

    /// Runs `select` with a read-only view of the head's index (held for as long).
    pub fn with_view<T>(&self, select: impl FnOnce(HeadView<'_>) -> T) -> T {
        let index = self.read_index();
        select(HeadView { index: &index })
    }

    /// Every series with its labels, sorted by labels, for cutting a block.
    pub fn all_series_sorted(&self) -> Vec<(Labels, Arc<MemSeries>)> {
        self.matching(&[])
    }

    /// Packs every closed chunk not yet packed: memory compaction, run by maintenance so that
    /// appends and replay do not pay for it. Returns bytes saved.
    pub fn pack_closed_chunks(&self) -> usize {
        let series: Vec<Arc<MemSeries>> = self.read_index().series.values().cloned().collect();
        series.iter().map(|series| series.lock().pack_closed()).sum()
    }

    /// Applies replayed samples: each is taken in order if newer than its series' newest sample,
    /// out of order otherwise. Series are looked up under one read of the index.
    pub fn apply_replayed(&self, samples: &[super::records::RefSample]) {
        let index = self.read_index();
        let (min_t, max_t) = apply_replayed_samples(&index, samples);
        drop(index);
        if min_t <= max_t {
            self.observe_times(min_t, max_t);
        }
    }

    /// Recomputes the head's minimum time after a truncation.
    pub fn recompute_min_t(&self, at_least: i64) {
        let mut min_t = i64::MAX;
        for series in self.read_index().series.values() {
            if let Some((lo, _)) = series.lock().bounds() {
                min_t = min_t.min(lo);
            }
        }
        self.min_t.store(if min_t == i64::MAX { at_least } else { min_t }, Ordering::Release);
    }

    /// Chunks held, open ones included.
    pub fn chunk_count(&self) -> usize {
        let series: Vec<Arc<MemSeries>> = self.read_index().series.values().cloned().collect();
        series
            .iter()
            .map(|series| {
                let state = series.lock();
                state.closed.len() + usize::from(state.open.as_ref().is_some_and(|open| open.count() > 0))
            })
            .sum()
    }

    /// Approximate bytes of memory the head uses: series, labels, index and chunks.
    pub fn memory_bytes(&self) -> usize {
        let index = self.read_index();
        let mut total = 0usize;
        for series in index.series.values() {
            total += std::mem::size_of::<MemSeries>() + 16; // the Arc's counts
            total += series.label_ids.len() * 8;
            total += series.lock().memory_bytes();
            total += 2 * 8 + 1; // entry in `series`
        }
        for values in index.postings.values() {
            for refs in values.values() {
                total += refs.capacity() * 8 + 4 + 24 + 1;
            }
        }
        total += index.by_hash.capacity() * 17;
        total += index.symbols.ids.keys().map(|s| s.len() + 16 + 16 + 4 + 8 + 4).sum::<usize>();
        total
    }
}
