//! The binary: parse flags, set up logging, snapshot the environment, run,
//! and turn the result into output and an exit code — in this one place.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{CommandFactory, FromArgMatches};
use hoist::cli::{Cli, ColorChoice, OutputFormat};
use hoist::env::Env;
use hoist::error::{Class, Diagnose, Internal};

/// `--output json` was asked for: the panic hook prints the error document
/// on stdout too. Set as soon as it is known (from the command line, then
/// from everything).
static JSON: AtomicBool = AtomicBool::new(false);

/// A panic is a bug, whatever caused it: say so in one `error:` block, with
/// where to report it (and, with `--output json`, the error document on
/// stdout, as any failure prints), and exit with [`Class::Internal`]'s code
/// instead of Rust's 101 and its raw message.
///
/// The hook runs on the panicking thread, whichever it is, and must end the
/// process without hanging on what that thread holds or failing again (a
/// panic inside the hook aborts):
/// - it waits for none of hoist's locks for long ([`hoist::secret::try_scrub`],
///   [`hoist::output::last_words`]); the standard streams' locks are
///   reentrant, so a panic while this thread prints does not block them;
/// - it writes with `write!`, which returns an error where `println!` would
///   panic (a closed stdout);
/// - the first thread to panic reports; any other waits for the exit.
///
/// hoist writes its result on stdout last, in one piece: should a panic
/// strike while it is being written, the error document follows what was
/// written, and the exit code says which counts.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        static REPORTING: AtomicBool = AtomicBool::new(false);
        if REPORTING.swap(true, Ordering::SeqCst) {
            loop {
                std::thread::park();
            }
        }
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        let what = match hoist::secret::try_scrub(&what) {
            Some(clean) => hoist::text::external(&clean, 500),
            None => {
                "a panic (its message is not shown: hoist could not check it for secrets)".into()
            }
        };
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let e = hoist::error::Error::from(Internal {
            what: format!("{what}{at}"),
            panicked: true,
        });
        if JSON.load(Ordering::SeqCst) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", error_document(&e));
            let _ = out.flush();
        }
        let mut text = e.report();
        // What std's own hook does for RUST_BACKTRACE (RUST_LIB_BACKTRACE
        // is for the library's error values, not panics).
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            let trace = std::backtrace::Backtrace::force_capture();
            text.push_str(&format!("\nbacktrace:\n{trace}"));
        }
        hoist::output::last_words(&text);
        std::process::exit(Class::Internal.exit_code().into());
    }));
}

/// The async runtime could not start (hoist's first threads).
#[derive(Debug, thiserror::Error)]
#[error("could not start hoist's async runtime")]
struct NoRuntime(#[source] std::io::Error);

impl Diagnose for NoRuntime {
    fn class(&self) -> Class {
        Class::Infrastructure
    }
    fn hint(&self) -> Option<String> {
        Some("the machine is out of threads or file descriptors (ulimit -u / -n)".into())
    }
}

/// Panic on purpose, to test the panic hook (tests/cli.rs): only in debug
/// builds: the release profile has no debug assertions (a test in
/// tests/cli.rs keeps it so), so the binary users run has no such trigger.
#[cfg(debug_assertions)]
fn test_panic() {
    if std::env::var_os("HOIST_TEST_PANIC").is_some() {
        panic!("HOIST_TEST_PANIC is set");
    }
}

/// The HTTP and SDK plumbing: at debug and trace their dumps carry
/// signed headers, tokens, and response bodies with credentials in them
/// (GetAuthorizationToken's password, STS's keys). Whatever filter the user
/// gives (`HOIST_LOG=trace`), they never log above info.
const PLUMBING: &[&str] = &[
    "aws_smithy",
    "aws_sigv4",
    "aws_config",
    "aws_credential_types",
    "aws_sdk_",
    "aws_runtime",
    "hyper",
    "reqwest",
    "h2",
    "rustls",
    "tower",
];

fn is_plumbing(target: &str) -> bool {
    PLUMBING.iter().any(|p| target.starts_with(p))
}

/// The log's writer: [`hoist::output::log`], which scrubs every secret
/// hoist knows from each line (the last guard, should a secret ever reach a
/// log line by some other path) and keeps the progress line out of its way.
struct Scrubbed;

impl std::io::Write for Scrubbed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        hoist::output::log(&String::from_utf8_lossy(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn init_logging(verbose: u8, quiet: bool, user_filter: Option<&str>, color: bool, github: bool) {
    use tracing_subscriber::prelude::*;
    // By default only hoist's own lines: the SDK's and HTTP stack's
    // warnings (IMDS probing, a missing config file) are for -v; what
    // matters of them reaches the user as hoist's own error and hint.
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "error,hoist=info",
        (false, 1) => "info,hoist=debug",
        (false, _) => "debug",
    };
    let filter = || {
        tracing_subscriber::EnvFilter::try_new(user_filter.unwrap_or(level))
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level))
    };
    let cap = || {
        tracing_subscriber::filter::filter_fn(|m| {
            !(is_plumbing(m.target()) && *m.level() > tracing::Level::INFO)
        })
    };
    let warn = |m: &tracing::Metadata<'_>| *m.level() == tracing::Level::WARN;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(|| Scrubbed)
                .with_ansi(color)
                .without_time()
                .with_target(false)
                .with_filter(filter())
                .with_filter(cap())
                // On GitHub a warning is an annotation instead (below).
                .with_filter(tracing_subscriber::filter::filter_fn(move |m| {
                    !(github && warn(m))
                })),
        )
        .with(
            github.then_some(
                Annotations
                    .with_filter(filter())
                    .with_filter(cap())
                    .with_filter(tracing_subscriber::filter::filter_fn(warn)),
            ),
        )
        .init();
}

/// A failure as the user sees it: the `error:`/`caused by:`/`hint:` lines on
/// stderr and, with `--output json`, the error document on stdout.
fn fail(e: &hoist::error::Error, json: bool) -> ExitCode {
    if json {
        // Unwritable too: the lines on stderr still say what failed.
        let _ = print(&error_document(e));
    }
    hoist::output::always(&e.report());
    exit(Some(e.class()))
}

/// The error document `--output json` prints on stdout, defused as every
/// JSON document there is (an error can quote outside text).
fn error_document(e: &hoist::error::Error) -> String {
    let doc = serde_json::to_string(&hoist::report::ErrorDocument::new(e)).unwrap_or_default();
    hoist::output::json_inert(&doc).into_owned()
}

/// hoist's result on stdout (the digest, a document), and a line break. A
/// reader that has gone (`hoist schema ship | head -1`) is no failure of the
/// run, whose exit code stands; any other failure to write (a full disk) is.
/// Not `println!`, which panics on either.
fn print(text: &str) -> Result<(), hoist::error::Error> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Unwritten(e).into()),
        _ => Ok(()),
    }
}

/// stdout did not take the result.
#[derive(Debug, thiserror::Error)]
#[error("could not write the result on stdout")]
struct Unwritten(#[source] std::io::Error);

impl Diagnose for Unwritten {
    fn class(&self) -> Class {
        Class::Infrastructure
    }
    fn hint(&self) -> Option<String> {
        Some("the run itself is done (the lines above say what it did); make room where stdout goes (a full disk?) or send it elsewhere, then re-run: re-running is safe".into())
    }
}

/// The exit code of a run that failed as `class` says, or succeeded.
fn exit(class: Option<Class>) -> ExitCode {
    class.map_or(ExitCode::SUCCESS, |c| ExitCode::from(c.exit_code()))
}

/// On GitHub Actions, each warning becomes a `::warning` annotation: the
/// run's summary page shows it, not only the step's log.
struct Annotations;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Annotations {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                } else {
                    self.0.push_str(&format!(" {}={value:?}", field.name()));
                }
            }
        }
        let mut m = Message(String::new());
        event.record(&mut m);
        let text = hoist::secret::scrub(&m.0);
        hoist::output::command(&format!(
            "::warning title=hoist::{}",
            hoist::ci::github_data(&text)
        ));
    }
}

fn main() -> ExitCode {
    install_panic_hook();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let definitions = Cli::command();
    // The config file fills in the HOIST_<FLAG> variables the environment
    // does not set, before clap reads them (flag > env > file > default).
    let pre = hoist::config::pre_parse(&definitions, &args);
    JSON.store(pre.json, Ordering::SeqCst);
    let layer = match hoist::config::load(&definitions, &pre, &Env::from_process()) {
        Ok(layer) => layer,
        Err(e) => return fail(&e.into(), pre.json),
    };
    for (name, value) in &layer.vars {
        // SAFETY: set_var is unsound only while another thread may read or
        // write the environment. None exists yet: nothing before this line
        // spawns one, and the logging, the TLS warm-up and the async runtime
        // (the first threads) all start below.
        unsafe { std::env::set_var(name, value) };
    }
    // Built again: clap reads an option's variable when the option is
    // defined, so the definitions made before the file was applied do not
    // see its values.
    let definitions = Cli::command().color(pre.color.unwrap_or(ColorChoice::Auto).clap());
    let cli = match definitions
        .try_get_matches_from(&args)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        // --help and --version (on stdout), or clap's usage error.
        Err(e) => {
            let _ = e.print();
            return exit(e.use_stderr().then_some(Class::Usage));
        }
    };
    let env = Env::from_process();
    let color = cli.global.color.enabled(
        env.get("NO_COLOR"),
        env.get("TERM"),
        std::io::stderr().is_terminal(),
    );
    hoist::output::init(cli.global.quiet, color);
    let github = match cli.global.ci.as_deref() {
        Some(ci) => ci.eq_ignore_ascii_case("github"),
        None => env.get("GITHUB_ACTIONS") == Some("true"),
    };
    init_logging(
        cli.global.verbose,
        cli.global.quiet,
        env.get("HOIST_LOG"),
        color,
        github,
    );
    let json = cli.global.output == OutputFormat::Json;
    JSON.store(json, Ordering::SeqCst);
    #[cfg(debug_assertions)]
    test_panic();
    if let Some(result) = hoist::offline(&cli, &args, &layer) {
        let printed = result.and_then(|text| {
            if text.is_empty() {
                Ok(())
            } else {
                print(&text)
            }
        });
        return match printed {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e, json),
        };
    }
    if env.get("LOG_SENSITIVE_BODIES").is_some() {
        // The AWS SDK logs whole request and response bodies — STS's
        // credentials among them — when this is set. hoist's log filter
        // never lets the SDK's body dumps through, and the variable is
        // dropped so no other path can honour it.
        // SAFETY: no other thread exists yet (the runtime starts below).
        unsafe { std::env::remove_var("LOG_SENSITIVE_BODIES") };
        tracing::warn!(
            "ignoring LOG_SENSITIVE_BODIES: hoist never logs request or response bodies, which carry credentials"
        );
    }

    let format = cli.global.output;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&NoRuntime(e).into(), json),
    };
    match runtime.block_on(hoist::run(cli, env)) {
        Ok(outcome) => {
            // The result's lines: the narrative's last (quiet with -q),
            // unless the run was blocked or rolled back.
            match outcome.class() {
                None => hoist::output::say(&outcome.log()),
                Some(_) => hoist::output::always(&outcome.log()),
            }
            match outcome.stdout(format).and_then(|text| print(&text)) {
                Ok(()) => exit(outcome.class()),
                Err(e) => fail(&e, json),
            }
        }
        Err(e) => fail(&e, json),
    }
}
