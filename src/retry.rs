//! Retries with backoff and jitter, for the calls hoist retries itself:
//! registry HTTP requests and the STS exchange (other AWS calls use the SDK's
//! own retries). One retry layer per kind of call.
//!
//! Retried: 408, 429 and 5xx answers, and connections that fail or drop.
//! Not retried: every other 4xx (the request itself is wrong: retrying it only
//! delays the error), and blobs whose bytes do not match their digest.
//! A retried blob upload starts again from the start of its file, in a new
//! upload session.

use std::future::Future;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            attempts: 6,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(8),
        }
    }
}

/// Whether an HTTP status is worth another try.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// Whether a transport-level failure is worth another try: the connection
/// could not be made, was dropped, or timed out. A request hoist could not
/// even build (bad URL, TLS setup) is not.
///
/// A reqwest error that carries an HTTP status is decided by the status.
pub fn retryable_transport(e: &reqwest::Error) -> bool {
    if let Some(status) = e.status() {
        return retryable_status(status.as_u16());
    }
    e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() || e.is_decode()
}

impl Policy {
    /// Exponential backoff with full jitter: a random wait in
    /// [0, min(cap, base·2^attempt)], so parallel uploads that failed together
    /// do not come back together. A server's Retry-After wins when given.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d.min(self.cap * 4);
        }
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.cap);
        let ms = fastrand::u64(0..=ceiling.as_millis() as u64);
        Duration::from_millis(ms)
    }
}

/// What an attempt's failure says about the next attempt.
pub trait Transient {
    fn is_transient(&self) -> bool;
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// Run `op` until it succeeds, fails for good, or the attempts run out; the
/// last error is returned with the number of attempts made.
pub async fn retry<T, E, F, Fut>(policy: Policy, mut op: F) -> Result<T, (E, u32)>
where
    E: Transient + std::fmt::Display,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 0;
    loop {
        match op(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && attempt + 1 < policy.attempts => {
                let wait = policy.delay(attempt, e.retry_after());
                // The error names the operation itself.
                tracing::warn!(
                    "{e}; retrying in {:.1}s (attempt {} of {})",
                    wait.as_secs_f32(),
                    attempt + 2,
                    policy.attempts
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) => return Err((e, attempt + 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_statuses_are_retried() {
        let table = [
            (200, false),
            (400, false),
            (401, false),
            (403, false),
            (404, false),
            (405, false),
            (408, true),
            (409, false),
            (429, true),
            (500, true),
            (502, true),
            (503, true),
            (504, true),
        ];
        for (status, want) in table {
            assert_eq!(retryable_status(status), want, "{status}");
        }
    }

    #[test]
    fn backoff_is_bounded_and_honours_retry_after() {
        let p = Policy {
            attempts: 5,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        for attempt in 0..20 {
            assert!(p.delay(attempt, None) <= Duration::from_secs(1));
        }
        assert!(p.delay(0, None) <= Duration::from_millis(100));
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
    }

    #[derive(Debug)]
    struct E(bool);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "e")
        }
    }
    impl Transient for E {
        fn is_transient(&self) -> bool {
            self.0
        }
    }

    #[tokio::test]
    async fn retries_transient_only_within_budget() {
        let p = Policy {
            attempts: 3,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
        };
        let mut calls = 0;
        let r: Result<(), _> = retry(p, |_| {
            calls += 1;
            async { Err(E(true)) }
        })
        .await;
        assert_eq!(r.unwrap_err().1, 3);
        assert_eq!(calls, 3);
        let mut calls = 0;
        let r: Result<(), _> = retry(p, |_| {
            calls += 1;
            async { Err(E(false)) }
        })
        .await;
        assert_eq!(r.unwrap_err().1, 1);
        assert_eq!(calls, 1);
        let r = retry(
            p,
            |a| async move { if a < 2 { Err(E(true)) } else { Ok(a) } },
        )
        .await;
        assert_eq!(r.ok(), Some(2));
    }
}
