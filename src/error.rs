//! How a failure reaches the user: a class that picks the exit code, the
//! message, its causes, and a hint when the fix is known.
//!
//! Each stage has its own error type; they all implement [`Diagnose`] and meet
//! in [`Error`], which `main` prints as `error:` / `caused by:` / `hint:` lines.

use std::error::Error as StdError;
use std::fmt;

/// How a run ended, when not well: the one place each exit code is defined.
/// The README's table and `hoist --help` list them (tests/cli.rs checks both
/// against [`Class::ALL`]); a run that succeeded exits 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// 1: the run worked but a policy said no (the scan gate), or a deploy
    /// was rolled back or stopped.
    Policy,
    /// 2: the user can fix it: a flag, the configuration, the image on disk.
    Usage,
    /// 3: something outside hoist failed: the registry, AWS, the network.
    Infrastructure,
    /// 70 (sysexits' EX_SOFTWARE): a bug in hoist, whatever the input — a
    /// panic (`main`'s panic hook), or a result hoist could not write as
    /// JSON. Never a code a pipeline would mistake for a blocked gate or a
    /// bad flag, and never Rust's own 101 with its raw message.
    Internal,
    /// 128 + the signal's number (130 SIGINT, 143 SIGTERM), as shells report
    /// a command a signal ended (POSIX, Shell Command Language 2.8.2):
    /// `hoist deploy` stopped by a cancelled job during a shift, after it
    /// restored the previous routing.
    Interrupted(Signal),
}

impl Class {
    /// Every code hoist can exit with but 0, in the order the README lists
    /// them.
    pub const ALL: [Class; 6] = [
        Class::Policy,
        Class::Usage,
        Class::Infrastructure,
        Class::Internal,
        Class::Interrupted(Signal::Int),
        Class::Interrupted(Signal::Term),
    ];

    pub fn exit_code(self) -> u8 {
        match self {
            Class::Policy => 1,
            Class::Usage => 2,
            Class::Infrastructure => 3,
            Class::Internal => 70,
            Class::Interrupted(s) => 128 + s.number(),
        }
    }
}

/// The signals a cancelled CI job sends hoist, which a deploy in the middle
/// of a shift catches to restore the routing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Int,
    Term,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Int => "SIGINT",
            Signal::Term => "SIGTERM",
        }
    }

    /// The signal's number: the same on every system hoist runs on, and the
    /// ones POSIX's `kill` utility names for `-2` and `-15`.
    pub fn number(self) -> u8 {
        match self {
            Signal::Int => 2,
            Signal::Term => 15,
        }
    }
}

pub trait Diagnose: StdError + Send + Sync + 'static {
    fn class(&self) -> Class;
    fn hint(&self) -> Option<String> {
        None
    }
    /// The file and line at fault, when a file is (the allow-list): the CI
    /// system can point at it.
    fn location(&self) -> Option<Location> {
        None
    }
}

/// A place in a file the user gave hoist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    /// 1-based.
    pub line: usize,
}

impl Location {
    /// The line of byte `offset` of `text` (1-based).
    pub fn of_offset(file: &str, text: &str, offset: usize) -> Location {
        let end = offset.min(text.len());
        let line = text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        Location {
            file: file.to_string(),
            line,
        }
    }
}

/// Any stage's error, boxed, with what it knows about itself.
pub struct Error {
    inner: Box<dyn Diagnose>,
    /// The stage it happened in (`push`, `gate`, `deploy`…), for the CI
    /// system's annotation.
    stage: Option<&'static str>,
}

impl Error {
    /// The same error, as one of `stage` (an earlier stage's is kept).
    pub fn in_stage(mut self, stage: &'static str) -> Error {
        self.stage.get_or_insert(stage);
        self
    }

    pub fn stage(&self) -> Option<&'static str> {
        self.stage
    }

    pub fn class(&self) -> Class {
        self.inner.class()
    }

    pub fn hint(&self) -> Option<String> {
        self.inner.hint()
    }

    pub fn location(&self) -> Option<Location> {
        self.inner.location()
    }

    /// The lines `main` prints: `error: …`, then `caused by: …` for each source
    /// that adds something, then `hint: …`.
    pub fn report(&self) -> String {
        let mut out = format!("error: {}", self.inner);
        let mut last = self.inner.to_string();
        let mut source = self.inner.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            // reqwest and the SDK repeat their cause inside their own message.
            if !last.contains(&text) {
                out.push_str(&format!("\ncaused by: {text}"));
            }
            last = text;
            source = cause.source();
        }
        if let Some(hint) = self.hint() {
            out.push_str(&format!("\nhint: {hint}"));
        }
        out
    }
}

impl<E: Diagnose> From<E> for Error {
    fn from(e: E) -> Self {
        Error {
            inner: Box::new(e),
            stage: None,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.report())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

/// Errors in the settings themselves: flags, environment, files they name.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    pub message: String,
    pub hint: Option<String>,
    #[source]
    pub source: Option<Box<dyn StdError + Send + Sync>>,
    pub location: Option<Location>,
}

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
            hint: None,
            source: None,
            location: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    pub fn at(mut self, location: Location) -> Self {
        self.location = Some(location);
        self
    }
}

impl Diagnose for ConfigError {
    fn class(&self) -> Class {
        Class::Usage
    }
    fn hint(&self) -> Option<String> {
        self.hint.clone()
    }
    fn location(&self) -> Option<Location> {
        self.location.clone()
    }
}

/// A bug in hoist ([`Class::Internal`]): what went wrong, and where to
/// report it.
#[derive(Debug, thiserror::Error)]
#[error("internal error in hoist {}: {what}", env!("CARGO_PKG_VERSION"))]
pub struct Internal {
    /// What went wrong, and where in hoist's source.
    pub what: String,
    /// From the panic hook, where `RUST_BACKTRACE=1` adds a backtrace.
    pub panicked: bool,
}

impl Diagnose for Internal {
    fn class(&self) -> Class {
        Class::Internal
    }
    fn hint(&self) -> Option<String> {
        Some(format!(
            "this is a bug in hoist, not in your set-up: please report it at {}/issues with the command you ran and these lines{}. Exit code {}.",
            env!("CARGO_PKG_REPOSITORY"),
            if self.panicked {
                " (RUST_BACKTRACE=1 adds a backtrace)"
            } else {
                ""
            },
            Class::Internal.exit_code(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes the README and `hoist --help` document: changing one breaks
    /// every pipeline that tells them apart.
    #[test]
    fn exit_codes() {
        let codes: Vec<u8> = Class::ALL.iter().map(|c| c.exit_code()).collect();
        assert_eq!(codes, [1, 2, 3, 70, 130, 143]);
    }
}
