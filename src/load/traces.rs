//! The load tool's trace generator (`tripod-load traces`): traces through a small shop,
//! `gateway` > `api` > `cart` and, for a checkout, `payments`, with database client spans; about
//! ten spans a trace, about twenty attributes a span, resource attributes per service instance,
//! failures with exception events, slow queries, cache misses and retries. The same seed gives
//! the same traces. Benches use it too, so that their figures are on the spans the load tool
//! sends.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};

use super::Rng;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_look_like_a_shop() {
        let mut generator = Generator::new(3, 1_700_000_000_000_000_000, MS);
        let (mut spans, mut attributes, mut errors, mut events, mut traces) = (0u64, 0usize, 0, 0, 0);
        let mut services = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let (request, count, first) = generator.request(20);
            // Every span is one the OTLP ingest stores.
            assert_eq!(crate::ingest::otlp_traces::translate(request.clone()).refused_spans(), 0);
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
}
