//! GitHub Actions: outputs in `$GITHUB_OUTPUT`, the step summary in
//! `$GITHUB_STEP_SUMMARY`, masking with `::add-mask::`.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Outputs, append};
use crate::env::Env;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GitHub {
    pub github_output: Option<PathBuf>,
    pub github_step_summary: Option<PathBuf>,
    pub github_env: Option<PathBuf>,
    pub github_server_url: Option<String>,
    pub github_repository: Option<String>,
    pub github_run_id: Option<String>,
    pub github_run_attempt: Option<String>,
    pub github_sha: Option<String>,
}

impl GitHub {
    pub fn from_env(env: &Env) -> Self {
        env.typed().unwrap_or_default()
    }

    pub fn run_url(&self) -> Option<String> {
        Some(format!(
            "{}/{}/actions/runs/{}",
            self.github_server_url
                .as_deref()
                .unwrap_or("https://github.com"),
            self.github_repository.as_ref()?,
            self.github_run_id.as_ref()?
        ))
    }

    pub(super) fn write_outputs(&self, outputs: &Outputs) -> std::io::Result<()> {
        let Some(path) = &self.github_output else {
            return Ok(());
        };
        // Values are single-line (digests, URIs, counts); a newline would end
        // the `name=value` form, so refuse to write one rather than corrupt it.
        let text: String = outputs
            .values
            .iter()
            .filter(|(_, v)| !v.contains('\n'))
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        append(path, &text)
    }

    pub(super) fn write_summary(&self, markdown: &str) -> std::io::Result<()> {
        match &self.github_step_summary {
            Some(path) if !markdown.is_empty() => append(path, &format!("{markdown}\n")),
            _ => Ok(()),
        }
    }
}
