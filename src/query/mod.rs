//! The query languages, each evaluated against the storage traits only.

pub mod logql;
pub mod promql;
pub mod traceql;
