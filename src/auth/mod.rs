//! The auth stage: the CI job's OIDC token → STS AssumeRoleWithWebIdentity →
//! credentials for every AWS call of the run, refreshed before they expire.
//! No stored keys.

pub mod claims;
pub mod setup;
pub mod sts;
pub mod trust;

use crate::error::{Class, Diagnose};

pub const DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";

/// The audience AWS expects: `sts.amazonaws.com`, or `.cn` in China regions.
pub fn default_audience(region: Option<&str>) -> &'static str {
    match region {
        Some(r) if r.starts_with("cn-") => "sts.amazonaws.com.cn",
        _ => DEFAULT_AUDIENCE,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no OIDC token: {why}")]
    NoToken { why: String, hint: String },
    #[error("could not get an OIDC token from {from}: {reason}")]
    TokenFetch {
        from: String,
        reason: String,
        transient: bool,
    },
    #[error("the OIDC token is not a JWT: {reason}")]
    NotAJwt { reason: String },
    #[error("the OIDC token expired {ago_secs} s ago")]
    Expired {
        ago_secs: i64,
        claims: Vec<(String, String)>,
    },
    #[error("the OIDC token is for audience {found:?}, not '{wanted}'")]
    WrongAudience {
        wanted: String,
        found: Vec<String>,
        claims: Vec<(String, String)>,
    },
    #[error("STS refused to let this job assume {role_arn}: {code}: {message}")]
    Refused {
        role_arn: String,
        code: String,
        message: String,
        claims: Vec<(String, String)>,
        issuer: Option<String>,
    },
    #[error("STS rejected the request for {role_arn}: {code}: {message}")]
    BadRequest {
        role_arn: String,
        code: String,
        message: String,
    },
    #[error("the STS exchange for {role_arn} failed after {attempts} attempts: {message}")]
    Unavailable {
        role_arn: String,
        attempts: u32,
        message: String,
    },
}

fn claim_lines(claims: &[(String, String)]) -> String {
    claims
        .iter()
        .map(|(k, v)| format!("\n    {k}: {v}"))
        .collect()
}

impl Diagnose for AuthError {
    fn class(&self) -> Class {
        match self {
            AuthError::TokenFetch {
                transient: true, ..
            }
            | AuthError::Unavailable { .. } => Class::Infrastructure,
            _ => Class::Usage,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            AuthError::NoToken { hint, .. } => hint.clone(),
            AuthError::NotAJwt { .. } => "the token source holds something else (an empty file, a path, a quoted value?); check --id-token-file / --id-token-env".into(),
            AuthError::Expired { claims, .. } => format!("fetch a fresh token (CI tokens live minutes to an hour); the token's claims:{}", claim_lines(claims)),
            AuthError::WrongAudience { wanted, claims, .. } => format!(
                "request the token for audience '{wanted}' (GitLab: id_tokens: … aud: {wanted}; Buildkite/GitHub: hoist asks for it itself), or pass --audience to match the token and the trust policy; the token's claims:{}",
                claim_lines(claims)
            ),
            AuthError::Refused { claims, issuer, .. } => {
                let usual = match issuer.as_deref() {
                    Some(i) if i.contains("githubusercontent") => "\n  usual cause on GitHub: the trust policy's `sub` condition does not match — adding `environment:` to the job changes sub to repo:ORG/REPO:environment:NAME, and pull_request runs have repo:ORG/REPO:pull_request",
                    Some(i) if i.contains("gitlab") => "\n  usual cause on GitLab: the trust policy's `sub` names another branch, tag or project (project_path:GROUP/PROJECT:ref_type:branch:ref:NAME)",
                    Some(i) if i.contains("buildkite") => "\n  usual cause on Buildkite: `sub` carries the pipeline, ref, commit and step key; match it with a wildcard",
                    _ => "",
                };
                format!(
                    "compare these claims with the role's trust policy (the identity provider for the issuer must exist in IAM, and its aud/sub conditions must match):{}{usual}\n  `hoist doctor` prints a trust policy that accepts exactly this job",
                    claim_lines(claims)
                )
            }
            AuthError::BadRequest { .. } => "check --role-arn, --duration (900–43200 and within the role's maximum) and --session-policy".into(),
            AuthError::Unavailable { .. } | AuthError::TokenFetch { .. } => "a transient failure at STS or the identity provider; re-running the job is safe".into(),
        })
    }
}
