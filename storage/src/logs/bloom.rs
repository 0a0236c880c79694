//! The n-gram bloom filter of a chunk: every 4-byte window of every line of the chunk, sized by
//! the number of distinct grams the chunk holds rather than by its bytes. Lines repeat most of
//! their grams from one block to the next, so one filter per chunk is several times smaller than
//! one per block for the same false-positive rate.
//!
//! Building takes two steps. Every gram is hashed to an index in a universe of `2^u` values
//! (`u` chosen from the chunk's line bytes, at most 20) and marked in a
//! scratch bitmap; the marked indices are then counted (about the distinct grams) and mapped
//! onto the filter's `m` bits, `m` being `bits_per_gram` times that count. A reader maps a
//! needle's grams the same way. A substring needle of at least 4 bytes can only be in the chunk
//! if all of its grams test positive; shorter needles cannot use the filter. Layout in
//! `docs/format/log-chunks.md`.

/// Bytes per gram.
pub(crate) const GRAM_BYTES: usize = 4;

/// Smallest and largest universe, log2, as read from files.
const MIN_UNIVERSE_LOG2: u8 = 10;
const MAX_UNIVERSE_LOG2: u8 = 26;

/// The largest universe a builder picks: its scratch bitmap (128 KiB) stays in the core's
/// cache, which is what makes building fast. A 1.5 MiB chunk of log lines holds a few tens of
/// thousands of distinct grams, so they share indices only a few percent of the time.
const BUILD_UNIVERSE_LOG2: u8 = 20;

/// A filter never has fewer bits than this.
const MIN_BITS: u64 = 64;

/// The index of a gram (its 4 bytes read as a little-endian u32) in a universe of
/// `2^universe_log2` values: a multiplicative hash, whose top bits are the best mixed.
#[inline]
fn gram_index(gram: u32, universe_log2: u8) -> u64 {
    (u64::from(gram) ^ 0x5bd1_e995).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - u32::from(universe_log2))
}

/// Where an index of the universe lands among `bits` bits (`bits <= 2^universe_log2`): the
/// universe is cut into `bits` equal runs.
#[inline]
fn bit_position(index: u64, bits: u64, universe_log2: u8) -> u64 {
    (index * bits) >> universe_log2
}

/// A chunk's filter, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bloom {
    universe_log2: u8,
    /// Number of bits, a multiple of 64.
    bits: u64,
    words: Vec<u64>,
}

impl Bloom {
    /// Rebuilds a filter read from a file. `None` if the parts do not fit together.
    pub fn from_parts(universe_log2: u8, bits: u64, bytes: &[u8]) -> Option<Bloom> {
        if !(MIN_UNIVERSE_LOG2..=MAX_UNIVERSE_LOG2).contains(&universe_log2) {
            return None;
        }
        if bits < MIN_BITS || !bits.is_multiple_of(64) || bits > 1u64 << universe_log2 || bytes.len() as u64 != bits / 8
        {
            return None;
        }
        let words = bytes.chunks_exact(8).map(|chunk| u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]))).collect();
        Some(Bloom { universe_log2, bits, words })
    }

    /// Bytes a filter of `bits` bits takes in a file.
    pub fn byte_len(bits: u64) -> u64 {
        bits / 8
    }

    pub fn universe_log2(&self) -> u8 {
        self.universe_log2
    }

    pub fn bits(&self) -> u64 {
        self.bits
    }

    /// The bit array, little-endian words.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.words.len() * 8);
        for word in &self.words {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out
    }

    /// Whether a line of the chunk may contain `needle`. `false` is certain; `true` may be
    /// chance. Needles shorter than a gram always answer `true`.
    pub fn may_contain(&self, needle: &[u8]) -> bool {
        if needle.len() < GRAM_BYTES {
            return true;
        }
        needle.windows(GRAM_BYTES).all(|window| {
            let gram = u32::from_le_bytes([window[0], window[1], window[2], window[3]]);
            let position = bit_position(gram_index(gram, self.universe_log2), self.bits, self.universe_log2);
            self.words[(position / 64) as usize] & (1 << (position % 64)) != 0
        })
    }
}

/// Builds the filters of chunks one after another, reusing its scratch bitmap.
#[derive(Debug, Default)]
pub(crate) struct BloomBuilder {
    universe_log2: u8,
    /// One bit per index of the universe: the indices of the grams seen so far.
    seen: Vec<u64>,
}

impl BloomBuilder {
    /// Starts a chunk of about `line_bytes` bytes of lines: the universe has twice as many
    /// values as the chunk has grams, up to 2^20, so few distinct grams share an index.
    pub fn start(&mut self, line_bytes: u64) {
        let wanted = line_bytes.max(1).saturating_mul(2);
        let log2 = (64 - (wanted - 1).leading_zeros()) as u8;
        self.universe_log2 = log2.clamp(MIN_UNIVERSE_LOG2, BUILD_UNIVERSE_LOG2);
        let words = (1usize << self.universe_log2) / 64;
        self.seen.clear();
        self.seen.resize(words, 0);
    }

    /// Adds every 4-gram of `bytes` (a line, or lines joined by '\n': grams across the joins
    /// are harmless extras).
    pub fn insert(&mut self, bytes: &[u8]) {
        if bytes.len() < GRAM_BYTES || self.seen.is_empty() {
            return;
        }
        let universe_log2 = self.universe_log2;
        let seen = self.seen.as_mut_slice();
        let mut gram = u32::from_le_bytes([0, bytes[0], bytes[1], bytes[2]]);
        for &byte in &bytes[GRAM_BYTES - 1..] {
            gram = (gram >> 8) | (u32::from(byte) << 24);
            let index = gram_index(gram, universe_log2) as usize;
            let bit = 1u64 << (index % 64);
            // Most grams were seen before: testing first leaves the word unwritten, so the next
            // occurrence does not wait for this one's store.
            if seen[index / 64] & bit == 0 {
                seen[index / 64] |= bit;
            }
        }
    }

    /// The filter of what was inserted since `start`: `bits_per_gram` bits per distinct gram,
    /// at most `cap_bits_per_kib` bits per KiB of `line_bytes`.
    pub fn finish(&self, bits_per_gram: u32, cap_bits_per_kib: u32, line_bytes: u64) -> Bloom {
        let universe = 1u64 << self.universe_log2;
        let distinct: u64 = self.seen.iter().map(|word| u64::from(word.count_ones())).sum();
        let round = |bits: u64| bits.div_ceil(64) * 64;
        let wanted = round(distinct.saturating_mul(u64::from(bits_per_gram)));
        let cap = (line_bytes.saturating_mul(u64::from(cap_bits_per_kib)) / 1024) / 64 * 64;
        let bits = wanted.min(cap).clamp(MIN_BITS, universe.max(MIN_BITS));
        let mut words = vec![0u64; (bits / 64) as usize];
        for (word_index, &word) in self.seen.iter().enumerate() {
            let mut rest = word;
            while rest != 0 {
                let index = word_index as u64 * 64 + u64::from(rest.trailing_zeros());
                rest &= rest - 1;
                let position = bit_position(index, bits, self.universe_log2);
                words[(position / 64) as usize] |= 1 << (position % 64);
            }
        }
        Bloom { universe_log2: self.universe_log2, bits, words }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(lines: &[&str], bits_per_gram: u32) -> Bloom {
        let mut builder = BloomBuilder::default();
        let line_bytes = lines.iter().map(|line| line.len() as u64).sum();
        builder.start(line_bytes);
        for line in lines {
            builder.insert(line.as_bytes());
        }
        builder.finish(bits_per_gram, 256, line_bytes)
    }

    #[test]
    fn inserted_substrings_are_always_found() {
        let lines =
            ["2024-01-01 INFO dfs.DataNode: Receiving block blk_-1608999687919862906", "tiny", "abc", "ünïcødé ✓"];
        for bits_per_gram in [1, 3, 16] {
            let bloom = build(&lines, bits_per_gram);
            for line in lines {
                for start in 0..line.len() {
                    for end in start..=line.len() {
                        assert!(bloom.may_contain(&line.as_bytes()[start..end]), "{:?}", &line.as_bytes()[start..end]);
                    }
                }
            }
            let copy = Bloom::from_parts(bloom.universe_log2(), bloom.bits(), &bloom.to_bytes()).unwrap();
            assert_eq!(copy, bloom);
        }
        assert!(!build(&lines, 16).may_contain(b"0af7651916cd43dd8448eb211c80319c"));
        let bloom = build(&lines, 3);
        assert!(Bloom::from_parts(bloom.universe_log2(), bloom.bits() + 64, &bloom.to_bytes()).is_none());
        assert!(Bloom::from_parts(MAX_UNIVERSE_LOG2 + 1, bloom.bits(), &bloom.to_bytes()).is_none());
        assert!(Bloom::from_parts(bloom.universe_log2(), 65, &bloom.to_bytes()).is_none());
    }

    #[test]
    fn size_follows_distinct_grams_not_bytes() {
        let repeated: Vec<String> = (0..2000).map(|i| format!("GET /api/v1/items 200 worker {} ok", i % 4)).collect();
        let varied: Vec<String> = (0..2000).map(|i| format!("GET /api/v1/items/{i:08x}{:08x} 200", i * 7919)).collect();
        let repeated = build(&repeated.iter().map(String::as_str).collect::<Vec<_>>(), 3);
        let varied = build(&varied.iter().map(String::as_str).collect::<Vec<_>>(), 3);
        assert!(repeated.bits() * 20 < varied.bits(), "{} against {}", repeated.bits(), varied.bits());
        // The cap in bits per KiB of lines holds.
        let mut builder = BloomBuilder::default();
        builder.start(64 << 10);
        builder.insert(&(0..64u32 << 10).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect::<Vec<_>>());
        assert_eq!(builder.finish(8, 128, 64 << 10).bits(), 128 * 64);
    }

    #[test]
    fn absent_needles_mostly_fail() {
        let lines: Vec<String> =
            (0..5000).map(|i| format!("user {} logged in from 10.0.{}.{}", i % 50, i % 7, i % 13)).collect();
        let bloom = build(&lines.iter().map(String::as_str).collect::<Vec<_>>(), 3);
        let passing = (0..1000).filter(|i| bloom.may_contain(format!("{i:016x}").as_bytes())).count();
        assert!(passing < 10, "{passing} of 1000 absent ids pass");
    }
}
