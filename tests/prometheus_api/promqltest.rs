//! Prometheus's PromQL test scripting language (`load`, `clear`, `eval instant|range` with
//! `expect` lines and expected series), parsed into commands, and `load` data expanded into
//! samples, and a runner that evaluates every `eval` of ../shared/data/promql-testdata with
//! Tripod's engine and compares with the script's expectations. Evals that do not pass yet are
//! listed in promqltest-expected-failures.txt.

use std::path::PathBuf;

use tripod::duration::parse_duration;
use tripod_storage::labels::Labels;
use tripod_storage::metrics::{MetricsAppender, STALE_NAN, Sample, SeriesKey, SeriesSamples};

/// One point of a series' expansion.
#[derive(Debug, Clone, PartialEq)]
pub enum Point {
    Value(f64),
    Missing,
    Stale,
    /// A native histogram, kept as its text (native histograms are not stored yet).
    Histogram(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SeriesPoints {
    /// `None` for a scalar expectation (a bare value line).
    pub labels: Option<Labels>,
    pub points: Vec<Point>,
    /// The `name{...}@st` form: start timestamps (as durations) of the series' samples, kept as
    /// written, since start timestamps are not stored yet.
    pub start_timestamps: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EvalTime {
    Instant { at_ms: i64 },
    Range { start_ms: i64, end_ms: i64, step_ms: i64 },
}

/// An `expect` line: its kind (`fail`, `warn`, `info`, `no_warn`, `no_info`, `ordered`,
/// `string`, `range`) and its message or regex, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    pub kind: String,
    pub message: Option<String>,
    pub regex: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Eval {
    pub time: EvalTime,
    pub query: String,
    pub expectations: Vec<Expectation>,
    pub expected: Vec<SeriesPoints>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Load { interval_ms: i64, with_nhcb: bool, series: Vec<SeriesPoints> },
    Clear,
    Eval(Eval),
}

/// A time or step: a duration (`50m`, `-5m`) or seconds (`0`, `100.5`), in milliseconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let ms = match parse_duration(body) {
        Ok(duration) => duration.as_millis() as i64,
        Err(_) => {
            let seconds: f64 = body.parse().map_err(|_| format!("invalid time {text:?}"))?;
            (seconds * 1000.0).round() as i64
        }
    };
    Ok(if negative { -ms } else { ms })
}

fn parse_number(text: &str) -> Option<f64> {
    match text.to_ascii_lowercase().as_str() {
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => {
            if let Some(hex) = text.strip_prefix("0x") {
                return i64::from_str_radix(hex, 16).ok().map(|v| v as f64);
            }
            text.parse().ok()
        }
    }
}

/// Splits a points specification into tokens, keeping `{{ ... }}` histograms whole.
fn point_tokens(text: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if rest.starts_with("{{") {
            // A histogram, or a histogram expansion `{{...}}+{{...}}xN`.
            let mut end = rest.find("}}").ok_or_else(|| format!("unterminated histogram in {text:?}"))? + 2;
            if rest[end..].starts_with("+{{") || rest[end..].starts_with("-{{") {
                end += rest[end..].find("}}").ok_or_else(|| format!("unterminated histogram in {text:?}"))? + 2;
            }
            let after = &rest[end..];
            let suffix_len = after.find(char::is_whitespace).unwrap_or(after.len());
            tokens.push(rest[..end + suffix_len].to_string());
            rest = after[suffix_len..].trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            tokens.push(rest[..end].to_string());
            rest = rest[end..].trim_start();
        }
    }
    Ok(tokens)
}

/// Expands `5 2+3x2 _ _x3 stale 1x4 -2+4x3 1-2x4 {{...}}x2` into points.
pub fn expand_points(text: &str) -> Result<Vec<Point>, String> {
    let mut points = Vec::new();
    for token in point_tokens(text)? {
        if token.starts_with("{{") {
            let end = token.rfind("}}").unwrap_or(token.len() - 2) + 2;
            let repeat = match token[end..].strip_prefix('x') {
                Some(count) => count.parse::<usize>().map_err(|_| format!("invalid repeat in {token:?}"))? + 1,
                None => 1,
            };
            points.extend(std::iter::repeat_n(Point::Histogram(token[..end].to_string()), repeat));
            continue;
        }
        if token == "_" {
            points.push(Point::Missing);
            continue;
        }
        if token == "stale" {
            points.push(Point::Stale);
            continue;
        }
        if let Some(count) = token.strip_prefix("_x") {
            let count: usize = count.parse().map_err(|_| format!("invalid point {token:?}"))?;
            points.extend(std::iter::repeat_n(Point::Missing, count));
            continue;
        }
        if let Some(value) = parse_number(&token) {
            points.push(Point::Value(value));
            continue;
        }
        // a+bxn, a-bxn, axn (the sign search skips a leading sign and an exponent's sign).
        let (base_and_step, count) = token.rsplit_once('x').ok_or_else(|| format!("invalid point {token:?}"))?;
        let count: usize = count.parse().map_err(|_| format!("invalid count in {token:?}"))?;
        let bytes = base_and_step.as_bytes();
        let split =
            (1..bytes.len()).rev().find(|&i| matches!(bytes[i], b'+' | b'-') && !matches!(bytes[i - 1], b'e' | b'E'));
        let (start, step) = match split {
            Some(i) => {
                let start = parse_number(&base_and_step[..i]).ok_or_else(|| format!("invalid start in {token:?}"))?;
                let step = parse_number(&base_and_step[i..]).ok_or_else(|| format!("invalid step in {token:?}"))?;
                (start, step)
            }
            None => (parse_number(base_and_step).ok_or_else(|| format!("invalid point {token:?}"))?, 0.0),
        };
        for k in 0..=count {
            points.push(Point::Value(start + step * k as f64));
        }
    }
    Ok(points)
}

/// Splits `metric{a="b c"} 1 2 3` into the selector and the rest, honouring quotes.
fn split_series(line: &str) -> (&str, &str) {
    let mut depth = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' | '\'' | '`' => quoted = !quoted,
            '{' if !quoted => depth += 1,
            '}' if !quoted => depth -= 1,
            c if c.is_whitespace() && depth == 0 && !quoted => return (&line[..i], &line[i..]),
            _ => {}
        }
    }
    (line, "")
}

/// A label set as the scripts write it: `name`, `name{a="b"}`, `{a="b"}` or `{}`.
fn series_labels(text: &str) -> Result<Labels, String> {
    let error = || format!("invalid series {text:?}");
    let (name, rest) = match text.find('{') {
        Some(open) => (&text[..open], &text[open..]),
        None => (text, ""),
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    if !name.is_empty() {
        pairs.push(("__name__".into(), name.to_string()));
    }
    if !rest.is_empty() {
        let inner = rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')).ok_or_else(error)?;
        let mut chars = inner.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
                chars.next();
            }
            if chars.peek().is_none() {
                break;
            }
            let label: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.next() != Some('=') {
                return Err(error());
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let quote = chars.next().filter(|c| matches!(c, '"' | '\'' | '`')).ok_or_else(error)?;
            let mut value = String::new();
            loop {
                match chars.next().ok_or_else(error)? {
                    c if c == quote => break,
                    '\\' if quote != '`' => match chars.next().ok_or_else(error)? {
                        'n' => value.push('\n'),
                        't' => value.push('\t'),
                        other => value.push(other),
                    },
                    c => value.push(c),
                }
            }
            pairs.push((label, value));
        }
    }
    Labels::from_pairs(pairs).map_err(|e| format!("{}: {e}", error()))
}

fn parse_series_line(line: &str) -> Result<SeriesPoints, String> {
    let (selector, points) = split_series(line.trim());
    if let Some(value) = parse_number(selector).filter(|_| points.trim().is_empty()) {
        return Ok(SeriesPoints { labels: None, points: vec![Point::Value(value)], start_timestamps: None });
    }
    if let Some(series) = selector.strip_suffix("@st") {
        return Ok(SeriesPoints {
            labels: Some(series_labels(series)?),
            points: Vec::new(),
            start_timestamps: Some(points.trim().to_string()),
        });
    }
    Ok(SeriesPoints { labels: Some(series_labels(selector)?), points: expand_points(points)?, start_timestamps: None })
}

fn parse_expectation(text: &str) -> Expectation {
    let (kind, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let rest = rest.trim();
    let (message, regex) = if let Some(message) = rest.strip_prefix("msg:") {
        (Some(message.trim().trim_matches('"').to_string()), None)
    } else if let Some(regex) = rest.strip_prefix("regex:") {
        (None, Some(regex.trim().trim_matches('"').to_string()))
    } else if !rest.is_empty() {
        (Some(rest.to_string()), None)
    } else {
        (None, None)
    };
    Expectation { kind: kind.to_string(), message, regex }
}

/// Parses a whole script. Errors name the line.
pub fn parse_script(text: &str) -> Result<Vec<(usize, Command)>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut commands = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        let number = i + 1;
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The lines that belong to this command: up to the next blank line or command.
        let mut body = Vec::new();
        while i < lines.len() {
            let next = lines[i].trim();
            if next.is_empty() || next.starts_with("load") || next.starts_with("eval") || next == "clear" {
                break;
            }
            if !next.starts_with('#') {
                body.push(next);
            }
            i += 1;
        }
        let error = |message: String| format!("line {number}: {message}");
        let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let command = match keyword {
            "clear" => Command::Clear,
            "load" | "load_with_nhcb" => {
                let interval_ms = parse_time(rest.trim()).map_err(error)?;
                let series = body.iter().map(|l| parse_series_line(l)).collect::<Result<Vec<_>, _>>().map_err(error)?;
                Command::Load { interval_ms, with_nhcb: keyword == "load_with_nhcb", series }
            }
            "eval" | "eval_fail" | "eval_ordered" | "eval_warn" | "eval_info" => {
                let mut expectations = Vec::new();
                match keyword {
                    "eval_fail" => expectations.push(parse_expectation("fail")),
                    "eval_ordered" => expectations.push(parse_expectation("ordered")),
                    "eval_warn" => expectations.push(parse_expectation("warn")),
                    "eval_info" => expectations.push(parse_expectation("info")),
                    _ => {}
                }
                let words: Vec<&str> = rest.split_whitespace().collect();
                let (time, query_start) = match words.as_slice() {
                    ["instant", "at", at, ..] => (EvalTime::Instant { at_ms: parse_time(at).map_err(error)? }, 3),
                    ["range", "from", start, "to", end, "step", step, ..] => (
                        EvalTime::Range {
                            start_ms: parse_time(start).map_err(error)?,
                            end_ms: parse_time(end).map_err(error)?,
                            step_ms: parse_time(step).map_err(error)?,
                        },
                        7,
                    ),
                    _ => return Err(error(format!("invalid eval command {line:?}"))),
                };
                // The query is the rest of the line after the time words.
                let mut query = rest;
                for _ in 0..query_start {
                    query = query.trim_start();
                    query = &query[query.find(char::is_whitespace).unwrap_or(query.len())..];
                }
                let mut expected = Vec::new();
                for body_line in &body {
                    if let Some(expect) = body_line.strip_prefix("expect ") {
                        expectations.push(parse_expectation(expect.trim()));
                    } else if let Some(message) = body_line.strip_prefix("expected_fail_message") {
                        expectations.push(Expectation {
                            kind: "fail".into(),
                            message: Some(message.trim().to_string()),
                            regex: None,
                        });
                    } else if let Some(regex) = body_line.strip_prefix("expected_fail_regexp") {
                        expectations.push(Expectation {
                            kind: "fail".into(),
                            message: None,
                            regex: Some(regex.trim().to_string()),
                        });
                    } else {
                        expected.push(parse_series_line(body_line).map_err(error)?);
                    }
                }
                Command::Eval(Eval { time, query: query.trim().to_string(), expectations, expected })
            }
            other => return Err(error(format!("unknown command {other:?}"))),
        };
        commands.push((number, command));
    }
    Ok(commands)
}

/// Loads a `load` command's float points into a store; returns (samples, points not stored:
/// native histograms and start timestamps).
pub fn load_into(store: &dyn MetricsAppender, interval_ms: i64, series: &[SeriesPoints]) -> (usize, usize) {
    let (mut loaded, mut histograms) = (0, 0);
    for (index, entry) in series.iter().enumerate() {
        let Some(labels) = &entry.labels else { continue };
        // A series defined twice in one load is defined by its last definition, as promqltest
        // keeps one definition per label set.
        if series[index + 1..].iter().any(|later| later.labels.as_ref() == Some(labels)) {
            continue;
        }
        if entry.start_timestamps.is_some() {
            histograms += 1;
            continue;
        }
        let mut samples = Vec::new();
        for (index, point) in entry.points.iter().enumerate() {
            let t_ms = index as i64 * interval_ms;
            match point {
                Point::Value(value) => samples.push(Sample { t_ms, value: *value }),
                Point::Stale => samples.push(Sample { t_ms, value: STALE_NAN }),
                Point::Missing => {}
                Point::Histogram(_) => histograms += 1,
            }
        }
        loaded += samples.len();
        let batch = [SeriesSamples { key: SeriesKey::Labels(labels), samples: &samples, exemplars: &[] }];
        // The memory store never refuses a sample, and the disk store is set up not to: a
        // refused sample shows as a difference between the two.
        let _ = store.append(&batch);
    }
    (loaded, histograms)
}

fn testdata() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/promql-testdata");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|value| value == "true") {
        panic!("{} is missing; CI runs with shared/ beside the clone", dir.display());
    }
    eprintln!("skipping: {} not found", dir.display());
    None
}

/// The `.test` scripts of the test data, sorted, or `None` when it is absent outside CI.
fn test_files() -> Option<Vec<PathBuf>> {
    let dir = testdata()?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
    Some(files)
}

#[test]
fn points_expand_as_promqltest_defines() {
    let values = |text: &str| -> Vec<Point> { expand_points(text).unwrap() };
    let v = Point::Value;
    assert_eq!(values("5 2+3x2 _ stale"), vec![v(5.0), v(2.0), v(5.0), v(8.0), Point::Missing, Point::Stale]);
    assert_eq!(values("-2+4x3"), vec![v(-2.0), v(2.0), v(6.0), v(10.0)]);
    assert_eq!(values("1-2x4"), vec![v(1.0), v(-1.0), v(-3.0), v(-5.0), v(-7.0)]);
    assert_eq!(values("1x4"), vec![v(1.0); 5]);
    assert_eq!(values("1 _x3 stale"), vec![v(1.0), Point::Missing, Point::Missing, Point::Missing, Point::Stale]);
    assert_eq!(values("1e3+1e2x1"), vec![v(1000.0), v(1100.0)]);
    assert_eq!(values("{{schema:0 sum:1 count:1}}x1").len(), 2);
    assert_eq!(parse_time("50m"), Ok(3_000_000));
    assert_eq!(parse_time("0"), Ok(0));
    assert_eq!(parse_time("-5m"), Ok(-300_000));
}

#[test]
fn every_prometheus_test_file_parses_and_loads() {
    let Some(files) = test_files() else { return };
    assert!(files.len() >= 20, "{files:?}");
    let (mut evals, mut loaded_samples, mut histogram_points) = (0, 0, 0);
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let commands = parse_script(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut store = tripod_storage::metrics::memory::MemoryMetrics::new();
        for (line, command) in &commands {
            match command {
                Command::Load { interval_ms, series, .. } => {
                    let (samples, histograms) = load_into(&store, *interval_ms, series);
                    loaded_samples += samples;
                    histogram_points += histograms;
                }
                Command::Clear => store = tripod_storage::metrics::memory::MemoryMetrics::new(),
                Command::Eval(eval) => {
                    evals += 1;
                    assert!(!eval.query.is_empty(), "{}:{line}: empty query", file.display());
                    if let EvalTime::Range { start_ms, end_ms, step_ms } = eval.time {
                        assert!(start_ms <= end_ms && step_ms > 0, "{}:{line}", file.display());
                    }
                }
            }
        }
    }
    eprintln!(
        "promqltest: {} files, {evals} evals, {loaded_samples} float samples loaded, {histogram_points} native histogram points or start-timestamp series (not stored yet)",
        files.len()
    );
    assert!(evals > 2000, "{evals} evals");
    assert!(loaded_samples > 50_000, "{loaded_samples} samples");
}

/// The real metrics store on disk, holding the loads since the last `clear`. Before the evals
/// that follow a load it is rebuilt from all of them and maintained as the server does, so that
/// the older samples are read from blocks (cut and compacted) and the newest from the head.
#[derive(Default)]
struct DiskStore {
    loads: Vec<(i64, Vec<SeriesPoints>)>,
    current: Option<(tempfile::TempDir, tripod_storage::Storage)>,
}

impl DiskStore {
    fn load(&mut self, interval_ms: i64, series: &[SeriesPoints]) {
        self.loads.push((interval_ms, series.to_vec()));
        self.current = None;
    }

    fn storage(&mut self) -> &tripod_storage::Storage {
        let loads = &self.loads;
        let (_, storage) = self.current.get_or_insert_with(|| {
            use tripod_storage::metrics::MetricsOptions;
            use tripod_storage::wal::{SyncPolicy, WalOptions};
            const MINUTE: i64 = 60_000;
            let dir = tempfile::tempdir().unwrap();
            let options = tripod_storage::StorageOptions {
                wal: WalOptions { segment_size_bytes: 1 << 20, sync: SyncPolicy::Never },
                metrics: MetricsOptions {
                    block_range_ms: 30 * MINUTE,
                    // Loads go series by series, each from time 0.
                    out_of_order_window_ms: 1 << 50,
                    retention_ms: None,
                    ..MetricsOptions::default()
                },
                ..tripod_storage::StorageOptions::default()
            };
            let storage = tripod_storage::Storage::open(dir.path(), options).unwrap();
            for (interval_ms, series) in loads {
                load_into(storage.metrics(), *interval_ms, series);
            }
            storage.metrics().maintenance().unwrap();
            (dir, storage)
        });
        storage
    }
}

/// A result or expected series: labels (none for a scalar) and (time, value) points.
type ResultSeries = (Option<Labels>, Vec<(i64, f64)>);

/// Why an eval did not match its expectations, or `None` when it did.
fn check_eval(store: &dyn tripod_storage::metrics::MetricsQueryable, eval: &Eval) -> Option<String> {
    use tripod::query::promql::{self, EvalOptions, QueryValue, Steps};
    let expect = |kind: &str| eval.expectations.iter().find(|e| e.kind == kind);
    let wants_failure = expect("fail").is_some();
    let expr = match promql_parser::parser::parse(&eval.query) {
        Ok(expr) => expr,
        Err(e) => return (!wants_failure).then(|| format!("parse error: {e}")),
    };
    let options = EvalOptions {
        lookback_ms: tripod::query::promql::DEFAULT_LOOKBACK_MS,
        max_samples: 50_000_000,
        deadline: std::time::Instant::now() + std::time::Duration::from_secs(60),
        subquery_step_ms: 60_000,
    };
    let result = match eval.time {
        EvalTime::Instant { at_ms } => promql::instant_query(store, &expr, at_ms, options),
        EvalTime::Range { start_ms, end_ms, step_ms } => {
            promql::range_query(store, &expr, Steps { start_ms, end_ms, step_ms }, options)
        }
    };
    let value = match result {
        Err(e) => return (!wants_failure).then(|| format!("error: {e}")),
        Ok(_) if wants_failure => return Some("succeeded, expected an error".into()),
        Ok(value) => value,
    };
    // Expected series as (labels, [(t, value)]).
    let point_times = |count: usize| -> Vec<i64> {
        match (eval.time, expect("range")) {
            (_, Some(range)) => {
                let words: Vec<&str> = range.message.as_deref().unwrap_or("").split_whitespace().collect();
                match words.as_slice() {
                    ["vector", "from", from, "to", _, "step", step] => {
                        let (from, step) = (parse_time(from).unwrap_or(0), parse_time(step).unwrap_or(1));
                        (0..count).map(|i| from + i as i64 * step).collect()
                    }
                    _ => Vec::new(),
                }
            }
            (EvalTime::Range { start_ms, step_ms, .. }, None) => {
                (0..count).map(|i| start_ms + i as i64 * step_ms).collect()
            }
            (EvalTime::Instant { at_ms }, None) => vec![at_ms; count],
        }
    };
    let mut want: Vec<ResultSeries> = Vec::new();
    for series in &eval.expected {
        let times = point_times(series.points.len());
        let mut points = Vec::new();
        for (point, t) in series.points.iter().zip(times) {
            match point {
                Point::Value(v) => points.push((t, *v)),
                Point::Missing => {}
                Point::Stale | Point::Histogram(_) => return Some("expects histograms or stale points".into()),
            }
        }
        want.push((series.labels.clone(), points));
    }
    let got: Vec<ResultSeries> = match &value {
        QueryValue::String { value, .. } => {
            let wanted = expect("string").and_then(|e| e.message.clone()).unwrap_or_default();
            let quoted = |q: char| wanted.strip_prefix(q).and_then(|w| w.strip_suffix(q));
            let wanted = quoted('"').or_else(|| quoted('`')).unwrap_or(&wanted);
            return (value != wanted).then(|| format!("string {value:?}, expected {wanted:?}"));
        }
        QueryValue::Scalar(sample) => vec![(None, vec![(sample.t_ms, sample.value)])],
        QueryValue::Vector(samples) => {
            samples.iter().map(|s| (Some(s.labels.clone()), vec![(s.sample.t_ms, s.sample.value)])).collect()
        }
        QueryValue::Matrix(series) => series
            .iter()
            .map(|s| (Some(s.labels.clone()), s.samples.iter().map(|p| (p.t_ms, p.value)).collect()))
            .collect(),
    };
    let close = |a: f64, b: f64| {
        (a.is_nan() && b.is_nan()) || a == b || ((a - b).abs() <= 1e-6 * a.abs().max(b.abs()) && a.is_finite())
    };
    if got.len() != want.len() {
        return Some(format!("{} series, expected {}", got.len(), want.len()));
    }
    for (labels, points) in &want {
        let Some((_, found)) = got.iter().find(|(l, _)| l == labels) else {
            return Some(format!("missing series {labels:?}"));
        };
        let same = found.len() == points.len() && found.iter().zip(points).all(|(a, b)| a.0 == b.0 && close(a.1, b.1));
        if !same {
            return Some(format!("series {labels:?}: got {found:?}, expected {points:?}"));
        }
    }
    if expect("ordered").is_some() {
        let order: Vec<&Option<Labels>> = got.iter().map(|(labels, _)| labels).collect();
        let wanted: Vec<&Option<Labels>> = want.iter().map(|(labels, _)| labels).collect();
        if order != wanted {
            return Some(format!("order {order:?}, expected {wanted:?}"));
        }
    }
    None
}

/// A one-line reason for the expected-failures file.
fn short_reason(problem: &str) -> String {
    if problem.starts_with("parse error") {
        return "the parser cannot parse this query".into();
    }
    if problem.contains("histograms or stale points") {
        return "expects native histograms".into();
    }
    let line = problem.lines().next().unwrap_or("");
    match line.char_indices().nth(100) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    }
}

const EXPECTED_FAILURES: &str = "tests/prometheus_api/promqltest-expected-failures.txt";

/// Every eval of Prometheus's own test scripts runs against the engine. The evals that do not
/// pass yet are listed, one `file:line` each, in the expected-failures file; the list must be
/// exact, so a fix shows up as a failure until its line is removed. `PROMQLTEST_WRITE=1`
/// rewrites the list.
#[test]
fn prometheus_test_scripts_evaluate_as_prometheus_does() {
    let Some(files) = test_files() else { return };
    let mut failing: Vec<(String, String)> = Vec::new();
    let mut total = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let commands = parse_script(&std::fs::read_to_string(file).unwrap()).unwrap();
        let mut memory = tripod_storage::metrics::memory::MemoryMetrics::new();
        let mut disk = DiskStore::default();
        for (line, command) in &commands {
            match command {
                Command::Load { interval_ms, series, .. } => {
                    // Native histograms are not stored: their float part is loaded, and an
                    // expectation involving histograms fails the comparison.
                    load_into(&memory, *interval_ms, series);
                    disk.load(*interval_ms, series);
                }
                Command::Clear => {
                    memory = tripod_storage::metrics::memory::MemoryMetrics::new();
                    disk = DiskStore::default();
                }
                Command::Eval(eval) => {
                    total += 1;
                    let problem = check_eval(&memory, eval)
                        .or_else(|| check_eval(disk.storage().metrics(), eval).map(|p| format!("on disk: {p}")));
                    if let Some(problem) = problem {
                        failing.push((format!("{name}:{line}"), problem));
                    }
                }
            }
        }
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(EXPECTED_FAILURES);
    if std::env::var("PROMQLTEST_WRITE").is_ok_and(|v| v == "1") {
        let mut text = String::from(
            "# evals of shared/data/promql-testdata that do not pass yet: file:line, then why\n\
             # (rewritten by PROMQLTEST_WRITE=1; PROMQLTEST_VERBOSE=1 prints the full reasons)\n",
        );
        for (place, problem) in &failing {
            text.push_str(&format!("{place:<32} # {}\n", short_reason(problem)));
        }
        std::fs::write(&path, text).unwrap();
    }
    let listed: std::collections::BTreeSet<String> = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|place| !place.is_empty())
        .collect();
    let failing_places: std::collections::BTreeSet<String> = failing.iter().map(|(p, _)| p.clone()).collect();
    let unexpected: Vec<&(String, String)> = failing.iter().filter(|(p, _)| !listed.contains(p)).collect();
    let fixed: Vec<&String> = listed.iter().filter(|p| !failing_places.contains(*p)).collect();
    eprintln!("promqltest: {} of {total} evals pass", total - failing.len());
    if std::env::var("PROMQLTEST_VERBOSE").is_ok_and(|v| v == "1") {
        for (place, problem) in &failing {
            eprintln!("promqltest: {place}: {problem}");
        }
    }
    assert!(unexpected.is_empty(), "evals that fail but are not listed in {EXPECTED_FAILURES}: {unexpected:#?}");
    assert!(fixed.is_empty(), "evals that pass now; remove them from {EXPECTED_FAILURES}: {fixed:#?}");
}
