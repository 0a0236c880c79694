//! The functions templates can call: Go's built-ins (`eq`, `len`, `index`, `printf`, ...), the
//! entry's `__line__` and `__timestamp__`, and the functions Loki documents for `line_format`
//! and `label_format` (sprig's string, math, encoding and date functions, Go's `strings`
//! functions under their Go names, and Loki's own such as `unixToTime` and `alignLeft`).
//! Each has a Go signature ([`Signature`]) the evaluator checks arguments against.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;

use regex::Regex;

use crate::encoding::{BASE64_ALPHABET, base64};

use super::decimal::Decimal;
use super::printf;
use super::time::{self, GoTime, Location};
use super::value::Value;
use super::{MAX_JSON_BYTES, MAX_LIST_ITEMS, MAX_RENDERED_BYTES};

/// Every function a template can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Function {
    And,
    Or,
    Not,
    Len,
    Index,
    Slice,
    Print,
    Printf,
    Println,
    Html,
    Js,
    Urlquery,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Line,
    Timestamp,
    GoToLower,
    GoToUpper,
    GoReplace,
    GoTrim,
    GoTrimLeft,
    GoTrimRight,
    GoTrimSpace,
    GoTrimPrefix,
    GoTrimSuffix,
    Lower,
    Upper,
    Title,
    Trunc,
    Substr,
    Replace,
    Trim,
    TrimAll,
    TrimPrefix,
    TrimSuffix,
    Indent,
    Nindent,
    Repeat,
    Contains,
    HasPrefix,
    HasSuffix,
    Split,
    RegexReplaceAll,
    RegexReplaceAllLiteral,
    Count,
    AlignLeft,
    AlignRight,
    B64Enc,
    B64Dec,
    UrlEncode,
    UrlDecode,
    Bytes,
    Duration,
    DurationSeconds,
    Default,
    FromJson,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Addf,
    Subf,
    Mulf,
    Divf,
    Max,
    Min,
    Maxf,
    Minf,
    Ceil,
    Floor,
    Round,
    Int,
    Float64,
    Now,
    Date,
    ToDate,
    ToDateInZone,
    UnixEpoch,
    UnixEpochMillis,
    UnixEpochNanos,
    UnixToTime,
}

/// Names as templates write them.
const NAMES: &[(&str, Function)] = &[
    ("and", Function::And),
    ("or", Function::Or),
    ("not", Function::Not),
    ("len", Function::Len),
    ("index", Function::Index),
    ("slice", Function::Slice),
    ("print", Function::Print),
    ("printf", Function::Printf),
    ("println", Function::Println),
    ("html", Function::Html),
    ("js", Function::Js),
    ("urlquery", Function::Urlquery),
    ("eq", Function::Eq),
    ("ne", Function::Ne),
    ("lt", Function::Lt),
    ("le", Function::Le),
    ("gt", Function::Gt),
    ("ge", Function::Ge),
    ("__line__", Function::Line),
    ("__timestamp__", Function::Timestamp),
    ("ToLower", Function::GoToLower),
    ("ToUpper", Function::GoToUpper),
    ("Replace", Function::GoReplace),
    ("Trim", Function::GoTrim),
    ("TrimLeft", Function::GoTrimLeft),
    ("TrimRight", Function::GoTrimRight),
    ("TrimSpace", Function::GoTrimSpace),
    ("TrimPrefix", Function::GoTrimPrefix),
    ("TrimSuffix", Function::GoTrimSuffix),
    ("lower", Function::Lower),
    ("upper", Function::Upper),
    ("title", Function::Title),
    ("trunc", Function::Trunc),
    ("substr", Function::Substr),
    ("replace", Function::Replace),
    ("trim", Function::Trim),
    ("trimAll", Function::TrimAll),
    ("trimPrefix", Function::TrimPrefix),
    ("trimSuffix", Function::TrimSuffix),
    ("indent", Function::Indent),
    ("nindent", Function::Nindent),
    ("repeat", Function::Repeat),
    ("contains", Function::Contains),
    ("hasPrefix", Function::HasPrefix),
    ("hasSuffix", Function::HasSuffix),
    ("split", Function::Split),
    ("regexReplaceAll", Function::RegexReplaceAll),
    ("regexReplaceAllLiteral", Function::RegexReplaceAllLiteral),
    ("count", Function::Count),
    ("alignLeft", Function::AlignLeft),
    ("alignRight", Function::AlignRight),
    ("b64enc", Function::B64Enc),
    ("b64dec", Function::B64Dec),
    ("urlencode", Function::UrlEncode),
    ("urldecode", Function::UrlDecode),
    ("bytes", Function::Bytes),
    ("duration", Function::Duration),
    ("duration_seconds", Function::DurationSeconds),
    ("default", Function::Default),
    ("fromJson", Function::FromJson),
    ("add", Function::Add),
    ("sub", Function::Sub),
    ("mul", Function::Mul),
    ("div", Function::Div),
    ("mod", Function::Mod),
    ("addf", Function::Addf),
    ("subf", Function::Subf),
    ("mulf", Function::Mulf),
    ("divf", Function::Divf),
    ("max", Function::Max),
    ("min", Function::Min),
    ("maxf", Function::Maxf),
    ("minf", Function::Minf),
    ("ceil", Function::Ceil),
    ("floor", Function::Floor),
    ("round", Function::Round),
    ("int", Function::Int),
    ("float64", Function::Float64),
    ("now", Function::Now),
    ("date", Function::Date),
    ("toDate", Function::ToDate),
    ("toDateInZone", Function::ToDateInZone),
    ("unixEpoch", Function::UnixEpoch),
    ("unixEpochMillis", Function::UnixEpochMillis),
    ("unixEpochNanos", Function::UnixEpochNanos),
    ("unixToTime", Function::UnixToTime),
];

pub(super) fn lookup(name: &str) -> Option<Function> {
    NAMES.iter().find(|(candidate, _)| *candidate == name).map(|(_, function)| *function)
}

/// The Go type of a parameter, which arguments must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Param {
    /// `interface{}`: anything.
    Any,
    Str,
    Int,
    Float,
    Time,
}

impl Param {
    pub(super) fn go_name(self) -> &'static str {
        match self {
            Param::Any => "interface {}",
            Param::Str => "string",
            Param::Int => "int",
            Param::Float => "float64",
            Param::Time => "time.Time",
        }
    }
}

/// Fixed parameters, then optionally any number of one more type.
pub(super) struct Signature {
    pub fixed: &'static [Param],
    pub variadic: Option<Param>,
}

impl Signature {
    /// The type of the argument at `index`.
    pub(super) fn param(&self, index: usize) -> Param {
        match self.fixed.get(index) {
            Some(param) => *param,
            None => self.variadic.unwrap_or(Param::Any),
        }
    }
}

const fn fixed(fixed: &'static [Param]) -> Signature {
    Signature { fixed, variadic: None }
}

const fn variadic(fixed: &'static [Param], rest: Param) -> Signature {
    Signature { fixed, variadic: Some(rest) }
}

use Param::{Any, Float, Int, Str};

impl Function {
    pub(super) fn name(self) -> &'static str {
        NAMES.iter().find(|(_, function)| *function == self).map_or("?", |(name, _)| name)
    }

    /// Whether the function formats its arguments into one string (their total size is
    /// checked before it runs).
    pub(super) fn formats_arguments(self) -> bool {
        matches!(
            self,
            Function::Print | Function::Printf | Function::Println | Function::Html | Function::Js | Function::Urlquery
        )
    }

    /// Whether the first argument is a regular expression (compiled at parse time when literal).
    pub(super) fn takes_regex(self) -> bool {
        matches!(self, Function::RegexReplaceAll | Function::RegexReplaceAllLiteral | Function::Count)
    }

    pub(super) fn signature(self) -> Signature {
        match self {
            Function::And | Function::Or => variadic(&[Any], Any),
            Function::Not | Function::Len => fixed(&[Any]),
            Function::Index | Function::Slice => variadic(&[Any], Any),
            Function::Print | Function::Println | Function::Html | Function::Js | Function::Urlquery => {
                variadic(&[], Any)
            }
            Function::Printf => variadic(&[Str], Any),
            Function::Eq => variadic(&[Any], Any),
            Function::Ne | Function::Lt | Function::Le | Function::Gt | Function::Ge => fixed(&[Any, Any]),
            Function::Line | Function::Timestamp | Function::Now => fixed(&[]),
            Function::GoToLower
            | Function::GoToUpper
            | Function::GoTrimSpace
            | Function::Lower
            | Function::Upper
            | Function::Title
            | Function::Trim
            | Function::B64Enc
            | Function::B64Dec
            | Function::UrlEncode
            | Function::UrlDecode
            | Function::Bytes
            | Function::Duration
            | Function::DurationSeconds
            | Function::FromJson
            | Function::UnixToTime => fixed(&[Str]),
            Function::GoReplace => fixed(&[Str, Str, Str, Int]),
            Function::GoTrim
            | Function::GoTrimLeft
            | Function::GoTrimRight
            | Function::GoTrimPrefix
            | Function::GoTrimSuffix
            | Function::TrimAll
            | Function::TrimPrefix
            | Function::TrimSuffix
            | Function::Contains
            | Function::HasPrefix
            | Function::HasSuffix
            | Function::Split
            | Function::Count
            | Function::ToDate => fixed(&[Str, Str]),
            Function::Trunc
            | Function::Indent
            | Function::Nindent
            | Function::Repeat
            | Function::AlignLeft
            | Function::AlignRight => fixed(&[Int, Str]),
            Function::Substr => fixed(&[Int, Int, Str]),
            Function::Replace
            | Function::RegexReplaceAll
            | Function::RegexReplaceAllLiteral
            | Function::ToDateInZone => fixed(&[Str, Str, Str]),
            Function::Default => variadic(&[Any], Any),
            Function::Add | Function::Addf => variadic(&[], Any),
            Function::Sub | Function::Div | Function::Mod => fixed(&[Any, Any]),
            Function::Mul
            | Function::Subf
            | Function::Mulf
            | Function::Divf
            | Function::Max
            | Function::Min
            | Function::Maxf
            | Function::Minf => variadic(&[Any], Any),
            Function::Ceil | Function::Floor | Function::Int | Function::Float64 => fixed(&[Any]),
            Function::Round => variadic(&[Any, Int], Float),
            Function::Date => fixed(&[Str, Any]),
            Function::UnixEpoch | Function::UnixEpochMillis | Function::UnixEpochNanos => fixed(&[Param::Time]),
        }
    }
}

/// What a function may use besides its arguments.
pub(super) struct CallContext<'r, 'c> {
    pub line: &'r str,
    pub timestamp_ns: i64,
    /// The regular expression compiled at parse time, for functions that take one.
    pub regex: Option<&'c Regex>,
}

/// Compiles a Go regular expression for `count` and the `regexReplaceAll` pair.
pub(super) fn compile_regex(pattern: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(pattern).size_limit(1 << 22).build().map_err(|error| {
        format!("error parsing regexp: {}", error.to_string().lines().last().unwrap_or("invalid pattern"))
    })
}

/// The string argument at `index`; the evaluator has checked it is one.
fn text<'a>(args: &'a [Value<'_>], index: usize) -> &'a str {
    args.get(index).and_then(Value::as_str).unwrap_or("")
}

/// The integer argument at `index`; the evaluator has checked it is one.
fn integer(args: &[Value<'_>], index: usize) -> i64 {
    match args.get(index) {
        Some(Value::Int(value)) => *value,
        _ => 0,
    }
}

/// The time argument at `index`; the evaluator has checked it is one.
fn time_arg(args: &[Value<'_>], index: usize) -> GoTime {
    match args.get(index) {
        Some(Value::Time(time)) => *time,
        _ => GoTime::zero(),
    }
}

/// A part of a string argument, borrowed when the argument is.
fn part<'r>(value: &Value<'r>, pick: impl for<'s> FnOnce(&'s str) -> &'s str) -> Value<'r> {
    match value {
        Value::Str(Cow::Borrowed(text)) => Value::borrowed(pick(text)),
        Value::Str(Cow::Owned(text)) => Value::owned(pick(text).to_string()),
        _ => Value::borrowed(""),
    }
}

/// Refuses a result longer than a render may be.
fn check_size(bytes: usize) -> Result<(), String> {
    if bytes > MAX_RENDERED_BYTES {
        return Err(format!("result of {bytes} bytes exceeds the limit of {MAX_RENDERED_BYTES} bytes"));
    }
    Ok(())
}

/// The largest char boundary at or below `index`.
fn floor_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// The smallest char boundary at or above `index`.
fn ceil_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index += 1;
    }
    index
}

/// Calls a function (other than `and` and `or`, which the evaluator runs itself) on arguments
/// that match its signature.
pub(super) fn call<'r>(
    function: Function,
    args: &[Value<'r>],
    context: &CallContext<'r, '_>,
) -> Result<Value<'r>, String> {
    match function {
        Function::And | Function::Or => Ok(args.last().cloned().unwrap_or(Value::Nil)),
        Function::Not => Ok(Value::Bool(!args[0].truth())),
        Function::Len => length(&args[0]).map(Value::Int),
        Function::Index => index(&args[0], &args[1..]),
        Function::Slice => slice(&args[0], &args[1..]),
        Function::Print => {
            let mut out = String::new();
            printf::sprint(&mut out, args);
            Ok(Value::owned(out))
        }
        Function::Println => {
            let mut out = String::new();
            printf::sprintln(&mut out, args);
            Ok(Value::owned(out))
        }
        Function::Printf => {
            let mut out = String::new();
            printf::sprintf(&mut out, text(args, 0), &args[1..]);
            check_size(out.len())?;
            Ok(Value::owned(out))
        }
        Function::Html => Ok(Value::owned(html_escape(&joined(args)))),
        Function::Js => Ok(Value::owned(js_escape(&joined(args)))),
        Function::Urlquery => Ok(Value::owned(query_escape(&joined(args)))),
        Function::Eq => {
            if args.len() < 2 {
                return Err("missing argument for comparison".to_string());
            }
            for other in &args[1..] {
                if equal(&args[0], other)? {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }
        Function::Ne => Ok(Value::Bool(!equal(&args[0], &args[1])?)),
        Function::Lt => Ok(Value::Bool(less(&args[0], &args[1])?)),
        Function::Le => Ok(Value::Bool(less(&args[0], &args[1])? || equal(&args[0], &args[1])?)),
        Function::Gt => Ok(Value::Bool(!(less(&args[0], &args[1])? || equal(&args[0], &args[1])?))),
        Function::Ge => Ok(Value::Bool(!less(&args[0], &args[1])?)),
        Function::Line => Ok(Value::borrowed(context.line)),
        Function::Timestamp => Ok(Value::Time(GoTime::from_unix_nanos(context.timestamp_ns))),
        Function::GoToLower | Function::Lower => Ok(Value::owned(text(args, 0).to_lowercase())),
        Function::GoToUpper | Function::Upper => Ok(Value::owned(text(args, 0).to_uppercase())),
        Function::GoReplace => replace(text(args, 0), text(args, 1), text(args, 2), integer(args, 3)),
        Function::GoTrim => Ok(part(&args[0], |s| s.trim_matches(|c| text(args, 1).contains(c)))),
        Function::GoTrimLeft => Ok(part(&args[0], |s| s.trim_start_matches(|c| text(args, 1).contains(c)))),
        Function::GoTrimRight => Ok(part(&args[0], |s| s.trim_end_matches(|c| text(args, 1).contains(c)))),
        Function::GoTrimSpace | Function::Trim => Ok(part(&args[0], str::trim)),
        Function::GoTrimPrefix => Ok(part(&args[0], |s| s.strip_prefix(text(args, 1)).unwrap_or(s))),
        Function::GoTrimSuffix => Ok(part(&args[0], |s| s.strip_suffix(text(args, 1)).unwrap_or(s))),
        Function::Title => Ok(Value::owned(title(text(args, 0)))),
        Function::Trunc => {
            let count = integer(args, 0);
            Ok(part(&args[1], |s| {
                let length = s.len() as i64;
                if count < 0 && length + count > 0 {
                    &s[ceil_boundary(s, (length + count) as usize)..]
                } else if count >= 0 && length > count {
                    &s[..floor_boundary(s, count as usize)]
                } else {
                    s
                }
            }))
        }
        Function::Substr => substr(integer(args, 0), integer(args, 1), &args[2]),
        Function::Replace => replace(text(args, 2), text(args, 0), text(args, 1), -1),
        Function::TrimAll => Ok(part(&args[1], |s| s.trim_matches(|c| text(args, 0).contains(c)))),
        Function::TrimPrefix => Ok(part(&args[1], |s| s.strip_prefix(text(args, 0)).unwrap_or(s))),
        Function::TrimSuffix => Ok(part(&args[1], |s| s.strip_suffix(text(args, 0)).unwrap_or(s))),
        Function::Indent | Function::Nindent => {
            let spaces = usize::try_from(integer(args, 0)).map_err(|_| "strings: negative Repeat count".to_string())?;
            let source = text(args, 1);
            let lines = source.matches('\n').count() + 1;
            check_size(source.len().saturating_add(spaces.saturating_mul(lines)))?;
            let pad = " ".repeat(spaces);
            let mut out = String::with_capacity(source.len() + spaces * lines + 1);
            if function == Function::Nindent {
                out.push('\n');
            }
            out.push_str(&pad);
            out.push_str(&source.replace('\n', &format!("\n{pad}")));
            Ok(Value::owned(out))
        }
        Function::Repeat => {
            let count = usize::try_from(integer(args, 0)).map_err(|_| "strings: negative Repeat count".to_string())?;
            let source = text(args, 1);
            check_size(source.len().saturating_mul(count))?;
            Ok(Value::owned(source.repeat(count)))
        }
        Function::Contains => Ok(Value::Bool(text(args, 1).contains(text(args, 0)))),
        Function::HasPrefix => Ok(Value::Bool(text(args, 1).starts_with(text(args, 0)))),
        Function::HasSuffix => Ok(Value::Bool(text(args, 1).ends_with(text(args, 0)))),
        Function::Split => split(text(args, 0), &args[1]),
        Function::RegexReplaceAll | Function::RegexReplaceAllLiteral => {
            let compiled;
            let regex = match context.regex {
                Some(regex) => regex,
                None => {
                    compiled = compile_regex(text(args, 0))?;
                    &compiled
                }
            };
            let expand = function == Function::RegexReplaceAll;
            match regex_replace(regex, text(args, 1), text(args, 2), expand)? {
                Some(replaced) => Ok(Value::owned(replaced)),
                None => Ok(args[1].clone()),
            }
        }
        Function::Count => {
            let compiled;
            let regex = match context.regex {
                Some(regex) => regex,
                None => {
                    compiled = compile_regex(text(args, 0))?;
                    &compiled
                }
            };
            Ok(Value::Int(regex.find_iter(text(args, 1)).count() as i64))
        }
        Function::AlignLeft | Function::AlignRight => {
            align(function == Function::AlignLeft, integer(args, 0), &args[1])
        }
        Function::B64Enc => Ok(Value::owned(base64(text(args, 0).as_bytes()))),
        Function::B64Dec => Ok(Value::owned(match base64_decode(text(args, 0).as_bytes()) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(offset) => format!("illegal base64 data at input byte {offset}"),
        })),
        Function::UrlEncode => Ok(Value::owned(query_escape(text(args, 0)))),
        Function::UrlDecode => query_unescape(text(args, 0)).map(Value::owned),
        Function::Bytes => parse_bytes(text(args, 0)).map(Value::Int),
        Function::Duration | Function::DurationSeconds => {
            let seconds = time::parse_duration_ns(text(args, 0))
                .map_or(0.0, |ns| (ns / 1_000_000_000) as f64 + (ns % 1_000_000_000) as f64 / 1e9);
            Ok(Value::Float(seconds))
        }
        Function::Default => {
            let given = args.get(1).filter(|value| value.truth());
            Ok(given.unwrap_or(&args[0]).clone())
        }
        Function::FromJson => {
            let document = text(args, 0);
            if document.len() > MAX_JSON_BYTES {
                return Err(format!(
                    "document of {} bytes exceeds the limit of {MAX_JSON_BYTES} bytes",
                    document.len()
                ));
            }
            Ok(match serde_json::from_str::<serde_json::Value>(document) {
                Ok(json) => from_json(json),
                Err(_) => Value::borrowed(""),
            })
        }
        Function::Add => Ok(Value::Int(args.iter().fold(0i64, |sum, value| sum.wrapping_add(value.to_int64())))),
        Function::Sub => Ok(Value::Int(args[0].to_int64().wrapping_sub(args[1].to_int64()))),
        Function::Mul => Ok(Value::Int(
            args[1..].iter().fold(args[0].to_int64(), |product, value| product.wrapping_mul(value.to_int64())),
        )),
        Function::Div | Function::Mod => {
            let divisor = args[1].to_int64();
            if divisor == 0 {
                return Err("runtime error: integer divide by zero".to_string());
            }
            let dividend = args[0].to_int64();
            Ok(Value::Int(if function == Function::Div {
                dividend.wrapping_div(divisor)
            } else {
                dividend.wrapping_rem(divisor)
            }))
        }
        Function::Addf => decimal_fold(Decimal::from_f64(0.0)?, args, Decimal::add, |a, b| a + b),
        Function::Subf => {
            decimal_fold(Decimal::from_f64(args[0].to_float64())?, &args[1..], Decimal::sub, |a, b| a - b)
        }
        Function::Mulf => {
            decimal_fold(Decimal::from_f64(args[0].to_float64())?, &args[1..], Decimal::mul, |a, b| a * b)
        }
        Function::Divf => {
            let mut quotient = Decimal::from_f64(args[0].to_float64())?;
            for value in &args[1..] {
                let divisor = Decimal::from_f64(value.to_float64())?;
                quotient = match quotient.div(divisor)? {
                    Some(exact) => exact,
                    None => Decimal::from_f64(quotient.to_f64() / divisor.to_f64())?,
                };
            }
            Ok(Value::Float(quotient.to_f64()))
        }
        Function::Max => Ok(Value::Int(args.iter().map(Value::to_int64).max().unwrap_or(0))),
        Function::Min => Ok(Value::Int(args.iter().map(Value::to_int64).min().unwrap_or(0))),
        Function::Maxf => Ok(Value::Float(
            args[1..].iter().fold(args[0].to_float64(), |best, value| go_max(best, value.to_float64())),
        )),
        Function::Minf => Ok(Value::Float(
            args[1..].iter().fold(args[0].to_float64(), |best, value| go_min(best, value.to_float64())),
        )),
        Function::Ceil => Ok(Value::Float(args[0].to_float64().ceil())),
        Function::Floor => Ok(Value::Float(args[0].to_float64().floor())),
        Function::Round => {
            let round_on = match args.get(2) {
                Some(Value::Float(value)) => *value,
                _ => 0.5,
            };
            Ok(Value::Float(round(args[0].to_float64(), integer(args, 1), round_on)))
        }
        Function::Int => Ok(Value::Int(args[0].to_int64())),
        Function::Float64 => Ok(Value::Float(args[0].to_float64())),
        Function::Now => Ok(Value::Time(GoTime::now())),
        Function::Date => {
            let instant = match &args[1] {
                Value::Time(time) => *time,
                Value::Int(seconds) => GoTime::from_unix(*seconds, 0),
                // sprig formats the current time when given something that is not a time.
                _ => GoTime::now(),
            };
            let mut out = String::new();
            instant.in_location(Location::UTC).format(text(args, 0), &mut out);
            Ok(Value::owned(out))
        }
        Function::ToDate => Ok(Value::Time(
            time::parse_in_location(text(args, 0), text(args, 1), Location::UTC).unwrap_or_else(|_| GoTime::zero()),
        )),
        Function::ToDateInZone => {
            let location = time::load_location(text(args, 1))?;
            Ok(Value::Time(
                time::parse_in_location(text(args, 0), text(args, 2), location).unwrap_or_else(|_| GoTime::zero()),
            ))
        }
        Function::UnixEpoch => Ok(Value::owned(time_arg(args, 0).unix_seconds.to_string())),
        Function::UnixEpochMillis => Ok(Value::owned(time_arg(args, 0).unix_millis().to_string())),
        Function::UnixEpochNanos => Ok(Value::owned(time_arg(args, 0).unix_nanos().to_string())),
        Function::UnixToTime => unix_to_time(text(args, 0)).map(Value::Time),
    }
}

/// Go's `math.Max`: NaN wins, +0 beats -0.
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        return f64::NAN;
    }
    if a == b && a == 0.0 {
        return if a.is_sign_negative() { b } else { a };
    }
    a.max(b)
}

/// Go's `math.Min`: NaN wins, -0 beats +0.
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        return f64::NAN;
    }
    if a == b && a == 0.0 {
        return if a.is_sign_negative() { a } else { b };
    }
    a.min(b)
}

/// sprig's `round`: scale by 10^places, round up when the fraction reaches `round_on`.
fn round(value: f64, places: i64, round_on: f64) -> f64 {
    let scale = 10f64.powf(places as f64);
    let scaled = scale * value;
    let fraction = scaled.fract();
    let rounded = if fraction >= round_on { scaled.ceil() } else { scaled.floor() };
    rounded / scale
}

/// Folds floats as decimals, falling back to float arithmetic if a decimal would overflow.
fn decimal_fold<'r>(
    start: Decimal,
    args: &[Value<'r>],
    exact: fn(Decimal, Decimal) -> Option<Decimal>,
    approximate: fn(f64, f64) -> f64,
) -> Result<Value<'r>, String> {
    let mut total = start;
    for value in args {
        let operand = Decimal::from_f64(value.to_float64())?;
        total = match exact(total, operand) {
            Some(result) => result,
            None => Decimal::from_f64(approximate(total.to_f64(), operand.to_f64()))?,
        };
    }
    Ok(Value::Float(total.to_f64()))
}

/// Go's `len`.
fn length(value: &Value<'_>) -> Result<i64, String> {
    match value {
        Value::Str(text) => Ok(text.len() as i64),
        Value::List(items) => Ok(items.len() as i64),
        Value::Map(entries) => Ok(entries.len() as i64),
        Value::Labels(labels) => Ok(labels.len() as i64),
        Value::Nil => Err("len of nil pointer".to_string()),
        other => Err(format!("len of type {}", other.type_name())),
    }
}

/// An index into something of `length` elements.
fn index_number(value: &Value<'_>, length: usize, inclusive: bool) -> Result<usize, String> {
    match value {
        Value::Int(index) => {
            let limit = if inclusive { length } else { length.saturating_sub(1) };
            if *index < 0 || *index as u64 > limit as u64 || (!inclusive && length == 0) {
                return Err(format!("index out of range: {index}"));
            }
            Ok(*index as usize)
        }
        Value::Nil => Err("cannot index slice/array with nil".to_string()),
        other => Err(format!("cannot index slice/array with type {}", other.type_name())),
    }
}

/// Go's `index`.
fn index<'r>(item: &Value<'r>, indexes: &[Value<'r>]) -> Result<Value<'r>, String> {
    if matches!(item, Value::Nil) {
        return Err("index of untyped nil".to_string());
    }
    let mut current = item.clone();
    for index in indexes {
        current = match &current {
            Value::List(items) => items[index_number(index, items.len(), false)?].clone(),
            Value::Str(text) => Value::Int(i64::from(text.as_bytes()[index_number(index, text.len(), false)?])),
            Value::Map(entries) => match index {
                Value::Str(key) => entries.get(key.as_ref()).cloned().unwrap_or(Value::Nil),
                other => return Err(format!("value has type {}; should be string", other.type_name())),
            },
            Value::Labels(labels) => match index {
                Value::Str(key) => Value::borrowed(super::value::label(labels, key).unwrap_or("")),
                other => return Err(format!("value has type {}; should be string", other.type_name())),
            },
            Value::Nil => return Err("index of nil pointer".to_string()),
            other => return Err(format!("can't index item of type {}", other.type_name())),
        };
    }
    Ok(current)
}

/// Go's `slice`.
fn slice<'r>(item: &Value<'r>, indexes: &[Value<'r>]) -> Result<Value<'r>, String> {
    if indexes.len() > 3 {
        return Err(format!("too many slice indexes: {}", indexes.len()));
    }
    let length = match item {
        Value::Nil => return Err("slice of untyped nil".to_string()),
        Value::Str(text) => {
            if indexes.len() == 3 {
                return Err("cannot 3-index slice a string".to_string());
            }
            text.len()
        }
        Value::List(items) => items.len(),
        other => return Err(format!("can't slice item of type {}", other.type_name())),
    };
    let mut bounds = [0, length, length];
    for (position, index) in indexes.iter().enumerate() {
        bounds[position] = index_number(index, length, true)?;
    }
    if bounds[0] > bounds[1] {
        return Err(format!("invalid slice index: {} > {}", bounds[0], bounds[1]));
    }
    if indexes.len() == 3 && bounds[1] > bounds[2] {
        return Err(format!("invalid slice index: {} > {}", bounds[1], bounds[2]));
    }
    Ok(match item {
        Value::Str(text) => {
            let bytes = &text.as_bytes()[bounds[0]..bounds[1]];
            let on_boundaries = text.is_char_boundary(bounds[0]) && text.is_char_boundary(bounds[1]);
            match text {
                Cow::Borrowed(original) if on_boundaries => Value::borrowed(&original[bounds[0]..bounds[1]]),
                _ => Value::owned(String::from_utf8_lossy(bytes).into_owned()),
            }
        }
        Value::List(items) => Value::List(Rc::new(items[bounds[0]..bounds[1]].to_vec())),
        _ => Value::Nil,
    })
}

/// Which comparisons a value takes part in (Go's `basicKind`).
#[derive(PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Float,
    Str,
    Nil,
    Other,
}

fn kind(value: &Value<'_>) -> Kind {
    match value {
        Value::Bool(_) => Kind::Bool,
        Value::Int(_) => Kind::Int,
        Value::Float(_) => Kind::Float,
        Value::Str(_) => Kind::Str,
        Value::Nil => Kind::Nil,
        _ => Kind::Other,
    }
}

/// Go's `eq` for one pair.
fn equal(left: &Value<'_>, right: &Value<'_>) -> Result<bool, String> {
    let (left_kind, right_kind) = (kind(left), kind(right));
    if left_kind != right_kind {
        if left_kind == Kind::Nil || right_kind == Kind::Nil {
            return Ok(false);
        }
        return Err("incompatible types for comparison".to_string());
    }
    Ok(match (left, right) {
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Int(a), Value::Int(b)) => a == b,
        (Value::Float(a), Value::Float(b)) => a == b,
        (Value::Str(a), Value::Str(b)) => a == b,
        (Value::Nil, Value::Nil) => true,
        (Value::Time(a), Value::Time(b)) => a == b,
        (a, b) if a.type_name() != b.type_name() => return Err("incompatible types for comparison".to_string()),
        (a, _) => return Err(format!("non-comparable type {}", a.type_name())),
    })
}

/// Go's `lt`.
fn less(left: &Value<'_>, right: &Value<'_>) -> Result<bool, String> {
    let (left_kind, right_kind) = (kind(left), kind(right));
    if matches!(left_kind, Kind::Nil | Kind::Other) || matches!(right_kind, Kind::Nil | Kind::Other) {
        return Err("invalid type for comparison".to_string());
    }
    if left_kind != right_kind {
        return Err("incompatible types for comparison".to_string());
    }
    match (left, right) {
        (Value::Int(a), Value::Int(b)) => Ok(a < b),
        (Value::Float(a), Value::Float(b)) => Ok(a < b),
        (Value::Str(a), Value::Str(b)) => Ok(a < b),
        _ => Err("invalid type for comparison".to_string()),
    }
}

/// The argument of `html`, `js` and `urlquery`: a lone string as it is, else `fmt.Sprint`.
fn joined(args: &[Value<'_>]) -> String {
    if let [Value::Str(text)] = args {
        return text.to_string();
    }
    let mut out = String::new();
    printf::sprint(&mut out, args);
    out
}

/// Go's `strings.Replace`: at most `limit` replacements, all when negative.
fn replace<'r>(source: &str, old: &str, new: &str, limit: i64) -> Result<Value<'r>, String> {
    let most = if old.is_empty() {
        source.len().saturating_add(source.len().saturating_add(1).saturating_mul(new.len()))
    } else {
        source.len().saturating_add((source.len() / old.len()).saturating_mul(new.len()))
    };
    check_size(most)?;
    Ok(Value::owned(match usize::try_from(limit) {
        Ok(limit) => source.replacen(old, new, limit),
        Err(_) => source.replace(old, new),
    }))
}

/// Go's `strings.Title`: the first letter of each word in upper case.
fn title(source: &str) -> String {
    let is_separator = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else if c.is_alphanumeric() {
            false
        } else {
            c.is_whitespace()
        }
    };
    let mut out = String::with_capacity(source.len());
    let mut previous = ' ';
    for c in source.chars() {
        if is_separator(previous) {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        previous = c;
    }
    out
}

/// sprig's `substr`: byte offsets, `start < 0` means from the start, `end < 0` or past the
/// end means to the end; other offsets out of range are Go's slice errors.
fn substr<'r>(start: i64, end: i64, source: &Value<'r>) -> Result<Value<'r>, String> {
    let length = source.as_str().unwrap_or("").len() as i64;
    let out_of_range = |detail: String| Err(format!("runtime error: slice bounds out of range {detail}"));
    let (from, to) = if start < 0 {
        if end < 0 || end > length {
            return out_of_range(format!("[:{end}] with length {length}"));
        }
        (0, end)
    } else if end < 0 || end > length {
        if start > length {
            return out_of_range(format!("[{start}:{length}]"));
        }
        (start, length)
    } else {
        if start > end {
            return out_of_range(format!("[{start}:{end}]"));
        }
        (start, end)
    };
    Ok(part(source, |s| {
        let from = floor_boundary(s, from as usize);
        let to = floor_boundary(s, to as usize).max(from);
        &s[from..to]
    }))
}

/// `split`: the parts of a string around a separator (each character for an empty one).
fn split<'r>(separator: &str, source: &Value<'r>) -> Result<Value<'r>, String> {
    let whole = source.as_str().unwrap_or("");
    let parts = if separator.is_empty() { whole.chars().count() } else { whole.matches(separator).count() + 1 };
    if parts > MAX_LIST_ITEMS {
        return Err(format!("{parts} parts exceed the limit of {MAX_LIST_ITEMS}"));
    }
    let pieces: Vec<Value<'r>> = match source {
        Value::Str(Cow::Borrowed(text)) => {
            if separator.is_empty() {
                text.char_indices().map(|(at, c)| Value::borrowed(&text[at..at + c.len_utf8()])).collect()
            } else {
                text.split(separator).map(Value::borrowed).collect()
            }
        }
        other => {
            let text = other.as_str().unwrap_or("");
            if separator.is_empty() {
                text.chars().map(|c| Value::owned(c.to_string())).collect()
            } else {
                text.split(separator).map(|piece| Value::owned(piece.to_string())).collect()
            }
        }
    };
    Ok(Value::List(Rc::new(pieces)))
}

/// Replaces every match, expanding `$1`, `${name}` in the replacement unless `literal`;
/// `None` when nothing matched. The size is checked as the result grows.
fn regex_replace(regex: &Regex, source: &str, replacement: &str, expand: bool) -> Result<Option<String>, String> {
    let mut out = String::new();
    let mut copied = 0;
    let mut matched = false;
    if expand {
        for captures in regex.captures_iter(source) {
            let Some(whole) = captures.get(0) else { continue };
            matched = true;
            out.push_str(&source[copied..whole.start()]);
            captures.expand(replacement, &mut out);
            copied = whole.end();
            check_size(out.len())?;
        }
    } else {
        for found in regex.find_iter(source) {
            matched = true;
            out.push_str(&source[copied..found.start()]);
            out.push_str(replacement);
            copied = found.end();
            check_size(out.len())?;
        }
    }
    if !matched {
        return Ok(None);
    }
    out.push_str(&source[copied..]);
    check_size(out.len())?;
    Ok(Some(out))
}

/// `alignLeft` and `alignRight`: cut or pad with spaces to `count` characters, keeping the
/// start (left) or the end (right).
fn align<'r>(left: bool, count: i64, source: &Value<'r>) -> Result<Value<'r>, String> {
    let text = source.as_str().unwrap_or("");
    let characters = text.chars().count();
    let Ok(count) = usize::try_from(count) else {
        return Ok(source.clone());
    };
    if count == characters {
        return Ok(source.clone());
    }
    if count > characters {
        check_size(text.len() + count - characters)?;
        let padding = " ".repeat(count - characters);
        return Ok(Value::owned(if left { format!("{text}{padding}") } else { format!("{padding}{text}") }));
    }
    Ok(part(source, |s| {
        if left {
            let end = s.char_indices().nth(count).map_or(s.len(), |(at, _)| at);
            &s[..end]
        } else {
            let start = s.char_indices().nth(characters - count).map_or(s.len(), |(at, _)| at);
            &s[start..]
        }
    }))
}

/// Standard base64 with padding, newlines ignored; on error, the offset Go's decoder reports.
fn base64_decode(input: &[u8]) -> Result<Vec<u8>, usize> {
    let decode_symbol = |byte: u8| BASE64_ALPHABET.iter().position(|&symbol| symbol == byte).map(|value| value as u32);
    let skip_newlines = |mut at: usize| {
        while at < input.len() && matches!(input[at], b'\n' | b'\r') {
            at += 1;
        }
        at
    };
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let mut at = 0;
    loop {
        let mut group = 0u32;
        let mut count = 0usize;
        let mut padded = false;
        while count < 4 {
            at = skip_newlines(at);
            if at == input.len() {
                if count == 0 {
                    return Ok(out);
                }
                return Err(at - count);
            }
            let byte = input[at];
            at += 1;
            if byte == b'=' {
                match count {
                    0 | 1 => return Err(at - 1),
                    2 => {
                        at = skip_newlines(at);
                        if at == input.len() {
                            return Err(input.len());
                        }
                        if input[at] != b'=' {
                            return Err(at - 1);
                        }
                        at += 1;
                    }
                    _ => {}
                }
                at = skip_newlines(at);
                if at < input.len() {
                    return Err(at);
                }
                padded = true;
                break;
            }
            let value = decode_symbol(byte).ok_or(at - 1)?;
            group |= value << (18 - 6 * count);
            count += 1;
        }
        let produced = if padded { count - 1 } else { 3 };
        for position in 0..produced {
            out.push((group >> (16 - 8 * position)) as u8);
        }
        if padded {
            return Ok(out);
        }
    }
}

/// Go's `url.QueryEscape`.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(byte)),
            b' ' => out.push('+'),
            other => {
                let _ = write!(out, "%{other:02X}");
            }
        }
    }
    out
}

/// Go's `url.QueryUnescape`.
fn query_unescape(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'%' => {
                let hex = bytes.get(at + 1..at + 3).filter(|pair| pair.iter().all(u8::is_ascii_hexdigit));
                let Some(hex) = hex else {
                    let shown: String = text[at..].chars().take(3).collect();
                    return Err(format!("invalid URL escape {shown:?}"));
                };
                let value = std::str::from_utf8(hex).ok().and_then(|pair| u8::from_str_radix(pair, 16).ok());
                out.push(value.unwrap_or(0));
                at += 3;
            }
            b'+' => {
                out.push(b' ');
                at += 1;
            }
            other => {
                out.push(other);
                at += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Go's `template.HTMLEscapeString`.
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Go's `template.JSEscapeString`.
fn js_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c if !c.is_ascii() && (c.is_control() || (c.is_whitespace() && c != ' ')) => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A humanized byte size (`10MB`, `1.5 KiB`, `2,048`) in bytes, with SI and IEC units.
fn parse_bytes(text: &str) -> Result<i64, String> {
    let number_length = text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ',')).unwrap_or(text.len());
    let number: String = text[..number_length].chars().filter(|&c| c != ',').collect();
    let value: f64 = number.parse().map_err(|_| format!("strconv.ParseFloat: parsing {number:?}: invalid syntax"))?;
    let unit = text[number_length..].trim().to_ascii_lowercase();
    let multiplier: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "p" | "pb" => 1e15,
        "e" | "eb" => 1e18,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024f64.powi(2),
        "gi" | "gib" => 1024f64.powi(3),
        "ti" | "tib" => 1024f64.powi(4),
        "pi" | "pib" => 1024f64.powi(5),
        "ei" | "eib" => 1024f64.powi(6),
        other => return Err(format!("unhandled size name: {other:?}")),
    };
    let bytes = value * multiplier;
    if bytes >= i64::MAX as f64 {
        return Err(format!("too large: {text:?}"));
    }
    Ok(bytes as i64)
}

/// `unixToTime`: an epoch in days (5 digits), seconds (10), milliseconds (13), microseconds
/// (16) or nanoseconds (19).
fn unix_to_time(epoch: &str) -> Result<GoTime, String> {
    let value: i64 = epoch.parse().map_err(|_| format!("unable to parse time {epoch:?}: invalid syntax"))?;
    let digits = epoch.trim_start_matches(['-', '+']).len();
    match digits {
        5 => Ok(GoTime::from_unix(value.saturating_mul(86_400), 0)),
        10 => Ok(GoTime::from_unix(value, 0)),
        13 => Ok(GoTime::from_unix(value.div_euclid(1000), (value.rem_euclid(1000) * 1_000_000) as u32)),
        16 => Ok(GoTime::from_unix(value.div_euclid(1_000_000), (value.rem_euclid(1_000_000) * 1000) as u32)),
        19 => Ok(GoTime::from_unix_nanos(value)),
        _ => Err(format!(
            "unable to parse time {epoch:?}: want 5 (days), 10 (seconds), 13 (milliseconds), 16 (microseconds) or 19 (nanoseconds) digits"
        )),
    }
}

/// A JSON document as template values (numbers are floats, as Go decodes them).
fn from_json<'r>(json: serde_json::Value) -> Value<'r> {
    match json {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(value) => Value::Bool(value),
        serde_json::Value::Number(number) => Value::Float(number.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(text) => Value::owned(text),
        serde_json::Value::Array(items) => Value::List(Rc::new(items.into_iter().map(from_json).collect())),
        serde_json::Value::Object(entries) => Value::Map(Rc::new(
            entries.into_iter().map(|(key, value)| (key, from_json(value))).collect::<BTreeMap<_, _>>(),
        )),
    }
}

/// The methods of Go's `time.Time` a template can call (`{{ __timestamp__.Unix }}`); `None`
/// for a name that is not one. `args` have been checked against [`time_method_params`].
pub(super) fn time_method<'r>(time: &GoTime, name: &str, args: &[Value<'r>]) -> Option<Value<'r>> {
    Some(match name {
        "Unix" => Value::Int(time.unix_seconds),
        "UnixMilli" => Value::Int(time.unix_millis()),
        "UnixMicro" => Value::Int(time.unix_micros()),
        "UnixNano" => Value::Int(time.unix_nanos()),
        "Year" => Value::Int(time.year()),
        "Month" => Value::borrowed(time.month_name()),
        "Day" => Value::Int(i64::from(time.day())),
        "Hour" => Value::Int(i64::from(time.hour())),
        "Minute" => Value::Int(i64::from(time.minute())),
        "Second" => Value::Int(i64::from(time.second())),
        "Nanosecond" => Value::Int(i64::from(time.nanosecond)),
        "YearDay" => Value::Int(i64::from(time.year_day())),
        "Weekday" => Value::borrowed(time.weekday_name()),
        "IsZero" => Value::Bool(time.is_zero()),
        "UTC" | "Local" => Value::Time(time.in_location(Location::UTC)),
        "String" => {
            let mut out = String::new();
            time.write_string(&mut out);
            Value::owned(out)
        }
        "Format" => {
            let mut out = String::new();
            time.format(text(args, 0), &mut out);
            Value::owned(out)
        }
        _ => return None,
    })
}

/// The parameters of a time method.
pub(super) fn time_method_params(name: &str) -> &'static [Param] {
    if name == "Format" { &[Str] } else { &[] }
}
