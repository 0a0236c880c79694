//! A remote write encoder for tests, written from the message layouts (proto/prometheus), so
//! tests do not depend on the decoder under test.

use tripod::api::wire::{put_bytes_field, put_fixed64_field, put_varint, put_varint_field};

pub struct Series<'a> {
    pub labels: Vec<(&'a str, &'a str)>,
    pub samples: Vec<(i64, f64)>,
    pub exemplars: Vec<(Vec<(&'a str, &'a str)>, f64, i64)>,
}

fn sample(value: f64, t_ms: i64) -> Vec<u8> {
    let mut out = Vec::new();
    put_fixed64_field(&mut out, 1, value.to_bits());
    put_varint_field(&mut out, 2, t_ms as u64);
    out
}

fn label(name: &str, value: &str) -> Vec<u8> {
    let mut out = Vec::new();
    put_bytes_field(&mut out, 1, name.as_bytes());
    put_bytes_field(&mut out, 2, value.as_bytes());
    out
}

/// A `prometheus.WriteRequest`, with optional metadata (type code, family, help, unit).
pub fn v1(series: &[Series], metadata: &[(u64, &str, &str, &str)]) -> Vec<u8> {
    let mut request = Vec::new();
    for s in series {
        let mut ts = Vec::new();
        for (name, value) in &s.labels {
            put_bytes_field(&mut ts, 1, &label(name, value));
        }
        for (t, v) in &s.samples {
            put_bytes_field(&mut ts, 2, &sample(*v, *t));
        }
        for (labels, value, t) in &s.exemplars {
            let mut exemplar = Vec::new();
            for (name, value) in labels {
                put_bytes_field(&mut exemplar, 1, &label(name, value));
            }
            put_fixed64_field(&mut exemplar, 2, value.to_bits());
            put_varint_field(&mut exemplar, 3, *t as u64);
            put_bytes_field(&mut ts, 3, &exemplar);
        }
        put_bytes_field(&mut request, 1, &ts);
    }
    for (kind, family, help, unit) in metadata {
        let mut meta = Vec::new();
        put_varint_field(&mut meta, 1, *kind);
        put_bytes_field(&mut meta, 2, family.as_bytes());
        put_bytes_field(&mut meta, 4, help.as_bytes());
        put_bytes_field(&mut meta, 5, unit.as_bytes());
        put_bytes_field(&mut request, 3, &meta);
    }
    request
}

/// An `io.prometheus.write.v2.Request`, with per-series metadata (type code, help, unit).
pub fn v2(series: &[(Series, Option<(u64, &str, &str)>)]) -> Vec<u8> {
    let mut symbols: Vec<String> = vec![String::new()];
    let mut symbol = |text: &str| -> u64 {
        match symbols.iter().position(|s| s == text) {
            Some(index) => index as u64,
            None => {
                symbols.push(text.to_string());
                (symbols.len() - 1) as u64
            }
        }
    };
    let mut encoded_series = Vec::new();
    for (s, metadata) in series {
        let mut ts = Vec::new();
        let mut refs = Vec::new();
        for (name, value) in &s.labels {
            put_varint(&mut refs, symbol(name));
            put_varint(&mut refs, symbol(value));
        }
        put_bytes_field(&mut ts, 1, &refs);
        for (t, v) in &s.samples {
            put_bytes_field(&mut ts, 2, &sample(*v, *t));
        }
        for (labels, value, t) in &s.exemplars {
            let mut exemplar = Vec::new();
            let mut refs = Vec::new();
            for (name, value) in labels {
                put_varint(&mut refs, symbol(name));
                put_varint(&mut refs, symbol(value));
            }
            put_bytes_field(&mut exemplar, 1, &refs);
            put_fixed64_field(&mut exemplar, 2, value.to_bits());
            put_varint_field(&mut exemplar, 3, *t as u64);
            put_bytes_field(&mut ts, 4, &exemplar);
        }
        if let Some((kind, help, unit)) = metadata {
            let mut meta = Vec::new();
            put_varint_field(&mut meta, 1, *kind);
            put_varint_field(&mut meta, 3, symbol(help));
            put_varint_field(&mut meta, 4, symbol(unit));
            put_bytes_field(&mut ts, 5, &meta);
        }
        encoded_series.push(ts);
    }
    let mut request = Vec::new();
    for text in &symbols {
        put_bytes_field(&mut request, 4, text.as_bytes());
    }
    for ts in &encoded_series {
        put_bytes_field(&mut request, 5, ts);
    }
    request
}

pub fn snappy(bytes: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(bytes).expect("snappy compresses")
}
