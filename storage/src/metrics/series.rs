//! A selected series: its labels and the sources its samples come from (head chunks, block
//! chunks, out-of-order samples), decoded on demand and merged in time order.

use std::cmp::Ordering;
use std::sync::Arc;

use super::chunk::{self, ChunkError};
use super::{ChunkBytes, Sample, TimeRange};
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

    /// Orders the sources by first sample time; stable, so sources of equal start keep the
    /// order they were added in.
    fn sort_sources(&mut self) {
        if !self.sources.is_sorted_by_key(|source| source.bounds().0) {
            self.sources.sort_by_key(|source| source.bounds().0);
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
                        let kept: Vec<Sample> = decoded[first..last].to_vec();
                        out.truncate(start);
                        out.extend_from_slice(&kept);
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
