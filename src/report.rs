//! A run's result, in every form it is shown: stdout (plain or JSON), the CI
//! system's outputs and step summary, and the log. One value, one code path
//! for every stage.

use serde::Serialize;

use crate::auth::sts::Assumed;
use crate::ci::Ci;
use crate::ci::Outputs;
use crate::error::{Class, Error, Internal};
use crate::output::OutputFormat;
use crate::push;

/// The version of every document's shape (see [`crate::schema`] for when
/// it changes).
pub const VERSION: u32 = 1;

/// A document as printed: `schema_version` first, then the rest.
pub fn versioned(doc: serde_json::Value) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    out.insert("schema_version".into(), VERSION.into());
    if let serde_json::Value::Object(fields) = doc {
        for (k, v) in fields {
            if k != "schema_version" {
                out.insert(k, v);
            }
        }
    }
    serde_json::Value::Object(out)
}

#[derive(Debug, Serialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
#[expect(
    clippy::large_enum_variant,
    reason = "one per run, moved once from the stage to the output"
)]
pub enum Outcome {
    Auth(AuthReport),
    Doctor(DoctorReport),
    Push(push::Report),
    Gate(crate::scan::Report),
    Ship(crate::ship::Report),
    Deploy(crate::deploy::Report),
    Rollback(crate::deploy::RollbackReport),
}

/// Who `hoist auth` became. Never the credentials themselves.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct AuthReport {
    pub ci: &'static str,
    pub authenticated_arn: String,
    pub aws_account_id: Option<String>,
    pub expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exported: Option<Export>,
}

/// What `hoist doctor` found.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct DoctorReport {
    pub ci: &'static str,
    pub token_source: String,
    pub audience: String,
    pub claims: Vec<(String, String)>,
    pub expires_in_secs: Option<i64>,
    /// What is wrong with the token itself (expired, another audience).
    pub problems: Vec<String>,
    pub trust_policy: serde_json::Value,
    /// Why the proposed policy matches `sub` with a pattern (the per-run
    /// part of this CI system's subject), when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_pattern: Option<String>,
    /// With --trust-policy: whether it accepts this token, and if not why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_accepts: Option<bool>,
    pub policy_findings: Vec<String>,
}

/// Where `--export` put the credentials.
#[derive(Debug)]
pub enum Export {
    GitHubEnv,
    Dotenv(String),
    /// `export` lines, printed on stdout (the only output that carries them);
    /// with `--output json`, the same credentials in the JSON document.
    Shell {
        lines: String,
        credentials: serde_json::Value,
    },
}

impl Serialize for Export {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        match self {
            Export::GitHubEnv => m.serialize_entry("to", "github-env")?,
            Export::Dotenv(path) => {
                m.serialize_entry("to", "dotenv")?;
                m.serialize_entry("path", path)?;
            }
            Export::Shell { credentials, .. } => {
                m.serialize_entry("to", "stdout")?;
                m.serialize_entry("credentials", credentials)?;
            }
        }
        m.end()
    }
}

/// The three shapes [`Export`] serializes to.
impl schemars::JsonSchema for Export {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Export".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "oneOf": [
                {
                    "type": "object",
                    "properties": { "to": { "const": "github-env" } },
                    "required": ["to"],
                },
                {
                    "type": "object",
                    "properties": { "to": { "const": "dotenv" }, "path": { "type": "string" } },
                    "required": ["to", "path"],
                },
                {
                    "type": "object",
                    "description": "The credentials, in the shape of the AWS CLI's credential_process output.",
                    "properties": {
                        "to": { "const": "stdout" },
                        "credentials": {
                            "type": "object",
                            "properties": {
                                "Version": { "const": 1 },
                                "AccessKeyId": { "type": "string" },
                                "SecretAccessKey": { "type": "string" },
                                "SessionToken": { "type": "string" },
                                "Expiration": { "type": "string" },
                            },
                            "required": ["Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"],
                        },
                    },
                    "required": ["to", "credentials"],
                },
            ],
        })
    }
}

/// What any command prints on stdout with `--output json` when it fails.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ErrorDocument {
    /// See [`crate::schema`].
    pub schema_version: u32,
    /// What went wrong (the `error:` line).
    pub error: String,
    /// The fix, when hoist knows one (the `hint:` line).
    pub hint: Option<String>,
    /// The exit code: 2 usage, configuration or input; 3 infrastructure; 70
    /// a bug in hoist.
    pub exit_code: u8,
}

impl ErrorDocument {
    pub fn new(e: &Error) -> ErrorDocument {
        ErrorDocument {
            schema_version: VERSION,
            // Scrubbed as the same lines on stderr are — without waiting
            // for ever: the panic hook makes one too.
            error: crate::secret::try_scrub(&e.to_string())
                .unwrap_or_else(|| "(not shown: it could not be checked for secrets)".into()),
            hint: e.hint().and_then(|h| crate::secret::try_scrub(&h)),
            exit_code: e.class().exit_code(),
        }
    }
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
    /// How the run failed, if it did: its exit code (none: 0).
    pub fn class(&self) -> Option<Class> {
        match self {
            // A diagnosis that found something wrong is a configuration error.
            Outcome::Doctor(d) if !d.problems.is_empty() || d.policy_accepts == Some(false) => {
                Some(Class::Usage)
            }
            Outcome::Gate(r) => r.class(),
            Outcome::Ship(r) => r.class(),
            Outcome::Deploy(r) => r.class(),
            _ => None,
        }
    }

    /// What goes to stdout: the digest, so `$(hoist push …)` works; or the
    /// whole result as JSON. A JSON document can quote outside text (a
    /// token's claims, a finding's title): see [`crate::output::json_inert`].
    pub fn stdout(&self, format: OutputFormat) -> Result<String, Error> {
        let text = self.stdout_text(format)?;
        Ok(match (format, self) {
            (OutputFormat::Json, _) | (_, Outcome::Doctor(_)) => {
                crate::output::json_inert(&text).into_owned()
            }
            _ => text,
        })
    }

    /// A report that cannot be written as JSON is a bug in hoist (its types
    /// serialize to JSON by construction).
    fn stdout_text(&self, format: OutputFormat) -> Result<String, Error> {
        Ok(match format {
            // Every document starts with its schema_version (src/schema.rs).
            OutputFormat::Json => serde_json::to_value(self)
                .and_then(|v| serde_json::to_string_pretty(&versioned(v)))
                .map_err(|e| Internal {
                    what: format!("the report could not be written as JSON: {e}"),
                    panicked: false,
                })?,
            OutputFormat::Text => match self {
                Outcome::Auth(AuthReport {
                    exported: Some(Export::Shell { lines, .. }),
                    ..
                }) => lines.clone(),
                Outcome::Auth(r) => r.authenticated_arn.clone(),
                Outcome::Doctor(d) => {
                    serde_json::to_string_pretty(&d.trust_policy).unwrap_or_default()
                }
                Outcome::Push(r) => r.digest.to_string(),
                Outcome::Gate(r) => r.verdict.name().to_string(),
                Outcome::Ship(r) => r.push.digest.to_string(),
                // The version now serving, so `$(hoist deploy …)` is useful.
                Outcome::Deploy(r) => r.version.clone().unwrap_or_default(),
                Outcome::Rollback(r) => r.to.clone(),
            },
        })
    }

    /// The line for the log (stderr).
    pub fn log(&self) -> String {
        match self {
            Outcome::Doctor(d) => {
                let mut out = format!(
                    "CI system: {}\ntoken from: {}\nexpected audience: {}\nclaims:",
                    d.ci, d.token_source, d.audience
                );
                for (k, v) in &d.claims {
                    out.push_str(&format!("\n    {k}: {v}"));
                }
                if let Some(s) = d.expires_in_secs {
                    out.push_str(&format!("\ntoken expires in {s} s"));
                }
                for p in &d.problems {
                    out.push_str(&format!("\nproblem: {p}"));
                }
                match d.policy_accepts {
                    Some(true) => out.push_str(&format!(
                        "\nthe trust policy accepts this token ({})",
                        d.policy_findings.join("; ")
                    )),
                    Some(false) => {
                        out.push_str("\nthe trust policy does NOT accept this token:");
                        for f in &d.policy_findings {
                            out.push_str(&format!("\n    {f}"));
                        }
                    }
                    None => {}
                }
                match &d.subject_pattern {
                    Some(why) => out.push_str(&format!(
                        "\na trust policy that accepts this job, run after run, is on stdout ({why})"
                    )),
                    None => out.push_str("\na trust policy that accepts exactly this job is on stdout"),
                }
                out
            }
            Outcome::Auth(r) => {
                let to = match &r.exported {
                    Some(Export::GitHubEnv) => "; credentials exported to $GITHUB_ENV",
                    Some(Export::Dotenv(_)) => "; credentials written to the dotenv file",
                    Some(Export::Shell { .. }) => "; credentials printed as export lines",
                    None => "",
                };
                format!(
                    "authenticated as {} until {}{to}",
                    r.authenticated_arn, r.expires_at
                )
            }
            Outcome::Push(r) => r.summary_line(),
            Outcome::Gate(r) => r.log(),
            Outcome::Ship(r) => r.summary_line(),
            Outcome::Deploy(r) => r.summary_line(),
            Outcome::Rollback(r) => r.summary_line(),
        }
    }

    pub fn outputs(&self) -> Outputs {
        let mut o = Outputs::default();
        match self {
            Outcome::Doctor(d) => {
                let accepts = d.policy_accepts.map(|b| b.to_string()).unwrap_or_default();
                o.set("trust-policy-accepts", accepts);
            }
            Outcome::Auth(r) => {
                identity_outputs(&mut o, r);
                o.summary = format!(
                    "### hoist auth\n\nauthenticated as `{}` until {}\n",
                    r.authenticated_arn, r.expires_at
                );
            }
            Outcome::Push(r) => r.outputs_into(&mut o),
            Outcome::Gate(r) => r.outputs_into(&mut o),
            Outcome::Ship(r) => return r.outputs(),
            Outcome::Deploy(r) => r.outputs_into(&mut o),
            Outcome::Rollback(r) => {
                o.set("version", r.to.clone());
                o.set("previous-version", r.from.clone());
                o.set("alias-arn", r.alias_arn.clone());
                o.set("routing", r.routing.clone());
                o.summary = r.markdown();
            }
        }
        o
    }
}

/// `aws-account-id`, `authenticated-arn`: who the run acted as.
pub fn identity_outputs(o: &mut Outputs, r: &AuthReport) {
    o.set(
        "aws-account-id",
        r.aws_account_id.clone().unwrap_or_default(),
    );
    o.set("authenticated-arn", r.authenticated_arn.clone());
}
