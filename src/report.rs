//! A run's result, in every form it is shown: stdout (plain or JSON), the CI
//! system's outputs and step summary, and the log. One value, one code path
//! for every stage.

use serde::Serialize;

use crate::ci::Outputs;
use crate::cli::OutputFormat;
use crate::push;

#[derive(Debug, Serialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Outcome {
    Push(push::Report),
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
                Outcome::Push(r) => r.digest.to_string(),
            },
        }
    }

    /// The line for the log (stderr).
    pub fn log(&self) -> String {
        match self {
            Outcome::Push(r) => r.summary_line(),
        }
    }

    pub fn outputs(&self) -> Outputs {
        let mut o = Outputs::default();
        match self {
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
