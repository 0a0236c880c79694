//! The deployment files: Grafana's provisioning satisfies the datasource contract, and the
//! compose file and Dockerfile run Tripod the way the README says.

use std::path::Path;

use serde_yaml_ng::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

fn yaml(path: &str) -> Value {
    serde_yaml_ng::from_str(&read(path)).unwrap()
}

fn datasource<'a>(datasources: &'a [Value], kind: &str) -> &'a Value {
    datasources.iter().find(|ds| ds["type"].as_str() == Some(kind)).unwrap_or_else(|| panic!("no {kind} datasource"))
}

#[test]
fn grafana_datasources_point_at_tripod_and_link_to_each_other() {
    let file = yaml("grafana-provisioning/datasources/tripod.yaml");
    let datasources = file["datasources"].as_sequence().unwrap();
    let prometheus = datasource(datasources, "prometheus");
    let loki = datasource(datasources, "loki");
    let tempo = datasource(datasources, "tempo");
    let uids: Vec<&str> = [prometheus, loki, tempo].iter().map(|ds| ds["uid"].as_str().unwrap()).collect();

    for (ds, port) in [(prometheus, 9090), (loki, 3100), (tempo, 3200)] {
        let url = ds["url"].as_str().unwrap();
        assert_eq!(url, format!("http://tripod:{port}"));
        assert!(!url.ends_with('/'), "a trailing slash breaks Grafana's Tempo paths");
    }
    // POST is Grafana's default and must work; the provisioning says so explicitly.
    assert_eq!(prometheus["jsonData"]["httpMethod"], "POST");
    // Tripod serves search over HTTP: streaming must stay off or Save & test fails.
    assert_eq!(tempo["jsonData"]["streamingEnabled"]["search"], false);
    assert_eq!(tempo["jsonData"]["streamingEnabled"]["metrics"], false);

    // Every cross-link names a provisioned datasource.
    let links = [
        &prometheus["jsonData"]["exemplarTraceIdDestinations"][0]["datasourceUid"],
        &loki["jsonData"]["derivedFields"][0]["datasourceUid"],
        &tempo["jsonData"]["tracesToLogsV2"]["datasourceUid"],
        &tempo["jsonData"]["tracesToMetrics"]["datasourceUid"],
        &tempo["jsonData"]["serviceMap"]["datasourceUid"],
    ];
    for link in links {
        assert!(uids.contains(&link.as_str().unwrap()), "{link:?} is not one of {uids:?}");
    }
    // Grafana template variables are escaped as `$${` in provisioning files.
    let text = read("grafana-provisioning/datasources/tripod.yaml");
    for (number, line) in text.lines().enumerate() {
        if let Some(position) = line.find("${") {
            assert!(position > 0 && line[..position].ends_with('$'), "line {}: unescaped ${{ in {line:?}", number + 1);
        }
    }
}

#[test]
fn compose_runs_tripod_under_the_classic_names_with_grafana_provisioned() {
    let compose = yaml("docker-compose.yml");
    let tripod = &compose["services"]["tripod"];
    let aliases: Vec<&str> =
        tripod["networks"]["default"]["aliases"].as_sequence().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(aliases, ["loki", "prometheus", "tempo"]);
    let ports: Vec<&str> = tripod["ports"].as_sequence().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    for port in ["3100", "9090", "3200", "4317", "4318"] {
        assert!(ports.contains(&format!("{port}:{port}").as_str()), "port {port} not published");
    }
    assert!(tripod["volumes"][0].as_str().unwrap().ends_with(":/data"));
    let grafana_volumes: Vec<&str> =
        compose["services"]["grafana"]["volumes"].as_sequence().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(
        grafana_volumes
            .iter()
            .any(|v| { v.starts_with("./grafana-provisioning/datasources:/etc/grafana/provisioning/datasources") })
    );
}

#[test]
fn the_image_runs_as_a_non_root_user_with_a_data_volume() {
    let dockerfile = read("Dockerfile");
    let user = dockerfile.lines().rev().find_map(|line| line.strip_prefix("USER ")).expect("a USER line");
    assert_ne!(user.trim(), "root");
    assert_ne!(user.trim(), "0");
    assert!(dockerfile.contains("VOLUME /data"));
    assert!(dockerfile.contains("ENV TRIPOD_DATA_DIR=/data"));
    assert!(dockerfile.matches("FROM ").count() >= 2, "multi-stage build");
}
