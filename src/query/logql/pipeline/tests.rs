//! Pipeline cases, as data: stages, an entry, and what comes out (dropped, or the line and
//! labels kept).

use tripod_storage::labels::Labels;

use super::{Outcome, Pipeline, PipelineState};
use crate::query::logql::syntax::{Expr, parse};

struct Case {
    stages: &'static str,
    line: &'static str,
    /// Structured metadata of the entry.
    metadata: &'static [(&'static str, &'static str)],
    /// `None`: dropped. Otherwise the line and `name=value` labels (sorted, stream labels
    /// `app=api` and `level=stream` included).
    expected: Option<(&'static str, &'static str)>,
}

fn run(stages: &str, line: &str, metadata: &[(&str, &str)]) -> Option<(String, String, Option<f64>)> {
    let query = format!(r#"{{app="api"}} {stages}"#);
    let Expr::Log(log) = parse(&query).unwrap_or_else(|error| panic!("{query}: {error}")) else { panic!() };
    let pipeline = Pipeline::new(&log.stages, true).unwrap_or_else(|error| panic!("{query}: {error}"));
    let stream = Labels::from_pairs([("app", "api"), ("level", "stream")]).unwrap();
    let metadata = Labels::from_pairs(metadata.iter().copied()).unwrap();
    let mut state = PipelineState::default();
    match pipeline.process(1_700_000_000_123_456_789, line, &stream, &metadata, &mut state) {
        Outcome::Dropped => None,
        Outcome::Kept => {
            let labels: Vec<String> =
                state.labels.pairs().iter().map(|(name, value)| format!("{name}={value}")).collect();
            Some((state.line(line).to_string(), labels.join(" "), state.value))
        }
    }
}

fn check(cases: &[Case]) {
    for case in cases {
        let got = run(case.stages, case.line, case.metadata);
        let got = got.as_ref().map(|(line, labels, _)| (line.as_str(), labels.as_str()));
        assert_eq!(got, case.expected, "stages {:?} over {:?}", case.stages, case.line);
    }
}

const JSON_LINE: &str =
    r#"{"level":"error","status":"503","duration":"1.5s","size":"20MB","client":"10.1.2.3","path":"/api/x"}"#;

#[test]
fn line_filters() {
    check(&[
        Case {
            stages: r#"|= "needle""#,
            line: "a needle here",
            metadata: &[],
            expected: Some(("a needle here", "app=api level=stream")),
        },
        Case { stages: r#"|= "needle""#, line: "nothing", metadata: &[], expected: None },
        Case { stages: r#"!= "health""#, line: "GET /health", metadata: &[], expected: None },
        Case {
            stages: r#"!= "health""#,
            line: "GET /x",
            metadata: &[],
            expected: Some(("GET /x", "app=api level=stream")),
        },
        Case {
            stages: r#"|= "a" or "b""#,
            line: "only b",
            metadata: &[],
            expected: Some(("only b", "app=api level=stream")),
        },
        Case { stages: r#"!= "a" or "b""#, line: "only b", metadata: &[], expected: None },
        Case {
            stages: r#"!= "a" or "b""#,
            line: "neither",
            metadata: &[],
            expected: Some(("neither", "app=api level=stream")),
        },
        Case {
            stages: r#"|~ "(?i)error|exception""#,
            line: "An ERROR",
            metadata: &[],
            expected: Some(("An ERROR", "app=api level=stream")),
        },
        Case { stages: r#"!~ "duration: [0-9]{3,}""#, line: "duration: 1234 ms", metadata: &[], expected: None },
        Case { stages: r#"|= "x" |= "y""#, line: "x alone", metadata: &[], expected: None },
        Case {
            stages: r#"|> "<_> GET <_>""#,
            line: "10.0.0.1 GET /x",
            metadata: &[],
            expected: Some(("10.0.0.1 GET /x", "app=api level=stream")),
        },
        Case { stages: r#"!> "<_> GET <_>""#, line: "10.0.0.1 GET /x", metadata: &[], expected: None },
        Case {
            stages: r#"|= ip("10.0.0.0/8")"#,
            line: "from 10.9.8.7:443 ok",
            metadata: &[],
            expected: Some(("from 10.9.8.7:443 ok", "app=api level=stream")),
        },
        Case {
            stages: r#"|= ip("192.168.1.1-192.168.1.9")"#,
            line: "from 192.168.1.20",
            metadata: &[],
            expected: None,
        },
        Case { stages: r#"!= ip("::1")"#, line: "peer ::1 closed", metadata: &[], expected: None },
    ]);
}

#[test]
fn parsers_and_label_filters() {
    check(&[
        Case {
            stages: "| json | status >= 500",
            line: JSON_LINE,
            metadata: &[],
            expected: Some((
                JSON_LINE,
                "app=api client=10.1.2.3 duration=1.5s level=stream level_extracted=error path=/api/x size=20MB status=503",
            )),
        },
        Case { stages: "| json | status < 500", line: JSON_LINE, metadata: &[], expected: None },
        Case {
            stages: "| json | duration > 1s and size >= 20MB",
            line: JSON_LINE,
            metadata: &[],
            expected: Some((
                JSON_LINE,
                "app=api client=10.1.2.3 duration=1.5s level=stream level_extracted=error path=/api/x size=20MB status=503",
            )),
        },
        Case { stages: "| json | duration > 2s or size > 20MB", line: JSON_LINE, metadata: &[], expected: None },
        Case {
            stages: r#"| json | client = ip("10.0.0.0/8")"#,
            line: JSON_LINE,
            metadata: &[],
            expected: Some((
                JSON_LINE,
                "app=api client=10.1.2.3 duration=1.5s level=stream level_extracted=error path=/api/x size=20MB status=503",
            )),
        },
        Case {
            stages: r#"| json p="path" | p =~ "/api/.*""#,
            line: JSON_LINE,
            metadata: &[],
            expected: Some((JSON_LINE, "app=api level=stream p=/api/x")),
        },
        Case {
            stages: "| json | path > 3",
            line: JSON_LINE,
            metadata: &[],
            expected: Some((
                JSON_LINE,
                "__error__=LabelFilterErr __error_details__=cannot convert \"/api/x\" of label path to a number app=api client=10.1.2.3 duration=1.5s level=stream level_extracted=error path=/api/x size=20MB status=503",
            )),
        },
        Case { stages: "| json | missing > 3", line: "{}", metadata: &[], expected: None },
        Case {
            stages: "| json | missing != 3",
            line: "{}",
            metadata: &[],
            expected: Some(("{}", "app=api level=stream")),
        },
        Case { stages: r#"| json | __error__ = """#, line: "not json", metadata: &[], expected: None },
        Case {
            stages: r#"| json | __error__ != """#,
            line: "not json",
            metadata: &[],
            expected: Some((
                "not json",
                "__error__=JSONParserErr __error_details__=expected ident at line 1 column 2 app=api level=stream",
            )),
        },
        Case {
            stages: "| logfmt | code == 200",
            line: "msg=ok code=200",
            metadata: &[],
            expected: Some(("msg=ok code=200", "app=api code=200 level=stream msg=ok")),
        },
        Case {
            stages: r#"| regexp "(?P<method>GET|POST) (?P<path>\\S+)""#,
            line: "POST /todos 201",
            metadata: &[],
            expected: Some(("POST /todos 201", "app=api level=stream method=POST path=/todos")),
        },
        Case {
            stages: r#"| pattern "<method> <path> <status>""#,
            line: "GET /x 404",
            metadata: &[],
            expected: Some(("GET /x 404", "app=api level=stream method=GET path=/x status=404")),
        },
        Case {
            stages: "| unpack",
            line: r#"{"_entry":"inner line","pod":"p1"}"#,
            metadata: &[],
            expected: Some(("inner line", "app=api level=stream pod=p1")),
        },
        Case {
            stages: r#"| trace_id = "abc""#,
            line: "x",
            metadata: &[("trace_id", "abc")],
            expected: Some(("x", "app=api level=stream trace_id=abc")),
        },
        Case { stages: r#"| trace_id = "abc""#, line: "x", metadata: &[("trace_id", "def")], expected: None },
    ]);
}

#[test]
fn formatters_drop_keep_and_decolorize() {
    check(&[
        Case {
            stages: "| drop level",
            line: "x",
            metadata: &[("trace_id", "t")],
            expected: Some(("x", "app=api trace_id=t")),
        },
        Case {
            stages: r#"| drop level="other", trace_id"#,
            line: "x",
            metadata: &[("trace_id", "t")],
            expected: Some(("x", "app=api level=stream")),
        },
        Case { stages: "| keep app", line: "x", metadata: &[("trace_id", "t")], expected: Some(("x", "app=api")) },
        Case {
            stages: r#"| json | drop __error__, __error_details__"#,
            line: "bad",
            metadata: &[],
            expected: Some(("bad", "app=api level=stream")),
        },
        Case {
            stages: "| decolorize",
            line: "\u{1b}[31mred\u{1b}[0m text",
            metadata: &[],
            expected: Some(("red text", "app=api level=stream")),
        },
        Case {
            stages: "| label_format lvl=level",
            line: "x",
            metadata: &[],
            expected: Some(("x", "app=api lvl=stream")),
        },
        Case {
            stages: r#"| line_format "{{.app}}: {{.level}}""#,
            line: "x",
            metadata: &[],
            expected: Some(("api: stream", "app=api level=stream")),
        },
        Case {
            stages: r#"| label_format both="{{.app}}-{{.level}}""#,
            line: "x",
            metadata: &[],
            expected: Some(("x", "app=api both=api-stream level=stream")),
        },
    ]);
}

#[test]
fn unwrap_takes_values() {
    let cases: [(&str, &str, Option<f64>); 5] = [
        ("| json | unwrap status", JSON_LINE, Some(503.0)),
        ("| json | unwrap duration(duration)", JSON_LINE, Some(1.5)),
        ("| json | unwrap bytes(size)", JSON_LINE, Some(20e6)),
        ("| json | unwrap path", JSON_LINE, None),
        ("| logfmt | unwrap latency", "latency=0.25", Some(0.25)),
    ];
    for (stages, line, expected) in cases {
        let (_, labels, value) = run(stages, line, &[]).unwrap();
        assert_eq!(value, expected, "{stages}");
        if expected.is_none() {
            assert!(labels.contains("__error__=SampleExtractionErr"), "{stages}: {labels}");
        }
    }
    let (_, labels, _) = run("| json | unwrap status", JSON_LINE, &[]).unwrap();
    assert!(!labels.contains("status="), "the unwrapped label leaves the labels: {labels}");
}

#[test]
fn store_filters_are_the_leading_substring_filters() {
    let Expr::Log(log) = parse(r#"{a="b"} |= "x" != "y" |~ "z" | json |= "w" | line_format "{{.a}}" |= "v""#).unwrap()
    else {
        panic!()
    };
    let pipeline = Pipeline::new(&log.stages, false).unwrap();
    use tripod_storage::logs::LineFilter;
    assert_eq!(
        pipeline.store_filters(),
        vec![LineFilter::Contains("x".into()), LineFilter::NotContains("y".into()), LineFilter::Contains("w".into())]
    );
    assert!(Pipeline::new(&log.stages, false).is_ok());
    let Expr::Metric(_) = parse(r#"sum_over_time({a="b"} | json | unwrap x [1m])"#).unwrap() else { panic!() };
}

#[test]
fn restricted_parsers_give_grouped_labels_as_whole_ones() {
    // A pipeline told which labels are read after it (a range aggregation's `by`) must give
    // those labels, the error and the drop decision exactly as the whole pipeline does.
    let lines = [
        JSON_LINE,
        r#"{"level":"info","nested":{"status":"200","deep":{"a-b":1.5e3}},"list":[1,{"x":2}],"n":null,"ok":true}"#,
        r#"{"level":"warn","level":"debug","2xx":"yes","status.code":404,"big":18446744073709551615}"#,
        r#"{"app":"from-json","esc\"aped":"a\u00e9\n","nested":{"status":"x"},"nested_status":"flat"}"#,
        r#"  {"status":"500" , "duration":"250ms"}  "#,
        r#"{"status":"500"} trailing"#,
        r#"[1,2,3]"#,
        r#""just a string""#,
        "not json at all",
        r#"{"unterminated":"#,
        "",
    ];
    let pipelines: [(&str, &[&str]); 9] = [
        ("| json", &["status"]),
        ("| json", &["level", "nested_status"]),
        ("| json", &["nested_deep_a_b", "_2xx", "status_code"]),
        ("| json", &["app_extracted", "esc_aped"]),
        ("| json", &["n", "ok", "big", "list"]),
        (r#"| json | level="error""#, &["status"]),
        (r#"| json | duration > 1s or status =~ "5.." "#, &["path"]),
        (r#"| json | line_format "{{.status}}" | json"#, &["status"]),
        ("| json | __error__=\"\"", &["status"]),
    ];
    let stream = Labels::from_pairs([("app", "api"), ("level", "stream")]).unwrap();
    for (stages, by) in pipelines {
        let query = format!(r#"{{app="api"}} {stages}"#);
        let Expr::Log(log) = parse(&query).unwrap() else { panic!() };
        let whole = Pipeline::new(&log.stages, false).unwrap();
        let mut restricted = Pipeline::new(&log.stages, false).unwrap();
        let names: Vec<String> = by.iter().map(|name| name.to_string()).collect();
        restricted.restrict_output(&names);
        for line in lines {
            let outcome = |pipeline: &Pipeline| {
                let mut state = PipelineState::default();
                let outcome = pipeline.process(1, line, &stream, &Labels::empty(), &mut state);
                let grouped: Vec<(String, Option<String>)> =
                    by.iter().map(|name| (name.to_string(), state.labels.get(name).map(str::to_string))).collect();
                (outcome, grouped, state.labels.error(), state.labels.get("__error_details__").map(str::to_string))
            };
            assert_eq!(outcome(&restricted), outcome(&whole), "{stages} by {by:?} over {line:?}");
        }
    }
}

#[test]
fn json_flattens_in_one_pass_as_a_tree_would() {
    check(&[
        Case {
            stages: "| json",
            line: r#"{"a":{"b":{"c":"deep"}},"n":1.5,"i":-3,"t":true,"z":null,"arr":[1,2],"x-y":"v","9lives":"cat"}"#,
            metadata: &[],
            expected: Some((
                r#"{"a":{"b":{"c":"deep"}},"n":1.5,"i":-3,"t":true,"z":null,"arr":[1,2],"x-y":"v","9lives":"cat"}"#,
                "_9lives=cat a_b_c=deep app=api i=-3 level=stream n=1.5 t=true x_y=v z=",
            )),
        },
        Case {
            stages: "| json",
            line: r#"{"level":"info","app":"other"}"#,
            metadata: &[],
            expected: Some((
                r#"{"level":"info","app":"other"}"#,
                "app=api app_extracted=other level=stream level_extracted=info",
            )),
        },
    ]);
}

#[test]
fn decolorize_removes_exactly_what_the_ansi_escape_pattern_matches() {
    let pattern = regex::Regex::new(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]").unwrap();
    let pieces =
        ["\x1b", "[", "31", ";", "?", "1", " ", "/", "m", "K", "@", "~", "Z", "\\", "_", "[", "é", "x", "\x7f", "`"];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..20_000 {
        let mut line = String::new();
        for _ in 0..(state % 12) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            line.push_str(pieces[(state % pieces.len() as u64) as usize]);
        }
        assert_eq!(super::without_ansi_escapes(&line), pattern.replace_all(&line, ""), "{line:?}");
    }
    assert_eq!(super::without_ansi_escapes("\x1b[1;31merror\x1b[0m: disk full"), "error: disk full");
}
