//! SIGKILL during a push load: the real `tripod` binary takes Loki pushes in a loop, is killed
//! with SIGKILL mid-load, and every line of every push it acknowledged (204) must be in the
//! store when the data directory is opened again.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tripod_storage::{Storage, StorageOptions};

use crate::support::{ProtoStream, now_ns, protobuf_push, snappy, stored};

/// Guards against a hung process; never reached when things work.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// A `tripod` process on loopback ports, killed when dropped.
struct Tripod {
    child: Child,
    loki: SocketAddr,
}

impl Tripod {
    fn start(data_dir: &std::path::Path) -> Tripod {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tripod"));
        for (name, _) in std::env::vars() {
            if name.starts_with("TRIPOD_") {
                command.env_remove(name);
            }
        }
        command
            .args(["--log.format", "json", "--log.level", "info", "--data-dir"])
            .arg(data_dir)
            .args(["--listen.loki", "127.0.0.1:0", "--listen.prometheus", "off", "--listen.tempo", "off"])
            .args(["--listen.otlp-http", "off", "--listen.otlp-grpc", "off"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("tripod binary starts");
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + HANG_GUARD;
        let mut loki = None;
        let mut seen = Vec::new();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let line = lines.recv_timeout(remaining).unwrap_or_else(|_| panic!("tripod did not get ready: {seen:?}"));
            let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if event["message"] == "listening" && event["listener"] == "listen.loki" {
                loki = event["address"].as_str().and_then(|a| a.parse().ok());
            }
            seen.push(line);
            if event["message"] == "ready" {
                break;
            }
        }
        // Keep draining the log so the process never blocks on a full pipe.
        std::thread::spawn(move || while lines.recv().is_ok() {});
        Tripod { child, loki: loki.expect("the loki listener's address is logged") }
    }

    fn kill(&mut self) {
        // SAFETY: sending a signal to our own child process.
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL) };
        assert_eq!(sent, 0);
        let _ = self.child.wait();
    }
}

impl Drop for Tripod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_line_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut tripod = Tripod::start(dir.path());
    let url = format!("http://{}/loki/api/v1/push", tripod.loki);
    let start = now_ns();

    // Four concurrent pushers; each records the lines of the pushes that got 204.
    let (kill_after, pushers) = (40usize, 4usize);
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let batches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for pusher in 0..pushers {
        let (url, acknowledged, batches) = (url.clone(), acknowledged.clone(), batches.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for batch in 0..10_000usize {
                let lines: Vec<String> =
                    (0..50).map(|i| format!("pusher {pusher} batch {batch} line {i} {}", "x".repeat(100))).collect();
                let labels = format!(r#"{{app="load", pusher="{pusher}"}}"#);
                let entries = lines
                    .iter()
                    .enumerate()
                    .map(|(i, line)| (start + (batch * 50 + i) as i64, line.as_str(), vec![]))
                    .collect();
                let body = snappy(&protobuf_push(&[ProtoStream { labels: &labels, entries }]));
                let sent = client.post(&url).header("content-type", "application/x-protobuf").body(body).send().await;
                match sent {
                    Ok(response) if response.status().as_u16() == 204 => {
                        acknowledged.lock().unwrap().extend(lines);
                        batches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    // The server is gone: stop.
                    _ => return,
                }
            }
        }));
    }
    let deadline = Instant::now() + HANG_GUARD;
    while batches.load(std::sync::atomic::Ordering::SeqCst) < kill_after {
        assert!(Instant::now() < deadline, "the load did not get going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tripod.kill();
    for task in tasks {
        task.await.unwrap();
    }
    let acknowledged: BTreeSet<String> = acknowledged.lock().unwrap().iter().cloned().collect();
    assert!(acknowledged.len() >= kill_after * 50);

    // Reopen the directory the way the server does and read everything back.
    let storage = Storage::open(dir.path(), StorageOptions::default()).expect("storage reopens after SIGKILL");
    let present: BTreeSet<String> = stored(&storage, "fake").into_iter().map(|(_, _, line, _)| line).collect();
    let missing: Vec<&String> = acknowledged.difference(&present).collect();
    assert!(missing.is_empty(), "{} acknowledged lines lost, e.g. {:?}", missing.len(), missing.first());
    storage.close().unwrap();
    drop(storage);

    // And the binary itself starts on the same directory.
    let mut again = Tripod::start(dir.path());
    again.kill();
}
