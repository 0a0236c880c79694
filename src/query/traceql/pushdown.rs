//! What a query lets the store check: the [`SpanCondition`]s that one span of every matching
//! trace must satisfy. The store uses them to skip blocks and pages and to pick candidate
//! traces; the engine re-checks every candidate exactly, so a condition may be weaker than the
//! query (`!=` becomes "present"), never stronger.
//!
//! For `A && B` and the structural operators both sides must match, so the side with more
//! conditions is pushed; for `||` only the conditions both sides share; for the negated
//! structural operators only the right side (the left may match nothing).

use tripod_storage::traces::{
    AttrValue, AttributeScope, CompareOp as StoreOp, SERVICE_NAME, SpanCondition, SpanFilter,
};

use super::ast::{AttrScope, CompareOp, Field, FieldExpr, Filter, Intrinsic, Query, SpansetExpr, SpansetOp, Static};

/// The conditions to push down for a query.
pub(crate) fn span_filter(query: &Query) -> SpanFilter {
    SpanFilter { conditions: required(&query.root) }
}

/// Conditions on one span that every trace matching `expr` has.
fn required(expr: &SpansetExpr) -> Vec<SpanCondition> {
    match expr {
        SpansetExpr::Filter(filter) => filter_conditions(filter),
        SpansetExpr::Pipeline { source, .. } => required(source),
        SpansetExpr::Binary { op: SpansetOp::Or, left, right } => shared(required(left), required(right)),
        SpansetExpr::Binary {
            op:
                SpansetOp::NotChild
                | SpansetOp::NotDescendant
                | SpansetOp::NotParent
                | SpansetOp::NotAncestor
                | SpansetOp::NotSibling,
            right,
            ..
        } => required(right),
        SpansetExpr::Binary { left, right, .. } => {
            let left = required(left);
            let right = required(right);
            if right.len() > left.len() { right } else { left }
        }
    }
}

/// The conditions found in both lists.
fn shared(left: Vec<SpanCondition>, right: Vec<SpanCondition>) -> Vec<SpanCondition> {
    left.into_iter().filter(|condition| right.contains(condition)).collect()
}

pub(crate) fn filter_conditions(filter: &Filter) -> Vec<SpanCondition> {
    filter.expr.as_ref().map(conjuncts).unwrap_or_default()
}

/// Conditions implied by a boolean expression on one span.
fn conjuncts(expr: &FieldExpr) -> Vec<SpanCondition> {
    match expr {
        FieldExpr::And(left, right) => {
            let mut conditions = conjuncts(left);
            for condition in conjuncts(right) {
                if !conditions.contains(&condition) {
                    conditions.push(condition);
                }
            }
            conditions
        }
        FieldExpr::Or(left, right) => shared(conjuncts(left), conjuncts(right)),
        FieldExpr::Compare { op, left, right } => match (&**left, &**right) {
            (FieldExpr::Field(field), FieldExpr::Literal(value)) => comparison(field, *op, value),
            (FieldExpr::Literal(value), FieldExpr::Field(field)) => comparison(field, op.flipped(), value),
            _ => Vec::new(),
        },
        FieldExpr::Regex { negated, left, pattern, .. } => match &**left {
            FieldExpr::Field(Field::Attribute { scope, name }) => {
                let Some(scope) = store_scope(*scope) else { return Vec::new() };
                if !negated && regex::escape(pattern) == *pattern {
                    // A regex without special characters is an equality.
                    vec![attribute(scope, name, StoreOp::Eq, AttrValue::String(pattern.clone()))]
                } else {
                    vec![SpanCondition::Exists { scope, key: name.clone() }]
                }
            }
            FieldExpr::Field(Field::Intrinsic(Intrinsic::Name)) if !negated && regex::escape(pattern) == *pattern => {
                vec![SpanCondition::Name(pattern.clone())]
            }
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn store_scope(scope: AttrScope) -> Option<AttributeScope> {
    match scope {
        AttrScope::Unscoped => Some(AttributeScope::Any),
        AttrScope::Span => Some(AttributeScope::Span),
        AttrScope::Resource => Some(AttributeScope::Resource),
        AttrScope::Event | AttrScope::Link | AttrScope::Instrumentation => None,
    }
}

fn attribute(scope: AttributeScope, key: &str, op: StoreOp, value: AttrValue) -> SpanCondition {
    if scope == AttributeScope::Resource
        && key == SERVICE_NAME
        && op == StoreOp::Eq
        && let AttrValue::String(name) = &value
    {
        return SpanCondition::ServiceName(name.clone());
    }
    SpanCondition::Attribute { scope, key: key.to_string(), op, value }
}

/// `field op value`, as conditions.
fn comparison(field: &Field, op: CompareOp, value: &Static) -> Vec<SpanCondition> {
    match field {
        Field::Attribute { scope, name } => {
            let Some(scope) = store_scope(*scope) else { return Vec::new() };
            let exists = || vec![SpanCondition::Exists { scope, key: name.clone() }];
            let literal = match value {
                Static::Nil => return if op == CompareOp::Ne { exists() } else { Vec::new() },
                Static::String(text) => AttrValue::String(text.clone()),
                Static::Int(n) | Static::Duration(n) => AttrValue::Int(*n),
                Static::Float(n) => AttrValue::Double(*n),
                Static::Bool(b) => AttrValue::Bool(*b),
                // An attribute never equals a status or a kind.
                Static::Status(_) | Static::Kind(_) => return Vec::new(),
            };
            let op = match op {
                CompareOp::Eq => StoreOp::Eq,
                // `!=` needs the attribute present; "not equal" itself is not pushed (an empty
                // array is unequal to everything, the store's `Ne` wants an unequal element).
                CompareOp::Ne => return exists(),
                CompareOp::Lt => StoreOp::Lt,
                CompareOp::Le => StoreOp::Le,
                CompareOp::Gt => StoreOp::Gt,
                CompareOp::Ge => StoreOp::Ge,
            };
            vec![attribute(scope, name, op, literal)]
        }
        Field::Intrinsic(intrinsic) => match (intrinsic, op, value) {
            (Intrinsic::Name, CompareOp::Eq, Static::String(name)) => vec![SpanCondition::Name(name.clone())],
            (Intrinsic::Status, CompareOp::Eq, Static::Status(code)) => vec![SpanCondition::Status(*code)],
            (Intrinsic::Kind, CompareOp::Eq, Static::Kind(kind)) => vec![SpanCondition::Kind(*kind)],
            (Intrinsic::Duration, op, value) => duration_bounds(op, value).into_iter().collect(),
            _ => Vec::new(),
        },
    }
}

/// `duration op value` as inclusive bounds in nanoseconds; `None` when not expressible.
fn duration_bounds(op: CompareOp, value: &Static) -> Option<SpanCondition> {
    let (min_ns, max_ns) = match value {
        Static::Int(n) | Static::Duration(n) => {
            let n = *n;
            match op {
                CompareOp::Eq => (Some(n), Some(n)),
                CompareOp::Gt => (Some(n.checked_add(1)?), None),
                CompareOp::Ge => (Some(n), None),
                CompareOp::Lt => (None, Some(n.checked_sub(1)?)),
                CompareOp::Le => (None, Some(n)),
                CompareOp::Ne => return None,
            }
        }
        Static::Float(f) => {
            let f = *f;
            if !f.is_finite() || f.abs() >= 9.0e18 {
                return None;
            }
            match op {
                CompareOp::Eq if f.fract() == 0.0 => (Some(f as i64), Some(f as i64)),
                CompareOp::Gt => (Some(f.floor() as i64 + 1), None),
                CompareOp::Ge => (Some(f.ceil() as i64), None),
                CompareOp::Lt => (None, Some(f.ceil() as i64 - 1)),
                CompareOp::Le => (None, Some(f.floor() as i64)),
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(SpanCondition::Duration { min_ns, max_ns })
}
