//! Sample chunks: the compressed form of a run of one series' samples. A chunk is an encoding
//! byte followed by the encoded samples; `docs/format/metrics-chunks.md` draws both encodings.
//!
//! - [`ENCODING_XOR`]: Gorilla-style, delta-of-delta timestamps and XOR'd float values. It can be
//!   appended to one sample at a time, so the head's open chunks use it, and it holds any float
//!   (NaN, infinities, staleness markers).
//! - [`ENCODING_PACKED`]: for blocks. Values that are decimals (`m / 10^k` for integers `m`) are
//!   stored as integer deltas, and both deltas and timestamp deltas are bit-packed at the width
//!   their range needs after subtracting the minimum and dividing by the common divisor. A
//!   constant series costs no bits per sample; a counter of whole bytes a few bits.
//!
//! [`encode_best`] picks whichever is smaller for a run of samples.

use super::Sample;
use super::bits::{BitReader, BitWriter, EndOfStream, bit_width, bits_at};

pub const ENCODING_XOR: u8 = 1;
pub const ENCODING_PACKED: u8 = 2;

/// The most samples one chunk holds.
pub const MAX_SAMPLES_PER_CHUNK: usize = 480;

/// Why a chunk could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("empty chunk")]
    Empty,
    #[error("unknown chunk encoding {0}")]
    UnknownEncoding(u8),
    #[error("chunk data ends early")]
    Truncated,
    #[error("chunk data is inconsistent: {0}")]
    Invalid(&'static str),
}

impl From<EndOfStream> for ChunkError {
    fn from(_: EndOfStream) -> Self {
        ChunkError::Truncated
    }
}

/// Decodes a chunk (encoding byte included), appending its samples to `out`.
pub fn decode(chunk: &[u8], out: &mut Vec<Sample>) -> Result<(), ChunkError> {
    let (&encoding, data) = chunk.split_first().ok_or(ChunkError::Empty)?;
    match encoding {
        ENCODING_XOR => decode_xor(data, out),
        ENCODING_PACKED => decode_packed(data, out),
        other => Err(ChunkError::UnknownEncoding(other)),
    }
}

/// What a chunk's encoding tells of its samples without looking at each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkFacts {
    /// Set when the timestamps are evenly spaced, this far apart (two samples or more).
    pub spacing: Option<i64>,
    /// Set when no value is below the one before.
    pub non_decreasing: bool,
}

/// Decodes a chunk (encoding byte included), appending its samples' times to `times` and
/// their values to `values`, for readers that go through values in bulk; returns what the
/// encoding tells of them. On error nothing is appended.
pub fn decode_columns(chunk: &[u8], times: &mut Vec<i64>, values: &mut Vec<f64>) -> Result<ChunkFacts, ChunkError> {
    let (&encoding, data) = chunk.split_first().ok_or(ChunkError::Empty)?;
    match encoding {
        ENCODING_XOR => {
            let (times_before, values_before) = (times.len(), values.len());
            times.reserve(xor_count(data));
            values.reserve(xor_count(data));
            let decoded = decode_xor_with(data, |t_ms, value| {
                times.push(t_ms);
                values.push(value);
            });
            if decoded.is_err() {
                times.truncate(times_before);
                values.truncate(values_before);
            }
            decoded.map(|()| ChunkFacts::default())
        }
        ENCODING_PACKED => decode_packed_columns(data, times, values),
        other => Err(ChunkError::UnknownEncoding(other)),
    }
}

/// Encodes samples (sorted by time, timestamps unique) in whichever encoding is smaller.
pub fn encode_best(samples: &[Sample]) -> Vec<u8> {
    let xor = encode_xor(samples);
    match encode_packed(samples) {
        Some(packed) if packed.len() < xor.len() => packed,
        _ => xor,
    }
}

/// Encodes samples as an XOR chunk.
pub fn encode_xor(samples: &[Sample]) -> Vec<u8> {
    let mut chunk = XorChunk::new();
    for sample in samples {
        chunk.append(sample.t_ms, sample.value);
    }
    chunk.to_bytes()
}

// ---------------------------------------------------------------------------------------------
// XOR

/// An XOR chunk that samples are appended to, in time order.
#[derive(Debug, Clone)]
pub struct XorChunk {
    /// Encoding byte, sample count (u16 LE) and the bit stream.
    writer: BitWriter,
    count: u16,
    min_t: i64,
    t: i64,
    t_delta: i64,
    value_bits: u64,
    /// Leading zeros of the current XOR window; `u8::MAX` before the first window.
    leading: u8,
    trailing: u8,
}

impl Default for XorChunk {
    fn default() -> Self {
        XorChunk::new()
    }
}

impl XorChunk {
    pub fn new() -> XorChunk {
        XorChunk {
            writer: BitWriter::with_bytes(vec![ENCODING_XOR, 0, 0]),
            count: 0,
            min_t: 0,
            t: 0,
            t_delta: 0,
            value_bits: 0,
            leading: u8::MAX,
            trailing: 0,
        }
    }

    pub fn count(&self) -> usize {
        usize::from(self.count)
    }

    pub fn is_full(&self) -> bool {
        self.count() >= MAX_SAMPLES_PER_CHUNK
    }

    /// First and last timestamp; meaningless when empty.
    pub fn min_t(&self) -> i64 {
        self.min_t
    }

    pub fn max_t(&self) -> i64 {
        self.t
    }

    pub fn last_value(&self) -> f64 {
        f64::from_bits(self.value_bits)
    }

    /// Appends a sample whose timestamp is greater than the last one's.
    pub fn append(&mut self, t_ms: i64, value: f64) {
        let bits = value.to_bits();
        match self.count {
            0 => {
                self.writer.write_varint(t_ms);
                self.writer.write_bits(bits, 64);
                self.min_t = t_ms;
            }
            1 => {
                let delta = t_ms - self.t;
                self.writer.write_varint(delta);
                self.write_value(bits);
                self.t_delta = delta;
            }
            _ => {
                let delta = t_ms - self.t;
                let dod = delta - self.t_delta;
                self.write_dod(dod);
                self.write_value(bits);
                self.t_delta = delta;
            }
        }
        self.t = t_ms;
        self.value_bits = bits;
        self.count += 1;
    }

    fn write_dod(&mut self, dod: i64) {
        let w = &mut self.writer;
        if dod == 0 {
            w.write_bit(false);
        } else if (-8191..=8192).contains(&dod) {
            w.write_bits(0b10, 2);
            w.write_bits((dod as u64) & 0x3fff, 14);
        } else if (-65535..=65536).contains(&dod) {
            w.write_bits(0b110, 3);
            w.write_bits((dod as u64) & 0x1_ffff, 17);
        } else if (-524287..=524288).contains(&dod) {
            w.write_bits(0b1110, 4);
            w.write_bits((dod as u64) & 0xf_ffff, 20);
        } else {
            w.write_bits(0b1111, 4);
            w.write_bits(dod as u64, 64);
        }
    }

    fn write_value(&mut self, bits: u64) {
        let xor = bits ^ self.value_bits;
        let w = &mut self.writer;
        if xor == 0 {
            w.write_bit(false);
            return;
        }
        let leading = (xor.leading_zeros() as u8).min(31);
        let trailing = xor.trailing_zeros() as u8;
        if self.leading != u8::MAX && leading >= self.leading && trailing >= self.trailing {
            let significant = 64 - u32::from(self.leading) - u32::from(self.trailing);
            let payload = xor >> self.trailing;
            if significant <= 62 {
                // Control bits and payload in one write.
                w.write_bits((0b10 << significant) | payload, significant + 2);
            } else {
                w.write_bits(0b10, 2);
                w.write_bits(payload, significant);
            }
        } else {
            let significant = 64 - u32::from(leading) - u32::from(trailing);
            // "11", 5 bits of leading zeros, 6 bits of length (64 written as 0): 13 bits.
            let header = (0b11 << 11) | (u64::from(leading) << 6) | (u64::from(significant) & 0x3f);
            w.write_bits(header, 13);
            w.write_bits(xor >> trailing, significant);
            self.leading = leading;
            self.trailing = trailing;
        }
    }

    /// The chunk's bytes (encoding byte included), with the current sample count.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = self.writer.to_vec();
        bytes[1..3].copy_from_slice(&self.count.to_le_bytes());
        bytes
    }

    /// Appends the chunk's bytes as [`XorChunk::to_bytes`] gives them to `out`.
    pub fn write_bytes_into(&self, out: &mut Vec<u8>) {
        let [low, high] = self.count.to_le_bytes();
        out.extend_from_slice(&[ENCODING_XOR, low, high]);
        out.extend(self.writer.bytes_after(3));
    }

    /// The chunk's bytes as [`XorChunk::to_bytes`] gives them, in one shared allocation.
    pub fn to_shared_bytes(&self) -> std::sync::Arc<[u8]> {
        let [low, high] = self.count.to_le_bytes();
        [ENCODING_XOR, low, high].into_iter().chain(self.writer.bytes_after(3)).collect()
    }

    /// Bytes of memory held by the chunk's buffer.
    pub fn memory_bytes(&self) -> usize {
        self.writer.capacity()
    }

    pub fn shrink_to_fit(&mut self) {
        self.writer.shrink_to_fit();
    }
}

fn decode_xor(data: &[u8], out: &mut Vec<Sample>) -> Result<(), ChunkError> {
    let before = out.len();
    out.reserve(xor_count(data));
    let decoded = decode_xor_with(data, |t_ms, value| out.push(Sample { t_ms, value }));
    if decoded.is_err() {
        out.truncate(before);
    }
    decoded
}

/// The sample count an XOR chunk's header gives (0 when the header is cut short).
fn xor_count(data: &[u8]) -> usize {
    data.first_chunk::<2>().map_or(0, |count| usize::from(u16::from_le_bytes(*count)))
}

/// Decodes an XOR chunk's samples (after the encoding byte), giving each to `push` in order.
#[inline(always)]
fn decode_xor_with(data: &[u8], mut push: impl FnMut(i64, f64)) -> Result<(), ChunkError> {
    if data.len() < 2 {
        return Err(ChunkError::Truncated);
    }
    let count = usize::from(u16::from_le_bytes([data[0], data[1]]));
    let mut reader = BitReader::new(&data[2..]);
    let (mut t, mut t_delta, mut bits) = (0i64, 0i64, 0u64);
    let (mut leading, mut trailing) = (0u32, 0u32);
    for index in 0..count {
        match index {
            0 => {
                t = reader.read_varint()?;
                bits = reader.read_bits(64)?;
            }
            1 => {
                t_delta = reader.read_varint()?;
                t = t.wrapping_add(t_delta);
                read_xor(&mut reader, &mut bits, &mut leading, &mut trailing)?;
            }
            _ => {
                let dod = read_dod(&mut reader)?;
                t_delta = t_delta.wrapping_add(dod);
                t = t.wrapping_add(t_delta);
                read_xor(&mut reader, &mut bits, &mut leading, &mut trailing)?;
            }
        }
        push(t, f64::from_bits(bits));
    }
    Ok(())
}

#[inline]
fn read_dod(reader: &mut BitReader<'_>) -> Result<i64, ChunkError> {
    if !reader.read_bit()? {
        return Ok(0);
    }
    let width = if !reader.read_bit()? {
        14
    } else if !reader.read_bit()? {
        17
    } else if !reader.read_bit()? {
        20
    } else {
        64
    };
    let raw = reader.read_bits(width)?;
    if width == 64 {
        return Ok(raw as i64);
    }
    // Sign-extend from `width` bits; the ranges are asymmetric (e.g. -8191..=8192), so values
    // above the positive half of the range wrap to negatives as written.
    let half = 1u64 << (width - 1);
    let value = if raw > half { raw as i64 - (1i64 << width) } else { raw as i64 };
    Ok(value)
}

#[inline]
fn read_xor(
    reader: &mut BitReader<'_>,
    bits: &mut u64,
    leading: &mut u32,
    trailing: &mut u32,
) -> Result<(), ChunkError> {
    if !reader.read_bit()? {
        return Ok(());
    }
    if reader.read_bit()? {
        *leading = reader.read_bits(5)? as u32;
        let mut significant = reader.read_bits(6)? as u32;
        if significant == 0 {
            significant = 64;
        }
        if *leading + significant > 64 {
            return Err(ChunkError::Invalid("xor window exceeds 64 bits"));
        }
        *trailing = 64 - *leading - significant;
    }
    let significant = 64 - *leading - *trailing;
    let xor = reader.read_bits(significant)? << *trailing;
    *bits ^= xor;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Packed

/// The largest decimal exponent tried: values with up to this many decimal places.
const MAX_DECIMAL_PLACES: u32 = 9;
/// Mantissas must stay within the range where f64 holds every integer exactly.
const MAX_MANTISSA: f64 = 9_007_199_254_740_992.0; // 2^53

/// Finds the smallest `k` such that every value is `m / 10^k` for an integer `m`, exactly.
fn decimal_mantissas(samples: &[Sample]) -> Option<(u32, Vec<i64>)> {
    'exponent: for k in 0..=MAX_DECIMAL_PLACES {
        let scale = 10f64.powi(k as i32);
        let mut mantissas = Vec::with_capacity(samples.len());
        for sample in samples {
            let scaled = (sample.value * scale).round();
            if !scaled.is_finite() || scaled.abs() >= MAX_MANTISSA {
                return None;
            }
            // Compare what decoding will produce, bit for bit (this also refuses -0.0).
            let mantissa = scaled as i64;
            if (mantissa as f64 / scale).to_bits() != sample.value.to_bits() {
                continue 'exponent;
            }
            mantissas.push(mantissa);
        }
        return Some((k, mantissas));
    }
    None
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Writes a sequence of integers as frame of reference: the minimum, a common divisor of the
/// offsets from it, and the offsets divided by it at a fixed bit width.
fn write_frame(writer: &mut BitWriter, values: &[i64]) {
    let min = values.iter().copied().min().unwrap_or(0);
    let divisor = values.iter().fold(0u64, |acc, value| gcd(acc, value.wrapping_sub(min) as u64));
    let max_offset = values.iter().map(|value| value.wrapping_sub(min) as u64).max().unwrap_or(0);
    let width = max_offset.checked_div(divisor).map_or(0, bit_width);
    writer.write_varint(min);
    writer.write_uvarint(divisor);
    writer.write_bits(u64::from(width), 7);
    if width > 0 {
        for value in values {
            writer.write_bits(value.wrapping_sub(min) as u64 / divisor, width);
        }
    }
}

/// A frame of reference as written by [`write_frame`]: its header, and where its packed
/// offsets start.
#[derive(Debug, Clone, Copy)]
struct Frame {
    min: i64,
    divisor: u64,
    width: u32,
    /// Bit position of the first packed offset.
    position: usize,
}

impl Frame {
    /// Reads a frame's header and moves past its `count` offsets, checking they are all there.
    fn read(reader: &mut BitReader<'_>, count: usize) -> Result<Frame, ChunkError> {
        let min = reader.read_varint()?;
        let divisor = reader.read_uvarint()?;
        let width = reader.read_bits(7)? as u32;
        if width > 64 {
            return Err(ChunkError::Invalid("frame width over 64 bits"));
        }
        let position = reader.position();
        let bits = count.checked_mul(width as usize).ok_or(ChunkError::Truncated)?;
        reader.skip(bits)?;
        Ok(Frame { min, divisor, width, position })
    }
}

/// Encodes samples as a packed chunk, or `None` if their values are not all decimals.
pub fn encode_packed(samples: &[Sample]) -> Option<Vec<u8>> {
    let (exponent, mantissas) = decimal_mantissas(samples)?;
    let mut writer = BitWriter::with_bytes(vec![ENCODING_PACKED]);
    writer.write_uvarint(samples.len() as u64);
    let Some(first) = samples.first() else {
        return Some(writer.into_bytes());
    };
    writer.write_varint(first.t_ms);
    writer.write_bits(u64::from(exponent), 4);
    writer.write_varint(mantissas[0]);
    if samples.len() > 1 {
        let time_deltas: Vec<i64> = samples.windows(2).map(|pair| pair[1].t_ms - pair[0].t_ms).collect();
        let value_deltas: Vec<i64> = mantissas.windows(2).map(|pair| pair[1] - pair[0]).collect();
        write_frame(&mut writer, &time_deltas);
        write_frame(&mut writer, &value_deltas);
    }
    Some(writer.into_bytes())
}

/// A packed chunk's header, with its frames checked to hold every offset.
struct Packed {
    count: usize,
    first_t: i64,
    exponent: u32,
    first_mantissa: i64,
    /// The time and mantissa delta frames (when `count > 1`).
    frames: Option<(Frame, Frame)>,
}

impl Packed {
    /// Reads the header of a packed chunk (after the encoding byte); `None` when it holds no
    /// samples.
    fn read(data: &[u8]) -> Result<Option<Packed>, ChunkError> {
        let mut reader = BitReader::new(data);
        let count = reader.read_uvarint()? as usize;
        if count == 0 {
            return Ok(None);
        }
        if count > MAX_SAMPLES_PER_CHUNK * 64 {
            return Err(ChunkError::Invalid("sample count out of range"));
        }
        let first_t = reader.read_varint()?;
        let exponent = reader.read_bits(4)? as u32;
        if exponent > MAX_DECIMAL_PLACES {
            return Err(ChunkError::Invalid("decimal exponent out of range"));
        }
        let first_mantissa = reader.read_varint()?;
        let frames = if count > 1 {
            let times = Frame::read(&mut reader, count - 1)?;
            Some((times, Frame::read(&mut reader, count - 1)?))
        } else {
            None
        };
        Ok(Some(Packed { count, first_t, exponent, first_mantissa, frames }))
    }

    /// What a mantissa is divided by to give its value (1 for whole numbers).
    fn scale(&self) -> f64 {
        10f64.powi(self.exponent as i32)
    }
}

fn decode_packed(data: &[u8], out: &mut Vec<Sample>) -> Result<(), ChunkError> {
    let Some(packed) = Packed::read(data)? else {
        return Ok(());
    };
    let start = out.len();
    out.reserve(packed.count);
    out.push(Sample { t_ms: packed.first_t, value: packed.first_mantissa as f64 });
    if let Some((time_frame, value_frame)) = packed.frames {
        // Times first, then each value set beside its time.
        time_frame.running_sums(data, packed.first_t, packed.count - 1, |times| {
            out.extend(times.iter().map(|&t_ms| Sample { t_ms, value: 0.0 }));
        });
        let mut next = start + 1;
        value_frame.running_sums(data, packed.first_mantissa, packed.count - 1, |mantissas| {
            if let Some(samples) = out.get_mut(next..next + mantissas.len()) {
                for (sample, &mantissa) in samples.iter_mut().zip(mantissas) {
                    sample.value = mantissa as f64;
                }
            }
            next += mantissas.len();
        });
    }
    if packed.exponent > 0 {
        // Every value is its mantissa divided by 10^exponent, in a loop of its own, which
        // the compiler turns into vector divisions. (Dividing by 1 changes nothing.)
        let scale = packed.scale();
        for sample in &mut out[start..] {
            sample.value /= scale;
        }
    }
    Ok(())
}

fn decode_packed_columns(data: &[u8], times: &mut Vec<i64>, values: &mut Vec<f64>) -> Result<ChunkFacts, ChunkError> {
    let Some(packed) = Packed::read(data)? else {
        return Ok(ChunkFacts { spacing: None, non_decreasing: true });
    };
    // Deltas are their frame's minimum plus a multiple of its divisor: all equal to it when
    // its width is 0, none negative when it is not negative (and a mantissa that does not
    // drop gives a value that does not drop, divided by the same power of ten).
    let facts = match packed.frames {
        Some((time_frame, value_frame)) => ChunkFacts {
            spacing: (time_frame.width == 0).then_some(time_frame.min),
            non_decreasing: value_frame.min >= 0,
        },
        None => ChunkFacts { spacing: None, non_decreasing: true },
    };
    let start = values.len();
    times.reserve(packed.count);
    values.reserve(packed.count);
    times.push(packed.first_t);
    values.push(packed.first_mantissa as f64);
    if let Some((time_frame, value_frame)) = packed.frames {
        time_frame.running_sums(data, packed.first_t, packed.count - 1, |sums| times.extend_from_slice(sums));
        value_frame.running_sums(data, packed.first_mantissa, packed.count - 1, |mantissas| {
            values.extend(mantissas.iter().map(|&mantissa| mantissa as f64));
        });
    }
    if packed.exponent > 0 {
        let scale = packed.scale();
        for value in &mut values[start..] {
            *value /= scale;
        }
    }
    Ok(facts)
}

impl Frame {
    /// Gives `emit` the running sums of the frame's `count` values (all it holds) added to
    /// `initial`, in order, a slab at a time from a buffer on the stack: the timestamps or
    /// mantissas after the first. With width 0 every value is the minimum (a loop the
    /// compiler vectorizes); otherwise see [`running_sums`].
    #[inline(always)]
    fn running_sums(&self, bytes: &[u8], initial: i64, count: usize, mut emit: impl FnMut(&[i64])) {
        let mut running = initial;
        let mut sums = [0i64; SLAB];
        let mut position = self.position;
        let mut done = 0;
        while done < count {
            let sums = &mut sums[..(count - done).min(SLAB)];
            if self.width == 0 {
                for sum in sums.iter_mut() {
                    running = running.wrapping_add(self.min);
                    *sum = running;
                }
            } else {
                running = running_sums(self, bytes, position, running, sums);
                position += sums.len() * self.width as usize;
            }
            emit(sums);
            done += sums.len();
        }
    }
}

/// Values a frame is unpacked by at a time.
const SLAB: usize = 256;

/// Fills `sums` with the running sums, from `running` on, of `frame`'s values whose offsets
/// start at bit `position` of `bytes` (which holds them all); returns the last sum. Offsets up
/// to [`MAX_GROUP_WIDTH`] bits are unpacked eight at a time by code made for their width:
/// from `bytes` while a group's loads lie inside it, then from a copy of the rest padded with
/// zeros. Wider ones are read one by one.
fn running_sums(frame: &Frame, bytes: &[u8], position: usize, mut running: i64, sums: &mut [i64]) -> i64 {
    let (width, min, divisor) = (frame.width, frame.min, frame.divisor);
    let Some(&groups) = GROUP_SUMS.get(width as usize) else {
        for (index, sum) in sums.iter_mut().enumerate() {
            // In bounds: `Frame::read` checked that every offset is there.
            let offset = bits_at(bytes, position + index * width as usize, width).unwrap_or(0);
            running = running.wrapping_add(min.wrapping_add(offset.wrapping_mul(divisor) as i64));
            *sum = running;
        }
        return running;
    };
    let whole = sums.len() / 8 * 8;
    let (done, mut running) = groups(bytes, position, running, min, divisor, &mut sums[..whole]);
    if done == sums.len() {
        return running;
    }
    // The rest (fewer than `width + 8` bytes remained for the groups' loads, or fewer than
    // eight values), from a padded copy, into a buffer of whole groups.
    let start = position + done * width as usize;
    let from = (start / 8).min(bytes.len());
    let rest = &bytes[from..];
    let mut padded = [0u8; 2 * MAX_GROUP_WIDTH + 24];
    let copied = rest.len().min(padded.len() - MAX_GROUP_WIDTH - 8);
    padded[..copied].copy_from_slice(&rest[..copied]);
    let mut tail = [0i64; 8 + 8 * 64 / 8];
    let left = sums.len() - done;
    let groups_left = left.div_ceil(8) * 8;
    let Some(tail) = tail.get_mut(..groups_left) else {
        return running;
    };
    (_, running) = groups(&padded, start - from * 8, running, min, divisor, tail);
    sums[done..].copy_from_slice(&tail[..left]);
    // `running` went on over the padding's values; the last kept sum is the one to go on from.
    sums.last().copied().unwrap_or(running)
}

/// The widest offsets [`group_sums`] unpacks: a group's value starts at most 14 bits into its
/// eight-byte load (7 from the frame's start in its byte, 7 from the group's), and must end
/// inside it.
const MAX_GROUP_WIDTH: usize = 50;

/// A [`group_sums`] for one width.
type GroupSums = fn(&[u8], usize, i64, i64, u64, &mut [i64]) -> (usize, i64);

/// [`group_sums`] for each width, by width (none for 0).
static GROUP_SUMS: [GroupSums; MAX_GROUP_WIDTH + 1] = group_sums_by_width();

const fn group_sums_by_width() -> [GroupSums; MAX_GROUP_WIDTH + 1] {
    macro_rules! widths {
        ($($width:literal)*) => {
            [group_sums::<1>, $(group_sums::<$width>),*]
        };
    }
    // Index 0 is never used: width 0 takes no bits.
    widths!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35
        36 37 38 39 40 41 42 43 44 45 46 47 48 49 50)
}

/// Running sums (from `running` on) of the values `min + offset * divisor` whose `WIDTH`-bit
/// offsets start at bit `position` of `bytes`, eight at a time, into `sums` (a whole number of
/// groups), while a group's loads lie inside `bytes`. Returns how many sums were made and the
/// last. Every offset of a group is one load, two shifts and a mask at places known when
/// compiling, as the group spans exactly `WIDTH` bytes and starts at the same bit of a byte.
fn group_sums<const WIDTH: usize>(
    bytes: &[u8],
    position: usize,
    mut running: i64,
    min: i64,
    divisor: u64,
    sums: &mut [i64],
) -> (usize, i64) {
    let first_bit = (position % 8) as u32;
    let mut base = position / 8;
    let mut done = 0;
    for group in sums.chunks_exact_mut(8) {
        let Some(window) = bytes.get(base..base + WIDTH + 8) else { break };
        for (lane, sum) in group.iter_mut().enumerate() {
            let bit = lane * WIDTH;
            let at = bit / 8;
            // In bounds: `at + 8 <= WIDTH + 7` (the loop is unrolled, the indices constant).
            let word = u64::from_be_bytes(window[at..at + 8].try_into().unwrap_or([0; 8]));
            let offset = (word << (first_bit + (bit % 8) as u32)) >> (64 - WIDTH);
            running = running.wrapping_add(min.wrapping_add(offset.wrapping_mul(divisor) as i64));
            *sum = running;
        }
        base += WIDTH;
        done += 8;
    }
    (done, running)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::STALE_NAN;

    /// A small deterministic generator (xorshift), so property tests need no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn same(a: &[Sample], b: &[Sample]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.t_ms == y.t_ms && x.value.to_bits() == y.value.to_bits())
    }

    fn round_trip(samples: &[Sample]) {
        for (name, bytes) in [("xor", encode_xor(samples)), ("best", encode_best(samples))] {
            let mut decoded = Vec::new();
            decode(&bytes, &mut decoded).unwrap();
            assert!(same(&decoded, samples), "{name}: {samples:?} decoded as {decoded:?}");
        }
        if let Some(packed) = encode_packed(samples) {
            let mut decoded = Vec::new();
            decode(&packed, &mut decoded).unwrap();
            assert!(same(&decoded, samples), "packed: {samples:?} decoded as {decoded:?}");
        }
        for (name, bytes) in [("xor", Some(encode_xor(samples))), ("packed", encode_packed(samples))] {
            let Some(bytes) = bytes else { continue };
            // Appended after what the columns hold already.
            let (mut times, mut values) = (vec![-1], vec![0.5]);
            let facts = decode_columns(&bytes, &mut times, &mut values).unwrap();
            if let Some(spacing) = facts.spacing {
                assert!(samples.windows(2).all(|pair| pair[1].t_ms - pair[0].t_ms == spacing), "{name} spacing");
            }
            if facts.non_decreasing {
                assert!(samples.windows(2).all(|pair| pair[1].value >= pair[0].value), "{name} non-decreasing");
            }
            let decoded: Vec<Sample> =
                times.iter().zip(&values).skip(1).map(|(&t_ms, &value)| Sample { t_ms, value }).collect();
            assert!(same(&decoded, samples), "{name} columns: {samples:?} decoded as {decoded:?}");
        }
    }

    fn special_values() -> [f64; 10] {
        [0.0, -0.0, f64::NAN, STALE_NAN, f64::INFINITY, f64::NEG_INFINITY, f64::MIN_POSITIVE, f64::MAX, 1e-300, -42.5]
    }

    #[test]
    fn random_series_round_trip_in_every_encoding() {
        let specials = special_values();
        for seed in 1..400u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let count = 1 + rng.below(MAX_SAMPLES_PER_CHUNK as u64) as usize;
            let mut t = rng.next() as i64 >> 20;
            let mut value = 0.0f64;
            let mut samples = Vec::with_capacity(count);
            for _ in 0..count {
                // Timestamps: regular, jittered, or with big jumps (covers every dod bucket).
                t += match rng.below(6) {
                    0..=2 => 15_000,
                    3 => 15_000 + rng.below(100) as i64 - 50,
                    4 => 1 + rng.below(1 << 20) as i64,
                    _ => 1 + (rng.next() >> 30) as i64,
                };
                value = match rng.below(7) {
                    0 => value,
                    1 => value + rng.below(1000) as f64,
                    2 => (rng.below(100_000) as f64) / 100.0,
                    3 => f64::from_bits(rng.next()),
                    4 => specials[rng.below(specials.len() as u64) as usize],
                    5 => -(rng.below(1 << 40) as f64),
                    _ => value * 1.5,
                };
                samples.push(Sample { t_ms: t, value });
            }
            round_trip(&samples);
        }
    }

    #[test]
    fn packed_chunks_of_every_width_round_trip() {
        // Deltas of every width (timestamps up to 62 bits apart), chunks longer than a block
        // of unpacked offsets, and runs that end near the end of the bytes.
        for seed in 1..300u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let (time_bits, value_bits) = (rng.below(63) as u32, rng.below(38) as u32);
            // Wide time deltas only a few times, so that the timestamps do not overflow.
            let most = match time_bits {
                0..=48 if seed % 3 == 0 => 2000,
                0..=48 => 300,
                _ => 3,
            };
            let count = 1 + rng.below(most) as usize;
            let mut t = -(1i64 << 61);
            let mut mantissa = rng.below(1000) as i64 - 500;
            let samples: Vec<Sample> = (0..count)
                .map(|_| {
                    t += 1 + (rng.next() >> (64 - time_bits.max(1))) as i64;
                    mantissa += (rng.next() >> (64 - value_bits.max(1))) as i64 - (1i64 << value_bits.max(1)) / 3;
                    mantissa = mantissa.clamp(-(1 << 40), 1 << 40);
                    Sample { t_ms: t, value: mantissa as f64 / 100.0 }
                })
                .collect();
            let packed = encode_packed(&samples).unwrap();
            let mut decoded = Vec::new();
            decode(&packed, &mut decoded).unwrap();
            assert!(same(&decoded, &samples), "seed {seed}");
            round_trip(&samples);
        }
    }

    #[test]
    fn equal_and_out_of_order_timestamps_round_trip() {
        // Chunks the store writes are sorted, but the encodings themselves take any sequence.
        for seed in 1..200u64 {
            let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
            let count = 1 + rng.below(300) as usize;
            let mut t = 1_700_000_000_000i64;
            let samples: Vec<Sample> = (0..count)
                .map(|_| {
                    t += match rng.below(4) {
                        0 => 0,
                        1 => -(rng.below(100_000) as i64),
                        _ => rng.below(30_000) as i64,
                    };
                    Sample { t_ms: t, value: (rng.below(1000) as f64) / 4.0 }
                })
                .collect();
            round_trip(&samples);
        }
    }

    #[test]
    fn edge_cases_round_trip() {
        round_trip(&[]);
        round_trip(&[Sample { t_ms: 0, value: 1.0 }]);
        round_trip(&[Sample { t_ms: i64::MIN / 4, value: STALE_NAN }, Sample { t_ms: i64::MAX / 4, value: -0.0 }]);
        for value in special_values() {
            round_trip(&[Sample { t_ms: 1, value }, Sample { t_ms: 2, value }, Sample { t_ms: 3, value: 7.0 }]);
        }
        // Negative timestamps and the asymmetric edges of every dod bucket.
        let mut samples = vec![Sample { t_ms: -1_000_000, value: 1.0 }, Sample { t_ms: -999_000, value: 1.0 }];
        let mut delta = 1000i64;
        for dod in [8192i64, -8191, 65536, -65535, 524288, -524287, 524289, -524288, 0] {
            delta += dod;
            let t = samples.last().unwrap().t_ms + delta.max(1);
            samples.push(Sample { t_ms: t, value: 2.0 });
        }
        round_trip(&samples);
    }

    #[test]
    fn staleness_markers_survive_exactly() {
        let samples =
            [Sample { t_ms: 1, value: 5.0 }, Sample { t_ms: 2, value: STALE_NAN }, Sample { t_ms: 3, value: f64::NAN }];
        let mut decoded = Vec::new();
        decode(&encode_best(&samples), &mut decoded).unwrap();
        assert_eq!(decoded[1].value.to_bits(), STALE_NAN.to_bits());
        assert_ne!(decoded[2].value.to_bits(), STALE_NAN.to_bits());
    }

    #[test]
    fn packed_makes_regular_decimal_series_small() {
        let constant: Vec<Sample> = (0..480).map(|i| Sample { t_ms: i * 15_000, value: 8_000_000_000.0 }).collect();
        assert!(encode_best(&constant).len() < 24, "{}", encode_best(&constant).len());
        // A counter of bytes that grows by 0, 1 or 2 pages per scrape.
        let mut total = 1_000_000i64;
        let counter: Vec<Sample> = (0..480)
            .map(|i| {
                total += 4096 * (i % 3);
                Sample { t_ms: i * 15_000, value: total as f64 }
            })
            .collect();
        let packed = encode_best(&counter);
        assert_eq!(packed[0], ENCODING_PACKED);
        assert!(packed.len() < 480 / 2, "{} bytes", packed.len());
    }

    #[test]
    fn packed_chunks_tell_regular_times_and_counters() {
        let counter: Vec<Sample> =
            (0..200).map(|i| Sample { t_ms: 5_000 + i * 15_000, value: (i * i) as f64 / 4.0 }).collect();
        let (mut times, mut values) = (Vec::new(), Vec::new());
        let facts = decode_columns(&encode_packed(&counter).unwrap(), &mut times, &mut values).unwrap();
        assert_eq!(facts, ChunkFacts { spacing: Some(15_000), non_decreasing: true });
        let mut reset = counter.clone();
        reset[100].value = 0.0;
        reset[7].t_ms += 1;
        let facts = decode_columns(&encode_packed(&reset).unwrap(), &mut times, &mut values).unwrap();
        assert_eq!(facts, ChunkFacts { spacing: None, non_decreasing: false });
        // The head's chunks are not looked into.
        let facts = decode_columns(&encode_xor(&counter), &mut times, &mut values).unwrap();
        assert_eq!(facts, ChunkFacts::default());
    }

    #[test]
    fn shared_bytes_are_the_bytes() {
        let mut chunk = XorChunk::new();
        assert_eq!(*chunk.to_shared_bytes(), *chunk.to_bytes());
        for i in 0..200 {
            chunk.append(i * 15_000 + i % 7, (i * i) as f64 / 8.0);
            assert_eq!(*chunk.to_shared_bytes(), *chunk.to_bytes(), "after {} samples", i + 1);
            let mut written = vec![7];
            chunk.write_bytes_into(&mut written);
            assert_eq!(written[1..], *chunk.to_bytes(), "after {} samples", i + 1);
        }
    }

    #[test]
    fn damaged_chunks_are_errors_not_panics() {
        let samples: Vec<Sample> = (0..100).map(|i| Sample { t_ms: i * 1000, value: (i * i) as f64 * 0.25 }).collect();
        for bytes in [encode_xor(&samples), encode_packed(&samples).unwrap()] {
            for cut in 0..bytes.len() {
                let mut out = Vec::new();
                let _ = decode(&bytes[..cut], &mut out);
                let (mut times, mut values) = (Vec::new(), Vec::new());
                let _ = decode_columns(&bytes[..cut], &mut times, &mut values);
                assert_eq!(times.len(), values.len());
            }
            let mut rng = Rng(7);
            for _ in 0..2000 {
                let mut damaged = bytes.clone();
                let position = rng.below(damaged.len() as u64) as usize;
                damaged[position] ^= 1 << rng.below(8);
                let mut out = Vec::new();
                let by_samples = decode(&damaged, &mut out);
                let (mut times, mut values) = (Vec::new(), Vec::new());
                let by_columns = decode_columns(&damaged, &mut times, &mut values);
                // Both readers take or refuse the same bytes, and read the same samples.
                assert_eq!(by_samples.is_ok(), by_columns.is_ok(), "byte {position}");
                let columns: Vec<Sample> =
                    times.iter().zip(&values).map(|(&t_ms, &value)| Sample { t_ms, value }).collect();
                assert!(by_samples.is_err() || same(&out, &columns), "byte {position}");
            }
        }
        assert_eq!(decode(&[], &mut Vec::new()), Err(ChunkError::Empty));
        assert_eq!(decode(&[9, 0], &mut Vec::new()), Err(ChunkError::UnknownEncoding(9)));
    }
}
