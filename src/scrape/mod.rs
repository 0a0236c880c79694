//! Prometheus-style scraping: exposition parsers now; targets, relabeling and the scrape loop
//! join them.

pub mod config;
pub mod exposition;
pub mod manager;
pub mod relabel;
