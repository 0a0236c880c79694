//! Durations as Prometheus writes them (`15s`, `1h30m`, `500ms`, `15d`), parsed and printed.
//! Used by the config file and by every API parameter that takes a duration. Also the wall
//! clock in Unix milliseconds, the time unit of every sample.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// Units in the order they must appear, with their length in milliseconds.
const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid duration {:?}: {}", self.input, self.reason)
    }
}

impl std::error::Error for DurationError {}

/// Parses a Prometheus duration: one or more `<integer><unit>` terms with units `y`, `w`, `d`,
/// `h`, `m`, `s`, `ms` in decreasing order, each at most once (`1h30m`, `90s`, `0s`).
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let error = |reason| DurationError { input: input.to_string(), reason };
    if input.is_empty() {
        return Err(error("empty"));
    }
    let mut rest = input.as_bytes();
    let mut total_ms: u64 = 0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return Err(error("expected a number"));
        }
        let number: u64 = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| error("number too large"))?;
        rest = &rest[digits..];
        let letters = rest.iter().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..letters];
        rest = &rest[letters..];
        let Some(position) = UNITS.iter().position(|(name, _)| name.as_bytes() == unit) else {
            return Err(error("unknown unit, expected one of y, w, d, h, m, s, ms"));
        };
        if position < next_unit {
            return Err(error("units must appear once each, largest first"));
        }
        next_unit = position + 1;
        total_ms = number
            .checked_mul(UNITS[position].1)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| error("too large"))?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Prints a duration the way Prometheus does: largest units first, zero terms omitted, and years
/// and weeks only when they divide the duration exactly (`15d`, `2w`, `1h30m`, `0s`).
/// Sub-millisecond parts are dropped.
pub fn format_duration(duration: Duration) -> String {
    let mut ms = duration.as_millis() as u64;
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (name, unit_ms) in &UNITS {
        let exact_only = matches!(*name, "y" | "w");
        if exact_only && !ms.is_multiple_of(*unit_ms) {
            continue;
        }
        if ms >= *unit_ms {
            out.push_str(&format!("{}{}", ms / unit_ms, name));
            ms %= unit_ms;
        }
    }
    out
}

/// A [`Duration`] that reads and writes as a Prometheus duration string in config files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigDuration(pub Duration);

impl<'de> serde::Deserialize<'de> for ConfigDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(&text).map(ConfigDuration).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_durations() {
        let cases = [
            ("0s", 0),
            ("15s", 15_000),
            ("500ms", 500),
            ("1h30m", 5_400_000),
            ("1d", 86_400_000),
            ("2w", 1_209_600_000),
            ("1y", 31_536_000_000),
            ("1m1s1ms", 61_001),
        ];
        for (text, ms) in cases {
            assert_eq!(parse_duration(text), Ok(Duration::from_millis(ms)), "{text}");
            assert_eq!(parse_duration(&format_duration(Duration::from_millis(ms))), Ok(Duration::from_millis(ms)));
        }
    }

    #[test]
    fn rejects_malformed_durations() {
        for text in ["", "s", "15", "1.5s", "1s1h", "1h1h", "3x", "-1s", "99999999999999999999s"] {
            assert!(parse_duration(text).is_err(), "{text} must be rejected");
        }
        assert_eq!(
            parse_duration("3x").unwrap_err().to_string(),
            "invalid duration \"3x\": unknown unit, expected one of y, w, d, h, m, s, ms"
        );
    }

    #[test]
    fn formats_like_prometheus() {
        assert_eq!(format_duration(Duration::from_secs(15 * 86400)), "15d");
        assert_eq!(format_duration(Duration::from_secs(14 * 86400)), "2w");
        assert_eq!(format_duration(Duration::from_secs(90 * 86400)), "90d");
        assert_eq!(format_duration(Duration::from_secs(365 * 86400)), "1y");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
