//! From the flags to AWS credentials: the base SDK configuration, and — with
//! `--role-arn` — the OIDC exchange and the refreshing provider every client
//! of the run shares.

use std::sync::Arc;

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_credential_types::provider::SharedCredentialsProvider;

use super::sts::{Assumed, Exchange, Refreshing};
use crate::ci::{Ci, TokenOptions};
use crate::cli::Global;
use crate::env::Env;
use crate::error::{ConfigError, Error};
use crate::net::Network;

/// The SDK configuration for the run, and who it authenticates as when a role
/// was assumed.
pub async fn aws_config(
    g: &Global,
    ci: &Ci,
    env: &Env,
    net: &Network,
) -> Result<(SdkConfig, Option<Assumed>), Error> {
    let base = crate::aws::sdk_config(g.region.as_deref(), net).await?;
    let Some(role_arn) = g.role_arn.clone() else {
        return Ok((base, None));
    };
    check_arn("--role-arn", &role_arn)?;
    if let Some(chain) = &g.chain_role_arn {
        check_arn("--chain-role-arn", chain)?;
    }
    if let Some(d) = g.duration {
        if !(900..=43200).contains(&d) {
            return Err(ConfigError::new(format!("--duration {d} is out of range")).hint("STS sessions last 900 to 43200 seconds (and at most the role's maximum session duration)").into());
        }
    }
    // AWS caps a role-chained session at one hour, whatever the role allows.
    if let (Some(d), Some(_)) = (g.duration, &g.chain_role_arn) {
        if d > 3600 {
            return Err(ConfigError::new(format!("--duration {d} is too long with --chain-role-arn"))
                .hint("AWS limits a chained role session to 3600 seconds; hoist refreshes the credentials before they expire, so a shorter session is fine")
                .into());
        }
    }
    let session_policy = match &g.session_policy {
        None => None,
        Some(path) => {
            let text =
                crate::files::read_to_string(path, "--session-policy", crate::files::POLICY)?;
            let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text) else {
                return Err(ConfigError::new(format!(
                    "--session-policy {} is not JSON",
                    path.display()
                ))
                .hint("give an IAM policy document")
                .into());
            };
            // STS counts the characters it is sent: send it without the
            // file's indentation, and check its limit here, before any call.
            let packed = doc.to_string();
            if packed.len() > 2048 {
                return Err(ConfigError::new(format!(
                    "--session-policy {} is {} characters without whitespace; STS takes at most 2048",
                    path.display(),
                    packed.len()
                ))
                .hint("narrow it with fewer statements, or wildcards in resource ARNs")
                .into());
            }
            Some(packed)
        }
    };
    let region = base.region().map(|r| r.to_string());
    let audience = super::Audience::new(g.audience.as_deref(), region.as_deref());
    let source = ci.token_source(
        env,
        &TokenOptions {
            file: g.id_token_file.clone(),
            var: g.id_token_env.clone(),
        },
    )?;
    // hoist's own loop retries the exchange (see sts.rs): the SDK's is off.
    let sts_conf = aws_sdk_sts::config::Builder::from(&base)
        .retry_config(RetryConfig::disabled())
        .build();
    let masker = ci.clone();
    let exchange = Exchange {
        role_arn,
        chain_role_arn: g.chain_role_arn.clone(),
        session_name: super::claims::session_name(ci.name(), ci.run_id().as_deref()),
        audience,
        duration_secs: g.duration,
        session_policy,
        source,
        sts: aws_sdk_sts::Client::from_conf(sts_conf),
        http: net.reqwest()?,
        mask: Arc::new(move |s| masker.mask(s)),
        policy: crate::retry::Policy {
            attempts: 5,
            ..Default::default()
        },
    };
    let assumed = exchange.assume().await?;
    eprintln!(
        "authenticated as {} (account {}) with the OIDC token from {}",
        assumed.arn,
        assumed.account().unwrap_or("?"),
        exchange.source.describe()
    );
    let provider = Refreshing::new(exchange, assumed.credentials.clone());
    let config = base
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .build();
    Ok((config, Some(assumed)))
}

fn check_arn(flag: &str, arn: &str) -> Result<(), ConfigError> {
    let parts: Vec<&str> = arn.split(':').collect();
    if parts.len() < 6 || parts[0] != "arn" || parts[2] != "iam" || !parts[5].starts_with("role/") {
        return Err(
            ConfigError::new(format!("{flag} '{arn}' is not an IAM role ARN"))
                .hint("e.g. arn:aws:iam::123456789012:role/ci-deploy"),
        );
    }
    Ok(())
}
