//! The protocol-neutral metrics write path: a decoded batch (labels still borrowed from the
//! request body) goes to the metrics store, with series references cached by a hash of the raw
//! label strings, so that a sender that sends the same series again and again (every agent)
//! costs no label parsing or allocation after the first time.

use std::collections::HashMap;
use std::hash::Hasher;
use std::ops::Range;
use std::sync::Mutex;

use tripod_storage::labels::{Labels, StableHasher};
use tripod_storage::metrics::{
    AppendCounts, Exemplar, MetricMetadata, MetricsAppender, MetricsError, MetricsStore, Sample,
    SeriesKey, SeriesRef, SeriesSamples,
};

/// One series of a batch: ranges into the batch's flat vectors.
#[derive(Debug, Clone, Default)]
pub struct BatchSeries {
    pub labels: Range<usize>,
    pub samples: Range<usize>,
    pub exemplars: Range<usize>,
}

/// A decoded write: label strings borrowed from the request body, validated by the decoder
/// (names non-empty, sorted, unique).
#[derive(Debug, Default)]
pub struct WriteBatch<'a> {
    pub label_pairs: Vec<(&'a str, &'a str)>,
    pub series: Vec<BatchSeries>,
    pub samples: Vec<Sample>,
    pub exemplars: Vec<Exemplar>,
    pub metadata: Vec<(String, MetricMetadata)>,
    /// Native histogram samples, which are not stored yet.
    pub histograms: u64,
}

impl<'a> WriteBatch<'a> {
    pub fn labels_of(&self, series: &BatchSeries) -> &[(&'a str, &'a str)] {
        &self.label_pairs[series.labels.clone()]
    }
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

fn hash_pairs(pairs: &[(&str, &str)]) -> u64 {
    let mut hasher = StableHasher::default();
    for (name, value) in pairs {
        hasher.write(name.as_bytes());
        hasher.write_u8(SEPARATOR);
        hasher.write(value.as_bytes());
        hasher.write_u8(SEPARATOR);
    }
    hasher.finish()
}

fn identity_matches(identity: &[u8], pairs: &[(&str, &str)]) -> bool {
    let mut rest = identity;
    for (name, value) in pairs {
        for part in [name.as_bytes(), value.as_bytes()] {
            if rest.len() < part.len() + 1
                || &rest[..part.len()] != part
                || rest[part.len()] != SEPARATOR
            {
                return false;
            }
            rest = &rest[part.len() + 1..];
        }
    }
    rest.is_empty()
}

fn identity_of(pairs: &[(&str, &str)]) -> Box<[u8]> {
    let mut identity = Vec::new();
    for (name, value) in pairs {
        identity.extend_from_slice(name.as_bytes());
        identity.push(SEPARATOR);
        identity.extend_from_slice(value.as_bytes());
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
        MetricsIngest {
            cache: Mutex::new(HashMap::new()),
            max_entries,
        }
    }

    /// Appends a batch. Blocking: call it off the async runtime.
    pub fn write(
        &self,
        store: &MetricsStore,
        batch: &WriteBatch<'_>,
    ) -> Result<WriteOutcome, MetricsError> {
        let hashes: Vec<u64> = batch
            .series
            .iter()
            .map(|s| hash_pairs(batch.labels_of(s)))
            .collect();
        let cached: Vec<Option<SeriesRef>> = {
            let cache = self
                .cache
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
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
        // Label sets are built only for series the cache does not know.
        let mut owned: Vec<Option<Labels>> = batch
            .series
            .iter()
            .zip(&cached)
            .map(|(series, known)| match known {
                Some(_) => None,
                None => Labels::from_pairs(batch.labels_of(series).iter().copied()).ok(),
            })
            .collect();

        let mut outcome = WriteOutcome {
            histograms_rejected: batch.histograms,
            ..WriteOutcome::default()
        };
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
                owned[i] =
                    Labels::from_pairs(batch.labels_of(&batch.series[i]).iter().copied()).ok();
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
            let mut cache = self
                .cache
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
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
                cache.insert(
                    hashes[i],
                    CachedSeries {
                        series_ref,
                        identity: identity_of(batch.labels_of(series)),
                    },
                );
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
        let pairs = [("__name__", "up"), ("job", "api")];
        let identity = identity_of(&pairs);
        assert!(identity_matches(&identity, &pairs));
        assert!(!identity_matches(
            &identity,
            &[("__name__", "up"), ("job", "ap")]
        ));
        assert!(!identity_matches(&identity, &[("__name__", "up")]));
        assert!(!identity_matches(
            &identity,
            &[("__name__", "upjob"), ("", "api")]
        ));
        assert_ne!(
            hash_pairs(&pairs),
            hash_pairs(&[("__name__", "upj"), ("ob", "api")])
        );
    }
}
