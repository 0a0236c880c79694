//! `/federate`: the latest sample of every series selected by the `match[]` parameters, in the
//! Prometheus text exposition format, so that another Prometheus can scrape this one.
//!
//! As in Prometheus, a series contributes its newest sample within the lookback window (five
//! minutes before now); series whose newest sample is a staleness marker, and series without a
//! metric name, are left out. Families come out sorted by metric name, each typed `untyped`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use tripod_storage::labels::Labels;
use tripod_storage::metrics::{MetricsQueryable, Sample, TimeRange, is_stale_nan};

use super::read::{Params, match_params, storage_error};
use crate::api::AppState;
use crate::api::error::{ApiError, TextError};

/// How far back a series' newest sample may lie and still be federated (Prometheus's default
/// query lookback delta).
const LOOKBACK_MS: i64 = 5 * 60 * 1000;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn federate(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, TextError> {
    let params = Params::from_request(query.as_deref(), &headers, &body).map_err(TextError)?;
    let sets = match_params(&params).map_err(TextError)?;
    let now = crate::duration::unix_now_ms();
    let range = TimeRange::new(now - LOOKBACK_MS, now).ok_or_else(|| TextError(ApiError::internal("bad clock")))?;
    let storage = state.storage().map_err(TextError)?;

    let mut latest: BTreeMap<Labels, Sample> = BTreeMap::new();
    for matchers in &sets {
        for series in storage.metrics().select(matchers, range).map_err(|e| TextError(storage_error(e)))? {
            if latest.contains_key(&series.labels) {
                continue;
            }
            let samples =
                series.samples().map_err(|e| TextError(ApiError::internal(format!("reading metrics: {e}"))))?;
            if let Some(last) = samples.last().filter(|s| !is_stale_nan(s.value)) {
                latest.insert(series.labels.clone(), *last);
            }
        }
    }

    let mut families: BTreeMap<&str, Vec<(&Labels, &Sample)>> = BTreeMap::new();
    for (labels, sample) in &latest {
        if let Some(name) = labels.get("__name__") {
            families.entry(name).or_default().push((labels, sample));
        }
    }
    let mut out = String::new();
    for (name, members) in families {
        let _ = writeln!(out, "# TYPE {name} untyped");
        for (labels, sample) in members {
            write_sample(&mut out, name, labels, sample);
        }
    }
    let mut response = out.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(response)
}

fn write_sample(out: &mut String, name: &str, labels: &Labels, sample: &Sample) {
    out.push_str(name);
    let mut first = true;
    for label in labels.iter().filter(|l| &*l.name != "__name__") {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(&label.name);
        out.push_str("=\"");
        for c in label.value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    if !first {
        out.push('}');
    }
    let _ = writeln!(out, " {} {}", exposition_float(sample.value), sample.t_ms);
}

/// A float as the exposition format writes it (Go's shortest `%g`): plain decimal for
/// exponents -4 to 5, exponent form with at least two exponent digits otherwise.
fn exposition_float(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // The decimal exponent of the shortest round-tripping digits decides, as in Go.
    let scientific = format!("{value:e}");
    let exponent: i32 = scientific.split_once('e').and_then(|(_, e)| e.parse().ok()).unwrap_or(0);
    if (-4..6).contains(&exponent) { format!("{value}") } else { super::go_exponent_form(value) }
}

#[cfg(test)]
mod tests {
    use super::exposition_float;

    #[test]
    fn floats_match_go_shortest_g() {
        let cases = [
            (1.0, "1"),
            (-2.5, "-2.5"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001234, "1.234e-05"),
            (1e21, "1e+21"),
            (1e-300, "1e-300"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (0.1 + 0.2, "0.30000000000000004"),
        ];
        for (value, want) in cases {
            assert_eq!(exposition_float(value), want, "{value}");
        }
        assert_eq!(exposition_float(f64::NAN), "NaN");
    }
}
