//! The metrics store's WAL records: series, samples, exemplars and metadata. Each is a count
//! followed by entries; integers are varints, sample values 8-byte little-endian IEEE 754 bits.
//! `docs/format/metrics-block.md` (section "WAL records") lists the layouts.

use super::{MetricMetadata, MetricType, Sample};
use crate::codec::{get_array, get_str, get_u8, get_uvarint, get_varint, put_bytes, put_uvarint, put_varint};
use crate::labels::{Label, Labels};

/// A series record entry: its reference and labels.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SeriesRecord {
    pub series_ref: u64,
    pub labels: Labels,
}

/// A sample record entry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RefSample {
    pub series_ref: u64,
    pub sample: Sample,
}

/// An exemplar record entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RefExemplar {
    pub series_ref: u64,
    pub t_ms: i64,
    pub value: f64,
    pub labels: Labels,
}

/// A record that could not be decoded: the WAL checksum passed, so this is a bug or a record
/// written by a newer version; replay counts and skips it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MalformedRecord;

pub(crate) fn encode_series(out: &mut Vec<u8>, series: &[(u64, &Labels)]) {
    put_uvarint(out, series.len() as u64);
    for (series_ref, labels) in series {
        put_uvarint(out, *series_ref);
        put_labels(out, labels);
    }
}

fn put_labels(out: &mut Vec<u8>, labels: &Labels) {
    put_uvarint(out, labels.len() as u64);
    for label in labels {
        put_bytes(out, label.name.as_bytes());
        put_bytes(out, label.value.as_bytes());
    }
}

fn get_labels(input: &mut &[u8]) -> Result<Labels, MalformedRecord> {
    let count = get_uvarint(input).ok_or(MalformedRecord)?;
    let mut labels = Vec::with_capacity(count.min(256) as usize);
    for _ in 0..count {
        let name = get_str(input).ok_or(MalformedRecord)?;
        let value = get_str(input).ok_or(MalformedRecord)?;
        labels.push(Label { name: name.into(), value: value.into() });
    }
    Labels::from_labels(labels).map_err(|_| MalformedRecord)
}

pub(crate) fn decode_series(mut input: &[u8]) -> Result<Vec<SeriesRecord>, MalformedRecord> {
    let count = get_uvarint(&mut input).ok_or(MalformedRecord)?;
    let mut out = Vec::with_capacity(count.min(1 << 16) as usize);
    for _ in 0..count {
        let series_ref = get_uvarint(&mut input).ok_or(MalformedRecord)?;
        let labels = get_labels(&mut input)?;
        out.push(SeriesRecord { series_ref, labels });
    }
    Ok(out)
}

/// Samples as deltas from the first entry's reference and timestamp.
pub(crate) fn encode_samples(out: &mut Vec<u8>, samples: &[RefSample]) {
    put_uvarint(out, samples.len() as u64);
    let Some(first) = samples.first() else { return };
    put_uvarint(out, first.series_ref);
    put_varint(out, first.sample.t_ms);
    for entry in samples {
        put_varint(out, entry.series_ref.wrapping_sub(first.series_ref) as i64);
        put_varint(out, entry.sample.t_ms.wrapping_sub(first.sample.t_ms));
        out.extend_from_slice(&entry.sample.value.to_bits().to_le_bytes());
    }
}

pub(crate) fn decode_samples(mut input: &[u8], out: &mut Vec<RefSample>) -> Result<(), MalformedRecord> {
    let count = get_uvarint(&mut input).ok_or(MalformedRecord)?;
    if count == 0 {
        return Ok(());
    }
    let base_ref = get_uvarint(&mut input).ok_or(MalformedRecord)?;
    let base_t = get_varint(&mut input).ok_or(MalformedRecord)?;
    // Each entry takes at least 10 bytes: bound the reservation by what is there.
    out.reserve((count as usize).min(input.len() / 10 + 1));
    for _ in 0..count {
        let ref_delta = get_varint(&mut input).ok_or(MalformedRecord)?;
        let t_delta = get_varint(&mut input).ok_or(MalformedRecord)?;
        let bits = u64::from_le_bytes(get_array::<8>(&mut input).ok_or(MalformedRecord)?);
        out.push(RefSample {
            series_ref: base_ref.wrapping_add(ref_delta as u64),
            sample: Sample { t_ms: base_t.wrapping_add(t_delta), value: f64::from_bits(bits) },
        });
    }
    Ok(())
}

pub(crate) fn encode_exemplars(out: &mut Vec<u8>, exemplars: &[RefExemplar]) {
    put_uvarint(out, exemplars.len() as u64);
    for exemplar in exemplars {
        put_uvarint(out, exemplar.series_ref);
        put_varint(out, exemplar.t_ms);
        out.extend_from_slice(&exemplar.value.to_bits().to_le_bytes());
        put_labels(out, &exemplar.labels);
    }
}

pub(crate) fn decode_exemplars(mut input: &[u8]) -> Result<Vec<RefExemplar>, MalformedRecord> {
    let count = get_uvarint(&mut input).ok_or(MalformedRecord)?;
    let mut out = Vec::with_capacity(count.min(1 << 16) as usize);
    for _ in 0..count {
        let series_ref = get_uvarint(&mut input).ok_or(MalformedRecord)?;
        let t_ms = get_varint(&mut input).ok_or(MalformedRecord)?;
        let value = f64::from_bits(u64::from_le_bytes(get_array::<8>(&mut input).ok_or(MalformedRecord)?));
        let labels = get_labels(&mut input)?;
        out.push(RefExemplar { series_ref, t_ms, value, labels });
    }
    Ok(out)
}

pub(crate) fn encode_metadata(out: &mut Vec<u8>, entries: &[(&str, &MetricMetadata)]) {
    put_uvarint(out, entries.len() as u64);
    for (name, metadata) in entries {
        put_bytes(out, name.as_bytes());
        out.push(metadata.metric_type.code());
        put_bytes(out, metadata.help.as_bytes());
        put_bytes(out, metadata.unit.as_bytes());
    }
}

pub(crate) fn decode_metadata(mut input: &[u8]) -> Result<Vec<(String, MetricMetadata)>, MalformedRecord> {
    let count = get_uvarint(&mut input).ok_or(MalformedRecord)?;
    let mut out = Vec::with_capacity(count.min(1 << 12) as usize);
    for _ in 0..count {
        let name = get_str(&mut input).ok_or(MalformedRecord)?.to_string();
        let metric_type = MetricType::from_code(get_u8(&mut input).ok_or(MalformedRecord)?);
        let help = get_str(&mut input).ok_or(MalformedRecord)?.to_string();
        let unit = get_str(&mut input).ok_or(MalformedRecord)?.to_string();
        out.push((name, MetricMetadata { metric_type, help, unit }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "api")]).unwrap();
        let mut out = Vec::new();
        encode_series(&mut out, &[(7, &labels), (9, &labels)]);
        assert_eq!(decode_series(&out).unwrap()[1], SeriesRecord { series_ref: 9, labels: labels.clone() });

        let samples = [
            RefSample { series_ref: 10, sample: Sample { t_ms: 1000, value: 1.5 } },
            RefSample { series_ref: 3, sample: Sample { t_ms: -5, value: f64::NEG_INFINITY } },
        ];
        out.clear();
        encode_samples(&mut out, &samples);
        let mut decoded = Vec::new();
        decode_samples(&out, &mut decoded).unwrap();
        assert_eq!(decoded, samples);

        let exemplars = [RefExemplar { series_ref: 1, t_ms: 5, value: 0.25, labels: labels.clone() }];
        out.clear();
        encode_exemplars(&mut out, &exemplars);
        assert_eq!(decode_exemplars(&out).unwrap(), exemplars);

        let metadata = MetricMetadata { metric_type: MetricType::Counter, help: "requests".into(), unit: "".into() };
        out.clear();
        encode_metadata(&mut out, &[("http_requests_total", &metadata)]);
        assert_eq!(decode_metadata(&out).unwrap(), vec![("http_requests_total".to_string(), metadata)]);
    }

    #[test]
    fn truncated_records_are_malformed_not_panics() {
        let labels = Labels::from_pairs([("a", "b")]).unwrap();
        let mut out = Vec::new();
        encode_series(&mut out, &[(1, &labels)]);
        for cut in 0..out.len() {
            assert!(decode_series(&out[..cut]).is_err() || cut == 0 && out.is_empty());
        }
        let mut samples = Vec::new();
        encode_samples(&mut samples, &[RefSample { series_ref: 1, sample: Sample { t_ms: 1, value: 1.0 } }]);
        for cut in 0..samples.len() {
            assert!(decode_samples(&samples[..cut], &mut Vec::new()).is_err());
        }
        assert!(decode_samples(&[0xff, 0xff, 0xff, 0xff, 0x0f, 1, 1], &mut Vec::new()).is_err());
    }
}
