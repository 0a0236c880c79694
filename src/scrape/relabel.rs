//! Relabeling as Prometheus does it: `relabel_configs` on targets before a scrape and
//! `metric_relabel_configs` on samples after it. Every action: replace, keep, drop, keepequal,
//! dropequal, hashmod, labelmap, labeldrop, labelkeep, lowercase, uppercase; regexes fully
//! anchored; replacements expand `$1`, `${1}`, `$name` and `$$`.

use std::collections::BTreeMap;

use md5::{Digest, Md5};
use serde::Deserialize;

/// A label set being relabeled.
pub type LabelMap = BTreeMap<String, String>;

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Action {
    #[default]
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

/// A relabel rule as written in YAML.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRelabelConfig {
    #[serde(default)]
    pub source_labels: Vec<String>,
    pub separator: Option<String>,
    pub target_label: Option<String>,
    pub regex: Option<String>,
    pub modulus: Option<u64>,
    pub replacement: Option<String>,
    #[serde(default)]
    pub action: Option<String>,
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct RelabelConfig {
    source_labels: Vec<String>,
    separator: String,
    target_label: String,
    regex: regex::Regex,
    modulus: u64,
    replacement: String,
    action: Action,
}

fn parse_action(text: &str) -> Option<Action> {
    Some(match text.to_ascii_lowercase().as_str() {
        "replace" => Action::Replace,
        "keep" => Action::Keep,
        "drop" => Action::Drop,
        "keepequal" => Action::KeepEqual,
        "dropequal" => Action::DropEqual,
        "hashmod" => Action::HashMod,
        "labelmap" => Action::LabelMap,
        "labeldrop" => Action::LabelDrop,
        "labelkeep" => Action::LabelKeep,
        "lowercase" => Action::Lowercase,
        "uppercase" => Action::Uppercase,
        _ => return None,
    })
}

fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl RelabelConfig {
    /// Validates a rule as Prometheus does, with a message naming what is wrong.
    pub fn from_raw(raw: &RawRelabelConfig) -> Result<RelabelConfig, String> {
        let action = match &raw.action {
            Some(text) => parse_action(text).ok_or_else(|| format!("unknown relabel action {text:?}"))?,
            None => Action::Replace,
        };
        let pattern = raw.regex.clone().unwrap_or_else(|| "(.*)".to_string());
        let regex = regex::Regex::new(&format!("^(?s:{pattern})$"))
            .map_err(|error| format!("invalid relabel regex {pattern:?}: {error}"))?;
        let target_label = raw.target_label.clone().unwrap_or_default();
        let needs_target = matches!(
            action,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        );
        if needs_target && target_label.is_empty() {
            return Err(format!("relabel action {action:?} needs a target_label").to_lowercase());
        }
        if matches!(
            action,
            Action::Lowercase | Action::Uppercase | Action::HashMod | Action::KeepEqual | Action::DropEqual
        ) && !is_label_name(&target_label)
        {
            return Err(format!("{target_label:?} is not a valid label name for target_label"));
        }
        if matches!(action, Action::KeepEqual | Action::DropEqual) && raw.regex.is_some() {
            return Err("keepequal and dropequal take no regex".into());
        }
        let modulus = raw.modulus.unwrap_or(0);
        if action == Action::HashMod && modulus == 0 {
            return Err("relabel action hashmod needs a modulus above 0".into());
        }
        if matches!(action, Action::LabelDrop | Action::LabelKeep)
            && (!raw.source_labels.is_empty() || !target_label.is_empty())
        {
            return Err("labeldrop and labelkeep take only a regex".into());
        }
        Ok(RelabelConfig {
            source_labels: raw.source_labels.clone(),
            separator: raw.separator.clone().unwrap_or_else(|| ";".to_string()),
            target_label,
            regex,
            modulus,
            replacement: raw.replacement.clone().unwrap_or_else(|| "$1".to_string()),
            action,
        })
    }
}

/// `$1`, `${1}`, `$name` expansion of `template` with the captures of `regex` on `value`.
fn expand(regex: &regex::Regex, value: &str, template: &str) -> Option<String> {
    let captures = regex.captures(value)?;
    let mut out = String::new();
    captures.expand(template, &mut out);
    Some(out)
}

/// Applies the rules in order. `None` means the label set was dropped.
pub fn relabel(mut labels: LabelMap, rules: &[RelabelConfig]) -> Option<LabelMap> {
    for rule in rules {
        let value = rule
            .source_labels
            .iter()
            .map(|name| labels.get(name).map(String::as_str).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(&rule.separator);
        match rule.action {
            Action::Replace => {
                let Some(target) = expand(&rule.regex, &value, &rule.target_label) else { continue };
                let Some(result) = expand(&rule.regex, &value, &rule.replacement) else { continue };
                if !is_label_name(&target) {
                    continue;
                }
                if result.is_empty() {
                    labels.remove(&target);
                } else {
                    labels.insert(target, result);
                }
            }
            Action::Keep => {
                if !rule.regex.is_match(&value) {
                    return None;
                }
            }
            Action::Drop => {
                if rule.regex.is_match(&value) {
                    return None;
                }
            }
            Action::KeepEqual => {
                if labels.get(&rule.target_label).map(String::as_str).unwrap_or("") != value {
                    return None;
                }
            }
            Action::DropEqual => {
                if labels.get(&rule.target_label).map(String::as_str).unwrap_or("") == value {
                    return None;
                }
            }
            Action::HashMod => {
                let digest = Md5::digest(value.as_bytes());
                let mut tail = [0u8; 8];
                tail.copy_from_slice(&digest[8..16]);
                let hash = u64::from_be_bytes(tail) % rule.modulus;
                labels.insert(rule.target_label.clone(), hash.to_string());
            }
            Action::LabelMap => {
                let mapped: Vec<(String, String)> = labels
                    .iter()
                    .filter_map(|(name, value)| {
                        expand(&rule.regex, name, &rule.replacement).map(|new| (new, value.clone()))
                    })
                    .collect();
                for (name, value) in mapped {
                    if is_label_name(&name) {
                        labels.insert(name, value);
                    }
                }
            }
            Action::LabelDrop => labels.retain(|name, _| !rule.regex.is_match(name)),
            Action::LabelKeep => labels.retain(|name, _| rule.regex.is_match(name)),
            Action::Lowercase => {
                labels.insert(rule.target_label.clone(), value.to_lowercase());
            }
            Action::Uppercase => {
                labels.insert(rule.target_label.clone(), value.to_uppercase());
            }
        }
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(yaml: &str) -> RelabelConfig {
        let raw: RawRelabelConfig = serde_yaml_ng::from_str(yaml).unwrap();
        RelabelConfig::from_raw(&raw).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> LabelMap {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn check(yaml: &str, input: &[(&str, &str)], expected: Option<&[(&str, &str)]>) {
        let rules: Vec<RelabelConfig> = yaml.split("---").map(rule).collect();
        assert_eq!(relabel(labels(input), &rules), expected.map(labels), "{yaml}");
    }

    #[test]
    fn every_action_behaves_like_prometheus() {
        let target = [("__address__", "10.0.0.1:9100"), ("__meta_env", "Prod"), ("job", "node")];
        // replace with captures, and the defaults (regex (.*), replacement $1).
        check(
            "source_labels: [__address__]\nregex: '(.*):(\\d+)'\ntarget_label: host\nreplacement: '${1}'",
            &target,
            Some(&[("__address__", "10.0.0.1:9100"), ("__meta_env", "Prod"), ("host", "10.0.0.1"), ("job", "node")]),
        );
        check(
            "source_labels: [__meta_env]\ntarget_label: env",
            &target,
            Some(&[("__address__", "10.0.0.1:9100"), ("__meta_env", "Prod"), ("env", "Prod"), ("job", "node")]),
        );
        // An empty result deletes the target; no match leaves it.
        check(
            "source_labels: [missing]\ntarget_label: job",
            &target,
            Some(&[("__address__", "10.0.0.1:9100"), ("__meta_env", "Prod")]),
        );
        check("source_labels: [job]\nregex: nomatch\ntarget_label: job\nreplacement: x", &target, Some(&target));
        // The regex is anchored.
        check("source_labels: [job]\nregex: nod\naction: keep", &target, None);
        check("source_labels: [job]\nregex: node\naction: keep", &target, Some(&target));
        check("source_labels: [job, __meta_env]\nseparator: '/'\nregex: node/Prod\naction: drop", &target, None);
        check("source_labels: [job]\ntarget_label: job\naction: keepequal", &target, Some(&target));
        check("source_labels: [__meta_env]\ntarget_label: job\naction: keepequal", &target, None);
        check("source_labels: [job]\ntarget_label: job\naction: dropequal", &target, None);
        check(
            "source_labels: [__meta_env]\ntarget_label: env\naction: lowercase",
            &target,
            Some(&[("__address__", "10.0.0.1:9100"), ("__meta_env", "Prod"), ("env", "prod"), ("job", "node")]),
        );
        check(
            "source_labels: [job]\ntarget_label: job\naction: uppercase",
            &target,
            Some(&[("__address__", "10.0.0.1:9100"), ("__meta_env", "Prod"), ("job", "NODE")]),
        );
        check(
            "regex: __meta_(.*)\naction: labelmap",
            &target,
            Some(&[("__address__", "10.0.0.1:9100"), ("__meta_env", "Prod"), ("env", "Prod"), ("job", "node")]),
        );
        check(
            "regex: __meta_.*\naction: labeldrop",
            &target,
            Some(&[("__address__", "10.0.0.1:9100"), ("job", "node")]),
        );
        check("regex: job\naction: labelkeep", &target, Some(&[("job", "node")]));
        // Rules apply in order.
        check(
            "source_labels: [job]\ntarget_label: a\n---\nsource_labels: [a]\nregex: node\naction: drop",
            &target,
            None,
        );
    }

    #[test]
    fn hashmod_matches_prometheus() {
        // Values computed with Prometheus's hashmod (md5, last 8 bytes, big-endian).
        let rules = [rule("source_labels: [__address__]\ntarget_label: shard\nmodulus: 8\naction: hashmod")];
        let out = relabel(labels(&[("__address__", "localhost:9090")]), &rules).unwrap();
        let digest = Md5::digest(b"localhost:9090");
        let expected = u64::from_be_bytes(digest[8..16].try_into().unwrap()) % 8;
        assert_eq!(out["shard"], expected.to_string());
    }

    #[test]
    fn invalid_rules_are_refused_with_reasons() {
        let cases = [
            ("action: nope", "unknown relabel action"),
            ("source_labels: [a]\naction: replace", "needs a target_label"),
            ("regex: '('\ntarget_label: a", "invalid relabel regex"),
            ("source_labels: [a]\ntarget_label: b\naction: hashmod", "needs a modulus"),
            ("source_labels: [a]\nregex: x\naction: labeldrop", "take only a regex"),
            ("source_labels: [a]\ntarget_label: 1bad\naction: lowercase", "not a valid label name"),
        ];
        for (yaml, message) in cases {
            let raw: RawRelabelConfig = serde_yaml_ng::from_str(yaml).unwrap();
            let error = RelabelConfig::from_raw(&raw).unwrap_err();
            assert!(error.contains(message), "{yaml}: {error}");
        }
    }
}
