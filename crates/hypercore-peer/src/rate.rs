//! A token bucket ([`RateBudget`]) that paces what a remote may do: channel opens we refuse,
//! per second on a connection. Pure (the caller passes the time), so it is tested without a
//! clock. Kept over `governor`: thirty lines against a crate with its own clock abstraction.

use std::time::Instant;

/// `take` succeeds while the peer stays within a burst of `burst` and a sustained `rate`
/// per second.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateBudget {
    tokens: f64,
    burst: f64,
    rate: f64,
    last: Instant,
}

impl RateBudget {
    pub(crate) fn new(burst: f64, rate: f64, now: Instant) -> RateBudget {
        RateBudget {
            tokens: burst,
            burst,
            rate,
            last: now,
        }
    }

    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let t0 = Instant::now();
        let mut b = RateBudget::new(3.0, 2.0, t0);
        assert!((0..3).all(|_| b.take(t0)));
        assert!(!b.take(t0), "the burst is spent");
        let t1 = t0 + Duration::from_millis(500);
        assert!(b.take(t1), "one token back after 1/rate");
        assert!(!b.take(t1));
        let t2 = t1 + Duration::from_secs(60);
        assert!(
            (0..3).all(|_| b.take(t2)),
            "refilled, but only to the burst"
        );
        assert!(!b.take(t2));
    }
}
