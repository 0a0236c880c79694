//! An in-memory implementation of both metrics seams, for query-engine tests that want exact
//! control over the data without a data directory. Samples are kept sorted per series; an
//! append at an existing timestamp replaces the value. No window, no blocks, no WAL.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::series::SampleSource;
use super::{
    AppendCounts, AppendResult, Exemplar, MetricMetadata, MetricsAppender, MetricsError, MetricsQueryable, Sample,
    Series, SeriesExemplars, SeriesKey, SeriesRef, SeriesSamples, TimeRange,
};
use crate::labels::{Labels, Matcher, matches_all};

#[derive(Default)]
struct Data {
    series: BTreeMap<Labels, (u64, Vec<Sample>, Vec<Exemplar>)>,
    by_ref: BTreeMap<u64, Labels>,
    metadata: BTreeMap<String, Vec<MetricMetadata>>,
}

/// Series in a map, for tests.
#[derive(Default)]
pub struct MemoryMetrics {
    data: RwLock<Data>,
}

impl MemoryMetrics {
    pub fn new() -> MemoryMetrics {
        MemoryMetrics::default()
    }

    /// Adds samples to the series with `labels` (a convenience for fixtures).
    pub fn add(&self, labels: &Labels, samples: &[Sample]) {
        let batch = [SeriesSamples { key: SeriesKey::Labels(labels), samples, exemplars: &[] }];
        // In-memory appends cannot fail.
        let _ = self.append(&batch);
    }
}

impl MetricsAppender for MemoryMetrics {
    fn append(&self, batch: &[SeriesSamples<'_>]) -> Result<AppendResult, MetricsError> {
        let mut data = self.data.write().unwrap_or_else(|poison| poison.into_inner());
        let mut result = AppendResult { refs: Vec::new(), counts: AppendCounts::default() };
        for entry in batch {
            let labels = match entry.key {
                SeriesKey::Labels(labels) => labels.clone(),
                SeriesKey::Ref(series_ref) => match data.by_ref.get(&series_ref.0) {
                    Some(labels) => labels.clone(),
                    None => {
                        result.counts.unknown_series_ref += 1;
                        result.refs.push(None);
                        continue;
                    }
                },
            };
            let next_ref = data.series.len() as u64 + 1;
            let (series_ref, samples, exemplars) = data.series.entry(labels.clone()).or_insert_with(|| {
                result.counts.series_created += 1;
                (next_ref, Vec::new(), Vec::new())
            });
            let series_ref = *series_ref;
            for sample in entry.samples {
                match samples.binary_search_by_key(&sample.t_ms, |s| s.t_ms) {
                    Ok(index) => samples[index] = *sample,
                    Err(index) => samples.insert(index, *sample),
                }
                result.counts.appended += 1;
            }
            exemplars.extend(entry.exemplars.iter().cloned());
            result.counts.exemplars_appended += entry.exemplars.len() as u64;
            data.by_ref.insert(series_ref, labels);
            result.refs.push(Some(SeriesRef(series_ref)));
        }
        Ok(result)
    }

    fn set_metadata(&self, metric_name: &str, metadata: MetricMetadata) -> Result<(), MetricsError> {
        let mut data = self.data.write().unwrap_or_else(|poison| poison.into_inner());
        let entries = data.metadata.entry(metric_name.to_string()).or_default();
        if !entries.contains(&metadata) {
            entries.insert(0, metadata);
        }
        Ok(())
    }
}

impl MetricsQueryable for MemoryMetrics {
    fn select(&self, matchers: &[Matcher], range: TimeRange) -> Result<Vec<Series>, MetricsError> {
        let data = self.data.read().unwrap_or_else(|poison| poison.into_inner());
        let mut out = Vec::new();
        for (labels, (_, samples, _)) in data.series.iter().filter(|(labels, _)| matches_all(labels, matchers)) {
            let in_range: Vec<Sample> = samples.iter().copied().filter(|s| range.contains(s.t_ms)).collect();
            if !in_range.is_empty() {
                out.push(Series::new(labels.clone(), vec![SampleSource::Samples(Arc::from(in_range))], range));
            }
        }
        Ok(out)
    }

    fn label_names(&self, matchers: &[Matcher], range: TimeRange) -> Result<Vec<String>, MetricsError> {
        let mut names = std::collections::BTreeSet::new();
        for series in self.select(matchers, range)? {
            names.extend(series.labels.iter().map(|label| label.name.to_string()));
        }
        Ok(names.into_iter().collect())
    }

    fn label_values(&self, name: &str, matchers: &[Matcher], range: TimeRange) -> Result<Vec<String>, MetricsError> {
        let mut values = std::collections::BTreeSet::new();
        for series in self.select(matchers, range)? {
            if let Some(value) = series.labels.get(name) {
                values.insert(value.to_string());
            }
        }
        Ok(values.into_iter().collect())
    }

    fn exemplars(&self, selectors: &[Vec<Matcher>], range: TimeRange) -> Result<Vec<SeriesExemplars>, MetricsError> {
        let data = self.data.read().unwrap_or_else(|poison| poison.into_inner());
        let mut out = Vec::new();
        for (labels, (_, _, exemplars)) in &data.series {
            if !selectors.iter().any(|matchers| matches_all(labels, matchers)) {
                continue;
            }
            let in_range: Vec<Exemplar> = exemplars.iter().filter(|e| range.contains(e.t_ms)).cloned().collect();
            if !in_range.is_empty() {
                out.push(SeriesExemplars { series: labels.clone(), exemplars: in_range });
            }
        }
        Ok(out)
    }

    fn metadata(&self, metric_name: Option<&str>) -> Result<Vec<(String, Vec<MetricMetadata>)>, MetricsError> {
        let data = self.data.read().unwrap_or_else(|poison| poison.into_inner());
        Ok(data
            .metadata
            .iter()
            .filter(|(name, _)| metric_name.is_none_or(|wanted| wanted == name.as_str()))
            .map(|(name, entries)| (name.clone(), entries.clone()))
            .collect())
    }
}
