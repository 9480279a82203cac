//! Where a job's OIDC token comes from, per CI system, and how to get a fresh
//! one when the first has expired (long jobs re-assume the role).

use std::path::PathBuf;
use std::process::Stdio;

use super::Ci;
use crate::env::Env;
use crate::secret::Secret;

/// The GitLab variable hoist reads by default; the GitLab template sets it
/// with `id_tokens: HOIST_ID_TOKEN: aud: sts.amazonaws.com`.
pub const GITLAB_TOKEN_VAR: &str = "HOIST_ID_TOKEN";

/// Why there is no OIDC token to exchange.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no OIDC token: {why}")]
    NoToken { why: String, hint: String },
    #[error("could not get an OIDC token from {from}: {reason}")]
    Fetch {
        from: String,
        reason: String,
        /// Asking again may work (the issuer failed, not the set-up).
        transient: bool,
    },
}

impl crate::error::Diagnose for TokenError {
    fn class(&self) -> crate::error::Class {
        match self {
            TokenError::Fetch {
                transient: true, ..
            } => crate::error::Class::Infrastructure,
            _ => crate::error::Class::Usage,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            TokenError::NoToken { hint, .. } => hint.clone(),
            TokenError::Fetch {
                transient: true, ..
            } => "a transient failure at the identity provider; re-running the job is safe".into(),
            TokenError::Fetch { .. } => {
                "check the CI system's OIDC set-up for this job (see the README's section for it)"
                    .into()
            }
        })
    }
}

#[derive(Debug, Clone)]
pub enum TokenSource {
    /// A file, read again for every token (AWS_WEB_IDENTITY_TOKEN_FILE,
    /// Jenkins's oidc-provider credential bound as a file, --id-token-file).
    File(PathBuf),
    /// A variable: fixed for the job (GitLab id_tokens, CircleCI, Bitbucket,
    /// --id-token-env).
    Var { name: String, value: Secret },
    /// GitHub's token endpoint, asked anew each time.
    GitHub { url: String, bearer: Secret },
    /// `buildkite-agent oidc request-token`, run anew each time.
    Buildkite { lifetime_secs: u32 },
}

#[derive(Debug, Clone, Default)]
pub struct TokenOptions {
    pub file: Option<PathBuf>,
    pub var: Option<String>,
}

impl Ci {
    /// This job's token source. `--id-token-file` and `--id-token-env` win
    /// over everything; then each system's own way.
    pub fn token_source(&self, env: &Env, opts: &TokenOptions) -> Result<TokenSource, TokenError> {
        if let Some(f) = &opts.file {
            return Ok(TokenSource::File(f.clone()));
        }
        if let Some(name) = &opts.var {
            return var(env, name).ok_or_else(|| TokenError::NoToken {
                why: format!("--id-token-env names {name}, which is not set"),
                hint: format!("set {name} to the job's OIDC token, or point --id-token-env at the variable that holds it"),
            });
        }
        let file = || {
            env.get("AWS_WEB_IDENTITY_TOKEN_FILE")
                .map(|f| TokenSource::File(PathBuf::from(f)))
        };
        match self {
            Ci::GitHub(_) => match (env.get("ACTIONS_ID_TOKEN_REQUEST_URL"), env.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")) {
                (Some(url), Some(bearer)) => Ok(TokenSource::GitHub { url: url.to_string(), bearer: Secret::new(bearer) }),
                _ => Err(TokenError::NoToken {
                    why: "GitHub Actions gives this job no OIDC token (ACTIONS_ID_TOKEN_REQUEST_URL is not set)".into(),
                    hint: "add `permissions: id-token: write` to the workflow or the job (a job-level `permissions:` replaces the workflow's); pull requests from forks never get one".into(),
                }),
            },
            Ci::GitLab(_) => var(env, GITLAB_TOKEN_VAR).or_else(file).ok_or_else(|| TokenError::NoToken {
                why: format!("GitLab CI: the job has no {GITLAB_TOKEN_VAR} variable"),
                hint: format!("add to the job:\n  id_tokens:\n    {GITLAB_TOKEN_VAR}:\n      aud: sts.amazonaws.com\n  (or name another id_tokens variable with --id-token-env)"),
            }),
            // The token is spent at once on the exchange, and every refresh
            // asks for a new one: a short life (15 min) is all it needs, and
            // limits what a leaked token is worth. The STS session's own
            // length is --duration, independent of it.
            Ci::Buildkite(_) => Ok(TokenSource::Buildkite { lifetime_secs: 900 }),
            Ci::CircleCi(_) => var(env, "CIRCLE_OIDC_TOKEN_V2").or_else(|| var(env, "CIRCLE_OIDC_TOKEN")).or_else(file).ok_or_else(|| TokenError::NoToken {
                why: "CircleCI gives this job no OIDC token (CIRCLE_OIDC_TOKEN_V2 / CIRCLE_OIDC_TOKEN are not set)".into(),
                hint: "OIDC tokens need a job that uses a CircleCI context; see CircleCI's OpenID Connect tokens documentation".into(),
            }),
            Ci::Bitbucket(_) => var(env, "BITBUCKET_STEP_OIDC_TOKEN").or_else(file).ok_or_else(|| TokenError::NoToken {
                why: "Bitbucket Pipelines gives this step no OIDC token (BITBUCKET_STEP_OIDC_TOKEN is not set)".into(),
                hint: "add `oidc: true` to the step".into(),
            }),
            Ci::Jenkins(_) | Ci::Local => file().ok_or_else(|| TokenError::NoToken {
                why: format!("{}: no OIDC token was found", if matches!(self, Ci::Jenkins(_)) { "Jenkins" } else { "no CI system was detected, and" }),
                hint: "Jenkins: bind the oidc-provider plugin's token credential as a file to AWS_WEB_IDENTITY_TOKEN_FILE (withCredentials); anywhere: --id-token-file PATH or --id-token-env VAR; or --ci NAME if detection missed your CI system".into(),
            }),
        }
    }

    /// The run this job belongs to, for the STS session name (CloudTrail).
    pub fn run_id(&self) -> Option<String> {
        match self {
            Ci::GitHub(g) => g
                .github_run_id
                .as_ref()
                .map(|r| format!("{r}-{}", g.github_run_attempt.as_deref().unwrap_or("1"))),
            Ci::GitLab(g) => g.ci_job_id.clone(),
            Ci::Buildkite(b) => b.buildkite_job_id.clone(),
            Ci::CircleCi(c) => c.circle_build_num.clone(),
            Ci::Bitbucket(b) => b.bitbucket_build_number.clone(),
            Ci::Jenkins(j) => j.build_tag.clone(),
            Ci::Local => None,
        }
    }
}

fn var(env: &Env, name: &str) -> Option<TokenSource> {
    env.get(name).map(|v| TokenSource::Var {
        name: name.to_string(),
        value: Secret::new(v.trim()),
    })
}

impl TokenSource {
    pub fn describe(&self) -> String {
        match self {
            TokenSource::File(p) => format!("the file {}", p.display()),
            TokenSource::Var { name, .. } => format!("${name}"),
            TokenSource::GitHub { .. } => "GitHub's OIDC token endpoint".into(),
            TokenSource::Buildkite { .. } => "buildkite-agent oidc request-token".into(),
        }
    }

    /// Whether asking again can give a newer token.
    pub fn renews(&self) -> bool {
        !matches!(self, TokenSource::Var { .. })
    }

    /// A token for `audience`.
    pub async fn fetch(
        &self,
        http: &reqwest::Client,
        audience: &str,
    ) -> Result<Secret, TokenError> {
        let token = match self {
            TokenSource::File(path) => read_file(path.clone()).await?,
            TokenSource::Var { name, value } => checked_var(name, value)?,
            TokenSource::GitHub { url, bearer } => {
                self.ask_github(http, url, bearer, audience).await?
            }
            TokenSource::Buildkite { lifetime_secs } => {
                self.ask_buildkite(*lifetime_secs, audience).await?
            }
        };
        // Known from now on, so that text hoist prints is scrubbed of it.
        crate::secret::register(token.reveal());
        Ok(token)
    }

    fn failed(&self, reason: String, transient: bool) -> TokenError {
        TokenError::Fetch {
            from: self.describe(),
            reason,
            transient,
        }
    }

    /// GitHub's token endpoint, asked for a token for `audience`.
    async fn ask_github(
        &self,
        http: &reqwest::Client,
        url: &str,
        bearer: &Secret,
        audience: &str,
    ) -> Result<Secret, TokenError> {
        // The URL already carries a query string.
        let mut u = url::Url::parse(url).map_err(|e| {
            self.failed(
                format!("ACTIONS_ID_TOKEN_REQUEST_URL is not a URL: {e}"),
                false,
            )
        })?;
        u.query_pairs_mut().append_pair("audience", audience);
        let res = http
            .get(u)
            .header("Authorization", format!("bearer {}", bearer.reveal()))
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| self.failed(format!("the request failed: {}", e.without_url()), true))?;
        let status = res.status();
        if !status.is_success() {
            return Err(self.failed(format!("it answered {status}"), transient(status)));
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            value: String,
        }
        // At most what a token and its JSON wrapping can take: an endless
        // or enormous answer is refused, not read.
        let body = read_at_most(res, ANSWER_LIMIT)
            .await
            .map_err(|e| self.failed(e, true))?
            .ok_or_else(|| {
                self.failed(
                    format!(
                        "its answer is over {} KiB, more than a token can be",
                        ANSWER_LIMIT / 1024
                    ),
                    false,
                )
            })?;
        let a: Answer = serde_json::from_slice(&body)
            .map_err(|e| self.failed(format!("its answer has no token: {e}"), false))?;
        if a.value.len() as u64 > crate::files::TOKEN {
            return Err(self.failed(
                format!(
                    "its token has {} characters, more than STS takes (20,000)",
                    a.value.len()
                ),
                false,
            ));
        }
        Ok(Secret::new(a.value))
    }

    /// `buildkite-agent oidc request-token`, run for a token for `audience`.
    async fn ask_buildkite(
        &self,
        lifetime_secs: u32,
        audience: &str,
    ) -> Result<Secret, TokenError> {
        let out = tokio::process::Command::new("buildkite-agent")
            .args([
                "oidc",
                "request-token",
                "--audience",
                audience,
                "--lifetime",
                &lifetime_secs.to_string(),
            ])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        // The agent asks its server for the token; a hung agent
        // must not hang the job.
        let out = tokio::time::timeout(std::time::Duration::from_secs(60), out)
            .await
            .map_err(|_| self.failed("buildkite-agent gave no token within 60 s".into(), true))?
            .map_err(|e| TokenError::NoToken {
                why: format!("buildkite-agent cannot be run: {e}"),
                hint: "run hoist in a Buildkite job step, where buildkite-agent is on PATH".into(),
            })?;
        if !out.status.success() {
            let stderr =
                crate::text::external(&String::from_utf8_lossy(&out.stderr), crate::text::SNIPPET);
            return Err(self.failed(
                format!("buildkite-agent exited with {}: {stderr}", out.status),
                false,
            ));
        }
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if token.len() as u64 > crate::files::TOKEN {
            return Err(self.failed(
                format!(
                    "buildkite-agent printed {} characters, more than a token for STS can have (20,000)",
                    token.len()
                ),
                false,
            ));
        }
        Ok(Secret::new(token))
    }
}

/// The largest answer from GitHub's token endpoint hoist reads: a token
/// (at most 20,000 characters for STS) in a small JSON object.
const ANSWER_LIMIT: usize = 64 * 1024;

/// The body, or None when it is longer than `limit` (not read further).
async fn read_at_most(mut res: reqwest::Response, limit: usize) -> Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| format!("its answer broke off: {}", e.without_url()))?
    {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// The token in the file at `path`, read off the async runtime.
async fn read_file(path: PathBuf) -> Result<Secret, TokenError> {
    let read = tokio::task::spawn_blocking(move || {
        crate::files::read_to_string(&path, "the token file", crate::files::TOKEN)
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let text = read.map_err(|e| TokenError::NoToken {
        why: e.to_string(),
        hint: "check --id-token-file / AWS_WEB_IDENTITY_TOKEN_FILE (Jenkins: the credential must be bound as a file)".into(),
    })?;
    Ok(Secret::new(text.trim()))
}

/// The token a variable holds, unless it is too long to be one.
fn checked_var(name: &str, value: &Secret) -> Result<Secret, TokenError> {
    if value.reveal().len() as u64 > crate::files::TOKEN {
        return Err(TokenError::NoToken {
            why: format!(
                "${name} holds {} characters, more than an OIDC token for STS can have (20,000)",
                value.reveal().len()
            ),
            hint: "check that --id-token-env names the variable holding the job's OIDC token"
                .into(),
        });
    }
    Ok(value.clone())
}

/// Whether asking the token endpoint again may work after it answered
/// `status`: its own failure or a rate limit, not a refusal.
fn transient(status: reqwest::StatusCode) -> bool {
    status.is_server_error() || status.as_u16() == 429
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_refusals_of_the_token_endpoint_are_worth_asking_again() {
        let table = [
            (400, false),
            (401, false),
            (403, false),
            (404, false),
            (429, true),
            (500, true),
            (502, true),
            (503, true),
        ];
        for (status, want) in table {
            let status = reqwest::StatusCode::from_u16(status).unwrap();
            assert_eq!(transient(status), want, "{status}");
        }
    }

    #[test]
    fn a_variable_too_long_for_a_token_is_refused() {
        let limit = crate::files::TOKEN as usize;
        let fits = Secret::new("x".repeat(limit));
        assert_eq!(checked_var("T", &fits).unwrap().reveal(), fits.reveal());
        let err = checked_var("T", &Secret::new("x".repeat(limit + 1))).unwrap_err();
        assert!(
            err.to_string().contains("$T holds 20001 characters"),
            "{err}"
        );
    }
}
