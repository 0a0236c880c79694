//! `GET /api/v1/targets`, `GET /api/v1/targets/metadata` and `POST|PUT /-/reload`, in
//! Prometheus's shapes.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tripod_storage::labels::{MatchOp, Matcher, matches_all};

use crate::api::AppState;
use crate::api::error::{ApiError, PrometheusError};
use crate::scrape::relabel::LabelMap;

/// `1970-01-01T00:00:00.000Z` from Unix milliseconds (proleptic Gregorian, UTC).
pub fn rfc3339(unix_ms: i64) -> String {
    let seconds = unix_ms.div_euclid(1000);
    let millis = unix_ms.rem_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let rest = seconds.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

fn labels_json(labels: &LabelMap) -> Value {
    Value::Object(labels.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<Map<_, _>>())
}

#[derive(Deserialize)]
pub struct TargetsQuery {
    state: Option<String>,
}

pub async fn targets(
    State(state): State<AppState>,
    Query(query): Query<TargetsQuery>,
) -> Result<Response, PrometheusError> {
    let which = query.state.as_deref().unwrap_or("any");
    if !matches!(which, "any" | "active" | "dropped") {
        return Err(ApiError::bad_data(format!(
            "invalid parameter \"state\": {which:?} is not active, dropped or any"
        ))
        .into());
    }
    let scrape = state.scrape().ok_or_else(|| ApiError::unavailable("storage is not ready yet"))?;
    let active: Vec<Value> = if which == "dropped" {
        Vec::new()
    } else {
        scrape
            .manager
            .active_targets()
            .iter()
            .map(|status| {
                json!({
                    "discoveredLabels": labels_json(&status.target.discovered),
                    "labels": labels_json(&status.target.labels),
                    "scrapePool": status.pool,
                    "scrapeUrl": status.target.url,
                    "globalUrl": status.target.url,
                    "lastError": status.last_error,
                    "lastScrape": status.last_scrape_unix_ms.map(rfc3339).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                    "lastScrapeDuration": status.last_duration.as_secs_f64(),
                    "health": status.health,
                    "scrapeInterval": crate::duration::format_duration(status.interval),
                    "scrapeTimeout": crate::duration::format_duration(status.timeout),
                })
            })
            .collect()
    };
    let dropped: Vec<Value> = if which == "active" {
        Vec::new()
    } else {
        scrape
            .manager
            .dropped_targets()
            .iter()
            .map(|(pool, labels)| json!({ "discoveredLabels": labels_json(labels), "scrapePool": pool }))
            .collect()
    };
    Ok(Json(json!({ "status": "success", "data": { "activeTargets": active, "droppedTargets": dropped } }))
        .into_response())
}

/// Parses a label selector such as `{job="node", instance=~"a.*"}`.
pub fn parse_selector(text: &str) -> Result<Vec<Matcher>, String> {
    let text = text.trim();
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| format!("{text:?} is not a label selector"))?;
    let mut matchers = Vec::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let name_end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        let name = &rest[..name_end];
        if name.is_empty() {
            return Err(format!("expected a label name in {text:?}"));
        }
        rest = rest[name_end..].trim_start();
        let (op, len) = if rest.starts_with("=~") {
            (MatchOp::RegexMatch, 2)
        } else if rest.starts_with("!~") {
            (MatchOp::RegexNoMatch, 2)
        } else if rest.starts_with("!=") {
            (MatchOp::NotEqual, 2)
        } else if rest.starts_with('=') {
            (MatchOp::Equal, 1)
        } else {
            return Err(format!("expected a matcher operator after {name:?}"));
        };
        rest = rest[len..].trim_start();
        let value_text = rest.strip_prefix('"').ok_or_else(|| format!("expected a quoted value for {name:?}"))?;
        let mut value = String::new();
        let mut chars = value_text.char_indices();
        let mut end = None;
        while let Some((offset, c)) = chars.next() {
            match c {
                '"' => {
                    end = Some(offset);
                    break;
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => break,
                },
                other => value.push(other),
            }
        }
        let end = end.ok_or_else(|| format!("unterminated value for {name:?}"))?;
        matchers.push(Matcher::new(op, name, value).map_err(|e| e.to_string())?);
        rest = value_text[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(matchers)
}

#[derive(Deserialize)]
pub struct MetadataQuery {
    match_target: Option<String>,
    metric: Option<String>,
    limit: Option<String>,
}

pub async fn targets_metadata(
    State(state): State<AppState>,
    Query(query): Query<MetadataQuery>,
) -> Result<Response, PrometheusError> {
    let matchers = match &query.match_target {
        Some(selector) => parse_selector(selector)
            .map_err(|e| ApiError::bad_data(format!("invalid parameter \"match_target\": {e}")))?,
        None => Vec::new(),
    };
    let limit = match &query.limit {
        Some(text) => Some(
            text.parse::<usize>().map_err(|_| ApiError::bad_data(format!("invalid parameter \"limit\": {text:?}")))?,
        ),
        None => None,
    };
    let scrape = state.scrape().ok_or_else(|| ApiError::unavailable("storage is not ready yet"))?;
    let mut out = Vec::new();
    for status in scrape.manager.active_targets() {
        let labels = tripod_storage::labels::Labels::from_pairs(status.target.labels.iter()).unwrap_or_default();
        if !matches_all(&labels, &matchers) {
            continue;
        }
        for (metric, metadata) in &status.metadata {
            if query.metric.as_ref().is_some_and(|wanted| wanted != metric) {
                continue;
            }
            out.push(json!({
                "target": labels_json(&status.target.labels),
                "metric": metric,
                "type": metadata.metric_type.as_str(),
                "help": metadata.help,
                "unit": metadata.unit,
            }));
        }
    }
    if let Some(limit) = limit {
        out.truncate(limit);
    }
    Ok(Json(json!({ "status": "success", "data": out })).into_response())
}

pub async fn reload(State(state): State<AppState>) -> Response {
    match state.scrape().map(|handle| handle.reload()) {
        Some(Ok(())) => (StatusCode::OK, "").into_response(),
        Some(Err(error)) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("failed to reload config: {error}\n")).into_response()
        }
        None => (StatusCode::SERVICE_UNAVAILABLE, "storage is not ready yet\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn selectors_parse() {
        let matchers = parse_selector(r#"{job="node", instance=~"a.*",x!="y\"z"}"#).unwrap();
        assert_eq!(matchers.len(), 3);
        assert_eq!(matchers[2].value(), "y\"z");
        assert!(parse_selector("job=\"x\"").is_err());
        assert!(parse_selector("{job=x}").is_err());
    }
}
