//! The head: the in-memory part of the traces store, one per tenant. It keeps each append's
//! WAL record as it was written (see `records`) and a map from trace ID to the spans of that
//! trace (record and offsets), so a trace is found with one lookup and an append copies each
//! span once. Records are grouped into segments of about `head_segment_bytes`; a full segment
//! is frozen, and its skip data (bounds and value index) is built the first time a search
//! asks for it, so that searches skip frozen segments that cannot match. Maintenance cuts the
//! whole head of a tenant into a block.
//!
//! Each tenant's appends and cuts are serialised by its `append` lock, so WAL order is head
//! order and a cut takes every span appended (by sequence number) before it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use super::assemble::{ResourceInfo, ScopeInfo, SpanInput, StoredSpan};
use super::hash::{FastMap, FastSet};
use super::index::{Bounds, IndexBuilder, ValueIndex};
use super::records::{self, Layout, MalformedRecord, RecordScratch, SpanLocation, SpanView, StringTable};
use super::{NsRange, SpanId, TraceId};

/// An append's record, kept as it went to the WAL. Its buffer goes back to
/// [`RECORD_BUFFERS`] when the head lets it go.
#[derive(Debug)]
pub(crate) struct HeadRecord {
    pub seq: u64,
    /// The WAL segment the record was written to (0 for a record replayed at open: the
    /// segment is not tracked there, and 0 keeps every segment).
    pub wal_segment: u32,
    pub bytes: Vec<u8>,
    /// The record's string table (`None` for a replayed record of the inline layout).
    pub strings: Option<StringTable>,
}

impl HeadRecord {
    /// The span at `offset`.
    pub fn span_at(&self, offset: u32) -> Result<SpanView<'_>, MalformedRecord> {
        records::span_at(&self.bytes, self.strings.as_ref(), offset)
    }

    /// Calls `each` with the location of every span, in order.
    pub fn walk(&self, each: impl FnMut(SpanLocation)) -> Result<(), MalformedRecord> {
        let layout = if self.strings.is_some() { Layout::Tabled } else { Layout::Inline };
        records::walk_record(&self.bytes, layout, each).map(|_| ())
    }
}

impl Drop for HeadRecord {
    fn drop(&mut self) {
        RECORD_BUFFERS.give(std::mem::take(&mut self.bytes));
    }
}

/// Buffers of records the heads let go (after a cut), kept for the next appends' records: a
/// head's memory is reused instead of returned, which spares the kernel zeroing fresh pages
/// for every record (a fifth of ingest's CPU otherwise). At most a head's worth is kept (the
/// largest `block_target_bytes` of the stores opened, at least [`RecordBuffers::MIN_CAP`]), and
/// nothing once no record was made for a while.
pub(crate) static RECORD_BUFFERS: RecordBuffers = RecordBuffers::new(RecordBuffers::MIN_CAP);

#[derive(Debug)]
pub(crate) struct RecordBuffers {
    free: Mutex<FreeBuffers>,
    /// The most bytes kept.
    cap: AtomicUsize,
}

#[derive(Debug, Default, PartialEq)]
struct FreeBuffers {
    /// By size class (see [`size_class`]): buffers that hold at least that class's bytes.
    classes: Vec<Vec<Vec<u8>>>,
    /// The sum of their capacities.
    total: usize,
    /// When a record was last made.
    last_use: Option<Instant>,
}

/// Size classes per doubling: a buffer made for a record is at most an eighth larger.
const CLASS_STEPS: usize = 8;

/// The smallest size class that holds `len` bytes: its number and bytes. Classes split each
/// doubling into [`CLASS_STEPS`] steps, so that records of about one size share buffers.
fn size_class(len: usize) -> (usize, usize) {
    let len = len.max(64);
    // 2^high <= len - 1 < 2^(high + 1), high >= 5.
    let high = (usize::BITS - 1 - (len - 1).leading_zeros()) as usize;
    let step = 1usize << (high - 3);
    let steps = (len - 1 - (1 << high)) / step;
    (high * CLASS_STEPS + steps, (1 << high) + (steps + 1) * step)
}

impl RecordBuffers {
    const MIN_CAP: usize = 64 << 20;

    const fn new(cap: usize) -> RecordBuffers {
        RecordBuffers {
            free: Mutex::new(FreeBuffers { classes: Vec::new(), total: 0, last_use: None }),
            cap: AtomicUsize::new(cap),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FreeBuffers> {
        // Buffers and their total are updated together: a panic cannot leave them apart.
        self.free.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// A copy of `parts` one after the other in a kept buffer of their size class (or of the
    /// next: at most a quarter larger), or in a new one of their class.
    pub fn copy_of(&self, parts: &[&[u8]]) -> Vec<u8> {
        let len: usize = parts.iter().map(|part| part.len()).sum();
        let (class, class_bytes) = size_class(len);
        let found = {
            let mut free = self.lock();
            free.last_use = Some(Instant::now());
            let FreeBuffers { classes, total, .. } = &mut *free;
            let found = classes.get_mut(class..).into_iter().flatten().take(2).find_map(|buffers| buffers.pop());
            if let Some(buffer) = &found {
                *total -= buffer.capacity();
            }
            found
        };
        let mut buffer = found.unwrap_or_else(|| Vec::with_capacity(class_bytes));
        buffer.clear();
        for part in parts {
            buffer.extend_from_slice(part);
        }
        buffer
    }

    /// Keeps up to `bytes` from now on (if that is more than before): a head's worth.
    pub fn keep_at_least(&self, bytes: u64) {
        self.cap.fetch_max(usize::try_from(bytes).unwrap_or(usize::MAX), Ordering::Relaxed);
    }

    /// Returns every kept buffer to the allocator when no record was made for `quiet`.
    pub fn release_if_unused(&self, quiet: Duration) {
        let released = {
            let mut free = self.lock();
            if free.last_use.is_some_and(|last| last.elapsed() < quiet) {
                return;
            }
            free.total = 0;
            std::mem::take(&mut free.classes)
        };
        drop(released);
    }

    fn give(&self, buffer: Vec<u8>) {
        if buffer.capacity() < 64 {
            return;
        }
        // The largest class the buffer holds.
        let (class, class_bytes) = size_class(buffer.capacity());
        let class = if class_bytes <= buffer.capacity() { class } else { class - 1 };
        let mut free = self.lock();
        let FreeBuffers { classes, total, .. } = &mut *free;
        if *total + buffer.capacity() <= self.cap.load(Ordering::Relaxed) {
            *total += buffer.capacity();
            if classes.len() <= class {
                classes.resize_with(class + 1, Vec::new);
            }
            classes[class].push(buffer);
        }
    }
}

/// Where a span of the head sits.
#[derive(Debug, Clone)]
pub(crate) struct SpanRef {
    pub record: Arc<HeadRecord>,
    pub span_offset: u32,
    pub resource_offset: u32,
    pub scope_offset: u32,
    pub span_id: SpanId,
}

/// A segment's skip data, built incrementally by the readers that need it: each brings it up
/// to date with the records it saw.
#[derive(Default)]
pub(crate) struct SegmentIndex {
    /// Records indexed so far (a prefix of the segment's records).
    indexed: usize,
    builder: Option<IndexBuilder>,
}

impl std::fmt::Debug for SegmentIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentIndex").field("indexed", &self.indexed).finish_non_exhaustive()
    }
}

impl SegmentIndex {
    /// Indexes the records past those already indexed; returns the bounds and value index.
    pub fn catch_up(
        &mut self,
        records: &[Arc<HeadRecord>],
        max_values_per_key: usize,
    ) -> Result<(&Bounds, &ValueIndex), MalformedRecord> {
        let builder = self.builder.get_or_insert_with(|| IndexBuilder::new(max_values_per_key));
        if records.len() > self.indexed {
            for_each_input(&records[self.indexed..], |input| builder.add_input(input))?;
            self.indexed = records.len();
        }
        Ok((&builder.bounds, &builder.values))
    }
}

/// A run of records.
#[derive(Debug)]
pub(crate) struct HeadSegment {
    pub records: Vec<Arc<HeadRecord>>,
    pub bytes: u64,
    pub spans: u64,
    pub min_time_ns: i64,
    pub max_time_ns: i64,
    pub index: Arc<Mutex<SegmentIndex>>,
}

impl HeadSegment {
    fn new() -> HeadSegment {
        HeadSegment {
            records: Vec::new(),
            bytes: 0,
            spans: 0,
            min_time_ns: i64::MAX,
            max_time_ns: i64::MIN,
            index: Arc::new(Mutex::new(SegmentIndex::default())),
        }
    }

    pub fn overlaps(&self, range: NsRange) -> bool {
        self.spans > 0 && range.overlaps(self.min_time_ns, self.max_time_ns)
    }

    /// A copy for a reader: the records so far and the shared index.
    pub fn snapshot(&self) -> HeadSegment {
        HeadSegment {
            records: self.records.clone(),
            bytes: self.bytes,
            spans: self.spans,
            min_time_ns: self.min_time_ns,
            max_time_ns: self.max_time_ns,
            index: self.index.clone(),
        }
    }
}

/// Calls `each` with every span of `records` as a borrowed [`SpanInput`], in record order.
pub(crate) fn for_each_input(
    records: &[Arc<HeadRecord>],
    mut each: impl FnMut(&SpanInput<'_>) -> Result<(), MalformedRecord>,
) -> Result<(), MalformedRecord> {
    for record in records {
        let mut contexts = RecordContexts::default();
        let mut failure = None;
        record.walk(|location| {
            if failure.is_some() {
                return;
            }
            let result = contexts.contexts(record, location.resource_offset, location.scope_offset).and_then(
                |(resource, scope)| {
                    let view = record.span_at(location.span_offset)?;
                    each(&SpanInput::from_view(view, &resource, &scope)?)
                },
            );
            if let Err(error) = result {
                failure = Some(error);
            }
        })?;
        if let Some(error) = failure {
            return Err(error);
        }
    }
    Ok(())
}

/// Materialises every span of `records`, in record order (resources and scopes once per group).
pub(crate) fn for_each_span(
    records: &[Arc<HeadRecord>],
    mut each: impl FnMut(StoredSpan),
) -> Result<(), MalformedRecord> {
    for record in records {
        let mut contexts = RecordContexts::default();
        let mut failure = None;
        record.walk(|location| {
            if failure.is_some() {
                return;
            }
            match contexts.stored_span(record, location.resource_offset, location.scope_offset, location.span_offset) {
                Ok(stored) => each(stored),
                Err(error) => failure = Some(error),
            }
        })?;
        if let Some(error) = failure {
            return Err(error);
        }
    }
    Ok(())
}

/// A group's resource and scope, shared by its spans.
type GroupContext = (Arc<ResourceInfo>, Arc<ScopeInfo>);

/// Resources and scopes of records, materialised once per distinct content: the groups of
/// many records usually carry the same few resources.
#[derive(Default)]
pub(crate) struct RecordContexts {
    /// By record and offset: the group's resource and scope.
    groups: FastMap<(usize, u32, u32), GroupContext>,
    /// By encoded bytes.
    resources: FastMap<Vec<u8>, Arc<ResourceInfo>>,
    scopes: FastMap<Vec<u8>, Arc<ScopeInfo>>,
}

impl RecordContexts {
    pub fn stored_span(
        &mut self,
        record: &Arc<HeadRecord>,
        resource_offset: u32,
        scope_offset: u32,
        span_offset: u32,
    ) -> Result<StoredSpan, MalformedRecord> {
        let (resource, scope) = self.contexts(record, resource_offset, scope_offset)?;
        let span = record.span_at(span_offset)?.to_owned()?;
        Ok(StoredSpan { resource, scope, span })
    }

    /// The resource and scope of a group of a record.
    pub fn contexts(
        &mut self,
        record: &Arc<HeadRecord>,
        resource_offset: u32,
        scope_offset: u32,
    ) -> Result<(Arc<ResourceInfo>, Arc<ScopeInfo>), MalformedRecord> {
        // The caller holds the record, so its address names it while this lives.
        let key = (Arc::as_ptr(record) as usize, resource_offset, scope_offset);
        if let Some((resource, scope)) = self.groups.get(&key) {
            return Ok((resource.clone(), scope.clone()));
        }
        let view = records::resource_at(&record.bytes, resource_offset)?;
        let resource = match self.resources.get(view.encoded) {
            Some(info) => info.clone(),
            None => {
                let (resource, schema_url) = view.to_owned()?;
                let info = ResourceInfo::new(resource, schema_url);
                self.resources.insert(view.encoded.to_vec(), info.clone());
                info
            }
        };
        let view = records::scope_at(&record.bytes, scope_offset)?;
        let scope = match self.scopes.get(view.encoded) {
            Some(info) => info.clone(),
            None => {
                let (scope, schema_url) = view.to_owned()?;
                let info = ScopeInfo::new(scope, schema_url);
                self.scopes.insert(view.encoded.to_vec(), info.clone());
                info
            }
        };
        self.groups.insert(key, (resource.clone(), scope.clone()));
        Ok((resource, scope))
    }

    /// The span a reference points at.
    pub fn resolve(&mut self, span: &SpanRef) -> Result<StoredSpan, MalformedRecord> {
        self.stored_span(&span.record, span.resource_offset, span.scope_offset, span.span_offset)
    }
}

/// What a tenant's head holds.
#[derive(Debug)]
pub(crate) struct HeadState {
    pub frozen: Vec<Arc<HeadSegment>>,
    pub open: HeadSegment,
    /// Every span of the head, by trace.
    pub traces: FastMap<TraceId, Vec<SpanRef>>,
    /// Record bytes and spans held.
    pub bytes: u64,
    pub spans: u64,
    /// Clock time of the first append into this head, for the maximum age of a head.
    pub first_append_ns: Option<i64>,
    /// One more than the highest sequence number in the head.
    pub seq_end: u64,
    /// The WAL segment of the head's first record: the head needs nothing before it.
    pub first_wal_segment: Option<u32>,
}

impl Default for HeadState {
    fn default() -> Self {
        HeadState {
            frozen: Vec::new(),
            open: HeadSegment::new(),
            traces: FastMap::default(),
            bytes: 0,
            spans: 0,
            first_append_ns: None,
            seq_end: 0,
            first_wal_segment: None,
        }
    }
}

impl HeadState {
    pub fn is_empty(&self) -> bool {
        self.spans == 0
    }

    /// Whether the head holds this span.
    pub fn contains(&self, trace_id: &TraceId, span_id: &SpanId) -> bool {
        self.traces.get(trace_id).is_some_and(|spans| spans.iter().any(|span| span.span_id == *span_id))
    }

    /// Adds a record whose spans sit at `locations`; a span the head already holds is not
    /// referenced again. Returns the number of traces created.
    pub fn insert(
        &mut self,
        record: HeadRecord,
        locations: &[SpanLocation],
        now_ns: i64,
        segment_target_bytes: u64,
    ) -> u64 {
        let record = Arc::new(record);
        let mut created = 0;
        for location in locations {
            let spans = self.traces.entry(location.trace_id).or_insert_with(|| {
                created += 1;
                Vec::new()
            });
            if spans.iter().any(|span| span.span_id == location.span_id) {
                continue;
            }
            spans.push(SpanRef {
                record: record.clone(),
                span_offset: location.span_offset,
                resource_offset: location.resource_offset,
                scope_offset: location.scope_offset,
                span_id: location.span_id,
            });
            let low = location.start_ns.min(location.end_ns);
            let high = location.start_ns.max(location.end_ns);
            self.open.min_time_ns = self.open.min_time_ns.min(low);
            self.open.max_time_ns = self.open.max_time_ns.max(high);
            self.open.spans += 1;
            self.spans += 1;
        }
        let bytes = record.bytes.len() as u64;
        self.seq_end = self.seq_end.max(record.seq + 1);
        let first = self.first_wal_segment.get_or_insert(record.wal_segment);
        *first = (*first).min(record.wal_segment);
        self.open.bytes += bytes;
        self.open.records.push(record);
        self.bytes += bytes;
        self.first_append_ns.get_or_insert(now_ns);
        if self.open.bytes >= segment_target_bytes {
            let full = std::mem::replace(&mut self.open, HeadSegment::new());
            self.frozen.push(Arc::new(full));
        }
        created
    }
}

/// Buffers an append reuses. Held under the tenant's `append` lock.
#[derive(Debug, Default)]
pub(crate) struct AppendScratch {
    pub record: RecordScratch,
    pub keep: Vec<bool>,
    pub batch_spans: FastSet<(TraceId, SpanId)>,
}

impl AppendScratch {
    pub fn release_if_large(&mut self) {
        if self.record.capacity() > 64 << 20 || self.keep.capacity() > 1 << 20 {
            *self = AppendScratch::default();
        }
    }
}

/// One tenant's head.
#[derive(Debug)]
pub(crate) struct TenantHead {
    pub tenant: Arc<str>,
    /// Serialises this tenant's appends and cuts: WAL order is head order, and a cut never
    /// falls between a span's WAL write and its insertion into the head.
    pub append: Mutex<AppendScratch>,
    pub state: RwLock<HeadState>,
    /// Heads taken by cuts still being written: they answer until their block is in place.
    pub cutting: RwLock<Vec<Arc<HeadState>>>,
}

impl TenantHead {
    pub fn new(tenant: Arc<str>) -> TenantHead {
        TenantHead {
            tenant,
            append: Mutex::new(AppendScratch::default()),
            state: RwLock::new(HeadState::default()),
            cutting: RwLock::new(Vec::new()),
        }
    }

    pub fn lock_appends(&self) -> MutexGuard<'_, AppendScratch> {
        // A panic while holding the lock leaves only scratch buffers behind.
        self.append.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn read(&self) -> RwLockReadGuard<'_, HeadState> {
        self.state.read().unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, HeadState> {
        self.state.write().unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn cutting(&self) -> Vec<Arc<HeadState>> {
        self.cutting.read().unwrap_or_else(|poison| poison.into_inner()).clone()
    }

    /// Takes the whole head for a cut; it keeps answering from `cutting` until
    /// [`TenantHead::cut_done`]. The caller holds the `append` lock.
    pub fn take_for_cut(&self) -> Option<Arc<HeadState>> {
        let mut state = self.write();
        if state.is_empty() {
            return None;
        }
        let taken = Arc::new(std::mem::take(&mut *state));
        self.cutting.write().unwrap_or_else(|poison| poison.into_inner()).push(taken.clone());
        Some(taken)
    }

    /// Forgets a cut head once its block is in place (or gives it back after a failed cut).
    pub fn cut_done(&self, taken: &Arc<HeadState>) {
        self.cutting.write().unwrap_or_else(|poison| poison.into_inner()).retain(|other| !Arc::ptr_eq(other, taken));
    }

    /// Puts a head back after its cut failed: its spans go before what was appended since.
    pub fn restore(&self, taken: &Arc<HeadState>) {
        let mut state = self.write();
        let newer = std::mem::take(&mut *state);
        let mut restored = HeadState {
            frozen: taken.frozen.clone(),
            open: HeadSegment::new(),
            traces: taken.traces.clone(),
            bytes: taken.bytes,
            spans: taken.spans,
            first_append_ns: taken.first_append_ns,
            seq_end: taken.seq_end,
            first_wal_segment: taken.first_wal_segment,
        };
        // The taken open segment is frozen as it is; the newer segments follow.
        let open = taken.open.snapshot();
        if open.spans > 0 {
            restored.frozen.push(Arc::new(open));
        }
        restored.frozen.extend(newer.frozen);
        restored.open = newer.open;
        for (trace_id, spans) in newer.traces {
            let entry = restored.traces.entry(trace_id).or_default();
            for span in spans {
                if !entry.iter().any(|have| have.span_id == span.span_id) {
                    entry.push(span);
                }
            }
        }
        restored.bytes += newer.bytes;
        restored.spans += newer.spans;
        restored.seq_end = restored.seq_end.max(newer.seq_end);
        restored.first_wal_segment = match (restored.first_wal_segment, newer.first_wal_segment) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        *state = restored;
        drop(state);
        self.cut_done(taken);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(buffers: &RecordBuffers) -> usize {
        buffers.lock().classes.iter().map(Vec::len).sum()
    }

    #[test]
    fn size_classes_hold_their_lengths_within_an_eighth() {
        let mut last = (0, 0);
        for len in 1..100_000 {
            let (class, bytes) = size_class(len);
            assert!(bytes >= len && bytes >= 64, "{len}");
            assert!(len < 64 || bytes - len <= len / 8, "{len} in {bytes}");
            assert!(class >= last.0 && (class > last.0 || bytes == last.1), "{len}: classes grow with their bytes");
            assert_eq!(size_class(bytes), (class, bytes), "a class's own bytes are in it");
            last = (class, bytes);
        }
    }

    #[test]
    fn record_buffers_are_reused_by_size_class_and_kept_within_the_cap() {
        let buffers = RecordBuffers::new(1 << 20);
        let first = buffers.copy_of(&[&[7; 600], &[8; 400]]);
        assert_eq!(first[..600], [7; 600]);
        assert_eq!(first[600..], [8; 400]);
        assert_eq!(first.capacity(), size_class(1000).1);
        let pointer = first.as_ptr();
        buffers.give(first);
        // Of the same class: the same buffer, holding the new bytes.
        let again = buffers.copy_of(&[&[1; 990]]);
        assert_eq!((again.as_ptr(), again.as_slice()), (pointer, &[1; 990][..]));
        buffers.give(again);
        // Of the class below: the next class up is taken too.
        let below = size_class(1000).0 - 1;
        let len = (1..1000).rev().find(|len| size_class(*len).0 == below).unwrap();
        let smaller = buffers.copy_of(&[&vec![3; len]]);
        assert_eq!(smaller.as_ptr(), pointer);
        buffers.give(smaller);
        // Much smaller: a new buffer, the kept one stays.
        let small = buffers.copy_of(&[&[2; 10]]);
        assert_ne!(small.as_ptr(), pointer);
        assert_eq!(kept(&buffers), 1);
        assert_eq!(buffers.lock().total, size_class(1000).1);
        drop(buffers.copy_of(&[&[1; 1000]]));
        // A buffer of any capacity serves the classes it holds.
        let odd = Vec::<u8>::with_capacity(5000);
        let pointer = odd.as_ptr();
        buffers.give(odd);
        let used = buffers.copy_of(&[&[4; 4000]]);
        assert_eq!((used.as_ptr(), used.len()), (pointer, 4000));
        // Nothing is kept past the cap, which only grows.
        buffers.give(Vec::with_capacity(1 << 20));
        assert_eq!(kept(&buffers), 1);
        buffers.keep_at_least(1000);
        buffers.keep_at_least(4 << 20);
        buffers.give(Vec::with_capacity(1 << 20));
        assert_eq!(kept(&buffers), 2);
        assert!(buffers.lock().total <= 4 << 20);
        // Kept while records are being made; released after a quiet time.
        buffers.release_if_unused(Duration::from_secs(3600));
        assert_eq!(kept(&buffers), 2);
        buffers.release_if_unused(Duration::ZERO);
        assert_eq!((kept(&buffers), buffers.lock().total), (0, 0));
    }
}
