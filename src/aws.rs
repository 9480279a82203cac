//! The AWS SDK configuration every stage shares: region, credentials, the HTTP
//! client from [`crate::net`], and the SDK's own retries.
//!
//! The SDK retries its calls itself (throttling, 5xx, timeouts, with backoff
//! and jitter); hoist configures that and never wraps SDK calls in a retry
//! loop of its own (one retry layer per kind of call).

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::error::ConfigError;
use crate::net::Network;

pub async fn sdk_config(region: Option<&str>, net: &Network) -> Result<SdkConfig, ConfigError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(net.sdk_http_client()?)
        .retry_config(RetryConfig::standard().with_max_attempts(5));
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_string()));
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(ConfigError::new("no AWS region is configured")
            .hint("pass --region (or HOIST_REGION), or set AWS_REGION"));
    }
    Ok(config)
}
