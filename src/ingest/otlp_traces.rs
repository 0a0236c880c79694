//! OTLP traces into the traces store: the request is taken apart (its strings moved, not
//! copied) into the store's model with every field kept — IDs, parent, trace state, kind,
//! times, status, attributes of every value type, events, links, flags, dropped counts,
//! resource, scope and schema URLs — and appended as one batch.
//!
//! Each span is judged on its own: one whose trace ID is not 16 bytes or all zeros, whose span
//! ID is not 8 bytes or all zeros, whose parent span ID is neither empty nor 8 bytes, or whose
//! attribute values nest deeper than the store keeps, is refused and counted under its reason
//! while the rest of the batch is stored. A parent ID of eight zero bytes means no parent (some
//! converters write it for roots). A link whose IDs are not 16 and 8 bytes cannot be kept: it
//! is dropped and counted in the span's `dropped_links_count`, and the answer says so.
//! An attribute without a value is dropped and counted in its owner's dropped attributes
//! count; an empty value inside an array or map becomes the empty string.

use crate::encoding::hex;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use tripod_storage::traces::{
    AttrValue, Attributes, DEFAULT_TENANT, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanEvent, SpanId,
    SpanKind, SpanLink, SpanStatus, SpansRecord, StatusCode, TraceId, TracesAppendCounts, TracesAppender, TracesError,
};

use crate::ingest::logs::{TenantError, resolve_tenant};

/// Deepest nesting of arrays and maps in an attribute value that the store keeps.
pub const MAX_VALUE_DEPTH: u32 = 64;

/// The tenant an export writes to: the `X-Scope-OrgID` value when multi-tenancy is on, else
/// Tempo's single tenant whatever the header says.
pub fn resolve_traces_tenant(org_id: Option<&str>, auth_enabled: bool) -> Result<String, TenantError> {
    if !auth_enabled {
        return Ok(DEFAULT_TENANT.to_string());
    }
    resolve_tenant(org_id, true)
}

/// Why a span was refused; the names are the `reason` label of the discard counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    InvalidTraceId,
    InvalidSpanId,
    InvalidParentSpanId,
    /// Attribute values nested deeper than [`MAX_VALUE_DEPTH`].
    AttributesTooDeep,
    /// Refused by the store for a reason the translation did not foresee.
    Invalid,
}

impl RefusalReason {
    pub const ALL: [RefusalReason; 5] = [
        RefusalReason::InvalidTraceId,
        RefusalReason::InvalidSpanId,
        RefusalReason::InvalidParentSpanId,
        RefusalReason::AttributesTooDeep,
        RefusalReason::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::InvalidTraceId => "invalid_trace_id",
            RefusalReason::InvalidSpanId => "invalid_span_id",
            RefusalReason::InvalidParentSpanId => "invalid_parent_span_id",
            RefusalReason::AttributesTooDeep => "attributes_too_deep",
            RefusalReason::Invalid => "invalid",
        }
    }
}

/// Refused spans of one reason: how many, and the first one described.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refused {
    pub spans: u64,
    pub example: Option<String>,
}

/// A request in the store's model, with what could not be kept.
#[derive(Debug, Default)]
pub struct Translation {
    /// Resource groups holding the spans that can be stored (groups left empty are dropped).
    pub batch: Vec<ResourceSpans>,
    /// Every span of the request, kept or refused.
    pub received_spans: u64,
    /// Indexed by `RefusalReason as usize`.
    pub refused: [Refused; RefusalReason::ALL.len()],
    /// Links dropped for IDs of the wrong length, and the first one described.
    pub dropped_links: u64,
    pub dropped_link_example: Option<String>,
}

impl Translation {
    fn refuse(&mut self, reason: RefusalReason, describe: impl FnOnce() -> String) {
        let refused = &mut self.refused[reason as usize];
        refused.spans += 1;
        if refused.example.is_none() {
            refused.example = Some(describe());
        }
    }

    pub fn refused_spans(&self) -> u64 {
        self.refused.iter().map(|refused| refused.spans).sum()
    }
}

/// What is wrong with an ID that must be `N` bytes and not all zeros.
fn id_problem<const N: usize>(what: &str, bytes: &[u8]) -> Option<String> {
    if bytes.len() != N {
        return Some(format!("{what} is {} bytes, expected {N}", bytes.len()));
    }
    if bytes.iter().all(|byte| *byte == 0) {
        return Some(format!("{what} is all zeros"));
    }
    None
}

pub fn nanos(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// A value in the store's model; `None` when nested deeper than [`MAX_VALUE_DEPTH`]. An empty
/// value (no variant set) becomes the empty string.
fn value_of(value: Option<any_value::Value>, depth: u32) -> Option<AttrValue> {
    Some(match value {
        Some(any_value::Value::StringValue(text)) => AttrValue::String(text),
        Some(any_value::Value::BoolValue(b)) => AttrValue::Bool(b),
        Some(any_value::Value::IntValue(i)) => AttrValue::Int(i),
        Some(any_value::Value::DoubleValue(d)) => AttrValue::Double(d),
        Some(any_value::Value::BytesValue(bytes)) => AttrValue::Bytes(bytes),
        Some(any_value::Value::ArrayValue(array)) => {
            if depth >= MAX_VALUE_DEPTH {
                return None;
            }
            let mut values = Vec::with_capacity(array.values.len());
            for element in array.values {
                values.push(value_of(element.value, depth + 1)?);
            }
            AttrValue::Array(values)
        }
        Some(any_value::Value::KvlistValue(list)) => {
            if depth >= MAX_VALUE_DEPTH {
                return None;
            }
            let mut pairs = Vec::with_capacity(list.values.len());
            for pair in list.values {
                let value = pair.value.and_then(|value| value.value);
                pairs.push((pair.key, value_of(value, depth + 1)?));
            }
            AttrValue::KvList(pairs)
        }
        Some(any_value::Value::StringValueStrindex(_)) | None => AttrValue::String(String::new()),
    })
}

/// Attributes in the store's model, and how many were dropped for having no value; `None` when
/// a value nests too deep.
fn attributes_of(attributes: Vec<KeyValue>) -> Option<(Attributes, u32)> {
    let mut out = Vec::with_capacity(attributes.len());
    let mut dropped = 0u32;
    for KeyValue { key, value, .. } in attributes {
        match value.and_then(|AnyValue { value }| value) {
            Some(value) => out.push((key, value_of(Some(value), 0)?)),
            None => dropped = dropped.saturating_add(1),
        }
    }
    Some((out, dropped))
}

/// OTLP's span kind number in the store's model (an unknown number is unspecified).
pub fn kind_of(kind: i32) -> SpanKind {
    u8::try_from(kind).ok().and_then(SpanKind::from_u8).unwrap_or_default()
}

/// OTLP's status code number in the store's model (an unknown number is unset).
pub fn status_code_of(code: i32) -> StatusCode {
    u8::try_from(code).ok().and_then(StatusCode::from_u8).unwrap_or_default()
}

/// Converted attributes: `None` when a value nests deeper than [`MAX_VALUE_DEPTH`]; the count
/// includes the attributes dropped for having no value.
pub type Converted = Option<(Attributes, u32)>;

/// A link as sent, its attributes converted.
#[derive(Debug)]
pub struct LinkParts<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub trace_state: String,
    pub attributes: Converted,
    pub dropped_attributes_count: u32,
    pub flags: u32,
}

/// An event as sent, its attributes converted.
#[derive(Debug)]
pub struct EventParts {
    pub time_unix_nano: u64,
    pub name: String,
    pub attributes: Converted,
    pub dropped_attributes_count: u32,
}

/// A span as sent (IDs still raw bytes), its attributes converted: what both decoders (OTLP's
/// types, and the wire format read directly) hand to [`BatchBuilder::add_span`].
#[derive(Debug, Default)]
pub struct SpanParts<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub parent_span_id: &'a [u8],
    pub trace_state: String,
    pub name: String,
    pub kind: i32,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub attributes: Converted,
    pub dropped_attributes_count: u32,
    pub events: Vec<EventParts>,
    pub dropped_events_count: u32,
    pub links: Vec<LinkParts<'a>>,
    pub dropped_links_count: u32,
    pub status_message: String,
    pub status_code: i32,
    pub flags: u32,
}

/// Builds a [`Translation`] group by group and span by span, judging each span. Both decoders
/// drive it in the order of the request, so they refuse the same spans with the same messages.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    translation: Translation,
    /// The resource group being filled; `None` inside a resource refused for its attributes.
    resource: Option<ResourceSpans>,
    /// The scope group being filled; `None` inside a scope refused for its attributes.
    scope: Option<ScopeSpans>,
    /// Why spans of the current resource or scope are refused whatever they hold.
    refused_owner: Option<&'static str>,
}

impl BatchBuilder {
    /// Starts a resource group; `attributes` `None` refuses every span in it.
    pub fn start_resource(&mut self, attributes: Converted, dropped_attributes_count: u32, schema_url: String) {
        self.end_resource();
        match attributes {
            Some((attributes, dropped)) => {
                self.refused_owner = None;
                self.resource = Some(ResourceSpans {
                    resource: Resource {
                        attributes,
                        dropped_attributes_count: dropped_attributes_count.saturating_add(dropped),
                    },
                    schema_url,
                    scope_spans: Vec::new(),
                });
            }
            None => self.refused_owner = Some("resource "),
        }
    }

    /// Starts a scope group within the current resource; `attributes` `None` refuses every span
    /// in it.
    pub fn start_scope(
        &mut self,
        name: String,
        version: String,
        attributes: Converted,
        dropped_attributes_count: u32,
        schema_url: String,
    ) {
        self.end_scope();
        if self.resource.is_none() {
            return;
        }
        match attributes {
            Some((attributes, dropped)) => {
                self.refused_owner = None;
                self.scope = Some(ScopeSpans {
                    scope: Scope {
                        name,
                        version,
                        attributes,
                        dropped_attributes_count: dropped_attributes_count.saturating_add(dropped),
                    },
                    schema_url,
                    spans: Vec::new(),
                });
            }
            None => self.refused_owner = Some("scope "),
        }
    }

    fn end_scope(&mut self) {
        if let Some(scope) = self.scope.take()
            && !scope.spans.is_empty()
            && let Some(resource) = &mut self.resource
        {
            resource.scope_spans.push(scope);
        }
    }

    fn end_resource(&mut self) {
        self.end_scope();
        if let Some(resource) = self.resource.take()
            && !resource.scope_spans.is_empty()
        {
            self.translation.batch.push(resource);
        }
        self.refused_owner = None;
    }

    /// Judges one span of the current scope: stored, or refused under its reason.
    pub fn add_span(&mut self, parts: SpanParts<'_>) {
        self.translation.received_spans += 1;
        let translation = &mut self.translation;
        let described =
            |problem: &str| format!("{problem} (trace id {:?}, span id {:?})", hex(parts.trace_id), hex(parts.span_id));
        let Some(scope) = self.scope.as_mut() else {
            let owner = self.refused_owner.unwrap_or("");
            translation.refuse(RefusalReason::AttributesTooDeep, || {
                described(&format!("{owner}attribute values nest deeper than {MAX_VALUE_DEPTH} levels"))
            });
            return;
        };
        if let Some(problem) = id_problem::<16>("trace id", parts.trace_id) {
            translation.refuse(RefusalReason::InvalidTraceId, || described(&problem));
            return;
        }
        if let Some(problem) = id_problem::<8>("span id", parts.span_id) {
            translation.refuse(RefusalReason::InvalidSpanId, || described(&problem));
            return;
        }
        let parent_span_id: Option<SpanId> = match parts.parent_span_id.len() {
            0 => None,
            8 => SpanId::try_from(parts.parent_span_id).ok().filter(|id| *id != [0; 8]),
            length => {
                let problem = format!("parent span id is {length} bytes, expected 8 or none");
                translation.refuse(RefusalReason::InvalidParentSpanId, || described(&problem));
                return;
            }
        };
        // Links whose IDs cannot be kept are dropped, so their attributes do not count.
        let kept_link = |link: &LinkParts<'_>| link.trace_id.len() == 16 && link.span_id.len() == 8;
        let too_deep = parts.attributes.is_none()
            || parts.events.iter().any(|event| event.attributes.is_none())
            || parts.links.iter().any(|link| kept_link(link) && link.attributes.is_none());
        if too_deep {
            translation.refuse(RefusalReason::AttributesTooDeep, || {
                described(&format!("attribute values nest deeper than {MAX_VALUE_DEPTH} levels"))
            });
            return;
        }
        // Every length was checked above.
        let trace_id = TraceId::try_from(parts.trace_id).unwrap_or_default();
        let span_id = SpanId::try_from(parts.span_id).unwrap_or_default();
        let (attributes, dropped_attributes) = parts.attributes.unwrap_or_default();
        let mut events = Vec::with_capacity(parts.events.len());
        for event in parts.events {
            let (attributes, dropped) = event.attributes.unwrap_or_default();
            events.push(SpanEvent {
                time_ns: nanos(event.time_unix_nano),
                name: event.name,
                attributes,
                dropped_attributes_count: event.dropped_attributes_count.saturating_add(dropped),
            });
        }
        let mut links = Vec::with_capacity(parts.links.len());
        let mut dropped_links = 0u32;
        for link in parts.links {
            let (Ok(link_trace_id), Ok(link_span_id)) =
                (TraceId::try_from(link.trace_id), SpanId::try_from(link.span_id))
            else {
                dropped_links = dropped_links.saturating_add(1);
                translation.dropped_links += 1;
                if translation.dropped_link_example.is_none() {
                    translation.dropped_link_example = Some(format!(
                        "a link's trace id {:?} or span id {:?} is not 16 and 8 bytes (trace id {:?}, span id {:?})",
                        hex(link.trace_id),
                        hex(link.span_id),
                        hex(&trace_id),
                        hex(&span_id)
                    ));
                }
                continue;
            };
            let (attributes, dropped) = link.attributes.unwrap_or_default();
            links.push(SpanLink {
                trace_id: link_trace_id,
                span_id: link_span_id,
                trace_state: link.trace_state,
                attributes,
                dropped_attributes_count: link.dropped_attributes_count.saturating_add(dropped),
                flags: link.flags,
            });
        }
        scope.spans.push(Span {
            trace_id,
            span_id,
            parent_span_id,
            trace_state: parts.trace_state,
            name: parts.name,
            kind: kind_of(parts.kind),
            start_ns: nanos(parts.start_time_unix_nano),
            end_ns: nanos(parts.end_time_unix_nano),
            status: SpanStatus { code: status_code_of(parts.status_code), message: parts.status_message },
            attributes,
            events,
            links,
            flags: parts.flags,
            dropped_attributes_count: parts.dropped_attributes_count.saturating_add(dropped_attributes),
            dropped_events_count: parts.dropped_events_count,
            dropped_links_count: parts.dropped_links_count.saturating_add(dropped_links),
        });
    }

    /// The translation, once every group is added.
    pub fn finish(mut self) -> Translation {
        self.end_resource();
        self.translation
    }
}

/// Takes a request in OTLP's types apart into the store's model, judging each span.
pub fn translate(request: ExportTraceServiceRequest) -> Translation {
    let mut builder = BatchBuilder::default();
    builder.translation.batch.reserve(request.resource_spans.len());
    for resource_spans in request.resource_spans {
        let (attributes, dropped) = match resource_spans.resource {
            Some(resource) => (attributes_of(resource.attributes), resource.dropped_attributes_count),
            None => (Some((Vec::new(), 0)), 0),
        };
        builder.start_resource(attributes, dropped, resource_spans.schema_url);
        for scope_spans in resource_spans.scope_spans {
            let scope = scope_spans.scope.unwrap_or_default();
            builder.start_scope(
                scope.name,
                scope.version,
                attributes_of(scope.attributes),
                scope.dropped_attributes_count,
                scope_spans.schema_url,
            );
            for span in scope_spans.spans {
                let status = span.status.unwrap_or_default();
                let events = span
                    .events
                    .into_iter()
                    .map(|event| EventParts {
                        time_unix_nano: event.time_unix_nano,
                        name: event.name,
                        attributes: attributes_of(event.attributes),
                        dropped_attributes_count: event.dropped_attributes_count,
                    })
                    .collect();
                // The links' IDs are moved out first, so that the parts can borrow them.
                let mut link_ids = Vec::with_capacity(span.links.len());
                let mut link_rest = Vec::with_capacity(span.links.len());
                for link in span.links {
                    link_ids.push((link.trace_id, link.span_id));
                    link_rest.push((link.trace_state, link.attributes, link.dropped_attributes_count, link.flags));
                }
                let links = link_rest
                    .into_iter()
                    .zip(&link_ids)
                    .map(|((trace_state, attributes, dropped_attributes_count, flags), (trace_id, span_id))| {
                        LinkParts {
                            trace_id,
                            span_id,
                            trace_state,
                            attributes: attributes_of(attributes),
                            dropped_attributes_count,
                            flags,
                        }
                    })
                    .collect();
                builder.add_span(SpanParts {
                    trace_id: &span.trace_id,
                    span_id: &span.span_id,
                    parent_span_id: &span.parent_span_id,
                    trace_state: span.trace_state,
                    name: span.name,
                    kind: span.kind,
                    start_time_unix_nano: span.start_time_unix_nano,
                    end_time_unix_nano: span.end_time_unix_nano,
                    attributes: attributes_of(span.attributes),
                    dropped_attributes_count: span.dropped_attributes_count,
                    events,
                    dropped_events_count: span.dropped_events_count,
                    links,
                    dropped_links_count: span.dropped_links_count,
                    status_message: status.message,
                    status_code: status.code,
                    flags: span.flags,
                });
            }
        }
    }
    builder.finish()
}

/// What became of an export.
#[derive(Debug, Clone, Default)]
pub struct ExportOutcome {
    pub tenant: String,
    /// Spans in the request.
    pub received_spans: u64,
    /// Size of the request as protobuf.
    pub received_bytes: u64,
    /// Indexed by `RefusalReason as usize`; the store's own refusals are under `Invalid`.
    pub refused: [Refused; RefusalReason::ALL.len()],
    /// What the store did with the spans it was given.
    pub stored: TracesAppendCounts,
    pub dropped_links: u64,
    pub dropped_link_example: Option<String>,
}

impl ExportOutcome {
    /// Spans refused, by the translation or the store.
    pub fn rejected_spans(&self) -> u64 {
        self.refused.iter().map(|refused| refused.spans).sum()
    }

    pub fn refused(&self, reason: RefusalReason) -> u64 {
        self.refused[reason as usize].spans
    }

    /// The partial-success message: every reason with its count and first example, and the
    /// dropped links; `None` when everything was kept.
    pub fn message(&self) -> Option<String> {
        let mut parts = Vec::new();
        for reason in RefusalReason::ALL {
            let refused = &self.refused[reason as usize];
            if refused.spans == 0 {
                continue;
            }
            match &refused.example {
                Some(example) => parts.push(format!("{} {}, e.g. {example}", refused.spans, reason.as_str())),
                None => parts.push(format!("{} {}", refused.spans, reason.as_str())),
            }
        }
        let mut message = String::new();
        if !parts.is_empty() {
            message =
                format!("{} of {} spans refused: {}", self.rejected_spans(), self.received_spans, parts.join("; "));
        }
        if self.dropped_links > 0 {
            if !message.is_empty() {
                message.push_str("; ");
            }
            message.push_str(&format!("{} links dropped", self.dropped_links));
            if let Some(example) = &self.dropped_link_example {
                message.push_str(&format!(": {example}"));
            }
        }
        (!message.is_empty()).then_some(message)
    }
}

/// Appends what a translated request can store. `received_bytes` is the request's size as
/// protobuf. Errors are the store's: nothing of the request was stored.
pub fn export(
    store: &dyn TracesAppender,
    tenant: &str,
    translation: Translation,
    received_bytes: usize,
) -> Result<ExportOutcome, TracesError> {
    let received_bytes = received_bytes as u64;
    let stored = if translation.batch.is_empty() {
        TracesAppendCounts::default()
    } else {
        store.append(tenant, &translation.batch)?
    };
    let mut refused = translation.refused;
    if stored.invalid > 0 {
        let invalid = &mut refused[RefusalReason::Invalid as usize];
        invalid.spans += stored.invalid;
        invalid.example.get_or_insert_with(|| "the store refused the span".to_string());
    }
    Ok(ExportOutcome {
        tenant: tenant.to_string(),
        received_spans: translation.received_spans,
        received_bytes,
        refused,
        stored,
        dropped_links: translation.dropped_links,
        dropped_link_example: translation.dropped_link_example,
    })
}

/// Appends a request already encoded into a record (nothing in it refused). `received_bytes`
/// is the request's size as protobuf.
pub fn export_record(
    store: &dyn TracesAppender,
    record: SpansRecord,
    received_bytes: usize,
) -> Result<ExportOutcome, TracesError> {
    let tenant = record.tenant().to_string();
    let received_spans = record.spans() as u64;
    let stored = store.append_record(record)?;
    let mut refused: [Refused; RefusalReason::ALL.len()] = Default::default();
    if stored.invalid > 0 {
        refused[RefusalReason::Invalid as usize] =
            Refused { spans: stored.invalid, example: Some("the store refused the span".to_string()) };
    }
    Ok(ExportOutcome {
        tenant,
        received_spans,
        received_bytes: received_bytes as u64,
        refused,
        stored,
        dropped_links: 0,
        dropped_link_example: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, InstrumentationScope, KeyValueList};
    use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
    use opentelemetry_proto::tonic::trace::v1 as otlp;

    fn any(value: any_value::Value) -> Option<AnyValue> {
        Some(AnyValue { value: Some(value) })
    }

    fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
        KeyValue { key: key.into(), value, ..Default::default() }
    }

    fn string(text: &str) -> Option<AnyValue> {
        any(any_value::Value::StringValue(text.into()))
    }

    fn span(trace_id: Vec<u8>, span_id: Vec<u8>) -> otlp::Span {
        otlp::Span { trace_id, span_id, name: "op".into(), ..Default::default() }
    }

    fn request(spans: Vec<otlp::Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![otlp::ResourceSpans {
                resource: Some(OtlpResource {
                    attributes: vec![kv("service.name", string("api"))],
                    dropped_attributes_count: 2,
                    ..Default::default()
                }),
                scope_spans: vec![otlp::ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "lib".into(),
                        version: "1.0".into(),
                        attributes: vec![kv("scope.attr", string("s"))],
                        dropped_attributes_count: 1,
                    }),
                    spans,
                    schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
                }],
                schema_url: "https://opentelemetry.io/schemas/1.20.0".into(),
            }],
        }
    }

    fn nested(depth: u32) -> Option<AnyValue> {
        let mut value = string("leaf");
        for _ in 0..depth {
            value = any(any_value::Value::ArrayValue(ArrayValue { values: vec![value.unwrap()] }));
        }
        value
    }

    #[test]
    fn every_field_is_kept() {
        let full = otlp::Span {
            trace_id: vec![0xab; 16],
            span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
            trace_state: "vendor=x".into(),
            parent_span_id: vec![9; 8],
            flags: 0x301,
            name: "GET /api".into(),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_015_000_000,
            attributes: vec![
                kv("s", string("x")),
                kv("i", any(any_value::Value::IntValue(-7))),
                kv("d", any(any_value::Value::DoubleValue(2.5))),
                kv("b", any(any_value::Value::BoolValue(true))),
                kv("y", any(any_value::Value::BytesValue(vec![0, 255]))),
                kv(
                    "a",
                    any(any_value::Value::ArrayValue(ArrayValue {
                        values: vec![string("p").unwrap(), AnyValue { value: None }],
                    })),
                ),
                kv(
                    "m",
                    any(any_value::Value::KvlistValue(KeyValueList {
                        values: vec![kv("k", any(any_value::Value::IntValue(3)))],
                    })),
                ),
                kv("none", None),
            ],
            dropped_attributes_count: 1,
            events: vec![otlp::span::Event {
                time_unix_nano: 1_700_000_000_001_000_000,
                name: "exception".into(),
                attributes: vec![kv("exception.type", string("E"))],
                dropped_attributes_count: 4,
            }],
            dropped_events_count: 5,
            links: vec![
                otlp::span::Link {
                    trace_id: vec![0xcd; 16],
                    span_id: vec![0xef; 8],
                    trace_state: "l=1".into(),
                    attributes: vec![kv("link.kind", string("follows"))],
                    dropped_attributes_count: 6,
                    flags: 1,
                },
                otlp::span::Link { trace_id: vec![1; 3], span_id: vec![2; 8], ..Default::default() },
            ],
            dropped_links_count: 7,
            status: Some(otlp::Status { message: "boom".into(), code: 2 }),
        };
        let translation = translate(request(vec![full]));
        assert_eq!(translation.received_spans, 1);
        assert_eq!(translation.refused_spans(), 0);
        assert_eq!(translation.dropped_links, 1);
        let resource = &translation.batch[0];
        assert_eq!(resource.schema_url, "https://opentelemetry.io/schemas/1.20.0");
        assert_eq!(resource.resource.service_name(), Some("api"));
        assert_eq!(resource.resource.dropped_attributes_count, 2);
        let scope = &resource.scope_spans[0];
        assert_eq!(scope.schema_url, "https://opentelemetry.io/schemas/1.21.0");
        assert_eq!((scope.scope.name.as_str(), scope.scope.version.as_str()), ("lib", "1.0"));
        assert_eq!(scope.scope.attributes, vec![("scope.attr".to_string(), AttrValue::String("s".into()))]);
        assert_eq!(scope.scope.dropped_attributes_count, 1);
        let span = &scope.spans[0];
        assert_eq!(span.trace_id, [0xab; 16]);
        assert_eq!(span.span_id, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(span.parent_span_id, Some([9; 8]));
        assert_eq!(span.trace_state, "vendor=x");
        assert_eq!(span.flags, 0x301);
        assert_eq!(span.kind, SpanKind::Server);
        assert_eq!((span.start_ns, span.end_ns), (1_700_000_000_000_000_000, 1_700_000_000_015_000_000));
        assert_eq!(span.status, SpanStatus { code: StatusCode::Error, message: "boom".into() });
        assert_eq!(
            span.attributes,
            vec![
                ("s".to_string(), AttrValue::String("x".into())),
                ("i".to_string(), AttrValue::Int(-7)),
                ("d".to_string(), AttrValue::Double(2.5)),
                ("b".to_string(), AttrValue::Bool(true)),
                ("y".to_string(), AttrValue::Bytes(vec![0, 255])),
                (
                    "a".to_string(),
                    AttrValue::Array(vec![AttrValue::String("p".into()), AttrValue::String(String::new())])
                ),
                ("m".to_string(), AttrValue::KvList(vec![("k".to_string(), AttrValue::Int(3))])),
            ]
        );
        // One sent as dropped, one without a value.
        assert_eq!(span.dropped_attributes_count, 2);
        assert_eq!(
            span.events,
            vec![SpanEvent {
                time_ns: 1_700_000_000_001_000_000,
                name: "exception".into(),
                attributes: vec![("exception.type".to_string(), AttrValue::String("E".into()))],
                dropped_attributes_count: 4,
            }]
        );
        assert_eq!(span.dropped_events_count, 5);
        assert_eq!(
            span.links,
            vec![SpanLink {
                trace_id: [0xcd; 16],
                span_id: [0xef; 8],
                trace_state: "l=1".into(),
                attributes: vec![("link.kind".to_string(), AttrValue::String("follows".into()))],
                dropped_attributes_count: 6,
                flags: 1,
            }]
        );
        // Seven sent as dropped, one with a 3-byte trace ID.
        assert_eq!(span.dropped_links_count, 8);
    }

    #[test]
    fn each_span_is_judged_alone() {
        let mut zero_parent = span(vec![1; 16], vec![1; 8]);
        zero_parent.parent_span_id = vec![0; 8];
        let mut bad_parent = span(vec![1; 16], vec![2; 8]);
        bad_parent.parent_span_id = vec![3; 5];
        let mut deep = span(vec![1; 16], vec![4; 8]);
        deep.attributes = vec![kv("deep", nested(MAX_VALUE_DEPTH + 1))];
        let mut deepest_kept = span(vec![1; 16], vec![5; 8]);
        deepest_kept.attributes = vec![kv("deep", nested(MAX_VALUE_DEPTH))];
        let spans = vec![
            zero_parent,
            span(vec![0; 16], vec![1; 8]),
            span(vec![1; 5], vec![1; 8]),
            span(Vec::new(), vec![1; 8]),
            span(vec![1; 16], vec![0; 8]),
            span(vec![1; 16], vec![1; 9]),
            bad_parent,
            deep,
            deepest_kept,
        ];
        let translation = translate(request(spans));
        assert_eq!(translation.received_spans, 9);
        let counts: Vec<u64> = translation.refused.iter().map(|refused| refused.spans).collect();
        assert_eq!(counts, [3, 2, 1, 1, 0]);
        let kept: Vec<SpanId> = translation.batch[0].scope_spans[0].spans.iter().map(|span| span.span_id).collect();
        assert_eq!(kept, [[1; 8], [5; 8]]);
        assert_eq!(translation.batch[0].scope_spans[0].spans[0].parent_span_id, None);
        assert_eq!(
            translation.refused[RefusalReason::InvalidTraceId as usize].example.as_deref(),
            Some("trace id is all zeros (trace id \"00000000000000000000000000000000\", span id \"0101010101010101\")")
        );
        assert_eq!(
            translation.refused[RefusalReason::InvalidParentSpanId as usize].example.as_deref(),
            Some(
                "parent span id is 5 bytes, expected 8 or none (trace id \"01010101010101010101010101010101\", span id \"0202020202020202\")"
            )
        );
    }

    #[test]
    fn groups_left_empty_are_dropped() {
        let translation = translate(request(vec![span(vec![0; 16], vec![1; 8])]));
        assert!(translation.batch.is_empty());
        assert_eq!(translation.refused_spans(), 1);
        let mut deep_resource = request(vec![span(vec![1; 16], vec![1; 8]), span(vec![1; 16], vec![2; 8])]);
        deep_resource.resource_spans[0].resource.as_mut().unwrap().attributes = vec![kv("x", nested(100))];
        let translation = translate(deep_resource);
        assert!(translation.batch.is_empty());
        assert_eq!(translation.refused[RefusalReason::AttributesTooDeep as usize].spans, 2);
    }

    #[test]
    fn outcome_messages_name_every_reason() {
        let mut outcome = ExportOutcome { received_spans: 10, ..Default::default() };
        assert_eq!(outcome.message(), None);
        outcome.refused[RefusalReason::InvalidTraceId as usize] =
            Refused { spans: 2, example: Some("trace id is all zeros".into()) };
        outcome.refused[RefusalReason::Invalid as usize] = Refused { spans: 1, example: None };
        outcome.dropped_links = 1;
        outcome.dropped_link_example = Some("bad link".into());
        assert_eq!(
            outcome.message().unwrap(),
            "3 of 10 spans refused: 2 invalid_trace_id, e.g. trace id is all zeros; 1 invalid; 1 links dropped: bad link"
        );
        assert_eq!(outcome.rejected_spans(), 3);
    }

    #[test]
    fn tenants() {
        assert_eq!(resolve_traces_tenant(Some("team-a"), false).unwrap(), "single-tenant");
        assert_eq!(resolve_traces_tenant(Some("team-a"), true).unwrap(), "team-a");
        assert_eq!(resolve_traces_tenant(None, true), Err(TenantError::Missing));
    }
}
