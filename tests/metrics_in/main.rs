//! Metrics ingestion, black box: Prometheus remote write 1.0 and 2.0 against a real server,
//! every rejection the receiver makes, and a real Prometheus remote-writing to Tripod.

// Test cases are tables of tuples on purpose: one line a case.
#![allow(clippy::type_complexity)]

mod encode;
mod fuzz;
mod openmetrics;
mod otlp;
mod prometheus_real;
mod remote_write;
mod scrape;
mod support;
