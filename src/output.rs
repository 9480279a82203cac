//! Every line hoist writes on stderr goes through here (as ripgrep's
//! `messages.rs` does for it): the run's narrative ([`say`]), the log
//! ([`log`], tracing's writer), the CI system's workflow commands
//! ([`command`]), the result and the error ([`always`]) — and the progress
//! line ([`status`]).
//!
//! One place for the rules every line follows:
//! - `-q` silences the narrative (`say`); the result of a failed run, the
//!   error and the CI system's commands still print.
//! - Every secret hoist knows is scrubbed (the last guard: outside text is
//!   already escaped by `text::external` where it is put in a line), and a
//!   narrative line cannot carry a terminal control sequence or a carriage
//!   return that would overwrite what is above it.
//! - On a terminal, the progress line is cleared before another line prints
//!   and drawn again under it, so a retry warning during an upload does not
//!   land in the middle of the progress figures.
//!
//! Written by hand: the crates that draw progress bars (indicatif) own the
//! terminal through their own handle and need every other line printed
//! through them too — which is this module's job anyway, for the log as
//! well; hoist draws one line of text.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

/// The progress line as drawn on the terminal.
struct Term {
    /// Escape codes allowed (`--color`, NO_COLOR).
    escapes: bool,
    /// The status line being shown, if any.
    status: Option<String>,
}

static TERM: Mutex<Term> = Mutex::new(Term {
    escapes: false,
    status: None,
});

/// Set once by `main`, from `-q` and from `--color`/NO_COLOR (whether
/// escape codes may clear the progress line).
pub fn init(quiet: bool, escapes: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
    term().escapes = escapes;
}

pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// A line of the run's narrative (what hoist is doing, what it did);
/// silent with `-q`.
pub fn say(line: &str) {
    if !quiet() {
        write(&defuse(&inert(&crate::secret::scrub(line))));
    }
}

/// A line every run prints, `-q` or not: the result of a failed run, the
/// error and its hint.
pub fn always(line: &str) {
    write(&defuse(&inert(&crate::secret::scrub(line))));
}

/// A workflow command for the CI system (`::group::`, `::add-mask::`,
/// `::error …`, GitLab's section markers): printed as given — the caller
/// has escaped it in the CI system's own way, and `::add-mask::` carries
/// the very secret it masks — but never inside the progress line.
pub fn command(line: &str) {
    write(line);
}

/// tracing's writer: the log's formatted lines (with colour codes when
/// colour is on), secrets scrubbed.
pub fn log(text: &str) {
    let t = term();
    let mut err = std::io::stderr().lock();
    let _ = t.clear(&mut err);
    let _ = err.write_all(defuse(&crate::secret::scrub(text)).as_bytes());
    let _ = t.redraw(&mut err);
}

/// Show `line` as the progress line (drawn over by the next one); only
/// ever called when stderr is a terminal.
pub fn status(line: &str) {
    let mut t = term();
    let mut err = std::io::stderr().lock();
    let _ = t.clear(&mut err);
    t.status = Some(inert(line));
    let _ = t.redraw(&mut err);
}

/// Take the progress line away.
pub fn clear_status() {
    let mut t = term();
    let mut err = std::io::stderr().lock();
    let _ = t.clear(&mut err);
    t.status = None;
    let _ = err.flush();
}

fn write(line: &str) {
    let t = term();
    let mut err = std::io::stderr().lock();
    let _ = t.clear(&mut err);
    let _ = writeln!(err, "{line}");
    let _ = t.redraw(&mut err);
}

fn term() -> std::sync::MutexGuard<'static, Term> {
    // A panic while printing leaves nothing inconsistent worth refusing.
    TERM.lock().unwrap_or_else(|e| e.into_inner())
}

impl Term {
    /// Back to the start of an empty line, if a status line is shown.
    fn clear(&self, w: &mut impl Write) -> std::io::Result<()> {
        match &self.status {
            None => Ok(()),
            Some(_) if self.escapes => w.write_all(b"\r\x1b[2K"),
            // No escape codes: overwrite it with spaces.
            Some(s) => write!(w, "\r{:width$}\r", "", width = s.chars().count()),
        }
    }

    fn redraw(&self, w: &mut impl Write) -> std::io::Result<()> {
        if let Some(s) = &self.status {
            w.write_all(s.as_bytes())?;
        }
        w.flush()
    }
}

/// `text` unable to act as a workflow command of the CI system reading the
/// log: GitHub's runner takes a line whose trimmed start is `::` as a
/// command, and `##[` anywhere in a line as one in the older form
/// (actions/runner, ActionCommand.TryParseV2 and TryParse). hoist's own
/// commands go through [`command`]; in any other line — which may quote a
/// registry's body or a token's claim — both are broken up visibly (`: :`,
/// `# #[`).
pub fn defuse(text: &str) -> std::borrow::Cow<'_, str> {
    let starts_command = |l: &str| l.trim_start().starts_with("::");
    if !text.contains("##[") && !text.split('\n').any(starts_command) {
        return std::borrow::Cow::Borrowed(text);
    }
    let lines: Vec<String> = text
        .split('\n')
        .map(|l| {
            let l = l.replace("##[", "# #[");
            if starts_command(&l) {
                l.replacen("::", ": :", 1)
            } else {
                l
            }
        })
        .collect();
    std::borrow::Cow::Owned(lines.join("\n"))
}

/// JSON text (a document on stdout, which GitHub's runner also reads for
/// commands) with `##[` written `#\u0023[`: the same string to any JSON
/// parser, but no command to the runner. A line of pretty-printed JSON
/// never starts with `::` (it starts with a brace, a bracket, a quote or
/// spaces before one), and line breaks inside strings are `\n`.
pub fn json_inert(json: &str) -> std::borrow::Cow<'_, str> {
    if json.contains("##[") {
        std::borrow::Cow::Owned(json.replace("##[", "#\\u0023["))
    } else {
        std::borrow::Cow::Borrowed(json)
    }
}

/// `text` with control characters shown escaped (`\x1b`, `\r`), except the
/// line breaks and tabs a multi-line message is made of: no line hoist
/// prints can move the cursor, recolour the terminal or hide what is above.
pub fn inert(text: &str) -> String {
    if !text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to write colours and control codes to a stream: `always` and
    /// `never` as said; `auto` on a terminal, unless NO_COLOR is set to
    /// anything non-empty (no-color.org) or TERM is `dumb`.
    pub fn enabled(self, no_color: Option<&str>, term: Option<&str>, is_terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                is_terminal && no_color.is_none_or(str::is_empty) && term != Some("dumb")
            }
        }
    }

    /// The same choice for clap's own help and error messages.
    pub fn clap(self) -> clap::ColorChoice {
        match self {
            ColorChoice::Auto => clap::ColorChoice::Auto,
            ColorChoice::Always => clap::ColorChoice::Always,
            ColorChoice::Never => clap::ColorChoice::Never,
        }
    }
}

/// `--output`: what stdout carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_cannot_carry_control_sequences() {
        let cases = [
            ("pushed v1\n  2 layers\tok", "pushed v1\n  2 layers\tok"),
            ("a\x1b[2Kb", "a\\x1b[2Kb"),
            ("done\rFORGED", "done\\rFORGED"),
            ("bell\x07", "bell\\x07"),
        ];
        for (given, shown) in cases {
            assert_eq!(inert(given), shown, "{given:?}");
        }
    }

    #[test]
    fn outside_text_cannot_issue_workflow_commands() {
        let cases = [
            ("pushed v1", "pushed v1"),
            ("a :: b", "a :: b"),
            (
                "error: NAME_UNKNOWN\n::add-mask::x",
                "error: NAME_UNKNOWN\n: :add-mask::x",
            ),
            ("  ::error::forged", "  : :error::forged"),
            (
                "body ##[set-output name=x]1",
                "body # #[set-output name=x]1",
            ),
        ];
        for (given, shown) in cases {
            assert_eq!(defuse(given), shown, "{given:?}");
        }
        let doc = serde_json::json!({ "sub": "a\n##[error]b", "##[k": 1 }).to_string();
        let safe = json_inert(&doc);
        assert!(!safe.contains("##["), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back.to_string(), doc, "the same document to a parser");
    }

    #[test]
    fn the_status_line_is_cleared_and_drawn_again() {
        let mut t = Term {
            escapes: true,
            status: Some("1/3 blobs".into()),
        };
        let mut out = Vec::new();
        t.clear(&mut out).unwrap();
        out.extend_from_slice(b"a warning\n");
        t.redraw(&mut out).unwrap();
        assert_eq!(out, b"\r\x1b[2Ka warning\n1/3 blobs");

        t.escapes = false;
        let mut out = Vec::new();
        t.clear(&mut out).unwrap();
        assert_eq!(out, b"\r         \r", "spaces, no escape codes");

        t.status = None;
        let mut out = Vec::new();
        t.clear(&mut out).unwrap();
        t.redraw(&mut out).unwrap();
        assert!(out.is_empty(), "nothing shown, nothing to clear");
    }
}
