//! Parser tests: precedence (shown by the canonical print, which parenthesises every binary
//! field expression and every nested spanset operand), every literal form, and the positions
//! of errors.

use tripod_storage::traces::{AttributeScope, CompareOp as StoreOp, SpanCondition, SpanKind, StatusCode};

use super::ast::{FieldExpr, SpansetExpr, Static};
use super::parse;
use super::pushdown::span_filter;

fn canonical(query: &str) -> String {
    match parse(query) {
        Ok(parsed) => parsed.to_string(),
        Err(problem) => panic!("{query}: {problem}"),
    }
}

fn failure(query: &str) -> String {
    match parse(query) {
        Ok(parsed) => panic!("{query} parsed as {parsed}"),
        Err(problem) => problem.to_string(),
    }
}

/// The literal on the right of the first comparison of a one-filter query.
fn literal(query: &str) -> Static {
    let parsed = parse(query).unwrap_or_else(|problem| panic!("{query}: {problem}"));
    let SpansetExpr::Filter(filter) = &parsed.root else { panic!("{query}: not a filter") };
    match filter.expr.as_ref() {
        Some(FieldExpr::Compare { right, .. }) => match &**right {
            FieldExpr::Literal(value) => value.clone(),
            other => panic!("{query}: right side {other:?}"),
        },
        other => panic!("{query}: {other:?}"),
    }
}

#[test]
fn field_expression_precedence() {
    for (query, expected) in [
        ("{ .a = 1 || .b = 2 && .c = 3 }", "{ (.a = 1 || (.b = 2 && .c = 3)) }"),
        ("{ .a = 1 && .b = 2 || .c = 3 }", "{ ((.a = 1 && .b = 2) || .c = 3) }"),
        ("{ (.a = 1 || .b = 2) && .c = 3 }", "{ ((.a = 1 || .b = 2) && .c = 3) }"),
        ("{ .a + 2 * 3 > 4 }", "{ (.a + (2 * 3)) > 4 }"),
        ("{ .a * 2 + 3 > 4 }", "{ ((.a * 2) + 3) > 4 }"),
        ("{ .a - 1 - 2 = 0 }", "{ ((.a - 1) - 2) = 0 }"),
        ("{ 2 ^ 3 ^ 2 = .a }", "{ (2 ^ (3 ^ 2)) = .a }"),
        ("{ .a / 2 % 3 = 1 }", "{ ((.a / 2) % 3) = 1 }"),
        ("{ !.a = true }", "{ !(.a = true) = true }"),
        ("{ !(.a = 1) && .b }", "{ (!(.a = 1) && .b = true) }"),
        ("{ -.a > 3 }", "{ -.a > 3 }"),
        ("{ .a > -3 }", "{ .a > -3 }"),
    ] {
        assert_eq!(canonical(query), expected, "{query}");
    }
}

#[test]
fn spanset_operator_precedence() {
    for (query, expected) in [
        ("{ .a } && { .b } || { .c }", "({ .a = true } && { .b = true }) || { .c = true }"),
        ("{ .a } || { .b } && { .c }", "{ .a = true } || ({ .b = true } && { .c = true })"),
        ("{ .a } > { .b } && { .c }", "({ .a = true } > { .b = true }) && { .c = true }"),
        ("{ .a } && { .b } >> { .c }", "{ .a = true } && ({ .b = true } >> { .c = true })"),
        ("{ .a } > { .b } > { .c }", "({ .a = true } > { .b = true }) > { .c = true }"),
        ("{ } !< { .b } ~ { .c }", "({ } !< { .b = true }) ~ { .c = true }"),
        ("{ .a } &>> { .b } !~ { .c }", "({ .a = true } &>> { .b = true }) !~ { .c = true }"),
        ("{ } | count() > 1 | by(.x)", "{ } | count() > 1 | by(.x)"),
        ("({ .a } | count() > 1) && { .b }", "({ .a = true } | count() > 1) && { .b = true }"),
        ("{ } | avg(duration) * 2 > 1s + 5ms", "{ } | (avg(duration) * 2) > (1s + 5ms)"),
    ] {
        assert_eq!(canonical(query), expected, "{query}");
    }
}

#[test]
fn every_literal_form() {
    assert_eq!(literal(r#"{ .a = "x\ty\"" }"#), Static::String("x\ty\"".into()));
    assert_eq!(literal(r"{ .a = `raw\n` }"), Static::String("raw\\n".into()));
    assert_eq!(literal("{ .a = 42 }"), Static::Int(42));
    assert_eq!(literal("{ .a = -42 }"), Static::Int(-42));
    assert_eq!(literal("{ .a = 4.5 }"), Static::Float(4.5));
    assert_eq!(literal("{ .a = 1e3 }"), Static::Float(1000.0));
    assert_eq!(literal("{ .a = true }"), Static::Bool(true));
    assert_eq!(literal("{ .a = false }"), Static::Bool(false));
    assert_eq!(literal("{ .a = nil }"), Static::Nil);
    assert_eq!(literal("{ .a = minInt }"), Static::Int(i64::MIN));
    assert_eq!(literal("{ .a = maxInt }"), Static::Int(i64::MAX));
    for (text, ns) in [
        ("100ms", 100_000_000),
        ("1.5s", 1_500_000_000),
        ("1h", 3_600_000_000_000),
        ("2m", 120_000_000_000),
        ("7ns", 7),
        ("3us", 3_000),
        ("3µs", 3_000),
        ("1h30m", 5_400_000_000_000),
    ] {
        assert_eq!(literal(&format!("{{ duration > {text} }}")), Static::Duration(ns), "{text}");
    }
    for (word, code) in [("error", StatusCode::Error), ("ok", StatusCode::Ok), ("unset", StatusCode::Unset)] {
        assert_eq!(literal(&format!("{{ status = {word} }}")), Static::Status(code));
    }
    for kind in SpanKind::ALL {
        assert_eq!(literal(&format!("{{ kind = {} }}", kind.keyword())), Static::Kind(kind));
    }
    // IDs compare as full-width lower-case hex.
    assert_eq!(literal(r#"{ trace:id = "ABC" }"#), Static::String(format!("{:0>32}", "abc")));
    assert_eq!(literal(r#"{ span:id = "1" }"#), Static::String("0000000000000001".into()));
}

#[test]
fn attribute_names() {
    for (query, expected) in [
        ("{ .http.status_code = 200 }", "{ .http.status_code = 200 }"),
        ("{ span.http-method = \"GET\" }", "{ span.http-method = \"GET\" }"),
        ("{ resource.service.name = \"a\" }", "{ resource.service.name = \"a\" }"),
        ("{ span.\"foo bar\" = 1 }", "{ span.\"foo bar\" = 1 }"),
        ("{ span.attr.\"with space\".x = 1 }", "{ span.\"attr.with space.x\" = 1 }"),
        ("{ event.exception.message =~ \"boom.*\" }", "{ event.exception.message =~ \"boom.*\" }"),
        ("{ link.ref = 1 }", "{ link.ref = 1 }"),
        ("{ instrumentation.lang = \"rust\" }", "{ instrumentation.lang = \"rust\" }"),
        ("{ span:name = \"x\" }", "{ name = \"x\" }"),
        ("{ span:status = error }", "{ status = error }"),
        ("{ trace:rootService = \"a\" }", "{ rootServiceName = \"a\" }"),
        ("{ trace:duration > 1s }", "{ traceDuration > 1s }"),
        ("{ event:name = \"exception\" }", "{ event:name = \"exception\" }"),
        ("{ instrumentation:name = \"x\" }", "{ instrumentation:name = \"x\" }"),
    ] {
        assert_eq!(canonical(query), expected, "{query}");
    }
}

#[test]
fn errors_name_their_position() {
    for (query, expected) in [
        (
            "{ .a = }",
            "parse error at line 1, col 8: syntax error: unexpected }, expected a value, an attribute or an intrinsic",
        ),
        (
            "{ .a = 1",
            "parse error at line 1, col 9: syntax error: unexpected end of query, expected } to close the spanset filter",
        ),
        ("{ status = 200 }", "parse error at line 1, col 10: cannot compare status (a status) with 200 (an integer)"),
        (
            "{ duration > \"1s\" }",
            "parse error at line 1, col 12: cannot compare duration (a duration) with \"1s\" (a string)",
        ),
        ("{ name = 1 }", "parse error at line 1, col 8: cannot compare name (a string) with 1 (an integer)"),
        ("{ .a =~ \"(\" }", "parse error at line 1, col 9: invalid regular expression \"(\""),
        (
            "{ duration =~ \"1\" }",
            "parse error at line 1, col 12: regular expressions match strings, duration is a duration",
        ),
        ("{ foo = 1 }", "parse error at line 1, col 3: syntax error: unexpected identifier foo"),
        ("{ 1 + 2 }", "parse error at line 1, col 3: a spanset filter needs a boolean expression"),
        ("{ .a = 1 } | bogus()", "parse error at line 1, col 14: syntax error: unexpected identifier bogus"),
        (
            "{ } | count()",
            "parse error at line 1, col 14: syntax error: unexpected end of query, expected a comparison",
        ),
        ("{ } |", "parse error at line 1, col 6: syntax error: unexpected end of query"),
        ("{ .a = 1 }}", "parse error at line 1, col 11: syntax error: unexpected }"),
        ("{ .a = \"x }", "parse error at line 1, col 8: syntax error: unterminated string"),
        ("{ .a > nil }", "parse error at line 1, col 6: nil can only be compared with = or !=, not >"),
        ("{ status > ok }", "parse error at line 1, col 10: statuses cannot be ordered"),
        ("{ span:bogus = 1 }", "parse error at line 1, col 3: unknown intrinsic span:bogus"),
        ("{ foo.bar = 1 }", "parse error at line 1, col 3: syntax error: unknown attribute scope \"foo\""),
        (
            "{ .a = 1 } && ",
            "parse error at line 1, col 15: syntax error: unexpected end of query, expected a spanset filter",
        ),
        ("{ .a == 1 }", "parse error at line 1, col 6: syntax error: unexpected ==, use = for equality"),
        ("{ .a = 1 = 2 }", "parse error at line 1, col 10: comparisons do not chain"),
        ("{ } | avg() > 1", "parse error at line 1, col 11: avg() needs a field"),
        ("{ } | avg(name) > 1", "parse error at line 1, col 11: avg() needs a number, name is a string"),
        ("{ } | by(.a, .b)", "parse error at line 1, col 12: by() takes one expression"),
        ("{ } | select(.a = 1)", "parse error at line 1, col 14: select() takes attributes and intrinsics"),
        ("count() > 1", "parse error at line 1, col 1: syntax error: count() must follow a spanset and a pipe"),
        (
            "{ .a = 99999999999999999999 }",
            "parse error at line 1, col 8: syntax error: integer 99999999999999999999 out of range",
        ),
        ("{ duration > 5parsecs }", "parse error at line 1, col 14: syntax error: invalid duration \"5parsecs\""),
        ("{\n  .a = 1 &&\n  .b = }", "parse error at line 3, col 8: syntax error: unexpected }"),
        ("{ .a = 1 } with (most_recent=)", "parse error at line 1, col 30: syntax error: unexpected )"),
    ] {
        let message = failure(query);
        assert!(message.starts_with(expected), "{query}\n  got      {message}\n  expected {expected}");
    }
}

#[test]
fn nesting_is_bounded() {
    let deep = format!("{{ {}.a = 1{} }}", "(".repeat(500), ")".repeat(500));
    assert!(failure(&deep).contains("nests deeper than"));
    let long = format!("{{ .a = \"{}\" }}", "x".repeat(200 * 1024));
    assert!(failure(&long).contains("more than the limit"));
    let wide = vec!["{ .a = 1 }"; 1000].join(" && ");
    assert!(failure(&wide).contains("more than 512 operators"));
    let terms = vec![".a = 1"; 1000].join(" || ");
    assert!(failure(&format!("{{ {terms} }}")).contains("more than 512 operators"));
    let fine = vec!["{ .a = 1 }"; 100].join(" && ");
    assert!(parse(&fine).is_ok());
}

#[test]
fn hints_and_metrics_queries_parse() {
    assert_eq!(canonical("{ } with (most_recent=true)"), "{ } with (most_recent=true)");
    let metrics = parse("{ status = error } | rate() by (resource.service.name)").unwrap();
    assert!(metrics.is_metrics());
    let quantile = parse("{ } | quantile_over_time(duration, .9, .99) by (name)").unwrap();
    assert!(quantile.is_metrics());
    assert!(!parse("{ } | count() > 1").unwrap().is_metrics());
    assert!(parse("{ }").unwrap().matches_everything());
    assert!(parse("{ true }").unwrap().matches_everything());
    assert!(!parse("{ .a }").unwrap().matches_everything());
}

#[test]
fn canonical_text_parses_back_to_itself() {
    for query in [
        r#"{ resource.service.name = "tp2devops-backend" && (span.http.status_code >= 500 || status = error) }"#,
        r#"{ .a = 1 } >> { name =~ "GET .*" } | by(resource.service.name) | count() > 2 | select(span.x, kind)"#,
        r#"{ span."a b" != nil } &~ { !(.c < 1.5) } | coalesce() | avg(duration) >= 1ms"#,
        r#"{ duration * 2 > 1s - 5ms && span:id = "aa" }"#,
    ] {
        let once = canonical(query);
        assert_eq!(canonical(&once), once, "{query}");
    }
}

#[test]
fn conditions_pushed_down() {
    let conditions = |query: &str| span_filter(&parse(query).unwrap()).conditions;
    let attribute = |scope, key: &str, op, value| SpanCondition::Attribute { scope, key: key.into(), op, value };
    use tripod_storage::traces::AttrValue;
    assert_eq!(
        conditions(r#"{ resource.service.name = "api" && name = "x" && status = error && kind = server }"#),
        vec![
            SpanCondition::ServiceName("api".into()),
            SpanCondition::Name("x".into()),
            SpanCondition::Status(StatusCode::Error),
            SpanCondition::Kind(SpanKind::Server),
        ]
    );
    assert_eq!(
        conditions("{ duration > 100ms && duration <= 2s }"),
        vec![
            SpanCondition::Duration { min_ns: Some(100_000_001), max_ns: None },
            SpanCondition::Duration { min_ns: None, max_ns: Some(2_000_000_000) },
        ]
    );
    assert_eq!(
        conditions("{ 500 <= span.http.status_code && .x != 3 && .y != nil && .z =~ \"a.*\" }"),
        vec![
            attribute(AttributeScope::Span, "http.status_code", StoreOp::Ge, AttrValue::Int(500)),
            SpanCondition::Exists { scope: AttributeScope::Any, key: "x".into() },
            SpanCondition::Exists { scope: AttributeScope::Any, key: "y".into() },
            SpanCondition::Exists { scope: AttributeScope::Any, key: "z".into() },
        ]
    );
    // `||` pushes only what both sides share; negations and nil equality push nothing.
    assert_eq!(
        conditions(r#"{ (.a = 1 && name = "x") || (.b = 2 && name = "x") }"#),
        vec![SpanCondition::Name("x".into())]
    );
    assert_eq!(conditions("{ .a = 1 } || { .b = 2 }"), vec![]);
    assert_eq!(conditions("{ !(.a = 1) && .b = nil }"), vec![]);
    // Both sides of `&&` and of structural operators must match: the richer side is pushed.
    assert_eq!(
        conditions(r#"{ .a = 1 } >> { name = "x" && status = error }"#),
        vec![SpanCondition::Name("x".into()), SpanCondition::Status(StatusCode::Error)]
    );
    // The left side of a negated structural operator may match nothing.
    assert_eq!(
        conditions(r#"{ name = "x" && status = error } !> { kind = client }"#),
        vec![SpanCondition::Kind(SpanKind::Client)]
    );
    assert_eq!(
        conditions("{ span.cache.hit } | count() > 1"),
        vec![attribute(AttributeScope::Span, "cache.hit", StoreOp::Eq, AttrValue::Bool(true))]
    );
    // Event, link and instrumentation attributes have no store condition.
    assert_eq!(conditions(r#"{ event.x = 1 && link.y = 2 && instrumentation.z = 3 }"#), vec![]);
}

#[test]
fn arbitrary_input_never_panics() {
    // Fragments of TraceQL glued at random: every result is a query or a positioned error.
    const FRAGMENTS: [&str; 48] = [
        "{",
        "}",
        "(",
        ")",
        " ",
        ".a",
        "span.b",
        "resource.\"c d\"",
        "span:id",
        "trace:duration",
        "name",
        "status",
        "=",
        "!=",
        ">",
        ">=",
        "<",
        "<=",
        "=~",
        "!~",
        "&&",
        "||",
        "!",
        ">>",
        "<<",
        "~",
        "&>",
        "!<",
        "|",
        "count()",
        "avg(duration)",
        "by(.a)",
        "select(.a)",
        "coalesce()",
        "1",
        "-2.5",
        "100ms",
        "\"x\"",
        "`y`",
        "nil",
        "error",
        "server",
        "true",
        "+",
        "*",
        "^",
        "minInt",
        "\"",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let length = 1 + next() % 12;
        let mut query = String::new();
        for _ in 0..length {
            query.push_str(FRAGMENTS[(next() % FRAGMENTS.len() as u64) as usize]);
        }
        match parse(&query) {
            Ok(parsed) => {
                let printed = parsed.to_string();
                let again = parse(&printed).unwrap_or_else(|problem| panic!("{query} printed as {printed}: {problem}"));
                assert_eq!(again.to_string(), printed, "{query}");
                let _ = span_filter(&parsed);
            }
            Err(problem) => assert!(problem.to_string().starts_with("parse error at line "), "{query}: {problem}"),
        }
    }
}
