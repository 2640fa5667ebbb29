//! Exponential backoff with jitter, so a ZooKeeper restart never causes a thundering herd.
//!
//! The delay doubles from `initial` up to `max`; each delay is drawn uniformly from its upper
//! half ("equal jitter"), so hosts that lost ZooKeeper together come back spread out while none
//! waits longer than `max`. No I/O: the random draw is injected by `next_with`.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max: max.max(initial), attempt: 0 }
    }

    /// The next delay, with a random jitter.
    pub fn next_delay(&mut self) -> Duration {
        self.next_with(rand::random::<f64>())
    }

    /// The next delay for a given draw `unit` in `[0, 1)`.
    pub fn next_with(&mut self, unit: f64) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// Forgets past failures: the next delay is short again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// How many delays were handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_stays_in_the_upper_half() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let ceilings: Vec<_> = (0..6).map(|_| b.next_with(1.0)).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000].map(Duration::from_millis).to_vec());
        b.reset();
        assert_eq!(b.next_with(0.0), Duration::from_millis(50));
        assert_eq!(b.next_with(0.5), Duration::from_millis(150));
    }

    #[test]
    fn survives_many_attempts() {
        let mut b = Backoff::new(Duration::from_millis(1), Duration::from_secs(2));
        for _ in 0..10_000 {
            assert!(b.next_delay() <= Duration::from_secs(2));
        }
        assert_eq!(b.attempts(), 10_000);
    }
}
