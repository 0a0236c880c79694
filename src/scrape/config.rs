//! Scrape configuration in Prometheus's `scrape_configs` format (written in Tripod's config
//! under `scrape.configs`, or read from the `prometheus.yml` that `scrape.prometheus_config`
//! names), validated into [`ScrapePool`]s, and the targets each pool discovers: static ones and
//! those in `file_sd_configs` files, relabeled into their final labels.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::relabel::{LabelMap, RawRelabelConfig, RelabelConfig, relabel};
use crate::duration::ConfigDuration;

/// One `scrape_configs` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScrapeConfig {
    pub job_name: String,
    pub scrape_interval: Option<ConfigDuration>,
    pub scrape_timeout: Option<ConfigDuration>,
    pub metrics_path: Option<String>,
    pub scheme: Option<String>,
    #[serde(default)]
    pub params: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub static_configs: Vec<RawTargetGroup>,
    #[serde(default)]
    pub file_sd_configs: Vec<RawFileSd>,
    #[serde(default)]
    pub relabel_configs: Vec<RawRelabelConfig>,
    #[serde(default)]
    pub metric_relabel_configs: Vec<RawRelabelConfig>,
    pub honor_labels: Option<bool>,
    pub honor_timestamps: Option<bool>,
    pub sample_limit: Option<u64>,
    pub basic_auth: Option<RawBasicAuth>,
    pub authorization: Option<RawAuthorization>,
    pub bearer_token: Option<String>,
    pub bearer_token_file: Option<PathBuf>,
    pub tls_config: Option<RawTls>,
}

/// A group of targets with shared labels (`static_configs` and file SD entries).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawTargetGroup {
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFileSd {
    pub files: Vec<String>,
    pub refresh_interval: Option<ConfigDuration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasicAuth {
    pub username: String,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthorization {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub credentials: Option<String>,
    pub credentials_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// The parts of a `prometheus.yml` the scraper reads; other sections are left alone.
#[derive(Debug, Clone, Deserialize)]
pub struct PrometheusFile {
    #[serde(default)]
    pub global: PrometheusGlobal,
    #[serde(default)]
    pub scrape_configs: Vec<RawScrapeConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PrometheusGlobal {
    pub scrape_interval: Option<ConfigDuration>,
    pub scrape_timeout: Option<ConfigDuration>,
}

/// How a pool authenticates to its targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Basic {
        username: String,
        password: String,
    },
    /// `Authorization: <kind> <credentials>`.
    Header {
        kind: String,
        credentials: String,
    },
}

/// A validated scrape pool (one job).
#[derive(Debug, Clone)]
pub struct ScrapePool {
    pub job_name: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub metrics_path: String,
    pub scheme: String,
    pub params: BTreeMap<String, Vec<String>>,
    pub static_groups: Vec<RawTargetGroup>,
    pub file_sd: Vec<(Vec<String>, Duration)>,
    pub relabel: Vec<RelabelConfig>,
    pub metric_relabel: Vec<RelabelConfig>,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub sample_limit: u64,
    pub auth: Auth,
    pub insecure_skip_verify: bool,
    /// Where relative file paths are resolved.
    pub base_dir: PathBuf,
}

fn read_secret(path: &Path, base: &Path, what: &str) -> Result<String, String> {
    let path = if path.is_absolute() { path.to_path_buf() } else { base.join(path) };
    std::fs::read_to_string(&path)
        .map(|text| text.trim_end_matches(['\n', '\r']).to_string())
        .map_err(|error| format!("cannot read {what} {}: {error}", path.display()))
}

impl ScrapePool {
    /// Validates one entry; errors name the job and the field.
    pub fn from_raw(
        raw: &RawScrapeConfig,
        default_interval: Duration,
        default_timeout: Duration,
        base_dir: &Path,
    ) -> Result<ScrapePool, String> {
        let job = &raw.job_name;
        let context = |message: String| format!("scrape config {job:?}: {message}");
        if job.is_empty() {
            return Err("scrape config with an empty job_name".into());
        }
        let interval = raw.scrape_interval.map_or(default_interval, |d| d.0);
        if interval.is_zero() {
            return Err(context("scrape_interval must be above 0s".into()));
        }
        let timeout = raw.scrape_timeout.map_or(default_timeout.min(interval), |d| d.0);
        if timeout > interval {
            return Err(context(format!("scrape_timeout {timeout:?} is longer than scrape_interval {interval:?}")));
        }
        let scheme = raw.scheme.clone().unwrap_or_else(|| "http".into());
        if scheme != "http" && scheme != "https" {
            return Err(context(format!("scheme {scheme:?} is not http or https")));
        }
        let metrics_path = raw.metrics_path.clone().unwrap_or_else(|| "/metrics".into());
        let relabel =
            raw.relabel_configs.iter().map(RelabelConfig::from_raw).collect::<Result<Vec<_>, _>>().map_err(&context)?;
        let metric_relabel = raw
            .metric_relabel_configs
            .iter()
            .map(RelabelConfig::from_raw)
            .collect::<Result<Vec<_>, _>>()
            .map_err(&context)?;
        let bearer = match (&raw.bearer_token, &raw.bearer_token_file) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(file)) => Some(read_secret(file, base_dir, "bearer_token_file").map_err(&context)?),
            (None, None) => None,
        };
        let auth = match (&raw.basic_auth, &raw.authorization, bearer) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                return Err(context("only one of basic_auth, authorization and bearer_token may be set".into()));
            }
            (Some(basic), None, None) => {
                let password = match (&basic.password, &basic.password_file) {
                    (Some(password), _) => password.clone(),
                    (None, Some(file)) => read_secret(file, base_dir, "password_file").map_err(&context)?,
                    (None, None) => String::new(),
                };
                Auth::Basic { username: basic.username.clone(), password }
            }
            (None, Some(authorization), None) => {
                let credentials = match (&authorization.credentials, &authorization.credentials_file) {
                    (Some(credentials), _) => credentials.clone(),
                    (None, Some(file)) => read_secret(file, base_dir, "credentials_file").map_err(&context)?,
                    (None, None) => String::new(),
                };
                Auth::Header { kind: authorization.kind.clone().unwrap_or_else(|| "Bearer".into()), credentials }
            }
            (None, None, Some(token)) => Auth::Header { kind: "Bearer".into(), credentials: token },
            (None, None, None) => Auth::None,
        };
        for group in &raw.static_configs {
            for target in &group.targets {
                check_address(target).map_err(&context)?;
            }
        }
        Ok(ScrapePool {
            job_name: job.clone(),
            interval,
            timeout,
            metrics_path,
            scheme,
            params: raw.params.clone(),
            static_groups: raw.static_configs.clone(),
            file_sd: raw
                .file_sd_configs
                .iter()
                .map(|sd| (sd.files.clone(), sd.refresh_interval.map_or(Duration::from_secs(300), |d| d.0)))
                .collect(),
            relabel,
            metric_relabel,
            honor_labels: raw.honor_labels.unwrap_or(false),
            honor_timestamps: raw.honor_timestamps.unwrap_or(true),
            sample_limit: raw.sample_limit.unwrap_or(0),
            auth,
            insecure_skip_verify: raw.tls_config.as_ref().is_some_and(|tls| tls.insecure_skip_verify),
            base_dir: base_dir.to_path_buf(),
        })
    }

    /// Every target group: static ones, then those in the file SD files (read now).
    pub fn discover(&self) -> (Vec<(RawTargetGroup, Option<String>)>, Vec<String>) {
        let mut groups: Vec<(RawTargetGroup, Option<String>)> =
            self.static_groups.iter().cloned().map(|group| (group, None)).collect();
        let mut errors = Vec::new();
        for (patterns, _) in &self.file_sd {
            for path in expand_patterns(patterns, &self.base_dir) {
                match read_file_sd(&path) {
                    Ok(found) => {
                        groups.extend(found.into_iter().map(|group| (group, Some(path.display().to_string()))))
                    }
                    Err(error) => errors.push(error),
                }
            }
        }
        (groups, errors)
    }

    /// The targets of the discovered groups: (final labels, discovered labels), or the
    /// discovered labels of a dropped target.
    pub fn targets(&self, groups: &[(RawTargetGroup, Option<String>)]) -> (Vec<Target>, Vec<LabelMap>) {
        let mut active = Vec::new();
        let mut dropped = Vec::new();
        for (group, file) in groups {
            for address in &group.targets {
                let mut discovered = LabelMap::new();
                discovered.insert("__address__".into(), address.clone());
                discovered.insert("__scheme__".into(), self.scheme.clone());
                discovered.insert("__metrics_path__".into(), self.metrics_path.clone());
                discovered.insert("__scrape_interval__".into(), crate::duration::format_duration(self.interval));
                discovered.insert("__scrape_timeout__".into(), crate::duration::format_duration(self.timeout));
                discovered.insert("job".into(), self.job_name.clone());
                for (name, values) in &self.params {
                    if let Some(first) = values.first() {
                        discovered.insert(format!("__param_{name}"), first.clone());
                    }
                }
                if let Some(file) = file {
                    discovered.insert("__meta_filepath".into(), file.clone());
                }
                for (name, value) in &group.labels {
                    discovered.insert(name.clone(), value.clone());
                }
                match relabel(discovered.clone(), &self.relabel) {
                    Some(labels) => match Target::new(labels, discovered.clone()) {
                        Some(target) => active.push(target),
                        None => dropped.push(discovered),
                    },
                    None => dropped.push(discovered),
                }
            }
        }
        (active, dropped)
    }
}

/// A target to scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The labels its samples get: no `__` labels, `instance` set.
    pub labels: LabelMap,
    /// The labels before relabeling.
    pub discovered: LabelMap,
    pub url: String,
}

impl Target {
    /// Builds the target from relabeled labels; `None` without an address.
    fn new(relabeled: LabelMap, discovered: LabelMap) -> Option<Target> {
        let address = relabeled.get("__address__").filter(|a| !a.is_empty())?.clone();
        let scheme = relabeled.get("__scheme__").cloned().unwrap_or_else(|| "http".into());
        let path = relabeled.get("__metrics_path__").cloned().unwrap_or_else(|| "/metrics".into());
        let mut query: Vec<(String, String)> = relabeled
            .iter()
            .filter_map(|(name, value)| name.strip_prefix("__param_").map(|param| (param.to_string(), value.clone())))
            .collect();
        query.sort();
        let mut url = format!("{scheme}://{address}{}{path}", if path.starts_with('/') { "" } else { "/" });
        if !query.is_empty() {
            let encoded: Vec<String> = query.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
            url.push('?');
            url.push_str(&encoded.join("&"));
        }
        let mut labels: LabelMap = relabeled.into_iter().filter(|(name, _)| !name.starts_with("__")).collect();
        labels.entry("instance".into()).or_insert(address);
        Some(Target { labels, discovered, url })
    }
}

fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn check_address(address: &str) -> Result<(), String> {
    if address.is_empty() || address.contains('/') || address.contains(' ') {
        return Err(format!("target {address:?} is not host:port"));
    }
    Ok(())
}

/// File SD paths: a `*` in the file name part matches like a shell glob.
pub fn expand_patterns(patterns: &[String], base: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for pattern in patterns {
        let path = if Path::new(pattern).is_absolute() { PathBuf::from(pattern) } else { base.join(pattern) };
        let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        if !name.contains('*') {
            out.push(path);
            continue;
        }
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        let regex = format!("^{}$", regex::escape(&name).replace("\\*", ".*"));
        let Ok(regex) = regex::Regex::new(&regex) else { continue };
        let mut matched: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .filter(|p| p.file_name().is_some_and(|n| regex.is_match(&n.to_string_lossy())))
                    .collect()
            })
            .unwrap_or_default();
        matched.sort();
        out.extend(matched);
    }
    out
}

/// Reads a file SD file: a JSON or YAML list of target groups.
pub fn read_file_sd(path: &Path) -> Result<Vec<RawTargetGroup>, String> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("file_sd {}: {error}", path.display()))?;
    let is_json = path.extension().is_some_and(|e| e == "json");
    let groups: Vec<RawTargetGroup> = if is_json {
        serde_json::from_str(&text).map_err(|error| format!("file_sd {}: {error}", path.display()))?
    } else {
        serde_yaml_ng::from_str(&text).map_err(|error| format!("file_sd {}: {error}", path.display()))?
    };
    for group in &groups {
        for target in &group.targets {
            check_address(target).map_err(|error| format!("file_sd {}: {error}", path.display()))?;
        }
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(yaml: &str) -> Result<ScrapePool, String> {
        let raw: RawScrapeConfig = serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())?;
        ScrapePool::from_raw(&raw, Duration::from_secs(15), Duration::from_secs(10), Path::new("."))
    }

    #[test]
    fn targets_get_job_instance_and_relabeled_labels() {
        let pool = pool(
            "job_name: node\nmetrics_path: /probe\nparams: {module: [http_2xx]}\nstatic_configs:\n  - targets: ['a:9100', 'b:9100']\n    labels: {env: prod}\nrelabel_configs:\n  - source_labels: [__address__]\n    regex: 'b:.*'\n    action: drop\n",
        )
        .unwrap();
        let (groups, errors) = pool.discover();
        assert!(errors.is_empty());
        let (active, dropped) = pool.targets(&groups);
        assert_eq!(active.len(), 1);
        assert_eq!(dropped.len(), 1);
        let target = &active[0];
        assert_eq!(target.url, "http://a:9100/probe?module=http_2xx");
        let labels: Vec<(&str, &str)> = target.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(labels, [("env", "prod"), ("instance", "a:9100"), ("job", "node")]);
        assert_eq!(target.discovered["__metrics_path__"], "/probe");
    }

    #[test]
    fn invalid_configs_name_the_job_and_the_problem() {
        let cases = [
            ("job_name: x\nscrape_interval: 5s\nscrape_timeout: 10s", "scrape config \"x\": scrape_timeout"),
            ("job_name: x\nscheme: ftp", "scheme \"ftp\""),
            ("job_name: x\nkubernetes_sd_configs: []", "unknown field `kubernetes_sd_configs`"),
            ("job_name: x\nstatic_configs: [{targets: ['http://a:1/']}]", "is not host:port"),
            ("job_name: x\nbasic_auth: {username: a}\nbearer_token: b", "only one of"),
            ("job_name: x\nrelabel_configs: [{action: nope}]", "unknown relabel action"),
        ];
        for (yaml, message) in cases {
            let error = pool(yaml).unwrap_err();
            assert!(error.contains(message), "{yaml}: {error}");
        }
    }

    #[test]
    fn file_sd_reads_json_and_yaml_with_globs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.json"), r#"[{"targets": ["x:1"], "labels": {"team": "a"}}]"#).unwrap();
        std::fs::write(dir.path().join("b.yml"), "- targets: ['y:2']\n").unwrap();
        let raw: RawScrapeConfig =
            serde_yaml_ng::from_str("job_name: sd\nfile_sd_configs: [{files: ['*.json', 'b.yml']}]").unwrap();
        let pool = ScrapePool::from_raw(&raw, Duration::from_secs(15), Duration::from_secs(10), dir.path()).unwrap();
        let (groups, errors) = pool.discover();
        assert!(errors.is_empty(), "{errors:?}");
        let (active, _) = pool.targets(&groups);
        let instances: Vec<&str> = active.iter().map(|t| t.labels["instance"].as_str()).collect();
        assert_eq!(instances, ["x:1", "y:2"]);
        assert_eq!(active[0].labels["team"], "a");
        std::fs::write(dir.path().join("a.json"), "not json").unwrap();
        let (_, errors) = pool.discover();
        assert!(errors[0].contains("a.json"), "{errors:?}");
    }
}
