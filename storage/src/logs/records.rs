//! The logs store's WAL records: streams (a reference, a tenant and a label set) and entries
//! (runs of entries per stream reference, each run numbered from the stream's sequence number
//! of its first entry). Integers are varints; `docs/format/log-chunks.md` (section "WAL
//! records") lists the layouts.
//!
//! Entries are encoded straight from the caller's batch into one reused buffer and decoded as
//! borrowed views, so neither direction allocates per entry.

use crate::codec::{get_bytes, get_str, get_uvarint, get_varint, put_bytes, put_uvarint, put_varint};
use crate::labels::{Label, Labels};

/// A stream record entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StreamRecord {
    pub stream_ref: u64,
    pub tenant: String,
    pub labels: Labels,
}

/// A record that could not be decoded: the WAL checksum passed, so this is a bug or a record
/// written by a newer version; replay counts and skips it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MalformedRecord;

pub(crate) fn put_labels(out: &mut Vec<u8>, labels: &Labels) {
    put_uvarint(out, labels.len() as u64);
    for label in labels {
        put_bytes(out, label.name.as_bytes());
        put_bytes(out, label.value.as_bytes());
    }
}

pub(crate) fn get_labels(input: &mut &[u8]) -> Result<Labels, MalformedRecord> {
    let count = get_uvarint(input).ok_or(MalformedRecord)?;
    let mut labels = Vec::with_capacity(count.min(256) as usize);
    for _ in 0..count {
        let name = get_str(input).ok_or(MalformedRecord)?;
        let value = get_str(input).ok_or(MalformedRecord)?;
        labels.push(Label { name: name.into(), value: value.into() });
    }
    Labels::from_labels(labels).map_err(|_| MalformedRecord)
}

/// Skips over an encoded label set and returns its bytes, checking only its framing.
pub(crate) fn skip_labels<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], MalformedRecord> {
    let start = *input;
    let count = get_uvarint(input).ok_or(MalformedRecord)?;
    for _ in 0..count.saturating_mul(2) {
        get_bytes(input).ok_or(MalformedRecord)?;
    }
    Ok(&start[..start.len() - input.len()])
}

pub(crate) fn encode_streams(out: &mut Vec<u8>, streams: &[(u64, &str, &Labels)]) {
    out.clear();
    put_uvarint(out, streams.len() as u64);
    for (stream_ref, tenant, labels) in streams {
        put_uvarint(out, *stream_ref);
        put_bytes(out, tenant.as_bytes());
        put_labels(out, labels);
    }
}

pub(crate) fn decode_streams(mut input: &[u8]) -> Result<Vec<StreamRecord>, MalformedRecord> {
    let count = get_uvarint(&mut input).ok_or(MalformedRecord)?;
    let mut out = Vec::with_capacity(count.min(1 << 16) as usize);
    for _ in 0..count {
        let stream_ref = get_uvarint(&mut input).ok_or(MalformedRecord)?;
        let tenant = get_str(&mut input).ok_or(MalformedRecord)?.to_string();
        let labels = get_labels(&mut input)?;
        out.push(StreamRecord { stream_ref, tenant, labels });
    }
    Ok(out)
}

/// Writes an entries record incrementally: [`EntriesWriter::begin_group`] per stream run, then
/// [`EntriesWriter::entry`] per entry. The group and entry counts are patched in at the end,
/// so the writer never buffers entries.
pub(crate) struct EntriesWriter<'a> {
    out: &'a mut Vec<u8>,
    groups: u32,
    /// Where the open group's entry count (4 bytes) sits.
    group_count_at: Option<usize>,
    group_entries: u32,
    previous_t_ns: i64,
}

/// Counts are fixed 4-byte little-endian fields so they can be patched after the entries.
impl<'a> EntriesWriter<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> EntriesWriter<'a> {
        out.clear();
        out.extend_from_slice(&[0; 4]);
        EntriesWriter { out, groups: 0, group_count_at: None, group_entries: 0, previous_t_ns: 0 }
    }

    pub fn begin_group(&mut self, stream_ref: u64, first_seq: u64) {
        self.end_group();
        put_uvarint(self.out, stream_ref);
        put_uvarint(self.out, first_seq);
        self.group_count_at = Some(self.out.len());
        self.out.extend_from_slice(&[0; 4]);
        self.group_entries = 0;
        self.previous_t_ns = 0;
        self.groups += 1;
    }

    /// An entry of the open group; `metadata` is an encoded label set (see [`put_labels`]).
    pub fn entry(&mut self, t_ns: i64, line: &[u8], metadata: &Labels) {
        put_varint(self.out, t_ns.wrapping_sub(self.previous_t_ns));
        self.previous_t_ns = t_ns;
        put_bytes(self.out, line);
        put_labels(self.out, metadata);
        self.group_entries += 1;
    }

    /// Like [`EntriesWriter::entry`], with the metadata already encoded.
    pub fn entry_encoded(&mut self, t_ns: i64, line: &[u8], metadata: &[u8]) {
        put_varint(self.out, t_ns.wrapping_sub(self.previous_t_ns));
        self.previous_t_ns = t_ns;
        put_bytes(self.out, line);
        self.out.extend_from_slice(metadata);
        self.group_entries += 1;
    }

    fn end_group(&mut self) {
        if let Some(at) = self.group_count_at.take() {
            self.out[at..at + 4].copy_from_slice(&self.group_entries.to_le_bytes());
        }
    }

    /// Patches the counts in; returns the number of groups written.
    pub fn finish(mut self) -> u32 {
        self.end_group();
        self.out[0..4].copy_from_slice(&self.groups.to_le_bytes());
        self.groups
    }
}

/// One entry of an entries record, borrowed from the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryView<'a> {
    pub t_ns: i64,
    pub line: &'a [u8],
    /// The encoded metadata label set.
    pub metadata: &'a [u8],
}

/// A run of entries of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntriesGroup<'a> {
    pub stream_ref: u64,
    pub first_seq: u64,
    pub entries: Vec<EntryView<'a>>,
}

fn get_fixed_u32(input: &mut &[u8]) -> Option<u32> {
    crate::codec::get_u32(input)
}

/// Decodes every group of an entries record; lines are checked to be UTF-8.
pub(crate) fn decode_entries(mut input: &[u8]) -> Result<Vec<EntriesGroup<'_>>, MalformedRecord> {
    let groups = get_fixed_u32(&mut input).ok_or(MalformedRecord)?;
    let mut out = Vec::with_capacity((groups as usize).min(1 << 12));
    for _ in 0..groups {
        let stream_ref = get_uvarint(&mut input).ok_or(MalformedRecord)?;
        let first_seq = get_uvarint(&mut input).ok_or(MalformedRecord)?;
        let count = get_fixed_u32(&mut input).ok_or(MalformedRecord)?;
        // Each entry takes at least 3 bytes: bound the reservation by what is there.
        let mut entries = Vec::with_capacity((count as usize).min(input.len() / 3 + 1));
        let mut t_ns = 0i64;
        for _ in 0..count {
            t_ns = t_ns.wrapping_add(get_varint(&mut input).ok_or(MalformedRecord)?);
            let line = get_bytes(&mut input).ok_or(MalformedRecord)?;
            if std::str::from_utf8(line).is_err() {
                return Err(MalformedRecord);
            }
            let metadata = skip_labels(&mut input)?;
            entries.push(EntryView { t_ns, line, metadata });
        }
        out.push(EntriesGroup { stream_ref, first_seq, entries });
    }
    if !input.is_empty() {
        return Err(MalformedRecord);
    }
    Ok(out)
}

/// Re-encodes groups (for a checkpoint that drops part of a record).
pub(crate) fn encode_groups(out: &mut Vec<u8>, groups: &[EntriesGroup<'_>]) {
    let mut writer = EntriesWriter::new(out);
    for group in groups {
        writer.begin_group(group.stream_ref, group.first_seq);
        for entry in &group.entries {
            writer.entry_encoded(entry.t_ns, entry.line, entry.metadata);
        }
    }
    writer.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let labels = Labels::from_pairs([("app", "api"), ("env", "prod")]).unwrap();
        let mut out = Vec::new();
        encode_streams(&mut out, &[(7, "fake", &labels), (9, "team-a", &labels)]);
        let decoded = decode_streams(&out).unwrap();
        assert_eq!(decoded[1], StreamRecord { stream_ref: 9, tenant: "team-a".into(), labels: labels.clone() });

        let metadata = Labels::from_pairs([("trace_id", "abc")]).unwrap();
        let mut writer = EntriesWriter::new(&mut out);
        writer.begin_group(7, 100);
        writer.entry(1_000, b"first", &Labels::empty());
        writer.entry(-5, b"second", &metadata);
        writer.begin_group(9, 0);
        writer.entry(i64::MAX, b"", &Labels::empty());
        assert_eq!(writer.finish(), 2);
        let groups = decode_entries(&out).unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!((groups[0].stream_ref, groups[0].first_seq, groups[0].entries.len()), (7, 100, 2));
        assert_eq!(groups[0].entries[1].t_ns, -5);
        assert_eq!(groups[0].entries[1].line, b"second");
        assert_eq!(get_labels(&mut &groups[0].entries[1].metadata[..]).unwrap(), metadata);
        assert_eq!(groups[1].entries[0].t_ns, i64::MAX);

        let mut again = Vec::new();
        encode_groups(&mut again, &groups);
        assert_eq!(again, out);
    }

    #[test]
    fn truncated_records_are_malformed_not_panics() {
        let mut out = Vec::new();
        let mut writer = EntriesWriter::new(&mut out);
        writer.begin_group(1, 0);
        writer.entry(5, b"line", &Labels::from_pairs([("a", "b")]).unwrap());
        writer.finish();
        for cut in 0..out.len() {
            assert!(decode_entries(&out[..cut]).is_err(), "cut at {cut}");
        }
        let mut streams = Vec::new();
        encode_streams(&mut streams, &[(1, "t", &Labels::from_pairs([("a", "b")]).unwrap())]);
        for cut in 0..streams.len() {
            assert!(decode_streams(&streams[..cut]).is_err(), "cut at {cut}");
        }
        // A line that is not UTF-8.
        let mut bad = Vec::new();
        let mut writer = EntriesWriter::new(&mut bad);
        writer.begin_group(1, 0);
        writer.entry(5, &[0xff, 0xfe], &Labels::empty());
        writer.finish();
        assert!(decode_entries(&bad).is_err());
    }
}
