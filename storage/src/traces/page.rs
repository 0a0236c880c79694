//! Pages: the unit of compression and of reading in a block. A page holds whole traces (all
//! the block has of each), in trace-ID order, laid out column by column so that zstd sees
//! long runs of alike bytes: a string dictionary, the traces, the resources and scopes, one
//! column per span field, events and links, and one column per attribute key (per scope) with
//! the values of that key for every span, resource, scope, event or link that has it.
//!
//! Uncompressed layout (integers are varints unless stated; `idx` is an index into the page's
//! string dictionary, whose entry 0 is the empty string):
//!
//! ```text
//! strings     count, then per string: length, UTF-8 bytes
//! traces      count, then per trace: trace ID (16 bytes), span count
//! resources   count, then per resource: schema URL idx, dropped attributes count
//! scopes      count, then per scope: name idx, version idx, schema URL idx, dropped count
//! spans       n = the sum of the traces' span counts; each column holds n entries:
//!               span ID (8 bytes), parent code (0 none, 1 in `parent IDs`, k+2: the trace's
//!               span k), resource, scope, name idx, kind | status << 3 (1 byte), status
//!               message idx, trace state idx, flags, start - previous span's start (signed),
//!               end - start (signed), dropped attributes, events and links counts (3 varints)
//! parent IDs  8 bytes per parent code 1
//! events      count, then per event: span - previous event's span, time - span start
//!             (signed), name idx, dropped attributes count
//! links       count, then per link: span - previous link's span, trace ID (16), span ID (8),
//!             trace state idx, flags, dropped attributes count
//! attributes  column count, then per column: owner scope (1 byte: 0 resource, 1 span,
//!             2 scope, 3 event, 4 link), key idx, cell count, byte length, then per cell:
//!             owner - previous cell's owner, value
//! value       tag (1 byte), then: 0 string idx | 1 false | 2 true | 3 int (signed) |
//!             4 double (8 bytes LE) | 5 bytes (length, bytes) | 6 array (count, values) |
//!             7 key/value list (count, then key idx and value)
//! ```
//!
//! Spans of a trace are in (start, span ID) order. Readers check every index and count, so a
//! damaged page is an error, never a panic.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use super::assemble::{ResourceInfo, ScopeInfo, SpanInput, StoredSpan};
use super::filter::canonical_ref;
use super::hash::{FastMap, HashSet64, hash_bytes, process_seed};
use super::index::{
    Bounds, IndexBuilder, PageSkipBuilder, SCOPE_EVENT, SCOPE_INSTRUMENTATION, SCOPE_LINK, SCOPE_RESOURCE, SCOPE_SPAN,
    for_each_scalar, key_hash, value_hash,
};
use super::records::{MAX_VALUE_DEPTH, MalformedRecord, ValueRef};
use super::{
    AttrValue, Attributes, Resource, Scope, Span, SpanEvent, SpanId, SpanKind, SpanLink, SpanStatus, StatusCode,
    TraceId,
};
use crate::codec::{
    get_array, get_bytes, get_u8, get_u64, get_uvarint, get_varint, put_bytes, put_uvarint, put_varint,
};

const TAG_STRING: u8 = 0;
const TAG_FALSE: u8 = 1;
const TAG_TRUE: u8 = 2;
const TAG_INT: u8 = 3;
const TAG_DOUBLE: u8 = 4;
const TAG_BYTES: u8 = 5;
const TAG_ARRAY: u8 = 6;
const TAG_KVLIST: u8 = 7;

/// Owner scopes of attribute columns (the same numbers as the index scopes).
const OWNER_SCOPES: usize = 5;

/// The page's string dictionary while it is written: the encoded strings, and an
/// open-addressing table of their indexes (no allocation per string).
struct Strings {
    out: Vec<u8>,
    /// Where each string's bytes sit in `out`.
    places: Vec<(u32, u32)>,
    /// 0: empty; otherwise a string's index + 1. A power of two, at most half full.
    table: Vec<u32>,
    seed: u64,
}

impl Strings {
    fn new() -> Strings {
        let mut strings = Strings { out: Vec::new(), places: Vec::new(), table: vec![0; 1024], seed: process_seed() };
        strings.intern("");
        strings
    }

    fn clear(&mut self) {
        self.out.clear();
        self.places.clear();
        self.table.fill(0);
        self.intern("");
    }

    fn count(&self) -> u32 {
        self.places.len() as u32
    }

    fn bytes(&self, index: usize) -> &[u8] {
        let (start, length) = self.places[index];
        &self.out[start as usize..(start + length) as usize]
    }

    fn slot_of(&self, bytes: &[u8], hash: u64) -> (usize, Option<u32>) {
        let mask = self.table.len() - 1;
        let mut slot = hash as usize & mask;
        loop {
            match self.table[slot] {
                0 => return (slot, None),
                entry => {
                    if self.bytes(entry as usize - 1) == bytes {
                        return (slot, Some(entry - 1));
                    }
                }
            }
            slot = (slot + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let mut table = vec![0u32; self.table.len() * 2];
        let mask = table.len() - 1;
        for index in 0..self.places.len() {
            let mut slot = hash_bytes(self.seed, self.bytes(index)) as usize & mask;
            while table[slot] != 0 {
                slot = (slot + 1) & mask;
            }
            table[slot] = index as u32 + 1;
        }
        self.table = table;
    }

    fn intern(&mut self, text: &str) -> u32 {
        let bytes = text.as_bytes();
        let hash = hash_bytes(self.seed, bytes);
        let (slot, found) = self.slot_of(bytes, hash);
        if let Some(index) = found {
            return index;
        }
        let index = self.places.len() as u32;
        put_uvarint(&mut self.out, bytes.len() as u64);
        self.places.push((self.out.len() as u32, bytes.len() as u32));
        self.out.extend_from_slice(bytes);
        self.table[slot] = index + 1;
        if self.places.len() * 2 >= self.table.len() {
            self.grow();
        }
        index
    }
}

fn put_page_value(strings: &mut Strings, out: &mut Vec<u8>, value: &AttrValue) {
    match value {
        AttrValue::String(text) => {
            out.push(TAG_STRING);
            put_uvarint(out, u64::from(strings.intern(text)));
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
                put_page_value(strings, out, value);
            }
        }
        AttrValue::KvList(pairs) => {
            out.push(TAG_KVLIST);
            put_uvarint(out, pairs.len() as u64);
            for (key, value) in pairs {
                put_uvarint(out, u64::from(strings.intern(key)));
                put_page_value(strings, out, value);
            }
        }
    }
}

fn put_page_value_ref(strings: &mut Strings, out: &mut Vec<u8>, value: &ValueRef<'_>) {
    match value {
        ValueRef::Str(text) => {
            out.push(TAG_STRING);
            put_uvarint(out, u64::from(strings.intern(text)));
        }
        ValueRef::Int(number) => {
            out.push(TAG_INT);
            put_varint(out, *number);
        }
        ValueRef::Double(number) => {
            out.push(TAG_DOUBLE);
            out.extend_from_slice(&number.to_bits().to_le_bytes());
        }
        ValueRef::Bool(flag) => out.push(if *flag { TAG_TRUE } else { TAG_FALSE }),
        ValueRef::Other(other) => put_page_value(strings, out, other),
    }
}

/// The string dictionary and the attribute columns while they are written.
struct CellWriter {
    strings: Strings,
    columns: Vec<AttrColumn>,
    column_index: FastMap<(u8, u32), usize>,
    /// For span attributes, by the key's string index: its column + 1 (0: none yet), the
    /// bloom hash of the key and its entry in the block's index, so that the common case
    /// costs one string lookup.
    span_keys: Vec<SpanKey>,
    /// Bytes in `columns`, kept as they grow so that the page size is cheap to ask.
    column_bytes: usize,
    value_scratch: Vec<u8>,
}

impl CellWriter {
    fn new() -> CellWriter {
        CellWriter {
            strings: Strings::new(),
            columns: Vec::new(),
            column_index: FastMap::default(),
            span_keys: Vec::new(),
            column_bytes: 0,
            value_scratch: Vec::new(),
        }
    }

    fn clear(&mut self) {
        self.strings.clear();
        self.columns.clear();
        self.column_index.clear();
        self.span_keys.clear();
        self.column_bytes = 0;
    }

    fn column(&mut self, owner_scope: u8, key: u32) -> usize {
        match self.column_index.get(&(owner_scope, key)) {
            Some(column) => *column,
            None => {
                self.columns.push(AttrColumn {
                    owner_scope,
                    key,
                    cells: 0,
                    previous_owner: 0,
                    bytes: Vec::new(),
                    strings_seen: Vec::new(),
                });
                self.column_index.insert((owner_scope, key), self.columns.len() - 1);
                self.columns.len() - 1
            }
        }
    }

    /// Adds a span attribute to its column; returns what the page bloom and the block index
    /// need of its key. `new_key` is called the first time the page sees the key.
    fn add_span_attribute(
        &mut self,
        owner: u32,
        key: &str,
        value: &ValueRef<'_>,
        new_key: impl FnOnce(u64) -> u32,
    ) -> (SpanKey, bool) {
        let index = self.strings.intern(key) as usize;
        if self.span_keys.len() <= index {
            self.span_keys.resize(index + 1, SpanKey::default());
        }
        let mut found = self.span_keys[index];
        if found.column == 0 {
            let column = self.column(SCOPE_SPAN, index as u32);
            let key_hash = key_hash(SCOPE_SPAN, key);
            found = SpanKey { column: column as u32 + 1, key_hash, entry: new_key(key_hash) };
            self.span_keys[index] = found;
        }
        let repeated = self.put(found.column as usize - 1, owner, value);
        (found, repeated)
    }

    fn add(&mut self, owner_scope: u8, owner: u32, key: &str, value: &ValueRef<'_>) {
        let key = self.strings.intern(key);
        let column = self.column(owner_scope, key);
        self.put(column, owner, value);
    }

    /// Writes a cell; returns whether its value is a string the column already holds.
    fn put(&mut self, column: usize, owner: u32, value: &ValueRef<'_>) -> bool {
        self.value_scratch.clear();
        let mut repeated = false;
        match value {
            ValueRef::Str(text) => {
                let index = self.strings.intern(text);
                self.value_scratch.push(TAG_STRING);
                put_uvarint(&mut self.value_scratch, u64::from(index));
                let seen = &mut self.columns[column].strings_seen;
                let (word, bit) = (index as usize / 64, index % 64);
                if seen.len() <= word {
                    seen.resize(word + 1, 0);
                }
                repeated = seen[word] & (1 << bit) != 0;
                seen[word] |= 1 << bit;
            }
            other => put_page_value_ref(&mut self.strings, &mut self.value_scratch, other),
        }
        let column = &mut self.columns[column];
        let before = column.bytes.len();
        put_uvarint(&mut column.bytes, u64::from(owner - column.previous_owner));
        column.previous_owner = owner;
        column.bytes.extend_from_slice(&self.value_scratch);
        column.cells += 1;
        self.column_bytes += column.bytes.len() - before;
        repeated
    }

    fn add_all(&mut self, owner_scope: u8, owner: u32, attributes: &[(String, AttrValue)]) {
        for (key, value) in attributes {
            self.add(owner_scope, owner, key, &ValueRef::from_value(value));
        }
    }
}

/// What a page caches of a span attribute key.
#[derive(Debug, Clone, Copy, Default)]
struct SpanKey {
    /// The key's column + 1; 0 while the page has none.
    column: u32,
    key_hash: u64,
    /// The key's entry in the block's index.
    entry: u32,
}

/// One attribute column while it is written.
struct AttrColumn {
    owner_scope: u8,
    key: u32,
    cells: u32,
    previous_owner: u32,
    bytes: Vec<u8>,
    /// A bit per dictionary string the column holds (whose skip data is in already).
    strings_seen: Vec<u64>,
}

/// The span columns while they are written.
#[derive(Default)]
struct SpanColumns {
    span_ids: Vec<u8>,
    parents: Vec<u8>,
    parent_ids: Vec<u8>,
    resources: Vec<u8>,
    scopes: Vec<u8>,
    names: Vec<u8>,
    kind_status: Vec<u8>,
    status_messages: Vec<u8>,
    trace_states: Vec<u8>,
    flags: Vec<u8>,
    starts: Vec<u8>,
    durations: Vec<u8>,
    dropped: Vec<u8>,
}

impl SpanColumns {
    /// The columns in the order they are written.
    fn parts(&self) -> [&Vec<u8>; 13] {
        [
            &self.span_ids,
            &self.parents,
            &self.resources,
            &self.scopes,
            &self.names,
            &self.kind_status,
            &self.status_messages,
            &self.trace_states,
            &self.flags,
            &self.starts,
            &self.durations,
            &self.dropped,
            &self.parent_ids,
        ]
    }
}

/// What a finished page says about itself, for the block's page table.
pub(crate) struct PageSummary {
    pub traces: u32,
    pub first_trace_id: TraceId,
    pub last_trace_id: TraceId,
    pub bounds: Bounds,
    /// The (scope, key) and (scope, key, value) hashes for the page's bloom filter.
    pub hashes: HashSet64,
}

/// Writes one page.
pub(crate) struct PageEncoder {
    cells: CellWriter,
    traces: Vec<u8>,
    trace_count: u32,
    first_trace_id: TraceId,
    last_trace_id: TraceId,
    resources: Vec<u8>,
    resource_count: u32,
    resource_by_identity: FastMap<Vec<u8>, u32>,
    /// The last resource and scope interned: a run of spans of one resource costs a pointer
    /// comparison.
    last_resource: Option<(Arc<ResourceInfo>, u32)>,
    scopes: Vec<u8>,
    scope_count: u32,
    scope_by_identity: FastMap<Vec<u8>, u32>,
    last_scope: Option<(Arc<ScopeInfo>, u32)>,
    spans: SpanColumns,
    span_count: u32,
    previous_start_ns: i64,
    events: Vec<u8>,
    event_count: u32,
    previous_event_span: u32,
    links: Vec<u8>,
    link_count: u32,
    previous_link_span: u32,
    /// The page's bounds and bloom hashes.
    skip: PageSkipBuilder,
    /// Position of each span ID within the trace being added.
    positions: FastMap<SpanId, u32>,
    canonical: Vec<u8>,
}

impl PageEncoder {
    pub fn new() -> PageEncoder {
        PageEncoder {
            cells: CellWriter::new(),
            traces: Vec::new(),
            trace_count: 0,
            first_trace_id: [0; 16],
            last_trace_id: [0; 16],
            resources: Vec::new(),
            resource_count: 0,
            resource_by_identity: FastMap::default(),
            last_resource: None,
            scopes: Vec::new(),
            scope_count: 0,
            scope_by_identity: FastMap::default(),
            last_scope: None,
            spans: SpanColumns::default(),
            span_count: 0,
            previous_start_ns: 0,
            events: Vec::new(),
            event_count: 0,
            previous_event_span: 0,
            links: Vec::new(),
            link_count: 0,
            previous_link_span: 0,
            skip: PageSkipBuilder::default(),
            positions: FastMap::default(),
            canonical: Vec::new(),
        }
    }

    pub fn trace_count(&self) -> u32 {
        self.trace_count
    }

    /// About the bytes the page will take uncompressed.
    pub fn raw_bytes(&self) -> usize {
        self.cells.strings.out.len()
            + self.traces.len()
            + self.resources.len()
            + self.scopes.len()
            + self.spans.parts().iter().map(|part| part.len()).sum::<usize>()
            + self.events.len()
            + self.links.len()
            + self.cells.column_bytes
    }

    fn resource_index(&mut self, info: &Arc<ResourceInfo>) -> u32 {
        if let Some((last, index)) = &self.last_resource
            && Arc::ptr_eq(last, info)
        {
            return *index;
        }
        let index = match self.resource_by_identity.get(&info.identity) {
            Some(index) => *index,
            None => {
                let index = self.resource_count;
                self.resource_count += 1;
                let schema = self.cells.strings.intern(&info.schema_url);
                put_uvarint(&mut self.resources, u64::from(schema));
                put_uvarint(&mut self.resources, u64::from(info.resource.dropped_attributes_count));
                self.cells.add_all(SCOPE_RESOURCE, index, &info.resource.attributes);
                self.skip.add_resource(&info.resource);
                self.resource_by_identity.insert(info.identity.clone(), index);
                index
            }
        };
        self.last_resource = Some((info.clone(), index));
        index
    }

    fn scope_index(&mut self, info: &Arc<ScopeInfo>) -> u32 {
        if let Some((last, index)) = &self.last_scope
            && Arc::ptr_eq(last, info)
        {
            return *index;
        }
        let index = match self.scope_by_identity.get(&info.identity) {
            Some(index) => *index,
            None => {
                let index = self.scope_count;
                self.scope_count += 1;
                for text in [&info.scope.name, &info.scope.version, &info.schema_url] {
                    let string = self.cells.strings.intern(text);
                    put_uvarint(&mut self.scopes, u64::from(string));
                }
                put_uvarint(&mut self.scopes, u64::from(info.scope.dropped_attributes_count));
                self.cells.add_all(SCOPE_INSTRUMENTATION, index, &info.scope.attributes);
                self.skip.add_scope(&info.scope);
                self.scope_by_identity.insert(info.identity.clone(), index);
                index
            }
        };
        self.last_scope = Some((info.clone(), index));
        index
    }

    /// Adds a trace: its spans in (start, span ID) order, each span ID once. Traces must come
    /// in ascending trace-ID order. The spans go into `block`'s index in the same pass.
    pub fn add_trace(
        &mut self,
        trace_id: &TraceId,
        spans: &[SpanInput<'_>],
        block: &mut IndexBuilder,
    ) -> Result<(), MalformedRecord> {
        if self.trace_count == 0 {
            self.first_trace_id = *trace_id;
        }
        self.last_trace_id = *trace_id;
        self.traces.extend_from_slice(trace_id);
        put_uvarint(&mut self.traces, spans.len() as u64);
        self.trace_count += 1;
        self.positions.clear();
        for (position, span) in spans.iter().enumerate() {
            self.positions.insert(span.span_id, position as u32);
        }
        for span in spans {
            let resource = self.resource_index(span.resource);
            let scope = self.scope_index(span.scope);
            let columns = &mut self.spans;
            columns.span_ids.extend_from_slice(&span.span_id);
            match span.parent_span_id {
                None => columns.parents.push(0),
                Some(parent) => match self.positions.get(&parent) {
                    Some(position) => put_uvarint(&mut columns.parents, u64::from(*position) + 2),
                    None => {
                        columns.parents.push(1);
                        columns.parent_ids.extend_from_slice(&parent);
                    }
                },
            }
            put_uvarint(&mut columns.resources, u64::from(resource));
            put_uvarint(&mut columns.scopes, u64::from(scope));
            put_uvarint(&mut columns.names, u64::from(self.cells.strings.intern(span.name)));
            columns.kind_status.push(span.kind.as_u8() | (span.status_code.as_u8() << 3));
            put_uvarint(&mut columns.status_messages, u64::from(self.cells.strings.intern(span.status_message)));
            put_uvarint(&mut columns.trace_states, u64::from(self.cells.strings.intern(span.trace_state)));
            put_uvarint(&mut columns.flags, u64::from(span.flags));
            put_varint(&mut columns.starts, span.start_ns.wrapping_sub(self.previous_start_ns));
            self.previous_start_ns = span.start_ns;
            put_varint(&mut columns.durations, span.end_ns.wrapping_sub(span.start_ns));
            for count in span.dropped {
                put_uvarint(&mut columns.dropped, u64::from(count));
            }
            let owner = self.span_count;
            // The attributes are read once, for the page, its bloom and the block's index; each
            // value is hashed once for both.
            let (cells, skip, canonical) = (&mut self.cells, &mut self.skip, &mut self.canonical);
            span.attributes.for_each(|key, value| {
                let (found, repeated) = cells.add_span_attribute(owner, key, &value, |key_hash| {
                    skip.add_hash(key_hash);
                    block.entry_index(SCOPE_SPAN, key)
                });
                if repeated {
                    return;
                }
                for_each_scalar(&value, &mut |scalar| {
                    if canonical_ref(scalar, canonical) {
                        let hash = value_hash(found.key_hash, canonical);
                        skip.add_hash(hash);
                        block.add_scalar_at(found.entry, scalar, hash);
                    }
                });
            })?;
            block.add_span_rest(span);
            for event in span.events.iter() {
                put_uvarint(&mut self.events, u64::from(owner - self.previous_event_span));
                self.previous_event_span = owner;
                put_varint(&mut self.events, event.time_ns.wrapping_sub(span.start_ns));
                put_uvarint(&mut self.events, u64::from(self.cells.strings.intern(&event.name)));
                put_uvarint(&mut self.events, u64::from(event.dropped_attributes_count));
                self.cells.add_all(SCOPE_EVENT, self.event_count, &event.attributes);
                self.event_count += 1;
            }
            for link in span.links.iter() {
                put_uvarint(&mut self.links, u64::from(owner - self.previous_link_span));
                self.previous_link_span = owner;
                self.links.extend_from_slice(&link.trace_id);
                self.links.extend_from_slice(&link.span_id);
                put_uvarint(&mut self.links, u64::from(self.cells.strings.intern(&link.trace_state)));
                put_uvarint(&mut self.links, u64::from(link.flags));
                put_uvarint(&mut self.links, u64::from(link.dropped_attributes_count));
                self.cells.add_all(SCOPE_LINK, self.link_count, &link.attributes);
                self.link_count += 1;
            }
            self.skip.add_span_rest(span);
            self.span_count += 1;
        }
        Ok(())
    }

    /// The page's uncompressed bytes and summary; the encoder is left empty for the next
    /// page (its buffers kept).
    pub fn finish(&mut self) -> (Vec<u8>, PageSummary) {
        let mut out = Vec::with_capacity(self.raw_bytes() + 64);
        put_uvarint(&mut out, u64::from(self.cells.strings.count()));
        out.extend_from_slice(&self.cells.strings.out);
        put_uvarint(&mut out, u64::from(self.trace_count));
        out.extend_from_slice(&self.traces);
        put_uvarint(&mut out, u64::from(self.resource_count));
        out.extend_from_slice(&self.resources);
        put_uvarint(&mut out, u64::from(self.scope_count));
        out.extend_from_slice(&self.scopes);
        for part in self.spans.parts() {
            out.extend_from_slice(part);
        }
        put_uvarint(&mut out, u64::from(self.event_count));
        out.extend_from_slice(&self.events);
        put_uvarint(&mut out, u64::from(self.link_count));
        out.extend_from_slice(&self.links);
        put_uvarint(&mut out, self.cells.columns.len() as u64);
        for column in &self.cells.columns {
            out.push(column.owner_scope);
            put_uvarint(&mut out, u64::from(column.key));
            put_uvarint(&mut out, u64::from(column.cells));
            put_uvarint(&mut out, column.bytes.len() as u64);
            out.extend_from_slice(&column.bytes);
        }
        let skip = std::mem::take(&mut self.skip);
        let summary = PageSummary {
            traces: self.trace_count,
            first_trace_id: self.first_trace_id,
            last_trace_id: self.last_trace_id,
            bounds: skip.bounds,
            hashes: skip.hashes,
        };
        self.reset();
        (out, summary)
    }

    /// Empties the encoder, keeping its buffers.
    fn reset(&mut self) {
        self.cells.clear();
        self.traces.clear();
        self.trace_count = 0;
        self.resources.clear();
        self.resource_count = 0;
        self.resource_by_identity.clear();
        self.last_resource = None;
        self.scopes.clear();
        self.scope_count = 0;
        self.scope_by_identity.clear();
        self.last_scope = None;
        for part in [
            &mut self.spans.span_ids,
            &mut self.spans.parents,
            &mut self.spans.parent_ids,
            &mut self.spans.resources,
            &mut self.spans.scopes,
            &mut self.spans.names,
            &mut self.spans.kind_status,
            &mut self.spans.status_messages,
            &mut self.spans.trace_states,
            &mut self.spans.flags,
            &mut self.spans.starts,
            &mut self.spans.durations,
            &mut self.spans.dropped,
        ] {
            part.clear();
        }
        self.span_count = 0;
        self.previous_start_ns = 0;
        self.events.clear();
        self.event_count = 0;
        self.previous_event_span = 0;
        self.links.clear();
        self.link_count = 0;
        self.previous_link_span = 0;
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// A trace of a decoded page: its spans are `first_span..first_span + span_count` of the
/// decoded rows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageTrace {
    pub trace_id: TraceId,
    pub first_span: u32,
    pub span_count: u32,
}

#[derive(Debug, Clone, Copy)]
struct SpanRow {
    span_id: SpanId,
    parent: Option<SpanId>,
    resource: u32,
    scope: u32,
    name: u32,
    kind: SpanKind,
    status: StatusCode,
    status_message: u32,
    trace_state: u32,
    flags: u32,
    start_ns: i64,
    end_ns: i64,
    dropped: [u32; 3],
}

#[derive(Debug, Clone, Copy)]
struct EventRow {
    time_ns: i64,
    name: u32,
    dropped: u32,
}

#[derive(Debug, Clone, Copy)]
struct LinkRow {
    trace_id: TraceId,
    span_id: SpanId,
    trace_state: u32,
    flags: u32,
    dropped: u32,
}

/// One attribute of an owner: its key and its encoded value (checked).
#[derive(Debug, Clone, Copy)]
struct Cell<'a> {
    key: u32,
    value: &'a [u8],
}

/// The cells of each owner of one owner scope: `order[offsets[o]..offsets[o + 1]]`, owners
/// counted from the first one kept.
#[derive(Debug, Default)]
struct OwnerCells {
    offsets: Vec<u32>,
    order: Vec<u32>,
}

/// What to decode of a page.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PageSelection<'t> {
    /// Every trace.
    All,
    /// One trace: only its rows and cells are kept, and columns are read only as far as they
    /// reach it.
    Trace(&'t TraceId),
}

/// A page parsed into rows (strings borrowed, checked as they are used), from which spans are
/// materialised on demand.
#[derive(Debug)]
pub(crate) struct DecodedPage<'a> {
    raw: &'a [u8],
    /// Each dictionary string's offset and length in `raw`.
    strings: Vec<(u32, u32)>,
    /// The traces kept.
    pub traces: Vec<PageTrace>,
    resources: Vec<(u32, u32)>,
    scopes: Vec<[u32; 4]>,
    /// The rows of the spans kept.
    spans: Vec<SpanRow>,
    events: Vec<EventRow>,
    /// Events of kept span `s`: `event_offsets[s]..event_offsets[s + 1]` (of the kept events).
    event_offsets: Vec<u32>,
    links: Vec<LinkRow>,
    link_offsets: Vec<u32>,
    cells: Vec<Cell<'a>>,
    owners: [OwnerCells; OWNER_SCOPES],
}

type Problem = String;

fn malformed(what: &str) -> Problem {
    format!("page is malformed ({what})")
}

fn varint_u32(input: &mut &[u8], what: &str) -> Result<u32, Problem> {
    get_uvarint(input).and_then(|value| u32::try_from(value).ok()).ok_or_else(|| malformed(what))
}

/// A count read from the page, bounded by what the rest of the page could hold (each item
/// takes at least `min_item_bytes`).
fn count(input: &mut &[u8], min_item_bytes: usize, what: &str) -> Result<u32, Problem> {
    let value = varint_u32(input, what)?;
    if value as usize > input.len() / min_item_bytes.max(1) {
        return Err(malformed(what));
    }
    Ok(value)
}

fn skip_page_value(input: &mut &[u8], strings: usize, depth: u32) -> Result<(), Problem> {
    if depth > MAX_VALUE_DEPTH {
        return Err(malformed("value nesting"));
    }
    match get_u8(input).ok_or_else(|| malformed("value tag"))? {
        TAG_STRING => {
            let index = varint_u32(input, "string value")?;
            if index as usize >= strings {
                return Err(malformed("string value index"));
            }
        }
        TAG_FALSE | TAG_TRUE => {}
        TAG_INT => {
            get_varint(input).ok_or_else(|| malformed("int value"))?;
        }
        TAG_DOUBLE => {
            get_u64(input).ok_or_else(|| malformed("double value"))?;
        }
        TAG_BYTES => {
            get_bytes(input).ok_or_else(|| malformed("bytes value"))?;
        }
        TAG_ARRAY => {
            let items = count(input, 1, "array")?;
            for _ in 0..items {
                skip_page_value(input, strings, depth + 1)?;
            }
        }
        TAG_KVLIST => {
            let items = count(input, 2, "key/value list")?;
            for _ in 0..items {
                let key = varint_u32(input, "list key")?;
                if key as usize >= strings {
                    return Err(malformed("list key index"));
                }
                skip_page_value(input, strings, depth + 1)?;
            }
        }
        _ => return Err(malformed("value tag")),
    }
    Ok(())
}

/// Groups kept cells by owner (a counting sort); `owners_of` gives each cell's owner relative
/// to the first kept owner, `limit` the number of kept owners.
fn group_by_owner(cell_owners: &[(u8, u32)], scope: usize, limit: usize) -> OwnerCells {
    let mut offsets = vec![0u32; limit + 1];
    for (owner_scope, owner) in cell_owners {
        if usize::from(*owner_scope) == scope {
            offsets[*owner as usize + 1] += 1;
        }
    }
    for index in 1..offsets.len() {
        offsets[index] += offsets[index - 1];
    }
    let mut next = offsets.clone();
    let mut order = vec![0u32; offsets[limit] as usize];
    for (cell, (owner_scope, owner)) in cell_owners.iter().enumerate() {
        if usize::from(*owner_scope) == scope {
            order[next[*owner as usize] as usize] = cell as u32;
            next[*owner as usize] += 1;
        }
    }
    OwnerCells { offsets, order }
}

/// Offsets of the kept rows of a span-owned list (events, links) per kept span.
fn offsets_by_span(owners: &[u32], spans: usize) -> Vec<u32> {
    let mut offsets = vec![0u32; spans + 1];
    for owner in owners {
        offsets[*owner as usize + 1] += 1;
    }
    for index in 1..offsets.len() {
        offsets[index] += offsets[index - 1];
    }
    offsets
}

impl<'a> DecodedPage<'a> {
    /// Parses a page, or the part of it that `selection` asks for; `None` when the selected
    /// trace is not in the page. Counts, indexes and strings of what is kept are checked.
    pub fn parse(raw: &'a [u8], selection: PageSelection<'_>) -> Result<Option<DecodedPage<'a>>, Problem> {
        let mut input = raw;
        let string_count = count(&mut input, 1, "string count")?;
        let mut strings = Vec::with_capacity(string_count as usize);
        for _ in 0..string_count {
            let length = varint_u32(&mut input, "string length")?;
            if length as usize > input.len() {
                return Err(malformed("string"));
            }
            strings.push(((raw.len() - input.len()) as u32, length));
            input = &input[length as usize..];
        }
        let string_index = |input: &mut &[u8], what: &str| -> Result<u32, Problem> {
            let index = varint_u32(input, what)?;
            if index >= string_count {
                return Err(malformed(what));
            }
            Ok(index)
        };

        let trace_count = count(&mut input, 17, "trace count")?;
        let mut all_traces = Vec::with_capacity(trace_count as usize);
        let mut span_total = 0u32;
        for _ in 0..trace_count {
            let trace_id = get_array::<16>(&mut input).ok_or_else(|| malformed("trace id"))?;
            let span_count = varint_u32(&mut input, "trace span count")?;
            all_traces.push(PageTrace { trace_id, first_span: span_total, span_count });
            span_total = span_total.checked_add(span_count).ok_or_else(|| malformed("span count"))?;
        }
        if all_traces.windows(2).any(|pair| pair[0].trace_id >= pair[1].trace_id) {
            return Err(malformed("traces out of order"));
        }
        if span_total as usize > input.len() / 8 {
            return Err(malformed("span count"));
        }
        // The spans kept: all, or the selected trace's.
        let (traces, kept): (Vec<PageTrace>, Range<u32>) = match selection {
            PageSelection::All => (all_traces, 0..span_total),
            PageSelection::Trace(trace_id) => {
                let Ok(index) = all_traces.binary_search_by(|trace| trace.trace_id.cmp(trace_id)) else {
                    return Ok(None);
                };
                let trace = all_traces[index];
                let range = trace.first_span..trace.first_span + trace.span_count;
                (vec![PageTrace { first_span: 0, ..trace }], range)
            }
        };
        let base = kept.start;
        let kept_count = (kept.end - kept.start) as usize;

        let resource_count = count(&mut input, 2, "resource count")?;
        let mut resources = Vec::with_capacity(resource_count as usize);
        for _ in 0..resource_count {
            let schema = string_index(&mut input, "resource schema url")?;
            let dropped = varint_u32(&mut input, "resource dropped count")?;
            resources.push((schema, dropped));
        }
        let scope_count = count(&mut input, 4, "scope count")?;
        let mut scopes = Vec::with_capacity(scope_count as usize);
        for _ in 0..scope_count {
            let name = string_index(&mut input, "scope name")?;
            let version = string_index(&mut input, "scope version")?;
            let schema = string_index(&mut input, "scope schema url")?;
            let dropped = varint_u32(&mut input, "scope dropped count")?;
            scopes.push([name, version, schema, dropped]);
        }

        // Span columns: every entry is read (they are varints), only the kept ones stored.
        let n = span_total as usize;
        let ids_len = n * 8;
        if input.len() < ids_len {
            return Err(malformed("span ids"));
        }
        let (ids, rest) = input.split_at(ids_len);
        input = rest;
        let mut spans: Vec<SpanRow> = (kept.start as usize..kept.end as usize)
            .map(|index| {
                let mut span_id = [0u8; 8];
                span_id.copy_from_slice(&ids[index * 8..index * 8 + 8]);
                SpanRow {
                    span_id,
                    parent: None,
                    resource: 0,
                    scope: 0,
                    name: 0,
                    kind: SpanKind::Unspecified,
                    status: StatusCode::Unset,
                    status_message: 0,
                    trace_state: 0,
                    flags: 0,
                    start_ns: 0,
                    end_ns: 0,
                    dropped: [0; 3],
                }
            })
            .collect();
        let in_kept = |index: usize| index >= kept.start as usize && index < kept.end as usize;
        // Parent codes, and how many explicit parents there are, and before the kept spans.
        let mut parent_codes = Vec::with_capacity(kept_count);
        let mut explicit_before = 0usize;
        let mut explicit_total = 0usize;
        for index in 0..n {
            let code = varint_u32(&mut input, "parent")?;
            if code == 1 {
                explicit_total += 1;
                if index < kept.start as usize {
                    explicit_before += 1;
                }
            }
            if in_kept(index) {
                parent_codes.push(code);
            }
        }
        for index in 0..n {
            let value = varint_u32(&mut input, "span resource")?;
            if value >= resource_count {
                return Err(malformed("span resource"));
            }
            if in_kept(index) {
                spans[index - base as usize].resource = value;
            }
        }
        for index in 0..n {
            let value = varint_u32(&mut input, "span scope")?;
            if value >= scope_count {
                return Err(malformed("span scope"));
            }
            if in_kept(index) {
                spans[index - base as usize].scope = value;
            }
        }
        for index in 0..n {
            let value = string_index(&mut input, "span name")?;
            if in_kept(index) {
                spans[index - base as usize].name = value;
            }
        }
        for index in 0..n {
            let byte = get_u8(&mut input).ok_or_else(|| malformed("kind and status"))?;
            let kind = SpanKind::from_u8(byte & 7).ok_or_else(|| malformed("span kind"))?;
            let status = StatusCode::from_u8(byte >> 3).ok_or_else(|| malformed("span status"))?;
            if in_kept(index) {
                let row = &mut spans[index - base as usize];
                row.kind = kind;
                row.status = status;
            }
        }
        for index in 0..n {
            let value = string_index(&mut input, "status message")?;
            if in_kept(index) {
                spans[index - base as usize].status_message = value;
            }
        }
        for index in 0..n {
            let value = string_index(&mut input, "trace state")?;
            if in_kept(index) {
                spans[index - base as usize].trace_state = value;
            }
        }
        for index in 0..n {
            let value = varint_u32(&mut input, "span flags")?;
            if in_kept(index) {
                spans[index - base as usize].flags = value;
            }
        }
        let mut previous_start = 0i64;
        for index in 0..n {
            previous_start =
                previous_start.wrapping_add(get_varint(&mut input).ok_or_else(|| malformed("span start"))?);
            if in_kept(index) {
                spans[index - base as usize].start_ns = previous_start;
            }
        }
        for index in 0..n {
            let duration = get_varint(&mut input).ok_or_else(|| malformed("span duration"))?;
            if in_kept(index) {
                let row = &mut spans[index - base as usize];
                row.end_ns = row.start_ns.wrapping_add(duration);
            }
        }
        for index in 0..n {
            let mut dropped = [0u32; 3];
            for slot in &mut dropped {
                *slot = varint_u32(&mut input, "dropped counts")?;
            }
            if in_kept(index) {
                spans[index - base as usize].dropped = dropped;
            }
        }
        // Explicit parent IDs, in span order: the kept spans' start after those before them.
        let explicit_bytes = explicit_total * 8;
        if input.len() < explicit_bytes {
            return Err(malformed("parent ids"));
        }
        let (region, rest) = input.split_at(explicit_bytes);
        input = rest;
        let mut parent_ids = &region[explicit_before * 8..];
        for trace in &traces {
            for position in 0..trace.span_count {
                let index = (trace.first_span + position) as usize;
                spans[index].parent = match parent_codes[index] {
                    0 => None,
                    1 => Some(get_array::<8>(&mut parent_ids).ok_or_else(|| malformed("parent id"))?),
                    code => {
                        let within = code - 2;
                        if within >= trace.span_count {
                            return Err(malformed("parent position"));
                        }
                        Some(spans[(trace.first_span + within) as usize].span_id)
                    }
                };
            }
        }

        let event_count = count(&mut input, 4, "event count")?;
        let mut events = Vec::new();
        let mut event_spans = Vec::new();
        let mut kept_events: Range<u32> = 0..0;
        let mut owner = 0u32;
        for event in 0..event_count {
            owner = owner.checked_add(varint_u32(&mut input, "event span")?).ok_or_else(|| malformed("event span"))?;
            if owner >= span_total {
                return Err(malformed("event span"));
            }
            let delta = get_varint(&mut input).ok_or_else(|| malformed("event time"))?;
            let name = string_index(&mut input, "event name")?;
            let dropped = varint_u32(&mut input, "event dropped count")?;
            if kept.contains(&owner) {
                if events.is_empty() {
                    kept_events = event..event;
                }
                kept_events.end = event + 1;
                let relative = owner - base;
                events.push(EventRow { time_ns: spans[relative as usize].start_ns.wrapping_add(delta), name, dropped });
                event_spans.push(relative);
            }
        }
        let link_count = count(&mut input, 28, "link count")?;
        let mut links = Vec::new();
        let mut link_spans = Vec::new();
        let mut kept_links: Range<u32> = 0..0;
        let mut owner = 0u32;
        for link in 0..link_count {
            owner = owner.checked_add(varint_u32(&mut input, "link span")?).ok_or_else(|| malformed("link span"))?;
            if owner >= span_total {
                return Err(malformed("link span"));
            }
            let trace_id = get_array::<16>(&mut input).ok_or_else(|| malformed("link trace id"))?;
            let span_id = get_array::<8>(&mut input).ok_or_else(|| malformed("link span id"))?;
            let trace_state = string_index(&mut input, "link trace state")?;
            let flags = varint_u32(&mut input, "link flags")?;
            let dropped = varint_u32(&mut input, "link dropped count")?;
            if kept.contains(&owner) {
                if links.is_empty() {
                    kept_links = link..link;
                }
                kept_links.end = link + 1;
                links.push(LinkRow { trace_id, span_id, trace_state, flags, dropped });
                link_spans.push(owner - base);
            }
        }

        // Attribute columns: cells of kept owners; a column is left as soon as its owners
        // pass the kept ones (owners never decrease within a column).
        let owner_limits = [resource_count, span_total, scope_count, event_count, link_count];
        let kept_owners: [Range<u32>; OWNER_SCOPES] =
            [0..resource_count, kept.clone(), 0..scope_count, kept_events.clone(), kept_links.clone()];
        let column_count = count(&mut input, 4, "column count")?;
        let mut cells = Vec::new();
        let mut cell_owners: Vec<(u8, u32)> = Vec::new();
        for _ in 0..column_count {
            let owner_scope = get_u8(&mut input).ok_or_else(|| malformed("column scope"))?;
            let limit = *owner_limits.get(usize::from(owner_scope)).ok_or_else(|| malformed("column scope"))?;
            let wanted = &kept_owners[usize::from(owner_scope)];
            let key = string_index(&mut input, "column key")?;
            let cell_count = count(&mut input, 2, "column cell count")?;
            let byte_len = varint_u32(&mut input, "column length")? as usize;
            if byte_len > input.len() {
                return Err(malformed("column length"));
            }
            let (mut column, rest) = input.split_at(byte_len);
            input = rest;
            let mut owner = 0u32;
            let mut read = 0;
            for _ in 0..cell_count {
                owner =
                    owner.checked_add(varint_u32(&mut column, "cell owner")?).ok_or_else(|| malformed("cell owner"))?;
                if owner >= limit {
                    return Err(malformed("cell owner"));
                }
                if owner >= wanted.end {
                    break;
                }
                let start = column;
                skip_page_value(&mut column, strings.len(), 0)?;
                read += 1;
                if owner >= wanted.start {
                    cells.push(Cell { key, value: &start[..start.len() - column.len()] });
                    cell_owners.push((owner_scope, owner - wanted.start));
                }
            }
            if read == cell_count && !column.is_empty() {
                return Err(malformed("column trailing bytes"));
            }
        }
        if !input.is_empty() {
            return Err(malformed("trailing bytes"));
        }

        let owners = std::array::from_fn(|scope| {
            let range = &kept_owners[scope];
            group_by_owner(&cell_owners, scope, (range.end - range.start) as usize)
        });
        let event_offsets = offsets_by_span(&event_spans, kept_count);
        let link_offsets = offsets_by_span(&link_spans, kept_count);
        Ok(Some(DecodedPage {
            raw,
            strings,
            traces,
            resources,
            scopes,
            spans,
            events,
            event_offsets,
            links,
            link_offsets,
            cells,
            owners,
        }))
    }
}

impl DecodedPage<'_> {
    fn string(&self, index: u32) -> Result<String, Problem> {
        let (offset, length) = *self.strings.get(index as usize).ok_or_else(|| malformed("string index"))?;
        let bytes = self.raw.get(offset as usize..(offset + length) as usize).ok_or_else(|| malformed("string"))?;
        std::str::from_utf8(bytes).map(str::to_string).map_err(|_| malformed("string is not utf-8"))
    }

    fn value(&self, input: &mut &[u8]) -> Result<AttrValue, Problem> {
        Ok(match get_u8(input).ok_or_else(|| malformed("value tag"))? {
            TAG_STRING => AttrValue::String(self.string(varint_u32(input, "string value")?)?),
            TAG_FALSE => AttrValue::Bool(false),
            TAG_TRUE => AttrValue::Bool(true),
            TAG_INT => AttrValue::Int(get_varint(input).ok_or_else(|| malformed("int value"))?),
            TAG_DOUBLE => AttrValue::Double(f64::from_bits(get_u64(input).ok_or_else(|| malformed("double value"))?)),
            TAG_BYTES => AttrValue::Bytes(get_bytes(input).ok_or_else(|| malformed("bytes value"))?.to_vec()),
            TAG_ARRAY => {
                let items = varint_u32(input, "array")?;
                let mut values = Vec::with_capacity((items as usize).min(input.len()));
                for _ in 0..items {
                    values.push(self.value(input)?);
                }
                AttrValue::Array(values)
            }
            TAG_KVLIST => {
                let items = varint_u32(input, "key/value list")?;
                let mut pairs = Vec::with_capacity((items as usize).min(input.len()));
                for _ in 0..items {
                    let key = self.string(varint_u32(input, "list key")?)?;
                    pairs.push((key, self.value(input)?));
                }
                AttrValue::KvList(pairs)
            }
            _ => return Err(malformed("value tag")),
        })
    }

    /// The attributes of a kept owner, sorted by key (stable: repeated keys keep their order).
    fn attributes(&self, owner_scope: u8, owner: u32) -> Result<Attributes, Problem> {
        let owners = &self.owners[usize::from(owner_scope)];
        let (Some(start), Some(end)) = (owners.offsets.get(owner as usize), owners.offsets.get(owner as usize + 1))
        else {
            return Ok(Vec::new());
        };
        let mut attributes = Vec::with_capacity((end - start) as usize);
        for cell in &owners.order[*start as usize..*end as usize] {
            let cell = &self.cells[*cell as usize];
            let mut value = cell.value;
            attributes.push((self.string(cell.key)?, self.value(&mut value)?));
        }
        attributes.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(attributes)
    }

    pub fn resource(&self, index: u32) -> Result<Arc<ResourceInfo>, Problem> {
        let (schema, dropped) = *self.resources.get(index as usize).ok_or_else(|| malformed("resource index"))?;
        let resource =
            Resource { attributes: self.attributes(SCOPE_RESOURCE, index)?, dropped_attributes_count: dropped };
        Ok(ResourceInfo::new(resource, self.string(schema)?))
    }

    pub fn scope(&self, index: u32) -> Result<Arc<ScopeInfo>, Problem> {
        let [name, version, schema, dropped] =
            *self.scopes.get(index as usize).ok_or_else(|| malformed("scope index"))?;
        let scope = Scope {
            name: self.string(name)?,
            version: self.string(version)?,
            attributes: self.attributes(SCOPE_INSTRUMENTATION, index)?,
            dropped_attributes_count: dropped,
        };
        Ok(ScopeInfo::new(scope, self.string(schema)?))
    }

    /// Kept span `index`, materialised.
    fn span(&self, trace_id: &TraceId, index: usize) -> Result<Span, Problem> {
        let row = &self.spans[index];
        let mut events = Vec::new();
        for event in self.event_offsets[index]..self.event_offsets[index + 1] {
            let e = &self.events[event as usize];
            events.push(SpanEvent {
                time_ns: e.time_ns,
                name: self.string(e.name)?,
                attributes: self.attributes(SCOPE_EVENT, event)?,
                dropped_attributes_count: e.dropped,
            });
        }
        let mut links = Vec::new();
        for link in self.link_offsets[index]..self.link_offsets[index + 1] {
            let l = &self.links[link as usize];
            links.push(SpanLink {
                trace_id: l.trace_id,
                span_id: l.span_id,
                trace_state: self.string(l.trace_state)?,
                attributes: self.attributes(SCOPE_LINK, link)?,
                dropped_attributes_count: l.dropped,
                flags: l.flags,
            });
        }
        Ok(Span {
            trace_id: *trace_id,
            span_id: row.span_id,
            parent_span_id: row.parent,
            trace_state: self.string(row.trace_state)?,
            name: self.string(row.name)?,
            kind: row.kind,
            start_ns: row.start_ns,
            end_ns: row.end_ns,
            status: SpanStatus { code: row.status, message: self.string(row.status_message)? },
            attributes: self.attributes(SCOPE_SPAN, index as u32)?,
            events,
            links,
            flags: row.flags,
            dropped_attributes_count: row.dropped[0],
            dropped_events_count: row.dropped[1],
            dropped_links_count: row.dropped[2],
        })
    }

    /// The spans of kept trace `trace_index`, with their resources and scopes (materialised
    /// once per page through `cache`).
    pub fn trace_spans(&self, trace_index: usize, cache: &mut PageContexts) -> Result<Vec<StoredSpan>, Problem> {
        let trace = self.traces[trace_index];
        let mut out = Vec::with_capacity(trace.span_count as usize);
        for index in trace.first_span..trace.first_span + trace.span_count {
            let row = &self.spans[index as usize];
            let resource = cache.resource(self, row.resource)?;
            let scope = cache.scope(self, row.scope)?;
            out.push(StoredSpan { resource, scope, span: self.span(&trace.trace_id, index as usize)? });
        }
        Ok(out)
    }
}

/// Resources and scopes of one page, materialised on first use.
#[derive(Default)]
pub(crate) struct PageContexts {
    resources: HashMap<u32, Arc<ResourceInfo>>,
    scopes: HashMap<u32, Arc<ScopeInfo>>,
}

impl PageContexts {
    fn resource(&mut self, page: &DecodedPage<'_>, index: u32) -> Result<Arc<ResourceInfo>, Problem> {
        if let Some(info) = self.resources.get(&index) {
            return Ok(info.clone());
        }
        let info = page.resource(index)?;
        self.resources.insert(index, info.clone());
        Ok(info)
    }

    fn scope(&mut self, page: &DecodedPage<'_>, index: u32) -> Result<Arc<ScopeInfo>, Problem> {
        if let Some(info) = self.scopes.get(&index) {
            return Ok(info.clone());
        }
        let info = page.scope(index)?;
        self.scopes.insert(index, info.clone());
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traces::assemble::TraceCollector;
    use crate::traces::records::tests::full_span;

    #[test]
    fn pages_round_trip_every_field() {
        let resource = ResourceInfo::new(
            Resource {
                attributes: vec![
                    ("host.name".into(), AttrValue::String("h1".into())),
                    ("service.name".into(), AttrValue::String("api".into())),
                ],
                dropped_attributes_count: 2,
            },
            "https://schema/r".into(),
        );
        let scope = ScopeInfo::new(
            Scope {
                name: "lib".into(),
                version: "2".into(),
                attributes: vec![("x".into(), AttrValue::Int(1))],
                dropped_attributes_count: 1,
            },
            "https://schema/s".into(),
        );
        let mut traces = Vec::new();
        for trace in 1..4u8 {
            let mut collector = TraceCollector::default();
            for span in 1..5u8 {
                let mut value = full_span(trace, span, if span == 1 { None } else { Some(span - 1) });
                value.attributes.sort_by(|a, b| a.0.cmp(&b.0));
                if span == 4 {
                    // A parent that lives in another block.
                    value.parent_span_id = Some([0xee; 8]);
                }
                collector.add(StoredSpan { resource: resource.clone(), scope: scope.clone(), span: value });
            }
            traces.push(([trace; 16], collector.into_sorted()));
        }
        let mut encoder = PageEncoder::new();
        for (trace_id, spans) in &traces {
            let inputs: Vec<SpanInput<'_>> = spans.iter().map(SpanInput::from_stored).collect();
            encoder.add_trace(trace_id, &inputs, &mut IndexBuilder::new(10)).unwrap();
        }
        let (raw, summary) = encoder.finish();
        assert_eq!((summary.traces, summary.bounds.spans), (3, 12));
        assert_eq!((summary.first_trace_id, summary.last_trace_id), ([1; 16], [3; 16]));
        let page = DecodedPage::parse(&raw, PageSelection::All).unwrap().unwrap();
        let mut cache = PageContexts::default();
        for (index, (trace_id, spans)) in traces.iter().enumerate() {
            let whole = page.trace_spans(index, &mut cache).unwrap();
            // The same trace, decoded alone.
            let alone = DecodedPage::parse(&raw, PageSelection::Trace(trace_id)).unwrap().unwrap();
            let single = alone.trace_spans(0, &mut PageContexts::default()).unwrap();
            for decoded in [whole, single] {
                assert_eq!(decoded.len(), spans.len());
                for (got, want) in decoded.iter().zip(spans) {
                    assert_eq!(got.span, want.span);
                    assert_eq!(got.resource.as_ref(), want.resource.as_ref());
                    assert_eq!(got.scope.as_ref(), want.scope.as_ref());
                }
            }
        }
        assert!(DecodedPage::parse(&raw, PageSelection::Trace(&[9; 16])).unwrap().is_none());
        for cut in 0..raw.len() {
            assert!(DecodedPage::parse(&raw[..cut], PageSelection::All).is_err(), "cut at {cut}");
        }
        let mut flipped = raw.clone();
        for position in (0..raw.len()).step_by(7) {
            flipped[position] ^= 0x5a;
            // Damage is an error or a different page, never a panic.
            for selection in [PageSelection::All, PageSelection::Trace(&[2; 16])] {
                if let Ok(Some(page)) = DecodedPage::parse(&flipped, selection) {
                    for index in 0..page.traces.len() {
                        let _ = page.trace_spans(index, &mut PageContexts::default());
                    }
                }
            }
            flipped[position] ^= 0x5a;
        }
    }
}
