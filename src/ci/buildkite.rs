//! Buildkite: outputs as build meta-data (`buildkite-agent meta-data set`),
//! the summary as an annotation on the build page (`buildkite-agent
//! annotate`), and every secret hoist handles registered with the job's log
//! redactor (`buildkite-agent redactor add`).
//!
//! The agent's rules shape what is written:
//! - meta-data refuses a value that is empty or only whitespace ("value
//!   cannot be empty, or composed of only whitespace characters",
//!   buildkite/agent#2066); older agents send it anyway and retry the
//!   server's 400 for minutes. So blank values are never sent, and one
//!   refused key never stops the others.
//! - meta-data belongs to the whole build: two steps writing `hoist-digest`
//!   overwrite each other. In a step with a `key`, keys are namespaced by it
//!   (`deploy-eu:hoist-digest`).
//! - an annotation's context is at most 100 characters, its body at most
//!   1 MiB; the same context replaces the annotation, so each step gets its
//!   own.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::Outputs;
use crate::env::Env;

/// `buildkite-agent annotate --context` takes at most this many characters.
const CONTEXT_MAX: usize = 100;
/// The agent refuses a larger annotation body.
const BODY_MAX: usize = 1024 * 1024;
/// How long one agent call may take. The agent retries API failures for
/// minutes (meta-data set: 10 attempts, 233 s of back-off); hoist's run must
/// end in bounded time, and outputs are not worth holding a deploy step for.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The redactor talks to the agent over a local socket: quick, or broken.
const REDACT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Buildkite {
    pub buildkite_build_url: Option<String>,
    pub buildkite_job_id: Option<String>,
    pub buildkite_commit: Option<String>,
    /// The step's `key:` in the pipeline, when it has one.
    pub buildkite_step_key: Option<String>,
    /// The step's UUID: the same for every retry of the step.
    pub buildkite_step_id: Option<String>,
    /// Set once `redactor add` failed, so the warning is given once.
    #[serde(skip)]
    redactor_failed: Arc<AtomicBool>,
}

/// What `publish` does with a run's outputs, decided before any agent call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `(key, value)` to `meta-data set`, in output order.
    pub meta_data: Vec<(String, String)>,
    /// Outputs left out because the agent would refuse their blank value.
    pub blank: Vec<String>,
}

/// The meta-data key of an output: `hoist-digest`, or `KEY:hoist-digest` in
/// a step with a key, so two hoist steps of one build keep their own.
pub fn meta_data_key(step_key: Option<&str>, output: &str) -> String {
    match step_key.map(str::trim).filter(|k| !k.is_empty()) {
        Some(k) => format!("{k}:hoist-{output}"),
        None => format!("hoist-{output}"),
    }
}

/// Which outputs become meta-data, under which keys. Blank values are what
/// the agent refuses (a first deploy has no previous version): they are
/// skipped, and a later step reads them with `meta-data get --default ''`.
pub fn plan(step_key: Option<&str>, outputs: &Outputs) -> Plan {
    let mut p = Plan {
        meta_data: vec![],
        blank: vec![],
    };
    for (k, v) in &outputs.values {
        if v.trim().is_empty() {
            p.blank.push(k.clone());
        } else {
            p.meta_data.push((meta_data_key(step_key, k), v.clone()));
        }
    }
    p
}

/// The annotation's context: one per step (a retry replaces its own), at
/// most 100 characters.
pub fn annotation_context(
    step_key: Option<&str>,
    step_id: Option<&str>,
    job_id: Option<&str>,
) -> String {
    let id = [step_key, step_id, job_id]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| !s.is_empty());
    let context = match id {
        Some(id) => format!("hoist-{id}"),
        None => "hoist".to_string(),
    };
    context.chars().take(CONTEXT_MAX).collect()
}

/// The body the agent accepts: at most 1 MiB, cut at a line boundary with a
/// note when the summary is longer.
pub fn annotation_body(markdown: &str) -> String {
    if markdown.len() <= BODY_MAX {
        return markdown.to_string();
    }
    let note = "\n\n_(cut: the full summary is in the job log)_\n";
    let mut end = BODY_MAX - note.len();
    while !markdown.is_char_boundary(end) {
        end -= 1;
    }
    let cut = markdown[..end].rfind('\n').unwrap_or(end);
    format!("{}{note}", &markdown[..cut])
}

impl Buildkite {
    pub fn from_env(env: &Env) -> Self {
        env.typed().unwrap_or_default()
    }

    /// Outputs as meta-data, the summary as the step's annotation. Returns
    /// the warnings: every key the agent refused (all of them are tried),
    /// and a failed annotation.
    pub(super) fn publish(&self, outputs: &Outputs) -> Vec<String> {
        let mut warnings = vec![];
        let plan = plan(self.buildkite_step_key.as_deref(), outputs);
        if !plan.blank.is_empty() {
            tracing::debug!(
                "not written as meta-data (empty, which buildkite-agent refuses): {}",
                plan.blank.join(", ")
            );
        }
        let mut refused = vec![];
        let mut unreachable = false;
        for (key, value) in &plan.meta_data {
            if unreachable {
                refused.push(format!("{key} (not tried: the agent did not answer)"));
                continue;
            }
            match agent(&["meta-data", "set", key], value, CALL_TIMEOUT) {
                Ok(()) => {}
                Err(AgentError::TimedOut) => {
                    unreachable = true;
                    refused.push(format!("{key} (no answer in {} s)", CALL_TIMEOUT.as_secs()));
                }
                Err(e) => refused.push(format!("{key} ({e})")),
            }
        }
        if !refused.is_empty() {
            warnings.push(format!(
                "buildkite-agent meta-data set failed for {} of {} keys: {}",
                refused.len(),
                plan.meta_data.len(),
                refused.join("; ")
            ));
        }
        if !outputs.summary.trim().is_empty() && !unreachable {
            let context = annotation_context(
                self.buildkite_step_key.as_deref(),
                self.buildkite_step_id.as_deref(),
                self.buildkite_job_id.as_deref(),
            );
            let style = if outputs.blocked { "error" } else { "success" };
            if let Err(e) = agent(
                &["annotate", "--style", style, "--context", &context],
                &annotation_body(&outputs.summary),
                CALL_TIMEOUT,
            ) {
                warnings.push(format!("buildkite-agent annotate failed: {e}"));
            }
        }
        warnings
    }

    /// The run failed: an error annotation for the step (its own context, so
    /// a successful retry's summary does not hide it).
    pub(super) fn annotate_failure(&self, markdown: &str) {
        let context = format!(
            "{}-failed",
            annotation_context(
                self.buildkite_step_key.as_deref(),
                self.buildkite_step_id.as_deref(),
                self.buildkite_job_id.as_deref(),
            )
        );
        let context: String = context.chars().take(CONTEXT_MAX).collect();
        if let Err(e) = agent(
            &["annotate", "--style", "error", "--context", &context],
            &annotation_body(markdown),
            CALL_TIMEOUT,
        ) {
            tracing::warn!("buildkite-agent annotate failed: {e}");
        }
    }

    /// Register a secret with the job's log redactor (agent 3.66 and later,
    /// through the job API), so no later command of the job can print it.
    /// hoist itself never prints secrets; when the agent cannot redact, it
    /// says so once and carries on.
    pub(super) fn redact(&self, secret: &str) {
        if secret.trim().is_empty() || self.redactor_failed.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = agent(&["redactor", "add"], secret, REDACT_TIMEOUT)
            && !self.redactor_failed.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "buildkite-agent redactor add failed ({e}): later commands of this job are not kept from printing the credentials hoist fetched (agent 3.66 or later has the job API it needs)"
            );
        }
    }
}

#[derive(Debug)]
enum AgentError {
    NotRun(std::io::Error),
    TimedOut,
    Failed { status: String, said: String },
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentError::NotRun(e) => write!(f, "buildkite-agent cannot be run: {e}"),
            AgentError::TimedOut => write!(f, "no answer"),
            AgentError::Failed { status, said } if said.is_empty() => write!(f, "{status}"),
            AgentError::Failed { status, said } => write!(f, "{status}: {said}"),
        }
    }
}

/// `buildkite-agent ARGS` with `input` on stdin (values and secrets never go
/// on a command line), killed after `timeout`.
fn agent(args: &[&str], input: &str, timeout: Duration) -> Result<(), AgentError> {
    let mut child = Command::new("buildkite-agent")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(AgentError::NotRun)?;
    // stderr is read on a thread of its own, so a chatty agent cannot block
    // on a full pipe while hoist waits for it.
    let mut stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        // All of it is read (the agent never blocks on the pipe); only the
        // last 64 KiB are kept.
        let mut tail: Vec<u8> = vec![];
        let mut buf = [0u8; 8192];
        while let Some(Ok(n @ 1..)) = stderr.as_mut().map(|s| s.read(&mut buf)) {
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 64 * 1024 {
                tail.drain(..tail.len() - 64 * 1024);
            }
        }
        String::from_utf8_lossy(&tail).into_owned()
    });
    // Small inputs (a value, a secret, a summary ≤ 1 MiB): written before
    // waiting; the agent reads all of stdin before it acts. A write error
    // (the agent exited early) shows in its status.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(AgentError::TimedOut);
            }
            Err(e) => return Err(AgentError::NotRun(e)),
        }
    };
    let said = reader.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    Err(AgentError::Failed {
        status: format!("exit status {}", status.code().unwrap_or(-1)),
        said: last_words(&said),
    })
}

/// The agent's own explanation: its last non-empty stderr line (`fatal: …`),
/// with control characters escaped and the length bounded — it is text from
/// outside, shown in hoist's log.
fn last_words(stderr: &str) -> String {
    let line = stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    let mut out: String = line
        .chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .take(300)
        .collect();
    if line.chars().count() > 300 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(pairs: &[(&str, &str)]) -> Outputs {
        let mut o = Outputs::default();
        for (k, v) in pairs {
            o.set(k, *v);
        }
        o
    }

    #[test]
    fn blank_values_are_skipped_and_keys_namespaced_by_step() {
        let o = outputs(&[
            ("version", "2"),
            ("previous-version", ""),
            ("routing", " "),
            ("alias-arn", "arn:aws:lambda:us-east-1:1:function:f:live"),
            ("deployed-digest", "sha256:ab"),
        ]);
        let table = [
            (None, "hoist-version"),
            (Some(""), "hoist-version"),
            (Some("deploy-eu"), "deploy-eu:hoist-version"),
        ];
        for (step, first_key) in table {
            let p = plan(step, &o);
            assert_eq!(p.blank, ["previous-version", "routing"], "{step:?}");
            let keys: Vec<_> = p.meta_data.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys.len(), 3, "{step:?}");
            assert_eq!(keys[0], first_key);
            assert!(keys[2].ends_with("hoist-deployed-digest"), "{keys:?}");
        }
    }

    #[test]
    fn one_annotation_context_per_step() {
        let table = [
            ((Some("ship"), Some("s-1"), Some("j-1")), "hoist-ship"),
            ((None, Some("s-1"), Some("j-1")), "hoist-s-1"),
            ((Some(" "), None, Some("j-1")), "hoist-j-1"),
            ((None, None, None), "hoist"),
        ];
        for ((key, step, job), want) in table {
            assert_eq!(annotation_context(key, step, job), want);
        }
        let long = "k".repeat(200);
        assert_eq!(
            annotation_context(Some(&long), None, None).len(),
            CONTEXT_MAX
        );
    }

    #[test]
    fn annotation_body_fits_the_agent() {
        assert_eq!(annotation_body("### hoist\n"), "### hoist\n");
        let big = "| row | é |\n".repeat(BODY_MAX / 8);
        let body = annotation_body(&big);
        assert!(body.len() <= BODY_MAX, "{}", body.len());
        assert!(body.ends_with("in the job log)_\n"));
        assert!(body.contains("| row | é |\n\n_(cut"), "cut at a line end");
    }

    #[test]
    fn the_agents_words_are_escaped_and_bounded() {
        assert_eq!(
            last_words("Reading from STDIN\nfatal: value cannot be empty\n\n"),
            "fatal: value cannot be empty"
        );
        assert_eq!(last_words("fatal: \x1b[31mred"), "fatal: \\u{1b}[31mred");
        assert_eq!(last_words(&"x".repeat(500)).chars().count(), 301);
    }
}
