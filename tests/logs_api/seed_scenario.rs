//! Every LogQL query of the seed scenario (../shared/data/seed-scenario.md) over logs shaped like
//! it, through the Loki HTTP API. The answers are worked out here, independently of the engine,
//! from the generated entries: which entries each query keeps, and the counts, rates and
//! averages over their windows. The INVALID query must be a 400 that names the problem.
//!
//! Entries sit half a second past whole seconds and queries run on whole minutes, so no entry
//! lies on a window's edge.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tripod::{Config, Server};
use tripod_storage::labels::Labels;
use tripod_storage::logs::{LogEntry, LogsAppender, StreamEntries};

const SECOND: i64 = 1_000_000_000;
const MINUTE: i64 = 60 * SECOND;

type LabelMap = BTreeMap<String, String>;

/// One generated entry: its stream's labels, time, line, and the JSON fields of the line (none
/// for plain-text lines).
#[derive(Debug, Clone)]
struct Entry {
    stream: LabelMap,
    t_ns: i64,
    line: String,
    fields: Option<serde_json::Map<String, Value>>,
}

impl Entry {
    fn label(&self, name: &str) -> Option<&str> {
        self.stream.get(name).map(String::as_str)
    }

    /// A JSON field as LogQL's `json` parser makes it a label: strings as they are, numbers
    /// as written. A field named like a stream label is `<name>_extracted`.
    fn field(&self, name: &str) -> Option<String> {
        let value = self.fields.as_ref()?.get(name)?;
        Some(match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
    }

    /// A label after `| json`: the stream's own label wins over a field of the same name.
    fn json_label(&self, name: &str) -> Option<String> {
        self.label(name).map(str::to_string).or_else(|| self.field(name))
    }

    fn number(&self, name: &str) -> Option<f64> {
        self.json_label(name)?.parse().ok()
    }
}

fn labels(pairs: &[(&str, &str)]) -> LabelMap {
    pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

/// A deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Traefik routes: backend, method, path, status, mean duration (ms), seconds between requests.
const ROUTES: [(&str, &str, &str, u16, u64, i64); 8] = [
    ("api@docker", "GET", "/api/todos", 200, 40, 4),
    ("api@docker", "POST", "/api/todos", 201, 60, 9),
    ("api@docker", "GET", "/api/todos/17", 404, 5, 23),
    ("api@docker", "GET", "/api/v1/very/long/uri", 414, 2, 41),
    ("ai-orchestrator@docker", "POST", "/api/v1/chat/completions", 200, 2400, 7),
    ("ai-orchestrator@docker", "POST", "/api/v1/chat/completions", 502, 1200, 31),
    ("dashboard@file", "GET", "/dashboard/", 200, 15, 11),
    ("dashboard@file", "GET", "/dashboard/api/stats", 503, 3, 37),
];

/// The scenario's logs over the 30 minutes before `eval_ns`.
fn generate(eval_ns: i64) -> Vec<Entry> {
    let start = eval_ns - 30 * MINUTE;
    let mut rng = Rng(0x5eed);
    let mut out = Vec::new();
    let time_of = |t_ns: i64| format!("{}.{:09}Z", t_ns / SECOND, t_ns % SECOND);
    let mut push = |stream: LabelMap, t_ns: i64, fields: Option<Value>, plain: Option<String>| {
        let (line, fields) = match (fields, plain) {
            (Some(Value::Object(map)), _) => (Value::Object(map.clone()).to_string(), Some(map)),
            (_, Some(text)) => (text, None),
            _ => unreachable!(),
        };
        out.push(Entry { stream, t_ns, line, fields });
    };
    // Traefik access lines, with the labels Promtail extracts. This setup's Promtail also adds
    // snake_case copies of the fields its dashboards query (`request_path`, `duration`).
    for (backend, method, path, status, mean_ms, every) in ROUTES {
        let stream = labels(&[
            ("backend_name", backend),
            ("job", "traefik"),
            ("log_type", "access"),
            ("request_method", method),
            ("status_code", &status.to_string()),
        ]);
        let mut t = start + SECOND / 2 + (rng.below(every as u64) as i64) * SECOND;
        while t < eval_ns {
            let duration_ns = (mean_ms / 2 + rng.below(mean_ms + 1)) * 1_000_000;
            let fields = json!({
                "ClientHost": format!("10.0.{}.{}", rng.below(4), rng.below(250) + 1),
                "DownstreamContentSize": rng.below(20_000),
                "DownstreamStatus": status,
                "Duration": duration_ns,
                "RequestMethod": method,
                "RequestPath": path,
                "RequestProtocol": "HTTP/1.1",
                "RouterName": backend,
                "duration": duration_ns,
                "level": "info",
                "request_path": path,
                "time": time_of(t),
            });
            push(stream.clone(), t, Some(fields), None);
            t += every * SECOND;
        }
    }
    // Traefik's own error log: rare, and not in the last quarter of an hour.
    for (level, minute, message) in [
        ("error", 3, "service api@docker: connection refused"),
        ("warn", 9, "retrying upstream"),
        ("error", 14, "TLS handshake error"),
    ] {
        let t = start + minute * MINUTE + SECOND / 2;
        let fields = json!({"level": level, "msg": message, "time": time_of(t)});
        push(labels(&[("job", "traefik"), ("level", level), ("log_type", "error")]), t, Some(fields), None);
    }
    // The AI orchestrator backend.
    let orchestrator = labels(&[("job", "ai-orchestrator"), ("service", "backend")]);
    let mut t = start + SECOND / 2;
    let mut n = 0;
    while t < eval_ns {
        let level = match n % 17 {
            0 => "ERROR",
            5 | 11 => "WARNING",
            _ => "INFO",
        };
        let request_id = match n {
            100 => "abc-123-def".to_string(),
            200 => "abc-123".to_string(),
            _ => format!("req-{:06x}", rng.below(1 << 24)),
        };
        let duration_ms = if n % 13 == 0 { 5000 + rng.below(20_000) } else { 50 + rng.below(3000) };
        let fields = json!({
            "level": level,
            "timestamp": time_of(t),
            "logger": "orchestrator.api",
            "request_id": request_id,
            "duration_ms": duration_ms,
            "status_code": if level == "ERROR" { 500 } else { 200 },
            "message": "completion served",
        });
        push(orchestrator.clone(), t, Some(fields), None);
        t += 3 * SECOND;
        n += 1;
    }
    // The todo backend (pino).
    let todo = labels(&[("app", "backend"), ("namespace", "tp2devops")]);
    let mut t = start + SECOND / 2;
    n = 0;
    while t < eval_ns {
        let level = if n % 9 == 0 { "ERROR" } else { "INFO" };
        let trace_id = if n == 50 { "abc123".to_string() } else { format!("{:016x}{:016x}", rng.next(), rng.next()) };
        let fields = json!({
            "level": level,
            "time": time_of(t),
            "msg": if level == "ERROR" { "ERROR failed to save todo" } else { "todo saved" },
            "todoId": rng.below(200),
            "traceId": trace_id,
            "duration": rng.below(1000),
        });
        push(todo.clone(), t, Some(fields), None);
        t += 2 * SECOND;
        n += 1;
    }
    // The time manager backend.
    let timemanager = labels(&[
        ("compose_project", "time-manager"),
        ("compose_service", "backend"),
        ("container_name", "timemanager-backend"),
    ]);
    let mut t = start + SECOND / 2;
    n = 0;
    while t < eval_ns {
        let message = match n % 6 {
            0 => "ERROR token expired",
            1 | 2 => "auth ok for user",
            _ => "clock entry stored",
        };
        let fields = json!({"level": if n % 6 == 0 { "error" } else { "info" }, "message": message, "duration": rng.below(2000)});
        push(timemanager.clone(), t, Some(fields), None);
        t += 5 * SECOND;
        n += 1;
    }
    // The e-commerce dashboard (JSON) and its database (plain text).
    let dashboard = labels(&[("container", "ecommerce-dashboard")]);
    let mut t = start + SECOND / 2;
    n = 0;
    while t < eval_ns {
        let (level, message) = match n % 10 {
            0 => ("error", "ERROR payment failed"),
            3 => ("error", "Traceback (most recent call last): ValueError"),
            4 | 8 => ("info", "GET /health 200"),
            5 => ("info", "POST /api/cart 201"),
            _ => ("info", "GET /api/products 200"),
        };
        let fields =
            json!({"level": level, "timestamp": time_of(t), "message": message, "response_time": 20 + rng.below(400)});
        push(dashboard.clone(), t, Some(fields), None);
        t += SECOND;
        n += 1;
    }
    let postgres = labels(&[("container", "ecommerce-postgres")]);
    let mut t = start + SECOND / 2;
    n = 0;
    while t < eval_ns {
        let line = match n % 8 {
            0 => format!(
                "LOG:  duration: {}.{} ms  statement: SELECT * FROM orders",
                100 + rng.below(5000),
                rng.below(10)
            ),
            3 => "ERROR:  deadlock detected".to_string(),
            _ => format!("LOG:  duration: {}.{} ms  statement: SELECT 1", rng.below(99), rng.below(10)),
        };
        push(postgres.clone(), t, None, Some(line));
        t += 4 * SECOND;
        n += 1;
    }
    out
}

fn store(server: &Server, entries: &[Entry]) {
    let storage = server.storage().expect("storage is open");
    let mut by_stream: BTreeMap<LabelMap, Vec<LogEntry>> = BTreeMap::new();
    for entry in entries {
        by_stream.entry(entry.stream.clone()).or_default().push(LogEntry {
            t_ns: entry.t_ns,
            line: entry.line.clone(),
            metadata: Labels::empty(),
        });
    }
    for (stream, entries) in by_stream {
        let labels = Labels::from_pairs(stream.iter()).unwrap();
        storage.logs().append("fake", &[StreamEntries { labels: &labels, entries: &entries }]).unwrap();
    }
}

/// Whether `entry` is selected by a stream selector given as (name, op, value) triples.
fn selects(entry: &Entry, selector: &[(&str, &str, &str)]) -> bool {
    selector.iter().all(|(name, op, value)| {
        let actual = entry.label(name).unwrap_or("");
        let regex = || regex::Regex::new(&format!("^(?s:{value})$")).unwrap();
        match *op {
            "=" => actual == *value,
            "!=" => actual != *value,
            "=~" => regex().is_match(actual),
            "!~" => !regex().is_match(actual),
            _ => unreachable!(),
        }
    })
}

struct Harness {
    client: reqwest::Client,
    base: String,
    entries: Vec<Entry>,
    eval_ns: i64,
}

impl Harness {
    async fn get(&self, path: &str, params: &[(&str, String)]) -> (u16, Value) {
        let response = self.client.get(format!("{}{path}", self.base)).query(params).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// A log query over the last 30 minutes: the answer must be the newest `limit` (100) of the
    /// entries `keep` says yes to, newest first.
    async fn logs(&self, query: &str, selector: &[(&str, &str, &str)], keep: impl Fn(&Entry) -> bool) {
        let start = self.eval_ns - 30 * MINUTE;
        let (status, body) = self
            .get(
                "/loki/api/v1/query_range",
                &[
                    ("query", query.to_string()),
                    ("start", start.to_string()),
                    ("end", self.eval_ns.to_string()),
                    ("limit", "100".into()),
                    ("direction", "backward".into()),
                    ("step", "15000ms".into()),
                ],
            )
            .await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(body["data"]["resultType"], "streams", "{query}");
        let mut expected: Vec<(i64, &str)> = self
            .entries
            .iter()
            .filter(|e| e.t_ns >= start && e.t_ns < self.eval_ns && selects(e, selector) && keep(e))
            .map(|e| (e.t_ns, e.line.as_str()))
            .collect();
        expected.sort_by(|a, b| b.cmp(a));
        expected.truncate(100);
        let mut got: Vec<(i64, String)> = Vec::new();
        for stream in body["data"]["result"].as_array().unwrap() {
            for value in stream["values"].as_array().unwrap() {
                got.push((value[0].as_str().unwrap().parse().unwrap(), value[1].as_str().unwrap().to_string()));
            }
        }
        got.sort_by(|a, b| b.cmp(a));
        let got: Vec<(i64, &str)> = got.iter().map(|(t, l)| (*t, l.as_str())).collect();
        assert_eq!(got.len(), expected.len(), "{query}: entry count");
        assert_eq!(got, expected, "{query}");
    }

    /// An instant metric query at the evaluation time: per group (from `group`), `aggregate`
    /// of the entries within `window` that `keep` says yes to.
    async fn vector(
        &self,
        query: &str,
        selector: &[(&str, &str, &str)],
        window: i64,
        keep: impl Fn(&Entry) -> bool,
        group: impl Fn(&Entry) -> LabelMap,
        aggregate: impl Fn(&[&Entry]) -> f64,
    ) -> BTreeMap<LabelMap, f64> {
        let mut groups: BTreeMap<LabelMap, Vec<&Entry>> = BTreeMap::new();
        for entry in &self.entries {
            if entry.t_ns > self.eval_ns - window
                && entry.t_ns <= self.eval_ns
                && selects(entry, selector)
                && keep(entry)
            {
                groups.entry(group(entry)).or_default().push(entry);
            }
        }
        let expected: BTreeMap<LabelMap, f64> = groups.iter().map(|(k, v)| (k.clone(), aggregate(v))).collect();
        let got = self.instant(query).await;
        self.compare(query, &got, &expected);
        expected
    }

    async fn instant(&self, query: &str) -> BTreeMap<LabelMap, f64> {
        let (status, body) =
            self.get("/loki/api/v1/query", &[("query", query.to_string()), ("time", self.eval_ns.to_string())]).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(body["data"]["resultType"], "vector", "{query}: {body}");
        let mut got = BTreeMap::new();
        for sample in body["data"]["result"].as_array().unwrap() {
            let metric: LabelMap = sample["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            assert_eq!(sample["value"][0].as_f64().unwrap(), (self.eval_ns / SECOND) as f64, "{query}");
            got.insert(metric, sample["value"][1].as_str().unwrap().parse::<f64>().unwrap());
        }
        got
    }

    fn compare(&self, query: &str, got: &BTreeMap<LabelMap, f64>, expected: &BTreeMap<LabelMap, f64>) {
        assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "{query}: series");
        for (labels, value) in expected {
            let actual = got[labels];
            assert!((actual - value).abs() <= 1e-9 * value.abs().max(1.0), "{query} {labels:?}: {actual} != {value}");
        }
    }
}

fn none(_: &Entry) -> LabelMap {
    LabelMap::new()
}

fn by(names: &'static [&'static str]) -> impl Fn(&Entry) -> LabelMap {
    move |entry| {
        names
            .iter()
            .filter_map(|name| entry.json_label(name).filter(|v| !v.is_empty()).map(|v| (name.to_string(), v)))
            .collect()
    }
}

fn by_stream_label(names: &'static [&'static str]) -> impl Fn(&Entry) -> LabelMap {
    move |entry| names.iter().filter_map(|name| entry.label(name).map(|v| (name.to_string(), v.to_string()))).collect()
}

fn count(entries: &[&Entry]) -> f64 {
    entries.len() as f64
}

fn per_second(window: i64) -> impl Fn(&[&Entry]) -> f64 {
    move |entries| entries.len() as f64 / (window / SECOND) as f64
}

fn contains_ci(text: &str, words: &[&str]) -> bool {
    let lower = text.to_lowercase();
    words.iter().any(|w| lower.contains(w))
}

/// Every label `| json` gives an entry (stream labels, then fields not named like one).
fn all_json_labels(entry: &Entry) -> LabelMap {
    let mut labels = entry.stream.clone();
    for (key, _) in entry.fields.iter().flatten() {
        let name = if entry.stream.contains_key(key) { format!("{key}_extracted") } else { key.clone() };
        if let Some(value) = entry.field(key).filter(|v| !v.is_empty()) {
            labels.insert(name, value);
        }
    }
    labels
}

#[tokio::test]
async fn every_seed_scenario_logql_query_answers_right() {
    let server = Server::start(Config::embedded()).await.unwrap();
    server.ready().await.unwrap();
    let address = server.address(tripod::config::ListenerName::Loki).unwrap();
    let now_ns = tripod::duration::unix_now_ms() * 1_000_000;
    let eval_ns = now_ns / MINUTE * MINUTE - 5 * MINUTE;
    let entries = generate(eval_ns);
    store(&server, &entries);
    let h = Harness { client: reqwest::Client::new(), base: format!("http://{address}"), entries, eval_ns };

    const ACCESS: &[(&str, &str, &str)] = &[("job", "=", "traefik"), ("log_type", "=", "access")];
    let status = |e: &Entry| e.number("status_code").unwrap_or(f64::NAN);
    // Log queries.
    h.logs(r#"{job="traefik", log_type="access"}"#, ACCESS, |_| true).await;
    h.logs(r#"{job="traefik", log_type="access"} | json"#, ACCESS, |_| true).await;
    h.logs(r#"{job="traefik", log_type="access"} | json | status_code >= 400 and status_code < 500"#, ACCESS, |e| {
        (400.0..500.0).contains(&status(e))
    })
    .await;
    h.logs(r#"{job="traefik", log_type="access"} | json | status_code >= 500"#, ACCESS, |e| status(e) >= 500.0).await;
    h.logs(r#"{job="traefik", log_type="access"} | json | status_code = 200"#, ACCESS, |e| status(e) == 200.0).await;
    h.logs(r#"{job="traefik", log_type="access"} | json | status_code = 414"#, ACCESS, |e| status(e) == 414.0).await;
    h.logs(r#"{job="traefik", log_type="access"} | json | backend_name =~ ".*ai-orchestrator.*""#, ACCESS, |e| {
        e.label("backend_name").unwrap().contains("ai-orchestrator")
    })
    .await;
    h.logs(r#"{job="traefik", log_type="access"} | json | request_path =~ "/api/v1/chat.*""#, ACCESS, |e| {
        e.json_label("request_path").unwrap().starts_with("/api/v1/chat")
    })
    .await;
    h.logs(r#"{job="traefik", log_type="access"} | json | request_method = "POST""#, ACCESS, |e| {
        e.label("request_method") == Some("POST")
    })
    .await;
    h.logs(r#"{job="traefik", log_type="access"} | json | duration > 1000000000"#, ACCESS, |e| {
        e.number("duration").unwrap() > 1e9
    })
    .await;
    h.logs(r#"{job="traefik", status_code="404"}"#, &[("job", "=", "traefik"), ("status_code", "=", "404")], |_| true)
        .await;
    h.logs(r#"{job="ai-orchestrator"}"#, &[("job", "=", "ai-orchestrator")], |_| true).await;
    h.logs(r#"{job="ai-orchestrator"} | json | level = "ERROR""#, &[("job", "=", "ai-orchestrator")], |e| {
        e.json_label("level").as_deref() == Some("ERROR")
    })
    .await;
    h.logs(r#"{job="ai-orchestrator"} | json | request_id = "abc-123-def""#, &[("job", "=", "ai-orchestrator")], |e| {
        e.json_label("request_id").as_deref() == Some("abc-123-def")
    })
    .await;
    h.logs(r#"{job="ai-orchestrator"} | json | duration_ms > 5000"#, &[("job", "=", "ai-orchestrator")], |e| {
        e.number("duration_ms").unwrap() > 5000.0
    })
    .await;
    h.logs(
        r#"{job=~"traefik|ai-orchestrator"} | json | request_id = "abc-123""#,
        &[("job", "=~", "traefik|ai-orchestrator")],
        |e| e.json_label("request_id").as_deref() == Some("abc-123"),
    )
    .await;
    const TODO: &[(&str, &str, &str)] = &[("namespace", "=", "tp2devops")];
    h.logs(r#"{namespace="tp2devops", app="backend"}"#, TODO, |_| true).await;
    h.logs(r#"{namespace="tp2devops"} |= "ERROR""#, TODO, |e| e.line.contains("ERROR")).await;
    h.logs(r#"{namespace="tp2devops"} | json | traceId="abc123""#, TODO, |e| {
        e.json_label("traceId").as_deref() == Some("abc123")
    })
    .await;
    h.logs(r#"{namespace="tp2devops"} | json | level="ERROR" | todoId > 100"#, TODO, |e| {
        e.json_label("level").as_deref() == Some("ERROR") && e.number("todoId").unwrap() > 100.0
    })
    .await;
    h.logs(r#"{namespace="tp2devops", app="backend"} | json | duration > 500"#, TODO, |e| {
        e.number("duration").unwrap() > 500.0
    })
    .await;
    const TIMEMANAGER: &[(&str, &str, &str)] = &[("container_name", "=", "timemanager-backend")];
    h.logs(r#"{container_name="timemanager-backend"} |= "ERROR""#, TIMEMANAGER, |e| e.line.contains("ERROR")).await;
    h.logs(r#"{container_name="timemanager-backend"} | json | duration > 1000"#, TIMEMANAGER, |e| {
        e.number("duration").unwrap() > 1000.0
    })
    .await;
    h.logs(r#"{container_name="timemanager-backend"} |= "auth""#, TIMEMANAGER, |e| e.line.contains("auth")).await;
    const DASHBOARD: &[(&str, &str, &str)] = &[("container", "=", "ecommerce-dashboard")];
    h.logs(r#"{container="ecommerce-dashboard"} != "health""#, DASHBOARD, |e| !e.line.contains("health")).await;
    h.logs(r#"{container="ecommerce-dashboard"} |~ "error|exception|failed""#, DASHBOARD, |e| {
        ["error", "exception", "failed"].iter().any(|w| e.line.contains(w))
    })
    .await;
    h.logs(r#"{container="ecommerce-dashboard"} |~ "GET|POST""#, DASHBOARD, |e| {
        e.line.contains("GET") || e.line.contains("POST")
    })
    .await;
    h.logs(r#"{container="ecommerce-dashboard"} |~ "Traceback""#, DASHBOARD, |e| e.line.contains("Traceback")).await;
    // line_format rewrites the line: compare against the rewritten lines.
    {
        let query =
            r#"{container="ecommerce-dashboard"} | json | level="error" | line_format "{{.timestamp}} - {{.message}}""#;
        let rewritten: Vec<Entry> = h
            .entries
            .iter()
            .filter(|e| selects(e, DASHBOARD) && e.json_label("level").as_deref() == Some("error"))
            .map(|e| Entry {
                line: format!("{} - {}", e.field("timestamp").unwrap(), e.field("message").unwrap()),
                ..e.clone()
            })
            .collect();
        let formatted = Harness { client: h.client.clone(), base: h.base.clone(), entries: rewritten, eval_ns };
        formatted.logs(query, DASHBOARD, |_| true).await;
    }
    const POSTGRES: &[(&str, &str, &str)] = &[("container", "=", "ecommerce-postgres")];
    let slow = regex::Regex::new("duration: [0-9]{3,}").unwrap();
    h.logs(r#"{container="ecommerce-postgres"} |~ "duration: [0-9]{3,}""#, POSTGRES, |e| slow.is_match(&e.line)).await;
    h.logs(r#"{container="ecommerce-postgres"} |~ "deadlock""#, POSTGRES, |e| e.line.contains("deadlock")).await;
    const ANY_JOB: &[(&str, &str, &str)] = &[("job", "=~", ".+")];
    h.logs(r#"{job=~".+"} |~ "(?i)error|exception|failed""#, ANY_JOB, |e| {
        contains_ci(&e.line, &["error", "exception", "failed"])
    })
    .await;

    // Metric queries, at the evaluation time.
    let five = 5 * MINUTE;
    let json_ok = |e: &Entry| e.fields.is_some();
    h.vector(
        r#"sum by (backend_name) (rate({job="traefik"} | json | __error__="" [5m]))"#,
        &[("job", "=", "traefik")],
        five,
        json_ok,
        by_stream_label(&["backend_name"]),
        per_second(five),
    )
    .await;
    let mean_duration =
        |entries: &[&Entry]| entries.iter().map(|e| e.number("duration").unwrap()).sum::<f64>() / entries.len() as f64;
    // topk over per-path sums of per-stream averages.
    {
        let query = r#"topk(10, sum by (request_path) (avg_over_time({job="traefik", log_type="access"} | json | unwrap duration [5m])))"#;
        let mut per_series: BTreeMap<LabelMap, Vec<&Entry>> = BTreeMap::new();
        for e in h.entries.iter().filter(|e| e.t_ns > eval_ns - five && e.t_ns <= eval_ns && selects(e, ACCESS)) {
            let mut labels = all_json_labels(e);
            labels.remove("duration");
            per_series.entry(labels).or_default().push(e);
        }
        let mut sums: BTreeMap<LabelMap, f64> = BTreeMap::new();
        for (labels, entries) in &per_series {
            *sums
                .entry(
                    labels.iter().filter(|(k, _)| *k == "request_path").map(|(k, v)| (k.clone(), v.clone())).collect(),
                )
                .or_default() += mean_duration(entries);
        }
        let mut ranked: Vec<(LabelMap, f64)> = sums.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        ranked.truncate(10);
        let expected: BTreeMap<LabelMap, f64> = ranked.into_iter().collect();
        assert!(!expected.is_empty());
        h.compare(query, &h.instant(query).await, &expected);
    }
    h.vector(
        r#"sum by (status_code) (rate({job="traefik", log_type="access"} | json [5m]))"#,
        ACCESS,
        five,
        |_| true,
        by_stream_label(&["status_code"]),
        per_second(five),
    )
    .await;
    h.vector(
        r#"sum(rate({job="traefik", log_type="access"} | json | status_code >= 500 [5m]))"#,
        ACCESS,
        five,
        |e| status(e) >= 500.0,
        none,
        per_second(five),
    )
    .await;
    h.vector(
        r#"topk(10, sum by (request_path) (rate({job="traefik"} | json [5m])))"#,
        &[("job", "=", "traefik")],
        five,
        |_| true,
        by(&["request_path"]),
        per_second(five),
    )
    .await;
    h.vector(
        r#"sum by (status_code) (count_over_time({job="traefik"} | json [5m]))"#,
        &[("job", "=", "traefik")],
        five,
        |_| true,
        by_stream_label(&["status_code"]),
        count,
    )
    .await;
    {
        // topk(20, per-series averages over 10m) by request_path: the top 20 per path group.
        let query = r#"topk(20, avg_over_time({job="traefik"} | json | unwrap duration [10m])) by (request_path)"#;
        let ten = 10 * MINUTE;
        let mut per_series: BTreeMap<LabelMap, Vec<&Entry>> = BTreeMap::new();
        for e in h
            .entries
            .iter()
            .filter(|e| e.t_ns > eval_ns - ten && e.t_ns <= eval_ns && selects(e, &[("job", "=", "traefik")]))
        {
            let mut labels = all_json_labels(e);
            labels.remove("duration");
            per_series.entry(labels).or_default().push(e);
        }
        let mut groups: BTreeMap<Option<String>, Vec<(LabelMap, f64)>> = BTreeMap::new();
        for (labels, entries) in &per_series {
            groups
                .entry(labels.get("request_path").cloned())
                .or_default()
                .push((labels.clone(), mean_duration(entries)));
        }
        let mut expected = BTreeMap::new();
        for (_, mut members) in groups {
            members.sort_by(|a, b| b.1.total_cmp(&a.1));
            expected.extend(members.into_iter().take(20));
        }
        h.compare(query, &h.instant(query).await, &expected);
    }
    h.vector(
        r#"rate({namespace="tp2devops"} |= "ERROR" [5m])"#,
        TODO,
        five,
        |e| e.line.contains("ERROR"),
        |e| e.stream.clone(),
        per_second(five),
    )
    .await;
    let one = MINUTE;
    h.vector(
        r#"rate({container="ecommerce-dashboard"}[1m])"#,
        DASHBOARD,
        one,
        |_| true,
        |e| e.stream.clone(),
        per_second(one),
    )
    .await;
    h.vector(
        r#"count_over_time({container="ecommerce-dashboard"}[5m])"#,
        DASHBOARD,
        five,
        |_| true,
        |e| e.stream.clone(),
        count,
    )
    .await;
    h.vector(
        r#"sum(count_over_time({job=~".+"} [5m])) by (level)"#,
        ANY_JOB,
        five,
        |_| true,
        by_stream_label(&["level"]),
        count,
    )
    .await;
    h.vector(
        r#"sum(count_over_time({job=~".+"}[5m])) by (container)"#,
        ANY_JOB,
        five,
        |_| true,
        by_stream_label(&["container"]),
        count,
    )
    .await;
    h.vector(
        r#"sum(rate({job=~".+"}[5m])) by (container)"#,
        ANY_JOB,
        five,
        |_| true,
        by_stream_label(&["container"]),
        per_second(five),
    )
    .await;
    {
        let query = r#"sum(rate({container="ecommerce-dashboard"} |= "ERROR" [5m])) / sum(rate({container="ecommerce-dashboard"} [5m])) * 100"#;
        let window: Vec<&Entry> = h
            .entries
            .iter()
            .filter(|e| e.t_ns > eval_ns - five && e.t_ns <= eval_ns && selects(e, DASHBOARD))
            .collect();
        let errors = window.iter().filter(|e| e.line.contains("ERROR")).count() as f64;
        let expected = BTreeMap::from([(LabelMap::new(), errors / window.len() as f64 * 100.0)]);
        h.compare(query, &h.instant(query).await, &expected);
    }
    h.vector(
        r#"topk(5, sum(count_over_time({job=~".+"} |~ "(?i)error" [1h])) by (container))"#,
        ANY_JOB,
        60 * MINUTE,
        |e| contains_ci(&e.line, &["error"]),
        by_stream_label(&["container"]),
        count,
    )
    .await;
    {
        let query = r#"avg_over_time({container="ecommerce-dashboard"} | json | unwrap response_time [5m])"#;
        let mut per_series: BTreeMap<LabelMap, Vec<&Entry>> = BTreeMap::new();
        for e in h.entries.iter().filter(|e| e.t_ns > eval_ns - five && e.t_ns <= eval_ns && selects(e, DASHBOARD)) {
            let mut labels = all_json_labels(e);
            labels.remove("response_time");
            per_series.entry(labels).or_default().push(e);
        }
        let expected: BTreeMap<LabelMap, f64> = per_series
            .into_iter()
            .map(|(labels, entries)| {
                let mean =
                    entries.iter().map(|e| e.number("response_time").unwrap()).sum::<f64>() / entries.len() as f64;
                (labels, mean)
            })
            .collect();
        h.compare(query, &h.instant(query).await, &expected);
    }
    {
        // The alert: rate of ERROR lines above 10 per second; the scenario's rate is far below,
        // so the answer is empty, and the same expression without the threshold is not.
        let query = r#"sum(rate({container="ecommerce-dashboard"} |= "ERROR" [5m])) > 10"#;
        assert!(h.instant(query).await.is_empty(), "{query}");
        let below = h.instant(r#"sum(rate({container="ecommerce-dashboard"} |= "ERROR" [5m])) > 0.01"#).await;
        assert_eq!(below.len(), 1);
    }

    // The INVALID query: a 400 that says where and what.
    let (status, body) = h
        .get(
            "/loki/api/v1/query_range",
            &[
                (
                    "query",
                    r#"{job="traefik", status_code >= 500} or {job="ai-orchestrator", level="ERROR"}"#.to_string(),
                ),
                ("start", (eval_ns - MINUTE).to_string()),
                ("end", eval_ns.to_string()),
            ],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let message =
        body.as_str().map(str::to_string).unwrap_or_else(|| body["message"].as_str().unwrap_or_default().to_string());
    assert!(message.contains("parse error at line 1, col 29"), "{message}");
    assert!(message.contains("unexpected >="), "{message}");
    server.shutdown().await.unwrap();
}
