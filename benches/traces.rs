//! Traces store figures on generated, realistic spans, in two shapes:
//!
//! - the load tool's (`tripod-load traces`), from its own generator (src/load/traces.rs),
//!   through the OTLP ingest's translation into the store's model:
//!   traces of about ten spans through a shop (gateway, api, cart, payments and their
//!   database calls), about twenty attributes a span (HTTP, database, user, session and code
//!   attributes), eighteen resource attributes a service instance, failures with exception
//!   events, slow queries, cache misses; 50 traces a request, as the load tool sends them;
//! - a compact shop of the same size with more randomness per span (user IDs, URLs and sizes
//!   drawn for every span, a few links): the footprint is also printed for it.
//!
//! Figures:
//! - footprint: bytes per span on disk (pages, blooms and meta of the block files), and in the
//!   WAL, printed before criterion runs, for the default options and variants;
//! - append: spans per second into head + WAL on one thread (criterion, by the clock);
//! - trace by ID: latency over a store of `TRIPOD_BENCH_SPANS` spans (default 2 000 000) of
//!   the load tool's shape in blocks, filled as a server would (a cut every million spans, each
//!   followed by a maintenance pass that compacts), p50 / p90 / p99 / max printed with the CPU
//!   time per lookup, then criterion's median;
//! - search: a selective search (one service and a user) and a status search over the same
//!   store.
//!
//! Run: `cargo bench --bench traces`. `TRIPOD_BENCH_DIR` chooses where the data directories go
//! (default: the system temp dir).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use tripod_storage::traces::{
    AttrValue, AttributeScope, CompareOp, NsRange, ResourceSpans, SpanCondition, SpanFilter, StatusCode, TraceId,
    TracesAppender, TracesCodec, TracesOptions, TracesQueryable,
};
use tripod_storage::wal::{SyncPolicy, WalOptions};
use tripod_storage::{Storage, StorageOptions};

/// 2024-01-01T00:00:00Z.
const START_NS: i64 = 1_704_067_200_000_000_000;
const TENANT: &str = "single-tenant";
/// Traces a request, as the load tool sends them by default.
const BATCH_TRACES: usize = 50;

/// CPU time this thread has used (user and system, so the WAL's writes count).
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid timespec for the call to fill; the clock exists on every Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("TRIPOD_BENCH_DIR") {
        Some(parent) => tempfile::tempdir_in(parent).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn storage_options(traces: TracesOptions) -> StorageOptions {
    StorageOptions {
        wal: WalOptions { segment_size_bytes: 128 << 20, sync: SyncPolicy::Never },
        traces: TracesOptions { retention_ns: None, ..traces },
        ..StorageOptions::default()
    }
}

/// The compact shop: a few services, about 20 attributes a span drawn at random for every span.
mod compact {
    use tripod_storage::traces::{
        AttrValue, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanEvent, SpanKind, SpanLink, SpanStatus,
        StatusCode, TraceId,
    };

    const MILLI: i64 = 1_000_000;

    /// A deterministic generator (xorshift64*).
    pub struct Rng(pub u64);

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

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len() as u64) as usize]
        }

        fn id<const N: usize>(&mut self) -> [u8; N] {
            let mut out = [0u8; N];
            for chunk in out.chunks_mut(8) {
                let word = self.next().to_le_bytes();
                chunk.copy_from_slice(&word[..chunk.len()]);
            }
            out[0] |= 1;
            out
        }
    }

    fn s(text: &str) -> AttrValue {
        AttrValue::String(text.to_string())
    }

    fn attrs(pairs: Vec<(&str, AttrValue)>) -> Vec<(String, AttrValue)> {
        pairs.into_iter().map(|(key, value)| (key.to_string(), value)).collect()
    }

    /// A service instance: its resource and instrumentation scope.
    pub struct Service {
        resource: Resource,
        scope: Scope,
    }

    pub fn services(rng: &mut Rng) -> Vec<Service> {
        let mut out = Vec::new();
        for (name, language, library) in [
            ("gateway", "go", "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"),
            ("api", "java", "io.opentelemetry.spring-webmvc-6.0"),
            ("cart", "python", "opentelemetry.instrumentation.flask"),
            ("payments", "nodejs", "@opentelemetry/instrumentation-http"),
        ] {
            for instance in 0..3 {
                let pod = format!("{name}-7d9f8b6c4-{:05x}", rng.below(1 << 20));
                out.push(Service {
                    resource: Resource {
                        attributes: attrs(vec![
                            ("service.name", s(name)),
                            ("service.namespace", s("shop")),
                            ("service.version", s("2.14.1")),
                            ("service.instance.id", AttrValue::String(format!("{pod}-{instance}"))),
                            ("deployment.environment", s("production")),
                            ("host.name", AttrValue::String(format!("node-{}", rng.below(12)))),
                            ("host.arch", s("amd64")),
                            ("os.type", s("linux")),
                            ("process.pid", AttrValue::Int(1 + rng.below(60_000) as i64)),
                            ("process.runtime.name", s(language)),
                            ("telemetry.sdk.name", s("opentelemetry")),
                            ("telemetry.sdk.language", s(language)),
                            ("k8s.namespace.name", s("shop")),
                            ("k8s.pod.name", AttrValue::String(pod)),
                        ]),
                        dropped_attributes_count: 0,
                    },
                    scope: Scope { name: library.to_string(), version: "0.46.0".into(), ..Scope::default() },
                });
            }
        }
        out
    }

    const ROUTES: [&str; 8] = [
        "/api/v1/orders/{id}",
        "/api/v1/orders",
        "/api/v1/cart/{id}/items",
        "/api/v1/products/{id}",
        "/api/v1/products",
        "/api/v1/payments/{id}/capture",
        "/api/v1/users/{id}",
        "/healthz",
    ];
    const AGENTS: [&str; 4] = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
        "okhttp/4.12.0",
        "python-requests/2.31.0",
    ];
    const STATEMENTS: [&str; 5] = [
        "SELECT id, status, total FROM orders WHERE id = $1",
        "SELECT * FROM cart_items WHERE cart_id = $1",
        "UPDATE orders SET status = $1 WHERE id = $2",
        "INSERT INTO payments (order_id, amount, currency) VALUES ($1, $2, $3)",
        "SELECT id, name, price FROM products WHERE id = ANY($1)",
    ];

    /// The ~20 attributes of one span.
    fn span_attributes(
        rng: &mut Rng,
        kind: SpanKind,
        database: bool,
        route: &str,
        status: i64,
    ) -> Vec<(String, AttrValue)> {
        let id = rng.below(200_000);
        let target = route.replace("{id}", &id.to_string());
        let mut out = attrs(vec![
            ("thread.id", AttrValue::Int(1 + rng.below(64) as i64)),
            ("thread.name", AttrValue::String(format!("http-nio-8080-exec-{}", 1 + rng.below(16)))),
            ("code.namespace", s("com.shop.orders.OrderController")),
            ("code.function", s(rng.pick(&["getOrder", "listOrders", "createOrder", "capture", "addItem"]))),
            ("code.lineno", AttrValue::Int(40 + rng.below(400) as i64)),
            ("user.id", AttrValue::String(format!("u-{}", rng.below(20_000)))),
            ("tenant.tier", s(rng.pick(&["free", "pro", "enterprise"]))),
            ("sampling.priority", AttrValue::Int(1)),
        ]);
        if database {
            out.extend(attrs(vec![
                ("db.system", s("postgresql")),
                ("db.name", s("shop")),
                ("db.user", s("shop_rw")),
                ("db.operation", s(rng.pick(&["SELECT", "UPDATE", "INSERT"]))),
                ("db.statement", s(rng.pick(&STATEMENTS))),
                ("db.sql.table", s(rng.pick(&["orders", "cart_items", "payments", "products"]))),
                ("net.peer.name", s("postgres.shop.svc.cluster.local")),
                ("net.peer.port", AttrValue::Int(5432)),
                ("server.address", s("10.12.4.31")),
                ("db.rows_affected", AttrValue::Int(rng.below(20) as i64)),
                ("db.connection.pool", s("hikari-primary")),
                ("db.instance", s("shop-primary-0")),
            ]));
        } else {
            out.extend(attrs(vec![
                (
                    "http.request.method",
                    s(if route.ends_with("capture") { "POST" } else { rng.pick(&["GET", "GET", "POST"]) }),
                ),
                ("http.route", s(route)),
                ("url.path", AttrValue::String(target.clone())),
                ("url.full", AttrValue::String(format!("https://shop.example.com{target}"))),
                ("url.scheme", s("https")),
                ("http.response.status_code", AttrValue::Int(status)),
                ("network.protocol.version", s("1.1")),
                ("server.address", s("shop.example.com")),
                ("server.port", AttrValue::Int(443)),
                ("user_agent.original", s(rng.pick(&AGENTS))),
                ("http.request.body.size", AttrValue::Int(rng.below(4000) as i64)),
                ("http.response.body.size", AttrValue::Int(rng.below(40_000) as i64)),
            ]));
            if kind == SpanKind::Client {
                out.push(("peer.service".into(), s(rng.pick(&["cart", "payments", "api"]))));
            }
        }
        out
    }

    /// One trace of about 10 spans, grouped by service as an SDK would send it.
    fn trace(rng: &mut Rng, services: &[Service], start_ns: i64) -> Vec<ResourceSpans> {
        let trace_id: TraceId = rng.id();
        let route = rng.pick(&ROUTES);
        let failed = rng.below(50) == 0;
        let span_count = 7 + rng.below(7) as usize;
        let mut spans: Vec<(usize, Span)> = Vec::with_capacity(span_count);
        let mut parents: Vec<[u8; 8]> = Vec::new();
        let mut offset = 0i64;
        for index in 0..span_count {
            let service = if index == 0 { rng.below(3) as usize } else { 3 + rng.below(9) as usize };
            let span_id: [u8; 8] = rng.id();
            let database = index > 0 && rng.below(3) == 0;
            let kind = match (index, database) {
                (0, _) => SpanKind::Server,
                (_, true) => SpanKind::Client,
                _ => [SpanKind::Server, SpanKind::Client, SpanKind::Internal][rng.below(3) as usize],
            };
            let status = if failed && index == span_count - 1 { 500 } else { 200 };
            let begin = start_ns + offset;
            offset += rng.below(3 * MILLI as u64) as i64;
            let duration = if index == 0 {
                40 * MILLI + rng.below(200 * MILLI as u64) as i64
            } else {
                rng.below(30 * MILLI as u64) as i64 + 50_000
            };
            let events = if database && rng.below(4) == 0 {
                vec![SpanEvent {
                    time_ns: begin + duration / 2,
                    name: "connection.acquired".into(),
                    attributes: attrs(vec![("pool.wait_ms", AttrValue::Int(rng.below(5) as i64))]),
                    dropped_attributes_count: 0,
                }]
            } else if status == 500 {
                vec![SpanEvent {
                    time_ns: begin + duration,
                    name: "exception".into(),
                    attributes: attrs(vec![
                        ("exception.type", s("java.net.SocketTimeoutException")),
                        ("exception.message", s("Read timed out")),
                    ]),
                    dropped_attributes_count: 0,
                }]
            } else {
                Vec::new()
            };
            let links = if index == 0 && rng.below(20) == 0 {
                vec![SpanLink { trace_id: rng.id(), span_id: rng.id(), ..SpanLink::default() }]
            } else {
                Vec::new()
            };
            let span = Span {
                trace_id,
                span_id,
                parent_span_id: if index == 0 { None } else { Some(parents[rng.below(parents.len() as u64) as usize]) },
                trace_state: String::new(),
                name: if database {
                    rng.pick(&["SELECT shop.orders", "UPDATE shop.orders", "INSERT shop.payments"]).to_string()
                } else if index == 0 {
                    format!("GET {route}")
                } else {
                    rng.pick(&["GET /api/v1/cart/{id}", "POST /api/v1/payments", "OrderService.load", "render"])
                        .to_string()
                },
                kind,
                start_ns: begin,
                end_ns: begin + duration,
                status: if status == 500 {
                    SpanStatus { code: StatusCode::Error, message: "Read timed out".into() }
                } else {
                    SpanStatus::default()
                },
                attributes: span_attributes(rng, kind, database, route, status),
                events,
                links,
                flags: 1,
                ..Span::default()
            };
            parents.push(span_id);
            spans.push((service, span));
        }
        let mut out: Vec<ResourceSpans> = Vec::new();
        for (service, span) in spans {
            let info = &services[service];
            match out.iter_mut().find(|group| group.resource == info.resource) {
                Some(group) => group.scope_spans[0].spans.push(span),
                None => out.push(ResourceSpans {
                    resource: info.resource.clone(),
                    schema_url: "https://opentelemetry.io/schemas/1.24.0".into(),
                    scope_spans: vec![ScopeSpans {
                        scope: info.scope.clone(),
                        schema_url: String::new(),
                        spans: vec![span],
                    }],
                }),
            }
        }
        out
    }

    /// Batches of `traces_per_batch` traces, `batches` of them, starting at `start_ns`. A batch
    /// holds one `ResourceSpans` per service instance, as an SDK exports them (or a collector's
    /// batch of several SDKs' exports).
    pub fn batches(
        rng: &mut Rng,
        services: &[Service],
        batches: usize,
        traces_per_batch: usize,
        start_ns: i64,
    ) -> Vec<Vec<ResourceSpans>> {
        (0..batches)
            .map(|batch| {
                let mut groups: Vec<ResourceSpans> = Vec::new();
                for n in 0..traces_per_batch {
                    let start = start_ns + ((batch * traces_per_batch + n) as i64) * 2 * MILLI;
                    for group in trace(rng, services, start) {
                        match groups.iter_mut().find(|have| have.resource == group.resource) {
                            Some(have) => {
                                have.scope_spans[0].spans.extend(group.scope_spans.into_iter().flat_map(|s| s.spans))
                            }
                            None => groups.push(group),
                        }
                    }
                }
                groups
            })
            .collect()
    }
}

/// A source of request batches of one shape.
enum Generator {
    /// The load tool's generator; its requests go through the OTLP ingest's translation.
    LoadTool(tripod::load::traces::Generator),
    Compact {
        rng: compact::Rng,
        services: Vec<compact::Service>,
        next_start_ns: i64,
    },
}

impl Generator {
    fn load_tool(seed: u64) -> Generator {
        Generator::LoadTool(tripod::load::traces::Generator::new(seed, START_NS as u64, 1_000_000))
    }

    fn compact(seed: u64) -> Generator {
        let mut rng = compact::Rng(seed | 1);
        let services = compact::services(&mut rng);
        Generator::Compact { rng, services, next_start_ns: START_NS }
    }

    /// A request of `traces` traces; the ID of its first trace.
    fn request(&mut self, traces: usize) -> (Vec<ResourceSpans>, TraceId) {
        match self {
            Generator::LoadTool(generator) => {
                let (request, _, first) = generator.request(traces);
                let translation = tripod::ingest::otlp_traces::translate(request);
                assert_eq!(translation.refused_spans(), 0, "the load tool's spans are all valid");
                (translation.batch, TraceId::try_from(first.as_slice()).unwrap_or_default())
            }
            Generator::Compact { rng, services, next_start_ns } => {
                let batch = compact::batches(rng, services, 1, traces, *next_start_ns).remove(0);
                *next_start_ns += traces as i64 * 2_000_000;
                let first = batch[0].scope_spans[0].spans[0].trace_id;
                (batch, first)
            }
        }
    }

    fn requests(&mut self, count: usize) -> Vec<Vec<ResourceSpans>> {
        (0..count).map(|_| self.request(BATCH_TRACES).0).collect()
    }
}

fn span_count(batch: &[ResourceSpans]) -> u64 {
    batch.iter().flat_map(|group| &group.scope_spans).map(|scope| scope.spans.len() as u64).sum()
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        total += if path.is_dir() { dir_bytes(&path) } else { entry.metadata().unwrap().len() };
    }
    total
}

/// Fills a store with `total_spans` spans of the load tool's shape as a server would: a cut
/// every million spans, each followed by a maintenance pass (compaction, WAL checkpoint).
/// Returns the first trace ID of every third request and how long the fill took.
fn filled_store(storage: &Storage, total_spans: u64) -> (Vec<TraceId>, Duration) {
    let mut generator = Generator::load_tool(1);
    let started = Instant::now();
    let (mut spans, mut since_cut, mut requests) = (0u64, 0u64, 0u64);
    let mut sample = Vec::new();
    while spans < total_spans {
        let (batch, first) = generator.request(BATCH_TRACES);
        requests += 1;
        if requests % 3 == 0 {
            sample.push(first);
        }
        let appended = storage.traces().append(TENANT, &batch).unwrap().appended;
        spans += appended;
        since_cut += appended;
        if since_cut >= 1_000_000 {
            storage.traces().flush_all().unwrap();
            storage.maintenance().unwrap();
            since_cut = 0;
        }
    }
    storage.traces().flush_all().unwrap();
    while storage.maintenance().unwrap().traces_compactions > 0 {}
    (sample, started.elapsed())
}

/// Appends `data` into a new store with `options` and cuts it; prints bytes per span.
fn footprint(name: &str, data: &[Vec<ResourceSpans>], options: TracesOptions, detailed: bool) {
    let spans: u64 = data.iter().map(|batch| span_count(batch)).sum();
    let dir = bench_dir();
    let storage = Storage::open(dir.path(), storage_options(options)).unwrap();
    let (started, cpu) = (Instant::now(), thread_cpu_time());
    for batch in data {
        storage.traces().append(TENANT, batch).unwrap();
    }
    let (append, append_cpu) = (started.elapsed(), thread_cpu_time() - cpu);
    let wal = dir_bytes(&dir.path().join("wal"));
    let (started, cpu) = (Instant::now(), thread_cpu_time());
    storage.traces().flush_all().unwrap();
    let (cut, cut_cpu) = (started.elapsed(), thread_cpu_time() - cpu);
    let on_disk = dir_bytes(&dir.path().join("traces"));
    let stats = storage.traces().store_stats();
    let per_second = |time: Duration| spans as f64 / time.as_secs_f64();
    if detailed {
        println!(
            "  {name}: {spans} spans in {} traces: WAL {:.0} bytes/span, block {:.1} bytes/span; append {:.0} spans/s of CPU ({:.0} by the clock), cut {:.0} spans/s of CPU ({:.0} by the clock)",
            stats.block_traces,
            wal as f64 / spans as f64,
            on_disk as f64 / spans as f64,
            per_second(append_cpu),
            per_second(append),
            per_second(cut_cpu),
            per_second(cut),
        );
    } else {
        println!(
            "  {name}: block {:.1} bytes/span, cut {:.0} spans/s of CPU",
            on_disk as f64 / spans as f64,
            per_second(cut_cpu)
        );
    }
}

fn footprint_report() {
    let load = Generator::load_tool(42).requests(600);
    let compact = Generator::compact(42).requests(600);
    println!("traces store footprint:");
    footprint("load tool's traces, default options", &load, TracesOptions::default(), true);
    footprint("compact shop, default options", &compact, TracesOptions::default(), true);
    let zstd = |level| TracesOptions { codec: TracesCodec::Zstd { level }, ..TracesOptions::default() };
    let groups = |bytes| TracesOptions { group_target_bytes: bytes, ..TracesOptions::default() };
    let pages = |bytes| TracesOptions { page_target_bytes: bytes, ..TracesOptions::default() };
    for (name, options) in [
        ("zstd 1", zstd(1)),
        ("zstd 6", zstd(6)),
        ("16 KiB groups", groups(16 << 10)),
        ("64 KiB groups", groups(64 << 10)),
        ("128 KiB groups", groups(128 << 10)),
        ("128 KiB pages", pages(128 << 10)),
        ("2 MiB pages", pages(2 << 20)),
    ] {
        footprint(&format!("load tool's traces, {name}"), &load, options.clone(), false);
        footprint(&format!("compact shop, {name}"), &compact, options, false);
    }
}

fn append_bench(criterion: &mut Criterion) {
    let mut data = Generator::load_tool(7).requests(200);
    let spans_per_batch = data.iter().map(|batch| span_count(batch)).sum::<u64>() / data.len() as u64;
    let mut group = criterion.benchmark_group("traces_append");
    group.throughput(Throughput::Elements(spans_per_batch));
    group.sample_size(20).measurement_time(Duration::from_secs(10));
    group.bench_function("head_and_wal_batches_of_50_traces", |bencher| {
        bencher.iter_custom(|iterations| {
            let dir = bench_dir();
            let storage = Storage::open(dir.path(), storage_options(TracesOptions::default())).unwrap();
            let mut timed = Duration::ZERO;
            let mut position = 0usize;
            let mut round = 0u8;
            for _ in 0..iterations {
                if position == data.len() {
                    // The data is used up: give every trace a new ID and cut the head, outside
                    // the timed section, so that every timed span is new.
                    round = round.wrapping_add(1);
                    for batch in &mut data {
                        for group in batch.iter_mut() {
                            for span in &mut group.scope_spans[0].spans {
                                span.trace_id[15] = round;
                            }
                        }
                    }
                    storage.traces().flush_all().unwrap();
                    position = 0;
                }
                let started = Instant::now();
                black_box(storage.traces().append(TENANT, &data[position]).unwrap());
                timed += started.elapsed();
                position += 1;
            }
            timed
        });
    });
    group.finish();
}

fn query_benches(criterion: &mut Criterion) {
    let total: u64 = std::env::var("TRIPOD_BENCH_SPANS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000_000);
    let dir = bench_dir();
    let storage = Storage::open(dir.path(), storage_options(TracesOptions::default())).unwrap();
    let (sample, fill) = filled_store(&storage, total);
    let stats = storage.traces().store_stats();
    println!(
        "traces store for queries (load tool's traces): {} spans, {} traces in {} blocks, {:.1} bytes/span on disk, filled (append, cuts, maintenance) in {:.1} s",
        stats.block_spans,
        stats.block_traces,
        stats.blocks,
        stats.block_bytes as f64 / stats.block_spans as f64,
        fill.as_secs_f64()
    );

    // Trace by ID, warm: every lookup once to warm the page cache, then timed.
    let mut rng = 3u64;
    let lookups: Vec<TraceId> = (0..5000)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            sample[(rng % sample.len() as u64) as usize]
        })
        .collect();
    let mut spans_found = 0;
    for trace_id in &lookups {
        spans_found += storage.traces().trace(TENANT, trace_id, None).unwrap().unwrap().span_count();
    }
    let cpu = thread_cpu_time();
    let mut latencies: Vec<Duration> = lookups
        .iter()
        .map(|trace_id| {
            let started = Instant::now();
            black_box(storage.traces().trace(TENANT, trace_id, None).unwrap());
            started.elapsed()
        })
        .collect();
    let cpu = (thread_cpu_time() - cpu) / latencies.len() as u32;
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "  trace by ID, {} lookups ({:.1} spans each): p50 {:?}, p90 {:?}, p99 {:?}, max {:?}; CPU {:?} a lookup",
        latencies.len(),
        spans_found as f64 / lookups.len() as f64,
        at(0.5),
        at(0.9),
        at(0.99),
        latencies[latencies.len() - 1],
        cpu
    );
    let missing: TraceId = [0xee; 16];
    let started = Instant::now();
    for _ in 0..1000 {
        black_box(storage.traces().trace(TENANT, &missing, None).unwrap());
    }
    println!("  trace by ID, not stored: {:?} each", started.elapsed() / 1000);

    let mut group = criterion.benchmark_group("traces_query");
    group.sample_size(20).measurement_time(Duration::from_secs(10));
    let mut position = 0;
    group.bench_function("trace_by_id", |bencher| {
        bencher.iter(|| {
            position = (position + 1) % lookups.len();
            storage.traces().trace(TENANT, &lookups[position], None).unwrap()
        });
    });
    let selective = SpanFilter {
        conditions: vec![
            SpanCondition::ServiceName("payments".into()),
            SpanCondition::Attribute {
                scope: AttributeScope::Span,
                key: "enduser.id".into(),
                op: CompareOp::Eq,
                value: AttrValue::String("user-004242".into()),
            },
        ],
    };
    let errors = SpanFilter { conditions: vec![SpanCondition::Status(StatusCode::Error)] };
    for (name, filter) in [("selective", &selective), ("status error", &errors)] {
        let (started, cpu) = (Instant::now(), thread_cpu_time());
        let result = storage.traces().search(TENANT, filter, NsRange::all(), 20).unwrap();
        println!(
            "  {name} search: {} traces in {:?} ({:?} of CPU), {:?}",
            result.traces.len(),
            started.elapsed(),
            thread_cpu_time() - cpu,
            result.stats
        );
    }
    group.bench_function("search_service_and_user_id", |bencher| {
        bencher.iter(|| storage.traces().search(TENANT, &selective, NsRange::all(), 20).unwrap());
    });
    group.bench_function("search_status_error_limit_20", |bencher| {
        bencher.iter(|| storage.traces().search(TENANT, &errors, NsRange::all(), 20).unwrap());
    });
    group.finish();
}

fn main() {
    footprint_report();
    let mut criterion = Criterion::default().configure_from_args();
    append_bench(&mut criterion);
    query_benches(&mut criterion);
    criterion.final_summary();
}
