//! OTLP logs to Loki streams, mapped as Loki 3 maps them, into the protocol-neutral
//! [`PushBatch`] that the logs write path checks and stores.
//!
//! - Stream labels: the resource attributes Loki indexes by default (`service.name`,
//!   `service.namespace`, `service.instance.id`, `deployment.environment(.name)`,
//!   `cloud.region`, `cloud.availability_zone`, `container.name`, `k8s.*` names of the
//!   workload), their names with every character outside `[a-zA-Z0-9_]` turned into `_`;
//!   `service_name="unknown_service"` when the resource has no `service.name`.
//! - Structured metadata of every entry: the other resource attributes, the scope's name,
//!   version and attributes, the record's attributes (maps flattened as `parent_child`),
//!   `trace_id` and `span_id` (hex), `severity_text`, `severity_number`, `flags`,
//!   `observed_timestamp`, `event_name`, `dropped_attributes_count`, where set.
//! - The line: the body; a string body as is, any other body as JSON.
//! - The timestamp: `time_unix_nano`, else `observed_time_unix_nano`, else the receive time.

use crate::encoding::{base64, hex};
use std::borrow::Cow;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

use crate::ingest::logs::{Pair, PushBatch, PushEntry, PushStream, StreamLabels};
use crate::ingest::otlp_metrics::sanitize_label_name;

/// Resource attributes that become stream labels, as Loki 3 chooses them by default.
pub const DEFAULT_RESOURCE_ATTRIBUTES_AS_LABELS: &[&str] = &[
    "cloud.availability_zone",
    "cloud.region",
    "container.name",
    "deployment.environment",
    "deployment.environment.name",
    "k8s.cluster.name",
    "k8s.container.name",
    "k8s.cronjob.name",
    "k8s.daemonset.name",
    "k8s.deployment.name",
    "k8s.job.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.replicaset.name",
    "k8s.statefulset.name",
    "service.instance.id",
    "service.name",
    "service.namespace",
];

/// The `service_name` of a resource without `service.name`.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// An attribute value as a label or metadata value: strings as is, numbers and booleans as
/// written, bytes as base64, arrays and maps as JSON.
pub fn value_text(value: &AnyValue) -> Cow<'_, str> {
    match &value.value {
        Some(any_value::Value::StringValue(text)) => Cow::Borrowed(text),
        Some(any_value::Value::BoolValue(b)) => Cow::Owned(b.to_string()),
        Some(any_value::Value::IntValue(i)) => Cow::Owned(i.to_string()),
        Some(any_value::Value::DoubleValue(d)) => Cow::Owned(format_double(*d)),
        Some(any_value::Value::BytesValue(bytes)) => Cow::Owned(base64(bytes)),
        Some(any_value::Value::ArrayValue(_)) | Some(any_value::Value::KvlistValue(_)) => {
            Cow::Owned(json_of(value).to_string())
        }
        Some(any_value::Value::StringValueStrindex(_)) | None => Cow::Borrowed(""),
    }
}

fn format_double(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf".to_string() } else { "-Inf".to_string() }
    } else {
        value.to_string()
    }
}

/// An attribute value as JSON, for bodies and nested values.
pub fn json_of(value: &AnyValue) -> serde_json::Value {
    use serde_json::Value;
    match &value.value {
        Some(any_value::Value::StringValue(text)) => Value::String(text.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or_else(|| Value::String(format_double(*d)), Value::Number)
        }
        Some(any_value::Value::BytesValue(bytes)) => Value::String(base64(bytes)),
        Some(any_value::Value::ArrayValue(array)) => Value::Array(array.values.iter().map(json_of).collect()),
        Some(any_value::Value::KvlistValue(list)) => Value::Object(
            list.values.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, json_of))).collect(),
        ),
        Some(any_value::Value::StringValueStrindex(_)) | None => Value::Null,
    }
}

/// Attributes as metadata pairs: names sanitized, maps flattened into `parent_child` names,
/// empty values left out.
fn push_attributes<'a>(prefix: &str, attributes: &'a [KeyValue], out: &mut Vec<Pair<'a>>) {
    for attribute in attributes {
        let name = if prefix.is_empty() {
            sanitize_label_name(&attribute.key)
        } else {
            format!("{prefix}_{}", sanitize_label_name(&attribute.key))
        };
        let Some(value) = &attribute.value else { continue };
        if let Some(any_value::Value::KvlistValue(list)) = &value.value {
            push_attributes(&name, &list.values, out);
            continue;
        }
        let text = value_text(value);
        if !text.is_empty() {
            out.push((Cow::Owned(name), text));
        }
    }
}

fn owned(name: &str, value: String) -> Pair<'static> {
    (Cow::Owned(name.to_string()), Cow::Owned(value))
}

/// Translates an export request into a push batch: one stream per resource, entries in request
/// order. Strings borrow from the request where they are used as sent. `now_ns` stamps
/// records that carry no time.
pub fn translate(request: &ExportLogsServiceRequest, now_ns: i64) -> PushBatch<'_> {
    let mut batch = PushBatch { streams: Vec::with_capacity(request.resource_logs.len()) };
    for resource_logs in &request.resource_logs {
        let attributes: &[KeyValue] = resource_logs.resource.as_ref().map_or(&[], |r| &r.attributes);
        let mut labels: Vec<Pair<'_>> = Vec::new();
        let mut resource_metadata: Vec<Pair<'_>> = Vec::new();
        for attribute in attributes {
            if DEFAULT_RESOURCE_ATTRIBUTES_AS_LABELS.contains(&attribute.key.as_str()) {
                if let Some(value) = &attribute.value {
                    let text = value_text(value);
                    if !text.is_empty() {
                        labels.push((Cow::Owned(sanitize_label_name(&attribute.key)), text));
                    }
                }
            } else {
                push_attributes("", std::slice::from_ref(attribute), &mut resource_metadata);
            }
        }
        if !labels.iter().any(|(name, _)| name == "service_name") {
            labels.push((Cow::Borrowed("service_name"), Cow::Borrowed(UNKNOWN_SERVICE)));
        }
        // A resource that repeats a key (invalid OTLP, but it happens) keeps the first value,
        // rather than having all its records refused for a duplicate label.
        let mut seen: Vec<&str> = Vec::with_capacity(labels.len());
        let mut unique = Vec::with_capacity(labels.len());
        for (name, value) in &labels {
            if !seen.contains(&name.as_ref()) {
                seen.push(name.as_ref());
                unique.push((name.clone(), value.clone()));
            }
        }
        let labels = unique;

        let mut entries = Vec::new();
        for scope_logs in &resource_logs.scope_logs {
            let mut scope_metadata: Vec<Pair<'_>> = Vec::new();
            if let Some(scope) = &scope_logs.scope {
                if !scope.name.is_empty() {
                    scope_metadata.push((Cow::Borrowed("scope_name"), Cow::Borrowed(scope.name.as_str())));
                }
                if !scope.version.is_empty() {
                    scope_metadata.push((Cow::Borrowed("scope_version"), Cow::Borrowed(scope.version.as_str())));
                }
                if scope.dropped_attributes_count > 0 {
                    scope_metadata
                        .push(owned("scope_dropped_attributes_count", scope.dropped_attributes_count.to_string()));
                }
                push_attributes("", &scope.attributes, &mut scope_metadata);
            }
            entries.reserve(scope_logs.log_records.len());
            for record in &scope_logs.log_records {
                let mut metadata: Vec<Pair<'_>> =
                    Vec::with_capacity(resource_metadata.len() + scope_metadata.len() + record.attributes.len() + 4);
                metadata.extend(resource_metadata.iter().cloned());
                metadata.extend(scope_metadata.iter().cloned());
                push_attributes("", &record.attributes, &mut metadata);
                if !record.trace_id.is_empty() {
                    metadata.push(owned("trace_id", hex(&record.trace_id)));
                }
                if !record.span_id.is_empty() {
                    metadata.push(owned("span_id", hex(&record.span_id)));
                }
                if !record.severity_text.is_empty() {
                    metadata.push((Cow::Borrowed("severity_text"), Cow::Borrowed(record.severity_text.as_str())));
                }
                if record.severity_number != 0 {
                    metadata.push(owned("severity_number", record.severity_number.to_string()));
                }
                if record.flags != 0 {
                    metadata.push(owned("flags", record.flags.to_string()));
                }
                if record.observed_time_unix_nano != 0 {
                    metadata.push(owned("observed_timestamp", record.observed_time_unix_nano.to_string()));
                }
                if !record.event_name.is_empty() {
                    metadata.push((Cow::Borrowed("event_name"), Cow::Borrowed(record.event_name.as_str())));
                }
                if record.dropped_attributes_count > 0 {
                    metadata.push(owned("dropped_attributes_count", record.dropped_attributes_count.to_string()));
                }
                let line = match &record.body {
                    Some(AnyValue { value: Some(any_value::Value::StringValue(text)) }) => Cow::Borrowed(text.as_str()),
                    Some(body) if body.value.is_some() => Cow::Owned(json_of(body).to_string()),
                    _ => Cow::Borrowed(""),
                };
                let t_ns = [record.time_unix_nano, record.observed_time_unix_nano]
                    .into_iter()
                    .find(|t| *t != 0)
                    .map_or(now_ns, |t| i64::try_from(t).unwrap_or(i64::MAX));
                entries.push(PushEntry { t_ns, line, metadata });
            }
        }
        batch.streams.push(PushStream { labels: StreamLabels::Pairs(labels), entries });
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, InstrumentationScope, KeyValueList};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn string(text: &str) -> AnyValue {
        AnyValue { value: Some(any_value::Value::StringValue(text.to_string())) }
    }

    fn attribute(key: &str, value: AnyValue) -> KeyValue {
        KeyValue { key: key.to_string(), value: Some(value), ..Default::default() }
    }

    fn pairs(pairs: &[Pair<'_>]) -> Vec<String> {
        pairs.iter().map(|(n, v)| format!("{n}={v}")).collect()
    }

    fn request(resource: Vec<KeyValue>, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource { attributes: resource, ..Default::default() }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "checkout.logger".into(),
                        version: "1.2".into(),
                        attributes: vec![attribute("scope.attr", string("s"))],
                        dropped_attributes_count: 0,
                    }),
                    log_records: records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    #[test]
    fn resources_become_labels_and_the_rest_metadata() {
        let resource = vec![
            attribute("service.name", string("checkout")),
            attribute("service.namespace", string("shop")),
            attribute("k8s.pod.name", string("checkout-1")),
            attribute("deployment.environment", string("prod")),
            attribute("host.name", string("node-7")),
            attribute("process.pid", AnyValue { value: Some(any_value::Value::IntValue(42)) }),
        ];
        let record = LogRecord {
            time_unix_nano: 1_700_000_000_000_000_001,
            observed_time_unix_nano: 1_700_000_000_000_000_002,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(string("order placed")),
            attributes: vec![
                attribute("http.method", string("POST")),
                attribute(
                    "user",
                    AnyValue {
                        value: Some(any_value::Value::KvlistValue(KeyValueList {
                            values: vec![
                                attribute("id", AnyValue { value: Some(any_value::Value::IntValue(7)) }),
                                attribute("vip", AnyValue { value: Some(any_value::Value::BoolValue(true)) }),
                            ],
                        })),
                    },
                ),
                attribute(
                    "tags",
                    AnyValue {
                        value: Some(any_value::Value::ArrayValue(ArrayValue {
                            values: vec![string("a"), AnyValue { value: Some(any_value::Value::DoubleValue(1.5)) }],
                        })),
                    },
                ),
            ],
            trace_id: vec![0xab; 16],
            span_id: vec![0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08],
            flags: 1,
            ..Default::default()
        };
        let request = request(resource, vec![record]);
        let batch = translate(&request, 5);
        assert_eq!(batch.streams.len(), 1);
        let StreamLabels::Pairs(labels) = &batch.streams[0].labels else { panic!("pairs expected") };
        assert_eq!(
            pairs(labels),
            [
                "service_name=checkout",
                "service_namespace=shop",
                "k8s_pod_name=checkout-1",
                "deployment_environment=prod"
            ]
        );
        let entry = &batch.streams[0].entries[0];
        assert_eq!(entry.t_ns, 1_700_000_000_000_000_001);
        assert_eq!(entry.line, "order placed");
        assert!(matches!(entry.line, Cow::Borrowed(_)));
        assert_eq!(
            pairs(&entry.metadata),
            [
                "host_name=node-7",
                "process_pid=42",
                "scope_name=checkout.logger",
                "scope_version=1.2",
                "scope_attr=s",
                "http_method=POST",
                "user_id=7",
                "user_vip=true",
                "tags=[\"a\",1.5]",
                "trace_id=abababababababababababababababab",
                "span_id=0102030405060708",
                "severity_text=INFO",
                "severity_number=9",
                "flags=1",
                "observed_timestamp=1700000000000000002",
            ]
        );
    }

    #[test]
    fn defaults_for_missing_service_time_and_body() {
        let records = vec![
            LogRecord { observed_time_unix_nano: 77, body: None, ..Default::default() },
            LogRecord {
                body: Some(AnyValue {
                    value: Some(any_value::Value::KvlistValue(KeyValueList {
                        values: vec![
                            attribute("msg", string("hi")),
                            attribute("n", AnyValue { value: Some(any_value::Value::IntValue(3)) }),
                        ],
                    })),
                }),
                ..Default::default()
            },
            LogRecord {
                body: Some(AnyValue { value: Some(any_value::Value::BytesValue(b"hello".to_vec())) }),
                ..Default::default()
            },
        ];
        let request = request(vec![attribute("deployment.environment.name", string("dev"))], records);
        let batch = translate(&request, 1_000);
        let StreamLabels::Pairs(labels) = &batch.streams[0].labels else { panic!("pairs expected") };
        assert_eq!(pairs(labels), ["deployment_environment_name=dev", "service_name=unknown_service"]);
        let entries = &batch.streams[0].entries;
        assert_eq!((entries[0].t_ns, entries[0].line.as_ref()), (77, ""));
        assert_eq!((entries[1].t_ns, entries[1].line.as_ref()), (1_000, r#"{"msg":"hi","n":3}"#));
        assert_eq!(entries[2].line, "\"aGVsbG8=\"");
    }
}
