//! CircleCI: no native outputs; `--digest-file` and `--dotenv` serve later steps.

use serde::Deserialize;

use crate::env::Env;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CircleCi {
    pub circle_build_url: Option<String>,
    pub circle_build_num: Option<String>,
    pub circle_sha1: Option<String>,
    pub circle_workflow_id: Option<String>,
}

impl CircleCi {
    pub fn from_env(env: &Env) -> Self {
        env.typed().unwrap_or_default()
    }
}
