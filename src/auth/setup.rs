//! From the flags to AWS credentials: the base SDK configuration, and — with
//! `--role-arn` — the OIDC exchange and the refreshing provider every client
//! of the run shares.

use std::sync::Arc;

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_credential_types::provider::SharedCredentialsProvider;

use super::sts::{Assumed, Exchange, Refreshing};
use crate::ci::{Ci, TokenOptions};
use crate::env::Env;
use crate::error::Error;
use crate::net::Network;

/// The SDK configuration for the run, and who it authenticates as when a role
/// was assumed.
pub async fn aws_config(
    settings: &super::Settings,
    ci: &Ci,
    env: &Env,
    net: &Network,
) -> Result<(SdkConfig, Option<Assumed>), Error> {
    let g = settings;
    let imds = crate::aws::Imds::decide(ci, env);
    let base = crate::aws::sdk_config(g.region.as_deref(), imds, net).await?;
    let Some(role_arn) = g.role_arn.clone() else {
        return Ok((base, None));
    };
    let session_policy = settings.session_policy.clone();
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
        session_name: g
            .session_name
            .clone()
            .unwrap_or_else(|| super::claims::session_name(ci.name(), ci.run_id().as_deref())),
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
    crate::output::say(&format!(
        "authenticated as {} (account {}) with the OIDC token from {}",
        assumed.arn,
        assumed.account().unwrap_or("?"),
        exchange.source.describe()
    ));
    let provider = Refreshing::new(exchange, assumed.credentials.clone());
    let config = base
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .build();
    Ok((config, Some(assumed)))
}
