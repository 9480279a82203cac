//! Jenkins: no native outputs; `--digest-file` and `--dotenv` serve later steps.

use serde::Deserialize;

use crate::env::Env;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Jenkins {
    pub jenkins_url: Option<String>,
    pub build_url: Option<String>,
    pub build_tag: Option<String>,
    pub git_commit: Option<String>,
}

impl Jenkins {
    pub fn from_env(env: &Env) -> Self {
        env.typed().unwrap_or_default()
    }
}
