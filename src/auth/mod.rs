//! The auth stage: the CI job's OIDC token → STS AssumeRoleWithWebIdentity →
//! credentials for every AWS call of the run, refreshed before they expire.
//! No stored keys.

pub mod claims;
pub mod settings;
pub mod setup;
pub mod sts;
pub mod trust;

use crate::error::{Class, Diagnose};
pub use settings::Settings;

pub const DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";

/// The audience AWS expects: `sts.amazonaws.com`, or `.cn` in China regions.
pub fn default_audience(region: Option<&str>) -> &'static str {
    match region {
        Some(r) if r.starts_with("cn-") => "sts.amazonaws.com.cn",
        _ => DEFAULT_AUDIENCE,
    }
}

/// The audience hoist asks the CI system for, and the ones it accepts in the
/// token it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// `--audience`: requested, and the only one accepted.
    Given(String),
    /// No `--audience`: AWS's own is requested where tokens are minted on
    /// request (GitHub, Buildkite) and accepted everywhere. CircleCI and
    /// Bitbucket hand every job a token with an audience of their own, and
    /// their documentation registers the IAM OIDC provider with it: that
    /// audience is expected first.
    Default(&'static str),
}

impl Audience {
    pub fn new(given: Option<&str>, region: Option<&str>) -> Audience {
        match given {
            Some(a) => Audience::Given(a.to_string()),
            None => Audience::Default(default_audience(region)),
        }
    }

    /// What to ask a CI system that mints tokens on request for.
    pub fn request(&self) -> &str {
        match self {
            Audience::Given(a) => a,
            Audience::Default(a) => a,
        }
    }

    /// The audiences this token may carry, the expected one first.
    pub fn accepted(&self, claims: &claims::Claims) -> Vec<String> {
        match self {
            Audience::Given(a) => vec![a.clone()],
            Audience::Default(aws) => platform_audience(claims)
                .into_iter()
                .chain([aws.to_string()])
                .collect(),
        }
    }
}

/// The audience a CI platform fixes for its tokens, read from the token:
/// CircleCI's organisation id (the org in `iss`,
/// `https://oidc.circleci.com/org/<org id>`, or the
/// `oidc.circleci.com/org-id` claim), Bitbucket's
/// `ari:cloud:bitbucket::workspace/<workspace uuid>`. None elsewhere.
pub fn platform_audience(claims: &claims::Claims) -> Option<String> {
    let iss = claims.issuer()?.trim_end_matches('/');
    if iss.starts_with("https://oidc.circleci.com/") {
        return iss
            .strip_prefix("https://oidc.circleci.com/org/")
            .filter(|o| !o.is_empty() && !o.contains('/'))
            .or_else(|| claims.str("oidc.circleci.com/org-id"))
            .map(str::to_string);
    }
    if iss.starts_with("https://api.bitbucket.org/2.0/workspaces/")
        && iss.ends_with("/pipelines-config/identity/oidc")
    {
        // The claim holds the UUID in braces; the audience holds it bare.
        let ws = claims
            .str("workspaceUuid")?
            .trim_matches(|c| c == '{' || c == '}');
        return (!ws.is_empty()).then(|| format!("ari:cloud:bitbucket::workspace/{ws}"));
    }
    None
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Token(#[from] crate::ci::TokenError),
    #[error("the OIDC token is not a JWT: {reason}")]
    NotAJwt { reason: String },
    #[error("the OIDC token expired {ago_secs} s ago")]
    Expired {
        ago_secs: i64,
        claims: Vec<(String, String)>,
    },
    #[error("the OIDC token is for audience {found:?}, not {}", wanted.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" or "))]
    WrongAudience {
        /// What hoist accepts, the expected one first.
        wanted: Vec<String>,
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
            AuthError::Token(e) => e.class(),
            AuthError::Unavailable { .. } => Class::Infrastructure,
            _ => Class::Usage,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            AuthError::Token(e) => return e.hint(),
            AuthError::NotAJwt { .. } => "the token source holds something else (an empty file, a path, a quoted value?); check --id-token-file / --id-token-env".into(),
            AuthError::Expired { claims, .. } => format!("fetch a fresh token (CI tokens live minutes to an hour); the token's claims:{}", claim_lines(claims)),
            AuthError::WrongAudience { wanted, found, claims } => {
                let wanted = wanted.first().map(String::as_str).unwrap_or(DEFAULT_AUDIENCE);
                let issuer = claims
                    .iter()
                    .find(|(k, _)| k == "iss")
                    .map(|(_, v)| v.as_str())
                    .unwrap_or_default();
                let how = if issuer.starts_with("https://oidc.circleci.com/") {
                    format!("CircleCI's tokens carry the organisation id ('{wanted}') as audience, which is what CircleCI's AWS set-up registers the IAM OIDC provider with; a token with custom claims carries another: pass --audience {} if the IAM provider is registered with that", found.first().map(String::as_str).unwrap_or("AUDIENCE"))
                } else if issuer.starts_with("https://api.bitbucket.org/") {
                    format!("Bitbucket's tokens carry '{wanted}' unless the step lists `oidc: audiences:`; pass --audience with the audience the IAM OIDC provider is registered with ({})", found.join(", "))
                } else {
                    format!("request the token for audience '{wanted}' (GitLab: id_tokens: … aud: {wanted}; Buildkite/GitHub: hoist asks for it itself), or pass --audience to match the token and the trust policy")
                };
                format!("{how}; the token's claims:{}", claim_lines(claims))
            }
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
            AuthError::Unavailable { .. } => "a transient failure at STS or the identity provider; re-running the job is safe".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::claims::Claims;
    use super::*;

    /// Tokens shaped as CircleCI's and Atlassian's documentation shows them.
    #[test]
    fn platform_audiences_come_from_the_token() {
        let org = "b6c5d1ee-6f4a-4e3c-9a59-0e4b4c2d8f11";
        let table = [
            (
                json!({ "iss": format!("https://oidc.circleci.com/org/{org}"), "aud": org }),
                Some(org.to_string()),
            ),
            (
                json!({ "iss": "https://oidc.circleci.com/org/", "oidc.circleci.com/org-id": org }),
                Some(org.to_string()),
            ),
            (
                json!({ "iss": "https://api.bitbucket.org/2.0/workspaces/acme/pipelines-config/identity/oidc", "workspaceUuid": "{7c4b5c76-3a1e-4a57-93f0-c6c5e0b9e0a1}" }),
                Some("ari:cloud:bitbucket::workspace/7c4b5c76-3a1e-4a57-93f0-c6c5e0b9e0a1".into()),
            ),
            (
                json!({ "iss": "https://api.bitbucket.org/2.0/workspaces/acme/pipelines-config/identity/oidc" }),
                None,
            ),
            (
                json!({ "iss": "https://token.actions.githubusercontent.com" }),
                None,
            ),
            (json!({ "iss": "https://gitlab.com" }), None),
            (json!({}), None),
        ];
        for (claims, want) in table {
            assert_eq!(
                platform_audience(&Claims::from_json(claims.clone())),
                want,
                "{claims}"
            );
        }
    }

    #[test]
    fn accepted_audiences() {
        let circle = Claims::from_json(json!({ "iss": "https://oidc.circleci.com/org/o-1" }));
        let github =
            Claims::from_json(json!({ "iss": "https://token.actions.githubusercontent.com" }));
        let default = Audience::new(None, Some("eu-west-1"));
        assert_eq!(default.request(), "sts.amazonaws.com");
        assert_eq!(default.accepted(&circle), ["o-1", "sts.amazonaws.com"]);
        assert_eq!(default.accepted(&github), ["sts.amazonaws.com"]);
        assert_eq!(
            Audience::new(None, Some("cn-north-1")).accepted(&github),
            ["sts.amazonaws.com.cn"]
        );
        let given = Audience::new(Some("custom"), None);
        assert_eq!(given.request(), "custom");
        assert_eq!(given.accepted(&circle), ["custom"], "--audience overrides");
    }
}
