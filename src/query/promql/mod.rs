//! PromQL: result values and their JSON encoding, and instant-vector selection with Prometheus
//! 3's lookback rules. Expressions come from `promql-parser`.

pub mod lookback;
pub mod value;

pub use lookback::{DEFAULT_LOOKBACK_MS, instant_sample, range_samples};
pub use value::{QueryValue, RangeSeries, VectorSample};
