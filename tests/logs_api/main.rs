//! The Loki query API, black box, over real HTTP and WebSocket connections to an embedded
//! server: every request Grafana's Loki datasource sends, checked against the exact JSON it
//! parses (`contract`); query behaviour, the encodings and every refusal with its status and
//! words (`query`); the index and sample endpoints (`read`); and live tailing with a real
//! WebSocket client (`tail`); every LogQL query of the seed scenario (`seed_scenario`).

// Test cases are tables of tuples on purpose: one line a case.
#![allow(clippy::type_complexity)]

mod contract;
mod query;
mod read;
mod seed_scenario;
mod support;
mod tail;
