//! How the deploy waits on AWS: look at once (the update may have settled,
//! the version may be Active already), then pause between looks, each pause
//! longer than the last up to a ceiling — the same rule as the gate's scan
//! wait (`scan::status::pause`). Lambda's own waiters poll every second
//! (FunctionUpdatedV2) or every 5 s (PublishedVersionActive); updates take
//! seconds to minutes.

use std::time::{Duration, Instant};

/// The pause before look `n` (counted from 0): none before the first, then
/// `base`, growing by half each time, at most `cap`.
pub fn pause(n: u32, base: Duration, cap: Duration) -> Duration {
    if n == 0 {
        return Duration::ZERO;
    }
    let grown = base.as_secs_f64() * 1.5f64.powi((n - 1).min(20) as i32);
    Duration::from_secs_f64(grown).min(cap.max(base))
}

/// Lambda's states (an update settling, a version becoming Active,
/// provisioned concurrency being allocated): 1 s, 1.5 s, 2.25 s … at most 5 s.
pub const LAMBDA: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(5));

/// Another deployment holding the alias (its bakes last minutes): 1 s …
/// at most 10 s.
pub const OTHER_DEPLOYMENT: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(10));

/// One wait: counts the looks and sleeps the pause before each, never past
/// the deadline.
pub struct Waiter {
    looks: u32,
    base: Duration,
    cap: Duration,
    pub deadline: Instant,
}

impl Waiter {
    pub fn new((base, cap): (Duration, Duration), deadline: Instant) -> Waiter {
        Waiter {
            looks: 0,
            base,
            cap,
            deadline,
        }
    }

    /// Sleep before the next look (not at all before the first).
    pub async fn next(&mut self) {
        let p = pause(self.looks, self.base, self.cap)
            .min(self.deadline.saturating_duration_since(Instant::now()));
        if !p.is_zero() {
            tokio::time::sleep(p).await;
        }
        self.looks += 1;
    }

    /// Looks made so far.
    pub fn looks(&self) -> u32 {
        self.looks
    }

    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_look_is_at_once_then_pauses_grow_to_a_cap() {
        let (base, cap) = LAMBDA;
        let p = |n| pause(n, base, cap).as_secs_f64();
        assert_eq!(p(0), 0.0);
        assert_eq!(p(1), 1.0);
        assert_eq!(p(2), 1.5);
        assert_eq!(p(3), 2.25);
        assert_eq!(p(5), 5.0);
        assert_eq!(p(40), 5.0);
        let (base, cap) = OTHER_DEPLOYMENT;
        assert_eq!(pause(30, base, cap), Duration::from_secs(10));
        // A cap below the base is the base.
        assert_eq!(
            pause(3, Duration::from_secs(2), Duration::from_secs(1)),
            Duration::from_secs(2)
        );
    }
}
