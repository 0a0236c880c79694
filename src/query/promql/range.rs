//! Range functions over many series: each series is decoded once into a reused buffer, its
//! windows slide along the steps (no search, no copy), and the series are spread over worker
//! threads. Only the function's value per step is kept, never the decoded samples.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tripod_storage::labels::Labels;
use tripod_storage::metrics::{Sample, SampleColumns, Series, is_stale_nan};

use promql_parser::parser::token::{T_SUM, TokenType};

use super::eval::{Accumulator, EvalError, fold};
use super::functions::{self, Window};
use super::walk::{Walk, Walked};

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
    /// A series' samples as columns, for the walk.
    columns: SampleColumns,
    /// `resets[k]`: counter resets among the first `k` samples.
    resets: Vec<u32>,
    /// The last window geometry `rate`, `increase` and `delta` computed (window by window).
    rate: Option<functions::RateGeometry>,
    /// The walk `rate`, `increase` and `delta` take when they can: worked out on first use.
    walk: Option<Option<Walk>>,
    /// The walk's value at each step, and whether the step has one.
    walked: Vec<f64>,
    walked_present: Vec<bool>,
}

/// A group's `sum` at every step, column by column: how many values and their
/// Neumaier-compensated sum, added as [`fold`] adds them.
#[derive(Debug, Clone)]
struct GroupSums {
    counts: Vec<u64>,
    sums: Vec<f64>,
    compensations: Vec<f64>,
}

impl GroupSums {
    fn new(steps: usize) -> GroupSums {
        GroupSums { counts: vec![0; steps], sums: vec![0.0; steps], compensations: vec![0.0; steps] }
    }

    /// Adds `values[i]` at each step `i` where `present[i]`, knowing that every step of
    /// `dense` is present. Written without branches (both arms of the compensation computed,
    /// one kept), so that the compiler adds several steps at once; the arithmetic is that of
    /// the fold's compensated addition.
    fn add(&mut self, values: &[f64], present: &[bool], dense: Range<usize>) {
        with_wide_vectors(
            #[inline(always)]
            || self.add_steps(values, present, dense),
        );
    }

    #[inline(always)]
    fn add_steps(&mut self, values: &[f64], present: &[bool], dense: Range<usize>) {
        let steps = values.len().min(present.len()).min(self.sums.len());
        let steps = steps.min(self.compensations.len()).min(self.counts.len());
        let dense = dense.start.min(steps)..dense.end.min(steps);
        if dense.is_empty() {
            self.add_where_present(values, present);
            return;
        }
        self.add_where_present(&values[..dense.start], &present[..dense.start]);
        let (sums, compensations, counts) =
            (&mut self.sums[dense.clone()], &mut self.compensations[dense.clone()], &mut self.counts[dense.clone()]);
        for (((sum, compensation), count), &value) in
            sums.iter_mut().zip(compensations.iter_mut()).zip(counts.iter_mut()).zip(&values[dense.clone()])
        {
            (*sum, *compensation) = compensated_add_branchless(value, *sum, *compensation);
            *count += 1;
        }
        let rest = dense.end..steps;
        let mut tail = GroupSumsView {
            counts: &mut self.counts[rest.clone()],
            sums: &mut self.sums[rest.clone()],
            compensations: &mut self.compensations[rest.clone()],
        };
        tail.add_where_present(&values[rest.clone()], &present[rest]);
    }

    /// Adds `values[i]` at each step `i` where `present[i]`.
    #[inline(always)]
    fn add_where_present(&mut self, values: &[f64], present: &[bool]) {
        GroupSumsView { counts: &mut self.counts, sums: &mut self.sums, compensations: &mut self.compensations }
            .add_where_present(values, present);
    }

    fn into_accumulators(self) -> Vec<Accumulator> {
        let columns = self.counts.into_iter().zip(self.sums.into_iter().zip(self.compensations));
        columns.map(|(count, (sum, compensation))| Accumulator::summed(count, sum, compensation)).collect()
    }
}

/// One step of the fold's compensated addition, without branches: both arms of the
/// compensation are computed and one kept, so that the compiler adds two steps at once.
#[inline(always)]
fn compensated_add_branchless(value: f64, sum: f64, compensation: f64) -> (f64, f64) {
    let total = sum + value;
    let bigger_sum = compensation + ((sum - total) + value);
    let bigger_value = compensation + ((value - total) + sum);
    let added = if sum.abs() >= value.abs() { bigger_sum } else { bigger_value };
    // `is_infinite`, as a comparison the compiler can do for two steps at once.
    (total, if total.abs() == f64::INFINITY { 0.0 } else { added })
}

/// Some steps of a [`GroupSums`].
struct GroupSumsView<'a> {
    counts: &'a mut [u64],
    sums: &'a mut [f64],
    compensations: &'a mut [f64],
}

impl GroupSumsView<'_> {
    /// Adds `values[i]` at each step `i` where `present[i]`.
    #[inline(always)]
    fn add_where_present(&mut self, values: &[f64], present: &[bool]) {
        let steps = values.len().min(present.len()).min(self.sums.len());
        let steps = steps.min(self.compensations.len()).min(self.counts.len());
        let (sums, compensations, counts) =
            (&mut self.sums[..steps], &mut self.compensations[..steps], &mut self.counts[..steps]);
        let (values, present) = (&values[..steps], &present[..steps]);
        for i in 0..steps {
            let (value, keep) = (values[i], present[i]);
            let (sum, compensation) = (sums[i], compensations[i]);
            let (total, added) = compensated_add_branchless(value, sum, compensation);
            sums[i] = if keep { total } else { sum };
            compensations[i] = if keep { added } else { compensation };
            counts[i] += u64::from(keep);
        }
    }
}

/// Runs `kernel` compiled for AVX2 when the processor has it, so that its loops of float
/// arithmetic go four steps at a time instead of two; the results are the same (each IEEE
/// operation is exact, and no two are fused). `kernel` must be inlined into it for that.
#[inline(always)]
pub(super) fn with_wide_vectors<R>(kernel: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        fn wide<R>(kernel: impl FnOnce() -> R) -> R {
            kernel()
        }
        // SAFETY: the processor has AVX2, as was just checked.
        return unsafe { wide(kernel) };
    }
    kernel()
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
                let mut out = Vec::with_capacity(series.len());
                for part in self.spread(series, |part, _| self.run_stored(part, &loaded)) {
                    out.extend(part?);
                }
                out
            }
        };
        Ok((out, loaded.into_inner()))
    }

    fn run_stored(&self, series: Vec<Series>, loaded: &AtomicUsize) -> Result<Vec<StepValues>, EvalError> {
        let mut scratch = Scratch::default();
        let mut out = Vec::with_capacity(series.len());
        for (index, s) in series.into_iter().enumerate() {
            self.check_deadline(index)?;
            let mut values = Vec::with_capacity(self.window_ends.len());
            self.evaluate_stored(&s, &mut scratch, &mut values, loaded)?;
            out.push((s.labels, values));
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
        if self.walkable(scratch) {
            self.decode_stored_columns(series, scratch, loaded)?;
            let walked = self.walk_columns(scratch);
            values.clear();
            let present = scratch.walked_present.iter();
            values.extend(scratch.walked.iter().zip(present).map(|(&value, &present)| present.then_some(value)));
            return self.count(loaded, walked.present);
        }
        self.decode_stored(series, scratch, loaded)?;
        let samples = std::mem::take(&mut scratch.samples);
        self.values_into(&samples, scratch, values);
        scratch.samples = samples;
        self.count(loaded, values.iter().filter(|v| v.is_some()).count())
    }

    /// Decodes one stored series into `scratch.samples`, counted, staleness markers removed.
    fn decode_stored(&self, series: &Series, scratch: &mut Scratch, loaded: &AtomicUsize) -> Result<(), EvalError> {
        let samples = &mut scratch.samples;
        series.samples_into(samples).map_err(|e| EvalError::Storage(e.to_string()))?;
        self.count(loaded, samples.len())?;
        // Range selectors never see staleness markers. (Looked for in blocks of samples
        // without stopping early, which the compiler turns into a few vector compares.)
        if samples.chunks(16).any(|block| block.iter().fold(false, |stale, s| stale | is_stale_nan(s.value))) {
            samples.retain(|s| !is_stale_nan(s.value));
        }
        Ok(())
    }

    /// Decodes one stored series into `scratch.columns`, counted, staleness markers removed.
    fn decode_stored_columns(
        &self,
        series: &Series,
        scratch: &mut Scratch,
        loaded: &AtomicUsize,
    ) -> Result<(), EvalError> {
        let columns = &mut scratch.columns;
        series.columns_into(columns).map_err(|e| EvalError::Storage(e.to_string()))?;
        self.count(loaded, columns.len())?;
        // Range selectors never see staleness markers.
        columns.remove_stale_markers();
        Ok(())
    }

    /// Evaluates every series and folds its values into the accumulators of its group
    /// (`group_of[i]` for `series[i]`), with aggregation operator `op`. Returns each group's
    /// accumulators per step, and the new count of samples held.
    pub fn run_aggregated(
        &self,
        series: Vec<Series>,
        group_of: &[usize],
        group_count: usize,
        op: TokenType,
        loaded: usize,
    ) -> Result<(Vec<Vec<Accumulator>>, usize), EvalError> {
        let loaded = AtomicUsize::new(loaded);
        let partials = self.spread(series, |part, offset| {
            let groups = group_of.get(offset..offset + part.len()).unwrap_or_default();
            self.fold_stored(part, groups, group_count, op, &loaded)
        });
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
        series: Vec<Series>,
        group_of: &[usize],
        group_count: usize,
        op: TokenType,
        loaded: &AtomicUsize,
    ) -> Result<Vec<Vec<Accumulator>>, EvalError> {
        let steps = self.window_ends.len();
        let mut scratch = Scratch::default();
        if op.id() == T_SUM && self.walkable(&mut scratch) {
            return self.sum_walked(series, group_of, group_count, &mut scratch, loaded);
        }
        let mut state = vec![vec![Accumulator::default(); steps]; group_count];
        let mut values = Vec::with_capacity(steps);
        for (index, (s, &group)) in series.into_iter().zip(group_of).enumerate() {
            self.check_deadline(index)?;
            self.evaluate_stored(&s, &mut scratch, &mut values, loaded)?;
            if let Some(accumulators) = state.get_mut(group) {
                fold(accumulators, &values, op);
            }
        }
        Ok(state)
    }

    /// `sum` of a job [`RangeJob::walkable`] said yes to: each window's value is added to its
    /// group's sum at that step as the walk finds it, into running sums kept apart from the
    /// wider [`Accumulator`] so that a group's steps stay close together in memory. The sums
    /// are those [`fold`] makes. Each series is dropped once added, so that threads dropping
    /// the shared parts of series (strings, chunk buffers) seldom do so at the same moment.
    fn sum_walked(
        &self,
        series: Vec<Series>,
        group_of: &[usize],
        group_count: usize,
        scratch: &mut Scratch,
        loaded: &AtomicUsize,
    ) -> Result<Vec<Vec<Accumulator>>, EvalError> {
        let steps = self.window_ends.len();
        let mut sums = vec![GroupSums::new(steps); group_count];
        let mut series = series.into_iter().zip(group_of).enumerate().peekable();
        while let Some((index, (s, &group))) = series.next() {
            self.check_deadline(index)?;
            // The next series' bytes are on their way while this one is decoded.
            if let Some((_, (next, _))) = series.peek() {
                next.prefetch();
            }
            self.decode_stored_columns(&s, scratch, loaded)?;
            let walked = self.walk_columns(scratch);
            if let Some(group_sums) = sums.get_mut(group) {
                group_sums.add(&scratch.walked, &scratch.walked_present, walked.dense);
            }
            self.count(loaded, walked.present)?;
        }
        Ok(sums.into_iter().map(GroupSums::into_accumulators).collect())
    }

    /// Runs `work(part, offset)` over consecutive parts of `series` (`offset`: the index of
    /// the part's first series), one part per worker thread, the last on this thread; each
    /// part is given to the thread that works on it. The results come in series order.
    fn spread<T: Send>(
        &self,
        series: Vec<Series>,
        work: impl Fn(Vec<Series>, usize) -> Result<T, EvalError> + Sync,
    ) -> Vec<Result<T, EvalError>> {
        let workers = self.workers(series.len());
        if workers <= 1 {
            return vec![work(series, 0)];
        }
        let per_worker = series.len().div_ceil(workers).max(1);
        let mut parts = Vec::with_capacity(workers);
        let (mut rest, mut offset) = (series, 0);
        while rest.len() > per_worker {
            let tail = rest.split_off(per_worker);
            parts.push((offset, rest));
            offset += per_worker;
            rest = tail;
        }
        parts.push((offset, rest));
        let work = &work;
        std::thread::scope(|scope| {
            let mut parts = parts.into_iter();
            let last = parts.next_back();
            let handles: Vec<_> = parts.map(|(offset, part)| scope.spawn(move || work(part, offset))).collect();
            let last = last.map(|(offset, part)| work(part, offset));
            let mut results: Vec<Result<T, EvalError>> = handles.into_iter().map(join_worker).collect();
            results.extend(last);
            results
        })
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
        // `rate`, `increase` and `delta` take the fast paths: (counter, per second).
        let extrapolation = match self.name {
            "rate" => Some((true, true)),
            "increase" => Some((true, false)),
            "delta" => Some((false, false)),
            _ => None,
        };
        if self.walkable(scratch) {
            scratch.columns.clear();
            scratch.columns.times.extend(samples.iter().map(|s| s.t_ms));
            scratch.columns.values.extend(samples.iter().map(|s| s.value));
            self.walk_columns(scratch);
            let present = scratch.walked_present.iter();
            values.extend(scratch.walked.iter().zip(present).map(|(&value, &present)| present.then_some(value)));
            return;
        }
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

impl RangeJob<'_> {
    /// Whether this job is one a [`Walk`] evaluates: `rate`, `increase` or `delta` with window
    /// ends that never move back.
    fn walkable(&self, scratch: &mut Scratch) -> bool {
        scratch.walk.get_or_insert_with(|| Walk::new(self.name, self.window_ends, self.range_ms)).is_some()
    }

    /// The walk over `scratch.columns`, into `scratch.walked` and `scratch.walked_present`.
    /// Nothing is computed unless [`RangeJob::walkable`] said yes.
    fn walk_columns(&self, scratch: &mut Scratch) -> Walked {
        let Scratch { walk: Some(Some(walk)), walked, walked_present, columns, .. } = scratch else {
            return Walked { present: 0, dense: 0..0 };
        };
        walk.run(columns, walked, walked_present)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tripod_storage::metrics::memory::MemoryMetrics;
    use tripod_storage::metrics::{MetricsAppender, MetricsQueryable, STALE_NAN, SeriesKey, SeriesSamples};

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

    /// The same value to the bit, or both NaN: which NaN arithmetic yields is not specified
    /// (the compiler may swap the operands of an addition), and every NaN is shown as `NaN`.
    fn same(a: Option<f64>, b: Option<f64>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            (a, b) => a.is_none() && b.is_none(),
        }
    }

    /// A small deterministic generator (xorshift), so the property test needs no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn the_walk_gives_each_window_what_the_window_function_gives() {
        for seed in 1..600u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            // Odd seeds: samples on a regular grid and evenly spaced steps a whole number of
            // samples apart (the walk's vectorized interior); even seeds: anything.
            let grid = seed % 2 == 1;
            let spacing = [1_000, 10_000, 15_000, 60_000][rng.below(4) as usize];
            let mut t = rng.below(100_000) as i64 - 50_000;
            let mut value = rng.below(1000) as f64 / 4.0;
            let resets = rng.below(3) == 0;
            let samples: Vec<Sample> = (0..rng.below(300))
                .map(|_| {
                    t += match rng.below(5) {
                        _ if grid => spacing,
                        0..=2 => 15_000,
                        3 => 1 + rng.below(30_000) as i64,
                        _ => 1 + rng.below(2_000_000) as i64,
                    };
                    value = match rng.below(if grid { 40 } else { 12 }) {
                        0 if grid && !resets => value,
                        0 => value / 3.0,
                        1 => -value,
                        2 => f64::NAN,
                        3 => 0.0,
                        4 => f64::INFINITY,
                        5 => value,
                        _ if value.is_finite() => value + rng.below(500) as f64 / 8.0,
                        _ => rng.below(1000) as f64,
                    };
                    Sample { t_ms: t, value }
                })
                .collect();
            let range_ms = 1 + rng.below(900_000) as i64;
            let step_ms = if grid { spacing * (1 + rng.below(4) as i64) } else { rng.below(60_000) as i64 };
            let mut end = -100_000 + rng.below(200_000) as i64;
            let window_ends: Vec<i64> = (0..rng.below(400))
                .map(|_| {
                    end += if !grid && rng.below(10) == 0 { 0 } else { step_ms };
                    end
                })
                .collect();
            for name in ["rate", "increase", "delta"] {
                let job = RangeJob {
                    name,
                    window_ends: &window_ends,
                    eval_times: &window_ends,
                    range_ms,
                    params: &[],
                    deadline: Instant::now() + Duration::from_secs(60),
                    max_samples: usize::MAX,
                };
                let mut scratch = Scratch::default();
                let mut walked = Vec::new();
                job.values_into(&samples, &mut scratch, &mut walked);
                assert_eq!(walked.len(), window_ends.len());
                // Told what is true of the samples' spacing and drops (as decoding tells it),
                // the walk gives the same.
                let times: Vec<i64> = samples.iter().map(|s| s.t_ms).collect();
                let spacing = match times.as_slice() {
                    [first, second, ..] if times.windows(2).all(|pair| pair[1] - pair[0] == second - first) => {
                        Some(second - first)
                    }
                    _ => None,
                };
                let columns = SampleColumns {
                    values: samples.iter().map(|s| s.value).collect(),
                    times,
                    stale_markers: false,
                    spacing,
                    non_decreasing: !samples.windows(2).any(|pair| pair[1].value < pair[0].value),
                };
                if let Some(Some(walk)) = scratch.walk.as_mut() {
                    let (mut out, mut present) = (Vec::new(), Vec::new());
                    let told = walk.run(&columns, &mut out, &mut present);
                    assert_eq!(told.present, present.iter().filter(|&&p| p).count(), "seed {seed} {name}");
                    assert!(present[told.dense.clone()].iter().all(|&p| p), "seed {seed} {name}");
                    for ((value, present), walked) in out.iter().zip(&present).zip(&walked) {
                        assert!(same(present.then_some(*value), *walked), "seed {seed} {name} told");
                    }
                }
                for (&end, walked) in window_ends.iter().zip(&walked) {
                    let start = end.saturating_sub(range_ms);
                    let in_window: Vec<Sample> =
                        samples.iter().copied().filter(|s| s.t_ms > start && s.t_ms <= end).collect();
                    let window = Window {
                        samples: &in_window,
                        start_ms: start,
                        end_ms: end,
                        eval_ms: end,
                        no_counter_resets: false,
                    };
                    let expected = functions::range_function(name, &window, &[]);
                    assert!(
                        same(*walked, expected),
                        "seed {seed} {name} window ending {end}: {walked:?} vs {expected:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn sums_of_walked_windows_are_the_sums_of_their_values() {
        let store = store();
        let expr = promql_parser::parser::parse("x[5m]").unwrap();
        let promql_parser::parser::Expr::MatrixSelector(matrix) = expr else { panic!() };
        let matchers = crate::query::promql::selector::selector_matchers(&matrix.vs).unwrap();
        let series = store.select(&matchers[0], tripod_storage::metrics::TimeRange::all()).unwrap();
        let group_of: Vec<usize> = (0..series.len()).map(|i| i % 3).collect();
        let window_ends: Vec<i64> = (0..480).map(|i| i * 15_000).collect();
        for name in ["rate", "increase", "delta"] {
            let job = RangeJob {
                name,
                window_ends: &window_ends,
                eval_times: &window_ends,
                range_ms: 300_000,
                params: &[],
                deadline: Instant::now() + Duration::from_secs(60),
                max_samples: usize::MAX,
            };
            let (walked, loaded) = job.run_aggregated(series.clone(), &group_of, 3, TokenType::new(T_SUM), 0).unwrap();
            // The same fold over each series' values, one series at a time.
            let mut expected = vec![vec![Accumulator::default(); window_ends.len()]; 3];
            let mut scratch = Scratch::default();
            let mut values = Vec::new();
            let counted = AtomicUsize::new(0);
            for (s, &group) in series.iter().zip(&group_of) {
                job.evaluate_stored(s, &mut scratch, &mut values, &counted).unwrap();
                fold(&mut expected[group], &values, TokenType::new(T_SUM));
            }
            assert_eq!(loaded, counted.into_inner(), "{name}");
            for (walked, expected) in walked.iter().flatten().zip(expected.iter().flatten()) {
                let op = TokenType::new(T_SUM);
                assert!(same(walked.result(op), expected.result(op)), "{name}: {walked:?} vs {expected:?}");
            }
        }
    }

    #[test]
    fn column_sums_add_as_the_fold_adds() {
        let specials = [0.0, -0.0, 1e308, -1e308, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 1e-300, 3.5, -7.25];
        for seed in 1..200u64 {
            let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
            let steps = 1 + rng.below(40) as usize;
            let mut sums = GroupSums::new(steps);
            let mut expected = vec![Accumulator::default(); steps];
            for _ in 0..rng.below(30) {
                let values: Vec<f64> = (0..steps)
                    .map(|_| match rng.below(4) {
                        0 => specials[rng.below(specials.len() as u64) as usize],
                        1 => (rng.next() >> 11) as f64 * 1e-3,
                        _ => rng.below(10_000) as f64 / 7.0 - 700.0,
                    })
                    .collect();
                let present: Vec<bool> = (0..steps).map(|_| rng.below(5) != 0).collect();
                // Absent steps hold a value the walk leaves there; it must not count.
                let shown: Vec<f64> = values.iter().zip(&present).map(|(&v, &p)| if p { v } else { 0.0 }).collect();
                // A run of present steps, if there is one, told as such.
                let dense = match present.iter().position(|&p| p) {
                    Some(first) => first..first + present[first..].iter().take_while(|&&p| p).count(),
                    None => 0..0,
                };
                sums.add(&shown, &present, dense);
                let options: Vec<Option<f64>> = values.iter().zip(&present).map(|(&v, &p)| p.then_some(v)).collect();
                fold(&mut expected, &options, TokenType::new(T_SUM));
            }
            let op = TokenType::new(T_SUM);
            for (column, expected) in sums.into_accumulators().iter().zip(&expected) {
                assert!(same(column.result(op), expected.result(op)), "seed {seed}: {column:?} vs {expected:?}");
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
