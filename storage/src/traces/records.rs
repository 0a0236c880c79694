//! The traces store's WAL record, which is also how the head holds spans: one record per
//! append, a batch of one tenant numbered with the store's next sequence number, laid out row
//! by row as OTLP groups it (resources, their scopes, their spans). The head keeps the record's
//! bytes as they went to the WAL and points at spans by offset, so an append encodes each span
//! once and copies nothing more. Layout in `docs/format/trace-blocks.md` ("WAL record").
//!
//! Readers parse spans as borrowed views ([`SpanView`]) that check the framing and UTF-8, and
//! turn the few they return into owned [`Span`]s.

use crate::codec::{
    get_array, get_bytes, get_str, get_u8, get_u64, get_uvarint, get_varint, put_bytes, put_uvarint, put_varint, str_of,
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
/// A string value of the record's string table, by index (span, event and link attributes of
/// a tabled record only).
const TAG_STRING_REF: u8 = 8;

/// How a record lays out the attributes of its spans, events and links; resources and scopes
/// always carry their keys and values inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Keys and values inline ([`crate::record_kinds::TRACES_SPANS_INLINE`], still replayed).
    Inline,
    /// Keys, and string values that repeat, as indexes into a string table after the tenant
    /// ([`crate::record_kinds::TRACES_SPANS`]).
    Tabled,
}

impl Layout {
    /// The layout of a WAL record kind, if it is a spans record.
    pub fn of_kind(kind: crate::wal::RecordKind) -> Option<Layout> {
        match kind {
            crate::record_kinds::TRACES_SPANS => Some(Layout::Tabled),
            crate::record_kinds::TRACES_SPANS_INLINE => Some(Layout::Inline),
            _ => None,
        }
    }
}

/// Where the strings of a record's string table sit in the record: offset and length of each
/// (checked UTF-8 when the table was read or written).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StringTable(Vec<(u32, u32)>);

impl StringTable {
    /// Asks the table and, in `record`, its strings into the caches (up to `lines` cache
    /// lines each).
    pub fn prefetch(&self, record: &[u8], lines: usize) {
        crate::prefetch::prefetch_lines(&self.0, lines);
        if let (Some(&(first, _)), Some(&(last, len))) = (self.0.first(), self.0.last()) {
            let strings = record.get(first as usize..last as usize + len as usize).unwrap_or_default();
            crate::prefetch::prefetch_lines(strings, lines);
        }
    }

    /// The table over the record it indexes.
    pub fn over<'a>(&'a self, record: &'a [u8]) -> TableRef<'a> {
        TableRef { record, entries: &self.0 }
    }
}

/// A record's string table with the record's bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TableRef<'a> {
    record: &'a [u8],
    entries: &'a [(u32, u32)],
}

impl<'a> TableRef<'a> {
    fn get(self, index: u64) -> Parsed<&'a str> {
        let &(offset, len) =
            usize::try_from(index).ok().and_then(|index| self.entries.get(index)).ok_or(MalformedRecord)?;
        let bytes = self.record.get(offset as usize..offset as usize + len as usize).ok_or(MalformedRecord)?;
        need(str_of(bytes))
    }

    fn contains(self, index: u64) -> bool {
        index < self.entries.len() as u64
    }
}

/// The strings of the attributes being read: `None` where keys and values are inline.
type Table<'a> = Option<TableRef<'a>>;

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

/// Writes the spans of `batch` that `keep` keeps (one flag per span, in batch order) with
/// `writer`; resource and scope groups left without spans are left out.
fn write_batch(writer: &mut SpansRecordWriter, batch: &[ResourceSpans], keep: &[bool]) {
    let mut kept_per_scope: Vec<u64> = Vec::new();
    let mut flag_index = 0usize;
    for scope in batch.iter().flat_map(|resource| &resource.scope_spans) {
        let flags = keep.get(flag_index..flag_index + scope.spans.len()).unwrap_or_default();
        kept_per_scope.push(flags.iter().filter(|flag| **flag).count() as u64);
        flag_index += scope.spans.len();
    }
    let mut flags = keep.iter();
    let mut kept = kept_per_scope.iter();
    for resource in batch {
        let scopes: Vec<u64> = kept.by_ref().take(resource.scope_spans.len()).copied().collect();
        let kept_scopes = scopes.iter().filter(|kept| **kept > 0).count() as u64;
        if kept_scopes == 0 {
            flags.by_ref().take(resource.scope_spans.iter().map(|scope| scope.spans.len()).sum()).for_each(drop);
            continue;
        }
        writer.resource(resource.resource.attributes.len() as u64);
        write_attributes(writer, &resource.resource.attributes);
        writer.resource_end(resource.resource.dropped_attributes_count, &resource.schema_url, kept_scopes);
        for (scope, kept) in resource.scope_spans.iter().zip(scopes) {
            if kept == 0 {
                flags.by_ref().take(scope.spans.len()).for_each(drop);
                continue;
            }
            writer.scope(&scope.scope.name, &scope.scope.version, scope.scope.attributes.len() as u64);
            write_attributes(writer, &scope.scope.attributes);
            writer.scope_end(scope.scope.dropped_attributes_count, &scope.schema_url, kept);
            for span in &scope.spans {
                if flags.next() != Some(&true) {
                    continue;
                }
                writer.span(&SpanHead::of(span), span.attributes.len() as u64);
                write_attributes(writer, &span.attributes);
                writer.span_attributes_end(span.dropped_attributes_count, span.events.len() as u64);
                for event in &span.events {
                    writer.event(event.time_ns, &event.name, event.attributes.len() as u64);
                    write_attributes(writer, &event.attributes);
                    writer.event_end(event.dropped_attributes_count);
                }
                writer.links(span.dropped_events_count, span.links.len() as u64);
                for link in &span.links {
                    writer.link(&link.trace_id, &link.span_id, &link.trace_state, link.attributes.len() as u64);
                    write_attributes(writer, &link.attributes);
                    writer.link_end(link.dropped_attributes_count, link.flags);
                }
                writer.span_end(span.dropped_links_count);
            }
        }
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

/// Distinct string values remembered per key: a value equal to one of them goes through the
/// string table.
const RECENT_VALUES: usize = 4;

/// No table entry.
const NO_ENTRY: u32 = u32::MAX;

/// A string value a key had lately: still inline where it was first written, or moved to the
/// table once it repeated.
#[derive(Debug, Clone, Copy, Default)]
enum RecentValue {
    #[default]
    None,
    /// Offset and length of its bytes in the record being written.
    Inline(u32, u32),
    Entry(u32),
}

#[derive(Debug, Clone, Copy, Default)]
struct RecentValues {
    values: [RecentValue; RECENT_VALUES],
    /// The slot the next new value takes.
    next: u8,
    /// Values in a row that were none of the recent ones: a key whose values do not repeat
    /// (request IDs, say) stops being compared after [`MISSES_BEFORE_INLINE`].
    misses: u8,
}

/// Values of a key in a row that repeat none of its recent ones, after which the key's values
/// are written inline without comparing (for the rest of the record).
const MISSES_BEFORE_INLINE: u8 = 8;

/// The string table of the record being written.
#[derive(Debug, Default)]
struct TableWriter {
    /// The table section after its count: each string length-prefixed.
    bytes: Vec<u8>,
    /// Offset (in `bytes`, past the length) and length of each string.
    entries: Vec<(u32, u32)>,
    /// Keys by the hash of their text (a key whose hash another key has is not found, and
    /// added again: rare, and harmless).
    keys: super::hash::FastMap<u64, u32>,
    /// By key entry + 1 (0: the start of a list), the key that followed it last: spans of a
    /// kind list the same keys in the same order, so a key is mostly found by one comparison.
    next_key: Vec<u32>,
    /// The key entry + 1 before the next key (0 at the start of a list).
    previous_key: u32,
    /// The entry of the key whose value is written next, at the top of an attribute list.
    value_key: u32,
    /// Per key entry, its latest string values.
    recent: Vec<RecentValues>,
}

impl TableWriter {
    fn text(&self, entry: u32) -> &[u8] {
        let (offset, len) = self.entries[entry as usize];
        &self.bytes[offset as usize..offset as usize + len as usize]
    }

    fn push(&mut self, text: &[u8]) -> u32 {
        let entry = self.entries.len() as u32;
        put_uvarint(&mut self.bytes, text.len() as u64);
        let offset = u32::try_from(self.bytes.len()).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(text);
        self.entries.push((offset, text.len() as u32));
        entry
    }

    /// The entry of key `key`, added if new.
    fn key(&mut self, key: &str) -> u32 {
        let predicted = self.next_key.get(self.previous_key as usize).copied().unwrap_or(NO_ENTRY);
        let entry = if predicted != NO_ENTRY && self.text(predicted) == key.as_bytes() {
            predicted
        } else {
            let hash = super::hash::hash_bytes(0, key.as_bytes());
            let entry = match self.keys.get(&hash) {
                Some(&entry) if self.text(entry) == key.as_bytes() => entry,
                Some(_) => self.push(key.as_bytes()),
                None => {
                    let entry = self.push(key.as_bytes());
                    self.keys.insert(hash, entry);
                    entry
                }
            };
            let at = self.previous_key as usize;
            if self.next_key.len() <= at {
                self.next_key.resize(at + 1, NO_ENTRY);
            }
            self.next_key[at] = entry;
            entry
        };
        self.previous_key = entry + 1;
        entry
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.entries.clear();
        self.keys.clear();
        self.next_key.clear();
        self.previous_key = 0;
        self.value_key = NO_ENTRY;
        self.recent.clear();
    }
}

/// What a [`SpansRecordWriter`] writes in, given back by [`SpansRecordWriter::finish`] for the
/// next record: reused, it stays in the cache and in memory already mapped.
#[derive(Debug, Default)]
pub struct RecordScratch {
    out: Vec<u8>,
    table: TableWriter,
}

impl RecordScratch {
    /// About the bytes it holds on to.
    pub fn capacity(&self) -> usize {
        let table = &self.table;
        self.out.capacity()
            + table.bytes.capacity()
            + table.entries.capacity() * std::mem::size_of::<(u32, u32)>()
            + table.keys.capacity() * std::mem::size_of::<(u64, u32)>()
            + table.next_key.capacity() * std::mem::size_of::<u32>()
            + table.recent.capacity() * std::mem::size_of::<RecentValues>()
    }
}

/// A spans record built directly by a producer (the OTLP protobuf decoder, or the store for a
/// batch of owned spans): the producer calls the writer in the record's order and gives every
/// count before the items it counts. The writer refuses what the store refuses (all-zero IDs,
/// values nested deeper than [`MAX_VALUE_DEPTH`]); a refused writer finishes as `None`.
///
/// Order of calls: `resource`, its attributes, `resource_end`; per scope `scope`, its
/// attributes, `scope_end`; per span `span`, its attributes, `span_attributes_end`, per event
/// `event`, its attributes, `event_end`; `links`, per link `link`, its attributes, `link_end`;
/// `span_end`. An attribute is `key` then one value; a list value is `array` or `kvlist`, its
/// items (`key` then a value for each pair of a list), then `end_list`.
#[derive(Debug)]
pub struct SpansRecordWriter {
    /// The record without its string table (which goes after the tenant, at `header_bytes`).
    out: Vec<u8>,
    header_bytes: usize,
    table: TableWriter,
    /// Whether the attributes being written are a span's, an event's or a link's (through the
    /// table) rather than a resource's or a scope's (inline).
    tabled: bool,
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
    pub(crate) table: StringTable,
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
        let spans: usize = batch.iter().flat_map(|resource| &resource.scope_spans).map(|scope| scope.spans.len()).sum();
        SpansRecord::from_kept(tenant, batch, &vec![true; spans], RecordScratch::default()).0
    }

    /// The record of the spans of `batch` that `keep` keeps (one flag per span, in batch
    /// order), `None` if one of them is refused; written in `scratch`, given back.
    pub(crate) fn from_kept(
        tenant: &str,
        batch: &[ResourceSpans],
        keep: &[bool],
        scratch: RecordScratch,
    ) -> (Option<SpansRecord>, RecordScratch) {
        let kept_resources = batch
            .iter()
            .scan(0usize, |flag_index, resource| {
                let spans: usize = resource.scope_spans.iter().map(|scope| scope.spans.len()).sum();
                let any = keep.get(*flag_index..*flag_index + spans).unwrap_or_default().contains(&true);
                *flag_index += spans;
                Some(any)
            })
            .filter(|any| *any)
            .count();
        let mut writer = SpansRecordWriter::new(tenant, kept_resources as u64, scratch);
        write_batch(&mut writer, batch, keep);
        writer.finish()
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

    /// The spans back in the store's model, groups as the record has them.
    pub(crate) fn to_batch(&self) -> Parsed<Vec<ResourceSpans>> {
        to_batch(&self.bytes, Layout::Tabled)
    }
}

impl SpansRecordWriter {
    /// A record for `tenant` of `resources` resource groups, written in `scratch` (what
    /// [`SpansRecordWriter::finish`] gave back, or a new one).
    pub fn new(tenant: &str, resources: u64, scratch: RecordScratch) -> SpansRecordWriter {
        let RecordScratch { mut out, mut table } = scratch;
        out.clear();
        out.resize(PADDED_SEQ_BYTES, 0);
        put_padded_seq(&mut out, 0);
        put_bytes(&mut out, tenant.as_bytes());
        let header_bytes = out.len();
        put_uvarint(&mut out, resources);
        table.clear();
        SpansRecordWriter {
            out,
            header_bytes,
            table,
            tabled: false,
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

    /// Starts an attribute list of `attributes` attributes.
    fn attributes(&mut self, attributes: u64) {
        self.table.previous_key = 0;
        put_uvarint(&mut self.out, attributes);
    }

    pub fn resource(&mut self, attributes: u64) {
        self.tabled = false;
        self.resource_offset = self.offset();
        self.attributes(attributes);
    }

    pub fn resource_end(&mut self, dropped_attributes_count: u32, schema_url: &str, scopes: u64) {
        put_uvarint(&mut self.out, u64::from(dropped_attributes_count));
        put_bytes(&mut self.out, schema_url.as_bytes());
        put_uvarint(&mut self.out, scopes);
    }

    pub fn scope(&mut self, name: &str, version: &str, attributes: u64) {
        self.tabled = false;
        self.scope_offset = self.offset();
        put_bytes(&mut self.out, name.as_bytes());
        put_bytes(&mut self.out, version.as_bytes());
        self.attributes(attributes);
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
        self.tabled = true;
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
        self.attributes(attributes);
    }

    pub fn span_attributes_end(&mut self, dropped_attributes_count: u32, events: u64) {
        put_uvarint(&mut self.out, u64::from(dropped_attributes_count));
        put_uvarint(&mut self.out, events);
    }

    pub fn event(&mut self, time_ns: i64, name: &str, attributes: u64) {
        put_event_head(&mut self.out, self.span_start_ns, time_ns, name);
        self.attributes(attributes);
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
        self.attributes(attributes);
    }

    pub fn link_end(&mut self, dropped_attributes_count: u32, flags: u32) {
        put_link_tail(&mut self.out, dropped_attributes_count, flags);
    }

    pub fn span_end(&mut self, dropped_links_count: u32) {
        put_uvarint(&mut self.out, u64::from(dropped_links_count));
    }

    pub fn key(&mut self, key: &str) {
        if !self.tabled {
            put_bytes(&mut self.out, key.as_bytes());
            return;
        }
        let entry = self.table.key(key);
        put_uvarint(&mut self.out, u64::from(entry));
        if self.open_lists == 0 {
            self.table.value_key = entry;
        }
    }

    pub fn string(&mut self, text: &str) {
        let key = std::mem::replace(&mut self.table.value_key, NO_ENTRY);
        if !self.tabled || self.open_lists > 0 || key == NO_ENTRY {
            self.out.push(TAG_STRING);
            put_bytes(&mut self.out, text.as_bytes());
            return;
        }
        // A value equal to one the key had lately goes through the table (moved there the
        // first time it repeats); another is written inline and remembered.
        let table = &mut self.table;
        if table.recent.len() <= key as usize {
            table.recent.resize(key as usize + 1, RecentValues::default());
        }
        let mut recent = table.recent[key as usize];
        if recent.misses >= MISSES_BEFORE_INLINE {
            self.out.push(TAG_STRING);
            put_bytes(&mut self.out, text.as_bytes());
            return;
        }
        for slot in &mut recent.values {
            let entry = match *slot {
                RecentValue::None => continue,
                RecentValue::Entry(entry) if table.text(entry) == text.as_bytes() => entry,
                RecentValue::Inline(offset, len)
                    if self.out.get(offset as usize..offset as usize + len as usize) == Some(text.as_bytes()) =>
                {
                    let entry = table.push(text.as_bytes());
                    *slot = RecentValue::Entry(entry);
                    entry
                }
                _ => continue,
            };
            recent.misses = 0;
            table.recent[key as usize] = recent;
            self.out.push(TAG_STRING_REF);
            put_uvarint(&mut self.out, u64::from(entry));
            return;
        }
        self.out.push(TAG_STRING);
        put_uvarint(&mut self.out, text.len() as u64);
        let offset = u32::try_from(self.out.len()).unwrap_or(u32::MAX);
        self.out.extend_from_slice(text.as_bytes());
        recent.values[usize::from(recent.next)] = RecentValue::Inline(offset, text.len() as u32);
        recent.next = (recent.next + 1) % RECENT_VALUES as u8;
        recent.misses += 1;
        table.recent[key as usize] = recent;
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
        self.table.value_key = NO_ENTRY;
        self.open_list(TAG_ARRAY, items);
    }

    /// A key/value list of `items` pairs.
    pub fn kvlist(&mut self, items: u64) {
        self.table.value_key = NO_ENTRY;
        self.table.previous_key = 0;
        self.open_list(TAG_KVLIST, items);
    }

    pub fn end_list(&mut self) {
        self.open_lists = self.open_lists.saturating_sub(1);
    }

    /// The record, or `None` if something in it is refused (or it is too large to address);
    /// and the scratch back, for the next record. The record is a copy of exactly its bytes,
    /// the string table put in place (the head keeps it).
    pub fn finish(self) -> (Option<SpansRecord>, RecordScratch) {
        let SpansRecordWriter { out, header_bytes, table, mut locations, open_lists, refused, .. } = self;
        let mut count = Vec::with_capacity(10);
        put_uvarint(&mut count, table.entries.len() as u64);
        let shift = count.len() + table.bytes.len();
        let fits = u32::try_from(out.len() + shift).is_ok();
        if refused || !fits || open_lists != 0 {
            return (None, RecordScratch { out, table });
        }
        let (header, body) = out.split_at(header_bytes);
        let bytes = super::head::RECORD_BUFFERS.copy_of(&[header, &count, &table.bytes, body]);
        let shift = shift as u32;
        for location in &mut locations {
            location.span_offset += shift;
            location.resource_offset += shift;
            location.scope_offset += shift;
        }
        let base = (header_bytes + count.len()) as u32;
        let strings = StringTable(table.entries.iter().map(|&(offset, len)| (base + offset, len)).collect());
        (Some(SpansRecord { bytes, table: strings, locations }), RecordScratch { out, table })
    }
}

/// The spans of a record back in the store's model, groups as the record has them.
pub(crate) fn to_batch(record: &[u8], layout: Layout) -> Parsed<Vec<ResourceSpans>> {
    let mut input = record;
    need(get_uvarint(&mut input))?;
    need(get_str(&mut input))?;
    let strings = get_table(record, &mut input, layout)?;
    let table = strings.as_ref().map(|strings| strings.over(record));
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
                spans.push(get_span(&mut input, table)?.to_owned()?);
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

/// Reads a record's string table (`None` for the inline layout), `input` at the table.
fn get_table(record: &[u8], input: &mut &[u8], layout: Layout) -> Parsed<Option<StringTable>> {
    if layout == Layout::Inline {
        return Ok(None);
    }
    let count = need(get_uvarint(input))?;
    let mut entries = Vec::with_capacity(count.min(input.len() as u64) as usize);
    for _ in 0..count {
        let text = need(get_str(input))?;
        let offset = record.len() - input.len() - text.len();
        entries.push((offset as u32, text.len() as u32));
    }
    Ok(Some(StringTable(entries)))
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
fn skip_value(input: &mut &[u8], depth: u32, utf8: bool, table: Table<'_>) -> Parsed<()> {
    if depth > MAX_VALUE_DEPTH {
        return Err(MalformedRecord);
    }
    match need(get_u8(input))? {
        TAG_STRING => {
            skip_str(input, utf8)?;
        }
        TAG_STRING_REF => skip_entry(input, table)?,
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
                skip_value(input, depth + 1, utf8, table)?;
            }
        }
        TAG_KVLIST => skip_attrs_inner(input, depth + 1, utf8, table)?,
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

/// Checks a string table index (the table's strings were checked when it was read).
fn skip_entry(input: &mut &[u8], table: Table<'_>) -> Parsed<()> {
    let index = need(get_uvarint(input))?;
    match table {
        Some(table) if table.contains(index) => Ok(()),
        _ => Err(MalformedRecord),
    }
}

fn skip_attrs_inner(input: &mut &[u8], depth: u32, utf8: bool, table: Table<'_>) -> Parsed<()> {
    let count = need(get_uvarint(input))?;
    for _ in 0..count {
        match table {
            Some(_) => skip_entry(input, table)?,
            None => skip_str(input, utf8)?,
        }
        skip_value(input, depth, utf8, table)?;
    }
    Ok(())
}

/// An encoded attribute list, checked, with the string table its keys and values refer to.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AttrsSlice<'a> {
    bytes: &'a [u8],
    table: Table<'a>,
}

/// An attribute list's slice, its framing and nesting checked; its strings are checked as
/// they are read ([`AttrsSlice::for_each`], [`AttrsSlice::to_owned`]) or by [`walk_record`].
fn get_attrs<'a>(input: &mut &'a [u8], table: Table<'a>) -> Parsed<AttrsSlice<'a>> {
    let start = *input;
    skip_attrs_inner(input, 0, false, table)?;
    Ok(AttrsSlice { bytes: &start[..start.len() - input.len()], table })
}

impl AttrsSlice<'_> {
    /// Checks every string of the list.
    fn check_utf8(self) -> Parsed<()> {
        skip_attrs_inner(&mut &self.bytes[..], 0, true, self.table)
    }
}

/// Reads a key: inline, or through the table.
fn get_key<'a>(input: &mut &'a [u8], table: Table<'a>) -> Parsed<&'a str> {
    match table {
        Some(table) => table.get(need(get_uvarint(input))?),
        None => need(get_str(input)),
    }
}

fn get_entry<'a>(input: &mut &'a [u8], table: Table<'a>) -> Parsed<&'a str> {
    need(table)?.get(need(get_uvarint(input))?)
}

fn decode_value<'a>(input: &mut &'a [u8], table: Table<'a>) -> Parsed<AttrValue> {
    Ok(match need(get_u8(input))? {
        TAG_STRING => AttrValue::String(need(get_str(input))?.to_string()),
        TAG_STRING_REF => AttrValue::String(get_entry(input, table)?.to_string()),
        TAG_FALSE => AttrValue::Bool(false),
        TAG_TRUE => AttrValue::Bool(true),
        TAG_INT => AttrValue::Int(need(get_varint(input))?),
        TAG_DOUBLE => AttrValue::Double(f64::from_bits(need(get_u64(input))?)),
        TAG_BYTES => AttrValue::Bytes(need(get_bytes(input))?.to_vec()),
        TAG_ARRAY => {
            let count = need(get_uvarint(input))?;
            let mut values = Vec::with_capacity(count.min(input.len() as u64) as usize);
            for _ in 0..count {
                values.push(decode_value(input, table)?);
            }
            AttrValue::Array(values)
        }
        TAG_KVLIST => AttrValue::KvList(decode_attrs_unsorted(input, table)?),
        _ => return Err(MalformedRecord),
    })
}

fn decode_attrs_unsorted<'a>(input: &mut &'a [u8], table: Table<'a>) -> Parsed<Attributes> {
    let count = need(get_uvarint(input))?;
    let mut out = Vec::with_capacity(count.min(input.len() as u64) as usize);
    for _ in 0..count {
        let key = get_key(input, table)?.to_string();
        out.push((key, decode_value(input, table)?));
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
        let (mut input, table) = (self.bytes, self.table);
        let count = need(get_uvarint(&mut input))?;
        for _ in 0..count {
            let key = get_key(&mut input, table)?;
            let value = match input.first() {
                Some(&TAG_STRING) => {
                    input = &input[1..];
                    ValueRef::Str(need(get_str(&mut input))?)
                }
                Some(&TAG_STRING_REF) => {
                    input = &input[1..];
                    ValueRef::Str(get_entry(&mut input, table)?)
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
                _ => ValueRef::Other(std::borrow::Cow::Owned(decode_value(&mut input, table)?)),
            };
            each(key, value);
        }
        Ok(())
    }

    /// The attributes, sorted by key (stable). Nesting was bounded when the slice was checked.
    pub fn to_owned(self) -> Parsed<Attributes> {
        let mut input = self.bytes;
        let mut attributes = decode_attrs_unsorted(&mut input, self.table)?;
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
    table: Table<'a>,
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

pub(crate) fn get_span<'a>(input: &mut &'a [u8], table: Table<'a>) -> Parsed<SpanView<'a>> {
    let head = get_span_head(input)?;
    let attributes = get_attrs(input, table)?;
    let dropped_attributes_count = get_u32_varint(input)?;
    let event_count = get_u32_varint(input)?;
    let events_start = *input;
    for _ in 0..event_count {
        need(get_varint(input))?;
        need(get_str(input))?;
        get_attrs(input, table)?;
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
        get_attrs(input, table)?;
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
        table,
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
            let attributes = get_attrs(&mut input, self.table)?.to_owned()?;
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
            let attributes = get_attrs(&mut input, self.table)?.to_owned()?;
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
    let attributes = get_attrs(input, None)?;
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
    let attributes = get_attrs(input, None)?;
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

/// The span at `offset` of `record`, whose string table is `strings` (`None` for the inline
/// layout).
pub(crate) fn span_at<'a>(record: &'a [u8], strings: Option<&'a StringTable>, offset: u32) -> Parsed<SpanView<'a>> {
    get_span(&mut at(record, offset)?, strings.map(|strings| strings.over(record)))
}

/// A record's number, tenant and string table (`None` for the inline layout).
pub(crate) struct RecordHeader<'a> {
    pub seq: u64,
    pub tenant: &'a str,
    pub strings: Option<StringTable>,
}

/// Checks a whole record of `layout` and calls `each` with the location of every span, in
/// order.
pub(crate) fn walk_record(
    record: &[u8],
    layout: Layout,
    mut each: impl FnMut(SpanLocation),
) -> Parsed<RecordHeader<'_>> {
    if record.len() > u32::MAX as usize {
        return Err(MalformedRecord);
    }
    let mut input = record;
    let seq = need(get_uvarint(&mut input))?;
    let tenant = need(get_str(&mut input))?;
    let strings = get_table(record, &mut input, layout)?;
    walk_groups(record, input, strings.as_ref().map(|strings| strings.over(record)), &mut each)?;
    Ok(RecordHeader { seq, tenant, strings })
}

/// Checks the groups of a record (`input`, the record from its group count on).
fn walk_groups<'a>(
    record: &'a [u8],
    mut input: &'a [u8],
    table: Table<'a>,
    each: &mut impl FnMut(SpanLocation),
) -> Parsed<()> {
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
                let span = get_span(&mut input, table)?;
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
    Ok(())
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

    /// A record of the inline layout (what the store wrote before string tables), for the
    /// replay of older WALs.
    pub(crate) fn inline_record(seq: u64, tenant: &str, batch: &[ResourceSpans]) -> Vec<u8> {
        let mut out = Vec::new();
        put_uvarint(&mut out, seq);
        put_bytes(&mut out, tenant.as_bytes());
        put_uvarint(&mut out, batch.len() as u64);
        for resource in batch {
            put_resource(&mut out, &resource.resource, &resource.schema_url);
            put_uvarint(&mut out, resource.scope_spans.len() as u64);
            for scope in &resource.scope_spans {
                put_scope(&mut out, &scope.scope, &scope.schema_url);
                put_uvarint(&mut out, scope.spans.len() as u64);
                for span in &scope.spans {
                    put_span_head(&mut out, &SpanHead::of(span));
                    put_attrs(&mut out, &span.attributes);
                    put_uvarint(&mut out, u64::from(span.dropped_attributes_count));
                    put_uvarint(&mut out, span.events.len() as u64);
                    for event in &span.events {
                        put_event_head(&mut out, span.start_ns, event.time_ns, &event.name);
                        put_attrs(&mut out, &event.attributes);
                        put_uvarint(&mut out, u64::from(event.dropped_attributes_count));
                    }
                    put_uvarint(&mut out, u64::from(span.dropped_events_count));
                    put_uvarint(&mut out, span.links.len() as u64);
                    for link in &span.links {
                        put_link_head(&mut out, &link.trace_id, &link.span_id, &link.trace_state);
                        put_attrs(&mut out, &link.attributes);
                        put_link_tail(&mut out, link.dropped_attributes_count, link.flags);
                    }
                    put_uvarint(&mut out, u64::from(span.dropped_links_count));
                }
            }
        }
        out
    }

    fn sorted(mut batch: Vec<ResourceSpans>) -> Vec<ResourceSpans> {
        for span in batch.iter_mut().flat_map(|r| &mut r.scope_spans).flat_map(|s| &mut s.spans) {
            span.attributes.sort_by(|a, b| a.0.cmp(&b.0));
            for event in &mut span.events {
                event.attributes.sort_by(|a, b| a.0.cmp(&b.0));
            }
            for link in &mut span.links {
                link.attributes.sort_by(|a, b| a.0.cmp(&b.0));
            }
        }
        batch
    }

    /// Two resources whose spans repeat keys and some string values.
    fn sample_batch() -> Vec<ResourceSpans> {
        let mut repeated = full_span(3, 4, None);
        repeated.attributes.push(("f.string".into(), AttrValue::String("ü".into())));
        vec![
            ResourceSpans {
                resource: Resource {
                    attributes: vec![("service.name".into(), AttrValue::String("api".into()))],
                    dropped_attributes_count: 2,
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
                        spans: vec![full_span(1, 1, None), full_span(1, 2, Some(1)), full_span(1, 3, Some(1))],
                    },
                    ScopeSpans {
                        scope: Scope::default(),
                        schema_url: String::new(),
                        spans: vec![full_span(2, 3, None)],
                    },
                ],
            },
            ResourceSpans {
                resource: Resource {
                    attributes: vec![("service.name".into(), AttrValue::String("db".into()))],
                    dropped_attributes_count: 0,
                },
                schema_url: String::new(),
                scope_spans: vec![ScopeSpans { spans: vec![repeated], ..ScopeSpans::default() }],
            },
        ]
    }

    /// Every span of a record, read back at its location.
    fn spans_at(record: &[u8], strings: Option<&StringTable>, locations: &[SpanLocation]) -> Vec<Span> {
        locations
            .iter()
            .map(|location| span_at(record, strings, location.span_offset).unwrap().to_owned().unwrap())
            .collect()
    }

    #[test]
    fn tabled_records_round_trip_every_field() {
        let batch = sample_batch();
        let mut record = SpansRecord::from_batch("tenant-a", &batch).unwrap();
        assert_eq!((record.tenant(), record.spans()), ("tenant-a", 5));
        for seq in [0, 1, 300, u64::from(u32::MAX) + 7, (1 << 63) - 1] {
            record.set_seq(seq);
            let mut walked = Vec::new();
            let header = walk_record(&record.bytes, Layout::Tabled, |location| walked.push(location)).unwrap();
            assert_eq!((header.seq, header.tenant), (seq, "tenant-a"));
            assert_eq!(header.strings.as_ref(), Some(&record.table));
            assert_eq!(walked, record.locations);
        }
        assert_eq!(sorted(record.to_batch().unwrap()), sorted(batch.clone()));
        let expected: Vec<Span> = sorted(batch.clone())
            .into_iter()
            .flat_map(|resource| resource.scope_spans)
            .flat_map(|scope| scope.spans)
            .collect();
        assert_eq!(spans_at(&record.bytes, Some(&record.table), &record.locations), expected);
        let (resource, schema) =
            resource_at(&record.bytes, record.locations[4].resource_offset).unwrap().to_owned().unwrap();
        assert_eq!((resource, schema.as_str()), (batch[1].resource.clone(), ""));
        let (scope, schema) = scope_at(&record.bytes, record.locations[0].scope_offset).unwrap().to_owned().unwrap();
        assert_eq!((scope, schema.as_str()), (batch[0].scope_spans[0].scope.clone(), "https://schema/2"));

        // Keys are written once, in the table; string values once they repeat for a key.
        let text = |entry: &(u32, u32)| &record.bytes[entry.0 as usize..(entry.0 + entry.1) as usize];
        let table: Vec<&[u8]> = record.table.0.iter().map(text).collect();
        for key in ["a.int", "e.array", "f.string", "exception.message", "l", "k"] {
            assert_eq!(table.iter().filter(|entry| **entry == key.as_bytes()).count(), 1, "{key}");
        }
        assert!(table.contains(&"ü".as_bytes()), "a repeated value is in the table");
        assert!(!table.contains(&"api".as_bytes()), "resource attributes stay inline");
        assert!(!table.contains(&"x".as_bytes()), "values inside lists stay inline");
        assert!(record.bytes.len() < inline_record(0, "tenant-a", &batch).len());
    }

    #[test]
    fn inline_records_of_older_wals_still_read() {
        let batch = sample_batch();
        let record = inline_record(42, "tenant-a", &batch);
        let mut locations = Vec::new();
        let header = walk_record(&record, Layout::Inline, |location| locations.push(location)).unwrap();
        assert_eq!((header.seq, header.tenant, header.strings), (42, "tenant-a", None));
        assert_eq!(decode_header(&record).unwrap(), (42, "tenant-a"));
        assert_eq!(sorted(to_batch(&record, Layout::Inline).unwrap()), sorted(batch.clone()));
        let tabled = SpansRecord::from_batch("tenant-a", &batch).unwrap();
        assert_eq!(
            spans_at(&record, None, &locations),
            spans_at(&tabled.bytes, Some(&tabled.table), &tabled.locations)
        );
        // Neither layout reads as the other.
        assert!(walk_record(&record, Layout::Tabled, |_| {}).is_err());
        assert!(walk_record(&tabled.bytes, Layout::Inline, |_| {}).is_err());
    }

    #[test]
    fn records_keep_what_keep_keeps() {
        let batch = sample_batch();
        let keep = [true, false, false, false, true];
        let (record, _) = SpansRecord::from_kept("tenant-a", &batch, &keep, RecordScratch::default());
        let record = record.unwrap();
        let kept = record.to_batch().unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].scope_spans.len(), 1, "a scope left without spans is left out");
        let ids: Vec<_> = record.locations.iter().map(|location| location.span_id).collect();
        assert_eq!(ids, vec![[1; 8], [4; 8]]);
        let (none, _) = SpansRecord::from_kept("tenant-a", &batch, &[false; 5], RecordScratch::default());
        assert_eq!(none.unwrap().to_batch().unwrap(), Vec::new());
    }

    #[test]
    fn a_writer_refuses_what_the_store_refuses() {
        let zero_trace = vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans: vec![full_span(0, 1, None)], ..ScopeSpans::default() }],
            ..ResourceSpans::default()
        }];
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
        assert!(SpansRecord::from_batch("t", &too_deep).is_none());
    }

    #[test]
    fn damaged_records_are_errors_never_panics() {
        let batch = sample_batch();
        let tabled = SpansRecord::from_batch("tenant-a", &batch).unwrap();
        for (record, layout) in
            [(tabled.bytes.clone(), Layout::Tabled), (inline_record(7, "t", &batch), Layout::Inline)]
        {
            for cut in 0..record.len() {
                assert!(walk_record(&record[..cut], layout, |_| {}).is_err(), "cut at {cut}");
            }
            for at in 0..record.len() {
                for flip in [0x01, 0x80, 0xff] {
                    let mut damaged = record.clone();
                    damaged[at] ^= flip;
                    let mut locations = Vec::new();
                    if let Ok(header) = walk_record(&damaged, layout, |location| locations.push(location)) {
                        // What walks reads: every span, as checked.
                        for span in spans_at(&damaged, header.strings.as_ref(), &locations) {
                            assert_ne!(span.span_id, [0; 8]);
                        }
                        to_batch(&damaged, layout).unwrap();
                    }
                }
            }
        }
        // A string reference past the table.
        let mut writer = SpansRecordWriter::new("t", 1, RecordScratch::default());
        write_batch(&mut writer, &batch[1..], &[true]);
        let record = writer.finish().0.unwrap();
        let mut short = record.table.clone();
        short.0.pop();
        assert!(span_at(&record.bytes, Some(&short), record.locations[0].span_offset).is_err());
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
        assert!(walk_record(&inline_record(1, "t", &batch), Layout::Inline, |_| {}).is_err());
    }
}
