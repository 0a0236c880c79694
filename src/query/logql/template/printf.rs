//! Go's `fmt` for templates: `printf` with its verbs (`%v %s %q %d %b %o %O %x %X %c %U %e %E
//! %f %F %g %G %t %T %%`), flags (`+ - # space 0`), widths, precisions, `*` and `[n]`
//! argument indexes, and Go's in-band errors (`%!d(string=x)`, `%!s(MISSING)`,
//! `%!(EXTRA ...)`); `print` and `println`; and how a value prints in a template (`%v`).

use std::fmt::Write as _;

use super::MAX_RENDERED_BYTES;
use super::value::Value;

/// Widths and precisions above this are refused, as Go refuses them.
const MAX_WIDTH: usize = 1_000_000;

/// Whether the output is already too long to be kept: formatting stops early (the caller then
/// reports the size), so a wide verb over a long list cannot exhaust memory.
fn too_long(out: &str) -> bool {
    out.len() > MAX_RENDERED_BYTES
}

/// The flags, width and precision of one verb.
#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    plus: bool,
    minus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    /// `%#v`: Go syntax.
    sharp_v: bool,
    width: Option<usize>,
    precision: Option<usize>,
}

fn push_repeated(out: &mut String, c: char, count: usize) {
    out.extend(std::iter::repeat_n(c, count));
}

/// Pads `text` to the width, with zeros on the left when the `0` flag allows.
fn pad(out: &mut String, text: &str, flags: &Flags) {
    let width = flags.width.unwrap_or(0);
    let length = text.chars().count();
    if length >= width {
        out.push_str(text);
    } else if flags.minus {
        out.push_str(text);
        push_repeated(out, ' ', width - length);
    } else {
        push_repeated(out, if flags.zero { '0' } else { ' ' }, width - length);
        out.push_str(text);
    }
}

/// Pads with spaces whatever the `0` flag says (numbers do their own zero padding).
fn pad_spaces(out: &mut String, text: &str, flags: &Flags) {
    pad(out, text, &Flags { zero: false, ..*flags })
}

/// How a value prints in a template: `%v`, with nil as `<no value>`.
pub(super) fn write_template_value(out: &mut String, value: &Value<'_>) {
    match value {
        Value::Nil => out.push_str("<no value>"),
        Value::Str(text) => out.push_str(text),
        _ => format_argument(out, value, 'v', &Flags::default()),
    }
}

/// `%v` with no flags.
pub(super) fn write_plain(out: &mut String, value: &Value<'_>) {
    format_argument(out, value, 'v', &Flags::default());
}

/// Go's `fmt.Sprint`: a space between operands when neither is a string.
pub(super) fn sprint(out: &mut String, args: &[Value<'_>]) {
    let mut previous_is_string = false;
    for (index, arg) in args.iter().enumerate() {
        if too_long(out) {
            return;
        }
        let is_string = matches!(arg, Value::Str(_));
        if index > 0 && !is_string && !previous_is_string {
            out.push(' ');
        }
        write_plain(out, arg);
        previous_is_string = is_string;
    }
}

/// Go's `fmt.Sprintln`: spaces between operands, a newline after.
pub(super) fn sprintln(out: &mut String, args: &[Value<'_>]) {
    for (index, arg) in args.iter().enumerate() {
        if too_long(out) {
            return;
        }
        if index > 0 {
            out.push(' ');
        }
        write_plain(out, arg);
    }
    out.push('\n');
}

/// Reads digits at `at`; `None` for no digits, and for absurd numbers (then the rest of the
/// format is consumed, as Go does).
fn parse_number(format: &[u8], mut at: usize, end: usize) -> (Option<usize>, usize) {
    let mut number = 0usize;
    let mut found = false;
    while at < end && format[at].is_ascii_digit() {
        if number > MAX_WIDTH {
            return (None, end);
        }
        number = number * 10 + usize::from(format[at] - b'0');
        found = true;
        at += 1;
    }
    (found.then_some(number), at)
}

/// An explicit argument index `[n]` at `at`: the new argument number, the new offset,
/// whether one was found, and whether it was valid.
fn argument_index(format: &[u8], at: usize, current: usize, count: usize) -> (usize, usize, bool, bool) {
    if at >= format.len() || format[at] != b'[' {
        return (current, at, false, true);
    }
    let Some(close) = format[at..].iter().position(|&b| b == b']').map(|offset| at + offset) else {
        return (current, at + 1, false, false);
    };
    let (number, after) = parse_number(format, at + 1, close);
    match number {
        Some(number) if after == close && number >= 1 && number <= count => (number - 1, close + 1, true, true),
        _ => (current, close + 1, after == close && number.is_some(), false),
    }
}

/// An integer argument for `*`: its value, or `None` when it is missing, not an integer or
/// absurd; the argument is used up either way when present.
fn integer_argument(args: &[Value<'_>], index: &mut usize) -> Option<i64> {
    let value = args.get(*index)?;
    *index += 1;
    match value {
        Value::Int(value) if value.unsigned_abs() <= MAX_WIDTH as u64 => Some(*value),
        _ => None,
    }
}

/// Go's `fmt.Sprintf`.
pub(super) fn sprintf(out: &mut String, format: &str, args: &[Value<'_>]) {
    let bytes = format.as_bytes();
    let end = bytes.len();
    let mut argument = 0usize;
    let mut reordered = false;
    let mut at = 0usize;
    while at < end {
        if too_long(out) {
            return;
        }
        let literal_start = at;
        while at < end && bytes[at] != b'%' {
            at += 1;
        }
        out.push_str(&format[literal_start..at]);
        if at >= end {
            break;
        }
        at += 1;
        let mut flags = Flags::default();
        while at < end {
            match bytes[at] {
                b'#' => flags.sharp = true,
                b'0' => flags.zero = !flags.minus,
                b'+' => flags.plus = true,
                b'-' => {
                    flags.minus = true;
                    flags.zero = false;
                }
                b' ' => flags.space = true,
                _ => break,
            }
            at += 1;
        }
        let mut good_index = true;
        reordered |= bytes.get(at) == Some(&b'[');
        let (next, after, mut after_index, valid) = argument_index(bytes, at, argument, args.len());
        (argument, at) = (next, after);
        good_index &= valid;
        if at < end && bytes[at] == b'*' {
            at += 1;
            match integer_argument(args, &mut argument) {
                Some(width) => {
                    if width < 0 {
                        flags.minus = true;
                        flags.zero = false;
                    }
                    flags.width = Some(width.unsigned_abs() as usize);
                }
                None => out.push_str("%!(BADWIDTH)"),
            }
            after_index = false;
        } else {
            let (width, after) = parse_number(bytes, at, end);
            flags.width = width;
            at = after;
            if after_index && flags.width.is_some() {
                good_index = false;
            }
        }
        if at + 1 < end && bytes[at] == b'.' {
            at += 1;
            if after_index {
                good_index = false;
            }
            reordered |= bytes.get(at) == Some(&b'[');
            let (next, after, found, valid) = argument_index(bytes, at, argument, args.len());
            (argument, at, after_index) = (next, after, found);
            good_index &= valid;
            if at < end && bytes[at] == b'*' {
                at += 1;
                match integer_argument(args, &mut argument) {
                    Some(precision) if precision >= 0 => flags.precision = Some(precision as usize),
                    _ => out.push_str("%!(BADPREC)"),
                }
                after_index = false;
            } else {
                let (precision, after) = parse_number(bytes, at, end);
                flags.precision = Some(precision.unwrap_or(0));
                at = after;
            }
        }
        if !after_index {
            reordered |= bytes.get(at) == Some(&b'[');
            let (next, after, _, valid) = argument_index(bytes, at, argument, args.len());
            (argument, at) = (next, after);
            good_index &= valid;
        }
        let Some(verb) = format[at..].chars().next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        at += verb.len_utf8();
        if verb == '%' {
            out.push('%');
        } else if !good_index {
            let _ = write!(out, "%!{verb}(BADINDEX)");
        } else if argument >= args.len() {
            let _ = write!(out, "%!{verb}(MISSING)");
        } else {
            if verb == 'v' {
                // `%#v` is Go syntax; `%+v` only names struct fields, so a plain sign is dropped.
                flags.sharp_v = flags.sharp;
                flags.sharp = false;
                flags.plus = false;
            }
            format_argument(out, &args[argument], verb, &flags);
            argument += 1;
        }
    }
    if !reordered && argument < args.len() {
        out.push_str("%!(EXTRA ");
        for (index, arg) in args[argument..].iter().enumerate() {
            if index > 0 {
                out.push_str(", ");
            }
            if matches!(arg, Value::Nil) {
                out.push_str("<nil>");
            } else {
                out.push_str(arg.type_name());
                out.push('=');
                write_plain(out, arg);
            }
        }
        out.push(')');
    }
}

/// `%!d(string=hello)`: a verb that does not fit its operand.
fn bad_verb(out: &mut String, verb: char, value: &Value<'_>) {
    out.push_str("%!");
    out.push(verb);
    out.push('(');
    if matches!(value, Value::Nil) {
        out.push_str("<nil>");
    } else {
        out.push_str(value.type_name());
        out.push('=');
        write_plain(out, value);
    }
    out.push(')');
}

/// One operand under one verb (Go's `printArg`).
fn format_argument(out: &mut String, value: &Value<'_>, verb: char, flags: &Flags) {
    if verb == 'T' {
        pad(out, value.type_name(), flags);
        return;
    }
    match value {
        Value::Nil => match verb {
            'v' => pad(out, "<nil>", flags),
            _ => bad_verb(out, verb, value),
        },
        _ => format_value(out, value, verb, flags),
    }
}

/// A value under a verb; nil inside lists and maps prints as `<nil>` (Go's `printValue`).
fn format_value(out: &mut String, value: &Value<'_>, verb: char, flags: &Flags) {
    match value {
        Value::Nil => pad(out, "<nil>", flags),
        Value::Bool(value) => match verb {
            't' | 'v' => pad(out, if *value { "true" } else { "false" }, flags),
            _ => bad_verb(out, verb, &Value::Bool(*value)),
        },
        Value::Int(number) => format_integer_verb(out, *number, verb, flags, value),
        Value::Float(number) => match verb {
            'v' | 'b' | 'g' | 'G' | 'x' | 'X' => format_float(out, *number, verb, -1, flags),
            'f' | 'F' | 'e' | 'E' => format_float(out, *number, verb, 6, flags),
            _ => bad_verb(out, verb, value),
        },
        Value::Str(text) => format_string(out, text, verb, flags, value),
        Value::Time(time) => {
            if flags.sharp_v {
                let mut text = String::new();
                time.write_go_syntax(&mut text);
                pad(out, &text, flags);
                return;
            }
            match verb {
                'v' | 's' | 'q' | 'x' | 'X' => {
                    let mut text = String::new();
                    time.write_string(&mut text);
                    format_string(out, &text, verb, flags, value);
                }
                _ => bad_verb(out, verb, value),
            }
        }
        Value::List(items) => {
            if flags.sharp_v {
                out.push_str("[]interface {}{");
                for (index, item) in items.iter().enumerate() {
                    if too_long(out) {
                        return;
                    }
                    if index > 0 {
                        out.push_str(", ");
                    }
                    format_go_syntax_element(out, item, flags);
                }
                out.push('}');
                return;
            }
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if too_long(out) {
                    return;
                }
                if index > 0 {
                    out.push(' ');
                }
                format_value(out, item, verb, flags);
            }
            out.push(']');
        }
        Value::Map(entries) => {
            if flags.sharp_v {
                out.push_str("map[string]interface {}{");
                for (index, (key, item)) in entries.iter().enumerate() {
                    if too_long(out) {
                        return;
                    }
                    if index > 0 {
                        out.push_str(", ");
                    }
                    format_string(out, key, 'q', &Flags::default(), value);
                    out.push(':');
                    format_go_syntax_element(out, item, flags);
                }
                out.push('}');
                return;
            }
            out.push_str("map[");
            for (index, (key, item)) in entries.iter().enumerate() {
                if too_long(out) {
                    return;
                }
                if index > 0 {
                    out.push(' ');
                }
                format_string(out, key, verb, flags, value);
                out.push(':');
                format_value(out, item, verb, flags);
            }
            out.push(']');
        }
        Value::Labels(labels) => {
            out.push_str(if flags.sharp_v { "map[string]string{" } else { "map[" });
            for (index, (name, label)) in labels.iter().enumerate() {
                if too_long(out) {
                    return;
                }
                if index > 0 {
                    out.push_str(if flags.sharp_v { ", " } else { " " });
                }
                let key_verb = if flags.sharp_v { 'q' } else { verb };
                format_string(out, name, key_verb, flags, value);
                out.push(':');
                format_string(out, label, key_verb, flags, value);
            }
            out.push(if flags.sharp_v { '}' } else { ']' });
        }
    }
}

/// An element of a list or map under `%#v`: Go syntax, nil as `interface {}(nil)`.
fn format_go_syntax_element(out: &mut String, value: &Value<'_>, flags: &Flags) {
    match value {
        Value::Nil => out.push_str("interface {}(nil)"),
        _ => format_value(out, value, 'v', flags),
    }
}

fn format_integer_verb(out: &mut String, number: i64, verb: char, flags: &Flags, value: &Value<'_>) {
    match verb {
        'v' | 'd' => format_integer(out, number, 10, verb, false, flags),
        'b' => format_integer(out, number, 2, verb, false, flags),
        'o' | 'O' => format_integer(out, number, 8, verb, false, flags),
        'x' => format_integer(out, number, 16, verb, false, flags),
        'X' => format_integer(out, number, 16, verb, true, flags),
        'c' => {
            let c = u32::try_from(number).ok().and_then(char::from_u32).unwrap_or('\u{FFFD}');
            pad(out, c.encode_utf8(&mut [0u8; 4]), flags);
        }
        'q' => {
            let c = u32::try_from(number).ok().and_then(char::from_u32).unwrap_or('\u{FFFD}');
            let mut text = String::from('\'');
            quote_char(&mut text, c, '\'', flags.plus);
            text.push('\'');
            pad(out, &text, flags);
        }
        'U' => {
            let digits = flags.precision.unwrap_or(4).max(4);
            let mut text = format!("U+{:0digits$X}", number as u64);
            if flags.sharp
                && let Some(c) = u32::try_from(number).ok().and_then(char::from_u32)
                && is_printable(c)
            {
                let _ = write!(text, " '{c}'");
            }
            pad_spaces(out, &text, flags);
        }
        _ => bad_verb(out, verb, value),
    }
}

/// Go's `fmtInteger`: precision or the `0` flag give leading zeros, `#` gives the base prefix.
fn format_integer(out: &mut String, number: i64, base: u32, verb: char, upper: bool, flags: &Flags) {
    let negative = number < 0;
    let magnitude = number.unsigned_abs();
    let mut minimum_digits = 0usize;
    if let Some(precision) = flags.precision {
        minimum_digits = precision;
        if precision == 0 && magnitude == 0 {
            push_repeated(out, ' ', flags.width.unwrap_or(0));
            return;
        }
    } else if flags.zero && !flags.minus && flags.width.is_some() {
        minimum_digits = flags.width.unwrap_or(0);
        if negative || flags.plus || flags.space {
            minimum_digits = minimum_digits.saturating_sub(1);
        }
    }
    let digits = match (base, upper) {
        (2, _) => format!("{magnitude:b}"),
        (8, _) => format!("{magnitude:o}"),
        (16, false) => format!("{magnitude:x}"),
        (16, true) => format!("{magnitude:X}"),
        _ => magnitude.to_string(),
    };
    let mut text = String::with_capacity(digits.len() + 4);
    if negative {
        text.push('-');
    } else if flags.plus {
        text.push('+');
    } else if flags.space {
        text.push(' ');
    }
    if verb == 'O' {
        text.push_str("0o");
    }
    let zeros = minimum_digits.saturating_sub(digits.len());
    if flags.sharp {
        match base {
            2 => text.push_str("0b"),
            8 if zeros == 0 && !digits.starts_with('0') => text.push('0'),
            16 => text.push_str(if upper { "0X" } else { "0x" }),
            _ => {}
        }
    }
    push_repeated(&mut text, '0', zeros);
    text.push_str(&digits);
    pad_spaces(out, &text, flags);
}

/// Go's `fmtFloat`: the number from [`strconv_float`], then sign, `#` and padding.
fn format_float(out: &mut String, number: f64, verb: char, default_precision: i32, flags: &Flags) {
    let precision = flags.precision.map_or(default_precision, |p| p as i32);
    let conversion = match verb {
        'v' => 'g',
        'F' => 'f',
        other => other,
    };
    let body = strconv_float(number, conversion, precision);
    let mut text = if body.starts_with(['-', '+']) { body } else { format!("+{body}") };
    if flags.space && text.starts_with('+') && !flags.plus {
        text.replace_range(..1, " ");
    }
    if text[1..].starts_with(['I', 'N']) {
        if text[1..].starts_with('N') && !flags.space && !flags.plus {
            text.remove(0);
        }
        pad_spaces(out, &text, flags);
        return;
    }
    if flags.sharp && conversion != 'b' {
        text = sharp_float(&text, conversion, precision);
    }
    if flags.plus || !text.starts_with('+') {
        let width = flags.width.unwrap_or(0);
        let length = text.chars().count();
        if flags.zero && !flags.minus && width > length {
            out.push_str(&text[..1]);
            push_repeated(out, '0', width - length);
            out.push_str(&text[1..]);
            return;
        }
        pad(out, &text, flags);
        return;
    }
    pad(out, &text[1..], flags);
}

/// The `#` flag on floats: always a decimal point, and for `%g` trailing zeros kept up to the
/// precision (6 by default).
fn sharp_float(text: &str, verb: char, precision: i32) -> String {
    let mut digits_left: i32 = match verb {
        'g' | 'G' | 'x' | 'X' => {
            if precision < 0 {
                6
            } else {
                precision
            }
        }
        _ => 0,
    };
    let is_hex = matches!(verb, 'x' | 'X');
    let (mut number, tail) = match text.find(|c: char| c == 'p' || c == 'P' || (!is_hex && (c == 'e' || c == 'E'))) {
        Some(index) => (text[..index].to_string(), text[index..].to_string()),
        None => (text.to_string(), String::new()),
    };
    let mut has_point = false;
    let mut seen_nonzero = false;
    for c in number[1..].chars() {
        if c == '.' {
            has_point = true;
            continue;
        }
        if c != '0' {
            seen_nonzero = true;
        }
        if seen_nonzero {
            digits_left -= 1;
        }
    }
    if !has_point {
        if number.len() == 2 && number.ends_with('0') {
            digits_left -= 1;
        }
        number.push('.');
    }
    while digits_left > 0 {
        number.push('0');
        digits_left -= 1;
    }
    number.push_str(&tail);
    number
}

/// Shortest decimal digits of a positive finite float, and where the point goes
/// (`0.d1d2... × 10^point`); zero has no digits.
fn shortest_digits(number: f64) -> (Vec<u8>, i32) {
    if number == 0.0 {
        return (Vec::new(), 0);
    }
    split_exponent_form(&format!("{number:e}"))
}

/// `significant` digits of a positive finite float, rounded, trailing zeros dropped.
fn rounded_digits(number: f64, significant: usize) -> (Vec<u8>, i32) {
    if number == 0.0 {
        return (Vec::new(), 0);
    }
    let (mut digits, point) = split_exponent_form(&format!("{:.*e}", significant.saturating_sub(1), number));
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
    }
    (digits, point)
}

fn split_exponent_form(text: &str) -> (Vec<u8>, i32) {
    let (mantissa, exponent) = text.split_once('e').unwrap_or((text, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    (digits, exponent + 1)
}

/// `d.ddde±dd` from digits.
fn write_exponent_form(out: &mut String, digits: &[u8], point: i32, precision: usize, upper: bool) {
    out.push(char::from(*digits.first().unwrap_or(&b'0')));
    if precision > 0 {
        out.push('.');
        for index in 1..=precision {
            out.push(char::from(*digits.get(index).unwrap_or(&b'0')));
        }
    }
    out.push(if upper { 'E' } else { 'e' });
    let exponent = if digits.is_empty() { 0 } else { point - 1 };
    out.push(if exponent < 0 { '-' } else { '+' });
    let _ = write!(out, "{:02}", exponent.unsigned_abs());
}

/// `ddd.ddd` from digits.
fn write_fixed_form(out: &mut String, digits: &[u8], point: i32, precision: usize) {
    if point > 0 {
        let integer_digits = (point as usize).min(digits.len());
        out.extend(digits[..integer_digits].iter().map(|&b| char::from(b)));
        push_repeated(out, '0', point as usize - integer_digits);
    } else {
        out.push('0');
    }
    if precision > 0 {
        out.push('.');
        for index in 1..=precision as i64 {
            let position = i64::from(point) + index - 1;
            let digit = if position >= 0 { digits.get(position as usize).copied().unwrap_or(b'0') } else { b'0' };
            out.push(char::from(digit));
        }
    }
}

/// Go's `strconv.FormatFloat(number, verb, precision, 64)`; precision -1 is the shortest form
/// that reads back exactly.
pub(super) fn strconv_float(number: f64, verb: char, precision: i32) -> String {
    if number.is_nan() {
        return "NaN".to_string();
    }
    if number.is_infinite() {
        return if number > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    let mut out = String::new();
    if number.is_sign_negative() {
        out.push('-');
    }
    let magnitude = number.abs();
    match verb {
        'b' => {
            let bits = number.to_bits();
            let exponent_bits = ((bits >> 52) & 0x7ff) as i64;
            let mut mantissa = bits & ((1u64 << 52) - 1);
            let exponent = if exponent_bits == 0 {
                1
            } else {
                mantissa |= 1 << 52;
                exponent_bits
            } - 1075;
            let _ = write!(out, "{mantissa}p{}{exponent}", if exponent >= 0 { "+" } else { "" });
        }
        'x' | 'X' => write_hex_float(&mut out, magnitude, precision, verb == 'X'),
        'e' | 'E' => {
            let upper = verb == 'E';
            if precision < 0 {
                let (digits, point) = shortest_digits(magnitude);
                write_exponent_form(&mut out, &digits, point, digits.len().saturating_sub(1), upper);
            } else {
                let (digits, point) = if magnitude == 0.0 {
                    (Vec::new(), 0)
                } else {
                    split_exponent_form(&format!("{:.*e}", precision as usize, magnitude))
                };
                write_exponent_form(&mut out, &digits, point, precision as usize, upper);
            }
        }
        'f' => {
            if precision < 0 {
                let (digits, point) = shortest_digits(magnitude);
                write_fixed_form(&mut out, &digits, point, (digits.len() as i32 - point).max(0) as usize);
            } else {
                let _ = write!(out, "{:.*}", precision as usize, magnitude);
            }
        }
        _ => {
            let upper = verb == 'G';
            let shortest = precision < 0;
            let (digits, point, mut wanted) = if shortest {
                let (digits, point) = shortest_digits(magnitude);
                let count = digits.len() as i32;
                (digits, point, count)
            } else {
                let wanted = precision.max(1);
                let (digits, point) = rounded_digits(magnitude, wanted as usize);
                (digits, point, wanted)
            };
            let count = digits.len() as i32;
            let mut exponent_threshold = wanted;
            if exponent_threshold > count && count >= point {
                exponent_threshold = count;
            }
            if shortest {
                exponent_threshold = 6;
            }
            let exponent = point - 1;
            if exponent < -4 || exponent >= exponent_threshold {
                if wanted > count {
                    wanted = count;
                }
                write_exponent_form(&mut out, &digits, point, (wanted - 1).max(0) as usize, upper);
            } else {
                if wanted > point {
                    wanted = count;
                }
                write_fixed_form(&mut out, &digits, point, (wanted - point).max(0) as usize);
            }
        }
    }
    out
}

/// `0x1.8p+01`: Go's hexadecimal float, rounded half to even to `precision` hex digits.
fn write_hex_float(out: &mut String, magnitude: f64, precision: i32, upper: bool) {
    let bits = magnitude.to_bits();
    let exponent_bits = ((bits >> 52) & 0x7ff) as i32;
    let mut mantissa = bits & ((1u64 << 52) - 1);
    let mut exponent = if exponent_bits == 0 {
        -1022
    } else {
        mantissa |= 1 << 52;
        exponent_bits - 1023
    };
    if mantissa == 0 {
        exponent = 0;
    }
    mantissa <<= 8;
    while mantissa != 0 && mantissa & (1 << 60) == 0 {
        mantissa <<= 1;
        exponent -= 1;
    }
    if (0..15).contains(&precision) {
        let shift = (precision * 4) as u32;
        let extra = (mantissa << shift) & ((1 << 60) - 1);
        mantissa >>= 60 - shift;
        if extra | (mantissa & 1) > 1 << 59 {
            mantissa += 1;
        }
        mantissa <<= 60 - shift;
        if mantissa & (1 << 61) != 0 {
            mantissa >>= 1;
            exponent += 1;
        }
    }
    let hex = if upper { b"0123456789ABCDEF" } else { b"0123456789abcdef" };
    out.push('0');
    out.push(if upper { 'X' } else { 'x' });
    out.push(char::from(b'0' + ((mantissa >> 60) & 1) as u8));
    mantissa <<= 4;
    if precision < 0 && mantissa != 0 {
        out.push('.');
        while mantissa != 0 {
            out.push(char::from(hex[((mantissa >> 60) & 15) as usize]));
            mantissa <<= 4;
        }
    } else if precision > 0 {
        out.push('.');
        for _ in 0..precision {
            out.push(char::from(hex[((mantissa >> 60) & 15) as usize]));
            mantissa <<= 4;
        }
    }
    out.push(if upper { 'P' } else { 'p' });
    out.push(if exponent < 0 { '-' } else { '+' });
    let _ = write!(out, "{:02}", exponent.unsigned_abs());
}

fn format_string(out: &mut String, text: &str, verb: char, flags: &Flags, value: &Value<'_>) {
    let truncated = match flags.precision {
        Some(precision) => match text.char_indices().nth(precision) {
            Some((end, _)) => &text[..end],
            None => text,
        },
        None => text,
    };
    match verb {
        'v' if flags.sharp_v => pad(out, &quote(text, false), flags),
        'v' | 's' => pad(out, truncated, flags),
        'q' => {
            if flags.sharp && can_backquote(truncated) {
                pad(out, &format!("`{truncated}`"), flags);
            } else {
                pad(out, &quote(truncated, flags.plus), flags);
            }
        }
        'x' | 'X' => {
            let upper = verb == 'X';
            let bytes = text.as_bytes();
            let length = flags.precision.map_or(bytes.len(), |precision| precision.min(bytes.len()));
            if length == 0 {
                push_repeated(out, if flags.zero && !flags.minus { '0' } else { ' ' }, flags.width.unwrap_or(0));
                return;
            }
            let prefix = if upper { "0X" } else { "0x" };
            let mut encoded = String::with_capacity(length * 3 + 2);
            if flags.sharp {
                encoded.push_str(prefix);
            }
            for (index, byte) in bytes[..length].iter().enumerate() {
                if flags.space && index > 0 {
                    encoded.push(' ');
                    if flags.sharp {
                        encoded.push_str(prefix);
                    }
                }
                if upper {
                    let _ = write!(encoded, "{byte:02X}");
                } else {
                    let _ = write!(encoded, "{byte:02x}");
                }
            }
            pad(out, &encoded, flags);
        }
        _ => bad_verb(out, verb, value),
    }
}

/// Whether Go's `strconv.IsPrint` holds, approximately: not a control character, not a space
/// other than U+0020, not an invisible format character.
fn is_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    !(c.is_control()
        || c.is_whitespace()
        || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}'))
}

/// Go's `strconv.CanBackquote`.
fn can_backquote(text: &str) -> bool {
    text.chars().all(|c| c != '`' && c != '\u{feff}' && (c == '\t' || !c.is_control()))
}

/// Go's `strconv.Quote` (or `QuoteToASCII` when `ascii_only`).
pub(super) fn quote(text: &str, ascii_only: bool) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        quote_char(&mut out, c, '"', ascii_only);
    }
    out.push('"');
    out
}

/// One character inside Go quotes.
fn quote_char(out: &mut String, c: char, quote: char, ascii_only: bool) {
    if c == quote || c == '\\' {
        out.push('\\');
        out.push(c);
        return;
    }
    if is_printable(c) && (!ascii_only || c.is_ascii()) {
        out.push(c);
        return;
    }
    match c {
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0b' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c == '\x7f' => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if (c as u32) < 0x10000 => {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\U{:08x}", c as u32);
        }
    }
}
