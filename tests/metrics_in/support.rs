//! Shared helpers: an embedded server, finding outside programs the way the test command
//! promises (on PATH; with CI=true a missing one fails the test instead of skipping it), a real
//! Prometheus to compare with, and comparing query answers from the two.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tripod::config::ListenerName;
use tripod::{Config, Server};

pub async fn server() -> Server {
    server_with(Config::embedded()).await
}

pub async fn server_with(config: Config) -> Server {
    let server = Server::start(config).await.expect("server starts");
    server.ready().await.expect("storage opens");
    server
}

pub fn url(server: &Server, path: &str) -> String {
    format!("http://{}{path}", server.address(ListenerName::Prometheus).expect("prometheus listener"))
}

/// The path of an outside program, or `None` (test skipped) when it is missing outside CI.
pub fn program(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|value| value == "true") {
            panic!("{name} is not installed; CI installs it (see .ci/run)");
        }
        eprintln!("skipping: {name} is not on PATH (install it to run this test)");
    }
    found
}

/// Kills the child process when dropped, so a failing test leaves nothing running.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts the Prometheus at `binary` on `127.0.0.1:port` with `config` (YAML) and its data
/// under `dir`, plus `flags`. It runs until the returned guard is dropped.
pub fn start_prometheus(binary: &Path, dir: &Path, config: &str, port: u16, flags: &[&str]) -> Running {
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    Running(
        Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    )
}

/// Waits (bounded) until the Prometheus at `address` says it is ready.
pub async fn wait_until_ready(address: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = reqwest::get(format!("http://{address}/-/ready")).await;
        if ready.is_ok_and(|response| response.status().is_success()) {
            return;
        }
        assert!(Instant::now() < deadline, "prometheus at {address} did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `{a="1", b="2"}` from a JSON label object, in Tripod's `Labels` display form.
pub fn labels_key(metric: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut pairs: Vec<(&String, &str)> = metric.iter().map(|(k, v)| (k, v.as_str().unwrap_or(""))).collect();
    pairs.sort();
    let shown: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", shown.join(", "))
}

/// A query result as (result type, series labels -> (time ms, value) points). Series are
/// keyed by labels, so instant vectors compare as sets; series without points are left out,
/// as Prometheus leaves them out of range results.
pub type Normalised = (String, BTreeMap<String, Vec<(i64, f64)>>);

pub fn normalised(data: &serde_json::Value) -> Normalised {
    let kind = data["resultType"].as_str().unwrap_or("").to_string();
    let point = |pair: &serde_json::Value| -> (i64, f64) {
        let t_ms = (pair[0].as_f64().unwrap() * 1000.0).round() as i64;
        (t_ms, pair[1].as_str().unwrap().parse().unwrap_or(f64::NAN))
    };
    let mut series = BTreeMap::new();
    match kind.as_str() {
        "scalar" | "string" => {
            series.insert(String::new(), vec![point(&data["result"])]);
        }
        _ => {
            for entry in data["result"].as_array().unwrap() {
                let key = labels_key(entry["metric"].as_object().unwrap());
                let points: Vec<(i64, f64)> = match entry.get("values") {
                    Some(values) => values.as_array().unwrap().iter().map(point).collect(),
                    None => vec![point(&entry["value"])],
                };
                if !points.is_empty() {
                    series.insert(key, points);
                }
            }
        }
    }
    (kind, series)
}

/// Posts the same query form to `path` on Prometheus and on Tripod and compares the answers:
/// the same result type, the same series, the same timestamps and values equal within 1e-9
/// relative (NaN equal to NaN). Gives Prometheus's answer, or what differs.
pub async fn compare_answers(
    client: &reqwest::Client,
    prometheus: &str,
    tripod: &str,
    path: &str,
    form: &[(&str, &str)],
) -> Result<Normalised, String> {
    let mut answers = Vec::new();
    for address in [prometheus, tripod] {
        let response = client.post(format!("http://{address}{path}")).form(form).send().await.unwrap();
        let body: serde_json::Value = response.json().await.unwrap();
        if body["status"] != "success" {
            let server = if address == prometheus { "prometheus" } else { "tripod" };
            return Err(format!("{server} refused it: {body}"));
        }
        answers.push(normalised(&body["data"]));
    }
    let got = answers.pop().unwrap();
    let want = answers.pop().unwrap();
    if want.0 != got.0 {
        return Err(format!("result types: prometheus {}, tripod {}", want.0, got.0));
    }
    if !want.1.keys().eq(got.1.keys()) {
        return Err(format!(
            "series differ: prometheus {:?}, tripod {:?}",
            want.1.keys().collect::<Vec<_>>(),
            got.1.keys().collect::<Vec<_>>()
        ));
    }
    for (labels, points) in &want.1 {
        let ours = &got.1[labels];
        let same = points.len() == ours.len()
            && points.iter().zip(ours).all(|(a, b)| {
                a.0 == b.0
                    && ((a.1.is_nan() && b.1.is_nan())
                        || a.1 == b.1
                        || (a.1 - b.1).abs() <= 1e-9 * a.1.abs().max(b.1.abs()))
            });
        if !same {
            return Err(format!("{labels}: prometheus {points:?}, tripod {ours:?}"));
        }
    }
    Ok(want)
}
