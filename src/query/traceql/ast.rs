//! The TraceQL syntax tree, as the parser builds it and the evaluator reads it. Every node
//! prints back as canonical TraceQL (`Display`), which is also how `by(...)` names its groups.

use std::fmt;

use regex::Regex;
use tripod_storage::traces::{SpanKind, StatusCode};

use super::lexer::format_duration_ns;

/// A parsed TraceQL query: a spanset expression with its pipeline, and the query hints of a
/// trailing `with (...)`.
#[derive(Debug, Clone)]
pub struct Query {
    pub(crate) root: SpansetExpr,
    pub(crate) hints: Vec<(String, Static)>,
}

impl Query {
    /// Whether the query is `{}` (or `{ true }`): every span, with nothing to check.
    pub fn matches_everything(&self) -> bool {
        match &self.root {
            SpansetExpr::Filter(filter) => filter.matches_everything(),
            _ => false,
        }
    }

    /// Whether the query is a TraceQL metrics query (`| rate()`, `| count_over_time()`, ...),
    /// which a search does not answer.
    pub fn is_metrics(&self) -> bool {
        self.metrics_function().is_some()
    }

    pub(crate) fn metrics_function(&self) -> Option<&str> {
        let SpansetExpr::Pipeline { stages, .. } = &self.root else { return None };
        stages.iter().find_map(|stage| match stage {
            Stage::Metrics(name) => Some(name.as_str()),
            _ => None,
        })
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.root)?;
        if !self.hints.is_empty() {
            f.write_str(" with (")?;
            for (i, (name, value)) in self.hints.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{name}={value}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// An expression whose value, for one trace, is a list of spansets.
#[derive(Debug, Clone)]
pub(crate) enum SpansetExpr {
    /// `{ ... }`: the spans for which the expression is true.
    Filter(Filter),
    Binary {
        op: SpansetOp,
        left: Box<SpansetExpr>,
        right: Box<SpansetExpr>,
    },
    /// `source | stage | stage ...`
    Pipeline {
        source: Box<SpansetExpr>,
        stages: Vec<Stage>,
    },
}

impl fmt::Display for SpansetExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpansetExpr::Filter(filter) => write!(f, "{filter}"),
            SpansetExpr::Binary { op, left, right } => {
                write_operand(f, left)?;
                write!(f, " {} ", op.symbol())?;
                write_operand(f, right)
            }
            SpansetExpr::Pipeline { source, stages } => {
                write!(f, "{source}")?;
                for stage in stages {
                    write!(f, " | {stage}")?;
                }
                Ok(())
            }
        }
    }
}

fn write_operand(f: &mut fmt::Formatter<'_>, operand: &SpansetExpr) -> fmt::Result {
    match operand {
        SpansetExpr::Filter(_) => write!(f, "{operand}"),
        _ => write!(f, "({operand})"),
    }
}

/// A spanset filter: `{}` has no expression.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub(crate) expr: Option<FieldExpr>,
}

impl Filter {
    pub(crate) fn matches_everything(&self) -> bool {
        matches!(self.expr, None | Some(FieldExpr::Literal(Static::Bool(true))))
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.expr {
            None => f.write_str("{ }"),
            Some(expr) => write!(f, "{{ {expr} }}"),
        }
    }
}

/// Operators between spansets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpansetOp {
    /// `&&`: both sides matched; the spans of both.
    And,
    /// `||`: either side matched; the spans of both.
    Or,
    /// `>`: right spans whose parent is a left span.
    Child,
    /// `>>`: right spans with a left span among their ancestors.
    Descendant,
    /// `<`: right spans that are the parent of a left span.
    Parent,
    /// `<<`: right spans that are an ancestor of a left span.
    Ancestor,
    /// `~`: right spans with a sibling (same parent, another span) among the left spans.
    Sibling,
    NotChild,
    NotDescendant,
    NotParent,
    NotAncestor,
    NotSibling,
    /// `&>`: like `>`, and the left spans that take part as well.
    UnionChild,
    UnionDescendant,
    UnionParent,
    UnionAncestor,
    UnionSibling,
}

impl SpansetOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            SpansetOp::And => "&&",
            SpansetOp::Or => "||",
            SpansetOp::Child => ">",
            SpansetOp::Descendant => ">>",
            SpansetOp::Parent => "<",
            SpansetOp::Ancestor => "<<",
            SpansetOp::Sibling => "~",
            SpansetOp::NotChild => "!>",
            SpansetOp::NotDescendant => "!>>",
            SpansetOp::NotParent => "!<",
            SpansetOp::NotAncestor => "!<<",
            SpansetOp::NotSibling => "!~",
            SpansetOp::UnionChild => "&>",
            SpansetOp::UnionDescendant => "&>>",
            SpansetOp::UnionParent => "&<",
            SpansetOp::UnionAncestor => "&<<",
            SpansetOp::UnionSibling => "&~",
        }
    }
}

/// One stage of a pipeline.
#[derive(Debug, Clone)]
pub(crate) enum Stage {
    /// `| { ... }`: keeps the spans of each spanset that pass; drops emptied spansets.
    Filter(Filter),
    /// `| count() > 2`: keeps the spansets for which the comparison holds.
    ScalarFilter { left: ScalarExpr, op: CompareOp, right: ScalarExpr },
    /// `| by(expr)`: splits each spanset by the expression's value.
    By(FieldExpr),
    /// `| select(a, b)`: returns these fields with every span.
    Select(Vec<FieldExpr>),
    /// `| coalesce()`: merges the spansets of a trace into one.
    Coalesce,
    /// A TraceQL metrics function (`rate`, `count_over_time`, ...): parsed so the query can be
    /// refused by name, never evaluated here.
    Metrics(String),
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Filter(filter) => write!(f, "{filter}"),
            Stage::ScalarFilter { left, op, right } => write!(f, "{left} {} {right}", op.symbol()),
            Stage::By(expr) => write!(f, "by({expr})"),
            Stage::Select(fields) => {
                f.write_str("select(")?;
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{field}")?;
                }
                f.write_str(")")
            }
            Stage::Coalesce => f.write_str("coalesce()"),
            Stage::Metrics(name) => write!(f, "{name}(...)"),
        }
    }
}

/// An expression over the spans of a spanset: aggregates, literals and arithmetic.
#[derive(Debug, Clone)]
pub(crate) enum ScalarExpr {
    Aggregate {
        function: Aggregate,
        /// `None` for `count()`.
        field: Option<FieldExpr>,
    },
    Literal(Static),
    Arithmetic {
        op: ArithmeticOp,
        left: Box<ScalarExpr>,
        right: Box<ScalarExpr>,
    },
}

impl fmt::Display for ScalarExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScalarExpr::Aggregate { function, field: None } => write!(f, "{}()", function.name()),
            ScalarExpr::Aggregate { function, field: Some(field) } => write!(f, "{}({field})", function.name()),
            ScalarExpr::Literal(value) => write!(f, "{value}"),
            ScalarExpr::Arithmetic { op, left, right } => write!(f, "({left} {} {right})", op.symbol()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aggregate {
    Count,
    Avg,
    Min,
    Max,
    Sum,
}

impl Aggregate {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Aggregate::Count => "count",
            Aggregate::Avg => "avg",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
            Aggregate::Sum => "sum",
        }
    }
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CompareOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }

    /// The operator with its operands swapped: `a < b` is `b > a`.
    pub(crate) fn flipped(self) -> CompareOp {
        match self {
            CompareOp::Eq => CompareOp::Eq,
            CompareOp::Ne => CompareOp::Ne,
            CompareOp::Lt => CompareOp::Gt,
            CompareOp::Le => CompareOp::Ge,
            CompareOp::Gt => CompareOp::Lt,
            CompareOp::Ge => CompareOp::Le,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArithmeticOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

impl ArithmeticOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            ArithmeticOp::Add => "+",
            ArithmeticOp::Sub => "-",
            ArithmeticOp::Mul => "*",
            ArithmeticOp::Div => "/",
            ArithmeticOp::Mod => "%",
            ArithmeticOp::Pow => "^",
        }
    }
}

/// An expression evaluated on one span.
#[derive(Debug, Clone)]
pub(crate) enum FieldExpr {
    Literal(Static),
    Field(Field),
    Compare {
        op: CompareOp,
        left: Box<FieldExpr>,
        right: Box<FieldExpr>,
    },
    /// `left =~ "re"` / `left !~ "re"`; the regex is anchored at both ends.
    Regex {
        negated: bool,
        left: Box<FieldExpr>,
        pattern: String,
        regex: Regex,
    },
    Arithmetic {
        op: ArithmeticOp,
        left: Box<FieldExpr>,
        right: Box<FieldExpr>,
    },
    And(Box<FieldExpr>, Box<FieldExpr>),
    Or(Box<FieldExpr>, Box<FieldExpr>),
    Not(Box<FieldExpr>),
    Negate(Box<FieldExpr>),
}

impl fmt::Display for FieldExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldExpr::Literal(value) => write!(f, "{value}"),
            FieldExpr::Field(field) => write!(f, "{field}"),
            FieldExpr::Compare { op, left, right } => {
                write_compared(f, left)?;
                write!(f, " {} ", op.symbol())?;
                write_compared(f, right)
            }
            FieldExpr::Regex { negated, left, pattern, .. } => {
                write_compared(f, left)?;
                write!(f, " {} {pattern:?}", if *negated { "!~" } else { "=~" })
            }
            FieldExpr::Arithmetic { op, left, right } => write!(f, "({left} {} {right})", op.symbol()),
            FieldExpr::And(left, right) => write!(f, "({left} && {right})"),
            FieldExpr::Or(left, right) => write!(f, "({left} || {right})"),
            FieldExpr::Not(inner) => match **inner {
                FieldExpr::Compare { .. } | FieldExpr::Regex { .. } => write!(f, "!({inner})"),
                _ => write!(f, "!{inner}"),
            },
            FieldExpr::Negate(inner) => write!(f, "-{inner}"),
        }
    }
}

/// An operand of a comparison: comparisons in it are parenthesised (they do not chain).
fn write_compared(f: &mut fmt::Formatter<'_>, operand: &FieldExpr) -> fmt::Result {
    match operand {
        FieldExpr::Compare { .. } | FieldExpr::Regex { .. } => write!(f, "({operand})"),
        _ => write!(f, "{operand}"),
    }
}

/// Something a span has: an attribute or an intrinsic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Field {
    Attribute { scope: AttrScope, name: String },
    Intrinsic(Intrinsic),
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Attribute { scope, name } => {
                let prefix = match scope {
                    AttrScope::Unscoped => "",
                    AttrScope::Span => "span",
                    AttrScope::Resource => "resource",
                    AttrScope::Event => "event",
                    AttrScope::Link => "link",
                    AttrScope::Instrumentation => "instrumentation",
                };
                if name.chars().all(|c| !c.is_whitespace() && !"{}()=~!<>&|^,\"".contains(c)) {
                    write!(f, "{prefix}.{name}")
                } else {
                    write!(f, "{prefix}.\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
                }
            }
            Field::Intrinsic(intrinsic) => f.write_str(intrinsic.name()),
        }
    }
}

/// Where an attribute is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum AttrScope {
    /// `.x`: the span's attribute, else its resource's.
    Unscoped,
    Span,
    Resource,
    /// Any event of the span.
    Event,
    /// Any link of the span.
    Link,
    /// The span's instrumentation scope.
    Instrumentation,
}

/// Fields every span has (or its trace has).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Intrinsic {
    Name,
    Status,
    StatusMessage,
    Kind,
    Duration,
    SpanId,
    ParentId,
    ChildCount,
    TraceId,
    TraceDuration,
    RootName,
    RootServiceName,
    EventName,
    EventTimeSinceStart,
    LinkTraceId,
    LinkSpanId,
    InstrumentationName,
    InstrumentationVersion,
}

impl Intrinsic {
    /// The name Tempo gives the intrinsic in answers (and the canonical spelling).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Intrinsic::Name => "name",
            Intrinsic::Status => "status",
            Intrinsic::StatusMessage => "statusMessage",
            Intrinsic::Kind => "kind",
            Intrinsic::Duration => "duration",
            Intrinsic::SpanId => "span:id",
            Intrinsic::ParentId => "span:parentID",
            Intrinsic::ChildCount => "span:childCount",
            Intrinsic::TraceId => "trace:id",
            Intrinsic::TraceDuration => "traceDuration",
            Intrinsic::RootName => "rootName",
            Intrinsic::RootServiceName => "rootServiceName",
            Intrinsic::EventName => "event:name",
            Intrinsic::EventTimeSinceStart => "event:timeSinceStart",
            Intrinsic::LinkTraceId => "link:traceID",
            Intrinsic::LinkSpanId => "link:spanID",
            Intrinsic::InstrumentationName => "instrumentation:name",
            Intrinsic::InstrumentationVersion => "instrumentation:version",
        }
    }

    /// The unscoped intrinsic a bare word names.
    pub(crate) fn from_word(word: &str) -> Option<Intrinsic> {
        Some(match word {
            "name" => Intrinsic::Name,
            "status" => Intrinsic::Status,
            "statusMessage" => Intrinsic::StatusMessage,
            "kind" => Intrinsic::Kind,
            "duration" => Intrinsic::Duration,
            "traceDuration" => Intrinsic::TraceDuration,
            "rootName" => Intrinsic::RootName,
            "rootServiceName" => Intrinsic::RootServiceName,
            _ => return None,
        })
    }

    /// The intrinsic `scope:name` names.
    pub(crate) fn from_scoped(scope: &str, name: &str) -> Option<Intrinsic> {
        Some(match (scope, name) {
            ("span", "name") => Intrinsic::Name,
            ("span", "status") => Intrinsic::Status,
            ("span", "statusMessage") => Intrinsic::StatusMessage,
            ("span", "kind") => Intrinsic::Kind,
            ("span", "duration") => Intrinsic::Duration,
            ("span", "id") => Intrinsic::SpanId,
            ("span", "parentID") => Intrinsic::ParentId,
            ("span", "childCount") => Intrinsic::ChildCount,
            ("trace", "id") => Intrinsic::TraceId,
            ("trace", "duration") => Intrinsic::TraceDuration,
            ("trace", "rootName") => Intrinsic::RootName,
            ("trace", "rootService") => Intrinsic::RootServiceName,
            ("event", "name") => Intrinsic::EventName,
            ("event", "timeSinceStart") => Intrinsic::EventTimeSinceStart,
            ("link", "traceID") => Intrinsic::LinkTraceId,
            ("link", "spanID") => Intrinsic::LinkSpanId,
            ("instrumentation", "name") => Intrinsic::InstrumentationName,
            ("instrumentation", "version") => Intrinsic::InstrumentationVersion,
            _ => return None,
        })
    }

    /// The type of the intrinsic's values.
    pub(crate) fn value_type(self) -> ValueType {
        match self {
            Intrinsic::Status => ValueType::Status,
            Intrinsic::Kind => ValueType::Kind,
            Intrinsic::Duration | Intrinsic::TraceDuration | Intrinsic::EventTimeSinceStart => ValueType::Duration,
            Intrinsic::ChildCount => ValueType::Int,
            _ => ValueType::String,
        }
    }

    /// Whether the intrinsic's values are hex IDs (compared case-insensitively, left-padded).
    pub(crate) fn id_width(self) -> Option<usize> {
        match self {
            Intrinsic::TraceId | Intrinsic::LinkTraceId => Some(32),
            Intrinsic::SpanId | Intrinsic::ParentId | Intrinsic::LinkSpanId => Some(16),
            _ => None,
        }
    }
}

/// The static type of an expression, as far as the parser knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueType {
    /// An attribute, whose type is only known per span.
    Any,
    Nil,
    Bool,
    Int,
    Float,
    Duration,
    String,
    Status,
    Kind,
}

impl ValueType {
    pub(crate) fn is_numeric(self) -> bool {
        matches!(self, ValueType::Int | ValueType::Float | ValueType::Duration)
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            ValueType::Any => "an attribute",
            ValueType::Nil => "nil",
            ValueType::Bool => "a boolean",
            ValueType::Int => "an integer",
            ValueType::Float => "a float",
            ValueType::Duration => "a duration",
            ValueType::String => "a string",
            ValueType::Status => "a status",
            ValueType::Kind => "a span kind",
        }
    }
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Static {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Duration(i64),
    String(String),
    Status(StatusCode),
    Kind(SpanKind),
}

impl Static {
    pub(crate) fn value_type(&self) -> ValueType {
        match self {
            Static::Nil => ValueType::Nil,
            Static::Bool(_) => ValueType::Bool,
            Static::Int(_) => ValueType::Int,
            Static::Float(_) => ValueType::Float,
            Static::Duration(_) => ValueType::Duration,
            Static::String(_) => ValueType::String,
            Static::Status(_) => ValueType::Status,
            Static::Kind(_) => ValueType::Kind,
        }
    }
}

impl fmt::Display for Static {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Static::Nil => f.write_str("nil"),
            Static::Bool(value) => write!(f, "{value}"),
            Static::Int(i64::MIN) => f.write_str("minInt"),
            Static::Int(value) => write!(f, "{value}"),
            Static::Float(value) => {
                if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
                    write!(f, "{value:.1}")
                } else {
                    write!(f, "{value}")
                }
            }
            Static::Duration(ns) => f.write_str(&format_duration_ns(*ns)),
            Static::String(text) => write!(f, "{text:?}"),
            Static::Status(code) => f.write_str(code.keyword()),
            Static::Kind(kind) => f.write_str(kind.keyword()),
        }
    }
}
