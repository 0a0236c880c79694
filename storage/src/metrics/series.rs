//! A selected series: its labels and the sources its samples come from (head chunks, block
//! chunks, out-of-order samples), decoded on demand and merged in time order.

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
        sources.sort_by_key(|source| source.bounds().0);
        Series { labels, sources, range }
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
