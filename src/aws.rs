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

use crate::error::{Class, ConfigError};
use crate::net::Network;

pub async fn sdk_config(
    region: Option<&str>,
    imds: Imds,
    net: &Network,
) -> Result<SdkConfig, ConfigError> {
    use aws_config::meta::region::RegionProviderChain;
    // hoist's own HTTP client for everything the SDK sends, IMDS included
    // (the AWS crates are built without a default one).
    let http = net.sdk_http_client()?;
    let base = aws_config::provider_config::ProviderConfig::without_region()
        .with_http_client(http.clone())
        .with_behavior_version(Some(BehaviorVersion::latest()));
    let region = match region {
        Some(r) => Some(Region::new(r.to_string())),
        None => {
            // The SDK's default chain (environment, profile, IMDS), with
            // IMDS only where an instance role is plausible, and then with
            // short timeouts (see [`Imds`]).
            let chain = RegionProviderChain::first_try(
                aws_config::environment::EnvironmentVariableRegionProvider::new(),
            )
            .or_else(aws_config::profile::ProfileFileRegionProvider::new());
            let chain = match imds {
                Imds::Probe => chain.or_else(
                    aws_config::imds::region::ImdsRegionProvider::builder()
                        .imds_client(imds_client(&base))
                        .build(),
                ),
                Imds::Skip => chain,
            };
            chain.region().await
        }
    };
    let Some(region) = region else {
        return Err(ConfigError::new("no AWS region is configured").hint(match imds {
            Imds::Skip => "pass --region (or HOIST_REGION), or set AWS_REGION",
            Imds::Probe => "pass --region (or HOIST_REGION), or set AWS_REGION (the instance-metadata service gave none either)",
        }));
    };
    if !is_region_name(region.as_ref()) {
        return Err(ConfigError::new(format!(
            "'{}' is not an AWS region name",
            crate::text::external(region.as_ref(), 64)
        ))
        .hint("regions look like eu-west-1 or us-gov-west-1: check --region, AWS_REGION and AWS_DEFAULT_REGION"));
    }
    let conf = base.with_region(Some(region.clone()));
    let credentials = credentials(imds, &conf).await;
    Ok(aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(RetryConfig::standard().with_max_attempts(5))
        .timeout_config(timeouts(net.idle_timeout))
        .region(region)
        .credentials_provider(credentials)
        .load()
        .await)
}

/// Whether the SDK may ask the EC2 instance-metadata service (IMDS) for a
/// region or credentials. On a machine that is no EC2 instance each probe
/// waits for a connection that never comes; on CI systems whose runners are
/// never EC2 instances with a role hoist does not ask at all, so a missing
/// region or credentials fail at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imds {
    /// Ask, with short timeouts: a self-hosted runner on EC2 (GitHub's,
    /// GitLab's, Buildkite's Elastic CI Stack, CircleCI's and Bitbucket's
    /// self-hosted runners, Jenkins agents) can have an instance role.
    Probe,
    Skip,
}

impl Imds {
    /// The decision for this CI system and environment. Conservative: skip
    /// only where the runner is known to be the CI vendor's own machine,
    /// which never carries an AWS instance role, or where the user turned
    /// IMDS off (AWS_EC2_METADATA_DISABLED, as the SDK itself honours).
    pub fn decide(ci: &crate::ci::Ci, env: &crate::env::Env) -> Imds {
        use crate::ci::Ci;
        if env.is_true("AWS_EC2_METADATA_DISABLED") {
            return Imds::Skip;
        }
        let vendor_hosted = match ci {
            // GitHub-hosted runners are Azure VMs; RUNNER_ENVIRONMENT says
            // which kind of runner this is (github-hosted or self-hosted).
            Ci::GitHub(_) => env.get("RUNNER_ENVIRONMENT") == Some("github-hosted"),
            // GitLab.com's hosted runners run on Google Cloud; they carry
            // `saas-…` tags (saas-linux-small-amd64, …) and are managed
            // from runners-manager.gitlab.com. Project and group runners on
            // gitlab.com can be EC2 instances, so gitlab.com alone is not
            // enough.
            Ci::GitLab(_) => {
                env.get("CI_SERVER_HOST") == Some("gitlab.com")
                    && (env
                        .get("CI_RUNNER_TAGS")
                        .is_some_and(|t| t.contains("saas-"))
                        || env
                            .get("CI_RUNNER_DESCRIPTION")
                            .is_some_and(|d| d.contains("runners-manager.gitlab.com")))
            }
            // Buildkite, CircleCI, Bitbucket and Jenkins all run jobs on
            // self-hosted agents/runners that can be EC2 instances with a
            // role, and no variable tells their hosted machines apart
            // reliably: probe.
            _ => false,
        };
        if vendor_hosted {
            Imds::Skip
        } else {
            Imds::Probe
        }
    }
}

/// The SDK's IMDS client with short timeouts: on EC2 the service answers
/// in milliseconds; elsewhere the address does not answer at all, and the
/// SDK's defaults (4 attempts) would keep a run without a region waiting.
fn imds_client(conf: &aws_config::provider_config::ProviderConfig) -> aws_config::imds::Client {
    aws_config::imds::Client::builder()
        .configure(conf)
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(1))
        .max_attempts(2)
        .build()
}

/// The SDK's default credential chain (environment, profile, web identity,
/// container, instance metadata), with the instance-metadata step only when
/// [`Imds::Probe`].
async fn credentials(
    imds: Imds,
    conf: &aws_config::provider_config::ProviderConfig,
) -> aws_credential_types::provider::SharedCredentialsProvider {
    use aws_credential_types::provider::SharedCredentialsProvider;
    match imds {
        Imds::Probe => SharedCredentialsProvider::new(
            aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                .configure(conf.clone())
                .imds_client(imds_client(conf))
                .build()
                .await,
        ),
        Imds::Skip => SharedCredentialsProvider::new(
            aws_config::meta::credentials::CredentialsProviderChain::first_try(
                "Environment",
                aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
            )
            .or_else(
                "Profile",
                aws_config::profile::ProfileFileCredentialsProvider::builder()
                    .configure(conf)
                    .build(),
            )
            .or_else(
                "WebIdentityToken",
                aws_config::web_identity_token::WebIdentityTokenCredentialsProvider::builder()
                    .configure(conf)
                    .build(),
            )
            .or_else(
                "EcsContainer",
                aws_config::ecs::EcsCredentialsProvider::builder()
                    .configure(conf)
                    .build(),
            ),
        ),
    }
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

/// What an AWS failure means for the user: the one classifier every stage
/// shares (table-tested below). The stage adds the hint that names its own
/// flags; the class — and so the exit code — is decided here alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The thing named does not exist (a function, a repository).
    NotFound,
    /// The identity may not do this (IAM).
    Denied,
    /// The credentials themselves were refused or have expired.
    Credentials,
    /// The request was refused as invalid.
    Invalid,
    /// Someone else changed it meanwhile (RevisionId, a concurrent update).
    Conflict,
    /// AWS kept saying "slow down" after the SDK's retries.
    Throttled,
    /// AWS could not be reached, or stopped answering.
    Unreachable,
    /// Anything else AWS failed with, after retries.
    Failed,
}

impl Kind {
    /// The kind of failure an AWS error code (and, without one, what
    /// happened on the wire) stands for.
    pub fn of(code: Option<&str>, unreachable: bool) -> Kind {
        match code {
            Some(
                "ResourceNotFoundException"
                | "RepositoryNotFoundException"
                | "ImageNotFoundException"
                | "ResourceNotFound"
                | "NoSuchEntity",
            ) => Kind::NotFound,
            Some(
                "AccessDeniedException"
                | "AccessDenied"
                | "UnauthorizedOperation"
                | "UnauthorizedException",
            ) => Kind::Denied,
            Some(
                "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "ExpiredTokenException"
                | "ExpiredToken"
                | "InvalidClientTokenId"
                | "SignatureDoesNotMatch"
                | "MissingAuthenticationToken",
            ) => Kind::Credentials,
            Some(
                "InvalidParameterValueException"
                | "InvalidParameterException"
                | "ValidationException"
                | "InvalidParameterValue"
                | "InvalidParameterCombination",
            ) => Kind::Invalid,
            Some("PreconditionFailedException" | "ResourceConflictException") => Kind::Conflict,
            Some(
                "ThrottlingException"
                | "Throttling"
                | "TooManyRequestsException"
                | "RequestLimitExceeded",
            ) => Kind::Throttled,
            _ if unreachable => Kind::Unreachable,
            _ => Kind::Failed,
        }
    }

    pub fn class(self) -> Class {
        match self {
            Kind::NotFound | Kind::Denied | Kind::Credentials | Kind::Invalid => Class::Usage,
            Kind::Conflict | Kind::Throttled | Kind::Unreachable | Kind::Failed => {
                Class::Infrastructure
            }
        }
    }

    /// The fix when the stage knows no better one.
    pub fn hint(self) -> Option<&'static str> {
        Some(match self {
            Kind::NotFound => "check the names given and --region",
            Kind::Denied => {
                "the AWS identity lacks a permission hoist needs here: see the README's IAM permissions"
            }
            Kind::Credentials => {
                "the AWS credentials were refused or have expired: check which credentials the job has (aws sts get-caller-identity), or use --role-arn so hoist gets and refreshes its own"
            }
            Kind::Invalid => return None,
            Kind::Conflict => {
                "someone else changed it while hoist was working (another deployment?); re-run when it is done"
            }
            Kind::Throttled => {
                "AWS throttled the calls even after retries; re-running later is safe"
            }
            Kind::Unreachable => {
                "the AWS API could not be reached: check the network, HTTPS_PROXY / NO_PROXY, AWS_CA_BUNDLE and the region; --http-timeout sets how long hoist waits on a silent connection"
            }
            Kind::Failed => "AWS kept failing after retries; re-running is safe",
        })
    }
}

/// An AWS call that failed: what hoist was doing, AWS's code and words (one
/// line, escaped), its kind, and the SDK's error kept as the source — so
/// the chain prints as `caused by:` lines, never as a `Debug` dump.
#[derive(Debug, thiserror::Error)]
#[error("{op} failed{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
pub struct AwsError {
    pub op: String,
    pub code: Option<String>,
    /// AWS's own message (`CODE: words`), when it sent one.
    pub message: Option<String>,
    pub kind: Kind,
    hint: Option<String>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl AwsError {
    pub fn new<E>(
        op: impl Into<String>,
        e: aws_smithy_runtime_api::client::result::SdkError<
            E,
            aws_smithy_runtime_api::client::orchestrator::HttpResponse,
        >,
    ) -> AwsError
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata
            + std::error::Error
            + Send
            + Sync
            + 'static,
    {
        use aws_smithy_runtime_api::client::result::SdkError;
        use aws_smithy_types::error::metadata::ProvideErrorMetadata;
        let code = e.code().map(str::to_string);
        let unreachable = matches!(e, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_));
        let message = match (&e, e.message()) {
            (SdkError::ServiceError(_), Some(m)) => Some(format!(
                "{}: {}",
                code.as_deref().unwrap_or("error"),
                crate::text::external(m, crate::text::SNIPPET)
            )),
            (SdkError::ServiceError(s), None) => Some(format!(
                "{} (HTTP {})",
                code.as_deref().unwrap_or("an error without a code"),
                s.raw().status().as_u16()
            )),
            _ => None,
        };
        // No credentials at all: the SDK fails before sending (construction)
        // or in its credentials step (a dispatch failure that is not the
        // network's).
        let no_credentials = match &e {
            SdkError::ConstructionFailure(_) => true,
            SdkError::DispatchFailure(d) => d.is_user() || d.is_other(),
            _ => false,
        };
        let kind = if no_credentials {
            Kind::Credentials
        } else {
            Kind::of(code.as_deref(), unreachable)
        };
        // The service error's own Display says only "service error": its
        // code and message are above. Other kinds keep their chain.
        let source: Option<Box<dyn std::error::Error + Send + Sync>> = match &e {
            SdkError::ServiceError(_) => None,
            // "dispatch failure: other: the credential provider was not
            // enabled: no credentials found in chain. Attempted:\n  …" says
            // one thing: which sources were looked at.
            _ if no_credentials => Some(Box::new(Chain {
                text: no_credentials_cause(&e),
                next: None,
            })),
            other => Some(Box::new(Chain::of(other))),
        };
        AwsError {
            op: op.into(),
            kind,
            code,
            message,
            hint: no_credentials.then(|| "no usable AWS credentials were found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or a web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN), or pass --role-arn; and check AWS_ENDPOINT_URL".to_string()),
            source,
        }
    }

    /// The stage's own hint for this failure (it names the stage's flags).
    pub fn with_hint(mut self, hint: impl Into<String>) -> AwsError {
        self.hint = Some(hint.into());
        self
    }

    pub fn class(&self) -> Class {
        self.kind.class()
    }

    pub fn hint(&self) -> Option<String> {
        self.hint
            .clone()
            .or_else(|| self.kind.hint().map(str::to_string))
    }
}

impl crate::error::Diagnose for AwsError {
    fn class(&self) -> Class {
        self.kind.class()
    }
    fn hint(&self) -> Option<String> {
        AwsError::hint(self)
    }
}

/// Why the SDK found no credentials, in one line: the sources its chain
/// tried (its own text lists them one per line, with a reason each), or the
/// deepest cause's first line.
fn no_credentials_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut deepest = e;
    while let Some(next) = deepest.source() {
        deepest = next;
    }
    let text = deepest.to_string();
    match text.split_once("Attempted:") {
        Some((_, tried)) => {
            let sources: Vec<&str> = tried
                .lines()
                .filter_map(|l| l.trim().split_once(':').map(|(name, _)| name.trim()))
                .filter(|name| !name.is_empty() && !name.contains(' '))
                .collect();
            crate::text::external(
                &format!("no credentials found (looked in: {})", sources.join(", ")),
                200,
            )
        }
        None => crate::text::external(text.lines().next().unwrap_or_default(), 200),
    }
}

/// An error and its causes in one line of plain `Display` text (escaped),
/// never the SDK's `Debug` dump.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![];
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    crate::text::external(&parts.join(": "), crate::text::SNIPPET)
}

/// An error's chain of causes as plain `Display` text, one link each: the
/// SDK's own Display of its errors is short ("dispatch failure"), and its
/// `DisplayErrorContext` ends in a `Debug` dump of the raw response.
#[derive(Debug)]
struct Chain {
    text: String,
    next: Option<Box<Chain>>,
}

impl Chain {
    fn of(e: &(dyn std::error::Error + 'static)) -> Chain {
        Chain {
            // "caused by: " and this fit a 300-character line.
            text: crate::text::external(&e.to_string(), 280),
            next: e.source().map(|s| Box::new(Chain::of(s))),
        }
    }
}

impl std::fmt::Display for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Chain {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.next
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod classify_tests {
    use super::*;

    #[test]
    fn imds_only_where_an_instance_role_is_plausible() {
        use crate::ci::Ci;
        use crate::env::Env;
        let table: &[(&[(&str, &str)], Imds)] = &[
            (&[], Imds::Probe),
            (&[("AWS_EC2_METADATA_DISABLED", "true")], Imds::Skip),
            (
                &[
                    ("GITHUB_ACTIONS", "true"),
                    ("RUNNER_ENVIRONMENT", "github-hosted"),
                ],
                Imds::Skip,
            ),
            (
                &[
                    ("GITHUB_ACTIONS", "true"),
                    ("RUNNER_ENVIRONMENT", "self-hosted"),
                ],
                Imds::Probe,
            ),
            (&[("GITHUB_ACTIONS", "true")], Imds::Probe),
            (
                &[
                    ("GITLAB_CI", "true"),
                    ("CI_SERVER_HOST", "gitlab.com"),
                    ("CI_RUNNER_TAGS", "[\"saas-linux-small-amd64\"]"),
                ],
                Imds::Skip,
            ),
            (
                &[
                    ("GITLAB_CI", "true"),
                    ("CI_SERVER_HOST", "gitlab.com"),
                    (
                        "CI_RUNNER_DESCRIPTION",
                        "3-blue.saas-linux-small-amd64.runners-manager.gitlab.com/default",
                    ),
                ],
                Imds::Skip,
            ),
            (
                &[
                    ("GITLAB_CI", "true"),
                    ("CI_SERVER_HOST", "gitlab.com"),
                    ("CI_RUNNER_TAGS", "[\"aws\"]"),
                ],
                Imds::Probe,
            ),
            (
                &[
                    ("GITLAB_CI", "true"),
                    ("CI_SERVER_HOST", "gitlab.example.com"),
                    ("CI_RUNNER_TAGS", "[\"saas-linux\"]"),
                ],
                Imds::Probe,
            ),
            (&[("BUILDKITE", "true")], Imds::Probe),
            (&[("CIRCLECI", "true")], Imds::Probe),
            (&[("BITBUCKET_BUILD_NUMBER", "7")], Imds::Probe),
            (&[("JENKINS_URL", "https://ci/")], Imds::Probe),
            (
                &[("BUILDKITE", "true"), ("AWS_EC2_METADATA_DISABLED", "TRUE")],
                Imds::Skip,
            ),
        ];
        for (vars, want) in table {
            let env = Env::from_pairs(vars.iter().copied());
            assert_eq!(Imds::decide(&Ci::detect(&env), &env), *want, "{vars:?}");
        }
    }

    #[test]
    fn no_credentials_in_one_line() {
        #[derive(Debug)]
        struct E(&'static str);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {}
        let chain = E(
            "no credentials found in chain. Attempted:\n  Environment: the credential provider was not enabled: environment variable not set\n  Profile: the credential provider was not enabled\n  EcsContainer: the credential provider was not enabled",
        );
        assert_eq!(
            no_credentials_cause(&chain),
            "no credentials found (looked in: Environment, Profile, EcsContainer)"
        );
        assert_eq!(no_credentials_cause(&E("expired\nmore")), "expired");
    }

    #[test]
    fn one_table_for_every_stage() {
        let table = [
            (Some("ResourceNotFoundException"), false, Kind::NotFound, 2),
            (
                Some("RepositoryNotFoundException"),
                false,
                Kind::NotFound,
                2,
            ),
            (Some("AccessDeniedException"), false, Kind::Denied, 2),
            (Some("AccessDenied"), false, Kind::Denied, 2),
            (Some("ExpiredTokenException"), false, Kind::Credentials, 2),
            (
                Some("UnrecognizedClientException"),
                false,
                Kind::Credentials,
                2,
            ),
            (
                Some("InvalidParameterValueException"),
                false,
                Kind::Invalid,
                2,
            ),
            (
                Some("PreconditionFailedException"),
                false,
                Kind::Conflict,
                3,
            ),
            (Some("TooManyRequestsException"), false, Kind::Throttled, 3),
            (Some("ThrottlingException"), false, Kind::Throttled, 3),
            (Some("ServiceUnavailableException"), false, Kind::Failed, 3),
            (None, true, Kind::Unreachable, 3),
            (None, false, Kind::Failed, 3),
        ];
        for (code, unreachable, kind, exit) in table {
            let k = Kind::of(code, unreachable);
            assert_eq!(k, kind, "{code:?}");
            assert_eq!(k.class().exit_code(), exit, "{code:?}");
        }
    }
}
