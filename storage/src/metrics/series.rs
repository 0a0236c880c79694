//! A selected series: its labels and the sources its samples come from (head chunks, block
//! chunks, out-of-order samples), decoded on demand and merged in time order.

use std::cmp::Ordering;
use std::sync::Arc;

use super::chunk::{self, ChunkError, ChunkFacts};
use super::{ChunkBytes, Sample, TimeRange, is_stale_nan};
use crate::labels::Labels;

/// Where some of a series' samples are.
#[derive(Debug, Clone)]
pub(crate) enum SampleSource {
    /// An encoded chunk whose samples lie in `[min_t, max_t]`.
    Chunk { bytes: ChunkBytes, min_t: i64, max_t: i64 },
    /// Decoded samples, sorted by time.
    Samples(Arc<[Sample]>),
}

impl SampleSource {
    fn bounds(&self) -> (i64, i64) {
        match self {
            SampleSource::Chunk { min_t, max_t, .. } => (*min_t, *max_t),
            SampleSource::Samples(samples) => {
                (samples.first().map_or(i64::MAX, |s| s.t_ms), samples.last().map_or(i64::MIN, |s| s.t_ms))
            }
        }
    }
}

/// One series from a select: labels, and samples in the selected range.
#[derive(Debug, Clone)]
pub struct Series {
    pub labels: Labels,
    pub(crate) sources: Vec<SampleSource>,
    pub(crate) range: TimeRange,
}

impl Series {
    pub(crate) fn new(labels: Labels, mut sources: Vec<SampleSource>, range: TimeRange) -> Series {
        sources.retain(|source| {
            let (min_t, max_t) = source.bounds();
            min_t <= max_t && range.overlaps(min_t, max_t)
        });
        let mut series = Series { labels, sources, range };
        series.sort_sources();
        series
    }

    /// Puts the sources in order again after some were pushed onto `sources`, leaving out
    /// those with no samples in range.
    pub(crate) fn sources_added(&mut self) {
        let range = self.range;
        let in_range = |source: &SampleSource| {
            let (min_t, max_t) = source.bounds();
            min_t <= max_t && range.overlaps(min_t, max_t)
        };
        if !self.sources.iter().all(in_range) {
            self.sources.retain(in_range);
        }
        self.sort_sources();
    }

    /// Orders the sources by first sample time; stable, so sources of equal start keep the
    /// order they were added in.
    fn sort_sources(&mut self) {
        if !self.sources.is_sorted_by_key(|source| source.bounds().0) {
            self.sources.sort_by_key(|source| source.bounds().0);
        }
    }

    /// Asks the processor to start bringing the series' encoded samples into its caches, for a
    /// caller about to decode it after something else (a hint: nothing else changes).
    pub fn prefetch(&self) {
        for source in &self.sources {
            if let SampleSource::Chunk { bytes, .. } = source {
                crate::prefetch::prefetch_lines(bytes.as_slice(), PREFETCH_LINES);
            }
        }
    }

    /// Whether any source has samples in range (a cheap check; decoding may still find none).
    pub fn has_data(&self) -> bool {
        !self.sources.is_empty()
    }

    /// The samples in the selected range, in time order, one per timestamp.
    pub fn samples(&self) -> Result<Vec<Sample>, ChunkError> {
        let mut out = Vec::new();
        self.samples_into(&mut out)?;
        Ok(out)
    }

    /// Like [`Series::samples`], reusing `out` (cleared first).
    pub fn samples_into(&self, out: &mut Vec<Sample>) -> Result<(), ChunkError> {
        out.clear();
        let mut overlapping = false;
        let mut previous_max = i64::MIN;
        for (index, source) in self.sources.iter().enumerate() {
            let (min_t, max_t) = source.bounds();
            if index > 0 && min_t <= previous_max {
                overlapping = true;
            }
            previous_max = previous_max.max(max_t);
            match source {
                SampleSource::Chunk { bytes, .. } => {
                    let start = out.len();
                    chunk::decode(bytes.as_slice(), out)?;
                    // Keep only the part in range; chunks are sorted internally.
                    let decoded = &out[start..];
                    let first = decoded.partition_point(|s| s.t_ms < self.range.start_ms());
                    let last = decoded.partition_point(|s| s.t_ms <= self.range.end_ms());
                    if first > 0 || last < decoded.len() {
                        out.copy_within(start + first..start + last, start);
                        out.truncate(start + last - first);
                    }
                }
                SampleSource::Samples(samples) => {
                    out.extend(samples.iter().filter(|s| self.range.contains(s.t_ms)));
                }
            }
        }
        if overlapping {
            // Stable: for equal timestamps the earlier source (in-order data) wins.
            out.sort_by_key(|sample| sample.t_ms);
            out.dedup_by_key(|sample| sample.t_ms);
        }
        Ok(())
    }
}

/// The most cache lines of a chunk [`Series::prefetch`] asks for (a block's chunks are a few
/// hundred bytes; the processor goes on by itself).
const PREFETCH_LINES: usize = 4;

/// A series' samples as two columns, times and values, for evaluators that go through values
/// in bulk, with what decoding learned of them; buffers reused from series to series.
#[derive(Debug, Clone, Default)]
pub struct SampleColumns {
    pub times: Vec<i64>,
    pub values: Vec<f64>,
    /// Whether some value is a staleness marker (looked for only in what came from XOR chunks
    /// and out-of-order samples: packed chunks hold decimals alone).
    pub stale_markers: bool,
    /// Set when the times are known to be evenly spaced, this far apart (two samples or more).
    pub spacing: Option<i64>,
    /// Whether no value is known to be below the one before (false when unknown).
    pub non_decreasing: bool,
}

impl SampleColumns {
    pub fn clear(&mut self) {
        self.times.clear();
        self.values.clear();
        self.stale_markers = false;
        self.spacing = None;
        self.non_decreasing = false;
    }

    pub fn len(&self) -> usize {
        self.times.len().min(self.values.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the samples whose value is a staleness marker, if there are any.
    pub fn remove_stale_markers(&mut self) {
        if !self.stale_markers {
            return;
        }
        let mut kept = 0;
        for index in 0..self.len() {
            let (t_ms, value) = (self.times[index], self.values[index]);
            if !is_stale_nan(value) {
                self.times[kept] = t_ms;
                self.values[kept] = value;
                kept += 1;
            }
        }
        self.times.truncate(kept);
        self.values.truncate(kept);
        self.stale_markers = false;
        // Removing samples may leave gaps or a drop.
        self.spacing = None;
        self.non_decreasing = false;
    }

    /// Drops the samples from `start` on that lie outside `range` (the samples from `start`
    /// on are sorted by time).
    fn keep_in_range(&mut self, start: usize, range: TimeRange) {
        let decoded = &self.times[start..];
        let first = decoded.partition_point(|&t_ms| t_ms < range.start_ms());
        let last = decoded.partition_point(|&t_ms| t_ms <= range.end_ms());
        if first > 0 || last < decoded.len() {
            self.times.copy_within(start + first..start + last, start);
            self.values.copy_within(start + first..start + last, start);
            self.times.truncate(start + last - first);
            self.values.truncate(start + last - first);
        }
    }
}

impl Series {
    /// Like [`Series::samples_into`], into two columns (cleared first).
    pub fn columns_into(&self, out: &mut SampleColumns) -> Result<(), ChunkError> {
        out.clear();
        let mut shape = Shape::default();
        let mut previous_max = i64::MIN;
        for (index, source) in self.sources.iter().enumerate() {
            let (min_t, max_t) = source.bounds();
            if index > 0 && min_t <= previous_max {
                // Sources overlap (out-of-order samples): merged sample by sample.
                let mut samples = Vec::new();
                self.samples_into(&mut samples)?;
                out.clear();
                out.times.extend(samples.iter().map(|s| s.t_ms));
                out.values.extend(samples.iter().map(|s| s.value));
                out.stale_markers = samples.iter().any(|sample| is_stale_nan(sample.value));
                let mut shape = Shape::default();
                shape.add(&out.times, &out.values, 0, ChunkFacts::default());
                shape.finish(out);
                return Ok(());
            }
            previous_max = previous_max.max(max_t);
            let start = out.len();
            match source {
                SampleSource::Chunk { bytes, .. } => {
                    let bytes = bytes.as_slice();
                    let facts = chunk::decode_columns(bytes, &mut out.times, &mut out.values)?;
                    // Keep only the part in range; chunks are sorted internally.
                    out.keep_in_range(start, self.range);
                    if bytes.first() != Some(&chunk::ENCODING_PACKED) {
                        out.stale_markers |= out.values[start..].iter().any(|&value| is_stale_nan(value));
                    }
                    shape.add(&out.times, &out.values, start, facts);
                }
                SampleSource::Samples(samples) => {
                    for sample in samples.iter().filter(|s| self.range.contains(s.t_ms)) {
                        out.times.push(sample.t_ms);
                        out.values.push(sample.value);
                        out.stale_markers |= is_stale_nan(sample.value);
                    }
                    shape.add(&out.times, &out.values, start, ChunkFacts::default());
                }
            }
        }
        shape.finish(out);
        Ok(())
    }
}

/// The spacing of a series' times and whether its values drop, worked out part by part as
/// its sources are decoded: from what the encoding tells when it does, else by looking.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// Whether the times so far are evenly spaced (a single sample is).
    regular: bool,
    /// Their spacing, once two samples were seen.
    spacing: Option<i64>,
    non_decreasing: bool,
}

impl Default for Shape {
    fn default() -> Shape {
        Shape { regular: true, spacing: None, non_decreasing: true }
    }
}

impl Shape {
    /// Takes in the samples from `start` on (`facts` tells what their encoding said).
    fn add(&mut self, times: &[i64], values: &[f64], start: usize, facts: ChunkFacts) {
        let (Some(part_times), Some(part_values)) = (times.get(start..), values.get(start..)) else { return };
        let Some(&first_ms) = part_times.first() else { return };
        if self.non_decreasing {
            // A drop is a value below the one before (NaN is below nothing).
            let joined = start == 0 || values[start].partial_cmp(&values[start - 1]) != Some(std::cmp::Ordering::Less);
            self.non_decreasing =
                joined && (facts.non_decreasing || !part_values.windows(2).any(|pair| pair[1] < pair[0]));
        }
        if !self.regular {
            return;
        }
        let part_spacing = match (facts.spacing, part_times) {
            (_, [] | [_]) => None,
            (Some(spacing), _) => Some(spacing),
            (None, [first, second, ..]) => {
                let spacing = second.wrapping_sub(*first);
                if !part_times.windows(2).all(|pair| pair[1].wrapping_sub(pair[0]) == spacing) {
                    self.regular = false;
                    return;
                }
                Some(spacing)
            }
        };
        let gap = (start > 0).then(|| first_ms.wrapping_sub(times[start - 1]));
        for spacing in [gap, part_spacing].into_iter().flatten() {
            match self.spacing {
                None => self.spacing = Some(spacing),
                Some(known) if known == spacing => {}
                Some(_) => {
                    self.regular = false;
                    return;
                }
            }
        }
    }

    fn finish(self, out: &mut SampleColumns) {
        out.spacing = if self.regular { self.spacing.filter(|&spacing| spacing > 0) } else { None };
        out.non_decreasing = self.non_decreasing;
    }
}

/// The order of [`Labels`] (`Ord`), faster when the two sets share strings: label sets from one
/// head or one block point at the same interned string for an equal name or value, so most
/// labels compare by address and only the first that differs compares text.
pub(crate) fn compare_labels(a: &Labels, b: &Labels) -> Ordering {
    for (x, y) in a.as_slice().iter().zip(b.as_slice()) {
        if !Arc::ptr_eq(&x.name, &y.name) {
            let order = x.name.cmp(&y.name);
            if order != Ordering::Equal {
                return order;
            }
        }
        if !Arc::ptr_eq(&x.value, &y.value) {
            let order = x.value.cmp(&y.value);
            if order != Ordering::Equal {
                return order;
            }
        }
    }
    a.len().cmp(&b.len())
}

/// Merges lists of series, each sorted by labels with unique label sets, into one such list;
/// a series found in several lists gets the sources of all, earlier lists' first (so that for
/// equal timestamps the earlier source wins, as [`Series::samples_into`] promises). Pairs of
/// lists are merged linearly, in rounds, so `k` lists cost `n log k` comparisons.
pub(crate) fn merge_sorted(mut lists: Vec<Vec<Series>>) -> Vec<Series> {
    lists.retain(|list| !list.is_empty());
    while lists.len() > 1 {
        let mut merged = Vec::with_capacity(lists.len().div_ceil(2));
        let mut pairs = lists.into_iter();
        while let Some(left) = pairs.next() {
            match pairs.next() {
                Some(right) => merged.push(merge_two(left, right)),
                None => merged.push(left),
            }
        }
        lists = merged;
    }
    lists.pop().unwrap_or_default()
}

/// Makes a list sorted by labels with unique label sets, as [`merge_sorted`] needs, if it is
/// not already (a source that should answer in order but did not): series with equal labels
/// are joined, their sources in list order.
pub(crate) fn ensure_sorted(list: &mut Vec<Series>) {
    if list.windows(2).all(|pair| compare_labels(&pair[0].labels, &pair[1].labels) == Ordering::Less) {
        return;
    }
    list.sort_by(|a, b| compare_labels(&a.labels, &b.labels));
    let mut joined: Vec<Series> = Vec::with_capacity(list.len());
    for series in list.drain(..) {
        match joined.last_mut() {
            Some(last) if last.labels == series.labels => {
                last.sources.extend(series.sources);
                last.sort_sources();
            }
            _ => joined.push(series),
        }
    }
    *list = joined;
}

fn merge_two(left: Vec<Series>, right: Vec<Series>) -> Vec<Series> {
    let mut out = Vec::with_capacity(left.len().max(right.len()));
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let order = match (left.peek(), right.peek()) {
            (Some(a), Some(b)) => compare_labels(&a.labels, &b.labels),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => break,
        };
        // Each arm takes the series it peeked at.
        match order {
            Ordering::Less => out.extend(left.next()),
            Ordering::Greater => out.extend(right.next()),
            Ordering::Equal => {
                if let (Some(mut a), Some(b)) = (left.next(), right.next()) {
                    a.sources.extend(b.sources);
                    a.sort_sources();
                    out.push(a);
                }
            }
        }
    }
    out
}

/// Iterates a list of series' samples one series at a time; for callers that want to stream.
pub struct SampleIter<'a> {
    series: std::slice::Iter<'a, Series>,
    buffer: Vec<Sample>,
}

impl<'a> SampleIter<'a> {
    pub fn new(series: &'a [Series]) -> SampleIter<'a> {
        SampleIter { series: series.iter(), buffer: Vec::new() }
    }

    /// The next series and its samples.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<(&'a Series, &[Sample]), ChunkError>> {
        let series = self.series.next()?;
        match series.samples_into(&mut self.buffer) {
            Ok(()) => Some(Ok((series, &self.buffer))),
            Err(error) => Some(Err(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::STALE_NAN;
    use crate::metrics::chunk::{encode_best, encode_packed, encode_xor};

    fn chunk(samples: &[Sample], encoded: Vec<u8>) -> SampleSource {
        SampleSource::Chunk {
            bytes: ChunkBytes::Owned(encoded.into()),
            min_t: samples[0].t_ms,
            max_t: samples[samples.len() - 1].t_ms,
        }
    }

    fn regular(from: i64, count: i64, spacing: i64, value: impl Fn(i64) -> f64) -> Vec<Sample> {
        (0..count).map(|i| Sample { t_ms: from + i * spacing, value: value(i) }).collect()
    }

    /// Columns hold what `samples_into` gives, and the facts told of them are true.
    fn check(name: &str, sources: Vec<SampleSource>, range: TimeRange) -> SampleColumns {
        let series = Series::new(Labels::empty(), sources, range);
        let mut samples = Vec::new();
        series.samples_into(&mut samples).unwrap();
        let mut columns = SampleColumns::default();
        series.columns_into(&mut columns).unwrap();
        let from_columns: Vec<(i64, u64)> =
            columns.times.iter().zip(&columns.values).map(|(&t, &v)| (t, v.to_bits())).collect();
        let expected: Vec<(i64, u64)> = samples.iter().map(|s| (s.t_ms, s.value.to_bits())).collect();
        assert_eq!(from_columns, expected, "{name}");
        assert_eq!(columns.stale_markers, samples.iter().any(|s| is_stale_nan(s.value)), "{name}");
        if let Some(spacing) = columns.spacing {
            assert!(columns.times.windows(2).all(|pair| pair[1] - pair[0] == spacing), "{name}: spacing");
        }
        if columns.non_decreasing {
            assert!(!columns.values.windows(2).any(|pair| pair[1] < pair[0]), "{name}: non-decreasing");
        }
        columns
    }

    #[test]
    fn columns_are_the_samples_with_what_decoding_learned() {
        let counter = |i: i64| 100.0 + (i % 3) as f64 * 0.25 + i as f64 * 2.5;
        let first = regular(0, 480, 15_000, counter);
        let second = regular(480 * 15_000, 120, 15_000, |i| counter(i + 480));
        let third = regular(600 * 15_000, 30, 15_000, |i| counter(i + 600));
        let all = TimeRange::all();
        // Packed block chunks, then the head's: regular and growing.
        let columns = check(
            "packed then xor",
            vec![
                chunk(&first, encode_packed(&first).unwrap()),
                chunk(&second, encode_best(&second)),
                chunk(&third, encode_xor(&third)),
            ],
            all,
        );
        assert_eq!((columns.spacing, columns.non_decreasing), (Some(15_000), true));
        // Cut by the range on both sides.
        let columns = check(
            "cut",
            vec![chunk(&first, encode_packed(&first).unwrap()), chunk(&second, encode_xor(&second))],
            TimeRange::new(1_000_000, 8_000_000).unwrap(),
        );
        assert_eq!((columns.spacing, columns.non_decreasing), (Some(15_000), true));
        // A gap between chunks, a reset at a chunk's start, a reset inside one.
        let late = regular(480 * 15_000 + 7_000, 120, 15_000, |i| counter(i + 480));
        let columns = check(
            "gap",
            vec![chunk(&first, encode_packed(&first).unwrap()), chunk(&late, encode_packed(&late).unwrap())],
            all,
        );
        assert_eq!((columns.spacing, columns.non_decreasing), (None, true));
        let restarted = regular(480 * 15_000, 120, 15_000, |i| i as f64);
        let columns = check(
            "reset between",
            vec![chunk(&first, encode_packed(&first).unwrap()), chunk(&restarted, encode_xor(&restarted))],
            all,
        );
        assert_eq!((columns.spacing, columns.non_decreasing), (Some(15_000), false));
        let mut dropping = second.clone();
        dropping[50].value = 1.0;
        let columns = check(
            "reset inside",
            vec![chunk(&first, encode_packed(&first).unwrap()), chunk(&dropping, encode_xor(&dropping))],
            all,
        );
        assert!(!columns.non_decreasing);
        // Staleness markers, out-of-order samples overlapping a chunk, single samples.
        let mut stale = second.clone();
        stale[3].value = STALE_NAN;
        let columns = check("stale", vec![chunk(&stale, encode_xor(&stale))], all);
        assert!(columns.stale_markers);
        let ooo = vec![Sample { t_ms: 7_000, value: 1.0 }, Sample { t_ms: 15_000, value: 9.0 }];
        check(
            "overlapping",
            vec![chunk(&first, encode_packed(&first).unwrap()), SampleSource::Samples(ooo.into())],
            all,
        );
        let single = [Sample { t_ms: 630 * 15_000, value: counter(630) }];
        let columns = check(
            "single after",
            vec![chunk(&third, encode_xor(&third)), SampleSource::Samples(Arc::from(single.as_slice()))],
            all,
        );
        assert_eq!((columns.spacing, columns.non_decreasing), (Some(15_000), true));
        let columns = check("one sample", vec![SampleSource::Samples(Arc::from(single.as_slice()))], all);
        assert_eq!((columns.spacing, columns.non_decreasing), (None, true));
    }
}
