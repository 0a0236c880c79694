//! Postings: sorted lists of series IDs per label pair, and the matcher resolution that both the
//! head and blocks use to turn a list of matchers into the exact set of matching series.

use crate::labels::Matcher;

/// What an index must answer for matchers to be resolved against it.
pub(crate) trait PostingsIndex {
    /// Series IDs with label `name="value"`, sorted ascending.
    fn postings(&self, name: &str, value: &str) -> Vec<u64>;
    /// Every value label `name` has.
    fn values(&self, name: &str) -> Vec<String>;
    /// Every series ID, sorted ascending.
    fn all_postings(&self) -> Vec<u64>;
}

/// The IDs of the series matching every matcher, sorted. With Prometheus semantics: a matcher
/// that matches "" also selects series without the label.
pub(crate) fn resolve(index: &impl PostingsIndex, matchers: &[Matcher]) -> Vec<u64> {
    let mut result: Option<Vec<u64>> = None;
    for matcher in matchers.iter().filter(|m| !m.matches_empty()) {
        let values: Vec<String> = match matcher.exact_values() {
            Some(values) => values.into_iter().map(str::to_string).collect(),
            None => index.values(matcher.name()).into_iter().filter(|v| matcher.matches(v)).collect(),
        };
        let mut union = Vec::new();
        for value in values {
            union = merge(&union, &index.postings(matcher.name(), &value));
        }
        result = Some(match result {
            Some(current) => intersect(&current, &union),
            None => union,
        });
        if result.as_ref().is_some_and(Vec::is_empty) {
            return Vec::new();
        }
    }
    let mut result = result.unwrap_or_else(|| index.all_postings());
    for matcher in matchers.iter().filter(|m| m.matches_empty() && !m.matches_everything()) {
        // The series to drop are those whose value of the label does not match.
        for value in index.values(matcher.name()) {
            if !matcher.matches(&value) {
                result = subtract(&result, &index.postings(matcher.name(), &value));
            }
        }
    }
    result
}

pub(crate) fn merge(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

pub(crate) fn intersect(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

pub(crate) fn subtract(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len());
    let mut j = 0;
    for &value in a {
        while j < b.len() && b[j] < value {
            j += 1;
        }
        if j >= b.len() || b[j] != value {
            out.push(value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::MatchOp;
    use std::collections::BTreeMap;

    /// Series 0..6 with labels: job in {a, b}, env in {prod, ""(absent)}.
    struct Fixture(BTreeMap<(String, String), Vec<u64>>);

    impl PostingsIndex for Fixture {
        fn postings(&self, name: &str, value: &str) -> Vec<u64> {
            self.0.get(&(name.to_string(), value.to_string())).cloned().unwrap_or_default()
        }
        fn values(&self, name: &str) -> Vec<String> {
            self.0.keys().filter(|(n, _)| n == name).map(|(_, v)| v.clone()).collect()
        }
        fn all_postings(&self) -> Vec<u64> {
            (0..6).collect()
        }
    }

    fn fixture() -> Fixture {
        let mut map = BTreeMap::new();
        map.insert(("job".into(), "a".into()), vec![0, 1, 2]);
        map.insert(("job".into(), "b".into()), vec![3, 4, 5]);
        map.insert(("env".into(), "prod".into()), vec![0, 3]);
        map.insert(("env".into(), "dev".into()), vec![1, 4]);
        Fixture(map)
    }

    fn check(matchers: &[(MatchOp, &str, &str)], expected: &[u64]) {
        let matchers: Vec<Matcher> = matchers.iter().map(|(op, n, v)| Matcher::new(*op, *n, *v).unwrap()).collect();
        assert_eq!(resolve(&fixture(), &matchers), expected, "{matchers:?}");
    }

    #[test]
    fn matchers_resolve_like_prometheus() {
        use MatchOp::*;
        check(&[(Equal, "job", "a")], &[0, 1, 2]);
        check(&[(Equal, "job", "a"), (Equal, "env", "prod")], &[0]);
        check(&[(Equal, "job", "a"), (NotEqual, "env", "prod")], &[1, 2]);
        check(&[(Equal, "job", "a"), (Equal, "env", "")], &[2]);
        check(&[(Equal, "job", "a"), (RegexMatch, "env", ".+")], &[0, 1]);
        check(&[(Equal, "job", "a"), (RegexMatch, "env", "prod|")], &[0, 2]);
        check(&[(RegexMatch, "job", "a|b"), (RegexNoMatch, "env", "d.*")], &[0, 2, 3, 5]);
        check(&[(RegexMatch, "job", ".*")], &[0, 1, 2, 3, 4, 5]);
        check(&[(Equal, "job", "c")], &[]);
        check(&[(NotEqual, "job", "a")], &[3, 4, 5]);
    }

    #[test]
    fn set_operations() {
        assert_eq!(merge(&[1, 3, 5], &[2, 3, 6]), [1, 2, 3, 5, 6]);
        assert_eq!(intersect(&[1, 3, 5], &[2, 3, 5]), [3, 5]);
        assert_eq!(subtract(&[1, 3, 5], &[3, 4]), [1, 5]);
    }
}
