//! The Prometheus HTTP API, black box, against the shapes Grafana's Prometheus datasource reads
//! (../shared/design/grafana-contract.md section 1).

mod http;
mod promqltest;
mod query;
mod read;
mod seed_scenario;
