//! The scrape manager: one loop per target, spread over the interval, writing samples, the
//! synthetic `up` and `scrape_*` series, staleness markers and metadata into the metrics store;
//! re-discovery of file SD targets; reload of the whole configuration; and the state behind
//! `/api/v1/targets` and `/api/v1/targets/metadata`.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tripod_storage::Storage;
use tripod_storage::labels::{Label, Labels};
use tripod_storage::metrics::{Exemplar, MetricMetadata, MetricsAppender, STALE_NAN, Sample, SeriesKey, SeriesSamples};

use super::config::{Auth, PrometheusFile, ScrapePool, Target};
use super::exposition::{Exposition, parse_openmetrics, parse_prometheus_text};
use super::relabel::{LabelMap, relabel};

/// What to scrape: built from the `scrape:` section of Tripod's config.
#[derive(Debug, Clone, Default)]
pub struct ScrapeSettings {
    pub pools: Vec<ScrapePool>,
    /// Scrape Tripod's own `/metrics` (job `tripod`).
    pub scrape_self: bool,
    pub default_interval: Duration,
    pub default_timeout: Duration,
    /// Largest response body read from a target.
    pub max_body_bytes: usize,
}

/// Builds settings from the raw scrape section: the pools written in Tripod's config, and those
/// of the `prometheus.yml` it names (whose `global` defaults apply to its own pools).
pub fn load_settings(
    section: &RawScrapeSection,
    base_dir: &std::path::Path,
    max_body_bytes: usize,
) -> Result<ScrapeSettings, String> {
    let default_interval = section.interval.map_or(Duration::from_secs(15), |d| d.0);
    let default_timeout = section.timeout.map_or(Duration::from_secs(10), |d| d.0);
    let mut pools = Vec::new();
    for raw in &section.configs {
        pools.push(ScrapePool::from_raw(raw, default_interval, default_timeout, base_dir)?);
    }
    if let Some(path) = section.prometheus_config.as_ref().filter(|p| !p.as_os_str().is_empty()) {
        let path = if path.is_absolute() { path.clone() } else { base_dir.join(path) };
        let text =
            std::fs::read_to_string(&path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        let file: PrometheusFile =
            serde_yaml_ng::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))?;
        let interval = file.global.scrape_interval.map_or(default_interval, |d| d.0);
        let timeout = file.global.scrape_timeout.map_or(default_timeout, |d| d.0);
        let dir = path.parent().map(|p| p.to_path_buf()).unwrap_or_else(|| base_dir.to_path_buf());
        for raw in &file.scrape_configs {
            pools.push(
                ScrapePool::from_raw(raw, interval, timeout, &dir).map_err(|e| format!("{}: {e}", path.display()))?,
            );
        }
    }
    let mut names = HashSet::new();
    for pool in &pools {
        if !names.insert(pool.job_name.clone()) {
            return Err(format!("scrape config {:?} is defined twice", pool.job_name));
        }
    }
    Ok(ScrapeSettings {
        pools,
        scrape_self: section.scrape_self.unwrap_or(true),
        default_interval,
        default_timeout,
        max_body_bytes,
    })
}

/// The `scrape:` section of Tripod's config, as written.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScrapeSection {
    #[serde(rename = "self")]
    pub scrape_self: Option<bool>,
    pub interval: Option<crate::duration::ConfigDuration>,
    pub timeout: Option<crate::duration::ConfigDuration>,
    pub prometheus_config: Option<PathBuf>,
    #[serde(default)]
    pub configs: Vec<super::config::RawScrapeConfig>,
}

/// The state of one target, as the targets API shows it.
#[derive(Debug, Clone)]
pub struct TargetStatus {
    /// Which loop owns this entry (a reload starts a new loop for the same target).
    loop_id: u64,
    pub pool: String,
    pub target: Target,
    pub interval: Duration,
    pub timeout: Duration,
    pub health: &'static str,
    pub last_error: String,
    pub last_scrape_unix_ms: Option<i64>,
    pub last_duration: Duration,
    pub metadata: Vec<(String, MetricMetadata)>,
}

#[derive(Default)]
struct Shared {
    statuses: HashMap<String, TargetStatus>,
    dropped: Vec<(String, LabelMap)>,
}

/// Runs every scrape loop; owned by the server, stopped by its shutdown token.
pub struct ScrapeManager {
    storage: Arc<Storage>,
    /// Verifies certificates against the web PKI roots.
    client: reqwest::Client,
    /// For pools with `tls_config.insecure_skip_verify`.
    insecure_client: reqwest::Client,
    shared: Arc<Mutex<Shared>>,
    settings: Mutex<ScrapeSettings>,
    /// Where Tripod's own `/metrics` is, for the self scrape.
    self_address: Option<String>,
    /// Cancels the running loops so that a reload can start new ones.
    generation: Mutex<CancellationToken>,
    /// Whether the last reload succeeded, and when the configuration was last applied (ms).
    last_reload: Mutex<(bool, i64)>,
}

fn now_ms() -> i64 {
    crate::duration::unix_now_ms()
}

fn target_key(pool: &str, target: &Target) -> String {
    let labels: Vec<String> = target.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{pool}|{}|{}", target.url, labels.join(","))
}

impl ScrapeManager {
    pub fn new(storage: Arc<Storage>, settings: ScrapeSettings, self_address: Option<String>) -> ScrapeManager {
        let builder = || reqwest::Client::builder().user_agent(concat!("Tripod/", env!("CARGO_PKG_VERSION")));
        let client = builder().build().unwrap_or_else(|_| reqwest::Client::new());
        let insecure_client =
            builder().danger_accept_invalid_certs(true).build().unwrap_or_else(|_| reqwest::Client::new());
        ScrapeManager {
            storage,
            client,
            insecure_client,
            shared: Arc::new(Mutex::new(Shared::default())),
            settings: Mutex::new(settings),
            self_address,
            generation: Mutex::new(CancellationToken::new()),
            last_reload: Mutex::new((true, now_ms())),
        }
    }

    fn pools(&self) -> Vec<ScrapePool> {
        let settings = self.settings.lock().unwrap_or_else(|p| p.into_inner());
        let mut pools = settings.pools.clone();
        if settings.scrape_self
            && let Some(address) = &self.self_address
            && !pools.iter().any(|p| p.job_name == "tripod")
        {
            let raw = super::config::RawScrapeConfig {
                job_name: "tripod".into(),
                scrape_interval: None,
                scrape_timeout: None,
                metrics_path: None,
                scheme: None,
                params: Default::default(),
                static_configs: vec![super::config::RawTargetGroup {
                    targets: vec![address.clone()],
                    labels: Default::default(),
                }],
                file_sd_configs: Vec::new(),
                relabel_configs: Vec::new(),
                metric_relabel_configs: Vec::new(),
                honor_labels: None,
                honor_timestamps: None,
                sample_limit: None,
                basic_auth: None,
                authorization: None,
                bearer_token: None,
                bearer_token_file: None,
                tls_config: None,
            };
            if let Ok(pool) = ScrapePool::from_raw(
                &raw,
                settings.default_interval,
                settings.default_timeout,
                std::path::Path::new("."),
            ) {
                pools.push(pool);
            }
        }
        pools
    }

    /// Whether the last reload succeeded, and when the configuration was last applied (ms).
    pub fn last_reload(&self) -> (bool, i64) {
        *self.last_reload.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a reload that failed (the running configuration stays).
    pub fn record_failed_reload(&self) {
        self.last_reload.lock().unwrap_or_else(|p| p.into_inner()).0 = false;
    }

    /// The scrape configuration as Prometheus YAML (`global` and `scrape_configs`).
    pub fn config_yaml(&self) -> String {
        let settings = self.settings.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let format = crate::duration::format_duration;
        let mut yaml = format!(
            "global:\n  scrape_interval: {}\n  scrape_timeout: {}\nscrape_configs:\n",
            format(settings.default_interval),
            format(settings.default_timeout)
        );
        if self.pools().is_empty() {
            yaml = yaml.replace("scrape_configs:\n", "scrape_configs: []\n");
        }
        for pool in self.pools() {
            yaml.push_str(&format!(
                "- job_name: {}\n  honor_labels: {}\n  honor_timestamps: {}\n  scrape_interval: {}\n  scrape_timeout: {}\n  metrics_path: {}\n  scheme: {}\n",
                pool.job_name,
                pool.honor_labels,
                pool.honor_timestamps,
                format(pool.interval),
                format(pool.timeout),
                pool.metrics_path,
                pool.scheme
            ));
            if pool.sample_limit > 0 {
                yaml.push_str(&format!("  sample_limit: {}\n", pool.sample_limit));
            }
            if !pool.static_groups.is_empty() {
                yaml.push_str("  static_configs:\n");
                for group in &pool.static_groups {
                    let targets: Vec<String> = group.targets.iter().map(|t| format!("{t:?}")).collect();
                    yaml.push_str(&format!("  - targets: [{}]\n", targets.join(", ")));
                    if !group.labels.is_empty() {
                        yaml.push_str("    labels:\n");
                        for (name, value) in &group.labels {
                            yaml.push_str(&format!("      {name}: {value:?}\n"));
                        }
                    }
                }
            }
            if !pool.file_sd.is_empty() {
                yaml.push_str("  file_sd_configs:\n");
                for (files, refresh) in &pool.file_sd {
                    let files: Vec<String> = files.iter().map(|f| format!("{f:?}")).collect();
                    yaml.push_str(&format!(
                        "  - files: [{}]\n    refresh_interval: {}\n",
                        files.join(", "),
                        format(*refresh)
                    ));
                }
            }
        }
        yaml
    }

    /// Replaces the settings and restarts every loop with them.
    pub fn reload(self: &Arc<Self>, settings: ScrapeSettings, shutdown: &CancellationToken) {
        *self.settings.lock().unwrap_or_else(|p| p.into_inner()) = settings;
        *self.last_reload.lock().unwrap_or_else(|p| p.into_inner()) = (true, now_ms());
        let previous = {
            let mut generation = self.generation.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *generation, shutdown.child_token())
        };
        previous.cancel();
        let token = self.generation.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let manager = self.clone();
        tokio::spawn(async move { manager.run_generation(token).await });
    }

    /// Starts the loops; they stop when `shutdown` is cancelled.
    pub fn start(self: &Arc<Self>, shutdown: &CancellationToken) {
        let token = {
            let mut generation = self.generation.lock().unwrap_or_else(|p| p.into_inner());
            *generation = shutdown.child_token();
            generation.clone()
        };
        let manager = self.clone();
        tokio::spawn(async move { manager.run_generation(token).await });
    }

    /// One configuration's worth of loops: discovers targets, keeps a loop per target, and
    /// re-discovers file SD targets on their refresh interval.
    async fn run_generation(self: Arc<Self>, token: CancellationToken) {
        let pools = self.pools();
        let refresh = pools
            .iter()
            .flat_map(|pool| pool.file_sd.iter().map(|(_, interval)| *interval))
            .min()
            .unwrap_or(Duration::from_secs(300))
            .max(Duration::from_secs(1));
        let mut running: HashMap<String, CancellationToken> = HashMap::new();
        let mut loops = JoinSet::new();
        loop {
            let mut wanted: HashMap<String, (ScrapePool, Target)> = HashMap::new();
            let mut dropped = Vec::new();
            for pool in &pools {
                let (groups, errors) = pool.discover();
                for error in errors {
                    tracing::warn!(job = %pool.job_name, error = %error, "target discovery failed");
                }
                let (active, inactive) = pool.targets(&groups);
                dropped.extend(inactive.into_iter().map(|labels| (pool.job_name.clone(), labels)));
                for target in active {
                    wanted.insert(target_key(&pool.job_name, &target), (pool.clone(), target));
                }
            }
            self.shared.lock().unwrap_or_else(|p| p.into_inner()).dropped = dropped;
            // Stop loops whose target is gone; start the new ones.
            running.retain(|key, cancel| {
                let keep = wanted.contains_key(key);
                if !keep {
                    cancel.cancel();
                }
                keep
            });
            for (key, (pool, target)) in wanted {
                if running.contains_key(&key) {
                    continue;
                }
                let cancel = token.child_token();
                running.insert(key.clone(), cancel.clone());
                let manager = self.clone();
                let generation = token.clone();
                loops.spawn(async move { manager.target_loop(key, pool, target, cancel, generation).await });
            }
            tokio::select! {
                () = token.cancelled() => break,
                () = tokio::time::sleep(refresh) => {}
            }
        }
        for cancel in running.values() {
            cancel.cancel();
        }
        while loops.join_next().await.is_some() {}
    }

    /// Scrapes one target until `cancel`. When the target went away (its own token cancelled, the
    /// generation still running) its series are marked stale; when a reload or shutdown ended
    /// the generation they are not, as the next generation (or restart) continues them.
    async fn target_loop(
        self: Arc<Self>,
        key: String,
        pool: ScrapePool,
        target: Target,
        cancel: CancellationToken,
        generation: CancellationToken,
    ) {
        static LOOP_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let loop_id = LOOP_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        {
            let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            // A loop of a generation a reload already ended (it started late) must not take
            // the place of the next generation's loop for the same target: checked under the
            // lock, since a reload cancels the old generation before it starts the new one.
            if cancel.is_cancelled() {
                return;
            }
            shared.statuses.insert(
                key.clone(),
                TargetStatus {
                    loop_id,
                    pool: pool.job_name.clone(),
                    target: target.clone(),
                    interval: pool.interval,
                    timeout: pool.timeout,
                    health: "unknown",
                    last_error: String::new(),
                    last_scrape_unix_ms: None,
                    last_duration: Duration::ZERO,
                    metadata: Vec::new(),
                },
            );
        }
        // Spread the scrapes of all targets over the interval.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        let offset = Duration::from_millis(hasher.finish() % pool.interval.as_millis().max(1) as u64);
        let mut previous: HashSet<Labels> = HashSet::new();
        let mut next = tokio::time::Instant::now() + offset;
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep_until(next) => {}
            }
            next += pool.interval;
            self.scrape_once(&key, &pool, &target, &mut previous, &cancel).await;
        }
        if !generation.is_cancelled() {
            // The target is gone: its series, `up` and `scrape_*` included, end now.
            let timestamp = now_ms();
            let mut stale: Vec<Labels> = previous.drain().collect();
            stale.extend(report_series(&target));
            let storage = self.storage.clone();
            let _ = tokio::task::spawn_blocking(move || append_stale(&storage, &stale, timestamp)).await;
        }
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if shared.statuses.get(&key).is_some_and(|status| status.loop_id == loop_id) {
            shared.statuses.remove(&key);
        }
    }

    async fn fetch(&self, pool: &ScrapePool, target: &Target, max_bytes: usize) -> Result<(Vec<u8>, bool), String> {
        let client = if pool.insecure_skip_verify { &self.insecure_client } else { &self.client };
        let mut request = client
            .get(&target.url)
            .timeout(pool.timeout)
            .header(
                "Accept",
                "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1",
            )
            .header("X-Prometheus-Scrape-Timeout-Seconds", format!("{}", pool.timeout.as_secs_f64()));
        match &pool.auth {
            Auth::None => {}
            Auth::Basic { username, password } => request = request.basic_auth(username, Some(password)),
            Auth::Header { kind, credentials } => {
                request = request.header("Authorization", format!("{kind} {credentials}"))
            }
        }
        let mut response = request.send().await.map_err(|error| {
            if error.is_timeout() { "context deadline exceeded".to_string() } else { error.to_string() }
        })?;
        if !response.status().is_success() {
            return Err(format!("server returned HTTP status {}", response.status()));
        }
        let openmetrics = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/openmetrics-text"));
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            body.extend_from_slice(&chunk);
            if body.len() > max_bytes {
                return Err(format!("body size limit exceeded ({max_bytes} bytes)"));
            }
        }
        Ok((body, openmetrics))
    }

    /// Scrapes a target once; a fetch still under way when `cancel` fires is given up (the
    /// scrape did not happen), so that a stopping loop does not wait out the scrape timeout.
    async fn scrape_once(
        &self,
        key: &str,
        pool: &ScrapePool,
        target: &Target,
        previous: &mut HashSet<Labels>,
        cancel: &CancellationToken,
    ) {
        let started = Instant::now();
        let timestamp = now_ms();
        let max_bytes = self.settings.lock().unwrap_or_else(|p| p.into_inner()).max_body_bytes;
        let fetched = tokio::select! {
            () = cancel.cancelled() => return,
            fetched = self.fetch(pool, target, max_bytes) => fetched,
        };
        let storage = self.storage.clone();
        let pool_copy = pool.clone();
        let target_copy = target.clone();
        let last = std::mem::take(previous);
        let result = tokio::task::spawn_blocking(move || {
            let mut last = last;
            let outcome = match fetched {
                Ok((body, openmetrics)) => {
                    ingest_scrape(&storage, &pool_copy, &target_copy, &body, openmetrics, timestamp, &mut last)
                }
                Err(error) => Err(error),
            };
            let duration = started.elapsed();
            let (up, scraped, kept, added) = match &outcome {
                Ok(report) => (1.0, report.scraped, report.kept, report.added),
                Err(_) => {
                    // A failed scrape ends every series of the last one.
                    let stale: Vec<Labels> = last.drain().collect();
                    append_stale(&storage, &stale, timestamp);
                    (0.0, 0, 0, 0)
                }
            };
            append_report(&storage, &target_copy, timestamp, up, duration, scraped, kept, added);
            (outcome, last, duration)
        })
        .await;
        let Ok((outcome, last, duration)) = result else { return };
        *previous = last;
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(status) = shared.statuses.get_mut(key) {
            status.last_scrape_unix_ms = Some(timestamp);
            status.last_duration = duration;
            match outcome {
                Ok(report) => {
                    status.health = "up";
                    status.last_error.clear();
                    status.metadata = report.metadata;
                }
                Err(error) => {
                    tracing::debug!(job = %pool.job_name, url = %target.url, error = %error, "scrape failed");
                    status.health = "down";
                    status.last_error = error;
                }
            }
        }
    }

    /// Active targets, sorted by pool and URL.
    pub fn active_targets(&self) -> Vec<TargetStatus> {
        let shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let mut targets: Vec<TargetStatus> = shared.statuses.values().cloned().collect();
        targets.sort_by(|a, b| (&a.pool, &a.target.url).cmp(&(&b.pool, &b.target.url)));
        targets
    }

    /// Targets relabeling dropped: (pool, discovered labels).
    pub fn dropped_targets(&self) -> Vec<(String, LabelMap)> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner()).dropped.clone()
    }
}

/// What one successful scrape did.
struct ScrapeReport {
    scraped: u64,
    kept: u64,
    added: u64,
    metadata: Vec<(String, MetricMetadata)>,
}

fn to_labels(map: &LabelMap) -> Labels {
    let labels: Vec<Label> = map
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| Label { name: name.as_str().into(), value: value.as_str().into() })
        .collect();
    // The keys of a map are unique; names come from parsers and relabeling that check them.
    Labels::from_labels(labels).unwrap_or_default()
}

/// Merges target labels into a sample's, as Prometheus does: with `honor_labels` the sample's
/// win; otherwise a clashing sample label is kept as `exported_<name>`.
fn merge_target_labels(sample: &mut LabelMap, target: &LabelMap, honor_labels: bool) {
    for (name, value) in target {
        if honor_labels {
            sample.entry(name.clone()).or_insert_with(|| value.clone());
            continue;
        }
        if let Some(existing) = sample.remove(name) {
            let mut exported = format!("exported_{name}");
            while sample.contains_key(&exported) {
                exported = format!("exported_{exported}");
            }
            sample.insert(exported, existing);
        }
        sample.insert(name.clone(), value.clone());
    }
}

fn ingest_scrape(
    storage: &Storage,
    pool: &ScrapePool,
    target: &Target,
    body: &[u8],
    openmetrics: bool,
    timestamp: i64,
    previous: &mut HashSet<Labels>,
) -> Result<ScrapeReport, String> {
    let text = std::str::from_utf8(body).map_err(|_| "response is not valid UTF-8".to_string())?;
    let exposition: Exposition = if openmetrics { parse_openmetrics(text) } else { parse_prometheus_text(text) }
        .map_err(|error| format!("parsing the response: {error}"))?;
    let scraped = exposition.samples.len() as u64;
    let mut series: HashMap<Labels, (Vec<Sample>, Vec<Exemplar>)> = HashMap::new();
    for sample in exposition.samples {
        let mut labels: LabelMap = sample.labels.into_iter().collect();
        labels.insert("__name__".into(), sample.name);
        merge_target_labels(&mut labels, &target.labels, pool.honor_labels);
        let Some(labels) = relabel(labels, &pool.metric_relabel) else { continue };
        let t_ms = match sample.t_ms {
            Some(t) if pool.honor_timestamps => t,
            _ => timestamp,
        };
        let entry = series.entry(to_labels(&labels)).or_default();
        entry.0.push(Sample { t_ms, value: sample.value });
        entry.1.extend(sample.exemplar);
    }
    let kept: u64 = series.values().map(|(samples, _)| samples.len() as u64).sum();
    if pool.sample_limit > 0 && kept > pool.sample_limit {
        return Err(format!("sample limit exceeded: {kept} samples, the limit is {}", pool.sample_limit));
    }
    let current: HashSet<Labels> = series.keys().cloned().collect();
    let added = current.difference(previous).count() as u64;
    let gone: Vec<Labels> = previous.difference(&current).cloned().collect();
    let batch: Vec<SeriesSamples> = series
        .iter()
        .map(|(labels, (samples, exemplars))| SeriesSamples { key: SeriesKey::Labels(labels), samples, exemplars })
        .collect();
    storage.metrics().append(&batch).map_err(|error| format!("storing samples: {error}"))?;
    append_stale(storage, &gone, timestamp);
    for (name, metadata) in &exposition.metadata {
        let _ = storage.metrics().set_metadata(name, metadata.clone());
    }
    *previous = current;
    Ok(ScrapeReport { scraped, kept, added, metadata: exposition.metadata })
}

fn append_stale(storage: &Storage, series: &[Labels], timestamp: i64) {
    if series.is_empty() {
        return;
    }
    let marker = [Sample { t_ms: timestamp, value: STALE_NAN }];
    let batch: Vec<SeriesSamples> = series
        .iter()
        .map(|labels| SeriesSamples { key: SeriesKey::Labels(labels), samples: &marker, exemplars: &[] })
        .collect();
    if let Err(error) = storage.metrics().append(&batch) {
        tracing::warn!(error = %error, "cannot write staleness markers");
    }
}

/// The synthetic series every scrape writes, in this order.
const REPORT_SERIES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

fn report_series(target: &Target) -> Vec<Labels> {
    REPORT_SERIES
        .iter()
        .map(|name| {
            let mut labels = target.labels.clone();
            labels.insert("__name__".into(), (*name).into());
            to_labels(&labels)
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn append_report(
    storage: &Storage,
    target: &Target,
    timestamp: i64,
    up: f64,
    duration: Duration,
    scraped: u64,
    kept: u64,
    added: u64,
) {
    let values = [up, duration.as_secs_f64(), scraped as f64, kept as f64, added as f64];
    let series: Vec<(Labels, [Sample; 1])> = report_series(target)
        .into_iter()
        .zip(values)
        .map(|(labels, value)| (labels, [Sample { t_ms: timestamp, value }]))
        .collect();
    let batch: Vec<SeriesSamples> = series
        .iter()
        .map(|(labels, samples)| SeriesSamples { key: SeriesKey::Labels(labels), samples, exemplars: &[] })
        .collect();
    if let Err(error) = storage.metrics().append(&batch) {
        tracing::warn!(error = %error, "cannot write scrape report series");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_labels_merge_like_prometheus() {
        let target: LabelMap =
            [("job".to_string(), "node".to_string()), ("instance".to_string(), "a:1".to_string())].into();
        let mut sample: LabelMap =
            [("job".to_string(), "inner".to_string()), ("x".to_string(), "1".to_string())].into();
        merge_target_labels(&mut sample, &target, false);
        assert_eq!(sample["job"], "node");
        assert_eq!(sample["exported_job"], "inner");
        let mut honored: LabelMap = [("job".to_string(), "inner".to_string())].into();
        merge_target_labels(&mut honored, &target, true);
        assert_eq!(honored["job"], "inner");
        assert_eq!(honored["instance"], "a:1");
    }
}
