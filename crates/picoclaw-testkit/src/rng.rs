//! [`SeededRng`]: a small seeded generator for tests that spread events (kill points, message
//! bursts, pauses) and must replay a failing seed.

/// xorshift64*: small, seeded, good enough to spread kill points and pauses; not for anything
/// that needs unpredictability.
#[derive(Clone, Debug)]
pub struct SeededRng(u64);

impl SeededRng {
    /// A generator from `seed` (0 is taken as 1: xorshift never leaves 0).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_and_zero_does_not_stick() {
        let a: Vec<u64> = {
            let mut r = SeededRng::new(7);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let mut r = SeededRng::new(7);
        assert_eq!(a, (0..4).map(|_| r.next_u64()).collect::<Vec<_>>());
        let mut zero = SeededRng::new(0);
        assert_ne!(zero.next_u64(), 0);
        assert_ne!(a[0], a[1]);
    }
}
