//! Real Loki clients against a real server: python-logging-loki (both JSON forms), a protobuf
//! request encoded independently in Python from `proto/loki/push.proto`, and winston-loki
//! (snappy protobuf by default, JSON with structured metadata when asked).

use std::process::Command;

use tripod::config::ListenerName;

use crate::support::{node_with, now_ns, python_with, server, stored};

fn loki_base(server: &tripod::Server) -> String {
    format!("http://{}", server.address(ListenerName::Loki).unwrap())
}

async fn run(program: std::path::PathBuf, args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || Command::new(program).args(args).output().unwrap()).await.unwrap()
}

#[tokio::test]
async fn python_logging_loki_in_both_json_forms() {
    let Some(python) = python_with("logging_loki") else { return };
    for version in ["1", "0"] {
        let server = server().await;
        let url = format!("{}/loki/api/v1/push", loki_base(&server));
        let output = run(python.clone(), vec!["tests/clients/loki_logging.py".into(), url, version.into()]).await;
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert!(output.stderr.is_empty(), "the handler reported an error: {}", String::from_utf8_lossy(&output.stderr));
        let stored = stored(&server.storage().unwrap(), "fake");
        let shown: Vec<(String, String)> = stored.into_iter().map(|(stream, _, line, _)| (stream, line)).collect();
        assert_eq!(
            shown,
            [
                (
                    r#"{application="billing", logger="billing.worker", severity="info"}"#.to_string(),
                    "invoice 1001 sent".to_string()
                ),
                (
                    r#"{application="billing", customer="acme", logger="billing.worker", severity="error"}"#
                        .to_string(),
                    "invoice 1002 failed: card expired".to_string()
                ),
            ],
            "version {version}"
        );
        server.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn protobuf_encoded_independently_in_python() {
    let Some(python) = python_with("google.protobuf, cramjam") else { return };
    let server = server().await;
    let start = now_ns();
    let url = format!("{}/loki/api/v1/push", loki_base(&server));
    let output = run(python, vec!["tests/clients/loki_push.py".into(), url, start.to_string()]).await;
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stored = stored(&server.storage().unwrap(), "fake");
    let payments = r#"{app="payments", note="say \"hi\"\n"}"#;
    assert_eq!(
        stored,
        vec![
            (r#"{app="ledger"}"#.to_string(), start, "ledger closed".to_string(), "{}".to_string()),
            (payments.to_string(), start, "payment 0 settled ✓".to_string(), "{}".to_string()),
            (
                payments.to_string(),
                start + 1,
                "payment 1 settled ✓".to_string(),
                r#"{trace_id="0af7651916cd43dd8448eb211c80319c"}"#.to_string()
            ),
            (payments.to_string(), start + 2, "payment 2 settled ✓".to_string(), "{}".to_string()),
        ]
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn winston_loki_sends_protobuf_and_json() {
    let Some(node) = node_with("winston-loki") else { return };
    for format in ["protobuf", "json"] {
        let server = server().await;
        let output =
            run(node.clone(), vec!["tests/clients/winston_loki.js".into(), loki_base(&server), format.into()]).await;
        assert!(
            output.status.success(),
            "{format}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let stored = stored(&server.storage().unwrap(), "fake");
        assert_eq!(stored.len(), 2, "{format}: {stored:?}");
        let info = stored.iter().find(|entry| entry.2.starts_with("cart 7 checked out")).expect("the info entry");
        assert_eq!(info.0, format!(r#"{{app="storefront", format="{format}", level="info"}}"#));
        let warn = stored.iter().find(|entry| entry.2.starts_with("stock low for sku 42")).expect("the warn entry");
        assert_eq!(warn.0, format!(r#"{{app="storefront", format="{format}", level="warn"}}"#));
        if format == "json" {
            // JSON carries the log's meta as structured metadata.
            assert!(info.3.contains(r#"trace_id="aa11bb22cc33dd44""#), "{}", info.3);
        } else {
            // Protobuf carries it in the line.
            assert!(info.2.starts_with(r#"cart 7 checked out {"trace_id":"aa11bb22cc33dd44""#), "{}", info.2);
            assert_eq!(info.3, "{}");
        }
        server.shutdown().await.unwrap();
    }
}
