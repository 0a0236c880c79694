//! Query results and their JSON encoding, byte for byte as Prometheus writes the `data` field
//! of `/api/v1/query` and `/api/v1/query_range`.
//!
//! Timestamps are seconds with up to three decimals (`1700000000`, `1700000000.500`); values
//! are strings (`"1"`, `"NaN"`, `"+Inf"`); label sets are objects in label order.

use std::fmt::Write as _;

use tripod_storage::labels::Labels;
use tripod_storage::metrics::Sample;

use crate::api::prometheus::format_value;

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSample {
    pub labels: Labels,
    pub sample: Sample,
}

/// One series of a range vector.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// What a PromQL query evaluates to.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryValue {
    Scalar(Sample),
    String { t_ms: i64, value: String },
    Vector(Vec<VectorSample>),
    Matrix(Vec<RangeSeries>),
}

impl QueryValue {
    /// `scalar`, `string`, `vector` or `matrix`, as the API's `resultType`.
    pub fn result_type(&self) -> &'static str {
        match self {
            QueryValue::Scalar(_) => "scalar",
            QueryValue::String { .. } => "string",
            QueryValue::Vector(_) => "vector",
            QueryValue::Matrix(_) => "matrix",
        }
    }

    /// The `data` object: `{"resultType":…,"result":…}`.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(64);
        out.push_str("{\"resultType\":\"");
        out.push_str(self.result_type());
        out.push_str("\",\"result\":");
        match self {
            QueryValue::Scalar(sample) => write_point(&mut out, sample),
            QueryValue::String { t_ms, value } => {
                out.push('[');
                write_timestamp(&mut out, *t_ms);
                out.push(',');
                write_string(&mut out, value);
                out.push(']');
            }
            QueryValue::Vector(samples) => {
                out.push('[');
                for (i, element) in samples.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str("{\"metric\":");
                    write_labels(&mut out, &element.labels);
                    out.push_str(",\"value\":");
                    write_point(&mut out, &element.sample);
                    out.push('}');
                }
                out.push(']');
            }
            QueryValue::Matrix(series) => {
                out.push('[');
                for (i, element) in series.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str("{\"metric\":");
                    write_labels(&mut out, &element.labels);
                    out.push_str(",\"values\":[");
                    for (j, sample) in element.samples.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        write_point(&mut out, sample);
                    }
                    out.push_str("]}");
                }
                out.push(']');
            }
        }
        out.push('}');
        out
    }
}

fn write_point(out: &mut String, sample: &Sample) {
    out.push('[');
    write_timestamp(out, sample.t_ms);
    out.push_str(",\"");
    out.push_str(&format_value(sample.value));
    out.push_str("\"]");
}

/// Milliseconds as seconds: the integer part, then `.` and three digits when not whole.
fn write_timestamp(out: &mut String, t_ms: i64) {
    if t_ms < 0 {
        out.push('-');
    }
    let magnitude = t_ms.unsigned_abs();
    let _ = write!(out, "{}", magnitude / 1000);
    let fraction = magnitude % 1000;
    if fraction != 0 {
        let _ = write!(out, ".{fraction:03}");
    }
}

fn write_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, label) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, &label.name);
        out.push(':');
        write_string(out, &label.value);
    }
    out.push('}');
}

fn write_string(out: &mut String, text: &str) {
    // serde_json's escaping is JSON-correct and matches encoding/json for everything but the
    // HTML characters, which Prometheus's encoder leaves alone as well.
    out.push_str(&serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string()));
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied()).unwrap()
    }

    #[test]
    fn timestamps_are_seconds_with_three_decimals_when_fractional() {
        let cases = [(0, "0"), (1_000, "1"), (1_500, "1.500"), (1_001, "1.001"), (1_050, "1.050"), (-1_500, "-1.500")];
        for (t_ms, want) in cases {
            let mut out = String::new();
            write_timestamp(&mut out, t_ms);
            assert_eq!(out, want, "{t_ms}");
        }
        let mut out = String::new();
        write_timestamp(&mut out, i64::MIN);
        assert_eq!(out, "-9223372036854775.808");
    }

    #[test]
    fn each_result_type_has_prometheus_shape() {
        let scalar = QueryValue::Scalar(Sample { t_ms: 1_700_000_000_000, value: 2.0 });
        assert_eq!(scalar.to_json(), r#"{"resultType":"scalar","result":[1700000000,"2"]}"#);

        let string = QueryValue::String { t_ms: 1_500, value: "a\"b".into() };
        assert_eq!(string.to_json(), r#"{"resultType":"string","result":[1.500,"a\"b"]}"#);

        let vector = QueryValue::Vector(vec![
            VectorSample {
                labels: labels(&[("__name__", "up"), ("job", "api")]),
                sample: Sample { t_ms: 1_000, value: f64::NAN },
            },
            VectorSample { labels: Labels::empty(), sample: Sample { t_ms: 1_000, value: f64::NEG_INFINITY } },
        ]);
        let parsed: Value = serde_json::from_str(&vector.to_json()).unwrap();
        assert_eq!(
            parsed,
            json!({"resultType": "vector", "result": [
                {"metric": {"__name__": "up", "job": "api"}, "value": [1, "NaN"]},
                {"metric": {}, "value": [1, "-Inf"]},
            ]})
        );

        let matrix = QueryValue::Matrix(vec![RangeSeries {
            labels: labels(&[("job", "x")]),
            samples: vec![Sample { t_ms: 0, value: 0.25 }, Sample { t_ms: 15_000, value: 1e21 }],
        }]);
        assert_eq!(
            matrix.to_json(),
            r#"{"resultType":"matrix","result":[{"metric":{"job":"x"},"values":[[0,"0.25"],[15,"1e+21"]]}]}"#
        );
        assert_eq!(QueryValue::Matrix(Vec::new()).to_json(), r#"{"resultType":"matrix","result":[]}"#);
    }
}
