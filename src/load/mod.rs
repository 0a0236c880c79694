//! Generators of realistic traffic, shared by the load tool (`tripod-load`) and the benches.

pub mod traces;

/// The generators' random numbers (xorshift64*): fast, and the same sequence everywhere for
/// the same seed. Not for anything that must be unpredictable.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}
