//! LogQL evaluation over the [`LogsQueryable`] seam.
//!
//! Reading order: [`logs`] (log queries: streams merged in time order through the pipeline,
//! stopping at the limit), [`range`] (range aggregations: one forward pass over the entries,
//! each output series keeping only its current window), [`vector`] (aggregations, binary
//! operators and `label_replace` over step-aligned series), then [`evaluate`] here, which
//! dispatches on the query and checks the limits and the deadline.

pub mod logs;
pub mod range;
pub mod vector;

use std::time::Instant;

use tripod_storage::labels::Labels;
use tripod_storage::logs::{Direction, LogsError, LogsQueryable};

use super::pipeline::PipelineError;
use super::syntax::Expr;

/// What a query is evaluated over.
#[derive(Debug, Clone, Copy)]
pub struct QueryParams<'a> {
    pub tenant: &'a str,
    /// Log queries: entries in `[start_ns, end_ns]`, end included. Metric queries: the first
    /// and last evaluation time.
    pub start_ns: i64,
    pub end_ns: i64,
    /// Time between evaluation steps (metric range queries); 0 for an instant query.
    pub step_ns: i64,
    pub direction: Direction,
    /// Most entries a log query returns.
    pub limit: usize,
    /// Most series a metric query may produce.
    pub max_series: usize,
    pub deadline: Instant,
}

/// One entry of a log query's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultEntry {
    pub t_ns: i64,
    pub line: String,
    /// Structured metadata, sorted by name.
    pub metadata: Vec<(String, String)>,
    /// Labels parsers and formatters added (and `__error__`), sorted by name.
    pub parsed: Vec<(String, String)>,
}

/// The entries of a log query for one label set.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultStream {
    /// Every label of the entries: stream labels, metadata and parsed labels together.
    pub labels: Labels,
    /// The stream's own (indexed) labels, for the categorized answer.
    pub stream_labels: Labels,
    /// In the query's direction.
    pub entries: Vec<ResultEntry>,
}

/// A metric series over the evaluation steps: `values[i]` is the value at step `i`.
#[derive(Debug, Clone, PartialEq)]
pub struct StepSeries {
    pub labels: Labels,
    pub values: Vec<Option<f64>>,
}

/// The answer to a query.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryResult {
    Streams(Vec<ResultStream>),
    /// Metric series at each step (`steps[i]` in ns); one step for an instant query.
    Series {
        steps: Vec<i64>,
        series: Vec<StepSeries>,
    },
    /// A number (a literal or arithmetic on literals), at each step.
    Scalar {
        steps: Vec<i64>,
        value: f64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The query is well formed but cannot be evaluated as asked (Loki answers 400).
    #[error("{0}")]
    Invalid(String),
    #[error("query timed out")]
    Timeout,
    #[error("maximum number of series ({0}) reached for a single query")]
    TooManySeries(usize),
    #[error(transparent)]
    Storage(#[from] LogsError),
}

impl From<PipelineError> for EvalError {
    fn from(error: PipelineError) -> EvalError {
        EvalError::Invalid(error.0)
    }
}

/// Evaluates `expr`. Log queries answer streams; metric queries answer series over the steps
/// `start_ns, start_ns + step_ns, ..., end_ns` (one step when `step_ns` is 0).
pub fn evaluate(store: &dyn LogsQueryable, expr: &Expr, params: &QueryParams<'_>) -> Result<QueryResult, EvalError> {
    match expr {
        Expr::Log(log) => Ok(QueryResult::Streams(logs::select(store, log, params)?)),
        Expr::Metric(metric) => {
            let steps = steps(params)?;
            match vector::evaluate(store, metric, &steps, params)? {
                vector::Value::Scalar(value) => Ok(QueryResult::Scalar { steps, value }),
                vector::Value::Series(series) => Ok(QueryResult::Series { steps, series }),
            }
        }
    }
}

/// The evaluation times of a metric query.
fn steps(params: &QueryParams<'_>) -> Result<Vec<i64>, EvalError> {
    if params.end_ns < params.start_ns {
        return Err(EvalError::Invalid("end timestamp must not be before start time".into()));
    }
    if params.step_ns <= 0 {
        return Ok(vec![params.end_ns]);
    }
    let count = (params.end_ns - params.start_ns) / params.step_ns + 1;
    if count > 11_000 {
        return Err(EvalError::Invalid(
            "exceeded maximum resolution of 11,000 points per time series. Try increasing the value of the step parameter"
                .into(),
        ));
    }
    Ok((0..count).map(|i| params.start_ns + i * params.step_ns).collect())
}

/// Deadline check, every so many entries.
pub(crate) fn check_deadline(params: &QueryParams<'_>, counter: &mut u32) -> Result<(), EvalError> {
    *counter = counter.wrapping_add(1);
    if (*counter).is_multiple_of(4096) && Instant::now() >= params.deadline {
        return Err(EvalError::Timeout);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
