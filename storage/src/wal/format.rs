//! The WAL's byte layout: the segment header and the record frame, and the pure functions that
//! encode and decode them. `docs/format/wal.md` draws the same layout; keep the two in step.
//!
//! All integers are little-endian. Checksums are CRC32C (Castagnoli).

use std::fmt;

/// First four bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 4] = *b"TWAL";

/// The segment format this code writes. A segment with a higher version is refused, never
/// truncated: it was written by a newer Tripod and is not ours to repair.
pub const SEGMENT_VERSION: u16 = 1;

/// magic (4) + version (2) + flags (2) + segment index (4) + header CRC (4).
pub const SEGMENT_HEADER_LEN: usize = 16;

/// CRC (4) + payload length (4) + record kind (1).
pub const RECORD_HEADER_LEN: usize = 9;

/// The largest payload one record may carry. Bounds the allocation a corrupt length field could
/// ask for during replay, and keeps a single record well inside a segment.
pub const MAX_RECORD_PAYLOAD_BYTES: usize = 256 << 20;

/// What a record holds, chosen by the writer. Kind 0 is reserved so that a zero-filled region
/// (a hole left by a crashed filesystem) can never decode as a record.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKind(u8);

impl RecordKind {
    /// Returns `None` for the reserved kind 0.
    pub const fn new(kind: u8) -> Option<RecordKind> {
        if kind == 0 { None } else { Some(RecordKind(kind)) }
    }

    pub const fn as_u8(self) -> u8 {
        self.0
    }
}

impl fmt::Debug for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordKind({})", self.0)
    }
}

/// Encodes the 16-byte header that opens segment `index`.
pub fn encode_segment_header(index: u32) -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    header[0..4].copy_from_slice(&SEGMENT_MAGIC);
    header[4..6].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    // Bytes 6..8 are flags, all zero in version 1.
    header[8..12].copy_from_slice(&index.to_le_bytes());
    let crc = crc32c::crc32c(&header[0..12]);
    header[12..16].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Why a segment header could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderProblem {
    /// Fewer than 16 bytes: the file was cut while being created.
    Short { len: usize },
    /// Not a WAL segment, or damaged.
    BadMagic,
    /// The header bytes do not match their checksum.
    BadChecksum,
    /// The header names another segment index than the file name does.
    WrongIndex { found: u32 },
    /// Written by a newer format version.
    UnsupportedVersion { version: u16 },
}

impl fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderProblem::Short { len } => write!(f, "header cut short at {len} bytes"),
            HeaderProblem::BadMagic => write!(f, "bad magic"),
            HeaderProblem::BadChecksum => write!(f, "header checksum mismatch"),
            HeaderProblem::WrongIndex { found } => write!(f, "header names segment {found}"),
            HeaderProblem::UnsupportedVersion { version } => {
                write!(f, "unsupported segment version {version}")
            }
        }
    }
}

/// Checks the header at the start of `bytes` for segment `index`.
pub fn decode_segment_header(bytes: &[u8], index: u32) -> Result<(), HeaderProblem> {
    if bytes.len() < SEGMENT_HEADER_LEN {
        return Err(HeaderProblem::Short { len: bytes.len() });
    }
    if bytes[0..4] != SEGMENT_MAGIC {
        return Err(HeaderProblem::BadMagic);
    }
    let stored_crc = read_u32(&bytes[12..16]);
    if crc32c::crc32c(&bytes[0..12]) != stored_crc {
        return Err(HeaderProblem::BadChecksum);
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != SEGMENT_VERSION {
        return Err(HeaderProblem::UnsupportedVersion { version });
    }
    let found = read_u32(&bytes[8..12]);
    if found != index {
        return Err(HeaderProblem::WrongIndex { found });
    }
    Ok(())
}

/// The number of bytes a record with `payload_len` bytes of payload occupies on disk.
pub const fn framed_len(payload_len: usize) -> usize {
    RECORD_HEADER_LEN + payload_len
}

/// Appends one framed record to `out`. The caller has checked the payload size.
pub fn encode_record(out: &mut Vec<u8>, kind: RecordKind, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_RECORD_PAYLOAD_BYTES);
    let start = out.len();
    out.extend_from_slice(&[0u8; 4]);
    // The length fits in u32: MAX_RECORD_PAYLOAD_BYTES is far below u32::MAX.
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.push(kind.as_u8());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// One record read back from a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodedRecord<'a> {
    pub kind: RecordKind,
    pub payload: &'a [u8],
    /// Bytes the frame occupies, header included.
    pub framed_len: usize,
}

/// Why decoding stopped before the end of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameProblem {
    /// Fewer bytes remain than a record header needs: a write was cut.
    TornHeader,
    /// The length field points past the end of the file: a write was cut, or the length is
    /// damaged.
    TornPayload,
    /// The length field exceeds the largest record ever written.
    ImpossibleLength,
    /// The bytes do not match their checksum.
    BadChecksum,
    /// The checksum matches but the kind is the reserved 0.
    ReservedKind,
}

impl fmt::Display for FrameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameProblem::TornHeader => "torn record header",
            FrameProblem::TornPayload => "torn record payload",
            FrameProblem::ImpossibleLength => "impossible record length",
            FrameProblem::BadChecksum => "record checksum mismatch",
            FrameProblem::ReservedKind => "record of reserved kind 0",
        })
    }
}

/// Decodes the record at the start of `bytes` (which must not be empty).
pub fn decode_record(bytes: &[u8]) -> Result<DecodedRecord<'_>, FrameProblem> {
    if bytes.len() < RECORD_HEADER_LEN {
        return Err(FrameProblem::TornHeader);
    }
    let stored_crc = read_u32(&bytes[0..4]);
    let payload_len = read_u32(&bytes[4..8]) as usize;
    if payload_len > MAX_RECORD_PAYLOAD_BYTES {
        return Err(FrameProblem::ImpossibleLength);
    }
    let total = framed_len(payload_len);
    if bytes.len() < total {
        return Err(FrameProblem::TornPayload);
    }
    if crc32c::crc32c(&bytes[4..total]) != stored_crc {
        return Err(FrameProblem::BadChecksum);
    }
    let Some(kind) = RecordKind::new(bytes[8]) else {
        return Err(FrameProblem::ReservedKind);
    };
    Ok(DecodedRecord { kind, payload: &bytes[RECORD_HEADER_LEN..total], framed_len: total })
}

fn read_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(k: u8) -> RecordKind {
        RecordKind::new(k).expect("nonzero kind")
    }

    #[test]
    fn record_round_trips() {
        let mut buf = Vec::new();
        encode_record(&mut buf, kind(7), b"hello");
        encode_record(&mut buf, kind(9), b"");
        let first = decode_record(&buf).unwrap();
        assert_eq!((first.kind, first.payload, first.framed_len), (kind(7), &b"hello"[..], 14));
        let second = decode_record(&buf[first.framed_len..]).unwrap();
        assert_eq!((second.kind, second.payload, second.framed_len), (kind(9), &b""[..], 9));
    }

    #[test]
    fn zero_filled_bytes_never_decode() {
        assert_eq!(decode_record(&[0u8; 64]), Err(FrameProblem::BadChecksum));
    }

    #[test]
    fn huge_length_is_rejected_before_allocation() {
        let mut buf = Vec::new();
        encode_record(&mut buf, kind(1), b"x");
        buf[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_record(&buf), Err(FrameProblem::ImpossibleLength));
    }

    #[test]
    fn header_checks() {
        let header = encode_segment_header(42);
        assert_eq!(decode_segment_header(&header, 42), Ok(()));
        assert_eq!(decode_segment_header(&header, 43), Err(HeaderProblem::WrongIndex { found: 42 }));
        assert_eq!(decode_segment_header(&header[..10], 42), Err(HeaderProblem::Short { len: 10 }));
        let mut newer = header;
        newer[4..6].copy_from_slice(&2u16.to_le_bytes());
        let crc = crc32c::crc32c(&newer[0..12]);
        newer[12..16].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_segment_header(&newer, 42), Err(HeaderProblem::UnsupportedVersion { version: 2 }));
        let mut flipped = header;
        flipped[9] ^= 1;
        assert_eq!(decode_segment_header(&flipped, 42), Err(HeaderProblem::BadChecksum));
    }
}
