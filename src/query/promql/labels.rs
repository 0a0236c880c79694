//! Label functions: `label_replace`, `label_join`, and the labels `absent` reports.

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

#[cfg(test)]
mod tests {
    use super::*;

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
