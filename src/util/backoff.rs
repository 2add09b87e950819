//! The one back-off of the crate: exponential, jittered delays between attempts (redialling a
//! peer, retrying a failed pull), built on `backon`'s `ExponentialBuilder` so the schedule is a
//! well-tested iterator; this type only adds `reset` (start the schedule over after a success
//! that lasted) and never runs out (the caller decides when to give up).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Delays `min, 2·min, 4·min, … max`, each with up to +100 % random jitter (so peers that
/// lost the same server do not come back in lockstep).
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let builder = ExponentialBuilder::default()
            .with_min_delay(min)
            .with_max_delay(max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Backoff {
            builder,
            delays: builder.build(),
        }
    }

    /// The delay before the next attempt (the schedule grows with every call).
    pub fn next_delay(&mut self) -> Duration {
        // `without_max_times` makes the iterator endless; the fallback is only a guard.
        self.delays
            .next()
            .or(self.builder.build().next())
            .unwrap_or(Duration::from_secs(1))
    }

    /// Starts the schedule over at `min` (after a success).
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        let mut b = Backoff::new(min, max);
        let first = b.next_delay();
        assert!(first >= min && first <= 2 * min, "{first:?}");
        let later: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(later.iter().all(|d| *d <= 2 * max), "{later:?}");
        assert!(later.last().is_some_and(|d| *d >= max), "{later:?}");
        b.reset();
        assert!(b.next_delay() <= 2 * min);
    }
}
