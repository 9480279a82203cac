//! The AWS SDK configuration every stage shares: region, credentials, the HTTP
//! client from [`crate::net`], and the SDK's own retries.
//!
//! The SDK retries its calls itself (throttling, 5xx, timeouts, with backoff
//! and jitter); hoist configures that and never wraps SDK calls in a retry
//! loop of its own (one retry layer per kind of call).

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::error::ConfigError;
use crate::net::Network;

pub async fn sdk_config(region: Option<&str>, net: &Network) -> Result<SdkConfig, ConfigError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(net.sdk_http_client()?)
        .retry_config(RetryConfig::standard().with_max_attempts(5))
        .timeout_config(timeouts(net.idle_timeout));
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_string()));
    }
    let config = loader.load().await;
    match config.region() {
        None => {
            return Err(ConfigError::new("no AWS region is configured")
                .hint("pass --region (or HOIST_REGION), or set AWS_REGION"));
        }
        Some(r) if !is_region_name(r.as_ref()) => {
            return Err(ConfigError::new(format!(
                "'{}' is not an AWS region name",
                crate::text::external(r.as_ref(), 64)
            ))
            .hint("regions look like eu-west-1 or us-gov-west-1: check --region, AWS_REGION and AWS_DEFAULT_REGION"));
        }
        Some(_) => {}
    }
    Ok(config)
}

/// Every AWS call gives up on a connection silent for `idle` (no answer)
/// and on an attempt that takes longer than that; the SDK's retries then
/// apply, and the whole operation ends within its five attempts. Without
/// these the SDK waits on a hung endpoint forever.
fn timeouts(idle: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(idle)
        .operation_attempt_timeout(idle)
        .operation_timeout(idle * 5 + Duration::from_secs(30))
        .build()
}

/// The shape of an AWS region name: `xx-name-N`, with more parts for
/// partitions such as us-gov or us-isob.
pub fn is_region_name(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok_and(|n| n > 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn region_names() {
        for ok in [
            "us-east-1",
            "eu-central-2",
            "us-gov-west-1",
            "cn-north-1",
            "us-isob-east-1",
            "il-central-1",
        ] {
            assert!(super::is_region_name(ok), "{ok}");
        }
        for bad in [
            "",
            "us-east",
            "useast1",
            "US-EAST-1",
            "us-east-1a",
            "us east-1",
            "eu-west-0",
            "x-y-1",
        ] {
            assert!(!super::is_region_name(bad), "{bad}");
        }
    }
}
