//! Parsers for what scrape targets expose: the Prometheus text format 0.0.4 (lenient, as
//! Prometheus reads it) and OpenMetrics 1.0 (strict: structure, grouping, per-type values,
//! exemplars, `# EOF`), checked against the OpenMetrics project's parser test suite.

use std::collections::{HashMap, HashSet};

use tripod_storage::labels::Labels;
use tripod_storage::metrics::{Exemplar, MetricMetadata, MetricType};

/// One sample as exposed.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapedSample {
    /// The sample's name (`http_requests_total`, `latency_bucket`).
    pub name: String,
    /// Labels other than the name, in exposition order.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// The exposed timestamp, in milliseconds.
    pub t_ms: Option<i64>,
    pub exemplar: Option<Exemplar>,
}

/// Everything a scrape returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    pub samples: Vec<ScrapedSample>,
    /// Metadata per metric family name.
    pub metadata: Vec<(String, MetricMetadata)>,
}

/// Where and why parsing stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

fn error<T>(line: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError { line, message: message.into() })
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

fn is_label_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_label_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// A cursor over one line.
struct Cursor<'a> {
    text: &'a str,
    position: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.position).copied()
    }

    fn rest(&self) -> &'a str {
        &self.text[self.position..]
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    fn name(&mut self, start: fn(u8) -> bool, more: fn(u8) -> bool) -> Option<&'a str> {
        let begin = self.position;
        if !self.peek().is_some_and(start) {
            return None;
        }
        while self.peek().is_some_and(more) {
            self.position += 1;
        }
        Some(&self.text[begin..self.position])
    }

    /// A double-quoted label value with `\\`, `\"` and `\n` escapes (others kept as they are).
    fn quoted(&mut self) -> Option<String> {
        if !self.eat(b'"') {
            return None;
        }
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((offset, c)) = chars.next() {
            match c {
                '"' => {
                    self.position += offset + 1;
                    return Some(out);
                }
                '\\' => match chars.next() {
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, '"')) => out.push('"'),
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, other)) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => return None,
                },
                '\n' => return None,
                other => out.push(other),
            }
        }
        None
    }

    /// `{name="value", ...}`; `trailing_comma` allows a comma before `}`.
    fn labels(&mut self, trailing_comma: bool, line: usize) -> Result<Vec<(String, String)>, ParseError> {
        let mut labels = Vec::new();
        if !self.eat(b'{') {
            return Ok(labels);
        }
        if self.eat(b'}') {
            return Ok(labels);
        }
        loop {
            let Some(name) = self.name(is_label_start, is_label_char) else {
                return error(line, "expected a label name");
            };
            if !self.eat(b'=') {
                return error(line, format!("expected '=' after label name {name:?}"));
            }
            let Some(value) = self.quoted() else {
                return error(line, format!("expected a quoted value for label {name:?}"));
            };
            if labels.iter().any(|(n, _)| n == name) {
                return error(line, format!("duplicate label {name:?}"));
            }
            labels.push((name.to_string(), value));
            if self.eat(b'}') {
                return Ok(labels);
            }
            if !self.eat(b',') {
                return error(line, "expected ',' or '}' after a label");
            }
            if self.eat(b'}') {
                if trailing_comma {
                    return Ok(labels);
                }
                return error(line, "trailing comma in label set");
            }
        }
    }
}

/// A value: a decimal float or integer, `NaN`, `+Inf`, `-Inf` (hex and other radixes refused).
fn parse_value(token: &str) -> Option<f64> {
    match token {
        "NaN" => return Some(f64::NAN),
        "+Inf" | "Inf" | "+inf" | "inf" => return Some(f64::INFINITY),
        "-Inf" | "-inf" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    let digits = token.strip_prefix(['+', '-']).unwrap_or(token);
    let mut seen_digit = false;
    let mut seen_dot = false;
    let mut seen_exponent = false;
    let bytes = digits.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'0'..=b'9' => seen_digit = true,
            b'.' if !seen_dot && !seen_exponent => seen_dot = true,
            b'e' | b'E' if seen_digit && !seen_exponent => {
                seen_exponent = true;
                if matches!(bytes.get(i + 1), Some(b'+' | b'-')) {
                    i += 1;
                }
                if !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    return None;
                }
            }
            _ => return None,
        }
        i += 1;
    }
    if !seen_digit {
        return None;
    }
    token.parse().ok()
}

/// An OpenMetrics timestamp: seconds, decimal, finite; returned in milliseconds.
fn parse_seconds(token: &str) -> Option<i64> {
    let seconds = parse_value(token).filter(|v| v.is_finite())?;
    Some((seconds * 1000.0).round() as i64)
}

// ---------------------------------------------------------------------------------------------
// Prometheus text format 0.0.4

fn unescape_help(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn metric_type(text: &str, openmetrics: bool) -> Option<MetricType> {
    Some(match text {
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        "histogram" => MetricType::Histogram,
        "summary" => MetricType::Summary,
        "untyped" if !openmetrics => MetricType::Unknown,
        "unknown" if openmetrics => MetricType::Unknown,
        "gaugehistogram" if openmetrics => MetricType::GaugeHistogram,
        "stateset" if openmetrics => MetricType::StateSet,
        "info" if openmetrics => MetricType::Info,
        _ => return None,
    })
}

/// Parses the Prometheus text format (version 0.0.4).
pub fn parse_prometheus_text(text: &str) -> Result<Exposition, ParseError> {
    let mut out = Exposition::default();
    let mut metadata: HashMap<String, MetricMetadata> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim_start_matches([' ', '\t']);
        if trimmed.trim().is_empty() {
            continue;
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            let mut words = comment.trim_start_matches([' ', '\t']).splitn(3, [' ', '\t']);
            let keyword = words.next().unwrap_or("");
            if keyword != "HELP" && keyword != "TYPE" {
                continue;
            }
            let Some(name) = words.next().filter(|n| !n.is_empty()) else {
                return error(line, format!("{keyword} without a metric name"));
            };
            let rest = words.next().unwrap_or("");
            let entry = metadata.entry(name.to_string()).or_insert_with(|| {
                order.push(name.to_string());
                MetricMetadata { metric_type: MetricType::Unknown, help: String::new(), unit: String::new() }
            });
            if keyword == "HELP" {
                entry.help = unescape_help(rest);
            } else {
                let Some(kind) = metric_type(rest.trim(), false) else {
                    return error(line, format!("unknown metric type {:?}", rest.trim()));
                };
                entry.metric_type = kind;
            }
            continue;
        }
        let mut cursor = Cursor { text: trimmed, position: 0 };
        let Some(name) = cursor.name(is_name_start, is_name_char) else {
            return error(line, "expected a metric name");
        };
        let labels = cursor.labels(true, line)?;
        let mut tokens = cursor.rest().split([' ', '\t']).filter(|t| !t.is_empty());
        let Some(value_token) = tokens.next() else {
            return error(line, format!("{name}: missing value"));
        };
        let Some(value) = parse_value(value_token) else {
            return error(line, format!("{name}: invalid value {value_token:?}"));
        };
        let t_ms = match tokens.next() {
            Some(token) => match token.parse::<i64>() {
                Ok(t) => Some(t),
                Err(_) => return error(line, format!("{name}: invalid timestamp {token:?}")),
            },
            None => None,
        };
        if let Some(extra) = tokens.next() {
            return error(line, format!("{name}: unexpected {extra:?} after the timestamp"));
        }
        out.samples.push(ScrapedSample { name: name.to_string(), labels, value, t_ms, exemplar: None });
    }
    for name in order {
        if let Some(entry) = metadata.remove(&name) {
            out.metadata.push((name, entry));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// OpenMetrics 1.0

/// The sample-name suffixes a family of each type may use.
fn suffixes(kind: MetricType) -> &'static [&'static str] {
    match kind {
        MetricType::Counter => &["_total", "_created"],
        MetricType::Histogram => &["_bucket", "_count", "_sum", "_created"],
        MetricType::GaugeHistogram => &["_bucket", "_gcount", "_gsum"],
        MetricType::Summary => &["", "_count", "_sum", "_created"],
        MetricType::Info => &["_info"],
        MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => &[""],
    }
}

/// A series within a family: its sample name and sorted labels.
type SeriesKey = (String, Vec<(String, String)>);

/// The family being read.
struct Family {
    name: String,
    kind: Option<MetricType>,
    help: Option<String>,
    unit: Option<String>,
    has_samples: bool,
    /// Label groups (labels without `le`/`quantile`) already finished.
    finished_groups: HashSet<Vec<(String, String)>>,
    group: Option<Vec<(String, String)>>,
    group_state: GroupState,
    /// Per series: whether it had a timestamp, and the last one.
    series_times: HashMap<SeriesKey, Option<i64>>,
}

#[derive(Default)]
struct GroupState {
    last_le: Option<f64>,
    last_bucket: Option<f64>,
    infinite_bucket: Option<f64>,
    negative_bucket: bool,
    count: Option<f64>,
    sum: Option<f64>,
}

fn group_key(labels: &[(String, String)]) -> Vec<(String, String)> {
    let mut key: Vec<(String, String)> = labels.iter().filter(|(n, _)| n != "le" && n != "quantile").cloned().collect();
    key.sort();
    key
}

impl Family {
    fn new(name: &str) -> Family {
        Family {
            name: name.to_string(),
            kind: None,
            help: None,
            unit: None,
            has_samples: false,
            finished_groups: HashSet::new(),
            group: None,
            group_state: GroupState::default(),
            series_times: HashMap::new(),
        }
    }

    fn kind(&self) -> MetricType {
        self.kind.unwrap_or(MetricType::Unknown)
    }

    /// Whether `sample` is a sample name of this family; returns its suffix.
    fn suffix_of(&self, sample: &str) -> Option<&'static str> {
        let rest = sample.strip_prefix(self.name.as_str())?;
        suffixes(self.kind()).iter().copied().find(|s| *s == rest)
    }

    /// Checks the group that just ended.
    fn end_group(&mut self, line: usize) -> Result<(), ParseError> {
        let Some(group) = self.group.take() else { return Ok(()) };
        let state = std::mem::take(&mut self.group_state);
        if matches!(self.kind(), MetricType::Histogram | MetricType::GaugeHistogram) {
            let Some(infinite) = state.infinite_bucket else {
                return error(line, format!("{}: histogram without a +Inf bucket", self.name));
            };
            if state.count.is_some() != state.sum.is_some() {
                return error(line, format!("{}: count and sum must come together", self.name));
            }
            if let Some(count) = state.count
                && count != infinite
            {
                return error(line, format!("{}: count {count} differs from the +Inf bucket {infinite}", self.name));
            }
            if let Some(sum) = state.sum
                && sum < 0.0
                && !state.negative_bucket
            {
                return error(line, format!("{}: negative sum without negative buckets", self.name));
            }
            if self.kind() == MetricType::Histogram && state.negative_bucket && state.sum.is_some() {
                return error(line, format!("{}: a histogram with negative buckets has no sum", self.name));
            }
        }
        self.finished_groups.insert(group);
        Ok(())
    }
}

/// Names a family of this kind produces, for clash detection.
fn produced_names(name: &str, kind: MetricType) -> Vec<String> {
    let mut names: Vec<String> = suffixes(kind).iter().map(|s| format!("{name}{s}")).collect();
    names.push(name.to_string());
    names
}

/// Parses OpenMetrics 1.0 text, strictly.
pub fn parse_openmetrics(text: &str) -> Result<Exposition, ParseError> {
    let mut out = Exposition::default();
    let body = match text.strip_suffix("# EOF\n").or_else(|| text.strip_suffix("# EOF")) {
        Some(body) => body,
        None => {
            let line = text.lines().count().max(1);
            return error(line, "missing '# EOF' at the end, or text after it");
        }
    };
    if !body.is_empty() && !body.ends_with('\n') {
        return error(body.lines().count(), "'# EOF' must start its own line");
    }
    let mut current: Option<Family> = None;
    let mut finished: HashSet<String> = HashSet::new();
    // Sample names each family may produce, with the family that claims them.
    let mut reserved: HashMap<String, String> = HashMap::new();
    let lines: Vec<&str> = if body.is_empty() { Vec::new() } else { body.split('\n').collect() };
    let lines = &lines[..lines.len().saturating_sub(1)]; // the part after the final '\n'
    for (index, raw) in lines.iter().enumerate() {
        let line = index + 1;
        if raw.is_empty() {
            return error(line, "blank line");
        }
        if let Some(rest) = raw.strip_prefix("# ") {
            let (keyword, after) = rest.split_once(' ').unwrap_or((rest, ""));
            if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
                return error(line, format!("unexpected comment {raw:?}"));
            }
            let Some((name, value)) = after.split_once(' ') else {
                return error(line, format!("{keyword} needs a metric name and a value"));
            };
            let mut cursor = Cursor { text: name, position: 0 };
            if cursor.name(is_name_start, is_name_char) != Some(name) {
                return error(line, format!("invalid metric name {name:?}"));
            }
            let starts_new = current.as_ref().is_none_or(|f| f.name != name);
            if starts_new {
                if let Some(mut family) = current.take() {
                    family.end_group(line)?;
                    out.metadata.extend(finish(family, &mut finished));
                }
                if finished.contains(name) {
                    return error(line, format!("metadata for {name} after its samples"));
                }
                current = Some(Family::new(name));
            }
            // `current` names this family now: it matched, or was replaced just above.
            let family = current.get_or_insert_with(|| Family::new(name));
            if family.has_samples {
                return error(line, format!("metadata for {name} after its samples"));
            }
            match keyword {
                "HELP" => {
                    if family.help.is_some() {
                        return error(line, format!("second HELP for {name}"));
                    }
                    family.help = Some(unescape_help(value));
                }
                "TYPE" => {
                    if family.kind.is_some() {
                        return error(line, format!("second TYPE for {name}"));
                    }
                    let Some(kind) = metric_type(value, true) else {
                        return error(line, format!("invalid metric type {value:?}"));
                    };
                    if family.unit.as_ref().is_some_and(|u| !u.is_empty())
                        && matches!(kind, MetricType::Info | MetricType::StateSet)
                    {
                        return error(line, format!("{name}: {value} metrics have no unit"));
                    }
                    for produced in produced_names(name, kind) {
                        if reserved.get(&produced).is_some_and(|owner| owner != name) {
                            return error(line, format!("{name} clashes with another family's {produced}"));
                        }
                    }
                    family.kind = Some(kind);
                }
                _ => {
                    if family.unit.is_some() {
                        return error(line, format!("second UNIT for {name}"));
                    }
                    if !value.is_empty() && !name.ends_with(&format!("_{value}")) {
                        return error(line, format!("{name} must end with its unit {value:?}"));
                    }
                    if value.contains(' ') || value.ends_with(['\t']) {
                        return error(line, "invalid unit");
                    }
                    if !value.is_empty() && matches!(family.kind, Some(MetricType::Info | MetricType::StateSet)) {
                        return error(line, format!("{name}: this type has no unit"));
                    }
                    family.unit = Some(value.to_string());
                }
            }
            if starts_new && reserved.get(name).is_some_and(|owner| owner != name) {
                return error(line, format!("{name} clashes with another family"));
            }
            reserved.insert(name.to_string(), name.to_string());
            if let Some(kind) = family.kind {
                for produced in produced_names(name, kind) {
                    reserved.insert(produced, name.to_string());
                }
            }
            continue;
        }
        if raw.starts_with('#') {
            return error(line, format!("unexpected comment {raw:?}"));
        }

        let sample = parse_openmetrics_sample(raw, line)?;
        // Which family does it belong to?
        let belongs = current.as_ref().and_then(|f| f.suffix_of(&sample.name).map(|s| (f.name.clone(), s)));
        let suffix = match belongs {
            Some((_, suffix)) => suffix,
            None => {
                if let Some(mut family) = current.take() {
                    family.end_group(line)?;
                    out.metadata.extend(finish(family, &mut finished));
                }
                if finished.contains(&sample.name) || reserved.contains_key(&sample.name) {
                    return error(line, format!("samples of {} are not grouped together", sample.name));
                }
                reserved.insert(sample.name.clone(), sample.name.clone());
                current = Some(Family::new(&sample.name));
                ""
            }
        };
        // `current` either matched the sample or was replaced just above.
        let family = current.get_or_insert_with(|| Family::new(&sample.name));
        family.has_samples = true;
        check_sample(family, &sample, suffix, line)?;
        out.samples.push(sample);
    }
    if let Some(mut family) = current.take() {
        family.end_group(lines.len())?;
        out.metadata.extend(finish(family, &mut finished));
    }
    Ok(out)
}

fn finish(family: Family, finished: &mut HashSet<String>) -> Option<(String, MetricMetadata)> {
    finished.insert(family.name.clone());
    if family.kind.is_none() && family.help.is_none() && family.unit.is_none() {
        return None;
    }
    Some((
        family.name,
        MetricMetadata {
            metric_type: family.kind.unwrap_or(MetricType::Unknown),
            help: family.help.unwrap_or_default(),
            unit: family.unit.unwrap_or_default(),
        },
    ))
}

fn parse_openmetrics_sample(raw: &str, line: usize) -> Result<ScrapedSample, ParseError> {
    let mut cursor = Cursor { text: raw, position: 0 };
    let Some(name) = cursor.name(is_name_start, is_name_char) else {
        return error(line, "expected a metric name");
    };
    let labels = cursor.labels(false, line)?;
    if !cursor.eat(b' ') {
        return error(line, format!("{name}: expected one space before the value"));
    }
    let rest = cursor.rest();
    let (main, exemplar_text) = match rest.split_once(" # ") {
        Some((main, exemplar)) => (main, Some(exemplar)),
        None => (rest, None),
    };
    let mut tokens = main.split(' ');
    let value_token = tokens.next().unwrap_or("");
    let Some(value) = parse_value(value_token) else {
        return error(line, format!("{name}: invalid value {value_token:?}"));
    };
    let t_ms = match tokens.next() {
        Some(token) => match parse_seconds(token) {
            Some(t) => Some(t),
            None => return error(line, format!("{name}: invalid timestamp {token:?}")),
        },
        None => None,
    };
    if tokens.next().is_some() {
        return error(line, format!("{name}: unexpected text after the timestamp"));
    }
    if main.contains('#') {
        return error(line, format!("{name}: malformed exemplar"));
    }
    let exemplar = match exemplar_text {
        Some(text) => Some(parse_exemplar(text, line)?),
        None => None,
    };
    Ok(ScrapedSample { name: name.to_string(), labels, value, t_ms, exemplar })
}

fn parse_exemplar(text: &str, line: usize) -> Result<Exemplar, ParseError> {
    let mut cursor = Cursor { text, position: 0 };
    if cursor.peek() != Some(b'{') {
        return error(line, "exemplar must start with a label set");
    }
    let labels = cursor.labels(false, line)?;
    let length: usize = labels.iter().map(|(n, v)| n.chars().count() + v.chars().count()).sum();
    if length > 128 {
        return error(line, format!("exemplar labels are {length} characters, over the limit of 128"));
    }
    if !cursor.eat(b' ') {
        return error(line, "expected one space before the exemplar value");
    }
    let mut tokens = cursor.rest().split(' ');
    let value_token = tokens.next().unwrap_or("");
    let Some(value) = parse_value(value_token) else {
        return error(line, format!("invalid exemplar value {value_token:?}"));
    };
    let t_ms = match tokens.next() {
        Some(token) => match parse_seconds(token) {
            Some(t) => t,
            None => return error(line, format!("invalid exemplar timestamp {token:?}")),
        },
        None => 0,
    };
    if tokens.next().is_some() {
        return error(line, "unexpected text after the exemplar");
    }
    let labels =
        Labels::from_pairs(labels).map_err(|e| ParseError { line, message: format!("exemplar labels: {e}") })?;
    Ok(Exemplar { labels, value, t_ms })
}

fn label<'l>(labels: &'l [(String, String)], name: &str) -> Option<&'l str> {
    labels.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// The checks OpenMetrics makes per sample, by family type.
fn check_sample(family: &mut Family, sample: &ScrapedSample, suffix: &str, line: usize) -> Result<(), ParseError> {
    let name = &sample.name;
    let value = sample.value;
    let kind = family.kind();
    // Grouping: the samples of a label group are contiguous.
    let group = group_key(&sample.labels);
    if family.group.as_ref() != Some(&group) {
        family.end_group(line)?;
        if family.finished_groups.contains(&group) {
            return error(line, format!("{name}: samples of one label set are not grouped together"));
        }
        family.group = Some(group);
    }
    // Timestamps: a repeated series has timestamps every time, never going back.
    let mut series_labels = sample.labels.clone();
    series_labels.sort();
    let key = (name.clone(), series_labels);
    if let Some(previous) = family.series_times.get(&key) {
        match (previous, sample.t_ms) {
            (Some(before), Some(now)) if now < *before => {
                return error(line, format!("{name}: timestamps go backwards"));
            }
            (Some(_), Some(_)) => {}
            _ => return error(line, format!("{name}: repeated sample without timestamps")),
        }
    }
    family.series_times.insert(key, sample.t_ms);

    let counter_like = |v: f64| !v.is_nan() && v >= 0.0;
    if sample.exemplar.is_some() {
        let allowed = matches!(
            (kind, suffix),
            (MetricType::Counter, "_total") | (MetricType::Histogram | MetricType::GaugeHistogram, "_bucket")
        );
        if !allowed {
            return error(line, format!("{name}: exemplars are allowed only on counter totals and histogram buckets"));
        }
    }
    match (kind, suffix) {
        (MetricType::Counter, "_total") if !counter_like(value) => {
            return error(line, format!("{name}: counter value {value} must be a non-negative number"));
        }
        (MetricType::Histogram | MetricType::GaugeHistogram, "_bucket") => {
            let Some(le_text) = label(&sample.labels, "le") else {
                return error(line, format!("{name}: bucket without an le label"));
            };
            let Some(le) = parse_value(le_text).filter(|v| !v.is_nan()) else {
                return error(line, format!("{name}: invalid le {le_text:?}"));
            };
            if !counter_like(value) {
                return error(line, format!("{name}: bucket value {value} must be a non-negative number"));
            }
            let state = &mut family.group_state;
            if state.last_le.is_some_and(|last| le <= last) {
                return error(line, format!("{name}: buckets are not in increasing le order"));
            }
            if state.last_bucket.is_some_and(|last| value < last) {
                return error(line, format!("{name}: bucket counts decrease"));
            }
            if state.infinite_bucket.is_some() {
                return error(line, format!("{name}: bucket after the +Inf bucket"));
            }
            if le < 0.0 {
                state.negative_bucket = true;
            }
            state.last_le = Some(le);
            state.last_bucket = Some(value);
            if le == f64::INFINITY {
                state.infinite_bucket = Some(value);
            }
        }
        (MetricType::Histogram, "_count") | (MetricType::GaugeHistogram, "_gcount") => {
            if !counter_like(value) {
                return error(line, format!("{name}: count {value} must be a non-negative number"));
            }
            family.group_state.count = Some(value);
        }
        (MetricType::Histogram, "_sum") | (MetricType::GaugeHistogram, "_gsum") => {
            if value.is_nan() {
                return error(line, format!("{name}: sum is NaN"));
            }
            family.group_state.sum = Some(value);
        }
        (MetricType::Summary, "_count" | "_sum") if !counter_like(value) => {
            return error(line, format!("{name}: {value} must be a non-negative number"));
        }
        (MetricType::Summary, "") => {
            let Some(quantile) = label(&sample.labels, "quantile").and_then(parse_value) else {
                return error(line, format!("{name}: summary sample without a valid quantile label"));
            };
            if !(0.0..=1.0).contains(&quantile) {
                return error(line, format!("{name}: quantile {quantile} is outside 0..1"));
            }
            // NaN is how a summary says it has no observations yet.
            if value < 0.0 {
                return error(line, format!("{name}: quantile value {value} is negative"));
            }
        }
        (MetricType::Info, _) if value != 1.0 => {
            return error(line, format!("{name}: info value must be 1"));
        }
        (MetricType::StateSet, _) => {
            if value != 0.0 && value != 1.0 {
                return error(line, format!("{name}: stateset value must be 0 or 1"));
            }
            if label(&sample.labels, &family.name).is_none() {
                return error(line, format!("{name}: stateset sample without a {:?} label", family.name));
            }
        }
        _ => {}
    }
    if kind != MetricType::Histogram
        && kind != MetricType::GaugeHistogram
        && label(&sample.labels, "le").is_some()
        && suffix == "_bucket"
    {
        return error(line, format!("{name}: le label outside a histogram"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_is_read_leniently() {
        let text = "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\nhttp_requests_total{code=\"200\",method=\"get\",} 1027 1395066363000\n\n# a comment\nhttp_requests_total{code=\"400\"}   3\nmetric_without_timestamp_and_labels 12.47\nsomething_weird{problem=\"division by zero\"} +Inf -3982045\n";
        let parsed = parse_prometheus_text(text).unwrap();
        assert_eq!(parsed.samples.len(), 4);
        assert_eq!(parsed.samples[0].labels, vec![("code".into(), "200".into()), ("method".into(), "get".into())]);
        assert_eq!(parsed.samples[0].t_ms, Some(1_395_066_363_000));
        assert_eq!(parsed.samples[3].value, f64::INFINITY);
        assert_eq!(parsed.metadata[0].1.metric_type, MetricType::Counter);
        assert_eq!(parsed.metadata[0].1.help, "Requests.");
        let bad = parse_prometheus_text("ok 1\nbroken{a=\"b} 1\n").unwrap_err();
        assert_eq!(bad.line, 2);
    }

    #[test]
    fn openmetrics_exemplars_and_timestamps() {
        let text = "# TYPE a counter\n# HELP a help\na_total 0 123 # {a=\"b\"} 0.5 1.5\n# EOF\n";
        let parsed = parse_openmetrics(text).unwrap();
        assert_eq!(parsed.samples[0].t_ms, Some(123_000));
        let exemplar = parsed.samples[0].exemplar.as_ref().unwrap();
        assert_eq!((exemplar.value, exemplar.t_ms), (0.5, 1500));
        assert!(parse_openmetrics("a 1\n").is_err(), "no EOF");
    }
}
