//! How a deploy fails: each error names the function, version or alarm it is
//! about, its class (exit code) and, when the fix is known, a hint.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::preflight::Problem;
use crate::error::{Class, Diagnose};
use crate::registry::RegistryError;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Aws(crate::aws::AwsError),
    #[error("the image cannot be deployed to function {function}:{}", problems.iter().map(|p| format!("\n  - {}", p.message)).collect::<String>())]
    Preflight {
        function: String,
        problems: Vec<Problem>,
    },
    #[error("{0}")]
    Image(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("Lambda could not update function {function}: {code}: {reason}")]
    UpdateFailed {
        function: String,
        code: String,
        reason: String,
    },
    #[error("version {version} of function {function} failed: {code}: {reason}")]
    VersionFailed {
        function: String,
        version: String,
        code: String,
        reason: String,
    },
    /// A function or version in a state a deploy cannot use.
    #[error("{what} is {state}{}", if reason.is_empty() { String::new() } else { format!(": {reason}") })]
    NotReady {
        what: String,
        state: String,
        reason: String,
        fix: String,
    },
    #[error(
        "Lambda could not allocate the provisioned concurrency of alias {alias} to the new version: {reason}"
    )]
    Provisioned { alias: String, reason: String },
    #[error("gave up after {secs} s waiting for {what}")]
    Timeout { what: String, secs: u64 },
    #[error(
        "function {function} changed while hoist was deploying ({what}): someone else is deploying or configuring it"
    )]
    Changed { function: String, what: String },
    #[error("{message}")]
    Refused {
        message: String,
        hint: String,
        class: Class,
    },
    #[error("the smoke test of version {version} failed: {why}\nresponse: {response}")]
    Smoke {
        version: String,
        why: String,
        response: String,
    },
    /// UpdateAlias refused the RevisionId hoist read: someone else moved the
    /// alias since. The deploy reads it again and decides again; this
    /// reaches the user only when that keeps happening.
    #[error("alias {alias} was moved by someone else while hoist was deploying")]
    Moved { alias: String },
    /// A shift stopped (an alarm, an error, a signal), and putting the alias
    /// back failed too: it may be left split.
    #[error(
        "{why}; then restoring alias {alias} to version {version} failed, so the alias may be left split ({routing})"
    )]
    RestoreFailed {
        /// `FUNCTION:ALIAS`.
        alias: String,
        /// The version the alias should be back on.
        version: String,
        /// What stopped the shift.
        why: String,
        /// The routing as hoist last set it.
        routing: String,
        #[source]
        restore: Box<DeployError>,
    },
    /// hoist could not watch for SIGINT/SIGTERM, which the shift needs to
    /// restore the routing when the job is cancelled.
    #[error("cannot watch for {signal}, so a cancelled job could not restore the alias")]
    Signal {
        signal: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// An answer from AWS that lacks what the API promises.
    #[error("{0}")]
    Answer(String),
}

impl DeployError {
    pub fn refused(message: impl Into<String>, hint: impl Into<String>) -> DeployError {
        DeployError::Refused {
            message: message.into(),
            hint: hint.into(),
            class: Class::Usage,
        }
    }

    /// An AWS SDK error, classified by the one classifier (aws.rs), with
    /// the deploy's own hints where they name its flags.
    pub fn aws<E>(
        op: impl Into<String>,
        e: SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
    ) -> DeployError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        use crate::aws::{AwsError, Kind};
        let e = AwsError::new(op, e);
        let hint = match e.kind {
            Kind::NotFound => Some(
                "check --function and --region (and, with --role-arn, that the role is in the function's account)",
            ),
            Kind::Denied => Some(
                "the AWS identity lacks a permission hoist deploy needs (see the README's IAM permissions for deploy)",
            ),
            Kind::Conflict => Some(
                "the function or alias changed between hoist reading it and writing it: another deployment ran at the same time; re-run when it is done",
            ),
            _ => None,
        };
        DeployError::Aws(match hint {
            Some(h) => e.with_hint(h),
            None => e,
        })
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            DeployError::Aws(e) => e.code.as_deref(),
            _ => None,
        }
    }

    /// AWS's message, when the error is AWS's.
    pub fn aws_message(&self) -> Option<&str> {
        match self {
            DeployError::Aws(e) => e.message.as_deref(),
            _ => None,
        }
    }
}

impl Diagnose for DeployError {
    fn class(&self) -> Class {
        match self {
            DeployError::Aws(e) => e.class(),
            DeployError::Refused { class, .. } => *class,
            DeployError::Preflight { .. } | DeployError::Image(_) => Class::Usage,
            DeployError::Registry(e) => e.class(),
            // Lambda's verdict on the image, the role, a key…: most are the
            // user's to fix (the table in states.rs).
            DeployError::UpdateFailed { code, .. } | DeployError::VersionFailed { code, .. } => {
                super::states::reason(code).class
            }
            DeployError::NotReady { .. } | DeployError::Provisioned { .. } => Class::Usage,
            DeployError::Timeout { .. }
            | DeployError::Changed { .. }
            | DeployError::Moved { .. }
            | DeployError::Signal { .. }
            | DeployError::Answer(_) => Class::Infrastructure,
            // Whatever stopped the shift, the alias may now be split: the
            // restore's failure decides what the user must do.
            DeployError::RestoreFailed { restore, .. } => restore.class(),
            DeployError::Smoke { .. } => Class::Policy,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            DeployError::Aws(e) => e.hint(),
            DeployError::Refused { hint, .. } => Some(hint.clone()),
            DeployError::Preflight { problems, .. } => Some(
                problems.iter().map(|p| p.fix.as_str()).collect::<Vec<_>>().join("; "),
            ),
            DeployError::Registry(e) => e.hint(),
            DeployError::UpdateFailed { code, .. } => Some(format!(
                "{}; the alias was not moved",
                super::states::reason(code).fix
            )),
            DeployError::VersionFailed { code, .. } => Some(format!(
                "{}; no traffic was moved to the version",
                super::states::reason(code).fix
            )),
            DeployError::NotReady { fix, .. } => Some(fix.clone()),
            DeployError::Provisioned { .. } => Some("the alias went back to the previous version; make room for the allocation (raise the account's concurrency quota or lower the alias's provisioned concurrency — aws lambda get-provisioned-concurrency-config shows Lambda's reason), then deploy again".into()),
            DeployError::Timeout { .. } => Some("raise --timeout, or look at the function in the console; the alias was not moved further".into()),
            DeployError::Changed { .. } => Some("wait for the other deployment to finish, then re-run hoist".into()),
            DeployError::Smoke { .. } => Some("no traffic was moved; fix the function (the response is above) and deploy again".into()),
            DeployError::Moved { .. } => Some("another deployment moved the alias at the same time; re-run when it is done".into()),
            DeployError::RestoreFailed { alias, version, .. } => {
                // An alias name has no ':'; a function ARN has several.
                let (function, alias) = alias.rsplit_once(':').unwrap_or((alias, ""));
                Some(format!(
                    "put the alias back yourself: `hoist rollback --function {function} --alias {alias}` clears the split (version {version} keeps all the traffic); re-running this same deploy takes the shift up where it stopped instead (and sends the alias back if an alarm still fires)"
                ))
            }
            DeployError::Signal { .. } => Some("the process may not install signal handlers here (a restricted sandbox?); nothing was moved yet".into()),
            DeployError::Image(_) | DeployError::Answer(_) => None,
        }
    }
}
