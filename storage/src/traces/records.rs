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
    AttrValue, Attributes, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanEvent, SpanId, SpanKind, SpanLink,
    SpanStatus, StatusCode, TraceId,
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

/// The fields of a span that come before its attributes, as the record lays them out.
#[derive(Debug, Clone, Copy)]
pub struct SpanHead<'a> {
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
}

impl<'a> SpanHead<'a> {
    /// The head of an owned span.
    pub fn of(span: &'a Span) -> SpanHead<'a> {
        SpanHead {
            trace_id: span.trace_id,
            span_id: span.span_id,
            parent_span_id: span.parent_span_id,
            trace_state: &span.trace_state,
            name: &span.name,
            kind: span.kind,
            status_code: span.status.code,
            status_message: &span.status.message,
            flags: span.flags,
            start_ns: span.start_ns,
            end_ns: span.end_ns,
        }
    }
}

fn put_span_head(out: &mut Vec<u8>, head: &SpanHead<'_>) {
    out.extend_from_slice(&head.trace_id);
    out.extend_from_slice(&head.span_id);
    match &head.parent_span_id {
        Some(parent) => {
            out.push(1);
            out.extend_from_slice(parent);
        }
        None => out.push(0),
    }
    put_bytes(out, head.trace_state.as_bytes());
    put_bytes(out, head.name.as_bytes());
    out.push(head.kind.as_u8());
    out.push(head.status_code.as_u8());
    put_bytes(out, head.status_message.as_bytes());
    put_uvarint(out, u64::from(head.flags));
    put_varint(out, head.start_ns);
    put_varint(out, head.end_ns.wrapping_sub(head.start_ns));
}

fn put_event_head(out: &mut Vec<u8>, span_start_ns: i64, time_ns: i64, name: &str) {
    put_varint(out, time_ns.wrapping_sub(span_start_ns));
    put_bytes(out, name.as_bytes());
}

fn put_link_head(out: &mut Vec<u8>, trace_id: &TraceId, span_id: &SpanId, trace_state: &str) {
    out.extend_from_slice(trace_id);
    out.extend_from_slice(span_id);
    put_bytes(out, trace_state.as_bytes());
}

fn put_link_tail(out: &mut Vec<u8>, dropped_attributes_count: u32, flags: u32) {
    put_uvarint(out, u64::from(dropped_attributes_count));
    put_uvarint(out, u64::from(flags));
}

pub(crate) fn put_span(out: &mut Vec<u8>, span: &Span) {
    put_span_head(out, &SpanHead::of(span));
    put_attrs(out, &span.attributes);
    put_uvarint(out, u64::from(span.dropped_attributes_count));
    put_uvarint(out, span.events.len() as u64);
    for event in &span.events {
        put_event_head(out, span.start_ns, event.time_ns, &event.name);
        put_attrs(out, &event.attributes);
        put_uvarint(out, u64::from(event.dropped_attributes_count));
    }
    put_uvarint(out, u64::from(span.dropped_events_count));
    put_uvarint(out, span.links.len() as u64);
    for link in &span.links {
        put_link_head(out, &link.trace_id, &link.span_id, &link.trace_state);
        put_attrs(out, &link.attributes);
        put_link_tail(out, link.dropped_attributes_count, link.flags);
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

/// Bytes the sequence number takes at the start of a record built by [`SpansRecordWriter`]: a
/// varint padded with continuation bytes to its longest form, so that the number can be filled
/// in when the append is numbered, without moving what follows.
const PADDED_SEQ_BYTES: usize = 10;

/// Writes `value` as a [`PADDED_SEQ_BYTES`]-byte varint over `out` (a value below 2^63).
fn put_padded_seq(out: &mut [u8], value: u64) {
    for (index, byte) in out.iter_mut().enumerate().take(PADDED_SEQ_BYTES) {
        let group = (value >> (7 * index)) as u8 & 0x7f;
        *byte = if index + 1 < PADDED_SEQ_BYTES { group | 0x80 } else { group };
    }
}

/// A spans record built directly by a producer (the OTLP protobuf decoder), without the owned
/// model: the producer calls the writer in the record's order and gives every count before
/// the items it counts. The writer refuses what [`encode_record`]'s callers refuse (all-zero
/// IDs, values nested deeper than [`MAX_VALUE_DEPTH`]); a refused writer finishes as `None`.
///
/// Order of calls: `resource`, its attributes, `resource_end`; per scope `scope`, its
/// attributes, `scope_end`; per span `span`, its attributes, `span_attributes_end`, per event
/// `event`, its attributes, `event_end`; `links`, per link `link`, its attributes, `link_end`;
/// `span_end`. An attribute is `key` then one value; a list value is `array` or `kvlist`, its
/// items (`key` then a value for each pair of a list), then `end_list`.
#[derive(Debug)]
pub struct SpansRecordWriter {
    out: Vec<u8>,
    locations: Vec<SpanLocation>,
    resource_offset: u32,
    scope_offset: u32,
    span_start_ns: i64,
    open_lists: u32,
    refused: bool,
}

/// A record built by [`SpansRecordWriter`], ready for [`crate::traces::TracesAppender::append_record`].
#[derive(Debug)]
pub struct SpansRecord {
    pub(crate) bytes: Vec<u8>,
    pub(crate) locations: Vec<SpanLocation>,
}

impl SpansRecord {
    /// The tenant the record is for.
    pub fn tenant(&self) -> &str {
        decode_header(&self.bytes).map(|(_, tenant)| tenant).unwrap_or_default()
    }

    /// Spans in the record.
    pub fn spans(&self) -> usize {
        self.locations.len()
    }

    /// The record `append` writes for `batch` (numbered 0); `None` if `append` would refuse
    /// some span of it.
    pub fn from_batch(tenant: &str, batch: &[ResourceSpans]) -> Option<SpansRecord> {
        use super::store::{attributes_depth_ok, span_valid};
        let valid = batch.iter().all(|resource| {
            attributes_depth_ok(&resource.resource.attributes)
                && resource
                    .scope_spans
                    .iter()
                    .all(|scope| attributes_depth_ok(&scope.scope.attributes) && scope.spans.iter().all(span_valid))
        });
        if !valid {
            return None;
        }
        let spans: usize = batch.iter().flat_map(|resource| &resource.scope_spans).map(|scope| scope.spans.len()).sum();
        let (mut bytes, mut locations) = (Vec::new(), Vec::new());
        encode_record(&mut bytes, 0, tenant, batch, &vec![true; spans], &mut locations);
        // Sequence number 0 is one byte; padded, like the writer's, so that it can be set.
        let shift = (PADDED_SEQ_BYTES - 1) as u32;
        let mut padded = vec![0; PADDED_SEQ_BYTES];
        put_padded_seq(&mut padded, 0);
        padded.extend_from_slice(&bytes[1..]);
        for location in &mut locations {
            location.span_offset += shift;
            location.resource_offset += shift;
            location.scope_offset += shift;
        }
        Some(SpansRecord { bytes: padded, locations })
    }

    /// The record numbered `seq`.
    pub(crate) fn set_seq(&mut self, seq: u64) {
        put_padded_seq(&mut self.bytes[..PADDED_SEQ_BYTES], seq);
    }

    /// The record's bytes after its sequence number and tenant.
    pub fn body(&self) -> &[u8] {
        let mut input = self.bytes.as_slice();
        let _ = get_uvarint(&mut input);
        let _ = get_str(&mut input);
        input
    }
}

impl SpansRecordWriter {
    /// A record for `tenant` of `resources` resource groups, written into `buffer` (a buffer
    /// [`SpansRecordWriter::finish`] gave back, or a new one).
    pub fn new(tenant: &str, resources: u64, buffer: Vec<u8>) -> SpansRecordWriter {
        let mut out = buffer;
        out.clear();
        out.resize(PADDED_SEQ_BYTES, 0);
        put_padded_seq(&mut out, 0);
        put_bytes(&mut out, tenant.as_bytes());
        put_uvarint(&mut out, resources);
        SpansRecordWriter {
            out,
            locations: Vec::new(),
            resource_offset: 0,
            scope_offset: 0,
            span_start_ns: 0,
            open_lists: 0,
            refused: false,
        }
    }

    fn offset(&self) -> u32 {
        u32::try_from(self.out.len()).unwrap_or(u32::MAX)
    }

    pub fn resource(&mut self, attributes: u64) {
        self.resource_offset = self.offset();
        put_uvarint(&mut self.out, attributes);
    }

    pub fn resource_end(&mut self, dropped_attributes_count: u32, schema_url: &str, scopes: u64) {
        put_uvarint(&mut self.out, u64::from(dropped_attributes_count));
        put_bytes(&mut self.out, schema_url.as_bytes());
        put_uvarint(&mut self.out, scopes);
    }

    pub fn scope(&mut self, name: &str, version: &str, attributes: u64) {
        self.scope_offset = self.offset();
        put_bytes(&mut self.out, name.as_bytes());
        put_bytes(&mut self.out, version.as_bytes());
        put_uvarint(&mut self.out, attributes);
    }

    pub fn scope_end(&mut self, dropped_attributes_count: u32, schema_url: &str, spans: u64) {
        self.resource_end(dropped_attributes_count, schema_url, spans);
    }

    /// Starts a span with `attributes` attributes; an all-zero trace or span ID refuses the
    /// record.
    pub fn span(&mut self, head: &SpanHead<'_>, attributes: u64) {
        if head.trace_id == [0; 16] || head.span_id == [0; 8] {
            self.refused = true;
        }
        self.locations.push(SpanLocation {
            span_offset: self.offset(),
            resource_offset: self.resource_offset,
            scope_offset: self.scope_offset,
            trace_id: head.trace_id,
            span_id: head.span_id,
            start_ns: head.start_ns,
            end_ns: head.end_ns,
        });
        self.span_start_ns = head.start_ns;
        put_span_head(&mut self.out, head);
        put_uvarint(&mut self.out, attributes);
    }

    pub fn span_attributes_end(&mut self, dropped_attributes_count: u32, events: u64) {
        put_uvarint(&mut self.out, u64::from(dropped_attributes_count));
        put_uvarint(&mut self.out, events);
    }

    pub fn event(&mut self, time_ns: i64, name: &str, attributes: u64) {
        put_event_head(&mut self.out, self.span_start_ns, time_ns, name);
        put_uvarint(&mut self.out, attributes);
    }

    pub fn event_end(&mut self, dropped_attributes_count: u32) {
        put_uvarint(&mut self.out, u64::from(dropped_attributes_count));
    }

    pub fn links(&mut self, dropped_events_count: u32, links: u64) {
        put_uvarint(&mut self.out, u64::from(dropped_events_count));
        put_uvarint(&mut self.out, links);
    }

    pub fn link(&mut self, trace_id: &TraceId, span_id: &SpanId, trace_state: &str, attributes: u64) {
        put_link_head(&mut self.out, trace_id, span_id, trace_state);
        put_uvarint(&mut self.out, attributes);
    }

    pub fn link_end(&mut self, dropped_attributes_count: u32, flags: u32) {
        put_link_tail(&mut self.out, dropped_attributes_count, flags);
    }

    pub fn span_end(&mut self, dropped_links_count: u32) {
        put_uvarint(&mut self.out, u64::from(dropped_links_count));
    }

    pub fn key(&mut self, key: &str) {
        put_bytes(&mut self.out, key.as_bytes());
    }

    pub fn string(&mut self, text: &str) {
        self.out.push(TAG_STRING);
        put_bytes(&mut self.out, text.as_bytes());
    }

    pub fn bool(&mut self, value: bool) {
        self.out.push(if value { TAG_TRUE } else { TAG_FALSE });
    }

    pub fn int(&mut self, value: i64) {
        self.out.push(TAG_INT);
        put_varint(&mut self.out, value);
    }

    pub fn double(&mut self, value: f64) {
        self.out.push(TAG_DOUBLE);
        self.out.extend_from_slice(&value.to_bits().to_le_bytes());
    }

    pub fn bytes(&mut self, bytes: &[u8]) {
        self.out.push(TAG_BYTES);
        put_bytes(&mut self.out, bytes);
    }

    fn open_list(&mut self, tag: u8, items: u64) {
        // A list inside `open_lists` lists sits at that value depth.
        if self.open_lists >= MAX_VALUE_DEPTH {
            self.refused = true;
        }
        self.open_lists += 1;
        self.out.push(tag);
        put_uvarint(&mut self.out, items);
    }

    /// An array of `items` values.
    pub fn array(&mut self, items: u64) {
        self.open_list(TAG_ARRAY, items);
    }

    /// A key/value list of `items` pairs.
    pub fn kvlist(&mut self, items: u64) {
        self.open_list(TAG_KVLIST, items);
    }

    pub fn end_list(&mut self) {
        self.open_lists = self.open_lists.saturating_sub(1);
    }

    /// The record, or `None` if something in it is refused (or it is too large to address);
    /// and the buffer back, for the next record. The record holds a copy of exactly its bytes
    /// (the head keeps it), while the buffer, reused, stays in the cache and in memory already
    /// mapped.
    pub fn finish(self) -> (Option<SpansRecord>, Vec<u8>) {
        let fits = u32::try_from(self.out.len()).is_ok();
        let record = (!self.refused && fits && self.open_lists == 0)
            .then(|| SpansRecord { bytes: super::head::RECORD_BUFFERS.copy_of(&self.out), locations: self.locations });
        (record, self.out)
    }
}

/// The spans of a record back in the store's model, groups as the record has them.
pub(crate) fn to_batch(record: &[u8]) -> Parsed<Vec<ResourceSpans>> {
    let mut input = record;
    need(get_uvarint(&mut input))?;
    need(get_str(&mut input))?;
    let groups = need(get_uvarint(&mut input))?;
    let mut batch = Vec::new();
    for _ in 0..groups {
        let (resource, schema_url) = get_resource(&mut input)?.to_owned()?;
        let scopes = need(get_uvarint(&mut input))?;
        let mut scope_spans = Vec::new();
        for _ in 0..scopes {
            let (scope, schema_url) = get_scope(&mut input)?.to_owned()?;
            let count = need(get_uvarint(&mut input))?;
            let mut spans = Vec::new();
            for _ in 0..count {
                spans.push(get_span(&mut input)?.to_owned()?);
            }
            scope_spans.push(ScopeSpans { scope, schema_url, spans });
        }
        batch.push(ResourceSpans { resource, schema_url, scope_spans });
    }
    if !input.is_empty() {
        return Err(MalformedRecord);
    }
    Ok(batch)
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
    pub head: SpanHead<'a>,
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

/// Reads what [`put_span_head`] writes.
fn get_span_head<'a>(input: &mut &'a [u8]) -> Parsed<SpanHead<'a>> {
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
    Ok(SpanHead {
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
    })
}

pub(crate) fn get_span<'a>(input: &mut &'a [u8]) -> Parsed<SpanView<'a>> {
    let head = get_span_head(input)?;
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
        head,
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
            let time_ns = self.head.start_ns.wrapping_add(need(get_varint(&mut input))?);
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
        let head = self.head;
        Ok(Span {
            trace_id: head.trace_id,
            span_id: head.span_id,
            parent_span_id: head.parent_span_id,
            trace_state: head.trace_state.to_string(),
            name: head.name.to_string(),
            kind: head.kind,
            start_ns: head.start_ns,
            end_ns: head.end_ns,
            status: SpanStatus { code: head.status_code, message: head.status_message.to_string() },
            attributes: self.attributes.to_owned()?,
            events,
            links,
            flags: head.flags,
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
                    trace_id: span.head.trace_id,
                    span_id: span.head.span_id,
                    start_ns: span.head.start_ns,
                    end_ns: span.head.end_ns,
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

    fn write_value(writer: &mut SpansRecordWriter, value: &AttrValue) {
        match value {
            AttrValue::String(text) => writer.string(text),
            AttrValue::Bool(value) => writer.bool(*value),
            AttrValue::Int(value) => writer.int(*value),
            AttrValue::Double(value) => writer.double(*value),
            AttrValue::Bytes(bytes) => writer.bytes(bytes),
            AttrValue::Array(values) => {
                writer.array(values.len() as u64);
                values.iter().for_each(|value| write_value(writer, value));
                writer.end_list();
            }
            AttrValue::KvList(pairs) => {
                writer.kvlist(pairs.len() as u64);
                write_attributes(writer, pairs);
                writer.end_list();
            }
        }
    }

    fn write_attributes(writer: &mut SpansRecordWriter, attributes: &[(String, AttrValue)]) {
        for (key, value) in attributes {
            writer.key(key);
            write_value(writer, value);
        }
    }

    /// Drives a writer through a batch, as a producer does.
    fn written(tenant: &str, batch: &[ResourceSpans]) -> Option<SpansRecord> {
        let mut writer = SpansRecordWriter::new(tenant, batch.len() as u64, Vec::new());
        for resource in batch {
            writer.resource(resource.resource.attributes.len() as u64);
            write_attributes(&mut writer, &resource.resource.attributes);
            writer.resource_end(
                resource.resource.dropped_attributes_count,
                &resource.schema_url,
                resource.scope_spans.len() as u64,
            );
            for scope in &resource.scope_spans {
                writer.scope(&scope.scope.name, &scope.scope.version, scope.scope.attributes.len() as u64);
                write_attributes(&mut writer, &scope.scope.attributes);
                writer.scope_end(scope.scope.dropped_attributes_count, &scope.schema_url, scope.spans.len() as u64);
                for span in &scope.spans {
                    writer.span(&SpanHead::of(span), span.attributes.len() as u64);
                    write_attributes(&mut writer, &span.attributes);
                    writer.span_attributes_end(span.dropped_attributes_count, span.events.len() as u64);
                    for event in &span.events {
                        writer.event(event.time_ns, &event.name, event.attributes.len() as u64);
                        write_attributes(&mut writer, &event.attributes);
                        writer.event_end(event.dropped_attributes_count);
                    }
                    writer.links(span.dropped_events_count, span.links.len() as u64);
                    for link in &span.links {
                        writer.link(&link.trace_id, &link.span_id, &link.trace_state, link.attributes.len() as u64);
                        write_attributes(&mut writer, &link.attributes);
                        writer.link_end(link.dropped_attributes_count, link.flags);
                    }
                    writer.span_end(span.dropped_links_count);
                }
            }
        }
        writer.finish().0
    }

    #[test]
    fn a_written_record_is_the_record_append_encodes() {
        let batch = vec![ResourceSpans {
            resource: Resource {
                attributes: vec![("service.name".into(), AttrValue::String("api".into()))],
                dropped_attributes_count: 2,
            },
            schema_url: "https://schema/1".into(),
            scope_spans: vec![
                ScopeSpans {
                    scope: Scope::default(),
                    schema_url: String::new(),
                    spans: vec![full_span(1, 1, None), full_span(1, 2, Some(1))],
                },
                ScopeSpans {
                    scope: Scope { name: "lib".into(), ..Scope::default() },
                    schema_url: "s".into(),
                    spans: vec![full_span(2, 3, None)],
                },
            ],
        }];
        let mut record = written("tenant-a", &batch).unwrap();
        let expected = SpansRecord::from_batch("tenant-a", &batch).unwrap();
        assert_eq!(record.bytes, expected.bytes);
        assert_eq!(record.locations, expected.locations);
        assert_eq!((record.tenant(), record.spans()), ("tenant-a", 3));
        for seq in [0, 1, 300, u64::from(u32::MAX) + 7, (1 << 63) - 1] {
            record.set_seq(seq);
            let mut walked = Vec::new();
            assert_eq!(walk_record(&record.bytes, |location| walked.push(location)).unwrap(), (seq, "tenant-a"));
            assert_eq!(walked, record.locations);
        }
        let mut batch_back = to_batch(&record.bytes).unwrap();
        let mut original = batch.clone();
        for resources in [&mut batch_back, &mut original] {
            for span in resources.iter_mut().flat_map(|r| &mut r.scope_spans).flat_map(|s| &mut s.spans) {
                span.attributes.sort_by(|a, b| a.0.cmp(&b.0));
            }
        }
        assert_eq!(batch_back, original);
    }

    #[test]
    fn a_writer_refuses_what_the_store_refuses() {
        let zero_trace = vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans: vec![full_span(0, 1, None)], ..ScopeSpans::default() }],
            ..ResourceSpans::default()
        }];
        assert!(written("t", &zero_trace).is_none());
        assert!(SpansRecord::from_batch("t", &zero_trace).is_none());
        let mut deep = AttrValue::Int(1);
        for _ in 0..=MAX_VALUE_DEPTH {
            deep = AttrValue::Array(vec![deep]);
        }
        let mut span = full_span(1, 1, None);
        span.attributes.push(("deep".into(), deep));
        let too_deep = vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans: vec![span], ..ScopeSpans::default() }],
            ..ResourceSpans::default()
        }];
        assert!(written("t", &too_deep).is_none());
        assert!(SpansRecord::from_batch("t", &too_deep).is_none());
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
