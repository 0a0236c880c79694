//! The parser stages: `json`, `logfmt`, `regexp`, `pattern` and `unpack`, each turning a line
//! into labels. A line a parser cannot read gets `__error__` (`JSONParserErr`,
//! `LogfmtParserErr`, ...) and keeps its labels, so queries can filter on the error.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::labels::LabelsBuilder;

pub const JSON_ERROR: &str = "JSONParserErr";
pub const LOGFMT_ERROR: &str = "LogfmtParserErr";
pub const UNPACK_ERROR: &str = "UnpackParserErr";

/// A label name from a JSON or logfmt key: characters outside `[A-Za-z0-9_]` become `_`, and a
/// leading digit gets a `_` before it.
pub fn sanitize_label_name(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 1);
    if key.chars().next().is_some_and(|c| c.is_ascii_digit()) {
        out.push('_');
    }
    for c in key.chars() {
        out.push(if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' });
    }
    out
}

/// A JSON value as a label value: strings unquoted, numbers and booleans as written, `null`
/// empty, objects and arrays as their JSON text.
fn json_label_value(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        other => other.to_string(),
    }
}

/// `json`: every field, nested objects flattened with `_` (`a.b` is `a_b`); arrays are left
/// out, as Loki does.
pub fn json_all(line: &str, labels: &mut LabelsBuilder) {
    json_flatten(line, None, labels, &mut Vec::new());
}

/// `json` without parameters, reading the line in one pass without building a JSON tree. With
/// `wanted`, only fields that become one of those labels (or, where the stream has the name,
/// its `_extracted` form) are kept: a later stage reads no other. The whole line is checked
/// either way, so a line that is not a JSON object gets the same error. `found` is scratch
/// reused from line to line.
pub fn json_flatten(
    line: &str,
    wanted: Option<&[String]>,
    labels: &mut LabelsBuilder,
    found: &mut Vec<(String, String)>,
) {
    found.clear();
    let streamed = line.trim_start().starts_with('{') && {
        let mut deserializer = serde_json::Deserializer::from_str(line);
        let mut prefix = String::new();
        let fields = Fields { prefix: &mut prefix, wanted, found };
        deserializer.deserialize_map(fields).is_ok() && deserializer.end().is_ok()
    };
    if !streamed {
        // Not an object, or not JSON: parsed whole, which words the error.
        found.clear();
        return json_tree(line, labels);
    }
    for (name, value) in found.drain(..) {
        labels.set_parsed(&name, value);
    }
}

/// Whether a label of this name, or of a name under it (`name_...`), is wanted.
fn may_want(wanted: Option<&[String]>, name: &str) -> bool {
    wanted.is_none_or(|wanted| {
        wanted
            .iter()
            .any(|label| label.starts_with(name) && matches!(label.as_bytes().get(name.len()), None | Some(b'_')))
    })
}

/// Visits an object's fields, appending each key (sanitised) to `prefix`.
struct Fields<'a> {
    prefix: &'a mut String,
    wanted: Option<&'a [String]>,
    found: &'a mut Vec<(String, String)>,
}

impl<'de> Visitor<'de> for Fields<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a json object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        loop {
            let length = self.prefix.len();
            if map.next_key_seed(Key { prefix: &mut *self.prefix })?.is_none() {
                return Ok(());
            }
            if may_want(self.wanted, self.prefix) {
                map.next_value_seed(Field { prefix: &mut *self.prefix, wanted: self.wanted, found: &mut *self.found })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
            self.prefix.truncate(length);
        }
    }
}

/// Appends a key to the prefix as a label name: `_` between levels, then the sanitised key.
struct Key<'a> {
    prefix: &'a mut String,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<(), E> {
        if !self.prefix.is_empty() {
            self.prefix.push('_');
        }
        if key.starts_with(|c: char| c.is_ascii_digit()) {
            self.prefix.push('_');
        }
        if key.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_') {
            self.prefix.push_str(key);
        } else {
            self.prefix.extend(key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }));
        }
        Ok(())
    }
}

/// One field's value: a scalar becomes a label named by the prefix, an object is flattened
/// under it, an array is skipped.
struct Field<'a> {
    prefix: &'a mut String,
    wanted: Option<&'a [String]>,
    found: &'a mut Vec<(String, String)>,
}

impl Field<'_> {
    fn keep(self, value: String) {
        let exact = self.wanted.is_none_or(|wanted| {
            wanted.iter().any(|label| label == self.prefix || label.strip_suffix("_extracted") == Some(self.prefix))
        });
        if exact {
            self.found.push((self.prefix.clone(), value));
        }
    }
}

impl<'de> DeserializeSeed<'de> for Field<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Field<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a json value")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<(), E> {
        self.keep(text.to_string());
        Ok(())
    }

    fn visit_string<E: serde::de::Error>(self, text: String) -> Result<(), E> {
        self.keep(text);
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, flag: bool) -> Result<(), E> {
        self.keep(flag.to_string());
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, number: i64) -> Result<(), E> {
        self.keep(number.to_string());
        Ok(())
    }

    fn visit_u64<E: serde::de::Error>(self, number: u64) -> Result<(), E> {
        self.keep(number.to_string());
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, number: f64) -> Result<(), E> {
        // Written as a JSON tree would write it.
        self.keep(serde_json::Number::from_f64(number).map(|number| number.to_string()).unwrap_or_default());
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.keep(String::new());
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        Fields { prefix: self.prefix, wanted: self.wanted, found: self.found }.visit_map(map)
    }
}

/// `json` through a whole JSON tree: the error wording for lines that are not a JSON object.
fn json_tree(line: &str, labels: &mut LabelsBuilder) {
    let value: Value = match serde_json::from_str(line) {
        Ok(value) => value,
        Err(error) => {
            labels.set_error(JSON_ERROR, error.to_string());
            return;
        }
    };
    let Value::Object(object) = value else {
        labels.set_error(JSON_ERROR, "expecting a json object".to_string());
        return;
    };
    let mut prefix = String::new();
    flatten(&object, &mut prefix, labels);
}

fn flatten(object: &serde_json::Map<String, Value>, prefix: &mut String, labels: &mut LabelsBuilder) {
    for (key, value) in object {
        let length = prefix.len();
        if !prefix.is_empty() {
            prefix.push('_');
        }
        prefix.push_str(&sanitize_label_name(key));
        match value {
            Value::Object(inner) => flatten(inner, prefix, labels),
            Value::Array(_) => {}
            other => labels.set_parsed(prefix, json_label_value(other)),
        }
        prefix.truncate(length);
    }
}

/// One step of a `json` extraction expression.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonStep {
    Field(String),
    Index(usize),
}

/// Reads `a.b[0]["c d"]` into steps; `None` if it is not a valid expression.
pub fn parse_json_path(expression: &str) -> Option<Vec<JsonStep>> {
    let mut steps = Vec::new();
    let chars: Vec<char> = expression.chars().collect();
    let mut i = 0;
    let mut field = String::new();
    while i < chars.len() {
        match chars[i] {
            '.' => {
                // A dot follows a name or a bracket, never another dot or nothing.
                let after_bracket = i > 0 && chars[i - 1] == ']';
                if field.is_empty() && !after_bracket {
                    return None;
                }
                if !field.is_empty() {
                    steps.push(JsonStep::Field(std::mem::take(&mut field)));
                }
                i += 1;
            }
            '[' => {
                if !field.is_empty() {
                    steps.push(JsonStep::Field(std::mem::take(&mut field)));
                }
                let close = chars[i..].iter().position(|&c| c == ']')? + i;
                let inside: String = chars[i + 1..close].iter().collect();
                let inside = inside.trim();
                if let Some(quoted) = inside.strip_prefix('"').and_then(|rest| rest.strip_suffix('"')) {
                    steps.push(JsonStep::Field(quoted.to_string()));
                } else {
                    steps.push(JsonStep::Index(inside.parse().ok()?));
                }
                i = close + 1;
            }
            c => {
                field.push(c);
                i += 1;
            }
        }
    }
    if !field.is_empty() {
        steps.push(JsonStep::Field(field));
    }
    (!steps.is_empty()).then_some(steps)
}

/// `json name="expr", ...`: only the named fields; a missing field gives an empty value.
pub fn json_fields(line: &str, fields: &[(String, Vec<JsonStep>)], labels: &mut LabelsBuilder) {
    let value: Value = match serde_json::from_str(line) {
        Ok(value) => value,
        Err(error) => {
            labels.set_error(JSON_ERROR, error.to_string());
            return;
        }
    };
    for (name, steps) in fields {
        let mut current = Some(&value);
        for step in steps {
            current = match (current, step) {
                (Some(Value::Object(object)), JsonStep::Field(key)) => object.get(key),
                (Some(Value::Array(items)), JsonStep::Index(index)) => items.get(*index),
                _ => None,
            };
        }
        let text = current.map(json_label_value).unwrap_or_default();
        labels.set_parsed(name, text);
    }
}

/// `logfmt`: `key=value` pairs, values bare or double-quoted with escapes. A key with no value
/// is kept (empty) only with `--keep-empty`; `--strict` stops at the first malformed pair and
/// sets the error, otherwise malformed pairs are skipped.
pub fn logfmt(
    line: &str,
    strict: bool,
    keep_empty: bool,
    only: Option<&[(String, String)]>,
    labels: &mut LabelsBuilder,
) {
    let bytes = line.as_bytes();
    let mut at = 0;
    let mut found: Vec<(String, String)> = Vec::new();
    while at < bytes.len() {
        while at < bytes.len() && bytes[at] <= b' ' {
            at += 1;
        }
        if at >= bytes.len() {
            break;
        }
        let key_start = at;
        while at < bytes.len() && bytes[at] > b' ' && bytes[at] != b'=' && bytes[at] != b'"' {
            at += 1;
        }
        let key = &line[key_start..at];
        if key.is_empty() {
            // A value without a key (`="x"` or a stray quote).
            if strict {
                labels.set_error(
                    LOGFMT_ERROR,
                    format!("logfmt syntax error at pos {}: unexpected '{}'", at + 1, bytes[at] as char),
                );
                return;
            }
            at += 1;
            continue;
        }
        if at >= bytes.len() || bytes[at] != b'=' {
            if at < bytes.len() && bytes[at] == b'"' {
                if strict {
                    labels.set_error(LOGFMT_ERROR, format!("logfmt syntax error at pos {}: unexpected '\"'", at + 1));
                    return;
                }
                at += 1;
                continue;
            }
            if keep_empty {
                found.push((key.to_string(), String::new()));
            }
            continue;
        }
        at += 1;
        let value = if at < bytes.len() && bytes[at] == b'"' {
            at += 1;
            let mut value = String::new();
            let mut closed = false;
            let mut chars = line[at..].char_indices();
            while let Some((offset, c)) = chars.next() {
                match c {
                    '"' => {
                        at += offset + 1;
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, 't')) => value.push('\t'),
                        Some((_, 'r')) => value.push('\r'),
                        Some((_, other)) => value.push(other),
                        None => break,
                    },
                    c => value.push(c),
                }
            }
            if !closed {
                if strict {
                    labels.set_error(
                        LOGFMT_ERROR,
                        format!("logfmt syntax error at pos {}: unterminated quoted value", bytes.len() + 1),
                    );
                    return;
                }
                at = bytes.len();
                continue;
            }
            value
        } else {
            let start = at;
            while at < bytes.len() && bytes[at] > b' ' {
                at += 1;
            }
            line[start..at].to_string()
        };
        if value.is_empty() && !keep_empty {
            continue;
        }
        found.push((key.to_string(), value));
    }
    match only {
        None => {
            for (key, value) in found {
                labels.set_parsed(&sanitize_label_name(&key), value);
            }
        }
        Some(fields) => {
            for (name, key) in fields {
                let value = found.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default();
                labels.set_parsed(name, value);
            }
        }
    }
}

/// `regexp`: each named group that matched becomes a label.
pub fn regexp(line: &str, regex: &regex::Regex, labels: &mut LabelsBuilder) {
    let Some(captures) = regex.captures(line) else { return };
    for name in regex.capture_names().flatten() {
        if let Some(found) = captures.name(name) {
            labels.set_parsed(name, found.as_str().to_string());
        }
    }
}

/// A compiled `pattern` expression: literal text between captures (`<name>`, or `<_>` to skip).
#[derive(Debug, Clone)]
pub struct Pattern {
    /// Alternating pieces: a capture (its name, `None` for `<_>`) or literal text.
    parts: Vec<PatternPart>,
}

#[derive(Debug, Clone, PartialEq)]
enum PatternPart {
    Literal(String),
    Capture(Option<String>),
}

impl Pattern {
    /// Compiles a pattern; two captures with nothing between them cannot be told apart and are
    /// an error, as is a pattern with no named capture when `named` is required.
    pub fn new(text: &str, named: bool) -> Result<Pattern, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut literal = String::new();
        while !rest.is_empty() {
            if let Some(inner) = rest.strip_prefix('<')
                && let Some(close) = inner.find('>')
            {
                let name = &inner[..close];
                let valid = name == "_"
                    || (name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                if valid && !name.is_empty() {
                    if !literal.is_empty() {
                        parts.push(PatternPart::Literal(std::mem::take(&mut literal)));
                    }
                    if matches!(parts.last(), Some(PatternPart::Capture(_))) {
                        return Err(format!(
                            "invalid pattern {text:?}: two captures must be separated by literal text"
                        ));
                    }
                    parts.push(PatternPart::Capture((name != "_").then(|| name.to_string())));
                    rest = &inner[close + 1..];
                    continue;
                }
            }
            let c = rest.chars().next().unwrap_or(' ');
            literal.push(c);
            rest = &rest[c.len_utf8()..];
        }
        if !literal.is_empty() {
            parts.push(PatternPart::Literal(literal));
        }
        let captures = parts.iter().filter(|p| matches!(p, PatternPart::Capture(Some(_)))).count();
        if named && captures == 0 {
            return Err(format!("invalid pattern {text:?}: at least one named capture such as <name> is needed"));
        }
        if !parts.iter().any(|p| matches!(p, PatternPart::Capture(_))) && !named {
            return Ok(Pattern { parts });
        }
        Ok(Pattern { parts })
    }

    /// Matches the line from its start; captures are filled in order. A pattern's end need
    /// not reach the line's end unless it ends with literal text.
    pub fn captures<'a>(&self, line: &'a str) -> Option<Vec<(&str, &'a str)>> {
        let mut out = Vec::new();
        let mut rest = line;
        let mut pending: Option<Option<&str>> = None;
        for part in &self.parts {
            match part {
                PatternPart::Literal(text) => match pending.take() {
                    None => rest = rest.strip_prefix(text.as_str())?,
                    Some(name) => {
                        let at = rest.find(text.as_str())?;
                        if let Some(name) = name {
                            out.push((name, &rest[..at]));
                        }
                        rest = &rest[at + text.len()..];
                    }
                },
                PatternPart::Capture(name) => pending = Some(name.as_deref()),
            }
        }
        if let Some(Some(name)) = pending {
            out.push((name, rest));
        }
        Some(out)
    }

    /// Whether the whole pattern matches somewhere from the start of the line (for `|>`):
    /// the captures are wildcards.
    pub fn matches(&self, line: &str) -> bool {
        if self.parts.iter().all(|p| matches!(p, PatternPart::Literal(_))) {
            return self.parts.iter().all(|p| matches!(p, PatternPart::Literal(t) if line.contains(t.as_str())));
        }
        self.captures(line).is_some()
    }
}

/// `pattern`: each named capture becomes a label; a line that does not match gets none.
pub fn pattern(line: &str, pattern: &Pattern, labels: &mut LabelsBuilder) {
    if let Some(captures) = pattern.captures(line) {
        for (name, value) in captures {
            labels.set_parsed(name, value.to_string());
        }
    }
}

/// `unpack`: a JSON object whose string fields become labels and whose `_entry` field becomes
/// the line. Returns the new line, if any.
pub fn unpack(line: &str, labels: &mut LabelsBuilder) -> Option<String> {
    let value: Value = match serde_json::from_str(line) {
        Ok(value) => value,
        Err(error) => {
            labels.set_error(UNPACK_ERROR, error.to_string());
            return None;
        }
    };
    let Value::Object(object) = value else {
        labels.set_error(UNPACK_ERROR, "expecting a json object".to_string());
        return None;
    };
    let mut entry = None;
    for (key, value) in object {
        let Value::String(text) = value else { continue };
        if key == "_entry" {
            entry = Some(text);
        } else {
            labels.set_parsed(&sanitize_label_name(&key), text);
        }
    }
    entry
}

#[cfg(test)]
mod tests {
    use tripod_storage::labels::Labels;

    use super::*;

    fn builder() -> LabelsBuilder {
        let mut labels = LabelsBuilder::default();
        labels.reset(&Labels::from_pairs([("app", "api"), ("level", "stream")]).unwrap(), &Labels::empty());
        labels
    }

    #[test]
    fn json_flattens_and_renames_collisions() {
        let mut labels = builder();
        json_all(
            r#"{"level":"info","req":{"method":"GET","path":"/x","ids":[1,2]},"code":200,"ok":true,"none":null,"a-b":"c","1x":"y"}"#,
            &mut labels,
        );
        assert_eq!(
            labels.pairs(),
            vec![
                ("_1x", "y"),
                ("a_b", "c"),
                ("app", "api"),
                ("code", "200"),
                ("level", "stream"),
                ("level_extracted", "info"),
                ("none", ""),
                ("ok", "true"),
                ("req_method", "GET"),
                ("req_path", "/x"),
            ]
        );
        let mut labels = builder();
        json_all("not json", &mut labels);
        assert_eq!(labels.error(), Some(JSON_ERROR));
    }

    #[test]
    fn json_expressions() {
        let mut labels = builder();
        let fields: Vec<(String, Vec<JsonStep>)> =
            [("first", "items[0]"), ("deep", "a.b[\"c d\"]"), ("gone", "x.y"), ("obj", "a")]
                .iter()
                .map(|(n, e)| (n.to_string(), parse_json_path(e).unwrap()))
                .collect();
        json_fields(r#"{"items":["p","q"],"a":{"b":{"c d":5}}}"#, &fields, &mut labels);
        assert_eq!(labels.get("first"), Some("p"));
        assert_eq!(labels.get("deep"), Some("5"));
        assert_eq!(labels.get("gone"), Some(""));
        assert_eq!(labels.get("obj"), Some(r#"{"b":{"c d":5}}"#));
        assert_eq!(parse_json_path("a..b"), None);
        assert_eq!(parse_json_path("a[x]"), None);
    }

    #[test]
    fn logfmt_modes() {
        let line = r#"level=info msg="hello \"world\"" empty= flag dur=1.5s"#;
        let mut labels = builder();
        logfmt(line, false, false, None, &mut labels);
        assert_eq!(labels.get("level_extracted"), Some("info"));
        assert_eq!(labels.get("msg"), Some("hello \"world\""));
        assert_eq!(labels.get("empty"), None);
        assert_eq!(labels.get("flag"), None);
        assert_eq!(labels.get("dur"), Some("1.5s"));
        let mut labels = builder();
        logfmt(line, false, true, None, &mut labels);
        assert_eq!(labels.get("empty"), Some(""));
        assert_eq!(labels.get("flag"), Some(""));
        let mut labels = builder();
        logfmt(r#"a=1 ="x" b=2"#, true, false, None, &mut labels);
        assert_eq!(labels.error(), Some(LOGFMT_ERROR));
        let mut labels = builder();
        logfmt(r#"a=1 ="x" b=2"#, false, false, None, &mut labels);
        assert_eq!((labels.get("a"), labels.get("b"), labels.error()), (Some("1"), Some("2"), None));
    }

    #[test]
    fn patterns() {
        let p = Pattern::new(r#"<ip> - <_> [<_>] "<method> <path> <_>" <status>"#, true).unwrap();
        let line = r#"10.0.0.1 - - [01/Dec/2026:10:00:00 +0000] "GET /api/x HTTP/1.1" 200 512"#;
        assert_eq!(
            p.captures(line).unwrap(),
            vec![("ip", "10.0.0.1"), ("method", "GET"), ("path", "/api/x"), ("status", "200 512")]
        );
        assert!(p.captures("nothing like it").is_none());
        assert!(Pattern::new("<a><b>", true).is_err());
        assert!(Pattern::new("<_> x", true).is_err());
        assert!(Pattern::new("<_> GET <_>", false).unwrap().matches("POST then GET here"));
    }

    #[test]
    fn unpack_lines() {
        let mut labels = builder();
        let line = unpack(r#"{"container":"db","_entry":"the line","n":1}"#, &mut labels);
        assert_eq!(line.as_deref(), Some("the line"));
        assert_eq!(labels.get("container"), Some("db"));
        assert_eq!(labels.get("n"), None);
    }
}
