//! PromQL: the evaluator, result values and their JSON encoding, and selection with Prometheus
//! 3's lookback rules. Expressions come from `promql-parser`.

pub mod eval;
pub mod functions;
pub mod labels;
pub mod lookback;
mod range;
pub mod selector;
pub mod value;
mod walk;

pub use eval::{EvalError, EvalOptions, QuerySettings, Steps, instant_query, range_query};
pub use lookback::{DEFAULT_LOOKBACK_MS, instant_sample, range_samples};
pub use value::{QueryValue, RangeSeries, VectorSample};
