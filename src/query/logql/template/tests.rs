//! Template cases, as data: a template, what it renders to for one entry (or the error it
//! gives, at parse time or at render time), covering every construct and function.

use super::{Template, TemplateData};

/// The entry every case renders.
const LABELS: &[(&str, &str)] = &[
    ("app", "api"),
    ("date", "2021-11-02"),
    ("duration", "1.5s"),
    ("empty", ""),
    ("epoch", "1679577215"),
    ("json", r#"{"n": 55, "tags": ["a", "b"]}"#),
    ("method", "GET"),
    ("multi", "a\nb"),
    ("path", "/api/v1/query"),
    ("pattern", "p+"),
    ("queries", r#"[{"query":"up"},{"query":"rate(x[5m])"}]"#),
    ("size", "10MB"),
    ("spaces", "  hi  "),
    ("status", "200"),
];
const LINE: &str = r#"level=info msg="hello world" took=25ms"#;
/// 2023-11-14 22:13:20.123456789 UTC, a Tuesday.
const TIMESTAMP_NS: i64 = 1_700_000_000_123_456_789;

/// What a case expects.
enum Expect {
    Output(&'static str),
    /// The template does not parse; the message contains these words.
    ParseError(&'static str),
    /// The template parses but rendering fails; the message contains these words.
    RenderError(&'static str),
}

use Expect::{Output, ParseError, RenderError};

fn check(cases: &[(&str, Expect)]) {
    let data = TemplateData { labels: LABELS, line: LINE, timestamp_ns: TIMESTAMP_NS };
    for (text, expect) in cases {
        let parsed = Template::parse(text);
        match (expect, parsed) {
            (ParseError(words), Ok(_)) => panic!("{text:?} parsed; expected an error with {words:?}"),
            (ParseError(words), Err(error)) => {
                assert!(error.message.contains(words), "{text:?}: {error} lacks {words:?}");
            }
            (_, Err(error)) => panic!("{text:?} did not parse: {error}"),
            (Output(expected), Ok(template)) => {
                let mut out = String::new();
                if let Err(error) = template.render(&data, &mut out) {
                    panic!("{text:?} failed: {error}");
                }
                assert_eq!(out, *expected, "output of {text:?}");
            }
            (RenderError(words), Ok(template)) => {
                let mut out = String::new();
                match template.render(&data, &mut out) {
                    Ok(()) => panic!("{text:?} rendered {out:?}; expected an error with {words:?}"),
                    Err(error) => assert!(error.message.contains(words), "{text:?}: {error} lacks {words:?}"),
                }
            }
        }
    }
}

#[test]
fn text_actions_and_trimming() {
    check(&[
        ("plain text", Output("plain text")),
        ("", Output("")),
        ("{{.app}}", Output("api")),
        ("{{ .missing }}", Output("")),
        ("{{.method}} {{.path}}", Output("GET /api/v1/query")),
        (r#"a {{- " b " -}} c"#, Output("a b c")),
        ("a\n\t{{- .app }}", Output("aapi")),
        ("{{ .app -}}\n  b", Output("apib")),
        ("{{-3}}", Output("-3")),
        ("{{/* a comment */}}x", Output("x")),
        ("a  {{- /* trimmed */ -}}  b", Output("ab")),
        ("{{ __line__ }}", Output(LINE)),
        ("{{ __line__ | upper }}", Output(r#"LEVEL=INFO MSG="HELLO WORLD" TOOK=25MS"#)),
        ("{{ `raw \\n` }}", Output("raw \\n")),
        (r#"{{ "tab\there\u00e9\x41" }}"#, Output("tab\there\u{e9}A")),
        ("{{ 'a' }}", Output("97")),
        ("{{ 0x1F }} {{ 1_000 }} {{ 0o17 }} {{ 0b101 }}", Output("31 1000 15 5")),
        ("{{ 3.0 }} {{ 1e6 }} {{ 0.000012 }} {{ 100000.0 }} {{ 1.5 }}", Output("3 1e+06 1.2e-05 100000 1.5")),
        ("{{ true }} {{ false }}", Output("true false")),
    ]);
}

#[test]
fn variables_and_control_structures() {
    check(&[
        ("{{ $x := .app }}{{ $x }}", Output("api")),
        ("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}", Output("2")),
        ("{{ $x := 1 }}{{ $x := add $x 1 }}{{ $x }}", Output("2")),
        ("{{ $.app }}", Output("api")),
        (r#"{{ if eq .status "200" }}ok{{ else }}fail{{ end }}"#, Output("ok")),
        (r#"{{ if eq .status "500" }}a{{ else if eq .status "200" }}b{{ else }}c{{ end }}"#, Output("b")),
        (r#"{{ if $s := .status }}{{ $s }}{{ end }}"#, Output("200")),
        ("{{ with .app }}<{{ . }}>{{ end }}", Output("<api>")),
        ("{{ with .missing }}x{{ else }}none{{ end }}", Output("none")),
        ("{{ with .missing }}x{{ else with .method }}{{ . }}{{ end }}", Output("GET")),
        (r#"{{ range split "," "a,b,c" }}[{{ . }}]{{ end }}"#, Output("[a][b][c]")),
        (r#"{{ range $i, $e := split "," "a,b" }}{{ $i }}={{ $e }} {{ end }}"#, Output("0=a 1=b ")),
        (r#"{{ range fromJson "[]" }}x{{ else }}empty{{ end }}"#, Output("empty")),
        (
            r#"{{ range split "," "a,b,c,d" }}{{ if eq . "b" }}{{ continue }}{{ end }}{{ if eq . "d" }}{{ break }}{{ end }}{{ . }}{{ end }}"#,
            Output("ac"),
        ),
        ("{{ range 3 }}{{ . }}{{ end }}", Output("012")),
        ("{{ range $q := fromJson .queries }} {{ $q.query }} {{ end }}", Output(" up  rate(x[5m]) ")),
        ("{{ range $k, $v := fromJson .json }}{{ $k }};{{ end }}", Output("n;tags;")),
        ("{{ if 0 }}t{{ else }}f{{ end }}{{ if 0.0 }}t{{ else }}f{{ end }}", Output("ff")),
        (r#"{{ if "" }}t{{ else }}f{{ end }}{{ if .empty }}t{{ else }}f{{ end }}"#, Output("ff")),
        ("{{ if __timestamp__ }}t{{ end }}{{ if fromJson `[1]` }}t{{ end }}", Output("tt")),
        (r#"{{ define "x" }}<{{ . }}>{{ end }}{{ template "x" .app }}"#, Output("<api>")),
        (r#"{{ block "b" .method }}[{{ . }}]{{ end }}"#, Output("[GET]")),
    ]);
}

#[test]
fn builtins() {
    check(&[
        ("{{ and 1 0 2 }} {{ and 1 2 }}", Output("0 2")),
        (r#"{{ or 0 "" "x" }} {{ or 0 false }}"#, Output("x false")),
        ("{{ or 1 (div 1 0) }}", Output("1")),
        ("{{ not .empty }} {{ not 1 }}", Output("true false")),
        (r#"{{ lt 1 2 }} {{ gt "b" "a" }} {{ le 2 2 }} {{ ge 1.5 2.5 }}"#, Output("true true true false")),
        (r#"{{ ne .app "api" }} {{ eq .app "x" "api" }}"#, Output("false true")),
        (r#"{{ len .app }} {{ len (split "," "a,b") }} {{ len . }}"#, Output("3 2 14")),
        (r#"{{ index (split "," "a,b,c") 1 }} {{ index . "app" }} {{ index "ab" 1 }}"#, Output("b api 98")),
        (r#"{{ slice "abcdef" 1 3 }} {{ slice "abc" 1 }}"#, Output("bc bc")),
        (r#"{{ print 1 2 "a" "b" 3 }}"#, Output("1 2ab3")),
        (r#"{{ println "a" 1 }}"#, Output("a 1\n")),
        (r#"{{ html "<a href='x'>&</a>" }}"#, Output("&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;")),
        (r#"{{ js "it's <b>" }}"#, Output("it\\'s \\u003Cb\\u003E")),
        (r#"{{ urlquery "a b" }}"#, Output("a+b")),
        (r#"{{ lt .status 300 }}"#, RenderError("incompatible types for comparison")),
        ("{{ eq 1 }}", RenderError("missing argument for comparison")),
        ("{{ lt true false }}", RenderError("invalid type for comparison")),
        (r#"{{ index (split "," "a") 3 }}"#, RenderError("index out of range: 3")),
        ("{{ index 5 1 }}", RenderError("can't index item of type int")),
        ("{{ len 3 }}", RenderError("len of type int")),
    ]);
}

#[test]
fn printf_verbs() {
    check(&[
        (r#"{{ printf "%s-%d" .app 42 }}"#, Output("api-42")),
        (r#"{{ printf "The IP address was %s" "1.2.3.4" }}"#, Output("The IP address was 1.2.3.4")),
        (r#"{{ printf "%.2f" 3.14159 }} {{ printf "%f" 1.5 }}"#, Output("3.14 1.500000")),
        (r#"{{ printf "%5s|%-5s|" "ab" "cd" }}"#, Output("   ab|cd   |")),
        (r#"{{ printf "%-5.5s|" .method }}{{ printf "%15.15s|" .path }}"#, Output("GET  |  /api/v1/query|")),
        (r#"{{ printf "%q %v %v %v" .app 1.5 true nil }}"#, Output(r#""api" 1.5 true <nil>"#)),
        (r#"{{ printf "%x %X %#x %o %b" 255 "hi" 255 8 5 }}"#, Output("ff 6869 0xff 10 101")),
        (r#"{{ printf "%05d|%+d|% d|%-4d|%+v" -42 5 7 3 5 }}"#, Output("-0042|+5| 7|3   |5")),
        (r#"{{ printf "%e %E %g %G" 123456.789 0.5 1e6 1e-7 }}"#, Output("1.234568e+05 5.000000E-01 1e+06 1E-07")),
        (r#"{{ printf "%08.3f|%6.2f%%|%+.1e" -3.14159 99.5 1234.5 }}"#, Output("-003.142| 99.50%|+1.2e+03")),
        (r#"{{ printf "%.3g %g %#g" 3.14159 100000.0 1.0 }}"#, Output("3.14 100000 1.00000")),
        (r#"{{ printf "%T %T %T %T" 1 .app 1.5 (split "," "a") }}"#, Output("int string float64 []interface {}")),
        (r#"{{ printf "%c%U %t %x" 65 65 true 1.0 }}"#, Output("AU+0041 true 0x1p+00")),
        (r#"{{ printf "%[2]s %[1]s" "a" "b" }}|{{ printf "%*d|%.*f" 5 42 2 3.14159 }}"#, Output("b a|   42|3.14")),
        (r#"{{ printf "%[2]s %[1]s|%*d" "a" "b" 5 }}"#, Output("b a|%!(BADWIDTH)5")),
        (
            r#"{{ printf "%v|%d" (split "," "a,b") (fromJson "[1,2]") }}"#,
            Output("[a b]|[%!d(float64=1) %!d(float64=2)]"),
        ),
        (r#"{{ printf "%d" .app }}"#, Output("%!d(string=api)")),
        (
            r#"{{ printf "%s" }}|{{ printf "x" 1 }}|{{ printf "%!" }}|{{ printf "%" }}"#,
            Output("%!s(MISSING)|x%!(EXTRA int=1)|%!!(MISSING)|%!(NOVERB)"),
        ),
        (r#"{{ printf "%z" 1 }}|{{ printf "%d %d" 1 }}"#, Output("%!z(int=1)|1 %!d(MISSING)")),
        (r#"{{ printf "%#v %#v" .app (split "," "a") }}"#, Output(r#""api" []interface {}{"a"}"#)),
        (
            r#"{{ printf "%v" (fromJson "{\"foo\": 55}") }} {{ fromJson "{\"a\":[1,\"x\",null]}" }}"#,
            Output("map[foo:55] map[a:[1 x <nil>]]"),
        ),
        (r#"{{ printf "%s" __timestamp__ }}"#, Output("2023-11-14 22:13:20.123456789 +0000 UTC")),
        (r#"{{ printf 5 }}"#, RenderError("expected string; found 5")),
    ]);
}

#[test]
fn string_functions() {
    check(&[
        (r#"{{ ToUpper "This is a string" | ToLower }}"#, Output("this is a string")),
        (
            r#"{{ Replace "This is a string" " " "-" -1 }} {{ Replace "aaa" "a" "b" 2 }}"#,
            Output("This-is-a-string bba"),
        ),
        (r#"{{ Trim ",.hello,." ",." }} {{ TrimLeft "::a:" ":" }} {{ TrimRight "/p//" "/" }}"#, Output("hello a: /p")),
        (
            r#"{{ TrimSpace .spaces }}|{{ TrimPrefix .path "/api" }}|{{ TrimSuffix .path "/query" }}"#,
            Output("hi|/v1/query|/api/v1"),
        ),
        (
            r#"{{ lower "HELLO" }} {{ upper "hello" }} {{ title "hello world-wide_web" }}"#,
            Output("hello HELLO Hello World-Wide_web"),
        ),
        (r#"{{ .path | replace "/" "_" | trunc 5 | upper }}"#, Output("_API_")),
        (
            r#"{{ trunc 5 "hello world" }}|{{ trunc -5 "hello world" }}|{{ trunc 50 "hi" }}|{{ trunc 1 "é" }}"#,
            Output("hello|world|hi|"),
        ),
        (
            r#"{{ substr 0 5 "hello world" }}|{{ substr 6 11 "hello world" }}|{{ .path | substr 2 5 }}"#,
            Output("hello|world|pi/"),
        ),
        (r#"{{ substr 3 -1 "hello" }}|{{ substr -1 2 "hello" }}|{{ substr 2 99 "hello" }}"#, Output("lo|he|llo")),
        (
            r#"{{ replace "hello" "world" "hello world" }}|{{ .cluster | replace "-cluster" "" }}"#,
            Output("world world|"),
        ),
        (
            r#"{{ trim "   hello    " }}|{{ trimAll "$" "$5.00" }}|{{ .path | trimAll "/" }}"#,
            Output("hello|5.00|api/v1/query"),
        ),
        (r#"{{ trimPrefix "-" "-hello" }} {{ trimSuffix "-" "hello-" }}"#, Output("hello hello")),
        (r#"{{ indent 2 .multi }}|{{ nindent 2 "x" }}"#, Output("  a\n  b|\n  x")),
        (r#"{{ repeat 3 "hello" }}"#, Output("hellohellohello")),
        (
            r#"{{ if contains "he" "hello" }}yes{{ end }}|{{ contains "hello" __line__ }}|{{ contains "bye" __line__ }}"#,
            Output("yes|true|false"),
        ),
        (r#"{{ if and (contains "he" "hello") (contains "llo" "hello") }} yes {{end}}"#, Output(" yes ")),
        (
            r#"{{ if contains "ErrTimeout" .err }} timeout {{else if contains "he" "hello"}}yes{{else}} no {{end}}"#,
            Output("yes"),
        ),
        (
            r#"{{ hasPrefix "he" "hello" }} {{ hasSuffix "lo" "hello" }} {{ hasPrefix "x" "hello" }}"#,
            Output("true true false"),
        ),
        (r#"{{ split "" "ab" }} {{ split ", " "a, b" }}"#, Output("[a b] [a b]")),
        (
            r#"{{ alignLeft 5 "hello world" }}|{{ alignLeft 5 "hi" }}|{{ alignRight 5 "hello world" }}|{{ alignRight 5 "hi" }}|"#,
            Output("hello|hi   |world|   hi|"),
        ),
        (
            r#"{{ b64enc "hello" }} {{ b64enc "ab" }} {{ b64dec "aGVsbG8=" }} {{ b64dec "YWI=" }}"#,
            Output("aGVsbG8= YWI= hello ab"),
        ),
        (
            r#"{{ b64dec "a" }}|{{ b64dec "aGV*" }}"#,
            Output("illegal base64 data at input byte 0|illegal base64 data at input byte 3"),
        ),
        (r#"{{ urlencode "a b&c=d/é" }} {{ urldecode "a+b%26c" }}"#, Output("a+b%26c%3Dd%2F%C3%A9 a b&c")),
        (
            r#"{{ default "-" "" }} {{ default "-" "foo" }} {{ .missing | default "-" }} {{ default "-" 0 }}"#,
            Output("- foo - -"),
        ),
        (r#"{{ urldecode "%zz" }}"#, RenderError("invalid URL escape \"%zz\"")),
        (r#"{{ substr 4 2 "hello" }}"#, RenderError("slice bounds out of range")),
        (r#"{{ repeat -1 "x" }}"#, RenderError("negative Repeat count")),
    ]);
}

#[test]
fn regular_expressions() {
    check(&[
        (r#"{{ regexReplaceAll "(a*)bc" "aabcxbc" "${1}a" }}"#, Output("aaaxa")),
        (r#"{{ regexReplaceAllLiteral "(ts=)" "ts=1 ts=2" "${1}x" }}"#, Output("${1}x1 ${1}x2")),
        (r#"{{ regexReplaceAll .pattern .app "X" }}"#, Output("aXi")),
        (r#"{{ regexReplaceAll "a(?P<rest>.*)" .app "${rest}!" }}"#, Output("pi!")),
        (r#"{{ .app | regexReplaceAll "a" "banana" }}"#, Output("bapinapinapi")),
        (r#"{{ count "a|b" "abab" }} {{ count "o" "foo" }} {{ __line__ | count "l" }}"#, Output("4 2 5")),
        (r#"{{ regexReplaceAll "(" "a" "b" }}"#, ParseError("error parsing regexp")),
        (r#"{{ count .missing "x" }}"#, Output("2")),
    ]);
}

#[test]
fn numbers() {
    check(&[
        ("{{ add 3 2 5 }} {{ add }} {{ add .status 1 }}", Output("10 0 201")),
        (
            r#"{{ add "3" 2 }} {{ add "3.00" 1 }} {{ add "x" 1 }} {{ add "0x10" 1 }} {{ add true 1.9 }}"#,
            Output("5 4 1 17 2"),
        ),
        ("{{ sub 5 2 }} {{ mul 5 2 3 }} {{ div 10 3 }} {{ mod 10 3 }} {{ div -7 2 }}", Output("3 30 3 1 -3")),
        ("{{ addf 3.5 2 5 }} {{ addf 0.1 0.2 }} {{ subf 5.5 2 1.5 }} {{ mulf 5.5 2 2.5 }}", Output("10.5 0.3 2 27.5")),
        (
            "{{ divf 10 2 4 }} {{ divf 1 3 }} {{ divf 10 3 }} {{ mulf 1000 1000 }}",
            Output("1.25 0.3333333333333333 3.3333333333333335 1e+06"),
        ),
        ("{{ max 1 2 3 }} {{ min 1 2 3 }} {{ maxf 1 2.5 3 }} {{ minf 1 2.5 3 }} {{ minf 2.5 }}", Output("3 1 3 1 2.5")),
        ("{{ ceil 123.001 }} {{ floor 123.9999 }} {{ ceil \"1.2\" }}", Output("124 123 2")),
        (
            "{{ round 123.555555 3 }} {{ round 123.88571428571 5 .2 }} {{ round 123.88571428571 5 }}",
            Output("123.556 123.88572 123.88571"),
        ),
        (
            r#"{{ "3" | int }} {{ "3.5" | float64 }} {{ int "0x1F" }} {{ int 3.9 }} {{ int "3.5" }} {{ float64 "1e3" }}"#,
            Output("3 3.5 31 3 0 1000"),
        ),
        ("{{ div 1 0 }}", RenderError("integer divide by zero")),
        ("{{ divf 1 0 }}", RenderError("decimal division by 0")),
        ("{{ round 1.5 \"2\" }}", RenderError("expected integer; found \"2\"")),
        ("{{ 99999999999999999999 }}", ParseError("integer overflow")),
    ]);
}

#[test]
fn bytes_durations_and_json() {
    check(&[
        (
            r#"{{ bytes .size }} {{ bytes "1.5 KiB" }} {{ bytes "2,048" }} {{ bytes "1GiB" }}"#,
            Output("10000000 1536 2048 1073741824"),
        ),
        (
            r#"{{ duration .duration }} {{ duration_seconds "1h30m" }} {{ duration_seconds "250ms" }} {{ duration "-1.5h" }}"#,
            Output("1.5 5400 0.25 -5400"),
        ),
        (r#"{{ duration "nonsense" }} {{ duration "1µs" }}"#, Output("0 1e-06")),
        (
            "{{ (fromJson .json).n }} {{ index (fromJson .json).tags 1 }} {{ (fromJson .json).missing }}",
            Output("55 b <no value>"),
        ),
        (r#"{{ fromJson "{\"foo\": 55}" }}|{{ fromJson "nope" }}|"#, Output("map[foo:55]||")),
        (r#"{{ bytes "12 parsecs" }}"#, RenderError("unhandled size name: \"parsecs\"")),
        ("{{ (fromJson `null`).x }}", RenderError("nil pointer evaluating interface {}.x")),
    ]);
}

#[test]
fn dates_and_times() {
    check(&[
        ("{{ __timestamp__ }}", Output("2023-11-14 22:13:20.123456789 +0000 UTC")),
        (r#"{{ __timestamp__ | date "2006-01-02T15:04:05.00Z07:00" }}"#, Output("2023-11-14T22:13:20.12Z")),
        (
            "{{ __timestamp__ | unixEpoch }} {{ unixEpochMillis __timestamp__ }} {{ unixEpochNanos __timestamp__ }}",
            Output("1700000000 1700000000123 1700000000123456789"),
        ),
        (r#"{{ date "Jan 2, 2006 at 3:04pm (MST)" __timestamp__ }}"#, Output("Nov 14, 2023 at 10:13pm (UTC)")),
        (
            r#"{{ date "Monday January _2 15:04:05.000 2006 002 __2" __timestamp__ }}"#,
            Output("Tuesday November 14 22:13:20.123 2023 318 318"),
        ),
        (
            r#"{{ date "06/1/2 03:4:5 PM -0700 -07:00:00 Z0700 .999999 ,9" __timestamp__ }}"#,
            Output("23/11/14 10:13:20 PM +0000 +00:00:00 Z .123456 ,1"),
        ),
        (r#"{{ date "2006-01-02" 86400 }}"#, Output("1970-01-02")),
        (
            r#"{{ toDate "2006-01-02" "2021-11-02" | unixEpoch }} {{ toDate "2006-01-02" .date | unixEpochMillis }}"#,
            Output("1635811200 1635811200000"),
        ),
        (r#"{{ toDateInZone "2006-01-02 15:04" "+02:00" "2021-11-02 10:00" | unixEpoch }}"#, Output("1635840000")),
        (
            r#"{{ toDateInZone "2006-01-02" "UTC" "2021-11-02" }} {{ toDateInZone "2006" "Etc/GMT+2" "2021" }}"#,
            Output("2021-11-02 00:00:00 +0000 UTC 2021-01-01 00:00:00 -0200 -02"),
        ),
        (
            r#"{{ toDate "2006-01-02T15:04:05Z07:00" "2021-11-02T10:00:00+02:00" }}"#,
            Output("2021-11-02 10:00:00 +0200 +0200"),
        ),
        (
            r#"{{ toDate "2006-01-02T15:04:05.999999999Z" "2021-11-02T10:00:00.5Z" | unixEpochMillis }}"#,
            Output("1635847200500"),
        ),
        (r#"{{ toDate "2006-01-02 15:04:05" "2021-11-02 10:00:00.25" | unixEpochMillis }}"#, Output("1635847200250")),
        (
            r#"{{ toDate "02/01/06 3:04PM" "25/12/21 11:30PM" | unixEpoch }} {{ toDate "Jan _2 2006 MST" "Feb  3 2020 CET" }}"#,
            Output("1640475000 2020-02-03 00:00:00 +0000 CET"),
        ),
        (
            r#"{{ toDate "2006-01-02" "garbage" }} {{ toDate "2006-01-02" "2021-02-30" | unixEpoch }}"#,
            Output("0001-01-01 00:00:00 +0000 UTC -62135596800"),
        ),
        (
            r#"{{ date "2006-01-02" (unixToTime .epoch) }} {{ unixToTime "1679577215000" | unixEpoch }} {{ unixToTime "19439" | unixEpoch }}"#,
            Output("2023-03-23 1679577215 1679529600"),
        ),
        (
            "{{ __timestamp__.Unix }} {{ __timestamp__.Format \"15:04\" }} {{ __timestamp__.Year }} {{ __timestamp__.Weekday }}",
            Output("1700000000 22:13 2023 Tuesday"),
        ),
        ("{{ gt (unixEpoch now | int) 1600000000 }}", Output("true")),
        (
            r#"{{ toDateInZone "2006-01-02" "Europe/Paris" "2021-11-02" }}"#,
            RenderError("unknown time zone \"Europe/Paris\""),
        ),
        (r#"{{ unixToTime "123" }}"#, RenderError("unable to parse time \"123\"")),
        (r#"{{ unixEpoch .app }}"#, RenderError("wrong type for value; expected time.Time; got string")),
        ("{{ __timestamp__.Nope }}", RenderError("can't evaluate field Nope in type time.Time")),
    ]);
}

#[test]
fn parse_errors() {
    check(&[
        ("{{ foo }}", ParseError("function \"foo\" not defined")),
        ("{{ .app ", ParseError("unclosed action")),
        ("{{ .app }", ParseError("unexpected '}' in action")),
        ("{{ if true }}x", ParseError("unexpected EOF")),
        ("{{ end }}", ParseError("unexpected {{end}}")),
        ("{{ else }}", ParseError("unexpected {{else}}")),
        ("{{ if 1 }}{{ else }}{{ else }}{{ end }}", ParseError("expected end; found {{else}}")),
        ("{{ $x }}", ParseError("undefined variable \"$x\"")),
        ("{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}", ParseError("undefined variable \"$y\"")),
        ("{{ break }}", ParseError("{{break}} outside {{range}}")),
        (r#"{{ "a" | "b" }}"#, ParseError("non executable command in pipeline stage 2")),
        ("{{ (1 }}", ParseError("unclosed left paren")),
        ("{{ 1) }}", ParseError("unexpected right paren")),
        (r#"{{ "abc }}"#, ParseError("unterminated quoted string")),
        ("{{ `abc }}", ParseError("unterminated raw quoted string")),
        ("{{ 3x }}", ParseError("bad number syntax")),
        ("{{ }}", ParseError("missing value for command")),
        ("{{/* x }}", ParseError("unclosed comment")),
        ("{{/* x */ .a }}", ParseError("comment ends before closing delimiter")),
        (r#"{{ .app"b" }}"#, ParseError("bad character '\"'")),
        (r#"{{ .app "b"}}{{ 1"b" }}"#, ParseError("unexpected \"b\" in operand")),
        ("{{ .app | }}", ParseError("missing command after |")),
        ("{{ # }}", ParseError("unexpected '#' in action")),
        (r#"{{ "\q" }}"#, ParseError("invalid escape \\q")),
        ("{{ 'ab' }}", ParseError("malformed character constant")),
        (r#"{{ "x".y }}"#, ParseError("unexpected . after term")),
        ("{{ $x, $y := 1 }}", ParseError("too many declarations")),
        ("{{ ($x := 1) }}", ParseError("variables cannot be declared in a parenthesized pipeline")),
        ("{{ with 1 }}{{ else if 2 }}{{ end }}", ParseError("{{else if}} inside {{with}}")),
        (r#"{{ define "a" }}x{{ end }}{{ define "a" }}y{{ end }}"#, ParseError("defined twice")),
        (r#"{{ if 1 }}{{ define "a" }}x{{ end }}{{ end }}"#, ParseError("only at the top level")),
        ("{{ 1i }}", RenderError("complex number 1i is not supported")),
    ]);
}

#[test]
fn render_errors() {
    check(&[
        ("{{ trunc 5 }}", RenderError("wrong number of args for trunc: want 2 got 1")),
        ("{{ __line__ 1 }}", RenderError("wrong number of args for __line__: want 0 got 1")),
        ("{{ .app | __line__ }}", RenderError("wrong number of args for __line__: want 0 got 1")),
        ("{{ and }}", RenderError("wrong number of args for and: want at least 1 got 0")),
        (r#"{{ trunc "5" "hello" }}"#, RenderError("expected integer; found \"5\"")),
        ("{{ 5 | lower }}", RenderError("wrong type for value; expected string; got int")),
        ("{{ lower nil }}", RenderError("cannot assign nil to string")),
        ("{{ .app.x }}", RenderError("can't evaluate field x in type string")),
        (r#"{{ .app "x" }}"#, RenderError("app is not a method but has arguments")),
        (r#"{{ "a" "b" }}"#, RenderError("can't give argument to non-function \"a\"")),
        ("{{ nil }}", RenderError("nil is not a command")),
        (r#"{{ repeat 100000000 "xx" }}"#, RenderError("exceeds the limit")),
        ("{{ range 2000000 }}{{ end }}", RenderError("exceeded 1000000 steps")),
        (r#"{{ range $i, $e := 3 }}{{ end }}"#, RenderError("can't use 3 to iterate over more than one variable")),
        (r#"{{ range "abc" }}{{ end }}"#, RenderError("range can't iterate over \"abc\"")),
        (r#"{{ template "nope" }}"#, RenderError("no such template \"nope\"")),
        (
            r#"{{ define "loop" }}{{ template "loop" }}{{ end }}{{ template "loop" }}"#,
            RenderError("maximum template depth"),
        ),
    ]);
}

#[test]
fn errors_name_their_position() {
    let error = Template::parse("ab\n  {{ foo }}").expect_err("unknown function");
    assert_eq!((error.position.line, error.position.column), (2, 6), "{error}");
    assert_eq!(error.to_string(), "template: line 2, col 6: function \"foo\" not defined");

    let template = Template::parse("x {{ .app }} {{ div 1 0 }}").expect("parses");
    let data = TemplateData { labels: LABELS, line: LINE, timestamp_ns: TIMESTAMP_NS };
    let mut out = String::new();
    let error = template.render(&data, &mut out).expect_err("division by zero");
    assert_eq!((error.position.line, error.position.column), (1, 17), "{error}");
    assert_eq!(error.message, "error calling div: runtime error: integer divide by zero");
}

#[test]
fn nesting_is_bounded() {
    let deep = format!("{{{{ {}1{} }}}}", "(".repeat(150), ")".repeat(150));
    let error = Template::parse(&deep).expect_err("too deep");
    assert!(error.message.contains("nests more than"), "{error}");
    let fine = format!("{{{{ {}1{} }}}}", "(".repeat(50), ")".repeat(50));
    let template = Template::parse(&fine).expect("parses");
    let data = TemplateData { labels: LABELS, line: LINE, timestamp_ns: TIMESTAMP_NS };
    let mut out = String::new();
    template.render(&data, &mut out).expect("renders");
    assert_eq!(out, "1");
}

#[test]
fn output_is_appended_and_templates_are_reusable() {
    let template = Template::parse("{{ .app }}-{{ .status }}").expect("parses");
    assert!(!template.is_plain_text());
    assert!(Template::parse("just text").expect("parses").is_plain_text());
    let mut out = String::from(">");
    for (app, expected) in [("a", ">a-1"), ("b", ">a-1b-1")] {
        let labels = [("app", app), ("status", "1")];
        let data = TemplateData { labels: &labels, line: "", timestamp_ns: 0 };
        template.render(&data, &mut out).expect("renders");
        assert_eq!(out, expected);
    }
}

#[test]
fn unsorted_labels_are_still_found() {
    let template = Template::parse("{{ .b }}{{ .a }}").expect("parses");
    let labels = [("b", "2"), ("a", "1")];
    let data = TemplateData { labels: &labels, line: "", timestamp_ns: 0 };
    let mut out = String::new();
    template.render(&data, &mut out).expect("renders");
    assert_eq!(out, "21");
}

#[test]
fn memory_is_bounded() {
    check(&[
        (r#"{{ $x := repeat 1000000 "ab" }}{{ $y := print $x $x $x }}"#, RenderError("exceed the limit")),
        (
            r#"{{ $x := "ab" }}{{ range 40 }}{{ $x = printf "%s%s" $x $x }}{{ end }}"#,
            RenderError("the limit of 4194304 bytes"),
        ),
        (r#"{{ printf "%900000v" (split "" (repeat 100 "x")) }}"#, RenderError("exceeds the limit")),
        (r#"{{ regexReplaceAll "" (repeat 1000 "x") (repeat 10000 "y") }}"#, RenderError("exceeds the limit")),
        (r#"{{ split "" (repeat 300000 "x") }}"#, RenderError("exceed the limit of 262144")),
        (r#"{{ range 20 }}{{ $x := repeat 1000000 "abcd" }}{{ end }}"#, RenderError("produced more than")),
        (r#"{{ fromJson (repeat 600000 "[]") }}"#, RenderError("exceeds the limit of 1048576 bytes")),
    ]);
}

/// A small deterministic generator, so the generated cases are the same on every run.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, choices: &[&'a str]) -> &'a str {
        choices[(self.next() % choices.len() as u64) as usize]
    }
}

/// Every error a template can give, at parse or render time, is a message without a trailing
/// period; no input panics.
fn parse_and_render(text: &str) {
    let data = TemplateData { labels: LABELS, line: LINE, timestamp_ns: TIMESTAMP_NS };
    let well_formed = |message: &str| !message.is_empty() && !message.ends_with('.');
    match Template::parse(text) {
        Err(error) => assert!(well_formed(&error.message), "{text:?}: {error}"),
        Ok(template) => {
            let mut out = String::new();
            if let Err(error) = template.render(&data, &mut out) {
                assert!(well_formed(&error.message), "{text:?}: {error}");
            }
        }
    }
}

#[test]
fn generated_templates_never_panic() {
    const WORDS: &[&str] = &[
        "{{",
        "}}",
        "{{- ",
        " -}}",
        "{{/*",
        "*/}}",
        " ",
        "\n",
        ".app",
        ".status",
        ".json",
        ".epoch",
        "$x",
        "$",
        ":=",
        "=",
        ",",
        "|",
        "(",
        ")",
        ".",
        "\"a\"",
        "\"\\u00e9\"",
        "`b`",
        "1",
        "-2",
        "3.5",
        "0x1p3",
        "1e400",
        "'c'",
        "true",
        "nil",
        "if",
        "else",
        "end",
        "range",
        "with",
        "break",
        "continue",
        "define",
        "template",
        "block",
        "\"n\"",
        "printf",
        "\"%v%d%5.2f%q%x%[3]s%*d%!\"",
        "index",
        "slice",
        "len",
        "eq",
        "lt",
        "and",
        "or",
        "not",
        "print",
        "html",
        "js",
        "__line__",
        "__timestamp__",
        "substr",
        "trunc",
        "repeat",
        "indent",
        "split",
        "regexReplaceAll",
        "count",
        "\"(a*)\"",
        "fromJson",
        "toDate",
        "\"2006-01-02T15:04:05Z07:00\"",
        "date",
        "unixToTime",
        "unixEpoch",
        "add",
        "divf",
        "mod",
        "round",
        "alignLeft",
        "b64dec",
        "urldecode",
        "bytes",
        "duration",
        "default",
        "title",
        "é",
        "-",
        "\"%\"",
        "99999999999999999999",
        "Replace",
        "toDateInZone",
        "\"+02:00\"",
        "-1",
        "1000000",
    ];
    let mut random = Seeded(0x5eed_1234_abcd_9876);
    for _ in 0..20_000 {
        let count = 1 + random.next() % 24;
        let mut text = String::new();
        for _ in 0..count {
            text.push_str(random.pick(WORDS));
            if random.next().is_multiple_of(3) {
                text.push(' ');
            }
        }
        parse_and_render(&text);
        parse_and_render(&format!("{{{{ {text} }}}}"));
    }
}

#[test]
fn generated_formats_and_layouts_never_panic() {
    const FORMAT: &[&str] = &[
        "%", "-", "+", "#", " ", "0", "1", "9", ".", "*", "[", "]", "2", "v", "d", "s", "q", "x", "X", "e", "f", "g",
        "G", "t", "T", "c", "U", "b", "o", "O", "é", "z",
    ];
    const ARGS: &[&str] =
        &["1", "-7", "2.5", "\"é\"", "true", "nil", "__timestamp__", "(split \",\" \"a,b\")", "(fromJson .json)", "."];
    const LAYOUT: &[&str] = &[
        "2006", "06", "01", "1", "Jan", "January", "02", "2", "_2", "__2", "002", "15", "03", "3", "04", "4", "05",
        "5", "PM", "pm", "MST", "Z07:00", "-0700", "-07", "Z0700", ".000", ".999", ",9", " ", "-", "T", ":", "Mon",
        "Monday",
    ];
    const VALUES: &[&str] = &[
        "2021", "21", "11", "Nov", "November", " 2", "318", "22", "10", "13", "20", "PM", "UTC", "CET", "GMT+3",
        "+02:00", "-0700", "Z", ".123", ",5", " ", "-", "T", ":", "Tue", "é", "99",
    ];
    let mut random = Seeded(0xf0_12_7a_77);
    for _ in 0..10_000 {
        let mut format = String::new();
        for _ in 0..1 + random.next() % 10 {
            format.push_str(random.pick(FORMAT));
        }
        let mut args = String::new();
        for _ in 0..random.next() % 4 {
            args.push(' ');
            args.push_str(random.pick(ARGS));
        }
        parse_and_render(&format!("{{{{ printf {format:?}{args} }}}}"));
        let mut layout = String::new();
        let mut value = String::new();
        for _ in 0..1 + random.next() % 8 {
            layout.push_str(random.pick(LAYOUT));
            value.push_str(random.pick(VALUES));
        }
        parse_and_render(&format!("{{{{ toDate {layout:?} {value:?} }}}} {{{{ date {layout:?} __timestamp__ }}}}"));
    }
}

#[test]
fn templates_are_shared_across_threads() {
    fn shareable<T: Send + Sync>(_: &T) -> bool {
        true
    }
    let template = Template::parse(r#"{{ regexReplaceAll "a+" .app "b" }}"#).expect("parses");
    assert!(shareable(&template));
    let rendered = std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            let data = TemplateData { labels: LABELS, line: LINE, timestamp_ns: TIMESTAMP_NS };
            let mut out = String::new();
            template.render(&data, &mut out).map(|()| out)
        });
        worker.join().expect("no panic")
    });
    assert_eq!(rendered.expect("renders"), "bpi");
}
