//! OTLP metrics to Prometheus series, translated as Prometheus 3 does by default:
//!
//! - metric names: characters outside `[a-zA-Z0-9_:]` become `_`, the unit is appended as a
//!   word (`s` → `_seconds`, `By` → `_bytes`, `By/s` → `_bytes_per_second`, `1` on a gauge →
//!   `_ratio`, `{annotations}` dropped), and monotonic sums get `_total`;
//! - attribute keys become label names the same way (`key_` before a leading digit);
//! - `service.namespace`/`service.name` become `job`, `service.instance.id` becomes
//!   `instance`; the other resource attributes go to a `target_info` series;
//! - gauges and non-monotonic sums are gauges, monotonic sums counters; delta temporality is
//!   accumulated into cumulative values; explicit-bucket histograms become `_bucket{le}`,
//!   `_sum` and `_count`; summaries `{quantile}`, `_sum` and `_count`; exemplars are kept
//!   (on the bucket that holds their value), with `trace_id` and `span_id` labels;
//! - a data point flagged "no recorded value" becomes a staleness marker.
//!
//! Exponential histograms (native histograms in Prometheus) are counted as rejected points.

use crate::encoding::hex;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar as OtlpExemplar, exemplar, metric, number_data_point,
};
use tripod_storage::labels::{Label, Labels};
use tripod_storage::metrics::{
    AppendCounts, Exemplar, MetricMetadata, MetricType, MetricsAppender, MetricsError, MetricsStore, STALE_NAN, Sample,
    SeriesKey, SeriesSamples,
};

/// Series built from a request, before they are appended.
#[derive(Debug, Default)]
pub struct Translated {
    pub series: BTreeMap<Labels, (Vec<Sample>, Vec<Exemplar>)>,
    pub metadata: Vec<(String, MetricMetadata)>,
    /// Data points that could not be translated (exponential histograms, unknown kinds).
    pub rejected_points: u64,
    /// Why, for the partial-success message.
    pub rejection_reasons: Vec<String>,
}

/// What an OTLP export stored and refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtlpOutcome {
    pub counts: AppendCounts,
    pub rejected_points: u64,
    pub message: String,
}

/// How OTLP metric and attribute names become Prometheus names (Prometheus 3's
/// `otlp.translation_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TranslationStrategy {
    /// `http.server.duration` → `http_server_duration_seconds`: characters outside
    /// `[a-zA-Z0-9_:]` become `_`, unit and type suffixes are added.
    #[default]
    UnderscoreEscapingWithSuffixes,
    /// `http.server.duration` → `http.server.duration_seconds`: names keep their UTF-8
    /// characters, unit and type suffixes are added.
    NoUtf8EscapingWithSuffixes,
    /// Names are kept exactly as sent.
    NoTranslation,
}

impl TranslationStrategy {
    pub fn parse(text: &str) -> Option<TranslationStrategy> {
        Some(match text {
            "UnderscoreEscapingWithSuffixes" => TranslationStrategy::UnderscoreEscapingWithSuffixes,
            "NoUTF8EscapingWithSuffixes" => TranslationStrategy::NoUtf8EscapingWithSuffixes,
            "NoTranslation" => TranslationStrategy::NoTranslation,
            _ => return None,
        })
    }
}

/// State kept across requests: running totals for delta temporality.
pub struct OtlpMetricsIngest {
    strategy: TranslationStrategy,
    /// Per series identity: the cumulative value so far (sums), or cumulative bucket counts,
    /// sum and count (histograms).
    totals: Mutex<HashMap<String, Vec<f64>>>,
}

const MAX_DELTA_SERIES: usize = 1 << 20;

impl Default for OtlpMetricsIngest {
    fn default() -> Self {
        OtlpMetricsIngest::new(TranslationStrategy::default())
    }
}

impl OtlpMetricsIngest {
    pub fn new(strategy: TranslationStrategy) -> OtlpMetricsIngest {
        OtlpMetricsIngest { strategy, totals: Mutex::new(HashMap::new()) }
    }

    fn metric_name(&self, name: &str, unit: &str, is_counter: bool, is_gauge: bool) -> String {
        match self.strategy {
            TranslationStrategy::UnderscoreEscapingWithSuffixes => prometheus_name(name, unit, is_counter, is_gauge),
            TranslationStrategy::NoUtf8EscapingWithSuffixes => {
                with_suffixes(name.to_string(), unit, is_counter, is_gauge)
            }
            TranslationStrategy::NoTranslation => name.to_string(),
        }
    }

    fn label_name(&self, key: &str) -> String {
        match self.strategy {
            TranslationStrategy::UnderscoreEscapingWithSuffixes => sanitize_label_name(key),
            _ => key.to_string(),
        }
    }
}

/// `http.server.request.duration` → `http_server_request_duration`.
pub fn sanitize_metric_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for word in name.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push('_');
        }
        out.push_str(word);
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// An attribute key as a label name: invalid characters become `_`, a leading digit gets
/// `key_`, a single leading `_` gets `key`.
pub fn sanitize_label_name(key: &str) -> String {
    let mut out: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    } else if out.starts_with('_') && !out.starts_with("__") {
        out.insert_str(0, "key");
    }
    out
}

fn unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        _ => return None,
    })
}

fn per_unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// The unit as Prometheus suffix words: `By/s` → `bytes_per_second`; `{requests}` → none.
pub fn unit_suffix(unit: &str) -> String {
    let without_annotations: String = {
        let mut out = String::new();
        let mut depth = 0;
        for c in unit.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth = (depth - 1).max(0),
                _ if depth == 0 => out.push(c),
                _ => {}
            }
        }
        out
    };
    let unit = without_annotations.trim();
    if unit.is_empty() || unit == "1" {
        return String::new();
    }
    let (main, per) = match unit.split_once('/') {
        Some((main, per)) => (main.trim(), Some(per.trim())),
        None => (unit, None),
    };
    let mut words = Vec::new();
    if !main.is_empty() {
        words.push(unit_word(main).map(str::to_string).unwrap_or_else(|| sanitize_metric_name(main)));
    }
    if let Some(per) = per.filter(|p| !p.is_empty()) {
        words.push(format!(
            "per_{}",
            per_unit_word(per).map(str::to_string).unwrap_or_else(|| sanitize_metric_name(per))
        ));
    }
    words.retain(|w| !w.is_empty());
    words.join("_")
}

/// The Prometheus name of an OTLP metric.
pub fn prometheus_name(name: &str, unit: &str, is_counter: bool, is_gauge: bool) -> String {
    with_suffixes(sanitize_metric_name(name), unit, is_counter, is_gauge)
}

/// Adds the unit and type suffixes Prometheus adds to an OTLP metric name.
fn with_suffixes(mut out: String, unit: &str, is_counter: bool, is_gauge: bool) -> String {
    let suffix = unit_suffix(unit);
    if !suffix.is_empty() && !out.ends_with(&format!("_{suffix}")) && out != suffix {
        if out.ends_with("_total") && is_counter {
            // Keep `_total` last.
            out.truncate(out.len() - "_total".len());
        }
        out.push('_');
        out.push_str(&suffix);
    }
    if is_gauge && unit.trim() == "1" && !out.ends_with("_ratio") {
        out.push_str("_ratio");
    }
    if is_counter && !out.ends_with("_total") {
        out.push_str("_total");
    }
    out
}

fn value_text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => format_float(*d),
        Some(any_value::Value::BytesValue(b)) => b.iter().fold(String::new(), |mut s, byte| {
            let _ = write!(s, "{byte:02x}");
            s
        }),
        Some(any_value::Value::ArrayValue(array)) => {
            let parts: Vec<String> =
                array.values.iter().map(|v| serde_json::to_string(&value_text(v)).unwrap_or_default()).collect();
            format!("[{}]", parts.join(","))
        }
        Some(any_value::Value::KvlistValue(list)) => {
            let parts: Vec<String> = list
                .values
                .iter()
                .map(|kv| {
                    let value = kv.value.as_ref().map(value_text).unwrap_or_default();
                    format!(
                        "{}:{}",
                        serde_json::to_string(&kv.key).unwrap_or_default(),
                        serde_json::to_string(&value).unwrap_or_default()
                    )
                })
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        // An index into a profile's string table: not meaningful outside profiles.
        Some(any_value::Value::StringValueStrindex(_)) | None => String::new(),
    }
}

/// Floats as Prometheus prints them in labels (`le="0.005"`, `le="+Inf"`).
pub fn format_float(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value == f64::INFINITY {
        "+Inf".into()
    } else if value == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{value}")
    }
}

fn attribute_pairs(attributes: &[KeyValue], name_of: &dyn Fn(&str) -> String) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(attributes.len());
    for kv in attributes {
        let name = name_of(&kv.key);
        let value = kv.value.as_ref().map(value_text).unwrap_or_default();
        // Two keys that sanitize alike are joined, as Prometheus does.
        match pairs.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) => {
                existing.push(';');
                existing.push_str(&value);
            }
            None => pairs.push((name, value)),
        }
    }
    pairs
}

fn labels_from(pairs: impl IntoIterator<Item = (String, String)>) -> Labels {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in pairs {
        map.insert(name, value);
    }
    let labels: Vec<Label> = map
        .into_iter()
        .filter(|(name, value)| !name.is_empty() && !value.is_empty())
        .map(|(name, value)| Label { name: name.into(), value: value.into() })
        .collect();
    // Names are unique (a map's keys) and non-empty (filtered).
    Labels::from_labels(labels).unwrap_or_default()
}

fn to_ms(time_unix_nano: u64) -> i64 {
    (time_unix_nano / 1_000_000) as i64
}

fn exemplar_of(exemplar: &OtlpExemplar) -> Exemplar {
    let mut pairs = attribute_pairs(&exemplar.filtered_attributes, &sanitize_label_name);
    if !exemplar.trace_id.is_empty() {
        pairs.push(("trace_id".into(), hex(&exemplar.trace_id)));
    }
    if !exemplar.span_id.is_empty() {
        pairs.push(("span_id".into(), hex(&exemplar.span_id)));
    }
    let value = match exemplar.value {
        Some(exemplar::Value::AsDouble(v)) => v,
        Some(exemplar::Value::AsInt(v)) => v as f64,
        None => 0.0,
    };
    Exemplar { labels: labels_from(pairs), value, t_ms: to_ms(exemplar.time_unix_nano) }
}

const NO_RECORDED_VALUE: u32 = 1;

impl OtlpMetricsIngest {
    /// Translates a request into series, without storing anything.
    pub fn translate(&self, request: &ExportMetricsServiceRequest) -> Translated {
        let mut out = Translated::default();
        let mut totals = self.totals.lock().unwrap_or_else(|poison| poison.into_inner());
        if totals.len() > MAX_DELTA_SERIES {
            totals.clear();
        }
        for resource_metrics in &request.resource_metrics {
            let resource_attributes =
                resource_metrics.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[]);
            let find = |key: &str| {
                resource_attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).map(value_text)
            };
            let mut identity: Vec<(String, String)> = Vec::new();
            let job = match (find("service.namespace"), find("service.name")) {
                (Some(namespace), Some(name)) if !namespace.is_empty() => Some(format!("{namespace}/{name}")),
                (_, name) => name,
            };
            if let Some(job) = job {
                identity.push(("job".into(), job));
            }
            if let Some(instance) = find("service.instance.id") {
                identity.push(("instance".into(), instance));
            }
            let info_attributes: Vec<KeyValue> = resource_attributes
                .iter()
                .filter(|kv| !matches!(kv.key.as_str(), "service.name" | "service.namespace" | "service.instance.id"))
                .cloned()
                .collect();
            let mut newest_ms = i64::MIN;
            for scope_metrics in &resource_metrics.scope_metrics {
                for metric in &scope_metrics.metrics {
                    let newest = self.translate_metric(metric, &identity, &mut totals, &mut out);
                    newest_ms = newest_ms.max(newest);
                }
            }
            if !info_attributes.is_empty() && newest_ms != i64::MIN {
                let mut pairs = identity.clone();
                pairs.extend(attribute_pairs(&info_attributes, &|key| self.label_name(key)));
                pairs.push(("__name__".into(), "target_info".into()));
                let entry = out.series.entry(labels_from(pairs)).or_default();
                entry.0.push(Sample { t_ms: newest_ms, value: 1.0 });
                out.metadata.push((
                    "target_info".into(),
                    MetricMetadata {
                        metric_type: MetricType::Gauge,
                        help: "Target metadata".into(),
                        unit: String::new(),
                    },
                ));
            }
        }
        out
    }

    /// Adds one metric's series; returns the newest timestamp seen (ms).
    fn translate_metric(
        &self,
        metric: &opentelemetry_proto::tonic::metrics::v1::Metric,
        identity: &[(String, String)],
        totals: &mut HashMap<String, Vec<f64>>,
        out: &mut Translated,
    ) -> i64 {
        let mut newest = i64::MIN;
        let unit_text = unit_suffix(&metric.unit);
        let mut push = |out: &mut Translated,
                        name: &str,
                        extra: &[(String, String)],
                        attrs: &[KeyValue],
                        t_ms: i64,
                        value: f64,
                        exemplars: Vec<Exemplar>| {
            let mut pairs: Vec<(String, String)> = identity.to_vec();
            pairs.extend(attribute_pairs(attrs, &|key| self.label_name(key)));
            pairs.extend(extra.iter().cloned());
            pairs.push(("__name__".into(), name.to_string()));
            let entry = out.series.entry(labels_from(pairs)).or_default();
            entry.0.push(Sample { t_ms, value });
            entry.1.extend(exemplars);
            newest = newest.max(t_ms);
        };
        let metadata = |metric_type: MetricType, name: &str| {
            (
                name.to_string(),
                MetricMetadata { metric_type, help: metric.description.clone(), unit: unit_text.clone() },
            )
        };
        match &metric.data {
            Some(metric::Data::Gauge(gauge)) => {
                let name = self.metric_name(&metric.name, &metric.unit, false, true);
                out.metadata.push(metadata(MetricType::Gauge, &name));
                for point in &gauge.data_points {
                    let value = number_value(point.value.as_ref(), point.flags);
                    let exemplars = point.exemplars.iter().map(exemplar_of).collect();
                    push(out, &name, &[], &point.attributes, to_ms(point.time_unix_nano), value, exemplars);
                }
            }
            Some(metric::Data::Sum(sum)) => {
                let counter = sum.is_monotonic;
                let name = self.metric_name(&metric.name, &metric.unit, counter, !counter);
                out.metadata.push(metadata(if counter { MetricType::Counter } else { MetricType::Gauge }, &name));
                let delta = sum.aggregation_temporality == AggregationTemporality::Delta as i32;
                for point in &sum.data_points {
                    let mut value = number_value(point.value.as_ref(), point.flags);
                    if delta && !value.is_nan() {
                        let key = series_key(&name, identity, &point.attributes);
                        let total = totals.entry(key).or_insert_with(|| vec![0.0]);
                        total[0] += value;
                        value = total[0];
                    }
                    let exemplars = point.exemplars.iter().map(exemplar_of).collect();
                    push(out, &name, &[], &point.attributes, to_ms(point.time_unix_nano), value, exemplars);
                }
            }
            Some(metric::Data::Histogram(histogram)) => {
                let base = self.metric_name(&metric.name, &metric.unit, false, false);
                out.metadata.push(metadata(MetricType::Histogram, &base));
                let delta = histogram.aggregation_temporality == AggregationTemporality::Delta as i32;
                for point in &histogram.data_points {
                    let t_ms = to_ms(point.time_unix_nano);
                    let stale = point.flags & NO_RECORDED_VALUE != 0;
                    // Cumulative counts per bucket, then sum and count.
                    let mut cumulative = Vec::with_capacity(point.bucket_counts.len());
                    let mut running = 0u64;
                    for count in &point.bucket_counts {
                        running = running.saturating_add(*count);
                        cumulative.push(running as f64);
                    }
                    let mut values: Vec<f64> = cumulative;
                    values.push(point.sum.unwrap_or(0.0));
                    values.push(point.count as f64);
                    if delta && !stale {
                        let key = series_key(&base, identity, &point.attributes);
                        let total = totals.entry(key).or_insert_with(|| vec![0.0; values.len()]);
                        if total.len() != values.len() {
                            *total = vec![0.0; values.len()];
                        }
                        for (t, v) in total.iter_mut().zip(values.iter_mut()) {
                            *t += *v;
                            *v = *t;
                        }
                    }
                    let value_of = |v: f64| if stale { STALE_NAN } else { v };
                    let bucket_count = point.bucket_counts.len();
                    let mut exemplars: Vec<Vec<Exemplar>> = vec![Vec::new(); bucket_count.max(1)];
                    for exemplar in &point.exemplars {
                        let converted = exemplar_of(exemplar);
                        let bucket = point
                            .explicit_bounds
                            .iter()
                            .position(|bound| converted.value <= *bound)
                            .unwrap_or(bucket_count.saturating_sub(1));
                        if let Some(slot) = exemplars.get_mut(bucket) {
                            slot.push(converted);
                        }
                    }
                    for index in 0..bucket_count {
                        let le = point.explicit_bounds.get(index).copied().unwrap_or(f64::INFINITY);
                        let value = if index + 1 == bucket_count { values[bucket_count + 1] } else { values[index] };
                        let extra = [("le".to_string(), format_float(le))];
                        push(
                            out,
                            &format!("{base}_bucket"),
                            &extra,
                            &point.attributes,
                            t_ms,
                            value_of(value),
                            std::mem::take(&mut exemplars[index]),
                        );
                    }
                    if bucket_count == 0 {
                        let extra = [("le".to_string(), "+Inf".to_string())];
                        push(
                            out,
                            &format!("{base}_bucket"),
                            &extra,
                            &point.attributes,
                            t_ms,
                            value_of(values[1]),
                            Vec::new(),
                        );
                    }
                    if point.sum.is_some() {
                        push(
                            out,
                            &format!("{base}_sum"),
                            &[],
                            &point.attributes,
                            t_ms,
                            value_of(values[values.len() - 2]),
                            Vec::new(),
                        );
                    }
                    push(
                        out,
                        &format!("{base}_count"),
                        &[],
                        &point.attributes,
                        t_ms,
                        value_of(values[values.len() - 1]),
                        Vec::new(),
                    );
                }
            }
            Some(metric::Data::Summary(summary)) => {
                let base = self.metric_name(&metric.name, &metric.unit, false, false);
                out.metadata.push(metadata(MetricType::Summary, &base));
                for point in &summary.data_points {
                    let t_ms = to_ms(point.time_unix_nano);
                    let stale = point.flags & NO_RECORDED_VALUE != 0;
                    let value_of = |v: f64| if stale { STALE_NAN } else { v };
                    for quantile in &point.quantile_values {
                        let extra = [("quantile".to_string(), format_float(quantile.quantile))];
                        push(out, &base, &extra, &point.attributes, t_ms, value_of(quantile.value), Vec::new());
                    }
                    push(out, &format!("{base}_sum"), &[], &point.attributes, t_ms, value_of(point.sum), Vec::new());
                    push(
                        out,
                        &format!("{base}_count"),
                        &[],
                        &point.attributes,
                        t_ms,
                        value_of(point.count as f64),
                        Vec::new(),
                    );
                }
            }
            Some(metric::Data::ExponentialHistogram(histogram)) => {
                out.rejected_points += histogram.data_points.len() as u64;
                out.rejection_reasons.push(format!("{}: exponential histograms are not supported yet", metric.name));
            }
            None => {}
        }
        newest
    }

    /// Translates and stores a request.
    pub fn write(
        &self,
        store: &MetricsStore,
        request: &ExportMetricsServiceRequest,
    ) -> Result<OtlpOutcome, MetricsError> {
        let translated = self.translate(request);
        let entries: Vec<(Labels, Vec<Sample>, Vec<Exemplar>)> = translated
            .series
            .into_iter()
            .map(|(labels, (mut samples, mut exemplars))| {
                samples.sort_by_key(|s| s.t_ms);
                exemplars.sort_by_key(|e| e.t_ms);
                (labels, samples, exemplars)
            })
            .collect();
        let batch: Vec<SeriesSamples> = entries
            .iter()
            .map(|(labels, samples, exemplars)| SeriesSamples { key: SeriesKey::Labels(labels), samples, exemplars })
            .collect();
        let result = store.append(&batch)?;
        let mut seen = std::collections::HashSet::new();
        for (name, metadata) in translated.metadata {
            if seen.insert(name.clone()) {
                store.set_metadata(&name, metadata)?;
            }
        }
        let counts = result.counts;
        let refused = counts.rejected();
        let mut reasons = translated.rejection_reasons;
        for (count, reason) in [
            (counts.rejected_out_of_order, "out of order"),
            (counts.rejected_too_old, "too old"),
            (counts.rejected_duplicate_timestamp, "duplicate timestamp with another value"),
        ] {
            if count > 0 {
                reasons.push(format!("{count} samples {reason}"));
            }
        }
        Ok(OtlpOutcome { counts, rejected_points: translated.rejected_points + refused, message: reasons.join("; ") })
    }
}

fn number_value(value: Option<&number_data_point::Value>, flags: u32) -> f64 {
    if flags & NO_RECORDED_VALUE != 0 {
        return STALE_NAN;
    }
    match value {
        Some(number_data_point::Value::AsDouble(v)) => *v,
        Some(number_data_point::Value::AsInt(v)) => *v as f64,
        None => 0.0,
    }
}

fn series_key(name: &str, identity: &[(String, String)], attributes: &[KeyValue]) -> String {
    let mut pairs: Vec<(String, String)> = identity.to_vec();
    pairs.extend(attribute_pairs(attributes, &|key| key.to_string()));
    pairs.sort();
    let mut key = name.to_string();
    for (n, v) in pairs {
        key.push('\u{ff}');
        key.push_str(&n);
        key.push('=');
        key.push_str(&v);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translation_strategies() {
        let utf8 = OtlpMetricsIngest::new(TranslationStrategy::NoUtf8EscapingWithSuffixes);
        assert_eq!(utf8.metric_name("http.server.duration", "s", false, false), "http.server.duration_seconds");
        assert_eq!(utf8.label_name("http.route"), "http.route");
        let none = OtlpMetricsIngest::new(TranslationStrategy::NoTranslation);
        assert_eq!(none.metric_name("orders.placed", "{order}", true, false), "orders.placed");
        assert_eq!(TranslationStrategy::parse("NoTranslation"), Some(TranslationStrategy::NoTranslation));
        assert_eq!(TranslationStrategy::parse("nope"), None);
    }

    #[test]
    fn names_follow_prometheus_3() {
        let cases = [
            ("http.server.request.duration", "s", false, false, "http_server_request_duration_seconds"),
            ("http.server.requests", "{request}", true, false, "http_server_requests_total"),
            ("process.memory.usage", "By", false, true, "process_memory_usage_bytes"),
            ("network.io", "By/s", true, false, "network_io_bytes_per_second_total"),
            ("cpu.utilization", "1", false, true, "cpu_utilization_ratio"),
            ("requests_total", "", true, false, "requests_total"),
            ("latency_seconds", "s", false, false, "latency_seconds"),
            ("2xx.count", "", true, false, "_2xx_count_total"),
            ("queue..depth", "items", false, true, "queue_depth_items"),
        ];
        for (name, unit, counter, gauge, expected) in cases {
            assert_eq!(prometheus_name(name, unit, counter, gauge), expected, "{name} {unit}");
        }
        assert_eq!(sanitize_label_name("http.method"), "http_method");
        assert_eq!(sanitize_label_name("2fa"), "key_2fa");
        assert_eq!(sanitize_label_name("_private"), "key_private");
        assert_eq!(sanitize_label_name("__reserved"), "__reserved");
        assert_eq!(format_float(0.005), "0.005");
        assert_eq!(format_float(10.0), "10");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
    }
}
