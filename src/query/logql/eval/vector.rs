//! Metric expressions over step-aligned series: vector aggregations, binary operators with
//! vector matching, `label_replace`, `vector()` and literals. Semantics are PromQL's, which
//! LogQL follows for these.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tripod_storage::labels::{Label, Labels};
use tripod_storage::logs::LogsQueryable;

use super::range::{self, group_labels};
use super::{EvalError, QueryParams, StepSeries};
use crate::query::logql::syntax::ast::{BinaryOp, Grouping, MetricExpr, RangeOp, VectorMatching, VectorOp};

/// A metric expression's value: series over the steps, or one number.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Series(Vec<StepSeries>),
    Scalar(f64),
}

pub fn evaluate(
    store: &dyn LogsQueryable,
    expr: &MetricExpr,
    steps: &[i64],
    params: &QueryParams<'_>,
) -> Result<Value, EvalError> {
    Ok(match expr {
        MetricExpr::Range { op, parameter, range, grouping } => {
            Value::Series(range::evaluate(store, *op, *parameter, range, grouping.as_ref(), steps, params)?)
        }
        MetricExpr::Literal(value) => Value::Scalar(*value),
        MetricExpr::Vector1(value) => {
            Value::Series(vec![StepSeries { labels: Labels::empty(), values: vec![Some(*value); steps.len()] }])
        }
        MetricExpr::Vector { op: VectorOp::Sum, parameter: None, grouping, expr } if matches!(&**expr, MetricExpr::Range { op, grouping: None, .. } if is_additive(*op)) =>
        {
            // A sum of additive range aggregations is the range aggregation over the samples
            // already grouped: each sample is filed under its group's labels as it is read, so
            // per-entry labels (a parsed timestamp, a request ID) never become series of their
            // own.
            let MetricExpr::Range { op, parameter, range, .. } = &**expr else { unreachable!("matched above") };
            let everything = Grouping { without: false, labels: Vec::new() };
            let grouping = grouping.as_ref().unwrap_or(&everything);
            Value::Series(range::evaluate(store, *op, *parameter, range, Some(grouping), steps, params)?)
        }
        MetricExpr::Vector { op, parameter, grouping, expr } => {
            let Value::Series(input) = evaluate(store, expr, steps, params)? else {
                return Err(EvalError::Invalid(format!("{} needs a vector, not a number", op.name())));
            };
            Value::Series(aggregate(*op, *parameter, grouping.as_ref(), input, steps.len()))
        }
        MetricExpr::Binary { op, return_bool, matching, left, right } => {
            let left = evaluate(store, left, steps, params)?;
            let right = evaluate(store, right, steps, params)?;
            binary(*op, *return_bool, matching, left, right, steps.len())?
        }
        MetricExpr::LabelReplace { expr, dst, replacement, src, regex } => {
            let Value::Series(input) = evaluate(store, expr, steps, params)? else {
                return Err(EvalError::Invalid("label_replace needs a vector, not a number".into()));
            };
            Value::Series(label_replace(input, dst, replacement, src, regex)?)
        }
    })
}

/// Range aggregations whose value over several series' samples together is the sum of their
/// values over each series' samples: a `sum` above them can group samples before aggregating.
fn is_additive(op: RangeOp) -> bool {
    matches!(
        op,
        RangeOp::CountOverTime | RangeOp::Rate | RangeOp::BytesOverTime | RangeOp::BytesRate | RangeOp::SumOverTime
    )
}

/// Grouping labels for an aggregation: `by` keeps the named labels, `without` drops them, no
/// grouping puts every series in one group.
fn group_of(labels: &Labels, grouping: Option<&Grouping>) -> Labels {
    match grouping {
        Some(grouping) => group_labels(labels, grouping),
        None => Labels::empty(),
    }
}

fn aggregate(
    op: VectorOp,
    parameter: Option<f64>,
    grouping: Option<&Grouping>,
    input: Vec<StepSeries>,
    steps: usize,
) -> Vec<StepSeries> {
    match op {
        VectorOp::Sort | VectorOp::SortDesc => {
            let mut series = input;
            // Ordered by the value at the last step that has one (an instant query has one step).
            let key = |s: &StepSeries| s.values.iter().rev().find_map(|v| *v).unwrap_or(f64::NAN);
            series.sort_by(|a, b| {
                let order = key(a).total_cmp(&key(b));
                if op == VectorOp::SortDesc { order.reverse() } else { order }
            });
            series
        }
        VectorOp::Topk | VectorOp::Bottomk => {
            let k = parameter.unwrap_or(1.0).max(0.0) as usize;
            let mut groups: BTreeMap<Labels, Vec<usize>> = BTreeMap::new();
            for (index, series) in input.iter().enumerate() {
                groups.entry(group_of(&series.labels, grouping)).or_default().push(index);
            }
            let mut kept: Vec<Vec<Option<f64>>> = vec![vec![None; steps]; input.len()];
            #[allow(clippy::needless_range_loop)] // `step` indexes both the input and `kept`.
            for members in groups.values() {
                for step in 0..steps {
                    let mut present: Vec<(usize, f64)> =
                        members.iter().filter_map(|&i| input[i].values[step].map(|v| (i, v))).collect();
                    present.sort_by(|a, b| {
                        let order = if op == VectorOp::Topk { b.1.total_cmp(&a.1) } else { a.1.total_cmp(&b.1) };
                        order.then(a.0.cmp(&b.0))
                    });
                    for (index, value) in present.into_iter().take(k) {
                        kept[index][step] = Some(value);
                    }
                }
            }
            input
                .into_iter()
                .zip(kept)
                .filter(|(_, values)| values.iter().any(Option::is_some))
                .map(|(series, values)| StepSeries { labels: series.labels, values })
                .collect()
        }
        _ => {
            let mut groups: BTreeMap<Labels, Vec<Vec<f64>>> = BTreeMap::new();
            for series in &input {
                let values =
                    groups.entry(group_of(&series.labels, grouping)).or_insert_with(|| vec![Vec::new(); steps]);
                for (step, value) in series.values.iter().enumerate() {
                    if let Some(value) = value {
                        values[step].push(*value);
                    }
                }
            }
            groups
                .into_iter()
                .map(|(labels, per_step)| StepSeries {
                    labels,
                    values: per_step.iter().map(|values| reduce(op, values)).collect(),
                })
                .filter(|series| series.values.iter().any(Option::is_some))
                .collect()
        }
    }
}

fn reduce(op: VectorOp, values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let count = values.len() as f64;
    Some(match op {
        VectorOp::Sum => values.iter().sum(),
        VectorOp::Avg => {
            let mut mean = 0.0;
            for (i, value) in values.iter().enumerate() {
                mean += (value - mean) / (i as f64 + 1.0);
            }
            mean
        }
        VectorOp::Min => values.iter().copied().fold(f64::NAN, |a, b| if a.is_nan() || b < a { b } else { a }),
        VectorOp::Max => values.iter().copied().fold(f64::NAN, |a, b| if a.is_nan() || b > a { b } else { a }),
        VectorOp::Count => count,
        VectorOp::Stddev | VectorOp::Stdvar => {
            let mean = values.iter().sum::<f64>() / count;
            let variance = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / count;
            if op == VectorOp::Stddev { variance.sqrt() } else { variance }
        }
        VectorOp::Topk | VectorOp::Bottomk | VectorOp::Sort | VectorOp::SortDesc => return None,
    })
}

fn arithmetic(op: BinaryOp, left: f64, right: f64) -> f64 {
    match op {
        BinaryOp::Add => left + right,
        BinaryOp::Sub => left - right,
        BinaryOp::Mul => left * right,
        BinaryOp::Div => left / right,
        BinaryOp::Mod => left % right,
        BinaryOp::Pow => left.powf(right),
        _ => f64::NAN,
    }
}

/// A binary operation on two values at one step: the value kept, if any. Comparisons without
/// `bool` keep the vector's value (`keep`) where they hold.
fn apply(op: BinaryOp, return_bool: bool, left: f64, right: f64, keep: f64) -> Option<f64> {
    match op {
        BinaryOp::Compare(compare) => {
            let holds = compare.compare(left, right);
            if return_bool { Some(if holds { 1.0 } else { 0.0 }) } else { holds.then_some(keep) }
        }
        _ => Some(arithmetic(op, left, right)),
    }
}

/// The labels two series are matched on.
fn signature(labels: &Labels, matching: &VectorMatching) -> Labels {
    match matching.on {
        Some(true) => group_labels(labels, &Grouping { without: false, labels: matching.labels.clone() }),
        Some(false) => group_labels(labels, &Grouping { without: true, labels: matching.labels.clone() }),
        None => labels.clone(),
    }
}

fn binary(
    op: BinaryOp,
    return_bool: bool,
    matching: &VectorMatching,
    left: Value,
    right: Value,
    steps: usize,
) -> Result<Value, EvalError> {
    match (left, right) {
        (Value::Scalar(l), Value::Scalar(r)) => Ok(Value::Scalar(match op {
            BinaryOp::Compare(compare) => {
                if compare.compare(l, r) {
                    1.0
                } else {
                    0.0
                }
            }
            _ => arithmetic(op, l, r),
        })),
        (Value::Series(_), Value::Scalar(_)) | (Value::Scalar(_), Value::Series(_)) if op.is_set_operator() => {
            Err(EvalError::Invalid(format!("set operator {} not allowed in binary scalar expression", op.symbol())))
        }
        (Value::Series(series), Value::Scalar(scalar)) => {
            Ok(Value::Series(map_series(series, |v| apply(op, return_bool, v, scalar, v))))
        }
        (Value::Scalar(scalar), Value::Series(series)) => {
            Ok(Value::Series(map_series(series, |v| apply(op, return_bool, scalar, v, v))))
        }
        (Value::Series(left), Value::Series(right)) => {
            if op.is_set_operator() {
                Ok(Value::Series(set_operation(op, matching, left, right, steps)))
            } else {
                vector_vector(op, return_bool, matching, left, right, steps).map(Value::Series)
            }
        }
    }
}

fn map_series(series: Vec<StepSeries>, f: impl Fn(f64) -> Option<f64>) -> Vec<StepSeries> {
    series
        .into_iter()
        .map(|s| StepSeries { labels: s.labels, values: s.values.into_iter().map(|v| v.and_then(&f)).collect() })
        .filter(|s| s.values.iter().any(Option::is_some))
        .collect()
}

fn set_operation(
    op: BinaryOp,
    matching: &VectorMatching,
    left: Vec<StepSeries>,
    right: Vec<StepSeries>,
    steps: usize,
) -> Vec<StepSeries> {
    // Per step, the signatures the right side has a value for.
    let mut right_at: Vec<std::collections::HashSet<Labels>> = vec![Default::default(); steps];
    for series in &right {
        let sig = signature(&series.labels, matching);
        for (step, value) in series.values.iter().enumerate() {
            if value.is_some() {
                right_at[step].insert(sig.clone());
            }
        }
    }
    match op {
        BinaryOp::And | BinaryOp::Unless => {
            let keep_when_present = op == BinaryOp::And;
            let mut out: Vec<StepSeries> = left
                .into_iter()
                .map(|series| {
                    let sig = signature(&series.labels, matching);
                    let values = series
                        .values
                        .iter()
                        .enumerate()
                        .map(|(step, v)| v.filter(|_| right_at[step].contains(&sig) == keep_when_present))
                        .collect();
                    StepSeries { labels: series.labels, values }
                })
                .collect();
            out.retain(|s| s.values.iter().any(Option::is_some));
            out
        }
        _ => {
            let mut left_at: Vec<std::collections::HashSet<Labels>> = vec![Default::default(); steps];
            for series in &left {
                let sig = signature(&series.labels, matching);
                for (step, value) in series.values.iter().enumerate() {
                    if value.is_some() {
                        left_at[step].insert(sig.clone());
                    }
                }
            }
            let mut out = left;
            for series in right {
                let sig = signature(&series.labels, matching);
                let values: Vec<Option<f64>> = series
                    .values
                    .iter()
                    .enumerate()
                    .map(|(step, v)| v.filter(|_| !left_at[step].contains(&sig)))
                    .collect();
                if values.iter().any(Option::is_some) {
                    out.push(StepSeries { labels: series.labels, values });
                }
            }
            out
        }
    }
}

fn vector_vector(
    op: BinaryOp,
    return_bool: bool,
    matching: &VectorMatching,
    left: Vec<StepSeries>,
    right: Vec<StepSeries>,
    steps: usize,
) -> Result<Vec<StepSeries>, EvalError> {
    // With group_right the sides swap roles: the right side is the "many" side.
    let group_right = matching.group_left == Some(false);
    let (many, one) = if group_right { (&right, &left) } else { (&left, &right) };
    let mut one_by_sig: HashMap<Labels, Vec<usize>> = HashMap::new();
    for (index, series) in one.iter().enumerate() {
        one_by_sig.entry(signature(&series.labels, matching)).or_default().push(index);
    }
    let grouped = matching.group_left.is_some();
    let mut out: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
    let mut many_seen: HashMap<Labels, usize> = HashMap::new();
    for series in many {
        let sig = signature(&series.labels, matching);
        let Some(partners) = one_by_sig.get(&sig) else { continue };
        if !grouped {
            let count = many_seen.entry(sig.clone()).or_default();
            *count += 1;
            if *count > 1 {
                return Err(EvalError::Invalid(format!(
                    "found duplicate series for the match group {sig:?} on the left hand-side of the operation; many-to-many matching not allowed: matching labels must be unique on one side"
                )));
            }
        }
        for step in 0..steps {
            let Some(value) = series.values[step] else { continue };
            let present: Vec<f64> = partners.iter().filter_map(|&p| one[p].values[step]).collect();
            if present.len() > 1 {
                return Err(EvalError::Invalid(format!(
                    "found duplicate series for the match group {sig:?} on the {} hand-side of the operation; many-to-many matching not allowed: matching labels must be unique on one side",
                    if group_right { "left" } else { "right" }
                )));
            }
            let Some(&other) = present.first() else { continue };
            let (l, r) = if group_right { (other, value) } else { (value, other) };
            let Some(result) = apply(op, return_bool, l, r, l) else { continue };
            let labels = result_labels(&series.labels, partners.first().map(|&p| &one[p].labels), matching);
            let slot = out.entry(labels).or_insert_with(|| vec![None; steps]);
            if slot[step].is_some() {
                return Err(EvalError::Invalid(
                    "multiple matches for labels: grouping labels must ensure unique matches".into(),
                ));
            }
            slot[step] = Some(result);
        }
    }
    Ok(out.into_iter().map(|(labels, values)| StepSeries { labels, values }).collect())
}

/// The labels of a vector-vector result: one-to-one keeps the matching labels (`on`) or drops
/// the ignored ones; grouped matching keeps the "many" side's labels plus `include`d labels of
/// the "one" side.
fn result_labels(many: &Labels, one: Option<&Labels>, matching: &VectorMatching) -> Labels {
    if matching.group_left.is_none() {
        return signature(many, matching);
    }
    let mut labels: Vec<Label> = many.iter().cloned().collect();
    if let Some(one) = one {
        for name in &matching.include {
            labels.retain(|label| *label.name != **name);
            if let Some(value) = one.get(name) {
                labels.push(Label { name: Arc::from(name.as_str()), value: Arc::from(value) });
            }
        }
    }
    Labels::from_labels(labels).unwrap_or_else(|_| many.clone())
}

fn label_replace(
    input: Vec<StepSeries>,
    dst: &str,
    replacement: &str,
    src: &str,
    regex: &str,
) -> Result<Vec<StepSeries>, EvalError> {
    let regex = regex::Regex::new(&format!("^(?s:{regex})$"))
        .map_err(|error| EvalError::Invalid(format!("invalid regular expression in label_replace: {error}")))?;
    let mut out: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
    for series in input {
        let source = series.labels.get(src).unwrap_or("");
        let labels = match regex.captures(source) {
            Some(captures) => {
                let mut value = String::new();
                captures.expand(replacement, &mut value);
                let mut labels: Vec<Label> = series.labels.iter().filter(|l| &*l.name != dst).cloned().collect();
                if !value.is_empty() {
                    labels.push(Label { name: Arc::from(dst), value: Arc::from(value.as_str()) });
                }
                Labels::from_labels(labels).unwrap_or(series.labels)
            }
            None => series.labels,
        };
        if out.contains_key(&labels) {
            return Err(EvalError::Invalid(format!("vector cannot contain metrics with the same labelset {labels:?}")));
        }
        out.insert(labels, series.values);
    }
    Ok(out.into_iter().map(|(labels, values)| StepSeries { labels, values }).collect())
}
