//! A sender's inbound budget (docs/protocol.md R3): how fast one connection may send.
//!
//! Two token buckets, one of messages and one of bytes, each refilled at its rate and
//! holding at most `burst` worth of it. A message spends one message token and its length
//! in byte tokens; when the buckets hold too little, the session waits until they refill
//! before it reads the next frame. Not reading is the whole enforcement: the kernel's
//! buffers fill and TCP slows the sender down. Nothing is dropped, and readers are never
//! disconnected on a flooder's account: with one sender at its budget, a reader that keeps
//! up with the budget never sees its queue overflow.

use std::time::{Duration, Instant};

/// What one connection may send: sustained rates and how much may come at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InboundBudget {
    /// Messages per second, sustained.
    pub messages_per_sec: f64,
    /// Payload bytes per second, sustained.
    pub bytes_per_sec: f64,
    /// How many seconds' worth of both may arrive at once (the buckets' depth).
    pub burst: Duration,
}

impl Default for InboundBudget {
    /// 1,000 messages/s and 4 MiB/s with a burst of one second: far above any shipped
    /// scenario's per-sender rate (at most tens of messages per second) and `loadgen
    /// conform`'s back-to-back checks (300 messages; 12 MiB pushed past a stalled reader
    /// in about three seconds), yet a burst (1,000 frames, 4 MiB) fits a receiver's default
    /// queue (1,024 frames, 4 MiB), so a reader that keeps up with the budget is never
    /// disconnected on one flooder's account.
    fn default() -> Self {
        InboundBudget {
            messages_per_sec: 1000.0,
            bytes_per_sec: 4.0 * 1024.0 * 1024.0,
            burst: Duration::from_secs(1),
        }
    }
}

/// The state of one connection's buckets.
#[derive(Debug)]
pub struct Spending {
    budget: InboundBudget,
    messages: f64,
    bytes: f64,
    /// When the buckets were last refilled.
    at: Instant,
}

impl Spending {
    /// Full buckets at `now`.
    pub fn new(budget: InboundBudget, now: Instant) -> Self {
        Spending {
            budget,
            messages: budget.messages_per_sec * budget.burst.as_secs_f64(),
            bytes: budget.bytes_per_sec * budget.burst.as_secs_f64(),
            at: now,
        }
    }

    /// Spends one message of `len` bytes at `now`; returns how long the sender must wait
    /// before its next frame is read (zero while within budget). A message larger than the
    /// bucket is let through once the bucket is full, so nothing is ever refused.
    pub fn spend(&mut self, len: usize, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        let burst = self.budget.burst.as_secs_f64();
        let refill = |level: f64, rate: f64| (level + elapsed * rate).min(rate * burst);
        self.messages = refill(self.messages, self.budget.messages_per_sec) - 1.0;
        self.bytes = refill(self.bytes, self.budget.bytes_per_sec) - len as f64;
        let wait = |level: f64, rate: f64| if level < 0.0 { -level / rate } else { 0.0 };
        let seconds = wait(self.messages, self.budget.messages_per_sec)
            .max(wait(self.bytes, self.budget.bytes_per_sec));
        Duration::from_secs_f64(seconds.min(3600.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(messages_per_sec: f64, bytes_per_sec: f64) -> InboundBudget {
        InboundBudget {
            messages_per_sec,
            bytes_per_sec,
            burst: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let start = Instant::now();
        let mut spending = Spending::new(budget(10.0, 1e9), start);
        for _ in 0..10 {
            assert_eq!(spending.spend(1, start), Duration::ZERO, "within the burst");
        }
        // The 11th message at once must wait a tenth of a second.
        let wait = spending.spend(1, start);
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        // Sent at the rate after waiting, it never waits again.
        let mut now = start + wait;
        for _ in 0..20 {
            now += Duration::from_millis(100);
            assert_eq!(spending.spend(1, now), Duration::ZERO);
        }
    }

    #[test]
    fn bytes_limit_too() {
        let start = Instant::now();
        let mut spending = Spending::new(budget(1e6, 1000.0), start);
        assert_eq!(spending.spend(1000, start), Duration::ZERO);
        let wait = spending.spend(500, start);
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9, "{wait:?}");
    }

    #[test]
    fn an_idle_sender_gets_its_burst_back_but_no_more() {
        let start = Instant::now();
        let mut spending = Spending::new(budget(10.0, 1e9), start);
        for _ in 0..10 {
            spending.spend(1, start);
        }
        let later = start + Duration::from_secs(60);
        for _ in 0..10 {
            assert_eq!(spending.spend(1, later), Duration::ZERO);
        }
        assert!(
            spending.spend(1, later) > Duration::ZERO,
            "the burst is capped"
        );
    }

    #[test]
    fn a_message_larger_than_the_bucket_waits_but_passes() {
        let start = Instant::now();
        let mut spending = Spending::new(budget(1e6, 100.0), start);
        let wait = spending.spend(1000, start);
        assert!((wait.as_secs_f64() - 9.0).abs() < 1e-9, "{wait:?}");
    }
}
