//! Range functions over many series: each series is decoded once into a reused buffer, its
//! windows slide along the steps (no search, no copy), and the series are spread over worker
//! threads. Only the function's value per step is kept, never the decoded samples.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tripod_storage::labels::Labels;
use tripod_storage::metrics::{Sample, Series, is_stale_nan};

use promql_parser::parser::token::TokenType;

use super::eval::{Accumulator, EvalError, fold};
use super::functions::{self, Window};

/// At most this many threads evaluate one range function.
const MAX_WORKERS: usize = 4;
/// Below this many windows (series x steps) per thread, a thread costs more than it saves.
const MIN_WINDOWS_PER_WORKER: usize = 200_000;
/// Series between deadline checks.
const DEADLINE_EVERY: usize = 64;

/// The series of a range vector: still in storage, or computed (a subquery's).
pub enum RangeData {
    Stored(Vec<Series>),
    Computed(Vec<(Labels, Vec<Sample>)>),
}

impl RangeData {
    pub fn len(&self) -> usize {
        match self {
            RangeData::Stored(series) => series.len(),
            RangeData::Computed(series) => series.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every series with its samples (staleness markers included), decoded.
    pub fn into_decoded(self) -> Result<Vec<(Labels, Vec<Sample>)>, EvalError> {
        match self {
            RangeData::Computed(series) => Ok(series),
            RangeData::Stored(series) => series
                .into_iter()
                .map(|s| {
                    let samples = s.samples().map_err(|e| EvalError::Storage(e.to_string()))?;
                    Ok((s.labels, samples))
                })
                .collect(),
        }
    }
}

/// One range function over a range vector: the window ends, evaluation times and scalar
/// parameters at each step.
pub struct RangeJob<'a> {
    pub name: &'a str,
    /// The end of each step's window, `(end - range_ms, end]`.
    pub window_ends: &'a [i64],
    /// Each step's evaluation time (differs from the window end under `offset` and `@`).
    pub eval_times: &'a [i64],
    pub range_ms: i64,
    /// Each scalar parameter's value at each step.
    pub params: &'a [Vec<f64>],
    pub deadline: Instant,
    pub max_samples: usize,
}

/// A series' labels and the function's value at each step.
pub type StepValues = (Labels, Vec<Option<f64>>);

/// Per-thread buffers, reused from series to series.
#[derive(Default)]
struct Scratch {
    samples: Vec<Sample>,
    /// `resets[k]`: counter resets among the first `k` samples.
    resets: Vec<u32>,
    /// The last window geometry `rate`, `increase` and `delta` computed.
    rate: Option<functions::RateGeometry>,
}

/// A worker's result; a worker that panicked (a bug) fails the query instead of the server.
fn join_worker<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T, EvalError>>) -> Result<T, EvalError> {
    handle.join().unwrap_or_else(|_| Err(EvalError::Execution("a query worker thread failed".into())))
}

impl RangeJob<'_> {
    /// Evaluates every series, in order. `loaded` is the count of samples the query holds so
    /// far; the new total is returned with the results.
    pub fn run(&self, data: RangeData, loaded: usize) -> Result<(Vec<StepValues>, usize), EvalError> {
        let loaded = AtomicUsize::new(loaded);
        let out = match data {
            RangeData::Computed(series) => {
                let mut scratch = Scratch::default();
                let mut out = Vec::with_capacity(series.len());
                for (index, (labels, samples)) in series.into_iter().enumerate() {
                    self.check_deadline(index)?;
                    let values = if samples.iter().any(|s| is_stale_nan(s.value)) {
                        scratch.samples.clear();
                        scratch.samples.extend(samples.iter().filter(|s| !is_stale_nan(s.value)));
                        let kept = std::mem::take(&mut scratch.samples);
                        let values = self.values(&kept, &mut scratch);
                        scratch.samples = kept;
                        values
                    } else {
                        self.values(&samples, &mut scratch)
                    };
                    self.count(&loaded, values.iter().filter(|v| v.is_some()).count())?;
                    out.push((labels, values));
                }
                out
            }
            RangeData::Stored(series) => {
                let workers = self.workers(series.len());
                if workers == 1 {
                    self.run_stored(&series, &loaded)?
                } else {
                    let per_worker = series.len().div_ceil(workers);
                    let parts: Vec<Result<Vec<StepValues>, EvalError>> = std::thread::scope(|scope| {
                        let handles: Vec<_> = series
                            .chunks(per_worker)
                            .map(|part| scope.spawn(|| self.run_stored(part, &loaded)))
                            .collect();
                        handles.into_iter().map(join_worker).collect()
                    });
                    let mut out = Vec::with_capacity(series.len());
                    for part in parts {
                        out.extend(part?);
                    }
                    out
                }
            }
        };
        Ok((out, loaded.into_inner()))
    }

    fn run_stored(&self, series: &[Series], loaded: &AtomicUsize) -> Result<Vec<StepValues>, EvalError> {
        let mut scratch = Scratch::default();
        let mut out = Vec::with_capacity(series.len());
        for (index, s) in series.iter().enumerate() {
            self.check_deadline(index)?;
            let mut values = Vec::with_capacity(self.window_ends.len());
            self.evaluate_stored(s, &mut scratch, &mut values, loaded)?;
            out.push((s.labels.clone(), values));
        }
        Ok(out)
    }

    /// Decodes one stored series and evaluates the function over it into `values`.
    fn evaluate_stored(
        &self,
        series: &Series,
        scratch: &mut Scratch,
        values: &mut Vec<Option<f64>>,
        loaded: &AtomicUsize,
    ) -> Result<(), EvalError> {
        let mut samples = std::mem::take(&mut scratch.samples);
        series.samples_into(&mut samples).map_err(|e| EvalError::Storage(e.to_string()))?;
        self.count(loaded, samples.len())?;
        // Range selectors never see staleness markers.
        if samples.iter().any(|s| is_stale_nan(s.value)) {
            samples.retain(|s| !is_stale_nan(s.value));
        }
        self.values_into(&samples, scratch, values);
        scratch.samples = samples;
        self.count(loaded, values.iter().filter(|v| v.is_some()).count())
    }

    /// Evaluates every series and folds its values into the accumulators of its group
    /// (`group_of[i]` for `series[i]`), with aggregation operator `op`. Returns each group's
    /// accumulators per step, and the new count of samples held.
    pub fn run_aggregated(
        &self,
        series: &[Series],
        group_of: &[usize],
        group_count: usize,
        op: TokenType,
        loaded: usize,
    ) -> Result<(Vec<Vec<Accumulator>>, usize), EvalError> {
        let loaded = AtomicUsize::new(loaded);
        let workers = self.workers(series.len());
        let per_worker = series.len().div_ceil(workers).max(1);
        let partials: Vec<Result<Vec<Vec<Accumulator>>, EvalError>> = if workers == 1 {
            vec![self.fold_stored(series, group_of, group_count, op, &loaded)]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = series
                    .chunks(per_worker)
                    .zip(group_of.chunks(per_worker))
                    .map(|(part, groups)| scope.spawn(|| self.fold_stored(part, groups, group_count, op, &loaded)))
                    .collect();
                handles.into_iter().map(join_worker).collect()
            })
        };
        // Partial states merge in series order.
        let mut total: Option<Vec<Vec<Accumulator>>> = None;
        for partial in partials {
            let partial = partial?;
            match &mut total {
                None => total = Some(partial),
                Some(total) => {
                    for (group, other) in total.iter_mut().zip(&partial) {
                        for (accumulator, other) in group.iter_mut().zip(other) {
                            accumulator.merge(op, other);
                        }
                    }
                }
            }
        }
        let steps = self.window_ends.len();
        let total = total.unwrap_or_else(|| vec![vec![Accumulator::default(); steps]; group_count]);
        Ok((total, loaded.into_inner()))
    }

    fn fold_stored(
        &self,
        series: &[Series],
        group_of: &[usize],
        group_count: usize,
        op: TokenType,
        loaded: &AtomicUsize,
    ) -> Result<Vec<Vec<Accumulator>>, EvalError> {
        let steps = self.window_ends.len();
        let mut state = vec![vec![Accumulator::default(); steps]; group_count];
        let mut scratch = Scratch::default();
        let mut values = Vec::with_capacity(steps);
        for (index, (s, &group)) in series.iter().zip(group_of).enumerate() {
            self.check_deadline(index)?;
            self.evaluate_stored(s, &mut scratch, &mut values, loaded)?;
            if let Some(accumulators) = state.get_mut(group) {
                fold(accumulators, &values, op);
            }
        }
        Ok(state)
    }

    /// How many threads to spread `series` over.
    fn workers(&self, series: usize) -> usize {
        let windows = series.saturating_mul(self.window_ends.len());
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_WORKERS)
            .min(windows / MIN_WINDOWS_PER_WORKER)
            .max(1)
    }

    fn check_deadline(&self, index: usize) -> Result<(), EvalError> {
        if index.is_multiple_of(DEADLINE_EVERY) && Instant::now() >= self.deadline {
            return Err(EvalError::Timeout);
        }
        Ok(())
    }

    fn count(&self, loaded: &AtomicUsize, samples: usize) -> Result<(), EvalError> {
        let total = loaded.fetch_add(samples, Ordering::Relaxed).saturating_add(samples);
        if total > self.max_samples {
            return Err(EvalError::TooManySamples);
        }
        Ok(())
    }

    /// The function at every step over `samples` (sorted by time, no staleness markers).
    fn values(&self, samples: &[Sample], scratch: &mut Scratch) -> Vec<Option<f64>> {
        let mut values = Vec::with_capacity(self.window_ends.len());
        self.values_into(samples, scratch, &mut values);
        values
    }

    /// Like [`RangeJob::values`], into `values` (cleared first).
    fn values_into(&self, samples: &[Sample], scratch: &mut Scratch, values: &mut Vec<Option<f64>>) {
        values.clear();
        // `rate`, `increase` and `delta` take the fast path: (counter, per second).
        let extrapolation = match self.name {
            "rate" => Some((true, true)),
            "increase" => Some((true, false)),
            "delta" => Some((false, false)),
            _ => None,
        };
        let counter = matches!(extrapolation, Some((true, _)));
        if counter {
            scratch.resets.clear();
            scratch.resets.push(0);
            let mut resets = 0;
            for (k, sample) in samples.iter().enumerate() {
                if k > 0 && sample.value < samples[k - 1].value {
                    resets += 1;
                }
                scratch.resets.push(resets);
            }
        }
        let mut step_params = [f64::NAN; 2];
        let param_count = self.params.len().min(step_params.len());
        let (mut from, mut to) = (0, 0);
        let mut previous_end = i64::MIN;
        for (i, &end) in self.window_ends.iter().enumerate() {
            let start = end.saturating_sub(self.range_ms);
            if end >= previous_end {
                // Windows move forward: slide both edges.
                while from < samples.len() && samples[from].t_ms <= start {
                    from += 1;
                }
                to = to.max(from);
                while to < samples.len() && samples[to].t_ms <= end {
                    to += 1;
                }
            } else {
                from = samples.partition_point(|s| s.t_ms <= start);
                to = samples.partition_point(|s| s.t_ms <= end).max(from);
            }
            previous_end = end;
            for (slot, param) in step_params.iter_mut().zip(self.params) {
                *slot = param[i];
            }
            // Resets between the window's first and last sample: pairs (j - 1, j), from < j < to.
            let no_counter_resets = counter && to > from && scratch.resets[to] == scratch.resets[from + 1];
            let window = Window {
                samples: &samples[from..to],
                start_ms: start,
                end_ms: end,
                eval_ms: self.eval_times[i],
                no_counter_resets,
            };
            values.push(match extrapolation {
                Some((is_counter, is_rate)) => {
                    functions::extrapolated_rate_cached(&window, is_counter, is_rate, &mut scratch.rate)
                }
                None => functions::range_function(self.name, &window, &step_params[..param_count]),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tripod_storage::metrics::memory::MemoryMetrics;
    use tripod_storage::metrics::{MetricsAppender, STALE_NAN, SeriesKey, SeriesSamples};

    use crate::query::promql::{EvalOptions, QueryValue, Steps, range_query};

    use super::*;

    /// 1000 counters over two hours at 15 s, with resets, a NaN and a staleness marker: enough
    /// windows for the work to be spread over threads.
    fn store() -> MemoryMetrics {
        let store = MemoryMetrics::new();
        for i in 0..1000u32 {
            let group = (i % 7).to_string();
            let id = i.to_string();
            let labels = Labels::from_pairs([("__name__", "x"), ("g", group.as_str()), ("id", id.as_str())]).unwrap();
            let samples: Vec<Sample> = (0..480i64)
                .map(|k| {
                    let value = match k {
                        _ if i % 97 == 0 && k == 200 => f64::NAN,
                        _ if i % 89 == 0 && k == 300 => STALE_NAN,
                        _ if i % 13 == 0 && k > 240 => f64::from(i) + (k - 240) as f64 * 0.5,
                        _ => 1000.0 + f64::from(i) + k as f64 * f64::from(i % 11 + 1) * 0.25,
                    };
                    Sample { t_ms: k * 15_000 + 7_000, value }
                })
                .collect();
            store
                .append(&[SeriesSamples { key: SeriesKey::Labels(&labels), samples: &samples, exemplars: &[] }])
                .unwrap();
        }
        store
    }

    fn matrix(store: &MemoryMetrics, query: &str) -> Vec<(Labels, Vec<Sample>)> {
        let expr = promql_parser::parser::parse(query).unwrap();
        let options = EvalOptions {
            lookback_ms: 300_000,
            max_samples: 50_000_000,
            deadline: Instant::now() + Duration::from_secs(600),
            subquery_step_ms: 60_000,
        };
        let steps = Steps { start_ms: 0, end_ms: 2 * 3_600_000, step_ms: 15_000 };
        match range_query(store, &expr, steps, options).unwrap() {
            QueryValue::Matrix(series) => series.into_iter().map(|s| (s.labels, s.samples)).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn aggregating_while_evaluating_matches_aggregating_afterwards() {
        let store = store();
        for op in ["sum", "count", "min", "max", "group"] {
            for function in ["rate", "max_over_time", "resets"] {
                let fused = matrix(&store, &format!("{op} by (g) ({function}(x[5m]))"));
                // `* 1` leaves every value as it is but takes the general path.
                let general = matrix(&store, &format!("{op} by (g) ({function}(x[5m]) * 1)"));
                assert_eq!(fused.len(), 7, "{op} {function}");
                assert_eq!(fused.len(), general.len(), "{op} {function}");
                for ((labels, a), (other, b)) in fused.iter().zip(&general) {
                    assert_eq!(labels, other);
                    assert_eq!(a.len(), b.len(), "{op} {function} {labels}");
                    for (a, b) in a.iter().zip(b) {
                        assert_eq!(a.t_ms, b.t_ms);
                        let close = a.value == b.value
                            || (a.value.is_nan() && b.value.is_nan())
                            || (a.value - b.value).abs() <= 1e-12 * a.value.abs().max(b.value.abs());
                        assert!(close, "{op} {function} {labels} at {}: {} vs {}", a.t_ms, a.value, b.value);
                    }
                }
            }
        }
    }

    #[test]
    fn series_spread_over_threads_come_back_in_order() {
        let store = store();
        let rates = matrix(&store, "rate(x[5m])");
        assert_eq!(rates.len(), 1000);
        assert!(rates.windows(2).all(|pair| pair[0].0 < pair[1].0));
        // The same windows one series at a time.
        let single = matrix(&store, "rate(x{id=\"517\"}[5m])");
        let in_all = rates.iter().find(|(labels, _)| labels.get("id") == Some("517")).unwrap();
        assert_eq!(single[0].1, in_all.1);
    }
}
