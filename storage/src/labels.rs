//! Label sets and label matchers, shared by the metrics and logs stores.
//!
//! [`Labels`] is sorted by name with unique names and no empty values, by construction: a label
//! with an empty value is the same as no label, as in Prometheus. [`Matcher`] implements the four
//! matcher types with Prometheus's semantics: regexes are fully anchored and `.` matches newlines,
//! and a matcher that matches the empty string also selects series that lack the label.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// One label: a name and a non-empty value. Strings are shared, so cloning is cheap.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    pub name: Arc<str>,
    pub value: Arc<str>,
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}", self.name, self.value)
    }
}

/// A label set, sorted by name, names unique, values non-empty.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Vec<Label>);

/// Why a label set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelsError {
    #[error("duplicate label name {0:?}")]
    DuplicateName(String),
    #[error("empty label name")]
    EmptyName,
}

impl Labels {
    /// An empty label set.
    pub fn empty() -> Labels {
        Labels(Vec::new())
    }

    /// Builds a label set from pairs in any order. Pairs with an empty value are dropped; an
    /// empty or repeated name is an error.
    pub fn from_pairs<N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> Result<Labels, LabelsError>
    where
        N: AsRef<str>,
        V: AsRef<str>,
    {
        let mut labels = Vec::new();
        for (name, value) in pairs {
            let (name, value) = (name.as_ref(), value.as_ref());
            if name.is_empty() {
                return Err(LabelsError::EmptyName);
            }
            if value.is_empty() {
                continue;
            }
            labels.push(Label { name: Arc::from(name), value: Arc::from(value) });
        }
        Labels::from_labels(labels)
    }

    /// Builds a label set from already shared strings, in any order.
    pub fn from_labels(mut labels: Vec<Label>) -> Result<Labels, LabelsError> {
        labels.retain(|label| !label.value.is_empty());
        if labels.iter().any(|label| label.name.is_empty()) {
            return Err(LabelsError::EmptyName);
        }
        labels.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        for pair in labels.windows(2) {
            if pair[0].name == pair[1].name {
                return Err(LabelsError::DuplicateName(pair[0].name.to_string()));
            }
        }
        Ok(Labels(labels))
    }

    /// Wraps labels the caller guarantees are sorted by name, unique and non-empty (checked in
    /// debug builds). For decoders of formats that store sorted label sets.
    pub fn from_sorted_unchecked(labels: Vec<Label>) -> Labels {
        debug_assert!(labels.windows(2).all(|pair| pair[0].name < pair[1].name));
        debug_assert!(labels.iter().all(|label| !label.value.is_empty()));
        Labels(labels)
    }

    /// The value of label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.binary_search_by(|label| label.name.as_ref().cmp(name)).ok().map(|index| self.0[index].value.as_ref())
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    /// A 64-bit hash of the label set, the same in every process (it does not depend on a
    /// random seed): FNV-1a over names and values with separators.
    pub fn stable_hash(&self) -> u64 {
        let mut hasher = StableHasher::default();
        for label in &self.0 {
            hasher.write(label.name.as_bytes());
            hasher.write_u8(0xff);
            hasher.write(label.value.as_bytes());
            hasher.write_u8(0xff);
        }
        hasher.finish()
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `{a="1", b="2"}`, as Prometheus prints label sets.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, label) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={:?}", label.name, label.value)?;
        }
        f.write_str("}")
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// FNV-1a, 64 bit. Deterministic across processes and platforms.
#[derive(Clone, Copy)]
pub struct StableHasher(u64);

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// The four matcher types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    RegexMatch,
    /// `!~`
    RegexNoMatch,
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::RegexMatch => "=~",
            MatchOp::RegexNoMatch => "!~",
        })
    }
}

/// A label matcher such as `job=~"api|web"`.
#[derive(Clone)]
pub struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
    /// The anchored regex for `=~` and `!~`.
    regex: Option<regex::Regex>,
    /// For regexes that are an alternation of literals (`a|b|c`, the common Grafana variable
    /// form): the literals, so that postings can be looked up directly.
    literals: Option<Vec<String>>,
}

/// Why a matcher could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid regular expression {pattern:?} in matcher for label {name:?}: {reason}")]
pub struct MatcherError {
    pub name: String,
    pub pattern: String,
    pub reason: String,
}

impl Matcher {
    pub fn new(op: MatchOp, name: impl Into<String>, value: impl Into<String>) -> Result<Matcher, MatcherError> {
        let (name, value) = (name.into(), value.into());
        let (regex, literals) = match op {
            MatchOp::Equal | MatchOp::NotEqual => (None, None),
            MatchOp::RegexMatch | MatchOp::RegexNoMatch => {
                let anchored = format!("^(?s:{value})$");
                let regex = regex::Regex::new(&anchored).map_err(|error| MatcherError {
                    name: name.clone(),
                    pattern: value.clone(),
                    reason: error.to_string(),
                })?;
                (Some(regex), literal_alternatives(&value))
            }
        };
        Ok(Matcher { name, op, value, regex, literals })
    }

    /// `name="value"`.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Matcher {
        Matcher { name: name.into(), op: MatchOp::Equal, value: value.into(), regex: None, literals: None }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn op(&self) -> MatchOp {
        self.op
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether a label value matches; an absent label has the value `""`.
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::RegexMatch => self.regex_matches(value),
            MatchOp::RegexNoMatch => !self.regex_matches(value),
        }
    }

    fn regex_matches(&self, value: &str) -> bool {
        match &self.literals {
            Some(literals) => literals.iter().any(|literal| literal == value),
            None => self.regex.as_ref().is_some_and(|regex| regex.is_match(value)),
        }
    }

    /// Whether the matcher selects series that do not have the label at all.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// For `=` and literal-alternation `=~` matchers, the exact values that match; the store can
    /// then look up postings directly instead of testing every value.
    pub fn exact_values(&self) -> Option<Vec<&str>> {
        match self.op {
            MatchOp::Equal => Some(vec![self.value.as_str()]),
            // A literal list that includes "" also selects series without the label: no shortcut.
            MatchOp::RegexMatch => self
                .literals
                .as_ref()
                .filter(|literals| !literals.iter().any(String::is_empty))
                .map(|literals| literals.iter().map(String::as_str).collect()),
            _ => None,
        }
    }

    /// Whether all series match regardless of the label (`=~".*"`).
    pub fn matches_everything(&self) -> bool {
        self.op == MatchOp::RegexMatch && (self.value == ".*" || self.value == "(?s:.*)")
    }
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op, self.value)
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

/// `a|b|c` with no regex metacharacters: the list of literals. Anything else: `None`.
fn literal_alternatives(pattern: &str) -> Option<Vec<String>> {
    const META: &[char] = &['\\', '.', '+', '*', '?', '(', ')', '[', ']', '{', '}', '^', '$'];
    if pattern.is_empty() || pattern.contains(META) {
        return None;
    }
    let mut literals: Vec<String> = pattern.split('|').map(str::to_string).collect();
    literals.sort();
    literals.dedup();
    Some(literals)
}

/// Whether a label set satisfies every matcher.
pub fn matches_all(labels: &Labels, matchers: &[Matcher]) -> bool {
    matchers.iter().all(|matcher| matcher.matches(labels.get(&matcher.name).unwrap_or("")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied()).unwrap()
    }

    #[test]
    fn labels_are_sorted_unique_and_drop_empty_values() {
        let set = labels(&[("job", "api"), ("__name__", "up"), ("zone", "")]);
        let names: Vec<&str> = set.iter().map(|l| l.name.as_ref()).collect();
        assert_eq!(names, ["__name__", "job"]);
        assert_eq!(set.get("job"), Some("api"));
        assert_eq!(set.get("zone"), None);
        assert_eq!(set.to_string(), r#"{__name__="up", job="api"}"#);
        assert_eq!(Labels::from_pairs([("a", "1"), ("a", "2")]), Err(LabelsError::DuplicateName("a".into())));
        assert_eq!(Labels::from_pairs([("", "1")]), Err(LabelsError::EmptyName));
        // Order of construction does not matter for equality or the stable hash.
        let other = labels(&[("job", "api"), ("__name__", "up")]);
        assert_eq!(set, other);
        assert_eq!(set.stable_hash(), other.stable_hash());
        assert_ne!(set.stable_hash(), labels(&[("job", "ap"), ("__name__", "iup")]).stable_hash());
    }

    fn matcher(op: MatchOp, value: &str) -> Matcher {
        Matcher::new(op, "l", value).unwrap()
    }

    #[test]
    fn matchers_follow_prometheus_semantics() {
        // (op, pattern, value, expected)
        let cases = [
            (MatchOp::Equal, "a", "a", true),
            (MatchOp::Equal, "a", "", false),
            (MatchOp::Equal, "", "", true),
            (MatchOp::NotEqual, "a", "", true),
            (MatchOp::NotEqual, "a", "a", false),
            // Regexes are fully anchored.
            (MatchOp::RegexMatch, "a.*", "ba", false),
            (MatchOp::RegexMatch, "a.*", "ab", true),
            (MatchOp::RegexMatch, "b", "abc", false),
            (MatchOp::RegexMatch, "a|b", "a|b", false),
            (MatchOp::RegexMatch, "a|b", "b", true),
            (MatchOp::RegexMatch, ".*", "", true),
            (MatchOp::RegexMatch, ".+", "", false),
            // `.` matches a newline.
            (MatchOp::RegexMatch, "a.b", "a\nb", true),
            (MatchOp::RegexNoMatch, "a.*", "ab", false),
            (MatchOp::RegexNoMatch, "a.*", "", true),
            (MatchOp::RegexMatch, "api|", "", true),
        ];
        for (op, pattern, value, expected) in cases {
            assert_eq!(matcher(op, pattern).matches(value), expected, "{op}{pattern:?} against {value:?}");
        }
    }

    #[test]
    fn empty_matching_matchers_select_series_without_the_label() {
        let without = labels(&[("job", "api")]);
        let with = labels(&[("job", "api"), ("l", "x")]);
        let cases = [
            (Matcher::new(MatchOp::Equal, "l", "").unwrap(), false, true),
            (Matcher::new(MatchOp::NotEqual, "l", "x").unwrap(), false, true),
            (Matcher::new(MatchOp::RegexMatch, "l", "x|").unwrap(), true, true),
            (Matcher::new(MatchOp::RegexMatch, "l", ".+").unwrap(), true, false),
        ];
        for (m, on_with, on_without) in cases {
            assert_eq!(matches_all(&with, std::slice::from_ref(&m)), on_with, "{m} on {with}");
            assert_eq!(matches_all(&without, std::slice::from_ref(&m)), on_without, "{m} on {without}");
        }
    }

    #[test]
    fn literal_alternations_are_recognised() {
        assert_eq!(matcher(MatchOp::RegexMatch, "b|a|b").exact_values(), Some(vec!["a", "b"]));
        assert_eq!(matcher(MatchOp::RegexMatch, "a.*").exact_values(), None);
        assert_eq!(matcher(MatchOp::Equal, "x").exact_values(), Some(vec!["x"]));
        let error = Matcher::new(MatchOp::RegexMatch, "job", "(").unwrap_err();
        assert!(error.to_string().starts_with("invalid regular expression \"(\" in matcher for label \"job\""));
    }
}
