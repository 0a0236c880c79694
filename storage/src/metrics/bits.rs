//! Bit-level writer and reader used by the chunk encodings. Bits are written most significant
//! first into bytes, the first bit of the stream being the top bit of byte 0.

/// Appends bits to a byte vector, through a 64-bit accumulator that is flushed eight bytes at
/// a time.
#[derive(Debug, Clone, Default)]
pub struct BitWriter {
    /// Whole bytes written so far.
    bytes: Vec<u8>,
    /// Pending bits, right-aligned: the low `pending` bits of `accumulator`.
    accumulator: u64,
    pending: u32,
}

impl BitWriter {
    pub fn new() -> BitWriter {
        BitWriter::default()
    }

    /// Starts after `bytes` (which end at a byte boundary).
    pub fn with_bytes(bytes: Vec<u8>) -> BitWriter {
        BitWriter { bytes, accumulator: 0, pending: 0 }
    }

    /// Writes the low `count` bits of `value` (count <= 64), most significant first.
    #[inline]
    pub fn write_bits(&mut self, value: u64, count: u32) {
        debug_assert!(count <= 64);
        if count == 0 {
            return;
        }
        let value = if count == 64 { value } else { value & ((1u64 << count) - 1) };
        let room = 64 - self.pending;
        if count < room {
            self.accumulator = (self.accumulator << count) | value;
            self.pending += count;
            return;
        }
        // Fill the accumulator to 64 bits, flush it, keep the rest of `value`.
        let rest = count - room;
        let head = if rest == 0 { value } else { value >> rest };
        let full = if room == 64 { head } else { (self.accumulator << room) | head };
        self.bytes.extend_from_slice(&full.to_be_bytes());
        self.accumulator = if rest == 0 { 0 } else { value & ((1u64 << rest) - 1) };
        self.pending = rest;
    }

    pub fn write_bit(&mut self, bit: bool) {
        self.write_bits(u64::from(bit), 1);
    }

    pub fn write_uvarint(&mut self, mut value: u64) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                self.write_bits(u64::from(byte), 8);
                return;
            }
            self.write_bits(u64::from(byte | 0x80), 8);
        }
    }

    pub fn write_varint(&mut self, value: i64) {
        self.write_uvarint(zigzag(value));
    }

    /// Total bits written.
    pub fn bit_len(&self) -> usize {
        self.bytes.len() * 8 + self.pending as usize
    }

    /// The bytes written so far, the last one padded with zero bits.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes.len() + 8);
        out.extend_from_slice(&self.bytes);
        self.append_pending(&mut out);
        out
    }

    pub fn into_bytes(mut self) -> Vec<u8> {
        let mut bytes = std::mem::take(&mut self.bytes);
        self.append_pending(&mut bytes);
        bytes
    }

    /// The bytes written so far after the first `skip`, the last one padded with zero bits.
    pub fn bytes_after(&self, skip: usize) -> impl Iterator<Item = u8> + '_ {
        let whole = self.bytes.get(skip..).unwrap_or_default().iter().copied();
        let aligned = if self.pending > 0 { self.accumulator << (64 - self.pending) } else { 0 };
        let tail = aligned.to_be_bytes().into_iter().take(self.pending.div_ceil(8) as usize);
        whole.chain(tail)
    }

    fn append_pending(&self, out: &mut Vec<u8>) {
        if self.pending > 0 {
            let aligned = self.accumulator << (64 - self.pending);
            let whole = self.pending.div_ceil(8) as usize;
            out.extend_from_slice(&aligned.to_be_bytes()[..whole]);
        }
    }

    /// Bytes held, including spare capacity, for memory accounting.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity() + 8
    }

    pub fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
    }
}

/// Reads bits from a byte slice.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    bytes: &'a [u8],
    /// Position in bits from the start.
    position: usize,
}

/// The stream ended before the value was complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndOfStream;

impl<'a> BitReader<'a> {
    pub fn new(bytes: &'a [u8]) -> BitReader<'a> {
        BitReader { bytes, position: 0 }
    }

    /// Reads `count` bits (count <= 64) as the low bits of the result.
    #[inline]
    pub fn read_bits(&mut self, count: u32) -> Result<u64, EndOfStream> {
        if count == 0 {
            return Ok(0);
        }
        let end = self.position + count as usize;
        if end > self.bytes.len() * 8 {
            return Err(EndOfStream);
        }
        let byte_index = self.position / 8;
        let bit_offset = (self.position % 8) as u32;
        // Fast path: the bits lie within the next 8 bytes.
        if bit_offset + count <= 64 && byte_index + 8 <= self.bytes.len() {
            let mut word = [0u8; 8];
            word.copy_from_slice(&self.bytes[byte_index..byte_index + 8]);
            let word = u64::from_be_bytes(word);
            self.position = end;
            let shifted = word << bit_offset;
            return Ok(shifted >> (64 - count));
        }
        let mut value = 0u64;
        for _ in 0..count {
            let byte = self.bytes[self.position / 8];
            let bit = (byte >> (7 - (self.position % 8))) & 1;
            value = (value << 1) | u64::from(bit);
            self.position += 1;
        }
        Ok(value)
    }

    #[inline]
    pub fn read_bit(&mut self) -> Result<bool, EndOfStream> {
        let byte = *self.bytes.get(self.position / 8).ok_or(EndOfStream)?;
        let bit = (byte >> (7 - (self.position % 8))) & 1;
        self.position += 1;
        Ok(bit == 1)
    }

    pub fn read_uvarint(&mut self) -> Result<u64, EndOfStream> {
        // Fast path: the varint's bytes (at most seven here) lie in the next eight bytes.
        let byte_index = self.position / 8;
        if let Some(word) = self.bytes.get(byte_index..).and_then(|rest| rest.first_chunk::<8>()) {
            let word = u64::from_be_bytes(*word) << (self.position % 8);
            let mut value = 0u64;
            for index in 0..7 {
                let byte = (word >> (56 - 8 * index)) & 0xff;
                value |= (byte & 0x7f) << (7 * index);
                if byte & 0x80 == 0 {
                    self.position += 8 * (index + 1);
                    return Ok(value);
                }
            }
        }
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = self.read_bits(8)?;
            if shift == 63 && byte > 1 {
                return Err(EndOfStream);
            }
            value |= (byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(EndOfStream)
    }

    pub fn read_varint(&mut self) -> Result<i64, EndOfStream> {
        self.read_uvarint().map(unzigzag)
    }

    pub fn bits_remaining(&self) -> usize {
        self.bytes.len() * 8 - self.position
    }

    /// Position in bits from the start.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Moves past `count` bits.
    pub fn skip(&mut self, count: usize) -> Result<(), EndOfStream> {
        if count > self.bits_remaining() {
            return Err(EndOfStream);
        }
        self.position += count;
        Ok(())
    }
}

/// Reads `count` bits (1 to 64) at bit `position` of `bytes`, for decoders that unpack
/// fixed-width runs whose extent they have checked: one unaligned load when eight bytes
/// follow, bit by bit near the end. `None` past the end.
#[inline(always)]
pub fn bits_at(bytes: &[u8], position: usize, count: u32) -> Option<u64> {
    if !(1..=56).contains(&count) {
        return bits_at_slowly(bytes, position, count);
    }
    let byte_index = position / 8;
    let bit_offset = (position % 8) as u32;
    let word = match bytes.get(byte_index..).and_then(|rest| rest.first_chunk::<8>()) {
        Some(word) => u64::from_be_bytes(*word),
        None => last_word(bytes, position, count)?,
    };
    // bit_offset + count <= 63: the bits lie within the word.
    Some((word << bit_offset) >> (64 - count))
}

/// The bytes from the one holding bit `position` to the end (fewer than eight), as the top
/// bytes of a word, if the `count` bits are all there.
#[inline(never)]
fn last_word(bytes: &[u8], position: usize, count: u32) -> Option<u64> {
    if position.checked_add(count as usize)? > bytes.len() * 8 {
        return None;
    }
    let rest = bytes.get(position / 8..)?;
    let mut word = [0u8; 8];
    word.get_mut(..rest.len())?.copy_from_slice(rest);
    Some(u64::from_be_bytes(word))
}

/// [`bits_at`] for 0 or more than 56 bits.
#[cold]
#[inline(never)]
fn bits_at_slowly(bytes: &[u8], position: usize, count: u32) -> Option<u64> {
    let mut reader = BitReader { bytes, position };
    reader.read_bits(count).ok()
}

pub fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

pub fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// Bits needed to hold `value` (0 for 0).
pub fn bit_width(value: u64) -> u32 {
    64 - value.leading_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip_at_every_alignment() {
        let mut writer = BitWriter::new();
        let values: Vec<(u64, u32)> =
            (0..300u64).map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15), (i % 65) as u32)).collect();
        for (value, count) in &values {
            let masked = if *count == 64 { *value } else { value & ((1u64 << count) - 1) };
            writer.write_bits(masked, *count);
        }
        writer.write_varint(-123456789);
        let bytes = writer.into_bytes();
        let mut reader = BitReader::new(&bytes);
        for (value, count) in &values {
            let masked = if *count == 64 { *value } else { value & ((1u64 << count) - 1) };
            assert_eq!(reader.read_bits(*count).unwrap(), masked, "{count} bits");
        }
        assert_eq!(reader.read_varint(), Ok(-123456789));
        assert!(reader.bits_remaining() < 8);
        assert_eq!(reader.read_bits(9), Err(EndOfStream));
    }

    #[test]
    fn bits_at_reads_what_the_reader_reads() {
        let mut writer = BitWriter::new();
        let values: Vec<(u64, u32)> =
            (0..200u64).map(|i| (i.wrapping_mul(0x2545_f491_4f6c_dd1d), 1 + (i % 64) as u32)).collect();
        for (value, count) in &values {
            writer.write_bits(*value, *count);
        }
        let bytes = writer.into_bytes();
        let mut reader = BitReader::new(&bytes);
        for (_, count) in &values {
            let position = reader.position();
            assert_eq!(bits_at(&bytes, position, *count), reader.read_bits(*count).ok(), "{count} bits at {position}");
        }
        assert_eq!(bits_at(&bytes, bytes.len() * 8 - 3, 4), None);
        assert_eq!(bits_at(&bytes, bytes.len() * 8 + 100, 1), None);
        let mut reader = BitReader::new(&bytes);
        assert!(reader.skip(bytes.len() * 8 + 1).is_err());
        assert!(reader.skip(bytes.len() * 8).is_ok());
        assert_eq!(reader.bits_remaining(), 0);
    }

    #[test]
    fn varints_round_trip_at_every_alignment() {
        let values: Vec<u64> = (0..64).flat_map(|bits| [(1u64 << bits) - 1, 1u64 << bits, u64::MAX >> bits]).collect();
        for skip in 0..8 {
            let mut writer = BitWriter::new();
            writer.write_bits(0, skip);
            for value in &values {
                writer.write_uvarint(*value);
                writer.write_varint(*value as i64);
            }
            let bytes = writer.into_bytes();
            let mut reader = BitReader::new(&bytes);
            reader.skip(skip as usize).unwrap();
            for value in &values {
                assert_eq!(reader.read_uvarint(), Ok(*value), "{value} after {skip} bits");
                assert_eq!(reader.read_varint(), Ok(*value as i64), "{value} after {skip} bits");
            }
            assert!(reader.bits_remaining() < 8);
        }
    }

    #[test]
    fn zigzag_round_trips() {
        for value in [0i64, 1, -1, 63, -64, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(value)), value);
        }
        assert_eq!(bit_width(0), 0);
        assert_eq!(bit_width(1), 1);
        assert_eq!(bit_width(255), 8);
    }
}
