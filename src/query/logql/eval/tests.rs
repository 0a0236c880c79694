//! Evaluator checks over the real store in a temporary directory; the query language's cases
//! as a whole live in the golden scripts (tests/logs_api).

use std::time::{Duration, Instant};

use tripod_storage::labels::Labels;
use tripod_storage::logs::{Direction, LogEntry, LogsAppender, LogsOptions, StreamEntries};
use tripod_storage::{Storage, StorageOptions};

use super::{EvalError, QueryParams, QueryResult, evaluate};
use crate::query::logql::syntax::parse;

const SECOND: i64 = 1_000_000_000;

fn storage() -> (tempfile::TempDir, Storage) {
    let dir = tempfile::tempdir().unwrap();
    let options = StorageOptions {
        logs: LogsOptions { retention_ns: None, ..LogsOptions::default() },
        ..StorageOptions::default()
    };
    let storage = Storage::open(dir.path(), options).unwrap();
    (dir, storage)
}

fn push(storage: &Storage, labels: &[(&str, &str)], entries: &[(i64, &str)]) {
    let labels = Labels::from_pairs(labels.iter().copied()).unwrap();
    let entries: Vec<LogEntry> = entries
        .iter()
        .map(|(t, line)| LogEntry { t_ns: *t, line: line.to_string(), metadata: Labels::empty() })
        .collect();
    storage.logs().append("fake", &[StreamEntries { labels: &labels, entries: &entries }]).unwrap();
}

fn params(start_ns: i64, end_ns: i64, step_ns: i64) -> QueryParams<'static> {
    QueryParams {
        tenant: "fake",
        start_ns,
        end_ns,
        step_ns,
        direction: Direction::Backward,
        limit: 100,
        max_series: 500,
        deadline: Instant::now() + Duration::from_secs(30),
    }
}

fn run(storage: &Storage, query: &str, params: &QueryParams<'_>) -> Result<QueryResult, EvalError> {
    evaluate(storage.logs(), &parse(query).unwrap(), params)
}

#[test]
fn log_queries_merge_streams_in_direction_up_to_the_limit() {
    let (_dir, storage) = storage();
    push(&storage, &[("app", "a")], &[(SECOND, "a1"), (3 * SECOND, "a3"), (5 * SECOND, "a5")]);
    push(&storage, &[("app", "b")], &[(2 * SECOND, "b2"), (4 * SECOND, "b4")]);
    let mut p = params(0, 10 * SECOND, 0);
    p.limit = 3;
    let QueryResult::Streams(streams) = run(&storage, r#"{app=~"a|b"}"#, &p).unwrap() else { panic!() };
    let lines: Vec<Vec<&str>> = streams.iter().map(|s| s.entries.iter().map(|e| e.line.as_str()).collect()).collect();
    assert_eq!(lines, vec![vec!["a5", "a3"], vec!["b4"]]);
    p.direction = Direction::Forward;
    let QueryResult::Streams(streams) = run(&storage, r#"{app=~"a|b"}"#, &p).unwrap() else { panic!() };
    let lines: Vec<Vec<&str>> = streams.iter().map(|s| s.entries.iter().map(|e| e.line.as_str()).collect()).collect();
    assert_eq!(lines, vec![vec!["a1", "a3"], vec!["b2"]]);
    // The end is exclusive.
    let p = params(0, 5 * SECOND, 0);
    let QueryResult::Streams(streams) = run(&storage, r#"{app="a"}"#, &p).unwrap() else { panic!() };
    assert_eq!(streams[0].entries.len(), 2);
}

#[test]
fn parsed_labels_split_streams() {
    let (_dir, storage) = storage();
    push(&storage, &[("app", "a")], &[(SECOND, "level=info"), (2 * SECOND, "level=error"), (3 * SECOND, "level=info")]);
    let QueryResult::Streams(streams) = run(&storage, r#"{app="a"} | logfmt"#, &params(0, 10 * SECOND, 0)).unwrap()
    else {
        panic!()
    };
    assert_eq!(streams.len(), 2);
    assert_eq!(streams[0].labels, Labels::from_pairs([("app", "a"), ("level", "error")]).unwrap());
    assert_eq!(streams[0].stream_labels, Labels::from_pairs([("app", "a")]).unwrap());
    assert_eq!(streams[1].entries.len(), 2);
    assert_eq!(streams[1].entries[0].parsed, vec![("level".to_string(), "info".to_string())]);
}

#[test]
fn range_aggregations_over_steps() {
    let (_dir, storage) = storage();
    // One entry a second for 60 s; every tenth is an error.
    let entries: Vec<(i64, String)> =
        (1..=60).map(|s| (s * SECOND, if s % 10 == 0 { format!("error {s}") } else { format!("ok {s}") })).collect();
    let borrowed: Vec<(i64, &str)> = entries.iter().map(|(t, l)| (*t, l.as_str())).collect();
    push(&storage, &[("app", "a")], &borrowed);
    let p = params(30 * SECOND, 60 * SECOND, 15 * SECOND);
    let QueryResult::Series { steps, series } = run(&storage, r#"count_over_time({app="a"}[10s])"#, &p).unwrap() else {
        panic!()
    };
    assert_eq!(steps, vec![30 * SECOND, 45 * SECOND, 60 * SECOND]);
    assert_eq!(series[0].values, vec![Some(10.0), Some(10.0), Some(10.0)]);
    let QueryResult::Series { series, .. } = run(&storage, r#"rate({app="a"} |= "error" [20s])"#, &p).unwrap() else {
        panic!()
    };
    // Errors at 20, 30 in (10, 30]; 30, 40 in (25, 45]; 50, 60 in (40, 60].
    assert_eq!(series[0].values, vec![Some(0.1), Some(0.1), Some(0.1)]);
    let QueryResult::Series { series, .. } =
        run(&storage, r#"sum(count_over_time({app="a"}[1m])) + 1"#, &params(0, 60 * SECOND, 0)).unwrap()
    else {
        panic!()
    };
    assert_eq!(series[0].values, vec![Some(61.0)]);
    let QueryResult::Series { series, .. } =
        run(&storage, r#"absent_over_time({app="a"}[5s])"#, &params(100 * SECOND, 100 * SECOND, 0)).unwrap()
    else {
        panic!()
    };
    assert_eq!(series[0].labels, Labels::from_pairs([("app", "a")]).unwrap());
    assert_eq!(series[0].values, vec![Some(1.0)]);
}

#[test]
fn unwrapped_values_and_grouping() {
    let (_dir, storage) = storage();
    push(
        &storage,
        &[("app", "a")],
        &[(SECOND, "path=/x latency=0.5"), (2 * SECOND, "path=/y latency=1.5"), (3 * SECOND, "path=/x latency=2.5")],
    );
    let p = params(10 * SECOND, 10 * SECOND, 0);
    let QueryResult::Series { series, .. } =
        run(&storage, r#"avg_over_time({app="a"} | logfmt | unwrap latency [1m]) by (path)"#, &p).unwrap()
    else {
        panic!()
    };
    let got: Vec<(String, Option<f64>)> = series.iter().map(|s| (format!("{:?}", s.labels), s.values[0])).collect();
    assert_eq!(got, vec![(r#"{path="/x"}"#.to_string(), Some(1.5)), (r#"{path="/y"}"#.to_string(), Some(1.5))]);
    let error = run(&storage, r#"sum_over_time({app="a"} | json | unwrap latency [1m])"#, &p).unwrap_err();
    assert!(error.to_string().contains("pipeline error"), "{error}");
}

#[test]
fn vector_operations() {
    let (_dir, storage) = storage();
    for (app, count) in [("a", 3), ("b", 1), ("c", 2)] {
        let entries: Vec<(i64, &str)> = (1..=count).map(|s| (s * SECOND, "x")).collect();
        push(&storage, &[("app", app), ("team", "t")], &entries);
    }
    let p = params(10 * SECOND, 10 * SECOND, 0);
    let values = |query: &str| -> Vec<(String, f64)> {
        let QueryResult::Series { series, .. } = run(&storage, query, &p).unwrap() else { panic!("{query}") };
        series.iter().map(|s| (s.labels.get("app").unwrap_or("").to_string(), s.values[0].unwrap())).collect()
    };
    assert_eq!(values(r#"topk(2, count_over_time({team="t"}[1m]))"#), vec![("a".into(), 3.0), ("c".into(), 2.0)]);
    assert_eq!(values(r#"sort_desc(count_over_time({team="t"}[1m]))"#)[0], ("a".into(), 3.0));
    assert_eq!(values(r#"count_over_time({team="t"}[1m]) > 1"#), vec![("a".into(), 3.0), ("c".into(), 2.0)]);
    assert_eq!(values(r#"count_over_time({team="t"}[1m]) > bool 1"#).len(), 3);
    assert_eq!(
        values(r#"count_over_time({app="a"}[1m]) / on (team) count_over_time({app="b"}[1m])"#),
        vec![(String::new(), 3.0)]
    );
    assert_eq!(values(r#"sum by (team) (count_over_time({team="t"}[1m]))"#), vec![(String::new(), 6.0)]);
    assert_eq!(values("vector(1)+vector(1)"), vec![(String::new(), 2.0)]);
    let QueryResult::Scalar { value, .. } = run(&storage, "2 * 3 + 1", &p).unwrap() else { panic!() };
    assert_eq!(value, 7.0);
}
