//! The LogQL golden scripts: every `tests/logql/*.test` file is run against the engine over the
//! real store, first from the head, then again after everything was flushed to files.
//!
//! The format (a line-based script, `#` starts a comment):
//!
//! ```text
//! load
//!   {app="api", env="prod"}
//!     1s "a line"                      # an entry: time since the epoch, the line
//!     2s "another" trace_id="abc"      # structured metadata after the line
//!     0s+10s x6 "tick {i}"             # six entries 10 s apart, {i} counting from 0
//!
//! eval logs start=0s end=1m [limit=100] [direction=forward|backward]
//!   query: {app="api"} | logfmt
//!   stream {app="api", env="prod"}     # the stream's labels, then its entries in order
//!     2s "another"
//!     1s "a line"
//!
//! eval instant at=1m [ordered]
//!   query: count_over_time({app="api"}[1m])
//!   {app="api", env="prod"} 3          # one series per line (any order unless `ordered`)
//!   scalar 7                           # or a number
//!
//! eval range start=0s end=2m step=1m
//!   query: rate({app="api"}[1m])
//!   {app="api", env="prod"} _ 0.05 0.1 # a value per step, `_` where there is none
//!
//! eval_fail instant at=1m              # the query must fail; `error:` words must be in the message
//!   query: {job="x", level >= 1}
//!   error: parse error at line 1, col 17
//!
//! clear                                # a new, empty store
//! ```
//!
//! An expectation with no series or streams means the answer must be empty. Values compare
//! within 1e-9 relative.

use std::path::Path;
use std::time::{Duration, Instant};

use tripod_storage::labels::Labels;
use tripod_storage::logs::{Direction, LogEntry, LogsAppender, LogsOptions, StreamEntries};
use tripod_storage::{Storage, StorageOptions};

use super::eval::{QueryParams, QueryResult, evaluate};
use super::syntax::lexer::parse_go_duration;
use super::syntax::parse;

/// A stream to load: labels and entries.
struct Load {
    labels: Labels,
    entries: Vec<LogEntry>,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Logs,
    Instant,
    Range,
}

#[derive(Debug, Clone, PartialEq)]
enum Expected {
    Streams(Vec<(String, Vec<(i64, String)>)>),
    Series(Vec<(String, Vec<Option<f64>>)>),
    Scalar(f64),
}

struct Eval {
    /// Where the case starts, for messages.
    line: usize,
    kind: Kind,
    fail: bool,
    query: String,
    start_ns: i64,
    end_ns: i64,
    step_ns: i64,
    limit: usize,
    direction: Direction,
    ordered: bool,
    expected: Expected,
    error_words: String,
}

/// One `load` ... up to `clear` or the end of the file.
#[derive(Default)]
struct Section {
    loads: Vec<Load>,
    evals: Vec<Eval>,
}

fn duration_ns(text: &str, line: usize) -> i64 {
    if text == "0" {
        return 0;
    }
    parse_go_duration(text).unwrap_or_else(|| panic!("line {line}: bad duration {text:?}"))
}

/// Splits `"quoted" rest` into the unescaped string and the rest.
fn quoted(text: &str, line: usize) -> (String, &str) {
    let text = text.trim_start();
    assert!(text.starts_with('"'), "line {line}: expected a quoted string in {text:?}");
    let mut out = String::new();
    let mut chars = text.char_indices().skip(1);
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return (out, &text[at + 1..]),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, 'e')) => out.push('\u{1b}'),
                Some((_, other)) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    panic!("line {line}: unterminated string in {text:?}")
}

/// `name="value" ...` pairs.
fn pairs(mut text: &str, line: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    loop {
        text = text.trim_start();
        if text.is_empty() || text.starts_with('#') {
            return out;
        }
        let equals = text.find('=').unwrap_or_else(|| panic!("line {line}: expected name=\"value\" in {text:?}"));
        let name = text[..equals].trim().to_string();
        let (value, rest) = quoted(&text[equals + 1..], line);
        out.push((name, value));
        text = rest;
    }
}

/// `{a="b", c="d"}` as labels.
fn labels(text: &str, line: usize) -> Labels {
    let inner = text.trim().strip_prefix('{').and_then(|t| t.strip_suffix('}'));
    let inner = inner.unwrap_or_else(|| panic!("line {line}: expected {{...}} labels, got {text:?}"));
    let pairs: Vec<(String, String)> = pairs(&inner.replace(',', " "), line);
    Labels::from_pairs(pairs).unwrap_or_else(|error| panic!("line {line}: {error}"))
}

/// Splits `{...} rest` at the closing brace.
fn split_labels(text: &str, line: usize) -> (&str, &str) {
    let mut in_string = false;
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '}' if !in_string => return (&text[..=at], &text[at + 1..]),
            _ => {}
        }
    }
    panic!("line {line}: unterminated labels in {text:?}")
}

fn parse_script(text: &str) -> Vec<Section> {
    let mut sections = vec![Section::default()];
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let number = i + 1;
        let raw = lines[i];
        let trimmed = raw.trim();
        i += 1;
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        assert!(!raw.starts_with(' '), "line {number}: unexpected indented line {raw:?}");
        let mut words = trimmed.split_whitespace();
        let command = words.next().unwrap_or_default();
        match command {
            "clear" => sections.push(Section::default()),
            "load" => {
                let section = sections.last_mut().unwrap_or_else(|| unreachable!());
                while i < lines.len() && (lines[i].starts_with(' ') || lines[i].trim().is_empty()) {
                    let number = i + 1;
                    let body = lines[i].trim();
                    i += 1;
                    if body.is_empty() || body.starts_with('#') {
                        continue;
                    }
                    if body.starts_with('{') {
                        section.loads.push(Load { labels: labels(body, number), entries: Vec::new() });
                        continue;
                    }
                    let load =
                        section.loads.last_mut().unwrap_or_else(|| panic!("line {number}: entry before any stream"));
                    let (time, rest) =
                        body.split_once(' ').unwrap_or_else(|| panic!("line {number}: bad entry {body:?}"));
                    let rest = rest.trim_start();
                    if let Some((from, step)) = time.split_once('+') {
                        let (count, rest) =
                            rest.split_once(' ').unwrap_or_else(|| panic!("line {number}: bad repetition"));
                        let count: i64 = count
                            .trim_start_matches('x')
                            .parse()
                            .unwrap_or_else(|_| panic!("line {number}: bad count"));
                        let (template, metadata) = quoted(rest, number);
                        let metadata = Labels::from_pairs(pairs(metadata, number)).unwrap();
                        let (from, step) = (duration_ns(from, number), duration_ns(step, number));
                        for k in 0..count {
                            load.entries.push(LogEntry {
                                t_ns: from + k * step,
                                line: template.replace("{i}", &k.to_string()),
                                metadata: metadata.clone(),
                            });
                        }
                    } else {
                        let (line, metadata) = quoted(rest, number);
                        let metadata = Labels::from_pairs(pairs(metadata, number)).unwrap();
                        load.entries.push(LogEntry { t_ns: duration_ns(time, number), line, metadata });
                    }
                }
            }
            "eval" | "eval_fail" => {
                let kind = match words.next() {
                    Some("logs") => Kind::Logs,
                    Some("instant") => Kind::Instant,
                    Some("range") => Kind::Range,
                    other => panic!("line {number}: unknown eval kind {other:?}"),
                };
                let mut eval = Eval {
                    line: number,
                    kind,
                    fail: command == "eval_fail",
                    query: String::new(),
                    start_ns: 0,
                    end_ns: 0,
                    step_ns: 0,
                    limit: 100,
                    direction: Direction::Backward,
                    ordered: false,
                    expected: Expected::Series(Vec::new()),
                    error_words: String::new(),
                };
                for word in words {
                    match word.split_once('=') {
                        Some(("start", v)) => eval.start_ns = duration_ns(v, number),
                        Some(("end", v)) => eval.end_ns = duration_ns(v, number),
                        Some(("at", v)) => {
                            eval.start_ns = duration_ns(v, number);
                            eval.end_ns = eval.start_ns;
                        }
                        Some(("step", v)) => eval.step_ns = duration_ns(v, number),
                        Some(("limit", v)) => {
                            eval.limit = v.parse().unwrap_or_else(|_| panic!("line {number}: bad limit"))
                        }
                        Some(("direction", "forward")) => eval.direction = Direction::Forward,
                        Some(("direction", "backward")) => eval.direction = Direction::Backward,
                        None if word == "ordered" => eval.ordered = true,
                        _ => panic!("line {number}: unknown eval parameter {word:?}"),
                    }
                }
                if eval.kind == Kind::Logs {
                    eval.expected = Expected::Streams(Vec::new());
                }
                while i < lines.len() && (lines[i].starts_with(' ') || lines[i].trim().is_empty()) {
                    let number = i + 1;
                    let body = lines[i].trim();
                    i += 1;
                    if body.is_empty() || body.starts_with('#') {
                        continue;
                    }
                    if let Some(query) = body.strip_prefix("query:") {
                        eval.query = query.trim().to_string();
                    } else if let Some(words) = body.strip_prefix("error:") {
                        eval.error_words = words.trim().to_string();
                    } else if let Some(value) = body.strip_prefix("scalar ") {
                        eval.expected = Expected::Scalar(
                            value.trim().parse().unwrap_or_else(|_| panic!("line {number}: bad scalar")),
                        );
                    } else if let Some(stream) = body.strip_prefix("stream ") {
                        let Expected::Streams(streams) = &mut eval.expected else {
                            panic!("line {number}: streams in a metric eval")
                        };
                        streams.push((format!("{:?}", labels(stream, number)), Vec::new()));
                    } else if body.starts_with('{') {
                        let (set, values) = split_labels(body, number);
                        let values: Vec<Option<f64>> = values
                            .split_whitespace()
                            .take_while(|v| !v.starts_with('#'))
                            .map(|v| {
                                if v == "_" {
                                    None
                                } else {
                                    Some(parse_value(v).unwrap_or_else(|| panic!("line {number}: bad value {v:?}")))
                                }
                            })
                            .collect();
                        let Expected::Series(series) = &mut eval.expected else {
                            panic!("line {number}: a series in a logs eval (use `stream {{...}}`)")
                        };
                        series.push((format!("{:?}", labels(set, number)), values));
                    } else {
                        let Expected::Streams(streams) = &mut eval.expected else {
                            panic!("line {number}: unexpected line {body:?}")
                        };
                        let stream =
                            streams.last_mut().unwrap_or_else(|| panic!("line {number}: entry before any stream"));
                        let (time, rest) = body.split_once(' ').unwrap_or_else(|| panic!("line {number}: bad entry"));
                        let (line, _) = quoted(rest, number);
                        stream.1.push((duration_ns(time, number), line));
                    }
                }
                assert!(!eval.query.is_empty(), "line {number}: eval without a query");
                sections.last_mut().unwrap_or_else(|| unreachable!()).evals.push(eval);
            }
            other => panic!("line {number}: unknown command {other:?}"),
        }
    }
    sections
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// Runs one case; the problem, if any.
fn run(storage: &Storage, eval: &Eval) -> Result<(), String> {
    let params = QueryParams {
        tenant: "fake",
        start_ns: eval.start_ns,
        end_ns: eval.end_ns,
        step_ns: if eval.kind == Kind::Range { eval.step_ns } else { 0 },
        direction: eval.direction,
        limit: eval.limit,
        max_series: 1000,
        deadline: Instant::now() + Duration::from_secs(60),
    };
    let outcome = parse(&eval.query).map_err(|e| e.to_string()).and_then(|expr| {
        let log = matches!(expr, super::syntax::Expr::Log(_));
        if log != (eval.kind == Kind::Logs) {
            return Err(format!("query kind does not match `eval {:?}`", eval.kind));
        }
        evaluate(storage.logs(), &expr, &params).map_err(|e| e.to_string())
    });
    if eval.fail {
        return match outcome {
            Ok(result) => Err(format!("expected an error, got {result:?}")),
            Err(message) if message.contains(&eval.error_words) => Ok(()),
            Err(message) => Err(format!("error {message:?} lacks {:?}", eval.error_words)),
        };
    }
    let result = outcome?;
    match (&eval.expected, result) {
        (Expected::Streams(expected), QueryResult::Streams(streams)) => {
            let got: Vec<(String, Vec<(i64, String)>)> = streams
                .iter()
                .map(|s| (format!("{:?}", s.labels), s.entries.iter().map(|e| (e.t_ns, e.line.clone())).collect()))
                .collect();
            if &got != expected {
                return Err(format!("streams differ:\n  got      {got:?}\n  expected {expected:?}"));
            }
            Ok(())
        }
        (Expected::Scalar(expected), QueryResult::Scalar { value, .. }) => {
            if close(*expected, value) {
                Ok(())
            } else {
                Err(format!("scalar {value}, expected {expected}"))
            }
        }
        (Expected::Series(expected), QueryResult::Series { series, .. }) => {
            let mut got: Vec<(String, Vec<Option<f64>>)> =
                series.iter().map(|s| (format!("{:?}", s.labels), s.values.clone())).collect();
            let mut expected = expected.clone();
            if !eval.ordered {
                got.sort_by(|a, b| a.0.cmp(&b.0));
                expected.sort_by(|a, b| a.0.cmp(&b.0));
            }
            let same = got.len() == expected.len()
                && got.iter().zip(&expected).all(|((gl, gv), (el, ev))| {
                    gl == el
                        && gv.len() == ev.len()
                        && gv.iter().zip(ev).all(|(g, e)| match (g, e) {
                            (Some(g), Some(e)) => close(*g, *e),
                            (None, None) => true,
                            _ => false,
                        })
                });
            if same { Ok(()) } else { Err(format!("series differ:\n  got      {got:?}\n  expected {expected:?}")) }
        }
        (expected, got) => Err(format!("expected {expected:?}, got {got:?}")),
    }
}

fn open_storage(dir: &Path) -> Storage {
    let options = StorageOptions {
        logs: LogsOptions { retention_ns: None, ..LogsOptions::default() },
        ..StorageOptions::default()
    };
    Storage::open(dir, options).unwrap_or_else(|error| panic!("cannot open storage: {error}"))
}

#[test]
fn golden_scripts() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/logql");
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
            let dir = tempfile::tempdir().unwrap();
            let storage = open_storage(dir.path());
            for load in &section.loads {
                storage
                    .logs()
                    .append("fake", &[StreamEntries { labels: &load.labels, entries: &load.entries }])
                    .unwrap_or_else(|error| panic!("{name}: load failed: {error}"));
            }
            for phase in ["head", "files"] {
                if phase == "files" {
                    storage.logs().flush_all().unwrap();
                }
                for eval in &section.evals {
                    cases += usize::from(phase == "head");
                    if let Err(problem) = run(&storage, eval) {
                        failures.push(format!("{name}:{} ({phase}) {}\n  {problem}", eval.line, eval.query));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {cases} cases failed:\n{}", failures.len(), failures.join("\n"));
    eprintln!("logql golden scripts: {cases} cases in {} files passed, from the head and from files", files.len());
}
