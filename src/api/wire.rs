//! A zero-copy reader of the protobuf wire format, for the decoders of hot ingest paths that must
//! not allocate per field (remote write, Loki push). Length-delimited fields are returned as
//! slices of the input; every length is checked against what remains.

use std::fmt;

/// A field's value as the wire format carries it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Why a message could not be read, with the byte offset where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub offset: usize,
    pub problem: &'static str,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.problem, self.offset)
    }
}

/// Iterates the fields of one message.
pub struct WireReader<'a> {
    bytes: &'a [u8],
    position: usize,
    /// Offset of `bytes` within the outermost message, for error positions.
    base: usize,
}

impl<'a> WireReader<'a> {
    pub fn new(bytes: &'a [u8]) -> WireReader<'a> {
        WireReader { bytes, position: 0, base: 0 }
    }

    /// A reader for an embedded message found at `base` in the outer one.
    pub fn nested(bytes: &'a [u8], base: usize) -> WireReader<'a> {
        WireReader { bytes, position: 0, base }
    }

    /// Offset (in the outermost message) of the next field.
    pub fn offset(&self) -> usize {
        self.base + self.position
    }

    fn error(&self, problem: &'static str) -> WireError {
        WireError { offset: self.offset(), problem }
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, WireError> {
        // Most varints here (field keys, short lengths) are one byte.
        if let Some(&byte) = self.bytes.get(self.position)
            && byte < 0x80
        {
            self.position += 1;
            return Ok(u64::from(byte));
        }
        self.long_varint()
    }

    #[inline(never)]
    fn long_varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for shift in 0..10 {
            let Some(&byte) = self.bytes.get(self.position) else {
                return Err(self.error("truncated varint"));
            };
            self.position += 1;
            if shift == 9 && byte > 1 {
                return Err(self.error("varint overflows 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << (7 * shift);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.error("varint too long"))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        let end = self.position.checked_add(len).filter(|end| *end <= self.bytes.len());
        let Some(end) = end else {
            return Err(self.error("length runs past the end of the message"));
        };
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }

    /// The next field: its number, its value, and the offset where its value starts. `None` at
    /// the end of the message.
    #[allow(clippy::type_complexity)]
    #[inline(always)]
    pub fn next_field(&mut self) -> Result<Option<(u32, WireValue<'a>, usize)>, WireError> {
        if self.position >= self.bytes.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = (key >> 3) as u32;
        if field == 0 || key >> 3 > u64::from(u32::MAX >> 3) {
            return Err(self.error("invalid field number"));
        }
        let value_offset = self.offset();
        let value = match key & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => {
                let bytes = self.take(8)?;
                WireValue::Fixed64(u64::from_le_bytes(bytes.try_into().map_err(|_| self.error("fixed64"))?))
            }
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| self.error("length too large"))?;
                WireValue::Bytes(self.take(len)?)
            }
            5 => {
                let bytes = self.take(4)?;
                WireValue::Fixed32(u32::from_le_bytes(bytes.try_into().map_err(|_| self.error("fixed32"))?))
            }
            _ => {
                return Err(self.error("unsupported wire type (groups are not used by these messages)"));
            }
        };
        Ok(Some((field, value, value_offset)))
    }
}

/// `bytes` as a string if they are UTF-8, checking the common all-ASCII case first (faster
/// than the general check on the short strings protobuf messages carry).
#[inline]
pub fn utf8(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).ok()
}

/// Reads a packed repeated varint field (or one unpacked element) into `out`.
pub fn read_packed_varints(value: WireValue<'_>, offset: usize, out: &mut Vec<u64>) -> Result<(), WireError> {
    match value {
        WireValue::Varint(v) => {
            out.push(v);
            Ok(())
        }
        WireValue::Bytes(bytes) => {
            let mut reader = WireReader::nested(bytes, offset);
            while reader.position < bytes.len() {
                out.push(reader.varint()?);
            }
            Ok(())
        }
        _ => Err(WireError { offset, problem: "expected varints" }),
    }
}

/// Appends a varint to `out` (for encoders in tests and the load tool).
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a length-delimited field.
pub fn put_bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, (u64::from(field) << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends a varint field.
pub fn put_varint_field(out: &mut Vec<u8>, field: u32, value: u64) {
    put_varint(out, u64::from(field) << 3);
    put_varint(out, value);
}

/// Appends a fixed64 field (doubles and sfixed64).
pub fn put_fixed64_field(out: &mut Vec<u8>, field: u32, value: u64) {
    put_varint(out, (u64::from(field) << 3) | 1);
    out.extend_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let mut message = Vec::new();
        put_varint_field(&mut message, 1, 300);
        put_bytes_field(&mut message, 2, b"hello");
        put_fixed64_field(&mut message, 3, 2.5f64.to_bits());
        let mut reader = WireReader::new(&message);
        assert_eq!(reader.next_field().unwrap().map(|(f, v, _)| (f, v)), Some((1, WireValue::Varint(300))));
        assert_eq!(reader.next_field().unwrap().map(|(f, v, _)| (f, v)), Some((2, WireValue::Bytes(b"hello"))));
        assert_eq!(
            reader.next_field().unwrap().map(|(f, v, _)| (f, v)),
            Some((3, WireValue::Fixed64(2.5f64.to_bits())))
        );
        assert_eq!(reader.next_field().unwrap(), None);
    }

    #[test]
    fn damage_is_an_error_with_a_position() {
        let mut message = Vec::new();
        put_bytes_field(&mut message, 2, b"hello");
        for cut in 1..message.len() {
            let mut reader = WireReader::new(&message[..cut]);
            assert!(reader.next_field().is_err(), "cut at {cut}");
        }
        let error = WireReader::new(&[0x0b]).next_field().unwrap_err();
        assert_eq!(error.to_string(), "unsupported wire type (groups are not used by these messages) at byte 1");
        assert!(WireReader::new(&[0x00, 0x01]).next_field().is_err(), "field 0");
        let mut packed = Vec::new();
        put_varint(&mut packed, 5);
        put_varint(&mut packed, 1000);
        let mut out = Vec::new();
        read_packed_varints(WireValue::Bytes(&packed), 0, &mut out).unwrap();
        assert_eq!(out, [5, 1000]);
    }
}
