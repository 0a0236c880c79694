//! The protocol-neutral write path: what every ingest protocol does after its wire format is
//! decoded (validate, map, cache series references, append), so that remote write, OTLP and
//! scraping share one implementation per signal.

pub mod logs;
pub mod metrics;
pub mod otlp_logs;
pub mod otlp_metrics;
pub mod otlp_traces;
