//! The exact meaning of [`SpanCondition`]s: how a span (with its resource) is checked, how
//! attribute values compare, and the canonical form of scalar values that the skip data
//! (dictionaries and bloom filters) is built from, so that a value the skip data says is absent
//! can never satisfy an equality.

use std::cmp::Ordering;

use super::records::ValueRef;
use super::{AttrValue, AttributeScope, CompareOp, Resource, SERVICE_NAME, Span, SpanCondition};

/// `i64::MIN` and `2^63` as doubles: the integral doubles in `[MIN_I64, MAX_I64_EXCLUSIVE)`
/// convert to `i64` exactly.
const MIN_I64: f64 = -9_223_372_036_854_775_808.0;
const MAX_I64_EXCLUSIVE: f64 = 9_223_372_036_854_775_808.0;

/// A double that is an integer in `i64`'s range, as that integer.
pub(crate) fn integral(value: f64) -> Option<i64> {
    (value.fract() == 0.0 && (MIN_I64..MAX_I64_EXCLUSIVE).contains(&value)).then_some(value as i64)
}

/// Compares an integer with a double exactly (no rounding of large integers); `None` for NaN.
fn cmp_int_double(int: i64, double: f64) -> Option<Ordering> {
    if double.is_nan() {
        return None;
    }
    if double >= MAX_I64_EXCLUSIVE {
        return Some(Ordering::Less);
    }
    if double < MIN_I64 {
        return Some(Ordering::Greater);
    }
    let whole = double.trunc();
    match int.cmp(&(whole as i64)) {
        Ordering::Equal => 0.0f64.partial_cmp(&(double - whole)),
        other => Some(other),
    }
}

/// How two scalar values order, when they are of comparable kinds (numbers with numbers,
/// strings with strings, booleans with booleans); `None` otherwise or for NaN.
pub(crate) fn compare_scalars(left: &AttrValue, right: &AttrValue) -> Option<Ordering> {
    match (left, right) {
        (AttrValue::Int(a), AttrValue::Int(b)) => Some(a.cmp(b)),
        (AttrValue::Int(a), AttrValue::Double(b)) => cmp_int_double(*a, *b),
        (AttrValue::Double(a), AttrValue::Int(b)) => cmp_int_double(*b, *a).map(Ordering::reverse),
        (AttrValue::Double(a), AttrValue::Double(b)) => a.partial_cmp(b),
        (AttrValue::String(a), AttrValue::String(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        (AttrValue::Bool(a), AttrValue::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// Whether an attribute value satisfies `value op wanted` (see [`SpanCondition`]).
pub(crate) fn value_satisfies(value: &AttrValue, op: CompareOp, wanted: &AttrValue) -> bool {
    if let AttrValue::Array(elements) = value {
        return elements.iter().any(|element| value_satisfies(element, op, wanted));
    }
    // Kinds that do not compare never satisfy anything, `Ne` included.
    if !kinds_compare(value, wanted) {
        return false;
    }
    // `None` only for NaN, which is unequal to every number and orders with none.
    ordering_satisfies(compare_scalars(value, wanted), op, wanted)
}

/// Whether two values of kinds that compare, ordered as `ordering`, satisfy `op`.
fn ordering_satisfies(ordering: Option<Ordering>, op: CompareOp, wanted: &AttrValue) -> bool {
    match op {
        CompareOp::Eq => ordering == Some(Ordering::Equal),
        CompareOp::Ne => ordering != Some(Ordering::Equal),
        _ if matches!(wanted, AttrValue::Bool(_)) => false,
        CompareOp::Lt => ordering == Some(Ordering::Less),
        CompareOp::Le => matches!(ordering, Some(Ordering::Less | Ordering::Equal)),
        CompareOp::Gt => ordering == Some(Ordering::Greater),
        CompareOp::Ge => matches!(ordering, Some(Ordering::Greater | Ordering::Equal)),
    }
}

/// [`value_satisfies`] for a string value given as its bytes (no copy).
pub(crate) fn str_satisfies(value: &[u8], op: CompareOp, wanted: &AttrValue) -> bool {
    match wanted {
        AttrValue::String(text) => ordering_satisfies(Some(value.cmp(text.as_bytes())), op, wanted),
        _ => false,
    }
}

/// Whether two scalars are of kinds that compare (numbers, strings, booleans).
fn kinds_compare(left: &AttrValue, right: &AttrValue) -> bool {
    let kind = |value: &AttrValue| match value {
        AttrValue::Int(_) | AttrValue::Double(_) => 0,
        AttrValue::String(_) => 1,
        AttrValue::Bool(_) => 2,
        _ => 3,
    };
    kind(left) == kind(right) && kind(left) != 3
}

fn attributes_satisfy(attributes: &[(String, AttrValue)], key: &str, op: CompareOp, wanted: &AttrValue) -> bool {
    attributes.iter().any(|(name, value)| name == key && value_satisfies(value, op, wanted))
}

/// Whether a span with its resource satisfies one condition.
pub(crate) fn condition_holds(condition: &SpanCondition, resource: &Resource, span: &Span) -> bool {
    match condition {
        SpanCondition::ServiceName(name) => {
            attributes_satisfy(&resource.attributes, SERVICE_NAME, CompareOp::Eq, &AttrValue::String(name.clone()))
        }
        SpanCondition::Name(name) => span.name == *name,
        SpanCondition::Status(code) => span.status.code == *code,
        SpanCondition::Kind(kind) => span.kind == *kind,
        SpanCondition::Duration { min_ns, max_ns } => {
            let duration = span.duration_ns();
            min_ns.is_none_or(|min| duration >= min) && max_ns.is_none_or(|max| duration <= max)
        }
        SpanCondition::Attribute { scope, key, op, value } => {
            let on_span = || attributes_satisfy(&span.attributes, key, *op, value);
            let on_resource = || attributes_satisfy(&resource.attributes, key, *op, value);
            match scope {
                AttributeScope::Span => on_span(),
                AttributeScope::Resource => on_resource(),
                AttributeScope::Any => on_span() || on_resource(),
            }
        }
        SpanCondition::Exists { scope, key } => {
            let on_span = || span.attributes.iter().any(|(name, _)| name == key);
            let on_resource = || resource.attributes.iter().any(|(name, _)| name == key);
            match scope {
                AttributeScope::Span => on_span(),
                AttributeScope::Resource => on_resource(),
                AttributeScope::Any => on_span() || on_resource(),
            }
        }
    }
}

/// Whether a resource satisfies the part of a condition that looks at the resource: all of
/// `ServiceName`, the resource half of an unscoped attribute; `false` for a condition that
/// looks at the span only.
pub(crate) fn resource_side_holds(condition: &SpanCondition, resource: &Resource) -> bool {
    match condition {
        SpanCondition::ServiceName(name) => {
            attributes_satisfy(&resource.attributes, SERVICE_NAME, CompareOp::Eq, &AttrValue::String(name.clone()))
        }
        SpanCondition::Attribute { scope: AttributeScope::Resource | AttributeScope::Any, key, op, value } => {
            attributes_satisfy(&resource.attributes, key, *op, value)
        }
        SpanCondition::Exists { scope: AttributeScope::Resource | AttributeScope::Any, key } => {
            resource.attributes.iter().any(|(name, _)| name == key)
        }
        _ => false,
    }
}

/// Whether a span satisfies every condition.
pub(crate) fn span_matches(conditions: &[SpanCondition], resource: &Resource, span: &Span) -> bool {
    conditions.iter().all(|condition| condition_holds(condition, resource, span))
}

/// The canonical bytes of a scalar value, which skip data hashes and stores: an integral
/// double takes the form of the integer it equals, so `Eq` (numeric across types) finds it.
/// `None` for values that are not scalars.
pub(crate) fn canonical_bytes(value: &AttrValue, out: &mut Vec<u8>) -> bool {
    out.clear();
    match value {
        AttrValue::String(text) => {
            out.push(b's');
            out.extend_from_slice(text.as_bytes());
        }
        AttrValue::Int(number) => {
            out.push(b'n');
            out.extend_from_slice(&number.to_le_bytes());
        }
        AttrValue::Double(number) => match integral(*number) {
            Some(whole) => {
                out.push(b'n');
                out.extend_from_slice(&whole.to_le_bytes());
            }
            None => {
                out.push(b'f');
                out.extend_from_slice(&number.to_bits().to_le_bytes());
            }
        },
        AttrValue::Bool(flag) => {
            out.push(b'b');
            out.push(u8::from(*flag));
        }
        _ => return false,
    }
    true
}

/// [`canonical_bytes`] of a borrowed value.
pub(crate) fn canonical_ref(value: &ValueRef<'_>, out: &mut Vec<u8>) -> bool {
    match value {
        ValueRef::Str(text) => {
            out.clear();
            out.push(b's');
            out.extend_from_slice(text.as_bytes());
            true
        }
        ValueRef::Int(number) => canonical_bytes(&AttrValue::Int(*number), out),
        ValueRef::Double(number) => canonical_bytes(&AttrValue::Double(*number), out),
        ValueRef::Bool(flag) => canonical_bytes(&AttrValue::Bool(*flag), out),
        ValueRef::Other(other) => canonical_bytes(other, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> AttrValue {
        AttrValue::String(text.into())
    }

    #[test]
    fn comparisons_follow_the_documented_rules() {
        use AttrValue::{Bool, Double, Int};
        use CompareOp::*;
        let cases: &[(AttrValue, CompareOp, AttrValue, bool)] = &[
            (Int(200), Eq, Int(200), true),
            (Int(200), Eq, Double(200.0), true),
            (Double(200.0), Eq, Int(200), true),
            (Double(200.5), Eq, Int(200), false),
            (Double(200.5), Gt, Int(200), true),
            (Int(200), Lt, Double(200.5), true),
            (Int(i64::MAX), Lt, Double(9.3e18), true),
            (Int(i64::MAX), Eq, Double(9.223_372_036_854_776e18), false),
            (Double(f64::NAN), Eq, Double(f64::NAN), false),
            (Double(f64::NAN), Ne, Int(1), true),
            (Double(f64::NAN), Gt, Int(1), false),
            (Int(5), Ne, Int(6), true),
            (Int(5), Ne, Int(5), false),
            (Int(5), Ne, s("5"), false),
            (Int(5), Eq, s("5"), false),
            (s("abc"), Lt, s("abd"), true),
            (s("abc"), Ge, s("abc"), true),
            (Bool(true), Eq, Bool(true), true),
            (Bool(true), Ne, Bool(false), true),
            (Bool(true), Gt, Bool(false), false),
            (AttrValue::Array(vec![Int(1), s("x")]), Eq, s("x"), true),
            (AttrValue::Array(vec![Int(1), s("x")]), Gt, Int(0), true),
            (AttrValue::Bytes(vec![1]), Eq, AttrValue::Bytes(vec![1]), false),
        ];
        for (value, op, wanted, expected) in cases {
            assert_eq!(value_satisfies(value, *op, wanted), *expected, "{value:?} {op:?} {wanted:?}");
            // Strings compared where they lie in a page answer the same.
            if let AttrValue::String(text) = value {
                assert_eq!(str_satisfies(text.as_bytes(), *op, wanted), *expected, "{value:?} {op:?} {wanted:?}");
            }
        }
        for op in [Eq, Ne, Lt, Le, Gt, Ge] {
            for (left, right) in [("abc", "abd"), ("b", "b"), ("", "a"), ("ü", "u")] {
                let wanted = s(right);
                assert_eq!(str_satisfies(left.as_bytes(), op, &wanted), value_satisfies(&s(left), op, &wanted));
                assert!(!str_satisfies(left.as_bytes(), op, &Int(1)));
            }
        }
    }

    #[test]
    fn equal_values_have_equal_canonical_bytes() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let values = [
            AttrValue::Int(0),
            AttrValue::Double(0.0),
            AttrValue::Double(-0.0),
            AttrValue::Int(-3),
            AttrValue::Double(-3.0),
            AttrValue::Double(2.5),
            AttrValue::Double(1e300),
            AttrValue::Int(i64::MIN),
            AttrValue::Double(-9_223_372_036_854_775_808.0),
            AttrValue::String("x".into()),
            AttrValue::Bool(false),
        ];
        for left in &values {
            for right in &values {
                assert!(canonical_bytes(left, &mut a) && canonical_bytes(right, &mut b));
                if value_satisfies(left, CompareOp::Eq, right) {
                    assert_eq!(a, b, "{left:?} = {right:?}");
                }
            }
        }
    }
}
