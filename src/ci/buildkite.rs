//! Buildkite: outputs as build meta-data (`buildkite-agent meta-data set`).

use std::process::{Command, Stdio};

use serde::Deserialize;

use super::Outputs;
use crate::env::Env;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Buildkite {
    pub buildkite_build_url: Option<String>,
    pub buildkite_job_id: Option<String>,
    pub buildkite_commit: Option<String>,
}

impl Buildkite {
    pub fn from_env(env: &Env) -> Self {
        env.typed().unwrap_or_default()
    }

    /// `hoist-digest`, `hoist-image-uri`, … so later steps can
    /// `buildkite-agent meta-data get hoist-digest`.
    pub(super) fn set_meta_data(&self, outputs: &Outputs) -> std::io::Result<()> {
        for (k, v) in &outputs.values {
            let status = Command::new("buildkite-agent")
                .args(["meta-data", "set", &format!("hoist-{k}"), v])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status()?;
            if !status.success() {
                return Err(std::io::Error::other(format!(
                    "buildkite-agent meta-data set exited with {status}"
                )));
            }
        }
        Ok(())
    }
}
