//! Bitbucket Pipelines: no native outputs; `--digest-file` and `--dotenv` serve later steps.

use serde::Deserialize;

use crate::env::Env;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Bitbucket {
    pub bitbucket_build_number: Option<String>,
    pub bitbucket_commit: Option<String>,
    pub bitbucket_git_http_origin: Option<String>,
}

impl Bitbucket {
    pub fn from_env(env: &Env) -> Self {
        env.typed().unwrap_or_default()
    }
}
