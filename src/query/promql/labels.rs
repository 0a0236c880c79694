//! Label functions: `label_replace`, `label_join`, and the labels `absent` reports.

use std::cmp::Ordering;

use promql_parser::parser::VectorSelector;
use regex::Regex;
use tripod_storage::labels::{Label, Labels};

use super::eval::EvalError;

/// Whether `name` is a label name in the classic Prometheus alphabet.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `labels` with `name` set to `value`, or removed when `value` is empty.
pub fn with_label(labels: &Labels, name: &str, value: &str) -> Labels {
    let mut out: Vec<Label> = labels.iter().filter(|l| &*l.name != name).cloned().collect();
    if !value.is_empty() {
        out.push(Label { name: name.into(), value: value.into() });
    }
    Labels::from_labels(out).unwrap_or_else(|_| Labels::empty())
}

/// A parsed `label_replace` or `label_join` call.
pub enum Relabel {
    Replace { destination: String, replacement: String, source: String, regex: Regex },
    Join { destination: String, separator: String, sources: Vec<String> },
}

impl Relabel {
    /// From the function's string arguments (everything after the vector).
    pub fn new(function: &str, args: &[String]) -> Result<Relabel, EvalError> {
        let destination = args.first().cloned().unwrap_or_default();
        if !is_valid_label_name(&destination) {
            return Err(EvalError::Execution(format!("invalid destination label name in {function}(): {destination}")));
        }
        if function == "label_replace" {
            let [_, replacement, source, regex] = args else {
                return Err(EvalError::Execution("label_replace() takes five arguments".into()));
            };
            let regex = Regex::new(&format!("^(?s:{regex})$"))
                .map_err(|e| EvalError::Execution(format!("invalid regular expression in label_replace(): {e}")))?;
            return Ok(Relabel::Replace {
                destination,
                replacement: replacement.clone(),
                source: source.clone(),
                regex,
            });
        }
        let separator = args.get(1).cloned().unwrap_or_default();
        let sources = args.iter().skip(2).cloned().collect::<Vec<_>>();
        for source in &sources {
            if !is_valid_label_name(source) {
                return Err(EvalError::Execution(format!("invalid source label name in label_join(): {source}")));
            }
        }
        Ok(Relabel::Join { destination, separator, sources })
    }

    pub fn apply(&self, labels: &Labels) -> Labels {
        match self {
            Relabel::Replace { destination, replacement, source, regex } => {
                let value = labels.get(source).unwrap_or("");
                match regex.captures(value) {
                    Some(captures) => with_label(labels, destination, &expand(replacement, &captures)),
                    None => labels.clone(),
                }
            }
            Relabel::Join { destination, separator, sources } => {
                let values: Vec<&str> = sources.iter().map(|s| labels.get(s).unwrap_or("")).collect();
                with_label(labels, destination, &values.join(separator))
            }
        }
    }
}

/// Expands `$1`, `${1}`, `$name`, `${name}` and `$$` as Go's `Regexp.Expand` does: `$name`
/// takes the longest run of letters, digits and underscores; unknown groups are empty.
fn expand(template: &str, captures: &regex::Captures<'_>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
            match braced.find('}') {
                Some(end) if end > 0 && braced[..end].chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                    (&braced[..end], &braced[end + 1..])
                }
                _ => ("", rest),
            }
        } else {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        if name.is_empty() {
            // Malformed: the `$` is literal.
            out.push('$');
            continue;
        }
        let group = match name.parse::<usize>() {
            Ok(index) => captures.get(index),
            Err(_) => captures.name(name),
        };
        out.push_str(group.map_or("", |m| m.as_str()));
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The labels `absent` gives its series: each name's first equality matcher, removed again by
/// any later matcher on the same name; never the metric name.
pub fn absent_labels(selector: Option<&VectorSelector>) -> Labels {
    let Some(selector) = selector else { return Labels::empty() };
    let mut set: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for matcher in &selector.matchers.matchers {
        if matcher.name == "__name__" {
            continue;
        }
        let equal = matches!(matcher.op, promql_parser::label::MatchOp::Equal);
        if equal && seen.insert(&matcher.name) {
            set.insert(&matcher.name, &matcher.value);
        } else {
            set.remove(matcher.name.as_str());
        }
    }
    Labels::from_pairs(set).unwrap_or_else(|_| Labels::empty())
}

/// Natural order: runs of digits compare as numbers, everything else as text
/// (`a2 < a10`), as `sort_by_label` orders label values.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        let (Some(x), Some(y)) = (a.chars().next(), b.chars().next()) else {
            return a.len().cmp(&b.len());
        };
        let (a_chunk, a_rest) = split_chunk(a, x.is_ascii_digit());
        let (b_chunk, b_rest) = split_chunk(b, y.is_ascii_digit());
        let order = if x.is_ascii_digit() && y.is_ascii_digit() {
            let (a_digits, b_digits) = (a_chunk.trim_start_matches('0'), b_chunk.trim_start_matches('0'));
            a_digits.len().cmp(&b_digits.len()).then_with(|| a_digits.cmp(b_digits))
        } else {
            a_chunk.cmp(b_chunk)
        };
        if order != Ordering::Equal {
            return order;
        }
        (a, b) = (a_rest, b_rest);
    }
}

/// The leading run of digits (or of non-digits) of `text`, and the rest.
fn split_chunk(text: &str, digits: bool) -> (&str, &str) {
    let end = text.find(|c: char| c.is_ascii_digit() != digits).unwrap_or(text.len());
    text.split_at(end)
}

/// The 64-bit hash Prometheus gives a label set (XXH64 of `name 0xff value 0xff ...`), which
/// decides the series `limit_ratio` keeps; the same hash keeps the same series as Prometheus.
pub fn label_set_hash(labels: &Labels) -> u64 {
    let mut bytes = Vec::new();
    for label in labels.iter() {
        bytes.extend_from_slice(label.name.as_bytes());
        bytes.push(0xff);
        bytes.extend_from_slice(label.value.as_bytes());
        bytes.push(0xff);
    }
    xxh64(&bytes)
}

/// XXH64 with seed 0.
fn xxh64(input: &[u8]) -> u64 {
    const P1: u64 = 0x9E37_79B1_85EB_CA87;
    const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
    const P3: u64 = 0x1656_67B1_9E37_79F9;
    const P4: u64 = 0x85EB_CA77_C2B2_AE63;
    const P5: u64 = 0x27D4_EB2F_1656_67C5;
    let round = |acc: u64, lane: u64| acc.wrapping_add(lane.wrapping_mul(P2)).rotate_left(31).wrapping_mul(P1);
    let merge = |acc: u64, lane: u64| (acc ^ round(0, lane)).wrapping_mul(P1).wrapping_add(P4);
    let word = |bytes: &[u8]| bytes.iter().rev().fold(0u64, |w, &b| (w << 8) | u64::from(b));
    let mut rest = input;
    let mut hash = if input.len() >= 32 {
        let mut lanes = [P1.wrapping_add(P2), P2, 0, 0u64.wrapping_sub(P1)];
        while rest.len() >= 32 {
            for (i, lane) in lanes.iter_mut().enumerate() {
                *lane = round(*lane, word(&rest[i * 8..i * 8 + 8]));
            }
            rest = &rest[32..];
        }
        let [a, b, c, d] = lanes;
        let hash = a
            .rotate_left(1)
            .wrapping_add(b.rotate_left(7))
            .wrapping_add(c.rotate_left(12))
            .wrapping_add(d.rotate_left(18));
        lanes.iter().fold(hash, |hash, &lane| merge(hash, lane))
    } else {
        P5
    };
    hash = hash.wrapping_add(input.len() as u64);
    while rest.len() >= 8 {
        hash = (hash ^ round(0, word(&rest[..8]))).rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        hash = (hash ^ word(&rest[..4]).wrapping_mul(P1)).rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = &rest[4..];
    }
    for &byte in rest {
        hash = (hash ^ u64::from(byte).wrapping_mul(P5)).rotate_left(11).wrapping_mul(P1);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(P2);
    hash ^= hash >> 29;
    hash = hash.wrapping_mul(P3);
    hash ^ (hash >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh64_matches_the_reference_vectors() {
        assert_eq!(xxh64(b""), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxh64(b"a"), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(xxh64(b"abc"), 0x44BC_2CF5_AD77_0999);
        assert_eq!(xxh64(b"Nobody inspects the spammish repetition"), 0xFBCE_A83C_8A37_8BF1);
    }

    #[test]
    fn natural_order_compares_numbers_as_numbers() {
        assert_eq!(natural_cmp("a2", "a10"), Ordering::Less);
        assert_eq!(natural_cmp("a10", "a2"), Ordering::Greater);
        assert_eq!(natural_cmp("node-9:80", "node-10:80"), Ordering::Less);
        assert_eq!(natural_cmp("b", "a10"), Ordering::Greater);
        assert_eq!(natural_cmp("a", "a1"), Ordering::Less);
        assert_eq!(natural_cmp("007", "7"), Ordering::Equal);
        assert_eq!(natural_cmp("", ""), Ordering::Equal);
    }

    #[test]
    fn expansion_follows_go() {
        let regex = Regex::new("^(?P<host>[^:]+):(\\d+)$").unwrap();
        let captures = regex.captures("db:5432").unwrap();
        assert_eq!(expand("$1", &captures), "db");
        assert_eq!(expand("${1}x", &captures), "dbx");
        assert_eq!(expand("$1x", &captures), "");
        assert_eq!(expand("$host-$2", &captures), "db-5432");
        assert_eq!(expand("$$1", &captures), "$1");
        assert_eq!(expand("a$", &captures), "a$");
        assert_eq!(expand("${", &captures), "${");
    }
}
