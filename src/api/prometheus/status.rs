//! `/api/v1/format_query` and the `/api/v1/status/*` pages other than buildinfo: `config` (the
//! scrape configuration as Prometheus YAML), `flags` (Tripod's settings under the names of the
//! Prometheus flags they stand for), `runtimeinfo` and `tsdb` (head statistics and the top-10
//! cardinality lists).

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};
use tripod_storage::metrics::{MetricsQueryable, TimeRange};

use super::read::{Params, success};
use super::targets::rfc3339;
use crate::api::AppState;
use crate::api::error::{ApiError, PrometheusError};

pub async fn format_query(
    State(_state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PrometheusError> {
    let params = Params::from_request(query.as_deref(), &headers, &body)?;
    let expr = super::query::parse_query(&params)?;
    Ok(success(Value::String(expr.prettify())))
}

pub async fn config(State(state): State<AppState>) -> Result<Response, PrometheusError> {
    let scrape = state.scrape().ok_or_else(|| ApiError::unavailable("storage is not ready yet"))?;
    Ok(success(json!({ "yaml": scrape.manager.config_yaml() })))
}

pub async fn flags(State(state): State<AppState>) -> Result<Response, PrometheusError> {
    let flags: BTreeMap<String, String> = state.flags().clone();
    Ok(success(json!(flags)))
}

pub async fn runtime_info(State(state): State<AppState>) -> Result<Response, PrometheusError> {
    let storage = state.storage()?;
    let (reload_success, last_reload_ms) = state.last_reload();
    let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
    Ok(success(json!({
        "startTime": rfc3339(state.telemetry().started_unix_ms()),
        "CWD": cwd,
        "reloadConfigSuccess": reload_success,
        "lastConfigTime": rfc3339(last_reload_ms),
        "corruptionCount": storage.replay_stats().damaged_segments,
        "storageRetention": state.flags().get("storage.tsdb.retention.time").cloned().unwrap_or_default(),
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    })))
}

fn top(counts: HashMap<String, u64>) -> Vec<Value> {
    let mut entries: Vec<(String, u64)> = counts.into_iter().collect();
    entries.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    entries.truncate(10);
    entries.into_iter().map(|(name, value)| json!({ "name": name, "value": value })).collect()
}

pub async fn tsdb(State(state): State<AppState>) -> Result<Response, PrometheusError> {
    let storage = state.storage()?.clone();
    let data = tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        let stats = storage.metrics().stats();
        let range = match TimeRange::new(stats.head_min_t, stats.head_max_t) {
            Some(range) => range,
            None => {
                return Ok(json!({
                    "headStats": { "numSeries": 0, "numLabelPairs": 0, "chunkCount": 0, "minTime": 0, "maxTime": 0 },
                    "seriesCountByMetricName": [],
                    "labelValueCountByLabelName": [],
                    "memoryInBytesByLabelName": [],
                    "seriesCountByLabelValuePair": [],
                }));
            }
        };
        let series =
            storage.metrics().select(&[], range).map_err(|e| ApiError::internal(format!("reading metrics: {e}")))?;
        let mut by_metric: HashMap<String, u64> = HashMap::new();
        let mut values_by_name: HashMap<String, std::collections::HashSet<String>> = HashMap::new();
        let mut by_pair: HashMap<String, u64> = HashMap::new();
        for entry in &series {
            if let Some(name) = entry.labels.get("__name__") {
                *by_metric.entry(name.to_string()).or_default() += 1;
            }
            for label in &entry.labels {
                values_by_name.entry(label.name.to_string()).or_default().insert(label.value.to_string());
                *by_pair.entry(format!("{}={}", label.name, label.value)).or_default() += 1;
            }
        }
        let value_counts: HashMap<String, u64> =
            values_by_name.iter().map(|(n, v)| (n.clone(), v.len() as u64)).collect();
        let memory: HashMap<String, u64> =
            values_by_name.iter().map(|(n, v)| (n.clone(), v.iter().map(|value| value.len() as u64).sum())).collect();
        Ok(json!({
            "headStats": {
                "numSeries": stats.head_series,
                "numLabelPairs": by_pair.len(),
                "chunkCount": stats.head_chunks,
                "minTime": stats.head_min_t,
                "maxTime": stats.head_max_t,
            },
            "seriesCountByMetricName": top(by_metric),
            "labelValueCountByLabelName": top(value_counts),
            "memoryInBytesByLabelName": top(memory),
            "seriesCountByLabelValuePair": top(by_pair),
        }))
    })
    .await
    .map_err(|e| ApiError::internal(format!("tsdb status task failed: {e}")))??;
    Ok(success(data))
}
