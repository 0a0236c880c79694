//! Tripod: one process that serves the Loki, Prometheus and Tempo APIs over one storage.
//!
//! Reading order: [`config`] (what can be set), [`server`] (listeners, tasks, shutdown),
//! [`api`] (every wire format, with [`api::error`] mapping errors once), [`ingest`] (the
//! protocol-neutral write path), [`query`] (the query languages), [`telemetry`] (logs and self-metrics). The database itself is
//! the `tripod-storage` crate.
//!
//! Embedding, for tests and CI jobs:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use tripod::config::ListenerName;
//! let server = tripod::Server::start(tripod::Config::embedded()).await?;
//! server.ready().await?;
//! let loki = server.address(ListenerName::Loki).expect("loki listener is on");
//! // ... push and query against http://{loki} ...
//! server.shutdown().await?;
//! # Ok(()) }
//! ```

pub mod api;
pub mod config;
pub mod duration;
pub mod encoding;
pub mod ingest;
pub mod load;
pub mod query;
pub mod scrape;
pub mod server;
pub mod telemetry;

pub use config::Config;
pub use server::{Server, ServerError, StartError};
