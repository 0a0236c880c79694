//! Loki push wire formats, decoded into the protocol-neutral [`PushBatch`]:
//!
//! - protobuf `logproto.PushRequest` (layout: `proto/loki/push.proto`), read with the
//!   zero-copy reader, lines and labels borrowed from the decompressed body;
//! - JSON, `{"streams":[{"stream":{"app":"api"},"values":[["<ns>","line",{"k":"v"}]]}]}`,
//!   and the older form Loki still reads,
//!   `{"streams":[{"labels":"{app=\"api\"}","entries":[{"ts":"<RFC3339>","line":"..."}]}]}`;
//!   strings borrow from the body unless they hold escapes.
//!
//! Decoding checks only the shape; what the values may be is the write path's business
//! (`ingest::logs`).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::api::error::ApiError;
use crate::api::wire::{WireError, WireReader, WireValue};
use crate::ingest::logs::{Pair, PushBatch, PushEntry, PushStream, StreamLabels};

// ---------------------------------------------------------------------------------------------
// Protobuf.

fn malformed(what: &str, error: WireError) -> ApiError {
    ApiError::bad_data(format!("malformed {what}: {error}"))
}

/// Text from the body: borrowed when it is valid UTF-8, else with each invalid sequence
/// replaced by U+FFFD (a log line is kept, not refused, for a stray byte).
fn text(bytes: &[u8]) -> Cow<'_, str> {
    // The strict check is the fast path (whole words of ASCII at a time); the lossy scan runs
    // only for the rare line that needs replacements.
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// A label string must be exact: invalid UTF-8 there is an error, not a replacement.
fn strict_text<'a>(bytes: &'a [u8], what: &str, offset: usize) -> Result<&'a str, ApiError> {
    std::str::from_utf8(bytes).map_err(|_| ApiError::bad_data(format!("{what} at byte {offset} is not valid UTF-8")))
}

/// Decodes a `logproto.PushRequest`.
pub fn decode_protobuf(body: &[u8]) -> Result<PushBatch<'_>, ApiError> {
    let mut batch = PushBatch::default();
    let mut reader = WireReader::new(body);
    while let Some((field, value, offset)) = reader.next_field().map_err(|e| malformed("push request", e))? {
        match (field, value) {
            (1, WireValue::Bytes(stream)) => batch.streams.push(decode_stream(stream, offset)?),
            (1, _) => return Err(ApiError::bad_data(format!("field 1 at byte {offset} is not a message"))),
            _ => {}
        }
    }
    Ok(batch)
}

fn decode_stream(bytes: &[u8], offset: usize) -> Result<PushStream<'_>, ApiError> {
    let mut labels = "";
    let mut entries = Vec::new();
    let mut reader = WireReader::nested(bytes, offset);
    while let Some((field, value, at)) = reader.next_field().map_err(|e| malformed("stream", e))? {
        match (field, value) {
            (1, WireValue::Bytes(text)) => labels = strict_text(text, "stream labels", at)?,
            (2, WireValue::Bytes(entry)) => entries.push(decode_entry(entry, at)?),
            (1 | 2, _) => {
                return Err(ApiError::bad_data(format!("stream field {field} at byte {at} has the wrong wire type")));
            }
            _ => {}
        }
    }
    Ok(PushStream { labels: StreamLabels::Selector(Cow::Borrowed(labels)), entries })
}

fn decode_entry(bytes: &[u8], offset: usize) -> Result<PushEntry<'_>, ApiError> {
    let mut entry = PushEntry { t_ns: 0, line: Cow::Borrowed(""), metadata: Vec::new() };
    let mut reader = WireReader::nested(bytes, offset);
    while let Some((field, value, at)) = reader.next_field().map_err(|e| malformed("entry", e))? {
        match (field, value) {
            (1, WireValue::Bytes(timestamp)) => entry.t_ns = decode_timestamp(timestamp, at)?,
            (2, WireValue::Bytes(line)) => entry.line = text(line),
            (3, WireValue::Bytes(pair)) => entry.metadata.push(decode_pair(pair, at)?),
            (1..=3, _) => {
                return Err(ApiError::bad_data(format!("entry field {field} at byte {at} has the wrong wire type")));
            }
            _ => {}
        }
    }
    Ok(entry)
}

/// A `google.protobuf.Timestamp` as nanoseconds since the epoch.
fn decode_timestamp(bytes: &[u8], offset: usize) -> Result<i64, ApiError> {
    let (mut seconds, mut nanos) = (0i64, 0i64);
    let mut reader = WireReader::nested(bytes, offset);
    while let Some((field, value, _)) = reader.next_field().map_err(|e| malformed("timestamp", e))? {
        match (field, value) {
            (1, WireValue::Varint(v)) => seconds = v as i64,
            // int32 on the wire: a negative value is sign-extended to 64 bits.
            (2, WireValue::Varint(v)) => nanos = i64::from(v as i64 as i32),
            _ => {}
        }
    }
    if !(0..1_000_000_000).contains(&nanos) {
        return Err(ApiError::bad_data(format!("timestamp at byte {offset} has nanos {nanos}, outside 0..999999999")));
    }
    seconds
        .checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(nanos))
        .ok_or_else(|| ApiError::bad_data(format!("timestamp at byte {offset} ({seconds}s) is out of range")))
}

fn decode_pair(bytes: &[u8], offset: usize) -> Result<Pair<'_>, ApiError> {
    let (mut name, mut value) = (Cow::Borrowed(""), Cow::Borrowed(""));
    let mut reader = WireReader::nested(bytes, offset);
    while let Some((field, wire, at)) = reader.next_field().map_err(|e| malformed("structured metadata", e))? {
        match (field, wire) {
            (1, WireValue::Bytes(bytes)) => name = Cow::Borrowed(strict_text(bytes, "structured metadata name", at)?),
            (2, WireValue::Bytes(bytes)) => value = text(bytes),
            _ => {}
        }
    }
    Ok((name, value))
}

// ---------------------------------------------------------------------------------------------
// JSON.

/// A JSON string, borrowed from the body when it has no escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(value)))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(value.to_string())))
            }
            fn visit_string<E: de::Error>(self, value: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(value)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// A JSON object of strings as pairs in the order written (a repeated key stays repeated, for
/// the write path to refuse).
#[derive(Debug, Clone, Default)]
pub struct TextPairs<'a>(pub Vec<Pair<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for TextPairs<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PairsVisitor;
        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = TextPairs<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TextPairs<'de>, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some((Text(name), Text(value))) = map.next_entry::<Text<'de>, Text<'de>>()? {
                    pairs.push((name, value));
                }
                Ok(TextPairs(pairs))
            }
        }
        deserializer.deserialize_map(PairsVisitor)
    }
}

/// A timestamp in nanoseconds, written as a decimal string (as Loki's clients do) or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NanosText(pub i64);

impl<'de> Deserialize<'de> for NanosText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NanosVisitor;
        impl Visitor<'_> for NanosVisitor {
            type Value = NanosText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a timestamp in nanoseconds since the epoch, as a string of digits")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<NanosText, E> {
                value.parse::<i64>().map(NanosText).map_err(|_| {
                    E::custom(format!("timestamp {value:?} is not an integer of nanoseconds since the epoch"))
                })
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<NanosText, E> {
                Ok(NanosText(value))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<NanosText, E> {
                i64::try_from(value).map(NanosText).map_err(|_| E::custom(format!("timestamp {value} is out of range")))
            }
        }
        deserializer.deserialize_any(NanosVisitor)
    }
}

/// One `values` element: `["<ns>", "line"]` or `["<ns>", "line", {"name": "value"}]`.
#[derive(Debug, Clone)]
pub struct JsonValue<'a> {
    pub t_ns: i64,
    pub line: Cow<'a, str>,
    pub metadata: Vec<Pair<'a>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonValue<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = JsonValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array [\"<timestamp ns>\", \"<line>\"] with an optional object of structured metadata")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonValue<'de>, A::Error> {
                let NanosText(t_ns) =
                    seq.next_element()?.ok_or_else(|| de::Error::custom("entry is empty, expected a timestamp"))?;
                let Text(line) =
                    seq.next_element()?.ok_or_else(|| de::Error::custom("entry has a timestamp but no line"))?;
                let metadata = seq.next_element::<Option<TextPairs<'de>>>()?.flatten().unwrap_or_default().0;
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom("entry has more than 3 elements"));
                }
                Ok(JsonValue { t_ns, line, metadata })
            }
        }
        deserializer.deserialize_seq(ValueVisitor)
    }
}

/// An entry of the older JSON form: `{"ts": "<RFC3339>", "line": "..."}`.
#[derive(Debug, Clone, Deserialize)]
pub struct LegacyEntry<'a> {
    #[serde(borrow, alias = "timestamp")]
    pub ts: Text<'a>,
    #[serde(borrow)]
    pub line: Text<'a>,
}

/// A stream in either JSON form.
#[derive(Debug, Clone, Deserialize)]
pub struct JsonStream<'a> {
    #[serde(borrow, default)]
    pub stream: Option<TextPairs<'a>>,
    #[serde(borrow, default)]
    pub values: Option<Vec<JsonValue<'a>>>,
    #[serde(borrow, default)]
    pub labels: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub entries: Option<Vec<LegacyEntry<'a>>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct JsonPushRequest<'a> {
    #[serde(borrow)]
    pub streams: Vec<JsonStream<'a>>,
}

/// Decodes a JSON push in either form.
pub fn decode_json(body: &[u8]) -> Result<PushBatch<'_>, ApiError> {
    let request: JsonPushRequest<'_> = serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_data(format!("body is not a Loki JSON push request: {error}")))?;
    let mut batch = PushBatch { streams: Vec::with_capacity(request.streams.len()) };
    for (index, stream) in request.streams.into_iter().enumerate() {
        let labels = match (stream.stream, stream.labels) {
            (Some(pairs), None) => StreamLabels::Pairs(pairs.0),
            (None, Some(Text(selector))) => StreamLabels::Selector(selector),
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_data(format!(
                    "streams[{index}] has both \"stream\" and \"labels\"; use one form"
                )));
            }
            (None, None) => {
                return Err(ApiError::bad_data(format!("streams[{index}] has no \"stream\" object of labels")));
            }
        };
        let mut entries = Vec::new();
        if let Some(values) = stream.values {
            entries.reserve(values.len());
            for value in values {
                entries.push(PushEntry { t_ns: value.t_ns, line: value.line, metadata: value.metadata });
            }
        }
        if let Some(legacy) = stream.entries {
            entries.reserve(legacy.len());
            for (position, entry) in legacy.into_iter().enumerate() {
                let t_ns = parse_rfc3339_ns(&entry.ts.0).ok_or_else(|| {
                    ApiError::bad_data(format!(
                        "streams[{index}].entries[{position}]: timestamp {:?} is not an RFC 3339 time",
                        entry.ts.0
                    ))
                })?;
                entries.push(PushEntry { t_ns, line: entry.line.0, metadata: Vec::new() });
            }
        }
        batch.streams.push(PushStream { labels, entries });
    }
    Ok(batch)
}

/// `2023-11-14T22:13:20.123456789Z` or with an offset (`+01:00`) to Unix nanoseconds.
pub fn parse_rfc3339_ns(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = text.get(range)?;
        digits.bytes().all(|b| b.is_ascii_digit()).then(|| digits.parse().ok())?
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos = 0i64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        for (position, digit) in fraction.bytes().take(9).take_while(u8::is_ascii_digit).enumerate() {
            nanos += i64::from(digit - b'0') * 10i64.pow(8 - position as u32);
        }
        rest = &fraction[digits..];
    }
    let offset_seconds = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let hours = rest.get(1..3)?.parse::<i64>().ok()?;
            let minutes = rest.get(4..6)?.parse::<i64>().ok()?;
            sign * (hours * 3600 + minutes * 60)
        }
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::{put_bytes_field, put_varint_field};

    fn owned(pairs: &[Pair<'_>]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn protobuf_round_trip() {
        let mut timestamp = Vec::new();
        put_varint_field(&mut timestamp, 1, 1_700_000_000);
        put_varint_field(&mut timestamp, 2, 5);
        let mut pair = Vec::new();
        put_bytes_field(&mut pair, 1, b"trace_id");
        put_bytes_field(&mut pair, 2, b"abc");
        let mut entry = Vec::new();
        put_bytes_field(&mut entry, 1, &timestamp);
        put_bytes_field(&mut entry, 2, b"hello \xff world");
        put_bytes_field(&mut entry, 3, &pair);
        let mut stream = Vec::new();
        put_bytes_field(&mut stream, 1, br#"{app="api"}"#);
        put_bytes_field(&mut stream, 2, &entry);
        put_varint_field(&mut stream, 3, 12345);
        let mut request = Vec::new();
        put_bytes_field(&mut request, 1, &stream);

        let batch = decode_protobuf(&request).unwrap();
        assert_eq!(batch.streams.len(), 1);
        let stream = &batch.streams[0];
        assert!(matches!(&stream.labels, StreamLabels::Selector(s) if s == r#"{app="api"}"#));
        assert_eq!(stream.entries[0].t_ns, 1_700_000_000_000_000_005);
        assert_eq!(stream.entries[0].line, "hello \u{fffd} world");
        assert_eq!(owned(&stream.entries[0].metadata), [("trace_id".to_string(), "abc".to_string())]);
        for cut in 1..request.len() {
            assert!(decode_protobuf(&request[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn negative_nanos_are_refused() {
        let mut timestamp = Vec::new();
        put_varint_field(&mut timestamp, 2, (-1i64) as u64);
        let error = decode_timestamp(&timestamp, 7).unwrap_err();
        assert_eq!(error.message(), "timestamp at byte 7 has nanos -1, outside 0..999999999");
        let mut huge = Vec::new();
        put_varint_field(&mut huge, 1, i64::MAX as u64);
        assert!(decode_timestamp(&huge, 0).unwrap_err().message().contains("out of range"));
    }

    #[test]
    fn json_in_both_forms() {
        let body = br#"{"streams":[
            {"stream":{"app":"api","env":"prod"},"values":[["1700000000000000001","plain"],["1700000000000000002","with \"quotes\"",{"trace_id":"abc"}]]},
            {"labels":"{app=\"old\"}","entries":[{"ts":"2023-11-14T22:13:20.5Z","line":"legacy"}]}
        ]}"#;
        let batch = decode_json(body).unwrap();
        let first = &batch.streams[0];
        match &first.labels {
            StreamLabels::Pairs(pairs) => {
                assert_eq!(owned(pairs), [("app".into(), "api".into()), ("env".into(), "prod".into())])
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(first.entries[0].line, Cow::Borrowed("plain")), "plain strings borrow");
        assert_eq!(first.entries[1].line, "with \"quotes\"");
        assert_eq!(owned(&first.entries[1].metadata), [("trace_id".into(), "abc".into())]);
        let second = &batch.streams[1];
        assert!(matches!(&second.labels, StreamLabels::Selector(s) if s == r#"{app="old"}"#));
        assert_eq!(second.entries[0].t_ns, 1_700_000_000_500_000_000);
    }

    #[test]
    fn json_errors_name_the_problem() {
        let cases: [(&[u8], &str); 7] = [
            (b"{", "body is not a Loki JSON push request: EOF while parsing"),
            (br#"{"streams":[{"stream":{"a":"b"},"values":[["x","l"]]}]}"#, "timestamp \"x\" is not an integer"),
            (br#"{"streams":[{"stream":{"a":"b"},"values":[["1"]]}]}"#, "entry has a timestamp but no line"),
            (br#"{"streams":[{"stream":{"a":"b"},"values":[["1","l",{},4]]}]}"#, "entry has more than 3 elements"),
            (br#"{"streams":[{"values":[]}]}"#, "streams[0] has no \"stream\" object of labels"),
            (br#"{"streams":[{"stream":{"a":1},"values":[]}]}"#, "invalid type: integer `1`, expected a string"),
            (
                br#"{"streams":[{"labels":"{a=\"b\"}","entries":[{"ts":"yesterday","line":"l"}]}]}"#,
                "streams[0].entries[0]: timestamp \"yesterday\" is not an RFC 3339 time",
            ),
        ];
        for (body, expected) in cases {
            let error = decode_json(body).unwrap_err();
            assert!(error.message().contains(expected), "{}: {}", String::from_utf8_lossy(body), error.message());
        }
        let empty = decode_json(br#"{"streams":[]}"#).unwrap();
        assert!(empty.streams.is_empty());
        assert!(decode_json(br#"{"strooms":[]}"#).unwrap_err().message().contains("missing field `streams`"));
    }

    #[test]
    fn rfc3339_with_nanoseconds_and_offsets() {
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ns("2023-11-14T22:13:20.123456789Z"), Some(1_700_000_000_123_456_789));
        assert_eq!(parse_rfc3339_ns("2023-11-14T23:13:20+01:00"), Some(1_700_000_000_000_000_000));
        assert_eq!(parse_rfc3339_ns("2023-11-14T22:13:20.1234567891Z"), Some(1_700_000_000_123_456_789));
        assert_eq!(parse_rfc3339_ns("2023-13-14T22:13:20Z"), None);
        assert_eq!(parse_rfc3339_ns("2023-11-14T22:13:20"), None);
        assert_eq!(parse_rfc3339_ns("2023-11-14T22:13:+0Z"), None);
    }
}
