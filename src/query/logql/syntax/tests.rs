//! Parser cases, as data: queries that parse (with their canonical form) and queries that fail
//! (with the position and words of the error).

use super::ast::{Expr, MetricExpr, Stage};
use super::parse;

/// Each query parses, prints as the expected canonical form, and that form parses to the same
/// tree.
fn check_canonical(cases: &[(&str, &str)]) {
    for (query, canonical) in cases {
        let expr = parse(query).unwrap_or_else(|error| panic!("{query}: {error}"));
        assert_eq!(expr.to_string(), *canonical, "canonical form of {query}");
        let again = parse(canonical).unwrap_or_else(|error| panic!("{canonical}: {error}"));
        assert_eq!(again, expr, "round trip of {query}");
    }
}

/// Each query fails with an error message containing the expected words at the expected column.
fn check_errors(cases: &[(&str, usize, &str)]) {
    for (query, column, words) in cases {
        let error = match parse(query) {
            Ok(expr) => panic!("{query} parsed as {expr}"),
            Err(error) => error,
        };
        assert!(error.message.contains(words), "{query}: {error} lacks {words:?}");
        assert_eq!(error.position.column, *column, "{query}: {error}");
        assert!(error.to_string().starts_with("parse error at line 1, col "), "{error}");
    }
}

#[test]
fn log_queries() {
    check_canonical(&[
        (r#"{job="traefik"}"#, r#"{job="traefik"}"#),
        (r#"{job="traefik",log_type="access"}"#, r#"{job="traefik", log_type="access"}"#),
        (r#"{a!="b", c=~"d.*", e!~"f"}"#, r#"{a!="b", c=~"d.*", e!~"f"}"#),
        (r#"{a="b"} |= "x" != "y" |~ "z+" !~ "w""#, r#"{a="b"} |= "x" != "y" |~ "z+" !~ "w""#),
        (r#"{a="b"} |= "x" or "y" or ip("10.0.0.0/8")"#, r#"{a="b"} |= "x" or "y" or ip("10.0.0.0/8")"#),
        (r#"{a="b"} |> "<_> GET <_>" !> "<_> /health <_>""#, r#"{a="b"} |> "<_> GET <_>" !> "<_> /health <_>""#),
        (r#"{a="b"} | json"#, r#"{a="b"} | json"#),
        (r#"{a="b"} | json first="items[0]", host="req.host""#, r#"{a="b"} | json first="items[0]", host="req.host""#),
        (r#"{a="b"} | logfmt --strict --keep-empty"#, r#"{a="b"} | logfmt --strict --keep-empty"#),
        (r#"{a="b"} | logfmt msg="message""#, r#"{a="b"} | logfmt msg="message""#),
        (r#"{a="b"} | regexp "(?P<ip>\\S+) (?P<method>\\w+)""#, r#"{a="b"} | regexp "(?P<ip>\\S+) (?P<method>\\w+)""#),
        (r#"{a="b"} | pattern "<ip> - <_> <method>""#, r#"{a="b"} | pattern "<ip> - <_> <method>""#),
        (r#"{a="b"} | unpack"#, r#"{a="b"} | unpack"#),
        (r#"{a="b"} | json | status >= 400 and status < 500"#, r#"{a="b"} | json | status>=400 and status<500"#),
        (r#"{a="b"} | json | status >= 400, method="GET""#, r#"{a="b"} | json | status>=400 and method="GET""#),
        (r#"{a="b"} | json | a="x" or b="y" and c="z""#, r#"{a="b"} | json | (a="x" or b="y" and c="z")"#),
        (
            r#"{a="b"} | logfmt | duration > 250ms or size >= 20MB"#,
            r#"{a="b"} | logfmt | (duration>250ms or size>=20MB)"#,
        ),
        (r#"{a="b"} | logfmt | (a="x" or b="y") and c!~"z""#, r#"{a="b"} | logfmt | (a="x" or b="y") and c!~"z""#),
        (
            r#"{a="b"} | logfmt | addr = ip("192.168.0.0-192.168.0.255")"#,
            r#"{a="b"} | logfmt | addr=ip("192.168.0.0-192.168.0.255")"#,
        ),
        (r#"{a="b"} | __error__ = """#, r#"{a="b"} | __error__="""#),
        (r#"{a="b"} | line_format "{{.status}} {{.path}}""#, r#"{a="b"} | line_format "{{.status}} {{.path}}""#),
        (
            r#"{a="b"} | label_format dst=src, lvl=`{{ ToUpper .level }}`"#,
            r#"{a="b"} | label_format dst=src, lvl="{{ ToUpper .level }}""#,
        ),
        (r#"{a="b"} | drop a, b="x" | keep c, d=~"y.*""#, r#"{a="b"} | drop a, b="x" | keep c, d=~"y.*""#),
        (r#"{a="b"} | decolorize"#, r#"{a="b"} | decolorize"#),
        ("{a=\"b\"}\n  # a comment\n  |= \"x\"", r#"{a="b"} |= "x""#),
    ]);
}

#[test]
fn metric_queries() {
    check_canonical(&[
        (r#"count_over_time({a="b"}[5m])"#, r#"count_over_time({a="b"} [5m])"#),
        (r#"rate({a="b"} |= "x" [1m])"#, r#"rate({a="b"} |= "x" [1m])"#),
        (r#"rate({a="b"}[1m] |= "x")"#, r#"rate({a="b"} |= "x" [1m])"#),
        (r#"rate(({a="b"} |= "x")[1m])"#, r#"rate({a="b"} |= "x" [1m])"#),
        (r#"bytes_over_time({a="b"}[1h] offset 1d)"#, r#"bytes_over_time({a="b"} [1h] offset 1d)"#),
        (r#"bytes_rate({a="b"}[90s])"#, r#"bytes_rate({a="b"} [1m30s])"#),
        (r#"absent_over_time({a="b"}[5m])"#, r#"absent_over_time({a="b"} [5m])"#),
        (
            r#"sum_over_time({a="b"} | logfmt | unwrap bytes(size) [5m]) by (host)"#,
            r#"sum_over_time({a="b"} | logfmt | unwrap bytes(size) [5m]) by (host)"#,
        ),
        (
            r#"quantile_over_time(0.99, {a="b"} | json | unwrap duration_seconds(latency) | __error__="" [5m]) without (pod)"#,
            r#"quantile_over_time(0.99, {a="b"} | json | unwrap duration(latency) | __error__="" [5m]) without (pod)"#,
        ),
        (
            r#"rate_counter({a="b"} | json | unwrap requests [5m])"#,
            r#"rate_counter({a="b"} | json | unwrap requests [5m])"#,
        ),
        (r#"sum by (level) (count_over_time({a="b"}[5m]))"#, r#"sum by (level) (count_over_time({a="b"} [5m]))"#),
        (r#"sum(count_over_time({a="b"}[5m])) by (level)"#, r#"sum by (level) (count_over_time({a="b"} [5m]))"#),
        (r#"topk(10, rate({a="b"}[5m]))"#, r#"topk(10, rate({a="b"} [5m]))"#),
        (r#"sort_desc(rate({a="b"}[5m]))"#, r#"sort_desc(rate({a="b"} [5m]))"#),
        (
            r#"sum(rate({a="b"}[5m])) / sum(rate({c="d"}[5m])) * 100"#,
            r#"sum(rate({a="b"} [5m])) / sum(rate({c="d"} [5m])) * 100"#,
        ),
        (r#"1 + 2 * 3"#, r#"1 + 2 * 3"#),
        (r#"(1 + 2) * 3"#, r#"(1 + 2) * 3"#),
        (r#"2 ^ 3 ^ 2"#, r#"2 ^ 3 ^ 2"#),
        (r#"-1"#, r#"-1"#),
        (r#"vector(1)+vector(1)"#, r#"vector(1) + vector(1)"#),
        (r#"rate({a="b"}[5m]) > bool 1"#, r#"rate({a="b"} [5m]) > bool 1"#),
        (
            r#"rate({a="b"}[5m]) / on (host) group_left (team) rate({c="d"}[5m])"#,
            r#"rate({a="b"} [5m]) / on (host) group_left (team) rate({c="d"} [5m])"#,
        ),
        (
            r#"rate({a="b"}[5m]) and ignoring (x) rate({c="d"}[5m])"#,
            r#"rate({a="b"} [5m]) and ignoring (x) rate({c="d"} [5m])"#,
        ),
        (
            r#"label_replace(rate({a="b"}[5m]), "dst", "$1", "src", "(.*)")"#,
            r#"label_replace(rate({a="b"} [5m]), "dst", "$1", "src", "(.*)")"#,
        ),
    ]);
}

#[test]
fn labels_may_be_named_like_keywords() {
    let expr = parse(r#"avg_over_time({a="b"} | json | unwrap duration [5m]) by (json)"#).unwrap();
    let Expr::Metric(MetricExpr::Range { range, grouping, .. }) = expr else { panic!() };
    assert_eq!(range.unwrap_stage().unwrap().label, "duration");
    assert_eq!(grouping.unwrap().labels, vec!["json"]);
    let expr = parse(r#"{a="b"} | json | duration > 1000000000"#).unwrap();
    let Expr::Log(log) = expr else { panic!() };
    assert!(matches!(log.stages[1], Stage::LabelFilter(_)));
}

#[test]
fn syntax_errors_name_position_and_problem() {
    check_errors(&[
        (r#"{job="traefik", status_code >= 500} or {job="x"}"#, 29, "unexpected >=, expecting = or != or =~ or !~"),
        (r#"{}"#, 1, "at least one matcher that does not match the empty string"),
        (r#"{a=~".*"}"#, 1, "at least one matcher that does not match the empty string"),
        (r#"{a="b""#, 7, "expecting , or }"),
        (r#"{a=b}"#, 4, "expecting quoted label value"),
        (r#"{a="b"} |~ "(""#, 12, "invalid regular expression"),
        (r#"{a="b"} | regexp "(\\w+)""#, 18, "named capture"),
        (r#"{a="b"} | foo"#, 14, "unexpected end of query"),
        (r#"{a="b"} | json | x > "y""#, 20, "cannot compare with a string"),
        (r#"{a="b"} | logfmt --fast"#, 18, "unknown logfmt flag --fast"),
        (r#"count_over_time({a="b"})"#, 24, "expecting a pipeline stage or a range"),
        (r#"count_over_time({a="b"}[5])"#, 25, "range duration"),
        (r#"sum_over_time({a="b"}[5m])"#, 1, "invalid aggregation sum_over_time without unwrap"),
        (r#"count_over_time({a="b"} | logfmt | unwrap x [5m])"#, 1, "invalid aggregation count_over_time with unwrap"),
        (r#"count_over_time({a="b"}[5m]) by (x)"#, 1, "grouping not allowed for count_over_time"),
        (r#"topk(0.5, rate({a="b"}[5m]))"#, 6, "k must be a positive integer"),
        (r#"sum(1)"#, 7, "needs a vector"),
        (r#"1 > 2"#, 3, "must use bool"),
        (r#"1 and vector(1)"#, 3, "set operator and not allowed"),
        (r#"rate({a="b"}[5m]) + {a="b"}"#, 21, "a log query cannot be used here"),
        (r#"{a="b"} + 1"#, 9, "unexpected +, expecting end of query"),
        (r#"rate({a="b"}[5m]) +"#, 20, "unexpected end of query"),
        (r#"label_replace(rate({a="b"}[5m]), "1x", "", "a", "b")"#, 34, "invalid destination label name"),
        (r#"{a="b"} |= ip("300.1.1.1")"#, 12, "invalid ip pattern"),
        (r#"{a="b"} |~ ip("10.0.0.1")"#, 12, "ip() can only be used with |= and !="),
    ]);
}

#[test]
fn every_seed_scenario_query_parses() {
    let queries = [
        r#"{job="traefik", log_type="access"}"#,
        r#"{job="traefik", log_type="access"} | json"#,
        r#"{job="traefik", log_type="access"} | json | status_code >= 400 and status_code < 500"#,
        r#"{job="traefik", log_type="access"} | json | status_code >= 500"#,
        r#"{job="traefik", log_type="access"} | json | status_code = 200"#,
        r#"{job="traefik", log_type="access"} | json | status_code = 414"#,
        r#"{job="traefik", log_type="access"} | json | backend_name =~ ".*ai-orchestrator.*""#,
        r#"{job="traefik", log_type="access"} | json | request_path =~ "/api/v1/chat.*""#,
        r#"{job="traefik", log_type="access"} | json | request_method = "POST""#,
        r#"{job="traefik", log_type="access"} | json | duration > 1000000000"#,
        r#"{job="traefik", status_code="404"}"#,
        r#"sum by (backend_name) (rate({job="traefik"} | json | __error__="" [5m]))"#,
        r#"topk(10, sum by (request_path) (avg_over_time({job="traefik", log_type="access"} | json | unwrap duration [5m])))"#,
        r#"sum by (status_code) (rate({job="traefik", log_type="access"} | json [5m]))"#,
        r#"sum(rate({job="traefik", log_type="access"} | json | status_code >= 500 [5m]))"#,
        r#"topk(10, sum by (request_path) (rate({job="traefik"} | json [5m])))"#,
        r#"sum by (status_code) (count_over_time({job="traefik"} | json [5m]))"#,
        r#"topk(20, avg_over_time({job="traefik"} | json | unwrap duration [10m])) by (request_path)"#,
        r#"{job="ai-orchestrator"}"#,
        r#"{job="ai-orchestrator"} | json | level = "ERROR""#,
        r#"{job="ai-orchestrator"} | json | request_id = "abc-123-def""#,
        r#"{job="ai-orchestrator"} | json | duration_ms > 5000"#,
        r#"{job=~"traefik|ai-orchestrator"} | json | request_id = "abc-123""#,
        r#"{namespace="tp2devops", app="backend"}"#,
        r#"{namespace="tp2devops"} |= "ERROR""#,
        r#"{namespace="tp2devops"} | json | traceId="abc123""#,
        r#"rate({namespace="tp2devops"} |= "ERROR" [5m])"#,
        r#"{namespace="tp2devops"} | json | level="ERROR" | todoId > 100"#,
        r#"{namespace="tp2devops", app="backend"} | json | duration > 500"#,
        r#"{container_name="timemanager-backend"} |= "ERROR""#,
        r#"{container_name="timemanager-backend"} | json | duration > 1000"#,
        r#"{container_name="timemanager-backend"} |= "auth""#,
        r#"{container="ecommerce-dashboard"} != "health""#,
        r#"{container="ecommerce-dashboard"} |~ "error|exception|failed""#,
        r#"{container="ecommerce-dashboard"} |~ "GET|POST""#,
        r#"{container="ecommerce-dashboard"} |~ "Traceback""#,
        r#"{container="ecommerce-dashboard"} | json | level="error" | line_format "{{.timestamp}} - {{.message}}""#,
        r#"{container="ecommerce-postgres"} |~ "duration: [0-9]{3,}""#,
        r#"{container="ecommerce-postgres"} |~ "deadlock""#,
        r#"{job=~".+"} |~ "(?i)error|exception|failed""#,
        r#"rate({container="ecommerce-dashboard"}[1m])"#,
        r#"count_over_time({container="ecommerce-dashboard"}[5m])"#,
        r#"sum(count_over_time({job=~".+"} [5m])) by (level)"#,
        r#"sum(count_over_time({job=~".+"}[5m])) by (container)"#,
        r#"sum(rate({job=~".+"}[5m])) by (container)"#,
        r#"sum(rate({container="ecommerce-dashboard"} |= "ERROR" [5m])) / sum(rate({container="ecommerce-dashboard"} [5m])) * 100"#,
        r#"topk(5, sum(count_over_time({job=~".+"} |~ "(?i)error" [1h])) by (container))"#,
        r#"avg_over_time({container="ecommerce-dashboard"} | json | unwrap response_time [5m])"#,
        r#"sum(rate({container="ecommerce-dashboard"} |= "ERROR" [5m])) > 10"#,
        // Grafana's own queries.
        r#"sum by (level, detected_level) (count_over_time({job="x"} |= "err" | drop __error__ [1m]))"#,
        r#"{job="x"} | label_format log_line_contains_trace_id=`{{ contains "abc" __line__ }}` | log_line_contains_trace_id="true" or trace_id="abc""#,
    ];
    for query in queries {
        let expr = parse(query).unwrap_or_else(|error| panic!("{query}: {error}"));
        assert_eq!(parse(&expr.to_string()).unwrap(), expr, "{query}");
    }
}
