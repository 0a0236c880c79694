//! Metrics ingestion, black box: Prometheus remote write 1.0 and 2.0 against a real server,
//! every rejection the receiver makes, a real Prometheus remote-writing to Tripod, and PromQL
//! answers from Tripod and a real Prometheus holding the same data.

// Test cases are tables of tuples on purpose: one line a case.
#![allow(clippy::type_complexity)]

mod encode;
mod fuzz;
mod openmetrics;
mod otlp;
mod prometheus_real;
mod promql_differential;
mod remote_write;
mod scrape;
mod support;
