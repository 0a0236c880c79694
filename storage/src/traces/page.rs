//! Pages: the unit of a block's page table, of its bloom filters and of search skipping. A page
//! holds whole traces (all the block has of each), in trace-ID order, cut into groups of traces
//! of about `group_target_bytes`, and is stored as frames that are compressed one by one: a
//! header frame, then one frame per group. A lookup by trace ID decompresses the header and the
//! one group that holds the trace; a search or a compaction reads every frame.
//!
//! Inside a frame, data is laid out column by column so that zstd sees long runs of alike
//! bytes: a group holds one column per span field, its events and links, and one column per
//! attribute key (per scope) with the values of that key for every span, event or link of the
//! group that has it. Strings are kept once per page and referred to by index: a string that
//! only one group uses is stored in that group's frame, one used by several groups or by the
//! header (resources and scopes) is stored in the header, so the header stays small.
//!
//! Uncompressed layouts (integers are varints unless stated; `idx` is a page-wide string
//! index: strings are numbered in the order the page met them, entry 0 is the empty string):
//!
//! ```text
//! header frame
//!   shared strings  count, then per string (in index order): length, UTF-8 bytes
//!   string map      total string count t, then ceil(t / 8) bytes: bit i (LSB first) set when
//!                   string i is a shared one
//!   groups          count, then per group: trace count, index of the first string met in it
//!                   (non-decreasing, at most t)
//!   traces          count (the groups' sum), then per trace: trace ID (16 bytes), span count
//!   resources       count, then per resource: schema URL idx, dropped attributes count
//!   scopes          count, then per scope: name idx, version idx, schema URL idx, dropped count
//!   attributes      columns of owner scopes 0 and 2 (below)
//! group frame (group g: its strings are those met first in g, [first(g), first(g + 1)))
//!   local strings   count, then per string of the group's range that is not shared, in order:
//!                   length, UTF-8 bytes
//!   spans           n = the sum of the group's traces' span counts; each column holds n
//!                   entries: span ID (8 bytes), parent code (0 none, 1 in `parent IDs`, k+2:
//!                   the trace's span k), resource, scope, name idx, kind | status << 3 (1 byte),
//!                   status message idx, trace state idx, flags, start - previous span's start
//!                   (signed, the first from 0), end - start (signed), dropped attributes,
//!                   events and links counts (3 varints)
//!   parent IDs      8 bytes per parent code 1
//!   events          count, then per event: span - previous event's span, time - span start
//!                   (signed), name idx, dropped attributes count
//!   links           count, then per link: span - previous link's span, trace ID (16), span ID
//!                   (8), trace state idx, flags, dropped attributes count
//!   attributes      columns of owner scopes 1, 3 and 4
//! attributes        column count, then per column: owner scope (1 byte: 0 resource, 1 span,
//!                   2 scope, 3 event, 4 link), key idx, cell count, byte length, then per
//!                   cell: owner - previous cell's owner, value
//! value             tag (1 byte), then: 0 string idx | 1 false | 2 true | 3 int (signed) |
//!                   4 double (8 bytes LE) | 5 bytes (length, bytes) | 6 array (count, values) |
//!                   7 key/value list (count, then key idx and value)
//! ```
//!
//! Spans of a trace are in (start, span ID) order. Readers check every index and count, so a
//! damaged page is an error, never a panic.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use super::assemble::{ResourceInfo, ScopeInfo, SpanInput, StoredSpan};
use super::filter::{canonical_ref, str_satisfies, value_satisfies};
use super::hash::{FastMap, HashSet64, hash_bytes, process_seed};
use super::index::{
    Bounds, IndexBuilder, PageSkipBuilder, SCOPE_EVENT, SCOPE_INSTRUMENTATION, SCOPE_LINK, SCOPE_RESOURCE, SCOPE_SPAN,
    for_each_scalar, key_hash, value_hash,
};
use super::records::{MAX_VALUE_DEPTH, MalformedRecord, ValueRef};
use super::{
    AttrValue, AttributeScope, Attributes, CompareOp, Resource, Scope, Span, SpanCondition, SpanEvent, SpanId,
    SpanKind, SpanLink, SpanStatus, StatusCode, TraceId,
};
use crate::codec::{get_array, get_bytes, get_u8, get_u64, get_uvarint, put_bytes, put_uvarint, put_varint};

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

/// The user of a string that makes it a shared one: the header.
const SHARED: u32 = u32::MAX;

// ---------------------------------------------------------------------------------------------
// Encoding

/// The page's strings while it is written: their bytes, and an open-addressing table of their
/// indexes (no allocation per string). Each string remembers the one group that uses it, or
/// that it is shared (used by the header or by more than one group).
struct Strings {
    bytes: Vec<u8>,
    /// Where each string's bytes sit in `bytes`.
    places: Vec<(u32, u32)>,
    /// Per string: the group that uses it, or [`SHARED`].
    users: Vec<u32>,
    /// 0: empty; otherwise a string's index + 1. A power of two, at most half full.
    table: Vec<u32>,
    seed: u64,
}

impl Strings {
    fn new() -> Strings {
        let mut strings = Strings {
            bytes: Vec::new(),
            places: Vec::new(),
            users: Vec::new(),
            table: vec![0; 1024],
            seed: process_seed(),
        };
        strings.intern("", SHARED);
        strings
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.places.clear();
        self.users.clear();
        self.table.fill(0);
        self.intern("", SHARED);
    }

    fn count(&self) -> u32 {
        self.places.len() as u32
    }

    fn get(&self, index: usize) -> &[u8] {
        let (start, length) = self.places[index];
        &self.bytes[start as usize..(start + length) as usize]
    }

    fn slot_of(&self, bytes: &[u8], hash: u64) -> (usize, Option<u32>) {
        let mask = self.table.len() - 1;
        let mut slot = hash as usize & mask;
        loop {
            match self.table[slot] {
                0 => return (slot, None),
                entry => {
                    if self.get(entry as usize - 1) == bytes {
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
            let mut slot = hash_bytes(self.seed, self.get(index)) as usize & mask;
            while table[slot] != 0 {
                slot = (slot + 1) & mask;
            }
            table[slot] = index as u32 + 1;
        }
        self.table = table;
    }

    /// Whether string `index` is `text`.
    #[inline]
    fn is(&self, index: u32, text: &str) -> bool {
        index != NO_STRING && self.get(index as usize) == text.as_bytes()
    }

    /// Notes that group `user` uses string `index` (as [`Strings::intern`] does for a string
    /// it finds).
    #[inline]
    fn note_use(&mut self, index: u32, user: u32) {
        if self.users[index as usize] != user {
            self.users[index as usize] = SHARED;
        }
    }

    /// The index of `text`, added if new; `user` is the group that uses it (or [`SHARED`]).
    fn intern(&mut self, text: &str, user: u32) -> u32 {
        let bytes = text.as_bytes();
        let hash = hash_bytes(self.seed, bytes);
        let (slot, found) = self.slot_of(bytes, hash);
        if let Some(index) = found {
            self.note_use(index, user);
            return index;
        }
        let index = self.places.len() as u32;
        self.places.push((self.bytes.len() as u32, bytes.len() as u32));
        self.users.push(user);
        self.bytes.extend_from_slice(bytes);
        self.table[slot] = index + 1;
        if self.places.len() * 2 >= self.table.len() {
            self.grow();
        }
        index
    }

    /// Writes the strings of `range` that are shared (`shared`) or not: count, then each.
    fn put_section(&self, out: &mut Vec<u8>, range: Range<u32>, shared: bool) {
        let chosen = |index: &u32| (self.users[*index as usize] == SHARED) == shared;
        put_uvarint(out, range.clone().filter(chosen).count() as u64);
        for index in range.filter(chosen) {
            let bytes = self.get(index as usize);
            put_uvarint(out, bytes.len() as u64);
            out.extend_from_slice(bytes);
        }
    }

    /// The string map: the count, then a bit per string, set for the shared ones.
    fn put_map(&self, out: &mut Vec<u8>) {
        put_uvarint(out, u64::from(self.count()));
        for chunk in self.users.chunks(8) {
            let mut byte = 0u8;
            for (bit, user) in chunk.iter().enumerate() {
                if *user == SHARED {
                    byte |= 1 << bit;
                }
            }
            out.push(byte);
        }
    }
}

fn put_page_value(strings: &mut Strings, user: u32, out: &mut Vec<u8>, value: &AttrValue) {
    match value {
        AttrValue::String(text) => {
            out.push(TAG_STRING);
            put_uvarint(out, u64::from(strings.intern(text, user)));
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
                put_page_value(strings, user, out, value);
            }
        }
        AttrValue::KvList(pairs) => {
            out.push(TAG_KVLIST);
            put_uvarint(out, pairs.len() as u64);
            for (key, value) in pairs {
                put_uvarint(out, u64::from(strings.intern(key, user)));
                put_page_value(strings, user, out, value);
            }
        }
    }
}

fn put_page_value_ref(strings: &mut Strings, user: u32, out: &mut Vec<u8>, value: &ValueRef<'_>) {
    match value {
        ValueRef::Str(text) => {
            out.push(TAG_STRING);
            put_uvarint(out, u64::from(strings.intern(text, user)));
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
        ValueRef::Other(other) => put_page_value(strings, user, out, other),
    }
}

/// How a column's values are stored: each with its tag, or all of one kind without tags.
const KIND_MIXED: u8 = 0;
const KIND_STRING: u8 = 1;
const KIND_INT: u8 = 2;
const KIND_DOUBLE: u8 = 3;
const KIND_BOOL: u8 = 4;

/// The column kind of a value with tag `tag`.
fn kind_of(tag: u8) -> u8 {
    match tag {
        TAG_STRING => KIND_STRING,
        TAG_INT => KIND_INT,
        TAG_DOUBLE => KIND_DOUBLE,
        TAG_FALSE | TAG_TRUE => KIND_BOOL,
        _ => KIND_MIXED,
    }
}

/// One attribute column while it is written.
struct AttrColumn {
    owner_scope: u8,
    key: u32,
    cells: u32,
    previous_owner: u32,
    /// Every cell's owner so far is its position (0, 1, 2, ...): no owner needs writing.
    dense: bool,
    /// Owner deltas, once the column is not dense.
    owners: Vec<u8>,
    /// The kind of every value so far: values are then stored without their tag. Once two
    /// kinds meet, `KIND_MIXED`: each value with its tag.
    kind: u8,
    values: Vec<u8>,
}

impl AttrColumn {
    fn new(owner_scope: u8, key: u32) -> AttrColumn {
        AttrColumn {
            owner_scope,
            key,
            cells: 0,
            previous_owner: 0,
            dense: true,
            owners: Vec::new(),
            kind: KIND_MIXED,
            values: Vec::new(),
        }
    }

    fn bytes(&self) -> usize {
        self.owners.len() + self.values.len()
    }

    /// Rewrites the values stored so far with their tags.
    fn make_mixed(&mut self) {
        let mut input = self.values.as_slice();
        let mut tagged = Vec::with_capacity(self.values.len() + self.cells as usize);
        while !input.is_empty() {
            match self.kind {
                KIND_BOOL => {
                    tagged.push(if input[0] == 0 { TAG_FALSE } else { TAG_TRUE });
                    input = &input[1..];
                }
                KIND_DOUBLE => {
                    tagged.push(TAG_DOUBLE);
                    tagged.extend_from_slice(&input[..8]);
                    input = &input[8..];
                }
                _ => {
                    tagged.push(if self.kind == KIND_STRING { TAG_STRING } else { TAG_INT });
                    let length = input.iter().position(|byte| *byte < 0x80).map_or(input.len(), |end| end + 1);
                    tagged.extend_from_slice(&input[..length]);
                    input = &input[length..];
                }
            }
        }
        self.values = tagged;
        self.kind = KIND_MIXED;
    }

    /// Appends a cell; `value` is the encoded value, its tag first.
    fn put(&mut self, owner: u32, value: &[u8]) {
        let (tag, payload) = match value.split_first() {
            Some((tag, payload)) => (*tag, payload),
            None => return,
        };
        let kind = kind_of(tag);
        if self.cells == 0 {
            self.kind = kind;
        } else if self.kind != kind && self.kind != KIND_MIXED {
            self.make_mixed();
        }
        match self.kind {
            KIND_MIXED => self.values.extend_from_slice(value),
            KIND_BOOL => self.values.push(u8::from(tag == TAG_TRUE)),
            _ => self.values.extend_from_slice(payload),
        }
        if self.dense && owner != self.cells {
            self.dense = false;
            for cell in 0..self.cells {
                self.owners.push(u8::from(cell > 0));
            }
        }
        if !self.dense {
            put_uvarint(&mut self.owners, u64::from(owner - self.previous_owner));
        }
        self.previous_owner = owner;
        self.cells += 1;
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.owner_scope);
        put_uvarint(out, u64::from(self.key));
        put_uvarint(out, u64::from(self.cells));
        out.push(u8::from(self.dense) | (self.kind << 1));
        if !self.dense {
            put_uvarint(out, self.owners.len() as u64);
            out.extend_from_slice(&self.owners);
        }
        put_uvarint(out, self.values.len() as u64);
        out.extend_from_slice(&self.values);
    }
}

/// Attribute columns of one frame (the header's or a group's) while they are written.
#[derive(Default)]
struct Columns {
    columns: Vec<AttrColumn>,
    index: FastMap<(u8, u32), usize>,
    /// Bytes in `columns`, kept as they grow so that sizes are cheap to ask.
    bytes: usize,
}

impl Columns {
    fn clear(&mut self) {
        self.columns.clear();
        self.index.clear();
        self.bytes = 0;
    }

    fn column(&mut self, owner_scope: u8, key: u32) -> usize {
        match self.index.get(&(owner_scope, key)) {
            Some(column) => *column,
            None => {
                self.columns.push(AttrColumn::new(owner_scope, key));
                self.index.insert((owner_scope, key), self.columns.len() - 1);
                self.columns.len() - 1
            }
        }
    }

    /// Appends a cell whose encoded value (tag first) is `value`.
    fn put(&mut self, column: usize, owner: u32, value: &[u8]) {
        let column = &mut self.columns[column];
        let before = column.bytes();
        column.put(owner, value);
        self.bytes = self.bytes + column.bytes() - before;
    }

    /// Adds an attribute list of one owner; strings are interned for `user`.
    fn add_all(
        &mut self,
        strings: &mut Strings,
        user: u32,
        scratch: &mut Vec<u8>,
        owner_scope: u8,
        owner: u32,
        attributes: &[(String, AttrValue)],
    ) {
        for (key, value) in attributes {
            let key = strings.intern(key, user);
            let column = self.column(owner_scope, key);
            scratch.clear();
            put_page_value(strings, user, scratch, value);
            self.put(column, owner, scratch);
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        put_uvarint(out, self.columns.len() as u64);
        for column in &self.columns {
            column.encode(out);
        }
    }
}

/// What a page keeps of a span attribute key, by the key's string index, so that the common
/// case costs one string lookup.
#[derive(Debug, Clone, Copy, Default)]
struct SpanKey {
    /// The key's column + 1 in group `group`; 0 while that group has none.
    column: u32,
    group: u32,
    /// Whether the page has met the key (the rest of the fields are then set).
    known: bool,
    key_hash: u64,
    /// The key's entry in the block's index.
    entry: u32,
    /// Its set in `PageEncoder::key_values_seen`.
    seen: u32,
    /// The string index of the key's last string value, or [`NO_STRING`]: a value repeated
    /// from span to span is recognised by one comparison, without hashing.
    last_value: u32,
}

/// Integer and boolean values of one key met on a page: a direct-mapped memo of integers
/// (a value may be forgotten when another takes its slot, never remembered wrongly) and the
/// two booleans.
#[derive(Debug, Clone, Copy)]
struct ScalarMemo {
    ints: [i64; SCALAR_MEMO_SLOTS],
    /// A bit per slot of `ints` that holds a value.
    filled: u64,
    /// Bit 0: false met, bit 1: true met.
    bools: u8,
}

const SCALAR_MEMO_SLOTS: usize = 64;

impl Default for ScalarMemo {
    fn default() -> ScalarMemo {
        ScalarMemo { ints: [0; SCALAR_MEMO_SLOTS], filled: 0, bools: 0 }
    }
}

impl ScalarMemo {
    /// Notes `value`; whether it was met before. Other kinds of value are never.
    fn note(&mut self, value: &ValueRef<'_>) -> bool {
        match *value {
            ValueRef::Int(number) => {
                let slot = ((number as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize;
                let bit = 1u64 << slot;
                let met = self.filled & bit != 0 && self.ints[slot] == number;
                self.ints[slot] = number;
                self.filled |= bit;
                met
            }
            ValueRef::Bool(flag) => {
                let bit = 1u8 << u8::from(flag);
                let met = self.bools & bit != 0;
                self.bools |= bit;
                met
            }
            _ => false,
        }
    }
}

/// Traces of at most this many spans find a span's parent by a scan rather than a map.
const SCANNED_TRACE_SPANS: usize = 32;

/// No string (in [`SpanKey::last_value`] and `PageEncoder::recent_keys`).
const NO_STRING: u32 = u32::MAX;

/// The span columns of a group while they are written.
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

    fn clear(&mut self) {
        for part in [
            &mut self.span_ids,
            &mut self.parents,
            &mut self.parent_ids,
            &mut self.resources,
            &mut self.scopes,
            &mut self.names,
            &mut self.kind_status,
            &mut self.status_messages,
            &mut self.trace_states,
            &mut self.flags,
            &mut self.starts,
            &mut self.durations,
            &mut self.dropped,
        ] {
            part.clear();
        }
    }
}

/// The group being written.
#[derive(Default)]
struct GroupWriter {
    /// The string count when the group started: its strings are numbered from here.
    first_string: u32,
    first_trace_id: TraceId,
    traces: u32,
    /// Per trace: ID, span count.
    trace_table: Vec<u8>,
    spans: SpanColumns,
    span_count: u32,
    /// The start of the group's first span, and of the span before the one being added.
    first_start_ns: i64,
    previous_start_ns: i64,
    events: Vec<u8>,
    event_count: u32,
    previous_event_span: u32,
    links: Vec<u8>,
    link_count: u32,
    previous_link_span: u32,
    columns: Columns,
}

impl GroupWriter {
    fn bytes(&self) -> usize {
        self.trace_table.len()
            + self.spans.parts().iter().map(|part| part.len()).sum::<usize>()
            + self.events.len()
            + self.links.len()
            + self.columns.bytes
    }

    /// Everything of the group but its strings, as the group frame lays it out.
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.trace_table);
        for part in self.spans.parts() {
            out.extend_from_slice(part);
        }
        put_uvarint(out, u64::from(self.event_count));
        out.extend_from_slice(&self.events);
        put_uvarint(out, u64::from(self.link_count));
        out.extend_from_slice(&self.links);
        self.columns.encode(out);
    }

    fn clear(&mut self, first_string: u32) {
        self.first_string = first_string;
        self.traces = 0;
        self.trace_table.clear();
        self.spans.clear();
        self.span_count = 0;
        self.first_start_ns = 0;
        self.previous_start_ns = 0;
        self.events.clear();
        self.event_count = 0;
        self.previous_event_span = 0;
        self.links.clear();
        self.link_count = 0;
        self.previous_link_span = 0;
        self.columns.clear();
    }
}

/// A closed group, waiting for the page to end (its local strings are known only then).
struct ClosedGroup {
    first_string: u32,
    first_trace_id: TraceId,
    traces: u32,
    /// The group frame after its strings.
    body: Vec<u8>,
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

/// A finished page: its frames uncompressed (the header first) and its summary.
pub(crate) struct EncodedPage {
    pub frames: Vec<Vec<u8>>,
    pub summary: PageSummary,
}

/// Writes one page.
pub(crate) struct PageEncoder {
    group_target_bytes: usize,
    strings: Strings,
    trace_count: u32,
    first_trace_id: TraceId,
    last_trace_id: TraceId,
    resources: Vec<u8>,
    resource_count: u32,
    resource_by_identity: FastMap<Vec<u8>, u32>,
    /// Resources met, by address (held, so that no other takes the address): readers share
    /// one `ResourceInfo` per identity, so this spares hashing the identity per span.
    resource_by_address: FastMap<usize, (Arc<ResourceInfo>, u32)>,
    /// The last resource and scope interned: a run of spans of one resource costs a pointer
    /// comparison.
    last_resource: Option<(Arc<ResourceInfo>, u32)>,
    scopes: Vec<u8>,
    scope_count: u32,
    scope_by_identity: FastMap<Vec<u8>, u32>,
    scope_by_address: FastMap<usize, (Arc<ScopeInfo>, u32)>,
    last_scope: Option<(Arc<ScopeInfo>, u32)>,
    /// Attribute columns of the resources and scopes (the header's).
    context_columns: Columns,
    closed: Vec<ClosedGroup>,
    closed_bytes: usize,
    group: GroupWriter,
    /// Span attribute keys met, by string index.
    span_keys: Vec<SpanKey>,
    /// Per attribute position in a span, the string index of the key last met there (or
    /// [`NO_STRING`]): spans of one kind list the same keys in the same order, so a key is
    /// mostly recognised by one comparison, without hashing.
    recent_keys: Vec<u32>,
    /// Per span attribute key: a bit per string index whose value (with this key) is in the
    /// page's bloom and the block's index already.
    key_values_seen: Vec<Vec<u64>>,
    /// Per span attribute key (same numbering): integer and boolean values whose (key, value)
    /// is in the page's bloom and the block's index already, as far as a small memo holds them.
    key_scalars_seen: Vec<ScalarMemo>,
    /// The page's bounds and bloom hashes.
    skip: PageSkipBuilder,
    /// Position of each span ID within the trace being added.
    positions: FastMap<SpanId, u32>,
    canonical: Vec<u8>,
    value_scratch: Vec<u8>,
}

impl PageEncoder {
    /// An encoder that closes a group once its columns reach `group_target_bytes`.
    pub fn new(group_target_bytes: usize) -> PageEncoder {
        PageEncoder {
            group_target_bytes: group_target_bytes.max(1),
            strings: Strings::new(),
            trace_count: 0,
            first_trace_id: [0; 16],
            last_trace_id: [0; 16],
            resources: Vec::new(),
            resource_count: 0,
            resource_by_identity: FastMap::default(),
            resource_by_address: FastMap::default(),
            last_resource: None,
            scopes: Vec::new(),
            scope_count: 0,
            scope_by_identity: FastMap::default(),
            scope_by_address: FastMap::default(),
            last_scope: None,
            context_columns: Columns::default(),
            closed: Vec::new(),
            closed_bytes: 0,
            group: GroupWriter { first_string: 1, ..GroupWriter::default() },
            span_keys: Vec::new(),
            recent_keys: Vec::new(),
            key_values_seen: Vec::new(),
            key_scalars_seen: Vec::new(),
            skip: PageSkipBuilder::default(),
            positions: FastMap::default(),
            canonical: Vec::new(),
            value_scratch: Vec::new(),
        }
    }

    pub fn trace_count(&self) -> u32 {
        self.trace_count
    }

    /// About the bytes the page will take uncompressed.
    pub fn raw_bytes(&self) -> usize {
        self.strings.bytes.len()
            + self.strings.places.len()
            + self.resources.len()
            + self.scopes.len()
            + self.context_columns.bytes
            + self.closed_bytes
            + self.group.bytes()
    }

    /// The number of the group being written.
    fn group_number(&self) -> u32 {
        self.closed.len() as u32
    }

    fn resource_index(&mut self, info: &Arc<ResourceInfo>) -> u32 {
        if let Some((last, index)) = &self.last_resource
            && Arc::ptr_eq(last, info)
        {
            return *index;
        }
        let address = Arc::as_ptr(info) as usize;
        if let Some((_, index)) = self.resource_by_address.get(&address) {
            let index = *index;
            self.last_resource = Some((info.clone(), index));
            return index;
        }
        let index = match self.resource_by_identity.get(&info.identity) {
            Some(index) => *index,
            None => {
                let index = self.resource_count;
                self.resource_count += 1;
                let schema = self.strings.intern(&info.schema_url, SHARED);
                put_uvarint(&mut self.resources, u64::from(schema));
                put_uvarint(&mut self.resources, u64::from(info.resource.dropped_attributes_count));
                self.context_columns.add_all(
                    &mut self.strings,
                    SHARED,
                    &mut self.value_scratch,
                    SCOPE_RESOURCE,
                    index,
                    &info.resource.attributes,
                );
                self.skip.add_resource(&info.resource);
                self.resource_by_identity.insert(info.identity.clone(), index);
                index
            }
        };
        self.resource_by_address.insert(address, (info.clone(), index));
        self.last_resource = Some((info.clone(), index));
        index
    }

    fn scope_index(&mut self, info: &Arc<ScopeInfo>) -> u32 {
        if let Some((last, index)) = &self.last_scope
            && Arc::ptr_eq(last, info)
        {
            return *index;
        }
        let address = Arc::as_ptr(info) as usize;
        if let Some((_, index)) = self.scope_by_address.get(&address) {
            let index = *index;
            self.last_scope = Some((info.clone(), index));
            return index;
        }
        let index = match self.scope_by_identity.get(&info.identity) {
            Some(index) => *index,
            None => {
                let index = self.scope_count;
                self.scope_count += 1;
                for text in [&info.scope.name, &info.scope.version, &info.schema_url] {
                    let string = self.strings.intern(text, SHARED);
                    put_uvarint(&mut self.scopes, u64::from(string));
                }
                put_uvarint(&mut self.scopes, u64::from(info.scope.dropped_attributes_count));
                self.context_columns.add_all(
                    &mut self.strings,
                    SHARED,
                    &mut self.value_scratch,
                    SCOPE_INSTRUMENTATION,
                    index,
                    &info.scope.attributes,
                );
                self.skip.add_scope(&info.scope);
                self.scope_by_identity.insert(info.identity.clone(), index);
                index
            }
        };
        self.scope_by_address.insert(address, (info.clone(), index));
        self.last_scope = Some((info.clone(), index));
        index
    }

    /// Adds a span attribute to the group's column of its key. Its (key, value) goes into
    /// the page's bloom and `block`'s index unless the page already holds that string value
    /// for the key.
    fn add_span_attribute(
        &mut self,
        owner: u32,
        position: usize,
        key: &str,
        value: &ValueRef<'_>,
        block: &mut IndexBuilder,
    ) {
        let group = self.group_number();
        let recent = self.recent_keys.get(position).copied().unwrap_or(NO_STRING);
        let key_index = if self.strings.is(recent, key) {
            self.strings.note_use(recent, group);
            recent as usize
        } else {
            let index = self.strings.intern(key, group);
            if self.recent_keys.len() <= position {
                self.recent_keys.resize(position + 1, NO_STRING);
            }
            self.recent_keys[position] = index;
            index as usize
        };
        if self.span_keys.len() <= key_index {
            self.span_keys.resize(key_index + 1, SpanKey::default());
        }
        let mut found = self.span_keys[key_index];
        if !found.known {
            let key_hash = key_hash(SCOPE_SPAN, key);
            self.skip.add_hash(key_hash);
            found = SpanKey {
                column: 0,
                group,
                known: true,
                key_hash,
                entry: block.entry_index(SCOPE_SPAN, key),
                seen: self.key_values_seen.len() as u32,
                last_value: NO_STRING,
            };
            self.key_values_seen.push(Vec::new());
            self.key_scalars_seen.push(ScalarMemo::default());
        }
        if found.column == 0 || found.group != group {
            found.column = self.group.columns.column(SCOPE_SPAN, key_index as u32) as u32 + 1;
            found.group = group;
        }
        self.value_scratch.clear();
        let repeated = match value {
            ValueRef::Str(text) => {
                let index = if self.strings.is(found.last_value, text) {
                    self.strings.note_use(found.last_value, group);
                    found.last_value
                } else {
                    self.strings.intern(text, group)
                };
                found.last_value = index;
                self.value_scratch.push(TAG_STRING);
                put_uvarint(&mut self.value_scratch, u64::from(index));
                let seen = &mut self.key_values_seen[found.seen as usize];
                let (word, bit) = (index as usize / 64, index % 64);
                if seen.len() <= word {
                    seen.resize(word + 1, 0);
                }
                let repeated = seen[word] & (1 << bit) != 0;
                seen[word] |= 1 << bit;
                repeated
            }
            other => {
                put_page_value_ref(&mut self.strings, group, &mut self.value_scratch, other);
                self.key_scalars_seen[found.seen as usize].note(other)
            }
        };
        self.span_keys[key_index] = found;
        self.group.columns.put(found.column as usize - 1, owner, &self.value_scratch);
        if repeated {
            return;
        }
        let (skip, canonical) = (&mut self.skip, &mut self.canonical);
        for_each_scalar(value, &mut |scalar| {
            if canonical_ref(scalar, canonical) {
                let hash = value_hash(found.key_hash, canonical);
                skip.add_hash(hash);
                block.add_scalar_at(found.entry, scalar, hash);
            }
        });
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
        self.trace_count += 1;
        if self.group.traces == 0 {
            self.group.first_trace_id = *trace_id;
        }
        self.group.traces += 1;
        self.group.trace_table.extend_from_slice(trace_id);
        put_uvarint(&mut self.group.trace_table, spans.len() as u64);
        // A parent is found among a small trace's spans by a scan, in a large one by a map.
        let scan = spans.len() <= SCANNED_TRACE_SPANS;
        self.positions.clear();
        if !scan {
            for (position, span) in spans.iter().enumerate() {
                self.positions.insert(span.head.span_id, position as u32);
            }
        }
        let group = self.group_number();
        for (position, span) in spans.iter().enumerate() {
            let resource = self.resource_index(span.resource);
            let scope = self.scope_index(span.scope);
            let name = self.strings.intern(span.head.name, group);
            let status_message = self.strings.intern(span.head.status_message, group);
            let trace_state = self.strings.intern(span.head.trace_state, group);
            // The group's first span from 0, the first span of a trace from the group's first,
            // the others from the span before them.
            let writer = &mut self.group;
            let from = match (writer.span_count, position) {
                (0, _) => 0,
                (_, 0) => writer.first_start_ns,
                _ => writer.previous_start_ns,
            };
            if writer.span_count == 0 {
                writer.first_start_ns = span.head.start_ns;
            }
            writer.previous_start_ns = span.head.start_ns;
            let columns = &mut writer.spans;
            columns.span_ids.extend_from_slice(&span.head.span_id);
            match span.head.parent_span_id {
                None => columns.parents.push(0),
                Some(parent) => match if scan {
                    spans.iter().position(|other| other.head.span_id == parent).map(|at| at as u32)
                } else {
                    self.positions.get(&parent).copied()
                } {
                    Some(position) => put_uvarint(&mut columns.parents, u64::from(position) + 2),
                    None => {
                        columns.parents.push(1);
                        columns.parent_ids.extend_from_slice(&parent);
                    }
                },
            }
            put_uvarint(&mut columns.resources, u64::from(resource));
            put_uvarint(&mut columns.scopes, u64::from(scope));
            put_uvarint(&mut columns.names, u64::from(name));
            columns.kind_status.push(span.head.kind.as_u8() | (span.head.status_code.as_u8() << 3));
            put_uvarint(&mut columns.status_messages, u64::from(status_message));
            put_uvarint(&mut columns.trace_states, u64::from(trace_state));
            put_uvarint(&mut columns.flags, u64::from(span.head.flags));
            put_varint(&mut columns.starts, span.head.start_ns.wrapping_sub(from));
            put_varint(&mut columns.durations, span.head.end_ns.wrapping_sub(span.head.start_ns));
            for count in span.dropped {
                put_uvarint(&mut columns.dropped, u64::from(count));
            }
            let owner = self.group.span_count;
            // The attributes are read once, for the page, its bloom and the block's index.
            let mut position = 0;
            span.attributes.for_each(|key, value| {
                self.add_span_attribute(owner, position, key, &value, block);
                position += 1;
            })?;
            block.add_span_rest(span);
            for event in span.events.iter() {
                let writer = &mut self.group;
                put_uvarint(&mut writer.events, u64::from(owner - writer.previous_event_span));
                writer.previous_event_span = owner;
                put_varint(&mut writer.events, event.time_ns.wrapping_sub(span.head.start_ns));
                put_uvarint(&mut writer.events, u64::from(self.strings.intern(&event.name, group)));
                put_uvarint(&mut writer.events, u64::from(event.dropped_attributes_count));
                writer.columns.add_all(
                    &mut self.strings,
                    group,
                    &mut self.value_scratch,
                    SCOPE_EVENT,
                    writer.event_count,
                    &event.attributes,
                );
                writer.event_count += 1;
            }
            for link in span.links.iter() {
                let writer = &mut self.group;
                put_uvarint(&mut writer.links, u64::from(owner - writer.previous_link_span));
                writer.previous_link_span = owner;
                writer.links.extend_from_slice(&link.trace_id);
                writer.links.extend_from_slice(&link.span_id);
                put_uvarint(&mut writer.links, u64::from(self.strings.intern(&link.trace_state, group)));
                put_uvarint(&mut writer.links, u64::from(link.flags));
                put_uvarint(&mut writer.links, u64::from(link.dropped_attributes_count));
                writer.columns.add_all(
                    &mut self.strings,
                    group,
                    &mut self.value_scratch,
                    SCOPE_LINK,
                    writer.link_count,
                    &link.attributes,
                );
                writer.link_count += 1;
            }
            self.skip.add_span_rest(span);
            self.group.span_count += 1;
        }
        if self.group.bytes() >= self.group_target_bytes {
            self.close_group();
        }
        Ok(())
    }

    /// Closes the group being written (if it has a trace); the next trace starts a new one.
    fn close_group(&mut self) {
        if self.group.traces == 0 {
            return;
        }
        let mut body = Vec::with_capacity(self.group.bytes() + 16);
        self.group.encode(&mut body);
        self.closed_bytes += body.len();
        self.closed.push(ClosedGroup {
            first_string: self.group.first_string,
            first_trace_id: self.group.first_trace_id,
            traces: self.group.traces,
            body,
        });
        self.group.clear(self.strings.count());
    }

    /// The page's frames and summary; the encoder is left empty for the next page (its
    /// buffers kept).
    pub fn finish(&mut self) -> EncodedPage {
        self.close_group();
        let string_count = self.strings.count();
        let mut header = Vec::with_capacity(self.raw_bytes() / 4 + 64);
        self.strings.put_section(&mut header, 0..string_count, true);
        self.strings.put_map(&mut header);
        put_uvarint(&mut header, self.closed.len() as u64);
        for group in &self.closed {
            header.extend_from_slice(&group.first_trace_id);
            put_uvarint(&mut header, u64::from(group.traces));
            put_uvarint(&mut header, u64::from(group.first_string));
        }
        put_uvarint(&mut header, u64::from(self.resource_count));
        header.extend_from_slice(&self.resources);
        put_uvarint(&mut header, u64::from(self.scope_count));
        header.extend_from_slice(&self.scopes);
        self.context_columns.encode(&mut header);

        let mut frames = Vec::with_capacity(self.closed.len() + 1);
        frames.push(header);
        let closed = std::mem::take(&mut self.closed);
        for (number, group) in closed.iter().enumerate() {
            let end = closed.get(number + 1).map_or(string_count, |next| next.first_string);
            let mut frame = Vec::with_capacity(group.body.len() + 1024);
            self.strings.put_section(&mut frame, group.first_string..end, false);
            frame.extend_from_slice(&group.body);
            frames.push(frame);
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
        EncodedPage { frames, summary }
    }

    /// Empties the encoder, keeping its buffers.
    fn reset(&mut self) {
        self.strings.clear();
        self.trace_count = 0;
        self.resources.clear();
        self.resource_count = 0;
        self.resource_by_identity.clear();
        self.resource_by_address.clear();
        self.last_resource = None;
        self.scopes.clear();
        self.scope_count = 0;
        self.scope_by_identity.clear();
        self.scope_by_address.clear();
        self.last_scope = None;
        self.context_columns.clear();
        self.closed.clear();
        self.closed_bytes = 0;
        self.group.clear(self.strings.count());
        self.span_keys.clear();
        self.recent_keys.clear();
        self.key_values_seen.clear();
        self.key_scalars_seen.clear();
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// A trace of a group: its spans are `first_span..first_span + span_count` of the group's
/// rows (in a [`DecodedGroup`], of the rows kept).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageTrace {
    pub trace_id: TraceId,
    pub first_span: u32,
    pub span_count: u32,
}

/// A group as the header describes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupEntry {
    pub first_trace_id: TraceId,
    pub traces: u32,
    /// Its strings: those numbered `first_string..end_string` that are not shared.
    first_string: u32,
    end_string: u32,
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

/// One attribute of an owner: its key and its encoded value (checked), stored as its
/// column's kind says.
#[derive(Debug, Clone, Copy)]
struct Cell<'a> {
    key: u32,
    kind: u8,
    value: &'a [u8],
}

/// The cells of each owner of one owner scope: `order[offsets[o]..offsets[o + 1]]`, owners
/// counted from the first one kept.
#[derive(Debug, Default)]
struct OwnerCells {
    offsets: Vec<u32>,
    order: Vec<u32>,
}

type Problem = String;

fn malformed(what: &str) -> Problem {
    format!("page is malformed ({what})")
}

/// A varint, with the one- and two-byte cases (nearly all of a page's) inline.
#[inline]
fn uvarint(input: &mut &[u8]) -> Option<u64> {
    let bytes: &[u8] = input;
    match bytes {
        [first, rest @ ..] if *first < 0x80 => {
            *input = rest;
            Some(u64::from(*first))
        }
        [first, second, rest @ ..] if *second < 0x80 => {
            *input = rest;
            Some(u64::from(first & 0x7f) | (u64::from(*second) << 7))
        }
        _ => get_uvarint(input),
    }
}

#[inline]
fn varint(input: &mut &[u8]) -> Option<i64> {
    let raw = uvarint(input)?;
    Some(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

#[inline]
fn varint_u32(input: &mut &[u8], what: &str) -> Result<u32, Problem> {
    uvarint(input).and_then(|value| u32::try_from(value).ok()).ok_or_else(|| malformed(what))
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

/// A strings section: each string's offset (in `raw`) and length.
fn strings_section(raw: &[u8], input: &mut &[u8], what: &str) -> Result<Vec<(u32, u32)>, Problem> {
    let string_count = count(input, 1, what)?;
    let mut places = Vec::with_capacity(string_count as usize);
    for _ in 0..string_count {
        let length = varint_u32(input, what)?;
        if length as usize > input.len() {
            return Err(malformed(what));
        }
        places.push(((raw.len() - input.len()) as u32, length));
        *input = &input[length as usize..];
    }
    Ok(places)
}

/// The string numbering of a page: which strings are shared (in the header), and where.
#[derive(Debug)]
struct StringMap {
    total: u32,
    /// A bit per string, set for the shared ones.
    bits: Vec<u64>,
    /// Shared strings before each word of `bits`.
    rank: Vec<u32>,
    /// The shared strings' places in the header frame.
    shared: Vec<(u32, u32)>,
}

impl StringMap {
    fn is_shared(&self, index: u32) -> bool {
        self.bits.get(index as usize / 64).is_some_and(|word| word & (1 << (index % 64)) != 0)
    }

    /// Shared strings numbered below `index` (at most `total`).
    fn shared_below(&self, index: u32) -> u32 {
        let word = index as usize / 64;
        let Some(bits) = self.bits.get(word) else { return self.shared.len() as u32 };
        let below = bits & ((1u64 << (index % 64)) - 1);
        self.rank[word] + below.count_ones()
    }
}

/// Strings of the page as one part of it sees them: the shared ones, and a group's own.
#[derive(Clone, Copy)]
struct Texts<'p> {
    header_raw: &'p [u8],
    map: &'p StringMap,
    /// The group frame and its strings, when the part is a group.
    group: Option<(&'p [u8], &'p LocalStrings)>,
}

/// A group's own strings: their range in the page's numbering and their places in its frame.
#[derive(Debug)]
struct LocalStrings {
    first: u32,
    end: u32,
    places: Vec<(u32, u32)>,
}

impl<'p> Texts<'p> {
    fn bytes(&self, index: u32) -> Result<&'p [u8], Problem> {
        let (raw, place) = if index < self.map.total && self.map.is_shared(index) {
            (self.header_raw, self.map.shared.get(self.map.shared_below(index) as usize))
        } else {
            match self.group {
                Some((raw, local)) if (local.first..local.end).contains(&index) => {
                    let position =
                        (index - local.first) - (self.map.shared_below(index) - self.map.shared_below(local.first));
                    (raw, local.places.get(position as usize))
                }
                _ => return Err(malformed("string index")),
            }
        };
        let (offset, length) = *place.ok_or_else(|| malformed("string index"))?;
        raw.get(offset as usize..offset as usize + length as usize).ok_or_else(|| malformed("string"))
    }

    fn string(&self, index: u32) -> Result<String, Problem> {
        std::str::from_utf8(self.bytes(index)?).map(str::to_string).map_err(|_| malformed("string is not utf-8"))
    }

    fn value(&self, input: &mut &[u8]) -> Result<AttrValue, Problem> {
        Ok(match get_u8(input).ok_or_else(|| malformed("value tag"))? {
            TAG_STRING => AttrValue::String(self.string(varint_u32(input, "string value")?)?),
            TAG_FALSE => AttrValue::Bool(false),
            TAG_TRUE => AttrValue::Bool(true),
            TAG_INT => AttrValue::Int(varint(input).ok_or_else(|| malformed("int value"))?),
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

    /// The value of a cell.
    fn cell_value(&self, cell: &Cell<'_>) -> Result<AttrValue, Problem> {
        let mut input = cell.value;
        Ok(match cell.kind {
            KIND_STRING => AttrValue::String(self.string(varint_u32(&mut input, "string value")?)?),
            KIND_INT => AttrValue::Int(varint(&mut input).ok_or_else(|| malformed("int value"))?),
            KIND_DOUBLE => {
                AttrValue::Double(f64::from_bits(get_u64(&mut input).ok_or_else(|| malformed("double value"))?))
            }
            KIND_BOOL => AttrValue::Bool(input.first().is_some_and(|byte| *byte != 0)),
            _ => self.value(&mut input)?,
        })
    }

    /// The attributes of an owner, sorted by key (stable: repeated keys keep their order).
    fn attributes(&self, cells: &[Cell<'_>], owners: &OwnerCells, owner: u32) -> Result<Attributes, Problem> {
        let (Some(start), Some(end)) = (owners.offsets.get(owner as usize), owners.offsets.get(owner as usize + 1))
        else {
            return Ok(Vec::new());
        };
        let mut attributes = Vec::with_capacity((end - start) as usize);
        for cell in &owners.order[*start as usize..*end as usize] {
            let cell = &cells[*cell as usize];
            attributes.push((self.string(cell.key)?, self.cell_value(cell)?));
        }
        attributes.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(attributes)
    }
}

/// Skips a value, checking its string indexes with `valid`. Scalars (nearly every value) are
/// handled inline; arrays and lists by [`skip_nested_value`].
#[inline]
fn skip_page_value(input: &mut &[u8], valid: &impl Fn(u32) -> bool, depth: u32) -> Result<(), Problem> {
    let (&tag, rest) = input.split_first().ok_or_else(|| malformed("value tag"))?;
    *input = rest;
    match tag {
        TAG_STRING => {
            if !valid(varint_u32(input, "string value")?) {
                return Err(malformed("string value index"));
            }
        }
        TAG_FALSE | TAG_TRUE => {}
        TAG_INT => {
            uvarint(input).ok_or_else(|| malformed("int value"))?;
        }
        TAG_DOUBLE => {
            *input = input.get(8..).ok_or_else(|| malformed("double value"))?;
        }
        TAG_BYTES => {
            get_bytes(input).ok_or_else(|| malformed("bytes value"))?;
        }
        TAG_ARRAY | TAG_KVLIST => skip_nested_value(tag, input, valid, depth)?,
        _ => return Err(malformed("value tag")),
    }
    Ok(())
}

/// The items of an array or key/value list (the tag read).
fn skip_nested_value(tag: u8, input: &mut &[u8], valid: &impl Fn(u32) -> bool, depth: u32) -> Result<(), Problem> {
    if depth >= MAX_VALUE_DEPTH {
        return Err(malformed("value nesting"));
    }
    if tag == TAG_ARRAY {
        let items = count(input, 1, "array")?;
        for _ in 0..items {
            skip_page_value(input, valid, depth + 1)?;
        }
    } else {
        let items = count(input, 2, "key/value list")?;
        for _ in 0..items {
            if !valid(varint_u32(input, "list key")?) {
                return Err(malformed("list key index"));
            }
            skip_page_value(input, valid, depth + 1)?;
        }
    }
    Ok(())
}

/// Groups kept cells by owner (a counting sort); each cell's owner is relative to the first
/// kept owner, `limit` the number of kept owners.
fn group_by_owner(cell_owners: &[(u8, u32)], scope: u8, limit: usize) -> OwnerCells {
    let mut offsets = vec![0u32; limit + 1];
    for (owner_scope, owner) in cell_owners {
        if *owner_scope == scope {
            offsets[*owner as usize + 1] += 1;
        }
    }
    for index in 1..offsets.len() {
        offsets[index] += offsets[index - 1];
    }
    let mut next = offsets.clone();
    let mut order = vec![0u32; offsets[limit] as usize];
    for (cell, (owner_scope, owner)) in cell_owners.iter().enumerate() {
        if *owner_scope == scope {
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

/// Skips `count` varints.
#[inline]
fn skip_varints(input: &mut &[u8], count: usize) -> Option<()> {
    let bytes: &[u8] = input;
    let mut left = count;
    let mut position = 0;
    // Eight bytes at a time while they end fewer varints than are left to skip.
    while left > 8 && position + 8 <= bytes.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[position..position + 8]);
        let ends = (!u64::from_le_bytes(word) & 0x8080_8080_8080_8080).count_ones() as usize;
        left -= ends;
        position += 8;
    }
    while left > 0 {
        if *bytes.get(position)? < 0x80 {
            left -= 1;
        }
        position += 1;
    }
    *input = &bytes[position..];
    Some(())
}

/// Skips `count` values of a column of kind `kind`, unchecked.
fn skip_values(input: &mut &[u8], kind: u8, count: usize) -> Result<(), Problem> {
    let fixed = |input: &mut &[u8], size: usize| -> Result<(), Problem> {
        *input =
            count.checked_mul(size).and_then(|bytes| input.get(bytes..)).ok_or_else(|| malformed("column values"))?;
        Ok(())
    };
    match kind {
        KIND_STRING | KIND_INT => skip_varints(input, count).ok_or_else(|| malformed("column values")),
        KIND_DOUBLE => fixed(input, 8),
        KIND_BOOL => fixed(input, 1),
        _ => {
            for _ in 0..count {
                skip_page_value(input, &|_| true, 0)?;
            }
            Ok(())
        }
    }
}

/// Reads one value of a column of kind `kind`, checked; returns its bytes.
fn read_value<'a>(input: &mut &'a [u8], kind: u8, valid: &impl Fn(u32) -> bool) -> Result<&'a [u8], Problem> {
    let start = *input;
    match kind {
        KIND_STRING => {
            if !valid(varint_u32(input, "string value")?) {
                return Err(malformed("string value index"));
            }
        }
        KIND_INT => {
            uvarint(input).ok_or_else(|| malformed("int value"))?;
        }
        KIND_DOUBLE => *input = input.get(8..).ok_or_else(|| malformed("double value"))?,
        KIND_BOOL => match input.split_first() {
            Some((0 | 1, rest)) => *input = rest,
            _ => return Err(malformed("bool value")),
        },
        _ => skip_page_value(input, valid, 0)?,
    }
    Ok(&start[..start.len() - input.len()])
}

/// A byte length read from the page, and the bytes it covers.
fn section<'a>(input: &mut &'a [u8], what: &str) -> Result<&'a [u8], Problem> {
    let length = varint_u32(input, what)? as usize;
    if length > input.len() {
        return Err(malformed(what));
    }
    let (bytes, rest) = input.split_at(length);
    *input = rest;
    Ok(bytes)
}

/// Cells read from attribute columns, and each one's owner scope and owner.
type ColumnCells<'a> = (Vec<Cell<'a>>, Vec<(u8, u32)>);

/// Reads attribute columns: per column, the cells whose owners fall in `wanted[scope]` (for
/// the owner scopes `allowed`, each owner below `limits[scope]`), with their owner relative
/// to the first wanted one. Owners never decrease within a column, so the cells wanted are
/// consecutive: the values before them are skipped without being read, and those after
/// them are not looked at unless `whole` asks for every column to be checked to its end.
fn read_columns<'a>(
    input: &mut &'a [u8],
    allowed: &[u8],
    limits: &[u32; OWNER_SCOPES],
    wanted: &[Range<u32>; OWNER_SCOPES],
    whole: bool,
    valid: &impl Fn(u32) -> bool,
) -> Result<ColumnCells<'a>, Problem> {
    let column_count = count(input, 4, "column count")?;
    let mut cells = Vec::new();
    let mut cell_owners: Vec<(u8, u32)> = Vec::new();
    for _ in 0..column_count {
        let owner_scope = get_u8(input).ok_or_else(|| malformed("column scope"))?;
        if !allowed.contains(&owner_scope) {
            return Err(malformed("column scope"));
        }
        let limit = limits[usize::from(owner_scope)];
        let wanted = &wanted[usize::from(owner_scope)];
        let key = varint_u32(input, "column key")?;
        if !valid(key) {
            return Err(malformed("column key"));
        }
        let cell_count = count(input, 1, "column cell count")?;
        let layout = get_u8(input).ok_or_else(|| malformed("column layout"))?;
        let (dense, kind) = (layout & 1 != 0, layout >> 1);
        if kind > KIND_BOOL {
            return Err(malformed("column layout"));
        }
        let mut owners = if dense { &[][..] } else { section(input, "column owners")? };
        let mut values = section(input, "column values")?;

        // The cells wanted: `first..end`, with their owners.
        let (first, end) = if dense {
            if cell_count > limit {
                return Err(malformed("cell owner"));
            }
            let first = wanted.start.min(cell_count);
            let end = wanted.end.min(cell_count);
            for owner in first..end {
                cell_owners.push((owner_scope, owner - wanted.start));
            }
            (first, end)
        } else {
            let (mut owner, mut first, mut end) = (0u32, None, None);
            for cell in 0..cell_count {
                owner =
                    owner.checked_add(varint_u32(&mut owners, "cell owner")?).ok_or_else(|| malformed("cell owner"))?;
                if owner >= limit {
                    return Err(malformed("cell owner"));
                }
                if owner >= wanted.end {
                    end.get_or_insert(cell);
                    if !whole {
                        break;
                    }
                } else if owner >= wanted.start {
                    first.get_or_insert(cell);
                    cell_owners.push((owner_scope, owner - wanted.start));
                }
            }
            if whole && !owners.is_empty() {
                return Err(malformed("column owners trailing bytes"));
            }
            let end = end.unwrap_or(cell_count);
            (first.unwrap_or(end), end)
        };
        skip_values(&mut values, kind, first as usize)?;
        for _ in first..end {
            cells.push(Cell { key, kind, value: read_value(&mut values, kind, valid)? });
        }
        if cells.len() != cell_owners.len() {
            return Err(malformed("column cells"));
        }
        if whole {
            skip_values(&mut values, kind, (cell_count - end) as usize)?;
            if !values.is_empty() {
                return Err(malformed("column values trailing bytes"));
            }
        }
    }
    Ok((cells, cell_owners))
}

/// A page's header frame, parsed: the strings every group may use, the groups, the
/// resources and scopes.
#[derive(Debug)]
pub(crate) struct PageHeader<'a> {
    raw: &'a [u8],
    strings: StringMap,
    /// The groups, in trace-ID order.
    pub groups: Vec<GroupEntry>,
    resources: Vec<(u32, u32)>,
    scopes: Vec<[u32; 4]>,
    cells: Vec<Cell<'a>>,
    /// Cells of the resources and of the scopes.
    owners: [OwnerCells; 2],
}

impl<'a> PageHeader<'a> {
    /// Parses a header frame, checking its counts, indexes and order.
    pub fn parse(raw: &'a [u8]) -> Result<PageHeader<'a>, Problem> {
        let mut input = raw;
        let shared = strings_section(raw, &mut input, "shared strings")?;
        let total = varint_u32(&mut input, "string count")?;
        let map_bytes = (total as usize).div_ceil(8);
        if map_bytes > input.len() {
            return Err(malformed("string map"));
        }
        let (map, rest) = input.split_at(map_bytes);
        input = rest;
        let mut bits = vec![0u64; (total as usize).div_ceil(64)];
        for (index, byte) in map.iter().enumerate() {
            bits[index / 8] |= u64::from(*byte) << ((index % 8) * 8);
        }
        if total % 8 != 0 && map.last().is_some_and(|last| last >> (total % 8) != 0) {
            return Err(malformed("string map"));
        }
        let mut rank = Vec::with_capacity(bits.len());
        let mut running = 0u32;
        for word in &bits {
            rank.push(running);
            running += word.count_ones();
        }
        if running as usize != shared.len() {
            return Err(malformed("shared string count"));
        }
        let strings = StringMap { total, bits, rank, shared };

        let group_count = count(&mut input, 18, "group count")?;
        if group_count == 0 {
            return Err(malformed("group count"));
        }
        let mut groups: Vec<GroupEntry> = Vec::with_capacity(group_count as usize);
        for _ in 0..group_count {
            let first_trace_id = get_array::<16>(&mut input).ok_or_else(|| malformed("group first trace"))?;
            let traces = varint_u32(&mut input, "group trace count")?;
            let first_string = varint_u32(&mut input, "group strings")?;
            if traces == 0
                || first_string > total
                || groups
                    .last()
                    .is_some_and(|last| last.first_string > first_string || last.first_trace_id >= first_trace_id)
            {
                return Err(malformed("group"));
            }
            groups.push(GroupEntry { first_trace_id, traces, first_string, end_string: total });
        }
        for index in 1..groups.len() {
            groups[index - 1].end_string = groups[index].first_string;
        }

        let shared_only = |index: u32| index < strings.total && strings.is_shared(index);
        let shared_index = |input: &mut &[u8], what: &str| -> Result<u32, Problem> {
            let index = varint_u32(input, what)?;
            if !shared_only(index) {
                return Err(malformed(what));
            }
            Ok(index)
        };
        let resource_count = count(&mut input, 2, "resource count")?;
        let mut resources = Vec::with_capacity(resource_count as usize);
        for _ in 0..resource_count {
            let schema = shared_index(&mut input, "resource schema url")?;
            let dropped = varint_u32(&mut input, "resource dropped count")?;
            resources.push((schema, dropped));
        }
        let scope_count = count(&mut input, 4, "scope count")?;
        let mut scopes = Vec::with_capacity(scope_count as usize);
        for _ in 0..scope_count {
            let name = shared_index(&mut input, "scope name")?;
            let version = shared_index(&mut input, "scope version")?;
            let schema = shared_index(&mut input, "scope schema url")?;
            let dropped = varint_u32(&mut input, "scope dropped count")?;
            scopes.push([name, version, schema, dropped]);
        }
        let mut limits = [0u32; OWNER_SCOPES];
        limits[usize::from(SCOPE_RESOURCE)] = resource_count;
        limits[usize::from(SCOPE_INSTRUMENTATION)] = scope_count;
        let wanted = limits.map(|limit| 0..limit);
        let (cells, cell_owners) =
            read_columns(&mut input, &[SCOPE_RESOURCE, SCOPE_INSTRUMENTATION], &limits, &wanted, true, &shared_only)?;
        if !input.is_empty() {
            return Err(malformed("header trailing bytes"));
        }
        let owners = [
            group_by_owner(&cell_owners, SCOPE_RESOURCE, resource_count as usize),
            group_by_owner(&cell_owners, SCOPE_INSTRUMENTATION, scope_count as usize),
        ];
        Ok(PageHeader { raw, strings, groups, resources, scopes, cells, owners })
    }

    /// The group that holds a trace if the page does: the last group starting at or before it.
    pub fn find_group(&self, trace_id: &TraceId) -> Option<usize> {
        self.groups.partition_point(|group| group.first_trace_id <= *trace_id).checked_sub(1)
    }

    fn texts(&self) -> Texts<'_> {
        Texts { header_raw: self.raw, map: &self.strings, group: None }
    }

    fn resource(&self, index: u32) -> Result<Arc<ResourceInfo>, Problem> {
        let (schema, dropped) = *self.resources.get(index as usize).ok_or_else(|| malformed("resource index"))?;
        let texts = self.texts();
        let resource = Resource {
            attributes: texts.attributes(&self.cells, &self.owners[0], index)?,
            dropped_attributes_count: dropped,
        };
        Ok(ResourceInfo::new(resource, texts.string(schema)?))
    }

    fn scope(&self, index: u32) -> Result<Arc<ScopeInfo>, Problem> {
        let [name, version, schema, dropped] =
            *self.scopes.get(index as usize).ok_or_else(|| malformed("scope index"))?;
        let texts = self.texts();
        let scope = Scope {
            name: texts.string(name)?,
            version: texts.string(version)?,
            attributes: texts.attributes(&self.cells, &self.owners[1], index)?,
            dropped_attributes_count: dropped,
        };
        Ok(ScopeInfo::new(scope, texts.string(schema)?))
    }
}

/// What to decode of a group.
#[derive(Debug, Clone, Copy)]
pub(crate) enum GroupSelection<'t> {
    /// Every trace.
    All,
    /// One trace: only its rows and cells are kept, and what lies before and after them in
    /// each column is skipped unread.
    Trace(&'t TraceId),
}

/// A group frame parsed into rows (strings borrowed, checked as they are used), from which
/// spans are materialised on demand.
pub(crate) struct DecodedGroup<'p> {
    header: &'p PageHeader<'p>,
    raw: &'p [u8],
    local: LocalStrings,
    /// The traces kept, their spans counted among the kept rows.
    pub traces: Vec<PageTrace>,
    /// The rows of the spans kept.
    spans: Vec<SpanRow>,
    events: Vec<EventRow>,
    /// Events of kept span `s`: `event_offsets[s]..event_offsets[s + 1]` (of the kept events).
    event_offsets: Vec<u32>,
    links: Vec<LinkRow>,
    link_offsets: Vec<u32>,
    cells: Vec<Cell<'p>>,
    /// Cells of the kept spans, events and links.
    owners: [OwnerCells; 3],
}

/// Reads a column of `n` varints of which only the entries `kept` are wanted: the others are
/// skipped unread; `each` gets the kept entries (counted from the first kept).
fn varint_column(
    input: &mut &[u8],
    n: usize,
    kept: &Range<usize>,
    what: &str,
    mut each: impl FnMut(usize, u64) -> Result<(), Problem>,
) -> Result<(), Problem> {
    skip_varints(input, kept.start).ok_or_else(|| malformed(what))?;
    for index in 0..kept.len() {
        each(index, uvarint(input).ok_or_else(|| malformed(what))?)?;
    }
    skip_varints(input, n - kept.end).ok_or_else(|| malformed(what))
}

fn zigzag(raw: u64) -> i64 {
    ((raw >> 1) as i64) ^ -((raw & 1) as i64)
}

impl<'p> DecodedGroup<'p> {
    /// Parses group `group` of a page (its frame is `raw`), or the part of it that `selection`
    /// asks for; `None` when the selected trace is not in the group. Counts and indexes of
    /// what is kept are checked.
    pub fn parse(
        header: &'p PageHeader<'p>,
        group: usize,
        raw: &'p [u8],
        selection: GroupSelection<'_>,
    ) -> Result<Option<DecodedGroup<'p>>, Problem> {
        let entry = *header.groups.get(group).ok_or_else(|| malformed("group index"))?;
        let mut input = raw;
        let map = &header.strings;
        let places = strings_section(raw, &mut input, "group strings")?;
        let expected = (entry.end_string - entry.first_string)
            - (map.shared_below(entry.end_string) - map.shared_below(entry.first_string));
        if places.len() != expected as usize {
            return Err(malformed("group string count"));
        }
        let local = LocalStrings { first: entry.first_string, end: entry.end_string, places };
        let valid =
            |index: u32| index < map.total && (map.is_shared(index) || (local.first..local.end).contains(&index));
        let check_string = |index: u64, what: &str| -> Result<u32, Problem> {
            match u32::try_from(index) {
                Ok(index) if valid(index) => Ok(index),
                _ => Err(malformed(what)),
            }
        };

        if entry.traces as usize > input.len() / 17 {
            return Err(malformed("group trace count"));
        }
        let mut all_traces = Vec::with_capacity(entry.traces as usize);
        let mut span_total = 0u32;
        for _ in 0..entry.traces {
            let trace_id = get_array::<16>(&mut input).ok_or_else(|| malformed("trace id"))?;
            let span_count = varint_u32(&mut input, "trace span count")?;
            if span_count == 0 {
                return Err(malformed("trace span count"));
            }
            all_traces.push(PageTrace { trace_id, first_span: span_total, span_count });
            span_total = span_total.checked_add(span_count).ok_or_else(|| malformed("span count"))?;
        }
        if all_traces.first().map(|trace| trace.trace_id) != Some(entry.first_trace_id)
            || all_traces.windows(2).any(|pair| pair[0].trace_id >= pair[1].trace_id)
        {
            return Err(malformed("traces out of order"));
        }
        if span_total as usize > input.len() / 8 {
            return Err(malformed("span count"));
        }
        // The spans kept: all, or the selected trace's.
        let (traces, kept): (Vec<PageTrace>, Range<u32>) = match selection {
            GroupSelection::All => (all_traces, 0..span_total),
            GroupSelection::Trace(trace_id) => {
                let Ok(index) = all_traces.binary_search_by(|trace| trace.trace_id.cmp(trace_id)) else {
                    return Ok(None);
                };
                let trace = all_traces[index];
                (vec![PageTrace { first_span: 0, ..trace }], trace.first_span..trace.first_span + trace.span_count)
            }
        };
        let base = kept.start;
        let kept_count = (kept.end - kept.start) as usize;
        let kept_rows = kept.start as usize..kept.end as usize;
        let resource_count = header.resources.len() as u32;
        let scope_count = header.scopes.len() as u32;

        // Span columns: what lies outside the kept rows is skipped.
        let n = span_total as usize;
        let (ids, rest) = input.split_at(n * 8);
        input = rest;
        let mut spans: Vec<SpanRow> = kept_rows
            .clone()
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
        // Parent codes: every one is read, to count the explicit parents before the kept spans.
        let mut parent_codes = Vec::with_capacity(kept_count);
        let mut explicit_before = 0usize;
        let mut explicit_total = 0usize;
        for index in 0..n {
            let code = varint_u32(&mut input, "parent")?;
            if code == 1 {
                explicit_total += 1;
                if index < kept_rows.start {
                    explicit_before += 1;
                }
            }
            if kept_rows.contains(&index) {
                parent_codes.push(code);
            }
        }
        varint_column(&mut input, n, &kept_rows, "span resource", |index, value| {
            spans[index].resource = u32::try_from(value)
                .ok()
                .filter(|value| *value < resource_count)
                .ok_or_else(|| malformed("span resource"))?;
            Ok(())
        })?;
        varint_column(&mut input, n, &kept_rows, "span scope", |index, value| {
            spans[index].scope = u32::try_from(value)
                .ok()
                .filter(|value| *value < scope_count)
                .ok_or_else(|| malformed("span scope"))?;
            Ok(())
        })?;
        varint_column(&mut input, n, &kept_rows, "span name", |index, value| {
            spans[index].name = check_string(value, "span name")?;
            Ok(())
        })?;
        if input.len() < n {
            return Err(malformed("kind and status"));
        }
        let (kinds, rest) = input.split_at(n);
        input = rest;
        for (row, byte) in spans.iter_mut().zip(&kinds[kept_rows.clone()]) {
            row.kind = SpanKind::from_u8(byte & 7).ok_or_else(|| malformed("span kind"))?;
            row.status = StatusCode::from_u8(byte >> 3).ok_or_else(|| malformed("span status"))?;
        }
        varint_column(&mut input, n, &kept_rows, "status message", |index, value| {
            spans[index].status_message = check_string(value, "status message")?;
            Ok(())
        })?;
        varint_column(&mut input, n, &kept_rows, "trace state", |index, value| {
            spans[index].trace_state = check_string(value, "trace state")?;
            Ok(())
        })?;
        varint_column(&mut input, n, &kept_rows, "span flags", |index, value| {
            spans[index].flags = u32::try_from(value).map_err(|_| malformed("span flags"))?;
            Ok(())
        })?;
        // Starts: the group's first from 0, a trace's first from the group's first, the others
        // from the span before them.
        let first_start = zigzag(uvarint(&mut input).ok_or_else(|| malformed("span start"))?);
        let mut read = 1usize;
        let mut previous = first_start;
        for trace in &traces {
            let first = (base + trace.first_span) as usize;
            if first > read {
                skip_varints(&mut input, first - read).ok_or_else(|| malformed("span start"))?;
                read = first;
            }
            for position in 0..trace.span_count as usize {
                let index = first + position;
                let start = if index == 0 {
                    first_start
                } else {
                    let delta = zigzag(uvarint(&mut input).ok_or_else(|| malformed("span start"))?);
                    read = index + 1;
                    if position == 0 { first_start.wrapping_add(delta) } else { previous.wrapping_add(delta) }
                };
                spans[index - base as usize].start_ns = start;
                previous = start;
            }
        }
        skip_varints(&mut input, n - read).ok_or_else(|| malformed("span start"))?;
        varint_column(&mut input, n, &kept_rows, "span duration", |index, value| {
            let row = &mut spans[index];
            row.end_ns = row.start_ns.wrapping_add(zigzag(value));
            Ok(())
        })?;
        let dropped_rows = kept_rows.start * 3..kept_rows.end * 3;
        varint_column(&mut input, n * 3, &dropped_rows, "dropped counts", |index, value| {
            spans[index / 3].dropped[index % 3] = u32::try_from(value).map_err(|_| malformed("dropped counts"))?;
            Ok(())
        })?;
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
            let delta = varint(&mut input).ok_or_else(|| malformed("event time"))?;
            let name = varint_u32(&mut input, "event name")?;
            let dropped = varint_u32(&mut input, "event dropped count")?;
            if kept.contains(&owner) {
                if events.is_empty() {
                    kept_events = event..event;
                }
                kept_events.end = event + 1;
                let relative = owner - base;
                check_string(u64::from(name), "event name")?;
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
            let trace_state = varint_u32(&mut input, "link trace state")?;
            let flags = varint_u32(&mut input, "link flags")?;
            let dropped = varint_u32(&mut input, "link dropped count")?;
            if kept.contains(&owner) {
                if links.is_empty() {
                    kept_links = link..link;
                }
                kept_links.end = link + 1;
                check_string(u64::from(trace_state), "link trace state")?;
                links.push(LinkRow { trace_id, span_id, trace_state, flags, dropped });
                link_spans.push(owner - base);
            }
        }

        let mut limits = [0u32; OWNER_SCOPES];
        limits[usize::from(SCOPE_SPAN)] = span_total;
        limits[usize::from(SCOPE_EVENT)] = event_count;
        limits[usize::from(SCOPE_LINK)] = link_count;
        let mut wanted: [Range<u32>; OWNER_SCOPES] = Default::default();
        wanted[usize::from(SCOPE_SPAN)] = kept.clone();
        wanted[usize::from(SCOPE_EVENT)] = kept_events.clone();
        wanted[usize::from(SCOPE_LINK)] = kept_links.clone();
        let whole = matches!(selection, GroupSelection::All);
        let (cells, cell_owners) =
            read_columns(&mut input, &[SCOPE_SPAN, SCOPE_EVENT, SCOPE_LINK], &limits, &wanted, whole, &valid)?;
        if whole && !input.is_empty() {
            return Err(malformed("trailing bytes"));
        }
        let owners = [
            group_by_owner(&cell_owners, SCOPE_SPAN, kept_count),
            group_by_owner(&cell_owners, SCOPE_EVENT, kept_events.len()),
            group_by_owner(&cell_owners, SCOPE_LINK, kept_links.len()),
        ];
        let event_offsets = offsets_by_span(&event_spans, kept_count);
        let link_offsets = offsets_by_span(&link_spans, kept_count);
        Ok(Some(DecodedGroup {
            header,
            raw,
            local,
            traces,
            spans,
            events,
            event_offsets,
            links,
            link_offsets,
            cells,
            owners,
        }))
    }

    fn texts(&self) -> Texts<'_> {
        Texts { header_raw: self.header.raw, map: &self.header.strings, group: Some((self.raw, &self.local)) }
    }

    /// Kept span `index`, materialised.
    fn span(&self, trace_id: &TraceId, index: usize) -> Result<Span, Problem> {
        let texts = self.texts();
        let row = &self.spans[index];
        let mut events = Vec::new();
        for event in self.event_offsets[index]..self.event_offsets[index + 1] {
            let e = &self.events[event as usize];
            events.push(SpanEvent {
                time_ns: e.time_ns,
                name: texts.string(e.name)?,
                attributes: texts.attributes(&self.cells, &self.owners[1], event)?,
                dropped_attributes_count: e.dropped,
            });
        }
        let mut links = Vec::new();
        for link in self.link_offsets[index]..self.link_offsets[index + 1] {
            let l = &self.links[link as usize];
            links.push(SpanLink {
                trace_id: l.trace_id,
                span_id: l.span_id,
                trace_state: texts.string(l.trace_state)?,
                attributes: texts.attributes(&self.cells, &self.owners[2], link)?,
                dropped_attributes_count: l.dropped,
                flags: l.flags,
            });
        }
        Ok(Span {
            trace_id: *trace_id,
            span_id: row.span_id,
            parent_span_id: row.parent,
            trace_state: texts.string(row.trace_state)?,
            name: texts.string(row.name)?,
            kind: row.kind,
            start_ns: row.start_ns,
            end_ns: row.end_ns,
            status: SpanStatus { code: row.status, message: texts.string(row.status_message)? },
            attributes: texts.attributes(&self.cells, &self.owners[0], index as u32)?,
            events,
            links,
            flags: row.flags,
            dropped_attributes_count: row.dropped[0],
            dropped_events_count: row.dropped[1],
            dropped_links_count: row.dropped[2],
        })
    }

    /// The resource (an index into the header's) and the time extent of kept span `index`.
    pub fn span_resource_and_extent(&self, index: usize) -> (u32, i64, i64) {
        let row = &self.spans[index];
        (row.resource, row.start_ns.min(row.end_ns), row.start_ns.max(row.end_ns))
    }

    /// Whether kept span `index` satisfies every condition, read from its row and cells
    /// without materialising it; `resource_sides[c]` says whether its resource satisfies the
    /// resource side of condition `c` (see [`resource_side_holds`]). The same answer as
    /// `span_matches` on the materialised span.
    ///
    /// [`resource_side_holds`]: super::filter::resource_side_holds
    pub fn span_satisfies(
        &self,
        index: usize,
        conditions: &[SpanCondition],
        resource_sides: &[bool],
    ) -> Result<bool, Problem> {
        let texts = self.texts();
        let row = &self.spans[index];
        for (number, condition) in conditions.iter().enumerate() {
            let on_resource = resource_sides.get(number).copied().unwrap_or(false);
            let holds = match condition {
                SpanCondition::ServiceName(_) => on_resource,
                SpanCondition::Name(name) => texts.bytes(row.name)? == name.as_bytes(),
                SpanCondition::Status(code) => row.status == *code,
                SpanCondition::Kind(kind) => row.kind == *kind,
                SpanCondition::Duration { min_ns, max_ns } => {
                    let duration = row.end_ns.saturating_sub(row.start_ns);
                    min_ns.is_none_or(|min| duration >= min) && max_ns.is_none_or(|max| duration <= max)
                }
                SpanCondition::Attribute { scope, key, op, value } => match scope {
                    AttributeScope::Resource => on_resource,
                    AttributeScope::Span => self.attribute_satisfies(&texts, index, key, *op, value)?,
                    AttributeScope::Any => on_resource || self.attribute_satisfies(&texts, index, key, *op, value)?,
                },
                SpanCondition::Exists { scope, key } => match scope {
                    AttributeScope::Resource => on_resource,
                    AttributeScope::Span => self.has_attribute(&texts, index, key)?,
                    AttributeScope::Any => on_resource || self.has_attribute(&texts, index, key)?,
                },
            };
            if !holds {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The cells of kept span `index`.
    fn span_cells(&self, index: usize) -> &[u32] {
        let owners = &self.owners[0];
        match (owners.offsets.get(index), owners.offsets.get(index + 1)) {
            (Some(start), Some(end)) => &owners.order[*start as usize..*end as usize],
            _ => &[],
        }
    }

    fn has_attribute(&self, texts: &Texts<'_>, index: usize, key: &str) -> Result<bool, Problem> {
        for cell in self.span_cells(index) {
            if texts.bytes(self.cells[*cell as usize].key)? == key.as_bytes() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether an attribute `key` of kept span `index` satisfies `op wanted`.
    fn attribute_satisfies(
        &self,
        texts: &Texts<'_>,
        index: usize,
        key: &str,
        op: CompareOp,
        wanted: &AttrValue,
    ) -> Result<bool, Problem> {
        for cell in self.span_cells(index) {
            let cell = &self.cells[*cell as usize];
            if texts.bytes(cell.key)? != key.as_bytes() {
                continue;
            }
            let mut input = cell.value;
            // Strings are compared where they lie; other scalars cost no allocation.
            let satisfied = match cell.kind {
                KIND_STRING => str_satisfies(texts.bytes(varint_u32(&mut input, "string value")?)?, op, wanted),
                _ => value_satisfies(&texts.cell_value(cell)?, op, wanted),
            };
            if satisfied {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The spans of kept trace `trace_index`, with their resources and scopes (materialised
    /// once per page through `cache`).
    pub fn trace_spans(&self, trace_index: usize, cache: &mut PageContexts) -> Result<Vec<StoredSpan>, Problem> {
        let trace = self.traces[trace_index];
        let mut out = Vec::with_capacity(trace.span_count as usize);
        for index in trace.first_span..trace.first_span + trace.span_count {
            let row = &self.spans[index as usize];
            let resource = cache.resource(self.header, row.resource)?;
            let scope = cache.scope(self.header, row.scope)?;
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
    pub fn resource(&mut self, header: &PageHeader<'_>, index: u32) -> Result<Arc<ResourceInfo>, Problem> {
        if let Some(info) = self.resources.get(&index) {
            return Ok(info.clone());
        }
        let info = header.resource(index)?;
        self.resources.insert(index, info.clone());
        Ok(info)
    }

    fn scope(&mut self, header: &PageHeader<'_>, index: u32) -> Result<Arc<ScopeInfo>, Problem> {
        if let Some(info) = self.scopes.get(&index) {
            return Ok(info.clone());
        }
        let info = header.scope(index)?;
        self.scopes.insert(index, info.clone());
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traces::assemble::TraceCollector;
    use crate::traces::records::tests::full_span;

    /// Eight traces of four spans over two resources; each trace has a string of its own.
    /// Columns are dense (a value for every span) or sparse, of one kind or mixed.
    fn traces() -> Vec<(TraceId, Vec<StoredSpan>)> {
        let resource = |name: &str| {
            ResourceInfo::new(
                Resource {
                    attributes: vec![
                        ("host.name".into(), AttrValue::String("h1".into())),
                        ("service.name".into(), AttrValue::String(name.into())),
                    ],
                    dropped_attributes_count: 2,
                },
                "https://schema/r".into(),
            )
        };
        let resources = [resource("api"), resource("db")];
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
        for trace in 1..9u8 {
            let mut collector = TraceCollector::default();
            for span in 1..5u8 {
                let mut value = full_span(trace, span, if span == 1 { None } else { Some(span - 1) });
                value.attributes.push(("request.id".into(), AttrValue::String(format!("req-{trace}"))));
                // A column of booleans some spans lack, and one whose values change kind.
                if span % 2 == 0 {
                    value.attributes.push(("sparse".into(), AttrValue::Bool(span == 2)));
                }
                if span == 3 && trace % 3 == 0 {
                    value.attributes[0].1 = AttrValue::String("seven".into());
                }
                value.attributes.sort_by(|a, b| a.0.cmp(&b.0));
                if span == 4 {
                    // A parent that lives in another block.
                    value.parent_span_id = Some([0xee; 8]);
                }
                let resource = resources[usize::from(span % 2)].clone();
                collector.add(StoredSpan { resource, scope: scope.clone(), span: value });
            }
            traces.push(([trace; 16], collector.into_sorted()));
        }
        traces
    }

    fn encode(traces: &[(TraceId, Vec<StoredSpan>)], group_target_bytes: usize) -> EncodedPage {
        let mut encoder = PageEncoder::new(group_target_bytes);
        for (trace_id, spans) in traces {
            let inputs: Vec<SpanInput<'_>> = spans.iter().map(SpanInput::from_stored).collect();
            encoder.add_trace(trace_id, &inputs, &mut IndexBuilder::new(10)).unwrap();
        }
        encoder.finish()
    }

    fn assert_same(decoded: &[StoredSpan], spans: &[StoredSpan]) {
        assert_eq!(decoded.len(), spans.len());
        for (got, want) in decoded.iter().zip(spans) {
            assert_eq!(got.span, want.span);
            assert_eq!(got.resource.as_ref(), want.resource.as_ref());
            assert_eq!(got.scope.as_ref(), want.scope.as_ref());
        }
    }

    #[test]
    fn the_scalar_memo_forgets_but_never_misremembers() {
        let mut memo = ScalarMemo::default();
        let mut noted = std::collections::HashSet::new();
        let mut state = 7u64;
        let (mut met, mut remembered) = (0, 0);
        for _ in 0..10_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Mostly a few values (as status codes, ports), sometimes one of many.
            let number = if state.is_multiple_of(5) { (state % 5000) as i64 - 2500 } else { (state % 8) as i64 * 1000 };
            let before = !noted.insert(number);
            let said = memo.note(&ValueRef::Int(number));
            assert!(!said || before, "{number} was not met before");
            met += usize::from(before);
            remembered += usize::from(said);
        }
        assert!(remembered * 2 > met, "a few values are mostly remembered: {remembered} of {met}");
        let mut flags = std::collections::HashSet::new();
        for flag in [true, false, true, false] {
            let before = !flags.insert(flag);
            assert_eq!(memo.note(&ValueRef::Bool(flag)), before);
        }
        assert!(!memo.note(&ValueRef::Double(1.0)) && !memo.note(&ValueRef::Double(1.0)));
        assert!(!memo.note(&ValueRef::Str("a")) && !memo.note(&ValueRef::Str("a")));
    }

    #[test]
    fn pages_round_trip_every_field_in_groups() {
        let traces = traces();
        // One group for the whole page, a group per two or three traces, a group per trace.
        for (target, groups) in [(1 << 20, 1), (800, 3), (1, 8)] {
            let page = encode(&traces, target);
            assert_eq!(page.frames.len(), groups + 1, "group target {target}");
            assert_eq!((page.summary.traces, page.summary.bounds.spans), (8, 32));
            assert_eq!((page.summary.first_trace_id, page.summary.last_trace_id), ([1; 16], [8; 16]));
            let header = PageHeader::parse(&page.frames[0]).unwrap();
            assert_eq!(header.groups.len(), groups);
            let mut contexts = PageContexts::default();
            let mut whole = Vec::new();
            for group in 0..groups {
                let decoded =
                    DecodedGroup::parse(&header, group, &page.frames[group + 1], GroupSelection::All).unwrap().unwrap();
                for index in 0..decoded.traces.len() {
                    whole.push((decoded.traces[index].trace_id, decoded.trace_spans(index, &mut contexts).unwrap()));
                }
            }
            assert_eq!(whole.len(), traces.len());
            for ((got_id, got), (want_id, want)) in whole.iter().zip(&traces) {
                assert_eq!(got_id, want_id);
                assert_same(got, want);
            }
            // Each trace alone, from its own group.
            for (trace_id, spans) in &traces {
                let group = header.find_group(trace_id).unwrap();
                let selection = GroupSelection::Trace(trace_id);
                let alone = DecodedGroup::parse(&header, group, &page.frames[group + 1], selection).unwrap().unwrap();
                assert_eq!(alone.traces.len(), 1);
                assert_same(&alone.trace_spans(0, &mut PageContexts::default()).unwrap(), spans);
                if groups > 1 {
                    // Another group does not have it.
                    let other = (group + 1) % groups;
                    let elsewhere = DecodedGroup::parse(&header, other, &page.frames[other + 1], selection);
                    assert!(elsewhere.unwrap().is_none());
                }
            }
            assert!(header.find_group(&[0; 16]).is_none());
            let last = header.find_group(&[9; 16]).unwrap();
            let absent = DecodedGroup::parse(&header, last, &page.frames[last + 1], GroupSelection::Trace(&[9; 16]));
            assert!(absent.unwrap().is_none());
            // Strings one group uses are in its frame, not in the header; shared ones (the
            // resources', the span names) are in the header.
            let contains = |frame: &[u8], text: &str| frame.windows(text.len()).any(|w| w == text.as_bytes());
            assert!(contains(&page.frames[0], "https://schema/r") && contains(&page.frames[0], "service.name"));
            if groups == 8 {
                for trace in 1..9 {
                    let text = format!("req-{trace}");
                    assert!(!contains(&page.frames[0], &text));
                    assert!(contains(&page.frames[trace], &text));
                }
                assert!(contains(&page.frames[0], "op-1") && !contains(&page.frames[1], "op-1"));
            }
        }
    }

    #[test]
    fn damaged_pages_are_errors_never_panics() {
        let traces = traces();
        let page = encode(&traces, 1200);
        let header = PageHeader::parse(&page.frames[0]).unwrap();
        for cut in 0..page.frames[0].len() {
            assert!(PageHeader::parse(&page.frames[0][..cut]).is_err(), "header cut at {cut}");
        }
        for cut in 0..page.frames[1].len() {
            assert!(DecodedGroup::parse(&header, 0, &page.frames[1][..cut], GroupSelection::All).is_err());
            // A lookup reads only what it needs: a cut is an error or, past the trace's rows,
            // may go unnoticed, never a panic.
            let _ = DecodedGroup::parse(&header, 0, &page.frames[1][..cut], GroupSelection::Trace(&[1; 16]));
        }
        // A flipped byte is an error or another page, never a panic: in the header...
        let mut flipped = page.frames[0].clone();
        for position in 0..flipped.len() {
            flipped[position] ^= 0x5a;
            if let Ok(header) = PageHeader::parse(&flipped) {
                for group in 0..header.groups.len().min(page.frames.len() - 1) {
                    for selection in
                        [GroupSelection::All, GroupSelection::Trace(&[1; 16]), GroupSelection::Trace(&[6; 16])]
                    {
                        if let Ok(Some(decoded)) =
                            DecodedGroup::parse(&header, group, &page.frames[group + 1], selection)
                        {
                            for index in 0..decoded.traces.len() {
                                let _ = decoded.trace_spans(index, &mut PageContexts::default());
                            }
                        }
                    }
                }
            }
            flipped[position] ^= 0x5a;
        }
        // ...and in a group.
        let mut flipped = page.frames[2].clone();
        for position in 0..flipped.len() {
            flipped[position] ^= 0x5a;
            let first = header.groups[1].first_trace_id;
            for selection in [GroupSelection::All, GroupSelection::Trace(&first)] {
                if let Ok(Some(decoded)) = DecodedGroup::parse(&header, 1, &flipped, selection) {
                    for index in 0..decoded.traces.len() {
                        let _ = decoded.trace_spans(index, &mut PageContexts::default());
                    }
                }
            }
            flipped[position] ^= 0x5a;
        }
    }
}
