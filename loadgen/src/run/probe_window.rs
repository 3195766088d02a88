//! Which of the latest relogin probes arrived on one connection, in 136 bytes.
//!
//! Every probe is a broadcast, so every connection receives every probe: kept as a list,
//! a long-lived connection's probe ids grew its memory by 8 bytes a probe — tens of MB an
//! hour across 1,000 users at a few relogins a second. A relogin only ever asks about the
//! probe it was handed, within seconds of its sending (the probe deadline, as long again
//! for a late one, and the eviction wait), so a sliding window of the newest
//! [`WINDOW`] ids is enough: with probes at most every 50 ms (the default
//! `probe_interval`) it spans 51 seconds. An id older than the window reads as not
//! arrived.

/// How many of the newest probe ids a connection remembers.
pub const WINDOW: u64 = 1024;

const WORDS: usize = (WINDOW / 64) as usize;

/// Bit `k` says whether probe `newest - k` arrived.
#[derive(Debug, Default)]
pub struct ProbeWindow {
    newest: u64,
    bits: [u64; WORDS],
}

impl ProbeWindow {
    /// Probe `id` arrived.
    pub fn record(&mut self, id: u64) {
        if self.newest == 0 || id > self.newest {
            let shift = if self.newest == 0 {
                WINDOW
            } else {
                id - self.newest
            };
            self.shift(shift);
            self.newest = id;
        }
        let age = self.newest - id;
        if age < WINDOW {
            self.bits[(age / 64) as usize] |= 1 << (age % 64);
        }
    }

    /// Whether probe `id` arrived (and is still within the window).
    pub fn contains(&self, id: u64) -> bool {
        if self.newest == 0 || id > self.newest {
            return false;
        }
        let age = self.newest - id;
        age < WINDOW && self.bits[(age / 64) as usize] & (1 << (age % 64)) != 0
    }

    /// Ages every bit by `by` probes.
    fn shift(&mut self, by: u64) {
        if by >= WINDOW {
            self.bits = [0; WORDS];
            return;
        }
        let (words, bits) = ((by / 64) as usize, (by % 64) as u32);
        for i in (0..WORDS).rev() {
            let from = i.checked_sub(words).map_or(0, |j| self.bits[j]);
            let carry = match i.checked_sub(words + 1) {
                Some(j) if bits > 0 => self.bits[j] >> (64 - bits),
                _ => 0,
            };
            self.bits[i] = (from << bits) | carry;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn it_answers_like_a_set_of_the_newest_ids() {
        // Ids arriving mostly in order, some skipped, some late, with jumps of every size
        // (within a word, across words, beyond the window).
        let mut window = ProbeWindow::default();
        let mut set = BTreeSet::new();
        let mut id = 0u64;
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for step in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            id += match step % 997 {
                0 => 1500,
                1 => 700,
                _ => 1 + x % 70,
            };
            let arrived = if x.is_multiple_of(11) {
                id.saturating_sub(x % 40)
            } else {
                id
            };
            if arrived == 0 {
                continue;
            }
            window.record(arrived);
            set.insert(arrived);
            let newest = *set.iter().next_back().unwrap();
            for probe in newest.saturating_sub(WINDOW + 5)..=newest + 2 {
                let expected =
                    set.contains(&probe) && newest - probe.min(newest) < WINDOW && probe <= newest;
                assert_eq!(
                    window.contains(probe),
                    expected,
                    "probe {probe}, newest {newest}"
                );
            }
        }
    }

    #[test]
    fn nothing_arrived_is_nothing_contained() {
        let mut window = ProbeWindow::default();
        assert!(!window.contains(0) && !window.contains(1));
        window.record(5);
        assert!(window.contains(5) && !window.contains(4) && !window.contains(6));
        window.record(5 + WINDOW);
        assert!(!window.contains(5), "aged out");
        assert!(window.contains(5 + WINDOW));
    }
}
