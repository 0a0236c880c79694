//! A stable 64-bit hash (the same on every platform and build, since its values are stored in
//! files) and the bloom filters built on it: one over each block's trace IDs, one over each
//! page's attribute keys and key=value pairs. Layout in `docs/format/trace-blocks.md`.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

/// The hash of `bytes` under `seed`: 8 bytes at a time (little-endian, the last word padded
/// with zeros), each mixed in with a multiply and shift, then a final avalanche.
pub(crate) fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut state = seed ^ (bytes.len() as u64).wrapping_mul(MULTIPLIER);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        state = (state ^ u64::from_le_bytes(word)).wrapping_mul(MULTIPLIER);
        state ^= state >> 29;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        state = (state ^ last_word(bytes, rest.len())).wrapping_mul(MULTIPLIER);
        state ^= state >> 29;
    }
    finish(state)
}

/// The last `rest` bytes of `bytes` (1 to 7) as a little-endian word padded with zeros, read
/// with whole loads rather than a copy through memory (which would stall the load after it).
#[inline(always)]
fn last_word(bytes: &[u8], rest: usize) -> u64 {
    let len = bytes.len();
    if len >= 8 {
        // The last eight bytes, shifted so that the last `rest` of them come first.
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[len - 8..]);
        return u64::from_le_bytes(word) >> (8 * (8 - rest));
    }
    // A short string: at most two overlapping loads of 4, or of 2, and a single byte.
    if rest >= 4 {
        let low = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let high = u32::from_le_bytes([bytes[rest - 4], bytes[rest - 3], bytes[rest - 2], bytes[rest - 1]]);
        return u64::from(low) | (u64::from(high) << (8 * (rest - 4)));
    }
    let mut word = u64::from(bytes[0]);
    if rest >= 2 {
        word |= u64::from(u16::from_le_bytes([bytes[rest - 2], bytes[rest - 1]])) << (8 * (rest - 2));
    }
    word
}

/// splitmix64's finaliser: every input bit affects every output bit.
fn finish(mut state: u64) -> u64 {
    state ^= state >> 30;
    state = state.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    state ^= state >> 27;
    state = state.wrapping_mul(0x94d0_49bb_1331_11eb);
    state ^ (state >> 31)
}

/// The hasher of the store's in-memory maps (trace IDs, span IDs, attribute keys, strings):
/// [`hash_bytes`] word at a time, seeded once per process at random so that the keys a client
/// chooses cannot be made to collide on purpose.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FastState {
    seed: u64,
}

/// A random seed, drawn once per process.
pub(crate) fn process_seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0x7472_6163_6573_u64))
}

impl Default for FastState {
    fn default() -> Self {
        FastState { seed: process_seed() }
    }
}

impl BuildHasher for FastState {
    type Hasher = FastHasher;

    fn build_hasher(&self) -> FastHasher {
        FastHasher { state: self.seed }
    }
}

pub(crate) struct FastHasher {
    state: u64,
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.state = hash_bytes(self.state, bytes);
    }

    fn write_u8(&mut self, value: u8) {
        self.write_u64(u64::from(value));
    }

    fn write_u32(&mut self, value: u32) {
        self.write_u64(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.state = (self.state ^ value).wrapping_mul(MULTIPLIER).rotate_left(29);
    }

    fn write_usize(&mut self, value: usize) {
        self.write_u64(value as u64);
    }

    fn finish(&self) -> u64 {
        finish(self.state)
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, FastState>;
pub(crate) type FastSet<K> = HashSet<K, FastState>;

/// For sets of values that are already hashes: the value is its own hash.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HashedState;

impl BuildHasher for HashedState {
    type Hasher = HashedHasher;

    fn build_hasher(&self) -> HashedHasher {
        HashedHasher(0)
    }
}

pub(crate) struct HashedHasher(u64);

impl Hasher for HashedHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = hash_bytes(self.0, bytes);
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A set of hashes.
pub(crate) type HashSet64 = HashSet<u64, HashedState>;

/// Largest filter, in 64-bit words (256 MiB).
const MAX_WORDS: u32 = 1 << 25;

/// The second hash of double hashing, from the first: a full 64-bit odd step, so that the
/// positions differ in their high bits (which pick the bit).
fn step_of(hash: u64) -> u64 {
    let mixed = (hash ^ (hash >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    (mixed ^ (mixed >> 33)) | 1
}

/// Bit `i` of a hash in a filter of `bits` bits: `(h + i * step) * bits >> 64`, a range
/// reduction that needs no power-of-two size.
#[inline]
fn position(hash: u64, step: u64, i: u64, bits: u64) -> usize {
    let h = hash.wrapping_add(i.wrapping_mul(step));
    ((u128::from(h) * u128::from(bits)) >> 64) as usize
}

/// A bloom filter of 64-bit hashes: `hashes` bit positions per item, derived from the one
/// hash by double hashing, over a whole number of 64-bit words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bloom {
    hashes: u8,
    words: Vec<u64>,
}

impl Bloom {
    /// An empty filter sized for `items` at `bits_per_item` bits each (rounded up to a word).
    pub fn for_items(items: usize, bits_per_item: u32, hashes: u8) -> Bloom {
        let bits = (items as u64).saturating_mul(u64::from(bits_per_item)).max(64);
        let words = bits.div_ceil(64).min(u64::from(MAX_WORDS)) as usize;
        Bloom { hashes: hashes.clamp(1, 16), words: vec![0; words] }
    }

    /// Whether a filter of `words` words and `hashes` hashes is one this code writes.
    pub fn parts_valid(words: u32, hashes: u8) -> bool {
        (1..=MAX_WORDS).contains(&words) && (1..=16).contains(&hashes)
    }

    /// Rebuilds a filter read from a file; `None` if the parts do not fit together.
    pub fn from_parts(words: u32, hashes: u8, bytes: &[u8]) -> Option<Bloom> {
        if !Bloom::parts_valid(words, hashes) || bytes.len() != Bloom::byte_len(words) {
            return None;
        }
        let words = bytes
            .chunks_exact(8)
            .map(|chunk| {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                u64::from_le_bytes(word)
            })
            .collect();
        Some(Bloom { hashes, words })
    }

    /// The length in bytes of a filter of `words` words.
    pub fn byte_len(words: u32) -> usize {
        words as usize * 8
    }

    pub fn word_count(&self) -> u32 {
        self.words.len() as u32
    }

    pub fn hashes(&self) -> u8 {
        self.hashes
    }

    /// The bit array, little-endian words.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.words.len() * 8);
        for word in &self.words {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out
    }

    pub fn insert(&mut self, hash: u64) {
        let (step, bits) = (step_of(hash), self.words.len() as u64 * 64);
        for i in 0..u64::from(self.hashes) {
            let bit = position(hash, step, i, bits);
            self.words[bit / 64] |= 1 << (bit % 64);
        }
    }

    /// `false` is certain; `true` may be chance.
    pub fn may_contain(&self, hash: u64) -> bool {
        let (step, bits) = (step_of(hash), self.words.len() as u64 * 64);
        (0..u64::from(self.hashes)).all(|i| {
            let bit = position(hash, step, i, bits);
            self.words[bit / 64] & (1 << (bit % 64)) != 0
        })
    }
}

/// Whether a stored filter (its bits as they sit in a file, little-endian words) may contain
/// `hash`, without copying it.
pub(crate) fn stored_may_contain(hashes: u8, bits: &[u8], hash: u64) -> bool {
    let (step, count) = (step_of(hash), (bits.len() / 8) as u64 * 64);
    (0..u64::from(hashes)).all(|i| {
        let bit = position(hash, step, i, count);
        bits.get(bit / 8).is_some_and(|byte| byte & (1 << (bit % 8)) != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_and_spread() {
        // Stored in files: these values must never change.
        assert_eq!(hash_bytes(0, b""), hash_bytes(0, b""));
        assert_ne!(hash_bytes(0, b"a"), hash_bytes(0, b"a\0"));
        assert_ne!(hash_bytes(0, b"abc"), hash_bytes(1, b"abc"));
        assert_eq!(hash_bytes(7, b"service.name"), 0x6c6b_e1df_2b63_05a5);
        // The tail word, for every length, is the bytes zero-padded.
        let text: Vec<u8> = (1..=40u8).map(|byte| byte.wrapping_mul(37)).collect();
        for len in 1..text.len() {
            let rest = len % 8;
            if rest == 0 {
                continue;
            }
            let mut padded = [0u8; 8];
            padded[..rest].copy_from_slice(&text[len - rest..len]);
            assert_eq!(last_word(&text[..len], rest), u64::from_le_bytes(padded), "length {len}");
        }
        let mut bloom = Bloom::for_items(1000, 10, 6);
        for i in 0..1000u64 {
            bloom.insert(hash_bytes(1, &i.to_le_bytes()));
        }
        for i in 0..1000u64 {
            assert!(bloom.may_contain(hash_bytes(1, &i.to_le_bytes())));
        }
        let false_positives = (1000..101_000u64).filter(|i| bloom.may_contain(hash_bytes(1, &i.to_le_bytes()))).count();
        assert!(false_positives < 2_000, "{false_positives} of 100000");
        // Sized exactly: 1000 items at 10 bits are 157 words.
        assert_eq!(bloom.word_count(), 157);
        let bytes = bloom.to_bytes();
        let copy = Bloom::from_parts(bloom.word_count(), bloom.hashes(), &bytes).unwrap();
        assert_eq!(copy, bloom);
        for i in 0..2000u64 {
            let hash = hash_bytes(1, &i.to_le_bytes());
            assert_eq!(stored_may_contain(bloom.hashes(), &bytes, hash), bloom.may_contain(hash));
        }
        assert!(Bloom::from_parts(bloom.word_count() + 1, 6, &bytes).is_none());
        assert!(Bloom::from_parts(bloom.word_count(), 0, &bytes).is_none());
        assert!(Bloom::from_parts(0, 6, &[]).is_none());
        // Positions of one hash differ (the step moves the high bits).
        let hash = hash_bytes(2, b"x");
        let positions: std::collections::BTreeSet<usize> =
            (0..6).map(|i| position(hash, step_of(hash), i, 157 * 64)).collect();
        assert_eq!(positions.len(), 6);
        // Stored in files: bit positions must never change either.
        let known = hash_bytes(7, b"service.name");
        let bits: Vec<usize> = (0..3).map(|i| position(known, step_of(known), i, 6400)).collect();
        assert_eq!(bits, [2710, 1292, 6274]);
    }
}
