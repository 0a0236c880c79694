//! Range functions over many series: each series is decoded once into a reused buffer, its
//! windows slide along the steps (no search, no copy), and the series are spread over worker
//! threads. Only the function's value per step is kept, never the decoded samples.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tripod_storage::labels::Labels;
use tripod_storage::metrics::{Sample, Series, is_stale_nan};

use super::eval::EvalError;
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
                let windows = series.len().saturating_mul(self.window_ends.len());
                let workers = std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .min(MAX_WORKERS)
                    .min(windows / MIN_WINDOWS_PER_WORKER)
                    .max(1);
                if workers == 1 {
                    self.run_stored(&series, &loaded)?
                } else {
                    let per_worker = series.len().div_ceil(workers);
                    let parts: Vec<Result<Vec<StepValues>, EvalError>> = std::thread::scope(|scope| {
                        let handles: Vec<_> = series
                            .chunks(per_worker)
                            .map(|part| scope.spawn(|| self.run_stored(part, &loaded)))
                            .collect();
                        handles
                            .into_iter()
                            .map(|handle| {
                                handle.join().unwrap_or_else(|_| {
                                    Err(EvalError::Execution("a query worker thread failed".into()))
                                })
                            })
                            .collect()
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
            let mut samples = std::mem::take(&mut scratch.samples);
            s.samples_into(&mut samples).map_err(|e| EvalError::Storage(e.to_string()))?;
            self.count(loaded, samples.len())?;
            // Range selectors never see staleness markers.
            if samples.iter().any(|s| is_stale_nan(s.value)) {
                samples.retain(|s| !is_stale_nan(s.value));
            }
            let values = self.values(&samples, &mut scratch);
            scratch.samples = samples;
            self.count(loaded, values.iter().filter(|v| v.is_some()).count())?;
            out.push((s.labels.clone(), values));
        }
        Ok(out)
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
        let mut values = Vec::with_capacity(self.window_ends.len());
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
        values
    }
}
