//! The OpenMetrics project's parser test suite (shared/data/openmetrics-parsers): every case
//! must parse or be refused as the suite says, except those listed, with the reason, in
//! `openmetrics-expected-failures.txt` (a list meant to shrink).

use std::path::PathBuf;

use tripod::scrape::exposition::parse_openmetrics;

fn suite_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/openmetrics-parsers");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|value| value == "true") {
        panic!("{} is missing; CI runs with shared/ beside the clone", dir.display());
    }
    eprintln!("skipping: {} not found", dir.display());
    None
}

#[test]
fn openmetrics_parser_suite() {
    let Some(dir) = suite_dir() else { return };
    let expected_failures: Vec<String> = include_str!("openmetrics-expected-failures.txt")
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim().to_string())
        .filter(|line| !line.is_empty())
        .collect();
    let mut cases: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    cases.sort();
    let (mut passed, mut unexpected, mut now_passing) = (0, Vec::new(), Vec::new());
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let spec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(case.join("test.json")).unwrap()).unwrap();
        let text = std::fs::read(case.join(spec["file"].as_str().unwrap())).unwrap();
        let should_parse = spec["shouldParse"].as_bool().unwrap();
        let parsed = match std::str::from_utf8(&text) {
            Ok(text) => parse_openmetrics(text).map(|_| ()).map_err(|e| e.to_string()),
            Err(_) => Err("not UTF-8".to_string()),
        };
        let ok = parsed.is_ok() == should_parse;
        match (ok, expected_failures.contains(&name)) {
            (true, false) => passed += 1,
            (true, true) => now_passing.push(name),
            (false, true) => {}
            (false, false) => unexpected
                .push(format!("{name}: should {}parse, got {parsed:?}", if should_parse { "" } else { "not " })),
        }
    }
    eprintln!(
        "openmetrics suite: {passed} of {} cases pass, {} listed as expected failures",
        cases.len(),
        expected_failures.len()
    );
    assert!(unexpected.is_empty(), "{} cases fail:\n{}", unexpected.len(), unexpected.join("\n"));
    assert!(now_passing.is_empty(), "these pass now, remove them from the expected failures: {now_passing:?}");
}
