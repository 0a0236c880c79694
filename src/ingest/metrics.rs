//! The protocol-neutral metrics write path: a decoded batch (labels still borrowed from the
//! request body) goes to the metrics store, with series references cached by a hash of the raw
//! label strings, so that a sender that sends the same series again and again (every agent)
//! costs no label parsing or allocation after the first time.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;

use tripod_storage::labels::Labels;
use tripod_storage::metrics::{
    AppendCounts, Exemplar, MetricMetadata, MetricsAppender, MetricsError, MetricsStore, Sample, SeriesKey, SeriesRef,
    SeriesSamples,
};

/// One series of a batch: ranges into the batch's flat vectors.
#[derive(Debug, Clone, Default)]
pub struct BatchSeries {
    pub labels: Range<usize>,
    pub samples: Range<usize>,
    pub exemplars: Range<usize>,
}

/// A decoded write: label names and values as raw bytes borrowed from the request body. They are
/// checked here (UTF-8, names non-empty, sorted, unique) only when the reference cache has not
/// seen the exact bytes before.
#[derive(Debug, Default)]
pub struct WriteBatch<'a> {
    pub label_pairs: Vec<(&'a [u8], &'a [u8])>,
    pub series: Vec<BatchSeries>,
    pub samples: Vec<Sample>,
    pub exemplars: Vec<Exemplar>,
    pub metadata: Vec<(String, MetricMetadata)>,
    /// Native histogram samples, which are not stored yet.
    pub histograms: u64,
}

impl<'a> WriteBatch<'a> {
    pub fn labels_of(&self, series: &BatchSeries) -> &[(&'a [u8], &'a [u8])] {
        &self.label_pairs[series.labels.clone()]
    }
}

/// Why a write was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A series' labels are invalid; nothing of the batch was written.
    #[error("{0}")]
    InvalidLabels(String),
    #[error(transparent)]
    Store(#[from] MetricsError),
}

/// Checks a series' labels (at least one; names non-empty, UTF-8, sorted, unique; values UTF-8)
/// and returns them as strings.
pub fn validate_labels<'a>(pairs: &[(&'a [u8], &'a [u8])], index: usize) -> Result<Vec<(&'a str, &'a str)>, String> {
    let describe = || {
        let shown: Vec<String> = pairs
            .iter()
            .map(|(n, v)| format!("{}={:?}", String::from_utf8_lossy(n), String::from_utf8_lossy(v)))
            .collect();
        format!("series {index} {{{}}}", shown.join(", "))
    };
    if pairs.is_empty() {
        return Err(format!("series {index} has no labels"));
    }
    let mut out = Vec::with_capacity(pairs.len());
    for (position, (name, value)) in pairs.iter().enumerate() {
        let name = std::str::from_utf8(name).map_err(|_| format!("{}: label name is not valid UTF-8", describe()))?;
        let value =
            std::str::from_utf8(value).map_err(|_| format!("{}: value of {name:?} is not valid UTF-8", describe()))?;
        if name.is_empty() {
            return Err(format!("{}: empty label name", describe()));
        }
        if let Some((previous, _)) = position.checked_sub(1).map(|p| out[p]) {
            if name == previous {
                return Err(format!("{}: duplicate label name {name:?}", describe()));
            }
            if name < previous {
                return Err(format!("{}: labels are not sorted by name ({name:?} after {previous:?})", describe()));
            }
        }
        out.push((name, value));
    }
    Ok(out)
}

/// What a write stored and refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    pub counts: AppendCounts,
    pub histograms_rejected: u64,
}

impl WriteOutcome {
    pub fn samples_written(&self) -> u64 {
        self.counts.appended + self.counts.appended_out_of_order + self.counts.duplicates
    }
}

/// Series references by label hash; cleared when it grows past its bound.
pub struct MetricsIngest {
    cache: Mutex<HashMap<u64, CachedSeries>>,
    max_entries: usize,
}

struct CachedSeries {
    series_ref: SeriesRef,
    /// `name 0xff value 0xff ...`: compared on every hit, so a hash collision cannot mix series.
    identity: Box<[u8]>,
}

/// 0xff never occurs in UTF-8, so it separates strings unambiguously.
const SEPARATOR: u8 = 0xff;

/// A hash of the raw label bytes, eight bytes at a time (the cache lives in memory only, so it
/// needs speed, not stability across versions).
fn hash_pairs(pairs: &[(&[u8], &[u8])]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut hash = 0u64;
    let mut mix = |word: u64| hash = (hash.rotate_left(5) ^ word).wrapping_mul(K);
    for (name, value) in pairs {
        for part in [*name, *value] {
            let mut chunks = part.chunks_exact(8);
            for chunk in &mut chunks {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                mix(u64::from_le_bytes(word));
            }
            let tail = chunks.remainder();
            let mut word = [0u8; 8];
            word[..tail.len()].copy_from_slice(tail);
            // The length keeps "ab" + "c" apart from "a" + "bc".
            mix(u64::from_le_bytes(word) ^ ((part.len() as u64) << 56));
        }
    }
    hash
}

fn identity_matches(identity: &[u8], pairs: &[(&[u8], &[u8])]) -> bool {
    let mut rest = identity;
    for (name, value) in pairs {
        for part in [*name, *value] {
            if rest.len() < part.len() + 1 || &rest[..part.len()] != part || rest[part.len()] != SEPARATOR {
                return false;
            }
            rest = &rest[part.len() + 1..];
        }
    }
    rest.is_empty()
}

fn identity_of(pairs: &[(&[u8], &[u8])]) -> Box<[u8]> {
    let mut identity = Vec::new();
    for (name, value) in pairs {
        identity.extend_from_slice(name);
        identity.push(SEPARATOR);
        identity.extend_from_slice(value);
        identity.push(SEPARATOR);
    }
    identity.into_boxed_slice()
}

impl Default for MetricsIngest {
    fn default() -> Self {
        MetricsIngest::new(1 << 20)
    }
}

impl MetricsIngest {
    pub fn new(max_entries: usize) -> MetricsIngest {
        MetricsIngest { cache: Mutex::new(HashMap::new()), max_entries }
    }

    /// Appends a batch. Blocking: call it off the async runtime.
    pub fn write(&self, store: &MetricsStore, batch: &WriteBatch<'_>) -> Result<WriteOutcome, IngestError> {
        let hashes: Vec<u64> = batch.series.iter().map(|s| hash_pairs(batch.labels_of(s))).collect();
        let cached: Vec<Option<SeriesRef>> = {
            let cache = self.cache.lock().unwrap_or_else(|poison| poison.into_inner());
            batch
                .series
                .iter()
                .zip(&hashes)
                .map(|(series, hash)| {
                    cache
                        .get(hash)
                        .filter(|entry| identity_matches(&entry.identity, batch.labels_of(series)))
                        .map(|entry| entry.series_ref)
                })
                .collect()
        };
        // Label sets are checked and built only for series the cache does not know; a bad one
        // refuses the whole batch before anything is written.
        let mut owned: Vec<Option<Labels>> = Vec::with_capacity(batch.series.len());
        for (index, (series, known)) in batch.series.iter().zip(&cached).enumerate() {
            owned.push(match known {
                Some(_) => None,
                None => {
                    let pairs = validate_labels(batch.labels_of(series), index).map_err(IngestError::InvalidLabels)?;
                    Some(
                        Labels::from_pairs(pairs)
                            .map_err(|error| IngestError::InvalidLabels(format!("series {index}: {error}")))?,
                    )
                }
            });
        }

        let mut outcome = WriteOutcome { histograms_rejected: batch.histograms, ..WriteOutcome::default() };
        let entries = build_entries(batch, &cached, &owned);
        let result = store.append(&entries)?;
        outcome.counts.add(&result.counts);

        // References the head no longer knows (its series were dropped at a block cut): again by
        // labels. The store counted them as unknown; the retry counts what happens to them.
        let stale: Vec<usize> = (0..batch.series.len())
            .filter(|&i| cached[i].is_some() && result.refs.get(i).copied().flatten().is_none())
            .collect();
        let mut refs = result.refs;
        if !stale.is_empty() {
            outcome.counts.unknown_series_ref -= stale.len() as u64;
            for &i in &stale {
                let pairs =
                    validate_labels(batch.labels_of(&batch.series[i]), i).map_err(IngestError::InvalidLabels)?;
                owned[i] = Labels::from_pairs(pairs).ok();
            }
            let retry: Vec<SeriesSamples> = stale
                .iter()
                .filter_map(|&i| {
                    let labels = owned[i].as_ref()?;
                    let series = &batch.series[i];
                    Some(SeriesSamples {
                        key: SeriesKey::Labels(labels),
                        samples: &batch.samples[series.samples.clone()],
                        exemplars: &batch.exemplars[series.exemplars.clone()],
                    })
                })
                .collect();
            let retried = store.append(&retry)?;
            outcome.counts.add(&retried.counts);
            for (&i, series_ref) in stale.iter().zip(retried.refs) {
                refs[i] = series_ref;
            }
        }

        {
            let mut cache = self.cache.lock().unwrap_or_else(|poison| poison.into_inner());
            if cache.len() > self.max_entries {
                cache.clear();
            }
            for (i, series) in batch.series.iter().enumerate() {
                let Some(series_ref) = refs.get(i).copied().flatten() else {
                    continue;
                };
                if cached[i] == Some(series_ref) {
                    continue;
                }
                cache.insert(hashes[i], CachedSeries { series_ref, identity: identity_of(batch.labels_of(series)) });
            }
        }

        for (name, metadata) in &batch.metadata {
            store.set_metadata(name, metadata.clone())?;
        }
        Ok(outcome)
    }
}

fn build_entries<'b>(
    batch: &'b WriteBatch<'_>,
    cached: &[Option<SeriesRef>],
    owned: &'b [Option<Labels>],
) -> Vec<SeriesSamples<'b>> {
    batch
        .series
        .iter()
        .enumerate()
        .map(|(i, series)| {
            let key = match (cached[i], &owned[i]) {
                (Some(series_ref), _) => SeriesKey::Ref(series_ref),
                (None, Some(labels)) => SeriesKey::Labels(labels),
                // Decoders validate labels, so a set `Labels` refuses never gets here; if one did,
                // a reference no series has keeps batch positions aligned and is counted as
                // unknown rather than stored.
                (None, None) => SeriesKey::Ref(SeriesRef(u64::MAX)),
            };
            SeriesSamples {
                key,
                samples: &batch.samples[series.samples.clone()],
                exemplars: &batch.exemplars[series.exemplars.clone()],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_compare_exactly() {
        let pairs: [(&[u8], &[u8]); 2] = [(b"__name__", b"up"), (b"job", b"api")];
        let identity = identity_of(&pairs);
        assert!(identity_matches(&identity, &pairs));
        assert!(!identity_matches(&identity, &[(b"__name__", b"up"), (b"job", b"ap")]));
        assert!(!identity_matches(&identity, &[(b"__name__", b"up")]));
        assert!(!identity_matches(&identity, &[(b"__name__", b"upjob"), (b"", b"api")]));
        assert_ne!(hash_pairs(&pairs), hash_pairs(&[(b"__name__", b"upj"), (b"ob", b"api")]));
        assert_ne!(hash_pairs(&[(b"a", b"bc")]), hash_pairs(&[(b"ab", b"c")]));
    }

    #[test]
    fn labels_are_validated() {
        let ok: [(&[u8], &[u8]); 2] = [(b"__name__", b"up"), (b"job", b"api")];
        assert_eq!(validate_labels(&ok, 0).unwrap(), vec![("__name__", "up"), ("job", "api")]);
        let unsorted: [(&[u8], &[u8]); 2] = [(b"job", b"api"), (b"__name__", b"up")];
        assert!(validate_labels(&unsorted, 3).unwrap_err().contains("series 3"));
        let bad_utf8: [(&[u8], &[u8]); 1] = [(b"__name__", b"\xff")];
        assert!(validate_labels(&bad_utf8, 0).unwrap_err().contains("not valid UTF-8"));
        assert!(validate_labels(&[], 0).unwrap_err().contains("has no labels"));
    }
}
