//! A zero-copy decoder of OTLP's `ExportTraceServiceRequest` protobuf straight into the traces
//! store's model, for the hot ingest path (HTTP protobuf and gRPC): no intermediate OTLP
//! structures, IDs borrowed from the body until judged, every list allocated once at its final
//! size. Each span goes through the same [`BatchBuilder`] as the JSON path's OTLP structures,
//! so both refuse the same spans with the same messages.
//!
//! It reads what a protobuf library would: unknown fields are skipped, a known field with the
//! wrong wire type or a string that is not UTF-8 is an error, a scalar given twice keeps the
//! last value, an embedded message given twice is merged (lists appended), an attribute value
//! given twice is replaced (or, for two lists, appended), and messages nest at most 100 deep.
//! Groups (wire types 3 and 4, unused by OTLP) are refused.

use tripod_storage::traces::{
    AttrValue, Attributes, RecordScratch, SpanHead, SpanId, SpansRecord, SpansRecordWriter, TraceId,
};

use crate::api::wire::{WireError, WireReader, WireValue, utf8};
use crate::ingest::otlp_traces::{
    BatchBuilder, Converted, EventParts, LinkParts, MAX_VALUE_DEPTH, SpanParts, Translation, kind_of, nanos,
    status_code_of,
};

/// How deep messages may nest (the request is depth 0), as protobuf libraries limit it.
const MAX_MESSAGE_DEPTH: u32 = 100;

type Result<T> = std::result::Result<T, WireError>;

fn error(offset: usize, problem: &'static str) -> WireError {
    WireError { offset, problem }
}

fn bytes<'a>(value: WireValue<'a>, offset: usize) -> Result<&'a [u8]> {
    match value {
        WireValue::Bytes(bytes) => Ok(bytes),
        _ => Err(error(offset, "a known field has the wrong wire type")),
    }
}

fn varint(value: WireValue<'_>, offset: usize) -> Result<u64> {
    match value {
        WireValue::Varint(v) => Ok(v),
        _ => Err(error(offset, "a known field has the wrong wire type")),
    }
}

fn fixed64(value: WireValue<'_>, offset: usize) -> Result<u64> {
    match value {
        WireValue::Fixed64(v) => Ok(v),
        _ => Err(error(offset, "a known field has the wrong wire type")),
    }
}

fn fixed32(value: WireValue<'_>, offset: usize) -> Result<u32> {
    match value {
        WireValue::Fixed32(v) => Ok(v),
        _ => Err(error(offset, "a known field has the wrong wire type")),
    }
}

fn text<'a>(value: WireValue<'a>, offset: usize) -> Result<&'a str> {
    utf8(bytes(value, offset)?).ok_or_else(|| error(offset, "a string is not valid UTF-8"))
}

/// An embedded message at message depth `depth`: its bytes and where they start, so that it
/// can be read more than once.
#[derive(Clone, Copy)]
struct Message<'a> {
    bytes: &'a [u8],
    base: usize,
}

impl<'a> Message<'a> {
    fn reader(self) -> WireReader<'a> {
        WireReader::nested(self.bytes, self.base)
    }
}

/// The embedded message a field holds.
fn message(value: WireValue<'_>, offset: usize, depth: u32) -> Result<Message<'_>> {
    if depth > MAX_MESSAGE_DEPTH {
        return Err(error(offset, "messages are nested too deeply"));
    }
    Ok(Message { bytes: bytes(value, offset)?, base: offset })
}

/// A reader of the embedded message a field holds.
fn nested(value: WireValue<'_>, offset: usize, depth: u32) -> Result<WireReader<'_>> {
    Ok(message(value, offset, depth)?.reader())
}

/// Decodes a request, judging each span as the JSON path does.
pub fn decode_export(body: &[u8]) -> Result<Translation> {
    let mut builder = BatchBuilder::default();
    let mut reader = WireReader::new(body);
    while let Some((field, value, offset)) = reader.next_field()? {
        if field == 1 {
            resource_spans(message(value, offset, 1)?, 1, &mut builder)?;
        }
    }
    Ok(builder.finish())
}

/// Attributes being collected, possibly over several occurrences of their owner.
#[derive(Default)]
struct AttributesState {
    attributes: Attributes,
    /// Attributes without a value.
    dropped: u32,
    /// A value nests deeper than the store keeps.
    too_deep: bool,
}

impl AttributesState {
    fn with_capacity(capacity: usize) -> AttributesState {
        AttributesState { attributes: Vec::with_capacity(capacity), ..Default::default() }
    }

    /// A top-level `KeyValue`: kept, or dropped for having no value.
    fn add(&mut self, value: WireValue<'_>, offset: usize, depth: u32) -> Result<()> {
        let (key, value) = key_value(nested(value, offset, depth)?, depth, 0, &mut self.too_deep)?;
        match value {
            Some(value) => self.attributes.push((key, value)),
            None => self.dropped = self.dropped.saturating_add(1),
        }
        Ok(())
    }

    fn converted(self) -> Converted {
        (!self.too_deep).then_some((self.attributes, self.dropped))
    }
}

/// A `KeyValue` at message depth `depth`, its value at attribute nesting `value_depth`; the
/// value is `None` when the message carries none.
fn key_value(
    mut reader: WireReader<'_>,
    depth: u32,
    value_depth: u32,
    too_deep: &mut bool,
) -> Result<(String, Option<AttrValue>)> {
    let mut key = "";
    let mut value = None;
    while let Some((field, wire, offset)) = reader.next_field()? {
        match field {
            1 => key = text(wire, offset)?,
            2 => any_value(nested(wire, offset, depth + 1)?, depth + 1, value_depth, &mut value, too_deep)?,
            3 => {
                varint(wire, offset)?;
            }
            _ => {}
        }
    }
    Ok((key.to_string(), value))
}

/// Merges an `AnyValue` message into `state`. Lists nested at or below [`MAX_VALUE_DEPTH`] set
/// `too_deep` (the bytes are still read, so that a malformed request is still refused).
fn any_value(
    mut reader: WireReader<'_>,
    depth: u32,
    value_depth: u32,
    state: &mut Option<AttrValue>,
    too_deep: &mut bool,
) -> Result<()> {
    while let Some((field, wire, offset)) = reader.next_field()? {
        match field {
            1 => *state = Some(AttrValue::String(text(wire, offset)?.to_string())),
            2 => *state = Some(AttrValue::Bool(varint(wire, offset)? != 0)),
            3 => *state = Some(AttrValue::Int(varint(wire, offset)? as i64)),
            4 => *state = Some(AttrValue::Double(f64::from_bits(fixed64(wire, offset)?))),
            5 => {
                if value_depth >= MAX_VALUE_DEPTH {
                    *too_deep = true;
                }
                let mut values = match state.take() {
                    Some(AttrValue::Array(values)) => values,
                    _ => Vec::new(),
                };
                let mut array = nested(wire, offset, depth + 1)?;
                while let Some((field, wire, offset)) = array.next_field()? {
                    if field == 1 {
                        let mut element = None;
                        any_value(
                            nested(wire, offset, depth + 2)?,
                            depth + 2,
                            value_depth + 1,
                            &mut element,
                            too_deep,
                        )?;
                        values.push(element.unwrap_or_else(|| AttrValue::String(String::new())));
                    }
                }
                *state = Some(AttrValue::Array(values));
            }
            6 => {
                if value_depth >= MAX_VALUE_DEPTH {
                    *too_deep = true;
                }
                let mut pairs = match state.take() {
                    Some(AttrValue::KvList(pairs)) => pairs,
                    _ => Vec::new(),
                };
                let mut list = nested(wire, offset, depth + 1)?;
                while let Some((field, wire, offset)) = list.next_field()? {
                    if field == 1 {
                        let (key, value) =
                            key_value(nested(wire, offset, depth + 2)?, depth + 2, value_depth + 1, too_deep)?;
                        pairs.push((key, value.unwrap_or_else(|| AttrValue::String(String::new()))));
                    }
                }
                *state = Some(AttrValue::KvList(pairs));
            }
            7 => *state = Some(AttrValue::Bytes(bytes(wire, offset)?.to_vec())),
            // A string by index into a dictionary OTLP traces do not carry: the empty string.
            8 => {
                varint(wire, offset)?;
                *state = Some(AttrValue::String(String::new()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// How many times each of three fields occurs in a message, to size its lists once.
fn count_fields(message: Message<'_>, fields: [u32; 3]) -> Result<[usize; 3]> {
    let mut counts = [0; 3];
    let mut reader = message.reader();
    while let Some((field, _, _)) = reader.next_field()? {
        for (index, wanted) in fields.iter().enumerate() {
            if field == *wanted {
                counts[index] += 1;
            }
        }
    }
    Ok(counts)
}

/// A `ResourceSpans` at depth `depth`: the resource and schema URL first (wherever they are in
/// the message), then its scopes in order.
fn resource_spans(message_bytes: Message<'_>, depth: u32, builder: &mut BatchBuilder) -> Result<()> {
    let mut attributes = AttributesState::default();
    let mut dropped_attributes_count = 0u32;
    let mut schema_url = "";
    let mut first = message_bytes.reader();
    while let Some((field, wire, offset)) = first.next_field()? {
        match field {
            1 => {
                let mut resource = nested(wire, offset, depth + 1)?;
                while let Some((field, wire, offset)) = resource.next_field()? {
                    match field {
                        1 => attributes.add(wire, offset, depth + 2)?,
                        2 => dropped_attributes_count = varint(wire, offset)? as u32,
                        3 => entity_ref(nested(wire, offset, depth + 2)?)?,
                        _ => {}
                    }
                }
            }
            2 => {
                bytes(wire, offset)?;
            }
            3 => schema_url = text(wire, offset)?,
            _ => {}
        }
    }
    builder.start_resource(attributes.converted(), dropped_attributes_count, schema_url.to_string());
    let mut second = message_bytes.reader();
    while let Some((field, wire, offset)) = second.next_field()? {
        if field == 2 {
            scope_spans(message(wire, offset, depth + 1)?, depth + 1, builder)?;
        }
    }
    Ok(())
}

/// An `EntityRef` of a resource: checked, not kept.
fn entity_ref(mut reader: WireReader<'_>) -> Result<()> {
    while let Some((field, wire, offset)) = reader.next_field()? {
        if (1..=4).contains(&field) {
            text(wire, offset)?;
        }
    }
    Ok(())
}

/// A `ScopeSpans` at depth `depth`: the scope and schema URL first, then its spans in order.
fn scope_spans(message_bytes: Message<'_>, depth: u32, builder: &mut BatchBuilder) -> Result<()> {
    let (mut name, mut version, mut schema_url) = ("", "", "");
    let mut attributes = AttributesState::default();
    let mut dropped_attributes_count = 0u32;
    let mut first = message_bytes.reader();
    while let Some((field, wire, offset)) = first.next_field()? {
        match field {
            1 => {
                let mut scope = nested(wire, offset, depth + 1)?;
                while let Some((field, wire, offset)) = scope.next_field()? {
                    match field {
                        1 => name = text(wire, offset)?,
                        2 => version = text(wire, offset)?,
                        3 => attributes.add(wire, offset, depth + 2)?,
                        4 => dropped_attributes_count = varint(wire, offset)? as u32,
                        _ => {}
                    }
                }
            }
            2 => {
                bytes(wire, offset)?;
            }
            3 => schema_url = text(wire, offset)?,
            _ => {}
        }
    }
    builder.start_scope(
        name.to_string(),
        version.to_string(),
        attributes.converted(),
        dropped_attributes_count,
        schema_url.to_string(),
    );
    let mut second = message_bytes.reader();
    while let Some((field, wire, offset)) = second.next_field()? {
        if field == 2 {
            builder.add_span(span(message(wire, offset, depth + 1)?, depth + 1)?);
        }
    }
    Ok(())
}

/// A `Span` at depth `depth`.
fn span(span_bytes: Message<'_>, depth: u32) -> Result<SpanParts<'_>> {
    let [attribute_count, event_count, link_count] = count_fields(span_bytes, [9, 11, 13])?;
    let mut parts = SpanParts {
        events: Vec::with_capacity(event_count),
        links: Vec::with_capacity(link_count),
        ..Default::default()
    };
    let mut attributes = AttributesState::with_capacity(attribute_count);
    let (mut trace_state, mut name, mut status_message) = ("", "", "");
    let mut reader = span_bytes.reader();
    while let Some((field, wire, offset)) = reader.next_field()? {
        match field {
            1 => parts.trace_id = bytes(wire, offset)?,
            2 => parts.span_id = bytes(wire, offset)?,
            3 => trace_state = text(wire, offset)?,
            4 => parts.parent_span_id = bytes(wire, offset)?,
            5 => name = text(wire, offset)?,
            6 => parts.kind = varint(wire, offset)? as i32,
            7 => parts.start_time_unix_nano = fixed64(wire, offset)?,
            8 => parts.end_time_unix_nano = fixed64(wire, offset)?,
            9 => attributes.add(wire, offset, depth + 1)?,
            10 => parts.dropped_attributes_count = varint(wire, offset)? as u32,
            11 => parts.events.push(event(message(wire, offset, depth + 1)?, depth + 1)?),
            12 => parts.dropped_events_count = varint(wire, offset)? as u32,
            13 => parts.links.push(link(message(wire, offset, depth + 1)?, depth + 1)?),
            14 => parts.dropped_links_count = varint(wire, offset)? as u32,
            15 => {
                let mut status = nested(wire, offset, depth + 1)?;
                while let Some((field, wire, offset)) = status.next_field()? {
                    match field {
                        2 => status_message = text(wire, offset)?,
                        3 => parts.status_code = varint(wire, offset)? as i32,
                        _ => {}
                    }
                }
            }
            16 => parts.flags = fixed32(wire, offset)?,
            _ => {}
        }
    }
    parts.attributes = attributes.converted();
    parts.trace_state = trace_state.to_string();
    parts.name = name.to_string();
    parts.status_message = status_message.to_string();
    Ok(parts)
}

/// An `Event`'s fields other than its attributes (field 3).
struct EventFields<'a> {
    time_unix_nano: u64,
    name: &'a str,
    dropped_attributes_count: u32,
}

fn event_fields(event: Message<'_>) -> Result<EventFields<'_>> {
    let mut fields = EventFields { time_unix_nano: 0, name: "", dropped_attributes_count: 0 };
    let mut reader = event.reader();
    while let Some((field, value, offset)) = reader.next_field()? {
        match field {
            1 => fields.time_unix_nano = fixed64(value, offset)?,
            2 => fields.name = text(value, offset)?,
            4 => fields.dropped_attributes_count = varint(value, offset)? as u32,
            _ => {}
        }
    }
    Ok(fields)
}

/// A `Link`'s fields other than its attributes (field 4).
struct LinkFields<'a> {
    trace_id: &'a [u8],
    span_id: &'a [u8],
    trace_state: &'a str,
    dropped_attributes_count: u32,
    flags: u32,
}

fn link_fields(link: Message<'_>) -> Result<LinkFields<'_>> {
    let mut fields = LinkFields { trace_id: &[], span_id: &[], trace_state: "", dropped_attributes_count: 0, flags: 0 };
    let mut reader = link.reader();
    while let Some((field, value, offset)) = reader.next_field()? {
        match field {
            1 => fields.trace_id = bytes(value, offset)?,
            2 => fields.span_id = bytes(value, offset)?,
            3 => fields.trace_state = text(value, offset)?,
            5 => fields.dropped_attributes_count = varint(value, offset)? as u32,
            6 => fields.flags = fixed32(value, offset)?,
            _ => {}
        }
    }
    Ok(fields)
}

/// The attributes (field `field`) of a message at depth `depth`, converted.
fn attributes_of(owner: Message<'_>, field: u32, depth: u32) -> Result<Converted> {
    let [count, _, _] = count_fields(owner, [field, 0, 0])?;
    let mut attributes = AttributesState::with_capacity(count);
    let mut reader = owner.reader();
    while let Some((number, value, offset)) = reader.next_field()? {
        if number == field {
            attributes.add(value, offset, depth + 1)?;
        }
    }
    Ok(attributes.converted())
}

/// A span's `Event` at depth `depth`.
fn event(event_bytes: Message<'_>, depth: u32) -> Result<EventParts> {
    let fields = event_fields(event_bytes)?;
    Ok(EventParts {
        time_unix_nano: fields.time_unix_nano,
        name: fields.name.to_string(),
        attributes: attributes_of(event_bytes, 3, depth)?,
        dropped_attributes_count: fields.dropped_attributes_count,
    })
}

/// A span's `Link` at depth `depth`.
fn link(link_bytes: Message<'_>, depth: u32) -> Result<LinkParts<'_>> {
    let fields = link_fields(link_bytes)?;
    Ok(LinkParts {
        trace_id: fields.trace_id,
        span_id: fields.span_id,
        trace_state: fields.trace_state.to_string(),
        attributes: attributes_of(link_bytes, 4, depth)?,
        dropped_attributes_count: fields.dropped_attributes_count,
        flags: fields.flags,
    })
}

// ---------------------------------------------------------------------------------------------
// Straight into a record

/// Encodes a request straight into a spans record of the store for `tenant`, without the
/// store's owned model: what every export of a well-behaved client takes. `None` when the
/// request needs [`decode_export`]'s judgement: it does not decode, or some span would be
/// refused, a link dropped or a value-less attribute counted, or something is sent in a form a
/// protobuf library merges (a message or attribute value given twice, a group without spans).
/// An empty request is left to it too. Whatever it encodes is exactly what [`decode_export`]
/// and the store's own encoding would store.
pub fn encode_export(body: &[u8], tenant: &str) -> Option<SpansRecord> {
    thread_local! {
        /// What records are written in, reused from request to request.
        static SCRATCH: std::cell::Cell<RecordScratch> = std::cell::Cell::new(RecordScratch::default());
    }
    /// Scratch grown past this by one large request is not kept.
    const KEPT_SCRATCH_BYTES: usize = 16 << 20;
    let plan = Plan::of(body).ok().filter(|plan| !plan.resources.is_empty())?;
    let mut writer = SpansRecordWriter::new(tenant, plan.resources.len() as u64, SCRATCH.take());
    let mut scratch = Scratch::default();
    let written = plan.resources.iter().try_for_each(|resource| {
        match write_resource(&plan, resource, &mut writer, &mut scratch) {
            Ok(Some(())) => Some(()),
            _ => None,
        }
    });
    let (record, scratch) = writer.finish();
    if scratch.capacity() <= KEPT_SCRATCH_BYTES {
        SCRATCH.set(scratch);
    }
    written.and(record)
}

/// The groups of a request, found by a first pass that does not enter spans.
#[derive(Default)]
struct Plan<'a> {
    resources: Vec<ResourcePlan<'a>>,
    scopes: Vec<ScopePlan<'a>>,
    spans: Vec<Message<'a>>,
}

struct ResourcePlan<'a> {
    resource: Option<Message<'a>>,
    schema_url: &'a str,
    scopes: std::ops::Range<usize>,
}

struct ScopePlan<'a> {
    scope: Option<Message<'a>>,
    schema_url: &'a str,
    spans: std::ops::Range<usize>,
}

/// A plan's failure: a wire error, or a form left to [`decode_export`].
struct Unplanned;

impl From<WireError> for Unplanned {
    fn from(_: WireError) -> Unplanned {
        Unplanned
    }
}

impl<'a> Plan<'a> {
    fn of(body: &'a [u8]) -> std::result::Result<Plan<'a>, Unplanned> {
        let mut plan = Plan::default();
        let mut request = WireReader::new(body);
        while let Some((field, value, offset)) = request.next_field()? {
            if field != 1 {
                continue;
            }
            let (mut resource, mut schema_url) = (None, "");
            let scopes_start = plan.scopes.len();
            let mut reader = nested(value, offset, 1)?;
            while let Some((field, value, offset)) = reader.next_field()? {
                match field {
                    1 if resource.is_none() => resource = Some(message(value, offset, 2)?),
                    1 => return Err(Unplanned),
                    2 => plan.scope(message(value, offset, 2)?)?,
                    3 => schema_url = text(value, offset)?,
                    _ => {}
                }
            }
            if plan.scopes.len() == scopes_start {
                return Err(Unplanned);
            }
            plan.resources.push(ResourcePlan { resource, schema_url, scopes: scopes_start..plan.scopes.len() });
        }
        Ok(plan)
    }

    fn scope(&mut self, scope_spans: Message<'a>) -> std::result::Result<(), Unplanned> {
        let (mut scope, mut schema_url) = (None, "");
        let spans_start = self.spans.len();
        let mut reader = scope_spans.reader();
        while let Some((field, value, offset)) = reader.next_field()? {
            match field {
                1 if scope.is_none() => scope = Some(message(value, offset, 3)?),
                1 => return Err(Unplanned),
                2 => self.spans.push(message(value, offset, 3)?),
                3 => schema_url = text(value, offset)?,
                _ => {}
            }
        }
        if self.spans.len() == spans_start {
            return Err(Unplanned);
        }
        self.scopes.push(ScopePlan { scope, schema_url, spans: spans_start..self.spans.len() });
        Ok(())
    }
}

/// Lists reused from span to span.
#[derive(Default)]
struct Scratch<'a> {
    attributes: Vec<Message<'a>>,
    events: Vec<Message<'a>>,
    links: Vec<Message<'a>>,
}

/// `Ok(None)`: left to [`decode_export`].
type Written = Result<Option<()>>;

fn write_resource<'a>(
    plan: &Plan<'a>,
    resource: &ResourcePlan<'a>,
    writer: &mut SpansRecordWriter,
    scratch: &mut Scratch<'a>,
) -> Written {
    let mut dropped_attributes_count = 0u32;
    scratch.attributes.clear();
    if let Some(message_bytes) = resource.resource {
        let mut reader = message_bytes.reader();
        while let Some((field, value, offset)) = reader.next_field()? {
            match field {
                1 => scratch.attributes.push(message(value, offset, 3)?),
                2 => dropped_attributes_count = varint(value, offset)? as u32,
                3 => entity_ref(nested(value, offset, 3)?)?,
                _ => {}
            }
        }
    }
    writer.resource(scratch.attributes.len() as u64);
    if write_attributes(&scratch.attributes, 3, writer)?.is_none() {
        return Ok(None);
    }
    writer.resource_end(dropped_attributes_count, resource.schema_url, resource.scopes.len() as u64);
    for scope in &plan.scopes[resource.scopes.clone()] {
        let (mut name, mut version, mut dropped_attributes_count) = ("", "", 0u32);
        scratch.attributes.clear();
        if let Some(message_bytes) = scope.scope {
            let mut reader = message_bytes.reader();
            while let Some((field, value, offset)) = reader.next_field()? {
                match field {
                    1 => name = text(value, offset)?,
                    2 => version = text(value, offset)?,
                    3 => scratch.attributes.push(message(value, offset, 4)?),
                    4 => dropped_attributes_count = varint(value, offset)? as u32,
                    _ => {}
                }
            }
        }
        writer.scope(name, version, scratch.attributes.len() as u64);
        if write_attributes(&scratch.attributes, 4, writer)?.is_none() {
            return Ok(None);
        }
        writer.scope_end(dropped_attributes_count, scope.schema_url, scope.spans.len() as u64);
        for span in &plan.spans[scope.spans.clone()] {
            if write_span(*span, writer, scratch)?.is_none() {
                return Ok(None);
            }
        }
    }
    Ok(Some(()))
}

/// A span at message depth 3.
fn write_span<'a>(span: Message<'a>, writer: &mut SpansRecordWriter, scratch: &mut Scratch<'a>) -> Written {
    const DEPTH: u32 = 3;
    scratch.attributes.clear();
    scratch.events.clear();
    scratch.links.clear();
    let (mut trace_id, mut span_id, mut parent_span_id): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
    let (mut trace_state, mut name, mut status_message) = ("", "", "");
    let (mut kind, mut status_code, mut flags) = (0i32, 0i32, 0u32);
    let (mut start, mut end) = (0u64, 0u64);
    let (mut dropped_attributes, mut dropped_events, mut dropped_links) = (0u32, 0u32, 0u32);
    let mut status_seen = false;
    let mut reader = span.reader();
    while let Some((field, value, offset)) = reader.next_field()? {
        match field {
            1 => trace_id = bytes(value, offset)?,
            2 => span_id = bytes(value, offset)?,
            3 => trace_state = text(value, offset)?,
            4 => parent_span_id = bytes(value, offset)?,
            5 => name = text(value, offset)?,
            6 => kind = varint(value, offset)? as i32,
            7 => start = fixed64(value, offset)?,
            8 => end = fixed64(value, offset)?,
            9 => scratch.attributes.push(message(value, offset, DEPTH + 1)?),
            10 => dropped_attributes = varint(value, offset)? as u32,
            11 => scratch.events.push(message(value, offset, DEPTH + 1)?),
            12 => dropped_events = varint(value, offset)? as u32,
            13 => scratch.links.push(message(value, offset, DEPTH + 1)?),
            14 => dropped_links = varint(value, offset)? as u32,
            15 => {
                if std::mem::replace(&mut status_seen, true) {
                    return Ok(None);
                }
                let mut status = nested(value, offset, DEPTH + 1)?;
                while let Some((field, value, offset)) = status.next_field()? {
                    match field {
                        2 => status_message = text(value, offset)?,
                        3 => status_code = varint(value, offset)? as i32,
                        _ => {}
                    }
                }
            }
            16 => flags = fixed32(value, offset)?,
            _ => {}
        }
    }
    let (Ok(trace_id), Ok(span_id)) = (TraceId::try_from(trace_id), SpanId::try_from(span_id)) else {
        return Ok(None);
    };
    let parent_span_id = match parent_span_id.len() {
        0 => None,
        8 => SpanId::try_from(parent_span_id).ok().filter(|id| *id != [0; 8]),
        _ => return Ok(None),
    };
    writer.span(
        &SpanHead {
            trace_id,
            span_id,
            parent_span_id,
            trace_state,
            name,
            kind: kind_of(kind),
            status_code: status_code_of(status_code),
            status_message,
            flags,
            start_ns: nanos(start),
            end_ns: nanos(end),
        },
        scratch.attributes.len() as u64,
    );
    if write_attributes(&scratch.attributes, DEPTH + 1, writer)?.is_none() {
        return Ok(None);
    }
    writer.span_attributes_end(dropped_attributes, scratch.events.len() as u64);
    for event in &scratch.events {
        if write_event(*event, DEPTH + 1, writer)?.is_none() {
            return Ok(None);
        }
    }
    writer.links(dropped_events, scratch.links.len() as u64);
    for link in &scratch.links {
        if write_link(*link, DEPTH + 1, writer)?.is_none() {
            return Ok(None);
        }
    }
    writer.span_end(dropped_links);
    Ok(Some(()))
}

/// Counts the occurrences of field `wanted` in a message.
fn count_field(message_bytes: Message<'_>, wanted: u32) -> Result<u64> {
    let mut count = 0;
    let mut reader = message_bytes.reader();
    while let Some((field, _, _)) = reader.next_field()? {
        count += u64::from(field == wanted);
    }
    Ok(count)
}

fn write_event(event: Message<'_>, depth: u32, writer: &mut SpansRecordWriter) -> Written {
    let fields = event_fields(event)?;
    writer.event(nanos(fields.time_unix_nano), fields.name, count_field(event, 3)?);
    if write_attributes_of(event, 3, depth, writer)?.is_none() {
        return Ok(None);
    }
    writer.event_end(fields.dropped_attributes_count);
    Ok(Some(()))
}

fn write_link(link: Message<'_>, depth: u32, writer: &mut SpansRecordWriter) -> Written {
    let fields = link_fields(link)?;
    // A link with IDs of the wrong length is dropped and counted: decode_export's business.
    let (Ok(trace_id), Ok(span_id)) = (TraceId::try_from(fields.trace_id), SpanId::try_from(fields.span_id)) else {
        return Ok(None);
    };
    writer.link(&trace_id, &span_id, fields.trace_state, count_field(link, 4)?);
    if write_attributes_of(link, 4, depth, writer)?.is_none() {
        return Ok(None);
    }
    writer.link_end(fields.dropped_attributes_count, fields.flags);
    Ok(Some(()))
}

/// Writes the `KeyValue`s of field `field` of a message at depth `depth`.
fn write_attributes_of(owner: Message<'_>, field: u32, depth: u32, writer: &mut SpansRecordWriter) -> Written {
    let mut reader = owner.reader();
    while let Some((number, value, offset)) = reader.next_field()? {
        if number == field && write_key_value(message(value, offset, depth + 1)?, depth + 1, 0, writer)?.is_none() {
            return Ok(None);
        }
    }
    Ok(Some(()))
}

/// Writes `KeyValue` messages at depth `depth`.
fn write_attributes(attributes: &[Message<'_>], depth: u32, writer: &mut SpansRecordWriter) -> Written {
    for attribute in attributes {
        if write_key_value(*attribute, depth, 0, writer)?.is_none() {
            return Ok(None);
        }
    }
    Ok(Some(()))
}

/// A `KeyValue` at message depth `depth`, its value at attribute nesting `value_depth`. A pair
/// without a value, or with its value given twice, is left to [`decode_export`].
fn write_key_value(pair: Message<'_>, depth: u32, value_depth: u32, writer: &mut SpansRecordWriter) -> Written {
    let mut key = "";
    let mut value = None;
    let mut reader = pair.reader();
    while let Some((field, wire, offset)) = reader.next_field()? {
        match field {
            1 => key = text(wire, offset)?,
            2 if value.is_none() => value = Some(message(wire, offset, depth + 1)?),
            2 => return Ok(None),
            3 => {
                varint(wire, offset)?;
            }
            _ => {}
        }
    }
    let Some(value) = value else { return Ok(None) };
    writer.key(key);
    write_any_value(value, depth + 1, value_depth, writer)
}

/// An `AnyValue` holding exactly one value (anything else is left to [`decode_export`]).
fn write_any_value(any: Message<'_>, depth: u32, value_depth: u32, writer: &mut SpansRecordWriter) -> Written {
    let mut found = None;
    let mut reader = any.reader();
    while let Some((field, wire, offset)) = reader.next_field()? {
        if (1..=8).contains(&field) {
            if found.is_some() {
                return Ok(None);
            }
            found = Some((field, wire, offset));
        }
    }
    let Some((field, wire, offset)) = found else { return Ok(None) };
    match field {
        1 => writer.string(text(wire, offset)?),
        2 => writer.bool(varint(wire, offset)? != 0),
        3 => writer.int(varint(wire, offset)? as i64),
        4 => writer.double(f64::from_bits(fixed64(wire, offset)?)),
        5 | 6 => {
            if value_depth >= MAX_VALUE_DEPTH {
                return Ok(None);
            }
            let is_array = field == 5;
            let list = message(wire, offset, depth + 1)?;
            let items = count_field(list, 1)?;
            if is_array {
                writer.array(items);
            } else {
                writer.kvlist(items);
            }
            let mut reader = list.reader();
            while let Some((field, wire, offset)) = reader.next_field()? {
                if field != 1 {
                    continue;
                }
                let item = message(wire, offset, depth + 2)?;
                let written = if is_array {
                    write_any_value(item, depth + 2, value_depth + 1, writer)?
                } else {
                    write_key_value(item, depth + 2, value_depth + 1, writer)?
                };
                if written.is_none() {
                    return Ok(None);
                }
            }
            writer.end_list();
        }
        7 => writer.bytes(bytes(wire, offset)?),
        // A string by index into a dictionary OTLP traces do not carry.
        _ => return Ok(None),
    }
    Ok(Some(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::{put_bytes_field, put_varint_field};
    use crate::ingest::otlp_traces::translate;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
    use prost::Message as _;

    /// Both decoders on the same bytes: the same translation, or both refuse.
    fn same_as_prost(bytes: &[u8]) -> std::result::Result<String, String> {
        let direct = decode_export(bytes).map(|translation| format!("{translation:?}"));
        let through_prost = ExportTraceServiceRequest::decode(bytes).map(|request| format!("{:?}", translate(request)));
        match (&direct, &through_prost) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            _ => panic!("the decoders disagree: {direct:?} vs {through_prost:?}"),
        }
        direct.map_err(|error| error.to_string())
    }

    fn string(key: &str, text: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(text.into())) }),
            ..Default::default()
        }
    }

    fn request() -> ExportTraceServiceRequest {
        let array = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue { value: Some(any_value::Value::IntValue(-1)) },
                    AnyValue { value: None },
                    AnyValue {
                        value: Some(any_value::Value::KvlistValue(KeyValueList {
                            values: vec![string("k", "v"), KeyValue { key: "empty".into(), ..Default::default() }],
                        })),
                    },
                ],
            })),
        };
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            trace_state: "a=b".into(),
            parent_span_id: vec![3; 8],
            flags: 0x301,
            name: "op".into(),
            kind: 3,
            start_time_unix_nano: 10,
            end_time_unix_nano: 20,
            attributes: vec![
                string("s", "x"),
                KeyValue { key: "a".into(), value: Some(array), ..Default::default() },
                KeyValue {
                    key: "d".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::DoubleValue(1.5)) }),
                    ..Default::default()
                },
                KeyValue {
                    key: "b".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::BoolValue(true)) }),
                    ..Default::default()
                },
                KeyValue {
                    key: "y".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::BytesValue(vec![9, 8])) }),
                    ..Default::default()
                },
                KeyValue { key: "none".into(), value: None, ..Default::default() },
            ],
            dropped_attributes_count: 1,
            events: vec![span::Event {
                time_unix_nano: 15,
                name: "e".into(),
                attributes: vec![string("x", "y")],
                dropped_attributes_count: 2,
            }],
            dropped_events_count: 3,
            links: vec![
                span::Link {
                    trace_id: vec![4; 16],
                    span_id: vec![5; 8],
                    trace_state: "t".into(),
                    attributes: vec![string("l", "m")],
                    dropped_attributes_count: 4,
                    flags: 1,
                },
                span::Link { trace_id: vec![4; 3], span_id: vec![5; 8], ..Default::default() },
            ],
            dropped_links_count: 5,
            status: Some(Status { message: "boom".into(), code: 2 }),
        };
        let mut refused = span.clone();
        refused.span_id = vec![0; 8];
        ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![string("service.name", "api")],
                        dropped_attributes_count: 7,
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "lib".into(),
                            version: "1".into(),
                            attributes: vec![string("q", "r")],
                            dropped_attributes_count: 8,
                        }),
                        spans: vec![span, refused],
                        schema_url: "s1".into(),
                    }],
                    schema_url: "s2".into(),
                },
                ResourceSpans { resource: None, scope_spans: vec![ScopeSpans::default()], schema_url: String::new() },
            ],
        }
    }

    #[test]
    fn decodes_what_a_protobuf_library_decodes() {
        let bytes = request().encode_to_vec();
        same_as_prost(&bytes).unwrap();
        let translation = decode_export(&bytes).unwrap();
        assert_eq!(translation.received_spans, 2);
        assert_eq!(translation.refused_spans(), 1);
        assert_eq!(translation.dropped_links, 1);
        assert_eq!(translation.batch.len(), 1);
        same_as_prost(&[]).unwrap();
    }

    #[test]
    fn repeated_fields_merge_as_protobuf_merges_them() {
        let mut bytes = request().encode_to_vec();
        // The whole request again: twice the groups.
        bytes.extend_from_slice(&request().encode_to_vec());
        same_as_prost(&bytes).unwrap();

        // A span whose scalar, status, attribute value and list fields come twice.
        let mut span = Vec::new();
        put_bytes_field(&mut span, 1, &[7; 16]);
        put_bytes_field(&mut span, 2, &[8; 8]);
        put_bytes_field(&mut span, 5, b"first");
        put_bytes_field(&mut span, 5, b"second");
        let mut status = Vec::new();
        put_bytes_field(&mut status, 2, b"message");
        put_bytes_field(&mut span, 15, &status);
        let mut status = Vec::new();
        put_varint_field(&mut status, 3, 2);
        put_bytes_field(&mut span, 15, &status);
        let any = |value: &[u8], field: u32| {
            let mut any = Vec::new();
            put_bytes_field(&mut any, field, value);
            any
        };
        let mut element = Vec::new();
        put_varint_field(&mut element, 3, 5);
        let array = any(&any(&element, 1), 5);
        let mut key_value = Vec::new();
        put_bytes_field(&mut key_value, 1, b"list");
        put_bytes_field(&mut key_value, 2, &array);
        put_bytes_field(&mut key_value, 2, &array);
        put_bytes_field(&mut span, 9, &key_value);
        let mut replaced = Vec::new();
        put_bytes_field(&mut replaced, 1, b"replaced");
        put_bytes_field(&mut replaced, 2, &array);
        put_bytes_field(&mut replaced, 2, &any(b"text", 1));
        put_bytes_field(&mut span, 9, &replaced);
        // An unknown field of every wire type but groups.
        put_varint_field(&mut span, 99, 1);
        put_bytes_field(&mut span, 100, b"?");
        let mut scope_spans = Vec::new();
        put_bytes_field(&mut scope_spans, 2, &span);
        let mut resource = Vec::new();
        put_bytes_field(&mut resource, 1, &string("service.name", "a").encode_to_vec());
        let mut resource_spans = Vec::new();
        // The resource after the scopes, and twice.
        put_bytes_field(&mut resource_spans, 2, &scope_spans);
        put_bytes_field(&mut resource_spans, 1, &resource);
        put_bytes_field(&mut resource_spans, 1, &resource);
        let mut request = Vec::new();
        put_bytes_field(&mut request, 1, &resource_spans);
        same_as_prost(&request).unwrap();
        let translation = decode_export(&request).unwrap();
        let resource = &translation.batch[0];
        assert_eq!(resource.resource.attributes.len(), 2);
        let span = &resource.scope_spans[0].spans[0];
        assert_eq!(span.name, "second");
        assert_eq!((span.status.code, span.status.message.as_str()), (StatusCode::Error, "message"));
        assert_eq!(span.attributes[0].1, AttrValue::Array(vec![AttrValue::Int(5), AttrValue::Int(5)]));
        assert_eq!(span.attributes[1].1, AttrValue::String("text".into()));
    }

    use tripod_storage::traces::StatusCode;

    #[test]
    fn refuses_what_a_protobuf_library_refuses() {
        let mut wrong_type = Vec::new();
        put_varint_field(&mut wrong_type, 1, 5);
        assert!(same_as_prost(&wrong_type).unwrap_err().starts_with("a known field has the wrong wire type"));

        let mut name = Vec::new();
        put_bytes_field(&mut name, 1, &[1; 16]);
        put_bytes_field(&mut name, 5, &[0xff, 0xfe]);
        let mut scope_spans = Vec::new();
        put_bytes_field(&mut scope_spans, 2, &name);
        let mut resource_spans = Vec::new();
        put_bytes_field(&mut resource_spans, 2, &scope_spans);
        let mut request = Vec::new();
        put_bytes_field(&mut request, 1, &resource_spans);
        assert!(same_as_prost(&request).unwrap_err().starts_with("a string is not valid UTF-8"));

        assert!(same_as_prost(&[0x0a, 0x05, 0x01]).is_err());
        assert!(same_as_prost(&[0x08]).is_err());
    }

    /// A request whose one span has an attribute of `arrays` nested arrays.
    fn nested_arrays(arrays: usize) -> Vec<u8> {
        let mut value = AnyValue { value: Some(any_value::Value::StringValue("leaf".into())) };
        for _ in 0..arrays {
            value = AnyValue { value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![value] })) };
        }
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![1; 8],
            attributes: vec![KeyValue { key: "deep".into(), value: Some(value), ..Default::default() }],
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    }

    #[test]
    fn messages_nest_as_deep_as_a_protobuf_library_allows() {
        // The span is at depth 3, its attribute at 4, the value at 5, each array two more.
        let deepest = (100 - 5) / 2;
        assert_eq!(same_as_prost(&nested_arrays(deepest)).map(|_| ()), Ok(()));
        let error = same_as_prost(&nested_arrays(deepest + 1)).unwrap_err();
        assert!(error.starts_with("messages are nested too deeply"), "{error}");
    }
}
