//! The TraceQL golden scripts: every `tests/traceql/*.test` file is loaded into the real traces
//! store three times — all spans in the head; some traces cut into blocks and others split
//! between a block and the head; everything in blocks — and every case runs against each.
//!
//! The format (line-based; `#` starts a comment; indentation marks a block's body):
//!
//! ```text
//! load
//!   resource api service.name="shop" host.cpus=4          # a resource: alias, attributes
//!   scope otel name="express" version="1.2" lang="js"      # an instrumentation scope
//!   trace t1 at=1000s [id=<32 hex digits>]                 # a trace; its ID comes from its name
//!     # (a span's ID comes from its trace's and its own name, or is its name if that is 16 hex
//!     # digits)
//!     # span <id> <parent or -> <resource>[/<scope>] <start> <duration> <kind>
//!     #      <status>[:"message"] "<name>" [attributes]    (start is relative to `at`)
//!     span root - api 0ms 15ms server ok "POST /api/todos" http.method="POST" tags=["a", 1]
//!     span db root api/otel 1ms 5ms client error:"timeout" "SELECT"
//!     event db 2ms "exception" exception.message="boom"   # time relative to the span's start
//!     link db t2:root ref="follows"                        # a link to another trace's span
//!   traces 1500 small at=2000s step=1s                     # small0, small1, ... 1s apart; the
//!     span r - api 0ms 1ms server unset "small"            # lines below apply to each
//!
//! search [start=0s] [end=1h] [limit=20] [spss=3]
//!   query: { status = error }
//!   t1 db matched=1 by(resource.service.name)="shop"       # one spanset per line, in order
//!   attrs t1 db status="error"                             # the span's returned attributes
//!
//! search                                                   # Tempo's legacy tag search
//!   tags: service.name="shop" http.status_code=500
//!   min: 10ms
//!   max: 1s
//!   t1 root
//!
//! search_fail                                              # or with tags:, min:, max:
//!   query: { .a = }
//!   error: parse error at line 1, col 8                    # must be part of the message
//!
//! tag_values resource.service.name [limit=10] [start=..] [end=..]
//!   query: { status = error }                              # optional filter
//!   values: "shop" 200 1.5 true error                      # bare words are keywords
//!
//! clear                                                    # a new, empty store
//! ```
//!
//! Spansets list their spans in time order; `matched=` defaults to the number of spans listed.
//! A search with no spanset lines expects no trace. Spanset attributes are `key=value` words
//! (a key with spaces or `=` is quoted). Tags of `tag_values` are written as the API takes
//! them: `.x` unscoped, `span.x`, `resource.x`, `event.x`, `link.x`, `instrumentation.x`, or an
//! intrinsic name (`status`, `event:name`). Every query that parses must also print as TraceQL
//! that parses back to the same text.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use tripod_storage::traces::{
    AttrValue, NsRange, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanEvent, SpanId, SpanKind, SpanLink,
    SpanStatus, StatusCode, TagRef, TagScope, TagValue, TraceId, TracesAppender, TracesOptions,
};
use tripod_storage::{Storage, StorageOptions};

use super::lexer::parse_duration_ns;
use super::{SearchRequest, TraceMatch, parse, query_from_tags, search, tag_values};

const TENANT: &str = "single-tenant";

// ---------------------------------------------------------------------------------------------
// Words

/// Splits a line into words at whitespace, keeping quoted strings and `[...]` lists whole;
/// a `#` outside quotes ends the line.
fn words(line: &str, number: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = line.chars().peekable();
    let mut brackets = 0;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                current.push(c);
                loop {
                    let Some(inner) = chars.next() else { panic!("line {number}: unterminated string") };
                    current.push(inner);
                    if inner == '\\' {
                        current.push(chars.next().unwrap_or_else(|| panic!("line {number}: unterminated string")));
                    } else if inner == '"' {
                        break;
                    }
                }
            }
            '[' => {
                brackets += 1;
                current.push(c);
            }
            ']' => {
                brackets -= 1;
                current.push(c);
            }
            '#' if brackets == 0 && current.is_empty() => break,
            c if c.is_whitespace() && brackets == 0 => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A double-quoted string with `\"`, `\\`, `\n`, `\t` escapes.
fn unquote(text: &str, number: usize) -> String {
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or_else(|| panic!("line {number}: expected a quoted string, got {text:?}"));
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `key=value`, split at the first `=` outside quotes.
fn key_value(word: &str, number: usize) -> (String, String) {
    let mut in_string = false;
    let mut escaped = false;
    for (at, c) in word.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '=' if !in_string => {
                let key = &word[..at];
                let key = if key.starts_with('"') { unquote(key, number) } else { key.to_string() };
                return (key, word[at + 1..].to_string());
            }
            _ => {}
        }
    }
    panic!("line {number}: expected key=value, got {word:?}")
}

/// An attribute value: `"string"`, an integer, a float, `true`/`false`, or `[v, v, ...]`.
fn attr_value(text: &str, number: usize) -> AttrValue {
    let text = text.trim();
    if text.starts_with('"') {
        return AttrValue::String(unquote(text, number));
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        let elements = words(&inner.replace(',', " "), number);
        return AttrValue::Array(elements.iter().map(|element| attr_value(element, number)).collect());
    }
    match text {
        "true" => return AttrValue::Bool(true),
        "false" => return AttrValue::Bool(false),
        _ => {}
    }
    if let Ok(n) = text.parse::<i64>() {
        return AttrValue::Int(n);
    }
    if let Ok(n) = text.parse::<f64>() {
        return AttrValue::Double(n);
    }
    panic!("line {number}: bad value {text:?}")
}

fn attributes(words: &[String], number: usize) -> Vec<(String, AttrValue)> {
    words
        .iter()
        .map(|word| {
            let (key, value) = key_value(word, number);
            (key, attr_value(&value, number))
        })
        .collect()
}

fn render_value(value: &AttrValue) -> String {
    match value {
        AttrValue::String(text) => format!("{text:?}"),
        AttrValue::Int(n) => n.to_string(),
        AttrValue::Double(n) => format!("{n:?}"),
        AttrValue::Bool(b) => b.to_string(),
        AttrValue::Bytes(bytes) => format!("bytes({bytes:?})"),
        AttrValue::Array(elements) => {
            format!("[{}]", elements.iter().map(render_value).collect::<Vec<_>>().join(", "))
        }
        AttrValue::KvList(pairs) => format!(
            "{{{}}}",
            pairs.iter().map(|(k, v)| format!("{k}={}", render_value(v))).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn render_pair(key: &str, value: &AttrValue) -> String {
    let key = if key.contains(' ') || key.contains('=') { format!("{key:?}") } else { key.to_string() };
    format!("{key}={}", render_value(value))
}

fn duration_ns(text: &str, number: usize) -> i64 {
    parse_duration_ns(text).unwrap_or_else(|| panic!("line {number}: bad duration {text:?}"))
}

// ---------------------------------------------------------------------------------------------
// Loading

/// FNV-1a, for IDs derived from names.
fn fnv(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash | 1
}

fn derived_trace_id(name: &str) -> TraceId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&fnv(name).to_be_bytes());
    id[8..].copy_from_slice(&fnv(&format!("{name}#")).to_be_bytes());
    id
}

/// A span's ID: the alias itself when it is 16 hex digits, else derived from the names.
fn derived_span_id(trace: &str, span: &str) -> SpanId {
    if span.len() == 16
        && let Ok(id) = u64::from_str_radix(span, 16)
    {
        return id.to_be_bytes();
    }
    fnv(&format!("{trace}/{span}")).to_be_bytes()
}

/// One trace to load.
struct TraceLoad {
    name: String,
    id: TraceId,
    /// The time span starts are relative to.
    at_ns: i64,
    /// Spans as (resource alias, scope alias, span, span alias).
    spans: Vec<(String, String, Span, String)>,
}

#[derive(Default)]
struct Load {
    resources: HashMap<String, Resource>,
    scopes: HashMap<String, Scope>,
    traces: Vec<TraceLoad>,
    /// How many of the last traces the next span, event and link lines apply to.
    group: usize,
}

impl Load {
    /// The ID of a named trace; a link may name a trace that is not loaded.
    fn trace_id(&self, name: &str) -> TraceId {
        self.traces.iter().find(|trace| trace.name == name).map_or_else(|| derived_trace_id(name), |trace| trace.id)
    }

    /// Applies `change` to the span `alias` of every trace of the current group.
    fn each_span(&mut self, alias: &str, number: usize, change: impl Fn(&mut Span)) {
        assert!(self.group > 0, "line {number}: no trace before this line");
        let first = self.traces.len() - self.group;
        for trace in &mut self.traces[first..] {
            let span = trace
                .spans
                .iter_mut()
                .find(|(_, _, _, name)| name == alias)
                .map(|(_, _, span, _)| span)
                .unwrap_or_else(|| panic!("line {number}: no span {alias} in this trace"));
            change(span);
        }
    }

    fn line(&mut self, words: &[String], number: usize) {
        match words[0].as_str() {
            "resource" => {
                let alias = words.get(1).unwrap_or_else(|| panic!("line {number}: resource without alias"));
                let resource = Resource { attributes: attributes(&words[2..], number), dropped_attributes_count: 0 };
                self.resources.insert(alias.clone(), resource);
            }
            "scope" => {
                let alias = words.get(1).unwrap_or_else(|| panic!("line {number}: scope without alias"));
                let mut scope = Scope::default();
                for (key, value) in attributes(&words[2..], number) {
                    match (key.as_str(), value) {
                        ("name", AttrValue::String(name)) => scope.name = name,
                        ("version", AttrValue::String(version)) => scope.version = version,
                        (_, value) => scope.attributes.push((key, value)),
                    }
                }
                self.scopes.insert(alias.clone(), scope);
            }
            "trace" => {
                let name = words.get(1).unwrap_or_else(|| panic!("line {number}: trace without name")).clone();
                let mut id = derived_trace_id(&name);
                let mut at_ns = 0;
                for word in &words[2..] {
                    let (key, value) = key_value(word, number);
                    match key.as_str() {
                        "at" => at_ns = duration_ns(&value, number),
                        "id" => {
                            assert_eq!(value.len(), 32, "line {number}: a trace ID has 32 hex digits");
                            for (i, byte) in id.iter_mut().enumerate() {
                                *byte = u8::from_str_radix(&value[2 * i..2 * i + 2], 16)
                                    .unwrap_or_else(|_| panic!("line {number}: bad hex"));
                            }
                        }
                        other => panic!("line {number}: unknown trace parameter {other}"),
                    }
                }
                self.traces.push(TraceLoad { name, id, at_ns, spans: Vec::new() });
                self.group = 1;
            }
            "traces" => {
                // traces <count> <prefix> at=<time> step=<duration>: prefix0, prefix1, ...
                assert!(words.len() == 5, "line {number}: traces <count> <prefix> at=<time> step=<duration>");
                let count: usize = words[1].parse().unwrap_or_else(|_| panic!("line {number}: bad count"));
                let (_, at) = key_value(&words[3], number);
                let (_, step) = key_value(&words[4], number);
                let (at_ns, step_ns) = (duration_ns(&at, number), duration_ns(&step, number));
                for i in 0..count {
                    let name = format!("{}{i}", words[2]);
                    let id = derived_trace_id(&name);
                    self.traces.push(TraceLoad { name, id, at_ns: at_ns + i as i64 * step_ns, spans: Vec::new() });
                }
                self.group = count;
            }
            "span" => self.span(words, number),
            "event" => {
                assert!(words.len() >= 4, "line {number}: event <span> <offset> \"<name>\" [attributes]");
                let offset = duration_ns(&words[2], number);
                let name = unquote(&words[3], number);
                let attributes = attributes(&words[4..], number);
                self.each_span(&words[1], number, |span| {
                    span.events.push(SpanEvent {
                        time_ns: span.start_ns + offset,
                        name: name.clone(),
                        attributes: attributes.clone(),
                        dropped_attributes_count: 0,
                    })
                });
            }
            "link" => {
                assert!(words.len() >= 3, "line {number}: link <span> <trace>:<span> [attributes]");
                let (trace, target) =
                    words[2].split_once(':').unwrap_or_else(|| panic!("line {number}: link target is trace:span"));
                let trace_id = self.trace_id(trace);
                let span_id = derived_span_id(trace, target);
                let attributes = attributes(&words[3..], number);
                self.each_span(&words[1], number, |span| {
                    span.links.push(SpanLink {
                        trace_id,
                        span_id,
                        attributes: attributes.clone(),
                        ..SpanLink::default()
                    })
                });
            }
            other => panic!("line {number}: unknown load line {other:?}"),
        }
    }

    fn span(&mut self, words: &[String], number: usize) {
        assert!(
            words.len() >= 9,
            "line {number}: span <id> <parent|-> <resource>[/<scope>] <start> <duration> <kind> <status> \"<name>\""
        );
        let (resource, scope) = match words[3].split_once('/') {
            Some((resource, scope)) => (resource.to_string(), scope.to_string()),
            None => (words[3].clone(), String::new()),
        };
        assert!(self.resources.contains_key(&resource), "line {number}: unknown resource {resource}");
        assert!(scope.is_empty() || self.scopes.contains_key(&scope), "line {number}: unknown scope {scope}");
        let kind = SpanKind::ALL
            .into_iter()
            .find(|kind| kind.keyword() == words[6])
            .unwrap_or_else(|| panic!("line {number}: unknown kind {}", words[6]));
        let (code, message) = match words[7].split_once(':') {
            Some((code, message)) => (code, unquote(message, number)),
            None => (words[7].as_str(), String::new()),
        };
        let code = StatusCode::ALL
            .into_iter()
            .find(|status| status.keyword() == code)
            .unwrap_or_else(|| panic!("line {number}: unknown status {code}"));
        assert!(self.group > 0, "line {number}: span before any trace");
        let first = self.traces.len() - self.group;
        for trace in &mut self.traces[first..] {
            let alias = words[1].clone();
            assert!(
                trace.spans.iter().all(|(_, _, _, existing)| *existing != alias),
                "line {number}: span {alias} twice in one trace"
            );
            let start_ns = trace.at_ns + duration_ns(&words[4], number);
            let span = Span {
                trace_id: trace.id,
                span_id: derived_span_id(&trace.name, &alias),
                parent_span_id: (words[2] != "-").then(|| derived_span_id(&trace.name, &words[2])),
                name: unquote(&words[8], number),
                kind,
                start_ns,
                end_ns: start_ns + duration_ns(&words[5], number),
                status: SpanStatus { code, message: message.clone() },
                attributes: attributes(&words[9..], number),
                ..Span::default()
            };
            trace.spans.push((resource.clone(), scope.clone(), span, alias));
        }
    }

    /// Groups spans as OTLP does: by resource, then by scope.
    fn batch(&self, spans: &[(String, String, Span, String)]) -> Vec<ResourceSpans> {
        let mut batch: Vec<(String, ResourceSpans)> = Vec::new();
        for (resource, scope, span, _) in spans {
            let index = match batch.iter().position(|(alias, _)| alias == resource) {
                Some(index) => index,
                None => {
                    batch.push((
                        resource.clone(),
                        ResourceSpans { resource: self.resources[resource].clone(), ..ResourceSpans::default() },
                    ));
                    batch.len() - 1
                }
            };
            let group = &mut batch[index].1;
            let scope_value = self.scopes.get(scope).cloned().unwrap_or_default();
            match group.scope_spans.iter_mut().find(|existing| existing.scope == scope_value) {
                Some(existing) => existing.spans.push(span.clone()),
                None => group.scope_spans.push(ScopeSpans {
                    scope: scope_value,
                    schema_url: String::new(),
                    spans: vec![span.clone()],
                }),
            }
        }
        batch.into_iter().map(|(_, group)| group).collect()
    }

    /// Stores the spans: all in the head, some in blocks, or all in blocks.
    fn store(&self, storage: &Storage, phase: Phase) {
        let append = |spans: &[(String, String, Span, String)]| {
            if !spans.is_empty() {
                storage.traces().append(TENANT, &self.batch(spans)).unwrap_or_else(|error| panic!("append: {error}"));
            }
        };
        match phase {
            Phase::Head => self.traces.iter().for_each(|trace| append(&trace.spans)),
            Phase::Blocks => {
                self.traces.iter().for_each(|trace| append(&trace.spans));
                storage.traces().flush_all().unwrap_or_else(|error| panic!("flush: {error}"));
            }
            Phase::Mixed => {
                // Even traces go whole into a block; odd ones half into a block, half to the head.
                let mut later = Vec::new();
                for (index, trace) in self.traces.iter().enumerate() {
                    let cut = if index % 2 == 0 { trace.spans.len() } else { trace.spans.len() / 2 };
                    append(&trace.spans[..cut]);
                    later.push(&trace.spans[cut..]);
                }
                storage.traces().flush_all().unwrap_or_else(|error| panic!("flush: {error}"));
                later.into_iter().for_each(append);
            }
        }
    }

    /// Names for IDs, to print answers.
    fn names(&self) -> Names {
        let mut names = Names::default();
        for trace in &self.traces {
            names.traces.insert(trace.id, trace.name.clone());
            for (_, _, span, alias) in &trace.spans {
                names.spans.insert((trace.id, span.span_id), alias.clone());
            }
        }
        names
    }
}

#[derive(Default)]
struct Names {
    traces: HashMap<TraceId, String>,
    spans: HashMap<(TraceId, SpanId), String>,
}

impl Names {
    fn trace(&self, id: &TraceId) -> String {
        self.traces.get(id).cloned().unwrap_or_else(|| format!("?{}", crate::encoding::hex(id)))
    }

    fn span(&self, trace: &TraceId, span: &SpanId) -> String {
        self.spans.get(&(*trace, *span)).cloned().unwrap_or_else(|| format!("?{}", crate::encoding::hex(span)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Head,
    Mixed,
    Blocks,
}

// ---------------------------------------------------------------------------------------------
// Cases

enum What {
    Search { query: Option<String>, tags: Option<String>, min: Option<String>, max: Option<String> },
    Fail { query: Option<String>, tags: Option<String>, min: Option<String>, max: Option<String>, error: String },
    TagValues { tag: TagRef, query: Option<String> },
}

struct Case {
    /// Where the case starts, for messages.
    line: usize,
    what: What,
    range: NsRange,
    limit: usize,
    spss: usize,
    /// Expected spansets, each rendered as one line.
    spansets: Vec<String>,
    /// Expected attributes of returned spans: (trace, span) -> rendered, sorted.
    span_attributes: Vec<(String, String, Vec<String>)>,
    values: Vec<String>,
}

#[derive(Default)]
struct Section {
    load: Load,
    cases: Vec<Case>,
}

/// A spanset as one line: trace, spans, matched count, attributes.
fn render_spanset(trace: &str, spans: &[String], matched: usize, attributes: &[String]) -> String {
    let mut line = trace.to_string();
    for span in spans {
        line.push(' ');
        line.push_str(span);
    }
    line.push_str(&format!(" matched={matched}"));
    for attribute in attributes {
        line.push(' ');
        line.push_str(attribute);
    }
    line
}

fn tag_ref(text: &str) -> TagRef {
    if let Some(name) = text.strip_prefix('.') {
        return TagRef { scope: None, name: name.to_string() };
    }
    for scope in [TagScope::Resource, TagScope::Span, TagScope::Event, TagScope::Link, TagScope::Instrumentation] {
        if let Some(name) = text.strip_prefix(scope.name()).and_then(|rest| rest.strip_prefix('.')) {
            return TagRef { scope: Some(scope), name: name.to_string() };
        }
    }
    TagRef { scope: Some(TagScope::Intrinsic), name: text.to_string() }
}

fn render_tag_value(value: &TagValue) -> String {
    match value {
        TagValue::String(text) => format!("{text:?}"),
        TagValue::Int(n) => n.to_string(),
        TagValue::Double(n) => format!("{n:?}"),
        TagValue::Bool(b) => b.to_string(),
        TagValue::Keyword(word) => word.clone(),
    }
}

fn parse_script(text: &str) -> Vec<Section> {
    let mut sections = vec![Section::default()];
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    let body = |i: &mut usize| -> Vec<(usize, String)> {
        let mut out = Vec::new();
        while *i < lines.len() && (lines[*i].starts_with(' ') || lines[*i].trim().is_empty()) {
            let trimmed = lines[*i].trim();
            if !trimmed.is_empty() && !trimmed.starts_with('#') {
                out.push((*i + 1, trimmed.to_string()));
            }
            *i += 1;
        }
        out
    };
    while i < lines.len() {
        let number = i + 1;
        let raw = lines[i];
        let trimmed = raw.trim();
        i += 1;
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        assert!(!raw.starts_with(' '), "line {number}: unexpected indented line {raw:?}");
        let head = words(trimmed, number);
        let section = sections.last_mut().unwrap_or_else(|| unreachable!());
        match head[0].as_str() {
            "clear" => sections.push(Section::default()),
            "load" => {
                for (number, line) in body(&mut i) {
                    section.load.line(&words(&line, number), number);
                }
            }
            command @ ("search" | "search_fail" | "tag_values") => {
                let mut case = Case {
                    line: number,
                    what: What::Search { query: None, tags: None, min: None, max: None },
                    range: NsRange::all(),
                    limit: 20,
                    spss: 3,
                    spansets: Vec::new(),
                    span_attributes: Vec::new(),
                    values: Vec::new(),
                };
                let mut parameters = &head[1..];
                let mut tag = None;
                if command == "tag_values" {
                    tag = Some(tag_ref(head.get(1).unwrap_or_else(|| panic!("line {number}: tag_values <tag>"))));
                    parameters = &head[2..];
                }
                let (mut start, mut end) = (i64::MIN, i64::MAX);
                for word in parameters {
                    let (key, value) = key_value(word, number);
                    match key.as_str() {
                        "start" => start = duration_ns(&value, number),
                        "end" => end = duration_ns(&value, number),
                        "limit" => case.limit = value.parse().unwrap_or_else(|_| panic!("line {number}: bad limit")),
                        "spss" => case.spss = value.parse().unwrap_or_else(|_| panic!("line {number}: bad spss")),
                        other => panic!("line {number}: unknown parameter {other}"),
                    }
                }
                case.range = NsRange::new(start, end).unwrap_or_else(|| panic!("line {number}: start after end"));
                let (mut query, mut tags, mut min, mut max, mut error) = (None, None, None, None, None);
                for (number, line) in body(&mut i) {
                    if let Some(text) = line.strip_prefix("query:") {
                        query = Some(text.trim().to_string());
                    } else if let Some(text) = line.strip_prefix("tags:") {
                        tags = Some(text.trim().to_string());
                    } else if let Some(text) = line.strip_prefix("min:") {
                        min = Some(text.trim().to_string());
                    } else if let Some(text) = line.strip_prefix("max:") {
                        max = Some(text.trim().to_string());
                    } else if let Some(text) = line.strip_prefix("error:") {
                        error = Some(text.trim().to_string());
                    } else if let Some(text) = line.strip_prefix("values:") {
                        case.values = words(text, number)
                            .iter()
                            .map(|word| {
                                if word.starts_with('"')
                                    || word.parse::<f64>().is_ok()
                                    || word == "true"
                                    || word == "false"
                                {
                                    render_value(&attr_value(word, number))
                                } else {
                                    word.clone()
                                }
                            })
                            .collect();
                    } else if let Some(text) = line.strip_prefix("attrs ") {
                        let parts = words(text, number);
                        assert!(parts.len() >= 2, "line {number}: attrs <trace> <span> [key=value ...]");
                        let mut rendered: Vec<String> = attributes(&parts[2..], number)
                            .iter()
                            .map(|(key, value)| render_pair(key, value))
                            .collect();
                        rendered.sort();
                        case.span_attributes.push((parts[0].clone(), parts[1].clone(), rendered));
                    } else {
                        let parts = words(&line, number);
                        let mut spans = Vec::new();
                        let mut matched = None;
                        let mut pairs = Vec::new();
                        for part in &parts[1..] {
                            if part.contains('=') {
                                let (key, value) = key_value(part, number);
                                if key == "matched" {
                                    matched =
                                        Some(value.parse().unwrap_or_else(|_| panic!("line {number}: bad matched")));
                                } else {
                                    pairs.push(render_pair(&key, &attr_value(&value, number)));
                                }
                            } else {
                                spans.push(part.clone());
                            }
                        }
                        let matched = matched.unwrap_or(spans.len());
                        case.spansets.push(render_spanset(&parts[0], &spans, matched, &pairs));
                    }
                }
                case.what = match command {
                    "search" => {
                        assert!(
                            query.is_some() || tags.is_some() || min.is_some() || max.is_some(),
                            "line {number}: search without query"
                        );
                        What::Search { query, tags, min, max }
                    }
                    "search_fail" => What::Fail {
                        query,
                        tags,
                        min,
                        max,
                        error: error.unwrap_or_else(|| panic!("line {number}: search_fail without error")),
                    },
                    _ => What::TagValues { tag: tag.unwrap_or_else(|| unreachable!()), query },
                };
                section.cases.push(case);
            }
            other => panic!("line {number}: unknown command {other:?}"),
        }
    }
    sections
}

/// Checks that a query's canonical text parses back to itself.
fn check_canonical(query: &str) -> Result<(), String> {
    let Ok(parsed) = parse(query) else { return Ok(()) };
    let printed = parsed.to_string();
    match parse(&printed) {
        Ok(again) if again.to_string() == printed => Ok(()),
        Ok(again) => Err(format!("canonical text {printed:?} prints back as {:?}", again.to_string())),
        Err(problem) => Err(format!("canonical text {printed:?} does not parse: {problem}")),
    }
}

/// Runs one case; the problem, if any.
fn run(storage: &Storage, names: &Names, case: &Case) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    match &case.what {
        What::Fail { query, tags, min, max, error } => {
            let parsed = match query {
                Some(text) => parse(text),
                None => query_from_tags(tags.as_deref().unwrap_or(""), min.as_deref(), max.as_deref()),
            };
            let outcome = parsed.map_err(|e| e.to_string()).and_then(|parsed| {
                let request =
                    SearchRequest { range: case.range, limit: case.limit, spans_per_spanset: case.spss, deadline };
                search(storage.traces(), TENANT, &parsed, &request).map_err(|e| e.to_string())
            });
            match outcome {
                Ok(response) => Err(format!("expected an error, got {} traces", response.traces.len())),
                Err(message) if message.contains(error.as_str()) => Ok(()),
                Err(message) => Err(format!("error {message:?} lacks {error:?}")),
            }
        }
        What::TagValues { tag, query } => {
            let parsed = match query {
                Some(text) => {
                    check_canonical(text)?;
                    Some(parse(text).map_err(|e| e.to_string())?)
                }
                None => None,
            };
            let values = tag_values(storage.traces(), TENANT, tag, parsed.as_ref(), case.range, case.limit, deadline)
                .map_err(|e| e.to_string())?;
            let got: Vec<String> = values.iter().map(render_tag_value).collect();
            if got == case.values {
                Ok(())
            } else {
                Err(format!("values differ:\n  got      {got:?}\n  expected {:?}", case.values))
            }
        }
        What::Search { query, tags, min, max } => {
            let parsed = match query {
                Some(text) => {
                    check_canonical(text)?;
                    parse(text).map_err(|e| e.to_string())?
                }
                None => query_from_tags(tags.as_deref().unwrap_or(""), min.as_deref(), max.as_deref())
                    .map_err(|e| e.to_string())?,
            };
            let request =
                SearchRequest { range: case.range, limit: case.limit, spans_per_spanset: case.spss, deadline };
            let response = search(storage.traces(), TENANT, &parsed, &request).map_err(|e| e.to_string())?;
            check_trace_fields(storage, &response.traces)?;
            let mut got = Vec::new();
            for trace in &response.traces {
                let trace_name = names.trace(&trace.trace_id);
                for set in &trace.span_sets {
                    let spans: Vec<String> =
                        set.spans.iter().map(|span| names.span(&trace.trace_id, &span.span_id)).collect();
                    let attributes: Vec<String> =
                        set.attributes.iter().map(|(key, value)| render_pair(key, value)).collect();
                    got.push(render_spanset(&trace_name, &spans, set.matched, &attributes));
                }
            }
            if got != case.spansets {
                return Err(format!("spansets differ:\n  got      {got:#?}\n  expected {:#?}", case.spansets));
            }
            for (trace_name, span_name, expected) in &case.span_attributes {
                let span = response
                    .traces
                    .iter()
                    .filter(|trace| names.trace(&trace.trace_id) == *trace_name)
                    .flat_map(|trace| {
                        trace.span_sets.iter().flat_map(move |set| set.spans.iter().map(move |span| (trace, span)))
                    })
                    .find(|(trace, span)| names.span(&trace.trace_id, &span.span_id) == *span_name)
                    .map(|(_, span)| span)
                    .ok_or_else(|| format!("span {trace_name} {span_name} is not in the answer"))?;
                let mut got: Vec<String> = span.attributes.iter().map(|(key, value)| render_pair(key, value)).collect();
                got.sort();
                if got != *expected {
                    return Err(format!(
                        "attributes of {trace_name} {span_name}:\n  got      {got:?}\n  expected {expected:?}"
                    ));
                }
            }
            Ok(())
        }
    }
}

/// Trace-level fields of an answer agree with the stored trace, and spans with their data.
fn check_trace_fields(storage: &Storage, traces: &[TraceMatch]) -> Result<(), String> {
    use tripod_storage::traces::TracesQueryable;
    for found in traces {
        let trace = storage
            .traces()
            .trace(TENANT, &found.trace_id, None)
            .map_err(|e| e.to_string())?
            .ok_or("a returned trace is not stored")?;
        let spans: Vec<&Span> = trace.spans().map(|(_, _, span)| span).collect();
        let start = spans.iter().map(|span| span.start_ns).min().unwrap_or(0);
        let end = spans.iter().map(|span| span.end_ns).max().unwrap_or(0);
        if found.start_ns != start || found.duration_ns != end - start {
            return Err(format!(
                "trace start/duration {}/{} differ from {start}/{}",
                found.start_ns,
                found.duration_ns,
                end - start
            ));
        }
        for set in &found.span_sets {
            for returned in &set.spans {
                let span = spans
                    .iter()
                    .find(|span| span.span_id == returned.span_id)
                    .ok_or("a returned span is not in its trace")?;
                if returned.name != span.name
                    || returned.start_ns != span.start_ns
                    || returned.duration_ns != span.duration_ns()
                {
                    return Err(format!("span {} returned with other fields", returned.name));
                }
            }
        }
    }
    Ok(())
}

fn open_storage(dir: &Path) -> Storage {
    let options = StorageOptions {
        traces: TracesOptions { retention_ns: None, ..TracesOptions::default() },
        ..StorageOptions::default()
    };
    Storage::open(dir, options).unwrap_or_else(|error| panic!("cannot open storage: {error}"))
}

#[test]
fn golden_scripts() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/traceql");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap_or_else(|error| panic!("{}: {error}", folder.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no scripts in {}", folder.display());
    let mut failures = Vec::new();
    let mut cases = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        for section in parse_script(&text) {
            let names = section.load.names();
            cases += section.cases.len();
            for phase in [Phase::Head, Phase::Mixed, Phase::Blocks] {
                let dir = tempfile::tempdir().unwrap();
                let storage = open_storage(dir.path());
                section.load.store(&storage, phase);
                for case in &section.cases {
                    if let Err(problem) = run(&storage, &names, case) {
                        failures.push(format!("{name}:{} ({phase:?}) {problem}", case.line));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} failures in {cases} cases:\n{}", failures.len(), failures.join("\n"));
    assert!(cases >= 80, "only {cases} cases");
    eprintln!("traceql golden scripts: {cases} cases in {} files passed, from the head, blocks and both", files.len());
}

#[test]
fn a_passed_deadline_stops_the_search_and_work_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open_storage(dir.path());
    let mut load = Load::default();
    for (number, line) in
        ["resource api service.name=\"api\"", "trace t at=10s", "span root - api 0ms 10ms server unset \"GET /\""]
            .into_iter()
            .enumerate()
    {
        load.line(&words(line, number + 1), number + 1);
    }
    load.store(&storage, Phase::Blocks);
    let query = parse("{ }").unwrap();
    let mut request =
        SearchRequest { range: NsRange::all(), limit: 20, spans_per_spanset: 3, deadline: Instant::now() };
    let outcome = search(storage.traces(), TENANT, &query, &request);
    assert!(matches!(outcome, Err(super::TraceqlError::Timeout)), "{outcome:?}");
    request.deadline = Instant::now() + Duration::from_secs(60);
    let response = search(storage.traces(), TENANT, &query, &request).unwrap();
    assert_eq!(response.traces.len(), 1);
    let metrics = response.metrics;
    assert!(
        metrics.inspected_traces >= 1 && metrics.inspected_spans >= 1 && metrics.inspected_bytes > 0,
        "{metrics:?}"
    );
    assert_eq!(metrics.total_blocks, 1, "{metrics:?}");
}

/// A small xorshift generator, for the randomised comparison below.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

fn random_condition(random: &mut Random) -> String {
    let value = random.pick(&["0", "1", "2", "3", "1.5", "\"1\"", "true", "-1"]);
    let op = random.pick(&["=", "!=", ">", ">=", "<", "<="]);
    match random.below(14) {
        0 => format!(".a {op} {value}"),
        1 => format!("span.a {op} {value}"),
        2 => format!("resource.r {op} {}", random.below(4)),
        3 => format!(".r {op} {value}"),
        4 => format!("name {} \"{}\"", random.pick(&["=", "!=", "=~", "!~"]), random.pick(&["a", "b", "a|b", "c.*"])),
        5 => format!("status {} {}", random.pick(&["=", "!="]), random.pick(&["error", "ok", "unset"])),
        6 => format!("kind {} {}", random.pick(&["=", "!="]), random.pick(&["server", "client", "internal"])),
        7 => format!("duration {op} {}ms", random.below(100)),
        8 => format!(".arr {op} {value}"),
        9 => format!(".a {} nil", random.pick(&["=", "!="])),
        10 => "span.flag".to_string(),
        11 => format!("resource.service.name = \"s{}\"", random.below(3)),
        12 => format!("traceDuration {op} {}ms", random.below(3000)),
        _ => format!(".missing {op} {value}"),
    }
}

fn random_expression(random: &mut Random, depth: usize) -> String {
    if depth == 0 || random.below(3) == 0 {
        return random_condition(random);
    }
    match random.below(3) {
        0 => format!("({} && {})", random_expression(random, depth - 1), random_expression(random, depth - 1)),
        1 => format!("({} || {})", random_expression(random, depth - 1), random_expression(random, depth - 1)),
        _ => format!("!({})", random_expression(random, depth - 1)),
    }
}

fn random_spanset(random: &mut Random, depth: usize) -> String {
    if depth == 0 || random.below(3) == 0 {
        return if random.below(8) == 0 { "{ }".into() } else { format!("{{ {} }}", random_expression(random, 2)) };
    }
    let op = random
        .pick(&["&&", "||", ">", ">>", "<", "<<", "~", "!>", "!>>", "!<", "!<<", "!~", "&>", "&>>", "&<", "&<<", "&~"]);
    format!("({} {op} {})", random_spanset(random, depth - 1), random_spanset(random, depth - 1))
}

/// Every query finds, through the store's push-down and the scan, exactly the traces that
/// evaluating it over every stored trace finds: pushed-down conditions never lose a match.
#[test]
fn push_down_never_loses_a_match() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open_storage(dir.path());
    let mut random = Random(0x2545_f491_4f6c_dd1d);
    let resources: Vec<Resource> = (0..3)
        .map(|i| Resource {
            attributes: vec![
                ("service.name".into(), AttrValue::String(format!("s{i}"))),
                ("r".into(), AttrValue::Int(i as i64)),
            ],
            dropped_attributes_count: 0,
        })
        .collect();
    let values = [
        AttrValue::Int(0),
        AttrValue::Int(1),
        AttrValue::Int(2),
        AttrValue::Double(1.5),
        AttrValue::String("1".into()),
        AttrValue::Bool(true),
    ];
    for t in 0..80u64 {
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&(t + 1).to_be_bytes());
        let count = 1 + random.below(6);
        let mut batch: Vec<ResourceSpans> = Vec::new();
        for i in 0..count {
            let mut attributes = Vec::new();
            if random.below(3) > 0 {
                attributes.push(("a".to_string(), values[random.below(values.len())].clone()));
            }
            if random.below(3) == 0 {
                let elements = (0..random.below(3)).map(|_| AttrValue::Int(random.below(4) as i64)).collect();
                attributes.push(("arr".to_string(), AttrValue::Array(elements)));
            }
            if random.below(2) == 0 {
                attributes.push(("flag".to_string(), AttrValue::Bool(random.below(2) == 0)));
            }
            let start_ns = 1_000_000_000_000 + t as i64 * 1_000_000_000 + random.below(50) as i64 * 1_000_000;
            let span = Span {
                trace_id,
                span_id: ((t << 8) + i as u64 + 1).to_be_bytes(),
                parent_span_id: (i > 0 && random.below(5) > 0)
                    .then(|| ((t << 8) + random.below(i) as u64 + 1).to_be_bytes()),
                name: random.pick(&["a", "b", "c"]).to_string(),
                kind: [SpanKind::Server, SpanKind::Client, SpanKind::Internal][random.below(3)],
                start_ns,
                end_ns: start_ns + random.below(100) as i64 * 1_000_000,
                status: SpanStatus { code: StatusCode::ALL[random.below(3)], message: String::new() },
                attributes,
                ..Span::default()
            };
            let resource = resources[random.below(3)].clone();
            match batch.iter_mut().find(|group| group.resource == resource) {
                Some(group) => group.scope_spans[0].spans.push(span),
                None => batch.push(ResourceSpans {
                    resource,
                    schema_url: String::new(),
                    scope_spans: vec![ScopeSpans { spans: vec![span], ..ScopeSpans::default() }],
                }),
            }
        }
        storage.traces().append(TENANT, &batch).unwrap();
        if t == 40 {
            storage.traces().flush_all().unwrap();
        }
    }
    use tripod_storage::traces::{SpanFilter, TracesQueryable};
    let everything = storage.traces().search(TENANT, &SpanFilter::default(), NsRange::all(), 10_000).unwrap();
    assert!(everything.complete && everything.traces.len() == 80);
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut checked, mut partial) = (0, 0);
    for round in 0..200 {
        let text = random_spanset(&mut random, 2);
        let text = match random.below(4) {
            0 => format!("{text} | count() > 1"),
            1 => format!("{text} | by(.a) | count() >= 2"),
            _ => text,
        };
        let Ok(query) = parse(&text) else { continue };
        let range =
            if round % 3 == 0 { NsRange::new(1_020_000_000_000, 1_050_000_000_000).unwrap() } else { NsRange::all() };
        let mut expected: Vec<TraceId> = everything
            .traces
            .iter()
            .filter(|trace| !super::eval::evaluate(&super::eval::TraceView::new(trace, range), &query.root).is_empty())
            .map(|trace| trace.trace_id)
            .collect();
        expected.sort();
        let request = SearchRequest { range, limit: 10_000, spans_per_spanset: 3, deadline };
        let mut got: Vec<TraceId> = search(storage.traces(), TENANT, &query, &request)
            .unwrap()
            .traces
            .iter()
            .map(|trace| trace.trace_id)
            .collect();
        got.sort();
        assert_eq!(got, expected, "{text}");
        checked += 1;
        partial += usize::from(!expected.is_empty() && expected.len() < everything.traces.len());
    }
    assert!(checked > 150, "only {checked} random queries parsed");
    assert!(partial > 50, "only {partial} random queries matched some traces but not all");
}
