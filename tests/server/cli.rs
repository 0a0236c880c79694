//! The `tripod` binary as a user runs it: flags, environment, config file, signals, exit codes.
//! Every process listens on 127.0.0.1 with OS-chosen ports, read back from its JSON logs.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Guards against a hung process; never reached when things work.
const HANG_GUARD: Duration = Duration::from_secs(60);

const LOOPBACK_LISTENERS: [&str; 10] = [
    "--listen.loki",
    "127.0.0.1:0",
    "--listen.prometheus",
    "127.0.0.1:0",
    "--listen.tempo",
    "127.0.0.1:0",
    "--listen.otlp-http",
    "127.0.0.1:0",
    "--listen.otlp-grpc",
    "127.0.0.1:0",
];

/// A running `tripod` process and its log lines.
struct Tripod {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Tripod {
    fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Tripod {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tripod"));
        for (name, _) in std::env::vars() {
            if name.starts_with("TRIPOD_") {
                command.env_remove(name);
            }
        }
        command
            .args(["--log.format", "json", "--log.level", "info"])
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("tripod binary starts");
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Tripod { child, lines, seen: Vec::new() }
    }

    /// Waits for the JSON log event whose message is `message` and returns it.
    fn wait_for(&mut self, message: &str) -> serde_json::Value {
        let deadline = Instant::now() + HANG_GUARD;
        if let Some(found) = self.seen.iter().filter_map(|line| parse(line)).find(|event| event["message"] == message) {
            return found;
        }
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(remaining) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(event) = parse(&line)
                        && event["message"] == message
                    {
                        return event;
                    }
                }
                Err(_) => panic!("no {message:?} log line; saw:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// The bound listeners, from the `listening` log lines.
    fn listeners(&mut self) -> HashMap<String, SocketAddr> {
        self.wait_for("server started");
        self.seen
            .iter()
            .filter_map(|line| parse(line))
            .filter(|event| event["message"] == "listening")
            .map(|event| {
                let name = event["listener"].as_str().unwrap().to_string();
                (name, event["address"].as_str().unwrap().parse().unwrap())
            })
            .collect()
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: sending a signal to our own child process.
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(sent, 0, "signal delivered");
    }

    /// Waits for the process to exit; returns its status and every log line.
    fn wait_exit(mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + HANG_GUARD;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "tripod did not exit; saw:\n{}", self.seen.join("\n"));
            std::thread::sleep(Duration::from_millis(10));
        };
        // The reader thread ends at EOF; collect what it still holds.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status, self.seen.join("\n"))
    }
}

impl Drop for Tripod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse(line: &str) -> Option<serde_json::Value> {
    serde_json::from_str(line).ok()
}

/// A minimal HTTP/1.0 GET, so these synchronous tests need no async client.
fn http_get(address: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("listener accepts");
    stream.set_read_timeout(Some(HANG_GUARD)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    (status, body)
}

#[test]
fn sigterm_and_sigint_stop_cleanly_with_exit_zero() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut args = vec!["--ephemeral"];
        args.extend(LOOPBACK_LISTENERS);
        let mut tripod = Tripod::spawn(&args, &[]);
        let started = tripod.wait_for("server started");
        let data_dir = PathBuf::from(started["data_dir"].as_str().unwrap());
        tripod.wait_for("ready");
        let listeners = tripod.listeners();
        assert_eq!(listeners.len(), 5, "{listeners:?}");
        for name in ["listen.loki", "listen.prometheus", "listen.tempo"] {
            assert_eq!(http_get(listeners[name], "/ready"), (200, "ready\n".to_string()), "{name}");
        }
        assert!(data_dir.join("wal").is_dir());

        tripod.signal(signal);
        let (status, logs) = tripod.wait_exit();
        assert_eq!(status.code(), Some(0), "signal {signal}:\n{logs}");
        assert!(logs.contains("\"shutdown complete\""), "{logs}");
        assert!(!data_dir.exists(), "--ephemeral left {} behind", data_dir.display());
    }
}

#[test]
fn a_port_in_use_names_the_port_and_the_option_and_exits_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let mut args = vec!["--ephemeral"];
    for pair in LOOPBACK_LISTENERS.chunks(2).filter(|pair| pair[0] != "--listen.prometheus") {
        args.extend(pair);
    }
    args.extend(["--listen.prometheus", address.as_str()]);
    let (status, logs) = Tripod::spawn(&args, &[]).wait_exit();
    assert_eq!(status.code(), Some(1), "{logs}");
    let expected = format!("listen.prometheus: cannot listen on {address}: ");
    assert!(logs.contains(&expected), "expected {expected:?} in:\n{logs}");
}

#[test]
fn an_unknown_config_key_names_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tripod.yaml");
    std::fs::write(&path, "listen:\n  loki: 127.0.0.1:0\n  grafana: 127.0.0.1:0\n").unwrap();
    let (status, logs) = Tripod::spawn(&["--config", path.to_str().unwrap()], &[]).wait_exit();
    assert_eq!(status.code(), Some(1), "{logs}");
    assert!(logs.contains("unknown field `grafana`"), "{logs}");
    assert!(logs.contains(path.to_str().unwrap()), "{logs}");
}

#[test]
fn a_config_file_environment_and_flags_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let from_file = dir.path().join("from-file");
    let from_env = dir.path().join("from-env");
    let from_flag = dir.path().join("from-flag");
    let config = dir.path().join("tripod.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: {}\nlisten:\n  loki: 127.0.0.1:0\n  prometheus: 127.0.0.1:0\n  tempo: off\n  otlp_http: off\n  otlp_grpc: 127.0.0.1:0\n",
            from_file.display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();

    let run = |args: &[&str], envs: &[(&str, &str)]| {
        let mut tripod = Tripod::spawn(args, envs);
        tripod.wait_for("ready");
        let listeners = tripod.listeners();
        tripod.signal(libc::SIGTERM);
        let (status, logs) = tripod.wait_exit();
        assert_eq!(status.code(), Some(0), "{logs}");
        listeners
    };
    let exists = |path: &Path| path.join("wal").is_dir();

    let listeners = run(&["--config", config], &[]);
    let mut names: Vec<&str> = listeners.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["listen.loki", "listen.otlp_grpc", "listen.prometheus"]);
    assert!(exists(&from_file));

    // The environment beats the file; TRIPOD_CONFIG names the file.
    let listeners = run(
        &[],
        &[
            ("TRIPOD_CONFIG", config),
            ("TRIPOD_DATA_DIR", from_env.to_str().unwrap()),
            ("TRIPOD_LISTEN_OTLP_GRPC", "off"),
        ],
    );
    assert!(exists(&from_env));
    assert!(!listeners.contains_key("listen.otlp_grpc"), "{listeners:?}");

    // A flag beats the environment.
    run(
        &["--config", config, "--data-dir", from_flag.to_str().unwrap()],
        &[("TRIPOD_DATA_DIR", from_env.to_str().unwrap())],
    );
    assert!(exists(&from_flag));
}

#[test]
fn a_second_process_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let mut args = vec!["--data-dir", data];
    args.extend(LOOPBACK_LISTENERS);
    let mut first = Tripod::spawn(&args, &[]);
    first.wait_for("ready");
    let (status, logs) = Tripod::spawn(&args, &[]).wait_exit();
    assert_eq!(status.code(), Some(1), "{logs}");
    assert!(logs.contains("is in use by another process"), "{logs}");
    // The first one is unaffected.
    let listeners = first.listeners();
    assert_eq!(http_get(listeners["listen.loki"], "/ready").0, 200);
    first.signal(libc::SIGTERM);
    assert_eq!(first.wait_exit().0.code(), Some(0));
}

#[test]
fn a_bad_flag_value_is_an_error_naming_the_option() {
    let (status, logs) = Tripod::spawn(&["--ephemeral", "--listen.loki", "nowhere"], &[]).wait_exit();
    assert_eq!(status.code(), Some(1), "{logs}");
    assert!(logs.contains("listen.loki: invalid listen address \"nowhere\""), "{logs}");
}

#[test]
fn sighup_reloads_the_scrape_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tripod.yaml");
    std::fs::write(&config, "scrape:\n  self: false\n").unwrap();
    let mut args = vec!["--ephemeral", "--config", config.to_str().unwrap()];
    args.extend(LOOPBACK_LISTENERS);
    let mut tripod = Tripod::spawn(&args, &[]);
    tripod.wait_for("ready");
    let listeners = tripod.listeners();
    let address = listeners["listen.prometheus"];
    std::fs::write(&config, format!("scrape:\n  self: false\n  configs:\n    - job_name: added\n      static_configs: [{{targets: [\"{address}\"]}}]\n")).unwrap();
    tripod.signal(libc::SIGHUP);
    tripod.wait_for("scrape configuration reloaded");
    // The new loops start right after the reload; wait for the target to be listed.
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let (status, body) = http_get(address, "/api/v1/targets");
        assert_eq!(status, 200);
        if body.contains("\"scrapePool\":\"added\"") {
            break;
        }
        assert!(Instant::now() < deadline, "target not listed: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A broken file is refused and the process keeps running.
    std::fs::write(&config, "scrape:\n  configs: [{job_name: x, scheme: ftp}]\n").unwrap();
    tripod.signal(libc::SIGHUP);
    tripod.wait_for("reload failed, keeping the running configuration");
    assert_eq!(http_get(address, "/ready").0, 200);
    tripod.signal(libc::SIGTERM);
    assert_eq!(tripod.wait_exit().0.code(), Some(0));
}
