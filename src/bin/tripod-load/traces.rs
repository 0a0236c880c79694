//! `tripod-load traces`: realistic OTLP trace traffic, over gRPC or HTTP (protobuf or JSON), to
//! any OTLP receiver, so that Tripod and Tempo (or a collector) can be measured with the same
//! requests.
//!
//! Each trace is a request through a small shop: `gateway` takes it and calls `api`, which
//! authorizes it and calls `cart` and, for a checkout, `payments`; `cart` and `payments` query
//! the database (client spans with `peer.service=db`). About ten spans a trace, about twenty
//! attributes a span (HTTP, database, user and code attributes), resource attributes per
//! service instance (Kubernetes, host, SDK). Some traces fail (a payment error, with an
//! exception event, propagated up as 5xx), some are slow (a slow query), some carry cache-miss
//! and retry events. Everything comes from a generator seeded by `--seed`, so two runs with the
//! same seed send the same traces (times are taken from the start of the run).
//!
//! Requests are encoded before the clock starts, so the figure measures the receiver, not this
//! tool. It reports spans/s accepted, the spans the receiver refused (partial success), errors,
//! and the first trace ID sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;

use crate::{Rng, describe, parse_duration_arg};

/// How requests travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TraceProtocol {
    /// OTLP/gRPC `TraceService/Export`; `--url` is the server, e.g. `http://127.0.0.1:4317`.
    Grpc,
    /// OTLP/HTTP protobuf; `--url` is the endpoint, e.g. `http://127.0.0.1:4318/v1/traces`.
    HttpProtobuf,
    /// OTLP/HTTP JSON (hex IDs); `--url` as for `http-protobuf`.
    HttpJson,
}

#[derive(Parser)]
pub struct Traces {
    /// The gRPC server (`http://host:4317`) or the HTTP endpoint (`http://host:4318/v1/traces`).
    #[arg(long)]
    url: String,
    /// Transport and encoding.
    #[arg(long, value_enum, default_value_t = TraceProtocol::Grpc)]
    protocol: TraceProtocol,
    /// Traces per second to send; 0 sends as fast as the receiver accepts.
    #[arg(long, default_value_t = 0)]
    traces_per_second: u64,
    /// Traces per request (a collector's batch of about ten spans a trace).
    #[arg(long, default_value_t = 50)]
    batch_traces: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// How long to send.
    #[arg(long, default_value = "20s", value_parser = parse_duration_arg)]
    duration: Duration,
    /// Requests to encode ahead; they are sent once each, in order.
    #[arg(long, default_value_t = 400)]
    prepared: usize,
    /// Seed of the generator: the same seed sends the same traces.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Compress requests with gzip.
    #[arg(long)]
    gzip: bool,
    /// `X-Scope-OrgID` to send (header or gRPC metadata), for a multi-tenant receiver.
    #[arg(long)]
    tenant: Option<String>,
}

const MS: u64 = 1_000_000;

fn unit(rng: &mut Rng) -> f64 {
    (rng.next() >> 11) as f64 / (1u64 << 53) as f64
}

fn below(rng: &mut Rng, n: u64) -> u64 {
    rng.next() % n.max(1)
}

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[below(rng, items.len() as u64) as usize]
}

fn string(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::IntValue(value)) }),
        ..Default::default()
    }
}

fn double(key: &str, value: f64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::DoubleValue(value)) }),
        ..Default::default()
    }
}

fn boolean(key: &str, value: bool) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::BoolValue(value)) }),
        ..Default::default()
    }
}

fn strings(key: &str, values: &[&str]) -> KeyValue {
    let values =
        values.iter().map(|value| AnyValue { value: Some(any_value::Value::StringValue(value.to_string())) }).collect();
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::ArrayValue(ArrayValue { values })) }),
        ..Default::default()
    }
}

/// The services of the shop, in calling order.
const SERVICES: [(&str, &str, &str); 4] = [
    ("gateway", "go", "1.26.0"),
    ("api", "java", "1.44.1"),
    ("cart", "nodejs", "1.30.0"),
    ("payments", "python", "1.45.2"),
];
/// Instances (pods) of each service.
const INSTANCES: u64 = 3;
const REGIONS: [&str; 2] = ["eu-west-1", "eu-central-1"];
const USER_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "okhttp/4.12.0",
];
const ROUTES: [(&str, &str, bool); 5] = [
    ("GET", "/api/cart", false),
    ("POST", "/api/cart/items", false),
    ("POST", "/api/checkout", true),
    ("GET", "/api/cart/summary", false),
    ("POST", "/api/orders", true),
];

/// One service instance's resource.
fn resource(service: usize, instance: u64) -> Resource {
    let (name, language, sdk) = SERVICES[service];
    let pod = format!("{name}-7d9f{service}c8b4-{instance:05x}");
    let node = format!("ip-10-0-{}-{}.eu-west-1.compute.internal", service + 1, 10 + instance);
    Resource {
        attributes: vec![
            string("service.name", name),
            string("service.namespace", "shop"),
            string("service.version", format!("2.{}.{}", service + 3, instance)),
            string("service.instance.id", pod.clone()),
            string("deployment.environment", "production"),
            string("host.name", node.clone()),
            string("host.arch", "amd64"),
            string("os.type", "linux"),
            string("k8s.namespace.name", "shop"),
            string("k8s.pod.name", pod),
            string("k8s.deployment.name", name),
            string("k8s.node.name", node),
            string("k8s.cluster.name", "prod-eu"),
            string("cloud.provider", "aws"),
            string("cloud.region", REGIONS[instance as usize % REGIONS.len()]),
            string("telemetry.sdk.name", "opentelemetry"),
            string("telemetry.sdk.language", language),
            string("telemetry.sdk.version", sdk),
        ],
        ..Default::default()
    }
}

/// What a new span of a trace is.
struct NewSpan<'a> {
    service: usize,
    parent: Option<&'a Vec<u8>>,
    name: String,
    kind: span::SpanKind,
    start_ns: u64,
    duration_ms: u64,
    attributes: Vec<KeyValue>,
}

/// A span being built: its service and the span.
struct Built {
    service: usize,
    span: Span,
}

/// Generates traces from a seed.
pub struct Generator {
    rng: Rng,
    /// Resources of every service instance, by service then instance.
    resources: Vec<Vec<Resource>>,
    /// Start of the next trace.
    next_start_ns: u64,
    /// Time between two trace starts.
    spacing_ns: u64,
}

impl Generator {
    pub fn new(seed: u64, start_ns: u64, spacing_ns: u64) -> Generator {
        let resources =
            (0..SERVICES.len()).map(|service| (0..INSTANCES).map(|i| resource(service, i)).collect()).collect();
        // Mix the seed so that small seeds give unrelated streams; xorshift must not start at 0.
        let mixed = (seed ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9) | 1;
        Generator { rng: Rng(mixed), resources, next_start_ns: start_ns, spacing_ns: spacing_ns.max(1) }
    }

    /// Adds a span to `spans`; its ID.
    fn add(&mut self, spans: &mut Vec<Built>, trace_id: &[u8], new: NewSpan<'_>) -> Vec<u8> {
        let span_id = self.id8();
        spans.push(Built {
            service: new.service,
            span: Span {
                trace_id: trace_id.to_vec(),
                span_id: span_id.clone(),
                parent_span_id: new.parent.cloned().unwrap_or_default(),
                flags: 0x101,
                name: new.name,
                kind: new.kind as i32,
                start_time_unix_nano: new.start_ns,
                end_time_unix_nano: new.start_ns + new.duration_ms * MS + below(&mut self.rng, MS),
                attributes: new.attributes,
                ..Default::default()
            },
        });
        span_id
    }

    fn id16(&mut self) -> Vec<u8> {
        let mut id = self.rng.next().to_be_bytes().to_vec();
        id.extend_from_slice(&self.rng.next().to_be_bytes());
        id
    }

    fn id8(&mut self) -> Vec<u8> {
        self.rng.next().to_be_bytes().to_vec()
    }

    /// Attributes every span of a service carries: code location, thread, user and request.
    fn common(&mut self, function: &str, user: u64, request_id: u64) -> Vec<KeyValue> {
        vec![
            string("code.function", function),
            string("code.namespace", format!("shop.{}", function.split('.').next().unwrap_or("main"))),
            int("code.lineno", 20 + below(&mut self.rng, 400) as i64),
            int("thread.id", 1 + below(&mut self.rng, 64) as i64),
            string("thread.name", format!("worker-{}", below(&mut self.rng, 16))),
            string("enduser.id", format!("user-{user:06}")),
            string("session.id", format!("{:016x}", user.wrapping_mul(0x9e37_79b9_7f4a_7c15))),
            string("app.request_id", format!("req-{request_id:012x}")),
            boolean("app.feature.new_checkout", user.is_multiple_of(4)),
        ]
    }

    /// HTTP server or client attributes.
    fn http(&mut self, method: &str, route: &str, status: i64, peer: &str, user_agent: &str) -> Vec<KeyValue> {
        vec![
            string("http.method", method),
            string("http.route", route),
            string("http.target", route.replace("{id}", &below(&mut self.rng, 100_000).to_string())),
            string("http.scheme", "https"),
            string("http.flavor", "1.1"),
            int("http.status_code", status),
            int("http.request_content_length", below(&mut self.rng, 4096) as i64),
            int("http.response_content_length", 64 + below(&mut self.rng, 16_384) as i64),
            string("net.peer.name", peer),
            int("net.peer.port", 8080),
            string("user_agent.original", user_agent),
        ]
    }

    /// Database client attributes.
    fn db(&mut self, operation: &str, table: &str, statement: &str) -> Vec<KeyValue> {
        vec![
            string("db.system", "postgresql"),
            string("db.name", "shop"),
            string("db.user", "shop_app"),
            string("db.operation", operation),
            string("db.sql.table", table),
            string("db.statement", statement),
            string("peer.service", "db"),
            string("net.peer.name", "postgres.shop.svc.cluster.local"),
            int("net.peer.port", 5432),
            int("db.rows_affected", below(&mut self.rng, 20) as i64),
            string("db.connection_string", "postgresql://postgres.shop.svc.cluster.local:5432/shop"),
        ]
    }

    /// One trace: about ten spans, each with its service.
    fn trace(&mut self) -> Vec<Built> {
        let trace_id = self.id16();
        let start = self.next_start_ns;
        self.next_start_ns += self.spacing_ns;
        let (method, route, checkout) = *pick(&mut self.rng, &ROUTES);
        let failing = checkout && below(&mut self.rng, 100) < 8;
        let slow = below(&mut self.rng, 100) < 2;
        let cache_miss = below(&mut self.rng, 100) < 20;
        let user = below(&mut self.rng, 50_000);
        let request_id = self.rng.next() >> 16;
        let user_agent = *pick(&mut self.rng, &USER_AGENTS);
        let status = if failing {
            502
        } else if method == "POST" {
            201
        } else {
            200
        };
        let mut spans: Vec<Built> = Vec::with_capacity(12);

        // Times: each child starts a little after its parent and ends before it.
        let db_ms = if slow { 400 + below(&mut self.rng, 1600) } else { 1 + below(&mut self.rng, 8) };
        let cart_ms = 2 + db_ms + below(&mut self.rng, 3);
        let payments_ms = if checkout { 20 + below(&mut self.rng, 60) } else { 0 };
        let api_ms = 3 + cart_ms + payments_ms + below(&mut self.rng, 4);
        let gateway_ms = api_ms + 2 + below(&mut self.rng, 3);

        let mut attributes = self.http(method, route, status, "shop.example.com", user_agent);
        attributes.extend(self.common("gateway.ServeHTTP", user, request_id));
        attributes.push(string("net.host.name", "shop.example.com"));
        let root = self.add(
            &mut spans,
            &trace_id,
            NewSpan {
                service: 0,
                parent: None,
                name: format!("{method} {route}"),
                kind: span::SpanKind::Server,
                start_ns: start,
                duration_ms: gateway_ms,
                attributes,
            },
        );

        let mut attributes = self.http(method, route, status, "api.shop.svc.cluster.local", user_agent);
        attributes.extend(self.common("gateway.proxy", user, request_id));
        let to_api = self.add(
            &mut spans,
            &trace_id,
            NewSpan {
                service: 0,
                parent: Some(&root),
                name: format!("{method} api"),
                kind: span::SpanKind::Client,
                start_ns: start + MS / 2,
                duration_ms: api_ms + 1,
                attributes,
            },
        );

        let api_start = start + MS;
        let mut attributes = self.http(method, route, status, "gateway", user_agent);
        attributes.extend(self.common("api.handler", user, request_id));
        let api = self.add(
            &mut spans,
            &trace_id,
            NewSpan {
                service: 1,
                parent: Some(&to_api),
                name: format!("{method} {route}"),
                kind: span::SpanKind::Server,
                start_ns: api_start,
                duration_ms: api_ms,
                attributes,
            },
        );

        let mut attributes = self.common("api.authorize", user, request_id);
        attributes.extend([
            string("auth.method", "jwt"),
            strings("auth.scopes", &["cart:read", "cart:write", "orders:write"]),
            boolean("auth.cached", !cache_miss),
        ]);
        let authorize = self.add(
            &mut spans,
            &trace_id,
            NewSpan {
                service: 1,
                parent: Some(&api),
                name: "authorize".into(),
                kind: span::SpanKind::Internal,
                start_ns: api_start + MS / 4,
                duration_ms: 1,
                attributes,
            },
        );
        if cache_miss {
            let index = spans.iter().position(|built| built.span.span_id == authorize).unwrap_or_default();
            spans[index].span.events.push(span::Event {
                time_unix_nano: api_start + MS / 2,
                name: "cache miss".into(),
                attributes: vec![string("cache.key", format!("session:{user}")), string("cache.backend", "redis")],
                dropped_attributes_count: 0,
            });
        }

        let cart_start = api_start + 2 * MS;
        let mut attributes = self.http("GET", "/cart/{id}", 200, "cart.shop.svc.cluster.local", "api/2.3");
        attributes.extend(self.common("api.cartClient", user, request_id));
        let to_cart = self.add(
            &mut spans,
            &trace_id,
            NewSpan {
                service: 1,
                parent: Some(&api),
                name: "GET cart".into(),
                kind: span::SpanKind::Client,
                start_ns: cart_start,
                duration_ms: cart_ms + 1,
                attributes,
            },
        );
        let mut attributes = self.http("GET", "/cart/{id}", 200, "api", "api/2.3");
        attributes.extend(self.common("cart.getCart", user, request_id));
        attributes.extend([
            int("app.cart.items", 1 + below(&mut self.rng, 12) as i64),
            double("app.cart.total", unit(&mut self.rng) * 400.0),
        ]);
        let cart = self.add(
            &mut spans,
            &trace_id,
            NewSpan {
                service: 2,
                parent: Some(&to_cart),
                name: "GET /cart/{id}".into(),
                kind: span::SpanKind::Server,
                start_ns: cart_start + MS / 2,
                duration_ms: cart_ms,
                attributes,
            },
        );
        let mut attributes = vec![
            string("db.system", "redis"),
            string("db.operation", "GET"),
            string("db.statement", format!("GET cart:{user}")),
            int("db.redis.database_index", 0),
            string("peer.service", "redis"),
            string("net.peer.name", "redis.shop.svc.cluster.local"),
            int("net.peer.port", 6379),
            boolean("cache.hit", !cache_miss),
        ];
        attributes.extend(self.common("cart.cache.get", user, request_id));
        self.add(
            &mut spans,
            &trace_id,
            NewSpan {
                service: 2,
                parent: Some(&cart),
                name: "GET".into(),
                kind: span::SpanKind::Client,
                start_ns: cart_start + MS * 3 / 4,
                duration_ms: 0,
                attributes,
            },
        );
        let mut attributes =
            self.db("SELECT", "cart_items", "SELECT item_id, quantity, price FROM cart_items WHERE cart_id = $1");
        attributes.extend(self.common("cart.repository.load", user, request_id));
        let query = self.add(
            &mut spans,
            &trace_id,
            NewSpan {
                service: 2,
                parent: Some(&cart),
                name: "SELECT shop.cart_items".into(),
                kind: span::SpanKind::Client,
                start_ns: cart_start + MS,
                duration_ms: db_ms,
                attributes,
            },
        );
        if slow {
            let index = spans.iter().position(|built| built.span.span_id == query).unwrap_or_default();
            spans[index].span.events.push(span::Event {
                time_unix_nano: cart_start + MS + db_ms * MS,
                name: "slow query".into(),
                attributes: vec![int("db.duration_ms", db_ms as i64), string("db.plan", "Seq Scan on cart_items")],
                dropped_attributes_count: 0,
            });
        }

        if checkout {
            let pay_start = cart_start + cart_ms * MS + 2 * MS;
            let pay_status = if failing { 502 } else { 201 };
            let mut attributes = self.http("POST", "/charge", pay_status, "payments.shop.svc.cluster.local", "api/2.3");
            attributes.extend(self.common("api.paymentsClient", user, request_id));
            let to_payments = self.add(
                &mut spans,
                &trace_id,
                NewSpan {
                    service: 1,
                    parent: Some(&api),
                    name: "POST payments".into(),
                    kind: span::SpanKind::Client,
                    start_ns: pay_start,
                    duration_ms: payments_ms + 1,
                    attributes,
                },
            );
            let mut attributes = self.http("POST", "/charge", pay_status, "api", "api/2.3");
            attributes.extend(self.common("payments.charge", user, request_id));
            attributes.extend([
                string("payment.provider", "stripe"),
                double("payment.amount", unit(&mut self.rng) * 400.0),
                string("payment.currency", "EUR"),
            ]);
            let payments = self.add(
                &mut spans,
                &trace_id,
                NewSpan {
                    service: 3,
                    parent: Some(&to_payments),
                    name: "POST /charge".into(),
                    kind: span::SpanKind::Server,
                    start_ns: pay_start + MS / 2,
                    duration_ms: payments_ms,
                    attributes,
                },
            );
            let mut attributes = self.db(
                "INSERT",
                "payments",
                "INSERT INTO payments (order_id, amount, currency, status) VALUES ($1, $2, $3, $4)",
            );
            attributes.extend(self.common("payments.repository.save", user, request_id));
            self.add(
                &mut spans,
                &trace_id,
                NewSpan {
                    service: 3,
                    parent: Some(&payments),
                    name: "INSERT shop.payments".into(),
                    kind: span::SpanKind::Client,
                    start_ns: pay_start + MS,
                    duration_ms: 2,
                    attributes,
                },
            );
            if failing {
                for built in &mut spans {
                    let id = &built.span.span_id;
                    if *id == payments || *id == to_payments || *id == api || *id == to_api || *id == root {
                        built.span.status = Some(Status { message: "payment provider unavailable".into(), code: 2 });
                    }
                    if *id == payments {
                        built.span.events.push(span::Event {
                            time_unix_nano: built.span.end_time_unix_nano - MS / 2,
                            name: "exception".into(),
                            attributes: vec![
                                string("exception.type", "stripe.error.APIConnectionError"),
                                string("exception.message", "payment provider unavailable"),
                                string(
                                    "exception.stacktrace",
                                    "Traceback (most recent call last):\n  File \"payments/charge.py\", line 88, in charge\n    response = stripe.Charge.create(**params)\nstripe.error.APIConnectionError: payment provider unavailable",
                                ),
                                boolean("exception.escaped", false),
                            ],
                            dropped_attributes_count: 0,
                        });
                    }
                }
            }
        }
        let mut attributes = self.common("api.render", user, request_id);
        attributes.extend([
            string("app.response.format", "json"),
            int("app.response.bytes", 64 + below(&mut self.rng, 16_384) as i64),
            boolean("app.response.compressed", below(&mut self.rng, 2) == 0),
            string("app.template", "cart.v2"),
            int("app.response.items", below(&mut self.rng, 12) as i64),
            double("app.render.cpu_ms", unit(&mut self.rng) * 2.0),
        ]);
        let render_start = api_start + api_ms * MS - MS;
        self.add(
            &mut spans,
            &trace_id,
            NewSpan {
                service: 1,
                parent: Some(&api),
                name: "render response".into(),
                kind: span::SpanKind::Internal,
                start_ns: render_start,
                duration_ms: 0,
                attributes,
            },
        );
        for built in &mut spans {
            if built.span.status.is_none() && built.span.kind == span::SpanKind::Server as i32 {
                built.span.status = Some(Status { message: String::new(), code: 0 });
            }
        }
        spans
    }

    /// One request of `traces` traces, grouped by service instance and scope as a collector
    /// batches them. Returns the request and its span count.
    pub fn request(&mut self, traces: usize) -> (ExportTraceServiceRequest, u64, Vec<u8>) {
        let mut by_service: Vec<Vec<Vec<Span>>> = vec![vec![Vec::new(); INSTANCES as usize]; SERVICES.len()];
        let mut spans = 0u64;
        let mut first_trace = Vec::new();
        for index in 0..traces {
            let trace = self.trace();
            if index == 0 {
                first_trace = trace[0].span.trace_id.clone();
            }
            // One instance of each service serves the whole trace.
            let instances: Vec<usize> = (0..SERVICES.len()).map(|_| below(&mut self.rng, INSTANCES) as usize).collect();
            for built in trace {
                spans += 1;
                by_service[built.service][instances[built.service]].push(built.span);
            }
        }
        let mut resource_spans = Vec::new();
        for (service, instances) in by_service.into_iter().enumerate() {
            for (instance, spans) in instances.into_iter().enumerate() {
                if spans.is_empty() {
                    continue;
                }
                let (name, _, sdk) = SERVICES[service];
                resource_spans.push(ResourceSpans {
                    resource: Some(self.resources[service][instance].clone()),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: format!("io.opentelemetry.{name}"),
                            version: sdk.into(),
                            ..Default::default()
                        }),
                        spans,
                        schema_url: "https://opentelemetry.io/schemas/1.24.0".into(),
                    }],
                    schema_url: "https://opentelemetry.io/schemas/1.24.0".into(),
                });
            }
        }
        (ExportTraceServiceRequest { resource_spans }, spans, first_trace)
    }
}

/// A prepared request: the body as sent, and the spans it holds.
struct Prepared {
    body: Vec<u8>,
    spans: u64,
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// Bodies ready to send, and the first trace ID.
fn prepare(options: &Traces, start_ns: u64) -> Result<(Vec<Prepared>, String), String> {
    let spacing_ns = match options.traces_per_second {
        0 => MS,
        rate => (1_000_000_000 / rate).max(1),
    };
    let mut generator = Generator::new(options.seed, start_ns, spacing_ns);
    let mut out = Vec::with_capacity(options.prepared);
    let mut first = String::new();
    for index in 0..options.prepared {
        let (request, spans, first_trace) = generator.request(options.batch_traces);
        if index == 0 {
            first = first_trace.iter().map(|byte| format!("{byte:02x}")).collect();
        }
        let body = match options.protocol {
            TraceProtocol::Grpc | TraceProtocol::HttpProtobuf => request.encode_to_vec(),
            TraceProtocol::HttpJson => {
                serde_json::to_vec(&request).map_err(|error| format!("cannot encode a request as json: {error}"))?
            }
        };
        // gRPC compresses in the transport; HTTP bodies are compressed here, ahead of time.
        let body = if options.gzip && options.protocol != TraceProtocol::Grpc { gzip(&body) } else { body };
        out.push(Prepared { body, spans });
    }
    Ok((out, first))
}

/// A gRPC codec that sends prepared protobuf bytes as the request and decodes the response.
#[derive(Clone, Copy, Default)]
struct PreparedCodec;
struct PreparedEncoder;
struct ResponseDecoder;

impl tonic::codec::Codec for PreparedCodec {
    type Encode = Vec<u8>;
    type Decode = ExportTraceServiceResponse;
    type Encoder = PreparedEncoder;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> PreparedEncoder {
        PreparedEncoder
    }

    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

impl tonic::codec::Encoder for PreparedEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, buffer: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(buffer, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for ResponseDecoder {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn decode(&mut self, buffer: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Self::Item>, tonic::Status> {
        ExportTraceServiceResponse::decode(buffer)
            .map(Some)
            .map_err(|error| tonic::Status::internal(format!("the response does not decode: {error}")))
    }
}

/// Where requests go.
#[derive(Clone)]
enum Sender {
    Grpc(tonic::client::Grpc<tonic::transport::Channel>),
    Http(reqwest::Client),
}

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Sends one request; the spans the receiver refused, or an error.
async fn send(sender: &mut Sender, options: &Traces, body: Vec<u8>) -> Result<u64, String> {
    match sender {
        Sender::Grpc(grpc) => {
            let mut request = tonic::Request::new(body);
            if let Some(tenant) = &options.tenant {
                let value = tenant.parse().map_err(|_| format!("--tenant {tenant:?} is not a valid header value"))?;
                request.metadata_mut().insert("x-scope-orgid", value);
            }
            grpc.ready().await.map_err(|error| describe(&error))?;
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(EXPORT_PATH);
            let response = grpc
                .unary(request, path, PreparedCodec)
                .await
                .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?;
            Ok(response.into_inner().partial_success.map_or(0, |partial| partial.rejected_spans.max(0) as u64))
        }
        Sender::Http(client) => {
            let json = options.protocol == TraceProtocol::HttpJson;
            let content_type = if json { "application/json" } else { "application/x-protobuf" };
            let mut request = client.post(&options.url).header("content-type", content_type).body(body);
            if options.gzip {
                request = request.header("content-encoding", "gzip");
            }
            if let Some(tenant) = &options.tenant {
                request = request.header("x-scope-orgid", tenant);
            }
            let response = request.send().await.map_err(|error| describe(&error))?;
            let status = response.status();
            let bytes = response.bytes().await.map_err(|error| describe(&error))?;
            if !status.is_success() {
                return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes).trim()));
            }
            let rejected = if json {
                let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                answer["partialSuccess"]["rejectedSpans"].as_str().and_then(|text| text.parse().ok()).unwrap_or(0)
            } else {
                ExportTraceServiceResponse::decode(bytes.as_ref())
                    .ok()
                    .and_then(|response| response.partial_success)
                    .map_or(0, |partial| partial.rejected_spans.max(0) as u64)
            };
            Ok(rejected)
        }
    }
}

pub async fn run(options: Traces) -> Result<(), String> {
    if options.batch_traces == 0 || options.prepared == 0 || options.concurrency == 0 {
        return Err("--batch-traces, --prepared and --concurrency must be above 0".into());
    }
    let now_ns = tripod::duration::unix_now_ms().max(0) as u64 * MS;
    eprintln!(
        "preparing {} requests of {} traces (about {} spans each), seed {}",
        options.prepared,
        options.batch_traces,
        options.batch_traces * 10,
        options.seed
    );
    let (requests, first_trace) = prepare(&options, now_ns)?;
    let requests = Arc::new(requests);
    let sender = match options.protocol {
        TraceProtocol::Grpc => None,
        TraceProtocol::HttpProtobuf | TraceProtocol::HttpJson => Some(Sender::Http(
            reqwest::Client::builder()
                .pool_max_idle_per_host(options.concurrency)
                .build()
                .map_err(|error| describe(&error))?,
        )),
    };
    let options = Arc::new(options);
    let next = Arc::new(AtomicU64::new(0));
    let spans_accepted = Arc::new(AtomicU64::new(0));
    let spans_refused = Arc::new(AtomicU64::new(0));
    let traces_accepted = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    let mut senders = Vec::new();
    for _ in 0..options.concurrency {
        let sender = match &sender {
            Some(sender) => sender.clone(),
            None => {
                // A connection a worker, as separate exporters have.
                let channel = tonic::transport::Endpoint::from_shared(options.url.clone())
                    .map_err(|error| format!("--url {:?}: {error}", options.url))?
                    .connect()
                    .await
                    .map_err(|error| format!("cannot connect to {}: {}", options.url, describe(&error)))?;
                let mut grpc = tonic::client::Grpc::new(channel);
                if options.gzip {
                    grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
                }
                Sender::Grpc(grpc)
            }
        };
        senders.push(sender);
    }
    let started = Instant::now();
    let deadline = started + options.duration;
    for mut sender in senders {
        let (requests, options, next, spans_accepted, spans_refused, traces_accepted, errors) = (
            requests.clone(),
            options.clone(),
            next.clone(),
            spans_accepted.clone(),
            spans_refused.clone(),
            traces_accepted.clone(),
            errors.clone(),
        );
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(request) = requests.get(index) else { break };
                if options.traces_per_second > 0 {
                    // Pace: a request is due when the traces before it fit the rate.
                    let due = started
                        + Duration::from_secs_f64(
                            index as f64 * options.batch_traces as f64 / options.traces_per_second as f64,
                        );
                    tokio::time::sleep_until(due.into()).await;
                }
                match send(&mut sender, &options, request.body.clone()).await {
                    Ok(refused) => {
                        spans_accepted.fetch_add(request.spans.saturating_sub(refused), Ordering::Relaxed);
                        spans_refused.fetch_add(refused, Ordering::Relaxed);
                        traces_accepted.fetch_add(options.batch_traces as u64, Ordering::Relaxed);
                    }
                    Err(error) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("error: {error}");
                        }
                    }
                }
            }
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let spans = spans_accepted.load(Ordering::Relaxed);
    let sent = next.load(Ordering::Relaxed).min(requests.len() as u64);
    println!(
        "traces: {spans} spans ({} traces) accepted in {seconds:.2}s = {:.0} spans/s; {sent} requests, {} spans refused, {} errors; first trace {first_trace}",
        traces_accepted.load(Ordering::Relaxed),
        spans as f64 / seconds,
        spans_refused.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed)
    );
    if sent as usize >= requests.len() && Instant::now() < deadline {
        eprintln!(
            "note: all {} prepared requests were sent before the duration ended; raise --prepared",
            requests.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(protocol: TraceProtocol, seed: u64) -> Traces {
        Traces {
            url: String::new(),
            protocol,
            traces_per_second: 0,
            batch_traces: 20,
            concurrency: 1,
            duration: Duration::from_secs(1),
            prepared: 5,
            seed,
            gzip: false,
            tenant: None,
        }
    }

    #[test]
    fn the_same_seed_sends_the_same_traces() {
        let start = 1_700_000_000_000_000_000;
        let (a, first_a) = prepare(&options(TraceProtocol::HttpProtobuf, 7), start).unwrap();
        let (b, first_b) = prepare(&options(TraceProtocol::HttpProtobuf, 7), start).unwrap();
        let (c, first_c) = prepare(&options(TraceProtocol::HttpProtobuf, 8), start).unwrap();
        assert_eq!(first_a, first_b);
        assert_ne!(first_a, first_c);
        assert!(a.iter().zip(&b).all(|(x, y)| x.body == y.body));
        assert!(a.iter().zip(&c).any(|(x, y)| x.body != y.body));
    }

    #[test]
    fn traces_look_like_a_shop() {
        let mut generator = Generator::new(3, 1_700_000_000_000_000_000, MS);
        let (mut spans, mut attributes, mut errors, mut events, mut traces) = (0u64, 0usize, 0, 0, 0);
        let mut services = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let (request, count, first) = generator.request(20);
            assert_eq!(first.len(), 16);
            traces += 20;
            spans += count;
            for resource in &request.resource_spans {
                let resource_attributes = &resource.resource.as_ref().unwrap().attributes;
                assert!(resource_attributes.len() >= 15);
                services.insert(format!("{:?}", resource_attributes[0].value));
                for scope in &resource.scope_spans {
                    for span in &scope.spans {
                        attributes += span.attributes.len();
                        errors += usize::from(span.status.as_ref().is_some_and(|status| status.code == 2));
                        events += span.events.len();
                        assert_eq!(span.trace_id.len(), 16);
                        assert_eq!(span.span_id.len(), 8);
                        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
                    }
                }
            }
        }
        let per_trace = spans as f64 / traces as f64;
        assert!((9.0..=11.0).contains(&per_trace), "{per_trace} spans a trace");
        let per_span = attributes as f64 / spans as f64;
        assert!((17.0..=24.0).contains(&per_span), "{per_span} attributes a span");
        assert_eq!(services.len(), 4);
        assert!(errors > 0 && events > 0);
    }

    #[test]
    fn every_protocol_prepares_bodies() {
        for protocol in [TraceProtocol::Grpc, TraceProtocol::HttpProtobuf, TraceProtocol::HttpJson] {
            let (prepared, _) = prepare(&options(protocol, 1), 1_700_000_000_000_000_000).unwrap();
            for request in &prepared {
                let decoded: ExportTraceServiceRequest = match protocol {
                    TraceProtocol::HttpJson => serde_json::from_slice(&request.body).unwrap(),
                    _ => ExportTraceServiceRequest::decode(request.body.as_slice()).unwrap(),
                };
                let spans: usize =
                    decoded.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
                assert_eq!(spans as u64, request.spans);
            }
        }
    }
}
