//! A small, seedable random generator (SplitMix64), so that a scenario's `seed` fixes
//! every random choice of a run (which users relogin or churn) and a run can be repeated.
//! Not for anything secret.

/// SplitMix64: one 64-bit state, a fixed increment and a mixing function.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform value in [0, 1).
    #[cfg(test)]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal value (Box–Muller), for simulated noise in tests.
    #[cfg(test)]
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_gives_one_sequence() {
        let a: Vec<u64> = {
            let mut r = SplitMix::new(42);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let mut b = SplitMix::new(42);
        assert!(a.iter().all(|&x| x == b.next_u64()));
        let mut c = SplitMix::new(43);
        assert_ne!(a[0], c.next_u64());
    }
}
