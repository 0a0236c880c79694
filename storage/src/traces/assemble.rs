//! Spans as the store moves them between head, pages and answers ([`StoredSpan`]: a span with
//! its shared resource and scope), and the assembly of a trace from every source that holds
//! part of it: one copy per span ID (the first source read wins), spans in (start, span ID)
//! order, grouped by resource and scope in the order of their earliest span. The same spans
//! therefore come back as the same [`Trace`] whether they sit in the head, in one block or
//! spread over several.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use super::hash::FastSet;
use super::records::{AttrsSlice, MalformedRecord, SpanHead, SpanView, ValueRef, put_resource, put_scope};
use super::{
    AttrValue, Resource, ResourceSpans, Scope, ScopeSpans, SearchTrace, Span, SpanEvent, SpanId, SpanLink, Trace,
    TraceId,
};

/// A resource and its group's schema URL, with the bytes that identify it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResourceInfo {
    pub resource: Resource,
    pub schema_url: String,
    /// The row encoding of the resource (attributes sorted): equal bytes, same resource.
    pub identity: Vec<u8>,
}

impl ResourceInfo {
    pub fn new(resource: Resource, schema_url: String) -> Arc<ResourceInfo> {
        let mut identity = Vec::new();
        put_resource(&mut identity, &resource, &schema_url);
        Arc::new(ResourceInfo { resource, schema_url, identity })
    }
}

/// An instrumentation scope and its group's schema URL, with the bytes that identify it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ScopeInfo {
    pub scope: Scope,
    pub schema_url: String,
    pub identity: Vec<u8>,
}

impl ScopeInfo {
    pub fn new(scope: Scope, schema_url: String) -> Arc<ScopeInfo> {
        let mut identity = Vec::new();
        put_scope(&mut identity, &scope, &schema_url);
        Arc::new(ScopeInfo { scope, schema_url, identity })
    }
}

/// A span with its resource and scope.
#[derive(Debug, Clone)]
pub(crate) struct StoredSpan {
    pub resource: Arc<ResourceInfo>,
    pub scope: Arc<ScopeInfo>,
    pub span: Span,
}

/// Attributes as the page encoder and the index builder read them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AttributesRef<'a> {
    Owned(&'a [(String, AttrValue)]),
    Encoded(AttrsSlice<'a>),
}

impl<'a> AttributesRef<'a> {
    pub fn for_each(self, mut each: impl FnMut(&'a str, ValueRef<'a>)) -> Result<(), MalformedRecord> {
        match self {
            AttributesRef::Owned(attributes) => {
                for (key, value) in attributes {
                    each(key, ValueRef::from_value(value));
                }
                Ok(())
            }
            AttributesRef::Encoded(slice) => slice.for_each(each),
        }
    }
}

/// A span as the page encoder and the index builder take it, borrowed from an owned span or
/// straight from a head record (so a cut copies no attribute).
#[derive(Debug, Clone)]
pub(crate) struct SpanInput<'a> {
    pub resource: &'a Arc<ResourceInfo>,
    pub scope: &'a Arc<ScopeInfo>,
    pub head: SpanHead<'a>,
    /// Dropped attributes, events and links counts.
    pub dropped: [u32; 3],
    pub attributes: AttributesRef<'a>,
    pub events: Cow<'a, [SpanEvent]>,
    pub links: Cow<'a, [SpanLink]>,
}

impl<'a> SpanInput<'a> {
    pub fn from_stored(stored: &'a StoredSpan) -> SpanInput<'a> {
        let span = &stored.span;
        SpanInput {
            resource: &stored.resource,
            scope: &stored.scope,
            head: SpanHead::of(span),
            dropped: [span.dropped_attributes_count, span.dropped_events_count, span.dropped_links_count],
            attributes: AttributesRef::Owned(&span.attributes),
            events: Cow::Borrowed(&span.events),
            links: Cow::Borrowed(&span.links),
        }
    }

    pub fn from_view(
        view: SpanView<'a>,
        resource: &'a Arc<ResourceInfo>,
        scope: &'a Arc<ScopeInfo>,
    ) -> Result<SpanInput<'a>, MalformedRecord> {
        Ok(SpanInput {
            resource,
            scope,
            head: view.head,
            dropped: [view.dropped_attributes_count, view.dropped_events_count, view.dropped_links_count],
            attributes: AttributesRef::Encoded(view.attributes),
            events: Cow::Owned(view.events()?),
            links: Cow::Owned(view.links()?),
        })
    }
}

/// Gathers the spans of one trace from its sources, oldest source first.
#[derive(Debug, Default)]
pub(crate) struct TraceCollector {
    seen: FastSet<SpanId>,
    spans: Vec<StoredSpan>,
}

impl TraceCollector {
    /// Adds a span unless a span with its ID was added before.
    pub fn add(&mut self, span: StoredSpan) {
        if self.seen.insert(span.span.span_id) {
            self.spans.push(span);
        }
    }

    /// The spans in (start, span ID) order.
    pub fn into_sorted(mut self) -> Vec<StoredSpan> {
        self.spans.sort_by_key(|stored| (stored.span.start_ns, stored.span.span_id));
        self.spans
    }
}

/// Groups spans (already in (start, span ID) order) into a trace.
pub(crate) fn into_trace(trace_id: TraceId, spans: Vec<StoredSpan>) -> Trace {
    let mut resource_spans: Vec<ResourceSpans> = Vec::new();
    let mut resource_index: HashMap<Vec<u8>, usize> = HashMap::new();
    // Per resource group: scope identity -> index of its scope group.
    let mut scope_index: Vec<HashMap<Vec<u8>, usize>> = Vec::new();
    for stored in spans {
        let group = match resource_index.get(&stored.resource.identity) {
            Some(group) => *group,
            None => {
                resource_spans.push(ResourceSpans {
                    resource: stored.resource.resource.clone(),
                    schema_url: stored.resource.schema_url.clone(),
                    scope_spans: Vec::new(),
                });
                scope_index.push(HashMap::new());
                resource_index.insert(stored.resource.identity.clone(), resource_spans.len() - 1);
                resource_spans.len() - 1
            }
        };
        let scopes = &mut resource_spans[group].scope_spans;
        let scope = match scope_index[group].get(&stored.scope.identity) {
            Some(scope) => *scope,
            None => {
                scopes.push(ScopeSpans {
                    scope: stored.scope.scope.clone(),
                    schema_url: stored.scope.schema_url.clone(),
                    spans: Vec::new(),
                });
                scope_index[group].insert(stored.scope.identity.clone(), scopes.len() - 1);
                scopes.len() - 1
            }
        };
        scopes[scope].spans.push(stored.span);
    }
    Trace { trace_id, resource_spans }
}

/// The trace-level facts of a search answer, from spans in (start, span ID) order; the
/// matched span IDs are given by the caller.
pub(crate) fn search_trace(trace_id: TraceId, spans: Vec<StoredSpan>, matched_span_ids: Vec<SpanId>) -> SearchTrace {
    let root = spans.iter().find(|stored| stored.span.parent_span_id.is_none());
    let root_span_name = root.map(|stored| stored.span.name.clone());
    let root_service_name = root.and_then(|stored| stored.resource.resource.service_name().map(str::to_string));
    let start_ns = spans.iter().map(|stored| stored.span.start_ns).min().unwrap_or(0);
    let end_ns = spans.iter().map(|stored| stored.span.end_ns).max().unwrap_or(0);
    SearchTrace {
        trace_id,
        root_span_name,
        root_service_name,
        start_ns,
        end_ns,
        matched_span_ids,
        trace: into_trace(trace_id, spans),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traces::AttrValue;

    #[test]
    fn traces_are_assembled_the_same_whatever_the_source_order() {
        let api = ResourceInfo::new(
            Resource {
                attributes: vec![("service.name".into(), AttrValue::String("api".into()))],
                dropped_attributes_count: 0,
            },
            String::new(),
        );
        let db = ResourceInfo::new(
            Resource {
                attributes: vec![("service.name".into(), AttrValue::String("db".into()))],
                dropped_attributes_count: 0,
            },
            String::new(),
        );
        let scope = ScopeInfo::new(Scope::default(), String::new());
        let span = |id: u8, parent: Option<u8>, start: i64| Span {
            trace_id: [7; 16],
            span_id: [id; 8],
            parent_span_id: parent.map(|p| [p; 8]),
            name: format!("s{id}"),
            start_ns: start,
            end_ns: start + 10,
            ..Span::default()
        };
        let stored = |resource: &Arc<ResourceInfo>, span: Span| StoredSpan {
            resource: resource.clone(),
            scope: scope.clone(),
            span,
        };
        let all =
            [stored(&api, span(1, None, 100)), stored(&db, span(2, Some(1), 105)), stored(&api, span(3, Some(1), 103))];
        let mut results = Vec::new();
        for order in [[0, 1, 2], [2, 1, 0], [1, 0, 2]] {
            let mut collector = TraceCollector::default();
            for index in order {
                collector.add(all[index].clone());
                collector.add(all[index].clone());
            }
            results.push(search_trace([7; 16], collector.into_sorted(), Vec::new()));
        }
        assert_eq!(results[0], results[1]);
        assert_eq!(results[0], results[2]);
        let result = &results[0];
        assert_eq!(result.root_span_name.as_deref(), Some("s1"));
        assert_eq!(result.root_service_name.as_deref(), Some("api"));
        assert_eq!((result.start_ns, result.end_ns), (100, 115));
        assert_eq!(result.trace.span_count(), 3);
        assert_eq!(result.trace.resource_spans.len(), 2);
        let ids: Vec<u8> = result.trace.spans().map(|(_, _, span)| span.span_id[0]).collect();
        assert_eq!(ids, [1, 3, 2]);
    }
}
