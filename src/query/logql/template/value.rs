//! Template values (string, integer, float, bool, time, list, map, nil, and the entry's labels
//! as the template's data), Go's truth, and the number conversions sprig applies to arguments:
//! `toInt64` and `toFloat64` read strings with Go's `strconv` rules and give 0 when they cannot.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::rc::Rc;

use super::time::GoTime;

/// A value during one render. Strings borrow from the template or the entry when they can.
#[derive(Debug, Clone)]
pub(super) enum Value<'r> {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'r, str>),
    Time(GoTime),
    List(Rc<Vec<Value<'r>>>),
    Map(Rc<BTreeMap<String, Value<'r>>>),
    /// The entry's labels, sorted by name: the template's data (`.`, `$`).
    Labels(&'r [(&'r str, &'r str)]),
}

impl<'r> Value<'r> {
    pub(super) fn borrowed(text: &'r str) -> Value<'r> {
        Value::Str(Cow::Borrowed(text))
    }

    pub(super) fn owned(text: String) -> Value<'r> {
        Value::Str(Cow::Owned(text))
    }

    /// The Go type the value would have in Loki's templates, for messages and `%T`.
    pub(super) fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::Time(_) => "time.Time",
            Value::List(_) => "[]interface {}",
            Value::Map(_) => "map[string]interface {}",
            Value::Labels(_) => "map[string]string",
        }
    }

    /// Go's truth for `if`, `with`, `and`, `or`, `not`: false, 0, "", empty lists and maps and
    /// nil are false; everything else (times included) is true.
    pub(super) fn truth(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(value) => *value,
            Value::Int(value) => *value != 0,
            Value::Float(value) => *value != 0.0,
            Value::Str(text) => !text.is_empty(),
            Value::Time(_) => true,
            Value::List(items) => !items.is_empty(),
            Value::Map(entries) => !entries.is_empty(),
            Value::Labels(labels) => !labels.is_empty(),
        }
    }

    /// The string, when the value is one.
    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(text) => Some(text),
            _ => None,
        }
    }

    /// sprig's `toInt64`: numbers truncate, bools are 0 or 1, strings parse as Go integer
    /// literals (after dropping a zero fraction such as `.00`), anything else is 0.
    pub(super) fn to_int64(&self) -> i64 {
        match self {
            Value::Int(value) => *value,
            Value::Float(value) => *value as i64,
            Value::Bool(value) => i64::from(*value),
            Value::Str(text) => parse_go_int(trim_zero_decimal(text)).unwrap_or(0),
            _ => 0,
        }
    }

    /// sprig's `toFloat64`: numbers as they are, bools 0 or 1, strings parsed as Go floats,
    /// anything else 0.
    pub(super) fn to_float64(&self) -> f64 {
        match self {
            Value::Int(value) => *value as f64,
            Value::Float(value) => *value,
            Value::Bool(value) => f64::from(u8::from(*value)),
            Value::Str(text) => parse_go_float(text).unwrap_or(0.0),
            _ => 0.0,
        }
    }
}

/// The value of a label, or `None`; `labels` is sorted by name.
pub(super) fn label<'r>(labels: &[(&'r str, &'r str)], name: &str) -> Option<&'r str> {
    match labels.binary_search_by(|(candidate, _)| (*candidate).cmp(name)) {
        Ok(index) => Some(labels[index].1),
        // Tolerate an unsorted slice rather than miss a label.
        Err(_) => labels.iter().find(|(candidate, _)| *candidate == name).map(|(_, value)| *value),
    }
}

/// `12.000` to `12`, the way sprig's number conversion prepares strings.
fn trim_zero_decimal(text: &str) -> &str {
    let bytes = text.as_bytes();
    let mut seen_zero = false;
    for index in (0..bytes.len()).rev() {
        match bytes[index] {
            b'.' if seen_zero => return &text[..index],
            b'0' => seen_zero = true,
            _ => return text,
        }
    }
    text
}

/// Whether the underscores in a Go number literal sit only between digits (or after a base
/// prefix), as `strconv` requires.
fn underscores_ok(text: &str) -> bool {
    let bytes = text.trim_start_matches(['+', '-']).as_bytes();
    let mut previous = b'^';
    let mut index = 0;
    let mut hex = false;
    if bytes.len() >= 2 && bytes[0] == b'0' && matches!(bytes[1], b'b' | b'B' | b'o' | b'O' | b'x' | b'X') {
        hex = bytes[1].eq_ignore_ascii_case(&b'x');
        index = 2;
        previous = b'0';
    }
    while index < bytes.len() {
        let c = bytes[index];
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            previous = b'0';
        } else if c == b'_' {
            if previous != b'0' {
                return false;
            }
            previous = b'_';
        } else {
            if previous == b'_' {
                return false;
            }
            previous = b'!';
        }
        index += 1;
    }
    previous != b'_'
}

/// The sign and the digits of an integer literal, with its base, as Go's `ParseInt(s, 0, 64)`
/// reads them: `0x`, `0o`, `0b` and a leading `0` (octal) prefixes, underscores between digits.
fn split_integer(text: &str) -> Option<(bool, u32, String)> {
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if unsigned.is_empty() {
        return None;
    }
    let lower = unsigned.to_ascii_lowercase();
    let (base, digits) = if let Some(rest) = lower.strip_prefix("0x") {
        (16, rest)
    } else if let Some(rest) = lower.strip_prefix("0o") {
        (8, rest)
    } else if let Some(rest) = lower.strip_prefix("0b") {
        (2, rest)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if lower.contains('_') && !underscores_ok(unsigned) {
        return None;
    }
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(base)) {
        return None;
    }
    Some((negative, base, digits))
}

/// Go's `strconv.ParseInt(text, 0, 64)`.
pub(super) fn parse_go_int(text: &str) -> Option<i64> {
    let (negative, base, digits) = split_integer(text)?;
    let magnitude = u64::from_str_radix(&digits, base).ok()?;
    if negative {
        if magnitude <= i64::MAX as u64 + 1 { Some((magnitude as i64).wrapping_neg()) } else { None }
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Go's `strconv.ParseUint(text, 0, 64)` (no sign allowed).
pub(super) fn parse_go_uint(text: &str) -> Option<u64> {
    if text.starts_with(['+', '-']) {
        return None;
    }
    let (_, base, digits) = split_integer(text)?;
    u64::from_str_radix(&digits, base).ok()
}

/// Go's `strconv.ParseFloat(text, 64)`: decimal and hexadecimal (`0x1.8p3`) forms, `inf`,
/// `infinity` and `nan` in any case, underscores between digits.
pub(super) fn parse_go_float(text: &str) -> Option<f64> {
    if text.is_empty() {
        return None;
    }
    let cleaned: Cow<'_, str> = if text.contains('_') {
        if !underscores_ok(text) {
            return None;
        }
        Cow::Owned(text.replace('_', ""))
    } else {
        Cow::Borrowed(text)
    };
    let (negative, unsigned) = match cleaned.as_bytes().first() {
        Some(b'-') => (true, &cleaned[1..]),
        Some(b'+') => (false, &cleaned[1..]),
        _ => (false, &cleaned[..]),
    };
    if unsigned.starts_with(['+', '-']) {
        return None;
    }
    let magnitude = if unsigned.len() > 2 && unsigned.as_bytes()[..2].eq_ignore_ascii_case(b"0x") {
        parse_hex_float(&unsigned[2..])?
    } else {
        let lower = unsigned.to_ascii_lowercase();
        match lower.as_str() {
            "inf" | "infinity" => f64::INFINITY,
            "nan" => f64::NAN,
            _ => {
                // Rust accepts a few spellings Go does not ("infinity" handled above); digits,
                // one point and an exponent are what both accept.
                if !lower.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'+' | b'-')) {
                    return None;
                }
                lower.parse::<f64>().ok()?
            }
        }
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// The digits of a hexadecimal float after `0x`: `1.8p3`; the `p` exponent is required.
fn parse_hex_float(text: &str) -> Option<f64> {
    let lower = text.to_ascii_lowercase();
    let (mantissa, exponent) = lower.split_once('p')?;
    let exponent: i32 = exponent.parse().ok()?;
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let mut value = 0f64;
    for c in whole.chars() {
        value = value * 16.0 + f64::from(c.to_digit(16)?);
    }
    let mut scale = 1.0 / 16.0;
    for c in fraction.chars() {
        value += f64::from(c.to_digit(16)?) * scale;
        scale /= 16.0;
    }
    Some(value * 2f64.powi(exponent))
}
