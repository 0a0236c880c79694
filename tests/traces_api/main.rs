//! The Tempo query API, black box, over real HTTP connections to an embedded server fed by
//! OTLP: every request Grafana's Tempo datasource sends (health check, buildinfo, trace by ID,
//! search, tag names and values), checked against the exact JSON types Grafana's Go backend
//! decodes into, every refusal, the deadline and tenancy (`contract`); and the seed scenario's
//! TraceQL queries over generated traffic, against answers worked out by the test, from the head
//! and from blocks (`seed_scenario`).

// Test cases are tables of tuples on purpose: one line a case.
#![allow(clippy::type_complexity)]

mod contract;
mod seed_scenario;
mod support;
