//! Requests to a server's Prometheus listener, shared by this binary's tests.

use serde_json::Value;
use tripod::Server;
use tripod::config::ListenerName;

pub fn url(server: &Server, path: &str) -> String {
    format!("http://{}{path}", server.address(ListenerName::Prometheus).unwrap())
}

pub async fn get_text(server: &Server, path: &str) -> (u16, String) {
    let response = reqwest::get(url(server, path)).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

pub async fn get(server: &Server, path: &str) -> (u16, Value) {
    let response = reqwest::get(url(server, path)).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// POST with a form body (what Grafana's backend sends), keeping any URL query too.
pub async fn post(server: &Server, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url(server, path))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).unwrap())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}
