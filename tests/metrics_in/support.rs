//! Shared helpers: an embedded server, and finding outside programs the way the test command
//! promises (on PATH; with CI=true a missing one fails the test instead of skipping it).

use std::path::PathBuf;

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
