//! Range aggregations (`count_over_time`, `rate`, `sum_over_time`, ...) in one forward pass.
//!
//! The selected streams are merged oldest first; each entry that passes the pipeline becomes a
//! sample (1, its byte length, or its unwrapped value) of the series named by its labels. Every
//! series keeps only the samples of the window still open; when the merge passes a step's
//! window end, every series' value at that step is computed and the samples that fall out of
//! the next window are dropped. Memory is bounded by one window of samples, not by the range
//! the query covers.

use std::collections::{HashMap, VecDeque};

use tripod_storage::labels::{Labels, MatchOp};
use tripod_storage::logs::{Direction, LogsQueryable, NsRange};

use super::logs::{Merge, open};
use super::{EvalError, QueryParams, StepSeries, check_deadline};
use crate::query::logql::pipeline::labels::ERROR_LABEL;
use crate::query::logql::pipeline::{Outcome, Pipeline, PipelineState};
use crate::query::logql::syntax::ast::{Grouping, LogRange, RangeOp};

/// One output series and the samples of its open window.
struct Window {
    labels: Labels,
    /// (time ns, value), oldest first.
    samples: VecDeque<(i64, f64)>,
    values: Vec<Option<f64>>,
}

/// Keeps the labels a grouping asks for.
pub(crate) fn group_labels(labels: &Labels, grouping: &Grouping) -> Labels {
    let kept =
        labels.iter().filter(|label| grouping.labels.iter().any(|name| **name == *label.name) != grouping.without);
    Labels::from_sorted_unchecked(kept.cloned().collect())
}

/// The message a metric query answers when entries carry a pipeline error.
fn pipeline_error(labels: &Labels) -> EvalError {
    let error = labels.get(ERROR_LABEL).unwrap_or_default();
    EvalError::Invalid(format!(
        "pipeline error: {error:?} for series {labels:?}; add a label filter to skip it, such as | __error__!={error:?}, or | __error__=\"\" to skip every error"
    ))
}

/// Evaluates a range aggregation at each step (`steps` in ns).
pub fn evaluate(
    store: &dyn LogsQueryable,
    op: RangeOp,
    parameter: Option<f64>,
    range: &LogRange,
    grouping: Option<&Grouping>,
    steps: &[i64],
    params: &QueryParams<'_>,
) -> Result<Vec<StepSeries>, EvalError> {
    let unwrap = range.unwrap_stage().is_some();
    let mut pipeline = Pipeline::new(&range.log.stages, unwrap)?;
    if let Some(grouping) = grouping.filter(|grouping| !grouping.without) {
        pipeline.restrict_output(&grouping.labels);
    }
    let (Some(&first), Some(&last)) = (steps.first(), steps.last()) else { return Ok(Vec::new()) };
    let window_ns = range.range_ns;
    let ends: Vec<i64> = steps.iter().map(|t| t.saturating_sub(range.offset_ns)).collect();
    let read_from = first.saturating_sub(range.offset_ns).saturating_sub(window_ns).saturating_add(1);
    let read_to = last.saturating_sub(range.offset_ns);
    let read = NsRange::new(read_from, read_to).unwrap_or_else(NsRange::all);
    let cursors = open(store, &range.log, &pipeline, params.tenant, read, Direction::Forward)?;
    let mut merge = Merge::new(cursors, Direction::Forward)?;

    let mut state = PipelineState::default();
    let mut windows: Vec<Window> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    // With `by`: the grouped values of an entry, as text, to its window (no label set built
    // for entries of a group already seen).
    let mut by_values: HashMap<String, usize> = HashMap::new();
    let mut key = String::new();
    // absent_over_time: every sample's time, whatever its series.
    let mut any: VecDeque<i64> = VecDeque::new();
    let mut absent = vec![None; steps.len()];
    let mut next_step = 0usize;
    let mut counter = 0u32;
    let finalize = |step: usize, windows: &mut Vec<Window>, any: &mut VecDeque<i64>, absent: &mut Vec<Option<f64>>| {
        let end = ends[step];
        let start = end.saturating_sub(window_ns);
        for window in windows.iter_mut() {
            while window.samples.front().is_some_and(|(t, _)| *t <= start) {
                window.samples.pop_front();
            }
            if !window.samples.is_empty() {
                window.values[step] = value(op, parameter, &window.samples, start, end, window_ns, unwrap);
            }
        }
        while any.front().is_some_and(|t| *t <= start) {
            any.pop_front();
        }
        if any.is_empty() {
            absent[step] = Some(1.0);
        }
    };
    while let Some((entry, cursor)) = merge.next_entry()? {
        check_deadline(params, &mut counter)?;
        while next_step < steps.len() && ends[next_step] < entry.t_ns {
            finalize(next_step, &mut windows, &mut any, &mut absent);
            next_step += 1;
        }
        if next_step >= steps.len() {
            break;
        }
        let stream = merge.labels(cursor);
        if pipeline.process(entry.t_ns, &entry.line, stream, &entry.metadata, &mut state) == Outcome::Dropped {
            continue;
        }
        let sample = match op {
            RangeOp::BytesOverTime | RangeOp::BytesRate => state.line(&entry.line).len() as f64,
            // Without a value the conversion failed and set the error, reported below.
            _ if unwrap => state.value.unwrap_or(f64::NAN),
            _ => 1.0,
        };
        if state.labels.error().is_some() {
            return Err(pipeline_error(&state.labels.labels()));
        }
        if let Some(grouping) = grouping.filter(|grouping| !grouping.without) {
            key.clear();
            for name in &grouping.labels {
                match state.labels.get(name) {
                    Some(value) => {
                        key.push('\u{1}');
                        key.push_str(value);
                    }
                    None => key.push('\u{2}'),
                }
            }
            if let Some(&slot) = by_values.get(key.as_str()) {
                windows[slot].samples.push_back((entry.t_ns, sample));
                any.push_back(entry.t_ns);
                continue;
            }
        }
        let labels = match grouping {
            // `by`: only the named labels, read straight from the builder.
            Some(grouping) if !grouping.without => {
                let pairs = grouping.labels.iter().filter_map(|name| state.labels.get(name).map(|value| (name, value)));
                Labels::from_pairs(pairs).unwrap_or_default()
            }
            _ => {
                let labels =
                    if pipeline.only_line_filters() && !unwrap { stream.clone() } else { state.labels.labels() };
                match grouping {
                    Some(grouping) => group_labels(&labels, grouping),
                    None => labels,
                }
            }
        };
        let slot = match index.get(&labels) {
            Some(&slot) => slot,
            None => {
                if windows.len() >= params.max_series {
                    return Err(EvalError::TooManySeries(params.max_series));
                }
                windows.push(Window {
                    labels: labels.clone(),
                    samples: VecDeque::new(),
                    values: vec![None; steps.len()],
                });
                index.insert(labels, windows.len() - 1);
                windows.len() - 1
            }
        };
        if grouping.is_some_and(|grouping| !grouping.without) {
            by_values.insert(key.clone(), slot);
        }
        windows[slot].samples.push_back((entry.t_ns, sample));
        any.push_back(entry.t_ns);
    }
    while next_step < steps.len() {
        finalize(next_step, &mut windows, &mut any, &mut absent);
        next_step += 1;
    }
    if op == RangeOp::AbsentOverTime {
        if absent.iter().all(Option::is_none) {
            return Ok(Vec::new());
        }
        return Ok(vec![StepSeries { labels: absent_labels(range), values: absent }]);
    }
    let mut out: Vec<StepSeries> = windows
        .into_iter()
        .filter(|window| window.values.iter().any(Option::is_some))
        .map(|window| StepSeries { labels: window.labels, values: window.values })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(out)
}

/// `absent_over_time`'s labels: the selector's equality matchers, as Prometheus's `absent`.
fn absent_labels(range: &LogRange) -> Labels {
    let pairs: Vec<(&str, &str)> = range
        .log
        .matchers
        .iter()
        .filter(|matcher| matcher.op() == MatchOp::Equal)
        .map(|matcher| (matcher.name(), matcher.value()))
        .collect();
    // A selector naming one label twice with `=` has no answer that holds both; keep none.
    Labels::from_pairs(pairs).unwrap_or_default()
}

/// The aggregation's value over one window's samples (non-empty, oldest first).
fn value(
    op: RangeOp,
    parameter: Option<f64>,
    samples: &VecDeque<(i64, f64)>,
    start_ns: i64,
    end_ns: i64,
    window_ns: i64,
    unwrap: bool,
) -> Option<f64> {
    let seconds = window_ns as f64 / 1e9;
    let values = || samples.iter().map(|(_, v)| *v);
    let count = samples.len() as f64;
    let sum = || {
        let (mut total, mut compensation) = (0.0f64, 0.0f64);
        for value in values() {
            let t = total + value;
            if total.abs() >= value.abs() {
                compensation += (total - t) + value;
            } else {
                compensation += (value - t) + total;
            }
            total = t;
        }
        total + compensation
    };
    Some(match op {
        RangeOp::CountOverTime => count,
        RangeOp::Rate if !unwrap => count / seconds,
        RangeOp::Rate => sum() / seconds,
        RangeOp::BytesOverTime => sum(),
        RangeOp::BytesRate => sum() / seconds,
        RangeOp::AbsentOverTime => return None,
        RangeOp::SumOverTime => sum(),
        RangeOp::AvgOverTime => {
            // Incremental mean: stays finite where a sum would overflow.
            let mut mean = 0.0;
            for (i, value) in values().enumerate() {
                mean += (value - mean) / (i as f64 + 1.0);
            }
            mean
        }
        RangeOp::MaxOverTime => values().fold(f64::NAN, |best, v| if best.is_nan() || v > best { v } else { best }),
        RangeOp::MinOverTime => values().fold(f64::NAN, |best, v| if best.is_nan() || v < best { v } else { best }),
        RangeOp::FirstOverTime => samples.front()?.1,
        RangeOp::LastOverTime => samples.back()?.1,
        RangeOp::StdvarOverTime | RangeOp::StddevOverTime => {
            let (mut mean, mut m2) = (0.0, 0.0);
            for (i, value) in values().enumerate() {
                let delta = value - mean;
                mean += delta / (i as f64 + 1.0);
                m2 += delta * (value - mean);
            }
            let variance = m2 / count;
            if op == RangeOp::StddevOverTime { variance.sqrt() } else { variance }
        }
        RangeOp::QuantileOverTime => {
            let mut sorted: Vec<f64> = values().collect();
            quantile(parameter.unwrap_or(f64::NAN), &mut sorted)
        }
        RangeOp::RateCounter => return counter_rate(samples, start_ns, end_ns, seconds),
    })
}

/// Prometheus's quantile: linear interpolation between the closest ranks.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = q * (values.len() - 1) as f64;
    let lower = rank.floor() as usize;
    let upper = (lower + 1).min(values.len() - 1);
    let weight = rank - rank.floor();
    values[lower] * (1.0 - weight) + values[upper] * weight
}

/// `rate_counter`: the values as a counter (a drop is a reset), the increase extrapolated to
/// the window's edges as Prometheus's `rate` does, per second.
fn counter_rate(samples: &VecDeque<(i64, f64)>, start_ns: i64, end_ns: i64, seconds: f64) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let (first_t, first_v) = *samples.front()?;
    let (last_t, last_v) = *samples.back()?;
    let mut increase = last_v - first_v;
    let mut previous = first_v;
    for (_, value) in samples.iter().skip(1) {
        if *value < previous {
            increase += previous;
        }
        previous = *value;
    }
    let sampled = (last_t - first_t) as f64 / 1e9;
    let average_gap = sampled / (samples.len() - 1) as f64;
    let mut to_start = (first_t - start_ns) as f64 / 1e9;
    let to_end = (end_ns - last_t) as f64 / 1e9;
    if increase > 0.0 && first_v >= 0.0 {
        let to_zero = sampled * (first_v / increase);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = average_gap * 1.1;
    let to_start = if to_start < threshold { to_start } else { average_gap / 2.0 };
    let to_end = if to_end < threshold { to_end } else { average_gap / 2.0 };
    let factor = (sampled + to_start + to_end) / sampled;
    Some(increase * factor / seconds)
}
