//! A run's result, in every form it is shown: stdout (plain or JSON), the CI
//! system's outputs and step summary, and the log. One value, one code path
//! for every stage.

use serde::Serialize;

use crate::auth::sts::Assumed;
use crate::ci::Ci;
use crate::ci::Outputs;
use crate::cli::OutputFormat;
use crate::push;

#[derive(Debug, Serialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Outcome {
    Auth(AuthReport),
    Push(push::Report),
}

/// Who `hoist auth` became. Never the credentials themselves.
#[derive(Debug, Serialize)]
pub struct AuthReport {
    pub ci: &'static str,
    pub authenticated_arn: String,
    pub aws_account_id: Option<String>,
    pub expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exported: Option<Export>,
}

/// Where `--export` put the credentials.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case", tag = "to", content = "path")]
pub enum Export {
    GitHubEnv,
    Dotenv(String),
    /// `export` lines, printed on stdout (the only output that carries them).
    #[serde(skip)]
    Shell(String),
}

impl AuthReport {
    pub fn new(ci: &Ci, a: &Assumed, exported: Option<Export>) -> AuthReport {
        AuthReport {
            ci: ci.name(),
            authenticated_arn: a.arn.clone(),
            aws_account_id: a.account().map(str::to_string),
            expires_at: aws_smithy_types::DateTime::from(a.expires)
                .fmt(aws_smithy_types::date_time::Format::DateTime)
                .unwrap_or_default(),
            exported,
        }
    }
}

impl Outcome {
    pub fn exit_code(&self) -> u8 {
        0
    }

    /// What goes to stdout: the digest, so `$(hoist push …)` works; or the
    /// whole result as JSON.
    pub fn stdout(&self, format: OutputFormat) -> String {
        match format {
            OutputFormat::Json => {
                serde_json::to_string_pretty(self).expect("the report serializes")
            }
            OutputFormat::Text => match self {
                Outcome::Auth(AuthReport {
                    exported: Some(Export::Shell(lines)),
                    ..
                }) => lines.clone(),
                Outcome::Auth(r) => r.authenticated_arn.clone(),
                Outcome::Push(r) => r.digest.to_string(),
            },
        }
    }

    /// The line for the log (stderr).
    pub fn log(&self) -> String {
        match self {
            Outcome::Auth(r) => {
                let to = match &r.exported {
                    Some(Export::GitHubEnv) => "; credentials exported to $GITHUB_ENV",
                    Some(Export::Dotenv(_)) => "; credentials written to the dotenv file",
                    Some(Export::Shell(_)) => "; credentials printed as export lines",
                    None => "",
                };
                format!(
                    "authenticated as {} until {}{to}",
                    r.authenticated_arn, r.expires_at
                )
            }
            Outcome::Push(r) => r.summary_line(),
        }
    }

    pub fn outputs(&self) -> Outputs {
        let mut o = Outputs::default();
        match self {
            Outcome::Auth(r) => {
                o.set(
                    "aws-account-id",
                    r.aws_account_id.clone().unwrap_or_default(),
                );
                o.set("authenticated-arn", r.authenticated_arn.clone());
                o.summary = format!(
                    "### hoist auth\n\nauthenticated as `{}` until {}\n",
                    r.authenticated_arn, r.expires_at
                );
            }
            Outcome::Push(r) => {
                o.set("digest", r.digest.to_string());
                o.set("image-uri", r.image_uri.clone());
                o.set("repository-uri", format!("{}/{}", r.registry, r.repository));
                o.summary = r.markdown();
            }
        }
        o
    }
}
