//! The exchange: OIDC token → STS AssumeRoleWithWebIdentity (→ optionally a
//! second hop with AssumeRole), and a credentials provider that repeats it
//! before the credentials expire, with a fresh token.
//!
//! Retries (one layer, here; the SDK's own are off for these calls): only
//! what is transient — IDPCommunicationError, throttling, 5xx, the network.
//! A refusal (AccessDenied, IDPRejectedClaim; InvalidIdentityToken after one
//! retry with a new token) fails at
//! once, with the token's claims; an ExpiredTokenException gets a new token
//! before the next try.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, error::CredentialsError, future};
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};

use super::AuthError;
use super::claims::Claims;
use crate::ci::TokenSource;
use crate::retry::{self, Policy, Transient};

/// What an STS error code means for the next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// The trust policy (or the token) says no: no retry, explain.
    Refused,
    /// The request itself is wrong (policy, duration, ARN): no retry.
    BadRequest,
    /// Ask the CI system for a new token, then try again.
    NewToken,
    /// Try again after a pause.
    Transient,
}

/// The rule, as a table: STS's documented errors (botocore sts-2011-06-15).
pub fn fate(code: Option<&str>, http_status: Option<u16>) -> Fate {
    match code {
        Some("AccessDenied" | "IDPRejectedClaim" | "InvalidIdentityToken") => Fate::Refused,
        Some("ExpiredTokenException") => Fate::NewToken,
        Some(
            "IDPCommunicationError"
            | "Throttling"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "ServiceUnavailable"
            | "InternalFailure",
        ) => Fate::Transient,
        Some(
            "MalformedPolicyDocument"
            | "PackedPolicyTooLarge"
            | "RegionDisabledException"
            | "ValidationError"
            | "InvalidParameterValue",
        ) => Fate::BadRequest,
        _ => match http_status {
            Some(s) if retry::retryable_status(s) => Fate::Transient,
            Some(_) => Fate::BadRequest,
            // No answer at all: the network.
            None => Fate::Transient,
        },
    }
}

#[derive(Clone)]
pub struct Assumed {
    pub credentials: Credentials,
    pub arn: String,
    pub expires: SystemTime,
}

impl Assumed {
    /// `arn:aws:sts::123456789012:assumed-role/ROLE/SESSION` → `123456789012`
    pub fn account(&self) -> Option<&str> {
        self.arn.split(':').nth(4).filter(|a| !a.is_empty())
    }
}

impl fmt::Debug for Assumed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assumed")
            .field("arn", &self.arn)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

pub struct Exchange {
    pub role_arn: String,
    pub chain_role_arn: Option<String>,
    pub session_name: String,
    pub audience: super::Audience,
    pub duration_secs: Option<i32>,
    pub session_policy: Option<String>,
    pub source: TokenSource,
    pub sts: aws_sdk_sts::Client,
    pub http: reqwest::Client,
    /// Told every token and credential hoist gets (the CI system masks them).
    pub mask: Arc<dyn Fn(&str) + Send + Sync>,
    pub policy: Policy,
}

impl fmt::Debug for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange")
            .field("role_arn", &self.role_arn)
            .field("session_name", &self.session_name)
            .finish_non_exhaustive()
    }
}

/// One attempt's failure.
enum Try {
    Done(AuthError),
    Again(String),
    NewToken(String),
}

impl fmt::Display for Try {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Try::Done(e) => write!(f, "{e}"),
            Try::Again(m) => write!(f, "STS: {m}"),
            Try::NewToken(m) => write!(f, "STS: {m} (fetching a new token)"),
        }
    }
}

impl Transient for Try {
    fn is_transient(&self) -> bool {
        !matches!(self, Try::Done(_))
    }
}

impl Exchange {
    /// Fetch a token, check it, exchange it — retried as the module says.
    pub async fn assume(&self) -> Result<Assumed, AuthError> {
        let token = Mutex::new(None);
        let token = &token;
        let retried_invalid = AtomicBool::new(false);
        let retried_invalid = &retried_invalid;
        let result = retry::retry(self.policy, |_| async move {
            let cached = token.lock().unwrap().clone();
            let t = match cached {
                Some(t) => t,
                None => self.fresh_token().await?,
            };
            *token.lock().unwrap() = Some(t.clone());
            let claims = Claims::decode(&t).map_err(Try::Done)?;
            claims
                .check(&self.audience.accepted(&claims), crate::clock::unix_now())
                .map_err(Try::Done)?;
            let res = self
                .sts
                .assume_role_with_web_identity()
                .role_arn(&self.role_arn)
                .role_session_name(&self.session_name)
                .web_identity_token(t.reveal())
                .set_duration_seconds(self.duration_secs)
                // With a chained role the policy narrows the last session:
                // here it could forbid the sts:AssumeRole the hop needs.
                .set_policy(if self.chain_role_arn.is_some() {
                    None
                } else {
                    self.session_policy.clone()
                })
                .send()
                .await;
            match res {
                Ok(out) => self.keep(out.assumed_role_user(), out.credentials()),
                Err(e) => Err(match self.judge(e, Some(&claims)) {
                    // InvalidIdentityToken is also what STS says when it
                    // could not fetch the provider's keys, or the token was
                    // minted a moment "in the future" (aws-facts.md part D):
                    // one more try, with a new token. A second one is final.
                    Try::Done(AuthError::Refused { code, message, .. })
                        if code == "InvalidIdentityToken"
                            && self.source.renews()
                            && !retried_invalid.swap(true, Ordering::SeqCst) =>
                    {
                        Try::NewToken(format!("{code}: {message}"))
                    }
                    other => other,
                }),
            }
            .inspect_err(|e| {
                if let Try::NewToken(_) = e {
                    *token.lock().unwrap() = None;
                }
            })
        })
        .await;
        let first = settle(result, &self.role_arn)?;
        match &self.chain_role_arn {
            None => Ok(first),
            Some(next) => self.hop(&first, next).await,
        }
    }

    async fn fresh_token(&self) -> Result<crate::secret::Secret, Try> {
        let t = self
            .source
            .fetch(&self.http, self.audience.request())
            .await
            .map_err(|e| match e {
                crate::ci::TokenError::Fetch {
                    transient: true, ..
                } => Try::Again(e.to_string()),
                e => Try::Done(e.into()),
            })?;
        (self.mask)(t.reveal());
        Ok(t)
    }

    /// Keep STS's credentials, masked.
    fn keep(
        &self,
        user: Option<&aws_sdk_sts::types::AssumedRoleUser>,
        c: Option<&aws_sdk_sts::types::Credentials>,
    ) -> Result<Assumed, Try> {
        let c = c.ok_or_else(|| Try::Again("no credentials in the answer".into()))?;
        let arn = user.map(|u| u.arn().to_string()).unwrap_or_default();
        for secret in [c.access_key_id(), c.secret_access_key(), c.session_token()] {
            (self.mask)(secret);
        }
        let expires = SystemTime::try_from(*c.expiration())
            .unwrap_or_else(|_| SystemTime::now() + Duration::from_secs(900));
        let credentials = Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            Some(expires),
            "hoist-oidc",
        );
        Ok(Assumed {
            credentials,
            arn,
            expires,
        })
    }

    fn judge<
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: fmt::Debug + HttpStatus + 'static,
    >(
        &self,
        e: SdkError<E, R>,
        claims: Option<&Claims>,
    ) -> Try {
        let status = e.raw_response().map(HttpStatus::status);
        // STS's words (which may echo the token's claims): one printable
        // line each.
        let code = e.code().map(|c| crate::text::external(c, 100));
        let message = crate::text::external(
            &e.message()
                .map(str::to_string)
                .unwrap_or_else(|| crate::aws::describe(&e)),
            crate::text::SNIPPET,
        );
        match fate(code.as_deref(), status) {
            Fate::Refused => Try::Done(AuthError::Refused {
                role_arn: self.role_arn.clone(),
                code: code.unwrap_or_default(),
                message,
                claims: claims.map(Claims::shown).unwrap_or_default(),
                issuer: claims.and_then(|c| c.issuer().map(str::to_string)),
            }),
            Fate::BadRequest => Try::Done(AuthError::BadRequest {
                role_arn: self.role_arn.clone(),
                code: code.unwrap_or_else(|| format!("HTTP {}", status.unwrap_or(0))),
                message,
            }),
            Fate::NewToken if self.source.renews() => {
                Try::NewToken(format!("{}: {message}", code.unwrap_or_default()))
            }
            Fate::NewToken => Try::Done(AuthError::Expired {
                ago_secs: 0,
                claims: claims.map(Claims::shown).unwrap_or_default(),
            }),
            Fate::Transient => Try::Again(match code {
                Some(c) => format!("{c}: {message}"),
                None => message,
            }),
        }
    }

    /// `--chain-role-arn`: from the first role into another (account).
    async fn hop(&self, first: &Assumed, next: &str) -> Result<Assumed, AuthError> {
        let conf = self
            .sts
            .config()
            .to_builder()
            .credentials_provider(first.credentials.clone())
            .build();
        let sts = aws_sdk_sts::Client::from_conf(conf);
        let result = retry::retry(self.policy, |_| async {
            match sts
                .assume_role()
                .role_arn(next)
                .role_session_name(&self.session_name)
                .set_duration_seconds(self.duration_secs)
                .set_policy(self.session_policy.clone())
                .send()
                .await
            {
                Ok(out) => self.keep(out.assumed_role_user(), out.credentials()),
                Err(e) => Err(match self.judge(e, None) {
                    Try::Done(AuthError::Refused { code, message, .. }) => {
                        Try::Done(AuthError::Refused {
                            role_arn: next.to_string(),
                            code,
                            message: format!("{message} (the second hop, from {})", first.arn),
                            claims: vec![],
                            issuer: None,
                        })
                    }
                    other => other,
                }),
            }
        })
        .await;
        settle(result, next)
    }
}

/// The outcome of a retried exchange, as the user sees it.
fn settle(result: Result<Assumed, (Try, u32)>, role_arn: &str) -> Result<Assumed, AuthError> {
    match result {
        Ok(a) => Ok(a),
        Err((Try::Done(e), _)) => Err(e),
        Err((Try::Again(m) | Try::NewToken(m), attempts)) => Err(AuthError::Unavailable {
            role_arn: role_arn.to_string(),
            attempts,
            message: m,
        }),
    }
}

/// The status of a raw HTTP response, whatever the SDK calls it.
pub trait HttpStatus {
    fn status(&self) -> u16;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Credentials for the SDK clients: the ones the first exchange got, then a
/// new exchange (with a fresh token) whenever the SDK's cache finds them
/// about to expire — long jobs never die of expired credentials.
#[derive(Debug)]
pub struct Refreshing {
    exchange: Arc<Exchange>,
    first: Mutex<Option<Credentials>>,
}

impl Refreshing {
    pub fn new(exchange: Exchange, first: Credentials) -> Refreshing {
        Refreshing {
            exchange: Arc::new(exchange),
            first: Mutex::new(Some(first)),
        }
    }
}

impl ProvideCredentials for Refreshing {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            if let Some(c) = self.first.lock().unwrap().take() {
                let fresh = c
                    .expiry()
                    .is_none_or(|t| t > SystemTime::now() + Duration::from_secs(60));
                if fresh {
                    return Ok(c);
                }
            }
            tracing::info!(
                "the role's credentials are about to expire; exchanging a fresh OIDC token"
            );
            self.exchange
                .assume()
                .await
                .map(|a| a.credentials)
                .map_err(CredentialsError::provider_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fates() {
        let table = [
            (Some("AccessDenied"), Some(403), Fate::Refused),
            (Some("IDPRejectedClaim"), Some(403), Fate::Refused),
            (Some("InvalidIdentityToken"), Some(400), Fate::Refused),
            (Some("ExpiredTokenException"), Some(400), Fate::NewToken),
            (Some("IDPCommunicationError"), Some(400), Fate::Transient),
            (Some("Throttling"), Some(400), Fate::Transient),
            (Some("MalformedPolicyDocument"), Some(400), Fate::BadRequest),
            (Some("RegionDisabledException"), Some(403), Fate::BadRequest),
            (None, Some(503), Fate::Transient),
            (None, Some(500), Fate::Transient),
            (None, Some(404), Fate::BadRequest),
            (None, None, Fate::Transient),
        ];
        for (code, status, want) in table {
            assert_eq!(fate(code, status), want, "{code:?} {status:?}");
        }
    }

    #[test]
    fn account_from_arn() {
        let a = Assumed {
            credentials: Credentials::new("AKIDEXAMPLE", "secret", None, None, "t"),
            arn: "arn:aws:sts::123456789012:assumed-role/ci/hoist-github-1".into(),
            expires: SystemTime::now(),
        };
        assert_eq!(a.account(), Some("123456789012"));
        assert!(
            !format!("{a:?}").contains("secret"),
            "Debug shows no credentials"
        );
    }
}
