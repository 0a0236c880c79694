//! Skip data: what a reader knows about a set of spans (a block, a page, a head segment)
//! without reading them, and the checks that rule such a set out for a filter.
//!
//! - [`Bounds`]: span count, time extent, duration range, the statuses and kinds present.
//! - [`ValueIndex`]: per scope, every attribute key and its distinct scalar values (up to a cap
//!   per key; past it the key is marked incomplete), with numeric bounds; and the values of the
//!   intrinsics that have them (span name, status message, root name and service, event names,
//!   scope name and version). It answers tag names and values, and rules sets out exactly.
//! - Page bloom filters over hashes of (scope, key) and (scope, key, canonical value).
//!
//! Every check errs one way: it may let through a set that holds no match, never rule out one
//! that holds one. Layout in `docs/format/trace-blocks.md` ("Skip data").

use std::cmp::Ordering;
use std::sync::Arc;

use super::assemble::{ResourceInfo, ScopeInfo, SpanInput};
use super::filter::{canonical_bytes, canonical_ref, compare_scalars, value_satisfies};
use super::hash::{FastMap, FastSet, HashSet64, hash_bytes};
use super::records::{MalformedRecord, ValueRef, put_value};
use super::{
    AttrValue, AttributeScope, CompareOp, NsRange, Resource, SERVICE_NAME, Scope, Span, SpanCondition, SpanKind,
    StatusCode, TagScope, TagValue, intrinsics,
};
use crate::codec::{get_str, get_u8, get_u64, get_uvarint, get_varint, put_bytes, put_uvarint, put_varint};

/// Index scopes: the attribute scopes, then the intrinsics with values.
pub(crate) const SCOPE_RESOURCE: u8 = 0;
pub(crate) const SCOPE_SPAN: u8 = 1;
pub(crate) const SCOPE_INSTRUMENTATION: u8 = 2;
pub(crate) const SCOPE_EVENT: u8 = 3;
pub(crate) const SCOPE_LINK: u8 = 4;
pub(crate) const SCOPE_INTRINSIC: u8 = 5;
const SCOPE_COUNT: usize = 6;

/// Strings longer than this are hashed into blooms but not kept in dictionaries (a long SQL
/// statement is no use as a tag value and would bloat the index).
pub(crate) const MAX_INDEXED_STRING_BYTES: usize = 256;

fn index_scope(scope: TagScope) -> u8 {
    match scope {
        TagScope::Resource => SCOPE_RESOURCE,
        TagScope::Span => SCOPE_SPAN,
        TagScope::Instrumentation => SCOPE_INSTRUMENTATION,
        TagScope::Event => SCOPE_EVENT,
        TagScope::Link => SCOPE_LINK,
        TagScope::Intrinsic => SCOPE_INTRINSIC,
    }
}

/// The bloom hash of a key's presence in a scope.
pub(crate) fn key_hash(scope: u8, key: &str) -> u64 {
    hash_bytes(0x7472_6163_6573_0000 | u64::from(scope), key.as_bytes())
}

/// The bloom hash of a key=value pair, from the key's hash and the value's canonical bytes.
pub(crate) fn value_hash(key_hash: u64, canonical: &[u8]) -> u64 {
    hash_bytes(key_hash, canonical)
}

/// A span's time extent: `[start, end]`, or reversed when a client sent an end before its start.
pub(crate) fn span_extent(span: &Span) -> (i64, i64) {
    (span.start_ns.min(span.end_ns), span.start_ns.max(span.end_ns))
}

// ---------------------------------------------------------------------------------------------
// Bounds

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub spans: u64,
    pub min_time_ns: i64,
    pub max_time_ns: i64,
    pub min_duration_ns: i64,
    pub max_duration_ns: i64,
    /// Bit `code` set for every status code present.
    pub status_mask: u8,
    /// Bit `kind` set for every kind present.
    pub kind_mask: u8,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            spans: 0,
            min_time_ns: i64::MAX,
            max_time_ns: i64::MIN,
            min_duration_ns: i64::MAX,
            max_duration_ns: i64::MIN,
            status_mask: 0,
            kind_mask: 0,
        }
    }
}

impl Bounds {
    pub fn add(&mut self, start_ns: i64, end_ns: i64, status: StatusCode, kind: SpanKind) {
        let duration = end_ns.saturating_sub(start_ns);
        self.spans += 1;
        self.min_time_ns = self.min_time_ns.min(start_ns.min(end_ns));
        self.max_time_ns = self.max_time_ns.max(start_ns.max(end_ns));
        self.min_duration_ns = self.min_duration_ns.min(duration);
        self.max_duration_ns = self.max_duration_ns.max(duration);
        self.status_mask |= 1 << status.as_u8();
        self.kind_mask |= 1 << kind.as_u8();
    }

    pub fn overlaps(&self, range: NsRange) -> bool {
        self.spans > 0 && range.overlaps(self.min_time_ns, self.max_time_ns)
    }

    /// Whether the intrinsic conditions (status, kind, duration) can hold for a span here.
    pub fn may_match(&self, conditions: &[SpanCondition]) -> bool {
        conditions.iter().all(|condition| match condition {
            SpanCondition::Status(code) => self.status_mask & (1 << code.as_u8()) != 0,
            SpanCondition::Kind(kind) => self.kind_mask & (1 << kind.as_u8()) != 0,
            SpanCondition::Duration { min_ns, max_ns } => {
                min_ns.is_none_or(|min| self.max_duration_ns >= min)
                    && max_ns.is_none_or(|max| self.min_duration_ns <= max)
            }
            _ => true,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_uvarint(out, self.spans);
        put_varint(out, self.min_time_ns);
        put_varint(out, self.max_time_ns);
        put_varint(out, self.min_duration_ns);
        put_varint(out, self.max_duration_ns);
        out.push(self.status_mask);
        out.push(self.kind_mask);
    }

    pub fn decode(input: &mut &[u8]) -> Option<Bounds> {
        Some(Bounds {
            spans: get_uvarint(input)?,
            min_time_ns: get_varint(input)?,
            max_time_ns: get_varint(input)?,
            min_duration_ns: get_varint(input)?,
            max_duration_ns: get_varint(input)?,
            status_mask: get_u8(input)?,
            kind_mask: get_u8(input)?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Value index

/// What the index knows of one key.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct KeyEntry {
    /// Distinct scalar values (array elements included); in tag-value order once the index is
    /// finished, in arrival order while it is built.
    pub values: Vec<AttrValue>,
    /// While building: canonical hashes of `values`, to keep them distinct cheaply.
    seen: HashSet64,
    /// Every scalar value of the key is in `values`.
    pub complete: bool,
    /// The smallest and largest numbers among the key's values (NaN left out).
    pub min_number: Option<AttrValue>,
    pub max_number: Option<AttrValue>,
}

impl KeyEntry {
    /// Whether a value of this key may satisfy `op wanted`.
    fn may_satisfy(&self, op: CompareOp, wanted: &AttrValue) -> bool {
        if !matches!(wanted, AttrValue::String(_) | AttrValue::Int(_) | AttrValue::Double(_) | AttrValue::Bool(_)) {
            return false;
        }
        if self.complete {
            return self.values.iter().any(|value| value_satisfies(value, op, wanted));
        }
        let numeric = matches!(wanted, AttrValue::Int(_) | AttrValue::Double(_));
        match (op, &self.min_number, &self.max_number) {
            (CompareOp::Gt | CompareOp::Ge, _, Some(max)) if numeric => value_satisfies(max, op, wanted),
            (CompareOp::Lt | CompareOp::Le, Some(min), _) if numeric => value_satisfies(min, op, wanted),
            (CompareOp::Eq, Some(min), Some(max)) if numeric => {
                value_satisfies(min, CompareOp::Le, wanted) && value_satisfies(max, CompareOp::Ge, wanted)
            }
            // No number at all: a numeric comparison other than `Ne` has nothing to hold on.
            (CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le | CompareOp::Eq, None, None) if numeric => {
                false
            }
            _ => true,
        }
    }
}

/// Keys and values per scope.
#[derive(Debug, Clone, Default)]
pub(crate) struct ValueIndex {
    /// Per scope: key -> index into `entries`.
    scopes: [FastMap<String, u32>; SCOPE_COUNT],
    entries: Vec<KeyEntry>,
    pub has_events: bool,
    pub has_links: bool,
}

impl PartialEq for ValueIndex {
    /// Equal keys with equal entries, whatever order the entries were created in.
    fn eq(&self, other: &ValueIndex) -> bool {
        self.has_events == other.has_events
            && self.has_links == other.has_links
            && (0..SCOPE_COUNT).all(|scope| {
                self.scopes[scope].len() == other.scopes[scope].len()
                    && self.scopes[scope].keys().all(|key| self.key(scope as u8, key) == other.key(scope as u8, key))
            })
    }
}

fn tag_value(value: &AttrValue) -> Option<TagValue> {
    Some(match value {
        AttrValue::String(text) => TagValue::String(text.clone()),
        AttrValue::Int(number) => TagValue::Int(*number),
        AttrValue::Double(number) => TagValue::Double(*number),
        AttrValue::Bool(flag) => TagValue::Bool(*flag),
        _ => return None,
    })
}

impl ValueIndex {
    pub fn key(&self, scope: u8, key: &str) -> Option<&KeyEntry> {
        let index = self.scopes.get(usize::from(scope))?.get(key)?;
        self.entries.get(*index as usize)
    }

    /// Whether attribute `key` of `side` (resource or span) may satisfy `op wanted`.
    fn side_may_satisfy(&self, side: u8, key: &str, op: CompareOp, wanted: &AttrValue) -> bool {
        self.key(side, key).is_some_and(|entry| entry.may_satisfy(op, wanted))
    }

    /// Whether a span of this set may satisfy every condition (status, kind and duration are
    /// the bounds' business).
    pub fn may_match(&self, conditions: &[SpanCondition]) -> bool {
        conditions.iter().all(|condition| match condition {
            SpanCondition::ServiceName(name) => {
                self.side_may_satisfy(SCOPE_RESOURCE, SERVICE_NAME, CompareOp::Eq, &AttrValue::String(name.clone()))
            }
            SpanCondition::Name(name) => self.side_may_satisfy(
                SCOPE_INTRINSIC,
                intrinsics::NAME,
                CompareOp::Eq,
                &AttrValue::String(name.clone()),
            ),
            SpanCondition::Attribute { scope, key, op, value } => {
                sides(*scope).iter().any(|side| self.side_may_satisfy(*side, key, *op, value))
            }
            SpanCondition::Exists { scope, key } => sides(*scope).iter().any(|side| self.key(*side, key).is_some()),
            SpanCondition::Status(_) | SpanCondition::Kind(_) | SpanCondition::Duration { .. } => true,
        })
    }

    /// The key names of a scope, sorted (for intrinsics: the names that have data here).
    pub fn names(&self, scope: TagScope, bounds: &Bounds, out: &mut Vec<String>) {
        if scope != TagScope::Intrinsic {
            out.extend(self.scopes[usize::from(index_scope(scope))].keys().cloned());
            return;
        }
        if bounds.spans == 0 {
            return;
        }
        let intrinsic = &self.scopes[usize::from(SCOPE_INTRINSIC)];
        for name in
            [intrinsics::DURATION, intrinsics::KIND, intrinsics::NAME, intrinsics::STATUS, intrinsics::TRACE_DURATION]
        {
            out.push(name.to_string());
        }
        for name in [
            intrinsics::ROOT_NAME,
            intrinsics::ROOT_SERVICE_NAME,
            intrinsics::STATUS_MESSAGE,
            intrinsics::INSTRUMENTATION_NAME,
            intrinsics::INSTRUMENTATION_VERSION,
        ] {
            if intrinsic.contains_key(name) {
                out.push(name.to_string());
            }
        }
        if self.has_events {
            out.push(intrinsics::EVENT_NAME.to_string());
        }
        if self.has_links {
            out.push(intrinsics::LINK_TRACE_ID.to_string());
            out.push(intrinsics::LINK_SPAN_ID.to_string());
        }
    }

    /// The values of a tag, added to `out` (unsorted, possibly repeated).
    pub fn values(&self, scope: Option<TagScope>, name: &str, bounds: &Bounds, out: &mut Vec<TagValue>) {
        let mut from = |index_scope: u8| {
            if let Some(entry) = self.key(index_scope, name) {
                out.extend(entry.values.iter().filter_map(tag_value));
            }
        };
        match scope {
            None => {
                from(SCOPE_SPAN);
                from(SCOPE_RESOURCE);
            }
            Some(TagScope::Intrinsic) => match name {
                intrinsics::STATUS => {
                    for code in StatusCode::ALL {
                        if bounds.status_mask & (1 << code.as_u8()) != 0 {
                            out.push(TagValue::Keyword(code.keyword().to_string()));
                        }
                    }
                }
                intrinsics::KIND => {
                    for kind in SpanKind::ALL {
                        if bounds.kind_mask & (1 << kind.as_u8()) != 0 {
                            out.push(TagValue::Keyword(kind.keyword().to_string()));
                        }
                    }
                }
                _ => from(SCOPE_INTRINSIC),
            },
            Some(other) => from(index_scope(other)),
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.has_events) | (u8::from(self.has_links) << 1));
        for keys in &self.scopes {
            put_uvarint(out, keys.len() as u64);
            let mut sorted: Vec<(&String, &KeyEntry)> =
                keys.iter().map(|(key, index)| (key, &self.entries[*index as usize])).collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            for (key, entry) in sorted {
                put_bytes(out, key.as_bytes());
                out.push(u8::from(entry.complete));
                put_uvarint(out, entry.values.len() as u64);
                for value in &entry.values {
                    put_value(out, value);
                }
                for bound in [&entry.min_number, &entry.max_number] {
                    match bound {
                        Some(value) => {
                            out.push(1);
                            put_value(out, value);
                        }
                        None => out.push(0),
                    }
                }
            }
        }
    }

    pub fn decode(input: &mut &[u8]) -> Result<ValueIndex, MalformedRecord> {
        let flags = get_u8(input).ok_or(MalformedRecord)?;
        let mut index = ValueIndex { has_events: flags & 1 != 0, has_links: flags & 2 != 0, ..ValueIndex::default() };
        for scope in 0..SCOPE_COUNT {
            let count = get_uvarint(input).ok_or(MalformedRecord)?;
            for _ in 0..count {
                let key = get_str(input).ok_or(MalformedRecord)?.to_string();
                let complete = get_u8(input).ok_or(MalformedRecord)? != 0;
                let value_count = get_uvarint(input).ok_or(MalformedRecord)?;
                let mut values = Vec::with_capacity(value_count.min(input.len() as u64) as usize);
                for _ in 0..value_count {
                    values.push(get_scalar(input)?);
                }
                let mut bounds = [None, None];
                for bound in &mut bounds {
                    if get_u8(input).ok_or(MalformedRecord)? == 1 {
                        *bound = Some(get_scalar(input)?);
                    }
                }
                let [min_number, max_number] = bounds;
                index.scopes[scope].insert(key, index.entries.len() as u32);
                index.entries.push(KeyEntry { values, seen: HashSet64::default(), complete, min_number, max_number });
            }
        }
        Ok(index)
    }
}

/// The index scopes an attribute condition looks in.
fn sides(scope: AttributeScope) -> &'static [u8] {
    match scope {
        AttributeScope::Resource => &[SCOPE_RESOURCE],
        AttributeScope::Span => &[SCOPE_SPAN],
        AttributeScope::Any => &[SCOPE_SPAN, SCOPE_RESOURCE],
    }
}

/// A scalar value as `put_value` wrote it.
fn get_scalar(input: &mut &[u8]) -> Result<AttrValue, MalformedRecord> {
    Ok(match get_u8(input).ok_or(MalformedRecord)? {
        0 => AttrValue::String(get_str(input).ok_or(MalformedRecord)?.to_string()),
        1 => AttrValue::Bool(false),
        2 => AttrValue::Bool(true),
        3 => AttrValue::Int(get_varint(input).ok_or(MalformedRecord)?),
        4 => AttrValue::Double(f64::from_bits(get_u64(input).ok_or(MalformedRecord)?)),
        _ => return Err(MalformedRecord),
    })
}

// ---------------------------------------------------------------------------------------------
// Building

/// Calls `emit` with every (scope, key, value) of a span that skip data covers: its
/// attributes, its name, status message and (for a root span) root name and service, its
/// events' attributes and names, its links' attributes. Resource and scope attributes are
/// visited once per resource and scope by [`visit_resource`] and [`visit_scope`].
#[cfg(test)]
fn visit_span(span: &SpanInput<'_>, mut emit: impl FnMut(u8, &str, ValueRef<'_>)) -> Result<(), MalformedRecord> {
    span.attributes.for_each(|key, value| emit(SCOPE_SPAN, key, value))?;
    visit_span_rest(span, emit);
    Ok(())
}

/// [`visit_span`] without the span's attributes (for callers that read them once for several
/// purposes).
pub(crate) fn visit_span_rest(span: &SpanInput<'_>, mut emit: impl FnMut(u8, &str, ValueRef<'_>)) {
    emit(SCOPE_INTRINSIC, intrinsics::NAME, ValueRef::Str(span.head.name));
    if !span.head.status_message.is_empty() {
        emit(SCOPE_INTRINSIC, intrinsics::STATUS_MESSAGE, ValueRef::Str(span.head.status_message));
    }
    if span.head.parent_span_id.is_none() {
        emit(SCOPE_INTRINSIC, intrinsics::ROOT_NAME, ValueRef::Str(span.head.name));
        if let Some(service) = span.resource.resource.service_name() {
            emit(SCOPE_INTRINSIC, intrinsics::ROOT_SERVICE_NAME, ValueRef::Str(service));
        }
    }
    for event in span.events.iter() {
        for (key, value) in &event.attributes {
            emit(SCOPE_EVENT, key, ValueRef::from_value(value));
        }
        if !event.name.is_empty() {
            emit(SCOPE_INTRINSIC, intrinsics::EVENT_NAME, ValueRef::Str(&event.name));
        }
    }
    for link in span.links.iter() {
        for (key, value) in &link.attributes {
            emit(SCOPE_LINK, key, ValueRef::from_value(value));
        }
    }
}

fn visit_resource(resource: &Resource, mut emit: impl FnMut(u8, &str, ValueRef<'_>)) {
    for (key, value) in &resource.attributes {
        emit(SCOPE_RESOURCE, key, ValueRef::from_value(value));
    }
}

fn visit_scope(scope: &Scope, mut emit: impl FnMut(u8, &str, ValueRef<'_>)) {
    for (key, value) in &scope.attributes {
        emit(SCOPE_INSTRUMENTATION, key, ValueRef::from_value(value));
    }
    if !scope.name.is_empty() {
        emit(SCOPE_INTRINSIC, intrinsics::INSTRUMENTATION_NAME, ValueRef::Str(&scope.name));
    }
    if !scope.version.is_empty() {
        emit(SCOPE_INTRINSIC, intrinsics::INSTRUMENTATION_VERSION, ValueRef::Str(&scope.version));
    }
}

/// Calls `each` with a value, or with each element of an array (recursively).
pub(crate) fn for_each_scalar(value: &ValueRef<'_>, each: &mut impl FnMut(&ValueRef<'_>)) {
    match value {
        ValueRef::Other(other) => match other.as_ref() {
            AttrValue::Array(elements) => {
                for element in elements {
                    for_each_scalar(&ValueRef::from_value(element), each);
                }
            }
            _ => each(value),
        },
        _ => each(value),
    }
}

/// Builds the bounds and value index of a set of spans. It can be read while it grows (the
/// head's segments are indexed incrementally); [`IndexBuilder::finish`] sorts the values.
pub(crate) struct IndexBuilder {
    max_values_per_key: usize,
    pub bounds: Bounds,
    pub values: ValueIndex,
    /// Resources and scopes already added, by their identity bytes; and the last ones added,
    /// held so that a run of spans of one resource costs one pointer comparison.
    resources_seen: FastSet<Vec<u8>>,
    scopes_seen: FastSet<Vec<u8>>,
    last_resource: Option<Arc<ResourceInfo>>,
    last_scope: Option<Arc<ScopeInfo>>,
    /// Resources and scopes already added, by address (held, so that no other takes the
    /// address): readers share one info per identity, so this spares hashing identities.
    resources_at: FastMap<usize, Arc<ResourceInfo>>,
    scopes_at: FastMap<usize, Arc<ScopeInfo>>,
    canonical: Vec<u8>,
}

impl IndexBuilder {
    pub fn new(max_values_per_key: usize) -> IndexBuilder {
        IndexBuilder {
            max_values_per_key,
            bounds: Bounds::default(),
            values: ValueIndex::default(),
            resources_seen: FastSet::default(),
            scopes_seen: FastSet::default(),
            last_resource: None,
            last_scope: None,
            resources_at: FastMap::default(),
            scopes_at: FastMap::default(),
            canonical: Vec::new(),
        }
    }

    /// The index of the entry of `key` in `scope`, created if new.
    pub fn entry_index(&mut self, scope: u8, key: &str) -> u32 {
        let keys = &mut self.values.scopes[usize::from(scope)];
        if let Some(index) = keys.get(key) {
            return *index;
        }
        let index = self.values.entries.len() as u32;
        keys.insert(key.to_string(), index);
        self.values.entries.push(KeyEntry { complete: true, ..KeyEntry::default() });
        index
    }

    /// Adds a scalar value to entry `entry`; `hash` is its [`value_hash`] (any hash that
    /// equal canonical values share, the same for every value of the entry).
    pub fn add_scalar_at(&mut self, entry: u32, scalar: &ValueRef<'_>, hash: u64) {
        let max_values_per_key = self.max_values_per_key;
        let Some(entry) = self.values.entries.get_mut(entry as usize) else { return };
        let owned = || match scalar {
            ValueRef::Str(text) => AttrValue::String((*text).to_string()),
            ValueRef::Int(number) => AttrValue::Int(*number),
            ValueRef::Double(number) => AttrValue::Double(*number),
            ValueRef::Bool(flag) => AttrValue::Bool(*flag),
            ValueRef::Other(other) => other.as_ref().clone(),
        };
        let number = match scalar {
            ValueRef::Int(number) => Some(AttrValue::Int(*number)),
            ValueRef::Double(number) if !number.is_nan() => Some(AttrValue::Double(*number)),
            _ => None,
        };
        if let Some(number) = number {
            if entry.min_number.as_ref().is_none_or(|min| compare_scalars(&number, min) == Some(Ordering::Less)) {
                entry.min_number = Some(number.clone());
            }
            if entry.max_number.as_ref().is_none_or(|max| compare_scalars(&number, max) == Some(Ordering::Greater)) {
                entry.max_number = Some(number);
            }
        }
        if !entry.complete || entry.seen.contains(&hash) {
            return;
        }
        let too_long = matches!(scalar, ValueRef::Str(text) if text.len() > MAX_INDEXED_STRING_BYTES);
        if too_long || entry.values.len() >= max_values_per_key {
            entry.complete = false;
            entry.seen = HashSet64::default();
            return;
        }
        entry.seen.insert(hash);
        entry.values.push(owned());
    }

    fn add_value(&mut self, scope: u8, key: &str, value: &ValueRef<'_>) {
        let entry = self.entry_index(scope, key);
        let key_hash = key_hash(scope, key);
        let mut canonical = std::mem::take(&mut self.canonical);
        for_each_scalar(value, &mut |scalar| {
            if canonical_ref(scalar, &mut canonical) {
                self.add_scalar_at(entry, scalar, value_hash(key_hash, &canonical));
            }
        });
        self.canonical = canonical;
    }

    /// Adds a span without its attributes (the caller adds them with
    /// [`IndexBuilder::add_scoped_value`]), and its resource and scope the first time they come.
    pub fn add_span_rest(&mut self, span: &SpanInput<'_>) {
        self.add_contexts(span);
        visit_span_rest(span, |scope: u8, key: &str, value: ValueRef<'_>| self.add_value(scope, key, &value));
        self.values.has_events |= !span.events.is_empty();
        self.values.has_links |= !span.links.is_empty();
        self.bounds.add(span.head.start_ns, span.head.end_ns, span.head.status_code, span.head.kind);
    }

    /// Adds a span, and its resource and scope the first time they come.
    pub fn add_input(&mut self, span: &SpanInput<'_>) -> Result<(), MalformedRecord> {
        span.attributes.for_each(|key, value| self.add_value(SCOPE_SPAN, key, &value))?;
        self.add_span_rest(span);
        Ok(())
    }

    fn add_contexts(&mut self, span: &SpanInput<'_>) {
        if !self.last_resource.as_ref().is_some_and(|last| Arc::ptr_eq(last, span.resource)) {
            self.last_resource = Some(span.resource.clone());
            let address = Arc::as_ptr(span.resource) as usize;
            if self.resources_at.insert(address, span.resource.clone()).is_none()
                && !self.resources_seen.contains(&span.resource.identity)
            {
                self.resources_seen.insert(span.resource.identity.clone());
                visit_resource(&span.resource.resource, |scope, key, value| self.add_value(scope, key, &value));
            }
        }
        if !self.last_scope.as_ref().is_some_and(|last| Arc::ptr_eq(last, span.scope)) {
            self.last_scope = Some(span.scope.clone());
            let address = Arc::as_ptr(span.scope) as usize;
            if self.scopes_at.insert(address, span.scope.clone()).is_none()
                && !self.scopes_seen.contains(&span.scope.identity)
            {
                self.scopes_seen.insert(span.scope.identity.clone());
                visit_scope(&span.scope.scope, |scope, key, value| self.add_value(scope, key, &value));
            }
        }
    }

    /// The bounds and the value index, values sorted.
    pub fn finish(self) -> (Bounds, ValueIndex) {
        let mut values = self.values;
        for entry in &mut values.entries {
            sort_values(&mut entry.values);
            entry.seen = HashSet64::default();
        }
        (self.bounds, values)
    }
}

/// Builds the bounds of a page and the hashes of its bloom filter: (scope, key) and (scope,
/// key, canonical value) of everything [`visit_span`] visits, and of the page's resources and
/// scopes (added once each by the page encoder).
#[derive(Default)]
pub(crate) struct PageSkipBuilder {
    pub bounds: Bounds,
    pub hashes: HashSet64,
    canonical: Vec<u8>,
}

impl PageSkipBuilder {
    fn emitter(&mut self) -> impl FnMut(u8, &str, ValueRef<'_>) + '_ {
        move |scope, key, value| self.add_value(scope, key, &value)
    }

    /// Adds one value of `key` in `scope`.
    pub fn add_value(&mut self, scope: u8, key: &str, value: &ValueRef<'_>) {
        self.add_hashed_value(key_hash(scope, key), value);
    }

    /// Adds a hash (a key's presence or a key=value pair) directly.
    pub fn add_hash(&mut self, hash: u64) {
        self.hashes.insert(hash);
    }

    /// Adds one value of the key whose [`key_hash`] is given.
    pub fn add_hashed_value(&mut self, key_hash: u64, value: &ValueRef<'_>) {
        let PageSkipBuilder { hashes, canonical, .. } = self;
        hashes.insert(key_hash);
        for_each_scalar(value, &mut |scalar| {
            if canonical_ref(scalar, canonical) {
                hashes.insert(value_hash(key_hash, canonical));
            }
        });
    }

    /// Adds a span without its attributes (see [`PageSkipBuilder::add_value`]).
    pub fn add_span_rest(&mut self, span: &SpanInput<'_>) {
        visit_span_rest(span, self.emitter());
        self.bounds.add(span.head.start_ns, span.head.end_ns, span.head.status_code, span.head.kind);
    }

    pub fn add_resource(&mut self, resource: &Resource) {
        visit_resource(resource, self.emitter());
    }

    pub fn add_scope(&mut self, scope: &Scope) {
        visit_scope(scope, self.emitter());
    }

    #[cfg(test)]
    pub fn add_span(&mut self, span: &SpanInput<'_>) -> Result<(), MalformedRecord> {
        visit_span(span, self.emitter())?;
        self.bounds.add(span.head.start_ns, span.head.end_ns, span.head.status_code, span.head.kind);
        Ok(())
    }
}

/// Sorts scalar values in tag-value order.
fn sort_values(values: &mut [AttrValue]) {
    values.sort_by(|a, b| match (tag_value(a), tag_value(b)) {
        (Some(a), Some(b)) => a.total_cmp(&b),
        _ => std::cmp::Ordering::Equal,
    });
}

// ---------------------------------------------------------------------------------------------
// Bloom checks

/// Whether a bloom filter over a page's hashes (`contains`) lets a span of the page satisfy
/// every condition.
pub(crate) fn bloom_may_match(conditions: &[SpanCondition], contains: impl Fn(u64) -> bool) -> bool {
    let mut canonical = Vec::new();
    let mut pair = |scope: u8, key: &str, value: &AttrValue| -> bool {
        let key = key_hash(scope, key);
        if !canonical_bytes(value, &mut canonical) {
            return false;
        }
        contains(value_hash(key, &canonical))
    };
    conditions.iter().all(|condition| match condition {
        SpanCondition::ServiceName(name) => pair(SCOPE_RESOURCE, SERVICE_NAME, &AttrValue::String(name.clone())),
        SpanCondition::Name(name) => pair(SCOPE_INTRINSIC, intrinsics::NAME, &AttrValue::String(name.clone())),
        SpanCondition::Attribute { scope, key, op: CompareOp::Eq, value } => {
            sides(*scope).iter().any(|side| pair(*side, key, value))
        }
        SpanCondition::Attribute { scope, key, .. } | SpanCondition::Exists { scope, key } => {
            sides(*scope).iter().any(|side| contains(key_hash(*side, key)))
        }
        SpanCondition::Status(_) | SpanCondition::Kind(_) | SpanCondition::Duration { .. } => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traces::SpanStatus;
    use crate::traces::assemble::StoredSpan;

    fn span(name: &str, attributes: Vec<(&str, AttrValue)>) -> Span {
        Span {
            trace_id: [1; 16],
            span_id: [1; 8],
            name: name.into(),
            start_ns: 100,
            end_ns: 250,
            kind: SpanKind::Client,
            status: SpanStatus { code: StatusCode::Error, message: String::new() },
            attributes: attributes.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            ..Span::default()
        }
    }

    #[test]
    fn indexes_rule_out_only_what_cannot_match() {
        let info = ResourceInfo::new(
            Resource {
                attributes: vec![("service.name".into(), AttrValue::String("api".into()))],
                dropped_attributes_count: 0,
            },
            String::new(),
        );
        let scope = ScopeInfo::new(Scope::default(), String::new());
        let mut builder = IndexBuilder::new(3);
        let mut page = PageSkipBuilder::default();
        page.add_resource(&info.resource);
        let mut spans = Vec::new();
        for code in 0..5 {
            spans.push(span(
                "GET /",
                vec![("http.status_code", AttrValue::Int(200 + code)), ("ok", AttrValue::Bool(true))],
            ));
        }
        spans.push(span("GET /", vec![("ratio", AttrValue::Double(0.5))]));
        for span in spans {
            let stored = StoredSpan { resource: info.clone(), scope: scope.clone(), span };
            builder.add_input(&SpanInput::from_stored(&stored)).unwrap();
            page.add_span(&SpanInput::from_stored(&stored)).unwrap();
        }
        // Another copy of the same resource adds nothing.
        let copy = StoredSpan {
            resource: ResourceInfo::new(info.resource.clone(), String::new()),
            scope: scope.clone(),
            span: span("GET /", vec![]),
        };
        builder.add_input(&SpanInput::from_stored(&copy)).unwrap();
        let (bounds, index) = builder.finish();
        assert_eq!(bounds.spans, 7);
        let hashes = page.hashes;
        let mut encoded = Vec::new();
        index.encode(&mut encoded);
        let decoded = ValueIndex::decode(&mut encoded.as_slice()).unwrap();
        assert_eq!(decoded, index);

        let attribute = |scope, key: &str, op, value| SpanCondition::Attribute { scope, key: key.into(), op, value };
        let status_code = |op, value| attribute(AttributeScope::Span, "http.status_code", op, value);
        // Five status codes with a cap of three: incomplete, so numeric bounds decide.
        assert!(!index.key(SCOPE_SPAN, "http.status_code").unwrap().complete);
        // (condition, what bounds and index say, what the bloom says where it has an opinion)
        let cases = [
            (SpanCondition::ServiceName("api".into()), true, true),
            (SpanCondition::ServiceName("web".into()), false, false),
            (SpanCondition::Name("GET /".into()), true, true),
            (SpanCondition::Name("POST /".into()), false, false),
            (SpanCondition::Status(StatusCode::Ok), false, true),
            (SpanCondition::Kind(SpanKind::Client), true, true),
            (SpanCondition::Duration { min_ns: Some(151), max_ns: None }, false, true),
            (SpanCondition::Duration { min_ns: Some(150), max_ns: Some(150) }, true, true),
            (status_code(CompareOp::Eq, AttrValue::Int(204)), true, true),
            (status_code(CompareOp::Eq, AttrValue::Double(204.0)), true, true),
            (status_code(CompareOp::Eq, AttrValue::Int(300)), false, false),
            (status_code(CompareOp::Gt, AttrValue::Int(204)), false, true),
            (status_code(CompareOp::Ge, AttrValue::Int(204)), true, true),
            (status_code(CompareOp::Lt, AttrValue::Double(200.5)), true, true),
            (attribute(AttributeScope::Resource, "http.status_code", CompareOp::Eq, AttrValue::Int(200)), false, false),
            (
                attribute(AttributeScope::Any, "service.name", CompareOp::Eq, AttrValue::String("api".into())),
                true,
                true,
            ),
            (attribute(AttributeScope::Span, "ok", CompareOp::Ne, AttrValue::Bool(true)), false, true),
            (attribute(AttributeScope::Span, "ratio", CompareOp::Gt, AttrValue::Double(0.4)), true, true),
            (SpanCondition::Exists { scope: AttributeScope::Span, key: "nope".into() }, false, false),
        ];
        for (condition, by_index, by_bloom) in cases {
            let conditions = [condition];
            let index_says = bounds.may_match(&conditions) && index.may_match(&conditions);
            let bloom_says = bloom_may_match(&conditions, |hash| hashes.contains(&hash));
            assert_eq!((index_says, bloom_says), (by_index, by_bloom), "{:?}", conditions[0]);
        }

        let mut names = Vec::new();
        index.names(TagScope::Intrinsic, &bounds, &mut names);
        assert!(names.contains(&"rootServiceName".to_string()) && !names.contains(&"event:name".to_string()));
        let mut values = Vec::new();
        index.values(Some(TagScope::Intrinsic), "status", &bounds, &mut values);
        assert_eq!(values, [TagValue::Keyword("error".into())]);
    }
}
