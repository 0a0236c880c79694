//! The LogQL syntax tree. Every node prints back as canonical LogQL (`Display`), which is what
//! `format_query` answers and what error messages quote.

use std::fmt;

use tripod_storage::labels::{MatchOp, Matcher};

/// A whole query: a log query (answers streams) or a metric query (answers samples).
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Log(LogExpr),
    Metric(MetricExpr),
}

/// A stream selector and its pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct LogExpr {
    /// At least one, and at least one that does not match the empty string.
    pub matchers: Vec<Matcher>,
    pub stages: Vec<Stage>,
}

/// One stage of a log pipeline, applied to each entry in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    LineFilter(LineFilter),
    Parser(Parser),
    LabelFilter(LabelFilterExpr),
    /// `line_format "template"`.
    LineFormat(String),
    LabelFormat(Vec<LabelFormat>),
    /// `drop a, b="x"`: removes labels (those with a matcher only when it matches).
    Drop(Vec<LabelSpec>),
    /// `keep a, b="x"`: keeps only these labels (stream labels included).
    Keep(Vec<LabelSpec>),
    /// `decolorize`: removes ANSI colour sequences from the line.
    Decolorize,
    /// `unwrap label`: the sample value of a metric query; only valid inside a range
    /// aggregation that takes values.
    Unwrap(Unwrap),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFilterOp {
    /// `|=`
    Contains,
    /// `!=`
    NotContains,
    /// `|~`
    Matches,
    /// `!~`
    NotMatches,
    /// `|>`
    Pattern,
    /// `!>`
    NotPattern,
}

impl LineFilterOp {
    pub fn symbol(self) -> &'static str {
        match self {
            LineFilterOp::Contains => "|=",
            LineFilterOp::NotContains => "!=",
            LineFilterOp::Matches => "|~",
            LineFilterOp::NotMatches => "!~",
            LineFilterOp::Pattern => "|>",
            LineFilterOp::NotPattern => "!>",
        }
    }

    pub fn is_negative(self) -> bool {
        matches!(self, LineFilterOp::NotContains | LineFilterOp::NotMatches | LineFilterOp::NotPattern)
    }
}

/// What a line filter looks for.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterValue {
    Text(String),
    /// `ip("192.168.0.0/16")`: lines holding an address in the range.
    Ip(String),
}

/// A line filter; several values joined by `or` pass when any passes (for a negative filter,
/// when none is found).
#[derive(Debug, Clone, PartialEq)]
pub struct LineFilter {
    pub op: LineFilterOp,
    pub values: Vec<FilterValue>,
}

/// The parsers that turn a line into labels.
#[derive(Debug, Clone, PartialEq)]
pub enum Parser {
    /// `json`, or `json name="expression", ...` to extract only some fields.
    Json(Vec<(String, String)>),
    /// `logfmt [--strict] [--keep-empty]`, optionally with `name="key"` extractions.
    Logfmt { strict: bool, keep_empty: bool, params: Vec<(String, String)> },
    /// `regexp "(?P<name>...)"`.
    Regexp(String),
    /// `pattern "<ip> - <_> <method>"`.
    Pattern(String),
    /// `unpack`: the line is a JSON object packed by Promtail's `pack` stage.
    Unpack,
}

/// A comparison operator of label filters and binary expressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Greater,
    GreaterEqual,
    Less,
    LessEqual,
}

impl CompareOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Equal => "==",
            CompareOp::NotEqual => "!=",
            CompareOp::Greater => ">",
            CompareOp::GreaterEqual => ">=",
            CompareOp::Less => "<",
            CompareOp::LessEqual => "<=",
        }
    }

    pub fn compare(self, left: f64, right: f64) -> bool {
        match self {
            CompareOp::Equal => left == right,
            CompareOp::NotEqual => left != right,
            CompareOp::Greater => left > right,
            CompareOp::GreaterEqual => left >= right,
            CompareOp::Less => left < right,
            CompareOp::LessEqual => left <= right,
        }
    }
}

/// One label filter.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelFilter {
    /// `name = "x"`, `name != "x"`, `name =~ "re"`, `name !~ "re"`.
    Match(Matcher),
    /// `name > 10`: the label's value read as a number.
    Number { name: String, op: CompareOp, value: f64 },
    /// `name > 250ms`: the value read as a duration, compared in seconds.
    Duration { name: String, op: CompareOp, seconds: f64, text: String },
    /// `name > 20MB`: the value read as a byte size.
    Bytes { name: String, op: CompareOp, bytes: f64, text: String },
    /// `name = ip("10.0.0.0/8")` or `!=`.
    Ip { name: String, negated: bool, pattern: String },
}

/// Label filters combined with `and` (also written `,` or a space) and `or`.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelFilterExpr {
    Leaf(LabelFilter),
    And(Box<LabelFilterExpr>, Box<LabelFilterExpr>),
    Or(Box<LabelFilterExpr>, Box<LabelFilterExpr>),
}

/// One `label_format` assignment.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelFormat {
    /// `dst=src`: renames a label.
    Rename { dst: String, src: String },
    /// `dst="template"`: sets a label from a template.
    Template { dst: String, template: String },
}

/// A label named by `drop` or `keep`, with an optional matcher on its value.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelSpec {
    pub name: String,
    pub matcher: Option<Matcher>,
}

/// How an unwrapped label's value becomes a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// As a float.
    Plain,
    /// `duration(label)` or `duration_seconds(label)`: a Go duration, in seconds.
    Duration,
    /// `bytes(label)`: a byte size.
    Bytes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Unwrap {
    pub label: String,
    pub conversion: Conversion,
}

/// The range aggregations: over the entries (or unwrapped values) of each stream in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOp {
    Rate,
    RateCounter,
    CountOverTime,
    BytesRate,
    BytesOverTime,
    AbsentOverTime,
    SumOverTime,
    AvgOverTime,
    MaxOverTime,
    MinOverTime,
    FirstOverTime,
    LastOverTime,
    StdvarOverTime,
    StddevOverTime,
    QuantileOverTime,
}

impl RangeOp {
    pub fn from_name(name: &str) -> Option<RangeOp> {
        Some(match name {
            "rate" => RangeOp::Rate,
            "rate_counter" => RangeOp::RateCounter,
            "count_over_time" => RangeOp::CountOverTime,
            "bytes_rate" => RangeOp::BytesRate,
            "bytes_over_time" => RangeOp::BytesOverTime,
            "absent_over_time" => RangeOp::AbsentOverTime,
            "sum_over_time" => RangeOp::SumOverTime,
            "avg_over_time" => RangeOp::AvgOverTime,
            "max_over_time" => RangeOp::MaxOverTime,
            "min_over_time" => RangeOp::MinOverTime,
            "first_over_time" => RangeOp::FirstOverTime,
            "last_over_time" => RangeOp::LastOverTime,
            "stdvar_over_time" => RangeOp::StdvarOverTime,
            "stddev_over_time" => RangeOp::StddevOverTime,
            "quantile_over_time" => RangeOp::QuantileOverTime,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            RangeOp::Rate => "rate",
            RangeOp::RateCounter => "rate_counter",
            RangeOp::CountOverTime => "count_over_time",
            RangeOp::BytesRate => "bytes_rate",
            RangeOp::BytesOverTime => "bytes_over_time",
            RangeOp::AbsentOverTime => "absent_over_time",
            RangeOp::SumOverTime => "sum_over_time",
            RangeOp::AvgOverTime => "avg_over_time",
            RangeOp::MaxOverTime => "max_over_time",
            RangeOp::MinOverTime => "min_over_time",
            RangeOp::FirstOverTime => "first_over_time",
            RangeOp::LastOverTime => "last_over_time",
            RangeOp::StdvarOverTime => "stdvar_over_time",
            RangeOp::StddevOverTime => "stddev_over_time",
            RangeOp::QuantileOverTime => "quantile_over_time",
        }
    }

    /// Whether the aggregation needs `unwrap` (it works on values, not on entries).
    pub fn needs_unwrap(self) -> bool {
        !matches!(
            self,
            RangeOp::Rate
                | RangeOp::CountOverTime
                | RangeOp::BytesRate
                | RangeOp::BytesOverTime
                | RangeOp::AbsentOverTime
        )
    }

    /// Whether the aggregation may have `unwrap` at all.
    pub fn allows_unwrap(self) -> bool {
        self.needs_unwrap() || self == RangeOp::Rate
    }
}

/// The vector aggregations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Sort,
    SortDesc,
}

impl VectorOp {
    pub fn from_name(name: &str) -> Option<VectorOp> {
        Some(match name {
            "sum" => VectorOp::Sum,
            "avg" => VectorOp::Avg,
            "min" => VectorOp::Min,
            "max" => VectorOp::Max,
            "count" => VectorOp::Count,
            "stddev" => VectorOp::Stddev,
            "stdvar" => VectorOp::Stdvar,
            "topk" => VectorOp::Topk,
            "bottomk" => VectorOp::Bottomk,
            "sort" => VectorOp::Sort,
            "sort_desc" => VectorOp::SortDesc,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            VectorOp::Sum => "sum",
            VectorOp::Avg => "avg",
            VectorOp::Min => "min",
            VectorOp::Max => "max",
            VectorOp::Count => "count",
            VectorOp::Stddev => "stddev",
            VectorOp::Stdvar => "stdvar",
            VectorOp::Topk => "topk",
            VectorOp::Bottomk => "bottomk",
            VectorOp::Sort => "sort",
            VectorOp::SortDesc => "sort_desc",
        }
    }

    /// Whether the aggregation takes a parameter first (`topk(10, ...)`).
    pub fn takes_parameter(self) -> bool {
        matches!(self, VectorOp::Topk | VectorOp::Bottomk)
    }
}

/// `by (a, b)` or `without (a, b)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    pub without: bool,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Compare(CompareOp),
    And,
    Or,
    Unless,
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
            BinaryOp::Pow => "^",
            BinaryOp::Compare(op) => op.symbol(),
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
            BinaryOp::Unless => "unless",
        }
    }

    /// Binding strength: higher binds tighter.
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => 1,
            BinaryOp::And | BinaryOp::Unless => 2,
            BinaryOp::Compare(_) => 3,
            BinaryOp::Add | BinaryOp::Sub => 4,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => 5,
            BinaryOp::Pow => 6,
        }
    }

    pub fn is_set_operator(self) -> bool {
        matches!(self, BinaryOp::And | BinaryOp::Or | BinaryOp::Unless)
    }
}

/// `on (..)` / `ignoring (..)` and `group_left (..)` / `group_right (..)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VectorMatching {
    /// `Some(true)` for `on`, `Some(false)` for `ignoring`.
    pub on: Option<bool>,
    pub labels: Vec<String>,
    /// `Some(true)` for `group_left`, `Some(false)` for `group_right`.
    pub group_left: Option<bool>,
    pub include: Vec<String>,
}

/// A log query inside a range aggregation, with its window.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRange {
    pub log: LogExpr,
    pub range_ns: i64,
    pub offset_ns: i64,
}

impl LogRange {
    /// The unwrap stage, if the pipeline has one.
    pub fn unwrap_stage(&self) -> Option<&Unwrap> {
        self.log.stages.iter().find_map(|stage| match stage {
            Stage::Unwrap(unwrap) => Some(unwrap),
            _ => None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum MetricExpr {
    Range {
        op: RangeOp,
        /// `quantile_over_time`'s quantile.
        parameter: Option<f64>,
        range: LogRange,
        grouping: Option<Grouping>,
    },
    Vector {
        op: VectorOp,
        /// `topk`/`bottomk`'s k.
        parameter: Option<f64>,
        grouping: Option<Grouping>,
        expr: Box<MetricExpr>,
    },
    Binary {
        op: BinaryOp,
        return_bool: bool,
        matching: VectorMatching,
        left: Box<MetricExpr>,
        right: Box<MetricExpr>,
    },
    /// A number.
    Literal(f64),
    /// `vector(1)`.
    Vector1(f64),
    LabelReplace {
        expr: Box<MetricExpr>,
        dst: String,
        replacement: String,
        src: String,
        regex: String,
    },
}

/// Prints a duration in nanoseconds the way Prometheus does (`5m`, `1h30m`, `250ms`), down to
/// nanoseconds where needed.
pub fn format_duration_ns(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ns.unsigned_abs();
    if ns < 0 {
        out.push('-');
    }
    const UNITS: [(&str, u64); 9] = [
        ("y", 31_536_000_000_000_000),
        ("w", 604_800_000_000_000),
        ("d", 86_400_000_000_000),
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ];
    for (unit, size) in UNITS {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

fn quote(text: &str) -> String {
    // Go's strconv.Quote and Rust's Debug agree on the escapes LogQL reads back.
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn format_number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{value}")
    }
}

fn write_matcher(f: &mut fmt::Formatter<'_>, matcher: &Matcher) -> fmt::Result {
    let op = match matcher.op() {
        MatchOp::Equal => "=",
        MatchOp::NotEqual => "!=",
        MatchOp::RegexMatch => "=~",
        MatchOp::RegexNoMatch => "!~",
    };
    write!(f, "{}{op}{}", matcher.name(), quote(matcher.value()))
}

impl fmt::Display for LogExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, matcher) in self.matchers.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write_matcher(f, matcher)?;
        }
        f.write_str("}")?;
        for stage in &self.stages {
            write!(f, " {stage}")?;
        }
        Ok(())
    }
}

fn write_params(f: &mut fmt::Formatter<'_>, params: &[(String, String)]) -> fmt::Result {
    for (i, (name, expression)) in params.iter().enumerate() {
        f.write_str(if i == 0 { " " } else { ", " })?;
        write!(f, "{name}={}", quote(expression))?;
    }
    Ok(())
}

fn write_specs(f: &mut fmt::Formatter<'_>, specs: &[LabelSpec]) -> fmt::Result {
    for (i, spec) in specs.iter().enumerate() {
        f.write_str(if i == 0 { " " } else { ", " })?;
        match &spec.matcher {
            Some(matcher) => write_matcher(f, matcher)?,
            None => f.write_str(&spec.name)?,
        }
    }
    Ok(())
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::LineFilter(filter) => {
                write!(f, "{}", filter.op.symbol())?;
                for (i, value) in filter.values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" or")?;
                    }
                    match value {
                        FilterValue::Text(text) => write!(f, " {}", quote(text))?,
                        FilterValue::Ip(pattern) => write!(f, " ip({})", quote(pattern))?,
                    }
                }
                Ok(())
            }
            Stage::Parser(Parser::Json(params)) => {
                f.write_str("| json")?;
                write_params(f, params)
            }
            Stage::Parser(Parser::Logfmt { strict, keep_empty, params }) => {
                f.write_str("| logfmt")?;
                if *strict {
                    f.write_str(" --strict")?;
                }
                if *keep_empty {
                    f.write_str(" --keep-empty")?;
                }
                write_params(f, params)
            }
            Stage::Parser(Parser::Regexp(regex)) => write!(f, "| regexp {}", quote(regex)),
            Stage::Parser(Parser::Pattern(pattern)) => write!(f, "| pattern {}", quote(pattern)),
            Stage::Parser(Parser::Unpack) => f.write_str("| unpack"),
            Stage::LabelFilter(filter) => write!(f, "| {filter}"),
            Stage::LineFormat(template) => write!(f, "| line_format {}", quote(template)),
            Stage::LabelFormat(formats) => {
                f.write_str("| label_format")?;
                for (i, format) in formats.iter().enumerate() {
                    f.write_str(if i == 0 { " " } else { ", " })?;
                    match format {
                        LabelFormat::Rename { dst, src } => write!(f, "{dst}={src}")?,
                        LabelFormat::Template { dst, template } => write!(f, "{dst}={}", quote(template))?,
                    }
                }
                Ok(())
            }
            Stage::Drop(specs) => {
                f.write_str("| drop")?;
                write_specs(f, specs)
            }
            Stage::Keep(specs) => {
                f.write_str("| keep")?;
                write_specs(f, specs)
            }
            Stage::Decolorize => f.write_str("| decolorize"),
            Stage::Unwrap(Unwrap { label, conversion }) => match conversion {
                Conversion::Plain => write!(f, "| unwrap {label}"),
                Conversion::Duration => write!(f, "| unwrap duration({label})"),
                Conversion::Bytes => write!(f, "| unwrap bytes({label})"),
            },
        }
    }
}

impl fmt::Display for LabelFilterExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelFilterExpr::Leaf(filter) => write!(f, "{filter}"),
            LabelFilterExpr::And(left, right) => write!(f, "{left} and {right}"),
            LabelFilterExpr::Or(left, right) => {
                // Parentheses keep `or` below an enclosing `and`.
                write!(f, "({left} or {right})")
            }
        }
    }
}

impl fmt::Display for LabelFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelFilter::Match(matcher) => write_matcher(f, matcher),
            LabelFilter::Number { name, op, value } => write!(f, "{name}{}{}", op.symbol(), format_number(*value)),
            LabelFilter::Duration { name, op, text, .. } | LabelFilter::Bytes { name, op, text, .. } => {
                write!(f, "{name}{}{text}", op.symbol())
            }
            LabelFilter::Ip { name, negated, pattern } => {
                write!(f, "{name}{}ip({})", if *negated { "!=" } else { "=" }, quote(pattern))
            }
        }
    }
}

impl fmt::Display for Grouping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", if self.without { "without" } else { "by" }, self.labels.join(", "))
    }
}

impl fmt::Display for LogRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.log, format_duration_ns(self.range_ns))?;
        if self.offset_ns != 0 {
            write!(f, " offset {}", format_duration_ns(self.offset_ns))?;
        }
        Ok(())
    }
}

impl fmt::Display for MetricExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricExpr::Range { op, parameter, range, grouping } => {
                write!(f, "{}(", op.name())?;
                if let Some(parameter) = parameter {
                    write!(f, "{}, ", format_number(*parameter))?;
                }
                write!(f, "{range})")?;
                if let Some(grouping) = grouping {
                    write!(f, " {grouping}")?;
                }
                Ok(())
            }
            MetricExpr::Vector { op, parameter, grouping, expr } => {
                f.write_str(op.name())?;
                if let Some(grouping) = grouping {
                    write!(f, " {grouping} ")?;
                }
                f.write_str("(")?;
                if let Some(parameter) = parameter {
                    write!(f, "{}, ", format_number(*parameter))?;
                }
                write!(f, "{expr})")
            }
            MetricExpr::Binary { op, return_bool, matching, left, right } => {
                // Parentheses where the tree differs from what precedence and associativity
                // (`^` to the right, the rest to the left) would read.
                let right_assoc = *op == BinaryOp::Pow;
                let wrap = |f: &mut fmt::Formatter<'_>, side: &MetricExpr, is_left: bool| match side {
                    MetricExpr::Binary { op: inner, .. }
                        if inner.precedence() < op.precedence()
                            || (inner.precedence() == op.precedence() && is_left == right_assoc) =>
                    {
                        write!(f, "({side})")
                    }
                    _ => write!(f, "{side}"),
                };
                wrap(f, left, true)?;
                write!(f, " {}", op.symbol())?;
                if *return_bool {
                    f.write_str(" bool")?;
                }
                if let Some(on) = matching.on {
                    write!(f, " {} ({})", if on { "on" } else { "ignoring" }, matching.labels.join(", "))?;
                }
                if let Some(left_side) = matching.group_left {
                    write!(
                        f,
                        " {} ({})",
                        if left_side { "group_left" } else { "group_right" },
                        matching.include.join(", ")
                    )?;
                }
                f.write_str(" ")?;
                wrap(f, right, false)
            }
            MetricExpr::Literal(value) => f.write_str(&format_number(*value)),
            MetricExpr::Vector1(value) => write!(f, "vector({})", format_number(*value)),
            MetricExpr::LabelReplace { expr, dst, replacement, src, regex } => write!(
                f,
                "label_replace({expr}, {}, {}, {}, {})",
                quote(dst),
                quote(replacement),
                quote(src),
                quote(regex)
            ),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Log(log) => write!(f, "{log}"),
            Expr::Metric(metric) => write!(f, "{metric}"),
        }
    }
}
