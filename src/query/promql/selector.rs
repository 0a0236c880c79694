//! Vector selectors as storage matchers.

use promql_parser::parser::VectorSelector;
use tripod_storage::labels::{MatchOp, Matcher};

/// The matcher sets of a vector selector: one set, or one per `or` alternative. The error is
/// the reason a matcher is invalid (an unparsable regex).
pub fn selector_matchers(selector: &VectorSelector) -> Result<Vec<Vec<Matcher>>, String> {
    let mut base: Vec<Matcher> = Vec::new();
    if let Some(name) = &selector.name {
        base.push(Matcher::equal("__name__", name.clone()));
    }
    let alternatives: Vec<&[promql_parser::label::Matcher]> = if selector.matchers.or_matchers.is_empty() {
        vec![&selector.matchers.matchers]
    } else {
        selector.matchers.or_matchers.iter().map(Vec::as_slice).collect()
    };
    let mut sets = Vec::with_capacity(alternatives.len());
    for alternative in alternatives {
        let mut set = base.clone();
        for matcher in alternative {
            set.push(convert_matcher(matcher)?);
        }
        sets.push(set);
    }
    Ok(sets)
}

fn convert_matcher(matcher: &promql_parser::label::Matcher) -> Result<Matcher, String> {
    use promql_parser::label::MatchOp as Op;
    let op = match matcher.op {
        Op::Equal => MatchOp::Equal,
        Op::NotEqual => MatchOp::NotEqual,
        Op::Re(_) => MatchOp::RegexMatch,
        Op::NotRe(_) => MatchOp::RegexNoMatch,
    };
    Matcher::new(op, matcher.name.clone(), matcher.value.clone()).map_err(|e| e.to_string())
}
