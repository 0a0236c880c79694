//! The n-gram bloom filter of a block: every 4-byte window of every line is hashed into a bit
//! array sized from the block's line bytes (a budget, so that blooms never dominate the
//! compressed size). A substring needle of at least 4 bytes can only be in the block if every
//! one of its 4-grams is in the filter; shorter needles cannot use it.
//!
//! The filter is deliberately small: each 4-gram alone may test positive by chance quite often
//! (a third of the time at full budget), but a needle must pass for all of its 4-grams, so a
//! 6-byte word passes by chance a few percent of the time and a 32-hex-digit trace ID
//! practically never. Layout in `docs/format/log-chunks.md`.

/// Bytes per gram.
pub(crate) const GRAM_BYTES: usize = 4;

/// Smallest and largest filter, in bits (powers of two).
const MIN_BITS_LOG2: u8 = 9;
const MAX_BITS_LOG2: u8 = 24;

/// A bloom filter over the 4-grams of a block's lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bloom {
    /// log2 of the number of bits.
    bits_log2: u8,
    /// Bits set per gram (1 or 2).
    hashes: u8,
    words: Vec<u64>,
}

#[inline]
fn gram_hash(gram: u32) -> u64 {
    // A multiplicative hash of the 4 bytes; the top bits are the best mixed.
    (u64::from(gram) ^ 0x5bd1_e995).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl Bloom {
    /// An empty filter for about `line_bytes` bytes of lines, with `bits_per_kib` bits of
    /// budget per KiB of lines (rounded down to a power of two).
    pub fn with_budget(line_bytes: u64, bits_per_kib: u32, hashes: u8) -> Bloom {
        let wanted = (line_bytes.saturating_mul(u64::from(bits_per_kib)) / 1024).max(1);
        let bits_log2 = (63 - wanted.leading_zeros() as u8).clamp(MIN_BITS_LOG2, MAX_BITS_LOG2);
        Bloom { bits_log2, hashes: hashes.clamp(1, 2), words: vec![0; (1usize << bits_log2) / 64] }
    }

    /// Rebuilds a filter read from a file. `None` if the parts do not fit together.
    pub fn from_parts(bits_log2: u8, hashes: u8, bytes: &[u8]) -> Option<Bloom> {
        if !(MIN_BITS_LOG2..=MAX_BITS_LOG2).contains(&bits_log2) || !(1..=2).contains(&hashes) {
            return None;
        }
        if bytes.len() != (1usize << bits_log2) / 8 {
            return None;
        }
        let words = bytes.chunks_exact(8).map(|chunk| u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]))).collect();
        Some(Bloom { bits_log2, hashes, words })
    }

    pub fn bits_log2(&self) -> u8 {
        self.bits_log2
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

    #[cfg(test)]
    pub fn byte_len(&self) -> usize {
        self.words.len() * 8
    }

    #[inline]
    fn positions(&self, gram: u32) -> (usize, usize) {
        let hash = gram_hash(gram);
        let shift = 64 - u32::from(self.bits_log2);
        let first = (hash >> shift) as usize;
        let second = ((hash << 24) >> shift) as usize;
        (first, second)
    }

    /// Adds every 4-gram of `line`.
    pub fn insert_line(&mut self, line: &[u8]) {
        if line.len() < GRAM_BYTES {
            return;
        }
        let two = self.hashes == 2;
        let mut gram = u32::from_le_bytes([line[0], line[1], line[2], 0]);
        for &byte in &line[GRAM_BYTES - 1..] {
            gram = (gram & 0x00ff_ffff) | (u32::from(byte) << 24);
            let (first, second) = self.positions(gram);
            self.words[first / 64] |= 1 << (first % 64);
            if two {
                self.words[second / 64] |= 1 << (second % 64);
            }
            gram >>= 8;
        }
    }

    fn contains_gram(&self, gram: u32) -> bool {
        let (first, second) = self.positions(gram);
        let hit = self.words[first / 64] & (1 << (first % 64)) != 0;
        if self.hashes == 2 { hit && self.words[second / 64] & (1 << (second % 64)) != 0 } else { hit }
    }

    /// Whether a line of the block may contain `needle`. `false` is certain; `true` may be
    /// chance. Needles shorter than a gram always answer `true`.
    pub fn may_contain(&self, needle: &[u8]) -> bool {
        if needle.len() < GRAM_BYTES {
            return true;
        }
        needle.windows(GRAM_BYTES).all(|window| {
            let gram = u32::from_le_bytes([window[0], window[1], window[2], window[3]]);
            self.contains_gram(gram)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_substrings_are_always_found() {
        let mut bloom = Bloom::with_budget(4096, 256, 2);
        let lines = ["2024-01-01 INFO dfs.DataNode: Receiving block blk_-1608999687919862906", "tiny", "abc"];
        for line in lines {
            bloom.insert_line(line.as_bytes());
        }
        for line in lines {
            for start in 0..line.len() {
                for end in start..=line.len() {
                    assert!(bloom.may_contain(&line.as_bytes()[start..end]), "{:?}", &line[start..end]);
                }
            }
        }
        assert!(!bloom.may_contain(b"0af7651916cd43dd8448eb211c80319c"));
        let copy = Bloom::from_parts(bloom.bits_log2(), bloom.hashes(), &bloom.to_bytes()).unwrap();
        assert_eq!(copy, bloom);
        assert!(Bloom::from_parts(bloom.bits_log2(), 3, &bloom.to_bytes()).is_none());
        assert!(Bloom::from_parts(bloom.bits_log2() + 1, 1, &bloom.to_bytes()).is_none());
    }

    #[test]
    fn budget_sets_the_size() {
        assert_eq!(Bloom::with_budget(256 << 10, 256, 1).byte_len(), 8 << 10);
        assert_eq!(Bloom::with_budget(10, 256, 1).byte_len(), 64);
    }
}
