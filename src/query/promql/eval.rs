//! The PromQL evaluator: evaluates a parsed expression at every step of a query at once.
//!
//! Each node yields a value per step: a scalar is one float per step, an instant vector is a
//! set of series with an optional value per step. Binary operators and aggregations then work
//! step by step with Prometheus 3's rules (vector matching, `bool`, name dropping, Neumaier
//! summation). Matrices exist only where an instant query returns a range vector.
//!
//! Covered: literals, parentheses, unary minus, instant and range selectors and subqueries
//! with `offset` and `@`, every binary operator (arithmetic, comparison, `and`/`or`/`unless`,
//! `on`/`ignoring`, `group_left`/`group_right`), every aggregation (`sum`, `avg`, `min`, `max`,
//! `count`, `group`, `stddev`, `stdvar`, `topk`, `bottomk`, `quantile`, `count_values`,
//! `limitk`, `limit_ratio`), the range functions of [`functions::is_range_function`], the value
//! functions of [`functions::value_function`], the date functions, `round`, `clamp*`, `time`,
//! `timestamp`, `vector`, `scalar`, `sort*`, `histogram_quantile` (classic buckets),
//! `label_replace`, `label_join`, `absent`, `absent_over_time`, `pi`, `step`, `range`, `start`,
//! `end`, `min_of` and `max_of`. Native histograms and the functions over them, `info` and the
//! `fill` modifier are refused with [`EvalError::Unsupported`].

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use promql_parser::label::Labels as GroupingLabels;
use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_AVG, T_COUNT, T_COUNT_VALUES, T_DIV, T_EQLC, T_GROUP, T_GTE, T_GTR, T_LAND, T_LIMIT_RATIO,
    T_LIMITK, T_LOR, T_LSS, T_LTE, T_MAX, T_MIN, T_MOD, T_MUL, T_NEQ, T_POW, T_QUANTILE, T_STDDEV, T_STDVAR, T_SUB,
    T_SUM, T_TOPK, TokenType,
};
use promql_parser::parser::{
    AggregateExpr, AtModifier, BinModifier, BinaryExpr, Call, Expr, LabelModifier, Offset, VectorMatchCardinality,
    VectorSelector,
};
use tripod_storage::labels::{Label, Labels};
use tripod_storage::metrics::{MetricsQueryable, Sample, Series, TimeRange};

use super::functions;
use super::labels::{self, is_valid_label_name, with_label};
use super::lookback::{instant_sample, range_samples};
use super::range::{RangeData, RangeJob};
use super::selector::selector_matchers;
use super::value::{QueryValue, RangeSeries, VectorSample};

/// Why a query could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The expression uses a part of PromQL this engine does not evaluate.
    #[error("{0} is not supported")]
    Unsupported(String),
    /// Prometheus refuses the query at run time (ambiguous matching, duplicate series).
    #[error("{0}")]
    Execution(String),
    /// The query selected more samples than allowed.
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    #[error("query timed out in expression evaluation")]
    Timeout,
    #[error("reading metrics: {0}")]
    Storage(String),
}

/// Limits and settings for one query.
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    /// How far back an instant selector looks for a sample.
    pub lookback_ms: i64,
    /// The most samples a query may hold: samples read from storage plus the points of the
    /// intermediate results (Prometheus's `--query.max-samples`, which counts samples held in
    /// memory at once).
    pub max_samples: usize,
    /// When evaluation gives up.
    pub deadline: Instant,
    /// The step of a subquery that names none (Prometheus's global evaluation interval).
    pub subquery_step_ms: i64,
}

/// The server's query limits (the `query` section of the configuration), under the names of
/// the Prometheus flags they stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuerySettings {
    /// `--query.timeout`: the longest a query may run; a request's `timeout` can only shorten it.
    pub timeout: std::time::Duration,
    /// `--query.max-samples`: see [`EvalOptions::max_samples`].
    pub max_samples: usize,
    /// `--query.lookback-delta`: how far back an instant selector looks, unless a request's
    /// `lookback_delta` says otherwise.
    pub lookback_delta_ms: i64,
}

impl Default for QuerySettings {
    fn default() -> QuerySettings {
        QuerySettings {
            timeout: std::time::Duration::from_secs(120),
            max_samples: 50_000_000,
            lookback_delta_ms: super::lookback::DEFAULT_LOOKBACK_MS,
        }
    }
}

/// The steps of a query: `start_ms`, `start_ms + step_ms`, ... up to `end_ms`.
#[derive(Debug, Clone, Copy)]
pub struct Steps {
    pub start_ms: i64,
    pub end_ms: i64,
    pub step_ms: i64,
}

impl Steps {
    pub fn instant(t_ms: i64) -> Steps {
        Steps { start_ms: t_ms, end_ms: t_ms, step_ms: 0 }
    }

    fn count(&self) -> usize {
        usize::try_from(self.end_ms.saturating_sub(self.start_ms) / self.step_ms.max(1)).unwrap_or(0).saturating_add(1)
    }

    fn at(&self, index: usize) -> i64 {
        self.start_ms + index as i64 * self.step_ms
    }
}

/// Evaluates `expr` as an instant query at `t_ms`.
pub fn instant_query(
    storage: &dyn MetricsQueryable,
    expr: &Expr,
    t_ms: i64,
    options: EvalOptions,
) -> Result<QueryValue, EvalError> {
    let steps = Steps::instant(t_ms);
    let mut evaluator = Evaluator { storage, steps, query: steps, options, loaded: 0, checks: 0 };
    Ok(match evaluator.eval(expr)? {
        Value::Scalar(values) => QueryValue::Scalar(Sample { t_ms, value: values[0] }),
        Value::String(value) => QueryValue::String { t_ms, value },
        Value::Vector(series) => QueryValue::Vector(
            series
                .into_iter()
                .filter_map(|s| {
                    s.values[0].map(|value| VectorSample { labels: s.labels, sample: Sample { t_ms, value } })
                })
                .collect(),
        ),
        Value::Matrix(series) => QueryValue::Matrix(series),
    })
}

/// Evaluates `expr` at every step of `steps`. The caller has checked that `expr` is a scalar
/// or an instant vector and that the steps are valid.
pub fn range_query(
    storage: &dyn MetricsQueryable,
    expr: &Expr,
    steps: Steps,
    options: EvalOptions,
) -> Result<QueryValue, EvalError> {
    let mut evaluator = Evaluator { storage, steps, query: steps, options, loaded: 0, checks: 0 };
    let to_samples = |values: &[Option<f64>]| -> Vec<Sample> {
        values.iter().enumerate().filter_map(|(i, v)| v.map(|value| Sample { t_ms: steps.at(i), value })).collect()
    };
    Ok(match evaluator.eval(expr)? {
        Value::Scalar(values) => {
            let values: Vec<Option<f64>> = values.into_iter().map(Some).collect();
            QueryValue::Matrix(vec![RangeSeries { labels: Labels::empty(), samples: to_samples(&values) }])
        }
        Value::Vector(series) => {
            let mut matrix: Vec<RangeSeries> = series
                .into_iter()
                .map(|s| RangeSeries { samples: to_samples(&s.values), labels: s.labels })
                .filter(|s| !s.samples.is_empty())
                .collect();
            // A range result is ordered by labels, whatever ordered the instant vectors.
            matrix.sort_by(|a, b| a.labels.cmp(&b.labels));
            QueryValue::Matrix(matrix)
        }
        Value::String(_) => return Err(EvalError::Execution("a string cannot be evaluated over a range".into())),
        Value::Matrix(_) => return Err(EvalError::Execution("a range vector cannot be evaluated over a range".into())),
    })
}

/// A range vector ready for windowing: series with their samples, and the end of the window
/// at each step (`(end - range_ms, end]`).
struct RangeInput {
    data: RangeData,
    times: Vec<i64>,
    range_ms: i64,
}

/// A series and the sample an instant selector sees in it at each step, if any.
type SelectedPoints = (Labels, Vec<Option<Sample>>);

/// A series of an instant vector: a value, or none, at each step.
#[derive(Debug, Clone)]
struct StepSeries {
    labels: Labels,
    values: Vec<Option<f64>>,
}

#[derive(Debug)]
enum Value {
    Scalar(Vec<f64>),
    String(String),
    Vector(Vec<StepSeries>),
    Matrix(Vec<RangeSeries>),
}

struct Evaluator<'a> {
    storage: &'a dyn MetricsQueryable,
    /// The steps this evaluator computes (a subquery's own, inside one).
    steps: Steps,
    /// The query's steps, for `@ start()` and `@ end()`.
    query: Steps,
    options: EvalOptions,
    loaded: usize,
    checks: u32,
}

impl Evaluator<'_> {
    fn check_deadline(&mut self) -> Result<(), EvalError> {
        self.checks = self.checks.wrapping_add(1);
        if self.checks.is_multiple_of(256) && Instant::now() >= self.options.deadline {
            return Err(EvalError::Timeout);
        }
        Ok(())
    }

    fn eval(&mut self, expr: &Expr) -> Result<Value, EvalError> {
        if Instant::now() >= self.options.deadline {
            return Err(EvalError::Timeout);
        }
        match expr {
            Expr::NumberLiteral(number) => Ok(Value::Scalar(vec![number.val; self.steps.count()])),
            Expr::StringLiteral(string) => Ok(Value::String(string.val.clone())),
            Expr::Paren(paren) => self.eval(&paren.expr),
            Expr::Unary(unary) => match self.eval(&unary.expr)? {
                Value::Scalar(values) => Ok(Value::Scalar(values.into_iter().map(|v| -v).collect())),
                Value::Vector(series) => {
                    let negated = series.into_iter().map(|s| StepSeries {
                        labels: without_name(&s.labels),
                        values: s.values.into_iter().map(|v| v.map(|v| -v)).collect(),
                    });
                    Ok(Value::Vector(merge_unique(negated)?))
                }
                _ => Err(EvalError::Execution("unary minus needs a scalar or an instant vector".into())),
            },
            Expr::VectorSelector(selector) => Ok(Value::Vector(self.select_instant(selector)?)),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                if self.steps.count() != 1 {
                    return Err(EvalError::Execution("a range vector cannot be evaluated over a range".into()));
                }
                let input = self.range_input(expr)?;
                let t = input.times[0];
                let mut out = Vec::new();
                for (labels, samples) in input.data.into_decoded()? {
                    let samples: Vec<Sample> = range_samples(&samples, t, input.range_ms).collect();
                    self.count_loaded(samples.len())?;
                    if !samples.is_empty() {
                        out.push(RangeSeries { labels, samples });
                    }
                }
                Ok(Value::Matrix(out))
            }
            Expr::Binary(binary) => self.binary(binary),
            Expr::Aggregate(aggregate) => self.aggregate(aggregate),
            Expr::Call(call) => self.call(call),
            Expr::Extension(_) => Err(EvalError::Unsupported("an extension expression".into())),
        }
    }

    /// The evaluation time of each step for a selector with `offset` and `@`.
    fn selector_times(&self, selector: &VectorSelector) -> Vec<i64> {
        self.modified_times(selector.offset.as_ref(), selector.at.as_ref())
    }

    /// The evaluation time of each step under an `offset` and an `@` modifier.
    fn modified_times(&self, offset: Option<&Offset>, at: Option<&AtModifier>) -> Vec<i64> {
        let offset_ms = match offset {
            Some(Offset::Pos(d)) => duration_ms(*d),
            Some(Offset::Neg(d)) => -duration_ms(*d),
            None => 0,
        };
        let fixed = at.map(|at| match at {
            AtModifier::Start => self.query.start_ms,
            AtModifier::End => self.query.end_ms,
            AtModifier::At(time) => system_time_ms(*time),
        });
        (0..self.steps.count()).map(|i| fixed.unwrap_or(self.steps.at(i)).saturating_sub(offset_ms)).collect()
    }

    /// Every series the selector matches with samples in `[first - window, last]`, with those
    /// samples.
    fn fetch(
        &mut self,
        selector: &VectorSelector,
        times: &[i64],
        window_ms: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>, EvalError> {
        let mut out = Vec::new();
        for series in self.select_series(selector, times, window_ms)? {
            self.check_deadline()?;
            let samples = series.samples().map_err(|e| EvalError::Storage(e.to_string()))?;
            self.count_loaded(samples.len())?;
            out.push((series.labels, samples));
        }
        Ok(out)
    }

    /// Every series the selector matches with samples in `[first - window, last]`, sorted by
    /// labels, not decoded yet.
    fn select_series(
        &mut self,
        selector: &VectorSelector,
        times: &[i64],
        window_ms: i64,
    ) -> Result<Vec<Series>, EvalError> {
        let first = times.iter().copied().min().unwrap_or(self.steps.start_ms);
        let last = times.iter().copied().max().unwrap_or(self.steps.end_ms);
        let Some(range) = TimeRange::new(first.saturating_sub(window_ms), last) else {
            return Ok(Vec::new());
        };
        let sets = selector_matchers(selector).map_err(EvalError::Execution)?;
        let mut selected = Vec::new();
        for matchers in &sets {
            selected.extend(self.storage.select(matchers, range).map_err(|e| EvalError::Storage(e.to_string()))?);
        }
        // Several matcher sets (one per metric name a `__name__` alternation lists) may select
        // a series twice.
        if sets.len() > 1 {
            selected.sort_by(|a, b| a.labels.cmp(&b.labels));
            selected.dedup_by(|a, b| a.labels == b.labels);
        }
        Ok(selected)
    }

    fn count_loaded(&mut self, samples: usize) -> Result<(), EvalError> {
        self.loaded = self.loaded.saturating_add(samples);
        if self.loaded > self.options.max_samples {
            return Err(EvalError::TooManySamples);
        }
        Ok(())
    }

    fn select_instant(&mut self, selector: &VectorSelector) -> Result<Vec<StepSeries>, EvalError> {
        let points = self.select_points(selector)?;
        Ok(points
            .into_iter()
            .map(|(labels, points)| StepSeries { labels, values: points.iter().map(|p| p.map(|s| s.value)).collect() })
            .collect())
    }

    /// The sample an instant selector sees at each step, for every series it sees one in.
    fn select_points(&mut self, selector: &VectorSelector) -> Result<Vec<SelectedPoints>, EvalError> {
        let times = self.selector_times(selector);
        let lookback = self.options.lookback_ms;
        let mut out = Vec::new();
        for (labels, samples) in self.fetch(selector, &times, lookback)? {
            let points: Vec<Option<Sample>> = times.iter().map(|&t| instant_sample(&samples, t, lookback)).collect();
            let present = points.iter().filter(|p| p.is_some()).count();
            if present > 0 {
                self.count_loaded(present)?;
                out.push((labels, points));
            }
        }
        Ok(out)
    }

    fn binary(&mut self, binary: &BinaryExpr) -> Result<Value, EvalError> {
        let op = binary.op;
        let return_bool = binary.modifier.as_ref().is_some_and(|m| m.return_bool);
        if binary.modifier.as_ref().is_some_and(|m| m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some()) {
            return Err(EvalError::Unsupported("the fill modifier".into()));
        }
        let lhs = self.eval(&binary.lhs)?;
        let rhs = self.eval(&binary.rhs)?;
        match (lhs, rhs) {
            (Value::Scalar(l), Value::Scalar(r)) => {
                let values = l
                    .iter()
                    .zip(&r)
                    .map(|(&a, &b)| {
                        let (value, keep) = apply(op, a, b)?;
                        Ok(if is_comparison(op) { f64::from(u8::from(keep)) } else { value })
                    })
                    .collect::<Result<Vec<f64>, EvalError>>()?;
                Ok(Value::Scalar(values))
            }
            (Value::Vector(vector), Value::Scalar(scalar)) => {
                Ok(Value::Vector(vector_scalar(op, return_bool, vector, &scalar, false)?))
            }
            (Value::Scalar(scalar), Value::Vector(vector)) => {
                Ok(Value::Vector(vector_scalar(op, return_bool, vector, &scalar, true)?))
            }
            (Value::Vector(l), Value::Vector(r)) => {
                let modifier = binary.modifier.as_ref();
                if op.is_set_operator() {
                    Ok(Value::Vector(set_operation(op, modifier, l, r, self.steps.count())))
                } else {
                    Ok(Value::Vector(vector_vector(op, modifier, l, r, self.steps.count())?))
                }
            }
            _ => Err(EvalError::Execution(format!("operator {op} needs scalars or instant vectors"))),
        }
    }

    fn call(&mut self, call: &Call) -> Result<Value, EvalError> {
        let name = call.func.name;
        let args = &call.args.args;
        let unsupported = || EvalError::Unsupported(format!("the function {name}()"));
        if functions::is_range_function(name) {
            // Where the range vector is among the arguments; the others are scalars.
            let matrix_index = usize::from(name == "quantile_over_time");
            let matrix = args.get(matrix_index).ok_or_else(unsupported)?;
            let mut params = Vec::new();
            for (index, arg) in args.iter().enumerate() {
                if index != matrix_index {
                    params.push(self.scalar_arg(arg)?);
                }
            }
            let input = self.range_input(matrix)?;
            return Ok(Value::Vector(self.range_function(name, input, &params)?));
        }
        if let Some(function) = functions::value_function(name) {
            let series = self.vector_arg(args.first().ok_or_else(unsupported)?)?;
            return Ok(Value::Vector(map_values(series, |v, _| Some(function(v)))?));
        }
        let steps = self.steps;
        match name {
            "time" => Ok(Value::Scalar((0..steps.count()).map(|i| steps.at(i) as f64 / 1000.0).collect())),
            "vector" => {
                let values = self.scalar_arg(args.first().ok_or_else(unsupported)?)?;
                Ok(Value::Vector(vec![StepSeries {
                    labels: Labels::empty(),
                    values: values.into_iter().map(Some).collect(),
                }]))
            }
            "scalar" => {
                let series = self.vector_arg(args.first().ok_or_else(unsupported)?)?;
                let values = (0..steps.count())
                    .map(|i| {
                        let mut present = series.iter().filter_map(|s| s.values[i]);
                        match (present.next(), present.next()) {
                            (Some(value), None) => value,
                            _ => f64::NAN,
                        }
                    })
                    .collect();
                Ok(Value::Scalar(values))
            }
            "round" => {
                let series = self.vector_arg(args.first().ok_or_else(unsupported)?)?;
                let to_nearest = match args.get(1) {
                    Some(arg) => self.scalar_arg(arg)?,
                    None => vec![1.0; steps.count()],
                };
                Ok(Value::Vector(map_values(series, |v, i| {
                    let inverse = 1.0 / to_nearest[i];
                    Some((v * inverse + 0.5).floor() / inverse)
                })?))
            }
            "clamp" | "clamp_min" | "clamp_max" => {
                let series = self.vector_arg(args.first().ok_or_else(unsupported)?)?;
                let first = self.scalar_arg(args.get(1).ok_or_else(unsupported)?)?;
                let second = match args.get(2) {
                    Some(arg) => Some(self.scalar_arg(arg)?),
                    None => None,
                };
                Ok(Value::Vector(map_values(series, |v, i| match (name, &second) {
                    ("clamp", Some(max)) => (max[i] >= first[i] || max[i].is_nan() || first[i].is_nan())
                        .then(|| functions::go_max(first[i], functions::go_min(max[i], v))),
                    ("clamp_min", _) => Some(functions::go_max(first[i], v)),
                    ("clamp_max", _) => Some(functions::go_min(first[i], v)),
                    _ => None,
                })?))
            }
            "histogram_quantile" => {
                let phi = self.scalar_arg(args.first().ok_or_else(unsupported)?)?;
                let series = self.vector_arg(args.get(1).ok_or_else(unsupported)?)?;
                Ok(Value::Vector(histogram_quantile(&phi, series, steps.count())))
            }
            "label_replace" | "label_join" => {
                let series = self.vector_arg(args.first().ok_or_else(unsupported)?)?;
                let mut strings = Vec::new();
                for arg in args.iter().skip(1) {
                    match self.eval(arg)? {
                        Value::String(text) => strings.push(text),
                        _ => return Err(EvalError::Execution(format!("{name}() takes string arguments"))),
                    }
                }
                let relabel = labels::Relabel::new(name, &strings)?;
                let relabeled =
                    series.into_iter().map(|s| StepSeries { labels: relabel.apply(&s.labels), values: s.values });
                Ok(Value::Vector(merge_unique(relabeled)?))
            }
            "absent" | "absent_over_time" => {
                let arg = args.first().ok_or_else(unsupported)?;
                let (present, selector) = match &**arg {
                    Expr::MatrixSelector(_) | Expr::Subquery(_) if name == "absent_over_time" => {
                        let input = self.range_input(arg)?;
                        let found = self.range_function("count_over_time", input, &[])?;
                        let selector = match &**arg {
                            Expr::MatrixSelector(matrix) => Some(&matrix.vs),
                            _ => None,
                        };
                        (found, selector)
                    }
                    Expr::VectorSelector(selector) => (self.vector_arg(arg)?, Some(selector)),
                    Expr::MatrixSelector(_) | Expr::Subquery(_) => return Err(unsupported()),
                    other => (self.vector_arg(other)?, None),
                };
                let values: Vec<Option<f64>> = (0..steps.count())
                    .map(|i| (!present.iter().any(|s| s.values[i].is_some())).then_some(1.0))
                    .collect();
                if values.iter().all(Option::is_none) {
                    return Ok(Value::Vector(Vec::new()));
                }
                Ok(Value::Vector(vec![StepSeries { labels: labels::absent_labels(selector), values }]))
            }
            "pi" => Ok(Value::Scalar(vec![std::f64::consts::PI; steps.count()])),
            // The query's own parameters, in seconds (an instant query has no step and no range).
            "step" | "range" | "start" | "end" => {
                let query = self.query;
                let ms = match name {
                    "step" => query.step_ms,
                    "range" => query.end_ms.saturating_sub(query.start_ms),
                    "start" => query.start_ms,
                    _ => query.end_ms,
                };
                Ok(Value::Scalar(vec![ms as f64 / 1000.0; steps.count()]))
            }
            "min_of" | "max_of" => {
                let a = self.scalar_arg(args.first().ok_or_else(unsupported)?)?;
                let b = self.scalar_arg(args.get(1).ok_or_else(unsupported)?)?;
                let pick = if name == "min_of" { functions::go_min } else { functions::go_max };
                Ok(Value::Scalar(a.iter().zip(&b).map(|(&a, &b)| pick(a, b)).collect()))
            }
            "sort" | "sort_desc" => {
                let mut series = self.vector_arg(args.first().ok_or_else(unsupported)?)?;
                // Only an instant query's order is visible: by its one value, NaN last.
                let descending = name == "sort_desc";
                series.sort_by(|a, b| {
                    let (a, b) = (a.values[0].unwrap_or(f64::NAN), b.values[0].unwrap_or(f64::NAN));
                    match (a.is_nan(), b.is_nan()) {
                        (true, true) => Ordering::Equal,
                        (true, false) => Ordering::Greater,
                        (false, true) => Ordering::Less,
                        _ if descending => b.total_cmp(&a),
                        _ => a.total_cmp(&b),
                    }
                });
                Ok(Value::Vector(series))
            }
            "sort_by_label" | "sort_by_label_desc" => {
                let mut series = self.vector_arg(args.first().ok_or_else(unsupported)?)?;
                let mut names = Vec::new();
                for arg in args.iter().skip(1) {
                    match self.eval(arg)? {
                        Value::String(text) => names.push(text),
                        _ => return Err(EvalError::Execution(format!("{name}() takes string arguments"))),
                    }
                }
                series.sort_by(|a, b| {
                    let by_names = names.iter().fold(Ordering::Equal, |order, name| {
                        order.then_with(|| {
                            labels::natural_cmp(a.labels.get(name).unwrap_or(""), b.labels.get(name).unwrap_or(""))
                        })
                    });
                    let order = by_names.then_with(|| a.labels.cmp(&b.labels));
                    if name == "sort_by_label_desc" { order.reverse() } else { order }
                });
                Ok(Value::Vector(series))
            }
            "timestamp" => {
                let mut arg = &**args.first().ok_or_else(unsupported)?;
                while let Expr::Paren(paren) = arg {
                    arg = &paren.expr;
                }
                // A selector's samples keep their own times; anything computed has the step's.
                if let Expr::VectorSelector(selector) = arg {
                    let selected = self.select_points(selector)?.into_iter().map(|(labels, points)| StepSeries {
                        labels: without_name(&labels),
                        values: points.iter().map(|p| p.map(|s| s.t_ms as f64 / 1000.0)).collect(),
                    });
                    return Ok(Value::Vector(merge_unique(selected)?));
                }
                let series = self.vector_arg(arg)?;
                Ok(Value::Vector(map_values(series, |_, i| Some(steps.at(i) as f64 / 1000.0))?))
            }
            "minute" | "hour" | "day_of_week" | "day_of_month" | "day_of_year" | "days_in_month" | "month" | "year" => {
                let part = |seconds: f64| functions::date_part(name, seconds);
                match args.first() {
                    // Without an argument: the evaluation time, in whole seconds.
                    None => Ok(Value::Vector(vec![StepSeries {
                        labels: Labels::empty(),
                        values: (0..steps.count()).map(|i| Some(part(steps.at(i).div_euclid(1000) as f64))).collect(),
                    }])),
                    Some(arg) => {
                        let series = self.vector_arg(arg)?;
                        Ok(Value::Vector(map_values(series, |v, _| Some(part(v)))?))
                    }
                }
            }
            _ => Err(unsupported()),
        }
    }

    fn scalar_arg(&mut self, expr: &Expr) -> Result<Vec<f64>, EvalError> {
        match self.eval(expr)? {
            Value::Scalar(values) => Ok(values),
            _ => Err(EvalError::Execution("expected a scalar argument".into())),
        }
    }

    fn vector_arg(&mut self, expr: &Expr) -> Result<Vec<StepSeries>, EvalError> {
        match self.eval(expr)? {
            Value::Vector(series) => Ok(series),
            _ => Err(EvalError::Execution("expected an instant vector argument".into())),
        }
    }

    /// A range function of a range selector at every step.
    /// The series and per-step window ends of a range selector or a subquery.
    fn range_input(&mut self, expr: &Expr) -> Result<RangeInput, EvalError> {
        match expr {
            Expr::Paren(paren) => self.range_input(&paren.expr),
            Expr::MatrixSelector(matrix) => {
                let range_ms = duration_ms(matrix.range);
                let times = self.selector_times(&matrix.vs);
                let series = self.select_series(&matrix.vs, &times, range_ms)?;
                Ok(RangeInput { data: RangeData::Stored(series), times, range_ms })
            }
            Expr::Subquery(subquery) => {
                let range_ms = duration_ms(subquery.range);
                let step_ms = subquery.step.map(duration_ms).unwrap_or(self.options.subquery_step_ms);
                if step_ms <= 0 {
                    return Err(EvalError::Execution("a subquery step must be positive".into()));
                }
                let times = self.modified_times(subquery.offset.as_ref(), subquery.at.as_ref());
                let first = times.iter().copied().min().unwrap_or(self.steps.start_ms).saturating_sub(range_ms);
                let last = times.iter().copied().max().unwrap_or(self.steps.end_ms);
                // The inner steps are multiples of the step, starting just after the first window.
                let aligned = first.div_euclid(step_ms).checked_mul(step_ms);
                let start = match aligned {
                    Some(start) if start > first => Some(start),
                    Some(start) => start.checked_add(step_ms),
                    None => None,
                };
                let Some(start) = start.filter(|&start| start <= last) else {
                    return Ok(RangeInput { data: RangeData::Computed(Vec::new()), times, range_ms });
                };
                let inner = Steps { start_ms: start, end_ms: last, step_ms };
                // Every inner step holds at least one value per series: more steps than the
                // sample limit can never be answered.
                if inner.count() > self.options.max_samples {
                    return Err(EvalError::TooManySamples);
                }
                let mut evaluator = Evaluator {
                    storage: self.storage,
                    steps: inner,
                    query: self.query,
                    options: self.options,
                    loaded: self.loaded,
                    checks: self.checks,
                };
                let value = evaluator.eval(&subquery.expr)?;
                self.loaded = evaluator.loaded;
                let series = match value {
                    Value::Vector(series) => series,
                    Value::Scalar(values) => {
                        vec![StepSeries { labels: Labels::empty(), values: values.into_iter().map(Some).collect() }]
                    }
                    _ => return Err(EvalError::Execution("a subquery needs a scalar or an instant vector".into())),
                };
                let series = series
                    .into_iter()
                    .map(|s| {
                        let samples = s
                            .values
                            .iter()
                            .enumerate()
                            .filter_map(|(j, v)| v.map(|value| Sample { t_ms: inner.at(j), value }))
                            .collect();
                        (s.labels, samples)
                    })
                    .collect();
                Ok(RangeInput { data: RangeData::Computed(series), times, range_ms })
            }
            _ => Err(EvalError::Execution("expected a range vector".into())),
        }
    }

    /// A range function of a range vector at every step.
    fn range_function(
        &mut self,
        name: &str,
        input: RangeInput,
        params: &[Vec<f64>],
    ) -> Result<Vec<StepSeries>, EvalError> {
        let RangeInput { data, times, range_ms } = input;
        if name == "double_exponential_smoothing" && !data.is_empty() {
            check_smoothing_factors(params)?;
        }
        let eval_times: Vec<i64> = (0..times.len()).map(|i| self.steps.at(i)).collect();
        let job = RangeJob {
            name,
            window_ends: &times,
            eval_times: &eval_times,
            range_ms,
            params,
            deadline: self.options.deadline,
            max_samples: self.options.max_samples,
        };
        let (results, loaded) = job.run(data, self.loaded)?;
        self.loaded = loaded;
        let keep_name = functions::keeps_metric_name(name);
        let out =
            results.into_iter().filter(|(_, values)| values.iter().any(Option::is_some)).map(|(labels, values)| {
                let labels = if keep_name { labels } else { without_name(&labels) };
                StepSeries { labels, values }
            });
        merge_unique(out)
    }

    /// `topk`, `bottomk`, `quantile` and `count_values`.
    fn aggregate_with_param(&mut self, aggregate: &AggregateExpr) -> Result<Value, EvalError> {
        let op = aggregate.op;
        let param =
            aggregate.param.as_deref().ok_or_else(|| EvalError::Execution(format!("{op} needs a parameter")))?;
        let steps = self.steps.count();
        if op.id() == T_COUNT_VALUES {
            let Value::String(label) = self.eval(param)? else {
                return Err(EvalError::Execution("count_values needs a string parameter".into()));
            };
            if !is_valid_label_name(&label) {
                return Err(EvalError::Execution(format!("invalid label name {label:?}")));
            }
            let input = self.vector_arg(&aggregate.expr)?;
            let mut counts: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
            for series in &input {
                let group = grouping_labels(&series.labels, aggregate.modifier.as_ref());
                for (step, value) in series.values.iter().enumerate() {
                    let Some(value) = value else { continue };
                    let labels = with_label(&group, &label, &crate::api::prometheus::format_value(*value));
                    let slot = counts.entry(labels).or_insert_with(|| vec![None; steps]);
                    slot[step] = Some(slot[step].unwrap_or(0.0) + 1.0);
                }
            }
            return Ok(Value::Vector(
                counts.into_iter().map(|(labels, values)| StepSeries { labels, values }).collect(),
            ));
        }
        let params = self.scalar_arg(param)?;
        let input = self.vector_arg(&aggregate.expr)?;
        let groups: Vec<Labels> =
            input.iter().map(|s| grouping_labels(&s.labels, aggregate.modifier.as_ref())).collect();
        let mut members: BTreeMap<&Labels, Vec<usize>> = BTreeMap::new();
        for (index, group) in groups.iter().enumerate() {
            members.entry(group).or_default().push(index);
        }
        if op.id() == T_QUANTILE {
            let mut out = Vec::new();
            for (group, indices) in &members {
                let values: Vec<Option<f64>> = (0..steps)
                    .map(|step| {
                        let mut present: Vec<f64> = indices.iter().filter_map(|&i| input[i].values[step]).collect();
                        (!present.is_empty()).then(|| functions::quantile(params[step], &mut present))
                    })
                    .collect();
                out.push(StepSeries { labels: (*group).clone(), values });
            }
            return Ok(Value::Vector(out));
        }
        // Prometheus's own wording, which clients may match on.
        if params.iter().any(|p| p.is_nan()) {
            let what = if op.id() == T_LIMIT_RATIO { "Ratio" } else { "Parameter" };
            return Err(EvalError::Execution(format!("{what} value is NaN")));
        }
        // The others keep the series themselves, at the steps where they are chosen.
        let mut keep: Vec<Vec<bool>> = vec![vec![false; steps]; input.len()];
        let mut rank: Vec<(usize, usize)> = vec![(0, 0); input.len()];
        if op.id() == T_LIMIT_RATIO {
            // A series' place in [0, 1) comes from its labels alone, so the same series stay
            // chosen from step to step, and ratios r and r - 1 choose complementary sets.
            let places: Vec<f64> =
                input.iter().map(|s| labels::label_set_hash(&s.labels) as f64 / u64::MAX as f64).collect();
            for (step, &ratio) in params.iter().enumerate() {
                let ratio = ratio.clamp(-1.0, 1.0);
                for (i, &place) in places.iter().enumerate() {
                    keep[i][step] = if ratio >= 0.0 { place < ratio } else { place >= 1.0 + ratio };
                }
            }
        }
        for indices in members.values().filter(|_| op.id() != T_LIMIT_RATIO) {
            for step in 0..steps {
                let k = params[step];
                if k < 1.0 {
                    continue;
                }
                let k = if k >= usize::MAX as f64 { usize::MAX } else { k as usize };
                let mut present: Vec<(usize, f64)> =
                    indices.iter().filter_map(|&i| input[i].values[step].map(|v| (i, v))).collect();
                // limitk keeps the first k series; topk and bottomk rank, NaN below every number.
                present.sort_by(|a, b| {
                    if op.id() == T_LIMITK {
                        return a.0.cmp(&b.0);
                    }
                    let order = match (a.1.is_nan(), b.1.is_nan()) {
                        (true, true) => std::cmp::Ordering::Equal,
                        (true, false) => std::cmp::Ordering::Greater,
                        (false, true) => std::cmp::Ordering::Less,
                        _ if op.id() == T_TOPK => b.1.total_cmp(&a.1),
                        _ => a.1.total_cmp(&b.1),
                    };
                    order.then(a.0.cmp(&b.0))
                });
                for (position, (i, _)) in present.into_iter().take(k).enumerate() {
                    keep[i][step] = true;
                    if step == 0 {
                        // Groups in the order they first appear, and the series in rank order.
                        rank[i] = (indices[0], position);
                    }
                }
            }
        }
        let mut out: Vec<(StepSeries, (usize, usize))> = input
            .into_iter()
            .zip(keep)
            .zip(rank)
            .map(|((series, keep), rank)| {
                let values = series.values.iter().zip(keep).map(|(v, k)| if k { *v } else { None }).collect();
                (StepSeries { values, labels: series.labels }, rank)
            })
            .filter(|(s, _)| s.values.iter().any(Option::is_some))
            .collect();
        // Only an instant query shows the order.
        if steps == 1 {
            out.sort_by_key(|(_, rank)| *rank);
        }
        Ok(Value::Vector(out.into_iter().map(|(series, _)| series).collect()))
    }

    fn aggregate(&mut self, aggregate: &AggregateExpr) -> Result<Value, EvalError> {
        let op = aggregate.op;
        if op.is_aggregator_with_param() {
            return self.aggregate_with_param(aggregate);
        }
        if !matches!(op.id(), T_SUM | T_AVG | T_MIN | T_MAX | T_COUNT | T_GROUP | T_STDDEV | T_STDVAR) {
            return Err(EvalError::Unsupported(format!("the aggregation {op}")));
        }
        if let Some(value) = self.aggregate_range_function(aggregate)? {
            return Ok(value);
        }
        let Value::Vector(input) = self.eval(&aggregate.expr)? else {
            return Err(EvalError::Execution(format!("{op} needs an instant vector")));
        };
        Ok(self.aggregate_series(aggregate, input))
    }

    /// `sum`, `count`, `min`, `max` or `group` straight over a range function of stored series
    /// (`sum by (mode) (rate(x[5m]))`): each worker folds the series it evaluates into its own
    /// accumulators, so the function's values per series are never all held at once. `None`
    /// when the expression has another shape.
    fn aggregate_range_function(&mut self, aggregate: &AggregateExpr) -> Result<Option<Value>, EvalError> {
        let op = aggregate.op;
        if !matches!(op.id(), T_SUM | T_MIN | T_MAX | T_COUNT | T_GROUP) {
            return Ok(None);
        }
        let Expr::Call(call) = unwrap_parens(&aggregate.expr) else { return Ok(None) };
        let name = call.func.name;
        let [arg] = call.args.args.as_slice() else { return Ok(None) };
        if !functions::is_range_function(name) || name == "double_exponential_smoothing" {
            return Ok(None);
        }
        let matrix = unwrap_parens(arg);
        if !matches!(matrix, Expr::MatrixSelector(_)) {
            return Ok(None);
        }
        let RangeInput { data, times, range_ms } = self.range_input(matrix)?;
        let RangeData::Stored(series) = data else {
            let input = RangeInput { data, times, range_ms };
            let series = self.range_function(name, input, &[])?;
            return Ok(Some(self.aggregate_series(aggregate, series)));
        };
        // The function's output labels must be distinct (name dropping can merge series, which
        // the general path sorts out or reports). The selected label sets are distinct, so
        // they stay so when the name is kept or every series has the same name.
        let keep_name = functions::keeps_metric_name(name);
        let one_name = series.windows(2).all(|pair| same_name(&pair[0].labels, &pair[1].labels));
        if !keep_name && !one_name {
            let output: Vec<Labels> = series.iter().map(|s| without_name(&s.labels)).collect();
            let mut distinct = std::collections::HashSet::with_capacity(output.len());
            if !output.iter().all(|labels| distinct.insert(labels)) {
                let input = RangeInput { data: RangeData::Stored(series), times, range_ms };
                let series = self.range_function(name, input, &[])?;
                return Ok(Some(self.aggregate_series(aggregate, series)));
            }
        }
        // Grouping the selected labels gives the groups of the output labels unless the name
        // is dropped and `by` keeps it.
        let modifier = aggregate.modifier.as_ref();
        let by_name =
            matches!(modifier, Some(LabelModifier::Include(names)) if names.labels.iter().any(|n| n == "__name__"));
        let mut group_index: BTreeMap<Labels, usize> = BTreeMap::new();
        // Series from one block or the head share their label strings: the groups of the
        // strings seen, by address, spare building each series' group labels.
        let mut by_address: HashMap<Vec<(usize, usize)>, usize> = HashMap::new();
        let mut address = Vec::new();
        let group_of: Vec<usize> = series
            .iter()
            .map(|s| {
                let grouped = grouped_by(modifier, &s.labels);
                address.clear();
                address.extend(grouped.map(|l| {
                    (Arc::as_ptr(&l.name).cast::<u8>() as usize, Arc::as_ptr(&l.value).cast::<u8>() as usize)
                }));
                let drops_name = !keep_name && by_name;
                if !drops_name && let Some(&group) = by_address.get(address.as_slice()) {
                    return group;
                }
                let key = if drops_name {
                    grouping_labels(&without_name(&s.labels), modifier)
                } else {
                    grouping_labels(&s.labels, modifier)
                };
                let next = group_index.len();
                let group = *group_index.entry(key).or_insert(next);
                if !drops_name {
                    by_address.insert(address.clone(), group);
                }
                group
            })
            .collect();
        let eval_times: Vec<i64> = (0..times.len()).map(|i| self.steps.at(i)).collect();
        let job = RangeJob {
            name,
            window_ends: &times,
            eval_times: &eval_times,
            range_ms,
            params: &[],
            deadline: self.options.deadline,
            max_samples: self.options.max_samples,
        };
        let (mut states, loaded) = job.run_aggregated(series, &group_of, group_index.len(), op, self.loaded)?;
        self.loaded = loaded;
        let groups = group_index.into_iter().map(|(labels, index)| (labels, std::mem::take(&mut states[index]), op));
        Ok(Some(Value::Vector(aggregated(groups))))
    }

    /// An aggregation without parameter over an evaluated instant vector: output series by
    /// group labels, each with an accumulator per step.
    fn aggregate_series(&self, aggregate: &AggregateExpr, input: Vec<StepSeries>) -> Value {
        let op = aggregate.op;
        let steps = self.steps.count();
        let mut groups: BTreeMap<Labels, Vec<Accumulator>> = BTreeMap::new();
        for series in &input {
            let key = grouping_labels(&series.labels, aggregate.modifier.as_ref());
            fold(groups.entry(key).or_insert_with(|| vec![Accumulator::default(); steps]), &series.values, op);
        }
        Value::Vector(aggregated(groups.into_iter().map(|(labels, accumulators)| (labels, accumulators, op))))
    }
}

/// The output series of an aggregation: each group's result at each step, groups with no
/// value at any step left out.
fn aggregated(groups: impl Iterator<Item = (Labels, Vec<Accumulator>, TokenType)>) -> Vec<StepSeries> {
    groups
        .map(|(labels, accumulators, op)| StepSeries {
            labels,
            values: accumulators.iter().map(|a| a.result(op)).collect(),
        })
        .filter(|s| s.values.iter().any(Option::is_some))
        .collect()
}

/// Adds one series' values to its group's accumulators, step by step.
pub(super) fn fold(accumulators: &mut [Accumulator], values: &[Option<f64>], op: TokenType) {
    let pairs = accumulators.iter_mut().zip(values);
    if op.id() == T_SUM {
        // The common case, in a loop of its own.
        for (accumulator, value) in pairs {
            if let Some(value) = *value {
                accumulator.count += 1;
                (accumulator.sum, accumulator.compensation) =
                    compensated_add(value, accumulator.sum, accumulator.compensation);
            }
        }
    } else {
        for (accumulator, value) in pairs {
            if let Some(value) = value {
                accumulator.add(op, *value);
            }
        }
    }
}

fn unwrap_parens(mut expr: &Expr) -> &Expr {
    while let Expr::Paren(paren) = expr {
        expr = &paren.expr;
    }
    expr
}

/// Running state of one aggregation group at one step.
#[derive(Debug, Clone, Default)]
pub(super) struct Accumulator {
    count: u64,
    /// Neumaier-compensated sum: `sum + compensation` is the total (`sum`, and `avg` until the
    /// sum would overflow).
    sum: f64,
    compensation: f64,
    /// `avg` after the sum would have overflowed: a compensated incremental mean.
    incremental: bool,
    mean: f64,
    mean_compensation: f64,
    /// Welford's running mean and sum of squared deviations, for `stddev` and `stdvar`.
    welford_mean: f64,
    m2: f64,
    min: f64,
    max: f64,
}

/// One step of Neumaier's compensated summation: the new sum and compensation.
fn compensated_add(value: f64, sum: f64, compensation: f64) -> (f64, f64) {
    let total = sum + value;
    let compensation = if total.is_infinite() {
        0.0
    } else if sum.abs() >= value.abs() {
        compensation + ((sum - total) + value)
    } else {
        compensation + ((value - total) + sum)
    };
    (total, compensation)
}

impl Accumulator {
    /// The state of a `sum` that added `count` values into `sum + compensation`.
    pub(super) fn summed(count: u64, sum: f64, compensation: f64) -> Accumulator {
        Accumulator { count, sum, compensation, ..Accumulator::default() }
    }

    /// Adds what `other` accumulated after what this one did, for `sum`, `count`, `min`,
    /// `max` and `group` (a compensated sum of two partial sums, and the rules `add` applies).
    pub(super) fn merge(&mut self, op: TokenType, other: &Accumulator) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        match op.id() {
            T_MIN => {
                if self.min > other.min || self.min.is_nan() {
                    self.min = other.min;
                }
            }
            T_MAX => {
                if self.max < other.max || self.max.is_nan() {
                    self.max = other.max;
                }
            }
            _ => {
                (self.sum, self.compensation) = compensated_add(other.sum, self.sum, self.compensation);
                self.compensation += other.compensation;
            }
        }
        self.count += other.count;
    }

    fn add(&mut self, op: TokenType, value: f64) {
        self.count += 1;
        let n = self.count as f64;
        match op.id() {
            T_MIN | T_MAX => {
                if self.count == 1 {
                    (self.min, self.max) = (value, value);
                }
                if self.min > value || self.min.is_nan() {
                    self.min = value;
                }
                if self.max < value || self.max.is_nan() {
                    self.max = value;
                }
            }
            T_STDDEV | T_STDVAR => {
                let delta = value - self.welford_mean;
                self.welford_mean += delta / n;
                self.m2 += delta * (value - self.welford_mean);
            }
            T_AVG if self.count == 1 => (self.sum, self.mean) = (value, value),
            T_AVG => {
                if !self.incremental {
                    let (sum, compensation) = compensated_add(value, self.sum, self.compensation);
                    if !sum.is_infinite() {
                        (self.sum, self.compensation) = (sum, compensation);
                        return;
                    }
                    // The sum would overflow: continue with the mean of what came so far.
                    self.incremental = true;
                    self.mean = self.sum / (n - 1.0);
                    self.mean_compensation = self.compensation / (n - 1.0);
                }
                if self.mean.is_infinite() {
                    // An infinite mean stays as it is unless an infinity of the other sign or
                    // a NaN arrives.
                    let same_infinity = value.is_infinite() && (self.mean > 0.0) == (value > 0.0);
                    if same_infinity || value.is_finite() {
                        return;
                    }
                }
                let current = self.mean + self.mean_compensation;
                (self.mean, self.mean_compensation) =
                    compensated_add(value / n - current / n, self.mean, self.mean_compensation);
            }
            _ => (self.sum, self.compensation) = compensated_add(value, self.sum, self.compensation),
        }
    }

    pub(super) fn result(&self, op: TokenType) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let n = self.count as f64;
        Some(match op.id() {
            T_SUM => self.sum + self.compensation,
            T_AVG if self.incremental => self.mean + self.mean_compensation,
            T_AVG => (self.sum + self.compensation) / n,
            T_MIN => self.min,
            T_MAX => self.max,
            T_COUNT => n,
            T_GROUP => 1.0,
            T_STDVAR => self.m2 / n,
            T_STDDEV => (self.m2 / n).sqrt(),
            // Other operators never get here: `aggregate` checks them first.
            _ => return None,
        })
    }
}

/// Whether two label sets have the same metric name (or none): compared by address first, as
/// series from one place share their strings.
fn same_name(a: &Labels, b: &Labels) -> bool {
    fn name(labels: &Labels) -> Option<&Arc<str>> {
        let slice = labels.as_slice();
        slice.binary_search_by(|label| label.name.as_ref().cmp("__name__")).ok().map(|index| &slice[index].value)
    }
    match (name(a), name(b)) {
        (Some(x), Some(y)) => Arc::ptr_eq(x, y) || x == y,
        (x, y) => x.is_none() && y.is_none(),
    }
}

/// The labels of a series that [`grouping_labels`] keeps, in order.
fn grouped_by<'a>(modifier: Option<&'a LabelModifier>, labels: &'a Labels) -> impl Iterator<Item = &'a Label> + 'a {
    labels.iter().filter(move |label| match modifier {
        None => false,
        Some(LabelModifier::Include(names)) => names.labels.iter().any(|n| *n == *label.name),
        Some(LabelModifier::Exclude(names)) => {
            *label.name != *"__name__" && !names.labels.iter().any(|n| *n == *label.name)
        }
    })
}

/// The labels of the group a series falls in under `by (...)`, `without (...)` or neither.
fn grouping_labels(labels: &Labels, modifier: Option<&LabelModifier>) -> Labels {
    match modifier {
        None => Labels::empty(),
        Some(LabelModifier::Include(names)) => keep_labels(labels, |name| names.labels.iter().any(|n| n == name)),
        Some(LabelModifier::Exclude(names)) => {
            keep_labels(labels, |name| name != "__name__" && !names.labels.iter().any(|n| n == name))
        }
    }
}

/// `histogram_quantile` over classic buckets: series grouped by their labels without `le`.
fn histogram_quantile(phi: &[f64], series: Vec<StepSeries>, steps: usize) -> Vec<StepSeries> {
    let mut groups: BTreeMap<Labels, Vec<(f64, &StepSeries)>> = BTreeMap::new();
    for s in &series {
        let Some(upper) = s.labels.get("le").and_then(parse_bucket_bound) else { continue };
        let group = keep_labels(&s.labels, |name| name != "le" && name != "__name__");
        groups.entry(group).or_default().push((upper, s));
    }
    let mut out = Vec::new();
    for (labels, buckets) in groups {
        let values: Vec<Option<f64>> = (0..steps)
            .map(|step| {
                let mut present: Vec<(f64, f64)> =
                    buckets.iter().filter_map(|(upper, s)| s.values[step].map(|count| (*upper, count))).collect();
                (!present.is_empty()).then(|| functions::bucket_quantile(phi[step], &mut present))
            })
            .collect();
        if values.iter().any(Option::is_some) {
            out.push(StepSeries { labels, values });
        }
    }
    out
}

/// A bucket's `le` value: a float, `+Inf` or `Inf` included.
fn parse_bucket_bound(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

/// Applies `f(value, step)` to every value of every series, dropping the metric name.
fn map_values(series: Vec<StepSeries>, f: impl Fn(f64, usize) -> Option<f64>) -> Result<Vec<StepSeries>, EvalError> {
    let mapped = series.into_iter().map(|s| StepSeries {
        labels: without_name(&s.labels),
        values: s.values.iter().enumerate().map(|(i, v)| v.and_then(|v| f(v, i))).collect(),
    });
    merge_unique(mapped.filter(|s| s.values.iter().any(Option::is_some)))
}

fn keep_labels(labels: &Labels, keep: impl Fn(&str) -> bool) -> Labels {
    let kept: Vec<Label> = labels.iter().filter(|l| keep(&l.name)).cloned().collect();
    Labels::from_labels(kept).unwrap_or_else(|_| Labels::empty())
}

fn without_name(labels: &Labels) -> Labels {
    if labels.get("__name__").is_none() {
        return labels.clone();
    }
    keep_labels(labels, |name| name != "__name__")
}

fn is_comparison(op: TokenType) -> bool {
    op.is_comparison_operator()
}

/// One arithmetic or comparison operation: the value, and whether a comparison holds.
fn apply(op: TokenType, lhs: f64, rhs: f64) -> Result<(f64, bool), EvalError> {
    Ok(match op.id() {
        T_ADD => (lhs + rhs, true),
        T_SUB => (lhs - rhs, true),
        T_MUL => (lhs * rhs, true),
        T_DIV => (lhs / rhs, true),
        T_MOD => (lhs % rhs, true),
        T_POW => (lhs.powf(rhs), true),
        T_ATAN2 => (lhs.atan2(rhs), true),
        T_EQLC => (lhs, lhs == rhs),
        T_NEQ => (lhs, lhs != rhs),
        T_GTR => (lhs, lhs > rhs),
        T_LSS => (lhs, lhs < rhs),
        T_GTE => (lhs, lhs >= rhs),
        T_LTE => (lhs, lhs <= rhs),
        _ => return Err(EvalError::Unsupported(format!("the operator {op}"))),
    })
}

/// Whether an operator's result is a new quantity, so that the metric name no longer applies.
fn drops_name(op: TokenType, return_bool: bool) -> bool {
    return_bool || !is_comparison(op)
}

fn vector_scalar(
    op: TokenType,
    return_bool: bool,
    vector: Vec<StepSeries>,
    scalar: &[f64],
    scalar_on_left: bool,
) -> Result<Vec<StepSeries>, EvalError> {
    let drop = drops_name(op, return_bool);
    let mut out = Vec::with_capacity(vector.len());
    for series in vector {
        let mut values = Vec::with_capacity(series.values.len());
        for (value, &s) in series.values.iter().zip(scalar) {
            let Some(v) = *value else {
                values.push(None);
                continue;
            };
            let (l, r) = if scalar_on_left { (s, v) } else { (v, s) };
            let (result, keep) = apply(op, l, r)?;
            values.push(if !is_comparison(op) {
                Some(result)
            } else if return_bool {
                Some(f64::from(u8::from(keep)))
            } else if keep {
                // A comparison filters and keeps the vector's own value, whichever side it is on.
                Some(v)
            } else {
                None
            });
        }
        let labels = if drop { without_name(&series.labels) } else { series.labels };
        if values.iter().any(Option::is_some) {
            out.push(StepSeries { labels, values });
        }
    }
    merge_unique(out)
}

/// Combines series with equal labels (name dropping can make them so) as long as they never
/// hold a value at the same step; a clash is Prometheus's duplicate-labelset error.
fn merge_unique(series: impl IntoIterator<Item = StepSeries>) -> Result<Vec<StepSeries>, EvalError> {
    let mut merged: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
    for s in series {
        match merged.get_mut(&s.labels) {
            None => {
                merged.insert(s.labels, s.values);
            }
            Some(existing) => {
                for (slot, value) in existing.iter_mut().zip(s.values) {
                    if value.is_some() {
                        if slot.is_some() {
                            return Err(EvalError::Execution(
                                "vector cannot contain metrics with the same labelset".into(),
                            ));
                        }
                        *slot = value;
                    }
                }
            }
        }
    }
    Ok(merged.into_iter().map(|(labels, values)| StepSeries { labels, values }).collect())
}

/// The matching signature of a series: the `on` labels, or every label but the `ignoring`
/// ones and the name.
fn signature(labels: &Labels, modifier: Option<&BinModifier>) -> String {
    let mut key = String::new();
    match modifier.and_then(|m| m.matching.as_ref()) {
        Some(LabelModifier::Include(names)) => {
            for name in &names.labels {
                key.push_str(labels.get(name).unwrap_or(""));
                key.push('\u{ff}');
            }
        }
        matching => {
            let ignored: &[String] = match matching {
                Some(LabelModifier::Exclude(names)) => &names.labels,
                _ => &[],
            };
            for label in labels.iter() {
                if &*label.name == "__name__" || ignored.iter().any(|n| n == &*label.name) {
                    continue;
                }
                key.push_str(&label.name);
                key.push('\u{fe}');
                key.push_str(&label.value);
                key.push('\u{ff}');
            }
        }
    }
    key
}

/// `and`, `or` and `unless`.
fn set_operation(
    op: TokenType,
    modifier: Option<&BinModifier>,
    lhs: Vec<StepSeries>,
    rhs: Vec<StepSeries>,
    steps: usize,
) -> Vec<StepSeries> {
    let lhs_sigs: Vec<String> = lhs.iter().map(|s| signature(&s.labels, modifier)).collect();
    let rhs_sigs: Vec<String> = rhs.iter().map(|s| signature(&s.labels, modifier)).collect();
    // Per step, the signatures present on the side that filters.
    let present_at = |series: &[StepSeries], sigs: &[String], step: usize| -> std::collections::HashSet<String> {
        series.iter().zip(sigs).filter(|(s, _)| s.values[step].is_some()).map(|(_, sig)| sig.clone()).collect()
    };
    let mut out: Vec<StepSeries> = Vec::new();
    match op.id() {
        T_LOR => {
            let mut right = rhs;
            for step in 0..steps {
                let present = present_at(&lhs, &lhs_sigs, step);
                for (series, sig) in right.iter_mut().zip(&rhs_sigs) {
                    if present.contains(sig) {
                        series.values[step] = None;
                    }
                }
            }
            out.extend(lhs);
            out.extend(right);
        }
        // `and` and `unless` (the caller passes set operators only).
        _ => {
            let keep_matches = op.id() == T_LAND;
            let mut result = lhs;
            for step in 0..steps {
                let present = present_at(&rhs, &rhs_sigs, step);
                for (series, sig) in result.iter_mut().zip(&lhs_sigs) {
                    if series.values[step].is_some() && present.contains(sig) != keep_matches {
                        series.values[step] = None;
                    }
                }
            }
            out.extend(result);
        }
    }
    // `or` can bring equal label sets from both sides; the left one wins at each step.
    let mut merged: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
    for s in out {
        let slot = merged.entry(s.labels).or_insert_with(|| vec![None; steps]);
        for (existing, value) in slot.iter_mut().zip(s.values) {
            if existing.is_none() {
                *existing = value;
            }
        }
    }
    merged
        .into_iter()
        .filter(|(_, values)| values.iter().any(Option::is_some))
        .map(|(labels, values)| StepSeries { labels, values })
        .collect()
}

fn vector_vector(
    op: TokenType,
    modifier: Option<&BinModifier>,
    lhs: Vec<StepSeries>,
    rhs: Vec<StepSeries>,
    steps: usize,
) -> Result<Vec<StepSeries>, EvalError> {
    let return_bool = modifier.is_some_and(|m| m.return_bool);
    let card = modifier.map(|m| &m.card).unwrap_or(&VectorMatchCardinality::OneToOne);
    // The "many" side goes left; `swapped` remembers that the operands were exchanged.
    let swapped = matches!(card, VectorMatchCardinality::OneToMany(_));
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
    let many_sigs: Vec<String> = many.iter().map(|s| signature(&s.labels, modifier)).collect();
    let one_sigs: Vec<String> = one.iter().map(|s| signature(&s.labels, modifier)).collect();
    let include: Option<&GroupingLabels> = match card {
        VectorMatchCardinality::ManyToOne(labels) | VectorMatchCardinality::OneToMany(labels) => Some(labels),
        _ => None,
    };
    let drop = drops_name(op, return_bool);

    let mut out: HashMap<Labels, Vec<Option<f64>>> = HashMap::new();
    let mut result_labels: HashMap<(usize, usize), Labels> = HashMap::new();
    for step in 0..steps {
        // The "one" side by signature; two series with one signature is ambiguous.
        let mut one_by_sig: HashMap<&str, usize> = HashMap::new();
        for (i, (series, sig)) in one.iter().zip(&one_sigs).enumerate() {
            if series.values[step].is_none() {
                continue;
            }
            if let Some(&other) = one_by_sig.get(sig.as_str()) {
                let side = if swapped { "left" } else { "right" };
                return Err(EvalError::Execution(format!(
                    "found duplicate series for the match group on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                    format_labels(&one[other].labels),
                    format_labels(&series.labels)
                )));
            }
            one_by_sig.insert(sig, i);
        }
        let mut matched: HashMap<&str, Vec<Labels>> = HashMap::new();
        let mut matched_one_to_one: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for (m, (series, sig)) in many.iter().zip(&many_sigs).enumerate() {
            let Some(many_value) = series.values[step] else { continue };
            let Some(&o) = one_by_sig.get(sig.as_str()) else { continue };
            // Ambiguity is an error even when the operator would filter the pairs out.
            if include.is_none() && !matched_one_to_one.insert(sig.as_str()) {
                return Err(EvalError::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                        .into(),
                ));
            }
            let Some(one_value) = one[o].values[step] else { continue };
            let (l, r) = if swapped { (one_value, many_value) } else { (many_value, one_value) };
            let (value, keep) = apply(op, l, r)?;
            let value = if return_bool {
                f64::from(u8::from(keep))
            } else if keep {
                value
            } else {
                continue;
            };
            let labels = result_labels
                .entry((m, o))
                .or_insert_with(|| result_metric(&series.labels, &one[o].labels, modifier, include, drop))
                .clone();
            let previous = matched.entry(sig).or_default();
            if previous.contains(&labels) {
                return Err(EvalError::Execution(
                    "multiple matches for labels: grouping labels must ensure unique matches".into(),
                ));
            }
            previous.push(labels.clone());
            let slot = out.entry(labels).or_insert_with(|| vec![None; steps]);
            if slot[step].is_some() {
                return Err(EvalError::Execution("vector cannot contain metrics with the same labelset".into()));
            }
            slot[step] = Some(value);
        }
    }
    let mut series: Vec<StepSeries> = out.into_iter().map(|(labels, values)| StepSeries { labels, values }).collect();
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(series)
}

/// The labels of a vector-vector result, from the "many" side's labels.
fn result_metric(
    many: &Labels,
    one: &Labels,
    modifier: Option<&BinModifier>,
    include: Option<&GroupingLabels>,
    drop_name: bool,
) -> Labels {
    let mut labels: Vec<Label> = many.iter().filter(|l| !(drop_name && &*l.name == "__name__")).cloned().collect();
    match include {
        None => match modifier.and_then(|m| m.matching.as_ref()) {
            Some(LabelModifier::Include(on)) => labels.retain(|l| on.labels.iter().any(|n| n == &*l.name)),
            Some(LabelModifier::Exclude(ignoring)) => labels.retain(|l| !ignoring.labels.iter().any(|n| n == &*l.name)),
            None => {}
        },
        Some(extra) => {
            for name in &extra.labels {
                labels.retain(|l| &*l.name != name.as_str());
                if let Some(value) = one.get(name).filter(|v| !v.is_empty()) {
                    labels.push(Label { name: name.as_str().into(), value: value.into() });
                }
            }
        }
    }
    Labels::from_labels(labels).unwrap_or_else(|_| Labels::empty())
}

fn format_labels(labels: &Labels) -> String {
    let pairs: Vec<String> = labels.iter().map(|l| format!("{}={:?}", l.name, &*l.value)).collect();
    format!("{{{}}}", pairs.join(", "))
}

/// `double_exponential_smoothing` takes factors strictly between 0 and 1, at every step.
fn check_smoothing_factors(params: &[Vec<f64>]) -> Result<(), EvalError> {
    for (which, values) in ["smoothing", "trend"].iter().zip(params) {
        if let Some(bad) = values.iter().find(|&&f| !functions::is_smoothing_factor(f)) {
            let short = if *which == "smoothing" { "sf" } else { "tf" };
            return Err(EvalError::Execution(format!(
                "invalid {which} factor. Expected: 0 < {short} < 1, got: {bad:.6}"
            )));
        }
    }
    Ok(())
}

fn duration_ms(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn system_time_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => duration_ms(after),
        Err(before) => -duration_ms(before.duration()),
    }
}
