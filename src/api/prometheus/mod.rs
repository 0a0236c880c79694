//! The Prometheus HTTP surface: remote write, Prometheus's OTLP endpoint, the read endpoints
//! that answer from storage (labels, values, series, metadata, exemplars), targets and reload.
//! `/api/v1/query` and `/api/v1/query_range` join them with the PromQL engine.

pub mod federate;
pub mod query;
pub mod read;
pub mod remote_write;
pub mod status;
pub mod targets;

use axum::Router;
use axum::routing::{get, post};

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/write", post(remote_write::write))
        .route("/api/v1/otlp/v1/metrics", post(super::otlp::metrics::http_export))
        .route("/api/v1/query", get(query::instant).post(query::instant))
        .route("/api/v1/query_range", get(query::range).post(query::range))
        .route("/api/v1/labels", get(read::labels).post(read::labels))
        .route("/api/v1/label/{name}/values", get(read::label_values).post(read::label_values))
        .route("/api/v1/series", get(read::series).post(read::series))
        .route("/api/v1/metadata", get(read::metadata).post(read::metadata))
        .route("/api/v1/query_exemplars", get(read::query_exemplars).post(read::query_exemplars))
        .route("/api/v1/format_query", get(status::format_query).post(status::format_query))
        .route("/api/v1/status/config", get(status::config).post(status::config))
        .route("/api/v1/status/flags", get(status::flags).post(status::flags))
        .route("/api/v1/status/runtimeinfo", get(status::runtime_info).post(status::runtime_info))
        .route("/api/v1/status/tsdb", get(status::tsdb).post(status::tsdb))
        .route("/api/v1/targets", get(targets::targets))
        .route("/api/v1/targets/metadata", get(targets::targets_metadata))
        .route("/federate", get(federate::federate))
        .route("/-/reload", post(targets::reload).put(targets::reload))
}

/// A sample value as Prometheus writes it in JSON: `NaN`, `+Inf`, `-Inf`, or the shortest
/// decimal that reads back to the same float, in exponent form below 1e-6 and from 1e21 up
/// (`1e-07`, `1e+21`), as its encoder does.
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value == f64::INFINITY {
        "+Inf".to_string()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else if value != 0.0 && !(1e-6..1e21).contains(&value.abs()) {
        go_exponent_form(value)
    } else {
        format!("{value}")
    }
}

/// A finite float in Go's shortest `%e` form: `1.5e+07`, `1e-300` (at least two exponent
/// digits, with a sign).
pub fn go_exponent_form(value: f64) -> String {
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::format_value;

    #[test]
    fn values_match_prometheus_json() {
        let cases = [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (0.25, "0.25"),
            (1e-6, "0.000001"),
            (9.5e-7, "9.5e-07"),
            (123456789.0, "123456789"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (-1.5e300, "-1.5e+300"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (value, want) in cases {
            assert_eq!(format_value(value), want, "{value:e}");
        }
        assert_eq!(format_value(f64::NAN), "NaN");
    }
}
