//! Tempo's tag autocomplete: tag names (`GET /api/search/tags`, `GET /api/v2/search/tags`) and
//! tag values (`GET /api/search/tag/{tag}/values`, `GET /api/v2/search/tag/{tag}/values`), as
//! Grafana's Tempo datasource asks for them in the Search builder, the TraceQL editor, variables
//! and ad-hoc filters. `POST` is answered too, as Tempo answers any method.
//!
//! Parameters: `start` and `end` (Unix seconds; without them the recent window of a search,
//! see [`search::request_range`](super::search)), `limit` (names per scope, or values; 0 or
//! absent for all), `maxStaleValues` (checked, then not needed: the store's indexes answer
//! exactly, with no early stop to bound), `scope` for names (`resource`, `span`, `event`,
//! `link`, `instrumentation`, `intrinsic`; `none` or absent for all) and `q` for the v2
//! endpoints.
//!
//! - v1 names: `{"tagNames":[...]}`, the resource and span attribute names (Tempo's v1 lists
//!   intrinsics only when asked for `scope=intrinsic`).
//! - v2 names: `{"scopes":[{"name":"resource","tags":[...]},...,{"name":"intrinsic",...}]}`;
//!   every intrinsic TraceQL knows is listed whatever the data, as Tempo lists them.
//! - v1 values: `{"tagValues":["a","b"]}`, the values of the span and resource attribute of
//!   that name as text; `name`, `status.code`, `error`, `root.name` and `root.service.name`
//!   name what Tempo's legacy search means by them.
//! - v2 values: `{"tagValues":[{"type":"string","value":"a"},...]}` with Tempo's types
//!   (`string`, `int`, `float`, `bool`, `keyword`), for a TraceQL identifier: `resource.x`,
//!   `span.x`, `.x`, `event.x`, `link.x`, `instrumentation.x` or an intrinsic. `status` and
//!   `kind` list every keyword and durations and IDs nothing, as Tempo does.
//!
//! The tag segment of the path is percent-decoded once (Grafana encodes it twice and its proxy
//! decodes once). A bad scope or tag is 400 naming it.
//!
//! `q` filters the v2 answers to the spans a TraceQL query matches. Grafana sends the query the
//! user is typing, so it is read leniently, as Tempo reads it: a query that does not parse is
//! cut down to the conditions of its first spanset filter that do ([`lenient_filter`]), and
//! when none do, nothing is filtered. Values come from the engine's filtered tag values; names
//! come from the spans the query matches in the most recent [`FILTERED_NAMES_MAX_TRACES`]
//! matching traces.
//!
//! Every answer carries `"metrics":{}` (Tempo's figures, none of which is measured here).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;
use tripod_storage::traces::{NsRange, SpanId, StatusCode, TagRef, TagScope, TagValue, TracesQueryable};
use tripod_storage::traces::{SpanKind, intrinsics};

use super::search::{answer, deadline, json, now_ns, parse_count, request_params, request_range, traceql_error};
use super::{Params, read_tenants, run_query};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::query::traceql::lexer::{Token, tokenize};
use crate::query::traceql::{self, Query, SearchRequest};

/// Matching traces whose spans give the tag names of a filtered v2 request.
pub const FILTERED_NAMES_MAX_TRACES: usize = 500;

/// How values of an intrinsic are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IntrinsicValues {
    /// In the store's index, under this name.
    Indexed(&'static str),
    /// Every status keyword.
    Status,
    /// Every kind keyword.
    Kind,
    /// None listed: durations, counts and IDs.
    Unlisted,
}

/// Every intrinsic TraceQL knows, sorted, with where its values come from.
const INTRINSICS: [(&str, IntrinsicValues); 26] = [
    (intrinsics::DURATION, IntrinsicValues::Unlisted),
    (intrinsics::EVENT_NAME, IntrinsicValues::Indexed(intrinsics::EVENT_NAME)),
    ("event:timeSinceStart", IntrinsicValues::Unlisted),
    (intrinsics::INSTRUMENTATION_NAME, IntrinsicValues::Indexed(intrinsics::INSTRUMENTATION_NAME)),
    (intrinsics::INSTRUMENTATION_VERSION, IntrinsicValues::Indexed(intrinsics::INSTRUMENTATION_VERSION)),
    (intrinsics::KIND, IntrinsicValues::Kind),
    (intrinsics::LINK_SPAN_ID, IntrinsicValues::Unlisted),
    (intrinsics::LINK_TRACE_ID, IntrinsicValues::Unlisted),
    (intrinsics::NAME, IntrinsicValues::Indexed(intrinsics::NAME)),
    (intrinsics::ROOT_NAME, IntrinsicValues::Indexed(intrinsics::ROOT_NAME)),
    (intrinsics::ROOT_SERVICE_NAME, IntrinsicValues::Indexed(intrinsics::ROOT_SERVICE_NAME)),
    ("span:childCount", IntrinsicValues::Unlisted),
    ("span:duration", IntrinsicValues::Unlisted),
    ("span:id", IntrinsicValues::Unlisted),
    ("span:kind", IntrinsicValues::Kind),
    ("span:name", IntrinsicValues::Indexed(intrinsics::NAME)),
    ("span:parentID", IntrinsicValues::Unlisted),
    ("span:status", IntrinsicValues::Status),
    ("span:statusMessage", IntrinsicValues::Indexed(intrinsics::STATUS_MESSAGE)),
    (intrinsics::STATUS, IntrinsicValues::Status),
    (intrinsics::STATUS_MESSAGE, IntrinsicValues::Indexed(intrinsics::STATUS_MESSAGE)),
    ("trace:duration", IntrinsicValues::Unlisted),
    ("trace:id", IntrinsicValues::Unlisted),
    ("trace:rootName", IntrinsicValues::Indexed(intrinsics::ROOT_NAME)),
    ("trace:rootService", IntrinsicValues::Indexed(intrinsics::ROOT_SERVICE_NAME)),
    (intrinsics::TRACE_DURATION, IntrinsicValues::Unlisted),
];

fn intrinsic_names() -> Vec<String> {
    INTRINSICS.iter().map(|(name, _)| name.to_string()).collect()
}

/// What a tag-values request lists.
#[derive(Debug, Clone, PartialEq)]
enum ValuesOf {
    /// The values spans carry: from the store's index, or from the spans a filter matches.
    Tag(TagRef),
    /// A fixed set of keywords.
    Fixed(Vec<TagValue>),
    /// Nothing (durations, counts, IDs).
    Nothing,
}

fn status_keywords() -> Vec<TagValue> {
    StatusCode::ALL.iter().map(|code| TagValue::Keyword(code.keyword().to_string())).collect()
}

fn kind_keywords() -> Vec<TagValue> {
    SpanKind::ALL.iter().map(|kind| TagValue::Keyword(kind.keyword().to_string())).collect()
}

fn intrinsic_values(values: IntrinsicValues) -> ValuesOf {
    match values {
        IntrinsicValues::Indexed(name) => {
            ValuesOf::Tag(TagRef { scope: Some(TagScope::Intrinsic), name: name.to_string() })
        }
        IntrinsicValues::Status => ValuesOf::Fixed(status_keywords()),
        IntrinsicValues::Kind => ValuesOf::Fixed(kind_keywords()),
        IntrinsicValues::Unlisted => ValuesOf::Nothing,
    }
}

/// What a v2 tag should look like, for the refusal.
const EXPECTED_TAG: &str = "expected an attribute (span.x, resource.x, .x) or an intrinsic (name, status)";

fn intrinsic(name: &str) -> Option<ValuesOf> {
    INTRINSICS.iter().find(|(known, _)| *known == name).map(|(_, values)| intrinsic_values(*values))
}

/// A v2 tag: a TraceQL identifier.
fn parse_v2_tag(tag: &str) -> Result<ValuesOf, ApiError> {
    let invalid = |why: String| ApiError::bad_data(format!("invalid tag {tag:?}: {why}"));
    let tokens = tokenize(tag).map_err(|error| invalid(error.to_string()))?;
    let [(token, _), (Token::End, _)] = tokens.as_slice() else {
        return Err(invalid(EXPECTED_TAG.into()));
    };
    match token {
        Token::Attribute { scope: None, name } => Ok(ValuesOf::Tag(TagRef { scope: None, name: name.clone() })),
        Token::Attribute { scope: Some(scope), name } => {
            let word = scope.word();
            let scope = TagScope::ALL
                .into_iter()
                .find(|scope| *scope != TagScope::Intrinsic && scope.name() == word)
                .ok_or_else(|| invalid(format!("{word} attributes are not stored")))?;
            Ok(ValuesOf::Tag(TagRef { scope: Some(scope), name: name.clone() }))
        }
        Token::Ident(word) => intrinsic(word).ok_or_else(|| {
            invalid(format!(
                "{word} is not an intrinsic; attributes are written span.{word}, resource.{word} or .{word}"
            ))
        }),
        Token::ScopedIntrinsic { scope, name } => {
            let scoped = format!("{}:{name}", scope.word());
            intrinsic(&scoped).ok_or_else(|| invalid(format!("{scoped} is not an intrinsic")))
        }
        other => Err(invalid(format!("{other} is not an attribute or an intrinsic; {EXPECTED_TAG}"))),
    }
}

/// A v1 tag: an attribute name, or one of the names Tempo's legacy search gives a meaning;
/// with the values Tempo always lists for it.
fn parse_v1_tag(tag: &str) -> (ValuesOf, Vec<String>) {
    let intrinsic = |name: &str| ValuesOf::Tag(TagRef { scope: Some(TagScope::Intrinsic), name: name.to_string() });
    match tag {
        "name" => (intrinsic(intrinsics::NAME), vec![]),
        "root.name" => (intrinsic(intrinsics::ROOT_NAME), vec![]),
        "root.service.name" => (intrinsic(intrinsics::ROOT_SERVICE_NAME), vec![]),
        "status.code" => (ValuesOf::Fixed(status_keywords()), vec![]),
        // `error=true` finds spans with an error status, whatever the attribute holds.
        "error" => (ValuesOf::Tag(TagRef { scope: None, name: tag.to_string() }), vec!["true".to_string()]),
        _ => (ValuesOf::Tag(TagRef { scope: None, name: tag.to_string() }), vec![]),
    }
}

/// Which names a request lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScopeParam {
    All,
    One(TagScope),
}

fn parse_scope(params: &Params) -> Result<ScopeParam, ApiError> {
    match params.get("scope") {
        None | Some("none") => Ok(ScopeParam::All),
        Some(text) => {
            TagScope::ALL.into_iter().find(|scope| scope.name() == text).map(ScopeParam::One).ok_or_else(|| {
                ApiError::bad_data(format!(
                    "invalid scope {text:?}: expected resource, span, event, link, instrumentation, intrinsic or none"
                ))
            })
        }
    }
}

/// `limit` (0 or absent: no limit) after checking `maxStaleValues`.
fn parse_limits(params: &Params) -> Result<usize, ApiError> {
    parse_count(params, "maxStaleValues", u64::from(u32::MAX))?;
    Ok(match parse_count(params, "limit", u64::from(u32::MAX))? {
        Some(0) | None => usize::MAX,
        Some(limit) => limit as usize,
    })
}

// ---------------------------------------------------------------------------------------------
// The filter of `q`.

/// The query `q` filters by, or `None` to filter nothing: a query that parses is used whole
/// (except `{}` and metrics queries, which filter nothing); one that does not keeps, of its
/// first spanset filter's `&&`-joined conditions, those that parse alone, so that
/// `{ resource.service.name = "a" && span.http.method = }` filters by service. A query that
/// does not parse and has a top-level `||` filters nothing: dropping one side of an `||` would
/// narrow the answer where dropping a side of an `&&` widens it.
fn lenient_filter(q: Option<&str>) -> Option<Query> {
    let text = q?.trim();
    let usable = |query: Query| (!query.matches_everything() && !query.is_metrics()).then_some(query);
    if let Ok(query) = traceql::parse(text) {
        return usable(query);
    }
    let body = first_filter_body(text)?;
    let (conditions, has_or) = split_conditions(&body);
    if has_or {
        return None;
    }
    let kept: Vec<&str> = conditions
        .into_iter()
        .map(str::trim)
        .filter(|condition| !condition.is_empty() && traceql::parse(&format!("{{ {condition} }}")).is_ok())
        .collect();
    if kept.is_empty() {
        return None;
    }
    traceql::parse(&format!("{{ {} }}", kept.join(" && "))).ok().and_then(usable)
}

/// The text inside the first `{ ... }` (to the end when it is not closed), strings skipped over.
fn first_filter_body(text: &str) -> Option<String> {
    let start = text.find('{')?;
    let mut body = String::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in text[start + 1..].chars() {
        match quote {
            Some(open) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && open == '"' {
                    escaped = true;
                } else if c == open {
                    quote = None;
                }
            }
            None if c == '"' || c == '`' => quote = Some(c),
            None if c == '}' => break,
            None => {}
        }
        body.push(c);
    }
    Some(body)
}

/// A filter body split at its top-level `&&`, and whether it has a top-level `||`.
fn split_conditions(body: &str) -> (Vec<&str>, bool) {
    let bytes = body.as_bytes();
    let mut parts = Vec::new();
    let mut has_or = false;
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    let mut part_start = 0;
    let mut at = 0;
    while at < bytes.len() {
        let c = bytes[at];
        if let Some(open) = quote {
            if escaped {
                escaped = false;
            } else if c == b'\\' && open == b'"' {
                escaped = true;
            } else if c == open {
                quote = None;
            }
            at += 1;
            continue;
        }
        match c {
            b'"' | b'`' => quote = Some(c),
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b'&' if depth == 0 && bytes.get(at + 1) == Some(&b'&') => {
                parts.push(&body[part_start..at]);
                at += 2;
                part_start = at;
                continue;
            }
            b'|' if depth == 0 && bytes.get(at + 1) == Some(&b'|') => has_or = true,
            _ => {}
        }
        at += 1;
    }
    parts.push(&body[part_start..]);
    (parts, has_or)
}

// ---------------------------------------------------------------------------------------------
// Names.

/// Names per scope of one tenant: attribute scopes from the store (or from the spans `filter`
/// matches), the intrinsic scope as TraceQL knows it.
fn tenant_names(
    store: &dyn TracesQueryable,
    tenant: &str,
    scope: ScopeParam,
    filter: Option<&Query>,
    range: NsRange,
    deadline: Instant,
) -> Result<BTreeMap<TagScope, BTreeSet<String>>, ApiError> {
    let mut names: BTreeMap<TagScope, BTreeSet<String>> = BTreeMap::new();
    if matches!(scope, ScopeParam::All | ScopeParam::One(TagScope::Intrinsic)) {
        names.insert(TagScope::Intrinsic, intrinsic_names().into_iter().collect());
    }
    let wanted = |candidate: TagScope| {
        (candidate != TagScope::Intrinsic && scope == ScopeParam::All) || scope == ScopeParam::One(candidate)
    };
    if scope == ScopeParam::One(TagScope::Intrinsic) {
        return Ok(names);
    }
    match filter {
        None => {
            let asked = match scope {
                ScopeParam::All => None,
                ScopeParam::One(scope) => Some(scope),
            };
            let found = store
                .tag_names(tenant, asked, range)
                .map_err(|error| ApiError::internal(format!("reading tag names: {error}")))?;
            for scoped in found {
                if wanted(scoped.scope) {
                    names.entry(scoped.scope).or_default().extend(scoped.names);
                }
            }
        }
        Some(query) => {
            let request =
                SearchRequest { range, limit: FILTERED_NAMES_MAX_TRACES, spans_per_spanset: usize::MAX, deadline };
            let matches = traceql::search(store, tenant, query, &request).map_err(traceql_error)?;
            for found in &matches.traces {
                if Instant::now() >= deadline {
                    return Err(traceql_error(traceql::TraceqlError::Timeout));
                }
                let matched: HashSet<SpanId> =
                    found.span_sets.iter().flat_map(|set| set.spans.iter().map(|span| span.span_id)).collect();
                let trace = store
                    .trace(tenant, &found.trace_id, Some(range))
                    .map_err(|error| ApiError::internal(format!("reading a matching trace: {error}")))?;
                let Some(trace) = trace else { continue };
                for (resource, scope_spans, span) in trace.spans() {
                    if !matched.contains(&span.span_id) {
                        continue;
                    }
                    let mut add = |scope: TagScope, keys: &mut dyn Iterator<Item = &String>| {
                        if wanted(scope) {
                            names.entry(scope).or_default().extend(keys.cloned());
                        }
                    };
                    add(TagScope::Resource, &mut resource.resource.attributes.iter().map(|(key, _)| key));
                    add(TagScope::Span, &mut span.attributes.iter().map(|(key, _)| key));
                    add(TagScope::Instrumentation, &mut scope_spans.scope.attributes.iter().map(|(key, _)| key));
                    for event in &span.events {
                        add(TagScope::Event, &mut event.attributes.iter().map(|(key, _)| key));
                    }
                    for link in &span.links {
                        add(TagScope::Link, &mut link.attributes.iter().map(|(key, _)| key));
                    }
                }
            }
        }
    }
    Ok(names)
}

/// Names of every tenant the request covers.
async fn all_names(
    state: &AppState,
    headers: &HeaderMap,
    scope: ScopeParam,
    filter: Option<Query>,
    range: NsRange,
) -> Result<BTreeMap<TagScope, BTreeSet<String>>, ApiError> {
    let tenants = read_tenants(state, headers)?;
    let storage = state.storage()?.clone();
    let deadline = deadline(state);
    run_query(state, "tag names", move || {
        let mut names: BTreeMap<TagScope, BTreeSet<String>> = BTreeMap::new();
        for tenant in &tenants {
            for (scope, found) in tenant_names(storage.traces(), tenant, scope, filter.as_ref(), range, deadline)? {
                names.entry(scope).or_default().extend(found);
            }
        }
        Ok(names)
    })
    .await
}

/// Tempo's metrics of a tag answer: none measured, so every figure is left out.
#[derive(Serialize, Default)]
struct NoMetrics {}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TagNamesJson {
    tag_names: Vec<String>,
    metrics: NoMetrics,
}

#[derive(Serialize)]
struct TagNamesV2Json {
    scopes: Vec<ScopeJson>,
    metrics: NoMetrics,
}

#[derive(Serialize)]
struct ScopeJson {
    name: &'static str,
    tags: Vec<String>,
}

async fn run_names_v1(
    state: AppState,
    headers: HeaderMap,
    query: Option<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = request_params(query.as_deref(), &headers, &body)?;
    let scope = parse_scope(&params)?;
    let limit = parse_limits(&params)?;
    let range = request_range(&params, now_ns())?;
    let names = all_names(&state, &headers, scope, None, range).await?;
    let mut tag_names = BTreeSet::new();
    for (found_scope, found) in names {
        // Without a scope, v1 lists resource and span attributes only.
        if scope != ScopeParam::All || matches!(found_scope, TagScope::Resource | TagScope::Span) {
            tag_names.extend(found);
        }
    }
    Ok(json(&TagNamesJson { tag_names: tag_names.into_iter().take(limit).collect(), metrics: NoMetrics {} }))
}

async fn run_names_v2(
    state: AppState,
    headers: HeaderMap,
    query: Option<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = request_params(query.as_deref(), &headers, &body)?;
    let scope = parse_scope(&params)?;
    let limit = parse_limits(&params)?;
    let range = request_range(&params, now_ns())?;
    let filter = lenient_filter(params.get("q"));
    let names = all_names(&state, &headers, scope, filter, range).await?;
    // Attribute scopes in the store's order, the intrinsic scope last.
    let mut scopes: Vec<ScopeJson> = Vec::new();
    for (found_scope, found) in &names {
        if *found_scope != TagScope::Intrinsic && !found.is_empty() {
            scopes.push(ScopeJson { name: found_scope.name(), tags: found.iter().take(limit).cloned().collect() });
        }
    }
    if let Some(found) = names.get(&TagScope::Intrinsic) {
        scopes.push(ScopeJson { name: TagScope::Intrinsic.name(), tags: found.iter().take(limit).cloned().collect() });
    }
    Ok(json(&TagNamesV2Json { scopes, metrics: NoMetrics {} }))
}

/// `GET /api/search/tags`.
pub async fn tag_names_v1(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(run_names_v1(state, headers, query, body).await)
}

/// `GET /api/v2/search/tags`.
pub async fn tag_names_v2(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(run_names_v2(state, headers, query, body).await)
}

// ---------------------------------------------------------------------------------------------
// Values.

/// Values of every tenant the request covers, sorted by type then value, at most `limit`.
async fn all_values(
    state: &AppState,
    headers: &HeaderMap,
    values_of: ValuesOf,
    filter: Option<Query>,
    range: NsRange,
    limit: usize,
) -> Result<Vec<TagValue>, ApiError> {
    let tag = match values_of {
        ValuesOf::Tag(tag) => tag,
        ValuesOf::Fixed(mut values) => {
            values.sort_by(|a, b| a.total_cmp(b));
            values.truncate(limit);
            return Ok(values);
        }
        ValuesOf::Nothing => return Ok(Vec::new()),
    };
    let tenants = read_tenants(state, headers)?;
    let storage = state.storage()?.clone();
    let deadline = deadline(state);
    run_query(state, "tag values", move || {
        let mut values = Vec::new();
        for tenant in &tenants {
            let found = traceql::tag_values(storage.traces(), tenant, &tag, filter.as_ref(), range, limit, deadline)
                .map_err(traceql_error)?;
            values.extend(found);
        }
        values.sort_by(|a, b| a.total_cmp(b));
        values.dedup_by(|a, b| a.total_cmp(b).is_eq());
        values.truncate(limit);
        Ok(values)
    })
    .await
}

/// A double as Tempo writes a float value: shortest form, always with a point or exponent.
fn float_text(value: f64) -> String {
    let text = value.to_string();
    if value.is_finite() && !text.contains(['.', 'e', 'E']) { format!("{text}.0") } else { text }
}

/// A value's type and text as Tempo's v2 answers name them.
fn typed(value: &TagValue) -> (&'static str, String) {
    match value {
        TagValue::String(text) => ("string", text.clone()),
        TagValue::Int(n) => ("int", n.to_string()),
        TagValue::Double(n) => ("float", float_text(*n)),
        TagValue::Bool(b) => ("bool", b.to_string()),
        TagValue::Keyword(word) => ("keyword", word.clone()),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TagValuesJson {
    tag_values: Vec<String>,
    metrics: NoMetrics,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TagValuesV2Json {
    tag_values: Vec<TypedValueJson>,
    metrics: NoMetrics,
}

#[derive(Serialize)]
struct TypedValueJson {
    #[serde(rename = "type")]
    value_type: &'static str,
    value: String,
}

async fn run_values_v1(
    state: AppState,
    headers: HeaderMap,
    tag: String,
    query: Option<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = request_params(query.as_deref(), &headers, &body)?;
    let limit = parse_limits(&params)?;
    let range = request_range(&params, now_ns())?;
    if tag.is_empty() {
        return Err(ApiError::bad_data("invalid tag \"\": empty"));
    }
    let (values_of, always) = parse_v1_tag(&tag);
    let found = all_values(&state, &headers, values_of, None, range, limit).await?;
    let mut texts: BTreeSet<String> = always.into_iter().collect();
    texts.extend(found.iter().map(|value| typed(value).1));
    Ok(json(&TagValuesJson { tag_values: texts.into_iter().take(limit).collect(), metrics: NoMetrics {} }))
}

async fn run_values_v2(
    state: AppState,
    headers: HeaderMap,
    tag: String,
    query: Option<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = request_params(query.as_deref(), &headers, &body)?;
    let limit = parse_limits(&params)?;
    let range = request_range(&params, now_ns())?;
    let values_of = parse_v2_tag(&tag)?;
    let filter = lenient_filter(params.get("q"));
    let found = all_values(&state, &headers, values_of, filter, range, limit).await?;
    let tag_values = found
        .iter()
        .map(|value| {
            let (value_type, value) = typed(value);
            TypedValueJson { value_type, value }
        })
        .collect();
    Ok(json(&TagValuesV2Json { tag_values, metrics: NoMetrics {} }))
}

/// `GET /api/search/tag/{tag}/values`.
pub async fn tag_values_v1(
    State(state): State<AppState>,
    Path(tag): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(run_values_v1(state, headers, tag, query, body).await)
}

/// `GET /api/v2/search/tag/{tag}/values`.
pub async fn tag_values_v2(
    State(state): State<AppState>,
    Path(tag): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(run_values_v2(state, headers, tag, query, body).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(scope: Option<TagScope>, name: &str) -> ValuesOf {
        ValuesOf::Tag(TagRef { scope, name: name.to_string() })
    }

    #[test]
    fn v2_tags_are_traceql_identifiers() {
        let intrinsic = |name: &str| tag(Some(TagScope::Intrinsic), name);
        for (text, expected) in [
            ("resource.service.name", tag(Some(TagScope::Resource), "service.name")),
            ("span.http.method", tag(Some(TagScope::Span), "http.method")),
            ("span.http/route", tag(Some(TagScope::Span), "http/route")),
            (".service.name", tag(None, "service.name")),
            ("span.\"a b\"", tag(Some(TagScope::Span), "a b")),
            ("event.exception.type", tag(Some(TagScope::Event), "exception.type")),
            ("link.kind", tag(Some(TagScope::Link), "kind")),
            ("instrumentation.lib", tag(Some(TagScope::Instrumentation), "lib")),
            ("name", intrinsic("name")),
            ("span:name", intrinsic("name")),
            ("rootServiceName", intrinsic("rootServiceName")),
            ("trace:rootService", intrinsic("rootServiceName")),
            ("trace:rootName", intrinsic("rootName")),
            ("statusMessage", intrinsic("statusMessage")),
            ("event:name", intrinsic("event:name")),
            ("instrumentation:version", intrinsic("instrumentation:version")),
            ("status", ValuesOf::Fixed(status_keywords())),
            ("span:kind", ValuesOf::Fixed(kind_keywords())),
            ("duration", ValuesOf::Nothing),
            ("traceDuration", ValuesOf::Nothing),
            ("trace:id", ValuesOf::Nothing),
        ] {
            assert_eq!(parse_v2_tag(text).unwrap(), expected, "{text}");
        }
        for (text, message) in [
            (
                "foo",
                "invalid tag \"foo\": foo is not an intrinsic; attributes are written span.foo, resource.foo or .foo",
            ),
            ("span:foo", "invalid tag \"span:foo\": span:foo is not an intrinsic"),
            ("trace.x", "invalid tag \"trace.x\": trace attributes are not stored"),
            ("a b", "invalid tag \"a b\": expected an attribute (span.x"),
            ("{", "invalid tag \"{\": { is not an attribute or an intrinsic"),
            ("\"open", "invalid tag \"\\\"open\": parse error at line 1, col 1"),
            ("", "invalid tag \"\": expected an attribute (span.x"),
        ] {
            let error = parse_v2_tag(text).unwrap_err();
            assert!(error.message().starts_with(message), "{text}: {}", error.message());
        }
    }

    #[test]
    fn every_listed_intrinsic_is_traceql() {
        let names = intrinsic_names();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        for name in names {
            traceql::parse(&format!("{{ {name} != nil }}")).unwrap_or_else(|error| panic!("{name}: {error}"));
            parse_v2_tag(&name).unwrap();
        }
    }

    #[test]
    fn scopes_are_tempos() {
        let scope = |query: &str| parse_scope(&Params::parse(Some(query)).unwrap());
        assert_eq!(scope("").unwrap(), ScopeParam::All);
        assert_eq!(scope("scope=none").unwrap(), ScopeParam::All);
        assert_eq!(scope("scope=intrinsic").unwrap(), ScopeParam::One(TagScope::Intrinsic));
        assert_eq!(scope("scope=event").unwrap(), ScopeParam::One(TagScope::Event));
        let error = scope("scope=spans").unwrap_err();
        assert_eq!(
            error.message(),
            "invalid scope \"spans\": expected resource, span, event, link, instrumentation, intrinsic or none"
        );
    }

    #[test]
    fn filters_are_read_leniently() {
        let filter = |q: &str| lenient_filter(Some(q)).map(|query| query.to_string());
        assert_eq!(filter(r#"{ resource.service.name = "a" }"#).as_deref(), Some(r#"{ resource.service.name = "a" }"#));
        // Filters that filter nothing.
        for q in
            ["", "{}", "{ }", "{ true }", "{ status = error } | rate()", "no filter", "{ .a = }", "{ .a = 1 || .b = }"]
        {
            assert_eq!(filter(q), None, "{q}");
        }
        // The conditions that parse are kept.
        assert_eq!(
            filter(r#"{ resource.service.name = "a" && span.http.method = }"#).as_deref(),
            Some(r#"{ resource.service.name = "a" }"#)
        );
        let joined = r#"{ .a = "x && y" && (.c = 1 || .d = 2) && .e }"#;
        assert_eq!(
            filter(r#"{ .a = "x && y" && .b = && (.c = 1 || .d = 2) && .e"#),
            Some(traceql::parse(joined).unwrap().to_string())
        );
        assert!(!split_conditions(r#" .a = "||" && (.b = 1 || .c = 2) "#).1);
        assert!(split_conditions(" .a = 1 || .b = ").1);
        assert_eq!(first_filter_body(r#"{ .a = "}" } && { .b = 1 }"#).as_deref(), Some(r#" .a = "}" "#));
        assert_eq!(first_filter_body("{ .a = 1").as_deref(), Some(" .a = 1"));
    }

    #[test]
    fn floats_are_written_as_tempo_writes_them() {
        assert_eq!(float_text(3.0), "3.0");
        assert_eq!(float_text(0.25), "0.25");
        assert_eq!(float_text(-1.5), "-1.5");
        assert_eq!(typed(&TagValue::Int(-7)), ("int", "-7".to_string()));
        assert_eq!(typed(&TagValue::Bool(true)), ("bool", "true".to_string()));
        assert_eq!(typed(&TagValue::Keyword("error".into())), ("keyword", "error".to_string()));
    }
}
