//! Which CI system hoist runs in, and everything that differs between them:
//! where outputs go, where the step summary goes, how secrets are masked (and,
//! with the auth stage, where the OIDC token comes from).
//!
//! One enum, one file per system. Detection tries each system in a fixed
//! order against the environment snapshot; `--ci` overrides it.

mod bitbucket;
mod buildkite;
mod circleci;
mod github;
mod gitlab;
mod jenkins;
mod token;

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::env::Env;
use crate::error::ConfigError;

pub use bitbucket::Bitbucket;
pub use buildkite::Buildkite;
pub use circleci::CircleCi;
pub use github::GitHub;
pub use gitlab::GitLab;
pub use jenkins::Jenkins;
pub use token::{GITLAB_TOKEN_VAR, TokenError, TokenOptions, TokenSource};

#[derive(Debug, Clone)]
pub enum Ci {
    GitHub(GitHub),
    GitLab(GitLab),
    Buildkite(Buildkite),
    CircleCi(CircleCi),
    Bitbucket(Bitbucket),
    Jenkins(Jenkins),
    /// A developer's shell, or a CI system hoist does not know.
    Local,
}

/// The names `--ci` accepts.
pub const NAMES: &[&str] = &[
    "github",
    "gitlab",
    "buildkite",
    "circleci",
    "bitbucket",
    "jenkins",
    "local",
];

impl Ci {
    /// The CI system this environment belongs to. Each system's marker variable
    /// is checked in a fixed order; the first that is set wins.
    pub fn detect(env: &Env) -> Ci {
        if env.is_true("GITHUB_ACTIONS") {
            Ci::GitHub(GitHub::from_env(env))
        } else if env.is_true("GITLAB_CI") {
            Ci::GitLab(GitLab::from_env(env))
        } else if env.is_true("BUILDKITE") {
            Ci::Buildkite(Buildkite::from_env(env))
        } else if env.is_true("CIRCLECI") {
            Ci::CircleCi(CircleCi::from_env(env))
        } else if env.get("BITBUCKET_BUILD_NUMBER").is_some() {
            Ci::Bitbucket(Bitbucket::from_env(env))
        } else if env.get("JENKINS_URL").is_some() {
            Ci::Jenkins(Jenkins::from_env(env))
        } else {
            Ci::Local
        }
    }

    /// `--ci NAME`: the named system, read from the same environment.
    pub fn named(name: &str, env: &Env) -> Result<Ci, ConfigError> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "github" | "github-actions" => Ci::GitHub(GitHub::from_env(env)),
            "gitlab" | "gitlab-ci" => Ci::GitLab(GitLab::from_env(env)),
            "buildkite" => Ci::Buildkite(Buildkite::from_env(env)),
            "circleci" => Ci::CircleCi(CircleCi::from_env(env)),
            "bitbucket" => Ci::Bitbucket(Bitbucket::from_env(env)),
            "jenkins" => Ci::Jenkins(Jenkins::from_env(env)),
            "local" | "none" => Ci::Local,
            other => {
                return Err(ConfigError::new(format!("unknown CI system '{other}'"))
                    .hint(format!("--ci takes one of: {}", NAMES.join(", "))));
            }
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Ci::GitHub(_) => "github",
            Ci::GitLab(_) => "gitlab",
            Ci::Buildkite(_) => "buildkite",
            Ci::CircleCi(_) => "circleci",
            Ci::Bitbucket(_) => "bitbucket",
            Ci::Jenkins(_) => "jenkins",
            Ci::Local => "local",
        }
    }

    /// Ask the CI system to hide a secret in its logs: GitHub's
    /// `::add-mask::`, Buildkite's log redactor. Elsewhere secrets are simply
    /// never printed.
    ///
    /// GitHub's command goes to stderr: the runner reads workflow commands
    /// from both streams, and stdout carries the digest for `$(hoist push …)`.
    pub fn mask(&self, secret: &str) {
        // hoist scrubs it from any outside text it prints, whatever the CI.
        crate::secret::register(secret);
        match self {
            Ci::GitHub(_) => {
                for line in secret.lines().filter(|l| !l.trim().is_empty()) {
                    crate::output::command(&format!("::add-mask::{line}"));
                }
            }
            Ci::Buildkite(b) => b.redact(secret),
            _ => {}
        }
    }

    /// The dotenv file this system wants outputs in, unless the user named one.
    fn default_dotenv(&self) -> Option<PathBuf> {
        match self {
            Ci::GitLab(g) => Some(g.default_dotenv()),
            _ => None,
        }
    }

    /// Hand a stage's outputs to the CI system: GitHub's `$GITHUB_OUTPUT` and
    /// step summary, GitLab's dotenv report, Buildkite's meta-data and
    /// annotation; plus the dotenv file the user asked for anywhere.
    pub fn publish(&self, outputs: &Outputs, dotenv: Option<&Path>) -> Vec<String> {
        let mut warnings = Vec::new();
        let note = |warnings: &mut Vec<String>, what: &str, r: std::io::Result<()>| {
            if let Err(e) = r {
                warnings.push(format!("could not write {what}: {e}"));
            }
        };
        match self {
            Ci::GitHub(g) => {
                note(&mut warnings, "$GITHUB_OUTPUT", g.write_outputs(outputs));
                note(
                    &mut warnings,
                    "$GITHUB_STEP_SUMMARY",
                    g.write_summary(&outputs.summary),
                );
            }
            Ci::Buildkite(b) => warnings.extend(b.publish(outputs)),
            _ => {}
        }
        if let Some(path) = dotenv
            .map(Path::to_path_buf)
            .or_else(|| self.default_dotenv())
        {
            note(
                &mut warnings,
                &path.display().to_string(),
                write_dotenv(&path, outputs),
            );
        }
        warnings
    }
}

/// What a stage hands to later steps: `key` in kebab-case (`image-uri`), as
/// GitHub outputs use; dotenv and meta-data derive their own spellings.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    pub values: Vec<(String, String)>,
    /// Markdown for the step summary.
    pub summary: String,
    /// The run ended blocked (a gate, a rollback): the summary is shown as a
    /// failure where the CI system has styles (Buildkite's annotations).
    pub blocked: bool,
}

impl Outputs {
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.values.push((key.to_string(), value.into()));
    }

    /// `image-uri` → `HOIST_IMAGE_URI`.
    pub fn env_name(key: &str) -> String {
        format!("HOIST_{}", key.to_ascii_uppercase().replace('-', "_"))
    }
}

/// Write (or update) a dotenv file: keys hoist owns are replaced, other lines
/// are kept, so stages run as separate steps can share one file.
pub fn write_dotenv(path: &Path, outputs: &Outputs) -> std::io::Result<()> {
    let ours: Vec<(String, &str)> = outputs
        .values
        .iter()
        .map(|(k, v)| (Outputs::env_name(k), v.as_str()))
        .collect();
    let existing = if path.exists() {
        crate::files::read_to_string(path, "the dotenv file", crate::files::DOTENV)
            .map_err(|e| std::io::Error::other(e.to_string()))?
    } else {
        String::new()
    };
    let mut text = String::new();
    for line in existing.lines() {
        let key = line.split('=').next().unwrap_or_default();
        if !ours.iter().any(|(k, _)| k == key) {
            text.push_str(line);
            text.push('\n');
        }
    }
    for (k, v) in &ours {
        text.push_str(&format!("{k}={v}\n"));
    }
    std::fs::write(path, text)
}

/// Append to a file a CI system gave us (`$GITHUB_OUTPUT` and friends).
fn append(path: &Path, text: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// A fold of the CI log around one stage's lines (GitHub's `::group::`,
/// GitLab's collapsible sections); closed when dropped.
pub struct Group {
    end: Option<String>,
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(end) = self.end.take() {
            crate::output::command(&end);
        }
    }
}

/// Workflow-command data as GitHub's toolkit escapes it (`%`, CR, LF), so
/// text cannot end the command or start another.
pub fn github_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow-command property (`title=…`): also `:` and `,`.
pub fn github_property(text: &str) -> String {
    github_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// `file=…,line=…,` for an annotation, or nothing.
fn github_location(at: Option<&crate::error::Location>) -> String {
    match at {
        Some(l) => format!("file={},line={},", github_property(&l.file), l.line),
        None => String::new(),
    }
}

impl Ci {
    /// Fold `title`'s lines in the CI log, where the system has folds.
    pub fn group(&self, name: &str, title: &str) -> Group {
        match self {
            Ci::GitHub(_) => {
                crate::output::command(&format!("::group::{}", github_data(title)));
                Group {
                    end: Some("::endgroup::".into()),
                }
            }
            Ci::GitLab(_) => {
                let now = crate::clock::unix_now();
                crate::output::command(&format!(
                    "\x1b[0Ksection_start:{now}:hoist_{name}[collapsed=false]\r\x1b[0K{title}"
                ));
                Group {
                    end: Some(format!(
                        "\x1b[0Ksection_end:{}:hoist_{name}\r\x1b[0K",
                        crate::clock::unix_now()
                    )),
                }
            }
            _ => Group { end: None },
        }
    }

    /// A warning about a place in a file the user gave hoist (an allow-list
    /// entry), where the CI system shows such things: GitHub's annotation,
    /// which points at the file and line. Elsewhere the log line that says
    /// the same is enough.
    pub fn warn_at(&self, title: &str, message: &str, at: Option<&crate::error::Location>) {
        if let Ci::GitHub(_) = self {
            crate::output::command(&format!(
                "::warning {}title={}::{}",
                github_location(at),
                github_property(title),
                github_data(&crate::secret::scrub(message))
            ));
        }
    }

    /// The run failed: say so where the CI system shows failures — GitHub's
    /// error annotation and step summary, Buildkite's annotation — with the
    /// hint, and what was done before (`done`, Markdown).
    pub fn report_failure(&self, error: &crate::error::Error, done: Option<&str>) {
        let stage = error.stage().unwrap_or("run");
        let message = crate::secret::scrub(&error.to_string());
        let hint = error.hint().map(|h| crate::secret::scrub(&h));
        let markdown = failure_markdown(stage, &message, hint.as_deref(), done);
        match self {
            Ci::GitHub(g) => {
                let data = match &hint {
                    Some(h) => format!("{message}\nhint: {h}"),
                    None => message.clone(),
                };
                crate::output::command(&format!(
                    "::error {}title={}::{}",
                    github_location(error.location().as_ref()),
                    github_property(&format!("hoist {stage} failed")),
                    github_data(&data)
                ));
                if let Err(e) = g.write_summary(&markdown) {
                    tracing::warn!("could not write $GITHUB_STEP_SUMMARY: {e}");
                }
            }
            Ci::Buildkite(b) => b.annotate_failure(&markdown),
            _ => {}
        }
    }
}

/// The step summary of a failed run.
fn failure_markdown(stage: &str, message: &str, hint: Option<&str>, done: Option<&str>) -> String {
    let mut md = format!("### hoist {stage} failed\n\n");
    if let Some(done) = done {
        md.push_str(done);
        md.push_str("\n\n");
    }
    md.push_str("```\n");
    md.push_str(&message.replace("```", "'''"));
    md.push_str("\n```\n");
    if let Some(h) = hint {
        md.push_str(&format!("\n**hint:** {}\n", h.replace('\n', " ")));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_order_and_override() {
        let env = Env::from_pairs([("GITHUB_ACTIONS", "true"), ("GITLAB_CI", "true")]);
        assert_eq!(Ci::detect(&env).name(), "github");
        assert_eq!(
            Ci::detect(&Env::from_pairs([("BUILDKITE", "true")])).name(),
            "buildkite"
        );
        assert_eq!(
            Ci::detect(&Env::from_pairs([("JENKINS_URL", "https://ci/")])).name(),
            "jenkins"
        );
        assert_eq!(Ci::detect(&Env::default()).name(), "local");
        assert_eq!(Ci::named("GitLab", &env).unwrap().name(), "gitlab");
        let err = Ci::named("travis", &env).unwrap_err();
        assert!(err.hint.unwrap().contains("github"));
    }

    #[test]
    fn dotenv_replaces_own_keys_and_keeps_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hoist.env");
        std::fs::write(&path, "OTHER=1\nHOIST_DIGEST=old\n").unwrap();
        let mut o = Outputs::default();
        o.set("digest", "sha256:abc");
        o.set("image-uri", "r/x@sha256:abc");
        write_dotenv(&path, &o).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "OTHER=1\nHOIST_DIGEST=sha256:abc\nHOIST_IMAGE_URI=r/x@sha256:abc\n"
        );
    }
}
