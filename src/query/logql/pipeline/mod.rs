//! The log pipeline: a query's stages compiled once ([`Pipeline::new`]) and run entry by entry
//! ([`Pipeline::process`]). Line filters drop lines, parsers add labels, label filters drop
//! entries, formatters rewrite the line and labels, `unwrap` takes the entry's sample value.
//!
//! Semantics follow Loki: a stage that fails on an entry sets `__error__` (and
//! `__error_details__`) and the entry goes on, so a query can keep or drop failures with a label
//! filter on `__error__`; a missing label reads as the empty string, except that numeric
//! filters on a missing label pass only for `!=`.

pub mod labels;
pub mod parsers;

use std::net::IpAddr;

use tripod_storage::labels::{Labels, Matcher};
use tripod_storage::logs::LineFilter as StoreLineFilter;

use super::syntax::ast::{
    CompareOp, Conversion, FilterValue, LabelFilter, LabelFilterExpr, LabelFormat, LabelSpec, LineFilterOp, Parser,
    Stage, Unwrap,
};
use super::syntax::lexer::{parse_bytes, parse_go_duration};
use super::template::{Template, TemplateData};
use labels::{Category, LabelsBuilder};
use parsers::{JsonStep, Pattern};

/// The error a label filter sets when a value does not convert.
pub const LABEL_FILTER_ERROR: &str = "LabelFilterErr";
/// The error `unwrap` sets when a value does not convert.
pub const SAMPLE_EXTRACTION_ERROR: &str = "SampleExtractionErr";
/// The error a formatter sets when its template fails on an entry.
pub const TEMPLATE_ERROR: &str = "TemplateFormatErr";

/// Why a pipeline could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineError(pub String);

impl std::fmt::Display for PipelineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PipelineError {}

/// An IP range from `ip("...")`.
#[derive(Debug, Clone)]
enum IpRange {
    Single(IpAddr),
    Span(IpAddr, IpAddr),
    Cidr(IpAddr, u8),
}

impl IpRange {
    fn parse(pattern: &str) -> Result<IpRange, PipelineError> {
        let invalid = || PipelineError(format!("invalid ip pattern {pattern:?}"));
        if let Some((address, bits)) = pattern.split_once('/') {
            let address: IpAddr = address.trim().parse().map_err(|_| invalid())?;
            let bits: u8 = bits.trim().parse().map_err(|_| invalid())?;
            return Ok(IpRange::Cidr(address, bits));
        }
        if let Some((from, to)) = pattern.split_once('-') {
            let from: IpAddr = from.trim().parse().map_err(|_| invalid())?;
            let to: IpAddr = to.trim().parse().map_err(|_| invalid())?;
            return Ok(IpRange::Span(from, to));
        }
        Ok(IpRange::Single(pattern.trim().parse().map_err(|_| invalid())?))
    }

    fn contains(&self, address: IpAddr) -> bool {
        fn bits(address: IpAddr) -> (u128, u8) {
            match address {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
                IpAddr::V6(v6) => (u128::from(v6), 128),
            }
        }
        match *self {
            IpRange::Single(single) => single == address,
            IpRange::Span(from, to) => {
                from.is_ipv4() == address.is_ipv4() && bits(from).0 <= bits(address).0 && bits(address).0 <= bits(to).0
            }
            IpRange::Cidr(network, prefix) => {
                if network.is_ipv4() != address.is_ipv4() {
                    return false;
                }
                let (network, width) = bits(network);
                let (address, _) = bits(address);
                let prefix = prefix.min(width);
                if prefix == 0 {
                    return true;
                }
                let shift = u32::from(width - prefix);
                network >> shift == address >> shift
            }
        }
    }
}

/// Every IP address written in `line` (IPv4 dotted quads and IPv6 forms).
fn addresses_in(line: &str) -> impl Iterator<Item = IpAddr> + '_ {
    line.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':')).filter(|token| token.len() >= 2).flat_map(
        |token| {
            // The token as a whole (IPv6), else its dotted-decimal runs (IPv4, with or without a
            // port after a colon).
            let whole: Option<IpAddr> = token.parse().ok();
            let runs = token
                .split(|c: char| !(c.is_ascii_digit() || c == '.'))
                .filter(move |_| whole.is_none())
                .filter_map(|run| run.trim_matches('.').parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4));
            whole.into_iter().chain(runs)
        },
    )
}

/// A compiled line filter: any of the values (for a negative filter: none of them).
#[derive(Debug, Clone)]
enum LineTest {
    Contains(String),
    Regex(regex::Regex),
    Pattern(Pattern),
    Ip(IpRange),
}

impl LineTest {
    fn matches(&self, line: &str) -> bool {
        match self {
            LineTest::Contains(needle) => line.contains(needle.as_str()),
            LineTest::Regex(regex) => regex.is_match(line),
            LineTest::Pattern(pattern) => pattern.matches(line),
            LineTest::Ip(range) => addresses_in(line).any(|address| range.contains(address)),
        }
    }
}

/// A compiled label filter.
#[derive(Debug, Clone)]
enum LabelTest {
    Match(Matcher),
    Number { name: String, op: CompareOp, value: f64 },
    Duration { name: String, op: CompareOp, seconds: f64 },
    Bytes { name: String, op: CompareOp, bytes: f64 },
    Ip { name: String, negated: bool, range: IpRange },
    And(Box<LabelTest>, Box<LabelTest>),
    Or(Box<LabelTest>, Box<LabelTest>),
}

impl LabelTest {
    fn compile(expr: &LabelFilterExpr) -> Result<LabelTest, PipelineError> {
        Ok(match expr {
            LabelFilterExpr::And(left, right) => {
                LabelTest::And(Box::new(LabelTest::compile(left)?), Box::new(LabelTest::compile(right)?))
            }
            LabelFilterExpr::Or(left, right) => {
                LabelTest::Or(Box::new(LabelTest::compile(left)?), Box::new(LabelTest::compile(right)?))
            }
            LabelFilterExpr::Leaf(LabelFilter::Match(matcher)) => LabelTest::Match(matcher.clone()),
            LabelFilterExpr::Leaf(LabelFilter::Number { name, op, value }) => {
                LabelTest::Number { name: name.clone(), op: *op, value: *value }
            }
            LabelFilterExpr::Leaf(LabelFilter::Duration { name, op, seconds, .. }) => {
                LabelTest::Duration { name: name.clone(), op: *op, seconds: *seconds }
            }
            LabelFilterExpr::Leaf(LabelFilter::Bytes { name, op, bytes, .. }) => {
                LabelTest::Bytes { name: name.clone(), op: *op, bytes: *bytes }
            }
            LabelFilterExpr::Leaf(LabelFilter::Ip { name, negated, pattern }) => {
                LabelTest::Ip { name: name.clone(), negated: *negated, range: IpRange::parse(pattern)? }
            }
        })
    }

    /// Adds the names of the labels the test reads to `names`.
    fn label_names(&self, names: &mut Vec<String>) {
        match self {
            LabelTest::And(left, right) | LabelTest::Or(left, right) => {
                left.label_names(names);
                right.label_names(names);
            }
            LabelTest::Match(matcher) => names.push(matcher.name().to_string()),
            LabelTest::Number { name, .. }
            | LabelTest::Duration { name, .. }
            | LabelTest::Bytes { name, .. }
            | LabelTest::Ip { name, .. } => names.push(name.clone()),
        }
    }

    /// Whether the entry passes; a value that does not convert sets the error and passes.
    fn test(&self, labels: &mut LabelsBuilder) -> bool {
        match self {
            LabelTest::And(left, right) => {
                let left = left.test(labels);
                right.test(labels) && left
            }
            LabelTest::Or(left, right) => {
                let left = left.test(labels);
                right.test(labels) || left
            }
            LabelTest::Match(matcher) => matcher.matches(labels.get(matcher.name()).unwrap_or("")),
            LabelTest::Number { name, op, value } => {
                Self::compare(labels, name, *op, *value, |text| text.trim().parse::<f64>().ok(), "number")
            }
            LabelTest::Duration { name, op, seconds } => Self::compare(
                labels,
                name,
                *op,
                *seconds,
                |text| parse_go_duration(text.trim()).map(|ns| ns as f64 / 1e9),
                "duration",
            ),
            LabelTest::Bytes { name, op, bytes } => {
                Self::compare(labels, name, *op, *bytes, |text| parse_bytes(text.trim()), "byte size")
            }
            LabelTest::Ip { name, negated, range } => {
                let inside = labels
                    .get(name)
                    .and_then(|value| value.trim().parse::<IpAddr>().ok())
                    .is_some_and(|address| range.contains(address));
                inside != *negated
            }
        }
    }

    fn compare(
        labels: &mut LabelsBuilder,
        name: &str,
        op: CompareOp,
        limit: f64,
        convert: impl Fn(&str) -> Option<f64>,
        kind: &str,
    ) -> bool {
        let Some(text) = labels.get(name) else {
            return op == CompareOp::NotEqual;
        };
        match convert(text) {
            Some(value) => op.compare(value, limit),
            None => {
                let details = format!("cannot convert {text:?} of label {name} to a {kind}");
                labels.set_error(LABEL_FILTER_ERROR, details);
                true
            }
        }
    }
}

/// One compiled stage.
#[derive(Debug)]
enum Step {
    /// Passes when any test matches (`negated`: when none does).
    Line {
        negated: bool,
        tests: Vec<LineTest>,
    },
    /// `json` without parameters; `wanted`: the only labels later stages read, when known.
    JsonAll {
        wanted: Option<Vec<String>>,
    },
    /// `json name="path", ...`.
    JsonFields(Vec<(String, Vec<JsonStep>)>),
    Logfmt {
        strict: bool,
        keep_empty: bool,
        params: Option<Vec<(String, String)>>,
    },
    Regexp(regex::Regex),
    Pattern(Pattern),
    Unpack,
    Labels(LabelTest),
    LineFormat(Template),
    LabelFormat(Vec<(String, FormatSource)>),
    Drop(Vec<LabelSpec>),
    Keep(Vec<LabelSpec>),
    Decolorize,
    Unwrap(Unwrap),
}

/// What a `label_format` assignment takes its value from.
#[derive(Debug)]
enum FormatSource {
    Label(String),
    Template(Template),
}

/// A compiled pipeline.
#[derive(Debug)]
pub struct Pipeline {
    steps: Vec<Step>,
    /// Whether any step can change labels or the line (if not, entries pass through as stored).
    only_line_filters: bool,
}

/// What a processed entry turned into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Filtered out.
    Dropped,
    /// Kept: the line is in `state.line()` and the labels in `state.labels`.
    Kept,
}

/// Per-thread working state, reused from entry to entry.
#[derive(Debug, Default)]
pub struct PipelineState {
    pub labels: LabelsBuilder,
    /// The line after formatting, when a stage rewrote it.
    line: Option<String>,
    /// The unwrapped value, when the pipeline has `unwrap` and it converted.
    pub value: Option<f64>,
    /// Scratch for templates.
    scratch: String,
    /// Scratch for parsers: the fields of the current line.
    fields: Vec<(String, String)>,
}

impl PipelineState {
    /// The entry's line after the pipeline (`original` when no stage rewrote it).
    pub fn line<'a>(&'a self, original: &'a str) -> &'a str {
        self.line.as_deref().unwrap_or(original)
    }
}

fn compile_line_filter(op: LineFilterOp, values: &[FilterValue]) -> Result<Step, PipelineError> {
    let mut tests = Vec::with_capacity(values.len());
    for value in values {
        tests.push(match (op, value) {
            (_, FilterValue::Ip(pattern)) => LineTest::Ip(IpRange::parse(pattern)?),
            (LineFilterOp::Contains | LineFilterOp::NotContains, FilterValue::Text(text)) => {
                LineTest::Contains(text.clone())
            }
            (LineFilterOp::Matches | LineFilterOp::NotMatches, FilterValue::Text(text)) => LineTest::Regex(
                regex::Regex::new(text)
                    .map_err(|error| PipelineError(format!("invalid regular expression {text:?}: {error}")))?,
            ),
            (LineFilterOp::Pattern | LineFilterOp::NotPattern, FilterValue::Text(text)) => {
                LineTest::Pattern(Pattern::new(text, false).map_err(PipelineError)?)
            }
        });
    }
    Ok(Step::Line { negated: op.is_negative(), tests })
}

fn template(text: &str) -> Result<Template, PipelineError> {
    Template::parse(text).map_err(|error| PipelineError(format!("invalid template {text:?}: {error}")))
}

impl Pipeline {
    /// Compiles stages. `unwrap` is allowed only where a caller passes `allow_unwrap`.
    pub fn new(stages: &[Stage], allow_unwrap: bool) -> Result<Pipeline, PipelineError> {
        let mut steps = Vec::with_capacity(stages.len());
        for stage in stages {
            steps.push(match stage {
                Stage::LineFilter(filter) => compile_line_filter(filter.op, &filter.values)?,
                Stage::Parser(Parser::Json(params)) if params.is_empty() => Step::JsonAll { wanted: None },
                Stage::Parser(Parser::Json(params)) => {
                    let mut fields = Vec::with_capacity(params.len());
                    for (name, expression) in params {
                        let path = parsers::parse_json_path(expression)
                            .ok_or_else(|| PipelineError(format!("invalid json expression {expression:?}")))?;
                        fields.push((name.clone(), path));
                    }
                    Step::JsonFields(fields)
                }
                Stage::Parser(Parser::Logfmt { strict, keep_empty, params }) => Step::Logfmt {
                    strict: *strict,
                    keep_empty: *keep_empty,
                    params: (!params.is_empty()).then(|| params.clone()),
                },
                Stage::Parser(Parser::Regexp(text)) => Step::Regexp(
                    regex::Regex::new(text)
                        .map_err(|error| PipelineError(format!("invalid regular expression {text:?}: {error}")))?,
                ),
                Stage::Parser(Parser::Pattern(text)) => Step::Pattern(Pattern::new(text, true).map_err(PipelineError)?),
                Stage::Parser(Parser::Unpack) => Step::Unpack,
                Stage::LabelFilter(expr) => Step::Labels(LabelTest::compile(expr)?),
                Stage::LineFormat(text) => Step::LineFormat(template(text)?),
                Stage::LabelFormat(formats) => {
                    let mut compiled = Vec::with_capacity(formats.len());
                    for format in formats {
                        compiled.push(match format {
                            LabelFormat::Rename { dst, src } => (dst.clone(), FormatSource::Label(src.clone())),
                            LabelFormat::Template { dst, template: text } => {
                                (dst.clone(), FormatSource::Template(template(text)?))
                            }
                        });
                    }
                    Step::LabelFormat(compiled)
                }
                Stage::Drop(specs) => Step::Drop(specs.clone()),
                Stage::Keep(specs) => Step::Keep(specs.clone()),
                Stage::Decolorize => Step::Decolorize,
                Stage::Unwrap(unwrap) => {
                    if !allow_unwrap {
                        return Err(PipelineError(
                            "unwrap is only allowed in a range aggregation that takes values".into(),
                        ));
                    }
                    Step::Unwrap(unwrap.clone())
                }
            });
        }
        let only_line_filters = steps.iter().all(|step| matches!(step, Step::Line { .. }));
        Ok(Pipeline { steps, only_line_filters })
    }

    /// Tells the parsers that only the labels `names` (and `__error__`) are read after the
    /// pipeline, as when a range aggregation groups `by` them: a parser may then skip fields
    /// no later stage reads. Stages that read labels widen the set; a template, which may read
    /// any label, keeps every parser before it whole.
    pub fn restrict_output(&mut self, names: &[String]) {
        let mut wanted: Option<Vec<String>> = Some(names.to_vec());
        for step in self.steps.iter_mut().rev() {
            match step {
                Step::JsonAll { wanted: restriction } => *restriction = wanted.clone(),
                Step::Labels(test) => {
                    if let Some(names) = &mut wanted {
                        test.label_names(names);
                    }
                }
                Step::Unwrap(unwrap) => {
                    if let Some(names) = &mut wanted {
                        names.push(unwrap.label.clone());
                    }
                }
                Step::LineFormat(_) | Step::LabelFormat(_) => wanted = None,
                // Dropping or keeping labels reads none beyond those it names, which matter
                // only if wanted anyway; parsers and line stages read no labels.
                Step::Line { .. }
                | Step::JsonFields(_)
                | Step::Logfmt { .. }
                | Step::Regexp(_)
                | Step::Pattern(_)
                | Step::Unpack
                | Step::Drop(_)
                | Step::Keep(_)
                | Step::Decolorize => {}
            }
        }
    }

    /// Whether every stage is a line filter (labels stay the stream's).
    pub fn only_line_filters(&self) -> bool {
        self.only_line_filters
    }

    /// The filters the store can apply itself (and skip blocks with): the leading single-value
    /// `|=` and `!=` filters, before any stage that can rewrite the line.
    pub fn store_filters(&self) -> Vec<StoreLineFilter> {
        let mut out = Vec::new();
        for step in &self.steps {
            match step {
                Step::Line { negated, tests } if tests.len() == 1 => match &tests[0] {
                    LineTest::Contains(needle) if !needle.is_empty() => out.push(if *negated {
                        StoreLineFilter::NotContains(needle.clone())
                    } else {
                        StoreLineFilter::Contains(needle.clone())
                    }),
                    _ => {}
                },
                Step::Line { .. } => {}
                Step::LineFormat(_) | Step::Unpack | Step::Decolorize => break,
                _ => {}
            }
        }
        out
    }

    /// Runs the pipeline over one entry.
    pub fn process(
        &self,
        t_ns: i64,
        line: &str,
        stream: &Labels,
        metadata: &Labels,
        state: &mut PipelineState,
    ) -> Outcome {
        state.line = None;
        state.value = None;
        state.labels.reset(stream, metadata);
        for step in &self.steps {
            let current = state.line.as_deref().unwrap_or(line);
            match step {
                Step::Line { negated, tests } => {
                    let any = tests.iter().any(|test| test.matches(current));
                    if any == *negated {
                        return Outcome::Dropped;
                    }
                }
                Step::JsonAll { wanted } => {
                    parsers::json_flatten(current, wanted.as_deref(), &mut state.labels, &mut state.fields)
                }
                Step::JsonFields(fields) => parsers::json_fields(current, fields, &mut state.labels),
                Step::Logfmt { strict, keep_empty, params } => {
                    parsers::logfmt(current, *strict, *keep_empty, params.as_deref(), &mut state.labels)
                }
                Step::Regexp(regex) => parsers::regexp(current, regex, &mut state.labels),
                Step::Pattern(pattern) => parsers::pattern(current, pattern, &mut state.labels),
                Step::Unpack => {
                    if let Some(entry) = parsers::unpack(current, &mut state.labels) {
                        state.line = Some(entry);
                    }
                }
                Step::Labels(test) => {
                    if !test.test(&mut state.labels) {
                        return Outcome::Dropped;
                    }
                }
                Step::LineFormat(template) => {
                    let mut out = std::mem::take(&mut state.scratch);
                    out.clear();
                    let rendered = render(template, &state.labels, current, t_ns, &mut out);
                    match rendered {
                        Ok(()) => {
                            state.scratch = state.line.take().unwrap_or_default();
                            state.line = Some(out);
                        }
                        Err(details) => {
                            state.labels.set_error(TEMPLATE_ERROR, details);
                            state.scratch = out;
                        }
                    }
                }
                Step::LabelFormat(formats) => {
                    // Every template sees the labels as they were before this stage.
                    let mut results: Vec<(&str, Option<String>, Option<&str>)> = Vec::with_capacity(formats.len());
                    for (dst, source) in formats {
                        match source {
                            FormatSource::Label(src) => {
                                let value = state.labels.get(src).map(str::to_string);
                                results.push((dst, value, Some(src)));
                            }
                            FormatSource::Template(template) => {
                                let mut out = String::new();
                                match render(template, &state.labels, current, t_ns, &mut out) {
                                    Ok(()) => results.push((dst, Some(out), None)),
                                    Err(details) => {
                                        state.labels.set_error(TEMPLATE_ERROR, details);
                                    }
                                }
                            }
                        }
                    }
                    for (dst, value, renamed_from) in results {
                        if let Some(src) = renamed_from
                            && src != dst
                        {
                            state.labels.remove(src);
                        }
                        match value {
                            Some(value) => state.labels.set(dst, value, Category::Parsed),
                            None => state.labels.remove(dst),
                        }
                    }
                }
                Step::Drop(specs) => {
                    state.labels.retain(|name, value| !specs.iter().any(|spec| spec_matches(spec, name, value)));
                }
                Step::Keep(specs) => {
                    state.labels.retain(|name, value| specs.iter().any(|spec| spec_matches(spec, name, value)));
                }
                Step::Decolorize => {
                    if current.contains('\x1b') {
                        state.line = Some(without_ansi_escapes(current));
                    }
                }
                Step::Unwrap(unwrap) => {
                    let converted = match state.labels.get(&unwrap.label) {
                        None => Err(format!("label {} not found", unwrap.label)),
                        Some(text) => convert(text, unwrap.conversion)
                            .ok_or_else(|| format!("cannot convert {text:?} of label {} to a number", unwrap.label)),
                    };
                    match converted {
                        Ok(value) => state.value = Some(value),
                        Err(details) => state.labels.set_error(SAMPLE_EXTRACTION_ERROR, details),
                    }
                    state.labels.remove(&unwrap.label);
                }
            }
        }
        Outcome::Kept
    }
}

/// The length of the ANSI escape sequence at the start of `bytes` (which starts with ESC), or
/// 0 if none starts there: a CSI sequence (ESC `[`, parameter bytes `0-9;?`, intermediate bytes
/// space to `/`, a final byte `@` to `~`), or a two-byte escape (ESC, then `@` to `Z` or `\` to
/// `_`).
fn ansi_escape_len(bytes: &[u8]) -> usize {
    match bytes.get(1) {
        Some(b'[') => {
            let parameters = bytes[2..].iter().take_while(|b| b.is_ascii_digit() || matches!(b, b';' | b'?')).count();
            let intermediates = bytes[2 + parameters..].iter().take_while(|b| (b' '..=b'/').contains(b)).count();
            match bytes.get(2 + parameters + intermediates) {
                Some(b'@'..=b'~') => 3 + parameters + intermediates,
                _ => 0,
            }
        }
        Some(b'@'..=b'Z' | b'\\'..=b'_') => 2,
        _ => 0,
    }
}

/// `line` without its ANSI escape sequences (colours, cursor moves).
fn without_ansi_escapes(line: &str) -> String {
    let bytes = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let mut kept_from = 0;
    let mut at = 0;
    while let Some(found) = bytes[at..].iter().position(|&byte| byte == 0x1b) {
        let escape = at + found;
        let length = ansi_escape_len(&bytes[escape..]);
        if length == 0 {
            at = escape + 1;
            continue;
        }
        // Escapes are ASCII: the cuts fall on character boundaries.
        out.push_str(&line[kept_from..escape]);
        kept_from = escape + length;
        at = kept_from;
    }
    out.push_str(&line[kept_from..]);
    out
}

/// Renders a template over the entry's labels and line; the error's words on failure.
fn render(template: &Template, labels: &LabelsBuilder, line: &str, t_ns: i64, out: &mut String) -> Result<(), String> {
    let pairs = labels.pairs();
    let data = TemplateData { labels: &pairs, line, timestamp_ns: t_ns };
    template.render(&data, out).map_err(|error| error.to_string())
}

fn spec_matches(spec: &LabelSpec, name: &str, value: &str) -> bool {
    spec.name == name && spec.matcher.as_ref().is_none_or(|matcher| matcher.matches(value))
}

/// An unwrapped value as a number.
fn convert(text: &str, conversion: Conversion) -> Option<f64> {
    let text = text.trim();
    match conversion {
        Conversion::Plain => text.parse().ok(),
        Conversion::Duration => parse_go_duration(text).map(|ns| ns as f64 / 1e9),
        Conversion::Bytes => parse_bytes(text),
    }
}

#[cfg(test)]
mod tests;
