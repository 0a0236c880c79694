//! The traces store's WAL record, which is also how the head holds spans: one record per
//! append, a batch of one tenant numbered with the store's next sequence number, laid out row
//! by row as OTLP groups it (resources, their scopes, their spans). The head keeps the record's
//! bytes as they went to the WAL and points at spans by offset, so an append encodes each span
//! once and copies nothing more. Layout in `docs/format/trace-blocks.md` ("WAL record").
//!
//! Readers parse spans as borrowed views ([`SpanView`]) that check the framing and UTF-8, and
//! turn the few they return into owned [`Span`]s.

use crate::codec::{
    get_array, get_bytes, get_str, get_u8, get_u64, get_uvarint, get_varint, put_bytes, put_uvarint, put_varint,
};

use super::{
    AttrValue, Attributes, Resource, ResourceSpans, Scope, Span, SpanEvent, SpanId, SpanKind, SpanLink, SpanStatus,
    StatusCode, TraceId,
};

/// Deepest nesting of array and key/value-list values a reader follows: a bound on recursion
/// for damaged or hostile input.
pub(crate) const MAX_VALUE_DEPTH: u32 = 64;

/// Value tags of the row encoding.
const TAG_STRING: u8 = 0;
const TAG_FALSE: u8 = 1;
const TAG_TRUE: u8 = 2;
const TAG_INT: u8 = 3;
const TAG_DOUBLE: u8 = 4;
const TAG_BYTES: u8 = 5;
const TAG_ARRAY: u8 = 6;
const TAG_KVLIST: u8 = 7;

/// A record that could not be decoded: the WAL checksum passed, so this is a bug or a record
/// written by a newer version; replay counts and skips it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MalformedRecord;

type Parsed<T> = Result<T, MalformedRecord>;

fn need<T>(value: Option<T>) -> Parsed<T> {
    value.ok_or(MalformedRecord)
}

fn get_u32_varint(input: &mut &[u8]) -> Parsed<u32> {
    u32::try_from(need(get_uvarint(input))?).map_err(|_| MalformedRecord)
}

// ---------------------------------------------------------------------------------------------
// Encoding

pub(crate) fn put_value(out: &mut Vec<u8>, value: &AttrValue) {
    match value {
        AttrValue::String(text) => {
            out.push(TAG_STRING);
            put_bytes(out, text.as_bytes());
        }
        AttrValue::Bool(false) => out.push(TAG_FALSE),
        AttrValue::Bool(true) => out.push(TAG_TRUE),
        AttrValue::Int(number) => {
            out.push(TAG_INT);
            put_varint(out, *number);
        }
        AttrValue::Double(number) => {
            out.push(TAG_DOUBLE);
            out.extend_from_slice(&number.to_bits().to_le_bytes());
        }
        AttrValue::Bytes(bytes) => {
            out.push(TAG_BYTES);
            put_bytes(out, bytes);
        }
        AttrValue::Array(values) => {
            out.push(TAG_ARRAY);
            put_uvarint(out, values.len() as u64);
            for value in values {
                put_value(out, value);
            }
        }
        AttrValue::KvList(pairs) => {
            out.push(TAG_KVLIST);
            put_attrs(out, pairs);
        }
    }
}

pub(crate) fn put_attrs(out: &mut Vec<u8>, attributes: &[(String, AttrValue)]) {
    put_uvarint(out, attributes.len() as u64);
    for (key, value) in attributes {
        put_bytes(out, key.as_bytes());
        put_value(out, value);
    }
}

pub(crate) fn put_resource(out: &mut Vec<u8>, resource: &Resource, schema_url: &str) {
    put_attrs(out, &resource.attributes);
    put_uvarint(out, u64::from(resource.dropped_attributes_count));
    put_bytes(out, schema_url.as_bytes());
}

pub(crate) fn put_scope(out: &mut Vec<u8>, scope: &Scope, schema_url: &str) {
    put_bytes(out, scope.name.as_bytes());
    put_bytes(out, scope.version.as_bytes());
    put_attrs(out, &scope.attributes);
    put_uvarint(out, u64::from(scope.dropped_attributes_count));
    put_bytes(out, schema_url.as_bytes());
}

pub(crate) fn put_span(out: &mut Vec<u8>, span: &Span) {
    out.extend_from_slice(&span.trace_id);
    out.extend_from_slice(&span.span_id);
    match &span.parent_span_id {
        Some(parent) => {
            out.push(1);
            out.extend_from_slice(parent);
        }
        None => out.push(0),
    }
    put_bytes(out, span.trace_state.as_bytes());
    put_bytes(out, span.name.as_bytes());
    out.push(span.kind.as_u8());
    out.push(span.status.code.as_u8());
    put_bytes(out, span.status.message.as_bytes());
    put_uvarint(out, u64::from(span.flags));
    put_varint(out, span.start_ns);
    put_varint(out, span.end_ns.wrapping_sub(span.start_ns));
    put_attrs(out, &span.attributes);
    put_uvarint(out, u64::from(span.dropped_attributes_count));
    put_uvarint(out, span.events.len() as u64);
    for event in &span.events {
        put_varint(out, event.time_ns.wrapping_sub(span.start_ns));
        put_bytes(out, event.name.as_bytes());
        put_attrs(out, &event.attributes);
        put_uvarint(out, u64::from(event.dropped_attributes_count));
    }
    put_uvarint(out, u64::from(span.dropped_events_count));
    put_uvarint(out, span.links.len() as u64);
    for link in &span.links {
        out.extend_from_slice(&link.trace_id);
        out.extend_from_slice(&link.span_id);
        put_bytes(out, link.trace_state.as_bytes());
        put_attrs(out, &link.attributes);
        put_uvarint(out, u64::from(link.dropped_attributes_count));
        put_uvarint(out, u64::from(link.flags));
    }
    put_uvarint(out, u64::from(span.dropped_links_count));
}

/// Where a span of a record sits, and what the head indexes it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpanLocation {
    /// Offsets into the record of the span, of its resource group and of its scope group.
    pub span_offset: u32,
    pub resource_offset: u32,
    pub scope_offset: u32,
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub start_ns: i64,
    pub end_ns: i64,
}

/// Encodes a record of the spans of `batch` that `keep` keeps (one flag per span, in batch
/// order); resource and scope groups left without spans are left out. Returns the number of
/// spans written; their locations are appended to `locations`.
pub(crate) fn encode_record(
    out: &mut Vec<u8>,
    seq: u64,
    tenant: &str,
    batch: &[ResourceSpans],
    keep: &[bool],
    locations: &mut Vec<SpanLocation>,
) -> usize {
    out.clear();
    put_uvarint(out, seq);
    put_bytes(out, tenant.as_bytes());
    let mut flag_index = 0usize;
    let mut kept_per_scope: Vec<usize> = Vec::new();
    let mut kept_groups = 0u64;
    for resource in batch {
        let mut any = false;
        for scope in &resource.scope_spans {
            let kept = keep[flag_index..flag_index + scope.spans.len()].iter().filter(|flag| **flag).count();
            flag_index += scope.spans.len();
            kept_per_scope.push(kept);
            any |= kept > 0;
        }
        kept_groups += u64::from(any);
    }
    put_uvarint(out, kept_groups);
    let mut flag_index = 0usize;
    let mut scope_index = 0usize;
    let mut written = 0usize;
    for resource in batch {
        let scopes = &kept_per_scope[scope_index..scope_index + resource.scope_spans.len()];
        scope_index += resource.scope_spans.len();
        let kept_scopes = scopes.iter().filter(|kept| **kept > 0).count();
        if kept_scopes == 0 {
            flag_index += resource.scope_spans.iter().map(|scope| scope.spans.len()).sum::<usize>();
            continue;
        }
        let resource_offset = out.len() as u32;
        put_resource(out, &resource.resource, &resource.schema_url);
        put_uvarint(out, kept_scopes as u64);
        for (scope, kept) in resource.scope_spans.iter().zip(scopes) {
            if *kept == 0 {
                flag_index += scope.spans.len();
                continue;
            }
            let scope_offset = out.len() as u32;
            put_scope(out, &scope.scope, &scope.schema_url);
            put_uvarint(out, *kept as u64);
            for span in &scope.spans {
                let flag = keep[flag_index];
                flag_index += 1;
                if !flag {
                    continue;
                }
                locations.push(SpanLocation {
                    span_offset: out.len() as u32,
                    resource_offset,
                    scope_offset,
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    start_ns: span.start_ns,
                    end_ns: span.end_ns,
                });
                put_span(out, span);
                written += 1;
            }
        }
    }
    written
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Reads the sequence number and tenant at the start of a record.
pub(crate) fn decode_header(mut input: &[u8]) -> Parsed<(u64, &str)> {
    let seq = need(get_uvarint(&mut input))?;
    let tenant = need(get_str(&mut input))?;
    Ok((seq, tenant))
}

/// Checks one encoded value's framing (and, with `utf8`, its strings), depth-bounded.
fn skip_value(input: &mut &[u8], depth: u32, utf8: bool) -> Parsed<()> {
    if depth > MAX_VALUE_DEPTH {
        return Err(MalformedRecord);
    }
    match need(get_u8(input))? {
        TAG_STRING => {
            skip_str(input, utf8)?;
        }
        TAG_FALSE | TAG_TRUE => {}
        TAG_INT => {
            need(get_varint(input))?;
        }
        TAG_DOUBLE => {
            need(get_u64(input))?;
        }
        TAG_BYTES => {
            need(get_bytes(input))?;
        }
        TAG_ARRAY => {
            let count = need(get_uvarint(input))?;
            for _ in 0..count {
                skip_value(input, depth + 1, utf8)?;
            }
        }
        TAG_KVLIST => skip_attrs_inner(input, depth + 1, utf8)?,
        _ => return Err(MalformedRecord),
    }
    Ok(())
}

fn skip_str(input: &mut &[u8], utf8: bool) -> Parsed<()> {
    if utf8 {
        need(get_str(input))?;
    } else {
        need(get_bytes(input))?;
    }
    Ok(())
}

fn skip_attrs_inner(input: &mut &[u8], depth: u32, utf8: bool) -> Parsed<()> {
    let count = need(get_uvarint(input))?;
    for _ in 0..count {
        skip_str(input, utf8)?;
        skip_value(input, depth, utf8)?;
    }
    Ok(())
}

/// An encoded attribute list, checked.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AttrsSlice<'a>(&'a [u8]);

/// An attribute list's slice, its framing and nesting checked; its strings are checked as
/// they are read ([`AttrsSlice::for_each`], [`AttrsSlice::to_owned`]) or by [`walk_record`].
fn get_attrs<'a>(input: &mut &'a [u8]) -> Parsed<AttrsSlice<'a>> {
    let start = *input;
    skip_attrs_inner(input, 0, false)?;
    Ok(AttrsSlice(&start[..start.len() - input.len()]))
}

impl AttrsSlice<'_> {
    /// Checks every string of the list.
    fn check_utf8(self) -> Parsed<()> {
        skip_attrs_inner(&mut &self.0[..], 0, true)
    }
}

fn decode_value(input: &mut &[u8]) -> Parsed<AttrValue> {
    Ok(match need(get_u8(input))? {
        TAG_STRING => AttrValue::String(need(get_str(input))?.to_string()),
        TAG_FALSE => AttrValue::Bool(false),
        TAG_TRUE => AttrValue::Bool(true),
        TAG_INT => AttrValue::Int(need(get_varint(input))?),
        TAG_DOUBLE => AttrValue::Double(f64::from_bits(need(get_u64(input))?)),
        TAG_BYTES => AttrValue::Bytes(need(get_bytes(input))?.to_vec()),
        TAG_ARRAY => {
            let count = need(get_uvarint(input))?;
            let mut values = Vec::with_capacity(count.min(input.len() as u64) as usize);
            for _ in 0..count {
                values.push(decode_value(input)?);
            }
            AttrValue::Array(values)
        }
        TAG_KVLIST => AttrValue::KvList(decode_attrs_unsorted(input)?),
        _ => return Err(MalformedRecord),
    })
}

fn decode_attrs_unsorted(input: &mut &[u8]) -> Parsed<Attributes> {
    let count = need(get_uvarint(input))?;
    let mut out = Vec::with_capacity(count.min(input.len() as u64) as usize);
    for _ in 0..count {
        let key = need(get_str(input))?.to_string();
        out.push((key, decode_value(input)?));
    }
    Ok(out)
}

/// An attribute value as readers pass it around without copying: scalars borrowed, other
/// values (bytes, arrays, key/value lists, rare) owned or borrowed whole.
#[derive(Debug, Clone)]
pub(crate) enum ValueRef<'a> {
    Str(&'a str),
    Int(i64),
    Double(f64),
    Bool(bool),
    Other(std::borrow::Cow<'a, AttrValue>),
}

impl<'a> ValueRef<'a> {
    pub fn from_value(value: &'a AttrValue) -> ValueRef<'a> {
        match value {
            AttrValue::String(text) => ValueRef::Str(text),
            AttrValue::Int(number) => ValueRef::Int(*number),
            AttrValue::Double(number) => ValueRef::Double(*number),
            AttrValue::Bool(flag) => ValueRef::Bool(*flag),
            other => ValueRef::Other(std::borrow::Cow::Borrowed(other)),
        }
    }
}

impl<'a> AttrsSlice<'a> {
    /// Calls `each` with every attribute, in stored order, scalars borrowed.
    pub fn for_each(self, mut each: impl FnMut(&'a str, ValueRef<'a>)) -> Parsed<()> {
        let mut input = self.0;
        let count = need(get_uvarint(&mut input))?;
        for _ in 0..count {
            let key = need(get_str(&mut input))?;
            let value = match input.first() {
                Some(&TAG_STRING) => {
                    input = &input[1..];
                    ValueRef::Str(need(get_str(&mut input))?)
                }
                Some(&TAG_FALSE) => {
                    input = &input[1..];
                    ValueRef::Bool(false)
                }
                Some(&TAG_TRUE) => {
                    input = &input[1..];
                    ValueRef::Bool(true)
                }
                Some(&TAG_INT) => {
                    input = &input[1..];
                    ValueRef::Int(need(get_varint(&mut input))?)
                }
                Some(&TAG_DOUBLE) => {
                    input = &input[1..];
                    ValueRef::Double(f64::from_bits(need(get_u64(&mut input))?))
                }
                _ => ValueRef::Other(std::borrow::Cow::Owned(decode_value(&mut input)?)),
            };
            each(key, value);
        }
        Ok(())
    }

    /// The attributes, sorted by key (stable). Nesting was bounded when the slice was checked.
    pub fn to_owned(self) -> Parsed<Attributes> {
        let mut input = self.0;
        let mut attributes = decode_attrs_unsorted(&mut input)?;
        attributes.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(attributes)
    }
}

/// A span of a record, borrowed and checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpanView<'a> {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub trace_state: &'a str,
    pub name: &'a str,
    pub kind: SpanKind,
    pub status_code: StatusCode,
    pub status_message: &'a str,
    pub flags: u32,
    pub start_ns: i64,
    pub end_ns: i64,
    pub attributes: AttrsSlice<'a>,
    pub dropped_attributes_count: u32,
    /// The encoded events, `event_count` of them.
    events: &'a [u8],
    event_count: u32,
    pub dropped_events_count: u32,
    links: &'a [u8],
    link_count: u32,
    pub dropped_links_count: u32,
}

pub(crate) fn get_span<'a>(input: &mut &'a [u8]) -> Parsed<SpanView<'a>> {
    let trace_id = need(get_array::<16>(input))?;
    let span_id = need(get_array::<8>(input))?;
    let parent_span_id = match need(get_u8(input))? {
        0 => None,
        1 => Some(need(get_array::<8>(input))?),
        _ => return Err(MalformedRecord),
    };
    let trace_state = need(get_str(input))?;
    let name = need(get_str(input))?;
    let kind = need(SpanKind::from_u8(need(get_u8(input))?))?;
    let status_code = need(StatusCode::from_u8(need(get_u8(input))?))?;
    let status_message = need(get_str(input))?;
    let flags = get_u32_varint(input)?;
    let start_ns = need(get_varint(input))?;
    let end_ns = start_ns.wrapping_add(need(get_varint(input))?);
    let attributes = get_attrs(input)?;
    let dropped_attributes_count = get_u32_varint(input)?;
    let event_count = get_u32_varint(input)?;
    let events_start = *input;
    for _ in 0..event_count {
        need(get_varint(input))?;
        need(get_str(input))?;
        get_attrs(input)?;
        get_u32_varint(input)?;
    }
    let events = &events_start[..events_start.len() - input.len()];
    let dropped_events_count = get_u32_varint(input)?;
    let link_count = get_u32_varint(input)?;
    let links_start = *input;
    for _ in 0..link_count {
        need(get_array::<16>(input))?;
        need(get_array::<8>(input))?;
        need(get_str(input))?;
        get_attrs(input)?;
        get_u32_varint(input)?;
        get_u32_varint(input)?;
    }
    let links = &links_start[..links_start.len() - input.len()];
    let dropped_links_count = get_u32_varint(input)?;
    Ok(SpanView {
        trace_id,
        span_id,
        parent_span_id,
        trace_state,
        name,
        kind,
        status_code,
        status_message,
        flags,
        start_ns,
        end_ns,
        attributes,
        dropped_attributes_count,
        events,
        event_count,
        dropped_events_count,
        links,
        link_count,
        dropped_links_count,
    })
}

impl<'a> SpanView<'a> {
    /// Checks the strings of the span's attributes, events and links (the rest were checked
    /// when the view was made).
    fn check_utf8(&self) -> Parsed<()> {
        self.attributes.check_utf8()?;
        self.events()?;
        self.links()?;
        Ok(())
    }

    /// The events, owned (most spans have none, so nothing is allocated for them).
    pub fn events(&self) -> Parsed<Vec<SpanEvent>> {
        let mut events = Vec::with_capacity(self.event_count as usize);
        let mut input = self.events;
        for _ in 0..self.event_count {
            let time_ns = self.start_ns.wrapping_add(need(get_varint(&mut input))?);
            let name = need(get_str(&mut input))?.to_string();
            let attributes = get_attrs(&mut input)?.to_owned()?;
            let dropped_attributes_count = get_u32_varint(&mut input)?;
            events.push(SpanEvent { time_ns, name, attributes, dropped_attributes_count });
        }
        Ok(events)
    }

    /// The links, owned.
    pub fn links(&self) -> Parsed<Vec<SpanLink>> {
        let mut links = Vec::with_capacity(self.link_count as usize);
        let mut input = self.links;
        for _ in 0..self.link_count {
            let trace_id = need(get_array::<16>(&mut input))?;
            let span_id = need(get_array::<8>(&mut input))?;
            let trace_state = need(get_str(&mut input))?.to_string();
            let attributes = get_attrs(&mut input)?.to_owned()?;
            let dropped_attributes_count = get_u32_varint(&mut input)?;
            let flags = get_u32_varint(&mut input)?;
            links.push(SpanLink { trace_id, span_id, trace_state, attributes, dropped_attributes_count, flags });
        }
        Ok(links)
    }

    pub fn to_owned(self) -> Parsed<Span> {
        let events = self.events()?;
        let links = self.links()?;
        Ok(Span {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent_span_id: self.parent_span_id,
            trace_state: self.trace_state.to_string(),
            name: self.name.to_string(),
            kind: self.kind,
            start_ns: self.start_ns,
            end_ns: self.end_ns,
            status: SpanStatus { code: self.status_code, message: self.status_message.to_string() },
            attributes: self.attributes.to_owned()?,
            events,
            links,
            flags: self.flags,
            dropped_attributes_count: self.dropped_attributes_count,
            dropped_events_count: self.dropped_events_count,
            dropped_links_count: self.dropped_links_count,
        })
    }
}

/// A resource group's resource and schema URL, borrowed and checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResourceView<'a> {
    /// The resource's bytes in the record: equal bytes, equal resource.
    pub encoded: &'a [u8],
    pub attributes: AttrsSlice<'a>,
    pub dropped_attributes_count: u32,
    pub schema_url: &'a str,
}

fn get_resource<'a>(input: &mut &'a [u8]) -> Parsed<ResourceView<'a>> {
    let start = *input;
    let attributes = get_attrs(input)?;
    let dropped_attributes_count = get_u32_varint(input)?;
    let schema_url = need(get_str(input))?;
    let encoded = &start[..start.len() - input.len()];
    Ok(ResourceView { encoded, attributes, dropped_attributes_count, schema_url })
}

impl ResourceView<'_> {
    pub fn to_owned(self) -> Parsed<(Resource, String)> {
        let resource = Resource {
            attributes: self.attributes.to_owned()?,
            dropped_attributes_count: self.dropped_attributes_count,
        };
        Ok((resource, self.schema_url.to_string()))
    }
}

/// A scope group's scope and schema URL, borrowed and checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScopeView<'a> {
    /// The scope's bytes in the record.
    pub encoded: &'a [u8],
    pub name: &'a str,
    pub version: &'a str,
    pub attributes: AttrsSlice<'a>,
    pub dropped_attributes_count: u32,
    pub schema_url: &'a str,
}

fn get_scope<'a>(input: &mut &'a [u8]) -> Parsed<ScopeView<'a>> {
    let start = *input;
    let name = need(get_str(input))?;
    let version = need(get_str(input))?;
    let attributes = get_attrs(input)?;
    let dropped_attributes_count = get_u32_varint(input)?;
    let schema_url = need(get_str(input))?;
    let encoded = &start[..start.len() - input.len()];
    Ok(ScopeView { encoded, name, version, attributes, dropped_attributes_count, schema_url })
}

impl ScopeView<'_> {
    pub fn to_owned(self) -> Parsed<(Scope, String)> {
        let scope = Scope {
            name: self.name.to_string(),
            version: self.version.to_string(),
            attributes: self.attributes.to_owned()?,
            dropped_attributes_count: self.dropped_attributes_count,
        };
        Ok((scope, self.schema_url.to_string()))
    }
}

fn at(record: &[u8], offset: u32) -> Parsed<&[u8]> {
    record.get(offset as usize..).ok_or(MalformedRecord)
}

pub(crate) fn resource_at(record: &[u8], offset: u32) -> Parsed<ResourceView<'_>> {
    get_resource(&mut at(record, offset)?)
}

pub(crate) fn scope_at(record: &[u8], offset: u32) -> Parsed<ScopeView<'_>> {
    get_scope(&mut at(record, offset)?)
}

pub(crate) fn span_at(record: &[u8], offset: u32) -> Parsed<SpanView<'_>> {
    get_span(&mut at(record, offset)?)
}

/// Checks a whole record and calls `each` with the location of every span, in order. Returns
/// the sequence number and tenant.
pub(crate) fn walk_record(record: &[u8], mut each: impl FnMut(SpanLocation)) -> Parsed<(u64, &str)> {
    if record.len() > u32::MAX as usize {
        return Err(MalformedRecord);
    }
    let mut input = record;
    let seq = need(get_uvarint(&mut input))?;
    let tenant = need(get_str(&mut input))?;
    let offset = |input: &[u8]| (record.len() - input.len()) as u32;
    let groups = need(get_uvarint(&mut input))?;
    for _ in 0..groups {
        let resource_offset = offset(input);
        get_resource(&mut input)?.attributes.check_utf8()?;
        let scopes = need(get_uvarint(&mut input))?;
        for _ in 0..scopes {
            let scope_offset = offset(input);
            get_scope(&mut input)?.attributes.check_utf8()?;
            let spans = need(get_uvarint(&mut input))?;
            for _ in 0..spans {
                let span_offset = offset(input);
                let span = get_span(&mut input)?;
                span.check_utf8()?;
                each(SpanLocation {
                    span_offset,
                    resource_offset,
                    scope_offset,
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    start_ns: span.start_ns,
                    end_ns: span.end_ns,
                });
            }
        }
    }
    if !input.is_empty() {
        return Err(MalformedRecord);
    }
    Ok((seq, tenant))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::traces::ScopeSpans;

    /// A span with every field set, nested values included.
    pub(crate) fn full_span(trace: u8, span: u8, parent: Option<u8>) -> Span {
        Span {
            trace_id: [trace; 16],
            span_id: [span; 8],
            parent_span_id: parent.map(|p| [p; 8]),
            trace_state: "vendor=1".into(),
            name: format!("op-{span}"),
            kind: SpanKind::Server,
            start_ns: 1_000 + i64::from(span),
            end_ns: 900 + i64::from(span),
            status: SpanStatus { code: StatusCode::Error, message: "boom".into() },
            attributes: vec![
                ("a.int".into(), AttrValue::Int(-7)),
                ("b.double".into(), AttrValue::Double(2.5)),
                ("c.bool".into(), AttrValue::Bool(true)),
                ("d.bytes".into(), AttrValue::Bytes(vec![0, 255, 7])),
                (
                    "e.array".into(),
                    AttrValue::Array(vec![
                        AttrValue::String("x".into()),
                        AttrValue::KvList(vec![("k".into(), AttrValue::Bool(false))]),
                    ]),
                ),
                ("f.string".into(), AttrValue::String("ü".into())),
            ],
            events: vec![SpanEvent {
                time_ns: 1_500,
                name: "exception".into(),
                attributes: vec![("exception.message".into(), AttrValue::String("no".into()))],
                dropped_attributes_count: 1,
            }],
            links: vec![SpanLink {
                trace_id: [9; 16],
                span_id: [8; 8],
                trace_state: "t".into(),
                attributes: vec![("l".into(), AttrValue::Int(1))],
                dropped_attributes_count: 2,
                flags: 1,
            }],
            flags: 257,
            dropped_attributes_count: 3,
            dropped_events_count: 4,
            dropped_links_count: 5,
        }
    }

    #[test]
    fn records_round_trip_and_skip_what_keep_refuses() {
        let batch = vec![
            ResourceSpans {
                resource: Resource {
                    attributes: vec![("service.name".into(), AttrValue::String("api".into()))],
                    dropped_attributes_count: 1,
                },
                schema_url: "https://schema/1".into(),
                scope_spans: vec![
                    ScopeSpans {
                        scope: Scope {
                            name: "lib".into(),
                            version: "1.0".into(),
                            attributes: vec![("s".into(), AttrValue::Int(1))],
                            dropped_attributes_count: 0,
                        },
                        schema_url: "https://schema/2".into(),
                        spans: vec![full_span(1, 1, None), full_span(1, 2, Some(1))],
                    },
                    ScopeSpans {
                        scope: Scope::default(),
                        schema_url: String::new(),
                        spans: vec![full_span(2, 3, None)],
                    },
                ],
            },
            ResourceSpans::default(),
        ];
        let mut out = Vec::new();
        let mut locations = Vec::new();
        let written = encode_record(&mut out, 42, "tenant-a", &batch, &[true, false, true], &mut locations);
        assert_eq!(written, 2);
        let mut walked = Vec::new();
        let (seq, tenant) = walk_record(&out, |location| walked.push(location)).unwrap();
        assert_eq!((seq, tenant), (42, "tenant-a"));
        assert_eq!(walked, locations);
        assert_eq!(decode_header(&out).unwrap(), (42, "tenant-a"));

        let span = span_at(&out, locations[1].span_offset).unwrap().to_owned().unwrap();
        let mut expected = full_span(2, 3, None);
        expected.attributes.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(span, expected);
        let (resource, schema) = resource_at(&out, locations[0].resource_offset).unwrap().to_owned().unwrap();
        assert_eq!((resource, schema.as_str()), (batch[0].resource.clone(), "https://schema/1"));
        let (scope, schema) = scope_at(&out, locations[0].scope_offset).unwrap().to_owned().unwrap();
        assert_eq!((scope.name.as_str(), schema.as_str()), ("lib", "https://schema/2"));
        let (scope, schema) = scope_at(&out, locations[1].scope_offset).unwrap().to_owned().unwrap();
        assert_eq!((scope, schema), (Scope::default(), String::new()));

        for cut in 0..out.len() {
            assert!(walk_record(&out[..cut], |_| {}).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let mut value = AttrValue::Int(1);
        for _ in 0..(MAX_VALUE_DEPTH + 2) {
            value = AttrValue::Array(vec![value]);
        }
        let mut span = full_span(1, 1, None);
        span.attributes = vec![("deep".into(), value)];
        let batch = vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans: vec![span], ..ScopeSpans::default() }],
            ..ResourceSpans::default()
        }];
        let mut out = Vec::new();
        encode_record(&mut out, 1, "t", &batch, &[true], &mut Vec::new());
        assert!(walk_record(&out, |_| {}).is_err());
    }
}
