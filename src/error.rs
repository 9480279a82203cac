//! How a failure reaches the user: a class that picks the exit code, the
//! message, its causes, and a hint when the fix is known.
//!
//! Each stage has its own error type; they all implement [`Diagnose`] and meet
//! in [`Error`], which `main` prints as `error:` / `caused by:` / `hint:` lines.

use std::error::Error as StdError;
use std::fmt;

/// Exit codes, documented in the README.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// 1: the run worked but a policy said no (the scan gate).
    Policy,
    /// 2: the user can fix it: a flag, the configuration, the image on disk.
    Usage,
    /// 3: something outside hoist failed: the registry, AWS, the network.
    Infrastructure,
}

impl Class {
    pub fn exit_code(self) -> u8 {
        match self {
            Class::Policy => 1,
            Class::Usage => 2,
            Class::Infrastructure => 3,
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
