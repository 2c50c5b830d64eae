//! The one retry backoff of fleetd: exponential, bounded, jittered.

use std::time::Duration;

/// Exponential backoff from `min`, doubling per failure up to `max`, with ±25 % jitter
/// so that many agents (or engines) that lost etcd together do not retry in lockstep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
}

impl Backoff {
    pub const fn new(min: Duration, max: Duration) -> Self {
        Backoff { min, max }
    }

    /// The pause after `failures` consecutive failures (0 and 1 give about `min`).
    pub fn delay(&self, failures: u32) -> Duration {
        let exp = self
            .min
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        exp.min(self.max.max(self.min))
            .mul_f64(rand::random_range(0.75..1.25))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_is_bounded() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        for f in 0..50 {
            let d = b.delay(f);
            assert!(
                d >= Duration::from_millis(75) && d <= Duration::from_millis(6250),
                "{f}: {d:?}"
            );
        }
        assert!(b.delay(1) < Duration::from_millis(200));
        assert!(b.delay(20) > Duration::from_secs(3));
        // a cap below the minimum is the minimum
        let tiny = Backoff::new(Duration::from_millis(100), Duration::ZERO);
        assert!(tiny.delay(9) >= Duration::from_millis(75));
    }
}
