//! GitLab CI: outputs as a dotenv report (`artifacts: reports: dotenv`).

use std::path::PathBuf;

use serde::Deserialize;

use crate::env::Env;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GitLab {
    pub ci_project_dir: Option<PathBuf>,
    pub ci_pipeline_url: Option<String>,
    pub ci_job_url: Option<String>,
    pub ci_job_id: Option<String>,
    pub ci_commit_sha: Option<String>,
}

impl GitLab {
    pub fn from_env(env: &Env) -> Self {
        env.typed().unwrap_or_default()
    }

    /// `hoist.env` in the project directory: the file the GitLab template
    /// lists under `artifacts: reports: dotenv`.
    pub(super) fn default_dotenv(&self) -> PathBuf {
        self.ci_project_dir
            .clone()
            .unwrap_or_default()
            .join("hoist.env")
    }
}
