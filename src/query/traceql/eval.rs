//! Evaluation of a query over one whole trace: field expressions per span, spanset filters
//! over the spans that overlap the search range, spanset and structural operators over the
//! trace's parent links, and the pipeline stages.
//!
//! Type rules (Tempo's): numbers (integers, floats, durations) compare with numbers, strings
//! with strings (by bytes), booleans, statuses and kinds only by `=` and `!=`; anything else,
//! and a missing attribute, makes a comparison false, `!=` included. `x = nil` holds when `x` is
//! missing, `x != nil` when it is present. An array attribute, and a field of events or links,
//! holds several values: `=`, `<`, `=~` and the like hold when one of them does, `!=` and `!~`
//! when none of them is equal (matches) and one is comparable.

use crate::encoding::hex;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;

use tripod_storage::traces::{
    AttrValue, NsRange, ResourceSpans, ScopeSpans, SearchTrace, Span, SpanId, SpanKind, StatusCode,
};

use super::ast::{
    Aggregate, ArithmeticOp, AttrScope, CompareOp, Field, FieldExpr, Filter, Intrinsic, ScalarExpr, SpansetExpr,
    SpansetOp, Stage, Static,
};
use super::lexer::format_duration_ns;

/// A value of a field for one span.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Duration(i64),
    Str(Cow<'a, str>),
    Status(StatusCode),
    Kind(SpanKind),
    /// An array attribute's elements, or one value per event or link.
    List(Vec<Value<'a>>),
    /// Bytes and key/value lists: present, comparable with nothing.
    Opaque,
}

impl<'a> Value<'a> {
    fn from_attr(value: &'a AttrValue) -> Value<'a> {
        match value {
            AttrValue::String(text) => Value::Str(Cow::Borrowed(text)),
            AttrValue::Int(n) => Value::Int(*n),
            AttrValue::Double(n) => Value::Float(*n),
            AttrValue::Bool(b) => Value::Bool(*b),
            AttrValue::Array(elements) => Value::List(elements.iter().map(Value::from_attr).collect()),
            AttrValue::Bytes(_) | AttrValue::KvList(_) => Value::Opaque,
        }
    }

    fn from_static(value: &Static) -> Value<'static> {
        match value {
            Static::Nil => Value::Nil,
            Static::Bool(b) => Value::Bool(*b),
            Static::Int(n) => Value::Int(*n),
            Static::Float(n) => Value::Float(*n),
            Static::Duration(n) => Value::Duration(*n),
            Static::String(text) => Value::Str(Cow::Owned(text.clone())),
            Static::Status(code) => Value::Status(*code),
            Static::Kind(kind) => Value::Kind(*kind),
        }
    }

    /// The value as an attribute value in an answer, as Tempo renders it: statuses, kinds and
    /// durations as strings. `None` for nil.
    pub(crate) fn to_attr(&self) -> Option<AttrValue> {
        Some(match self {
            Value::Nil | Value::Opaque => return None,
            Value::Bool(b) => AttrValue::Bool(*b),
            Value::Int(n) => AttrValue::Int(*n),
            Value::Float(n) => AttrValue::Double(*n),
            Value::Duration(ns) => AttrValue::String(format_duration_ns(*ns)),
            Value::Str(text) => AttrValue::String(text.to_string()),
            Value::Status(code) => AttrValue::String(code.keyword().to_string()),
            Value::Kind(kind) => AttrValue::String(kind.keyword().to_string()),
            Value::List(elements) => AttrValue::Array(elements.iter().filter_map(Value::to_attr).collect()),
        })
    }

    fn number(&self) -> Option<Number> {
        match self {
            Value::Int(n) => Some(Number::Int(*n)),
            Value::Float(n) => Some(Number::Float(*n)),
            Value::Duration(n) => Some(Number::Duration(*n)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Number {
    Int(i64),
    Float(f64),
    Duration(i64),
}

impl Number {
    fn as_f64(self) -> f64 {
        match self {
            Number::Int(n) | Number::Duration(n) => n as f64,
            Number::Float(n) => n,
        }
    }

    fn value(self) -> Value<'static> {
        match self {
            Number::Int(n) => Value::Int(n),
            Number::Float(n) => Value::Float(n),
            Number::Duration(n) => Value::Duration(n),
        }
    }
}

/// `i64::MIN` and `2^63` as doubles: the integral doubles in between convert exactly.
const MIN_I64: f64 = -9_223_372_036_854_775_808.0;
const MAX_I64_EXCLUSIVE: f64 = 9_223_372_036_854_775_808.0;

/// Compares an integer with a double exactly; `None` for NaN.
fn cmp_int_float(int: i64, float: f64) -> Option<Ordering> {
    if float.is_nan() {
        return None;
    }
    if float >= MAX_I64_EXCLUSIVE {
        return Some(Ordering::Less);
    }
    if float < MIN_I64 {
        return Some(Ordering::Greater);
    }
    let whole = float.trunc();
    match int.cmp(&(whole as i64)) {
        Ordering::Equal => 0.0f64.partial_cmp(&(float - whole)),
        other => Some(other),
    }
}

fn cmp_numbers(a: Number, b: Number) -> Option<Ordering> {
    match (a, b) {
        (Number::Int(x) | Number::Duration(x), Number::Int(y) | Number::Duration(y)) => Some(x.cmp(&y)),
        (Number::Int(x) | Number::Duration(x), Number::Float(y)) => cmp_int_float(x, y),
        (Number::Float(x), Number::Int(y) | Number::Duration(y)) => cmp_int_float(y, x).map(Ordering::reverse),
        (Number::Float(x), Number::Float(y)) => x.partial_cmp(&y),
    }
}

/// How two single values order, when they are of kinds that compare; `None` otherwise (and for
/// NaN). Booleans, statuses and kinds only say equal or not (`Less` stands for "different").
fn cmp_scalars(a: &Value<'_>, b: &Value<'_>) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (a.number(), b.number()) {
        return cmp_numbers(x, y);
    }
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (Value::Bool(x), Value::Bool(y)) => Some(if x == y { Ordering::Equal } else { Ordering::Less }),
        (Value::Status(x), Value::Status(y)) => Some(if x == y { Ordering::Equal } else { Ordering::Less }),
        (Value::Kind(x), Value::Kind(y)) => Some(if x == y { Ordering::Equal } else { Ordering::Less }),
        _ => None,
    }
}

fn orders(value: &Value<'_>) -> bool {
    matches!(value, Value::Int(_) | Value::Float(_) | Value::Duration(_) | Value::Str(_))
}

/// `a op b` on single values (not lists).
fn compare_scalars(a: &Value<'_>, op: CompareOp, b: &Value<'_>) -> bool {
    let Some(ordering) = cmp_scalars(a, b) else {
        // Kinds that do not compare, and NaN: `!=` holds only between comparable kinds.
        return op == CompareOp::Ne && a.number().is_some() && b.number().is_some();
    };
    match op {
        CompareOp::Eq => ordering == Ordering::Equal,
        CompareOp::Ne => ordering != Ordering::Equal,
        _ if !(orders(a) && orders(b)) => false,
        CompareOp::Lt => ordering == Ordering::Less,
        CompareOp::Le => ordering != Ordering::Greater,
        CompareOp::Gt => ordering == Ordering::Greater,
        CompareOp::Ge => ordering != Ordering::Less,
    }
}

/// `a op b` with the rules for missing values and lists (see the module comment).
pub(crate) fn compare(a: &Value<'_>, op: CompareOp, b: &Value<'_>) -> bool {
    if matches!(a, Value::Nil) || matches!(b, Value::Nil) {
        return false;
    }
    let a_elements: &[Value<'_>] = match a {
        Value::List(elements) => elements,
        single => std::slice::from_ref(single),
    };
    let b_elements: &[Value<'_>] = match b {
        Value::List(elements) => elements,
        single => std::slice::from_ref(single),
    };
    let pairs = || a_elements.iter().flat_map(|x| b_elements.iter().map(move |y| (x, y)));
    if op == CompareOp::Ne {
        let mut comparable = false;
        for (x, y) in pairs() {
            if matches!(x, Value::List(_)) || matches!(y, Value::List(_)) {
                if compare(x, CompareOp::Eq, y) {
                    return false;
                }
                comparable |= compare(x, CompareOp::Ne, y);
                continue;
            }
            match cmp_scalars(x, y) {
                Some(Ordering::Equal) => return false,
                Some(_) => comparable = true,
                None => comparable |= x.number().is_some() && y.number().is_some(),
            }
        }
        return comparable;
    }
    pairs().any(|(x, y)| match (x, y) {
        (Value::List(_), _) | (_, Value::List(_)) => compare(x, op, y),
        _ => compare_scalars(x, op, y),
    })
}

/// `value =~ regex` (one string matches) or `value !~ regex` (strings, none matching).
fn regex_matches(value: &Value<'_>, regex: &regex::Regex, negated: bool) -> bool {
    let mut strings = false;
    let mut matched = false;
    each_string(value, &mut |text| {
        strings = true;
        matched = matched || regex.is_match(text);
    });
    if negated { strings && !matched } else { matched }
}

fn each_string(value: &Value<'_>, each: &mut dyn FnMut(&str)) {
    match value {
        Value::Str(text) => each(text),
        Value::List(elements) => {
            for element in elements {
                each_string(element, each);
            }
        }
        _ => {}
    }
}

/// Arithmetic on numbers: integers stay integers while exact (division and powers give
/// floats), durations stay durations when added to or scaled by numbers; anything else is nil.
fn arithmetic(op: ArithmeticOp, a: &Value<'_>, b: &Value<'_>) -> Value<'static> {
    let (Some(x), Some(y)) = (a.number(), b.number()) else {
        return Value::Nil;
    };
    let float = |value: f64| Value::Float(value);
    match (x, y) {
        (Number::Int(p), Number::Int(q)) => {
            let exact = match op {
                ArithmeticOp::Add => p.checked_add(q),
                ArithmeticOp::Sub => p.checked_sub(q),
                ArithmeticOp::Mul => p.checked_mul(q),
                ArithmeticOp::Mod => p.checked_rem(q),
                ArithmeticOp::Div | ArithmeticOp::Pow => None,
            };
            match exact {
                Some(n) => Value::Int(n),
                None => float(float_op(op, p as f64, q as f64)),
            }
        }
        (Number::Duration(p), Number::Duration(q)) => match op {
            ArithmeticOp::Add => p.checked_add(q).map_or(Value::Nil, Value::Duration),
            ArithmeticOp::Sub => p.checked_sub(q).map_or(Value::Nil, Value::Duration),
            ArithmeticOp::Mod => p.checked_rem(q).map_or(Value::Nil, Value::Duration),
            _ => float(float_op(op, p as f64, q as f64)),
        },
        (Number::Duration(d), n) | (n, Number::Duration(d)) => {
            let result = float_op(op, x.as_f64(), y.as_f64());
            match op {
                ArithmeticOp::Mul | ArithmeticOp::Add | ArithmeticOp::Sub => duration_from_f64(result),
                ArithmeticOp::Div if matches!(x, Number::Duration(_)) => duration_from_f64(result),
                _ => {
                    let _ = (d, n);
                    float(result)
                }
            }
        }
        _ => float(float_op(op, x.as_f64(), y.as_f64())),
    }
}

fn duration_from_f64(ns: f64) -> Value<'static> {
    if ns.is_finite() && (MIN_I64..MAX_I64_EXCLUSIVE).contains(&ns) { Value::Duration(ns as i64) } else { Value::Nil }
}

fn float_op(op: ArithmeticOp, a: f64, b: f64) -> f64 {
    match op {
        ArithmeticOp::Add => a + b,
        ArithmeticOp::Sub => a - b,
        ArithmeticOp::Mul => a * b,
        ArithmeticOp::Div => a / b,
        ArithmeticOp::Mod => a % b,
        ArithmeticOp::Pow => a.powf(b),
    }
}

fn find<'a>(attributes: &'a [(String, AttrValue)], key: &str) -> Option<&'a AttrValue> {
    attributes.iter().find(|(name, _)| name == key).map(|(_, value)| value)
}

/// A span with the groups it belongs to.
#[derive(Clone, Copy)]
pub(crate) struct SpanRef<'a> {
    pub(crate) resource: &'a ResourceSpans,
    pub(crate) scope: &'a ScopeSpans,
    pub(crate) span: &'a Span,
}

/// One trace prepared for evaluation: its spans in time order, parent links by index, and
/// which spans overlap the search range.
pub(crate) struct TraceView<'a> {
    pub(crate) trace: &'a SearchTrace,
    pub(crate) spans: Vec<SpanRef<'a>>,
    parent: Vec<Option<usize>>,
    child_count: Vec<u32>,
    in_range: Vec<bool>,
}

impl<'a> TraceView<'a> {
    pub(crate) fn new(trace: &'a SearchTrace, range: NsRange) -> TraceView<'a> {
        let mut spans: Vec<SpanRef<'a>> = Vec::with_capacity(trace.trace.span_count());
        for (resource, scope, span) in trace.trace.spans() {
            spans.push(SpanRef { resource, scope, span });
        }
        spans.sort_by(|a, b| a.span.start_ns.cmp(&b.span.start_ns).then(a.span.span_id.cmp(&b.span.span_id)));
        let by_id: HashMap<SpanId, usize> =
            spans.iter().enumerate().map(|(index, span)| (span.span.span_id, index)).collect();
        let parent: Vec<Option<usize>> = spans
            .iter()
            .enumerate()
            .map(|(index, span)| {
                span.span.parent_span_id.and_then(|id| by_id.get(&id).copied()).filter(|&parent| parent != index)
            })
            .collect();
        let mut child_count = vec![0u32; spans.len()];
        for parent in parent.iter().flatten() {
            child_count[*parent] += 1;
        }
        let in_range = spans
            .iter()
            .map(|span| {
                let (low, high) = (span.span.start_ns.min(span.span.end_ns), span.span.start_ns.max(span.span.end_ns));
                range.overlaps(low, high)
            })
            .collect();
        TraceView { trace, spans, parent, child_count, in_range }
    }

    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    /// Ancestors of a span, nearest first (a parent cycle in bad data ends the walk).
    fn ancestors(&self, index: usize) -> impl Iterator<Item = usize> + '_ {
        let mut current = self.parent[index];
        let mut steps = 0;
        std::iter::from_fn(move || {
            let next = current?;
            steps += 1;
            if steps > self.spans.len() {
                return None;
            }
            current = self.parent[next];
            Some(next)
        })
    }

    /// The value of a field for span `index`.
    pub(crate) fn field(&self, field: &Field, index: usize) -> Value<'a> {
        let SpanRef { resource, scope, span } = self.spans[index];
        match field {
            Field::Attribute { scope: attr_scope, name } => {
                let found = match attr_scope {
                    AttrScope::Unscoped => {
                        find(&span.attributes, name).or_else(|| find(&resource.resource.attributes, name))
                    }
                    AttrScope::Span => find(&span.attributes, name),
                    AttrScope::Resource => find(&resource.resource.attributes, name),
                    AttrScope::Instrumentation => find(&scope.scope.attributes, name),
                    AttrScope::Event => {
                        let values: Vec<Value<'a>> = span
                            .events
                            .iter()
                            .filter_map(|event| find(&event.attributes, name).map(Value::from_attr))
                            .collect();
                        return if values.is_empty() { Value::Nil } else { Value::List(values) };
                    }
                    AttrScope::Link => {
                        let values: Vec<Value<'a>> = span
                            .links
                            .iter()
                            .filter_map(|link| find(&link.attributes, name).map(Value::from_attr))
                            .collect();
                        return if values.is_empty() { Value::Nil } else { Value::List(values) };
                    }
                };
                found.map_or(Value::Nil, Value::from_attr)
            }
            Field::Intrinsic(intrinsic) => self.intrinsic(*intrinsic, index),
        }
    }

    fn intrinsic(&self, intrinsic: Intrinsic, index: usize) -> Value<'a> {
        let SpanRef { scope, span, .. } = self.spans[index];
        let list = |values: Vec<Value<'a>>| if values.is_empty() { Value::Nil } else { Value::List(values) };
        let text = |value: &'a str| if value.is_empty() { Value::Nil } else { Value::Str(Cow::Borrowed(value)) };
        match intrinsic {
            Intrinsic::Name => Value::Str(Cow::Borrowed(&span.name)),
            Intrinsic::Status => Value::Status(span.status.code),
            Intrinsic::StatusMessage => Value::Str(Cow::Borrowed(&span.status.message)),
            Intrinsic::Kind => Value::Kind(span.kind),
            Intrinsic::Duration => Value::Duration(span.duration_ns()),
            Intrinsic::SpanId => Value::Str(Cow::Owned(hex(&span.span_id))),
            Intrinsic::ParentId => span.parent_span_id.map_or(Value::Nil, |id| Value::Str(Cow::Owned(hex(&id)))),
            Intrinsic::ChildCount => Value::Int(i64::from(self.child_count[index])),
            Intrinsic::TraceId => Value::Str(Cow::Owned(hex(&self.trace.trace_id))),
            Intrinsic::TraceDuration => Value::Duration(self.trace.end_ns.saturating_sub(self.trace.start_ns)),
            Intrinsic::RootName => {
                self.trace.root_span_name.as_deref().map_or(Value::Nil, |name| Value::Str(Cow::Borrowed(name)))
            }
            Intrinsic::RootServiceName => {
                self.trace.root_service_name.as_deref().map_or(Value::Nil, |name| Value::Str(Cow::Borrowed(name)))
            }
            Intrinsic::EventName => {
                list(span.events.iter().map(|event| Value::Str(Cow::Borrowed(event.name.as_str()))).collect())
            }
            Intrinsic::EventTimeSinceStart => list(
                span.events.iter().map(|event| Value::Duration(event.time_ns.saturating_sub(span.start_ns))).collect(),
            ),
            Intrinsic::LinkTraceId => {
                list(span.links.iter().map(|link| Value::Str(Cow::Owned(hex(&link.trace_id)))).collect())
            }
            Intrinsic::LinkSpanId => {
                list(span.links.iter().map(|link| Value::Str(Cow::Owned(hex(&link.span_id)))).collect())
            }
            Intrinsic::InstrumentationName => text(&scope.scope.name),
            Intrinsic::InstrumentationVersion => text(&scope.scope.version),
        }
    }

    /// The value of an expression for span `index`.
    pub(crate) fn value(&self, expr: &FieldExpr, index: usize) -> Value<'a> {
        match expr {
            FieldExpr::Literal(value) => Value::from_static(value),
            FieldExpr::Field(field) => self.field(field, index),
            FieldExpr::Arithmetic { op, left, right } => {
                arithmetic(*op, &self.value(left, index), &self.value(right, index))
            }
            FieldExpr::Negate(inner) => match self.value(inner, index).number() {
                Some(Number::Int(n)) => n.checked_neg().map_or(Value::Float(-(n as f64)), Value::Int),
                Some(Number::Float(n)) => Value::Float(-n),
                Some(Number::Duration(n)) => n.checked_neg().map_or(Value::Nil, Value::Duration),
                None => Value::Nil,
            },
            FieldExpr::Compare { .. }
            | FieldExpr::Regex { .. }
            | FieldExpr::And(..)
            | FieldExpr::Or(..)
            | FieldExpr::Not(_) => Value::Bool(self.holds(expr, index)),
        }
    }

    /// Whether a boolean expression holds for span `index`.
    pub(crate) fn holds(&self, expr: &FieldExpr, index: usize) -> bool {
        match expr {
            FieldExpr::Literal(Static::Bool(value)) => *value,
            FieldExpr::Compare { op, left, right } => {
                let nil_left = matches!(**left, FieldExpr::Literal(Static::Nil));
                let nil_right = matches!(**right, FieldExpr::Literal(Static::Nil));
                if nil_left || nil_right {
                    let other = if nil_left { right } else { left };
                    let missing = matches!(self.value(other, index), Value::Nil);
                    return match op {
                        CompareOp::Eq => missing,
                        CompareOp::Ne => !missing,
                        _ => false,
                    };
                }
                compare(&self.value(left, index), *op, &self.value(right, index))
            }
            FieldExpr::Regex { negated, left, regex, .. } => regex_matches(&self.value(left, index), regex, *negated),
            FieldExpr::And(left, right) => self.holds(left, index) && self.holds(right, index),
            FieldExpr::Or(left, right) => self.holds(left, index) || self.holds(right, index),
            FieldExpr::Not(inner) => !self.holds(inner, index),
            other => matches!(self.value(other, index), Value::Bool(true)),
        }
    }

    /// The spans of the range for which a filter holds, in time order.
    fn filter(&self, filter: &Filter) -> Vec<usize> {
        (0..self.len())
            .filter(|&index| self.in_range[index] && filter.expr.as_ref().is_none_or(|expr| self.holds(expr, index)))
            .collect()
    }
}

/// A set of spans of one trace (indexes into the view, ascending), with the attributes a
/// pipeline gave it (`by(...)`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SpanSet {
    pub(crate) spans: Vec<usize>,
    pub(crate) attributes: Vec<(String, AttrValue)>,
}

impl SpanSet {
    fn of(spans: Vec<usize>) -> Vec<SpanSet> {
        if spans.is_empty() { Vec::new() } else { vec![SpanSet { spans, attributes: Vec::new() }] }
    }
}

/// Every span of the spansets, ascending, once.
fn union(sets: &[SpanSet], len: usize) -> Vec<bool> {
    let mut member = vec![false; len];
    for set in sets {
        for &index in &set.spans {
            member[index] = true;
        }
    }
    member
}

fn members(flags: &[bool]) -> Vec<usize> {
    flags.iter().enumerate().filter(|(_, flag)| **flag).map(|(index, _)| index).collect()
}

/// Evaluates a spanset expression over one trace.
pub(crate) fn evaluate(view: &TraceView<'_>, expr: &SpansetExpr) -> Vec<SpanSet> {
    match expr {
        SpansetExpr::Filter(filter) => SpanSet::of(view.filter(filter)),
        SpansetExpr::Binary { op, left, right } => {
            let left = evaluate(view, left);
            // `&&` needs both sides; the right side need not be evaluated when the left is empty.
            if left.is_empty() && matches!(op, SpansetOp::And) {
                return Vec::new();
            }
            let right = evaluate(view, right);
            binary(view, *op, &left, &right)
        }
        SpansetExpr::Pipeline { source, stages } => {
            let mut sets = evaluate(view, source);
            for stage in stages {
                if sets.is_empty() {
                    break;
                }
                sets = apply_stage(view, stage, sets);
            }
            sets
        }
    }
}

fn binary(view: &TraceView<'_>, op: SpansetOp, left: &[SpanSet], right: &[SpanSet]) -> Vec<SpanSet> {
    let n = view.len();
    let l = union(left, n);
    let r = union(right, n);
    let mut out = vec![false; n];
    match op {
        SpansetOp::And => {
            if !left.is_empty() && !right.is_empty() {
                for index in 0..n {
                    out[index] = l[index] || r[index];
                }
            }
        }
        SpansetOp::Or => {
            for index in 0..n {
                out[index] = l[index] || r[index];
            }
        }
        _ => {
            let (relation, negated, with_left) = match op {
                SpansetOp::Child => (Relation::Child, false, false),
                SpansetOp::Descendant => (Relation::Descendant, false, false),
                SpansetOp::Parent => (Relation::Parent, false, false),
                SpansetOp::Ancestor => (Relation::Ancestor, false, false),
                SpansetOp::Sibling => (Relation::Sibling, false, false),
                SpansetOp::NotChild => (Relation::Child, true, false),
                SpansetOp::NotDescendant => (Relation::Descendant, true, false),
                SpansetOp::NotParent => (Relation::Parent, true, false),
                SpansetOp::NotAncestor => (Relation::Ancestor, true, false),
                SpansetOp::NotSibling => (Relation::Sibling, true, false),
                SpansetOp::UnionChild => (Relation::Child, false, true),
                SpansetOp::UnionDescendant => (Relation::Descendant, false, true),
                SpansetOp::UnionParent => (Relation::Parent, false, true),
                SpansetOp::UnionAncestor => (Relation::Ancestor, false, true),
                SpansetOp::UnionSibling => (Relation::Sibling, false, true),
                SpansetOp::And | SpansetOp::Or => unreachable!("handled above"),
            };
            let (right_related, left_related) = related(view, relation, &l, &r);
            for index in 0..n {
                if r[index] {
                    out[index] = right_related[index] != negated;
                }
                if with_left && left_related[index] {
                    out[index] = true;
                }
            }
        }
    }
    SpanSet::of(members(&out))
}

#[derive(Clone, Copy)]
enum Relation {
    /// The right span's parent is a left span.
    Child,
    /// A left span is among the right span's ancestors.
    Descendant,
    /// The right span is the parent of a left span.
    Parent,
    /// The right span is an ancestor of a left span.
    Ancestor,
    /// The right span shares its parent with another span that is a left span.
    Sibling,
}

/// Which right spans stand in the relation to some left span, and which left spans stand in
/// it to some right span (for the union forms).
fn related(view: &TraceView<'_>, relation: Relation, left: &[bool], right: &[bool]) -> (Vec<bool>, Vec<bool>) {
    let n = view.len();
    let mut right_related = vec![false; n];
    let mut left_related = vec![false; n];
    match relation {
        Relation::Child => {
            for index in 0..n {
                if let Some(parent) = view.parent[index]
                    && right[index]
                    && left[parent]
                {
                    right_related[index] = true;
                    left_related[parent] = true;
                }
            }
        }
        Relation::Parent => {
            for index in 0..n {
                if let Some(parent) = view.parent[index]
                    && left[index]
                    && right[parent]
                {
                    right_related[parent] = true;
                    left_related[index] = true;
                }
            }
        }
        Relation::Descendant => {
            for index in (0..n).filter(|&index| right[index]) {
                for ancestor in view.ancestors(index) {
                    if left[ancestor] {
                        right_related[index] = true;
                        left_related[ancestor] = true;
                    }
                }
            }
        }
        Relation::Ancestor => {
            for index in (0..n).filter(|&index| left[index]) {
                for ancestor in view.ancestors(index) {
                    if right[ancestor] {
                        right_related[ancestor] = true;
                        left_related[index] = true;
                    }
                }
            }
        }
        Relation::Sibling => {
            // Per parent: how many left spans and right spans it has as children.
            let mut left_children = vec![0u32; n];
            let mut right_children = vec![0u32; n];
            for index in 0..n {
                if let Some(parent) = view.parent[index] {
                    left_children[parent] += u32::from(left[index]);
                    right_children[parent] += u32::from(right[index]);
                }
            }
            for index in 0..n {
                let Some(parent) = view.parent[index] else { continue };
                if right[index] && left_children[parent] > u32::from(left[index]) {
                    right_related[index] = true;
                }
                if left[index] && right_children[parent] > u32::from(right[index]) {
                    left_related[index] = true;
                }
            }
        }
    }
    (right_related, left_related)
}

fn apply_stage(view: &TraceView<'_>, stage: &Stage, sets: Vec<SpanSet>) -> Vec<SpanSet> {
    match stage {
        Stage::Filter(filter) => sets
            .into_iter()
            .filter_map(|mut set| {
                if let Some(expr) = &filter.expr {
                    set.spans.retain(|&index| view.holds(expr, index));
                }
                (!set.spans.is_empty()).then_some(set)
            })
            .collect(),
        Stage::ScalarFilter { left, op, right } => {
            sets.into_iter().filter(|set| compare(&scalar(view, left, set), *op, &scalar(view, right, set))).collect()
        }
        Stage::By(expr) => {
            let name = format!("by({expr})");
            let mut out = Vec::new();
            for set in sets {
                let mut groups: Vec<(Option<AttrValue>, Vec<usize>)> = Vec::new();
                for &index in &set.spans {
                    let key = view.value(expr, index).to_attr();
                    match groups.iter_mut().find(|(existing, _)| *existing == key) {
                        Some((_, spans)) => spans.push(index),
                        None => groups.push((key, vec![index])),
                    }
                }
                for (key, spans) in groups {
                    let mut attributes = set.attributes.clone();
                    if let Some(value) = key {
                        attributes.push((name.clone(), value));
                    }
                    out.push(SpanSet { spans, attributes });
                }
            }
            out
        }
        Stage::Select(_) => sets,
        Stage::Coalesce => {
            let flags = union(&sets, view.len());
            SpanSet::of(members(&flags))
        }
        // Refused before evaluation.
        Stage::Metrics(_) => Vec::new(),
    }
}

/// The value of a pipeline expression for one spanset.
fn scalar(view: &TraceView<'_>, expr: &ScalarExpr, set: &SpanSet) -> Value<'static> {
    match expr {
        ScalarExpr::Literal(value) => Value::from_static(value),
        ScalarExpr::Arithmetic { op, left, right } => {
            arithmetic(*op, &scalar(view, left, set), &scalar(view, right, set))
        }
        ScalarExpr::Aggregate { function: Aggregate::Count, .. } => Value::Int(set.spans.len() as i64),
        ScalarExpr::Aggregate { function, field } => {
            let Some(field) = field else { return Value::Nil };
            let numbers: Vec<Number> =
                set.spans.iter().filter_map(|&index| view.value(field, index).number()).collect();
            aggregate(*function, &numbers)
        }
    }
}

fn aggregate(function: Aggregate, numbers: &[Number]) -> Value<'static> {
    let Some(first) = numbers.first() else {
        return Value::Nil;
    };
    let all_durations = numbers.iter().all(|n| matches!(n, Number::Duration(_)));
    let all_ints = numbers.iter().all(|n| matches!(n, Number::Int(_)));
    match function {
        Aggregate::Count => Value::Int(numbers.len() as i64),
        Aggregate::Min | Aggregate::Max => {
            let mut best = *first;
            for &number in &numbers[1..] {
                let better = match cmp_numbers(number, best) {
                    Some(Ordering::Less) => function == Aggregate::Min,
                    Some(Ordering::Greater) => function == Aggregate::Max,
                    _ => false,
                };
                if better {
                    best = number;
                }
            }
            best.value()
        }
        Aggregate::Sum | Aggregate::Avg => {
            let exact: Option<i64> = if all_durations || all_ints {
                numbers.iter().try_fold(0i64, |sum, number| match number {
                    Number::Int(n) | Number::Duration(n) => sum.checked_add(*n),
                    Number::Float(_) => None,
                })
            } else {
                None
            };
            let total = exact.map_or_else(|| numbers.iter().map(|n| n.as_f64()).sum::<f64>(), |sum| sum as f64);
            if function == Aggregate::Sum {
                return match (exact, all_durations) {
                    (Some(sum), true) => Value::Duration(sum),
                    (Some(sum), false) => Value::Int(sum),
                    (None, true) => duration_from_f64(total),
                    (None, false) => Value::Float(total),
                };
            }
            let mean = total / numbers.len() as f64;
            if all_durations { duration_from_f64(mean.round()) } else { Value::Float(mean) }
        }
    }
}
